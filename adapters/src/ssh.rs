//! [`Hosts`] over SSH with the `openssh` crate (native mux): one multiplexed master connection
//! per host, made by the system `ssh` client, so the operator's `~/.ssh/config`, keys, agent and
//! `known_hosts` apply (or an explicit `-F config` for tests).
//!
//! Every [`HostOp`] is rendered by the pure [`render`] to one POSIX shell command line in which
//! each word is quoted ([`crate::shell::quote`]); nothing reaches the remote shell unquoted.
//! Privileged commands carry `sudo` exactly as the runbook types them
//! (`sudo mv -v /etc/kubernetes/manifests/etcd-pod.yaml /tmp`). A [`HostLayout`] can put every
//! host path under a root directory and the tools in a `bin_dir`, and drop `sudo`: that is how
//! the tests drive a sandbox directory through a real sshd.
//!
//! Failures are classified where they enter:
//! - the connection could not be made or was lost: [`PortError::Transient`];
//! - the command ran and exited non-zero: [`PortError::Permanent`] with its stderr, or
//!   [`PortError::NotFound`] when the file the operation needs is missing;
//! - a lost connection is re-established and the operation retried once, but only when
//!   [`is_idempotent`] says so; `Shutdown` and `RunRestore` are fenced by the procedure instead.

use crate::blocking::Blocking;
use crate::shell::{join, quote};
use drctl_workflows::ports::{
    BackupInfo, EtcdProbe, HostOp, HostOutput, HostRef, Hosts, LegacyEtcdIdentity, LegacyScript, PortError, PortResult, SnapshotStatus,
    StaticPod,
};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Exit status our rendered commands use for "the file this needs does not exist".
pub const EXIT_NOT_FOUND: i32 = 44;
/// Exit status for "passwordless sudo is not available".
pub const EXIT_NO_SUDO: i32 = 45;
/// Exit status for "a fenced restore started earlier is still running on the host".
pub const EXIT_RESTORE_RUNNING: i32 = 46;
/// Exit status for "a fenced restore started earlier and ended without finishing".
pub const EXIT_RESTORE_HALF_DONE: i32 = 47;

/// The name of the file written beside each backup set.
pub const BACKUP_INFO_FILE: &str = "backup-info.json";

// ---------------------------------------------------------------------------------------------
// Layout and rendering (pure)
// ---------------------------------------------------------------------------------------------

/// Where things are on a host, and how commands are run there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    /// Prefix for every host path: `""` on a real host, a sandbox directory in tests
    /// (`/tmp/sandbox-master-0` makes `/etc/kubernetes/manifests` into
    /// `/tmp/sandbox-master-0/etc/kubernetes/manifests`).
    pub root: String,
    /// Run privileged commands with `sudo` (as the runbook does). Off in sandbox tests.
    pub sudo: bool,
    /// When set, every external tool (`crictl`, `systemctl`, `ip`, `shutdown`, `etcdctl`,
    /// `cluster-backup.sh`, `cluster-restore.sh`) is run from this directory.
    pub bin_dir: Option<String>,
}

impl Default for HostLayout {
    fn default() -> Self {
        HostLayout::real()
    }
}

impl HostLayout {
    /// A real control-plane host (RHCOS): paths as they are, tools where OpenShift puts them,
    /// privileged commands through `sudo`.
    pub fn real() -> Self {
        HostLayout { root: String::new(), sudo: true, bin_dir: None }
    }

    /// A sandbox directory standing for a host: every path under `root`, tools from
    /// `<root>/usr/local/bin`, no `sudo`.
    pub fn sandbox(root: impl Into<String>) -> Self {
        let root = root.into().trim_end_matches('/').to_string();
        let bin = format!("{root}/usr/local/bin");
        HostLayout { root, sudo: false, bin_dir: Some(bin) }
    }

    /// A host path (absolute, as the runbook names it) under this layout's root.
    pub fn path(&self, logical: &str) -> PortResult<String> {
        if !logical.starts_with('/') {
            return Err(PortError::Permanent(format!("host path must be absolute: {logical:?}")));
        }
        if logical.contains('\0') {
            return Err(PortError::Permanent(format!("host path contains a NUL byte: {logical:?}")));
        }
        Ok(format!("{}{}", self.root, logical))
    }

    fn fixed(&self, logical: &'static str) -> String {
        format!("{}{}", self.root, logical)
    }

    /// An external tool: from `bin_dir` when set, else its usual place on RHCOS.
    fn tool(&self, name: &'static str) -> String {
        match &self.bin_dir {
            Some(dir) => format!("{}/{}", dir.trim_end_matches('/'), name),
            None => match name {
                // Installed by OpenShift (cluster-backup.sh fetches etcdctl there).
                "cluster-backup.sh"
                | "cluster-restore.sh"
                | "etcdctl"
                | "etcd-snapshot-restore.sh"
                | "tokenize-signer.sh"
                | "etcd-member-recover.sh" => format!("/usr/local/bin/{name}"),
                _ => name.to_string(),
            },
        }
    }

    /// `sudo` words to put before a privileged command.
    fn sudo(&self) -> &'static [&'static str] {
        if self.sudo {
            &["sudo"]
        } else {
            &[]
        }
    }

    /// A privileged command line: `sudo` + the quoted words.
    fn priv_cmd(&self, words: &[&str]) -> String {
        join(self.sudo().iter().copied().chain(words.iter().copied()))
    }

    /// The guard every script starts with under sudo: fail clearly when sudo needs a password,
    /// instead of letting `sudo test -e` read as "absent".
    fn preamble(&self) -> String {
        if self.sudo {
            format!("sudo -n true 2>/dev/null || {{ echo 'drctl: passwordless sudo is required' >&2; exit {EXIT_NO_SUDO}; }}; ")
        } else {
            String::new()
        }
    }
}

