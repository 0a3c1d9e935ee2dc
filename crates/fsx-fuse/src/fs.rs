//! [`FsxFuse`]: the kernel's requests, each answered by one call of
//! [`fsx_posix::Fs`] on a task of the daemon's runtime.
//!
//! Invariants: every method moves its reply into exactly one task (or
//! answers at once), so each request is answered once; no `std` mutex is
//! held across an await.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use fsx_meta::perm;
use fsx_posix::{
    Attr, Caller, DirEntry, Fs, FsError, Ino, LockKind, LockRange, NodeKind, OpenFlags,
    RenameFlags, SetAttrs, SetTime, Whence, errno,
};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, Notifier, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl,
    ReplyLock, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use tokio::runtime::Handle;

use crate::attr::{Inodes, caller, file_attr, file_type, kind_of_mode, ns};

/// Entries a directory read fetches from the metadata at once; what the
/// kernel's buffer does not take waits in the handle for the next read.
const DIR_BATCH: usize = 256;

/// The largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;

/// How much the kernel reads ahead of a sequential reader.
const MAX_READAHEAD: u32 = 1 << 20;

/// A blocking `F_SETLKW` asks again this often while the lock is held
/// elsewhere (the holder may be another mount, which cannot wake us).
const LOCK_RETRY_MAX: Duration = Duration::from_millis(50);

/// Directory entries fetched (with their attributes for readdirplus).
type Fetched = Vec<(DirEntry, Option<Attr>)>;

/// An open directory: where each offset the kernel was given resumes,
/// and entries fetched but not yet sent.
#[derive(Default)]
struct DirCursor {
    /// Offset → the name of the entry at that offset (a read at that
    /// offset continues after it).
    by_offset: BTreeMap<u64, Vec<u8>>,
    /// The next offset to hand out (1 and 2 are `.` and `..`).
    next: u64,
    /// Entries fetched after offset `.0`, not sent yet.
    pending: Option<(u64, Fetched)>,
}

/// When this mount last saw a file's contents change: its mtime, ctime and
/// size at the last open or close here.
type Stamp = (i64, i64, u64);

struct Inner {
    fs: Fs,
    inodes: Inodes,
    attr_ttl: Duration,
    entry_ttl: Duration,
    read_only: bool,
    dirs: Mutex<HashMap<u64, Arc<Mutex<DirCursor>>>>,
    next_dir: AtomicU64,
    seen: Mutex<HashMap<Ino, Stamp>>,
    notifier: OnceLock<Notifier>,
    /// Some POSIX lock was taken through this mount, so closes must drop
    /// their owner's locks.
    locks_used: AtomicBool,
}

/// The FUSE file system of one [`Fs`].
pub struct FsxFuse {
    inner: Arc<Inner>,
    rt: Handle,
}

impl std::fmt::Debug for FsxFuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsxFuse")
            .field("fs", &self.inner.fs)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of these tables is one step: a panic elsewhere leaves
    // them consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The errno of `e`, logged when it is the volume's fault rather than the
/// caller's.
fn errno_of(op: &str, e: &FsError) -> Errno {
    let n = e.errno();
    if n == errno::EIO {
        tracing::warn!(op, error = %e, "request failed");
    } else {
        tracing::debug!(op, errno = n, error = %e, "request refused");
    }
    Errno::from_i32(n)
}

fn stamp(a: &Attr) -> Stamp {
    (a.mtime_ns, a.ctime_ns, a.size)
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(ns(t)),
    }
}

fn open_flags(flags: i32) -> OpenFlags {
    let acc = flags & libc::O_ACCMODE;
    OpenFlags {
        read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
        write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
        append: flags & libc::O_APPEND != 0,
        // The kernel truncates with a separate setattr after the open.
        truncate: false,
    }
}

/// A lock request in the kernel's terms (inclusive end, `OFFSET_MAX` for
/// "to the end") in the library's (exclusive stop, `u64::MAX`).
fn lock_range(owner: LockOwner, start: u64, end: u64, typ: i32) -> LockRange {
    LockRange {
        kind: LockKind::Posix,
        owner: owner.0,
        start,
        stop: if end >= i64::MAX as u64 {
            u64::MAX
        } else {
            end + 1
        },
        exclusive: typ == libc::F_WRLCK,
    }
}

