//! The hot tier in the SQLite metadata database: [`SqliteHotStore`].
//!
//! Layout, splitting and invariants are in [`crate::hot`], the
//! transactions in `logic::hot`. Here: a `put` is one `BEGIN IMMEDIATE`
//! transaction on the engine's writer connection, so it serialises with
//! metadata writes and with other puts (the key lock is a no-op); reads
//! run on the engine's pooled readers, one snapshot each (WAL), so they
//! never wait for a writer. Like the engine, calls run synchronously when
//! their future is first polled.

use super::SqliteMeta;
use crate::hot::HotStore;

/// Extents stored in the SQLite metadata database (see [`crate::hot`]).
pub type SqliteHotStore = HotStore<SqliteMeta>;

impl SqliteMeta {
    /// The hot tier of this volume, sharing this engine's connections; no
    /// stored row will exceed `max_row_bytes` (see [`crate::hot`];
    /// [`crate::hot::DEFAULT_MAX_ROW_BYTES`] models a Durable Object).
    /// `InvalidInput` below [`crate::hot::MIN_ROW_BYTES`].
    pub fn hot_store(&self, max_row_bytes: usize) -> crate::Result<SqliteHotStore> {
        HotStore::new(self.clone(), max_row_bytes)
    }
}

crate::logic::hot::impl_hot_store!(SqliteHotStore, sync, "sqlite", |meta| meta.path().display());
