//! A real cluster as a run's target: the API server through kube-rs, the control-plane hosts over
//! SSH, a backup directory, and the wall clock.
//!
//! What identifies the target is recorded in the run's labels so `drctl resume` rebuilds the same
//! target: file PATHS (kubeconfig, ssh config, key, known_hosts), the resolved kubeconfig context
//! and its server URL, the host inventory, the ssh user and the backup root. Never file contents,
//! tokens or keys.

use crate::target::{Target, LABEL_TARGET};
use anyhow::{bail, Context, Result};
use clap::Args;
use drctl_adapters::kube::{kubeconfig_target, KubeApi};
use drctl_adapters::ssh::{HostLayout, SshHost, SshHosts, SshOptions};
use drctl_adapters::{Blocking, DirBackupStore, KubeEtcdPods, SystemClock};
use drctl_runtime::RunRecord;
use drctl_workflows::catalog::Capability;
use drctl_workflows::ports::{BackupInfo, BackupStore, HostOp, HostOutput, HostRef, Hosts, PortError, PortResult, Ports};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const TARGET_REAL: &str = "real";
pub const LABEL_KUBECONFIG: &str = "real.kubeconfig";
pub const LABEL_CONTEXT: &str = "real.context";
pub const LABEL_SERVER: &str = "real.server";
pub const LABEL_HOSTS: &str = "real.hosts";
pub const LABEL_WORKERS: &str = "real.workers";
pub const LABEL_SSH_USER: &str = "real.ssh_user";
pub const LABEL_SSH_CONFIG: &str = "real.ssh_config";
pub const LABEL_SSH_IDENTITY: &str = "real.ssh_identity";
pub const LABEL_KNOWN_HOSTS: &str = "real.known_hosts";
pub const LABEL_BACKUP_ROOT: &str = "real.backup_root";
pub const LABEL_HOST_ROOT: &str = "real.ssh_host_root";
pub const LABEL_S3_ENDPOINT: &str = "real.s3_endpoint";

/// How to reach a real cluster: its API (kubeconfig) and its control-plane hosts (SSH).
#[derive(Args, Debug, Clone, Default)]
pub struct AccessArgs {
    /// Kubeconfig of the cluster, like `oc --kubeconfig` (default: $KUBECONFIG, then
    /// ~/.kube/config). Its path is recorded with the run, never its contents.
    #[arg(long, value_name = "PATH", help_heading = "Real cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its current-context; the one used is recorded, so a
    /// resumed run talks to the same cluster).
    #[arg(long, value_name = "NAME", help_heading = "Real cluster")]
    pub context: Option<String>,
    /// Control-plane hosts, the inventory the procedures act on:
    /// NAME=ADDRESS[@NODE],... (ssh to ADDRESS; the Kubernetes node name is NAME unless @NODE),
    /// e.g. master-0=10.0.131.183@ip-10-0-131-183.ec2.internal.
    #[arg(long, value_name = "NAME=ADDRESS[@NODE],...", help_heading = "Real cluster")]
    pub hosts: Option<String>,
    /// Worker hosts the restore may log in to, in the same form: a worker NotReady after the
    /// restore has its kubelet certificates renewed (OpenShift Container Platform 4.14 Backup and
    /// restore §5.4.2.2 step 9.2); one not listed is named in the result for a person.
    #[arg(long, value_name = "NAME=ADDRESS[@NODE],...", help_heading = "Real cluster")]
    pub workers: Option<String>,
    /// User to log in as on the hosts (`core` on RHCOS); commands needing root use sudo.
    #[arg(long, value_name = "USER", help_heading = "Real cluster")]
    pub ssh_user: Option<String>,
    /// ssh client config file (`ssh -F`; default: ~/.ssh/config).
    #[arg(long, value_name = "PATH", help_heading = "Real cluster")]
    pub ssh_config: Option<PathBuf>,
    /// Private key to log in with (`ssh -i`; default: the ssh config and agent).
    #[arg(long, value_name = "PATH", help_heading = "Real cluster")]
    pub ssh_identity: Option<PathBuf>,
    /// known_hosts file (default: the ssh config's). Unknown host keys are refused, never added.
    #[arg(long, value_name = "PATH", help_heading = "Real cluster")]
    pub known_hosts: Option<PathBuf>,
    /// Tests only: host NAME's paths live under DIR/NAME, its tools in DIR/NAME/usr/local/bin,
    /// without sudo (sandbox directories standing for hosts).
    #[arg(long, value_name = "DIR", hide = true)]
    pub ssh_host_root: Option<PathBuf>,
}

