//! Cost of one Create record through the journal format: the committer encodes one
//! per order, recovery decodes one per order at start-up.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use kakigori::orders::record::{decode, encode, Decoded, Record};

/// A create with a typical idempotency key (a UUID's 36 bytes).
fn create_record() -> Record<'static> {
    Record::Create {
        number: 123_456,
        menu: 2,
        idempotency_key: b"6f1c2a9e-4b7d-4e8a-9c3f-2d5b8e7a1f04",
    }
}

fn encode_create(c: &mut Criterion) {
    let record = create_record();
    let mut out = Vec::with_capacity(256);
    c.bench_function("encode create", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(7), black_box(&record), &mut out);
            black_box(out.len())
        })
    });
}

fn decode_create(c: &mut Criterion) {
    let mut bytes = Vec::new();
    encode(7, &create_record(), &mut bytes);
    c.bench_function("decode create", |b| {
        b.iter(|| match decode(black_box(&bytes), black_box(7)) {
            Decoded::Record { len, .. } => len,
            other => panic!("benchmark record does not decode: {other:?}"),
        })
    });
}

criterion_group!(benches, encode_create, decode_create);
criterion_main!(benches);
