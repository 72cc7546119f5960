//! The procedure catalog: one row per procedure, read by the registry, the CLI (`drctl
//! procedures`, `--yes`, the capability check before a run is stored), the chaos harness and the
//! docs. A new procedure is its own module plus one row here; a test fails when a row is
//! incomplete or a registered procedure has none.

use crate::ports::Ports;
use drctl_runtime::{Procedure, Registry};
use serde::Serialize;
use std::fmt;

/// A public document a procedure follows. Everything a user reads cites one of these, never an
/// internal file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DocRef {
    /// "OpenShift Container Platform".
    pub product: &'static str,
    /// "4.14".
    pub version: &'static str,
    /// The book: "Backup and restore", "Hosted control planes".
    pub document: &'static str,
    /// "5.4.2.2", or a chapter ("ch.3").
    pub section: &'static str,
    pub title: &'static str,
}

impl fmt::Display for DocRef {
    /// "OpenShift Container Platform 4.14, Backup and restore, §5.4.2.2 Restoring to a previous
    /// cluster state".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let section = if self.section.starts_with("ch.") { self.section.to_string() } else { format!("§{}", self.section) };
        write!(f, "{} {}, {}, {section} {}", self.product, self.version, self.document, self.title)
    }
}

const OCP: &str = "OpenShift Container Platform";
const BACKUP_AND_RESTORE: &str = "Backup and restore";

/// Which kind of control plane a procedure works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// etcd as static pods on the cluster's own control-plane hosts.
    Standalone,
    /// Hosted control planes: etcd as a StatefulSet on a management cluster.
    Hosted,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Standalone => "standalone",
            Family::Hosted => "hosted",
        }
    }
}

/// What a run talks to. A target (a simulated world or a real access configuration) provides
/// a set of these; a run needing one its target lacks is refused before anything is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// The standalone cluster's Kubernetes/OpenShift API.
    ClusterApi,
    /// The control-plane hosts over SSH.
    Hosts,
    /// etcd itself (etcdctl on a control-plane host).
    Etcd,
    /// A place outside the cluster where backup sets are kept.
    BackupLocation,
    /// The API of the management cluster a hosted cluster runs on (per side for a migration).
    ManagementCluster,
    /// The hosted cluster's own API.
    HostedClusterApi,
    /// An S3-compatible object store.
    ObjectStore,
    /// The DNS zone of a hosted cluster's routes.
    Dns,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::ClusterApi => "cluster-api",
            Capability::Hosts => "hosts",
            Capability::Etcd => "etcd",
            Capability::BackupLocation => "backup-location",
            Capability::ManagementCluster => "management-cluster",
            Capability::HostedClusterApi => "hosted-cluster-api",
            Capability::ObjectStore => "object-store",
            Capability::Dns => "dns",
        }
    }

    /// What to pass to give a real run this capability.
    pub fn how_to_provide(self) -> &'static str {
        match self {
            Capability::ClusterApi => "--kubeconfig (or $KUBECONFIG)",
            Capability::Hosts | Capability::Etcd => "--hosts NAME=ADDR,… (etcdctl runs on the hosts over SSH)",
            Capability::BackupLocation => "--backup-root DIR",
            Capability::ManagementCluster => "a management-cluster kubeconfig",
            Capability::HostedClusterApi => "the hosted cluster's kubeconfig",
            Capability::ObjectStore => "an object store bucket",
            Capability::Dns => "an external-DNS zone",
        }
    }
}

/// A procedure's command-line arguments (`drctl run NAME …`), turned into its parameters.
pub trait IntoParams {
    fn into_params(self) -> serde_json::Value;
}

/// The command line of a procedure, for the CLI to build `drctl run NAME` from.
#[derive(Clone, Copy)]
pub struct CliArgs {
    /// Adds the procedure's own arguments to its subcommand.
    pub augment: fn(clap::Command) -> clap::Command,
    /// Reads them back as the procedure's parameters (JSON, validated by the engine).
    pub params: fn(&clap::ArgMatches) -> Result<serde_json::Value, clap::Error>,
}

/// The longest duration a command line may give (ten years): beyond it, time arithmetic on a
/// run's clock could overflow, and no recovery is planned that far ahead.
const MAX_DURATION_SECS: u64 = 3650 * 86_400;

/// A duration as typed on the command line: a whole number and a unit, `90s`, `30m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("duration '{s}' needs a unit (s, m, h, d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("duration '{s}' must start with a whole number"))?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("duration '{s}': unit must be s, m, h or d")),
    };
    match n.checked_mul(per).filter(|secs| *secs <= MAX_DURATION_SECS) {
        Some(secs) => Ok(std::time::Duration::from_secs(secs)),
        None => Err(format!("duration '{s}' is too long: at most 3650d")),
    }
}

