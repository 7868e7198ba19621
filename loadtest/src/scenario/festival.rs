//! `festival`: the whole guest journey at an arrival rate, plus a staff client.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::timer::Timer;
use rand::Rng;
use rand_distr::{Distribution, Exp};

use crate::cli::non_negative;
use crate::common::{check_json, sleep_until, Ctx};
use crate::http::Client;
use crate::net;
use crate::proto::{self, Order, MENU};
use crate::scenario::confirm::{await_order, ConfirmStats};
use crate::scenario::lobby::{lobby_client, LobbyStats};
use crate::stats::{Counter, Hist, Kind};
use crate::ws::{close_code, Message, WsError};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Guest arrival rate (Poisson) during --duration-s; lobbies are topped up to full groups
    /// at the end
    #[arg(long, value_name = "GUESTS/S", default_value_t = 2.0, value_parser = non_negative)]
    pub rate: f64,
    /// After arrivals stop, how long guests in flight may take to finish
    #[arg(long, value_name = "SECS", default_value_t = 90.0, value_parser = non_negative)]
    pub drain_s: f64,
    /// Chant length on /ws?room=<menu id>
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = non_negative)]
    pub chant_s: f64,
    /// Chant values per second
    #[arg(long, value_name = "H", default_value_t = 5.0, value_parser = non_negative)]
    pub chant_hz: f64,
    /// Start chanting right after the lobby instead of waiting for start_time
    #[arg(long)]
    pub skip_countdown: bool,
    /// Guest polls GET /api/v1/stores/orders/{id} this often until completed
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub poll_ms: u64,
    /// Staff bearer token; without one the staff client is off and guests stop after their
    /// order is found
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KAKIGORI_STAFF_TOKEN",
        hide_env_values = true
    )]
    pub staff_token: Option<String>,
    /// Staff: order age before POST .../waiting-pickup
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub prep_ms: u64,
    /// Staff: time in waitingPickup before POST .../complete
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub pickup_ms: u64,
    /// Staff: every SECS, GET /api/v1/stores/orders?status=pending and check it (0 = off)
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = non_negative)]
    pub staff_list_s: f64,
    /// Prefix lobby rooms with the run id (default: lobby room = menu id, as the front end does)
    #[arg(long)]
    pub isolate: bool,
}

impl Args {
    pub fn check(&self) -> Result<(), String> {
        if self.rate <= 0.0 {
            return Err("--rate must be > 0 guests/s".into());
        }
        if self.chant_hz <= 0.0 || self.chant_hz > 1000.0 {
            return Err("--chant-hz must be in (0, 1000]".into());
        }
        Ok(())
    }

    fn token(&self) -> Option<&str> {
        self.staff_token.as_deref().filter(|t| !t.is_empty())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Pending,
    Waiting,
}

struct StaffItem {
    order: Order,
    stage: Stage,
    since: Instant,
}

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
    ls: LobbyStats,
    cs: ConfirmStats,
    h_menu: Rc<Hist>,
    h_echo: Rc<Hist>,
    h_to_waiting: Rc<Hist>,
    h_to_done: Rc<Hist>,
    h_poll: Rc<Hist>,
    h_staff_wp: Rc<Hist>,
    h_staff_done: Rc<Hist>,
    h_staff_list: Rc<Hist>,
    h_journey: Rc<Hist>,
    staff: RefCell<VecDeque<StaffItem>>,
    joins: RefCell<[u64; 4]>,
    drain_until: Cell<Instant>,
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let drain = Duration::from_secs_f64(cfg.drain_s);
    let st = ctx.stats.clone();
    // registration order = report order
    let h_menu = st.hist("0 GET menu");
    let h_join = st.hist("1 lobby join (upgrade)");
    let h_wait = st.hist("2 lobby join -> start_time");
    let h_echo = st.hist("3 chant first echo");
    let h_order = st.hist("4 confirm ready -> order");
    let h_to_waiting = st.hist("5 order -> waitingPickup seen");
    let h_to_done = st.hist("6 order -> completed seen");
    let sh = Rc::new(Shared {
        arrived: st.counter("arrived", Kind::Rate),
        finished: st.counter("finished", Kind::Rate),
        failed: st.counter("failed", Kind::Total),
        in_flight: st.counter("in_flight", Kind::Gauge),
        chant_values: st.counter("chant_values", Kind::Rate),
        chant_frames: st.counter("chant_frames", Kind::Rate),
        advanced: st.counter("staff_transitions", Kind::Total),
        ls: LobbyStats {
            joined: st.counter("lobby_joined", Kind::Total),
            started: st.counter("lobby_started", Kind::Total),
            h_join,
            h_wait,
        },
        cs: ConfirmStats {
            orders: st.counter("orders", Kind::Rate),
            h_order,
            ids: RefCell::new(HashSet::new()),
        },
        h_menu,
        h_echo,
        h_to_waiting,
        h_to_done,
        h_poll: st.hist("guest GET order"),
        h_staff_wp: st.hist("staff POST waiting-pickup"),
        h_staff_done: st.hist("staff POST complete"),
        h_staff_list: st.hist("staff GET pending list"),
        h_journey: st.hist("journey total"),
        staff: RefCell::new(VecDeque::new()),
        joins: RefCell::new([0; 4]),
        drain_until: Cell::new(Instant::now() + ctx.duration + drain),
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });

