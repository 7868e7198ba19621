//! `idle`: hold N WebSocket connections on /ws and check they all survive
//! (SPEC 2: the server pings every 30 s and must keep a connection that
//! answers its pings).

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{future, StreamExt};

use crate::ctx::Ctx;
use crate::fail::Fail;
use crate::net::{self, sleep_until};
use crate::stats::Kind;
use crate::usage;
use crate::ws::{self, Message, Ws};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// WebSocket connections to hold open on /ws (spread over 10 rooms)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = crate::cli::positive)]
    pub connections: usize,
}

/// At the end every connection pings; how long its pong may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(ctx: Rc<Ctx>, n: usize) {
    let st = &ctx.stats;
    let deadline = Instant::now() + ctx.duration;
    // registered up front so the report shows them when zero
    for name in [
        "server_pings_answered",
        "dropped_by_server",
        "survived_with_pong",
        "close_handshakes_ok",
    ] {
        st.counter(name, Kind::Total);
    }
    let rss0 = usage::self_rss_kb();
    let paths = (0..n)
        .map(|i| format!("/ws?room={}-idle-{}", ctx.run_id, i % 10))
        .collect();
    let t0 = Instant::now();
    let conns = ctx.ramp("idle connect", paths, 256).await;
    let opened = conns.iter().flatten().count();
    st.metric("ramp_s", t0.elapsed().as_secs_f64());
    if opened > 0 {
        let rss = usage::self_rss_kb().saturating_sub(rss0) as f64 * 1024.0;
        st.metric("harness_rss_bytes_per_connection", rss / opened as f64);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .filter_map(|(i, ws)| Some(glommio::spawn_local(hold(ctx.clone(), ws?, i, deadline))))
        .collect();
    let mut survived = 0;
    for t in tasks {
        survived += u64::from(t.await);
    }
    st.metric("survival_ratio", survived as f64 / n as f64);
}

/// Answer the server's pings and stay silent until `deadline`, then ping
/// and close. True when the connection survived it all.
async fn hold(ctx: Rc<Ctx>, mut ws: Ws, i: usize, deadline: Instant) -> bool {
    let st = &ctx.stats;
    let at = || format!("connection {i}");
    let opened = Instant::now();
    let alive = loop {
        let read = async { Some(ws.next().await) };
        let end = async {
            sleep_until(deadline).await;
            None
        };
        let Some(item) = future::or(read, end).await else {
            break true;
        };
        let mut fail = match ws::message(item) {
            Ok(Message::Ping(_)) => {
                st.counter("server_pings_answered", Kind::Total).inc();
                continue;
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                st.violation("idle: unexpected message on a silent connection", || {
                    format!("{}: {m}", at())
                });
                continue;
            }
            Ok(_) => continue,
            Err(f) => f,
        };
        // whatever ends an idle connection, the server should not have
        fail.violation = true;
        let held = opened.elapsed().as_secs_f64();
        st.fail("idle", &format!("{} after {held:.1} s", at()), fail);
        break false;
    };
    st.counter("open", Kind::Gauge).dec();
    if !alive {
        st.counter("dropped_by_server", Kind::Total).inc();
        return false;
    }
    let t = Instant::now();
    let payload = (i as u32).to_be_bytes().to_vec();
    let pong = async {
        ws.send(Message::Ping(payload.clone().into())).await?;
        loop {
            if let Message::Pong(p) = ws::message(ws.next().await)? {
                if p[..] == payload[..] {
                    return Ok::<_, Fail>(());
                }
            }
        }
    };
    match net::timeout(PING_TIMEOUT, pong).await {
        Some(Ok(())) => st.hist("final_ping_rtt").since(t),
        Some(Err(mut f)) => {
            f.violation = true;
            st.fail("idle: final ping", &at(), f);
            return false;
        }
        None => {
            st.violation("idle: final ping not answered", || {
                format!("{}: no pong within {PING_TIMEOUT:?}", at())
            });
            return false;
        }
    }
    st.counter("survived_with_pong", Kind::Total).inc();
    if ctx.close_ws("idle", &at(), &mut ws).await {
        st.counter("close_handshakes_ok", Kind::Total).inc();
    }
    true
}
