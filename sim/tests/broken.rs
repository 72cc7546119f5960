//! Deliberately broken procedures (test-only): the real procedures with one decision altered.
//! Each must be caught by the chaos harness, shrunk to a minimal fault schedule, and reported
//! with its replay command; replaying the report reproduces the same failure and event-log hash.
//! This is what proves the checks can fail.

use drctl_runtime::procedure::{ErasedProcedure, Procedure, Step, StepContext, StepError};
use drctl_sim::chaos::*;
use drctl_sim::faults::{FaultKind, FaultSchedule};
use drctl_sim::ports::SimEtcd;
use drctl_sim::Sim;
use drctl_workflows::etcd_backup::{BackupParams, BackupState, EtcdBackup};
use drctl_workflows::hosted::pause_reconciliation::{HostedPauseReconciliation, PauseParams, PauseState};
use drctl_workflows::ports::{Etcd, HostOp, Ports, StaticPod};
use drctl_workflows::restore_cluster_state::{RestoreClusterState, RestoreParams, RestoreState, RestoreStep};
use std::sync::Arc;

/// One altered decision of a base procedure: `Some` replaces the base step.
trait Alteration<B: Procedure>: Send + Sync + 'static {
    const NAME: &'static str;
    fn step(&self, sim: &Sim, ports: &Ports, cx: &StepContext, p: &B::Params, s: &B::State) -> Option<Result<Step<B::State>, StepError>>;
}

/// A base procedure with one alteration; it keeps the simulator to reach around the ports.
struct Broken<B, A> {
    base: B,
    alt: A,
    sim: Sim,
}

impl<B: Procedure<Env = Ports>, A: Alteration<B>> Procedure for Broken<B, A> {
    type Env = Ports;
    type Params = B::Params;
    type State = B::State;
    const NAME: &'static str = A::NAME;
    const VERSION: u32 = B::VERSION;
    fn validate(&self, p: &B::Params) -> Result<(), String> {
        self.base.validate(p)
    }
    fn initial_state(&self, p: &B::Params) -> B::State {
        self.base.initial_state(p)
    }
    fn state_name(&self, s: &B::State) -> String {
        self.base.state_name(s)
    }
    fn check_state(&self, p: &B::Params, s: &B::State) -> Result<(), String> {
        self.base.check_state(p, s)
    }
    fn step(&self, ports: &Ports, cx: &StepContext, p: &B::Params, s: &B::State) -> Result<Step<B::State>, StepError> {
        match self.alt.step(&self.sim, ports, cx, p, s) {
            Some(r) => r,
            None => self.base.step(ports, cx, p, s),
        }
    }
    fn on_abort(&self, p: &B::Params, s: &B::State) -> Option<B::State> {
        self.base.on_abort(p, s)
    }
    fn is_undo_state(&self, s: &B::State) -> bool {
        self.base.is_undo_state(s)
    }
    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        self.base.state_catalog()
    }
}

fn factory<B, A>(base: fn() -> B, alt: fn() -> A) -> Factory
where
    B: Procedure<Env = Ports>,
    A: Alteration<B>,
{
    Arc::new(move |sim: &Sim| Arc::new(Broken { base: base(), alt: alt(), sim: sim.clone() }) as Arc<dyn ErasedProcedure<Ports>>)
}

fn restoring(s: &RestoreState) -> Option<(&drctl_workflows::restore_cluster_state::Plan, &RestoreStep)> {
    match s {
        RestoreState::Restoring { plan, step } => Some((plan, step)),
        _ => None,
    }
}

