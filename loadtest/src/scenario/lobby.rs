//! `lobby`: groups join /ws/stay at once; exactly-once grouping (SPEC 2.2).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::proto::{self, GROUP};
use crate::stats::Kind;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Groups per wave: G*3 clients join the same lobby at once; waves repeat until
    /// --duration-s
    #[arg(long, value_name = "G", default_value_t = 50, value_parser = crate::cli::positive)]
    pub groups: usize,
}

/// How long a wave may take before missing start_times are violations.
const WAVE_TIMEOUT: Duration = Duration::from_secs(15);

/// One client (of `lobby` and `festival`): join lobby `room`, wait for its
/// start_time (returned) and the close, within `limit`.
pub async fn join(ctx: &Ctx, room: &str, limit: Duration) -> Option<String> {
    let st = &ctx.stats;
    let t0 = Instant::now();
    let path = format!("/ws/stay?room={room}");
    let mut ws = ctx.ws("lobby join", &path, 512).await?;
    st.hist("lobby join").since(t0);
    st.counter("joined", Kind::Rate).inc();
    let mut start: Option<String> = None;
    let on_text = |text: &str| {
        let m = proto::parse_stay(text.as_bytes(), start.is_some());
        match st.check("lobby: message", m.map_err(|e| format!("{room}: {e}"))) {
            Some(m) if m.start_time != "null" => {
                st.hist("lobby join -> start_time").since(t0);
                st.counter("got_start_time", Kind::Rate).inc();
                start = Some(m.start_time);
                true
            }
            _ => false,
        }
    };
    let at = ("lobby", room);
    ctx.await_then_close(at, &mut ws, "start_time", limit, on_text)
        .await;
    start
}

pub async fn run(ctx: Rc<Ctx>, groups: usize) {
    let st = &ctx.stats;
    let room = format!("{}-lobby", ctx.run_id);
    let deadline = Instant::now() + ctx.duration;
    st.start_window();
    for w in 0.. {
        let n = groups * GROUP;
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (ctx, room) = (ctx.clone(), room.clone());
                glommio::spawn_local(async move { join(&ctx, &room, WAVE_TIMEOUT).await })
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
            let kind = "lobby: start_time shared by a non-multiple of the group size";
            st.violation(kind, || format!("wave {w}: {k} clients got {t}"));
        }
        st.counter("waves", Kind::Total).inc();
        if Instant::now() >= deadline {
            break;
        }
    }
}
