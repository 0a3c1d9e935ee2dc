//! [`Fs`]: the calls, and the table of open handles.
//!
//! Invariants: an inode has an entry in `State::open` exactly while some
//! handle of it is open; its shared [`File`] is a writer if any of its
//! handles ever asked to write since it was opened; the `std` mutex of
//! the state is never held across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

// async-lock's locks are fair: a waiter starved for half a millisecond
// is served next. (futures-util's mutex is not: under a steady stream of
// opens and closes one `create` waited for as long as the stream lasted.)
use async_lock::{Mutex as AsyncMutex, RwLock};
use bytes::Bytes;
use fsx_engine::{File, OpenOptions, Volume};
use fsx_meta::contract::{
    Attr, BranchId, ByteLock, DirEntry, Ino, LockKind, MakeNode, NewLease, NodeKind, SetAttr,
    SetTime, View,
};
use fsx_meta::perm::{self, Caller, Owned};
use fsx_meta::rename::RenameFlags;

use crate::error::{FsError, Result, errno};

/// Page size of the regular files this layer makes: the size of most
/// database pages and of the kernel's.
const PAGE_SIZE: u32 = 4096;

/// An open handle's number.
pub type Fh = u64;

/// How a file is opened (`open(2)`'s access mode and flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// `O_APPEND`: every write goes to the end.
    pub append: bool,
    /// `O_TRUNC`: the file is emptied on open.
    pub truncate: bool,
}

impl OpenFlags {
    /// `O_RDONLY`.
    pub fn read_only() -> Self {
        Self {
            read: true,
            ..Self::default()
        }
    }

    /// `O_RDWR`.
    pub fn read_write() -> Self {
        Self {
            read: true,
            write: true,
            ..Self::default()
        }
    }
}

/// What `setattr` changes (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrs {
    /// `chmod`.
    pub mode: Option<u32>,
    /// `chown` owner.
    pub uid: Option<u32>,
    /// `chown` group.
    pub gid: Option<u32>,
    /// `truncate`.
    pub size: Option<u64>,
    /// Access time.
    pub atime: Option<SetTime>,
    /// Modification time.
    pub mtime: Option<SetTime>,
}

/// A lock request or a lock found (see [`Fs::setlk`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRange {
    /// `flock` (whole file) or POSIX byte range.
    pub kind: LockKind,
    /// Who owns it in this session: the open file description for
    /// `flock`, the process's lock owner for POSIX locks.
    pub owner: u64,
    /// First byte.
    pub start: u64,
    /// One past the last byte (`u64::MAX`: to any end of file).
    pub stop: u64,
    /// Write lock (else read lock).
    pub exclusive: bool,
}

/// What `statfs` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    /// Block size (`f_bsize`, `f_frsize`).
    pub block_size: u32,
    /// Blocks in all.
    pub blocks: u64,
    /// Blocks free (and available).
    pub blocks_free: u64,
    /// Inodes in all.
    pub files: u64,
    /// Inodes free.
    pub files_free: u64,
    /// Longest name.
    pub name_max: u32,
}

/// `lseek`'s sparse-file whences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    /// `SEEK_DATA`.
    Data,
    /// `SEEK_HOLE`.
    Hole,
}

/// An inode open through one or more handles.
struct OpenNode {
    ino: Ino,
    /// `None` once the last handle closed it.
    file: RwLock<Option<File>>,
    /// Its last name went while it was open.
    orphan: std::sync::atomic::AtomicBool,
    /// A write found no set-user-ID or set-group-ID bit to clear, and no
    /// `setattr` through this `Fs` came since: later writes by other
    /// users than root need not look again (a metadata read per write).
    no_setid: std::sync::atomic::AtomicBool,
    /// Its file's unsynced bytes when last noted (see `Fs::note`).
    unsynced: std::sync::atomic::AtomicI64,
}

#[derive(Clone)]
struct Handle {
    node: Arc<OpenNode>,
    flags: OpenFlags,
    caller: Caller,
}

#[derive(Default)]
struct State {
    handles: HashMap<Fh, Handle>,
    /// Open nodes and their handle counts. A count of 0 is a journaled
    /// writer kept open after its last close (see `lingering`).
    open: HashMap<Ino, (Arc<OpenNode>, usize)>,
    /// Journaled files whose last handle closed, kept open (synced, their
    /// lease held) until the time here, ms: a database reopens its WAL
    /// soon and often, and each fold and new journal would copy the whole
    /// file twice (see [`Fs::close_idle_journals`]).
    lingering: HashMap<Ino, i64>,
    next_fh: Fh,
}

/// How long a journaled file stays open after its last close.
const LINGER_MS: i64 = 5_000;

