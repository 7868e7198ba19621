//! The scenarios: one subcommand each, with its flags and its run.

use std::rc::Rc;

use clap::Subcommand;

use crate::cli::Common;
use crate::common::Ctx;

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
    /// Load rooms: S of C clients send random values 1..100 at H/s with a random phase; all read
    /// every broadcast. Probe rooms: ONE sender sends 1, 2, 3, ... (strictly increasing
    /// consecutive integers), the other C-1 listen. Since the window then always holds a
    /// consecutive run j..k, a broadcast {"average":a,"count":n} identifies the newest value it
    /// reflects: k = a + (n-1)/2 (exact in binary floating point). A listener that sees k
    /// records, for every value m it had not seen reflected yet (last < m <= k), the latency
    /// recv_time - send_time(m); values a broadcast skipped over (conflation) are thus measured
    /// up to the broadcast that first reflected them. Also checked: exact JSON shape, 2a is an
    /// integer, k never exceeds the last value sent, count within the 5 s (+100 ms bucket) window
    /// once warm, load-room averages within the range of values sent, server close codes, no
    /// more than --max-broadcast-hz frames/s per client. Reports delivered frames/s and the
    /// delivery ratio = frames received / (values accepted x clients in the room), i.e. what
    /// fraction of the naive N^2 fan-out was sent.
    Meter(meter::Args),
    /// Hold N WebSocket connections on /ws, then check every one still answers a ping
    ///
    /// Connections ramp up with bounded concurrency, bound to 127.0.0.2.. source addresses when
    /// the target is IPv4 loopback, answer the server's pings and stay silent otherwise. At
    /// --duration-s each one pings and waits for the pong, then closes with 1000 and expects the
    /// server's close echo. Report: opened, survived, dropped (with close codes), ping RTT,
    /// harness memory per connection. More than ~60 s of silence is beyond the server's
    /// heartbeat: pongs to the server's pings count as traffic.
    Idle(idle::Args),
    /// Keep-alive HTTP/1.1 mix of menu / create order / get order (+ optional idempotency and
    /// error cases)
    ///
    /// Every response is checked: status, Content-Type, Access-Control-Allow-Origin, exact JSON
    /// shape, menu content, Order fields (id = <store>-<order_number>, menu_name matching the
    /// item, status), order_number unique across the run and increasing per connection, GET
    /// returning what POST created, Idempotency-Key repeats returning the same order, exact
    /// error bodies for the 'bad' requests.
    Rest(rest::Args),
    /// G groups x 3 join /ws/stay at once; join->start_time latency and exactly-once grouping
    ///
    /// Each wave, G*size clients connect to the same lobby room at once. Every client must see
    /// only stay_num 1..size with start_time "null", then exactly one
    /// {"stay_num":"<size>","start_time":<RFC 3339 +09:00, whole seconds, now+delay>} and a
    /// close 1000. Per start_time value the number of receivers must be a multiple of size and
    /// every client must get one, so nobody is left in a lobby of size+1.
    Lobby(lobby::Args),
    /// Batches on /ws/confirm?room=<menu id>: everybody ready -> one distinct Order each, then
    /// GET finds it
    ///
    /// Each batch connects B clients, then each sends {"status":"ready"}; every client must
    /// receive exactly one Order (menu_item_id = room, status pending), distinct across the run,
    /// then close 1000; each order is then fetched with GET /api/v1/stores/orders/{id} and must
    /// be identical. Also checks that /ws/confirm?room=<not a menu id> is refused with 400 'menu
    /// item not found: ...'.
    Confirm(confirm::Args),
    /// Whole guest journey at an arrival rate: menu -> lobby -> chant -> confirm -> poll, with a
    /// staff client
    ///
    /// Guest: GET menu, pick a flavour, /ws/stay?room=<id> until start_time, wait for it, chant
    /// on /ws?room=<id> (--chant-s at --chant-hz), /ws/confirm?room=<id> ready -> Order, then
    /// poll the order until 'completed' (statuses may only move pending -> waitingPickup ->
    /// completed). Staff: moves each order of this run along with POST .../waiting-pickup and
    /// .../complete (Authorization: Bearer), checks 401 without/with a wrong token and
    /// periodically lists pending orders (sorted, complete). Per-step latencies are reported.
    /// Total run time is about duration + countdown + chant + drain.
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
            Scenario::Idle(a) => a.check(),
            Scenario::Rest(a) => a.check(),
            Scenario::Lobby(a) => a.check(),
            Scenario::Confirm(a) => a.check(),
            Scenario::Festival(a) => a.check(),
        }
    }

    pub async fn run(&self, ctx: Rc<Ctx>) {
        match self {
            Scenario::Meter(a) => meter::run(ctx, Rc::new(a.clone())).await,
            Scenario::Idle(a) => idle::run(ctx, Rc::new(a.clone())).await,
            Scenario::Rest(a) => rest::run(ctx, Rc::new(a.clone())).await,
            Scenario::Lobby(a) => lobby::run(ctx, Rc::new(a.clone())).await,
            Scenario::Confirm(a) => confirm::run(ctx, Rc::new(a.clone())).await,
            Scenario::Festival(a) => festival::run(ctx, Rc::new(a.clone())).await,
        }
    }
}
