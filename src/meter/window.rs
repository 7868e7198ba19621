//! The sliding window behind `/ws`: the mean and count of a room's samples
//! from the last `window_ms` of arrival time, over connected clients only.
//!
//! Time is cut into buckets of `bucket_ms`; a ring holds one (sum, count) per
//! bucket plus running totals, so adding a sample and reading the average are
//! O(1), and time passing costs O(1) per elapsed bucket. A sample counts while
//! its bucket is one of the newest `window_ms / bucket_ms`, so the window's
//! old edge is resolved to one bucket, as the spec allows.
//!
//! Sums are kept in fixed point (`i128`, 64 fractional bits) rather than
//! `f64`: integer addition is exact and associative, so subtracting an
//! expired bucket or a departing client's share gives back exactly what was
//! added — no drift, however long a room lives and however values mix in
//! magnitude. Values are quantised to 2⁻⁶⁴ (≈5.4e-20) on the way in, which
//! is exact for every value of magnitude ≥ 2⁻¹¹ and negligible otherwise.
//!
//! A client leaving must take its samples with it. Each connection owns a
//! [`Contribution`]: its own per-bucket shares, newest last, for the buckets
//! still in the window. It holds no heap memory until the client first sends.
//! The caller must use a contribution with one window only.

use std::collections::VecDeque;
use std::fmt;

/// Largest accepted |value|: keeps every sum far inside `i128` (see
/// [`WINDOW_SAMPLES_MAX`]) and every average finite.
pub const SAMPLE_ABS_MAX: f64 = 1e9;

/// Most samples held at once. With |value| ≤ 1e9 < 2³⁰, each fixed-point
/// value is < 2⁹⁴, so 2³² of them sum to < 2¹²⁶: no overflow is possible.
pub const WINDOW_SAMPLES_MAX: u64 = 1 << 32;

/// Most buckets a window may have; bounds a room's memory (32 B a bucket)
/// and the cost of catching up after a long quiet spell.
pub const WINDOW_BUCKETS_MAX: u64 = 10_000;

/// 2⁶⁴: one unit of value in fixed point.
const FIXED_ONE: f64 = 18_446_744_073_709_551_616.0;

/// Why a window cannot be built with the given widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowConfigError {
    /// `bucket_ms` was 0.
    ZeroBucket,
    /// `window_ms` is not a positive whole number of buckets.
    NotWholeBuckets,
    /// More than [`WINDOW_BUCKETS_MAX`] buckets.
    TooManyBuckets,
}

impl fmt::Display for WindowConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowConfigError::ZeroBucket => "the bucket width must be at least 1 ms",
            WindowConfigError::NotWholeBuckets => {
                "the window must be a positive whole multiple of the bucket width"
            }
            WindowConfigError::TooManyBuckets => {
                "the window may hold at most 10000 buckets: widen the buckets"
            }
        })
    }
}

impl std::error::Error for WindowConfigError {}

/// Why a sample was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleError {
    /// Not finite, or |value| > [`SAMPLE_ABS_MAX`].
    OutOfRange,
    /// The window already holds [`WINDOW_SAMPLES_MAX`] samples.
    WindowFull,
}

/// The window's state at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// Mean of the samples in the window; 0.0 when there are none.
    pub average: f64,
    /// How many samples are in the window.
    pub count: u64,
}

/// An exact (fixed-point sum, count) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    sum_fixed: i128,
    count: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.sum_fixed += other.sum_fixed;
        self.count += other.count;
    }

    fn subtract(&mut self, other: Tally) {
        debug_assert!(self.count >= other.count);
        self.sum_fixed -= other.sum_fixed;
        self.count -= other.count;
    }
}

/// One bucket's tally, tagged with the bucket number (`time_ms / bucket_ms`)
/// it currently holds, so a stale share can never be subtracted from a
/// bucket that has since been reused. Flat rather than holding a [`Tally`]
/// so it packs into 32 bytes instead of 48.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    sum_fixed: i128,
    count: u64,
    epoch: u64,
}

impl Bucket {
    fn empty(epoch: u64) -> Bucket {
        Bucket {
            sum_fixed: 0,
            count: 0,
            epoch,
        }
    }

    fn tally(&self) -> Tally {
        Tally {
            sum_fixed: self.sum_fixed,
            count: self.count,
        }
    }

