//! `kubectl exec` on the served API: the WebSocket upgrade kube-rs asks for
//! (`v5.channel.k8s.io`, else `v4.channel.k8s.io`), the command run by the world
//! ([`drctl_sim::pod_exec`]: etcdctl in an etcd pod of the cluster, or in the `etcd` container of
//! a hosted etcd pod of a control-plane namespace), its output on channels 1 and 2 and its exit
//! as a `Status` on channel 3, as the API server relays a kubelet's streams.

use crate::kube::{admit_exec, parse_query, Body, Dropped, ExecTarget};
use drctl_sim::Sim;
use futures_util::SinkExt;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};
use tokio_tungstenite::WebSocketStream;

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// A `GET …/pods/<pod>/exec` asking to upgrade to a WebSocket.
pub fn is_exec(req: &Request<hyper::body::Incoming>) -> bool {
    let upgrade =
        req.headers().get(hyper::header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade && req.uri().path().ends_with("/exec")
}

/// Admit the exec, answer 101, and run the command on the upgraded connection.
pub async fn upgrade(sim: &Sim, after: &crate::AfterChange, mut req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Dropped> {
    let segs: Vec<String> = req.uri().path().trim_matches('/').split('/').map(str::to_string).collect();
    let query = req.uri().query().map(parse_query).unwrap_or_default();
    let (ns, pod) = match segs.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["api", "v1", "namespaces", ns, "pods", pod, "exec"] => (ns.to_string(), pod.to_string()),
        _ => {
            return Ok(
                crate::kube::Answer::status(404, "NotFound", "the server could not find the requested resource", None).into_response()
            )
        }
    };
    let container = query.iter().find(|(k, _)| k == "container").map(|(_, v)| v.clone()).unwrap_or_default();
    let argv: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let Some(key) = req.headers().get(hyper::header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
        return Ok(crate::kube::Answer::status(400, "BadRequest", "missing Sec-WebSocket-Key", None).into_response());
    };
    let offered = req.headers().get(hyper::header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"].into_iter().find(|p| offered.split(',').any(|o| o.trim() == *p));
    let Some(protocol) = protocol else {
        return Ok(
            crate::kube::Answer::status(400, "BadRequest", format!("no supported stream protocol in '{offered}'"), None).into_response()
        );
    };
    let admitted = {
        let (sim, ns, pod, container) = (sim.clone(), ns.clone(), pod.clone(), container.clone());
        tokio::task::spawn_blocking(move || admit_exec(&sim, &ns, &pod, &container))
            .await
            .map_err(|_| Dropped("exec admission panicked"))?
    };
    crate::after_change(after);
    let target = match admitted? {
        Ok(target) => target,
        Err(refusal) => return Ok(refusal.into_response()),
    };
    let (sim, after) = (sim.clone(), after.clone());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let run = tokio::task::spawn_blocking(move || {
            let out = match &target {
                ExecTarget::EtcdPod => Output::from(drctl_sim::pod_exec::etcdctl_in_pod(&sim, &argv)),
                ExecTarget::HostedEtcd { namespace, name } => hosted_etcd_command(&sim, namespace, name, &pod, &argv)
                    .unwrap_or_else(|| Output::from(drctl_sim::pod_exec::hosted_etcdctl_in_pod(&sim, namespace, name, &argv))),
            };
            crate::after_change(&after);
            out
        });
        let Ok(out) = run.await else { return };
        // In pieces, as a kubelet relays a stream (a snapshot is megabytes).
        for (channel, bytes) in [(STDOUT, &out.stdout), (STDERR, &out.stderr)] {
            for piece in bytes.chunks(STREAM_PIECE) {
                if ws.send(Message::binary([&[channel], piece].concat())).await.is_err() {
                    return;
                }
            }
        }
        let _ = ws.send(Message::binary([&[STATUS], exit_status(out.code).to_string().as_bytes()].concat())).await;
        let _ = ws.close(None).await;
    });
    let mut r = Response::new(Full::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(hyper::header::UPGRADE, hyper::header::HeaderValue::from_static("websocket"));
    h.insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("Upgrade"));
    h.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, key.parse().map_err(|_| Dropped("accept key"))?);
    h.insert(hyper::header::SEC_WEBSOCKET_PROTOCOL, hyper::header::HeaderValue::from_static(protocol));
    Ok(r)
}

/// The most one WebSocket message of a stream carries.
const STREAM_PIECE: usize = 64 * 1024;

/// What a command printed (bytes: `cat` of a snapshot is binary) and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl From<drctl_sim::pod_exec::ExecOutcome> for Output {
    fn from(o: drctl_sim::pod_exec::ExecOutcome) -> Output {
        Output { code: o.code, stdout: o.stdout.into_bytes(), stderr: o.stderr.into_bytes() }
    }
}