/// Sweep a broken variant; it must fail with `invariant`, shrunk, replayable.
fn caught(name: &str, procedure: &str, f: Factory, opts: SweepOptions, invariant: Invariant) -> Failure {
    let row = row(procedure).unwrap();
    let report = sweep_with(&SweepOptions { procedure: name.to_string(), ..opts }, &row, &f);
    println!("{report}");
    assert!(!report.passed, "the harness did not catch {name}");
    let failure = report
        .failures
        .iter()
        .find(|x| x.invariant == invariant)
        .unwrap_or_else(|| panic!("{name}: no {invariant} failure:\n{report}"))
        .clone();
    assert!(
        failure.replay.starts_with(&format!(
            "drctl sim chaos --procedure {name} --seeds {}..{} --faults '",
            failure.seed,
            failure.seed + 1
        )),
        "{}",
        failure.replay
    );
    // The minimal schedule is minimal: dropping any one of its faults makes the failure go.
    let minimal = FaultSchedule::parse(&failure.schedule).unwrap();
    for i in 0..minimal.faults.len() {
        let mut fewer = minimal.clone();
        fewer.faults.remove(i);
        let o = run_case(&row, &f, &ChaosCase { seed: failure.seed, schedule: fewer.clone() });
        assert!(o.violation.as_ref().is_none_or(|v| v.invariant != invariant), "{name}: '{fewer}' still fails: not minimal");
    }
    // Replaying the reported seed and schedule reproduces the failure and its event log.
    let again = replay(&row, &f, failure.seed, &minimal);
    let v = again.violation.expect("the replay fails too");
    assert_eq!(v.invariant, invariant);
    assert_eq!(again.event_log_hash, failure.event_log_hash, "same seed, same schedule, same event log");
    failure
}

// ---------------------------------------------------------------------------------------------

/// Forgets to turn the etcd quorum guard back on (runbook step 20).
struct SkipsQuorumGuardOn;

impl Alteration<RestoreClusterState> for SkipsQuorumGuardOn {
    const NAME: &'static str = "broken-skips-quorum-guard-on";
    fn step(
        &self,
        _: &Sim,
        _: &Ports,
        _: &StepContext,
        _: &RestoreParams,
        s: &RestoreState,
    ) -> Option<Result<Step<RestoreState>, StepError>> {
        match restoring(s)? {
            (plan, RestoreStep::QuorumGuardOn { before_revision }) => Some(Ok(Step::Next(RestoreState::Restoring {
                plan: plan.clone(),
                step: RestoreStep::WaitEtcdRollout { before_revision: *before_revision },
            }))),
            _ => None,
        }
    }
}

#[test]
fn a_restore_that_leaves_the_quorum_guard_off_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..30);
    opts.max_failures = 1;
    let f = caught(
        "broken-skips-quorum-guard-on",
        "restore-cluster-state",
        factory(|| RestoreClusterState, || SkipsQuorumGuardOn),
        opts,
        Invariant::QuorumGuardOnAtEnd,
    );
    // No fault is needed to show it: it shrinks to nothing.
    assert_eq!(f.schedule, "none", "{f:?}");
}

/// Picks the wrong member: while the rollout adds members, removes a healthy one instead of
/// the one that has not started, with etcdctl's strict reconfiguration check off (through the
/// Etcd port etcd itself refuses, as real etcd does).
struct RemovesAHealthyMember;

impl Alteration<RestoreClusterState> for RemovesAHealthyMember {
    const NAME: &'static str = "broken-removes-a-healthy-member";
    fn step(
        &self,
        sim: &Sim,
        _: &Ports,
        _: &StepContext,
        _: &RestoreParams,
        s: &RestoreState,
    ) -> Option<Result<Step<RestoreState>, StepError>> {
        let (plan, RestoreStep::WaitEtcdRollout { .. }) = restoring(s)? else { return None };
        let recovery = plan.recovery.name.clone();
        let victim = sim.read(|w| {
            let members = &w.etcd[&w.current_cluster].members;
            let started = |h: &String| w.hosts.get(h).is_some_and(|x| w.member_started(x));
            let one_down = members.values().any(|h| !started(h));
            members.iter().find(|(_, h)| one_down && **h != recovery && started(h)).map(|(id, _)| *id)
        })?;
        // Through the port, etcd refuses it (strict reconfiguration check)...
        if SimEtcd(sim.clone()).member_remove(victim).is_ok() {
            return None;
        }
        // ...so the broken variant forces it, as `--strict-reconfig-check=false` would.
        if let Err(e) = sim.write(|w| w.remove_member(victim, false)) {
            return Some(Err(StepError::Transient { what: "remove the failed etcd member".into(), error: e }));
        }
        None
    }
}

