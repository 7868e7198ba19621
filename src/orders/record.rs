//! The journal's on-disk format: one file header, then records appended back to back.
//!
//! ```text
//! header (16 bytes):  magic "KAKIJRNL" (8) | version (1) | reserved, zero (7)
//! record:             length u32 | crc u32 | sequence u64 | kind u8 | payload
//!   Create     kind 1: number u64 | menu u8 | key length u8 | key (0..=128 bytes, empty = none)
//!   Transition kind 2: number u64 | status u8
//! ```
//!
//! All integers are little-endian. `length` counts the whole record, its own four bytes
//! included, and must match the kind's payload exactly, never more than
//! [`MAX_RECORD_BYTES`]: a damaged length can then neither make the reader skip
//! over good data nor ask it to buffer megabytes. `crc` is CRC-32 (IEEE, as
//! `crc32fast` computes it) over the length field and everything after the crc, so a
//! flipped bit anywhere is caught. The sequence number starts at 1 and grows by one
//! per record: stale bytes of an earlier record (left in padding, or a block written
//! to the wrong place) carry a checksum that is fine but a sequence that is not, and
//! are rejected as well.
//!
//! The format knows nothing of orders' history: whether a create's number is the next
//! one or a transition is a legal move is the replay's business (`journal.rs`).

use crate::menu::{MenuIndex, MENU};
use crate::orders::Status;

/// Identifies a kakigori journal; anything else is refused rather than replayed.
pub const FILE_MAGIC: &[u8; 8] = b"KAKIJRNL";
/// Bumped whenever the record layout changes; an unknown version is refused.
pub const JOURNAL_VERSION: u8 = 1;
/// Magic, version and seven reserved zero bytes.
pub const HEADER_LEN: usize = 16;
/// The longest idempotency key a create can carry (SPEC.md §1: 1–128 bytes).
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// Length, checksum, sequence number and kind: what every record starts with.
const PREFIX_BYTES: usize = 4 + 4 + 8 + 1;
/// A create without its key: number, menu, key length.
const CREATE_FIXED_BYTES: usize = 8 + 1 + 1;
const TRANSITION_BYTES: usize = PREFIX_BYTES + 8 + 1;
/// The smallest record there is (a create without key is one byte longer).
pub const MIN_RECORD_BYTES: usize = TRANSITION_BYTES;
/// The largest record there is: a create with the longest key.
pub const MAX_RECORD_BYTES: usize = PREFIX_BYTES + CREATE_FIXED_BYTES + MAX_IDEMPOTENCY_KEY_BYTES;

const KIND_CREATE: u8 = 1;
const KIND_TRANSITION: u8 = 2;

/// Appends the file header.
pub fn encode_header(out: &mut Vec<u8>) {
    out.extend_from_slice(FILE_MAGIC);
    out.push(JOURNAL_VERSION);
    out.extend_from_slice(&[0; HEADER_LEN - 9]);
}

/// Checks that `buf` starts with the header [`encode_header`] writes.
pub fn check_header(buf: &[u8]) -> Result<(), &'static str> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Err("the file is shorter than a journal header");
    };
    if &header[..8] != FILE_MAGIC {
        return Err("the file does not start with the kakigori journal magic");
    }
    if header[8] != JOURNAL_VERSION {
        return Err("the journal was written in a version of the format this build does not know");
    }
    if header[9..].iter().any(|&b| b != 0) {
        return Err("the journal header's reserved bytes are not zero");
    }
    Ok(())
}

/// One journal entry: an order was created, or moved one step along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Create {
        number: u64,
        menu: MenuIndex,
        idempotency_key: &'a [u8],
    },
    Transition {
        number: u64,
        status: Status,
    },
}

