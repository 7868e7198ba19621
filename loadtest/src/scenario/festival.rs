//! `festival`: the whole guest journey at an arrival rate, plus a staff
//! client that moves the orders along (SPEC 1 staff endpoints, 2.1-2.3).

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, StreamExt};
use rand::Rng;
use rand_distr::{Distribution, Exp};

use crate::cli::non_negative;
use crate::ctx::Ctx;
use crate::http::Client;
use crate::net::{self, sleep, sleep_until};
use crate::proto::{self, Order, OrderList, MENU};
use crate::scenario::confirm::Confirms;
use crate::scenario::lobby::{Lobbies, GROUP};
use crate::stats::{Counter, Hist, Kind};
use crate::ws::{self, Message};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Guest arrival rate (Poisson) during --duration-s; lobbies are topped up to full groups
    /// at the end
    #[arg(long, value_name = "GUESTS/S", default_value_t = 2.0, value_parser = non_negative)]
    pub rate: f64,
    /// Chant length on /ws?room=<menu id>
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = non_negative)]
    pub chant_s: f64,
    /// Start chanting right after the lobby instead of waiting for start_time
    #[arg(long)]
    pub skip_countdown: bool,
    /// Staff bearer token; without one the staff client is off and guests stop once their
    /// order is found
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KAKIGORI_STAFF_TOKEN",
        hide_env_values = true
    )]
    pub staff_token: Option<String>,
}

impl Args {
    pub fn check(&self) -> Result<(), String> {
        match self.rate > 0.0 {
            true => Ok(()),
            false => Err("--rate must be > 0 guests/s".into()),
        }
    }

    fn token(&self) -> Option<&str> {
        self.staff_token.as_deref().filter(|t| !t.is_empty())
    }
}

/// After arrivals stop, how long guests in flight may take to finish.
const DRAIN: Duration = Duration::from_secs(90);
/// Chant values per second, as the front end sends them.
const CHANT_HZ: f64 = 5.0;
/// A guest polls its order this often until it is completed.
const POLL: Duration = Duration::from_millis(500);
/// Staff: an order's age before waiting-pickup, then its time there before
/// complete.
const STAFF_STEP: Duration = Duration::from_millis(500);
const STAFF_LIST_EVERY: Duration = Duration::from_secs(10);
const PENDING_LIST: &str = "/api/v1/stores/orders?status=pending";

struct Shared {
    ctx: Rc<Ctx>,
    cfg: Rc<Args>,
    arrived: Rc<Counter>,
    finished: Rc<Counter>,
    failed: Rc<Counter>,
    in_flight: Rc<Counter>,
    chant_values: Rc<Counter>,
    chant_frames: Rc<Counter>,
    advanced: Rc<Counter>,
    lobbies: Lobbies,
    confirms: Confirms,
    /// By step: menu, chant echo, waitingPickup seen, completed seen,
    /// guest poll, staff waiting-pickup, staff complete, staff list, journey.
    h: Vec<Rc<Hist>>,
    /// Orders the staff moves along, each queue oldest first (since every
    /// order waits the same [`STAFF_STEP`]): with the time they got there.
    pending: RefCell<VecDeque<(Order, Instant)>>,
    waiting: RefCell<VecDeque<(Order, Instant)>>,
    drain_until: Cell<Instant>,
}

