//! Latency histograms with fixed buckets, the Prometheus kind: because every node and
//! every core uses the same bounds, bucket counts can be summed anywhere (across cores
//! at scrape time here, across nodes in Prometheus), which quantiles cannot.
//!
//! Recording is a binary search over [`BOUNDS_US`] and two additions on the recording
//! core's own array; nothing is shared and nothing allocates.

use std::fmt::Write;

/// Upper bounds of the buckets, in microseconds: 10 µs to 10 s, about 2.5x apart
/// (1-2.5-5 per decade). Rendered in seconds as the `le` label; observations above the
/// last bound count only in `+Inf`. The same for every latency, so they read alike.
pub const BOUNDS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counts of observations per bucket (not cumulative; the last one is above every
/// bound), and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BOUNDS_US.len() + 1],
    sum_us: u64,
}

impl Histogram {
    pub fn record(&mut self, latency_us: u64) {
        self.record_n(latency_us, 1);
    }

    fn record_n(&mut self, latency_us: u64, n: u64) {
        // Buckets are `le` (at most the bound): the first bound not below the value.
        let bucket = BOUNDS_US.partition_point(|&bound| bound < latency_us);
        self.counts[bucket] += n;
        self.sum_us = self.sum_us.saturating_add(latency_us.saturating_mul(n));
    }

    /// The same observations in fixed buckets. An hdrhistogram keeps each value only to
    /// within its precision; each is taken at the top of its range, so a value within
    /// that precision of a bound may count in the bucket above it, never below.
    pub fn from_hdr(hdr: &hdrhistogram::Histogram<u64>) -> Histogram {
        let mut histogram = Histogram::default();
        for value in hdr.iter_recorded() {
            histogram.record_n(
                value.value_iterated_to(),
                value.count_since_last_iteration(),
            );
        }
        histogram
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Appends the `_bucket` (cumulative, with `+Inf`), `_sum` (seconds) and `_count`
    /// lines of `name`; `labels` are `k="v"` pairs to put before `le`, or empty.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound_us, n) in BOUNDS_US.iter().zip(self.counts) {
            cumulative += n;
            let le = *bound_us as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum_seconds = self.sum_us as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum_seconds}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_at_or_above_them() {
        let mut histogram = Histogram::default();
        for us in [
            0,
            10,
            11,
            25,
            999,
            1_000,
            1_001,
            10_000_000,
            10_000_001,
            u64::MAX,
        ] {
            histogram.record(us);
        }
        let mut expected = [0u64; BOUNDS_US.len() + 1];
        expected[0] = 2; // 0, 10
        expected[1] = 2; // 11, 25
        expected[6] = 2; // 999, 1000
        expected[7] = 1; // 1001
        expected[18] = 1; // 10 s
        expected[19] = 2; // above 10 s
        assert_eq!(histogram.counts, expected);
        assert_eq!(histogram.count(), 10);
        assert_eq!(histogram.sum_us, u64::MAX, "the sum saturates");
    }

    #[test]
    fn renders_cumulative_buckets_in_seconds() {
        let mut histogram = Histogram::default();
        histogram.record(7);
        histogram.record(30);
        histogram.record(20_000_000);
        let mut other = Histogram::default();
        other.record(30);
        histogram.merge(&other);
        let mut out = String::new();
        histogram.render(&mut out, "x_seconds", "route=\"menu\"");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), BOUNDS_US.len() + 3);
        assert_eq!(
            lines[0],
            "x_seconds_bucket{route=\"menu\",le=\"0.00001\"} 1"
        );
        assert_eq!(
            lines[1],
            "x_seconds_bucket{route=\"menu\",le=\"0.000025\"} 1"
        );
        assert_eq!(
            lines[2],
            "x_seconds_bucket{route=\"menu\",le=\"0.00005\"} 3"
        );
        assert_eq!(lines[18], "x_seconds_bucket{route=\"menu\",le=\"10\"} 3");
        assert_eq!(lines[19], "x_seconds_bucket{route=\"menu\",le=\"+Inf\"} 4");
        assert_eq!(lines[20], "x_seconds_sum{route=\"menu\"} 20.000067");
        assert_eq!(lines[21], "x_seconds_count{route=\"menu\"} 4");
        let mut out = String::new();
        Histogram::default().render(&mut out, "y", "");
        assert!(out.starts_with("y_bucket{le=\"0.00001\"} 0\n"));
        assert!(out.ends_with("y_bucket{le=\"+Inf\"} 0\ny_sum 0\ny_count 0\n"));
    }

    #[test]
    fn an_hdr_histogram_converts_without_losing_observations() {
        let mut hdr = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
        for us in [3, 40, 40, 900, 2_000, 70_000, 59_000_000] {
            hdr.record(us).unwrap();
        }
        let histogram = Histogram::from_hdr(&hdr);
        assert_eq!(histogram.count(), 7);
        let mut expected = [0u64; BOUNDS_US.len() + 1];
        expected[0] = 1;
        expected[2] = 2;
        expected[6] = 1;
        expected[7] = 1;
        expected[12] = 1;
        expected[19] = 1;
        assert_eq!(histogram.counts, expected);
    }
}
