//! The `/ws` rooms homed on one core: each room's window, its members, and its
//! broadcast. A room encodes its `{"average","count"}` frame once per broadcast into
//! shared bytes with a version number and wakes its members; each member's connection
//! writes the newest version it has not sent. A busy room broadcasts at most once per
//! interval (values in between are folded into the next broadcast); a quiet one
//! broadcasts at once.

use super::RoomBudget;
use crate::clock::Clock;
use crate::config::Config;
use crate::http::route::WsKind;
use crate::limits::METER_BUCKET_MS;
use crate::meter::broadcast::Broadcast;
use crate::meter::rate::RateLimit;
use crate::meter::value;
use crate::meter::window::{Contribution, Window};
use crate::metrics::{Ignored, Metrics, Rejected};
use crate::ws::fanout::Fanout;
use crate::ws::slot::Slot;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How rooms behave; from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RoomSettings {
    pub window_ms: u64,
    /// A busy room broadcasts at most once per this many ms (0: after every value).
    pub interval_ms: u64,
    pub values_per_s_max: u32,
    pub clients_max: usize,
}

impl RoomSettings {
    pub fn from_config(config: &Config) -> RoomSettings {
        RoomSettings {
            window_ms: config.meter_window_ms,
            interval_ms: config.meter_interval_ms,
            values_per_s_max: config.meter_values_per_s_max,
            clients_max: config.room_clients_max,
        }
    }
}

/// The `/ws` rooms homed on one core.
pub struct Rooms {
    rooms: RefCell<HashMap<String, Rc<Room>>>,
    settings: RoomSettings,
    clock: Rc<Clock>,
    metrics: Rc<Metrics>,
    budget: Rc<RoomBudget>,
    fanout: Rc<Fanout>,
}

struct Room {
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
    rooms: Rc<Rooms>,
    room: Rc<Room>,
    slot: Rc<Slot>,
    contribution: Contribution,
    rate: RateLimit,
}

impl Rooms {
    pub fn new(
        settings: RoomSettings,
        clock: Rc<Clock>,
        metrics: Rc<Metrics>,
        budget: Rc<RoomBudget>,
        fanout: Rc<Fanout>,
    ) -> Rooms {
        Rooms {
            rooms: RefCell::new(HashMap::new()),
            settings,
            clock,
            metrics,
            budget,
            fanout,
        }
    }

    pub fn len(&self) -> usize {
        self.rooms.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Members of room `name` (0 when it is not open here).
    pub fn members(&self, name: &str) -> usize {
        self.rooms
            .borrow()
            .get(name)
            .map_or(0, |room| room.members.borrow().len())
    }

    /// Puts a new connection into room `name`, opening the room if need be.
    pub fn join(self: &Rc<Self>, name: &str, slot: &Rc<Slot>) -> Result<Member, Rejected> {
        let existing = self.rooms.borrow().get(name).cloned();
        let room = match existing {
            Some(room) => {
                if room.members.borrow().len() >= self.settings.clients_max {
                    return Err(Rejected::RoomFull);
                }
                room
            }
            None => self.open(name)?,
        };
        {
            let mut members = room.members.borrow_mut();
            slot.member_index.set(members.len());
            members.push(slot.clone());
        }
        // A new member hears what comes after it joined.
        slot.broadcast_seen.set(room.broadcast.version());
        Ok(Member {
            rooms: self.clone(),
            room,
            slot: slot.clone(),
            contribution: Contribution::default(),
            rate: RateLimit::new(self.settings.values_per_s_max, self.clock.now_ms()),
        })
    }

    fn open(&self, name: &str) -> Result<Rc<Room>, Rejected> {
        self.budget.open(WsKind::Meter, name)?;
        let window_ms = self.settings.window_ms;
        let window = Window::new(window_ms, METER_BUCKET_MS.min(window_ms))
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
        self.rooms
            .borrow_mut()
            .insert(name.to_string(), room.clone());
        Ok(room)
    }

    /// A value was accepted in `room`: broadcast now, or make sure one is scheduled.
    fn on_value(&self, room: &Rc<Room>, now_ms: u64) {
        let interval_ms = self.settings.interval_ms;
        if room.pending_since.get().is_none() {
            room.pending_since.set(Some(Instant::now()));
        }
        if room.flush_scheduled.get() {
            return;
        }
        let due_ms = room.last_broadcast_ms.get() + interval_ms;
        if interval_ms == 0 || room.broadcast.version() == 0 || now_ms >= due_ms {
            room.broadcast(now_ms, &self.metrics, &self.fanout);
            return;
        }
        room.flush_scheduled.set(true);
        let room = room.clone();
        let (clock, metrics) = (self.clock.clone(), self.metrics.clone());
        let fanout = self.fanout.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(due_ms - now_ms)).await;
            room.flush_scheduled.set(false);
            room.broadcast(clock.now_ms(), &metrics, &fanout);
        })
        .detach();
    }
}

