//! `/ws/stay?room=R`: the waiting lobby. Clients gather in groups of three (configurable);
//! every join and leave tells those waiting how many are there, and the join that fills
//! the group gives all of its members one shared start time, ten seconds ahead in Tokyo
//! time, then closes them. All joins of a lobby run on its home core, one at a time, so
//! each client is in exactly one group and no group ever has four.

use super::RoomBudget;
use crate::http::route::WsKind;
use crate::limits::CLOSE_NORMAL;
use crate::metrics::{Ignored, Metrics, Rejected};
use crate::ws::slot::Slot;
use chrono::{DateTime, Utc};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// How lobbies behave; from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LobbySettings {
    /// Clients that make one group.
    pub size: usize,
    /// A full group's start time is this far ahead.
    pub delay_s: u64,
}

/// Told when a lobby forms a group, so the group can be given one chant line.
pub trait GroupListener {
    fn formed(&self, room: &str);
}

/// The lobbies homed on one core: name → clients waiting, in join order.
pub struct Lobbies {
    lobbies: RefCell<HashMap<String, Vec<Rc<Slot>>>>,
    settings: LobbySettings,
    metrics: Rc<Metrics>,
    budget: Rc<RoomBudget>,
    groups: Rc<dyn GroupListener>,
}

pub struct Member {
    lobbies: Rc<Lobbies>,
    room: String,
    slot: Rc<Slot>,
}

