//! kakigori-loadtest: load-test and protocol-conformance harness for the
//! kakigori server. One glommio executor pinned to one CPU drives every
//! connection, each a task: HTTP/1.1 requests written raw and answers parsed
//! with httparse, WebSockets through async-tungstenite.

mod cli;
mod ctx;
mod fail;
mod http;
mod net;
mod plot;
mod proto;
mod report;
mod scenario;
mod stats;
mod usage;
mod ws;

use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::Instant;

use clap::Parser;
use glommio::{CpuSet, LocalExecutorBuilder, Placement};

use crate::cli::Cli;
use crate::ctx::{preflight, Ctx};
use crate::net::Target;
use crate::stats::Stats;
use crate::usage::{Sample, Usage};

fn main() {
    // clap exits with 2 on a usage error and 0 after --help
    let cli = Cli::parse();
    match run(&cli) {
        Ok(pass) => std::process::exit(if pass { 0 } else { 1 }),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// Run the plan and report; true when every server passed.
fn run(cli: &Cli) -> Result<bool, String> {
    let (c, name) = (&cli.common, cli.scenario.name());
    cli.scenario.check()?;
    let urls = c.urls()?;
    let targets = urls.iter().map(|u| net::parse_target(u, c.allow_remote));
    let targets: Vec<Target> = targets.collect::<Result<_, _>>()?;
    if let Some(p) = c.server_pid.filter(|p| Sample::take(*p, false).is_none()) {
        return Err(format!("--server-pid {p}: no such process"));
    }
    match rlimit::utils::increase_nofile_limit(u64::MAX) {
        Ok(n) if n >= 1024 => {}
        n => eprintln!("warning: RLIMIT_NOFILE is only {n:?}"),
    }
    // the default CPU 1 does not exist on a one-CPU machine (count the
    // online CPUs, not the affinity mask: `taskset -c 1` is fine)
    let one_cpu = CpuSet::online().map_or(0, |s| s.len()) < 2;
    let placement = match c.cpu.map_or((!one_cpu).then_some(1), |p| p.0) {
        Some(n) => Placement::Fixed(n),
        None => Placement::Unbound,
    };
    let ex = LocalExecutorBuilder::new(placement)
        .name("loadtest")
        // small: fits an 8 MiB memlock limit even for non-root users
        .io_memory(256 << 10)
        .make()
        .map_err(|e| format!("cannot start the glommio executor: {e}"))?;
    let stats: Vec<Rc<Stats>> = targets.iter().map(|_| Rc::default()).collect();
    let rounds = c.compare.as_ref().map_or(1, |_| c.rounds.max(1));
    // A or B before a series name, with --compare
    let ab = |i: usize| ["", "A: ", "B: "][(targets.len() - 1) * (i + 1)];
    ex.run(async {
        // A B A B ...: each server's rounds add up in its own Stats
        for round in 1..=rounds {
            for (i, (t, st)) in targets.iter().zip(&stats).enumerate() {
                if targets.len() > 1 && !c.quiet {
                    let url = &t.url;
                    eprintln!("--- round {round}/{rounds}: {name} against {}{url}", ab(i));
                }
                run_once(cli, t, st).await;
            }
        }
    });
    let report = |(s, u): (&Rc<Stats>, &String)| report::json(s, name, u, c.max_errors);
    let reports: Vec<_> = stats.iter().zip(&urls).map(report).collect();
    let texts: Vec<_> = reports.iter().map(report::text).collect();
    let mut human = texts.join("\n");
    let mut out = match &reports[..] {
        [a, b] => report::compare_json(a, b),
        _ => reports[0].clone(),
    };
    if reports.len() == 2 {
        human += &format!("\n{}", report::compare_text(&out));
    }
    if c.json {
        eprint!("{human}");
        out["argv"] = serde_json::json!(std::env::args().collect::<Vec<_>>());
        let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    } else {
        print!("{human}");
    }
    if let Some(path) = &c.plot {
        let hists = stats.iter().enumerate().flat_map(|(i, s)| {
            let named = s.hists().into_iter();
            named.map(move |(n, h)| (format!("{}{n}", ab(i)), h))
        });
        let title = format!("kakigori-loadtest {name} ({})", urls.join(" vs "));
        let svg = plot::svg(&title, &hists.collect::<Vec<_>>())?;
        std::fs::write(path, svg).map_err(|e| format!("--plot {}: {e}", path.display()))?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(reports.iter().all(|r| r["pass"] == true))
}

/// One run of the scenario against `target`, with the CPU use of the
/// harness and of the server over it.
async fn run_once(cli: &Cli, target: &Target, st: &Rc<Stats>) {
    let c = &cli.common;
    let duration_s = cli.scenario.duration_s(c);
    let ctx = Rc::new(Ctx::new(target.clone(), st.clone(), duration_s));
    let me = std::process::id() as i32;
    let (h0, s0) = (
        Sample::take(me, false),
        c.server_pid.and_then(|p| Sample::take(p, true)),
    );
    let t0 = Instant::now();
    let progress =
        (!c.quiet).then(|| stats::spawn_progress(st.clone(), cli.scenario.name(), duration_s));
    st.start_window();
    if preflight(&ctx).await {
        cli.scenario.run(ctx.clone()).await;
    }
    st.end_window();
    drop(progress);
    if !c.quiet && std::io::stderr().is_terminal() {
        eprintln!();
    }
    let wall = t0.elapsed().as_secs_f64();
    if let (Some(a), Some(b)) = (h0, Sample::take(me, false)) {
        let u = Usage::between(me, &a, &b, wall);
        st.harness.borrow_mut().add(&u);
    }
    if let Some(l) = usage::load_average_1m().filter(|l| *l > 2.5) {
        st.note(format!("1-minute load average {l:.2} at the end: other processes shared the CPUs, numbers are noisy"));
    }
    if let (Some(pid), Some(a)) = (c.server_pid, s0) {
        match Sample::take(pid, true) {
            Some(b) => {
                let u = Usage::between(pid, &a, &b, wall);
                let mut server = st.server.borrow_mut();
                server.get_or_insert_with(Usage::default).add(&u);
            }
            None => st.note(format!("server pid {pid} is gone at the end of the run")),
        }
    }
}
