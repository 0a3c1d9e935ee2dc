//! The embedded metadata engine: one SQLite database file.
//!
//! Concurrency design (the JuiceFS SQLite engine's "database is locked" is
//! its users' top complaint, so this is deliberate):
//!
//! - WAL journal, so readers never block the writer nor the writer readers;
//! - one writer connection per process behind a mutex, and every write
//!   transaction is `BEGIN IMMEDIATE`, so two writers never deadlock on a
//!   lock upgrade; across processes SQLite's own lock serialises them, with
//!   a busy timeout instead of an immediate error;
//! - a pool of reader connections, each read one deferred transaction, i.e.
//!   one consistent snapshot;
//! - `synchronous = FULL`: a committed transaction survives power loss,
//!   which is what makes `sync` an acknowledged, durable write.
//!
//! **Read-only media.** Opening an existing database that cannot be written
//! (a read-only mount, no write permission) falls back to a read-only
//! engine instead of failing: every read works, every write fails at once
//! with a message that says why, and the best-effort statistics (operation
//! counters, access counts) are skipped. If SQLite cannot even create the
//! WAL index next to the database there, the database is opened
//! `immutable` — correct for media nothing can change; a WAL left behind by
//! a writer that did not close cleanly is then not seen, which is warned
//! about.
//!
//! Calls run synchronously when the returned future is first polled: SQLite
//! does local I/O of a few pages per call, and the futures stay free of any
//! runtime.

mod dialect;
mod hot;
mod schema;
mod sql;

pub use hot::SqliteHotStore;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fsx_store::BoxFuture;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::SCHEMA_VERSION;
use crate::contract::*;
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::logic::Caches;
use crate::num;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_IDLE_READERS: usize = 8;

/// The SQLite metadata engine.
#[derive(Clone)]
pub struct SqliteMeta {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// How readers open the database when it cannot be written (see the
    /// module docs): a `file:` URI with `mode=ro` or `immutable=1`.
    read_only: Option<String>,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// What the process remembers of the volume (see [`Caches`]).
    caches: Caches,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Readers are read-only connections, which cannot checkpoint: if
        // one closed last, SQLite would leave the whole WAL beside the
        // database (a copy of `meta.db` alone would then miss every
        // change, and read-only media would need `immutable`). Closing
        // them first makes the writer the last connection, which merges
        // the WAL into the database and removes it.
        lock(&self.readers).clear();
    }
}

impl std::fmt::Debug for SqliteMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteMeta({})", self.inner.path.display())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-transaction drops the transaction (rollback); the
    // connection itself stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn sql_err(e: rusqlite::Error) -> MetaError {
    use rusqlite::ErrorCode;
    // A row closure that met an out-of-range column (see `col_u64`) carries
    // the engine's own error through rusqlite: hand it back unchanged.
    let e = match e {
        rusqlite::Error::FromSqlConversionFailure(i, t, inner) => {
            match inner.downcast::<MetaError>() {
                Ok(m) => return *m,
                Err(inner) => rusqlite::Error::FromSqlConversionFailure(i, t, inner),
            }
        }
        e => e,
    };
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => MetaErrorKind::Unavailable,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => MetaErrorKind::Corrupt,
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            MetaErrorKind::Unavailable
        }
        _ => MetaErrorKind::Other,
    };
    MetaError::new(kind, format!("sqlite: {e}")).with_source(e)
}

/// Column `i` of a row as the contract's `u64`. A negative value is the
/// `Corrupt` error of [`num::from_sql`] naming `column`, carried inside a
/// rusqlite error so it works in row closures; [`sql_err`] unwraps it.
pub(crate) fn col_u64(r: &rusqlite::Row<'_>, i: usize, column: &str) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    num::from_sql(v, column).map_err(|e| in_row(i, e))
}

fn in_row(i: usize, e: MetaError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, Box::new(e))
}

/// Distinct statements kept prepared per connection: more than the engine
/// uses, so a write never re-parses one.
const STATEMENT_CACHE: usize = 256;

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql_err)?;
    // `rarray(?n)`: how the dialect binds a list (see `dialect`).
    rusqlite::vtab::array::load_module(conn).map_err(sql_err)?;
    Ok(())
}