    fn add(&mut self, other: Tally) {
        self.sum_fixed += other.sum_fixed;
        self.count += other.count;
    }

    fn subtract(&mut self, other: Tally) {
        debug_assert!(self.count >= other.count);
        self.sum_fixed -= other.sum_fixed;
        self.count -= other.count;
    }
}

/// What one connection has put into the window and not yet seen expire.
/// `Default` is empty and allocates nothing.
#[derive(Debug, Default)]
pub struct Contribution {
    /// Distinct, ascending epochs; at most one entry per live bucket.
    shares: VecDeque<Bucket>,
}

impl Contribution {
    /// Heap bytes held; 0 for a connection that never sent.
    pub fn heap_bytes(&self) -> usize {
        self.shares.capacity() * std::mem::size_of::<Bucket>()
    }
}

/// A room's sliding window. See the module docs.
#[derive(Debug)]
pub struct Window {
    bucket_ms: u64,
    /// Slot `epoch % len` holds bucket `epoch` for the live epochs.
    buckets: Box<[Bucket]>,
    /// The newest epoch seen; live epochs are `head_epoch - len + 1 ..= head_epoch`.
    head_epoch: u64,
    total: Tally,
}

impl Window {
    /// A window of `window_ms` in buckets of `bucket_ms`; the window must be
    /// a whole number (1 ..= [`WINDOW_BUCKETS_MAX`]) of buckets.
    pub fn new(window_ms: u64, bucket_ms: u64) -> Result<Window, WindowConfigError> {
        if bucket_ms == 0 {
            return Err(WindowConfigError::ZeroBucket);
        }
        if window_ms == 0 || !window_ms.is_multiple_of(bucket_ms) {
            return Err(WindowConfigError::NotWholeBuckets);
        }
        let bucket_count = window_ms / bucket_ms;
        if bucket_count > WINDOW_BUCKETS_MAX {
            return Err(WindowConfigError::TooManyBuckets);
        }
        Ok(Window {
            bucket_ms,
            buckets: vec![Bucket::default(); bucket_count as usize].into_boxed_slice(),
            head_epoch: 0,
            total: Tally::default(),
        })
    }

    /// Adds a sample that arrived at `now_ms` from the connection owning
    /// `contribution`. Rejects values the sums cannot hold exactly.
    pub fn add(
        &mut self,
        contribution: &mut Contribution,
        value: f64,
        now_ms: u64,
    ) -> Result<(), SampleError> {
        if !value.is_finite() || value.abs() > SAMPLE_ABS_MAX {
            return Err(SampleError::OutOfRange);
        }
        let epoch = self.advance(now_ms);
        if self.total.count >= WINDOW_SAMPLES_MAX {
            return Err(SampleError::WindowFull);
        }
        // Exact scaling by a power of two, then rounding to an integer that
        // fits `i128` easily (|fixed| < 2⁹⁴).
        let sample = Tally {
            sum_fixed: (value * FIXED_ONE).round() as i128,
            count: 1,
        };
        let slot = self.slot(epoch);
        self.buckets[slot].add(sample);
        self.total.add(sample);

        self.forget_expired_shares(contribution);
        match contribution.shares.back_mut() {
            Some(share) if share.epoch == epoch => share.add(sample),
            _ => {
                let mut share = Bucket::empty(epoch);
                share.add(sample);
                contribution.shares.push_back(share);
            }
        }
        Ok(())
    }

    /// Removes every sample of `contribution` still in the window (the
    /// connection is leaving) and leaves `contribution` empty, holding no
    /// memory. Samples that already expired are not touched twice.
    pub fn withdraw(&mut self, contribution: &mut Contribution, now_ms: u64) {
        self.advance(now_ms);
        let shares = std::mem::take(&mut contribution.shares);
        for share in shares {
            if !self.is_live(share.epoch) {
                continue;
            }
            let slot = self.slot(share.epoch);
            let bucket = &mut self.buckets[slot];
            debug_assert_eq!(
                bucket.epoch, share.epoch,
                "contribution from another window"
            );
            if bucket.epoch == share.epoch {
                bucket.subtract(share.tally());
                self.total.subtract(share.tally());
            }
        }
    }

    /// Drops the shares of `contribution` that have expired and frees its
    /// memory once none are left, so a client that went quiet costs nothing.
    /// Cheap enough to call on every heartbeat.
    pub fn prune(&mut self, contribution: &mut Contribution, now_ms: u64) {
        self.advance(now_ms);
        self.forget_expired_shares(contribution);
        if contribution.shares.is_empty() {
            contribution.shares = VecDeque::new();
        }
    }

