//! The VFS: SQLite's files as fsx files, and how connections share them.
//!
//! # Files
//!
//! A database `app.db` opened with `file:app.db?vfs=fsx&volume=PATH` is the
//! fsx file `app.db` of the volume in directory `PATH`; its rollback journal,
//! WAL and super-journals are the fsx files named by SQLite's suffixes
//! (`app.db-journal`, `app.db-wal`, `app.db-mj…`) in the same volume. Temp
//! databases, temp journals and statement journals live in memory: they
//! never need to survive the process. The WAL index (`-shm`) is process
//! memory too (`shm.rs`).
//!
//! `&branch=NAME` opens the files of a branch instead of `main` (the same
//! name on two branches is two files, each with its own lease), and
//! `&commit=ID` those of a commit, read-only: writes fail with
//! `SQLITE_READONLY`, and a journal or WAL the commit does not hold reads as
//! empty. The URI's parameters are checked before any of this
//! (`params.rs`): a misspelt one fails the open instead of opening `main`.
//!
//! Every fsx file the VFS creates has 4096-byte pages, whatever SQLite's
//! page size (512 to 65536): the engine reads and writes any byte range, so
//! SQLite pages of 512 bytes share an fsx page (a partial write reads the
//! rest of the page first) and 64 KiB pages span sixteen; 4096 matches
//! SQLite's default and the WAL's frames are unaligned anyway.
//!
//! # Sharing between connections and processes
//!
//! One `Entry` per file per process holds the engine's file handle, shared
//! by every connection of the process, so a write by one connection is seen
//! by the others at once, as with an OS page cache. The first connection to
//! take a lock takes the file's write lease and the process keeps it until
//! its last connection to the database closes: another process meanwhile
//! gets `SQLITE_BUSY` (at its first lock), never a view of a half-written
//! transaction. Inside the process SQLite's lock levels are kept by a
//! `LockTable` (`locks.rs`). A crashed process's lease is broken at once by the next
//! opener on the same machine (the engine checks that the holder's process
//! is gone); a lease held by another machine lapses after
//! [`LEASE_TTL_MS`].
//!
//! # Deleting journals
//!
//! A DELETE-mode commit deletes the journal, and the next transaction
//! recreates it. Deleting an fsx file would release its lease and pack it,
//! so instead the VFS truncates the journal to zero bytes and syncs (one
//! metadata transaction, the commit point), and remembers it as deleted:
//! `xAccess` reports it missing and only a creating open brings it back.
//! The fsx file is really deleted when the database's last connection
//! closes. A zero-byte journal left behind by a crash is one SQLite ignores
//! and deletes itself.
//!
//! # Durability
//!
//! `xSync` is [`fsx_engine::File::sync`]: one metadata transaction makes
//! everything written before it durable; unsynced writes vanish together in
//! a crash. The VFS therefore claims `POWERSAFE_OVERWRITE` (a write never
//! disturbs bytes around it) and `SAFE_APPEND` (size and data become durable
//! together), but not `SEQUENTIAL`: the journal and the database are
//! separate files whose writes become durable only at their own syncs, so
//! SQLite must keep syncing the journal before it writes the database.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use fsx_engine::{ErrorKind, File, OpenOptions, SystemEnv, Volume, VolumeOptions};
use fsx_meta::View;
use rusqlite::ffi as sys;

use crate::abi::{CreateMode, LockLevel, OpenKind, OpenMode, OpenOpts, ShmLockMode, VfsResult};
use crate::locks::LockTable;
use crate::params::OpenParams;
use crate::shm::{Shm, ShmHold};

/// Page size of the fsx files the VFS creates (see the module docs).
pub const FSX_PAGE_SIZE: u32 = 4096;

/// How long a writer's lease lasts without renewal. A process holds its
/// databases' leases while they are open; a crashed local holder is
/// detected at once, a remote one only when this lapses.
pub const LEASE_TTL_MS: i64 = 10 * 60 * 1000;

