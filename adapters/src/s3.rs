//! [`S3Store`]: the object-store port on real S3 (or an S3-compatible server such as MinIO or
//! moto) through the AWS SDK, which does the SigV4 signing, presigning and request retries.
//!
//! - Credentials come from the AWS default chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
//!   the shared credentials/config files with `AWS_PROFILE` or an explicit profile, web identity,
//!   ECS, IMDS), or are handed in explicitly ([`S3Credentials::Static`], e.g. read from a
//!   Kubernetes Secret). They are resolved once at [`S3Store::connect`] so "no credentials" is
//!   an error there, not in the middle of a run. Only a reference is kept for records
//!   ([`S3Store::credential_ref`]: where they came from and a masked key id); the secret key
//!   never reaches a message, a log line or a `Debug` output of ours.
//! - Every bucket is addressed in its own region ([`ObjectStore::bucket_region`], cached), so a
//!   bucket outside the default region works without `AuthorizationHeaderMalformed`.
//! - Uploads stream from a reader: one PUT when the data fits in one part, a multipart upload
//!   otherwise (a failed one is aborted). The part size bounds memory (one part is buffered).
//! - Failures are reduced to an [`S3Failure`] and classified in one place, [`classify`].

use crate::blocking::Blocking;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use drctl_workflows::object_store::{check_presign_expiry, check_presigned_url, Digest, ObjectInfo, ObjectStore};
use drctl_workflows::ports::{PortError, PortResult};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::Duration;

/// S3's smallest part (every part but the last must be at least this).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest part, and the largest single PUT.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's limit on the parts of one multipart upload.
pub const MAX_PARTS: i32 = 10_000;
/// 64 MiB parts: a 16 GiB etcd snapshot (etcd's own database limit is 8 GiB by default) is
/// 256 parts, and only one part is held in memory.
pub const DEFAULT_PART_SIZE: usize = 64 * 1024 * 1024;
/// The region of a bucket whose location constraint is empty, and of everything when neither
/// the environment nor the profile name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A secret string: shown as `***` by `Debug`, never `Display`ed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the credentials come from.
#[derive(Debug, Clone, Default)]
pub enum S3Credentials {
    /// The AWS default chain: environment, then the profile `AWS_PROFILE` names (or `default`)
    /// in the shared files, then web identity, ECS and IMDS.
    #[default]
    DefaultChain,
    /// The default chain with this profile instead of `AWS_PROFILE`'s.
    Profile(String),
    /// Given explicitly (e.g. from a Kubernetes Secret).
    Static { access_key_id: String, secret_access_key: Secret, session_token: Option<Secret> },
}

#[derive(Debug, Clone)]
pub struct S3Options {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); addressed path-style
    /// (`<endpoint>/<bucket>/<key>`), as MinIO and moto expect. `None`: AWS, virtual-hosted.
    pub endpoint: Option<String>,
    /// The region for requests not tied to a bucket (and the fallback when a bucket's location
    /// may not be read); `None`: from `AWS_REGION`/the profile, else `us-east-1`.
    pub region: Option<String>,
    pub credentials: S3Credentials,
    /// Data up to one part goes in one PUT; more goes in parts of this size
    /// (`MIN_PART_SIZE..=MAX_PART_SIZE`).
    pub part_size: usize,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options { endpoint: None, region: None, credentials: S3Credentials::DefaultChain, part_size: DEFAULT_PART_SIZE }
    }
}

/// The object store on S3. Cheap to share (`Arc` it); one client per bucket region.
pub struct S3Store {
    rt: Blocking,
    /// Configuration in the default region; per-region clients are derived from it.
    base: aws_sdk_s3::Config,
    base_client: Client,
    default_region: String,
    endpoint: Option<String>,
    credential_ref: String,
    part_size: usize,
    /// bucket -> (region, client in that region). Buckets do not move between regions.
    buckets: Mutex<HashMap<String, (String, Client)>>,
}

