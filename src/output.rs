//! What drctl prints: data to stdout (tables or JSON), progress and diagnostics to stderr.

use clap::ValueEnum;
use drctl_runtime::clock::{fmt_duration, Timestamp};
use drctl_runtime::control::RunView;
use drctl_runtime::{HistoryEvent, Registry, RunRecord, RunStatus};
use drctl_sim::SimStatus;
use drctl_workflows::ports::Ports;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

fn json<T: serde::Serialize>(v: &T) {
    print!("{}", json_text(v));
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).expect("serialisable"))
}

/// `writeln!` into a String (which cannot fail).
macro_rules! wln {
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

pub fn procedures(out: Output, reg: &Registry<Ports>) {
    let catalog = drctl_workflows::catalog::CATALOG;
    let version = |name: &str| reg.get(name).map_or(0, |p| p.version());
    match out {
        Output::Json => {
            let rows: Vec<serde_json::Value> = catalog
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "name": r.name,
                        "version": version(r.name),
                        "family": r.family,
                        "summary": r.summary,
                        "reference": r.doc().to_string(),
                        "docs": r.docs,
                        "capabilities": r.capabilities,
                        "gates": r.gates,
                        "scenarios": r.scenarios,
                    })
                })
                .collect();
            json(&rows)
        }
        Output::Table => {
            println!("{:<24} {:>3}  {:<10}  SUMMARY / REFERENCE", "PROCEDURE", "VER", "FAMILY");
            for r in catalog {
                println!("{:<24} {:>3}  {:<10}  {}", r.name, version(r.name), r.family.as_str(), r.summary);
                println!("{:<41}  follows {}", "", r.doc());
            }
        }
    }
}

pub fn scenarios(out: Output) {
    let s = drctl_sim::scenario::SCENARIOS;
    match out {
        Output::Json => json(&s.iter().map(|s| serde_json::json!({"name": s.name, "summary": s.summary})).collect::<Vec<_>>()),
        Output::Table => {
            for s in s {
                println!("{:<24} {}", s.name, s.summary);
            }
        }
    }
}

/// The public document procedure `name` follows, as product text cites it.
fn reference(name: &str) -> Option<String> {
    drctl_workflows::catalog::row(name).map(|r| r.doc().to_string())
}

/// Whether a run should be moving yet no drctl process drives it (its process was killed, or
/// it was interrupted): it moves again only at `drctl resume`.
pub fn undriven(v: &RunView) -> bool {
    !v.status.is_terminal() && v.driver.is_none()
}

/// What a run is doing, in one line (multi-line prompts and errors are joined with ` / `).
fn doing(v: &RunView, store_flag: &str) -> String {
    let d = doing_text(v, store_flag);
    let d = d.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ");
    match undriven(v) {
        true => format!("NOT RUNNING: no drctl process drives it; continue with `drctl{store_flag} resume {}`. Was: {d}", v.id),
        false => d,
    }
}

fn doing_text(v: &RunView, store_flag: &str) -> String {
    match v.status {
        RunStatus::Waiting => match &v.wait {
            Some(w) => format!("waiting for {} since {} (next check {})", w.waiting_for, w.since, w.next_check_at),
            None => "waiting".into(),
        },
        RunStatus::Retrying => match &v.retry {
            Some(r) => format!("retrying since {} (next try {}): {}", r.since, r.next_try_at, r.last_error),
            None => "retrying".into(),
        },
        RunStatus::AwaitingApproval => match &v.pending_gate {
            Some(g) => {
                format!("awaiting approval of gate '{}' since {}: {} (drctl{store_flag} approve {})", g.gate, g.since, g.prompt, v.id)
            }
            None => "awaiting approval".into(),
        },
        RunStatus::AwaitingChild => match v.children.iter().find(|(_, c)| c.ended.is_none()) {
            Some((key, c)) => format!("waiting for child run {} ({}, {key})", c.run, c.procedure),
            None => "waiting for a child run".into(),
        },
        RunStatus::Halted => {
            let outcome = v.outcome.clone().unwrap_or_default();
            format!(
                "{outcome} (fix, then `drctl{store_flag} resume {id}`; a wrong setting: `drctl{store_flag} resume {id} --set KEY=VALUE`; \
                 or close it: `drctl{store_flag} abort {id}`)",
                id = v.id
            )
        }
        _ => v.outcome.clone().unwrap_or_default(),
    }
}

