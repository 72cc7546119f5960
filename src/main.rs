//! `drctl`: run OpenShift/Kubernetes control-plane disaster-recovery runbooks as durable,
//! crash-safe workflows. This file is CLI wiring only; the engine is in `drctl-runtime`, the
//! procedures in `drctl-workflows`, the simulator in `drctl-sim`.

mod inspect;
mod output;
mod practice;
mod real;
mod report;
mod reporter;
mod target;
mod telemetry;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use drctl_runtime::control::{self, ControlError, ControlRequest, ControlResponse, LockError, ProcessLock, RunView};
use drctl_runtime::executor::{Engine, NewRun};
use drctl_runtime::store::Store;
use drctl_runtime::{Clock, RetryPolicy, RunRecord, RunStatus};
use drctl_workflows::catalog::{self, Capability, CatalogRow};
use drctl_workflows::ports::Ports;
use output::Output;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use target::Target;

/// `drctl --version`: the release and the exact commit.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DRCTL_GIT_COMMIT"), ")");

/// Durable, crash-safe control-plane disaster recovery for OpenShift/Kubernetes.
///
/// Every run is persisted after each step; kill drctl at any moment and `drctl resume`
/// continues exactly where it was. Exit codes: 0 success, 1 error, 2 usage, 3 run halted
/// (needs a person), 4 run failed (a bug), 5 run aborted.
#[derive(Parser, Debug)]
#[command(name = "drctl", version = VERSION, about, long_about)]
struct Cli {
    /// Store directory (runs, history, simulated worlds).
    #[arg(long, global = true, env = "DRCTL_STORE", default_value_os_t = default_store())]
    store: PathBuf,
    /// Output format for data on stdout.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the procedures this build can run.
    Procedures,
    /// Start a procedure and drive it to the end.
    #[command(subcommand)]
    Run(RunCommand),
    /// Show all runs, or one run in detail.
    Status {
        /// The run to show in detail (default: a table of every run).
        run: Option<String>,
        /// Refresh until the run (or, without RUN, every run) has ended or Ctrl-C: in place on a
        /// terminal; otherwise printed again whenever it changes.
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes (e.g. 2s, 1m).
        #[arg(long, default_value = "2s", requires = "watch")]
        interval: String,
    },
    /// Show a run's append-only history.
    History {
        /// The run (see `drctl status`).
        run: String,
    },
    /// Write a report of a run for the incident review: one self-contained HTML page (a timeline
    /// of its states, waits, retries, API outages, gates, resumes and child runs), or JSON.
    Report {
        /// The run (see `drctl status`).
        run: String,
        /// `html` (a page with no external assets) or `json` (the same data).
        #[arg(long, value_enum, default_value = "html")]
        format: ReportFormat,
    },
    /// Continue every unfinished run (or a halted one, by id) from its last committed state.
    Resume {
        /// The run to resume (default: every unfinished run; a halted run only by its id).
        run: Option<String>,
        /// Override the pace of simulated time for simulated runs.
        #[arg(long)]
        sim_speed: Option<f64>,
        /// Correct a parameter of the halted RUN before resuming it, e.g. `--set backup=nightly`
        /// (repeatable; keys as `drctl status RUN -o json` shows its params). Checked as `run`
        /// checks it, refused once the run has changed the cluster, recorded in its history.
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "run")]
        set: Vec<String>,
    },
    /// Approve the gate a run waits at.
    Approve(DecideArgs),
    /// Reject the gate a run waits at.
    Reject(DecideArgs),
    /// Abort a run; required undo steps (e.g. quorum guard back on) still run.
    Abort {
        /// The run to abort: running, waiting, at a gate, or halted.
        run: String,
    },
    /// The built-in simulator.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Retention: remove finished runs (succeeded, failed, aborted) that ended longer ago than
    /// --finished-before, each first written to an archive file with what an incident review
    /// needs (the run, its gate decisions, every event but wait re-checks and retries, which are
    /// counted). Unfinished and halted runs are never touched.
    Gc {
        /// Age bound, e.g. 90d: runs that ended before now minus this go.
        #[arg(long, value_name = "DURATION")]
        finished_before: String,
        /// Where the archive files go (default: the store's archive/ directory).
        #[arg(long, value_name = "DIR")]
        archive_dir: Option<PathBuf>,
    },
    /// Print a shell completion script, e.g. `drctl completions bash > /etc/bash_completion.d/drctl`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print drctl's man page (roff), e.g. `drctl man | man -l -`; with --out-dir, write one
    /// page per command there (drctl.1, drctl-run.1, ...).
    Man {
        /// Directory to write every page to.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Check access to a real cluster before a run: what the procedures would see through the
    /// real adapters. Read-only.
    ///
    /// Shows whether the API answers and its control-plane nodes (Ready, taints) with
    /// --kubeconfig/--context (or $KUBECONFIG); which hosts answer SSH with --hosts; and etcd's
    /// members, their health, the cluster id(s) and quorum (healthy voting members > members/2)
    /// with --etcd-endpoints, through the local etcdctl. Parts whose options are absent are
    /// reported as "not checked".
    ///
    /// Exit status: 0 when everything checked is fine; 1 when something checked is not: etcd has
    /// no quorum or its members report different cluster ids, the API or a host does not answer
    /// (and on errors).
    Inspect(inspect::InspectArgs),
}

