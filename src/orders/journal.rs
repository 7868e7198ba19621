//! Start-up recovery: replays the journal into the orders it describes, before any
//! executor runs, with plain `std::fs`.
//!
//! The one kind of damage a crash can cause is a record the writer never finished:
//! the last batch's bytes, partly or not at all on disk, or zero padding after them.
//! That tail was never acknowledged (acks wait for fdatasync), so it is cut off with a
//! warning. Anything else — bad bytes with a good record after them, a record that
//! makes no sense after the ones before it, a foreign header — means the file is not
//! what this program wrote, and dropping it would drop acknowledged orders: recovery
//! refuses and tells the operator what to do instead.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::orders::index::OrderIndex;
use crate::orders::record::{self, Decoded, Record, HEADER_LEN, MIN_RECORD_BYTES};
use crate::orders::{Order, Status};

/// Everything the journal says, ready for the order book and the read index.
#[derive(Debug)]
pub struct Recovered {
    /// Every order in its latest state; index `i` holds order number `i + 1`.
    pub orders: Vec<Order>,
    /// Idempotency key → the order number it created.
    pub idempotency: HashMap<Box<[u8]>, u64>,
    /// The sequence number the next record must carry.
    pub next_seq: u64,
    /// Where the next record goes: the file's length after recovery.
    pub valid_len: u64,
    /// How many bytes of torn tail were cut off (0 after a clean stop).
    pub torn_bytes: u64,
    /// The journal, exclusively locked (`flock`) so that a second kakigori on the same
    /// data directory cannot append to it too. The order book holds it for its life.
    pub(crate) file: File,
}

/// Why the journal cannot be used.
#[derive(Debug)]
pub enum JournalError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// Damage that is not a torn tail, or a record that contradicts the ones before it.
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

/// Opens (or creates) the journal at `path`, locks it, replays it and cuts a torn
/// tail. The parent directory must exist.
pub fn recover(path: &Path) -> Result<Recovered, JournalError> {
    let io_error = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    if !path.try_exists().map_err(io_error)? {
        create(path).map_err(io_error)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(JournalError::Unavailable),
        Err(TryLockError::Error(source)) => return Err(io_error(source)),
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_error)?;
    record::check_header(&bytes).map_err(|reason| JournalError::BadHeader {
        path: path.to_owned(),
        reason,
    })?;

    let mut replay = Replay::default();
    let mut offset = HEADER_LEN;
    let mut next_seq = 1;
    while offset < bytes.len() {
        let failure = match record::decode(&bytes[offset..], next_seq) {
            Decoded::Record { record, len } => {
                replay
                    .apply(&record)
                    .map_err(|reason| JournalError::Corrupt {
                        path: path.to_owned(),
                        offset: offset as u64,
                        reason,
                    })?;
                offset += len;
                next_seq += 1;
                continue;
            }
            Decoded::Incomplete => "the last record is incomplete",
            Decoded::Corrupt(reason) => reason,
        };
        if let Some((later_offset, later_seq)) = find_later_record(&bytes, offset, next_seq) {
            return Err(JournalError::Corrupt {
                path: path.to_owned(),
                offset: offset as u64,
                reason: format!(
                    "{failure} (expected sequence number {next_seq}), yet a valid record with \
                     sequence number {later_seq} follows at byte offset {later_offset}"
                ),
            });
        }
        break;
    }

    let valid_len = offset as u64;
    let torn_bytes = bytes.len() as u64 - valid_len;
    if torn_bytes > 0 {
        file.set_len(valid_len).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        log::warn!(
            "journal {}: cut {torn_bytes} bytes of torn tail at byte offset {valid_len} \
             (an unfinished write from before the last stop; nothing in it was acknowledged)",
            path.display()
        );
    }
    Ok(Recovered {
        orders: replay.orders,
        idempotency: replay.idempotency,
        next_seq,
        valid_len,
        torn_bytes,
        file,
    })
}

/// Writes a header-only journal under a temporary name and renames it into place, so
/// `path` never exists half-written: a file there without a full header is not ours.
fn create(path: &Path) -> io::Result<()> {
    let mut temporary_name = path.as_os_str().to_owned();
    temporary_name.push(".new");
    let temporary = PathBuf::from(temporary_name);
    let mut header = Vec::with_capacity(HEADER_LEN);
    record::encode_header(&mut header);
    let mut file = File::create(&temporary)?;
    file.write_all(&header)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)?.sync_all()
}

