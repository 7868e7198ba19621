//! `lobby`: groups join /ws/stay at once; exactly-once grouping (SPEC 2.2).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::proto;
use crate::stats::{Counter, Hist, Kind};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Groups per wave: G*3 clients join the same lobby at once; waves repeat until
    /// --duration-s
    #[arg(long, value_name = "G", default_value_t = 50, value_parser = crate::cli::positive)]
    pub groups: usize,
}

/// The server's defaults (SPEC 2.2): groups of 3, start_time = now + 10 s.
pub const GROUP: usize = 3;
const START_DELAY_S: f64 = 10.0;

/// How long a wave may take before missing start_times are violations.
const WAVE_TIMEOUT: Duration = Duration::from_secs(15);

/// What lobby clients record, shared with `festival`.
pub struct Lobbies {
    pub joined: Rc<Counter>,
    pub started: Rc<Counter>,
    pub h_join: Rc<Hist>,
    pub h_wait: Rc<Hist>,
}

impl Lobbies {
    /// One client: join lobby `room`, wait for its start_time (returned)
    /// and the close, within `limit`.
    pub async fn join(&self, ctx: &Ctx, room: &str, limit: Duration) -> Option<String> {
        let st = &ctx.stats;
        let t0 = Instant::now();
        let mut ws = ctx
            .ws("lobby join", &format!("/ws/stay?room={room}"), 512)
            .await?;
        self.h_join.since(t0);
        self.joined.inc();
        let mut start: Option<String> = None;
        let on_text = |text: &str| {
            let Some(m) = st.check("lobby: message shape", proto::parse_stay(text.as_bytes()))
            else {
                return false;
            };
            let n = m
                .stay_num
                .parse::<usize>()
                .ok()
                .filter(|_| m.stay_num.bytes().all(|b| b.is_ascii_digit()));
            if start.is_some() {
                st.violation("lobby: message after start_time", || {
                    format!("{room}: {text}")
                });
            } else if m.start_time == "null" {
                if !n.is_some_and(|n| (1..=GROUP).contains(&n)) {
                    st.violation("lobby: stay_num out of range", || format!("{room}: {text}"));
                }
            } else {
                self.h_wait.since(t0);
                self.started.inc();
                if n != Some(GROUP) {
                    st.violation("lobby: start_time with stay_num != group size", || {
                        format!("{room}: {text}")
                    });
                }
                let at = proto::parse_tokyo_rfc3339(&m.start_time).and_then(|t| {
                    let ahead_s = t as f64 - proto::unix_now();
                    match (ahead_s - START_DELAY_S).abs() <= 2.0 {
                        true => Ok(()),
                        false => Err(format!(
                            "{}: {ahead_s:.1} s from now, want {START_DELAY_S} s",
                            m.start_time
                        )),
                    }
                });
                st.check("lobby: start_time not now + 10 s as RFC 3339 +09:00", at);
                start = Some(m.start_time);
                return true;
            }
            false
        };
        ctx.await_then_close(("lobby", room), &mut ws, "start_time", limit, on_text)
            .await;
        start
    }
}

pub async fn run(ctx: Rc<Ctx>, groups: usize) {
    let st = &ctx.stats;
    let lobbies = Rc::new(Lobbies {
        joined: st.counter("joined", Kind::Rate),
        started: st.counter("got_start_time", Kind::Rate),
        h_join: st.hist("join (connect+upgrade)"),
        h_wait: st.hist("join -> start_time"),
    });
    let waves = st.counter("waves", Kind::Total);
    let room = format!("{}-lobby", ctx.run_id);
    let deadline = Instant::now() + ctx.duration;
    st.start_window();
    for w in 0.. {
        let n = groups * GROUP;
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (ctx, lobbies, room) = (ctx.clone(), lobbies.clone(), room.clone());
                glommio::spawn_local(async move { lobbies.join(&ctx, &room, WAVE_TIMEOUT).await })
            })
            .collect();
        let mut by_time: BTreeMap<String, usize> = BTreeMap::new();
        for t in tasks {
            *by_time.entry(t.await.unwrap_or_default()).or_default() += 1;
        }
        if let Some(missing) = by_time.remove("") {
            st.note(format!(
                "wave {w}: {missing} of {n} clients got no start_time"
            ));
        }
        for (t, k) in by_time.iter().filter(|(_, k)| *k % GROUP != 0) {
            st.violation(
                "lobby: start_time shared by a non-multiple of the group size",
                || format!("wave {w}: {k} clients got {t} (groups of {GROUP})"),
            );
        }
        waves.inc();
        if Instant::now() >= deadline {
            break;
        }
    }
}
