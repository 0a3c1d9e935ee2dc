//! A volume's file tree as a [`Source`] and a [`Dest`], through
//! [`fsx_posix::Fs`].
//!
//! Every call is made as the tree's superuser, whoever runs the command:
//! the command holds the volume's metadata and store outright, as `fsx
//! file put` and `get` do, and the tree's own permissions are for those
//! who reach it through a mount. So an import is not stopped by the
//! root-owned root of a new volume, and an export sees everything — a
//! `trusted.` attribute a non-root user cannot set locally is reported as
//! not copied rather than hidden. The walker sets every copy's owner.
//!
//! Errors keep the tree's message and name the errno as the C library
//! does ("Operation not supported (os error 95)"), so a reason reads the
//! same whichever side of a copy it came from.

use anyhow::anyhow;
use fsx_posix::{
    Caller, Fh, Fs, FsError, Ino, NodeKind, OpenFlags, SetAttrs, SetTime, Whence, errno,
};

use super::{Attributes, Dest, Make, Source, Stat, shown_bytes};

/// Entries asked for per `readdir` call.
const READDIR_BATCH: usize = 1024;

/// The tree of one view of a volume.
pub(crate) struct VolumeTree<'a> {
    pub fs: &'a Fs,
    /// Always the superuser (see the module docs).
    pub caller: Caller,
    /// The volume as the user named it, to print paths as `VOLUME:/path`.
    pub label: String,
}

impl<'a> VolumeTree<'a> {
    pub fn new(fs: &'a Fs, label: String) -> Self {
        Self {
            fs,
            caller: Caller::root(),
            label,
        }
    }
}

/// An inode, with the path it was reached by (for messages).
#[derive(Debug, Clone)]
pub(crate) struct VNode {
    pub ino: Ino,
    /// Absolute path in the volume (`/` for the root).
    pub path: Vec<u8>,
    /// Its owner and group when known (what a new node got), so setting
    /// the same again costs no transaction.
    pub owner: Option<(u32, u32)>,
}

impl VNode {
    /// The child `name` of this directory.
    pub fn child(&self, name: &[u8], ino: Ino) -> VNode {
        let mut path = self.path.clone();
        if path != b"/" {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        VNode {
            ino,
            path,
            owner: None,
        }
    }

    /// This node, known to have `a`'s owner and group.
    pub fn owned_by(self, a: &fsx_posix::Attr) -> VNode {
        VNode {
            owner: Some((a.uid, a.gid)),
            ..self
        }
    }
}

/// A regular file of the volume being written.
pub(crate) struct VWriter {
    fh: Fh,
    ino: Ino,
    /// Where the last write ended: the file's size until `finish`.
    end: u64,
}

/// An [`FsError`] as a reason: the tree's message and the errno's text.
pub(crate) fn reason(e: FsError) -> anyhow::Error {
    anyhow!(
        "{}: {}",
        e.message(),
        std::io::Error::from_raw_os_error(e.errno())
    )
}

fn at(ns: i64) -> Option<SetTime> {
    Some(SetTime::At(ns))
}

impl VolumeTree<'_> {
    /// `VOLUME:/path`, for messages.
    pub fn show_node(&self, node: &VNode) -> String {
        format!("{}:{}", self.label, shown_bytes(&node.path))
    }

    /// The inode `name` of directory `parent`, `None` if there is none.
    pub async fn lookup(
        &self,
        parent: Ino,
        name: &[u8],
    ) -> anyhow::Result<Option<fsx_posix::Attr>> {
        match self.fs.lookup(parent, name, &self.caller).await {
            Ok(a) => Ok(Some(a)),
            Err(e) if e.errno() == errno::ENOENT => Ok(None),
            Err(e) => Err(reason(e)),
        }
    }