/// Worker threads of the VFS's runtime.
const WORKERS: usize = 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bytes SQLite wrote to volume files, and syncs, in this process.
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);
static SYNCS: AtomicU64 = AtomicU64::new(0);

/// What the VFS did in this process (for benchmarks and monitoring).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VfsStats {
    /// Bytes SQLite wrote to fsx files (databases, journals, WAL).
    pub bytes_written: u64,
    /// `xSync` calls on fsx files.
    pub syncs: u64,
}

/// Counters of the VFS in this process.
pub fn stats() -> VfsStats {
    VfsStats {
        bytes_written: BYTES_WRITTEN.load(Ordering::Relaxed),
        syncs: SYNCS.load(Ordering::Relaxed),
    }
}

thread_local! {
    static LAST_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The message of the last error the VFS returned on this thread (SQLite
/// itself only reports a code such as "unable to open database file").
pub fn last_error() -> Option<String> {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// Records `message` as this thread's last error and logs it (to
/// `tracing` and to SQLite's error log); returns `code`.
pub(crate) fn fail(code: i32, message: String) -> i32 {
    tracing::warn!(code, "{message}");
    crate::abi::log(code, &message);
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(message));
    code
}

/// Maps an engine error to a SQLite code: `Busy` stays busy (another
/// writer has the file), everything else is `io` for the operation.
fn engine_err(io: i32, what: &str, name: &str, e: &fsx_engine::Error) -> i32 {
    let code = if e.kind() == ErrorKind::Busy {
        sys::SQLITE_BUSY
    } else {
        io
    };
    fail(code, format!("fsx: {what} {name:?}: {e}"))
}

/// Normalises a database path into an fsx file name: no leading `/`, no
/// `.` or empty components; `..` is refused (a name is inside its volume).
pub(crate) fn file_name(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Where a file lives: a volume directory, and the branch or commit of it.
type Scope = (PathBuf, View);

/// Open files by scope and name.
type Files = HashMap<(Scope, String), Arc<Entry>>;

thread_local! {
    /// The main database this thread last worked on (see `FsxVfs::main_of`).
    static CURRENT: std::cell::RefCell<Option<std::sync::Weak<Entry>>> =
        const { std::cell::RefCell::new(None) };
}

fn set_current(e: &Arc<Entry>) {
    if e.main {
        CURRENT.with(|c| *c.borrow_mut() = Some(Arc::downgrade(e)));
    }
}

/// One fsx file open in this process, shared by its connections.
pub(crate) struct Entry {
    name: String,
    /// The volume, seen through the entry's branch or commit.
    volume: Volume,
    /// The volume's directory and view: one name is a different file in
    /// another volume or on another branch.
    scope: Scope,
    main: bool,
    engine: RwLock<Option<File>>,
    state: Mutex<EntryState>,
    shm: Mutex<Shm>,
}

#[derive(Default)]
struct EntryState {
    /// SQLite handles open on this file.
    handles: usize,
    /// Deleted by SQLite, truncated in the volume (see the module docs).
    deleted: bool,
    locks: LockTable,
    /// Journals and WAL of a main database, closed with it.
    companions: Vec<Arc<Entry>>,
}

impl Entry {
    fn new(name: String, volume: Volume, scope: Scope, main: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            volume,
            scope,
            main,
            engine: RwLock::new(None),
            state: Mutex::new(EntryState::default()),
            shm: Mutex::new(Shm::default()),
        })
    }

    fn key(&self) -> (Scope, String) {
        (self.scope.clone(), self.name.clone())
    }

    /// A commit is read-only.
    fn read_only(&self) -> bool {
        matches!(self.scope.1, View::Commit(_))
    }

    fn state(&self) -> MutexGuard<'_, EntryState> {
        lock(&self.state)
    }

    fn engine_read(&self) -> std::sync::RwLockReadGuard<'_, Option<File>> {
        self.engine
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn engine_write(&self) -> std::sync::RwLockWriteGuard<'_, Option<File>> {
        self.engine
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Backing {
    /// A temp file: private to its handle, gone when closed.
    Memory(Vec<u8>),
    Volume(Arc<Entry>),
}

/// A file SQLite opened.
pub struct Handle {
    backing: Backing,
    id: u64,
    readonly: bool,
    delete_on_close: bool,
    level: LockLevel,
    shm: ShmHold,
}

impl Handle {
    /// Whether SQLite may only read the file.
    pub(crate) fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether the file is a temp file in memory.
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self.backing, Backing::Memory(_))
    }
}