    /// The mean and count of the samples in the window at `now_ms`.
    pub fn read(&mut self, now_ms: u64) -> Reading {
        self.advance(now_ms);
        if self.total.count == 0 {
            return Reading {
                average: 0.0,
                count: 0,
            };
        }
        // Both conversions round once; dividing by 2⁶⁴ is exact.
        let sum = self.total.sum_fixed as f64 / FIXED_ONE;
        Reading {
            average: sum / self.total.count as f64,
            count: self.total.count,
        }
    }

    fn bucket_count(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn slot(&self, epoch: u64) -> usize {
        (epoch % self.bucket_count()) as usize
    }

    /// Whether bucket `epoch` is one of the newest `bucket_count`. Written
    /// without `epoch + bucket_count`, which could overflow near `u64::MAX`.
    fn is_live(&self, epoch: u64) -> bool {
        epoch <= self.head_epoch && self.head_epoch - epoch < self.bucket_count()
    }

    /// Pops a contribution's shares whose buckets have left the window. They
    /// are oldest first, so this stops at the first live one.
    fn forget_expired_shares(&self, contribution: &mut Contribution) {
        while let Some(oldest) = contribution.shares.front() {
            if self.is_live(oldest.epoch) {
                break;
            }
            contribution.shares.pop_front();
        }
    }

    /// Moves the window's head to `now_ms`, expiring the buckets it passes,
    /// and returns the head epoch. A clock that steps back is treated as
    /// standing still, so samples always land in a live bucket.
    fn advance(&mut self, now_ms: u64) -> u64 {
        let epoch = now_ms / self.bucket_ms;
        if epoch <= self.head_epoch {
            return self.head_epoch;
        }
        let bucket_count = self.bucket_count();
        // After a jump of a whole window or more, every bucket is cleared
        // once rather than once per elapsed bucket.
        let first_new = (self.head_epoch + 1).max(epoch.saturating_sub(bucket_count - 1));
        for new_epoch in first_new..=epoch {
            let slot = self.slot(new_epoch);
            let expired = std::mem::replace(&mut self.buckets[slot], Bucket::empty(new_epoch));
            // A slot may hold a bucket that left the window (and the totals)
            // during an earlier jump; only a bucket live until now counts.
            if self.is_live(expired.epoch) {
                self.total.subtract(expired.tally());
            }
        }
        debug_assert!(
            epoch - self.head_epoch < bucket_count || self.total == Tally::default(),
            "a jump of a whole window must empty it"
        );
        self.head_epoch = epoch;
        epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window() -> Window {
        Window::new(5_000, 100).unwrap()
    }

    #[test]
    fn buckets_pack_into_32_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 32);
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(
            Window::new(5_000, 0).unwrap_err(),
            WindowConfigError::ZeroBucket
        );
        assert_eq!(
            Window::new(5_000, 300).unwrap_err(),
            WindowConfigError::NotWholeBuckets
        );
        assert_eq!(
            Window::new(0, 100).unwrap_err(),
            WindowConfigError::NotWholeBuckets
        );
        assert_eq!(
            Window::new(10_001, 1).unwrap_err(),
            WindowConfigError::TooManyBuckets
        );
        assert!(Window::new(100, 100).is_ok());
        assert!(Window::new(10_000, 1).is_ok());
    }

    #[test]
    fn empty_room_reads_zero() {
        let mut window = window();
        assert_eq!(
            window.read(0),
            Reading {
                average: 0.0,
                count: 0
            }
        );
        assert_eq!(
            window.read(u64::MAX),
            Reading {
                average: 0.0,
                count: 0
            }
        );
    }

    #[test]
    fn samples_expire_at_bucket_granularity() {
        let mut window = window();
        let mut alice = Contribution::default();
        window.add(&mut alice, 10.0, 1_050).unwrap(); // bucket 10
        window.add(&mut alice, 20.0, 1_150).unwrap(); // bucket 11
        assert_eq!(
            window.read(1_150),
            Reading {
                average: 15.0,
                count: 2
            }
        );
        // Bucket 10 is live through bucket 59 (time 5_999), gone at 6_000.
        assert_eq!(window.read(5_999).count, 2);
        assert_eq!(
            window.read(6_000),
            Reading {
                average: 20.0,
                count: 1
            }
        );
        assert_eq!(
            window.read(6_100),
            Reading {
                average: 0.0,
                count: 0
            }
        );
    }

