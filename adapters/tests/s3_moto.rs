//! The S3 adapter against a real S3-compatible server: moto's server mode on 127.0.0.1
//! (`moto[server]` in the virtualenv `scripts/install-test-deps.sh` creates), started by the
//! harness. A missing moto fails these tests; they never skip.
// Real software in real time: these tests wait on the wall clock.
#![allow(clippy::disallowed_methods)]

mod support;

use drctl_adapters::blocking::Blocking;
use drctl_adapters::s3::{S3Credentials, S3Options, S3Store, Secret, MIN_PART_SIZE};
use drctl_workflows::object_store::{Digest, ObjectStore, VerifyDepth};
use drctl_workflows::ports::PortError;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::moto::{between, http_request, Moto, TEST_KEY_ID, TEST_SECRET};

fn store_with(endpoint: &str, key_id: &str, secret: &str, part_size: usize) -> S3Store {
    let opts = S3Options {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        credentials: S3Credentials::Static { access_key_id: key_id.into(), secret_access_key: Secret::new(secret), session_token: None },
        part_size,
    };
    S3Store::connect(Blocking::dedicated("drctl-s3-test").unwrap(), opts).unwrap()
}

fn store(m: &Moto) -> S3Store {
    store_with(&m.endpoint(), TEST_KEY_ID, TEST_SECRET, MIN_PART_SIZE)
}

fn digest_of(data: &[u8]) -> Digest {
    Digest { size: data.len() as u64, sha256: hex::encode(Sha256::digest(data)) }
}

/// Deterministic, incompressible-looking bytes.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A reader handing out at most `step` bytes per read, like a stream out of a pod.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
    /// Fail with this after the data, instead of ending.
    fail: Option<std::io::ErrorKind>,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.data.is_empty() {
            return match self.fail {
                Some(k) => Err(std::io::Error::new(k, "stream from the pod broke")),
                None => Ok(0),
            };
        }
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn put_head_get_delete_round_trip() {
    let m = Moto::shared();
    m.create_bucket("roundtrip", None);
    let s = store(&m);
    let body = data(100_000, 1);
    let up = s.put_stream("roundtrip", "dir/snap.db", &mut &body[..], "application/octet-stream").unwrap();
    assert_eq!(up, digest_of(&body));

    let info = s.head("roundtrip", "dir/snap.db").unwrap().expect("the object is there");
    assert_eq!(info.size, 100_000);
    assert!(info.etag.as_deref().is_some_and(|e| !e.contains('-')), "one PUT, not multipart: {info:?}");

    let mut back = Vec::new();
    assert_eq!(s.get_to("roundtrip", "dir/snap.db", &mut back).unwrap(), up);
    assert_eq!(back, body);
    s.verify("roundtrip", "dir/snap.db", &up, VerifyDepth::SizeAndHash).unwrap();

    // An empty object is an object.
    let empty = s.put_stream("roundtrip", "empty", &mut std::io::empty(), "text/plain").unwrap();
    assert_eq!(empty, digest_of(b""));
    assert_eq!(s.head("roundtrip", "empty").unwrap().map(|i| i.size), Some(0));

    s.delete("roundtrip", "dir/snap.db").unwrap();
    assert_eq!(s.head("roundtrip", "dir/snap.db").unwrap(), None);
    // Deleting again succeeds (S3 answers 204 for a missing key): a re-run step may.
    s.delete("roundtrip", "dir/snap.db").unwrap();
    match s.get_to("roundtrip", "dir/snap.db", &mut std::io::sink()) {
        Err(PortError::NotFound(m)) => assert!(m.contains("NoSuchKey") && m.contains("s3://roundtrip/dir/snap.db"), "{m}"),
        other => panic!("expected NoSuchKey, got {other:?}"),
    }
    // A missing object does not verify, whatever was uploaded before.
    let e = s.verify("roundtrip", "dir/snap.db", &up, VerifyDepth::Size).unwrap_err();
    assert!(matches!(e, PortError::Permanent(_)), "{e}");
}

