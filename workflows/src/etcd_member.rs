//! What the replacements of one unhealthy etcd member share (OpenShift Container Platform 4.14
//! Backup and restore §5.2): the member as recorded before anything changes, the guards every
//! replacement passes before it removes a member, the member's secrets, and the rule that the
//! quorum guard is back on before a run that turned it off stops.

use crate::ports::*;
use drctl_runtime::{Decision, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const ETCD_NAMESPACE: &str = "openshift-etcd";
pub const ETCD_PODS: &str = "k8s-app=etcd";
/// The gate before a member is removed. A triage run passes its approval on to the replacement
/// it starts (the same person approved removing the same member).
pub const REMOVE_GATE: &str = "remove-member";
/// The key of the `etcd-backup` child run a replacement starts.
pub const BACKUP_CHILD: &str = "backup";

/// The member being replaced, recorded before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    /// The member's name: the node it ran on.
    pub node: String,
    /// A node whose etcd pod is healthy, never the member's own: where `etcdctl` runs.
    pub via: String,
    /// The member's machine (none on user-provisioned infrastructure).
    pub machine: Option<String>,
}

/// The peer, serving and metrics secrets the etcd operator keeps for `node` (§5.2.4.1 step 3).
pub fn secret_names(node: &str) -> [String; 3] {
    [format!("etcd-peer-{node}"), format!("etcd-serving-{node}"), format!("etcd-serving-metrics-{node}")]
}

/// Nodes other than `exclude` whose etcd pod runs and is ready, by name.
pub fn healthy_pod_nodes(api: &dyn ClusterApi, exclude: &str) -> Result<Vec<String>, StepError> {
    let pods = api.list_pods(ETCD_NAMESPACE, ETCD_PODS).map_err(|e| e.during("list etcd pods"))?;
    let mut nodes: Vec<String> =
        pods.into_iter().filter(|p| p.phase == PodStatus::Running && p.ready && p.node != exclude).map(|p| p.node).collect();
    nodes.sort();
    Ok(nodes)
}

/// The first healthy etcd pod's node other than `exclude`; transient while there is none (the
/// runbook's §5.2.4.1 step 1.1 needs one).
pub fn pick_via(api: &dyn ClusterApi, exclude: &str) -> Result<String, StepError> {
    healthy_pod_nodes(api, exclude)?.into_iter().next().ok_or_else(|| StepError::Transient {
        what: "choose an etcd pod on a healthy node".into(),
        error: format!("no etcd pod runs ready on a control-plane node other than {exclude}"),
    })
}

/// Control-plane nodes other than `node` that are not Ready or whose machine's instance is not
/// running, with why: while any is, a replacement must wait (the prerequisites of §5.2.4.1: the
/// other control-plane nodes must not be powered off).
pub fn other_control_plane_trouble(api: &dyn ClusterApi, node: &str) -> Result<Vec<String>, StepError> {
    let nodes = api.list_nodes().map_err(|e| e.during("list nodes"))?;
    let machines = api.list_machines().map_err(|e| e.during("list machines"))?;
    let mut trouble = vec![];
    for n in nodes.iter().filter(|n| n.control_plane && n.name != node) {
        if !n.ready {
            trouble.push(format!("node {} is NotReady (taints: {})", n.name, n.taints.join(" ")));
        }
        let machine = machines.iter().find(|m| m.node.as_deref() == Some(n.name.as_str()));
        if let Some(state) = machine.and_then(|m| crate::machines::instance_not_running(&m.manifest)) {
            trouble.push(format!("the machine of node {} is {state}", n.name));
        }
    }
    Ok(trouble)
}

/// The member of `node`, looked up through the etcd pod of a healthy node, if removing it is
/// allowed ([`removal_allowed`]); else the halt that says why, with the member list as evidence.
pub fn member_to_remove(ports: &Ports, node: &str, machine: Option<String>) -> Result<Result<Member, (String, Vec<String>)>, StepError> {
    let via = pick_via(&*ports.api, node)?;
    let list = ports.etcd.member_list(&via).map_err(|e| e.during(format!("etcdctl member list in etcd-{via}")))?;
    let health = ports.etcd.endpoint_health(&via).map_err(|e| e.during(format!("etcdctl endpoint health in etcd-{via}")))?;
    Ok(match removal_allowed(&list, &health, node) {
        Ok(id) => Ok(Member { id, node: node.to_string(), via, machine }),
        Err(why) => Err((format!("refusing to remove the member of {node}: {why}"), describe_members(&list, &health))),
    })
}

