//! The world's object store served as S3 over HTTP on 127.0.0.1, path-style
//! (`/<bucket>/<key>`), as an S3-compatible endpoint (MinIO, moto) is: the real S3 adapter (the
//! AWS SDK) talks to it with `--s3-endpoint`. Each request is answered by the same world
//! operation the simulator's object-store port performs, so a run through the SDK changes the
//! world as a direct run does; errors go back as S3's XML `<Error>` bodies with their status.
//!
//! Served: `GetBucketLocation` (`GET /<bucket>?location`), `HeadObject`, `PutObject` (a plain or
//! an `aws-chunked` body), `GetObject`, `DeleteObject`. Requests are not signature-checked.

use drctl_sim::Sim;
use drctl_workflows::ports::PortError;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpListener;

type Body = Full<bytes::Bytes>;

/// Bind 127.0.0.1 on a free port and serve `sim`'s object store on `rt`.
pub fn start_s3(rt: &tokio::runtime::Runtime, sim: Sim, after: crate::AfterChange) -> std::io::Result<SocketAddr> {
    let listener = rt.block_on(TcpListener::bind(("127.0.0.1", 0)))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (sim, after) = (sim.clone(), after.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let (sim, after) = (sim.clone(), after.clone());
                    async move { Ok::<_, std::convert::Infallible>(answer(sim, after, req).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok(addr)
}

async fn answer(sim: Sim, after: crate::AfterChange, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => return error_response(400, "IncompleteBody", &format!("the request body broke off: {e}")),
    };
    let chunked = parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("STREAMING-"))
        || parts.headers.get("content-encoding").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("aws-chunked"));
    let body = match chunked {
        true => match decode_aws_chunked(&bytes) {
            Some(b) => b,
            None => return error_response(400, "IncompleteBody", "the aws-chunked body does not parse"),
        },
        false => bytes,
    };
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    let path = percent_decode(parts.uri.path());
    let query = parts.uri.query().unwrap_or("").to_string();
    let method = parts.method.clone();
    tokio::task::spawn_blocking(move || {
        let r = serve(&sim, &method, &path, &query, body, &content_type);
        crate::after_change(&after);
        r
    })
    .await
    .unwrap_or_else(|e| error_response(500, "InternalError", &format!("serving: {e}")))
}

fn serve(sim: &Sim, method: &Method, path: &str, query: &str, body: Vec<u8>, content_type: &str) -> Response<Body> {
    let path = path.trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b.to_string(), Some(k.to_string())),
        Some((b, _)) => (b.to_string(), None),
        None => (path.to_string(), None),
    };
    let key = key.as_deref();
    let result = match (method, key) {
        (&Method::GET, None) if query.split('&').any(|q| q == "location" || q.starts_with("location=")) => {
            sim.op(|w| w.s3_bucket_region(&bucket)).map(|region| {
                // us-east-1 is the empty constraint.
                let constraint = if region == "us-east-1" { String::new() } else { region };
                xml_response(
                    200,
                    &format!("<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{constraint}</LocationConstraint>"),
                )
            })
        }
        (&Method::HEAD, Some(k)) => sim.op(|w| w.s3_head(&bucket, k)).map(|info| match info {
            Some(i) => with_headers(
                Response::builder().status(200).header("content-length", i.size).header("etag", i.etag.unwrap_or_default()),
                vec![],
            ),
            None => with_headers(Response::builder().status(404), vec![]),
        }),
        (&Method::PUT, Some(k)) if !query.contains("uploadId") => sim.op(|w| w.s3_put(&bucket, k, body, content_type)).map(|d| {
            let etag = format!("\"{}\"", &d.sha256[..32]);
            with_headers(Response::builder().status(200).header("etag", etag), vec![])
        }),
        (&Method::GET, Some(k)) => sim.op(|w| w.s3_get(&bucket, k)).map(|bytes| {
            let b =
                Response::builder().status(200).header("content-type", "application/octet-stream").header("content-length", bytes.len());
            with_headers(b, bytes)
        }),
        (&Method::DELETE, Some(k)) if !query.contains("uploadId") => {
            sim.op(|w| w.s3_delete(&bucket, k)).map(|()| with_headers(Response::builder().status(204), vec![]))
        }
        _ => Ok(error_response(
            501,
            "NotImplemented",
            "the simulated object store serves GetBucketLocation, HeadObject, PutObject, GetObject and DeleteObject",
        )),
    };
    match result {
        Ok(r) => r,
        Err(e) => port_error_response(method, &e),
    }
}

fn with_headers(b: hyper::http::response::Builder, body: Vec<u8>) -> Response<Body> {
    b.body(Full::new(bytes::Bytes::from(body))).expect("a valid response")
}

fn xml_response(status: u16, xml: &str) -> Response<Body> {
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}");
    with_headers(Response::builder().status(status).header("content-type", "application/xml"), body.into_bytes())
}

fn error_response(status: u16, code: &str, message: &str) -> Response<Body> {
    xml_response(
        status,
        &format!("<Error><Code>{code}</Code><Message>{}</Message><RequestId>0</RequestId><HostId>0</HostId></Error>", escape(message)),
    )
}

/// A world operation's error, worded `S3 <op> s3://b/k: <Code> (HTTP <status>): <message>`,
/// as S3 would send it. A HEAD answer has no body: the status says it all.
fn port_error_response(method: &Method, e: &PortError) -> Response<Body> {
    let text = match e {
        PortError::Transient(m) | PortError::NotFound(m) | PortError::Permanent(m) => m.as_str(),
    };
    let (status, code, message) = parse_s3_error(text).unwrap_or((500, "InternalError".into(), text.to_string()));
    match *method == Method::HEAD {
        true => with_headers(Response::builder().status(status), vec![]),
        false => error_response(status, &code, &message),
    }
}

fn parse_s3_error(text: &str) -> Option<(u16, String, String)> {
    let (before, after) = text.split_once(" (HTTP ")?;
    let code = before.rsplit([' ', ':']).next()?.to_string();
    let (status, message) = after.split_once("): ")?;
    Some((status.parse().ok()?, code, message.to_string()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An `aws-chunked` body: `<hex size>[;chunk-signature=…]\r\n<data>\r\n`… up to a zero-size
/// chunk, then the trailers (a checksum). The data, or `None` if it does not parse.
fn decode_aws_chunked(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + b[at..].windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&b[at..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(at..at + size)?);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_bodies_and_error_texts_are_read() {
        let body = b"5;chunk-signature=ab\r\nhello\r\n3\r\n wo\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        assert_eq!(decode_aws_chunked(body).as_deref(), Some(&b"hello wo"[..]));
        assert_eq!(decode_aws_chunked(b"5\r\nhel"), None);
        let e = "S3 GetObject s3://b/k: NoSuchKey (HTTP 404): The specified key does not exist.";
        assert_eq!(parse_s3_error(e), Some((404, "NoSuchKey".into(), "The specified key does not exist.".into())));
        assert_eq!(percent_decode("/b/hcp%2Fx%20y"), "/b/hcp/x y");
    }
}
