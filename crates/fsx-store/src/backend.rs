//! The `ExtentBackend` contract: the one boundary between fsx and anything
//! that stores blobs.
//!
//! Implementors: the backends in this crate (memory, local directory, S3,
//! Redis KV, the caches) and the wrappers (retry, faults, metering). Callers:
//! the tiering engine, GC, fsck, `fsx store check|bench`. Callers hold an
//! `Arc<dyn ExtentBackend>` and never name a concrete backend; only
//! composition roots do ([`open_backend`](crate::open_backend)).
//!
//! # Contract
//!
//! Objects are immutable blobs named by an [`ObjectKey`]. fsx stores
//! content-addressed extents, so the same key normally always carries the
//! same bytes; the contract nevertheless defines overwrite, because metadata
//! objects and the conformance suite use it.
//!
//! **`put(key, bytes)`** — on `Ok`, a later `get` from any client of the same
//! store returns exactly `bytes` (read-after-write), until another `put` or a
//! `delete` of that key. If [`Capabilities::durable_put`] is set, `Ok` also
//! means the bytes survive a crash of the process or machine. A put is
//! all-or-nothing: a reader sees the old object, the new one or "not found",
//! never a mix. Re-putting a key is allowed and replaces the object (the same
//! bytes again is the common, idempotent case). A put larger than
//! [`Capabilities::max_object_size`] fails with
//! [`ErrorKind::InvalidInput`] *before* touching storage. A backend with
//! [`Capabilities::per_key_write_interval`] may refuse a second put of one
//! key inside that interval with [`ErrorKind::Unavailable`] and a
//! [`StoreError::retry_after`] hint (or wait — each backend documents which).
//! After an `Err`, the object may or may not have been written (a timeout
//! after the server applied it): callers retry, which is safe because every
//! operation here is idempotent.
//!
//! **`put_if_absent(key, bytes)`** — create `key` only if no object has it,
//! atomically with respect to every other client of the store: of any
//! number of concurrent calls for one absent key, exactly one returns
//! `Ok(true)` and stores its bytes whole; the others return `Ok(false)` and
//! change nothing. On an existing key it returns `Ok(false)` and leaves the
//! object as it was — never a silent overwrite. This is how an object that
//! names an owner (the volume marker `fsx/volume`) is claimed: local
//! directories link a complete temp file into place (`link(2)` fails on an
//! existing name, like `O_EXCL`), S3 sends `If-None-Match: *`, Redis uses
//! `SET … NX`. After an `Err` (or a retried call that returned `Ok(false)`)
//! the caller cannot tell whether its own attempt created the object: it
//! reads the object and compares. Optional: the default returns
//! [`ErrorKind::Unsupported`], which the conformance suite reports as a
//! skip; every durable backend of this crate offers it.
//!
//! **`get(key)`** — the whole object, or [`ErrorKind::NotFound`]. A store
//! with [`Capabilities::checks_content`] fails a copy of a content key that
//! is not what was put with [`ErrorKind::Corrupt`] instead of returning it.
//!
//! **`get_range(key, start..end)`** — byte range semantics, identical on every
//! backend (the conformance suite pins them):
//! - `start > end` → [`ErrorKind::InvalidInput`];
//! - a missing object → [`ErrorKind::NotFound`], whatever the range;
//! - otherwise the bytes `start..min(end, len)`, which is empty when
//!   `start >= len` or `start == end` — like `read(2)` past end of file, a
//!   short or empty result is not an error.
//!
//! [`Capabilities::supports_range`] says the backend reads only the range
//! from storage. A backend without it either emulates the range by reading
//! the whole object (documented per backend) or returns
//! [`ErrorKind::Unsupported`].
//!
//! **`head(key)`** — the object's size, or [`ErrorKind::NotFound`].
//!
//! **`delete(key)`** — on `Ok` the key is gone: `get` returns `NotFound`.
//! Deleting a missing key is `Ok` (idempotent), so a retried delete never
//! fails because its first attempt succeeded.
//!
//! **`list(request)`** — keys starting with the request's prefix (a plain
//! string prefix, not a directory: `a/b` matches `a/bc`), strictly after
//! `start_after` if given, in ascending byte order, at most `limit` of them.
//! [`ListPage::next_start_after`] is `Some(last key)` when more keys may
//! follow; pass it as the next request's `start_after`. Paging this way
//! yields every key that existed for the whole listing exactly once, sorted;
//! keys put or deleted while listing may or may not appear.
//!
//! **Laziness** — a method does no work until its future is first polled;
//! dropping an unpolled future has no effect. Wrappers rely on this (a fault
//! injector builds the inner call and may then decide not to run it).
//!
//! # Errors by caller action
//!
//! See [`ErrorKind`]: `NotFound` (absent), `InvalidInput` (do not retry),
//! `Unavailable` (retry with backoff), `Corrupt` (bytes failed
//! verification; read another copy), `Unsupported` (the operation is not
//! offered), `Other` (report).
//!
//! # Async without a runtime
//!
//! Methods return [`BoxFuture`]s so the trait is object-safe and does not
//! depend on tokio or `async-trait`. On native targets the futures are
//! `Send` (they run on a multi-threaded executor); on `wasm32` the
//! [`MaybeSend`]/[`MaybeSync`] bounds vanish, so a Workers build can
//! implement the trait with JavaScript futures, which are not `Send`.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{ErrorKind, Result, StoreError};
use crate::key::{ObjectKey, validate_prefix};

