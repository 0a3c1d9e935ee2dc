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
//! # Concurrency design
//!
//! Every [`MetaEngine`] call is one transaction. Two isolation levels:
//!
//! - **Reads** (`file`, `list_files`, `lease`, `read_map`, `dirty_*`,
//!   `list_extents`, `count_references`) run `REPEATABLE READ READ ONLY`:
//!   one snapshot for all their statements (the contract's "reads are
//!   snapshots"), and read-only snapshot transactions never fail to
//!   serialize.
//! - **Writes** run `READ COMMITTED` and make every check-then-act safe
//!   with row locks, not with SERIALIZABLE (which would abort and retry
//!   whole transactions under the contention that leases invite):
//!   - a call concerning a file first locks the file's `fsx_files` row
//!     (`SELECT … FOR UPDATE`): leases, the dirty buffer, the extent map and
//!     the write sequence of a file only change under that lock, so lease
//!     checks, `commit_pack`'s expected-key check and `write_seq` increments
//!     are serialized per file. After waiting for the lock, the next
//!     statement sees what the previous holder committed;
//!   - extent records are only changed by single conditional statements
//!     (`refcount + 1 … WHERE state = 0`, `refcount - n … WHERE refcount >=
//!     n`, GC's `state = 1 WHERE refcount = 0 AND …`), which PostgreSQL
//!     re-evaluates on the newest row version after waiting for a concurrent
//!     writer. So a claimed record can never gain a reference (incref finds
//!     `state = 1` and the pack fails with `Conflict`), a referenced or
//!     freshly pinned record is never claimed, and a refcount never goes
//!     negative;
//!   - a transaction that changes several extent records first locks them
//!     in key order (`ORDER BY key FOR UPDATE`), file rows are always locked
//!     before extent records, and GC skips records others have locked
//!     (`SKIP LOCKED`), so these calls cannot deadlock one another;
//!   - creating the schema takes a transaction-scoped advisory lock per
//!     schema, so two processes initialising or migrating one volume do not
//!     race on DDL.
//!
//!   Where a deadlock remains possible (two renames crossing the same two
//!   names) PostgreSQL aborts one transaction, and the call retries it (see
//!   the `conn` module), at most a few times.
//! - **Durability.** A call returns after `COMMIT`, which with PostgreSQL's
//!   default `synchronous_commit = on` is flushed to the WAL.
//!
//! The schema is in the `schema` module, with the same tables, invariants
//! and version (`crate::SCHEMA_VERSION`) as the SQLite engine.

pub(crate) mod conn;
mod hot;
mod schema;

use std::sync::Arc;

use bytes::Bytes;
use fsx_store::BoxFuture;
use tokio::runtime::Handle;

use crate::contract::*;
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::{SCHEMA_VERSION, check_extent_size};
use conn::{PgUrl, Pool, Tx, TxKind, col, is_unique_violation, transact};
pub use hot::PgHotStore;

/// The PostgreSQL metadata engine (see the module docs). Cheap to clone:
/// clones share one connection pool.
#[derive(Clone)]
pub struct PgMeta {
    pool: Arc<Pool>,
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
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.pool.url().shown
    }

    fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Builds a `SELECT` of the file columns with a `&'static str` result, so
/// the statement cache can key on it.
macro_rules! file_sql {
    ($($rest:literal)+) => {
        concat!("SELECT id, name, page_size, size, created_ms, modified_ms ", $($rest),+)
    };
}

fn file_row(r: &tokio_postgres::Row) -> Result<FileMeta> {
    let page_size: i64 = col(r, 2)?;
    let size: i64 = col(r, 3)?;
    Ok(FileMeta {
        id: col(r, 0)?,
        name: col(r, 1)?,
        page_size: u32::try_from(page_size)
            .map_err(|_| corrupt(format!("page size {page_size} out of range")))?,
        size: u64::try_from(size).map_err(|_| corrupt(format!("file size {size} is negative")))?,
        created_ms: col(r, 4)?,
        modified_ms: col(r, 5)?,
    })
}

