//! CPU time and memory of a process over a run, and of the server's executor
//! threads: /proc read through procfs at the start and the end of a run.

use procfs::process::{Process, Stat};
use procfs::Current;

/// glommio names an executor's thread `<pool name>-<executor id>` and the
/// server's pool is `kakigori`, so its executors are `kakigori-1`,
/// `kakigori-2`, ... Each executor's `spawn_blocking` helpers get the same
/// name; the executor is the first of them to start.
const EXECUTOR_PREFIX: &str = "kakigori-";

/// The target for the busiest executor's share of the server's CPU time.
pub const BUSIEST_EXECUTOR_SHARE_TARGET_PCT: f64 = 65.0;

/// CPU ticks of one thread, from `/proc/PID/task/TID/stat`.
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
        let threads = match threads {
            true => p
                .tasks()
                .ok()?
                .flatten()
                .filter_map(|t| t.stat().ok())
                .map(|s| ThreadTicks::from(&s))
                .collect(),
            false => Vec::new(),
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
        Usage {
            cpu_user_s: b.user_ticks.saturating_sub(a.user_ticks) as f64 / tck,
            cpu_sys_s: b.sys_ticks.saturating_sub(a.sys_ticks) as f64 / tck,
            wall_s,
            rss_kb: status.as_ref().and_then(|s| s.vmrss).unwrap_or(0),
            peak_rss_kb: status.as_ref().and_then(|s| s.vmhwm).unwrap_or(0),
            threads: thread_cpu(&a.threads, &b.threads, tck),
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
            let same = |m: &&mut ThreadCpu| m.name == t.name && m.executor == t.executor;
            match self.threads.iter_mut().find(same) {
                Some(m) => (m.cpu_s, m.threads) = (m.cpu_s + t.cpu_s, m.threads.max(t.threads)),
                None => self.threads.push(t.clone()),
            }
        }
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
    let entry = |name: &str, executor, threads, cpu_s| ThreadCpu {
        name: name.to_string(),
        executor,
        threads,
        cpu_s,
    };
    let mut out: Vec<ThreadCpu> = first
        .iter()
        .map(|t| entry(&t.name, true, 1, cpu_s(t)))
        .collect();
    let rest: Vec<&ThreadTicks> = b
        .iter()
        .filter(|t| !first.iter().any(|f| f.tid == t.tid))
        .collect();
    let rest_s = rest.iter().map(|t| cpu_s(t)).sum();
    out.push(entry("other threads", false, rest.len(), rest_s));
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
    fn ticks(tid: i32, comm: &str, utime: u64, stime: u64, started: u64) -> ThreadTicks {
        let line = format!(
            "{tid} ({comm}) S 23959 23959 8599 0 -1 4194368 1372 0 0 0 {utime} {stime} 0 0 20 0 \
             19 0 {started} 1130496000 5421 18446744073709551615 94872501305344 94872501325225 \
             140732834154448 0 0 0 0 0 0 0 0 0 -1 1 0 0 0 0 0 94872501341232 94872501342848 \
             94873312272384 140732834159330 140732834159350 140732834159350 140732834160619 0\n"
        );
        ThreadTicks::from(&Stat::from_read(line.as_bytes()).expect("a stat line"))
    }

    #[test]
    fn executors_are_the_first_thread_of_each_name() {
        // the server's threads with --cores 2: main, two executors, each
        // executor's blocking helpers with its name, an io_uring worker
        let a = vec![
            ticks(100, "kakigori", 5, 5, 1000),
            ticks(101, "kakigori-1", 100, 50, 1003),
            ticks(102, "kakigori-2", 10, 10, 1003),
            ticks(103, "kakigori-2", 0, 0, 1003),
            ticks(104, "kakigori-1", 1, 0, 1003),
        ];
        let mut b = a.clone();
        b[1].ticks += 300; // kakigori-1: 3 s
        b[2].ticks += 100; // kakigori-2: 1 s
        b[4].ticks += 20; // a helper of kakigori-1
        b.push(ticks(105, "iou-wrk-101", 30, 0, 1500)); // born during the run
        b.push(ticks(106, "kakigori-watchd", 0, 0, 1001));
        let got = thread_cpu(&a, &b, 100.0);
        let summary: Vec<_> = got
            .iter()
            .map(|t| (t.name.as_str(), t.executor, t.threads))
            .collect();
        assert_eq!(
            summary,
            [
                ("kakigori-1", true, 1),
                ("kakigori-2", true, 1),
                ("other threads", false, 5)
            ]
        );
        let cpu: Vec<f64> = got.iter().map(|t| (t.cpu_s * 1e6).round() / 1e6).collect();
        assert_eq!(cpu, [3.0, 1.0, 0.5]); // others: 0.2 helper + 0.3 new worker
        let mut u = Usage {
            cpu_user_s: 3.0,
            cpu_sys_s: 2.0,
            wall_s: 10.0,
            threads: got,
            ..Usage::default()
        };
        let (busiest, share) = u.busiest_executor().unwrap();
        assert_eq!((busiest.name.as_str(), share), ("kakigori-1", 60.0));
        assert_eq!(u.pct_of_one_core(busiest.cpu_s), 30.0);
        // a second round adds up per executor
        u.add(&u.clone());
        assert_eq!(
            (u.threads.len(), u.threads[0].cpu_s, u.cpu_s()),
            (3, 6.0, 10.0)
        );
        assert_eq!(u.pct_of_one_core(u.cpu_s()), 50.0);
    }

    #[test]
    fn parses_the_command_name_with_spaces_and_parentheses() {
        let t = ticks(7, "a (b) c", 12, 34, 99);
        assert_eq!(
            (t.tid, t.name.as_str(), t.ticks, t.started),
            (7, "a (b) c", 46, 99)
        );
        assert!(!executor_name("kakigori-") && !executor_name("kakigori-watchd"));
        assert!(executor_name("kakigori-12"));
    }

    #[test]
    fn reads_this_process() {
        let pid = std::process::id() as i32;
        let a = Sample::take(pid, true).unwrap();
        assert!(!a.threads.is_empty());
        let u = Usage::between(pid, &a, &a, 1.0);
        assert!(u.rss_kb > 0 && u.peak_rss_kb >= u.rss_kb);
        assert!(Sample::take(i32::MAX, false).is_none());
    }
}
