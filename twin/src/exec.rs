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
                ExecTarget::EtcdPod => drctl_sim::pod_exec::etcdctl_in_pod(&sim, &argv),
                ExecTarget::HostedEtcd { namespace, name } => drctl_sim::pod_exec::hosted_etcdctl_in_pod(&sim, namespace, name, &argv),
            };
            crate::after_change(&after);
            out
        });
        let Ok(out) = run.await else { return };
        for (channel, bytes) in [(STDOUT, out.stdout.as_bytes()), (STDERR, out.stderr.as_bytes())] {
            if !bytes.is_empty() && ws.send(Message::binary([&[channel], bytes].concat())).await.is_err() {
                return;
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
