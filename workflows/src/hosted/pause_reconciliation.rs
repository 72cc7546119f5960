//! `hosted-pause-reconciliation`: pause, or unpause, the reconciliation of a hosted cluster
//! (OpenShift Container Platform 4.15 Hosted control planes, §9.2).
//!
//! Pausing writes `spec.pausedUntil` on the HostedCluster (and, asked to, on its NodePools)
//! together with an annotation naming this run, then waits until the HyperShift operator
//! confirms it: `ReconciliationActive=False` (`ReconciliationPaused`) at the new generation and
//! the value copied to the HostedControlPlane. What was there before is recorded first, so an
//! abort restores it exactly.
//!
//! Unpausing writes `null` (which removes the field; newer CRDs reject `""`) and waits for
//! `ReconciliationActive=True`. It never clears a pause drctl did not set — an OADP backup, or a
//! person, may hold it — unless told to with `--force`.

use crate::ports::{ManagementCluster, PausableInfo, Ports};
use drctl_runtime::{Procedure, Step, StepContext, StepError, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often the operator's answer is checked, and for how long.
const RECHECK: Duration = Duration::from_secs(10);
const CONFIRM_BOUND: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseParams {
    /// Namespace of the HostedCluster (`clusters` by default).
    pub namespace: String,
    /// Name of the HostedCluster.
    pub name: String,
    /// Unpause instead of pausing.
    #[serde(default)]
    pub unpause: bool,
    /// `"true"`, or an RFC 3339 time until which reconciliation stays paused.
    #[serde(default = "default_until")]
    pub until: String,
    /// Also pause (unpause) the cluster's NodePools.
    #[serde(default)]
    pub node_pools: bool,
    /// Unpause even what drctl did not pause.
    #[serde(default)]
    pub force: bool,
}

fn default_until() -> String {
    "true".into()
}

/// What a HostedCluster or NodePool held before this run touched it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prior {
    pub name: String,
    pub paused_until: Option<String>,
    pub paused_by: Option<String>,
}

impl Prior {
    fn of(o: &PausableInfo) -> Prior {
        Prior { name: o.name.clone(), paused_until: o.paused_until.clone(), paused_by: o.paused_by.clone() }
    }
}

/// The objects one run changes, with what each held before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    pub cluster: Prior,
    pub pools: Vec<Prior>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PauseState {
    /// Guards: the HostedCluster exists and is not being deleted, the HyperShift operator runs
    /// (nothing propagates a pause without it); record what is set now.
    Inspect,
    /// Write `pausedUntil` and the paused-by annotation on the HostedCluster, then its NodePools.
    Pause { targets: Targets },
    /// The operator confirms: `ReconciliationActive=False` at the new generation, the
    /// HostedControlPlane carries the value.
    ConfirmPaused { targets: Targets, generation: i64 },
    /// Clear `pausedUntil` (write `null`) where this tool set it (or everywhere, forced).
    Unpause { targets: Targets },
    /// The operator confirms: `ReconciliationActive=True`, the HostedControlPlane's field gone.
    ConfirmUnpaused { targets: Targets, generation: i64 },
    /// Undo on abort: put back exactly what each object held before.
    RestorePrior { targets: Targets },
}

pub struct HostedPauseReconciliation;

/// The command line of `drctl run hosted-pause-reconciliation`.
#[derive(clap::Args, Debug)]
pub struct PauseArgs {
    /// Namespace of the HostedCluster on the management cluster.
    #[arg(long, default_value = "clusters")]
    namespace: String,
    /// Name of the HostedCluster.
    #[arg(long)]
    name: String,
    /// Clear the pause this tool set (writes `null`), instead of pausing.
    #[arg(long)]
    unpause: bool,
    /// Pause until this RFC 3339 time instead of indefinitely ("true").
    #[arg(long, value_name = "TIME", default_value = "true")]
    until: String,
    /// Also pause (unpause) the cluster's NodePools.
    #[arg(long)]
    node_pools: bool,
    /// With --unpause: clear a pause that drctl did not set (e.g. one an OADP backup left).
    #[arg(long)]
    force: bool,
}

impl crate::catalog::IntoParams for PauseArgs {
    fn into_params(self) -> serde_json::Value {
        let PauseArgs { namespace, name, unpause, until, node_pools, force } = self;
        serde_json::to_value(PauseParams { namespace, name, unpause, until, node_pools, force }).expect("params serialise")
    }
}

/// `drctl run <id>`: the annotation value naming the run that paused.
pub(crate) fn paused_by(cx: &StepContext) -> String {
    format!("drctl run {}", cx.run_id)
}

fn is_drctl_pause(o: &PausableInfo) -> bool {
    o.paused_until.is_some() && o.paused_by.as_deref().is_some_and(|b| b.starts_with("drctl run "))
}

