//! A real S3-compatible server on 127.0.0.1: moto's server mode (`moto_server`, a Python
//! package installed into a virtualenv by `scripts/install-test-deps.sh`), killed on drop.
//!
//! moto accepts any credentials until told to check them: [`Moto::start_with_iam`] creates an
//! IAM user with an access key allowed `s3:*`, then switches authentication on
//! (`/moto-api/reset-auth`), after which unknown keys get `InvalidAccessKeyId` and wrong secrets
//! `SignatureDoesNotMatch`, computed by moto from the request like S3 does.

use super::{free_port, wait_for_port};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The virtualenv `scripts/install-test-deps.sh` installs moto into; `DRCTL_TEST_VENV` overrides.
pub const DEFAULT_VENV: &str = "/opt/drctl-test-venv";
pub const VENV_ENV: &str = "DRCTL_TEST_VENV";

/// Credentials moto accepts while authentication is off (any would do; these look real).
pub const TEST_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const TEST_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

pub fn moto_server_bin() -> PathBuf {
    let venv = std::env::var_os(VENV_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_VENV));
    let bin = venv.join("bin/moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-test-deps.sh (creates the virtualenv {} with moto[server] from PyPI; \
         ${VENV_ENV} points the tests at another one). These tests need a real S3 server and never skip.",
        bin.display(),
        venv.display()
    );
    bin
}

pub struct Moto {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// A fresh server with authentication off.
    pub fn start() -> Moto {
        let bin = moto_server_bin();
        let dir = tempfile::Builder::new().prefix("drctl-moto").tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let port = free_port();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // moto must not pick up the developer's AWS settings or settings of ours.
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut m = Moto { port, child: Some(child), log, _dir: dir };
        // Python imports take a while on a loaded 2-core machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("moto_server exited ({st}) before answering:\n{}", m.log_text());
            }
            if wait_for_port(port, Duration::from_millis(500)) && m.http("GET", "/moto-api/data.json", &[], b"").0 == 200 {
                return m;
            }
            assert!(Instant::now() < deadline, "moto_server on port {port} did not answer within 60 s:\n{}", m.log_text());
        }
    }

    /// One server for every test of this process that runs while another holds it; the last
    /// holder's drop stops it. Tests sharing it use bucket names of their own.
    pub fn shared() -> Arc<Moto> {
        static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = slot.upgrade() {
            return m;
        }
        let m = Arc::new(Moto::start());
        *slot = Arc::downgrade(&m);
        m
    }

    /// A fresh server with `buckets`, an IAM user allowed `s3:*` and authentication on; returns
    /// the user's key id and secret.
    pub fn start_with_iam(buckets: &[&str]) -> (Moto, String, String) {
        let m = Moto::start();
        for b in buckets {
            m.create_bucket(b, None);
        }
        let iam = |body: &str| {
            // moto routes by the service named in the credential scope; it checks no signature yet.
            let auth =
                format!("AWS4-HMAC-SHA256 Credential={TEST_KEY_ID}/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00");
            let (st, text) =
                m.http("POST", "/", &[("Authorization", &auth), ("Content-Type", "application/x-www-form-urlencoded")], body.as_bytes());
            assert_eq!(st, 200, "IAM {body}: {text}");
            text
        };
        iam("Action=CreateUser&UserName=drctl&Version=2010-05-08");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        iam(&format!("Action=PutUserPolicy&UserName=drctl&PolicyName=s3&PolicyDocument={}&Version=2010-05-08", url_encode(policy)));
        let key = iam("Action=CreateAccessKey&UserName=drctl&Version=2010-05-08");
        let id = between(&key, "<AccessKeyId>", "</AccessKeyId>").expect("AccessKeyId").to_string();
        let secret = between(&key, "<SecretAccessKey>", "</SecretAccessKey>").expect("SecretAccessKey").to_string();
        let (st, text) = m.http("POST", "/moto-api/reset-auth", &[], b"0");
        assert_eq!(st, 200, "reset-auth: {text}");
        (m, id, secret)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a bucket without the adapter (the port has no such operation): moto takes unsigned
    /// requests while authentication is off.
    pub fn create_bucket(&self, name: &str, region: Option<&str>) {
        let body = region
            .map(|r| format!("<CreateBucketConfiguration><LocationConstraint>{r}</LocationConstraint></CreateBucketConfiguration>"))
            .unwrap_or_default();
        let (st, text) = self.http("PUT", &format!("/{name}"), &[("Content-Type", "application/xml")], body.as_bytes());
        assert_eq!(st, 200, "create bucket {name}: {text}");
    }

    /// One HTTP/1.1 request to the server.
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let (st, body) = http_request(method, &format!("{}{path}", self.endpoint()), headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} to moto: {e}\n{}", self.log_text()));
        (st, String::from_utf8_lossy(&body).into_owned())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            super::kill_tree(c.id());
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.1 client for `http://HOST:PORT/...` URLs (one request per connection), so
/// presigned URLs are fetched by something that knows nothing of S3 or signing.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).and_then(|_| s.write_all(body)).map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers in the answer")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad status line: {head}"))?;
    let raw = &resp[split + 4..];
    let chunked =
        head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"));
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok((status, body))
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // Bounded by the length of the answer: every round consumes at least its size line.
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line unterminated")?;
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|e| format!("chunk size: {e}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err("chunk cut off".into());
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}
