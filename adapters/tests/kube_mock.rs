//! The kube adapter against a mock API server that checks every request against fixtures
//! built from the runbooks' example objects (OpenShift Container Platform 4.14 Backup and
//! restore: the Machine of §5.2.4.1, the etcd
//! operator patches, the `oc get csr` list of §5.4.2.2) and answers like an API server would,
//! failures included.
// Real software in real time: these tests wait on the wall clock.
#![allow(clippy::disallowed_methods)]

mod support;

use drctl_adapters::blocking::Blocking;
use drctl_adapters::kube::{pausable_info, pause_patch, KubeApi};
use drctl_runtime::clock::{ManualClock, Timestamp};
use drctl_workflows::machines::machine_for_recreate;
use drctl_workflows::ports::{ClusterApi, ConditionInfo, CsrKind, ManagementCluster, Operator, PausableInfo, PodStatus, PortError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::mockapi::{status_failure, Expect, MockApi};

const MACHINES: &str = "/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines";
const ETCD: &str = "/apis/operator.openshift.io/v1/etcds/cluster";
const FM: (&str, &str) = ("fieldManager", "drctl");
const HOSTED_CLUSTERS: &str = "/apis/hypershift.openshift.io/v1beta1/namespaces/clusters/hostedclusters";
const NODE_POOLS: &str = "/apis/hypershift.openshift.io/v1beta1/namespaces/clusters/nodepools";
/// 2026-11-21T18:11:41Z: whole seconds so timestamps print without a fraction.
const NOW_MS: u64 = 1_795_284_701_000;

fn api(mock: &MockApi) -> KubeApi {
    let rt = Blocking::dedicated("kube-test").unwrap();
    KubeApi::connect(rt, Some(&mock.kubeconfig()), Some("admin")).unwrap().with_clock(Arc::new(ManualClock::new(Timestamp(NOW_MS))))
}

fn node(name: &str, ip: &str, role: &str, ready: &str, unreachable: bool) -> Value {
    let mut taints = vec![];
    if role != "worker" {
        taints.push(json!({"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}));
    }
    if unreachable {
        taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": "2024-03-01T10:00:00Z"}));
        taints.push(json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2024-03-01T10:00:05Z"}));
    }
    json!({
        "metadata": {"name": name, "labels": {format!("node-role.kubernetes.io/{role}"): "", "kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "reason": if ready == "True" { "KubeletReady" } else { "NodeStatusUnknown" }}],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.25.0", "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "cri-o://1.25", "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "osImage": "Red Hat Enterprise Linux CoreOS", "systemUUID": ""}
        }
    })
}

fn etcd_pod(node: &str, phase: &str, ready: bool, state: Value) -> Value {
    json!({
        "metadata": {"name": format!("etcd-{node}"), "namespace": "openshift-etcd", "labels": {"app": "etcd", "k8s-app": "etcd", "etcd": "true"}},
        "spec": {"nodeName": node, "containers": [{"name": "etcd"}, {"name": "etcdctl"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "etcd", "ready": ready, "restartCount": if ready { 0 } else { 7 }, "image": "quay.io/openshift/etcd", "imageID": "", "state": state}]
        }
    })
}

/// `spec.request` (base64 of the PEM PKCS#10 request) of a kubelet of `node`, made with
/// `openssl req -new -subj "/O=system:nodes/CN=system:node:<node>"`.
fn request_of(node: &str) -> &'static str {
    match node {
        "ip-10-0-164-97.ec2.internal" => "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQkJUQ0Jxd0lCQURCSk1SVXdFd1lEVlFRS0RBeHplWE4wWlcwNmJtOWtaWE14TURBdUJnTlZCQU1NSjNONQpjM1JsYlRwdWIyUmxPbWx3TFRFd0xUQXRNVFkwTFRrM0xtVmpNaTVwYm5SbGNtNWhiREJaTUJNR0J5cUdTTTQ5CkFnRUdDQ3FHU000OUF3RUhBMElBQkpYclNGd1J2WlphaEdnMEU1NXQ0Qng5T05IdVJmVXdCZUhzS01DWUY5aGIKT05VQnM2d0lQWlhoVWNSZzFYZHBMUE83a2NzeVFORWFSSXNkRC81Ymx4U2dBREFLQmdncWhrak9QUVFEQWdOSgpBREJHQWlFQTFIWklJRU9vWlR1TG5KKzlGZjdPeGMxUGQvSkdvNU1WV1JWclc4dGoyaFFDSVFDbW85ZWxGaE9kCmQ3VzFGVVRoOHRTQVB1Q0wyelZmLzNib1A1d21aUnFieVE9PQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
        "ip-10-0-154-204.ec2.internal" => "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQkJUQ0JyQUlCQURCS01SVXdFd1lEVlFRS0RBeHplWE4wWlcwNmJtOWtaWE14TVRBdkJnTlZCQU1NS0hONQpjM1JsYlRwdWIyUmxPbWx3TFRFd0xUQXRNVFUwTFRJd05DNWxZekl1YVc1MFpYSnVZV3d3V1RBVEJnY3Foa2pPClBRSUJCZ2dxaGtqT1BRTUJCd05DQUFTVjYwaGNFYjJXV29Sb05CT2ViZUFjZlRqUjdrWDFNQVhoN0NqQW1CZlkKV3pqVkFiT3NDRDJWNFZIRVlOVjNhU3p6dTVITE1rRFJHa1NMSFEvK1c1Y1VvQUF3Q2dZSUtvWkl6ajBFQXdJRApTQUF3UlFJaEFNNGhRT3dnYkV1c0NyazdYSW5GWGErMytPOWpMZHhlYzVoQ3BqTVg3Sk1HQWlBdU5KNjhDS3pZCktaUUt0WDJZckgvbGt4Wjg5Yy9Bbm5aTU90aTNHZ0lZc1E9PQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
        "ip-10-0-131-183.ec2.internal" => "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQkJEQ0JyQUlCQURCS01SVXdFd1lEVlFRS0RBeHplWE4wWlcwNmJtOWtaWE14TVRBdkJnTlZCQU1NS0hONQpjM1JsYlRwdWIyUmxPbWx3TFRFd0xUQXRNVE14TFRFNE15NWxZekl1YVc1MFpYSnVZV3d3V1RBVEJnY3Foa2pPClBRSUJCZ2dxaGtqT1BRTUJCd05DQUFTVjYwaGNFYjJXV29Sb05CT2ViZUFjZlRqUjdrWDFNQVhoN0NqQW1CZlkKV3pqVkFiT3NDRDJWNFZIRVlOVjNhU3p6dTVITE1rRFJHa1NMSFEvK1c1Y1VvQUF3Q2dZSUtvWkl6ajBFQXdJRApSd0F3UkFJZ1pQUE5HZmVYbDZTMWUvS0VML200azNwQmtyTVc4RXp2Y2lxc0xublZ4MzhDSUQrVjcyaFFuZGsyCmhqUDRrYWFuR3FJTS85Q29uRnkydEhYMzBIaSs4M2c5Ci0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1QtLS0tLQo=",
        "master-0" => "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlId01JR1lBZ0VBTURZeEZUQVRCZ05WQkFvTURITjVjM1JsYlRwdWIyUmxjekVkTUJzR0ExVUVBd3dVYzNsegpkR1Z0T201dlpHVTZiV0Z6ZEdWeUxUQXdXVEFUQmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBU1Y2MGhjCkViMldXb1JvTkJPZWJlQWNmVGpSN2tYMU1BWGg3Q2pBbUJmWVd6alZBYk9zQ0QyVjRWSEVZTlYzYVN6enU1SEwKTWtEUkdrU0xIUS8rVzVjVW9BQXdDZ1lJS29aSXpqMEVBd0lEUndBd1JBSWdTSFBuamN2TzBxcUFGbmQ2MjNDSAphNkllR2xpNWVvdzVLOVRlRlF6TENkZ0NJQU1wbVVWVTdYTDgzcFlHa2pFOWppa0hvMVZyTCthekE1dDU3YnhaCll6amkKLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg==",
        "master-1" => "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlIeE1JR1lBZ0VBTURZeEZUQVRCZ05WQkFvTURITjVjM1JsYlRwdWIyUmxjekVkTUJzR0ExVUVBd3dVYzNsegpkR1Z0T201dlpHVTZiV0Z6ZEdWeUxURXdXVEFUQmdjcWhrak9QUUlCQmdncWhrak9QUU1CQndOQ0FBU1Y2MGhjCkViMldXb1JvTkJPZWJlQWNmVGpSN2tYMU1BWGg3Q2pBbUJmWVd6alZBYk9zQ0QyVjRWSEVZTlYzYVN6enU1SEwKTWtEUkdrU0xIUS8rVzVjVW9BQXdDZ1lJS29aSXpqMEVBd0lEU0FBd1JRSWhBTy8wRklZU1RrQkNqa3hJTDR2WQpjSkhicUNiYjJIY1c5dmlPbmdJUzY3K1JBaUFPR1RTaWlablF5NVQ5YWwrUCtDOVV3eUNZby9NcktMWWRZKzNZCkF1TGw4QT09Ci0tLS0tRU5EIENFUlRJRklDQVRFIFJFUVVFU1QtLS0tLQo=",
        other => panic!("no request made for {other}"),
    }
}

/// The CSRs of the `oc get csr` example in the 4.14 restore procedure (§5.4.2.2), plus one
/// already approved; each carries a real request for node `node`.
fn csr(name: &str, signer: &str, user: &str, node: &str, approved: bool) -> Value {
    let mut c = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "resourceVersion": "4242", "creationTimestamp": "2026-11-21T18:03:38Z"},
        "spec": {
            "request": request_of(node),
            "signerName": signer,
            "username": user,
            "groups": ["system:authenticated"],
            "usages": ["digital signature", "client auth"]
        },
        "status": {}
    });
    if approved {
        c["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "NodeCSRApprove", "message": "approved by the machine approver", "lastUpdateTime": "2026-11-21T18:00:00Z", "lastTransitionTime": "2026-11-21T18:00:00Z"}]});
    }
    c
}

const BOOTSTRAPPER: &str = "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";

fn csr_list() -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequestList", "metadata": {"resourceVersion": "4243"}, "items": [
        csr("csr-2s94x", "kubernetes.io/kubelet-serving", "system:node:ip-10-0-164-97.ec2.internal", "ip-10-0-164-97.ec2.internal", false),
        csr("csr-4bd6t", "kubernetes.io/kubelet-serving", "system:node:ip-10-0-154-204.ec2.internal", "ip-10-0-154-204.ec2.internal", false),
        csr("csr-4hl85", "kubernetes.io/kube-apiserver-client-kubelet", BOOTSTRAPPER, "ip-10-0-131-183.ec2.internal", false),
        csr("csr-zhhhp", "kubernetes.io/kube-apiserver-client-kubelet", BOOTSTRAPPER, "master-0", false),
        csr("csr-8vw2c", "kubernetes.io/kube-apiserver-client-kubelet", BOOTSTRAPPER, "master-1", true),
        csr("csr-xk9lw", "example.com/custom", "system:serviceaccount:ns:someone", "master-1", false)
    ]})
}

