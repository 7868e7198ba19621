//! The final report. It is built once, as JSON (`--json` prints it); the
//! human text and the `--compare` table are read back from that JSON, so
//! the three never disagree.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::stats::{Issues, Kind, Stats};
use crate::usage::{ThreadCpu, Usage, BUSIEST_EXECUTOR_SHARE_TARGET_PCT};

/// JSON has no NaN or infinity: those are null.
fn num(x: f64) -> Value {
    json!(x.is_finite().then_some(x))
}

/// Count, p50, p90, p99, p99.9, max and mean in microseconds.
fn latency(h: &Histogram<u64>) -> Value {
    let q = |p: f64| h.value_at_quantile(p);
    json!({
        "count": h.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999),
        "max": h.max(), "mean": num(h.mean()),
    })
}

fn usage(u: &Usage) -> Value {
    let mut v = json!({
        "cpu_user_s": u.cpu_user_s, "cpu_sys_s": u.cpu_sys_s,
        "cpu_pct_of_one_core": num(u.pct_of_one_core(u.cpu_s())), "wall_s": u.wall_s,
        "rss_kb": u.rss_kb, "peak_rss_kb": u.peak_rss_kb,
    });
    let thread = |t: &ThreadCpu| {
        json!({
            "name": t.name, "executor": t.executor, "threads": t.threads, "cpu_s": t.cpu_s,
            "cpu_pct_of_one_core": num(u.pct_of_one_core(t.cpu_s)),
            "share_of_process_cpu_pct": num(u.share_pct(t.cpu_s)),
        })
    };
    if let Some((busiest, share)) = u.busiest_executor() {
        v["threads"] = u.threads.iter().map(thread).collect();
        v["busiest_executor"] = json!(busiest.name);
        v["busiest_executor_share_pct"] = num(share);
    }
    v
}

fn issues(i: &Issues) -> Value {
    let each = |(k, (n, ex)): (&String, &(u64, Vec<String>))| json!({"kind": k, "count": n, "examples": ex});
    i.get().iter().map(each).collect()
}

