//! What a run acts on: a simulated world (persisted beside the store) or a real cluster.

use anyhow::{bail, Context, Result};
use drctl_runtime::clock::{BoxFuture, Clock, Timestamp};
use drctl_runtime::RunRecord;
use drctl_sim::Sim;
use drctl_workflows::ports::Ports;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Labels recorded with a run so `resume` can rebuild its target.
pub const LABEL_TARGET: &str = "target";
pub const LABEL_SCENARIO: &str = "sim.scenario";
pub const LABEL_WORLD: &str = "sim.world";
pub const LABEL_SPEED: &str = "sim.speed";

/// The ports and clock of one run.
pub struct Target {
    pub ports: Arc<Ports>,
    pub clock: Arc<dyn Clock>,
    pub sim: Option<Sim>,
}

/// What a simulated world tells the up-front checks (`drctl run`, `resume --set`).
pub fn sim_facts(w: &drctl_sim::world::World) -> drctl_workflows::catalog::TargetFacts {
    use drctl_workflows::ports::StaticPod;
    drctl_workflows::catalog::TargetFacts {
        backups: Some(w.backups.keys().cloned().collect()),
        control_plane_hosts: Some(w.control_plane_hosts().map(|h| h.name.clone()).collect()),
        keepalived: Some(w.control_plane_hosts().any(|h| h.manifests.contains(&StaticPod::Keepalived))),
    }
}

pub fn sim_dir(store: &Path) -> PathBuf {
    store.join("sim")
}

/// The simulated world of a new run, persisted under the store directory.
pub fn new_sim(store: &Path, world: drctl_sim::world::World, speed: Option<f64>) -> Result<(Target, String)> {
    let (scenario, seed) = (world.scenario.clone(), world.seed);
    let sim = Sim::new(world);
    let dir = sim_dir(store);
    drctl_runtime::store::create_private_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
    let name = (1..10_000)
        .map(|k| format!("{scenario}-seed{seed}-{k}.world"))
        .find(|n| !dir.join(n).exists())
        .context("too many simulated worlds in the store; remove old ones from its sim/ directory")?;
    sim.persist_to(&dir.join(&name))?;
    Ok((sim_target(sim, speed), name))
}

/// The simulated world a run was started against, as the run left it.
pub fn load_sim(store: &Path, rec: &RunRecord, speed_override: Option<f64>) -> Result<Target> {
    let Some(name) = rec.labels.get(LABEL_WORLD) else {
        bail!("run {} has no simulated world recorded", rec.id);
    };
    let path = sim_dir(store).join(name);
    let sim = Sim::load(&path).with_context(|| format!("run {} acts on the simulated world {}", rec.id, path.display()))?;
    // Our own history is never behind the world we act on: a crash can lose a world's clock
    // advance that happened between its last persisted change and our last commit.
    sim.advance_to(rec.updated_at);
    let speed = speed_override.or_else(|| rec.labels.get(LABEL_SPEED).and_then(|s| s.parse().ok()));
    Ok(sim_target(sim, speed))
}

pub fn sim_target(sim: Sim, speed: Option<f64>) -> Target {
    let clock: Arc<dyn Clock> = match speed {
        Some(s) => Arc::new(PacedClock { sim: sim.clone(), speed: s }),
        None => Arc::new(sim.clock()),
    };
    Target { ports: Arc::new(sim.ports()), clock, sim: Some(sim) }
}

/// Virtual time paced against real time (`--sim-speed N`: N virtual seconds per real second),
/// so a person can watch a run and a test can kill it mid-way.
struct PacedClock {
    sim: Sim,
    speed: f64,
}

/// Longest single real sleep: keeps a paced wait responsive to signals and progress.
const MAX_REAL_SLEEP: Duration = Duration::from_secs(5);

impl Clock for PacedClock {
    fn now(&self) -> Timestamp {
        self.sim.now()
    }
    fn sleep_until(&self, t: Timestamp) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let virtual_wait = t.since(self.sim.now());
            // (A speed far below 1 would make this longer than any Duration: saturate.)
            let real = Duration::try_from_secs_f64(virtual_wait.as_secs_f64() / self.speed).unwrap_or(MAX_REAL_SLEEP).min(MAX_REAL_SLEEP);
            if !real.is_zero() {
                tokio::time::sleep(real).await;
            }
            self.sim.advance_to(t);
        })
    }
}