/// `Send` on native targets, nothing on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` on native targets, nothing on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` on native targets, nothing on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}

/// `Sync` on native targets, nothing on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// A boxed future that is `Send` wherever the platform allows it.
///
/// Spelled out per target because a trait object may only add auto traits
/// (`Send`), not a marker trait like [`MaybeSend`].
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed future that is `Send` wherever the platform allows it.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Largest page a `list` call returns, whatever the request asks.
pub const MAX_LIST_LIMIT: usize = 1000;

/// What a backend can do; fixed for the backend's lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Largest object `put` accepts, in bytes.
    pub max_object_size: u64,
    /// `get_range` reads only the requested bytes from storage.
    pub supports_range: bool,
    /// Minimum time between two writes of one key, if the store limits it
    /// (Cloudflare KV: 1 s).
    pub per_key_write_interval: Option<Duration>,
    /// A successful `put` survives a crash of the process or machine.
    pub durable_put: bool,
    /// The store may drop objects on its own (a cache): a `get` after a
    /// successful `put` may return `NotFound`.
    pub may_evict: bool,
    /// A `get` of a content key ([`ObjectKey::for_content`]) returns bytes that
    /// hash to the key, or fails [`ErrorKind::Corrupt`]:
    /// the store checks its own copies (by a cheaper means where it can),
    /// so callers need not hash them again. Only stores in the caller's
    /// own trust domain (the local disk) may claim it; a remote store's
    /// bytes are always hashed by the caller. Such a store may check
    /// against what was put rather than against the key itself, so a put
    /// of a content key must carry bytes that hash to it: the engine
    /// derives each key from its bytes, tier copies are verified reads,
    /// and `fsx serve` checks every extent body before it stores it.
    pub checks_content: bool,
}

impl Capabilities {
    /// Capabilities of a durable store with native ranges and no write-rate
    /// limit; adjust with the setters.
    pub fn new(max_object_size: u64) -> Self {
        Self {
            max_object_size,
            supports_range: true,
            per_key_write_interval: None,
            durable_put: true,
            may_evict: false,
            checks_content: false,
        }
    }

    /// Set [`Capabilities::supports_range`].
    pub fn supports_range(mut self, yes: bool) -> Self {
        self.supports_range = yes;
        self
    }

    /// Set [`Capabilities::per_key_write_interval`].
    pub fn per_key_write_interval(mut self, interval: Option<Duration>) -> Self {
        self.per_key_write_interval = interval;
        self
    }

    /// Set [`Capabilities::durable_put`].
    pub fn durable_put(mut self, yes: bool) -> Self {
        self.durable_put = yes;
        self
    }