/// `"true"`/`"True"`, or an RFC 3339 time (the CRD's rule: 4 to 35 characters).
fn valid_until(v: &str) -> bool {
    matches!(v, "true" | "True") || (v.len() <= 35 && Timestamp::parse_rfc3339(v).is_some())
}

/// A DNS-1123 name as Kubernetes requires for namespaces and these objects.
fn valid_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// `--namespace` and `--name` of a HostedCluster, as every hosted procedure takes them.
pub(crate) fn check_names(namespace: &str, name: &str) -> Result<(), String> {
    if !valid_name(namespace) {
        return Err(format!("--namespace '{namespace}' is not a valid Kubernetes namespace name"));
    }
    if !valid_name(name) {
        return Err(format!("--name '{name}' is not a valid HostedCluster name (lower-case letters, digits, '-', '.')"));
    }
    Ok(())
}

impl HostedPauseReconciliation {
    fn mc<'a>(&self, ports: &'a Ports) -> Result<&'a dyn ManagementCluster, StepError> {
        ports.management()
    }

    fn inspect(&self, ports: &Ports, cx: &StepContext, p: &PauseParams) -> Result<Step<PauseState>, StepError> {
        let mc = self.mc(ports)?;
        let hc = super::live_hosted_cluster(
            mc,
            &p.namespace,
            &p.name,
            ": pausing it would not stop the deletion",
            "nothing would propagate the change",
        )?;
        let pools = match p.node_pools {
            true => mc.node_pools(&p.namespace, &p.name).map_err(|e| e.during("list NodePools"))?,
            false => vec![],
        };
        if p.unpause {
            return self.plan_unpause(p, &hc, &pools);
        }
        if let Some(v) = hc.paused_until.as_deref().filter(|_| !is_drctl_pause(&hc)) {
            // Someone else holds a pause: leave it, and leave it theirs to clear.
            return Ok(Step::Done {
                summary: format!(
                    "HostedCluster {}/{} is already paused (pausedUntil={v}) by someone else ({}); left as it is",
                    p.namespace,
                    p.name,
                    hc.paused_by.as_deref().unwrap_or("no paused-by annotation")
                ),
            });
        }
        if let Ok(t) = Timestamp::parse_rfc3339(&p.until).ok_or(()) {
            if t <= cx.now {
                return Err(StepError::Permanent {
                    reason: format!("--until {} is not in the future (now {}): the operator would not pause", p.until, cx.now),
                    evidence: vec![],
                });
            }
        }
        Ok(Step::Next(PauseState::Pause { targets: Targets { cluster: Prior::of(&hc), pools: pools.iter().map(Prior::of).collect() } }))
    }

    fn plan_unpause(&self, p: &PauseParams, hc: &PausableInfo, pools: &[PausableInfo]) -> Result<Step<PauseState>, StepError> {
        let foreign: Vec<String> = std::iter::once(hc)
            .chain(pools)
            .filter(|o| o.paused_until.is_some() && !is_drctl_pause(o))
            .map(|o| {
                format!(
                    "{}: pausedUntil={} ({})",
                    o.name,
                    o.paused_until.as_deref().unwrap_or_default(),
                    o.paused_by.as_deref().map_or("no paused-by annotation".into(), |b| format!("paused by {b}"))
                )
            })
            .collect();
        if !foreign.is_empty() && !p.force {
            return Err(StepError::Permanent {
                reason: format!(
                    "HostedCluster {}/{}: a pause drctl did not set is in place; drctl does not clear it on its own \
                     (an OADP backup pauses with oadp.openshift.io/paused-by). Check with whoever paused it, then run again with --force",
                    p.namespace, p.name
                ),
                evidence: foreign,
            });
        }
        let paused = |o: &&PausableInfo| o.paused_until.is_some();
        if !paused(&hc) && !pools.iter().any(|o| paused(&o)) {
            return Ok(Step::Done { summary: format!("HostedCluster {}/{} is not paused; nothing to do", p.namespace, p.name) });
        }
        let targets = Targets { cluster: Prior::of(hc), pools: pools.iter().filter(paused).map(Prior::of).collect() };
        Ok(Step::Next(PauseState::Unpause { targets }))
    }

    /// Write `value` (None: clear) on every target. Each write is idempotent: re-run after a
    /// crash, it writes the same thing again.
    fn write(
        &self,
        mc: &dyn ManagementCluster,
        p: &PauseParams,
        t: &Targets,
        value: Option<&str>,
        by: Option<&str>,
    ) -> Result<i64, StepError> {
        mc.set_hosted_cluster_paused(&p.namespace, &t.cluster.name, value, by)
            .map_err(|e| e.during(format!("set pausedUntil on HostedCluster {}/{}", p.namespace, t.cluster.name)))?;
        for np in &t.pools {
            mc.set_node_pool_paused(&p.namespace, &np.name, value, by)
                .map_err(|e| e.during(format!("set pausedUntil on NodePool {}/{}", p.namespace, np.name)))?;
        }
        let hc = mc.hosted_cluster(&p.namespace, &t.cluster.name).map_err(|e| e.during("read the HostedCluster back"))?;
        Ok(hc.generation)
    }

    /// Whether the operator has acted on generation `generation` with `ReconciliationActive`
    /// = `want`, on the cluster and on every target pool.
    fn confirmed(
        &self,
        mc: &dyn ManagementCluster,
        p: &PauseParams,
        t: Option<&Targets>,
        generation: i64,
        want: &str,
    ) -> Result<Result<(), String>, StepError> {
        let hc = mc.hosted_cluster(&p.namespace, &p.name).map_err(|e| e.during("read the HostedCluster"))?;
        let seen = |o: &PausableInfo, gen: i64| match &o.reconciliation_active {
            Some(c) if c.status == want && c.observed_generation >= gen => Ok(()),
            Some(c) => Err(format!("{}: ReconciliationActive={} ({}) at generation {}", o.name, c.status, c.reason, c.observed_generation)),
            None => Err(format!("{}: no ReconciliationActive condition yet", o.name)),
        };
        if let Err(e) = seen(&hc, generation) {
            return Ok(Err(e));
        }
        let hcp = mc.control_plane_paused_until(&p.namespace, &p.name).map_err(|e| e.during("read the HostedControlPlane"))?;
        if hcp != hc.paused_until {
            return Ok(Err(format!("HostedControlPlane pausedUntil={hcp:?}, HostedCluster {:?}", hc.paused_until)));
        }
        let Some(t) = t.filter(|t| !t.pools.is_empty()) else { return Ok(Ok(())) };
        let pools = mc.node_pools(&p.namespace, &p.name).map_err(|e| e.during("list NodePools"))?;
        for np in pools.iter().filter(|np| t.pools.iter().any(|x| x.name == np.name)) {
            if let Err(e) = seen(np, 1) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    fn confirm(
        &self,
        ports: &Ports,
        p: &PauseParams,
        t: Option<&Targets>,
        generation: i64,
        want: &str,
        done: String,
    ) -> Result<Step<PauseState>, StepError> {
        match self.confirmed(self.mc(ports)?, p, t, generation, want)? {
            Ok(()) => Ok(Step::Done { summary: done }),
            Err(not_yet) => Ok(Step::Wait {
                waiting_for: format!("the HyperShift operator to confirm (ReconciliationActive={want}): {not_yet}"),
                recheck_after: RECHECK,
                bound: CONFIRM_BOUND,
            }),
        }
    }

    fn restore_prior(&self, ports: &Ports, p: &PauseParams, t: &Targets) -> Result<Step<PauseState>, StepError> {
        let mc = self.mc(ports)?;
        let (ns, c) = (&p.namespace, &t.cluster);
        mc.set_hosted_cluster_paused(ns, &c.name, c.paused_until.as_deref(), c.paused_by.as_deref())
            .map_err(|e| e.during(format!("restore pausedUntil of HostedCluster {ns}/{}", c.name)))?;
        for np in &t.pools {
            mc.set_node_pool_paused(ns, &np.name, np.paused_until.as_deref(), np.paused_by.as_deref())
                .map_err(|e| e.during(format!("restore pausedUntil of NodePool {ns}/{}", np.name)))?;
        }
        Ok(Step::Done {
            summary: format!(
                "aborted: HostedCluster {}/{} and {} NodePool(s) are back as they were before this run (pausedUntil {})",
                p.namespace,
                p.name,
                t.pools.len(),
                t.cluster.paused_until.as_deref().unwrap_or("not paused")
            ),
        })
    }
}

impl Procedure for HostedPauseReconciliation {
    type Env = Ports;
    type Params = PauseParams;
    type State = PauseState;
    const NAME: &'static str = "hosted-pause-reconciliation";
    const VERSION: u32 = 1;

    fn validate(&self, p: &PauseParams) -> Result<(), String> {
        check_names(&p.namespace, &p.name)?;
        if !valid_until(&p.until) {
            return Err(format!("--until '{}' must be 'true' or an RFC 3339 time such as 2026-12-02T06:00:00Z", p.until));
        }
        if p.unpause && p.until != default_until() {
            return Err("--until applies to a pause, not to --unpause".into());
        }
        if p.force && !p.unpause {
            return Err("--force applies to --unpause (clearing a pause drctl did not set)".into());
        }
        Ok(())
    }

    fn initial_state(&self, _: &PauseParams) -> PauseState {
        PauseState::Inspect
    }

    fn state_name(&self, s: &PauseState) -> String {
        match s {
            PauseState::Inspect => "Inspect".into(),
            PauseState::Pause { .. } => "Pause".into(),
            PauseState::ConfirmPaused { generation, .. } => format!("ConfirmPaused(generation {generation})"),
            PauseState::Unpause { .. } => "Unpause".into(),
            PauseState::ConfirmUnpaused { generation, .. } => format!("ConfirmUnpaused(generation {generation})"),
            PauseState::RestorePrior { .. } => "RestorePrior".into(),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("Inspect", &["Pause", "Unpause"]),
            ("Pause", &["ConfirmPaused", "RestorePrior"]),
            ("ConfirmPaused", &["RestorePrior"]),
            ("Unpause", &["ConfirmUnpaused", "RestorePrior"]),
            ("ConfirmUnpaused", &["RestorePrior"]),
            ("RestorePrior", &[]),
        ]
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &PauseParams, s: &PauseState) -> Result<Step<PauseState>, StepError> {
        match s {
            PauseState::Inspect => self.inspect(ports, cx, p),
            PauseState::Pause { targets } => {
                let generation = self.write(self.mc(ports)?, p, targets, Some(&p.until), Some(&paused_by(cx)))?;
                Ok(Step::Next(PauseState::ConfirmPaused { targets: targets.clone(), generation }))
            }
            PauseState::ConfirmPaused { targets, generation } => {
                let how = match p.node_pools {
                    true => format!(" and its {} NodePool(s)", targets.pools.len()),
                    false => String::new(),
                };
                let done = format!(
                    "paused HostedCluster {}/{}{how} (pausedUntil={}); to unpause: drctl run {} --namespace {} --name {}{} --unpause",
                    p.namespace,
                    p.name,
                    p.until,
                    Self::NAME,
                    p.namespace,
                    p.name,
                    if p.node_pools { " --node-pools" } else { "" },
                );
                self.confirm(ports, p, Some(targets), *generation, "False", done)
            }
            PauseState::Unpause { targets } => {
                let generation = self.write(self.mc(ports)?, p, targets, None, None)?;
                Ok(Step::Next(PauseState::ConfirmUnpaused { targets: targets.clone(), generation }))
            }
            PauseState::ConfirmUnpaused { generation, .. } => {
                let done = format!("unpaused HostedCluster {}/{}: reconciliation is active again", p.namespace, p.name);
                self.confirm(ports, p, None, *generation, "True", done)
            }
            PauseState::RestorePrior { targets } => self.restore_prior(ports, p, targets),
        }
    }

    fn on_abort(&self, _: &PauseParams, s: &PauseState) -> Option<PauseState> {
        match s {
            // A change may be half written: put back exactly what was there, so an aborted run
            // never leaves the cluster paused and its pools not (or the other way round).
            PauseState::Pause { targets }
            | PauseState::ConfirmPaused { targets, .. }
            | PauseState::Unpause { targets }
            | PauseState::ConfirmUnpaused { targets, .. }
            | PauseState::RestorePrior { targets } => Some(PauseState::RestorePrior { targets: targets.clone() }),
            // Nothing written yet.
            PauseState::Inspect => None,
        }
    }

    fn is_undo_state(&self, s: &PauseState) -> bool {
        matches!(s, PauseState::RestorePrior { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PauseParams {
        PauseParams {
            namespace: "clusters".into(),
            name: "example".into(),
            unpause: false,
            until: "true".into(),
            node_pools: false,
            force: false,
        }
    }

    #[test]
    fn parameters_are_checked_before_anything_is_stored() {
        let p = HostedPauseReconciliation;
        assert_eq!(p.validate(&params()), Ok(()));
        type Edit = fn(&mut PauseParams);
        let cases: [(Edit, &str); 5] = [
            (|x| x.name = "Example_1".into(), "--name"),
            (|x| x.namespace = "".into(), "--namespace"),
            (|x| x.until = "".into(), "RFC 3339"),
            (|x| (x.unpause, x.until) = (true, "2030-01-01T00:00:00Z".into()), "--until applies"),
            (|x| x.force = true, "--force applies"),
        ];
        for (edit, want) in cases {
            let mut x = params();
            edit(&mut x);
            let e = p.validate(&x).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let mut future = params();
        future.until = "2030-01-01T00:00:00Z".into();
        assert_eq!(p.validate(&future), Ok(()));
    }

    #[test]
    fn only_an_annotated_pause_is_drctls() {
        let mut o = PausableInfo {
            name: "example".into(),
            generation: 2,
            paused_until: Some("true".into()),
            paused_by: Some("drctl run 4".into()),
            deleting: false,
            reconciliation_active: None,
        };
        assert!(is_drctl_pause(&o));
        o.paused_by = Some("velero/backup-1".into());
        assert!(!is_drctl_pause(&o));
        o.paused_by = None;
        assert!(!is_drctl_pause(&o));
    }
}
