//! The scenarios: one subcommand each, with its flags and its run.

use std::rc::Rc;

use clap::Subcommand;

use crate::cli::Common;
use crate::ctx::Ctx;

pub mod confirm;
pub mod festival;
pub mod idle;
pub mod lobby;
pub mod meter;
pub mod rest;

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Chant meter fan-out: R load rooms x C clients + P probe rooms measuring send->receive latency
    ///
    /// Load rooms: S of C clients send random values 1..100 at H/s, all read every broadcast.
    /// Probe rooms: ONE sender sends 1, 2, 3, ... at 5/s, the others listen; a broadcast
    /// {"average":a,"count":n} then names the newest value it reflects, k = a + (n-1)/2, and a
    /// listener records send->receive for every value it had not seen reflected yet. Checked:
    /// exact shapes, windows and averages that the values sent allow, close codes, at most
    /// --max-broadcast-hz frames/s per client. Reports delivered frames/s and the delivery ratio
    /// = frames received / (values sent x clients): the fraction of the N^2 fan-out sent.
    Meter(meter::Args),
    /// Hold N WebSocket connections on /ws, then check every one still answers a ping
    ///
    /// They answer the server's pings and stay silent; at --duration-s each pings, waits for
    /// the pong and closes with 1000. Reports survivors, drops, ping RTT, harness memory each.
    Idle(idle::Args),
    /// Keep-alive HTTP/1.1 mix of menu / create order / get order (+ idempotency, error cases)
    ///
    /// Every response is checked: status, headers, exact JSON, menu content, Order fields,
    /// order ids never handed out twice and numbers increasing, GET returning what POST created,
    /// Idempotency-Key repeats returning the same order, exact bodies of the errors.
    Rest(rest::Args),
    /// G groups x 3 join /ws/stay at once; join->start_time latency and exactly-once grouping
    ///
    /// Every client must see stay_num 1..3 with start_time "null", then exactly one
    /// {"stay_num":"3","start_time":<now + 10 s, RFC 3339 +09:00>} and a close 1000; each
    /// start_time must go to a multiple of 3 clients.
    Lobby(lobby::Args),
    /// Batches on /ws/confirm?room=<menu id>: all ready -> one distinct Order each, found by GET
    ///
    /// Every client must receive exactly one pending Order of the room's item, then a close
    /// 1000. Upgrades without a room or for a room that is no menu id must be refused with 400.
    Confirm(confirm::Args),
    /// Guest journey at an arrival rate: menu -> lobby -> chant -> confirm -> poll, and staff
    ///
    /// Guests chant for --chant-s at 5/s and poll their order until completed (statuses only
    /// move pending -> waitingPickup -> completed); staff move each order along 500 ms apart
    /// (Bearer token), must get 401 without a valid one, and list pending orders every 10 s.
    Festival(festival::Args),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Meter(_) => "meter",
            Scenario::Idle(_) => "idle",
            Scenario::Rest(_) => "rest",
            Scenario::Lobby(_) => "lobby",
            Scenario::Confirm(_) => "confirm",
            Scenario::Festival(_) => "festival",
        }
    }

    /// `--duration-s`, or the scenario's default.
    pub fn duration_s(&self, common: &Common) -> f64 {
        common.duration_s.unwrap_or(match self {
            Scenario::Meter(_) | Scenario::Idle(_) => 30.0,
            Scenario::Festival(_) => 60.0,
            Scenario::Rest(_) | Scenario::Lobby(_) | Scenario::Confirm(_) => 10.0,
        })
    }

    /// Checks between flags that clap cannot express, before anything starts.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Scenario::Meter(a) => a.check(),
            Scenario::Festival(a) => a.check(),
            _ => Ok(()),
        }
    }

    pub async fn run(&self, ctx: Rc<Ctx>) {
        match self {
            Scenario::Meter(a) => meter::run(ctx, Rc::new(a.clone())).await,
            Scenario::Idle(a) => idle::run(ctx, a.connections).await,
            Scenario::Rest(a) => rest::run(ctx, Rc::new(a.clone())).await,
            Scenario::Lobby(a) => lobby::run(ctx, a.groups).await,
            Scenario::Confirm(a) => confirm::run(ctx, Rc::new(a.clone())).await,
            Scenario::Festival(a) => festival::run(ctx, Rc::new(a.clone())).await,
        }
    }
}