impl AccessArgs {
    /// Whether any real-cluster option was given on the command line.
    pub fn any(&self) -> bool {
        self.kubeconfig.is_some()
            || self.context.is_some()
            || self.hosts.is_some()
            || self.workers.is_some()
            || self.ssh_user.is_some()
            || self.ssh_config.is_some()
            || self.ssh_identity.is_some()
            || self.known_hosts.is_some()
            || self.ssh_host_root.is_some()
    }
}

/// One host of the `--hosts` inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryHost {
    pub name: String,
    pub address: String,
    pub node: String,
}

/// Parse `NAME=ADDRESS[@NODE],...`. Names are plain (letters, digits, `.`, `_`, `-`) and unique.
pub fn parse_inventory(spec: &str) -> Result<Vec<InventoryHost>> {
    parse_hosts_flag(spec, "--hosts", "control-plane")
}

/// [`parse_inventory`] for the option `flag`, listing `what` hosts.
pub fn parse_hosts_flag(spec: &str, flag: &str, what: &str) -> Result<Vec<InventoryHost>> {
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let mut out: Vec<InventoryHost> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, rest)) = item.split_once('=') else {
            bail!("{flag} entry '{item}' must be NAME=ADDRESS[@NODE], e.g. master-0=10.0.131.183@ip-10-0-131-183.ec2.internal");
        };
        let (address, node) = match rest.rsplit_once('@') {
            // user@host is not an address here: the user comes from --ssh-user.
            Some((a, n)) => (a, n),
            None => (rest, name),
        };
        if !plain(name) {
            bail!("{flag}: host name '{name}' must be letters, digits, '.', '_' or '-'");
        }
        let address_ok = !address.is_empty()
            && !address.starts_with('-')
            && address.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'%'));
        if !address_ok {
            bail!("{flag}: address '{address}' of {name} is not a host name or IP address");
        }
        if !plain(node) {
            bail!("{flag}: node name '{node}' of {name} must be letters, digits, '.', '_' or '-'");
        }
        if out.iter().any(|h| h.name == name) {
            bail!("{flag} names {name} twice");
        }
        out.push(InventoryHost { name: name.into(), address: address.into(), node: node.into() });
    }
    if out.is_empty() {
        bail!("{flag} is empty: name the {what} hosts, NAME=ADDRESS[@NODE],...");
    }
    Ok(out)
}

/// The canonical `--hosts` text of an inventory (what the run records).
pub fn inventory_spec(hosts: &[InventoryHost]) -> String {
    hosts
        .iter()
        .map(|h| if h.node == h.name { format!("{}={}", h.name, h.address) } else { format!("{}={}@{}", h.name, h.address, h.node) })
        .collect::<Vec<_>>()
        .join(",")
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolve {}", p.display()))
}

fn existing_file(p: &Path, what: &str) -> Result<PathBuf> {
    let abs = absolute(p)?;
    if !abs.is_file() {
        bail!("{what} {} does not exist or is not a file", abs.display());
    }
    Ok(abs)
}

