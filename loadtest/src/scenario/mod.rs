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
    /// Load rooms: S of C clients send random values 1..100 at H/s with a random phase; all read
    /// every broadcast. Probe rooms: ONE sender sends 1, 2, 3, ... at 5/s, the other C-1 listen.
    /// The window then always holds a consecutive run j..k, so a broadcast
    /// {"average":a,"count":n} names the newest value it reflects: k = a + (n-1)/2. A listener
    /// that sees k records recv_time - send_time(m) for every value m it had not seen reflected
    /// (last < m <= k), so values that conflation skipped are measured up to the broadcast that
    /// first reflected them. Also checked: exact JSON shape, k never exceeds the last value sent
    /// nor goes back, count within the 5 s (+100 ms bucket) window, load-room averages within
    /// the values sent, close codes, at most --max-broadcast-hz frames/s per client. Reports
    /// delivered frames/s and the delivery ratio = frames received / (values sent x clients in
    /// the room): the fraction of the naive N^2 fan-out that was sent.
    Meter(meter::Args),
    /// Hold N WebSocket connections on /ws, then check every one still answers a ping
    ///
    /// Connections ramp up 256 handshakes at a time over source addresses 127.0.0.2..9 (IPv4
    /// loopback), answer the server's pings and stay silent otherwise. At --duration-s each one
    /// pings and waits for the pong, then closes with 1000 and expects the server's close echo.
    /// Report: survivors, drops (with close codes), ping RTT, harness memory per connection.
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
    /// Each wave, G*3 clients connect to the same lobby room at once. Every client must see only
    /// stay_num 1..3 with start_time "null", then exactly one {"stay_num":"3","start_time":<RFC
    /// 3339 +09:00, whole seconds, now + 10 s>} and a close 1000. Per start_time value the number
    /// of receivers must be a multiple of 3 and every client must get one, so nobody is left in
    /// a lobby of 4.
    Lobby(lobby::Args),
    /// Batches on /ws/confirm?room=<menu id>: everybody ready -> one distinct Order each, then
    /// GET finds it
    ///
    /// Each batch connects B clients, then each sends {"status":"ready"}; every client must
    /// receive exactly one Order (menu_item_id = room, status pending), distinct across the run,
    /// then a close 1000; each order must then be found by GET /api/v1/stores/orders/{id}. Also
    /// checks that upgrades without a room or for a room that is no menu id are refused with 400.
    Confirm(confirm::Args),
    /// Whole guest journey at an arrival rate: menu -> lobby -> chant -> confirm -> poll, with a
    /// staff client
    ///
    /// Guest: GET menu, pick a flavour, /ws/stay?room=<id> until start_time, wait for it, chant
    /// on /ws?room=<id> (--chant-s at 5/s), /ws/confirm?room=<id> ready -> Order, then poll the
    /// order every 500 ms until 'completed' (statuses may only move pending -> waitingPickup ->
    /// completed). Staff: moves each order of this run along 500 ms apart with POST
    /// .../waiting-pickup and .../complete (Authorization: Bearer), checks 401 without or with
    /// a wrong token, and every 10 s lists pending orders (sorted, complete). Guests still in
    /// flight 90 s after the arrivals stop are errors.
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
            Scenario::Rest(a) => a.check(),
            Scenario::Festival(a) => a.check(),
            Scenario::Idle(_) | Scenario::Lobby(_) | Scenario::Confirm(_) => Ok(()),
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
