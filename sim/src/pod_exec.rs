//! `etcdctl` in the `etcdctl` container of an etcd pod, as the served API's exec runs it
//! (`oc rsh -n openshift-etcd etcd-<node>`): the argv the kube adapter sends, answered by the
//! same decisions as [`crate::ports::SimEtcd`], printed as etcdctl prints them (`-w json`,
//! `Error: …` on stderr, exit status 1).

use crate::ports::SimEtcd;
use crate::Sim;
use drctl_workflows::ports::{Etcd, EtcdMemberList, PortError};

/// What the command printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutcome {
    fn ok(stdout: String) -> ExecOutcome {
        ExecOutcome { code: 0, stdout, stderr: String::new() }
    }
    fn error(message: &str) -> ExecOutcome {
        ExecOutcome { code: 1, stdout: String::new(), stderr: format!("Error: {message}\n") }
    }
    fn port_error(e: &PortError) -> ExecOutcome {
        match e {
            PortError::Transient(m) | PortError::NotFound(m) | PortError::Permanent(m) => ExecOutcome::error(m),
        }
    }
}

/// The argv after `env K=V …` and etcdctl's global flags (`--dial-timeout=…`, `--endpoints=…`):
/// the command words. `None` when it is not etcdctl, or not the v3 API.
fn etcdctl_words(argv: &[String]) -> Option<Vec<&str>> {
    let mut it = argv.iter().map(String::as_str).peekable();
    if it.peek() == Some(&"env") {
        it.next();
        while let Some(kv) = it.peek().filter(|a| a.contains('=')) {
            if kv.starts_with("ETCDCTL_API=") && *kv != "ETCDCTL_API=3" {
                return None;
            }
            it.next();
        }
    }
    if it.next()? != "etcdctl" {
        return None;
    }
    // The pod's environment names the certificates; endpoints and timeouts are global flags.
    Some(it.filter(|a| !["--dial-timeout=", "--command-timeout=", "--endpoints="].iter().any(|f| a.starts_with(f))).collect())
}

fn header(cluster_id: u64) -> serde_json::Value {
    serde_json::json!({ "cluster_id": cluster_id, "member_id": 0, "raft_term": 2 })
}

pub(crate) fn members_json(list: &EtcdMemberList) -> serde_json::Value {
    let members: Vec<serde_json::Value> = list
        .members
        .iter()
        .map(|m| serde_json::json!({ "ID": m.id, "name": m.name, "peerURLs": m.peer_urls, "clientURLs": m.client_urls }))
        .collect();
    serde_json::json!({ "header": header(list.cluster_id), "members": members })
}

/// Run `argv` in the `etcdctl` container of pod `etcd-<node>` (the pod admitted the exec).
pub fn etcdctl_in_pod(sim: &Sim, argv: &[String]) -> ExecOutcome {
    let etcd = SimEtcd(sim.clone());
    let Some(words) = etcdctl_words(argv) else {
        return ExecOutcome {
            code: 127,
            stdout: String::new(),
            stderr: format!("exec: {:?}: executable file not found in $PATH\n", argv.first()),
        };
    };
    match words.as_slice() {
        ["member", "list", "-w", "json"] => match etcd.member_list() {
            Ok(list) => ExecOutcome::ok(members_json(&list).to_string()),
            Err(e) => ExecOutcome::port_error(&e),
        },
        // The linearizable read the adapter makes before trusting a member list.
        ["get", key, "--keys-only", "-w", "json"] if !key.is_empty() => match etcd.member_list() {
            Ok(list) => ExecOutcome::ok(serde_json::json!({ "header": header(list.cluster_id), "count": 0 }).to_string()),
            Err(e) => ExecOutcome::port_error(&e),
        },
        ["member", "remove", hex, "-w", "json"] => {
            let Ok(id) = u64::from_str_radix(hex, 16) else {
                return ExecOutcome::error(&format!(
                    "bad member ID arg (strconv.ParseUint: parsing \"{hex}\": invalid syntax), expecting ID in Hex"
                ));
            };
            let before = match etcd.member_list() {
                Ok(l) => l,
                Err(e) => return ExecOutcome::port_error(&e),
            };
            if !before.members.iter().any(|m| m.id == id) {
                return ExecOutcome::error("etcdserver: member not found");
            }
            match etcd.member_remove(id).and_then(|_| etcd.member_list()) {
                Ok(after) => ExecOutcome::ok(members_json(&after).to_string()),
                Err(e) => ExecOutcome::port_error(&e),
            }
        }
        ["endpoint", "health", "--cluster", "-w", "json"] => match etcd.endpoint_health() {
            Ok(health) => endpoint_health_json(&health),
            Err(e) => ExecOutcome::port_error(&e),
        },
        _ => ExecOutcome::error(&format!(
            "unknown command {:?} (the simulated etcdctl serves member list/remove, endpoint health, get)",
            words.join(" ")
        )),
    }
}

/// The files the `etcd` container of a hosted etcd pod holds (`../shared/HOSTED.md` §A.2): the
/// client certificate from Secret `etcd-client-tls` (which has carried no CA since late 2022),
/// the CA from ConfigMap `etcd-ca`, the tools.
pub const HOSTED_ETCD_POD_FILES: &[&str] = &[
    "/etc/etcd/tls/client/etcd-client.crt",
    "/etc/etcd/tls/client/etcd-client.key",
    "/etc/etcd/tls/etcd-ca/ca.crt",
    "/etc/etcd/tls/server/server.crt",
    "/etc/etcd/tls/server/server.key",
    "/etc/etcd/tls/peer/peer.crt",
    "/etc/etcd/tls/peer/peer.key",
    "/usr/bin/etcdctl",
    "/usr/bin/etcdutl",
];

