//! The order rules, stated once: what a journal record may say after the ones before
//! it. The committer asks them what a request becomes and checks every record it
//! encodes against them before the batch is written; replay runs the same check on
//! every record it reads. A record the rules refuse is a bug when the committer makes
//! it (it panics) and damage when replay finds it (start-up refuses).
//!
//! * Order numbers are dense: a create carries the next number, 1, 2, 3, …
//! * Never more than [`OrderIndex::CAPACITY_MAX`] orders.
//! * An idempotency key names at most one order, for the store's life.
//! * A status change names an existing order and moves it one step forward.
//! * Times never go back: each record's time is at or after the previous record's
//!   (the committer stamps `max(wall clock, latest)`, so a clock stepped back by NTP
//!   cannot make an order's update precede its creation).
//!
//! The rules keep the numbering, the keys and the latest time; the orders themselves
//! live with the caller (replay's list, the committer's index plus its batch), which
//! lends them through a lookup.

use std::collections::HashMap;
use std::fmt;

use crate::menu::MenuIndex;
use crate::orders::index::OrderIndex;
use crate::orders::record::Record;
use crate::orders::{Order, Status};

/// The state the rules judge a record against.
#[derive(Debug)]
pub struct Rules {
    /// The number the next create must carry.
    next_number: u64,
    /// Idempotency key → the number of the order it created.
    idempotency: HashMap<Box<[u8]>, u64>,
    /// The time of the latest record applied.
    latest_ms: u64,
}

/// Why a record cannot follow the ones before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A create whose number is not the next one.
    NotNext { number: u64, expected: u64 },
    /// A create beyond the store's capacity.
    OverCapacity { number: u64 },
    /// A create reusing the idempotency key of an earlier order.
    KeyReused { number: u64, first: u64 },
    /// A status change of an order that does not exist.
    NoSuchOrder { number: u64 },
    /// A status change that is not the order's next step.
    NotForward {
        number: u64,
        from: Status,
        to: Status,
    },
    /// A record older than the one before it.
    BackInTime { time_ms: u64, latest_ms: u64 },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::NotNext { number, expected } => write!(
                f,
                "a create record for order {number} where order {expected} comes next"
            ),
            Violation::OverCapacity { number } => write!(
                f,
                "order {number} is beyond the store's capacity of {} orders",
                OrderIndex::CAPACITY_MAX
            ),
            Violation::KeyReused { number, first } => write!(
                f,
                "order {number} reuses the idempotency key of order {first}"
            ),
            Violation::NoSuchOrder { number } => write!(
                f,
                "a status change for order {number}, which was never created"
            ),
            Violation::NotForward { number, from, to } => write!(
                f,
                "order {number} moves from {} to {}, which is not a forward step",
                from.as_str(),
                to.as_str()
            ),
            Violation::BackInTime { time_ms, latest_ms } => write!(
                f,
                "a record at {time_ms} ms after the epoch follows one at {latest_ms} ms"
            ),
        }
    }
}

/// Why the rules refuse a request: an answer for whoever asked, not damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No order has that number.
    NotFound,
    /// The order's status is not the one the move starts from.
    WrongStatus { current: Status },
    /// The store has used every order number it can hold.
    Full,
}

/// What a create request becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Creation<'k> {
    /// The key was used before: that order, in its current state. Nothing to write.
    Existing(Order),
    /// A new order: this record, once durable.
    New(Record<'k>),
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            next_number: 1,
            idempotency: HashMap::new(),
            latest_ms: 0,
        }
    }
}

impl Rules {
    /// How many orders exist.
    pub fn orders(&self) -> u64 {
        self.next_number - 1
    }

    /// The order an idempotency key created, if any.
    pub fn order_of_key(&self, key: &[u8]) -> Option<u64> {
        self.idempotency.get(key).copied()
    }

    /// How many idempotency keys are in use.
    pub fn keys(&self) -> usize {
        self.idempotency.len()
    }