/// `etcdctl member remove` from the etcd pod of the healthy node, then the member list must no
/// longer have it (an id already gone is success: a re-run after a crash).
pub fn remove_member(ports: &Ports, member: &Member) -> Result<(), StepError> {
    let (id, via) = (member.id, &member.via);
    ports.etcd.member_remove(via, id).map_err(|e| e.during(format!("etcdctl member remove {id:x} in etcd-{via}")))?;
    let list = ports.etcd.member_list(via).map_err(|e| e.during(format!("etcdctl member list in etcd-{via}")))?;
    if list.members.iter().any(|m| m.id == id) {
        return Err(StepError::Transient { what: format!("remove member {id:x}"), error: "still listed as a member".into() });
    }
    Ok(())
}

/// The remove-member gate: approved goes on to `approved`, rejected halts with nothing changed.
pub fn remove_gate<S>(cx: &StepContext, prompt: String, evidence: Vec<String>, approved: S) -> Result<Step<S>, StepError> {
    match cx.gate(REMOVE_GATE).map(|d| &d.decision) {
        Some(Decision::Approved) => Ok(Step::Next(approved)),
        Some(Decision::Rejected) => {
            Ok(Step::Halt { reason: "removing the member was rejected; nothing was changed".into(), evidence: vec![] })
        }
        None => Ok(Step::Gate { gate: REMOVE_GATE.into(), prompt, evidence }),
    }
}

/// Turn the etcd quorum guard on or off (§5.2.4.1 steps 2 and 5).
pub fn set_quorum_guard(ports: &Ports, on: bool) -> Result<(), StepError> {
    let what = if on { "turn the etcd quorum guard back on" } else { "turn the etcd quorum guard off" };
    ports.api.set_quorum_guard(on).map_err(|e| e.during(what))
}

/// The first step of a halt after the guard went off: the guard back on, then the halt.
pub fn halt_with_guard_on<S>(ports: &Ports, reason: &str, evidence: &[String]) -> Result<Step<S>, StepError> {
    set_quorum_guard(ports, true)?;
    Ok(Step::Halt {
        reason: format!("{reason} (the quorum guard was turned back on; resuming turns it off again and goes on)"),
        evidence: evidence.to_vec(),
    })
}

/// An abort after the guard went off: the guard back on, and the run ends.
pub fn undo_quorum_guard<S>(ports: &Ports) -> Result<Step<S>, StepError> {
    set_quorum_guard(ports, true)?;
    Ok(Step::Done { summary: "aborted: the quorum guard is back on".into() })
}

/// A node name as Kubernetes allows it (a DNS subdomain): it goes into secret and pod names.
pub fn validate_node(node: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    match !node.is_empty() && node.len() <= 253 && node.split('.').all(label_ok) {
        true => Ok(()),
        false => Err(format!("--node '{node}' is not a node name (lowercase letters, digits, '-' and '.')")),
    }
}

/// `--backup NAME`: the plain name of a backup set.
pub fn validate_backup(backup: &Option<String>) -> Result<(), String> {
    match backup {
        Some(b) if b.is_empty() || b.contains('/') || b.starts_with('.') => {
            Err(format!("--backup '{b}' must be the plain name of a backup set"))
        }
        _ => Ok(()),
    }
}

