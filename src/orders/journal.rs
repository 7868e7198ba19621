//! Start-up recovery: replays the journal into the orders it describes, before any
//! executor runs, with plain `std::fs`.
//!
//! The one kind of damage a crash can cause is a batch the writer never finished: the
//! last group commit's bytes, partly or not at all on disk, in any order of pages, or
//! zero padding after them. That batch was never acknowledged (acks wait for
//! fdatasync, and no batch is written before the one ahead of it is durable), so it is
//! cut off with a warning. Anything else — a complete, valid batch after bad bytes, a
//! record the order rules refuse, a foreign header — means the file is not what this
//! program wrote, and dropping it would drop acknowledged orders: recovery refuses and
//! tells the operator what to do instead.
//!
//! A journal of format version 1 is upgraded here: converted in memory (every record,
//! number and key kept; times unknown), written next to it, fsynced and renamed over
//! it. A crash before the rename leaves the old file, and the next start redoes it.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::orders::durable;
use crate::orders::record::{self, DecodedBatch, Header, HEADER_LEN, MIN_RECORD_BYTES};
use crate::orders::rules::{Replay, Rules};
use crate::orders::{v1, Order};

/// The journal's name in the data directory.
pub const FILE_NAME: &str = "orders.journal";
/// The journal file's mode when this program makes it.
const JOURNAL_MODE: u32 = 0o644;

/// Everything the journal says, ready for the order book and the read index.
#[derive(Debug)]
pub struct Recovered {
    /// Every order in its latest state; index `i` holds order number `i + 1`.
    pub orders: Vec<Order>,
    /// The rules' state after the last record: numbering, keys, latest time.
    pub rules: Rules,
    /// The id the journal's batch checksums are keyed with.
    pub journal_id: u64,
    /// The sequence number the next record must carry.
    pub next_seq: u64,
    /// Where the next batch goes: the file's length after recovery.
    pub valid_len: u64,
    /// How many bytes of an unfinished last batch were cut off (0 after a clean stop).
    pub torn_bytes: u64,
    /// The journal, exclusively locked (`flock`) so that a second kakigori on the same
    /// data directory cannot append to it too. The order book holds it for its life.
    pub(crate) file: File,
}

/// What a journal's bytes hold, read without changing anything (start-up and the
/// `kakigori journal` tool share it).
#[derive(Debug)]
pub struct Scan {
    /// The orders and the rules' state after the last complete batch.
    pub replay: Replay,
    pub journal_id: u64,
    /// The format version of the file read (1 is converted in memory).
    pub version: u8,
    /// Complete batches read (of the converted journal, for version 1).
    pub batches: u64,
    /// The sequence number the next record must carry.
    pub next_seq: u64,
    /// Where the next batch goes.
    pub valid_len: u64,
    /// Bytes past the last complete batch: a write that never finished (or, while a
    /// server runs, one in progress).
    pub torn_bytes: u64,
    /// For a version 1 file: the same journal in today's format, to put in its place.
    pub upgraded: Option<Vec<u8>>,
}

/// Damage found at a byte offset of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub reason: String,
}

