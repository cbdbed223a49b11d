//! The Graph API's request rate per token: a token bucket per token id, refilled at
//! `rate` per second up to `burst`. Pure: the caller gives the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Buckets by token id.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

/// The most buckets kept; past it, the ones idle long enough to be full again are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimit {
    /// `rate` requests per second on average, `burst` at once (0: no limit).
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one request of token `id` at `now`: Ok, or how long until one is allowed.
    pub fn take(&mut self, id: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        if self.buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (level, at)| {
                level.to_owned() + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (level, at) = self
            .buckets
            .entry(id.to_string())
            .or_insert((self.burst, now));
        let refilled =
            (*level + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *level = refilled - 1.0;
            Ok(())
        } else {
            *level = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_each_token_on_its_own() {
        let mut r = RateLimit::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.take("a", t0).is_ok());
        }
        let wait = r.take("a", t0).expect_err("past the burst");
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(r.take("b", t0).is_ok(), "another token has its own bucket");
        assert!(
            r.take("a", t0 + Duration::from_millis(100)).is_ok(),
            "refilled at the rate"
        );
        assert!(r.take("a", t0 + Duration::from_millis(100)).is_err());
        let mut none = RateLimit::new(0, 0);
        for _ in 0..1000 {
            assert!(none.take("a", t0).is_ok());
        }
    }
}
