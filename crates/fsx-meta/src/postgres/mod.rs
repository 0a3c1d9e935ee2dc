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
//! # Branches and layers
//!
//! The same rows and steps as the SQLite engine (see "Branches and layers"
//! in [`crate::contract`]): the `layers` module moves rows, and what a layer
//! shows (`resolve`) and what retention keeps ([`crate::graph`])
//! are decided by the code both engines share.
//!
//! # Concurrency design
//!
//! Every [`MetaEngine`] call is one transaction. Two isolation levels:
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
//!   default `synchronous_commit = on` is flushed to the WAL.
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

use bytes::Bytes;
use fsx_store::BoxFuture;
use tokio::runtime::Handle;

use crate::contract::*;
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::logic::Caches;
use crate::num;
use crate::SCHEMA_VERSION;
use conn::{PgUrl, Pool, Tx, TxKind, col, transact};
pub use hot::PgHotStore;

/// The PostgreSQL metadata engine (see the module docs). Cheap to clone:
/// clones share one connection pool.
#[derive(Clone)]
pub struct PgMeta {
    pool: Arc<Pool>,
    /// Files as long runs of frozen layers show them (shared by clones).
    caches: Arc<Caches>,
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

    fn pool(&self) -> &Pool {
        &self.pool
    }
}

fn corrupt(message: impl Into<String>) -> MetaError {
    MetaError::new(MetaErrorKind::Corrupt, message)
}

async fn schema_version(tx: &Tx<'_>) -> Result<u32> {
    let exists: bool = col(
        &tx.query_one("SELECT to_regclass('fsx_volume') IS NOT NULL", &[])
            .await?,
        0,
    )?;
    if !exists {
        return Ok(0);
    }
    let row = tx
        .query_opt(
            "SELECT value FROM fsx_volume WHERE key = 'schema_version'",
            &[],
        )
        .await?;
    let v: String = match row {
        Some(r) => col(&r, 0)?,
        None => return Err(corrupt("fsx_volume has no schema_version")),
    };
    v.parse()
        .map_err(|_| corrupt(format!("schema_version {v:?} is not a number")))
}

async fn migrate(tx: &Tx<'_>, from: u32) -> Result<()> {
    for (v, sql) in schema::MIGRATIONS
        .iter()
        .enumerate()
        .skip(num::u32_len(from))
    {
        tracing::info!(from = v, to = v + 1, "migrating metadata schema");
        tx.batch(sql).await?;
        if v + 1 == num::u32_len(schema::CHECKSUMS_SINCE) {
            schema::backfill_page_checksums(tx).await?;
        }
    }
    let version = SCHEMA_VERSION.to_string();
    tx.execute(
        "INSERT INTO fsx_volume (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&version],
    )
    .await?;
    Ok(())
}

fn extent_row(r: &tokio_postgres::Row) -> Result<ExtentRecord> {
    let state: i64 = col(r, 2)?;
    Ok(ExtentRecord {
        key: col(r, 0)?,
        refcount: col(r, 1)?,
        state: if state == 0 {
            ExtentState::Live
        } else {
            ExtentState::Deleting
        },
        bytes: num::from_sql(col(r, 3)?, "extent size")?,
        idle_since_ms: col(r, 4)?,
    })
}

async fn pin_extent(tx: &Tx<'_>, key: &str, bytes: u64, now_ms: i64) -> Result<()> {
    // Always updates (and so locks) an existing record, so the state read
    // back is the one this transaction commits with.
    let row = tx
        .query_one(
            "INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
             VALUES ($1, 0, 0, $2, $3, $3)
             ON CONFLICT (key) DO UPDATE SET idle_since_ms =
                 CASE WHEN fsx_extents.state = 0 THEN excluded.idle_since_ms ELSE fsx_extents.idle_since_ms END
             RETURNING state",
            &[&key, &num::to_sql(bytes, "extent size")?, &now_ms],
        )
        .await?;
    if col::<i64>(&row, 0)? == 0 {
        Ok(())
    } else {
        Err(MetaError::conflict(format!(
            "extent {key} is being garbage-collected; retry after GC"
        )))
    }
}

async fn gc_claim(tx: &Tx<'_>, now_ms: i64, grace_ms: i64, limit: usize) -> Result<Vec<String>> {
    let cutoff = now_ms.saturating_sub(grace_ms);
    let limit = num::limit(limit);
    // The outer WHERE repeats the conditions: after waiting for a row
    // another transaction changed, PostgreSQL re-checks them on the newest
    // version, so a record referenced or re-pinned meanwhile is not claimed.
    let rows = tx
        .query(
            "UPDATE fsx_extents SET state = 1
             WHERE key IN (SELECT key FROM fsx_extents
                           WHERE refcount = 0 AND state = 0 AND idle_since_ms < $1
                           ORDER BY idle_since_ms LIMIT $2 FOR UPDATE SKIP LOCKED)
               AND refcount = 0 AND state = 0 AND idle_since_ms < $1
             RETURNING key",
            &[&cutoff, &limit],
        )
        .await?;
    rows.iter().map(|r| col(r, 0)).collect()
}

