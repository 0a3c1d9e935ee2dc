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
mod layers;
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
use crate::{SCHEMA_VERSION, check_extent_size};
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

/// Serializes schema creation and migration of one schema across processes.
async fn lock_volume(tx: &Tx<'_>) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('fsx-volume:' || coalesce(current_schema(), '')))",
        &[],
    )
    .await?;
    Ok(())
}

/// Advisory-lock classes of the engine's locks (the two-key form of
/// `pg_advisory_xact_lock`, so they cannot collide with the volume lock;
/// the hot tier has a class of its own). See the module docs.
const GRAPH_LOCK: i32 = 0x6673_7867; // "fsxg"
const NAMES_LOCK: i32 = 0x6673_786e; // "fsxn"
const FILE_LOCK: i32 = 0x6673_7866; // "fsxf"
const PACK_LOCK: i32 = 0x6673_7870; // "fsxp"

/// Takes the volume's layer-graph lock: shared by calls that read heads
/// and layers, exclusive for calls that change them.
async fn lock_graph(tx: &Tx<'_>, exclusive: bool) -> Result<()> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, hashtext(coalesce(current_schema(), '')))"
    };
    tx.execute(sql, &[&GRAPH_LOCK]).await?;
    Ok(())
}

/// Takes the lock of `class` on `(a, b)` in this volume.
async fn lock_pair(tx: &Tx<'_>, class: i32, a: i64, b: i64) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(concat_ws('/', current_schema(), $2::BIGINT, $3::BIGINT)))",
        &[&class, &a, &b],
    )
    .await?;
    Ok(())
}

/// Locks the namespace of `branch` (file creation, renames, deletion).
async fn lock_names(tx: &Tx<'_>, branch: BranchId) -> Result<()> {
    lock_pair(tx, NAMES_LOCK, branch, 0).await
}

/// Locks files on `branch`, in ascending id order.
async fn lock_files(tx: &Tx<'_>, branch: BranchId, ids: &[FileId]) -> Result<()> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        lock_pair(tx, FILE_LOCK, branch, id).await?;
    }
    Ok(())
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

async fn get_setting(tx: &Tx<'_>, key: &str) -> Result<String> {
    match tx
        .query_opt("SELECT value FROM fsx_volume WHERE key = $1", &[&key])
        .await?
    {
        Some(r) => col(&r, 0),
        None => Err(corrupt(format!("volume setting {key} is missing"))),
    }
}

async fn parse_setting<T: std::str::FromStr>(tx: &Tx<'_>, key: &str) -> Result<T> {
    let v = get_setting(tx, key).await?;
    v.parse()
        .map_err(|_| corrupt(format!("volume setting {key}={v:?} is malformed")))
}

/// Head layer and chain of a branch.
async fn head_chain(tx: &Tx<'_>, branch: BranchId) -> Result<Vec<LayerId>> {
    let head = layers::branch(tx, branch).await?.head;
    layers::chain(tx, head).await
}

/// Chain of a view.
async fn view_chain(tx: &Tx<'_>, view: View) -> Result<Vec<LayerId>> {
    let top = layers::top_layer(tx, view).await?;
    layers::chain(tx, top).await
}

/// Takes the next file id (locking its setting until the transaction ends).
async fn next_file_id(tx: &Tx<'_>) -> Result<FileId> {
    match tx
        .query_opt(
            "UPDATE fsx_volume SET value = (value::BIGINT + 1)::TEXT WHERE key = 'next_file_id'
             RETURNING value::BIGINT - 1",
            &[],
        )
        .await?
    {
        Some(r) => col(&r, 0),
        None => Err(corrupt("volume setting next_file_id is missing")),
    }
}

async fn lease_of(tx: &Tx<'_>, branch: BranchId, file_id: FileId) -> Result<Option<LeaseInfo>> {
    match tx
        .query_opt(
            "SELECT holder, expires_ms FROM fsx_leases WHERE branch = $1 AND file_id = $2",
            &[&branch, &file_id],
        )
        .await?
    {
        Some(r) => Ok(Some(LeaseInfo {
            holder: col(&r, 0)?,
            expires_ms: col(&r, 1)?,
        })),
        None => Ok(None),
    }
}

