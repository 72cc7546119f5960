//! The OpenShift 4.1–4.3 control plane, as "Recovering from lost master hosts" (OpenShift
//! Container Platform 4.1–4.3) meets it: etcd runs as the `etcd-member` static pod that the
//! Machine Config Operator lays down (its setup finds the host's `etcd-N` DNS name), there is no
//! etcd operator, and recovery goes through the scripts in `/usr/local/bin`:
//! `etcd-snapshot-restore.sh`, `tokenize-signer.sh` (the temporary etcd signer pod in
//! `openshift-config`) and `etcd-member-recover.sh`.
//!
//! What makes the procedure hard is modelled as etcd has it: a member added to a one-member
//! cluster leaves it without quorum (and the API down) until the new member starts, which takes
//! minutes; etcd's strict reconfiguration check refuses a second add while one added member has
//! not started; a new member needs the signer for its certificates.

use crate::world::*;
use drctl_runtime::clock::Timestamp;
use drctl_workflows::ports::{EtcdMember, EtcdMemberList, HostOutput, LegacyEtcdIdentity, LegacyScript, PortError, PortResult, StaticPod};
use std::time::Duration;

/// Where `tokenize-signer.sh` renders the signer pod (its `./assets`, in the home directory the
/// runbook works from).
pub const SIGNER_MANIFEST: &str = "/home/core/assets/manifests/kube-etcd-cert-signer.yaml";

/// The cluster domain of the simulated 4.3 cluster.
pub const LEGACY_CLUSTER_DOMAIN: &str = "ocp43.sim.example.com";
pub const LEGACY_VERSION: &str = "4.3.40";
/// The masters a person builds to replace the two lost ones.
pub const LEGACY_NEW_MASTERS: [&str; 2] = ["master-3", "master-4"];
/// When the person has the new masters built, after the scenario starts.
const NEW_MASTERS_BOOT_AFTER: Duration = Duration::from_secs(40 * 60);

/// Votes a cluster of `n` members needs.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

fn peer_url(dns_name: &str) -> String {
    format!("https://{dns_name}:2380")
}

impl World {
    /// The etcd member name the 4.1–4.3 `etcd-member` pod gives the member on `host`.
    pub fn legacy_member_name(host: &str) -> String {
        format!("etcd-member-{host}")
    }

    /// A script of `/usr/local/bin` that only 4.1–4.3 hosts carry.
    fn legacy_script_present(&self, script: &str) -> PortResult<()> {
        match self.legacy_etcd {
            true => Ok(()),
            false => Err(PortError::Permanent(format!("sudo: /usr/local/bin/{script}: command not found"))),
        }
    }

    /// What the rendered command checks before its fence: the scripts' images from the release.
    pub(crate) fn legacy_script_setup(&self, host: &str, script: &LegacyScript) -> PortResult<()> {
        match script {
            LegacyScript::SnapshotRestore { .. } => Ok(()),
            LegacyScript::MemberRecover { .. } => {
                self.legacy_release_image(host, "machine-config-operator")?;
                self.legacy_release_image(host, "kube-client-agent").map(drop)
            }
        }
    }

    /// Carry out one of the 4.1–4.3 host operations on `host`.
    pub(crate) fn legacy_script(&mut self, host: &str, script: &LegacyScript) -> PortResult<()> {
        self.legacy_script_present(script.file())?;
        match script {
            LegacyScript::SnapshotRestore { dir, initial_cluster } => {
                self.pass_time(2 * MINUTE);
                self.legacy_snapshot_restore(host, dir, initial_cluster).map_err(PortError::Permanent)
            }
            LegacyScript::MemberRecover { signer_ip, member_name } => self.legacy_member_recover(host, signer_ip, member_name),
        }
    }