/// Why the journal cannot be used.
#[derive(Debug)]
pub enum JournalError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// Damage that is not an unfinished last batch, or a record the rules refuse.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    BadHeader {
        path: PathBuf,
        reason: &'static str,
    },
    /// Another process holds the journal's lock: another kakigori is running on
    /// this data directory.
    Unavailable,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { path, source } => {
                write!(f, "journal {}: {source}", path.display())
            }
            JournalError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "journal {path} is damaged at byte offset {offset}: {reason}. Refusing to start \
                 rather than drop acknowledged orders. Keep a copy of the file, inspect it from \
                 that offset (e.g. `xxd -s {offset} {path}`), and if you accept losing every \
                 record from there on, truncate it (`truncate -s {offset} {path}`) and restart",
                path = path.display()
            ),
            JournalError::BadHeader { path, reason } => write!(
                f,
                "{} is not a journal this build can read: {reason}. Check the data directory \
                 setting; move the file away only if it holds no orders you need",
                path.display()
            ),
            JournalError::Unavailable => write!(
                f,
                "the journal is locked by another process: is another kakigori running on \
                 this data directory?"
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Opens (or creates) the journal at `path`, locks it, replays it, cuts an unfinished
/// last batch and upgrades a version 1 file. The parent directory must exist.
pub fn recover(path: &Path) -> Result<Recovered, JournalError> {
    let io_error = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    if !path.try_exists().map_err(io_error)? {
        let mut header = Vec::with_capacity(HEADER_LEN);
        record::encode_header(rand::random(), &mut header);
        // Never half-written: a file there without a full header is not ours.
        durable::replace_file(path, &header, JOURNAL_MODE).map_err(io_error)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error)?;
    lock(&file).map_err(|error| error.with_path(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_error)?;
    let mut scan = scan(path, &bytes)?;

    if scan.torn_bytes > 0 {
        log::warn!(
            "journal {}: cut {} bytes of an unfinished last batch at byte offset {} (a write \
             from before the last stop that never completed; nothing in it was acknowledged)",
            path.display(),
            scan.torn_bytes,
            bytes.len() as u64 - scan.torn_bytes,
        );
    }
    if let Some(upgraded) = scan.upgraded.take() {
        log::info!(
            "journal {}: upgrading from format version 1 to {} ({} orders, {} records)",
            path.display(),
            record::JOURNAL_VERSION,
            scan.replay.orders.len(),
            scan.next_seq - 1
        );
        file = replace_locked(path, &upgraded).map_err(|error| error.with_path(path))?;
        log::info!(
            "journal {}: upgraded; every order, number and idempotency key carried over, \
             times of the orders before the upgrade unknown",
            path.display()
        );
    } else if scan.torn_bytes > 0 {
        file.set_len(scan.valid_len).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
    }
    Ok(Recovered {
        orders: scan.replay.orders,
        rules: scan.replay.rules,
        journal_id: scan.journal_id,
        next_seq: scan.next_seq,
        valid_len: scan.valid_len,
        torn_bytes: scan.torn_bytes,
        file,
    })
}

/// Reads the journal `bytes` (of the file at `path`, named in errors).
pub fn scan(path: &Path, bytes: &[u8]) -> Result<Scan, JournalError> {
    let bad_header = |reason| JournalError::BadHeader {
        path: path.to_owned(),
        reason,
    };
    let corrupt = |damage: Damage| JournalError::Corrupt {
        path: path.to_owned(),
        offset: damage.offset,
        reason: damage.reason,
    };
    match record::read_header(bytes).map_err(bad_header)? {
        Header::V2 { journal_id } => scan_batches(bytes, journal_id).map_err(corrupt),
        Header::V1 => {
            let upgrade = v1::upgrade(bytes, rand::random()).map_err(corrupt)?;
            let journal_id = match record::read_header(&upgrade.bytes) {
                Ok(Header::V2 { journal_id }) => journal_id,
                other => panic!("the upgrade wrote a header that reads as {other:?}"),
            };
            // The converted journal goes through the same checks as any other.
            let converted = scan_batches(&upgrade.bytes, journal_id)
                .unwrap_or_else(|damage| panic!("the upgrade wrote a journal with {damage:?}"));
            assert_eq!(converted.torn_bytes, 0, "the upgrade wrote a torn journal");
            Ok(Scan {
                version: 1,
                torn_bytes: upgrade.torn_bytes,
                upgraded: Some(upgrade.bytes),
                ..converted
            })
        }
    }
}

/// Replays the batches of a version 2 journal.
fn scan_batches(bytes: &[u8], journal_id: u64) -> Result<Scan, Damage> {
    let mut replay = Replay::default();
    let mut offset = HEADER_LEN;
    let mut next_seq = 1;
    let mut batches = 0;
    while offset < bytes.len() {
        let failure = match record::decode_batch(&bytes[offset..], journal_id, next_seq) {
            DecodedBatch::Batch(batch) => {
                for (at, record) in batch.records() {
                    replay.apply(&record).map_err(|violation| Damage {
                        offset: (offset + at) as u64,
                        reason: violation.to_string(),
                    })?;
                }
                offset += batch.len;
                next_seq += batch.records as u64;
                batches += 1;
                continue;
            }
            DecodedBatch::Incomplete => "the last batch is incomplete",
            DecodedBatch::Corrupt(reason) => reason,
        };
        let plausible_seqs =
            next_seq..=next_seq + ((bytes.len() - offset) / MIN_RECORD_BYTES) as u64;
        if let Some((later_offset, later)) =
            record::find_batch(bytes, offset, journal_id, plausible_seqs)
        {
            return Err(Damage {
                offset: offset as u64,
                reason: format!(
                    "{failure} (expected sequence number {next_seq}), yet a complete, valid batch \
                     starting at sequence number {} follows at byte offset {later_offset}",
                    later.first_seq
                ),
            });
        }
        break;
    }
    Ok(Scan {
        replay,
        journal_id,
        version: record::JOURNAL_VERSION,
        batches,
        next_seq,
        valid_len: offset as u64,
        torn_bytes: (bytes.len() - offset) as u64,
        upgraded: None,
    })
}

/// Puts `bytes` at `path` in place of the file there, and returns the new file,
/// locked before its name appears so no other kakigori can take it.
fn replace_locked(path: &Path, bytes: &[u8]) -> Result<File, LockError> {
    let (temporary, mut file) = durable::create_temporary(path, JOURNAL_MODE)?;
    lock(&file)?;
    file.write_all(bytes)?;
    durable::commit(&temporary, &file, path)?;
    Ok(file)
}

/// Why a journal could not be locked or written.
enum LockError {
    Held,
    Io(io::Error),
}

impl From<io::Error> for LockError {
    fn from(error: io::Error) -> Self {
        LockError::Io(error)
    }
}

impl LockError {
    fn with_path(self, path: &Path) -> JournalError {
        match self {
            LockError::Held => JournalError::Unavailable,
            LockError::Io(source) => JournalError::Io {
                path: path.to_owned(),
                source,
            },
        }
    }
}

fn lock(file: &File) -> Result<(), LockError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(LockError::Held),
        Err(TryLockError::Error(source)) => Err(LockError::Io(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::MenuIndex;
    use crate::orders::record::{BatchEncoder, Record};
    use crate::orders::{Status, TIME_UNKNOWN};
    use proptest::prelude::*;
    use std::fs;
    use tempfile::TempDir;

    const ID: u64 = 0x0123_4567_89ab_cdef;
    const PAGE_BYTES: usize = 4096;

    fn journal_path(dir: &TempDir) -> PathBuf {
        dir.path().join("orders.journal")
    }

    /// A journal's bytes holding `batches`, numbered from sequence 1, and where each
    /// batch ends.
    fn journal_bytes(batches: &[Vec<Record<'_>>]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        record::encode_header(ID, &mut bytes);
        let mut ends = Vec::new();
        let mut seq = 1;
        for records in batches {
            let mut batch = BatchEncoder::default();
            for r in records {
                batch.push(r);
            }
            bytes.extend(batch.finish(ID, seq));
            seq += records.len() as u64;
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    fn create(number: u64, menu: MenuIndex, key: &[u8]) -> Record<'_> {
        Record::Create {
            number,
            menu,
            time_ms: 1_000 + number,
            idempotency_key: key,
        }
    }

    fn transition(number: u64, status: Status) -> Record<'static> {
        Record::Transition {
            number,
            status,
            time_ms: 2_000 + number,
        }
    }

    /// `batches` with times 1000, 1001, … in journal order, as the committer stamps them.
    fn stamped(mut batches: Vec<Vec<Record<'static>>>) -> Vec<Vec<Record<'static>>> {
        for (i, record) in batches.iter_mut().flatten().enumerate() {
            let at = 1_000 + i as u64;
            match record {
                Record::Create { time_ms, .. } | Record::Transition { time_ms, .. } => {
                    *time_ms = at
                }
            }
        }
        batches
    }

    fn sample_batches() -> Vec<Vec<Record<'static>>> {
        stamped(vec![
            vec![create(1, 0, b"alpha"), create(2, 3, b"")],
            vec![transition(1, Status::WaitingPickup)],
            vec![
                create(3, 1, b"beta"),
                transition(1, Status::Completed),
                transition(3, Status::WaitingPickup),
            ],
        ])
    }

    /// Batches whose last one spans several pages, as a burst of orders makes.
    fn long_batches() -> Vec<Vec<Record<'static>>> {
        // Distinct 100-byte keys; leaked, as records borrow their keys.
        let key = |n: u64| -> &'static [u8] { format!("{n:0>100}").into_bytes().leak() };
        let mut batches = sample_batches();
        batches.push((4..64).map(|n| create(n, 2, b"")).collect());
        batches.push((64..200).map(|n| create(n, 1, key(n))).collect());
        stamped(batches)
    }

    fn expect_corrupt(result: Result<Recovered, JournalError>) -> (u64, String) {
        match result {
            Err(error @ JournalError::Corrupt { offset, .. }) => (offset, error.to_string()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn recover_on_an_empty_directory_creates_a_valid_journal() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let recovered = recover(&path).unwrap();
        assert!(recovered.orders.is_empty());
        assert_eq!(recovered.rules.keys(), 0);
        assert_eq!(recovered.next_seq, 1);
        assert_eq!(recovered.valid_len, HEADER_LEN as u64);
        assert_eq!(recovered.torn_bytes, 0);
        let id = recovered.journal_id;
        drop(recovered);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(
            record::read_header(&bytes),
            Ok(Header::V2 { journal_id: id })
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        // And it opens again, unchanged.
        let again = recover(&path).unwrap();
        assert_eq!(again.valid_len, HEADER_LEN as u64);
        assert_eq!(again.journal_id, id);
    }

    #[test]
    fn replays_creates_transitions_times_and_idempotency_keys() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let (bytes, ends) = journal_bytes(&sample_batches());
        fs::write(&path, &bytes).unwrap();
        let recovered = recover(&path).unwrap();
        let order = |number, menu, status, created_ms, updated_ms| Order {
            number,
            menu,
            status,
            created_ms,
            updated_ms,
        };
        assert_eq!(
            recovered.orders,
            vec![
                order(1, 0, Status::Completed, 1_000, 1_004),
                order(2, 3, Status::Pending, 1_001, 1_001),
                order(3, 1, Status::WaitingPickup, 1_003, 1_005),
            ]
        );
        assert_eq!(recovered.rules.keys(), 2);
        assert_eq!(recovered.rules.order_of_key(b"alpha"), Some(1));
        assert_eq!(recovered.rules.order_of_key(b"beta"), Some(3));
        assert_eq!(recovered.next_seq, 7);
        assert_eq!(recovered.journal_id, ID);
        assert_eq!(recovered.valid_len, *ends.last().unwrap() as u64);
        assert_eq!(recovered.torn_bytes, 0);
    }

    #[test]
    fn a_second_recover_while_the_first_holds_the_journal_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let first = recover(&path).unwrap();
        assert!(matches!(recover(&path), Err(JournalError::Unavailable)));
        drop(first);
        recover(&path).unwrap();
    }

    /// Recovers `bytes` and checks it kept exactly the first `kept` batches.
    fn assert_recovers_to(path: &Path, bytes: &[u8], ends: &[usize], kept: usize, what: &str) {
        fs::write(path, bytes).unwrap();
        let recovered = recover(path).unwrap_or_else(|e| panic!("{what}: {e}"));
        let valid_len = if kept == 0 {
            HEADER_LEN
        } else {
            ends[kept - 1]
        };
        assert_eq!(recovered.valid_len, valid_len as u64, "{what}");
        assert_eq!(
            recovered.torn_bytes,
            (bytes.len() - valid_len) as u64,
            "{what}"
        );
        drop(recovered);
        assert_eq!(
            fs::metadata(path).unwrap().len(),
            valid_len as u64,
            "{what}"
        );
    }

    #[test]
    fn a_last_batch_torn_at_every_byte_recovers_to_the_batches_before_it() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let batches = sample_batches();
        let (full, ends) = journal_bytes(&batches);
        let last_start = ends[ends.len() - 2];
        for cut in last_start..full.len() {
            assert_recovers_to(&path, &full[..cut], &ends, 2, &format!("cut at {cut}"));
            // Zeros where the rest would be, as a file extended but not written.
            let mut zeroed = full.clone();
            zeroed[cut..].fill(0);
            if cut < full.len() {
                assert_recovers_to(&path, &zeroed, &ends, 2, &format!("zeros from {cut}"));
            }
        }
        // Write the lost batch again where recovery says, and it replays.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&full[last_start..]).unwrap();
        drop(file);
        let recovered = recover(&path).unwrap();
        assert_eq!(recovered.torn_bytes, 0);
        assert_eq!(recovered.orders[2].status, Status::WaitingPickup);
    }

    #[test]
    fn a_last_batch_torn_at_every_page_boundary_recovers_to_the_batches_before_it() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let (full, ends) = journal_bytes(&long_batches());
        let last_start = ends[ends.len() - 2];
        let kept = ends.len() - 1;
        let boundaries: Vec<usize> = (1..)
            .map(|page| page * PAGE_BYTES)
            .skip_while(|&b| b <= last_start)
            .take_while(|&b| b < full.len())
            .collect();
        assert!(boundaries.len() >= 3, "the last batch spans pages");
        for &boundary in &boundaries {
            // Only the pages before the boundary reached the disk.
            assert_recovers_to(&path, &full[..boundary], &ends, kept, "head only");
            // Only the pages after it: zeros up to the boundary (the reported failure).
            let mut later_only = full.clone();
            later_only[last_start..boundary].fill(0);
            assert_recovers_to(&path, &later_only, &ends, kept, "tail only");
            // One page in the middle lost.
            let mut holed = full.clone();
            holed[boundary - PAGE_BYTES.min(boundary - last_start)..boundary].fill(0);
            assert_recovers_to(&path, &holed, &ends, kept, "a page lost");
        }
    }

    #[test]
    fn damage_followed_by_a_complete_batch_is_refused_with_its_offset() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let (original, ends) = journal_bytes(&sample_batches());
        // Damage the second batch's header, then (separately) its body.
        for damage_at in [ends[0] + 2, ends[0] + 10, ends[0] + 30] {
            let mut bytes = original.clone();
            bytes[damage_at] ^= 0x40;
            fs::write(&path, &bytes).unwrap();
            let (offset, message) = expect_corrupt(recover(&path));
            assert_eq!(offset, ends[0] as u64);
            assert!(
                message.contains(&format!(
                    "(expected sequence number 3), yet a complete, valid batch starting at \
                     sequence number 4 follows at byte offset {}",
                    ends[1]
                )),
                "{message}"
            );
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("Refusing to start"), "{message}");
            assert!(message.contains("truncate -s"), "{message}");
            // Nothing was cut.
            assert_eq!(fs::read(&path).unwrap(), bytes);
        }
    }

    #[test]
    fn stale_batches_after_the_tail_are_cut_not_mistaken_for_data() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let (mut bytes, ends) = journal_bytes(&sample_batches());
        // A copy of the first two batches, as a padded rewrite over old data leaves.
        bytes.extend_from_within(HEADER_LEN..ends[1]);
        assert_recovers_to(&path, &bytes, &ends, 3, "stale copy");
    }

    #[test]
    fn a_batch_of_another_journal_does_not_count() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let (mut bytes, ends) = journal_bytes(&sample_batches());
        bytes.extend_from_slice(&[0; 40]);
        let mut foreign = BatchEncoder::default();
        foreign.push(&create(4, 0, b""));
        bytes.extend(foreign.finish(ID ^ 1, 7));
        assert_recovers_to(&path, &bytes, &ends, 3, "foreign batch");
    }

    #[test]
    fn records_the_rules_refuse_are_refused_at_their_offset() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let histories: [(&[Record<'_>], &str); 5] = [
            (&[create(2, 0, b"")], "order 1 comes next"),
            (
                &[create(1, 0, b"k"), create(2, 0, b"k")],
                "reuses the idempotency key",
            ),
            (
                &[create(1, 0, b""), transition(1, Status::Completed)],
                "not a forward step",
            ),
            (
                &[create(1, 0, b""), transition(2, Status::WaitingPickup)],
                "never created",
            ),
            (
                &[
                    create(1, 0, b""),
                    Record::Transition {
                        number: 1,
                        status: Status::WaitingPickup,
                        time_ms: 5,
                    },
                ],
                "follows one at",
            ),
        ];
        for (history, expected) in histories {
            let (bytes, _) = journal_bytes(&[history.to_vec()]);
            fs::write(&path, &bytes).unwrap();
            let (offset, message) = expect_corrupt(recover(&path));
            assert!(message.contains(expected), "{message}");
            assert!(offset > HEADER_LEN as u64);
        }
    }

    #[test]
    fn a_foreign_header_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let (original, _) = journal_bytes(&sample_batches());
        for (at, value) in [(0, b'X'), (8, record::JOURNAL_VERSION + 1), (8, 0)] {
            let mut bytes = original.clone();
            bytes[at] = value;
            fs::write(&path, &bytes).unwrap();
            assert!(matches!(
                recover(&path),
                Err(JournalError::BadHeader { .. })
            ));
        }
        fs::write(&path, b"").unwrap();
        let error = recover(&path).unwrap_err();
        assert!(matches!(error, JournalError::BadHeader { .. }));
        assert!(error.to_string().contains(&path.display().to_string()));
    }

    /// A version 1 journal, as the release before batches wrote it.
    fn v1_journal(records: &[Record<'_>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        v1::write::header(&mut bytes);
        for (i, r) in records.iter().enumerate() {
            v1::write::record(i as u64 + 1, r, &mut bytes);
        }
        bytes
    }

    #[test]
    fn a_version_1_journal_is_upgraded_in_place_keeping_everything() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let records: Vec<Record<'_>> = sample_batches().concat();
        let mut old = v1_journal(&records);
        old.extend_from_slice(&[0xAB; 7]); // a torn tail, not carried over
        fs::write(&path, &old).unwrap();
        let recovered = recover(&path).unwrap();
        let statuses: Vec<_> = recovered
            .orders
            .iter()
            .map(|o| (o.number, o.menu, o.status))
            .collect();
        assert_eq!(
            statuses,
            vec![
                (1, 0, Status::Completed),
                (2, 3, Status::Pending),
                (3, 1, Status::WaitingPickup)
            ]
        );
        assert!(recovered
            .orders
            .iter()
            .all(|o| o.created_ms == TIME_UNKNOWN && o.updated_ms == TIME_UNKNOWN));
        assert_eq!(recovered.rules.order_of_key(b"alpha"), Some(1));
        assert_eq!(recovered.rules.order_of_key(b"beta"), Some(3));
        assert_eq!(recovered.next_seq, 7);
        assert_eq!(recovered.torn_bytes, 7);
        let id = recovered.journal_id;
        let valid_len = recovered.valid_len;
        drop(recovered);
        let new = fs::read(&path).unwrap();
        assert_eq!(new.len() as u64, valid_len);
        assert_eq!(record::read_header(&new), Ok(Header::V2 { journal_id: id }));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        // The next start reads version 2 and changes nothing.
        let again = recover(&path).unwrap();
        assert_eq!((again.journal_id, again.valid_len), (id, valid_len));
        assert_eq!(again.orders.len(), 3);
    }

    #[test]
    fn an_upgrade_interrupted_before_the_rename_is_redone() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let old = v1_journal(&sample_batches().concat());
        fs::write(&path, &old).unwrap();
        // What a crash mid-upgrade leaves: the old file and half a new one beside it.
        fs::write(dir.path().join("orders.journal.new"), [0x55; 100]).unwrap();
        let recovered = recover(&path).unwrap();
        assert_eq!(recovered.orders.len(), 3);
        drop(recovered);
        assert!(!dir.path().join("orders.journal.new").exists());
        assert_eq!(recover(&path).unwrap().orders.len(), 3);
    }

    #[test]
    fn a_damaged_version_1_journal_is_refused_and_left_alone() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let mut old = v1_journal(&sample_batches().concat());
        old[v1::HEADER_LEN + 30] ^= 1;
        fs::write(&path, &old).unwrap();
        let (offset, message) = expect_corrupt(recover(&path));
        assert_eq!(offset, v1::HEADER_LEN as u64);
        assert!(message.contains("yet a valid record"), "{message}");
        assert_eq!(fs::read(&path).unwrap(), old);
    }

    #[test]
    fn the_upgrade_of_a_long_journal_splits_it_into_full_batches() {
        let records: Vec<Record<'_>> = (1..=record::BATCH_RECORDS_MAX as u64 + 5)
            .map(|n| create(n, 0, b""))
            .collect();
        let records: Vec<Record<'_>> = records
            .into_iter()
            .map(|r| match r {
                Record::Create {
                    number,
                    menu,
                    idempotency_key,
                    ..
                } => Record::Create {
                    number,
                    menu,
                    time_ms: TIME_UNKNOWN,
                    idempotency_key,
                },
                other => other,
            })
            .collect();
        let scanned = scan(Path::new("j"), &v1_journal(&records)).unwrap();
        assert_eq!((scanned.version, scanned.batches), (1, 2));
        assert_eq!(scanned.replay.orders.len(), records.len());
        assert!(scanned.upgraded.is_some());
    }

    /// A batch of records that the rules accept, from a script of choices.
    fn plan_batches(plan: &[(u8, u8)]) -> Vec<Vec<Record<'static>>> {
        let mut batches = Vec::new();
        let mut created = 0u64;
        let mut statuses: Vec<Status> = Vec::new();
        for &(size, seed) in plan {
            let mut batch = Vec::new();
            for i in 0..=u64::from(size % 40) {
                let pick = (u64::from(seed) + i * 7) % (created + 1);
                let movable = pick > 0 && statuses[pick as usize - 1].next().is_some();
                let time_ms = 10_000 + batches.len() as u64;
                if movable && seed % 3 != 0 {
                    let status = statuses[pick as usize - 1].next().unwrap();
                    statuses[pick as usize - 1] = status;
                    batch.push(Record::Transition {
                        number: pick,
                        status,
                        time_ms,
                    });
                } else {
                    created += 1;
                    statuses.push(Status::Pending);
                    batch.push(Record::Create {
                        number: created,
                        menu: (seed % 4) as MenuIndex,
                        time_ms,
                        idempotency_key: b"",
                    });
                }
            }
            batches.push(batch);
        }
        batches
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any tear of the last batch (a prefix of it, any of its pages lost, garbage
        /// after it) recovers exactly the batches before it.
        #[test]
        fn random_batches_torn_anywhere_keep_exactly_the_complete_ones(
            plan in prop::collection::vec((any::<u8>(), any::<u8>()), 1..12),
            tear in any::<prop::sample::Index>(),
            lost_pages in any::<u64>(),
            garbage in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let batches = plan_batches(&plan);
            let (full, ends) = journal_bytes(&batches);
            let kept = batches.len() - 1;
            let last_start = if kept == 0 { HEADER_LEN } else { ends[kept - 1] };
            // A prefix of the last batch, then garbage.
            let cut = last_start + tear.index(full.len() - last_start);
            let mut torn = full[..cut].to_vec();
            torn.extend_from_slice(&garbage);
            let scanned = scan(Path::new("j"), &torn).unwrap();
            prop_assert_eq!(scanned.valid_len as usize, last_start);
            // The whole batch with some of its pages lost (never all of them kept).
            let mut holed = full.clone();
            let mut any_lost = false;
            for (i, page) in (last_start / PAGE_BYTES..=(full.len() - 1) / PAGE_BYTES).enumerate() {
                if lost_pages >> (i % 64) & 1 == 1 {
                    let start = (page * PAGE_BYTES).max(last_start);
                    let end = ((page + 1) * PAGE_BYTES).min(full.len());
                    holed[start..end].fill(0);
                    any_lost = true;
                }
            }
            let scanned = scan(Path::new("j"), &holed).unwrap();
            let expected = if any_lost { last_start } else { full.len() };
            prop_assert_eq!(scanned.valid_len as usize, expected);
            prop_assert_eq!(scanned.torn_bytes as usize, full.len() - expected);
        }

        /// Damage to any batch but the last, with the last one intact, is refused.
        #[test]
        fn damage_before_a_complete_batch_is_always_refused(
            plan in prop::collection::vec((any::<u8>(), any::<u8>()), 2..8),
            at in any::<prop::sample::Index>(),
            flip in 1..=255u8,
        ) {
            let batches = plan_batches(&plan);
            let (mut bytes, ends) = journal_bytes(&batches);
            let last_start = ends[ends.len() - 2];
            let damage_at = HEADER_LEN + at.index(last_start - HEADER_LEN);
            bytes[damage_at] ^= flip;
            match scan(Path::new("j"), &bytes) {
                Err(JournalError::Corrupt { offset, .. }) => {
                    prop_assert!(offset as usize <= damage_at);
                }
                other => prop_assert!(false, "damage at {} gave {:?}", damage_at, other),
            }
        }
    }
}