impl Room {
    /// Encodes the current average once and writes it into every member's socket that
    /// is free to take it; wakes the others, which send it (or a newer one) themselves.
    fn broadcast(&self, now_ms: u64, metrics: &Metrics, fanout: &Fanout) {
        let reading = self.window.borrow_mut().read(now_ms);
        let mut json = self.json.borrow_mut();
        json.clear();
        value::write_reading(reading.average, reading.count, &mut json);
        self.broadcast.publish(&json);
        self.last_broadcast_ms.set(now_ms);
        let (frame, version) = (self.broadcast.frame(), self.broadcast.version());
        let delivery = fanout.broadcast(&frame, version, &self.members.borrow());
        metrics.ws_out(delivery.sent as u64);
        metrics.conflated(delivery.superseded as u64);
        if let Some(since) = self.pending_since.take() {
            metrics.broadcast_latency(since.elapsed().as_micros() as u64);
        }
    }
}

impl Member {
    pub fn on_text(&mut self, text: &[u8]) {
        let metrics = &self.rooms.metrics;
        let sample = match value::parse_value(text) {
            Ok(sample) => sample,
            Err(why) => {
                metrics.ignored(why.into());
                return;
            }
        };
        let now_ms = self.rooms.clock.now_ms();
        if !self
            .rate
            .allow(self.rooms.settings.values_per_s_max, now_ms)
        {
            metrics.ignored(Ignored::RateLimited);
            return;
        }
        if self
            .room
            .window
            .borrow_mut()
            .add(&mut self.contribution, sample, now_ms)
            .is_err()
        {
            metrics.ignored(Ignored::NotAValue);
            return;
        }
        self.rooms.on_value(&self.room, now_ms);
    }

    /// The room's newest frame if this member has not been sent it.
    pub fn newest_broadcast(&mut self) -> Option<Rc<[u8]>> {
        self.room.broadcast.newest_after(&self.slot.broadcast_seen)
    }

    /// Frees the record of samples that left the window, so a client that stopped
    /// sending holds no memory for it.
    pub fn forget_expired(&mut self) {
        let now_ms = self.rooms.clock.now_ms();
        self.room
            .window
            .borrow_mut()
            .prune(&mut self.contribution, now_ms);
    }

