//! [`Etcd`] through `etcdctl -w json` (API v3), as the runbooks use it, over an exec channel:
//! a local process ([`LocalExec`]), a control-plane host over SSH ([`SshExec`], reusing the
//! [`SshHosts`] session), or the `etcdctl` container of an etcd pod through the Kubernetes exec
//! API ([`PodExec`], like `oc rsh`).
//!
//! JSON output carries member and cluster ids as numbers (tables print them in hex; so does
//! `member remove`, which takes the hex id). Failures are classified by [`classify_etcdctl`]:
//! losing quorum or a member reads as transient, "member not found" on a remove is success.

use crate::blocking::Blocking;
use crate::shell::join;
use crate::ssh::{ExecOutput, SshHosts};
use drctl_workflows::ports::{EndpointHealth, Etcd, EtcdMember, EtcdMemberList, PortError, PortResult, SnapshotStatus};
use serde::Deserialize;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Exec channels
// ---------------------------------------------------------------------------------------------

/// Somewhere `etcdctl` can run. `run` fails only when the channel itself fails (classified);
/// a command that ran and exited non-zero is an `Ok` with its status.
pub trait ExecChannel: Send + Sync {
    fn run(&self, argv: &[String], env: &[(String, String)], timeout: Duration) -> PortResult<ExecOutput>;
    /// For messages: `local`, `ssh master-0`, `pod openshift-etcd/etcd-…`.
    fn describe(&self) -> String;
}

/// `etcdctl` as a local process (the operator's machine reaches the etcd endpoints directly).
#[derive(Debug, Default, Clone)]
pub struct LocalExec;

impl ExecChannel for LocalExec {
    // A real subprocess timeout measured in real time.
    #[allow(clippy::disallowed_methods)]
    fn run(&self, argv: &[String], env: &[(String, String)], timeout: Duration) -> PortResult<ExecOutput> {
        let (prog, args) = argv.split_first().ok_or_else(|| PortError::Permanent("empty command".into()))?;
        let mut child = Command::new(prog)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    PortError::Permanent(format!("{prog}: not installed or not on PATH"))
                } else {
                    PortError::Permanent(format!("{prog}: {e}"))
                }
            })?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let t_out = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let t_err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        let deadline = Instant::now() + timeout;
        // Bounded by `timeout`: past it the process is killed.
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(PortError::Permanent(format!("{prog}: wait: {e}"))),
            }
        };
        let stdout = t_out.join().unwrap_or_default();
        let stderr = t_err.join().unwrap_or_default();
        match status {
            Some(st) => Ok(ExecOutput { code: st.code().unwrap_or(-1), stdout, stderr }),
            None => Err(PortError::Transient(format!("{prog} did not finish within {timeout:?}"))),
        }
    }

    fn describe(&self) -> String {
        "local".into()
    }
}

/// `etcdctl` on a control-plane host, over its SSH session (with `sudo` when the host's layout
/// says so: the etcd client certificates are root's).
pub struct SshExec {
    hosts: SshHosts,
    host: String,
}

impl SshExec {
    pub fn new(hosts: SshHosts, host: impl Into<String>) -> Self {
        SshExec { hosts, host: host.into() }
    }
}

