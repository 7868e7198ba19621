//! Counters, latency histograms, violations/errors and the live progress line.
//! Everything is single-threaded (one executor), so plain `Cell`/`RefCell`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::usage::ProcUsage;

/// How a counter is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Events; shown as a per-second rate.
    Rate,
    /// A current level (open connections); shown as its value.
    Gauge,
    /// A total, shown only in the final report.
    Total,
}

pub struct Counter {
    pub name: &'static str,
    pub kind: Kind,
    v: Cell<u64>,
    peak: Cell<u64>,
}

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.v.get() + n;
        self.v.set(v);
        if v > self.peak.get() {
            self.peak.set(v);
        }
    }
    /// Highest value ever held (for gauges).
    pub fn peak(&self) -> u64 {
        self.peak.get()
    }
    #[inline]
    pub fn dec(&self) {
        self.v.set(self.v.get().saturating_sub(1));
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.v.get()
    }
}

/// Largest latency recorded: one hour in microseconds.
pub const HIST_MAX_US: u64 = 3_600_000_000;

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

pub struct Hist {
    pub name: String,
    h: RefCell<Histogram<u64>>,
}

impl Hist {
    #[inline]
    pub fn record_us(&self, us: u64) {
        self.h.borrow_mut().saturating_record(us.max(1));
    }
    #[inline]
    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros() as u64);
    }
    #[inline]
    pub fn since(&self, t: Instant) {
        self.record(t.elapsed());
    }
    pub fn count(&self) -> u64 {
        self.h.borrow().len()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Issue {
    pub count: u64,
    pub examples: Vec<String>,
}

/// Grouped problems: kind -> count and the first few examples.
#[derive(Default)]
pub struct Issues {
    map: RefCell<BTreeMap<String, Issue>>,
    total: Cell<u64>,
}

const EXAMPLES: usize = 3;

impl Issues {
    pub fn add(&self, kind: &str, detail: impl FnOnce() -> String) {
        self.total.set(self.total.get() + 1);
        let mut m = self.map.borrow_mut();
        if let Some(i) = m.get_mut(kind) {
            i.count += 1;
            if i.examples.len() < EXAMPLES {
                i.examples.push(detail());
            }
        } else {
            m.insert(
                kind.to_string(),
                Issue {
                    count: 1,
                    examples: vec![detail()],
                },
            );
        }
    }
    pub fn total(&self) -> u64 {
        self.total.get()
    }
    pub fn snapshot(&self) -> Vec<(String, Issue)> {
        self.map
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// All measurements of one scenario run.
pub struct Stats {
    counters: RefCell<Vec<Rc<Counter>>>,
    hists: RefCell<Vec<Rc<Hist>>>,
    pub violations: Issues,
    pub errors: Issues,
    metrics: RefCell<Vec<(String, f64)>>,
    notes: RefCell<Vec<String>>,
    /// Measured phase (rates are computed over it).
    window: Cell<Option<(Instant, Option<Instant>)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            counters: RefCell::new(Vec::new()),
            hists: RefCell::new(Vec::new()),
            violations: Issues::default(),
            errors: Issues::default(),
            metrics: RefCell::new(Vec::new()),
            notes: RefCell::new(Vec::new()),
            window: Cell::new(None),
        }
    }

    pub fn counter(&self, name: &'static str, kind: Kind) -> Rc<Counter> {
        let c = Rc::new(Counter {
            name,
            kind,
            v: Cell::new(0),
            peak: Cell::new(0),
        });
        self.counters.borrow_mut().push(c.clone());
        c
    }

    pub fn hist(&self, name: &str) -> Rc<Hist> {
        let h = Rc::new(Hist {
            name: name.to_string(),
            h: RefCell::new(new_hist()),
        });
        self.hists.borrow_mut().push(h.clone());
        h
    }

    /// Record a protocol violation (the server broke the contract).
    pub fn violation(&self, kind: &str, detail: impl FnOnce() -> String) {
        self.violations.add(kind, detail);
    }

    /// Record a transport error (connect/reset/timeout).
    pub fn error(&self, kind: &str, detail: impl FnOnce() -> String) {
        self.errors.add(kind, detail);
    }

    pub fn metric(&self, name: &str, v: f64) {
        self.metrics.borrow_mut().push((name.to_string(), v));
    }

    pub fn note(&self, s: impl Into<String>) {
        self.notes.borrow_mut().push(s.into());
    }

    pub fn start_window(&self) {
        self.window.set(Some((Instant::now(), None)));
    }

    pub fn end_window(&self) {
        if let Some((s, None)) = self.window.get() {
            self.window.set(Some((s, Some(Instant::now()))));
        }
    }

    /// Seconds of the measured phase (so far).
    pub fn window_s(&self) -> f64 {
        match self.window.get() {
            Some((s, Some(e))) => (e - s).as_secs_f64(),
            Some((s, None)) => s.elapsed().as_secs_f64(),
            None => 0.0,
        }
    }

    pub fn counters(&self) -> Vec<Rc<Counter>> {
        self.counters.borrow().clone()
    }

    /// Owned snapshot for reporting.
    pub fn result(&self, scenario: &str, target: &str) -> RunResult {
        let wall = self.window_s().max(1e-9);
        RunResult {
            scenario: scenario.to_string(),
            target: target.to_string(),
            wall_s: wall,
            counters: self
                .counters
                .borrow()
                .iter()
                .map(|c| {
                    // gauges report their peak
                    let total = if c.kind == Kind::Gauge {
                        c.peak()
                    } else {
                        c.get()
                    };
                    CounterOut {
                        name: c.name.to_string(),
                        kind: c.kind,
                        total,
                        per_s: total as f64 / wall,
                    }
                })
                .collect(),
            hists: self
                .hists
                .borrow()
                .iter()
                .map(|h| (h.name.clone(), h.h.borrow().clone()))
                .collect(),
            metrics: self.metrics.borrow().clone(),
            violations: self.violations.snapshot(),
            errors: self.errors.snapshot(),
            notes: self.notes.borrow().clone(),
            harness: Default::default(),
            server: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct CounterOut {
    pub name: String,
    pub kind: Kind,
    pub total: u64,
    pub per_s: f64,
}

/// Everything a report needs, detached from the live run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub scenario: String,
    pub target: String,
    pub wall_s: f64,
    pub counters: Vec<CounterOut>,
    pub hists: Vec<(String, Histogram<u64>)>,
    pub metrics: Vec<(String, f64)>,
    pub violations: Vec<(String, Issue)>,
    pub errors: Vec<(String, Issue)>,
    pub notes: Vec<String>,
    pub harness: ProcUsage,
    pub server: Option<ProcUsage>,
}

impl RunResult {
    pub fn violation_count(&self) -> u64 {
        self.violations.iter().map(|(_, i)| i.count).sum()
    }
    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|(_, i)| i.count).sum()
    }
    #[cfg(test)]
    pub fn counter(&self, name: &str) -> Option<&CounterOut> {
        self.counters.iter().find(|c| c.name == name)
    }

    /// Merge several runs of the same scenario against the same server.
    pub fn merge(runs: &[RunResult]) -> RunResult {
        let mut out = runs[0].clone();
        for r in &runs[1..] {
            out.wall_s += r.wall_s;
            for c in &r.counters {
                match out.counters.iter_mut().find(|o| o.name == c.name) {
                    Some(o) if o.kind == Kind::Gauge => o.total = o.total.max(c.total),
                    Some(o) => o.total += c.total,
                    None => out.counters.push(c.clone()),
                }
            }
            for (n, h) in &r.hists {
                match out.hists.iter_mut().find(|(o, _)| o == n) {
                    Some((_, o)) => {
                        let _ = o.add(h);
                    }
                    None => out.hists.push((n.clone(), h.clone())),
                }
            }
            for (n, v) in &r.metrics {
                if let Some((_, o)) = out.metrics.iter_mut().find(|(o, _)| o == n) {
                    *o += v;
                } else {
                    out.metrics.push((n.clone(), *v));
                }
            }
            for (k, i) in r.violations.iter() {
                merge_issue(&mut out.violations, k, i);
            }
            for (k, i) in r.errors.iter() {
                merge_issue(&mut out.errors, k, i);
            }
            out.notes.extend(r.notes.iter().cloned());
            out.harness.merge(&r.harness);
            if let (Some(o), Some(s)) = (out.server.as_mut(), r.server.as_ref()) {
                o.merge(s);
            }
        }
        let n = runs.len() as f64;
        for (_, v) in out.metrics.iter_mut() {
            // metrics are averaged over the rounds (first value counted once)
            *v /= n;
        }
        for c in out.counters.iter_mut() {
            c.per_s = c.total as f64 / out.wall_s.max(1e-9);
        }
        out
    }
}

fn merge_issue(into: &mut Vec<(String, Issue)>, k: &str, i: &Issue) {
    match into.iter_mut().find(|(o, _)| o == k) {
        Some((_, o)) => {
            o.count += i.count;
            for e in &i.examples {
                if o.examples.len() < EXAMPLES {
                    o.examples.push(e.clone());
                }
            }
        }
        None => into.push((k.to_string(), i.clone())),
    }
}

/// Prints one status line per second until dropped (it is a glommio task).
pub fn spawn_progress(
    stats: Rc<Stats>,
    label: String,
    total_s: f64,
    quiet: bool,
) -> glommio::Task<()> {
    glommio::spawn_local(async move {
        if quiet {
            return;
        }
        let tty = std::io::stderr().is_terminal();
        let start = Instant::now();
        let mut prev: Vec<u64> = stats.counters().iter().map(|c| c.get()).collect();
        let mut prev_t = Instant::now();
        let mut tick = 1u64;
        loop {
            let next = start + Duration::from_secs(tick);
            tick += 1;
            crate::net::sleep(next.saturating_duration_since(Instant::now())).await;
            let now = Instant::now();
            let dt = (now - prev_t).as_secs_f64().max(1e-6);
            prev_t = now;
            let cs = stats.counters();
            let mut line = format!(
                "[{label} {:>4.0}s/{total_s:.0}s]",
                start.elapsed().as_secs_f64()
            );
            for (i, c) in cs.iter().enumerate() {
                let v = c.get();
                let p = prev.get(i).copied().unwrap_or(0);
                match c.kind {
                    Kind::Rate => line.push_str(&format!(
                        " {} {}/s",
                        c.name,
                        human((v.saturating_sub(p)) as f64 / dt)
                    )),
                    Kind::Gauge => line.push_str(&format!(" {} {}", c.name, v)),
                    Kind::Total => {}
                }
            }
            line.push_str(&format!(
                " | err {} viol {}",
                stats.errors.total(),
                stats.violations.total()
            ));
            prev = cs.iter().map(|c| c.get()).collect();
            let mut e = std::io::stderr().lock();
            if tty {
                let _ = write!(e, "\r\x1b[K{line}");
            } else {
                let _ = writeln!(e, "{line}");
            }
            let _ = e.flush();
        }
    })
}

/// End the progress line on a terminal.
pub fn progress_done(quiet: bool) {
    if !quiet && std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// 1234567 -> "1.23M"
pub fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_group_and_cap_examples() {
        let s = Stats::new();
        for i in 0..10 {
            s.violation("shape", || format!("ex{i}"));
        }
        s.violation("other", || "x".into());
        let v = s.violations.snapshot();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0, "shape");
        assert_eq!(v[1].1.count, 10);
        assert_eq!(v[1].1.examples, vec!["ex0", "ex1", "ex2"]);
        assert_eq!(s.violations.total(), 11);
    }

    #[test]
    fn merge_runs() {
        let mk = |n: u64, lat: u64| {
            let s = Stats::new();
            s.start_window();
            let c = s.counter("sent", Kind::Rate);
            c.add(n);
            let h = s.hist("lat");
            h.record_us(lat);
            s.metric("ratio", 0.5);
            let mut r = s.result("x", "t");
            r.wall_s = 2.0;
            r
        };
        let m = RunResult::merge(&[mk(10, 100), mk(30, 300)]);
        assert_eq!(m.counter("sent").unwrap().total, 40);
        assert_eq!(m.counter("sent").unwrap().per_s, 10.0);
        assert_eq!(m.hists[0].1.len(), 2);
        assert_eq!(m.metrics[0].1, 0.5);
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(5.0), "5.0");
        assert_eq!(human(250.0), "250");
        assert_eq!(human(25_000.0), "25.0k");
        assert_eq!(human(2_500_000.0), "2.50M");
    }
}