impl FsxFuse {
    /// The FUSE file system of `fs`, answering on runtime `rt`.
    pub fn new(
        fs: Fs,
        rt: Handle,
        attr_ttl: Duration,
        entry_ttl: Duration,
        read_only: bool,
    ) -> Self {
        let inodes = Inodes::new(fs.root());
        // The library refuses every change of a read-only view itself.
        let fs = if read_only { fs.read_only() } else { fs };
        let read_only = fs.is_read_only();
        Self {
            inner: Arc::new(Inner {
                fs,
                inodes,
                attr_ttl,
                entry_ttl,
                read_only,
                dirs: Mutex::new(HashMap::new()),
                next_dir: AtomicU64::new(1),
                seen: Mutex::new(HashMap::new()),
                notifier: OnceLock::new(),
                locks_used: AtomicBool::new(false),
            }),
            rt,
        }
    }

    /// A handle on the same file system, to flush and close it once the
    /// session has ended.
    pub fn shared(&self) -> Arc<dyn SharedFs> {
        self.inner.clone()
    }

    /// Answers a request: polled once here, on the FUSE thread, and
    /// handed to the runtime only if it must wait. With SQLite metadata a
    /// tree request completes in that poll (the engine answers every
    /// statement at once), and hopping to a runtime worker and back
    /// would cost more than the request itself; whatever waits for I/O
    /// (the store, PostgreSQL, a lock) goes on waiting on the runtime, so
    /// nothing waits here.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, f: F) {
        let mut f = Box::pin(f);
        let _in_runtime = self.rt.enter();
        // The runtime polls a spawned task at once, so the waker this poll
        // leaves behind is replaced before anything could need it.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if f.as_mut().poll(&mut cx).is_pending() {
            self.rt.spawn(f);
        }
    }
}

/// What outlives the session: the file system, to close it, and the
/// channel for telling the kernel to drop its caches.
pub trait SharedFs: Send + Sync {
    /// The file system.
    fn fs(&self) -> &Fs;
    /// Hands over the session's notifier (once the session is up).
    fn set_notifier(&self, n: Notifier);
    /// Makes the kernel forget what `drops` name (see [`crate::follow`]).
    /// Blocks on the kernel: call it on a blocking thread.
    fn forget(&self, drops: &[crate::follow::Forget]);
}

impl SharedFs for Inner {
    fn fs(&self) -> &Fs {
        &self.fs
    }

    fn set_notifier(&self, n: Notifier) {
        let _ = self.notifier.set(n);
    }

    fn forget(&self, drops: &[crate::follow::Forget]) {
        use crate::follow::Forget;
        let Some(n) = self.notifier.get() else {
            return;
        };
        // ENOENT: the kernel holds nothing of it, which is fine.
        let report = |r: std::io::Result<()>| {
            if let Err(e) = r
                && e.raw_os_error() != Some(libc::ENOENT)
            {
                tracing::debug!(error = %e, "dropping a kernel cache failed");
            }
        };
        for d in drops {
            match d {
                Forget::Entry(parent, name) => {
                    report(n.inval_entry(self.inodes.to_kernel(*parent), OsStr::from_bytes(name)))
                }
                // Offset -1: attributes only.
                Forget::Attrs(ino) => report(n.inval_inode(self.inodes.to_kernel(*ino), -1, 0)),
                Forget::Pages(ino) => report(n.inval_inode(self.inodes.to_kernel(*ino), 0, 0)),
                Forget::Everything => {
                    let mut inos: Vec<Ino> = lock(&self.seen).keys().copied().collect();
                    inos.push(self.inodes.to_fs(INodeNo(1)));
                    for ino in inos {
                        report(n.inval_inode(self.inodes.to_kernel(ino), 0, 0));
                    }
                }
            }
        }
    }
}

impl Inner {
    fn attr(&self, a: &Attr) -> fuser::FileAttr {
        file_attr(&self.inodes, a)
    }

    fn ino(&self, ino: INodeNo) -> Ino {
        self.inodes.to_fs(ino)
    }

    fn entry(&self, reply: ReplyEntry, r: Result<Attr, FsError>, op: &str) {
        match r {
            Ok(a) => reply.entry_with_ttls(
                &self.attr_ttl,
                &self.entry_ttl,
                &self.attr(&a),
                Generation(0),
            ),
            Err(e) => reply.error(errno_of(op, &e)),
        }
    }

