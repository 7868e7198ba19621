//! Milliseconds on a monotonic clock, injected into everything that keeps time (rooms,
//! rate caps, heartbeats) so that tests can drive time by hand instead of sleeping.

use std::cell::Cell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch, for times shared between cores and
/// written to disk (0 for a clock set before 1970).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

pub enum Clock {
    /// Milliseconds since the clock was made.
    Real(Instant),
    /// Milliseconds set by the test that owns it.
    Manual(Cell<u64>),
}

impl Clock {
    pub fn real() -> Clock {
        Clock::Real(Instant::now())
    }

    pub fn manual(start_ms: u64) -> Clock {
        Clock::Manual(Cell::new(start_ms))
    }

    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::Real(started) => started.elapsed().as_millis() as u64,
            Clock::Manual(now_ms) => now_ms.get(),
        }
    }

    /// Moves a manual clock forward; a real clock cannot be moved.
    pub fn advance_ms(&self, ms: u64) {
        match self {
            Clock::Real(_) => panic!("a real clock cannot be moved"),
            Clock::Manual(now_ms) => now_ms.set(now_ms.get() + ms),
        }
    }
}
