//! The local file system as a [`Source`] and a [`Dest`]: paths of bytes,
//! `lstat`, `SEEK_DATA`/`SEEK_HOLE`, the `l*xattr` calls, `mknod` and
//! `utimensat`, never following a symlink that is an entry of the tree.
//!
//! Calls block; the copy runs one entry at a time on the runtime's own
//! thread, so nothing else waits behind them.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{
    DirBuilderExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fsx_posix::NodeKind;

use super::{Attributes, Dest, Make, Source, Stat, shown_bytes};

/// A local directory tree; nodes are absolute paths.
pub(crate) struct LocalTree;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

/// Checks the result of a libc call returning -1 on failure.
fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Calls `f(buffer, size)` (an `l*xattr` call that fills a buffer and
/// returns its length, or with size 0 the length it needs) until the
/// buffer is big enough: the value may grow between the two calls.
fn sized(mut f: impl FnMut(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let need = f(std::ptr::null_mut(), 0);
        if need < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; need as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let got = f(buf.as_mut_ptr().cast(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

/// The names of a node's extended attributes (`llistxattr`).
pub(crate) fn xattr_names(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let p = c_path(path)?;
    // SAFETY: `p` is a valid C string; the buffer is `size` bytes or null
    // with size 0.
    let list = sized(|buf, size| unsafe { libc::llistxattr(p.as_ptr(), buf.cast(), size) })?;
    Ok(list
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// One extended attribute's value (`lgetxattr`).
pub(crate) fn xattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: both are valid C strings; the buffer is `size` bytes or null
    // with size 0.
    sized(|buf, size| unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf, size) })
}

/// Sets an extended attribute (`lsetxattr`, creating or replacing).
pub(crate) fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let p = c_path(path)?;
    let n = c_name(name)?;
    // SAFETY: valid C strings; `value` is readable for its length.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// `lseek(fd, offset, whence)`, `None` for `ENXIO` (no data, or no hole,
/// at or after `offset`).
fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: lseek only moves the descriptor's offset.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(r as u64))
}

/// The first stretch of data at or after `offset`, cut at `size`. A file
/// system without `SEEK_DATA` reports the whole file as data.
pub(crate) fn data_after(file: &File, offset: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    if offset >= size {
        return Ok(None);
    }
    let start = match seek(file, offset, libc::SEEK_DATA) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => offset,
        Err(e) => return Err(e),
    };
    if start >= size {
        return Ok(None);
    }
    let end = match seek(file, start, libc::SEEK_HOLE) {
        Ok(Some(h)) => h,
        Ok(None) => size,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => size,
        Err(e) => return Err(e),
    };
    Ok(Some((start, end.min(size))))
}

/// `mknod(path, type | mode, rdev)`: FIFOs, sockets and device nodes.
fn mknod(path: &Path, kind: NodeKind, mode: u32, rdev: u64) -> io::Result<()> {
    let p = c_path(path)?;
    // SAFETY: `p` is a valid C string.
    check(unsafe {
        libc::mknod(
            p.as_ptr(),
            (kind.type_bits() | mode) as libc::mode_t,
            rdev as libc::dev_t,
        )
    })
}

fn timespec(ns: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Sets access and modification times of `path` itself (a symlink's
/// own, not its target's).
pub(crate) fn set_times(path: &Path, atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
    let p = c_path(path)?;
    let times = [timespec(atime_ns), timespec(mtime_ns)];
    // SAFETY: `p` is a valid C string and `times` two timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Nanoseconds since the epoch from `stat`'s seconds and nanoseconds.
fn ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The [`Stat`] of `lstat` metadata.
pub(crate) fn stat_of(m: &std::fs::Metadata) -> Stat {
    let t = m.file_type();
    let kind = if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_socket() {
        NodeKind::Socket
    } else if t.is_char_device() {
        NodeKind::CharDev
    } else if t.is_block_device() {
        NodeKind::BlockDev
    } else {
        NodeKind::File
    };
    Stat {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        rdev: m.rdev(),
        size: if kind == NodeKind::File { m.len() } else { 0 },
        atime_ns: ns(m.atime(), m.atime_nsec()),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        id: (m.dev(), m.ino()),
    }
}

/// A regular file of the tree being written.
pub(crate) struct Writer {
    file: File,
}

impl Source for LocalTree {
    type Node = PathBuf;
    type Reader = File;

    fn show(&self, node: &PathBuf) -> String {
        shown_bytes(node.as_os_str().as_bytes()).into_owned()
    }

    async fn stat(&self, node: &PathBuf) -> anyhow::Result<Stat> {
        Ok(stat_of(&std::fs::symlink_metadata(node)?))
    }

    async fn children(&self, dir: &PathBuf) -> anyhow::Result<Vec<(Vec<u8>, PathBuf)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name().into_vec();
            let path = dir.join(OsStr::from_bytes(&name));
            out.push((name, path));
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn read_link(&self, node: &PathBuf) -> anyhow::Result<Vec<u8>> {
        Ok(std::fs::read_link(node)?.into_os_string().into_vec())
    }

    async fn xattr_names(&self, node: &PathBuf) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(xattr_names(node)?)
    }

    async fn xattr(&self, node: &PathBuf, name: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(xattr(node, name)?)
    }

    async fn open(&self, node: &PathBuf) -> anyhow::Result<File> {
        // O_NOATIME keeps the source's access time as it was (allowed to
        // its owner and root; anyone else opens without it). O_NOFOLLOW:
        // the entry was a regular file when scanned.
        let open = |extra| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | extra)
                .open(node)
        };
        Ok(match open(libc::O_NOATIME) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0)?,
            r => r?,
        })
    }

    async fn data(
        &self,
        file: &mut File,
        offset: u64,
        size: u64,
    ) -> anyhow::Result<Option<(u64, u64)>> {
        Ok(data_after(file, offset, size)?)
    }

    async fn read(&self, file: &mut File, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    async fn close(&self, file: File) -> anyhow::Result<()> {
        drop(file);
        Ok(())
    }
}

impl Dest for LocalTree {
    type Node = PathBuf;
    type Writer = Writer;

    async fn existing(
        &self,
        parent: &PathBuf,
        name: &[u8],
    ) -> anyhow::Result<Option<(PathBuf, bool)>> {
        let path = parent.join(OsStr::from_bytes(name));
        match std::fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some((path, m.is_dir()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove(&self, parent: &PathBuf, name: &[u8]) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(parent.join(OsStr::from_bytes(name)))?)
    }

    async fn make(&self, parent: &PathBuf, name: &[u8], what: Make<'_>) -> anyhow::Result<PathBuf> {
        let path = parent.join(OsStr::from_bytes(name));
        match what {
            Make::Dir => std::fs::DirBuilder::new().mode(0o700).create(&path)?,
            Make::Symlink(target) => std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)?,
            Make::Special(kind, rdev) => mknod(&path, kind, 0o600, rdev)?,
        }
        Ok(path)
    }

    async fn create(&self, parent: &PathBuf, name: &[u8]) -> anyhow::Result<(PathBuf, Writer)> {
        let path = parent.join(OsStr::from_bytes(name));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((path, Writer { file }))
    }

    async fn write(&self, file: &mut Writer, offset: u64, data: &[u8]) -> anyhow::Result<()> {
        Ok(file.file.write_all_at(data, offset)?)
    }

    async fn finish(&self, file: Writer, size: u64) -> anyhow::Result<()> {
        file.file
            .set_len(size)
            .with_context(|| format!("setting the size to {size}"))
    }

    async fn link(&self, node: &PathBuf, parent: &PathBuf, name: &[u8]) -> anyhow::Result<()> {
        Ok(std::fs::hard_link(
            node,
            parent.join(OsStr::from_bytes(name)),
        )?)
    }

    async fn set_xattr(&self, node: &PathBuf, name: &[u8], value: &[u8]) -> anyhow::Result<()> {
        Ok(set_xattr(node, name, value)?)
    }

    async fn set_attributes(&self, node: &PathBuf, a: &Attributes) -> anyhow::Result<()> {
        std::os::unix::fs::lchown(node, Some(a.uid), Some(a.gid)).context("chown")?;
        if let Some(mode) = a.mode {
            std::fs::set_permissions(node, std::fs::Permissions::from_mode(mode))
                .context("chmod")?;
        }
        set_times(node, a.atime_ns, a.mtime_ns).context("setting times")?;
        Ok(())
    }
}
