//! The journal's on-disk format, version 2: one file header, then group-commit
//! batches appended back to back, each holding the records of one write.
//!
//! ```text
//! file header (24 bytes): magic "KAKIJRNL" (8) | version 2 (1) | reserved, zero (7)
//!                         | journal id u64 (random, chosen when the file is made)
//! batch header (24 bytes): header crc u32 | body crc u32 | length u32
//!                         | record count u32 | first sequence number u64
//! batch body: the records, back to back
//!   Create     kind 1: number u64 | time u64 | menu u8 | key length u8 | key (0..=128 bytes)
//!   Transition kind 2: number u64 | time u64 | status u8
//! ```
//!
//! All integers are little-endian; times are milliseconds since the Unix epoch (0: not
//! recorded). `length` counts the whole batch, header included. The header crc is
//! CRC-32 (IEEE, as `crc32fast` computes it) over the journal id and the header bytes
//! after it; the body crc covers the body. Records carry no sequence numbers of their
//! own: the batch's first one, plus one per record.
//!
//! Why batches: the kernel may split one write at page boundaries and a power cut may
//! keep any subset of those pages, so whole records of an unfinished write can appear
//! after a gap of zeros. Only a batch whose header and body both check out counts as
//! written, and a batch is never written before the one ahead of it is durable: an
//! incomplete batch at the end is the write that was in flight, while a complete one
//! after damage proves the damage is not at the end (see `journal.rs`). The journal id
//! in the header checksum means bytes a guest chose (an idempotency key) can never pass
//! for a batch, nor can a batch copied from another journal.
//!
//! The format knows nothing of orders' history: whether a record may follow the ones
//! before it is for the rules (`rules.rs`).

use std::ops::RangeInclusive;

use crate::menu::{MenuIndex, MENU};
use crate::orders::{Status, IDEMPOTENCY_KEY_BYTES_MAX, TIME_MS_MAX};

/// Identifies a kakigori journal; anything else is refused rather than replayed.
pub const FILE_MAGIC: &[u8; 8] = b"KAKIJRNL";
/// Bumped whenever the layout changes; version 1 is upgraded at start-up (`v1.rs`),
/// anything newer is refused.
pub const JOURNAL_VERSION: u8 = 2;
/// Magic, version, seven reserved zero bytes and the journal id.
pub const HEADER_LEN: usize = 24;

/// Header crc, body crc, length, record count and first sequence number.
pub const BATCH_HEADER_BYTES: usize = 4 + 4 + 4 + 4 + 8;
/// The most records one batch holds: the order book's queue is no longer than this.
pub const BATCH_RECORDS_MAX: usize = 65_536;

/// Kind, number and time: what every record starts with.
const RECORD_PREFIX_BYTES: usize = 1 + 8 + 8;
const CREATE_FIXED_BYTES: usize = RECORD_PREFIX_BYTES + 1 + 1;
const TRANSITION_BYTES: usize = RECORD_PREFIX_BYTES + 1;
/// The smallest record there is (a create without key is one byte longer).
pub const MIN_RECORD_BYTES: usize = TRANSITION_BYTES;
/// The largest record there is: a create with the longest key.
pub const MAX_RECORD_BYTES: usize = CREATE_FIXED_BYTES + IDEMPOTENCY_KEY_BYTES_MAX;
/// The largest batch there is.
pub const BATCH_BYTES_MAX: usize = BATCH_HEADER_BYTES + BATCH_RECORDS_MAX * MAX_RECORD_BYTES;

const KIND_CREATE: u8 = 1;
const KIND_TRANSITION: u8 = 2;

/// Appends the file header of a journal with the id `journal_id`.
pub fn encode_header(journal_id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(FILE_MAGIC);
    out.push(JOURNAL_VERSION);
    out.extend_from_slice(&[0; 7]);
    out.extend_from_slice(&journal_id.to_le_bytes());
}