impl fmt::Debug for S3Store {
    // By hand: the SDK configuration holds the credentials provider.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("endpoint", &self.endpoint)
            .field("default_region", &self.default_region)
            .field("credentials", &self.credential_ref)
            .field("part_size", &self.part_size)
            .finish()
    }
}

impl S3Store {
    /// Load the configuration, resolve the credentials once and build the client. No request
    /// is sent to S3 yet (the credential chain may ask its own sources: STS, ECS, IMDS).
    pub fn connect(rt: Blocking, opts: S3Options) -> PortResult<S3Store> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&opts.part_size) {
            return Err(PortError::Permanent(format!(
                "S3 part size {} is outside S3's limits {MIN_PART_SIZE}..={MAX_PART_SIZE} bytes",
                opts.part_size
            )));
        }
        if let Some(ep) = &opts.endpoint {
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                return Err(PortError::Permanent(format!(
                    "S3 endpoint {ep:?} is not a URL: give it as http://HOST:PORT or https://HOST[:PORT]"
                )));
            }
        }
        // rustls with ring, as kube uses: no aws-lc build. Native roots (the system's CAs).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        // A dead endpoint fails the connect in 10 s; the read timeout bounds a server that
        // accepted a request and went silent (generous: a 64 MiB part on a slow link).
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).timeout_config(timeouts);
        let profile = match &opts.credentials {
            S3Credentials::Profile(p) => Some(p.clone()),
            _ => None,
        };
        loader = match &opts.region {
            Some(r) => loader.region(Region::new(r.clone())),
            // Environment, then the profile; not the default chain's instance metadata: every
            // bucket is addressed in its own region anyway, and off EC2 an IMDS probe only
            // costs time and warnings.
            None => {
                let mut from_profile = aws_config::profile::ProfileFileRegionProvider::builder();
                if let Some(p) = &profile {
                    from_profile = from_profile.profile_name(p);
                }
                loader.region(
                    aws_config::meta::region::RegionProviderChain::first_try(
                        aws_config::environment::EnvironmentVariableRegionProvider::new(),
                    )
                    .or_else(from_profile.build())
                    .or_else(Region::new(DEFAULT_REGION)),
                )
            }
        };
        let source = match &opts.credentials {
            // What the chain will most likely use, for the record (the chain's order).
            S3Credentials::DefaultChain => {
                let profile = std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty());
                if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
                    "environment (AWS_ACCESS_KEY_ID)".to_string()
                } else if let Some(p) = profile {
                    format!("profile {p:?} (AWS_PROFILE)")
                } else {
                    "AWS default chain".to_string()
                }
            }
            S3Credentials::Profile(p) => {
                loader = loader.profile_name(p);
                format!("profile {p:?}")
            }
            S3Credentials::Static { access_key_id, secret_access_key, session_token } => {
                loader = loader.credentials_provider(Credentials::new(
                    access_key_id,
                    secret_access_key.expose(),
                    session_token.as_ref().map(|t| t.expose().to_string()),
                    None,
                    "drctl-static",
                ));
                "given explicitly".to_string()
            }
        };
        let (sdk, key_id) = rt.block_on(async {
            let sdk = loader.load().await;
            let Some(provider) = sdk.credentials_provider() else {
                return Err(no_credentials("no credentials provider is configured"));
            };
            // The provider's error says which sources it tried; it never holds a secret.
            let creds = provider.provide_credentials().await.map_err(|e| no_credentials(&error_chain(&e)))?;
            Ok((sdk, creds.access_key_id().to_string()))
        })?;
        let default_region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| DEFAULT_REGION.to_string());
        let mut b = aws_sdk_s3::config::Builder::from(&sdk).region(Region::new(default_region.clone()));
        if let Some(ep) = &opts.endpoint {
            b = b.endpoint_url(ep.clone()).force_path_style(true);
        }
        let base = b.build();
        Ok(S3Store {
            rt,
            base_client: Client::from_conf(base.clone()),
            base,
            default_region,
            endpoint: opts.endpoint,
            credential_ref: format!("{source}, access key id {}", mask_key_id(&key_id)),
            part_size: opts.part_size,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Where the credentials came from, with a masked key id: what a run may record.
    pub fn credential_ref(&self) -> &str {
        &self.credential_ref
    }

    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// The client for `bucket`'s region (looked up once).
    fn client_for(&self, bucket: &str) -> PortResult<Client> {
        self.bucket(bucket).map(|(_, c)| c)
    }

    /// `bucket`'s region and a client in it, looked up once.
    fn bucket(&self, bucket: &str) -> PortResult<(String, Client)> {
        if let Some(known) = self.buckets.lock().unwrap_or_else(|p| p.into_inner()).get(bucket) {
            return Ok(known.clone());
        }
        let region = self.lookup_region(bucket)?;
        let client = if region == self.default_region {
            self.base_client.clone()
        } else {
            Client::from_conf(self.base.to_builder().region(Region::new(region.clone())).build())
        };
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).insert(bucket.to_string(), (region.clone(), client.clone()));
        Ok((region, client))
    }

    fn lookup_region(&self, bucket: &str) -> PortResult<String> {
        let res = self.rt.block_on(self.base_client.get_bucket_location().bucket(bucket).send());
        match res {
            Ok(out) => Ok(region_of_location(out.location_constraint().map(|c| c.as_str()))),
            Err(e) => {
                // Asked in the wrong region, S3 names the right one in a header.
                if let SdkError::ServiceError(ctx) = &e {
                    if let Some(r) = ctx.raw().headers().get("x-amz-bucket-region").filter(|r| !r.is_empty()) {
                        return Ok(r.to_string());
                    }
                }
                let f = s3_failure(&e);
                // A key scoped to objects may not read the location: use the configured region
                // (AuthorizationHeaderMalformed or a redirect will say so if it is wrong).
                if matches!(&f, S3Failure::Service { code: Some(c), .. } if c == "AccessDenied") {
                    tracing::warn!(bucket, region = %self.default_region, "s3:GetBucketLocation denied; assuming the configured region");
                    return Ok(self.default_region.clone());
                }
                Err(in_context("GetBucketLocation", bucket, None, classify(&f)))
            }
        }
    }

    fn upload_single(&self, client: &Client, bucket: &str, key: &str, data: Vec<u8>, content_type: &str) -> PortResult<()> {
        self.rt
            .block_on(
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_type(content_type)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(ByteStream::from(data))
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| in_context("PutObject", bucket, Some(key), classify(&s3_failure(&e))))
    }

    /// Upload `first` and the rest of `reader` in parts; the caller has seen that there is more
    /// than one part (`carry` is the byte read past the first part).
    #[allow(clippy::too_many_arguments)]
    fn upload_multipart(
        &self,
        client: &Client,
        bucket: &str,
        key: &str,
        first: Vec<u8>,
        carry: u8,
        reader: &mut dyn Read,
        hasher: &mut Sha256,
        content_type: &str,
    ) -> PortResult<u64> {
        let created = self
            .rt
            .block_on(
                client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .content_type(content_type)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .send(),
            )
            .map_err(|e| in_context("CreateMultipartUpload", bucket, Some(key), classify(&s3_failure(&e))))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(PortError::Permanent(format!("CreateMultipartUpload s3://{bucket}/{key}: the answer has no UploadId")));
        };
        let result = self.upload_parts(client, bucket, key, &upload_id, first, carry, reader, hasher);
        if result.is_err() {
            // Parts of an unfinished upload are billed until aborted. A failed abort leaves
            // them to the bucket's AbortIncompleteMultipartUpload lifecycle rule.
            if let Err(e) = self.rt.block_on(client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send()) {
                tracing::warn!(bucket, key, upload_id, error = %classify(&s3_failure(&e)), "could not abort the failed multipart upload");
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn upload_parts(
        &self,
        client: &Client,
        bucket: &str,
        key: &str,
        upload_id: &str,
        first: Vec<u8>,
        carry: u8,
        reader: &mut dyn Read,
        hasher: &mut Sha256,
    ) -> PortResult<u64> {
        let mut parts = Vec::new();
        let mut total = first.len() as u64;
        let mut part = first;
        let mut number = 1;
        let mut next_carry = Some(carry);
        // Bounded: each round consumes a full part of the reader, at most MAX_PARTS rounds.
        loop {
            let out = self
                .rt
                .block_on(
                    client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32)
                        .body(ByteStream::from(std::mem::take(&mut part)))
                        .send(),
                )
                .map_err(|e| in_context(&format!("UploadPart {number}"), bucket, Some(key), classify(&s3_failure(&e))))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                    .build(),
            );
            let Some(c) = next_carry.take() else { break };
            // `read_one` hashed it when it was read.
            part.push(c);
            read_part(reader, &mut part, self.part_size, hasher)?;
            number += 1;
            if number > MAX_PARTS {
                return Err(PortError::Permanent(format!(
                    "s3://{bucket}/{key}: the data is larger than {MAX_PARTS} parts of {} bytes; raise the part size",
                    self.part_size
                )));
            }
            if part.len() == self.part_size {
                next_carry = read_one(reader, hasher)?;
            }
            total += part.len() as u64;
        }
        self.rt
            .block_on(
                client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send(),
            )
            .map_err(|e| in_context("CompleteMultipartUpload", bucket, Some(key), classify(&s3_failure(&e))))?;
        Ok(total)
    }
}

