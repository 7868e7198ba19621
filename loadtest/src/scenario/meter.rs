//! `meter`: chant-meter fan-out on /ws?room=R (SPEC 2.1).
//!
//! Probe rooms measure latency: their single sender sends 1, 2, 3, ... so the
//! 5 s window always holds a consecutive run j..=k and a broadcast
//! {"average":a,"count":n} names its newest value, k = a + (n-1)/2
//! (`proto::probe_newest`). Each listener records recv_time - send_time(m)
//! for every value m a broadcast reflects first.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use futures_lite::{future, StreamExt};
use rand::Rng;

use crate::cli::{non_negative, percent};
use crate::ctx::Ctx;
use crate::fail::Fail;
use crate::net::sleep_until;
use crate::proto;
use crate::stats::{Counter, Hist, Kind};
use crate::ws::{self, Message, Ws};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Load rooms (/ws?room=<run id>-m<i>)
    #[arg(long, value_name = "R", default_value_t = 4)]
    pub rooms: usize,
    /// Clients per room (load and probe rooms)
    #[arg(long, value_name = "C", default_value_t = 100, value_parser = crate::cli::positive)]
    pub clients: usize,
    /// Senders per load room; the other C-S clients only listen [default: all C]
    #[arg(long, value_name = "S")]
    pub senders: Option<usize>,
    /// Values per second per load-room sender (random phase per sender)
    #[arg(long, value_name = "H", default_value_t = 5.0, value_parser = non_negative)]
    pub hz: f64,
    /// Probe rooms: one sender sending 1,2,3,... at 5/s and C-1 listeners measuring send->receive
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub probe_rooms: usize,
    /// Percent of load-room sends replaced by messages the server must ignore (value 0,
    /// non-number, non-JSON)
    #[arg(long, value_name = "PCT", default_value_t = 0.0, value_parser = percent)]
    pub junk_pct: f64,
    /// Violation if a room delivers more than N frames/s per client on average (0 = no check)
    #[arg(long, value_name = "N", default_value_t = 50.0, value_parser = non_negative)]
    pub max_broadcast_hz: f64,
    /// Load-room clients read their socket at most every MS ms, several frames per read, to
    /// keep the harness cheap (0 = as soon as data arrives); probe rooms always read at once
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub load_read_ms: u64,
}

impl Args {
    fn senders(&self) -> usize {
        self.senders.unwrap_or(self.clients)
    }

    pub fn check(&self) -> Result<(), String> {
        match (
            self.senders() <= self.clients,
            self.rooms + self.probe_rooms > 0,
        ) {
            (true, true) => Ok(()),
            (false, _) => Err("--senders cannot exceed --clients".into()),
            (_, false) => Err("need a room (--rooms or --probe-rooms)".into()),
        }
    }
}

/// Values per second of a probe sender: well under the server's per-client
/// cap of 50/s, which would drop values and break the identification.
const PROBE_HZ: f64 = 5.0;

/// After the last send, how long the last broadcasts may take to arrive.
const GRACE: Duration = Duration::from_millis(600);

/// Messages the server must ignore.
const JUNK: [&str; 4] = [
    r#"{"value":0}"#,
    r#"{"value":"x"}"#,
    "not json",
    r#"{"v":5}"#,
];

#[derive(Default)]
struct Room {
    name: String,
    probe: bool,
    senders: usize,
    hz: f64,
    /// Frames received by all clients of the room.
    frames: Cell<u64>,
    /// Values (not junk) sent into the room.
    values: Cell<u64>,
    /// Probe rooms: when value v was sent, at index v-1.
    sent: RefCell<Vec<Instant>>,
}

