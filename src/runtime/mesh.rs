//! What the cores say to each other. Every cross-core step is one of these messages on
//! a bounded glommio channel mesh: a WebSocket handed to its home core, a call to another
//! core (order work for the journal owner, a metrics snapshot) and its reply.

use crate::menu::MenuIndex;
use crate::metrics::Snapshot;
use crate::orders::book::OrderError;
use crate::orders::{Order, Status};
use crate::ws::Joining;
use std::os::fd::RawFd;

/// Messages queued per ordered pair of cores before a sender waits.
pub const CHANNEL_CAPACITY: usize = 1024;

/// A WebSocket whose handshake was accepted on one core, moving to its room's home core.
#[derive(Debug)]
pub struct Handoff {
    /// A duplicate of the socket's descriptor; the sending core has dropped its own.
    pub fd: RawFd,
    pub joining: Joining,
}

#[derive(Debug)]
pub enum Request {
    Create {
        menu: MenuIndex,
        idempotency_key: Option<Box<[u8]>>,
    },
    Advance {
        number: u64,
        to: Status,
    },
    Metrics,
}

#[derive(Debug)]
pub enum Reply {
    Order(Result<Order, OrderError>),
    Metrics(Box<Snapshot>),
}

#[derive(Debug)]
pub enum CoreMsg {
    Adopt(Handoff),
    Call {
        from: usize,
        call_id: u64,
        request: Request,
    },
    Reply {
        call_id: u64,
        reply: Reply,
    },
}
