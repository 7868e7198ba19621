//! CPU time and memory of a process over a run, and of the server's executor
//! threads: /proc read through the procfs crate at the start and the end of
//! the measured phase.

use procfs::process::{Process, Stat};
use procfs::Current;

/// glommio names an executor's thread `<pool name>-<executor id>` and the
/// server's pool is `kakigori`, so its executors are `kakigori-1`,
/// `kakigori-2`, ... Each executor's `spawn_blocking` helpers get the same
/// name; the executor is the first of them to start.
pub const EXECUTOR_PREFIX: &str = "kakigori-";

/// What a figure is worth as a target: the busiest executor's share of the
/// server's CPU time (percent).
pub const BUSIEST_EXECUTOR_SHARE_TARGET_PCT: f64 = 65.0;

/// CPU ticks of one thread (from `/proc/PID/task/TID/stat`; its command
/// name is the same `task->comm` as `/proc/PID/task/TID/comm`).
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadTicks {
    pub tid: i32,
    pub name: String,
    /// Start time in ticks after boot.
    pub started: u64,
    /// utime + stime.
    pub ticks: u64,
}

impl From<&Stat> for ThreadTicks {
    fn from(s: &Stat) -> ThreadTicks {
        ThreadTicks {
            tid: s.pid,
            name: s.comm.clone(),
            started: s.starttime,
            ticks: s.utime + s.stime,
        }
    }
}

/// One reading of a process.
#[derive(Clone, Debug)]
pub struct Sample {
    user_ticks: u64,
    sys_ticks: u64,
    /// Empty unless asked for.
    threads: Vec<ThreadTicks>,
}