/// The approval `oc adm certificate approve` would write: the CSR plus an Approved condition.
fn approved(c: &Value) -> Value {
    let mut c = c.clone();
    c["status"] = json!({"conditions": [{
        "type": "Approved", "status": "True", "reason": "DrctlApprove",
        "message": "This CSR was approved by drctl (runbook step: approve the pending CSRs).",
        "lastUpdateTime": "2026-11-21T18:11:41Z", "lastTransitionTime": "2026-11-21T18:11:41Z"
    }]});
    c
}

/// The Machine of OpenShift Container Platform 4.14 Backup and restore §5.2.4.1, as the API
/// serves it.
fn seed_machine(name: &str, node: &str, ip: &str, state: &str) -> Value {
    json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "Machine",
        "metadata": {
            "annotations": {"machine.openshift.io/instance-state": "running"},
            "creationTimestamp": "2020-04-20T16:52:20Z",
            "finalizers": ["machine.machine.openshift.io"],
            "generation": 2,
            "labels": {
                "machine.openshift.io/cluster-api-cluster": "clustername-8qw5l",
                "machine.openshift.io/cluster-api-machine-role": "master",
                "machine.openshift.io/cluster-api-machine-type": "master",
                "machine.openshift.io/instance-type": "m4.xlarge",
                "machine.openshift.io/region": "us-east-1",
                "machine.openshift.io/zone": "us-east-1a"
            },
            "name": name,
            "namespace": "openshift-machine-api",
            "resourceVersion": "13291",
            "uid": "a282eb70-40a2-4e89-8009-d05dd420d31a"
        },
        "spec": {
            "metadata": {},
            "providerID": "aws:///us-east-1a/i-0fdb85790d76d0c3f",
            "providerSpec": {"value": {"apiVersion": "awsproviderconfig.openshift.io/v1beta1", "kind": "AWSMachineProviderConfig", "instanceType": "m4.xlarge", "placement": {"availabilityZone": "us-east-1a", "region": "us-east-1"}}}
        },
        "status": {
            "addresses": [{"address": ip, "type": "InternalIP"}, {"address": node, "type": "InternalDNS"}, {"address": node, "type": "Hostname"}],
            "lastUpdated": "2020-04-20T17:44:29Z",
            "nodeRef": {"kind": "Node", "name": node, "uid": "acca4411-af0d-4387-b73e-52b2484295ad"},
            "phase": "Running",
            "providerStatus": {
                "apiVersion": "awsproviderconfig.openshift.io/v1beta1",
                "conditions": [{"lastProbeTime": "2020-04-20T16:53:50Z", "lastTransitionTime": "2020-04-20T16:53:50Z", "message": "machine successfully created", "reason": "MachineCreationSucceeded", "status": "True", "type": "MachineCreation"}],
                "instanceId": "i-0fdb85790d76d0c3f",
                "instanceState": state,
                "kind": "AWSMachineProviderStatus"
            }
        }
    })
}

fn etcd_operator(overrides: Value, reason: &str, installer: (&str, &str), revision: u64) -> Value {
    json!({
        "apiVersion": "operator.openshift.io/v1", "kind": "Etcd",
        "metadata": {"name": "cluster", "resourceVersion": "88812", "generation": 5},
        "spec": {"managementState": "Managed", "forceRedeploymentReason": reason, "unsupportedConfigOverrides": overrides},
        "status": {"latestAvailableRevision": revision, "conditions": [
            {"type": "EtcdMembersAvailable", "status": "False", "reason": "NoQuorum", "message": "2 of 3 members are available, ip-10-0-131-183.ec2.internal is unhealthy"},
            {"type": "NodeInstallerProgressing", "status": if installer.0 == "AllNodesAtLatestRevision" { "False" } else { "True" }, "reason": installer.0, "message": installer.1}
        ]}
    })
}

