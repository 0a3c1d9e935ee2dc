//! The file tree: inodes, directory entries, links, symlinks, extended
//! attributes and orphans, by inode number.

use bytes::Bytes;
use fsx_store::BoxFuture;

use super::{BranchId, View};
use crate::Result;
use crate::perm::Caller;
use crate::rename::RenameFlags;

/// Inode number. A regular file's inode number is its [`super::FileId`],
/// so the page store, the SQLite VFS and the tree name one file alike.
/// Never reused.
pub type Ino = i64;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file: a page file of the page store.
    File,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
}

impl NodeKind {
    /// The stored code (`fsx_nodes.kind`, `fsx_entries.kind`).
    pub fn code(self) -> i64 {
        match self {
            NodeKind::Dir => 1,
            NodeKind::File => 2,
            NodeKind::Symlink => 3,
            NodeKind::Fifo => 4,
            NodeKind::Socket => 5,
            NodeKind::CharDev => 6,
            NodeKind::BlockDev => 7,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => NodeKind::Dir,
            2 => NodeKind::File,
            3 => NodeKind::Symlink,
            4 => NodeKind::Fifo,
            5 => NodeKind::Socket,
            6 => NodeKind::CharDev,
            7 => NodeKind::BlockDev,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of `st_mode`.
    pub fn type_bits(self) -> u32 {
        match self {
            NodeKind::Dir => 0o040000,
            NodeKind::File => 0o100000,
            NodeKind::Symlink => 0o120000,
            NodeKind::Fifo => 0o010000,
            NodeKind::Socket => 0o140000,
            NodeKind::CharDev => 0o020000,
            NodeKind::BlockDev => 0o060000,
        }
    }
}

/// An inode's attributes, as `stat` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits, with set-user-ID, set-group-ID and sticky
    /// (`0o7777`); [`NodeKind::type_bits`] gives the rest of `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links (a directory: 2 plus its subdirectories).
    pub nlink: u32,
    /// Device number of a device node.
    pub rdev: u64,
    /// Bytes: a regular file's size, a symlink's target length, 0
    /// otherwise.
    pub size: u64,
    /// A regular file's page size (its preferred I/O size); 0 otherwise.
    pub page_size: u32,
    /// Last access, ns since the Unix epoch.
    pub atime_ns: i64,
    /// Last change of the contents, ns.
    pub mtime_ns: i64,
    /// Last change of the inode, ns.
    pub ctime_ns: i64,
    /// Creation, ns.
    pub btime_ns: i64,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name (bytes).
    pub name: Bytes,
    /// The inode it names.
    pub ino: Ino,
    /// What that inode is.
    pub kind: NodeKind,
}

/// A time `setattr` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The transaction's `now_ns`.
    Now,
    /// This time, ns since the Unix epoch.
    At(i64),
}

/// What [`MetaTree::setattr`] changes (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (`chmod`).
    pub mode: Option<u32>,
    /// New owner (`chown`).
    pub uid: Option<u32>,
    /// New group (`chown`).
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// The file's contents were written or truncated by `caller` (after
    /// the page store changed them): clears set-user-ID and set-group-ID
    /// as a write by a non-root caller does.
    pub written: bool,
}

/// A new inode and its first name (see [`MetaTree::make`]).
#[derive(Debug, Clone)]
pub struct MakeNode<'a> {
    /// Branch to change.
    pub branch: BranchId,
    /// Directory to make it in.
    pub parent: Ino,
    /// Its name there.
    pub name: &'a [u8],
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits, the umask already applied.
    pub mode: u32,
    /// Device number, for device nodes.
    pub rdev: u64,
    /// Target, for a symlink.
    pub target: Option<&'a [u8]>,
    /// Page size, for a regular file.
    pub page_size: u32,
    /// Who makes it.
    pub caller: &'a Caller,
    /// Now, ns since the Unix epoch.
    pub now_ns: i64,
    /// For a regular file: the write lease to take on it in the same
    /// transaction (a file made to be written, as by `open(O_CREAT)`, then
    /// costs one transaction, not two).
    pub lease: Option<NewLease<'a>>,
}

/// The write lease a new regular file is made with (see
/// [`MakeNode::lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewLease<'a> {
    /// The writer that holds it.
    pub holder: &'a str,
    /// When it lapses unless renewed, ms since the Unix epoch.
    pub expires_ms: i64,
}

/// An inode as a walk of a view's tree finds it (see
/// [`MetaTree::tree_nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    /// Its attributes.
    pub attr: Attr,
    /// A symlink's target.
    pub target: Option<Bytes>,
    /// Its entries: `(directory, name)`, ascending.
    pub links: Vec<(Ino, Bytes)>,
    /// One of its paths, from the root, without a leading `/` (names that
    /// are not UTF-8 shown lossily).
    pub path: String,
}

/// An unlinked regular file some holder still has open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Branch it was unlinked on.
    pub branch: BranchId,
    /// The inode.
    pub ino: Ino,
    /// Who has it open (a lease-holder id: host, pid, start).
    pub holder: String,
    /// When its last name went, ms since the Unix epoch.
    pub since_ms: i64,
}