fn busy(file_id: FileId, lease: &LeaseInfo, now_ms: i64) -> MetaError {
    MetaError::new(
        MetaErrorKind::Busy,
        format!(
            "file #{file_id} is open for writing by {} (lease expires in {} ms); only one writer per file at a time",
            lease.holder,
            (lease.expires_ms - now_ms).max(0)
        ),
    )
}

/// Requires `req.holder` to hold the lease, and renews it. The caller holds
/// the file's lock on the lease's branch.
async fn check_lease(tx: &Tx<'_>, req: &LeaseRequest) -> Result<()> {
    match lease_of(tx, req.branch, req.file_id).await? {
        Some(l) if l.holder == req.holder => {
            tx.execute(
                "UPDATE fsx_leases SET expires_ms = $3 WHERE branch = $1 AND file_id = $2",
                &[
                    &req.branch,
                    &req.file_id,
                    &req.now_ms.saturating_add(req.ttl_ms),
                ],
            )
            .await?;
            Ok(())
        }
        Some(l) => Err(busy(req.file_id, &l, req.now_ms)),
        None => Err(MetaError::new(
            MetaErrorKind::Busy,
            format!(
                "{} does not hold the write lease of file #{} (it was released or taken)",
                req.holder, req.file_id
            ),
        )),
    }
}

/// `Busy` if someone other than `holder` holds a live lease. The caller
/// holds the file's lock on `branch`.
async fn check_no_other_writer(
    tx: &Tx<'_>,
    branch: BranchId,
    file_id: FileId,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    match lease_of(tx, branch, file_id).await? {
        Some(l) if l.holder != holder && l.expires_ms > now_ms => Err(busy(file_id, &l, now_ms)),
        _ => Ok(()),
    }
}

/// Locks the extent records of `keys` (ascending) in key order, so that
/// transactions touching several records never wait on each other in a
/// cycle.
async fn lock_extents(tx: &Tx<'_>, keys: &[&str]) -> Result<()> {
    if !keys.is_empty() {
        tx.query(
            "SELECT key FROM fsx_extents WHERE key = ANY($1) ORDER BY key FOR UPDATE",
            &[&keys],
        )
        .await?;
    }
    Ok(())
}

/// Adds `n` references to `key`; `Conflict` unless its record is live.
async fn incref(tx: &Tx<'_>, key: &str, n: i64) -> Result<()> {
    let changed = tx
        .execute(
            "UPDATE fsx_extents SET refcount = refcount + $2 WHERE key = $1 AND state = 0",
            &[&key, &n],
        )
        .await?;
    if changed == 1 {
        Ok(())
    } else {
        Err(MetaError::conflict(format!(
            "extent {key} is not pinned or is being garbage-collected; pack again"
        )))
    }
}

/// Releases `n` references to `key`; the idle clock starts when the last
/// one goes.
async fn decref(tx: &Tx<'_>, key: &str, n: i64, now_ms: i64) -> Result<()> {
    let changed = tx
        .execute(
            "UPDATE fsx_extents SET refcount = refcount - $2,
                 idle_since_ms = CASE WHEN refcount = $2 THEN $3 ELSE idle_since_ms END
             WHERE key = $1 AND refcount >= $2",
            &[&key, &n, &now_ms],
        )
        .await?;
    if changed == 1 {
        Ok(())
    } else {
        Err(corrupt(format!(
            "extent {key} is referenced {n} more times than its record counts (or has no record); run `fsx fsck`"
        )))
    }
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

async fn init_volume(tx: &Tx<'_>, url: &str, config: &VolumeConfig) -> Result<()> {
    lock_volume(tx).await?;
    if schema_version(tx).await? != 0 {
        return Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("{url} already holds an fsx volume"),
        ));
    }
    migrate(tx, 0).await?;
    let settings = [
        ("volume_id", config.volume_id.clone()),
        ("extent_size", config.extent_size.to_string()),
        ("store_url", config.store_url.clone()),
        ("created_ms", config.created_ms.to_string()),
    ];
    for (k, v) in &settings {
        tx.execute(
            "INSERT INTO fsx_volume (key, value) VALUES ($1, $2)",
            &[k, v],
        )
        .await?;
    }
    tx.execute(
        "UPDATE fsx_layers SET created_ms = $1",
        &[&config.created_ms],
    )
    .await?;
    tx.execute(
        "UPDATE fsx_branches SET created_ms = $1, commit_ms = $1",
        &[&config.created_ms],
    )
    .await?;
    Ok(())
}

