//! Giving memory back after a crowd leaves. The allocator keeps freed memory for reuse,
//! so after 15,000 connections close the process would stay at its peak size for good.
//! When the number of open connections has fallen well below its recent peak, the
//! journal core asks the allocator to return free pages to the system, once per drop.

use crate::net::admission::ConnectionCounts;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often the open-connection count is looked at.
const CHECK_INTERVAL_MS: u64 = 1000;
/// Connections that must have closed since the peak before trimming is worth a pass
/// over the heap.
const CLOSED_SINCE_PEAK_MIN: usize = 1000;

/// Runs on one core for as long as it runs.
pub fn start_trimmer(counts: Arc<ConnectionCounts>) {
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(CHECK_INTERVAL_MS)).await;
            let open = counts.open.load(Ordering::Relaxed);
            let peak = counts.peak.load(Ordering::Relaxed);
            if peak.saturating_sub(open) >= CLOSED_SINCE_PEAK_MIN && open <= peak / 2 {
                // SAFETY: malloc_trim only releases free memory; it is thread-safe.
                unsafe { libc::malloc_trim(0) };
                counts.peak.store(open, Ordering::Relaxed);
            }
        }
    })
    .detach();
}