/// `{"stay_num":"<n>","start_time":"<t>"}`: both strings, as the original sent them.
fn message(stay_num: usize, start_time: &str) -> Vec<u8> {
    format!(r#"{{"stay_num":"{stay_num}","start_time":"{start_time}"}}"#).into_bytes()
}

/// RFC 3339 in Asia/Tokyo (+09:00), whole seconds, `delay_s` after `now`.
pub fn start_time(now: DateTime<Utc>, delay_s: u64) -> String {
    let at = now + chrono::Duration::seconds(delay_s as i64);
    at.with_timezone(&chrono_tz::Asia::Tokyo)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// `{"action":"ping"}`, which the waiting page sends every 5 s to learn it is alive.
fn is_ping(text: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Action<'a> {
        #[serde(borrow)]
        action: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Action>(text).is_ok_and(|m| m.action == "ping")
}

impl Lobbies {
    pub fn new(
        settings: LobbySettings,
        metrics: Rc<Metrics>,
        budget: Rc<RoomBudget>,
        groups: Rc<dyn GroupListener>,
    ) -> Lobbies {
        Lobbies {
            lobbies: RefCell::new(HashMap::new()),
            settings,
            metrics,
            budget,
            groups,
        }
    }

    pub fn len(&self) -> usize {
        self.lobbies.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_open(&self, room: &str) -> bool {
        self.lobbies.borrow().contains_key(room)
    }

    /// Adds a client to lobby `room`; the one that fills it starts the group.
    pub fn join(self: &Rc<Self>, room: &str, slot: &Rc<Slot>) -> Result<Member, Rejected> {
        let mut lobbies = self.lobbies.borrow_mut();
        if !lobbies.contains_key(room) {
            self.budget.open(WsKind::Stay, room)?;
        }
        let waiting = lobbies.entry(room.to_string()).or_default();
        waiting.push(slot.clone());
        if waiting.len() >= self.settings.size {
            let group = lobbies.remove(room).unwrap_or_default();
            self.budget.close(WsKind::Stay, room);
            let text = message(group.len(), &start_time(Utc::now(), self.settings.delay_s));
            for member in &group {
                member.send_text(&text);
                member.close(CLOSE_NORMAL);
            }
            self.groups.formed(room);
        } else {
            announce(waiting);
        }
        Ok(Member {
            lobbies: self.clone(),
            room: room.to_string(),
            slot: slot.clone(),
        })
    }
}

/// Tells everyone waiting how many are waiting.
fn announce(waiting: &[Rc<Slot>]) {
    let text = message(waiting.len(), "null");
    for member in waiting {
        member.send_text(&text);
    }
}

impl Member {
    /// A ping is answered with the lobby's count, so a guest waiting alone still hears
    /// from the server; anything else is ignored.
    pub fn on_text(&mut self, text: &[u8]) {
        let lobbies = &self.lobbies;
        if !is_ping(text) {
            lobbies.metrics.ignored(Ignored::Unexpected);
            return;
        }
        let waiting = lobbies
            .lobbies
            .borrow()
            .get(&self.room)
            .filter(|waiting| waiting.iter().any(|s| Rc::ptr_eq(s, &self.slot)))
            .map(Vec::len);
        // A member whose group already formed has its start time and is being closed.
        if let Some(waiting) = waiting {
            self.slot.send_text(&message(waiting, "null"));
        }
    }

    /// A client left before its group filled: the others hear the new count.
    pub fn leave(self) {
        let mut lobbies = self.lobbies.lobbies.borrow_mut();
        let Some(waiting) = lobbies.get_mut(&self.room) else {
            return;
        };
        let Some(position) = waiting.iter().position(|s| Rc::ptr_eq(s, &self.slot)) else {
            return;
        };
        waiting.remove(position);
        if waiting.is_empty() {
            lobbies.remove(&self.room);
            self.lobbies.budget.close(WsKind::Stay, &self.room);
        } else {
            announce(waiting);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::testing::{budget, metrics, slot, texts};
    use chrono::TimeZone;

    /// Remembers the rooms that formed groups.
    #[derive(Default)]
    struct Formed(RefCell<Vec<String>>);

    impl GroupListener for Formed {
        fn formed(&self, room: &str) {
            self.0.borrow_mut().push(room.to_string());
        }
    }

    fn lobbies_with(size: usize, rooms_max: usize, formed: Rc<Formed>) -> Rc<Lobbies> {
        let settings = LobbySettings { size, delay_s: 10 };
        Rc::new(Lobbies::new(settings, metrics(), budget(rooms_max), formed))
    }

    fn lobbies(size: usize, rooms_max: usize) -> Rc<Lobbies> {
        lobbies_with(size, rooms_max, Rc::default())
    }

    #[test]
    fn the_listener_hears_of_each_group_once() {
        let formed = Rc::new(Formed::default());
        let lobbies = lobbies_with(2, 10, formed.clone());
        let slots: Vec<_> = (0..5).map(|_| slot()).collect();
        let _members: Vec<_> = slots
            .iter()
            .map(|s| lobbies.join("giiku-ten", s).unwrap())
            .collect();
        assert_eq!(*formed.0.borrow(), ["giiku-ten", "giiku-ten"]);
    }

    #[test]
    fn start_time_is_tokyo_whole_seconds() {
        let now = Utc.with_ymd_and_hms(2025, 10, 25, 5, 3, 11).unwrap()
            + chrono::Duration::milliseconds(700);
        assert_eq!(start_time(now, 10), "2025-10-25T14:03:21+09:00");
    }

    #[test]
    fn message_uses_strings_for_both_fields() {
        assert_eq!(
            message(2, "null"),
            br#"{"stay_num":"2","start_time":"null"}"#.to_vec()
        );
    }

    #[test]
    fn joins_announce_the_count_and_the_third_starts_the_group() {
        let lobbies = lobbies(3, 10);
        let slots: Vec<_> = (0..3).map(|_| slot()).collect();
        let _first = lobbies.join("giiku-sai", &slots[0]).unwrap();
        assert_eq!(
            texts(&slots[0]),
            [r#"{"stay_num":"1","start_time":"null"}"#]
        );
        let _second = lobbies.join("giiku-sai", &slots[1]).unwrap();
        for slot in &slots[..2] {
            assert_eq!(texts(slot), [r#"{"stay_num":"2","start_time":"null"}"#]);
        }
        let _third = lobbies.join("giiku-sai", &slots[2]).unwrap();
        let started: Vec<_> = slots.iter().map(|s| texts(s)).collect();
        assert!(started[0][0].starts_with(r#"{"stay_num":"3","start_time":"20"#));
        assert!(started.iter().all(|t| t == &started[0]), "one start time");
        assert!(slots.iter().all(|s| s.close_code() == Some(CLOSE_NORMAL)));
        assert!(lobbies.is_empty());
        assert_eq!(lobbies.budget.rooms_open(), 0);
    }

    #[test]
    fn a_fourth_joiner_starts_a_new_group() {
        let lobbies = lobbies(3, 10);
        let slots: Vec<_> = (0..4).map(|_| slot()).collect();
        let members: Vec<_> = slots
            .iter()
            .map(|s| lobbies.join("r", s).unwrap())
            .collect();
        assert_eq!(
            texts(&slots[3]),
            [r#"{"stay_num":"1","start_time":"null"}"#]
        );
        assert_eq!(slots[3].close_code(), None);
        for member in members {
            member.leave();
        }
        assert!(lobbies.is_empty(), "the group's members leave no trace");
    }

    #[test]
    fn a_leaver_is_announced_and_the_last_one_closes_the_lobby() {
        let lobbies = lobbies(3, 10);
        let (a, b) = (slot(), slot());
        let first = lobbies.join("r", &a).unwrap();
        let second = lobbies.join("r", &b).unwrap();
        texts(&a);
        texts(&b);
        first.leave();
        assert_eq!(texts(&b), [r#"{"stay_num":"1","start_time":"null"}"#]);
        second.leave();
        assert!(lobbies.is_empty());
        assert_eq!(lobbies.budget.rooms_open(), 0);
    }

    #[test]
    fn a_ping_is_answered_with_the_count_and_other_messages_are_ignored() {
        let lobbies = lobbies(3, 10);
        let (a, b) = (slot(), slot());
        let mut alone = lobbies.join("r", &a).unwrap();
        texts(&a);
        alone.on_text(br#"{"action":"ping"}"#);
        assert_eq!(texts(&a), [r#"{"stay_num":"1","start_time":"null"}"#]);
        for other in [&br#"{"action":"pong"}"#[..], b"ping", br#"{"value":1}"#] {
            alone.on_text(other);
        }
        assert!(texts(&a).is_empty());
        let _other = lobbies.join("r", &b).unwrap();
        texts(&a);
        alone.on_text(br#"{"action": "ping", "t": 1}"#);
        assert_eq!(texts(&a), [r#"{"stay_num":"2","start_time":"null"}"#]);
    }

    #[test]
    fn a_ping_after_the_group_formed_gets_nothing_more() {
        let lobbies = lobbies(2, 10);
        let (a, b) = (slot(), slot());
        let mut first = lobbies.join("r", &a).unwrap();
        let _second = lobbies.join("r", &b).unwrap();
        texts(&a);
        first.on_text(br#"{"action":"ping"}"#);
        assert!(texts(&a).is_empty());
    }

    #[test]
    fn a_core_out_of_rooms_refuses_a_new_lobby_but_not_an_open_one() {
        let lobbies = lobbies(3, 1);
        let (a, b, c) = (slot(), slot(), slot());
        let _first = lobbies.join("r", &a).unwrap();
        assert_eq!(lobbies.join("other", &b).err(), Some(Rejected::RoomsMax));
        assert!(lobbies.join("r", &c).is_ok());
    }
}
