//! In-memory backend: the reference model of the contract.
//!
//! A `BTreeMap` under one mutex. Every operation completes synchronously, so
//! the returned futures finish on their first poll and the backend needs no
//! runtime. Like every backend, it does nothing until its future is polled.
//! Ordered storage makes `list` a range scan, which is the reference the
//! other backends' listings are compared against. Nothing is durable.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, Range};

use bytes::Bytes;

use crate::backend::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta, resolve_range,
};
use crate::error::{Result, StoreError};
use crate::key::ObjectKey;
use crate::sync::{Mutex, lock};

/// Default size limit: S3's single-PUT limit, so the memory store accepts
/// what a real object store accepts.
pub const DEFAULT_MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// A process-local store; see the module docs.
#[derive(Debug)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<ObjectKey, Bytes>>,
    capabilities: Capabilities,
}

impl MemoryBackend {
    /// An empty store accepting objects up to [`DEFAULT_MAX_OBJECT_SIZE`].
    pub fn new() -> Self {
        Self::with_max_object_size(DEFAULT_MAX_OBJECT_SIZE)
    }

    /// An empty store with a custom size limit (to model a small tier).
    pub fn with_max_object_size(max_object_size: u64) -> Self {
        Self {
            objects: Mutex::new(BTreeMap::new()),
            capabilities: Capabilities::new(max_object_size).durable_put(false),
        }
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        lock(&self.objects).len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lookup(&self, key: &ObjectKey) -> Result<Bytes> {
        lock(&self.objects)
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::not_found(format!("memory: no object {key}")))
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory (max {} bytes per object)",
            self.capabilities.max_object_size
        )
    }
}

impl ExtentBackend for MemoryBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move { self.lookup(key) })
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move {
            let bytes = self.lookup(key)?;
            let r = resolve_range(&range, bytes.len() as u64)?;
            Ok(bytes.slice(r))
        })
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.capabilities.check_put_size(key, value.len())?;
            lock(&self.objects).insert(key.clone(), value);
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
            let mut objects = lock(&self.objects);
            if objects.contains_key(key) {
                return Ok(false);
            }
            objects.insert(key.clone(), value);
            Ok(true)
        })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            lock(&self.objects).remove(key);
            Ok(())
        })
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let bytes = self.lookup(key)?;
            Ok(ObjectMeta::new(key.clone(), bytes.len() as u64))
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move { Ok(self.list_now(request)) })
    }
}

impl MemoryBackend {
    fn list_now(&self, request: &ListRequest) -> ListPage {
        let objects = lock(&self.objects);
        let limit = request.effective_limit();
        // Start at whichever is later: the prefix itself or `start_after`.
        let lower = match &request.start_after {
            Some(after) if after.as_str() >= request.prefix.as_str() => {
                Bound::Excluded(after.as_str())
            }
            _ => Bound::Included(request.prefix.as_str()),
        };
        let mut out = Vec::new();
        let mut more = false;
        // Keys starting with the prefix are contiguous in byte order and begin
        // at the prefix itself, so the first non-matching key ends the scan.
        for (key, value) in objects.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.as_str().starts_with(&request.prefix) {
                break;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(ObjectMeta::new(key.clone(), value.len() as u64));
        }
        let next = if more {
            out.last().map(|o| o.key.clone())
        } else {
            None
        };
        ListPage::new(out, next)
    }
}