#[derive(Args, Debug)]
struct DecideArgs {
    /// The run whose gate to decide (see `drctl status`).
    run: String,
    /// Gate name (default: the one the run waits at).
    #[arg(long)]
    gate: Option<String>,
    /// Why, for the record (e.g. a ticket): kept with the decision, shown by `status`.
    #[arg(long)]
    comment: Option<String>,
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// List the simulator's scenarios.
    Scenarios,
    /// Health summary of a simulated cluster (default: the newest simulated run's world).
    /// Exits 1 when the cluster is not healthy.
    Status {
        /// Run whose world to show.
        #[arg(long)]
        run: Option<String>,
    },
    /// Deterministic chaos sweep: run a procedure over many seeds with faults injected, check
    /// safety invariants after every transition, liveness once faults stop, determinism (each
    /// seed twice) and crash equivalence; a failure is shrunk and printed with the one command
    /// that replays it. Exits 1 when anything failed.
    Chaos(ChaosArgs),
    /// Create a persistent simulated cluster (a practice range) from a scenario.
    New {
        /// Scenario to start from (see `drctl sim scenarios`).
        scenario: String,
        /// Name of the world (default: the scenario's name).
        #[arg(long)]
        name: Option<String>,
        /// Seed: everything the simulated cluster does follows from it.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List the persistent simulated clusters of the store.
    Worlds,
    /// Break a persistent simulated cluster, to practise a recovery on it (e.g. after taking a
    /// backup of it with `etcd-backup` through `drctl sim serve`).
    Break {
        /// The world (see `drctl sim worlds`).
        world: String,
        /// Stop these control-plane hosts' machines (power lost), e.g. master-1,master-2: with
        /// two of three gone, etcd loses quorum.
        #[arg(long, value_name = "HOST,...")]
        power_off: Option<String>,
        /// This control-plane host's disk loses /var/lib/etcd.
        #[arg(long, value_name = "HOST")]
        lose_etcd_data: Option<String>,
    },
    /// Power on every machine of a persistent simulated cluster that is off (what a person does
    /// outside the cluster before `cluster-restart`): each boots within a few minutes.
    PowerOn {
        /// The world (see `drctl sim worlds`).
        world: String,
    },
    /// Serve a persistent simulated cluster over the real protocols: its Kubernetes API over
    /// HTTPS and each control-plane host behind a real sshd on 127.0.0.1, and print the options
    /// that make `drctl run` act on it through the same adapters a real recovery uses. Runs until
    /// interrupted; the world is kept in the store.
    Serve(ServeArgs),
    /// The forced command of a served host's sshd (internal).
    #[command(hide = true)]
    HostShell {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        host: String,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The world to serve (see `drctl sim worlds`).
    world: String,
    /// Port of the API on 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = 0)]
    api_port: u16,
    /// Virtual seconds per real second for the cluster's own controllers (rollouts, machine
    /// provisioning). Above 1 the cluster's timestamps run ahead of the runner's clock.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Stop after this long (e.g. `10m`); default: until interrupted.
    #[arg(long)]
    for_: Option<String>,
}

#[derive(Args, Debug)]
struct ChaosArgs {
    /// Procedure to sweep (see `drctl procedures`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(drctl_workflows::catalog::CATALOG.iter().map(|r| r.name)))]
    procedure: String,
    /// Seeds, as A..B (B excluded).
    #[arg(long, default_value = "1..200")]
    seeds: String,
    /// Replay exactly this fault schedule for every seed (as printed by a failure), or `none`.
    #[arg(long)]
    faults: Option<String>,
    /// Fault kinds a derived schedule may contain, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    allow: String,
    /// Check crash equivalence at every transition for this many seeds.
    #[arg(long, default_value_t = 2)]
    crash_seeds: u64,
    /// Do not shrink failures.
    #[arg(long)]
    no_shrink: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Run against the built-in simulator, starting from this scenario (see `drctl sim scenarios`).
    #[arg(long, value_name = "SCENARIO", value_parser = scenario_names())]
    sim: Option<String>,
    /// Run against a persistent simulated cluster of the store (`drctl sim new`), as it is now:
    /// what the run changes stays in it (practise back up, break, restore on one cluster).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["sim", "sim_backup_defect"])]
    sim_world: Option<String>,
    /// Seed of the simulation: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pace simulated time at N× real time (default: as fast as possible).
    #[arg(long)]
    sim_speed: Option<f64>,
    /// Inject an API outage into the simulation: START+DURATION from the run's start, e.g. 40m+2h.
    #[arg(long = "sim-api-outage", value_name = "START+DURATION")]
    sim_api_outage: Vec<String>,
    /// Damage the scenario's backups to rehearse the guards: drop-snapshot, drop-resources,
    /// rename-snapshot, other-z-stream; or no-info-file (a backup made by the runbook's script).
    #[arg(long = "sim-backup-defect", value_name = "DEFECT", value_parser = clap::builder::PossibleValuesParser::new(drctl_sim::scenario::BACKUP_DEFECTS))]
    sim_backup_defect: Option<String>,
    /// Approve every gate the procedure has, up front (see `drctl procedures -o json`).
    #[arg(long)]
    yes: bool,
    /// Give up on transient failures after this long (e.g. 24h, 90m).
    #[arg(long, default_value = "24h")]
    deadline: String,
    #[command(flatten)]
    access: real::AccessArgs,
    /// Where backup sets are kept, outside the cluster: DIR/<backup>/ with snapshot_<ts>.db,
    /// static_kuberesources_<ts>.tar.gz and backup-info.json.
    #[arg(long, value_name = "DIR", help_heading = "Real cluster")]
    backup_root: Option<PathBuf>,
    /// An S3-compatible endpoint for a hosted procedure's bucket (MinIO, Ceph RGW:
    /// `https://s3.example.com`); default: AWS S3. Credentials come from the AWS environment
    /// variables, shared files or profile, and are never recorded.
    #[arg(long, value_name = "URL", help_heading = "Real cluster")]
    s3_endpoint: Option<String>,
}

/// `drctl run NAME …`: one subcommand per catalog row, with the procedure's own arguments
/// (declared beside it) and the common ones. A new procedure needs no change here.
#[derive(Debug)]
struct RunCommand {
    procedure: &'static str,
    params: serde_json::Value,
    common: Common,
}

impl clap::FromArgMatches for RunCommand {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, sub)) = m.subcommand() else {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::MissingSubcommand,
                "name the procedure to run (see `drctl procedures`)\n",
            ));
        };
        let Some(row) = catalog::row(name) else {
            return Err(clap::Error::raw(clap::error::ErrorKind::InvalidSubcommand, format!("no procedure {name}\n")));
        };
        Ok(RunCommand { procedure: row.name, params: (row.cli.params)(sub)?, common: Common::from_arg_matches(sub)? })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = RunCommand::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Subcommand for RunCommand {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        catalog::CATALOG.iter().fold(cmd.subcommand_required(true), |cmd, row| {
            // The arguments' own doc comments would name the command: set its text last.
            let sub = Common::augment_args((row.cli.augment)(clap::Command::new(row.name)));
            let follows = row.docs.iter().map(|d| format!("Follows {d}.")).collect::<Vec<_>>().join("\n");
            cmd.subcommand(sub.about(row.summary).long_about(format!("{}.\n\n{follows}", row.summary)))
        })
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        RunCommand::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        catalog::row(name).is_some()
    }
}

/// The simulator's scenarios, as the closed set `--sim` accepts (clap lists them in errors).
fn scenario_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(drctl_sim::scenario::SCENARIOS.iter().map(|s| s.name))
}

/// ` --store PATH` for a command printed for the user to paste, when the store is not the
/// default one (a pasted command must reach the same store, from any terminal).
fn store_flag(store: &Path) -> String {
    if store == default_store() {
        return String::new();
    }
    let p = store.display().to_string();
    let plain = p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b':' | b'@'));
    match plain {
        true => format!(" --store {p}"),
        false => format!(" --store '{}'", p.replace('\'', "'\\''")),
    }
}

