//! What every scenario shares: the run's context, the preflight checks, and
//! the exchanges that recur between scenarios (a checked JSON request, an
//! order fetched back, WebSockets opened in bulk, a refused upgrade, the
//! close handshake, reading until the server closes). Each records its own
//! failures, so a scenario only says what it expects.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use glommio::sync::Semaphore;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::fail::{Fail, DROPPED};
use crate::http::{HttpConn, Response};
use crate::net::{self, Target};
use crate::proto::{self, Order};
use crate::stats::{Kind, Stats};
use crate::ws::{self, close_code, Message, Ws};

/// Per operation: connect, request, handshake, close, awaited message.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub const MENU: &str = "GET /api/v1/stores/menu";

/// WebSocket handshakes in flight while [`Ctx::ramp`] opens connections.
const RAMP_HANDSHAKES: u64 = 256;

pub struct Ctx {
    pub target: Target,
    pub stats: Rc<Stats>,
    /// Random per run (`lt-3f9a12c0`): prefixes room names and keys.
    pub run_id: String,
    /// The measured phase.
    pub duration: Duration,
    /// Connections made so far: picks the next source address.
    conns: Cell<usize>,
    /// Ids of the orders the server handed out this run.
    orders: RefCell<HashSet<String>>,
}

impl Ctx {
    pub fn new(target: Target, stats: Rc<Stats>, duration_s: f64) -> Ctx {
        let run_id = format!("lt-{:08x}", rand::random::<u32>());
        let duration = Duration::from_secs_f64(duration_s);
        let (conns, orders) = Default::default();
        Ctx {
            target,
            stats,
            run_id,
            duration,
            conns,
            orders,
        }
    }

    /// The source address of the next connection (see [`net::source_addr`]).
    pub fn next_src(&self) -> IpAddr {
        self.conns.set(self.conns.get() + 1);
        net::source_addr(self.conns.get())
    }

    pub fn rng(&self) -> SmallRng {
        SmallRng::from_entropy()
    }

    pub fn http(&self) -> HttpConn {
        HttpConn::new(&self.target, self.next_src(), TIMEOUT)
    }

    /// Remember a new order; false when its id was handed out before.
    pub fn new_order(&self, o: &Order) -> bool {
        self.orders.borrow_mut().insert(o.id.clone())
    }

    /// `method path` must answer `status` with JSON; returns the response,
    /// or records why not under `what`.
    pub async fn request(
        &self,
        http: &mut HttpConn,
        what: &str,
        req: &str,
        status: u16,
    ) -> Option<Response> {
        let (method, path) = req.split_once(' ').unwrap_or(("GET", req));
        match http.request(method, path).await {
            Ok(r) => {
                let ok = proto::json_response(&r, status).map_err(|e| format!("{req}: {e}"));
                self.stats.check(what, ok).map(|_| r)
            }
            Err(f) => self.stats.fail(what, req, f).and(None),
        }
    }

    /// GET the order `want` back: it must be the same order.
    pub async fn fetch_order(
        &self,
        http: &mut HttpConn,
        what: &str,
        want: &Order,
    ) -> Option<Order> {
        let path = format!("GET /api/v1/stores/orders/{}", want.id);
        let r = self.request(http, what, &path, 200).await?;
        let got = proto::parse_order(&r.body).and_then(|o| want.same_as(&o).map(|_| o));
        self.stats.check(&format!("{what}: not the order"), got)
    }

    /// Open a WebSocket on `path`, recording why not under `what`.
    pub async fn ws(&self, what: &str, path: &str, rx_bytes: usize) -> Option<Ws> {
        match ws::connect(&self.target, path, self.next_src(), TIMEOUT, rx_bytes).await {
            Ok(Ok(ws)) => Some(ws),
            Ok(Err(r)) => {
                let kind = format!("{what}: upgrade refused with {}", r.status);
                let detail = || format!("GET {path}: {}", r.body_str());
                self.stats.violation(&kind, detail);
                None
            }
            Err(f) => self.stats.fail(what, path, f).and(None),
        }
    }

