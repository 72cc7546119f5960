//! Running a chaos case through the real adapters against the served world.

#![allow(dead_code)]

use drctl_sim::chaos::{self, settled_summary, ChaosCase, RunObservation};
use drctl_sim::faults::FaultSchedule;
use drctl_sim::Sim;
use drctl_twin::Twin;
use std::path::Path;
use std::sync::Arc;

pub const DRCTL: &str = env!("CARGO_BIN_EXE_drctl");

/// A case run through the twin, with what it left.
pub struct Served {
    pub obs: RunObservation,
    pub sim: Sim,
    pub twin: Twin,
    pub dir: tempfile::TempDir,
}

impl Served {
    /// Every command a host received, in order.
    pub fn commands_on(&self, host: &str) -> Vec<String> {
        self.twin.hosts.commands().into_iter().filter(|c| c.host == host).map(|c| c.command).collect()
    }

    /// The whole command log, one line per command (without the sudo preamble), for messages.
    pub fn log_text(&self) -> String {
        let pre = "sudo -n true 2>/dev/null || { echo 'drctl: passwordless sudo is required' >&2; exit 45; }; ";
        self.twin
            .hosts
            .commands()
            .iter()
            .map(|c| {
                format!("{} {} [{}] {}", c.at, c.host, c.code, c.command.trim_start_matches(pre).chars().take(160).collect::<String>())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The host `cluster-restore.sh` ran on.
    pub fn recovery_host(&self) -> String {
        let ran = self.twin.hosts.commands().into_iter().find(|c| c.command.contains("cluster-restore.sh") && c.code == 0);
        ran.map(|c| c.host).expect("cluster-restore.sh ran on no host")
    }
}

fn require(path: &str) {
    assert!(Path::new(path).exists(), "{path} is missing: the twin tests need it (scripts/install-test-deps.sh installs it)");
}

/// Serve the case's world and run the procedure through the real adapters on the world's clock.
pub fn served_case(procedure: &str, case: &ChaosCase) -> Served {
    served_case_with(procedure, case, |twin, clock| twin.real_ports(clock).unwrap())
}

/// [`served_case`] with the ports `ports` builds from the twin (e.g. an adapter with one
/// renderer changed).
pub fn served_case_with(
    procedure: &str,
    case: &ChaosCase,
    ports: impl FnOnce(&Twin, Arc<dyn drctl_runtime::clock::Clock>) -> drctl_workflows::ports::Ports,
) -> Served {
    let world = chaos::case_world(&chaos::row(procedure).unwrap(), case);
    served_world_with(procedure, case, world, ports)
}

/// [`served_case_with`] on `world` instead of the case's own scenario (the case's seed still
/// picks the parameters).
pub fn served_world_with(
    procedure: &str,
    case: &ChaosCase,
    world: drctl_sim::world::World,
    ports: impl FnOnce(&Twin, Arc<dyn drctl_runtime::clock::Clock>) -> drctl_workflows::ports::Ports,
) -> Served {
    require(drctl_twin::sshd::SSHD);
    require("/usr/bin/ssh");
    let row = chaos::row(procedure).unwrap();
    let factory = chaos::registry_factory(procedure).unwrap();
    let sim = Sim::new(world);
    let dir = tempfile::Builder::new().prefix("drctl-twin").tempdir().unwrap();
    let twin = Twin::start(&sim, dir.path(), Path::new(DRCTL), 0).unwrap_or_else(|e| panic!("serve the world: {e}"));
    let clock: Arc<dyn drctl_runtime::clock::Clock> = Arc::new(twin.clock());
    let ports = ports(&twin, clock.clone());
    let obs = chaos::run_case_through(&row, &factory, case, false, &sim, ports, clock);
    twin.absorb_backups(&sim).unwrap();
    Served { obs, sim, twin, dir }
}

pub use drctl_sim::chaos::timeless;

/// Run `procedure` with `seed` both ways; what differs, if anything.
pub fn twin_differences(procedure: &str, seed: u64) -> (Served, Vec<String>) {
    twin_differences_with(procedure, seed, |twin, clock| twin.real_ports(clock).unwrap())
}

/// [`twin_differences`] with the twin's ports built by `ports`.
pub fn twin_differences_with(
    procedure: &str,
    seed: u64,
    ports: impl FnOnce(&Twin, Arc<dyn drctl_runtime::clock::Clock>) -> drctl_workflows::ports::Ports,
) -> (Served, Vec<String>) {
    let row = chaos::row(procedure).unwrap();
    let factory = chaos::registry_factory(procedure).unwrap();
    let case = ChaosCase { seed, schedule: FaultSchedule::default() };
    let (direct, direct_sim) = chaos::run_case_in(&row, &factory, &case, true);
    let served = served_case_with(procedure, &case, ports);
    let o = &served.obs;
    let mut diffs = vec![];
    if let Some(v) = &o.violation {
        diffs.push(format!("through the real adapters an invariant broke: {v:?}"));
    }
    // The outcome's first line says what happened; the evidence after it quotes the errors
    // each side met, which legitimately differ in wording (a TLS error, not a simulated one).
    let headline = |o: &Option<String>| o.as_deref().map(|t| t.lines().next().unwrap_or("").to_string());
    if (o.status, headline(&o.outcome), &o.final_state) != (direct.status, headline(&direct.outcome), &direct.final_state) {
        diffs.push(format!(
            "the twin ended {:?} in {} ({:?}), the direct run {:?} in {} ({:?})",
            o.status, o.final_state, o.outcome, direct.status, direct.final_state, direct.outcome
        ));
    }
    let (a, b) = (served.sim.read(settled_summary), direct_sim.read(settled_summary));
    diffs.extend(chaos::settled_diff(&timeless(&a), &timeless(&b)).into_iter().map(|d| format!("served vs direct cluster: {d}")));
    (served, diffs)
}
