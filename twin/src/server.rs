//! The served API's listener: TLS on 127.0.0.1, HTTP/1.1, one task per connection.

use crate::kube::{serve, ApiCall, Body};
use drctl_sim::Sim;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Bind 127.0.0.1:`port` (0: any free port) and serve `sim` on `rt` until the runtime stops.
pub fn start_api(
    rt: &tokio::runtime::Runtime,
    sim: Sim,
    tls: Arc<rustls::ServerConfig>,
    port: u16,
    after: crate::AfterChange,
    token: Arc<String>,
) -> std::io::Result<SocketAddr> {
    let listener = rt.block_on(TcpListener::bind(("127.0.0.1", port)))?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, sim, after, token) = (acceptor.clone(), sim.clone(), after.clone(), token.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                // Our CA signed the client's certificate (the handshake checked it), if it sent one.
                let has_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                let service = service_fn(move |req| {
                    let (sim, after, token) = (sim.clone(), after.clone(), token.clone());
                    async move { answer(&sim, &after, Credentials { has_cert, token: &token }, req).await }
                });
                // Upgrades: `kubectl exec` goes over a WebSocket.
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades().await;
            });
        }
    });
    Ok(addr)
}

/// How a connection's requests may authenticate: its client certificate, or the one token.
struct Credentials<'a> {
    has_cert: bool,
    token: &'a str,
}

async fn answer(
    sim: &Sim,
    after: &crate::AfterChange,
    creds: Credentials<'_>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, ServeError> {
    if crate::exec::is_exec(&req) {
        if !creds.has_cert && crate::kube::bearer(req.headers()).as_deref() != Some(creds.token) {
            return Ok(crate::kube::Answer::status(401, "Unauthorized", "Unauthorized", None).into_response());
        }
        return crate::exec::upgrade(sim, after, req).await.map_err(|e| ServeError(e.to_string()));
    }
    let call = ApiCall::read(req).await.map_err(|e| ServeError(format!("reading the request: {e}")))?;
    if !creds.has_cert && call.bearer.as_deref() != Some(creds.token) {
        return Ok(crate::kube::Answer::status(401, "Unauthorized", "Unauthorized", None).into_response());
    }
    // The world is a plain lock: served off the async workers so a long controller catch-up
    // never stalls other connections' I/O.
    let (sim, after) = (sim.clone(), after.clone());
    let r = tokio::task::spawn_blocking(move || {
        let r = serve(&sim, &call);
        crate::after_change(&after);
        r
    })
    .await
    .map_err(|e| ServeError(format!("serving: {e}")))?;
    r.map(|a| a.into_response()).map_err(|dropped| ServeError(dropped.to_string()))
}

/// Why a connection was closed without an answer.
#[derive(Debug)]
pub struct ServeError(String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ServeError {}
