//! A bounded cache in a local directory that survives restarts and verifies
//! every object before serving it.
//!
//! # On-disk layout
//!
//! The directory uses the local backend's fanned-out layout
//! (`objects/<h0h1>/<h2h3>/<encoded key>`, crash-safe writes), and each file
//! is:
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `FSXCACH1` |
//! | 8..40 | SHA-256 of the payload |
//! | 40.. | the payload |
//!
//! # Invariants
//!
//! - A byte is served only after the whole file's checksum matched, and, for
//!   a content key (`extent/ext-<hex>`), after the payload's SHA-256 also
//!   matched the key. A file that fails either check is deleted and the read
//!   returns [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt); the next read
//!   is a plain miss. Range reads therefore read the whole file
//!   (`supports_range` is false: emulated, not native).
//! - The payload bytes of all cached objects stay at or below the capacity
//!   whenever no put is in flight; a put evicts least-recently-used objects
//!   first.
//! - On open, the index is rebuilt from a directory walk (file sizes only;
//!   contents are verified lazily, on read), with recency approximated by
//!   modification time. Reads refresh recency in memory only.
//!
//! A concurrent put and eviction of the same key may leave the index and the
//! directory briefly disagreeing; a missing file reads as a miss and drops
//! its index entry, which is the cache contract (a cache may forget).

use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::backend::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta, resolve_range,
};
use crate::cache::recency::Recency;
use crate::error::{ErrorKind, Result, StoreError};
use crate::key::ObjectKey;
use crate::local::{Layout, blocking};
use crate::sync::{Mutex, lock};

const MAGIC: &[u8; 8] = b"FSXCACH1";
const HEADER_LEN: u64 = 8 + 32;

#[derive(Debug)]
struct Inner {
    layout: Layout,
    capacity: u64,
    recency: Mutex<Recency>,
    evictions: AtomicU64,
    corrupt_dropped: AtomicU64,
}

/// A verified, bounded, persistent cache; see the module docs.
#[derive(Debug, Clone)]
pub struct DiskCache {
    inner: Arc<Inner>,
    capabilities: Capabilities,
}

impl DiskCache {
    /// Open (creating if needed) a cache of `capacity` payload bytes in
    /// `root`, indexing what a previous run left there. If the directory
    /// holds more than `capacity`, the oldest objects are evicted now.
    ///
    /// Blocks while it walks the directory: call it at startup or from a
    /// blocking context, not from a busy async task.
    pub fn open(root: impl Into<PathBuf>, capacity: u64) -> Result<Self> {
        let root = root.into();
        let inner = (move || {
            let layout = Layout::create(root)?;
            let mut found: Vec<(SystemTime, ObjectKey, u64)> = Vec::new();
            layout.walk(&mut |path, name, object| {
                match object {
                    Some((key, file_len)) if file_len >= HEADER_LEN => {
                        let mtime = fs::metadata(path)
                            .and_then(|m| m.modified())
                            .unwrap_or(SystemTime::UNIX_EPOCH);
                        found.push((mtime, key, file_len - HEADER_LEN));
                    }
                    // Truncated files and crash leftovers are not cache
                    // entries; remove them so they do not use disk forever.
                    Some(_) => remove_quietly(path),
                    None if name.starts_with(".tmp-") => remove_quietly(path),
                    None => {}
                }
                Ok(())
            })?;
            found.sort();
            let mut recency = Recency::default();
            for (_, key, size) in &found {
                recency.touch(key, *size);
            }
            Ok(Inner {
                layout,
                capacity,
                recency: Mutex::new(recency),
                evictions: AtomicU64::new(0),
                corrupt_dropped: AtomicU64::new(0),
            })
        })()?;
        let cache = Self {
            inner: Arc::new(inner),
            // `verify` checks every content key's payload against its key.
            capabilities: Capabilities::new(capacity)
                .supports_range(false)
                .may_evict(true)
                .checks_content(true),
        };
        cache.inner.evict_until_fits(0)?;
        Ok(cache)
    }

    /// Payload bytes currently indexed.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.inner.recency).bytes()
    }

    /// Objects evicted so far.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Objects dropped because they failed verification.
    pub fn corrupt_dropped(&self) -> u64 {
        self.inner.corrupt_dropped.load(Ordering::Relaxed)
    }

    /// The file holding `key` (for tests and tooling).
    pub fn path_for(&self, key: &ObjectKey) -> PathBuf {
        self.inner.layout.path_for(key)
    }

    fn read_verified(&self, key: &ObjectKey) -> BoxFuture<'static, Result<Bytes>> {
        let inner = self.inner.clone();
        let key = key.clone();
        Box::pin(blocking(move || inner.read_verified(&key)))
    }
}