#[test]
fn nodes_pods_and_csrs_read_like_the_runbook_output() {
    let mock = MockApi::start();
    let api = api(&mock);
    mock.expect(Expect::get("/api/v1/nodes").reply(
        200,
        json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [
            node("ip-10-0-131-183.ec2.internal", "10.0.131.183", "master", "Unknown", true),
            node("ip-10-0-164-97.ec2.internal", "10.0.164.97", "master", "True", false),
            node("ip-10-0-154-204.ec2.internal", "10.0.154.204", "control-plane", "True", false),
            node("ip-10-0-129-226.ec2.internal", "10.0.129.226", "worker", "True", false)
        ]}),
    ));
    let nodes = api.list_nodes().unwrap();
    assert_eq!(nodes.len(), 4);
    assert!(!nodes[0].ready && nodes[0].control_plane);
    assert_eq!(nodes[0].internal_ip, "10.0.131.183");
    // Every status address, which a serving CSR's names are checked against.
    assert_eq!(nodes[0].addresses, ["10.0.131.183", "ip-10-0-131-183.ec2.internal"]);
    assert_eq!(nodes[0].taints, vec!["node-role.kubernetes.io/master", "node.kubernetes.io/unreachable"]);
    assert!(nodes[2].ready && nodes[2].control_plane, "the control-plane role label counts too");
    assert!(!nodes[3].control_plane);

    mock.expect(
        Expect::get("/api/v1/namespaces/openshift-etcd/pods").query(&[("labelSelector", "k8s-app=etcd")]).reply(200, json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
            etcd_pod("ip-10-0-131-183.ec2.internal", "Running", false, json!({"terminated": {"exitCode": 1, "reason": "Error"}})),
            etcd_pod("ip-10-0-164-97.ec2.internal", "Running", true, json!({"running": {"startedAt": "2026-11-21T12:00:00Z"}})),
            etcd_pod("ip-10-0-154-204.ec2.internal", "Running", false, json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}))
        ]})),
    );
    let pods = api.list_pods("openshift-etcd", "k8s-app=etcd").unwrap();
    assert_eq!(
        pods.iter().map(|p| p.phase.clone()).collect::<Vec<_>>(),
        [PodStatus::Error, PodStatus::Running, PodStatus::CrashLoopBackOff]
    );
    assert_eq!(pods[1].node, "ip-10-0-164-97.ec2.internal");
    assert!(pods[1].ready && !pods[0].ready);

    mock.expect(
        Expect::delete("/api/v1/namespaces/openshift-ovn-kubernetes/pods/ovnkube-master-nb24h")
            .reply(200, json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "ovnkube-master-nb24h"}})),
    );
    mock.expect(Expect::delete("/api/v1/namespaces/openshift-ovn-kubernetes/pods/ovnkube-master-nb24h").fail(
        404,
        "NotFound",
        "pods \"ovnkube-master-nb24h\" not found",
    ));
    api.delete_pod("openshift-ovn-kubernetes", "ovnkube-master-nb24h").unwrap();
    api.delete_pod("openshift-ovn-kubernetes", "ovnkube-master-nb24h").unwrap();
    mock.expect(Expect::delete("/api/v1/nodes/ip-10-0-131-183.ec2.internal").fail(
        404,
        "NotFound",
        "nodes \"ip-10-0-131-183.ec2.internal\" not found",
    ));
    api.delete_node("ip-10-0-131-183.ec2.internal").unwrap();

    mock.expect(Expect::get("/apis/certificates.k8s.io/v1/certificatesigningrequests").reply(200, csr_list()));
    let csrs = api.list_csrs().unwrap();
    let pending: Vec<&str> = csrs.iter().filter(|c| c.pending).map(|c| c.name.as_str()).collect();
    assert_eq!(pending, ["csr-2s94x", "csr-4bd6t", "csr-4hl85", "csr-zhhhp", "csr-xk9lw"]);
    assert_eq!(csrs[0].kind, CsrKind::KubeletServing);
    assert_eq!(csrs[0].node.as_deref(), Some("ip-10-0-164-97.ec2.internal"));
    // A node-bootstrapper CSR names its node only in the request's subject: read from there.
    assert_eq!(csrs[2].kind, CsrKind::NodeBootstrapper);
    assert_eq!(csrs[2].node.as_deref(), Some("ip-10-0-131-183.ec2.internal"));
    assert_eq!(csrs[3].node.as_deref(), Some("master-0"));
    // What the approval policy weighs besides the node: usages and age.
    assert_eq!(csrs[2].usages, ["digital signature", "client auth"]);
    assert_eq!(csrs[2].created, drctl_runtime::clock::Timestamp::parse_rfc3339("2026-11-21T18:03:38Z"));
    // These requests ask for no alternative names (read by the shared parser, not absent).
    assert_eq!(csrs[2].names.as_deref(), Some(&[][..]));
    assert!(csrs[4].approved && !csrs[4].pending);
    assert_eq!(csrs[5].kind, CsrKind::Other);

    // Approve: read, then PUT the approval subresource with the Approved condition added.
    let c = csr("csr-4hl85", "kubernetes.io/kube-apiserver-client-kubelet", BOOTSTRAPPER, "ip-10-0-131-183.ec2.internal", false);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr-4hl85";
    mock.expect(Expect::get(path).reply(200, c.clone()));
    mock.expect(Expect::put(&format!("{path}/approval"), approved(&c)).query(&[FM]).reply(200, approved(&c)));
    api.approve_csr("csr-4hl85").unwrap();
    // Approving an approved CSR is a read and nothing more.
    mock.expect(Expect::get(path).reply(200, approved(&c)));
    api.approve_csr("csr-4hl85").unwrap();
    mock.verify();
}

#[test]
fn machines_are_deleted_and_recreated_as_the_runbook_does() {
    let mock = MockApi::start();
    let api = api(&mock);
    let m0 = seed_machine("clustername-8qw5l-master-0", "ip-10-0-131-183.ec2.internal", "10.0.131.183", "stopped");
    let m1 = seed_machine("clustername-8qw5l-master-1", "ip-10-0-154-204.ec2.internal", "10.0.154.204", "running");
    let mut list_items = vec![m0.clone(), m1.clone()];
    // Lists carry apiVersion/kind per item for custom resources, but not always: drop them on one.
    list_items[1].as_object_mut().unwrap().remove("kind");
    mock.expect(
        Expect::get(MACHINES)
            .reply(200, json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "MachineList", "metadata": {}, "items": list_items})),
    );
    let ms = api.list_machines().unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].node.as_deref(), Some("ip-10-0-131-183.ec2.internal"));
    assert!(ms[0].control_plane);
    assert_eq!(ms[1].manifest["kind"], "Machine");

    let one = format!("{MACHINES}/clustername-8qw5l-master-0");
    mock.expect(Expect::get(&one).reply(200, m0.clone()));
    let saved = api.get_machine("clustername-8qw5l-master-0").unwrap().unwrap();
    assert_eq!(saved.manifest, m0);
    mock.expect(Expect::get(&format!("{MACHINES}/clustername-8qw5l-master-9")).fail(
        404,
        "NotFound",
        "machines.machine.openshift.io \"clustername-8qw5l-master-9\" not found",
    ));
    assert_eq!(api.get_machine("clustername-8qw5l-master-9").unwrap(), None);

    let mut deleting = m0.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-21T18:11:41Z");
    mock.expect(Expect::delete(&one).reply(200, deleting));
    api.delete_machine("clustername-8qw5l-master-0").unwrap();
    mock.expect(Expect::delete(&one).fail(404, "NotFound", "machines.machine.openshift.io \"clustername-8qw5l-master-0\" not found"));
    api.delete_machine("clustername-8qw5l-master-0").unwrap();

    // `oc apply -f new-master-machine.yaml`: exactly the edited manifest of the runbook.
    let new = machine_for_recreate(&saved.manifest, "clustername-8qw5l-master-3");
    let mut created = new.clone();
    created["metadata"]["uid"] = json!("5eb0d6b8-ca24-730c-0000-000000000003");
    mock.expect(Expect::post(MACHINES, new.clone()).query(&[FM]).reply(201, created.clone()));
    api.create_machine(&new).unwrap();
    // Created already (a re-run): the 409 AlreadyExists is read back and is success.
    mock.expect(Expect::post(MACHINES, new.clone()).query(&[FM]).fail(
        409,
        "AlreadyExists",
        "machines.machine.openshift.io \"clustername-8qw5l-master-3\" already exists",
    ));
    mock.expect(Expect::get(&format!("{MACHINES}/clustername-8qw5l-master-3")).reply(200, created));
    api.create_machine(&new).unwrap();
    // Handing create the saved manifest with the new name strips the same fields.
    let mut renamed = saved.manifest.clone();
    renamed["metadata"]["name"] = json!("clustername-8qw5l-master-3");
    mock.expect(Expect::post(MACHINES, new.clone()).query(&[FM]).fail(
        422,
        "Invalid",
        "Machine.machine.openshift.io \"clustername-8qw5l-master-3\" is invalid: spec.providerSpec: Required value",
    ));
    let e = api.create_machine(&renamed).unwrap_err();
    assert!(matches!(&e, PortError::Permanent(m) if m.contains("422") && m.contains("Required value")), "{e:?}");
    mock.verify();
}