/// The command line for `argv` with `env` on a host: `[sudo] env K=V … argv…`, all quoted.
pub fn remote_command_line(argv: &[String], env: &[(String, String)], sudo: bool) -> String {
    let mut words: Vec<String> = Vec::new();
    if sudo {
        words.push("sudo".into());
    }
    if !env.is_empty() {
        words.push("env".into());
        words.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend(argv.iter().cloned());
    join(words)
}

impl ExecChannel for SshExec {
    fn run(&self, argv: &[String], env: &[(String, String)], timeout: Duration) -> PortResult<ExecOutput> {
        let sudo = self.hosts.host(&self.host)?.layout.sudo;
        let cmd = remote_command_line(argv, env, sudo);
        // Every etcdctl call we make is repeatable (reads; remove/add/save are idempotent here).
        self.hosts.exec(&self.host, &cmd, true, timeout)
    }

    fn describe(&self) -> String {
        format!("ssh {}", self.host)
    }
}

/// `etcdctl` inside a container of an etcd pod through the exec API (`oc rsh -n openshift-etcd
/// etcd-<node>`; container `etcdctl`, whose environment already names the endpoints and
/// certificates).
pub struct PodExec {
    client: kube::Client,
    rt: Blocking,
    namespace: String,
    pod: String,
    container: String,
}

impl PodExec {
    pub fn new(
        client: kube::Client,
        rt: Blocking,
        namespace: impl Into<String>,
        pod: impl Into<String>,
        container: impl Into<String>,
    ) -> Self {
        PodExec { client, rt, namespace: namespace.into(), pod: pod.into(), container: container.into() }
    }
}

/// The exec API takes no environment: `env K=V etcdctl …` carries it.
pub fn pod_exec_argv(argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let mut v = Vec::with_capacity(argv.len() + env.len() + 1);
    if !env.is_empty() {
        v.push("env".to_string());
        v.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    v.extend(argv.iter().cloned());
    v
}

/// The exit code from the exec API's final `Status` (`Success`, or `NonZeroExitCode` with an
/// `ExitCode` cause).
pub fn exit_code_of_status(s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> i32 {
    let Some(s) = s else { return -1 };
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(1)
}

/// A final `Status` that is a failure without an `ExitCode` cause: the command never ran. Newer
/// API servers report a refused exec (a container not running, the runtime failing to start the
/// process) that way, after the upgrade, instead of refusing the upgrade itself. A missing
/// executable stays missing (permanent); anything else passes with the container (transient).
pub fn command_not_run(s: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> Option<PortError> {
    let s = s?;
    if s.status.as_deref() == Some("Success") || s.reason.as_deref() == Some("NonZeroExitCode") {
        return None;
    }
    let has_exit_code =
        s.details.as_ref().and_then(|d| d.causes.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.reason.as_deref() == Some("ExitCode")));
    if has_exit_code {
        return None;
    }
    let message = format!("{}: {}", s.reason.as_deref().unwrap_or("Failure"), s.message.as_deref().unwrap_or("the command did not run"));
    Some(match message.contains("executable file not found") {
        true => PortError::Permanent(message),
        false => PortError::Transient(message),
    })
}

impl ExecChannel for PodExec {
    fn run(&self, argv: &[String], env: &[(String, String)], timeout: Duration) -> PortResult<ExecOutput> {
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, AttachParams};
        use tokio::io::AsyncReadExt;
        let cmd = pod_exec_argv(argv, env);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let ap = AttachParams::default().container(self.container.clone()).stdin(false).stdout(true).stderr(true);
        let what = format!("exec in pod {}/{}", self.namespace, self.pod);
        let fut = async {
            let mut proc = api.exec(&self.pod, cmd, &ap).await?;
            let mut out = proc.stdout().expect("stdout requested");
            let mut err = proc.stderr().expect("stderr requested");
            let status = proc.take_status().expect("status taken once");
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let _ = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
            let st = status.await;
            let _ = proc.join().await;
            let code = exit_code_of_status(st.as_ref());
            Ok::<_, kube::Error>((st, ExecOutput { code, stdout: o, stderr: e }))
        };
        match self.rt.block_on(async { tokio::time::timeout(timeout, fut).await }) {
            Err(_) => Err(PortError::Transient(format!("{what}: no answer within {timeout:?}"))),
            // A container that cannot be entered now (crash-looping, not scheduled) is passing
            // trouble, for the standalone etcd pods as for a hosted control plane's.
            Ok(Err(e)) => Err(match crate::kube::classify_exec_error(&e) {
                PortError::Transient(m) => PortError::Transient(format!("{what}: {m}")),
                PortError::NotFound(m) => PortError::NotFound(format!("{what}: {m}")),
                PortError::Permanent(m) => PortError::Permanent(format!("{what}: {m}")),
            }),
            Ok(Ok((st, out))) => match command_not_run(st.as_ref()) {
                Some(PortError::Transient(m)) => Err(PortError::Transient(format!("{what}: {m}"))),
                Some(PortError::Permanent(m) | PortError::NotFound(m)) => Err(PortError::Permanent(format!("{what}: {m}"))),
                None => Ok(out),
            },
        }
    }

    fn describe(&self) -> String {
        format!("pod {}/{}", self.namespace, self.pod)
    }
}

// ---------------------------------------------------------------------------------------------
// Classification and parsing (pure)
// ---------------------------------------------------------------------------------------------

/// What etcdctl says when the cluster (or the way to it) is passing trouble.
const TRANSIENT: &[&str] = &[
    "context deadline exceeded",
    "deadlineexceeded",
    "etcdserver: request timed out",
    "etcdserver: no leader",
    "etcdserver: leader changed",
    "etcdserver: too many requests",
    "etcdserver: server stopped",
    "etcdserver: not capable",
    "etcdserver: unhealthy cluster",
    "unhealthy cluster",
    "re-configuration failed due to not enough started members",
    "connection refused",
    "connection reset",
    "transport is closing",
    "error reading from server: eof",
    "i/o timeout",
    "code = unavailable",
];

/// The one classification of etcdctl failures (`stderr` of a non-zero exit).
pub fn classify_etcdctl(stderr: &str) -> PortError {
    let lower = stderr.to_ascii_lowercase();
    let text = last_error_line(stderr);
    if TRANSIENT.iter().any(|p| lower.contains(p)) {
        PortError::Transient(format!("etcd: {text}"))
    } else if lower.contains("no such file or directory") {
        PortError::NotFound(format!("etcd: {text}"))
    } else {
        PortError::Permanent(format!("etcd: {text}"))
    }
}

/// etcdctl logs JSON lines before its `Error: …`; the last `Error:` line is the message.
fn last_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim()
        .to_string()
}

pub fn is_member_not_found(stderr: &str) -> bool {
    stderr.to_ascii_lowercase().contains("member not found")
}

pub fn is_peer_url_exists(stderr: &str) -> bool {
    stderr.to_ascii_lowercase().contains("peer urls already exists")
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    cluster_id: u64,
}

#[derive(Deserialize)]
struct RawMember {
    #[serde(rename = "ID")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
}

#[derive(Deserialize)]
struct RawMemberList {
    header: RawHeader,
    #[serde(default)]
    members: Vec<RawMember>,
}

/// `etcdctl member list -w json` (also the `members` of `member add`/`member remove`).
pub fn parse_member_list(stdout: &str) -> PortResult<EtcdMemberList> {
    let raw: RawMemberList = serde_json::from_str(json_part(stdout))
        .map_err(|e| PortError::Permanent(format!("etcdctl member list: {e}: {}", stdout.trim())))?;
    let mut members: Vec<EtcdMember> = raw
        .members
        .into_iter()
        .map(|m| EtcdMember { id: m.id, name: m.name, peer_urls: m.peer_urls, client_urls: m.client_urls, is_learner: m.is_learner })
        .collect();
    members.sort_by_key(|m| m.id);
    Ok(EtcdMemberList { cluster_id: raw.header.cluster_id, members })
}

/// `etcdctl endpoint health -w json`: one object per endpoint (an unhealthy one carries
/// `error`); the exit status is non-zero when any is unhealthy, the JSON is still there.
pub fn parse_endpoint_health(stdout: &str) -> PortResult<Vec<EndpointHealth>> {
    #[derive(Deserialize)]
    struct Raw {
        endpoint: String,
        health: bool,
        #[serde(default)]
        error: Option<String>,
    }
    let raw: Vec<Raw> = serde_json::from_str(json_part(stdout))
        .map_err(|e| PortError::Permanent(format!("etcdctl endpoint health: {e}: {}", stdout.trim())))?;
    Ok(raw
        .into_iter()
        .map(|r| EndpointHealth { endpoint: r.endpoint, healthy: r.health, error: r.error.filter(|e| !e.is_empty()) })
        .collect())
}

/// `etcdctl snapshot status -w json`.
pub fn parse_snapshot_status(stdout: &str) -> PortResult<SnapshotStatus> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        hash: u64,
        revision: u64,
        total_key: u64,
        total_size: u64,
    }
    let r: Raw = serde_json::from_str(json_part(stdout))
        .map_err(|e| PortError::Permanent(format!("etcdctl snapshot status: {e}: {}", stdout.trim())))?;
    Ok(SnapshotStatus { hash: r.hash, revision: r.revision, total_key: r.total_key, total_size: r.total_size })
}

