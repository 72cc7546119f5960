//! Machine manifests as the runbook edits them (OpenShift Container Platform 4.14 Backup and restore §5.2.4.1, §5.4.2.2 step 16).

use serde_json::Value;

/// The saved manifest of a lost control-plane machine turned into one that can be created
/// ([`strip_for_create`]) under its new name.
pub fn machine_for_recreate(old: &Value, new_name: &str) -> Value {
    let mut m = strip_for_create(old);
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("name".into(), Value::String(new_name.to_string()));
    }
    m
}

/// A Machine manifest made fit to create: what the runbook removes by hand from the saved YAML
/// (the whole `status`, `spec.providerID`, `metadata.annotations`, `metadata.generation`,
/// `metadata.resourceVersion`, `metadata.uid`) plus what only the server may set
/// (`creationTimestamp`, `managedFields`, `selfLink`, deletion marks). Labels, spec and
/// finalizers stay (the runbook keeps them, the controller owns them). The one list: the kube
/// adapter applies it again to whatever it is asked to create.
pub fn strip_for_create(old: &Value) -> Value {
    let mut m = old.clone();
    if let Some(obj) = m.as_object_mut() {
        obj.remove("status");
        obj.entry("apiVersion").or_insert_with(|| Value::String("machine.openshift.io/v1beta1".into()));
        obj.entry("kind").or_insert_with(|| Value::String("Machine".into()));
    }
    if let Some(spec) = m.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("providerID");
    }
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in SERVER_SET_METADATA {
            meta.remove(*k);
        }
    }
    m
}

