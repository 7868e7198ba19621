//! What a run measured: counters, latency histograms (hdrhistogram),
//! derived metrics, notes, problems grouped by kind, and the CPU use of the
//! harness and the server. One `Stats` per server lives across the
//! --compare rounds, so rounds add up by themselves. Everything runs on one
//! executor: `Cell` and `RefCell`. Counters and histograms are found by
//! name; the meter's hot path keeps the `Rc` handles instead.

use std::cell::{Cell, Ref, RefCell};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::fail::Fail;
use crate::usage::Usage;

/// How a counter is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Events, shown with their rate per second.
    Rate,
    /// A level (open connections), shown as its peak.
    Gauge,
    /// A total, in the final report only.
    Total,
}

pub struct Counter {
    pub name: &'static str,
    pub kind: Kind,
    v: Cell<u64>,
    peak: Cell<u64>,
}

impl Counter {
    pub fn inc(&self) {
        self.v.set(self.v.get() + 1);
        self.peak.set(self.peak.get().max(self.v.get()));
    }

    pub fn dec(&self) {
        self.v.set(self.v.get().saturating_sub(1));
    }

    pub fn get(&self) -> u64 {
        self.v.get()
    }

    /// What the report shows: the peak of a gauge, the total of the others.
    pub fn reported(&self) -> u64 {
        match self.kind {
            Kind::Gauge => self.peak.get(),
            _ => self.v.get(),
        }
    }
}

/// Latencies in microseconds: 1 µs to one hour, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub struct Hist(RefCell<Histogram<u64>>);

impl Hist {
    pub fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.0.borrow_mut().saturating_record(us);
    }

    pub fn since(&self, t: Instant) {
        self.record(t.elapsed());
    }

    pub fn get(&self) -> Ref<'_, Histogram<u64>> {
        self.0.borrow()
    }
}

/// Examples kept per kind of problem.
const EXAMPLES: usize = 3;

/// Problems of one sort, by kind: how many and the first few examples.
#[derive(Default)]
pub struct Issues(RefCell<BTreeMap<String, (u64, Vec<String>)>>);

impl Issues {
    fn add(&self, kind: &str, detail: impl FnOnce() -> String) {
        let mut m = self.0.borrow_mut();
        let (n, examples) = m.entry(kind.to_string()).or_default();
        *n += 1;
        if examples.len() < EXAMPLES {
            examples.push(detail());
        }
    }

    pub fn total(&self) -> u64 {
        self.0.borrow().values().map(|(n, _)| n).sum()
    }

    pub fn get(&self) -> Ref<'_, BTreeMap<String, (u64, Vec<String>)>> {
        self.0.borrow()
    }
}

#[derive(Default)]
pub struct Stats {
    counters: RefCell<Vec<Rc<Counter>>>,
    hists: RefCell<Vec<(String, Rc<Hist>)>>,
    /// The server broke the contract.
    pub violations: Issues,
    /// Transport failures (connect, reset, timeout).
    pub errors: Issues,
    /// Derived numbers: (name, sum over rounds, rounds); reported as means.
    metrics: RefCell<Vec<(String, f64, u32)>>,
    pub notes: RefCell<Vec<String>>,
    /// Length of the measured phases so far, and the start of the open one.
    measured: Cell<Duration>,
    since: Cell<Option<Instant>>,
    pub harness: RefCell<Usage>,
    pub server: RefCell<Option<Usage>>,
}

impl Stats {
    /// The counter `name`, the same one in every round.
    pub fn counter(&self, name: &'static str, kind: Kind) -> Rc<Counter> {
        let mut cs = self.counters.borrow_mut();
        if let Some(c) = cs.iter().find(|c| c.name == name) {
            return c.clone();
        }
        let (v, peak) = Default::default();
        cs.push(Rc::new(Counter {
            name,
            kind,
            v,
            peak,
        }));
        cs[cs.len() - 1].clone()
    }

    /// The latency histogram `name`, the same one in every round.
    pub fn hist(&self, name: &str) -> Rc<Hist> {
        let mut hs = self.hists.borrow_mut();
        if let Some((_, h)) = hs.iter().find(|(n, _)| n == name) {
            return h.clone();
        }
        hs.push((name.to_string(), Rc::new(Hist(RefCell::new(new_hist())))));
        hs[hs.len() - 1].1.clone()
    }

    pub fn counters(&self) -> Vec<Rc<Counter>> {
        self.counters.borrow().clone()
    }

    pub fn hists(&self) -> Vec<(String, Histogram<u64>)> {
        let hs = self.hists.borrow();
        let each = |(n, h): &(String, Rc<Hist>)| (n.clone(), h.get().clone());
        hs.iter().map(each).collect()
    }