fn params_of<A: clap::FromArgMatches + IntoParams>(m: &clap::ArgMatches) -> Result<serde_json::Value, clap::Error> {
    A::from_arg_matches(m).map(IntoParams::into_params)
}

/// The [`CliArgs`] of a clap `Args` struct.
pub const fn cli<A: clap::Args + IntoParams>() -> CliArgs {
    CliArgs { augment: A::augment_args, params: params_of::<A> }
}

/// What is known about a run's target before anything is stored (from the simulated world, or
/// from the real access options without contacting the cluster), for the checks a procedure
/// makes up front. `None`: not known before the run looks.
#[derive(Clone, Debug, Default)]
pub struct TargetFacts {
    /// The backup sets the backup location holds.
    pub backups: Option<Vec<String>>,
    /// The control-plane hosts (the inventory, or the simulated cluster's).
    pub control_plane_hosts: Option<Vec<String>>,
    /// Whether keepalived runs on the control plane (its VIPs must then be named).
    pub keepalived: Option<bool>,
}

/// Input a step would only halt on later, refused before the run is stored (or before a
/// correction is recorded): `Err` says what is wrong and what to pass.
pub type Preflight = fn(&serde_json::Value, &TargetFacts) -> Result<(), String>;

/// A procedure with nothing to check up front beyond its own `validate`.
pub fn no_preflight(_: &serde_json::Value, _: &TargetFacts) -> Result<(), String> {
    Ok(())
}

/// One procedure, as everything outside its module sees it.
#[derive(Clone, Copy, Serialize)]
pub struct CatalogRow {
    /// As typed on the command line; the procedure's `NAME`.
    pub name: &'static str,
    pub family: Family,
    /// One line for `drctl procedures`.
    pub summary: &'static str,
    /// The public documents its steps follow, the main one first.
    pub docs: &'static [DocRef],
    pub capabilities: &'static [Capability],
    /// Every gate it may stop at: `--yes` approves exactly these, up front.
    pub gates: &'static [&'static str],
    /// Simulator scenarios it is demonstrated on (`drctl run NAME --sim SCENARIO`).
    pub scenarios: &'static [&'static str],
    /// Adds the procedure to an engine registry.
    #[serde(skip)]
    pub register: fn(&mut Registry<Ports>),
    /// Its arguments on the command line.
    #[serde(skip)]
    pub cli: CliArgs,
    /// Its checks of input against the target before a run is stored.
    #[serde(skip)]
    pub preflight: Preflight,
}

impl fmt::Debug for CatalogRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogRow").field("name", &self.name).finish_non_exhaustive()
    }
}

impl CatalogRow {
    /// The main public reference, for one-line citations.
    pub fn doc(&self) -> &DocRef {
        &self.docs[0]
    }

    /// The capabilities this procedure needs that `provided` lacks.
    pub fn missing(&self, provided: &[Capability]) -> Vec<Capability> {
        self.capabilities.iter().copied().filter(|c| !provided.contains(c)).collect()
    }

    /// What makes a row unusable; empty when it is complete.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut check = |ok: bool, what: &str| {
            if !ok {
                p.push(format!("{}: {what}", self.name));
            }
        };
        check(!self.name.is_empty() && self.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "name must be kebab-case");
        check(!self.summary.is_empty(), "no summary");
        check(!self.docs.is_empty(), "no public documentation reference");
        for d in self.docs {
            let fields = [d.product, d.version, d.document, d.section, d.title];
            check(fields.iter().all(|f| !f.is_empty()), "a documentation reference has an empty field");
            // Product text cites the public documentation (product, release, book), never a
            // file this repository keeps for reference.
            let release = d.version.split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            check(d.product == OCP && release, "a documentation reference is not a public OpenShift document");
        }
        check(!self.capabilities.is_empty(), "no capabilities");
        check(!self.scenarios.is_empty(), "no simulator scenario");
        p
    }
}