fn default_store() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(h) => Path::new(&h).join(".local/state/drctl"),
        None => PathBuf::from(".drctl"),
    }
}

/// Exit codes (also in the `--help` text).
const EXIT_ERROR: u8 = 1;
const EXIT_HALTED: u8 = 3;
const EXIT_FAILED: u8 = 4;
const EXIT_ABORTED: u8 = 5;

fn exit_for(status: RunStatus) -> u8 {
    match status {
        RunStatus::Succeeded => 0,
        RunStatus::Halted => EXIT_HALTED,
        RunStatus::Failed => EXIT_FAILED,
        RunStatus::Aborted => EXIT_ABORTED,
        _ => EXIT_ERROR,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !drives_runs(&cli.command) {
        // A command that only prints (`drctl status | head -1`) ends quietly when its reader goes
        // away, as Unix tools do. One that drives runs keeps going: its runs matter more than
        // its terminal.
        // SAFETY: restoring the default disposition of one signal, before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    reporter::init(default_log_level(&cli.command));
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("drctl: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn real_main(cli: Cli) -> Result<u8> {
    let out = cli.output;
    match cli.command {
        Command::Procedures => {
            let reg = drctl_workflows::registry();
            output::procedures(out, &reg);
            Ok(0)
        }
        Command::Run(cmd) => cmd_run(&cli.store, out, cmd),
        Command::Resume { run, sim_speed, set } => cmd_resume(&cli.store, out, run, sim_speed, &set),
        Command::Status { run, watch, interval } => match watch {
            false => {
                print!("{}", status_text(&cli.store, out, run)?.0);
                Ok(0)
            }
            true => cmd_status_watch(&cli.store, out, run, parse_duration(&interval)?),
        },
        Command::History { run } => {
            match request(&cli.store, ControlRequest::History { run })? {
                ControlResponse::History(h) => output::history(out, &h),
                other => bail!("unexpected answer: {other:?}"),
            }
            Ok(0)
        }
        Command::Report { run, format } => cmd_report(&cli.store, run, format),
        Command::Approve(a) => {
            decide(&cli.store, out, ControlRequest::Approve { run: a.run, gate: a.gate, by: whoami(), comment: a.comment })
        }
        Command::Reject(a) => {
            decide(&cli.store, out, ControlRequest::Reject { run: a.run, gate: a.gate, by: whoami(), comment: a.comment })
        }
        Command::Abort { run } => cmd_abort(&cli.store, out, run),
        Command::Sim(SimCommand::Scenarios) => {
            output::scenarios(out);
            Ok(0)
        }
        Command::Sim(SimCommand::Status { run }) => cmd_sim_status(&cli.store, out, run),
        Command::Sim(SimCommand::Chaos(a)) => cmd_sim_chaos(out, a),
        Command::Sim(SimCommand::New { scenario, name, seed }) => cmd_sim_new(&cli.store, &scenario, name, seed),
        Command::Sim(SimCommand::Worlds) => cmd_sim_worlds(&cli.store, out),
        Command::Sim(SimCommand::Break { world, power_off, lose_etcd_data }) => {
            let mut breakages = vec![];
            if let Some(hosts) = power_off {
                let hosts: Vec<String> = hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_string).collect();
                if hosts.is_empty() {
                    bail!("--power-off needs host names, e.g. master-1,master-2");
                }
                breakages.push(drctl_sim::scenario::Breakage::PowerOff(hosts));
            }
            if let Some(h) = lose_etcd_data {
                breakages.push(drctl_sim::scenario::Breakage::LoseEtcdData(h));
            }
            if breakages.is_empty() {
                bail!("nothing to break: pass --power-off HOST,... and/or --lose-etcd-data HOST");
            }
            practice::break_world(&cli.store, &world, &breakages)?;
            Ok(0)
        }
        Command::Sim(SimCommand::PowerOn { world }) => {
            practice::break_world(&cli.store, &world, &[drctl_sim::scenario::Breakage::PowerOnAll])?;
            Ok(0)
        }
        Command::Sim(SimCommand::Serve(a)) => cmd_sim_serve(&cli.store, a),
        Command::Sim(SimCommand::HostShell { socket, host }) => {
            Ok(u8::try_from(drctl_twin::hosts::host_shell_client(&socket, &host)).unwrap_or(255))
        }
        Command::Gc { finished_before, archive_dir } => cmd_gc(&cli.store, out, &finished_before, archive_dir),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "drctl", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).context("write the completion script")?;
            Ok(0)
        }
        Command::Man { out_dir } => cmd_man(out_dir),
        Command::Inspect(a) => {
            if !a.access.any()
                && a.etcd_endpoints.is_empty()
                && a.object_store.is_none()
                && std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty())
            {
                bail!(
                    "nothing to inspect: pass --kubeconfig/--context (the API), --hosts with --ssh-user (SSH), --etcd-endpoints (etcd) \
                     and/or --object-store s3://BUCKET[/PREFIX] (an S3 bucket)"
                );
            }
            let report = inspect::inspect(&a)?;
            output::inspect(out, &report);
            Ok(if report.ok { 0 } else { EXIT_ERROR })
        }
    }
}

/// What `status` prints, and whether what it shows has ended (every run shown is finished or
/// halted).
fn status_text(store: &Path, out: Output, run: Option<String>) -> Result<(String, bool)> {
    let flag = store_flag(store);
    Ok(match request(store, ControlRequest::Status { run })? {
        ControlResponse::Runs(runs) => (output::runs_text(out, &runs, &flag), runs.iter().all(|r| r.status.is_terminal())),
        ControlResponse::Run(run) => {
            let mut text = output::run_detail_text(out, &run, &flag);
            if let (Output::Table, Some(note)) = (out, telemetry::status_note(store, &run.id)) {
                text.push_str(&format!("{note}\n"));
            }
            (text, run.status.is_terminal())
        }
        other => bail!("unexpected answer: {other:?}"),
    })
}