    auth_checks(&ctx, cfg.token()).await;
    if cfg.token().is_none() {
        st.note("no staff token (--staff-token / KAKIGORI_STAFF_TOKEN): staff client off, guests stop once their order is found");
    }
    let staff = cfg
        .token()
        .map(|tok| glommio::spawn_local(staff_task(sh.clone(), tok.to_string())));

    st.start_window();
    let start = Instant::now();
    let arrivals_end = start + ctx.duration;
    let mut rng = ctx.rng();
    // Args::check made the rate > 0, the only thing Exp refuses
    let arrivals = Exp::new(cfg.rate).expect("a positive arrival rate");
    let mut guests = Vec::new();
    let mut next = start;
    loop {
        next += Duration::from_secs_f64(arrivals.sample(&mut rng));
        if next >= arrivals_end {
            break;
        }
        sleep_until(next).await;
        let f = rng.gen_range(0..MENU.len());
        guests.push(glommio::spawn_local(guest(sh.clone(), f)));
    }
    sleep_until(arrivals_end).await;
    // top lobbies up to whole groups so nobody waits forever
    let joins = *sh.joins.borrow();
    let mut fillers = 0;
    for (f, j) in joins.iter().enumerate() {
        for _ in 0..((3 - j % 3) % 3) {
            guests.push(glommio::spawn_local(guest(sh.clone(), f)));
            fillers += 1;
        }
    }
    if fillers > 0 {
        st.note(format!(
            "{fillers} extra guests topped the lobbies up to full groups"
        ));
    }
    let drain_until = Instant::now() + drain;
    sh.drain_until.set(drain_until);
    let mut unfinished = 0;
    for g in guests {
        if net::timeout(drain_until.saturating_duration_since(Instant::now()), g)
            .await
            .is_none()
        {
            unfinished += 1;
        }
    }
    if unfinished > 0 {
        st.error(
            "festival: guests still in flight at the end of --drain-s",
            || format!("{unfinished} guests"),
        );
    }
    drop(staff);
    st.end_window();
    st.metric(
        "guests_per_s",
        sh.arrived.get() as f64 / ctx.duration.as_secs_f64().max(1e-9),
    );
}