    /// The time to stamp on records made now: the wall clock, unless an earlier
    /// record is later than it.
    pub fn stamp_ms(&self, wall_clock_ms: u64) -> u64 {
        wall_clock_ms.max(self.latest_ms)
    }

    /// What creating an order for `menu` with `key` (empty: none) at `time_ms` becomes.
    pub fn create<'k>(
        &self,
        menu: MenuIndex,
        key: &'k [u8],
        time_ms: u64,
        lookup: impl Fn(u64) -> Option<Order>,
    ) -> Result<Creation<'k>, Refusal> {
        if let Some(number) = (!key.is_empty()).then(|| self.order_of_key(key)).flatten() {
            let order = lookup(number).expect("an idempotency key names an existing order");
            return Ok(Creation::Existing(order));
        }
        let record = Record::Create {
            number: self.next_number,
            menu,
            time_ms,
            idempotency_key: key,
        };
        match self.check(&record, lookup) {
            Ok(_) => Ok(Creation::New(record)),
            Err(Violation::OverCapacity { .. }) => Err(Refusal::Full),
            Err(violation) => panic!("a create the rules made breaks them: {violation}"),
        }
    }

    /// The record that moves order `number` to `to` at `time_ms`.
    pub fn advance(
        &self,
        number: u64,
        to: Status,
        time_ms: u64,
        lookup: impl Fn(u64) -> Option<Order>,
    ) -> Result<Record<'static>, Refusal> {
        let record = Record::Transition {
            number,
            status: to,
            time_ms,
        };
        match self.check(&record, lookup) {
            Ok(_) => Ok(record),
            Err(Violation::NoSuchOrder { .. }) => Err(Refusal::NotFound),
            Err(Violation::NotForward { from, .. }) => Err(Refusal::WrongStatus { current: from }),
            Err(violation) => panic!("a status change the rules made breaks them: {violation}"),
        }
    }

    /// The order as `record` leaves it, or why `record` cannot come next. Changes nothing.
    pub fn check(
        &self,
        record: &Record<'_>,
        lookup: impl Fn(u64) -> Option<Order>,
    ) -> Result<Order, Violation> {
        let time_ms = record.time_ms();
        if time_ms < self.latest_ms {
            return Err(Violation::BackInTime {
                time_ms,
                latest_ms: self.latest_ms,
            });
        }
        match *record {
            Record::Create {
                number,
                menu,
                idempotency_key,
                ..
            } => {
                if number != self.next_number {
                    return Err(Violation::NotNext {
                        number,
                        expected: self.next_number,
                    });
                }
                if number > OrderIndex::CAPACITY_MAX {
                    return Err(Violation::OverCapacity { number });
                }
                if let Some(first) = (!idempotency_key.is_empty())
                    .then(|| self.order_of_key(idempotency_key))
                    .flatten()
                {
                    return Err(Violation::KeyReused { number, first });
                }
                Ok(Order {
                    number,
                    menu,
                    status: Status::Pending,
                    created_ms: time_ms,
                    updated_ms: time_ms,
                })
            }
            Record::Transition { number, status, .. } => {
                let order = (1..self.next_number)
                    .contains(&number)
                    .then(|| lookup(number))
                    .flatten()
                    .ok_or(Violation::NoSuchOrder { number })?;
                if order.status.next() != Some(status) {
                    return Err(Violation::NotForward {
                        number,
                        from: order.status,
                        to: status,
                    });
                }
                Ok(Order {
                    status,
                    updated_ms: time_ms,
                    ..order
                })
            }
        }
    }

    /// Checks `record` and takes it in: the order it leaves, which the caller stores.
    pub fn apply(
        &mut self,
        record: &Record<'_>,
        lookup: impl Fn(u64) -> Option<Order>,
    ) -> Result<Order, Violation> {
        let order = self.check(record, lookup)?;
        self.latest_ms = record.time_ms();
        if let Record::Create {
            number,
            idempotency_key,
            ..
        } = *record
        {
            self.next_number += 1;
            if !idempotency_key.is_empty() {
                self.idempotency.insert(idempotency_key.into(), number);
            }
        }
        Ok(order)
    }
}

