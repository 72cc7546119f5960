//! `hosted-scale-data-plane-zero`: scale every NodePool of a hosted cluster to zero (OpenShift
//! Container Platform 4.15 Hosted control planes, §4.1 "Scaling down the data plane to zero").
//!
//! The NodePools live on the management cluster (the runbook's "hosted cluster kubeconfig" is a
//! slip: they are not served by the hosted cluster). Each pool's replicas and
//! `nodeDrainTimeout` are recorded before anything changes. A drain timeout of `0s` (or none)
//! means "retry the drain without limit": one workload whose PodDisruptionBudget allows no
//! eviction keeps its node, and the scale-down, forever. So the run bounds the drain with
//! `--drain-timeout` while it scales down, and puts each pool's own value back afterwards.
//!
//! Done means no Machine of the pools is left (not merely `status.replicas` at 0: a machine that
//! is draining or whose instance is terminating is no longer counted, yet still runs workloads).
//! Each pool keeps the replicas it had in an annotation ([`REPLICAS_BEFORE_ZERO_ANNOTATION`]).
//! Abort scales every pool back to its recorded replicas and restores its drain timeout.
//!
//! `--scale-up` is the runbook's way back (§4.1, scaling the NodePool up again): every pool to
//! the replicas its annotation recorded (or `--replicas N`), waiting until that many machines
//! are available; the annotation is removed once they are.

use super::go_duration;
use crate::ports::{ManagementCluster, NodePoolScale, Ports, REPLICAS_BEFORE_ZERO_ANNOTATION};
use drctl_runtime::{Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const RECHECK: Duration = Duration::from_secs(30);
/// How long the machines may take to go, beyond the drain timeout: an instance termination
/// takes minutes, a drain of a busy node up to the timeout itself.
const SCALE_DOWN_SLACK: Duration = Duration::from_secs(30 * 60);
/// With `--drain-timeout 0s` a drain may never end: the wait still ends, with a halt.
const UNBOUNDED_DRAIN_WAIT: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleZeroParams {
    /// Namespace of the HostedCluster on the management cluster.
    pub namespace: String,
    /// Name of the HostedCluster.
    pub name: String,
    /// `nodeDrainTimeout` written on every pool while it scales down (a Go duration).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: String,
    /// Bring the data plane back instead: each pool to its recorded replicas.
    #[serde(default)]
    pub scale_up: bool,
    /// With `scale_up`: this many replicas for every pool instead of the recorded ones.
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// How long new machines may take to boot and join (an instance, its ignition, the kubelet).
/// A sanity bound on `--replicas` (a typo of 1000 would order a thousand instances).
const MAX_REPLICAS: u32 = 500;
const SCALE_UP_BOUND: Duration = Duration::from_secs(45 * 60);

fn default_drain_timeout() -> String {
    "5m".into()
}

/// A NodePool as it was before this run changed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub name: String,
    pub replicas: u32,
    /// `spec.nodeDrainTimeout` (absent: never set).
    pub drain_timeout: Option<String>,
    /// Its replicas-before-scale-to-zero annotation as found.
    #[serde(default)]
    pub recorded_before: Option<u32>,
}

impl PoolRecord {
    /// What the annotation is to say once the pool is at zero: its replicas now, or — already at
    /// zero — what an earlier scale-down recorded (never overwritten with 0).
    fn to_remember(&self) -> Option<u32> {
        match self.replicas {
            0 => self.recorded_before,
            n => Some(n),
        }
    }
}

/// A NodePool a scale-up brings back: from `from` replicas to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpRecord {
    pub name: String,
    pub from: u32,
    pub to: u32,
    /// Its replicas-before-scale-to-zero annotation as found.
    pub recorded_before: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScaleZeroState {
    /// Guards (the HostedCluster exists and is not being deleted, the HyperShift operator runs,
    /// at least one NodePool, none autoscaling, nothing paused); record each pool.
    Inspect,
    /// Bound the drain: write `--drain-timeout` on every pool.
    SetDrainTimeout { pools: Vec<PoolRecord> },
    /// `PATCH nodepools/<np>/scale` with `replicas: 0`, pool by pool.
    ScaleToZero { pools: Vec<PoolRecord> },
    /// Every pool at `status.replicas` 0 and none of its Machines left.
    WaitScaledDown { pools: Vec<PoolRecord> },
    /// Put each pool's own drain timeout back, and check it reads back so.
    RestoreDrainTimeout { pools: Vec<PoolRecord> },
    /// Undo on abort: every pool back to its recorded replicas and drain timeout.
    ScaleBack { pools: Vec<PoolRecord> },
    /// `--scale-up`: `PATCH nodepools/<np>/scale` to each pool's target.
    ScaleUp { pools: Vec<UpRecord> },
    /// Every pool's target available (`status.replicas`, as many Machines).
    WaitScaledUp { pools: Vec<UpRecord> },
    /// Remove the replicas-before-scale-to-zero annotations: the data plane is back.
    ForgetRecord { pools: Vec<UpRecord> },
    /// Undo of a scale-up on abort: every pool back to the replicas it had, its annotation as it
    /// was.
    UndoScaleUp { pools: Vec<UpRecord> },
}

pub struct HostedScaleDataPlaneZero;

/// The command line of `drctl run hosted-scale-data-plane-zero`.
#[derive(clap::Args, Debug)]
pub struct ScaleZeroArgs {
    /// Namespace of the HostedCluster on the management cluster.
    #[arg(long, default_value = "clusters")]
    namespace: String,
    /// Name of the HostedCluster.
    #[arg(long)]
    name: String,
    /// nodeDrainTimeout while scaling down (e.g. 1m, 10m); each pool's own value is put back
    /// afterwards. 0s drains without limit: a PodDisruptionBudget can then hold a node forever.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    drain_timeout: String,
    /// Bring the data plane back: every NodePool to the replicas the scale-down recorded
    /// (annotation drctl.openshift.io/replicas-before-scale-to-zero), waiting until they are available.
    #[arg(long)]
    scale_up: bool,
    /// With --scale-up: this many replicas for every NodePool instead of the recorded ones.
    #[arg(long, value_name = "N")]
    replicas: Option<u32>,
}

impl crate::catalog::IntoParams for ScaleZeroArgs {
    fn into_params(self) -> serde_json::Value {
        let ScaleZeroArgs { namespace, name, drain_timeout, scale_up, replicas } = self;
        serde_json::to_value(ScaleZeroParams { namespace, name, drain_timeout, scale_up, replicas }).expect("params serialise")
    }
}

/// `pool-a 2, pool-b 3`: replica counts by pool, as the summaries give them.
fn counts<'a>(pools: impl Iterator<Item = (&'a String, u32)>) -> String {
    pools.map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
}