impl SqliteMeta {
    /// Opens (creating if `create`) the database at `path`.
    ///
    /// Without `create`, a missing file is `NotFound` with a message that
    /// names it, rather than an empty new database.
    pub fn open(path: impl AsRef<Path>, create: bool) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !create && !path.exists() {
            return Err(MetaError::not_found(format!(
                "no metadata database at {}: is this the right volume path? (`fsx init` creates one)",
                path.display()
            )));
        }
        match Self::open_writable(&path, create) {
            Err(e) if !create && e.kind() == MetaErrorKind::Unavailable && !writable(&path) => {
                tracing::debug!(error = %e, "metadata database is not writable; opening it read-only");
                Self::open_read_only(path)
            }
            other => other,
        }
    }

    /// Opens a database that cannot be written: `mode=ro`, or `immutable`
    /// when SQLite cannot keep its WAL index there (see the module docs).
    fn open_read_only(path: PathBuf) -> Result<Self> {
        let base = format!("file:{}", uri_path(&path));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let probe = |uri: &str| -> Result<Connection> {
            let c = Connection::open_with_flags(uri, flags).map_err(sql_err)?;
            configure(&c)?;
            c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sql_err)?;
            Ok(c)
        };
        let ro = format!("{base}?mode=ro");
        let (uri, conn) = match probe(&ro) {
            Ok(c) => (ro, c),
            Err(_) => {
                let wal = PathBuf::from(format!("{}-wal", path.display()));
                if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                    tracing::warn!(
                        wal = %wal.display(),
                        "the volume is on read-only media and its metadata has a WAL a writer left unmerged; changes in it are not visible (open the volume once where it is writable to merge them)"
                    );
                } else {
                    tracing::info!(path = %path.display(), "opening metadata on read-only media as immutable");
                }
                let imm = format!("{base}?immutable=1");
                let c = probe(&imm).map_err(|e| {
                    MetaError::new(
                        MetaErrorKind::Unavailable,
                        format!(
                            "cannot open {} even read-only: {e}; check the file's permissions",
                            path.display()
                        ),
                    )
                    .with_source(e)
                })?;
                (imm, c)
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                read_only: Some(uri),
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                caches: Caches::default(),
            }),
        })
    }

    /// Whether the database is open read-only (see the module docs).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only.is_some()
    }

    fn open_writable(path: &Path, create: bool) -> Result<Self> {
        let path = path.to_path_buf();
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let writer = Connection::open_with_flags(&path, flags).map_err(|e| {
            MetaError::new(
                MetaErrorKind::Unavailable,
                format!("cannot open {}: {e}", path.display()),
            )
            .with_source(e)
        })?;
        configure(&writer)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(sql_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(MetaError::new(
                MetaErrorKind::Unavailable,
                format!(
                    "{} cannot use WAL mode (got {mode}); is it on a network file system?",
                    path.display()
                ),
            ));
        }
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql_err)?;
        // SQLite opens a file it may not write read-only without a word.
        if writer.is_readonly(rusqlite::MAIN_DB).map_err(sql_err)? {
            return Err(MetaError::new(
                MetaErrorKind::Unavailable,
                format!("{} is read-only", path.display()),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                read_only: None,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                caches: Caches::default(),
            }),
        })
    }

    /// Opens `sqlite://PATH` (`sqlite:///abs/path` or `sqlite://rel/path`).
    pub fn open_url(url: &str, create: bool) -> Result<Self> {
        let path = url.strip_prefix("sqlite://").ok_or_else(|| {
            MetaError::invalid(format!(
                "{url:?} is not a SQLite URL: use sqlite:///path/to/meta.db"
            ))
        })?;
        if path.is_empty() {
            return Err(MetaError::invalid(
                "sqlite:// URL has no path: use sqlite:///path/to/meta.db",
            ));
        }
        Self::open(path, create)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        if self.is_read_only() {
            return Err(MetaError::new(
                MetaErrorKind::Unavailable,
                format!(
                    "{} cannot be written (read-only media or no write permission), and this command changes the volume: run it where the volume is writable",
                    self.inner.path.display()
                ),
            ));
        }
        transact(
            &mut lock(&self.inner.writer),
            TransactionBehavior::Immediate,
            f,
        )
    }

    /// Runs `f` in one read transaction on the writer connection, whose
    /// page cache holds what the process just wrote: for reads that follow
    /// this process's own writes (the packer's question after each sync),
    /// where a pooled reader would first re-read the changed pages.
    pub(crate) fn read_on_writer<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        transact(
            &mut lock(&self.inner.writer),
            TransactionBehavior::Deferred,
            f,
        )
    }

    /// Runs `f` in one read transaction (a snapshot) on a pooled reader.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.inner.readers).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = match &self.inner.read_only {
                    Some(uri) => Connection::open_with_flags(
                        uri,
                        OpenFlags::SQLITE_OPEN_READ_ONLY
                            | OpenFlags::SQLITE_OPEN_URI
                            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    ),
                    None => Connection::open_with_flags(
                        &self.inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    ),
                }
                .map_err(sql_err)?;
                configure(&c)?;
                c
            }
        };
        let out = transact(&mut conn, TransactionBehavior::Deferred, f);
        let mut pool = lock(&self.inner.readers);
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }
}

