//! A mock Kubernetes API server (hyper, plain HTTP on 127.0.0.1:0) that checks every request
//! against an ordered list of expectations (method, path, query, content type, bearer token,
//! JSON body) and answers with the expectation's response.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "sha256~drctl-test-token";

#[derive(Debug, Clone)]
pub struct Expect {
    pub method: &'static str,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<&'static str>,
    pub body: Option<Value>,
    pub status: u16,
    pub response: String,
    pub response_type: &'static str,
    /// Answer only after this long (to provoke client timeouts).
    pub delay: Option<std::time::Duration>,
    /// Matches one or more consecutive requests (a step the engine retries), see
    /// [`Expect::repeated`].
    pub repeat: bool,
    /// Requests this expectation answered.
    pub hits: u32,
    /// An exec (`kubectl exec` over a WebSocket): upgrade and run the requested command on this
    /// machine with this environment added (e.g. `ETCDCTL_ENDPOINTS` of a real etcd), its output
    /// and exit status sent back as a kubelet's streams.
    pub exec_env: Option<Vec<(String, String)>>,
}

impl Expect {
    fn new(method: &'static str, path: &str) -> Expect {
        Expect {
            method,
            path: path.to_string(),
            query: vec![],
            content_type: None,
            body: None,
            status: 200,
            response: "{}".into(),
            response_type: "application/json",
            delay: None,
            repeat: false,
            hits: 0,
            exec_env: None,
        }
    }
    /// `GET <pod>/exec` in container `container`, run here with `env` added (see
    /// [`Expect::exec_env`]); the command is whatever the client asks.
    pub fn exec(pod_path: &str, container: &str, env: &[(&str, String)]) -> Expect {
        let query = [("container", container), ("stdout", "true"), ("stderr", "true")];
        Expect {
            exec_env: Some(env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
            ..Expect::new("GET", &format!("{pod_path}/exec")).query(&query)
        }
    }
    pub fn get(path: &str) -> Expect {
        Expect::new("GET", path)
    }
    pub fn delete(path: &str) -> Expect {
        Expect::new("DELETE", path)
    }
    /// A merge patch (`application/merge-patch+json`) with exactly this body.
    pub fn merge_patch(path: &str, body: Value) -> Expect {
        Expect { content_type: Some("application/merge-patch+json"), body: Some(body), ..Expect::new("PATCH", path) }
    }
    pub fn post(path: &str, body: Value) -> Expect {
        Expect { content_type: Some("application/json"), body: Some(body), ..Expect::new("POST", path) }
    }
    pub fn put(path: &str, body: Value) -> Expect {
        Expect { content_type: Some("application/json"), body: Some(body), ..Expect::new("PUT", path) }
    }
    pub fn query(mut self, pairs: &[(&str, &str)]) -> Expect {
        self.query = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }
    pub fn reply(mut self, status: u16, body: Value) -> Expect {
        self.status = status;
        self.response = body.to_string();
        self
    }
    /// A non-JSON answer, as a proxy or load balancer in front of the API gives.
    pub fn reply_text(mut self, status: u16, text: &str) -> Expect {
        self.status = status;
        self.response = text.to_string();
        self.response_type = "text/html";
        self
    }
    /// Answer every matching request in a row, at least one: for a read the engine repeats while
    /// it retries a step. The first request that does not match moves on to the next expectation.
    pub fn repeated(mut self) -> Expect {
        self.repeat = true;
        self
    }
    pub fn after(mut self, d: std::time::Duration) -> Expect {
        self.delay = Some(d);
        self
    }
    /// A Kubernetes `Status` failure.
    pub fn fail(self, code: u16, reason: &str, message: &str) -> Expect {
        self.reply(code, status_failure(code, reason, message))
    }
}

pub fn status_failure(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

#[derive(Default)]
struct State {
    expected: VecDeque<Expect>,
    /// The expectation the last request matched.
    matched: Option<Expect>,
    failures: Vec<String>,
    seen: Vec<String>,
}

pub struct MockApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
    rt: Option<tokio::runtime::Runtime>,
    pub dir: tempfile::TempDir,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = q
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    v.sort();
    v
}

async fn handle(state: Arc<Mutex<State>>, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.headers().get("upgrade").is_some() {
        return Ok(exec(&state, &mut req));
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = query_pairs(req.uri().query());
    let ctype = req.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let line = format!("{method} {path} {query:?}");
    let (resp, delay) = check(&state, line, method, path, query, ctype, auth, body);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
fn check(
    state: &Mutex<State>,
    line: String,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    ctype: Option<String>,
    auth: Option<String>,
    body: Bytes,
) -> (Response<Full<Bytes>>, Option<std::time::Duration>) {
    let mut st = state.lock().unwrap();
    st.seen.push(line.clone());
    let req = Seen { method: &method, path: &path, query: &query, ctype: ctype.as_deref(), auth: auth.as_deref(), body: &body };
    // Bounded: each round either answers or drops one expectation.
    loop {
        let Some(exp) = st.expected.front().cloned() else {
            st.failures.push(format!("unexpected request (none expected): {line}"));
            return (
                json_response(500, &status_failure(500, "InternalError", "mock: unexpected request").to_string(), "application/json"),
                None,
            );
        };
        let problems = problems(&exp, &req);
        if exp.repeat {
            if problems.is_empty() {
                st.expected.front_mut().expect("front").hits += 1;
                st.matched = Some(exp.clone());
                return (json_response(exp.status, &exp.response, exp.response_type), exp.delay);
            }
            if exp.hits > 0 {
                st.expected.pop_front();
                continue;
            }
        }
        st.expected.pop_front();
        if !problems.is_empty() {
            st.failures.push(format!("{line}: {}", problems.join("; ")));
            return (
                json_response(400, &status_failure(400, "BadRequest", "mock: request does not match").to_string(), "application/json"),
                None,
            );
        }
        st.matched = Some(exp.clone());
        return (json_response(exp.status, &exp.response, exp.response_type), exp.delay);
    }
}

/// An exec request: matched like any other (its `command` parameters aside), then upgraded to a
/// WebSocket (`v5.channel.k8s.io`) on which the command's stdout, stderr and exit `Status` go
/// back on channels 1, 2 and 3.
fn exec(state: &Mutex<State>, req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::{Message, Role};
    let path = req.uri().path().to_string();
    let all = query_pairs(req.uri().query());
    let argv: Vec<String> = all.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    // query_pairs sorts: the command's order comes from the raw query.
    let argv: Vec<String> = match req.uri().query() {
        Some(q) => q.split('&').filter_map(|p| p.strip_prefix("command=")).map(percent_decode).collect(),
        None => argv,
    };
    let query: Vec<(String, String)> = all.into_iter().filter(|(k, _)| k != "command").collect();
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let line = format!("EXEC {path} {query:?} {argv:?}");
    let (resp, _) = check(state, line, "GET".into(), path, query, None, auth, Bytes::new());
    let env = state.lock().unwrap().matched.take().and_then(|e| e.exec_env);
    let (Some(env), true) = (env, resp.status() == 200) else { return resp };
    let key = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes())).unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let out = tokio::task::spawn_blocking(move || std::process::Command::new(&argv[0]).args(&argv[1..]).envs(env).output()).await;
        let (code, stdout, stderr) = match out {
            Ok(Ok(o)) => (o.status.code().unwrap_or(1), o.stdout, o.stderr),
            other => (127, vec![], format!("mock exec: {other:?}").into_bytes()),
        };
        for (channel, bytes) in [(1u8, stdout), (2u8, stderr)] {
            if !bytes.is_empty() {
                let _ = ws.send(Message::binary([vec![channel], bytes].concat())).await;
            }
        }
        let status = match code {
            0 => json!({"metadata": {}, "status": "Success"}),
            n => json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                        "details": {"causes": [{"reason": "ExitCode", "message": n.to_string()}]}}),
        };
        let _ = ws.send(Message::binary([vec![3u8], status.to_string().into_bytes()].concat())).await;
        let _ = ws.close(None).await;
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", key)
        .header("sec-websocket-protocol", "v5.channel.k8s.io")
        .body(Full::default())
        .unwrap()
}

