//! The shared metadata engine: PostgreSQL, so that several fsx processes
//! (on one machine or many) can share one volume.
//!
//! # Opening
//!
//! [`PgMeta::connect`] takes `postgres://USER:PASSWORD@HOST:PORT/DB` with
//! an optional `?schema=NAME`: the volume's tables then live in that schema
//! (created if missing) and every connection's `search_path` is set to it,
//! so tests and several volumes can share one database. Other query
//! parameters go to the driver (`connect_timeout=SECONDS`, default 10).
//! A bad URL, a wrong password or a missing database is `InvalidInput`; an
//! unreachable or overloaded server is `Unavailable`; both say what to fix.
//! TLS is not offered: connect over loopback or a trusted network.
//!
//! **Runtime.** tokio-postgres drives each connection with a background
//! task, so the engine needs a tokio runtime: `connect` must be awaited
//! inside one, or use [`PgMeta::connect_on`] with a
//! [`tokio::runtime::Handle`]. Connections (and their driver tasks) are
//! always spawned on that runtime, so once created the engine's futures can
//! be polled from any executor, including a plain `block_on`, as long as the
//! runtime is alive.
//!
//! # One logic, this dialect
//!
//! Every transaction is the shared code of `crate::logic` (the same as
//! the SQLite engine's); this module opens connections and runs it, `sql`
//! holds PostgreSQL's text of its statements, and `dialect` binds, decodes,
//! takes the locks and retries.
//!
//! # Concurrency design
//!
//! Every [`MetaEngine`](crate::MetaEngine) call is one transaction. Two isolation levels:
//!
//! - **Reads** (`file`, `list_files`, `lease`, `read_map`, `dirty_*`,
//!   `branch*`, `commit_info`, `layer_*`, `list_extents`,
//!   `count_references`) run `REPEATABLE READ READ ONLY`: one snapshot for
//!   all their statements (the contract's "reads are snapshots"), so a view
//!   resolves against one state of the layer graph, and read-only snapshot
//!   transactions never fail to serialize.
//! - **Writes** run `READ COMMITTED` and make every check-then-act safe
//!   with locks, not with SERIALIZABLE (which would abort and retry whole
//!   transactions under the contention that leases invite). The locks are
//!   transaction-scoped advisory locks keyed by the schema, so volumes
//!   sharing a database never wait for each other:
//!   - **the layer graph.** Every write that reads a branch head or a layer
//!     holds the volume's graph lock *shared*; the calls that change the
//!     graph (creating, deleting and resetting branches, committing,
//!     expiring, merging, and a `commit_writes` whose automatic commit is
//!     due) hold it *exclusive*. So a head never freezes under a writer, and
//!     collecting or folding layers never moves rows anyone is using. Such
//!     calls are O(1) or rare, so the pause they impose on writers is short;
//!   - **a file on a branch.** A call concerning a file on a branch locks
//!     `(branch, file)`: its lease, the head's rows of the file and its
//!     write sequence only change under that lock, so lease checks,
//!     `commit_pack`'s expected-key check and `write_seq` increments are
//!     serialized per file and branch, while writers of one file on two
//!     branches never wait for each other. Packing a frozen layer (a
//!     commit's) locks `(layer, file)` instead. After waiting for a lock,
//!     the next statement sees what the previous holder committed;
//!   - **a branch's names.** Creating, renaming and deleting files lock the
//!     branch's namespace first: names are unique per view, not per table
//!     (every layer has its own rows), so that lock is what stops two
//!     creates of one name from both succeeding;
//!   - extent records are only changed by single conditional statements
//!     (`refcount + n … WHERE state = 0`, `refcount - n … WHERE refcount >=
//!     n`, GC's `state = 1 WHERE refcount = 0 AND …`), which PostgreSQL
//!     re-evaluates on the newest row version after waiting for a concurrent
//!     writer. So a claimed record can never gain a reference (incref finds
//!     `state = 1` and the pack fails with `Conflict`), a referenced or
//!     freshly pinned record is never claimed, and a refcount never goes
//!     negative;
//!   - locks are always taken in one order: graph, names, files (ascending
//!     id), then rows (leases, file rows, and extent records in key order,
//!     `ORDER BY key FOR UPDATE`); GC skips records others have locked
//!     (`SKIP LOCKED`). So these calls cannot deadlock one another;
//!   - creating the schema takes a transaction-scoped advisory lock per
//!     schema, so two processes initialising or migrating one volume do not
//!     race on DDL.
//!
//!   Where a deadlock remains possible (two advisory keys whose hashes
//!   collide, or another session locking rows by hand) PostgreSQL aborts one
//!   transaction, and the call retries it (see the `conn` module), at most a
//!   few times.
//! - **Durability.** A call returns after `COMMIT`, which with PostgreSQL's
//!   default `synchronous_commit = on` is flushed to the WAL. Runtime
//!   transactions (byte-range locks, which die with their holders) set
//!   `synchronous_commit = off` for themselves.
//!
//! The schema is in the `schema` module, with the same tables, invariants
//! and version (`crate::SCHEMA_VERSION`) as the SQLite engine.