/// Whether this process could write `path` and create files next to it
/// (SQLite's journal and WAL index). Used only to tell read-only media
/// from other open failures.
fn writable(path: &Path) -> bool {
    let file_ok = std::fs::OpenOptions::new().append(true).open(path).is_ok();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| Path::new("."));
    let probe = dir.join(format!(".fsx-write-probe-{}", std::process::id()));
    let dir_ok = std::fs::File::create(&probe).is_ok();
    if dir_ok {
        let _ = std::fs::remove_file(&probe);
    }
    file_ok && dir_ok
}

/// `path` for a `file:` URI: the characters a URI gives meaning to are
/// escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// Runs `f` in one transaction on `conn`: committed if `f` succeeds,
/// rolled back (nothing changed) if it fails.
fn transact<T>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction_with_behavior(behavior).map_err(sql_err)?;
    let out = f(&tx)?;
    tx.commit().map_err(sql_err)?;
    Ok(out)
}

fn schema_version(tx: &Transaction<'_>) -> Result<u32> {
    let has_table: bool = query_one(
        tx,
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'fsx_volume'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map_err(sql_err)?
        > 0;
    if !has_table {
        return Ok(0);
    }
    let v: Option<String> = query_one(
        tx,
        "SELECT value FROM fsx_volume WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql_err)?;
    let v = v.ok_or_else(|| {
        MetaError::new(MetaErrorKind::Corrupt, "fsx_volume has no schema_version")
    })?;
    v.parse().map_err(|_| {
        MetaError::new(
            MetaErrorKind::Corrupt,
            format!("schema_version {v:?} is not a number"),
        )
    })
}

fn migrate(tx: &Transaction<'_>, from: u32) -> Result<()> {
    for (v, sql) in schema::MIGRATIONS
        .iter()
        .enumerate()
        .skip(num::u32_len(from))
    {
        tracing::info!(from = v, to = v + 1, "migrating metadata schema");
        tx.execute_batch(sql).map_err(sql_err)?;
        if v + 1 == num::u32_len(schema::CHECKSUMS_SINCE) {
            schema::backfill_page_checksums(tx)?;
        }
    }
    exec(
        tx,
        "INSERT INTO fsx_volume (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![SCHEMA_VERSION.to_string()],
    )
    .map_err(sql_err)?;
    Ok(())
}

/// Runs a cached statement that returns no rows. Every statement goes
/// through the connection's statement cache: parsing and planning cost more
/// than running the small statements of a write.
pub(crate) fn exec<P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}

/// Runs a cached statement that returns one row.
pub(crate) fn query_one<T, P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
    row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    tx.prepare_cached(sql)?.query_row(params, row)
}