struct Seen<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    ctype: Option<&'a str>,
    auth: Option<&'a str>,
    body: &'a Bytes,
}

/// How a request differs from an expectation (empty: it matches).
fn problems(exp: &Expect, r: &Seen) -> Vec<String> {
    let mut problems = Vec::new();
    if exp.method != r.method || exp.path != r.path {
        problems.push(format!("expected {} {}", exp.method, exp.path));
    }
    let mut want_q = exp.query.clone();
    want_q.sort();
    if want_q != r.query {
        problems.push(format!("query {:?} != expected {want_q:?}", r.query));
    }
    if r.auth != Some(format!("Bearer {TOKEN}").as_str()) {
        problems.push(format!("authorization header {:?}", r.auth));
    }
    if let Some(ct) = exp.content_type {
        if r.ctype != Some(ct) {
            problems.push(format!("content-type {:?} != {ct}", r.ctype));
        }
    }
    match (&exp.body, r.body.is_empty()) {
        (Some(want), _) => match serde_json::from_slice::<Value>(r.body) {
            Ok(got) if &got == want => {}
            Ok(got) => problems.push(format!("body\n  got:      {got}\n  expected: {want}")),
            Err(e) => problems.push(format!("body is not JSON ({e}): {}", String::from_utf8_lossy(r.body))),
        },
        (None, false) if r.method == "GET" => problems.push(format!("unexpected body on GET: {}", String::from_utf8_lossy(r.body))),
        _ => {}
    }
    problems
}

