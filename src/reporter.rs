//! One reporter for everything drctl says on stderr: its own `drctl:` lines and the tracing
//! events of the engine, procedures and adapters carry the same prefix and the same time — the
//! driven run's clock (simulated time in a simulated run), the wall clock otherwise.

use drctl_runtime::{Clock, Timestamp};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// The driven run's time at its latest commit (milliseconds; 0 while no run is driven). Kept
/// as a number, not a clock: reading a simulated clock takes its world's lock, and a tracing
/// event emitted while that lock is held would then wait on itself.
static RUN_TIME: AtomicU64 = AtomicU64::new(0);

/// From now on, stderr lines carry the run's time: `t` now, then each later [`note_run_time`].
pub fn use_run_time(t: Timestamp) {
    RUN_TIME.store(t.millis().max(1), Ordering::Relaxed);
}

/// The driven run committed at `t` (its clock's time).
pub fn note_run_time(t: Timestamp) {
    if RUN_TIME.load(Ordering::Relaxed) != 0 {
        RUN_TIME.fetch_max(t.millis(), Ordering::Relaxed);
    }
}

/// The time a line is stamped with.
fn now() -> Timestamp {
    match RUN_TIME.load(Ordering::Relaxed) {
        0 => drctl_adapters::clock::SystemClock::new().now(),
        ms => Timestamp(ms),
    }
}

/// `drctl: [2026-01-05T16:06:27.048Z]` before each tracing event, as before `drctl: run N [...]`.
struct ReporterTime;

impl FormatTime for ReporterTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(w, "drctl: [{}]", now())
    }
}

/// Install the tracing subscriber: `level` unless `DRCTL_LOG` says otherwise.
pub fn init(level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("DRCTL_LOG").unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .with_timer(ReporterTime)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
