//! OTLP trace export through the binary, received by an OTLP/HTTP receiver on loopback that
//! decodes the official protocol definitions (`opentelemetry-proto`): one trace per run, a span
//! per state visit with the `drctl.*` attributes, continued after a SIGKILL and a resume, child
//! runs under the parent's span, and a dead collector that changes nothing about the run.
// A real process killed in real time.
#![allow(clippy::disallowed_methods)]

mod common;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// What the receiver got: each export request, decoded.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportTraceServiceRequest>>>, Arc<Mutex<Vec<Vec<u8>>>>);

impl Received {
    fn spans(&self) -> Vec<(Span, Option<i64>)> {
        let mut out = vec![];
        for req in self.0.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let pid = rs.resource.as_ref().and_then(|r| attr(&r.attributes, "process.pid")).and_then(|v| v.parse().ok());
                for ss in &rs.scope_spans {
                    out.extend(ss.spans.iter().map(|s| (s.clone(), pid)));
                }
            }
        }
        out
    }
}

fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match v {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// An OTLP/HTTP receiver on 127.0.0.1: `POST /v1/traces` with a protobuf body, answered 200.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let got = Received::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let keep = keep.clone();
            std::thread::spawn(move || serve(conn, keep));
        }
    });
    (endpoint, got)
}

fn serve(conn: std::net::TcpStream, got: Received) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        assert_eq!(path, "/v1/traces", "OTLP/HTTP traces go to /v1/traces");
        let req = ExportTraceServiceRequest::decode(&body[..]).expect("an OTLP ExportTraceServiceRequest");
        got.0.lock().unwrap().push(req);
        got.1.lock().unwrap().push(body);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
    }
}

/// An OTLP/gRPC receiver on 127.0.0.1: the `TraceService` generated from the protocol's
/// definitions, served by tonic.
fn grpc_receiver() -> (String, Received) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    struct Rx(Received);
    #[tonic::async_trait]
    impl TraceService for Rx {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let req = request.into_inner();
            self.0 .1.lock().unwrap().push(req.encode_to_vec());
            self.0 .0.lock().unwrap().push(req);
            Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
        }
    }
    let got = Received::default();
    let keep = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            tonic::transport::Server::builder().add_service(TraceServiceServer::new(Rx(keep))).serve_with_incoming(incoming).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), got)
}

