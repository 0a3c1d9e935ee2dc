//! Redis as a KV tier, modelling Cloudflare KV's limits.
//!
//! ```text
//! redis://127.0.0.1:6379/0?prefix=fsx:&max_value=26214400&write_interval_ms=1000&on_limit=reject
//! ```
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `prefix` | namespace for every Redis key this store touches | `fsx:` |
//! | `max_value` | largest value `put` accepts, bytes | 25 MiB (KV's limit) |
//! | `write_interval_ms` | minimum time between two puts of one key; 0 = none | 0 |
//! | `on_limit` | `reject` a put inside the interval, or `wait` it out | `reject` |
//!
//! | `password_file` | file whose first line is the password (else `REDIS_PASSWORD`) | — |
//!
//! Other query parameters are passed to the `redis` crate. The password is
//! never shown: messages and `Display` go through [`crate::url::redact`].
//!
//! # Redis keys
//!
//! | Redis key | content |
//! |---|---|
//! | `<prefix>o/<key>` | the object's bytes (a string) |
//! | `<prefix>w/<key>` | write-rate token; expires after the interval |
//!
//! # The write-rate limiter
//!
//! Real and shared: a put runs one Lua script that atomically does
//! `SET <prefix>w/<key> 1 PX <interval> NX` and, only if that succeeded,
//! writes the value; otherwise it returns the token's remaining TTL. Every
//! process using the same Redis and prefix therefore shares the limit, as KV
//! clients share Cloudflare's. With `on_limit=reject` (default) the put fails
//! with [`ErrorKind::Unavailable`] and a `retry_after` equal to the remaining
//! TTL — [`Retrying`](crate::wrappers::Retrying) honours it; with
//! `on_limit=wait` the backend sleeps that long and tries again. Deletes are
//! not limited. [`RedisKvBackend::limiter_stats`] counts both outcomes.
//!
//! # Other semantics
//!
//! Ranges are native (`GETRANGE`, inside a script that first checks
//! existence, since `GETRANGE` of a missing key is an empty string). `list`
//! is a full `SCAN` of the namespace per page (O(keys)); acceptable for a
//! warm tier that GC sweeps rarely. `durable_put` is false: durability
//! depends on the server's `appendfsync`, which this client cannot know.
//! The connection is opened lazily on first use and re-opened after a
//! connection error.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;

use crate::backend::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta, check_range,
};
use crate::error::{ErrorKind, Result, StoreError};
use crate::key::ObjectKey;
use crate::open::parse_u64;

/// Environment variable holding the Redis password when the URL has none.
pub const REDIS_PASSWORD_ENV: &str = "REDIS_PASSWORD";

/// Cloudflare KV's value limit.
pub const KV_MAX_VALUE: u64 = 25 * 1024 * 1024;

const PUT_SCRIPT: &str = r"
local interval = tonumber(ARGV[2])
if interval > 0 then
  if not redis.call('SET', KEYS[2], '1', 'PX', interval, 'NX') then
    local ttl = redis.call('PTTL', KEYS[2])
    if ttl < 0 then ttl = 0 end
    return ttl
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return -1
";

const RANGE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('GETRANGE', KEYS[1], ARGV[1], ARGV[2])
";

/// What a put does when the key's write interval has not elapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Fail with `Unavailable` and a `retry_after` hint.
    Reject,
    /// Sleep until the interval has elapsed, then write.
    Wait,
}

/// Counters of the write-rate limiter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStats {
    /// Puts refused because the key was written too recently.
    pub rejected: u64,
    /// Times a put waited for the interval to elapse.
    pub waited: u64,
}

/// A Redis-backed KV store; see the module docs.
#[derive(Debug)]
pub struct RedisKvBackend {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    display_url: String,
    prefix: String,
    on_limit: OnLimit,
    capabilities: Capabilities,
    put_script: redis::Script,
    range_script: redis::Script,
    rejected: AtomicU64,
    waited: AtomicU64,
}

