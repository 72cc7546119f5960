//! The practice range: persistent simulated clusters kept in the store (`drctl sim new`,
//! `drctl sim worlds`), and `drctl sim serve`, which puts one behind the real protocols so that
//! `drctl run` acts on it through the same adapters as on a real cluster.

use crate::target::sim_dir;
use anyhow::{bail, Context, Result};
use drctl_runtime::clock::Timestamp;
use drctl_sim::Sim;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One persistent world, as `drctl sim worlds` lists it.
#[derive(Debug, serde::Serialize)]
pub struct WorldSummary {
    pub name: String,
    pub scenario: String,
    pub seed: u64,
    pub time: String,
    pub healthy: bool,
    pub problems: Vec<String>,
}

fn practice_dir(store: &Path) -> PathBuf {
    sim_dir(store).join("practice")
}

fn world_file(store: &Path, name: &str) -> Result<PathBuf> {
    let plain = !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plain {
        bail!("world name '{name}' must be 1-63 letters, digits, '-' or '_'");
    }
    Ok(practice_dir(store).join(format!("{name}.world")))
}

/// Create world `name` (default: the scenario's name) from `scenario` and `seed`; refuses to
/// replace an existing one.
pub fn create(store: &Path, scenario: &str, name: Option<&str>, seed: u64) -> Result<String> {
    let name = name.unwrap_or(scenario).to_string();
    let path = world_file(store, &name)?;
    if path.exists() {
        bail!("a simulated cluster named {name} exists already ({}); pick another --name", path.display());
    }
    let world = drctl_sim::scenario::build(scenario, seed).map_err(|e| anyhow::anyhow!(e))?;
    let dir = practice_dir(store);
    drctl_runtime::store::create_private_dir(&sim_dir(store)).with_context(|| format!("create {}", sim_dir(store).display()))?;
    drctl_runtime::store::create_private_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
    Sim::new(world).persist_to(&path)?;
    Ok(name)
}

