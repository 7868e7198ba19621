//! `/ws/stay?room=R`: the waiting lobby. Clients gather in groups of three (configurable);
//! every join and leave tells those waiting how many are there, and the join that fills
//! the group gives all of its members one shared start time, ten seconds ahead in Tokyo
//! time, then closes them. All joins of a lobby run on its home core, one at a time, so
//! each client is in exactly one group and no group ever has four.

use crate::metrics::{Endpoint, Rejected};
use crate::runtime::shard::Shard;
use crate::ws::frame::CLOSE_NORMAL;
use crate::ws::slot::Slot;
use chrono::{DateTime, Utc};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The lobbies homed on one core: name → clients waiting, in join order.
#[derive(Default)]
pub struct Lobbies {
    lobbies: RefCell<HashMap<String, Vec<Rc<Slot>>>>,
}

impl Lobbies {
    pub fn len(&self) -> usize {
        self.lobbies.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Member {
    room: String,
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

pub fn join(shard: &Rc<Shard>, room: &str, slot: &Rc<Slot>) -> Result<Member, Rejected> {
    let config = shard.config();
    let is_new = !shard.ws.lobbies.lobbies.borrow().contains_key(room);
    if is_new && shard.ws.rooms_open() >= config.rooms_per_core_max {
        return Err(Rejected::RoomsMax);
    }
    let mut lobbies = shard.ws.lobbies.lobbies.borrow_mut();
    let waiting = lobbies.entry(room.to_string()).or_default();
    if is_new {
        shard.metrics.room_delta(Endpoint::Stay, 1);
    }
    waiting.push(slot.clone());
    if waiting.len() >= config.lobby_size {
        let group = lobbies.remove(room).unwrap_or_default();
        shard.metrics.room_delta(Endpoint::Stay, -1);
        let text = message(group.len(), &start_time(Utc::now(), config.lobby_delay_s));
        for member in &group {
            member.send_text(&text);
            member.close(CLOSE_NORMAL);
        }
    } else {
        announce(waiting);
    }
    Ok(Member {
        room: room.to_string(),
    })
}

/// Tells everyone waiting how many are waiting.
fn announce(waiting: &[Rc<Slot>]) {
    let text = message(waiting.len(), "null");
    for member in waiting {
        member.send_text(&text);
    }
}

impl Member {
    /// A client left before its group filled: the others hear the new count.
    pub fn leave(self, shard: &Shard, slot: &Rc<Slot>) {
        let mut lobbies = shard.ws.lobbies.lobbies.borrow_mut();
        let Some(waiting) = lobbies.get_mut(&self.room) else {
            return;
        };
        let Some(position) = waiting.iter().position(|s| Rc::ptr_eq(s, slot)) else {
            return;
        };
        waiting.remove(position);
        if waiting.is_empty() {
            lobbies.remove(&self.room);
            shard.metrics.room_delta(Endpoint::Stay, -1);
        } else {
            announce(waiting);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
}