fn otel_run(store: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    command(store, args).env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint).output().expect("drctl runs")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_restore_exports_one_trace_with_a_span_per_transition_at_simulated_times() {
    let (endpoint, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = otel_run(store, &endpoint, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let spans = got.spans();
    assert!(!spans.is_empty(), "no span received");
    let traces: std::collections::BTreeSet<String> = spans.iter().map(|(s, _)| hex(&s.trace_id)).collect();
    assert_eq!(traces.len(), 1, "one trace per run: {traces:?}");
    let root = spans.iter().find(|(s, _)| s.parent_span_id.is_empty()).expect("a root span").0.clone();
    assert_eq!(root.name, "restore-cluster-state run 1");
    assert_eq!(attr(&root.attributes, "drctl.outcome").as_deref(), Some("succeeded"));
    for (s, _) in &spans {
        assert_eq!(attr(&s.attributes, "drctl.run_id").as_deref(), Some("1"), "{}", s.name);
        assert_eq!(attr(&s.attributes, "drctl.procedure").as_deref(), Some("restore-cluster-state"));
        assert!(attr(&s.attributes, "drctl.procedure_version").is_some());
    }
    // Every transition of the history is a span from its state to the next.
    let h = history(store, "1");
    for e in h.iter().filter(|e| e["outcome"] == "Transition") {
        let (from, to) = (e["from"].as_str().unwrap(), e["to"].as_str().unwrap());
        let found = spans.iter().any(|(s, _)| {
            attr(&s.attributes, "drctl.from").as_deref() == Some(from)
                && attr(&s.attributes, "drctl.to").as_deref() == Some(to)
                && s.parent_span_id == root.span_id
        });
        assert!(found, "no span for {from} -> {to}");
    }
    // Simulated time: the trace starts when the run was created in the simulated world.
    let created: drctl_runtime::clock::Timestamp = serde_json::from_value(h[0]["at"].clone()).unwrap();
    assert_eq!(root.start_time_unix_nano / 1_000_000, created.millis(), "the root span starts at the run's creation");
    assert!(
        root.end_time_unix_nano > root.start_time_unix_nano + 30 * 60 * 1_000_000_000,
        "a simulated restore lasts far longer than the test"
    );
    // Waits are spans covering them.
    assert!(spans.iter().any(|(s, _)| s.name.starts_with("wait: ")), "no wait span");
}

#[test]
fn a_run_killed_and_resumed_is_one_trace_with_spans_from_both_processes() {
    let (endpoint, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    // Paced so the whole restore would take a few seconds: it is killed well before the end.
    let mut child = command(store, &["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes", "--sim-speed", "1000"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("drctl starts");
    // Kill it once the collector has taken spans from it.
    let start = std::time::Instant::now();
    while got.spans().len() < 3 {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "the first process exported nothing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    assert_ne!(json(&drctl(store, &["status", "1", "-o", "json"]))["status"], "succeeded", "the run ended before the kill");
    let o = otel_run(store, &endpoint, &["resume", "--sim-speed", "1000000"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&drctl(store, &["status", "1", "-o", "json"]))["status"], "succeeded");

    let spans = got.spans();
    let traces: std::collections::BTreeSet<String> = spans.iter().map(|(s, _)| hex(&s.trace_id)).collect();
    assert_eq!(traces.len(), 1, "one trace across both processes: {traces:?}");
    let pids: std::collections::BTreeSet<i64> = spans.iter().filter_map(|(_, pid)| *pid).collect();
    assert_eq!(pids.len(), 2, "spans from both processes: {pids:?}");
    let root = spans.iter().find(|(s, _)| s.parent_span_id.is_empty()).expect("a root span").0.clone();
    let ids: std::collections::BTreeSet<Vec<u8>> = spans.iter().map(|(s, _)| s.span_id.clone()).collect();
    for (s, _) in &spans {
        assert!(s.parent_span_id.is_empty() || ids.contains(&s.parent_span_id), "{} has a parent that was never exported", s.name);
        if !s.name.starts_with("wait: ") && !s.parent_span_id.is_empty() {
            assert_eq!(s.parent_span_id, root.span_id, "{} is not under the run's root", s.name);
        }
    }
    let resumed = spans.iter().flat_map(|(s, _)| s.events.iter()).find(|e| e.name == "resumed").expect("a resumed event");
    let earlier = attr(&resumed.attributes, "drctl.earlier_process").unwrap();
    assert!(earlier.starts_with("pid "), "the resumed event names the earlier process: {earlier}");
}

#[test]
fn the_grpc_protocol_delivers_the_same_trace() {
    let (endpoint, got) = grpc_receiver();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = command(store, &["run", "etcd-backup", "--sim", "healthy", "--yes"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_SERVICE_NAME", "drctl-grpc-test")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let spans = got.spans();
    let root = spans.iter().find(|(s, _)| s.parent_span_id.is_empty()).expect("a root span over gRPC").0.clone();
    assert_eq!(root.name, "etcd-backup run 1");
    // The first state, then one per transition.
    let visits = 1 + history(store, "1").iter().filter(|e| e["outcome"] == "Transition").count();
    let states = spans.iter().filter(|(s, _)| s.parent_span_id == root.span_id && !s.name.contains(": ")).count();
    assert_eq!(states, visits);
    let service = got.0.lock().unwrap()[0].resource_spans[0].resource.as_ref().and_then(|r| attr(&r.attributes, "service.name"));
    assert_eq!(service.as_deref(), Some("drctl-grpc-test"), "OTEL_SERVICE_NAME names the service");
}

#[test]
fn a_gate_waited_on_is_a_span_from_the_question_to_the_decision() {
    let (endpoint, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let mut run = command(store, &["run", "legacy-lost-masters", "--sim", "legacy-lost-masters"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drctl starts");
    let mut lines = BufReader::new(run.stderr.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.contains(" approve: ") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let o = drctl(store, &["reject", "1", "--comment", "not tonight"]);
    assert!(o.status.success(), "{}", text(&o));
    run.wait().unwrap();
    let spans = got.spans();
    let gate = spans.iter().find(|(s, _)| s.name == "gate: AwaitApproval").expect("a gate span").0.clone();
    assert_eq!(attr(&gate.attributes, "drctl.decision").as_deref(), Some("Rejected"));
    let state = spans.iter().find(|(s, _)| s.span_id == gate.parent_span_id).expect("the gate's state span").0.clone();
    let decision = state.events.iter().find(|e| e.name == "gate rejected").expect("the decision event");
    assert!(attr(&decision.attributes, "drctl.detail").unwrap().contains("not tonight"), "who and why are on the decision");
}

#[test]
fn a_child_run_is_a_child_of_the_span_that_started_it() {
    let (endpoint, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let o = otel_run(store, &endpoint, &["run", "cluster-shutdown", "--sim", "healthy", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let spans = got.spans();
    let traces: std::collections::BTreeSet<String> = spans.iter().map(|(s, _)| hex(&s.trace_id)).collect();
    assert_eq!(traces.len(), 1, "the child is in its parent's trace: {traces:?}");
    let child_root = spans.iter().find(|(s, _)| s.name == "etcd-backup run 1.1").expect("the child's root span").0.clone();
    let parent_span = spans.iter().find(|(s, _)| s.span_id == child_root.parent_span_id).expect("the child's parent span").0.clone();
    assert_eq!(attr(&parent_span.attributes, "drctl.run_id").as_deref(), Some("1"), "{}", parent_span.name);
}

#[test]
fn a_dead_collector_changes_nothing_about_the_run() {
    // A port nothing listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (with, without) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["run", "restore-cluster-state", "--sim", "quorum-loss", "--yes"];
    let a = otel_run(with.path(), &closed, &args);
    let b = drctl(without.path(), &args);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(a.status.code(), b.status.code());
    let strip = |h: Vec<serde_json::Value>| -> Vec<(String, String, String)> {
        h.iter().map(|e| (e["at"].to_string(), e["outcome"].to_string(), e["to"].to_string())).collect()
    };
    assert_eq!(strip(history(with.path(), "1")), strip(history(without.path(), "1")), "the history differs with a dead collector");
    assert!(!without.path().join("telemetry").exists(), "without an endpoint nothing is exported");
    let st = drctl(with.path(), &["status", "1"]);
    assert!(text(&st).contains("span(s) dropped"), "the drops are not reported: {}", text(&st));
    // A protocol this build cannot speak is refused before anything is stored.
    let bad = command(without.path(), &["run", "etcd-backup", "--sim", "healthy", "--yes"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &closed)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/thrift")
        .output()
        .unwrap();
    assert_ne!(bad.status.code(), Some(0));
    assert!(text(&bad).contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/thrift is not supported"), "{}", text(&bad));
}

#[test]
fn no_byte_of_a_bmc_password_is_exported_or_reported() {
    let (endpoint, got) = receiver();
    let (dir, creds_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = dir.path();
    let secret = drctl_sim::scenario::SIM_BMC_PASSWORD;
    let creds = creds_dir.path().join("bmc.yaml");
    std::fs::write(&creds, format!("username: {}\npassword: {secret}\n", drctl_sim::scenario::SIM_BMC_USERNAME)).unwrap();
    let (address, mac) = drctl_sim::bare_metal::server_identity(drctl_sim::bare_metal::SPARE_SERVER);
    let creds = creds.display().to_string();
    let args = [
        "run",
        "etcd-member-triage",
        "--sim",
        "baremetal-member-lost",
        "--yes",
        "--bmc-address",
        &address,
        "--boot-mac-address",
        &mac,
        "--bmc-credentials",
        &creds,
    ];
    let o = otel_run(store, &endpoint, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bodies = got.1.lock().unwrap().clone();
    assert!(bodies.len() >= 2, "spans of the run and its child were exported: {} requests", bodies.len());
    for b in &bodies {
        assert!(!b.windows(secret.len()).any(|w| w == secret.as_bytes()), "the BMC password was exported");
    }
    for format in ["html", "json"] {
        let r = drctl(store, &["report", "1", "--format", format]);
        assert!(r.status.success() && !text(&r).contains(secret), "the BMC password is in the {format} report");
    }
}