impl Sample {
    /// Read process `pid` (and each of its threads if `threads`); `None`
    /// when it does not exist.
    pub fn take(pid: i32, threads: bool) -> Option<Sample> {
        let p = Process::new(pid).ok()?;
        let stat = p.stat().ok()?;
        let threads = if threads {
            p.tasks()
                .ok()?
                .flatten()
                .filter_map(|t| t.stat().ok())
                .map(|s| ThreadTicks::from(&s))
                .collect()
        } else {
            Vec::new()
        };
        Some(Sample {
            user_ticks: stat.utime,
            sys_ticks: stat.stime,
            threads,
        })
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

/// CPU and memory of a process over the run.
#[derive(Clone, Debug, Default)]
pub struct ProcUsage {
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    /// (user+sys) / wall time of the whole run, percent of one core.
    pub cpu_pct: f64,
    pub wall_s: f64,
    pub rss_kb: u64,
    pub peak_rss_kb: u64,
    /// Executors first (by name), then one entry for all other threads;
    /// empty when threads were not sampled.
    pub threads: Vec<ThreadCpu>,
}

impl ProcUsage {
    /// Usage of `pid` between two samples `wall_s` apart; memory as of now.
    pub fn between(pid: i32, a: &Sample, b: &Sample, wall_s: f64) -> ProcUsage {
        let tck = procfs::ticks_per_second() as f64;
        let status = Process::new(pid).and_then(|p| p.status()).ok();
        let mut u = ProcUsage {
            cpu_user_s: b.user_ticks.saturating_sub(a.user_ticks) as f64 / tck,
            cpu_sys_s: b.sys_ticks.saturating_sub(a.sys_ticks) as f64 / tck,
            wall_s,
            rss_kb: status.as_ref().and_then(|s| s.vmrss).unwrap_or(0),
            peak_rss_kb: status.as_ref().and_then(|s| s.vmhwm).unwrap_or(0),
            threads: thread_cpu(&a.threads, &b.threads, tck),
            cpu_pct: 0.0,
        };
        u.cpu_pct = u.pct_of_one_core(u.cpu_s());
        u
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
        self.threads
            .iter()
            .filter(|t| t.executor)
            .max_by(|x, y| x.cpu_s.total_cmp(&y.cpu_s))
            .map(|t| (t, self.share_pct(t.cpu_s)))
    }

    /// Add the usage of another round of the same scenario.
    pub fn merge(&mut self, o: &ProcUsage) {
        self.cpu_user_s += o.cpu_user_s;
        self.cpu_sys_s += o.cpu_sys_s;
        self.wall_s += o.wall_s;
        self.rss_kb = o.rss_kb;
        self.peak_rss_kb = self.peak_rss_kb.max(o.peak_rss_kb);
        for t in &o.threads {
            match self
                .threads
                .iter_mut()
                .find(|m| m.name == t.name && m.executor == t.executor)
            {
                Some(m) => {
                    m.cpu_s += t.cpu_s;
                    m.threads = m.threads.max(t.threads);
                }
                None => self.threads.push(t.clone()),
            }
        }
        self.cpu_pct = self.pct_of_one_core(self.cpu_s());
    }
}

/// Is `name` an executor thread's name (`kakigori-<digits>`)?
fn executor_name(name: &str) -> bool {
    name.strip_prefix(EXECUTOR_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// CPU time per thread between two readings, as executors (the first
/// thread of each executor name) plus one entry for every other thread.
/// A thread born during the run counts from zero; one gone by the end is in
/// the process total only.
pub fn thread_cpu(a: &[ThreadTicks], b: &[ThreadTicks], tck: f64) -> Vec<ThreadCpu> {
    if b.is_empty() {
        return Vec::new();
    }
    let mut first: Vec<&ThreadTicks> = Vec::new();
    for t in b.iter().filter(|t| executor_name(&t.name)) {
        match first.iter_mut().find(|f| f.name == t.name) {
            Some(f) if (t.started, t.tid) < (f.started, f.tid) => *f = t,
            Some(_) => {}
            None => first.push(t),
        }
    }
    first.sort_by(|x, y| x.name.cmp(&y.name));
    let cpu_s = |t: &ThreadTicks| {
        let before = a.iter().find(|x| x.tid == t.tid).map_or(0, |x| x.ticks);
        t.ticks.saturating_sub(before) as f64 / tck
    };
    let mut out: Vec<ThreadCpu> = first
        .iter()
        .map(|t| ThreadCpu {
            name: t.name.clone(),
            executor: true,
            threads: 1,
            cpu_s: cpu_s(t),
        })
        .collect();
    let rest: Vec<&ThreadTicks> = b
        .iter()
        .filter(|t| !first.iter().any(|f| f.tid == t.tid))
        .collect();
    out.push(ThreadCpu {
        name: "other threads".into(),
        executor: false,
        threads: rest.len(),
        cpu_s: rest.iter().map(|t| cpu_s(t)).sum(),
    });
    out
}

/// This process's resident memory now, in KiB.
pub fn self_rss_kb() -> u64 {
    Process::myself()
        .and_then(|p| p.status())
        .ok()
        .and_then(|s| s.vmrss)
        .unwrap_or(0)
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
    fn stat_line(tid: i32, comm: &str, utime: u64, stime: u64, started: u64) -> Stat {
        let line = format!(
            "{tid} ({comm}) S 23959 23959 8599 0 -1 4194368 1372 0 0 0 {utime} {stime} 0 0 20 0 \
             19 0 {started} 1130496000 5421 18446744073709551615 94872501305344 94872501325225 \
             140732834154448 0 0 0 0 0 0 0 0 0 -1 1 0 0 0 0 0 94872501341232 94872501342848 \
             94873312272384 140732834159330 140732834159350 140732834159350 140732834160619 0\n"
        );
        Stat::from_read(line.as_bytes()).expect("a stat line")
    }

    #[test]
    fn executors_are_the_first_thread_of_each_name() {
        let t = |tid, comm, u, s, st| ThreadTicks::from(&stat_line(tid, comm, u, s, st));
        // the server's threads with --cores 2: main, two executors, each
        // executor's blocking helpers with its name, an io_uring worker
        let a = vec![
            t(100, "kakigori", 5, 5, 1000),
            t(101, "kakigori-1", 100, 50, 1003),
            t(102, "kakigori-2", 10, 10, 1003),
            t(103, "kakigori-2", 0, 0, 1003),
            t(104, "kakigori-1", 1, 0, 1003),
        ];
        let mut b = a.clone();
        b[1].ticks += 300; // kakigori-1: 3 s
        b[2].ticks += 100; // kakigori-2: 1 s
        b[4].ticks += 20; // a helper of kakigori-1
        b.push(t(105, "iou-wrk-101", 30, 0, 1500)); // born during the run
        b.push(t(106, "kakigori-watchd", 0, 0, 1001));
        let got = thread_cpu(&a, &b, 100.0);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            (got[0].name.as_str(), got[0].executor),
            ("kakigori-1", true)
        );
        assert!((got[0].cpu_s - 3.0).abs() < 1e-9);
        assert_eq!(got[1].name, "kakigori-2");
        assert!((got[1].cpu_s - 1.0).abs() < 1e-9);
        assert!(!got[2].executor);
        assert_eq!(got[2].threads, 5);
        assert!((got[2].cpu_s - 0.5).abs() < 1e-9); // 0.2 helper + 0.3 new worker
        let u = ProcUsage {
            cpu_user_s: 3.0,
            cpu_sys_s: 2.0,
            wall_s: 10.0,
            threads: got,
            ..ProcUsage::default()
        };
        let (busiest, share) = u.busiest_executor().unwrap();
        assert_eq!(busiest.name, "kakigori-1");
        assert!((share - 60.0).abs() < 1e-9);
        assert!((u.pct_of_one_core(busiest.cpu_s) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn parses_the_command_name_with_spaces_and_parentheses() {
        let s = stat_line(7, "a (b) c", 12, 34, 99);
        let t = ThreadTicks::from(&s);
        assert_eq!(
            (t.tid, t.name.as_str(), t.ticks, t.started),
            (7, "a (b) c", 46, 99)
        );
        assert!(!executor_name("kakigori-"));
        assert!(!executor_name("kakigori-watchd"));
        assert!(executor_name("kakigori-12"));
    }

    #[test]
    fn rounds_merge_per_executor() {
        let mk = |cpu: f64| ProcUsage {
            cpu_user_s: cpu,
            wall_s: 10.0,
            threads: vec![ThreadCpu {
                name: "kakigori-1".into(),
                executor: true,
                threads: 1,
                cpu_s: cpu / 2.0,
            }],
            ..ProcUsage::default()
        };
        let mut m = mk(2.0);
        m.merge(&mk(4.0));
        assert_eq!(m.threads.len(), 1);
        assert!((m.threads[0].cpu_s - 3.0).abs() < 1e-9);
        assert!((m.cpu_pct - 30.0).abs() < 1e-9);
        assert!((m.busiest_executor().unwrap().1 - 50.0).abs() < 1e-9);
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id() as i32;
        let a = Sample::take(pid, true).unwrap();
        assert!(!a.threads.is_empty());
        let u = ProcUsage::between(pid, &a, &a, 1.0);
        assert!(u.rss_kb > 0 && u.peak_rss_kb >= u.rss_kb);
        assert!(Sample::take(i32::MAX, false).is_none());
    }
}
