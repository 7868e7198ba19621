//! `rest`: keep-alive HTTP/1.1 request mix with full response checks.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::cli::{non_negative, percent};
use crate::common::{check_json, sleep_until, Ctx};
use crate::http::{HttpConn, Response};
use crate::proto::{self, Order, MENU};
use crate::stats::{Counter, Hist, Kind};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Keep-alive HTTP/1.1 connections
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub connections: usize,
    /// Request mix weights: menu = GET /api/v1/stores/menu, order = POST /api/v1/stores/orders,
    /// get = GET /api/v1/stores/orders/{id}, bad = requests that must fail with exact 400/404
    /// errors
    #[arg(long, value_name = "LIST", default_value = "menu:1,order:1,get:1,bad:0", value_parser = parse_mix)]
    pub mix: [f64; 4],
    /// Percent of POSTs sent with a fresh Idempotency-Key
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = percent)]
    pub idempotency_pct: f64,
    /// Percent of POSTs that repeat an earlier Idempotency-Key and must get the same order back
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = percent)]
    pub idem_repeat_pct: f64,
    /// Total request rate spread over the connections (0 = closed loop, as fast as possible);
    /// with a rate, latency counts from the scheduled send time
    #[arg(long, value_name = "RPS", default_value_t = 0.0, value_parser = non_negative)]
    pub rate: f64,
    /// Requests written back to back per connection before reading their responses (HTTP/1.1
    /// pipelining); latency counts from the batch write
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub pipeline: u16,
}

impl Args {
    pub fn check(&self) -> Result<(), String> {
        if self.idempotency_pct + self.idem_repeat_pct > 100.0 {
            return Err("--idempotency-pct + --idem-repeat-pct exceed 100".into());
        }
        Ok(())
    }
}

pub fn parse_mix(s: &str) -> Result<[f64; 4], String> {
    let mut w = [0.0; 4];
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part
            .split_once(':')
            .or_else(|| part.split_once('='))
            .ok_or_else(|| format!("--mix: '{part}' is not name:weight"))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("--mix: weight '{v}' is not a number"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("--mix: weight '{v}' must be >= 0"));
        }
        let i = match k.trim() {
            "menu" => 0,
            "order" => 1,
            "get" => 2,
            "bad" => 3,
            o => {
                return Err(format!(
                    "--mix: unknown request kind '{o}' (menu, order, get, bad)"
                ))
            }
        };
        w[i] = v;
    }
    if w.iter().sum::<f64>() <= 0.0 {
        return Err("--mix: all weights are zero".into());
    }
    Ok(w)
}

struct Shared {
    ctx: Rc<Ctx>,
    cfg: Rc<Args>,
    requests: Rc<Counter>,
    orders_created: Rc<Counter>,
    conns: Rc<Counter>,
    h: [Rc<Hist>; 5],
    numbers: RefCell<HashSet<u64>>,
    store: RefCell<Option<String>>,
    idem: RefCell<VecDeque<(String, Order)>>,
    menu_body: RefCell<Option<Vec<u8>>>,
    seq: Cell<u64>,
    until: Instant,
}

const H_MENU: usize = 0;
const H_ORDER: usize = 1;
const H_GET: usize = 2;
const H_BAD: usize = 3;
const H_IDEM: usize = 4;

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let st = ctx.stats.clone();
    let sh = Rc::new(Shared {
        requests: st.counter("requests", Kind::Rate),
        orders_created: st.counter("orders_created", Kind::Rate),
        conns: st.counter("connections", Kind::Gauge),
        h: [
            st.hist("GET menu"),
            st.hist("POST order"),
            st.hist("GET order"),
            st.hist("bad request"),
            st.hist("POST order (idem repeat)"),
        ],
        numbers: RefCell::new(HashSet::new()),
        store: RefCell::new(None),
        idem: RefCell::new(VecDeque::new()),
        menu_body: RefCell::new(None),
        seq: Cell::new(0),
        until: Instant::now() + ctx.duration,
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });
    st.start_window();
    let mut tasks = Vec::new();
    for ci in 0..cfg.connections.max(1) {
        tasks.push(glommio::spawn_local(conn_task(sh.clone(), ci)));
    }
    for t in tasks {
        t.await;
    }
    st.end_window();
}

#[derive(Clone, Copy)]
enum Op {
    Menu,
    Order,
    Get,
    Bad,
}

/// A request written but not yet answered, with what its check needs.
enum Pending {
    Menu,
    Order {
        item: &'static str,
        key: Option<String>,
    },
    Idem {
        key: String,
        prev: Order,
    },
    Get {
        o: Order,
    },
    Bad(BadCase),
}

