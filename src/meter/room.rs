//! A `/ws` room on its home core: its window, its members, and its broadcast. A room
//! encodes its `{"average","count"}` frame once per broadcast into shared bytes with a
//! version number and wakes its members; each member's connection writes the newest
//! version it has not sent. A busy room broadcasts at most once per interval (values
//! in between are folded into the next broadcast); a quiet one broadcasts at once.

use super::broadcast::{Broadcast, Cursor};
use super::rate::RateLimit;
use super::value;
use super::window::{Contribution, Window};
use crate::config::Config;
use crate::metrics::{Endpoint, Ignored, Metrics, Rejected};
use crate::runtime::shard::Shard;
use crate::ws::slot::Slot;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Width of one window bucket: the old edge of the window is this precise.
const BUCKET_MS: u64 = 100;

/// The `/ws` rooms homed on one core.
pub struct Rooms {
    rooms: RefCell<HashMap<String, Rc<Room>>>,
    window_ms: u64,
    interval_ms: u64,
    values_per_s_max: u32,
}

impl Rooms {
    pub fn new(config: &Config) -> Rooms {
        Rooms {
            rooms: RefCell::new(HashMap::new()),
            window_ms: config.meter_window_ms,
            interval_ms: config.meter_interval_ms,
            values_per_s_max: config.meter_values_per_s_max,
        }
    }

    pub fn len(&self) -> usize {
        self.rooms.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Room {
    name: String,
    window: RefCell<Window>,
    members: RefCell<Vec<Rc<Slot>>>,
    broadcast: Broadcast,
    last_broadcast_ms: Cell<u64>,
    /// A broadcast is already scheduled; new values wait for it.
    flush_scheduled: Cell<bool>,
    /// When the first value since the last broadcast was accepted (broadcast latency).
    pending_since: Cell<Option<Instant>>,
    /// Reused for encoding the JSON of each broadcast.
    json: RefCell<Vec<u8>>,
}

/// A connection's membership in a room.
pub struct Member {
    room: Rc<Room>,
    slot: Rc<Slot>,
    contribution: Contribution,
    cursor: Cursor,
    rate: RateLimit,
}

/// Puts a new connection into room `name`, creating it if need be.
pub fn join(shard: &Rc<Shard>, name: &str, slot: &Rc<Slot>) -> Result<Member, Rejected> {
    let config = shard.config();
    let existing = shard.ws.meter.rooms.borrow().get(name).cloned();
    let room = match existing {
        Some(room) => {
            if room.members.borrow().len() >= config.room_clients_max {
                return Err(Rejected::RoomFull);
            }
            room
        }
        None => {
            if shard.ws.rooms_open() >= config.rooms_per_core_max {
                return Err(Rejected::RoomsMax);
            }
            let meter = &shard.ws.meter;
            let window = Window::new(meter.window_ms, BUCKET_MS.min(meter.window_ms))
                .expect("window length was validated with the configuration");
            let room = Rc::new(Room {
                name: name.to_string(),
                window: RefCell::new(window),
                members: RefCell::new(Vec::new()),
                broadcast: Broadcast::default(),
                last_broadcast_ms: Cell::new(0),
                flush_scheduled: Cell::new(false),
                pending_since: Cell::new(None),
                json: RefCell::new(Vec::with_capacity(64)),
            });
            meter
                .rooms
                .borrow_mut()
                .insert(name.to_string(), room.clone());
            shard.metrics.room_delta(Endpoint::Meter, 1);
            room
        }
    };
    {
        let mut members = room.members.borrow_mut();
        slot.member_index.set(members.len());
        members.push(slot.clone());
    }
    Ok(Member {
        cursor: Cursor::at_end(&room.broadcast),
        room,
        slot: slot.clone(),
        contribution: Contribution::default(),
        rate: RateLimit::new(shard.ws.meter.values_per_s_max, shard.ws.now_ms()),
    })
}

impl Room {
    /// Encodes the current average once and wakes every member to send it.
    fn broadcast(&self, now_ms: u64, metrics: &Metrics) {
        let reading = self.window.borrow_mut().read(now_ms);
        let mut json = self.json.borrow_mut();
        json.clear();
        value::write_reading(reading.average, reading.count, &mut json);
        self.broadcast.publish(&json);
        self.last_broadcast_ms.set(now_ms);
        for slot in self.members.borrow().iter() {
            slot.wake();
        }
        if let Some(since) = self.pending_since.take() {
            metrics.broadcast_latency(since.elapsed().as_micros() as u64);
        }
    }

    /// A value was accepted: broadcast now, or make sure one is scheduled.
    fn on_value(self: &Rc<Self>, shard: &Rc<Shard>, now_ms: u64) {
        let interval_ms = shard.ws.meter.interval_ms;
        if self.pending_since.get().is_none() {
            self.pending_since.set(Some(Instant::now()));
        }
        if self.flush_scheduled.get() {
            return;
        }
        let due_ms = self.last_broadcast_ms.get() + interval_ms;
        if interval_ms == 0 || self.broadcast.version() == 0 || now_ms >= due_ms {
            self.broadcast(now_ms, &shard.metrics);
            return;
        }
        self.flush_scheduled.set(true);
        let room = self.clone();
        let shard = Rc::downgrade(shard);
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(due_ms - now_ms)).await;
            room.flush_scheduled.set(false);
            if let Some(shard) = shard.upgrade() {
                room.broadcast(shard.ws.now_ms(), &shard.metrics);
            }
        })
        .detach();
    }
}

impl Member {
    pub fn on_text(&mut self, shard: &Rc<Shard>, text: &[u8]) {
        let sample = match value::parse_value(text) {
            Ok(sample) => sample,
            Err(why) => {
                shard.metrics.ignored(why.into());
                return;
            }
        };
        let now_ms = shard.ws.now_ms();
        if !self.rate.allow(shard.ws.meter.values_per_s_max, now_ms) {
            shard.metrics.ignored(Ignored::RateLimited);
            return;
        }
        if self
            .room
            .window
            .borrow_mut()
            .add(&mut self.contribution, sample, now_ms)
            .is_err()
        {
            shard.metrics.ignored(Ignored::NotAValue);
            return;
        }
        self.room.on_value(shard, now_ms);
    }

    /// The room's newest frame if this member has not been sent it; skipped ones count
    /// as conflated.
    pub fn newest_broadcast(&mut self, shard: &Shard) -> Option<Rc<[u8]>> {
        let (frame, skipped) = self.cursor.newest(&self.room.broadcast)?;
        if skipped > 0 {
            shard.metrics.conflated(skipped);
        }
        Some(frame)
    }

    /// Withdraws this member's samples and leaves; the last one out closes the room.
    /// Frees the record of samples that left the window, so a client that stopped
    /// sending holds no memory for it.
    pub fn forget_expired(&mut self, shard: &Shard) {
        let now_ms = shard.ws.now_ms();
        self.room
            .window
            .borrow_mut()
            .prune(&mut self.contribution, now_ms);
    }

    pub fn leave(mut self, shard: &Rc<Shard>) {
        let now_ms = shard.ws.now_ms();
        self.room
            .window
            .borrow_mut()
            .withdraw(&mut self.contribution, now_ms);
        let mut members = self.room.members.borrow_mut();
        let index = self.slot.member_index.get();
        members.swap_remove(index);
        if let Some(moved) = members.get(index) {
            moved.member_index.set(index);
        }
        if members.is_empty() {
            shard.ws.meter.rooms.borrow_mut().remove(&self.room.name);
            shard.metrics.room_delta(Endpoint::Meter, -1);
        }
    }
}
