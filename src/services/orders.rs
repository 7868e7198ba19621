//! The order book's client side: the one way services and REST handlers create and move
//! orders, wherever the journal lives. On the journal's own core it is the book itself;
//! elsewhere the runtime provides a desk that forwards each request to that core (a
//! typed cross-core call with a deadline); tests provide one in memory.

use crate::menu::MenuIndex;
use crate::orders::book::{OrderBook, OrderError};
use crate::orders::{Order, Status};
use futures_lite::future::BoxedLocal;
use std::rc::Rc;

/// Creates and moves orders. Every answer is durable before it is returned.
pub trait OrderDesk {
    /// A new pending order (or, for a key already used, that order's current state).
    fn create(
        &self,
        menu: MenuIndex,
        idempotency_key: Option<Box<[u8]>>,
    ) -> BoxedLocal<Result<Order, OrderError>>;

    /// Moves order `number` one step forward, to `to`.
    fn advance(&self, number: u64, to: Status) -> BoxedLocal<Result<Order, OrderError>>;
}

/// The desk on the journal's own core: the book, called directly.
pub struct LocalDesk(pub Rc<OrderBook>);

impl OrderDesk for LocalDesk {
    fn create(
        &self,
        menu: MenuIndex,
        idempotency_key: Option<Box<[u8]>>,
    ) -> BoxedLocal<Result<Order, OrderError>> {
        let book = self.0.clone();
        Box::pin(async move { book.create(menu, idempotency_key.as_deref()).await })
    }

    fn advance(&self, number: u64, to: Status) -> BoxedLocal<Result<Order, OrderError>> {
        let book = self.0.clone();
        Box::pin(async move { book.advance(number, to).await })
    }
}

#[cfg(test)]
pub mod memory {
    //! An order desk in memory, for services' tests.

    use super::*;
    use std::cell::{Cell, RefCell};

    #[derive(Default)]
    pub struct MemoryDesk {
        pub orders: RefCell<Vec<Order>>,
        /// Answer every request with `Unavailable`.
        pub failing: Cell<bool>,
    }

    impl OrderDesk for MemoryDesk {
        fn create(
            &self,
            menu: MenuIndex,
            _key: Option<Box<[u8]>>,
        ) -> BoxedLocal<Result<Order, OrderError>> {
            let result = if self.failing.get() {
                Err(OrderError::Unavailable)
            } else {
                let mut orders = self.orders.borrow_mut();
                let now_ms = crate::clock::unix_now_ms();
                let order = Order {
                    number: orders.len() as u64 + 1,
                    menu,
                    status: Status::Pending,
                    created_ms: now_ms,
                    updated_ms: now_ms,
                };
                orders.push(order);
                Ok(order)
            };
            Box::pin(async move { result })
        }

        fn advance(&self, _number: u64, _to: Status) -> BoxedLocal<Result<Order, OrderError>> {
            Box::pin(async { Err(OrderError::NotFound) })
        }
    }
}