/// Which kind of lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// BSD `flock`: the whole file, owned by an open file description.
    Flock,
    /// POSIX `fcntl` byte-range locks, owned by a process (lock owner).
    Posix,
}

impl LockKind {
    /// The stored code (`fsx_locks.kind`).
    pub fn code(self) -> i64 {
        match self {
            LockKind::Flock => 1,
            LockKind::Posix => 2,
        }
    }
}

/// A lock on a byte range of a file, or a request for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteLock {
    /// Branch of the file.
    pub branch: BranchId,
    /// The file.
    pub ino: Ino,
    /// `flock` or POSIX.
    pub kind: LockKind,
    /// The session holding it (a lease-holder id); a dead holder's locks
    /// are void once [`MetaTree::release_locks`] drops them.
    pub holder: String,
    /// The owner within the session (open file description or process).
    pub owner: u64,
    /// First byte.
    pub start: u64,
    /// One past the last byte; `u64::MAX` reaches past any end of file.
    pub stop: u64,
    /// Write (exclusive) or read (shared) lock.
    pub exclusive: bool,
}

/// What an unlink or a replacing rename left of the inode it unlinked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlinked {
    /// The inode.
    pub ino: Ino,
    /// Its kind.
    pub kind: NodeKind,
    /// Links left.
    pub nlink: u32,
    /// The last link went while the caller had it open: it is an orphan
    /// until [`MetaTree::forget_orphan`].
    pub orphaned: bool,
}

/// The file tree of every view, by inode number.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]). A
/// refusal is an error of kind [`crate::MetaErrorKind::Refused`] carrying
/// the errno a file system call returns, decided in the kernel's order
/// (see [`crate::perm`], [`crate::names`], [`crate::rename`],
/// [`crate::remove`]); a refused call changes nothing.
///
/// - **Views.** Reads take a [`View`]: a branch shows its head, a commit
///   the whole tree as it was. Changes take a branch. Branch creation
///   copies no tree rows.
/// - **Root.** [`MetaTree::root`] is the same inode in every view, a
///   directory that always exists.
/// - **Names** are 1–255 bytes without `/` or NUL; `.` and `..` are not
///   stored (the caller answers them). Listings are ordered by name bytes,
///   and [`MetaTree::readdir`] continues strictly after a name, so a
///   cursor stays right across concurrent changes.
/// - **Links.** A directory has exactly one entry naming it (its parent
///   is recorded) and `nlink` 2 plus its subdirectories; other inodes
///   count their entries. An inode whose last link goes is gone, unless
///   it is a regular file the caller has open: then it is an orphan, its
///   data kept until [`MetaTree::forget_orphan`].
/// - **Permissions** are checked inside the transaction against the
///   `caller` given, so no change interleaves a check and its act.
/// - **Times.** Every change stamps the times POSIX says with `now_ns`; a
///   regular file's `mtime` and `ctime` also follow the page store's
///   writes (ms resolution), unless `setattr` set `mtime` after the last
///   write.
/// - **Durability.** A change is durable when it returns, as every
///   transaction of the contract is, unless this engine instance was told
///   to [`MetaTree::defer_durability`]: then `make`, `setattr`, `link`,
///   `remove`, `rename`, `forget_orphan` and `setxattr` commit without
///   waiting for the disk — visible at once to every reader, kept through
///   a crash of this process, in order — and are durable after the next
///   [`MetaTree::barrier`] or the next durable write of the same instance
///   (what `fsync` of a file or of its directory is on a local disk).
pub trait MetaTree {
    /// The root directory's inode number.
    fn root(&self) -> BoxFuture<'_, Result<Ino>>;

    /// The attributes of `ino` in `view`, or `ENOENT`.
    fn getattr(&self, view: View, ino: Ino) -> BoxFuture<'_, Result<Attr>>;

    /// The entry `name` of directory `parent` (search permission needed).
    fn lookup<'a>(
        &'a self,
        view: View,
        parent: Ino,
        name: &'a [u8],
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Attr>>;

    /// Up to `limit` entries of directory `dir` after the name `after`
    /// (`None`: from the first), ascending by name.
    fn readdir<'a>(
        &'a self,
        view: View,
        dir: Ino,
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DirEntry>>>;

    /// [`MetaTree::readdir`] with each entry's attributes, read in the same
    /// transaction (`readdirplus`).
    fn readdir_plus<'a>(
        &'a self,
        view: View,
        dir: Ino,
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(DirEntry, Attr)>>>;

    /// Every inode reachable from the root of `view` other than the root,
    /// with its entries: what a merge compares per path.
    fn tree_nodes(&self, view: View) -> BoxFuture<'_, Result<Vec<TreeNode>>>;

    /// A symlink's target (`EINVAL` if `ino` is not a symlink).
    fn readlink(&self, view: View, ino: Ino) -> BoxFuture<'_, Result<Bytes>>;

