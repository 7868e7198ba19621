//! `confirm`: batches on /ws/confirm?room=<menu id>.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::common::Ctx;
use crate::net;
use crate::proto::{self, Order, MENU};
use crate::stats::{Counter, Hist, Kind};
use crate::ws::{close_code, Message, WsConn};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Clients per batch on /ws/confirm?room=<menu id>
    #[arg(long, value_name = "B", default_value_t = 3)]
    pub batch: usize,
    /// Batches in flight (rooms rotate over the 4 menu ids)
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub concurrency: usize,
    /// If > 0: B-1 clients send ready, wait MS and check no order arrived, then the last sends
    /// ready
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub hold_ms: u64,
    /// Every client sends {"status":"ready"} twice (the repeat must be ignored)
    #[arg(long)]
    pub double_ready: bool,
    /// Skip GET /api/v1/stores/orders/{id} of every received order
    #[arg(long)]
    pub no_verify: bool,
}

impl Args {
    pub fn check(&self) -> Result<(), String> {
        if self.batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        Ok(())
    }
}

pub struct ConfirmStats {
    pub orders: Rc<Counter>,
    pub h_order: Rc<Hist>,
    pub ids: RefCell<HashSet<String>>,
}

/// Wait for this client's Order and the close 1000 that follows.
/// `t_ready` is when the last ready of the batch was sent.
pub async fn await_order(
    ctx: &Ctx,
    cs: &ConfirmStats,
    ws: &mut WsConn,
    room: &str,
    t_ready: Instant,
) -> Option<Order> {
    let st = &ctx.stats;
    let mut order: Option<Order> = None;
    let r = net::timeout(ctx.timeout, async {
        loop {
            match ws.recv().await {
                Ok(Message::Text(text)) => {
                    let v: serde_json::Value = match serde_json::from_str(&text) {
                        Ok(v) => v,
                        Err(e) => {
                            st.violation("confirm: message is not JSON", || format!("{e}: {text}"));
                            continue;
                        }
                    };
                    if order.is_some() {
                        st.violation("confirm: more than one message per client", || {
                            v.to_string()
                        });
                        continue;
                    }
                    if v == serde_json::json!({"error": "order failed"}) {
                        st.violation("confirm: server answered order failed", || room.to_string());
                        continue;
                    }
                    match proto::parse_order(&v) {
                        Ok(o) => {
                            cs.h_order.since(t_ready);
                            cs.orders.inc();
                            if o.menu_item_id != room {
                                st.violation("confirm: order for another menu item", || {
                                    format!("room {room}: {v}")
                                });
                            }
                            if o.status != "pending" {
                                st.violation("confirm: new order not pending", || v.to_string());
                            }
                            if !cs.ids.borrow_mut().insert(o.id.clone()) {
                                st.violation("confirm: the same order sent to two clients", || {
                                    o.id.clone()
                                });
                            }
                            order = Some(o);
                        }
                        Err(e) => st.violation("confirm: order shape", || e),
                    }
                }
                Ok(Message::Close(f)) => {
                    let code = close_code(&f);
                    if order.is_none() {
                        st.violation("confirm: closed without an order", || {
                            format!("room {room}: code {code:?}")
                        });
                    } else if code != Some(1000) {
                        st.violation("confirm: close code after the order", || {
                            format!("{code:?}, want 1000")
                        });
                    }
                    return;
                }
                Ok(Message::Binary(_)) => {
                    st.violation("confirm: binary message", || room.to_string())
                }
                Ok(_) => {}
                Err(e) => {
                    ctx.ws_failed("confirm", room, &e);
                    return;
                }
            }
        }
    })
    .await;
    if r.is_none() {
        if order.is_none() {
            st.violation("confirm: no order received", || {
                format!("room {room}: nothing within {:?} of ready", ctx.timeout)
            });
        } else {
            st.violation("confirm: no close after the order", || room.to_string());
        }
    }
    order
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let hold = Duration::from_millis(cfg.hold_ms);
    let st = ctx.stats.clone();
    // refusals first
    let bogus = format!("{}-not-a-menu-item", ctx.run_id);
    ctx.expect_ws_refused(
        &format!("/ws/confirm?room={bogus}"),
        400,
        &format!("menu item not found: {bogus}"),
    )
    .await;
    ctx.expect_ws_refused("/ws/confirm", 400, "room is required")
        .await;
    ctx.expect_ws_refused("/ws?room=", 400, "room is required")
        .await;

    let cs = Rc::new(ConfirmStats {
        orders: st.counter("orders", Kind::Rate),
        h_order: st.hist("last ready -> order"),
        ids: RefCell::new(HashSet::new()),
    });
    let batches = st.counter("batches", Kind::Rate);
    let clients = st.counter("clients", Kind::Total);
    let h_batch = st.hist("batch total (connect..all orders)");
    let h_verify = st.hist("verify GET order");
    let deadline = Instant::now() + ctx.duration;
    st.start_window();
    let mut workers = Vec::new();
    for w in 0..cfg.concurrency.max(1) {
        let (ctx, cfg, cs, batches, clients, h_batch, h_verify) = (
            ctx.clone(),
            cfg.clone(),
            cs.clone(),
            batches.clone(),
            clients.clone(),
            h_batch.clone(),
            h_verify.clone(),
        );
        workers.push(glommio::spawn_local(async move {
            let st = &ctx.stats;
            let mut http = ctx.http();
            let mut k = 0usize;
            while Instant::now() < deadline {
                let room = MENU[(w + k) % MENU.len()].0;
                k += 1;
                let t0 = Instant::now();
                let mut conns = Vec::with_capacity(cfg.batch);
                for _ in 0..cfg.batch {
                    if let Some(c) = ctx
                        .ws(
                            "confirm connect",
                            &format!("/ws/confirm?room={room}"),
                            None,
                            512,
                        )
                        .await
                    {
                        conns.push(c);
                    }
                }
                clients.add(conns.len() as u64);
                if conns.is_empty() {
                    net::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                let n = conns.len();
                let mut ok = true;
                for (i, c) in conns.iter_mut().enumerate() {
                    if i == n - 1 && !hold.is_zero() && n > 1 {
                        net::sleep(hold).await;
                        // nobody may have an order yet: one client is not ready
                        hold_check(&ctx, c).await;
                    }
                    let times = if cfg.double_ready { 2 } else { 1 };
                    for _ in 0..times {
                        if let Err(e) = c.send_text(r#"{"status":"ready"}"#).await {
                            ctx.ws_failed("confirm send ready", room, &e);
                            ok = false;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                let t_ready = Instant::now();
                let mut waits = Vec::with_capacity(n);
                for mut c in conns {
                    let (ctx, cs) = (ctx.clone(), cs.clone());
                    waits.push(glommio::spawn_local(async move {
                        await_order(&ctx, &cs, &mut c, room, t_ready).await
                    }));
                }
                let mut orders = Vec::new();
                for wt in waits {
                    if let Some(o) = wt.await {
                        orders.push(o);
                    }
                }
                h_batch.since(t0);
                batches.inc();
                if !cfg.no_verify {
                    for o in orders {
                        let t = Instant::now();
                        match http
                            .request("GET", &format!("/api/v1/stores/orders/{}", o.id), &[], None)
                            .await
                        {
                            Ok(r) => {
                                h_verify.since(t);
                                let got = proto::json_response(&r, 200)
                                    .and_then(|v| proto::parse_order(&v));
                                match got {
                                    Ok(g)
                                        if g.id == o.id
                                            && g.number == o.number
                                            && g.menu_item_id == o.menu_item_id => {}
                                    Ok(g) => st
                                        .violation("confirm: GET finds a different order", || {
                                            format!("{}: {:?}", o.id, g)
                                        }),
                                    Err(e) => st.violation(
                                        "confirm: GET of a confirmed order failed",
                                        || format!("{}: {e}", o.id),
                                    ),
                                }
                            }
                            Err(e) => ctx.http_failed("confirm verify GET", &e),
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await;
    }
    st.end_window();
}

/// With `--hold-ms`: before the last client sends ready, check that it
/// (not ready yet) has received nothing: the server orders for the whole
/// batch at once, so an early order would show up here too.
async fn hold_check(ctx: &Ctx, c: &mut WsConn) {
    if let Some(Ok(n)) = future::poll_once(c.fill()).await {
        if n > 0 {
            if let Ok(Some(Message::Text(text))) = c.next_message() {
                ctx.stats
                    .violation("confirm: order before every client was ready", || text);
            }
        }
    }
}