/// Staff endpoints must refuse missing and wrong tokens.
async fn auth_checks(ctx: &Ctx, token: Option<&str>) {
    let mut c = ctx.http();
    let wrong = format!("Bearer {}-wrong", token.unwrap_or("x"));
    let cases: [(&str, &str, Option<&str>); 4] = [
        ("GET", "/api/v1/stores/orders?status=pending", None),
        ("GET", "/api/v1/stores/orders", Some(&wrong)),
        (
            "POST",
            "/api/v1/stores/orders/store-001-1/waiting-pickup",
            None,
        ),
        (
            "POST",
            "/api/v1/stores/orders/store-001-1/complete",
            Some(&wrong),
        ),
    ];
    for (m, p, auth) in cases {
        let hdrs: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        match c.request(m, p, &hdrs, None).await {
            Ok(r) => {
                if let Err(e) = proto::error_response(&r, 401, None) {
                    ctx.stats
                        .violation("staff endpoint without a valid token not 401", || {
                            format!(
                                "{m} {p} ({}): {e}",
                                if auth.is_some() {
                                    "wrong token"
                                } else {
                                    "no token"
                                }
                            )
                        });
                }
            }
            Err(e) => ctx.http_failed("staff auth check", &e),
        }
    }
}

async fn guest(sh: Rc<Shared>, f: usize) {
    sh.arrived.inc();
    sh.in_flight.inc();
    let t0 = Instant::now();
    let ok = journey(&sh, f).await;
    sh.in_flight.dec();
    if ok {
        sh.finished.inc();
        sh.h_journey.since(t0);
    } else {
        sh.failed.inc();
    }
}

