//! Orders: the value types, the durable journal, the shared read index and the
//! owner core's order book.

pub mod book;
pub mod index;
pub mod journal;
pub mod record;

use crate::menu::{self, MenuIndex};

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
}

impl Order {
    /// Appends the order's JSON, exactly the shape of the original API:
    /// `{"id":"store-001-7","menu_item_id":…,"menu_name":…,"status":…,"order_number":7}`.
    pub fn write_json(&self, store_id: &str, out: &mut Vec<u8>) {
        use std::io::Write;
        let item = menu::item(self.menu);
        // Store ids are validated at start-up to need no JSON escaping; menu strings are constants.
        let _ = write!(
            out,
            r#"{{"id":"{store_id}-{number}","menu_item_id":"{menu_id}","menu_name":"{menu_name}","status":"{status}","order_number":{number}}}"#,
            number = self.number,
            menu_id = item.id,
            menu_name = item.name,
            status = self.status.as_str(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_json_matches_the_original_shape() {
        let order = Order {
            number: 7,
            menu: 0,
            status: Status::Pending,
        };
        let mut out = Vec::new();
        order.write_json("store-001", &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":"store-001-7","menu_item_id":"giiku-sai","menu_name":"技育祭な いちご味","status":"pending","order_number":7}"#
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