#[test]
fn multipart_above_one_part_streams_and_verifies() {
    let m = Moto::shared();
    m.create_bucket("multipart", None);
    let s = store(&m);
    // Three parts: two full 5 MiB ones and a short last one, read in odd-sized pieces.
    let body = data(2 * MIN_PART_SIZE + 123_457, 2);
    let up =
        s.put_stream("multipart", "snap.db", &mut Trickle { data: &body, step: 65_521, fail: None }, "application/octet-stream").unwrap();
    assert_eq!(up, digest_of(&body));
    let info = s.head("multipart", "snap.db").unwrap().unwrap();
    assert_eq!(info.size, body.len() as u64);
    // S3's ETag of a multipart object is "<md5 of the part md5s>-<number of parts>".
    assert!(info.etag.as_deref().is_some_and(|e| e.trim_matches('"').ends_with("-3")), "3 parts expected: {info:?}");
    s.verify("multipart", "snap.db", &up, VerifyDepth::SizeAndHash).unwrap();
    let mut back = Vec::new();
    s.get_to("multipart", "snap.db", &mut back).unwrap();
    assert!(back == body, "the object reads back as uploaded");

    // Exactly one part is one PUT (the byte past the part decides, not the size alone).
    let one = data(MIN_PART_SIZE, 3);
    let up1 = s.put_stream("multipart", "one-part", &mut &one[..], "application/octet-stream").unwrap();
    assert_eq!(up1, digest_of(&one));
    let info1 = s.head("multipart", "one-part").unwrap().unwrap();
    assert!(info1.etag.as_deref().is_some_and(|e| !e.contains('-')), "{info1:?}");

    // Verify catches an object that is not the one uploaded (here: overwritten).
    s.put_stream("multipart", "one-part", &mut &one[..MIN_PART_SIZE - 1], "application/octet-stream").unwrap();
    let e = s.verify("multipart", "one-part", &up1, VerifyDepth::Size).unwrap_err();
    assert!(e.to_string().contains(&format!("holds {} bytes", MIN_PART_SIZE - 1)), "{e}");
}

#[test]
fn a_source_that_breaks_mid_upload_aborts_the_multipart_upload() {
    let m = Moto::shared();
    m.create_bucket("broken-source", None);
    let s = store(&m);
    let body = data(MIN_PART_SIZE + 1000, 4);
    let e = s
        .put_stream(
            "broken-source",
            "snap.db",
            &mut Trickle { data: &body, step: 1 << 20, fail: Some(std::io::ErrorKind::ConnectionReset) },
            "application/octet-stream",
        )
        .unwrap_err();
    assert!(e.is_transient(), "a broken stream is worth another attempt: {e}");
    assert!(e.to_string().contains("reading the data to upload"), "{e}");
    assert_eq!(s.head("broken-source", "snap.db").unwrap(), None, "nothing half-written is visible");
    let (st, list) = m.http("GET", "/broken-source?uploads", &[], b"");
    assert_eq!(st, 200, "{list}");
    assert!(!list.contains("<UploadId>"), "the failed upload was aborted: {list}");
}

#[test]
fn presigned_url_is_fetched_by_a_plain_http_client() {
    let m = Moto::shared();
    m.create_bucket("presign", None);
    let s = store(&m);
    let body = data(4096, 5);
    s.put_stream("presign", "hcp/snap.db", &mut &body[..], "application/octet-stream").unwrap();
    let url = s.presign_get("presign", "hcp/snap.db", Duration::from_secs(3600)).unwrap();
    assert!(url.starts_with(&format!("{}/presign/hcp/snap.db?", m.endpoint())), "path-style URL: {url}");
    assert!(url.len() <= 1024);
    let (st, got) = http_request("GET", &url, &[], b"").unwrap();
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&got));
    assert!(got == body, "the presigned URL serves the object");
    // Signed as S3 checks it (moto does not check presigned signatures; this does).
    verify_presigned(&url, TEST_SECRET, 3600).unwrap();
    assert!(verify_presigned(&url, "another-secret", 3600).is_err(), "the check can fail");

    // Expiries outside 1 s..=7 days, and URLs longer than a restoreSnapshotURL item, are
    // refused before anything is signed.
    for bad in [Duration::ZERO, Duration::from_millis(500), Duration::from_secs(604_801)] {
        let e = s.presign_get("presign", "hcp/snap.db", bad).unwrap_err();
        assert!(matches!(e, PortError::Permanent(_)) && e.to_string().contains("604800"), "{bad:?}: {e}");
    }
    assert!(s.presign_get("presign", "hcp/snap.db", Duration::from_secs(604_800)).is_ok());
    let long_key = "k".repeat(900);
    let e = s.presign_get("presign", &long_key, Duration::from_secs(60)).unwrap_err();
    assert!(e.to_string().contains("1024"), "{e}");
}