    /// Set [`Capabilities::may_evict`].
    pub fn may_evict(mut self, yes: bool) -> Self {
        self.may_evict = yes;
        self
    }

    /// Set [`Capabilities::checks_content`].
    pub fn checks_content(mut self, yes: bool) -> Self {
        self.checks_content = yes;
        self
    }

    /// Reject a put of `len` bytes above [`Capabilities::max_object_size`].
    /// Backends call this before any I/O.
    pub fn check_put_size(&self, key: &ObjectKey, len: usize) -> Result<()> {
        let len = len as u64;
        if len > self.max_object_size {
            return Err(StoreError::invalid(format!(
                "object {key} is {len} bytes, above this store's limit of {} bytes",
                self.max_object_size
            )));
        }
        Ok(())
    }
}

/// Size and age of one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Its length in bytes.
    pub size: u64,
    /// When the object was last written, in ms since the Unix epoch, by the
    /// store's clock; `None` when the backend does not know (memory, Redis,
    /// the caches). GC deletes an orphan object only when it is known to be
    /// older than its grace period, so an unknown age keeps it.
    pub last_modified_ms: Option<i64>,
}

impl ObjectMeta {
    /// Metadata for `key` of `size` bytes, of unknown age.
    pub fn new(key: ObjectKey, size: u64) -> Self {
        Self {
            key,
            size,
            last_modified_ms: None,
        }
    }

    /// Sets [`ObjectMeta::last_modified_ms`].
    pub fn last_modified_ms(mut self, ms: Option<i64>) -> Self {
        self.last_modified_ms = ms;
        self
    }
}

/// Parameters of one `list` call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListRequest {
    /// Plain string prefix every returned key starts with (validated).
    pub prefix: String,
    /// Return only keys strictly greater than this one.
    pub start_after: Option<ObjectKey>,
    /// At most this many keys (clamped to `1..=MAX_LIST_LIMIT`).
    pub limit: usize,
}

impl ListRequest {
    /// A request for the first page of keys under `prefix`.
    pub fn new(prefix: &str) -> Result<Self> {
        validate_prefix(prefix)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            start_after: None,
            limit: MAX_LIST_LIMIT,
        })
    }

    /// Continue after `key` (from [`ListPage::next_start_after`]).
    pub fn start_after(mut self, key: Option<ObjectKey>) -> Self {
        self.start_after = key;
        self
    }

    /// Ask for at most `limit` keys.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The limit a backend must honour: the request's, clamped to
    /// `1..=MAX_LIST_LIMIT`.
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_LIST_LIMIT)
    }

    /// Whether `key` belongs in this request's result (prefix and
    /// `start_after`), ignoring the limit.
    pub fn admits(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && self
                .start_after
                .as_ref()
                .is_none_or(|after| key > after.as_str())
    }

    /// Build a page from candidate objects in any order: filter, sort, cut at
    /// the limit. For backends that cannot list in order natively.
    pub fn page_from_unsorted(&self, mut objects: Vec<ObjectMeta>) -> ListPage {
        objects.retain(|o| self.admits(o.key.as_str()));
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        objects.dedup_by(|a, b| a.key == b.key);
        let limit = self.effective_limit();
        let more = objects.len() > limit;
        objects.truncate(limit);
        let next_start_after = if more {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        ListPage {
            objects,
            next_start_after,
        }
    }
}

/// One page of `list` results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListPage {
    /// Objects in ascending key order.
    pub objects: Vec<ObjectMeta>,
    /// `Some(last key)` when more keys may follow.
    pub next_start_after: Option<ObjectKey>,
}

impl ListPage {
    /// A page from already filtered and sorted objects.
    pub fn new(objects: Vec<ObjectMeta>, next_start_after: Option<ObjectKey>) -> Self {
        Self {
            objects,
            next_start_after,
        }
    }
}

