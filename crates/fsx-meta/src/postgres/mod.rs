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

use fsx_store::BoxFuture;
use tokio::runtime::Handle;

use crate::contract::*;
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::num;
use crate::logic::Caches;
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

async fn create_branch(tx: &Tx<'_>, name: &str, from: View, now_ms: i64) -> Result<BranchInfo> {
    lock_graph(tx, true).await?;
    if layers::branch_named(tx, name).await?.is_some() {
        return Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("branch {name:?} already exists"),
        ));
    }
    let (base_layer, base_commit) = match from {
        View::Commit(c) => (layers::commit(tx, c).await?.layer, Some(c)),
        View::Branch(b) => {
            let src = layers::branch(tx, b).await?;
            let parent = layers::layer_parent(tx, src.head)
                .await?
                .and_then(|(p, _)| p);
            match parent {
                Some(p) if layers::is_empty(tx, src.head).await? => (p, src.commit),
                _ => {
                    let c = layers::commit_branch(
                        tx,
                        b,
                        &format!("branch point of {name}"),
                        true,
                        None,
                        true,
                        now_ms,
                    )
                    .await?
                    .ok_or_else(|| {
                        MetaError::new(MetaErrorKind::Other, "forced commit made nothing")
                    })?;
                    (c.layer, Some(c.id))
                }
            }
        }
    };
    let head = layers::new_layer(tx, Some(base_layer), now_ms).await?;
    tx.execute(
        "INSERT INTO fsx_branches (name, head, commit_id, created_ms, commit_ms)
         VALUES ($1, $2, $3, $4, $4)",
        &[&name, &head, &base_commit, &now_ms],
    )
    .await?;
    layers::branch_named(tx, name)
        .await?
        .ok_or_else(|| MetaError::new(MetaErrorKind::Other, "branch vanished"))
}

async fn delete_branch(tx: &Tx<'_>, name: &str, now_ms: i64) -> Result<()> {
    lock_graph(tx, true).await?;
    let br = layers::branch_named(tx, name)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no branch {name:?}")))?;
    if br.id == MAIN_BRANCH {
        return Err(MetaError::invalid(
            "the main branch cannot be deleted (reset it to a commit instead)",
        ));
    }
    layers::check_no_writers(tx, &br, None, now_ms).await?;
    tx.execute("DELETE FROM fsx_leases WHERE branch = $1", &[&br.id])
        .await?;
    tx.execute("DELETE FROM fsx_branches WHERE id = $1", &[&br.id])
        .await?;
    layers::collect(tx, now_ms).await
}

async fn reset_branch(tx: &Tx<'_>, branch: BranchId, to: CommitId, now_ms: i64) -> Result<()> {
    lock_graph(tx, true).await?;
    let br = layers::branch(tx, branch).await?;
    layers::check_no_writers(tx, &br, None, now_ms).await?;
    let target = layers::commit(tx, to).await?;
    let head = layers::new_layer(tx, Some(target.layer), now_ms).await?;
    tx.execute(
        "UPDATE fsx_branches SET head = $2, commit_id = $3, commit_ms = $4 WHERE id = $1",
        &[&branch, &head, &to, &now_ms],
    )
    .await?;
    tx.execute("DELETE FROM fsx_leases WHERE branch = $1", &[&branch])
        .await?;
    layers::collect(tx, now_ms).await
}

async fn expire_commits(tx: &Tx<'_>, before_ms: i64, now_ms: i64) -> Result<u64> {
    lock_graph(tx, true).await?;
    let g = layers::graph(tx).await?;
    let gone = crate::graph::expirable(&g, before_ms);
    for (id, parent, merged) in crate::graph::relink(&g, &gone) {
        tx.execute(
            "UPDATE fsx_commits SET parent = $2, merged = $3 WHERE id = $1",
            &[&id, &parent, &merged],
        )
        .await?;
    }
    if !gone.is_empty() {
        let ids: Vec<CommitId> = gone.iter().copied().collect();
        tx.execute("DELETE FROM fsx_commits WHERE id = ANY($1)", &[&ids])
            .await?;
    }
    layers::collect(tx, now_ms).await?;
    Ok(num::count(gone.len()))
}

async fn merge_files(
    tx: &Tx<'_>,
    target: BranchId,
    source: View,
    files: &[FileId],
    message: &str,
    merged: CommitId,
    now_ms: i64,
) -> Result<CommitInfo> {
    lock_graph(tx, true).await?;
    let br = layers::branch(tx, target).await?;
    layers::commit(tx, merged).await?;
    let target_chain = layers::chain(tx, br.head).await?;
    let source_chain = view_chain(tx, source).await?;
    let mut names = Vec::new();
    for &id in files {
        layers::check_no_writers(tx, &br, Some(id), now_ms).await?;
        layers::copy_file(tx, &br, &target_chain, &source_chain, id, now_ms).await?;
        if let Some(r) = layers::top_row(tx, &target_chain, id)
            .await?
            .filter(|r| !r.deleted)
        {
            names.push(r.name);
        }
    }
    layers::check_unique_names(tx, &target_chain, &names).await?;
    layers::commit_branch(tx, target, message, false, Some(merged), true, now_ms)
        .await?
        .ok_or_else(|| MetaError::new(MetaErrorKind::Other, "forced commit made nothing"))
}