pub(crate) mod conn;
mod dialect;
mod hot;
mod schema;
mod sql;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::runtime::Handle;

use crate::error::{MetaError, Result};
use crate::logic::Caches;
use conn::{PgUrl, Pool};
pub use hot::PgHotStore;

/// The PostgreSQL metadata engine (see the module docs). Cheap to clone:
/// clones share one connection pool.
#[derive(Clone)]
pub struct PgMeta {
    pool: Arc<Pool>,
    /// Files as long runs of frozen layers show them (shared by clones).
    caches: Arc<Caches>,
    /// Deferred tree commits and the barriers that made them durable
    /// (shared by clones).
    durability: Arc<crate::logic::Durability>,
}

impl PgMeta {
    /// What this instance remembers (and its change origin).
    pub(crate) fn engine_caches(&self) -> &Caches {
        &self.caches
    }
}

impl std::fmt::Debug for PgMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgMeta({})", self.pool.url().shown)
    }
}

impl PgMeta {
    /// Connects to `url` (see the module docs), creating its `schema` if
    /// missing. Must run inside a tokio runtime, which then drives every
    /// connection of the engine.
    pub async fn connect(url: &str) -> Result<Self> {
        let runtime = Handle::try_current().map_err(|e| {
            MetaError::invalid(
                "PgMeta::connect must be awaited inside a tokio runtime (or use PgMeta::connect_on with a runtime handle)",
            )
            .with_source(e)
        })?;
        Self::connect_on(url, runtime).await
    }

    /// Connects to `url`, running connections on `runtime`; the returned
    /// future may be polled by any executor.
    pub async fn connect_on(url: &str, runtime: Handle) -> Result<Self> {
        let url = PgUrl::parse(url)?;
        let pool = Pool::new(url, runtime);
        // A first connection proves the server, credentials and database
        // now, so a wrong URL fails here with a clear message rather than at
        // the first call.
        let first = pool.open().await?;
        if let Some(schema) = pool.url().schema.clone() {
            first.ensure_schema(&schema, &pool.url().shown).await?;
        }
        pool.put_idle(first);
        Ok(Self {
            pool: Arc::new(pool),
            caches: Arc::default(),
            durability: Arc::default(),
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.pool.url().shown
    }

    /// Always false: a PostgreSQL volume is opened read-write (the shared
    /// logic asks, for the SQLite engine's read-only media).
    pub(crate) fn is_read_only(&self) -> bool {
        false
    }

    /// Messages exchanged with the server since the engine opened; for
    /// tests and benchmarks. Each `BEGIN`, prepare (statement-cache miss),
    /// query, `COMMIT` and `ROLLBACK` counts one, and so does opening a
    /// connection; clones and the hot store share the count.
    pub fn round_trips(&self) -> u64 {
        self.pool.round_trips()
    }

    #[cfg(test)]
    fn pool(&self) -> &Pool {
        &self.pool
    }
}

crate::logic::settings::impl_meta_settings!(PgMeta, boxed);

crate::logic::files::impl_meta_files!(PgMeta, boxed);

crate::logic::extents::impl_meta_extents!(PgMeta, boxed);
crate::logic::tiers::impl_meta_tiers!(PgMeta, boxed);

crate::logic::branches::impl_meta_branches!(PgMeta, boxed);
crate::logic::tree::impl_meta_tree!(PgMeta, boxed);
crate::logic::tokens::impl_meta_tokens!(PgMeta, boxed);
crate::logic::changes::impl_meta_changes!(PgMeta, boxed);