    /// Makes a directory, regular file, symlink, FIFO, socket or device
    /// node (see [`MakeNode`]); `EEXIST` if the name is taken.
    fn make<'a>(&'a self, node: &'a MakeNode<'a>) -> BoxFuture<'a, Result<Attr>>;

    /// Changes attributes (see [`SetAttr`]), with `chmod`, `chown` and
    /// `utimensat`'s permission rules.
    fn setattr<'a>(
        &'a self,
        branch: BranchId,
        ino: Ino,
        set: &'a SetAttr,
        caller: &'a Caller,
        now_ns: i64,
    ) -> BoxFuture<'a, Result<Attr>>;

    /// A new link `new_parent/new_name` to `ino`.
    fn link<'a>(
        &'a self,
        branch: BranchId,
        ino: Ino,
        new_parent: Ino,
        new_name: &'a [u8],
        caller: &'a Caller,
        now_ns: i64,
    ) -> BoxFuture<'a, Result<Attr>>;

    /// Removes `parent/name`: `unlink` (anything but a directory) or
    /// `rmdir` (an empty directory) as `dir` says. `open` names the holder
    /// that has the inode open, if the caller does (see "Links").
    #[allow(clippy::too_many_arguments)]
    fn remove<'a>(
        &'a self,
        branch: BranchId,
        parent: Ino,
        name: &'a [u8],
        dir: bool,
        open: Option<&'a str>,
        caller: &'a Caller,
        now_ns: i64,
    ) -> BoxFuture<'a, Result<Unlinked>>;

    /// `renameat2(parent/name, new_parent/new_name, flags)`, with the
    /// loop check walking the ancestors inside the transaction. A replaced
    /// inode is returned as [`MetaTree::remove`] returns it; `open_dst`
    /// names the holder that has the replaced inode open, if any.
    #[allow(clippy::too_many_arguments)]
    fn rename<'a>(
        &'a self,
        branch: BranchId,
        parent: Ino,
        name: &'a [u8],
        new_parent: Ino,
        new_name: &'a [u8],
        flags: RenameFlags,
        open_dst: Option<&'a str>,
        caller: &'a Caller,
        now_ns: i64,
    ) -> BoxFuture<'a, Result<Option<Unlinked>>>;

    /// Whether this instance's tree changes commit without waiting for
    /// the disk (see "Durability"); off until set.
    fn defer_durability(&self, on: bool);

    /// Makes every change this instance committed before the call durable
    /// (nothing to do, and no transaction, when none waits).
    fn barrier(&self) -> BoxFuture<'_, Result<()>>;

    /// Whether a change this instance committed may not be durable yet.
    fn durability_pending(&self) -> bool;

    /// Drops an orphan's data if it still has no link (its last open
    /// handle closed, or its holder died).
    fn forget_orphan(&self, branch: BranchId, ino: Ino, now_ns: i64) -> BoxFuture<'_, Result<()>>;

    /// Every orphan of the volume.
    fn orphans(&self) -> BoxFuture<'_, Result<Vec<Orphan>>>;

    /// Takes `lock` (or changes its holder's and owner's lock on that
    /// range), or returns a lock of another owner that conflicts with it
    /// and changes nothing. Locks of one owner split and replace each
    /// other as `fcntl`'s do.
    fn set_lock<'a>(&'a self, lock: &'a ByteLock) -> BoxFuture<'a, Result<Option<ByteLock>>>;

    /// Releases the range of `lock` for its holder and owner.
    fn unlock<'a>(&'a self, lock: &'a ByteLock) -> BoxFuture<'a, Result<()>>;

    /// A lock of another owner that would conflict with `lock`
    /// (`F_GETLK`), if any.
    fn test_lock<'a>(&'a self, lock: &'a ByteLock) -> BoxFuture<'a, Result<Option<ByteLock>>>;

    /// Drops every lock of `holder` (on `ino` and of the owner of that
    /// kind only, when given): a session that ends or is found dead loses
    /// its locks.
    fn release_locks<'a>(
        &'a self,
        holder: &'a str,
        ino: Option<Ino>,
        owner: Option<(LockKind, u64)>,
    ) -> BoxFuture<'a, Result<()>>;

    /// An extended attribute's value (`ENODATA` if absent).
    fn getxattr<'a>(
        &'a self,
        view: View,
        ino: Ino,
        name: &'a [u8],
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Bytes>>;

    /// The names of an inode's extended attributes the caller may see,
    /// ascending.
    fn listxattr<'a>(
        &'a self,
        view: View,
        ino: Ino,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Vec<Bytes>>>;

    /// Sets (`value: Some`) or removes (`None`, `ENODATA` if absent) an
    /// extended attribute. `create`/`replace` are `XATTR_CREATE` and
    /// `XATTR_REPLACE`.
    #[allow(clippy::too_many_arguments)]
    fn setxattr<'a>(
        &'a self,
        branch: BranchId,
        ino: Ino,
        name: &'a [u8],
        value: Option<&'a [u8]>,
        create: bool,
        replace: bool,
        caller: &'a Caller,
        now_ns: i64,
    ) -> BoxFuture<'a, Result<()>>;
}