/// The table (or JSON) of runs `drctl status` prints.
pub fn runs_text(out: Output, runs: &[RunView], store_flag: &str) -> String {
    let mut o = String::new();
    match out {
        Output::Json => o = json_text(&runs),
        Output::Table => {
            wln!(o, "{:<7} {:<28} {:<18} {:<36} DETAIL", "RUN", "PROCEDURE", "STATUS", "STATE");
            // Children are listed under their parent, indented: the tree of a run at a glance.
            fn row(o: &mut String, all: &[RunView], v: &RunView, depth: usize, store_flag: &str) {
                let indent = "  ".repeat(depth);
                let (id, procedure) = (format!("{indent}{}", v.id), format!("{indent}{}", v.procedure));
                wln!(o, "{id:<7} {procedure:<28} {:<18} {:<36} {}", v.status.as_str(), v.state_name, doing(v, store_flag));
                for c in v.children.values() {
                    if let Some(child) = all.iter().find(|r| r.id == c.run) {
                        row(o, all, child, depth + 1, store_flag);
                    }
                }
            }
            let known = |id: &Option<String>| id.as_ref().is_some_and(|p| runs.iter().any(|r| &r.id == p));
            for v in runs.iter().filter(|v| !known(&v.parent)) {
                row(&mut o, runs, v, 0, store_flag);
            }
        }
    }
    o
}

pub fn run_detail(out: Output, v: &RunView, store_flag: &str) {
    print!("{}", run_detail_text(out, v, store_flag));
}

/// [`run_detail`], as text.
pub fn run_detail_text(out: Output, v: &RunView, store_flag: &str) -> String {
    let mut o = String::new();
    match out {
        Output::Json => o = json_text(v),
        Output::Table => {
            wln!(o, "run:        {}", v.id);
            wln!(o, "procedure:  {} v{}", v.procedure, v.version);
            if let Some(doc) = reference(&v.procedure) {
                wln!(o, "follows:    {doc}");
            }
            wln!(o, "status:     {}", v.status.as_str());
            wln!(o, "state:      {}", v.state_name);
            wln!(o, "started:    {}", v.created_at);
            wln!(o, "updated:    {}", v.updated_at);
            match (v.driver, undriven(v)) {
                (Some(pid), _) => wln!(o, "driven by:  drctl process {pid}"),
                (None, true) => {
                    wln!(o, "driven by:  NOBODY: no drctl process drives it; continue with `drctl{store_flag} resume {}`", v.id)
                }
                (None, false) => {}
            }
            let d = doing_text(v, store_flag);
            if !d.is_empty() {
                wln!(o, "detail:     {}", d.replace('\n', "\n            "));
            }
            for (gate, g) in &v.gates {
                let comment = g.comment.as_deref().map(|c| format!(": \"{c}\"")).unwrap_or_default();
                wln!(o, "gate:       {gate}: {} by {} at {}{comment}", g.decision.as_str(), g.by, g.at);
            }
            if let Some(a) = &v.abort {
                wln!(o, "abort:      requested by {} at {}", a.by, a.at);
            }
            if let Some(p) = &v.parent {
                wln!(o, "parent:     run {p} (drives this run)");
            }
            for (key, c) in &v.children {
                let how = c.ended.as_ref().map_or("running".to_string(), |e| format!("{}: {}", e.status.as_str(), e.outcome));
                wln!(o, "child:      {key}: run {} ({}) {how}", c.run, c.procedure);
            }
            if let Some(n) = &v.note {
                wln!(o, "note:       {n}");
            }
            for (k, val) in &v.labels {
                wln!(o, "label:      {k}={val}");
            }
        }
    }
    o
}