impl Output {
    fn ok(stdout: impl Into<Vec<u8>>) -> Output {
        Output { code: 0, stdout: stdout.into(), stderr: vec![] }
    }
    fn failed(code: i32, stderr: impl Into<String>) -> Output {
        Output { code, stdout: vec![], stderr: stderr.into().into_bytes() }
    }
    /// A refusal of the world's, as the tool prints it: the world's messages say
    /// `exit status N: <stderr>` where the tool exits N.
    fn refused(e: &drctl_workflows::ports::PortError) -> Output {
        use drctl_workflows::ports::PortError as E;
        let (E::Transient(m) | E::NotFound(m) | E::Permanent(m)) = e;
        let parsed = m.strip_prefix("exit status ").and_then(|r| r.split_once(": ")).and_then(|(n, rest)| Some((n.parse().ok()?, rest)));
        match parsed {
            Some((code, said)) => Output::failed(code, format!("{said}\n")),
            None => Output::failed(1, format!("Error: {m}\n")),
        }
    }
}

/// An etcd tool's command line in the `etcd` container: after `env K=V…`, the tool, its flags
/// (`--cacert X` or `--cacert=X`, `-w json`) and its command words.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ToolCall<'a> {
    pub env: Vec<(&'a str, &'a str)>,
    pub tool: &'a str,
    pub flags: Vec<(&'a str, &'a str)>,
    pub words: Vec<&'a str>,
}

impl<'a> ToolCall<'a> {
    pub fn parse(argv: &'a [String]) -> Option<ToolCall<'a>> {
        let mut it = argv.iter().map(String::as_str).peekable();
        let mut call = ToolCall::default();
        if it.peek() == Some(&"env") {
            it.next();
            while let Some((k, v)) = it.peek().and_then(|a| a.split_once('=')) {
                call.env.push((k, v));
                it.next();
            }
        }
        call.tool = it.next()?.rsplit('/').next().unwrap_or("");
        // Bounded by the argv.
        while let Some(a) = it.next() {
            match a.strip_prefix("--").map(|f| f.split_once('=')) {
                Some(Some((k, v))) => call.flags.push((k, v)),
                Some(None) | None if a == "-w" || a.starts_with("--") => {
                    let k = a.trim_start_matches('-');
                    call.flags.push((k, it.next().unwrap_or("")));
                }
                _ => call.words.push(a),
            }
        }
        Some(call)
    }

    pub fn flag(&self, key: &str) -> Option<&'a str> {
        self.flags.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn env(&self, key: &str) -> Option<&'a str> {
        self.env.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The certificate files etcdctl would open: its flags, else its environment.
    fn certificates(&self) -> Vec<&'a str> {
        [("cacert", "ETCDCTL_CACERT"), ("cert", "ETCDCTL_CERT"), ("key", "ETCDCTL_KEY")]
            .into_iter()
            .filter_map(|(flag, var)| self.flag(flag).or_else(|| self.env(var)))
            .collect()
    }
}

