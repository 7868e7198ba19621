//! systemd's service notification protocol (sd_notify(3)), by hand: a few datagrams to
//! the socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`).
//! `READY=1` once every core listens, `WATCHDOG=1` every half of `$WATCHDOG_USEC` while
//! every core's executor is still running its tasks, `STOPPING=1` when shutdown begins.
//! Without `$NOTIFY_SOCKET` (not under systemd) every call does nothing, and a socket
//! that has gone away is logged, never fatal.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where notifications go, if anywhere.
pub struct Notifier {
    target: Option<(UnixDatagram, UnixAddr)>,
    ready: AtomicBool,
    stopping: AtomicBool,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for.
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// A notifier for `socket` (`$NOTIFY_SOCKET`'s value); `None` sends nothing.
    pub fn new(socket: Option<&OsStr>) -> Notifier {
        let target = socket
            .filter(|s| !s.is_empty())
            .and_then(|socket| match connect(socket) {
                Ok(target) => Some(target),
                Err(e) => {
                    log::warn!(
                        "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                        socket.to_string_lossy()
                    );
                    None
                }
            });
        Notifier {
            target,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`KEY=value` lines). Failures are logged and ignored.
    pub fn send(&self, state: &str) {
        let Some((socket, addr)) = &self.target else {
            return;
        };
        if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
            log::warn!("cannot notify systemd ({}): {e}", first_line(state));
        }
    }

