//! A bounded in-memory LRU cache, by bytes.
//!
//! Invariant: the sum of cached object sizes never exceeds the capacity
//! after any operation returns. A put first evicts least-recently-used
//! entries until the new object fits; an object larger than the whole
//! capacity is rejected as `InvalidInput` (it could never be cached), which
//! is also what `max_object_size` declares. `get`, `get_range` and `head`
//! count as uses. Runtime-free: one mutex, no I/O.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::backend::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectMeta, resolve_range,
};
use crate::cache::recency::Recency;
use crate::error::{Result, StoreError};
use crate::key::ObjectKey;
use crate::sync::{Mutex, lock};

#[derive(Debug, Default)]
struct State {
    objects: HashMap<ObjectKey, Bytes>,
    recency: Recency,
}

/// An in-memory cache holding at most `capacity` bytes; see the module docs.
#[derive(Debug)]
pub struct LruCache {
    state: Mutex<State>,
    capacity: u64,
    capabilities: Capabilities,
    evictions: AtomicU64,
}

impl LruCache {
    /// An empty cache of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity,
            capabilities: Capabilities::new(capacity)
                .durable_put(false)
                .may_evict(true),
            evictions: AtomicU64::new(0),
        }
    }

    /// Bytes currently cached.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.state).recency.bytes()
    }

    /// Objects evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn lookup(&self, key: &ObjectKey) -> Result<Bytes> {
        let mut state = lock(&self.state);
        let value = state
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::not_found(format!("lru cache: no object {key}")))?;
        state.recency.refresh(key);
        Ok(value)
    }

    fn insert(&self, key: &ObjectKey, value: Bytes) -> Result<()> {
        self.capabilities.check_put_size(key, value.len())?;
        let mut state = lock(&self.state);
        let size = value.len() as u64;
        state.recency.remove(key);
        state.objects.remove(key);
        while state.recency.bytes() + size > self.capacity {
            let Some(victim) = state.recency.oldest().cloned() else {
                break;
            };
            state.recency.remove(&victim);
            state.objects.remove(&victim);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        state.recency.touch(key, size);
        state.objects.insert(key.clone(), value);
        Ok(())
    }
}

impl fmt::Display for LruCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lru cache ({} bytes)", self.capacity)
    }
}

impl ExtentBackend for LruCache {
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
            let value = self.lookup(key)?;
            Ok(value.slice(resolve_range(&range, value.len() as u64)?))
        })
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.insert(key, value) })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut state = lock(&self.state);
            state.recency.remove(key);
            state.objects.remove(key);
            Ok(())
        })
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            let value = self.lookup(key)?;
            Ok(ObjectMeta::new(key.clone(), value.len() as u64))
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move {
            let state = lock(&self.state);
            let candidates = state
                .recency
                .keys()
                .filter(|(k, _)| request.admits(k.as_str()))
                .map(|(k, size)| ObjectMeta::new(k.clone(), size))
                .collect();
            Ok(request.page_from_unsorted(candidates))
        })
    }
}
