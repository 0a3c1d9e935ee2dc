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
//!   which is what makes `sync` an acknowledged, durable write. Runtime
//!   transactions (byte-range locks, which die with their holders anyway)
//!   commit with `NORMAL`: no fsync each, never a corrupt database.
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
//! runtime. Every transaction is the shared code of `crate::logic`; this
//! module opens connections and runs it, `sql` holds SQLite's text of its
//! statements and `dialect` binds and decodes.

mod dialect;
mod hot;
mod schema;
mod sql;

pub use hot::SqliteHotStore;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{MetaError, MetaErrorKind, Result};
use crate::logic::Caches;

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
    /// Statements run, for [`SqliteMeta::statements`].
    statements: std::sync::atomic::AtomicU64,
    /// Deferred tree commits and the barriers that made them durable.
    durability: crate::logic::Durability,
    /// The writer is set to `synchronous = NORMAL` (read and written with
    /// the writer locked).
    writer_normal: std::sync::atomic::AtomicBool,
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

impl SqliteMeta {
    /// What this instance remembers (and its change origin).
    pub(crate) fn engine_caches(&self) -> &Caches {
        &self.inner.caches
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

/// Distinct statements kept prepared per connection: more than the engine
/// uses, so a write never re-parses one.
const STATEMENT_CACHE: usize = 256;

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql_err)?;
    // One plan per statement, whatever its parameters: without this,
    // SQLite re-plans a cached statement whenever a new value is bound to a
    // parameter that a plan could depend on (the STAT4 build), which cost a
    // parse and a plan on nearly every metadata statement.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
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
                statements: Default::default(),
                durability: Default::default(),
                writer_normal: Default::default(),
            }),
        })
    }

    /// Statements this engine has run since it opened (each execution of a
    /// query, an update or one row of a batch); for tests and benchmarks of
    /// what a call costs.
    pub fn statements(&self) -> u64 {
        self.inner
            .statements
            .load(std::sync::atomic::Ordering::Relaxed)
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
                statements: Default::default(),
                durability: Default::default(),
                writer_normal: Default::default(),
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
        let mut conn = lock(&self.inner.writer);
        self.synchronous(&conn, true)?;
        transact(&mut conn, TransactionBehavior::Immediate, f)
    }

    /// Sets the writer's `synchronous` to `FULL` (`full`) or `NORMAL`,
    /// unless it is so already (called with the writer locked: the flag
    /// says what the connection `conn` is set to).
    fn synchronous(&self, conn: &Connection, full: bool) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.inner.writer_normal.load(Relaxed) != full {
            return Ok(());
        }
        conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })
            .map_err(sql_err)?;
        self.inner.writer_normal.store(!full, Relaxed);
        Ok(())
    }

    /// Runs `f` in one write transaction that changes only runtime rows
    /// (see [`crate::logic::TxKind::Runtime`]): committed with
    /// `synchronous = NORMAL`, without an fsync of its own. The next
    /// transaction with `FULL` syncs the log with these frames in it.
    pub(crate) fn write_runtime<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        if self.is_read_only() {
            return self.write(f);
        }
        let mut conn = lock(&self.inner.writer);
        // Left so until the next durable write sets it back: runs of
        // deferred changes pay for the pragma once.
        self.synchronous(&conn, false)?;
        transact(&mut conn, TransactionBehavior::Immediate, f)
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

crate::logic::settings::impl_meta_settings!(SqliteMeta, sync);

crate::logic::files::impl_meta_files!(SqliteMeta, sync);

crate::logic::extents::impl_meta_extents!(SqliteMeta, sync);
crate::logic::tiers::impl_meta_tiers!(SqliteMeta, sync);