const MANIFESTS: &str = "/etc/kubernetes/manifests";
const ASIDE: &str = "/tmp";
const ETCD_DATA: &str = "/var/lib/etcd";
const KUBELET_PKI: &str = "/var/lib/kubelet/pki";
const OVN_DB_DIR: &str = "/var/lib/ovn/etc";
const OVN_IC_DB_DIR: &str = "/var/lib/ovn-ic/etc";
/// The cluster-wide proxy as the Machine Config Operator writes it on every node
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`): sourced on the host itself, so the values (which
/// may carry credentials) never pass through drctl.
const MCO_PROXY_ENV: &str = "/etc/mco/proxy.env";
/// Export the cluster-wide proxy, if the node has one, into the shell that runs a script.
const SOURCE_PROXY: &str = "set -a; if [ -r \"$DRCTL_PROXY_ENV\" ]; then . \"$DRCTL_PROXY_ENV\"; fi; set +a";
/// The kubeconfig the runbook exports on the recovery host for step 19.
const RECOVERY_KUBECONFIG: &str =
    "/etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig";
const KUBELET_CLIENT_CERT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
/// The machine-config daemon's copy of the rendered MachineConfig the host runs; its
/// `machineconfiguration.openshift.io/release-image-version` annotation is the release.
const MCD_CURRENT_CONFIG: &str = "/etc/machine-config-daemon/currentconfig";
const RELEASE_ANNOTATION: &str = "machineconfiguration.openshift.io/release-image-version";

/// Where the 4.1–4.3 `etcd-member` pod's setup writes the member's environment.
const RUN_ETCD_ENVIRONMENT: &str = "/run/etcd/environment";
/// The port the temporary etcd signer of 4.1–4.3 listens on.
pub const LEGACY_SIGNER_PORT: u16 = 9943;
const HOSTNAME_MARK: &str = "DRCTL_HOSTNAME=";
/// Where `tokenize-signer.sh`, run from `/home/core`, renders the signer pod.
const LEGACY_SIGNER_MANIFEST: &str = "/home/core/assets/manifests/kube-etcd-cert-signer.yaml";

/// Where a fenced restore leaves its marker on the host.
pub const FENCE_DIR: &str = "/var/lib/drctl/fences";

/// The marker file of fence token `fence`; the token must be a plain file name.
pub fn fence_marker(fence: &str) -> PortResult<String> {
    let ok = !fence.is_empty() && fence != "." && fence != ".." && !fence.contains('/') && !fence.contains('\0');
    if !ok {
        return Err(PortError::Permanent(format!("invalid fence token {fence:?}")));
    }
    Ok(format!("{FENCE_DIR}/{fence}"))
}

/// Markers our scripts print so the output is parsed, not guessed.
const MOVED_YES: &str = "DRCTL_MOVED=yes";
const MOVED_NO: &str = "DRCTL_MOVED=no";
const PRESENT_YES: &str = "DRCTL_PRESENT=yes";
const PRESENT_NO: &str = "DRCTL_PRESENT=no";
const FILES_MARK: &str = "DRCTL_FILES";
const ETCD_NO_ANSWER: &str = "DRCTL_ETCD_NO_ANSWER";
const ETCD_ANSWERS: &str = "DRCTL_ETCD_ANSWERS";
/// The etcd serving CA and the per-node peer certificates, as the etcd operator installs them
/// on every control-plane host (the peer certificates are valid for client authentication).
const ETCD_SERVING_CA: &str = "/etc/kubernetes/static-pod-resources/etcd-certs/configmaps/etcd-serving-ca/ca-bundle.crt";
const ETCD_ALL_CERTS: &str = "/etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs";

/// Whether repeating `op` after an unknown outcome (connection lost mid-way) is safe. Every
/// operation is observe-then-act or naturally repeatable, except shutting a host down and running
/// the restore script, which the procedure fences itself.
pub fn is_idempotent(op: &HostOp) -> bool {
    match op {
        HostOp::Shutdown { .. } | HostOp::RunRestore { .. } | HostOp::RunLegacyScript { .. } => false,
        HostOp::MoveManifestOut(_)
        | HostOp::MoveManifestIn(_)
        | HostOp::ManifestPresent(_)
        | HostOp::RunningContainers { .. }
        | HostOp::MoveEtcdDataDirAside
        | HostOp::ListAddresses
        | HostOp::RemoveAddress { .. }
        | HostOp::RemoveKubeletPki
        | HostOp::RestartKubelet
        | HostOp::RemoveOvnDatabases
        | HostOp::RunBackup { .. }
        | HostOp::SnapshotStatus { .. }
        | HostOp::ListDir { .. }
        | HostOp::MakePrivateDir { .. }
        | HostOp::ReleaseVersion
        | HostOp::ProbeEtcd { .. }
        | HostOp::RemoveOvnIcDatabases
        | HostOp::RestartOvs
        | HostOp::KubeletNodeName
        | HostOp::ForceEtcdRedeploymentLocally { .. }
        | HostOp::LegacyStartSigner { .. }
        | HostOp::LegacyEtcdIdentity
        | HostOp::LegacySignerListening
        | HostOp::LegacyMemberList => true,
    }
}

/// How long an operation may take before it counts as hung (transient).
pub fn op_timeout(op: &HostOp) -> Duration {
    match op {
        HostOp::RunBackup { .. } | HostOp::RunRestore { .. } | HostOp::RunLegacyScript { .. } => Duration::from_secs(30 * 60),
        HostOp::RestartKubelet | HostOp::SnapshotStatus { .. } => Duration::from_secs(5 * 60),
        _ => Duration::from_secs(2 * 60),
    }
}

/// Idempotent move of `src` into directory `dir` (landing at `dst`): moves when `src` exists,
/// reports "already moved" when only `dst` does, and fails with [`EXIT_NOT_FOUND`] otherwise.
fn move_script(l: &HostLayout, src: &str, src_arg: &str, dir: &str, dst: &str) -> String {
    format!(
        "{pre}if {test_src}; then {mv} && echo {MOVED_YES}; elif {test_dst}; then echo {MOVED_NO}; else echo {msg} >&2; exit {EXIT_NOT_FOUND}; fi",
        pre = l.preamble(),
        test_src = l.priv_cmd(&["test", "-e", src]),
        mv = l.priv_cmd(&["mv", "-v", src_arg, dir]),
        test_dst = l.priv_cmd(&["test", "-e", dst]),
        msg = quote(&format!("drctl: neither {src} nor {dst} exists")),
    )
}

/// Remove files matching `pattern` directly in `dir` (no shell glob: `find` matches), if `dir`
/// exists. Repeatable.
fn remove_matching_script(l: &HostLayout, dir: &str, pattern: &str) -> String {
    format!(
        "{pre}if {test_dir}; then {find}; fi",
        pre = l.preamble(),
        test_dir = l.priv_cmd(&["test", "-d", dir]),
        find = l.priv_cmd(&["find", dir, "-maxdepth", "1", "-name", pattern, "!", "-type", "d", "-print", "-delete"]),
    )
}

/// Run `cmd` only if `path` exists; else fail with [`EXIT_NOT_FOUND`].
fn require_then(l: &HostLayout, path: &str, cmd: &str) -> String {
    format!(
        "{pre}if {test}; then {cmd}; else echo {msg} >&2; exit {EXIT_NOT_FOUND}; fi",
        pre = l.preamble(),
        test = l.priv_cmd(&["test", "-e", path]),
        msg = quote(&format!("drctl: no such file or directory: {path}")),
    )
}

/// `oc adm release info --image-for NAME` of the cluster's release, as root (the runbook's
/// `sudo oc login` gave root its credentials), with the node's pull secret.
fn release_image(l: &HostLayout, name: &str) -> String {
    join([l.tool("oc").as_str(), "adm", "release", "info", "--image-for", name, "--registry-config=/var/lib/kubelet/config.json"])
}

/// A script that is not idempotent and runs for minutes, fenced twice: a `started` marker holding
/// its pid is written before it runs (the shell execs into the script, so the pid is the
/// script's), the `done` marker right after it succeeds. A host with `started` but not `done`
/// either still runs it (a dropped connection: wait) or ran it halfway (a person must look:
/// `inspect`): never started again. `setup` runs first in the same shell (exports); the
/// cluster-wide proxy is exported from the node's own copy.
fn fenced_script(l: &HostLayout, fence: &str, inspect: &str, setup: &str, words: &[&str]) -> PortResult<String> {
    let done = l.path(&fence_marker(fence)?)?;
    let started = format!("{done}.started");
    let script = words.first().map(|w| w.rsplit('/').next().unwrap_or(w)).unwrap_or_default();
    let inner = format!(
        "DRCTL_PROXY_ENV={}; {SOURCE_PROXY}; {setup}echo $$ > {} && exec {}",
        quote(&l.fixed(MCO_PROXY_ENV)),
        quote(&started),
        join(words.iter().copied()),
    );
    // `sudo -E`: the scripts need the exported environment, as the runbook says.
    let cmd = if l.sudo { join(["sudo", "-E", "sh", "-c", inner.as_str()]) } else { join(["sh", "-c", inner.as_str()]) };
    let pid = format!("\"$({})\"", l.priv_cmd(&["cat", &started]));
    let (noun, host) = match script == "cluster-restore.sh" {
        true => ("restore", "a half-restored host"),
        false => (script, "a half-done host"),
    };
    Ok(format!(
        "{pre}if {test_done}; then echo {already}; elif {test_started}; then \
         if {alive} {pid} 2>/dev/null; then echo {running} >&2; exit {EXIT_RESTORE_RUNNING}; \
         else echo {half} >&2; exit {EXIT_RESTORE_HALF_DONE}; fi; \
         else {mkdir} && {cmd} && {mark_done}; fi",
        pre = l.preamble(),
        test_done = l.priv_cmd(&["test", "-e", &done]),
        already = quote(&format!("drctl: {noun} {fence} already ran on this host")),
        test_started = l.priv_cmd(&["test", "-e", &started]),
        alive = l.priv_cmd(&["kill", "-0"]),
        running = quote(&format!("drctl: {noun} {fence} is still running on this host (started by an earlier attempt)")),
        half = quote(&format!(
            "drctl: {noun} {fence} was started on this host and ended without finishing: {script} must not be run \
             again on {host}; {inspect}, then resume"
        )),
        mkdir = l.priv_cmd(&["install", "-d", "-m", "0700", &l.fixed(FENCE_DIR)]),
        mark_done = l.priv_cmd(&["install", "-D", "-m", "0600", "/dev/null", &done]),
    ))
}

/// Render a host operation to the command line sent to the host's shell. Pure; every word is
/// quoted.
pub fn render(op: &HostOp, l: &HostLayout) -> PortResult<String> {
    Ok(match op {
        HostOp::MoveManifestOut(pod) => {
            let src = l.fixed(MANIFESTS) + "/" + pod.manifest_file();
            let dir = l.fixed(ASIDE);
            let dst = format!("{dir}/{}", pod.manifest_file());
            move_script(l, &src, &src, &dir, &dst)
        }
        HostOp::MoveManifestIn(pod) => {
            let src = l.fixed(ASIDE) + "/" + pod.manifest_file();
            let dir = l.fixed(MANIFESTS);
            let dst = format!("{dir}/{}", pod.manifest_file());
            move_script(l, &src, &src, &dir, &dst)
        }
        HostOp::ManifestPresent(pod) => {
            let p = l.fixed(MANIFESTS) + "/" + pod.manifest_file();
            format!("{}if {}; then echo {PRESENT_YES}; else echo {PRESENT_NO}; fi", l.preamble(), l.priv_cmd(&["test", "-e", &p]))
        }
        HostOp::RunningContainers { name } => {
            let crictl = l.tool("crictl");
            format!("{}{}", l.preamble(), l.priv_cmd(&[&crictl, "ps", "--name", name, "-o", "json"]))
        }
        HostOp::MoveEtcdDataDirAside => {
            let src = l.fixed(ETCD_DATA);
            let dir = l.fixed(ASIDE);
            let dst = format!("{dir}/etcd");
            // `mv -v /var/lib/etcd/ /tmp`, trailing slash as in the runbook.
            move_script(l, &src, &format!("{src}/"), &dir, &dst)
        }
        HostOp::ListAddresses => join([l.tool("ip").as_str(), "-o", "address"]),
        HostOp::RemoveAddress { address, device } => {
            // `ip -o address` lists addresses bare here; `ip address del` wants the prefix length,
            // so take it from the host's own listing. Nothing listed: already removed.
            let bare = address.split('/').next().unwrap_or(address);
            format!(
                "{pre}cidr=$({show} 2>/dev/null | awk {awk_var} {awk_prog}); if [ -n \"$cidr\" ]; then {del} \"$cidr\" dev {dev}; fi",
                pre = l.preamble(),
                show = join([l.tool("ip").as_str(), "-o", "address", "show", "dev", device]),
                awk_var = join(["-v", &format!("a={bare}")]),
                awk_prog = quote("{ split($4, p, \"/\"); if (p[1] == a) { print $4; exit } }"),
                del = l.priv_cmd(&[&l.tool("ip"), "address", "del"]),
                dev = quote(device),
            )
        }
        HostOp::RemoveKubeletPki => remove_matching_script(l, &l.fixed(KUBELET_PKI), "*.pem"),
        HostOp::RestartKubelet => format!("{}{}", l.preamble(), l.priv_cmd(&[&l.tool("systemctl"), "restart", "kubelet.service"])),
        HostOp::RemoveOvnDatabases => remove_matching_script(l, &l.fixed(OVN_DB_DIR), "*.db"),
        HostOp::RemoveOvnIcDatabases => remove_matching_script(l, &l.fixed(OVN_IC_DB_DIR), "*.db"),
        HostOp::ForceEtcdRedeploymentLocally { reason } => {
            let patch = serde_json::json!({ "spec": { "forceRedeploymentReason": reason } }).to_string();
            let kubeconfig = l.fixed(RECOVERY_KUBECONFIG);
            let oc = l.tool("oc");
            format!(
                "{}{}",
                l.preamble(),
                l.priv_cmd(&[&oc, "--kubeconfig", &kubeconfig, "patch", "etcd", "cluster", "--type=merge", "-p", &patch])
            )
        }
        HostOp::RestartOvs => {
            format!("{}{}", l.preamble(), l.priv_cmd(&[&l.tool("systemctl"), "restart", "ovs-vswitchd", "ovsdb-server"]))
        }
        HostOp::KubeletNodeName => {
            let pem = l.fixed(KUBELET_CLIENT_CERT);
            format!(
                "{pre}if {test}; then {subject}; fi",
                pre = l.preamble(),
                test = l.priv_cmd(&["test", "-e", &pem]),
                subject = l.priv_cmd(&[&l.tool("openssl"), "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", &pem]),
            )
        }
        HostOp::RunBackup { dir } => {
            let d = l.path(dir)?;
            // §5.1.1 step 3: with a cluster-wide proxy, the script runs with its variables
            // exported (it may pull an image to get etcdctl).
            let script = format!("{SOURCE_PROXY}; exec \"$0\" \"$1\"");
            let proxy_env = format!("DRCTL_PROXY_ENV={}", l.fixed(MCO_PROXY_ENV));
            format!(
                "{pre}{backup} && echo {FILES_MARK} && {list}",
                pre = l.preamble(),
                backup = l.priv_cmd(&["env", &proxy_env, "sh", "-c", &script, &l.tool("cluster-backup.sh"), &d]),
                list = l.priv_cmd(&["find", &d, "-mindepth", "1", "-maxdepth", "1", "-type", "f", "-printf", "%f\\n"]),
            )
        }
        HostOp::SnapshotStatus { path } => {
            let p = l.path(path)?;
            let cmd = l.priv_cmd(&["env", "ETCDCTL_API=3", &l.tool("etcdctl"), "snapshot", "status", &p, "-w", "json"]);
            require_then(l, &p, &cmd)
        }
        HostOp::RunRestore { dir, fence } => {
            let d = l.path(dir)?;
            let restore = l.tool("cluster-restore.sh");
            // §5.4.2.2 step 7: the cluster-wide proxy exported for the script, from the node's own
            // copy (an SSH session has none for `sudo -E` to pass on).
            fenced_script(l, fence, &format!("inspect {dir} and the etcd member"), "", &[&restore, &d])?
        }
        HostOp::RunLegacyScript { script, fence } => {
            let tool = l.tool(script.file());
            match script {
                LegacyScript::SnapshotRestore { dir, initial_cluster } => {
                    let d = l.path(dir)?;
                    fenced_script(l, fence, &format!("inspect {dir} and the etcd-member pod"), "", &[&tool, &d, initial_cluster])?
                }
                LegacyScript::MemberRecover { signer_ip, member_name } => {
                    // The two images the script runs, from the cluster's release (root's `oc`
                    // carries the runbook's `oc login`).
                    let images = format!(
                        "set -a; SETUP_ETCD_ENVIRONMENT=\"$({})\" && KUBE_CLIENT_AGENT=\"$({})\" && set +a && ",
                        release_image(l, "machine-config-operator"),
                        release_image(l, "kube-client-agent")
                    );
                    let what = format!("inspect the etcd-member pod and `etcdctl member list` for {member_name}");
                    fenced_script(l, fence, &what, &images, &[&tool, signer_ip, member_name])?
                }
            }
        }
        HostOp::LegacyStartSigner { hostname } => {
            // tokenize-signer.sh renders into `./assets`: the home directory the runbook (and an
            // SSH session as `core`) works in.
            let manifest = l.fixed(LEGACY_SIGNER_MANIFEST);
            let manifest = manifest.as_str();
            let oc = l.tool("oc");
            let inner = format!(
                "set -a; KUBE_ETCD_SIGNER_SERVER=\"$({image})\" && set +a && {tokenize} && \
                 {{ out=$({create} 2>&1) || {get} || {{ echo \"$out\" >&2; exit 1; }}; }}",
                image = release_image(l, "kube-etcd-signer-server"),
                tokenize = join([l.tool("tokenize-signer.sh").as_str(), hostname]),
                create = join([oc.as_str(), "create", "-f", manifest]),
                get = join([oc.as_str(), "get", "pod", "-n", "openshift-config", "etcd-signer", "-o", "name"]),
            );
            let cmd = if l.sudo { join(["sudo", "-E", "sh", "-c", inner.as_str()]) } else { join(["sh", "-c", inner.as_str()]) };
            format!("{}{cmd}", l.preamble())
        }
        HostOp::LegacyEtcdIdentity => {
            let env = l.fixed(RUN_ETCD_ENVIRONMENT);
            format!(
                "{pre}printf '{HOSTNAME_MARK}%s\\n' \"$({hostname})\"; if {test}; then {grep} || true; fi",
                pre = l.preamble(),
                hostname = l.tool("hostname"),
                test = l.priv_cmd(&["test", "-r", &env]),
                grep = l.priv_cmd(&["grep", "-E", "^ETCD_DNS_NAME=", &env]),
            )
        }
        HostOp::LegacySignerListening => join([l.tool("ss").as_str(), "-ltn"]),
        HostOp::LegacyMemberList => {
            let crictl = l.tool("crictl");
            // As the runbook does: into the etcd-member container, its peer certificate found by
            // name (it carries the host's etcd DNS name).
            let etcdctl = "export ETCDCTL_API=3 ETCDCTL_CACERT=/etc/ssl/etcd/ca.crt \
                           ETCDCTL_CERT=$(find /etc/ssl/ -name '*peer*crt') ETCDCTL_KEY=$(find /etc/ssl/ -name '*peer*key'); \
                           etcdctl member list -w json";
            format!(
                "{pre}id=$({ps} | head -n 1); if [ -z \"$id\" ]; then echo {none} >&2; exit 1; fi; {exec} \"$id\" /bin/sh -c {script}",
                pre = l.preamble(),
                ps = l.priv_cmd(&[&crictl, "ps", "--name", "etcd-member", "-q"]),
                none = quote("drctl: no etcd-member container runs on this host: context deadline exceeded"),
                exec = l.priv_cmd(&[&crictl, "exec"]),
                script = quote(etcdctl),
            )
        }
        HostOp::ListDir { dir } => {
            let d = l.path(dir)?;
            format!(
                "{pre}if {test}; then {find}; fi",
                pre = l.preamble(),
                test = l.priv_cmd(&["test", "-d", &d]),
                find = l.priv_cmd(&["find", &d, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"]),
            )
        }
        HostOp::MakePrivateDir { dir } => {
            let d = l.path(dir)?;
            format!("{}{}", l.preamble(), l.priv_cmd(&["install", "-d", "-m", "0700", &d]))
        }
        HostOp::ReleaseVersion => {
            let p = l.fixed(MCD_CURRENT_CONFIG);
            require_then(l, &p, &l.priv_cmd(&["cat", &p]))
        }
        HostOp::Shutdown { minutes } => {
            format!("{}{}", l.preamble(), l.priv_cmd(&[&l.tool("shutdown"), "-h", &minutes.to_string()]))
        }
        HostOp::ProbeEtcd { address, client_node } => probe_etcd_script(l, address, client_node)?,
    })
}

/// Whether anything listens on `address`'s etcd client or peer port (bash's `/dev/tcp`, bounded
/// by `timeout`), then `/health` on the client port with `client_node`'s peer certificate.
fn probe_etcd_script(l: &HostLayout, address: &str, client_node: &str) -> PortResult<String> {
    let ip_like = !address.is_empty() && address.chars().all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':');
    if !ip_like {
        return Err(PortError::Permanent(format!("etcd probe: {address:?} is not an IP address")));
    }
    let node_ok = !client_node.is_empty() && client_node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !node_ok {
        return Err(PortError::Permanent(format!("etcd probe: {client_node:?} is not a node name")));
    }
    let host = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
    let port_open =
        |port: &str| join([l.tool("timeout").as_str(), "3", "bash", "-c", "exec 3<>\"/dev/tcp/$0/$1\"", address, port]) + " 2>/dev/null";
    let certs = l.fixed(ETCD_ALL_CERTS);
    let curl = l.priv_cmd(&[
        &l.tool("curl"),
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &l.fixed(ETCD_SERVING_CA),
        "--cert",
        &format!("{certs}/etcd-peer-{client_node}.crt"),
        "--key",
        &format!("{certs}/etcd-peer-{client_node}.key"),
        &format!("https://{host}:2379/health"),
    ]);
    Ok(format!(
        "{pre}if {p1} || {p2}; then echo {ETCD_ANSWERS}; {curl} 2>&1; echo; else echo {ETCD_NO_ANSWER}; fi",
        pre = l.preamble(),
        p1 = port_open("2379"),
        p2 = port_open("2380"),
    ))
}

/// The node name in `openssl x509 -subject -nameopt RFC2253` output
/// (`subject=CN=system:node:master-0,O=system:nodes`); nothing printed: no certificate.
fn parse_kubelet_subject(stdout: &str) -> Option<String> {
    let (_, rest) = stdout.split_once("CN=system:node:")?;
    let name: String = rest.chars().take_while(|c| *c != ',' && *c != '+' && !c.is_whitespace()).collect();
    (!name.is_empty()).then_some(name)
}

/// The probe's answer: nothing listening, `/health` true, or what the member said instead.
fn parse_etcd_probe(stdout: &str) -> PortResult<EtcdProbe> {
    let mut lines = stdout.lines().map(str::trim).skip_while(|l| *l != ETCD_ANSWERS && *l != ETCD_NO_ANSWER);
    match lines.next() {
        Some(ETCD_NO_ANSWER) => Ok(EtcdProbe::NoAnswer),
        Some(_) => {
            let said: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
            let said = said.join(" ");
            let healthy = serde_json::from_str::<serde_json::Value>(&said)
                .ok()
                .and_then(|v| v.get("health").and_then(|h| h.as_str()).map(|h| h == "true"))
                .unwrap_or(false);
            match healthy {
                true => Ok(EtcdProbe::Healthy),
                false => Ok(EtcdProbe::Unhealthy(said.chars().take(300).collect())),
            }
        }
        None => Err(PortError::Permanent(format!("etcd probe: unexpected output {:?}", stdout.trim()))),
    }
}

/// What a finished remote command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Classify a command that ran: exit 0 passes, [`EXIT_NOT_FOUND`] is [`PortError::NotFound`],
/// anything else is [`PortError::Permanent`] carrying stderr.
pub fn classify_exit(what: &str, out: &ExecOutput) -> PortResult<()> {
    match out.code {
        0 => Ok(()),
        EXIT_NOT_FOUND => Err(PortError::NotFound(format!("{what}: {}", out.stderr_str()))),
        EXIT_NO_SUDO => Err(PortError::Permanent(format!("{what}: {}", out.stderr_str()))),
        // Passing: the earlier attempt's script will end; look again then.
        EXIT_RESTORE_RUNNING => Err(PortError::Transient(format!("{what}: {}", out.stderr_str()))),
        EXIT_RESTORE_HALF_DONE => Err(PortError::Permanent(format!("{what}: {}", out.stderr_str()))),
        code => {
            let err = out.stderr_str();
            let err = if err.is_empty() { out.stdout_str().trim().to_string() } else { err };
            Err(PortError::Permanent(format!("{what}: exit status {code}: {err}")))
        }
    }
}

fn parse_moved(stdout: &str) -> PortResult<HostOutput> {
    for line in stdout.lines().rev() {
        match line.trim() {
            MOVED_YES => return Ok(HostOutput::Moved { moved: true }),
            MOVED_NO => return Ok(HostOutput::Moved { moved: false }),
            _ => {}
        }
    }
    Err(PortError::Permanent(format!("unexpected output of a move: {stdout:?}")))
}

/// Names of running containers from `crictl ps -o json`, minus the operator and guard containers
/// the runbook filters out (`egrep -v "operator|guard"`).
pub fn parse_crictl_ps(stdout: &str) -> PortResult<Vec<String>> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).map_err(|e| PortError::Permanent(format!("crictl ps -o json: {e}: {}", stdout.trim())))?;
    let mut names = Vec::new();
    for c in v.get("containers").and_then(|c| c.as_array()).map(|a| a.as_slice()).unwrap_or(&[]) {
        let running = c.get("state").and_then(|s| s.as_str()).map(|s| s == "CONTAINER_RUNNING").unwrap_or(true);
        let name = c.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or_default();
        if running && !name.is_empty() && !name.contains("operator") && !name.contains("guard") {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// `(address, device)` pairs from `ip -o address`, the address without its prefix length
/// (`192.168.111.5`), as the runbook compares it with the VIPs.
pub fn parse_ip_addresses(stdout: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let mut f = line.split_whitespace();
        let (Some(_idx), Some(dev), Some(family), Some(addr)) = (f.next(), f.next(), f.next(), f.next()) else { continue };
        if family == "inet" || family == "inet6" {
            // `eth0@if12` for veth pairs: the device is before the `@`.
            let dev = dev.split('@').next().unwrap_or(dev);
            let bare = addr.split('/').next().unwrap_or(addr);
            out.push((bare.to_string(), dev.to_string()));
        }
    }
    out
}

fn parse_snapshot_status(stdout: &str) -> PortResult<SnapshotStatus> {
    // etcdctl may print log lines first; the JSON object is the last line that parses.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        hash: u64,
        revision: u64,
        total_key: u64,
        total_size: u64,
    }
    for line in stdout.lines().rev() {
        if let Ok(r) = serde_json::from_str::<Raw>(line.trim()) {
            return Ok(SnapshotStatus { hash: r.hash, revision: r.revision, total_key: r.total_key, total_size: r.total_size });
        }
    }
    Err(PortError::Permanent(format!("etcdctl snapshot status: no JSON status in output: {}", stdout.trim())))
}

/// `DRCTL_HOSTNAME=<name>` and, when the setup wrote it, `ETCD_DNS_NAME=<name>`.
fn parse_legacy_identity(stdout: &str) -> PortResult<LegacyEtcdIdentity> {
    let value = |prefix: &str| stdout.lines().find_map(|l| l.trim().strip_prefix(prefix)).map(|v| v.trim().trim_matches('"').to_string());
    let hostname = value(HOSTNAME_MARK).filter(|h| !h.is_empty());
    let Some(hostname) = hostname else {
        return Err(PortError::Permanent(format!("read the etcd member's host name: unexpected output {stdout:?}")));
    };
    Ok(LegacyEtcdIdentity { hostname, dns_name: value("ETCD_DNS_NAME=").filter(|d| !d.is_empty()) })
}

/// Whether `ss -ltn` lists a listening socket on `port` (any address).
fn listens_on(stdout: &str, port: u16) -> bool {
    let suffix = format!(":{port}");
    stdout.lines().any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.first() == Some(&"LISTEN") && cols.get(3).is_some_and(|local| local.ends_with(&suffix))
    })
}

fn parse_release_version(stdout: &str) -> PortResult<String> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).map_err(|e| PortError::Permanent(format!("{MCD_CURRENT_CONFIG} is not a MachineConfig JSON: {e}")))?;
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(RELEASE_ANNOTATION))
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| PortError::Permanent(format!("{MCD_CURRENT_CONFIG} has no {RELEASE_ANNOTATION} annotation")))
}

/// Pick the newest complete backup (`snapshot_<ts>.db` with its `static_kuberesources_<ts>.tar.gz`)
/// among the names `cluster-backup.sh` left in `dir`: never a snapshot of one backup with the
/// resources of another. Returns the file NAMES, as [`HostOutput::Backup`] carries them (the
/// procedure joins them to its directory).
pub fn pick_backup_files(dir: &str, names: &[&str]) -> PortResult<(String, String)> {
    drctl_workflows::backup_files::newest_complete_pair(names).ok_or_else(|| {
        PortError::Permanent(format!(
            "cluster-backup.sh left no snapshot_<ts>.db with its static_kuberesources_<ts>.tar.gz in {dir}: {names:?}"
        ))
    })
}

/// What `oc` and `etcdctl` print when the cluster is not answering yet (a local kube-apiserver
/// still starting, etcd without quorum or electing a leader): a passing condition, not a fault
/// of the command.
const CLUSTER_NOT_ANSWERING: &[&str] = &[
    "The connection to the server",
    "Unable to connect to the server",
    "connection refused",
    "etcdserver: request timed out",
    "etcdserver: no leader",
    "etcdserver: leader changed",
    "context deadline exceeded",
    "the server is currently unable to handle the request",
    "TLS handshake timeout",
    "i/o timeout",
];

/// Operations whose command talks to the cluster (the local API server or etcd) rather than
/// only to the host.
fn talks_to_cluster(op: &HostOp) -> bool {
    matches!(
        op,
        HostOp::RunBackup { .. }
            | HostOp::ForceEtcdRedeploymentLocally { .. }
            | HostOp::LegacyStartSigner { .. }
            | HostOp::LegacyMemberList
            | HostOp::RunLegacyScript { script: LegacyScript::MemberRecover { .. }, .. }
    )
}

/// Turn a finished command's output into the operation's result.
pub fn interpret(op: &HostOp, out: &ExecOutput) -> PortResult<HostOutput> {
    let what = op_name(op);
    if out.code != 0 && talks_to_cluster(op) {
        let err = out.stderr_str();
        if CLUSTER_NOT_ANSWERING.iter().any(|p| err.contains(p)) {
            return Err(PortError::Transient(format!("{what}: exit status {}: {err}", out.code)));
        }
    }
    classify_exit(&what, out)?;
    let stdout = out.stdout_str();
    match op {
        HostOp::MoveManifestOut(_) | HostOp::MoveManifestIn(_) | HostOp::MoveEtcdDataDirAside => parse_moved(&stdout),
        HostOp::ManifestPresent(_) => match stdout.lines().map(str::trim).find(|l| *l == PRESENT_YES || *l == PRESENT_NO) {
            Some(l) => Ok(HostOutput::Present(l == PRESENT_YES)),
            None => Err(PortError::Permanent(format!("{what}: unexpected output {stdout:?}"))),
        },
        HostOp::RunningContainers { .. } => parse_crictl_ps(&stdout).map(HostOutput::Names),
        HostOp::ListAddresses => Ok(HostOutput::Addresses(parse_ip_addresses(&stdout))),
        HostOp::RunBackup { dir } => {
            let after = stdout.split_once(FILES_MARK).map(|(_, a)| a).unwrap_or("");
            let names: Vec<&str> = after.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let (snapshot, resources) = pick_backup_files(dir, &names)?;
            Ok(HostOutput::Backup { snapshot, resources })
        }
        HostOp::SnapshotStatus { .. } => parse_snapshot_status(&stdout).map(HostOutput::Snapshot),
        HostOp::ListDir { .. } => {
            let mut names: Vec<String> = stdout.split('\0').filter(|n| !n.is_empty()).map(str::to_string).collect();
            names.sort();
            Ok(HostOutput::Names(names))
        }
        HostOp::ReleaseVersion => parse_release_version(&stdout).map(HostOutput::Version),
        HostOp::ProbeEtcd { .. } => parse_etcd_probe(&stdout).map(HostOutput::Etcd),
        HostOp::KubeletNodeName => Ok(HostOutput::NodeName(parse_kubelet_subject(&stdout))),
        HostOp::LegacyEtcdIdentity => parse_legacy_identity(&stdout).map(HostOutput::Identity),
        HostOp::LegacySignerListening => Ok(HostOutput::Present(listens_on(&stdout, LEGACY_SIGNER_PORT))),
        HostOp::LegacyMemberList => crate::etcd::parse_member_list(&stdout).map(HostOutput::Members),
        HostOp::LegacyStartSigner { .. } | HostOp::RunLegacyScript { .. } => Ok(HostOutput::Done),
        HostOp::RemoveAddress { .. }
        | HostOp::RemoveKubeletPki
        | HostOp::RestartKubelet
        | HostOp::RemoveOvnDatabases
        | HostOp::RemoveOvnIcDatabases
        | HostOp::RestartOvs
        | HostOp::ForceEtcdRedeploymentLocally { .. }
        | HostOp::RunRestore { .. }
        | HostOp::MakePrivateDir { .. }
        | HostOp::Shutdown { .. } => Ok(HostOutput::Done),
    }
}

fn op_name(op: &HostOp) -> String {
    match op {
        HostOp::MoveManifestOut(p) => format!("move {} out of the manifests", pod_file(*p)),
        HostOp::MoveManifestIn(p) => format!("move {} back into the manifests", pod_file(*p)),
        HostOp::ManifestPresent(p) => format!("check for {}", pod_file(*p)),
        HostOp::RunningContainers { name } => format!("crictl ps --name {name}"),
        HostOp::MoveEtcdDataDirAside => "move the etcd data dir aside".into(),
        HostOp::ListAddresses => "ip -o address".into(),
        HostOp::RemoveAddress { address, device } => format!("ip address del {address} dev {device}"),
        HostOp::RemoveKubeletPki => "remove the kubelet PKI".into(),
        HostOp::RestartKubelet => "restart kubelet".into(),
        HostOp::RemoveOvnDatabases => "remove the OVN databases".into(),
        HostOp::RunBackup { dir } => format!("cluster-backup.sh {dir}"),
        HostOp::SnapshotStatus { path } => format!("etcdctl snapshot status {path}"),
        HostOp::RunRestore { dir, fence } => format!("cluster-restore.sh {dir} (fence {fence})"),
        HostOp::ListDir { dir } => format!("list {dir}"),
        HostOp::MakePrivateDir { dir } => format!("install -d -m 0700 {dir}"),
        HostOp::ReleaseVersion => "read the release version".into(),
        HostOp::Shutdown { minutes } => format!("shutdown -h {minutes}"),
        HostOp::ProbeEtcd { address, .. } => format!("probe etcd at {address}"),
        HostOp::RemoveOvnIcDatabases => "remove the OVN interconnect databases".into(),
        HostOp::RestartOvs => "restart ovs-vswitchd and ovsdb-server".into(),
        HostOp::ForceEtcdRedeploymentLocally { reason } => {
            format!("oc patch etcd cluster (forceRedeploymentReason {reason}, recovery kubeconfig)")
        }
        HostOp::KubeletNodeName => "read the kubelet's node name from its client certificate".into(),
        HostOp::RunLegacyScript { script: LegacyScript::SnapshotRestore { dir, .. }, fence } => {
            format!("etcd-snapshot-restore.sh {dir} (fence {fence})")
        }
        HostOp::RunLegacyScript { script: LegacyScript::MemberRecover { signer_ip, member_name }, fence } => {
            format!("etcd-member-recover.sh {signer_ip} {member_name} (fence {fence})")
        }
        HostOp::LegacyStartSigner { hostname } => format!("tokenize-signer.sh {hostname} and oc create the etcd signer pod"),
        HostOp::LegacyEtcdIdentity => "read the etcd member's host name and DNS name".into(),
        HostOp::LegacySignerListening => format!("ss -ltn (etcd signer on port {LEGACY_SIGNER_PORT})"),
        HostOp::LegacyMemberList => "etcdctl member list in the etcd-member container".into(),
    }
}

fn pod_file(p: StaticPod) -> &'static str {
    p.manifest_file()
}

// ---------------------------------------------------------------------------------------------
// Classification of ssh failures (pure)
// ---------------------------------------------------------------------------------------------

/// What went wrong talking to a host, before it becomes a [`PortError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshFailure {
    /// Could not reach sshd: refused, timed out, no route, name not resolved, closed during
    /// the handshake.
    Unreachable(String),
    /// sshd answered but would not let us in: host key mismatch, authentication refused.
    Refused(String),
    /// An established connection died (master gone, mux or channel I/O failed).
    ConnectionLost(String),
    /// The remote shell could not find the command (exit 127).
    CommandNotFound(String),
    /// A local problem: control directory, invalid command.
    Local(String),
    /// Took longer than the operation's bound.
    TimedOut(String),
}

