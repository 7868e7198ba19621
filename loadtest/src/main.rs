//! kakigori-loadtest: load-test and protocol-conformance harness for the
//! kakigori server. One glommio executor pinned to one CPU drives every
//! connection: HTTP/1.1 requests written raw and answers parsed with
//! httparse, WebSockets through tungstenite.

mod cli;
mod common;
mod http;
mod net;
mod plot;
mod proto;
mod report;
mod scenario;
mod stats;
mod usage;
mod ws;

use std::io::Write;
use std::rc::Rc;
use std::time::Instant;

use clap::Parser;
use glommio::{CpuSet, LocalExecutorBuilder, Placement};

use crate::cli::{Cli, Cpu};
use crate::common::{preflight, Ctx};
use crate::net::Target;
use crate::stats::{RunResult, Stats};
use crate::usage::{ProcUsage, Sample};

fn main() {
    // clap exits with 2 on a usage error and 0 after --help
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

fn real_main(cli: Cli) -> Result<i32, String> {
    let c = &cli.common;
    cli.scenario.check()?;
    let urls = c.urls()?;
    let targets = urls
        .iter()
        .map(|u| net::parse_target(u, c.allow_remote))
        .collect::<Result<Vec<_>, _>>()?;
    let rounds = if c.compare.is_some() {
        c.rounds.max(1)
    } else {
        1
    };
    let placement = match c.cpu {
        Some(Cpu::Fixed(n)) => Placement::Fixed(n),
        Some(Cpu::Unbound) => Placement::Unbound,
        // the default CPU 1 does not exist on a one-CPU machine (count the
        // online CPUs, not the affinity mask: `taskset -c 1` is fine)
        None if CpuSet::online().map_or(0, |s| s.len()) < 2 => {
            eprintln!("note: one CPU only; the harness runs unpinned");
            Placement::Unbound
        }
        None => Placement::Fixed(1),
    };
    if let Some(p) = c.server_pid {
        if Sample::take(p, false).is_none() {
            return Err(format!("--server-pid {p}: no such process"));
        }
    }
    match rlimit::utils::increase_nofile_limit(u64::MAX) {
        Ok(n) if n >= 1024 => {}
        n => eprintln!("warning: RLIMIT_NOFILE is only {n:?}"),
    }
    let ex = LocalExecutorBuilder::new(placement)
        .name("loadtest")
        // small: fits an 8 MiB memlock limit even for non-root users
        .io_memory(256 << 10)
        .make()
        .map_err(|e| format!("cannot start the glommio executor: {e}"))?;
    let seed = c.seed.unwrap_or_else(rand::random);
    let results: Vec<(usize, RunResult)> = ex.run(run_plan(&cli, &targets, rounds, seed))?;

    // merge rounds per target
    let merged: Vec<RunResult> = (0..targets.len())
        .map(|t| {
            let runs: Vec<RunResult> = results
                .iter()
                .filter(|(i, _)| *i == t)
                .map(|(_, r)| r.clone())
                .collect();
            RunResult::merge(&runs)
        })
        .collect();

    let mut human = String::new();
    for r in &merged {
        human.push_str(&report::text(r, c.max_errors));
        human.push('\n');
    }
    if let [a, b] = &merged[..] {
        human.push_str(&report::compare_text(a, b));
    }
    if c.json {
        eprint!("{human}");
        let mut v = match &merged[..] {
            [a, b] => report::compare_json(a, b, c.max_errors),
            _ => report::json(&merged[0], c.max_errors),
        };
        v["argv"] = serde_json::json!(std::env::args().collect::<Vec<_>>());
        let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    } else {
        print!("{human}");
    }
    if let Some(path) = &c.plot {
        let mut series = Vec::new();
        for (i, r) in merged.iter().enumerate() {
            for (n, h) in &r.hists {
                let name = match merged.len() {
                    2 => format!("{}: {n}", if i == 0 { "A" } else { "B" }),
                    _ => n.clone(),
                };
                series.push((name, h));
            }
        }
        let title = format!(
            "kakigori-loadtest {} ({})",
            merged[0].scenario,
            urls.join(" vs ")
        );
        std::fs::write(path, plot::svg(&title, &series)?)
            .map_err(|e| format!("--plot {}: {e}", path.display()))?;
        eprintln!("plot written to {}", path.display());
    }
    let pass = merged.iter().all(|r| report::passed(r, c.max_errors));
    Ok(if pass { 0 } else { 1 })
}

async fn run_plan(
    cli: &Cli,
    targets: &[Target],
    rounds: u64,
    seed: u64,
) -> Result<Vec<(usize, RunResult)>, String> {
    let mut out = Vec::new();
    for round in 0..rounds {
        for (ti, t) in targets.iter().enumerate() {
            if targets.len() > 1 && !cli.common.quiet {
                eprintln!(
                    "--- round {}/{rounds}: {} against {} ({})",
                    round + 1,
                    cli.scenario.name(),
                    t.url,
                    if ti == 0 { "A" } else { "B" }
                );
            }
            let r = run_once(cli, t, seed.wrapping_add(round)).await?;
            out.push((ti, r));
        }
    }
    Ok(out)
}

async fn run_once(cli: &Cli, target: &Target, seed: u64) -> Result<RunResult, String> {
    let (c, scenario) = (&cli.common, &cli.scenario);
    let stats = Rc::new(Stats::new());
    let duration_s = scenario.duration_s(c);
    let ctx = Rc::new(Ctx::new(target.clone(), c, duration_s, stats.clone(), seed));
    let me = std::process::id() as i32;
    let h0 = Sample::take(me, false);
    let s0 = c.server_pid.and_then(|p| Sample::take(p, true));
    let t0 = Instant::now();
    let progress =
        stats::spawn_progress(stats.clone(), scenario.name().into(), duration_s, c.quiet);
    stats.start_window();
    if preflight(&ctx).await {
        scenario.run(ctx.clone()).await;
    }
    stats.end_window();
    drop(progress);
    stats::progress_done(c.quiet);
    let wall = t0.elapsed().as_secs_f64();
    let mut res = stats.result(scenario.name(), &target.url);
    if let (Some(a), Some(b)) = (h0, Sample::take(me, false)) {
        res.harness = ProcUsage::between(me, &a, &b, wall);
    }
    if let Some(l) = usage::load_average_1m().filter(|l| *l > 2.5) {
        res.notes.push(format!(
            "1-minute load average {l:.2} at the end: other processes shared the CPUs, numbers are noisy"
        ));
    }
    if let (Some(pid), Some(a)) = (c.server_pid, s0) {
        match Sample::take(pid, true) {
            Some(b) => res.server = Some(ProcUsage::between(pid, &a, &b, wall)),
            None => res
                .notes
                .push(format!("server pid {pid} is gone at the end of the run")),
        }
    }
    Ok(res)
}