impl RedisKvBackend {
    /// Open from a `redis://` URL (see the module docs). Connects lazily.
    pub fn from_url(url: &str) -> Result<Self> {
        // The password may come from `password_file=` or REDIS_PASSWORD
        // instead of the URL (see `crate::url`).
        let completed = crate::url::SafeUrl::new(url)
            .with_password_from(REDIS_PASSWORD_ENV, &|name| std::env::var(name).ok())
            .map_err(|e| StoreError::invalid(e.to_string()).with_source(e))?;
        let url = completed.expose();
        let mut parsed = url::Url::parse(url).map_err(|e| {
            StoreError::invalid(format!("bad Redis URL {:?}: {e}", crate::url::redact(url)))
                .with_source(e)
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(StoreError::invalid(format!(
                "not a redis:// URL: {:?}",
                crate::url::redact(url)
            )));
        }
        let mut prefix = "fsx:".to_owned();
        let mut max_value = KV_MAX_VALUE;
        let mut interval_ms = 0;
        let mut on_limit = OnLimit::Reject;
        let mut passthrough = Vec::new();
        for (name, value) in parsed.query_pairs() {
            match &*name {
                "prefix" => prefix = value.into_owned(),
                "max_value" => max_value = parse_u64(&name, &value)?,
                "write_interval_ms" => interval_ms = parse_u64(&name, &value)?,
                "on_limit" => {
                    on_limit = match &*value {
                        "reject" => OnLimit::Reject,
                        "wait" => OnLimit::Wait,
                        other => {
                            return Err(StoreError::invalid(format!(
                                "on_limit={other:?}: expected \"reject\" or \"wait\""
                            )));
                        }
                    }
                }
                _ => passthrough.push((name.into_owned(), value.into_owned())),
            }
        }
        if passthrough.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(passthrough);
        }
        let display_url = format!(
            "{}{}",
            redact(&parsed),
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" prefix {prefix}")
            }
        );
        let client = redis::Client::open(parsed.as_str()).map_err(|e| {
            StoreError::invalid(format!("Redis URL {}: {e}", redact(&parsed))).with_source(e)
        })?;
        let interval = (interval_ms > 0).then(|| Duration::from_millis(interval_ms));
        Ok(Self {
            client,
            connection: tokio::sync::Mutex::new(None),
            display_url,
            prefix,
            on_limit,
            capabilities: Capabilities::new(max_value)
                .per_key_write_interval(interval)
                .durable_put(false),
            put_script: redis::Script::new(PUT_SCRIPT),
            range_script: redis::Script::new(RANGE_SCRIPT),
            rejected: AtomicU64::new(0),
            waited: AtomicU64::new(0),
        })
    }

    /// Limiter counters so far (this client only).
    pub fn limiter_stats(&self) -> LimiterStats {
        LimiterStats {
            rejected: self.rejected.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
        }
    }

    fn object_key(&self, key: &ObjectKey) -> String {
        format!("{}o/{key}", self.prefix)
    }

    fn token_key(&self, key: &ObjectKey) -> String {
        format!("{}w/{key}", self.prefix)
    }

    async fn connection(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| self.map_err("connect", "", e))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Classify, and drop a broken connection so the next call reconnects.
    fn map_err(&self, op: &str, what: &str, err: redis::RedisError) -> StoreError {
        let broken = err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_timeout();
        if broken && let Ok(mut slot) = self.connection.try_lock() {
            *slot = None;
        }
        let transient = broken || !matches!(err.retry_method(), redis::RetryMethod::NoRetry);
        let kind = if transient {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Other
        };
        StoreError::new(kind, format!("redis {op} {what}: {err}")).with_source(err)
    }

    async fn put_once(&self, key: &ObjectKey, value: &Bytes) -> Result<Option<Duration>> {
        let mut conn = self.connection().await?;
        let interval_ms = self
            .capabilities
            .per_key_write_interval
            .map_or(0, |d| d.as_millis() as u64);
        let verdict: i64 = self
            .put_script
            .key(self.object_key(key))
            .key(self.token_key(key))
            .arg(value.as_ref())
            .arg(interval_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.map_err("put", key.as_str(), e))?;
        Ok((verdict >= 0).then(|| Duration::from_millis(verdict as u64)))
    }

    async fn put_value(&self, key: &ObjectKey, value: Bytes) -> Result<()> {
        self.capabilities.check_put_size(key, value.len())?;
        loop {
            let Some(wait) = self.put_once(key, &value).await? else {
                return Ok(());
            };
            match self.on_limit {
                OnLimit::Reject => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(StoreError::unavailable(format!(
                        "redis put {key}: rate limited, one write per {:?} per key; retry in {wait:?}",
                        self.capabilities.per_key_write_interval.unwrap_or_default()
                    ))
                    .with_retry_after(wait));
                }
                OnLimit::Wait => {
                    self.waited.fetch_add(1, Ordering::Relaxed);
                    // +1 ms: PTTL rounds down, and an early retry is refused again.
                    tokio::time::sleep(wait + Duration::from_millis(1)).await;
                }
            }
        }
    }

    async fn range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes> {
        check_range(&range)?;
        let mut conn = self.connection().await?;
        if range.start == range.end || range.start > i64::MAX as u64 {
            // GETRANGE cannot express an empty range (end is inclusive, and
            // 0..-1 would mean "everything"); existence decides.
            self.head_size(key).await?;
            return Ok(Bytes::new());
        }
        let last = (range.end - 1).min(i64::MAX as u64);
        let value: Option<Vec<u8>> = self
            .range_script
            .key(self.object_key(key))
            .arg(range.start)
            .arg(last)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.map_err("get_range", key.as_str(), e))?;
        value
            .map(Bytes::from)
            .ok_or_else(|| StoreError::not_found(format!("redis: no object {key}")))
    }

    async fn head_size(&self, key: &ObjectKey) -> Result<u64> {
        let mut conn = self.connection().await?;
        let (exists, len): (bool, u64) = redis::pipe()
            .cmd("EXISTS")
            .arg(self.object_key(key))
            .cmd("STRLEN")
            .arg(self.object_key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.map_err("head", key.as_str(), e))?;
        if exists {
            Ok(len)
        } else {
            Err(StoreError::not_found(format!("redis: no object {key}")))
        }
    }

    async fn list_page(&self, request: &ListRequest) -> Result<ListPage> {
        let mut conn = self.connection().await?;
        let namespace = format!("{}o/", self.prefix);
        let pattern = format!(
            "{}*",
            glob_escape(&format!("{namespace}{}", request.prefix))
        );
        let mut cursor: u64 = 0;
        let mut names = Vec::new();
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.map_err("list", &request.prefix, e))?;
            for raw in batch {
                // Foreign or non-UTF-8 names in our namespace are not objects.
                if let Ok(name) = String::from_utf8(raw)
                    && let Some(key) = name
                        .strip_prefix(&namespace)
                        .and_then(|k| ObjectKey::new(k).ok())
                    && request.admits(key.as_str())
                {
                    names.push(key);
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // SCAN may repeat keys and has no order: sort, dedup, cut (sizes 0
        // for now, filled in for the page only).
        let page =
            request.page_from_unsorted(names.into_iter().map(|k| ObjectMeta::new(k, 0)).collect());
        if page.objects.is_empty() {
            return Ok(page);
        }
        let mut pipe = redis::pipe();
        for meta in &page.objects {
            pipe.cmd("EXISTS")
                .arg(self.object_key(&meta.key))
                .cmd("STRLEN")
                .arg(self.object_key(&meta.key));
        }
        let replies: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.map_err("list", &request.prefix, e))?;
        let mut objects = Vec::with_capacity(page.objects.len());
        for (meta, pair) in page.objects.into_iter().zip(replies.chunks(2)) {
            // Deleted since the scan: leave it out.
            if let [exists, len] = *pair
                && exists == 1
            {
                objects.push(ObjectMeta::new(meta.key, len));
            }
        }
        Ok(ListPage::new(objects, page.next_start_after))
    }
}