#[test]
fn a_restore_that_removes_a_healthy_member_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..200);
    opts.allowed = vec![FaultKind::EtcdCrash, FaultKind::SlowOps, FaultKind::CrashAfter];
    opts.max_failures = 3;
    caught(
        "broken-removes-a-healthy-member",
        "restore-cluster-state",
        factory(|| RestoreClusterState, || RemovesAHealthyMember),
        opts,
        Invariant::QuorumOnMemberRemoval,
    );
}

/// Runs `cluster-restore.sh` without its fence (a new token each time it runs): a run that
/// crashed after the restore, or lost the SSH connection while it ran, restores a second time
/// and makes a second new cluster.
#[derive(Default)]
struct UnfencedRestore {
    runs: std::sync::atomic::AtomicU32,
}

impl Alteration<RestoreClusterState> for UnfencedRestore {
    const NAME: &'static str = "broken-unfenced-restore";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        _: &StepContext,
        p: &RestoreParams,
        s: &RestoreState,
    ) -> Option<Result<Step<RestoreState>, StepError>> {
        let (plan, RestoreStep::RunRestore { fence }) = restoring(s)? else { return None };
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let op = HostOp::RunRestore { dir: p.backup_dir.clone(), fence: format!("{fence}-{n}") };
        Some(
            ports
                .hosts
                .run(&plan.recovery.name, &op)
                .map_err(|e| e.during("cluster-restore.sh"))
                .map(|_| Step::Next(RestoreState::Restoring { plan: plan.clone(), step: RestoreStep::WaitNodes })),
        )
    }
}

#[test]
fn an_unfenced_restore_repeated_after_a_crash_is_caught_by_crash_equivalence_and_replayable() {
    let row = row("restore-cluster-state").unwrap();
    let f = factory(|| RestoreClusterState, UnfencedRestore::default);
    // Every crash point of one seed: the crash after the restore's effect repeats it.
    let mut opts = SweepOptions::new("broken-unfenced-restore", 5..6);
    opts.faults = Some(FaultSchedule::none());
    opts.crash_seeds = 1;
    let report = sweep_with(&opts, &row, &f);
    println!("{report}");
    assert!(!report.passed);
    let failure = report.failures.iter().find(|x| x.invariant == Invariant::SingleRestore).expect("a second restore is reported");
    assert!(failure.schedule.starts_with("crash-after#"), "{}", failure.schedule);
    let again = replay(&row, &f, failure.seed, &FaultSchedule::parse(&failure.schedule).unwrap());
    assert_eq!(again.violation.unwrap().invariant, Invariant::SingleRestore);
    assert_eq!(again.event_log_hash, failure.event_log_hash);
    // A random sweep finds it too (a crash after the restore, or an SSH drop while it ran),
    // and shrinks it to the one fault that matters.
    let mut opts = SweepOptions::new("", 1..400);
    opts.allowed = vec![FaultKind::CrashAfter, FaultKind::SshDrop, FaultKind::ApiOutage];
    opts.max_failures = 1;
    let f = caught("broken-unfenced-restore", "restore-cluster-state", f, opts, Invariant::SingleRestore);
    assert_eq!(FaultSchedule::parse(&f.schedule).unwrap().faults.len(), 1, "{f:?}");
}

/// Moves the etcd manifest out on the recovery host while checking the z-stream, before the
/// start gate.
struct StopsEtcdBeforeTheGate;

impl Alteration<RestoreClusterState> for StopsEtcdBeforeTheGate {
    const NAME: &'static str = "broken-stops-etcd-before-the-gate";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        _: &StepContext,
        _: &RestoreParams,
        s: &RestoreState,
    ) -> Option<Result<Step<RestoreState>, StepError>> {
        let RestoreState::CheckZStream { recovery, .. } = s else { return None };
        if let Err(e) = ports.hosts.run(&recovery.name, &HostOp::MoveManifestOut(StaticPod::Etcd)) {
            return Some(Err(e.during("stop etcd early")));
        }
        None
    }
}