async fn open_volume(tx: &Tx<'_>, url: &str) -> Result<VolumeConfig> {
    lock_volume(tx).await?;
    let version = schema_version(tx).await?;
    if crate::schema_verdict(version, &url)? {
        migrate(tx, version).await?;
    }
    let config = VolumeConfig {
        volume_id: get_setting(tx, "volume_id").await?,
        extent_size: parse_setting(tx, "extent_size").await?,
        store_url: get_setting(tx, "store_url").await?,
        created_ms: parse_setting(tx, "created_ms").await?,
    };
    check_extent_size(config.extent_size).map_err(|e| corrupt(e.message().to_string()))?;
    Ok(config)
}

async fn create_file(
    tx: &Tx<'_>,
    branch: BranchId,
    name: &str,
    page_size: u32,
    now_ms: i64,
) -> Result<FileMeta> {
    lock_graph(tx, false).await?;
    lock_names(tx, branch).await?;
    let chain = head_chain(tx, branch).await?;
    if layers::find(tx, &chain, name).await?.is_some() {
        return Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("file {name:?} already exists"),
        ));
    }
    let id = next_file_id(tx).await?;
    tx.execute(
        "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, created_ms, modified_ms)
         VALUES ($1, $2, $3, $4, 0, 0, $5, $5)",
        &[&chain[0], &id, &name, &i64::from(page_size), &now_ms],
    )
    .await?;
    Ok(layers::visible(tx, &chain, id).await?.meta())
}

async fn rename_file(
    tx: &Tx<'_>,
    branch: BranchId,
    from: &str,
    to: &str,
    replace: bool,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    lock_graph(tx, false).await?;
    lock_names(tx, branch).await?;
    let chain = head_chain(tx, branch).await?;
    // Names cannot change under the names lock; the rows are read again
    // once the files are locked, as writes may have changed them.
    let src = layers::find(tx, &chain, from)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no file {from:?}")))?;
    let dst = if from == to {
        None
    } else {
        layers::find(tx, &chain, to).await?
    };
    let ids: Vec<FileId> = std::iter::once(src.id)
        .chain(dst.as_ref().map(|d| d.id))
        .collect();
    lock_files(tx, branch, &ids).await?;
    check_no_other_writer(tx, branch, src.id, holder, now_ms).await?;
    if from == to {
        return Ok(());
    }
    if let Some(dst) = dst {
        if !replace {
            return Err(MetaError::new(
                MetaErrorKind::AlreadyExists,
                format!("file {to:?} already exists"),
            ));
        }
        check_no_other_writer(tx, branch, dst.id, holder, now_ms).await?;
        let dst = layers::visible(tx, &chain, dst.id).await?;
        layers::remove_file(tx, branch, &chain, &dst, now_ms).await?;
    }
    layers::own_row(tx, &chain, src.id).await?;
    tx.execute(
        "UPDATE fsx_files SET name = $3, modified_ms = $4 WHERE layer = $1 AND id = $2",
        &[&chain[0], &src.id, &to, &now_ms],
    )
    .await?;
    Ok(())
}

async fn delete_file(
    tx: &Tx<'_>,
    branch: BranchId,
    name: &str,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    lock_graph(tx, false).await?;
    lock_names(tx, branch).await?;
    let chain = head_chain(tx, branch).await?;
    let id = layers::find(tx, &chain, name)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no file {name:?}")))?
        .id;
    lock_files(tx, branch, &[id]).await?;
    check_no_other_writer(tx, branch, id, holder, now_ms).await?;
    let f = layers::visible(tx, &chain, id).await?;
    layers::remove_file(tx, branch, &chain, &f, now_ms).await
}

async fn acquire_lease(tx: &Tx<'_>, req: &LeaseRequest) -> Result<()> {
    lock_graph(tx, false).await?;
    lock_files(tx, req.branch, &[req.file_id]).await?;
    let chain = head_chain(tx, req.branch).await?;
    layers::visible(tx, &chain, req.file_id).await?;
    if let Some(l) = lease_of(tx, req.branch, req.file_id).await? {
        let free = l.holder == req.holder
            || l.expires_ms <= req.now_ms
            || req.break_holder.as_deref() == Some(l.holder.as_str());
        if !free {
            return Err(busy(req.file_id, &l, req.now_ms));
        }
    }
    tx.execute(
        "INSERT INTO fsx_leases (branch, file_id, holder, expires_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (branch, file_id) DO UPDATE SET holder = excluded.holder,
             expires_ms = excluded.expires_ms",
        &[
            &req.branch,
            &req.file_id,
            &req.holder,
            &req.now_ms.saturating_add(req.ttl_ms),
        ],
    )
    .await?;
    Ok(())
}

