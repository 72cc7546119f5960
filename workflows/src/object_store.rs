//! The object-store port: an S3 bucket the hosted-cluster procedures stream etcd snapshots into
//! and hand out presigned GET URLs from (a HostedCluster's `restoreSnapshotURL`).
//!
//! Synchronous like the other [`ports`](crate::ports), with the same [`PortError`]
//! classification: throttling, 5xx, timeouts and refused connections are `Transient`; a missing
//! bucket or key is `NotFound`; everything else (credentials, permissions, region, limits) is
//! `Permanent`, and every message names the S3 error code (`NoSuchBucket`, `AccessDenied`...).
//!
//! The rule "no uploaded object is counted as a backup before its size and hash were verified"
//! is [`ObjectStore::verify`]: [`ObjectStore::put_stream`] returns the size and SHA-256 it
//! streamed, and a caller records the object only after `verify` saw the same in the store.
//!
//! The pure checks (the `s3://` URL, presign expiry and URL length) live here so the real
//! adapter and the simulator refuse exactly the same things.

use crate::ports::{PortError, PortResult};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

/// What a stored object looks like from a HEAD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub size: u64,
    /// As S3 reports it (quoted; `"<md5>-<parts>"` for a multipart object, so not a content hash).
    pub etag: Option<String>,
}

/// The bytes that went through a put or a get: their count and SHA-256, computed while streaming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// How hard [`ObjectStore::verify`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyDepth {
    /// HEAD: the stored size is the size streamed.
    Size,
    /// HEAD, then read the whole object back and hash it (costs a download of the object).
    SizeAndHash,
}

pub trait ObjectStore: Send + Sync {
    /// The bucket's region (S3's `GetBucketLocation`; an empty location means `us-east-1`).
    fn bucket_region(&self, bucket: &str) -> PortResult<String>;

    /// `None` when there is no such key (the bucket exists).
    fn head(&self, bucket: &str, key: &str) -> PortResult<Option<ObjectInfo>>;

    /// Stream `reader` to `bucket/key` until it ends: one PUT when it fits in one part, a
    /// multipart upload otherwise (an incomplete upload is aborted). Overwrites the key.
    fn put_stream(&self, bucket: &str, key: &str, reader: &mut dyn Read, content_type: &str) -> PortResult<Digest>;

    /// Stream the object into `out` (`std::io::sink()` to only hash it).
    fn get_to(&self, bucket: &str, key: &str, out: &mut dyn Write) -> PortResult<Digest>;

    /// Delete the key; deleting a missing key succeeds (S3 answers 204 either way).
    fn delete(&self, bucket: &str, key: &str) -> PortResult<()>;

    /// A URL anyone holding it can GET the object with until `expires` passes. `expires` must
    /// satisfy [`check_presign_expiry`]; the URL must satisfy [`check_presigned_url`].
    fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> PortResult<String>;

    /// Whether the stored object is the one that was uploaded: a mismatch or a missing object is
    /// `Permanent` (re-upload; never count it as a backup).
    fn verify(&self, bucket: &str, key: &str, expected: &Digest, depth: VerifyDepth) -> PortResult<()> {
        let where_ = format!("s3://{bucket}/{key}");
        let Some(info) = self.head(bucket, key)? else {
            return Err(PortError::Permanent(format!("{where_} is missing right after its upload; upload it again")));
        };
        if info.size != expected.size {
            return Err(PortError::Permanent(format!(
                "{where_} holds {} bytes where {} were uploaded; upload it again",
                info.size, expected.size
            )));
        }
        if depth == VerifyDepth::SizeAndHash {
            let read = self.get_to(bucket, key, &mut std::io::sink())?;
            if read != *expected {
                return Err(PortError::Permanent(format!(
                    "{where_} reads back as {} bytes sha256 {} where {} bytes sha256 {} were uploaded; upload it again",
                    read.size, read.sha256, expected.size, expected.sha256
                )));
            }
        }
        Ok(())
    }
}

/// S3 refuses presigned URLs valid for longer than 7 days (SigV4 `X-Amz-Expires` maximum).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(604_800);
/// A HostedCluster's `restoreSnapshotURL` items are limited to 1024 characters.
pub const MAX_PRESIGNED_URL_LEN: usize = 1024;