/// Runs a cached statement and collects every row.
fn query_all<T, P: rusqlite::Params>(
    tx: &Transaction<'_>,
    sql: &str,
    params: P,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = tx.prepare_cached(sql).map_err(sql_err)?;
    st.query_map(params, row)
        .map_err(sql_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(sql_err)
}

fn extent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExtentRecord> {
    Ok(ExtentRecord {
        key: r.get(0)?,
        refcount: r.get(1)?,
        state: if r.get::<_, i64>(2)? == 0 {
            ExtentState::Live
        } else {
            ExtentState::Deleting
        },
        bytes: col_u64(r, 3, "extent size")?,
        idle_since_ms: r.get(4)?,
    })
}

/// Defers a synchronous SQLite call until the future is polled, as callers
/// of an async contract expect.
fn lazy<'a, T: 'a>(
    f: impl FnOnce() -> Result<T> + fsx_store::MaybeSend + 'a,
) -> BoxFuture<'a, Result<T>> {
    Box::pin(async move { f() })
}

crate::logic::settings::impl_meta_settings!(SqliteMeta, sync);

crate::logic::files::impl_meta_files!(SqliteMeta, sync);

impl MetaExtents for SqliteMeta {
    fn pin_extent<'a>(
        &'a self,
        key: &'a str,
        bytes: u64,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
            exec(tx,
                "INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
                 VALUES (?1, 0, 0, ?2, ?3, ?3)
                 ON CONFLICT (key) DO UPDATE SET idle_since_ms = excluded.idle_since_ms WHERE fsx_extents.state = 0",
                params![key, num::to_sql(bytes, "extent size")?, now_ms],
            )
            .map_err(sql_err)?;
            let state: i64 =
                query_one(tx, "SELECT state FROM fsx_extents WHERE key = ?1", params![key], |r| r.get(0)).map_err(sql_err)?;
            if state == 0 {
                Ok(())
            } else {
                Err(MetaError::conflict(format!("extent {key} is being garbage-collected; retry after GC")))
            }
        })
        })
    }

    fn gc_claim(
        &self,
        now_ms: i64,
        grace_ms: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>>> {
        lazy(move || {
            self.write(|tx| {
            let keys: Vec<String> = {
                query_all(tx, "SELECT key FROM fsx_extents WHERE refcount = 0 AND state = 0 AND idle_since_ms < ?1
                         ORDER BY idle_since_ms LIMIT ?2", params![now_ms.saturating_sub(grace_ms), num::limit(limit)], |r| r.get(0))?
            };
            let mut st = tx.prepare_cached("UPDATE fsx_extents SET state = 1 WHERE key = ?1").map_err(sql_err)?;
            for k in &keys {
                st.execute(params![k]).map_err(sql_err)?;
            }
            Ok(keys)
        })
        })
    }

    fn gc_claim_orphan<'a>(&'a self, key: &'a str, now_ms: i64) -> BoxFuture<'a, Result<bool>> {
        lazy(move || {
            self.write(|tx| {
            let n = exec(tx,
                    "INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
                     VALUES (?1, 0, 1, 0, ?2, ?2) ON CONFLICT (key) DO NOTHING",
                    params![key, now_ms],
                )
                .map_err(sql_err)?;
            Ok(n == 1)
        })
        })
    }

    fn gc_forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                exec(
                    tx,
                    "DELETE FROM fsx_extents WHERE key = ?1 AND state = 1 AND refcount = 0",
                    params![key],
                )
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn list_extents<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ExtentRecord>>> {
        lazy(move || {
            self.read(|tx| {
                query_all(
                    tx,
                    "SELECT key, refcount, state, bytes, idle_since_ms FROM fsx_extents
                     WHERE key > ?1 ORDER BY key LIMIT ?2",
                    params![after.unwrap_or(""), num::limit(limit)],
                    extent_row,
                )
            })
        })
    }

    fn extent_totals(&self) -> BoxFuture<'_, Result<ExtentTotals>> {
        lazy(move || {
            self.read(|tx| {
                query_one(
                    tx,
                    "SELECT count(*), coalesce(sum(bytes), 0),
                            coalesce(sum(CASE WHEN refcount > 0 THEN 1 ELSE 0 END), 0),
                            coalesce(sum(CASE WHEN refcount > 0 THEN bytes ELSE 0 END), 0)
                     FROM fsx_extents",
                    [],
                    |r| {
                        Ok(ExtentTotals {
                            count: col_u64(r, 0, "extent count")?,
                            bytes: col_u64(r, 1, "extent bytes")?,
                            referenced_count: col_u64(r, 2, "referenced extent count")?,
                            referenced_bytes: col_u64(r, 3, "referenced extent bytes")?,
                        })
                    },
                )
                .map_err(sql_err)
            })
        })
    }

    fn count_references<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, i64)>>> {
        lazy(move || {
            self.read(|tx| {
            query_all(tx, "SELECT key, count(*) FROM fsx_extent_map WHERE key > ?1 GROUP BY key ORDER BY key LIMIT ?2", params![after.unwrap_or(""), num::limit(limit)], |r| Ok((r.get(0)?, r.get(1)?)))
        })
        })
    }
}