impl ObjectStore for S3Store {
    fn bucket_region(&self, bucket: &str) -> PortResult<String> {
        self.bucket(bucket).map(|(r, _)| r)
    }

    fn head(&self, bucket: &str, key: &str) -> PortResult<Option<ObjectInfo>> {
        let client = self.client_for(bucket)?;
        match self.rt.block_on(client.head_object().bucket(bucket).key(key).send()) {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                etag: out.e_tag().map(str::to_string),
            })),
            Err(e) => match classify(&s3_failure(&e)) {
                // A HEAD answer has no body, so no code: the bucket was found above, so a 404
                // is the key.
                PortError::NotFound(_) => Ok(None),
                other => Err(in_context("HeadObject", bucket, Some(key), other)),
            },
        }
    }

    fn put_stream(&self, bucket: &str, key: &str, reader: &mut dyn Read, content_type: &str) -> PortResult<Digest> {
        let client = self.client_for(bucket)?;
        let mut hasher = Sha256::new();
        let mut first = Vec::new();
        read_part(reader, &mut first, self.part_size, &mut hasher)?;
        // One byte past a full part tells a single PUT from a multipart upload without
        // buffering a second part.
        let carry = if first.len() == self.part_size { read_one(reader, &mut hasher)? } else { None };
        let size = match carry {
            None => {
                let n = first.len() as u64;
                self.upload_single(&client, bucket, key, first, content_type)?;
                n
            }
            Some(c) => self.upload_multipart(&client, bucket, key, first, c, reader, &mut hasher, content_type)?,
        };
        Ok(Digest { size, sha256: hex::encode(hasher.finalize()) })
    }

    fn get_to(&self, bucket: &str, key: &str, out: &mut dyn Write) -> PortResult<Digest> {
        let client = self.client_for(bucket)?;
        let ctx = |e: PortError| in_context("GetObject", bucket, Some(key), e);
        self.rt.block_on(async {
            let resp = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| ctx(classify(&s3_failure(&e))))?;
            let mut body = resp.body;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            // Bounded by the object's size.
            loop {
                let chunk = match body.try_next().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => return Err(ctx(PortError::Transient(format!("the download broke off: {}", error_chain(&e))))),
                };
                hasher.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk).map_err(|e| ctx(PortError::Permanent(format!("writing the download: {e}"))))?;
            }
            Ok(Digest { size, sha256: hex::encode(hasher.finalize()) })
        })
    }

    fn delete(&self, bucket: &str, key: &str) -> PortResult<()> {
        let client = self.client_for(bucket)?;
        self.rt
            .block_on(client.delete_object().bucket(bucket).key(key).send())
            .map(|_| ())
            .map_err(|e| in_context("DeleteObject", bucket, Some(key), classify(&s3_failure(&e))))
    }

    fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> PortResult<String> {
        check_presign_expiry(expires)?;
        let client = self.client_for(bucket)?;
        let config = PresigningConfig::expires_in(expires)
            .map_err(|e| PortError::Permanent(format!("presigning s3://{bucket}/{key}: {}", error_chain(&e))))?;
        let req = self
            .rt
            .block_on(client.get_object().bucket(bucket).key(key).presigned(config))
            .map_err(|e| in_context("presign GetObject", bucket, Some(key), classify(&s3_failure(&e))))?;
        let url = req.uri().to_string();
        check_presigned_url(&url).map_err(|e| in_context("presign GetObject", bucket, Some(key), e))?;
        Ok(url)
    }
}