/// `status --watch`: the status again every `interval` (real time: it watches other processes)
/// until what it shows has ended.
#[allow(clippy::disallowed_methods)]
fn cmd_status_watch(store: &Path, out: Output, run: Option<String>, interval: Duration) -> Result<u8> {
    if interval.is_zero() {
        bail!("--interval must be longer than 0s");
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut shown = String::new();
    loop {
        let (text, ended) = status_text(store, out, run.clone())?;
        if text != shown {
            match tty {
                // Home and clear, then the table: refreshed in place.
                true => print!("\x1b[H\x1b[2J{text}"),
                false => print!("{text}"),
            }
            std::io::Write::flush(&mut std::io::stdout())?;
            shown = text;
        }
        if ended {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}

/// `drctl gc`: archive, then remove, finished runs older than the bound (wall clock).
fn cmd_gc(store: &Path, out: Output, finished_before: &str, archive_dir: Option<PathBuf>) -> Result<u8> {
    let age = parse_duration(finished_before)?;
    if !store.exists() {
        bail!("no drctl store at {} (nothing to collect)", store.display());
    }
    let _lock = lock(store)?;
    let db = Store::open(store).with_context(|| format!("open store {}", store.display()))?;
    let now = drctl_adapters::clock::SystemClock::new().now();
    let bound = drctl_runtime::Timestamp(now.millis().saturating_sub(age.as_millis() as u64));
    let archive = archive_dir.unwrap_or_else(|| store.join("archive"));
    let report = drctl_runtime::gc::collect(&db, bound, Some(&archive))?;
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            println!(
                "removed {} finished before {bound} ({} history events); archived in {}",
                output::plural(report.runs_deleted, "run", "runs"),
                report.events_removed,
                archive.display()
            );
            println!(
                "kept {} unfinished or halted, {} finished since",
                output::plural(report.runs_kept_unfinished, "run", "runs"),
                output::plural(report.runs_kept_recent, "run", "runs")
            );
        }
    }
    Ok(0)
}

/// `drctl man`: the page of drctl itself on stdout, or every command's page into a directory.
fn cmd_man(out_dir: Option<PathBuf>) -> Result<u8> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match out_dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).context("write the man page")?,
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir).with_context(|| format!("write the man pages to {}", dir.display()))?;
            eprintln!("drctl: man pages written to {}", dir.display());
        }
    }
    Ok(0)
}

/// Who is deciding, for the gate record.
fn whoami() -> String {
    std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| format!("uid:{}", unsafe { libc::getuid() }))
}

fn engine(store: &Path) -> Result<Arc<Engine<Ports>>> {
    let store = Store::open(store).with_context(|| format!("open store {}", store.display()))?;
    Ok(Arc::new(Engine::new(Arc::new(store), Arc::new(drctl_workflows::registry()), RetryPolicy::default())))
}

/// How long to wait for a short-lived reader (another `drctl status`) to let go of the store.
const READER_GRACE: Duration = Duration::from_secs(5);
const LOCK_POLL: Duration = Duration::from_millis(25);