/// The state of the VFS in this process.
pub(crate) struct FsxVfs {
    runtime: tokio::runtime::Runtime,
    volumes: Mutex<HashMap<PathBuf, Volume>>,
    /// Open files by volume directory and name.
    files: Mutex<Files>,
    next_id: AtomicU64,
}

impl FsxVfs {
    pub(crate) fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("fsx-sqlite")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime,
            volumes: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Runs an engine future to completion on the calling (SQLite) thread,
    /// inside the VFS's runtime so that I/O and blocking tasks have one.
    /// Polling here rather than `Runtime::block_on` also works when the
    /// caller is itself inside another runtime.
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        let _guard = self.runtime.enter();
        futures_executor::block_on(f)
    }

    /// The volume in directory `path`, opened once per process; created
    /// with the embedded defaults if missing and `create`.
    fn volume(&self, path: &str, create: bool) -> VfsResult<(Volume, PathBuf)> {
        let dir = fsx_volume::absolute(Path::new(path)).map_err(|e| {
            fail(
                sys::SQLITE_CANTOPEN,
                format!("fsx: {}", fsx_volume::error_chain(&e)),
            )
        })?;
        let dir = dir.canonicalize().unwrap_or(dir);
        let mut volumes = lock(&self.volumes);
        if let Some(v) = volumes.get(&dir) {
            return Ok((v.clone(), dir));
        }
        let options = VolumeOptions::default().lease_ttl_ms(LEASE_TTL_MS);
        let env = Arc::new(SystemEnv::new());
        let opened = self.block_on(fsx_volume::open(&dir, env.clone(), options.clone()));
        let volume = match opened {
            Ok(v) => v,
            Err(e) if e.is_not_a_volume() && create => self
                .block_on(fsx_volume::create(
                    &dir,
                    &fsx_volume::VolumeFile::default(),
                    fsx_volume::DEFAULT_EXTENT_SIZE,
                    env,
                    options,
                ))
                .map_err(|e| {
                    fail(
                        sys::SQLITE_CANTOPEN,
                        format!("fsx: {}", fsx_volume::error_chain(&e)),
                    )
                })?,
            Err(e) if e.is_not_a_volume() => {
                return Err(fail(
                    sys::SQLITE_CANTOPEN,
                    format!(
                        "fsx: {} (or add mode=rwc to the URI to create it)",
                        fsx_volume::error_chain(&e)
                    ),
                ));
            }
            Err(e) => {
                return Err(fail(
                    sys::SQLITE_CANTOPEN,
                    format!("fsx: {}", fsx_volume::error_chain(&e)),
                ));
            }
        };
        volumes.insert(dir.clone(), volume.clone());
        Ok((volume, dir))
    }

    /// Opens the engine handle of `entry` (taking its write lease) unless
    /// the process has it already.
    fn own(&self, entry: &Entry, create: bool) -> Result<(), fsx_engine::Error> {
        let mut engine = entry.engine_write();
        if engine.is_some() {
            return Ok(());
        }
        let options = if entry.read_only() {
            OpenOptions::read()
        } else if create {
            OpenOptions::create(FSX_PAGE_SIZE)
        } else {
            OpenOptions::write()
        };
        // A journal or WAL is rewritten from its start again and again: on
        // an embedded volume it lives in a local journal while it is open
        // (a commit is one `fdatasync` of it, see `fsx_engine::journal`);
        // otherwise its pages stay in the dirty buffer (rewritten in place)
        // rather than be packed into extents the next transaction makes
        // garbage. Closing the file and GC pack what is left.
        let options = if entry.main {
            options
        } else {
            options.pack_on_sync(false).journal(true)
        };
        *engine = Some(self.block_on(entry.volume.open_file(&entry.name, options))?);
        Ok(())
    }

    /// The open main database whose journal, WAL or super-journal `name`
    /// is. SQLite names these files without the volume, so when databases of
    /// that name are open from several volumes, the one this thread used
    /// last wins: a connection's journal operations follow its own database
    /// operations on the same thread.
    fn main_of(files: &Files, name: &str) -> Option<Arc<Entry>> {
        let mains: Vec<&Arc<Entry>> = files
            .values()
            .filter(|e| {
                e.main
                    && name.len() > e.name.len()
                    && name.starts_with(e.name.as_str())
                    && name.as_bytes()[e.name.len()] == b'-'
            })
            .collect();
        let current = CURRENT.with(|c| c.borrow().as_ref().and_then(std::sync::Weak::upgrade));
        if let Some(cur) = current
            && mains.iter().any(|m| Arc::ptr_eq(m, &cur))
        {
            return Some(cur);
        }
        mains.into_iter().max_by_key(|e| e.name.len()).cloned()
    }

    /// The entry of companion file `name` (journal, WAL, super-journal),
    /// created if missing; `None` if no open database owns the name.
    fn companion(files: &mut Files, name: &str) -> Option<Arc<Entry>> {
        let main = Self::main_of(files, name)?;
        let key = (main.scope.clone(), name.to_string());
        if let Some(e) = files.get(&key) {
            return Some(e.clone());
        }
        let e = Entry::new(
            name.to_string(),
            main.volume.clone(),
            main.scope.clone(),
            false,
        );
        main.state().companions.push(e.clone());
        files.insert(key, e.clone());
        Some(e)
    }

    fn handle(&self, backing: Backing, opts: &OpenOpts) -> Handle {
        let read_only = match &backing {
            Backing::Volume(e) => e.read_only(),
            Backing::Memory(_) => false,
        };
        Handle {
            backing,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            readonly: read_only || opts.mode().is_readonly(),
            delete_on_close: opts.delete_on_close(),
            level: LockLevel::Unlocked,
            shm: ShmHold::default(),
        }
    }

    fn open_main(&self, name: String, opts: &OpenOpts, params: OpenParams) -> VfsResult<Handle> {
        let Some(path) = params.volume.clone() else {
            return Err(fail(
                sys::SQLITE_CANTOPEN,
                format!(
                    "fsx: {name:?} names no volume: open it as file:{name}?vfs=fsx&volume=PATH"
                ),
            ));
        };
        let (volume, dir) = self.volume(&path, params.mode.as_deref() == Some("rwc"))?;
        let volume = self.view_of(volume, &params)?;
        let mut files = lock(&self.files);
        let key = ((dir.clone(), volume.view()), name.clone());
        let entry = match files.get(&key) {
            Some(e) => e.clone(),
            None => Entry::new(name.clone(), volume.clone(), (dir, volume.view()), true),
        };
        let create = !matches!(
            opts.mode(),
            OpenMode::ReadOnly
                | OpenMode::ReadWrite {
                    create: CreateMode::None
                }
        );
        // Take the lease now if free; if another process has it, the first
        // lock retries and reports SQLITE_BUSY.
        match self.own(&entry, create) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Busy => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(fail(
                    sys::SQLITE_CANTOPEN,
                    format!("fsx: no database {name:?} in the volume"),
                ));
            }
            Err(e) => return Err(engine_err(sys::SQLITE_CANTOPEN, "cannot open", &name, &e)),
        }
        entry.state().handles += 1;
        files.insert(key, entry.clone());
        set_current(&entry);
        Ok(self.handle(Backing::Volume(entry), opts))
    }

    fn open_companion(&self, name: String, opts: &OpenOpts) -> VfsResult<Handle> {
        let mut files = lock(&self.files);
        let entry = Self::companion(&mut files, &name).ok_or_else(|| {
            fail(
                sys::SQLITE_CANTOPEN,
                format!("fsx: {name:?} belongs to no open database"),
            )
        })?;
        drop(files);
        let create = matches!(
            opts.mode(),
            OpenMode::ReadWrite {
                create: CreateMode::Create | CreateMode::MustCreate
            }
        );
        {
            let mut st = entry.state();
            if st.deleted {
                if !create {
                    return Err(sys::SQLITE_CANTOPEN);
                }
                // Its bytes were already truncated away.
                st.deleted = false;
            }
        }
        match self.own(&entry, create) {
            Ok(()) => {}
            // A commit without this journal or WAL reads as if it were
            // empty; SQLite may still need a scratch copy to open it.
            Err(e) if e.kind() == ErrorKind::NotFound && entry.read_only() => {
                return Ok(self.handle(Backing::Memory(Vec::new()), opts));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(sys::SQLITE_CANTOPEN),
            Err(e) => return Err(engine_err(sys::SQLITE_CANTOPEN, "cannot open", &name, &e)),
        }
        entry.state().handles += 1;
        Ok(self.handle(Backing::Volume(entry), opts))
    }

    /// The volume seen through the URI's `branch=` or `commit=`.
    fn view_of(&self, volume: Volume, params: &OpenParams) -> VfsResult<Volume> {
        let cantopen = |msg: String| fail(sys::SQLITE_CANTOPEN, format!("fsx: {msg}"));
        match (&params.branch, &params.commit) {
            (Some(_), Some(_)) => Err(cantopen(
                "give either branch= or commit= in the URI, not both".into(),
            )),
            (Some(b), None) => self
                .block_on(volume.checkout(b))
                .map_err(|e| cantopen(format!("cannot open branch {b:?}: {e}"))),
            (None, Some(c)) => {
                let id: fsx_meta::CommitId = c.parse().map_err(|_| {
                    cantopen(format!(
                        "commit={c:?} is not a commit id (`fsx log` lists them)"
                    ))
                })?;
                self.block_on(volume.at_commit(id))
                    .map_err(|e| cantopen(format!("cannot open commit {id}: {e}")))
            }
            (None, None) => Ok(volume),
        }
    }

    /// Truncates `entry` to nothing, durably, and marks it deleted.
    fn truncate_away(&self, entry: &Entry) -> VfsResult<()> {
        let mut engine = entry.engine_write();
        let f = engine.as_mut().ok_or(sys::SQLITE_IOERR_DELETE)?;
        self.block_on(async {
            f.truncate(0).await?;
            f.sync().await
        })
        .map_err(|e| engine_err(sys::SQLITE_IOERR_DELETE, "cannot delete", &entry.name, &e))?;
        entry.state().deleted = true;
        Ok(())
    }

    /// Closes the engine handle of `entry` (checkpoint, release the lease)
    /// and deletes the fsx file if SQLite deleted it.
    fn close_entry(&self, entry: &Entry) {
        let file = entry.engine_write().take();
        let deleted = entry.state().deleted;
        let result = self.block_on(async {
            if let Some(mut f) = file {
                // SQLite deleted it: its bytes are not needed, so closing
                // need not fold or pack them into the volume first.
                if deleted && f.is_writer() {
                    f.truncate(0).await?;
                }
                f.close().await?;
            }
            if deleted && !entry.read_only() {
                match entry.volume.delete(&entry.name).await {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            entry.volume.flush_counters().await
        });
        if let Err(e) = result {
            // The data is durable already (SQLite synced it); what is lost
            // is a checkpoint or the lease release, which the next opener
            // redoes or breaks.
            fail(
                sys::SQLITE_IOERR_CLOSE,
                format!("fsx: closing {:?}: {e}", entry.name),
            );
        }
    }

    /// After the last connection to a main database closed: close it and
    /// its journals and WAL.
    fn close_group(&self, files: &mut Files, main: &Arc<Entry>) {
        files.remove(&main.key());
        let companions = std::mem::take(&mut main.state().companions);
        for c in companions {
            if c.state().handles == 0 {
                files.remove(&c.key());
                self.close_entry(&c);
            }
        }
        self.close_entry(main);
    }

    /// The entry behind `h`; a main database becomes this thread's current.
    fn entry<'h>(&self, h: &'h Handle) -> Option<&'h Arc<Entry>> {
        match &h.backing {
            Backing::Volume(e) => {
                set_current(e);
                Some(e)
            }
            Backing::Memory(_) => None,
        }
    }
}

