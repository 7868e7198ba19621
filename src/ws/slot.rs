//! The little a connection shares with the room (or lobby, or batch) it is in and with
//! its core's heartbeat sweep: a waker, a bounded outbox of personal frames, a close
//! request, the time it was last heard from, and where it is in its room's broadcast.
//!
//! A room leaves personal frames here and wakes the connection, which does its own
//! writing. Broadcasts take a shorter way: while the connection has nothing queued it
//! lends the room its socket, and the room writes the shared frame straight into it
//! (see [`super::fanout`]) — no task woken. Only a member whose socket is full falls
//! back to its own task, which then writes just the newest frame (conflation).

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

    /// The socket the connection lent, if it did.
    pub fn lent_socket(&self) -> Option<RawFd> {
        let socket = self.lent_socket.get();
        (socket != NO_SOCKET).then_some(socket)
    }

    /// Records what writing broadcast `frame` (version `version`) into the lent socket
    /// did: `written` bytes, or a negative errno. True when all of it went out;
    /// otherwise the socket goes back to the connection, which must be woken: the
    /// socket was full (the connection will send the newest frame when it drains),
    /// took only part (the connection sends the rest first), or failed (the
    /// connection will see the error).
    pub fn broadcast_written(&self, frame: &Rc<[u8]>, version: u64, written: isize) -> bool {
        if written == frame.len() as isize {
            self.broadcast_seen.set(version);
            return true;
        }
        if written > 0 {
            *self.broadcast_rest.borrow_mut() = Some((frame.clone(), written as usize));
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
pub(crate) mod tests {
    use super::*;

    /// A text frame as a room would share it.
    pub(crate) fn frame(text: &str) -> Rc<[u8]> {
        let mut bytes = Vec::new();
        frame::encode_frame(Opcode::Text, text.as_bytes(), &mut bytes);
        Rc::from(bytes)
    }

    #[test]
    fn a_whole_write_is_seen_and_keeps_the_socket_lent() {
        let slot = Slot::new(0, 1000);
        assert_eq!(slot.lent_socket(), None, "nothing lent yet");
        slot.lend_socket(5);
        let hello = frame("hello");
        assert!(slot.broadcast_written(&hello, 1, hello.len() as isize));
        assert_eq!(slot.broadcast_seen.get(), 1);
        assert_eq!(slot.lent_socket(), Some(5));
    }

    #[test]
    fn queueing_anything_takes_the_socket_back() {
        let slot = Slot::new(0, 1000);
        slot.lend_socket(5);
        slot.send_text(b"personal");
        assert_eq!(slot.lent_socket(), None, "the outbox goes first");
        slot.lend_socket(5);
        slot.close(1000);
        assert_eq!(slot.lent_socket(), None, "nothing after a close");
    }

    #[test]
    fn a_part_written_frame_is_kept_for_the_connection() {
        let slot = Slot::new(0, 1000);
        slot.lend_socket(5);
        let big = frame(&"x".repeat(1000));
        assert!(!slot.broadcast_written(&big, 3, 400));
        let rest = slot.broadcast_rest().borrow().clone().unwrap();
        assert!(Rc::ptr_eq(&rest.0, &big) && rest.1 == 400);
        assert_eq!(slot.broadcast_seen.get(), 3, "a begun frame counts as sent");
        assert_eq!(slot.lent_socket(), None);
    }

    #[test]
    fn a_refused_write_is_not_seen() {
        let slot = Slot::new(0, 1000);
        slot.lend_socket(5);
        assert!(!slot.broadcast_written(&frame("x"), 1, -(libc::EAGAIN as isize)));
        assert!(!slot.broadcast_written(&frame("x"), 2, -(libc::EPIPE as isize)));
        assert_eq!(slot.broadcast_seen.get(), 0);
        assert!(slot.broadcast_rest().borrow().is_none());
        assert_eq!(slot.lent_socket(), None);
    }
}