/// Whether member `node` may be removed from `list` given `health`: it must be a member, it
/// must not be healthy (never the member of a healthy node), and the members left must hold a
/// quorum of healthy voting members. Its id, or why not.
pub fn removal_allowed(list: &EtcdMemberList, health: &[EndpointHealth], node: &str) -> Result<u64, String> {
    let healthy = |m: &EtcdMember| health.iter().any(|h| h.healthy && m.client_urls.contains(&h.endpoint));
    let Some(target) = list.members.iter().find(|m| m.name == node) else {
        let names: Vec<&str> = list.members.iter().map(|m| m.name.as_str()).collect();
        return Err(format!("{node} is not an etcd member (members: {})", names.join(", ")));
    };
    if healthy(target) {
        return Err(format!("the etcd member of {node} ({:x}) is healthy: only an unhealthy member is replaced", target.id));
    }
    let rest: Vec<&EtcdMember> = list.members.iter().filter(|m| m.id != target.id).collect();
    let healthy_voters = rest.iter().filter(|m| !m.is_learner && healthy(m)).count();
    let quorum = rest.len() / 2 + 1;
    if rest.is_empty() || healthy_voters < quorum {
        return Err(format!(
            "removing {node} would leave {} members of which {healthy_voters} are healthy voting members, fewer than a quorum of {quorum}",
            rest.len()
        ));
    }
    Ok(target.id)
}

/// The member list and health as `etcdctl` in the pod on `via` sees them, for evidence.
pub fn describe_members(list: &EtcdMemberList, health: &[EndpointHealth]) -> Vec<String> {
    list.members
        .iter()
        .map(|m| {
            let h = health.iter().find(|h| m.client_urls.contains(&h.endpoint));
            let state = match h {
                Some(h) if h.healthy => "healthy".to_string(),
                Some(h) => format!("unhealthy: {}", h.error.as_deref().unwrap_or("no answer")),
                None if m.name.is_empty() => "not started".to_string(),
                None => "no health reported".to_string(),
            };
            format!("member {:x} {} ({}): {state}", m.id, if m.name.is_empty() { "(unstarted)" } else { &m.name }, m.peer_urls.join(","))
        })
        .collect()
}

/// Delete the member's peer, serving and metrics secrets that still exist (observe, then act).
pub fn delete_secrets(api: &dyn ClusterApi, node: &str) -> Result<Vec<String>, StepError> {
    let present = api.list_secrets(ETCD_NAMESPACE).map_err(|e| e.during(format!("list secrets in {ETCD_NAMESPACE}")))?;
    let mut deleted = vec![];
    for name in secret_names(node).into_iter().filter(|s| present.contains(s)) {
        api.delete_secret(ETCD_NAMESPACE, &name).map_err(|e| e.during(format!("delete secret {ETCD_NAMESPACE}/{name}")))?;
        deleted.push(name);
    }
    Ok(deleted)
}

/// The `forceRedeploymentReason` a run writes: unique to the run (the runbook appends a
/// timestamp for uniqueness) yet the same on a re-run after a crash, so the patch stays
/// idempotent. Recorded in the run's state before it is written.
pub fn redeployment_reason(cx: &StepContext) -> String {
    format!("recovery-drctl-run-{}", cx.run_id)
}

/// Make a halt of a state in which the quorum guard may be off go through `guard_on_then_halt`
/// first: a halt, a refusal of the world (a permanent error) or a timed-out wait all turn the
/// guard back on before the run stops.
pub fn guard_on_before_halt<S>(
    out: Result<Step<S>, StepError>,
    guard_on_then_halt: impl FnOnce(String, Vec<String>) -> S,
) -> Result<Step<S>, StepError> {
    match out {
        Ok(Step::Halt { reason, evidence }) | Err(StepError::Permanent { reason, evidence }) => {
            Ok(Step::Next(guard_on_then_halt(reason, evidence)))
        }
        other => other,
    }
}

/// A wait bounded by the procedure itself: past `bound` it halts (through
/// [`guard_on_before_halt`]) before the engine's own bound, set further out as a backstop, would
/// stop the run with the guard off.
pub fn bounded_wait<S>(cx: &StepContext, what: String, recheck: Duration, bound: Duration) -> Result<Step<S>, StepError> {
    if cx.waiting_since.is_some_and(|since| cx.now >= since.plus(bound)) {
        return Ok(Step::Halt { reason: format!("timed out after {} min waiting for {what}", bound.as_secs() / 60), evidence: vec![] });
    }
    Ok(Step::Wait { waiting_for: what, recheck_after: recheck, bound: bound * 2 + recheck })
}