/// moto serves presigned URLs without looking at their expiry (moto 5.x; real S3 answers 403
/// AccessDenied "Request has expired"). What can be proven here is what makes S3 refuse: the
/// URL names a 1 s window that is over, and the signature covers that window, so the holder
/// cannot widen it. And moto's own answer is asserted, so a moto that starts enforcing expiry
/// turns this into a test of the 403.
#[test]
fn expired_presigned_url() {
    let m = Moto::shared();
    m.create_bucket("expiry", None);
    let s = store(&m);
    s.put_stream("expiry", "snap.db", &mut &b"snapshot"[..], "application/octet-stream").unwrap();
    let url = s.presign_get("expiry", "snap.db", Duration::from_secs(1)).unwrap();
    std::thread::sleep(Duration::from_secs(2));

    let q = query(&url);
    assert_eq!(param(&q, "X-Amz-Expires"), Some("1"));
    let signed_at = parse_amz_date(param(&q, "X-Amz-Date").expect("X-Amz-Date")).expect("a SigV4 timestamp");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(signed_at <= now && now.abs_diff(signed_at) < 120, "signed at {signed_at}, now {now}");
    assert!(signed_at + 1 < now, "the 1 s window is over: S3 refuses this URL");
    verify_presigned(&url, TEST_SECRET, 1).unwrap();
    // Raising X-Amz-Expires in the URL breaks the signature (S3: SignatureDoesNotMatch).
    let widened = url.replace("X-Amz-Expires=1&", "X-Amz-Expires=604800&").replace("&X-Amz-Expires=1", "&X-Amz-Expires=604800");
    assert_ne!(widened, url);
    assert!(verify_presigned(&widened, TEST_SECRET, 604_800).is_err(), "a widened window does not verify");

    let (st, body) = http_request("GET", &url, &[], b"").unwrap();
    let body = String::from_utf8_lossy(&body);
    if st == 403 {
        assert!(body.contains("AccessDenied") && body.contains("Request has expired"), "{body}");
    } else {
        assert_eq!(
            (st, body.as_ref()),
            (200, "snapshot"),
            "moto neither served nor refused the expired URL as S3 would; if it now enforces expiry, expect 403 AccessDenied"
        );
    }
}

#[test]
fn no_such_bucket_is_not_found_naming_the_code() {
    let m = Moto::shared();
    let s = store(&m);
    for r in [
        s.bucket_region("nosuch-bucket").map(|_| ()),
        s.head("nosuch-bucket", "k").map(|_| ()),
        s.put_stream("nosuch-bucket", "k", &mut &b"x"[..], "text/plain").map(|_| ()),
    ] {
        match r {
            Err(PortError::NotFound(msg)) => {
                assert!(msg.contains("NoSuchBucket") && msg.contains("s3://nosuch-bucket"), "{msg}");
                assert!(msg.contains("check the bucket name"), "says what to do: {msg}");
            }
            other => panic!("expected NotFound NoSuchBucket, got {other:?}"),
        }
    }
}

#[test]
fn bucket_region_is_read_back_and_used() {
    let m = Moto::shared();
    m.create_bucket("region-default", None);
    m.create_bucket("region-london", Some("eu-west-2"));
    let s = store(&m);
    assert_eq!(s.bucket_region("region-default").unwrap(), "us-east-1", "an empty LocationConstraint is us-east-1");
    assert_eq!(s.bucket_region("region-london").unwrap(), "eu-west-2");
    // Requests to the London bucket are signed for its region.
    let up = s.put_stream("region-london", "k", &mut &b"hello"[..], "text/plain").unwrap();
    s.verify("region-london", "k", &up, VerifyDepth::SizeAndHash).unwrap();
    let url = s.presign_get("region-london", "k", Duration::from_secs(60)).unwrap();
    assert!(param(&query(&url), "X-Amz-Credential").is_some_and(|c| c.contains("%2Feu-west-2%2Fs3%2F")), "{url}");
}