/// Take the store for this process, or explain who has it. A process that drives runs serves
/// the control socket and is refused at once; a reader holds the store for milliseconds and is
/// waited for (bounded).
#[allow(clippy::disallowed_methods)] // a real-time grace period for another process
fn lock(store: &Path) -> Result<ProcessLock> {
    let start = std::time::Instant::now();
    loop {
        match ProcessLock::acquire(store) {
            Ok(l) => return Ok(l),
            Err(LockError::Held { pid, .. }) if control::socket_path(store).exists() || start.elapsed() > READER_GRACE => {
                bail!(
                    "store {} is in use by drctl process {pid}: it is driving runs there; use `drctl status`, `approve`, `reject` or `abort` from here, or wait for it to finish",
                    store.display()
                )
            }
            Err(LockError::Held { .. }) => std::thread::sleep(LOCK_POLL),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Answer a status/history/decision request: through the running drctl if one holds the store,
/// else directly on the store.
#[allow(clippy::disallowed_methods)] // a real-time grace period for another process
fn request(store: &Path, req: ControlRequest) -> Result<ControlResponse> {
    if !store.exists() {
        bail!("no drctl store at {} (start a run first, or pass --store)", store.display());
    }
    let start = std::time::Instant::now();
    let resp = loop {
        match ProcessLock::acquire(store) {
            Ok(_lock) => {
                let eng = engine(store)?;
                let clock = clock_for_request(store, &eng, &req)?;
                break control::handle_request(&eng, &*clock, req);
            }
            // A driver answers on its socket; a reader (or a driver just starting or exiting)
            // is waited out, within bounds.
            // Only a request that never reached the holder is retried: once delivered, an
            // approve or abort may have been applied even if its answer is lost.
            Err(LockError::Held { pid, .. }) => match control::control_request(store, &req, Duration::from_secs(30)) {
                Ok(resp) => break resp,
                Err(e @ ControlError::Connect { .. }) if start.elapsed() > READER_GRACE => {
                    bail!("store {} is held by drctl process {pid}, which does not answer: {e}", store.display())
                }
                Err(ControlError::Connect { .. }) => std::thread::sleep(LOCK_POLL),
                Err(e) => {
                    bail!("drctl process {pid} took the request but its answer was lost ({e}); check `drctl status` before repeating it")
                }
            },
            Err(e) => return Err(e.into()),
        }
    };
    match resp {
        ControlResponse::Error(e) => bail!("{e}"),
        ok => Ok(ok),
    }
}

/// Decisions are stamped with the run's own clock: its simulated world's, or the wall clock.
fn clock_for_request(store: &Path, eng: &Engine<Ports>, req: &ControlRequest) -> Result<Arc<dyn Clock>> {
    let run = match req {
        ControlRequest::Approve { run, .. } | ControlRequest::Reject { run, .. } | ControlRequest::Abort { run, .. } => run,
        _ => return Ok(Arc::new(drctl_adapters::clock::SystemClock::new())),
    };
    match eng.store().get_run(run)? {
        Some(rec) if rec.labels.get(target::LABEL_TARGET).map(String::as_str) == Some("sim") => {
            Ok(target::load_sim(store, &rec, None)?.clock)
        }
        _ => Ok(Arc::new(drctl_adapters::clock::SystemClock::new())),
    }
}

/// Abort a run. The process driving it acts on the request; a run nobody drives (halted, or
/// its process gone) is driven here until its undo path is done and it ends Aborted.
fn cmd_abort(store: &Path, out: Output, run: String) -> Result<u8> {
    let ControlResponse::Run(view) = request(store, ControlRequest::Abort { run: run.clone(), by: whoami() })? else {
        bail!("unexpected answer to abort");
    };
    let undriven = ProcessLock::acquire(store).is_ok();
    let finished = view.status.is_terminal() && view.status != RunStatus::Halted;
    match (undriven, finished) {
        (true, false) => {
            eprintln!("drctl: run {run} is not driven by any drctl process: carrying out the abort now");
            cmd_resume(store, out, Some(run), None, &[])
        }
        _ => {
            output::run_detail(out, &view, &store_flag(store));
            Ok(0)
        }
    }
}

/// Approve or reject: what was decided, in one line; and, for a run no process drives, that
/// the decision waits for `drctl resume`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ReportFormat {
    Html,
    Json,
}

/// The report of `run` and its children (to [`report::MAX_DEPTH`]).
fn run_report(store: &Path, run: &str, depth: usize) -> Result<report::RunReport> {
    let view = match request(store, ControlRequest::Status { run: Some(run.to_string()) })? {
        ControlResponse::Run(v) => v,
        other => bail!("unexpected answer: {other:?}"),
    };
    let history = match request(store, ControlRequest::History { run: run.to_string() })? {
        ControlResponse::History(h) => h,
        other => bail!("unexpected answer: {other:?}"),
    };
    let docs = catalog::row(&view.procedure).map(|r| r.docs.iter().map(|d| d.to_string()).collect()).unwrap_or_default();
    let mut r = report::RunReport::of(&view, &history, docs);
    if depth < report::MAX_DEPTH {
        for child in view.children.values() {
            r.children.push(run_report(store, &child.run, depth + 1)?);
        }
    }
    Ok(r)
}

fn cmd_report(store: &Path, run: String, format: ReportFormat) -> Result<u8> {
    let r = run_report(store, &run, 0)?;
    let text = match format {
        ReportFormat::Html => report::html(&r),
        ReportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
    };
    std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
    Ok(0)
}

fn decide(store: &Path, out: Output, req: ControlRequest) -> Result<u8> {
    let view = match request(store, req)? {
        ControlResponse::Run(run) => run,
        other => bail!("unexpected answer: {other:?}"),
    };
    output::decision(out, &view);
    if output::undriven(&view) {
        eprintln!(
            "drctl: run {id} is not driven by any drctl process: the decision is recorded and takes effect when it is resumed: `drctl{} resume {id}`",
            store_flag(store),
            id = view.id
        );
    }
    Ok(0)
}

fn parse_duration(s: &str) -> Result<Duration> {
    drctl_workflows::catalog::parse_duration(s).map_err(|e| anyhow!(e))
}

/// `--sim-speed` as given: finite and positive.
fn check_sim_speed(speed: Option<f64>) -> Result<()> {
    match speed {
        Some(s) if !(s.is_finite() && s > 0.0) => bail!("--sim-speed must be a positive number, got {s}"),
        _ => Ok(()),
    }
}

/// Procedures that restore from a backup set (`--backup`, defaulted to a simulated world's newest).
const RESTORES_FROM_BACKUP: [&str; 2] = ["restore-cluster-state", "legacy-lost-masters"];

fn cmd_run(store: &Path, out: Output, cmd: RunCommand) -> Result<u8> {
    // A trace export configuration this build cannot use is refused before anything is stored.
    telemetry::configured()?;
    let RunCommand { procedure, mut params, common } = cmd;
    let deadline = parse_duration(&common.deadline)?;
    if deadline.is_zero() {
        bail!("--deadline must be longer than 0s: it bounds the whole run");
    }
    check_sim_speed(common.sim_speed)?;
    let row = catalog::row(procedure).ok_or_else(|| anyhow!("procedure {procedure} has no catalog row (a bug)"))?;
    let pre_approve = if common.yes { row.gates.iter().map(|g| g.to_string()).collect() } else { vec![] };
    if common.yes && row.gates.is_empty() {
        eprintln!("drctl: {procedure} stops at no gate: --yes has nothing to approve");
    }
    if common.sim.is_none() && common.sim_world.is_none() {
        return run_real(store, out, row, params, &common, deadline, pre_approve);
    }
    if common.access.any() || common.backup_root.is_some() || common.s3_endpoint.is_some() {
        bail!("--sim runs against the simulator: drop --kubeconfig, --context, --hosts, --ssh-*, --backup-root and --s3-endpoint, or drop --sim to act on that cluster");
    }
    // Check everything before touching the store: the world, its damage and faults, the params.
    let outages = common.sim_api_outage.iter().map(|o| parse_outage(o)).collect::<Result<Vec<_>>>()?;
    let mut world = match (&common.sim, &common.sim_world) {
        (Some(scenario), _) => drctl_sim::scenario::build(scenario, common.seed).map_err(|e| anyhow!(e))?,
        (None, Some(name)) => practice::load_for_run(store, name)?,
        (None, None) => unreachable!("checked above"),
    };
    let scenario = world.scenario.clone();
    check_capabilities(row, drctl_sim::scenario::capabilities(&scenario), &format!("a simulated world of scenario {scenario}"))?;
    if let Some(d) = &common.sim_backup_defect {
        drctl_sim::scenario::apply_backup_defect(&mut world, d).map_err(|e| anyhow!(e))?;
    }
    for (at, dur) in &outages {
        let from = world.now.plus(*at);
        world.faults.api_outages.push(drctl_sim::world::Window { from, until: from.plus(*dur) });
    }
    if RESTORES_FROM_BACKUP.contains(&procedure) && params["backup"].is_null() {
        match world.backups.keys().last() {
            Some(b) => params["backup"] = b.clone().into(),
            None => bail!("scenario {scenario} has no backup: pass --backup"),
        }
    }
    check_params(procedure, &params)?;
    preflight(row, &params, &target::sim_facts(&world))?;

    drctl_runtime::store::create_private_dir(store).with_context(|| format!("create store directory {}", store.display()))?;
    let _lock = lock(store)?;
    let eng = engine(store)?;
    let (target, world) = match &common.sim_world {
        Some(name) => practice::run_target(store, name, world, common.sim_speed)?,
        None => target::new_sim(store, world, common.sim_speed)?,
    };
    let mut labels = BTreeMap::new();
    labels.insert(target::LABEL_TARGET.to_string(), "sim".to_string());
    labels.insert(target::LABEL_SCENARIO.to_string(), scenario.clone());
    labels.insert(target::LABEL_WORLD.to_string(), world);
    if let Some(s) = common.sim_speed {
        labels.insert(target::LABEL_SPEED.to_string(), s.to_string());
    }
    let rec = eng.create_run(
        NewRun { procedure: procedure.into(), params, seed: common.seed, deadline, pre_approve, approver: whoami(), labels },
        &*target.clock,
    )?;
    match &common.sim_world {
        Some(name) => eprintln!("drctl: run {} started: {procedure} against simulated cluster {name} ({scenario})", rec.id),
        None => eprintln!("drctl: run {} started: {procedure} against simulated scenario {scenario} (seed {})", rec.id, common.seed),
    }
    drive_and_report(store, out, &eng, vec![(rec.id.clone(), target)])
}

/// `drctl run` against a real cluster: everything is checked and the cluster probed before the
/// run is stored.
fn run_real(
    store: &Path,
    out: Output,
    row: &CatalogRow,
    params: serde_json::Value,
    common: &Common,
    deadline: Duration,
    pre_approve: Vec<String>,
) -> Result<u8> {
    for (set, flag) in [
        (!common.sim_api_outage.is_empty(), "--sim-api-outage"),
        (common.sim_backup_defect.is_some(), "--sim-backup-defect"),
        (common.sim_speed.is_some(), "--sim-speed"),
    ] {
        if set {
            bail!("{flag} needs --sim");
        }
    }
    let procedure = row.name;
    if row.capabilities.contains(&Capability::ManagementCluster) {
        return run_on_management_cluster(store, out, row, params, common, deadline, pre_approve);
    }
    if common.s3_endpoint.is_some() {
        bail!("--s3-endpoint is for the hosted procedures' object store: a standalone cluster's backups go to --backup-root");
    }
    let spec = real::RealSpec::from_args(&common.access, common.backup_root.as_deref())?;
    check_capabilities(row, spec.capabilities(), &format!("the cluster at {}", spec.describe()))?;
    if RESTORES_FROM_BACKUP.contains(&procedure) && params["backup"].is_null() {
        bail!("--backup is required against a real cluster: the name of a backup set under --backup-root {}", spec.backup_root.display());
    }
    // Parameters first (cheap, and no reason to contact the cluster for a typo).
    check_params(procedure, &params)?;
    preflight(row, &params, &spec.facts())?;
    let target = real::new_target(&spec)?;

    let new =
        NewRun { procedure: procedure.into(), params, seed: common.seed, deadline, pre_approve, approver: whoami(), labels: spec.labels() };
    create_and_drive(store, out, new, target, &spec.describe())
}

/// `drctl run` of a hosted procedure against a real management cluster (its API only).
fn run_on_management_cluster(
    store: &Path,
    out: Output,
    row: &CatalogRow,
    params: serde_json::Value,
    common: &Common,
    deadline: Duration,
    pre_approve: Vec<String>,
) -> Result<u8> {
    let procedure = row.name;
    let spec = real::ManagementSpec::from_args(&common.access, common.backup_root.as_deref(), common.s3_endpoint.as_deref())?;
    check_capabilities(row, real::ManagementSpec::CAPABILITIES, &spec.describe())?;
    check_params(procedure, &params)?;
    preflight(row, &params, &catalog::TargetFacts::default())?;
    let target = spec.new_target(row)?;
    let new =
        NewRun { procedure: procedure.into(), params, seed: common.seed, deadline, pre_approve, approver: whoami(), labels: spec.labels() };
    create_and_drive(store, out, new, target, &spec.describe())
}

/// Store a new run against a real target (checked and probed already) and drive it.
fn create_and_drive(store: &Path, out: Output, new: NewRun, target: Target, describe: &str) -> Result<u8> {
    drctl_runtime::store::create_private_dir(store).with_context(|| format!("create store directory {}", store.display()))?;
    let _lock = lock(store)?;
    let eng = engine(store)?;
    let procedure = new.procedure.clone();
    let rec = eng.create_run(new, &*target.clock)?;
    eprintln!("drctl: run {} started: {procedure} against {describe}", rec.id);
    drive_and_report(store, out, &eng, vec![(rec.id.clone(), target)])
}

/// Refuse, before anything is stored, a run whose target lacks what the procedure talks to.
fn check_capabilities(row: &CatalogRow, provided: &[Capability], target: &str) -> Result<()> {
    let missing = row.missing(provided);
    if missing.is_empty() {
        return Ok(());
    }
    let needs: Vec<String> = missing.iter().map(|c| format!("{} ({})", c.as_str(), c.how_to_provide())).collect();
    bail!("{} cannot run against {target}: it needs {}, which that target does not provide", row.name, needs.join(", "))
}

/// Validate a procedure's parameters as the engine will, before anything is created.
fn check_params(procedure: &str, params: &serde_json::Value) -> Result<()> {
    let reg = drctl_workflows::registry();
    let p = reg.get(procedure).ok_or_else(|| anyhow!("unknown procedure {procedure}"))?;
    p.encode_params(params.clone()).map_err(|e| anyhow!("cannot start {procedure}: {e}"))?;
    Ok(())
}

/// The procedure's own checks of input against what is known of the target.
fn preflight(row: &CatalogRow, params: &serde_json::Value, facts: &catalog::TargetFacts) -> Result<()> {
    (row.preflight)(params, facts).map_err(|e| anyhow!("cannot start {}: {e}", row.name))
}

/// `KEY=VALUE` of `resume --set`.
fn parse_setting(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().replace('-', "_"), v.to_string())),
        _ => bail!("--set '{s}' must be KEY=VALUE, e.g. --set backup=nightly"),
    }
}