/// Looks for a record past the damage at `damage_offset` that proves the damage is
/// not a torn tail: one that decodes (checksum and all) at any byte offset, with a
/// sequence number a later record could carry. Older sequence numbers are stale bytes
/// (e.g. from a padded rewrite), not data.
fn find_later_record(
    bytes: &[u8],
    damage_offset: usize,
    expected_seq: u64,
) -> Option<(usize, u64)> {
    let remaining_bytes = bytes.len() - damage_offset;
    let latest_plausible_seq = expected_seq + (remaining_bytes / MIN_RECORD_BYTES) as u64;
    (damage_offset + 1..bytes.len()).find_map(|offset| {
        let (seq, _) = record::decode_with_sequence(&bytes[offset..])?;
        (expected_seq..=latest_plausible_seq)
            .contains(&seq)
            .then_some((offset, seq))
    })
}

/// The orders as the records replayed so far describe them.
#[derive(Default)]
struct Replay {
    orders: Vec<Order>,
    idempotency: HashMap<Box<[u8]>, u64>,
}

impl Replay {
    /// Applies one record, or says why it cannot follow the ones before it.
    fn apply(&mut self, record: &Record<'_>) -> Result<(), String> {
        match *record {
            Record::Create {
                number,
                menu,
                idempotency_key,
            } => {
                let expected = self.orders.len() as u64 + 1;
                if number != expected {
                    return Err(format!(
                        "a create record for order {number} where order {expected} comes next"
                    ));
                }
                if number > OrderIndex::CAPACITY_MAX {
                    return Err(format!(
                        "order {number} is beyond the store's capacity of {} orders",
                        OrderIndex::CAPACITY_MAX
                    ));
                }
                if !idempotency_key.is_empty() {
                    if let Some(first) = self.idempotency.insert(idempotency_key.into(), number) {
                        return Err(format!(
                            "order {number} reuses the idempotency key of order {first}"
                        ));
                    }
                }
                self.orders.push(Order {
                    number,
                    menu,
                    status: Status::Pending,
                });
            }
            Record::Transition { number, status } => {
                let order = number
                    .checked_sub(1)
                    .and_then(|i| self.orders.get_mut(usize::try_from(i).ok()?))
                    .ok_or_else(|| {
                        format!("a status change for order {number}, which was never created")
                    })?;
                if order.status.next() != Some(status) {
                    return Err(format!(
                        "order {number} moves from {} to {}, which is not a forward step",
                        order.status.as_str(),
                        status.as_str()
                    ));
                }
                order.status = status;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::MenuIndex;
    use tempfile::TempDir;

    fn journal_path(dir: &TempDir) -> PathBuf {
        dir.path().join("orders.journal")
    }

    /// A journal file holding `records`, numbered from sequence 1.
    fn write_journal(path: &Path, records: &[Record<'_>]) -> Vec<usize> {
        let mut bytes = Vec::new();
        record::encode_header(&mut bytes);
        let mut ends = Vec::new();
        for (i, r) in records.iter().enumerate() {
            record::encode(i as u64 + 1, r, &mut bytes);
            ends.push(bytes.len());
        }
        fs::write(path, &bytes).unwrap();
        ends
    }

    fn create(number: u64, menu: MenuIndex, key: &[u8]) -> Record<'_> {
        Record::Create {
            number,
            menu,
            idempotency_key: key,
        }
    }

    fn transition(number: u64, status: Status) -> Record<'static> {
        Record::Transition { number, status }
    }

    fn sample_records() -> Vec<Record<'static>> {
        vec![
            create(1, 0, b"alpha"),
            create(2, 3, b""),
            transition(1, Status::WaitingPickup),
            create(3, 1, b"beta"),
            transition(1, Status::Completed),
            transition(3, Status::WaitingPickup),
        ]
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
        assert!(recovered.idempotency.is_empty());
        assert_eq!(recovered.next_seq, 1);
        assert_eq!(recovered.valid_len, HEADER_LEN as u64);
        assert_eq!(recovered.torn_bytes, 0);
        drop(recovered);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(record::check_header(&bytes), Ok(()));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        // And it opens again, unchanged.
        assert_eq!(recover(&path).unwrap().valid_len, HEADER_LEN as u64);
    }

    #[test]
    fn replays_creates_transitions_and_idempotency_keys() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let ends = write_journal(&path, &sample_records());
        let recovered = recover(&path).unwrap();
        let order = |number, menu, status| Order {
            number,
            menu,
            status,
        };
        assert_eq!(
            recovered.orders,
            vec![
                order(1, 0, Status::Completed),
                order(2, 3, Status::Pending),
                order(3, 1, Status::WaitingPickup),
            ]
        );
        assert_eq!(recovered.idempotency.len(), 2);
        assert_eq!(recovered.idempotency.get(&b"alpha"[..]), Some(&1));
        assert_eq!(recovered.idempotency.get(&b"beta"[..]), Some(&3));
        assert_eq!(recovered.next_seq, 7);
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

    #[test]
    fn a_torn_last_record_is_cut_at_every_byte_and_the_file_stays_appendable() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let records = sample_records();
        let ends = write_journal(&path, &records);
        let full = fs::read(&path).unwrap();
        let last_start = ends[ends.len() - 2];
        for cut in last_start..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let recovered = recover(&path).unwrap();
            assert_eq!(recovered.valid_len, last_start as u64, "cut at {cut}");
            assert_eq!(recovered.torn_bytes, (cut - last_start) as u64);
            assert_eq!(recovered.next_seq, records.len() as u64);
            assert_eq!(recovered.orders[2].status, Status::Pending);
            drop(recovered);
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
        }
        // Append the lost record again where recovery says, and it replays.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        let mut again = Vec::new();
        record::encode(records.len() as u64, records.last().unwrap(), &mut again);
        file.write_all(&again).unwrap();
        drop(file);
        let recovered = recover(&path).unwrap();
        assert_eq!(recovered.torn_bytes, 0);
        assert_eq!(recovered.orders[2].status, Status::WaitingPickup);
    }

    #[test]
    fn zeros_after_the_last_record_are_cut() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let ends = write_journal(&path, &sample_records());
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        fs::write(&path, &bytes).unwrap();
        let recovered = recover(&path).unwrap();
        assert_eq!(recovered.torn_bytes, 4096);
        assert_eq!(recovered.valid_len, *ends.last().unwrap() as u64);
        assert_eq!(recovered.orders.len(), 3);
    }

    #[test]
    fn stale_records_after_the_tail_are_cut_not_mistaken_for_data() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let ends = write_journal(&path, &sample_records());
        let mut bytes = fs::read(&path).unwrap();
        // A copy of the first two records, as padding rewritten over old data leaves.
        bytes.extend_from_within(HEADER_LEN..ends[1]);
        fs::write(&path, &bytes).unwrap();
        let recovered = recover(&path).unwrap();
        assert_eq!(recovered.valid_len, *ends.last().unwrap() as u64);
        assert_eq!(recovered.orders.len(), 3);
    }

    #[test]
    fn damage_followed_by_a_valid_record_is_refused_with_its_offset() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let ends = write_journal(&path, &sample_records());
        let original = fs::read(&path).unwrap();
        // Flip a payload bit of the second record, then (separately) a bit of its length.
        for damage_at in [ends[0] + 20, ends[0]] {
            let mut bytes = original.clone();
            bytes[damage_at] ^= 0x40;
            fs::write(&path, &bytes).unwrap();
            let (offset, message) = expect_corrupt(recover(&path));
            assert_eq!(offset, ends[0] as u64);
            assert!(
                message.contains(&format!("byte offset {}", ends[0])),
                "{message}"
            );
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("truncate"), "{message}");
            // Nothing was cut.
            assert_eq!(fs::read(&path).unwrap(), bytes);
        }
    }

    #[test]
    fn a_transition_of_a_nonexistent_order_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let ends = write_journal(
            &path,
            &[create(1, 0, b""), transition(2, Status::WaitingPickup)],
        );
        let (offset, message) = expect_corrupt(recover(&path));
        assert_eq!(offset, ends[0] as u64);
        assert!(message.contains("never created"), "{message}");
    }

    #[test]
    fn impossible_histories_are_refused() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        let histories: [&[Record<'_>]; 4] = [
            &[create(2, 0, b"")],
            &[create(1, 0, b"k"), create(2, 0, b"k")],
            &[create(1, 0, b""), transition(1, Status::Completed)],
            &[create(1, 0, b""), transition(0, Status::WaitingPickup)],
        ];
        for history in histories {
            write_journal(&path, history);
            expect_corrupt(recover(&path));
        }
    }

    #[test]
    fn a_foreign_header_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = journal_path(&dir);
        write_journal(&path, &sample_records());
        let original = fs::read(&path).unwrap();
        for (at, value) in [(0, b'X'), (8, record::JOURNAL_VERSION + 1)] {
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
}