impl SshFailure {
    /// Whether the operation may have been interrupted by a lost connection (so a retry on a
    /// new connection is the remedy, if the operation is idempotent).
    pub fn is_connection_loss(&self) -> bool {
        matches!(self, SshFailure::ConnectionLost(_) | SshFailure::TimedOut(_))
    }
}

/// The one classification of SSH failures.
pub fn classify_ssh(f: &SshFailure) -> PortError {
    match f {
        SshFailure::Unreachable(m) => PortError::Transient(format!("ssh: host unreachable: {m}")),
        SshFailure::ConnectionLost(m) => PortError::Transient(format!("ssh: connection lost: {m}")),
        SshFailure::TimedOut(m) => PortError::Transient(format!("ssh: timed out: {m}")),
        SshFailure::Refused(m) => PortError::Permanent(format!("ssh: refused: {m}")),
        SshFailure::CommandNotFound(m) => PortError::Permanent(format!("ssh: command not found on the host: {m}")),
        SshFailure::Local(m) => PortError::Permanent(format!("ssh: {m}")),
    }
}

/// Sort a connect-time message of the `ssh` client (its log) into refused or unreachable.
pub fn connect_failure(message: &str) -> SshFailure {
    let m = message.trim().to_string();
    let lower = m.to_ascii_lowercase();
    let refused = lower.contains("host key verification failed")
        || lower.contains("remote host identification has changed")
        || lower.contains("permission denied")
        || lower.contains("no matching host key type")
        || lower.contains("bad configuration option")
        || lower.contains("too many authentication failures");
    if refused {
        SshFailure::Refused(m)
    } else {
        SshFailure::Unreachable(m)
    }
}

