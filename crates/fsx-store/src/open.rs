//! `open_backend(url)`: the one place that maps a URL to a concrete backend.
//!
//! Composition roots (the CLI, servers, tests) call this; library code takes
//! an `Arc<dyn ExtentBackend>` and never names a backend.
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | `memory://[?max_object_size=N]` | [`MemoryBackend`] | — |
//! | `lru://?capacity=N` | [`LruCache`] | — |
//! | `file:///abs/dir`, `/abs/dir`, `./rel/dir` | `LocalBackend` | `local` |
//! | `diskcache:///abs/dir?capacity=N` | `DiskCache` | `local` |
//! | `s3://bucket/prefix?endpoint=…&region=…` | `S3Backend` | `s3` |
//! | `redis://host:port/db?prefix=…&max_value=…&write_interval_ms=…` | `RedisKvBackend` | `redis` |
//!
//! Bad URLs, unknown schemes, unknown parameters and missing credentials are
//! [`ErrorKind::InvalidInput`](crate::ErrorKind) with a message naming the
//! problem. Opening makes no network request; the first operation connects.

use std::sync::Arc;

use crate::backend::ExtentBackend;
use crate::cache::LruCache;
use crate::error::{Result, StoreError};
use crate::memory::MemoryBackend;

/// Open the backend a URL names (see the module docs), creating a local
/// directory store if it is missing.
pub fn open_backend(url: &str) -> Result<Arc<dyn ExtentBackend>> {
    open_url(url, false)
}

/// Open the backend a URL names, which must exist already: a local
/// directory store that is missing (an unmounted disk, a moved directory)
/// is [`ErrorKind::NotFound`](crate::ErrorKind) instead of being recreated.
/// Other schemes open as with [`open_backend`]; whether their bucket or
/// database holds the store shows at the first request.
pub fn open_existing_backend(url: &str) -> Result<Arc<dyn ExtentBackend>> {
    open_url(url, true)
}

fn open_url(url: &str, existing: bool) -> Result<Arc<dyn ExtentBackend>> {
    if url.is_empty() {
        return Err(StoreError::invalid("empty store URL"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return open_path(url, existing);
    };
    match scheme {
        "memory" => {
            let params = query_params(rest, &["max_object_size"])?;
            Ok(Arc::new(match params.first() {
                Some((_, v)) => {
                    MemoryBackend::with_max_object_size(parse_u64("max_object_size", v)?)
                }
                None => MemoryBackend::new(),
            }))
        }
        "lru" => {
            let params = query_params(rest, &["capacity"])?;
            let capacity = required_capacity(&params, url)?;
            Ok(Arc::new(LruCache::new(capacity)))
        }
        "file" => {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !query.is_empty() {
                return Err(StoreError::invalid(format!(
                    "file URLs take no parameters: {:?}",
                    crate::url::redact(url)
                )));
            }
            if !path.starts_with('/') {
                return Err(StoreError::invalid(format!(
                    "file URL {:?} must be absolute (file:///abs/dir); use a plain path for relative directories",
                    crate::url::redact(url)
                )));
            }
            open_path(path, existing)
        }
        "diskcache" => open_disk_cache(url, rest),
        "s3" => open_s3(url),
        "redis" | "rediss" => open_redis(url),
        other => Err(StoreError::invalid(format!(
            "unknown store scheme {other:?} in {:?}; supported: memory://, lru://, file://, diskcache://, s3://, redis://",
            crate::url::redact(url)
        ))),
    }
}

#[cfg(feature = "local")]
fn open_path(path: &str, existing: bool) -> Result<Arc<dyn ExtentBackend>> {
    Ok(Arc::new(if existing {
        crate::local::LocalBackend::open_existing(path)?
    } else {
        crate::local::LocalBackend::open(path)?
    }))
}

#[cfg(not(feature = "local"))]
fn open_path(path: &str, _existing: bool) -> Result<Arc<dyn ExtentBackend>> {
    Err(disabled("local", path))
}

#[cfg(feature = "local")]
fn open_disk_cache(url: &str, rest: &str) -> Result<Arc<dyn ExtentBackend>> {
    let (path, _) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err(StoreError::invalid(format!(
            "diskcache URL {:?} must be absolute (diskcache:///abs/dir?capacity=N)",
            crate::url::redact(url)
        )));
    }
    let params = query_params(rest, &["capacity"])?;
    let capacity = required_capacity(&params, url)?;
    Ok(Arc::new(crate::cache::DiskCache::open(path, capacity)?))
}

#[cfg(not(feature = "local"))]
fn open_disk_cache(url: &str, _rest: &str) -> Result<Arc<dyn ExtentBackend>> {
    Err(disabled("local", url))
}

#[cfg(feature = "s3")]
fn open_s3(url: &str) -> Result<Arc<dyn ExtentBackend>> {
    Ok(Arc::new(crate::s3::S3Backend::from_url(url)?))
}

#[cfg(not(feature = "s3"))]
fn open_s3(url: &str) -> Result<Arc<dyn ExtentBackend>> {
    Err(disabled("s3", url))
}

#[cfg(feature = "redis")]
fn open_redis(url: &str) -> Result<Arc<dyn ExtentBackend>> {
    Ok(Arc::new(crate::redis_kv::RedisKvBackend::from_url(url)?))
}

#[cfg(not(feature = "redis"))]
fn open_redis(url: &str) -> Result<Arc<dyn ExtentBackend>> {
    Err(disabled("redis", url))
}

#[allow(dead_code)] // unused when every feature is on
fn disabled(feature: &str, url: &str) -> StoreError {
    StoreError::unsupported(
        "open",
        format!(
            "{:?} needs fsx-store's `{feature}` feature, not built in",
            crate::url::redact(url)
        ),
    )
}

/// `key=value` pairs after `?`, rejecting names outside `known`.
fn query_params(rest: &str, known: &[&str]) -> Result<Vec<(String, String)>> {
    let Some((_, query)) = rest.split_once('?') else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&name) {
            return Err(StoreError::invalid(format!(
                "unknown parameter {name:?}; known: {}",
                known.join(", ")
            )));
        }
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn required_capacity(params: &[(String, String)], url: &str) -> Result<u64> {
    match params.iter().find(|(n, _)| n == "capacity") {
        Some((_, v)) => parse_u64("capacity", v),
        None => Err(StoreError::invalid(format!(
            "{:?} needs ?capacity=BYTES",
            crate::url::redact(url)
        ))),
    }
}

/// Parse a numeric URL parameter.
pub(crate) fn parse_u64(name: &str, value: &str) -> Result<u64> {
    value.parse().map_err(|e| {
        StoreError::invalid(format!("parameter {name}={value:?} is not a number")).with_source(e)
    })
}

/// Parse a boolean URL parameter.
#[allow(dead_code)] // only the s3 feature uses it
pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(StoreError::invalid(format!(
            "parameter {name}={value:?} is not a boolean"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn memory_and_lru_open() {
        assert_eq!(
            open_backend("memory://?max_object_size=5")
                .unwrap()
                .capabilities()
                .max_object_size,
            5
        );
        assert!(
            open_backend("lru://?capacity=100")
                .unwrap()
                .capabilities()
                .may_evict
        );
    }

    #[test]
    fn bad_urls_are_invalid_input() {
        for url in [
            "ftp://x",
            "memory://?bogus=1",
            "lru://",
            "lru://?capacity=lots",
            "file://relative/dir",
            "",
        ] {
            let err = open_backend(url).map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
        }
    }
}