async fn commit_writes(tx: &Tx<'_>, batch: &WriteBatch) -> Result<()> {
    let file_id = batch.lease.file_id;
    let branch = batch.lease.branch;
    let now = batch.lease.now_ms;
    let due = |br: &BranchInfo| {
        batch
            .auto_commit_ms
            .is_some_and(|interval| now.saturating_sub(br.commit_ms) >= interval)
    };
    // An automatic commit changes the graph, so it needs the graph lock
    // exclusive: decide the mode before taking it, and decide again under
    // it (another writer may have committed meanwhile). A commit only moves
    // `commit_ms` forward, so a batch found not due stays not due.
    let exclusive = batch.auto_commit_ms.is_some() && due(&layers::branch(tx, branch).await?);
    lock_graph(tx, exclusive).await?;
    if exclusive && due(&layers::branch(tx, branch).await?) {
        layers::commit_branch(tx, branch, "automatic commit", true, None, false, now).await?;
    }
    lock_files(tx, branch, &[file_id]).await?;
    let chain = head_chain(tx, branch).await?;
    let head = chain[0];
    check_lease(tx, &batch.lease).await?;
    let file = layers::own_row(tx, &chain, file_id).await?;
    for p in &batch.pages {
        if let Some(d) = &p.data
            && d.len() != num::u32_len(file.page_size)
        {
            return Err(MetaError::invalid(format!(
                "page {} is {} bytes; file {:?} has {}-byte pages",
                p.page_no,
                d.len(),
                file.name,
                file.page_size
            )));
        }
    }
    let size = num::to_sql(batch.size, "file size")?;
    if let Some(from) = batch.drop_pages_from {
        let from = num::bound(from);
        tx.execute(
            "DELETE FROM fsx_dirty_pages WHERE layer = $1 AND file_id = $2 AND page_no >= $3",
            &[&head, &file_id, &from],
        )
        .await?;
        tx.execute(
            "UPDATE fsx_files SET cut_page = LEAST(coalesce(cut_page, $3), $3)
             WHERE layer = $1 AND id = $2",
            &[&head, &file_id, &from],
        )
        .await?;
    }
    if let Some(from) = batch.drop_extents_from {
        layers::drop_own_extents(tx, head, file_id, from, now).await?;
        tx.execute(
            "UPDATE fsx_files SET cut_extent = LEAST(coalesce(cut_extent, $3), $3)
             WHERE layer = $1 AND id = $2",
            &[&head, &file_id, &num::bound(from)],
        )
        .await?;
    }
    let seq: i64 = col(
        &tx.query_one(
            "UPDATE fsx_files SET write_seq = write_seq + 1, size = $3, modified_ms = $4
             WHERE layer = $1 AND id = $2 RETURNING write_seq",
            &[&head, &file_id, &size, &now],
        )
        .await?,
        0,
    )?;
    if batch.pages.is_empty() {
        return Ok(());
    }
    // One statement for the whole batch. A page written twice in one batch
    // keeps its last write (as applying them in order would), and must
    // appear once: ON CONFLICT cannot touch a row twice in one statement.
    let mut last: std::collections::BTreeMap<i64, Option<&[u8]>> =
        std::collections::BTreeMap::new();
    for p in &batch.pages {
        last.insert(num::to_sql(p.page_no, "page number")?, p.data.as_deref());
    }
    let page_nos: Vec<i64> = last.keys().copied().collect();
    let datas: Vec<Option<&[u8]>> = last.values().copied().collect();
    let crcs: Vec<i64> = last
        .iter()
        .map(|(&p, d)| crate::checksum::page_checksum(file_id, p.cast_unsigned(), *d))
        .collect();
    tx.execute(
        "INSERT INTO fsx_dirty_pages (layer, file_id, page_no, seq, data, crc)
         SELECT $1, $2, p, $3, d, c FROM unnest($4::BIGINT[], $5::BYTEA[], $6::BIGINT[]) AS t(p, d, c)
         ON CONFLICT (layer, file_id, page_no) DO UPDATE SET seq = excluded.seq, data = excluded.data, crc = excluded.crc",
        &[&head, &file_id, &seq, &page_nos, &datas, &crcs],
    )
    .await?;
    Ok(())
}