#[test]
fn a_destructive_step_before_the_gate_is_caught() {
    let mut opts = SweepOptions::new("", 1..10);
    opts.max_failures = 1;
    caught(
        "broken-stops-etcd-before-the-gate",
        "restore-cluster-state",
        factory(|| RestoreClusterState, || StopsEtcdBeforeTheGate),
        opts,
        Invariant::DestructiveAfterGuardAndGate,
    );
}

/// Puts the cluster's etcd encryption key (from the static resources) into its summary.
struct LeaksTheEncryptionKey;

impl Alteration<EtcdBackup> for LeaksTheEncryptionKey {
    const NAME: &'static str = "broken-leaks-the-encryption-key";
    fn step(
        &self,
        sim: &Sim,
        ports: &Ports,
        cx: &StepContext,
        p: &BackupParams,
        s: &BackupState,
    ) -> Option<Result<Step<BackupState>, StepError>> {
        let BackupState::VerifyCopy { .. } = s else { return None };
        let key = sim.read(|w| w.secrets[0].clone());
        Some(Procedure::step(&EtcdBackup, ports, cx, p, s).map(|st| match st {
            Step::Done { summary } => Step::Done { summary: format!("{summary}; encryption key {key}") },
            other => other,
        }))
    }
}

#[test]
fn a_secret_in_the_store_is_caught() {
    let mut opts = SweepOptions::new("", 1..10);
    opts.max_failures = 1;
    caught(
        "broken-leaks-the-encryption-key",
        "etcd-backup",
        factory(|| EtcdBackup, || LeaksTheEncryptionKey),
        opts,
        Invariant::NoSecretInStore,
    );
}

// ---------------------------------------------------------------------------------------------

/// Clears any pause it finds when asked to unpause, drctl's or not (what `--force` does, always).
struct ClearsAForeignPause;

impl Alteration<HostedPauseReconciliation> for ClearsAForeignPause {
    const NAME: &'static str = "broken-clears-a-foreign-pause";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        cx: &StepContext,
        p: &PauseParams,
        s: &PauseState,
    ) -> Option<Result<Step<PauseState>, StepError>> {
        if !matches!(s, PauseState::Inspect) || !p.unpause {
            return None;
        }
        let forced = PauseParams { force: true, ..p.clone() };
        Some(Procedure::step(&HostedPauseReconciliation, ports, cx, &forced, s))
    }
}

/// Aborting a pause stops without putting the prior value back.
struct AbortLeavesItsPause;

impl Alteration<HostedPauseReconciliation> for AbortLeavesItsPause {
    const NAME: &'static str = "broken-abort-leaves-its-pause";
    fn step(&self, _: &Sim, _: &Ports, _: &StepContext, _: &PauseParams, s: &PauseState) -> Option<Result<Step<PauseState>, StepError>> {
        match s {
            PauseState::RestorePrior { .. } => Some(Ok(Step::Done { summary: "aborted".into() })),
            _ => None,
        }
    }
}