/// The answer to `approve`/`reject`: the decision just recorded and where the run is now.
pub fn decision(out: Output, v: &RunView) {
    if out == Output::Json {
        return json(v);
    }
    match v.gates.iter().max_by_key(|(_, g)| g.at) {
        Some((gate, g)) => {
            let comment = g.comment.as_deref().map(|c| format!(" (\"{c}\")")).unwrap_or_default();
            println!("run {}: gate '{gate}' {} by {} at {}{comment}", v.id, g.decision.as_str(), g.by, g.at);
        }
        None => println!("run {}: no gate decided", v.id),
    }
    println!("run {}: now {} at {}", v.id, v.status.as_str(), v.state_name);
}

pub fn history(out: Output, h: &[HistoryEvent]) {
    match out {
        Output::Json => json(&h),
        Output::Table => {
            println!("{:>4} {:<24} {:<15} {:>3}  TRANSITION / DETAIL", "SEQ", "AT", "OUTCOME", "TRY");
            for e in h {
                let transition = if e.from == e.to || e.from.is_empty() { e.to.clone() } else { format!("{} -> {}", e.from, e.to) };
                let detail = e.detail.as_deref().map(|d| format!("  [{d}]")).unwrap_or_default();
                println!("{:>4} {:<24} {:<15} {:>3}  {transition}{detail}", e.seq, e.at.to_string(), format!("{:?}", e.outcome), e.attempt);
            }
        }
    }
}

pub fn sim_status(out: Output, run: &str, st: &SimStatus) {
    match out {
        Output::Json => json(st),
        Output::Table => {
            println!("simulated cluster of run {run} ({} seed {}) at {}", st.scenario, st.seed, st.time);
            println!("healthy:        {}", st.healthy);
            for p in &st.problems {
                println!("  problem:      {p}");
            }
            println!("api available:  {}", st.api_available);
            println!(
                "etcd cluster:   {} (quorum: {}; running cluster ids: {})",
                st.etcd_cluster_id,
                st.etcd_quorum,
                st.running_cluster_ids.join(", ")
            );
            for m in &st.etcd_members {
                println!("  member:       {} on {} ({})", m.id, m.host, if m.started { "started" } else { "not started" });
            }
            for n in &st.nodes {
                println!("  node:         {} {}", n.name, if n.ready { "Ready" } else { "NotReady" });
            }
            for o in &st.operators {
                println!("  operator:     {:<24} revision {:<3} {} ({})", o.operator, o.latest_revision, o.reason, o.message);
            }
            println!("quorum guard:   {}", if st.quorum_guard { "on" } else { "off" });
            println!("ovn healthy:    {}", st.ovn_healthy);
            println!("pending CSRs:   {}", st.pending_csrs);
            match st.restored_from_revision {
                Some(r) => println!("data:           revision {} (restored from a snapshot at revision {r})", st.data_revision),
                None => println!("data:           revision {}", st.data_revision),
            }
            for b in &st.bare_metal_hosts {
                let error = b.error.as_deref().map_or(String::new(), |e| format!("; error: {e}"));
                let consumer = b.consumer.as_deref().unwrap_or("-");
                println!(
                    "baremetalhost:  {} {} (consumer {consumer}; bmc {}; boot MAC {}{error})",
                    b.name, b.state, b.bmc_address, b.boot_mac_address
                );
            }
            for sp in &st.spare_servers {
                println!("spare server:   bmc {} boot MAC {}", sp.bmc_address, sp.boot_mac_address);
            }
            for hc in &st.hosted_clusters {
                let paused = |v: &Option<String>| v.as_deref().map_or("not paused".to_string(), |v| format!("pausedUntil={v}"));
                let by = hc.paused_by.as_deref().map_or(String::new(), |b| format!(" by {b}"));
                println!(
                    "hostedcluster:  {}/{} {}{by}; ReconciliationActive {}; control plane {}",
                    hc.namespace,
                    hc.name,
                    paused(&hc.paused_until),
                    hc.reconciliation_active,
                    paused(&hc.control_plane_paused_until)
                );
                if let Some(e) = &hc.etcd {
                    let pods: Vec<String> = e
                        .info
                        .pods
                        .iter()
                        .map(|p| format!("{} {}{}", p.name, p.status, if p.ready { "" } else { " (not ready)" }))
                        .collect();
                    let members: Vec<String> =
                        e.members.iter().map(|m| format!("{} {}{}", m.name, m.id, if m.healthy { "" } else { " unhealthy" })).collect();
                    println!(
                        "  etcd:         {} ({} of {} ready), EtcdAvailable {}; pods [{}]; members [{}]; revision {}",
                        e.info.availability_policy,
                        e.info.ready_replicas,
                        e.info.replicas,
                        e.info.etcd_available.as_deref().unwrap_or("unknown"),
                        pods.join(", "),
                        members.join(", "),
                        e.revision
                    );
                }
                let servers: Vec<String> =
                    hc.api_servers.iter().map(|d| format!("{} {}/{} ready", d.name, d.ready_replicas, d.replicas)).collect();
                println!(
                    "  control plane: Available {}; API servers [{}]{}",
                    if hc.available { "True" } else { "False" },
                    servers.join(", "),
                    match hc.snapshot_files.is_empty() {
                        true => String::new(),
                        false => format!("; snapshot files [{}]", hc.snapshot_files.join(", ")),
                    }
                );
                for pool in &hc.node_pools {
                    let np = &pool.scale;
                    let scale = match (np.replicas, np.autoscaling) {
                        (_, Some((min, max))) => format!("autoscaling {min}..{max}"),
                        (r, None) => format!("replicas {}", r.unwrap_or(0)),
                    };
                    println!(
                        "  nodepool:     {} {}; ReconciliationActive {}; {scale}, {} available; nodeDrainTimeout {}; machines [{}]",
                        np.name,
                        paused(&np.paused_until),
                        pool.reconciliation_active,
                        np.status_replicas,
                        np.drain_timeout.as_deref().unwrap_or("unset"),
                        pool.machines.join(", ")
                    );
                    if let Some(r) = np.replicas_before_zero {
                        println!("                {} replicas recorded before a scale to zero", r);
                    }
                }
            }
            for o in &st.objects {
                println!("object:         s3://{}/{} ({} bytes, sha256 {})", o.bucket, o.key, o.size, o.sha256);
            }
        }
    }
}