/// Sort an `openssh` error.
pub fn ssh_failure(e: &openssh::Error) -> SshFailure {
    use openssh::Error as E;
    let with_source = |e: &E| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    };
    match e {
        E::Connect(io) => connect_failure(&io.to_string()),
        E::Master(_) => SshFailure::Local(with_source(e)),
        E::Remote(io) if io.kind() == std::io::ErrorKind::NotFound => SshFailure::CommandNotFound(io.to_string()),
        E::Remote(_) | E::Disconnected | E::RemoteProcessTerminated | E::ChildIo(_) | E::SshMux(_) | E::Cleanup(_) => {
            SshFailure::ConnectionLost(with_source(e))
        }
        E::InvalidCommand | E::CommandHasEnv | E::CommandHasCwd => SshFailure::Local(with_source(e)),
        // `openssh::Error` is non-exhaustive: anything new is assumed to be the connection.
        _ => SshFailure::ConnectionLost(with_source(e)),
    }
}

// ---------------------------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------------------------

/// One control-plane host of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    /// The inventory name procedures use (`master-0`).
    pub name: String,
    /// Its Kubernetes node name.
    pub node: String,
    /// Its address (InternalIP), for the procedures' records.
    pub address: String,
    /// What to give `ssh` (a `Host` alias of the ssh config, `core@10.0.0.5`, ...).
    pub destination: String,
    pub layout: HostLayout,
    /// A worker of the inventory (`--workers`), not a control-plane host.
    pub worker: bool,
}