    /// Every entry of a directory, in name order (`opendir` checks that
    /// the caller may read it).
    pub async fn entries(&self, dir: Ino) -> anyhow::Result<Vec<fsx_posix::DirEntry>> {
        self.fs.opendir(dir, &self.caller).await.map_err(reason)?;
        let mut out: Vec<fsx_posix::DirEntry> = Vec::new();
        loop {
            let after = out.last().map(|e| e.name.clone());
            let batch = self
                .fs
                .readdir(dir, after.as_deref(), READDIR_BATCH)
                .await
                .map_err(reason)?;
            let done = batch.len() < READDIR_BATCH;
            out.extend(batch);
            if done {
                return Ok(out);
            }
        }
    }
}

impl Source for VolumeTree<'_> {
    type Node = VNode;
    type Reader = Fh;

    fn show(&self, node: &VNode) -> String {
        self.show_node(node)
    }

    async fn stat(&self, node: &VNode) -> anyhow::Result<Stat> {
        let a = self.fs.getattr(node.ino).await.map_err(reason)?;
        Ok(Stat {
            kind: a.kind,
            mode: a.mode & 0o7777,
            uid: a.uid,
            gid: a.gid,
            nlink: u64::from(a.nlink),
            rdev: a.rdev,
            size: if a.kind == NodeKind::File { a.size } else { 0 },
            atime_ns: a.atime_ns,
            mtime_ns: a.mtime_ns,
            id: (0, a.ino as u64),
        })
    }

    async fn children(&self, dir: &VNode) -> anyhow::Result<Vec<(Vec<u8>, VNode)>> {
        Ok(self
            .entries(dir.ino)
            .await?
            .into_iter()
            .map(|e| (e.name.to_vec(), dir.child(&e.name, e.ino)))
            .collect())
    }

    async fn read_link(&self, node: &VNode) -> anyhow::Result<Vec<u8>> {
        Ok(self.fs.readlink(node.ino).await.map_err(reason)?.to_vec())
    }

    async fn xattr_names(&self, node: &VNode) -> anyhow::Result<Vec<Vec<u8>>> {
        let names = self
            .fs
            .listxattr(node.ino, &self.caller)
            .await
            .map_err(reason)?;
        Ok(names.into_iter().map(|n| n.to_vec()).collect())
    }

    async fn xattr(&self, node: &VNode, name: &[u8]) -> anyhow::Result<Vec<u8>> {
        let v = self
            .fs
            .getxattr(node.ino, name, &self.caller)
            .await
            .map_err(reason)?;
        Ok(v.to_vec())
    }

    async fn open(&self, node: &VNode) -> anyhow::Result<Fh> {
        self.fs
            .open(node.ino, OpenFlags::read_only(), &self.caller)
            .await
            .map_err(reason)
    }

    async fn data(
        &self,
        fh: &mut Fh,
        offset: u64,
        size: u64,
    ) -> anyhow::Result<Option<(u64, u64)>> {
        if offset >= size {
            return Ok(None);
        }
        let start = match self.fs.lseek(*fh, offset, Whence::Data).await {
            Ok(s) if s < size => s,
            Ok(_) => return Ok(None),
            Err(e) if e.errno() == errno::ENXIO => return Ok(None),
            Err(e) => return Err(reason(e)),
        };
        let end = match self.fs.lseek(*fh, start, Whence::Hole).await {
            Ok(h) => h.min(size),
            Err(e) if e.errno() == errno::ENXIO => size,
            Err(e) => return Err(reason(e)),
        };
        Ok(Some((start, end)))
    }

    async fn read(&self, fh: &mut Fh, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
        self.fs.read(*fh, offset, len).await.map_err(reason)
    }

    async fn close(&self, fh: Fh) -> anyhow::Result<()> {
        self.fs.release(fh).await.map_err(reason)
    }
}