/// `40m+2h` -> (40 minutes, 2 hours).
fn parse_outage(s: &str) -> Result<(Duration, Duration)> {
    let (at, dur) = s.split_once('+').ok_or_else(|| anyhow!("--sim-api-outage '{s}' must be START+DURATION, e.g. 40m+2h"))?;
    Ok((parse_duration(at)?, parse_duration(dur)?))
}

fn cmd_resume(store: &Path, out: Output, run: Option<String>, sim_speed: Option<f64>, set: &[String]) -> Result<u8> {
    telemetry::configured()?;
    check_sim_speed(sim_speed)?;
    let settings = set.iter().map(|s| parse_setting(s)).collect::<Result<Vec<_>>>()?;
    if !store.exists() {
        bail!("no drctl store at {} (nothing to resume)", store.display());
    }
    let _lock = lock(store)?;
    let eng = engine(store)?;
    let explicit = run.is_some();
    let recs: Vec<RunRecord> = match run {
        Some(id) => vec![eng.store().get_run(&id)?.ok_or_else(|| anyhow!("no run {id} in {}", store.display()))?],
        None => eng.resumable()?,
    };
    if let [rec] = recs.as_slice() {
        if rec.status.is_terminal() && rec.status != RunStatus::Halted {
            if !settings.is_empty() {
                bail!("run {} cannot be corrected: {}", rec.id, rec.status.as_phrase());
            }
            eprintln!("drctl: run {} ({}): {}; nothing to resume", rec.id, rec.procedure, rec.status.as_phrase());
            return Ok(0);
        }
    }
    if recs.is_empty() {
        eprintln!("drctl: nothing to resume");
        return Ok(0);
    }
    let mut runs = vec![];
    let mut unresumable = 0u8;
    for rec in recs {
        let target = match rec.labels.get(target::LABEL_TARGET).map(String::as_str) {
            Some("sim") => target::load_sim(store, &rec, sim_speed),
            Some(real::TARGET_REAL) => real::RealSpec::from_labels(&rec).and_then(|spec| {
                let t = real::load_target(&spec)?;
                eprintln!("drctl: resuming run {} ({}) against {}", rec.id, rec.procedure, spec.describe());
                Ok(t)
            }),
            Some(real::TARGET_REAL_MANAGEMENT) => real::ManagementSpec::from_labels(&rec).and_then(|spec| {
                let row = catalog::row(&rec.procedure)
                    .ok_or_else(|| anyhow!("run {} is of procedure {}, which this build does not know", rec.id, rec.procedure))?;
                let t = spec.load_target(row)?;
                eprintln!("drctl: resuming run {} ({}) against {}", rec.id, rec.procedure, spec.describe());
                Ok(t)
            }),
            other => Err(anyhow!("unknown target {other:?}; this build resumes simulated and real runs")),
        };
        let target = match (target, settings.is_empty()) {
            (Ok(t), false) => correct(&eng, &rec, &t, &settings).map(|()| t),
            (t, _) => t,
        };
        match target {
            Ok(t) => runs.push((rec.id.clone(), t)),
            // One run whose target cannot be rebuilt (a kubeconfig gone) must not keep the others
            // from being resumed.
            Err(e) if !explicit => {
                eprintln!("drctl: error: cannot resume run {}: {e:#}", rec.id);
                unresumable = EXIT_ERROR;
            }
            Err(e) => return Err(e.context(format!("cannot resume run {}", rec.id))),
        }
    }
    if runs.is_empty() {
        bail!("no run could be resumed");
    }
    Ok(drive_and_report(store, out, &eng, runs)?.max(unresumable))
}