#[test]
fn etcd_operator_patches_are_exactly_the_runbooks() {
    let mock = MockApi::start();
    let api = api(&mock);
    let off = json!({"spec": {"unsupportedConfigOverrides": {"useUnsupportedUnsafeNonHANonProductionUnstableEtcd": true}}});
    let on = json!({"spec": {"unsupportedConfigOverrides": null}});
    let guard_off = etcd_operator(
        json!({"useUnsupportedUnsafeNonHANonProductionUnstableEtcd": true}),
        "",
        ("AllNodesAtLatestRevision", "3 nodes are at revision 7"),
        7,
    );
    let guard_on = etcd_operator(Value::Null, "", ("AllNodesAtLatestRevision", "3 nodes are at revision 7"), 7);
    mock.expect(Expect::merge_patch(ETCD, off).query(&[FM]).reply(200, guard_off.clone()));
    api.set_quorum_guard(false).unwrap();
    mock.expect(Expect::get(ETCD).reply(200, guard_off));
    assert!(!api.quorum_guard_enabled().unwrap());
    mock.expect(Expect::merge_patch(ETCD, on).query(&[FM]).reply(200, guard_on.clone()));
    api.set_quorum_guard(true).unwrap();
    mock.expect(Expect::get(ETCD).reply(200, guard_on));
    assert!(api.quorum_guard_enabled().unwrap());

    let reason = "recovery-2026-11-21 18:11:41.000000000+00:00";
    for (op, plural) in [
        (Operator::Etcd, "etcds"),
        (Operator::KubeApiServer, "kubeapiservers"),
        (Operator::KubeControllerManager, "kubecontrollermanagers"),
        (Operator::KubeScheduler, "kubeschedulers"),
    ] {
        let path = format!("/apis/operator.openshift.io/v1/{plural}/cluster");
        mock.expect(
            Expect::merge_patch(&path, json!({"spec": {"forceRedeploymentReason": reason}}))
                .query(&[FM])
                .reply(200, json!({"metadata": {"name": "cluster"}})),
        );
        api.force_redeployment(op, reason).unwrap();
    }

    let rolling = etcd_operator(Value::Null, reason, ("NodeInstaller", "2 nodes are at revision 6; 1 nodes are at revision 7"), 7);
    mock.expect(Expect::get(ETCD).reply(200, rolling));
    let p = api.installer_progress(Operator::Etcd).unwrap();
    assert!(!p.all_at_latest());
    assert_eq!(p.message, "2 nodes are at revision 6; 1 nodes are at revision 7");
    assert_eq!(p.force_redeployment_reason.as_deref(), Some(reason));
    mock.expect(Expect::get("/apis/operator.openshift.io/v1/kubeapiservers/cluster").reply(200, json!({
        "apiVersion": "operator.openshift.io/v1", "kind": "KubeAPIServer", "metadata": {"name": "cluster"},
        "spec": {"forceRedeploymentReason": reason},
        "status": {"latestAvailableRevision": 8, "conditions": [{"type": "NodeInstallerProgressing", "status": "False", "reason": "AllNodesAtLatestRevision", "message": "3 nodes are at revision 8"}]}})));
    let p = api.installer_progress(Operator::KubeApiServer).unwrap();
    assert!(p.all_at_latest());
    assert_eq!(p.latest_revision, 8);

    mock.expect(Expect::get(ETCD).reply(200, etcd_operator(Value::Null, "", ("AllNodesAtLatestRevision", ""), 7)));
    let (status, _, message) = api.operator_condition(Operator::Etcd, "EtcdMembersAvailable").unwrap().unwrap();
    assert_eq!((status.as_str(), message.as_str()), ("False", "2 of 3 members are available, ip-10-0-131-183.ec2.internal is unhealthy"));
    mock.verify();
}

#[test]
fn cluster_version_age_operators_and_ovn_references() {
    let mock = MockApi::start();
    let api = api(&mock);
    let cv = json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion",
        "metadata": {"name": "version", "creationTimestamp": "2026-11-20T18:11:41Z"},
        "spec": {"channel": "stable-4.15", "clusterID": "9a0c2f1e-0000-4000-8000-000000000000"},
        "status": {"desired": {"version": "4.15.3", "image": "quay.io/openshift-release-dev/ocp-release@sha256:0000"},
                   "history": [{"state": "Completed", "version": "4.15.3", "startedTime": "2026-11-20T18:11:41Z", "completionTime": "2026-11-20T18:51:41Z", "image": "x", "verified": false}]}});
    mock.expect(Expect::get("/apis/config.openshift.io/v1/clusterversions/version").reply(200, cv.clone()));
    assert_eq!(api.cluster_version().unwrap(), "4.15.3");
    mock.expect(Expect::get("/apis/config.openshift.io/v1/clusterversions/version").reply(200, cv));
    assert_eq!(api.cluster_age_secs().unwrap(), 24 * 3600);

    let co = |name: &str, a: &str, p: &str, d: &str| {
        json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": {"name": name}, "status": {"conditions": [
            {"type": "Available", "status": a}, {"type": "Progressing", "status": p}, {"type": "Degraded", "status": d}]}})
    };
    mock.expect(Expect::get("/apis/config.openshift.io/v1/clusteroperators").reply(
        200,
        json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperatorList", "metadata": {}, "items": [
        co("kube-apiserver", "True", "True", "False"), co("etcd", "True", "False", "True")]}),
    ));
    let ops = api.cluster_operators().unwrap();
    assert_eq!(ops[0].name, "etcd");
    assert!(ops[0].available && !ops[0].progressing && ops[0].degraded);
    assert!(ops[1].progressing);

    let ds = "/apis/apps/v1/namespaces/openshift-ovn-kubernetes/daemonsets/ovnkube-master";
    mock.expect(Expect::get(ds).reply(200, json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ovnkube-master", "namespace": "openshift-ovn-kubernetes"},
        "spec": {"template": {"spec": {"containers": [{"name": "nbdb", "env": [{"name": "OVN_NB_RAFT_PEERS", "value": "ssl:10.0.143.125:9643,ssl:10.0.154.194:9643"}]}]}}}})));
    let ips = vec!["10.0.154.194".to_string(), "10.0.173.171".to_string(), "10.0.143.12".to_string()];
    assert_eq!(api.ovn_master_references(&ips).unwrap(), vec!["10.0.154.194".to_string()]);
    mock.expect(Expect::get(ds).fail(404, "NotFound", "daemonsets.apps \"ovnkube-master\" not found"));
    assert_eq!(api.ovn_master_references(&ips).unwrap(), Vec::<String>::new());

    // Step 15's note: the admission webhooks that fail closed, validating and mutating.
    mock.expect(Expect::get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations").reply(
        200,
        json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfigurationList", "metadata": {}, "items": [
        {"metadata": {"name": "kyverno-resource-validating-webhook-cfg"}, "webhooks": [
            {"name": "validate.kyverno.svc-fail", "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
             "clientConfig": {"service": {"namespace": "kyverno", "name": "kyverno-svc"}}},
            {"name": "validate.kyverno.svc-ignore", "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"],
             "clientConfig": {"service": {"namespace": "kyverno", "name": "kyverno-svc"}}}]}]}),
    ));
    mock.expect(Expect::get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations").reply(
        200,
        json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfigurationList", "metadata": {}, "items": [
        {"metadata": {"name": "sidecar-injector"}, "webhooks": [
            {"name": "inject.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
             "clientConfig": {"url": "https://inject.example.com/mutate"}}]}]}),
    ));
    let hooks: Vec<String> = api.fail_closed_webhooks().unwrap().iter().map(|h| h.to_string()).collect();
    assert_eq!(
        hooks,
        [
            "validatingwebhookconfiguration/kyverno-resource-validating-webhook-cfg webhook validate.kyverno.svc-fail (service kyverno/kyverno-svc)",
            "mutatingwebhookconfiguration/sidecar-injector webhook inject.example.com (url https://inject.example.com/mutate)",
        ]
    );
    mock.verify();
}

