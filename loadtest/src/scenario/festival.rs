//! `festival`: the whole guest journey at an arrival rate, with the staff
//! moving each order along (SPEC 1 staff endpoints, 2.1-2.3).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use futures_lite::{future, StreamExt};
use rand::Rng;
use rand_distr::{Distribution, Exp};

use crate::cli::non_negative;
use crate::ctx::{Ctx, MENU as MENU_GET};
use crate::net::{self, sleep, sleep_until};
use crate::proto::{self, Order, GROUP, MENU};
use crate::scenario::{confirm, lobby};
use crate::stats::Kind;
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
    /// Staff bearer token; without one the staff are off and guests stop once their order is
    /// found
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
}

/// After arrivals stop, how long guests in flight may take to finish.
const DRAIN: Duration = Duration::from_secs(90);
/// Chant values per second, as the front end sends them.
const CHANT_HZ: f64 = 5.0;
/// A guest polls its order this often until it is completed.
const POLL: Duration = Duration::from_millis(500);
/// The staff take an order this long after it reached each status.
const STAFF_STEP: Duration = Duration::from_millis(500);
const STAFF_LIST_EVERY: Duration = Duration::from_secs(10);

struct Shared {
    ctx: Rc<Ctx>,
    cfg: Rc<Args>,
    /// `Bearer <token>`, when the staff are on.
    auth: Option<String>,
    /// Our orders that are pending and not taken by the staff yet.
    pending: RefCell<HashSet<String>>,
    /// Guests give up then.
    drain_until: Instant,
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let st = &ctx.stats;
    let token = cfg.staff_token.as_deref().filter(|t| !t.is_empty());
    auth_checks(&ctx, token).await;
    if token.is_none() {
        st.note("no staff token (--staff-token / KAKIGORI_STAFF_TOKEN): staff off");
    }
    st.counter("failed", Kind::Total);
    let start = Instant::now();
    let arrivals_end = start + ctx.duration;
    let sh = Rc::new(Shared {
        ctx: ctx.clone(),
        cfg: cfg.clone(),
        auth: token.map(|t| format!("Bearer {t}")),
        pending: RefCell::default(),
        drain_until: arrivals_end + DRAIN,
    });
    let lister = |a| glommio::spawn_local(list_pending(sh.clone(), a));
    let lister = sh.auth.clone().map(lister);
    st.start_window();
    let mut rng = ctx.rng();
    // Args::check made the rate > 0, the only thing Exp refuses
    let arrivals = Exp::new(cfg.rate).expect("a positive arrival rate");
    let (mut guests, mut joins) = (Vec::new(), [0usize; MENU.len()]);
    let mut next = start;
    loop {
        next += Duration::from_secs_f64(arrivals.sample(&mut rng));
        if next >= arrivals_end {
            break;
        }
        sleep_until(next).await;
        let f = rng.gen_range(0..MENU.len());
        joins[f] += 1;
        guests.push(glommio::spawn_local(guest(sh.clone(), MENU[f].0)));
    }
    sleep_until(arrivals_end).await;
    let per_s = guests.len() as f64 / ctx.duration.as_secs_f64().max(1e-9);
    st.metric("guests_per_s", per_s);
    // top the lobbies up to whole groups, so nobody waits forever
    for (f, j) in joins.iter().enumerate() {
        for _ in 0..(GROUP - j % GROUP) % GROUP {
            guests.push(glommio::spawn_local(guest(sh.clone(), MENU[f].0)));
        }
    }
    let mut unfinished = 0;
    for g in guests {
        let left = sh.drain_until.saturating_duration_since(Instant::now());
        unfinished += usize::from(net::timeout(left, g).await.is_none());
    }
    if unfinished > 0 {
        let kind = "festival: guests still in flight 90 s after the arrivals stopped";
        st.error(kind, || format!("{unfinished} guests"));
    }
    drop(lister);
}

/// Staff endpoints must refuse a missing or a wrong token with 401.
async fn auth_checks(ctx: &Ctx, token: Option<&str>) -> Option<()> {
    let wrong = format!("Bearer {}-wrong", token.unwrap_or("x"));
    let order = "POST /api/v1/stores/orders/store-001-1";
    let cases = [
        ("GET /api/v1/stores/orders?status=pending".into(), None),
        ("GET /api/v1/stores/orders".into(), Some(&wrong)),
        (format!("{order}/waiting-pickup"), None),
        (format!("{order}/complete"), Some(&wrong)),
    ];
    for (req, auth) in cases {
        let http = ctx.http();
        let mut http = auth.map_or(http, |a| ctx.http().with_auth(a));
        let (method, path) = req.split_once(' ').expect("method and path");
        let ok = match http.request(method, path).await {
            Ok(r) => proto::error_response(&r, 401, None),
            Err(f) => return ctx.stats.fail("staff auth check", &req, f),
        };
        let ok = ok.map_err(|e| format!("{req} (token {auth:?}): {e}"));
        let what = "staff endpoint without a valid token not 401";
        ctx.stats.check(what, ok);
    }
    Some(())
}

async fn guest(sh: Rc<Shared>, item: &'static str) {
    let st = &sh.ctx.stats;
    st.counter("arrived", Kind::Rate).inc();
    let in_flight = st.counter("in_flight", Kind::Gauge);
    in_flight.inc();
    let t0 = Instant::now();
    let finished = journey(&sh, item).await.is_some();
    in_flight.dec();
    if finished {
        st.counter("finished", Kind::Rate).inc();
        st.hist("journey total").since(t0);
    } else {
        st.counter("failed", Kind::Total).inc();
    }
}

