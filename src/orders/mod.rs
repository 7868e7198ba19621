//! Orders: the value types, the order rules, the durable journal, the shared read
//! index and the owner core's order book.

pub mod book;
pub mod durable;
pub mod index;
pub mod journal;
pub mod record;
pub mod rules;
pub mod tool;
mod v1;

use std::fmt;

use chrono::{Datelike, Timelike};

use crate::menu::{self, MenuIndex};

/// The longest idempotency key a create can carry (SPEC.md §1: 1–128 bytes). The HTTP
/// layer refuses longer ones with 400; the journal format cannot hold them.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

/// Times are milliseconds since the Unix epoch, UTC. 0 means "not recorded": orders
/// journaled before format version 2 carry no times.
pub const TIME_UNKNOWN: u64 = 0;
/// The latest time an order can carry, 9999-12-31T23:59:59.999Z: RFC 3339 has four
/// digits for the year (and the read index packs a time into 56 bits).
pub const TIME_MS_MAX: u64 = 253_402_300_799_999;

/// Where an order is in the shop's flow. Only forward moves exist:
/// `Pending → WaitingPickup → Completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Pending = 0,
    WaitingPickup = 1,
    Completed = 2,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Pending, Status::WaitingPickup, Status::Completed];

    /// The wire name used in JSON and in `?status=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::WaitingPickup => "waitingPickup",
            Status::Completed => "completed",
        }
    }

    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn from_u8(code: u8) -> Option<Status> {
        Status::ALL.get(usize::from(code)).copied()
    }

    /// The status a staff action moves an order to from this one, if any.
    pub fn next(self) -> Option<Status> {
        match self {
            Status::Pending => Some(Status::WaitingPickup),
            Status::WaitingPickup => Some(Status::Completed),
            Status::Completed => None,
        }
    }
}

/// One committed order. The id is not stored: it is `<store id>-<number>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub number: u64,
    pub menu: MenuIndex,
    pub status: Status,
    /// When the order was created, or [`TIME_UNKNOWN`].
    pub created_ms: u64,
    /// When its status last changed (its creation, for a pending order), or
    /// [`TIME_UNKNOWN`].
    pub updated_ms: u64,
}

impl Order {
    /// Appends the order's JSON: the shape of the original API plus the two times,
    /// `{"id":"store-001-7","menu_item_id":…,"menu_name":…,"status":…,"order_number":7,
    /// "created_at":"2026-07-01T09:30:00.123Z","updated_at":…}` (`null` when unknown).
    pub fn write_json(&self, store_id: &str, out: &mut Vec<u8>) {
        use std::io::Write;
        let item = menu::item(self.menu);
        // Store ids are validated at start-up to need no JSON escaping; menu strings are constants.
        let _ = write!(
            out,
            r#"{{"id":"{store_id}-{number}","menu_item_id":"{menu_id}","menu_name":"{menu_name}","status":"{status}","order_number":{number},"created_at":{created},"updated_at":{updated}}}"#,
            number = self.number,
            menu_id = item.id,
            menu_name = item.name,
            status = self.status.as_str(),
            created = JsonTime(self.created_ms),
            updated = JsonTime(self.updated_ms),
        );
    }
}

/// A time as RFC 3339 in UTC with milliseconds (`2026-07-01T09:30:00.123Z`), the one
/// format every output of orders uses; [`TIME_UNKNOWN`] (or anything unrepresentable) is empty.
pub struct Rfc3339(pub u64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = (self.0 != TIME_UNKNOWN)
            .then(|| i64::try_from(self.0).ok())
            .flatten()
            .and_then(chrono::DateTime::from_timestamp_millis);
        let Some(time) = time else { return Ok(()) };
        // Plain integer formatting: a strftime pattern is parsed again on every call,
        // and this runs for every order answered.
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            time.year(),
            time.month(),
            time.day(),
            time.hour(),
            time.minute(),
            time.second(),
            time.timestamp_subsec_millis()
        )
    }
}

/// [`Rfc3339`] as a JSON value: a string, or `null` when unknown.
struct JsonTime(u64);

impl fmt::Display for JsonTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == TIME_UNKNOWN {
            f.write_str("null")
        } else {
            write!(f, "\"{}\"", Rfc3339(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_json_is_the_original_shape_plus_times() {
        let order = Order {
            number: 7,
            menu: 0,
            status: Status::WaitingPickup,
            // 2026-07-01T09:30:00.123Z and ten minutes later.
            created_ms: 1_782_898_200_123,
            updated_ms: 1_782_898_800_123,
        };
        let mut out = Vec::new();
        order.write_json("store-001", &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":"store-001-7","menu_item_id":"giiku-sai","menu_name":"技育祭な いちご味","status":"waitingPickup","order_number":7,"created_at":"2026-07-01T09:30:00.123Z","updated_at":"2026-07-01T09:40:00.123Z"}"#
        );
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["created_at"], "2026-07-01T09:30:00.123Z");
    }

    #[test]
    fn unknown_times_are_null() {
        let order = Order {
            number: 1,
            menu: 0,
            status: Status::Pending,
            created_ms: TIME_UNKNOWN,
            updated_ms: TIME_UNKNOWN,
        };
        let mut out = Vec::new();
        order.write_json("store-001", &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(json["created_at"].is_null() && json["updated_at"].is_null());
        assert_eq!(Rfc3339(TIME_UNKNOWN).to_string(), "");
        assert_eq!(Rfc3339(TIME_MS_MAX).to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Rfc3339(1).to_string(), "1970-01-01T00:00:00.001Z");
        assert_eq!(
            Rfc3339(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn status_names_round_trip_and_only_move_forward() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(Status::from_u8(s as u8), Some(s));
        }
        assert_eq!(Status::parse("Pending"), None);
        assert_eq!(Status::from_u8(3), None);
        assert_eq!(Status::Pending.next(), Some(Status::WaitingPickup));
        assert_eq!(Status::Completed.next(), None);
    }
}