    /// `etcd-snapshot-restore.sh DIR INITIAL_CLUSTER`: the restore of `cluster-restore.sh`, with
    /// the membership given. etcd refuses to start a member whose own name and peer URL are not
    /// in it; every other member listed becomes a member that never starts.
    fn legacy_snapshot_restore(&mut self, host: &str, dir: &str, initial_cluster: &str) -> Result<(), String> {
        let h = self.hosts.get(host).ok_or_else(|| format!("no host {host}"))?;
        let own = World::legacy_member_name(host);
        let url = h.etcd_dns_name.as_deref().map(peer_url).unwrap_or_default();
        let entries: Vec<(&str, &str)> = initial_cluster.split(',').filter_map(|e| e.split_once('=')).collect();
        match entries.iter().find(|(name, _)| *name == own) {
            None => return Err(format!("etcdmain: couldn't find local name \"{own}\" in the initial cluster configuration")),
            Some((_, u)) if *u != url => {
                return Err(format!("etcdmain: --initial-cluster has {own}={u} but missing from --initial-advertise-peer-urls={url}"))
            }
            Some(_) => {}
        }
        self.restore_snapshot(host, dir)?;
        let others: Vec<String> = entries.iter().filter(|(n, _)| *n != own).map(|(n, _)| n.to_string()).collect();
        for name in others {
            let id = self.new_id();
            let cid = self.current_cluster;
            self.etcd.get_mut(&cid).expect("restored cluster").members.insert(id, name);
        }
        Ok(())
    }

    /// The 4.1–4.3 identity of `host`'s member.
    pub(crate) fn legacy_identity(&self, host: &str) -> PortResult<HostOutput> {
        let h = &self.hosts[host];
        Ok(HostOutput::Identity(LegacyEtcdIdentity { hostname: h.name.clone(), dns_name: h.etcd_dns_name.clone() }))
    }

    /// `oc adm release info --image-for NAME` as root on `host`: answered by the cluster's
    /// `clusterversion` through the host's own API server (`localhost:6443`, where the runbook's
    /// `oc login` points).
    pub(crate) fn legacy_release_image(&self, host: &str, name: &str) -> PortResult<String> {
        let kas = self.hosts[host].containers.get(&StaticPod::KubeApiServer) == Some(&Container::Running);
        if !kas || !self.api_available() {
            return Err(PortError::Transient(
                "The connection to the server localhost:6443 was refused - did you specify the right host or port?".into(),
            ));
        }
        let digest = drctl_runtime::rng::mix(self.seed, format!("{} {name}", self.api().cluster_version).as_bytes());
        Ok(format!("quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:{digest:016x}{digest:016x}{digest:016x}{digest:016x}"))
    }

    /// `tokenize-signer.sh HOSTNAME` and `oc create -f` of what it rendered, through the host's
    /// own API server: the pod is scheduled to the node named. A signer pod that exists is left.
    pub(crate) fn legacy_start_signer(&mut self, host: &str, hostname: &str) -> PortResult<HostOutput> {
        self.legacy_script_present("tokenize-signer.sh")?;
        self.legacy_release_image(host, "kube-etcd-signer-server")?;
        self.legacy_tokenize_signer(host, hostname);
        if self.api().etcd_signer.is_none() {
            self.legacy_create_signer(host)?;
        }
        Ok(HostOutput::Done)
    }

