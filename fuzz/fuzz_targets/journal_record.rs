//! The journal's record and batch codecs, `kakigori::orders::record`.
//!
//! Input layout: byte 0 picks the mode; in "raw" mode the next 8 bytes are the
//! expected first sequence number and the rest is the buffer; in "built" mode the
//! rest is a script of records that is encoded as one batch, optionally damaged,
//! and decoded.
//!
//! Invariants:
//! * `decode`, `decode_batch` and `find_batch` never panic and never read past their
//!   buffer (they get exactly sized copies, so ASan or a bounds check would catch it);
//! * a decoded record re-encodes to exactly the bytes it came from, within the
//!   documented bounds, and no shorter prefix of them decodes;
//! * a decoded batch re-encodes (same journal id, same first sequence number) to
//!   exactly the bytes it came from; every prefix of it is `Incomplete`; any other
//!   sequence number or journal id makes it `Corrupt`;
//! * an encoded batch decodes to its records, whatever follows it, and any change to
//!   one of its bytes is detected (CRC-32 catches every burst of up to 32 bits).
#![no_main]

use kakigori::orders::record::{
    decode, decode_batch, encode, find_batch, read_header, BatchEncoder, DecodedBatch, Record,
    BATCH_HEADER_BYTES, MAX_RECORD_BYTES, MIN_RECORD_BYTES,
};
use kakigori::orders::{Status, IDEMPOTENCY_KEY_BYTES_MAX, TIME_MS_MAX};
use libfuzzer_sys::fuzz_target;

const ID: u64 = 0x6b61_6b69_676f_7269;

fn check_record(buf: &[u8]) {
    let exact = buf.to_vec();
    let Ok((record, len)) = decode(&exact) else {
        return;
    };
    assert!(
        len <= exact.len(),
        "len {len} past a buffer of {}",
        exact.len()
    );
    assert!(
        (MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&len),
        "len {len}"
    );
    let mut again = Vec::new();
    encode(&record, &mut again);
    assert_eq!(again, &exact[..len], "{record:?} re-encodes differently");
    for cut in 0..len {
        assert!(
            decode(&exact[..cut].to_vec()).is_err(),
            "a {cut}-byte prefix decodes"
        );
    }
}

fn check_batch(buf: &[u8], seq: u64) {
    let exact = buf.to_vec();
    let _ = find_batch(&exact, 0, ID, seq..=seq.saturating_add(64));
    let DecodedBatch::Batch(batch) = decode_batch(&exact, ID, seq) else {
        return;
    };
    assert!(batch.len <= exact.len());
    assert_eq!(batch.first_seq, seq);
    let mut again = BatchEncoder::default();
    let mut count = 0;
    for (offset, record) in batch.records() {
        assert_eq!(decode(&exact[offset..]).map(|(r, _)| r), Ok(record));
        again.push(&record);
        count += 1;
    }
    assert_eq!(count, batch.records);
    assert_eq!(
        again.finish(ID, seq),
        &exact[..batch.len],
        "re-encodes differently"
    );
    for cut in 0..batch.len {
        assert_eq!(
            decode_batch(&exact[..cut].to_vec(), ID, seq),
            DecodedBatch::Incomplete,
            "cut {cut}"
        );
    }
    assert!(matches!(
        decode_batch(&exact, ID, seq.wrapping_add(1)),
        DecodedBatch::Corrupt(_)
    ));
    assert!(matches!(
        decode_batch(&exact, ID ^ 1, seq),
        DecodedBatch::Corrupt(_)
    ));
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    for (i, b) in word.iter_mut().enumerate() {
        *b = bytes.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(word)
}

/// Records from a script of steps [kind, number u8, menu/status, time u8, key len, key…];
/// what the script does not use is returned as damage instructions.
fn scripted(mut script: &[u8]) -> (Vec<Record<'_>>, &[u8]) {
    let mut records = Vec::new();
    while let [kind, number, which, time, key_len, rest @ ..] = script {
        if kind & 0x80 != 0 || records.len() == 64 {
            break;
        }
        let time_ms = (u64::from(*time) << 40).min(TIME_MS_MAX);
        if kind & 1 == 0 {
            let key_len = (usize::from(*key_len) % (IDEMPOTENCY_KEY_BYTES_MAX + 1)).min(rest.len());
            records.push(Record::Create {
                number: u64::from(*number),
                menu: which % 4,
                time_ms,
                idempotency_key: &rest[..key_len],
            });
            script = &rest[key_len..];
        } else {
            records.push(Record::Transition {
                number: u64::from(*number),
                status: Status::ALL[usize::from(*which) % 3],
                time_ms,
            });
            script = rest;
        }
    }
    (records, script)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // The file header check never panics either.
    let _ = read_header(rest);
    let seq = if mode & 2 == 0 {
        u64::from(mode >> 2)
    } else {
        u64_at(rest, 0)
    };

    if mode & 1 == 0 {
        // Raw: [seq u64][buffer…].
        let buf = rest.get(8..).unwrap_or(&[]);
        check_record(buf);
        check_batch(buf, seq);
        return;
    }

    // Built: [seq u64][script…][0x80][damage position u16][xor][trailing…]
    let (records, after) = scripted(rest.get(8..).unwrap_or(&[]));
    if records.is_empty() {
        return;
    }
    let mut batch = BatchEncoder::default();
    for record in &records {
        check_record(batch.push(record));
    }
    let mut bytes = batch.finish(ID, seq);
    let len = bytes.len();
    assert!(len >= BATCH_HEADER_BYTES + records.len() * MIN_RECORD_BYTES);
    let damage = after.get(1..).unwrap_or(&[]);
    // Whatever follows must not change how it reads.
    bytes.extend_from_slice(damage.get(3..).unwrap_or(&[]));
    match decode_batch(&bytes, ID, seq) {
        DecodedBatch::Batch(batch) => {
            assert_eq!(batch.len, len);
            let read: Vec<_> = batch.records().map(|(_, r)| r).collect();
            assert_eq!(read, records);
        }
        other => panic!("an encoded batch reads as {other:?}"),
    }
    check_batch(&bytes, seq);

    if let [low, high, xor, ..] = *damage {
        let at = usize::from(u16::from_le_bytes([low, high])) % len;
        let mut damaged = bytes[..len].to_vec();
        damaged[at] ^= xor;
        if xor != 0 {
            assert!(
                !matches!(decode_batch(&damaged, ID, seq), DecodedBatch::Batch(_)),
                "byte {at} ^= {xor:#04x} still decodes"
            );
        }
        check_batch(&damaged, seq);
    }
});