/// Every procedure this build knows.
pub const CATALOG: &[CatalogRow] = &[
    CatalogRow {
        name: <crate::EtcdBackup as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Back up etcd (snapshot + static pod resources) from one healthy control-plane host, verify it, copy it out",
        docs: &[
            DocRef { product: OCP, version: "4.14", document: BACKUP_AND_RESTORE, section: "5.1.1", title: "Backing up etcd data" },
            DocRef { product: OCP, version: "4.5", document: BACKUP_AND_RESTORE, section: "ch.1", title: "Backing up etcd" },
        ],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation],
        gates: &[],
        scenarios: &["healthy"],
        register: |r| r.register(crate::EtcdBackup),
        cli: cli::<crate::etcd_backup::BackupArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::RestoreClusterState as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Restore a cluster that lost etcd quorum from an etcd backup, then bring every control-plane host back",
        docs: &[
            DocRef {
                product: OCP,
                version: "4.14",
                document: BACKUP_AND_RESTORE,
                section: "5.4.2.2",
                title: "Restoring to a previous cluster state",
            },
            DocRef {
                product: OCP,
                version: "4.5",
                document: BACKUP_AND_RESTORE,
                section: "5.3",
                title: "Restoring to a previous cluster state",
            },
        ],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation],
        gates: &[crate::restore_cluster_state::START_GATE],
        scenarios: &["quorum-loss", "quorum-loss-reachable", "healthy"],
        register: |r| r.register(crate::RestoreClusterState),
        cli: cli::<crate::restore_cluster_state::RestoreArgs>(),
        preflight: crate::restore_cluster_state::preflight,
    },
    CatalogRow {
        name: <crate::EtcdMemberTriage as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Find the one unhealthy etcd member, decide why it is unhealthy, and run the replacement that calls for (as a child run)",
        docs: &[
            DocRef {
                product: OCP,
                version: "4.14",
                document: BACKUP_AND_RESTORE,
                section: "5.2.3",
                title: "Determining the state of the unhealthy etcd member",
            },
            DocRef {
                product: OCP,
                version: "4.14",
                document: BACKUP_AND_RESTORE,
                section: "5.2.2",
                title: "Identifying an unhealthy etcd member",
            },
            DocRef {
                product: OCP,
                version: "4.5",
                document: BACKUP_AND_RESTORE,
                section: "ch.2",
                title: "Replacing an unhealthy etcd member",
            },
        ],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation],
        gates: &[crate::etcd_member::REMOVE_GATE],
        scenarios: &["member-machine-stopped", "member-node-notready", "member-crashloop", "baremetal-member-lost"],
        register: |r| r.register(crate::EtcdMemberTriage),
        cli: cli::<crate::etcd_member_triage::TriageArgs>(),
        preflight: crate::replace_etcd_member_baremetal::preflight,
    },
    CatalogRow {
        name: <crate::ReplaceEtcdMemberMachine as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Replace an unhealthy etcd member whose machine is not running or whose node is not ready: remove it, re-create its machine, verify three members",
        docs: &[DocRef {
            product: OCP,
            version: "4.14",
            document: BACKUP_AND_RESTORE,
            section: "5.2.4.1",
            title: "Replacing an unhealthy etcd member whose machine is not running or whose node is not ready",
        }],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation],
        gates: &[crate::etcd_member::REMOVE_GATE],
        scenarios: &["member-machine-stopped", "member-node-notready"],
        register: |r| r.register(crate::ReplaceEtcdMemberMachine),
        cli: cli::<crate::replace_etcd_member_machine::MemberMachineArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::ReplaceEtcdMemberBaremetal as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Replace the unhealthy etcd member of a bare metal cluster: remove it, replace its BareMetalHost and machine, provision the new server, verify three members",
        docs: &[DocRef {
            product: OCP,
            version: "4.14",
            document: BACKUP_AND_RESTORE,
            section: "5.2.4.3",
            title: "Replacing an unhealthy bare metal etcd member whose machine is not running or whose node is not ready",
        }],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation],
        gates: &[crate::etcd_member::REMOVE_GATE],
        scenarios: &["baremetal-member-lost"],
        register: |r| r.register(crate::ReplaceEtcdMemberBaremetal),
        cli: cli::<crate::replace_etcd_member_baremetal::MemberBaremetalArgs>(),
        preflight: crate::replace_etcd_member_baremetal::preflight,
    },
    CatalogRow {
        name: <crate::ReplaceEtcdMemberCrashloop as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Replace an etcd member whose pod crashloops: stop it and move its data aside over SSH, remove it, redeploy, verify every endpoint healthy",
        docs: &[DocRef {
            product: OCP,
            version: "4.14",
            document: BACKUP_AND_RESTORE,
            section: "5.2.4.2",
            title: "Replacing an unhealthy etcd member whose etcd pod is crashlooping",
        }],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation],
        gates: &[crate::etcd_member::REMOVE_GATE],
        scenarios: &["member-crashloop"],
        register: |r| r.register(crate::ReplaceEtcdMemberCrashloop),
        cli: cli::<crate::replace_etcd_member_crashloop::CrashloopArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::RecoverExpiredCerts as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Bring back kubelets whose certificates expired: approve, by policy, their client and serving CSRs until every node is Ready; anything outside the policy goes to a person",
        docs: &[
            DocRef {
                product: OCP,
                version: "4.14",
                document: BACKUP_AND_RESTORE,
                section: "5.4.3",
                title: "Recovering from expired control plane certificates",
            },
            DocRef {
                product: OCP,
                version: "4.5",
                document: BACKUP_AND_RESTORE,
                section: "5.4",
                title: "Recovering from expired control plane certificates",
            },
        ],
        capabilities: &[Capability::ClusterApi, Capability::Hosts],
        gates: &[crate::recover_expired_certs::UNEXPECTED_CSRS_GATE],
        scenarios: &["certs-expired", "healthy"],
        register: |r| r.register(crate::RecoverExpiredCerts),
        cli: cli::<crate::recover_expired_certs::ServingCsrArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::ClusterShutdown as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Shut the cluster down gracefully: a verified backup first, a warning when the kubelet signer expires before the planned restart, then every node over SSH, workers first",
        docs: &[DocRef {
            product: OCP,
            version: "4.5",
            document: BACKUP_AND_RESTORE,
            section: "ch.3",
            title: "Shutting down the cluster gracefully",
        }],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::Etcd, Capability::BackupLocation],
        gates: &[crate::cluster_shutdown::SHUTDOWN_GATE],
        scenarios: &["healthy"],
        register: |r| r.register(crate::ClusterShutdown),
        cli: cli::<crate::cluster_shutdown::ShutdownArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::ClusterRestart as Procedure>::NAME,
        family: Family::Standalone,
        summary: "Bring a gracefully shut down cluster back after its machines were powered on: control plane, then workers, approving CSRs by policy, then no degraded operator",
        docs: &[DocRef {
            product: OCP,
            version: "4.5",
            document: BACKUP_AND_RESTORE,
            section: "ch.4",
            title: "Restarting the cluster gracefully",
        }],
        capabilities: &[Capability::ClusterApi, Capability::Hosts],
        gates: &[crate::recover_expired_certs::UNEXPECTED_CSRS_GATE],
        scenarios: &["shut-down"],
        register: |r| r.register(crate::ClusterRestart),
        cli: cli::<crate::recover_expired_certs::ServingCsrArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::LegacyLostMasters as Procedure>::NAME,
        family: Family::Standalone,
        summary: "OpenShift 4.1–4.3 with the majority of masters lost: restore quorum on the one left, approve the new masters' CSRs, then grow etcd one member at a time through the temporary signer, removed on every way out",
        docs: &[
            DocRef {
                product: OCP,
                version: "4.3",
                document: BACKUP_AND_RESTORE,
                section: "5.2",
                title: "Recovering from lost master hosts",
            },
            DocRef {
                product: OCP,
                version: "4.1",
                document: "Disaster recovery",
                section: "ch.2",
                title: "Recovering from lost master hosts",
            },
        ],
        capabilities: &[Capability::ClusterApi, Capability::Hosts, Capability::BackupLocation],
        gates: &[
            crate::legacy_lost_masters::START_GATE,
            crate::legacy_lost_masters::NEW_MASTERS_GATE,
            crate::legacy_lost_masters::DNS_LB_GATE,
            crate::recover_expired_certs::UNEXPECTED_CSRS_GATE,
        ],
        scenarios: &["legacy-lost-masters"],
        register: |r| r.register(crate::LegacyLostMasters),
        cli: cli::<crate::legacy_lost_masters::LegacyArgs>(),
        preflight: crate::legacy_lost_masters::preflight,
    },
    CatalogRow {
        name: <crate::HostedPauseReconciliation as Procedure>::NAME,
        family: Family::Hosted,
        summary: "Pause (or unpause) the reconciliation of a hosted cluster and its NodePools, never clearing a pause it did not set",
        docs: &[DocRef {
            product: OCP,
            version: "4.15",
            document: "Hosted control planes",
            section: "9.2",
            title: "Pausing the reconciliation of a hosted cluster and hosted control plane",
        }],
        capabilities: &[Capability::ManagementCluster],
        gates: &[],
        scenarios: &["hosted-healthy", "hosted-paused", "hosted-paused-by-other"],
        register: |r| r.register(crate::HostedPauseReconciliation),
        cli: cli::<crate::hosted::pause_reconciliation::PauseArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::hosted::HostedScaleDataPlaneZero as Procedure>::NAME,
        family: Family::Hosted,
        summary: "Scale every NodePool of a hosted cluster to zero with a bounded drain, recording replicas and drain timeouts (abort scales back); --scale-up brings them back",
        docs: &[DocRef {
            product: OCP,
            version: "4.15",
            document: "Hosted control planes",
            section: "4.1",
            title: "Scaling down the data plane to zero",
        }],
        capabilities: &[Capability::ManagementCluster],
        gates: &[],
        scenarios: &["hosted-healthy", "hosted-autoscaling", "hosted-data-plane-at-zero"],
        register: |r| r.register(crate::hosted::HostedScaleDataPlaneZero),
        cli: cli::<crate::hosted::scale_data_plane_zero::ScaleZeroArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::hosted::HostedEtcdMemberRecover as Procedure>::NAME,
        family: Family::Hosted,
        summary: "Recover the one failed etcd member of a hosted control plane: delete its PVC, then its pod (each fenced by uid), and wait until it re-joins; never on SingleReplica or with more than one member down",
        docs: &[DocRef {
            product: OCP,
            version: "4.15",
            document: "Hosted control planes",
            section: "8.1.2",
            title: "Recovering an etcd member for a hosted cluster",
        }],
        capabilities: &[Capability::ManagementCluster],
        gates: &[],
        scenarios: &["hosted-etcd-member-failed", "hosted-healthy"],
        register: |r| r.register(crate::hosted::HostedEtcdMemberRecover),
        cli: cli::<crate::hosted::etcd_member_recover::MemberRecoverArgs>(),
        preflight: no_preflight,
    },
    CatalogRow {
        name: <crate::hosted::HostedEtcdSnapshot as Procedure>::NAME,
        family: Family::Hosted,
        summary: "Back up a hosted cluster's etcd to S3: pause, stop the API servers, snapshot one member, stream it out, verify size and SHA-256, save the encryption key and a manifest; every exit puts the API servers and the pause back",
        docs: &[DocRef {
            product: OCP,
            version: "4.15",
            document: "Hosted control planes",
            section: "8.2.1",
            title: "Backing up etcd on a hosted cluster",
        }],
        capabilities: &[Capability::ManagementCluster, Capability::ObjectStore],
        gates: &[],
        scenarios: &["hosted-healthy"],
        register: |r| r.register(crate::hosted::HostedEtcdSnapshot),
        cli: cli::<crate::hosted::etcd_snapshot::SnapshotArgs>(),
        preflight: no_preflight,
    },
];