/// Defers an async body into the boxed future the contract returns.
fn boxed<'a, T: 'a>(
    f: impl std::future::Future<Output = Result<T>> + Send + 'a,
) -> BoxFuture<'a, Result<T>> {
    Box::pin(f)
}

crate::logic::settings::impl_meta_settings!(PgMeta, boxed);

crate::logic::files::impl_meta_files!(PgMeta, boxed);

impl MetaExtents for PgMeta {
    fn pin_extent<'a>(
        &'a self,
        key: &'a str,
        bytes: u64,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| pin_extent(
                tx, key, bytes, now_ms
            ))
        })
    }

    fn gc_claim(
        &self,
        now_ms: i64,
        grace_ms: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| gc_claim(
                tx, now_ms, grace_ms, limit
            ))
        })
    }

    fn gc_claim_orphan<'a>(&'a self, key: &'a str, now_ms: i64) -> BoxFuture<'a, Result<bool>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                let n = tx
                    .execute(
                        "INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
                         VALUES ($1, 0, 1, 0, $2, $2) ON CONFLICT (key) DO NOTHING",
                        &[&key, &now_ms],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
    }

    fn gc_forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                tx.execute(
                    "DELETE FROM fsx_extents WHERE key = $1 AND state = 1 AND refcount = 0",
                    &[&key],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn list_extents<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ExtentRecord>>> {
        boxed(async move {
            let limit = num::limit(limit);
            let after = after.unwrap_or("");
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT key, refcount, state, bytes, idle_since_ms FROM fsx_extents
                         WHERE key > $1 ORDER BY key LIMIT $2",
                        &[&after, &limit],
                    )
                    .await?;
                rows.iter().map(extent_row).collect::<Result<Vec<_>>>()
            })
        })
    }

    fn extent_totals(&self) -> BoxFuture<'_, Result<ExtentTotals>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let r = tx
                    .query_one(
                        "SELECT count(*)::BIGINT, coalesce(sum(bytes), 0)::BIGINT,
                                count(*) FILTER (WHERE refcount > 0)::BIGINT,
                                coalesce(sum(bytes) FILTER (WHERE refcount > 0), 0)::BIGINT
                         FROM fsx_extents",
                        &[],
                    )
                    .await?;
                Ok(ExtentTotals {
                    count: num::from_sql(col(&r, 0)?, "extent count")?,
                    bytes: num::from_sql(col(&r, 1)?, "extent bytes")?,
                    referenced_count: num::from_sql(col(&r, 2)?, "referenced extent count")?,
                    referenced_bytes: num::from_sql(col(&r, 3)?, "referenced extent bytes")?,
                })
            })
        })
    }

    fn count_references<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, i64)>>> {
        boxed(async move {
            let limit = num::limit(limit);
            let after = after.unwrap_or("");
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT key, count(*) FROM fsx_extent_map WHERE key > $1 GROUP BY key ORDER BY key LIMIT $2",
                        &[&after, &limit],
                    )
                    .await?;
                rows.iter()
                    .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
                    .collect::<Result<Vec<_>>>()
            })
        })
    }
}

impl MetaTiers for PgMeta {
    fn hot_tier(&self, max_row_bytes: usize) -> Result<Option<Arc<dyn fsx_store::ExtentBackend>>> {
        Ok(Some(Arc::new(self.hot_store(max_row_bytes)?)))
    }

