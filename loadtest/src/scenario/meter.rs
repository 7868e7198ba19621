//! `meter`: chant-meter fan-out on /ws?room=R.
//!
//! Probe-room design: the single probe sender sends 1, 2, 3, ... so the 5 s
//! window always holds a consecutive run j..=k and a broadcast
//! {"average":a,"count":n} names its newest value: k = a + (n-1)/2 (see
//! `proto::probe_newest`). Each listener records recv_time - send_time(m) for
//! every value m first reflected by that broadcast.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::sync::Semaphore;
use glommio::timer::Timer;
use rand::Rng;

use crate::cli::{non_negative, percent};
use crate::common::{sleep_until, Ctx, Stop};
use crate::proto;
use crate::stats::{Counter, Hist, Kind};
use crate::ws::{close_code, Message, WsConn, WsError};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Load rooms (/ws?room=<prefix>-m<i>)
    #[arg(long, value_name = "R", default_value_t = 4)]
    pub rooms: usize,
    /// Clients per room (load and probe rooms)
    #[arg(long, value_name = "C", default_value_t = 100)]
    pub clients: usize,
    /// Senders per load room; the other C-S clients only listen [default: all C]
    #[arg(long, value_name = "S")]
    pub senders: Option<usize>,
    /// Values per second per sender (random phase per sender)
    #[arg(long, value_name = "H", default_value_t = 5.0, value_parser = non_negative)]
    pub hz: f64,
    /// Probe rooms: one sender sending 1,2,3,... and C-1 listeners measuring send->receive
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub probe_rooms: usize,
    /// Values per second of each probe sender; keep <= the server's per-client cap (50/s),
    /// else ignored values break the identification
    #[arg(long, value_name = "H", default_value_t = 5.0, value_parser = non_negative)]
    pub probe_hz: f64,
    /// Percent of load-room sends replaced by messages the server must ignore (value 0,
    /// non-number, non-JSON)
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = percent)]
    pub junk_pct: f64,
    /// Violation if a room delivers more than N frames/s per client on average (0 = no check)
    #[arg(long, value_name = "N", default_value_t = 50.0, value_parser = non_negative)]
    pub max_broadcast_hz: f64,
    /// WebSocket handshakes in flight during ramp-up
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Load-room clients read their socket at most every MS ms, several frames per read, to
    /// keep the harness cheap (0 = as soon as data arrives); probe rooms always read at once
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub load_read_ms: u64,
    /// Prefix of room names [default: a random lt-xxxxxxxx, distinct per run]
    #[arg(long, value_name = "STR")]
    pub room_prefix: Option<String>,
}

impl Args {
    fn senders(&self) -> usize {
        self.senders.unwrap_or(self.clients)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if self.senders() > self.clients {
            return Err("--senders cannot exceed --clients".into());
        }
        if self.rooms + self.probe_rooms == 0 {
            return Err("need at least one room (--rooms or --probe-rooms)".into());
        }
        if self.rooms > 0 && self.senders() > 0 && self.hz <= 0.0 {
            return Err("--hz must be > 0".into());
        }
        if self.probe_rooms > 0 && self.probe_hz <= 0.0 {
            return Err("--probe-hz must be > 0".into());
        }
        if self.probe_hz > 50.0 {
            return Err("--probe-hz above 50: the server ignores a client's values beyond 50/s, so probe values could not be identified".into());
        }
        if self.hz > 1000.0 {
            return Err("--hz above 1000 per sender is not a chant".into());
        }
        Ok(())
    }
}

struct Room {
    name: String,
    probe: bool,
    clients: usize,
    senders: usize,
    hz: f64,
    /// Frames received by all clients of the room.
    frames: Cell<u64>,
    /// Values (not junk) sent into the room.
    values: Cell<u64>,
    /// Probe: send time of value v at index v-1.
    sent: RefCell<Vec<Instant>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Sender,
    Listener,
    Probe,
}

struct Shared {
    ctx: Rc<Ctx>,
    cfg: Rc<Args>,
    open: Rc<Counter>,
    sent: Rc<Counter>,
    recv: Rc<Counter>,
    junk: Rc<Counter>,
    probe_values: Rc<Counter>,
    conflated: Rc<Counter>,
    closed_ok: Rc<Counter>,
    h_fanout: Rc<Hist>,
    h_echo: Rc<Hist>,
    send_until: Cell<Instant>,
    stop: Rc<Stop>,
}