#[test]
fn wrong_credentials_are_permanent_and_the_secret_is_never_shown() {
    let (m, key_id, secret) = Moto::start_with_iam(&["auth-bucket"]);
    let planted = "drctl-PLANTED-secret-0123456789abcdefghijklmn";

    // The right key and secret work: moto checks signatures the way S3 does, so the refusals
    // below are about the credentials, not about how we sign.
    let good = store_with(&m.endpoint(), &key_id, &secret, MIN_PART_SIZE);
    let up = good.put_stream("auth-bucket", "k", &mut &b"data"[..], "text/plain").unwrap();
    good.verify("auth-bucket", "k", &up, VerifyDepth::SizeAndHash).unwrap();

    let unknown = store_with(&m.endpoint(), "AKIAUNKNOWNKEY000000", planted, MIN_PART_SIZE);
    let e = unknown.head("auth-bucket", "k").unwrap_err();
    assert!(matches!(&e, PortError::Permanent(m) if m.contains("InvalidAccessKeyId")), "{e:?}");
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "says what to check: {e}");

    let wrong = store_with(&m.endpoint(), &key_id, planted, MIN_PART_SIZE);
    for r in [
        wrong.head("auth-bucket", "k").map(|_| ()),
        wrong.get_to("auth-bucket", "k", &mut std::io::sink()).map(|_| ()),
        wrong.put_stream("auth-bucket", "k2", &mut &b"x"[..], "text/plain").map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(&e, PortError::Permanent(m) if m.contains("SignatureDoesNotMatch")), "{e:?}");
        assert!(!format!("{e} {e:?}").contains(planted), "the secret leaked into {e:?}");
    }
    for shown in [format!("{wrong:?}"), format!("{unknown:?}"), wrong.credential_ref().to_string()] {
        assert!(!shown.contains(planted) && !shown.contains(&secret), "a secret in {shown}");
    }
    assert!(wrong.credential_ref().contains(&key_id[..4]) && !wrong.credential_ref().contains(&key_id), "{}", wrong.credential_ref());
}

#[test]
fn a_dead_endpoint_is_transient() {
    let port = support::free_port();
    let s = store_with(&format!("http://127.0.0.1:{port}"), TEST_KEY_ID, TEST_SECRET, MIN_PART_SIZE);
    let e = s.bucket_region("any-bucket").unwrap_err();
    assert!(e.is_transient() && e.to_string().contains("unreachable"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// SigV4 query-string signature check (what S3 computes for a presigned GET)
// ---------------------------------------------------------------------------------------------

fn query(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().to_vec()
}

/// Recompute the signature of a presigned GET URL from its parts and `secret`, as S3 does.
fn verify_presigned(url: &str, secret: &str, expires: u64) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let (host, path_q) = rest.split_once('/').ok_or("no path")?;
    let path = format!("/{}", path_q.split_once('?').map(|(p, _)| p).unwrap_or(path_q));
    let q = query(url);
    if param(&q, "X-Amz-Expires") != Some(&expires.to_string()) {
        return Err(format!("X-Amz-Expires is not {expires}"));
    }
    if param(&q, "X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err("not SigV4".into());
    }
    let signature = param(&q, "X-Amz-Signature").ok_or("no signature")?;
    let amz_date = param(&q, "X-Amz-Date").ok_or("no date")?;
    let credential = param(&q, "X-Amz-Credential").ok_or("no credential")?.replace("%2F", "/");
    let scope = credential.split_once('/').map(|(_, s)| s).ok_or("bad credential")?;
    let mut parts = scope.split('/');
    let (date, region, service) = (parts.next().ok_or("date")?, parts.next().ok_or("region")?, parts.next().ok_or("service")?);
    let signed_headers = param(&q, "X-Amz-SignedHeaders").ok_or("no signed headers")?;
    if signed_headers != "host" {
        return Err(format!("signed headers {signed_headers}: a plain client sends only host"));
    }
    let mut canon_q: Vec<&(String, String)> = q.iter().filter(|(k, _)| k != "X-Amz-Signature").collect();
    canon_q.sort();
    let canon_q = canon_q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let canonical = format!("GET\n{path}\n{canon_q}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let want = hex::encode(hmac(&key, to_sign.as_bytes()));
    if want == signature {
        Ok(())
    } else {
        Err(format!("signature {signature} is not {want}"))
    }
}

/// `20260101T120000Z` to seconds since the epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

#[test]
fn amz_dates_parse() {
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(parse_amz_date("20000301T000001Z"), Some(951_868_801));
    assert!(between("<a>x</a>", "<a>", "</a>") == Some("x"));
}