/// One endpoint's `etcdctl endpoint status`: answered by that member alone, so it works
/// without quorum and tells which cluster (id) and leader each member believes in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub cluster_id: Option<u64>,
    pub member_id: Option<u64>,
    /// The leader this member follows; `None` (or 0 in etcd's JSON) while it knows none.
    pub leader: Option<u64>,
    pub raft_term: Option<u64>,
    pub version: Option<String>,
    pub db_size: Option<u64>,
    pub is_learner: bool,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// `etcdctl endpoint status -w json` for `endpoints`: the JSON lists the endpoints that answered;
/// each one that did not is reported on stderr as `Failed to get the status of endpoint <url>
/// (<error>)`. Every endpoint asked for is in the result, in the order asked.
pub fn parse_endpoint_status(endpoints: &[String], stdout: &str, stderr: &str) -> PortResult<Vec<EndpointStatus>> {
    #[derive(Deserialize)]
    struct RawHeader {
        #[serde(default)]
        cluster_id: u64,
        #[serde(default)]
        member_id: u64,
        #[serde(default)]
        raft_term: u64,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawStatus {
        header: RawHeader,
        #[serde(default)]
        version: String,
        #[serde(default)]
        db_size: u64,
        #[serde(default)]
        leader: u64,
        #[serde(default)]
        is_learner: bool,
    }
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "Endpoint")]
        endpoint: String,
        #[serde(rename = "Status")]
        status: RawStatus,
    }
    let body = json_part(stdout);
    let raw: Vec<Raw> = if body.is_empty() {
        vec![]
    } else {
        serde_json::from_str(body).map_err(|e| PortError::Permanent(format!("etcdctl endpoint status: {e}: {}", stdout.trim())))?
    };
    let failed = |ep: &str| -> Option<String> {
        let prefix = format!("Failed to get the status of endpoint {ep} (");
        stderr.lines().find_map(|l| l.trim().strip_prefix(prefix.as_str()).map(|r| r.trim_end_matches(')').to_string()))
    };
    let nz = |v: u64| if v == 0 { None } else { Some(v) };
    let answered = |r: &Raw| EndpointStatus {
        endpoint: r.endpoint.clone(),
        cluster_id: nz(r.status.header.cluster_id),
        member_id: nz(r.status.header.member_id),
        leader: nz(r.status.leader),
        raft_term: nz(r.status.header.raft_term),
        version: Some(r.status.version.clone()).filter(|v| !v.is_empty()),
        db_size: Some(r.status.db_size),
        is_learner: r.status.is_learner,
        error: None,
    };
    let mut out: Vec<EndpointStatus> = Vec::new();
    for ep in endpoints {
        match raw.iter().find(|r| &r.endpoint == ep) {
            Some(r) => out.push(answered(r)),
            None => out.push(EndpointStatus {
                endpoint: ep.clone(),
                cluster_id: None,
                member_id: None,
                leader: None,
                raft_term: None,
                version: None,
                db_size: None,
                is_learner: false,
                error: Some(failed(ep).unwrap_or_else(|| "no answer".into())),
            }),
        }
    }
    // Endpoints from the environment (no list given): whatever answered.
    for r in raw.iter().filter(|r| !endpoints.contains(&r.endpoint)) {
        out.push(answered(r));
    }
    Ok(out)
}

