//! Final reports: human text, JSON and the A/B comparison.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::stats::{Kind, RunResult};
use crate::usage::{ProcUsage, BUSIEST_EXECUTOR_SHARE_TARGET_PCT};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

pub fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary {
            count: 0,
            min: 0,
            p50: 0,
            p90: 0,
            p99: 0,
            p999: 0,
            max: 0,
            mean: 0.0,
        };
    }
    Summary {
        count: h.len(),
        min: h.min(),
        p50: h.value_at_percentile(50.0),
        p90: h.value_at_percentile(90.0),
        p99: h.value_at_percentile(99.0),
        p999: h.value_at_percentile(99.9),
        max: h.max(),
        mean: h.mean(),
    }
}

/// Microseconds as milliseconds with 3 decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn usage_line(u: &ProcUsage) -> String {
    format!(
        "cpu {:.2} s user + {:.2} s sys = {:.1}% of one core over {:.1} s; RSS {:.1} MB (peak {:.1} MB)",
        u.cpu_user_s,
        u.cpu_sys_s,
        u.cpu_pct,
        u.wall_s,
        u.rss_kb as f64 / 1024.0,
        u.peak_rss_kb as f64 / 1024.0
    )
}

pub fn passed(r: &RunResult, max_errors: u64) -> bool {
    r.violation_count() == 0 && r.error_count() <= max_errors
}

pub fn text(r: &RunResult, max_errors: u64) -> String {
    let mut s = format!(
        "== {} @ {} -- {:.1} s measured ==\n",
        r.scenario, r.target, r.wall_s
    );
    let w = r
        .counters
        .iter()
        .map(|c| c.name.chars().count())
        .chain(r.hists.iter().map(|(n, _)| n.chars().count()))
        .chain(r.metrics.iter().map(|(n, _)| n.chars().count()))
        .max()
        .unwrap_or(0)
        .max(12);
    if !r.counters.is_empty() {
        s.push_str("counters:\n");
        for c in &r.counters {
            match c.kind {
                Kind::Rate => s.push_str(&format!(
                    "  {:<w$} {:>12} {:>12.1}/s\n",
                    c.name, c.total, c.per_s
                )),
                Kind::Gauge => s.push_str(&format!("  {:<w$} {:>12} (peak)\n", c.name, c.total)),
                Kind::Total => s.push_str(&format!("  {:<w$} {:>12}\n", c.name, c.total)),
            }
        }
    }
    if !r.hists.is_empty() {
        s.push_str(&format!(
            "{:<w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "latency (ms)",
            "count",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "mean",
            w = w + 2
        ));
        for (n, h) in r.hists.iter().filter(|(_, h)| !h.is_empty()) {
            let m = summarize(h);
            s.push_str(&format!(
                "  {:<w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9.3}\n",
                n,
                m.count,
                ms(m.p50),
                ms(m.p90),
                ms(m.p99),
                ms(m.p999),
                ms(m.max),
                m.mean / 1000.0
            ));
        }
    }
    if !r.metrics.is_empty() {
        s.push_str("metrics:\n");
        for (n, v) in &r.metrics {
            s.push_str(&format!("  {n:<w$} {v:>14.4}\n"));
        }
    }
    for n in &r.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s.push_str(&format!("harness: {}\n", usage_line(&r.harness)));
    if r.harness.cpu_pct > 85.0 && r.harness.wall_s > 2.0 {
        s.push_str("WARNING: the harness used most of its core; it may have been the bottleneck\n");
    }
    if let Some(sv) = &r.server {
        s.push_str(&format!("server:  {}\n", usage_line(sv)));
        s.push_str(&threads_text(sv));
    }
    let issues = |s: &mut String, title: &str, list: &[(String, crate::stats::Issue)]| {
        if list.is_empty() {
            s.push_str(&format!("{title}: none\n"));
            return;
        }
        let total: u64 = list.iter().map(|(_, i)| i.count).sum();
        s.push_str(&format!("{title}: {total}\n"));
        for (k, i) in list {
            s.push_str(&format!("  [{}x] {}\n", i.count, k));
            for e in &i.examples {
                s.push_str(&format!("      e.g. {e}\n"));
            }
        }
    };
    issues(&mut s, "VIOLATIONS", &r.violations);
    issues(&mut s, "transport errors", &r.errors);
    s.push_str(if passed(r, max_errors) {
        "RESULT: PASS\n"
    } else {
        "RESULT: FAIL\n"
    });
    s
}