/// An empty (or absent) location constraint is us-east-1; `EU` is the legacy name of eu-west-1.
pub fn region_of_location(constraint: Option<&str>) -> String {
    match constraint.map(str::trim) {
        None | Some("") => DEFAULT_REGION.to_string(),
        Some("EU") => "eu-west-1".to_string(),
        Some(r) => r.to_string(),
    }
}

fn no_credentials(why: &str) -> PortError {
    PortError::Permanent(format!(
        "no AWS credentials (the last source tried says: {}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile \
         in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE) or ~/.aws/config",
        why.trim_end_matches('.')
    ))
}

/// `AKIA…WXYZ`: enough to tell keys apart in a record, not enough to use one.
pub fn mask_key_id(id: &str) -> String {
    if id.len() >= 12 && id.is_ascii() {
        format!("{}…{}", &id[..4], &id[id.len() - 4..])
    } else {
        "…".to_string()
    }
}

/// Append up to `limit - buf.len()` bytes of `reader` to `buf`, hashing them.
fn read_part(reader: &mut dyn Read, buf: &mut Vec<u8>, limit: usize, hasher: &mut Sha256) -> PortResult<()> {
    let start = buf.len();
    let want = (limit.saturating_sub(start)) as u64;
    reader.take(want).read_to_end(buf).map_err(source_error)?;
    hasher.update(&buf[start..]);
    Ok(())
}

