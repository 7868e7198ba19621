//! The order book on the owner core: takes create/advance requests, makes them durable
//! with group commit, then publishes them.
//!
//! Requests wait in a bounded queue. One committer task takes everything queued and
//! asks the order rules (`rules.rs`) what each request becomes, against the owner's
//! state (the index's committed orders plus the earlier requests of the same batch).
//! Each resulting record is encoded into one batch, read back from its bytes and
//! applied through the same rules replay will use, so nothing reaches the disk that
//! recovery would refuse. The sealed batch is written at the journal's tail with one
//! write and one fdatasync. Only then does the committer publish the changes to the
//! shared index, tell the observers and answer the requests. Requests arriving while a
//! sync is in flight form the next batch, so the number of syncs follows the disk's
//! speed, not the request rate.
//!
//! If a write or sync fails, what is on disk is unknown: the book refuses that batch
//! and everything after it (`Unavailable`) rather than ever acknowledge an order that
//! might not survive a crash. A restart recovers whatever did reach the disk.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::future::poll_fn;
use std::io;
use std::mem;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use futures_channel::oneshot;
use glommio::io::{BufferedFile, OpenOptions};
use glommio::Task;
use hdrhistogram::Histogram;

use crate::menu::{MenuIndex, MENU};
use crate::orders::index::OrderIndex;
use crate::orders::journal::{JournalError, Recovered};
use crate::orders::record::{self, BatchEncoder, DecodedBatch, Record, BATCH_RECORDS_MAX};
use crate::orders::rules::{Creation, Refusal, Rules};
use crate::orders::{Order, Status, IDEMPOTENCY_KEY_BYTES_MAX, TIME_MS_MAX};

/// Requests that may wait for the committer; beyond this the book answers
/// `Unavailable` at once instead of letting memory and latency grow without bound.
/// A batch is everything queued, so this also bounds a batch.
const QUEUE_CAPACITY: usize = 65_536;
const _: () = assert!(QUEUE_CAPACITY <= BATCH_RECORDS_MAX);
/// Sync latencies above a minute are recorded as a minute.
const SYNC_LATENCY_MAX_US: u64 = 60_000_000;

/// Why a request was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderError {
    NotFound,
    /// The order exists but its status is not the one the move starts from.
    WrongStatus {
        current: Status,
    },
    /// The journal cannot take the request: it failed, is shutting down, or is
    /// overloaded. Nothing was recorded.
    Unavailable,
    /// The store has used every order number it can hold.
    Full,
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::NotFound => write!(f, "order not found"),
            OrderError::WrongStatus { current } => {
                write!(
                    f,
                    "the order is {}, which cannot move there",
                    current.as_str()
                )
            }
            OrderError::Unavailable => write!(f, "the order journal is unavailable"),
            OrderError::Full => write!(
                f,
                "the store holds {} orders and cannot take more",
                OrderIndex::CAPACITY_MAX
            ),
        }
    }
}

impl std::error::Error for OrderError {}

impl From<Refusal> for OrderError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound => OrderError::NotFound,
            Refusal::WrongStatus { current } => OrderError::WrongStatus { current },
            Refusal::Full => OrderError::Full,
        }
    }
}

/// Journal counters for `/metrics`.
#[derive(Debug, Clone)]
pub struct JournalStats {
    pub syncs: u64,
    pub records: u64,
    /// Duration of each fdatasync, in microseconds.
    pub sync_latency_us: Histogram<u64>,
}

/// The orders of one store, on its owner core. Shared as `Rc<OrderBook>` by the
/// owner core's tasks; other cores read the index and forward their requests here.
pub struct OrderBook {
    shared: Rc<Shared>,
    /// Dropping the book cancels the committer; its unanswered requests then get
    /// `Unavailable`.
    committer: RefCell<Option<Task<()>>>,
    /// Recovery's locked descriptor of the journal, closed (and so unlocked) when the
    /// book is dropped. glommio closes its own descriptors asynchronously, which
    /// never happens if the executor stops first, so it cannot carry the lock.
    _lock: File,
}