/// File-system calls over one view of a volume (see the crate docs).
pub struct Fs {
    volume: Volume,
    branch: Option<BranchId>,
    root: Ino,
    /// This session's id: the owner of its locks and of the unlinked
    /// files it keeps open.
    holder: String,
    state: Mutex<State>,
    /// Serialises opening and closing of inodes, so two handles opening
    /// one inode at once share one page-store file.
    opening: AsyncMutex<()>,
    /// Last closes finished (see [`Fs::folds`]).
    folds: std::sync::atomic::AtomicU64,
    /// Unsynced bytes buffered by all open files (the sum of each node's
    /// `unsynced` as last noted).
    dirty: std::sync::atomic::AtomicI64,
    /// Above this many unsynced bytes in all, a writer syncs its own file
    /// before its write returns (see [`Fs::set_dirty_limit`]).
    dirty_limit: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("view", &self.volume.view())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn now_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn owned(a: &Attr) -> Owned {
    Owned {
        uid: a.uid,
        gid: a.gid,
        mode: a.mode,
        dir: a.kind == NodeKind::Dir,
    }
}

fn err(errno: i32, message: impl Into<String>) -> FsError {
    FsError::new(errno, message)
}

/// Whether a file called `name` is a database's write-ahead log or
/// journal: SQLite's `-wal` and `-journal`, DuckDB's `.wal`, PostgreSQL's
/// WAL segments (24 hex digits, in `pg_wal`). Such a file is rewritten
/// in small synced appends and lives while its database is open, so a
/// writer keeps it in a local journal where the volume has them (its
/// metadata on this machine): a commit is then one `fdatasync`, not a
/// metadata transaction (see `fsx_engine::journal`). Any other file named
/// so is only stored that way too: its bytes and its durability are the
/// same.
fn journaled(name: &[u8]) -> bool {
    name.ends_with(b"-wal")
        || name.ends_with(b"-journal")
        || name.ends_with(b".wal")
        || (name.len() == 24 && name.iter().all(u8::is_ascii_hexdigit))
}

/// How a writer of a file called `name` opens it.
fn writer_options(name: &[u8]) -> OpenOptions {
    if journaled(name) {
        // Its pages stay in the dirty buffer until the close (rewritten
        // in place), rather than be packed into extents the next commit
        // makes garbage: as the SQLite VFS opens them.
        OpenOptions::write().pack_on_sync(false).journal(true)
    } else {
        OpenOptions::write()
    }
}

/// The file of an open node, unless its last handle closed it meanwhile.
fn live(file: &mut Option<File>) -> Result<&mut File> {
    file.as_mut()
        .ok_or_else(|| err(errno::EBADF, "the file was closed"))
}

fn live_ref(file: &Option<File>) -> Result<&File> {
    file.as_ref()
        .ok_or_else(|| err(errno::EBADF, "the file was closed"))
}

impl Fs {
    /// The file system of `volume`'s view (a branch: read-write; a commit:
    /// read-only).
    pub async fn new(volume: Volume) -> Result<Self> {
        let branch = match volume.view() {
            View::Branch(b) => Some(b),
            View::Commit(_) => None,
        };
        let root = volume.meta().root().await?;
        if branch.is_some() {
            // "The next open" reclaims what a crashed session left.
            volume.reclaim_orphans().await?;
        }
        let holder = volume.new_holder();
        Ok(Self {
            volume,
            branch,
            root,
            holder,
            state: Mutex::new(State::default()),
            opening: AsyncMutex::new(()),
            folds: std::sync::atomic::AtomicU64::new(0),
            dirty: std::sync::atomic::AtomicI64::new(0),
            dirty_limit: std::sync::atomic::AtomicI64::new(i64::MAX),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The table is updated in single steps: a panic elsewhere leaves
        // it consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn meta(&self) -> &fsx_engine::MetaArc {
        self.volume.meta()
    }

    fn view(&self) -> View {
        self.volume.view()
    }

    fn branch(&self) -> Result<BranchId> {
        self.branch.ok_or_else(|| {
            err(
                errno::EROFS,
                "read-only: a commit, or a branch opened read-only",
            )
        })
    }

    /// This file system, refusing every change with `EROFS` (a branch
    /// mounted read-only): it then behaves as a commit's.
    pub fn read_only(mut self) -> Self {
        self.branch = None;
        self
    }

    /// Whether every change is refused (a commit, or [`Fs::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.branch.is_none()
    }

    /// The root directory's inode number.
    pub fn root(&self) -> Ino {
        self.root
    }

    /// The volume this file system serves.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// The last component of a path of `ino` (empty when nothing names
    /// it): what decides how a writer opens it ([`writer_options`]).
    /// Without local journals the name decides nothing, and is not read.
    async fn name_of(&self, ino: Ino) -> Result<Vec<u8>> {
        if !self.volume.keeps_journals() {
            return Ok(Vec::new());
        }
        let paths = self.meta().paths_of(self.view(), &[ino]).await?;
        Ok(paths
            .into_iter()
            .next()
            .flatten()
            .map(|p| p.rsplit(|&b| b == b'/').next().unwrap_or_default().to_vec())
            .unwrap_or_default())
    }

    fn open_node(&self, ino: Ino) -> Option<Arc<OpenNode>> {
        self.state().open.get(&ino).map(|(n, _)| n.clone())
    }

    fn handle(&self, fh: Fh) -> Result<Handle> {
        self.state()
            .handles
            .get(&fh)
            .cloned()
            .ok_or_else(|| err(errno::EBADF, format!("no open handle {fh}")))
    }

    /// The inode an open handle reads and writes.
    pub fn handle_ino(&self, fh: Fh) -> Option<Ino> {
        self.state().handles.get(&fh).map(|h| h.node.ino)
    }

    /// `stat`: the attributes of `ino`; an open file's size includes
    /// what its handles wrote and did not sync yet.
    pub async fn getattr(&self, ino: Ino) -> Result<Attr> {
        let seen = self.folds();
        let a = self.meta().getattr(self.view(), ino).await?;
        self.with_open_size(a, seen).await
    }

    /// The entry `name` of `parent`.
    pub async fn lookup(&self, parent: Ino, name: &[u8], caller: &Caller) -> Result<Attr> {
        let seen = self.folds();
        let a = self
            .meta()
            .lookup(self.view(), parent, name, caller)
            .await?;
        self.with_open_size(a, seen).await
    }

    /// Last closes finished so far: a reader of the metadata notes it
    /// first, to learn whether a journal was folded in meanwhile.
    fn folds(&self) -> u64 {
        self.folds.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `a` (read from the metadata after [`Fs::folds`] was `seen`) with
    /// the size its open handles see (unsynced writes included); for a
    /// file a writer keeps in a local journal, the journal's size — the
    /// volume's own copy is empty meanwhile (see `fsx_engine::journal`),
    /// and a database checks a journal's size to know whether it is hot.
    async fn with_open_size(&self, mut a: Attr, seen: u64) -> Result<Attr> {
        if let Some(node) = self.open_node(a.ino)
            && let Some(f) = node.file.read().await.as_ref()
        {
            a.size = f.size();
            return Ok(a);
        }
        if a.kind == NodeKind::File && a.size == 0 && self.volume.keeps_journals() {
            match self.volume.journal_size(a.ino)? {
                Some(n) => a.size = n,
                // Folded in (and gone) since the metadata was read: the
                // metadata has it now.
                None if self.folds() != seen => {
                    a.size = self.meta().getattr(self.view(), a.ino).await?.size;
                }
                None => {}
            }
        }
        Ok(a)
    }

    /// Makes `parent/name`; a regular file with its write lease taken in
    /// the same transaction when `lease` is given.
    #[allow(clippy::too_many_arguments)]
    async fn make(
        &self,
        parent: Ino,
        name: &[u8],
        kind: NodeKind,
        mode: u32,
        rdev: u64,
        target: Option<&[u8]>,
        caller: &Caller,
        lease: Option<NewLease<'_>>,
    ) -> Result<Attr> {
        let node = MakeNode {
            branch: self.branch()?,
            parent,
            name,
            kind,
            mode,
            rdev,
            target,
            page_size: PAGE_SIZE,
            caller,
            now_ns: now_ns(),
            lease,
        };
        Ok(self.meta().make(&node).await?)
    }

    /// `mkdir` (`mode` with the umask applied).
    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        caller: &Caller,
    ) -> Result<Attr> {
        self.make(parent, name, NodeKind::Dir, mode, 0, None, caller, None)
            .await
    }

    /// `mknod`: a regular file, FIFO, socket or device node.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        kind: NodeKind,
        mode: u32,
        rdev: u64,
        caller: &Caller,
    ) -> Result<Attr> {
        if matches!(kind, NodeKind::Dir | NodeKind::Symlink) {
            return Err(err(errno::EINVAL, "mknod makes no directories or symlinks"));
        }
        if matches!(kind, NodeKind::CharDev | NodeKind::BlockDev) && !caller.is_root() {
            return Err(err(errno::EPERM, "only root makes device nodes"));
        }
        self.make(parent, name, kind, mode, rdev, None, caller, None)
            .await
    }