pub fn results(out: Output, views: &[RunView], sims: &[Option<SimStatus>]) {
    match out {
        Output::Json => {
            let rows: Vec<serde_json::Value> = views.iter().zip(sims).map(|(v, s)| serde_json::json!({"run": v, "sim": s})).collect();
            json(&rows);
        }
        Output::Table => {
            for (v, s) in views.iter().zip(sims) {
                println!("run {} ({}): {} at {}", v.id, v.procedure, v.status.as_str(), v.state_name);
                if let Some(o) = &v.outcome {
                    println!("  {o}");
                }
                // Where a person looks next: the public document the procedure follows.
                if matches!(v.status, RunStatus::Halted | RunStatus::Failed) {
                    if let Some(doc) = reference(&v.procedure) {
                        println!("  runbook: {doc}");
                    }
                }
                if let Some(s) = s {
                    println!(
                        "  simulated cluster: {} (api {}, etcd {} members {} started, cluster id {})",
                        if s.healthy { "healthy" } else { "NOT healthy" },
                        if s.api_available { "available" } else { "down" },
                        s.etcd_members.len(),
                        s.etcd_members.iter().filter(|m| m.started).count(),
                        s.etcd_cluster_id
                    );
                    for p in &s.problems {
                        println!("  problem: {p}");
                    }
                }
            }
        }
    }
}