/// A journal's header: which version of the format follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Today's format; batches start at [`HEADER_LEN`].
    V2 { journal_id: u64 },
    /// The format before batches (`v1.rs`); records start at byte 16.
    V1,
}

/// Reads the header at the start of `buf`.
pub fn read_header(buf: &[u8]) -> Result<Header, &'static str> {
    let Some(start) = buf.get(..16) else {
        return Err("the file is shorter than a journal header");
    };
    if &start[..8] != FILE_MAGIC {
        return Err("the file does not start with the kakigori journal magic");
    }
    if start[9..16].iter().any(|&b| b != 0) {
        return Err("the journal header's reserved bytes are not zero");
    }
    match start[8] {
        1 => Ok(Header::V1),
        JOURNAL_VERSION => match buf.get(16..HEADER_LEN) {
            Some(id) => Ok(Header::V2 {
                journal_id: read_u64(id, 0),
            }),
            None => Err("the file is shorter than a journal header"),
        },
        _ => Err("the journal was written in a version of the format this build does not know"),
    }
}

/// One journal entry: an order was created, or moved one step along, at `time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Create {
        number: u64,
        menu: MenuIndex,
        time_ms: u64,
        idempotency_key: &'a [u8],
    },
    Transition {
        number: u64,
        status: Status,
        time_ms: u64,
    },
}

impl Record<'_> {
    pub fn time_ms(&self) -> u64 {
        match *self {
            Record::Create { time_ms, .. } | Record::Transition { time_ms, .. } => time_ms,
        }
    }
}

/// Appends `record` to `out`.
///
/// Panics on a key longer than [`IDEMPOTENCY_KEY_BYTES_MAX`], a menu index outside
/// [`MENU`] or a time after [`TIME_MS_MAX`]: callers validate them before anything is
/// queued, and writing any of them would make the journal unreadable.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    assert!(
        record.time_ms() <= TIME_MS_MAX,
        "time {} ms is beyond the journal's range",
        record.time_ms()
    );
    match *record {
        Record::Create {
            number,
            menu,
            time_ms,
            idempotency_key,
        } => {
            assert!(
                idempotency_key.len() <= IDEMPOTENCY_KEY_BYTES_MAX,
                "idempotency key of {} bytes is over the limit",
                idempotency_key.len()
            );
            assert!(
                usize::from(menu) < MENU.len(),
                "menu index {menu} is not on the menu"
            );
            out.push(KIND_CREATE);
            out.extend_from_slice(&number.to_le_bytes());
            out.extend_from_slice(&time_ms.to_le_bytes());
            out.push(menu);
            out.push(idempotency_key.len() as u8);
            out.extend_from_slice(idempotency_key);
        }
        Record::Transition {
            number,
            status,
            time_ms,
        } => {
            out.push(KIND_TRANSITION);
            out.extend_from_slice(&number.to_le_bytes());
            out.extend_from_slice(&time_ms.to_le_bytes());
            out.push(status as u8);
        }
    }
}

/// Reads the record at the start of `buf` and its length. Never panics and never
/// looks past `buf`.
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), &'static str> {
    let Some(prefix) = buf.get(..RECORD_PREFIX_BYTES) else {
        return Err("a record is cut short");
    };
    let number = read_u64(prefix, 1);
    let time_ms = read_u64(prefix, 9);
    if time_ms > TIME_MS_MAX {
        return Err("a record's time is beyond the year 9999");
    }
    match prefix[0] {
        KIND_CREATE => {
            let Some(fixed) = buf.get(..CREATE_FIXED_BYTES) else {
                return Err("a create record is cut short");
            };
            let menu = fixed[RECORD_PREFIX_BYTES];
            if usize::from(menu) >= MENU.len() {
                return Err("a create record names an unknown menu item");
            }
            let key_bytes = usize::from(fixed[RECORD_PREFIX_BYTES + 1]);
            if key_bytes > IDEMPOTENCY_KEY_BYTES_MAX {
                return Err("a create record's key is over the limit");
            }
            let len = CREATE_FIXED_BYTES + key_bytes;
            let Some(idempotency_key) = buf.get(CREATE_FIXED_BYTES..len) else {
                return Err("a create record is cut short");
            };
            let record = Record::Create {
                number,
                menu,
                time_ms,
                idempotency_key,
            };
            Ok((record, len))
        }
        KIND_TRANSITION => {
            let Some(&code) = buf.get(RECORD_PREFIX_BYTES) else {
                return Err("a transition record is cut short");
            };
            let Some(status) = Status::from_u8(code) else {
                return Err("a transition record names an unknown status");
            };
            let record = Record::Transition {
                number,
                status,
                time_ms,
            };
            Ok((record, TRANSITION_BYTES))
        }
        _ => Err("unknown record kind"),
    }
}

