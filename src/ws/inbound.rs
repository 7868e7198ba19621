//! What every WebSocket of a core receives, read by one io_uring of the core's own.
//!
//! Read through glommio, each client message costs a `recv(2)` and then a fresh
//! io_uring poll (with a descriptor lookup and a glommio source) to learn when the
//! next one arrives, and a wake-up of the connection's task between the two. Here
//! each connection arms one multishot `RECV` for its life instead: the kernel receives
//! every message into a buffer it takes from a ring of buffers the core provides, and
//! posts a completion naming the buffer. Nothing is re-armed per message and no
//! system call is made per message; the core's reaper hands each buffer to its
//! connection's [`Reader`] and gives the buffer back.
//!
//! The ring defers the kernel's receive work to the reaper's own `io_uring_enter`
//! (`DEFER_TASKRUN`), so arriving data never interrupts the core, and it rings an
//! eventfd when work is waiting; glommio waits on that eventfd for the reaper.
//!
//! Bounds: the buffers are [`BUFFERS`] × [`BUFFER_BYTES`] per core, whatever the
//! number of connections. When the kernel finds none free, a connection's receive ends
//! (`ENOBUFS`) and the reaper arms it again once it has given buffers back; the client's
//! bytes wait in its socket meanwhile, so nothing is lost.

use io_uring::{cqueue, opcode, types, IoUring};
use slab::Slab;
use std::alloc::{self, Layout};
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

/// Receive buffers per core (a power of two, as the kernel's buffer ring wants).
const BUFFERS: u16 = 512;

/// Bytes per receive buffer. Client messages are tens of bytes; a longer one spans
/// buffers and its connection joins the pieces.
const BUFFER_BYTES: usize = 2048;

/// The buffer group of the core's receive buffers (the ring has one).
const BUFFER_GROUP: u16 = 0;

/// Submission queue entries: arming, cancelling and re-arming receives.
const SUBMISSIONS_MAX: u32 = 256;

/// Completions held before the kernel keeps the rest aside (they are not lost).
const COMPLETIONS_MAX: u32 = 8192;

/// Completions handed to readers per pass, copied out of the queue first so that a
/// reader never runs while the ring is borrowed.
const PASS_COMPLETIONS_MAX: usize = 256;

/// Passes per reap before the reaper lets the core's other tasks run.
const REAP_PASSES_MAX: usize = 16;

/// The user data of cancellations, whose completions need no handling.
const CANCEL: u64 = u64::MAX;

/// Where a connection's received bytes go.
pub trait Reader {
    /// Bytes the client sent, in order. They are the reader's to change (unmasking
    /// happens in place) until it returns.
    fn on_bytes(&self, bytes: &mut [u8]);

    /// No more bytes will come: the client closed its side, or the socket failed.
    fn on_end(&self);
}

/// One connection's armed receive.
struct Armed {
    socket: RawFd,
    reader: Rc<dyn Reader>,
    generation: u32,
}

/// A receive's user data: its place among the readers, and the generation that tells
/// it from an earlier connection's in the same place.
fn token(key: usize, generation: u32) -> u64 {
    key as u64 | (u64::from(generation) << 32)
}

fn key(token: u64) -> usize {
    token as u32 as usize
}

/// The receive `token` names, if its connection has not stopped.
fn armed(readers: &Slab<Armed>, token: u64) -> Option<&Armed> {
    readers
        .get(key(token))
        .filter(|armed| armed.generation == (token >> 32) as u32)
}

/// The core's receive ring.
pub struct Inbound {
    ring: RefCell<IoUring>,
    buffers: Buffers,
    readers: RefCell<Slab<Armed>>,
    /// Tells armed receives of a connection from those of an earlier one in its place.
    generation: Cell<u32>,
    /// Receives that ended for want of buffers, to arm again.
    starved: RefCell<Vec<u64>>,
    /// Rung by the kernel when deferred receives wait; glommio's end of it, which the
    /// reaper takes.
    doorbell: RefCell<Option<OwnedFd>>,
    /// The same eventfd, for the reaper to ring itself.
    doorbell_raw: RawFd,
}

/// A connection's receive, cancelled when dropped.
pub struct Reading {
    inbound: Rc<Inbound>,
    token: u64,
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.inbound.stop(self.token);
    }
}

