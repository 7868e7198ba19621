//! The per-frame cost of the WebSocket hot path: every chant value arrives as
//! one small masked text frame, every broadcast leaves as one small unmasked
//! one.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use kakigori::ws::frame::{encode_client_frame, encode_frame, parse_client_header, unmask, Opcode};

/// A typical client message: 20 bytes of JSON.
const CLIENT_PAYLOAD: &[u8] = br#"{"value": 42.500000}"#;

/// A typical broadcast: 40 bytes of JSON.
const BROADCAST_PAYLOAD: &[u8] = br#"{"average":42.51234567890,"count":12345}"#;

fn parse_and_unmask(c: &mut Criterion) {
    assert_eq!(CLIENT_PAYLOAD.len(), 20);
    let mut frame = Vec::new();
    encode_client_frame(
        Opcode::Text,
        CLIENT_PAYLOAD,
        [0x12, 0x34, 0x56, 0x78],
        &mut frame,
    );
    let mut scratch = frame.clone();
    c.bench_function("parse+unmask 20-byte masked text frame", |b| {
        b.iter(|| {
            scratch.copy_from_slice(&frame);
            let header = parse_client_header(black_box(&scratch), 4096).ok()?;
            let payload = scratch.get_mut(header.header_len..header.frame_len())?;
            unmask(payload, header.mask);
            black_box(payload.first().copied())
        })
    });
}

fn encode(c: &mut Criterion) {
    assert_eq!(BROADCAST_PAYLOAD.len(), 40);
    let mut out = Vec::with_capacity(64);
    c.bench_function("encode 40-byte server text frame", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(Opcode::Text, black_box(BROADCAST_PAYLOAD), &mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, parse_and_unmask, encode);
criterion_main!(benches);