fn read_one(reader: &mut dyn Read, hasher: &mut Sha256) -> PortResult<Option<u8>> {
    let mut b = [0u8; 1];
    // Bounded: `Interrupted` is the only error retried, and it means no byte was consumed.
    loop {
        match reader.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => {
                hasher.update(b);
                return Ok(Some(b[0]));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(source_error(e)),
        }
    }
}

/// The upload's source broke (e.g. the stream out of a pod): a lost connection is worth a new
/// attempt, anything else is not.
fn source_error(e: std::io::Error) -> PortError {
    use std::io::ErrorKind as K;
    let msg = format!("reading the data to upload: {e}");
    match e.kind() {
        K::TimedOut | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof | K::WouldBlock => {
            PortError::Transient(msg)
        }
        _ => PortError::Permanent(msg),
    }
}

// ---------------------------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------------------------

/// An SDK failure reduced to what decides its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Failure {
    /// S3 answered with an error (a HEAD's has no body: no code).
    Service { status: u16, code: Option<String>, message: Option<String> },
    /// No connection: refused, reset, name not resolved.
    Connection(String),
    /// No answer in time.
    Timeout(String),
    /// An answer that could not be read (cut off, not the protocol).
    Response(String),
    /// Our side: the request could not be built, credentials could not be loaded, TLS setup.
    Config(String),
}

