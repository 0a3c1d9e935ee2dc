//! S3-compatible object stores — AWS S3, Cloudflare R2, MinIO, SeaweedFS —
//! through one implementation on the `object_store` crate.
//!
//! Configured by URL plus the usual AWS environment:
//!
//! ```text
//! s3://BUCKET[/ROOT/PREFIX]?endpoint=http://127.0.0.1:8333&region=auto
//! ```
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `endpoint` | server URL (omit for AWS) | AWS, from the region |
//! | `region` | signing region (`auto` for R2) | `AWS_REGION`, else `us-east-1` |
//! | `allow_http` | permit `http://` endpoints | true only for loopback hosts |
//! | `anonymous` | send unsigned requests | false |
//! | `max_object_size` | declared put limit, bytes | 5 GiB (single-PUT limit) |
//!
//! Credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
//! `AWS_SESSION_TOKEN`). Without them opening fails with a clear error instead
//! of falling back to the EC2 metadata service, which does not exist outside
//! AWS and would only time out.
//!
//! Keys map to `ROOT/PREFIX/<key>`. Our key rules are a subset of
//! `object_store`'s path rules, so every [`ObjectKey`] converts without
//! escaping surprises.
//!
//! Semantics on top of S3: ranges past the end are resolved as the contract
//! says (S3 answers 416 for a start past the end; we then `HEAD` to tell an
//! empty result from a missing object); zero-length ranges are a `HEAD`.
//! `object_store` paths are directories, so a `list` prefix is listed from
//! its directory part and filtered by the full string prefix, stopping at
//! the first key past it (S3 lists in byte order). Retries inside
//! `object_store` are limited to two quick transport-level attempts; policy
//! retries belong to the [`Retrying`](crate::wrappers::Retrying) wrapper.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use crate::backend::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta, check_range,
};
use crate::error::{ErrorKind, Result, StoreError};
use crate::key::{ObjectKey, validate_prefix};
use crate::memory::DEFAULT_MAX_OBJECT_SIZE;
use crate::open::{parse_bool, parse_u64};

/// An S3-compatible bucket (optionally under a root prefix).
#[derive(Debug)]
pub struct S3Backend {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Root prefix inside the bucket, without leading or trailing `/`.
    root: String,
    endpoint: Option<String>,
    capabilities: Capabilities,
}

