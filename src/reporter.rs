//! One reporter for everything drctl says on stderr: its own `drctl:` lines and the tracing
//! events of the engine, procedures and adapters carry the same prefix and the same time — the
//! driven run's clock (simulated time in a simulated run), the wall clock otherwise.

use drctl_runtime::Clock;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

static RUN_CLOCK: Mutex<Option<Arc<dyn Clock>>> = Mutex::new(None);

/// From now on, stderr lines carry `clock`'s time (the clock of the run being driven).
pub fn use_run_clock(clock: Arc<dyn Clock>) {
    *RUN_CLOCK.lock().unwrap_or_else(|p| p.into_inner()) = Some(clock);
}

/// The time a line is stamped with.
fn now() -> drctl_runtime::Timestamp {
    let run = RUN_CLOCK.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match run {
        Some(c) => c.now(),
        None => drctl_adapters::clock::SystemClock::new().now(),
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