#[test]
fn hosted_clusters_baremetal_hosts_and_secrets() {
    let mock = MockApi::start();
    let api = api(&mock);
    let hc = "/apis/hypershift.openshift.io/v1beta1/namespaces/clusters/hostedclusters/hc1";
    mock.expect(
        Expect::merge_patch(hc, json!({"spec": {"pausedUntil": "true"}})).query(&[FM]).reply(200, json!({"metadata": {"name": "hc1"}})),
    );
    api.set_hosted_cluster_paused_until("clusters", "hc1", Some("true")).unwrap();
    mock.expect(
        Expect::merge_patch(hc, json!({"spec": {"pausedUntil": null}})).query(&[FM]).reply(200, json!({"metadata": {"name": "hc1"}})),
    );
    api.set_hosted_cluster_paused_until("clusters", "hc1", None).unwrap();
    mock.expect(Expect::get(hc).reply(200, json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster", "metadata": {"name": "hc1", "namespace": "clusters"}, "spec": {"pausedUntil": "true"}})));
    assert_eq!(api.get_hosted_cluster("clusters", "hc1").unwrap().unwrap()["spec"]["pausedUntil"], "true");
    let np = "/apis/hypershift.openshift.io/v1beta1/namespaces/clusters/nodepools/hc1-us-east-1a";
    mock.expect(
        Expect::merge_patch(np, json!({"spec": {"pausedUntil": "2026-11-22T00:00:00Z"}}))
            .query(&[FM])
            .reply(200, json!({"metadata": {"name": "hc1-us-east-1a"}})),
    );
    api.set_node_pool_paused_until("clusters", "hc1-us-east-1a", Some("2026-11-22T00:00:00Z")).unwrap();

    let bmh = "/apis/metal3.io/v1alpha1/namespaces/openshift-machine-api/baremetalhosts/openshift-control-plane-2";
    mock.expect(Expect::get(bmh).reply(200, json!({"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost", "metadata": {"name": "openshift-control-plane-2"}, "spec": {"online": true}, "status": {"provisioning": {"state": "externally provisioned"}}})));
    let h = api.get_baremetal_host("openshift-control-plane-2").unwrap().unwrap();
    assert_eq!(h["status"]["provisioning"]["state"], "externally provisioned");
    mock.expect(
        Expect::merge_patch(bmh, json!({"spec": {"online": false}}))
            .query(&[FM])
            .reply(200, json!({"metadata": {"name": "openshift-control-plane-2"}})),
    );
    api.patch_baremetal_host("openshift-control-plane-2", &json!({"spec": {"online": false}})).unwrap();

    mock.expect(
        Expect::delete("/api/v1/namespaces/openshift-etcd/secrets/etcd-peer-ip-10-0-131-183.ec2.internal")
            .reply(200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
    );
    api.delete_secret("openshift-etcd", "etcd-peer-ip-10-0-131-183.ec2.internal").unwrap();
    mock.expect(Expect::delete("/api/v1/namespaces/openshift-etcd/secrets/etcd-serving-ip-10-0-131-183.ec2.internal").fail(
        404,
        "NotFound",
        "secrets \"etcd-serving-ip-10-0-131-183.ec2.internal\" not found",
    ));
    api.delete_secret("openshift-etcd", "etcd-serving-ip-10-0-131-183.ec2.internal").unwrap();
    mock.verify();
}

/// A HostedCluster or NodePool as the management cluster serves it: generation 3, paused by
/// drctl run `run-0001` (or not paused at all), the controller's `ReconciliationActive`
/// condition saying so.
fn pausable(kind: &str, name: &str, cluster: Option<&str>, paused: bool) -> Value {
    let mut spec = json!({});
    if let Some(c) = cluster {
        spec["clusterName"] = json!(c);
        spec["replicas"] = json!(2);
        spec["platform"] = json!({"type": "AWS", "aws": {"instanceType": "m5.large"}});
    } else {
        spec["release"] = json!({"image": "quay.io/openshift-release-dev/ocp-release:4.15.3-x86_64"});
        spec["platform"] = json!({"type": "AWS", "aws": {"region": "us-east-1"}});
    }
    let mut annotations = json!({"hypershift.openshift.io/cluster": format!("clusters/{}", cluster.unwrap_or(name))});
    if paused {
        spec["pausedUntil"] = json!("true");
        annotations["drctl.openshift.io/paused-by"] = json!("run-0001");
    }
    let (status, reason) = if paused { ("False", "ReconciliationPaused") } else { ("True", "ReconciliationActive") };
    json!({
        "apiVersion": "hypershift.openshift.io/v1beta1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "clusters",
            "generation": 3,
            "resourceVersion": "771204",
            "uid": "5d1e8f7a-2c11-4d3e-9b0f-6a7c8d9e0f12",
            "creationTimestamp": "2026-11-20T09:00:00Z",
            "finalizers": ["hypershift.openshift.io/finalizer"],
            "annotations": annotations
        },
        "spec": spec,
        "status": {"conditions": [
            {"type": "Available", "status": "True", "reason": "AsExpected", "message": "", "observedGeneration": 3, "lastTransitionTime": "2026-11-20T09:20:00Z"},
            {"type": "ReconciliationActive", "status": status, "reason": reason, "message": "", "observedGeneration": 3, "lastTransitionTime": "2026-11-21T18:00:00Z"}
        ]}
    })
}

fn paused_info(name: &str) -> PausableInfo {
    PausableInfo {
        name: name.into(),
        generation: 3,
        paused_until: Some("true".into()),
        paused_by: Some("run-0001".into()),
        deleting: false,
        reconciliation_active: Some(ConditionInfo {
            status: "False".into(),
            reason: "ReconciliationPaused".into(),
            observed_generation: 3,
        }),
    }
}

/// The pure pieces: the patch as it goes on the wire, and the object mapping.
#[test]
fn pause_patch_and_pausable_info_are_pure_and_exact() {
    assert_eq!(
        pause_patch(Some("true"), Some("run-1")).to_string(),
        r#"{"metadata":{"annotations":{"drctl.openshift.io/paused-by":"run-1"}},"spec":{"pausedUntil":"true"}}"#
    );
    assert_eq!(
        pause_patch(None, None).to_string(),
        r#"{"metadata":{"annotations":{"drctl.openshift.io/paused-by":null}},"spec":{"pausedUntil":null}}"#
    );

    let hc = json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster",
        "metadata": {"name": "example", "namespace": "clusters", "generation": 4, "deletionTimestamp": "2026-11-21T18:11:41Z",
                     "annotations": {"drctl.openshift.io/paused-by": "run-7"}},
        "spec": {"pausedUntil": "2026-11-22T00:00:00Z"},
        "status": {"conditions": [
            {"type": "Available", "status": "True", "reason": "AsExpected", "observedGeneration": 4},
            {"type": "ReconciliationActive", "status": "False", "reason": "ReconciliationPaused", "observedGeneration": 3}]}});
    assert_eq!(
        pausable_info(&hc).unwrap(),
        PausableInfo {
            name: "example".into(),
            generation: 4,
            paused_until: Some("2026-11-22T00:00:00Z".into()),
            paused_by: Some("run-7".into()),
            deleting: true,
            reconciliation_active: Some(ConditionInfo {
                status: "False".into(),
                reason: "ReconciliationPaused".into(),
                observed_generation: 3
            }),
        }
    );
    // Nothing set: not paused, no condition yet; an empty pausedUntil does not pause.
    let np = json!({"kind": "NodePool", "metadata": {"name": "example-us-east-1a"}, "spec": {"clusterName": "example", "pausedUntil": ""}});
    let info = pausable_info(&np).unwrap();
    assert_eq!((info.generation, info.paused_until, info.paused_by, info.deleting), (0, None, None, false));
    assert_eq!(info.reconciliation_active, None);
    // No name: permanent, naming what it is.
    let e = pausable_info(&json!({"kind": "NodePool", "metadata": {"namespace": "clusters"}})).unwrap_err();
    assert_eq!(e, PortError::Permanent("NodePool in namespace clusters has no metadata.name".into()));
    assert!(matches!(pausable_info(&json!({})), Err(PortError::Permanent(m)) if m.contains("object")));
}

#[test]
fn management_cluster_reads_a_paused_hosted_cluster() {
    let mock = MockApi::start();
    let api = api(&mock);
    let hc = format!("{HOSTED_CLUSTERS}/example");
    mock.expect(Expect::get(&hc).reply(200, pausable("HostedCluster", "example", None, true)));
    assert_eq!(api.hosted_cluster("clusters", "example").unwrap(), paused_info("example"));

    // Being deleted, and reconciling again.
    let mut deleting = pausable("HostedCluster", "example", None, false);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-21T18:11:41Z");
    mock.expect(Expect::get(&hc).reply(200, deleting));
    let info = api.hosted_cluster("clusters", "example").unwrap();
    assert!(info.deleting);
    assert_eq!((info.paused_until, info.paused_by), (None, None));
    assert_eq!(
        info.reconciliation_active,
        Some(ConditionInfo { status: "True".into(), reason: "ReconciliationActive".into(), observed_generation: 3 })
    );
    mock.verify();
}

#[test]
fn management_cluster_pauses_and_unpauses_with_one_merge_patch() {
    let mock = MockApi::start();
    let api = api(&mock);
    let hc = format!("{HOSTED_CLUSTERS}/example");
    mock.expect(
        Expect::merge_patch(
            &hc,
            json!({"metadata": {"annotations": {"drctl.openshift.io/paused-by": "run-0001"}}, "spec": {"pausedUntil": "true"}}),
        )
        .query(&[FM])
        .reply(200, pausable("HostedCluster", "example", None, true)),
    );
    api.set_hosted_cluster_paused("clusters", "example", Some("true"), Some("run-0001")).unwrap();
    // Unpause: both written as null (removed), never "".
    mock.expect(
        Expect::merge_patch(
            &hc,
            json!({"metadata": {"annotations": {"drctl.openshift.io/paused-by": null}}, "spec": {"pausedUntil": null}}),
        )
        .query(&[FM])
        .reply(200, pausable("HostedCluster", "example", None, false)),
    );
    api.set_hosted_cluster_paused("clusters", "example", None, None).unwrap();
    mock.verify();
}