crate::logic::branches::impl_meta_branches!(SqliteMeta, sync);
crate::logic::tree::impl_meta_tree!(SqliteMeta, sync);
crate::logic::tokens::impl_meta_tokens!(SqliteMeta, sync);
crate::logic::changes::impl_meta_changes!(SqliteMeta, sync);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SCHEMA_VERSION;
    use crate::contract::*;
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

    /// A version-5 volume's flat names become the tree in every layer:
    /// names with `/` make directories, renames move entries, deletions
    /// remove them, each branch and commit shows its own tree, and a name
    /// the tree cannot hold is kept in the root under a spelling it can.
    #[test]
    fn version_5_names_become_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let c = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..5] {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(
            "INSERT INTO fsx_volume (key, value) VALUES ('schema_version', '5'), ('volume_id', 'v'),
                 ('extent_size', '2097152'), ('store_url', 'memory://'), ('created_ms', '1');
             UPDATE fsx_volume SET value = '20' WHERE key = 'next_file_id';
             UPDATE fsx_volume SET value = '6' WHERE key = 'next_commit_id';
             INSERT INTO fsx_layers (id, parent, frozen, created_ms) VALUES (2, 1, 0, 1), (3, 1, 0, 1);
             UPDATE fsx_layers SET frozen = 1 WHERE id = 1;
             UPDATE fsx_branches SET head = 2, commit_id = 5 WHERE id = 1;
             INSERT INTO fsx_branches (id, name, head, commit_id, created_ms, commit_ms)
                 VALUES (2, 'dev', 3, 5, 1, 1);
             INSERT INTO fsx_commits (id, layer, parent, merged, branch, message, auto, created_ms)
                 VALUES (5, 1, NULL, NULL, 'main', 'old', 0, 1);
             INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, deleted, created_ms, modified_ms)
                 VALUES (1, 7, 'a.db', 4096, 0, 0, 0, 1, 2), (1, 8, 'dir/x', 4096, 0, 0, 0, 1, 2),
                        (1, 9, 'clash', 4096, 0, 0, 0, 1, 2), (1, 10, 'clash/y', 4096, 0, 0, 0, 1, 2),
                        (1, 11, 'gone', 4096, 0, 0, 0, 1, 2),
                        (2, 7, 'renamed/a.db', 4096, 0, 0, 0, 1, 3), (2, 11, 'gone', 4096, 0, 0, 1, 1, 3),
                        (3, 12, 'dev-only', 4096, 0, 0, 0, 1, 3), (3, 8, 'x2', 4096, 0, 0, 0, 1, 3);",
        )
        .unwrap();
        drop(c);
        let m = SqliteMeta::open(&path, false).unwrap();
        block_on(m.open_volume()).unwrap();
        let names = |v: View| -> Vec<String> {
            block_on(m.list_files(v, ""))
                .unwrap()
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        let kept = "clash\u{2215}y";
        assert_eq!(names(View::MAIN), ["clash", kept, "dir/x", "renamed/a.db"]);
        assert_eq!(
            names(View::Branch(2)),
            ["a.db", "clash", kept, "dev-only", "gone", "x2"]
        );
        assert_eq!(
            names(View::Commit(5)),
            ["a.db", "clash", kept, "dir/x", "gone"]
        );
        let f = block_on(m.file(View::MAIN, "renamed/a.db")).unwrap();
        assert_eq!(f.id, 7);
        let root = block_on(m.root()).unwrap();
        assert!(root >= 20, "the root's number {root} is new");
        let a = block_on(m.getattr(View::MAIN, 7)).unwrap();
        assert_eq!((a.kind, a.nlink, a.mode), (NodeKind::File, 1, 0o644));
        // The tree is writable on both branches afterwards.
        block_on(m.create_file(2, "dir/new", 4096, 9)).unwrap();
        assert!(block_on(m.file(View::MAIN, "dir/new")).is_err());
        let version = block_on(m.setting("schema_version")).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
    }

    /// A version-7 volume gets an empty change feed that numbers from 1,
    /// and keeps its files.
    #[test]
    fn version_7_gets_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let m = SqliteMeta::open(&path, true).unwrap();
        block_on(m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))).unwrap();
        block_on(m.create_file(MAIN_BRANCH, "kept", 4096, 2)).unwrap();
        drop(m);
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TABLE fsx_changes;
             UPDATE fsx_volume SET value = '7' WHERE key = 'schema_version';",
        )
        .unwrap();
        drop(c);
        let m = SqliteMeta::open(&path, false).unwrap();
        block_on(m.open_volume()).unwrap();
        assert!(block_on(m.file(View::MAIN, "kept")).is_ok());
        assert_eq!(block_on(m.last_change()).unwrap(), 0);
        block_on(m.create_file(MAIN_BRANCH, "new", 4096, 3)).unwrap();
        let got = block_on(m.changes(0, 10)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].seq, got[0].kind), (1, crate::ChangeKind::Make));
        let version = block_on(m.setting("schema_version")).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
    }

    /// A version-8 volume keeps its changes (without an origin) and
    /// records the origin of every change after them; two instances on
    /// one volume record different origins.
    #[test]
    fn version_8_gets_origins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let m = SqliteMeta::open(&path, true).unwrap();
        block_on(m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))).unwrap();
        block_on(m.create_file(MAIN_BRANCH, "old", 4096, 2)).unwrap();
        drop(m);
        let c = Connection::open(&path).unwrap();
        // Version 8's tables: no origin, leases with a rowid, file names
        // and node numbers indexed.
        c.execute_batch(
            "ALTER TABLE fsx_changes DROP COLUMN origin;
             DROP TABLE fsx_leases;
             CREATE TABLE fsx_leases (
                 branch     INTEGER NOT NULL,
                 file_id    INTEGER NOT NULL,
                 holder     TEXT NOT NULL,
                 expires_ms INTEGER NOT NULL,
                 PRIMARY KEY (branch, file_id)
             );
             INSERT INTO fsx_leases (branch, file_id, holder, expires_ms) VALUES (1, 7, 'w', 99);
             CREATE INDEX fsx_files_name ON fsx_files (name);
             CREATE INDEX fsx_nodes_ino ON fsx_nodes (ino);
             UPDATE fsx_volume SET value = '8' WHERE key = 'schema_version';",
        )
        .unwrap();
        drop(c);
        let a = SqliteMeta::open(&path, false).unwrap();
        block_on(a.open_volume()).unwrap();
        let b = SqliteMeta::open(&path, false).unwrap();
        block_on(b.open_volume()).unwrap();
        assert_ne!(a.origin(), b.origin());
        block_on(a.create_file(MAIN_BRANCH, "by-a", 4096, 3)).unwrap();
        block_on(b.create_file(MAIN_BRANCH, "by-b", 4096, 4)).unwrap();
        let got = block_on(b.changes(0, 10)).unwrap();
        let origins: Vec<Option<i64>> = got.iter().map(|c| c.origin).collect();
        assert_eq!(origins, [None, Some(a.origin()), Some(b.origin())]);
        // The leases table was rebuilt without a rowid, its rows kept.
        let c = Connection::open(&path).unwrap();
        let ddl: String = c
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'fsx_leases'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(ddl.contains("WITHOUT ROWID"), "{ddl}");
        let held: String = c
            .query_row(
                "SELECT holder FROM fsx_leases WHERE branch = 1 AND file_id = 7",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(held, "w");
        let name_index: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master
                 WHERE name IN ('fsx_files_name', 'fsx_nodes_ino')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(name_index, 0, "the unused indexes are gone");
        let version = block_on(a.setting("schema_version")).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
    }

    /// A version-6 volume (the tables of 6, no token table) gets an empty
    /// token table that works, and keeps its files.
    #[test]
    fn version_6_gets_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let m = SqliteMeta::open(&path, true).unwrap();
        block_on(m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))).unwrap();
        block_on(m.create_file(MAIN_BRANCH, "kept", 4096, 2)).unwrap();
        drop(m);
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TABLE fsx_tokens;
             DROP TABLE fsx_changes;
             UPDATE fsx_volume SET value = '6' WHERE key = 'schema_version';",
        )
        .unwrap();
        drop(c);
        let m = SqliteMeta::open(&path, false).unwrap();
        block_on(m.open_volume()).unwrap();
        assert!(block_on(m.file(View::MAIN, "kept")).is_ok());
        assert!(block_on(m.tokens()).unwrap().is_empty());
        block_on(m.create_token(&TokenRecord::new("0a", "", "read", "h", 3))).unwrap();
        assert_eq!(block_on(m.tokens()).unwrap().len(), 1);
        let version = block_on(m.setting("schema_version")).unwrap().unwrap();
        assert_eq!(version, SCHEMA_VERSION.to_string());
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