struct Shared {
    ctx: Rc<Ctx>,
    cfg: Rc<Args>,
    sent: Rc<Counter>,
    recv: Rc<Counter>,
    /// Send->receive of probe values to the listeners, and to their sender.
    h_fanout: Rc<Hist>,
    h_echo: Rc<Hist>,
    /// Probe values a broadcast skipped over, this round.
    conflated: Cell<u64>,
    send_until: Instant,
    /// Everybody closes.
    stop_at: Instant,
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let st = &ctx.stats;
    let room = |i: usize, probe: bool| {
        let name = format!("{}-{}{i}", ctx.run_id, if probe { "p" } else { "m" });
        let (senders, hz) = if probe {
            (1, PROBE_HZ)
        } else {
            (cfg.senders(), cfg.hz)
        };
        Rc::new(Room {
            name,
            probe,
            senders,
            hz,
            ..Room::default()
        })
    };
    let load = (0..cfg.rooms).map(|i| room(i, false));
    let probe = (0..cfg.probe_rooms).map(|i| room(i, true));
    let rooms: Vec<Rc<Room>> = load.chain(probe).collect();
    // (room, sends): the first S clients of a room send
    let mut members = Vec::new();
    for r in &rooms {
        members.extend((0..cfg.clients).map(|i| (r, i < r.senders)));
    }
    // ramp-up, not measured
    let path = |(r, _): &(&Rc<Room>, _)| format!("/ws?room={}", r.name);
    let paths = members.iter().map(path).collect();
    let conns = ctx.ramp("meter connect", paths, 2048).await;
    st.start_window();
    let start = Instant::now();
    let sh = Rc::new(Shared {
        sent: st.counter("sent", Kind::Rate),
        recv: st.counter("recv", Kind::Rate),
        h_fanout: st.hist("probe_fanout"),
        h_echo: st.hist("probe_sender_echo"),
        conflated: Cell::new(0),
        send_until: start + ctx.duration,
        stop_at: start + ctx.duration + GRACE,
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });
    st.counter("junk_sent", Kind::Total);
    st.counter("close_handshakes_ok", Kind::Total);
    let mut rng = ctx.rng();
    let mut tasks = Vec::with_capacity(conns.len());
    for ((room, sends), ws) in members.into_iter().zip(conns) {
        // senders start at a random phase of their period, probes at once
        let phase = Duration::from_secs_f64(rng.gen::<f64>() / room.hz);
        let first_send = match (sends, room.probe) {
            (false, _) => sh.stop_at,
            (true, false) => start + phase,
            (true, true) => start,
        };
        let client = client(sh.clone(), room.clone(), sends, ws, first_send);
        tasks.push(glommio::spawn_local(client));
    }
    for t in tasks {
        t.await;
    }
    st.end_window();
    report(&sh, &rooms, (sh.stop_at - start).as_secs_f64());
}

/// The fan-out bound per room and the derived metrics of this round.
fn report(sh: &Shared, rooms: &[Rc<Room>], window_s: f64) {
    let (st, cfg, clients) = (&sh.ctx.stats, &sh.cfg, sh.cfg.clients as f64);
    let (mut load_frames, mut naive, mut max_rate) = (0, 0.0, 0f64);
    for r in rooms.iter().filter(|r| !r.probe) {
        load_frames += r.frames.get();
        naive += r.values.get() as f64 * clients;
        let per_client = r.frames.get() as f64 / clients / window_s;
        max_rate = max_rate.max(per_client);
        if cfg.max_broadcast_hz > 0.0 && per_client > cfg.max_broadcast_hz * 1.1 + 1.0 {
            let detail = || format!("room {}: {per_client:.1} frames/s per client", r.name);
            st.violation(
                "meter: fan-out above the per-client bound (SPEC 2.1)",
                detail,
            );
        }
    }
    let frames: u64 = rooms.iter().map(|r| r.frames.get()).sum();
    st.metric("delivered_frames_per_s", frames as f64 / window_s);
    if cfg.rooms > 0 {
        st.metric("delivery_ratio", load_frames as f64 / naive.max(1.0));
        st.metric("max_frames_per_client_per_s", max_rate);
    }
    let probes = rooms.iter().filter(|r| r.probe);
    let probe_values: u64 = probes.map(|r| r.values.get()).sum();
    if probe_values > 0 {
        let fraction = sh.conflated.get() as f64 / (probe_values as f64 * clients);
        st.metric("probe_conflated_fraction", fraction);
        if sh.h_fanout.get().is_empty() && cfg.clients > 1 {
            let detail = || "probe listeners received no usable broadcast".into();
            st.violation("meter probe: no probe value was ever reflected", detail);
        }
    }
}