/// What keeps the control plane from being whole again after a member was replaced: a
/// static-pod operator not rolled out to every control-plane node, or a cluster operator still
/// progressing (the network re-renders for a new node) or degraded. Empty once whole.
pub fn control_plane_unsettled(api: &dyn ClusterApi) -> Result<Vec<String>, StepError> {
    let nodes = api.list_nodes().map_err(|e| e.during("list nodes"))?;
    let control_plane = nodes.iter().filter(|n| n.control_plane).count();
    let mut unsettled = vec![];
    for op in Operator::ALL {
        let p = api.installer_progress(op).map_err(|e| e.during(format!("read {op} installer progress")))?;
        if !p.rolled_out_to(control_plane) {
            unsettled.push(format!("{op}: {}", p.message));
        }
    }
    let ops = api.cluster_operators().map_err(|e| e.during("list cluster operators"))?;
    unsettled.extend(
        ops.iter()
            .filter(|o| !o.available || o.progressing || o.degraded)
            .map(|o| format!("{} (available {}, progressing {}, degraded {})", o.name, o.available, o.progressing, o.degraded)),
    );
    Ok(unsettled)
}

/// Wait until [`control_plane_unsettled`] finds nothing, then `done`.
pub fn await_control_plane<S>(api: &dyn ClusterApi, done: String) -> Result<Step<S>, StepError> {
    let unsettled = control_plane_unsettled(api)?;
    if unsettled.is_empty() {
        return Ok(Step::Done { summary: done });
    }
    Ok(Step::Wait {
        waiting_for: format!("the control plane to settle: {}", unsettled.join("; ")),
        recheck_after: Duration::from_secs(60),
        bound: Duration::from_secs(60 * 60),
    })
}

/// How long the third etcd pod may take to appear before a redeployment is forced.
pub const THIRD_POD_GRACE: Duration = Duration::from_secs(5 * 60);

/// Verification 1 of §5.2.4.1/§5.2.4.3: three etcd pods running and ready go on to
/// `all_running`; only two after [`THIRD_POD_GRACE`] and no redeployment forced yet go on to
/// `force` with the reason to record (once); else wait.
pub fn verify_pods<S>(
    ports: &Ports,
    cx: &StepContext,
    forced: bool,
    all_running: S,
    force: impl FnOnce(String) -> S,
) -> Result<Step<S>, StepError> {
    let pods = ports.api.list_pods(ETCD_NAMESPACE, ETCD_PODS).map_err(|e| e.during("list etcd pods"))?;
    let running = pods.iter().filter(|p| p.phase == PodStatus::Running && p.ready).count();
    if running == 3 && pods.len() == 3 {
        return Ok(Step::Next(all_running));
    }
    let waited = cx.waiting_since.map_or(Duration::ZERO, |since| cx.now.since(since));
    if pods.len() < 3 && !forced && waited >= THIRD_POD_GRACE {
        return Ok(Step::Next(force(redeployment_reason(cx))));
    }
    let listed: Vec<String> = pods.iter().map(|p| format!("{} {}", p.name, p.phase)).collect();
    Ok(Step::Wait {
        waiting_for: format!("three etcd pods running ({running} of {} running: {})", pods.len(), listed.join(", ")),
        recheck_after: Duration::from_secs(30),
        bound: Duration::from_secs(45 * 60),
    })
}

