//! `drctl report RUN`: what happened in a run and when, for the incident review. Built from the
//! run's durable record and history alone (so a run that crashed and resumed, or lasted ten
//! hours, reads as one story): one self-contained HTML page (inline CSS and SVG, no script, no
//! network), or the same data as JSON.
//!
//! Thousands of retries and re-checks are aggregated into the state visit they happened in: the
//! page grows with the number of transitions, not with the number of attempts.

use drctl_runtime::clock::Timestamp;
use drctl_runtime::control::RunView;
use drctl_runtime::record::{HistoryEvent, Outcome};
use serde::Serialize;
use std::fmt::Write as _;

/// How deep child runs are nested in one report (a child's child's child).
pub const MAX_DEPTH: usize = 3;

/// One run's report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub id: String,
    pub procedure: String,
    pub version: u32,
    pub status: String,
    /// Why it ended (its summary, halt reason or failure), when it did.
    pub outcome: Option<String>,
    pub started: Timestamp,
    /// The last thing recorded (the end, for an ended run).
    pub last: Timestamp,
    pub duration_secs: u64,
    /// What it ran against, by reference (`sim: quorum-loss`, `kubeconfig context …`).
    pub target: Vec<String>,
    /// The public documentation it follows.
    pub docs: Vec<String>,
    /// Each visit of a state, in order.
    pub segments: Vec<Segment>,
    pub gates: Vec<GateRow>,
    /// Moments worth a line of their own: resumes (a new process after a crash or a restart),
    /// aborts, corrections, halts, child runs.
    pub marks: Vec<Mark>,
    /// Windows in which the cluster's API did not answer (waits and retries saying so): the
    /// phases in which only SSH reached the cluster.
    pub api_down: Vec<Window>,
    pub children: Vec<RunReport>,
}

/// One visit of a state: from entering it to leaving it.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub state: String,
    pub from: Timestamp,
    pub until: Timestamp,
    /// How it was left: the next state, or the run's end (`Succeeded`, `Halted`, …), or
    /// `running` when it has not been left yet.
    pub left_by: String,
    /// Condition re-checks while waiting in it, and how long the wait lasted.
    pub waits: u32,
    pub waited_secs: u64,
    /// What it waited for (the last description).
    pub waiting_for: Option<String>,
    /// Transient failures retried in it, and the last one.
    pub retries: u32,
    pub last_error: Option<String>,
    /// A gate it stopped at.
    pub gate: Option<String>,
    /// The history event that opened the visit, and the one that closed it (`None`: open).
    pub opened_seq: u64,
    pub closed_seq: Option<u64>,
    /// How it was left: `Transition`, `Succeeded`, `Halted`, `Failed`, `Aborted`, `Corrected`,
    /// or `running`.
    pub outcome: String,
    /// What the closing event said, for a halt or a failure.
    pub reason: Option<String>,
    /// When the wait inside it began.
    pub wait_began: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateRow {
    pub gate: String,
    pub decision: String,
    pub by: String,
    pub at: Timestamp,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub at: Timestamp,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from: Timestamp,
    pub until: Timestamp,
    /// The first thing that said so.
    pub evidence: String,
}

/// What a wait or retry says when the API does not answer.
const API_DOWN: [&str; 9] = [
    "the api",
    "api server",
    "connection refused",
    "the connection to the server",
    "unable to connect to the server",
    "etcdserver",
    "no leader",
    "currently unable to handle the request",
    "kube-apiserver",
];
/// Gaps shorter than this between two signs of an API outage are the same outage.
const API_DOWN_GAP_MS: u64 = 5 * 60 * 1000;

fn says_api_down(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    API_DOWN.iter().any(|p| d.contains(p))
}

