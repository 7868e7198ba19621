//! One broadcast frame into many sockets with one system call per batch.
//!
//! A room's broadcast is the same bytes for every member. Written with one `send(2)`
//! each, every member costs a system call's entry, exit and file lookup on top of
//! the TCP work. The core keeps an io_uring of its own (glommio does not let its
//! users submit): the room queues one `SEND` per member whose socket is lent, and
//! one `io_uring_enter` issues the whole batch. `MSG_DONTWAIT` makes every send
//! finish during that call — it writes what fits or fails with `EAGAIN`, it never
//! waits for room — so all completions are collected before `broadcast` returns,
//! while the frame and the lent descriptors are still what they were. A member that
//! did not take the whole frame is handed back to its connection (see
//! [`Slot::broadcast_written`]).
//!
//! Each connection also registers its socket in the ring's file table for its life
//! ([`Fanout::register`]): a `SEND` to a registered socket skips the kernel's
//! descriptor lookup and reference count, which a busy broadcast otherwise pays once
//! per member (`fget`/`fput`, about 4% of the server's CPU at 4 × 1,500 members).

use super::slot::Slot;
use io_uring::{opcode, types, IoUring};
use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;

/// Sends queued per `io_uring_enter`: a bigger room takes several batches. Also the
/// submission queue's size (the completion queue is twice that, so it cannot
/// overflow while one batch is collected).
const BATCH_SENDS_MAX: usize = 1024;

/// What became of one broadcast.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Members whose socket took the whole frame.
    pub sent: usize,
    /// Members that did not take it and had not been sent the previous broadcast
    /// either: that one is now replaced unsent (conflated). Counted here, as it
    /// happens, because a member that never reads never runs its own task to notice.
    pub superseded: usize,
}

/// The core's broadcast ring.
pub struct Fanout {
    ring: RefCell<IoUring>,
    /// Which descriptors are in the ring's file table, indexed by descriptor number;
    /// as long as the table (empty where the kernel cannot register files).
    registered: RefCell<Vec<bool>>,
}

impl Fanout {
    /// Opens the core's ring. Call on the core's own thread: only that thread submits.
    pub fn new() -> io::Result<Fanout> {
        let entries = BATCH_SENDS_MAX as u32;
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_submit_all()
            .build(entries)
            // Kernels before 6.0 refuse some of these flags; the ring works without them.
            .or_else(|_| IoUring::builder().build(entries))?;
        // The kernel never hands out a descriptor at or above the soft limit, so a table
        // that long has a place for every socket, at its own number.
        let table_len = descriptors_max();
        let table_len = match ring.submitter().register_files_sparse(table_len as u32) {
            Ok(()) => table_len,
            Err(e) => {
                log::debug!("broadcasts go without registered sockets: {e}");
                0
            }
        };
        Ok(Fanout {
            ring: RefCell::new(ring),
            registered: RefCell::new(vec![false; table_len]),
        })
    }

    /// Puts `socket` in the ring's file table until the returned registration is
    /// dropped, which must happen before the socket is closed: the table holds the
    /// socket open. A socket that cannot be registered is sent to by its number.
    pub fn register(self: &Rc<Fanout>, socket: RawFd) -> Registration {
        let mut registered = self.registered.borrow_mut();
        if let Some(place) = registered.get_mut(socket as usize) {
            let ring = self.ring.borrow();
            *place = ring
                .submitter()
                .register_files_update(socket as u32, &[socket])
                .is_ok_and(|updated| updated == 1);
        }
        Registration {
            fanout: self.clone(),
            socket,
        }
    }

    /// Writes `frame` (broadcast `version`) into the socket of every member that lent
    /// one, and wakes every member that did not take all of it so its connection sends
    /// the rest or the newest frame itself.
    pub fn broadcast(&self, frame: &Rc<[u8]>, version: u64, members: &[Rc<Slot>]) -> Delivery {
        let mut ring = self.ring.borrow_mut();
        let registered = self.registered.borrow();
        let mut delivery = Delivery::default();
        let left_behind = |slot: &Slot, delivery: &mut Delivery| {
            if slot.broadcast_seen.get() + 1 < version {
                delivery.superseded += 1;
            }
            slot.wake();
        };
        for batch in members.chunks(BATCH_SENDS_MAX) {
            let mut queued = 0;
            {
                let mut queue = ring.submission();
                for (position, slot) in batch.iter().enumerate() {
                    let Some(socket) = slot.lent_socket() else {
                        left_behind(slot, &mut delivery);
                        continue;
                    };
                    let (bytes, len) = (frame.as_ptr(), frame.len() as u32);
                    let send = if registered.get(socket as usize) == Some(&true) {
                        opcode::Send::new(types::Fixed(socket as u32), bytes, len)
                    } else {
                        opcode::Send::new(types::Fd(socket), bytes, len)
                    };
                    let send = send
                        .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(position as u64);
                    // SAFETY: the frame outlives the batch (every completion is collected
                    // below, before `frame` can be dropped), and a lent descriptor stays
                    // open while this synchronous call runs. The queue has room: it holds
                    // one batch and is emptied by every submit.
                    unsafe { queue.push(&send) }.expect("a batch fits the submission queue");
                    queued += 1;
                }
            }
            let mut collected = 0;
            while collected < queued {
                if let Err(e) = ring.submit_and_wait(queued - collected) {
                    // Interrupted, or the kernel is short of memory for a moment: the
                    // batch is still queued, so submitting again is safe.
                    assert!(
                        matches!(
                            e.raw_os_error(),
                            Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                        ),
                        "io_uring_enter for a broadcast batch failed: {e}"
                    );
                    continue;
                }
                for done in ring.completion() {
                    collected += 1;
                    let slot = &batch[done.user_data() as usize];
                    if slot.broadcast_written(frame, version, done.result() as isize) {
                        delivery.sent += 1;
                    } else {
                        left_behind(slot, &mut delivery);
                    }
                }
            }
        }
        delivery
    }
}

