//! The WebSocket frame codec and message reassembly, as a connection uses them.
//!
//! Input layout: byte 0 picks the limit (and mode), the rest is either a raw
//! client byte stream or a script of frames to encode.
//!
//! Invariants:
//! * `parse_client_header` never panics, never claims `header_len` beyond its
//!   input (or beyond 14), never a payload over the limit, and never accepts
//!   a fragmented or oversized control frame;
//! * a header parsed from `encode_client_frame`'s output equals what was
//!   encoded (fin, opcode, mask, payload length), its `frame_len()` is exactly
//!   the encoded length, and unmasking gives the payload back;
//! * feeding any frame sequence to a `Reassembler` never panics, text events
//!   are valid UTF-8, no message exceeds the limit, and after an error the
//!   reassembler holds no buffer.
#![no_main]

use kakigori::limits::{CLIENT_FRAME_HEADER_BYTES_MAX, CONTROL_PAYLOAD_BYTES_MAX};
use kakigori::ws::frame::{
    encode_client_frame, parse_client_header, unmask, FrameHeader, HeaderError, Opcode,
};
use kakigori::ws::message::{Event, Reassembler};
use libfuzzer_sys::fuzz_target;

const OPCODES: [Opcode; 6] = [
    Opcode::Continuation,
    Opcode::Text,
    Opcode::Binary,
    Opcode::Close,
    Opcode::Ping,
    Opcode::Pong,
];

fn limit_for(selector: u8) -> usize {
    match selector % 8 {
        0 => 4096,
        1 => usize::MAX,
        2 => 0,
        3 => 125,
        4 => 126,
        5 => 65_536,
        _ => usize::from(selector),
    }
}

fn check_header(buf: &[u8], limit: usize) -> Result<FrameHeader, HeaderError> {
    let result = parse_client_header(buf, limit);
    if let Ok(h) = &result {
        assert!(
            h.header_len <= buf.len(),
            "header_len {} > input {}",
            h.header_len,
            buf.len()
        );
        assert!(h.header_len <= CLIENT_FRAME_HEADER_BYTES_MAX);
        assert!(h.payload_len <= limit);
        assert!(!h.opcode.is_control() || (h.fin && h.payload_len <= CONTROL_PAYLOAD_BYTES_MAX));
        assert_eq!(h.frame_len(), h.header_len + h.payload_len);
        // The same bytes with anything after them read the same.
        let mut longer = buf[..h.header_len].to_vec();
        longer.extend_from_slice(&[0xAA; 3]);
        assert_eq!(parse_client_header(&longer, limit), Ok(*h));
        // Every proper prefix of the header needs more (or was already refused).
        for cut in 0..h.header_len {
            match parse_client_header(&buf[..cut], limit) {
                Err(HeaderError::NeedMore) => {}
                other => panic!("prefix of {cut} bytes of a good header gave {other:?}"),
            }
        }
    }
    result
}

/// Reassembles one event's worth, checking what comes out.
fn feed(r: &mut Reassembler, header: &FrameHeader, payload: &[u8]) -> bool {
    let limit = r.max_message_bytes();
    match r.push(header, payload) {
        Ok(Some(Event::Text(text))) => {
            assert!(std::str::from_utf8(text.as_bytes()).is_ok());
            assert!(
                text.len() <= limit,
                "text of {} bytes over limit {limit}",
                text.len()
            );
        }
        Ok(Some(Event::Binary(bytes))) => {
            assert!(
                bytes.len() <= limit,
                "binary of {} bytes over limit {limit}",
                bytes.len()
            );
        }
        Ok(Some(Event::Ping(bytes))) => assert!(bytes.len() <= CONTROL_PAYLOAD_BYTES_MAX),
        Ok(Some(Event::Close { code, reason })) => {
            assert!(code.is_some() || reason.is_empty());
        }
        Ok(Some(Event::Pong)) | Ok(None) => {}
        Err(e) => {
            assert!(
                matches!(e.code, 1002 | 1007 | 1009),
                "close code {}",
                e.code
            );
            assert!(!e.reason.is_empty() && e.reason.len() <= 123);
            assert_eq!(r.buffer_capacity_bytes(), 0, "buffer kept after an error");
            assert!(!r.is_message_open());
            return false;
        }
    }
    assert!(
        r.is_message_open() || r.buffer_capacity_bytes() == 0,
        "idle but holding a buffer"
    );
    true
}