impl RunReport {
    /// The report of `run` with its history; children are added by the caller.
    pub fn of(run: &RunView, history: &[HistoryEvent], docs: Vec<String>) -> RunReport {
        let started = run.created_at;
        let last = history.last().map_or(run.updated_at, |e| e.at).max(run.updated_at);
        let segments = segments(history, last);
        let marks = history.iter().filter_map(mark).collect();
        let api_down = api_down(history);
        let gates = run
            .gates
            .iter()
            .map(|(g, d)| GateRow {
                gate: g.clone(),
                decision: format!("{:?}", d.decision),
                by: d.by.clone(),
                at: d.at,
                comment: d.comment.clone(),
            })
            .collect();
        RunReport {
            id: run.id.clone(),
            procedure: run.procedure.clone(),
            version: run.version,
            status: run.status.as_str().to_string(),
            outcome: run.outcome.clone(),
            started,
            last,
            duration_secs: last.since(started).as_secs(),
            target: target(&run.labels),
            docs,
            segments,
            gates,
            marks,
            api_down,
            children: vec![],
        }
    }
}

/// The target by reference: the labels a run records (never file contents).
fn target(labels: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    use crate::{real, target};
    let show = [
        target::LABEL_TARGET,
        target::LABEL_SCENARIO,
        target::LABEL_WORLD,
        real::LABEL_SERVER,
        real::LABEL_CONTEXT,
        real::LABEL_KUBECONFIG,
        real::LABEL_HOSTS,
        real::LABEL_BACKUP_ROOT,
    ];
    labels.iter().filter(|(k, _)| show.contains(&k.as_str())).map(|(k, v)| format!("{k}: {v}")).collect()
}

/// Each visit of a state, in order (shared with the telemetry exporter).
pub fn segments(history: &[HistoryEvent], last: Timestamp) -> Vec<Segment> {
    let open = |state: &str, e: &HistoryEvent| Segment {
        state: state.to_string(),
        from: e.at,
        until: e.at,
        left_by: "running".into(),
        waits: 0,
        waited_secs: 0,
        waiting_for: None,
        retries: 0,
        last_error: None,
        gate: None,
        opened_seq: e.seq,
        closed_seq: None,
        outcome: "running".into(),
        reason: None,
        wait_began: None,
    };
    let close = |mut s: Segment, e: &HistoryEvent, left_by: String| {
        s.until = e.at;
        s.left_by = left_by;
        s.closed_seq = Some(e.seq);
        s.outcome = format!("{:?}", e.outcome);
        if matches!(e.outcome, Outcome::Halted | Outcome::Failed) {
            s.reason = e.detail.clone();
        }
        s
    };
    let mut out: Vec<Segment> = vec![];
    let mut cur: Option<Segment> = None;
    for e in history {
        let detail = e.detail.clone().unwrap_or_default();
        match e.outcome {
            Outcome::Created | Outcome::Corrected | Outcome::Transition => {
                if let Some(s) = cur.take() {
                    let left_by = if e.outcome == Outcome::Transition { e.to.clone() } else { format!("{:?}", e.outcome) };
                    out.push(close(s, e, left_by));
                }
                cur = Some(open(&e.to, e));
            }
            Outcome::Waiting => {
                if let Some(s) = cur.as_mut() {
                    s.waits += 1;
                    let began = *s.wait_began.get_or_insert(e.at);
                    s.waited_secs = e.at.since(began).as_secs();
                    s.waiting_for = Some(detail);
                }
            }
            Outcome::Retry => {
                if let Some(s) = cur.as_mut() {
                    s.retries += 1;
                    s.last_error = Some(detail);
                }
            }
            Outcome::Gate => {
                if let Some(s) = cur.as_mut() {
                    s.gate = Some(detail);
                }
            }
            Outcome::Succeeded | Outcome::Halted | Outcome::Failed | Outcome::Aborted => {
                // A halted run may be resumed: the resume opens its state again.
                if let Some(s) = cur.take() {
                    out.push(close(s, e, format!("{:?}", e.outcome)));
                }
            }
            Outcome::Resumed => {
                if cur.is_none() {
                    cur = Some(open(&e.to, e));
                }
            }
            Outcome::Approved | Outcome::Rejected | Outcome::AbortRequested | Outcome::ChildStarted | Outcome::ChildEnded => {}
        }
    }
    if let Some(mut s) = cur.take() {
        s.until = last;
        out.push(s);
    }
    out
}