/// The kubeconfig file to use: `--kubeconfig`, else `$KUBECONFIG` (one file), else
/// `~/.kube/config` if it exists.
pub fn kubeconfig_path(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = flag {
        return existing_file(p, "--kubeconfig").map(Some);
    }
    if let Some(env) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let parts: Vec<PathBuf> = std::env::split_paths(&env).filter(|p| !p.as_os_str().is_empty()).collect();
        return match parts.as_slice() {
            [one] => existing_file(one, "KUBECONFIG").map(Some),
            [] => Ok(None),
            _ => bail!("KUBECONFIG lists {} files; drctl records one kubeconfig with a run: pass --kubeconfig", parts.len()),
        };
    }
    let default = std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config"));
    Ok(default.filter(|p| p.is_file()))
}

/// The API side of a target.
#[derive(Debug, Clone)]
pub struct KubeSpec {
    pub kubeconfig: PathBuf,
    pub context: String,
    pub server: String,
}

impl KubeSpec {
    pub fn resolve(kubeconfig: PathBuf, context: Option<&str>) -> Result<KubeSpec> {
        let t = kubeconfig_target(&kubeconfig, context).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(KubeSpec { kubeconfig, context: t.context, server: t.server })
    }

    pub fn connect(&self, rt: &Blocking) -> Result<KubeApi> {
        KubeApi::connect(rt.clone(), Some(&self.kubeconfig), Some(&self.context)).map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub fn describe(&self) -> String {
        format!("{} (context {})", self.server, self.context)
    }
}

/// The SSH side of a target.
#[derive(Debug, Clone)]
pub struct SshSpec {
    pub hosts: Vec<InventoryHost>,
    /// `--workers`: worker hosts a procedure may log in to.
    pub workers: Vec<InventoryHost>,
    pub user: Option<String>,
    pub config: Option<PathBuf>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub host_root: Option<PathBuf>,
}

impl SshSpec {
    /// From the command line; `None` without `--hosts`.
    pub fn from_args(a: &AccessArgs) -> Result<Option<SshSpec>> {
        let Some(spec) = &a.hosts else {
            for (set, flag) in [
                (a.ssh_user.is_some(), "--ssh-user"),
                (a.ssh_config.is_some(), "--ssh-config"),
                (a.ssh_identity.is_some(), "--ssh-identity"),
                (a.known_hosts.is_some(), "--known-hosts"),
                (a.workers.is_some(), "--workers"),
            ] {
                if set {
                    bail!("{flag} needs --hosts (the control-plane inventory)");
                }
            }
            return Ok(None);
        };
        let opt_file = |p: &Option<PathBuf>, what: &str| p.as_deref().map(|p| existing_file(p, what)).transpose();
        let hosts = parse_inventory(spec)?;
        let workers = a.workers.as_deref().map(|w| parse_hosts_flag(w, "--workers", "worker")).transpose()?.unwrap_or_default();
        if let Some(both) = workers.iter().find(|w| hosts.iter().any(|h| h.name == w.name)) {
            bail!("{} is named by both --hosts and --workers: a host is a control-plane host or a worker", both.name);
        }
        Ok(Some(SshSpec {
            hosts,
            workers,
            user: a.ssh_user.clone().filter(|u| !u.is_empty()),
            config: opt_file(&a.ssh_config, "--ssh-config")?,
            identity: opt_file(&a.ssh_identity, "--ssh-identity")?,
            known_hosts: opt_file(&a.known_hosts, "--known-hosts")?,
            host_root: a.ssh_host_root.as_deref().map(absolute).transpose()?,
        }))
    }