fn names(pools: &[PoolRecord]) -> String {
    pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
}

impl HostedScaleDataPlaneZero {
    fn pools(&self, mc: &dyn ManagementCluster, p: &ScaleZeroParams) -> Result<Vec<NodePoolScale>, StepError> {
        mc.node_pool_scales(&p.namespace, &p.name).map_err(|e| e.during(format!("list the NodePools of {}/{}", p.namespace, p.name)))
    }

    fn inspect(&self, ports: &Ports, p: &ScaleZeroParams) -> Result<Step<ScaleZeroState>, StepError> {
        let mc = ports.management()?;
        let hc = super::live_hosted_cluster(mc, &p.namespace, &p.name, "", "no NodePool would scale")?;
        let pools = self.pools(mc, p)?;
        if pools.is_empty() {
            return Err(refuse(
                format!("HostedCluster {}/{} has no NodePool (spec.clusterName={}) in {}", p.namespace, p.name, p.name, p.namespace),
                vec![],
            ));
        }
        let autoscaling: Vec<String> = pools
            .iter()
            .filter_map(|np| np.autoscaling.map(|(min, max)| format!("NodePool {}: spec.autoScaling min {min}, max {max}", np.name)))
            .collect();
        if !autoscaling.is_empty() {
            return Err(refuse(
                "a NodePool autoscales: the API refuses spec.replicas beside spec.autoScaling (422). \
                 Replace its autoScaling with replicas first, then run again"
                    .into(),
                autoscaling,
            ));
        }
        let paused_at = |v: &Option<String>| v.as_deref().is_some_and(|u| !matches!(u, "false" | "False"));
        let mut paused: Vec<String> = pools
            .iter()
            .filter(|np| paused_at(&np.paused_until))
            .map(|np| format!("NodePool {}: pausedUntil={:?}", np.name, np.paused_until))
            .collect();
        if paused_at(&hc.paused_until) {
            paused.push(format!("HostedCluster {}: pausedUntil={:?}", hc.name, hc.paused_until));
        }
        if !paused.is_empty() {
            return Err(refuse(
                "reconciliation is paused: a paused NodePool (or cluster) accepts the new replicas and changes nothing. \
                 Unpause it (drctl run hosted-pause-reconciliation --unpause), then run again"
                    .into(),
                paused,
            ));
        }
        if p.scale_up {
            return self.plan_scale_up(p, pools);
        }
        let pools = pools
            .into_iter()
            .map(|np| PoolRecord {
                name: np.name,
                replicas: np.replicas.unwrap_or(0),
                drain_timeout: np.drain_timeout,
                recorded_before: np.replicas_before_zero,
            })
            .collect();
        Ok(Step::Next(ScaleZeroState::SetDrainTimeout { pools }))
    }

