//! One room's broadcast stream: the newest `{"average","count"}` frame, encoded once into
//! shared bytes with a version number. A member keeps the version it has seen (one
//! `u64`) and takes the newest frame it has not sent; versions it skipped were conflated
//! (the room counts them as it replaces them, see `ws::fanout`). However many members a
//! room has and however slowly they read, a broadcast costs one encode and each member
//! O(1) memory.

use crate::ws::frame::{self, Opcode};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

pub struct Broadcast {
    frame: RefCell<Rc<[u8]>>,
    version: Cell<u64>,
}

impl Default for Broadcast {
    fn default() -> Self {
        Broadcast {
            frame: RefCell::new(Rc::from(&[][..])),
            version: Cell::new(0),
        }
    }
}

impl Broadcast {
    /// Makes `json` the newest frame (a text frame, encoded here once for everyone).
    pub fn publish(&self, json: &[u8]) {
        let mut bytes =
            Vec::with_capacity(json.len() + crate::limits::SERVER_FRAME_HEADER_BYTES_MAX);
        frame::encode_frame(Opcode::Text, json, &mut bytes);
        *self.frame.borrow_mut() = Rc::from(bytes);
        self.version.set(self.version.get() + 1);
    }

    /// How many frames were published; 0 before the first.
    pub fn version(&self) -> u64 {
        self.version.get()
    }

    /// The newest frame.
    pub fn frame(&self) -> Rc<[u8]> {
        self.frame.borrow().clone()
    }

    /// The newest frame if it is newer than version `seen`, which it then advances.
    pub fn newest_after(&self, seen: &Cell<u64>) -> Option<Rc<[u8]>> {
        if self.version() == seen.get() {
            return None;
        }
        seen.set(self.version());
        Some(self.frame())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_takes_only_the_newest() {
        let broadcast = Broadcast::default();
        broadcast.publish(b"{\"average\":1,\"count\":1}");
        let late = Cell::new(broadcast.version());
        let early = Cell::new(0);
        assert!(
            broadcast.newest_after(&late).is_none(),
            "a new member hears nothing old"
        );
        broadcast.publish(b"{\"average\":2,\"count\":2}");
        broadcast.publish(b"{\"average\":3,\"count\":3}");
        let frame = broadcast.newest_after(&early).unwrap();
        assert_eq!(&frame[2..], b"{\"average\":3,\"count\":3}");
        assert_eq!(frame[0], 0x81, "an unmasked final text frame");
        assert_eq!(early.get(), 3);
        assert!(broadcast.newest_after(&late).is_some());
        assert!(broadcast.newest_after(&early).is_none());
    }
}
