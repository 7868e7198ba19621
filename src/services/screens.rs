//! The live feed behind the screens. Every viewer lives on the journal owner's core,
//! where the order book tells us about each durable change; a change is encoded once
//! per screen kind and queued on every viewer's bounded outbox. A viewer that stops
//! reading overflows its outbox and is dropped; the page reconnects and gets a fresh
//! snapshot, so nothing is ever queued without bound.
//!
//! Kitchen viewers must first send `{"type":"auth","token":"<staff token>"}` (a browser
//! WebSocket cannot send an Authorization header, and a token in the URL would end up
//! in proxy logs); until then they receive nothing, and a wrong token closes with 1008.
//! The public board gets only order numbers and menu names of orders ready for pickup,
//! and today's order totals (counts only, see [`crate::screens::totals`]). Kitchen cards
//! carry the order's own `created_at` and `updated_at` from the journal, so their ages
//! are right after a restart too.

use crate::limits::CLOSE_UNAUTHORIZED;
use crate::menu;
use crate::metrics::{Ignored, Metrics, Rejected};
use crate::orders::book::OrderBook;
use crate::orders::index::OrderIndex;
use crate::orders::{Order, Status, TIME_UNKNOWN};
use crate::screens::totals::Totals;
use crate::ws::slot::Slot;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

/// Completed orders shown on the kitchen board.
pub const COMPLETED_SHOWN: usize = 20;
/// Open orders of each status in a snapshot, newest first; keeps a snapshot bounded.
pub const OPEN_SHOWN_MAX: usize = 300;
/// How often board viewers are sent the totals if they changed: a burst of orders is
/// folded into one message, and orders leaving the last 10 minutes (or midnight passing)
/// reach the screens without any order change.
pub const TOTALS_TICK_MS: u64 = 250;

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

/// What the feeds show and to whom; from the configuration.
#[derive(Debug, Clone)]
pub struct ScreenSettings {
    pub store_id: String,
    pub staff_token: String,
    pub viewers_max: usize,
}

/// The viewers of the journal owner's core, which sees every durable order change.
pub struct Viewers {
    settings: ScreenSettings,
    index: Arc<OrderIndex>,
    metrics: Rc<Metrics>,
    viewers: RefCell<Vec<Viewer>>,
    totals: RefCell<Totals>,
}

pub struct Member {
    viewers: Rc<Viewers>,
    screen: Screen,
    slot: Rc<Slot>,
}

fn unix_now_s() -> u64 {
    crate::clock::unix_now_ms() / 1000
}

impl Viewers {
    pub fn new(settings: ScreenSettings, index: Arc<OrderIndex>, metrics: Rc<Metrics>) -> Viewers {
        Viewers {
            settings,
            index,
            metrics,
            viewers: RefCell::new(Vec::new()),
            totals: RefCell::new(Totals::default()),
        }
    }