impl S3Backend {
    /// Open from an `s3://` URL (see the module docs), with credentials
    /// from the environment. No request is made.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::build(url, None)
    }

    /// Open from an `s3://` URL with explicit credentials instead of the
    /// environment's (tests, multi-tenant servers).
    pub fn from_url_with_credentials(
        url: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Self> {
        Self::build(
            url,
            Some((access_key_id.to_owned(), secret_access_key.to_owned())),
        )
    }

    fn build(url: &str, credentials: Option<(String, String)>) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| {
            StoreError::invalid(format!("bad S3 URL {:?}: {e}", crate::url::redact(url)))
                .with_source(e)
        })?;
        if parsed.scheme() != "s3" {
            return Err(StoreError::invalid(format!(
                "not an s3:// URL: {:?}",
                crate::url::redact(url)
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            // `s3://KEY:SECRET@bucket` would end up in fsx-volume.json and
            // in messages; credentials come from the environment instead.
            return Err(StoreError::invalid(format!(
                "S3 URL {:?} holds credentials: remove them from the URL and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                crate::url::redact(url)
            )));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                StoreError::invalid(format!(
                    "S3 URL {:?} names no bucket",
                    crate::url::redact(url)
                ))
            })?
            .to_owned();
        let root = parsed.path().trim_matches('/').to_owned();
        if !root.is_empty() {
            validate_prefix(&format!("{root}/"))?;
        }
        let mut endpoint = None;
        let mut region = std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty());
        let mut allow_http = None;
        let mut anonymous = false;
        let mut max_object_size = DEFAULT_MAX_OBJECT_SIZE;
        for (name, value) in parsed.query_pairs() {
            match &*name {
                "endpoint" => endpoint = Some(value.into_owned()),
                "region" => region = Some(value.into_owned()),
                "allow_http" => allow_http = Some(parse_bool(&name, &value)?),
                "anonymous" => anonymous = parse_bool(&name, &value)?,
                "max_object_size" => max_object_size = parse_u64(&name, &value)?,
                other => {
                    return Err(StoreError::invalid(format!(
                        "unknown S3 URL parameter {other:?} (known: endpoint, region, allow_http, anonymous, max_object_size)"
                    )));
                }
            }
        }
        let allow_http = match allow_http {
            Some(v) => v,
            None => endpoint.as_deref().is_some_and(is_loopback_url),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(region.unwrap_or_else(|| "us-east-1".to_owned()))
            .with_allow_http(allow_http)
            // Signing a PUT's body means a SHA-256 pass over every byte
            // uploaded, as costly as hashing the extent again. The
            // signature still covers the request; the body needs no
            // second guard, since every read of an extent (engine, tiers,
            // fsck) checks it against its content key, a SHA-256 of the
            // whole blob, before using it.
            .with_unsigned_payload(true)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(20),
                    max_backoff: Duration::from_millis(200),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if anonymous {
            builder = builder.with_skip_signature(true);
        } else if let Some((key_id, secret)) = credentials {
            builder = builder
                .with_access_key_id(key_id)
                .with_secret_access_key(secret);
        } else {
            let key_id = std::env::var("AWS_ACCESS_KEY_ID")
                .ok()
                .filter(|v| !v.is_empty());
            let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
                .ok()
                .filter(|v| !v.is_empty());
            let (Some(key_id), Some(secret)) = (key_id, secret) else {
                return Err(StoreError::invalid(
                    "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or add ?anonymous=true)",
                ));
            };
            builder = builder
                .with_access_key_id(key_id)
                .with_secret_access_key(secret);
            if let Ok(token) = std::env::var("AWS_SESSION_TOKEN")
                && !token.is_empty()
            {
                builder = builder.with_token(token);
            }
        }
        let store = builder.build().map_err(|e| {
            StoreError::invalid(format!(
                "S3 configuration for {:?}: {e}",
                crate::url::redact(url)
            ))
            .with_source(e)
        })?;
        Ok(Self {
            store: Arc::new(store),
            bucket,
            root,
            endpoint,
            capabilities: Capabilities::new(max_object_size),
        })
    }

    fn path(&self, key: &ObjectKey) -> Result<Path> {
        let full = if self.root.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.root)
        };
        Path::parse(&full).map_err(|e| {
            StoreError::invalid(format!("key {key} is not a valid S3 path: {e}")).with_source(e)
        })
    }

    /// The key for a listed location, or `None` outside our root.
    fn key_of(&self, location: &Path) -> Option<ObjectKey> {
        let raw = location.as_ref();
        let rel = if self.root.is_empty() {
            raw
        } else {
            raw.strip_prefix(&self.root)?.strip_prefix('/')?
        };
        ObjectKey::new(rel).ok()
    }

    async fn head_size(&self, key: &ObjectKey) -> Result<u64> {
        let path = self.path(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| map_err("head", key.as_str(), e))?;
        Ok(meta.size)
    }

    async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let full_prefix = if self.root.is_empty() {
            request.prefix.clone()
        } else {
            format!("{}/{}", self.root, request.prefix)
        };
        // object_store lists by directory: list the prefix's directory part
        // and filter by the whole string prefix.
        let dir = match full_prefix.rfind('/') {
            Some(i) => Some(
                Path::parse(&full_prefix[..i])
                    .map_err(|e| StoreError::invalid(format!("list prefix: {e}")).with_source(e))?,
            ),
            None => None,
        };
        let mut stream = match &request.start_after {
            Some(after) => self
                .store
                .list_with_offset(dir.as_ref(), &self.path(after)?),
            None => self.store.list(dir.as_ref()),
        };
        let limit = request.effective_limit();
        let mut objects = Vec::new();
        let mut more = false;
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| map_err("list", &request.prefix, e))?;
            let Some(key) = self.key_of(&meta.location) else {
                continue;
            };
            if !key.as_str().starts_with(&request.prefix) {
                // Byte order: once past the prefix, nothing later matches.
                if key.as_str() > request.prefix.as_str() {
                    break;
                }
                continue;
            }
            if !request.admits(key.as_str()) {
                continue;
            }
            if objects.len() == limit {
                more = true;
                break;
            }
            objects.push(
                ObjectMeta::new(key, meta.size)
                    .last_modified_ms(Some(meta.last_modified.timestamp_millis())),
            );
        }
        let next = if more {
            objects.last().map(|o: &ObjectMeta| o.key.clone())
        } else {
            None
        };
        Ok(ListPage::new(objects, next))
    }

    async fn range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        check_range(&range)?;
        if range.start == range.end {
            // S3 cannot express an empty range; existence decides.
            self.head_size(key).await?;
            return Ok(Bytes::new());
        }
        let path = self.path(key)?;
        // Servers parse the Range header into signed 64-bit integers (Go's
        // SeaweedFS answers 416 to `bytes=0-18446744073709551614`), so a
        // range running to "infinity" is sent open-ended: `bytes=start-`.
        let request = if range.end > i64::MAX as u64 {
            let options = GetOptions {
                range: Some(GetRange::Offset(range.start)),
                ..GetOptions::default()
            };
            match self.store.get_opts(&path, options).await {
                Ok(result) => result.bytes().await,
                Err(e) => Err(e),
            }
        } else {
            self.store.get_range(&path, range.clone()).await
        };
        match request {
            Ok(bytes) => Ok(bytes),
            Err(err) => {
                let err = map_err("get_range", key.as_str(), err);
                if err.kind() == ErrorKind::NotFound {
                    return Err(err);
                }
                // A start at or past the end is answered 416 (or rejected by
                // object_store); per the contract that is an empty result.
                match self.head_size(key).await {
                    Ok(size) if range.start >= size => Ok(Bytes::new()),
                    Ok(_) => Err(err),
                    Err(head_err) if head_err.kind() == ErrorKind::NotFound => Err(head_err),
                    Err(_) => Err(err),
                }
            }
        }
    }
}

