//! Test harnesses: real sshd, real etcd, a mock Kubernetes API server, all on 127.0.0.1.
//! A missing binary panics with the command that installs it: these tests never skip.
#![allow(dead_code)]
// Real processes in real time: the harness waits on the wall clock.
#![allow(clippy::disallowed_methods)]

pub mod etcd;
pub mod mockapi;
pub mod moto;
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

/// Ports handed to real components come from below the kernel's ephemeral range (32768–60999
/// by default), so no outgoing connection can take one between our check and the component's
/// bind, and each is reserved across every test process by an `flock`ed file held until this
/// process exits, so two tests running at once never get the same one.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;
const PORT_LOCK_DIR: &str = "/tmp/drctl-test-ports";

/// A TCP port on 127.0.0.1 that no other test (in this or another process) is handed, and that
/// nothing listens on right now.
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::fs::create_dir_all(PORT_LOCK_DIR).expect("create the port reservation directory");
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    // Start each process somewhere else in the range so concurrent processes rarely contend.
    let offset = std::process::id() % span;
    for _ in 0..span {
        let i = (offset + NEXT.fetch_add(1, Ordering::SeqCst)) % span;
        let port = PORT_RANGE.start + i as u16;
        let path = format!("{PORT_LOCK_DIR}/{port}.lock");
        let Ok(file) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path) else { continue };
        // SAFETY: flock on a file descriptor we own; it is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
        return port;
    }
    panic!("no free port left in {PORT_RANGE:?} on 127.0.0.1 (see {PORT_LOCK_DIR})");
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