    #[test]
    fn time_jumps_far_ahead() {
        let mut window = window();
        let mut alice = Contribution::default();
        window.add(&mut alice, 3.0, 0).unwrap();
        window.add(&mut alice, 5.0, 4_999).unwrap();
        assert_eq!(window.read(u64::MAX / 2).count, 0);
        window.add(&mut alice, 7.0, u64::MAX / 2).unwrap();
        assert_eq!(
            window.read(u64::MAX),
            Reading {
                average: 0.0,
                count: 0
            }
        );
        window.add(&mut alice, 9.0, u64::MAX).unwrap();
        assert_eq!(
            window.read(u64::MAX),
            Reading {
                average: 9.0,
                count: 1
            }
        );
    }

    #[test]
    fn a_clock_stepping_back_counts_as_now() {
        let mut window = window();
        let mut alice = Contribution::default();
        window.add(&mut alice, 1.0, 10_000).unwrap();
        window.add(&mut alice, 3.0, 2_000).unwrap();
        assert_eq!(
            window.read(0),
            Reading {
                average: 2.0,
                count: 2
            }
        );
        window.withdraw(&mut alice, 0);
        assert_eq!(window.read(10_000).count, 0);
    }

    #[test]
    fn leaving_withdraws_only_live_samples_of_that_connection() {
        let mut window = window();
        let mut alice = Contribution::default();
        let mut bob = Contribution::default();
        window.add(&mut alice, 100.0, 0).unwrap();
        window.add(&mut alice, 1.0, 3_000).unwrap();
        window.add(&mut bob, 2.0, 3_000).unwrap();
        window.add(&mut bob, 4.0, 4_000).unwrap();
        assert_eq!(window.read(5_500).count, 3, "alice's first sample expired");
        window.withdraw(&mut alice, 5_500);
        assert_eq!(
            window.read(5_500),
            Reading {
                average: 3.0,
                count: 2
            }
        );
        assert_eq!(alice.heap_bytes(), 0);
        window.withdraw(&mut bob, 20_000);
        assert_eq!(window.read(20_000).count, 0);
    }

    #[test]
    fn leaving_after_expiry_withdraws_nothing() {
        let mut window = window();
        let mut alice = Contribution::default();
        let mut bob = Contribution::default();
        window.add(&mut alice, 1.0, 0).unwrap();
        window.add(&mut bob, 2.0, 9_000).unwrap();
        window.withdraw(&mut alice, 9_000);
        assert_eq!(
            window.read(9_000),
            Reading {
                average: 2.0,
                count: 1
            }
        );
    }

    #[test]
    fn idle_connections_hold_no_memory() {
        let mut window = window();
        let mut alice = Contribution::default();
        assert_eq!(alice.heap_bytes(), 0);
        window.add(&mut alice, 1.0, 0).unwrap();
        assert!(alice.heap_bytes() > 0);
        window.prune(&mut alice, 4_000);
        assert!(alice.heap_bytes() > 0, "still in the window");
        window.prune(&mut alice, 5_000);
        assert_eq!(alice.heap_bytes(), 0);
        assert_eq!(window.read(5_000).count, 0);
    }