async fn read_map(
    tx: &Tx<'_>,
    flats: &Caches,
    view: View,
    file_id: FileId,
    first_page: u64,
    count: u64,
    ppe: u64,
) -> Result<ReadMap> {
    let chain = view_chain(tx, view).await?;
    if count > 0 && ppe > 0 {
        let head = matches!(view, View::Branch(_)).then(|| chain[0]);
        if let Some(map) =
            read_map_flat(tx, flats, &chain, head, file_id, first_page, count, ppe).await?
        {
            return Ok(map);
        }
    }
    let file = layers::visible(tx, &chain, file_id).await?;
    if count == 0 || ppe == 0 {
        return Ok(ReadMap {
            size: file.size,
            ..ReadMap::default()
        });
    }
    Ok(layers::walk(tx, &chain, file_id, first_page, count, ppe)
        .await?
        .read_map(file.size))
}

/// Pages `[first, first + count)` of a file through a cached `Flat` for
/// the frozen layers of `chain` below `head` (the view's own layer, `None`
/// for a commit). `None` when the flat path does not apply.
#[allow(clippy::too_many_arguments)]
async fn read_map_flat(
    tx: &Tx<'_>,
    flats: &Caches,
    chain: &[LayerId],
    head: Option<LayerId>,
    file_id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Option<ReadMap>> {
    let Some(run) = crate::resolve::flat_run(chain, head.is_some()) else {
        return Ok(None);
    };
    let head_row = match head {
        Some(h) => layers::layer_row(tx, h, file_id).await?,
        None => None,
    };
    if !crate::resolve::flat_fits_under(head_row.as_ref(), ppe) {
        return Ok(None);
    }
    let epoch = layers::epoch(tx).await?;
    let key = (run[0], file_id, ppe);
    let cached = flats.flats().get(epoch, key);
    let flat = match cached {
        Some(f) => f,
        None => {
            let f = Arc::new(layers::flat(tx, run, file_id, ppe).await?);
            flats.flats().insert(epoch, key, f.clone());
            f
        }
    };
    let file = flat.file(head_row.as_ref(), file_id)?;
    let head = head.map(|h| (h, head_row.as_ref()));
    match layers::walk_flat(tx, head, &flat, file_id, first, count, ppe).await? {
        Some(w) => Ok(Some(w.read_map(file.size))),
        None => {
            flats.flats().stale(file_id);
            Ok(None)
        }
    }
}

async fn dirty_extent(
    tx: &Tx<'_>,
    view: View,
    file_id: FileId,
    extent_idx: u64,
    ppe: u64,
) -> Result<DirtyExtent> {
    let chain = view_chain(tx, view).await?;
    let file = layers::visible(tx, &chain, file_id).await?;
    let first = extent_idx.saturating_mul(ppe);
    let (current_key, pages) = layers::walk(tx, &chain, file_id, first, ppe, ppe)
        .await?
        .dirty_extent();
    Ok(DirtyExtent {
        size: file.size,
        layer: chain[0],
        current_key,
        pages,
    })
}

async fn check_dirty_pages(
    tx: &Tx<'_>,
    after: Option<(LayerId, FileId, u64)>,
    limit: usize,
) -> Result<Vec<DirtyPageCheck>> {
    let (l, f, p) = after.map_or((i64::MIN, i64::MIN, i64::MIN), |(l, f, p)| {
        (l, f, num::bound(p))
    });
    let limit = num::limit(limit);
    let mut out = Vec::new();
    for r in tx
        .query(
            "SELECT layer, file_id, page_no, data, crc FROM fsx_dirty_pages
             WHERE (layer, file_id, page_no) > ($1, $2, $3)
             ORDER BY layer, file_id, page_no LIMIT $4",
            &[&l, &f, &p, &limit],
        )
        .await?
    {
        let (layer, file_id): (LayerId, FileId) = (col(&r, 0)?, col(&r, 1)?);
        let page_no = num::from_sql(col(&r, 2)?, "page number")?;
        let data: Option<Vec<u8>> = col(&r, 3)?;
        let intact =
            crate::checksum::verify_page(layer, file_id, page_no, data.as_deref(), col(&r, 4)?)
                .is_ok();
        out.push(DirtyPageCheck {
            layer,
            file_id,
            page_no,
            hole: data.is_none(),
            intact,
        });
    }
    Ok(out)
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

async fn commit_pack(tx: &Tx<'_>, c: &PackCommit) -> Result<()> {
    let file_id = c.lease.file_id;
    let now = c.lease.now_ms;
    let idx = num::to_sql(c.extent_idx, "extent index")?;
    lock_graph(tx, false).await?;
    let Some((parent, frozen)) = layers::layer_parent(tx, c.layer).await? else {
        return Err(MetaError::conflict(format!(
            "layer {} was collected while packing; pack again",
            c.layer
        )));
    };
    if frozen {
        // A commit's layer: no lease, but one packer per file at a time.
        lock_pair(tx, PACK_LOCK, c.layer, file_id).await?;
    } else {
        // A head: only its branch's lease holder packs it.
        lock_files(tx, c.lease.branch, &[file_id]).await?;
        if layers::branch(tx, c.lease.branch).await?.head != c.layer {
            return Err(MetaError::conflict(format!(
                "layer {} is not the head of branch #{}; pack again",
                c.layer, c.lease.branch
            )));
        }
        check_lease(tx, &c.lease).await?;
    }
    let chain = layers::chain(tx, c.layer).await?;
    layers::visible(tx, &chain, file_id).await?;
    let current = layers::visible_key(tx, &chain, file_id, c.extent_idx).await?;
    if current != c.expected_key {
        return Err(MetaError::conflict(format!(
            "extent {} of file #{file_id} changed while packing ({current:?}, expected {:?})",
            c.extent_idx, c.expected_key
        )));
    }
    if c.new_key != c.expected_key {
        let own: Option<Option<String>> = match tx
            .query_opt(
                "SELECT key FROM fsx_extent_map WHERE layer = $1 AND file_id = $2 AND extent_idx = $3",
                &[&c.layer, &file_id, &idx],
            )
            .await?
        {
            Some(r) => Some(col(&r, 0)?),
            None => None,
        };
        let old = own.clone().flatten();
        let mut keys: Vec<&str> = c
            .new_key
            .iter()
            .chain(old.iter())
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        lock_extents(tx, &keys).await?;
        match (&c.new_key, parent) {
            (Some(new), _) => {
                incref(tx, new, 1).await?;
                tx.execute(
                    "INSERT INTO fsx_extent_map (layer, file_id, extent_idx, key) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (layer, file_id, extent_idx) DO UPDATE SET key = excluded.key",
                    &[&c.layer, &file_id, &idx, new],
                )
                .await?;
            }
            // Lower layers may show this extent: hide it.
            (None, Some(_)) => {
                tx.execute(
                    "INSERT INTO fsx_extent_map (layer, file_id, extent_idx, key) VALUES ($1, $2, $3, NULL)
                     ON CONFLICT (layer, file_id, extent_idx) DO UPDATE SET key = NULL",
                    &[&c.layer, &file_id, &idx],
                )
                .await?;
            }
            (None, None) => {
                tx.execute(
                    "DELETE FROM fsx_extent_map WHERE layer = $1 AND file_id = $2 AND extent_idx = $3",
                    &[&c.layer, &file_id, &idx],
                )
                .await?;
            }
        }
        if let Some(old) = &old {
            decref(tx, old, 1, now).await?;
        }
    }
    if !c.consumed.is_empty() {
        let pages: Vec<i64> = c.consumed.iter().map(|&(p, _)| num::bound(p)).collect();
        let seqs: Vec<i64> = c.consumed.iter().map(|&(_, s)| s).collect();
        tx.execute(
            "DELETE FROM fsx_dirty_pages d USING unnest($3::BIGINT[], $4::BIGINT[]) AS c(page_no, seq)
             WHERE d.layer = $1 AND d.file_id = $2 AND d.page_no = c.page_no AND d.seq = c.seq",
            &[&c.layer, &file_id, &pages, &seqs],
        )
        .await?;
    }
    if frozen {
        // Where a frozen layer's pages live changed.
        layers::bump_epoch(tx).await?;
    }
    Ok(())
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