#[test]
fn an_unpause_that_clears_someone_elses_pause_is_caught() {
    let mut opts = SweepOptions::new("", 1..40);
    opts.max_failures = 1;
    let f = caught(
        "broken-clears-a-foreign-pause",
        "hosted-pause-reconciliation",
        factory(|| HostedPauseReconciliation, || ClearsAForeignPause),
        opts,
        Invariant::Untouched,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

#[test]
fn an_abort_that_leaves_its_pause_behind_is_caught() {
    let mut opts = SweepOptions::new("", 1..300);
    opts.allowed = vec![FaultKind::Abort];
    opts.max_failures = 1;
    caught(
        "broken-abort-leaves-its-pause",
        "hosted-pause-reconciliation",
        factory(|| HostedPauseReconciliation, || AbortLeavesItsPause),
        opts,
        Invariant::UndoneOnAbort,
    );
}

// ---------------------------------------------------------------------------------------------
// Member replacements
// ---------------------------------------------------------------------------------------------

use drctl_workflows::replace_etcd_member_machine::{MemberMachineParams, MemberMachineState, ReplaceEtcdMemberMachine};
use drctl_workflows::replace_machine::ReplaceMachine;

/// Removes the member of a healthy node instead of the broken one, forcing it past etcd's strict
/// reconfiguration check (through the port etcd refuses, as real etcd does).
struct RemovesTheMemberOfAHealthyNode;

impl Alteration<ReplaceEtcdMemberMachine> for RemovesTheMemberOfAHealthyNode {
    const NAME: &'static str = "broken-removes-the-member-of-a-healthy-node";
    fn step(
        &self,
        sim: &Sim,
        _: &Ports,
        _: &StepContext,
        _: &MemberMachineParams,
        s: &MemberMachineState,
    ) -> Option<Result<Step<MemberMachineState>, StepError>> {
        let MemberMachineState::RemoveMember { member } = s else { return None };
        let healthy = sim.read(|w| w.etcd[&w.current_cluster].members.iter().find(|(_, h)| **h == member.via).map(|(id, _)| *id))?;
        if let Err(e) = sim.write(|w| w.remove_member(healthy, false)) {
            return Some(Err(StepError::Transient { what: "remove the member".into(), error: e }));
        }
        Some(Ok(Step::Next(MemberMachineState::QuorumGuardOff { member: member.clone() })))
    }
}

#[test]
fn a_replacement_that_removes_the_member_of_a_healthy_node_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-removes-the-member-of-a-healthy-node",
        "replace-etcd-member-machine",
        factory(|| ReplaceEtcdMemberMachine, || RemovesTheMemberOfAHealthyNode),
        opts,
        Invariant::QuorumOnMemberRemoval,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

/// Halts without turning the quorum guard back on first.
struct LeavesTheGuardOffOnHalt;

impl Alteration<ReplaceEtcdMemberMachine> for LeavesTheGuardOffOnHalt {
    const NAME: &'static str = "broken-leaves-the-guard-off-on-halt";
    fn step(
        &self,
        _: &Sim,
        _: &Ports,
        cx: &StepContext,
        _: &MemberMachineParams,
        s: &MemberMachineState,
    ) -> Option<Result<Step<MemberMachineState>, StepError>> {
        match s {
            MemberMachineState::GuardOnThenHalt { reason, evidence, .. } if !cx.resumed => {
                Some(Ok(Step::Halt { reason: reason.clone(), evidence: evidence.clone() }))
            }
            _ => None,
        }
    }
}

#[test]
fn a_replacement_that_halts_with_the_guard_off_is_caught_shrunk_and_replayable() {
    // A long API outage while the new machine provisions times its wait out.
    let mut opts = SweepOptions::new("", 1..400);
    opts.allowed = vec![FaultKind::ApiOutage, FaultKind::SlowOps];
    opts.max_failures = 1;
    caught(
        "broken-leaves-the-guard-off-on-halt",
        "replace-etcd-member-machine",
        factory(|| ReplaceEtcdMemberMachine, || LeavesTheGuardOffOnHalt),
        opts,
        Invariant::QuorumGuardOnAtEnd,
    );
}

/// Re-creates the machine under the name it had (the runbook: the next free index).
struct RecreatesUnderAUsedName;

impl Alteration<ReplaceEtcdMemberMachine> for RecreatesUnderAUsedName {
    const NAME: &'static str = "broken-recreates-under-a-used-name";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        _: &StepContext,
        _: &MemberMachineParams,
        s: &MemberMachineState,
    ) -> Option<Result<Step<MemberMachineState>, StepError>> {
        let MemberMachineState::ReplaceMachine { member, replace: ReplaceMachine::SaveSpec { old }, created } = s else { return None };
        let m = match ports.api.get_machine(old) {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => return Some(Err(e.during("get machine"))),
        };
        let manifest = drctl_workflows::machines::machine_for_recreate(&m.manifest, old);
        let replace = ReplaceMachine::DeleteOld { old: old.clone(), new_name: old.clone(), manifest };
        Some(Ok(Step::Next(MemberMachineState::ReplaceMachine { member: member.clone(), replace, created: created.clone() })))
    }
}

#[test]
fn a_replacement_that_reuses_a_machine_name_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-recreates-under-a-used-name",
        "replace-etcd-member-machine",
        factory(|| ReplaceEtcdMemberMachine, || RecreatesUnderAUsedName),
        opts,
        Invariant::Untouched,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

use drctl_workflows::replace_etcd_member_baremetal::{MemberBaremetalParams, MemberBaremetalState, ReplaceEtcdMemberBaremetal};

/// Deletes the broken member's BareMetalHost and, by a selector too wide, the one of the healthy
/// node etcdctl runs on.
struct DeletesTheHostOfAHealthyNode;

impl Alteration<ReplaceEtcdMemberBaremetal> for DeletesTheHostOfAHealthyNode {
    const NAME: &'static str = "broken-deletes-the-host-of-a-healthy-node";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        _: &StepContext,
        _: &MemberBaremetalParams,
        s: &MemberBaremetalState,
    ) -> Option<Result<Step<MemberBaremetalState>, StepError>> {
        let MemberBaremetalState::DeleteHost { t, saved } = s else { return None };
        for host in [&t.host, &t.member.via] {
            if let Err(e) = ports.api.delete_bare_metal_host(host) {
                return Some(Err(e.during("delete baremetalhost")));
            }
        }
        Some(Ok(Step::Next(MemberBaremetalState::DeleteMachine { t: t.clone(), saved: saved.clone() })))
    }
}