    /// Each pool's target: `--replicas`, else what its annotation recorded.
    fn plan_scale_up(&self, p: &ScaleZeroParams, pools: Vec<NodePoolScale>) -> Result<Step<ScaleZeroState>, StepError> {
        let unknown: Vec<String> = pools
            .iter()
            .filter(|np| p.replicas.is_none() && np.replicas_before_zero.is_none())
            .map(|np| {
                format!("NodePool {}: replicas {}, no {REPLICAS_BEFORE_ZERO_ANNOTATION} annotation", np.name, np.replicas.unwrap_or(0))
            })
            .collect();
        if !unknown.is_empty() {
            return Err(refuse(
                "drctl did not scale these NodePools to zero: it does not know their replicas. Pass --replicas N".into(),
                unknown,
            ));
        }
        let pools = pools
            .into_iter()
            .map(|np| UpRecord {
                to: p.replicas.or(np.replicas_before_zero).unwrap_or(0),
                from: np.replicas.unwrap_or(0),
                recorded_before: np.replicas_before_zero,
                name: np.name,
            })
            .collect();
        Ok(Step::Next(ScaleZeroState::ScaleUp { pools }))
    }

    fn scale_up(&self, ports: &Ports, p: &ScaleZeroParams, pools: &[UpRecord], undo: bool) -> Result<(), StepError> {
        let mc = ports.management()?;
        for np in pools {
            let replicas = if undo { np.from } else { np.to };
            mc.scale_node_pool(&p.namespace, &np.name, replicas)
                .map_err(|e| e.during(format!("scale NodePool {}/{} to {replicas}", p.namespace, np.name)))?;
            if undo {
                mc.record_node_pool_replicas(&p.namespace, &np.name, np.recorded_before)
                    .map_err(|e| e.during(format!("restore the annotations of NodePool {}/{}", p.namespace, np.name)))?;
            }
        }
        Ok(())
    }

    fn wait_scaled_up(&self, ports: &Ports, p: &ScaleZeroParams, pools: &[UpRecord]) -> Result<Step<ScaleZeroState>, StepError> {
        let mc = ports.management()?;
        let now = self.pools(mc, p)?;
        let mut left = Vec::new();
        for rec in pools {
            let Some(np) = now.iter().find(|np| np.name == rec.name) else {
                return Err(refuse(format!("NodePool {}/{} disappeared while it scaled up", p.namespace, rec.name), vec![]));
            };
            if np.replicas != Some(rec.to) {
                return Err(refuse(
                    format!(
                        "NodePool {}/{}: spec.replicas is {:?}, not {}: someone scaled it while this run waited",
                        p.namespace, np.name, np.replicas, rec.to
                    ),
                    vec!["`drctl resume` scales it again, `drctl abort` scales every pool back".into()],
                ));
            }
            let machines = mc
                .node_pool_machines(&p.namespace, &p.name, &rec.name)
                .map_err(|e| e.during(format!("list the machines of NodePool {}", rec.name)))?;
            if np.status_replicas != rec.to || machines.len() != rec.to as usize {
                left.push(format!("{}: {} of {} available, {} machines", np.name, np.status_replicas, rec.to, machines.len()));
            }
        }
        if left.is_empty() {
            return Ok(Step::Next(ScaleZeroState::ForgetRecord { pools: pools.to_vec() }));
        }
        Ok(Step::Wait {
            waiting_for: format!("the NodePools' new machines to join the hosted cluster: {}", left.join("; ")),
            recheck_after: RECHECK,
            bound: SCALE_UP_BOUND,
        })
    }