async fn journey(sh: &Shared, f: usize) -> bool {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    let item = MENU[f].0;
    // 0. menu
    let mut http = Client::new(&ctx.target, ctx.timeout);
    let t = Instant::now();
    match http.request("GET", "/api/v1/stores/menu", &[], None).await {
        Ok(r) => {
            sh.h_menu.since(t);
            if let Some(v) = check_json(ctx, "festival: GET menu", &r, 200) {
                ctx.check("festival: menu content", proto::check_menu(&v));
            }
        }
        Err(e) => {
            ctx.http_failed("festival menu", &e);
            return false;
        }
    }
    // 1-2. lobby
    sh.joins.borrow_mut()[f] += 1;
    let room = if sh.cfg.isolate {
        format!("{}-{item}", ctx.run_id)
    } else {
        item.to_string()
    };
    let limit = sh
        .drain_until
        .get()
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let seen = lobby_client(ctx, &sh.ls, &room, 3, 10.0, limit).await;
    let Some(start_time) = seen.start_time else {
        return false;
    };
    if !sh.cfg.skip_countdown {
        if let Ok(t) = proto::parse_tokyo_rfc3339(&start_time) {
            let wait = (t as f64 - proto::unix_now()).clamp(0.0, 15.0);
            net::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
    // 3. chant
    if !chant(sh, item).await {
        return false;
    }
    // 4. confirm
    let path = format!("/ws/confirm?room={item}");
    let Some(mut ws) = ctx.ws("festival confirm", &path, None, 512).await else {
        return false;
    };
    if let Err(e) = ws.send_text(r#"{"status":"ready"}"#).await {
        ctx.ws_failed("festival confirm", item, &e);
        return false;
    }
    let t_ready = Instant::now();
    let Some(order) = await_order(ctx, &sh.cs, &mut ws, item, t_ready).await else {
        return false;
    };
    drop(ws);
    let t_order = Instant::now();
    // 5-6. staff + polling
    if sh.cfg.token().is_some() {
        sh.staff.borrow_mut().push_back(StaffItem {
            order: order.clone(),
            stage: Stage::Pending,
            since: t_order,
        });
    }
    let mut last_rank = 0usize;
    loop {
        let t = Instant::now();
        let r = http
            .request(
                "GET",
                &format!("/api/v1/stores/orders/{}", order.id),
                &[],
                None,
            )
            .await;
        let g = match r {
            Ok(r) => {
                sh.h_poll.since(t);
                let g = proto::json_response(&r, 200).and_then(|v| proto::parse_order(&v));
                match g {
                    Ok(g) => g,
                    Err(e) => {
                        st.violation("festival: GET order", || format!("{}: {e}", order.id));
                        return false;
                    }
                }
            }
            Err(e) => {
                ctx.http_failed("festival poll", &e);
                return false;
            }
        };
        if g.id != order.id || g.number != order.number || g.menu_item_id != order.menu_item_id {
            st.violation("festival: GET order returned a different order", || {
                format!("{}: {:?}", order.id, g)
            });
            return false;
        }
        let rank = proto::status_rank(&g.status);
        if rank < last_rank {
            st.violation("festival: order status went backwards", || {
                format!(
                    "{}: {} after {}",
                    order.id,
                    g.status,
                    proto::STATUSES[last_rank]
                )
            });
        }
        if rank >= 1 && last_rank < 1 {
            sh.h_to_waiting.since(t_order);
        }
        if rank >= 2 && last_rank < 2 {
            sh.h_to_done.since(t_order);
        }
        last_rank = last_rank.max(rank);
        if sh.cfg.token().is_none() || last_rank >= 2 {
            return true;
        }
        if Instant::now() >= sh.drain_until.get() {
            return false;
        }
        net::sleep(Duration::from_millis(sh.cfg.poll_ms.max(10))).await;
    }
}

enum Wake {
    Read(Result<usize, WsError>),
    Tick,
}

/// Chant `--chant-s` at `--chant-hz` on /ws?room=<item>, reading broadcasts.
async fn chant(sh: &Shared, item: &str) -> bool {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    let path = format!("/ws?room={item}");
    let Some(mut ws) = ctx.ws("festival chant", &path, None, 1024).await else {
        return false;
    };
    let mut rng = ctx.rng();
    let period = Duration::from_secs_f64(1.0 / sh.cfg.chant_hz);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(sh.cfg.chant_s);
    let mut timer = Timer::new(Duration::ZERO);
    let mut next = start;
    let mut first_send: Option<Instant> = None;
    let mut echoed = false;
    loop {
        loop {
            match ws.next_message() {
                Ok(Some(Message::Text(text))) => {
                    sh.chant_frames.inc();
                    if let Err(e) = proto::parse_avg(text.as_bytes()) {
                        st.violation("festival chant: broadcast shape", || e);
                    }
                    if !echoed {
                        if let Some(t) = first_send {
                            sh.h_echo.since(t);
                            echoed = true;
                        }
                    }
                }
                Ok(Some(Message::Close(f))) => {
                    st.error("festival chant: server closed the connection", || {
                        format!("code {:?}", close_code(&f))
                    });
                    return false;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    ctx.ws_failed("festival chant", item, &e);
                    return false;
                }
            }
        }
        if Instant::now() >= end {
            break;
        }
        let w = future::or(async { Wake::Read(ws.fill().await) }, async {
            (&mut timer).await;
            Wake::Tick
        })
        .await;
        match w {
            Wake::Read(Ok(0)) => {
                ctx.ws_failed("festival chant", item, &WsError::Eof);
                return false;
            }
            Wake::Read(Ok(_)) => {}
            Wake::Read(Err(e)) => {
                ctx.ws_failed("festival chant", item, &e);
                return false;
            }
            Wake::Tick => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let v: u32 = rng.gen_range(1..=100);
                first_send.get_or_insert(now);
                if let Err(e) = ws.send_text(format!("{{\"value\":{v}}}")).await {
                    ctx.ws_failed("festival chant", item, &e);
                    return false;
                }
                sh.chant_values.inc();
                next += period;
                let now = Instant::now();
                while next <= now {
                    next += period;
                }
                timer.reset(end.min(next) - now);
            }
        }
    }
    if !echoed {
        st.violation(
            "festival chant: no broadcast during the whole chant",
            || item.to_string(),
        );
    }
    ctx.close_ws("festival chant", item, &mut ws).await;
    true
}

/// Moves this run's orders along and checks the pending list.
async fn staff_task(sh: Rc<Shared>, token: String) {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    let auth = format!("Bearer {token}");
    let mut http = ctx.http();
    let list_every = Duration::from_secs_f64(sh.cfg.staff_list_s);
    let (prep, pickup) = (
        Duration::from_millis(sh.cfg.prep_ms),
        Duration::from_millis(sh.cfg.pickup_ms),
    );
    let mut next_list = Instant::now() + list_every;
    loop {
        net::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        // due transitions, oldest first
        let due: Vec<usize> = sh
            .staff
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, it)| match it.stage {
                Stage::Pending => now >= it.since + prep,
                Stage::Waiting => now >= it.since + pickup,
            })
            .map(|(i, _)| i)
            .collect();
        let mut remove = Vec::new();
        for i in due {
            let (id, stage) = {
                let q = sh.staff.borrow();
                (q[i].order.id.clone(), q[i].stage)
            };
            let (suffix, want, h) = match stage {
                Stage::Pending => ("waiting-pickup", "waitingPickup", &sh.h_staff_wp),
                Stage::Waiting => ("complete", "completed", &sh.h_staff_done),
            };
            let t = Instant::now();
            let r = http
                .request(
                    "POST",
                    &format!("/api/v1/stores/orders/{id}/{suffix}"),
                    &[("Authorization", &auth)],
                    None,
                )
                .await;
            match r {
                Ok(r) => {
                    h.since(t);
                    let o = proto::json_response(&r, 200).and_then(|v| proto::parse_order(&v));
                    match o {
                        Ok(o) if o.id == id && o.status == want => {
                            sh.advanced.inc();
                            let mut q = sh.staff.borrow_mut();
                            match stage {
                                Stage::Pending => {
                                    q[i].stage = Stage::Waiting;
                                    q[i].since = Instant::now();
                                }
                                Stage::Waiting => remove.push(i),
                            }
                        }
                        Ok(o) => {
                            st.violation(
                                &format!("staff POST {suffix}: wrong order/status"),
                                || format!("{id}: got {:?}", o),
                            );
                            remove.push(i);
                        }
                        Err(e) => {
                            st.violation(&format!("staff POST {suffix}"), || format!("{id}: {e}"));
                            remove.push(i);
                        }
                    }
                }
                Err(e) => ctx.http_failed("staff", &e),
            }
        }
        remove.sort_unstable();
        {
            let mut q = sh.staff.borrow_mut();
            for i in remove.into_iter().rev() {
                q.remove(i);
            }
        }
        if !list_every.is_zero() && Instant::now() >= next_list {
            next_list = Instant::now() + list_every;
            check_pending_list(&sh, &mut http, &auth).await;
        }
    }
}

