//! A core's WebSocket bookkeeping: the rooms, lobbies and batches homed here, the shared
//! read scratch buffer, a millisecond clock, and the heartbeat sweep that pings every
//! connection every 30 s and drops the silent ones. One sweep task per core replaces a
//! timer per connection: 15,000 idle connections cost one pass over a Vec per second.

use super::slot::Slot;
use crate::config::Config;
use crate::runtime::shard::Shard;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the heartbeat sweep runs; pings and idle drops are this precise.
const SWEEP_INTERVAL_MS: u64 = 250;

pub struct Registry {
    started: Instant,
    scratch: RefCell<Vec<u8>>,
    slots: RefCell<Vec<Rc<Slot>>>,
    ping_interval_ms: u64,
    idle_timeout_ms: u64,
    /// Set by [`Registry::close_all`]: connections that join later are closed at once.
    closing: Cell<Option<u16>>,
    pub meter: crate::meter::room::Rooms,
    pub lobbies: crate::lobby::Lobbies,
    pub confirms: crate::confirm::Batches,
    pub screens: crate::screens::live::Viewers,
}

impl Registry {
    pub fn new(config: &Config) -> Registry {
        // Room for a whole largest frame after the start of an unfinished one.
        let scratch_bytes = (2 * (config.ws_message_bytes_max + 14)).max(16 << 10);
        Registry {
            started: Instant::now(),
            scratch: RefCell::new(vec![0; scratch_bytes]),
            slots: RefCell::new(Vec::new()),
            ping_interval_ms: config.ws_ping_interval_ms,
            idle_timeout_ms: config.ws_idle_timeout_ms,
            closing: Cell::new(None),
            meter: crate::meter::room::Rooms::new(config),
            lobbies: crate::lobby::Lobbies::default(),
            confirms: crate::confirm::Batches::default(),
            screens: crate::screens::live::Viewers::default(),
        }
    }

    /// Milliseconds since this core started: the clock rooms and heartbeats run on.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn scratch(&self) -> &RefCell<Vec<u8>> {
        &self.scratch
    }

    /// Rooms, lobbies and batches homed here, for `--rooms-per-core-max`.
    pub fn rooms_open(&self) -> usize {
        self.meter.len() + self.lobbies.len() + self.confirms.len()
    }

    pub fn new_slot(&self) -> Rc<Slot> {
        let slot = Rc::new(Slot::new(self.now_ms(), self.ping_interval_ms));
        let mut slots = self.slots.borrow_mut();
        slot.sweep_index.set(slots.len());
        slots.push(slot.clone());
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
        for slot in self.slots.borrow().iter() {
            if now_ms.saturating_sub(slot.last_heard_ms.get()) >= self.idle_timeout_ms {
                slot.expired.set(true);
                slot.wake();
            } else if now_ms >= slot.next_ping_ms.get() {
                slot.next_ping_ms.set(now_ms + self.ping_interval_ms);
                slot.ping_due.set(true);
                slot.wake();
            }
        }
    }
}

/// Runs the heartbeat sweep on this core for as long as the core runs.
pub fn start_sweeper(shard: &Rc<Shard>) {
    let shard = Rc::downgrade(shard);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(SWEEP_INTERVAL_MS)).await;
            let Some(shard) = shard.upgrade() else { break };
            shard.ws.sweep();
        }
    })
    .detach();
}
