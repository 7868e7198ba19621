//! The per-core services behind the WebSocket endpoints and the order calls. Each owns
//! its state on its core (plain `Rc`/`RefCell`, no locks) and takes narrow handles — a
//! clock, its metrics, a room budget, an order desk — so it can be built and tested
//! without starting a server. None of them knows about sockets: members are
//! [`crate::ws::slot::Slot`]s, and the connection loop in `net` does the I/O.

pub mod confirm;
pub mod lobby;
pub mod orders;
pub mod rooms;
pub mod screens;

#[cfg(test)]
pub mod testing;

use crate::clock::Clock;
use crate::http::route::WsKind;
use crate::limits::{EMPTIED_ROOMS_KEPT_MAX, EMPTIED_ROOM_KEPT_MS};
use crate::metrics::{Metrics, Rejected};
use crate::placement::Placement;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

/// The rooms, lobbies and confirm batches one core holds: at most
/// `--rooms-per-core-max` at once, shared by the three services that open them. A room
/// that cannot open here gives up its place in the cores' directory at once; one that
/// closes keeps it for [`EMPTIED_ROOM_KEPT_MS`] (it may refill), then gives it up
/// unless it reopened, so it can open anywhere next time.
pub struct RoomBudget {
    open: Cell<usize>,
    max: usize,
    placement: Arc<Placement>,
    core: usize,
    clock: Rc<Clock>,
    /// Counts the open rooms by kind (`kakigori_rooms_open` and the like).
    metrics: Rc<Metrics>,
    /// Rooms that emptied, oldest first, with when.
    emptied: RefCell<VecDeque<(WsKind, Box<str>, u64)>>,
}

impl RoomBudget {
    pub fn new(
        max: usize,
        placement: Arc<Placement>,
        core: usize,
        clock: Rc<Clock>,
        metrics: Rc<Metrics>,
    ) -> RoomBudget {
        RoomBudget {
            open: Cell::new(0),
            max,
            placement,
            core,
            clock,
            metrics,
            emptied: RefCell::new(VecDeque::new()),
        }
    }

    /// Gives up the directory places of rooms that emptied long enough ago and did not
    /// reopen (`is_open` says which are open on this core).
    pub fn release_emptied(&self, is_open: impl Fn(WsKind, &str) -> bool) {
        let now_ms = self.clock.now_ms();
        let mut emptied = self.emptied.borrow_mut();
        while let Some((kind, name, at_ms)) = emptied.front() {
            if now_ms.saturating_sub(*at_ms) < EMPTIED_ROOM_KEPT_MS {
                break;
            }
            if !is_open(*kind, name) {
                self.placement.release(*kind, name, self.core);
            }
            emptied.pop_front();
        }
    }

    /// Takes one room from the budget, or refuses when it is spent.
    pub fn open(&self, kind: WsKind, name: &str) -> Result<(), Rejected> {
        if self.open.get() >= self.max {
            self.placement.release(kind, name, self.core);
            return Err(Rejected::RoomsMax);
        }
        self.open.set(self.open.get() + 1);
        self.metrics.room_delta(kind.into(), 1);
        Ok(())
    }

    /// Gives back a room taken with [`RoomBudget::open`].
    pub fn close(&self, kind: WsKind, name: &str) {
        debug_assert!(self.open.get() > 0, "closed a room that was never opened");
        self.open.set(self.open.get() - 1);
        self.metrics.room_delta(kind.into(), -1);
        let mut emptied = self.emptied.borrow_mut();
        if emptied.len() >= EMPTIED_ROOMS_KEPT_MAX {
            // It has no instance now, so its place can go at once.
            self.placement.release(kind, name, self.core);
        } else {
            emptied.push_back((kind, name.into(), self.clock.now_ms()));
        }
    }

    pub fn rooms_open(&self) -> usize {
        self.open.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_max_and_refills_on_close() {
        let placement = Arc::new(Placement::new(1, 0));
        let clock = Rc::new(Clock::manual(0));
        let metrics = Rc::new(Metrics::default());
        let budget = RoomBudget::new(2, placement.clone(), 0, clock.clone(), metrics.clone());
        for name in ["a", "b", "c"] {
            placement.home(WsKind::Meter, name);
        }
        budget.open(WsKind::Meter, "a").unwrap();
        budget.open(WsKind::Meter, "b").unwrap();
        assert_eq!(budget.open(WsKind::Meter, "c"), Err(Rejected::RoomsMax));
        assert_eq!(
            placement.rooms(),
            2,
            "a room that could not open is forgotten"
        );
        budget.close(WsKind::Meter, "a");
        budget.close(WsKind::Meter, "b");
        budget.open(WsKind::Meter, "b").unwrap();
        assert_eq!(budget.rooms_open(), 1);
        let open = |_: WsKind, name: &str| name == "b";
        budget.release_emptied(open);
        assert_eq!(
            placement.rooms(),
            2,
            "emptied rooms keep their core a while"
        );
        clock.advance_ms(EMPTIED_ROOM_KEPT_MS);
        budget.release_emptied(open);
        assert_eq!(
            placement.rooms(),
            1,
            "then give it up, unless they reopened"
        );
        let meter_rooms = metrics.rooms_open[crate::metrics::Endpoint::Meter as usize].get();
        assert_eq!(meter_rooms, 1, "the gauge follows the rooms open");
    }
}