impl Dest for VolumeTree<'_> {
    type Node = VNode;
    type Writer = VWriter;

    async fn existing(&self, parent: &VNode, name: &[u8]) -> anyhow::Result<Option<(VNode, bool)>> {
        Ok(self.lookup(parent.ino, name).await?.map(|a| {
            let dir = a.kind == NodeKind::Dir;
            (parent.child(name, a.ino).owned_by(&a), dir)
        }))
    }

    async fn remove(&self, parent: &VNode, name: &[u8]) -> anyhow::Result<()> {
        self.fs
            .unlink(parent.ino, name, &self.caller)
            .await
            .map_err(reason)
    }

    async fn make(&self, parent: &VNode, name: &[u8], what: Make<'_>) -> anyhow::Result<VNode> {
        let (p, c) = (parent.ino, &self.caller);
        let made = match what {
            Make::Dir => self.fs.mkdir(p, name, 0o700, c).await,
            Make::Symlink(target) => self.fs.symlink(p, name, target, c).await,
            Make::Special(kind, rdev) => self.fs.mknod(p, name, kind, 0o600, rdev, c).await,
        };
        let a = made.map_err(reason)?;
        Ok(parent.child(name, a.ino).owned_by(&a))
    }

    async fn create(&self, parent: &VNode, name: &[u8]) -> anyhow::Result<(VNode, VWriter)> {
        let flags = OpenFlags {
            write: true,
            ..OpenFlags::default()
        };
        let (a, fh) = self
            .fs
            .create(parent.ino, name, 0o600, flags, true, &self.caller)
            .await
            .map_err(reason)?;
        let w = VWriter {
            fh,
            ino: a.ino,
            end: 0,
        };
        Ok((parent.child(name, a.ino).owned_by(&a), w))
    }

    async fn write(&self, file: &mut VWriter, offset: u64, data: &[u8]) -> anyhow::Result<()> {
        self.fs.write(file.fh, offset, data).await.map_err(reason)?;
        file.end = file.end.max(offset + data.len() as u64);
        Ok(())
    }

    async fn finish(&self, file: VWriter, size: u64) -> anyhow::Result<()> {
        // Growing the file past its last write leaves a hole; the release
        // makes everything durable.
        let sized = if file.end < size {
            let set = SetAttrs {
                size: Some(size),
                ..SetAttrs::default()
            };
            self.fs
                .setattr(file.ino, &set, Some(file.fh), &self.caller)
                .await
                .map(drop)
        } else {
            Ok(())
        };
        let released = self.fs.release(file.fh).await;
        sized.map_err(reason)?;
        released.map_err(reason)
    }

    async fn link(&self, node: &VNode, parent: &VNode, name: &[u8]) -> anyhow::Result<()> {
        self.fs
            .link(node.ino, parent.ino, name, &self.caller)
            .await
            .map(drop)
            .map_err(reason)
    }

    async fn set_xattr(&self, node: &VNode, name: &[u8], value: &[u8]) -> anyhow::Result<()> {
        match self
            .fs
            .setxattr(node.ino, name, value, false, false, &self.caller)
            .await
        {
            Err(e) if e.errno() == errno::EOPNOTSUPP => Err(reason(e).context(
                "the volume's tree keeps only user., trusted. and security. attributes \
                 and POSIX ACLs (system.posix_acl_*)",
            )),
            r => r.map_err(reason),
        }
    }

    async fn set_attributes(&self, node: &VNode, a: &Attributes) -> anyhow::Result<()> {
        let mut set = SetAttrs {
            mode: a.mode,
            atime: at(a.atime_ns),
            mtime: at(a.mtime_ns),
            ..SetAttrs::default()
        };
        if node.owner != Some((a.uid, a.gid)) {
            // One `setattr` changes the mode before the owner, and the
            // owner's change clears set-id bits: with any, chown first.
            let owner = SetAttrs {
                uid: Some(a.uid),
                gid: Some(a.gid),
                ..SetAttrs::default()
            };
            if a.mode.is_some_and(|m| m & 0o6000 != 0) {
                self.fs
                    .setattr(node.ino, &owner, None, &self.caller)
                    .await
                    .map_err(reason)?;
            } else {
                (set.uid, set.gid) = (owner.uid, owner.gid);
            }
        }
        self.fs
            .setattr(node.ino, &set, None, &self.caller)
            .await
            .map(drop)
            .map_err(reason)
    }
}