fn json_response(status: u16, body: &str, ctype: &str) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", ctype).body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

impl MockApi {
    pub fn start() -> MockApi {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
                });
            }
        });
        let dir = tempfile::Builder::new().prefix("drctl-mockapi").tempdir().unwrap();
        MockApi { port, state, rt: Some(rt), dir }
    }

    pub fn expect(&self, e: Expect) {
        self.state.lock().unwrap().expected.push_back(e);
    }

    pub fn expect_all(&self, es: impl IntoIterator<Item = Expect>) {
        for e in es {
            self.expect(e);
        }
    }

    /// Every expectation met, nothing unexpected.
    pub fn verify(&self) {
        let st = self.state.lock().unwrap();
        assert!(st.failures.is_empty(), "mock API saw bad requests:\n{}\nall requests:\n{}", st.failures.join("\n"), st.seen.join("\n"));
        let left: Vec<String> =
            st.expected.iter().filter(|e| !(e.repeat && e.hits > 0)).map(|e| format!("{} {}", e.method, e.path)).collect();
        assert!(left.is_empty(), "expected requests never came: {left:?}\nall requests:\n{}", st.seen.join("\n"));
    }

    /// Stop serving: the listener and every connection close; new connections are refused.
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Waits until the accept loop and every connection task are gone (sockets closed).
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig with two contexts: `admin` on this server (not current) and `stale`,
    /// current, on a port nothing listens on.
    pub fn kubeconfig(&self) -> PathBuf {
        let dead = super::free_port();
        let p = self.dir.path().join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n    server: {url}\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{dead}\n\
                 contexts:\n- name: admin\n  context:\n    cluster: mock\n    user: admin\n- name: stale\n  context:\n    cluster: gone\n    user: admin\n\
                 current-context: stale\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\n",
                url = self.url()
            ),
        )
        .unwrap();
        p
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.stop();
    }
}