#[test]
fn management_cluster_lists_the_node_pools_of_one_cluster_and_patches_one() {
    let mock = MockApi::start();
    let api = api(&mock);
    let mut other = pausable("NodePool", "other-us-east-1a", Some("other"), false);
    // List items may come without apiVersion/kind.
    other.as_object_mut().unwrap().remove("kind");
    mock.expect(Expect::get(NODE_POOLS).reply(
        200,
        json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePoolList", "metadata": {"resourceVersion": "771300"}, "items": [
            pausable("NodePool", "example-us-east-1a", Some("example"), true),
            other
        ]}),
    ));
    assert_eq!(api.node_pools("clusters", "example").unwrap(), vec![paused_info("example-us-east-1a")]);

    let np = format!("{NODE_POOLS}/example-us-east-1a");
    mock.expect(
        Expect::merge_patch(
            &np,
            json!({"metadata": {"annotations": {"drctl.openshift.io/paused-by": "run-0001"}}, "spec": {"pausedUntil": "2026-11-22T00:00:00Z"}}),
        )
        .query(&[FM])
        .reply(200, pausable("NodePool", "example-us-east-1a", Some("example"), true)),
    );
    api.set_node_pool_paused("clusters", "example-us-east-1a", Some("2026-11-22T00:00:00Z"), Some("run-0001")).unwrap();
    mock.expect(
        Expect::merge_patch(
            &np,
            json!({"metadata": {"annotations": {"drctl.openshift.io/paused-by": null}}, "spec": {"pausedUntil": null}}),
        )
        .query(&[FM])
        .reply(200, pausable("NodePool", "example-us-east-1a", Some("example"), false)),
    );
    api.set_node_pool_paused("clusters", "example-us-east-1a", None, None).unwrap();
    // No pool of that cluster: an empty list, not an error.
    mock.expect(
        Expect::get(NODE_POOLS)
            .reply(200, json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "NodePoolList", "metadata": {}, "items": []})),
    );
    assert_eq!(api.node_pools("clusters", "example").unwrap(), vec![]);
    mock.verify();
}

#[test]
fn management_cluster_reads_the_hosted_control_plane_and_the_operator() {
    let mock = MockApi::start();
    let api = api(&mock);
    let hcp = "/apis/hypershift.openshift.io/v1beta1/namespaces/clusters-example/hostedcontrolplanes/example";
    let control_plane = |paused: Option<&str>| {
        let mut spec = json!({"releaseImage": "quay.io/openshift-release-dev/ocp-release:4.15.3-x86_64", "platform": {"type": "AWS"}});
        if let Some(p) = paused {
            spec["pausedUntil"] = json!(p);
        }
        json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedControlPlane",
            "metadata": {"name": "example", "namespace": "clusters-example", "generation": 5}, "spec": spec})
    };
    mock.expect(Expect::get(hcp).reply(200, control_plane(Some("true"))));
    assert_eq!(api.control_plane_paused_until("clusters", "example").unwrap().as_deref(), Some("true"));
    mock.expect(Expect::get(hcp).reply(200, control_plane(None)));
    assert_eq!(api.control_plane_paused_until("clusters", "example").unwrap(), None);
    mock.expect(Expect::get(hcp).fail(404, "NotFound", "hostedcontrolplanes.hypershift.openshift.io \"example\" not found"));
    let e = api.control_plane_paused_until("clusters", "example").unwrap_err();
    assert!(matches!(&e, PortError::NotFound(m) if m.contains("clusters-example/example")), "{e:?}");

    let operator = "/apis/apps/v1/namespaces/hypershift/deployments/operator";
    let deployment = |available: i64| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "operator", "namespace": "hypershift", "generation": 1},
            "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": available, "availableReplicas": available, "observedGeneration": 1}})
    };
    mock.expect(Expect::get(operator).reply(200, deployment(1)));
    assert!(api.operator_available().unwrap());
    mock.expect(Expect::get(operator).reply(200, deployment(0)));
    assert!(!api.operator_available().unwrap());
    // Not installed: false, not an error.
    mock.expect(Expect::get(operator).fail(404, "NotFound", "deployments.apps \"operator\" not found"));
    assert!(!api.operator_available().unwrap());
    // An outage is still an outage.
    mock.expect(Expect::get(operator).fail(503, "ServiceUnavailable", "etcdserver: request timed out"));
    assert!(api.operator_available().unwrap_err().is_transient());
    mock.verify();
}

#[test]
fn management_cluster_failures_are_classified() {
    let mock = MockApi::start();
    let api = api(&mock);
    let nope = format!("{HOSTED_CLUSTERS}/nope");
    mock.expect(Expect::get(&nope).fail(404, "NotFound", "hostedclusters.hypershift.openshift.io \"nope\" not found"));
    let e = api.hosted_cluster("clusters", "nope").unwrap_err();
    assert!(matches!(&e, PortError::NotFound(m) if m.contains("hostedclusters.hypershift.openshift.io \"nope\" not found")), "{e:?}");
    mock.expect(Expect::get(&nope).fail(503, "ServiceUnavailable", "etcdserver: request timed out"));
    let e = api.hosted_cluster("clusters", "nope").unwrap_err();
    assert!(matches!(&e, PortError::Transient(m) if m.contains("503")), "{e:?}");
    mock.expect(Expect::get(NODE_POOLS).fail(503, "ServiceUnavailable", "etcdserver: request timed out"));
    assert!(api.node_pools("clusters", "example").unwrap_err().is_transient());
    mock.expect(Expect::get(NODE_POOLS).fail(
        403,
        "Forbidden",
        "nodepools.hypershift.openshift.io is forbidden: User \"system:serviceaccount:drctl:drctl\" cannot list resource \"nodepools\"",
    ));
    assert!(matches!(api.node_pools("clusters", "example"), Err(PortError::Permanent(m)) if m.contains("403")));
    // An object without a name is not something to act on.
    mock.expect(Expect::get(&nope).reply(
        200,
        json!({"apiVersion": "hypershift.openshift.io/v1beta1", "kind": "HostedCluster", "metadata": {"namespace": "clusters"}}),
    ));
    let e = api.hosted_cluster("clusters", "nope").unwrap_err();
    assert!(matches!(&e, PortError::Permanent(m) if m.contains("HostedCluster") && m.contains("metadata.name")), "{e:?}");

    // 409 on the patch: retried once, then transient like every 409 of this adapter.
    let hc = format!("{HOSTED_CLUSTERS}/example");
    let pause = json!({"metadata": {"annotations": {"drctl.openshift.io/paused-by": "run-0001"}}, "spec": {"pausedUntil": "true"}});
    let conflict = "Operation cannot be fulfilled on hostedclusters.hypershift.openshift.io \"example\": the object has been modified; please apply your changes to the latest version and try again";
    mock.expect_all([
        Expect::merge_patch(&hc, pause.clone()).query(&[FM]).fail(409, "Conflict", conflict),
        Expect::merge_patch(&hc, pause.clone()).query(&[FM]).reply(200, pausable("HostedCluster", "example", None, true)),
    ]);
    api.set_hosted_cluster_paused("clusters", "example", Some("true"), Some("run-0001")).unwrap();
    mock.expect_all([
        Expect::merge_patch(&hc, pause.clone()).query(&[FM]).fail(409, "Conflict", conflict),
        Expect::merge_patch(&hc, pause.clone()).query(&[FM]).fail(409, "Conflict", conflict),
    ]);
    let e = api.set_hosted_cluster_paused("clusters", "example", Some("true"), Some("run-0001")).unwrap_err();
    assert!(matches!(&e, PortError::Transient(m) if m.contains("409") && m.contains("the object has been modified")), "{e:?}");
    // Patching a pool that is gone is NotFound; an invalid value is permanent.
    let np = format!("{NODE_POOLS}/gone");
    mock.expect(Expect::merge_patch(&np, pause.clone()).query(&[FM]).fail(
        404,
        "NotFound",
        "nodepools.hypershift.openshift.io \"gone\" not found",
    ));
    assert!(matches!(api.set_node_pool_paused("clusters", "gone", Some("true"), Some("run-0001")), Err(PortError::NotFound(_))));
    mock.expect(Expect::merge_patch(&hc, pause).query(&[FM]).fail(
        422,
        "Invalid",
        "HostedCluster.hypershift.openshift.io \"example\" is invalid: spec.pausedUntil: Invalid value",
    ));
    assert!(matches!(
        api.set_hosted_cluster_paused("clusters", "example", Some("true"), Some("run-0001")),
        Err(PortError::Permanent(m)) if m.contains("422")
    ));
    mock.verify();
}