/// Builds one batch: records are pushed, then the header is filled in.
#[derive(Debug)]
pub struct BatchEncoder {
    bytes: Vec<u8>,
    records: usize,
}

impl Default for BatchEncoder {
    fn default() -> Self {
        BatchEncoder {
            bytes: vec![0; BATCH_HEADER_BYTES],
            records: 0,
        }
    }
}

impl BatchEncoder {
    /// Appends `record` and returns its encoded bytes. Panics past
    /// [`BATCH_RECORDS_MAX`] records (and as [`encode`] does).
    pub fn push(&mut self, record: &Record<'_>) -> &[u8] {
        assert!(self.records < BATCH_RECORDS_MAX, "the batch is full");
        let start = self.bytes.len();
        encode(record, &mut self.bytes);
        self.records += 1;
        &self.bytes[start..]
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// The sealed batch, ready to append. Panics on an empty batch: there is nothing
    /// to write and replay would refuse it.
    pub fn finish(mut self, journal_id: u64, first_seq: u64) -> Vec<u8> {
        assert!(self.records > 0, "an empty batch is never written");
        let length = u32::try_from(self.bytes.len()).expect("a batch fits BATCH_BYTES_MAX");
        let body_crc = crc32fast::hash(&self.bytes[BATCH_HEADER_BYTES..]);
        let header = &mut self.bytes[..BATCH_HEADER_BYTES];
        header[4..8].copy_from_slice(&body_crc.to_le_bytes());
        header[8..12].copy_from_slice(&length.to_le_bytes());
        header[12..16].copy_from_slice(&(self.records as u32).to_le_bytes());
        header[16..24].copy_from_slice(&first_seq.to_le_bytes());
        let header_crc = header_checksum(journal_id, header);
        header[..4].copy_from_slice(&header_crc.to_le_bytes());
        self.bytes
    }
}

/// A complete batch whose checksums and records all check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch<'a> {
    pub first_seq: u64,
    /// How many records it holds (at least one).
    pub records: usize,
    /// Its whole length, header included.
    pub len: usize,
    body: &'a [u8],
}

impl<'a> Batch<'a> {
    /// The batch's records, each with its byte offset from the start of the batch.
    pub fn records(&self) -> impl Iterator<Item = (usize, Record<'a>)> + 'a {
        let body = self.body;
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= body.len() {
                return None;
            }
            // Every record was decoded once already, by `decode_batch`.
            let (record, len) = decode(&body[at..]).ok()?;
            let offset = BATCH_HEADER_BYTES + at;
            at += len;
            Some((offset, record))
        })
    }
}

/// What [`decode_batch`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodedBatch<'a> {
    Batch(Batch<'a>),
    /// The buffer ends before the batch does (or before its header does).
    Incomplete,
    /// These bytes are not the batch that should be here.
    Corrupt(&'static str),
}

/// Reads the batch at the start of `buf`, which must be of journal `journal_id` and
/// start at sequence number `expected_seq`. Never panics and never looks past `buf`.
pub fn decode_batch(buf: &[u8], journal_id: u64, expected_seq: u64) -> DecodedBatch<'_> {
    match decode_batch_any_sequence(buf, journal_id) {
        DecodedBatch::Batch(batch) if batch.first_seq != expected_seq => {
            DecodedBatch::Corrupt("the batch's first sequence number is not the next one")
        }
        other => other,
    }
}

