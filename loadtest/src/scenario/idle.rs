//! `idle`: hold N WebSocket connections on /ws and check they all survive
//! (SPEC 2: the server pings every 30 s and keeps a connection that
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
    let (st, deadline) = (&ctx.stats, Instant::now() + ctx.duration);
    // registered up front so the report shows them when zero
    for name in [
        "dropped_by_server",
        "survived_with_pong",
        "close_handshakes_ok",
    ] {
        st.counter(name, Kind::Total);
    }
    let (rss0, t0) = (usage::self_rss_kb(), Instant::now());
    let paths = (0..n).map(|i| format!("/ws?room={}-idle-{}", ctx.run_id, i % 10));
    let conns = ctx.ramp("idle connect", paths.collect(), 256).await;
    st.metric("ramp_s", t0.elapsed().as_secs_f64());
    let opened = conns.iter().flatten().count().max(1) as f64;
    let rss = usage::self_rss_kb().saturating_sub(rss0) as f64 * 1024.0;
    st.metric("harness_rss_bytes_per_connection", rss / opened);
    let holds = conns
        .into_iter()
        .enumerate()
        .filter_map(|(i, ws)| Some(hold(ctx.clone(), ws?, i, deadline)));
    let tasks: Vec<_> = holds.map(glommio::spawn_local).collect();
    let mut survived = 0;
    for t in tasks {
        survived += u64::from(t.await.is_some());
    }
    st.metric("survival_ratio", survived as f64 / n as f64);
}

/// Answer the server's pings and stay silent until `deadline`, then ping
/// and close. `Some` when the connection survived it all.
async fn hold(ctx: Rc<Ctx>, mut ws: Ws, i: usize, deadline: Instant) -> Option<()> {
    let (st, at, opened) = (&ctx.stats, format!("connection {i}"), Instant::now());
    let ended = loop {
        let read = async { Some(ws.next().await) };
        let end = async {
            sleep_until(deadline).await;
            None
        };
        let Some(item) = future::or(read, end).await else {
            break None;
        };
        match ws::message(item) {
            // tungstenite sends the pong with the next read
            Ok(Message::Ping(_)) => st.counter("server_pings_answered", Kind::Total).inc(),
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                let kind = "idle: unexpected message on a silent connection";
                st.violation(kind, || format!("{at}: {m}"));
            }
            Ok(_) => {}
            Err(f) => break Some(f),
        }
    };
    st.counter("open", Kind::Gauge).dec();
    if let Some(mut f) = ended {
        // whatever ends an idle connection, the server should not have
        f.violation = true;
        let held_s = opened.elapsed().as_secs_f64();
        st.counter("dropped_by_server", Kind::Total).inc();
        return st.fail("idle", &format!("{at} after {held_s:.1} s"), f);
    }
    let (t, payload) = (Instant::now(), (i as u32).to_be_bytes());
    let pong = async {
        ws.send(Message::Ping(payload.to_vec().into())).await?;
        loop {
            if let Message::Pong(p) = ws::message(ws.next().await)? {
                if p[..] == payload {
                    return Ok(());
                }
            }
        }
    };
    let no_pong = || Fail::violation("no pong", format!("within {PING_TIMEOUT:?}"));
    match net::timeout(PING_TIMEOUT, pong)
        .await
        .unwrap_or_else(|| Err(no_pong()))
    {
        Ok(()) => st.hist("final_ping_rtt").since(t),
        Err(mut f) => {
            f.violation = true;
            return st.fail("idle: final ping", &at, f);
        }
    }
    st.counter("survived_with_pong", Kind::Total).inc();
    if ctx.close_ws("idle", &at, &mut ws).await {
        st.counter("close_handshakes_ok", Kind::Total).inc();
    }
    Some(())
}