    fn forget_record(&self, ports: &Ports, p: &ScaleZeroParams, pools: &[UpRecord]) -> Result<Step<ScaleZeroState>, StepError> {
        let mc = ports.management()?;
        for np in pools {
            mc.record_node_pool_replicas(&p.namespace, &np.name, None)
                .map_err(|e| e.during(format!("remove the annotation {REPLICAS_BEFORE_ZERO_ANNOTATION} of NodePool {}", np.name)))?;
        }
        let now = counts(pools.iter().map(|r| (&r.name, r.to)));
        Ok(Step::Done {
            summary: format!(
                "the data plane of HostedCluster {}/{} is back: NodePools at {now} replicas, every machine available",
                p.namespace, p.name
            ),
        })
    }

    fn set_drain_timeouts(
        &self,
        mc: &dyn ManagementCluster,
        p: &ScaleZeroParams,
        pools: &[PoolRecord],
        own: bool,
    ) -> Result<(), StepError> {
        for np in pools {
            let value = if own { np.drain_timeout.as_deref() } else { Some(p.drain_timeout.as_str()) };
            mc.set_node_pool_drain_timeout(&p.namespace, &np.name, value)
                .map_err(|e| e.during(format!("set nodeDrainTimeout of NodePool {}/{} to {value:?}", p.namespace, np.name)))?;
        }
        Ok(())
    }

    fn scale_all(&self, mc: &dyn ManagementCluster, p: &ScaleZeroParams, pools: &[PoolRecord], back: bool) -> Result<(), StepError> {
        for np in pools {
            // The record first: a crash between the two leaves it written, never a pool at zero
            // that no longer says what it had.
            let record = if back { np.recorded_before } else { np.to_remember() };
            mc.record_node_pool_replicas(&p.namespace, &np.name, record)
                .map_err(|e| e.during(format!("record the replicas of NodePool {}/{} in its annotations", p.namespace, np.name)))?;
            let replicas = if back { np.replicas } else { 0 };
            mc.scale_node_pool(&p.namespace, &np.name, replicas)
                .map_err(|e| e.during(format!("scale NodePool {}/{} to {replicas}", p.namespace, np.name)))?;
        }
        Ok(())
    }

    fn wait_scaled_down(&self, ports: &Ports, p: &ScaleZeroParams, pools: &[PoolRecord]) -> Result<Step<ScaleZeroState>, StepError> {
        let mc = ports.management()?;
        let now = self.pools(mc, p)?;
        let mut left = Vec::new();
        for rec in pools {
            let Some(np) = now.iter().find(|np| np.name == rec.name) else {
                return Err(refuse(format!("NodePool {}/{} disappeared while it scaled down", p.namespace, rec.name), vec![]));
            };
            if np.replicas != Some(0) {
                return Err(refuse(
                    format!(
                        "NodePool {}/{}: spec.replicas is {:?} again: someone scaled it while this run waited",
                        p.namespace, np.name, np.replicas
                    ),
                    vec!["find who scaled it; `drctl resume` scales it to 0 again, `drctl abort` scales every pool back".into()],
                ));
            }
            let machines = mc
                .node_pool_machines(&p.namespace, &p.name, &rec.name)
                .map_err(|e| e.during(format!("list the machines of NodePool {}", rec.name)))?;
            if np.status_replicas > 0 || !machines.is_empty() {
                left.push(format!("{}: status.replicas {}, machines left [{}]", np.name, np.status_replicas, machines.join(", ")));
            }
        }
        if left.is_empty() {
            return Ok(Step::Next(ScaleZeroState::RestoreDrainTimeout { pools: pools.to_vec() }));
        }
        let bounded = go_duration(&p.drain_timeout).filter(|d| !d.is_zero());
        let bound = bounded.map_or(UNBOUNDED_DRAIN_WAIT, |d| d + SCALE_DOWN_SLACK);
        let unbounded = match bounded {
            Some(_) => "",
            None => ", which never forces a drain a PodDisruptionBudget blocks",
        };
        Ok(Step::Wait {
            waiting_for: format!(
                "the machines of the NodePools to drain and go (nodeDrainTimeout {}{unbounded}): {}",
                p.drain_timeout,
                left.join("; ")
            ),
            recheck_after: RECHECK,
            bound,
        })
    }