    pub fn violation(&self, kind: &str, detail: impl FnOnce() -> String) {
        self.violations.add(kind, detail);
    }

    pub fn error(&self, kind: &str, detail: impl FnOnce() -> String) {
        self.errors.add(kind, detail);
    }

    /// Record why `what` failed at `at` (a path, a room). Always `None`,
    /// for a caller that gives up.
    pub fn fail(&self, what: &str, at: &str, f: Fail) -> Option<()> {
        let kind = format!("{what}: {}", f.kind);
        let issues = match f.violation {
            true => &self.violations,
            false => &self.errors,
        };
        issues.add(&kind, || format!("{at}: {}", f.detail));
        None
    }

    /// A check's result; a failure is a violation named `what`.
    pub fn check<T, E: Display>(&self, what: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.violation(what, || e.to_string())).ok()
    }

    pub fn metric(&self, name: &str, v: f64) {
        let mut ms = self.metrics.borrow_mut();
        match ms.iter_mut().find(|(n, _, _)| n == name) {
            Some((_, sum, rounds)) => (*sum, *rounds) = (*sum + v, *rounds + 1),
            None => ms.push((name.to_string(), v, 1)),
        }
    }

    pub fn metrics(&self) -> Vec<(String, f64)> {
        let ms = self.metrics.borrow();
        let mean = |(n, s, r): &(String, f64, u32)| (n.clone(), s / f64::from(*r));
        ms.iter().map(mean).collect()
    }

    pub fn note(&self, s: impl Into<String>) {
        self.notes.borrow_mut().push(s.into());
    }

    /// Start the measured phase (again: a scenario restarts it after its
    /// unmeasured set-up).
    pub fn start_window(&self) {
        self.since.set(Some(Instant::now()));
    }

    pub fn end_window(&self) {
        if let Some(t) = self.since.take() {
            self.measured.set(self.measured.get() + t.elapsed());
        }
    }

    /// Seconds measured over every round so far.
    pub fn measured_s(&self) -> f64 {
        let open = self.since.get().map_or(Duration::ZERO, |t| t.elapsed());
        (self.measured.get() + open).as_secs_f64()
    }
}

/// Prints a status line every second until dropped (a glommio task): each
/// counter's rate or level, and the problems so far.
pub fn spawn_progress(stats: Rc<Stats>, label: &'static str, total_s: f64) -> glommio::Task<()> {
    glommio::spawn_local(async move {
        let (tty, start) = (std::io::stderr().is_terminal(), Instant::now());
        let mut prev: Vec<u64> = Vec::new();
        for tick in 1u64.. {
            crate::net::sleep_until(start + Duration::from_secs(tick)).await;
            let mut line = format!("[{label} {tick:>4}s/{total_s:.0}s]");
            let cs = stats.counters();
            for (i, c) in cs.iter().enumerate() {
                let delta = c.get().saturating_sub(prev.get(i).copied().unwrap_or(0));
                match c.kind {
                    Kind::Rate => line += &format!(" {} {delta}/s", c.name),
                    Kind::Gauge => line += &format!(" {} {}", c.name, c.get()),
                    Kind::Total => {}
                }
            }
            let (e, v) = (stats.errors.total(), stats.violations.total());
            line += &format!(" | err {e} viol {v}");
            prev = cs.iter().map(|c| c.get()).collect();
            let end = if tty { "\r\x1b[K" } else { "\n" };
            let _ = write!(std::io::stderr().lock(), "{line}{end}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rounds share the counters: totals add, gauges keep their peak,
    /// metrics average; problems group by kind with a few examples.
    #[test]
    fn rounds_add_up_and_problems_group() {
        let s = Stats::default();
        for (sent, ratio) in [(10, 0.25), (30, 0.75)] {
            (0..sent).for_each(|_| s.counter("sent", Kind::Rate).inc());
            let open = s.counter("open", Kind::Gauge);
            open.inc();
            open.inc();
            open.dec();
            s.metric("ratio", ratio);
            s.fail("GET", "/x", Fail::violation("malformed", format!("{sent}")));
        }
        let cs = s.counters();
        let shown: Vec<_> = cs.iter().map(|c| (c.name, c.reported())).collect();
        assert_eq!(
            (shown, s.metrics()),
            (vec![("sent", 40), ("open", 3)], vec![("ratio".into(), 0.5)])
        );
        assert_eq!(
            s.violations.get()["GET: malformed"],
            (2, vec!["/x: 10".into(), "/x: 30".into()])
        );
    }
}