    /// `tokenize-signer.sh HOSTNAME`: the signer pod's manifest, for node `hostname`, in the
    /// working directory's `assets/manifests`.
    pub(crate) fn legacy_tokenize_signer(&mut self, host: &str, hostname: &str) {
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd-signer\n  namespace: openshift-config\nspec:\n  nodeName: {hostname}\n  hostNetwork: true\n"
        );
        self.host_mut(host).files.insert(SIGNER_MANIFEST.into(), SimFile::Bytes(manifest.into_bytes()));
    }

    /// `oc create -f` of the rendered signer manifest on `host`; `AlreadyExists` when the pod is
    /// there.
    pub(crate) fn legacy_create_signer(&mut self, host: &str) -> PortResult<()> {
        self.legacy_release_image(host, "kube-etcd-signer-server")?;
        let node = match self.hosts[host].files.get(SIGNER_MANIFEST) {
            Some(SimFile::Bytes(b)) => {
                String::from_utf8_lossy(b).lines().find_map(|l| l.trim().strip_prefix("nodeName: ").map(str::to_string))
            }
            _ => None,
        };
        let Some(node) = node else {
            return Err(PortError::Permanent(format!("error: the path \"{SIGNER_MANIFEST}\" does not exist")));
        };
        if self.api().etcd_signer.is_some() {
            return Err(PortError::Permanent(format!(
                "Error from server (AlreadyExists): error when creating \"{SIGNER_MANIFEST}\": pods \"etcd-signer\" already exists"
            )));
        }
        self.api_mut().etcd_signer = Some(node.clone());
        self.note(format!("etcd signer pod created for node {node}"));
        self.effect(EffectKind::SignerStarted, node);
        Ok(())
    }

    /// Whether the signer pod runs on `host` and listens on 9943.
    pub fn signer_listening_on(&self, host: &str) -> bool {
        let on = self.api().etcd_signer.as_deref() == Some(host);
        on && self.hosts.get(host).is_some_and(|h| h.powered && h.kubelet_running)
    }

    /// Delete the signer pod (`oc delete pod -n openshift-config etcd-signer`).
    pub(crate) fn delete_signer(&mut self) {
        if self.api_mut().etcd_signer.take().is_some() {
            self.note("etcd signer pod deleted");
            self.effect(EffectKind::SignerRemoved, "openshift-config/etcd-signer");
        }
    }

    /// Members of the current cluster added but not started yet.
    fn unstarted_members(&self) -> usize {
        self.etcd[&self.current_cluster].members.iter().filter(|(id, host)| !self.member_running(**id, host)).count()
    }

    /// `etcd-member-recover.sh SIGNER_IP ETCD_NAME` on `host`: certificates from the signer at
    /// `signer_ip`, `member add` through it, then etcd started as the new member (which takes
    /// minutes to join).
    fn legacy_member_recover(&mut self, host: &str, signer_ip: &str, member_name: &str) -> PortResult<()> {
        self.pass_time(MINUTE);
        let signer = self.hosts.values().find(|h| h.ip == signer_ip).map(|h| h.name.clone());
        if !signer.as_deref().is_some_and(|s| self.signer_listening_on(s)) {
            // The script's wait for its certificates never ends; it gives up.
            return Err(PortError::Permanent(format!(
                "etcd-member-recover.sh: Waiting for certs to generate.. timed out: no etcd signer answers at {signer_ip}:9943"
            )));
        }
        if member_name != World::legacy_member_name(host) {
            return Err(PortError::Permanent(format!(
                "etcd-member-recover.sh: certificates for {member_name} do not match this host ({host}): the etcd-member pod would not start"
            )));
        }
        if !self.has_quorum() {
            return Err(PortError::Transient("etcdserver: request timed out, possibly due to previous leader failure".into()));
        }
        let cid = self.current_cluster;
        if self.etcd[&cid].members.values().any(|h| h == host) {
            return Err(PortError::Permanent(format!("Error: etcdserver: member {member_name} already exists (peerURL exists)")));
        }
        // etcd's strict reconfiguration check: after the add, the started members must still be
        // a quorum (a one-member cluster may always grow to two).
        let members = self.etcd[&cid].members.len();
        let started = members - self.unstarted_members();
        if !(members == 1 && started == 1) && started < quorum(members + 1) {
            return Err(PortError::Permanent("Error: etcdserver: unhealthy cluster".into()));
        }
        let unstarted_before = self.unstarted_members();
        let id = self.new_id();
        self.etcd.get_mut(&cid).expect("cluster").members.insert(id, host.to_string());
        let dns = format!("etcd-{members}.{LEGACY_CLUSTER_DOMAIN}");
        let starts = self.delay(3 * MINUTE, 15 * MINUTE);
        let hm = self.host_mut(host);
        hm.etcd_data = Some(DataDir { cluster_id: cid, member_id: id });
        hm.etcd_data_corrupt = false;
        hm.etcd_dns_name.get_or_insert(dns);
        hm.manifests.insert(StaticPod::Etcd);
        hm.containers.insert(StaticPod::Etcd, Container::Starting { at: starts });
        self.api_mut(); // a membership change is a raft entry
        self.note(format!("etcd-member-recover.sh on {host}: member {id:x} ({member_name}) added; etcd starts at {starts}"));
        self.effect(EffectKind::LegacyMemberAdded { unstarted_before }, host);
        Ok(())
    }

    /// `etcdctl member list -w json` in the `etcd-member` container of `host`: a linearizable
    /// read, so it needs quorum; unstarted members have no name.
    pub(crate) fn legacy_member_list(&self, host: &str) -> PortResult<HostOutput> {
        let h = &self.hosts[host];
        if h.containers.get(&StaticPod::Etcd) != Some(&Container::Running) {
            return Err(PortError::Transient("drctl: no etcd-member container runs on this host: context deadline exceeded".into()));
        }
        if !self.has_quorum() {
            return Err(PortError::Transient("Error: context deadline exceeded".into()));
        }
        let cid = self.current_cluster;
        let members = self.etcd[&cid]
            .members
            .iter()
            .map(|(id, host)| {
                let started = self.member_running(*id, host);
                let dns = self.hosts.get(host).and_then(|h| h.etcd_dns_name.clone()).unwrap_or_default();
                let ip = self.hosts.get(host).map(|h| h.ip.clone()).unwrap_or_default();
                EtcdMember {
                    id: *id,
                    name: if started { World::legacy_member_name(host) } else { String::new() },
                    peer_urls: vec![peer_url(&dns)],
                    client_urls: if started { vec![format!("https://{ip}:2379")] } else { vec![] },
                    is_learner: false,
                }
            })
            .collect();
        Ok(HostOutput::Members(EtcdMemberList { cluster_id: cid, members }))
    }
}