/// Every persistent world of the store.
pub fn list(store: &Path) -> Result<Vec<WorldSummary>> {
    let dir = practice_dir(store);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut out = vec![];
    for e in rd.flatten() {
        let path = e.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".world")) else { continue };
        let st = Sim::load(&path)?.status();
        out.push(WorldSummary {
            name: name.to_string(),
            scenario: st.scenario,
            seed: st.seed,
            time: st.time,
            healthy: st.healthy,
            problems: st.problems,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Apply `breakages` to world `name`, all or nothing (the world is checked and changed in
/// memory, then written once).
pub fn break_world(store: &Path, name: &str, breakages: &[drctl_sim::scenario::Breakage]) -> Result<()> {
    let path = world_file(store, name)?;
    if !path.exists() {
        bail!("no simulated cluster named {name} in {}; create one with `drctl sim new SCENARIO --name {name}`", store.display());
    }
    let mut world = Sim::load(&path)?.read(|w| w.clone());
    for b in breakages {
        drctl_sim::scenario::apply_breakage(&mut world, b).map_err(|e| anyhow::anyhow!("cannot change {name}: {e}"))?;
    }
    // Let the cluster notice (members time out, the API goes down) before anyone looks.
    world.advance(5 * drctl_sim::world::MINUTE);
    Sim::new(world).persist_to(&path)?;
    let st = Sim::load(&path)?.status();
    eprintln!(
        "drctl: {name} changed; now {}",
        if st.healthy { "still healthy".to_string() } else { format!("not healthy: {}", st.problems.join("; ")) }
    );
    Ok(())
}

/// Whether `drctl sim serve` serves world `name` now (its hosts' socket answers).
fn served_now(store: &Path, name: &str) -> bool {
    let socket = practice_dir(store).join(format!("{name}.served")).join("hosts.sock");
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// World `name` as it is, for `drctl run --sim-world`: refused while it is served (two writers
/// of one world would each lose the other's changes).
pub fn load_for_run(store: &Path, name: &str) -> Result<drctl_sim::world::World> {
    let path = world_file(store, name)?;
    if !path.exists() {
        bail!("no simulated cluster named {name} in {}; create one with `drctl sim new SCENARIO --name {name}`", store.display());
    }
    if served_now(store, name) {
        bail!("{name} is being served by `drctl sim serve`: run through the options it printed, or stop serving it first");
    }
    Ok(Sim::load(&path)?.read(|w| w.clone()))
}

/// The target of a run on world `name` (with `world`, checked and perhaps given faults): the
/// run acts on the world's own file.
pub fn run_target(store: &Path, name: &str, world: drctl_sim::world::World, speed: Option<f64>) -> Result<(crate::target::Target, String)> {
    let path = world_file(store, name)?;
    let sim = Sim::new(world);
    sim.persist_to(&path)?;
    let label = path.strip_prefix(sim_dir(store)).context("practice worlds live in the store's sim directory")?.display().to_string();
    Ok((crate::target::sim_target(sim, speed), label))
}

static STOP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Serve world `name` until interrupted (or for `limit`), pacing its clock at `speed` virtual
/// seconds per real second from the wall clock's now.
#[allow(clippy::disallowed_methods)] // a served world follows the wall clock: it is a rehearsal
pub fn serve(store: &Path, name: &str, api_port: u16, speed: f64, limit: Option<Duration>) -> Result<u8> {
    let path = world_file(store, name)?;
    if !path.exists() {
        bail!("no simulated cluster named {name} in {}; create one with `drctl sim new SCENARIO --name {name}`", store.display());
    }
    let sim = Sim::load(&path)?;
    // The runner reads this cluster's timestamps against its own (wall) clock: start the world
    // at the wall clock's now (never back in time).
    let wall = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    sim.advance_to(Timestamp(wall()));
    let drctl = std::env::current_exe().context("find the drctl binary for the hosts' forced command")?;
    let dir = practice_dir(store).join(format!("{name}.served"));
    let _ = std::fs::remove_dir_all(&dir);
    drctl_runtime::store::create_private_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
    let twin = drctl_twin::Twin::start(&sim, &dir, &drctl, api_port).map_err(|e| anyhow::anyhow!(e))?;
    let flags = twin.access_flags().iter().map(|f| drctl_adapters::shell::quote(f)).collect::<Vec<_>>().join(" ");
    eprintln!(
        "drctl: serving simulated cluster {name} ({}) — API {} , hosts {} over sshd on 127.0.0.1; the commands they receive go to {}",
        sim.status().scenario,
        twin.api.server_url(),
        drctl_twin::Twin::inventory_spec(&twin.inventory),
        twin.hosts.log_file().display(),
    );
    eprintln!(
        "drctl: run a procedure through the real adapters from another terminal with the options below, e.g.\n  drctl run restore-cluster-state --backup nightly {flags}"
    );
    // stdout: just the options, for scripts.
    println!("{flags}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let (start_wall, start_virtual) = (std::time::Instant::now(), sim.now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let elapsed = start_wall.elapsed();
        sim.advance_to(start_virtual.plus(Duration::from_secs_f64(elapsed.as_secs_f64() * speed)));
        twin.sync_hosts();
        if limit.is_some_and(|l| elapsed >= l) || STOP.load(std::sync::atomic::Ordering::SeqCst) != 0 {
            break;
        }
    }
    twin.absorb_backups(&sim).map_err(|e| anyhow::anyhow!(e))?;
    let st = sim.status();
    eprintln!(
        "drctl: stopped serving {name}; the world is kept in {} ({})",
        path.display(),
        if st.healthy { "healthy".to_string() } else { format!("not healthy: {}", st.problems.join("; ")) }
    );
    Ok(match STOP.load(std::sync::atomic::Ordering::SeqCst) {
        libc::SIGINT => 130,
        libc::SIGTERM => 143,
        _ => 0,
    })
}
