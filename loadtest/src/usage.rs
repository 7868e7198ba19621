//! CPU time and memory of a process over a run, and of the server's executor
//! threads: /proc read through procfs at the start and the end of a run.

use procfs::process::{Process, Stat};
use procfs::Current;

/// The target for the busiest executor's share of the server's CPU time.
pub const BUSIEST_EXECUTOR_SHARE_TARGET_PCT: f64 = 65.0;

/// One reading of a process: its stat, and its threads' when asked for.
pub struct Sample(Stat, Vec<Stat>);

impl Sample {
    /// Read process `pid`; `None` when it does not exist.
    pub fn take(pid: i32, threads: bool) -> Option<Sample> {
        let p = Process::new(pid).ok()?;
        let tasks = threads.then(|| p.tasks().ok()).flatten();
        let tasks = tasks.into_iter().flatten();
        let threads = tasks.flatten().filter_map(|t| t.stat().ok()).collect();
        Some(Sample(p.stat().ok()?, threads))
    }
}

/// CPU time of one executor thread, or of all the other threads together.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadCpu {
    pub name: String,
    pub executor: bool,
    pub threads: usize,
    pub cpu_s: f64,
}

impl ThreadCpu {
    pub fn new(name: &str, executor: bool, threads: usize, cpu_s: f64) -> ThreadCpu {
        let name = name.to_string();
        ThreadCpu {
            name,
            executor,
            threads,
            cpu_s,
        }
    }
}

/// CPU and memory of a process over one or more runs.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub wall_s: f64,
    pub rss_kb: u64,
    pub peak_rss_kb: u64,
    /// Executors by name, then all other threads as one entry; empty when
    /// threads were not sampled.
    pub threads: Vec<ThreadCpu>,
}

impl Usage {
    /// Usage of `pid` between two samples `wall_s` apart; memory as of now.
    pub fn between(pid: i32, a: &Sample, b: &Sample, wall_s: f64) -> Usage {
        let tck = procfs::ticks_per_second() as f64;
        let status = Process::new(pid).and_then(|p| p.status()).ok();
        let kb = |f: fn(&procfs::process::Status) -> Option<u64>| status.as_ref().and_then(f);
        Usage {
            cpu_user_s: b.0.utime.saturating_sub(a.0.utime) as f64 / tck,
            cpu_sys_s: b.0.stime.saturating_sub(a.0.stime) as f64 / tck,
            wall_s,
            rss_kb: kb(|s| s.vmrss).unwrap_or(0),
            peak_rss_kb: kb(|s| s.vmhwm).unwrap_or(0),
            threads: thread_cpu(&a.1, &b.1, tck),
        }
    }

    pub fn cpu_s(&self) -> f64 {
        self.cpu_user_s + self.cpu_sys_s
    }

    pub fn pct_of_one_core(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / self.wall_s.max(1e-9)
    }

    /// Percent of this process's CPU time.
    pub fn share_pct(&self, cpu_s: f64) -> f64 {
        100.0 * cpu_s / self.cpu_s().max(1e-9)
    }

    /// The executor with the most CPU time and its share of the process's.
    pub fn busiest_executor(&self) -> Option<(&ThreadCpu, f64)> {
        let execs = self.threads.iter().filter(|t| t.executor);
        let busiest = execs.max_by(|x, y| x.cpu_s.total_cmp(&y.cpu_s));
        busiest.map(|t| (t, self.share_pct(t.cpu_s)))
    }

    /// Add another round of the same scenario.
    pub fn add(&mut self, o: &Usage) {
        self.cpu_user_s += o.cpu_user_s;
        self.cpu_sys_s += o.cpu_sys_s;
        self.wall_s += o.wall_s;
        self.rss_kb = o.rss_kb;
        self.peak_rss_kb = self.peak_rss_kb.max(o.peak_rss_kb);
        for t in &o.threads {
            let same = |m: &&mut ThreadCpu| (&m.name, m.executor) == (&t.name, t.executor);
            match self.threads.iter_mut().find(same) {
                Some(m) => (m.cpu_s, m.threads) = (m.cpu_s + t.cpu_s, m.threads.max(t.threads)),
                None => self.threads.push(t.clone()),
            }
        }
    }
}

