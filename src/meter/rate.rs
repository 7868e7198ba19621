//! A client's value budget: a token bucket holding up to one second's worth of values,
//! refilled continuously. Unlike a fixed one-second window it spreads a fast sender's
//! accepted values over the second instead of taking the first fifty and then nothing.

/// Tokens are counted in thousandths so refills of a few milliseconds are not lost.
const MILLI: u64 = 1000;

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    tokens_milli: u64,
    refilled_at_ms: u64,
}

impl RateLimit {
    /// A full bucket: a new client may send a burst of one second's worth at once.
    pub fn new(per_s_max: u32, now_ms: u64) -> RateLimit {
        RateLimit {
            tokens_milli: u64::from(per_s_max) * MILLI,
            refilled_at_ms: now_ms,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, per_s_max: u32, now_ms: u64) -> bool {
        let capacity_milli = u64::from(per_s_max) * MILLI;
        let elapsed_ms = now_ms.saturating_sub(self.refilled_at_ms);
        // per_s_max tokens per 1000 ms = per_s_max milli-tokens per ms.
        let refill_milli = elapsed_ms.saturating_mul(u64::from(per_s_max));
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(refill_milli)
            .min(capacity_milli);
        self.refilled_at_ms = now_ms;
        if self.tokens_milli >= MILLI {
            self.tokens_milli -= MILLI;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_steady_fifty_per_second() {
        let mut limit = RateLimit::new(50, 0);
        let burst = (0..100).filter(|_| limit.allow(50, 0)).count();
        assert_eq!(burst, 50, "one second's worth at once");
        // 200 values/s for 10 s: 50/s get through, evenly.
        let mut accepted = 0;
        for tick in 1..=2000u64 {
            if limit.allow(50, tick * 5) {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 500);
        // Quiet for a long time: the bucket holds no more than one second's worth.
        assert_eq!((0..100).filter(|_| limit.allow(50, 1_000_000)).count(), 50);
    }
}
