//! kakigori-loadtest: load-test and protocol-conformance harness for the
//! kakigori server. One glommio executor pinned to one CPU drives every
//! connection through a hand-rolled HTTP/1.1 and WebSocket client.

mod cli;
mod common;
mod http;
mod net;
mod proto;
mod report;
mod scenario;
mod stats;
mod ws;

use std::io::Write;
use std::ops::Not;
use std::rc::Rc;
use std::time::Instant;

use glommio::{LocalExecutorBuilder, Placement};

use crate::cli::{Opts, ParseOutcome};
use crate::common::{preflight, Ctx};
use crate::net::Target;
use crate::scenario::Scenario;
use crate::stats::{ProcUsage, RunResult, Stats};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args) {
        Ok(ParseOutcome::Run(o)) => o,
        Ok(ParseOutcome::Help(h)) => {
            print!("{h}");
            return;
        }
        Err(e) => {
            eprintln!("error: {e}\n(run with --help for usage)");
            std::process::exit(2);
        }
    };
    match real_main(opts) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

struct Plan {
    scenario: Rc<Scenario>,
    opts: Opts,
    targets: Vec<Target>,
    rounds: u64,
    seed: u64,
    quiet: bool,
    server_pid: Option<String>,
}

fn real_main(opts: Opts) -> Result<i32, String> {
    let allow_remote = opts.switch("allow-remote");
    let targets = match &opts.compare {
        Some((a, b)) => vec![
            net::parse_target(a, allow_remote)?,
            net::parse_target(b, allow_remote)?,
        ],
        None => vec![net::parse_target(
            &opts.str("url").unwrap_or_default(),
            allow_remote,
        )?],
    };
    let scenario = Rc::new(Scenario::from_opts(&opts)?);
    let rounds = if opts.compare.is_some() {
        opts.u64("rounds")?.max(1)
    } else {
        1
    };
    let max_errors = opts.u64("max-errors")?;
    opts.f64("duration-s")?;
    opts.f64("timeout-s")?;
    // online CPUs of the machine (not the affinity mask: `taskset -c 1` is fine)
    // SAFETY: sysconf is always safe to call.
    let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let placement = match opts.str("cpu").as_deref() {
        Some("none") | Some("unbound") => Placement::Unbound,
        // the default CPU 1 does not exist on a one-CPU machine
        Some("1") if ncpu < 2 && opts.vals_has("cpu").not() => {
            eprintln!("note: one CPU only; the harness runs unpinned");
            Placement::Unbound
        }
        Some(c) => Placement::Fixed(
            c.parse()
                .map_err(|_| format!("--cpu: '{c}' is not a CPU number or 'none'"))?,
        ),
        None => Placement::Unbound,
    };
    let seed = opts.opt_u64("seed")?.unwrap_or_else(rand::random);
    let server_pid = opts.str("server-pid");
    if let Some(p) = &server_pid {
        if net::proc_cpu_s(p).is_none() {
            return Err(format!("--server-pid {p}: no such process"));
        }
    }
    let json_out = opts.switch("json");
    let plot = opts.str("plot");
    let nofile = net::raise_nofile();
    if nofile < 1024 {
        eprintln!("warning: RLIMIT_NOFILE is only {nofile}");
    }
    let plan = Plan {
        scenario,
        opts: opts.clone(),
        targets,
        rounds,
        seed,
        quiet: opts.switch("quiet"),
        server_pid,
    };
    let ex = LocalExecutorBuilder::new(placement)
        .name("loadtest")
        // small: fits an 8 MiB memlock limit even for non-root users
        .io_memory(256 << 10)
        .make()
        .map_err(|e| format!("cannot start the glommio executor: {e}"))?;
    let ntargets = plan.targets.len();
    let results: Vec<(usize, RunResult)> = ex.run(run_plan(plan))?;

    // merge rounds per target
    let merged: Vec<RunResult> = (0..ntargets)
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
        human.push_str(&report::text(r, max_errors));
        human.push('\n');
    }
    if merged.len() == 2 {
        human.push_str(&report::compare_text(&merged[0], &merged[1]));
    }
    if json_out {
        eprint!("{human}");
        let mut v = if merged.len() == 2 {
            report::compare_json(&merged[0], &merged[1], max_errors)
        } else {
            report::json(&merged[0], max_errors)
        };
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "argv".into(),
                serde_json::json!(std::env::args().collect::<Vec<_>>()),
            );
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        );
    } else {
        print!("{human}");
    }
    if let Some(path) = plot {
        let mut series = Vec::new();
        for (i, r) in merged.iter().enumerate() {
            for (n, h) in &r.hists {
                let name = if merged.len() == 2 {
                    format!("{}: {n}", if i == 0 { "A" } else { "B" })
                } else {
                    n.clone()
                };
                series.push((name, h));
            }
        }
        let title = format!(
            "kakigori-loadtest {} ({})",
            merged[0].scenario,
            merged
                .iter()
                .map(|r| r.target.as_str())
                .collect::<Vec<_>>()
                .join(" vs ")
        );
        std::fs::write(&path, report::svg(&title, &series))
            .map_err(|e| format!("--plot {path}: {e}"))?;
        eprintln!("plot written to {path}");
    }
    Ok(if merged.iter().all(|r| report::passed(r, max_errors)) {
        0
    } else {
        1
    })
}