/// `resume RUN --set …`: correct the halted run's parameters, checked as `run` checks them
/// against the run's own target, before it is driven again.
fn correct(eng: &Engine<Ports>, rec: &RunRecord, t: &Target, settings: &[(String, String)]) -> Result<()> {
    let row = catalog::row(&rec.procedure).ok_or_else(|| anyhow!("procedure {} is not in this build's catalog", rec.procedure))?;
    let facts = match (&t.sim, real::RealSpec::from_labels(rec)) {
        (Some(sim), _) => sim.read(target::sim_facts),
        (None, Ok(spec)) => spec.facts(),
        (None, Err(_)) => catalog::TargetFacts::default(),
    };
    let fixed = eng.correct(&rec.id, settings, &whoami(), &*t.clock, |params| (row.preflight)(params, &facts))?;
    let what: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("drctl: run {} corrected ({}): starts again from {}", rec.id, what.join(", "), fixed.state_name);
    Ok(())
}

/// Drive runs to their end and report them; the exit code. Interrupted by SIGINT or SIGTERM,
/// say where each run stopped and how to continue instead.
fn drive_and_report(store: &Path, out: Output, eng: &Arc<Engine<Ports>>, runs: Vec<(String, Target)>) -> Result<u8> {
    let ids: Vec<String> = runs.iter().map(|(id, _)| id.clone()).collect();
    match drive_all(store, eng, runs)? {
        Driven::Finished(finals) => report(store, out, eng, &finals),
        Driven::Interrupted { signal, code } => {
            for id in ids {
                let Some(r) = eng.store().get_run(&id)? else { continue };
                eprintln!(
                    "drctl: {signal}: run {id} ({}) stopped at {} ({}); nothing is lost: continue with `drctl{} resume {id}`",
                    r.procedure,
                    r.state_name,
                    r.status.as_str(),
                    store_flag(store)
                );
            }
            Ok(code)
        }
    }
}

enum Driven {
    Finished(Vec<RunRecord>),
    Interrupted { signal: &'static str, code: u8 },
}

/// Drive runs concurrently on one engine, serving the control socket meanwhile. On SIGINT or
/// SIGTERM the runs are abandoned where they are, as a crash would leave them (every step is
/// re-run on resume; what was committed stays), the control socket is removed and the store's
/// lock released.
fn drive_all(store: &Path, eng: &Arc<Engine<Ports>>, runs: Vec<(String, Target)>) -> Result<Driven> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = drctl_runtime::executor::driver_runtime()?;
    let driven = rt.block_on(async {
        let (mut sigint, mut sigterm) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        let control_clock = runs[0].1.clock.clone();
        reporter::use_run_time(control_clock.now());
        let server = control::serve_control(store, eng.clone(), control_clock).await?;
        // Trace export never stops a run: a configuration it cannot use is reported and skipped.
        let telemetry = telemetry::Telemetry::start(store, eng.store().clone()).unwrap_or_else(|e| {
            eprintln!("drctl: warning: traces are not exported: {e:#}");
            None
        });
        let mut tasks = vec![];
        for (id, t) in runs {
            let eng = eng.clone();
            let printer = output::progress_printer(id.clone(), store_flag(store));
            let progress: drctl_runtime::executor::Progress = match telemetry.as_ref().map(|t| t.notifier()) {
                Some(n) => Arc::new(move |r: &RunRecord| {
                    printer(r);
                    n.touched(&r.id);
                }),
                None => printer,
            };
            tasks.push(tokio::spawn(async move { eng.drive(&id, t.ports, t.clock, progress).await }));
        }
        let aborts: Vec<tokio::task::AbortHandle> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = async {
            let mut finals = vec![];
            for t in tasks {
                finals.push(t.await.map_err(|e| anyhow!("run task: {e}"))??);
            }
            Ok::<_, anyhow::Error>(finals)
        };
        let driven = tokio::select! {
            finals = all => Driven::Finished(finals?),
            _ = sigint.recv() => Driven::Interrupted { signal: "SIGINT", code: 130 },
            _ = sigterm.recv() => Driven::Interrupted { signal: "SIGTERM", code: 143 },
        };
        aborts.iter().for_each(|a| a.abort());
        // Answer the request that may just have ended the run (an abort) before exiting.
        server.shutdown().await;
        if let Some(t) = telemetry {
            t.finish().await;
        }
        Ok::<_, anyhow::Error>(driven)
    })?;
    // A step in flight on a blocking thread gets a moment to finish; after that it is abandoned
    // like a crash (its effect is fenced or idempotent, and re-run on resume).
    rt.shutdown_timeout(Duration::from_secs(3));
    Ok(driven)
}

fn report(store: &Path, out: Output, eng: &Engine<Ports>, finals: &[RunRecord]) -> Result<u8> {
    let views: Vec<RunView> = finals.iter().map(|r| eng.view(r)).collect();
    let sims: Vec<Option<drctl_sim::SimStatus>> =
        finals.iter().map(|r| target::load_sim(store, r, None).ok().and_then(|t| t.sim).map(|s| s.status())).collect();
    output::results(out, &views, &sims);
    Ok(finals.iter().map(|r| exit_for(r.status)).max().unwrap_or(0))
}

