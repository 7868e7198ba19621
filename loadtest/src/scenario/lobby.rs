//! `lobby`: G groups join /ws/stay at once; exactly-once grouping.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cli::non_negative;
use crate::common::Ctx;
use crate::net;
use crate::proto;
use crate::stats::{Counter, Hist, Kind};
use crate::ws::{close_code, Message};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Groups per wave: G*size clients join the same lobby at once; waves repeat until
    /// --duration-s
    #[arg(long, value_name = "G", default_value_t = 50)]
    pub groups: usize,
    /// Lobby rooms the waves rotate over
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub rooms: usize,
    /// Expected group size (server --lobby-size)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub lobby_size: usize,
    /// Expected start_time - now (server's lobby delay); checked within +-2 s
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = non_negative)]
    pub start_delay_s: f64,
    /// How long a wave may take before missing start_times are violations
    #[arg(long, value_name = "SECS", default_value_t = 15.0, value_parser = non_negative)]
    pub wave_timeout_s: f64,
}

impl Args {
    pub fn check(&self) -> Result<(), String> {
        if self.groups == 0 || self.lobby_size == 0 {
            return Err("--groups and --lobby-size must be at least 1".into());
        }
        Ok(())
    }
}

/// What one lobby client saw.
pub struct Seen {
    pub start_time: Option<String>,
}

pub struct LobbyStats {
    pub joined: Rc<Counter>,
    pub started: Rc<Counter>,
    pub h_join: Rc<Hist>,
    pub h_wait: Rc<Hist>,
}

/// One lobby client: join `room`, wait for its start_time and the close.
/// Used by `lobby` and `festival`. Returns the start_time string.
pub async fn lobby_client(
    ctx: &Ctx,
    ls: &LobbyStats,
    room: &str,
    size: usize,
    delay_s: f64,
    limit: Duration,
) -> Seen {
    let st = &ctx.stats;
    let path = format!("/ws/stay?room={room}");
    let t0 = Instant::now();
    let Some(mut ws) = ctx.ws("lobby join", &path, None, 512).await else {
        return Seen { start_time: None };
    };
    ls.h_join.since(t0);
    ls.joined.inc();
    let mut start: Option<String> = None;
    let sz = size.to_string();
    let res = net::timeout(limit, async {
        loop {
            match ws.recv().await {
                Ok(Message::Text(text)) => {
                    let m = match proto::parse_stay(text.as_bytes()) {
                        Ok(m) => m,
                        Err(e) => {
                            st.violation("lobby: message shape", || e);
                            continue;
                        }
                    };
                    let n: Option<usize> = m
                        .stay_num
                        .parse()
                        .ok()
                        .filter(|_| m.stay_num.bytes().all(|b| b.is_ascii_digit()));
                    if start.is_some() {
                        st.violation("lobby: message after start_time", || {
                            format!("{room}: {text}")
                        });
                        continue;
                    }
                    if m.start_time == "null" {
                        match n {
                            Some(n) if (1..=size).contains(&n) => {}
                            _ => st.violation("lobby: stay_num out of range", || {
                                format!("{room}: {:?} (lobby size {size})", m.stay_num)
                            }),
                        }
                        continue;
                    }
                    ls.h_wait.since(t0);
                    ls.started.inc();
                    if m.stay_num != sz {
                        st.violation("lobby: start_time with stay_num != lobby size", || {
                            format!("{room}: {text}")
                        });
                    }
                    match proto::parse_tokyo_rfc3339(&m.start_time) {
                        Ok(t) => {
                            let want = proto::unix_now() + delay_s;
                            if (t as f64 - want).abs() > 2.0 {
                                st.violation("lobby: start_time not now + delay", || {
                                    format!(
                                        "{}: {:.1} s from now, want {delay_s} s",
                                        m.start_time,
                                        t as f64 - proto::unix_now()
                                    )
                                });
                            }
                        }
                        Err(e) => st.violation("lobby: start_time format", || e),
                    }
                    start = Some(m.start_time);
                }
                Ok(Message::Close(f)) => {
                    let code = close_code(&f);
                    if start.is_none() {
                        st.violation("lobby: closed before start_time", || {
                            format!("{room}: code {code:?}")
                        });
                    } else if code != Some(1000) {
                        st.violation("lobby: close code after start_time", || {
                            format!("{room}: {code:?}, want 1000")
                        });
                    }
                    return;
                }
                Ok(Message::Binary(_)) => {
                    st.violation("lobby: binary message", || room.to_string())
                }
                Ok(_) => {}
                Err(e) => {
                    ctx.ws_failed("lobby", room, &e);
                    return;
                }
            }
        }
    })
    .await;
    if res.is_none() {
        if start.is_none() {
            st.violation("lobby: no start_time received", || {
                format!("{room}: no start_time within {limit:?} of joining")
            });
        } else {
            st.violation("lobby: no close after start_time", || {
                format!("{room}: connection still open {limit:?} after joining")
            });
        }
    }
    Seen { start_time: start }
}

pub async fn run(ctx: Rc<Ctx>, cfg: Rc<Args>) {
    let wave_timeout = Duration::from_secs_f64(cfg.wave_timeout_s.max(0.1));
    let st = ctx.stats.clone();
    let ls = Rc::new(LobbyStats {
        joined: st.counter("joined", Kind::Rate),
        started: st.counter("got_start_time", Kind::Rate),
        h_join: st.hist("join (connect+upgrade)"),
        h_wait: st.hist("join -> start_time"),
    });
    let waves = st.counter("waves", Kind::Total);
    let deadline = Instant::now() + ctx.duration;
    st.start_window();
    let mut w = 0usize;
    loop {
        let room = format!("{}-lobby-{}", ctx.run_id, w % cfg.rooms.max(1));
        let n = cfg.groups * cfg.lobby_size;
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (ctx, ls, room, cfg) = (ctx.clone(), ls.clone(), room.clone(), cfg.clone());
            tasks.push(glommio::spawn_local(async move {
                lobby_client(
                    &ctx,
                    &ls,
                    &room,
                    cfg.lobby_size,
                    cfg.start_delay_s,
                    wave_timeout,
                )
                .await
            }));
        }
        let mut by_time: BTreeMap<String, usize> = BTreeMap::new();
        let mut missing = 0usize;
        for t in tasks {
            match t.await.start_time {
                Some(s) => *by_time.entry(s).or_default() += 1,
                None => missing += 1,
            }
        }
        for (t, k) in &by_time {
            if k % cfg.lobby_size != 0 {
                st.violation(
                    "lobby: start_time shared by a non-multiple of the group size",
                    || {
                        format!(
                            "wave {w} room {room}: {k} clients got {t} (groups of {})",
                            cfg.lobby_size
                        )
                    },
                );
            }
        }
        if missing > 0 {
            st.note(format!(
                "wave {w}: {missing} of {n} clients got no start_time"
            ));
        }
        waves.inc();
        w += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    st.end_window();
}