/// The VFS methods, called by `glue.rs`.
impl FsxVfs {
    pub(crate) fn canonical_path<'a>(
        &self,
        path: std::borrow::Cow<'a, str>,
    ) -> VfsResult<std::borrow::Cow<'a, str>> {
        match file_name(&path) {
            Some(n) if n == path => Ok(path),
            Some(n) => Ok(n.into()),
            None => Err(fail(
                sys::SQLITE_CANTOPEN,
                format!("fsx: {path:?} is not a file name inside a volume"),
            )),
        }
    }

    /// `params` are the checked URI parameters of a main database.
    pub(crate) fn open(
        &self,
        path: Option<&str>,
        opts: OpenOpts,
        params: Option<OpenParams>,
    ) -> VfsResult<Handle> {
        let kind = opts.kind();
        let name = match path {
            Some(p)
                if !matches!(
                    kind,
                    OpenKind::TempDb
                        | OpenKind::TempJournal
                        | OpenKind::TransientDb
                        | OpenKind::SubJournal
                ) =>
            {
                file_name(p).ok_or(sys::SQLITE_CANTOPEN)?
            }
            _ => return Ok(self.handle(Backing::Memory(Vec::new()), &opts)),
        };
        if kind == OpenKind::MainDb {
            self.open_main(name, &opts, params.unwrap_or_default())
        } else {
            self.open_companion(name, &opts)
        }
    }

    pub(crate) fn delete(&self, path: &str) -> VfsResult<()> {
        let name = file_name(path).ok_or(sys::SQLITE_IOERR_DELETE)?;
        let entry =
            Self::companion(&mut lock(&self.files), &name).ok_or(sys::SQLITE_IOERR_DELETE_NOENT)?;
        if entry.state().deleted {
            return Err(sys::SQLITE_IOERR_DELETE_NOENT);
        }
        if entry.read_only() {
            // A commit cannot change: the file is gone for this process's
            // connections only.
            entry.state().deleted = true;
            return Ok(());
        }
        // Taking the lease here also breaks that of a crashed process.
        match self.own(&entry, false) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                entry.state().deleted = true;
                return Err(sys::SQLITE_IOERR_DELETE_NOENT);
            }
            Err(e) => {
                return Err(engine_err(
                    sys::SQLITE_IOERR_DELETE,
                    "cannot delete",
                    &name,
                    &e,
                ));
            }
        }
        self.truncate_away(&entry)
    }

    pub(crate) fn access(&self, path: &str) -> VfsResult<bool> {
        let Some(name) = file_name(path) else {
            return Ok(false);
        };
        let volume = {
            let files = lock(&self.files);
            let main = Self::main_of(&files, &name);
            let existing = main
                .as_ref()
                .and_then(|m| files.get(&(m.scope.clone(), name.clone())));
            if let Some(e) = existing {
                if e.state().deleted {
                    return Ok(false);
                }
                if e.engine_read().is_some() {
                    return Ok(true);
                }
                e.volume.clone()
            } else {
                match &main {
                    Some(main) => main.volume.clone(),
                    None => return Ok(false),
                }
            }
        };
        match self.block_on(volume.stat(&name)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(engine_err(
                sys::SQLITE_IOERR_ACCESS,
                "cannot stat",
                &name,
                &e,
            )),
        }
    }

    pub(crate) fn file_size(&self, h: &mut Handle) -> VfsResult<usize> {
        let e = match &h.backing {
            Backing::Memory(m) => return Ok(m.len()),
            Backing::Volume(e) => {
                set_current(e);
                e
            }
        };
        if let Some(f) = e.engine_read().as_ref() {
            return Ok(f.size() as usize);
        }
        // Not ours (another process holds it): SQLite only asks before it
        // locks, as a hint.
        match self.block_on(e.volume.stat(&e.name)) {
            Ok(m) => Ok(m.size as usize),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(0),
            Err(err) => Err(engine_err(
                sys::SQLITE_IOERR_FSTAT,
                "cannot stat",
                &e.name,
                &err,
            )),
        }
    }

    pub(crate) fn truncate(&self, h: &mut Handle, size: usize) -> VfsResult<()> {
        let e = match &mut h.backing {
            Backing::Memory(m) => {
                m.resize(size, 0);
                return Ok(());
            }
            Backing::Volume(e) => {
                set_current(e);
                e
            }
        };
        let mut engine = e.engine_write();
        let f = engine.as_mut().ok_or(sys::SQLITE_IOERR_TRUNCATE)?;
        self.block_on(f.truncate(size as u64))
            .map_err(|err| engine_err(sys::SQLITE_IOERR_TRUNCATE, "cannot truncate", &e.name, &err))
    }

    pub(crate) fn write(&self, h: &mut Handle, offset: usize, data: &[u8]) -> VfsResult<usize> {
        if h.readonly {
            return Err(sys::SQLITE_READONLY);
        }
        let e = match &mut h.backing {
            Backing::Memory(m) => {
                let end = offset + data.len();
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[offset..end].copy_from_slice(data);
                return Ok(data.len());
            }
            Backing::Volume(e) => {
                set_current(e);
                e
            }
        };
        let mut engine = e.engine_write();
        let f = engine.as_mut().ok_or(sys::SQLITE_IOERR_WRITE)?;
        self.block_on(f.write_at(offset as u64, data))
            .map_err(|err| engine_err(sys::SQLITE_IOERR_WRITE, "cannot write", &e.name, &err))?;
        BYTES_WRITTEN.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data.len())
    }

    pub(crate) fn read(&self, h: &mut Handle, offset: usize, buf: &mut [u8]) -> VfsResult<usize> {
        let e = match &h.backing {
            Backing::Memory(m) => {
                let got = m.get(offset..).unwrap_or_default();
                let n = got.len().min(buf.len());
                buf[..n].copy_from_slice(&got[..n]);
                return Ok(n);
            }
            Backing::Volume(e) => {
                set_current(e);
                e
            }
        };
        let read_err = |err: fsx_engine::Error| {
            engine_err(sys::SQLITE_IOERR_READ, "cannot read", &e.name, &err)
        };
        let bytes = match e.engine_read().as_ref() {
            Some(f) => self
                .block_on(f.read_at(offset as u64, buf.len()))
                .map_err(read_err)?,
            // Another process holds the file: SQLite reads the header as a
            // hint before it locks; give it the durable bytes.
            None => self
                .block_on(async {
                    let f = e.volume.open_file(&e.name, OpenOptions::read()).await?;
                    f.read_at(offset as u64, buf.len()).await
                })
                .or_else(|err| {
                    if err.kind() == ErrorKind::NotFound {
                        Ok(Vec::new())
                    } else {
                        Err(read_err(err))
                    }
                })?,
        };
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    pub(crate) fn sync(&self, h: &mut Handle) -> VfsResult<()> {
        let Some(e) = self.entry(h) else {
            return Ok(());
        };
        let mut engine = e.engine_write();
        let f = engine.as_mut().ok_or(sys::SQLITE_IOERR_FSYNC)?;
        SYNCS.fetch_add(1, Ordering::Relaxed);
        self.block_on(f.sync())
            .map_err(|err| engine_err(sys::SQLITE_IOERR_FSYNC, "cannot sync", &e.name, &err))
    }

    pub(crate) fn lock(&self, h: &mut Handle, level: LockLevel) -> VfsResult<()> {
        let Some(e) = self.entry(h).cloned() else {
            return Ok(());
        };
        if h.level == LockLevel::Unlocked && level > LockLevel::Unlocked {
            // The lease is what keeps other processes out.
            match self.own(&e, false) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::Busy => return Err(sys::SQLITE_BUSY),
                Err(err) => {
                    return Err(engine_err(
                        sys::SQLITE_IOERR_LOCK,
                        "cannot lock",
                        &e.name,
                        &err,
                    ));
                }
            }
        }
        let result = e.state().locks.lock(h.id, h.level, level);
        match result {
            Ok(l) => {
                h.level = l;
                Ok(())
            }
            Err(l) => {
                h.level = l;
                Err(sys::SQLITE_BUSY)
            }
        }
    }

    pub(crate) fn unlock(&self, h: &mut Handle, level: LockLevel) -> VfsResult<()> {
        if let Some(e) = self.entry(h).cloned() {
            let new = e.state().locks.unlock(h.id, h.level, level);
            h.level = new;
        }
        Ok(())
    }

    pub(crate) fn check_reserved_lock(&self, h: &mut Handle) -> bool {
        self.entry(h).is_some_and(|e| e.state().locks.reserved())
    }

    pub(crate) fn close(&self, mut h: Handle) -> VfsResult<()> {
        let Backing::Volume(e) = &h.backing else {
            return Ok(());
        };
        let e = e.clone();
        {
            let mut st = e.state();
            h.level = st.locks.unlock(h.id, h.level, LockLevel::Unlocked);
        }
        lock(&e.shm).unmap(&mut h.shm);
        if h.delete_on_close && !e.state().deleted {
            self.truncate_away(&e)?;
        }
        let mut files = lock(&self.files);
        let remaining = {
            let mut st = e.state();
            st.handles -= 1;
            st.handles
        };
        if remaining == 0 {
            if e.main {
                self.close_group(&mut files, &e);
            } else if !files
                .values()
                .any(|m| m.main && m.state().companions.iter().any(|c| Arc::ptr_eq(c, &e)))
            {
                // A companion whose database is gone already.
                files.remove(&e.key());
                self.close_entry(&e);
            }
        }
        Ok(())
    }

    pub(crate) fn sector_size() -> i32 {
        FSX_PAGE_SIZE as i32
    }

    pub(crate) fn device_characteristics() -> i32 {
        sys::SQLITE_IOCAP_POWERSAFE_OVERWRITE | sys::SQLITE_IOCAP_SAFE_APPEND
    }

    pub(crate) fn shm_map(
        &self,
        h: &mut Handle,
        region_idx: usize,
        region_size: usize,
        extend: bool,
    ) -> VfsResult<Option<NonNull<u8>>> {
        let Some(e) = self.entry(h).cloned() else {
            return Err(sys::SQLITE_IOERR_SHMMAP);
        };
        lock(&e.shm)
            .map(&mut h.shm, region_idx, region_size, extend)
            .map_err(|m| fail(sys::SQLITE_IOERR_SHMMAP, format!("fsx: {m}")))
    }

    pub(crate) fn shm_lock(
        &self,
        h: &mut Handle,
        offset: u32,
        count: u32,
        mode: ShmLockMode,
    ) -> VfsResult<()> {
        let Some(e) = self.entry(h).cloned() else {
            return Err(sys::SQLITE_IOERR_SHMLOCK);
        };
        lock(&e.shm)
            .lock(&mut h.shm, offset, count, mode)
            .map_err(|_| sys::SQLITE_BUSY)
    }

    pub(crate) fn shm_barrier() {
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    pub(crate) fn shm_unmap(&self, h: &mut Handle) {
        if let Some(e) = self.entry(h).cloned() {
            lock(&e.shm).unmap(&mut h.shm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_volume() {
        assert_eq!(file_name("app.db").as_deref(), Some("app.db"));
        assert_eq!(file_name("/a//./b.db").as_deref(), Some("a/b.db"));
        assert_eq!(file_name("../x.db"), None);
        assert_eq!(file_name("/"), None);
    }
}