const H_MENU: usize = 0;
const H_ECHO: usize = 1;
const H_WAITING: usize = 2;
const H_DONE: usize = 3;
const H_POLL: usize = 4;
const H_LIST: usize = 7;
const H_JOURNEY: usize = 8;

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let st = &ctx.stats;
    // numbered so the report lists them in journey order
    let names = [
        "0 GET menu",
        "3 chant first echo",
        "5 order -> waitingPickup seen",
        "6 order -> completed seen",
        "guest GET order",
        "staff POST waiting-pickup",
        "staff POST complete",
        "staff GET pending list",
        "journey total",
    ];
    let sh = Rc::new(Shared {
        arrived: st.counter("arrived", Kind::Rate),
        finished: st.counter("finished", Kind::Rate),
        failed: st.counter("failed", Kind::Total),
        in_flight: st.counter("in_flight", Kind::Gauge),
        chant_values: st.counter("chant_values", Kind::Rate),
        chant_frames: st.counter("chant_frames", Kind::Rate),
        advanced: st.counter("staff_transitions", Kind::Total),
        lobbies: Lobbies {
            joined: st.counter("lobby_joined", Kind::Total),
            started: st.counter("lobby_started", Kind::Total),
            h_join: st.hist("1 lobby join (upgrade)"),
            h_wait: st.hist("2 lobby join -> start_time"),
        },
        confirms: Confirms {
            orders: st.counter("orders", Kind::Rate),
            h_order: st.hist("4 confirm ready -> order"),
            ids: RefCell::default(),
        },
        h: names.iter().map(|n| st.hist(n)).collect(),
        pending: RefCell::default(),
        waiting: RefCell::default(),
        drain_until: Cell::new(Instant::now() + ctx.duration + DRAIN),
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });
    auth_checks(&ctx, cfg.token()).await;
    if cfg.token().is_none() {
        st.note("no staff token (--staff-token / KAKIGORI_STAFF_TOKEN): staff client off, guests stop once their order is found");
    }
    let staff = cfg
        .token()
        .map(|t| glommio::spawn_local(staff(sh.clone(), format!("Bearer {t}"))));
    st.start_window();
    let start = Instant::now();
    let mut rng = ctx.rng();
    // Args::check made the rate > 0, the only thing Exp refuses
    let arrivals = Exp::new(cfg.rate).expect("a positive arrival rate");
    let (mut guests, mut joins) = (Vec::new(), [0usize; MENU.len()]);
    let mut next = start + Duration::from_secs_f64(arrivals.sample(&mut rng));
    while next < start + ctx.duration {
        sleep_until(next).await;
        let f = rng.gen_range(0..MENU.len());
        joins[f] += 1;
        guests.push(glommio::spawn_local(guest(sh.clone(), MENU[f].0)));
        next += Duration::from_secs_f64(arrivals.sample(&mut rng));
    }
    sleep_until(start + ctx.duration).await;
    let n_arrived = guests.len();
    // top the lobbies up to whole groups, so nobody waits forever
    for (f, j) in joins.iter().enumerate() {
        for _ in 0..(GROUP - j % GROUP) % GROUP {
            guests.push(glommio::spawn_local(guest(sh.clone(), MENU[f].0)));
        }
    }
    if guests.len() > n_arrived {
        st.note(format!(
            "{} extra guests topped the lobbies up to full groups",
            guests.len() - n_arrived
        ));
    }
    let drain_until = Instant::now() + DRAIN;
    sh.drain_until.set(drain_until);
    let mut unfinished = 0;
    for g in guests {
        let left = drain_until.saturating_duration_since(Instant::now());
        unfinished += usize::from(net::timeout(left, g).await.is_none());
    }
    if unfinished > 0 {
        st.error(
            "festival: guests still in flight 90 s after the arrivals stopped",
            || format!("{unfinished} guests"),
        );
    }
    drop(staff);
    st.end_window();
    st.metric(
        "guests_per_s",
        n_arrived as f64 / ctx.duration.as_secs_f64().max(1e-9),
    );
}

/// Staff endpoints must refuse a missing or a wrong token with 401.
async fn auth_checks(ctx: &Ctx, token: Option<&str>) {
    let mut c = ctx.http();
    let wrong = format!("Bearer {}-wrong", token.unwrap_or("x"));
    let order = "/api/v1/stores/orders/store-001-1";
    let cases = [
        ("GET", PENDING_LIST.to_string(), None),
        ("GET", "/api/v1/stores/orders".to_string(), Some(&wrong)),
        ("POST", format!("{order}/waiting-pickup"), None),
        ("POST", format!("{order}/complete"), Some(&wrong)),
    ];
    for (m, p, auth) in cases {
        let hdrs: Vec<_> = auth
            .map(|a| ("Authorization", a.as_str()))
            .into_iter()
            .collect();
        let token = if auth.is_some() {
            "wrong token"
        } else {
            "no token"
        };
        match c.request(m, &p, &hdrs, None).await {
            Ok(r) => {
                let ok = proto::error_response(&r, 401, None)
                    .map_err(|e| format!("{m} {p} ({token}): {e}"));
                ctx.stats
                    .check("staff endpoint without a valid token not 401", ok);
            }
            Err(f) => ctx.stats.fail("staff auth check", &p, f),
        }
    }
}