/// While a run waits or retries, at least one progress line per this much of its own time.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The last progress line printed for a run.
struct Printed {
    /// What the line was about (a wait's condition, a retried step, or the whole line).
    key: String,
    /// The run's time when it was printed.
    at: Timestamp,
    /// Commits seen with this key (re-checks of a wait, tries of a step).
    checks: u32,
    /// Written in place on a terminal (no newline yet).
    in_place: bool,
}

/// Whether a commit about `key` at `now` (next check or try at `next`) gets a line: always when
/// it is about something new; while the same wait or retry goes on, whenever 30 s of the run's
/// time passed since the last line, or would pass before the next check (so no gap exceeds 30 s
/// while checks are at most 30 s apart, and "next check at" never goes stale).
fn progress_due(last: Option<&Printed>, key: &str, now: Timestamp, next: Option<Timestamp>) -> bool {
    match last {
        Some(p) if p.key == key => {
            // A second of slack absorbs the few milliseconds each check itself takes.
            let (due, slack) = (p.at.plus(PROGRESS_EVERY), std::time::Duration::from_secs(1));
            now.plus(slack) >= due || next.is_some_and(|n| n > due.plus(slack))
        }
        _ => true,
    }
}

/// A progress callback for the terminal driving a run: a line per transition; while it waits
/// or retries, a line at least every 30 s of the run's time (simulated or real) saying what,
/// since when, which check or try, and when the next comes — rewritten in place on a terminal,
/// plain lines otherwise.
///
/// At a gate it prints the question, its evidence and the exact commands that answer it from
/// another terminal (`store_flag`: ` --store PATH` when the store is not the default one).
pub fn progress_printer(run: String, store_flag: String) -> Arc<dyn Fn(&RunRecord) + Send + Sync> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let last: Mutex<Option<Printed>> = Mutex::new(None);
    Arc::new(move |r: &RunRecord| {
        crate::reporter::note_run_time(r.updated_at);
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let (key, next) = match (&r.status, &r.wait, &r.retry) {
            (RunStatus::Waiting, Some(w), _) => (format!("wait {} {}", r.state_name, w.waiting_for), Some(w.next_check_at)),
            (RunStatus::Retrying, _, Some(x)) => (format!("retry {}", r.state_name), Some(x.next_try_at)),
            _ => (format!("{} {} {}", r.state_name, r.status.as_str(), r.next_seq), None),
        };
        let checks = match last.as_ref() {
            Some(p) if p.key == key => p.checks + 1,
            _ => 1,
        };
        if !progress_due(last.as_ref(), &key, r.updated_at, next) {
            if let Some(p) = last.as_mut() {
                p.checks = checks;
            }
            return;
        }
        let line = progress_line(r, checks, &store_flag);
        let ongoing = next.is_some();
        let was_in_place = last.as_ref().is_some_and(|p| p.in_place);
        let text = format!("drctl: run {run} [{}] {line}", r.updated_at);
        match (tty && ongoing, was_in_place) {
            (true, _) => eprint!("\r\x1b[2K{text}"),
            (false, true) => eprint!("\n{text}\n"),
            (false, false) => eprintln!("{text}"),
        }
        *last = Some(Printed { key, at: r.updated_at, checks, in_place: tty && ongoing });
    })
}

fn progress_line(r: &RunRecord, checks: u32, store_flag: &str) -> String {
    match r.status {
        RunStatus::Waiting => match &r.wait {
            Some(w) => format!(
                "waiting for {} since {} ({}check {checks}), next check at {} (gives up at {}, after {})",
                w.waiting_for,
                w.since,
                so_far(r.updated_at.since(w.since)),
                w.next_check_at,
                w.deadline,
                fmt_duration(w.deadline.since(w.since))
            ),
            None => "waiting".into(),
        },
        RunStatus::Retrying => match &r.retry {
            Some(x) => format!(
                "{} unavailable since {} ({}{}), next try at {}: {}",
                r.state_name,
                x.since,
                so_far(r.updated_at.since(x.since)),
                plural(r.attempt as u64, "failed try", "failed tries"),
                x.next_try_at,
                x.last_error
            ),
            None => "retrying".into(),
        },
        RunStatus::AwaitingApproval => {
            let id = &r.id;
            let mut text = format!("awaiting approval at {}", r.state_name);
            if let Some(g) = &r.pending_gate {
                text.push_str(&format!(" (gate '{}'):\n  {}", g.gate, g.prompt));
                for e in &g.evidence {
                    text.push_str(&format!("\n  - {e}"));
                }
                text.push('\n');
            }
            text.push_str(&format!(" approve: `drctl{store_flag} approve {id}`; reject: `drctl{store_flag} reject {id}`"));
            text
        }
        s => format!("{} ({})", r.state_name, s.as_str()),
    }
}

