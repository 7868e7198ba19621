//! `rest`: a keep-alive HTTP/1.1 request mix, every response checked
//! against SPEC 1.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use rand::rngs::SmallRng;
use rand::Rng;

use crate::cli::{non_negative, percent};
use crate::ctx::Ctx;
use crate::http::{build_request, Response};
use crate::net::{sleep, sleep_until};
use crate::proto::{self, Order, MENU};
use crate::stats::{Counter, Hist, Kind};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Keep-alive HTTP/1.1 connections
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = crate::cli::positive)]
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
    /// with a rate, latency counts from the scheduled send time (no coordinated omission)
    #[arg(long, value_name = "RPS", default_value_t = 0.0, value_parser = non_negative)]
    pub rate: f64,
    /// Requests written back to back per connection before reading their responses (HTTP/1.1
    /// pipelining); latency counts from the batch write
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub pipeline: u16,
}

/// The request kinds of --mix, in its order.
const KINDS: [&str; 4] = ["menu", "order", "get", "bad"];

pub fn parse_mix(s: &str) -> Result<[f64; 4], String> {
    let mut w = [0.0; 4];
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let pair = part.split_once(':').or_else(|| part.split_once('='));
        let (k, v) = pair.ok_or_else(|| format!("--mix: '{part}' is not name:weight"))?;
        let i = KINDS.iter().position(|n| *n == k.trim());
        let i = i.ok_or_else(|| format!("--mix: '{k}' is none of menu, order, get, bad"))?;
        w[i] = non_negative(v.trim()).map_err(|e| format!("--mix: weight {e}"))?;
    }
    match w.iter().sum::<f64>() > 0.0 {
        true => Ok(w),
        false => Err("--mix: all weights are zero".into()),
    }
}