/// Every failure the classification table lists, produced by the wire.
#[test]
fn failures_are_classified_end_to_end() {
    let mut mock = MockApi::start();
    let api = api(&mock);
    let transient = |r: Result<(), PortError>| matches!(r, Err(PortError::Transient(_)));
    let list = || api.list_nodes().map(|_| ());

    mock.expect(Expect::get("/api/v1/nodes").fail(503, "ServiceUnavailable", "etcdserver: request timed out"));
    let e = list().unwrap_err();
    assert!(matches!(&e, PortError::Transient(m) if m.contains("503") && m.contains("request timed out")), "{e:?}");
    mock.expect(Expect::get("/api/v1/nodes").fail(
        429,
        "TooManyRequests",
        "the server has received too many requests and has asked us to try again later",
    ));
    assert!(transient(list()));
    mock.expect(Expect::get("/api/v1/nodes").fail(500, "InternalError", "Internal error occurred: etcdserver: leader changed"));
    assert!(transient(list()));
    mock.expect(Expect::get("/api/v1/nodes").fail(504, "Timeout", "Timeout: request did not complete within requested timeout"));
    assert!(transient(list()));
    mock.expect(Expect::get("/api/v1/nodes").reply_text(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"));
    assert!(transient(list()));
    mock.expect(Expect::get("/api/v1/nodes").fail(
        403,
        "Forbidden",
        "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\"",
    ));
    assert!(matches!(list(), Err(PortError::Permanent(m)) if m.contains("403")));
    mock.expect(Expect::get("/api/v1/nodes").fail(400, "BadRequest", "bad request"));
    assert!(matches!(list(), Err(PortError::Permanent(_))));
    mock.expect(Expect::get(ETCD).fail(404, "NotFound", "etcds.operator.openshift.io \"cluster\" not found"));
    assert!(matches!(api.quorum_guard_enabled(), Err(PortError::NotFound(_))));

    // 409 on the approval: re-read and retry once, then it is transient.
    let c =
        csr("csr-2s94x", "kubernetes.io/kubelet-serving", "system:node:ip-10-0-164-97.ec2.internal", "ip-10-0-164-97.ec2.internal", false);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr-2s94x";
    let conflict = "Operation cannot be fulfilled on certificatesigningrequests.certificates.k8s.io \"csr-2s94x\": the object has been modified; please apply your changes to the latest version and try again";
    mock.expect_all([
        Expect::get(path).reply(200, c.clone()),
        Expect::put(&format!("{path}/approval"), approved(&c)).query(&[FM]).fail(409, "Conflict", conflict),
        Expect::get(path).reply(200, c.clone()),
        Expect::put(&format!("{path}/approval"), approved(&c)).query(&[FM]).reply(200, approved(&c)),
    ]);
    api.approve_csr("csr-2s94x").unwrap();
    mock.expect_all([
        Expect::get(path).reply(200, c.clone()),
        Expect::put(&format!("{path}/approval"), approved(&c)).query(&[FM]).fail(409, "Conflict", conflict),
        Expect::get(path).reply(200, c.clone()),
        Expect::put(&format!("{path}/approval"), approved(&c)).query(&[FM]).fail(409, "Conflict", conflict),
    ]);
    assert!(transient(api.approve_csr("csr-2s94x")));
    // A 409 on a merge patch is retried once too.
    let off = json!({"spec": {"unsupportedConfigOverrides": {"useUnsupportedUnsafeNonHANonProductionUnstableEtcd": true}}});
    mock.expect_all([
        Expect::merge_patch(ETCD, off.clone()).query(&[FM]).fail(409, "Conflict", "the object has been modified"),
        Expect::merge_patch(ETCD, off).query(&[FM]).reply(200, json!({"metadata": {"name": "cluster"}})),
    ]);
    api.set_quorum_guard(false).unwrap();
    mock.expect(Expect::get(path).fail(404, "NotFound", "certificatesigningrequests.certificates.k8s.io \"csr-2s94x\" not found"));
    assert!(matches!(api.approve_csr("csr-2s94x"), Err(PortError::NotFound(_))));
    mock.verify();

    // The API server goes away: connection refused is transient.
    mock.stop();
    let e = list().unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(
        api.delete_machine("clustername-8qw5l-master-0").unwrap_err().is_transient(),
        "a delete that cannot reach the server is not done"
    );
}

#[test]
fn a_slow_api_server_is_a_transient_timeout() {
    let mock = MockApi::start();
    let rt = Blocking::dedicated("kube-slow").unwrap();
    let mut config = rt
        .block_on(kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(mock.kubeconfig()).unwrap(),
            &kube::config::KubeConfigOptions { context: Some("admin".into()), ..Default::default() },
        ))
        .unwrap();
    config.read_timeout = Some(Duration::from_millis(300));
    let api = KubeApi::from_config(rt, config).unwrap();
    mock.expect(
        Expect::get("/api/v1/nodes")
            .reply(200, json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": []}))
            .after(Duration::from_secs(2)),
    );
    let e = api.list_nodes().unwrap_err();
    assert!(matches!(&e, PortError::Transient(m) if m.contains("timed out")), "{e:?}");
}

#[test]
fn kubeconfig_comes_from_kubeconfig_env_with_its_contexts() {
    let mock = MockApi::start();
    let kc = mock.kubeconfig();
    // The only test in this binary that touches KUBECONFIG; the others pass a path.
    std::env::set_var("KUBECONFIG", &kc);
    let rt = Blocking::dedicated("kube-env").unwrap();
    let admin = KubeApi::connect(rt.clone(), None, Some("admin")).unwrap();
    mock.expect(Expect::get("/api/v1/nodes").reply(200, json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": []})));
    assert_eq!(admin.list_nodes().unwrap(), vec![]);
    // The current context points at a server that is not there.
    let stale = KubeApi::connect(rt.clone(), None, None).unwrap();
    assert!(stale.list_nodes().unwrap_err().is_transient());
    // An unknown context is a configuration error: permanent, named.
    let e = KubeApi::connect(rt, None, Some("nope")).err().unwrap();
    assert!(matches!(&e, PortError::Permanent(m) if m.contains("nope")), "{e:?}");
    std::env::remove_var("KUBECONFIG");
    mock.verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_a_spawn_blocking_thread_on_the_callers_runtime() {
    let mock = tokio::task::spawn_blocking(MockApi::start).await.unwrap();
    let kc = mock.kubeconfig();
    let rt = Blocking::current().unwrap();
    let api = tokio::task::spawn_blocking(move || KubeApi::connect(rt, Some(&kc), Some("admin")).unwrap()).await.unwrap();
    mock.expect(Expect::get("/apis/config.openshift.io/v1/clusterversions/version").reply(200, json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"}, "status": {"desired": {"version": "4.14.9"}}})));
    let v = tokio::task::spawn_blocking(move || api.cluster_version()).await.unwrap();
    assert_eq!(v.unwrap(), "4.14.9");
    mock.verify();
    tokio::task::spawn_blocking(move || drop(mock)).await.unwrap();
}

#[test]
fn unexpected_requests_are_caught_by_the_mock() {
    // The mock is strict: a request nobody expected fails verification.
    let mock = MockApi::start();
    let api = api(&mock);
    let _ = api.list_nodes();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mock.verify()));
    assert!(r.is_err());
    let _ = status_failure(500, "x", "y");
}

#[test]
fn https_clusters_go_through_rustls_and_an_absent_server_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let port = support::free_port();
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://api.cluster.example:{port}\n    insecure-skip-tls-verify: true\n\
             contexts:\n- name: admin\n  context:\n    cluster: c\n    user: u\ncurrent-context: admin\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    let api = KubeApi::connect(Blocking::dedicated("kube-tls").unwrap(), Some(&kc), None).unwrap();
    // api.cluster.example does not resolve: no answer is a passing outage, not a crash.
    let e = api.list_nodes().unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    let kc2 = dir.path().join("kubeconfig-local");
    std::fs::write(&kc2, std::fs::read_to_string(&kc).unwrap().replace("api.cluster.example", "127.0.0.1")).unwrap();
    let api = KubeApi::connect(Blocking::dedicated("kube-tls2").unwrap(), Some(&kc2), None).unwrap();
    let e = api.list_nodes().unwrap_err();
    assert!(matches!(&e, PortError::Transient(m) if m.contains("unreachable")), "{e:?}");
}

/// The calls of the bare metal member replacement (OpenShift Container Platform 4.14 Backup and
/// restore §5.2.4.3) with the objects a real cluster serves and takes.
#[test]
fn bare_metal_hosts_bmc_secrets_and_machine_finalizers() {
    use drctl_workflows::bmc::BmcCredentials;
    use drctl_workflows::ports::NewBareMetalHost;
    let mock = MockApi::start();
    let api = api(&mock);
    let hosts = "/apis/metal3.io/v1alpha1/namespaces/openshift-machine-api/baremetalhosts";
    mock.expect(Expect::get(hosts).reply(200, json!({"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHostList", "metadata": {}, "items": [
        {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
         "metadata": {"name": "openshift-control-plane-0", "namespace": "openshift-machine-api"},
         "spec": {"bmc": {"address": "redfish://10.46.61.16:443/redfish/v1/Systems/1", "credentialsName": "openshift-control-plane-0-bmc-secret"},
                  "bootMACAddress": "48:DF:37:B0:8A:9E", "consumerRef": {"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine", "name": "examplecluster-control-plane-0", "namespace": "openshift-machine-api"},
                  "externallyProvisioned": true, "online": true},
         "status": {"provisioning": {"state": "externally provisioned"}, "poweredOn": true, "operationalStatus": "OK", "errorMessage": "", "errorType": ""}},
        {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
         "metadata": {"name": "openshift-control-plane-2", "namespace": "openshift-machine-api", "deletionTimestamp": "2026-12-03T08:00:00Z"},
         "spec": {"bmc": {"address": "redfish://10.46.61.18:443/redfish/v1/Systems/1", "credentialsName": "openshift-control-plane-2-bmc-secret"},
                  "bootMACAddress": "48:df:37:b0:8a:a0", "online": true},
         "status": {"provisioning": {"state": "registering"}, "poweredOn": false, "operationalStatus": "error",
                    "errorType": "registration error", "errorMessage": "Failed to get power state for node 3354bdac: 401 Unauthorized"}}
    ]})));
    let listed = api.list_bare_metal_hosts().unwrap();
    assert_eq!(listed[0].consumer.as_deref(), Some("examplecluster-control-plane-0"));
    assert_eq!((listed[0].state.as_str(), listed[0].powered_on, listed[0].error.as_deref()), ("externally provisioned", true, None));
    assert_eq!(listed[0].boot_mac_address, "48:df:37:b0:8a:9e");
    assert!(listed[1].deleting && !listed[1].powered_on && listed[1].consumer.is_none());
    assert_eq!(listed[1].error.as_deref(), Some("registration error: Failed to get power state for node 3354bdac: 401 Unauthorized"));

    let new = NewBareMetalHost {
        name: "openshift-control-plane-2".into(),
        bmc_address: "redfish://10.46.61.18:443/redfish/v1/Systems/1".into(),
        boot_mac_address: "48:df:37:b0:8a:a0".into(),
        credentials_name: "openshift-control-plane-2-bmc-secret".into(),
    };
    let body = json!({"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
        "metadata": {"name": "openshift-control-plane-2", "namespace": "openshift-machine-api"},
        "spec": {"automatedCleaningMode": "disabled",
                 "bmc": {"address": "redfish://10.46.61.18:443/redfish/v1/Systems/1", "credentialsName": "openshift-control-plane-2-bmc-secret", "disableCertificateVerification": true},
                 "bootMACAddress": "48:df:37:b0:8a:a0", "bootMode": "UEFI", "externallyProvisioned": false, "online": true,
                 "userData": {"name": "master-user-data-managed", "namespace": "openshift-machine-api"}}});
    mock.expect(Expect::post(hosts, body.clone()).query(&[FM]).reply(201, body.clone()));
    api.create_bare_metal_host(&new).unwrap();
    // Created before (a re-run after a crash): done.
    mock.expect(Expect::post(hosts, body).query(&[FM]).fail(
        409,
        "AlreadyExists",
        "baremetalhosts.metal3.io \"openshift-control-plane-2\" already exists",
    ));
    api.create_bare_metal_host(&new).unwrap();
    mock.expect(Expect::delete(&format!("{hosts}/openshift-control-plane-2")).fail(
        404,
        "NotFound",
        "baremetalhosts.metal3.io \"openshift-control-plane-2\" not found",
    ));
    ClusterApi::delete_bare_metal_host(&api, "openshift-control-plane-2").unwrap();

    let planted = "planted-BMC-c0ffee";
    let creds = BmcCredentials { username: "admin".into(), password: planted.into() };
    let secrets = "/api/v1/namespaces/openshift-machine-api/secrets";
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openshift-control-plane-2-bmc-secret"},
                        "stringData": {"username": "admin", "password": planted}, "type": "Opaque"});
    mock.expect(
        Expect::post(secrets, secret.clone())
            .query(&[FM])
            .reply(201, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openshift-control-plane-2-bmc-secret"}})),
    );
    api.apply_bmc_secret("openshift-control-plane-2-bmc-secret", &creds).unwrap();
    // It exists (a re-run, or a corrected file): its data is replaced.
    mock.expect(Expect::post(secrets, secret.clone()).query(&[FM]).fail(
        409,
        "AlreadyExists",
        "secrets \"openshift-control-plane-2-bmc-secret\" already exists",
    ));
    mock.expect(
        Expect::merge_patch(
            &format!("{secrets}/openshift-control-plane-2-bmc-secret"),
            json!({"stringData": {"username": "admin", "password": planted}}),
        )
        .query(&[FM])
        .reply(200, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openshift-control-plane-2-bmc-secret"}})),
    );
    api.apply_bmc_secret("openshift-control-plane-2-bmc-secret", &creds).unwrap();
    // Refused: the error names the secret, never its content.
    mock.expect(Expect::post(secrets, secret).query(&[FM]).fail(
        403,
        "Forbidden",
        "secrets is forbidden: User \"system:serviceaccount:x:y\" cannot create resource \"secrets\"",
    ));
    let e = api.apply_bmc_secret("openshift-control-plane-2-bmc-secret", &creds).unwrap_err();
    assert!(e.to_string().contains("openshift-control-plane-2-bmc-secret") && !e.to_string().contains(planted), "{e}");

    let machine = "/apis/machine.openshift.io/v1beta1/namespaces/openshift-machine-api/machines/examplecluster-control-plane-2";
    mock.expect(Expect::merge_patch(machine, json!({"metadata": {"finalizers": null}})).query(&[FM]).reply(
        200,
        json!({"apiVersion": "machine.openshift.io/v1beta1", "kind": "Machine", "metadata": {"name": "examplecluster-control-plane-2"}}),
    ));
    api.remove_machine_finalizers("examplecluster-control-plane-2").unwrap();
    mock.expect(Expect::merge_patch(machine, json!({"metadata": {"finalizers": null}})).query(&[FM]).fail(
        404,
        "NotFound",
        "machines.machine.openshift.io \"examplecluster-control-plane-2\" not found",
    ));
    api.remove_machine_finalizers("examplecluster-control-plane-2").unwrap();
    mock.verify();
}

/// The kubelet signer's expiry, as `oc -n openshift-kube-apiserver-operator get secret
/// kube-apiserver-to-kubelet-signer` shows it (4.5 Backup and restore ch.3), read as metadata
/// only: the key material never leaves the API.
#[test]
fn the_kubelet_signer_expiry_is_read_from_its_annotation() {
    let mock = MockApi::start();
    let api = api(&mock);
    let path = "/api/v1/namespaces/openshift-kube-apiserver-operator/secrets/kube-apiserver-to-kubelet-signer";
    let meta = |annotations: Value| {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
               "metadata": {"name": "kube-apiserver-to-kubelet-signer", "namespace": "openshift-kube-apiserver-operator", "annotations": annotations}})
    };
    mock.expect(Expect::get(path).reply(200, meta(json!({"auth.openshift.io/certificate-not-after": "2027-02-03T04:05:06Z"}))));
    assert_eq!(api.kubelet_signer_expiry().unwrap(), drctl_runtime::clock::Timestamp::parse_rfc3339("2027-02-03T04:05:06Z"));
    mock.expect(Expect::get(path).reply(200, meta(json!({}))));
    assert_eq!(api.kubelet_signer_expiry().unwrap(), None);
    mock.expect(Expect::get(path).reply(200, meta(json!({"auth.openshift.io/certificate-not-after": "next spring"}))));
    assert!(matches!(api.kubelet_signer_expiry(), Err(PortError::Permanent(m)) if m.contains("not an RFC 3339 time")));
    mock.expect(Expect::get(path).fail(404, "NotFound", "secrets \"kube-apiserver-to-kubelet-signer\" not found"));
    assert!(matches!(api.kubelet_signer_expiry(), Err(PortError::NotFound(_))));
    mock.verify();
}