/// Everything one server's runs measured; `pass` decides the exit code.
pub fn json(st: &Stats, scenario: &str, target: &str, max_errors: u64) -> Value {
    let wall = st.measured_s().max(1e-9);
    let mut counters = Map::new();
    for c in st.counters() {
        let per_s = (c.kind == Kind::Rate).then(|| num(c.reported() as f64 / wall));
        let v = json!({"total": c.reported(), "per_s": per_s, "kind": c.kind});
        counters.insert(c.name.to_string(), v);
    }
    let lat = |(n, h): &(String, Histogram<u64>)| (n.clone(), latency(h));
    let lat: Map<_, _> = st.hists().iter().map(lat).collect();
    let metrics: Map<_, _> = st.metrics().into_iter().map(|(n, v)| (n, num(v))).collect();
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

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn entries(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flatten()
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn usage_line(u: &Value) -> String {
    let (cpu, wall) = (f(&u["cpu_pct_of_one_core"]), f(&u["wall_s"]));
    let (user, sys) = (f(&u["cpu_user_s"]), f(&u["cpu_sys_s"]));
    let (rss, peak) = (f(&u["rss_kb"]) / 1024.0, f(&u["peak_rss_kb"]) / 1024.0);
    format!("cpu {user:.2} s user + {sys:.2} s sys = {cpu:.1}% of one core over {wall:.1} s; RSS {rss:.1} MB (peak {peak:.1} MB)\n")
}

/// The human report of [`json`].
pub fn text(r: &Value) -> String {
    let (scenario, target, wall) = (s(&r["scenario"]), s(&r["target"]), f(&r["measured_s"]));
    let mut out = format!("== {scenario} @ {target} -- {wall:.1} s measured ==\n");
    let names = ["counters", "latency_us", "metrics"].map(|k| entries(&r[k]).map(|e| e.0.len()));
    let w = names.into_iter().flatten().max().unwrap_or(0).max(12);
    out += "counters:\n";
    for (n, c) in entries(&r["counters"]) {
        let (total, per_s) = (c["total"].as_u64().unwrap_or(0), f(&c["per_s"]));
        out += &match s(&c["kind"]) {
            "rate" => format!("  {n:<w$} {total:>12} {per_s:>12.1}/s\n"),
            "gauge" => format!("  {n:<w$} {total:>12} (peak)\n"),
            _ => format!("  {n:<w$} {total:>12}\n"),
        };
    }
    let head = ["count", "p50", "p90", "p99", "p99.9", "max", "mean"].map(|c| format!(" {c:>9}"));
    out += &format!("{:<w2$}{}\n", "latency (ms)", head.concat(), w2 = w + 2);
    for (n, l) in entries(&r["latency_us"]).filter(|(_, l)| l["count"] != 0) {
        let ms = ["p50", "p90", "p99", "p99_9", "max", "mean"].map(|k| f(&l[k]) / 1000.0);
        let ms = ms.map(|x| format!(" {x:>9.3}")).concat();
        out += &format!("  {n:<w$} {:>9}{ms}\n", l["count"].as_u64().unwrap_or(0));
    }
    out += "metrics:\n";
    for (n, v) in entries(&r["metrics"]) {
        out += &format!("  {n:<w$} {:>14.4}\n", f(v));
    }
    for n in list(&r["notes"]) {
        out += &format!("note: {}\n", s(n));
    }
    let (harness, server) = (&r["harness"], &r["server"]);
    out += &format!("harness: {}", usage_line(harness));
    if f(&harness["cpu_pct_of_one_core"]) > 85.0 && f(&harness["wall_s"]) > 2.0 {
        out += "WARNING: the harness used most of its core; it may have been the bottleneck\n";
    }
    if !server.is_null() {
        out += &format!("server:  {}", usage_line(server));
    }
    for t in list(&server["threads"]) {
        let name = match t["executor"] == true {
            true => format!("executor {}", s(&t["name"])),
            false => format!("{} ({})", s(&t["name"]), t["threads"]),
        };
        let cpu = f(&t["cpu_pct_of_one_core"]);
        let share = f(&t["share_of_process_cpu_pct"]);
        out += &format!(
            "server {name:<22} {cpu:>6.1}% of one core, {share:>5.1}% of the server's CPU\n"
        );
    }
    if let Some(share) = server["busiest_executor_share_pct"].as_f64() {
        let name = s(&server["busiest_executor"]);
        let target = BUSIEST_EXECUTOR_SHARE_TARGET_PCT;
        out += &format!("server busiest executor: {name}, {share:.1}% of the server's CPU time (target <= {target}%)\n");
    }
    for (title, key) in [("VIOLATIONS", "violations"), ("transport errors", "errors")] {
        let total: u64 = list(&r[key]).filter_map(|i| i["count"].as_u64()).sum();
        let total = if total == 0 {
            "none".into()
        } else {
            total.to_string()
        };
        out += &format!("{title}: {total}\n");
        for i in list(&r[key]) {
            out += &format!("  [{}x] {}\n", i["count"], s(&i["kind"]));
            for e in list(&i["examples"]) {
                out += &format!("      e.g. {}\n", s(e));
            }
        }
    }
    let result = if r["pass"] == true { "PASS" } else { "FAIL" };
    out + &format!("RESULT: {result}\n")
}

/// The numbers an A/B comparison puts side by side: (name, value,
/// higher is better).
fn key_numbers(r: &Value) -> Vec<(String, f64, bool)> {
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
    let server = &r["server"];
    for t in list(&server["threads"]).filter(|t| t["executor"] == true) {
        let cpu = f(&t["cpu_pct_of_one_core"]);
        v.push((format!("server {} cpu %", s(&t["name"])), cpu, false));
    }
    let whole = [
        ("cpu %", "cpu_pct_of_one_core", 1.0),
        ("peak RSS MB", "peak_rss_kb", 1024.0),
    ];
    let busiest = (
        "busiest executor share %",
        "busiest_executor_share_pct",
        1.0,
    );
    for (n, k, per) in whole.into_iter().chain([busiest]) {
        let x = server[k].as_f64();
        v.extend(x.map(|x| (format!("server {n}"), x / per, false)));
    }
    v
}

/// A and B side by side: `{"compare": {"a", "b", "ratios"}}`, where ratios
/// holds a, b, b/a and which way is better for every number both have.
pub fn compare_json(a: &Value, b: &Value) -> Value {
    let kb = key_numbers(b);
    let mut ratios = Map::new();
    for (n, va, hib) in key_numbers(a) {
        if let Some((_, vb, _)) = kb.iter().find(|(m, _, _)| *m == n) {
            let ratio = if va == 0.0 { Value::Null } else { num(vb / va) };
            let v =
                json!({"a": num(va), "b": num(*vb), "b_over_a": ratio, "higher_is_better": hib});
            ratios.insert(n, v);
        }
    }
    json!({"compare": {"a": a, "b": b, "ratios": ratios}})
}

/// The table of [`compare_json`].
pub fn compare_text(c: &Value) -> String {
    let (a, b) = (&c["compare"]["a"], &c["compare"]["b"]);
    let (scenario, ta, tb) = (s(&a["scenario"]), s(&a["target"]), s(&b["target"]));
    let mut out = format!("== compare {scenario}: A = {ta}  B = {tb} ==\n");
    out += &format!("{:<40} {:>14} {:>14} {:>8}\n", "metric", "A", "B", "B/A");
    for (n, x) in entries(&c["compare"]["ratios"]) {
        let ratio = x["b_over_a"].as_f64();
        let ratio = ratio.map_or("-".into(), |r| format!("{r:.3}"));
        out += &format!(
            "{n:<40} {:>14.3} {:>14.3} {ratio:>8}\n",
            f(&x["a"]),
            f(&x["b"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn json_text_and_comparison() {
        let st = Stats::default();
        (0..1000).for_each(|_| st.counter("sent", Kind::Rate).inc());
        let fanout = st.hist("fanout");
        (1..=1000u64).for_each(|v| fanout.record(Duration::from_micros(v * 10)));
        st.violation("bad <shape>", || "got {\"x\":1}".into());
        let cpu = [
            ("kakigori-1", true, 1, 3.5),
            ("kakigori-2", true, 1, 1.25),
            ("other threads", false, 17, 0.25),
        ];
        let threads = cpu.map(|(n, e, t, s)| ThreadCpu::new(n, e, t, s)).to_vec();
        let u = Usage {
            cpu_user_s: 3.0,
            cpu_sys_s: 2.0,
            wall_s: 10.0,
            threads,
            ..Usage::default()
        };
        *st.server.borrow_mut() = Some(u);
        let mut v = json(&st, "meter", "http://127.0.0.1:8080", 0);
        (v["measured_s"], v["counters"]["sent"]["per_s"]) = (json!(10.0), json!(100.0));
        let p = |k: &str| v["latency_us"]["fanout"][k].as_u64().unwrap();
        assert!((4990..=5010).contains(&p("p50")) && (9890..=9910).contains(&p("p99")));
        assert_eq!((p("count"), v["pass"].as_bool()), (1000, Some(false)));
        let t = text(&v);
        for want in [
            "meter @ http://127.0.0.1:8080 -- 10.0 s",
            "100.0/s",
            "VIOLATIONS: 1",
            "FAIL",
        ] {
            assert!(t.contains(want), "{want}: {t}");
        }
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with("server ")).collect();
        let want = [
            "server executor kakigori-1      35.0% of one core,  70.0% of the server's CPU",
            "server executor kakigori-2      12.5% of one core,  25.0% of the server's CPU",
            "server other threads (17)        2.5% of one core,   5.0% of the server's CPU",
            "server busiest executor: kakigori-1, 70.0% of the server's CPU time (target <= 65%)",
        ];
        assert_eq!(lines, want);
        let c = compare_json(&v, &v);
        let ratio = |n: &str, k: &str| f(&c["compare"]["ratios"][n][k]);
        assert_eq!(
            (
                ratio("sent /s", "b_over_a"),
                ratio("server kakigori-2 cpu %", "b")
            ),
            (1.0, 12.5)
        );
        assert_eq!(ratio("server busiest executor share %", "a"), 70.0);
        assert!(compare_text(&c).contains("fanout p99 ms"));
    }
}