fn corrupt(message: impl Into<String>) -> MetaError {
    MetaError::new(MetaErrorKind::Corrupt, message)
}

/// A `u64` from the contract as a `BIGINT`.
fn big(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        MetaError::invalid(format!(
            "{what} {v} is too large (the limit is {})",
            i64::MAX
        ))
    })
}

/// A `u64` bound of a range query, clamped: nothing stored exceeds `i64::MAX`.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A non-negative `BIGINT` as the contract's `u64`.
fn unsigned(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} {v} is negative")))
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
    for (v, sql) in schema::MIGRATIONS.iter().enumerate().skip(from as usize) {
        tracing::info!(from = v, to = v + 1, "migrating metadata schema");
        tx.batch(sql).await?;
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

async fn file_by_name(tx: &Tx<'_>, name: &str) -> Result<Option<FileMeta>> {
    tx.query_opt(file_sql!("FROM fsx_files WHERE name = $1"), &[&name])
        .await?
        .as_ref()
        .map(file_row)
        .transpose()
}

/// The file called `name`, its row locked until the transaction ends.
async fn lock_file_by_name(tx: &Tx<'_>, name: &str) -> Result<Option<FileMeta>> {
    tx.query_opt(
        file_sql!("FROM fsx_files WHERE name = $1 FOR UPDATE"),
        &[&name],
    )
    .await?
    .as_ref()
    .map(file_row)
    .transpose()
}

fn gone(id: FileId) -> MetaError {
    MetaError::not_found(format!("file #{id} no longer exists"))
}

async fn file_by_id(tx: &Tx<'_>, id: FileId) -> Result<FileMeta> {
    match tx
        .query_opt(file_sql!("FROM fsx_files WHERE id = $1"), &[&id])
        .await?
    {
        Some(r) => file_row(&r),
        None => Err(gone(id)),
    }
}

/// The file `id`, its row locked until the transaction ends: every change
/// to a file's lease, dirty pages and map happens under this lock.
async fn lock_file(tx: &Tx<'_>, id: FileId) -> Result<FileMeta> {
    match tx
        .query_opt(file_sql!("FROM fsx_files WHERE id = $1 FOR UPDATE"), &[&id])
        .await?
    {
        Some(r) => file_row(&r),
        None => Err(gone(id)),
    }
}

async fn lease_of(tx: &Tx<'_>, file_id: FileId) -> Result<Option<LeaseInfo>> {
    match tx
        .query_opt(
            "SELECT holder, expires_ms FROM fsx_leases WHERE file_id = $1",
            &[&file_id],
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
/// the file's row lock.
async fn check_lease(tx: &Tx<'_>, req: &LeaseRequest) -> Result<()> {
    match lease_of(tx, req.file_id).await? {
        Some(l) if l.holder == req.holder => {
            tx.execute(
                "UPDATE fsx_leases SET expires_ms = $2 WHERE file_id = $1",
                &[&req.file_id, &req.now_ms.saturating_add(req.ttl_ms)],
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
/// holds the file's row lock.
async fn check_no_other_writer(
    tx: &Tx<'_>,
    file_id: FileId,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    match lease_of(tx, file_id).await? {
        Some(l) if l.holder != holder && l.expires_ms > now_ms => Err(busy(file_id, &l, now_ms)),
        _ => Ok(()),
    }
}

/// Locks the extent records of `keys` in key order, so that transactions
/// touching several records never wait on each other in a cycle.
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

async fn incref(tx: &Tx<'_>, key: &str) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE fsx_extents SET refcount = refcount + 1 WHERE key = $1 AND state = 0",
            &[&key],
        )
        .await?;
    if n == 1 {
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

/// Removes a file's map entries from `from_idx` on, releasing references.
/// The caller holds the file's row lock.
async fn drop_extents(tx: &Tx<'_>, file_id: FileId, from_idx: i64, now_ms: i64) -> Result<()> {
    let rows = tx
        .query(
            "SELECT key, count(*) FROM fsx_extent_map WHERE file_id = $1 AND extent_idx >= $2
             GROUP BY key ORDER BY key",
            &[&file_id, &from_idx],
        )
        .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for r in &rows {
        counts.push((col::<String>(r, 0)?, col::<i64>(r, 1)?));
    }
    let keys: Vec<&str> = counts.iter().map(|(k, _)| k.as_str()).collect();
    lock_extents(tx, &keys).await?;
    for (key, n) in &counts {
        decref(tx, key, *n, now_ms).await?;
    }
    tx.execute(
        "DELETE FROM fsx_extent_map WHERE file_id = $1 AND extent_idx >= $2",
        &[&file_id, &from_idx],
    )
    .await?;
    Ok(())
}

async fn remove_file(tx: &Tx<'_>, file_id: FileId, now_ms: i64) -> Result<()> {
    drop_extents(tx, file_id, 0, now_ms).await?;
    tx.execute(
        "DELETE FROM fsx_dirty_pages WHERE file_id = $1",
        &[&file_id],
    )
    .await?;
    tx.execute("DELETE FROM fsx_leases WHERE file_id = $1", &[&file_id])
        .await?;
    tx.execute("DELETE FROM fsx_files WHERE id = $1", &[&file_id])
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
        bytes: unsigned(col(r, 3)?, "extent size")?,
        idle_since_ms: col(r, 4)?,
    })
}

fn page_write(r: &tokio_postgres::Row) -> Result<PageWrite> {
    Ok(PageWrite {
        page_no: unsigned(col(r, 0)?, "page number")?,
        data: col::<Option<Vec<u8>>>(r, 1)?.map(Bytes::from),
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

async fn create_file(tx: &Tx<'_>, name: &str, page_size: u32, now_ms: i64) -> Result<FileMeta> {
    let row = tx
        .query_opt(
            "INSERT INTO fsx_files (name, page_size, size, created_ms, modified_ms) VALUES ($1, $2, 0, $3, $3)
             ON CONFLICT (name) DO NOTHING
             RETURNING id, name, page_size, size, created_ms, modified_ms",
            &[&name, &i64::from(page_size), &now_ms],
        )
        .await?;
    match row {
        Some(r) => file_row(&r),
        None => Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("file {name:?} already exists"),
        )),
    }
}

async fn rename_file(
    tx: &Tx<'_>,
    from: &str,
    to: &str,
    replace: bool,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    let src = lock_file_by_name(tx, from)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no file {from:?}")))?;
    check_no_other_writer(tx, src.id, holder, now_ms).await?;
    if from == to {
        return Ok(());
    }
    if let Some(dst) = lock_file_by_name(tx, to).await? {
        if !replace {
            return Err(MetaError::new(
                MetaErrorKind::AlreadyExists,
                format!("file {to:?} already exists"),
            ));
        }
        check_no_other_writer(tx, dst.id, holder, now_ms).await?;
        remove_file(tx, dst.id, now_ms).await?;
    }
    match tx
        .execute(
            "UPDATE fsx_files SET name = $2, modified_ms = $3 WHERE id = $1",
            &[&src.id, &to, &now_ms],
        )
        .await
    {
        Ok(_) => Ok(()),
        // Someone created `to` after we looked: the name is taken now.
        Err(e) if is_unique_violation(&e) => Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("file {to:?} was created concurrently; rename again to replace it"),
        )
        .with_source(e)),
        Err(e) => Err(e),
    }
}

async fn acquire_lease(tx: &Tx<'_>, req: &LeaseRequest) -> Result<()> {
    lock_file(tx, req.file_id).await?;
    if let Some(l) = lease_of(tx, req.file_id).await? {
        let free = l.holder == req.holder
            || l.expires_ms <= req.now_ms
            || req.break_holder.as_deref() == Some(l.holder.as_str());
        if !free {
            return Err(busy(req.file_id, &l, req.now_ms));
        }
    }
    tx.execute(
        "INSERT INTO fsx_leases (file_id, holder, expires_ms) VALUES ($1, $2, $3)
         ON CONFLICT (file_id) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms",
        &[&req.file_id, &req.holder, &req.now_ms.saturating_add(req.ttl_ms)],
    )
    .await?;
    Ok(())
}

async fn commit_writes(tx: &Tx<'_>, batch: &WriteBatch) -> Result<()> {
    let file_id = batch.lease.file_id;
    let now = batch.lease.now_ms;
    let file = lock_file(tx, file_id).await?;
    check_lease(tx, &batch.lease).await?;
    for p in &batch.pages {
        if let Some(d) = &p.data
            && d.len() != file.page_size as usize
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
    let size = big(batch.size, "file size")?;
    if let Some(from) = batch.drop_pages_from {
        tx.execute(
            "DELETE FROM fsx_dirty_pages WHERE file_id = $1 AND page_no >= $2",
            &[&file_id, &clamp(from)],
        )
        .await?;
    }
    if let Some(from) = batch.drop_extents_from {
        drop_extents(tx, file_id, clamp(from), now).await?;
    }
    let seq: i64 = col(
        &tx.query_one(
            "UPDATE fsx_files SET write_seq = write_seq + 1, size = $2, modified_ms = $3 WHERE id = $1
             RETURNING write_seq",
            &[&file_id, &size, &now],
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
        last.insert(big(p.page_no, "page number")?, p.data.as_deref());
    }
    let page_nos: Vec<i64> = last.keys().copied().collect();
    let datas: Vec<Option<&[u8]>> = last.values().copied().collect();
    tx.execute(
        "INSERT INTO fsx_dirty_pages (file_id, page_no, seq, data)
         SELECT $1, p, $2, d FROM unnest($3::bigint[], $4::bytea[]) AS t(p, d)
         ON CONFLICT (file_id, page_no) DO UPDATE SET seq = excluded.seq, data = excluded.data",
        &[&file_id, &seq, &page_nos, &datas],
    )
    .await?;
    Ok(())
}

async fn read_map(
    tx: &Tx<'_>,
    file_id: FileId,
    first_page: u64,
    count: u64,
    ppe: u64,
) -> Result<ReadMap> {
    let file = file_by_id(tx, file_id).await?;
    let mut map = ReadMap {
        size: file.size,
        ..ReadMap::default()
    };
    if count == 0 || ppe == 0 {
        return Ok(map);
    }
    let last = first_page.saturating_add(count - 1);
    let rows = tx
        .query(
            "SELECT page_no, data FROM fsx_dirty_pages
             WHERE file_id = $1 AND page_no >= $2 AND page_no <= $3 ORDER BY page_no",
            &[&file_id, &clamp(first_page), &clamp(last)],
        )
        .await?;
    map.dirty = rows.iter().map(page_write).collect::<Result<_>>()?;
    let rows = tx
        .query(
            "SELECT extent_idx, key FROM fsx_extent_map
             WHERE file_id = $1 AND extent_idx >= $2 AND extent_idx <= $3 ORDER BY extent_idx",
            &[&file_id, &clamp(first_page / ppe), &clamp(last / ppe)],
        )
        .await?;
    map.extents = rows
        .iter()
        .map(|r| Ok((unsigned(col(r, 0)?, "extent index")?, col(r, 1)?)))
        .collect::<Result<_>>()?;
    Ok(map)
}

async fn dirty_extent(
    tx: &Tx<'_>,
    file_id: FileId,
    extent_idx: u64,
    ppe: u64,
) -> Result<DirtyExtent> {
    let file = file_by_id(tx, file_id).await?;
    let current_key = match tx
        .query_opt(
            "SELECT key FROM fsx_extent_map WHERE file_id = $1 AND extent_idx = $2",
            &[&file_id, &clamp(extent_idx)],
        )
        .await?
    {
        Some(r) => Some(col(&r, 0)?),
        None => None,
    };
    let first = extent_idx.saturating_mul(ppe);
    let rows = tx
        .query(
            "SELECT page_no, seq, data FROM fsx_dirty_pages
             WHERE file_id = $1 AND page_no >= $2 AND page_no < $3 ORDER BY page_no",
            &[&file_id, &clamp(first), &clamp(first.saturating_add(ppe))],
        )
        .await?;
    let pages = rows
        .iter()
        .map(|r| {
            Ok(DirtyPage {
                page_no: unsigned(col(r, 0)?, "page number")?,
                seq: col(r, 1)?,
                data: col::<Option<Vec<u8>>>(r, 2)?.map(Bytes::from),
            })
        })
        .collect::<Result<_>>()?;
    Ok(DirtyExtent {
        size: file.size,
        current_key,
        pages,
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
            &[&key, &big(bytes, "extent size")?, &now_ms],
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
    let idx = big(c.extent_idx, "extent index")?;
    lock_file(tx, file_id).await?;
    check_lease(tx, &c.lease).await?;
    let current: Option<String> = match tx
        .query_opt(
            "SELECT key FROM fsx_extent_map WHERE file_id = $1 AND extent_idx = $2",
            &[&file_id, &idx],
        )
        .await?
    {
        Some(r) => Some(col(&r, 0)?),
        None => None,
    };
    if current != c.expected_key {
        return Err(MetaError::conflict(format!(
            "extent {} of file #{file_id} changed while packing ({current:?}, expected {:?})",
            c.extent_idx, c.expected_key
        )));
    }
    if c.new_key != c.expected_key {
        let mut keys: Vec<&str> = c
            .new_key
            .iter()
            .chain(c.expected_key.iter())
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        lock_extents(tx, &keys).await?;
        match &c.new_key {
            Some(new) => {
                incref(tx, new).await?;
                tx.execute(
                    "INSERT INTO fsx_extent_map (file_id, extent_idx, key) VALUES ($1, $2, $3)
                     ON CONFLICT (file_id, extent_idx) DO UPDATE SET key = excluded.key",
                    &[&file_id, &idx, new],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "DELETE FROM fsx_extent_map WHERE file_id = $1 AND extent_idx = $2",
                    &[&file_id, &idx],
                )
                .await?;
            }
        }
        if let Some(old) = &c.expected_key {
            decref(tx, old, 1, now).await?;
        }
    }
    if !c.consumed.is_empty() {
        let pages: Vec<i64> = c.consumed.iter().map(|&(p, _)| clamp(p)).collect();
        let seqs: Vec<i64> = c.consumed.iter().map(|&(_, s)| s).collect();
        tx.execute(
            "DELETE FROM fsx_dirty_pages d USING unnest($2::bigint[], $3::bigint[]) AS c(page_no, seq)
             WHERE d.file_id = $1 AND d.page_no = c.page_no AND d.seq = c.seq",
            &[&file_id, &pages, &seqs],
        )
        .await?;
    }
    Ok(())
}

async fn gc_claim(tx: &Tx<'_>, now_ms: i64, grace_ms: i64, limit: usize) -> Result<Vec<String>> {
    let cutoff = now_ms.saturating_sub(grace_ms);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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

impl MetaEngine for PgMeta {
    fn init_volume<'a>(&'a self, config: &'a VolumeConfig) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            check_extent_size(config.extent_size)?;
            transact!(self.pool(), TxKind::Write, |tx| init_volume(
                tx,
                self.url(),
                config
            ))
        })
    }

    fn open_volume(&self) -> BoxFuture<'_, Result<VolumeConfig>> {
        boxed(
            async move { transact!(self.pool(), TxKind::Write, |tx| open_volume(tx, self.url())) },
        )
    }

    fn create_file<'a>(
        &'a self,
        name: &'a str,
        page_size: u32,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<FileMeta>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| create_file(
                tx, name, page_size, now_ms
            ))
        })
    }

    fn file<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<FileMeta>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                file_by_name(tx, name)
                    .await?
                    .ok_or_else(|| MetaError::not_found(format!("no file {name:?}")))
            })
        })
    }

    fn list_files<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<FileMeta>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                // starts_with rather than LIKE: names may contain % and _.
                let rows = tx
                    .query(
                        file_sql!("FROM fsx_files WHERE starts_with(name, $1) ORDER BY name"),
                        &[&prefix],
                    )
                    .await?;
                rows.iter().map(file_row).collect::<Result<Vec<_>>>()
            })
        })
    }

    fn rename_file<'a>(
        &'a self,
        from: &'a str,
        to: &'a str,
        replace: bool,
        holder: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| rename_file(
                tx, from, to, replace, holder, now_ms
            ))
        })
    }

    fn delete_file<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                let f = lock_file_by_name(tx, name)
                    .await?
                    .ok_or_else(|| MetaError::not_found(format!("no file {name:?}")))?;
                check_no_other_writer(tx, f.id, holder, now_ms).await?;
                remove_file(tx, f.id, now_ms).await
            })
        })
    }

    fn acquire_lease<'a>(&'a self, req: &'a LeaseRequest) -> BoxFuture<'a, Result<()>> {
        boxed(async move { transact!(self.pool(), TxKind::Write, |tx| acquire_lease(tx, req)) })
    }

    fn release_lease<'a>(&'a self, file_id: FileId, holder: &'a str) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                tx.execute(
                    "DELETE FROM fsx_leases WHERE file_id = $1 AND holder = $2",
                    &[&file_id, &holder],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn lease(&self, file_id: FileId) -> BoxFuture<'_, Result<Option<LeaseInfo>>> {
        boxed(async move { transact!(self.pool(), TxKind::Read, |tx| lease_of(tx, file_id)) })
    }

    fn commit_writes<'a>(&'a self, batch: &'a WriteBatch) -> BoxFuture<'a, Result<()>> {
        boxed(async move { transact!(self.pool(), TxKind::Write, |tx| commit_writes(tx, batch)) })
    }

    fn read_map(
        &self,
        file_id: FileId,
        first_page: u64,
        count: u64,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<ReadMap>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| read_map(
                tx,
                file_id,
                first_page,
                count,
                pages_per_extent
            ))
        })
    }

    fn dirty_counts<'a>(
        &'a self,
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
            let ppe = i64::try_from(pages_per_extent).unwrap_or(i64::MAX);
            let idxs: Vec<i64> = idxs
                .into_iter()
                .map(|i| i64::try_from(i).unwrap_or(i64::MAX))
                .collect();
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT e.idx, (SELECT count(*) FROM fsx_dirty_pages d
                                        WHERE d.file_id = $1 AND d.page_no >= e.idx * $2
                                          AND d.page_no < (e.idx + 1) * $2)::BIGINT
                         FROM unnest($3::BIGINT[]) AS e(idx) ORDER BY e.idx",
                        &[&file_id, &ppe, &idxs],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .filter_map(|r| {
                        let (idx, n): (i64, i64) = (r.get(0), r.get(1));
                        (n > 0).then(|| DirtySummary {
                            extent_idx: idx.max(0) as u64,
                            pages: n as u64,
                        })
                    })
                    .collect())
            })
        })
    }

    fn dirty_summary(
        &self,
        file_id: FileId,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<Vec<DirtySummary>>> {
        boxed(async move {
            if pages_per_extent == 0 {
                return Err(MetaError::invalid("pages_per_extent must be positive"));
            }
            let ppe = clamp(pages_per_extent);
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT page_no / $2 AS idx, count(*) FROM fsx_dirty_pages WHERE file_id = $1
                         GROUP BY idx ORDER BY idx",
                        &[&file_id, &ppe],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DirtySummary {
                            extent_idx: unsigned(col(r, 0)?, "extent index")?,
                            pages: unsigned(col(r, 1)?, "page count")?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
        })
    }

    fn dirty_extent(
        &self,
        file_id: FileId,
        extent_idx: u64,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<DirtyExtent>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| dirty_extent(
                tx,
                file_id,
                extent_idx,
                pages_per_extent
            ))
        })
    }

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

    fn commit_pack<'a>(&'a self, commit: &'a PackCommit) -> BoxFuture<'a, Result<()>> {
        boxed(async move { transact!(self.pool(), TxKind::Write, |tx| commit_pack(tx, commit)) })
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
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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

    fn add_counters<'a>(&'a self, deltas: &'a [Counter]) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Write, |tx| async {
                // Sorted so that concurrent writers lock rows in one order.
                let mut sorted: Vec<&Counter> = deltas.iter().collect();
                sorted.sort_by(|a, b| (&a.tier, &a.op).cmp(&(&b.tier, &b.op)));
                for d in sorted {
                    let calls = i64::try_from(d.calls).unwrap_or(i64::MAX);
                    let bytes = i64::try_from(d.bytes).unwrap_or(i64::MAX);
                    tx.execute(
                        "INSERT INTO fsx_counters (tier, op, calls, bytes) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (tier, op) DO UPDATE SET calls = fsx_counters.calls + excluded.calls,
                             bytes = fsx_counters.bytes + excluded.bytes",
                        &[&d.tier, &d.op, &calls, &bytes],
                    )
                    .await?;
                }
                Ok(())
            })
        })
    }

    fn counters(&self) -> BoxFuture<'_, Result<Vec<Counter>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let rows = tx
                    .query(
                        "SELECT tier, op, calls, bytes FROM fsx_counters ORDER BY tier, op",
                        &[],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| Counter {
                        tier: r.get(0),
                        op: r.get(1),
                        calls: r.get::<_, i64>(2).max(0) as u64,
                        bytes: r.get::<_, i64>(3).max(0) as u64,
                    })
                    .collect())
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
                    count: r.get::<_, i64>(0).max(0) as u64,
                    bytes: r.get::<_, i64>(1).max(0) as u64,
                    referenced_count: r.get::<_, i64>(2).max(0) as u64,
                    referenced_bytes: r.get::<_, i64>(3).max(0) as u64,
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
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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

    fn hot_tier(&self, max_row_bytes: usize) -> Result<Option<Arc<dyn fsx_store::ExtentBackend>>> {
        Ok(Some(Arc::new(self.hot_store(max_row_bytes)?)))
    }

    fn setting<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
        boxed(async move {
            transact!(self.pool(), TxKind::Read, |tx| async {
                let row = tx
                    .query_opt("SELECT value FROM fsx_volume WHERE key = $1", &[&name])
                    .await?;
                row.map(|r| col(&r, 0)).transpose()
            })
        })
    }

    fn set_setting<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            check_setting_name(name)?;
            transact!(self.pool(), TxKind::Write, |tx| async {
                tx.execute(
                    "INSERT INTO fsx_volume (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&name, &value],
                )
                .await?;
                Ok(())
            })
        })
    }

    fn tier_record<'a>(&'a self, marks: &'a [TierMark], now_ms: i64) -> BoxFuture<'a, Result<()>> {
        boxed(async move {
            // Sorted so that concurrent writers lock rows in one order.
            let mut sorted: Vec<&TierMark> = marks.iter().collect();
            sorted.sort_by(|a, b| (&a.key, &a.tier).cmp(&(&b.key, &b.tier)));
            transact!(self.pool(), TxKind::Write, |tx| async {
                for m in &sorted {
                    let bytes = big(m.bytes, "extent size")?;
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
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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
                            count: unsigned(col(r, 1)?, "copy count")?,
                            bytes: unsigned(col(r, 2)?, "copy bytes")?,
                            queued: unsigned(col(r, 3)?, "queue length")?,
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
            let hits = clamp(hits);
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
                        hits: unsigned(col(&r, 0)?, "access hits")?,
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

fn tier_copy_row(r: &tokio_postgres::Row) -> Result<TierCopy> {
    let state: i64 = col(r, 3)?;
    let attempts: i64 = col(r, 4)?;
    Ok(TierCopy {
        key: col(r, 0)?,
        tier: col(r, 1)?,
        bytes: unsigned(col(r, 2)?, "copy bytes")?,
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
