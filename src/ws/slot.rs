//! The little a connection shares with the room (or lobby, or batch) it is in and with
//! its core's heartbeat sweep: a waker, a bounded outbox of personal frames, a close
//! request, the time it was last heard from, and where it is in its room's broadcast.
//!
//! A room leaves personal frames here and wakes the connection, which does its own
//! writing. Broadcasts take a shorter way: while the connection has nothing queued it
//! lends the room its socket, and the room writes the shared frame straight into it
//! ([`Slot::offer_broadcast`]) — one non-blocking send per member, no task woken. Only
//! a member whose socket is full falls back to its own task, which then writes just the
//! newest frame (conflation).

use super::frame::{self, Opcode};
use crate::limits::{OUTBOX_BYTES_MAX, SERVER_FRAME_HEADER_BYTES_MAX};
use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::Waker;

/// No socket lent: the room must wake the connection.
const NO_SOCKET: RawFd = -1;

/// A shared broadcast frame and how many of its bytes were written.
pub type FrameInFlight = (Rc<[u8]>, usize);

pub struct Slot {
    waker: Cell<Option<Waker>>,
    /// The socket, while the connection has nothing queued and lends it to the room.
    lent_socket: Cell<RawFd>,
    /// The newest broadcast version sent to (or skipped by) this member.
    pub broadcast_seen: Cell<u64>,
    /// A broadcast frame the room could only write in part; the connection writes the
    /// rest before anything else.
    broadcast_rest: RefCell<Option<FrameInFlight>>,
    outbox: RefCell<Vec<u8>>,
    /// The server wants to close with this code once the outbox is sent.
    close_code: Cell<Option<u16>>,
    /// The outbox overflowed: drop the connection without further ceremony.
    overflowed: Cell<bool>,
    pub last_heard_ms: Cell<u64>,
    pub next_ping_ms: Cell<u64>,
    /// Set by the sweep: send a ping.
    pub ping_due: Cell<bool>,
    /// Set by the sweep: silent too long.
    pub expired: Cell<bool>,
    /// Position in the core's sweep list.
    pub sweep_index: Cell<usize>,
    /// Position in its room's member list.
    pub member_index: Cell<usize>,
}

impl Slot {
    pub fn new(now_ms: u64, ping_interval_ms: u64) -> Slot {
        Slot {
            waker: Cell::new(None),
            lent_socket: Cell::new(NO_SOCKET),
            broadcast_seen: Cell::new(0),
            broadcast_rest: RefCell::new(None),
            outbox: RefCell::new(Vec::new()),
            close_code: Cell::new(None),
            overflowed: Cell::new(false),
            last_heard_ms: Cell::new(now_ms),
            next_ping_ms: Cell::new(now_ms + ping_interval_ms),
            ping_due: Cell::new(false),
            expired: Cell::new(false),
            sweep_index: Cell::new(0),
            member_index: Cell::new(0),
        }
    }

    /// The connection has written everything it had: the room may write broadcasts to
    /// `socket` itself until the connection has something to send again.
    pub fn lend_socket(&self, socket: RawFd) {
        self.lent_socket.set(socket);
    }

    /// The connection needs its socket back (it has bytes queued or is closing).
    pub fn take_socket_back(&self) {
        self.lent_socket.set(NO_SOCKET);
    }

