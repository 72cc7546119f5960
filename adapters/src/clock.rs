//! The wall clock: the one place in drctl that reads real time.

use drctl_runtime::clock::{BoxFuture, Clock, Timestamp};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// [`Clock`] on the system's real-time clock; `sleep_until` sleeps on the tokio timer, so it
/// must be awaited inside a tokio runtime with time enabled.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    pub fn new() -> Self {
        SystemClock
    }
}

impl Clock for SystemClock {
    // The one place drctl reads the wall clock.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        // Before 1970 only on a broken host; report the epoch rather than panic.
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn sleep_until(&self, t: Timestamp) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Re-check after waking: the wall clock may have been stepped backwards meanwhile.
            // Bounded: each round sleeps at least what is left, and time moves forward.
            loop {
                let now = self.now();
                if now >= t {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(t.0 - now.0)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_until_the_deadline() {
        let c = SystemClock::new();
        let start = c.now();
        assert!(start.0 > 1_600_000_000_000, "wall clock looks wrong: {start}");
        let t = start.plus(Duration::from_millis(60));
        c.sleep_until(t).await;
        assert!(c.now() >= t);
        // A deadline in the past resolves at once.
        c.sleep_until(Timestamp(0)).await;
    }
}
