//! `drctl-adapters`: the real implementations of the ports in `drctl_workflows::ports`.
//!
//! | port | adapter | talks to |
//! |---|---|---|
//! | `ClusterApi` | [`kube::KubeApi`] | the API server through kube-rs (kubeconfig like `oc`; OpenShift resources through the dynamic API) |
//! | `Hosts` | [`ssh::SshHosts`] | control-plane hosts through OpenSSH (one multiplexed session per host; the user's ssh config and known_hosts) |
//! | `Etcd` | [`etcd::EtcdCtl`] | `etcdctl -w json`, locally, over SSH on a host, or in an etcd pod (kube exec) |
//! | `BackupStore` | [`backup::DirBackupStore`] | a backup directory `<root>/<backup>/` with `backup-info.json` |
//! | `ObjectStore` (`drctl_workflows::object_store`) | [`s3::S3Store`] | S3 or an S3-compatible server through the AWS SDK (default credential chain, the bucket's region, multipart, presigned GETs) |
//! | `Clock` (runtime) | [`clock::SystemClock`] | the wall clock: the only place drctl reads it |
//!
//! Ports are synchronous and the engine calls them from `spawn_blocking` threads; adapters on
//! async clients block on a tokio runtime through [`blocking::Blocking`] (fine from blocking
//! threads and from multi-thread-runtime tasks; a panic on a current-thread runtime's task).
//! Each adapter classifies every failure where it enters, in one exhaustive function with a
//! table test: [`kube::classify_kube_error`], [`ssh::classify_ssh`] /
//! [`ssh::classify_exit`], [`etcd::classify_etcdctl`], [`s3::classify`].
//!
//! Building the ports for a real cluster:
//! ```no_run
//! # use drctl_adapters::{blocking::Blocking, kube::KubeApi, ssh::*, etcd::EtcdCtl, backup::DirBackupStore};
//! let rt = Blocking::dedicated("drctl-io").unwrap();
//! let api = KubeApi::connect(rt.clone(), None, Some("admin")).unwrap();
//! let hosts = vec![SshHost::new("master-0", "ip-10-0-131-183.ec2.internal", "10.0.131.183", "core@10.0.131.183")];
//! let opts = SshOptions { user: Some("core".into()), ..SshOptions::default() };
//! let ssh = SshHosts::new(rt.clone(), opts, hosts, "/srv/etcd-backups").unwrap();
//! // etcdctl directly (`--etcd-endpoints`), or on a host over the same SSH sessions:
//! let etcd = EtcdCtl::local(vec!["https://10.0.131.183:2379".into()]);
//! let etcd_on_host = EtcdCtl::over_ssh(&ssh, "master-0", vec![]).unwrap();
//! let ports = drctl_workflows::ports::Ports {
//!     etcd: Box::new(drctl_adapters::KubeEtcdPods(api.clone())),
//!     api: Box::new(api),
//!     hosts: Box::new(ssh),
//!     backups: Box::new(DirBackupStore::new("/srv/etcd-backups")),
//!     management: None,
//!     object_store: None,
//! };
//! ```
//!
//! # Tests
//! Unit tests (rendering, quoting, parsing, classification tables) sit next to the code. The
//! integration tests in `adapters/tests/` run against real software on 127.0.0.1, started by the
//! tests themselves (`scripts/install-test-deps.sh` installs it from Debian packages and PyPI; a
//! missing binary fails the test, it is never skipped):
//! - `kube_mock.rs`: a mock API server (hyper, plain HTTP, a kubeconfig pointing at it) that
//!   checks every request against fixtures from the runbooks' example objects and answers with
//!   realistic objects and failures (503, 429, 404, 409, a stopped server);
//! - `ssh_sshd.rs`: a real `sshd` with its own host key, user key, known_hosts and config; each
//!   simulated host is a sandbox directory where manifests and data dirs really move; sshd is
//!   killed between and during operations to prove reconnect-and-retry;
//! - `etcd_real.rs`: a real 3-member etcd 3.4 cluster; members removed, added back, killed,
//!   restarted; snapshot save/status/restore and the old member's cluster-id mismatch;
//! - `s3_moto.rs`: moto's S3 server (`moto[server]` from PyPI, in the virtualenv the script
//!   creates): put/get/head/delete, multipart with its abort, presigned URLs fetched by a plain
//!   HTTP client and their SigV4 signature recomputed, `NoSuchBucket`, bucket regions, and wrong
//!   credentials (`InvalidAccessKeyId`, `SignatureDoesNotMatch`) with moto's IAM checks on.
//!
//! The harness (`tests/support/`) is shared with the workspace's root tests, which include it
//! with `#[path = "../adapters/tests/support/mod.rs"] mod support;`: `tests/real_etcd_backup.rs`
//! (`drctl run etcd-backup` end to end on these adapters), `tests/real_inspect.rs` (`drctl
//! inspect`), `tests/object_store_cli.rs` (`drctl inspect --object-store` against moto) and
//! `tests/etcd_differential.rs` (the simulator's etcd model against real etcd).
//! The `drctl` binary builds real ports in `src/real.rs` (run, resume) and reads etcd with
//! [`etcd::EtcdCtl::member_list_local`] and [`etcd::EtcdCtl::endpoint_status`] in
//! `src/inspect.rs`.

pub mod backup;
pub mod blocking;
pub mod clock;
pub mod etcd;
pub mod kube;
pub mod s3;
pub mod shell;
pub mod ssh;

pub use backup::DirBackupStore;
pub use blocking::Blocking;
pub use clock::SystemClock;
pub use etcd::EtcdCtl;
pub use kube::{KubeApi, KubeEtcdPods};
pub use ssh::{HostLayout, SshHost, SshHosts, SshOptions};