/// Verification 2: exactly three started, healthy members (as `etcdctl` in the pod on `via`
/// sees them) go on to `next`; more than three halts, fewer waits.
pub fn verify_members<S>(ports: &Ports, via: &str, next: S) -> Result<Step<S>, StepError> {
    let list = ports.etcd.member_list(via).map_err(|e| e.during(format!("etcdctl member list in etcd-{via}")))?;
    let health = ports.etcd.endpoint_health(via).map_err(|e| e.during(format!("etcdctl endpoint health in etcd-{via}")))?;
    let evidence = describe_members(&list, &health);
    if list.members.len() > 3 {
        return Ok(Step::Halt {
            reason: format!(
                "etcd has {} members: remove the unwanted one by hand, carefully (removing a good member may lose quorum)",
                list.members.len()
            ),
            evidence,
        });
    }
    let healthy = |m: &EtcdMember| health.iter().any(|h| h.healthy && m.client_urls.contains(&h.endpoint));
    let started = list.members.iter().filter(|m| !m.name.is_empty() && healthy(m)).count();
    if list.members.len() < 3 || started < 3 {
        return Ok(Step::Wait {
            waiting_for: format!("three started, healthy etcd members ({started} of {})", list.members.len()),
            recheck_after: Duration::from_secs(30),
            bound: Duration::from_secs(30 * 60),
        });
    }
    Ok(Step::Next(next))
}

/// The last verification: the control plane whole again, summarised with the member list.
pub fn verify_control_plane<S>(ports: &Ports, member: &Member) -> Result<Step<S>, StepError> {
    let list = ports.etcd.member_list(&member.via).map_err(|e| e.during(format!("etcdctl member list in etcd-{}", member.via)))?;
    await_control_plane(
        &*ports.api,
        format!(
            "etcd member {:x} ({}) replaced: {} started members ({}); quorum guard on",
            member.id,
            member.node,
            list.members.len(),
            list.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    )
}

/// How the backup of §5.2.1 stands: taken by the child run, or the named one checked.
pub fn backup_step<S>(ports: &Ports, cx: &StepContext, named: Option<&str>, next: S) -> Result<Step<S>, StepError> {
    if let Some(name) = named {
        let files = ports.backups.list(name).map_err(|e| e.during(format!("list backup {name}")))?;
        if let Err(why) = crate::backup_files::the_only_pair(&files) {
            return Ok(Step::Halt { reason: format!("backup {name} {why}: take a new one (leave out --backup)"), evidence: files });
        }
        return Ok(Step::Next(next));
    }
    match cx.child(BACKUP_CHILD) {
        None => Ok(Step::Child { key: BACKUP_CHILD.into(), procedure: "etcd-backup".into(), params: serde_json::json!({}) }),
        Some(end) if end.status == drctl_runtime::RunStatus::Succeeded => Ok(Step::Next(next)),
        Some(end) => Ok(Step::Halt {
            reason: format!("the etcd backup taken first {}: nothing was changed; fix it and resume", end.status.as_str()),
            evidence: vec![end.outcome.clone()],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, ip: &str) -> EtcdMember {
        EtcdMember {
            id,
            name: name.into(),
            peer_urls: vec![format!("https://{ip}:2380")],
            client_urls: vec![format!("https://{ip}:2379")],
            is_learner: false,
        }
    }

    fn health(ip: &str, healthy: bool) -> EndpointHealth {
        EndpointHealth { endpoint: format!("https://{ip}:2379"), healthy, error: (!healthy).then(|| "context deadline exceeded".into()) }
    }

    #[test]
    fn only_an_unhealthy_member_whose_removal_keeps_quorum_is_removed() {
        let list = EtcdMemberList {
            cluster_id: 1,
            members: vec![member(0xa, "m0", "10.0.0.10"), member(0xb, "m1", "10.0.0.11"), member(0xc, "m2", "10.0.0.12")],
        };
        let one_down = [health("10.0.0.10", true), health("10.0.0.11", false), health("10.0.0.12", true)];
        assert_eq!(removal_allowed(&list, &one_down, "m1"), Ok(0xb));
        let healthy = removal_allowed(&list, &one_down, "m0").unwrap_err();
        assert!(healthy.contains("is healthy"), "{healthy}");
        let two_down = [health("10.0.0.10", true), health("10.0.0.11", false), health("10.0.0.12", false)];
        let no_quorum = removal_allowed(&list, &two_down, "m1").unwrap_err();
        assert!(no_quorum.contains("fewer than a quorum of 2"), "{no_quorum}");
        assert!(removal_allowed(&list, &one_down, "m9").unwrap_err().contains("not an etcd member"));
    }
}
