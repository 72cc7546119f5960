//! The host operations of the procedures, as a control-plane host of the simulated world
//! carries them out: what each command changes, what it answers, how it fails. One method per
//! operation; [`World::host_op`] dispatches.

use crate::world::*;
use drctl_workflows::ports::{HostOp, HostOutput, LegacyScript, PortError, PortResult, StaticPod};

/// The marker a fenced restore writes before it starts (the fence itself is written after).
fn started_marker(fence: &str) -> String {
    format!("{fence}.started")
}

/// What the real move answers when neither its source nor its destination exists.
fn absent(src: &str, dst: &str) -> PortError {
    PortError::NotFound(format!("drctl: neither {src} nor {dst} exists"))
}

impl World {
    /// Carry out `op` on `host` (reachable, checked by the caller) and answer as the real
    /// command would.
    pub(crate) fn host_op(&mut self, host: &str, op: &HostOp) -> PortResult<HostOutput> {
        match op {
            HostOp::MoveManifestOut(p) => self.move_manifest(host, p, true),
            HostOp::MoveManifestIn(p) => self.move_manifest(host, p, false),
            HostOp::ManifestPresent(p) => Ok(HostOutput::Present(self.hosts[host].manifests.contains(p))),
            HostOp::RunningContainers { name } => self.running_containers(host, name),
            HostOp::MoveEtcdDataDirAside => self.move_etcd_data_aside(host),
            HostOp::ListAddresses => Ok(HostOutput::Addresses(self.hosts[host].addresses.clone())),
            HostOp::RemoveAddress { address, device } => self.remove_address(host, address, device),
            HostOp::RemoveKubeletPki => self.remove_kubelet_pki(host),
            HostOp::RestartKubelet => self.restart_kubelet(host),
            HostOp::RemoveOvnDatabases => self.remove_ovn_databases(host),
            HostOp::RunBackup { dir } => self.run_backup(host, dir),
            HostOp::SnapshotStatus { path } => self.snapshot_status(host, path),
            HostOp::RunRestore { dir, fence } => self.run_restore(host, dir, fence),
            HostOp::ListDir { dir } => self.list_dir(host, dir),
            HostOp::MakePrivateDir { dir } => self.make_private_dir(host, dir),
            HostOp::ReleaseVersion => Ok(HostOutput::Version(self.hosts[host].release_version.clone())),
            HostOp::Shutdown { minutes } => self.shutdown(host, *minutes),
            // Hosts reach each other's etcd ports whatever drctl's own machine can reach.
            HostOp::ProbeEtcd { address, .. } => Ok(HostOutput::Etcd(self.probe_etcd(address))),
            HostOp::RemoveOvnIcDatabases => self.remove_ovn_ic_databases(host),
            HostOp::ForceEtcdRedeploymentLocally { reason } => self.force_etcd_redeployment_locally(host, reason),
            HostOp::RestartOvs => {
                self.restart_ovs(host);
                Ok(HostOutput::Done)
            }
            // The kubelet's client certificate names the host's own node (sim hosts are their nodes).
            HostOp::KubeletNodeName => Ok(HostOutput::NodeName(self.hosts[host].kubelet_cert_gen.map(|_| host.to_string()))),
            HostOp::RunLegacyScript { script, fence } => {
                let (what, inspect) = match script {
                    LegacyScript::SnapshotRestore { dir, .. } => {
                        (format!("etcd-snapshot-restore.sh {dir} (fence {fence})"), format!("inspect {dir} and the etcd-member pod"))
                    }
                    LegacyScript::MemberRecover { signer_ip, member_name } => (
                        format!("etcd-member-recover.sh {signer_ip} {member_name} (fence {fence})"),
                        format!("inspect the etcd-member pod and `etcdctl member list` for {member_name}"),
                    ),
                };
                // The scripts' images are asked of the release before the fence is touched.
                let markers = &self.hosts[host].markers;
                if !markers.contains(fence.as_str()) && !markers.contains(&started_marker(fence)) {
                    self.legacy_script_setup(host, script)?;
                }
                self.fenced(host, fence, &what, script.file(), &inspect, |w| w.legacy_script(host, script))
            }
            HostOp::LegacyStartSigner { hostname } => self.legacy_start_signer(host, hostname),
            HostOp::LegacyEtcdIdentity => self.legacy_identity(host),
            HostOp::LegacySignerListening => Ok(HostOutput::Present(self.signer_listening_on(host))),
            HostOp::LegacyMemberList => self.legacy_member_list(host),
        }
    }