/// `4m10s so far, ` (nothing at the start of a wait).
fn so_far(d: std::time::Duration) -> String {
    match d.as_secs() {
        0 => String::new(),
        _ => format!("{} so far, ", fmt_duration(d)),
    }
}

/// `1 node`, `3 nodes`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        _ => format!("{n} {many}"),
    }
}

/// `drctl inspect`: one section per part, each saying "not checked" when its options were absent.
pub fn inspect(out: Output, r: &crate::inspect::Report) {
    if out == Output::Json {
        json(r);
        return;
    }
    let a = &r.api;
    if !a.checked {
        println!("API:   not checked (pass --kubeconfig or --context, or set KUBECONFIG)");
    } else {
        let server = a.server.as_deref().unwrap_or("?");
        let context = a.context.as_deref().map(|c| format!(" (context {c})")).unwrap_or_default();
        match a.reachable {
            Some(true) => println!("API:   {server}{context}: answers, {}", a.version.as_deref().unwrap_or("?")),
            _ => println!("API:   {server}{context}: DOES NOT ANSWER: {}", a.error.as_deref().unwrap_or("?")),
        }
        if a.reachable == Some(true) {
            if let Some(e) = &a.error {
                println!("       nodes: {e}");
            }
            println!("       control-plane nodes: {}", a.control_plane_nodes.len());
            if !a.control_plane_nodes.is_empty() {
                println!("       {:<40} {:<9} {:<16} TAINTS", "NAME", "READY", "INTERNAL-IP");
                for n in &a.control_plane_nodes {
                    let taints = if n.taints.is_empty() { "-".to_string() } else { n.taints.join(",") };
                    println!("       {:<40} {:<9} {:<16} {taints}", n.name, if n.ready { "Ready" } else { "NotReady" }, n.internal_ip);
                }
            }
        }
    }
    if !r.ssh.checked {
        println!("SSH:   not checked (pass --hosts)");
    } else {
        println!("SSH:   {} of {} hosts answer", r.ssh.hosts.iter().filter(|h| h.reachable).count(), r.ssh.hosts.len());
        for h in &r.ssh.hosts {
            let st = if h.reachable { "answers".to_string() } else { format!("DOES NOT ANSWER: {}", h.error.as_deref().unwrap_or("?")) };
            println!("       {:<16} {:<24} node {:<32} {st}", h.name, h.address, h.node);
        }
    }
    let e = &r.etcd;
    if !e.checked {
        println!("ETCD:  not checked (pass --etcd-endpoints)");
    } else {
        println!("ETCD:  endpoints {}", e.endpoints.join(","));
        if let Some(err) = &e.error {
            println!("       member list: {err}");
        }
        let ids = match e.cluster_ids.len() {
            0 => "unknown (no member answers)".to_string(),
            1 => e.cluster_ids[0].clone(),
            n => format!("{} DIFFERENT: {}", n, e.cluster_ids.join(", ")),
        };
        println!("       cluster id: {ids}");
        if !e.members.is_empty() {
            println!("       {:<17} {:<20} {:<8} {:<7} {:<28} {:<28} HEALTH", "ID", "NAME", "ROLE", "LEADER", "PEER URLS", "CLIENT URLS");
            for m in &e.members {
                let health = match (m.healthy, m.answers) {
                    (true, _) => "healthy".to_string(),
                    (false, true) => format!("UNHEALTHY (running, but: {})", m.error.as_deref().unwrap_or("?")),
                    (false, false) => format!("UNHEALTHY: {}", m.error.as_deref().unwrap_or("?")),
                };
                println!(
                    "       {:<17} {:<20} {:<8} {:<7} {:<28} {:<28} {health}",
                    m.id,
                    if m.name.is_empty() { "(not started)" } else { m.name.as_str() },
                    if m.is_learner { "learner" } else { "voter" },
                    if m.leader { "yes" } else { "-" },
                    m.peer_urls.join(","),
                    m.client_urls.join(","),
                );
            }
        }
        let need = e.voting_members / 2 + 1;
        match e.quorum {
            Some(true) => {
                println!("       quorum: yes ({} of {} voting members healthy, {need} needed)", e.healthy_voting_members, e.voting_members)
            }
            Some(false) => {
                println!("       quorum: LOST ({} of {} voting members healthy, {need} needed)", e.healthy_voting_members, e.voting_members)
            }
            None => println!("       quorum: UNKNOWN (etcd UNREACHABLE: no endpoint answered)"),
        }
    }
    let o = &r.object_store;
    if !o.checked {
        println!("S3:    not checked (pass --object-store s3://BUCKET[/PREFIX])");
    } else {
        let endpoint = o.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
        println!("S3:    {}{endpoint}", o.location.as_deref().unwrap_or("?"));
        for c in &o.checks {
            let name = format!("{}:", c.name);
            match c.ok {
                true => println!("       {name:<12} ok: {}", c.detail),
                false => println!("       {name:<12} FAILED: {}", c.detail),
            }
        }
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    for p in &r.problems {
        println!("PROBLEM: {p}");
    }
    println!("{}", if r.ok { "OK: everything checked is fine" } else { "NOT OK" });
}

pub fn worlds(out: Output, worlds: &[crate::practice::WorldSummary]) {
    match out {
        Output::Json => json(&worlds),
        Output::Table => {
            println!("{:<24} {:<28} {:>6} {:<26} HEALTH", "NAME", "SCENARIO", "SEED", "TIME");
            for w in worlds {
                let health = if w.healthy { "healthy".to_string() } else { format!("not healthy: {}", w.problems.join("; ")) };
                println!("{:<24} {:<28} {:>6} {:<26} {health}", w.name, w.scenario, w.seed, w.time);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_wait_gets_a_line_at_least_every_30_seconds() {
        let t = |s: u64| Timestamp(1_000_000 + s * 1000);
        let printed = |at: u64| Printed { key: "wait A x".into(), at: t(at), checks: 1, in_place: false };
        // Something new is always printed.
        assert!(progress_due(None, "wait A x", t(0), Some(t(20))));
        assert!(progress_due(Some(&printed(0)), "wait B y", t(5), Some(t(25))));
        // Checks every 20 s: the one at 20 s is printed, since the next (40 s) would leave a
        // gap over 30 s; checks every 10 or 15 s (each a little late): every third or second.
        assert!(progress_due(Some(&printed(0)), "wait A x", t(20), Some(t(40))));
        assert!(!progress_due(Some(&printed(0)), "wait A x", t(10), Some(t(20))));
        assert!(!progress_due(Some(&printed(0)), "wait A x", t(20), Some(t(30))));
        assert!(progress_due(Some(&printed(0)), "wait A x", t(30), Some(t(40))));
        let late = |ms: u64| Timestamp(t(0).millis() + ms);
        assert!(!progress_due(Some(&printed(0)), "wait A x", late(15_040), Some(late(30_080))));
        assert!(progress_due(Some(&printed(0)), "wait A x", late(30_080), Some(late(45_120))));
    }

    #[test]
    fn plurals_agree_with_their_number() {
        assert_eq!(plural(1, "node", "nodes"), "1 node");
        assert_eq!(plural(0, "node", "nodes"), "0 nodes");
        assert_eq!(plural(2, "failed try", "failed tries"), "2 failed tries");
    }
}