    /// `symlink(target, parent/name)`.
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        caller: &Caller,
    ) -> Result<Attr> {
        self.make(
            parent,
            name,
            NodeKind::Symlink,
            0o777,
            0,
            Some(target),
            caller,
            None,
        )
        .await
    }

    /// `readlink`.
    pub async fn readlink(&self, ino: Ino) -> Result<Bytes> {
        Ok(self.meta().readlink(self.view(), ino).await?)
    }

    /// `link(ino, new_parent/new_name)`.
    pub async fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: &[u8],
        caller: &Caller,
    ) -> Result<Attr> {
        let seen = self.folds();
        let a = self
            .meta()
            .link(self.branch()?, ino, new_parent, new_name, caller, now_ns())
            .await?;
        if let Some(node) = self.open_node(ino) {
            node.orphan
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        self.with_open_size(a, seen).await
    }

    /// The inode `parent/name` names, without permission checks (the
    /// change that follows checks them).
    async fn peek(&self, parent: Ino, name: &[u8]) -> Option<Ino> {
        // Only an inode open here matters to the callers: with nothing
        // open, no lookup (a metadata read per unlink or rename).
        if self.state().open.is_empty() {
            return None;
        }
        self.meta()
            .lookup(self.view(), parent, name, &Caller::root())
            .await
            .ok()
            .map(|a| a.ino)
    }

    async fn remove(&self, parent: Ino, name: &[u8], dir: bool, caller: &Caller) -> Result<()> {
        let branch = self.branch()?;
        let target = self.peek(parent, name).await;
        let node = target.and_then(|ino| self.open_node(ino));
        let open = node.as_ref().map(|_| self.holder.as_str());
        let u = self
            .meta()
            .remove(branch, parent, name, dir, open, caller, now_ns())
            .await?;
        if let Some(n) = node
            && u.orphaned
        {
            n.orphan.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// `unlink`.
    pub async fn unlink(&self, parent: Ino, name: &[u8], caller: &Caller) -> Result<()> {
        self.remove(parent, name, false, caller).await
    }

    /// `rmdir`.
    pub async fn rmdir(&self, parent: Ino, name: &[u8], caller: &Caller) -> Result<()> {
        self.remove(parent, name, true, caller).await
    }

    /// `renameat2(parent/name, new_parent/new_name, flags)`.
    pub async fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: RenameFlags,
        caller: &Caller,
    ) -> Result<()> {
        let branch = self.branch()?;
        let dst = self.peek(new_parent, new_name).await;
        let node = dst.and_then(|ino| self.open_node(ino));
        let replaced = self
            .meta()
            .rename(
                branch,
                parent,
                name,
                new_parent,
                new_name,
                flags,
                node.as_ref().map(|_| self.holder.as_str()),
                caller,
                now_ns(),
            )
            .await?;
        if let (Some(n), Some(u)) = (node, replaced)
            && u.orphaned
        {
            n.orphan.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// `chmod`, `chown`, `truncate` and `utimensat` in one call; `fh`
    /// names the handle of an `ftruncate` (which needs no write
    /// permission beyond the handle's).
    pub async fn setattr(
        &self,
        ino: Ino,
        set: &SetAttrs,
        fh: Option<Fh>,
        caller: &Caller,
    ) -> Result<Attr> {
        let branch = self.branch()?;
        if let Some(n) = self.open_node(ino) {
            // A chmod may set the bits a write must clear again.
            n.no_setid
                .store(false, std::sync::atomic::Ordering::Release);
        }
        if let Some(size) = set.size {
            self.truncate(ino, size, fh, caller).await?;
        }
        let meta_set = SetAttr {
            mode: set.mode,
            uid: set.uid,
            gid: set.gid,
            atime: set.atime,
            mtime: set.mtime,
            written: set.size.is_some(),
        };
        let changes = meta_set != SetAttr::default();
        let seen = self.folds();
        let a = if changes {
            self.meta()
                .setattr(branch, ino, &meta_set, caller, now_ns())
                .await?
        } else {
            self.meta().getattr(self.view(), ino).await?
        };
        self.with_open_size(a, seen).await
    }

    async fn truncate(&self, ino: Ino, size: u64, fh: Option<Fh>, caller: &Caller) -> Result<()> {
        let a = self.meta().getattr(self.view(), ino).await?;
        match a.kind {
            NodeKind::File => {}
            NodeKind::Dir => return Err(err(errno::EISDIR, "truncate of a directory")),
            _ => return Err(err(errno::EINVAL, "truncate of a special file")),
        }
        let by_handle = match fh {
            Some(fh) => {
                let h = self.handle(fh)?;
                if !h.flags.write {
                    return Err(err(
                        errno::EINVAL,
                        "ftruncate of a handle not open for writing",
                    ));
                }
                true
            }
            None => false,
        };
        if !by_handle && !perm::may(caller, owned(&a), perm::W) {
            return Err(err(errno::EACCES, "write permission denied"));
        }
        let fh = self
            .open(ino, OpenFlags::read_write(), &Caller::root())
            .await?;
        let out = async {
            let node = self.handle(fh)?.node;
            let mut g = node.file.write().await;
            let f = live(&mut g)?;
            f.truncate(size).await?;
            f.sync().await?;
            Ok(())
        }
        .await;
        self.release(fh).await?;
        out
    }

    /// `open(ino, flags)` of a regular file.
    pub async fn open(&self, ino: Ino, flags: OpenFlags, caller: &Caller) -> Result<Fh> {
        let a = self.meta().getattr(self.view(), ino).await?;
        match a.kind {
            NodeKind::File => {}
            NodeKind::Dir if flags.write || flags.truncate => {
                return Err(err(errno::EISDIR, "a directory opens for reading only"));
            }
            NodeKind::Dir => return Err(err(errno::EISDIR, "use opendir for a directory")),
            NodeKind::Symlink => return Err(err(errno::ELOOP, "a symlink opens its target")),
            _ => {
                return Err(err(
                    errno::EOPNOTSUPP,
                    "special files open only through the kernel",
                ));
            }
        }
        let writes = flags.write || flags.truncate;
        let want = if flags.read { perm::R } else { 0 } | if writes { perm::W } else { 0 };
        if !perm::may(caller, owned(&a), want) {
            return Err(err(errno::EACCES, "permission denied"));
        }
        if writes {
            self.branch()?;
        }
        let node = self.attach(ino, writes).await?;
        let fh = {
            let mut s = self.state();
            s.next_fh += 1;
            let fh = s.next_fh;
            s.handles.insert(
                fh,
                Handle {
                    node: node.clone(),
                    flags,
                    caller: caller.clone(),
                },
            );
            fh
        };
        if flags.truncate && flags.write {
            let r = async {
                let mut g = node.file.write().await;
                let f = live(&mut g)?;
                if f.size() > 0 {
                    f.truncate(0).await?;
                }
                Ok::<_, FsError>(())
            }
            .await;
            if let Err(e) = r {
                self.release(fh).await?;
                return Err(e);
            }
            self.after_write(ino, caller, &a).await?;
        }
        Ok(fh)
    }

    /// The shared open node of `ino`, opened (or reopened for writing)
    /// as needed; counts one more handle.
    async fn attach(&self, ino: Ino, write: bool) -> Result<Arc<OpenNode>> {
        let _g = self.opening.lock().await;
        if let Some(node) = self.open_node(ino) {
            {
                let mut g = node.file.write().await;
                let f = live(&mut g)?;
                if write && !f.is_writer() {
                    let options = writer_options(&self.name_of(ino).await?);
                    let w = self.volume.open_id(ino, options).await?;
                    let old = std::mem::replace(f, w);
                    old.close().await?;
                }
            }
            let mut s = self.state();
            if let Some(e) = s.open.get_mut(&ino) {
                e.1 += 1;
            }
            s.lingering.remove(&ino);
            return Ok(node);
        }
        let options = if write {
            writer_options(&self.name_of(ino).await?)
        } else {
            OpenOptions::read()
        };
        let file = self.volume.open_id(ino, options).await?;
        Ok(self.insert_node(ino, file))
    }

    /// The open node of `ino`, just made with its write lease held by
    /// `holder` (nothing else can have it open yet).
    /// The caller holds `opening`.
    async fn attach_made(&self, ino: Ino, holder: String, name: &[u8]) -> Result<Arc<OpenNode>> {
        let options = writer_options(name);
        match self
            .volume
            .open_made_with(ino, holder.clone(), options)
            .await
        {
            Ok(file) => Ok(self.insert_node(ino, file)),
            Err(e) => {
                // Give the lease back, or the file stays unwritable until
                // it lapses.
                if let Some(b) = self.branch
                    && let Err(r) = self.meta().release_lease(b, ino, &holder).await
                {
                    tracing::warn!(error = %r, "releasing the lease of a new file failed");
                }
                Err(e.into())
            }
        }
    }

    fn insert_node(&self, ino: Ino, file: File) -> Arc<OpenNode> {
        let node = Arc::new(OpenNode {
            ino,
            file: RwLock::new(Some(file)),
            orphan: std::sync::atomic::AtomicBool::new(false),
            no_setid: std::sync::atomic::AtomicBool::new(false),
            unsynced: std::sync::atomic::AtomicI64::new(0),
        });
        self.state().open.insert(ino, (node.clone(), 1));
        node
    }

    /// `creat`/`open(O_CREAT)`: makes `parent/name` (unless it exists and
    /// `exclusive` is false) and opens it.
    pub async fn create(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        flags: OpenFlags,
        exclusive: bool,
        caller: &Caller,
    ) -> Result<(Attr, Fh)> {
        // A file made for writing takes its lease as it is made: one
        // transaction instead of two for `open(O_CREAT)`.
        let lease = flags.write.then(|| self.volume.new_file_lease());
        let new_lease = lease.as_ref().map(|(holder, expires_ms)| NewLease {
            holder,
            expires_ms: *expires_ms,
        });
        // Held from the making to the opening, so that a concurrent open
        // of the new name waits for this handle rather than meeting its
        // lease.
        let opening = self.opening.lock().await;
        let made = self
            .make(
                parent,
                name,
                NodeKind::File,
                mode,
                0,
                None,
                caller,
                new_lease,
            )
            .await;
        let made = match (made, lease) {
            (Ok(a), Some((holder, _))) => {
                let node = self.attach_made(a.ino, holder, name).await;
                drop(opening);
                node.map(|n| (a, n))
            }
            (Ok(a), None) => {
                drop(opening);
                self.attach(a.ino, false).await.map(|n| (a, n))
            }
            (Err(e), _) => {
                drop(opening);
                Err(e)
            }
        };
        match made {
            Ok((a, node)) => {
                // A new file: the creator may write it whatever its mode.
                let mut s = self.state();
                s.next_fh += 1;
                let fh = s.next_fh;
                s.handles.insert(
                    fh,
                    Handle {
                        node,
                        flags,
                        caller: caller.clone(),
                    },
                );
                Ok((a, fh))
            }
            Err(e) if e.errno() == errno::EEXIST && !exclusive => {
                let a = self.lookup(parent, name, caller).await?;
                if a.kind == NodeKind::Dir {
                    return Err(err(errno::EISDIR, "O_CREAT of a directory"));
                }
                let fh = self.open(a.ino, flags, caller).await?;
                Ok((self.getattr(a.ino).await?, fh))
            }
            Err(e) => Err(e),
        }
    }

    /// `pread`: up to `len` bytes at `offset`.
    pub async fn read(&self, fh: Fh, offset: u64, len: usize) -> Result<Vec<u8>> {
        let h = self.handle(fh)?;
        if !h.flags.read {
            return Err(err(errno::EBADF, "handle not open for reading"));
        }
        let g = h.node.file.read().await;
        Ok(live_ref(&g)?.read_at(offset, len).await?)
    }

    /// `pwrite` (with `O_APPEND`, at the end) by the process that opened
    /// the handle: returns the bytes written (see [`Fs::write_as`]).
    pub async fn write(&self, fh: Fh, offset: u64, data: &[u8]) -> Result<usize> {
        let h = self.handle(fh)?;
        self.write_as(fh, offset, data, &h.caller).await
    }

    /// `pwrite` by `caller`, which may differ from whoever opened the
    /// handle (a descriptor passed on, or credentials changed since): a
    /// write by a caller without root's privilege clears set-user-ID and
    /// set-group-ID, as the kernel decides by the writer's credentials.
    pub async fn write_as(
        &self,
        fh: Fh,
        offset: u64,
        data: &[u8],
        caller: &Caller,
    ) -> Result<usize> {
        let h = self.handle(fh)?;
        if !h.flags.write {
            return Err(err(errno::EBADF, "handle not open for writing"));
        }
        {
            let mut g = h.node.file.write().await;
            let f = live(&mut g)?;
            let at = if h.flags.append { f.size() } else { offset };
            if at.checked_add(data.len() as u64).is_none() {
                return Err(err(errno::EFBIG, "write past the largest offset"));
            }
            f.write_at(at, data).await?;
            self.note(&h.node, f);
            if self.dirty.load(std::sync::atomic::Ordering::Relaxed)
                > self.dirty_limit.load(std::sync::atomic::Ordering::Relaxed)
                && f.unsynced_bytes() > 0
            {
                // Back-pressure: the write that takes the total over the
                // limit waits for its own file's sync.
                f.sync().await?;
                self.note(&h.node, f);
            }
        }
        if !caller.is_root() && !h.node.no_setid.load(std::sync::atomic::Ordering::Acquire) {
            let a = self.meta().getattr(self.view(), h.node.ino).await?;
            if a.mode & 0o6000 == 0 {
                h.node
                    .no_setid
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            self.after_write(h.node.ino, caller, &a).await?;
        }
        Ok(data.len())
    }

    /// Drops set-user-ID and set-group-ID after a write by a non-root
    /// caller, as the kernel does.
    async fn after_write(&self, ino: Ino, caller: &Caller, a: &Attr) -> Result<()> {
        if perm::after_write(caller, a.mode) != a.mode {
            let set = SetAttr {
                written: true,
                ..SetAttr::default()
            };
            self.meta()
                .setattr(self.branch()?, ino, &set, caller, now_ns())
                .await?;
        }
        Ok(())
    }

    /// `fsync`/`fdatasync`: the handle's file's writes, and every change
    /// of the tree made before, are durable when this returns (a local
    /// disk promises less: the file's own name only after `fsync` of its
    /// directory).
    pub async fn fsync(&self, fh: Fh) -> Result<()> {
        self.sync_data(fh).await?;
        self.sync_tree().await
    }

    /// The handle's file's writes are durable when this returns.
    async fn sync_data(&self, fh: Fh) -> Result<()> {
        let h = self.handle(fh)?;
        let mut g = h.node.file.write().await;
        let f = live(&mut g)?;
        if f.is_writer() {
            f.sync().await?;
            self.note(&h.node, f);
        }
        Ok(())
    }

    /// Whether every change of the tree is durable when its call returns
    /// (`true`, the default), or committed at once — seen by every later
    /// call and every other session, kept through a crash of this process
    /// — and durable at the next [`Fs::fsync`] of any file,
    /// [`Fs::sync_tree`], durable sync of written data, or close of this
    /// file system (`false`: what a local disk does, one disk flush for
    /// many changes instead of one each).
    pub fn set_dirsync(&self, on: bool) {
        self.meta().defer_durability(!on);
    }

    /// `fsyncdir` and `syncfs`: every change of the tree made so far is
    /// durable when this returns (nothing to do under
    /// [`Fs::set_dirsync`]`(true)`).
    pub async fn sync_tree(&self) -> Result<()> {
        Ok(self.meta().barrier().await?)
    }

    /// Whether some change of the tree is committed but not durable yet
    /// (see [`Fs::set_dirsync`]).
    pub fn tree_sync_pending(&self) -> bool {
        self.meta().durability_pending()
    }

    /// Limits the unsynced bytes all open files buffer together: past
    /// `bytes`, a write syncs its own file before it returns, so memory
    /// stays bounded however many files are open (each file also syncs on
    /// its own past the volume's `max_buffer_bytes`).
    pub fn set_dirty_limit(&self, bytes: u64) {
        self.dirty_limit.store(
            i64::try_from(bytes).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Unsynced bytes buffered by all open files, as last noted.
    pub fn dirty_bytes(&self) -> u64 {
        u64::try_from(self.dirty.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0)
    }

    /// Brings the total of unsynced bytes up to date with `f`, the file of
    /// `node` (called with its lock held, after a change).
    fn note(&self, node: &OpenNode, f: &File) {
        let now = i64::try_from(f.unsynced_bytes()).unwrap_or(i64::MAX);
        let before = node
            .unsynced
            .swap(now, std::sync::atomic::Ordering::Relaxed);
        self.dirty
            .fetch_add(now - before, std::sync::atomic::Ordering::Relaxed);
    }

    /// `flush` (every `close(2)` of a descriptor): the file's writes are
    /// durable, so a file closed is seen whole by the next open anywhere;
    /// a close is no barrier for the tree (see [`Fs::set_dirsync`]).
    pub async fn flush(&self, fh: Fh) -> Result<()> {
        self.sync_data(fh).await
    }

    /// Closes a handle; the last handle of an inode closes its file
    /// (durably), and drops an orphan's data.
    pub async fn release(&self, fh: Fh) -> Result<()> {
        let g = self.opening.lock().await;
        let node = {
            let mut s = self.state();
            let Some(h) = s.handles.remove(&fh) else {
                return Err(err(errno::EBADF, format!("no open handle {fh}")));
            };
            let ino = h.node.ino;
            let last = match s.open.get_mut(&ino) {
                Some(e) if e.1 > 1 => {
                    e.1 -= 1;
                    false
                }
                _ => true,
            };
            if !last {
                return Ok(());
            }
            h.node
        };
        if self.linger(&node).await {
            return Ok(());
        }
        self.state().open.remove(&node.ino);
        let closed = self.close_node(&node).await;
        drop(g);
        closed
    }

    /// Keeps `node`, whose last handle just closed, open for a while if it
    /// is a journaled writer's: synced (the close is durable), lease held,
    /// handle count 0. The caller holds `opening`.
    async fn linger(&self, node: &Arc<OpenNode>) -> bool {
        if node.orphan.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        {
            let mut g = node.file.write().await;
            let Some(f) = g.as_mut() else {
                return false;
            };
            if !(f.has_journal() && f.is_writer()) {
                return false;
            }
            // A failed sync closes it now instead: the close syncs again
            // and reports the failure.
            if let Err(e) = f.sync().await {
                tracing::warn!(ino = node.ino, error = %e, "syncing a journaled file at its last close failed");
                return false;
            }
            self.note(node, f);
        }
        let mut s = self.state();
        if let Some(e) = s.open.get_mut(&node.ino) {
            e.1 = 0;
        }
        s.lingering
            .insert(node.ino, now_ns() / 1_000_000 + LINGER_MS);
        true
    }

    /// Closes (folds) the journaled files that stayed open after their
    /// last close and were not reopened for a while; `all`: every one of
    /// them. The mount's background work calls it every few seconds.
    pub async fn close_idle_journals(&self, all: bool) -> Result<()> {
        let g = self.opening.lock().await;
        let now = now_ns() / 1_000_000;
        let due: Vec<Arc<OpenNode>> = {
            let mut s = self.state();
            let inos: Vec<Ino> = s
                .lingering
                .iter()
                .filter(|&(_, &until)| all || until <= now)
                .map(|(&ino, _)| ino)
                .collect();
            let mut due = Vec::new();
            for ino in inos {
                s.lingering.remove(&ino);
                if let Some((node, 0)) = s.open.get(&ino).map(|(n, c)| (n.clone(), *c)) {
                    s.open.remove(&ino);
                    due.push(node);
                }
            }
            due
        };
        let mut first = None;
        for node in due {
            if let Err(e) = self.close_node(&node).await {
                first.get_or_insert(e);
            }
        }
        drop(g);
        first.map_or(Ok(()), Err)
    }

    /// Closes `node`'s file (durably), dropping an orphan's data; the
    /// node is out of the table already. The caller holds `opening`.
    async fn close_node(&self, node: &Arc<OpenNode>) -> Result<()> {
        let closed = async {
            let orphan = node.orphan.load(std::sync::atomic::Ordering::SeqCst);
            let file = node.file.write().await.take();
            let gone = node.unsynced.swap(0, std::sync::atomic::Ordering::Relaxed);
            self.dirty
                .fetch_sub(gone, std::sync::atomic::Ordering::Relaxed);
            if let Some(f) = file {
                f.close().await?;
            }
            if orphan && let Some(b) = self.branch {
                self.meta().forget_orphan(b, node.ino, now_ns()).await?;
            }
            Ok(())
        }
        .await;
        // Counted before the lock goes: a reader that read the metadata
        // before this fold and finds no journal after it reads again.
        self.folds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        closed
    }

    /// `opendir`: checks that `caller` may read directory `ino`.
    pub async fn opendir(&self, ino: Ino, caller: &Caller) -> Result<()> {
        let a = self.meta().getattr(self.view(), ino).await?;
        if a.kind != NodeKind::Dir {
            return Err(err(errno::ENOTDIR, "not a directory"));
        }
        if !perm::may(caller, owned(&a), perm::R) {
            return Err(err(errno::EACCES, "read permission denied"));
        }
        Ok(())
    }

    /// Up to `limit` entries of directory `ino` after the name `after`
    /// (`.` and `..` not included: the caller adds them), by name bytes.
    pub async fn readdir(
        &self,
        ino: Ino,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<DirEntry>> {
        Ok(self.meta().readdir(self.view(), ino, after, limit).await?)
    }

    /// `readdirplus`: [`Fs::readdir`] with each entry's attributes (an
    /// open file's size as its handles see it), in one metadata read.
    pub async fn readdir_plus(
        &self,
        ino: Ino,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        let mut out = Vec::new();
        let seen = self.folds();
        for (e, a) in self
            .meta()
            .readdir_plus(self.view(), ino, after, limit)
            .await?
        {
            out.push((e, self.with_open_size(a, seen).await?));
        }
        Ok(out)
    }

    /// `lseek(SEEK_DATA | SEEK_HOLE)`: `ENXIO` past the end.
    pub async fn lseek(&self, fh: Fh, offset: u64, whence: Whence) -> Result<u64> {
        let h = self.handle(fh)?;
        let mut g = h.node.file.write().await;
        let f = live(&mut g)?;
        let seek = match whence {
            Whence::Data => fsx_engine::sparse::Seek::Data,
            Whence::Hole => fsx_engine::sparse::Seek::Hole,
        };
        f.seek(offset, seek)
            .await?
            .ok_or_else(|| err(errno::ENXIO, "no data or hole past the offset"))
    }

    /// `fallocate(fh, mode, offset, len)`: `keep_size` leaves the size
    /// alone; `punch_hole` (with `keep_size`) makes the range a hole.
    pub async fn fallocate(
        &self,
        fh: Fh,
        offset: u64,
        len: u64,
        keep_size: bool,
        punch_hole: bool,
    ) -> Result<()> {
        let h = self.handle(fh)?;
        if !h.flags.write {
            return Err(err(errno::EBADF, "handle not open for writing"));
        }
        if len == 0 {
            return Err(err(errno::EINVAL, "fallocate of nothing"));
        }
        if punch_hole && !keep_size {
            return Err(err(errno::EOPNOTSUPP, "PUNCH_HOLE needs KEEP_SIZE"));
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| err(errno::EFBIG, "range past the largest offset"))?;
        let mut g = h.node.file.write().await;
        let f = live(&mut g)?;
        if punch_hole {
            f.punch_hole(offset, len).await?;
        } else if !keep_size && end > f.size() {
            f.truncate(end).await?;
        } else {
            return Ok(());
        }
        // The change shows in mtime and ctime at once, as on a disk
        // (times follow a file's writes when they become durable).
        f.sync().await?;
        Ok(())
    }

    /// `copy_file_range`: copies up to `len` bytes from `fh_in` at
    /// `off_in` to `fh_out` at `off_out` (fewer at the end of the source),
    /// returning how many. Whole extents that both offsets align to, and
    /// that the source holds packed, are shared rather than copied (a
    /// clone: a map entry, no bytes moved); the rest is copied.
    pub async fn copy_file_range(
        &self,
        fh_in: Fh,
        off_in: u64,
        fh_out: Fh,
        off_out: u64,
        len: u64,
    ) -> Result<u64> {
        let (src, dst) = (self.handle(fh_in)?, self.handle(fh_out)?);
        if !src.flags.read || !dst.flags.write {
            return Err(err(
                errno::EBADF,
                "copy_file_range needs a readable source and a writable destination",
            ));
        }
        if dst.flags.append {
            return Err(err(errno::EBADF, "copy_file_range into an O_APPEND handle"));
        }
        let same = src.node.ino == dst.node.ino;
        let src_size = {
            let mut g = src.node.file.write().await;
            let f = live(&mut g)?;
            if f.is_writer() {
                // What is cloned must be what the metadata says.
                f.sync().await?;
            }
            f.size()
        };
        // Clamped to the source first, then checked for overlap, as the
        // kernel does.
        let len = len.min(src_size.saturating_sub(off_in));
        if same && len > 0 && off_in < off_out.saturating_add(len) && off_out < off_in + len {
            return Err(err(errno::EINVAL, "overlapping ranges of one file"));
        }
        let extent = u64::from(self.volume.config().extent_size);
        let (page_in, page_out, dst_journal) = {
            let gi = src.node.file.write().await;
            let pi = live_ref(&gi)?.page_size();
            drop(gi);
            let go = dst.node.file.write().await;
            let f = live_ref(&go)?;
            (pi, f.page_size(), f.has_journal())
        };
        let ppe = extent / u64::from(page_in);
        let mut done = 0u64;
        while done < len {
            let (at_in, at_out) = (off_in + done, off_out + done);
            let rest = len - done;
            // A journaled file holds bytes, not extents: copied.
            let aligned = !same
                && !dst_journal
                && page_in == page_out
                && at_in.is_multiple_of(extent)
                && at_out.is_multiple_of(extent)
                && rest >= extent;
            if aligned {
                let idx = at_in / extent;
                let map = self
                    .meta()
                    .read_map(self.view(), src.node.ino, idx * ppe, ppe, ppe)
                    .await?;
                let key = map
                    .extents
                    .iter()
                    .find(|(i, _)| *i == idx)
                    .map(|(_, k)| k.clone());
                if let (Some(key), true) = (key, map.dirty.is_empty()) {
                    let mut g = dst.node.file.write().await;
                    live(&mut g)?.clone_extent(at_out / extent, &key).await?;
                    done += extent;
                    continue;
                }
            }
            // Bytes, up to the next extent boundary of the source.
            let step = rest.min(extent - at_in % extent).min(1 << 20);
            let data = {
                let g = src.node.file.read().await;
                live_ref(&g)?.read_at(at_in, step as usize).await?
            };
            if data.is_empty() {
                break;
            }
            let mut g = dst.node.file.write().await;
            let f = live(&mut g)?;
            f.write_at(at_out, &data).await?;
            self.note(&dst.node, f);
            done += data.len() as u64;
        }
        if !dst.caller.is_root() && done > 0 {
            let a = self.meta().getattr(self.view(), dst.node.ino).await?;
            self.after_write(dst.node.ino, &dst.caller, &a).await?;
        }
        Ok(done)
    }

    /// `getxattr`.
    pub async fn getxattr(&self, ino: Ino, name: &[u8], caller: &Caller) -> Result<Bytes> {
        Ok(self.meta().getxattr(self.view(), ino, name, caller).await?)
    }

    /// `listxattr`: the names the caller may see.
    pub async fn listxattr(&self, ino: Ino, caller: &Caller) -> Result<Vec<Bytes>> {
        Ok(self.meta().listxattr(self.view(), ino, caller).await?)
    }

    /// `setxattr` with `XATTR_CREATE` / `XATTR_REPLACE`.
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        create: bool,
        replace: bool,
        caller: &Caller,
    ) -> Result<()> {
        Ok(self
            .meta()
            .setxattr(
                self.branch()?,
                ino,
                name,
                Some(value),
                create,
                replace,
                caller,
                now_ns(),
            )
            .await?)
    }

    /// `removexattr`.
    pub async fn removexattr(&self, ino: Ino, name: &[u8], caller: &Caller) -> Result<()> {
        Ok(self
            .meta()
            .setxattr(
                self.branch()?,
                ino,
                name,
                None,
                false,
                false,
                caller,
                now_ns(),
            )
            .await?)
    }

    /// Closes every open handle (durably), drops this session's locks and
    /// makes every change of the tree durable: what unmounting does.
    pub async fn close_all(&self) -> Result<()> {
        // A release under way (its handle already gone from the table)
        // finishes before this returns.
        drop(self.opening.lock().await);
        let fhs: Vec<Fh> = self.state().handles.keys().copied().collect();
        let mut first = None;
        for fh in fhs {
            if let Err(e) = self.release(fh).await {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.close_idle_journals(true).await {
            first.get_or_insert(e);
        }
        if let Err(e) = self.meta().release_locks(&self.holder, None, None).await {
            first.get_or_insert(e.into());
        }
        if let Err(e) = self.sync_tree().await {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    fn byte_lock(&self, ino: Ino, lock: &LockRange) -> Result<ByteLock> {
        Ok(ByteLock {
            branch: self.branch()?,
            ino,
            kind: lock.kind,
            holder: self.holder.clone(),
            owner: lock.owner,
            start: lock.start,
            stop: lock.stop,
            exclusive: lock.exclusive,
        })
    }

    /// `F_SETLK` / `flock(LOCK_NB)`: takes `lock` on `ino`, or fails with
    /// `EAGAIN` while another owner holds a conflicting one. A conflict
    /// held by a session that is gone is dropped, and the lock taken.
    pub async fn setlk(&self, ino: Ino, lock: &LockRange) -> Result<()> {
        let req = self.byte_lock(ino, lock)?;
        loop {
            match self.meta().set_lock(&req).await? {
                None => return Ok(()),
                Some(c) if c.holder != self.holder && self.volume.holder_is_dead(&c.holder) => {
                    tracing::info!(holder = %c.holder, "dropping the locks of a session that is gone");
                    self.meta().release_locks(&c.holder, None, None).await?;
                }
                Some(c) => {
                    return Err(err(
                        errno::EAGAIN,
                        format!(
                            "bytes {}..{} are locked by another owner",
                            c.start,
                            if c.stop == u64::MAX {
                                "end".to_string()
                            } else {
                                c.stop.to_string()
                            }
                        ),
                    ));
                }
            }
        }
    }

    /// `F_UNLCK` / `flock(LOCK_UN)` of `lock`'s range.
    pub async fn unlock(&self, ino: Ino, lock: &LockRange) -> Result<()> {
        let req = self.byte_lock(ino, lock)?;
        Ok(self.meta().unlock(&req).await?)
    }

    /// `F_GETLK`: a lock of another owner that conflicts with `lock`.
    pub async fn getlk(&self, ino: Ino, lock: &LockRange) -> Result<Option<LockRange>> {
        let req = self.byte_lock(ino, lock)?;
        Ok(self.meta().test_lock(&req).await?.map(|c| LockRange {
            kind: c.kind,
            owner: c.owner,
            start: c.start,
            stop: c.stop,
            exclusive: c.exclusive,
        }))
    }

    /// Drops `owner`'s locks of `kind` on `ino` (POSIX: any close of the
    /// file by the owning process; `flock`: the release of its open file
    /// description).
    pub async fn unlock_owner(&self, ino: Ino, kind: LockKind, owner: u64) -> Result<()> {
        Ok(self
            .meta()
            .release_locks(&self.holder, Some(ino), Some((kind, owner)))
            .await?)
    }

    /// Renews the write leases of the files open for writing whose lease
    /// is half gone (see [`File::renew_lease`]); a daemon calls this
    /// periodically. Returns how many files it looked at.
    pub async fn renew_leases(&self) -> Result<usize> {
        let nodes: Vec<Arc<OpenNode>> =
            self.state().open.values().map(|(n, _)| n.clone()).collect();
        for n in &nodes {
            let mut g = n.file.write().await;
            if let Some(f) = g.as_mut() {
                f.renew_lease().await?;
            }
        }
        Ok(nodes.len())
    }

    /// `statfs`: the volume's `fs.capacity_bytes` setting (default 1 PiB)
    /// as the size, used bytes as its extents store them (compressed,
    /// shared by branches counted once); inodes are not limited.
    pub async fn statfs(&self) -> Result<StatFs> {
        let meta = self.meta();
        let capacity = self.volume.capacity_bytes();
        let totals = meta.extent_totals().await?;
        let used = totals.bytes;
        Ok(StatFs {
            block_size: PAGE_SIZE,
            blocks: capacity / u64::from(PAGE_SIZE),
            blocks_free: capacity.saturating_sub(used) / u64::from(PAGE_SIZE),
            files: u64::MAX >> 1,
            files_free: u64::MAX >> 1,
            name_max: fsx_meta::names::NAME_MAX as u32,
        })
    }
}
