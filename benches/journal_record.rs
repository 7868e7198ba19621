//! Cost of the journal format: the committer encodes one Create per order (and reads it
//! back to check it against the rules) and seals one batch per group commit; recovery
//! decodes every batch at start-up.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use kakigori::orders::record::{decode, decode_batch, encode, BatchEncoder, DecodedBatch, Record};

/// Orders in the benchmark batch: a busy group commit.
const BATCH_ORDERS: u64 = 64;
const JOURNAL_ID: u64 = 0x6b61_6b69_676f_7269;

/// A create with a typical idempotency key (a UUID's 36 bytes).
fn create_record(number: u64) -> Record<'static> {
    Record::Create {
        number,
        menu: 2,
        time_ms: 1_782_898_200_123,
        idempotency_key: b"6f1c2a9e-4b7d-4e8a-9c3f-2d5b8e7a1f04",
    }
}

fn encode_create(c: &mut Criterion) {
    let record = create_record(123_456);
    let mut out = Vec::with_capacity(256);
    c.bench_function("encode create", |b| {
        b.iter(|| {
            out.clear();
            encode(black_box(&record), &mut out);
            black_box(out.len())
        })
    });
}

fn decode_create(c: &mut Criterion) {
    let mut bytes = Vec::new();
    encode(&create_record(123_456), &mut bytes);
    c.bench_function("decode create", |b| {
        b.iter(|| match decode(black_box(&bytes)) {
            Ok((_, len)) => len,
            Err(reason) => panic!("benchmark record does not decode: {reason}"),
        })
    });
}

fn batch() -> Vec<u8> {
    let mut batch = BatchEncoder::default();
    for number in 1..=BATCH_ORDERS {
        batch.push(&create_record(number));
    }
    batch.finish(JOURNAL_ID, 1)
}

fn seal_batch(c: &mut Criterion) {
    c.bench_function("encode and seal a batch of 64 creates", |b| {
        b.iter(|| black_box(batch()).len())
    });
}

fn decode_whole_batch(c: &mut Criterion) {
    let bytes = batch();
    c.bench_function("decode a batch of 64 creates", |b| {
        b.iter(
            || match decode_batch(black_box(&bytes), JOURNAL_ID, black_box(1)) {
                DecodedBatch::Batch(batch) => batch.records().count(),
                other => panic!("benchmark batch does not decode: {other:?}"),
            },
        )
    });
}

criterion_group!(
    benches,
    encode_create,
    decode_create,
    seal_batch,
    decode_whole_batch
);
criterion_main!(benches);
