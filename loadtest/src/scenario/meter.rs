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

use futures_lite::{future, StreamExt};
use rand::rngs::SmallRng;
use rand::Rng;

use crate::cli::{non_negative, percent};
use crate::ctx::Ctx;
use crate::net::sleep_until;
use crate::proto;
use crate::stats::{Counter, Hist, Kind};
use crate::ws::{self, Error, Message, Ws};

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

/// Values per second of a probe sender: well under the server's per-client
/// cap of 50/s, which would drop values and break the identification.
const PROBE_HZ: f64 = 5.0;

/// After the last send, how long the last broadcasts may take to arrive.
const GRACE: Duration = Duration::from_millis(600);

const JUNK: [&str; 4] = [
    r#"{"value":0}"#,
    r#"{"value":"x"}"#,
    "not json",
    r#"{"v":5}"#,
];

impl Args {
    fn senders(&self) -> usize {
        self.senders.unwrap_or(self.clients)
    }

    pub fn check(&self) -> Result<(), String> {
        let hz_ok = self.rooms == 0 || self.senders() == 0 || (self.hz > 0.0 && self.hz <= 1e3);
        match (
            self.senders() <= self.clients,
            self.rooms + self.probe_rooms > 0,
            hz_ok,
        ) {
            (false, _, _) => Err("--senders cannot exceed --clients".into()),
            (_, false, _) => Err("need a room (--rooms or --probe-rooms)".into()),
            (_, _, false) => Err("--hz must be in (0, 1000]".into()),
            _ => Ok(()),
        }
    }
}

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
    junk: Rc<Counter>,
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
    let room = |name: String, probe: bool| {
        let (senders, hz) = if probe {
            (1, PROBE_HZ)
        } else {
            (cfg.senders(), cfg.hz)
        };
        let (frames, values, sent) = Default::default();
        Rc::new(Room {
            name,
            probe,
            senders,
            hz,
            frames,
            values,
            sent,
        })
    };
    let load = (0..cfg.rooms).map(|i| room(format!("{}-m{i}", ctx.run_id), false));
    let probe = (0..cfg.probe_rooms).map(|i| room(format!("{}-p{i}", ctx.run_id), true));
    let rooms: Vec<Rc<Room>> = load.chain(probe).collect();
    // (room, sends): a probe room's first client sends, a load room's first S
    let members: Vec<_> = rooms
        .iter()
        .flat_map(|r| (0..cfg.clients).map(move |i| (r, i < r.senders)))
        .collect();
    // ramp-up, not measured
    let paths = members
        .iter()
        .map(|(r, _)| format!("/ws?room={}", r.name))
        .collect();
    let conns = ctx.ramp("meter connect", paths, 2048).await;
    st.start_window();
    let start = Instant::now();
    let sh = Rc::new(Shared {
        sent: st.counter("sent", Kind::Rate),
        recv: st.counter("recv", Kind::Rate),
        junk: st.counter("junk_sent", Kind::Total),
        h_fanout: st.hist("probe_fanout"),
        h_echo: st.hist("probe_sender_echo"),
        conflated: Cell::new(0),
        send_until: start + ctx.duration,
        stop_at: start + ctx.duration + GRACE,
        ctx: ctx.clone(),
        cfg: cfg.clone(),
    });
    st.counter("close_handshakes_ok", Kind::Total);
    let mut rng = ctx.rng();
    let tasks: Vec<_> = members
        .into_iter()
        .zip(conns)
        .filter_map(|((room, sends), ws)| {
            // load-room senders start at a random phase of their period
            let phase = if room.probe {
                0.0
            } else {
                rng.gen::<f64>() / room.hz
            };
            let first_send = match sends {
                true => start + Duration::from_secs_f64(phase),
                false => sh.stop_at,
            };
            let (sh, room) = (sh.clone(), room.clone());
            let c = Conn {
                sh,
                room,
                sends,
                last_seen: 0,
            };
            Some(glommio::spawn_local(c.run(ws?, first_send)))
        })
        .collect();
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
            st.violation(
                "meter: fan-out above the per-client broadcast bound",
                || {
                    format!(
                        "room {}: {per_client:.1} frames/s per client (SPEC 2.1)",
                        r.name
                    )
                },
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

/// One client of a room.
struct Conn {
    sh: Rc<Shared>,
    room: Rc<Room>,
    /// A sender (else a listener).
    sends: bool,
    /// Probe rooms: the newest value reflected so far.
    last_seen: u64,
}

impl Conn {
    fn at(&self) -> String {
        let role = if self.sends { "sender" } else { "listener" };
        format!("room {} ({role})", self.room.name)
    }

    /// Read broadcasts and send on the role's ticks until `stop_at`, then
    /// close. A load-room client reads every --load-read-ms whatever
    /// arrived meanwhile; a probe-room client reads each frame at once.
    async fn run(mut self, mut ws: Ws, mut next_send: Instant) {
        let sh = self.sh.clone();
        let period = Duration::from_secs_f64(1.0 / self.room.hz.max(1e-9));
        let lazy = Duration::from_millis(sh.cfg.load_read_ms);
        let lazy = (!self.room.probe && !lazy.is_zero()).then_some(lazy);
        let mut next_read = Instant::now();
        let mut rng = sh.ctx.rng();
        let ended = 'conn: loop {
            let now = Instant::now();
            if now >= sh.stop_at {
                break false;
            }
            let wake = next_send.min(sh.stop_at);
            if let Some(every) = lazy {
                if now >= next_read {
                    next_read = now + every;
                    while let Some(item) = future::poll_once(ws.next()).await {
                        if !self.on_item(item) {
                            break 'conn true;
                        }
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
                    if !self.on_item(item) {
                        break true;
                    }
                }
            }
            if Instant::now() >= next_send && next_send < sh.send_until {
                if let Err(e) = ws.send(Message::text(self.next_value(&mut rng))).await {
                    sh.ctx.stats.fail("meter send", &self.at(), e.into());
                    break true;
                }
                sh.sent.inc();
                while next_send <= Instant::now() {
                    next_send += period;
                }
            }
        };
        let st = &sh.ctx.stats;
        st.counter("open", Kind::Gauge).dec();
        if !ended && sh.ctx.close_ws("meter", &self.at(), &mut ws).await {
            st.counter("close_handshakes_ok", Kind::Total).inc();
        }
    }

    /// What the next tick sends.
    fn next_value(&self, rng: &mut SmallRng) -> String {
        let (room, sh) = (&self.room, &self.sh);
        if room.probe {
            let mut sent = room.sent.borrow_mut();
            sent.push(Instant::now());
            room.values.set(room.values.get() + 1);
            return format!("{{\"value\":{}}}", sent.len());
        }
        if sh.cfg.junk_pct > 0.0 && rng.gen_range(0.0..100.0) < sh.cfg.junk_pct {
            sh.junk.inc();
            return JUNK[rng.gen_range(0..JUNK.len())].to_string();
        }
        room.values.set(room.values.get() + 1);
        // 1.0 .. 100.0 in steps of 0.5
        let v: u32 = rng.gen_range(2..=200);
        format!("{{\"value\":{}}}", f64::from(v) / 2.0)
    }

    /// One item of the connection's stream; false when the connection is
    /// over (recorded).
    fn on_item(&mut self, item: Option<Result<Message, Error>>) -> bool {
        match ws::message(item) {
            Ok(Message::Text(t)) => self.on_broadcast(t.as_bytes()),
            Ok(Message::Binary(_)) => {
                let room = || self.room.name.clone();
                self.sh
                    .ctx
                    .stats
                    .violation("meter: unexpected binary message", room);
            }
            Ok(_) => {}
            Err(f) => {
                self.sh.ctx.stats.fail("meter read", &self.at(), f);
                return false;
            }
        }
        true
    }

    fn on_broadcast(&mut self, text: &[u8]) {
        let (sh, room) = (&self.sh, &self.room);
        sh.recv.inc();
        room.frames.set(room.frames.get() + 1);
        let st = &sh.ctx.stats;
        let Some(a) = st.check("meter: broadcast shape", proto::parse_avg(text)) else {
            return;
        };
        if !room.probe {
            // values are 1..100; at most 5.2 s of each sender's values, +1 each
            let senders = room.senders as u64;
            let max_count = (room.senders as f64 * room.hz * 5.2).ceil() as u64 + senders + 1;
            let ok = match (1.0..=100.0).contains(&a.average) && a.count <= max_count {
                true => Ok(()),
                false => Err(format!(
                    "room {}: {a:?} from {} senders",
                    room.name, room.senders
                )),
            };
            st.check("meter: broadcast not from the values sent in 5 s", ok);
            return;
        }
        let now = Instant::now();
        let sent = room.sent.borrow();
        let k = proto::probe_newest(&a, sent.len(), self.last_seen);
        let kind = "meter probe: broadcast does not name a value sent";
        let Some(k) = st.check(kind, k.map_err(|e| format!("room {}: {e}", room.name))) else {
            return;
        };
        let h = if self.sends { &sh.h_echo } else { &sh.h_fanout };
        for m in self.last_seen + 1..=k {
            h.record(now - sent[m as usize - 1]);
        }
        sh.conflated
            .set(sh.conflated.get() + k.saturating_sub(self.last_seen + 1));
        self.last_seen = k;
        // once the window is full: 5 s of values, -2 .. +100 ms bucket +2
        let (lo, hi) = (
            (5.0 * PROBE_HZ) as u64 - 2,
            (5.1 * PROBE_HZ).ceil() as u64 + 2,
        );
        let warm = sent
            .first()
            .is_some_and(|t0| (now - *t0).as_secs_f64() > 5.6);
        if warm && now < sh.send_until && !(lo..=hi).contains(&a.count) {
            st.violation(
                "meter probe: 5 s window holds the wrong number of samples",
                || format!("room {}: count {}, want {lo}..={hi}", room.name, a.count),
            );
        }
    }
}