const JUNK: [&str; 4] = [
    "{\"value\":0}",
    "{\"value\":\"loud\"}",
    "not json at all",
    "{\"volume\":5}",
];

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let st = ctx.stats.clone();
    let prefix = cfg
        .room_prefix
        .clone()
        .unwrap_or_else(|| ctx.run_id.clone());
    let mut rooms = Vec::new();
    for i in 0..cfg.rooms {
        rooms.push(Rc::new(Room {
            name: format!("{prefix}-m{i}"),
            probe: false,
            clients: cfg.clients,
            senders: cfg.senders(),
            hz: cfg.hz,
            frames: Cell::new(0),
            values: Cell::new(0),
            sent: RefCell::new(Vec::new()),
        }));
    }
    for i in 0..cfg.probe_rooms {
        rooms.push(Rc::new(Room {
            name: format!("{prefix}-p{i}"),
            probe: true,
            clients: cfg.clients,
            senders: 1,
            hz: cfg.probe_hz,
            frames: Cell::new(0),
            values: Cell::new(0),
            sent: RefCell::new(Vec::new()),
        }));
    }
    let total: usize = rooms.iter().map(|r| r.clients).sum();
    let h_connect = st.hist("connect");
    let sh = Rc::new(Shared {
        open: st.counter("open", Kind::Gauge),
        sent: st.counter("sent", Kind::Rate),
        recv: st.counter("recv", Kind::Rate),
        junk: st.counter("junk_sent", Kind::Total),
        probe_values: st.counter("probe_values", Kind::Total),
        conflated: st.counter("probe_values_conflated", Kind::Total),
        closed_ok: st.counter("close_handshakes_ok", Kind::Total),
        h_fanout: st.hist("probe_fanout"),
        h_echo: st.hist("probe_sender_echo"),
        send_until: Cell::new(Instant::now() + Duration::from_secs(3600)),
        stop: Stop::new(),
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });

    // Ramp-up: open every connection (bounded concurrency), not measured.
    let sem = Rc::new(Semaphore::new(cfg.connect_concurrency.max(1) as u64));
    let mut pending = Vec::with_capacity(total);
    for room in &rooms {
        for ci in 0..room.clients {
            let role = if room.probe {
                if ci == 0 {
                    Role::Probe
                } else {
                    Role::Listener
                }
            } else if ci < room.senders {
                Role::Sender
            } else {
                Role::Listener
            };
            let (sem, ctx, room, h, open) = (
                sem.clone(),
                ctx.clone(),
                room.clone(),
                h_connect.clone(),
                sh.open.clone(),
            );
            pending.push(glommio::spawn_local(async move {
                let _p = sem.acquire_permit(1).await.ok()?;
                let t = Instant::now();
                let path = format!("/ws?room={}", room.name);
                let ws = ctx.ws("meter connect", &path, None, 2048).await?;
                h.since(t);
                open.inc();
                Some((room, role, ws))
            }));
        }
    }
    let mut conns = Vec::with_capacity(total);
    for p in pending {
        if let Some(c) = p.await {
            conns.push(c);
        }
    }
    if conns.len() < total {
        st.note(format!(
            "only {} of {} connections opened",
            conns.len(),
            total
        ));
    }

    // Measured phase.
    st.start_window();
    let start = Instant::now();
    let send_until = start + ctx.duration;
    sh.send_until.set(send_until);
    let mut rng = ctx.rng();
    let mut tasks = Vec::with_capacity(conns.len());
    for (room, role, ws) in conns {
        let first = match role {
            Role::Sender => start + Duration::from_secs_f64(rng.gen_range(0.0..1.0) / room.hz),
            Role::Probe => start,
            Role::Listener => send_until,
        };
        tasks.push(glommio::spawn_local(conn_task(
            sh.clone(),
            room,
            ws,
            role,
            first,
        )));
    }
    sleep_until(send_until).await;
    // grace period for the last broadcasts, then everybody closes
    crate::net::sleep(Duration::from_millis(600)).await;
    sh.stop.fire();
    st.end_window();
    let window = st.window_s();
    let hard = Instant::now() + ctx.timeout + Duration::from_secs(2);
    for t in tasks {
        if crate::net::timeout(hard.saturating_duration_since(Instant::now()), t)
            .await
            .is_none()
        {
            st.error("meter: connection task did not finish closing", String::new);
        }
    }

    // Derived metrics.
    let mut load_frames = 0u64;
    let mut naive = 0u64;
    let mut max_rate = 0f64;
    for r in rooms.iter().filter(|r| !r.probe) {
        load_frames += r.frames.get();
        naive += r.values.get() * r.clients as u64;
        let per_client = r.frames.get() as f64 / r.clients as f64 / window.max(1e-9);
        if per_client > max_rate {
            max_rate = per_client;
        }
        if cfg.max_broadcast_hz > 0.0 && per_client > cfg.max_broadcast_hz * 1.1 + 1.0 {
            st.violation(
                "meter: fan-out above the per-client broadcast bound",
                || {
                    format!(
                    "room {}: {per_client:.1} frames/s per client > {} (SPEC 2.1 bounded fan-out)",
                    r.name, cfg.max_broadcast_hz
                )
                },
            );
        }
    }
    if cfg.rooms > 0 {
        let values: u64 = rooms
            .iter()
            .filter(|r| !r.probe)
            .map(|r| r.values.get())
            .sum();
        st.metric("load_values_per_s", values as f64 / window.max(1e-9));
        st.metric(
            "delivered_frames_per_s",
            sh.recv.get() as f64 / window.max(1e-9),
        );
        if naive > 0 {
            st.metric("delivery_ratio", load_frames as f64 / naive as f64);
            st.metric(
                "frames_per_value",
                load_frames as f64 / values.max(1) as f64,
            );
        }
        st.metric("max_frames_per_client_per_s", max_rate);
    }
    if cfg.probe_rooms > 0 {
        let pv = sh.probe_values.get();
        st.metric(
            "probe_conflated_fraction",
            if pv == 0 {
                0.0
            } else {
                sh.conflated.get() as f64 / (pv as f64 * (cfg.clients as f64))
            },
        );
        if sh.h_fanout.count() == 0 && cfg.clients > 1 {
            st.violation("meter probe: no probe value was ever reflected", || {
                "probe listeners received no usable broadcast".into()
            });
        }
    }
}

