//! The final report. It is built once, as JSON (`--json` prints it); the
//! human text and the `--compare` table are read back from that JSON, so
//! the three can never disagree.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::stats::{Issues, Kind, Stats};
use crate::usage::{Usage, BUSIEST_EXECUTOR_SHARE_TARGET_PCT};

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// Count, min, p50, p90, p99, p99.9, max and mean in microseconds.
fn latency(h: &Histogram<u64>) -> Value {
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    json!({
        "count": h.len(), "min": if h.is_empty() { 0 } else { h.min() }, "p50": q(0.5),
        "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999), "max": h.max(), "mean": num(h.mean()),
    })
}

fn usage(u: &Usage) -> Value {
    let mut v = json!({
        "cpu_user_s": u.cpu_user_s, "cpu_sys_s": u.cpu_sys_s,
        "cpu_pct_of_one_core": num(u.pct_of_one_core(u.cpu_s())), "wall_s": u.wall_s,
        "rss_kb": u.rss_kb, "peak_rss_kb": u.peak_rss_kb,
    });
    if !u.threads.is_empty() {
        let thread = |t: &crate::usage::ThreadCpu| {
            json!({
                "name": t.name, "executor": t.executor, "threads": t.threads, "cpu_s": t.cpu_s,
                "cpu_pct_of_one_core": num(u.pct_of_one_core(t.cpu_s)),
                "share_of_process_cpu_pct": num(u.share_pct(t.cpu_s)),
            })
        };
        v["threads"] = u.threads.iter().map(thread).collect();
        v["busiest_executor_share_pct"] = u.busiest_executor().map_or(Value::Null, |(_, x)| num(x));
    }
    v
}

fn issues(i: &Issues) -> Value {
    let list = i.get();
    let each = list
        .iter()
        .map(|(k, (n, ex))| json!({"kind": k, "count": n, "examples": ex}));
    each.collect()
}