const SERVER_SET_METADATA: &[&str] = &[
    "annotations",
    "generation",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The cloud instance's state as the machine controller last saw it: the provider status'
/// `instanceState` (what the runbook's §5.2.3 step 1 prints), else the
/// `machine.openshift.io/instance-state` annotation. `None` when neither is set (bare metal,
/// user-provisioned).
pub fn instance_state(manifest: &Value) -> Option<&str> {
    manifest
        .pointer("/status/providerStatus/instanceState")
        .and_then(Value::as_str)
        .or_else(|| manifest.pointer("/metadata/annotations/machine.openshift.io~1instance-state").and_then(Value::as_str))
}

/// The instance state of a machine whose instance is not running, if it is known not to be.
/// On bare metal the machine carries its BareMetalHost's provisioning state instead
/// (`externally provisioned` for hosts the installer set up, `provisioned`): those say nothing
/// about power and count as running here (a powered-off host shows in its node instead).
pub fn instance_not_running(manifest: &Value) -> Option<&str> {
    instance_state(manifest).filter(|s| !matches!(*s, "running" | "provisioned" | "externally provisioned"))
}

/// The BareMetalHost a bare metal machine is bound to: its `metal3.io/BareMetalHost`
/// annotation (`openshift-machine-api/<host>`), else the host named in its provider id
/// (`baremetalhost:///openshift-machine-api/<host>/<uid>`).
pub fn bare_metal_host_of(manifest: &Value) -> Option<String> {
    let annotated = manifest.pointer("/metadata/annotations/metal3.io~1BareMetalHost").and_then(Value::as_str);
    if let Some(host) = annotated.and_then(|a| a.rsplit_once('/').map(|(_, h)| h).or(Some(a))).filter(|h| !h.is_empty()) {
        return Some(host.to_string());
    }
    let id = manifest.pointer("/spec/providerID").and_then(Value::as_str)?;
    let path = id.strip_prefix("baremetalhost:///")?;
    path.split('/').nth(1).filter(|h| !h.is_empty()).map(str::to_string)
}

/// `ocp-7x2lq-master-0` -> (`ocp-7x2lq-master`, 0).
pub fn split_index(name: &str) -> Option<(&str, u32)> {
    let (base, idx) = name.rsplit_once('-')?;
    Some((base, idx.parse().ok()?))
}

/// The next free name with the same base: one past the highest index in use among `taken`.
pub fn next_machine_name<'a>(old: &str, taken: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let (base, _) = split_index(old)?;
    let max = taken.into_iter().filter_map(split_index).filter(|(b, _)| *b == base).map(|(_, i)| i).max()?;
    Some(format!("{base}-{}", max + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_instance_state_is_read_from_the_provider_status_first() {
        let both = json!({"metadata": {"annotations": {"machine.openshift.io/instance-state": "running"}},
                          "status": {"providerStatus": {"instanceState": "stopped"}}});
        assert_eq!(instance_state(&both), Some("stopped"));
        let annotated = json!({"metadata": {"annotations": {"machine.openshift.io/instance-state": "running"}}});
        assert_eq!(instance_state(&annotated), Some("running"));
        assert_eq!(instance_state(&json!({"status": {"phase": "Running"}})), None);
    }

    #[test]
    fn bare_metal_machines_name_their_host_and_count_as_running() {
        let m = json!({"metadata": {"annotations": {"machine.openshift.io/instance-state": "externally provisioned",
                          "metal3.io/BareMetalHost": "openshift-machine-api/openshift-control-plane-2"}},
                       "spec": {"providerID": "baremetalhost:///openshift-machine-api/other/3354bdac"}});
        assert_eq!(bare_metal_host_of(&m).as_deref(), Some("openshift-control-plane-2"));
        assert_eq!(instance_not_running(&m), None);
        let by_id = json!({"spec": {"providerID": "baremetalhost:///openshift-machine-api/openshift-control-plane-1/d9f9acbc"}});
        assert_eq!(bare_metal_host_of(&by_id).as_deref(), Some("openshift-control-plane-1"));
        assert_eq!(bare_metal_host_of(&json!({"spec": {"providerID": "aws:///us-east-1a/i-0fdb"}})), None);
        let stopped = json!({"status": {"providerStatus": {"instanceState": "stopped"}}});
        assert_eq!(instance_not_running(&stopped), Some("stopped"));
    }

    #[test]
    fn strips_what_the_runbook_says_and_renames() {
        let old = json!({
            "apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine",
            "metadata": {"name": "clustername-8qw5l-master-0", "namespace": "openshift-machine-api",
                "annotations": {"machine.openshift.io/instance-state": "running"}, "generation": 2,
                "resourceVersion": "13291", "uid": "a282eb70-40a2-4e89-8009-d05dd420d31a",
                "labels": {"machine.openshift.io/cluster-api-machine-role": "master"}},
            "spec": {"providerID": "aws:///us-east-1a/i-0fdb85790d76d0c3f", "providerSpec": {"value": {"instanceType": "m4.xlarge"}}},
            "status": {"phase": "Running", "nodeRef": {"kind": "Node", "name": "ip-10-0-131-183.ec2.internal"}}
        });
        let new = machine_for_recreate(&old, "clustername-8qw5l-master-3");
        assert_eq!(new["metadata"]["name"], "clustername-8qw5l-master-3");
        for gone in ["annotations", "generation", "resourceVersion", "uid"] {
            assert!(new["metadata"].get(gone).is_none(), "{gone} kept");
        }
        assert!(new.get("status").is_none());
        assert!(new["spec"].get("providerID").is_none());
        assert_eq!(new["spec"]["providerSpec"]["value"]["instanceType"], "m4.xlarge");
        assert_eq!(new["metadata"]["labels"]["machine.openshift.io/cluster-api-machine-role"], "master");
    }

    #[test]
    fn next_name_is_one_past_the_highest_index() {
        let taken = ["c-master-0", "c-master-1", "c-master-2", "c-worker-7"];
        assert_eq!(next_machine_name("c-master-1", taken).as_deref(), Some("c-master-3"));
        assert_eq!(next_machine_name("c-master-1", ["c-master-1", "c-master-4"]).as_deref(), Some("c-master-5"));
        assert_eq!(next_machine_name("nodash", ["nodash"]), None);
    }
}