/// The certificate files an etcdctl argv names in its environment (`ETCDCTL_CACERT=…`) or flags
/// (`--cacert …`, `--cacert=…`).
fn certificate_paths(argv: &[String]) -> Vec<&str> {
    let mut paths = Vec::new();
    for (i, a) in argv.iter().enumerate() {
        for key in ["ETCDCTL_CACERT=", "ETCDCTL_CERT=", "ETCDCTL_KEY=", "--cacert=", "--cert=", "--key="] {
            if let Some(p) = a.strip_prefix(key) {
                paths.push(p);
            }
        }
        if matches!(a.as_str(), "--cacert" | "--cert" | "--key") {
            if let Some(p) = argv.get(i + 1) {
                paths.push(p.as_str());
            }
        }
    }
    paths
}

/// Run `argv` in the `etcd` container of a hosted etcd pod of HostedCluster `namespace/name`
/// (the exec was admitted: the pod serves). `test -f PATH` answers from the pod's files; etcdctl
/// fails as it does on a certificate path that does not exist, and otherwise answers
/// `member list` and `endpoint health --cluster` from the members.
pub fn hosted_etcdctl_in_pod(sim: &Sim, namespace: &str, name: &str, argv: &[String]) -> ExecOutcome {
    if let [test, flag, path] = argv {
        if test == "test" && matches!(flag.as_str(), "-f" | "-x") {
            let code = i32::from(!HOSTED_ETCD_POD_FILES.contains(&path.as_str()));
            return ExecOutcome { code, stdout: String::new(), stderr: String::new() };
        }
    }
    let Some(words) = etcdctl_words(argv) else {
        return ExecOutcome {
            code: 127,
            stdout: String::new(),
            stderr: format!("exec: {:?}: executable file not found in $PATH\n", argv.first()),
        };
    };
    if let Some(missing) = certificate_paths(argv).into_iter().find(|p| !HOSTED_ETCD_POD_FILES.contains(p)) {
        return ExecOutcome::error(&format!("open {missing}: no such file or directory"));
    }
    let cpns = drctl_workflows::ports::control_plane_namespace(namespace, name);
    let Some(etcd) = sim.read(|w| w.hosted_etcd(namespace, name).cloned()) else {
        return ExecOutcome::error("context deadline exceeded");
    };
    match words.as_slice() {
        ["member", "list", "-w", "json"] => ExecOutcome::ok(members_json(&etcd.member_list(&cpns)).to_string()),
        ["endpoint", "health", "--cluster", "-w", "json"] => endpoint_health_json(&etcd.endpoint_health(&cpns)),
        _ => ExecOutcome::error(&format!(
            "unknown command {:?} (the simulated etcdctl of a hosted etcd pod serves member list, endpoint health)",
            words.join(" ")
        )),
    }
}

/// `etcdctl endpoint health -w json`: a row per endpoint, exit 1 when one is unhealthy.
fn endpoint_health_json(health: &[drctl_workflows::ports::EndpointHealth]) -> ExecOutcome {
    let rows: Vec<serde_json::Value> = health
        .iter()
        .map(|h| serde_json::json!({ "endpoint": h.endpoint, "health": h.healthy, "took": "9.8ms", "error": h.error.clone().unwrap_or_default() }))
        .collect();
    let unhealthy = health.iter().any(|h| !h.healthy);
    ExecOutcome {
        code: i32::from(unhealthy),
        stdout: serde_json::Value::Array(rows).to_string(),
        stderr: if unhealthy { "Error: unhealthy cluster\n".into() } else { String::new() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_adapter_argv_is_read_past_env_and_timeouts() {
        let a = argv(&["env", "ETCDCTL_API=3", "etcdctl", "--dial-timeout=2s", "--command-timeout=5s", "member", "list", "-w", "json"]);
        assert_eq!(etcdctl_words(&a).unwrap(), ["member", "list", "-w", "json"]);
        assert!(etcdctl_words(&argv(&["env", "ETCDCTL_API=2", "etcdctl", "member", "list"])).is_none());
        assert!(etcdctl_words(&argv(&["sh", "-c", "etcdctl member list"])).is_none());
    }

    #[test]
    fn member_remove_prints_what_is_left_and_refuses_an_unknown_id() {
        let sim = Sim::scenario("member-machine-stopped", 1).unwrap();
        let victim = crate::scenario::member_victim(1);
        let id = sim.read(|w| w.hosts[&victim].etcd_data.unwrap().member_id);
        let remove = |id: u64| etcdctl_in_pod(&sim, &argv(&["etcdctl", "member", "remove", &format!("{id:x}"), "-w", "json"]));
        let out = remove(id);
        assert_eq!(out.code, 0, "{out:?}");
        let left: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(left["members"].as_array().unwrap().len(), 2);
        let again = remove(id);
        assert_eq!((again.code, again.stderr.as_str()), (1, "Error: etcdserver: member not found\n"));
        let health = etcdctl_in_pod(&sim, &argv(&["etcdctl", "endpoint", "health", "--cluster", "-w", "json"]));
        assert_eq!(health.code, 0, "{health:?}");
    }
}