/// Reduce an SDK error (an exhaustive match: a new variant is a compile error here).
pub fn s3_failure<E>(e: &SdkError<E, HttpResponse>) -> S3Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => S3Failure::Service {
            status: ctx.raw().status().as_u16(),
            code: ctx.err().code().map(str::to_string),
            message: ctx.err().message().map(str::to_string),
        },
        SdkError::TimeoutError(_) => S3Failure::Timeout(error_chain(e)),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                S3Failure::Timeout(error_chain(e))
            } else if d.is_io() {
                S3Failure::Connection(error_chain(e))
            } else if d.is_user() {
                S3Failure::Config(error_chain(e))
            } else {
                transport_failure(e)
            }
        }
        SdkError::ResponseError(_) => S3Failure::Response(error_chain(e)),
        SdkError::ConstructionFailure(_) => S3Failure::Config(error_chain(e)),
        // `SdkError` is non-exhaustive: an unknown kind is retried, not trusted.
        _ => S3Failure::Response(error_chain(e)),
    }
}

/// A dispatch failure the SDK did not tag: walk the sources for I/O error kinds.
fn transport_failure(e: &(dyn std::error::Error + 'static)) -> S3Failure {
    use std::io::ErrorKind as K;
    let text = error_chain(e);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded by the length of the source chain.
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                K::TimedOut => return S3Failure::Timeout(text),
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::HostUnreachable
                | K::NetworkUnreachable => return S3Failure::Connection(text),
                _ => {}
            }
        }
        cur = err.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("invalid dns name") {
        S3Failure::Config(text)
    } else {
        S3Failure::Connection(text)
    }
}

/// Codes S3 documents as "try again": throttling, its own trouble, a conflicting operation.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
];

/// The one classification of S3 failures.
///
/// Throttling, 5xx, timeouts and connection trouble are transient; `NoSuchBucket`, `NoSuchKey`,
/// `NoSuchUpload` and a code-less 404 are not-found; the rest (`AccessDenied`,
/// `InvalidAccessKeyId`, `SignatureDoesNotMatch`, `RequestTimeTooSkewed`, `InvalidRequest`,
/// `AuthorizationHeaderMalformed`, `PermanentRedirect`, `EntityTooLarge`...) are permanent.
/// Every message names the code and says what to do.
pub fn classify(f: &S3Failure) -> PortError {
    match f {
        S3Failure::Service { status, code, message } => {
            let code_s = code.as_deref().unwrap_or(match status {
                404 => "NotFound",
                403 => "Forbidden",
                _ => "(no error code)",
            });
            let mut text = format!("{code_s} (HTTP {status})");
            if let Some(m) = message.as_deref().filter(|m| !m.is_empty()) {
                text.push_str(": ");
                text.push_str(m);
            }
            if let Some(h) = hint(code_s) {
                text.push_str(" — ");
                text.push_str(h);
            }
            match (code.as_deref(), *status) {
                (Some(c), _) if TRANSIENT_CODES.contains(&c) => PortError::Transient(text),
                (Some("NoSuchBucket" | "NoSuchKey" | "NoSuchUpload" | "NotFound"), _) | (None, 404) => PortError::NotFound(text),
                (_, 429 | 500..=599) => PortError::Transient(text),
                _ => PortError::Permanent(text),
            }
        }
        S3Failure::Connection(m) => PortError::Transient(format!("S3 endpoint unreachable: {m}")),
        S3Failure::Timeout(m) => PortError::Transient(format!("S3 request timed out: {m}")),
        S3Failure::Response(m) => PortError::Transient(format!("unreadable S3 response: {m}")),
        S3Failure::Config(m) => PortError::Permanent(format!("S3 client: {m}")),
    }
}

