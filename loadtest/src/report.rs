//! Final reports: human text, JSON, and a hand-written SVG percentile plot.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::stats::{Kind, ProcUsage, RunResult};

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

fn usage_json(u: &ProcUsage) -> Value {
    json!({
        "cpu_user_s": u.cpu_user_s,
        "cpu_sys_s": u.cpu_sys_s,
        "cpu_pct_of_one_core": u.cpu_pct,
        "wall_s": u.wall_s,
        "rss_kb": u.rss_kb,
        "peak_rss_kb": u.peak_rss_kb,
    })
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound (1, 2, 2.5, 5 x 10^k) >= x.
pub fn nice_ceil(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let e = x.log10().floor();
    let base = 10f64.powf(e);
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * base >= x * (1.0 - 1e-12) {
            return m * base;
        }
    }
    10.0 * base
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Latency by percentile, HdrHistogram style: x = percentile on a
/// log scale of 1/(1-p) (0%, 90%, 99%, 99.9%, ...), y = latency in ms.
pub fn svg(title: &str, series: &[(String, &Histogram<u64>)]) -> String {
    let (w, h) = (980.0f64, 520.0f64);
    let (ml, mr, mt, mb) = (70.0, 300.0, 40.0, 50.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let series: Vec<&(String, &Histogram<u64>)> =
        series.iter().filter(|(_, h)| !h.is_empty()).collect();
    let max_count = series.iter().map(|(_, h)| h.len()).max().unwrap_or(1);
    let decades = ((max_count as f64).log10().ceil() as i32).clamp(2, 6);
    let xmax = decades as f64;
    let ymax_us = series.iter().map(|(_, h)| h.max()).max().unwrap_or(1000) as f64;
    let ymax = nice_ceil(ymax_us / 1000.0);
    // Log y axis when the series span more than two decades (e.g. festival
    // steps from 0.2 ms to 30 s); otherwise linear from 0.
    let ymin_us = series
        .iter()
        .map(|(_, h)| h.min().max(1))
        .min()
        .unwrap_or(1) as f64;
    let log = ymax_us / ymin_us > 100.0;
    let (lo_dec, hi_dec) = (
        (ymin_us / 1000.0).log10().floor(),
        (ymax_us / 1000.0)
            .log10()
            .ceil()
            .max((ymin_us / 1000.0).log10().floor() + 1.0),
    );
    let xp = |xv: f64| ml + pw * xv / xmax;
    let yp = |ms: f64| {
        if log {
            let l = ms.max(10f64.powf(lo_dec)).log10();
            mt + ph * (1.0 - (l - lo_dec) / (hi_dec - lo_dec))
        } else {
            mt + ph * (1.0 - ms / ymax)
        }
    };
    let yticks: Vec<f64> = if log {
        (lo_dec as i32..=hi_dec as i32)
            .map(|d| 10f64.powi(d))
            .collect()
    } else {
        (0..=5).map(|i| ymax * i as f64 / 5.0).collect()
    };
    let mut s = String::new();
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    ));
    s.push_str(&format!(
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        ml + pw / 2.0,
        esc(title)
    ));
    // grid + x labels
    for d in 0..=decades {
        let x = xp(d as f64);
        let label = match d {
            0 => "0%".to_string(),
            _ => {
                let p = 100.0 - 100.0 / 10f64.powi(d);
                let digits = (d - 2).max(0) as usize;
                format!("{p:.digits$}%")
            }
        };
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{mt}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            mt + ph,
            mt + ph + 18.0
        ));
    }
    for v in yticks {
        let y = yp(v);
        s.push_str(&format!(
            "<line x1=\"{ml}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            ml + pw,
            ml - 6.0,
            y + 4.0,
            fmt_ms(v)
        ));
    }
    s.push_str(&format!(
        "<rect x=\"{ml}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">percentile</text>\n<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">latency (ms{})</text>\n",
        ml + pw / 2.0,
        h - 10.0,
        mt + ph / 2.0,
        mt + ph / 2.0,
        if log { ", log scale" } else { "" }
    ));
    const STEPS: usize = 240;
    for (i, (name, hist)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // past the palette, dashed lines keep series apart
        let dash = if (i / COLORS.len()) % 2 == 1 {
            " stroke-dasharray=\"7 4\""
        } else {
            ""
        };
        let mut pts = String::new();
        for k in 0..=STEPS {
            let xv = xmax * k as f64 / STEPS as f64;
            let q = 1.0 - 10f64.powf(-xv);
            let v = if k == STEPS {
                hist.max()
            } else {
                hist.value_at_quantile(q)
            };
            let y = yp(hist.highest_equivalent(v).min(hist.max()) as f64 / 1000.0);
            pts.push_str(&format!("{:.1},{:.1} ", xp(xv), y));
        }
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
            pts.trim_end()
        ));
        let ly = mt + 10.0 + 36.0 * i as f64;
        let m = summarize(hist);
        s.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"3\"{dash}/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#555\">p50 {} p99 {} max {} ms</text>\n",
            ml + pw + 10.0,
            ml + pw + 30.0,
            ml + pw + 36.0,
            ly + 4.0,
            esc(name),
            ml + pw + 36.0,
            ly + 18.0,
            ms(m.p50),
            ms(m.p99),
            ms(m.max)
        ));
    }
    if series.is_empty() {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no samples</text>\n",
            ml + pw / 2.0,
            mt + ph / 2.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_ms(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 0.001 {
        format!("{v:.4}")
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_hist, Stats};

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
        // round-trips through text
        let txt = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&txt).unwrap();
        assert_eq!(back, v);
        let c = compare_json(&r, &r, 0);
        assert_eq!(c["compare"]["ratios"]["sent /s"]["b_over_a"], 1.0);
        assert!(compare_text(&r, &r).contains("1.000"));
    }

    #[test]
    fn svg_plot() {
        let mut r = sample();
        // 1..10 ms: one decade, so a linear axis
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(1000 + v * 9).unwrap();
        }
        r.hists[0].1 = h;
        let series: Vec<(String, &Histogram<u64>)> = r
            .hists
            .iter()
            .map(|(n, h)| (format!("{n} <&>"), h))
            .collect();
        let s = svg("meter \"test\"", &series);
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 1);
        assert!(s.contains("fanout &lt;&amp;&gt;"));
        assert!(s.contains("meter &quot;test&quot;"));
        assert!(s.contains(">99.9%<"));
        assert!(!s.contains("NaN") && !s.contains("inf"));
        assert!(!s.contains("log scale"));
        // y axis tops out at a nice value above the max (~10 ms)
        let top = nice_ceil(r.hists[0].1.max() as f64 / 1000.0);
        assert!((10.0..=20.0).contains(&top));
        assert!(s.contains(&format!(">{}<", fmt_ms(top))));
        // every polyline point lies inside the plot area
        let pts = s
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for p in pts.split(' ') {
            let (x, y) = p.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((70.0..=680.1).contains(&x), "{x}");
            assert!((40.0..=470.1).contains(&y), "{y}");
        }
        // widely spread series switch to a log axis
        let mut fast = new_hist();
        fast.record(100).unwrap();
        let mut slow = new_hist();
        slow.record(30_000_000).unwrap();
        let l = svg("log", &[("fast".into(), &fast), ("slow".into(), &slow)]);
        assert!(l.contains("log scale"));
        assert!(l.contains(">0.100<") && l.contains(">100000<"));
        assert!(!l.contains("NaN") && !l.contains("inf"));
        let empty = svg("none", &[]);
        assert!(empty.contains("no samples"));
    }

    #[test]
    fn nice() {
        assert_eq!(nice_ceil(0.7), 1.0);
        assert_eq!(nice_ceil(1.2), 2.0);
        assert_eq!(nice_ceil(2.2), 2.5);
        assert_eq!(nice_ceil(4.0), 5.0);
        assert_eq!(nice_ceil(10.0), 10.0);
        assert_eq!(nice_ceil(11.0), 20.0);
    }
}
