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

use crate::metrics::Rejected;
use std::cell::Cell;

/// The rooms, lobbies and confirm batches one core may hold at once
/// (`--rooms-per-core-max`), shared by the three services that open them.
pub struct RoomBudget {
    open: Cell<usize>,
    max: usize,
}

impl RoomBudget {
    pub fn new(max: usize) -> RoomBudget {
        RoomBudget {
            open: Cell::new(0),
            max,
        }
    }

    /// Takes one room from the budget, or refuses when it is spent.
    pub fn open(&self) -> Result<(), Rejected> {
        if self.open.get() >= self.max {
            return Err(Rejected::RoomsMax);
        }
        self.open.set(self.open.get() + 1);
        Ok(())
    }

    /// Gives back a room taken with [`RoomBudget::open`].
    pub fn close(&self) {
        debug_assert!(self.open.get() > 0, "closed a room that was never opened");
        self.open.set(self.open.get() - 1);
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
        let budget = RoomBudget::new(2);
        budget.open().unwrap();
        budget.open().unwrap();
        assert_eq!(budget.open(), Err(Rejected::RoomsMax));
        budget.close();
        budget.open().unwrap();
        assert_eq!(budget.rooms_open(), 2);
    }
}