/// The S3 error code a message of [`classify`] names (`NoSuchBucket` in
/// `S3 GetBucketLocation s3://b: NoSuchBucket (HTTP 404): ...`), for reports that show it apart.
pub fn error_code(message: &str) -> Option<&str> {
    let (before, _) = message.split_once(" (HTTP ")?;
    let code = before.rsplit([' ', ':']).next()?;
    (!code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')).then_some(code)
}

/// What to do about a permanent code.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "NoSuchBucket" => "check the bucket name, and that the endpoint/account is the one holding it",
        "NoSuchKey" => "the object is not there (check the prefix and key)",
        "AccessDenied" => "the credentials lack a permission for this (s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket on the bucket), or a presigned URL expired",
        "InvalidAccessKeyId" => "the access key id is unknown to this endpoint: check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id",
        "SignatureDoesNotMatch" => "the secret access key does not belong to the access key id: check AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key",
        "RequestTimeTooSkewed" => "this machine's clock is off by more than 15 minutes: synchronise it (chrony/NTP)",
        "AuthorizationHeaderMalformed" => "the request was signed for the wrong region: give the bucket's region (AWS_REGION)",
        "PermanentRedirect" => "the bucket is in another region or must be addressed through another endpoint",
        "InvalidRequest" => "the request is not accepted as signed (SigV4 is required) or as formed",
        "EntityTooLarge" => "one PUT is at most 5 GB: upload in parts (lower the part size)",
        "EntityTooSmall" => "every part but the last must be at least 5 MiB",
        "InvalidBucketName" => "bucket names are 3-63 characters of lowercase letters, digits, '.' and '-'",
        "ExpiredToken" | "InvalidToken" => "the session token expired or is invalid: refresh the credentials",
        _ => return None,
    })
}