    /// Whether the kernel may keep its cached pages of `ino` (it has not
    /// changed since this mount last saw it); if it changed, the kernel's
    /// attributes are dropped too, so its size is read again.
    fn may_keep_cache(&self, a: &Attr) -> bool {
        let now = stamp(a);
        let before = lock(&self.seen).insert(a.ino, now);
        match before {
            Some(b) if b == now => true,
            Some(_) => {
                if let Some(n) = self.notifier.get() {
                    // Offset -1: attributes only; the pages go with the
                    // open (no FOPEN_KEEP_CACHE).
                    if let Err(e) = n.inval_inode(self.inodes.to_kernel(a.ino), -1, 0) {
                        tracing::debug!(error = %e, "dropping the kernel's attributes failed");
                    }
                }
                false
            }
            None => false,
        }
    }

    fn remember(&self, a: &Attr) {
        lock(&self.seen).insert(a.ino, stamp(a));
    }

    /// Reads a directory from `offset`: `.`, `..`, then the entries,
    /// `plus` with their attributes. `add` returns true once the kernel's
    /// buffer is full.
    async fn read_dir(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(u64, &DirEntry, Option<&Attr>) -> bool,
    ) -> Result<(), FsError> {
        let cursor = lock(&self.dirs)
            .get(&fh)
            .cloned()
            .ok_or_else(|| FsError::new(errno::EBADF, "directory not open"))?;
        let dir_attr = if plus && offset < 2 {
            Some(self.fs.getattr(ino).await?)
        } else {
            None
        };
        let dot = |name: &'static [u8]| DirEntry {
            name: bytes_of(name),
            ino,
            kind: NodeKind::Dir,
        };
        if offset == 0 && add(1, &dot(b"."), dir_attr.as_ref()) {
            return Ok(());
        }
        if offset <= 1 && add(2, &dot(b".."), dir_attr.as_ref()) {
            return Ok(());
        }
        let mut at = offset.max(2);
        loop {
            let (after, pending) = {
                let mut c = lock(&cursor);
                if c.next < 3 {
                    c.next = 3;
                }
                let pending = match c.pending.take() {
                    Some((from, list)) if from == at => Some(list),
                    _ => None,
                };
                let after = if at <= 2 {
                    None
                } else {
                    match c.by_offset.get(&at) {
                        Some(name) => Some(name.clone()),
                        // An offset this handle never gave: past the end.
                        None => return Ok(()),
                    }
                };
                (after, pending)
            };
            let list = match pending {
                Some(l) => l,
                None if plus => self
                    .fs
                    .readdir_plus(ino, after.as_deref(), DIR_BATCH)
                    .await?
                    .into_iter()
                    .map(|(e, a)| (e, Some(a)))
                    .collect(),
                None => self
                    .fs
                    .readdir(ino, after.as_deref(), DIR_BATCH)
                    .await?
                    .into_iter()
                    .map(|e| (e, None))
                    .collect(),
            };
            if list.is_empty() {
                return Ok(());
            }
            let mut c = lock(&cursor);
            let mut it = list.into_iter();
            while let Some((e, a)) = it.next() {
                let off = c.next;
                if add(off, &e, a.as_ref()) {
                    let mut rest = vec![(e, a)];
                    rest.extend(it);
                    c.pending = Some((at, rest));
                    return Ok(());
                }
                c.next += 1;
                c.by_offset.insert(off, e.name.to_vec());
                at = off;
            }
        }
    }
}

fn bytes_of(b: &'static [u8]) -> bytes::Bytes {
    bytes::Bytes::from_static(b)
}

