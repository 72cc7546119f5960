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

pub mod kube;
pub mod server;
pub mod tls;

use drctl_sim::Sim;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A world's Kubernetes API served on 127.0.0.1, with the kubeconfig to reach it.
pub struct ServedApi {
    /// Owns the listener and connection tasks: dropping it stops serving.
    rt: tokio::runtime::Runtime,
    pub addr: std::net::SocketAddr,
    pub kubeconfig: PathBuf,
    pub counters: Arc<server::ApiCounters>,
}

impl ServedApi {
    /// Serve `sim` on a free port (or `port`); the kubeconfig is written to `dir/kubeconfig`
    /// (owner-only: it holds the client key).
    pub fn start(sim: Sim, dir: &Path, port: u16) -> Result<ServedApi, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drctl-twin-api")
            .enable_all()
            .build()
            .map_err(|e| format!("twin API runtime: {e}"))?;
        let pki = tls::Pki::generate()?;
        let (addr, counters) =
            server::start_api(&rt, sim, pki.server_config()?, port).map_err(|e| format!("listen on 127.0.0.1:{port}: {e}"))?;
        let kubeconfig = dir.join("kubeconfig");
        write_private(&kubeconfig, pki.kubeconfig(&format!("https://{addr}")).as_bytes())?;
        Ok(ServedApi { rt, addr, kubeconfig, counters })
    }

    pub fn server_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
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