fn mark(e: &HistoryEvent) -> Option<Mark> {
    let kind = match e.outcome {
        Outcome::Resumed => "resumed",
        Outcome::AbortRequested => "abort requested",
        Outcome::Corrected => "corrected",
        Outcome::Halted => "halted",
        Outcome::Failed => "failed",
        Outcome::Aborted => "aborted",
        Outcome::Succeeded => "succeeded",
        Outcome::ChildStarted => "child started",
        Outcome::ChildEnded => "child ended",
        Outcome::Gate => "gate",
        Outcome::Approved => "approved",
        Outcome::Rejected => "rejected",
        _ => return None,
    };
    Some(Mark { at: e.at, kind: kind.into(), detail: e.detail.clone().unwrap_or_default() })
}

fn api_down(history: &[HistoryEvent]) -> Vec<Window> {
    let mut out: Vec<Window> = vec![];
    for e in history.iter().filter(|e| matches!(e.outcome, Outcome::Waiting | Outcome::Retry)) {
        let Some(detail) = e.detail.as_deref().filter(|d| says_api_down(d)) else { continue };
        match out.last_mut() {
            Some(w) if e.at.millis() <= w.until.millis() + API_DOWN_GAP_MS => w.until = e.at,
            _ => out.push(Window { from: e.at, until: e.at, evidence: detail.to_string() }),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1h02m`, `3m05s`, `12s`.
fn human(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The state's kind, for grouping visits into rows: `AddMember(master-3)` stays itself, but
/// `Restoring(...)` style names with long arguments are cut.
fn row_name(state: &str) -> String {
    if state.len() <= 48 {
        state.to_string()
    } else {
        format!("{}…", &state[..state.char_indices().take(47).last().map_or(0, |(i, c)| i + c.len_utf8())])
    }
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600;font-size:13px}\
.succeeded{background:#2e7d32}.halted{background:#b26a00}.failed{background:#c62828}.aborted{background:#6d4c41}\
.running,.waiting,.gate{background:#1565c0}\
table{border-collapse:collapse;font-size:13px;margin-top:6px}td,th{border:1px solid #d5d9e0;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f1f3f6}.meta{font-size:13px;color:#4a5264}.child{margin-left:28px;border-left:3px solid #90a4ae;padding-left:16px}\
svg text{font-size:11px;fill:#1d2330}.legend span{display:inline-block;margin-right:14px;font-size:12px}\
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}";

/// The whole page.
pub fn html(r: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>drctl run {} — {}</title><style>{CSS}</style></head><body>",
        esc(&r.id),
        esc(&r.procedure)
    );
    section(&mut out, r, 0);
    out.push_str("</body></html>\n");
    out
}

fn section(out: &mut String, r: &RunReport, depth: usize) {
    let _ = writeln!(
        out,
        "<section class=\"run{}\" id=\"run-{}\"><h1>Run {} — {} v{} <span class=\"badge {}\">{}</span></h1>",
        if depth > 0 { " child" } else { "" },
        esc(&r.id),
        esc(&r.id),
        esc(&r.procedure),
        r.version,
        esc(&r.status),
        esc(&r.status)
    );
    let _ =
        writeln!(out, "<div class=\"meta\">{} → {} ({}) · {}</div>", r.started, r.last, human(r.duration_secs), esc(&r.target.join(" · ")));
    if let Some(o) = &r.outcome {
        let _ = writeln!(out, "<p class=\"outcome\"><b>Outcome:</b> {}</p>", esc(o));
    }
    if !r.docs.is_empty() {
        let _ = writeln!(out, "<p class=\"meta\">Follows: {}</p>", esc(&r.docs.join("; ")));
    }
    timeline(out, r);
    segments_table(out, r);
    gates_table(out, r);
    marks_table(out, r);
    for c in &r.children {
        section(out, c, depth + 1);
    }
    out.push_str("</section>\n");
}

/// The timeline: one row per state, each visit a bar; waits hatched in, API-down windows as a
/// band behind, resumes and gates as lines.
fn timeline(out: &mut String, r: &RunReport) {
    const LABEL: f64 = 230.0;
    const WIDTH: f64 = 760.0;
    const ROW: f64 = 18.0;
    let t0 = r.started.millis() as f64;
    let span = (r.last.millis() as f64 - t0).max(1000.0);
    let x = |t: Timestamp| LABEL + (t.millis() as f64 - t0) / span * WIDTH;
    let mut rows: Vec<String> = vec![];
    for s in &r.segments {
        let name = row_name(&s.state);
        if !rows.contains(&name) {
            rows.push(name);
        }
    }
    let height = 24.0 + ROW * rows.len() as f64;
    let _ = writeln!(out, "<h2>Timeline</h2><div class=\"legend\"><span><i class=\"sw\" style=\"background:#5c8fd6\"></i>in state</span><span><i class=\"sw\" style=\"background:#f0b429\"></i>waiting</span><span><i class=\"sw\" style=\"background:#e57373\"></i>retries</span><span><i class=\"sw\" style=\"background:#ffcdd2\"></i>API not answering (SSH only)</span><span><i class=\"sw\" style=\"background:#6a1b9a\"></i>resumed by a new process</span><span><i class=\"sw\" style=\"background:#1565c0\"></i>gate</span></div>");
    let _ = writeln!(
        out,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of run {}\">",
        LABEL + WIDTH + 10.0,
        esc(&r.id)
    );
    for w in &r.api_down {
        let (a, b) = (x(w.from), x(w.until).max(x(w.from) + 2.0));
        let _ = writeln!(
            out,
            "<rect class=\"api-down\" x=\"{a:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height}\" fill=\"#ffcdd2\"><title>API not answering {} → {}: {}</title></rect>",
            b - a,
            w.from,
            w.until,
            esc(&w.evidence)
        );
    }
    for (i, name) in rows.iter().enumerate() {
        let y = 20.0 + ROW * i as f64;
        let _ = writeln!(out, "<text x=\"0\" y=\"{:.1}\">{}</text>", y + 12.0, esc(name));
    }
    for s in &r.segments {
        let i = rows.iter().position(|n| *n == row_name(&s.state)).unwrap_or(0);
        let y = 20.0 + ROW * i as f64;
        let (a, b) = (x(s.from), x(s.until).max(x(s.from) + 2.0));
        let fill = if s.retries > 0 {
            "#e57373"
        } else if s.waits > 0 {
            "#f0b429"
        } else {
            "#5c8fd6"
        };
        let mut title = format!("{} {} → {} ({}), left by {}", s.state, s.from, s.until, human(s.until.since(s.from).as_secs()), s.left_by);
        if s.waits > 0 {
            let _ = write!(title, "; {} re-checks over {}", s.waits, human(s.waited_secs));
        }
        if s.retries > 0 {
            let _ = write!(title, "; {} retries, last: {}", s.retries, s.last_error.as_deref().unwrap_or(""));
        }
        let _ = writeln!(
            out,
            "<rect class=\"segment\" data-state=\"{}\" x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
            esc(&s.state),
            b - a,
            ROW - 4.0,
            esc(&title)
        );
    }
    for m in r.marks.iter().filter(|m| m.kind == "resumed" || m.kind == "gate") {
        let color = if m.kind == "resumed" { "#6a1b9a" } else { "#1565c0" };
        let a = x(m.at);
        let _ = writeln!(
            out,
            "<line class=\"mark {}\" x1=\"{a:.1}\" x2=\"{a:.1}\" y1=\"14\" y2=\"{height}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"><title>{} at {}: {}</title></line>",
            esc(&m.kind),
            esc(&m.kind),
            m.at,
            esc(&m.detail)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{LABEL}\" y=\"11\">{}</text><text x=\"{:.1}\" y=\"11\" text-anchor=\"end\">{}</text>",
        r.started,
        LABEL + WIDTH,
        r.last
    );
    out.push_str("</svg>\n");
}

fn segments_table(out: &mut String, r: &RunReport) {
    out.push_str("<h2>States</h2><table class=\"states\"><tr><th>state</th><th>entered</th><th>for</th><th>left by</th><th>waits</th><th>retries</th><th>last error / waiting for</th></tr>\n");
    for s in &r.segments {
        let note = s.last_error.as_deref().or(s.waiting_for.as_deref()).or(s.gate.as_deref()).unwrap_or("");
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.state),
            s.from,
            human(s.until.since(s.from).as_secs()),
            esc(&s.left_by),
            if s.waits > 0 { format!("{} over {}", s.waits, human(s.waited_secs)) } else { String::new() },
            if s.retries > 0 { s.retries.to_string() } else { String::new() },
            esc(note)
        );
    }
    out.push_str("</table>\n");
}

fn gates_table(out: &mut String, r: &RunReport) {
    if r.gates.is_empty() {
        return;
    }
    out.push_str("<h2>Gates</h2><table class=\"gates\"><tr><th>gate</th><th>decision</th><th>by</th><th>when</th><th>comment</th></tr>\n");
    for g in &r.gates {
        let _ = writeln!(
            out,
            "<tr class=\"gate\" data-gate=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.gate),
            esc(&g.gate),
            esc(&g.decision),
            esc(&g.by),
            g.at,
            esc(g.comment.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>\n");
}

fn marks_table(out: &mut String, r: &RunReport) {
    let shown: Vec<&Mark> = r.marks.iter().filter(|m| !matches!(m.kind.as_str(), "gate" | "approved" | "rejected")).collect();
    if shown.is_empty() && r.api_down.is_empty() {
        return;
    }
    out.push_str("<h2>Events</h2><table class=\"events\"><tr><th>when</th><th>what</th><th>detail</th></tr>\n");
    let mut rows: Vec<(Timestamp, String, String)> = shown.iter().map(|m| (m.at, m.kind.clone(), m.detail.clone())).collect();
    rows.extend(r.api_down.iter().map(|w| (w.from, format!("API not answering until {}", w.until), w.evidence.clone())));
    rows.sort_by_key(|(t, _, _)| *t);
    for (t, k, d) in rows {
        let _ = writeln!(out, "<tr><td>{t}</td><td>{}</td><td>{}</td></tr>", esc(&k), esc(&d));
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, at: u64, from: &str, to: &str, outcome: Outcome, detail: &str) -> HistoryEvent {
        HistoryEvent {
            seq,
            at: Timestamp(at * 1000),
            from: from.into(),
            to: to.into(),
            attempt: 0,
            outcome,
            detail: (!detail.is_empty()).then(|| detail.into()),
        }
    }

    #[test]
    fn thousands_of_retries_are_one_segment_and_an_outage_one_window() {
        let mut h = vec![ev(0, 0, "", "A", Outcome::Created, ""), ev(1, 10, "A", "B", Outcome::Transition, "")];
        for i in 0..5000 {
            h.push(ev(2 + i, 11 + i, "B", "B", Outcome::Retry, "list nodes: connection refused"));
        }
        h.push(ev(6000, 6000, "B", "C", Outcome::Transition, ""));
        h.push(ev(6001, 6001, "C", "C", Outcome::Resumed, "pid 42"));
        h.push(ev(6002, 6100, "C", "C", Outcome::Succeeded, "done"));
        let s = segments(&h, Timestamp(6_100_000));
        assert_eq!(s.iter().map(|s| s.state.as_str()).collect::<Vec<_>>(), ["A", "B", "C"]);
        assert_eq!(s[1].retries, 5000);
        assert_eq!(s[2].left_by, "Succeeded");
        let w = api_down(&h);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].from, w[0].until), (Timestamp(11_000), Timestamp(5_010_000)));
        assert!(h.iter().filter_map(mark).any(|m| m.kind == "resumed"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<script>a & \"b\"</script>"), "&lt;script&gt;a &amp; &quot;b&quot;&lt;/script&gt;");
        assert_eq!(human(3725), "1h02m");
        assert_eq!(human(65), "1m05s");
    }
}