impl Filesystem for FsxFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut want = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_AUTO_INVAL_DATA
            | InitFlags::FUSE_CACHE_SYMLINKS
            // Writes clear set-user-ID and set-group-ID here, by the
            // writer's credentials (the kernel would chmod as the writer,
            // which a non-owner may not).
            | InitFlags::FUSE_HANDLE_KILLPRIV;
        if !self.inner.read_only {
            want |= InitFlags::FUSE_POSIX_LOCKS;
        }
        let offered = config.capabilities();
        if let Err(missing) = config.add_capabilities(want & offered) {
            tracing::debug!(?missing, "kernel lacks some FUSE capabilities");
        }
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_readahead(MAX_READAHEAD);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            let r = i.fs.lookup(i.ino(parent), &name, &who).await;
            i.entry(reply, r, "lookup");
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let i = self.inner.clone();
        self.spawn(async move {
            match i.fs.getattr(i.ino(ino)).await {
                Ok(a) => reply.attr(&i.attr_ttl, &i.attr(&a)),
                Err(e) => reply.error(errno_of("getattr", &e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let set = SetAttrs {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
        };
        self.spawn(async move {
            let r = i.fs.setattr(i.ino(ino), &set, fh.map(|f| f.0), &who).await;
            match r {
                Ok(a) => {
                    if size.is_some() {
                        i.remember(&a);
                    }
                    reply.attr(&i.attr_ttl, &i.attr(&a))
                }
                Err(e) => reply.error(errno_of("setattr", &e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let i = self.inner.clone();
        self.spawn(async move {
            match i.fs.readlink(i.ino(ino)).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno_of("readlink", &e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            let r = async {
                let kind = kind_of_mode(mode)
                    .ok_or_else(|| FsError::new(errno::EINVAL, "unknown file type"))?;
                i.fs.mknod(
                    i.ino(parent),
                    &name,
                    kind,
                    mode & 0o7777,
                    u64::from(rdev),
                    &who,
                )
                .await
            }
            .await;
            i.entry(reply, r, "mknod");
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            let r = i.fs.mkdir(i.ino(parent), &name, mode & 0o7777, &who).await;
            i.entry(reply, r, "mkdir");
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            let r = i.fs.unlink(i.ino(parent), &name, &who).await;
            done(reply, r, "unlink");
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            let r = i.fs.rmdir(i.ino(parent), &name, &who).await;
            done(reply, r, "rmdir");
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let name = link_name.as_bytes().to_vec();
        let target = target.as_os_str().as_bytes().to_vec();
        self.spawn(async move {
            let r = i.fs.symlink(i.ino(parent), &name, &target, &who).await;
            i.entry(reply, r, "symlink");
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        let newname = newname.as_bytes().to_vec();
        let bits = flags.bits();
        self.spawn(async move {
            let r = async {
                let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
                if bits & !known != 0 {
                    return Err(FsError::new(
                        errno::EINVAL,
                        "only RENAME_NOREPLACE and RENAME_EXCHANGE are supported",
                    ));
                }
                let flags = RenameFlags {
                    no_replace: bits & libc::RENAME_NOREPLACE != 0,
                    exchange: bits & libc::RENAME_EXCHANGE != 0,
                };
                i.fs.rename(
                    i.ino(parent),
                    &name,
                    i.ino(newparent),
                    &newname,
                    flags,
                    &who,
                )
                .await
            }
            .await;
            done(reply, r, "rename");
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let name = newname.as_bytes().to_vec();
        self.spawn(async move {
            let r = i.fs.link(i.ino(ino), i.ino(newparent), &name, &who).await;
            i.entry(reply, r, "link");
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        let i = self.inner.clone();
        let who = who(req);
        let flags = open_flags(flags.0);
        self.spawn(async move {
            let r = async {
                let ino = i.ino(ino);
                let fh = i.fs.open(ino, flags, &who).await?;
                match i.fs.getattr(ino).await {
                    Ok(a) => Ok((fh, i.may_keep_cache(&a))),
                    Err(e) => {
                        let _ = i.fs.release(fh).await;
                        Err(e)
                    }
                }
            }
            .await;
            match r {
                Ok((fh, keep)) => reply.opened(
                    FileHandle(fh),
                    if keep {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    },
                ),
                Err(e) => reply.error(errno_of("open", &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            match i.fs.read(fh.0, offset, size as usize).await {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno_of("read", &e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let i = self.inner.clone();
        // A write from the page cache (mmap) carries no process: the
        // kernel already cleared set-id bits when the page was dirtied.
        let who = if req.pid() == 0 {
            Caller::root()
        } else {
            who(req)
        };
        let data = data.to_vec();
        self.spawn(async move {
            match i.fs.write_as(fh.0, offset, &data, &who).await {
                Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => reply.error(errno_of("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            let r = async {
                i.fs.flush(fh.0).await?;
                // A close by a process drops every POSIX lock it holds on
                // the file, whichever descriptor took them.
                if i.locks_used.load(Ordering::Relaxed) {
                    i.fs.unlock_owner(i.ino(ino), LockKind::Posix, lock_owner.0)
                        .await?;
                }
                Ok::<_, FsError>(())
            }
            .await;
            done(reply, r, "flush");
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: fuser::OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        let wrote = open_flags(flags.0).write;
        // The kernel holds the inode until this reply, and nobody waits
        // for it (`close(2)` returned after `flush` made the writes
        // durable): answer first, so an unlinked file's inode goes at
        // once, and close the handle behind it.
        reply.ok();
        self.spawn(async move {
            match i.fs.release(fh.0).await {
                Ok(()) => {
                    if wrote && let Ok(a) = i.fs.getattr(i.ino(ino)).await {
                        // What this mount wrote went through the kernel's
                        // cache: the next open here may keep it.
                        i.remember(&a);
                    }
                }
                Err(e) => {
                    errno_of("release", &e);
                }
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            match i.fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno_of("fsync", &e)),
            }
        });
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: fuser::OpenFlags, reply: ReplyOpen) {
        let i = self.inner.clone();
        let who = who(req);
        self.spawn(async move {
            match i.fs.opendir(i.ino(ino), &who).await {
                Ok(()) => {
                    let fh = i.next_dir.fetch_add(1, Ordering::Relaxed);
                    lock(&i.dirs).insert(fh, Arc::default());
                    reply.opened(FileHandle(fh), FopenFlags::empty());
                }
                Err(e) => reply.error(errno_of("opendir", &e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            let dir = i.ino(ino);
            let inodes = i.inodes;
            let r = i
                .read_dir(dir, fh.0, offset, false, |off, e, _| {
                    reply.add(
                        inodes.to_kernel(e.ino),
                        off,
                        file_type(e.kind),
                        OsStr::from_bytes(&e.name),
                    )
                })
                .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno_of("readdir", &e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            let dir = i.ino(ino);
            let inodes = i.inodes;
            let attr_ttl = i.attr_ttl;
            let r = i
                .read_dir(dir, fh.0, offset, true, |off, e, a| {
                    let Some(a) = a else { return true };
                    reply.add(
                        inodes.to_kernel(e.ino),
                        off,
                        OsStr::from_bytes(&e.name),
                        &attr_ttl,
                        &file_attr(&inodes, a),
                        Generation(0),
                    )
                })
                .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno_of("readdirplus", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: fuser::OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.inner.dirs).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            match i.fs.sync_tree().await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno_of("fsyncdir", &e)),
            }
        });
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // No ioctl is supported: the answer a regular file gives (`isatty`
        // asks on every `fopen`, so this must not log).
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let i = self.inner.clone();
        self.spawn(async move {
            match i.fs.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks,
                    s.blocks_free,
                    s.blocks_free,
                    s.files,
                    s.files_free,
                    s.block_size,
                    s.name_max,
                    s.block_size,
                ),
                Err(e) => reply.error(errno_of("statfs", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        let value = value.to_vec();
        self.spawn(async move {
            let r = async {
                let create = flags & libc::XATTR_CREATE != 0;
                let replace = flags & libc::XATTR_REPLACE != 0;
                i.fs.setxattr(i.ino(ino), &name, &value, create, replace, &who)
                    .await
            }
            .await;
            done(reply, r, "setxattr");
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            match i.fs.getxattr(i.ino(ino), &name, &who).await {
                Ok(v) => xattr_reply(reply, &v, size),
                Err(e) => reply.error(errno_of("getxattr", &e)),
            }
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let i = self.inner.clone();
        let who = who(req);
        self.spawn(async move {
            match i.fs.listxattr(i.ino(ino), &who).await {
                Ok(names) => {
                    let mut list = Vec::new();
                    for n in names {
                        list.extend_from_slice(&n);
                        list.push(0);
                    }
                    xattr_reply(reply, &list, size);
                }
                Err(e) => reply.error(errno_of("listxattr", &e)),
            }
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            let r = i.fs.removexattr(i.ino(ino), &name, &who).await;
            done(reply, r, "removexattr");
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let i = self.inner.clone();
        let who = who(req);
        let want = mask.bits() as u32 & 7;
        self.spawn(async move {
            let r = async {
                let a = i.fs.getattr(i.ino(ino)).await?;
                if want & perm::W != 0 && i.read_only {
                    return Err(FsError::new(errno::EROFS, "the mount is read-only"));
                }
                let owned = perm::Owned {
                    uid: a.uid,
                    gid: a.gid,
                    mode: a.mode,
                    dir: a.kind == NodeKind::Dir,
                };
                if perm::may(&who, owned, want) {
                    Ok(())
                } else {
                    Err(FsError::new(errno::EACCES, "permission denied"))
                }
            }
            .await;
            done(reply, r, "access");
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let i = self.inner.clone();
        let who = who(req);
        let name = name.as_bytes().to_vec();
        self.spawn(async move {
            let r = async {
                let exclusive = flags & libc::O_EXCL != 0;
                let (a, fh) =
                    i.fs.create(
                        i.ino(parent),
                        &name,
                        mode & 0o7777,
                        open_flags(flags),
                        exclusive,
                        &who,
                    )
                    .await?;
                i.remember(&a);
                Ok::<_, FsError>((a, fh))
            }
            .await;
            match r {
                Ok((a, fh)) => reply.created(
                    &i.entry_ttl,
                    &i.attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno_of("create", &e)),
            }
        });
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let i = self.inner.clone();
        let range = lock_range(lock_owner, start, end, typ);
        self.spawn(async move {
            match i.fs.getlk(i.ino(ino), &range).await {
                Ok(Some(c)) => reply.locked(
                    c.start,
                    if c.stop == u64::MAX {
                        i64::MAX as u64
                    } else {
                        c.stop - 1
                    },
                    if c.exclusive {
                        libc::F_WRLCK
                    } else {
                        libc::F_RDLCK
                    },
                    // The holder may be on another machine: no pid to
                    // name. The requester's own pid would be a lie.
                    0,
                ),
                Ok(None) => reply.locked(start, end, libc::F_UNLCK, pid),
                Err(e) => reply.error(errno_of("getlk", &e)),
            }
        });
    }

    fn setlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        let range = lock_range(lock_owner, start, end, typ);
        self.spawn(async move {
            let ino = i.ino(ino);
            let r = if typ == libc::F_UNLCK {
                i.fs.unlock(ino, &range).await
            } else {
                i.locks_used.store(true, Ordering::Relaxed);
                let mut wait = Duration::from_millis(1);
                loop {
                    match i.fs.setlk(ino, &range).await {
                        Err(e) if sleep && e.errno() == errno::EAGAIN => {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(LOCK_RETRY_MAX);
                        }
                        r => break r,
                    }
                }
            };
            done(reply, r, "setlk");
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            let r = async {
                let known = libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE;
                if mode & !known != 0 {
                    return Err(FsError::new(
                        errno::EOPNOTSUPP,
                        "only KEEP_SIZE and PUNCH_HOLE are supported",
                    ));
                }
                i.fs.fallocate(
                    fh.0,
                    offset,
                    length,
                    mode & libc::FALLOC_FL_KEEP_SIZE != 0,
                    mode & libc::FALLOC_FL_PUNCH_HOLE != 0,
                )
                .await
            }
            .await;
            done(reply, r, "fallocate");
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let i = self.inner.clone();
        self.spawn(async move {
            let r = async {
                let whence = match whence {
                    libc::SEEK_DATA => Whence::Data,
                    libc::SEEK_HOLE => Whence::Hole,
                    _ => return Err(FsError::new(errno::EINVAL, "unknown whence")),
                };
                let offset = u64::try_from(offset)
                    .map_err(|_| FsError::new(errno::ENXIO, "negative offset"))?;
                i.fs.lseek(fh.0, offset, whence).await
            }
            .await;
            match r {
                Ok(o) => reply.offset(i64::try_from(o).unwrap_or(i64::MAX)),
                Err(e) => reply.error(errno_of("lseek", &e)),
            }
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let i = self.inner.clone();
        // The reply counts bytes in 32 bits; a longer copy is continued
        // by the caller, as with any short copy.
        let len = len.min(1 << 30);
        self.spawn(async move {
            match i
                .fs
                .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
                .await
            {
                Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => reply.error(errno_of("copy_file_range", &e)),
            }
        });
    }
}

/// The caller of `req` (see [`caller`]).
fn who(req: &Request) -> Caller {
    caller(req.uid(), req.gid(), req.pid())
}

/// Answers a request whose reply carries nothing but success or an errno.
fn done(reply: ReplyEmpty, r: Result<(), FsError>, op: &str) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno_of(op, &e)),
    }
}

fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(u32::try_from(value.len()).unwrap_or(u32::MAX));
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(errno::ERANGE));
    } else {
        reply.data(value);
    }
}
