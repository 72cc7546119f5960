//! `drctl-twin`: the simulator behind the real protocols.
//!
//! The simulated ports (`drctl_sim::ports`) are the fast path: procedures call the world
//! directly. The twin serves the same world over the protocols a real cluster speaks — its
//! Kubernetes API over HTTPS ([`kube`]) and its hosts behind a real `sshd` whose forced command
//! hands each command line to the simulated host shell ([`hosts`]) — so the production adapters
//! (kube-rs, OpenSSH) run unchanged against a simulated cluster. Whatever the adapters and the
//! simulator disagree about shows up as a different outcome.
//!
//! This crate does I/O (TLS, sockets, processes) and so lives outside the deterministic core;
//! the world it serves still evolves only from its seed and the requests it is sent.

pub mod exec;
pub mod kube;
pub mod s3;
pub mod server;
pub mod tls;

use drctl_sim::Sim;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A world's Kubernetes API served on 127.0.0.1, with the kubeconfig to reach it.
pub struct ServedApi {
    /// Owns the listener and connection tasks: dropping it stops serving.
    _rt: tokio::runtime::Runtime,
    pub addr: std::net::SocketAddr,
    pub kubeconfig: PathBuf,
    /// The world's object store served as S3 (`http://127.0.0.1:PORT`), when it has one.
    pub s3_endpoint: Option<String>,
}

impl ServedApi {
    /// Serve `sim` on a free port (or `port`); the kubeconfig is written to `dir/kubeconfig`
    /// (owner-only: it holds the client key).
    pub fn start(sim: Sim, dir: &Path, port: u16, after: AfterChange) -> Result<ServedApi, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drctl-twin-api")
            .enable_all()
            .build()
            .map_err(|e| format!("twin API runtime: {e}"))?;
        let pki = tls::Pki::generate()?;
        let token = Arc::new(new_token());
        // drctl's kubeconfig holds what the world says it holds: a client certificate, or a
        // token from `oc login` (which a restored cluster no longer knows).
        let with_token = sim.read(|w| w.drctl_view.token_kubeconfig);
        let addr = server::start_api(&rt, sim.clone(), pki.server_config()?, port, after.clone(), token.clone())
            .map_err(|e| format!("listen on 127.0.0.1:{port}: {e}"))?;
        let kubeconfig = dir.join("kubeconfig");
        write_private(&kubeconfig, pki.kubeconfig(&format!("https://{addr}"), with_token.then_some(token.as_str())).as_bytes())?;
        let s3_endpoint = match sim.read(|w| w.object_store.is_some()) {
            true => Some(format!("http://{}", s3::start_s3(&rt, sim.clone(), after).map_err(|e| format!("serve S3: {e}"))?)),
            false => None,
        };
        Ok(ServedApi { _rt: rt, addr, kubeconfig, s3_endpoint })
    }

    pub fn server_url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// What must happen after every change the servers make to the world, before the client hears
/// back (set once the servers it needs exist): the hosts' sshd follow the world's reachability.
pub type AfterChange = Arc<std::sync::OnceLock<Arc<sshd::Reachability>>>;

/// Run the after-change hook, if set.
pub fn after_change(after: &AfterChange) {
    if let Some(r) = after.get() {
        if let Err(e) = r.sync() {
            tracing::warn!(error = %e, "twin: sshd do not follow the world");
        }
    }
}

/// The engine's clock for a run against the served world: the world's virtual time, and after
/// every advance the hosts' sshd follow the world.
pub struct TwinClock {
    sim: Sim,
    after: AfterChange,
}

impl drctl_runtime::clock::Clock for TwinClock {
    fn now(&self) -> drctl_runtime::clock::Timestamp {
        self.sim.now()
    }
    fn sleep_until(&self, t: drctl_runtime::clock::Timestamp) -> drctl_runtime::clock::BoxFuture<'_, ()> {
        self.sim.advance_to(t);
        after_change(&self.after);
        Box::pin(async {})
    }
}