async fn run_plan(plan: Plan) -> Result<Vec<(usize, RunResult)>, String> {
    let mut out = Vec::new();
    for round in 0..plan.rounds {
        for (ti, t) in plan.targets.iter().enumerate() {
            if plan.targets.len() > 1 && !plan.quiet {
                eprintln!(
                    "--- round {}/{}: {} against {} ({})",
                    round + 1,
                    plan.rounds,
                    plan.opts.cmd,
                    t.url,
                    if ti == 0 { "A" } else { "B" }
                );
            }
            let r = run_once(&plan, t, round).await?;
            out.push((ti, r));
        }
    }
    Ok(out)
}

async fn run_once(plan: &Plan, target: &Target, round: u64) -> Result<RunResult, String> {
    let stats = Rc::new(Stats::new());
    let ctx = Rc::new(Ctx::new(
        target.clone(),
        plan.opts.clone(),
        stats.clone(),
        plan.seed.wrapping_add(round),
    )?);
    let u0 = net::self_usage();
    let s0 = plan.server_pid.as_deref().and_then(net::proc_cpu_s);
    let t0 = Instant::now();
    let label = plan.opts.cmd.to_string();
    let progress =
        stats::spawn_progress(stats.clone(), label, ctx.duration.as_secs_f64(), plan.quiet);
    stats.start_window();
    if preflight(&ctx).await {
        plan.scenario.run(ctx.clone()).await;
    }
    stats.end_window();
    drop(progress);
    stats::progress_done(plan.quiet);
    let wall = t0.elapsed().as_secs_f64();
    let u1 = net::self_usage();
    let mut res = stats.result(plan.opts.cmd, &target.url);
    let cpu = (u1.user_s - u0.user_s) + (u1.sys_s - u0.sys_s);
    res.harness = ProcUsage {
        cpu_user_s: u1.user_s - u0.user_s,
        cpu_sys_s: u1.sys_s - u0.sys_s,
        cpu_pct: 100.0 * cpu / wall.max(1e-9),
        wall_s: wall,
        rss_kb: net::self_rss_kb(),
        peak_rss_kb: u1.max_rss_kb,
    };
    if let Some(l) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
    {
        if l > 2.5 {
            res.notes.push(format!(
                "1-minute load average {l:.2} at the end: other processes shared the CPUs, numbers are noisy"
            ));
        }
    }
    if let (Some(pid), Some((su0, ss0))) = (plan.server_pid.as_deref(), s0) {
        if let Some((su1, ss1)) = net::proc_cpu_s(pid) {
            let (rss, hwm) = net::proc_rss_kb(pid).unwrap_or((0, 0));
            res.server = Some(ProcUsage {
                cpu_user_s: su1 - su0,
                cpu_sys_s: ss1 - ss0,
                cpu_pct: 100.0 * ((su1 - su0) + (ss1 - ss0)) / wall.max(1e-9),
                wall_s: wall,
                rss_kb: rss,
                peak_rss_kb: hwm,
            });
        } else {
            res.notes
                .push(format!("server pid {pid} is gone at the end of the run"));
        }
    }
    Ok(res)
}