fn is_loopback_url(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Classify an `object_store` error by what the caller should do.
fn map_err(op: &'static str, what: &str, err: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let kind = match &err {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => ErrorKind::InvalidInput,
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            ErrorKind::Unsupported { operation: op }
        }
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. } => ErrorKind::Other,
        // Transport failures and server errors that outlived object_store's
        // quick retries; a later attempt may succeed.
        E::Generic { .. } | E::JoinError { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    };
    StoreError::new(kind, format!("s3 {op} {what}: {err}")).with_source(err)
}

impl fmt::Display for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.root)?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " at {endpoint}")?;
        }
        Ok(())
    }
}

impl ExtentBackend for S3Backend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let result = self
                .store
                .get(&path)
                .await
                .map_err(|e| map_err("get", key.as_str(), e))?;
            result
                .bytes()
                .await
                .map_err(|e| map_err("get", key.as_str(), e))
        })
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.range(key, range))
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.capabilities.check_put_size(key, value.len())?;
            let path = self.path(key)?;
            self.store
                .put(&path, PutPayload::from(value))
                .await
                .map_err(|e| map_err("put", key.as_str(), e))?;
            Ok(())
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a ObjectKey,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.capabilities.check_put_size(key, value.len())?;
            let path = self.path(key)?;
            // `PutMode::Create` sends `If-None-Match: *`: the server refuses
            // (412) when the key exists, atomically with other writers.
            let opts = object_store::PutOptions::from(object_store::PutMode::Create);
            match self
                .store
                .put_opts(&path, PutPayload::from(value), opts)
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(map_err("put_if_absent", key.as_str(), e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match self.store.delete(&path).await {
                Ok(()) => Ok(()),
                // S3 answers 204 for a missing key; some servers say 404.
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(map_err("delete", key.as_str(), e)),
            }
        })
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move { Ok(ObjectMeta::new(key.clone(), self.head_size(key).await?)) })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(self.list_page(request))
    }
}