/// 1 s ..= 7 days, in whole seconds (SigV4 counts seconds; a fraction would be silently dropped).
pub fn check_presign_expiry(expires: Duration) -> PortResult<()> {
    if expires < Duration::from_secs(1) || expires > MAX_PRESIGN_EXPIRY || expires.subsec_nanos() != 0 {
        return Err(PortError::Permanent(format!(
            "presigned URL expiry {expires:?} is invalid: it must be whole seconds between 1 s and {} s (7 days)",
            MAX_PRESIGN_EXPIRY.as_secs()
        )));
    }
    Ok(())
}

/// A URL longer than a `restoreSnapshotURL` item may be is refused here rather than by the
/// HostedCluster admission later (long keys or session tokens make it so).
pub fn check_presigned_url(url: &str) -> PortResult<()> {
    if url.len() > MAX_PRESIGNED_URL_LEN {
        return Err(PortError::Permanent(format!(
            "presigned URL is {} characters, over the {MAX_PRESIGNED_URL_LEN} a HostedCluster restoreSnapshotURL accepts; \
             use a shorter bucket/key, or long-term credentials instead of a session token (its token is part of the URL)",
            url.len()
        )));
    }
    Ok(())
}

/// `s3://BUCKET[/PREFIX]`: where in the object store a run writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; `None` for the bucket's root.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object-store location {input:?}: {reason}")]
pub struct S3LocationError {
    pub input: String,
    pub reason: String,
}

impl S3Location {
    pub fn parse(input: &str) -> Result<S3Location, S3LocationError> {
        let err = |reason: String| S3LocationError { input: input.to_string(), reason };
        let Some(rest) = input.strip_prefix("s3://") else {
            return Err(err("it must start with s3:// (s3://BUCKET or s3://BUCKET/PREFIX)".into()));
        };
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        check_bucket_name(bucket).map_err(err)?;
        if prefix.split('/').any(|seg| seg.is_empty()) && !prefix.is_empty() {
            return Err(err(format!("the prefix {prefix:?} has an empty path segment (\"//\")")));
        }
        if prefix.chars().any(|c| c.is_control()) {
            return Err(err("the prefix contains a control character".into()));
        }
        // A key is at most 1024 bytes; leave room for the object names under the prefix.
        if prefix.len() > 512 {
            return Err(err(format!("the prefix is {} bytes; keep it under 512 (S3 keys are at most 1024)", prefix.len())));
        }
        Ok(S3Location { bucket: bucket.to_string(), prefix: (!prefix.is_empty()).then(|| prefix.to_string()) })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        match &self.prefix {
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "s3://{}/{p}", self.bucket),
            None => write!(f, "s3://{}", self.bucket),
        }
    }
}