    /// SSH sessions to the inventory (made on first use). `backup_root` is where backup sets are
    /// copied from and to.
    pub fn connect(&self, rt: &Blocking, backup_root: &Path) -> Result<SshHosts> {
        let opts = SshOptions {
            user: self.user.clone(),
            config_file: self.config.clone(),
            identity: self.identity.clone(),
            known_hosts_file: self.known_hosts.clone(),
            ..SshOptions::default()
        };
        let roles = self.hosts.iter().map(|h| (h, false)).chain(self.workers.iter().map(|h| (h, true)));
        let hosts = roles
            .map(|(h, worker)| {
                let host = SshHost::new(&h.name, &h.node, &h.address, &h.address);
                let host = if worker { host.as_worker() } else { host };
                match &self.host_root {
                    Some(root) => host.with_layout(HostLayout::sandbox(root.join(&h.name).display().to_string())),
                    None => host,
                }
            })
            .collect();
        SshHosts::new(rt.clone(), opts, hosts, backup_root).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Try every host at once; (name, result) in inventory order.
    pub fn check_all(&self, ssh: &SshHosts) -> Vec<(String, Result<(), PortError>)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self.hosts.iter().map(|h| (h.name.clone(), s.spawn(|| ssh.connect(&h.name)))).collect();
            handles
                .into_iter()
                .map(|(n, j)| (n, j.join().unwrap_or_else(|_| Err(PortError::Permanent("ssh check panicked".into())))))
                .collect()
        })
    }
}

/// Everything that identifies a real target.
#[derive(Debug, Clone)]
pub struct RealSpec {
    pub kube: KubeSpec,
    pub ssh: SshSpec,
    pub backup_root: PathBuf,
}

impl RealSpec {
    /// What this access configuration lets a run talk to: a complete spec is one standalone
    /// cluster's API, its hosts over SSH, their etcd, and the backup root.
    pub fn capabilities(&self) -> &'static [Capability] {
        &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation]
    }

    /// What the up-front checks can know without contacting the cluster: the backup sets under
    /// the backup root (unknown when it cannot be read: the run's own check says why) and the
    /// inventory's control-plane hosts.
    pub fn facts(&self) -> drctl_workflows::catalog::TargetFacts {
        let backups = std::fs::read_dir(&self.backup_root).ok().map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        });
        drctl_workflows::catalog::TargetFacts {
            backups,
            control_plane_hosts: Some(self.ssh.hosts.iter().map(|h| h.name.clone()).collect()),
            keepalived: None,
        }
    }

    /// From `drctl run`'s options. Checks what can be checked without the network.
    pub fn from_args(a: &AccessArgs, backup_root: Option<&Path>) -> Result<RealSpec> {
        let Some(kubeconfig) = kubeconfig_path(a.kubeconfig.as_deref())? else {
            bail!(
                "no target: pass --sim <scenario> to run against the built-in simulator (see `drctl sim scenarios`), \
                 or a real cluster's --kubeconfig (none in $KUBECONFIG or ~/.kube/config), --ssh-user, --hosts and --backup-root"
            );
        };
        let kube = KubeSpec::resolve(kubeconfig, a.context.as_deref())?;
        let Some(ssh) = SshSpec::from_args(a)? else {
            bail!("a real cluster needs --hosts NAME=ADDRESS[@NODE],... (its control-plane hosts), or pass --sim <scenario>");
        };
        if ssh.user.is_none() {
            bail!("a real cluster needs --ssh-user (the user on the control-plane hosts, `core` on RHCOS), or pass --sim <scenario>");
        }
        let Some(root) = backup_root else {
            bail!("a real cluster needs --backup-root DIR (where backup sets are kept, outside the cluster), or pass --sim <scenario>");
        };
        let root = absolute(root)?;
        if root.exists() && !root.is_dir() {
            bail!("--backup-root {} is not a directory", root.display());
        }
        Ok(RealSpec { kube, ssh, backup_root: root })
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        self.kube.put_labels(&mut l);
        let mut put = |k: &str, v: String| {
            l.insert(k.to_string(), v);
        };
        put(LABEL_TARGET, TARGET_REAL.into());
        put(LABEL_HOSTS, inventory_spec(&self.ssh.hosts));
        if !self.ssh.workers.is_empty() {
            put(LABEL_WORKERS, inventory_spec(&self.ssh.workers));
        }
        put(LABEL_BACKUP_ROOT, self.backup_root.display().to_string());
        if let Some(u) = &self.ssh.user {
            put(LABEL_SSH_USER, u.clone());
        }
        for (k, v) in [
            (LABEL_SSH_CONFIG, &self.ssh.config),
            (LABEL_SSH_IDENTITY, &self.ssh.identity),
            (LABEL_KNOWN_HOSTS, &self.ssh.known_hosts),
            (LABEL_HOST_ROOT, &self.ssh.host_root),
        ] {
            if let Some(p) = v {
                put(k, p.display().to_string());
            }
        }
        l
    }

    /// The target a run recorded.
    pub fn from_labels(rec: &RunRecord) -> Result<RealSpec> {
        let l = &rec.labels;
        let get = |k: &str| l.get(k).cloned().with_context(|| format!("run {} targets a real cluster but has no {k} label", rec.id));
        let path = |k: &str| l.get(k).map(PathBuf::from);
        let kube = KubeSpec::from_labels(rec)?;
        let ssh = SshSpec {
            hosts: parse_inventory(&get(LABEL_HOSTS)?)?,
            workers: l.get(LABEL_WORKERS).map(|w| parse_hosts_flag(w, "--workers", "worker")).transpose()?.unwrap_or_default(),
            user: l.get(LABEL_SSH_USER).cloned(),
            config: path(LABEL_SSH_CONFIG),
            identity: path(LABEL_SSH_IDENTITY),
            known_hosts: path(LABEL_KNOWN_HOSTS),
            host_root: path(LABEL_HOST_ROOT),
        };
        Ok(RealSpec { kube, ssh, backup_root: get(LABEL_BACKUP_ROOT)?.into() })
    }

    pub fn describe(&self) -> String {
        format!("{}, hosts {}", self.kube.describe(), inventory_spec(&self.ssh.hosts))
    }

    /// The adapters of this target (nothing is sent yet).
    fn build(&self) -> Result<(KubeApi, SshHosts)> {
        let rt = Blocking::dedicated("drctl-io").context("start the I/O runtime")?;
        Ok((self.kube.connect(&rt)?, self.ssh.connect(&rt, &self.backup_root)?))
    }

    fn target(&self, api: KubeApi, ssh: SshHosts) -> Target {
        let ports = Ports {
            etcd: Box::new(KubeEtcdPods(api.clone())),
            api: Box::new(api),
            hosts: Box::new(ssh),
            backups: Box::new(DirBackupStore::new(&self.backup_root)),
            management: None,
            object_store: None,
        };
        Target { ports: Arc::new(ports), clock: Arc::new(SystemClock::new()), sim: None }
    }
}