impl SshHost {
    /// A real host reached as `destination`.
    pub fn new(name: impl Into<String>, node: impl Into<String>, address: impl Into<String>, destination: impl Into<String>) -> Self {
        SshHost {
            name: name.into(),
            node: node.into(),
            address: address.into(),
            destination: destination.into(),
            layout: HostLayout::real(),
            worker: false,
        }
    }
    pub fn with_layout(mut self, layout: HostLayout) -> Self {
        self.layout = layout;
        self
    }
    /// This host is a worker.
    pub fn as_worker(mut self) -> Self {
        self.worker = true;
        self
    }
}

/// How to run `ssh`.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// `-l user` (e.g. `core`); else whatever the ssh config says.
    pub user: Option<String>,
    /// `-F file`; else the user's `~/.ssh/config`.
    pub config_file: Option<PathBuf>,
    /// `-i key` (implies `IdentitiesOnly=yes`).
    pub identity: Option<PathBuf>,
    /// `UserKnownHostsFile=`; else from the ssh config.
    pub known_hosts_file: Option<PathBuf>,
    /// Host key checking; `Strict` by default: an unknown host key is refused, never added.
    pub known_hosts: KnownHosts,
    pub connect_timeout: Duration,
    /// Keep-alive probe interval: a dead peer is noticed after three unanswered probes.
    pub server_alive_interval: Duration,
    /// Where the control sockets live; a private temporary directory by default.
    pub control_dir: Option<PathBuf>,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            user: None,
            config_file: None,
            identity: None,
            known_hosts_file: None,
            known_hosts: KnownHosts::Strict,
            connect_timeout: Duration::from_secs(10),
            server_alive_interval: Duration::from_secs(5),
            control_dir: None,
        }
    }
}

/// [`Hosts`] over SSH. Sessions are made on first use and re-made when found dead. Cloning
/// is cheap and shares the sessions (the etcd adapter's SSH channel uses a clone).
#[derive(Clone)]
pub struct SshHosts {
    inner: Arc<Inner>,
}

struct Inner {
    rt: Blocking,
    opts: SshOptions,
    hosts: Vec<SshHost>,
    backup_root: PathBuf,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Keeps the default control directory alive as long as we are.
    control_dir: Option<tempfile_dir::TempDir>,
}

/// A tiny private temporary directory (the `tempfile` crate is only a dev-dependency).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> std::io::Result<TempDir> {
            use std::os::unix::fs::DirBuilderExt;
            let base = std::env::temp_dir();
            // Bounded: a handful of attempts at a fresh name.
            let mut last = None;
            for i in 0..16u32 {
                let p = base.join(format!("{prefix}-{}-{i}-{}", std::process::id(), nanos()));
                match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                    Ok(()) => return Ok(TempDir(p)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("no temporary directory")))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    // Only to make a temporary directory name unlikely to collide.
    #[allow(clippy::disallowed_methods)]
    fn nanos() -> u32 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl SshHosts {
    /// `hosts` is the inventory; `backup_root` the local backup location (`<root>/<backup>/…`).
    pub fn new(rt: Blocking, opts: SshOptions, hosts: Vec<SshHost>, backup_root: impl Into<PathBuf>) -> PortResult<Self> {
        let mut names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        names.sort();
        names.dedup();
        if names.len() != hosts.len() {
            return Err(PortError::Permanent("host inventory names a host twice".into()));
        }
        let control_dir = match opts.control_dir {
            Some(_) => None,
            None => Some(tempfile_dir::TempDir::new("drctl-ssh").map_err(|e| PortError::Permanent(format!("ssh control directory: {e}")))?),
        };
        let inner = Inner { rt, opts, hosts, backup_root: backup_root.into(), sessions: Mutex::new(HashMap::new()), control_dir };
        Ok(SshHosts { inner: Arc::new(inner) })
    }

    /// The inventory's workers (`worker`) or control-plane hosts.
    fn refs(&self, worker: bool) -> Vec<HostRef> {
        let of_role = self.inner.hosts.iter().filter(|h| h.worker == worker);
        of_role.map(|h| HostRef { name: h.name.clone(), node: h.node.clone(), address: h.address.clone() }).collect()
    }

    pub fn host(&self, name: &str) -> PortResult<&SshHost> {
        self.inner
            .hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| PortError::Permanent(format!("host {name:?} is not in the inventory")))
    }

    fn builder(&self) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(self.inner.opts.known_hosts.clone());
        b.connect_timeout(self.inner.opts.connect_timeout);
        b.server_alive_interval(self.inner.opts.server_alive_interval);
        if let Some(u) = &self.inner.opts.user {
            b.user(u.clone());
        }
        if let Some(f) = &self.inner.opts.config_file {
            b.config_file(f);
        }
        if let Some(k) = &self.inner.opts.identity {
            b.keyfile(k);
        }
        if let Some(k) = &self.inner.opts.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        let dir = self.inner.opts.control_dir.as_deref().or(self.inner.control_dir.as_ref().map(|d| d.path()));
        if let Some(d) = dir {
            b.control_directory(d);
        }
        b
    }

    /// A live session to `host`: the cached one if its master still answers, else a new one.
    fn session(&self, host: &SshHost) -> Result<Arc<Session>, SshFailure> {
        let cached = self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&host.name).cloned();
        if let Some(s) = cached {
            let alive = self.inner.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), s.check()).await });
            if matches!(alive, Ok(Ok(()))) {
                return Ok(s);
            }
            tracing::info!(host = %host.name, "ssh session is gone; reconnecting");
            self.forget(&host.name, &s);
        }
        let builder = self.builder();
        let dest = host.destination.clone();
        let bound = self.inner.opts.connect_timeout + Duration::from_secs(5);
        let s = self
            .inner
            .rt
            .block_on(async move { tokio::time::timeout(bound, builder.connect_mux(dest)).await })
            .map_err(|_| SshFailure::Unreachable(format!("connecting to {} took longer than {bound:?}", host.destination)))?
            .map_err(|e| ssh_failure(&e))?;
        let s = Arc::new(s);
        tracing::debug!(host = %host.name, "ssh session established");
        self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(host.name.clone(), s.clone());
        Ok(s)
    }

    /// Drop a session found dead (only if it is still the cached one). Dropping it asks its
    /// master to exit, if it is still there.
    fn forget(&self, host: &str, s: &Arc<Session>) {
        let mut map = self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(host).map(|c| Arc::ptr_eq(c, s)).unwrap_or(false) {
            map.remove(host);
        }
    }

    /// Run one command line on `host` and collect its output, within `timeout`.
    fn exec_on(&self, s: &Arc<Session>, cmd: &str, stdin: Option<&Path>, timeout: Duration) -> Result<ExecOutput, SshFailure> {
        let fut = async {
            let mut c = s.raw_command(cmd);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
            let mut child = c.spawn().await.map_err(|e| ssh_failure(&e))?;
            if let Some(path) = stdin {
                let mut w = child.stdin().take().ok_or_else(|| SshFailure::Local("no stdin pipe".into()))?;
                let mut f = tokio::fs::File::open(path).await.map_err(|e| SshFailure::Local(format!("{}: {e}", path.display())))?;
                tokio::io::copy(&mut f, &mut w)
                    .await
                    .map_err(|e| SshFailure::ConnectionLost(format!("sending {}: {e}", path.display())))?;
                w.shutdown().await.map_err(|e| SshFailure::ConnectionLost(format!("closing stdin: {e}")))?;
                drop(w);
            }
            let out = child.wait_with_output().await.map_err(|e| ssh_failure(&e))?;
            Ok(ExecOutput { code: exit_code(&out.status), stdout: out.stdout, stderr: out.stderr })
        };
        self.inner
            .rt
            .block_on(async { tokio::time::timeout(timeout, fut).await })
            .map_err(|_| SshFailure::TimedOut(format!("no answer within {timeout:?}")))?
    }

    /// Run a command line on `host` with the reconnect rule: a dead cached session is replaced
    /// before the command (always safe: nothing ran yet); a connection lost while the command
    /// ran is retried once on a new session only if `idempotent`.
    pub fn exec(&self, host_name: &str, cmd: &str, idempotent: bool, timeout: Duration) -> PortResult<ExecOutput> {
        let host = self.host(host_name)?;
        let s = self.session(host).map_err(|f| classify_ssh(&f))?;
        tracing::debug!(host = %host.name, command = %cmd, "ssh exec");
        match self.exec_on(&s, cmd, None, timeout) {
            Ok(out) => Ok(out),
            Err(f) if f.is_connection_loss() => {
                self.forget(&host.name, &s);
                drop(s);
                if !idempotent {
                    tracing::warn!(host = %host.name, error = ?f, "connection lost during a non-idempotent operation; not retried");
                    return Err(classify_ssh(&f));
                }
                tracing::info!(host = %host.name, error = ?f, "connection lost; reconnecting and retrying once");
                let s = self.session(host).map_err(|f| classify_ssh(&f))?;
                self.exec_on(&s, cmd, None, timeout).map_err(|f| {
                    if f.is_connection_loss() {
                        self.forget(&host.name, &s);
                    }
                    classify_ssh(&f)
                })
            }
            Err(f) => Err(classify_ssh(&f)),
        }
    }

    /// Like [`SshHosts::exec`], feeding a local file to the command's stdin. Idempotent callers
    /// only (the transfer is repeated from the start).
    fn exec_with_stdin(&self, host: &SshHost, cmd: &str, file: &Path, timeout: Duration) -> PortResult<ExecOutput> {
        let mut last = None;
        for _ in 0..2 {
            let s = self.session(host).map_err(|f| classify_ssh(&f))?;
            match self.exec_on(&s, cmd, Some(file), timeout) {
                Ok(out) => return Ok(out),
                Err(f) if f.is_connection_loss() => {
                    self.forget(&host.name, &s);
                    last = Some(f);
                }
                Err(f) => return Err(classify_ssh(&f)),
            }
        }
        Err(classify_ssh(&last.unwrap_or_else(|| SshFailure::ConnectionLost("unknown".into()))))
    }

    /// Stream a remote file's bytes (`cat`) into a local file, returning its sha256.
    fn fetch_to(&self, host: &SshHost, remote: &str, local: &Path, timeout: Duration) -> PortResult<String> {
        let cmd = require_then(&host.layout, remote, &host.layout.priv_cmd(&["cat", remote]));
        let mut last = None;
        for _ in 0..2 {
            let s = self.session(host).map_err(|f| classify_ssh(&f))?;
            let fut = async {
                let mut c = s.raw_command(&cmd);
                c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
                let mut child = c.spawn().await.map_err(|e| ssh_failure(&e))?;
                let mut out = child.stdout().take().ok_or_else(|| SshFailure::Local("no stdout pipe".into()))?;
                let mut err = child.stderr().take().ok_or_else(|| SshFailure::Local("no stderr pipe".into()))?;
                let copy = async {
                    let mut f = tokio::fs::File::create(local).await.map_err(|e| SshFailure::Local(format!("{}: {e}", local.display())))?;
                    let mut h = Sha256::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = out.read(&mut buf).await.map_err(|e| SshFailure::ConnectionLost(format!("reading {remote}: {e}")))?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                        f.write_all(&buf[..n]).await.map_err(|e| SshFailure::Local(format!("{}: {e}", local.display())))?;
                    }
                    f.sync_all().await.map_err(|e| SshFailure::Local(format!("{}: {e}", local.display())))?;
                    Ok::<_, SshFailure>(hex::encode(h.finalize()))
                };
                let errs = async {
                    let mut v = Vec::new();
                    let _ = err.read_to_end(&mut v).await;
                    v
                };
                let (sum, stderr) = tokio::join!(copy, errs);
                let status = child.wait().await.map_err(|e| ssh_failure(&e))?;
                Ok::<_, SshFailure>((sum, ExecOutput { code: exit_code(&status), stdout: vec![], stderr }))
            };
            let r = self
                .inner
                .rt
                .block_on(async { tokio::time::timeout(timeout, fut).await })
                .map_err(|_| SshFailure::TimedOut(format!("copying {remote} took longer than {timeout:?}")))
                .and_then(|r| r);
            match r {
                Ok((sum, out)) => {
                    classify_exit(&format!("cat {remote}"), &out)?;
                    return sum.map_err(|f| classify_ssh(&f));
                }
                Err(f) if f.is_connection_loss() => {
                    self.forget(&host.name, &s);
                    last = Some(f);
                }
                Err(f) => return Err(classify_ssh(&f)),
            }
        }
        Err(classify_ssh(&last.unwrap_or_else(|| SshFailure::ConnectionLost("unknown".into()))))
    }

    /// sha256 of a remote file, `None` if it does not exist.
    fn remote_sha256(&self, host: &SshHost, path: &str) -> PortResult<Option<String>> {
        let l = &host.layout;
        let cmd = format!("{}if {}; then {}; fi", l.preamble(), l.priv_cmd(&["test", "-f", path]), l.priv_cmd(&["sha256sum", "--", path]));
        let out = self.exec(&host.name, &cmd, true, Duration::from_secs(10 * 60))?;
        classify_exit(&format!("sha256sum {path}"), &out)?;
        Ok(out.stdout_str().split_whitespace().next().map(str::to_string))
    }

    fn backup_dir(&self, backup: &str) -> PortResult<PathBuf> {
        backup_set_dir(&self.inner.backup_root, backup)
    }
}

