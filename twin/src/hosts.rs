//! The simulated hosts behind a real sshd: each host's sshd runs `drctl sim host-shell` as its
//! forced command, which hands the command line (and stdin) over a Unix socket to the process
//! serving the world; the world's strict host shell runs it and answers with stdout, stderr and
//! the exit status, which the forced command passes back through sshd.
//!
//! SSH-layer faults are real: a host the world says is unreachable has its sshd stopped
//! (connection refused), and a dropped connection kills the sshd session carrying the command.

use drctl_sim::Sim;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Largest stdin a command may carry (a simulated snapshot is small; a real one is not sent here).
const MAX_STDIN: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Request {
    host: String,
    command: String,
    stdin_len: u64,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    code: i32,
    stdout_len: u64,
    stderr_len: u64,
    /// The world dropped the connection: the forced command must take its SSH session down.
    drop: bool,
}

/// One command as a served host received it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommandRecord {
    /// World time when it ran (RFC 3339).
    pub at: String,
    pub host: String,
    pub command: String,
    pub code: i32,
}

/// The Unix socket the forced commands talk to.
pub struct HostsServer {
    pub socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    log: Arc<Mutex<Vec<CommandRecord>>>,
    log_file: PathBuf,
}

impl HostsServer {
    /// Listen on `dir/hosts.sock`; every command is also appended to `dir/commands.jsonl`.
    pub fn start(sim: Sim, dir: &Path, after: crate::AfterChange) -> Result<HostsServer, String> {
        let socket = dir.join("hosts.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(|e| format!("listen on {}: {e}", socket.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_file = dir.join("commands.jsonl");
        let (s, l, f) = (stop.clone(), log.clone(), log_file.clone());
        let thread = std::thread::Builder::new()
            .name("drctl-twin-hosts".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (sim, l, f, after) = (sim.clone(), l.clone(), f.clone(), after.clone());
                    // One thread per command: commands on different hosts run at once, as over SSH.
                    let _ = std::thread::Builder::new().name("drctl-twin-cmd".into()).spawn(move || {
                        if let Err(e) = serve_one(&sim, conn, &l, &f, &after) {
                            tracing::warn!(error = %e, "twin host command failed");
                        }
                    });
                }
            })
            .map_err(|e| format!("start the hosts thread: {e}"))?;
        Ok(HostsServer { socket, stop, thread: Some(thread), log, log_file })
    }

    /// Every command the hosts ran, in order.
    pub fn commands(&self) -> Vec<CommandRecord> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }
}

impl Drop for HostsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve_one(
    sim: &Sim,
    conn: UnixStream,
    log: &Mutex<Vec<CommandRecord>>,
    log_file: &Path,
    after: &crate::AfterChange,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let req: Request = serde_json::from_str(&header).map_err(|e| std::io::Error::other(format!("bad request: {e}")))?;
    if req.stdin_len > MAX_STDIN {
        return Err(std::io::Error::other(format!("stdin of {} bytes is over the limit", req.stdin_len)));
    }
    let mut stdin = vec![0u8; req.stdin_len as usize];
    reader.read_exact(&mut stdin)?;
    let (out, drop, at) = sim.op(|w| {
        w.pass_time(drctl_sim::ports::SSH_LATENCY_MS);
        if !w.hosts.contains_key(&req.host) || !w.ssh_reachable(&req.host) {
            // The host went away while the session was open: the connection dies.
            return (None, true, w.now);
        }
        if w.ssh_drop_now(&req.host) {
            // Not run, or run and then cut off: the client cannot tell which.
            if w.fault_pick(2) == 1 {
                let _ = w.host_shell(&req.host, &req.command, &stdin);
                w.touch();
            }
            return (None, true, w.now);
        }
        let out = w.host_shell(&req.host, &req.command, &stdin);
        w.touch();
        (Some(out), false, w.now)
    });
    crate::after_change(after);
    let code = out.as_ref().map(|o| o.code).unwrap_or(255);
    let record = CommandRecord { at: at.to_string(), host: req.host.clone(), command: req.command.clone(), code };
    append(log, log_file, &record);
    let (stdout, stderr) = out.map(|o| (o.stdout, o.stderr)).unwrap_or_default();
    let reply = Reply { code, stdout_len: stdout.len() as u64, stderr_len: stderr.len() as u64, drop };
    let mut w = conn;
    w.write_all(serde_json::to_string(&reply).map_err(std::io::Error::other)?.as_bytes())?;
    w.write_all(b"\n")?;
    w.write_all(&stdout)?;
    w.write_all(&stderr)?;
    w.flush()
}

fn append(log: &Mutex<Vec<CommandRecord>>, file: &Path, record: &CommandRecord) {
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    l.push(record.clone());
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(file) {
        let _ = writeln!(f, "{}", serde_json::to_string(record).unwrap_or_default());
    }
}

/// `drctl sim host-shell`: the forced command of a served host's sshd. Sends
/// `$SSH_ORIGINAL_COMMAND` and stdin to the world, writes what the host shell answered, and
/// returns its exit status. When the world drops the connection, the SSH session carrying this
/// command is killed, as a host vanishing from the network would cut it.
pub fn host_shell_client(socket: &Path, host: &str) -> i32 {
    let Ok(command) = std::env::var("SSH_ORIGINAL_COMMAND") else {
        eprintln!("drctl sim host-shell: host {host} of the simulated cluster runs commands only (no interactive shell)");
        return 1;
    };
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        eprintln!("drctl sim host-shell: reading stdin: {e}");
        return 255;
    }
    match exchange(socket, host, &command, &stdin) {
        Ok((reply, stdout, stderr)) => {
            let _ = std::io::stdout().write_all(&stdout);
            let _ = std::io::stderr().write_all(&stderr);
            let _ = std::io::stdout().flush();
            if reply.drop {
                drop_ssh_session();
            }
            reply.code
        }
        Err(e) => {
            eprintln!("drctl sim host-shell: the simulated world at {} does not answer: {e}", socket.display());
            255
        }
    }
}

fn exchange(socket: &Path, host: &str, command: &str, stdin: &[u8]) -> std::io::Result<(Reply, Vec<u8>, Vec<u8>)> {
    let mut conn = UnixStream::connect(socket)?;
    let req = Request { host: host.to_string(), command: command.to_string(), stdin_len: stdin.len() as u64 };
    conn.write_all(serde_json::to_string(&req).map_err(std::io::Error::other)?.as_bytes())?;
    conn.write_all(b"\n")?;
    conn.write_all(stdin)?;
    conn.flush()?;
    let mut reader = BufReader::new(conn);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let reply: Reply = serde_json::from_str(&header).map_err(|e| std::io::Error::other(format!("bad reply: {e}")))?;
    let (mut stdout, mut stderr) = (vec![0u8; reply.stdout_len as usize], vec![0u8; reply.stderr_len as usize]);
    reader.read_exact(&mut stdout)?;
    reader.read_exact(&mut stderr)?;
    Ok((reply, stdout, stderr))
}

/// Kill the sshd process serving this session (our parent, or the shell's parent when sshd ran
/// us through the login shell): the client's connection is lost mid-command.
fn drop_ssh_session() {
    let mut pid = unsafe { libc::getppid() };
    // Bounded: at most the login shell sits between sshd and us.
    for _ in 0..3 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim().starts_with("sshd") {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            return;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        pid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok()).unwrap_or(0);
        if pid <= 1 {
            return;
        }
    }
}
