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

use crate::http::route::WsKind;
use crate::metrics::Rejected;
use crate::placement::Placement;
use std::cell::Cell;
use std::sync::Arc;

/// The rooms, lobbies and confirm batches one core holds: at most
/// `--rooms-per-core-max` at once, shared by the three services that open them. A room
/// that closes (or cannot open) here also gives up its place in the cores' directory,
/// in the same step, so it can open anywhere next time.
pub struct RoomBudget {
    open: Cell<usize>,
    max: usize,
    placement: Arc<Placement>,
    core: usize,
}

impl RoomBudget {
    pub fn new(max: usize, placement: Arc<Placement>, core: usize) -> RoomBudget {
        RoomBudget {
            open: Cell::new(0),
            max,
            placement,
            core,
        }
    }

    /// Takes one room from the budget, or refuses when it is spent.
    pub fn open(&self, kind: WsKind, name: &str) -> Result<(), Rejected> {
        if self.open.get() >= self.max {
            self.placement.release(kind, name, self.core);
            return Err(Rejected::RoomsMax);
        }
        self.open.set(self.open.get() + 1);
        Ok(())
    }

    /// Gives back a room taken with [`RoomBudget::open`].
    pub fn close(&self, kind: WsKind, name: &str) {
        debug_assert!(self.open.get() > 0, "closed a room that was never opened");
        self.open.set(self.open.get() - 1);
        self.placement.release(kind, name, self.core);
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
        let budget = RoomBudget::new(2, placement.clone(), 0);
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
        assert_eq!(placement.rooms(), 1, "so is one that closed");
        budget.open(WsKind::Meter, "c").unwrap();
        assert_eq!(budget.rooms_open(), 2);
    }
}