/// Appends `record` with sequence number `seq` to `out`.
///
/// Panics on a key longer than [`MAX_IDEMPOTENCY_KEY_BYTES`] or a menu index outside
/// [`MENU`]: callers validate both before anything is queued, and writing either would
/// make the journal unreadable.
pub fn encode(seq: u64, record: &Record<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    let total_bytes = match record {
        Record::Create {
            idempotency_key, ..
        } => PREFIX_BYTES + CREATE_FIXED_BYTES + idempotency_key.len(),
        Record::Transition { .. } => TRANSITION_BYTES,
    };
    // Bounded by MAX_RECORD_BYTES once the key length is checked below.
    out.extend_from_slice(&(total_bytes as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the crc, filled in once the rest is there
    out.extend_from_slice(&seq.to_le_bytes());
    match *record {
        Record::Create {
            number,
            menu,
            idempotency_key,
        } => {
            assert!(
                idempotency_key.len() <= MAX_IDEMPOTENCY_KEY_BYTES,
                "idempotency key of {} bytes is over the limit",
                idempotency_key.len()
            );
            assert!(
                usize::from(menu) < MENU.len(),
                "menu index {menu} is not on the menu"
            );
            out.push(KIND_CREATE);
            out.extend_from_slice(&number.to_le_bytes());
            out.push(menu);
            out.push(idempotency_key.len() as u8);
            out.extend_from_slice(idempotency_key);
        }
        Record::Transition { number, status } => {
            out.push(KIND_TRANSITION);
            out.extend_from_slice(&number.to_le_bytes());
            out.push(status as u8);
        }
    }
    let crc = checksum(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A sound record with the expected sequence number, `len` bytes long.
    Record { record: Record<'a>, len: usize },
    /// The buffer ends before the record does (or before its length field does).
    Incomplete,
    /// These bytes are not the record that should be here.
    Corrupt(&'static str),
}

/// Reads the record at the start of `buf`, which must carry sequence number
/// `expected_seq`. Never panics and never looks past `buf`.
pub fn decode(buf: &[u8], expected_seq: u64) -> Decoded<'_> {
    match decode_any_sequence(buf) {
        Decoded::Record { record, len } => {
            if read_u64(buf, 8) == expected_seq {
                Decoded::Record { record, len }
            } else {
                Decoded::Corrupt("the record's sequence number is not the next one")
            }
        }
        other => other,
    }
}

/// Like [`decode`], but accepts any sequence number and returns it: recovery uses it
/// to look past damage for records that would prove the damage is not at the tail.
pub(crate) fn decode_with_sequence(buf: &[u8]) -> Option<(u64, usize)> {
    match decode_any_sequence(buf) {
        Decoded::Record { len, .. } => Some((read_u64(buf, 8), len)),
        Decoded::Incomplete | Decoded::Corrupt(_) => None,
    }
}

fn decode_any_sequence(buf: &[u8]) -> Decoded<'_> {
    let Some(length_field) = buf.get(..4) else {
        return Decoded::Incomplete;
    };
    let len = u32::from_le_bytes([
        length_field[0],
        length_field[1],
        length_field[2],
        length_field[3],
    ]) as usize;
    if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&len) {
        return Decoded::Corrupt("the record length is out of range");
    }
    let Some(bytes) = buf.get(..len) else {
        return Decoded::Incomplete;
    };
    if read_u32(bytes, 4) != checksum(bytes) {
        return Decoded::Corrupt("the record checksum does not match");
    }
    // From here on the bytes are what some writer meant; a mismatch is a format bug
    // or a record from a different build, still reported rather than trusted.
    let payload = &bytes[PREFIX_BYTES..];
    let record = match bytes[PREFIX_BYTES - 1] {
        KIND_CREATE => {
            if payload.len() < CREATE_FIXED_BYTES {
                return Decoded::Corrupt("a create record is too short");
            }
            let menu = payload[8];
            let key_bytes = usize::from(payload[9]);
            if usize::from(menu) >= MENU.len() {
                return Decoded::Corrupt("a create record names an unknown menu item");
            }
            if payload.len() != CREATE_FIXED_BYTES + key_bytes {
                return Decoded::Corrupt("a create record's key length does not match its length");
            }
            Record::Create {
                number: read_u64(payload, 0),
                menu,
                idempotency_key: &payload[CREATE_FIXED_BYTES..],
            }
        }
        KIND_TRANSITION => {
            if len != TRANSITION_BYTES {
                return Decoded::Corrupt("a transition record has the wrong length");
            }
            let Some(status) = Status::from_u8(payload[8]) else {
                return Decoded::Corrupt("a transition record names an unknown status");
            };
            Record::Transition {
                number: read_u64(payload, 0),
                status,
            }
        }
        _ => return Decoded::Corrupt("unknown record kind"),
    };
    Decoded::Record { record, len }
}

/// CRC-32 of a whole record except its crc field.
fn checksum(record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[..4]);
    hasher.update(&record[8..]);
    hasher.finalize()
}

/// Callers have checked that `buf` holds the bytes.
fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

/// Callers have checked that `buf` holds the bytes.
fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(seq: u64, record: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(seq, record, &mut out);
        out
    }

    #[test]
    fn header_round_trips_and_rejects_strangers() {
        let mut header = Vec::new();
        encode_header(&mut header);
        assert_eq!(header.len(), HEADER_LEN);
        assert_eq!(check_header(&header), Ok(()));
        assert!(check_header(&header[..HEADER_LEN - 1]).is_err());
        let mut wrong_magic = header.clone();
        wrong_magic[0] ^= 1;
        assert!(check_header(&wrong_magic).is_err());
        let mut wrong_version = header.clone();
        wrong_version[8] = JOURNAL_VERSION + 1;
        assert!(check_header(&wrong_version).is_err());
    }

    #[test]
    fn record_sizes_are_the_documented_bounds() {
        let longest_key = [7u8; MAX_IDEMPOTENCY_KEY_BYTES];
        let longest = Record::Create {
            number: 1,
            menu: 0,
            idempotency_key: &longest_key,
        };
        let shortest = Record::Transition {
            number: 1,
            status: Status::Completed,
        };
        assert_eq!(encoded(1, &longest).len(), MAX_RECORD_BYTES);
        assert_eq!(encoded(1, &shortest).len(), MIN_RECORD_BYTES);
    }

    #[test]
    fn wrong_expected_sequence_is_corrupt() {
        let record = Record::Transition {
            number: 3,
            status: Status::WaitingPickup,
        };
        let bytes = encoded(5, &record);
        assert!(matches!(decode(&bytes, 5), Decoded::Record { .. }));
        assert!(matches!(decode(&bytes, 4), Decoded::Corrupt(_)));
        assert!(matches!(decode(&bytes, 6), Decoded::Corrupt(_)));
        assert_eq!(decode_with_sequence(&bytes), Some((5, bytes.len())));
    }

    #[test]
    fn oversize_or_undersize_length_is_corrupt_without_reading_on() {
        for bad_len in [
            0u32,
            MIN_RECORD_BYTES as u32 - 1,
            MAX_RECORD_BYTES as u32 + 1,
            u32::MAX,
        ] {
            // A short buffer proves the length is judged before anything else is read.
            let bytes = bad_len.to_le_bytes();
            assert!(
                matches!(decode(&bytes, 1), Decoded::Corrupt(_)),
                "length {bad_len}"
            );
        }
        assert_eq!(
            decode(&[0; 64], 1),
            Decoded::Corrupt("the record length is out of range")
        );
    }

    #[test]
    fn empty_buffer_is_incomplete() {
        assert_eq!(decode(&[], 1), Decoded::Incomplete);
    }

    /// A record that owns its key, so proptest can generate it.
    #[derive(Debug, Clone)]
    enum Owned {
        Create(u64, MenuIndex, Vec<u8>),
        Transition(u64, Status),
    }

    impl Owned {
        fn record(&self) -> Record<'_> {
            match self {
                Owned::Create(number, menu, key) => Record::Create {
                    number: *number,
                    menu: *menu,
                    idempotency_key: key,
                },
                Owned::Transition(number, status) => Record::Transition {
                    number: *number,
                    status: *status,
                },
            }
        }
    }

    fn any_record() -> impl Strategy<Value = Owned> {
        prop_oneof![
            (
                any::<u64>(),
                0..MENU.len() as MenuIndex,
                prop::collection::vec(any::<u8>(), 0..=MAX_IDEMPOTENCY_KEY_BYTES),
            )
                .prop_map(|(number, menu, key)| Owned::Create(number, menu, key)),
            (any::<u64>(), prop::sample::select(Status::ALL.to_vec()))
                .prop_map(|(number, status)| Owned::Transition(number, status)),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(
            owned in any_record(),
            seq in any::<u64>(),
            trailing in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let record = owned.record();
            let mut bytes = encoded(seq, &record);
            let len = bytes.len();
            // Whatever follows a record must not change how it reads.
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(decode(&bytes, seq), Decoded::Record { record, len });
        }

        #[test]
        fn every_truncation_is_incomplete(owned in any_record(), seq in any::<u64>()) {
            let bytes = encoded(seq, &owned.record());
            for cut in 0..bytes.len() {
                prop_assert_eq!(decode(&bytes[..cut], seq), Decoded::Incomplete, "cut at {}", cut);
            }
        }

        #[test]
        fn any_flipped_bit_is_detected(owned in any_record(), seq in any::<u64>()) {
            let bytes = encoded(seq, &owned.record());
            for bit in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                let outcome = decode(&damaged, seq);
                prop_assert!(
                    matches!(outcome, Decoded::Corrupt(_) | Decoded::Incomplete),
                    "bit {} gave {:?}", bit, outcome
                );
            }
        }
    }
}