/// What a connection does with a byte stream: parse, wait, unmask, reassemble.
fn run_stream(stream: &mut [u8], r: &mut Reassembler) {
    let mut pos = 0;
    loop {
        let header = match check_header(&stream[pos..], r.max_message_bytes()) {
            Ok(header) => header,
            Err(_) => return,
        };
        let end = pos + header.frame_len();
        if end > stream.len() {
            return;
        }
        let payload = &mut stream[pos + header.header_len..end];
        unmask(payload, header.mask);
        if !feed(r, &header, payload) {
            return;
        }
        pos = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let limit = limit_for(selector);

    // 1. The raw bytes as one client's stream.
    let mut stream = rest.to_vec();
    // A reassembler's limit is also the frame limit; usize::MAX is no real config.
    let reassembler_limit = limit.min(1 << 20);
    run_stream(&mut stream, &mut Reassembler::new(reassembler_limit));

    // 2. The bytes as a script of frames: [flags, len, mask×4 … payload].
    //    flags: bits 0-2 opcode index, bit 3 clears FIN, bit 4 also pushes the
    //    frame straight into a second reassembler with a header that skipped
    //    parse_client_header's checks (the reassembler must be sound alone);
    //    bit 5 stretches the payload into the 16- and 64-bit length forms
    //    (within a budget per input, to keep executions fast).
    let mut stretch_budget: usize = 140_000;
    let mut encoded = Vec::new();
    let mut direct = Reassembler::new(reassembler_limit);
    let mut direct_alive = true;
    let mut script = rest;
    while let [flags, len_byte, m0, m1, m2, m3, tail @ ..] = script {
        let opcode = OPCODES[usize::from(flags & 7) % OPCODES.len()];
        let fin = flags & 8 == 0;
        let mask = [*m0, *m1, *m2, *m3];
        let taken = usize::from(*len_byte).min(tail.len());
        let mut len = taken;
        if flags & 0x20 != 0 && stretch_budget > len {
            len = (len * 257).min(70_000).min(stretch_budget);
            stretch_budget -= len;
        }
        let payload: Vec<u8> = tail.iter().copied().cycle().take(len).collect();
        script = &tail[taken..];

        // Round trip of a single encoded frame.
        let mut frame = vec![0x55; usize::from(*m0 & 3)]; // something before it
        let start = frame.len();
        encode_client_frame(opcode, &payload, mask, &mut frame);
        let frame = &mut frame[start..];
        if !fin {
            frame[0] &= 0x7F;
        }
        match check_header(frame, usize::MAX) {
            Ok(h) => {
                assert_eq!(h.fin, fin);
                assert_eq!(h.opcode, opcode);
                assert_eq!(h.mask, mask);
                assert_eq!(h.payload_len, payload.len());
                assert_eq!(h.frame_len(), frame.len());
                let body = &mut frame[h.header_len..];
                unmask(body, h.mask);
                assert_eq!(body, &payload[..]);
            }
            Err(e) => {
                // Only control frames the RFC forbids may be refused.
                assert!(
                    opcode.is_control() && (!fin || payload.len() > CONTROL_PAYLOAD_BYTES_MAX),
                    "encoded {opcode:?} fin={fin} len={} refused: {e:?}",
                    payload.len()
                );
            }
        }

        let mut one = Vec::new();
        encode_client_frame(opcode, &payload, mask, &mut one);
        if !fin {
            one[0] &= 0x7F;
        }
        encoded.extend_from_slice(&one);

        if flags & 0x10 != 0 && direct_alive {
            let header = FrameHeader {
                fin,
                opcode,
                mask,
                payload_len: payload.len(),
                header_len: 0,
            };
            direct_alive = feed(&mut direct, &header, &payload);
        }
    }
    run_stream(&mut encoded, &mut Reassembler::new(reassembler_limit));
});
