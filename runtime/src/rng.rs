//! Deterministic randomness. All jitter and simulated chance flows from a seed.

use serde::{Deserialize, Serialize};

/// SplitMix64: tiny, fast, statistically fine for jitter and simulation, and its whole state
/// is one `u64`, so it serialises with the world it drives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetRng {
    state: u64,
}

impl DetRng {
    pub fn new(seed: u64) -> Self {
        DetRng { state: seed }
    }

    /// A generator derived from a seed and a stream name, independent of other streams.
    pub fn derive(seed: u64, stream: &[u8]) -> Self {
        DetRng::new(mix(seed, stream))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]` (inclusive). `lo > hi` is a caller bug.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "DetRng::range({lo}, {hi})");
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        assert!(den > 0);
        self.next_u64() % den < num
    }
}

/// Stateless hash of a seed and some bytes (FNV-1a folded through SplitMix), for values that
/// must be the same after a restart without persisting generator state.
pub fn mix(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    DetRng::new(h).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = DetRng::new(42);
        let mut b = DetRng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(DetRng::new(1).next_u64(), DetRng::new(2).next_u64());
    }

    #[test]
    fn range_is_inclusive_and_bounded() {
        let mut r = DetRng::new(7);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let v = r.range(3, 6);
            assert!((3..=6).contains(&v));
            seen[(v - 3) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