/// One line per executor thread, one for the other threads, and the
/// busiest executor's share against its target.
fn threads_text(u: &ProcUsage) -> String {
    let mut s = String::new();
    for t in &u.threads {
        let name = if t.executor {
            format!("executor {}", t.name)
        } else {
            format!("{} ({})", t.name, t.threads)
        };
        s.push_str(&format!(
            "server {name:<22} {:>6.1}% of one core, {:>5.1}% of the server's CPU\n",
            u.pct_of_one_core(t.cpu_s),
            u.share_pct(t.cpu_s)
        ));
    }
    if let Some((t, share)) = u.busiest_executor() {
        s.push_str(&format!(
            "server busiest executor: {}, {share:.1}% of the server's CPU time (target <= {BUSIEST_EXECUTOR_SHARE_TARGET_PCT}%)\n",
            t.name
        ));
    }
    s
}

fn usage_json(u: &ProcUsage) -> Value {
    let mut v = json!({
        "cpu_user_s": u.cpu_user_s,
        "cpu_sys_s": u.cpu_sys_s,
        "cpu_pct_of_one_core": u.cpu_pct,
        "wall_s": u.wall_s,
        "rss_kb": u.rss_kb,
        "peak_rss_kb": u.peak_rss_kb,
    });
    if !u.threads.is_empty() {
        v["threads"] = u
            .threads
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "executor": t.executor,
                    "threads": t.threads,
                    "cpu_s": t.cpu_s,
                    "cpu_pct_of_one_core": num(u.pct_of_one_core(t.cpu_s)),
                    "share_of_process_cpu_pct": num(u.share_pct(t.cpu_s)),
                })
            })
            .collect();
        v["busiest_executor_share_pct"] = u.busiest_executor().map_or(Value::Null, |(_, x)| num(x));
    }
    v
}

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

pub fn json(r: &RunResult, max_errors: u64) -> Value {
    let mut counters = Map::new();
    for c in &r.counters {
        counters.insert(
            c.name.clone(),
            json!({
                "total": c.total,
                "per_s": if c.kind == Kind::Rate { num(c.per_s) } else { Value::Null },
                "kind": match c.kind { Kind::Rate => "rate", Kind::Gauge => "gauge", Kind::Total => "total" },
            }),
        );
    }
    let mut lat = Map::new();
    for (n, h) in &r.hists {
        let m = summarize(h);
        lat.insert(
            n.clone(),
            json!({
                "count": m.count, "min": m.min, "p50": m.p50, "p90": m.p90,
                "p99": m.p99, "p99_9": m.p999, "max": m.max, "mean": num(m.mean),
            }),
        );
    }
    let mut metrics = Map::new();
    for (n, v) in &r.metrics {
        metrics.insert(n.clone(), num(*v));
    }
    let issues = |l: &[(String, crate::stats::Issue)]| -> Value {
        Value::Array(
            l.iter()
                .map(|(k, i)| json!({"kind": k, "count": i.count, "examples": i.examples}))
                .collect(),
        )
    };
    json!({
        "scenario": r.scenario,
        "target": r.target,
        "measured_s": num(r.wall_s),
        "pass": passed(r, max_errors),
        "counters": counters,
        "latency_us": lat,
        "metrics": metrics,
        "notes": r.notes,
        "violations": issues(&r.violations),
        "errors": issues(&r.errors),
        "harness": usage_json(&r.harness),
        "server": r.server.as_ref().map(usage_json),
    })
}