/// A socket's place in its core's ring file table, given back when dropped.
pub struct Registration {
    fanout: Rc<Fanout>,
    socket: RawFd,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registered = self.fanout.registered.borrow_mut();
        if let Some(place @ true) = registered.get_mut(self.socket as usize) {
            *place = false;
            let ring = self.fanout.ring.borrow();
            if let Err(e) = ring
                .submitter()
                .register_files_update(self.socket as u32, &[-1])
            {
                // Nothing else can free the place; the socket stays open until the core ends.
                log::warn!(
                    "cannot take socket {} out of the broadcast ring: {e}",
                    self.socket
                );
            }
        }
    }
}

/// The process's soft limit on open descriptors.
fn descriptors_max() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    // The kernel's own cap on a ring's file table.
    limit.rlim_cur.min(1 << 20) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::slot::tests::frame;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn watched_slot() -> (Rc<Slot>, Arc<Count>) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let slot = Rc::new(Slot::new(0, 1000));
        slot.register(&Waker::from(count.clone()));
        (slot, count)
    }

    #[test]
    fn lent_sockets_get_the_frame_and_the_others_are_woken() {
        let fanout = Fanout::new().unwrap();
        let pairs: Vec<_> = (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let slots: Vec<_> = (0..4).map(|_| watched_slot()).collect();
        for ((slot, _), (ours, _)) in slots.iter().zip(&pairs) {
            slot.lend_socket(ours.as_raw_fd());
        }
        let members: Vec<_> = slots.iter().map(|(slot, _)| slot.clone()).collect();
        let hello = frame("hello");
        let delivery = fanout.broadcast(&hello, 7, &members);
        assert_eq!(
            delivery,
            Delivery {
                sent: 3,
                superseded: 1
            },
            "the unlent member never had 6 either"
        );
        for (_, theirs) in &pairs {
            let mut got = vec![0; hello.len()];
            (&*theirs).read_exact(&mut got).unwrap();
            assert_eq!(&got[..], &hello[..]);
        }
        for (slot, woken) in &slots[..3] {
            assert_eq!(slot.broadcast_seen.get(), 7);
            assert_eq!(woken.0.load(Ordering::Relaxed), 0, "written, not woken");
        }
        let (unlent, woken) = &slots[3];
        assert_eq!(unlent.broadcast_seen.get(), 0);
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_registered_socket_gets_broadcasts_and_closes_once_given_back() {
        let fanout = Rc::new(Fanout::new().unwrap());
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let registration = fanout.register(ours.as_raw_fd());
        assert!(
            fanout.registered.borrow()[ours.as_raw_fd() as usize],
            "this kernel registers files"
        );
        let (slot, _) = watched_slot();
        slot.lend_socket(ours.as_raw_fd());
        let hello = frame("hello");
        assert_eq!(
            fanout
                .broadcast(&hello, 1, std::slice::from_ref(&slot))
                .sent,
            1
        );
        let mut got = vec![0; hello.len()];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &hello[..]);

        // The ring's table holds the socket open: closing our descriptor alone is not
        // the end of it...
        drop(ours);
        theirs.set_nonblocking(true).unwrap();
        let e = theirs.read(&mut [0; 16]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "still open");
        // ...giving the place back is.
        drop(registration);
        assert_eq!(theirs.read(&mut [0; 16]).unwrap(), 0, "closed for real");
    }

    #[test]
    fn a_room_bigger_than_a_batch_is_sent_whole() {
        let fanout = Fanout::new().unwrap();
        let members_n = BATCH_SENDS_MAX + 5;
        let pairs: Vec<_> = (0..members_n)
            .map(|_| UnixStream::pair().unwrap())
            .collect();
        let members: Vec<_> = pairs
            .iter()
            .map(|(ours, _)| {
                let slot = Rc::new(Slot::new(0, 1000));
                slot.lend_socket(ours.as_raw_fd());
                slot
            })
            .collect();
        assert_eq!(fanout.broadcast(&frame("x"), 1, &members).sent, members_n);
        assert!(members.iter().all(|slot| slot.broadcast_seen.get() == 1));
    }

    #[test]
    fn a_full_socket_or_a_gone_peer_goes_back_to_its_connection() {
        let fanout = Fanout::new().unwrap();
        let (full, mut full_peer) = UnixStream::pair().unwrap();
        let (gone, gone_peer) = UnixStream::pair().unwrap();
        drop(gone_peer);
        let (full_slot, full_woken) = watched_slot();
        let (gone_slot, gone_woken) = watched_slot();
        let members = vec![full_slot.clone(), gone_slot.clone()];
        let big = frame(&"x".repeat(60_000));
        let mut version = 0;
        loop {
            version += 1;
            full_slot.lend_socket(full.as_raw_fd());
            gone_slot.lend_socket(gone.as_raw_fd());
            if fanout.broadcast(&big, version, &members).sent == 0 {
                break;
            }
            assert!(version < 1000, "the socket never filled");
        }
        assert!(full_woken.0.load(Ordering::Relaxed) >= 1);
        assert!(gone_woken.0.load(Ordering::Relaxed) >= 1);
        assert_eq!(
            gone_slot.broadcast_seen.get(),
            0,
            "no SIGPIPE, nothing seen"
        );
        assert_eq!(full_slot.lent_socket(), None, "the connection has it back");
        assert!(full_peer.read(&mut [0; 16]).unwrap() > 0);
    }
}