    fn restore_drain_timeouts(&self, ports: &Ports, p: &ScaleZeroParams, pools: &[PoolRecord]) -> Result<Step<ScaleZeroState>, StepError> {
        let mc = ports.management()?;
        self.set_drain_timeouts(mc, p, pools, true)?;
        let now = self.pools(mc, p)?;
        for rec in pools {
            let np = now.iter().find(|np| np.name == rec.name);
            if np.map(|np| &np.drain_timeout) != Some(&rec.drain_timeout) {
                return Err(StepError::Transient {
                    what: format!("read back nodeDrainTimeout of NodePool {}", rec.name),
                    error: format!("reads {:?}, wrote {:?}", np.map(|np| &np.drain_timeout), rec.drain_timeout),
                });
            }
        }
        let was = counts(pools.iter().map(|r| (&r.name, r.replicas)));
        Ok(Step::Done {
            summary: format!(
                "the data plane of HostedCluster {}/{} is at zero: NodePools {} at 0 replicas, no machine left \
                 (replicas before: {was}); each pool's nodeDrainTimeout is back as it was. To bring it back: \
                 drctl run {} --namespace {} --name {} --scale-up",
                p.namespace,
                p.name,
                names(pools),
                Self::NAME,
                p.namespace,
                p.name
            ),
        })
    }

    fn scale_back(&self, ports: &Ports, p: &ScaleZeroParams, pools: &[PoolRecord]) -> Result<Step<ScaleZeroState>, StepError> {
        let mc = ports.management()?;
        self.scale_all(mc, p, pools, true)?;
        self.set_drain_timeouts(mc, p, pools, true)?;
        let was = counts(pools.iter().map(|r| (&r.name, r.replicas)));
        Ok(Step::Done {
            summary: format!(
                "aborted: NodePools of {}/{} scaled back to their replicas ({was}) and their nodeDrainTimeout restored; \
                 new machines take minutes to join",
                p.namespace, p.name
            ),
        })
    }
}

fn refuse(reason: String, evidence: Vec<String>) -> StepError {
    StepError::Permanent { reason, evidence }
}

impl Procedure for HostedScaleDataPlaneZero {
    type Env = Ports;
    type Params = ScaleZeroParams;
    type State = ScaleZeroState;
    const NAME: &'static str = "hosted-scale-data-plane-zero";
    const VERSION: u32 = 1;

    fn validate(&self, p: &ScaleZeroParams) -> Result<(), String> {
        super::pause_reconciliation::check_names(&p.namespace, &p.name)?;
        if go_duration(&p.drain_timeout).is_none() {
            return Err(format!("--drain-timeout '{}' is not a duration such as 1m, 90s or 1h30m", p.drain_timeout));
        }
        if p.replicas.is_some() && !p.scale_up {
            return Err("--replicas applies to --scale-up (scaling down always goes to 0)".into());
        }
        if p.replicas.is_some_and(|r| r > MAX_REPLICAS) {
            return Err(format!("--replicas {} is more than {MAX_REPLICAS} workers per NodePool", p.replicas.unwrap_or(0)));
        }
        Ok(())
    }

    fn initial_state(&self, _: &ScaleZeroParams) -> ScaleZeroState {
        ScaleZeroState::Inspect
    }