/// menu -> lobby -> countdown -> chant -> confirm -> poll until completed;
/// `None` when a step failed (recorded).
async fn journey(sh: &Rc<Shared>, item: &'static str) -> Option<()> {
    let (ctx, st, mut http) = (&sh.ctx, &sh.ctx.stats, sh.ctx.http());
    let t = Instant::now();
    let what = "festival: GET menu";
    let r = ctx.request(&mut http, what, MENU_GET, 200).await?;
    st.hist("GET menu").since(t);
    st.check("festival: menu", proto::check_menu(&r.body));
    let limit = sh.drain_until.saturating_duration_since(Instant::now());
    let start_time = lobby::join(ctx, item, limit).await?;
    if let (false, Ok(t)) = (
        sh.cfg.skip_countdown,
        proto::parse_tokyo_rfc3339(&start_time),
    ) {
        let wait_s = (t as f64 - proto::unix_now()).clamp(0.0, 15.0);
        sleep(Duration::from_secs_f64(wait_s)).await;
    }
    chant(sh, item).await?;
    let path = format!("/ws/confirm?room={item}");
    let mut ws = ctx.ws("festival confirm", &path, 512).await?;
    if let Err(e) = ws.send(Message::text(confirm::READY)).await {
        return st.fail("festival confirm", item, e.into());
    }
    let order = confirm::await_order(ctx, &mut ws, item, Instant::now()).await?;
    let t_order = Instant::now();
    let staff = sh.auth.as_ref().map(|auth| {
        sh.pending.borrow_mut().insert(order.id.clone());
        glommio::spawn_local(serve(sh.clone(), order.clone(), auth.clone()))
    });
    let mut rank = 0;
    loop {
        let t = Instant::now();
        let what = "festival: GET order";
        let got = ctx.fetch_order(&mut http, what, &order).await?;
        st.hist("guest GET order").since(t);
        let now_rank = proto::status_rank(&got.status).unwrap_or(0);
        if now_rank < rank {
            let detail = || {
                format!(
                    "{}: {} after {}",
                    order.id,
                    got.status,
                    proto::STATUSES[rank]
                )
            };
            st.violation("festival: order status went backwards", detail);
        }
        for (r, h) in [
            (1, "order -> waitingPickup seen"),
            (2, "order -> completed seen"),
        ] {
            if now_rank >= r && rank < r {
                st.hist(h).since(t_order);
            }
        }
        rank = rank.max(now_rank);
        if staff.is_none() || rank == 2 {
            return Some(());
        }
        if Instant::now() >= sh.drain_until {
            return None;
        }
        sleep(POLL).await;
    }
}

/// Chant `--chant-s` at [`CHANT_HZ`] on /ws?room=<item>, reading the
/// broadcasts meanwhile.
async fn chant(sh: &Shared, item: &str) -> Option<()> {
    let (ctx, st) = (&sh.ctx, &sh.ctx.stats);
    let path = format!("/ws?room={item}");
    let mut ws = ctx.ws("festival chant", &path, 1024).await?;
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
                st.counter("chant_frames", Kind::Rate).inc();
                st.check("festival chant: broadcast", proto::parse_avg(t.as_bytes()));
                if let (false, Some(t)) = (echoed, first_send) {
                    st.hist("chant first echo").since(t);
                    echoed = true;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(f)) => return st.fail("festival chant", item, f),
            None if Instant::now() >= end => {}
            None => {
                let value = format!("{{\"value\":{}}}", rng.gen_range(1..=100));
                first_send.get_or_insert(Instant::now());
                while next <= Instant::now() {
                    next += period;
                }
                if let Err(e) = ws.send(Message::text(value)).await {
                    return st.fail("festival chant", item, e.into());
                }
                st.counter("chant_values", Kind::Rate).inc();
            }
        }
    }
    if !echoed {
        st.violation("festival chant: no broadcast in the whole chant", || {
            item.into()
        });
    }
    ctx.close_ws("festival chant", item, &mut ws).await;
    Some(())
}

/// The staff's part for one order: waiting-pickup, then complete, each
/// [`STAFF_STEP`] after the order got its status.
async fn serve(sh: Rc<Shared>, order: Order, auth: String) -> Option<()> {
    let (ctx, st, mut http) = (&sh.ctx, &sh.ctx.stats, sh.ctx.http().with_auth(&auth));
    for (action, want) in [
        ("waiting-pickup", "waitingPickup"),
        ("complete", "completed"),
    ] {
        sleep(STAFF_STEP).await;
        sh.pending.borrow_mut().remove(&order.id);
        let (what, t) = (format!("staff POST {action}"), Instant::now());
        let req = format!("POST /api/v1/stores/orders/{}/{action}", order.id);
        let r = ctx.request(&mut http, &what, &req, 200).await?;
        st.hist(&what).since(t);
        let moved = proto::parse_order(&r.body).and_then(|g| {
            ensure!(g.status == want, "{}: {}, want {want}", g.id, g.status);
            order.same_as(&g)
        });
        st.check(&format!("{what}: wrong order or status"), moved)?;
        st.counter("staff_transitions", Kind::Total).inc();
    }
    Some(())
}

/// Every [`STAFF_LIST_EVERY`], the pending list must hold every pending
/// order of ours (see `proto::check_pending`).
async fn list_pending(sh: Rc<Shared>, auth: String) {
    let (ctx, st, mut http) = (&sh.ctx, &sh.ctx.stats, sh.ctx.http().with_auth(&auth));
    let (what, list) = (
        "staff GET pending list",
        "GET /api/v1/stores/orders?status=pending",
    );
    loop {
        sleep(STAFF_LIST_EVERY).await;
        let (ours, t) = (sh.pending.borrow().clone(), Instant::now());
        if let Some(r) = ctx.request(&mut http, what, list, 200).await {
            st.hist(what).since(t);
            st.check(what, proto::check_pending(&r.body, &ours));
        }
    }
}
