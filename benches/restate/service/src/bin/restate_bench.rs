//! Driver for the Restate peer of the drctl durable-step benchmark.
//!
//! 1. installs `@restatedev/restate-server@RESTATE_SERVER_VERSION` with npm into a temp dir,
//! 2. starts it (data dir in the same temp dir, loopback ports chosen free),
//! 3. starts the sibling `steps-service` binary and registers it as a deployment,
//! 4. for each concurrency level, drives `POST /Steps/run` with body N for a fixed
//!    wall-time budget after a warm-up and reports one JSON line on stdout,
//! 5. tears everything down on every exit path (error, panic, Ctrl-C/SIGTERM).
//!
//! Progress goes to stderr; stdout carries only the JSON result lines.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// The one place the Restate server version is pinned (must exist on npm and be
/// compatible with the `restate-sdk` version pinned in Cargo.toml).
const RESTATE_SERVER_VERSION: &str = "1.7.12";
/// Version of the Rust SDK the `steps-service` is built with (mirrors Cargo.toml).
const RESTATE_SDK_VERSION: &str = "0.13.0";

/// An invocation that takes longer than this fails the run (Restate would
/// otherwise retry forever, e.g. if the service died).
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;
type HttpClient = Client<HttpConnector, Full<Bytes>>;

macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[restate-bench] {}", format!($($arg)*)) };
}

struct Args {
    steps: u64,
    seconds: f64,
    warmup: f64,
    concurrency: Vec<usize>,
}

fn usage() -> &'static str {
    "usage: restate-bench [--steps N (100)] [--seconds S per concurrency (10)] \
     [--warmup S (2)] [--concurrency 1,64]"
}

fn parse_args() -> Result<Args> {
    let mut a = Args { steps: 100, seconds: 10.0, warmup: 2.0, concurrency: vec![1, 64] };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value\n{}", usage()));
        match flag.as_str() {
            "--steps" => a.steps = val()?.parse()?,
            "--seconds" => a.seconds = val()?.parse()?,
            "--warmup" => a.warmup = val()?.parse()?,
            "--concurrency" => a.concurrency = val()?.split(',').map(|c| c.trim().parse::<usize>()).collect::<Result<_, _>>()?,
            "-h" | "--help" => {
                eprintln!("{}", usage());
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{}", usage()).into()),
        }
    }
    if a.steps == 0 || a.seconds <= 0.0 || a.warmup < 0.0 || a.concurrency.iter().any(|&c| c == 0) {
        return Err(format!("steps, seconds and concurrency must be positive\n{}", usage()).into());
    }
    Ok(a)
}