/// `legacy-lost-masters`: an OpenShift 4.3 cluster (user-provisioned, OpenShift SDN) that lost
/// two of its three masters for good: etcd has no quorum, the API is down. master-0 remains; a
/// backup from an hour before is in the backup location. The person building the replacement
/// masters (`master-3`, `master-4`) has them boot about forty minutes in: they come up with the
/// `etcd-member` pod waiting for certificates and kubelets asking for their first certificates.
pub fn legacy_lost_masters(seed: u64) -> World {
    let mut w = crate::scenario::healthy(seed);
    w.scenario = "legacy-lost-masters".into();
    w.legacy_etcd = true;
    w.platform = Platform::Upi;
    w.network = NetworkType::Sdn;
    w.ovn_pods.clear();
    w.ovn_master_ips.clear();
    let api = w.api_mut();
    api.machines.clear();
    api.cluster_version = LEGACY_VERSION.into();
    api.etcd_secrets.clear();
    for (i, h) in w.hosts.values_mut().enumerate() {
        h.release_version = LEGACY_VERSION.into();
        h.ovn_db = None;
        if !h.worker {
            h.etcd_dns_name = Some(format!("etcd-{i}.{LEGACY_CLUSTER_DOMAIN}"));
        }
    }
    w.touch();
    crate::scenario::keep_backup(&mut w, "nightly");
    if let Some(info) = w.backups.get_mut("nightly").and_then(|b| b.info.as_mut()) {
        info.cluster_version = LEGACY_VERSION.into();
    }
    w.advance(HOUR);
    for lost in ["master-1", "master-2"] {
        w.hosts.get_mut(lost).expect("host").powered = false;
        w.note(format!("{lost} lost for good"));
    }
    let boot = w.now.plus(NEW_MASTERS_BOOT_AFTER);
    for (i, name) in LEGACY_NEW_MASTERS.iter().enumerate() {
        let ip = format!("10.0.0.{}", 13 + i);
        let host = Host {
            powered: false,
            power_on_at: Some(boot.plus(Duration::from_secs(90 * i as u64))),
            kubelet_cert_gen: None,
            kubelet_serving: false,
            manifests: [StaticPod::Etcd, StaticPod::KubeApiServer, StaticPod::KubeControllerManager, StaticPod::KubeScheduler].into(),
            ..Host::booted(name, &ip, "", 0, LEGACY_VERSION)
        };
        w.hosts.insert(name.to_string(), host);
    }
    w.touch();
    w.advance(5 * MINUTE);
    assert!(!w.api_available(), "legacy-lost-masters must start with the API down");
    w
}

/// When the new masters of `w` boot (for `drctl sim status` readers and tests).
pub fn new_masters_boot_at(w: &World) -> Option<Timestamp> {
    LEGACY_NEW_MASTERS.iter().filter_map(|m| w.hosts.get(*m).and_then(|h| h.power_on_at)).min()
}
