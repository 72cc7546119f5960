//! `drctl inspect`: what the procedures would see of a real cluster through the real adapters:
//! whether the API answers, the control-plane nodes, which hosts answer SSH, and etcd's members,
//! health, cluster id(s) and quorum; and whether an S3 bucket takes, serves and deletes an
//! object. Nothing is changed (the S3 probe object is deleted again) and nothing is stored.

use crate::real::{kubeconfig_path, AccessArgs, KubeSpec, SshSpec};
use anyhow::Result;
use clap::Args;
use drctl_adapters::etcd::{EndpointStatus, EtcdCtl, EtcdTls};
use drctl_adapters::s3::{S3Options, S3Store};
use drctl_adapters::Blocking;
use drctl_workflows::object_store::{ObjectStore, S3Location};
use drctl_workflows::ports::{ClusterApi, EndpointHealth, Etcd, EtcdMemberList, NodeInfo};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub access: AccessArgs,
    /// etcd client URLs reachable from here, checked with the local etcdctl (etcd-client); every
    /// member's own client URLs are checked as well, like `etcdctl endpoint health --cluster`.
    #[arg(long, value_delimiter = ',', value_name = "URL,...", help_heading = "etcd")]
    pub etcd_endpoints: Vec<String>,
    /// CA bundle for https etcd endpoints (`etcdctl --cacert`).
    #[arg(long, value_name = "PATH", requires_all = ["etcd_cert", "etcd_key"], help_heading = "etcd")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate for https etcd endpoints (`etcdctl --cert`).
    #[arg(long, value_name = "PATH", requires_all = ["etcd_cacert", "etcd_key"], help_heading = "etcd")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key for https etcd endpoints (`etcdctl --key`).
    #[arg(long, value_name = "PATH", requires_all = ["etcd_cacert", "etcd_cert"], help_heading = "etcd")]
    pub etcd_key: Option<PathBuf>,
    /// An S3 bucket (and prefix) a DR will write to: checks the bucket answers, reads its region,
    /// and writes, reads back, presigns and deletes a probe object `<PREFIX>/.drctl-probe-…`.
    /// Credentials come from the AWS default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    /// (AWS_SESSION_TOKEN), or AWS_PROFILE with ~/.aws/credentials and ~/.aws/config; the region
    /// for the first request from AWS_REGION or the profile (else us-east-1).
    #[arg(long, value_name = "s3://BUCKET[/PREFIX]", help_heading = "Object store")]
    pub object_store: Option<String>,
    /// An S3-compatible endpoint instead of AWS (MinIO, Ceph RGW, moto), addressed path-style.
    #[arg(long, value_name = "URL", requires = "object_store", help_heading = "Object store")]
    pub s3_endpoint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Everything checked is fine (the exit status is 0 exactly then).
    pub ok: bool,
    /// What makes `ok` false.
    pub problems: Vec<String>,
    /// Worth knowing, not failing: an unhealthy etcd member while quorum holds, a NotReady node.
    pub warnings: Vec<String>,
    pub api: ApiReport,
    pub ssh: SshReport,
    pub etcd: EtcdReport,
    pub object_store: ObjectStoreReport,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ObjectStoreReport {
    pub checked: bool,
    /// `s3://BUCKET[/PREFIX]`.
    pub location: Option<String>,
    pub endpoint: Option<String>,
    /// Where the credentials came from and a masked key id; never a secret.
    pub credentials: Option<String>,
    pub region: Option<String>,
    /// In order; the first failure ends the list (except that a written probe is still deleted).
    pub checks: Vec<StoreCheck>,
    /// The S3 error code of the first failure (`NoSuchBucket`, `AccessDenied`...), if S3 sent one.
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreCheck {
    /// `credentials`, `bucket`, `write`, `read`, `presign`, `delete`.
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiReport {
    pub checked: bool,
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    pub server: Option<String>,
    pub reachable: Option<bool>,
    /// The API server's `gitVersion`.
    pub version: Option<String>,
    pub error: Option<String>,
    pub control_plane_nodes: Vec<NodeInfo>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SshReport {
    pub checked: bool,
    pub hosts: Vec<HostRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    pub name: String,
    pub node: String,
    pub address: String,
    pub reachable: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EtcdReport {
    pub checked: bool,
    /// The endpoints given, then the members' own client URLs.
    pub endpoints: Vec<String>,
    /// Distinct cluster ids (hex) the members report: one in a sound cluster.
    pub cluster_ids: Vec<String>,
    pub members: Vec<MemberRow>,
    pub voting_members: usize,
    pub healthy_voting_members: usize,
    /// Healthy voting members > voting members / 2; `None` when no member answered (unknown,
    /// never "lost": a wrong URL or a firewall says nothing about etcd).
    pub quorum: Option<bool>,
    /// No endpoint answered at all.
    pub unreachable: bool,
    /// The member list could not be read at all.
    pub error: Option<String>,
    pub endpoint_status: Vec<EndpointStatus>,
    pub endpoint_health: Vec<EndpointHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    /// Hex, as `etcdctl member list` prints it.
    pub id: String,
    /// Empty for a member that was added but never started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
    pub healthy: bool,
    /// It answers `endpoint status` (its process runs), healthy or not.
    pub answers: bool,
    pub error: Option<String>,
    /// The members that answer follow this one.
    pub leader: bool,
    /// The cluster id this member reports (hex), if it answers.
    pub cluster_id: Option<String>,
}

pub fn inspect(a: &InspectArgs) -> Result<Report> {
    // Argument mistakes are errors (exit 1 with a message), before anything is contacted.
    let ssh_spec = SshSpec::from_args(&a.access)?;
    for url in &a.etcd_endpoints {
        check_endpoint(url)?;
    }
    let want_api =
        a.access.kubeconfig.is_some() || a.access.context.is_some() || std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
    let kubeconfig = if want_api { kubeconfig_path(a.access.kubeconfig.as_deref())? } else { None };
    let store_location =
        a.object_store.as_deref().map(S3Location::parse).transpose().map_err(|e| anyhow::anyhow!("--object-store: {e}"))?;
    if let Some(ep) = &a.s3_endpoint {
        check_s3_endpoint(ep)?;
    }
    let tls = match (&a.etcd_cacert, &a.etcd_cert, &a.etcd_key) {
        (Some(ca), Some(c), Some(k)) => {
            Some(EtcdTls { cacert: ca.display().to_string(), cert: c.display().to_string(), key: k.display().to_string() })
        }
        _ => None,
    };
    let rt = Blocking::dedicated("drctl-inspect")?;

    // The parts are independent: check them at once (each is bounded by its own timeouts).
    let (api, ssh, etcd, store) = std::thread::scope(|s| {
        let api = s.spawn(|| api_report(want_api, kubeconfig.clone(), a.access.context.as_deref(), &rt));
        let ssh = s.spawn(|| ssh_report(ssh_spec.as_ref(), &rt));
        let etcd = s.spawn(|| etcd_report(&a.etcd_endpoints, tls.as_ref()));
        let store = s.spawn(|| object_store_report(store_location.as_ref(), a.s3_endpoint.as_deref(), &rt));
        (api.join(), ssh.join(), etcd.join(), store.join())
    });
    let api = api.map_err(|_| anyhow::anyhow!("API check panicked"))?;
    let ssh = ssh.map_err(|_| anyhow::anyhow!("SSH check panicked"))??;
    let etcd = etcd.map_err(|_| anyhow::anyhow!("etcd check panicked"))?;
    let object_store = store.map_err(|_| anyhow::anyhow!("object store check panicked"))?;

    let mut problems = vec![];
    let mut warnings = vec![];
    if api.checked && api.reachable != Some(true) {
        problems.push(format!("API {} does not answer: {}", api.server.as_deref().unwrap_or("?"), api.error.as_deref().unwrap_or("?")));
    }
    for n in api.control_plane_nodes.iter().filter(|n| !n.ready) {
        warnings.push(format!("control-plane node {} is NotReady (taints: {})", n.name, n.taints.join(", ")));
    }
    for h in ssh.hosts.iter().filter(|h| !h.reachable) {
        problems.push(format!("SSH to {} ({}) fails: {}", h.name, h.address, h.error.as_deref().unwrap_or("?")));
    }
    if etcd.checked {
        if etcd.unreachable {
            problems.push(format!(
                "etcd UNREACHABLE: no endpoint of {} answered ({}); this says nothing about quorum",
                etcd.endpoints.join(","),
                etcd.error.as_deref().unwrap_or("no answer")
            ));
        } else if let Some(e) = &etcd.error {
            problems.push(format!("etcd: no member list from {}: {e}", etcd.endpoints.join(",")));
        }
        if etcd.quorum == Some(false) {
            problems.push(format!(
                "etcd has lost quorum: {} of {} voting members healthy, {} needed",
                etcd.healthy_voting_members,
                etcd.voting_members,
                etcd.voting_members / 2 + 1
            ));
        }
        if etcd.cluster_ids.len() > 1 {
            problems.push(format!("etcd members report {} different cluster ids: {}", etcd.cluster_ids.len(), etcd.cluster_ids.join(", ")));
        }
        if etcd.quorum == Some(true) {
            for m in etcd.members.iter().filter(|m| !m.healthy) {
                let name = if m.name.is_empty() { "(not started)" } else { m.name.as_str() };
                warnings.push(format!("etcd member {} {name} is unhealthy: {}", m.id, m.error.as_deref().unwrap_or("?")));
            }
        }
    }
    if let Some(failed) = object_store.checks.iter().find(|c| !c.ok) {
        problems.push(format!(
            "object store {}: {} check failed: {}",
            object_store.location.as_deref().unwrap_or("?"),
            failed.name,
            failed.detail
        ));
    }
    Ok(Report { ok: problems.is_empty(), problems, warnings, api, ssh, etcd, object_store })
}

/// Credentials, bucket and region, then a probe object written, read back (hash compared),
/// presigned and deleted: what a DR into this bucket does, on a few bytes.
fn object_store_report(loc: Option<&S3Location>, endpoint: Option<&str>, rt: &Blocking) -> ObjectStoreReport {
    let Some(loc) = loc else { return ObjectStoreReport::default() };
    let mut r = ObjectStoreReport {
        checked: true,
        location: Some(loc.to_string()),
        endpoint: endpoint.map(str::to_string),
        ..ObjectStoreReport::default()
    };
    let fail = |r: &mut ObjectStoreReport, name: &'static str, e: &drctl_workflows::ports::PortError| {
        let detail = e.to_string();
        if r.error_code.is_none() {
            r.error_code = drctl_adapters::s3::error_code(&detail).map(str::to_string);
        }
        r.checks.push(StoreCheck { name, ok: false, detail });
    };
    let ok = |r: &mut ObjectStoreReport, name: &'static str, detail: String| r.checks.push(StoreCheck { name, ok: true, detail });

    let store = match S3Store::connect(rt.clone(), S3Options { endpoint: endpoint.map(str::to_string), ..S3Options::default() }) {
        Ok(s) => s,
        Err(e) => {
            fail(&mut r, "credentials", &e);
            return r;
        }
    };
    r.credentials = Some(store.credential_ref().to_string());
    ok(&mut r, "credentials", store.credential_ref().to_string());
    match store.bucket_region(&loc.bucket) {
        Ok(region) => {
            ok(&mut r, "bucket", format!("s3://{} answers, region {region}", loc.bucket));
            r.region = Some(region);
        }
        Err(e) => {
            fail(&mut r, "bucket", &e);
            return r;
        }
    }
    let key = loc.key(&probe_name());
    let body = format!("drctl inspect probe {key}\n");
    let written = match store.put_stream(&loc.bucket, &key, &mut body.as_bytes(), "text/plain") {
        Ok(d) => {
            ok(&mut r, "write", format!("{} bytes to {key}", d.size));
            d
        }
        Err(e) => {
            fail(&mut r, "write", &e);
            return r;
        }
    };
    // After a successful write, the probe is deleted whatever the read and presign checks say.
    let mut failed = false;
    match store.get_to(&loc.bucket, &key, &mut std::io::sink()) {
        Ok(d) if d == written => ok(&mut r, "read", format!("{} bytes, sha256 {} as written", d.size, d.sha256)),
        Ok(d) => {
            failed = true;
            r.checks.push(StoreCheck {
                name: "read",
                ok: false,
                detail: format!(
                    "read back {} bytes sha256 {} where {} bytes sha256 {} were written: the store does not keep what it is given",
                    d.size, d.sha256, written.size, written.sha256
                ),
            });
        }
        Err(e) => {
            failed = true;
            fail(&mut r, "read", &e);
        }
    }
    if !failed {
        // The URL a HostedCluster restore would be given (signed locally, not fetched).
        match store.presign_get(&loc.bucket, &key, Duration::from_secs(3600)) {
            Ok(url) => ok(&mut r, "presign", format!("a GET URL of {} characters (a restoreSnapshotURL takes up to 1024)", url.len())),
            Err(e) => fail(&mut r, "presign", &e),
        }
    }
    match store.delete(&loc.bucket, &key).and_then(|()| store.head(&loc.bucket, &key)) {
        Ok(None) => ok(&mut r, "delete", format!("{key} deleted")),
        Ok(Some(_)) => r.checks.push(StoreCheck { name: "delete", ok: false, detail: format!("{key} is still there after its delete") }),
        Err(e) => fail(&mut r, "delete", &e),
    }
    r
}

/// A probe name no other inspect picks at the same moment: the time and our pid.
#[allow(clippy::disallowed_methods)] // the CLI may read the wall clock; this only names a probe
fn probe_name() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!(".drctl-probe-{}-{}", t.as_nanos(), std::process::id())
}

/// `http(s)://HOST[:PORT]`, nothing after but an optional `/`.
pub(crate) fn check_s3_endpoint(url: &str) -> Result<()> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let valid =
        rest.map(|r| r.trim_end_matches('/')).is_some_and(|r| !r.is_empty() && !r.contains('/') && !r.contains(char::is_whitespace));
    if !valid {
        anyhow::bail!("--s3-endpoint: '{url}' is not an S3 endpoint URL: write http(s)://HOST[:PORT], e.g. http://127.0.0.1:9000");
    }
    Ok(())
}

fn api_report(want: bool, kubeconfig: Option<PathBuf>, context: Option<&str>, rt: &Blocking) -> ApiReport {
    let mut r = ApiReport { checked: want, ..ApiReport::default() };
    if !want {
        return r;
    }
    let Some(path) = kubeconfig else {
        r.reachable = Some(false);
        r.error = Some("no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config)".into());
        return r;
    };
    r.kubeconfig = Some(path.display().to_string());
    let spec = match KubeSpec::resolve(path, context) {
        Ok(s) => s,
        Err(e) => {
            r.reachable = Some(false);
            r.error = Some(format!("{e:#}"));
            return r;
        }
    };
    r.context = Some(spec.context.clone());
    r.server = Some(spec.server.clone());
    let api = match spec.connect(rt) {
        Ok(a) => a,
        Err(e) => {
            r.reachable = Some(false);
            r.error = Some(format!("{e:#}"));
            return r;
        }
    };
    match api.server_version() {
        Ok(v) => {
            r.reachable = Some(true);
            r.version = Some(v);
        }
        Err(e) => {
            r.reachable = Some(false);
            r.error = Some(e.to_string());
            return r;
        }
    }
    match api.list_nodes() {
        Ok(nodes) => r.control_plane_nodes = nodes.into_iter().filter(|n| n.control_plane).collect(),
        Err(e) => r.error = Some(e.to_string()),
    }
    r
}

fn ssh_report(spec: Option<&SshSpec>, rt: &Blocking) -> Result<SshReport> {
    let Some(spec) = spec else { return Ok(SshReport::default()) };
    let ssh = spec.connect(rt, &std::env::temp_dir())?;
    let results = spec.check_all(&ssh);
    let hosts = spec
        .hosts
        .iter()
        .zip(results)
        .map(|(h, (_, r))| HostRow {
            name: h.name.clone(),
            node: h.node.clone(),
            address: h.address.clone(),
            reachable: r.is_ok(),
            error: r.err().map(|e| e.to_string()),
        })
        .collect();
    Ok(SshReport { checked: true, hosts })
}

fn etcdctl(endpoints: Vec<String>, tls: Option<&EtcdTls>) -> EtcdCtl {
    let c = EtcdCtl::local(endpoints).with_timeouts(Duration::from_secs(2), Duration::from_secs(3));
    match tls {
        Some(t) => c.with_tls(t.clone()),
        None => c,
    }
}

fn etcd_report(endpoints: &[String], tls: Option<&EtcdTls>) -> EtcdReport {
    if endpoints.is_empty() {
        return EtcdReport::default();
    }
    let mut r = EtcdReport { checked: true, ..EtcdReport::default() };
    // The members as the member we reach sees them: answers without quorum too.
    let list: Option<EtcdMemberList> = match etcdctl(endpoints.to_vec(), tls).member_list_local() {
        Ok(l) => Some(l),
        Err(e) => {
            r.error = Some(e.to_string());
            None
        }
    };
    let mut all: Vec<String> = endpoints.to_vec();
    for u in list.iter().flat_map(|l| l.members.iter()).flat_map(|m| m.client_urls.iter()) {
        if !all.contains(u) {
            all.push(u.clone());
        }
    }
    r.endpoints = all.clone();
    let ctl = etcdctl(all, tls);
    let (status, health) = std::thread::scope(|s| {
        let st = s.spawn(|| ctl.endpoint_status());
        let he = ctl.endpoint_health();
        (st.join().unwrap_or_else(|_| Ok(vec![])), he)
    });
    r.endpoint_status = status.unwrap_or_default();
    r.endpoint_health = health.unwrap_or_default();
    let mut ids: Vec<u64> = r.endpoint_status.iter().filter_map(|s| s.cluster_id).collect();
    ids.extend(list.as_ref().map(|l| l.cluster_id).filter(|c| *c != 0));
    ids.sort_unstable();
    ids.dedup();
    r.cluster_ids = ids.iter().map(|c| format!("{c:x}")).collect();
    let leaders: Vec<u64> = r.endpoint_status.iter().filter_map(|s| s.leader).collect();
    if let Some(l) = &list {
        for m in &l.members {
            let health: Vec<&EndpointHealth> = r.endpoint_health.iter().filter(|h| m.client_urls.contains(&h.endpoint)).collect();
            let healthy = health.iter().any(|h| h.healthy);
            let error = if healthy {
                None
            } else if m.client_urls.is_empty() {
                Some("not started (added, has not joined yet)".to_string())
            } else {
                Some(health.iter().filter_map(|h| h.error.clone()).next().unwrap_or_else(|| "no answer".into()))
            };
            let own = r.endpoint_status.iter().find(|s| s.member_id == Some(m.id));
            let cluster_id = own.and_then(|s| s.cluster_id).map(|c| format!("{c:x}"));
            r.members.push(MemberRow {
                id: format!("{:x}", m.id),
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: m.client_urls.clone(),
                is_learner: m.is_learner,
                healthy,
                answers: own.is_some(),
                error,
                leader: leaders.contains(&m.id),
                cluster_id,
            });
        }
        r.voting_members = r.members.iter().filter(|m| !m.is_learner).count();
        r.healthy_voting_members = r.members.iter().filter(|m| !m.is_learner && m.healthy).count();
        r.quorum = Some(r.voting_members > 0 && r.healthy_voting_members * 2 > r.voting_members);
    } else {
        // No member list: quorum is known only if some member answered at all (it runs, and
        // without a leader it cannot list its members: quorum is lost). Nobody answering tells
        // nothing.
        let answered = r.endpoint_status.iter().any(|s| s.member_id.is_some()) || r.endpoint_health.iter().any(|h| h.healthy);
        r.unreachable = !answered;
        r.quorum = match r.unreachable {
            true => None,
            false => Some(false),
        };
    }
    r
}

/// An etcd client URL as etcdctl takes it: `http(s)://HOST:PORT`, nothing after.
pub(crate) fn check_endpoint(url: &str) -> Result<()> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let hostport = rest.map(|r| r.trim_end_matches('/')).filter(|r| !r.is_empty() && !r.contains('/'));
    let valid = hostport.and_then(|hp| hp.rsplit_once(':')).is_some_and(|(host, port)| {
        let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
        host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    match valid {
        true => Ok(()),
        false => {
            anyhow::bail!("--etcd-endpoints: '{url}' is not an etcd client URL: write http(s)://HOST:PORT, e.g. https://10.0.0.5:2379")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn etcd_endpoints_must_be_client_urls() {
        for ok in ["https://10.0.0.5:2379", "http://127.0.0.1:2379", "https://etcd-0.example.com:2379/", "https://[fd00::5]:2379"] {
            assert!(super::check_endpoint(ok).is_ok(), "{ok}");
        }
        let bad = ["notaurl", "10.0.0.5:2379", "https://10.0.0.5", "https://:2379", "https://h:0", "https://h:99999", "https://h:2379/x"];
        for bad in bad.into_iter().chain(["ftp://h:21", "https://h o:2379"]) {
            assert!(super::check_endpoint(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn s3_endpoints_must_be_urls_without_a_path() {
        for ok in ["http://127.0.0.1:9000", "https://s3.eu-west-2.amazonaws.com", "https://minio.example.com:9000/"] {
            assert!(super::check_s3_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1:9000", "http://", "https://h/bucket", "s3://bucket", "http://h o"] {
            assert!(super::check_s3_endpoint(bad).is_err(), "{bad} accepted");
        }
    }
}
