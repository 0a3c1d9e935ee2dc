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
mod layers;
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

use crate::contract::*;
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::logic::Caches;
use crate::num;
use crate::SCHEMA_VERSION;

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

/// Like [`col_u64`] for a nullable column.
pub(crate) fn col_opt_u64(
    r: &rusqlite::Row<'_>,
    i: usize,
    column: &str,
) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = r.get(i)?;
    v.map(|v| num::from_sql(v, column).map_err(|e| in_row(i, e)))
        .transpose()
}

/// Column `i` of a row as a `u32` (a page size); out of range is the
/// `Corrupt` error of [`num::u32_from_sql`] naming `column`.
pub(crate) fn col_u32(r: &rusqlite::Row<'_>, i: usize, column: &str) -> rusqlite::Result<u32> {
    let v: i64 = r.get(i)?;
    num::u32_from_sql(v, column).map_err(|e| in_row(i, e))
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

    /// `top` and its ancestors, top first (cached: see [`Inner::chains`]).
    pub(crate) fn chain(&self, tx: &Transaction<'_>, top: LayerId) -> Result<Arc<Vec<LayerId>>> {
        if let Some(c) = self.inner.caches.chain(top) {
            return Ok(c);
        }
        let chain = Arc::new(layers::chain(tx, top)?);
        self.inner.caches.keep_chain(top, chain.clone());
        Ok(chain)
    }

    /// Pages `[first, first + count)` of a file through a cached `Flat`
    /// for the frozen layers of `chain` below `head` (the view's own layer,
    /// `None` for a commit). `None` when the flat path does not apply.
    #[allow(clippy::too_many_arguments)]
    fn read_map_flat(
        &self,
        tx: &Transaction<'_>,
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
            Some(h) => layers::layer_row(tx, h, file_id)?,
            None => None,
        };
        if !crate::resolve::flat_fits_under(head_row.as_ref(), ppe) {
            return Ok(None);
        }
        let epoch = layers::epoch(tx)?;
        let key = (run[0], file_id, ppe);
        let cached = self.inner.caches.flats().get(epoch, key);
        let flat = match cached {
            Some(f) => f,
            None => {
                let f = Arc::new(layers::flat(tx, run, file_id, ppe)?);
                self.inner.caches.flats().insert(epoch, key, f.clone());
                f
            }
        };
        let file = flat.file(head_row.as_ref(), file_id)?;
        let head = head.map(|h| (h, head_row.as_ref()));
        match layers::walk_flat(tx, head, &flat, file_id, first, count, ppe)? {
            Some(w) => Ok(Some(w.read_map(file.size))),
            None => {
                self.inner.caches.flats().stale(file_id);
                Ok(None)
            }
        }
    }

    /// The chain of a branch's head.
    fn head_chain(&self, tx: &Transaction<'_>, branch: BranchId) -> Result<Arc<Vec<LayerId>>> {
        let head = layers::branch(tx, branch)?.head;
        self.chain(tx, head)
    }

    /// The chain a view reads.
    fn view_chain(&self, tx: &Transaction<'_>, view: View) -> Result<Arc<Vec<LayerId>>> {
        let top = layers::top_layer(tx, view)?;
        self.chain(tx, top)
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

fn get_setting(tx: &Transaction<'_>, key: &str) -> Result<String> {
    query_one(
        tx,
        "SELECT value FROM fsx_volume WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql_err)?
    .ok_or_else(|| {
        MetaError::new(
            MetaErrorKind::Corrupt,
            format!("volume setting {key} is missing"),
        )
    })
}

fn parse_setting<T: std::str::FromStr>(tx: &Transaction<'_>, key: &str) -> Result<T> {
    let v = get_setting(tx, key)?;
    v.parse().map_err(|_| {
        MetaError::new(
            MetaErrorKind::Corrupt,
            format!("volume setting {key}={v:?} is malformed"),
        )
    })
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

fn lease_of(tx: &Transaction<'_>, branch: BranchId, file_id: FileId) -> Result<Option<LeaseInfo>> {
    query_one(
        tx,
        "SELECT holder, expires_ms FROM fsx_leases WHERE branch = ?1 AND file_id = ?2",
        params![branch, file_id],
        |r| {
            Ok(LeaseInfo {
                holder: r.get(0)?,
                expires_ms: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(sql_err)
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

/// Requires `req.holder` to hold the lease, and renews it.
fn check_lease(tx: &Transaction<'_>, req: &LeaseRequest) -> Result<()> {
    match lease_of(tx, req.branch, req.file_id)? {
        Some(l) if l.holder == req.holder => {
            exec(
                tx,
                "UPDATE fsx_leases SET expires_ms = ?3 WHERE branch = ?1 AND file_id = ?2",
                params![req.branch, req.file_id, req.now_ms + req.ttl_ms],
            )
            .map_err(sql_err)?;
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

/// Fails with `Busy` if someone other than `holder` holds a live lease.
fn check_no_other_writer(
    tx: &Transaction<'_>,
    branch: BranchId,
    file_id: FileId,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    match lease_of(tx, branch, file_id)? {
        Some(l) if l.holder != holder && l.expires_ms > now_ms => Err(busy(file_id, &l, now_ms)),
        _ => Ok(()),
    }
}

/// Takes the next file id.
fn next_file_id(tx: &Transaction<'_>) -> Result<FileId> {
    query_one(
        tx,
        "UPDATE fsx_volume SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_file_id'
         RETURNING CAST(value AS INTEGER) - 1",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql_err)?
    .ok_or_else(|| {
        MetaError::new(
            MetaErrorKind::Corrupt,
            "volume setting next_file_id is missing",
        )
    })
}

pub(crate) fn incref(tx: &Transaction<'_>, key: &str) -> Result<()> {
    let n = exec(
        tx,
        "UPDATE fsx_extents SET refcount = refcount + 1 WHERE key = ?1 AND state = 0",
        params![key],
    )
    .map_err(sql_err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(MetaError::conflict(format!(
            "extent {key} is not pinned or is being garbage-collected; pack again"
        )))
    }
}

pub(crate) fn decref(tx: &Transaction<'_>, key: &str, now_ms: i64) -> Result<()> {
    let n = exec(
        tx,
        "UPDATE fsx_extents SET refcount = refcount - 1,
                 idle_since_ms = CASE WHEN refcount = 1 THEN ?2 ELSE idle_since_ms END
             WHERE key = ?1 AND refcount > 0",
        params![key, now_ms],
    )
    .map_err(sql_err)?;
    if n == 1 {
        Ok(())
    } else {
        Err(MetaError::new(
            MetaErrorKind::Corrupt,
            format!(
                "extent {key} is referenced but its record is missing or unreferenced; run `fsx fsck`"
            ),
        ))
    }
}

fn blob(data: &Option<Bytes>) -> Option<&[u8]> {
    data.as_deref()
}

fn lazy<'a, T: 'a>(
    f: impl FnOnce() -> Result<T> + fsx_store::MaybeSend + 'a,
) -> BoxFuture<'a, Result<T>> {
    Box::pin(async move { f() })
}

crate::logic::settings::impl_meta_settings!(SqliteMeta, sync);

impl MetaFiles for SqliteMeta {
    fn create_file<'a>(
        &'a self,
        branch: BranchId,
        name: &'a str,
        page_size: u32,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<FileMeta>> {
        lazy(move || {
            self.write(|tx| {
                let chain = self.head_chain(tx, branch)?;
                if layers::find(tx, &chain, name)?.is_some() {
                    return Err(MetaError::new(
                        MetaErrorKind::AlreadyExists,
                        format!("file {name:?} already exists"),
                    ));
                }
                let id = next_file_id(tx)?;
                exec(tx,
                    "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, created_ms, modified_ms)
                     VALUES (?1, ?2, ?3, ?4, 0, 0, ?5, ?5)",
                    params![chain[0], id, name, page_size, now_ms],
                )
                .map_err(sql_err)?;
                Ok(layers::visible(tx, &chain, id)?.meta())
            })
        })
    }

    fn file<'a>(&'a self, view: View, name: &'a str) -> BoxFuture<'a, Result<FileMeta>> {
        lazy(move || {
            self.read(|tx| {
                let chain = self.view_chain(tx, view)?;
                layers::find(tx, &chain, name)?
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
        lazy(move || {
            self.read(|tx| {
                let chain = self.view_chain(tx, view)?;
                let rows = layers::chain_rows(tx, &chain)?;
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
        lazy(move || {
            self.write(|tx| {
                let chain = self.head_chain(tx, branch)?;
                let src = layers::find(tx, &chain, from)?
                    .ok_or_else(|| MetaError::not_found(format!("no file {from:?}")))?;
                check_no_other_writer(tx, branch, src.id, holder, now_ms)?;
                if from == to {
                    return Ok(());
                }
                if let Some(dst) = layers::find(tx, &chain, to)? {
                    if !replace {
                        return Err(MetaError::new(
                            MetaErrorKind::AlreadyExists,
                            format!("file {to:?} already exists"),
                        ));
                    }
                    check_no_other_writer(tx, branch, dst.id, holder, now_ms)?;
                    layers::remove_file(tx, branch, &chain, &dst, now_ms)?;
                }
                layers::own_row(tx, &chain, src.id)?;
                exec(
                    tx,
                    "UPDATE fsx_files SET name = ?3, modified_ms = ?4 WHERE layer = ?1 AND id = ?2",
                    params![chain[0], src.id, to, now_ms],
                )
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn delete_file<'a>(
        &'a self,
        branch: BranchId,
        name: &'a str,
        holder: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                let chain = self.head_chain(tx, branch)?;
                let f = layers::find(tx, &chain, name)?
                    .ok_or_else(|| MetaError::not_found(format!("no file {name:?}")))?;
                check_no_other_writer(tx, branch, f.id, holder, now_ms)?;
                layers::remove_file(tx, branch, &chain, &f, now_ms)
            })
        })
    }

    fn acquire_lease<'a>(&'a self, req: &'a LeaseRequest) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                let chain = self.head_chain(tx, req.branch)?;
                layers::visible(tx, &chain, req.file_id)?;
                if let Some(l) = lease_of(tx, req.branch, req.file_id)? {
                    let free = l.holder == req.holder
                        || l.expires_ms <= req.now_ms
                        || req.break_holder.as_deref() == Some(l.holder.as_str());
                    if !free {
                        return Err(busy(req.file_id, &l, req.now_ms));
                    }
                }
                exec(tx,
                    "INSERT INTO fsx_leases (branch, file_id, holder, expires_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (branch, file_id) DO UPDATE SET holder = excluded.holder,
                         expires_ms = excluded.expires_ms",
                    params![req.branch, req.file_id, req.holder, req.now_ms + req.ttl_ms],
                )
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn release_lease<'a>(
        &'a self,
        branch: BranchId,
        file_id: FileId,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                exec(
                    tx,
                    "DELETE FROM fsx_leases WHERE branch = ?1 AND file_id = ?2 AND holder = ?3",
                    params![branch, file_id, holder],
                )
                .map_err(sql_err)?;
                Ok(())
            })
        })
    }

    fn lease(&self, branch: BranchId, file_id: FileId) -> BoxFuture<'_, Result<Option<LeaseInfo>>> {
        lazy(move || self.read(|tx| lease_of(tx, branch, file_id)))
    }

    fn commit_writes<'a>(&'a self, batch: &'a WriteBatch) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                let file_id = batch.lease.file_id;
                let branch = batch.lease.branch;
                let now = batch.lease.now_ms;
                if let Some(interval) = batch.auto_commit_ms {
                    let br = layers::branch(tx, branch)?;
                    if now - br.commit_ms >= interval {
                        layers::commit_branch(tx, branch, "automatic commit", true, None, false, now)?;
                    }
                }
                check_lease(tx, &batch.lease)?;
                // Most writes find the file's row in the head already.
                let (head, file) = match layers::head_row(tx, branch, file_id)? {
                    (head, Some(row)) if !row.deleted => (head, row),
                    (_, Some(_)) => {
                        return Err(MetaError::not_found(format!("file #{file_id} no longer exists")));
                    }
                    (_, None) => {
                        let chain = self.head_chain(tx, branch)?;
                        (chain[0], layers::own_row(tx, &chain, file_id)?)
                    }
                };
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
                    // A cut beyond every stored page (up to `u64::MAX`) drops
                    // nothing: clamp, never wrap to a negative bound.
                    let from = num::bound(from);
                    exec(tx,
                        "DELETE FROM fsx_dirty_pages WHERE layer = ?1 AND file_id = ?2 AND page_no >= ?3",
                        params![head, file_id, from],
                    )
                    .map_err(sql_err)?;
                    exec(tx,
                        "UPDATE fsx_files SET cut_page = min(coalesce(cut_page, ?3), ?3)
                         WHERE layer = ?1 AND id = ?2",
                        params![head, file_id, from],
                    )
                    .map_err(sql_err)?;
                }
                if let Some(from) = batch.drop_extents_from {
                    layers::drop_own_extents(tx, head, file_id, from, now)?;
                    exec(tx,
                        "UPDATE fsx_files SET cut_extent = min(coalesce(cut_extent, ?3), ?3)
                         WHERE layer = ?1 AND id = ?2",
                        params![head, file_id, num::bound(from)],
                    )
                    .map_err(sql_err)?;
                }
                let seq: i64 = query_one(tx,
                        "UPDATE fsx_files SET write_seq = write_seq + 1, size = ?3, modified_ms = ?4
                         WHERE layer = ?1 AND id = ?2 RETURNING write_seq",
                        params![head, file_id, size, now],
                        |r| r.get(0),
                    )
                    .map_err(sql_err)?;
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO fsx_dirty_pages (layer, file_id, page_no, seq, data, crc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (layer, file_id, page_no) DO UPDATE SET seq = excluded.seq, data = excluded.data, crc = excluded.crc",
                    )
                    .map_err(sql_err)?;
                for p in &batch.pages {
                    let crc = crate::checksum::page_checksum(file_id, p.page_no, blob(&p.data));
                    st.execute(params![head, file_id, num::to_sql(p.page_no, "page number")?, seq, blob(&p.data), crc])
                        .map_err(sql_err)?;
                }
                Ok(())
            })
        })
    }

    fn read_map(
        &self,
        view: View,
        file_id: FileId,
        first_page: u64,
        count: u64,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<ReadMap>> {
        lazy(move || {
            self.read(|tx| {
                let chain = self.view_chain(tx, view)?;
                if count > 0 && pages_per_extent > 0 {
                    let head = matches!(view, View::Branch(_)).then(|| chain[0]);
                    if let Some(map) = self.read_map_flat(
                        tx,
                        &chain,
                        head,
                        file_id,
                        first_page,
                        count,
                        pages_per_extent,
                    )? {
                        return Ok(map);
                    }
                }
                let (rows, file) = layers::visible_rows(tx, &chain, file_id)?;
                if count == 0 || pages_per_extent == 0 {
                    return Ok(ReadMap {
                        size: file.size,
                        ..ReadMap::default()
                    });
                }
                Ok(layers::walk_rows(
                    tx,
                    &chain,
                    &rows,
                    file_id,
                    first_page,
                    count,
                    pages_per_extent,
                )?
                .read_map(file.size))
            })
        })
    }

    fn dirty_counts<'a>(
        &'a self,
        view: View,
        file_id: FileId,
        pages_per_extent: u64,
        extents: &'a [u64],
    ) -> BoxFuture<'a, Result<Vec<DirtySummary>>> {
        lazy(move || {
            self.read_on_writer(|tx| {
                if pages_per_extent == 0 {
                    return Err(MetaError::invalid("pages_per_extent must be positive"));
                }
                // The packer asks after every sync: resolve the layer in
                // the same statement rather than in one more query.
                let (layer_sql, key) = match view {
                    View::Branch(b) => ("(SELECT head FROM fsx_branches WHERE id = ?1)", b),
                    View::Commit(c) => ("(SELECT layer FROM fsx_commits WHERE id = ?1)", c),
                };
                let mut st = tx
                    .prepare_cached(&format!(
                        "SELECT count(*) FROM fsx_dirty_pages
                         WHERE layer = {layer_sql} AND file_id = ?2 AND page_no >= ?3 AND page_no < ?4"
                    ))
                    .map_err(sql_err)?;
                let layer = key;
                let mut idxs = extents.to_vec();
                idxs.sort_unstable();
                idxs.dedup();
                let mut out = Vec::new();
                for idx in idxs {
                    let first = idx.saturating_mul(pages_per_extent);
                    let n: i64 = st
                        .query_row(
                            params![
                                layer,
                                file_id,
                                num::bound(first),
                                num::bound(first.saturating_add(pages_per_extent))
                            ],
                            |r| r.get(0),
                        )
                        .map_err(sql_err)?;
                    if n > 0 {
                        out.push(DirtySummary {
                            extent_idx: idx,
                            pages: num::from_sql(n, "dirty page count")?,
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
        lazy(move || {
            self.read(|tx| {
                if pages_per_extent == 0 {
                    return Err(MetaError::invalid("pages_per_extent must be positive"));
                }
                let layer = layers::top_layer(tx, view)?;
                query_all(
                    tx,
                    "SELECT page_no / ?3 AS idx, count(*) FROM fsx_dirty_pages
                     WHERE layer = ?1 AND file_id = ?2 GROUP BY idx ORDER BY idx",
                    params![layer, file_id, num::bound(pages_per_extent)],
                    |r| {
                        Ok(DirtySummary {
                            extent_idx: col_u64(r, 0, "extent index")?,
                            pages: col_u64(r, 1, "dirty page count")?,
                        })
                    },
                )
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
        lazy(move || {
            self.read(|tx| {
                if pages_per_extent == 0 {
                    return Err(MetaError::invalid("pages_per_extent must be positive"));
                }
                let chain = self.view_chain(tx, view)?;
                let (rows, file) = layers::visible_rows(tx, &chain, file_id)?;
                let first = extent_idx.saturating_mul(pages_per_extent);
                let (current_key, pages) = layers::walk_rows(
                    tx,
                    &chain,
                    &rows,
                    file_id,
                    first,
                    pages_per_extent,
                    pages_per_extent,
                )?
                .dirty_extent();
                Ok(DirtyExtent {
                    size: file.size,
                    layer: chain[0],
                    current_key,
                    pages,
                })
            })
        })
    }

    fn check_dirty_pages(
        &self,
        after: Option<DirtyPageCursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DirtyPageCheck>>> {
        let after = after.map(|c| (c.layer, c.file_id, c.page_no));
        lazy(move || {
            self.read(|tx| {
                let (l, f, p) = after.map_or((i64::MIN, i64::MIN, i64::MIN), |(l, f, p)| {
                    (l, f, num::bound(p))
                });
                let rows = query_all(
                    tx,
                    "SELECT layer, file_id, page_no, data, crc FROM fsx_dirty_pages
                     WHERE (layer, file_id, page_no) > (?1, ?2, ?3)
                     ORDER BY layer, file_id, page_no LIMIT ?4",
                    params![l, f, p, num::limit(limit)],
                    |r| {
                        Ok((
                            r.get::<_, LayerId>(0)?,
                            r.get::<_, FileId>(1)?,
                            col_u64(r, 2, "page number")?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                            r.get::<_, Option<i64>>(4)?,
                        ))
                    },
                )?;
                Ok(rows
                    .into_iter()
                    .map(|(layer, file_id, page_no, data, crc)| DirtyPageCheck {
                        layer,
                        file_id,
                        page_no,
                        hole: data.is_none(),
                        intact: crate::checksum::verify_page(
                            layer,
                            file_id,
                            page_no,
                            data.as_deref(),
                            crc,
                        )
                        .is_ok(),
                    })
                    .collect())
            })
        })
    }

    fn commit_pack<'a>(&'a self, c: &'a PackCommit) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                let file_id = c.lease.file_id;
                let now = c.lease.now_ms;
                let Some((parent, frozen)) = layers::layer_parent(tx, c.layer)? else {
                    return Err(MetaError::conflict(format!(
                        "layer {} was collected while packing; pack again",
                        c.layer
                    )));
                };
                if !frozen {
                    // A head: only its branch's lease holder packs it.
                    if layers::branch(tx, c.lease.branch)?.head != c.layer {
                        return Err(MetaError::conflict(format!(
                            "layer {} is not the head of branch #{}; pack again",
                            c.layer, c.lease.branch
                        )));
                    }
                    check_lease(tx, &c.lease)?;
                } else {
                    // Where a frozen layer's pages live changes.
                    layers::bump_epoch(tx)?;
                }
                let idx = num::to_sql(c.extent_idx, "extent index")?;
                let chain = self.chain(tx, c.layer)?;
                layers::visible(tx, &chain, file_id)?;
                let current = layers::visible_key(tx, &chain, file_id, c.extent_idx)?;
                if current != c.expected_key {
                    return Err(MetaError::conflict(format!(
                        "extent {} of file #{file_id} changed while packing ({current:?}, expected {:?})",
                        c.extent_idx, c.expected_key
                    )));
                }
                if c.new_key != c.expected_key {
                    let own: Option<Option<String>> = query_one(tx,
                            "SELECT key FROM fsx_extent_map WHERE layer = ?1 AND file_id = ?2 AND extent_idx = ?3",
                            params![c.layer, file_id, idx],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(sql_err)?;
                    match (&c.new_key, parent) {
                        (Some(new), _) => {
                            incref(tx, new)?;
                            exec(tx,
                                "INSERT INTO fsx_extent_map (layer, file_id, extent_idx, key) VALUES (?1, ?2, ?3, ?4)
                                 ON CONFLICT (layer, file_id, extent_idx) DO UPDATE SET key = excluded.key",
                                params![c.layer, file_id, idx, new],
                            )
                            .map_err(sql_err)?;
                        }
                        // Lower layers may show this extent: hide it.
                        (None, Some(_)) => {
                            exec(tx,
                                "INSERT INTO fsx_extent_map (layer, file_id, extent_idx, key) VALUES (?1, ?2, ?3, NULL)
                                 ON CONFLICT (layer, file_id, extent_idx) DO UPDATE SET key = NULL",
                                params![c.layer, file_id, idx],
                            )
                            .map_err(sql_err)?;
                        }
                        (None, None) => {
                            exec(tx,
                                "DELETE FROM fsx_extent_map WHERE layer = ?1 AND file_id = ?2 AND extent_idx = ?3",
                                params![c.layer, file_id, idx],
                            )
                            .map_err(sql_err)?;
                        }
                    }
                    if let Some(Some(old)) = own {
                        decref(tx, &old, now)?;
                    }
                }
                let mut st = tx
                    .prepare_cached(
                        "DELETE FROM fsx_dirty_pages WHERE layer = ?1 AND file_id = ?2 AND page_no = ?3 AND seq = ?4",
                    )
                    .map_err(sql_err)?;
                for &(page, seq) in &c.consumed {
                    st.execute(params![c.layer, file_id, num::bound(page), seq])
                        .map_err(sql_err)?;
                }
                Ok(())
            })
        })
    }
}

crate::logic::extents::impl_meta_extents!(SqliteMeta, sync);
crate::logic::tiers::impl_meta_tiers!(SqliteMeta, sync);

impl MetaBranches for SqliteMeta {
    fn create_branch<'a>(
        &'a self,
        name: &'a str,
        from: View,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<BranchInfo>> {
        lazy(move || {
            crate::resolve::check_branch_name(name)?;
            self.write(|tx| {
                if layers::branch_named(tx, name)?.is_some() {
                    return Err(MetaError::new(
                        MetaErrorKind::AlreadyExists,
                        format!("branch {name:?} already exists"),
                    ));
                }
                let (base_layer, base_commit) = match from {
                    View::Commit(c) => (layers::commit(tx, c)?.layer, Some(c)),
                    View::Branch(b) => {
                        let src = layers::branch(tx, b)?;
                        let parent = layers::layer_parent(tx, src.head)?.and_then(|(p, _)| p);
                        match parent {
                            Some(p) if layers::is_empty(tx, src.head)? => (p, src.commit),
                            _ => {
                                let c = layers::commit_branch(
                                    tx,
                                    b,
                                    &format!("branch point of {name}"),
                                    true,
                                    None,
                                    true,
                                    now_ms,
                                )?
                                .ok_or_else(|| {
                                    MetaError::new(
                                        MetaErrorKind::Other,
                                        "forced commit made nothing",
                                    )
                                })?;
                                (c.layer, Some(c.id))
                            }
                        }
                    }
                };
                let head = layers::new_layer(tx, Some(base_layer), now_ms)?;
                exec(
                    tx,
                    "INSERT INTO fsx_branches (name, head, commit_id, created_ms, commit_ms)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![name, head, base_commit, now_ms],
                )
                .map_err(sql_err)?;
                layers::branch_named(tx, name)?
                    .ok_or_else(|| MetaError::new(MetaErrorKind::Other, "branch vanished"))
            })
        })
    }

    fn branch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<BranchInfo>> {
        lazy(move || {
            self.read(|tx| {
                layers::branch_named(tx, name)?.ok_or_else(|| {
                    MetaError::not_found(format!(
                        "no branch {name:?} (`fsx branch list` shows the branches)"
                    ))
                })
            })
        })
    }

    fn branches(&self) -> BoxFuture<'_, Result<Vec<BranchInfo>>> {
        lazy(move || self.read(layers::branches))
    }

    fn delete_branch<'a>(&'a self, name: &'a str, now_ms: i64) -> BoxFuture<'a, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                let br = layers::branch_named(tx, name)?
                    .ok_or_else(|| MetaError::not_found(format!("no branch {name:?}")))?;
                if br.id == MAIN_BRANCH {
                    return Err(MetaError::invalid(
                        "the main branch cannot be deleted (reset it to a commit instead)",
                    ));
                }
                layers::check_no_writers(tx, &br, None, now_ms)?;
                exec(
                    tx,
                    "DELETE FROM fsx_leases WHERE branch = ?1",
                    params![br.id],
                )
                .map_err(sql_err)?;
                exec(tx, "DELETE FROM fsx_branches WHERE id = ?1", params![br.id])
                    .map_err(sql_err)?;
                layers::collect(tx, now_ms)
            })
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
        lazy(move || {
            self.write(|tx| layers::commit_branch(tx, branch, message, auto, None, !auto, now_ms))
        })
    }

    fn commit_info(&self, id: CommitId) -> BoxFuture<'_, Result<CommitInfo>> {
        lazy(move || self.read(|tx| layers::commit(tx, id)))
    }

    fn reset_branch(
        &self,
        branch: BranchId,
        to: CommitId,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<()>> {
        lazy(move || {
            self.write(|tx| {
                let br = layers::branch(tx, branch)?;
                layers::check_no_writers(tx, &br, None, now_ms)?;
                let target = layers::commit(tx, to)?;
                let head = layers::new_layer(tx, Some(target.layer), now_ms)?;
                exec(tx,
                    "UPDATE fsx_branches SET head = ?2, commit_id = ?3, commit_ms = ?4 WHERE id = ?1",
                    params![branch, head, to, now_ms],
                )
                .map_err(sql_err)?;
                exec(tx, "DELETE FROM fsx_leases WHERE branch = ?1", params![branch])
                    .map_err(sql_err)?;
                layers::collect(tx, now_ms)
            })
        })
    }

    fn expire_commits(&self, before_ms: i64, now_ms: i64) -> BoxFuture<'_, Result<u64>> {
        lazy(move || {
            self.write(|tx| {
                let g = layers::graph(tx)?;
                let gone = crate::graph::expirable(&g, before_ms);
                for (id, parent, merged) in crate::graph::relink(&g, &gone) {
                    exec(
                        tx,
                        "UPDATE fsx_commits SET parent = ?2, merged = ?3 WHERE id = ?1",
                        params![id, parent, merged],
                    )
                    .map_err(sql_err)?;
                }
                for id in &gone {
                    exec(tx, "DELETE FROM fsx_commits WHERE id = ?1", params![id])
                        .map_err(sql_err)?;
                }
                layers::collect(tx, now_ms)?;
                Ok(num::count(gone.len()))
            })
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
        lazy(move || {
            self.write(|tx| {
                let br = layers::branch(tx, target)?;
                layers::commit(tx, merged)?;
                let target_chain = self.chain(tx, br.head)?;
                let source_chain = self.view_chain(tx, source)?;
                let mut names = Vec::new();
                for &id in files {
                    layers::check_no_writers(tx, &br, Some(id), now_ms)?;
                    layers::copy_file(tx, &br, &target_chain, &source_chain, id, now_ms)?;
                    if let Some(r) = layers::top_row(tx, &target_chain, id)?.filter(|r| !r.deleted)
                    {
                        names.push(r.name);
                    }
                }
                layers::check_unique_names(tx, &target_chain, &names)?;
                layers::commit_branch(tx, target, message, false, Some(merged), true, now_ms)?
                    .ok_or_else(|| {
                        MetaError::new(MetaErrorKind::Other, "forced commit made nothing")
                    })
            })
        })
    }

    fn layer_graph(&self) -> BoxFuture<'_, Result<LayerGraph>> {
        lazy(move || self.read(layers::graph))
    }

    fn layer_usage<'a>(&'a self, ids: &'a [LayerId]) -> BoxFuture<'a, Result<LayerUsage>> {
        lazy(move || self.read(|tx| layers::usage(tx, ids)))
    }
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
        let version: String = m.read(|tx| get_setting(tx, "schema_version")).unwrap();
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
        let version: String = m.read(|tx| get_setting(tx, "schema_version")).unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
    }
}