impl Inner {
    fn read_verified(&self, key: &ObjectKey) -> Result<Bytes> {
        let path = self.layout.path_for(key);
        let file = match fs::read(&path) {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                lock(&self.recency).remove(key);
                return Err(StoreError::not_found(format!(
                    "disk cache: no object {key}"
                )));
            }
            Err(e) => {
                return Err(StoreError::from_io(
                    format!("disk cache get {}", path.display()),
                    e,
                ));
            }
        };
        match verify(key, &file) {
            Ok(payload) => {
                lock(&self.recency).refresh(key);
                Ok(payload)
            }
            Err(err) => {
                // Never serve it again: drop the file and the index entry.
                remove_quietly(&path);
                lock(&self.recency).remove(key);
                self.corrupt_dropped.fetch_add(1, Ordering::Relaxed);
                Err(err)
            }
        }
    }

    fn write(&self, key: &ObjectKey, value: &[u8]) -> Result<()> {
        let size = value.len() as u64;
        lock(&self.recency).remove(key);
        self.evict_until_fits(size)?;
        let digest = Sha256::digest(value);
        self.layout
            .write_parts_atomically(key, &[MAGIC, &digest, value], None)?;
        lock(&self.recency).touch(key, size);
        // Concurrent puts may each have made room only for themselves.
        self.evict_until_fits(0)
    }

    /// Evict least-recently-used objects until `extra` more bytes fit.
    fn evict_until_fits(&self, extra: u64) -> Result<()> {
        loop {
            let victim = {
                let mut recency = lock(&self.recency);
                if recency.bytes() + extra <= self.capacity {
                    return Ok(());
                }
                let Some(victim) = recency.oldest().cloned() else {
                    return Ok(());
                };
                recency.remove(&victim);
                victim
            };
            self.layout.remove(&victim)?;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Check the header, the checksum and (for content keys) the key; return the
/// payload.
fn verify(key: &ObjectKey, file: &Bytes) -> Result<Bytes> {
    if file.len() < HEADER_LEN as usize || &file[..8] != MAGIC {
        return Err(StoreError::corrupt(format!(
            "disk cache entry {key} has no valid header"
        )));
    }
    let payload = file.slice(HEADER_LEN as usize..);
    let digest = Sha256::digest(&payload);
    if digest[..] != file[8..40] {
        return Err(StoreError::corrupt(format!(
            "disk cache entry {key} fails its checksum"
        )));
    }
    key.verify_content(&payload)?;
    Ok(payload)
}

fn remove_quietly(path: &Path) {
    // Best effort: a file we cannot remove is retried on the next open.
    let _ = fs::remove_file(path);
}

impl fmt::Display for DiskCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "disk cache {} ({} bytes)",
            self.inner.layout_root().display(),
            self.inner.capacity
        )
    }
}

impl Inner {
    fn layout_root(&self) -> &Path {
        self.layout.root()
    }
}

impl ExtentBackend for DiskCache {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        self.read_verified(key)
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move {
            crate::backend::check_range(&range)?;
            let payload = self.read_verified(key).await?;
            Ok(payload.slice(resolve_range(&range, payload.len() as u64)?))
        })
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.capabilities.check_put_size(key, value.len())?;
            let inner = self.inner.clone();
            let key = key.clone();
            blocking(move || inner.write(&key, &value)).await
        })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        let inner = self.inner.clone();
        let key = key.clone();
        Box::pin(blocking(move || {
            lock(&inner.recency).remove(&key);
            inner.layout.remove(&key)
        }))
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            // The index answers without I/O; a file lost behind our back is
            // found out (and forgotten) on the next read.
            match lock(&self.inner.recency).size_of(key) {
                Some(size) => Ok(ObjectMeta::new(key.clone(), size)),
                None => Err(StoreError::new(
                    ErrorKind::NotFound,
                    format!("disk cache: no object {key}"),
                )),
            }
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move {
            let recency = lock(&self.inner.recency);
            let candidates = recency
                .keys()
                .filter(|(k, _)| request.admits(k.as_str()))
                .map(|(k, size)| ObjectMeta::new(k.clone(), size))
                .collect();
            Ok(request.page_from_unsorted(candidates))
        })
    }
}