    #[test]
    fn a_connection_holds_at_most_one_share_per_bucket() {
        let mut window = window();
        let mut alice = Contribution::default();
        for now_ms in 0..20_000 {
            window.add(&mut alice, 1.0, now_ms).unwrap();
            assert!(alice.shares.len() <= 50);
        }
        assert_eq!(window.read(19_999).count, 5_000);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut window = window();
        let mut alice = Contribution::default();
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e9 + 1.0, -2e9] {
            assert_eq!(
                window.add(&mut alice, value, 0),
                Err(SampleError::OutOfRange)
            );
        }
        window.add(&mut alice, 1e9, 0).unwrap();
        window.add(&mut alice, -1e9, 0).unwrap();
        assert_eq!(
            window.read(0),
            Reading {
                average: 0.0,
                count: 2
            }
        );
    }

    #[test]
    fn no_drift_when_large_values_leave() {
        let mut window = window();
        let mut loud = Contribution::default();
        let mut quiet = Contribution::default();
        window.add(&mut loud, 1e9, 0).unwrap();
        window.add(&mut quiet, 0.001, 0).unwrap();
        window.add(&mut loud, -999_999_999.9, 0).unwrap();
        window.withdraw(&mut loud, 0);
        assert_eq!(
            window.read(0),
            Reading {
                average: 0.001,
                count: 1
            }
        );
    }

    /// Sums `values` exactly and rounds once (Shewchuk's algorithm, as in
    /// Python's `math.fsum`): an independent reference for the fixed point.
    fn exact_sum(values: impl Iterator<Item = f64>) -> f64 {
        let mut partials: Vec<f64> = Vec::new();
        for mut x in values {
            let mut kept = 0;
            for index in 0..partials.len() {
                let mut y = partials[index];
                if x.abs() < y.abs() {
                    std::mem::swap(&mut x, &mut y);
                }
                let high = x + y;
                let low = y - (high - x);
                if low != 0.0 {
                    partials[kept] = low;
                    kept += 1;
                }
                x = high;
            }
            partials.truncate(kept);
            partials.push(x);
        }
        partials
            .iter()
            .rev()
            .fold(0.0, |sum, partial| sum + partial)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Wait(u64),
        Join,
        Leave(proptest::sample::Index),
        Send(proptest::sample::Index, f64),
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-100i32..=100).prop_map(f64::from),
            -1e9..=1e9f64,
            (-1e3..=1e3f64),
            (1e-30..1e-3f64),
            Just(1e9),
            Just(-1e9),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => prop_oneof![0u64..50, 0u64..400, 4_000u64..6_000, 5_000u64..30_000].prop_map(Op::Wait),
            1 => Just(Op::Join),
            1 => any::<proptest::sample::Index>().prop_map(Op::Leave),
            6 => (any::<proptest::sample::Index>(), value()).prop_map(|(who, value)| Op::Send(who, value)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_a_naive_reference(
            bucket_ms in 1u64..=200,
            bucket_count in 1u64..=60,
            start_ms in prop_oneof![Just(0u64), any::<u32>().prop_map(u64::from)],
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut window = Window::new(bucket_ms * bucket_count, bucket_ms).unwrap();
            // Reference: every sample of a connected client, with its time.
            let mut samples: Vec<(u64, f64, usize)> = Vec::new();
            let mut connections: Vec<(usize, Contribution)> = vec![(0, Contribution::default())];
            let mut next_id = 1;
            let mut now_ms = start_ms;
            for op in ops {
                match op {
                    Op::Wait(gap_ms) => now_ms += gap_ms,
                    Op::Join => {
                        connections.push((next_id, Contribution::default()));
                        next_id += 1;
                    }
                    Op::Leave(who) if !connections.is_empty() => {
                        let (id, mut contribution) = connections.swap_remove(who.index(connections.len()));
                        window.withdraw(&mut contribution, now_ms);
                        prop_assert_eq!(contribution.heap_bytes(), 0);
                        samples.retain(|&(_, _, owner)| owner != id);
                    }
                    Op::Send(who, value) if !connections.is_empty() => {
                        let index = who.index(connections.len());
                        let (id, contribution) = &mut connections[index];
                        window.add(contribution, value, now_ms).unwrap();
                        samples.push((now_ms, value, *id));
                    }
                    Op::Leave(_) | Op::Send(..) => {}
                }
                let now_epoch = now_ms / bucket_ms;
                let live = || samples
                    .iter()
                    .filter(|&&(time_ms, _, _)| time_ms / bucket_ms + bucket_count > now_epoch);
                let expected_count = live().count() as u64;
                let expected_average = if expected_count == 0 {
                    0.0
                } else {
                    exact_sum(live().map(|&(_, value, _)| value)) / expected_count as f64
                };
                let reading = window.read(now_ms);
                prop_assert_eq!(reading.count, expected_count);
                // Relative 1e-9, with an absolute floor at the fixed-point
                // quantum (2⁻⁶⁴ per sample at most, so at most that on average).
                let tolerance = 1e-9 * expected_average.abs() + 1.0 / FIXED_ONE;
                prop_assert!(
                    (reading.average - expected_average).abs() <= tolerance,
                    "average {} expected {}", reading.average, expected_average
                );
                for (_, contribution) in &connections {
                    prop_assert!(contribution.shares.len() as u64 <= bucket_count);
                }
            }
        }
    }
}