async fn guest(sh: Rc<Shared>, item: &'static str) {
    sh.arrived.inc();
    sh.in_flight.inc();
    let t0 = Instant::now();
    let ok = journey(&sh, item).await.is_some();
    sh.in_flight.dec();
    if ok {
        sh.finished.inc();
        sh.h[H_JOURNEY].since(t0);
    } else {
        sh.failed.inc();
    }
}

/// menu -> lobby -> countdown -> chant -> confirm -> poll until completed;
/// `None` when a step failed (recorded).
async fn journey(sh: &Shared, item: &'static str) -> Option<()> {
    let ctx = &sh.ctx;
    let mut http = ctx.http();
    let t = Instant::now();
    let menu = ("GET", "/api/v1/stores/menu");
    let r = ctx
        .request(&mut http, "festival: GET menu", menu, &[], 200)
        .await?;
    sh.h[H_MENU].since(t);
    ctx.stats
        .check("festival: menu", proto::check_menu(&r.body));
    let limit = sh
        .drain_until
        .get()
        .saturating_duration_since(Instant::now());
    let start_time = sh
        .lobbies
        .join(ctx, item, limit.max(Duration::from_secs(1)))
        .await?;
    if !sh.cfg.skip_countdown {
        if let Ok(t) = proto::parse_tokyo_rfc3339(&start_time) {
            let wait_s = (t as f64 - proto::unix_now()).clamp(0.0, 15.0);
            sleep(Duration::from_secs_f64(wait_s)).await;
        }
    }
    chant(sh, item).await?;
    let mut ws = ctx
        .ws("festival confirm", &format!("/ws/confirm?room={item}"), 512)
        .await?;
    if let Err(e) = ws.send(Message::text(r#"{"status":"ready"}"#)).await {
        ctx.stats.fail("festival confirm", item, e.into());
        return None;
    }
    let order = sh
        .confirms
        .await_order(ctx, &mut ws, item, Instant::now())
        .await?;
    let t_order = Instant::now();
    if sh.cfg.token().is_some() {
        sh.pending.borrow_mut().push_back((order.clone(), t_order));
    }
    let mut rank = 0;
    loop {
        let t = Instant::now();
        let got = ctx
            .fetch_order(&mut http, "festival: GET order", &order)
            .await?;
        sh.h[H_POLL].since(t);
        let now_rank = proto::status_rank(&got.status).unwrap_or(0);
        if now_rank < rank {
            ctx.stats
                .violation("festival: order status went backwards", || {
                    format!(
                        "{}: {} after {}",
                        order.id,
                        got.status,
                        proto::STATUSES[rank]
                    )
                });
        }
        for (r, h) in [(1, H_WAITING), (2, H_DONE)] {
            if now_rank >= r && rank < r {
                sh.h[h].since(t_order);
            }
        }
        rank = rank.max(now_rank);
        if sh.cfg.token().is_none() || rank == 2 {
            return Some(());
        }
        if Instant::now() >= sh.drain_until.get() {
            return None;
        }
        sleep(POLL).await;
    }
}

/// Chant `--chant-s` at [`CHANT_HZ`] on /ws?room=<item>, reading the
/// broadcasts meanwhile.
async fn chant(sh: &Shared, item: &str) -> Option<()> {
    let (ctx, st) = (&sh.ctx, &sh.ctx.stats);
    let mut ws = ctx
        .ws("festival chant", &format!("/ws?room={item}"), 1024)
        .await?;
    let mut rng = ctx.rng();
    let period = Duration::from_secs_f64(1.0 / CHANT_HZ);
    let end = Instant::now() + Duration::from_secs_f64(sh.cfg.chant_s);
    let (mut next, mut first_send, mut echoed) = (Instant::now(), None, false);
    while Instant::now() < end {
        let read = async { Some(ws.next().await) };
        let tick = async {
            sleep_until(next.min(end)).await;
            None
        };
        match future::or(read, tick).await.map(ws::message) {
            Some(Ok(Message::Text(t))) => {
                sh.chant_frames.inc();
                st.check(
                    "festival chant: broadcast shape",
                    proto::parse_avg(t.as_bytes()),
                );
                if let (false, Some(t)) = (echoed, first_send) {
                    sh.h[H_ECHO].since(t);
                    echoed = true;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(f)) => {
                st.fail("festival chant", item, f);
                return None;
            }
            None if Instant::now() < end => {
                let value = format!("{{\"value\":{}}}", rng.gen_range(1..=100));
                if let Err(e) = ws.send(Message::text(value)).await {
                    st.fail("festival chant", item, e.into());
                    return None;
                }
                first_send.get_or_insert(Instant::now());
                sh.chant_values.inc();
                while next <= Instant::now() {
                    next += period;
                }
            }
            None => {}
        }
    }
    if !echoed {
        st.violation(
            "festival chant: no broadcast during the whole chant",
            || item.into(),
        );
    }
    ctx.close_ws("festival chant", item, &mut ws).await;
    Some(())
}

/// Moves this run's orders along, [`STAFF_STEP`] apart, and checks the
/// pending list every [`STAFF_LIST_EVERY`].
async fn staff(sh: Rc<Shared>, auth: String) {
    let (ctx, st) = (&sh.ctx, &sh.ctx.stats);
    let mut http = ctx.http();
    let mut next_list = Instant::now() + STAFF_LIST_EVERY;
    let steps = [
        (
            &sh.pending,
            Some(&sh.waiting),
            "waiting-pickup",
            "waitingPickup",
            &sh.h[5],
        ),
        (&sh.waiting, None, "complete", "completed", &sh.h[6]),
    ];
    loop {
        sleep(Duration::from_millis(50)).await;
        for (from, to, action, want, h) in steps {
            loop {
                let due = {
                    let mut q = from.borrow_mut();
                    match q.front() {
                        Some((_, since)) if since.elapsed() >= STAFF_STEP => q.pop_front(),
                        _ => None,
                    }
                };
                let Some((o, _)) = due else { break };
                let path = format!("/api/v1/stores/orders/{}/{action}", o.id);
                let what = format!("staff POST {action}");
                let t = Instant::now();
                let hdrs = [("Authorization", auth.as_str())];
                let Some(r) = ctx
                    .request(&mut http, &what, ("POST", &path), &hdrs, 200)
                    .await
                else {
                    continue;
                };
                h.since(t);
                let moved = proto::parse_order(&r.body).and_then(|g| match g.status == want {
                    true => o.same_as(&g),
                    false => Err(format!("{}: status {}, want {want}", o.id, g.status)),
                });
                if st
                    .check(&format!("{what}: wrong order or status"), moved)
                    .is_some()
                {
                    sh.advanced.inc();
                    if let Some(q) = to {
                        q.borrow_mut().push_back((o, Instant::now()));
                    }
                }
            }
        }
        if Instant::now() >= next_list {
            next_list = Instant::now() + STAFF_LIST_EVERY;
            check_pending_list(&sh, &mut http, &auth).await;
        }
    }
}

/// The pending list: exactly `{"orders":[Order...]}`, only pending orders,
/// ascending by order_number, and every pending order of ours in it.
async fn check_pending_list(sh: &Shared, http: &mut Client, auth: &str) {
    let (ctx, st) = (&sh.ctx, &sh.ctx.stats);
    let expect: Vec<String> = sh
        .pending
        .borrow()
        .iter()
        .map(|(o, _)| o.id.clone())
        .collect();
    let t = Instant::now();
    let what = "staff GET pending list";
    let hdrs = [("Authorization", auth)];
    let Some(r) = ctx
        .request(http, what, ("GET", PENDING_LIST), &hdrs, 200)
        .await
    else {
        return;
    };
    sh.h[H_LIST].since(t);
    let list = serde_json::from_slice::<OrderList>(&r.body)
        .map_err(|e| format!("want exactly {{\"orders\":[Order...]}}: {e}"));
    let Some(list) = st.check(&format!("{what}: shape"), list) else {
        return;
    };
    let (mut prev, mut ids) = (0, HashSet::new());
    for o in list.orders {
        let Some(o) = st.check(&format!("{what}: order"), o.check()) else {
            continue;
        };
        if o.status != "pending" {
            st.violation(&format!("{what}: non-pending order listed"), || {
                o.id.clone()
            });
        }
        if o.order_number <= prev {
            st.violation(&format!("{what}: not ascending by order_number"), || {
                format!("{} after {prev}", o.order_number)
            });
        }
        prev = o.order_number;
        ids.insert(o.id);
    }
    for id in expect.iter().filter(|id| !ids.contains(*id)) {
        st.violation(&format!("{what}: a pending order is missing"), || {
            id.clone()
        });
    }
}