/// An OAuth access token as `oc login` gets one: unguessable, so the served API can tell it from
/// anything else.
fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let part = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6f63_2d6c_6f67_696e);
        h.finish()
    };
    format!("sha256~{:016x}{:016x}{:016x}", part(), part(), part())
}

/// Write a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub mod backups;
pub mod hosts;
pub mod sshd;

/// A world served whole: its API over HTTPS, its hosts behind sshd, its backup location as a
/// directory. What `drctl sim serve` runs, and what the twin tests drive the real adapters at.
pub struct Twin {
    pub backup_root: PathBuf,
    pub inventory: Vec<drctl_workflows::ports::HostRef>,
    pub workers: Vec<drctl_workflows::ports::HostRef>,
    /// The world is a management cluster of hosted control planes.
    pub hosted: bool,
    // Drop order: the sshd first, then the servers they talk to.
    pub reach: Arc<sshd::Reachability>,
    pub farm: Arc<sshd::SshFarm>,
    after: AfterChange,
    sim: Sim,
    pub hosts: hosts::HostsServer,
    pub api: ServedApi,
}

impl Twin {
    /// Serve `sim` with everything under `dir`; `drctl` is the binary sshd runs as each host's
    /// forced command (`drctl sim host-shell`). `api_port` 0 picks a free port.
    pub fn start(sim: &Sim, dir: &Path, drctl: &Path, api_port: u16) -> Result<Twin, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let backup_root = dir.join("backups");
        std::fs::create_dir_all(&backup_root).map_err(|e| format!("{}: {e}", backup_root.display()))?;
        sim.read(|w| backups::materialize(w, &backup_root))?;
        // The inventory a person would write for this cluster: as the simulated port lists it.
        let (inventory, workers) = {
            use drctl_workflows::ports::Hosts;
            let listed = drctl_sim::ports::SimHosts(sim.clone());
            (listed.control_plane_hosts().map_err(|e| e.to_string())?, listed.worker_hosts().map_err(|e| e.to_string())?)
        };
        let after = AfterChange::default();
        let api = ServedApi::start(sim.clone(), dir, api_port, after.clone())?;
        let hosts = hosts::HostsServer::start(sim.clone(), dir, after.clone())?;
        let addresses: Vec<(String, String)> = inventory.iter().chain(&workers).map(|h| (h.name.clone(), h.address.clone())).collect();
        let farm = Arc::new(sshd::SshFarm::start(&dir.join("ssh"), &addresses, drctl, &hosts.socket)?);
        let reach = sshd::Reachability::new(sim.clone(), farm.clone())?;
        let _ = after.set(reach.clone());
        let hosted = sim.read(|w| w.hosted.is_some());
        Ok(Twin { backup_root, inventory, workers, hosted, reach, farm, after, sim: sim.clone(), hosts, api })
    }

    /// The clock a run against this world waits on (see [`TwinClock`]).
    pub fn clock(&self) -> TwinClock {
        TwinClock { sim: self.sim.clone(), after: self.after.clone() }
    }

    /// Bring the hosts' sshd in line with the world (after the world's time moved).
    pub fn sync_hosts(&self) {
        after_change(&self.after);
    }

    /// `NAME=ADDRESS@NODE,...` as `--hosts` takes it.
    pub fn inventory_spec(hosts: &[drctl_workflows::ports::HostRef]) -> String {
        hosts.iter().map(|h| format!("{}={}@{}", h.name, h.address, h.node)).collect::<Vec<_>>().join(",")
    }

    /// The options of `drctl run` that make it act on this world through the real adapters.
    pub fn access_flags(&self) -> Vec<String> {
        let mut f = vec![
            "--kubeconfig".to_string(),
            self.api.kubeconfig.display().to_string(),
            "--hosts".into(),
            Self::inventory_spec(&self.inventory),
        ];
        if !self.workers.is_empty() {
            f.extend(["--workers".into(), Self::inventory_spec(&self.workers)]);
        }
        f.extend([
            "--ssh-user".into(),
            self.farm.user.clone(),
            "--ssh-config".into(),
            self.farm.client_config.display().to_string(),
            "--ssh-identity".into(),
            self.farm.user_key.display().to_string(),
            "--known-hosts".into(),
            self.farm.known_hosts.display().to_string(),
            "--backup-root".into(),
            self.backup_root.display().to_string(),
        ]);
        f
    }

    /// The real adapters aimed at this world, as `drctl run` builds them from
    /// [`Twin::access_flags`]; `clock` is the engine's (the world's own clock in tests).
    pub fn real_ports(&self, clock: Arc<dyn drctl_runtime::clock::Clock>) -> Result<drctl_workflows::ports::Ports, String> {
        let rt = drctl_adapters::Blocking::dedicated("drctl-twin-io").map_err(|e| format!("I/O runtime: {e}"))?;
        // A management cluster is reached through the same kubeconfig: its API serves the
        // HyperShift objects.
        let management: Option<Box<dyn drctl_workflows::ports::ManagementCluster>> = match self.hosted {
            true => Some(Box::new(self.kube_api(&rt, clock.clone())?)),
            false => None,
        };
        let api = self.kube_api(&rt, clock)?;
        Ok(drctl_workflows::ports::Ports {
            etcd: Box::new(drctl_adapters::KubeEtcdPods(api.clone())),
            api: Box::new(api),
            hosts: Box::new(self.ssh_hosts(&rt)?),
            backups: Box::new(drctl_adapters::DirBackupStore::new(&self.backup_root)),
            management,
            object_store: self.object_store(&rt)?,
        })
    }

    /// The S3 adapter on the served object store, with credentials of its own (the served store
    /// checks none).
    fn object_store(&self, rt: &drctl_adapters::Blocking) -> Result<Option<Box<dyn drctl_workflows::object_store::ObjectStore>>, String> {
        use drctl_adapters::s3::{S3Credentials, S3Options, S3Store};
        let Some(endpoint) = self.api.s3_endpoint.clone() else { return Ok(None) };
        let credentials = S3Credentials::Static {
            access_key_id: "TWINACCESSKEY".into(),
            secret_access_key: drctl_adapters::s3::Secret::new("twin-secret-key"),
            session_token: None,
        };
        let opts = S3Options { endpoint: Some(endpoint), region: Some("us-east-1".into()), credentials, ..S3Options::default() };
        Ok(Some(Box::new(S3Store::connect(rt.clone(), opts).map_err(|e| e.to_string())?)))
    }

    /// The kube adapter with the kubeconfig written for this world.
    pub fn kube_api(
        &self,
        rt: &drctl_adapters::Blocking,
        clock: Arc<dyn drctl_runtime::clock::Clock>,
    ) -> Result<drctl_adapters::KubeApi, String> {
        Ok(drctl_adapters::KubeApi::connect(rt.clone(), Some(&self.api.kubeconfig), None).map_err(|e| e.to_string())?.with_clock(clock))
    }

    /// The ssh adapter with this world's inventory, ssh config, key and known_hosts.
    pub fn ssh_hosts(&self, rt: &drctl_adapters::Blocking) -> Result<drctl_adapters::SshHosts, String> {
        use drctl_adapters::{SshHost, SshHosts, SshOptions};
        let opts = SshOptions {
            user: Some(self.farm.user.clone()),
            config_file: Some(self.farm.client_config.clone()),
            identity: Some(self.farm.user_key.clone()),
            known_hosts_file: Some(self.farm.known_hosts.clone()),
            ..SshOptions::default()
        };
        let hosts = self
            .inventory
            .iter()
            .map(|h| SshHost::new(&h.name, &h.node, &h.address, &h.address))
            .chain(self.workers.iter().map(|h| SshHost::new(&h.name, &h.node, &h.address, &h.address).as_worker()))
            .collect();
        SshHosts::new(rt.clone(), opts, hosts, &self.backup_root).map_err(|e| e.to_string())
    }

    /// Take what the run left in the backup directory back into the world.
    pub fn absorb_backups(&self, sim: &Sim) -> Result<(), String> {
        sim.write(|w| backups::absorb(&self.backup_root, w))
    }
}