impl KubeSpec {
    /// The API a run recorded, checked to still be that API: the recorded context must still
    /// name the recorded server, so a run never resumes against another cluster.
    fn from_labels(rec: &RunRecord) -> Result<KubeSpec> {
        let l = &rec.labels;
        let get = |k: &str| l.get(k).cloned().with_context(|| format!("run {} targets a real cluster but has no {k} label", rec.id));
        let kube = KubeSpec { kubeconfig: get(LABEL_KUBECONFIG)?.into(), context: get(LABEL_CONTEXT)?, server: get(LABEL_SERVER)? };
        if !kube.kubeconfig.is_file() {
            bail!("run {} acts on the cluster of kubeconfig {}, which is gone", rec.id, kube.kubeconfig.display());
        }
        let now = KubeSpec::resolve(kube.kubeconfig.clone(), Some(&kube.context))
            .with_context(|| format!("run {} acts on context {} of {}", rec.id, kube.context, kube.kubeconfig.display()))?;
        if now.server != kube.server {
            bail!(
                "run {} acted on {} but context {} of {} now names {}: refusing to resume against another cluster",
                rec.id,
                kube.server,
                kube.context,
                kube.kubeconfig.display(),
                now.server
            );
        }
        Ok(kube)
    }

    fn put_labels(&self, l: &mut BTreeMap<String, String>) {
        l.insert(LABEL_KUBECONFIG.into(), self.kubeconfig.display().to_string());
        l.insert(LABEL_CONTEXT.into(), self.context.clone());
        l.insert(LABEL_SERVER.into(), self.server.clone());
    }
}