/// One client of `room`: reads broadcasts and, if it `sends`, sends from
/// `next_send` on at the room's rate until `send_until`; closes at
/// `stop_at`. A load-room client reads every --load-read-ms whatever
/// arrived meanwhile; a probe-room client reads each frame at once.
async fn client(
    sh: Rc<Shared>,
    room: Rc<Room>,
    sends: bool,
    ws: Option<Ws>,
    mut next_send: Instant,
) {
    let Some(mut ws) = ws else { return };
    let role = if sends { "sender" } else { "listener" };
    let at = format!("room {} ({role})", room.name);
    let period = Duration::from_secs_f64(1.0 / room.hz.max(1e-9));
    let lazy = Duration::from_millis(sh.cfg.load_read_ms);
    let lazy = (!room.probe && !lazy.is_zero()).then_some(lazy);
    let (mut next_read, mut last_seen, mut rng) = (Instant::now(), 0, sh.ctx.rng());
    ws.get_mut().lazy = lazy.is_some();
    let st = &sh.ctx.stats;
    let mut on_item = |item| {
        match ws::message(item)? {
            Message::Text(t) => on_broadcast(&sh, &room, sends, &mut last_seen, t.as_bytes()),
            Message::Binary(_) => st.violation("meter: binary message", || at.clone()),
            _ => {}
        }
        Ok::<_, Fail>(())
    };
    let ended: Result<(), Fail> = async {
        let mut now = Instant::now();
        while now < sh.stop_at {
            // a sender past send_until only reads on, until stop_at
            let wake = if next_send < sh.send_until {
                next_send
            } else {
                sh.stop_at
            };
            if let Some(every) = lazy {
                if now >= next_read {
                    next_read = now + every;
                    while let Some(item) = future::poll_once(ws.next()).await {
                        on_item(item)?;
                    }
                }
                sleep_until(wake.min(next_read)).await;
            } else {
                let read = async { Some(ws.next().await) };
                let tick = async {
                    sleep_until(wake).await;
                    None
                };
                if let Some(item) = future::or(read, tick).await {
                    on_item(item)?;
                }
            }
            now = Instant::now();
            if now >= next_send && next_send < sh.send_until {
                let value = next_value(&sh, &room, &mut rng);
                ws.send(Message::text(value)).await?;
                sh.sent.inc();
                while next_send <= now {
                    next_send += period;
                }
            }
        }
        Ok(())
    }
    .await;
    st.counter("open", Kind::Gauge).dec();
    ws.get_mut().lazy = false;
    match ended {
        Err(f) => _ = st.fail("meter", &at, f),
        Ok(()) if sh.ctx.close_ws("meter", &at, &mut ws).await => {
            st.counter("close_handshakes_ok", Kind::Total).inc()
        }
        Ok(()) => {}
    }
}

/// What a sender of `room` sends next.
fn next_value(sh: &Shared, room: &Room, rng: &mut impl Rng) -> String {
    if room.probe {
        let mut sent = room.sent.borrow_mut();
        sent.push(Instant::now());
        room.values.set(room.values.get() + 1);
        return format!("{{\"value\":{}}}", sent.len());
    }
    if sh.cfg.junk_pct > 0.0 && rng.gen_range(0.0..100.0) < sh.cfg.junk_pct {
        sh.ctx.stats.counter("junk_sent", Kind::Total).inc();
        return JUNK[rng.gen_range(0..JUNK.len())].to_string();
    }
    room.values.set(room.values.get() + 1);
    // 1.0 .. 100.0 in steps of 0.5
    format!("{{\"value\":{}}}", f64::from(rng.gen_range(2..=200)) / 2.0)
}

/// Check a broadcast; in a probe room, time the values it reflects first.
fn on_broadcast(sh: &Shared, room: &Room, sends: bool, last_seen: &mut u64, text: &[u8]) {
    let st = &sh.ctx.stats;
    sh.recv.inc();
    room.frames.set(room.frames.get() + 1);
    let Some(a) = st.check("meter: broadcast shape", proto::parse_avg(text)) else {
        return;
    };
    if !room.probe {
        // values are 1..100; at most 5.2 s of each sender's values, +1 each
        let senders = room.senders as f64;
        let max_count = (senders * room.hz * 5.2).ceil() + senders + 1.0;
        let ok = (1.0..=100.0).contains(&a.average) && a.count as f64 <= max_count;
        let detail = || format!("room {}: {a:?} from {senders} senders", room.name);
        return if !ok {
            st.violation("meter: broadcast not from the values sent", detail)
        };
    }
    let (now, sent) = (Instant::now(), room.sent.borrow());
    let k = proto::probe_newest(&a, sent.len(), *last_seen).and_then(|k| {
        // once the window is full: 5 s of values, -2 .. +100 ms bucket +2
        let warm = sent[0].elapsed().as_secs_f64() > 5.6 && now < sh.send_until;
        let (lo, hi) = (
            (5.0 * PROBE_HZ) as u64 - 2,
            (5.1 * PROBE_HZ).ceil() as u64 + 2,
        );
        ensure!(
            !warm || (lo..=hi).contains(&a.count),
            "count {}, want {lo}..={hi}",
            a.count
        );
        Ok(k)
    });
    let kind = "meter probe: broadcast names no value sent, or a wrong window";
    let Some(k) = st.check(kind, k.map_err(|e| format!("room {}: {e}", room.name))) else {
        return;
    };
    let h = if sends { &sh.h_echo } else { &sh.h_fanout };
    for m in *last_seen + 1..=k {
        h.record(now - sent[m as usize - 1]);
    }
    let skipped = k.saturating_sub(*last_seen + 1);
    sh.conflated.set(sh.conflated.get() + skipped);
    *last_seen = k;
}
