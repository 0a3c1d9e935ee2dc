//! The hot tier in the PostgreSQL metadata database: [`PgHotStore`].
//!
//! Layout, splitting and invariants are in [`crate::hot`], the
//! transactions in `logic::hot`. Here:
//!
//! - a `put` (and a `delete`) first takes a transaction-scoped advisory
//!   lock on the key (`Lock::HotKey`), so two concurrent puts of one key
//!   queue instead of colliding on the primary key, and the last to commit
//!   wins whole; its parts go in one statement (one round trip);
//! - reads run in one `REPEATABLE READ READ ONLY` transaction, so the part
//!   0 header and the parts read after it come from one snapshot;
//! - `get_range` slices with `substring()` in SQL; with the column's
//!   `STORAGE EXTERNAL` PostgreSQL fetches only the TOAST chunks covering
//!   the slice.

use super::PgMeta;
use crate::hot::HotStore;

/// Extents stored in the PostgreSQL metadata database (see [`crate::hot`]).
pub type PgHotStore = HotStore<PgMeta>;

impl PgMeta {
    /// The hot tier of this volume, sharing this engine's connection pool;
    /// no stored row will exceed `max_row_bytes` (see [`crate::hot`];
    /// [`crate::hot::DEFAULT_MAX_ROW_BYTES`] models a Durable Object).
    /// `InvalidInput` below [`crate::hot::MIN_ROW_BYTES`].
    pub fn hot_store(&self, max_row_bytes: usize) -> crate::Result<PgHotStore> {
        HotStore::new(self.clone(), max_row_bytes)
    }
}

crate::logic::hot::impl_hot_store!(PgHotStore, boxed, "postgres", |meta| meta.url());
