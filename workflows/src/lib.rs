//! `drctl-workflows`: the disaster-recovery procedures and the ports they act through.
//!
//! Each procedure is one module whose state enum reads like its runbook. Procedures see the
//! cluster only through [`ports`]; they never import an adapter or the simulator.

pub mod backup_files;
pub mod bmc;
pub mod catalog;
pub mod cluster_restart;
pub mod cluster_shutdown;
pub mod csr;
pub mod etcd_backup;
pub mod etcd_member;
pub mod etcd_member_triage;
pub mod hosted;
pub mod legacy_lost_masters;
pub mod machines;
pub mod object_store;
pub mod ports;
pub mod recover_expired_certs;
pub mod replace_etcd_member_baremetal;
pub mod replace_etcd_member_crashloop;
pub mod replace_etcd_member_machine;
pub mod replace_machine;
pub mod restore_cluster_state;

pub use cluster_restart::ClusterRestart;
pub use cluster_shutdown::ClusterShutdown;
pub use etcd_backup::EtcdBackup;
pub use etcd_member_triage::EtcdMemberTriage;
pub use hosted::HostedPauseReconciliation;
pub use legacy_lost_masters::LegacyLostMasters;
pub use recover_expired_certs::RecoverExpiredCerts;
pub use replace_etcd_member_baremetal::ReplaceEtcdMemberBaremetal;
pub use replace_etcd_member_crashloop::ReplaceEtcdMemberCrashloop;
pub use replace_etcd_member_machine::ReplaceEtcdMemberMachine;
pub use restore_cluster_state::RestoreClusterState;

/// Every procedure this build knows (the [`catalog`]), for the engine's registry.
pub fn registry() -> drctl_runtime::Registry<ports::Ports> {
    catalog::registry()
}