/// The first complete, valid batch of journal `journal_id` that starts after byte
/// `after` with a first sequence number in `seqs`, and its offset. Recovery uses it
/// to look past damage for a batch that proves the damage is not at the end.
pub fn find_batch(
    bytes: &[u8],
    after: usize,
    journal_id: u64,
    seqs: RangeInclusive<u64>,
) -> Option<(usize, Batch<'_>)> {
    let last_start = bytes.len().checked_sub(BATCH_HEADER_BYTES)?;
    (after + 1..=last_start).find_map(|offset| {
        let candidate = &bytes[offset..];
        // Cheap filters first: most offsets fail on the sequence number.
        if !seqs.contains(&read_u64(candidate, 16)) {
            return None;
        }
        match decode_batch_any_sequence(candidate, journal_id) {
            DecodedBatch::Batch(batch) => Some((offset, batch)),
            DecodedBatch::Incomplete | DecodedBatch::Corrupt(_) => None,
        }
    })
}

fn decode_batch_any_sequence(buf: &[u8], journal_id: u64) -> DecodedBatch<'_> {
    let Some(header) = buf.get(..BATCH_HEADER_BYTES) else {
        return DecodedBatch::Incomplete;
    };
    if read_u32(header, 0) != header_checksum(journal_id, header) {
        return DecodedBatch::Corrupt("the batch header's checksum does not match");
    }
    // From here on the header is what some writer of this journal meant; a mismatch is a
    // format bug, still reported rather than trusted.
    let len = read_u32(header, 8) as usize;
    let records = read_u32(header, 12) as usize;
    if !(1..=BATCH_RECORDS_MAX).contains(&records) {
        return DecodedBatch::Corrupt("the batch's record count is out of range");
    }
    let body_bytes = len.checked_sub(BATCH_HEADER_BYTES);
    if !body_bytes
        .is_some_and(|n| (records * MIN_RECORD_BYTES..=records * MAX_RECORD_BYTES).contains(&n))
    {
        return DecodedBatch::Corrupt("the batch's length does not fit its record count");
    }
    let Some(body) = buf.get(BATCH_HEADER_BYTES..len) else {
        return DecodedBatch::Incomplete;
    };
    if read_u32(header, 4) != crc32fast::hash(body) {
        return DecodedBatch::Corrupt("the batch's records do not match their checksum");
    }
    let mut at = 0;
    for _ in 0..records {
        // `decode` never reads past what it is given, so `at` stays within the body.
        match decode(&body[at..]) {
            Ok((_, record_len)) => at += record_len,
            Err(reason) => return DecodedBatch::Corrupt(reason),
        }
    }
    if at != body.len() {
        return DecodedBatch::Corrupt("the batch holds more bytes than its records");
    }
    DecodedBatch::Batch(Batch {
        first_seq: read_u64(header, 16),
        records,
        len,
        body,
    })
}

/// CRC-32 of the journal id and a batch header without its own crc field.
fn header_checksum(journal_id: u64, header: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&journal_id.to_le_bytes());
    hasher.update(&header[4..BATCH_HEADER_BYTES]);
    hasher.finalize()
}

/// Callers have checked that `buf` holds the bytes.
fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(bytes)
}

/// Callers have checked that `buf` holds the bytes.
pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Records that own their keys, for tests that generate them.
#[cfg(test)]
pub(crate) mod owned {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Owned {
        Create(u64, MenuIndex, u64, Vec<u8>),
        Transition(u64, Status, u64),
    }

