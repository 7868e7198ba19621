//! One room's broadcast stream: the newest `{"average","count"}` frame, encoded once into
//! shared bytes with a version number. A member keeps a [`Cursor`] (one `u64`) and takes
//! the newest frame it has not sent; versions it skipped were conflated. However many
//! members a room has and however slowly they read, a broadcast costs one encode and
//! each member O(1) memory.

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
}

/// Where one member is in its room's broadcast stream.
pub struct Cursor {
    seen_version: u64,
}

impl Cursor {
    /// A cursor that has seen everything published so far: a new member hears only
    /// what comes after it joined.
    pub fn at_end(broadcast: &Broadcast) -> Cursor {
        Cursor {
            seen_version: broadcast.version(),
        }
    }

    /// The newest frame not yet taken, and how many older ones it replaces unsent.
    pub fn newest(&mut self, broadcast: &Broadcast) -> Option<(Rc<[u8]>, u64)> {
        let version = broadcast.version();
        if version == self.seen_version {
            return None;
        }
        let skipped = version - self.seen_version - 1;
        self.seen_version = version;
        Some((broadcast.frame.borrow().clone(), skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_takes_only_the_newest_and_counts_what_it_skipped() {
        let broadcast = Broadcast::default();
        broadcast.publish(b"{\"average\":1,\"count\":1}");
        let mut late = Cursor::at_end(&broadcast);
        let mut early = Cursor { seen_version: 0 };
        assert!(
            late.newest(&broadcast).is_none(),
            "a new member hears nothing old"
        );
        broadcast.publish(b"{\"average\":2,\"count\":2}");
        broadcast.publish(b"{\"average\":3,\"count\":3}");
        let (frame, skipped) = early.newest(&broadcast).unwrap();
        assert_eq!(skipped, 2);
        assert_eq!(&frame[2..], b"{\"average\":3,\"count\":3}");
        assert_eq!(frame[0], 0x81, "an unmasked final text frame");
        let (_, skipped) = late.newest(&broadcast).unwrap();
        assert_eq!(skipped, 1);
        assert!(early.newest(&broadcast).is_none());
    }
}