#[test]
fn a_bare_metal_replacement_that_deletes_a_healthy_host_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-deletes-the-host-of-a-healthy-node",
        "replace-etcd-member-baremetal",
        factory(|| ReplaceEtcdMemberBaremetal, || DeletesTheHostOfAHealthyNode),
        opts,
        Invariant::Untouched,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

use drctl_workflows::recover_expired_certs::{RecoverCertsParams, RecoverCertsState, RecoverExpiredCerts};

/// Approves every pending CSR (what `oc get csr -o name | xargs oc adm certificate approve` does).
struct ApprovesEveryCsr;

impl Alteration<RecoverExpiredCerts> for ApprovesEveryCsr {
    const NAME: &'static str = "broken-approves-every-csr";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        _: &StepContext,
        _: &RecoverCertsParams,
        s: &RecoverCertsState,
    ) -> Option<Result<Step<RecoverCertsState>, StepError>> {
        let RecoverCertsState::ApproveCsrs { .. } = s else { return None };
        let csrs = match ports.api.list_csrs() {
            Ok(c) => c,
            Err(e) => return Some(Err(e.during("list CSRs"))),
        };
        for c in csrs.iter().filter(|c| c.pending) {
            if let Err(e) = ports.api.approve_csr(&c.name) {
                return Some(Err(e.during("approve CSR")));
            }
        }
        None
    }
}

#[test]
fn a_recovery_that_approves_every_csr_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-approves-every-csr",
        "recover-expired-certs",
        factory(|| RecoverExpiredCerts, || ApprovesEveryCsr),
        opts,
        Invariant::Untouched,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

use drctl_workflows::cluster_shutdown::{ClusterShutdown, ShutdownParams, ShutdownState};

/// Shuts the control plane down first (the order `oc get nodes` lists them in), then the rest.
struct ShutsTheControlPlaneDownFirst;

impl Alteration<ClusterShutdown> for ShutsTheControlPlaneDownFirst {
    const NAME: &'static str = "broken-shuts-the-control-plane-down-first";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        _: &StepContext,
        _: &ShutdownParams,
        s: &ShutdownState,
    ) -> Option<Result<Step<ShutdownState>, StepError>> {
        let ShutdownState::ShutDown { plan, next: 0, .. } = s else { return None };
        for m in plan.iter().filter(|m| m.control_plane) {
            if let Err(e) = ports.hosts.run(&m.host, &HostOp::Shutdown { minutes: 1 }) {
                return Some(Err(e.during("shutdown -h 1")));
            }
        }
        None
    }
}

#[test]
fn a_shutdown_of_the_control_plane_before_the_workers_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-shuts-the-control-plane-down-first",
        "cluster-shutdown",
        factory(|| ClusterShutdown, || ShutsTheControlPlaneDownFirst),
        opts,
        Invariant::Untouched,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

use drctl_workflows::legacy_lost_masters::{LegacyLostMasters, LegacyParams, LegacyState};

/// Goes on after growing etcd without deleting the temporary etcd signer (OpenShift 4.1–4.3,
/// "Recovering from lost master hosts": it must go once all members are restored).
struct LeavesTheSignerRunning;