/// The JSON document in etcdctl's stdout: from the first `{` or `[` that starts a line.
fn json_part(stdout: &str) -> &str {
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            return stdout[offset..].trim();
        }
        offset += line.len();
    }
    stdout.trim()
}

// ---------------------------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------------------------

/// Client certificates for `https://` endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub cacert: String,
    pub cert: String,
    pub key: String,
}

/// [`Etcd`] by running etcdctl.
pub struct EtcdCtl {
    channel: Box<dyn ExecChannel>,
    etcdctl: String,
    /// Empty: leave them to the environment (`ETCDCTL_ENDPOINTS` in the etcd pod).
    endpoints: Vec<String>,
    tls: Option<EtcdTls>,
    dial_timeout: Duration,
    command_timeout: Duration,
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl EtcdCtl {
    pub fn new(channel: Box<dyn ExecChannel>, etcdctl: impl Into<String>, endpoints: Vec<String>) -> Self {
        EtcdCtl {
            channel,
            etcdctl: etcdctl.into(),
            endpoints,
            tls: None,
            dial_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(5),
        }
    }

    /// Local `etcdctl` (from `PATH`) against `endpoints`.
    pub fn local(endpoints: Vec<String>) -> Self {
        EtcdCtl::new(Box::new(LocalExec), "etcdctl", endpoints)
    }

    /// `etcdctl` on `host` (its layout's tool directory, `/usr/local/bin` on RHCOS) against
    /// `endpoints`.
    pub fn over_ssh(hosts: &SshHosts, host: &str, endpoints: Vec<String>) -> PortResult<Self> {
        let l = &hosts.host(host)?.layout;
        let etcdctl = match &l.bin_dir {
            Some(d) => format!("{}/etcdctl", d.trim_end_matches('/')),
            None => "/usr/local/bin/etcdctl".to_string(),
        };
        Ok(EtcdCtl::new(Box::new(SshExec::new(hosts.clone(), host)), etcdctl, endpoints))
    }

    /// `etcdctl` in container `etcdctl` of etcd pod `pod` in `openshift-etcd`, endpoints and
    /// certificates from the container's environment.
    pub fn in_pod(kube: &crate::kube::KubeApi, pod: &str) -> Self {
        let ch = PodExec::new(kube.client().clone(), kube.blocking().clone(), "openshift-etcd", pod, "etcdctl");
        EtcdCtl::new(Box::new(ch), "etcdctl", vec![])
    }

    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn with_timeouts(mut self, dial: Duration, command: Duration) -> Self {
        self.dial_timeout = dial;
        self.command_timeout = command;
        self
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn describe(&self) -> String {
        self.channel.describe()
    }

    /// The full argv for `args` against `endpoints`. Pure.
    pub fn argv(&self, endpoints: &[String], args: &[&str]) -> Vec<String> {
        let mut v = vec![self.etcdctl.clone()];
        if !endpoints.is_empty() {
            v.push(format!("--endpoints={}", endpoints.join(",")));
        }
        v.push(format!("--dial-timeout={}", secs(self.dial_timeout)));
        v.push(format!("--command-timeout={}", secs(self.command_timeout)));
        if let Some(t) = &self.tls {
            v.push(format!("--cacert={}", t.cacert));
            v.push(format!("--cert={}", t.cert));
            v.push(format!("--key={}", t.key));
        }
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    fn env() -> Vec<(String, String)> {
        vec![("ETCDCTL_API".into(), "3".into())]
    }

    /// Run and return the raw output (any exit status). The channel's own failures are errors.
    fn raw(&self, endpoints: &[String], args: &[&str]) -> PortResult<ExecOutput> {
        let argv = self.argv(endpoints, args);
        // The channel gets a little longer than etcdctl's own bound, so etcdctl's message wins.
        let bound = self.dial_timeout + self.command_timeout + Duration::from_secs(10);
        let out = self.channel.run(&argv, &Self::env(), bound)?;
        tracing::debug!(channel = %self.channel.describe(), argv = ?argv, code = out.code, "etcdctl");
        Ok(out)
    }

    /// Run; a non-zero exit is classified.
    fn run(&self, args: &[&str]) -> PortResult<String> {
        let out = self.raw(&self.endpoints, args)?;
        if out.code == 0 {
            Ok(out.stdout_str())
        } else {
            Err(classify_etcdctl(&out.stderr_str()))
        }
    }

    /// `member list` as the member etcdctl reaches answers it, WITHOUT the linearizable read
    /// [`Etcd::member_list`] makes first: etcd 3.4 serves it from that member's own view, so it
    /// answers without quorum (and may be stale). For showing a broken cluster, not for acting.
    /// `etcdctl endpoint health --cluster`: every member of the cluster, found through the
    /// configured endpoints (unhealthy ones included, as JSON).
    pub fn endpoint_health_cluster(&self) -> PortResult<Vec<EndpointHealth>> {
        let out = self.raw(&self.endpoints, &["endpoint", "health", "--cluster", "-w", "json"])?;
        match parse_endpoint_health(&out.stdout_str()) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ if out.code != 0 => Err(classify_etcdctl(&out.stderr_str())),
            other => other,
        }
    }

    pub fn member_list_local(&self) -> PortResult<EtcdMemberList> {
        parse_member_list(&self.run(&["member", "list", "-w", "json"])?)
    }

    /// `endpoint status` of every endpoint (see [`parse_endpoint_status`]); an endpoint that does
    /// not answer is in the result with its error. Fails only when etcdctl itself cannot run.
    pub fn endpoint_status(&self) -> PortResult<Vec<EndpointStatus>> {
        let out = self.raw(&self.endpoints, &["endpoint", "status", "-w", "json"])?;
        let stderr = out.stderr_str();
        let parsed = parse_endpoint_status(&self.endpoints, &out.stdout_str(), &stderr);
        match parsed {
            Ok(v) if !v.is_empty() => Ok(v),
            _ if out.code != 0 => Err(classify_etcdctl(&stderr)),
            other => other,
        }
    }

    /// etcdctl 3.4 `snapshot restore` into a new data dir: a new single-member-or-more cluster
    /// with a new cluster id. Offline (no endpoints). Refuses an existing `data_dir`.
    pub fn snapshot_restore(
        &self,
        snapshot: &str,
        data_dir: &str,
        name: &str,
        initial_cluster: &str,
        initial_advertise_peer_urls: &str,
    ) -> PortResult<()> {
        let args = [
            "snapshot",
            "restore",
            snapshot,
            "--data-dir",
            data_dir,
            "--name",
            name,
            "--initial-cluster",
            initial_cluster,
            "--initial-advertise-peer-urls",
            initial_advertise_peer_urls,
        ];
        let out = self.raw(&[], &args)?;
        if out.code == 0 {
            Ok(())
        } else {
            Err(classify_etcdctl(&out.stderr_str()))
        }
    }
}

impl Etcd for EtcdCtl {
    fn member_list(&self) -> PortResult<EtcdMemberList> {
        // etcd 3.4 answers `member list` from the local member even without quorum; a
        // linearizable read first makes the answer one the cluster agrees on.
        self.run(&["get", "drctl-quorum-probe", "--keys-only", "-w", "json"])?;
        parse_member_list(&self.run(&["member", "list", "-w", "json"])?)
    }

    fn member_remove(&self, id: u64) -> PortResult<()> {
        let hex = format!("{id:x}");
        let out = self.raw(&self.endpoints, &["member", "remove", &hex, "-w", "json"])?;
        if out.code == 0 || is_member_not_found(&out.stderr_str()) {
            Ok(())
        } else {
            Err(classify_etcdctl(&out.stderr_str()))
        }
    }

    fn member_add(&self, name: &str, peer_url: &str) -> PortResult<EtcdMemberList> {
        // Observe first: added before (a re-run) is done. Asking again would not say so: with
        // the new member not started yet, etcd 3.4 refuses any add as "unhealthy cluster".
        let list = self.member_list()?;
        if let Some(m) = list.members.iter().find(|m| m.peer_urls.iter().any(|u| u == peer_url)) {
            return if m.name.is_empty() || m.name == name {
                Ok(list)
            } else {
                Err(PortError::Permanent(format!("etcd: peer URL {peer_url} already belongs to member {} ({:x})", m.name, m.id)))
            };
        }
        let peer = format!("--peer-urls={peer_url}");
        let out = self.raw(&self.endpoints, &["member", "add", name, &peer, "-w", "json"])?;
        if out.code == 0 {
            return parse_member_list(&out.stdout_str());
        }
        if is_peer_url_exists(&out.stderr_str()) {
            // Added before (a re-run): fine if it is the same member.
            let list = self.member_list()?;
            let same = list.members.iter().any(|m| m.peer_urls.iter().any(|u| u == peer_url) && (m.name.is_empty() || m.name == name));
            return if same {
                Ok(list)
            } else {
                Err(PortError::Permanent(format!("etcd: peer URL {peer_url} already belongs to another member")))
            };
        }
        Err(classify_etcdctl(&out.stderr_str()))
    }

    fn endpoint_health(&self) -> PortResult<Vec<EndpointHealth>> {
        let out = self.raw(&self.endpoints, &["endpoint", "health", "-w", "json"])?;
        // Unhealthy endpoints make the exit status 1 but still print their JSON.
        match parse_endpoint_health(&out.stdout_str()) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ if out.code != 0 => Err(classify_etcdctl(&out.stderr_str())),
            other => other,
        }
    }

    fn snapshot_save(&self, path: &str) -> PortResult<SnapshotStatus> {
        // A snapshot is taken from exactly one endpoint: the first that answers.
        let candidates: Vec<Vec<String>> =
            if self.endpoints.is_empty() { vec![vec![]] } else { self.endpoints.iter().map(|e| vec![e.clone()]).collect() };
        let mut last = None;
        for eps in &candidates {
            let out = self.raw(eps, &["snapshot", "save", path])?;
            if out.code == 0 {
                return self.snapshot_status(path);
            }
            let e = classify_etcdctl(&out.stderr_str());
            if !e.is_transient() {
                return Err(e);
            }
            last = Some(e);
        }
        Err(last.unwrap_or_else(|| PortError::Transient("etcd: no endpoint to take a snapshot from".into())))
    }

    fn snapshot_status(&self, path: &str) -> PortResult<SnapshotStatus> {
        let out = self.raw(&[], &["snapshot", "status", path, "-w", "json"])?;
        if out.code != 0 {
            return Err(classify_etcdctl(&out.stderr_str()));
        }
        parse_snapshot_status(&out.stdout_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_that_cannot_be_entered_now_is_passing_trouble() {
        let refused = |code: u16, message: &str| {
            let status = serde_json::json!({"status": "Failure", "code": code, "reason": "BadRequest", "message": message});
            kube::Error::Api(Box::new(serde_json::from_value(status).expect("a Status")))
        };
        for m in [
            "unable to upgrade connection: container not found (\"etcd\")",
            "pod etcd-0 does not have a host assigned",
            "cannot exec into a container in a completed pod; current phase is Failed",
        ] {
            assert!(matches!(crate::kube::classify_exec_error(&refused(400, m)), PortError::Transient(_)), "{m}");
        }
        let forbidden = refused(403, "pods \"etcd-0\" is forbidden: User \"u\" cannot create resource \"pods/exec\"");
        assert!(matches!(crate::kube::classify_exec_error(&forbidden), PortError::Permanent(_)));
    }

    #[test]
    fn classification_table() {
        #[derive(Debug, PartialEq)]
        enum C {
            T,
            N,
            P,
        }
        let warn = r#"{"level":"warn","ts":"2024-01-01T00:00:00.000Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-1/127.0.0.1:2379","attempt":0,"error":"rpc error: code = DeadlineExceeded desc = context deadline exceeded"}"#;
        let table = [
            (format!("{warn}\nError: context deadline exceeded"), C::T),
            ("Error: etcdserver: request timed out".to_string(), C::T),
            ("Error: etcdserver: no leader".to_string(), C::T),
            ("Error: etcdserver: leader changed".to_string(), C::T),
            ("Error: dial tcp 127.0.0.1:2379: connect: connection refused".to_string(), C::T),
            ("Error: unhealthy cluster".to_string(), C::T),
            ("Error: etcdserver: unhealthy cluster".to_string(), C::T),
            ("Error: etcdserver: re-configuration failed due to not enough started members".to_string(), C::T),
            ("Error: rpc error: code = Unavailable desc = transport is closing".to_string(), C::T),
            ("Error: stat /tmp/nope.db: no such file or directory".to_string(), C::N),
            ("Error: etcdserver: member not found".to_string(), C::P),
            ("Error: etcdserver: Peer URLs already exists".to_string(), C::P),
            ("Error: data-dir \"/var/lib/etcd\" exists".to_string(), C::P),
            ("Error: etcdserver: permission denied".to_string(), C::P),
            ("Error: bad member ID arg (strconv.ParseUint: parsing \"zz\": invalid syntax), expecting ID in Hex".to_string(), C::P),
        ];
        for (stderr, want) in table {
            let got = match classify_etcdctl(&stderr) {
                PortError::Transient(_) => C::T,
                PortError::NotFound(_) => C::N,
                PortError::Permanent(_) => C::P,
            };
            assert_eq!(got, want, "{stderr}");
        }
        // The message is etcdctl's own last line, not its log noise.
        assert_eq!(
            classify_etcdctl(&format!("{warn}\nError: context deadline exceeded")),
            PortError::Transient("etcd: Error: context deadline exceeded".into())
        );
        assert!(is_member_not_found("Error: etcdserver: member not found"));
    }

    #[test]
    fn parses_member_list_json_with_numeric_ids() {
        // The seed's members (hex 6fc1e7c9db35841d, 757b6793e2408b6c, ca8c2990a0aa29d1; cluster
        // ead669ce1fbfb346) as etcdctl prints them with -w json.
        let json = format!(
            r#"{{"header":{{"cluster_id":{},"member_id":{},"raft_term":9}},"members":[{{"ID":{},"name":"ip-10-0-164-97.ec2.internal","peerURLs":["https://10.0.164.97:2380"],"clientURLs":["https://10.0.164.97:2379"]}},{{"ID":{},"name":"ip-10-0-131-183.ec2.internal","peerURLs":["https://10.0.131.183:2380"],"clientURLs":["https://10.0.131.183:2379"]}},{{"ID":{},"name":"ip-10-0-154-204.ec2.internal","peerURLs":["https://10.0.154.204:2380"],"clientURLs":["https://10.0.154.204:2379"],"isLearner":true}}]}}"#,
            0xead669ce1fbfb346u64, 0xca8c2990a0aa29d1u64, 0x757b6793e2408b6cu64, 0x6fc1e7c9db35841du64, 0xca8c2990a0aa29d1u64
        );
        let l = parse_member_list(&json).unwrap();
        assert_eq!(l.cluster_id, 0xead669ce1fbfb346);
        assert_eq!(format!("{:x}", l.members[0].id), "6fc1e7c9db35841d");
        assert_eq!(l.members[0].name, "ip-10-0-131-183.ec2.internal");
        assert_eq!(l.members.len(), 3);
        assert!(l.members[2].is_learner);
        // An added, not yet started member has no name and no client URLs.
        let unstarted =
            r#"{"header":{"cluster_id":1,"member_id":2,"raft_term":3},"members":[{"ID":5,"peerURLs":["http://127.0.0.1:2380"]}]}"#;
        let l = parse_member_list(unstarted).unwrap();
        assert_eq!(l.members[0].name, "");
        assert!(l.members[0].client_urls.is_empty());
    }

    #[test]
    fn parses_endpoint_health_and_snapshot_status() {
        let h = r#"[{"endpoint":"http://127.0.0.1:2379","health":true,"took":"1.9ms"},{"endpoint":"http://127.0.0.1:22379","health":false,"took":"5.0s","error":"context deadline exceeded"}]"#;
        let v = parse_endpoint_health(h).unwrap();
        assert!(v[0].healthy && v[0].error.is_none());
        assert!(!v[1].healthy && v[1].error.as_deref() == Some("context deadline exceeded"));
        let s = parse_snapshot_status(r#"{"hash":3866667823,"revision":31407,"totalKey":12828,"totalSize":114446336}"#).unwrap();
        assert_eq!(s, SnapshotStatus { hash: 3866667823, revision: 31407, total_key: 12828, total_size: 114446336 });
    }

    #[test]
    fn parses_endpoint_status_json_and_the_endpoints_that_did_not_answer() {
        // etcd 3.4.23, one member up, one down.
        let stdout = r#"[{"Endpoint":"http://127.0.0.1:23790","Status":{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":1,"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":3319814642761637952,"raftIndex":4,"raftTerm":2,"raftAppliedIndex":4,"dbSizeInUse":16384}}]"#;
        let stderr = "{\"level\":\"warn\",\"msg\":\"retrying of unary invoker failed\"}\nFailed to get the status of endpoint http://127.0.0.1:23791 (context deadline exceeded)\n";
        let eps = vec!["http://127.0.0.1:23790".to_string(), "http://127.0.0.1:23791".to_string()];
        let v = parse_endpoint_status(&eps, stdout, stderr).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].cluster_id, Some(324952591200643719));
        assert_eq!(v[0].member_id, v[0].leader);
        assert_eq!(v[0].version.as_deref(), Some("3.4.23"));
        assert!(v[0].error.is_none());
        assert_eq!(v[1].endpoint, "http://127.0.0.1:23791");
        assert_eq!(v[1].error.as_deref(), Some("context deadline exceeded"));
        assert_eq!(v[1].cluster_id, None);
        // Nothing answered: every endpoint with its error.
        let v = parse_endpoint_status(&eps[1..], "", stderr).unwrap();
        assert_eq!(v[0].error.as_deref(), Some("context deadline exceeded"));
    }

    #[test]
    fn commands_are_built_as_the_runbook_types_them() {
        let e = EtcdCtl::local(vec!["http://127.0.0.1:2379".into(), "http://127.0.0.1:22379".into()]).with_tls(EtcdTls {
            cacert: "/etc/kubernetes/static-pod-certs/configmaps/etcd-serving-ca/ca-bundle.crt".into(),
            cert: "/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-master-0.crt".into(),
            key: "/etc/kubernetes/static-pod-certs/secrets/etcd-all-certs/etcd-peer-master-0.key".into(),
        });
        let argv = e.argv(e.endpoints(), &["member", "remove", "6fc1e7c9db35841d"]);
        assert_eq!(argv[0], "etcdctl");
        assert_eq!(argv[1], "--endpoints=http://127.0.0.1:2379,http://127.0.0.1:22379");
        assert!(argv.contains(&"--dial-timeout=2s".to_string()) && argv.contains(&"--command-timeout=5s".to_string()));
        assert_eq!(&argv[argv.len() - 3..], ["member", "remove", "6fc1e7c9db35841d"]);
        let env = vec![("ETCDCTL_API".to_string(), "3".to_string())];
        assert_eq!(
            remote_command_line(&["/usr/local/bin/etcdctl".into(), "member".into(), "list".into(), "-w".into(), "json".into()], &env, true),
            "sudo env ETCDCTL_API=3 /usr/local/bin/etcdctl member list -w json"
        );
        assert_eq!(
            pod_exec_argv(&["etcdctl".into(), "member".into(), "list".into()], &env),
            ["env", "ETCDCTL_API=3", "etcdctl", "member", "list"]
        );
        let ok: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status =
            serde_json::from_str(r#"{"status":"Success","metadata":{}}"#).unwrap();
        assert_eq!(exit_code_of_status(Some(&ok)), 0);
        let bad: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status = serde_json::from_str(
            r#"{"status":"Failure","message":"command terminated with non-zero exit code: error executing command [etcdctl member list], exit code 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#,
        )
        .unwrap();
        assert_eq!(exit_code_of_status(Some(&bad)), 2);
        assert_eq!(command_not_run(Some(&ok)), None);
        assert_eq!(command_not_run(Some(&bad)), None);
    }

    #[test]
    fn an_exec_refused_after_the_upgrade_is_not_read_as_the_command_failing() {
        let status = |json: &str| serde_json::from_str::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>(json).unwrap();
        // The container stopped between the upgrade and the start of the process: it passes.
        let gone = status(
            r#"{"status":"Failure","reason":"InternalError","message":"Internal error occurred: error executing command in container: container is not created or running"}"#,
        );
        assert!(matches!(command_not_run(Some(&gone)), Some(PortError::Transient(m)) if m.contains("container is not created or running")));
        // The image has no such tool: trying again changes nothing.
        let missing = status(
            r#"{"status":"Failure","reason":"InternalError","message":"Internal error occurred: error executing command in container: failed to exec in container: OCI runtime exec failed: exec: \"etcdutl\": executable file not found in $PATH: unknown"}"#,
        );
        assert!(matches!(command_not_run(Some(&missing)), Some(PortError::Permanent(_))));
        assert_eq!(command_not_run(None), None);
    }
}