    /// `mv -v` as the real adapter renders it (out of the manifest directory to /tmp, or back
    /// in): moves what is there, answers "already moved" when only the destination exists, and
    /// fails as `mv` does when neither does.
    pub(crate) fn move_manifest(&mut self, host: &str, p: &StaticPod, out: bool) -> PortResult<HostOutput> {
        let (in_place, aside) = (format!("/etc/kubernetes/manifests/{}", p.manifest_file()), format!("/tmp/{}", p.manifest_file()));
        let h = self.host_mut(host);
        let (from, to, src, dst) = match out {
            true => (&mut h.manifests, &mut h.moved_manifests, in_place, aside),
            false => (&mut h.moved_manifests, &mut h.manifests, aside, in_place),
        };
        if !from.remove(p) {
            return match to.contains(p) {
                true => Ok(HostOutput::Moved { moved: false }),
                false => Err(absent(&src, &dst)),
            };
        }
        to.insert(*p);
        let effect = if out { EffectKind::ManifestMovedOut(*p) } else { EffectKind::ManifestMovedIn(*p) };
        self.effect(effect, host);
        Ok(HostOutput::Moved { moved: true })
    }

    fn running_containers(&mut self, host: &str, name: &str) -> PortResult<HostOutput> {
        Ok(HostOutput::Names(
            self.hosts[host]
                .containers
                .iter()
                .filter(|(p, c)| p.container() == name && matches!(c, Container::Running | Container::Stopping { .. }))
                .map(|(p, _)| p.container().to_string())
                .collect(),
        ))
    }

    pub(crate) fn move_etcd_data_aside(&mut self, host: &str) -> PortResult<HostOutput> {
        let h = self.host_mut(host);
        Ok(match h.etcd_data.take() {
            Some(d) => {
                h.etcd_data_aside.push(d);
                h.etcd_data_corrupt = false;
                self.effect(EffectKind::EtcdDataMovedAside, host);
                HostOutput::Moved { moved: true }
            }
            None if !h.etcd_data_aside.is_empty() => HostOutput::Moved { moved: false },
            None => return Err(absent("/var/lib/etcd", "/tmp/etcd")),
        })
    }

    pub(crate) fn remove_address(&mut self, host: &str, address: &str, device: &str) -> PortResult<HostOutput> {
        let h = self.host_mut(host);
        let before = h.addresses.len();
        h.addresses.retain(|(a, d)| !(a == address && d == device));
        if h.addresses.len() != before {
            self.effect(EffectKind::AddressRemoved(address.to_string()), host);
        }
        Ok(HostOutput::Done)
    }

    pub(crate) fn remove_kubelet_pki(&mut self, host: &str) -> PortResult<HostOutput> {
        let h = self.host_mut(host);
        let had = h.kubelet_cert_gen.is_some() || h.kubelet_serving;
        h.kubelet_cert_gen = None;
        h.kubelet_serving = false;
        if had {
            self.effect(EffectKind::KubeletPkiRemoved, host);
        }
        Ok(HostOutput::Done)
    }

    pub(crate) fn restart_kubelet(&mut self, host: &str) -> PortResult<HostOutput> {
        let h = self.host_mut(host);
        h.kubelet_running = true;
        h.needs_register = true;
        self.note(format!("kubelet restarted on {host}"));
        self.effect(EffectKind::KubeletRestarted, host);
        Ok(HostOutput::Done)
    }

    /// `systemctl restart ovs-vswitchd ovsdb-server`.
    pub(crate) fn restart_ovs(&mut self, host: &str) {
        self.note(format!("ovs-vswitchd and ovsdb-server restarted on {host}"));
    }

    /// `oc patch etcd cluster` against the host's own API server (localhost:6443) with the
    /// recovery kubeconfig: works when that API server runs and etcd has quorum.
    pub(crate) fn force_etcd_redeployment_locally(&mut self, host: &str, reason: &str) -> PortResult<HostOutput> {
        let kas = self.hosts[host].containers.get(&StaticPod::KubeApiServer) == Some(&Container::Running);
        if !kas {
            return Err(PortError::Transient(
                "The connection to the server localhost:6443 was refused - did you specify the right host or port?".into(),
            ));
        }
        if !self.has_quorum() {
            return Err(PortError::Transient("Error from server: etcdserver: request timed out".into()));
        }
        self.force_redeployment(drctl_workflows::ports::Operator::Etcd, reason, &format!(" (recovery kubeconfig on {host})"));
        Ok(HostOutput::Done)
    }

    /// `/var/lib/ovn-ic/etc` exists only with interconnect.
    pub(crate) fn remove_ovn_ic_databases(&mut self, host: &str) -> PortResult<HostOutput> {
        if self.network == NetworkType::OvnIc && self.host_mut(host).ovn_db.take().is_some() {
            self.effect(EffectKind::OvnDatabasesRemoved, host);
        }
        Ok(HostOutput::Done)
    }

    pub(crate) fn remove_ovn_databases(&mut self, host: &str) -> PortResult<HostOutput> {
        if self.network != NetworkType::OvnCentral {
            return Ok(HostOutput::Done); // no /var/lib/ovn/etc: nothing matches
        }
        let h = self.host_mut(host);
        if h.ovn_db.take().is_some() {
            self.effect(EffectKind::OvnDatabasesRemoved, host);
        }
        Ok(HostOutput::Done)
    }