impl Inbound {
    /// Opens the core's ring and its buffers. Call on the core's own thread: only it
    /// may enter the ring.
    pub fn new() -> io::Result<Inbound> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(COMPLETIONS_MAX)
            .build(SUBMISSIONS_MAX)
            .map_err(|e| io::Error::new(e.kind(), format!("needs Linux 6.1 or later: {e}")))?;
        // SAFETY: eventfd(2) with valid flags; the descriptor is owned below. It stays
        // blocking so that glommio's read of it waits for the kernel's ring.
        let doorbell = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if doorbell < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor no one else owns.
        let doorbell = unsafe { OwnedFd::from_raw_fd(doorbell) };
        ring.submitter().register_eventfd(doorbell.as_raw_fd())?;
        let buffers = Buffers::new(&ring)?;
        Ok(Inbound {
            ring: RefCell::new(ring),
            buffers,
            readers: RefCell::new(Slab::new()),
            generation: Cell::new(0),
            starved: RefCell::new(Vec::new()),
            doorbell_raw: doorbell.as_raw_fd(),
            doorbell: RefCell::new(Some(doorbell)),
        })
    }

    /// Starts receiving `socket`'s bytes into `reader` until the returned [`Reading`]
    /// is dropped, which must happen before the socket is closed.
    pub fn start(self: &Rc<Inbound>, socket: RawFd, reader: Rc<dyn Reader>) -> Reading {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        let key = self.readers.borrow_mut().insert(Armed {
            socket,
            reader,
            generation,
        });
        let token = token(key, generation);
        self.arm(socket, token);
        self.submit();
        Reading {
            inbound: self.clone(),
            token,
        }
    }

    /// The reaper: hands out what arrived, whenever the doorbell rings. One per core,
    /// for the life of the core.
    pub async fn run(self: Rc<Inbound>) {
        let doorbell = self
            .doorbell
            .borrow_mut()
            .take()
            .expect("one reaper per core");
        // SAFETY: the descriptor is ours; the glommio file takes ownership of it.
        let doorbell = unsafe { glommio::io::BufferedFile::from_raw_fd(doorbell.into_raw_fd()) };
        loop {
            self.reap();
            if let Err(e) = doorbell.read_at(0, 8).await {
                // Should not happen; keep receiving, if less promptly.
                log::error!("the receive ring's doorbell failed: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }

    /// Runs the deferred receives and hands every completion to its reader, for at
    /// most [`REAP_PASSES_MAX`] passes; if work is left, rings the doorbell itself so
    /// that the reaper comes back after the core's other tasks had their turn (the
    /// kernel rings it only when work arrives with none waiting).
    ///
    /// The doorbell is off meanwhile: the completions the reaper's own enters post
    /// would ring it for work already done, and cost a second wake-up per wake-up.
    fn reap(&self) {
        let mut pass = [(0u64, 0i32, 0u32); PASS_COMPLETIONS_MAX];
        self.ring.borrow_mut().completion().disable_eventfd();
        for passes in 0..REAP_PASSES_MAX {
            let (taken, deferred) = {
                let mut ring = self.ring.borrow_mut();
                self.enter(&ring, passes > 0);
                let mut taken = 0;
                for done in ring.completion().take(PASS_COMPLETIONS_MAX) {
                    pass[taken] = (done.user_data(), done.result(), done.flags());
                    taken += 1;
                }
                let deferred = ring.submission().taskrun();
                (taken, deferred)
            };
            for &(token, result, flags) in &pass[..taken] {
                self.on_completion(token, result, flags);
            }
            self.buffers.publish();
            self.arm_starved();
            if taken < PASS_COMPLETIONS_MAX && !deferred && !self.doorbell_back_on() {
                return;
            }
        }
        self.doorbell_back_on();
        self.ring_doorbell();
    }

    /// Turns the doorbell back on; true if work came while it was off, which then
    /// rang nothing.
    fn doorbell_back_on(&self) -> bool {
        let mut ring = self.ring.borrow_mut();
        ring.completion().enable_eventfd();
        // Against the kernel's "mark work waiting, then look at the doorbell's switch":
        // one of the two sides sees the other's write.
        std::sync::atomic::fence(Ordering::SeqCst);
        let waiting = ring.submission().taskrun() || !ring.completion().is_empty();
        if waiting {
            ring.completion().disable_eventfd();
        }
        waiting
    }

    fn ring_doorbell(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-byte write from a valid buffer to the eventfd, which lives as
        // long as the reaper's glommio file (the core's life).
        unsafe { libc::write(self.doorbell_raw, one.as_ptr().cast(), one.len()) };
    }

    fn on_completion(&self, token: u64, result: i32, flags: u32) {
        if token == CANCEL {
            return;
        }
        let reader = armed(&self.readers.borrow(), token).map(|armed| armed.reader.clone());
        if let Some(id) = cqueue::buffer_select(flags) {
            if let (Some(reader), true) = (&reader, result > 0) {
                let len = (result as usize).min(BUFFER_BYTES);
                // SAFETY: the kernel filled `len` bytes of buffer `id` and gave it to us;
                // it is not handed to the kernel again until `give_back` below.
                let bytes = unsafe { std::slice::from_raw_parts_mut(self.buffers.start(id), len) };
                reader.on_bytes(bytes);
            }
            self.buffers.give_back(id);
        }
        let Some(reader) = reader else {
            // A connection that already stopped: its cancelled receive's last words.
            return;
        };
        if cqueue::more(flags) {
            return;
        }
        match result {
            // Out of buffers, or the kernel ended it for its own reasons: data may still
            // come, so receive again once buffers are back.
            r if r == -libc::ENOBUFS || r > 0 => self.starved.borrow_mut().push(token),
            _ => reader.on_end(),
        }
    }

    fn arm_starved(&self) {
        let starved = std::mem::take(&mut *self.starved.borrow_mut());
        if starved.is_empty() {
            return;
        }
        for token in starved {
            let socket = armed(&self.readers.borrow(), token).map(|armed| armed.socket);
            if let Some(socket) = socket {
                self.arm(socket, token);
            }
        }
        self.submit();
    }

    /// Queues a multishot receive for `socket`.
    fn arm(&self, socket: RawFd, token: u64) {
        let receive = opcode::RecvMulti::new(types::Fd(socket), BUFFER_GROUP)
            .build()
            .user_data(token);
        self.push(&receive);
    }

    fn stop(&self, token: u64) {
        let mut readers = self.readers.borrow_mut();
        if armed(&readers, token).is_some() {
            readers.remove(key(token));
        }
        drop(readers);
        self.push(&opcode::AsyncCancel::new(token).build().user_data(CANCEL));
        // At once: the receive holds the socket open until it is cancelled.
        self.submit();
    }

    fn push(&self, entry: &io_uring::squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: receives and cancellations point at no memory of ours beyond the
            // registered buffer ring, which lives as long as the ring.
            if unsafe { ring.submission().push(entry) }.is_ok() {
                return;
            }
            self.enter(&ring, false);
        }
    }

    fn submit(&self) {
        self.enter(&self.ring.borrow(), false);
    }

    /// Submits what is queued and runs the receives the kernel deferred to us: a
    /// handful of them (the kernel's default for an enter that waits for nothing), or
    /// with `backlog` up to a pass — asking for a pass of completions with a zero
    /// timeout is what makes one enter run that many, at the price of setting up a
    /// wait, so it is only worth it when work is known to be left.
    fn enter(&self, ring: &IoUring, backlog: bool) {
        let no_wait = types::Timespec::new();
        let args = types::SubmitArgs::new().timespec(&no_wait);
        loop {
            let entered = if backlog {
                ring.submitter()
                    .submit_with_args(PASS_COMPLETIONS_MAX, &args)
            } else {
                ring.submit_and_wait(0)
            };
            match entered {
                Ok(_) => return,
                Err(e) => match e.raw_os_error() {
                    // Fewer completions than asked for: the timeout passed at once.
                    Some(libc::ETIME) => return,
                    Some(libc::EINTR | libc::EAGAIN) => {}
                    // The completion queue is full and the kernel keeps the rest aside:
                    // the caller's pass makes room.
                    Some(libc::EBUSY) => return,
                    _ => panic!("io_uring_enter on the receive ring failed: {e}"),
                },
            }
        }
    }
}

/// The core's receive buffers and the ring through which the kernel takes them.
struct Buffers {
    /// `BUFFERS` × `BUFFER_BYTES`, written by the kernel.
    memory: *mut u8,
    /// The ring of buffer entries shared with the kernel (page-aligned).
    entries: *mut types::BufRingEntry,
    /// The next tail, published to the kernel by [`Buffers::publish`].
    tail: Cell<u16>,
}

impl Buffers {
    fn new(ring: &IoUring) -> io::Result<Buffers> {
        // SAFETY: both layouts are non-zero; the memory is freed in `drop`, after the
        // ring that uses it (`Inbound` drops its ring first).
        let (memory, entries) = unsafe {
            (
                alloc::alloc_zeroed(Self::memory_layout()),
                alloc::alloc_zeroed(Self::entries_layout()).cast::<types::BufRingEntry>(),
            )
        };
        if memory.is_null() || entries.is_null() {
            alloc::handle_alloc_error(Self::memory_layout());
        }
        let buffers = Buffers {
            memory,
            entries,
            tail: Cell::new(0),
        };
        for id in 0..BUFFERS {
            buffers.give_back(id);
        }
        buffers.publish();
        // SAFETY: the entries stay valid and unmoved for the ring's life (see above).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, BUFFERS, BUFFER_GROUP, 0)
        }?;
        Ok(buffers)
    }

    fn memory_layout() -> Layout {
        Layout::from_size_align(BUFFERS as usize * BUFFER_BYTES, 64).expect("a valid layout")
    }

    fn entries_layout() -> Layout {
        let bytes = BUFFERS as usize * std::mem::size_of::<types::BufRingEntry>();
        Layout::from_size_align(bytes, 4096).expect("a valid layout")
    }

    /// Where buffer `id` starts.
    fn start(&self, id: u16) -> *mut u8 {
        // SAFETY: every buffer id the kernel names is below `BUFFERS`, so in bounds.
        unsafe { self.memory.add(usize::from(id % BUFFERS) * BUFFER_BYTES) }
    }

    /// Queues buffer `id` for the kernel again; [`Buffers::publish`] hands it over.
    fn give_back(&self, id: u16) {
        let tail = self.tail.get();
        // SAFETY: the index is masked into the ring; the kernel reads only entries
        // between its head and the published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.entries.add((tail & (BUFFERS - 1)) as usize) };
        entry.set_addr(self.start(id) as u64);
        entry.set_len(BUFFER_BYTES as u32);
        entry.set_bid(id);
        self.tail.set(tail.wrapping_add(1));
    }

    /// Hands every buffer given back so far to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry, which is valid and aligned
        // for an atomic u16; the kernel reads it with acquire ordering.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail.get(), Ordering::Release);
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts.
        unsafe {
            alloc::dealloc(self.memory, Self::memory_layout());
            alloc::dealloc(self.entries.cast(), Self::entries_layout());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[derive(Default)]
    struct Collect {
        bytes: RefCell<Vec<u8>>,
        ended: Cell<bool>,
    }

    impl Reader for Collect {
        fn on_bytes(&self, bytes: &mut [u8]) {
            self.bytes.borrow_mut().extend_from_slice(bytes);
        }

        fn on_end(&self) {
            self.ended.set(true);
        }
    }

    /// Reaps (as the doorbell would have the reaper do) until `done`.
    fn reap_until(inbound: &Inbound, mut done: impl FnMut() -> bool) {
        for _ in 0..5000 {
            inbound.reap();
            if done() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("not done after 5000 reaps");
    }

    #[test]
    fn bytes_arrive_in_order_and_the_end_is_told() {
        let inbound = Rc::new(Inbound::new().unwrap());
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let reader = Rc::new(Collect::default());
        let _reading = inbound.start(ours.as_raw_fd(), reader.clone());
        theirs.write_all(b"hello ").unwrap();
        reap_until(&inbound, || reader.bytes.borrow().len() == 6);
        theirs.write_all(b"world").unwrap();
        reap_until(&inbound, || reader.bytes.borrow().len() == 11);
        assert_eq!(&reader.bytes.borrow()[..], b"hello world");
        assert!(!reader.ended.get());
        drop(theirs);
        reap_until(&inbound, || reader.ended.get());
    }

    #[test]
    fn more_than_every_buffer_holds_arrives_whole_and_in_order() {
        let inbound = Rc::new(Inbound::new().unwrap());
        // 64 sockets with 80 KiB waiting in each: five times the core's buffers, so
        // receives run out of buffers and must be armed again.
        let pattern = |socket: usize, at: usize| (socket * 7 + at % 251) as u8;
        let bytes_each = 80 << 10;
        let mut pairs = Vec::new();
        for socket in 0..64 {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            let data: Vec<u8> = (0..bytes_each).map(|at| pattern(socket, at)).collect();
            theirs.write_all(&data).unwrap();
            pairs.push((ours, theirs));
        }
        assert!(64 * bytes_each > 4 * BUFFERS as usize * BUFFER_BYTES);
        let readers: Vec<_> = (0..64).map(|_| Rc::new(Collect::default())).collect();
        let _readings: Vec<_> = pairs
            .iter()
            .zip(&readers)
            .map(|((ours, _), reader)| inbound.start(ours.as_raw_fd(), reader.clone()))
            .collect();
        reap_until(&inbound, || {
            readers
                .iter()
                .all(|reader| reader.bytes.borrow().len() >= bytes_each)
        });
        for (socket, reader) in readers.iter().enumerate() {
            let got = reader.bytes.borrow();
            assert_eq!(got.len(), bytes_each);
            assert!(got
                .iter()
                .enumerate()
                .all(|(at, &b)| b == pattern(socket, at)));
        }
    }

    #[test]
    fn a_stopped_reading_takes_nothing_more_and_lets_the_socket_close() {
        let inbound = Rc::new(Inbound::new().unwrap());
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let reader = Rc::new(Collect::default());
        let reading = inbound.start(ours.as_raw_fd(), reader.clone());
        drop(reading);
        theirs.write_all(b"too late").unwrap();
        inbound.reap();
        drop(ours);
        theirs.set_nonblocking(true).unwrap();
        let mut sink = [0u8; 16];
        reap_until(&inbound, || theirs.read(&mut sink).is_ok_and(|n| n == 0));
        assert!(reader.bytes.borrow().is_empty());
        assert!(!reader.ended.get(), "a stopped reader hears nothing");
    }
}