// ---------------------------------------------------------------------------------------------
// A hosted cluster's management cluster
// ---------------------------------------------------------------------------------------------

pub const TARGET_REAL_MANAGEMENT: &str = "real-management";

/// The management cluster of hosted control planes (HyperShift): a hosted procedure talks to
/// its API only — the HostedClusters, NodePools and the control-plane namespaces live there —
/// never to hosts over SSH nor to a backup directory.
#[derive(Debug, Clone)]
pub struct ManagementSpec {
    pub kube: KubeSpec,
    /// `--s3-endpoint`: where the bucket is, when not AWS S3.
    pub s3_endpoint: Option<String>,
}

impl ManagementSpec {
    pub const CAPABILITIES: &'static [Capability] = &[Capability::ManagementCluster, Capability::ObjectStore];

    /// From `drctl run`'s options: the kubeconfig and context of the management cluster. The
    /// options of a standalone cluster are refused rather than silently ignored.
    pub fn from_args(a: &AccessArgs, backup_root: Option<&Path>, s3_endpoint: Option<&str>) -> Result<ManagementSpec> {
        for (given, flag) in [
            (a.hosts.is_some(), "--hosts"),
            (a.workers.is_some(), "--workers"),
            (a.ssh_user.is_some(), "--ssh-user"),
            (backup_root.is_some(), "--backup-root"),
        ] {
            if given {
                bail!("{flag} is for a standalone cluster's hosts: a hosted procedure talks only to the management cluster's API (--kubeconfig, --context)");
            }
        }
        let Some(kubeconfig) = kubeconfig_path(a.kubeconfig.as_deref())? else {
            bail!(
                "no target: pass --sim <scenario> to rehearse against the built-in simulator, or the management cluster's \
                 --kubeconfig (none in $KUBECONFIG or ~/.kube/config)"
            );
        };
        if let Some(ep) = s3_endpoint {
            crate::inspect::check_s3_endpoint(ep)?;
        }
        Ok(ManagementSpec { kube: KubeSpec::resolve(kubeconfig, a.context.as_deref())?, s3_endpoint: s3_endpoint.map(str::to_string) })
    }

    pub fn from_labels(rec: &RunRecord) -> Result<ManagementSpec> {
        Ok(ManagementSpec { kube: KubeSpec::from_labels(rec)?, s3_endpoint: rec.labels.get(LABEL_S3_ENDPOINT).cloned() })
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([(LABEL_TARGET.to_string(), TARGET_REAL_MANAGEMENT.to_string())]);
        self.kube.put_labels(&mut l);
        if let Some(ep) = &self.s3_endpoint {
            l.insert(LABEL_S3_ENDPOINT.into(), ep.clone());
        }
        l
    }

    pub fn describe(&self) -> String {
        format!("management cluster {}", self.kube.describe())
    }

    /// For `drctl run`: built, and its API probed before anything is stored (a refusal —
    /// credentials, certificates — stops here; an API that does not answer is waited out by
    /// the run's retries).
    pub fn new_target(&self, row: &drctl_workflows::catalog::CatalogRow) -> Result<Target> {
        let api = self.kube.connect(&Blocking::dedicated("drctl-io").context("start the I/O runtime")?)?;
        match api.server_version() {
            Ok(v) => eprintln!("drctl: API {} answers (Kubernetes {v})", self.kube.describe()),
            Err(e) if !e.is_transient() => bail!("the API {} refused: {e} (check --kubeconfig and --context)", self.kube.describe()),
            Err(e) => {
                eprintln!("drctl: warning: the API does not answer ({e}); its steps are retried until it is back (within --deadline)")
            }
        }
        self.target(api, row)
    }

