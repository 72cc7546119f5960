//! The S3 object store of a simulated world (`../shared/HOSTED.md` §A.3, §C): buckets in a
//! region, objects with their bytes, presigned GET URLs that expire on the simulated clock, and
//! the errors S3 gives, worded as the S3 adapter words them (`S3 <op> s3://b/k: <Code> (HTTP
//! <status>): <message>`), classified the same way.
//!
//! Requests take time, and fail with `503 SlowDown` where the world's faults say so: a PUT that
//! fails stores nothing (S3 writes an object whole or not at all).

use crate::world::{EffectKind, World};
use crate::Sim;
use drctl_runtime::clock::Timestamp;
use drctl_workflows::object_store::{check_presign_expiry, check_presigned_url, Digest, ObjectInfo, ObjectStore};
use drctl_workflows::ports::{PortError, PortResult};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// How long one request takes (lo, hi) in ms, and how fast bytes move (bytes per ms).
const REQUEST_MS: (u64, u64) = (20, 120);
const BYTES_PER_MS: u64 = 50_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// When it was written (the world's clock).
    pub written_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub region: String,
    pub objects: BTreeMap<String, StoredObject>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStoreWorld {
    pub buckets: BTreeMap<String, Bucket>,
}

impl ObjectStoreWorld {
    pub fn with_bucket(name: &str, region: &str) -> ObjectStoreWorld {
        let mut s = ObjectStoreWorld::default();
        s.buckets.insert(name.into(), Bucket { region: region.into(), objects: BTreeMap::new() });
        s
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<&StoredObject> {
        self.buckets.get(bucket)?.objects.get(key)
    }
}

/// The digest of `bytes` as the ports report it.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest { size: bytes.len() as u64, sha256: hex::encode(sha2::Sha256::digest(bytes)) }
}

/// S3's quoted ETag of a single-PUT object: the MD5 of its bytes. The simulator has no MD5;
/// the first 16 bytes of the SHA-256 stand in (the procedures never read an ETag as a hash).
fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(sha2::Sha256::digest(bytes))[..32])
}

fn s3_error(op: &str, bucket: &str, key: Option<&str>, status: u16, code: &str, message: &str) -> PortError {
    let what = match key {
        Some(k) => format!("S3 {op} s3://{bucket}/{k}"),
        None => format!("S3 {op} s3://{bucket}"),
    };
    let text = format!("{what}: {code} (HTTP {status}): {message}");
    match (code, status) {
        ("SlowDown" | "InternalError" | "ServiceUnavailable", _) | (_, 500..=599) => PortError::Transient(text),
        ("NoSuchBucket" | "NoSuchKey", _) => PortError::NotFound(text),
        _ => PortError::Permanent(text),
    }
}

fn no_such_bucket(op: &str, bucket: &str, key: Option<&str>) -> PortError {
    s3_error(op, bucket, key, 404, "NoSuchBucket", "The specified bucket does not exist")
}

/// The signing key of the simulated store's credentials: presigned URLs carry an HMAC-like tag
/// of what they grant, so a tampered or expired URL is refused.
const SIGNING_KEY: &[u8] = b"drctl-sim-object-store";

