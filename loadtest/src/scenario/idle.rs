//! `idle`: hold N WebSocket connections on /ws and check they all survive.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::sync::Semaphore;

use crate::cli::non_negative;
use crate::common::{sleep_until, Ctx, Stop};
use crate::net;
use crate::stats::Kind;
use crate::usage;
use crate::ws::{close_code, Message, WsError};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// WebSocket connections to hold open on /ws
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub connections: usize,
    /// Rooms the connections are spread over
    #[arg(long, value_name = "R", default_value_t = 10)]
    pub rooms: usize,
    /// Bind client sockets to 127.0.0.2, .3, ... with N connections each (0 = let the kernel
    /// choose)
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub conns_per_source: usize,
    /// Handshakes in flight during ramp-up
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub connect_concurrency: usize,
    /// At the end every connection pings; how long to wait for the pong
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = non_negative)]
    pub ping_timeout_s: f64,
}

impl Args {
    pub fn check(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    ConnectFailed,
    Dropped,
    NoPong,
    Survived,
}

enum Wake {
    Read(Result<usize, WsError>),
    Stop,
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let rooms = cfg.rooms.max(1);
    let ping_timeout = Duration::from_secs_f64(cfg.ping_timeout_s.max(0.001));
    let st = ctx.stats.clone();
    let open = st.counter("open", Kind::Gauge);
    let opened = st.counter("opened", Kind::Rate);
    let server_pings = st.counter("server_pings_answered", Kind::Total);
    let dropped = st.counter("dropped_by_server", Kind::Total);
    let survived = st.counter("survived_with_pong", Kind::Total);
    let close_ok = st.counter("close_handshakes_ok", Kind::Total);
    let h_connect = st.hist("connect");
    let h_ping = st.hist("final_ping_rtt");
    let stop = Stop::new();
    let sem = Rc::new(Semaphore::new(cfg.connect_concurrency.max(1) as u64));
    let bind = cfg.conns_per_source > 0 && net::is_v4_loopback(&ctx.target.addr);
    let sources = if bind {
        cfg.connections.div_ceil(cfg.conns_per_source)
    } else {
        0
    };
    if bind {
        st.note(format!(
            "client sockets bound to {} .. {} ({} connections each)",
            net::source_addr(0),
            net::source_addr(sources - 1),
            cfg.conns_per_source
        ));
    }
    let rss0 = usage::self_rss_kb();
    let start = Instant::now();
    let deadline = start + ctx.duration;
    let mut tasks = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let (ctx, cfg, sem, stop) = (ctx.clone(), cfg.clone(), sem.clone(), stop.clone());
        let (open, opened, server_pings, dropped, survived, close_ok, h_connect, h_ping) = (
            open.clone(),
            opened.clone(),
            server_pings.clone(),
            dropped.clone(),
            survived.clone(),
            close_ok.clone(),
            h_connect.clone(),
            h_ping.clone(),
        );
        tasks.push(glommio::spawn_local(async move {
            let st = &ctx.stats;
            let src = if bind {
                Some(net::source_addr(i / cfg.conns_per_source))
            } else {
                None
            };
            let path = format!("/ws?room={}-idle-{}", ctx.run_id, i % rooms);
            let mut ws = {
                let Ok(_permit) = sem.acquire_permit(1).await else {
                    return Outcome::ConnectFailed;
                };
                if stop.fired() {
                    return Outcome::ConnectFailed;
                }
                let t = Instant::now();
                match ctx.ws("idle connect", &path, src, 128).await {
                    Some(ws) => {
                        h_connect.since(t);
                        ws
                    }
                    None => return Outcome::ConnectFailed,
                }
            };
            open.inc();
            opened.inc();
            let t_open = Instant::now();
            let at = |t: Instant| format!("{path} after {:.2} s open", t.elapsed().as_secs_f64());
            // hold: answer pings, stay silent, until the stop signal
            let mut alive = true;
            let mut stopped = stop.listen();
            'hold: loop {
                loop {
                    match ws.next_message() {
                        // tungstenite queued the pong; the next fill sends it
                        Ok(Some(Message::Ping(_))) => server_pings.inc(),
                        Ok(Some(Message::Close(f))) => {
                            st.violation("idle: server closed an idle connection", || {
                                format!("{}: close code {:?}", at(t_open), close_code(&f))
                            });
                            let _ = ws.flush().await;
                            alive = false;
                            break 'hold;
                        }
                        Ok(Some(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            st.violation("idle: unexpected message on a silent connection", || {
                                format!("{path}: {m}")
                            });
                        }
                        Ok(Some(Message::Pong(_) | Message::Frame(_))) => {}
                        Ok(None) => break,
                        Err(e) => {
                            ctx.ws_failed("idle hold", &at(t_open), &e);
                            alive = false;
                            break 'hold;
                        }
                    }
                }
                if stop.fired() {
                    break;
                }
                let w = future::or(async { Wake::Read(ws.fill().await) }, async {
                    (&mut stopped).await;
                    Wake::Stop
                })
                .await;
                match w {
                    Wake::Read(Ok(0)) => {
                        st.violation(
                            "idle: server dropped an idle connection without a close frame",
                            || at(t_open),
                        );
                        alive = false;
                        break;
                    }
                    Wake::Read(Ok(_)) => {}
                    Wake::Read(Err(e)) => {
                        st.violation("idle: idle connection failed", || {
                            format!("{}: {e}", at(t_open))
                        });
                        alive = false;
                        break;
                    }
                    Wake::Stop => break,
                }
            }
            open.dec();
            if !alive {
                dropped.inc();
                return Outcome::Dropped;
            }
            // final check: ping -> pong
            let t = Instant::now();
            let payload = (i as u32).to_be_bytes().to_vec();
            if let Err(e) = ws.send(Message::Ping(payload.clone())).await {
                ctx.ws_failed("idle final ping", &path, &e);
                return Outcome::NoPong;
            }
            let got = net::timeout(ping_timeout, async {
                loop {
                    match ws.recv().await {
                        Ok(Message::Pong(p)) if p == payload => return Ok(()),
                        Ok(Message::Close(f)) => {
                            return Err(format!("closed with {:?} instead of pong", close_code(&f)))
                        }
                        Ok(_) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            })
            .await;
            match got {
                Some(Ok(())) => {
                    h_ping.since(t);
                    survived.inc();
                }
                Some(Err(e)) => {
                    st.violation("idle: final ping not answered", || e);
                    return Outcome::NoPong;
                }
                None => {
                    st.violation("idle: final ping not answered", || {
                        format!("no pong within {:?}", ping_timeout)
                    });
                    return Outcome::NoPong;
                }
            }
            if ctx.close_ws("idle", &path, &mut ws).await {
                close_ok.inc();
            }
            Outcome::Survived
        }));
    }
    // wait for the ramp to finish (or the deadline), report it, then hold
    loop {
        let done = opened.get() + tasks_failed(&st);
        if done >= cfg.connections as u64 || Instant::now() >= deadline {
            break;
        }
        net::sleep(Duration::from_millis(20)).await;
    }
    let ramp = start.elapsed().as_secs_f64();
    let n_open = open.get();
    let rss1 = usage::self_rss_kb();
    st.metric("ramp_s", ramp);
    st.metric("connections_open_after_ramp", n_open as f64);
    if n_open > 0 {
        st.metric(
            "harness_rss_bytes_per_connection",
            (rss1.saturating_sub(rss0) as f64 * 1024.0) / n_open as f64,
        );
    }
    sleep_until(deadline).await;
    let at_end = open.get();
    stop.fire();
    let mut counts = [0u64; 4];
    let hard = Instant::now() + ping_timeout + ctx.timeout + Duration::from_secs(5);
    for t in tasks {
        match net::timeout(hard.saturating_duration_since(Instant::now()), t).await {
            Some(o) => counts[o as usize] += 1,
            None => st.error("idle: connection task did not finish", String::new),
        }
    }
    st.metric("open_at_end", at_end as f64);
    st.metric(
        "connect_failed",
        counts[Outcome::ConnectFailed as usize] as f64,
    );
    st.metric("dropped", counts[Outcome::Dropped as usize] as f64);
    st.metric("no_pong", counts[Outcome::NoPong as usize] as f64);
    st.metric("survived", counts[Outcome::Survived as usize] as f64);
    st.metric(
        "survival_ratio",
        counts[Outcome::Survived as usize] as f64 / cfg.connections as f64,
    );
}

/// Connections that gave up during the ramp are visible as errors/violations.
fn tasks_failed(st: &crate::stats::Stats) -> u64 {
    st.errors.total() + st.violations.total()
}