/// Is `name` an executor thread's? glommio names an executor's thread
/// `<pool name>-<executor id>` and the server's pool is `kakigori`.
fn executor_name(name: &str) -> bool {
    let id = name.strip_prefix("kakigori-");
    id.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// CPU time per thread between two readings: the executors, then all the
/// other threads as one entry. Each executor's `spawn_blocking` helpers
/// carry its name, so the executor is the first thread of its name to
/// start. A thread born during the run counts from zero; one gone by the
/// end is in the process total only.
pub fn thread_cpu(a: &[Stat], b: &[Stat], tck: f64) -> Vec<ThreadCpu> {
    let mut execs: Vec<&Stat> = Vec::new();
    for t in b.iter().filter(|t| executor_name(&t.comm)) {
        match execs.iter_mut().find(|e| e.comm == t.comm) {
            Some(e) if (t.starttime, t.pid) < (e.starttime, e.pid) => *e = t,
            Some(_) => {}
            None => execs.push(t),
        }
    }
    execs.sort_by(|x, y| x.comm.cmp(&y.comm));
    let cpu_s = |t: &Stat| {
        let before = a.iter().find(|x| x.pid == t.pid);
        let before = before.map_or(0, |x| x.utime + x.stime);
        (t.utime + t.stime).saturating_sub(before) as f64 / tck
    };
    let exec = |t: &&Stat| ThreadCpu::new(&t.comm, true, 1, cpu_s(t));
    let mut out: Vec<_> = execs.iter().map(exec).collect();
    let other = |t: &&Stat| !execs.iter().any(|e| e.pid == t.pid);
    let rest: Vec<&Stat> = b.iter().filter(other).collect();
    if !b.is_empty() {
        out.push(ThreadCpu::new(
            "other threads",
            false,
            rest.len(),
            rest.iter().map(|t| cpu_s(t)).sum(),
        ));
    }
    out
}

/// This process's resident memory now, in KiB.
pub fn self_rss_kb() -> u64 {
    let status = Process::myself().and_then(|p| p.status()).ok();
    status.and_then(|s| s.vmrss).unwrap_or(0)
}

/// The 1-minute load average (a hint that other processes shared the CPUs).
pub fn load_average_1m() -> Option<f32> {
    procfs::LoadAverage::current().ok().map(|l| l.one)
}

#[cfg(test)]
mod tests {
    use procfs::FromRead;

    use super::*;

    /// A `/proc/PID/task/TID/stat` line as Linux 6 writes it.
    fn stat((tid, comm, utime, started): (i32, &str, u64, u64)) -> Stat {
        let tail = "1130496000 5421 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 -1 1 0 0 0 0 0";
        let line = format!(
            "{tid} ({comm}) S 1 1 1 0 -1 0 1 0 0 0 {utime} 0 0 0 20 0 19 0 {started} {tail}"
        );
        Stat::from_read(line.as_bytes()).expect("a stat line")
    }

    /// The server's threads with --cores 2: main, two executors, a blocking
    /// helper born during the run with an executor's name, another thread.
    #[test]
    fn executors_are_the_first_thread_of_each_name() {
        let a = [
            (100, "kakigori", 10, 1003),
            (101, "kakigori-1", 150, 1003),
            (102, "kakigori-2", 20, 1003),
        ];
        let a = a.map(stat).to_vec();
        let mut b = a.clone();
        (b[1].utime, b[2].utime) = (450, 120); // 3 s and 1 s
        b.extend(
            [
                (104, "kakigori-1", 20, 1004),
                (105, "a (b) kakigori-3", 30, 1500),
            ]
            .map(stat),
        );
        let got = thread_cpu(&a, &b, 100.0);
        let want = [
            ("kakigori-1", true, 1, 3.0),
            ("kakigori-2", true, 1, 1.0),
            ("other threads", false, 3, 0.5),
        ];
        assert_eq!(got, want.map(|(n, e, t, s)| ThreadCpu::new(n, e, t, s)));
        let mut u = Usage {
            cpu_user_s: 3.0,
            cpu_sys_s: 2.0,
            wall_s: 10.0,
            threads: got,
            ..Default::default()
        };
        assert_eq!(
            u.busiest_executor().map(|(t, share)| (t.cpu_s, share)),
            Some((3.0, 60.0))
        );
        u.add(&u.clone()); // a second round adds up per executor
        assert_eq!(
            (u.threads[0].cpu_s, u.pct_of_one_core(u.cpu_s())),
            (6.0, 50.0)
        );
        let pid = std::process::id() as i32;
        let me = Sample::take(pid, true).unwrap();
        assert!(Usage::between(pid, &me, &me, 1.0).rss_kb > 0 && Sample::take(-1, false).is_none());
    }
}