/// Name the operation and object in a classified error.
fn in_context(op: &str, bucket: &str, key: Option<&str>, e: PortError) -> PortError {
    let what = match key {
        Some(k) => format!("S3 {op} s3://{bucket}/{k}"),
        None => format!("S3 {op} s3://{bucket}"),
    };
    match e {
        PortError::Transient(m) => PortError::Transient(format!("{what}: {m}")),
        PortError::NotFound(m) => PortError::NotFound(format!("{what}: {m}")),
        PortError::Permanent(m) => PortError::Permanent(format!("{what}: {m}")),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    // Bounded by the length of the source chain.
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(status: u16, code: Option<&str>) -> S3Failure {
        S3Failure::Service { status, code: code.map(str::to_string), message: Some("msg".into()) }
    }

    /// The error shapes S3 documents, and what each must become.
    #[test]
    fn classification_table() {
        #[derive(Debug, PartialEq)]
        enum C {
            T,
            N,
            P,
        }
        let table: Vec<(S3Failure, C)> = vec![
            (svc(404, Some("NoSuchBucket")), C::N),
            (svc(404, Some("NoSuchKey")), C::N),
            (svc(404, Some("NoSuchUpload")), C::N),
            (svc(404, None), C::N),
            (svc(403, Some("AccessDenied")), C::P),
            (svc(403, Some("SignatureDoesNotMatch")), C::P),
            (svc(403, Some("InvalidAccessKeyId")), C::P),
            (svc(403, Some("RequestTimeTooSkewed")), C::P),
            (svc(403, None), C::P),
            (svc(400, Some("InvalidRequest")), C::P),
            (svc(400, Some("AuthorizationHeaderMalformed")), C::P),
            (svc(301, Some("PermanentRedirect")), C::P),
            (svc(400, Some("EntityTooLarge")), C::P),
            (svc(400, Some("InvalidBucketName")), C::P),
            (svc(503, Some("SlowDown")), C::T),
            (svc(400, Some("RequestTimeout")), C::T),
            (svc(500, Some("InternalError")), C::T),
            (svc(503, Some("ServiceUnavailable")), C::T),
            (svc(409, Some("OperationAborted")), C::T),
            (svc(429, None), C::T),
            (svc(502, None), C::T),
            (svc(504, Some("GatewayTimeout")), C::T),
            (S3Failure::Connection("connection refused".into()), C::T),
            (S3Failure::Timeout("timed out".into()), C::T),
            (S3Failure::Response("cut off".into()), C::T),
            (S3Failure::Config("no region".into()), C::P),
        ];
        for (f, want) in table {
            let got = match classify(&f) {
                PortError::Transient(_) => C::T,
                PortError::NotFound(_) => C::N,
                PortError::Permanent(_) => C::P,
            };
            assert_eq!(got, want, "{f:?}");
        }
    }

    #[test]
    fn messages_name_the_code_and_what_to_do() {
        let e = in_context("GetBucketLocation", "nosuch", None, classify(&svc(404, Some("NoSuchBucket"))));
        let s = e.to_string();
        assert!(s.contains("s3://nosuch") && s.contains("NoSuchBucket (HTTP 404): msg") && s.contains("check the bucket name"), "{s}");
        let s = classify(&svc(403, Some("SignatureDoesNotMatch"))).to_string();
        assert!(s.contains("AWS_SECRET_ACCESS_KEY"), "{s}");
        let s = classify(&svc(403, None)).to_string();
        assert!(s.starts_with("Forbidden (HTTP 403)"), "{s}");
    }

    #[test]
    fn the_code_is_found_again_in_a_message() {
        let m = in_context("GetBucketLocation", "nosuch", None, classify(&svc(404, Some("NoSuchBucket")))).to_string();
        assert_eq!(error_code(&m), Some("NoSuchBucket"));
        assert_eq!(error_code(&classify(&svc(403, None)).to_string()), Some("Forbidden"));
        assert_eq!(error_code(&classify(&S3Failure::Connection("refused".into())).to_string()), None);
    }

    #[test]
    fn regions_of_location_constraints() {
        assert_eq!(region_of_location(None), "us-east-1");
        assert_eq!(region_of_location(Some("")), "us-east-1");
        assert_eq!(region_of_location(Some("EU")), "eu-west-1");
        assert_eq!(region_of_location(Some("eu-west-2")), "eu-west-2");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = S3Credentials::Static {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: Some(Secret::new("token-value")),
        };
        let d = format!("{c:?} {:?}", S3Options { credentials: c.clone(), ..S3Options::default() });
        assert!(!d.contains("wJalrXUtnFEMI") && !d.contains("token-value"), "{d}");
        assert_eq!(mask_key_id("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
        assert_eq!(mask_key_id("short"), "…");
    }

    #[test]
    fn source_read_errors_are_classified_by_kind() {
        use std::io::{Error, ErrorKind};
        assert!(source_error(Error::from(ErrorKind::ConnectionReset)).is_transient());
        assert!(source_error(Error::from(ErrorKind::UnexpectedEof)).is_transient());
        assert!(!source_error(Error::from(ErrorKind::PermissionDenied)).is_transient());
    }

    #[test]
    fn read_part_stops_at_the_limit_and_hashes_what_it_read() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut r = &data[..];
        let mut h = Sha256::new();
        let mut buf = vec![];
        read_part(&mut r, &mut buf, 60, &mut h).unwrap();
        assert_eq!(buf.len(), 60);
        assert_eq!(read_one(&mut r, &mut h).unwrap(), Some(60));
        buf.clear();
        read_part(&mut r, &mut buf, 60, &mut h).unwrap();
        assert_eq!(buf.len(), 39);
        assert_eq!(read_one(&mut r, &mut h).unwrap(), None);
        assert_eq!(hex::encode(h.finalize()), hex::encode(Sha256::digest(&data)));
    }
}
