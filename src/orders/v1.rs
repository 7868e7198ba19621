//! Reads journals of format version 1, which releases before batch framing wrote, so
//! that start-up can upgrade them (`journal.rs`) and the tool can verify them.
//!
//! ```text
//! header (16 bytes):  magic "KAKIJRNL" (8) | version 1 (1) | reserved, zero (7)
//! record:             length u32 | crc u32 | sequence u64 | kind u8 | payload
//!   Create     kind 1: number u64 | menu u8 | key length u8 | key (0..=128 bytes)
//!   Transition kind 2: number u64 | status u8
//! ```
//!
//! Little-endian; `length` counts the whole record; `crc` is CRC-32 over the length
//! field and everything after the crc. Records carry no times. Without batches, a torn
//! tail is told from damage as that release did: the first bad record ends the journal
//! unless a valid record with a later sequence number follows it somewhere.

use std::mem;

use crate::menu::MENU;
use crate::orders::journal::Damage;
use crate::orders::record::{self, read_u64, BatchEncoder, Record, BATCH_RECORDS_MAX};
use crate::orders::rules::Replay;
use crate::orders::{Status, IDEMPOTENCY_KEY_BYTES_MAX, TIME_UNKNOWN};

/// Magic, version and seven reserved zero bytes.
pub const HEADER_LEN: usize = 16;

const PREFIX_BYTES: usize = 4 + 4 + 8 + 1;
const CREATE_FIXED_BYTES: usize = 8 + 1 + 1;
const TRANSITION_BYTES: usize = PREFIX_BYTES + 8 + 1;
const MIN_RECORD_BYTES: usize = TRANSITION_BYTES;
const MAX_RECORD_BYTES: usize = PREFIX_BYTES + CREATE_FIXED_BYTES + IDEMPOTENCY_KEY_BYTES_MAX;
const KIND_CREATE: u8 = 1;
const KIND_TRANSITION: u8 = 2;

/// Where a version 1 journal's sound records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The end of the last sound record.
    pub valid_len: usize,
    /// The sequence number the next record would carry.
    pub next_seq: u64,
}

/// A version 1 journal in today's format.
#[derive(Debug)]
pub struct Upgrade {
    /// The whole new file: a version 2 header with `journal_id`, then every sound
    /// record, in order and with its sequence number, in batches as large as allowed.
    pub bytes: Vec<u8>,
    /// The bytes of the old file's torn tail, which are not carried over.
    pub torn_bytes: u64,
}

/// Converts the version 1 journal `bytes`, checking every record against the rules as
/// it goes (so damage is reported at its offset in the old file).
pub fn upgrade(bytes: &[u8], journal_id: u64) -> Result<Upgrade, Damage> {
    let mut replay = Replay::default();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2);
    record::encode_header(journal_id, &mut out);
    let mut batch = BatchEncoder::default();
    let mut first_seq = 1;
    let tail = read(bytes, |record| {
        replay
            .apply(&record)
            .map_err(|violation| violation.to_string())?;
        batch.push(&record);
        if batch.records() == BATCH_RECORDS_MAX {
            out.extend_from_slice(&mem::take(&mut batch).finish(journal_id, first_seq));
            first_seq += BATCH_RECORDS_MAX as u64;
        }
        Ok(())
    })?;
    if batch.records() > 0 {
        out.extend_from_slice(&batch.finish(journal_id, first_seq));
    }
    Ok(Upgrade {
        bytes: out,
        torn_bytes: (bytes.len() - tail.valid_len) as u64,
    })
}

/// Hands every sound record of the version 1 journal `bytes` (header checked by the
/// caller) to `each`, in order; their times are
/// [`TIME_UNKNOWN`]. An error from `each` stops the read as damage at that record.
pub fn read<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(Record<'a>) -> Result<(), String>,
) -> Result<Tail, Damage> {
    let mut offset = HEADER_LEN;
    let mut next_seq = 1;
    while offset < bytes.len() {
        let failure = match decode(&bytes[offset..]) {
            Ok((seq, record, len)) if seq == next_seq => {
                each(record).map_err(|reason| Damage {
                    offset: offset as u64,
                    reason,
                })?;
                offset += len;
                next_seq += 1;
                continue;
            }
            Ok(_) => "the record's sequence number is not the next one",
            Err(reason) => reason,
        };
        if let Some((later_offset, later_seq)) = find_later_record(bytes, offset, next_seq) {
            return Err(Damage {
                offset: offset as u64,
                reason: format!(
                    "{failure} (expected sequence number {next_seq}), yet a valid record with \
                     sequence number {later_seq} follows at byte offset {later_offset}"
                ),
            });
        }
        break;
    }
    Ok(Tail {
        valid_len: offset,
        next_seq,
    })
}

/// A valid record past `damage_offset` with a sequence number a later record could
/// carry (older ones are stale bytes, not data).
fn find_later_record(
    bytes: &[u8],
    damage_offset: usize,
    expected_seq: u64,
) -> Option<(usize, u64)> {
    let remaining_bytes = bytes.len() - damage_offset;
    let latest_plausible_seq = expected_seq + (remaining_bytes / MIN_RECORD_BYTES) as u64;
    (damage_offset + 1..bytes.len()).find_map(|offset| {
        let (seq, _, _) = decode(&bytes[offset..]).ok()?;
        (expected_seq..=latest_plausible_seq)
            .contains(&seq)
            .then_some((offset, seq))
    })
}