async fn check_pending_list(sh: &Shared, http: &mut Client, auth: &str) {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    // our orders that are pending and were created before the request
    let expect: Vec<String> = sh
        .staff
        .borrow()
        .iter()
        .filter(|it| it.stage == Stage::Pending)
        .map(|it| it.order.id.clone())
        .collect();
    let t = Instant::now();
    let r = http
        .request(
            "GET",
            "/api/v1/stores/orders?status=pending",
            &[("Authorization", auth)],
            None,
        )
        .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => return ctx.http_failed("staff list", &e),
    };
    sh.h_staff_list.since(t);
    if let Err(e) = proto::json_response_headers(&r, 200) {
        st.violation("staff GET pending list: response", || e);
        return;
    }
    let list: proto::OrderList = match serde_json::from_slice(&r.body) {
        Ok(l) => l,
        Err(e) => {
            st.violation("staff GET pending list: shape", || {
                format!("want exactly {{\"orders\":[Order...]}}: {e}")
            });
            return;
        }
    };
    let mut prev = 0u64;
    let mut ids = HashSet::new();
    for o in list.orders {
        match o.check() {
            Ok(o) => {
                if o.status != "pending" {
                    st.violation("staff GET pending list: non-pending order listed", || {
                        o.id.clone()
                    });
                }
                if o.number <= prev {
                    st.violation(
                        "staff GET pending list: not ascending by order_number",
                        || format!("{} after {prev}", o.number),
                    );
                }
                prev = o.number;
                ids.insert(o.id);
            }
            Err(e) => st.violation("staff GET pending list: order", || e),
        }
    }
    for id in expect {
        if !ids.contains(&id) {
            st.violation("staff GET pending list: a pending order is missing", || {
                id.clone()
            });
        }
    }
}