fn exit_code(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The directory of backup set `backup` under `root`; the name must be one plain path component.
pub fn backup_set_dir(root: &Path, backup: &str) -> PortResult<PathBuf> {
    let ok = !backup.is_empty() && backup != "." && backup != ".." && !backup.contains('/') && !backup.contains('\0');
    if !ok {
        return Err(PortError::Permanent(format!("invalid backup name {backup:?}")));
    }
    Ok(root.join(backup))
}

/// sha256 of a local file.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn local_err(what: &str, path: &Path, e: std::io::Error) -> PortError {
    if e.kind() == std::io::ErrorKind::NotFound {
        PortError::NotFound(format!("{what} {}: {e}", path.display()))
    } else {
        PortError::Permanent(format!("{what} {}: {e}", path.display()))
    }
}

/// Write `bytes` to `path` atomically (temporary file, fsync, rename, fsync the directory).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.part", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Hosts for SshHosts {
    fn control_plane_hosts(&self) -> PortResult<Vec<HostRef>> {
        Ok(self.refs(false))
    }

    fn worker_hosts(&self) -> PortResult<Vec<HostRef>> {
        Ok(self.refs(true))
    }

    fn connect(&self, host: &str) -> PortResult<()> {
        let h = self.host(host)?;
        self.session(h).map(|_| ()).map_err(|f| classify_ssh(&f))
    }

    fn run(&self, host: &str, op: &HostOp) -> PortResult<HostOutput> {
        let h = self.host(host)?;
        let cmd = render(op, &h.layout)?;
        let out = self.exec(host, &cmd, is_idempotent(op), op_timeout(op))?;
        let r = interpret(op, &out);
        tracing::debug!(host, op = ?op, result = ?r, "host operation");
        r
    }

    fn copy_backup_to_host(&self, backup: &str, host: &str, dest_dir: &str) -> PortResult<()> {
        let h = self.host(host)?;
        let src = self.backup_dir(backup)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
            .map_err(|e| local_err("backup set", &src, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n != BACKUP_INFO_FILE && !n.starts_with('.') && !n.ends_with(".part")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(PortError::NotFound(format!("backup set {backup} has no files in {}", src.display())));
        }
        let l = &h.layout;
        let dest = l.path(dest_dir)?;
        let mk = format!("{}{}", l.preamble(), l.priv_cmd(&["install", "-d", "-m", "0700", &dest]));
        classify_exit(&format!("create {dest_dir}"), &self.exec(host, &mk, true, Duration::from_secs(60))?)?;
        for f in files {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| PortError::Permanent(format!("non-UTF-8 file name {}", f.display())))?;
            let local_sum = file_sha256(&f).map_err(|e| local_err("read", &f, e))?;
            let remote = format!("{dest}/{name}");
            if self.remote_sha256(h, &remote)?.as_deref() == Some(local_sum.as_str()) {
                tracing::debug!(host, file = name, "already on the host");
                continue;
            }
            let part = format!("{dest}/.{name}.part");
            let cmd = format!(
                "{}{} >/dev/null && {}",
                l.preamble(),
                l.priv_cmd(&["tee", "--", &part]),
                l.priv_cmd(&["mv", "-f", "--", &part, &remote])
            );
            let out = self.exec_with_stdin(h, &cmd, &f, Duration::from_secs(30 * 60))?;
            classify_exit(&format!("copy {name} to {host}:{dest_dir}"), &out)?;
            let got = self.remote_sha256(h, &remote)?;
            if got.as_deref() != Some(local_sum.as_str()) {
                return Err(PortError::Transient(format!("copy of {name} to {host} is corrupt (sha256 {got:?}, expected {local_sum})")));
            }
        }
        Ok(())
    }

    fn copy_backup_from_host(&self, host: &str, files: &[String], backup: &str, info: &BackupInfo) -> PortResult<()> {
        let h = self.host(host)?;
        let dir = self.backup_dir(backup)?;
        std::fs::create_dir_all(&dir).map_err(|e| local_err("create", &dir, e))?;
        for remote_logical in files {
            let remote = h.layout.path(remote_logical)?;
            let name = Path::new(remote_logical)
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| *n != BACKUP_INFO_FILE)
                .ok_or_else(|| PortError::Permanent(format!("cannot copy {remote_logical:?} into a backup set")))?;
            let remote_sum = self.remote_sha256(h, &remote)?.ok_or_else(|| PortError::NotFound(format!("{host}:{remote_logical}")))?;
            let target = dir.join(name);
            if target.exists() && file_sha256(&target).map_err(|e| local_err("read", &target, e))? == remote_sum {
                continue;
            }
            let part = dir.join(format!(".{name}.part"));
            let got = self.fetch_to(h, &remote, &part, Duration::from_secs(30 * 60))?;
            if got != remote_sum {
                let _ = std::fs::remove_file(&part);
                return Err(PortError::Transient(format!(
                    "copy of {host}:{remote_logical} is corrupt (sha256 {got}, expected {remote_sum})"
                )));
            }
            std::fs::rename(&part, &target).map_err(|e| local_err("rename", &target, e))?;
        }
        let json = serde_json::to_vec_pretty(info).map_err(|e| PortError::Permanent(format!("encode backup info: {e}")))?;
        let p = dir.join(BACKUP_INFO_FILE);
        write_atomically(&p, &json).map_err(|e| local_err("write", &p, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> HostLayout {
        HostLayout::real()
    }

    #[test]
    fn renders_the_runbook_commands() {
        let mv = render(&HostOp::MoveManifestOut(StaticPod::Etcd), &real()).unwrap();
        assert!(mv.contains("sudo mv -v /etc/kubernetes/manifests/etcd-pod.yaml /tmp &&"), "{mv}");
        assert!(mv.starts_with("sudo -n true"), "{mv}");
        let ps = render(&HostOp::RunningContainers { name: "etcd".into() }, &real()).unwrap();
        assert!(ps.ends_with("sudo crictl ps --name etcd -o json"), "{ps}");
        let aside = render(&HostOp::MoveEtcdDataDirAside, &real()).unwrap();
        assert!(aside.contains("sudo mv -v /var/lib/etcd/ /tmp &&"), "{aside}");
        assert!(render(&HostOp::RestartKubelet, &real()).unwrap().ends_with("sudo systemctl restart kubelet.service"));
        let restore =
            render(&HostOp::RunRestore { dir: "/home/core/assets/backup".into(), fence: "drctl-r1-restore".into() }, &real()).unwrap();
        assert!(restore.contains("sudo -E sh -c 'DRCTL_PROXY_ENV=/etc/mco/proxy.env; set -a; if [ -r \"$DRCTL_PROXY_ENV\" ]; then . \"$DRCTL_PROXY_ENV\"; fi; set +a; echo $$ > /var/lib/drctl/fences/drctl-r1-restore.started && exec /usr/local/bin/cluster-restore.sh /home/core/assets/backup' && sudo install -D -m 0600 /dev/null /var/lib/drctl/fences/drctl-r1-restore"), "{restore}");
        // A restore that an earlier attempt started is never started again.
        assert!(restore.contains("elif sudo test -e /var/lib/drctl/fences/drctl-r1-restore.started; then if sudo kill -0 \"$(sudo cat /var/lib/drctl/fences/drctl-r1-restore.started)\""), "{restore}");
        assert!(restore.contains("if sudo test -e /var/lib/drctl/fences/drctl-r1-restore; then"), "{restore}");
        assert!(render(&HostOp::RunRestore { dir: "/d".into(), fence: "../x".into() }, &real()).is_err());
        let backup = render(&HostOp::RunBackup { dir: "/home/core/assets/backup".into() }, &real()).unwrap();
        assert!(backup.contains("sudo env DRCTL_PROXY_ENV=/etc/mco/proxy.env sh -c "), "{backup}");
        assert!(backup.contains("exec \"$0\" \"$1\"' /usr/local/bin/cluster-backup.sh /home/core/assets/backup &&"), "{backup}");
        let del = render(&HostOp::RemoveAddress { address: "192.168.111.5".into(), device: "br-ex".into() }, &real()).unwrap();
        assert!(del.contains("ip -o address show dev br-ex"), "{del}");
        assert!(del.contains("sudo ip address del \"$cidr\" dev br-ex"), "{del}");
        let pki = render(&HostOp::RemoveKubeletPki, &real()).unwrap();
        assert!(pki.contains("sudo find /var/lib/kubelet/pki -maxdepth 1 -name '*.pem'"), "{pki}");
        assert!(render(&HostOp::Shutdown { minutes: 1 }, &real()).unwrap().ends_with("sudo shutdown -h 1"));
        assert_eq!(render(&HostOp::ListAddresses, &real()).unwrap(), "ip -o address");
    }

    /// The OpenShift 4.1–4.3 host steps, as the runbook types them ("Recovering from lost master
    /// hosts"): each rendering, what it must contain, and that `sh` parses it.
    #[test]
    fn renders_the_4_3_recovery_steps() {
        let restore = HostOp::RunLegacyScript {
            script: LegacyScript::SnapshotRestore {
                dir: "/home/core/backup".into(),
                initial_cluster: "etcd-member-ip-10-0-143-125.ec2.internal=https://etcd-0.c.example.com:2380".into(),
            },
            fence: "f1".into(),
        };
        let recover = HostOp::RunLegacyScript {
            script: LegacyScript::MemberRecover {
                signer_ip: "10.0.143.125".into(),
                member_name: "etcd-member-ip-10-0-156-255.ec2.internal".into(),
            },
            fence: "f2".into(),
        };
        let table: [(HostOp, &[&str]); 6] = [
            (restore, &[
                "sudo -E sh -c",
                "echo $$ > /var/lib/drctl/fences/f1.started && exec /usr/local/bin/etcd-snapshot-restore.sh /home/core/backup etcd-member-ip-10-0-143-125.ec2.internal=https://etcd-0.c.example.com:2380",
                "&& sudo install -D -m 0600 /dev/null /var/lib/drctl/fences/f1",
                "etcd-snapshot-restore.sh must not be run again on a half-done host",
            ]),
            (recover, &[
                "set -a; SETUP_ETCD_ENVIRONMENT=\"$(oc adm release info --image-for machine-config-operator --registry-config=/var/lib/kubelet/config.json)\"",
                "&& KUBE_CLIENT_AGENT=\"$(oc adm release info --image-for kube-client-agent --registry-config=/var/lib/kubelet/config.json)\" && set +a",
                "exec /usr/local/bin/etcd-member-recover.sh 10.0.143.125 etcd-member-ip-10-0-156-255.ec2.internal",
                "if sudo test -e /var/lib/drctl/fences/f2; then",
            ]),
            (HostOp::LegacyStartSigner { hostname: "ip-10-0-143-125".into() }, &[
                "set -a; KUBE_ETCD_SIGNER_SERVER=\"$(oc adm release info --image-for kube-etcd-signer-server --registry-config=/var/lib/kubelet/config.json)\"",
                "/usr/local/bin/tokenize-signer.sh ip-10-0-143-125",
                "oc create -f /home/core/assets/manifests/kube-etcd-cert-signer.yaml",
                "oc get pod -n openshift-config etcd-signer -o name",
            ]),
            (HostOp::LegacyEtcdIdentity, &["DRCTL_HOSTNAME=%s", "$(hostname)", "sudo grep -E '^ETCD_DNS_NAME=' /run/etcd/environment"]),
            (HostOp::LegacySignerListening, &["ss -ltn"]),
            (HostOp::LegacyMemberList, &[
                "sudo crictl ps --name etcd-member -q | head -n 1",
                "sudo crictl exec \"$id\" /bin/sh -c",
                "ETCDCTL_CACERT=/etc/ssl/etcd/ca.crt",
                "etcdctl member list -w json",
            ]),
        ];
        for (op, wants) in table {
            let cmd = render(&op, &real()).unwrap();
            for want in wants {
                assert!(cmd.contains(want), "{op:?}: {want:?} not in\n{cmd}");
            }
            let parsed = std::process::Command::new("sh").args(["-n", "-c", &cmd]).status().expect("sh runs");
            assert!(parsed.success(), "sh cannot parse the rendering of {op:?}:\n{cmd}");
        }
        // Words from the inventory and the cluster stay literal.
        let evil = HostOp::LegacyStartSigner { hostname: "m0; reboot".into() };
        assert!(render(&evil, &real()).unwrap().contains("tokenize-signer.sh '\\''m0; reboot'\\''"));
        assert!(
            is_idempotent(&HostOp::LegacyMemberList)
                && !is_idempotent(&HostOp::RunLegacyScript {
                    script: LegacyScript::MemberRecover { signer_ip: "a".into(), member_name: "b".into() },
                    fence: "f".into()
                })
        );
    }

    #[test]
    fn reads_the_4_3_answers() {
        let out = |stdout: &str| ExecOutput { code: 0, stdout: stdout.as_bytes().to_vec(), stderr: vec![] };
        let id =
            interpret(&HostOp::LegacyEtcdIdentity, &out("DRCTL_HOSTNAME=ip-10-0-143-125\nETCD_DNS_NAME=etcd-0.c.example.com\n")).unwrap();
        assert_eq!(
            id,
            HostOutput::Identity(LegacyEtcdIdentity { hostname: "ip-10-0-143-125".into(), dns_name: Some("etcd-0.c.example.com".into()) })
        );
        let bare = interpret(&HostOp::LegacyEtcdIdentity, &out("DRCTL_HOSTNAME=m3\n")).unwrap();
        assert_eq!(bare, HostOutput::Identity(LegacyEtcdIdentity { hostname: "m3".into(), dns_name: None }));
        assert!(interpret(&HostOp::LegacyEtcdIdentity, &out("")).is_err());
        let ss = "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\nLISTEN 0      128    *:9943             *:*\n";
        assert_eq!(interpret(&HostOp::LegacySignerListening, &out(ss)).unwrap(), HostOutput::Present(true));
        let other = "LISTEN 0 128 *:19943 *:*\nESTAB 0 0 10.0.0.1:9943 10.0.0.2:4444\n";
        assert_eq!(interpret(&HostOp::LegacySignerListening, &out(other)).unwrap(), HostOutput::Present(false));
        let list = r#"{"header":{"cluster_id":9,"member_id":1,"raft_term":2},"members":[{"ID":1,"name":"etcd-member-m0","peerURLs":["https://etcd-0.c:2380"],"clientURLs":["https://10.0.0.10:2379"]},{"ID":2,"peerURLs":["https://etcd-1.c:2380"]}]}"#;
        let HostOutput::Members(m) = interpret(&HostOp::LegacyMemberList, &out(list)).unwrap() else { panic!("not a member list") };
        assert_eq!(m.members.iter().map(drctl_workflows::ports::EtcdMember::started).collect::<Vec<_>>(), [true, false]);
        // Without quorum etcdctl times out: passing, not a failure.
        let no_quorum = ExecOutput { code: 1, stdout: vec![], stderr: b"Error: context deadline exceeded".to_vec() };
        assert!(matches!(interpret(&HostOp::LegacyMemberList, &no_quorum), Err(PortError::Transient(_))));
    }

    #[test]
    fn sandbox_layout_prefixes_every_path_and_drops_sudo() {
        let l = HostLayout::sandbox("/tmp/sandbox-master-0");
        let mv = render(&HostOp::MoveManifestOut(StaticPod::KubeApiServer), &l).unwrap();
        assert!(
            mv.contains("mv -v /tmp/sandbox-master-0/etc/kubernetes/manifests/kube-apiserver-pod.yaml /tmp/sandbox-master-0/tmp &&"),
            "{mv}"
        );
        assert!(!mv.contains("sudo"), "{mv}");
        let ps = render(&HostOp::RunningContainers { name: "etcd".into() }, &l).unwrap();
        assert_eq!(ps, "/tmp/sandbox-master-0/usr/local/bin/crictl ps --name etcd -o json");
        let st = render(&HostOp::SnapshotStatus { path: "/home/core/assets/backup/snapshot_x.db".into() }, &l).unwrap();
        assert!(st.contains("env ETCDCTL_API=3 /tmp/sandbox-master-0/usr/local/bin/etcdctl snapshot status /tmp/sandbox-master-0/home/core/assets/backup/snapshot_x.db -w json"), "{st}");
    }

    #[test]
    fn user_supplied_words_stay_literal() {
        let evil = "/home/core/it's a $(reboot) `id` dir;rm -rf /";
        let s = render(&HostOp::ListDir { dir: evil.into() }, &real()).unwrap();
        assert!(s.contains("'/home/core/it'\\''s a $(reboot) `id` dir;rm -rf /'"), "{s}");
        let s = render(&HostOp::RunningContainers { name: "etcd$(id)".into() }, &real()).unwrap();
        assert!(s.contains("--name 'etcd$(id)'"), "{s}");
        assert!(matches!(render(&HostOp::ListDir { dir: "relative".into() }, &real()), Err(PortError::Permanent(_))));
    }

    #[test]
    fn only_shutdown_and_restore_are_not_idempotent() {
        let all = [
            HostOp::MoveManifestOut(StaticPod::Etcd),
            HostOp::MoveManifestIn(StaticPod::Etcd),
            HostOp::ManifestPresent(StaticPod::Keepalived),
            HostOp::RunningContainers { name: "etcd".into() },
            HostOp::MoveEtcdDataDirAside,
            HostOp::ListAddresses,
            HostOp::RemoveAddress { address: "10.0.0.9".into(), device: "eth0".into() },
            HostOp::RemoveKubeletPki,
            HostOp::RestartKubelet,
            HostOp::RemoveOvnDatabases,
            HostOp::RunBackup { dir: "/home/core/assets/backup".into() },
            HostOp::SnapshotStatus { path: "/x".into() },
            HostOp::RunRestore { dir: "/home/core/assets/backup".into(), fence: "f".into() },
            HostOp::ListDir { dir: "/x".into() },
            HostOp::MakePrivateDir { dir: "/x".into() },
            HostOp::ReleaseVersion,
            HostOp::Shutdown { minutes: 1 },
        ];
        let not: Vec<&HostOp> = all.iter().filter(|op| !is_idempotent(op)).collect();
        assert_eq!(
            not,
            vec![&HostOp::RunRestore { dir: "/home/core/assets/backup".into(), fence: "f".into() }, &HostOp::Shutdown { minutes: 1 }]
        );
    }

    #[test]
    fn parses_crictl_ps_json_and_drops_operator_and_guard_containers() {
        let json = r#"{"containers":[
          {"id":"3ad41b7908e32","podSandboxId":"7c05f8af362f0","metadata":{"name":"etcd","attempt":0},"state":"CONTAINER_RUNNING"},
          {"id":"aa","metadata":{"name":"etcdctl"},"state":"CONTAINER_RUNNING"},
          {"id":"bb","metadata":{"name":"etcd-operator"},"state":"CONTAINER_RUNNING"},
          {"id":"cc","metadata":{"name":"guard"},"state":"CONTAINER_RUNNING"},
          {"id":"dd","metadata":{"name":"etcd-metrics"},"state":"CONTAINER_EXITED"}]}"#;
        assert_eq!(parse_crictl_ps(json).unwrap(), vec!["etcd", "etcdctl"]);
        assert_eq!(parse_crictl_ps(r#"{"containers":[]}"#).unwrap(), Vec::<String>::new());
        assert!(parse_crictl_ps("FATA[0000] connect: connection refused").is_err());
    }

    #[test]
    fn parses_ip_o_address() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                   2: br-ex    inet 192.168.111.20/24 brd 192.168.111.255 scope global dynamic noprefixroute br-ex\\       valid_lft 3000sec preferred_lft 3000sec\n\
                   2: br-ex    inet 192.168.111.5/32 scope global br-ex\\       valid_lft forever preferred_lft forever\n\
                   5: veth1@if4    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever\n";
        assert_eq!(
            parse_ip_addresses(out),
            vec![
                ("127.0.0.1".to_string(), "lo".to_string()),
                ("192.168.111.20".to_string(), "br-ex".to_string()),
                ("192.168.111.5".to_string(), "br-ex".to_string()),
                ("fe80::1".to_string(), "veth1".to_string()),
            ]
        );
    }

    #[test]
    fn parses_the_snapshot_status_the_backup_script_prints() {
        let out = "Snapshot saved at /home/core/assets/backup/snapshot_2021-06-25_190035.db\n{\"hash\":3866667823,\"revision\":31407,\"totalKey\":12828,\"totalSize\":114446336}\n";
        assert_eq!(
            parse_snapshot_status(out).unwrap(),
            SnapshotStatus { hash: 3866667823, revision: 31407, total_key: 12828, total_size: 114446336 }
        );
    }

    #[test]
    fn picks_the_newest_backup_files() {
        let names = [
            "snapshot_2021-06-25_190035.db",
            "static_kuberesources_2021-06-25_190035.tar.gz",
            "snapshot_2021-06-26_080000.db",
            "static_kuberesources_2021-06-26_080000.tar.gz",
        ];
        assert_eq!(
            pick_backup_files("/home/core/assets/backup/", &names).unwrap(),
            ("snapshot_2021-06-26_080000.db".to_string(), "static_kuberesources_2021-06-26_080000.tar.gz".to_string())
        );
        assert!(pick_backup_files("/d", &["snapshot_x.db"]).is_err());
        // The newest snapshot and the newest resources are of different backups: the newest
        // complete backup is the older one.
        let mixed = ["snapshot_1.db", "static_kuberesources_1.tar.gz", "snapshot_3.db", "static_kuberesources_2.tar.gz"];
        assert_eq!(pick_backup_files("/d", &mixed).unwrap(), ("snapshot_1.db".to_string(), "static_kuberesources_1.tar.gz".to_string()));
    }

    #[test]
    fn reads_the_release_from_the_current_machine_config() {
        let mc = r#"{"apiVersion":"machineconfiguration.openshift.io/v1","kind":"MachineConfig","metadata":{"name":"rendered-master-27d3","annotations":{"machineconfiguration.openshift.io/release-image-version":"4.15.3"}}}"#;
        assert_eq!(parse_release_version(mc).unwrap(), "4.15.3");
        assert!(parse_release_version(r#"{"metadata":{}}"#).is_err());
    }

    #[test]
    fn exit_statuses_are_classified() {
        let out = |code: i32, err: &str| ExecOutput { code, stdout: vec![], stderr: err.as_bytes().to_vec() };
        assert_eq!(classify_exit("x", &out(0, "")), Ok(()));
        assert!(
            matches!(classify_exit("x", &out(EXIT_NOT_FOUND, "drctl: no such file")), Err(PortError::NotFound(m)) if m.contains("no such file"))
        );
        assert!(matches!(classify_exit("x", &out(1, "mv: cannot move")), Err(PortError::Permanent(m)) if m.contains("cannot move")));
        assert!(matches!(classify_exit("x", &out(EXIT_NO_SUDO, "drctl: passwordless sudo is required")), Err(PortError::Permanent(_))));
    }

    #[test]
    fn ssh_failures_are_classified() {
        type Check = fn(&PortError) -> bool;
        let table: Vec<(SshFailure, Check)> = vec![
            (connect_failure("ssh: connect to host 10.0.0.5 port 22: Connection refused"), PortError::is_transient),
            (connect_failure("ssh: connect to host 10.0.0.5 port 22: Connection timed out"), PortError::is_transient),
            (connect_failure("ssh: connect to host 10.0.0.5 port 22: No route to host"), PortError::is_transient),
            (connect_failure("kex_exchange_identification: read: Connection reset by peer"), PortError::is_transient),
            (connect_failure("ssh: Could not resolve hostname master-9: Name or service not known"), PortError::is_transient),
            (connect_failure("Host key verification failed."), |e| matches!(e, PortError::Permanent(_))),
            (connect_failure("core@10.0.0.5: Permission denied (publickey)."), |e| matches!(e, PortError::Permanent(_))),
            (SshFailure::ConnectionLost("the connection was terminated".into()), PortError::is_transient),
            (SshFailure::TimedOut("no answer".into()), PortError::is_transient),
            (SshFailure::CommandNotFound("crictl".into()), |e| matches!(e, PortError::Permanent(_))),
            (SshFailure::Local("control dir".into()), |e| matches!(e, PortError::Permanent(_))),
        ];
        for (f, ok) in table {
            assert!(ok(&classify_ssh(&f)), "{f:?} -> {:?}", classify_ssh(&f));
        }
        use openssh::Error as E;
        let io = |k| std::io::Error::new(k, "x");
        assert!(ssh_failure(&E::Disconnected).is_connection_loss());
        assert!(ssh_failure(&E::RemoteProcessTerminated).is_connection_loss());
        assert!(ssh_failure(&E::ChildIo(io(std::io::ErrorKind::BrokenPipe))).is_connection_loss());
        assert_eq!(ssh_failure(&E::Remote(io(std::io::ErrorKind::NotFound))), SshFailure::CommandNotFound("x".into()));
        assert!(matches!(ssh_failure(&E::Master(io(std::io::ErrorKind::PermissionDenied))), SshFailure::Local(_)));
        assert!(matches!(ssh_failure(&E::Connect(io(std::io::ErrorKind::ConnectionRefused))), SshFailure::Unreachable(_)));
    }

    #[test]
    fn backup_names_are_one_path_component() {
        let root = Path::new("/b");
        assert_eq!(backup_set_dir(root, "2024-01-01").unwrap(), Path::new("/b/2024-01-01"));
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(backup_set_dir(root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_etcd_probe_asks_the_ports_then_health_with_the_nodes_peer_certificate() {
        let op = HostOp::ProbeEtcd { address: "10.0.0.11".into(), client_node: "master-0".into() };
        let script = render(&op, &real()).unwrap();
        assert!(script.contains("timeout 3 bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' 10.0.0.11 2379"), "{script}");
        assert!(script.contains("10.0.0.11 2380"), "{script}");
        assert!(
            script.contains("--cert /etc/kubernetes/static-pod-resources/etcd-certs/secrets/etcd-all-certs/etcd-peer-master-0.crt"),
            "{script}"
        );
        assert!(script.contains("https://10.0.0.11:2379/health"), "{script}");
        for (address, node) in [("10.0.0.11; rm -rf /", "master-0"), ("10.0.0.11", "m$(id)"), ("", "master-0")] {
            let bad = HostOp::ProbeEtcd { address: address.into(), client_node: node.into() };
            assert!(render(&bad, &real()).is_err(), "{address} {node}");
        }
        let v6 = render(&HostOp::ProbeEtcd { address: "fd00::11".into(), client_node: "master-0".into() }, &real()).unwrap();
        assert!(v6.contains("https://[fd00::11]:2379/health"), "{v6}");
    }

    #[test]
    fn the_etcd_probe_reads_no_answer_healthy_and_everything_else() {
        let op = HostOp::ProbeEtcd { address: "10.0.0.11".into(), client_node: "master-0".into() };
        let out = |stdout: &str| ExecOutput { code: 0, stdout: stdout.as_bytes().to_vec(), stderr: vec![] };
        assert_eq!(interpret(&op, &out("DRCTL_ETCD_NO_ANSWER\n")).unwrap(), HostOutput::Etcd(EtcdProbe::NoAnswer));
        let healthy = out("DRCTL_ETCD_ANSWERS\n{\"health\":\"true\",\"reason\":\"\"}\n");
        assert_eq!(interpret(&op, &healthy).unwrap(), HostOutput::Etcd(EtcdProbe::Healthy));
        let no_leader = out("DRCTL_ETCD_ANSWERS\n{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n");
        assert!(matches!(interpret(&op, &no_leader).unwrap(), HostOutput::Etcd(EtcdProbe::Unhealthy(r)) if r.contains("RAFT NO LEADER")));
        let tls = out("DRCTL_ETCD_ANSWERS\ncurl: (35) OpenSSL SSL_connect: Connection reset by peer\n");
        assert!(matches!(interpret(&op, &tls).unwrap(), HostOutput::Etcd(EtcdProbe::Unhealthy(r)) if r.contains("curl: (35)")));
        assert!(interpret(&op, &out("something else")).is_err());
    }

    #[test]
    fn the_kubelet_node_name_comes_from_its_client_certificate_subject() {
        let script = render(&HostOp::KubeletNodeName, &real()).unwrap();
        assert!(
            script.contains("sudo openssl x509 -noout -subject -nameopt RFC2253 -in /var/lib/kubelet/pki/kubelet-client-current.pem"),
            "{script}"
        );
        let out = |stdout: &str| ExecOutput { code: 0, stdout: stdout.as_bytes().to_vec(), stderr: vec![] };
        let named = out("subject=CN=system:node:ip-10-0-1-5.ec2.internal,O=system:nodes\n");
        assert_eq!(interpret(&HostOp::KubeletNodeName, &named).unwrap(), HostOutput::NodeName(Some("ip-10-0-1-5.ec2.internal".into())));
        assert_eq!(interpret(&HostOp::KubeletNodeName, &out("")).unwrap(), HostOutput::NodeName(None));
        let ovs = render(&HostOp::RestartOvs, &real()).unwrap();
        assert!(ovs.ends_with("sudo systemctl restart ovs-vswitchd ovsdb-server"), "{ovs}");
        let patch = render(&HostOp::ForceEtcdRedeploymentLocally { reason: "recovery-1-etcd-x".into() }, &real()).unwrap();
        assert!(
            patch.ends_with(
                "sudo oc --kubeconfig /etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/node-kubeconfigs/localhost-recovery.kubeconfig \
                 patch etcd cluster --type=merge -p '{\"spec\":{\"forceRedeploymentReason\":\"recovery-1-etcd-x\"}}'"
            ),
            "{patch}"
        );
        let ic = render(&HostOp::RemoveOvnIcDatabases, &real()).unwrap();
        assert!(ic.contains("/var/lib/ovn-ic/etc") && ic.contains("'*.db'"), "{ic}");
    }
}
