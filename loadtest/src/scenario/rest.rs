//! `rest`: keep-alive HTTP/1.1 request mix with full response checks.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::cli::Opts;
use crate::common::{check_json, sleep_until, Ctx};
use crate::http::{HttpConn, Response};
use crate::proto::{self, Order, MENU};
use crate::stats::{Counter, Hist, Kind};

pub struct Cfg {
    pub connections: usize,
    /// weights: menu, order, get, bad
    pub mix: [f64; 4],
    pub idem_pct: f64,
    pub idem_repeat_pct: f64,
    pub rate: f64,
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

impl Cfg {
    pub fn from_opts(o: &Opts) -> Result<Cfg, String> {
        let c = Cfg {
            connections: o.usize("connections")?.max(1),
            mix: parse_mix(&o.str("mix").unwrap_or_default())?,
            idem_pct: o.pct("idempotency-pct")?,
            idem_repeat_pct: o.pct("idem-repeat-pct")?,
            rate: o.f64("rate")?,
        };
        if c.idem_pct + c.idem_repeat_pct > 100.0 {
            return Err("--idempotency-pct + --idem-repeat-pct exceed 100".into());
        }
        Ok(c)
    }
}

struct Shared {
    ctx: Rc<Ctx>,
    cfg: Rc<Cfg>,
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

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Cfg>) {
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
    for ci in 0..cfg.connections {
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

async fn conn_task(sh: Rc<Shared>, ci: usize) {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    let mut rng = ctx.rng();
    let mut own: VecDeque<Order> = VecDeque::new();
    let mut last_number = 0u64;
    let total_w: f64 = sh.cfg.mix.iter().sum();
    let interval = if sh.cfg.rate > 0.0 {
        Some(Duration::from_secs_f64(
            sh.cfg.connections as f64 / sh.cfg.rate,
        ))
    } else {
        None
    };
    let mut next = Instant::now()
        + interval
            .map(|i| i.mul_f64(rng.gen_range(0.0..1.0)))
            .unwrap_or_default();
    let mut conn: Option<HttpConn> = None;
    let mut bad_i = ci;
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
        let mut x = rng.gen_range(0.0..total_w);
        let mut op = Op::Bad;
        for (i, w) in sh.cfg.mix.iter().enumerate() {
            if x < *w {
                op = [Op::Menu, Op::Order, Op::Get, Op::Bad][i];
                break;
            }
            x -= w;
        }
        if matches!(op, Op::Get) && own.is_empty() {
            op = Op::Order;
        }
        match op {
            Op::Menu => {
                let r = c.request("GET", "/api/v1/stores/menu", &[], None).await;
                let Some(r) = done(&sh, H_MENU, t0, "GET menu", r) else {
                    continue;
                };
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
            Op::Order => {
                let item = MENU[rng.gen_range(0..MENU.len())].0;
                let body = format!("{{\"menu_item_id\":\"{item}\"}}");
                let p: f64 = rng.gen_range(0.0..100.0);
                let repeat = if p < sh.cfg.idem_repeat_pct {
                    let q = sh.idem.borrow();
                    if q.is_empty() {
                        None
                    } else {
                        Some(q[rng.gen_range(0..q.len())].clone())
                    }
                } else {
                    None
                };
                if let Some((key, prev)) = repeat {
                    let body = format!("{{\"menu_item_id\":\"{}\"}}", prev.menu_item_id);
                    let r = c
                        .request(
                            "POST",
                            "/api/v1/stores/orders",
                            &[("Idempotency-Key", &key)],
                            Some(body.as_bytes()),
                        )
                        .await;
                    let Some(r) = done(&sh, H_IDEM, t0, "POST order (idem repeat)", r) else {
                        continue;
                    };
                    if r.status() != 200 && r.status() != 201 {
                        st.violation("Idempotency-Key repeat: status", || {
                            format!("{} {}", r.status(), r.body_str())
                        });
                        continue;
                    }
                    let o = check_json(ctx, "Idempotency-Key repeat: response", &r, r.status())
                        .and_then(|v| {
                            ctx.check(
                                "Idempotency-Key repeat: order shape",
                                proto::parse_order(&v),
                            )
                        });
                    if let Some(o) = o {
                        if o.id != prev.id
                            || o.number != prev.number
                            || o.menu_item_id != prev.menu_item_id
                        {
                            st.violation(
                                "Idempotency-Key repeat returned a different order",
                                || format!("key {key}: first {:?}, repeat {:?}", prev.id, o.id),
                            );
                        }
                    }
                    continue;
                }
                let key = if p < sh.cfg.idem_repeat_pct + sh.cfg.idem_pct {
                    let n = sh.seq.get();
                    sh.seq.set(n + 1);
                    Some(format!("{}-{ci}-{n}", ctx.run_id))
                } else {
                    None
                };
                let hdrs: Vec<(&str, &str)> = match &key {
                    Some(k) => vec![("Idempotency-Key", k.as_str())],
                    None => vec![],
                };
                let r = c
                    .request(
                        "POST",
                        "/api/v1/stores/orders",
                        &hdrs,
                        Some(body.as_bytes()),
                    )
                    .await;
                let Some(r) = done(&sh, H_ORDER, t0, "POST order", r) else {
                    continue;
                };
                let Some(v) = check_json(ctx, "POST order: response", &r, 201) else {
                    continue;
                };
                let Some(o) = ctx.check("POST order: order shape", proto::parse_order(&v)) else {
                    continue;
                };
                sh.orders_created.inc();
                check_new_order(&sh, &o, item, &mut last_number);
                if let Some(k) = key {
                    let mut q = sh.idem.borrow_mut();
                    q.push_back((k, o.clone()));
                    if q.len() > 1000 {
                        q.pop_front();
                    }
                }
                own.push_back(o);
                if own.len() > 256 {
                    own.pop_front();
                }
            }
            Op::Get => {
                let o = own[rng.gen_range(0..own.len())].clone();
                let path = format!("/api/v1/stores/orders/{}", o.id);
                let r = c.request("GET", &path, &[], None).await;
                let Some(r) = done(&sh, H_GET, t0, "GET order", r) else {
                    continue;
                };
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
            Op::Bad => {
                bad_i += 1;
                bad_request(&sh, c, bad_i, t0).await;
            }
        }
    }
}

fn done(
    sh: &Shared,
    h: usize,
    t0: Instant,
    what: &str,
    r: Result<Response, crate::http::HttpError>,
) -> Option<Response> {
    match r {
        Ok(r) => {
            sh.h[h].since(t0);
            sh.requests.inc();
            Some(r)
        }
        Err(e) => {
            sh.ctx.http_failed(what, &e);
            None
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

/// Requests that must fail with an exact error.
async fn bad_request(sh: &Shared, c: &mut HttpConn, i: usize, t0: Instant) {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    let store = sh
        .store
        .borrow()
        .clone()
        .unwrap_or_else(|| "store-001".to_string());
    let unknown = format!("/api/v1/stores/orders/{store}-{}", 900_000_000 + (i % 1000));
    let (method, path, body, status, msg): (&str, String, Option<&[u8]>, u16, Option<String>) =
        match i % 9 {
            0 => (
                "GET",
                "/api/v1/stores/orders/abc".into(),
                None,
                400,
                Some("Invalid order ID format".into()),
            ),
            1 => (
                "GET",
                format!("/api/v1/stores/orders/{store}-abc"),
                None,
                400,
                Some("Invalid order ID format".into()),
            ),
            2 => ("GET", unknown, None, 404, Some("Order not found".into())),
            3 => (
                "POST",
                "/api/v1/stores/orders".into(),
                Some(br#"{"menu_item_id":"no-such-ice"}"#),
                400,
                Some("menu item not found: no-such-ice".into()),
            ),
            4 => (
                "POST",
                "/api/v1/stores/orders".into(),
                Some(b"this is not json"),
                400,
                Some("Invalid request body".into()),
            ),
            5 => (
                "POST",
                "/api/v1/stores/orders".into(),
                Some(br#"{"menu_item_id":5}"#),
                400,
                Some("Invalid request body".into()),
            ),
            6 => ("GET", "/api/v1/no-such-path".into(), None, 404, None),
            7 => ("DELETE", "/api/v1/stores/menu".into(), None, 405, None),
            _ => ("OPTIONS", "/api/v1/stores/orders".into(), None, 204, None),
        };
    let r = c.request(method, &path, &[], body).await;
    let Some(r) = done(sh, H_BAD, t0, "bad request", r) else {
        return;
    };
    let what = format!(
        "{method} {}",
        path.split('/').take(5).collect::<Vec<_>>().join("/")
    );
    if status == 204 {
        if r.status() != 204 {
            st.violation("OPTIONS: status", || {
                format!("{what}: {} (want 204)", r.status())
            });
        }
        let _ = ctx.check("OPTIONS: headers", proto::common_headers(&r));
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
    if let Err(e) = proto::error_response(&r, status, msg.as_deref()) {
        st.violation(&format!("error response for {what}"), || e);
    }
    if status == 405 && r.header("allow").is_none() {
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
