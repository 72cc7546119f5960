//! A real etcd cluster on 127.0.0.1: free ports, temporary data dirs, members killed on drop.

use super::{free_port, require_binary};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// `--initial-cluster` it was started with, and `new`/`existing`.
    pub initial_cluster: String,
    pub state: &'static str,
    pub token: String,
    child: Option<Child>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(ETCD)
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.client_url()))
            .arg(format!("--advertise-client-urls={}", self.client_url()))
            .arg(format!("--listen-peer-urls={}", self.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url()))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-state={}", self.state))
            .arg(format!("--initial-cluster-token={}", self.token))
            // Short timeouts keep the tests quick; 2 cores, so not too short.
            .arg("--heartbeat-interval=100")
            .arg("--election-timeout=1000")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"));
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
}

impl Cluster {
    /// Start `n` members and wait (bounded) until every one is healthy.
    pub fn start(n: usize) -> Cluster {
        require_binary(ETCD);
        require_binary(ETCDCTL);
        let dir = tempfile::Builder::new().prefix("drctl-etcd").tempdir().unwrap();
        let token = format!("drctl-{}", dir.path().file_name().unwrap().to_string_lossy());
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                initial_cluster: String::new(),
                state: "new",
                token: token.clone(),
                child: None,
            })
            .collect();
        let ic = members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
        for m in &mut members {
            m.initial_cluster = ic.clone();
            m.start();
        }
        let c = Cluster { dir, members };
        for i in 0..n {
            c.wait_healthy(i, Duration::from_secs(30));
        }
        c
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url()).collect()
    }

    /// Bounded wait until member `i` answers a linearizable health check.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        let m = &self.members[i];
        let deadline = Instant::now() + timeout;
        loop {
            let out = Command::new(ETCDCTL)
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", m.client_url()))
                .args(["--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd member {} not healthy after {timeout:?}: {}\nlog:\n{}",
                    m.name,
                    String::from_utf8_lossy(&out.stderr),
                    m.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new member process (not yet started) joining this cluster as `existing`, e.g. after
    /// `member add`.
    pub fn new_member(&self, name: &str, initial_cluster: String, state: &'static str) -> Member {
        Member {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: self.dir.path().join(format!("{name}-{}.etcd", free_port())),
            log: self.dir.path().join(format!("{name}-{}.log", free_port())),
            initial_cluster,
            state,
            token: self.members.first().map(|m| m.token.clone()).unwrap_or_default(),
            child: None,
        }
    }
}
