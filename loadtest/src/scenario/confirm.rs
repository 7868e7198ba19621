//! `confirm`: batches on /ws/confirm?room=<menu id> (SPEC 2.3).

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, StreamExt};

use crate::ctx::{Ctx, TIMEOUT};
use crate::net::sleep;
use crate::proto::{self, Order, MENU};
use crate::stats::Kind;
use crate::ws::{Message, Ws};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Clients per batch on /ws/confirm?room=<menu id>
    #[arg(long, value_name = "B", default_value_t = 3, value_parser = crate::cli::positive)]
    pub batch: usize,
    /// Batches in flight (rooms rotate over the 4 menu ids)
    #[arg(long, value_name = "K", default_value_t = 4, value_parser = crate::cli::positive)]
    pub concurrency: usize,
    /// If > 0: B-1 clients send ready, wait MS and check no order arrived, then the last sends
    /// ready
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub hold_ms: u64,
    /// Every client sends {"status":"ready"} twice (the repeat must be ignored)
    #[arg(long)]
    pub double_ready: bool,
}

pub const READY: &str = r#"{"status":"ready"}"#;

/// One client (of `confirm` and `festival`) after its ready: wait for its
/// Order on `room` and the close 1000 that follows; `t_ready` is when the
/// batch's last ready went out.
pub async fn await_order(ctx: &Ctx, ws: &mut Ws, room: &str, t_ready: Instant) -> Option<Order> {
    let st = &ctx.stats;
    let mut order: Option<Order> = None;
    let on_text = |text: &str| {
        if order.is_some() {
            st.violation("confirm: more than one message per client", || text.into());
            return false;
        }
        let Some(o) = st.check(
            "confirm: order",
            proto::parse_confirmed(text.as_bytes(), room),
        ) else {
            return false;
        };
        st.hist("last ready -> order").since(t_ready);
        st.counter("orders", Kind::Rate).inc();
        if !ctx.new_order(&o) {
            st.violation("confirm: the same order sent twice", || o.id.clone());
        }
        order = Some(o);
        true
    };
    let at = ("confirm", room);
    ctx.await_then_close(at, ws, "order", TIMEOUT, on_text)
        .await;
    order
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let bogus = format!("{}-not-a-menu-item", ctx.run_id);
    let refused = format!("menu item not found: {bogus}");
    let confirm = format!("/ws/confirm?room={bogus}");
    let no_room = "room is required";
    for (path, msg) in [
        (&*confirm, &*refused),
        ("/ws/confirm", no_room),
        ("/ws?room=", no_room),
    ] {
        ctx.expect_ws_refused(path, 400, msg).await;
    }
    ctx.stats.start_window();
    let deadline = Instant::now() + ctx.duration;
    let spawn = |w| glommio::spawn_local(worker(ctx.clone(), cfg.clone(), w, deadline));
    let workers: Vec<_> = (0..cfg.concurrency).map(spawn).collect();
    for w in workers {
        w.await;
    }
}

/// Batch after batch until `deadline`, rotating over the menu ids.
async fn worker(ctx: Rc<Ctx>, cfg: Rc<Args>, w: usize, deadline: Instant) {
    let st = &ctx.stats;
    let mut http = ctx.http();
    for k in w.. {
        if Instant::now() >= deadline {
            break;
        }
        let room = MENU[k % MENU.len()].0;
        let path = format!("/ws/confirm?room={room}");
        let t0 = Instant::now();
        let mut conns = Vec::with_capacity(cfg.batch);
        for _ in 0..cfg.batch {
            conns.extend(ctx.ws("confirm connect", &path, 512).await);
        }
        let n = conns.len();
        for (i, c) in conns.iter_mut().enumerate() {
            if i + 1 == n && n > 1 && cfg.hold_ms > 0 {
                // the server orders for the whole batch at once, so an early
                // order would reach this client, not ready yet, too
                sleep(Duration::from_millis(cfg.hold_ms)).await;
                if let Some(Some(Ok(Message::Text(t)))) = future::poll_once(c.next()).await {
                    let kind = "confirm: order before every client was ready";
                    st.violation(kind, || t.to_string());
                }
            }
            for _ in 0..1 + usize::from(cfg.double_ready) {
                if let Err(e) = c.send(Message::text(READY)).await {
                    st.fail("confirm send ready", room, e.into());
                }
            }
        }
        let t_ready = Instant::now();
        let wait = |mut c: Ws| {
            let ctx = ctx.clone();
            glommio::spawn_local(async move { await_order(&ctx, &mut c, room, t_ready).await })
        };
        let waits: Vec<_> = conns.into_iter().map(wait).collect();
        let mut orders = Vec::with_capacity(n);
        for t in waits {
            orders.extend(t.await);
        }
        st.hist("batch total (connect..all orders)").since(t0);
        st.counter("batches", Kind::Rate).inc();
        for o in orders {
            let t = Instant::now();
            let what = "confirm: GET order";
            if ctx.fetch_order(&mut http, what, &o).await.is_some() {
                st.hist("verify GET order").since(t);
            }
        }
        if n == 0 {
            sleep(Duration::from_millis(100)).await;
        }
    }
}