/// A request written and not answered yet: what its check needs.
enum Req {
    Menu,
    /// The item asked for, with its fresh Idempotency-Key if any.
    Order(&'static str, Option<String>),
    /// A key sent before, and the order it made.
    Repeat(String, Order),
    Get(Order),
    /// A [`BAD`] case and the path it went to.
    Bad(usize, String),
}

/// Latency histograms, one per kind of request.
const NAMES: [&str; 5] = [
    "GET menu",
    "POST order",
    "POST order (idem repeat)",
    "GET order",
    "bad request",
];

/// Requests that must fail with exactly (status, message; "" = any
/// message), and OPTIONS, which must answer 204 with the CORS headers.
/// Paths are under /api/v1/stores; `S` is the store id.
/// POST bodies are "x" for `{"menu_item_id":"x"}`, "5" for `{..:5}`.
const BAD: [(&str, &str, &str, u16, &str); 9] = [
    ("GET", "/orders/abc", "", 400, "Invalid order ID format"),
    ("GET", "/orders/S-abc", "", 400, "Invalid order ID format"),
    ("GET", "/orders/S-999999999", "", 404, "Order not found"),
    ("POST", "/orders", "x", 400, "menu item not found: x"),
    ("POST", "/orders", "not json", 400, "Invalid request body"),
    ("POST", "/orders", "5", 400, "Invalid request body"),
    ("GET", "/no-such-path", "", 404, ""),
    ("DELETE", "/menu", "", 405, ""),
    ("OPTIONS", "/orders", "", 204, ""),
];

const ORDERS: &str = "/api/v1/stores/orders";

/// Orders a connection remembers for its GETs, and keys for repeats.
const REMEMBERED: usize = 256;

struct Shared {
    ctx: Rc<Ctx>,
    cfg: Rc<Args>,
    requests: Rc<Counter>,
    h: Vec<Rc<Hist>>,
    /// The store id of the first order.
    store: RefCell<Option<String>>,
    /// The latest Idempotency-Keys sent and their orders.
    keys: RefCell<VecDeque<(String, Order)>>,
    /// The last menu body that passed its checks.
    menu: RefCell<Vec<u8>>,
    key_seq: Cell<u64>,
    until: Instant,
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let st = &ctx.stats;
    st.counter("orders_created", Kind::Rate);
    let sh = Rc::new(Shared {
        requests: st.counter("requests", Kind::Rate),
        h: NAMES.iter().map(|n| st.hist(n)).collect(),
        store: RefCell::default(),
        keys: RefCell::default(),
        menu: RefCell::default(),
        key_seq: Cell::new(0),
        until: Instant::now() + ctx.duration,
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });
    let conns = (0..cfg.connections).map(|i| conn_task(sh.clone(), i));
    let tasks: Vec<_> = conns.map(glommio::spawn_local).collect();
    for t in tasks {
        t.await;
    }
}

/// What one connection remembers.
#[derive(Default)]
struct Conn {
    own: VecDeque<Order>,
    last_number: u64,
    bad: usize,
}

async fn conn_task(sh: Rc<Shared>, ci: usize) {
    let (ctx, depth) = (&sh.ctx, usize::from(sh.cfg.pipeline));
    let (mut rng, mut http) = (ctx.rng(), ctx.http());
    let mut cs = Conn {
        bad: ci,
        ..Conn::default()
    };
    let rate = sh.cfg.rate / (sh.cfg.connections * depth) as f64;
    let every = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut next = Instant::now() + every.map_or(Duration::ZERO, |e| e.mul_f64(rng.gen()));
    while Instant::now() < sh.until {
        let t0 = match every {
            // open loop: each batch has its send time and latency counts from it
            Some(e) => {
                sleep_until(next).await;
                next += e;
                next - e
            }
            None => Instant::now(),
        };
        let reqs: Vec<_> = (0..depth).map(|_| choose(&sh, &mut cs, &mut rng)).collect();
        let bytes: Vec<u8> = reqs.iter().flat_map(|(_, _, b)| b).copied().collect();
        if let Err(f) = http.send(&bytes).await {
            ctx.stats.fail("rest send", &ctx.target.url, f);
            sleep(Duration::from_millis(100)).await;
            continue;
        }
        for (h, req, _) in reqs {
            match http.read_response().await {
                Ok(resp) => {
                    sh.requests.inc();
                    sh.h[h].since(t0);
                    check(&sh, &mut cs, req, &resp);
                }
                Err(f) => {
                    ctx.stats.fail(NAMES[h], &ctx.target.url, f);
                    break;
                }
            }
        }
    }
}

/// The next request by the --mix weights: its histogram, what its check
/// needs, its bytes.
fn choose(sh: &Shared, cs: &mut Conn, rng: &mut SmallRng) -> (usize, Req, Vec<u8>) {
    let (cfg, host) = (&sh.cfg, &sh.ctx.target.host);
    let get = |path: &str| build_request("GET", path, host, &[], None);
    let post = |item: &str, key: Option<&str>| {
        let body = format!("{{\"menu_item_id\":\"{item}\"}}");
        let hdrs: Vec<_> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        build_request("POST", ORDERS, host, &hdrs, Some(body.as_bytes()))
    };
    let mut x = rng.gen_range(0.0..cfg.mix.iter().sum::<f64>());
    let kind = cfg.mix.iter().position(|w| {
        x -= w;
        x < 0.0
    });
    match kind.unwrap_or(3) {
        0 => (0, Req::Menu, get("/api/v1/stores/menu")),
        2 if !cs.own.is_empty() => {
            let o = cs.own[rng.gen_range(0..cs.own.len())].clone();
            let bytes = get(&format!("{ORDERS}/{}", o.id));
            (3, Req::Get(o), bytes)
        }
        3 => {
            cs.bad = (cs.bad + 1) % BAD.len();
            let (method, path, body, ..) = BAD[cs.bad];
            let store = sh.store.borrow().clone().unwrap_or("store-001".into());
            let path = format!("/api/v1/stores{}", path.replace('S', &store));
            let body = match body {
                "x" => r#"{"menu_item_id":"x"}"#,
                "5" => r#"{"menu_item_id":5}"#,
                b => b,
            };
            let body = Some(body.as_bytes()).filter(|b| !b.is_empty());
            let bytes = build_request(method, &path, host, &[], body);
            (4, Req::Bad(cs.bad, path), bytes)
        }
        _ => {
            let p: f64 = rng.gen_range(0.0..100.0);
            let keys = sh.keys.borrow();
            if p < cfg.idem_repeat_pct && !keys.is_empty() {
                let (key, first) = keys[rng.gen_range(0..keys.len())].clone();
                let bytes = post(&first.menu_item_id, Some(&key));
                return (2, Req::Repeat(key, first), bytes);
            }
            let key = (p < cfg.idem_repeat_pct + cfg.idempotency_pct).then(|| {
                sh.key_seq.set(sh.key_seq.get() + 1);
                format!("{}-{}", sh.ctx.run_id, sh.key_seq.get())
            });
            let item = MENU[rng.gen_range(0..MENU.len())].0;
            let bytes = post(item, key.as_deref());
            (1, Req::Order(item, key), bytes)
        }
    }
}

/// Check one response against what its request expects.
fn check(sh: &Shared, cs: &mut Conn, req: Req, r: &Response) {
    let st = &sh.ctx.stats;
    let order = |what: &str, status| {
        let o = proto::json_response(r, status).and_then(|_| proto::parse_order(&r.body));
        st.check(what, o)
    };
    match req {
        // an unchanged body needs no second look
        Req::Menu if r.status == 200 && *sh.menu.borrow() == r.body => {
            st.check("GET menu: headers", proto::common_headers(r));
        }
        Req::Menu => {
            let ok = proto::json_response(r, 200).and_then(|_| proto::check_menu(&r.body));
            if st.check("GET menu", ok).is_some() {
                sh.menu.replace(r.body.clone());
            }
        }
        Req::Order(item, key) => {
            let Some(o) = order("POST order", 201) else {
                return;
            };
            st.counter("orders_created", Kind::Rate).inc();
            check_new_order(sh, cs, &o, item);
            if let Some(k) = key {
                remember(&mut sh.keys.borrow_mut(), (k, o.clone()));
            }
            remember(&mut cs.own, o);
        }
        Req::Repeat(key, first) => {
            let status = if r.status == 200 { 200 } else { 201 };
            if let Some(o) = order("Idempotency-Key repeat", status) {
                let same = first.same_as(&o).map_err(|e| format!("key {key}: {e}"));
                st.check("Idempotency-Key repeat returned a different order", same);
            }
        }
        Req::Get(want) => {
            if let Some(o) = order("GET order", 200) {
                st.check("GET order returned a different order", want.same_as(&o));
            }
        }
        Req::Bad(i, path) if BAD[i].3 == 204 => {
            let methods = r.header("access-control-allow-methods");
            let headers = r.header("access-control-allow-headers");
            let ok = proto::common_headers(r).and_then(|_| {
                let all = Some("GET,POST,PUT,PATCH,DELETE,OPTIONS");
                let ok = (r.status, methods, headers) == (204, all, Some("*"));
                ensure!(ok, "{}, methods {methods:?}, headers {headers:?}", r.status);
                Ok(())
            });
            let ok = ok.map_err(|e| format!("{path}: {e}"));
            st.check("OPTIONS: status or CORS headers", ok);
        }
        Req::Bad(i, path) => {
            let (method, kind, _, status, msg) = BAD[i];
            let msg = Some(msg).filter(|m| !m.is_empty());
            let ok = proto::error_response(r, status, msg).map_err(|e| format!("{path}: {e}"));
            st.check(&format!("error response for {method} {kind}"), ok);
            if status == 405 && r.header("allow").is_none() {
                st.violation("405 without an Allow header", || path);
            }
        }
    }
}

/// Keep the latest [`REMEMBERED`] of something.
fn remember<T>(q: &mut VecDeque<T>, x: T) {
    q.push_back(x);
    if q.len() > REMEMBERED {
        q.pop_front();
    }
}

/// A new order: for the item asked, pending, from one store, its id never
/// handed out before and its number above the connection's previous one.
fn check_new_order(sh: &Shared, cs: &mut Conn, o: &Order, item: &str) {
    let (st, n, last) = (&sh.ctx.stats, o.order_number, cs.last_number);
    let mut store = sh.store.borrow_mut();
    let store = store.get_or_insert_with(|| o.store().to_string());
    let asked = o.menu_item_id == item && o.status == "pending";
    let ok = (|| {
        ensure!(asked, "asked {item}, got {o:?}");
        ensure!(o.store() == store, "store {store}, then {o:?}");
        ensure!(sh.ctx.new_order(o), "{} handed out twice", o.id);
        ensure!(n > last, "{n} after {last} on the same connection");
        Ok(())
    })();
    let kind = "POST order: not a new pending order of the item, numbered up";
    st.check(kind, ok);
    cs.last_number = last.max(n);
}

#[cfg(test)]
mod tests {
    #[test]
    fn mix_parsing() {
        assert_eq!(super::parse_mix("menu:1,order=2"), Ok([1.0, 2.0, 0.0, 0.0]));
        for bad in ["menu:0", "nope:1", "menu:-1,order:1", "menu"] {
            assert!(super::parse_mix(bad).is_err(), "{bad}");
        }
    }
}
