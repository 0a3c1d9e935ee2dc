//! Bounded caches, usable as backends in their own right.
//!
//! A cache is an [`ExtentBackend`](crate::ExtentBackend) that declares
//! [`Capabilities::may_evict`](crate::Capabilities): it keeps at most its
//! byte budget and silently drops the least recently used objects to stay
//! under it, so a `get` after a successful `put` may miss. Everything else in
//! the contract holds while an object is cached. The tiering layer puts a
//! cache in front of slower tiers; the conformance suite runs against a cache
//! sized larger than its working set.
//!
//! - [`LruCache`]: process memory, runtime-free, lost on restart.
//! - `DiskCache` (feature `local`): a directory that survives restarts and
//!   verifies every object before serving it.

mod lru;
pub use lru::LruCache;

#[cfg(feature = "local")]
mod disk;
#[cfg(feature = "local")]
pub use disk::DiskCache;

/// Recency bookkeeping shared by both caches: a monotonically increasing
/// tick per access and an ordered index from tick to key, so the least
/// recently used entry is the first of the index.
mod recency {
    use std::collections::{BTreeMap, HashMap};

    use crate::key::ObjectKey;

    #[derive(Debug, Default)]
    pub(crate) struct Recency {
        tick: u64,
        by_tick: BTreeMap<u64, ObjectKey>,
        by_key: HashMap<ObjectKey, (u64, u64)>, // key -> (tick, size)
        bytes: u64,
    }

    impl Recency {
        /// Record `key` of `size` bytes as just used (insert or refresh).
        pub(crate) fn touch(&mut self, key: &ObjectKey, size: u64) {
            self.remove(key);
            self.tick += 1;
            self.by_tick.insert(self.tick, key.clone());
            self.by_key.insert(key.clone(), (self.tick, size));
            self.bytes += size;
        }

        /// Mark `key` used without changing its size; false if unknown.
        pub(crate) fn refresh(&mut self, key: &ObjectKey) -> bool {
            match self.by_key.get(key) {
                Some(&(_, size)) => {
                    self.touch(key, size);
                    true
                }
                None => false,
            }
        }

        pub(crate) fn remove(&mut self, key: &ObjectKey) -> Option<u64> {
            let (tick, size) = self.by_key.remove(key)?;
            self.by_tick.remove(&tick);
            self.bytes -= size;
            Some(size)
        }

        /// The least recently used key.
        pub(crate) fn oldest(&self) -> Option<&ObjectKey> {
            self.by_tick.values().next()
        }

        pub(crate) fn bytes(&self) -> u64 {
            self.bytes
        }

        #[cfg_attr(not(feature = "local"), allow(dead_code))] // the disk cache's head
        pub(crate) fn size_of(&self, key: &ObjectKey) -> Option<u64> {
            self.by_key.get(key).map(|&(_, size)| size)
        }

        pub(crate) fn keys(&self) -> impl Iterator<Item = (&ObjectKey, u64)> {
            self.by_key.iter().map(|(k, &(_, size))| (k, size))
        }
    }
}