/// A store of immutable blobs. See the module docs for the contract.
///
/// Required methods only; conveniences are in [`ExtentBackendExt`].
pub trait ExtentBackend: MaybeSend + MaybeSync + fmt::Debug + fmt::Display {
    /// What this backend can do.
    fn capabilities(&self) -> &Capabilities;

    /// The whole object.
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>>;

    /// Bytes `range.start..min(range.end, len)`; see the module docs.
    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>>;

    /// Store `value` under `key`, replacing any previous object.
    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>>;

    /// Store `value` under `key` only if `key` is absent: `Ok(true)` if this
    /// call created it, `Ok(false)` if an object was there (left unchanged).
    /// See the module docs. Wrappers forward it explicitly; the default is
    /// for backends that cannot do it atomically.
    fn put_if_absent<'a>(
        &'a self,
        key: &'a ObjectKey,
        value: Bytes,
    ) -> BoxFuture<'a, Result<bool>> {
        let _ = (key, value);
        Box::pin(async move {
            Err(StoreError::unsupported(
                "put_if_absent",
                format!("{self} cannot create an object only if it is absent"),
            ))
        })
    }

    /// Remove `key`; `Ok` if it was already absent.
    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>>;

    /// Metadata of `key`, or `NotFound`.
    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>>;

    /// One page of keys; see the module docs.
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>>;
}

/// Conveniences over any [`ExtentBackend`], blanket-implemented so wrappers
/// never have to forward them.
pub trait ExtentBackendExt: ExtentBackend {
    /// Whether `key` exists (`head` with `NotFound` mapped to `false`).
    fn exists<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            match self.head(key).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    /// Every key under `prefix`, following pages to the end.
    fn list_all<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut request = ListRequest::new(prefix)?;
            loop {
                let page = self.list(&request).await?;
                out.extend(page.objects);
                match page.next_start_after {
                    Some(next) => request = request.start_after(Some(next)),
                    None => return Ok(out),
                }
            }
        })
    }
}

impl<T: ExtentBackend + ?Sized> ExtentBackendExt for T {}

/// Validate a range request and resolve it against an object of `len`
/// bytes: the `usize` bounds to slice with (empty past the end).
pub fn resolve_range(range: &Range<u64>, len: u64) -> Result<Range<usize>> {
    check_range(range)?;
    let end = range.end.min(len);
    let start = range.start.min(end);
    // Both are <= len, which is an in-memory length, so they fit in usize.
    Ok(start as usize..end as usize)
}

/// Reject inverted ranges (`start > end`) with `InvalidInput`.
pub fn check_range(range: &Range<u64>) -> Result<()> {
    if range.start > range.end {
        return Err(StoreError::invalid(format!(
            "range {}..{} starts after it ends",
            range.start, range.end
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_read() {
        assert_eq!(resolve_range(&(0..10), 100).unwrap(), 0..10);
        assert_eq!(resolve_range(&(95..110), 100).unwrap(), 95..100);
        assert_eq!(resolve_range(&(100..110), 100).unwrap(), 100..100);
        assert_eq!(resolve_range(&(500..600), 100).unwrap(), 100..100);
        assert_eq!(resolve_range(&(7..7), 100).unwrap(), 7..7);
        assert_eq!(resolve_range(&(0..u64::MAX), 100).unwrap(), 0..100);
        #[allow(clippy::reversed_empty_ranges)] // inverted on purpose
        let inverted = 5..3;
        assert_eq!(
            resolve_range(&inverted, 100).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn page_from_unsorted_filters_sorts_and_cuts() {
        let meta = |k: &str| ObjectMeta::new(ObjectKey::new(k).unwrap(), 1);
        let req = ListRequest::new("p/")
            .unwrap()
            .start_after(Some(ObjectKey::new("p/b").unwrap()))
            .limit(2);
        let page = req.page_from_unsorted(vec![
            meta("p/d"),
            meta("q/a"),
            meta("p/a"),
            meta("p/c"),
            meta("p/e"),
        ]);
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/c", "p/d"]);
        assert_eq!(page.next_start_after.unwrap().as_str(), "p/d");
    }
}
