//! The journal record codec, `kakigori::orders::record::{encode, decode}`.
//!
//! Input layout: byte 0 picks the mode; in "raw" mode the next 8 bytes are the
//! expected sequence number and the rest is the buffer; in "built" mode the
//! input describes a record which is encoded, optionally damaged, and decoded.
//!
//! Invariants:
//! * `decode` never panics and never reads past its buffer (it gets an exactly
//!   sized copy, so ASan or a bounds check would catch it);
//! * a decoded record re-encodes, with the same sequence number, to exactly
//!   the bytes it was decoded from (`&buf[..len]`), with `len` within the
//!   documented record bounds;
//! * decoding depends only on `&buf[..len]`: that slice alone decodes the
//!   same, and every shorter prefix is `Incomplete` or `Corrupt`;
//! * any other expected sequence number makes the same bytes `Corrupt`;
//! * an encoded record decodes to itself, whatever follows it.
#![no_main]

use kakigori::orders::record::{
    check_header, decode, encode, encode_header, Decoded, Record, HEADER_LEN,
    MAX_IDEMPOTENCY_KEY_BYTES, MAX_RECORD_BYTES, MIN_RECORD_BYTES,
};
use kakigori::orders::Status;
use libfuzzer_sys::fuzz_target;

fn check_decode(buf: &[u8], seq: u64) {
    let exact = buf.to_vec();
    let Decoded::Record { record, len } = decode(&exact, seq) else {
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
    encode(seq, &record, &mut again);
    assert_eq!(again, &exact[..len], "{record:?} re-encodes differently");
    let only = exact[..len].to_vec();
    assert_eq!(decode(&only, seq), Decoded::Record { record, len });
    for cut in 0..len {
        let prefix = exact[..cut].to_vec();
        assert!(
            matches!(
                decode(&prefix, seq),
                Decoded::Incomplete | Decoded::Corrupt(_)
            ),
            "a {cut}-byte prefix of a {len}-byte record decodes"
        );
    }
    for other in [seq.wrapping_add(1), seq.wrapping_sub(1), !seq] {
        assert!(matches!(decode(&exact, other), Decoded::Corrupt(_)));
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    for (i, b) in word.iter_mut().enumerate() {
        *b = bytes.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(word)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // The file header check never panics either.
    let _ = check_header(rest);
    let mut header = Vec::new();
    encode_header(&mut header);
    assert_eq!(header.len(), HEADER_LEN);
    assert_eq!(check_header(&header), Ok(()));

    if mode & 1 == 0 {
        // Raw: [seq u64][buffer…]. Small sequence numbers are the common case.
        let seq = if mode & 2 == 0 {
            u64::from(mode >> 2)
        } else {
            u64_at(rest, 0)
        };
        let buf = rest.get(8..).unwrap_or(&[]);
        check_decode(buf, seq);
        return;
    }

    // Built: [seq u64][number u64][kind][menu/status][key len][key…][damage…]
    let seq = u64_at(rest, 0);
    let number = u64_at(rest, 8);
    let kind = rest.get(16).copied().unwrap_or(0);
    let which = rest.get(17).copied().unwrap_or(0);
    let key_len = usize::from(rest.get(18).copied().unwrap_or(0)) % (MAX_IDEMPOTENCY_KEY_BYTES + 1);
    let tail = rest.get(19..).unwrap_or(&[]);
    let key = &tail[..key_len.min(tail.len())];
    let damage = &tail[key.len()..];
    let record = if kind & 1 == 0 {
        Record::Create {
            number,
            menu: which % 4,
            idempotency_key: key,
        }
    } else {
        Record::Transition {
            number,
            status: Status::ALL[usize::from(which) % 3],
        }
    };
    let mut bytes = Vec::new();
    encode(seq, &record, &mut bytes);
    let len = bytes.len();
    assert!((MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&len));
    // Whatever follows must not change how it reads.
    bytes.extend_from_slice(damage);
    let exact = bytes.clone();
    assert_eq!(decode(&exact, seq), Decoded::Record { record, len });
    check_decode(&exact, seq);

    // Damage: one [position, xor] pair applied to the record's own bytes. With
    // the length field intact the checksum covers the same bytes with one byte
    // changed, a burst CRC-32 always detects: it must never decode. (A damaged
    // length is only checked by check_decode below: it reads other bytes.)
    let mut damaged = bytes[..len].to_vec();
    if let [position, xor, ..] = *damage {
        let at = usize::from(position) % len;
        damaged[at] ^= xor;
        if xor != 0 && at >= 4 {
            if let Decoded::Record { record: other, .. } = decode(&damaged, seq) {
                panic!("byte {at} ^= {xor:#04x} still decodes, as {other:?} (was {record:?})");
            }
        }
    }
    check_decode(&damaged, seq);
});
