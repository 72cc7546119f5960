//! Retry policy as data: a pure function from (attempt, seed) to the delay before the next try.

use crate::rng::mix;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: u32,
    /// Fraction of the delay, in percent, that is randomised (full jitter on that part).
    pub jitter_percent: u32,
}

impl Default for RetryPolicy {
    /// Like kube-rs's default error policy: 800 ms growing to 30 s.
    fn default() -> Self {
        RetryPolicy { initial: Duration::from_millis(800), max: Duration::from_secs(30), multiplier: 2, jitter_percent: 20 }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1 = first retry). Deterministic in `(seed, key,
    /// attempt)` so a resumed run computes the same schedule it would have without the crash.
    pub fn delay(&self, attempt: u32, seed: u64, key: &[u8]) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let base = self.initial.as_millis() as u64;
        let capped = base.saturating_mul((self.multiplier as u64).saturating_pow(exp)).min(self.max.as_millis() as u64);
        let jitter_span = capped * self.jitter_percent as u64 / 100;
        let mut k = key.to_vec();
        k.extend_from_slice(&attempt.to_le_bytes());
        let jitter = if jitter_span == 0 { 0 } else { mix(seed, &k) % (jitter_span + 1) };
        Duration::from_millis(capped - jitter_span + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let p = RetryPolicy { jitter_percent: 0, ..Default::default() };
        assert_eq!(p.delay(1, 0, b"k"), Duration::from_millis(800));
        assert_eq!(p.delay(2, 0, b"k"), Duration::from_millis(1600));
        assert_eq!(p.delay(6, 0, b"k"), Duration::from_millis(25_600));
        assert_eq!(p.delay(7, 0, b"k"), Duration::from_secs(30));
        assert_eq!(p.delay(400, 0, b"k"), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_in_band_and_is_deterministic() {
        let p = RetryPolicy::default();
        for a in 1..50 {
            let d = p.delay(a, 9, b"run-1");
            assert_eq!(d, p.delay(a, 9, b"run-1"));
            let nominal = p.delay(a, 9, b"run-1").as_millis() as u64;
            let cap = (800u64 << (a - 1).min(20)).min(30_000);
            assert!(nominal <= cap && nominal >= cap * 80 / 100, "attempt {a}: {nominal} vs {cap}");
        }
    }
}