impl MetaTiers for SqliteMeta {
    fn hot_tier(&self, max_row_bytes: usize) -> Result<Option<Arc<dyn fsx_store::ExtentBackend>>> {
        Ok(Some(Arc::new(self.hot_store(max_row_bytes)?)))
    }

    fn tier_record<'a>(&'a self, marks: &'a [TierMark], now_ms: i64) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                for m in marks {
                    let bytes = num::to_sql(m.bytes, "extent size")?;
                    match m.state {
                        CopyState::Present => exec(tx,
                            "INSERT INTO fsx_tier_copies (key, tier, bytes, state, attempts, next_ms, last_error)
                             VALUES (?1, ?2, ?3, 0, 0, 0, NULL)
                             ON CONFLICT (key, tier) DO UPDATE SET bytes = excluded.bytes, state = 0,
                                 attempts = 0, next_ms = 0, last_error = NULL",
                            params![m.key, m.tier, bytes],
                        ),
                        CopyState::Queued => exec(tx,
                            "INSERT INTO fsx_tier_copies (key, tier, bytes, state, attempts, next_ms)
                             VALUES (?1, ?2, ?3, 1, 0, ?4) ON CONFLICT (key, tier) DO NOTHING",
                            params![m.key, m.tier, bytes, now_ms],
                        ),
                    }
                    .map_err(sql_err)?;
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
        lazy(move || {
            self.write(|tx| {
                exec(tx,
                    "UPDATE fsx_tier_copies SET attempts = attempts + 1, next_ms = ?3, last_error = ?4
                     WHERE key = ?1 AND tier = ?2 AND state = 1",
                    params![key, tier, next_ms, error],
                )
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn tier_forget<'a>(&'a self, key: &'a str, tier: Option<&'a str>) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                match tier {
                    Some(t) => exec(
                        tx,
                        "DELETE FROM fsx_tier_copies WHERE key = ?1 AND tier = ?2",
                        params![key, t],
                    ),
                    None => exec(
                        tx,
                        "DELETE FROM fsx_tier_copies WHERE key = ?1",
                        params![key],
                    )
                    .and_then(|_| {
                        exec(
                            tx,
                            "DELETE FROM fsx_extent_access WHERE key = ?1",
                            params![key],
                        )
                    })
                    .and_then(|_| {
                        exec(
                            tx,
                            "DELETE FROM fsx_extent_digests WHERE key = ?1",
                            params![key],
                        )
                    }),
                }
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn tier_copies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<TierCopy>>> {
        lazy(move || {
            self.read(|tx| {
                query_all(
                    tx,
                    &format!(
                        "SELECT {TIER_COLUMNS} FROM fsx_tier_copies WHERE key = ?1 ORDER BY tier"
                    ),
                    params![key],
                    tier_copy_row,
                )
            })
        })
    }

    fn tier_list<'a>(
        &'a self,
        tier: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TierCopy>>> {
        lazy(move || {
            self.read(|tx| {
                query_all(
                    tx,
                    &format!(
                        "SELECT {TIER_COLUMNS} FROM fsx_tier_copies WHERE tier = ?1 AND key > ?2
                         ORDER BY key LIMIT ?3"
                    ),
                    params![tier, after.unwrap_or(""), num::limit(limit)],
                    tier_copy_row,
                )
            })
        })
    }

    fn tier_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<TierCopy>>> {
        lazy(move || {
            self.read(|tx| {
                query_all(tx, &format!(
                        "SELECT {TIER_COLUMNS} FROM fsx_tier_copies WHERE state = 1 AND next_ms <= ?1
                         ORDER BY next_ms, key, tier LIMIT ?2"
                    ), params![now_ms, num::limit(limit)], tier_copy_row)
            })
        })
    }

    fn tier_totals(&self) -> BoxFuture<'_, Result<Vec<TierTotals>>> {
        lazy(move || {
            self.read(|tx| {
                query_all(
                    tx,
                    "SELECT tier,
                                coalesce(sum(CASE WHEN state = 0 THEN 1 ELSE 0 END), 0),
                                coalesce(sum(CASE WHEN state = 0 THEN bytes ELSE 0 END), 0),
                                coalesce(sum(CASE WHEN state = 1 THEN 1 ELSE 0 END), 0)
                         FROM fsx_tier_copies GROUP BY tier ORDER BY tier",
                    [],
                    |r| {
                        Ok(TierTotals {
                            tier: r.get(0)?,
                            count: col_u64(r, 1, "copy count")?,
                            bytes: col_u64(r, 2, "copy bytes")?,
                            queued: col_u64(r, 3, "queue length")?,
                        })
                    },
                )
            })
        })
    }

    fn touch_extent<'a>(
        &'a self,
        key: &'a str,
        hits: u64,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            if self.is_read_only() {
                // Best effort, like the counters.
                return Ok(());
            }
            self.write(|tx| {
                exec(
                    tx,
                    "INSERT INTO fsx_extent_access (key, hits, last_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET hits = hits + excluded.hits,
                         last_ms = max(last_ms, excluded.last_ms)",
                    params![key, num::bound(hits), now_ms],
                )
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn extent_access<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<AccessStats>> {
        lazy(move || {
            self.read(|tx| {
                Ok(query_one(
                    tx,
                    "SELECT hits, last_ms FROM fsx_extent_access WHERE key = ?1",
                    params![key],
                    |r| {
                        Ok(AccessStats {
                            hits: col_u64(r, 0, "access hits")?,
                            last_ms: r.get(1)?,
                        })
                    },
                )
                .optional()
                .map_err(sql_err)?
                .unwrap_or_default())
            })
        })
    }

    fn set_extent_digests<'a>(
        &'a self,
        key: &'a str,
        digests: &'a [u8],
    ) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                exec(
                    tx,
                    "INSERT INTO fsx_extent_digests (key, digests) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET digests = excluded.digests",
                    params![key, digests],
                )
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn extent_digests<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        lazy(move || {
            self.read(|tx| {
                query_one(
                    tx,
                    "SELECT digests FROM fsx_extent_digests WHERE key = ?1",
                    params![key],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()
                .map(|d| d.map(Bytes::from))
                .map_err(sql_err)
            })
        })
    }
}

crate::logic::branches::impl_meta_branches!(SqliteMeta, sync);

const TIER_COLUMNS: &str = "key, tier, bytes, state, attempts, next_ms, last_error";

fn tier_copy_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TierCopy> {
    Ok(TierCopy {
        key: r.get(0)?,
        tier: r.get(1)?,
        bytes: col_u64(r, 2, "copy bytes")?,
        state: if r.get::<_, i64>(3)? == 0 {
            CopyState::Present
        } else {
            CopyState::Queued
        },
        attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
        next_ms: r.get(5)?,
        last_error: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;

    /// A volume written by schema version `v` (1 to 3) migrates to the
    /// current version with its files, extents, dirty pages and leases on
    /// `main`.
    fn migrate_from(v: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let c = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..v] {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(&format!(
            "INSERT INTO fsx_volume (key, value) VALUES ('schema_version', '{v}'), ('volume_id', 'v'),
                 ('extent_size', '2097152'), ('store_url', 'memory://'), ('created_ms', '1');
             INSERT INTO fsx_files (id, name, page_size, size, write_seq, created_ms, modified_ms)
                 VALUES (7, 'kept', 4096, 8192, 3, 1, 2);
             INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
                 VALUES ('extent/k', 1, 0, 100, 1, 1);
             INSERT INTO fsx_extent_map (file_id, extent_idx, key) VALUES (7, 0, 'extent/k');
             INSERT INTO fsx_dirty_pages (file_id, page_no, seq, data) VALUES (7, 1, 3, zeroblob(4096));
             INSERT INTO fsx_leases (file_id, holder, expires_ms) VALUES (7, 'w', 99);"
        ))
        .unwrap();
        drop(c);
        let m = SqliteMeta::open(&path, false).unwrap();
        block_on(m.open_volume()).unwrap();
        let f = block_on(m.file(View::MAIN, "kept")).unwrap();
        assert_eq!((f.id, f.size), (7, 8192));
        let map = block_on(m.read_map(View::MAIN, 7, 0, 2, 512)).unwrap();
        assert_eq!(map.extents, vec![(0, "extent/k".to_string())]);
        assert_eq!(map.dirty.len(), 1);
        let lease = block_on(m.lease(MAIN_BRANCH, 7)).unwrap().unwrap();
        assert_eq!(lease.holder, "w");
        // New ids never collide with migrated ones.
        let g = block_on(m.create_file(MAIN_BRANCH, "new", 4096, 3)).unwrap();
        assert!(g.id > 7, "new file id {}", g.id);
        let refs = block_on(m.count_references(None, 10)).unwrap();
        assert_eq!(refs, vec![("extent/k".to_string(), 1)]);
        // Tables of every version work.
        block_on(m.add_counters(&[Counter {
            tier: "cold".into(),
            op: "put".into(),
            calls: 1,
            bytes: 2,
        }]))
        .unwrap();
        let mark = TierMark::new("extent/k", "cold", 7, CopyState::Queued);
        block_on(m.tier_record(std::slice::from_ref(&mark), 5)).unwrap();
        assert_eq!(block_on(m.tier_due(5, 10)).unwrap().len(), 1);
        block_on(m.create_branch("dev", View::MAIN, 4)).unwrap();
        let version = block_on(m.setting("schema_version")).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
    }

    #[test]
    fn older_schemas_migrate_with_their_data() {
        // Versions whose file table has no layer column.
        for v in 1..4 {
            migrate_from(v);
        }
    }

    /// A version-4 volume gets checksums for its dirty pages (so they read
    /// back, and fsck finds them intact) and a commit counter past every
    /// commit id it holds.
    #[test]
    fn version_4_gets_checksums_and_a_commit_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let c = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..4] {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(
            "INSERT INTO fsx_volume (key, value) VALUES ('schema_version', '4'), ('volume_id', 'v'),
                 ('extent_size', '2097152'), ('store_url', 'memory://'), ('created_ms', '1');
             UPDATE fsx_volume SET value = '8' WHERE key = 'next_file_id';
             INSERT INTO fsx_layers (id, parent, frozen, created_ms) VALUES (2, 1, 0, 1);
             UPDATE fsx_layers SET frozen = 1 WHERE id = 1;
             UPDATE fsx_branches SET head = 2, commit_id = 5 WHERE id = 1;
             INSERT INTO fsx_commits (id, layer, parent, merged, branch, message, auto, created_ms)
                 VALUES (5, 1, NULL, NULL, 'main', 'old', 0, 1);
             INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, created_ms, modified_ms)
                 VALUES (1, 7, 'kept', 4096, 12288, 3, 1, 2);
             INSERT INTO fsx_dirty_pages (layer, file_id, page_no, seq, data)
                 VALUES (1, 7, 1, 3, randomblob(4096)), (1, 7, 2, 3, NULL);",
        )
        .unwrap();
        let before: Vec<u8> = c
            .query_row(
                "SELECT data FROM fsx_dirty_pages WHERE page_no = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        drop(c);
        let m = SqliteMeta::open(&path, false).unwrap();
        block_on(m.open_volume()).unwrap();
        let map = block_on(m.read_map(View::MAIN, 7, 0, 3, 512)).unwrap();
        assert_eq!(map.dirty.len(), 2);
        assert_eq!(map.dirty[0].data.as_deref(), Some(&before[..]));
        assert_eq!(map.dirty[1].data, None);
        let checks = block_on(m.check_dirty_pages(None, 10)).unwrap();
        assert!(checks.iter().all(|c| c.intact), "{checks:?}");
        let commit = block_on(m.commit(CommitRequest::new(MAIN_BRANCH, "new", 3)))
            .unwrap()
            .unwrap();
        assert!(commit.id > 5, "commit id {} reuses an old one", commit.id);
        let version = block_on(m.setting("schema_version")).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
    }
}
