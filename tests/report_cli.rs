//! `drctl report RUN`: the run's story as one self-contained HTML page (opened in headless
//! Chromium) or JSON, built from its durable history: states as bars, waits and retries
//! aggregated, the API-down window, gates with who/when, resumes after a kill, child runs.
// A real process killed in real time, and a real browser.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// The Chromium the tests need (Debian package `chromium`, installed by
/// scripts/install-test-deps.sh). Missing, the test fails: it is never skipped.
fn chromium() -> Command {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
    let bin = bin.expect("chromium is not installed: run scripts/install-test-deps.sh (Debian package `chromium`)");
    let mut c = Command::new(bin);
    let profile = tempfile::tempdir().unwrap().keep();
    c.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stdin(Stdio::null());
    c
}

fn report(store: &Path, run: &str, format: &str) -> String {
    let o = drctl(store, &["report", run, "--format", format]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn a_restore_reports_its_timeline_as_a_page_chromium_renders() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    // An API outage twenty minutes in, on top of the restore's own API-down phase.
    let o = drctl(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-api-outage", "20m+15m"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let data: serde_json::Value = serde_json::from_str(&report(store, "1", "json")).unwrap();
    let h = history(store, "1");
    let entered: Vec<&str> = h.iter().filter(|e| e["outcome"] == "Transition").map(|e| e["to"].as_str().unwrap()).collect();
    let segments: Vec<&str> = data["segments"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(&segments[1..], &entered[..], "one segment per state visit, in order");
    assert_eq!(data["status"], "succeeded");
    assert!(data["docs"][0].as_str().unwrap().contains("§5.4.2.2"), "{}", data["docs"]);
    assert!(!data["api_down"].as_array().unwrap().is_empty(), "no API-down window: {:#}", data["api_down"]);
    assert_eq!(data["gates"][0]["gate"], "start");
    let retries: u64 = data["segments"].as_array().unwrap().iter().map(|s| s["retries"].as_u64().unwrap()).sum();
    let retry_events = h.iter().filter(|e| e["outcome"] == "Retry").count() as u64;
    assert_eq!(retries, retry_events, "every retry counted once, in its state");

    let html = report(store, "1", "html");
    for external in ["<script", "<link", " src=", "url(", "@import"] {
        assert!(!html.contains(external), "the page is not self-contained: {external}");
    }
    let page = dir.path().join("r.html");
    std::fs::write(&page, &html).unwrap();
    let url = format!("file://{}", page.display());

    let dom = chromium().args(["--dump-dom", &url]).output().expect("chromium runs");
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for state in entered.iter().take(6) {
        let attr = format!("data-state=\"{}\"", state.replace('"', "&quot;"));
        assert!(dom.contains(&attr), "{state} not in the rendered page");
    }
    assert!(dom.contains("data-gate=\"start\""), "the gate is not in the rendered page");
    assert!(dom.contains("class=\"api-down\""), "the API-down window is not in the rendered page");

    let shot = dir.path().join("shot.png");
    let o =
        chromium().args(["--window-size=1280,1000", &format!("--screenshot={}", shot.display()), &url]).output().expect("chromium runs");
    assert!(o.status.success() && shot.exists(), "{}", String::from_utf8_lossy(&o.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let colours: std::collections::BTreeSet<&[u8]> = bytes.chunks(px).collect();
    assert!(colours.len() > 8, "the screenshot is blank ({} colours)", colours.len());
}

#[test]
fn a_report_of_a_run_with_a_child_nests_it_and_an_unknown_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = drctl(store, &["run", "cluster-shutdown", "--sim", "healthy", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let data: serde_json::Value = serde_json::from_str(&report(store, "1", "json")).unwrap();
    assert_eq!(data["children"][0]["procedure"], "etcd-backup", "{data:#}");
    assert_eq!(data["children"][0]["id"], "1.1");
    let html = report(store, "1", "html");
    assert!(html.contains("id=\"run-1.1\""), "the child run is not nested in the page");

    let o = drctl(store, &["report", "7"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains('7'), "{}", text(&o));
}

#[test]
fn a_run_killed_and_resumed_is_one_story_with_the_resume_marked() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let mut child = command(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-speed", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drctl starts");
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // Kill it once it is well into the restore.
    for (seen, line) in lines.enumerate() {
        if line.is_err() || seen >= 12 {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    assert_ne!(json(&drctl(store, &["status", "1", "-o", "json"]))["status"], "succeeded", "the run ended before the kill");
    let o = drctl(store, &["resume", "--sim-speed", "1000000"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let data: serde_json::Value = serde_json::from_str(&report(store, "1", "json")).unwrap();
    assert_eq!(data["status"], "succeeded");
    let resumed = data["marks"].as_array().unwrap().iter().filter(|m| m["kind"] == "resumed").count();
    assert!(resumed >= 1, "the resume is not marked: {:#}", data["marks"]);
    assert!(report(store, "1", "html").contains("class=\"mark resumed\""));
}