    /// Withdraws this member's samples and leaves; the last one out closes the room.
    pub fn leave(mut self) {
        let now_ms = self.rooms.clock.now_ms();
        self.room
            .window
            .borrow_mut()
            .withdraw(&mut self.contribution, now_ms);
        let mut members = self.room.members.borrow_mut();
        let index = self.slot.member_index.get();
        debug_assert!(Rc::ptr_eq(&members[index], &self.slot));
        members.swap_remove(index);
        if let Some(moved) = members.get(index) {
            moved.member_index.set(index);
        }
        if members.is_empty() {
            self.rooms.rooms.borrow_mut().remove(&self.room.name);
            self.rooms.budget.close(WsKind::Meter, &self.room.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::testing::{budget, metrics, slot};

    fn rooms(interval_ms: u64, clients_max: usize, rooms_max: usize) -> Rc<Rooms> {
        let settings = RoomSettings {
            window_ms: 5_000,
            interval_ms,
            values_per_s_max: 50,
            clients_max,
        };
        Rc::new(Rooms::new(
            settings,
            Rc::new(Clock::manual(1_000)),
            metrics(),
            budget(rooms_max),
            Rc::new(Fanout::new().unwrap()),
        ))
    }

    fn reading(member: &mut Member) -> Option<String> {
        let frame = member.newest_broadcast()?;
        Some(String::from_utf8(frame[2..].to_vec()).unwrap())
    }

    #[test]
    fn every_member_hears_the_average_of_all_values_including_its_own() {
        let rooms = rooms(0, 10, 10);
        let (a, b) = (slot(), slot());
        let mut alice = rooms.join("giiku-sai", &a).unwrap();
        let mut bob = rooms.join("giiku-sai", &b).unwrap();
        alice.on_text(br#"{"value":0.2}"#);
        bob.on_text(br#"{"value":0.6}"#);
        for member in [&mut alice, &mut bob] {
            assert_eq!(
                reading(member).as_deref(),
                Some(r#"{"average":0.4,"count":2}"#)
            );
        }
        assert_eq!(rooms.rooms.borrow()["giiku-sai"].broadcast.version(), 2);
    }

    #[test]
    fn rooms_are_separate_and_the_last_to_leave_closes_one() {
        let rooms = rooms(0, 10, 10);
        let (a, b) = (slot(), slot());
        let mut sai = rooms.join("giiku-sai", &a).unwrap();
        let mut ten = rooms.join("giiku-ten", &b).unwrap();
        sai.on_text(br#"{"value":1}"#);
        assert!(
            reading(&mut ten).is_none(),
            "another room's value is not heard"
        );
        assert_eq!(rooms.len(), 2);
        sai.leave();
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms.budget.rooms_open(), 1);
        ten.leave();
        assert!(rooms.is_empty());
        assert_eq!(rooms.budget.rooms_open(), 0);
    }

    #[test]
    fn a_leaver_takes_its_samples_with_it() {
        let rooms = rooms(0, 10, 10);
        let (a, b) = (slot(), slot());
        let mut alice = rooms.join("r", &a).unwrap();
        let mut bob = rooms.join("r", &b).unwrap();
        alice.on_text(br#"{"value":1}"#);
        bob.on_text(br#"{"value":0.5}"#);
        alice.leave();
        rooms.clock.advance_ms(100);
        bob.on_text(br#"{"value":0.5}"#);
        assert_eq!(
            reading(&mut bob).as_deref(),
            Some(r#"{"average":0.5,"count":2}"#)
        );
    }

    #[test]
    fn junk_and_rate_capped_values_do_not_move_the_average() {
        let rooms = rooms(0, 10, 10);
        let a = slot();
        let mut alice = rooms.join("r", &a).unwrap();
        for junk in [&b"hello"[..], br#"{"value":"1"}"#, br#"{"value":1e300}"#] {
            alice.on_text(junk);
        }
        assert!(reading(&mut alice).is_none());
        for _ in 0..200 {
            alice.on_text(br#"{"value":0.5}"#);
        }
        let heard = reading(&mut alice).unwrap();
        let count: u64 = heard
            .rsplit_once(':')
            .unwrap()
            .1
            .trim_end_matches('}')
            .parse()
            .unwrap();
        assert!(count <= 100, "one second of burst at most: {heard}");
    }

    #[test]
    fn limits_refuse_a_full_room_and_a_core_out_of_rooms() {
        let rooms = rooms(0, 1, 1);
        let (a, b, c) = (slot(), slot(), slot());
        let _alice = rooms.join("r", &a).unwrap();
        assert_eq!(rooms.join("r", &b).err(), Some(Rejected::RoomFull));
        assert_eq!(rooms.join("other", &c).err(), Some(Rejected::RoomsMax));
    }

    #[test]
    fn a_member_that_leaves_mid_list_keeps_the_others_indexed() {
        let rooms = rooms(0, 10, 10);
        let slots: Vec<_> = (0..4).map(|_| slot()).collect();
        let mut members: Vec<_> = slots.iter().map(|s| rooms.join("r", s).unwrap()).collect();
        members.remove(1).leave();
        members.remove(0).leave();
        assert_eq!(rooms.members("r"), 2);
        for member in members {
            member.leave();
        }
        assert!(rooms.is_empty());
    }

    #[test]
    fn a_busy_room_folds_values_into_one_scheduled_broadcast() {
        glommio::LocalExecutor::default().run(async {
            let rooms = rooms(20, 10, 10);
            let a = slot();
            let mut alice = rooms.join("r", &a).unwrap();
            alice.on_text(br#"{"value":0.1}"#);
            alice.on_text(br#"{"value":0.3}"#);
            alice.on_text(br#"{"value":0.5}"#);
            let room = rooms.rooms.borrow()["r"].clone();
            assert_eq!(
                room.broadcast.version(),
                1,
                "the first value is sent at once"
            );
            assert!(room.flush_scheduled.get());
            rooms.clock.advance_ms(20);
            glommio::timer::sleep(Duration::from_millis(40)).await;
            assert_eq!(room.broadcast.version(), 2, "the rest folded into one");
            assert_eq!(
                reading(&mut alice).as_deref(),
                Some(r#"{"average":0.3,"count":3}"#)
            );
        });
    }
}
