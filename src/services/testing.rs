//! What the services' unit tests share: members that are bare slots, and a reader of
//! the frames a service queued for them.

use super::RoomBudget;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::ws::slot::Slot;
use std::rc::Rc;
use std::sync::Arc;

/// A budget of `rooms_max` rooms on the only core.
pub fn budget(rooms_max: usize) -> Rc<RoomBudget> {
    let placement = Arc::new(Placement::new(1, 0));
    Rc::new(RoomBudget::new(
        rooms_max,
        placement,
        0,
        Rc::new(Clock::manual(0)),
        metrics(),
    ))
}

pub fn slot() -> Rc<Slot> {
    Rc::new(Slot::new(0, u64::MAX / 2))
}

pub fn metrics() -> Rc<Metrics> {
    Rc::new(Metrics::default())
}

/// The text frames queued on `slot` since the last call, and whether a close frame is
/// requested (its code). Server frames are unmasked, so the header is 2 or 4 bytes here.
pub fn texts(slot: &Slot) -> Vec<String> {
    let bytes = std::mem::take(&mut *slot.outbox().borrow_mut());
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        assert_eq!(bytes[pos], 0x81, "a final text frame");
        let (len, header) = match bytes[pos + 1] {
            126 => (
                usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]])),
                4,
            ),
            short => (usize::from(short), 2),
        };
        let start = pos + header;
        texts.push(String::from_utf8(bytes[start..start + len].to_vec()).expect("UTF-8"));
        pos = start + len;
    }
    texts
}
