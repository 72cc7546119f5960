//! `cluster-shutdown`: shut a cluster down gracefully so that it can be restarted later
//! (OpenShift Container Platform 4.5 Backup and restore, ch.3 "Shutting down the cluster
//! gracefully").
//!
//! A verified etcd backup first (the runbook's prerequisite, as a child `etcd-backup`); then a
//! person confirms with the kubelet signer's expiry in front of them (warned when the planned
//! restart, `--restart-by`, falls after it); then `shutdown -h 1` over SSH on every node, the
//! workers first and the control plane last, and a wait until none answers.

use crate::etcd_member::backup_step;
use crate::ports::*;
use drctl_runtime::clock::Timestamp;
use drctl_runtime::{Decision, Procedure, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The gate at which a person confirms the shutdown, with the kubelet signer's expiry.
pub const SHUTDOWN_GATE: &str = "shutdown";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownParams {
    /// When the cluster is to be started again (RFC 3339), if known.
    #[serde(default)]
    pub restart_by: Option<String>,
    /// A backup set already taken and verified, instead of taking one first.
    #[serde(default)]
    pub backup: Option<String>,
}

/// The command line of `drctl run cluster-shutdown`.
#[derive(clap::Args, Debug)]
pub struct ShutdownArgs {
    /// When the cluster will be started again (e.g. 2027-01-15T08:00:00Z): a person confirms if
    /// the kubelet certificates' signer expires before then.
    #[arg(long, value_name = "TIME")]
    restart_by: Option<String>,
    /// Use this backup set (already in the backup location) instead of taking one first.
    #[arg(long)]
    backup: Option<String>,
}

impl crate::catalog::IntoParams for ShutdownArgs {
    fn into_params(self) -> serde_json::Value {
        serde_json::json!({ "restart_by": self.restart_by, "backup": self.backup })
    }
}

/// One machine to shut down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The inventory's name (what SSH reaches).
    pub host: String,
    pub node: String,
    pub control_plane: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShutdownState {
    /// §3.1: an etcd backup first.
    TakeBackup,
    /// The kubelet signer's expiry against the planned restart; a person confirms.
    CheckCertificates,
    /// The nodes, mapped to the inventory: workers first, then the control plane.
    ListNodes { signer_expiry: Option<Timestamp> },
    /// §3.2 step 1: `shutdown -h 1` on `plan[next]`.
    ShutDown { plan: Vec<Machine>, next: usize, signer_expiry: Option<Timestamp> },
    /// No machine answers any more.
    WaitPoweredOff { plan: Vec<Machine>, signer_expiry: Option<Timestamp> },
}

pub struct ClusterShutdown;

fn restart_by(p: &ShutdownParams) -> Option<Timestamp> {
    p.restart_by.as_deref().and_then(Timestamp::parse_rfc3339)
}

impl ClusterShutdown {
    fn check_certificates(&self, ports: &Ports, cx: &StepContext, p: &ShutdownParams) -> Result<Step<ShutdownState>, StepError> {
        let expiry = ports.api.kubelet_signer_expiry().map_err(|e| e.during("read the kubelet signer's expiry"))?;
        let next = ShutdownState::ListNodes { signer_expiry: expiry };
        let by = restart_by(p);
        let warning = match (by, expiry) {
            (Some(by), Some(expiry)) if expiry <= by => format!(
                " WARNING: the kubelet certificates' signer expires at {expiry}, before the planned restart at {by}: on restart every kubelet will ask for new certificates (recover-expired-certs)."
            ),
            _ => String::new(),
        };
        match cx.gate(SHUTDOWN_GATE).map(|d| &d.decision) {
            Some(Decision::Approved) => Ok(Step::Next(next)),
            Some(Decision::Rejected) => {
                Ok(Step::Halt { reason: "the shutdown was rejected; nothing was changed".into(), evidence: vec![] })
            }
            None => Ok(Step::Gate {
                gate: SHUTDOWN_GATE.into(),
                prompt: format!("Shut down every machine of the cluster (workers first) now that the backup is verified?{warning}"),
                evidence: vec![
                    format!(
                        "kube-apiserver-to-kubelet-signer not after {}",
                        expiry.map_or("(not annotated)".to_string(), |t| t.to_string())
                    ),
                    format!("planned restart by {}", by.map_or("(not given)".to_string(), |t| t.to_string())),
                ],
            }),
        }
    }

    fn list_nodes(&self, ports: &Ports, signer_expiry: Option<Timestamp>) -> Result<Step<ShutdownState>, StepError> {
        let nodes = ports.api.list_nodes().map_err(|e| e.during("list nodes"))?;
        let mut inventory = ports.hosts.worker_hosts().map_err(|e| e.during("read the worker inventory"))?;
        inventory.extend(ports.hosts.control_plane_hosts().map_err(|e| e.during("read the control-plane inventory"))?);
        let mut plan: Vec<Machine> = vec![];
        let mut missing = vec![];
        for n in &nodes {
            match inventory.iter().find(|h| h.node == n.name) {
                Some(h) => plan.push(Machine { host: h.name.clone(), node: n.name.clone(), control_plane: n.control_plane }),
                None => missing.push(n.name.clone()),
            }
        }
        if !missing.is_empty() {
            return Ok(Step::Halt {
                reason: format!(
                    "nodes {} are not in the inventory: give every node's SSH address (--hosts/--workers), then resume; nothing was shut down",
                    missing.join(", ")
                ),
                evidence: inventory.iter().map(|h| format!("inventory: {} (node {}, {})", h.name, h.node, h.address)).collect(),
            });
        }
        // The workers first: the control plane serves them until they are gone.
        plan.sort_by_key(|m| (m.control_plane, m.node.clone()));
        Ok(Step::Next(ShutdownState::ShutDown { plan, next: 0, signer_expiry }))
    }

    /// Observe, then act. A machine that does not answer over SSH may be off already (told to
    /// shut down before this run crashed, or before a dropped connection reported the command)
    /// or up behind an SSH fault: its node says which while the API answers (NotReady: off;
    /// Ready: retry). Once the control plane is going down the API cannot tell: a person makes
    /// sure it is off and resumes; resumed, a machine that still does not answer counts as off.
    fn shut_down(
        &self,
        ports: &Ports,
        cx: &StepContext,
        plan: &[Machine],
        next: usize,
        signer_expiry: Option<Timestamp>,
    ) -> Result<Step<ShutdownState>, StepError> {
        let m = plan.get(next).ok_or_else(|| StepError::Bug(format!("shutdown step {next} of {}", plan.len())))?;
        match ports.hosts.connect(&m.host) {
            Ok(()) => {
                ports.hosts.run(&m.host, &HostOp::Shutdown { minutes: 1 }).map_err(|e| e.during(format!("shutdown -h 1 on {}", m.host)))?;
            }
            Err(e) if e.is_transient() && !cx.resumed => match ports.api.list_nodes() {
                Ok(nodes) if nodes.iter().any(|n| n.name == m.node && n.ready) => {
                    return Err(e.during(format!("connect to {} over SSH", m.host)))
                }
                Ok(_) => {}
                Err(api) if api.is_transient() && m.control_plane => {
                    return Ok(Step::Halt {
                        reason: format!(
                            "{} does not answer over SSH, and with the control plane going down the API cannot tell whether it is up: make sure it is powered off (power it off outside the cluster if not), then resume",
                            m.host
                        ),
                        evidence: vec![format!("ssh: {e}"), format!("API: {api}")],
                    })
                }
                Err(api) => return Err(api.during("list nodes")),
            },
            Err(e) if e.is_transient() => {}
            Err(e) => return Err(e.during(format!("connect to {} over SSH", m.host))),
        }
        let plan = plan.to_vec();
        Ok(Step::Next(match next + 1 < plan.len() {
            true => ShutdownState::ShutDown { plan, next: next + 1, signer_expiry },
            false => ShutdownState::WaitPoweredOff { plan, signer_expiry },
        }))
    }

    fn wait_powered_off(
        &self,
        ports: &Ports,
        cx: &StepContext,
        plan: &[Machine],
        signer_expiry: Option<Timestamp>,
    ) -> Result<Step<ShutdownState>, StepError> {
        let answering: Vec<&str> = plan.iter().filter(|m| ports.hosts.connect(&m.host).is_ok()).map(|m| m.host.as_str()).collect();
        if answering.is_empty() {
            let workers = plan.iter().filter(|m| !m.control_plane).count();
            return Ok(Step::Done {
                summary: format!(
                    "shut down {} machines ({workers} workers first, then {} control-plane); the kubelet signer is valid until {}; now shut off what the cluster depended on and no longer needs (external storage, an LDAP server), as its vendors document",
                    plan.len(),
                    plan.len() - workers,
                    signer_expiry.map_or("an unknown date".to_string(), |t| t.to_string())
                ),
            });
        }
        let waited = cx.waiting_since.map_or(Duration::ZERO, |since| cx.now.since(since));
        if waited >= Duration::from_secs(15 * 60) {
            return Ok(Step::Halt {
                reason: format!(
                    "{} still answer over SSH 15 min after `shutdown -h 1`: power them off outside the cluster, then resume",
                    answering.join(", ")
                ),
                evidence: vec![],
            });
        }
        Ok(Step::Wait {
            waiting_for: format!("every machine powered off ({} still answer)", answering.join(", ")),
            recheck_after: Duration::from_secs(30),
            bound: Duration::from_secs(30 * 60),
        })
    }
}

impl Procedure for ClusterShutdown {
    type Env = Ports;
    type Params = ShutdownParams;
    type State = ShutdownState;
    const NAME: &'static str = "cluster-shutdown";
    const VERSION: u32 = 1;

    fn validate(&self, p: &ShutdownParams) -> Result<(), String> {
        if let Some(t) = &p.restart_by {
            if Timestamp::parse_rfc3339(t).is_none() {
                return Err(format!("--restart-by '{t}' is not an RFC 3339 time (e.g. 2027-01-15T08:00:00Z)"));
            }
        }
        crate::etcd_member::validate_backup(&p.backup)
    }

    fn initial_state(&self, _p: &ShutdownParams) -> ShutdownState {
        ShutdownState::TakeBackup
    }

    fn state_name(&self, s: &ShutdownState) -> String {
        match s {
            ShutdownState::TakeBackup => "TakeBackup".into(),
            ShutdownState::CheckCertificates => "CheckCertificates".into(),
            ShutdownState::ListNodes { .. } => "ListNodes".into(),
            ShutdownState::ShutDown { plan, next, .. } => format!("ShutDown({})", plan.get(*next).map_or("-", |m| m.host.as_str())),
            ShutdownState::WaitPoweredOff { .. } => "WaitPoweredOff".into(),
        }
    }

    fn check_state(&self, _p: &ShutdownParams, s: &ShutdownState) -> Result<(), String> {
        let (plan, next) = match s {
            ShutdownState::ShutDown { plan, next, .. } => (plan, *next),
            ShutdownState::WaitPoweredOff { plan, .. } => (plan, plan.len()),
            _ => return Ok(()),
        };
        if plan.is_empty() || next >= plan.len() && matches!(s, ShutdownState::ShutDown { .. }) {
            return Err(format!("shutdown step {next} of a plan of {}", plan.len()));
        }
        if plan.windows(2).any(|w| w[0].control_plane && !w[1].control_plane) {
            return Err("a worker after a control-plane machine in the shutdown order".into());
        }
        Ok(())
    }

    fn step(&self, ports: &Ports, cx: &StepContext, p: &ShutdownParams, s: &ShutdownState) -> Result<Step<ShutdownState>, StepError> {
        match s {
            ShutdownState::TakeBackup => backup_step(ports, cx, p.backup.as_deref(), ShutdownState::CheckCertificates),
            ShutdownState::CheckCertificates => self.check_certificates(ports, cx, p),
            ShutdownState::ListNodes { signer_expiry } => self.list_nodes(ports, *signer_expiry),
            ShutdownState::ShutDown { plan, next, signer_expiry } => self.shut_down(ports, cx, plan, *next, *signer_expiry),
            ShutdownState::WaitPoweredOff { plan, signer_expiry } => self.wait_powered_off(ports, cx, plan, *signer_expiry),
        }
    }

    /// The plan may change until the first machine is told to shut down.
    fn correctable(&self, key: &str, s: &ShutdownState) -> Result<(), String> {
        match s {
            ShutdownState::TakeBackup | ShutdownState::CheckCertificates | ShutdownState::ListNodes { .. } => Ok(()),
            _ => Err(format!("{key} cannot change once machines are being shut down: resume it")),
        }
    }

    fn state_catalog(&self) -> &'static [(&'static str, &'static [&'static str])] {
        &[
            ("TakeBackup", &["CheckCertificates"]),
            ("CheckCertificates", &["ListNodes"]),
            ("ListNodes", &["ShutDown"]),
            ("ShutDown", &["ShutDown", "WaitPoweredOff"]),
            ("WaitPoweredOff", &[]),
        ]
    }
}