/// The record at the start of `buf`: its sequence number, the record and its length.
/// An incomplete record is an error like any other here: both end the sound part.
fn decode(buf: &[u8]) -> Result<(u64, Record<'_>, usize), &'static str> {
    let Some(length_field) = buf.get(..4) else {
        return Err("the last record is incomplete");
    };
    let len = u32::from_le_bytes(length_field.try_into().expect("four bytes")) as usize;
    if !(MIN_RECORD_BYTES..=MAX_RECORD_BYTES).contains(&len) {
        return Err("the record length is out of range");
    }
    let Some(bytes) = buf.get(..len) else {
        return Err("the last record is incomplete");
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..4]);
    hasher.update(&bytes[8..]);
    if u32::from_le_bytes(bytes[4..8].try_into().expect("four bytes")) != hasher.finalize() {
        return Err("the record checksum does not match");
    }
    let payload = &bytes[PREFIX_BYTES..];
    let number = read_u64(payload, 0);
    let record = match bytes[PREFIX_BYTES - 1] {
        KIND_CREATE => {
            let menu = *payload.get(8).ok_or("a create record is too short")?;
            let key_bytes = usize::from(*payload.get(9).ok_or("a create record is too short")?);
            if usize::from(menu) >= MENU.len() {
                return Err("a create record names an unknown menu item");
            }
            if payload.len() != CREATE_FIXED_BYTES + key_bytes {
                return Err("a create record's key length does not match its length");
            }
            Record::Create {
                number,
                menu,
                time_ms: TIME_UNKNOWN,
                idempotency_key: &payload[CREATE_FIXED_BYTES..],
            }
        }
        KIND_TRANSITION if len == TRANSITION_BYTES => Record::Transition {
            number,
            status: Status::from_u8(payload[8])
                .ok_or("a transition record names an unknown status")?,
            time_ms: TIME_UNKNOWN,
        },
        KIND_TRANSITION => return Err("a transition record has the wrong length"),
        _ => return Err("unknown record kind"),
    };
    Ok((read_u64(bytes, 8), record, len))
}

/// Writes version 1 journals, as the release before batch framing did, for tests.
#[cfg(test)]
pub(crate) mod write {
    use super::*;

    pub fn header(out: &mut Vec<u8>) {
        out.extend_from_slice(crate::orders::record::FILE_MAGIC);
        out.push(1);
        out.extend_from_slice(&[0; 7]);
    }

    pub fn record(seq: u64, record: &Record<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&seq.to_le_bytes());
        match *record {
            Record::Create {
                number,
                menu,
                idempotency_key,
                ..
            } => {
                out.push(KIND_CREATE);
                out.extend_from_slice(&number.to_le_bytes());
                out.push(menu);
                out.push(idempotency_key.len() as u8);
                out.extend_from_slice(idempotency_key);
            }
            Record::Transition { number, status, .. } => {
                out.push(KIND_TRANSITION);
                out.extend_from_slice(&number.to_le_bytes());
                out.push(status as u8);
            }
        }
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&out[start..start + 4]);
        hasher.update(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&hasher.finalize().to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(records: &[Record<'_>]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        write::header(&mut bytes);
        let mut ends = Vec::new();
        for (i, record) in records.iter().enumerate() {
            write::record(i as u64 + 1, record, &mut bytes);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    fn sample() -> Vec<Record<'static>> {
        vec![
            Record::Create {
                number: 1,
                menu: 1,
                time_ms: TIME_UNKNOWN,
                idempotency_key: b"guest",
            },
            Record::Transition {
                number: 1,
                status: Status::WaitingPickup,
                time_ms: TIME_UNKNOWN,
            },
            Record::Create {
                number: 2,
                menu: 3,
                time_ms: TIME_UNKNOWN,
                idempotency_key: b"",
            },
        ]
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<Record<'_>>, Tail), Damage> {
        let mut records = Vec::new();
        let tail = read(bytes, |record| {
            records.push(record);
            Ok(())
        })?;
        Ok((records, tail))
    }

    #[test]
    fn reads_every_record_in_order() {
        let (bytes, ends) = journal(&sample());
        let (records, tail) = read_all(&bytes).unwrap();
        assert_eq!(records, sample());
        assert_eq!(
            tail,
            Tail {
                valid_len: ends[2],
                next_seq: 4
            }
        );
    }

    #[test]
    fn a_torn_last_record_ends_the_journal_at_every_byte() {
        let (bytes, ends) = journal(&sample());
        for cut in ends[1]..bytes.len() {
            let (records, tail) = read_all(&bytes[..cut]).unwrap();
            assert_eq!(records.len(), 2, "cut at {cut}");
            assert_eq!(tail.valid_len, ends[1]);
        }
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 4096]);
        assert_eq!(read_all(&padded).unwrap().1.valid_len, ends[2]);
    }

    #[test]
    fn damage_before_a_valid_record_is_refused() {
        let (mut bytes, ends) = journal(&sample());
        bytes[ends[0] + 20] ^= 0x40;
        let damage = read_all(&bytes).unwrap_err();
        assert_eq!(damage.offset, ends[0] as u64);
        assert!(
            damage.reason.contains("yet a valid record"),
            "{}",
            damage.reason
        );
    }

    #[test]
    fn a_refusal_from_the_caller_is_damage_at_that_record() {
        let (bytes, ends) = journal(&sample());
        let mut seen = 0;
        let damage = read(&bytes, |_| {
            seen += 1;
            if seen == 2 {
                Err("no".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(damage.offset, ends[0] as u64);
        assert_eq!(damage.reason, "no");
    }
}