/// Everything that must be torn down. Dropping it kills the children (server
/// gracefully first) and then removes the temp dir, whatever the exit path.
struct Env {
    children: Vec<(&'static str, Child)>,
    dir: Option<tempfile::TempDir>,
}

impl Env {
    fn path(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Stop in reverse start order: service first, then the server.
        while let Some((name, mut child)) = self.children.pop() {
            if let Ok(Some(_)) = child.try_wait() {
                continue;
            }
            // SIGTERM, give it a few seconds to flush and exit, then SIGKILL.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            progress!("stopped {name}");
        }
        if let Some(dir) = self.dir.take() {
            let p = dir.path().to_path_buf();
            match dir.close() {
                Ok(()) => progress!("removed {}", p.display()),
                Err(e) => progress!("failed to remove {}: {e}", p.display()),
            }
        }
    }
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    // Hold all listeners at once so the ports are distinct, then release them.
    let ls: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    Ok(ls.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?)
}

fn npm_install(prefix: &Path) -> Result<PathBuf> {
    let pkg = format!("@restatedev/restate-server@{RESTATE_SERVER_VERSION}");
    progress!("npm install {pkg} into {}", prefix.display());
    let out = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(prefix)
        .args([&pkg, "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"])
        .env("SCARF_ANALYTICS", "false")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !out.status.success() {
        return Err(format!("npm install failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    // Run the native binary directly (not the node wrapper) so signals reach it.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    let native =
        prefix.join("node_modules/@restatedev").join(format!("restate-server-{}-{arch}", std::env::consts::OS)).join("bin/restate-server");
    let bin = if native.exists() { native } else { prefix.join("node_modules/.bin/restate-server") };
    if !bin.exists() {
        return Err(format!("restate-server binary not found under {}", prefix.display()).into());
    }
    Ok(bin)
}

async fn get_ok(client: &HttpClient, url: &str) -> bool {
    let Ok(req) = hyper::Request::get(url).body(Full::new(Bytes::new())) else { return false };
    matches!(client.request(req).await, Ok(r) if r.status().is_success())
}

async fn post(client: &HttpClient, url: &str, body: String) -> Result<(hyper::StatusCode, Bytes)> {
    let req = hyper::Request::post(url).header("content-type", "application/json").body(Full::new(Bytes::from(body)))?;
    let resp = client.request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn check_alive(env: &mut Env, log: &Path) -> Result<()> {
    for (name, child) in env.children.iter_mut() {
        if let Some(st) = child.try_wait()? {
            if *name != "restate-server" {
                return Err(format!("{name} exited early ({st})").into());
            }
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            return Err(format!("{name} exited early ({st}); log tail:\n{tail}").into());
        }
    }
    Ok(())
}

struct RunStats {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// `c` clients issue invocations back to back until `budget` has passed; an
/// invocation started before the deadline is allowed to finish and counts.
async fn drive(client: &HttpClient, url: &Arc<str>, steps: u64, c: usize, budget: Duration) -> Result<RunStats> {
    let start = Instant::now();
    let deadline = start + budget;
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let (status, body) = tokio::time::timeout(INVOCATION_TIMEOUT, post(&client, &url, steps.to_string()))
                    .await
                    .map_err(|_| format!("invocation timed out after {INVOCATION_TIMEOUT:?}"))??;
                let dt = t0.elapsed();
                if !status.is_success() {
                    return Err::<_, BoxError>(format!("invocation failed: {status} {}", String::from_utf8_lossy(&body)).into());
                }
                lat.push(dt);
            }
            Ok(lat)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(RunStats { latencies, elapsed: start.elapsed() })
}

fn percentile_us(sorted: &[Duration], p: f64, steps: u64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest-rank percentile.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    let d = sorted[rank.min(sorted.len()) - 1];
    let us = d.as_secs_f64() * 1e6 / steps as f64;
    (us * 10.0).round() / 10.0
}

/// Resolves with an error as soon as the server or the service exits.
async fn watch_children(env: &mut Env, log: &Path) -> BoxError {
    loop {
        if let Err(e) = check_alive(env, log) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `drive`, aborted as soon as a child process dies.
async fn drive_watched(
    env: &mut Env,
    log: &Path,
    client: &HttpClient,
    url: &Arc<str>,
    steps: u64,
    c: usize,
    budget: Duration,
) -> Result<RunStats> {
    tokio::select! {
        r = drive(client, url, steps, c, budget) => r,
        e = watch_children(env, log) => Err(e),
    }
}

async fn run(args: Args, env: &mut Env) -> Result<()> {
    let dir = env.path().to_path_buf();
    let server_bin = npm_install(&dir.join("npm"))?;

    let ports = free_ports(4)?;
    let (ingress, admin, node, svc) = (ports[0], ports[1], ports[2], ports[3]);
    let data_dir = dir.join("restate-data");
    let log_path = dir.join("restate-server.log");
    let log = std::fs::File::create(&log_path)?;
    progress!(
        "starting restate-server {RESTATE_SERVER_VERSION}: ingress {ingress}, admin {admin}, node {node}, data {}",
        data_dir.display()
    );
    let mut cmd = Command::new(&server_bin);
    cmd.arg("--no-logo")
        .arg("--base-dir")
        .arg(&data_dir)
        .args(["--node-name", "bench-node", "--log-format", "compact"])
        .env("RESTATE_LISTEN_MODE", "tcp")
        .env("RESTATE_BIND_ADDRESS", format!("127.0.0.1:{node}"))
        .env("RESTATE_ADVERTISED_ADDRESS", format!("http://127.0.0.1:{node}"))
        .env("RESTATE_ADMIN__BIND_ADDRESS", format!("127.0.0.1:{admin}"))
        .env("RESTATE_INGRESS__BIND_ADDRESS", format!("127.0.0.1:{ingress}"))
        .env("RESTATE_DISABLE_TELEMETRY", "true")
        .env("RESTATE_LOG_DISABLE_ANSI_CODES", "true")
        .env_remove("RESTATE_CONFIG")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Own process group: a terminal Ctrl-C reaches only us; we stop the children.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    env.children.push(("restate-server", cmd.spawn()?));

    // The service binary is the `steps-service` sibling in the same target dir.
    // `cargo run --bin restate-bench` builds only this binary, so when the
    // sibling is absent this same executable serves the identical service
    // (`--serve-steps PORT`, code shared through the library crate).
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name(format!("steps-service{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = if sibling.exists() {
        progress!("starting {} on 127.0.0.1:{svc}", sibling.display());
        let mut c = Command::new(&sibling);
        c.arg(svc.to_string());
        c
    } else {
        progress!("{} absent; serving Steps from {} --serve-steps on 127.0.0.1:{svc}", sibling.display(), exe.display());
        let mut c = Command::new(&exe);
        c.args(["--serve-steps", &svc.to_string()]);
        c
    };
    cmd.env("RUST_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    env.children.push(("steps-service", cmd.spawn()?));

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let max_c = *args.concurrency.iter().max().unwrap_or(&1);
    let client: HttpClient =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(max_c + 8).pool_idle_timeout(Duration::from_secs(90)).build(connector);

    // Wait for the server's admin and ingress endpoints, and the service port.
    let admin_url = format!("http://127.0.0.1:{admin}");
    let ingress_url = format!("http://127.0.0.1:{ingress}");
    let t0 = Instant::now();
    loop {
        check_alive(env, &log_path)?;
        let svc_up = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], svc))).await.is_ok();
        if svc_up
            && get_ok(&client, &format!("{admin_url}/health")).await
            && get_ok(&client, &format!("{ingress_url}/restate/health")).await
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            return Err(format!("restate-server not ready after 90 s (log: {})", log_path.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress!("server ready in {:.1} s", t0.elapsed().as_secs_f64());

    let (status, body) =
        post(&client, &format!("{admin_url}/deployments"), serde_json::json!({ "uri": format!("http://127.0.0.1:{svc}") }).to_string())
            .await?;
    if !status.is_success() {
        return Err(format!("deployment registration failed: {status} {}", String::from_utf8_lossy(&body)).into());
    }
    progress!("registered deployment http://127.0.0.1:{svc}");

    // The ingress learns the new schema asynchronously: probe until it routes.
    let run_url: Arc<str> = format!("{ingress_url}/Steps/run").into();
    let t0 = Instant::now();
    loop {
        match post(&client, &run_url, "1".into()).await {
            Ok((s, _)) if s.is_success() => break,
            Ok((s, b)) if t0.elapsed() > Duration::from_secs(30) => {
                return Err(format!("probe invocation failed: {s} {}", String::from_utf8_lossy(&b)).into())
            }
            Err(e) if t0.elapsed() > Duration::from_secs(30) => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    for &c in &args.concurrency {
        if args.warmup > 0.0 {
            progress!("concurrency {c}: warm-up {:.1} s", args.warmup);
            drive_watched(env, &log_path, &client, &run_url, args.steps, c, Duration::from_secs_f64(args.warmup)).await?;
        }
        progress!("concurrency {c}: measuring {:.1} s, {} steps per invocation", args.seconds, args.steps);
        let mut st = drive_watched(env, &log_path, &client, &run_url, args.steps, c, Duration::from_secs_f64(args.seconds)).await?;
        st.latencies.sort_unstable();
        let n = st.latencies.len() as u64;
        let elapsed = st.elapsed.as_secs_f64();
        let line = serde_json::json!({
            "engine": "restate",
            "restate_version": RESTATE_SERVER_VERSION,
            "restate_sdk_version": RESTATE_SDK_VERSION,
            "concurrency": c,
            "steps_per_invocation": args.steps,
            "invocations": n,
            "p50_step_us": percentile_us(&st.latencies, 50.0, args.steps),
            "p99_step_us": percentile_us(&st.latencies, 99.0, args.steps),
            "steps_per_sec": ((n * args.steps) as f64 / elapsed).round(),
            "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        });
        progress!("concurrency {c}: {n} invocations, {:.0} steps/s", (n * args.steps) as f64 / elapsed);
        println!("{line}");
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--serve-steps") {
        let port = argv.get(2).and_then(|p| p.parse().ok()).expect("--serve-steps PORT");
        drctl_restate_bench::serve(port).await;
        return;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            progress!("{e}");
            std::process::exit(2);
        }
    };
    // Same disk as the drctl store measurement: DRCTL_BENCH_DIR when set.
    let base = std::env::var_os("DRCTL_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = match std::fs::create_dir_all(&base).and_then(|_| tempfile::Builder::new().prefix("restate-bench-").tempdir_in(&base)) {
        Ok(d) => d,
        Err(e) => {
            progress!("cannot create temp dir under {}: {e}", base.display());
            std::process::exit(1);
        }
    };
    let mut env = Env { children: Vec::new(), dir: Some(dir) };

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match sigterm.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let outcome = tokio::select! {
        r = run(args, &mut env) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        _ = term => Err("terminated".into()),
    };
    drop(env); // kill children, remove temp dir
    if let Err(e) = outcome {
        progress!("error: {e}");
        std::process::exit(1);
    }
}