    /// Open a WebSocket on every path before a measured phase, at most
    /// [`RAMP_HANDSHAKES`] at once; counts them in the `open` gauge (the
    /// caller takes each one off when it ends) and the `connect` latency.
    pub async fn ramp(
        self: &Rc<Self>,
        what: &'static str,
        paths: Vec<String>,
        rx: usize,
    ) -> Vec<Option<Ws>> {
        let (n, sem) = (paths.len(), Rc::new(Semaphore::new(RAMP_HANDSHAKES)));
        let open = |ctx: Rc<Ctx>, sem: Rc<Semaphore>, path: String| async move {
            let _permit = sem.acquire_permit(1).await.ok()?;
            let t = Instant::now();
            let ws = ctx.ws(what, &path, rx).await?;
            ctx.stats.hist("connect").since(t);
            ctx.stats.counter("open", Kind::Gauge).inc();
            Some(ws)
        };
        let spawn = |path| glommio::spawn_local(open(self.clone(), sem.clone(), path));
        let tasks: Vec<_> = paths.into_iter().map(spawn).collect();
        let mut conns = Vec::with_capacity(n);
        for t in tasks {
            conns.push(t.await);
        }
        let opened = conns.iter().flatten().count();
        if opened < n {
            let note = format!("only {opened} of {n} connections opened");
            self.stats.note(note);
        }
        conns
    }

    /// The upgrade of `path` must be refused with `status` and message `msg`.
    pub async fn expect_ws_refused(&self, path: &str, status: u16, msg: &str) {
        let what = "refused upgrade";
        match ws::connect(&self.target, path, self.next_src(), TIMEOUT, 256).await {
            Ok(Ok(mut ws)) => {
                let detail = || format!("GET {path} was upgraded; want {status} {msg:?}");
                let kind = "upgrade accepted that must be refused";
                self.stats.violation(kind, detail);
                let _ = net::timeout(Duration::from_secs(1), ws::close(&mut ws)).await;
            }
            Ok(Err(r)) => {
                let ok = proto::error_response(&r, status, Some(msg));
                let ok = ok.map_err(|e| format!("GET {path}: {e}"));
                self.stats.check(what, ok);
            }
            Err(f) => _ = self.stats.fail(what, path, f),
        }
    }

    /// Close `ws` with 1000 and wait for the server's close frame; false
    /// (recorded under `what`) when it does not come.
    pub async fn close_ws(&self, what: &str, at: &str, ws: &mut Ws) -> bool {
        let late = || Err(Fail::violation("no close frame", "within 10 s of ours"));
        let Err(mut f) = net::timeout(TIMEOUT, ws::close(ws))
            .await
            .unwrap_or_else(late)
        else {
            return true;
        };
        // dropping the connection instead of answering a close breaks RFC 6455
        f.violation |= f.kind == DROPPED;
        self.stats.fail(&format!("{what} close"), at, f).is_some()
    }

    /// Read `ws` until the server closes it, handing each text message to
    /// `on_text`, which says whether it was the `awaited` one. After that
    /// the server must close with 1000, all within `limit`; a violation
    /// otherwise.
    pub async fn await_then_close(
        &self,
        (what, at): (&str, &str),
        ws: &mut Ws,
        awaited: &str,
        limit: Duration,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Option<()> {
        let mut got = false;
        let end = net::timeout(limit, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => got |= on_text(t.as_str()),
                    Some(Ok(Message::Close(f))) => {
                        // hands tungstenite's reply to the socket
                        let _ = ws.close(None).await;
                        return Ok(close_code(&f));
                    }
                    Some(Ok(Message::Binary(_))) => {
                        return Err(Fail::violation("binary message", ""))
                    }
                    other => _ = ws::message(other)?,
                }
            }
        })
        .await;
        let detail = match end {
            Some(Ok(Some(1000))) if got => return Some(()),
            Some(Ok(code)) => format!("{at}: {awaited} received: {got}, then close code {code:?}"),
            Some(Err(f)) => return self.stats.fail(what, at, f),
            None => format!("{at}: {awaited} received: {got}, no close within {limit:?}"),
        };
        let kind = format!("{what}: not one {awaited} then close 1000");
        self.stats.violation(&kind, || detail);
        None
    }
}

/// Checks every scenario starts with: the health endpoints and the menu.
/// Returns false when the server is not reachable at all.
pub async fn preflight(ctx: &Ctx) -> bool {
    let (st, mut c) = (&ctx.stats, ctx.http());
    for path in ["/healthz", "/api/v1/healthz", "/ws/health"] {
        match c.request("GET", path).await {
            Ok(r) => _ = st.check("preflight: health", proto::check_health(&r)),
            Err(f) => {
                let what = "preflight: server unreachable";
                return st.fail(what, &ctx.target.url, f).is_some();
            }
        }
    }
    if let Some(r) = ctx.request(&mut c, "preflight: menu", MENU, 200).await {
        st.check("preflight: menu", proto::check_menu(&r.body));
    }
    true
}