impl OrderBook {
    /// Starts the book on the current executor over a journal [`recover`] returned:
    /// opens `path` for appending at `recovered.valid_len` and spawns the committer.
    /// Publishes nothing: the caller already filled `index` from `recovered.orders`.
    ///
    /// [`recover`]: crate::orders::journal::recover
    pub async fn start(
        path: &Path,
        recovered: Recovered,
        index: Arc<OrderIndex>,
    ) -> Result<Rc<OrderBook>, JournalError> {
        let io_error = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        // Appending to any other file than the one recovery checked would write
        // records at a position and with sequence numbers that are not its own.
        let checked = recovered.file.metadata().map_err(io_error)?;
        let named = std::fs::metadata(path).map_err(io_error)?;
        if (checked.dev(), checked.ino()) != (named.dev(), named.ino()) {
            return Err(io_error(io::Error::other(
                "this is not the journal file that recovery checked",
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .buffered_open(path)
            .await
            .map_err(|error| io_error(error.into()))?;
        Ok(Self::launch(path, file, recovered, index))
    }

    /// Spawns the committer appending to `file`.
    fn launch(
        path: &Path,
        file: BufferedFile,
        recovered: Recovered,
        index: Arc<OrderIndex>,
    ) -> Rc<OrderBook> {
        assert_eq!(
            index.len(),
            recovered.orders.len() as u64,
            "publish the recovered orders into the index before starting the book"
        );
        assert_eq!(recovered.rules.orders(), index.len());
        let shared = Rc::new(Shared {
            queue: RefCell::new(Queue {
                waiting: VecDeque::new(),
                committer: None,
                accepting: true,
            }),
            index,
            observers: RefCell::new(Vec::new()),
            stats: RefCell::new(JournalStats {
                syncs: 0,
                records: 0,
                sync_latency_us: Histogram::new_with_bounds(1, SYNC_LATENCY_MAX_US, 2)
                    .expect("constant histogram bounds are valid"),
            }),
        });
        let committer = Committer {
            shared: Rc::clone(&shared),
            file,
            path: path.to_owned(),
            tail_bytes: recovered.valid_len,
            next_seq: recovered.next_seq,
            journal_id: recovered.journal_id,
            rules: recovered.rules,
            batch: VecDeque::new(),
            tentative: HashMap::new(),
            changes: Vec::new(),
            answers: Vec::new(),
        };
        let task = glommio::spawn_local(committer.run());
        Rc::new(OrderBook {
            shared,
            committer: RefCell::new(Some(task)),
            _lock: recovered.file,
        })
    }

    /// A new pending order for `menu`. With an idempotency key already used (by a
    /// committed order or an earlier request of the same batch), that order's current
    /// state instead of a new one. An empty key counts as none; a key over
    /// [`MAX_IDEMPOTENCY_KEY_BYTES`] cannot be journaled and gets `Unavailable` (the
    /// HTTP layer answers it with 400 before it gets here).
    ///
    /// Panics on a menu index outside [`MENU`]: those come from `menu::find` only.
    pub async fn create(
        &self,
        menu: MenuIndex,
        idempotency_key: Option<&[u8]>,
    ) -> Result<Order, OrderError> {
        assert!(
            usize::from(menu) < MENU.len(),
            "menu index {menu} is not on the menu"
        );
        let key = match idempotency_key {
            Some(key) if key.len() > IDEMPOTENCY_KEY_BYTES_MAX => {
                return Err(OrderError::Unavailable)
            }
            Some(key) if !key.is_empty() => Some(Box::from(key)),
            _ => None,
        };
        self.submit(|reply| Request::Create { menu, key, reply })
            .await
    }

    /// Moves order `number` to `to`, which must be its status's `next()`; otherwise
    /// `WrongStatus { current }`. An unknown number is `NotFound`.
    pub async fn advance(&self, number: u64, to: Status) -> Result<Order, OrderError> {
        self.submit(|reply| Request::Advance { number, to, reply })
            .await
    }

    /// Calls `observer` for every order creation and status change once it is durable
    /// and published, in journal order (for live screens).
    pub fn add_observer(&self, observer: Box<dyn Fn(&Order)>) {
        self.shared.observers.borrow_mut().push(observer);
    }

    pub fn stats(&self) -> JournalStats {
        self.shared.stats.borrow().clone()
    }

    /// Commits everything queued, then stops the committer and closes the journal;
    /// later requests get `Unavailable`. A second call returns at once.
    pub async fn shutdown(&self) {
        let committer_waker = {
            let mut queue = self.shared.queue.borrow_mut();
            queue.accepting = false;
            queue.committer.take()
        };
        if let Some(waker) = committer_waker {
            waker.wake();
        }
        let committer = self.committer.borrow_mut().take();
        if let Some(task) = committer {
            task.await;
        }
    }

    /// Queues one request and waits for the committer's answer.
    async fn submit(&self, request: impl FnOnce(Reply) -> Request) -> Result<Order, OrderError> {
        let (reply, answer) = oneshot::channel();
        let committer_waker = {
            let mut queue = self.shared.queue.borrow_mut();
            if !queue.accepting || queue.waiting.len() >= QUEUE_CAPACITY {
                return Err(OrderError::Unavailable);
            }
            queue.waiting.push_back(request(reply));
            queue.committer.take()
        };
        if let Some(waker) = committer_waker {
            waker.wake();
        }
        // A reply dropped unanswered (the committer failed or was cancelled) means
        // nothing was made durable for this request.
        answer.await.unwrap_or(Err(OrderError::Unavailable))
    }
}

/// Told of each durable change; see [`OrderBook::add_observer`].
type Observer = Box<dyn Fn(&Order)>;

/// What the book's handle and its committer task share.
struct Shared {
    queue: RefCell<Queue>,
    index: Arc<OrderIndex>,
    observers: RefCell<Vec<Observer>>,
    stats: RefCell<JournalStats>,
}

struct Queue {
    waiting: VecDeque<Request>,
    /// Set while the committer sleeps for want of requests.
    committer: Option<Waker>,
    /// False once shutdown began or the journal failed.
    accepting: bool,
}

enum Request {
    Create {
        menu: MenuIndex,
        key: Option<Box<[u8]>>,
        reply: Reply,
    },
    Advance {
        number: u64,
        to: Status,
        reply: Reply,
    },
}

/// The committer's end of one request.
type Reply = oneshot::Sender<Result<Order, OrderError>>;

/// The committer task's state: the owner's view of the orders and the journal's tail.
struct Committer {
    shared: Rc<Shared>,
    file: BufferedFile,
    path: PathBuf,
    /// Where the next batch is written.
    tail_bytes: u64,
    /// The sequence number of the next batch's first record.
    next_seq: u64,
    /// Keys the batch checksums.
    journal_id: u64,
    /// The rules' state, including the batch being built.
    rules: Rules,
    /// The requests being committed; swapped with the queue to reuse both buffers.
    batch: VecDeque<Request>,
    /// Orders changed by the batch being built, in their uncommitted state; the
    /// index has the committed state of every other order.
    tentative: HashMap<u64, Order>,
    /// The batch's changes in journal order, to publish once durable.
    changes: Vec<Order>,
    /// The batch's answers, to send once durable.
    answers: Vec<(Reply, Result<Order, OrderError>)>,
}

impl Committer {
    async fn run(mut self) {
        while self.take_batch().await {
            let records = self.build_batch();
            if records.records() > 0 {
                let bytes = records.finish(self.journal_id, self.next_seq);
                self.check_sealed(&bytes);
                if let Err(error) = self.write_and_sync(bytes).await {
                    self.poison(&error);
                    return;
                }
                self.next_seq += self.changes.len() as u64;
            }
            self.finish_batch();
        }
        if let Err(error) = self.file.close().await {
            log::warn!("journal {}: closing failed: {error}", self.path.display());
        }
    }

    /// Waits for requests; false once the book is shutting down and none are left.
    async fn take_batch(&mut self) -> bool {
        poll_fn(|cx| {
            let mut queue = self.shared.queue.borrow_mut();
            if !queue.waiting.is_empty() {
                mem::swap(&mut queue.waiting, &mut self.batch);
                Poll::Ready(true)
            } else if !queue.accepting {
                Poll::Ready(false)
            } else {
                queue.committer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Decides every request of the batch and encodes the records it needs, all
    /// stamped with one time.
    fn build_batch(&mut self) -> BatchEncoder {
        let mut records = BatchEncoder::default();
        let time_ms = self.rules.stamp_ms(wall_clock_ms());
        let mut batch = mem::take(&mut self.batch);
        for request in batch.drain(..) {
            let (reply, result) = match request {
                Request::Create { menu, key, reply } => {
                    let key = key.as_deref().unwrap_or_default();
                    (reply, self.create(menu, key, time_ms, &mut records))
                }
                Request::Advance { number, to, reply } => {
                    (reply, self.advance(number, to, time_ms, &mut records))
                }
            };
            self.answers.push((reply, result));
        }
        self.batch = batch;
        records
    }

    fn create(
        &mut self,
        menu: MenuIndex,
        key: &[u8],
        time_ms: u64,
        records: &mut BatchEncoder,
    ) -> Result<Order, OrderError> {
        let (tentative, index) = (&self.tentative, &*self.shared.index);
        match self.rules.create(menu, key, time_ms, |number| {
            current(tentative, index, number)
        })? {
            Creation::Existing(order) => Ok(order),
            Creation::New(record) => Ok(self.append(&record, records)),
        }
    }

    fn advance(
        &mut self,
        number: u64,
        to: Status,
        time_ms: u64,
        records: &mut BatchEncoder,
    ) -> Result<Order, OrderError> {
        let (tentative, index) = (&self.tentative, &*self.shared.index);
        let record = self.rules.advance(number, to, time_ms, |number| {
            current(tentative, index, number)
        })?;
        Ok(self.append(&record, records))
    }

    /// Encodes `record` into the batch, reads it back from those bytes and takes in
    /// what they say through the rules, exactly as replay will. A refusal here is a
    /// bug that would make the journal unreadable: it stops the program before the
    /// batch is written.
    fn append(&mut self, record: &Record<'_>, records: &mut BatchEncoder) -> Order {
        let encoded = records.push(record);
        let decoded = match record::decode(encoded) {
            Ok((decoded, len)) if len == encoded.len() && decoded == *record => decoded,
            other => panic!("{record:?} was encoded as {encoded:?}, which reads as {other:?}"),
        };
        let (tentative, index) = (&self.tentative, &*self.shared.index);
        let order = self
            .rules
            .apply(&decoded, |number| current(tentative, index, number))
            .unwrap_or_else(|violation| panic!("the committer broke an order rule: {violation}"));
        self.tentative.insert(order.number, order);
        self.changes.push(order);
        order
    }

    /// Reads the sealed batch back as recovery will, before it is written.
    fn check_sealed(&self, bytes: &[u8]) {
        match record::decode_batch(bytes, self.journal_id, self.next_seq) {
            DecodedBatch::Batch(batch) if batch.len == bytes.len() => assert_eq!(
                batch.records,
                self.changes.len(),
                "the sealed batch holds another number of records than were decided"
            ),
            other => panic!("a sealed batch reads back as {other:?}"),
        }
    }

    /// Writes the batch at the tail and makes it durable.
    async fn write_and_sync(&mut self, records: Vec<u8>) -> io::Result<()> {
        let length_bytes = records.len();
        let written_bytes = self.file.write_at(records, self.tail_bytes).await?;
        if written_bytes != length_bytes {
            // Regular files write short only when the disk is full or failing; a
            // retry would hide that, and the tail is now unknown anyway.
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written_bytes} of {length_bytes} bytes"),
            ));
        }
        let sync_started = Instant::now();
        self.file.fdatasync().await?;
        let sync_us = u64::try_from(sync_started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.tail_bytes += length_bytes as u64;
        let mut stats = self.shared.stats.borrow_mut();
        stats.syncs += 1;
        stats.records += self.changes.len() as u64;
        stats.sync_latency_us.saturating_record(sync_us);
        Ok(())
    }

    /// Publishes the durable batch, tells the observers, answers the requests.
    fn finish_batch(&mut self) {
        for order in &self.changes {
            self.shared.index.publish(*order);
        }
        if !self.changes.is_empty() {
            // Taken out while they run, so an observer may add another observer.
            let mut observers = mem::take(&mut *self.shared.observers.borrow_mut());
            for order in &self.changes {
                for observer in &observers {
                    observer(order);
                }
            }
            let mut slot = self.shared.observers.borrow_mut();
            observers.append(&mut slot);
            *slot = observers;
        }
        self.changes.clear();
        self.tentative.clear();
        for (reply, result) in self.answers.drain(..) {
            // The requester may have given up (its connection closed); nothing to do.
            let _ = reply.send(result);
        }
    }

    /// Refuses this batch and everything after it.
    fn poison(&mut self, error: &io::Error) {
        log::error!(
            "journal {}: writing at byte offset {} failed ({error}); refusing every order \
             change from now on. Restart to recover what reached the disk",
            self.path.display(),
            self.tail_bytes
        );
        let stranded = {
            let mut queue = self.shared.queue.borrow_mut();
            queue.accepting = false;
            mem::take(&mut queue.waiting)
        };
        // Dropped replies answer `Unavailable`.
        drop(stranded);
        self.changes.clear();
        self.answers.clear();
    }
}

/// The order's state as of the requests decided so far.
fn current(tentative: &HashMap<u64, Order>, index: &OrderIndex, number: u64) -> Option<Order> {
    tentative
        .get(&number)
        .copied()
        .or_else(|| index.get(number))
}

/// Now, in milliseconds since the Unix epoch, within what a record can hold.
fn wall_clock_ms() -> u64 {
    crate::clock::unix_now_ms().min(TIME_MS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::journal::recover;
    use glommio::LocalExecutorBuilder;
    use std::future::Future;
    use tempfile::TempDir;

    /// Runs `test` on a fresh executor with little pinned memory.
    fn on_executor<T>(test: impl Future<Output = T>) -> T {
        LocalExecutorBuilder::default()
            .io_memory(64 << 10)
            .make()
            .expect("executor starts")
            .run(test)
    }

    /// Recovers the journal at `path` and starts a book on it, index filled.
    async fn open(path: &Path) -> (Rc<OrderBook>, Arc<OrderIndex>) {
        let recovered = recover(path).unwrap();
        let index = Arc::new(OrderIndex::new());
        for order in &recovered.orders {
            index.publish(*order);
        }
        let book = OrderBook::start(path, recovered, Arc::clone(&index))
            .await
            .unwrap();
        (book, index)
    }

    fn journal(dir: &TempDir) -> PathBuf {
        dir.path().join("orders.journal")
    }

    #[test]
    fn concurrent_creates_are_numbered_densely_with_few_syncs() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, index) = open(&path).await;
            let tasks: Vec<_> = (0..200u64)
                .map(|i| {
                    let book = Rc::clone(&book);
                    glommio::spawn_local(async move {
                        book.create((i % 4) as MenuIndex, None).await.unwrap()
                    })
                })
                .collect();
            let mut numbers = Vec::new();
            for task in tasks {
                let order = task.await;
                assert_eq!(order.status, Status::Pending);
                assert_eq!(
                    index.get(order.number),
                    Some(order),
                    "published before the answer"
                );
                numbers.push(order.number);
            }
            numbers.sort_unstable();
            assert_eq!(numbers, (1..=200).collect::<Vec<_>>());
            let stats = book.stats();
            assert_eq!(stats.records, 200);
            assert!(stats.syncs <= 20, "{} syncs for 200 creates", stats.syncs);
            assert_eq!(stats.sync_latency_us.len(), stats.syncs);
            assert_eq!(index.len(), 200);
            book.shutdown().await;
        });
    }

    /// Lets every task already woken run before this one continues.
    async fn yield_now() {
        let mut yielded = false;
        poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    #[test]
    fn requests_arriving_during_a_sync_form_the_next_batch() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, index) = open(&path).await;
            let first = {
                let book = Rc::clone(&book);
                glommio::spawn_local(async move { book.create(0, None).await })
            };
            // The committer takes the first request and starts writing it.
            yield_now().await;
            let later: Vec<_> = (0..100)
                .map(|_| {
                    let book = Rc::clone(&book);
                    glommio::spawn_local(async move { book.create(1, None).await })
                })
                .collect();
            assert_eq!(first.await.unwrap().number, 1);
            for task in later {
                assert!(task.await.unwrap().number > 1);
            }
            assert_eq!(index.len(), 101);
            assert_eq!(book.stats().syncs, 2);
            book.shutdown().await;
        });
    }

