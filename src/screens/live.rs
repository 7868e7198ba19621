//! The live feed behind the screens. Every viewer lives on the journal owner's core,
//! where the order book tells us about each durable change; a change is encoded once
//! per screen kind and queued on every viewer's bounded outbox. A viewer that stops
//! reading overflows its outbox and is dropped; the page reconnects and gets a fresh
//! snapshot, so nothing is ever queued without bound.
//!
//! Kitchen viewers must first send `{"type":"auth","token":"<staff token>"}` (a browser
//! WebSocket cannot send an Authorization header, and a token in the URL would end up
//! in proxy logs); until then they receive nothing, and a wrong token closes with 1008.
//! The public board gets only order numbers and menu names of orders ready for pickup.
//! Kitchen cards carry the order's own `created_at` and `updated_at` from the journal,
//! so their ages are right after a restart too.

use crate::menu;
use crate::metrics::{Ignored, Rejected};
use crate::orders::{Order, Status};
use crate::runtime::shard::Shard;
use crate::ws::slot::Slot;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

/// Close code for a wrong staff token (RFC 6455 "policy violation").
pub const CLOSE_UNAUTHORIZED: u16 = 1008;
/// Completed orders shown on the kitchen board.
pub const COMPLETED_SHOWN: usize = 20;
/// Open orders of each status in a snapshot, newest first; keeps a snapshot bounded.
pub const OPEN_SHOWN_MAX: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Kitchen,
    Board,
}

struct Viewer {
    slot: Rc<Slot>,
    screen: Screen,
    authorized: bool,
}

/// The viewers of this core (only the journal owner has any).
#[derive(Default)]
pub struct Viewers {
    viewers: RefCell<Vec<Viewer>>,
    observing: Cell<bool>,
}

pub struct Member {
    screen: Screen,
}

impl Viewers {
    pub fn len(&self) -> usize {
        self.viewers.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn board_order(order: &Order, out: &mut Vec<u8>) {
        let text = serde_json::json!({"order_number": order.number, "menu_name": menu::item(order.menu).name});
        out.extend_from_slice(text.to_string().as_bytes());
    }

    /// What a screen shows right now.
    fn snapshot(&self, shard: &Shard, screen: Screen) -> Vec<u8> {
        let index = &shard.shared.index;
        let mut shown: Vec<Order> = Vec::new();
        let mut counts = [0usize; 3];
        let limits = match screen {
            Screen::Kitchen => [OPEN_SHOWN_MAX, OPEN_SHOWN_MAX, COMPLETED_SHOWN],
            Screen::Board => [0, OPEN_SHOWN_MAX, 0],
        };
        for number in (1..=index.len()).rev() {
            let Some(order) = index.get(number) else {
                continue;
            };
            let status = order.status as usize;
            if counts[status] < limits[status] {
                counts[status] += 1;
                shown.push(order);
            }
            if counts.iter().zip(limits).all(|(n, limit)| *n >= limit) {
                break;
            }
        }
        shown.reverse();
        let mut out = br#"{"type":"snapshot","orders":["#.to_vec();
        for (i, order) in shown.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match screen {
                Screen::Kitchen => order.write_json(&shard.config().store_id, &mut out),
                Screen::Board => Viewers::board_order(order, &mut out),
            }
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// A change became durable: tell every viewer that may see it.
    fn publish(&self, shard: &Shard, order: &Order) {
        let viewers = self.viewers.borrow();
        if viewers.is_empty() {
            return;
        }
        let mut kitchen = br#"{"type":"order","order":"#.to_vec();
        order.write_json(&shard.config().store_id, &mut kitchen);
        kitchen.push(b'}');
        let board = match order.status {
            Status::Pending => None,
            Status::WaitingPickup => {
                let mut text = br#"{"type":"ready","order":"#.to_vec();
                Viewers::board_order(order, &mut text);
                text.push(b'}');
                Some(text)
            }
            Status::Completed => {
                Some(format!(r#"{{"type":"gone","order_number":{}}}"#, order.number).into_bytes())
            }
        };
        for viewer in viewers.iter().filter(|v| v.authorized) {
            match (viewer.screen, &board) {
                (Screen::Kitchen, _) => viewer.slot.send_text(&kitchen),
                (Screen::Board, Some(text)) => viewer.slot.send_text(text),
                (Screen::Board, None) => {}
            }
        }
    }
}

/// Subscribes this core's viewers to the order book, once.
fn observe(shard: &Rc<Shard>) {
    let Some(book) = &shard.book else { return };
    if shard.ws.screens.observing.replace(true) {
        return;
    }
    let weak: Weak<Shard> = Rc::downgrade(shard);
    book.add_observer(Box::new(move |order| {
        if let Some(shard) = weak.upgrade() {
            shard.ws.screens.publish(&shard, order);
        }
    }));
}

/// Starts watching the order book on the journal owner.
pub fn start(shard: &Rc<Shard>) {
    observe(shard);
}

pub fn join(shard: &Rc<Shard>, screen: Screen, slot: &Rc<Slot>) -> Result<Member, Rejected> {
    let viewers = &shard.ws.screens;
    if viewers.len() >= shard.config().room_clients_max {
        return Err(Rejected::RoomFull);
    }
    observe(shard);
    let authorized = screen == Screen::Board;
    if authorized {
        slot.send_text(&viewers.snapshot(shard, screen));
    }
    viewers.viewers.borrow_mut().push(Viewer {
        slot: slot.clone(),
        screen,
        authorized,
    });
    Ok(Member { screen })
}

fn token_of(text: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Auth {
        #[serde(rename = "type")]
        kind: String,
        token: String,
    }
    let auth: Auth = serde_json::from_slice(text).ok()?;
    (auth.kind == "auth").then_some(auth.token)
}

impl Member {
    pub fn on_text(&mut self, shard: &Rc<Shard>, slot: &Rc<Slot>, text: &[u8]) {
        let viewers = &shard.ws.screens;
        let already = viewers
            .viewers
            .borrow()
            .iter()
            .any(|v| Rc::ptr_eq(&v.slot, slot) && v.authorized);
        if self.screen == Screen::Board || already {
            shard.metrics.ignored(Ignored::Unexpected);
            return;
        }
        let bearer = token_of(text).map(|t| format!("Bearer {t}"));
        if !crate::staff::authorized(
            bearer.as_deref().map(str::as_bytes),
            &shard.shared.staff_token,
        ) {
            slot.close(CLOSE_UNAUTHORIZED);
            return;
        }
        slot.send_text(&viewers.snapshot(shard, Screen::Kitchen));
        if let Some(viewer) = viewers
            .viewers
            .borrow_mut()
            .iter_mut()
            .find(|v| Rc::ptr_eq(&v.slot, slot))
        {
            viewer.authorized = true;
        }
    }

    pub fn leave(self, shard: &Shard, slot: &Rc<Slot>) {
        shard
            .ws
            .screens
            .viewers
            .borrow_mut()
            .retain(|v| !Rc::ptr_eq(&v.slot, slot));
    }
}