    /// Every core listens and the journal is recovered. Not sent once stopping began.
    pub fn ready(&self, status: &str) {
        if self.stopping.load(Ordering::SeqCst) || self.ready.swap(true, Ordering::SeqCst) {
            return;
        }
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// Shutdown began. Only the first call sends; it returns true.
    pub fn stopping(&self) -> bool {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.send("STOPPING=1\nSTATUS=shutting down");
        true
    }
}

fn first_line(state: &str) -> &str {
    state.lines().next().unwrap_or("")
}

fn connect(socket: &OsStr) -> std::io::Result<(UnixDatagram, UnixAddr)> {
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => UnixAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => UnixAddr::from_pathname(std::path::Path::new(socket))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "only absolute paths and @abstract names are supported",
            ))
        }
    };
    let datagram = UnixDatagram::unbound()?;
    // Shutdown notifies from an executor thread: never block it on a full socket.
    datagram.set_nonblocking(true)?;
    Ok((datagram, addr))
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set, positive,
/// and meant for this process (`$WATCHDOG_PID` unset or equal to `our_pid`).
pub fn watchdog_interval(
    usec: Option<&str>,
    watchdog_pid: Option<&str>,
    our_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = watchdog_pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// `watchdog_interval` from this process's environment.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// One counter per core, bumped by a timer task on that core: the watchdog only pings
/// systemd while every core's executor keeps running its tasks, so a stalled core gets
/// the service restarted instead of silently dropping its share of the traffic.
pub struct Heartbeats {
    beats: Box<[AtomicU64]>,
    /// How often each core beats; `None` when there is no watchdog to feed.
    period: Option<Duration>,
}

/// A core that has finished (shut down) and is no longer expected to beat.
const RETIRED: u64 = u64::MAX;

impl Heartbeats {
    /// For `cores` cores, feeding a watchdog pinged every `ping_every`.
    pub fn new(cores: usize, ping_every: Option<Duration>) -> Heartbeats {
        Heartbeats {
            beats: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            // Several beats per ping, so timer jitter does not withhold a ping.
            period: ping_every.map(|every| (every / 4).max(Duration::from_millis(1))),
        }
    }

    pub fn beat(&self, core: usize) {
        let beat = &self.beats[core];
        let now = beat.load(Ordering::Relaxed);
        if now != RETIRED {
            beat.store(now.wrapping_add(1) % RETIRED, Ordering::Relaxed);
        }
    }

    /// This core has stopped serving for good; stop expecting its beats.
    pub fn retire(&self, core: usize) {
        self.beats[core].store(RETIRED, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<u64> {
        self.beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// Runs this core's beat on its executor (nothing without a watchdog).
    pub fn start_beating(self: &Arc<Self>, core: usize) {
        let Some(period) = self.period else { return };
        let heartbeats = self.clone();
        glommio::spawn_local(async move {
            loop {
                heartbeats.beat(core);
                glommio::timer::sleep(period).await;
            }
        })
        .detach();
    }
}

/// The thread that sends `WATCHDOG=1`; stops when dropped.
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Pings now and then every `every`, as long as every core has beaten since the last
    /// ping.
    pub fn start(
        notifier: Arc<Notifier>,
        heartbeats: Arc<Heartbeats>,
        every: Duration,
    ) -> std::io::Result<Watchdog> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kakigori-watchdog".into())
            .spawn(move || {
                let mut last = heartbeats.snapshot();
                notifier.send("WATCHDOG=1");
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let now = heartbeats.snapshot();
                    let stalled: Vec<usize> = (0..now.len())
                        .filter(|&core| now[core] != RETIRED && now[core] == last[core])
                        .collect();
                    if stalled.is_empty() {
                        notifier.send("WATCHDOG=1");
                    } else {
                        log::warn!(
                            "core(s) {stalled:?} ran no task for {} ms; withholding the watchdog ping",
                            every.as_millis()
                        );
                    }
                    last = now;
                }
            })?;
        Ok(Watchdog {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_usec_and_only_for_our_pid() {
        let half = Some(Duration::from_millis(100));
        assert_eq!(watchdog_interval(Some("200000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("200000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("200000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
        assert_eq!(
            watchdog_interval(Some("1"), None, 7),
            Some(Duration::from_millis(1))
        );
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_ready_once_and_nothing_after_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::new(Some(path.as_os_str()));
        assert!(notifier.enabled());
        notifier.ready("serving");
        notifier.ready("serving again");
        assert!(notifier.stopping());
        assert!(!notifier.stopping());
        notifier.ready("too late");
        notifier.send("WATCHDOG=1");
        assert_eq!(receive(&socket), "READY=1\nSTATUS=serving");
        assert_eq!(receive(&socket), "STOPPING=1\nSTATUS=shutting down");
        assert_eq!(receive(&socket), "WATCHDOG=1");
    }

    #[test]
    fn abstract_sockets_work_and_missing_ones_are_harmless() {
        let name = format!("kakigori-notify-test-{}", std::process::id());
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::new(Some(OsStr::new(&format!("@{name}"))));
        notifier.send("WATCHDOG=1");
        assert_eq!(receive(&socket), "WATCHDOG=1");

        let nobody = Notifier::new(Some(OsStr::new("/nonexistent/kakigori/notify")));
        assert!(nobody.enabled());
        nobody.ready("serving");
        assert!(nobody.stopping());
        let relative = Notifier::new(Some(OsStr::new("relative/path")));
        assert!(!relative.enabled());
        let unset = Notifier::new(None);
        assert!(!unset.enabled());
        unset.send("READY=1");
    }

    #[test]
    fn watchdog_pings_only_while_every_core_beats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let notifier = Arc::new(Notifier::new(Some(path.as_os_str())));
        let heartbeats = Arc::new(Heartbeats::new(2, Some(Duration::from_millis(20))));
        let watchdog =
            Watchdog::start(notifier, heartbeats.clone(), Duration::from_millis(20)).unwrap();
        // Core 0 beats, core 1 is stalled: only the first, unconditional ping arrives.
        for _ in 0..10 {
            heartbeats.beat(0);
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut pings = 0;
        let mut buf = [0u8; 64];
        while socket.recv(&mut buf).is_ok() {
            pings += 1;
        }
        assert_eq!(pings, 1);
        // Core 1 retires (shut down): pings resume.
        heartbeats.retire(1);
        for _ in 0..30 {
            heartbeats.beat(0);
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(watchdog);
        while socket.recv(&mut buf).is_ok() {
            pings += 1;
        }
        assert!(pings >= 3, "{pings}");
    }
}