/// Escape Redis glob metacharacters so a prefix matches literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The URL without a password, for messages.
fn redact(url: &url::Url) -> String {
    crate::url::redact(url.as_str())
}

impl fmt::Display for RedisKvBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis kv {}", self.display_url)?;
        if let Some(interval) = self.capabilities.per_key_write_interval {
            write!(
                f,
                ", 1 write per {interval:?} per key ({:?})",
                self.on_limit
            )?;
        }
        write!(f, ", max value {} bytes", self.capabilities.max_object_size)
    }
}

impl ExtentBackend for RedisKvBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.object_key(key))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.map_err("get", key.as_str(), e))?;
            value
                .map(Bytes::from)
                .ok_or_else(|| StoreError::not_found(format!("redis: no object {key}")))
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
        Box::pin(self.put_value(key, value))
    }

    fn put_if_absent<'a>(
        &'a self,
        key: &'a ObjectKey,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.capabilities.check_put_size(key, value.len())?;
            let mut conn = self.connection().await?;
            // `SET … NX` is atomic in Redis; a first write of a key needs no
            // write-rate token.
            let set: Option<String> = redis::cmd("SET")
                .arg(self.object_key(key))
                .arg(value.as_ref())
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.map_err("put_if_absent", key.as_str(), e))?;
            Ok(set.is_some())
        })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let _: u64 = redis::cmd("DEL")
                .arg(self.object_key(key))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.map_err("delete", key.as_str(), e))?;
            Ok(())
        })
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move { Ok(ObjectMeta::new(key.clone(), self.head_size(key).await?)) })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(self.list_page(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_escape_is_literal() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn url_parameters_are_parsed_and_stripped() {
        let b = RedisKvBackend::from_url(
            "redis://127.0.0.1:1/0?prefix=t:&max_value=10&write_interval_ms=1000&on_limit=wait",
        )
        .unwrap();
        assert_eq!(b.capabilities().max_object_size, 10);
        assert_eq!(
            b.capabilities().per_key_write_interval,
            Some(Duration::from_secs(1))
        );
        assert_eq!(b.on_limit, OnLimit::Wait);
        assert!(!b.to_string().contains("max_value="), "{b}");
        let err = RedisKvBackend::from_url("redis://127.0.0.1:1/0?on_limit=maybe").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