    impl Owned {
        pub fn record(&self) -> Record<'_> {
            match self {
                Owned::Create(number, menu, time_ms, key) => Record::Create {
                    number: *number,
                    menu: *menu,
                    time_ms: *time_ms,
                    idempotency_key: key,
                },
                Owned::Transition(number, status, time_ms) => Record::Transition {
                    number: *number,
                    status: *status,
                    time_ms: *time_ms,
                },
            }
        }
    }

    pub fn any_record() -> impl Strategy<Value = Owned> {
        prop_oneof![
            (
                any::<u64>(),
                0..MENU.len() as MenuIndex,
                0..=TIME_MS_MAX,
                prop::collection::vec(any::<u8>(), 0..=IDEMPOTENCY_KEY_BYTES_MAX),
            )
                .prop_map(|(number, menu, time, key)| Owned::Create(number, menu, time, key)),
            (
                any::<u64>(),
                prop::sample::select(Status::ALL.to_vec()),
                0..=TIME_MS_MAX
            )
                .prop_map(|(number, status, time)| Owned::Transition(number, status, time)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::owned::{any_record, Owned};
    use super::*;
    use proptest::prelude::*;

    const ID: u64 = 0x5eed_cafe_f00d_0001;

    fn batch_of(records: &[Owned], first_seq: u64) -> Vec<u8> {
        let mut batch = BatchEncoder::default();
        for record in records {
            batch.push(&record.record());
        }
        batch.finish(ID, first_seq)
    }

    fn transition(number: u64) -> Owned {
        Owned::Transition(number, Status::Completed, 7)
    }

    #[test]
    fn header_round_trips_and_rejects_strangers() {
        let mut header = Vec::new();
        encode_header(ID, &mut header);
        assert_eq!(header.len(), HEADER_LEN);
        assert_eq!(read_header(&header), Ok(Header::V2 { journal_id: ID }));
        assert!(read_header(&header[..HEADER_LEN - 1]).is_err());
        let mut wrong_magic = header.clone();
        wrong_magic[0] ^= 1;
        assert!(read_header(&wrong_magic).is_err());
        let mut wrong_version = header.clone();
        wrong_version[8] = JOURNAL_VERSION + 1;
        assert!(read_header(&wrong_version).is_err());
        let mut reserved = header.clone();
        reserved[12] = 1;
        assert!(read_header(&reserved).is_err());
        let mut v1 = header[..16].to_vec();
        v1[8] = 1;
        assert_eq!(read_header(&v1), Ok(Header::V1));
    }

    #[test]
    fn record_sizes_are_the_documented_bounds() {
        let mut out = Vec::new();
        encode(
            &Owned::Create(1, 0, 1, vec![7; IDEMPOTENCY_KEY_BYTES_MAX]).record(),
            &mut out,
        );
        assert_eq!(out.len(), MAX_RECORD_BYTES);
        out.clear();
        encode(&transition(1).record(), &mut out);
        assert_eq!(out.len(), MIN_RECORD_BYTES);
    }

    #[test]
    fn a_batch_reads_back_with_its_records_and_offsets() {
        let records = [
            Owned::Create(1, 2, 5, b"key".to_vec()),
            transition(1),
            Owned::Create(2, 0, 9, Vec::new()),
        ];
        let bytes = batch_of(&records, 40);
        let DecodedBatch::Batch(batch) = decode_batch(&bytes, ID, 40) else {
            panic!("not a batch");
        };
        assert_eq!(
            (batch.first_seq, batch.records, batch.len),
            (40, 3, bytes.len())
        );
        let read: Vec<_> = batch.records().collect();
        assert_eq!(read.len(), 3);
        for ((offset, record), owned) in read.iter().zip(&records) {
            assert_eq!(*record, owned.record());
            assert_eq!(decode(&bytes[*offset..]).unwrap().0, owned.record());
        }
        assert_eq!(read[0].0, BATCH_HEADER_BYTES);
    }

    #[test]
    fn a_batch_of_another_journal_or_sequence_is_corrupt() {
        let bytes = batch_of(&[transition(1)], 3);
        assert!(matches!(
            decode_batch(&bytes, ID, 3),
            DecodedBatch::Batch(_)
        ));
        assert!(matches!(
            decode_batch(&bytes, ID, 4),
            DecodedBatch::Corrupt(_)
        ));
        assert!(matches!(
            decode_batch(&bytes, ID ^ 1, 3),
            DecodedBatch::Corrupt(_)
        ));
    }

    #[test]
    fn zeros_and_short_buffers_are_not_batches() {
        assert_eq!(decode_batch(&[], ID, 1), DecodedBatch::Incomplete);
        assert_eq!(
            decode_batch(&[0; BATCH_HEADER_BYTES - 1], ID, 1),
            DecodedBatch::Incomplete
        );
        assert!(matches!(
            decode_batch(&[0; 4096], ID, 1),
            DecodedBatch::Corrupt(_)
        ));
    }

    #[test]
    fn find_batch_skips_stale_and_foreign_batches() {
        let mut bytes = vec![0; 100];
        let stale_at = bytes.len();
        bytes.extend(batch_of(&[transition(1)], 2));
        let good_at = bytes.len();
        bytes.extend(batch_of(&[transition(1), transition(2)], 9));
        let found = find_batch(&bytes, 0, ID, 5..=20).unwrap();
        assert_eq!((found.0, found.1.first_seq), (good_at, 9));
        assert_eq!(find_batch(&bytes, 0, ID, 2..=2).unwrap().0, stale_at);
        assert_eq!(find_batch(&bytes, good_at, ID, 0..=u64::MAX), None);
        assert_eq!(find_batch(&bytes, 0, ID ^ 1, 0..=u64::MAX), None);
        assert_eq!(find_batch(&bytes[..10], 0, ID, 0..=u64::MAX), None);
    }

    #[test]
    #[should_panic(expected = "never written")]
    fn an_empty_batch_is_never_sealed() {
        BatchEncoder::default().finish(ID, 1);
    }

    fn any_batch() -> impl Strategy<Value = Vec<Owned>> {
        prop::collection::vec(any_record(), 1..12)
    }

    proptest! {
        #[test]
        fn records_round_trip(owned in any_record(), trailing in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = Vec::new();
            encode(&owned.record(), &mut bytes);
            let len = bytes.len();
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(decode(&bytes), Ok((owned.record(), len)));
        }

        #[test]
        fn batches_round_trip(records in any_batch(), seq in any::<u64>(), trailing in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = batch_of(&records, seq);
            let len = bytes.len();
            bytes.extend_from_slice(&trailing);
            let DecodedBatch::Batch(batch) = decode_batch(&bytes, ID, seq) else {
                return Err(TestCaseError::fail("not a batch"));
            };
            prop_assert_eq!(batch.len, len);
            let read: Vec<_> = batch.records().map(|(_, record)| record).collect();
            let expected: Vec<_> = records.iter().map(Owned::record).collect();
            prop_assert_eq!(read, expected);
        }

        #[test]
        fn every_truncation_of_a_batch_is_incomplete(records in any_batch(), seq in any::<u64>()) {
            let bytes = batch_of(&records, seq);
            for cut in 0..bytes.len() {
                prop_assert_eq!(decode_batch(&bytes[..cut], ID, seq), DecodedBatch::Incomplete, "cut at {}", cut);
            }
        }

        #[test]
        fn any_flipped_bit_of_a_batch_is_detected(records in any_batch(), seq in any::<u64>()) {
            let bytes = batch_of(&records, seq);
            for bit in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                let outcome = decode_batch(&damaged, ID, seq);
                prop_assert!(
                    matches!(outcome, DecodedBatch::Corrupt(_) | DecodedBatch::Incomplete),
                    "bit {} gave {:?}", bit, outcome
                );
            }
        }

        #[test]
        fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_batch(&bytes, ID, 1);
            let _ = find_batch(&bytes, 0, ID, 0..=u64::MAX);
        }
    }
}
