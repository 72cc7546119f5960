//! Time as the engine sees it: an injected [`Clock`], never the wall clock directly.
//!
//! The real clock lives outside the runtime (in the adapters); the simulator supplies a virtual
//! one. Everything the engine persists carries [`Timestamp`]s from the injected clock, which is
//! what makes a simulated run byte-for-byte reproducible.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch, on whatever clock was injected.
///
/// Serialised as RFC 3339 with milliseconds in UTC (`2026-01-05T16:05:07.040Z`) for people and
/// scripts (JSON output, the control socket), and as the number of milliseconds in the binary
/// store and world files. Either form is read back from either kind of format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match s.is_human_readable() {
            true => s.collect_str(self),
            false => s.serialize_u64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time in UTC or milliseconds since the Unix epoch")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                u64::try_from(v).map(Timestamp).map_err(|_| E::custom(format!("time {v} is before 1970")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v)
                    .ok_or_else(|| E::custom(format!("'{v}' is not an RFC 3339 time (e.g. 2026-01-05T16:05:07.040Z)")))
            }
        }
        match d.is_human_readable() {
            true => d.deserialize_any(Visitor),
            false => d.deserialize_u64(Visitor),
        }
    }
}

impl Timestamp {
    pub fn millis(self) -> u64 {
        self.0
    }
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    /// Parse an RFC 3339 date-time (`2026-12-01T22:00:00Z`, fractional seconds and a numeric
    /// offset allowed). `None` for anything else, and for times before 1970.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
        };
        let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
            return None;
        }
        let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0;
        if sep(i, b".") {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
            let frac = num(start..(start + 3).min(i))?;
            millis = frac * 10i64.pow(3 - (i - start).min(3) as u32);
        }
        let offset_s = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
                if *sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return None,
        };
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
        let ms = secs.checked_mul(1000)?.checked_add(millis)?;
        u64::try_from(ms).ok().map(Timestamp)
    }
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with millisecond precision, computed without a date library.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        let (y, mo, d) = civil_from_days(days as i64);
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

/// Howard Hinnant's days-from-civil inverse: proleptic Gregorian date of a day count.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Human-friendly duration: `2h03m`, `4m10s`, `850ms`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The only source of time for the engine and the procedures.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Resolve once `now() >= t`. A real clock sleeps; a virtual clock advances its world.
    fn sleep_until(&self, t: Timestamp) -> BoxFuture<'_, ()>;
}

/// A virtual clock that jumps straight to whatever time it is asked to wait for.
/// Used by runtime tests; the simulator has its own clock tied to its world.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock { now: AtomicU64::new(start.0) }
    }
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
    fn sleep_until(&self, t: Timestamp) -> BoxFuture<'_, ()> {
        self.now.fetch_max(t.0, Ordering::SeqCst);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        // 2026-11-21T18:11:41.250Z
        assert_eq!(Timestamp(1_795_284_701_250).to_string(), "2026-11-21T18:11:41.250Z");
        assert_eq!(Timestamp(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_rfc3339_as_it_formats_it() {
        for t in [Timestamp(0), Timestamp(1_700_000_000_123), Timestamp(951_782_400_000)] {
            assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t), "{t}");
        }
        assert_eq!(Timestamp::parse_rfc3339("2026-12-01T22:00:00+01:00"), Timestamp::parse_rfc3339("2026-12-01T21:00:00Z"));
        assert_eq!(Timestamp::parse_rfc3339("2026-12-01T21:00:00.5Z").map(|t| t.millis() % 1000), Some(500));
        for bad in [
            "true",
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-01 21:00:00Z",
            "2026-12-01T21:00:00",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_says_rfc3339_and_the_store_keeps_milliseconds() {
        let t = Timestamp(1_795_284_701_250);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-21T18:11:41.250Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>("\"2026-11-21T18:11:41.250Z\"").unwrap(), t);
        assert_eq!(serde_json::from_str::<Timestamp>("1795284701250").unwrap(), t, "older JSON");
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        let packed = rmp_serde::to_vec(&t).unwrap();
        assert_eq!(rmp_serde::from_slice::<u64>(&packed).unwrap(), t.0, "the store keeps a number");
        assert_eq!(rmp_serde::from_slice::<Timestamp>(&packed).unwrap(), t);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(fmt_duration(Duration::from_secs(250)), "4m10s");
        assert_eq!(fmt_duration(Duration::from_secs(7380)), "2h03m");
    }

    #[test]
    fn manual_clock_only_moves_forward() {
        let c = ManualClock::new(Timestamp(1000));
        drop(c.sleep_until(Timestamp(500))); // ManualClock moves at the call, not the await
        assert_eq!(c.now(), Timestamp(1000));
        drop(c.sleep_until(Timestamp(5000)));
        assert_eq!(c.now(), Timestamp(5000));
    }
}