/// Key numbers of a run for A/B comparison: (name, value, higher_is_better).
pub fn key_numbers(r: &RunResult) -> Vec<(String, f64, bool)> {
    let mut v = Vec::new();
    for c in &r.counters {
        if c.kind == Kind::Rate {
            v.push((format!("{} /s", c.name), c.per_s, true));
        }
    }
    for (n, h) in r.hists.iter().filter(|(_, h)| !h.is_empty()) {
        let m = summarize(h);
        v.push((format!("{n} p50 ms"), m.p50 as f64 / 1000.0, false));
        v.push((format!("{n} p99 ms"), m.p99 as f64 / 1000.0, false));
        v.push((format!("{n} p99.9 ms"), m.p999 as f64 / 1000.0, false));
    }
    for (n, x) in &r.metrics {
        v.push((n.clone(), *x, true));
    }
    if let Some(s) = &r.server {
        v.push(("server cpu %".into(), s.cpu_pct, false));
        v.push((
            "server peak RSS MB".into(),
            s.peak_rss_kb as f64 / 1024.0,
            false,
        ));
        for t in s.threads.iter().filter(|t| t.executor) {
            v.push((
                format!("server {} cpu %", t.name),
                s.pct_of_one_core(t.cpu_s),
                false,
            ));
        }
        if let Some((_, share)) = s.busiest_executor() {
            v.push(("server busiest executor share %".into(), share, false));
        }
    }
    v
}

pub fn compare_text(a: &RunResult, b: &RunResult) -> String {
    let mut s = format!(
        "== compare {}: A = {}  B = {} ==\n{:<40} {:>14} {:>14} {:>8}\n",
        a.scenario, a.target, b.target, "metric", "A", "B", "B/A"
    );
    let kb = key_numbers(b);
    for (n, va, _) in key_numbers(a) {
        let vb = kb.iter().find(|(m, _, _)| *m == n).map(|x| x.1);
        let (vb_s, ratio) = match vb {
            Some(vb) => (format!("{vb:.3}"), ratio_str(va, vb)),
            None => ("-".into(), "-".into()),
        };
        s.push_str(&format!("{n:<40} {va:>14.3} {vb_s:>14} {ratio:>8}\n"));
    }
    s
}

fn ratio_str(a: f64, b: f64) -> String {
    if a == 0.0 {
        "-".into()
    } else {
        format!("{:.3}", b / a)
    }
}

