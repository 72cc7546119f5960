//! Procedures for hosted control planes (HyperShift), where a cluster's etcd and API servers
//! run on a management cluster.

pub mod pause_reconciliation;

pub use pause_reconciliation::HostedPauseReconciliation;