    #[test]
    fn a_repeated_idempotency_key_returns_the_same_order() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, index) = open(&path).await;
            let first = book.create(1, Some(b"key-a")).await.unwrap();
            let again = book.create(2, Some(b"key-a")).await.unwrap();
            assert_eq!(again, first);
            // The repeat reports the order's current state.
            let moved = book
                .advance(first.number, Status::WaitingPickup)
                .await
                .unwrap();
            assert_eq!(book.create(1, Some(b"key-a")).await, Ok(moved));
            // Two at once, in the same batch: one order.
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let book = Rc::clone(&book);
                    glommio::spawn_local(async move { book.create(3, Some(b"key-b")).await })
                })
                .collect();
            let mut raced = Vec::new();
            for racer in racers {
                raced.push(racer.await.unwrap());
            }
            assert_eq!(raced[0], raced[1]);
            assert_eq!(raced[0].menu, 3);
            // No key, or an empty one, always makes a new order.
            let plain = book.create(0, None).await.unwrap();
            let empty_key = book.create(0, Some(b"")).await.unwrap();
            assert_ne!(plain.number, empty_key.number);
            assert_eq!(index.len(), 4);
            assert_eq!(book.stats().records, 5);
            // A key too long for the journal is refused, not truncated.
            let too_long = [b'k'; IDEMPOTENCY_KEY_BYTES_MAX + 1];
            assert_eq!(
                book.create(0, Some(&too_long)).await,
                Err(OrderError::Unavailable)
            );
            book.shutdown().await;
        });
    }

    #[test]
    fn advance_moves_only_forward_one_step() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, index) = open(&path).await;
            let order = book.create(2, None).await.unwrap();
            let n = order.number;
            assert_eq!(
                book.advance(n, Status::Completed).await,
                Err(OrderError::WrongStatus {
                    current: Status::Pending
                })
            );
            assert_eq!(
                book.advance(n, Status::Pending).await,
                Err(OrderError::WrongStatus {
                    current: Status::Pending
                })
            );
            let waiting = book.advance(n, Status::WaitingPickup).await.unwrap();
            assert_eq!(waiting.status, Status::WaitingPickup);
            assert_eq!(index.get(n), Some(waiting));
            assert_eq!(
                book.advance(n, Status::WaitingPickup).await,
                Err(OrderError::WrongStatus {
                    current: Status::WaitingPickup
                })
            );
            let done = book.advance(n, Status::Completed).await.unwrap();
            assert_eq!(done.status, Status::Completed);
            assert_eq!(
                book.advance(n, Status::Completed).await,
                Err(OrderError::WrongStatus {
                    current: Status::Completed
                })
            );
            assert_eq!(
                book.advance(0, Status::WaitingPickup).await,
                Err(OrderError::NotFound)
            );
            assert_eq!(
                book.advance(n + 1, Status::WaitingPickup).await,
                Err(OrderError::NotFound)
            );
            // Refusals write nothing.
            assert_eq!(book.stats().records, 3);
            book.shutdown().await;
        });
    }

    #[test]
    fn a_create_and_its_advance_in_one_batch_are_both_committed() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, _index) = open(&path).await;
            let creator = {
                let book = Rc::clone(&book);
                glommio::spawn_local(async move { book.create(0, None).await })
            };
            // Queued behind the create, decided against it in the same batch.
            let mover = {
                let book = Rc::clone(&book);
                glommio::spawn_local(async move { book.advance(1, Status::WaitingPickup).await })
            };
            assert_eq!(creator.await.unwrap().number, 1);
            assert_eq!(mover.await.unwrap().status, Status::WaitingPickup);
            book.shutdown().await;
        });
        let recovered = recover(&path).unwrap();
        assert_eq!(recovered.orders[0].status, Status::WaitingPickup);
    }

    #[test]
    fn orders_carry_their_commit_times_through_recovery() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        let before_ms = wall_clock_ms();
        let (created, moved) = on_executor(async {
            let (book, index) = open(&path).await;
            let created = book.create(1, None).await.unwrap();
            let moved = book
                .advance(created.number, Status::WaitingPickup)
                .await
                .unwrap();
            assert_eq!(index.get(created.number), Some(moved));
            book.shutdown().await;
            (created, moved)
        });
        let after_ms = wall_clock_ms();
        assert!((before_ms..=after_ms).contains(&created.created_ms));
        assert_eq!(created.updated_ms, created.created_ms);
        assert_eq!(moved.created_ms, created.created_ms);
        assert!((created.created_ms..=after_ms).contains(&moved.updated_ms));
        assert_eq!(recover(&path).unwrap().orders, vec![moved]);
    }

    #[test]
    fn observers_see_each_change_once_published() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, index) = open(&path).await;
            let seen = Rc::new(RefCell::new(Vec::new()));
            {
                let seen = Rc::clone(&seen);
                let index = Arc::clone(&index);
                book.add_observer(Box::new(move |order| {
                    assert_eq!(
                        index.get(order.number).map(|o| o.number),
                        Some(order.number)
                    );
                    seen.borrow_mut().push(*order);
                }));
            }
            let order = book.create(1, None).await.unwrap();
            let moved = book
                .advance(order.number, Status::WaitingPickup)
                .await
                .unwrap();
            let _ = book.advance(order.number, Status::Pending).await;
            assert_eq!(*seen.borrow(), vec![order, moved]);
            book.shutdown().await;
        });
    }

    #[test]
    fn acknowledged_orders_survive_and_numbering_continues() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        let acknowledged = on_executor(async {
            let (book, _index) = open(&path).await;
            let mut acknowledged = Vec::new();
            for i in 0..30u64 {
                let key = format!("guest-{i}");
                let key = (i % 3 == 0).then_some(key.as_bytes());
                let mut order = book.create((i % 4) as MenuIndex, key).await.unwrap();
                for _ in 0..i % 3 {
                    let to = order.status.next().unwrap();
                    order = book.advance(order.number, to).await.unwrap();
                }
                acknowledged.push(order);
            }
            // No shutdown: the book is simply dropped, as in a crash after the acks.
            acknowledged
        });
        let recovered = recover(&path).unwrap();
        assert_eq!(recovered.orders, acknowledged);
        assert_eq!(recovered.rules.keys(), 10);
        assert_eq!(recovered.rules.order_of_key(b"guest-3"), Some(4));
        drop(recovered);

        on_executor(async {
            let (book, index) = open(&path).await;
            assert_eq!(index.len(), 30);
            let next = book.create(0, None).await.unwrap();
            assert_eq!(next.number, 31);
            let repeat = book.create(0, Some(b"guest-3")).await.unwrap();
            assert_eq!(repeat, acknowledged[3]);
            book.shutdown().await;
        });
        assert_eq!(recover(&path).unwrap().orders.len(), 31);
    }

    #[test]
    fn shutdown_commits_what_is_queued_then_refuses() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, index) = open(&path).await;
            let queued: Vec<_> = (0..10)
                .map(|_| {
                    let book = Rc::clone(&book);
                    glommio::spawn_local(async move { book.create(0, None).await })
                })
                .collect();
            book.shutdown().await;
            for task in queued {
                assert!(task.await.is_ok());
            }
            assert_eq!(index.len(), 10);
            assert_eq!(book.create(0, None).await, Err(OrderError::Unavailable));
            assert_eq!(
                book.advance(1, Status::WaitingPickup).await,
                Err(OrderError::Unavailable)
            );
            book.shutdown().await;
        });
        assert_eq!(recover(&path).unwrap().orders.len(), 10);
    }

    #[test]
    fn a_failed_write_poisons_the_book_and_acknowledges_nothing() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let recovered = recover(&path).unwrap();
            // Every write to /dev/full fails with ENOSPC.
            let full_disk = OpenOptions::new()
                .read(true)
                .write(true)
                .buffered_open("/dev/full")
                .await
                .unwrap();
            let index = Arc::new(OrderIndex::new());
            let book = OrderBook::launch(&path, full_disk, recovered, Arc::clone(&index));
            let observed = Rc::new(RefCell::new(0));
            {
                let observed = Rc::clone(&observed);
                book.add_observer(Box::new(move |_| *observed.borrow_mut() += 1));
            }
            assert_eq!(book.create(0, None).await, Err(OrderError::Unavailable));
            assert_eq!(book.create(0, None).await, Err(OrderError::Unavailable));
            assert!(index.is_empty());
            assert_eq!(*observed.borrow(), 0);
            assert_eq!(book.stats().syncs, 0);
            book.shutdown().await;
        });
        assert!(recover(&path).unwrap().orders.is_empty());
    }

    #[test]
    fn start_refuses_a_file_other_than_the_recovered_one() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        let other = dir.path().join("other.journal");
        drop(recover(&other).unwrap());
        on_executor(async {
            let recovered = recover(&path).unwrap();
            let index = Arc::new(OrderIndex::new());
            match OrderBook::start(&other, recovered, index).await {
                Err(JournalError::Io { path, .. }) => assert_eq!(path, other),
                Err(error) => panic!("unexpected {error}"),
                Ok(_) => panic!("started on the wrong file"),
            }
        });
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let dir = TempDir::new().unwrap();
        let path = journal(&dir);
        on_executor(async {
            let (book, index) = open(&path).await;
            let total = QUEUE_CAPACITY + 100;
            // Each task queues its request before the committer gets to run.
            let tasks: Vec<_> = (0..total)
                .map(|_| {
                    let book = Rc::clone(&book);
                    glommio::spawn_local(async move { book.create(0, None).await })
                })
                .collect();
            let mut refused = 0;
            for task in tasks {
                match task.await {
                    Ok(_) => {}
                    Err(OrderError::Unavailable) => refused += 1,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            assert!(refused > 0);
            assert_eq!(index.len() as usize + refused, total);
            book.shutdown().await;
        });
    }
}