impl Alteration<LegacyLostMasters> for LeavesTheSignerRunning {
    const NAME: &'static str = "broken-leaves-the-signer-running";
    fn step(&self, _: &Sim, _: &Ports, _: &StepContext, _: &LegacyParams, s: &LegacyState) -> Option<Result<Step<LegacyState>, StepError>> {
        match s {
            LegacyState::RemoveSigner { plan } => Some(Ok(Step::Next(LegacyState::DeleteLostNodes { plan: plan.clone() }))),
            _ => None,
        }
    }
}

#[test]
fn a_legacy_recovery_that_leaves_the_signer_running_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-leaves-the-signer-running",
        "legacy-lost-masters",
        factory(|| LegacyLostMasters, || LeavesTheSignerRunning),
        opts,
        Invariant::RunbookStep,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

use drctl_workflows::hosted::etcd_member_recover::{HostedEtcdMemberRecover, MemberRecoverParams, MemberRecoverState};

/// Recovers "the member with the lowest ordinal" instead of the failed one: what a script that
/// deletes `data-etcd-0` by habit does.
struct DeletesTheFirstMembersPvc;

impl Alteration<HostedEtcdMemberRecover> for DeletesTheFirstMembersPvc {
    const NAME: &'static str = "broken-deletes-the-first-members-pvc";
    fn step(
        &self,
        _: &Sim,
        ports: &Ports,
        _: &StepContext,
        p: &MemberRecoverParams,
        s: &MemberRecoverState,
    ) -> Option<Result<Step<MemberRecoverState>, StepError>> {
        let MemberRecoverState::DeletePvc { member } = s else { return None };
        let mc = ports.management.as_deref()?;
        let etcd = match mc.hosted_etcd(&p.namespace, &p.name) {
            Ok(e) => e,
            Err(e) => return Some(Err(e.during("read the etcd"))),
        };
        // The failed member's own PVC goes too; data-etcd-0 first, whoever it belongs to.
        let first = etcd.pvc("data-etcd-0").filter(|c| c.name != member.pvc)?;
        if let Err(e) = mc.delete_hosted_etcd_pvc(&p.namespace, &p.name, &first.name, &first.uid) {
            return Some(Err(e.during("delete PVC data-etcd-0")));
        }
        None
    }
}

#[test]
fn a_member_recovery_that_deletes_a_healthy_members_pvc_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-deletes-the-first-members-pvc",
        "hosted-etcd-member-recover",
        factory(|| HostedEtcdMemberRecover, || DeletesTheFirstMembersPvc),
        opts,
        Invariant::Untouched,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}

use drctl_workflows::hosted::etcd_snapshot::{HostedEtcdSnapshot, SnapshotParams, SnapshotState};

/// Takes the snapshot as soon as the scale-down was asked for, without waiting for the API
/// servers' pods to go: writes still in flight while etcd is copied.
struct SnapshotsWhileTheWritersRun;

impl Alteration<HostedEtcdSnapshot> for SnapshotsWhileTheWritersRun {
    const NAME: &'static str = "broken-snapshots-while-the-writers-run";
    fn step(
        &self,
        _: &Sim,
        _: &Ports,
        _: &StepContext,
        _: &SnapshotParams,
        s: &SnapshotState,
    ) -> Option<Result<Step<SnapshotState>, StepError>> {
        let SnapshotState::WaitWritersDown { plan } = s else { return None };
        Some(Ok(Step::Next(SnapshotState::SaveSnapshot { plan: plan.clone(), pod: "etcd-0".into() })))
    }
}

#[test]
fn a_snapshot_taken_while_the_api_servers_still_write_is_caught_shrunk_and_replayable() {
    let mut opts = SweepOptions::new("", 1..20);
    opts.max_failures = 1;
    let f = caught(
        "broken-snapshots-while-the-writers-run",
        "hosted-etcd-snapshot",
        factory(|| HostedEtcdSnapshot, || SnapshotsWhileTheWritersRun),
        opts,
        Invariant::Untouched,
    );
    assert_eq!(f.schedule, "none", "{f:?}");
}