/// The row of procedure `name`.
pub fn row(name: &str) -> Option<&'static CatalogRow> {
    CATALOG.iter().find(|r| r.name == name)
}

/// An engine registry holding every procedure of the catalog.
pub fn registry() -> Registry<Ports> {
    let mut r = Registry::default();
    for row in CATALOG {
        (row.register)(&mut r);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_complete_and_names_the_procedure_it_registers() {
        let problems: Vec<String> = CATALOG.iter().flat_map(CatalogRow::problems).collect();
        assert!(problems.is_empty(), "{problems:#?}");
        for row in CATALOG {
            let mut r = Registry::default();
            (row.register)(&mut r);
            let names: Vec<&str> = r.iter().map(|p| p.name()).collect();
            assert_eq!(names, [row.name], "the row of {} registers {names:?}", row.name);
        }
        let reg = registry();
        assert_eq!(reg.iter().count(), CATALOG.len(), "two rows register the same procedure");
    }

    #[test]
    fn an_incomplete_row_is_reported() {
        let bad = CatalogRow {
            name: "Bad_Name",
            family: Family::Hosted,
            summary: "",
            docs: &[DocRef { product: "internal notes", version: "draft", document: "runbook.txt", section: "1", title: "x" }],
            capabilities: &[],
            gates: &[],
            scenarios: &[],
            register: |_| {},
            cli: cli::<crate::etcd_backup::BackupArgs>(),
            preflight: no_preflight,
        };
        let p = bad.problems();
        for want in ["kebab-case", "no summary", "not a public OpenShift document", "no capabilities", "no simulator scenario"] {
            assert!(p.iter().any(|x| x.contains(want)), "{want} not reported in {p:?}");
        }
    }

    #[test]
    fn references_read_as_the_public_documents_name_them() {
        let restore = row("restore-cluster-state").unwrap();
        assert_eq!(
            restore.doc().to_string(),
            "OpenShift Container Platform 4.14, Backup and restore, §5.4.2.2 Restoring to a previous cluster state"
        );
        assert_eq!(
            row("etcd-backup").unwrap().docs[1].to_string(),
            "OpenShift Container Platform 4.5, Backup and restore, ch.1 Backing up etcd"
        );
        assert_eq!(restore.missing(&[Capability::ClusterApi, Capability::Hosts]), [Capability::Etcd, Capability::BackupLocation]);
    }
}
