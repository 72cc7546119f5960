//! One real OpenSSH server per simulated host, on 127.0.0.1, each forcing `drctl sim
//! host-shell --host NAME`; the client side is an ssh config that maps every host's inventory
//! address to its server, a user key and a known_hosts file — what `drctl run` takes as
//! `--ssh-config`, `--ssh-identity` and `--known-hosts`.
//!
//! A host the world says is unreachable has its server stopped (new connections are refused and
//! open ones die); it is started again, on the same port and with the same host key, once the
//! world says the host is back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SSHD: &str = "/usr/sbin/sshd";
pub const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";

struct HostServer {
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// The sshd servers of a served world.
pub struct SshFarm {
    dir: PathBuf,
    pub client_config: PathBuf,
    pub user_key: PathBuf,
    pub known_hosts: PathBuf,
    pub user: String,
    servers: Mutex<BTreeMap<String, HostServer>>,
}

fn keygen(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let st = Command::new(SSH_KEYGEN)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "drctl-twin", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("{SSH_KEYGEN} (package openssh-client) is needed to serve simulated hosts over SSH: {e}"))?;
    if !st.success() {
        return Err(format!("{SSH_KEYGEN} failed for {}", path.display()));
    }
    Ok(())
}

/// The login name sshd must allow: the user running drctl.
pub fn current_user() -> String {
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return "root".into();
    }
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".into())
}

/// A port nothing listens on now (the kernel's pick; sshd binds it right after), held by the
/// returned listener: while it is held the kernel picks another port for the next host. Released
/// at once, the same port could come back for a second host of the farm, whose sshd (same host
/// key) would then answer for the first.
fn reserve_port() -> Result<(u16, std::net::TcpListener), String> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("find a free port: {e}"))?;
    let port = l.local_addr().map(|a| a.port()).map_err(|e| format!("find a free port: {e}"))?;
    Ok((port, l))
}

/// Quote one word for sshd_config (double quotes; our paths have no quotes or newlines).
fn cfg_quote(s: &str) -> String {
    format!("\"{s}\"")
}

impl SshFarm {
    /// Keys, configs and a server per host: `hosts` is (name, inventory address); `drctl` the
    /// binary sshd runs as the forced command, talking to `socket`.
    pub fn start(dir: &Path, hosts: &[(String, String)], drctl: &Path, socket: &Path) -> Result<SshFarm, String> {
        if !Path::new(SSHD).exists() {
            return Err(format!("{SSHD} is missing: install the openssh-server package to serve simulated hosts over SSH"));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let host_key = dir.join("host_ed25519_key");
        let user_key = dir.join("user_ed25519_key");
        keygen(&host_key)?;
        keygen(&user_key)?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(user_key.with_extension("pub"), &authorized).map_err(|e| format!("{}: {e}", authorized.display()))?;
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).map_err(|e| format!("host key: {e}"))?;
        let user = current_user();
        let (mut servers, mut known, mut client) = (BTreeMap::new(), String::new(), String::new());
        // Every host's port stays reserved until all are chosen: one distinct port per host.
        let mut reserved = Vec::with_capacity(hosts.len());
        for (name, address) in hosts {
            let (port, held) = reserve_port()?;
            reserved.push(held);
            let config = dir.join(format!("sshd_config.{name}"));
            let force = format!("{} sim host-shell --socket {} --host {name}", drctl.display(), socket.display());
            let text = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nAllowUsers {user}\n\
                 MaxSessions 64\nMaxStartups 64\nLogLevel ERROR\nPermitUserEnvironment no\n\
                 ForceCommand {force}\n",
                hk = cfg_quote(&host_key.display().to_string()),
                pid = cfg_quote(&dir.join(format!("sshd.{name}.pid")).display().to_string()),
                ak = cfg_quote(&authorized.display().to_string()),
            );
            std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
            known.push_str(&format!("[127.0.0.1]:{port} {}\n", host_pub.trim()));
            // The inventory address, as a real run names the host, leads to this host's server.
            client.push_str(&format!(
                "Host {address}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n\
                 \x20 UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n",
                key = user_key.display(),
                kh = dir.join("known_hosts").display(),
            ));
            servers.insert(name.clone(), HostServer { port, config, child: None });
        }
        drop(reserved);
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, known).map_err(|e| format!("{}: {e}", known_hosts.display()))?;
        let client_config = dir.join("ssh_config");
        std::fs::write(&client_config, client).map_err(|e| format!("{}: {e}", client_config.display()))?;
        let farm = SshFarm { dir: dir.to_path_buf(), client_config, user_key, known_hosts, user, servers: Mutex::new(servers) };
        Ok(farm)
    }

    /// Run exactly the servers of the `reachable` hosts.
    pub fn reconcile(&self, reachable: &BTreeSet<String>) -> Result<(), String> {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        for (name, s) in servers.iter_mut() {
            let running = s.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            match (running, reachable.contains(name)) {
                (false, true) => s.child = Some(self.spawn(name, s)?),
                (true, false) => {
                    if let Some(c) = s.child.take() {
                        kill_tree(c);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn spawn(&self, name: &str, s: &HostServer) -> Result<Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("sshd.{name}.log")))
            .map_err(|e| format!("sshd log: {e}"))?;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&s.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {SSHD} for {name}: {e}"))?;
        if !wait_for_port(s.port, Duration::from_secs(10)) {
            kill_tree(child);
            return Err(format!("sshd for {name} did not listen on 127.0.0.1:{} (see {})", s.port, self.dir.display()));
        }
        Ok(child)
    }

    /// Every server's port, by host name.
    pub fn ports(&self) -> BTreeMap<String, u16> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(n, s)| (n.clone(), s.port)).collect()
    }

    pub fn stop(&self) {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        for s in servers.values_mut() {
            if let Some(c) = s.child.take() {
                kill_tree(c);
            }
        }
    }
}

impl Drop for SshFarm {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(clippy::disallowed_methods)] // a real server's start-up is waited for in real time
fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The processes below `pid` (sshd's per-connection children and what they run).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            let ppid: u32 = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            parent_of.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// SIGKILL a server and every session it serves, and reap it.
fn kill_tree(mut child: Child) {
    let kids = descendants(child.id());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
        for k in kids {
            libc::kill(k as i32, libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

/// Keeps the servers in step with the world: after anything that may have changed which hosts
/// are reachable (a request served, the clock advanced), before the client sees the answer. So
/// whether a host refuses a connection depends only on the world, never on a race with a
/// watcher, and a twin run is reproducible from its seed.
pub struct Reachability {
    sim: drctl_sim::Sim,
    farm: Arc<SshFarm>,
    last: Mutex<Option<BTreeSet<String>>>,
}

impl Reachability {
    pub fn new(sim: drctl_sim::Sim, farm: Arc<SshFarm>) -> Result<Arc<Reachability>, String> {
        let r = Arc::new(Reachability { sim, farm, last: Mutex::new(None) });
        r.sync()?;
        Ok(r)
    }

    /// Start and stop servers to match the world now.
    pub fn sync(&self) -> Result<(), String> {
        let now: BTreeSet<String> = self.sim.read(|w| w.hosts.keys().filter(|h| w.ssh_reachable(h)).cloned().collect());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() != Some(&now) {
            self.farm.reconcile(&now)?;
            *last = Some(now);
        }
        Ok(())
    }
}