/// Everything one server's runs measured; `pass` decides the exit code.
pub fn json(st: &Stats, scenario: &str, target: &str, max_errors: u64) -> Value {
    let wall = st.measured_s().max(1e-9);
    let mut counters = Map::new();
    for c in st.counters() {
        let (kind, per_s) = match c.kind {
            Kind::Rate => ("rate", num(c.reported() as f64 / wall)),
            Kind::Gauge => ("gauge", Value::Null),
            Kind::Total => ("total", Value::Null),
        };
        let v = json!({"total": c.reported(), "per_s": per_s, "kind": kind});
        counters.insert(c.name.to_string(), v);
    }
    let lat: Map<String, Value> = st
        .hists()
        .iter()
        .map(|(n, h)| (n.clone(), latency(h)))
        .collect();
    let metrics: Map<String, Value> = st.metrics().into_iter().map(|(n, v)| (n, num(v))).collect();
    json!({
        "scenario": scenario,
        "target": target,
        "measured_s": num(wall),
        "pass": st.violations.total() == 0 && st.errors.total() <= max_errors,
        "counters": counters,
        "latency_us": lat,
        "metrics": metrics,
        "notes": *st.notes.borrow(),
        "violations": issues(&st.violations),
        "errors": issues(&st.errors),
        "harness": usage(&st.harness.borrow()),
        "server": st.server.borrow().as_ref().map(usage),
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn entries(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flatten()
}

fn usage_line(u: &Value) -> String {
    format!(
        "cpu {:.2} s user + {:.2} s sys = {:.1}% of one core over {:.1} s; RSS {:.1} MB (peak {:.1} MB)",
        f(&u["cpu_user_s"]),
        f(&u["cpu_sys_s"]),
        f(&u["cpu_pct_of_one_core"]),
        f(&u["wall_s"]),
        f(&u["rss_kb"]) / 1024.0,
        f(&u["peak_rss_kb"]) / 1024.0
    )
}

/// The human report of [`json`].
pub fn text(r: &Value) -> String {
    let mut s = format!(
        "== {} @ {} -- {:.1} s measured ==\n",
        r["scenario"].as_str().unwrap_or(""),
        r["target"].as_str().unwrap_or(""),
        f(&r["measured_s"])
    );
    let names = ["counters", "latency_us", "metrics"]
        .map(|k| entries(&r[k]).map(|(n, _)| n.chars().count()));
    let w = names.into_iter().flatten().max().unwrap_or(0).max(12);
    if entries(&r["counters"]).next().is_some() {
        s += "counters:\n";
    }
    for (n, c) in entries(&r["counters"]) {
        s += &match c["kind"].as_str() {
            Some("rate") => format!("  {n:<w$} {:>12} {:>12.1}/s\n", c["total"], f(&c["per_s"])),
            Some("gauge") => format!("  {n:<w$} {:>12} (peak)\n", c["total"]),
            _ => format!("  {n:<w$} {:>12}\n", c["total"]),
        };
    }
    let lat: Vec<_> = entries(&r["latency_us"])
        .filter(|(_, l)| l["count"] != 0)
        .collect();
    if !lat.is_empty() {
        let cols = ["count", "p50", "p90", "p99", "p99.9", "max", "mean"];
        s += &format!("{:<w2$}", "latency (ms)", w2 = w + 2);
        s += &cols.map(|c| format!(" {c:>9}")).concat();
        s += "\n";
    }
    for (n, l) in lat {
        let ms = ["p50", "p90", "p99", "p99_9", "max", "mean"]
            .map(|k| format!(" {:>9.3}", f(&l[k]) / 1000.0));
        s += &format!("  {n:<w$} {:>9}{}\n", l["count"], ms.concat());
    }
    if entries(&r["metrics"]).next().is_some() {
        s += "metrics:\n";
    }
    for (n, v) in entries(&r["metrics"]) {
        s += &format!("  {n:<w$} {:>14.4}\n", f(v));
    }
    for n in r["notes"].as_array().into_iter().flatten() {
        s += &format!("note: {}\n", n.as_str().unwrap_or(""));
    }
    s += &format!("harness: {}\n", usage_line(&r["harness"]));
    if f(&r["harness"]["cpu_pct_of_one_core"]) > 85.0 && f(&r["harness"]["wall_s"]) > 2.0 {
        s += "WARNING: the harness used most of its core; it may have been the bottleneck\n";
    }
    let sv = &r["server"];
    if !sv.is_null() {
        s += &format!("server:  {}\n", usage_line(sv));
    }
    for t in sv["threads"].as_array().into_iter().flatten() {
        let name = match t["executor"].as_bool() {
            Some(true) => format!("executor {}", t["name"].as_str().unwrap_or("")),
            _ => format!("{} ({})", t["name"].as_str().unwrap_or(""), t["threads"]),
        };
        s += &format!(
            "server {name:<22} {:>6.1}% of one core, {:>5.1}% of the server's CPU\n",
            f(&t["cpu_pct_of_one_core"]),
            f(&t["share_of_process_cpu_pct"])
        );
    }
    if let Some(share) = sv["busiest_executor_share_pct"].as_f64() {
        let threads = sv["threads"].as_array().into_iter().flatten();
        let execs = threads.filter(|t| t["executor"] == true);
        let busiest = execs.max_by(|a, b| f(&a["cpu_s"]).total_cmp(&f(&b["cpu_s"])));
        let name = busiest.and_then(|t| t["name"].as_str()).unwrap_or("");
        s += &format!("server busiest executor: {name}, {share:.1}% of the server's CPU time (target <= {BUSIEST_EXECUTOR_SHARE_TARGET_PCT}%)\n");
    }
    for (title, key) in [("VIOLATIONS", "violations"), ("transport errors", "errors")] {
        let list = r[key].as_array().cloned().unwrap_or_default();
        match list
            .iter()
            .map(|i| i["count"].as_u64().unwrap_or(0))
            .sum::<u64>()
        {
            0 => s += &format!("{title}: none\n"),
            total => s += &format!("{title}: {total}\n"),
        }
        for i in &list {
            s += &format!("  [{}x] {}\n", i["count"], i["kind"].as_str().unwrap_or(""));
            for e in i["examples"].as_array().into_iter().flatten() {
                s += &format!("      e.g. {}\n", e.as_str().unwrap_or(""));
            }
        }
    }
    s + if r["pass"] == true {
        "RESULT: PASS\n"
    } else {
        "RESULT: FAIL\n"
    }
}

/// The numbers an A/B comparison puts side by side: (name, value,
/// higher is better).
pub fn key_numbers(r: &Value) -> Vec<(String, f64, bool)> {
    let mut v = Vec::new();
    for (n, c) in entries(&r["counters"]).filter(|(_, c)| c["kind"] == "rate") {
        v.push((format!("{n} /s"), f(&c["per_s"]), true));
    }
    for (n, l) in entries(&r["latency_us"]).filter(|(_, l)| l["count"] != 0) {
        for (p, k) in [("p50", "p50"), ("p99", "p99"), ("p99.9", "p99_9")] {
            v.push((format!("{n} {p} ms"), f(&l[k]) / 1000.0, false));
        }
    }
    v.extend(entries(&r["metrics"]).map(|(n, x)| (n.clone(), f(x), true)));
    let s = &r["server"];
    if !s.is_null() {
        v.push(("server cpu %".into(), f(&s["cpu_pct_of_one_core"]), false));
        v.push((
            "server peak RSS MB".into(),
            f(&s["peak_rss_kb"]) / 1024.0,
            false,
        ));
    }
    for t in s["threads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["executor"] == true)
    {
        let name = t["name"].as_str().unwrap_or("");
        v.push((
            format!("server {name} cpu %"),
            f(&t["cpu_pct_of_one_core"]),
            false,
        ));
    }
    if let Some(x) = s["busiest_executor_share_pct"].as_f64() {
        v.push(("server busiest executor share %".into(), x, false));
    }
    v
}

/// (name, A, B, higher is better) for the numbers both runs have.
fn pairs(a: &Value, b: &Value) -> Vec<(String, f64, f64, bool)> {
    let kb = key_numbers(b);
    let in_b = |n: &str| kb.iter().find(|(m, _, _)| m == n).map(|x| x.1);
    let both = key_numbers(a)
        .into_iter()
        .filter_map(|(n, va, hib)| Some((in_b(&n)?, n, va, hib)));
    both.map(|(vb, n, va, hib)| (n, va, vb, hib)).collect()
}

pub fn compare_text(a: &Value, b: &Value) -> String {
    let mut s = format!(
        "== compare {}: A = {}  B = {} ==\n{:<40} {:>14} {:>14} {:>8}\n",
        a["scenario"].as_str().unwrap_or(""),
        a["target"].as_str().unwrap_or(""),
        b["target"].as_str().unwrap_or(""),
        "metric",
        "A",
        "B",
        "B/A"
    );
    for (n, va, vb, _) in pairs(a, b) {
        let ratio = if va == 0.0 {
            "-".into()
        } else {
            format!("{:.3}", vb / va)
        };
        s += &format!("{n:<40} {va:>14.3} {vb:>14.3} {ratio:>8}\n");
    }
    s
}

pub fn compare_json(a: &Value, b: &Value) -> Value {
    let mut ratios = Map::new();
    for (n, va, vb, hib) in pairs(a, b) {
        let ratio = if va == 0.0 { Value::Null } else { num(vb / va) };
        let v = json!({"a": num(va), "b": num(vb), "b_over_a": ratio, "higher_is_better": hib});
        ratios.insert(n, v);
    }
    json!({"compare": {"a": a, "b": b, "ratios": ratios}})
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::usage::ThreadCpu;

    fn sample() -> Value {
        let s = Stats::default();
        s.counter("sent", Kind::Rate).add(1000);
        s.counter("open", Kind::Gauge).add(7);
        let h = s.hist("fanout");
        for v in 1..=1000u64 {
            h.record(Duration::from_micros(v * 10)); // 10 us .. 10 ms uniformly
        }
        s.metric("delivery_ratio", 0.25);
        s.violation("bad <shape>", || "got {\"x\":1}".into());
        let thread = |name: &str, executor, threads, cpu_s| ThreadCpu {
            name: name.into(),
            executor,
            threads,
            cpu_s,
        };
        *s.server.borrow_mut() = Some(Usage {
            cpu_user_s: 3.0,
            cpu_sys_s: 2.0,
            wall_s: 10.0,
            threads: vec![
                thread("kakigori-1", true, 1, 3.5),
                thread("kakigori-2", true, 1, 1.25),
                thread("other threads", false, 17, 0.25),
            ],
            ..Usage::default()
        });
        let mut r = json(&s, "meter", "http://127.0.0.1:8080", 0);
        r["measured_s"] = json!(10.0);
        r["counters"]["sent"]["per_s"] = json!(100.0);
        r
    }

    #[test]
    fn json_report() {
        let v = sample();
        assert_eq!(
            (v["scenario"].as_str(), v["pass"].as_bool()),
            (Some("meter"), Some(false))
        );
        assert_eq!(v["counters"]["sent"]["total"], 1000);
        assert_eq!(v["counters"]["open"]["kind"], "gauge");
        let fanout = &v["latency_us"]["fanout"];
        assert_eq!(fanout["count"], 1000);
        assert!(
            (4990..=5010).contains(&fanout["p50"].as_u64().unwrap()),
            "{fanout}"
        );
        assert!(
            (9890..=9910).contains(&fanout["p99"].as_u64().unwrap()),
            "{fanout}"
        );
        assert_eq!(v["metrics"]["delivery_ratio"], 0.25);
        assert_eq!(v["violations"][0]["kind"], "bad <shape>");
        let threads = &v["server"]["threads"];
        assert_eq!(
            (
                threads[0]["name"].as_str(),
                threads[0]["executor"].as_bool()
            ),
            (Some("kakigori-1"), Some(true))
        );
        assert_eq!(threads[0]["cpu_pct_of_one_core"], 35.0);
        assert_eq!(threads[0]["share_of_process_cpu_pct"], 70.0);
        assert_eq!(threads[2]["threads"], 17);
        assert_eq!(v["server"]["busiest_executor_share_pct"], 70.0);
        assert!(v["harness"].get("threads").is_none());
        let c = compare_json(&v, &v);
        assert_eq!(c["compare"]["ratios"]["sent /s"]["b_over_a"], 1.0);
        let busiest = &c["compare"]["ratios"]["server busiest executor share %"];
        assert_eq!(
            (busiest["a"].as_f64(), busiest["higher_is_better"].as_bool()),
            (Some(70.0), Some(false))
        );
        assert_eq!(c["compare"]["ratios"]["server kakigori-2 cpu %"]["b"], 12.5);
        assert!(compare_text(&v, &v).contains("fanout p99 ms"));
    }

    #[test]
    fn text_report() {
        let t = text(&sample());
        for want in [
            "== meter @ http://127.0.0.1:8080 -- 10.0 s",
            "100.0/s",
            "  fanout ",
            "VIOLATIONS: 1",
            "RESULT: FAIL",
        ] {
            assert!(t.contains(want), "{want}: {t}");
        }
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
}
