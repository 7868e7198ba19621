//! A core's WebSocket bookkeeping: every connection's slot, and the heartbeat sweep
//! that pings every connection every 30 s and drops the silent ones. One sweep task per
//! core replaces a timer per connection: 15,000 idle connections cost one pass over a
//! Vec four times a second.

use crate::clock::Clock;
use crate::limits::HEARTBEAT_SWEEP_MS;
use crate::placement::Placement;
use crate::ws::slot::Slot;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Heartbeat timing; from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct HeartbeatSettings {
    pub ping_interval_ms: u64,
    pub idle_timeout_ms: u64,
}

pub struct Sockets {
    clock: Rc<Clock>,
    slots: RefCell<Vec<Rc<Slot>>>,
    heartbeat: HeartbeatSettings,
    /// Set by [`Sockets::close_all`]: connections that join later are closed at once.
    closing: Cell<Option<u16>>,
    /// Where this core's WebSockets are counted, for placing new rooms.
    placement: Arc<Placement>,
    core: usize,
}

impl Sockets {
    pub fn new(
        clock: Rc<Clock>,
        heartbeat: HeartbeatSettings,
        placement: Arc<Placement>,
        core: usize,
    ) -> Sockets {
        Sockets {
            clock,
            slots: RefCell::new(Vec::new()),
            heartbeat,
            closing: Cell::new(None),
            placement,
            core,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn new_slot(&self) -> Rc<Slot> {
        let slot = Rc::new(Slot::new(self.now_ms(), self.heartbeat.ping_interval_ms));
        let mut slots = self.slots.borrow_mut();
        slot.sweep_index.set(slots.len());
        slots.push(slot.clone());
        self.placement.members_delta(self.core, 1);
        if let Some(code) = self.closing.get() {
            slot.close(code);
        }
        slot
    }

    pub fn drop_slot(&self, slot: &Slot) {
        let mut slots = self.slots.borrow_mut();
        let index = slot.sweep_index.get();
        slots.swap_remove(index);
        if let Some(moved) = slots.get(index) {
            moved.sweep_index.set(index);
        }
        self.placement.members_delta(self.core, -1);
    }

    /// Asks every WebSocket on this core to close with `code` (shutdown: 1001), and
    /// every one that joins from now on (a hand-off from another core, an upgrade that
    /// was already being answered).
    pub fn close_all(&self, code: u16) {
        self.closing.set(Some(code));
        for slot in self.slots.borrow().iter() {
            slot.close(code);
        }
    }

    fn sweep(&self) {
        let now_ms = self.now_ms();
        let HeartbeatSettings {
            ping_interval_ms,
            idle_timeout_ms,
        } = self.heartbeat;
        for slot in self.slots.borrow().iter() {
            if now_ms.saturating_sub(slot.last_heard_ms.get()) >= idle_timeout_ms {
                slot.expired.set(true);
                slot.wake();
            } else if now_ms >= slot.next_ping_ms.get() {
                slot.next_ping_ms.set(now_ms + ping_interval_ms);
                slot.ping_due.set(true);
                slot.wake();
            }
        }
    }

    /// Runs the heartbeat sweep on this core for as long as the sockets exist.
    pub fn start_sweeper(self: &Rc<Self>) {
        let sockets = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(HEARTBEAT_SWEEP_MS)).await;
                let Some(sockets) = sockets.upgrade() else {
                    break;
                };
                sockets.sweep();
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockets() -> Sockets {
        let heartbeat = HeartbeatSettings {
            ping_interval_ms: 30_000,
            idle_timeout_ms: 60_000,
        };
        Sockets::new(
            Rc::new(Clock::manual(0)),
            heartbeat,
            Arc::new(Placement::new(1, 0)),
            0,
        )
    }

    #[test]
    fn the_sweep_pings_on_time_and_expires_the_silent() {
        let sockets = sockets();
        let quiet = sockets.new_slot();
        let chatty = sockets.new_slot();
        sockets.clock.advance_ms(30_000);
        sockets.sweep();
        assert!(quiet.ping_due.replace(false) && chatty.ping_due.replace(false));
        chatty.last_heard_ms.set(sockets.now_ms());
        sockets.clock.advance_ms(30_000);
        sockets.sweep();
        assert!(quiet.expired.get(), "silent for 60 s");
        assert!(!chatty.expired.get());
        assert!(chatty.ping_due.get());
    }

    #[test]
    fn dropping_a_slot_keeps_the_others_indexed_and_late_joiners_are_closed() {
        let sockets = sockets();
        let slots: Vec<_> = (0..3).map(|_| sockets.new_slot()).collect();
        sockets.drop_slot(&slots[0]);
        sockets.drop_slot(&slots[2]);
        assert_eq!(sockets.len(), 1);
        sockets.drop_slot(&slots[1]);
        assert!(sockets.is_empty());
        sockets.close_all(1001);
        assert_eq!(sockets.new_slot().close_code(), Some(1001));
    }
}
