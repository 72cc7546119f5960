//! A real OpenSSH server on 127.0.0.1 with its own host key, user key, known_hosts and config.

use super::{free_port, kill_tree, require_binary, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    config: PathBuf,
    pub log: PathBuf,
    /// ssh client config: `Host` aliases for every simulated host, all on this sshd.
    pub client_config: PathBuf,
    pub user_key: PathBuf,
    pub known_hosts: PathBuf,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "drctl-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(st.success(), "ssh-keygen failed");
}

pub fn user_name() -> String {
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return "root".into();
    }
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

impl Sshd {
    /// Start sshd; `aliases` become `Host` entries of the client config.
    pub fn start(aliases: &[&str]) -> Sshd {
        require_binary(SSHD);
        require_binary("/usr/bin/ssh");
        let dir = tempfile::Builder::new().prefix("drctl-sshd").tempdir().unwrap();
        let d = dir.path();
        let host_key = d.join("host_ed25519_key");
        let user_key = d.join("user_ed25519_key");
        keygen(&host_key);
        keygen(&user_key);
        let authorized = d.join("authorized_keys");
        std::fs::copy(user_key.with_extension("pub"), &authorized).unwrap();
        let port = free_port();
        let config = d.join("sshd_config");
        let user = user_name();
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nAllowUsers {user}\n\
                 MaxSessions 64\nMaxStartups 64\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\n",
                hk = host_key.display(),
                pid = d.join("sshd.pid").display(),
                ak = authorized.display(),
            ),
        )
        .unwrap();
        let pubkey = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let known_hosts = d.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {}", pubkey.trim())).unwrap();
        let client_config = d.join("ssh_config");
        std::fs::write(
            &client_config,
            format!(
                "Host {aliases}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n\
                 \x20 UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n",
                aliases = aliases.join(" "),
                key = user_key.display(),
                kh = known_hosts.display(),
            ),
        )
        .unwrap();
        let log = d.join("sshd.log");
        let mut s = Sshd { dir, port, child: None, config, log, client_config, user_key, known_hosts };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        // sshd refuses to start without its privilege separation directory.
        if unsafe { libc::getuid() } == 0 {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
        self.child = Some(child);
        if !wait_for_port(self.port, Duration::from_secs(10)) {
            let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!(
                "sshd did not listen on {} (exit {status:?}); log:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// Kill sshd and every session it serves (as a crashed or rebooted host would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }

    /// Cut every established connection (kill the per-connection sshd processes and what they
    /// run) while the listener stays up: a network blip, or sshd restarted under our feet.
    pub fn drop_connections(&mut self) {
        if let Some(c) = &self.child {
            for pid in super::descendants(c.id()) {
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
    }

    /// Start again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