enum Wake {
    Read(Result<usize, WsError>),
    Tick,
    Stop,
}

async fn conn_task(sh: Rc<Shared>, room: Rc<Room>, mut ws: WsConn, role: Role, first: Instant) {
    let ctx = &sh.ctx;
    let st = &ctx.stats;
    let period = Duration::from_secs_f64(1.0 / room.hz.max(1e-9));
    let mut next = first;
    let sending = role != Role::Listener;
    let mut timer = if sending {
        Some(Timer::new(next.saturating_duration_since(Instant::now())))
    } else {
        None
    };
    let mut rng = ctx.rng();
    let mut last_seen = 0u64;
    let max_count = ((room.senders as f64) * room.hz * 5.2).ceil() as u64 + room.senders as u64 + 1;
    let win_lo = ((5.0 * room.hz).floor() as u64).saturating_sub(2).max(1);
    let win_hi = (5.1 * room.hz).ceil() as u64 + 2;
    let lazy = !room.probe && sh.cfg.load_read_ms > 0;
    let lazy_d = Duration::from_millis(sh.cfg.load_read_ms);
    let mut next_read = Instant::now() + lazy_d;
    let mut server_closed = false;
    let role_name = match role {
        Role::Sender => "sender",
        Role::Listener => "listener",
        Role::Probe => "probe sender",
    };
    let t_start = Instant::now();
    let where_ = || {
        format!(
            "room {} ({role_name}) after {:.2} s",
            room.name,
            t_start.elapsed().as_secs_f64()
        )
    };
    let mut stopped = sh.stop.listen();
    'outer: loop {
        // handle everything already buffered
        loop {
            match ws.next_message() {
                Ok(Some(Message::Text(text))) => {
                    sh.recv.inc();
                    room.frames.set(room.frames.get() + 1);
                    let a = match proto::parse_avg(text.as_bytes()) {
                        Ok(a) => a,
                        Err(e) => {
                            st.violation("meter: broadcast shape", || e);
                            continue;
                        }
                    };
                    if room.probe {
                        let now = Instant::now();
                        let sent = room.sent.borrow();
                        match proto::probe_newest(&a) {
                            Err(e) => st.violation(
                                "meter probe: average/count is not a window of consecutive values",
                                || format!("room {}: {e}", room.name),
                            ),
                            Ok(k) if k as usize > sent.len() => st.violation(
                                "meter probe: broadcast reflects a value not sent yet",
                                || {
                                    format!(
                                        "room {}: newest {k}, only {} sent",
                                        room.name,
                                        sent.len()
                                    )
                                },
                            ),
                            Ok(k) if k < last_seen => st.violation(
                                "meter probe: broadcast older than one already received",
                                || format!("room {}: newest {k} after {last_seen}", room.name),
                            ),
                            Ok(k) => {
                                let h = if role == Role::Probe {
                                    &sh.h_echo
                                } else {
                                    &sh.h_fanout
                                };
                                for m in last_seen + 1..=k {
                                    h.record(now - sent[m as usize - 1]);
                                }
                                if k > last_seen + 1 {
                                    sh.conflated.add(k - last_seen - 1);
                                }
                                last_seen = last_seen.max(k);
                                let warm = sent
                                    .first()
                                    .is_some_and(|t0| now.duration_since(*t0).as_secs_f64() > 5.6);
                                if warm
                                    && now < sh.send_until.get()
                                    && !(win_lo..=win_hi).contains(&a.count)
                                {
                                    st.violation(
                                        "meter probe: 5 s window holds the wrong number of samples",
                                        || {
                                            format!(
                                                "room {}: count {} at {} values/s, want {win_lo}..={win_hi}",
                                                room.name, a.count, room.hz
                                            )
                                        },
                                    );
                                }
                            }
                        }
                    } else {
                        if !(1.0..=100.0).contains(&a.average) {
                            st.violation("meter: average outside the range of values sent", || {
                                format!(
                                    "room {}: average {} (values are 1..100)",
                                    room.name, a.average
                                )
                            });
                        }
                        if a.count > max_count {
                            st.violation("meter: count larger than the 5 s window allows", || {
                                format!(
                                    "room {}: count {} > {max_count} ({} senders at {}/s)",
                                    room.name, a.count, room.senders, room.hz
                                )
                            });
                        }
                    }
                }
                Ok(Some(Message::Binary(_))) => {
                    st.violation("meter: unexpected binary message", || room.name.clone())
                }
                // tungstenite answers pings (sent with the next fill)
                Ok(Some(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Ok(Some(Message::Close(f))) => {
                    st.error("meter: server closed a chanting connection", || {
                        format!("room {}: close code {:?}", room.name, close_code(&f))
                    });
                    let _ = ws.flush().await;
                    server_closed = true;
                    break 'outer;
                }
                Ok(None) => break,
                Err(e) => {
                    ctx.ws_failed("meter read", &where_(), &e);
                    server_closed = true;
                    break 'outer;
                }
            }
        }
        if sh.stop.fired() {
            break;
        }
        let can_send = timer.is_some() && Instant::now() < sh.send_until.get();
        let (read_res, tick, stop) = if lazy {
            // Load-room client: read at most every --load-read-ms (several
            // frames per recv) and send on its ticks.
            let wake_at = if can_send {
                next.min(next_read)
            } else {
                next_read
            };
            let stopped = future::or(
                async {
                    sleep_until(wake_at).await;
                    false
                },
                async {
                    (&mut stopped).await;
                    true
                },
            )
            .await;
            if stopped {
                (None, false, true)
            } else {
                let now = Instant::now();
                let mut rr = None;
                if now >= next_read {
                    next_read = now + lazy_d;
                    rr = ws.fill_now().await.transpose();
                    if let Some(Ok(n)) = rr {
                        if n >= 1024 {
                            // more may be waiting: come back at once
                            next_read = now;
                        }
                    }
                }
                (rr, can_send && now >= next, false)
            }
        } else {
            let wake = {
                let read = async { Wake::Read(ws.fill().await) };
                let stop = async {
                    (&mut stopped).await;
                    Wake::Stop
                };
                if can_send {
                    let t = timer.as_mut().expect("sender has a timer");
                    let tick = async {
                        t.await;
                        Wake::Tick
                    };
                    future::or(read, future::or(tick, stop)).await
                } else {
                    future::or(read, stop).await
                }
            };
            match wake {
                Wake::Read(r) => (Some(r), false, false),
                Wake::Tick => (None, true, false),
                Wake::Stop => (None, false, true),
            }
        };
        if stop {
            break;
        }
        match read_res {
            Some(Ok(0)) => {
                ctx.ws_failed("meter read", &where_(), &WsError::Eof);
                server_closed = true;
                break;
            }
            Some(Err(e)) => {
                ctx.ws_failed("meter read", &where_(), &e);
                server_closed = true;
                break;
            }
            _ => {}
        }
        if tick {
            let now = Instant::now();
            if now < sh.send_until.get() {
                let msg = match role {
                    Role::Probe => {
                        let mut sent = room.sent.borrow_mut();
                        sent.push(Instant::now());
                        sh.probe_values.inc();
                        room.values.set(room.values.get() + 1);
                        format!("{{\"value\":{}}}", sent.len())
                    }
                    _ => {
                        if sh.cfg.junk_pct > 0.0 && rng.gen_range(0.0..100.0) < sh.cfg.junk_pct {
                            sh.junk.inc();
                            JUNK[rng.gen_range(0..JUNK.len())].to_string()
                        } else {
                            room.values.set(room.values.get() + 1);
                            let v: u32 = rng.gen_range(2..=200);
                            // 1.0 .. 100.0 in steps of 0.5
                            if v.is_multiple_of(2) {
                                format!("{{\"value\":{}}}", v / 2)
                            } else {
                                format!("{{\"value\":{}.5}}", v / 2)
                            }
                        }
                    }
                };
                if let Err(e) = ws.send_text(msg).await {
                    ctx.ws_failed("meter send", &where_(), &e);
                    server_closed = true;
                    break;
                }
                sh.sent.inc();
                next += period;
                let now = Instant::now();
                while next <= now {
                    next += period;
                }
                if let Some(t) = timer.as_mut() {
                    t.reset(next - now);
                }
            }
        }
    }
    sh.open.dec();
    if server_closed {
        return;
    }
    if ctx.close_ws("meter", &where_(), &mut ws).await {
        sh.closed_ok.inc();
    }
}