fn cmd_sim_status(store: &Path, out: Output, run: Option<String>) -> Result<u8> {
    let views = match request(store, ControlRequest::Status { run: None })? {
        ControlResponse::Runs(r) => r,
        other => bail!("unexpected answer: {other:?}"),
    };
    let sim_runs: Vec<&RunView> = views.iter().filter(|v| v.labels.get(target::LABEL_TARGET).map(String::as_str) == Some("sim")).collect();
    let view = match &run {
        Some(id) => match (sim_runs.iter().find(|v| &v.id == id), views.iter().any(|v| &v.id == id)) {
            (Some(v), _) => v,
            (None, true) => bail!("run {id} acts on a real cluster, not a simulated one: see `drctl status {id}`"),
            (None, false) => bail!("no run {id} in {} (see `drctl status`)", store.display()),
        },
        None => sim_runs
            .iter()
            .max_by_key(|v| v.id.parse::<u64>().unwrap_or(0))
            .ok_or_else(|| anyhow!("no simulated runs in {}", store.display()))?,
    };
    let name = view.labels.get(target::LABEL_WORLD).ok_or_else(|| anyhow!("run {} has no simulated world", view.id))?;
    // Read-only: the world file is replaced whole on every change, so a read sees a whole world.
    let sim = drctl_sim::Sim::load(&target::sim_dir(store).join(name))?;
    let st = sim.status();
    output::sim_status(out, &view.id, &st);
    Ok(if st.healthy { 0 } else { EXIT_ERROR })
}

fn cmd_sim_new(store: &Path, scenario: &str, name: Option<String>, seed: u64) -> Result<u8> {
    let name = practice::create(store, scenario, name.as_deref(), seed)?;
    println!("{name}");
    eprintln!(
        "drctl: simulated cluster {name} ({scenario}, seed {seed}) created; serve it with: drctl --store {} sim serve {name}",
        store.display()
    );
    Ok(0)
}

fn cmd_sim_worlds(store: &Path, out: Output) -> Result<u8> {
    let worlds = practice::list(store)?;
    output::worlds(out, &worlds);
    Ok(0)
}

fn cmd_sim_serve(store: &Path, a: ServeArgs) -> Result<u8> {
    if !(a.speed.is_finite() && a.speed > 0.0 && a.speed <= 1000.0) {
        bail!("--speed {} must be above 0 and at most 1000", a.speed);
    }
    let limit = a.for_.as_deref().map(parse_duration).transpose()?;
    practice::serve(store, &a.world, a.api_port, a.speed, limit)
}

fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>> {
    let (a, b) = s.split_once("..").ok_or_else(|| anyhow!("--seeds '{s}' must be A..B, e.g. 1..2000"))?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| anyhow!("--seeds '{s}': '{a}' is not a number"))?,
        b.trim().parse().map_err(|_| anyhow!("--seeds '{s}': '{b}' is not a number"))?,
    );
    if a >= b {
        bail!("--seeds '{s}' is empty (B is excluded)");
    }
    Ok(a..b)
}

// The sweep's own clock is virtual; the wall clock here only measures simulations per second.
#[allow(clippy::disallowed_methods)]
fn cmd_sim_chaos(out: Output, a: ChaosArgs) -> Result<u8> {
    use drctl_sim::chaos::{sweep, SweepOptions};
    use drctl_sim::faults::{FaultKind, FaultSchedule};
    let mut o = SweepOptions::new(&a.procedure, parse_seeds(&a.seeds)?);
    if let Some(f) = &a.faults {
        o.faults = Some(FaultSchedule::parse(f).map_err(|e| anyhow!("--faults: {e}"))?);
    }
    o.allowed = FaultKind::parse_list(&a.allow).map_err(|e| anyhow!("--allow: {e}"))?;
    o.crash_seeds = a.crash_seeds;
    o.shrink = !a.no_shrink;
    o.threads = a.jobs.max(1);
    let t0 = std::time::Instant::now();
    o.stopwatch = Some(Arc::new(move || t0.elapsed()));
    let r = sweep(&o).map_err(|e| anyhow!(e))?;
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Output::Table => println!("{r}"),
    }
    Ok(if r.passed { 0 } else { EXIT_ERROR })
}

/// Commands that drive runs (or serve a world) for as long as they take.
fn drives_runs(c: &Command) -> bool {
    matches!(
        c,
        Command::Run(_)
            | Command::Resume { .. }
            | Command::Abort { .. }
            | Command::Sim(SimCommand::Serve(_) | SimCommand::HostShell { .. })
    )
}

/// A sweep runs thousands of simulated procedures: their warnings are the point of the report,
/// not of the log.
fn default_log_level(c: &Command) -> &'static str {
    match c {
        Command::Sim(SimCommand::Chaos(_)) => "error",
        _ => "warn",
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// Any text, or a number of any size with any unit, gives a duration or an error, never a
        /// panic.
        #[test]
        fn durations_never_panic(any in ".{0,40}", n in proptest::num::u64::ANY, unit in "[smhdx]?") {
            let _ = super::parse_duration(&any);
            let _ = super::parse_duration(&format!("{n}{unit}"));
        }

        /// Every parser of command-line text — durations, outage windows, seed ranges, settings,
        /// fault schedules and kinds, host inventories, etcd endpoints, VIPs, times — answers any
        /// text, or text shaped like its input, with a value or an error, never a panic.
        #[test]
        fn command_line_parsers_never_panic(
            any in ".{0,60}",
            shaped in "[a-z0-9=@,.:/\\[\\]+x-]{0,48}",
            n in proptest::num::u64::ANY,
        ) {
            for text in [any.as_str(), shaped.as_str(), &format!("{n}s+{n}h"), &format!("{n}..{n}"), &format!("https://h:{n}")] {
                let _ = super::parse_duration(text);
                let _ = super::parse_outage(text);
                let _ = super::parse_seeds(text);
                let _ = super::parse_setting(text);
                let _ = drctl_sim::faults::FaultSchedule::parse(text);
                let _ = drctl_sim::faults::FaultKind::parse_list(text);
                let _ = crate::real::parse_inventory(text);
                let _ = crate::inspect::check_endpoint(text);
                let _ = drctl_runtime::Timestamp::parse_rfc3339(text);
                let restore = serde_json::json!({"backup": "nightly", "api_vip": text, "ingress_vip": text, "recovery_host": text});
                let _ = super::check_params("restore-cluster-state", &restore);
            }
        }
    }

    /// Every command and argument says what it is for in `--help` (the man page and the
    /// completions are generated from the same definitions).
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.is_hide_set() {
                return;
            }
            if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
                missing.push(path.clone());
            }
            for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut missing = vec![];
        walk(&<super::Cli as clap::CommandFactory>::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(super::parse_duration("3650d").unwrap().as_secs(), 3650 * 86_400);
        for bad in ["3651d", "300000000000000d", "18446744073709551615s", "5", "d", "5w", "-5s"] {
            assert!(super::parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