    /// Writes broadcast `frame` (version `version`) straight into the lent socket.
    /// True when all of it went out; otherwise the connection must be woken: the
    /// socket was not lent, was full (the connection will send the newest frame when
    /// it drains), took only part (the connection sends the rest first), or failed (the
    /// connection will see the error).
    pub fn offer_broadcast(&self, frame: &Rc<[u8]>, version: u64) -> bool {
        let socket = self.lent_socket.get();
        if socket == NO_SOCKET {
            return false;
        }
        // SAFETY: the connection lends the descriptor only while it owns the open socket
        // and writes nothing itself; the buffer is valid for its length.
        let sent = unsafe {
            libc::send(
                socket,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent == frame.len() as isize {
            self.broadcast_seen.set(version);
            return true;
        }
        if sent > 0 {
            *self.broadcast_rest.borrow_mut() = Some((frame.clone(), sent as usize));
            self.broadcast_seen.set(version);
        }
        self.take_socket_back();
        false
    }

    /// The broadcast frame the room began to write, and how much of it went out.
    pub fn broadcast_rest(&self) -> &RefCell<Option<FrameInFlight>> {
        &self.broadcast_rest
    }

    /// Remembers the task to wake; cheap when it is the same task as last time.
    pub fn register(&self, waker: &Waker) {
        let current = self.waker.take();
        match current {
            Some(w) if w.will_wake(waker) => self.waker.set(Some(w)),
            _ => self.waker.set(Some(waker.clone())),
        }
    }

    pub fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Queues a text frame for this client alone and wakes it.
    pub fn send_text(&self, payload: &[u8]) {
        self.push_frame(Opcode::Text, payload);
    }

    pub fn push_frame(&self, opcode: Opcode, payload: &[u8]) {
        self.take_socket_back();
        {
            let mut outbox = self.outbox.borrow_mut();
            if outbox.len() + payload.len() + SERVER_FRAME_HEADER_BYTES_MAX > OUTBOX_BYTES_MAX {
                self.overflowed.set(true);
            } else {
                frame::encode_frame(opcode, payload, &mut outbox);
            }
        }
        self.wake();
    }

    /// Asks the connection to send a close frame with `code` after what is queued.
    pub fn close(&self, code: u16) {
        self.take_socket_back();
        if self.close_code.get().is_none() {
            self.close_code.set(Some(code));
        }
        self.wake();
    }

    pub fn close_code(&self) -> Option<u16> {
        self.close_code.get()
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
    }

    pub fn outbox(&self) -> &RefCell<Vec<u8>> {
        &self.outbox
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn frame(text: &str) -> Rc<[u8]> {
        let mut bytes = Vec::new();
        frame::encode_frame(Opcode::Text, text.as_bytes(), &mut bytes);
        Rc::from(bytes)
    }

    #[test]
    fn a_lent_socket_takes_the_frame_and_the_version_is_seen() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let slot = Slot::new(0, 1000);
        let hello = frame("hello");
        assert!(!slot.offer_broadcast(&hello, 1), "nothing lent yet");
        slot.lend_socket(ours.as_raw_fd());
        assert!(slot.offer_broadcast(&hello, 1));
        assert_eq!(slot.broadcast_seen.get(), 1);
        let mut got = vec![0; hello.len()];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &hello[..]);
    }

    #[test]
    fn queueing_anything_takes_the_socket_back() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let slot = Slot::new(0, 1000);
        slot.lend_socket(ours.as_raw_fd());
        slot.send_text(b"personal");
        assert!(
            !slot.offer_broadcast(&frame("x"), 1),
            "the outbox goes first"
        );
        slot.lend_socket(ours.as_raw_fd());
        slot.close(1000);
        assert!(
            !slot.offer_broadcast(&frame("x"), 1),
            "nothing after a close"
        );
    }

    #[test]
    fn a_full_socket_keeps_the_rest_for_the_connection() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let slot = Slot::new(0, 1000);
        let big = frame(&"x".repeat(60_000));
        let mut version = 0;
        let mut sent_whole = 0;
        loop {
            version += 1;
            slot.lend_socket(ours.as_raw_fd());
            if !slot.offer_broadcast(&big, version) {
                break;
            }
            sent_whole += 1;
        }
        let rest = slot.broadcast_rest().borrow().clone();
        if let Some((rest_of, offset)) = rest {
            assert!(Rc::ptr_eq(&rest_of, &big) && offset > 0 && offset < big.len());
            assert_eq!(
                slot.broadcast_seen.get(),
                version,
                "a begun frame counts as sent"
            );
        } else {
            assert_eq!(
                slot.broadcast_seen.get(),
                version - 1,
                "a refused frame does not"
            );
        }
        assert!(
            !slot.offer_broadcast(&big, version + 1),
            "the socket is taken back"
        );
        assert!(theirs.read(&mut [0; 16]).unwrap() > 0);
        assert!(sent_whole > 0);
    }

    #[test]
    fn a_closed_peer_is_left_to_the_connection() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let slot = Slot::new(0, 1000);
        slot.lend_socket(ours.as_raw_fd());
        assert!(
            !slot.offer_broadcast(&frame("x"), 1),
            "no SIGPIPE, no panic"
        );
        assert_eq!(slot.broadcast_seen.get(), 0);
    }
}
