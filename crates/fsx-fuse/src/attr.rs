//! What the kernel sees of the tree: its inode numbers, file types,
//! attributes and callers.
//!
//! Invariant: [`Inodes`] maps the volume's root to 1 and 1 to the root,
//! every other number to itself, so it is its own inverse.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fsx_posix::{Attr, Caller, Ino, NodeKind};
use fuser::{FileAttr, FileType, INodeNo};

/// The swap between the volume's inode numbers and the kernel's.
#[derive(Debug, Clone, Copy)]
pub struct Inodes {
    root: Ino,
}

impl Inodes {
    /// The numbering of a volume whose root is `root`.
    pub fn new(root: Ino) -> Self {
        Self { root }
    }

    /// The volume's inode the kernel calls `ino`.
    pub fn to_fs(&self, ino: INodeNo) -> Ino {
        let k = i64::try_from(ino.0).unwrap_or(i64::MAX);
        if k == 1 {
            self.root
        } else if k == self.root {
            1
        } else {
            k
        }
    }

    /// The kernel's number for the volume's inode `ino`.
    pub fn to_kernel(&self, ino: Ino) -> INodeNo {
        let k = if ino == self.root {
            1
        } else if ino == 1 {
            self.root
        } else {
            ino
        };
        INodeNo(u64::try_from(k).unwrap_or(0))
    }
}

pub(crate) fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::Dir => FileType::Directory,
        NodeKind::File => FileType::RegularFile,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
        NodeKind::CharDev => FileType::CharDevice,
        NodeKind::BlockDev => FileType::BlockDevice,
    }
}

/// The node kind of `mknod`'s mode (`S_IFMT` bits).
pub(crate) fn kind_of_mode(mode: u32) -> Option<NodeKind> {
    match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Some(NodeKind::File),
        libc::S_IFIFO => Some(NodeKind::Fifo),
        libc::S_IFSOCK => Some(NodeKind::Socket),
        libc::S_IFCHR => Some(NodeKind::CharDev),
        libc::S_IFBLK => Some(NodeKind::BlockDev),
        libc::S_IFDIR => Some(NodeKind::Dir),
        libc::S_IFLNK => Some(NodeKind::Symlink),
        _ => None,
    }
}

pub(crate) fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub(crate) fn ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// The kernel's attributes of `a`.
pub(crate) fn file_attr(inodes: &Inodes, a: &Attr) -> FileAttr {
    FileAttr {
        ino: inodes.to_kernel(a.ino),
        size: a.size,
        // No allocation is tracked per file: a file is charged for its
        // whole size (holes included), rounded up to 512-byte blocks.
        blocks: a.size.div_ceil(512),
        atime: time(a.atime_ns),
        mtime: time(a.mtime_ns),
        ctime: time(a.ctime_ns),
        crtime: time(a.btime_ns),
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: u32::try_from(a.rdev).unwrap_or(u32::MAX),
        blksize: if a.page_size > 0 { a.page_size } else { 4096 },
        flags: 0,
    }
}

/// The caller of a request: its file-system ids, and its supplementary
/// groups as `/proc` shows them (FUSE passes only uid, gid and pid).
pub(crate) fn caller(uid: u32, gid: u32, pid: u32) -> Caller {
    let mut c = Caller {
        uid,
        gid,
        groups: Vec::new(),
    };
    // Root passes every permission check on its own; other callers may
    // be allowed through a supplementary group.
    if uid != 0 && pid != 0 {
        c.groups = groups_of(pid);
    }
    c
}

/// The supplementary groups of process `pid` (empty if it is gone).
///
/// Read on every request of a caller other than root, so in as few
/// system calls as it takes: `/proc` files report a size of 0, so
/// `read_to_string` would stat the file and then start from a 32-byte
/// buffer and double it, one `read` each time. Through `take` (which
/// sizes nothing by a stat) into a buffer that usually holds the whole
/// file, it is one `read` and one that finds the end; 64 Ki groups fit in
/// the limit.
fn groups_of(pid: u32) -> Vec<u32> {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    let mut buf = Vec::with_capacity(4096);
    if f.take(1 << 20).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_and_one_trade_places_and_nothing_else_moves() {
        let i = Inodes::new(7);
        assert_eq!(i.to_kernel(7), INodeNo(1));
        assert_eq!(i.to_kernel(1), INodeNo(7));
        assert_eq!(i.to_fs(INodeNo(1)), 7);
        assert_eq!(i.to_fs(INodeNo(7)), 1);
        for n in [2, 3, 8, 1 << 40] {
            assert_eq!(i.to_fs(i.to_kernel(n)), n);
            assert_eq!(i.to_kernel(n), INodeNo(n as u64));
        }
        let same = Inodes::new(1);
        assert_eq!(same.to_kernel(1), INodeNo(1));
        assert_eq!(same.to_fs(INodeNo(1)), 1);
    }

    #[test]
    fn times_before_the_epoch_survive() {
        for t in [0, 1, -1, 1_700_000_000_123_456_789, -86_400_000_000_000] {
            assert_eq!(ns(time(t)), t);
        }
    }

    #[test]
    fn the_groups_of_this_process_are_read() {
        let me = std::process::id();
        // Every process has a Groups: line; it may be empty.
        let status = std::fs::read_to_string(format!("/proc/{me}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(groups_of(me).len(), line.split_whitespace().count() - 1);
        assert!(groups_of(u32::MAX).is_empty());
    }
}