/// The rules with every order they describe: what replaying a journal builds.
#[derive(Debug, Default)]
pub struct Replay {
    pub rules: Rules,
    /// Index `i` holds order number `i + 1`, in its latest state.
    pub orders: Vec<Order>,
}

impl Replay {
    /// The orders as a lookup for the rules.
    pub fn lookup(&self) -> impl Fn(u64) -> Option<Order> + '_ {
        |number| find(&self.orders, number)
    }

    /// Applies one record, or says why it cannot follow the ones before it.
    pub fn apply(&mut self, record: &Record<'_>) -> Result<Order, Violation> {
        let orders = &self.orders;
        let order = self.rules.apply(record, |number| find(orders, number))?;
        match self.orders.get_mut((order.number - 1) as usize) {
            Some(slot) => *slot = order,
            None => self.orders.push(order),
        }
        Ok(order)
    }
}

/// Order `number` of a list where index `i` holds number `i + 1`.
fn find(orders: &[Order], number: u64) -> Option<Order> {
    let position = usize::try_from(number.checked_sub(1)?).ok()?;
    orders.get(position).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asks the rules, then applies what they decided, as the committer does.
    fn create_order(book: &mut Replay, key: &[u8], time_ms: u64) -> Result<Order, Refusal> {
        match book.rules.create(1, key, time_ms, book.lookup())? {
            Creation::Existing(order) => Ok(order),
            Creation::New(record) => Ok(book.apply(&record).unwrap()),
        }
    }

    fn advance_order(
        book: &mut Replay,
        number: u64,
        to: Status,
        time_ms: u64,
    ) -> Result<Order, Refusal> {
        let record = book.rules.advance(number, to, time_ms, book.lookup())?;
        Ok(book.apply(&record).unwrap())
    }

    fn create(number: u64, key: &[u8], time_ms: u64) -> Record<'_> {
        Record::Create {
            number,
            menu: 2,
            time_ms,
            idempotency_key: key,
        }
    }

    fn transition(number: u64, status: Status, time_ms: u64) -> Record<'static> {
        Record::Transition {
            number,
            status,
            time_ms,
        }
    }

    #[test]
    fn creates_are_numbered_densely_and_stamped() {
        let mut book = Replay::default();
        for number in 1..=5 {
            let order = create_order(&mut book, b"", 100 + number).unwrap();
            assert_eq!(order.number, number);
            assert_eq!(order.status, Status::Pending);
            assert_eq!(
                (order.created_ms, order.updated_ms),
                (100 + number, 100 + number)
            );
        }
        assert_eq!(book.rules.orders(), 5);
        for number in [0, 1, 5, 7] {
            assert_eq!(
                book.apply(&create(number, b"", 200)),
                Err(Violation::NotNext {
                    number,
                    expected: 6
                })
            );
        }
        assert_eq!(book.apply(&create(6, b"", 200)).unwrap().number, 6);
    }

    #[test]
    fn every_transition_is_allowed_only_one_step_forward() {
        for from in Status::ALL {
            for to in Status::ALL {
                let mut book = Replay::default();
                create_order(&mut book, b"", 10).unwrap();
                let mut at = 10;
                while book.orders[0].status != from {
                    at += 1;
                    let next = book.orders[0].status.next().unwrap();
                    advance_order(&mut book, 1, next, at).unwrap();
                }
                let allowed = from.next() == Some(to);
                let checked = book.rules.check(&transition(1, to, 50), book.lookup());
                let decided = book.rules.advance(1, to, 50, book.lookup());
                if allowed {
                    let order = checked.unwrap();
                    assert_eq!(
                        (order.status, order.created_ms, order.updated_ms),
                        (to, 10, 50)
                    );
                    assert!(decided.is_ok());
                } else {
                    assert_eq!(
                        checked,
                        Err(Violation::NotForward {
                            number: 1,
                            from,
                            to
                        }),
                        "{from:?} -> {to:?}"
                    );
                    assert_eq!(decided, Err(Refusal::WrongStatus { current: from }));
                }
            }
        }
    }

    #[test]
    fn a_change_of_a_missing_order_is_refused() {
        let mut book = Replay::default();
        create_order(&mut book, b"", 1).unwrap();
        for number in [0, 2, u64::MAX] {
            assert_eq!(
                book.rules
                    .check(&transition(number, Status::WaitingPickup, 1), book.lookup()),
                Err(Violation::NoSuchOrder { number })
            );
            assert_eq!(
                book.rules
                    .advance(number, Status::WaitingPickup, 1, book.lookup()),
                Err(Refusal::NotFound)
            );
        }
    }

    #[test]
    fn an_idempotency_key_names_one_order_for_good() {
        let mut book = Replay::default();
        let first = create_order(&mut book, b"guest", 1).unwrap();
        create_order(&mut book, b"", 2).unwrap();
        // The repeat is the same order in its current state, and writes nothing.
        let moved = advance_order(&mut book, first.number, Status::WaitingPickup, 3).unwrap();
        assert_eq!(
            book.rules.create(0, b"guest", 4, book.lookup()),
            Ok(Creation::Existing(moved))
        );
        assert_eq!(book.rules.orders(), 2);
        assert_eq!(book.rules.order_of_key(b"guest"), Some(1));
        assert_eq!(book.rules.keys(), 1);
        // Replay refuses a second create with the key; empty keys are no keys.
        assert_eq!(
            book.apply(&create(3, b"guest", 5)),
            Err(Violation::KeyReused {
                number: 3,
                first: 1
            })
        );
        book.apply(&create(3, b"", 5)).unwrap();
        book.apply(&create(4, b"", 5)).unwrap();
        assert_eq!(book.rules.keys(), 1);
    }

    #[test]
    fn times_never_go_back() {
        let mut book = Replay::default();
        create_order(&mut book, b"", 1_000).unwrap();
        assert_eq!(
            book.rules.stamp_ms(400),
            1_000,
            "a clock stepped back is held"
        );
        assert_eq!(book.rules.stamp_ms(2_000), 2_000);
        assert_eq!(
            book.apply(&create(2, b"", 999)),
            Err(Violation::BackInTime {
                time_ms: 999,
                latest_ms: 1_000
            })
        );
        assert_eq!(
            book.apply(&transition(1, Status::WaitingPickup, 999)),
            Err(Violation::BackInTime {
                time_ms: 999,
                latest_ms: 1_000
            })
        );
        // The same millisecond is fine.
        book.apply(&transition(1, Status::WaitingPickup, 1_000))
            .unwrap();
        // A refused record changed nothing.
        assert_eq!(book.rules.orders(), 1);
    }

    #[test]
    fn capacity_is_enforced_at_the_last_number() {
        let mut rules = Rules {
            next_number: OrderIndex::CAPACITY_MAX,
            ..Rules::default()
        };
        let none = |_| None;
        assert!(matches!(
            rules.create(0, b"", 1, none),
            Ok(Creation::New(Record::Create { number, .. })) if number == OrderIndex::CAPACITY_MAX
        ));
        rules
            .apply(&create(OrderIndex::CAPACITY_MAX, b"", 1), none)
            .unwrap();
        assert_eq!(rules.create(0, b"", 1, none), Err(Refusal::Full));
        let beyond = OrderIndex::CAPACITY_MAX + 1;
        assert_eq!(
            rules.check(&create(beyond, b"", 1), none),
            Err(Violation::OverCapacity { number: beyond })
        );
    }

    #[test]
    fn violations_say_what_is_wrong() {
        let text = Violation::NotForward {
            number: 3,
            from: Status::Pending,
            to: Status::Completed,
        }
        .to_string();
        assert_eq!(
            text,
            "order 3 moves from pending to completed, which is not a forward step"
        );
        assert!(Violation::NoSuchOrder { number: 9 }
            .to_string()
            .contains("never created"));
    }
}