pub fn compare_json(a: &RunResult, b: &RunResult, max_errors: u64) -> Value {
    let mut ratios = Map::new();
    let kb = key_numbers(b);
    for (n, va, hib) in key_numbers(a) {
        if let Some((_, vb, _)) = kb.iter().find(|(m, _, _)| *m == n) {
            ratios.insert(
                n,
                json!({"a": num(va), "b": num(*vb), "b_over_a": if va == 0.0 { Value::Null } else { num(vb / va) }, "higher_is_better": hib}),
            );
        }
    }
    json!({"compare": {"a": json(a, max_errors), "b": json(b, max_errors), "ratios": ratios}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_hist, Stats};
    use crate::usage::ThreadCpu;

    fn sample() -> RunResult {
        let s = Stats::new();
        s.start_window();
        let c = s.counter("sent", Kind::Rate);
        c.add(1000);
        s.counter("open", Kind::Gauge).add(7);
        let h = s.hist("fanout");
        for v in 1..=1000u64 {
            h.record_us(v * 10); // 10 us .. 10 ms uniformly
        }
        s.metric("delivery_ratio", 0.25);
        s.violation("bad <shape>", || "got {\"x\":1}".into());
        let mut r = s.result("meter", "http://127.0.0.1:8080");
        r.wall_s = 10.0;
        r.counters[0].per_s = 100.0;
        let thread = |name: &str, executor, threads, cpu_s| ThreadCpu {
            name: name.into(),
            executor,
            threads,
            cpu_s,
        };
        r.server = Some(ProcUsage {
            cpu_user_s: 3.0,
            cpu_sys_s: 2.0,
            cpu_pct: 50.0,
            wall_s: 10.0,
            threads: vec![
                thread("kakigori-1", true, 1, 3.5),
                thread("kakigori-2", true, 1, 1.25),
                thread("other threads", false, 17, 0.25),
            ],
            ..ProcUsage::default()
        });
        r
    }

    #[test]
    fn percentiles() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let m = summarize(&h);
        assert_eq!(m.count, 10_000);
        assert!((4990..=5010).contains(&m.p50), "{}", m.p50);
        assert!((8990..=9010).contains(&m.p90));
        assert!((9890..=9910).contains(&m.p99));
        assert!((9980..=10010).contains(&m.p999));
        assert!((9995..=10010).contains(&m.max));
        assert_eq!(summarize(&new_hist()).count, 0);
        assert_eq!(ms(1500), "1.500");
    }

    #[test]
    fn text_report() {
        let r = sample();
        let t = text(&r, 0);
        assert!(t.contains("meter"));
        assert!(t.contains("sent"));
        assert!(t.contains("100.0/s"));
        assert!(t.contains("fanout"));
        assert!(t.contains("VIOLATIONS: 1"));
        assert!(t.contains("RESULT: FAIL"));
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("server ")).collect();
        assert_eq!(
            lines,
            [
                "server executor kakigori-1      35.0% of one core,  70.0% of the server's CPU",
                "server executor kakigori-2      12.5% of one core,  25.0% of the server's CPU",
                "server other threads (17)        2.5% of one core,   5.0% of the server's CPU",
                "server busiest executor: kakigori-1, 70.0% of the server's CPU time (target <= 65%)",
            ]
        );
    }

    #[test]
    fn json_report() {
        let r = sample();
        let v = json(&r, 0);
        assert_eq!(v["scenario"], "meter");
        assert_eq!(v["pass"], false);
        assert_eq!(v["counters"]["sent"]["total"], 1000);
        assert_eq!(v["counters"]["sent"]["per_s"], 100.0);
        assert_eq!(v["counters"]["open"]["kind"], "gauge");
        let p50 = v["latency_us"]["fanout"]["p50"].as_u64().unwrap();
        assert!((4990..=5010).contains(&p50));
        assert_eq!(v["latency_us"]["fanout"]["count"], 1000);
        assert_eq!(v["metrics"]["delivery_ratio"], 0.25);
        assert_eq!(v["violations"][0]["kind"], "bad <shape>");
        assert_eq!(v["violations"][0]["count"], 1);
        let threads = &v["server"]["threads"];
        assert_eq!(threads[0]["name"], "kakigori-1");
        assert_eq!(threads[0]["executor"], true);
        assert_eq!(threads[0]["cpu_pct_of_one_core"], 35.0);
        assert_eq!(threads[0]["share_of_process_cpu_pct"], 70.0);
        assert_eq!(threads[2]["threads"], 17);
        assert_eq!(v["server"]["busiest_executor_share_pct"], 70.0);
        assert!(v["harness"].get("threads").is_none());
        // round-trips through text
        let txt = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&txt).unwrap();
        assert_eq!(back, v);
        let c = compare_json(&r, &r, 0);
        assert_eq!(c["compare"]["ratios"]["sent /s"]["b_over_a"], 1.0);
        let busiest = &c["compare"]["ratios"]["server busiest executor share %"];
        assert_eq!(
            (busiest["a"].as_f64(), busiest["higher_is_better"].as_bool()),
            (Some(70.0), Some(false))
        );
        assert_eq!(c["compare"]["ratios"]["server kakigori-2 cpu %"]["b"], 12.5);
        assert!(compare_text(&r, &r).contains("1.000"));
    }
}