struct BadCase {
    what: String,
    status: u16,
    msg: Option<String>,
}

/// Per-connection state.
struct ConnState {
    own: VecDeque<Order>,
    last_number: u64,
    bad_i: usize,
    ci: usize,
}

async fn conn_task(sh: Rc<Shared>, ci: usize) {
    let ctx = &sh.ctx;
    let mut rng = ctx.rng();
    let mut cs = ConnState {
        own: VecDeque::new(),
        last_number: 0,
        bad_i: ci,
        ci,
    };
    let total_w: f64 = sh.cfg.mix.iter().sum();
    let depth = usize::from(sh.cfg.pipeline);
    let interval = if sh.cfg.rate > 0.0 {
        Some(Duration::from_secs_f64(
            sh.cfg.connections.max(1) as f64 * depth as f64 / sh.cfg.rate,
        ))
    } else {
        None
    };
    let mut next = Instant::now()
        + interval
            .map(|i| i.mul_f64(rng.gen_range(0.0..1.0)))
            .unwrap_or_default();
    let mut conn: Option<HttpConn> = None;
    let mut batch: Vec<Pending> = Vec::with_capacity(depth);
    let mut out: Vec<u8> = Vec::with_capacity(512 * depth);
    while Instant::now() < sh.until {
        if conn.as_ref().is_none_or(|c| c.closed) {
            match HttpConn::connect(&ctx.target, ctx.timeout).await {
                Ok(c) => {
                    if conn.is_none() {
                        sh.conns.inc();
                    }
                    conn = Some(c);
                }
                Err(e) => {
                    ctx.http_failed("rest connect", &e);
                    crate::net::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let t0 = match interval {
            Some(iv) => {
                sleep_until(next).await;
                let t = next;
                next += iv;
                if Instant::now() >= sh.until {
                    break;
                }
                t
            }
            None => Instant::now(),
        };
        batch.clear();
        out.clear();
        for _ in 0..depth {
            let mut x = rng.gen_range(0.0..total_w);
            let mut op = Op::Bad;
            for (i, w) in sh.cfg.mix.iter().enumerate() {
                if x < *w {
                    op = [Op::Menu, Op::Order, Op::Get, Op::Bad][i];
                    break;
                }
                x -= w;
            }
            if matches!(op, Op::Get) && cs.own.is_empty() {
                op = Op::Order;
            }
            let (p, bytes) = prepare(&sh, &mut cs, &mut rng, op);
            out.extend_from_slice(&bytes);
            batch.push(p);
        }
        if let Err(e) = c.send_raw(&out).await {
            ctx.http_failed("rest send", &e);
            continue;
        }
        for p in batch.drain(..) {
            let is_head = false;
            match c.read_response(is_head).await {
                Ok(r) => {
                    sh.requests.inc();
                    check(&sh, &mut cs, p, r, t0);
                }
                Err(e) => {
                    ctx.http_failed(pending_name(&p), &e);
                    break;
                }
            }
        }
    }
}

fn pending_name(p: &Pending) -> &'static str {
    match p {
        Pending::Menu => "GET menu",
        Pending::Order { .. } => "POST order",
        Pending::Idem { .. } => "POST order (idem repeat)",
        Pending::Get { .. } => "GET order",
        Pending::Bad(_) => "bad request",
    }
}

fn req(
    host: &str,
    method: &str,
    path: &str,
    hdrs: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    crate::http::build_request(method, path, host, hdrs, body)
}

/// Choose the concrete request for `op`.
fn prepare(
    sh: &Shared,
    cs: &mut ConnState,
    rng: &mut rand::rngs::SmallRng,
    op: Op,
) -> (Pending, Vec<u8>) {
    let ctx = &sh.ctx;
    let host = &ctx.target.host;
    match op {
        Op::Menu => (
            Pending::Menu,
            req(host, "GET", "/api/v1/stores/menu", &[], None),
        ),
        Op::Order => {
            let p: f64 = rng.gen_range(0.0..100.0);
            if p < sh.cfg.idem_repeat_pct {
                let prev = {
                    let q = sh.idem.borrow();
                    (!q.is_empty()).then(|| q[rng.gen_range(0..q.len())].clone())
                };
                if let Some((key, prev)) = prev {
                    let body = format!("{{\"menu_item_id\":\"{}\"}}", prev.menu_item_id);
                    let bytes = req(
                        host,
                        "POST",
                        "/api/v1/stores/orders",
                        &[("Idempotency-Key", &key)],
                        Some(body.as_bytes()),
                    );
                    return (Pending::Idem { key, prev }, bytes);
                }
            }
            let item = MENU[rng.gen_range(0..MENU.len())].0;
            let body = format!("{{\"menu_item_id\":\"{item}\"}}");
            let key = (p < sh.cfg.idem_repeat_pct + sh.cfg.idempotency_pct).then(|| {
                let n = sh.seq.get();
                sh.seq.set(n + 1);
                format!("{}-{}-{n}", ctx.run_id, cs.ci)
            });
            let hdrs: Vec<(&str, &str)> = match &key {
                Some(k) => vec![("Idempotency-Key", k.as_str())],
                None => vec![],
            };
            let bytes = req(
                host,
                "POST",
                "/api/v1/stores/orders",
                &hdrs,
                Some(body.as_bytes()),
            );
            (Pending::Order { item, key }, bytes)
        }
        Op::Get => {
            let o = cs.own[rng.gen_range(0..cs.own.len())].clone();
            let bytes = req(
                host,
                "GET",
                &format!("/api/v1/stores/orders/{}", o.id),
                &[],
                None,
            );
            (Pending::Get { o }, bytes)
        }
        Op::Bad => {
            cs.bad_i += 1;
            let (case, bytes) = bad_case(sh, cs.bad_i);
            (Pending::Bad(case), bytes)
        }
    }
}

/// Check one response against what its request expects.
fn check(sh: &Shared, cs: &mut ConnState, p: Pending, r: Response, t0: Instant) {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    match p {
        Pending::Menu => {
            sh.h[H_MENU].since(t0);
            let same = sh.menu_body.borrow().as_deref() == Some(&r.body[..]);
            if same {
                let _ = ctx.check("GET menu: headers", proto::common_headers(&r));
                if r.status() != 200 {
                    st.violation("GET menu: status", || format!("{}", r.status()));
                }
            } else if let Some(v) = check_json(ctx, "GET menu: response", &r, 200) {
                if ctx
                    .check("GET menu: content", proto::check_menu(&v))
                    .is_some()
                {
                    *sh.menu_body.borrow_mut() = Some(r.body.clone());
                }
            }
        }
        Pending::Idem { key, prev } => {
            sh.h[H_IDEM].since(t0);
            if r.status() != 200 && r.status() != 201 {
                st.violation("Idempotency-Key repeat: status", || {
                    format!("{} {}", r.status(), r.body_str())
                });
                return;
            }
            let o =
                check_json(ctx, "Idempotency-Key repeat: response", &r, r.status()).and_then(|v| {
                    ctx.check(
                        "Idempotency-Key repeat: order shape",
                        proto::parse_order(&v),
                    )
                });
            if let Some(o) = o {
                if o.id != prev.id || o.number != prev.number || o.menu_item_id != prev.menu_item_id
                {
                    st.violation("Idempotency-Key repeat returned a different order", || {
                        format!("key {key}: first {:?}, repeat {:?}", prev.id, o.id)
                    });
                }
            }
        }
        Pending::Order { item, key } => {
            sh.h[H_ORDER].since(t0);
            let Some(v) = check_json(ctx, "POST order: response", &r, 201) else {
                return;
            };
            let Some(o) = ctx.check("POST order: order shape", proto::parse_order(&v)) else {
                return;
            };
            sh.orders_created.inc();
            check_new_order(sh, &o, item, &mut cs.last_number);
            if let Some(k) = key {
                let mut q = sh.idem.borrow_mut();
                q.push_back((k, o.clone()));
                if q.len() > 1000 {
                    q.pop_front();
                }
            }
            cs.own.push_back(o);
            if cs.own.len() > 256 {
                cs.own.pop_front();
            }
        }
        Pending::Get { o } => {
            sh.h[H_GET].since(t0);
            let got = check_json(ctx, "GET order: response", &r, 200)
                .and_then(|v| ctx.check("GET order: order shape", proto::parse_order(&v)));
            if let Some(g) = got {
                if g.id != o.id || g.number != o.number || g.menu_item_id != o.menu_item_id {
                    st.violation("GET order returned a different order", || {
                        format!("GET {}: got {:?}", o.id, g)
                    });
                } else if proto::status_rank(&g.status) < proto::status_rank(&o.status) {
                    st.violation("GET order: status went backwards", || {
                        format!("{}: {} after {}", o.id, g.status, o.status)
                    });
                }
            }
        }
        Pending::Bad(case) => {
            sh.h[H_BAD].since(t0);
            check_bad(sh, &case, &r);
        }
    }
}

fn check_new_order(sh: &Shared, o: &Order, item: &str, last_number: &mut u64) {
    let st = &sh.ctx.stats;
    if o.menu_item_id != item {
        st.violation("POST order: wrong menu_item_id", || {
            format!("asked {item}, got {}", o.menu_item_id)
        });
    }
    if o.status != "pending" {
        st.violation("POST order: new order not pending", || o.status.clone());
    }
    {
        let mut s = sh.store.borrow_mut();
        match s.as_deref() {
            None => *s = Some(o.store.clone()),
            Some(x) if x != o.store => st.violation("orders: store id changed", || {
                format!("{x} then {}", o.store)
            }),
            _ => {}
        }
    }
    if !sh.numbers.borrow_mut().insert(o.number) {
        st.violation("orders: order_number reused", || {
            format!("{} handed out twice", o.number)
        });
    }
    if o.number <= *last_number {
        st.violation("orders: order_number not increasing", || {
            format!("{} after {} on the same connection", o.number, last_number)
        });
    }
    *last_number = (*last_number).max(o.number);
}

/// Requests that must fail with an exact error (or OPTIONS -> 204).
fn bad_case(sh: &Shared, i: usize) -> (BadCase, Vec<u8>) {
    let store = sh
        .store
        .borrow()
        .clone()
        .unwrap_or_else(|| "store-001".to_string());
    let unknown = format!("/api/v1/stores/orders/{store}-{}", 900_000_000 + (i % 1000));
    let (method, path, body, status, msg): (&str, String, Option<&[u8]>, u16, Option<&str>) =
        match i % 9 {
            0 => (
                "GET",
                "/api/v1/stores/orders/abc".into(),
                None,
                400,
                Some("Invalid order ID format"),
            ),
            1 => (
                "GET",
                format!("/api/v1/stores/orders/{store}-abc"),
                None,
                400,
                Some("Invalid order ID format"),
            ),
            2 => ("GET", unknown, None, 404, Some("Order not found")),
            3 => (
                "POST",
                "/api/v1/stores/orders".into(),
                Some(br#"{"menu_item_id":"no-such-ice"}"#),
                400,
                Some("menu item not found: no-such-ice"),
            ),
            4 => (
                "POST",
                "/api/v1/stores/orders".into(),
                Some(b"this is not json"),
                400,
                Some("Invalid request body"),
            ),
            5 => (
                "POST",
                "/api/v1/stores/orders".into(),
                Some(br#"{"menu_item_id":5}"#),
                400,
                Some("Invalid request body"),
            ),
            6 => ("GET", "/api/v1/no-such-path".into(), None, 404, None),
            7 => ("DELETE", "/api/v1/stores/menu".into(), None, 405, None),
            _ => ("OPTIONS", "/api/v1/stores/orders".into(), None, 204, None),
        };
    let bytes = req(&sh.ctx.target.host, method, &path, &[], body);
    let what = format!("{method} {path}");
    (
        BadCase {
            what,
            status,
            msg: msg.map(|m| m.to_string()),
        },
        bytes,
    )
}

fn check_bad(sh: &Shared, case: &BadCase, r: &Response) {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    let what = &case.what;
    if case.status == 204 {
        if r.status() != 204 {
            st.violation("OPTIONS: status", || {
                format!("{what}: {} (want 204)", r.status())
            });
        }
        let _ = ctx.check("OPTIONS: headers", proto::common_headers(r));
        let methods = r.header("access-control-allow-methods").unwrap_or("");
        if methods != "GET,POST,PUT,PATCH,DELETE,OPTIONS" {
            st.violation("OPTIONS: Access-Control-Allow-Methods", || {
                format!("{methods:?}")
            });
        }
        if r.header("access-control-allow-headers") != Some("*") {
            st.violation("OPTIONS: Access-Control-Allow-Headers", || {
                format!("{:?}", r.header("access-control-allow-headers"))
            });
        }
        return;
    }
    // group by the request kind, not the exact (varying) path
    let kind: String = what.split('/').take(5).collect::<Vec<_>>().join("/");
    if let Err(e) = proto::error_response(r, case.status, case.msg.as_deref()) {
        st.violation(&format!("error response for {kind}"), || {
            format!("{what}: {e}")
        });
    }
    if case.status == 405 && r.header("allow").is_none() {
        st.violation("405 without an Allow header", || what.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parsing() {
        assert_eq!(
            parse_mix("menu:1,order:2,get:3,bad:0").unwrap(),
            [1.0, 2.0, 3.0, 0.0]
        );
        assert_eq!(parse_mix("order=1").unwrap(), [0.0, 1.0, 0.0, 0.0]);
        assert!(parse_mix("menu:0").is_err());
        assert!(parse_mix("nope:1").is_err());
        assert!(parse_mix("menu:-1,order:1").is_err());
        assert!(parse_mix("menu").is_err());
    }
}