    /// For `drctl resume`: built, not probed.
    pub fn load_target(&self, row: &drctl_workflows::catalog::CatalogRow) -> Result<Target> {
        self.target(self.kube.connect(&Blocking::dedicated("drctl-io").context("start the I/O runtime")?)?, row)
    }

    /// The kube adapter on the management cluster and, for a procedure that writes to a bucket,
    /// the S3 adapter on its endpoint (credentials from the AWS chain: a procedure that needs
    /// none runs without them).
    fn target(&self, api: KubeApi, row: &drctl_workflows::catalog::CatalogRow) -> Result<Target> {
        let store: Option<Box<dyn drctl_workflows::object_store::ObjectStore>> = match row.capabilities.contains(&Capability::ObjectStore) {
            true => {
                let rt = Blocking::dedicated("drctl-s3").context("start the I/O runtime")?;
                let opts = drctl_adapters::s3::S3Options { endpoint: self.s3_endpoint.clone(), ..Default::default() };
                Some(Box::new(drctl_adapters::s3::S3Store::connect(rt, opts).map_err(|e| anyhow::anyhow!("the object store: {e}"))?))
            }
            false => None,
        };
        let ports = Ports {
            etcd: Box::new(KubeEtcdPods(api.clone())),
            management: Some(Box::new(api.clone())),
            api: Box::new(api),
            hosts: Box::new(NoHosts),
            backups: Box::new(NoBackups),
            object_store: store,
        };
        Ok(Target { ports: Arc::new(ports), clock: Arc::new(SystemClock::new()), sim: None })
    }
}

/// The hosts of a target that has none: the catalog admits on it only procedures that never
/// log in to a host, so reaching one is a bug, said as such.
struct NoHosts;

fn no_hosts<T>() -> PortResult<T> {
    Err(PortError::Permanent(
        "this target is a management cluster: it has no hosts to log in to (a bug: the catalog admitted a procedure that needs them)"
            .into(),
    ))
}

impl Hosts for NoHosts {
    fn control_plane_hosts(&self) -> PortResult<Vec<HostRef>> {
        no_hosts()
    }
    fn worker_hosts(&self) -> PortResult<Vec<HostRef>> {
        no_hosts()
    }
    fn connect(&self, _: &str) -> PortResult<()> {
        no_hosts()
    }
    fn run(&self, _: &str, _: &HostOp) -> PortResult<HostOutput> {
        no_hosts()
    }
    fn copy_backup_to_host(&self, _: &str, _: &str, _: &str) -> PortResult<()> {
        no_hosts()
    }
    fn copy_backup_from_host(&self, _: &str, _: &[String], _: &str, _: &BackupInfo) -> PortResult<()> {
        no_hosts()
    }
}

/// The backup location of a target that has none (as [`NoHosts`]).
struct NoBackups;

fn no_backups<T>() -> PortResult<T> {
    Err(PortError::Permanent(
        "this target is a management cluster: it has no backup directory (a bug: the catalog admitted a procedure that needs one)".into(),
    ))
}

impl BackupStore for NoBackups {
    fn list(&self, _: &str) -> PortResult<Vec<String>> {
        no_backups()
    }
    fn info(&self, _: &str) -> PortResult<Option<BackupInfo>> {
        no_backups()
    }
    fn cluster_version(&self, _: &str) -> PortResult<Option<String>> {
        no_backups()
    }
}

/// A new real target for `drctl run`: built, and probed before anything is stored. Fails when
/// neither the API nor any host answers, or when either refuses us (credentials, host keys).
pub fn new_target(spec: &RealSpec) -> Result<Target> {
    let (api, ssh) = spec.build()?;
    probe(spec, &api, &ssh)?;
    std::fs::create_dir_all(&spec.backup_root).with_context(|| format!("create --backup-root {}", spec.backup_root.display()))?;
    Ok(spec.target(api, ssh))
}

/// The target of a recorded real run (see [`RealSpec::from_labels`]), for `drctl resume`. Not
/// probed: an unreachable cluster is what the run's retries are for.
pub fn load_target(spec: &RealSpec) -> Result<Target> {
    let (api, ssh) = spec.build()?;
    Ok(spec.target(api, ssh))
}