fn url_signature(bucket: &str, key: &str, issued: Timestamp, expires_s: u64) -> String {
    let mut h = sha2::Sha256::new();
    for part in [SIGNING_KEY, bucket.as_bytes(), key.as_bytes(), &issued.0.to_be_bytes(), &expires_s.to_be_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

impl World {
    fn store_request(&mut self, bytes: u64) {
        let ms = self.rng.range(REQUEST_MS.0, REQUEST_MS.1) + bytes / BYTES_PER_MS;
        self.pass_time(ms);
    }

    /// One request to the object store: time passes, then a `503 SlowDown` where the world's
    /// faults put one, or `f`.
    fn s3_request<T>(
        &mut self,
        op: &str,
        bucket: &str,
        key: Option<&str>,
        bytes: u64,
        f: impl FnOnce(&mut World) -> PortResult<T>,
    ) -> PortResult<T> {
        self.store_request(bytes);
        if self.s3_error_now() {
            return Err(s3_error(op, bucket, key, 503, "SlowDown", "Please reduce your request rate."));
        }
        f(self)
    }

    fn bucket_mut(&mut self, op: &str, bucket: &str, key: Option<&str>) -> PortResult<&mut Bucket> {
        self.object_store.as_mut().and_then(|s| s.buckets.get_mut(bucket)).ok_or_else(|| no_such_bucket(op, bucket, key))
    }

    /// GET of a presigned URL, as `etcd-init`'s `curl` makes it: the object's bytes, or S3's
    /// XML error body with its HTTP status.
    pub fn fetch_presigned(&self, url: &str) -> Result<Vec<u8>, (u16, String)> {
        let xml = |code: &str, message: &str| {
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>0</RequestId><HostId>0</HostId></Error>")
        };
        let Some((bucket, key, issued, expires_s, sig)) = parse_presigned(url) else {
            return Err((
                403,
                xml("AccessDenied", "Query-string authentication requires the Signature, Expires and Credential parameters"),
            ));
        };
        if url_signature(&bucket, &key, issued, expires_s) != sig {
            return Err((
                403,
                xml("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."),
            ));
        }
        if self.now > issued.plus(Duration::from_secs(expires_s)) {
            return Err((403, xml("AccessDenied", "Request has expired")));
        }
        let Some(b) = self.object_store.as_ref().and_then(|s| s.buckets.get(&bucket)) else {
            return Err((404, xml("NoSuchBucket", "The specified bucket does not exist")));
        };
        b.objects.get(&key).map(|o| o.bytes.clone()).ok_or_else(|| (404, xml("NoSuchKey", "The specified key does not exist.")))
    }
}

/// `https://<bucket>.s3.<region>.amazonaws.com/<key>?X-Amz-Date=<ms>&X-Amz-Expires=<s>&X-Amz-Signature=<sig>`
fn parse_presigned(url: &str) -> Option<(String, String, Timestamp, u64, String)> {
    let rest = url.strip_prefix("https://")?;
    let (host, rest) = rest.split_once('/')?;
    let bucket = host.split_once(".s3.")?.0.to_string();
    let (key, query) = rest.split_once('?')?;
    let mut date = None;
    let mut expires = None;
    let mut sig = None;
    for kv in query.split('&') {
        match kv.split_once('=')? {
            ("X-Amz-Date", v) => date = v.parse().ok(),
            ("X-Amz-Expires", v) => expires = v.parse().ok(),
            ("X-Amz-Signature", v) => sig = Some(v.to_string()),
            _ => {}
        }
    }
    Some((bucket, key.to_string(), Timestamp(date?), expires?, sig?))
}

impl World {
    /// `GetBucketLocation`. Answered from the store's directory: no time passes and no fault
    /// applies (a client asks once and caches the answer, so how often it asks varies).
    pub fn s3_bucket_region(&mut self, bucket: &str) -> PortResult<String> {
        Ok(self.bucket_mut("GetBucketLocation", bucket, None)?.region.clone())
    }

    pub fn s3_head(&mut self, bucket: &str, key: &str) -> PortResult<Option<ObjectInfo>> {
        self.s3_request("HeadObject", bucket, Some(key), 0, |w| {
            let b = w.bucket_mut("HeadObject", bucket, Some(key))?;
            Ok(b.objects.get(key).map(|o| ObjectInfo { size: o.bytes.len() as u64, etag: Some(etag_of(&o.bytes)) }))
        })
    }

    /// `PutObject`: the object written whole, or not at all.
    pub fn s3_put(&mut self, bucket: &str, key: &str, bytes: Vec<u8>, content_type: &str) -> PortResult<Digest> {
        let digest = digest_of(&bytes);
        self.s3_request("PutObject", bucket, Some(key), bytes.len() as u64, |w| {
            let now = w.now;
            let b = w.bucket_mut("PutObject", bucket, Some(key))?;
            b.objects.insert(key.into(), StoredObject { bytes, content_type: content_type.into(), written_at: now });
            w.note(format!("s3://{bucket}/{key}: written ({} bytes)", digest.size));
            w.effect(EffectKind::ObjectPut, format!("{bucket}/{key}"));
            Ok(digest)
        })
    }

    pub fn s3_get(&mut self, bucket: &str, key: &str) -> PortResult<Vec<u8>> {
        let size = self.object_store.as_ref().and_then(|s| s.object(bucket, key)).map_or(0, |o| o.bytes.len() as u64);
        self.s3_request("GetObject", bucket, Some(key), size, |w| {
            let b = w.bucket_mut("GetObject", bucket, Some(key))?;
            b.objects
                .get(key)
                .map(|o| o.bytes.clone())
                .ok_or_else(|| s3_error("GetObject", bucket, Some(key), 404, "NoSuchKey", "The specified key does not exist."))
        })
    }

    /// `DeleteObject`: a missing key is deleted too (204 either way).
    pub fn s3_delete(&mut self, bucket: &str, key: &str) -> PortResult<()> {
        self.s3_request("DeleteObject", bucket, Some(key), 0, |w| {
            let b = w.bucket_mut("DeleteObject", bucket, Some(key))?;
            if b.objects.remove(key).is_some() {
                w.note(format!("s3://{bucket}/{key}: deleted"));
                w.effect(EffectKind::ObjectDeleted, format!("{bucket}/{key}"));
            }
            Ok(())
        })
    }
}

/// The object-store port on a simulated world.
#[derive(Clone)]
pub struct SimObjectStore(pub Sim);

impl ObjectStore for SimObjectStore {
    fn bucket_region(&self, bucket: &str) -> PortResult<String> {
        self.0.port_op(|w| w.s3_bucket_region(bucket))
    }

    fn head(&self, bucket: &str, key: &str) -> PortResult<Option<ObjectInfo>> {
        self.0.port_op(|w| w.s3_head(bucket, key))
    }

    fn put_stream(&self, bucket: &str, key: &str, reader: &mut dyn Read, content_type: &str) -> PortResult<Digest> {
        let mut bytes = Vec::new();
        // A stream that breaks is an upload that never completed: nothing is stored.
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| PortError::Transient(format!("S3 PutObject s3://{bucket}/{key}: reading the source broke off: {e}")))?;
        self.0.port_op(|w| w.s3_put(bucket, key, bytes, content_type))
    }

    fn get_to(&self, bucket: &str, key: &str, out: &mut dyn Write) -> PortResult<Digest> {
        let bytes = self.0.port_op(|w| w.s3_get(bucket, key))?;
        out.write_all(&bytes).map_err(|e| PortError::Permanent(format!("S3 GetObject s3://{bucket}/{key}: writing the download: {e}")))?;
        Ok(digest_of(&bytes))
    }

    fn delete(&self, bucket: &str, key: &str) -> PortResult<()> {
        self.0.port_op(|w| w.s3_delete(bucket, key))
    }

    fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> PortResult<String> {
        check_presign_expiry(expires)?;
        // Presigning is local to the client: no request, no time, no fault.
        self.0.read(|w| {
            let region = w
                .object_store
                .as_ref()
                .and_then(|s| s.buckets.get(bucket))
                .map_or_else(|| crate::scenario::BACKUP_BUCKET_REGION.to_string(), |b| b.region.clone());
            let secs = expires.as_secs();
            let sig = url_signature(bucket, key, w.now, secs);
            let url = format!(
                "https://{bucket}.s3.{region}.amazonaws.com/{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={}&X-Amz-Expires={secs}&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}",
                w.now.0
            );
            check_presigned_url(&url)?;
            Ok(url)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drctl_workflows::object_store::VerifyDepth;

    fn store() -> (Sim, SimObjectStore) {
        let sim = Sim::scenario("hosted-healthy", 7).unwrap();
        (sim.clone(), SimObjectStore(sim))
    }

    #[test]
    fn objects_are_written_whole_read_back_and_verified() {
        let (_, s) = store();
        let bucket = crate::scenario::BACKUP_BUCKET;
        assert_eq!(s.bucket_region(bucket).unwrap(), crate::scenario::BACKUP_BUCKET_REGION);
        assert_eq!(s.head(bucket, "k").unwrap(), None);
        let d = s.put_stream(bucket, "k", &mut &b"hello snapshot"[..], "application/octet-stream").unwrap();
        assert_eq!(d, digest_of(b"hello snapshot"));
        s.verify(bucket, "k", &d, VerifyDepth::SizeAndHash).unwrap();
        let wrong = Digest { size: d.size, sha256: "00".repeat(32) };
        assert!(matches!(s.verify(bucket, "k", &wrong, VerifyDepth::SizeAndHash), Err(PortError::Permanent(_))));
        s.delete(bucket, "k").unwrap();
        s.delete(bucket, "k").unwrap();
        assert_eq!(s.head(bucket, "k").unwrap(), None);
        let e = s.head("nosuch", "k").unwrap_err();
        assert!(matches!(&e, PortError::NotFound(m) if m.contains("NoSuchBucket (HTTP 404)")), "{e:?}");
    }

    #[test]
    fn a_presigned_url_serves_the_object_until_it_expires() {
        let (sim, s) = store();
        let bucket = crate::scenario::BACKUP_BUCKET;
        s.put_stream(bucket, "snap.db", &mut &b"data"[..], "application/octet-stream").unwrap();
        let url = s.presign_get(bucket, "snap.db", Duration::from_secs(3600)).unwrap();
        assert_eq!(sim.read(|w| w.fetch_presigned(&url)), Ok(b"data".to_vec()));
        let tampered = url.replace("snap.db", "other.db");
        assert!(sim.read(|w| w.fetch_presigned(&tampered)).unwrap_err().1.contains("SignatureDoesNotMatch"));
        sim.write(|w| w.pass_time(3_601_000));
        let (status, body) = sim.read(|w| w.fetch_presigned(&url)).unwrap_err();
        assert_eq!(status, 403);
        assert!(body.starts_with("<?xml") && body.contains("Request has expired"), "{body}");
        assert!(s.presign_get(bucket, "snap.db", Duration::from_secs(604_801)).is_err());
    }
}