    pub(crate) fn run_backup(&mut self, host: &str, dir: &str) -> PortResult<HostOutput> {
        self.pass_time(45 * SECOND);
        // cluster-backup.sh takes its snapshot with etcdctl.
        if let Some(kind) = self.etcd_error_now() {
            return Err(PortError::Transient(kind.message().into()));
        }
        let (snapshot, resources) = self.backup(host, dir).map_err(|e| {
            if e.contains("timed out") || e.contains("no leader") {
                PortError::Transient(e)
            } else {
                PortError::Permanent(e)
            }
        })?;
        Ok(HostOutput::Backup { snapshot, resources })
    }

    fn snapshot_status(&mut self, host: &str, path: &str) -> PortResult<HostOutput> {
        Ok(match self.hosts[host].files.get(path) {
            Some(SimFile::Snapshot { status, .. }) => HostOutput::Snapshot(status.clone()),
            Some(_) => return Err(PortError::Permanent(format!("{path}: invalid snapshot: snapshot file has no checksum"))),
            None => return Err(PortError::NotFound(format!("{path}: no such file or directory"))),
        })
    }

    /// `cluster-restore.sh`, fenced as the ssh adapter renders it.
    fn run_restore(&mut self, host: &str, dir: &str, fence: &str) -> PortResult<HostOutput> {
        let what = format!("cluster-restore.sh {dir} (fence {fence})");
        self.fenced(host, fence, &what, "cluster-restore.sh", &format!("inspect {dir} and the etcd member"), |w| {
            w.pass_time(2 * MINUTE);
            w.restore_snapshot(host, dir).map_err(PortError::Permanent)
        })
    }

    /// A script run fenced as the ssh adapter renders it: a `started` marker before the script,
    /// the fence itself after it; a script an earlier attempt started is never started again (it
    /// still runs: wait; it ended halfway: a person must look).
    pub(crate) fn fenced(
        &mut self,
        host: &str,
        fence: &str,
        what: &str,
        script: &str,
        inspect: &str,
        run: impl FnOnce(&mut World) -> PortResult<()>,
    ) -> PortResult<HostOutput> {
        let h = &self.hosts[host];
        if h.markers.contains(fence) {
            return Ok(HostOutput::Done);
        }
        let (noun, half) = match script {
            "cluster-restore.sh" => ("restore", "a half-restored host"),
            other => (other, "a half-done host"),
        };
        if h.markers.contains(&started_marker(fence)) {
            return match h.restore_running.as_ref().is_some_and(|r| r.fence == fence) {
                true => Err(PortError::Transient(format!(
                    "{what}: drctl: {noun} {fence} is still running on this host (started by an earlier attempt)"
                ))),
                false => Err(PortError::Permanent(format!(
                    "{what}: drctl: {noun} {fence} was started on this host and ended without finishing: {script} must \
                     not be run again on {half}; {inspect}, then resume"
                ))),
            };
        }
        self.host_mut(host).markers.insert(started_marker(fence));
        // The fence is written after the script succeeded, as the rendered command does.
        run(self)?;
        self.host_mut(host).markers.insert(fence.to_string());
        Ok(HostOutput::Done)
    }

    /// The connection that started `cluster-restore.sh` dropped: the script runs on by itself.
    pub(crate) fn restore_left_running(&mut self, host: &str, dir: &str, fence: &str) {
        let h = &self.hosts[host];
        if h.markers.contains(fence) || h.markers.contains(&started_marker(fence)) {
            return;
        }
        let until = self.now.plus(std::time::Duration::from_millis(2 * MINUTE));
        let h = self.host_mut(host);
        h.markers.insert(started_marker(fence));
        h.restore_running = Some(RestoreRun { dir: dir.to_string(), fence: fence.to_string(), until });
        self.note(format!("cluster-restore.sh on {host} keeps running after its connection dropped"));
    }

    fn list_dir(&mut self, host: &str, dir: &str) -> PortResult<HostOutput> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        Ok(HostOutput::Names(
            self.hosts[host]
                .files
                .keys()
                .filter_map(|p| p.strip_prefix(&prefix))
                .filter(|rest| !rest.contains('/'))
                .map(str::to_string)
                .collect(),
        ))
    }

    pub(crate) fn make_private_dir(&mut self, host: &str, dir: &str) -> PortResult<HostOutput> {
        self.host_mut(host).dirs.insert(dir.to_string());
        Ok(HostOutput::Done)
    }

    pub(crate) fn shutdown(&mut self, host: &str, minutes: u32) -> PortResult<HostOutput> {
        let at = self.now.plus(std::time::Duration::from_secs(60 * u64::from(minutes)));
        self.host_mut(host).shutdown_at = Some(at);
        self.effect(EffectKind::HostShutdown, host);
        Ok(HostOutput::Done)
    }
}