/// Defers an async body into the boxed future the contract returns.
fn boxed<'a, T: 'a>(
    f: impl std::future::Future<Output = Result<T>> + Send + 'a,
) -> BoxFuture<'a, Result<T>> {
    Box::pin(f)
}

crate::logic::settings::impl_meta_settings!(PgMeta, boxed);

impl MetaFiles for PgMeta {
    fn create_file<'a>(
        &'a self,
        branch: BranchId,
        name: &'a str,
        page_size: u32,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<FileMeta>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| create_file(
                tx, branch, name, page_size, now_ms
            ))
        })
    }

    fn file<'a>(&'a self, view: View, name: &'a str) -> BoxFuture<'a, Result<FileMeta>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let chain = view_chain(tx, view).await?;
                layers::find(tx, &chain, name)
                    .await?
                    .map(|r| r.meta())
                    .ok_or_else(|| MetaError::not_found(format!("no file {name:?}")))
            })
        })
    }

    fn list_files<'a>(
        &'a self,
        view: View,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FileMeta>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let chain = view_chain(tx, view).await?;
                let rows = layers::chain_rows(tx, &chain).await?;
                Ok(crate::resolve::visible_files(&chain, rows)
                    .into_values()
                    .filter(|r| r.name.starts_with(prefix))
                    .map(|r| r.meta())
                    .collect())
            })
        })
    }

    fn rename_file<'a>(&'a self, rename: FileRename<'a>) -> BoxFuture<'a, Result<()>> {
        let FileRename {
            branch,
            from,
            to,
            replace,
            holder,
            now_ms,
        } = rename;
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| rename_file(
                tx, branch, from, to, replace, holder, now_ms
            ))
        })
    }

    fn delete_file<'a>(
        &'a self,
        branch: BranchId,
        name: &'a str,
        holder: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| delete_file(
                tx, branch, name, holder, now_ms
            ))
        })
    }

    fn acquire_lease<'a>(&'a self, req: &'a LeaseRequest) -> BoxFuture<'a, Result<()>> {
        boxed(async move { transact!(self.pool(), TxKind::Write, |tx| acquire_lease(tx, req)) })
    }

    fn release_lease<'a>(
        &'a self,
        branch: BranchId,
        file_id: FileId,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                tx.execute(
                    "DELETE FROM fsx_leases WHERE branch = $1 AND file_id = $2 AND holder = $3",
                    &[&branch, &file_id, &holder],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn lease(&self, branch: BranchId, file_id: FileId) -> BoxFuture<'_, Result<Option<LeaseInfo>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| lease_of(
                tx, branch, file_id
            ))
        })
    }

    fn commit_writes<'a>(&'a self, batch: &'a WriteBatch) -> BoxFuture<'a, Result<()>> {
        boxed(async move { transact!(self.pool(), TxKind::Write, |tx| commit_writes(tx, batch)) })
    }

    fn read_map(
        &self,
        view: View,
        file_id: FileId,
        first_page: u64,
        count: u64,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<ReadMap>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| read_map(
                tx,
                &self.caches,
                view,
                file_id,
                first_page,
                count,
                pages_per_extent
            ))
        })
    }

    fn dirty_counts<'a>(
        &'a self,
        view: View,
        file_id: FileId,
        pages_per_extent: u64,
        extents: &'a [u64],
    ) -> BoxFuture<'a, Result<Vec<DirtySummary>>> {
        boxed(async move {
            if pages_per_extent == 0 {
                return Err(MetaError::invalid("pages_per_extent must be positive"));
            }
            let mut idxs = extents.to_vec();
            idxs.sort_unstable();
            idxs.dedup();
            let ppe = num::bound(pages_per_extent);
            let idxs: Vec<i64> = idxs.into_iter().map(num::bound).collect();
            transact!(self.pool(), TxKind::Read, |tx| async {
                let layer = layers::top_layer(tx, view).await?;
                let rows = tx
                    .query(
                        "SELECT e.idx, (SELECT count(*) FROM fsx_dirty_pages d
                                        WHERE d.layer = $1 AND d.file_id = $2
                                          AND d.page_no >= e.idx * $3
                                          AND d.page_no < (e.idx + 1) * $3)::BIGINT
                         FROM unnest($4::BIGINT[]) AS e(idx) ORDER BY e.idx",
                        &[&layer, &file_id, &ppe, &idxs],
                    )
                    .await?;
                let mut out = Vec::new();
                for r in &rows {
                    let n: i64 = col(r, 1)?;
                    if n > 0 {
                        out.push(DirtySummary {
                            extent_idx: num::from_sql(col(r, 0)?, "extent index")?,
                            pages: num::from_sql(n, "page count")?,
                        });
                    }
                }
                Ok(out)
            })
        })
    }

    fn dirty_summary(
        &self,
        view: View,
        file_id: FileId,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<Vec<DirtySummary>>> {
        boxed(async move {
            if pages_per_extent == 0 {
                return Err(MetaError::invalid("pages_per_extent must be positive"));
            }
            let ppe = num::bound(pages_per_extent);
            transact!(self.pool(), TxKind::Read, |tx| async {
                let layer = layers::top_layer(tx, view).await?;
                let rows = tx
                    .query(
                        "SELECT page_no / $3 AS idx, count(*) FROM fsx_dirty_pages
                         WHERE layer = $1 AND file_id = $2 GROUP BY idx ORDER BY idx",
                        &[&layer, &file_id, &ppe],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DirtySummary {
                            extent_idx: num::from_sql(col(r, 0)?, "extent index")?,
                            pages: num::from_sql(col(r, 1)?, "page count")?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
        })
    }

    fn dirty_extent(
        &self,
        view: View,
        file_id: FileId,
        extent_idx: u64,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<DirtyExtent>> {
        boxed(async move {
            if pages_per_extent == 0 {
                return Err(MetaError::invalid("pages_per_extent must be positive"));
            }
            transact!(self.pool(), TxKind::Read, |tx| dirty_extent(
                tx,
                view,
                file_id,
                extent_idx,
                pages_per_extent
            ))
        })
    }

    fn check_dirty_pages(
        &self,
        after: Option<DirtyPageCursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DirtyPageCheck>>> {
        let after = after.map(|c| (c.layer, c.file_id, c.page_no));
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| check_dirty_pages(
                tx, after, limit
            ))
        })
    }

    fn commit_pack<'a>(&'a self, commit: &'a PackCommit) -> BoxFuture<'a, Result<()>> {
        boxed(async move { transact!(self.pool(), TxKind::Write, |tx| commit_pack(tx, commit)) })
    }
}

crate::logic::extents::impl_meta_extents!(PgMeta, boxed);
crate::logic::tiers::impl_meta_tiers!(PgMeta, boxed);

impl MetaBranches for PgMeta {
    fn create_branch<'a>(
        &'a self,
        name: &'a str,
        from: View,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<BranchInfo>> {
        boxed(async move {
            crate::resolve::check_branch_name(name)?;
            transact!(self.pool(), TxKind::Write, |tx| create_branch(
                tx, name, from, now_ms
            ))
        })
    }

    fn branch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<BranchInfo>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                layers::branch_named(tx, name).await?.ok_or_else(|| {
                    MetaError::not_found(format!(
                        "no branch {name:?} (`fsx branch list` shows the branches)"
                    ))
                })
            })
        })
    }

    fn branches(&self) -> BoxFuture<'_, Result<Vec<BranchInfo>>> {
        boxed(async move { transact!(self.pool(), TxKind::Read, |tx| layers::branches(tx)) })
    }

    fn delete_branch<'a>(&'a self, name: &'a str, now_ms: i64) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| delete_branch(
                tx, name, now_ms
            ))
        })
    }

    fn commit<'a>(
        &'a self,
        request: CommitRequest<'a>,
    ) -> BoxFuture<'a, Result<Option<CommitInfo>>> {
        let CommitRequest {
            branch,
            message,
            auto,
            now_ms,
        } = request;
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                lock_graph(tx, true).await?;
                layers::commit_branch(tx, branch, message, auto, None, !auto, now_ms).await
            })
        })
    }

    fn commit_info(&self, id: CommitId) -> BoxFuture<'_, Result<CommitInfo>> {
        boxed(async move { transact!(self.pool(), TxKind::Read, |tx| layers::commit(tx, id)) })
    }

    fn reset_branch(
        &self,
        branch: BranchId,
        to: CommitId,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| reset_branch(
                tx, branch, to, now_ms
            ))
        })
    }

    fn expire_commits(&self, before_ms: i64, now_ms: i64) -> BoxFuture<'_, Result<u64>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| expire_commits(
                tx, before_ms, now_ms
            ))
        })
    }

    fn merge_files<'a>(
        &'a self,
        target: BranchId,
        source: View,
        files: &'a [FileId],
        message: &'a str,
        merged: CommitId,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<CommitInfo>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| merge_files(
                tx, target, source, files, message, merged, now_ms
            ))
        })
    }

    fn layer_graph(&self) -> BoxFuture<'_, Result<LayerGraph>> {
        boxed(async move { transact!(self.pool(), TxKind::Read, |tx| layers::graph(tx)) })
    }

    fn layer_usage<'a>(&'a self, ids: &'a [LayerId]) -> BoxFuture<'a, Result<LayerUsage>> {
        boxed(async move { transact!(self.pool(), TxKind::Read, |tx| layers::usage(tx, ids)) })
    }
}
