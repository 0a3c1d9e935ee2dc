//! A bounded, in-memory cache of verified extents, by content key.
//!
//! Everything in it has passed the content-key check, so page reads from it
//! never hash again. Compressed extents are kept re-encoded raw, so reading
//! a page from a cached extent is a slice, never a decompression.
//! Eviction is least-recently-used by bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

#[derive(Default)]
struct State {
    entries: HashMap<String, (Bytes, u64)>,
    by_use: BTreeMap<u64, String>,
    tick: u64,
    bytes: u64,
}

/// LRU cache of raw extent blobs.
pub(crate) struct ExtentCache {
    capacity: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for ExtentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtentCache({} bytes)", self.capacity)
    }
}

impl ExtentCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.tick += 1;
        let tick = s.tick;
        let (blob, old) = {
            let e = s.entries.get_mut(key)?;
            let old = std::mem::replace(&mut e.1, tick);
            (e.0.clone(), old)
        };
        s.by_use.remove(&old);
        s.by_use.insert(tick, key.to_string());
        Some(blob)
    }

    pub(crate) fn insert(&self, key: &str, blob: Bytes) {
        let len = blob.len() as u64;
        if len > self.capacity {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.tick += 1;
        let tick = s.tick;
        if let Some((old_blob, old_tick)) = s.entries.insert(key.to_string(), (blob, tick)) {
            s.by_use.remove(&old_tick);
            s.bytes -= old_blob.len() as u64;
        }
        s.by_use.insert(tick, key.to_string());
        s.bytes += len;
        while s.bytes > self.capacity {
            let Some((_, victim)) = s.by_use.pop_first() else {
                break;
            };
            if let Some((b, _)) = s.entries.remove(&victim) {
                s.bytes -= b.len() as u64;
            }
        }
    }

    /// Whether `key` is cached, without counting it as a use.
    pub(crate) fn contains(&self, key: &str) -> bool {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.entries.contains_key(key)
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((b, t)) = s.entries.remove(key) {
            s.by_use.remove(&t);
            s.bytes -= b.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let c = ExtentCache::new(10);
        c.insert("a", Bytes::from_static(b"1234"));
        c.insert("b", Bytes::from_static(b"1234"));
        assert!(c.get("a").is_some());
        c.insert("c", Bytes::from_static(b"1234"));
        assert!(c.get("b").is_none(), "b was least recently used");
        assert!(c.get("a").is_some() && c.get("c").is_some());
        c.insert("big", Bytes::from(vec![0u8; 11]));
        assert!(c.get("big").is_none(), "larger than the cache");
        c.remove("a");
        assert!(c.get("a").is_none());
    }
}
