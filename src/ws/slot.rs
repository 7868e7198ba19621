//! The little a connection shares with the room (or lobby, or batch) it is in and with
//! its core's heartbeat sweep: a waker, a bounded outbox of personal frames, a close
//! request and the time it was last heard from. Rooms never touch the socket; they
//! leave a note here and wake the connection, which does its own writing.

use super::frame::{self, Opcode};
use crate::limits::{OUTBOX_BYTES_MAX, SERVER_FRAME_HEADER_BYTES_MAX};
use std::cell::{Cell, RefCell};
use std::task::Waker;

#[derive(Default)]
pub struct Slot {
    waker: Cell<Option<Waker>>,
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
        let slot = Slot::default();
        slot.last_heard_ms.set(now_ms);
        slot.next_ping_ms.set(now_ms + ping_interval_ms);
        slot
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