    fn tier_record<'a>(&'a self, marks: &'a [TierMark], now_ms: i64) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            // Sorted so that concurrent writers lock rows in one order.
            let mut sorted: Vec<&TierMark> = marks.iter().collect();
            sorted.sort_by(|a, b| (&a.key, &a.tier).cmp(&(&b.key, &b.tier)));
            transact!(self.pool(), TxKind::Write, |tx| async {
                for m in &sorted {
                    let bytes = num::to_sql(m.bytes, "extent size")?;
                    if m.state == CopyState::Present {
                        tx.execute(
                            "INSERT INTO fsx_tier_copies (key, tier, bytes, state, attempts, next_ms, last_error)
                             VALUES ($1, $2, $3, 0, 0, 0, NULL)
                             ON CONFLICT (key, tier) DO UPDATE SET bytes = excluded.bytes, state = 0,
                                 attempts = 0, next_ms = 0, last_error = NULL",
                            &[&m.key, &m.tier, &bytes],
                        )
                        .await?;
                    } else {
                        tx.execute(
                            "INSERT INTO fsx_tier_copies (key, tier, bytes, state, attempts, next_ms)
                             VALUES ($1, $2, $3, 1, 0, $4) ON CONFLICT (key, tier) DO NOTHING",
                            &[&m.key, &m.tier, &bytes, &now_ms],
                        )
                        .await?;
                    }
                }
                Ok(())
            })
        })
    }

    fn tier_retry<'a>(
        &'a self,
        key: &'a str,
        tier: &'a str,
        next_ms: i64,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                tx.execute(
                    "UPDATE fsx_tier_copies SET attempts = attempts + 1, next_ms = $3, last_error = $4
                     WHERE key = $1 AND tier = $2 AND state = 1",
                    &[&key, &tier, &next_ms, &error],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn tier_forget<'a>(&'a self, key: &'a str, tier: Option<&'a str>) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                match tier {
                    Some(t) => {
                        tx.execute(
                            "DELETE FROM fsx_tier_copies WHERE key = $1 AND tier = $2",
                            &[&key, &t],
                        )
                        .await?;
                    }
                    None => {
                        tx.execute("DELETE FROM fsx_tier_copies WHERE key = $1", &[&key])
                            .await?;
                        tx.execute("DELETE FROM fsx_extent_access WHERE key = $1", &[&key])
                            .await?;
                        tx.execute("DELETE FROM fsx_extent_digests WHERE key = $1", &[&key])
                            .await?;
                    }
                }
                Ok(())
            })
        })
    }

    fn tier_copies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<TierCopy>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT key, tier, bytes, state, attempts, next_ms, last_error
                         FROM fsx_tier_copies WHERE key = $1 ORDER BY tier",
                        &[&key],
                    )
                    .await?;
                rows.iter().map(tier_copy_row).collect::<Result<Vec<_>>>()
            })
        })
    }

    fn tier_list<'a>(
        &'a self,
        tier: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TierCopy>>> {
        boxed(async move {
            let limit = num::limit(limit);
            let after = after.unwrap_or("");
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT key, tier, bytes, state, attempts, next_ms, last_error
                         FROM fsx_tier_copies WHERE tier = $1 AND key > $2 ORDER BY key LIMIT $3",
                        &[&tier, &after, &limit],
                    )
                    .await?;
                rows.iter().map(tier_copy_row).collect::<Result<Vec<_>>>()
            })
        })
    }

    fn tier_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<TierCopy>>> {
        boxed(async move {
            let limit = num::limit(limit);
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT key, tier, bytes, state, attempts, next_ms, last_error
                         FROM fsx_tier_copies WHERE state = 1 AND next_ms <= $1
                         ORDER BY next_ms, key, tier LIMIT $2",
                        &[&now_ms, &limit],
                    )
                    .await?;
                rows.iter().map(tier_copy_row).collect::<Result<Vec<_>>>()
            })
        })
    }

    fn tier_totals(&self) -> BoxFuture<'_, Result<Vec<TierTotals>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT tier,
                                count(*) FILTER (WHERE state = 0)::BIGINT,
                                coalesce(sum(bytes) FILTER (WHERE state = 0), 0)::BIGINT,
                                count(*) FILTER (WHERE state = 1)::BIGINT
                         FROM fsx_tier_copies GROUP BY tier ORDER BY tier",
                        &[],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(TierTotals {
                            tier: col(r, 0)?,
                            count: num::from_sql(col(r, 1)?, "copy count")?,
                            bytes: num::from_sql(col(r, 2)?, "copy bytes")?,
                            queued: num::from_sql(col(r, 3)?, "queue length")?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
        })
    }

    fn touch_extent<'a>(
        &'a self,
        key: &'a str,
        hits: u64,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            let hits = num::bound(hits);
            transact!(self.pool(), TxKind::Write, |tx| async {
                tx.execute(
                    "INSERT INTO fsx_extent_access (key, hits, last_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE SET hits = fsx_extent_access.hits + excluded.hits,
                         last_ms = greatest(fsx_extent_access.last_ms, excluded.last_ms)",
                    &[&key, &hits, &now_ms],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn extent_access<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<AccessStats>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let row = tx
                    .query_opt(
                        "SELECT hits, last_ms FROM fsx_extent_access WHERE key = $1",
                        &[&key],
                    )
                    .await?;
                match row {
                    None => Ok(AccessStats::default()),
                    Some(r) => Ok(AccessStats {
                        hits: num::from_sql(col(&r, 0)?, "access hits")?,
                        last_ms: col(&r, 1)?,
                    }),
                }
            })
        })
    }

    fn set_extent_digests<'a>(
        &'a self,
        key: &'a str,
        digests: &'a [u8],
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                tx.execute(
                    "INSERT INTO fsx_extent_digests (key, digests) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET digests = excluded.digests",
                    &[&key, &digests],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn extent_digests<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let row = tx
                    .query_opt(
                        "SELECT digests FROM fsx_extent_digests WHERE key = $1",
                        &[&key],
                    )
                    .await?;
                row.map(|r| col::<Vec<u8>>(&r, 0).map(Bytes::from))
                    .transpose()
            })
        })
    }
}

crate::logic::branches::impl_meta_branches!(PgMeta, boxed);

fn tier_copy_row(r: &tokio_postgres::Row) -> Result<TierCopy> {
    let state: i64 = col(r, 3)?;
    let attempts: i64 = col(r, 4)?;
    Ok(TierCopy {
        key: col(r, 0)?,
        tier: col(r, 1)?,
        bytes: num::from_sql(col(r, 2)?, "copy bytes")?,
        state: if state == 0 {
            CopyState::Present
        } else {
            CopyState::Queued
        },
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_ms: col(r, 5)?,
        last_error: col(r, 6)?,
    })
}
