//! Test harnesses: real sshd, real etcd, a mock Kubernetes API server, all on 127.0.0.1.
//! A missing binary panics with the command that installs it: these tests never skip.
#![allow(dead_code)]
// Real processes in real time: the harness waits on the wall clock.
#![allow(clippy::disallowed_methods)]

pub mod etcd;
pub mod mockapi;
pub mod sandbox;
pub mod sshd;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Fail loudly when a binary the test needs is not installed.
pub fn require_binary(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/install-test-deps.sh (installs etcd-server etcd-client openssh-server). \
         These tests need the real software and never skip."
    );
}

/// A free TCP port on 127.0.0.1 (bind to 0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Wait (bounded) until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Retry `f` until it returns `Some`, at most `tries` times, `pause` apart.
pub fn eventually<T>(tries: u32, pause: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for i in 0..tries {
        if let Some(v) = f() {
            return Some(v);
        }
        if i + 1 < tries {
            std::thread::sleep(pause);
        }
    }
    None
}

/// All descendants of `pid` (from /proc), deepest last.
pub fn descendants(pid: u32) -> Vec<u32> {
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
    // Bounded by the number of processes.
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

/// SIGKILL `pid` and everything below it.
pub fn kill_tree(pid: u32) {
    let kids = descendants(pid);
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        for k in kids {
            libc::kill(k as i32, libc::SIGKILL);
        }
    }
}