    fn state_name(&self, s: &ScaleZeroState) -> String {
        match s {
            ScaleZeroState::Inspect => "Inspect",
            ScaleZeroState::SetDrainTimeout { .. } => "SetDrainTimeout",
            ScaleZeroState::ScaleToZero { .. } => "ScaleToZero",
            ScaleZeroState::WaitScaledDown { .. } => "WaitScaledDown",
            ScaleZeroState::RestoreDrainTimeout { .. } => "RestoreDrainTimeout",
            ScaleZeroState::ScaleBack { .. } => "ScaleBack",
            ScaleZeroState::ScaleUp { .. } => "ScaleUp",
            ScaleZeroState::WaitScaledUp { .. } => "WaitScaledUp",
            ScaleZeroState::ForgetRecord { .. } => "ForgetRecord",
            ScaleZeroState::UndoScaleUp { .. } => "UndoScaleUp",
        }
        .into()
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("Inspect", &["SetDrainTimeout", "ScaleUp"]),
            ("SetDrainTimeout", &["ScaleToZero", "ScaleBack"]),
            ("ScaleToZero", &["WaitScaledDown", "ScaleBack"]),
            ("WaitScaledDown", &["RestoreDrainTimeout", "ScaleBack"]),
            ("RestoreDrainTimeout", &["ScaleBack"]),
            ("ScaleBack", &[]),
            ("ScaleUp", &["WaitScaledUp", "UndoScaleUp"]),
            ("WaitScaledUp", &["ForgetRecord", "UndoScaleUp"]),
            ("ForgetRecord", &["UndoScaleUp"]),
            ("UndoScaleUp", &[]),
        ]
    }

    fn step(&self, ports: &Ports, _: &StepContext, p: &ScaleZeroParams, s: &ScaleZeroState) -> Result<Step<ScaleZeroState>, StepError> {
        match s {
            ScaleZeroState::Inspect => self.inspect(ports, p),
            ScaleZeroState::SetDrainTimeout { pools } => {
                self.set_drain_timeouts(ports.management()?, p, pools, false)?;
                Ok(Step::Next(ScaleZeroState::ScaleToZero { pools: pools.clone() }))
            }
            ScaleZeroState::ScaleToZero { pools } => {
                self.scale_all(ports.management()?, p, pools, false)?;
                Ok(Step::Next(ScaleZeroState::WaitScaledDown { pools: pools.clone() }))
            }
            ScaleZeroState::WaitScaledDown { pools } => self.wait_scaled_down(ports, p, pools),
            ScaleZeroState::RestoreDrainTimeout { pools } => self.restore_drain_timeouts(ports, p, pools),
            ScaleZeroState::ScaleBack { pools } => self.scale_back(ports, p, pools),
            ScaleZeroState::ScaleUp { pools } => {
                self.scale_up(ports, p, pools, false)?;
                Ok(Step::Next(ScaleZeroState::WaitScaledUp { pools: pools.clone() }))
            }
            ScaleZeroState::WaitScaledUp { pools } => self.wait_scaled_up(ports, p, pools),
            ScaleZeroState::ForgetRecord { pools } => self.forget_record(ports, p, pools),
            ScaleZeroState::UndoScaleUp { pools } => {
                self.scale_up(ports, p, pools, true)?;
                let was = counts(pools.iter().map(|r| (&r.name, r.from)));
                Ok(Step::Done {
                    summary: format!(
                        "aborted: NodePools of {}/{} scaled back to {was} replicas, their annotations as they were",
                        p.namespace, p.name
                    ),
                })
            }
        }
    }

    fn on_abort(&self, _: &ScaleZeroParams, s: &ScaleZeroState) -> Option<ScaleZeroState> {
        match s {
            // Nothing written yet.
            ScaleZeroState::Inspect => None,
            // Anything from the first write on may be half done: every pool goes back to its
            // recorded replicas and drain timeout (each write idempotent).
            ScaleZeroState::SetDrainTimeout { pools }
            | ScaleZeroState::ScaleToZero { pools }
            | ScaleZeroState::WaitScaledDown { pools }
            | ScaleZeroState::RestoreDrainTimeout { pools }
            | ScaleZeroState::ScaleBack { pools } => Some(ScaleZeroState::ScaleBack { pools: pools.clone() }),
            ScaleZeroState::ScaleUp { pools }
            | ScaleZeroState::WaitScaledUp { pools }
            | ScaleZeroState::ForgetRecord { pools }
            | ScaleZeroState::UndoScaleUp { pools } => Some(ScaleZeroState::UndoScaleUp { pools: pools.clone() }),
        }
    }

    fn is_undo_state(&self, s: &ScaleZeroState) -> bool {
        matches!(s, ScaleZeroState::ScaleBack { .. } | ScaleZeroState::UndoScaleUp { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ScaleZeroParams {
        ScaleZeroParams {
            namespace: "clusters".into(),
            name: "example".into(),
            drain_timeout: "5m".into(),
            scale_up: false,
            replicas: None,
        }
    }

    #[test]
    fn parameters_are_checked_before_anything_is_stored() {
        let p = HostedScaleDataPlaneZero;
        assert_eq!(p.validate(&params()), Ok(()));
        for (edit, want) in [
            ((|x: &mut ScaleZeroParams| x.drain_timeout = "5 minutes".into()) as fn(&mut ScaleZeroParams), "--drain-timeout"),
            (|x| x.drain_timeout = "-1m".into(), "--drain-timeout"),
            (|x| x.name = "Example".into(), "--name"),
            (|x| x.namespace = "".into(), "--namespace"),
            (|x| x.replicas = Some(3), "--replicas applies to --scale-up"),
            (|x| (x.scale_up, x.replicas) = (true, Some(5000)), "more than 500"),
        ] {
            let mut x = params();
            edit(&mut x);
            let e = p.validate(&x).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