fn probe(spec: &RealSpec, api: &KubeApi, ssh: &SshHosts) -> Result<()> {
    let api_result = api.server_version();
    match &api_result {
        Ok(v) => eprintln!("drctl: API {} answers (Kubernetes {v})", spec.kube.describe()),
        Err(e) if !e.is_transient() => bail!("the API {} refused: {e} (check --kubeconfig and --context)", spec.kube.describe()),
        Err(_) => {}
    }
    let checks = spec.ssh.check_all(ssh);
    let mut unreachable = vec![];
    for (name, r) in &checks {
        match r {
            Ok(()) => {}
            Err(e) if e.is_transient() => unreachable.push(format!("{name}: {e}")),
            Err(e) => bail!("SSH to {name} is refused: {e} (check --ssh-user, --ssh-identity, --known-hosts, --ssh-config)"),
        }
    }
    let answering = checks.len() - unreachable.len();
    match api_result {
        Err(e) if answering == 0 => bail!(
            "the cluster is not reachable: the API {} does not answer ({e}) and no control-plane host answers SSH ({}). \
             Check --kubeconfig, --context and --hosts, or pass --sim <scenario> to rehearse against the simulator",
            spec.kube.describe(),
            unreachable.join("; ")
        ),
        Err(e) => eprintln!(
            "drctl: warning: the API does not answer ({e}); {answering} of {} hosts answer SSH. API steps are retried until it is back (within --deadline)",
            checks.len()
        ),
        Ok(_) if !unreachable.is_empty() => eprintln!("drctl: warning: not answering SSH: {}", unreachable.join("; ")),
        Ok(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_parses_names_addresses_and_nodes() {
        let h = parse_inventory("master-0=10.0.131.183@ip-10-0-131-183.ec2.internal, master-1=master-1.example.com").unwrap();
        assert_eq!(
            h[0],
            InventoryHost { name: "master-0".into(), address: "10.0.131.183".into(), node: "ip-10-0-131-183.ec2.internal".into() }
        );
        assert_eq!(h[1], InventoryHost { name: "master-1".into(), address: "master-1.example.com".into(), node: "master-1".into() });
        assert_eq!(inventory_spec(&h), "master-0=10.0.131.183@ip-10-0-131-183.ec2.internal,master-1=master-1.example.com");
        assert_eq!(parse_inventory(&inventory_spec(&h)).unwrap(), h);
        for bad in ["", "master-0", "=10.0.0.1", "m=", "m=a b", "a/b=1.2.3.4", "m=1.2.3.4,m=1.2.3.5", "m=1.2.3.4@", "m=$(id)"] {
            assert!(parse_inventory(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn workers_are_a_second_inventory_of_distinct_hosts() {
        let args = |workers: &str| AccessArgs {
            hosts: Some("master-0=10.0.0.10".into()),
            workers: Some(workers.into()),
            ssh_user: Some("core".into()),
            ..AccessArgs::default()
        };
        let spec = SshSpec::from_args(&args("worker-0=10.0.1.10,worker-1=10.0.1.11@compute-1")).unwrap().unwrap();
        assert_eq!(spec.workers.len(), 2);
        assert_eq!(spec.workers[1].node, "compute-1");
        let both = SshSpec::from_args(&args("master-0=10.0.1.10")).unwrap_err().to_string();
        assert!(both.contains("both --hosts and --workers"), "{both}");
        let bad = SshSpec::from_args(&args("worker-0")).unwrap_err().to_string();
        assert!(bad.starts_with("--workers entry 'worker-0'"), "{bad}");
        let alone = AccessArgs { workers: Some("worker-0=10.0.1.10".into()), ..AccessArgs::default() };
        assert!(SshSpec::from_args(&alone).unwrap_err().to_string().contains("--workers needs --hosts"));
    }
}