    /// Subscribes the feeds to `book`'s durable changes, so ages are known from
    /// start-up: counts the orders already there and starts the totals' tick.
    pub fn observe(self: &Rc<Self>, book: &OrderBook) {
        let now_unix_s = unix_now_s();
        for order in self.index.iter() {
            let created_unix_s = Viewers::created_unix_s_of(&order);
            self.totals
                .borrow_mut()
                .count(order.menu, created_unix_s, now_unix_s);
        }
        let weak: Weak<Viewers> = Rc::downgrade(self);
        book.add_observer(Box::new(move |order| {
            if let Some(viewers) = weak.upgrade() {
                viewers.publish(order);
            }
        }));
        let weak: Weak<Viewers> = Rc::downgrade(self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(TOTALS_TICK_MS)).await;
                let Some(viewers) = weak.upgrade() else { break };
                viewers.send_totals();
            }
        })
        .detach();
    }

    pub fn len(&self) -> usize {
        self.viewers.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When `order` was created, from its journal record: the one place the totals ask.
    /// Orders from a version 1 journal have no time.
    fn created_unix_s_of(order: &Order) -> Option<u64> {
        (order.created_ms != TIME_UNKNOWN).then_some(order.created_ms / 1000)
    }

    fn board_order(order: &Order, out: &mut Vec<u8>) {
        let text = serde_json::json!({"order_number": order.number, "menu_name": menu::item(order.menu).name});
        out.extend_from_slice(text.to_string().as_bytes());
    }

    /// What a screen shows right now.
    fn snapshot(&self, screen: Screen) -> Vec<u8> {
        let index = &self.index;
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
                Screen::Kitchen => order.write_json(&self.settings.store_id, &mut out),
                Screen::Board => Viewers::board_order(order, &mut out),
            }
        }
        out.push(b']');
        if screen == Screen::Board {
            out.extend_from_slice(br#","totals":"#);
            self.totals.borrow_mut().write_json(unix_now_s(), &mut out);
        }
        out.push(b'}');
        out
    }

    /// A change became durable: tell every viewer that may see it.
    fn publish(&self, order: &Order) {
        if order.status == Status::Pending {
            let created_unix_s = Viewers::created_unix_s_of(order);
            self.totals
                .borrow_mut()
                .count(order.menu, created_unix_s, unix_now_s());
        }
        let viewers = self.viewers.borrow();
        if viewers.is_empty() {
            return;
        }
        let mut kitchen = br#"{"type":"order","order":"#.to_vec();
        order.write_json(&self.settings.store_id, &mut kitchen);
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

    /// A new viewer of `screen`. The public board gets its snapshot at once; the
    /// kitchen only once it has sent the staff token.
    pub fn join(self: &Rc<Self>, screen: Screen, slot: &Rc<Slot>) -> Result<Member, Rejected> {
        if self.len() >= self.settings.viewers_max {
            return Err(Rejected::RoomFull);
        }
        let authorized = screen == Screen::Board;
        if authorized {
            slot.send_text(&self.snapshot(screen));
        }
        self.viewers.borrow_mut().push(Viewer {
            slot: slot.clone(),
            screen,
            authorized,
        });
        Ok(Member {
            viewers: self.clone(),
            screen,
            slot: slot.clone(),
        })
    }

    /// Sends the board viewers the totals if they changed since last sent.
    fn send_totals(&self) {
        let viewers = self.viewers.borrow();
        if !viewers.iter().any(|v| v.screen == Screen::Board) {
            return;
        }
        let mut totals = self.totals.borrow_mut();
        let Some(text) = totals.update(unix_now_s()) else {
            return;
        };
        for viewer in viewers.iter().filter(|v| v.screen == Screen::Board) {
            viewer.slot.send_text(text);
        }
    }
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
    pub fn on_text(&mut self, text: &[u8]) {
        let viewers = &self.viewers;
        let already = viewers
            .viewers
            .borrow()
            .iter()
            .any(|v| Rc::ptr_eq(&v.slot, &self.slot) && v.authorized);
        if self.screen == Screen::Board || already {
            viewers.metrics.ignored(Ignored::Unexpected);
            return;
        }
        let bearer = token_of(text).map(|t| format!("Bearer {t}"));
        if !crate::staff::authorized(
            bearer.as_deref().map(str::as_bytes),
            &viewers.settings.staff_token,
        ) {
            self.slot.close(CLOSE_UNAUTHORIZED);
            return;
        }
        self.slot.send_text(&viewers.snapshot(Screen::Kitchen));
        if let Some(viewer) = viewers
            .viewers
            .borrow_mut()
            .iter_mut()
            .find(|v| Rc::ptr_eq(&v.slot, &self.slot))
        {
            viewer.authorized = true;
        }
    }

    pub fn leave(self) {
        self.viewers
            .viewers
            .borrow_mut()
            .retain(|v| !Rc::ptr_eq(&v.slot, &self.slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CLOSE_UNAUTHORIZED;
    use crate::services::testing::{metrics, slot, texts};

    const TOKEN: &str = "0123456789abcdef0123";

    fn viewers() -> Rc<Viewers> {
        let settings = ScreenSettings {
            store_id: "store-001".into(),
            staff_token: TOKEN.into(),
            viewers_max: 2,
        };
        Rc::new(Viewers::new(
            settings,
            Arc::new(OrderIndex::new()),
            metrics(),
        ))
    }

    /// Publishes `order` the way the book does: into the index, then to the feeds.
    fn commit(viewers: &Viewers, number: u64, status: Status) {
        let order = Order {
            number,
            menu: 0,
            status,
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_000 + number,
        };
        viewers.index.publish(order);
        viewers.publish(&order);
    }

    #[test]
    fn the_board_sees_ready_orders_and_their_collection_only() {
        let viewers = viewers();
        commit(&viewers, 1, Status::Pending);
        commit(&viewers, 1, Status::WaitingPickup);
        let board = slot();
        let _member = viewers.join(Screen::Board, &board).unwrap();
        let snapshot = texts(&board);
        assert_eq!(snapshot.len(), 1);
        assert!(snapshot[0].starts_with(r#"{"type":"snapshot","orders":[{"#));
        assert!(snapshot[0].contains(r#""order_number":1"#));
        commit(&viewers, 2, Status::Pending);
        assert!(texts(&board).is_empty(), "a new order is not for the board");
        commit(&viewers, 2, Status::WaitingPickup);
        let ready = texts(&board);
        assert!(
            ready[0].starts_with(r#"{"type":"ready","order":{"#),
            "{ready:?}"
        );
        commit(&viewers, 1, Status::Completed);
        assert_eq!(texts(&board), [r#"{"type":"gone","order_number":1}"#]);
    }

    #[test]
    fn the_kitchen_hears_nothing_before_the_token_and_a_wrong_one_closes_it() {
        let viewers = viewers();
        let (good, bad) = (slot(), slot());
        let mut staff = viewers.join(Screen::Kitchen, &good).unwrap();
        let mut stranger = viewers.join(Screen::Kitchen, &bad).unwrap();
        commit(&viewers, 1, Status::Pending);
        assert!(texts(&good).is_empty());
        stranger.on_text(br#"{"type":"auth","token":"guess"}"#);
        assert_eq!(bad.close_code(), Some(CLOSE_UNAUTHORIZED));
        staff.on_text(format!(r#"{{"type":"auth","token":"{TOKEN}"}}"#).as_bytes());
        let snapshot = texts(&good);
        assert!(
            snapshot[0].contains(r#""id":"store-001-1""#),
            "{snapshot:?}"
        );
        commit(&viewers, 1, Status::WaitingPickup);
        let change = texts(&good);
        assert!(change[0].starts_with(r#"{"type":"order","order":{"#));
        assert!(change[0].contains(r#""status":"waitingPickup""#));
    }

    #[test]
    fn viewers_are_bounded_and_leaving_frees_a_place() {
        let viewers = viewers();
        let slots: Vec<_> = (0..3).map(|_| slot()).collect();
        let first = viewers.join(Screen::Board, &slots[0]).unwrap();
        let _second = viewers.join(Screen::Board, &slots[1]).unwrap();
        assert_eq!(
            viewers.join(Screen::Board, &slots[2]).err(),
            Some(Rejected::RoomFull)
        );
        first.leave();
        assert!(viewers.join(Screen::Board, &slots[2]).is_ok());
    }
}