/// The commands of a backup in the `etcd` container of hosted etcd pod `pod` of HostedCluster
/// `namespace/name` (the exec was admitted): `test -x` of the tools (`etcdutl` from etcd 3.5),
/// `etcdctl snapshot save`, `etcdutl|etcdctl snapshot status -w json` (etcd 3.6's etcdctl has
/// no such command; 3.5's warns), `cat` and `rm -f` of a file. `None`: not one of those (the
/// simulated pod's etcdctl answers it).
pub fn hosted_etcd_command(sim: &drctl_sim::Sim, namespace: &str, name: &str, pod: &str, argv: &[String]) -> Option<Output> {
    let minor = sim.read(|w| w.hosted_etcd(namespace, name).map(|e| e.etcd_minor))?;
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["test", "-x", tool @ ("/usr/bin/etcdutl" | "/usr/bin/etcdctl")] => {
            let has = *tool == "/usr/bin/etcdctl" || minor >= 5;
            return Some(Output { code: i32::from(!has), stdout: vec![], stderr: vec![] });
        }
        ["cat", path] => {
            return Some(match sim.read(|w| w.hosted_etcd_snapshot_file(namespace, name, pod, path)) {
                Ok(status) => Output::ok(drctl_sim::hosted_etcd::snapshot_bytes(&status)),
                Err(_) => Output::failed(1, format!("cat: {path}: No such file or directory\n")),
            });
        }
        ["rm", "-f", path] => {
            return Some(match sim.op(|w| w.remove_hosted_etcd_file(namespace, name, pod, path)) {
                Ok(()) => Output::ok(vec![]),
                Err(e) => Output::refused(&e),
            });
        }
        _ => {}
    }
    let call = ToolCall::parse(argv)?;
    let json = call.flag("w") == Some("json") || call.flag("write-out") == Some("json");
    let status_json = |s: &drctl_workflows::ports::SnapshotStatus, version: bool| {
        let mut v = serde_json::json!({ "hash": s.hash, "revision": s.revision, "totalKey": s.total_key, "totalSize": s.total_size });
        if version {
            v["version"] = serde_json::json!(format!("3.{minor}.0"));
        }
        v.to_string()
    };
    match (call.tool, call.words.as_slice()) {
        ("etcdutl", _) if minor < 5 => Some(Output::failed(127, "exec: \"etcdutl\": executable file not found in $PATH: unknown\n")),
        ("etcdctl", ["snapshot", "save", path]) => {
            if call.env("ETCDCTL_API").is_some_and(|v| v != "3") {
                return Some(Output::failed(1, "Error: unknown command \"snapshot\" for \"etcdctl\" (API v2)\n"));
            }
            let files = drctl_sim::pod_exec::HOSTED_ETCD_POD_FILES;
            if let Some(missing) = call.certificates().into_iter().find(|p| !files.contains(p)) {
                return Some(Output::failed(1, format!("Error: open {missing}: no such file or directory\n")));
            }
            Some(match sim.op(|w| w.hosted_etcd_snapshot_save(namespace, name, pod, path)) {
                Ok(()) => Output::ok(format!("Snapshot saved at {path}\n")),
                Err(e) => Output::refused(&e),
            })
        }
        ("etcdctl", ["snapshot", "status", ..]) if minor >= 6 => Some(Output::failed(
            1,
            "Error: unknown command \"status\" for \"etcdctl snapshot\"\nRun 'etcdctl snapshot --help' for usage.\n",
        )),
        (tool @ ("etcdctl" | "etcdutl"), ["snapshot", "status", path]) if json => {
            let deprecated = tool == "etcdctl" && minor == 5;
            let mut out = match sim.read(|w| w.hosted_etcd_snapshot_file(namespace, name, pod, path)) {
                Ok(s) => Output::ok(status_json(&s, tool == "etcdutl")),
                Err(e) => Output::refused(&e),
            };
            if deprecated {
                out.stderr.splice(0..0, b"Deprecated: Use `etcdutl snapshot status` instead.\n\n".iter().copied());
            }
            Some(out)
        }
        _ => None,
    }
}

/// The `Status` the kubelet reports when the command ends: `Success`, or `NonZeroExitCode` with
/// the code as its `ExitCode` cause.
fn exit_status(code: i32) -> serde_json::Value {
    match code {
        0 => serde_json::json!({ "metadata": {}, "status": "Success" }),
        n => serde_json::json!({
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": format!("command terminated with non-zero exit code: error executing command [...], exit code {n}"),
            "details": { "causes": [{ "reason": "ExitCode", "message": n.to_string() }] },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn tool_calls_are_read_past_env_and_flags() {
        let a = argv(&[
            "env",
            "ETCDCTL_API=3",
            "etcdctl",
            "--cacert",
            "/etc/etcd/tls/etcd-ca/ca.crt",
            "--cert=/c.crt",
            "--key",
            "/k.key",
            "--endpoints=https://localhost:2379",
            "snapshot",
            "save",
            "/var/lib/data/snapshot.db",
        ]);
        let c = ToolCall::parse(&a).unwrap();
        assert_eq!((c.tool, c.words.as_slice()), ("etcdctl", ["snapshot", "save", "/var/lib/data/snapshot.db"].as_slice()));
        assert_eq!(c.env("ETCDCTL_API"), Some("3"));
        assert_eq!(c.certificates(), ["/etc/etcd/tls/etcd-ca/ca.crt", "/c.crt", "/k.key"]);
        assert_eq!(c.flag("endpoints"), Some("https://localhost:2379"));
        let a = argv(&["/usr/bin/etcdutl", "snapshot", "status", "/p", "-w", "json"]);
        let c = ToolCall::parse(&a).unwrap();
        assert_eq!((c.tool, c.words.as_slice(), c.flag("w")), ("etcdutl", ["snapshot", "status", "/p"].as_slice(), Some("json")));
        // The certificates from the environment, as the adapter's etcdctl passes them.
        let a = argv(&["env", "ETCDCTL_API=3", "ETCDCTL_CACERT=/ca", "etcdctl", "member", "list"]);
        assert_eq!(ToolCall::parse(&a).unwrap().certificates(), ["/ca"]);
    }

    #[test]
    fn the_worlds_refusals_print_as_the_tool_does() {
        use drctl_workflows::ports::PortError;
        let out = Output::refused(&PortError::Transient("exit status 1: Error: context deadline exceeded".into()));
        assert_eq!((out.code, out.stderr.as_slice()), (1, b"Error: context deadline exceeded\n".as_slice()));
        let out = Output::refused(&PortError::NotFound("HTTP 404 NotFound: pods \"etcd-9\" not found".into()));
        assert_eq!((out.code, String::from_utf8_lossy(&out.stderr).as_ref()), (1, "Error: HTTP 404 NotFound: pods \"etcd-9\" not found\n"));
    }
}