/// S3's bucket naming rules (general purpose buckets): 3-63 characters of lowercase letters,
/// digits, dots and hyphens, starting and ending with a letter or digit, no `..`, not shaped
/// like an IP address.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let rule = "bucket names are 3-63 characters of lowercase letters, digits, '.' and '-', starting and ending with a letter or digit";
    if name.is_empty() {
        return Err(format!("no bucket name ({rule})"));
    }
    if name.len() < 3 || name.len() > 63 {
        return Err(format!("bucket name {name:?} is {} characters; {rule}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')) {
        return Err(format!("bucket name {name:?} contains {c:?}; {rule}"));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Err(format!("bucket name {name:?} must start and end with a letter or digit"));
    }
    if name.contains("..") {
        return Err(format!("bucket name {name:?} contains \"..\""));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!("bucket name {name:?} is formatted as an IP address, which S3 does not allow"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        assert_eq!(S3Location::parse("s3://my-bucket").unwrap(), S3Location { bucket: "my-bucket".into(), prefix: None });
        assert_eq!(S3Location::parse("s3://my-bucket/").unwrap().prefix, None);
        let l = S3Location::parse("s3://b.example-1/hcp//clusters").unwrap_err();
        assert!(l.reason.contains("empty path segment"), "{l}");
        // Leading and trailing slashes are only separators.
        assert_eq!(S3Location::parse("s3://b.example-1//hcp/clusters//").unwrap().prefix.as_deref(), Some("hcp/clusters"));
        let l = S3Location::parse("s3://b.example-1/hcp/clusters/").unwrap();
        assert_eq!(l.prefix.as_deref(), Some("hcp/clusters"));
        assert_eq!(l.key("snap.db"), "hcp/clusters/snap.db");
        assert_eq!(l.to_string(), "s3://b.example-1/hcp/clusters");
        assert_eq!(S3Location::parse("s3://abc").unwrap().key("x"), "x");
    }

    #[test]
    fn refuses_bad_locations_saying_why() {
        for (input, why) in [
            ("my-bucket", "must start with s3://"),
            ("https://my-bucket", "must start with s3://"),
            ("s3://", "no bucket name"),
            ("s3:///prefix", "no bucket name"),
            ("s3://ab", "is 2 characters"),
            (&format!("s3://{}", "a".repeat(64)), "is 64 characters"),
            ("s3://My-Bucket", "contains 'M'"),
            ("s3://my_bucket", "contains '_'"),
            ("s3://-bucket", "start and end"),
            ("s3://bucket-", "start and end"),
            ("s3://my..bucket", "\"..\""),
            ("s3://192.168.1.10", "IP address"),
            ("s3://bucket/a//b", "empty path segment"),
            ("s3://bucket/a\nb", "control character"),
        ] {
            let e = S3Location::parse(input).unwrap_err();
            assert!(e.to_string().contains(why), "{input:?}: {e}");
        }
        assert!(S3Location::parse(&format!("s3://bucket/{}", "p".repeat(513))).is_err());
        assert!(check_bucket_name(&"a".repeat(63)).is_ok());
        assert!(check_bucket_name("1.2.3.4.5").is_ok(), "not an IPv4 address");
    }

    #[test]
    fn presign_expiry_is_one_second_to_seven_days_in_whole_seconds() {
        assert!(check_presign_expiry(Duration::from_secs(1)).is_ok());
        assert!(check_presign_expiry(MAX_PRESIGN_EXPIRY).is_ok());
        for bad in [Duration::ZERO, Duration::from_millis(999), Duration::from_secs(604_801), Duration::from_millis(1500)] {
            let e = check_presign_expiry(bad).unwrap_err();
            assert!(!e.is_transient());
            assert!(e.to_string().contains("604800"), "{e}");
        }
    }

    #[test]
    fn presigned_urls_longer_than_a_restore_snapshot_url_item_are_refused() {
        let url = |n: usize| format!("https://b.s3.amazonaws.com/{}", "k".repeat(n - 27));
        assert_eq!(url(1024).len(), 1024);
        assert!(check_presigned_url(&url(1024)).is_ok());
        let e = check_presigned_url(&url(1025)).unwrap_err();
        assert!(matches!(e, PortError::Permanent(_)) && e.to_string().contains("1025 characters"), "{e}");
    }

    /// A store that answers HEAD and GET from fixed values, to test `verify`'s decisions.
    struct Fixed {
        head: Option<ObjectInfo>,
        read: Digest,
    }
    impl ObjectStore for Fixed {
        fn bucket_region(&self, _: &str) -> PortResult<String> {
            Ok("us-east-1".into())
        }
        fn head(&self, _: &str, _: &str) -> PortResult<Option<ObjectInfo>> {
            Ok(self.head.clone())
        }
        fn put_stream(&self, _: &str, _: &str, _: &mut dyn Read, _: &str) -> PortResult<Digest> {
            unreachable!("verify never uploads")
        }
        fn get_to(&self, _: &str, _: &str, _: &mut dyn Write) -> PortResult<Digest> {
            Ok(self.read.clone())
        }
        fn delete(&self, _: &str, _: &str) -> PortResult<()> {
            unreachable!("verify never deletes")
        }
        fn presign_get(&self, _: &str, _: &str, _: Duration) -> PortResult<String> {
            unreachable!("verify never presigns")
        }
    }

    #[test]
    fn verify_counts_an_object_only_when_size_and_hash_match() {
        let up = Digest { size: 10, sha256: "aa".into() };
        let info = |size| Some(ObjectInfo { size, etag: None });
        let ok = Fixed { head: info(10), read: up.clone() };
        assert!(ok.verify("b", "k", &up, VerifyDepth::SizeAndHash).is_ok());
        let missing = Fixed { head: None, read: up.clone() };
        assert!(missing.verify("b", "k", &up, VerifyDepth::Size).unwrap_err().to_string().contains("missing"));
        let short = Fixed { head: info(9), read: up.clone() };
        assert!(short.verify("b", "k", &up, VerifyDepth::Size).unwrap_err().to_string().contains("holds 9 bytes"));
        let corrupt = Fixed { head: info(10), read: Digest { size: 10, sha256: "bb".into() } };
        assert!(corrupt.verify("b", "k", &up, VerifyDepth::Size).is_ok(), "size only does not read back");
        let e = corrupt.verify("b", "k", &up, VerifyDepth::SizeAndHash).unwrap_err();
        assert!(matches!(e, PortError::Permanent(_)) && e.to_string().contains("sha256 bb"), "{e}");
    }
}
