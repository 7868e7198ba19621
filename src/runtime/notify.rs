//! Telling systemd how the service is doing (sd_notify(3)). The `sd-notify` crate speaks
//! the protocol; what is ours is when to say what: `READY=1` once the journal is
//! recovered and every core listens, `WATCHDOG=1` at half of `$WATCHDOG_USEC` but only
//! while every core's executor still runs its tasks, `STOPPING=1` when shutdown begins,
//! with a `STATUS=` line for `systemctl status`. Without `$NOTIFY_SOCKET` (not under
//! systemd) nothing is sent, and a socket that has gone away is logged, never fatal.
//!
//! sd-notify sends each message on a fresh blocking socket. `STOPPING=1` goes out from
//! the executor of the first core to shut down; systemd drains its notify socket as
//! messages come, so that send only waits if the service manager itself is stuck.

use sd_notify::NotifyState;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Whether to notify, and what has been said so far.
pub struct Notifier {
    enabled: bool,
    ready: AtomicBool,
    stopping: AtomicBool,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for.
    pub fn from_env() -> Notifier {
        Notifier::new(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// A notifier for `socket` (`$NOTIFY_SOCKET`'s value, which `sd-notify` reads again
    /// for every message); `None` sends nothing.
    fn new(socket: Option<&OsStr>) -> Notifier {
        let socket = socket.filter(|s| !s.is_empty());
        // sd-notify connects to the value as a path, so an abstract `@name` (which current
        // systemd no longer hands out) or a relative path would reach the wrong socket.
        let enabled = socket.is_some_and(|s| s.as_bytes().starts_with(b"/"));
        if let (Some(socket), false) = (socket, enabled) {
            log::warn!(
                "NOTIFY_SOCKET={}: only absolute paths are supported; not notifying systemd",
                socket.to_string_lossy()
            );
        }
        Notifier {
            enabled,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Sends one notification. Failures are logged and ignored.
    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            log::warn!("cannot notify systemd ({}): {e}", states[0]);
        }
    }

    /// Every core listens and the journal is recovered. Sent once, and not once stopping
    /// began.
    pub fn ready(&self, status: &str) {
        if self.stopping.load(Ordering::SeqCst) || self.ready.swap(true, Ordering::SeqCst) {
            return;
        }
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Shutdown began. Only the first call sends; it returns true.
    pub fn stopping(&self) -> bool {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
        true
    }

    /// The service is alive; systemd restarts it when these stop coming.
    fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set and meant for
/// this process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval_from_env() -> Option<Duration> {
    sd_notify::watchdog_enabled().and_then(ping_interval)
}

/// Half the watchdog's period, as sd_watchdog_enabled(3) advises, so one late ping does
/// not get the service killed. A zero period is no watchdog.
fn ping_interval(period: Duration) -> Option<Duration> {
    (!period.is_zero()).then(|| (period / 2).max(Duration::from_millis(1)))
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

    fn beat(&self, core: usize) {
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

    /// The cores still serving that have not beaten since `seen`, which becomes now.
    fn stalled_since(&self, seen: &mut [u64]) -> Vec<usize> {
        let now = self.snapshot();
        let stalled = (0..now.len())
            .filter(|&core| now[core] != RETIRED && now[core] == seen[core])
            .collect();
        seen.copy_from_slice(&now);
        stalled
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
/// The pinging thread runs until this is dropped. Dropping does not wait for it: its
/// send blocks while the notify socket is full (whoever reads it stopped reading), and
/// the process must still be able to exit.
pub struct Watchdog {
    _stop: mpsc::Sender<()>,
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
        std::thread::Builder::new()
            .name("kakigori-watchdog".into())
            .spawn(move || {
                let mut seen = heartbeats.snapshot();
                notifier.watchdog();
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let stalled = heartbeats.stalled_since(&mut seen);
                    if stalled.is_empty() {
                        notifier.watchdog();
                    } else {
                        log::warn!(
                            "core(s) {stalled:?} ran no task for {} ms; withholding the watchdog ping",
                            every.as_millis()
                        );
                    }
                }
            })?;
        Ok(Watchdog { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_watchdog_period() {
        let ping = |ms| ping_interval(Duration::from_millis(ms));
        assert_eq!(ping(200), Some(Duration::from_millis(100)));
        assert_eq!(ping(30_000), Some(Duration::from_secs(15)));
        assert_eq!(ping(0), None);
        assert_eq!(
            ping_interval(Duration::from_micros(1)),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn notifies_only_an_absolute_socket_path() {
        assert!(Notifier::new(Some(OsStr::new("/run/systemd/notify"))).enabled());
        for unusable in ["@abstract/notify", "relative/notify", ""] {
            assert!(
                !Notifier::new(Some(OsStr::new(unusable))).enabled(),
                "{unusable}"
            );
        }
        let unset = Notifier::new(None);
        assert!(!unset.enabled());
        unset.ready("serving");
        assert!(unset.stopping());
        assert!(!unset.stopping(), "stopping is said once");
    }

    #[test]
    fn a_core_that_stops_beating_is_stalled_until_it_retires() {
        let heartbeats = Heartbeats::new(2, Some(Duration::from_millis(20)));
        let mut seen = heartbeats.snapshot();
        heartbeats.beat(0);
        assert_eq!(heartbeats.stalled_since(&mut seen), [1]);
        heartbeats.beat(0);
        heartbeats.beat(1);
        assert!(heartbeats.stalled_since(&mut seen).is_empty());
        assert_eq!(heartbeats.stalled_since(&mut seen), [0, 1]);
        // Core 1 shut down: only core 0 is expected, and a late beat does not revive it.
        heartbeats.retire(1);
        heartbeats.beat(1);
        assert_eq!(heartbeats.stalled_since(&mut seen), [0]);
        heartbeats.beat(0);
        assert!(heartbeats.stalled_since(&mut seen).is_empty());
    }

    #[test]
    fn cores_beat_four_times_per_ping_and_not_at_all_without_a_watchdog() {
        let every = Duration::from_millis(100);
        let heartbeats = Heartbeats::new(1, Some(every));
        assert_eq!(heartbeats.period, Some(every / 4));
        assert_eq!(Heartbeats::new(1, None).period, None);
    }
}
