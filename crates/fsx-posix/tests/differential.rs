//! Differential property test: random sequences of file-system calls —
//! directories, files, writes at random offsets, truncations, renames
//! with every flag, hard links, symlinks, extended attributes, `chmod`,
//! unlinks of open files — run side by side against the fsx layer and a
//! real directory of the local file system. Every call must fail with the
//! same errno or succeed on both, and after every call both trees must
//! hold the same paths, kinds, modes, owners, link counts, sizes,
//! contents, symlink targets and extended attributes.
//!
//! The kernel resolves paths before it calls a file system; the harness
//! does the same for fsx (`Side::resolve`): every symlink the test makes
//! dangles, so following one is `ENOENT`, as it is for the kernel.
//!
//! On both metadata engines (SQLite, and a real PostgreSQL server).
//! Run as root (as CI does), calls alternate between root and a second
//! user (uid and gid 1000, acting through `setfsuid` on the kernel side),
//! so permission checks, the sticky bit, `chown` and the set-user-ID bits
//! a write clears are compared too; as anyone else, every call is the
//! test's own user's.
//!
//! `FSX_DIFF_CASES=N` runs N cases per engine (the extended mode).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fsx_engine::{SystemEnv, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_posix::{Caller, Fh, Fs, NodeKind, OpenFlags, RenameFlags, SetAttrs, Whence, errno};
use fsx_store::local::LocalBackend;
use proptest::prelude::*;

/// Paths the calls choose from: nested, so parents may be missing, files
/// or symlinks.
const PATHS: [&str; 7] = ["a", "b", "a/c", "a/d", "b/e", "a/c/f", "b/e/g"];
const XATTRS: [&str; 2] = ["user.x", "user.y"];
const SPAN: u64 = 20_000;
const DANGLING: &str = "nowhere/x";
/// The second user (and group).
const ALICE: u32 = 1000;

/// Whether the test runs as root, and so can act as a second user.
fn is_root() -> bool {
    // SAFETY: geteuid has no memory effects.
    unsafe { libc::geteuid() == 0 }
}

/// Who the fsx side calls as: user 1000, or whoever runs the test.
fn caller(alice: bool) -> Caller {
    if alice {
        return Caller::new(ALICE, ALICE, &[]);
    }
    // SAFETY: getgroups writes at most `groups.len()` ids.
    unsafe {
        let mut groups = vec![0u32; 256];
        let n = libc::getgroups(groups.len() as i32, groups.as_mut_ptr());
        groups.truncate(n.max(0) as usize);
        Caller::new(libc::geteuid(), libc::getegid(), &groups)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Mkdir(usize),
    Create(usize),
    Write {
        path: usize,
        offset: u64,
        len: usize,
        seed: u8,
    },
    Truncate(usize, u64),
    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
    Punch {
        path: usize,
        offset: u64,
        len: u64,
    },
    Read(usize),
    CopyRange {
        from: usize,
        off_in: u64,
        to: usize,
        off_out: u64,
        len: u64,
    },
    Rename {
        from: usize,
        to: usize,
        flags: u8,
    },
    Link(usize, usize),
    Unlink(usize),
    Rmdir(usize),
    Symlink(usize),
    SetXattr {
        path: usize,
        name: usize,
        value: u8,
    },
    GetXattr(usize, usize),
    RemoveXattr(usize, usize),
    Chmod(usize, u32),
    OpenKeep(usize, usize),
    WriteOpen {
        slot: usize,
        offset: u64,
        len: usize,
        seed: u8,
    },
    ReadOpen(usize),
    Close(usize),
    /// Later calls come from root (`false`) or from user 1000.
    Su(bool),
    Chown(usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    let slot = 0..2usize;
    prop_oneof![
        3 => p.clone().prop_map(Op::Mkdir),
        4 => p.clone().prop_map(Op::Create),
        5 => (p.clone(), 0..SPAN, 1usize..10_000, any::<u8>())
            .prop_map(|(path, offset, len, seed)| Op::Write { path, offset, len, seed }),
        2 => (p.clone(), 0..SPAN).prop_map(|(p, s)| Op::Truncate(p, s)),
        2 => (p.clone(), 0..SPAN, 1..SPAN).prop_map(|(path, offset, len)| Op::Punch { path, offset, len }),
        2 => p.clone().prop_map(Op::Read),
        2 => (p.clone(), 0..SPAN, p.clone(), 0..SPAN, 1..SPAN)
            .prop_map(|(from, off_in, to, off_out, len)| Op::CopyRange { from, off_in, to, off_out, len }),
        4 => (p.clone(), p.clone(), 0u8..3).prop_map(|(from, to, flags)| Op::Rename { from, to, flags }),
        2 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Link(a, b)),
        3 => p.clone().prop_map(Op::Unlink),
        2 => p.clone().prop_map(Op::Rmdir),
        1 => p.clone().prop_map(Op::Symlink),
        2 => (p.clone(), 0..XATTRS.len(), any::<u8>())
            .prop_map(|(path, name, value)| Op::SetXattr { path, name, value }),
        1 => (p.clone(), 0..XATTRS.len()).prop_map(|(p, n)| Op::GetXattr(p, n)),
        1 => (p.clone(), 0..XATTRS.len()).prop_map(|(p, n)| Op::RemoveXattr(p, n)),
        2 => (p.clone(), prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o4755), Just(0o1777)])
            .prop_map(|(p, m)| Op::Chmod(p, m)),
        2 => (slot.clone(), p.clone()).prop_map(|(s, p)| Op::OpenKeep(s, p)),
        3 => (slot.clone(), 0..SPAN, 1usize..10_000, any::<u8>())
            .prop_map(|(slot, offset, len, seed)| Op::WriteOpen { slot, offset, len, seed }),
        1 => slot.clone().prop_map(Op::ReadOpen),
        1 => slot.prop_map(Op::Close),
        2 => any::<bool>().prop_map(Op::Su),
        1 => (p, prop_oneof![Just(0u32), Just(ALICE)]).prop_map(|(p, u)| Op::Chown(p, u)),
    ]
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

fn rename_flags(f: u8) -> RenameFlags {
    RenameFlags {
        no_replace: f == 1,
        exchange: f == 2,
    }
}

type Out<T> = Result<T, i32>;

/// The real directory.
struct Real {
    root: PathBuf,
    fds: [Option<i32>; 2],
    alice: bool,
}

/// Acts as `uid`/`gid` on this thread's file-system calls (and drops
/// root's file capabilities with it, as the kernel does for a non-zero
/// fsuid).
fn act_as(uid: u32, gid: u32) {
    // SAFETY: setfsgid/setfsuid change only this thread's credentials.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn check(r: i64) -> Out<i64> {
    if r < 0 { Err(last_errno()) } else { Ok(r) }
}

impl Real {
    fn path(&self, i: usize) -> PathBuf {
        self.root.join(PATHS[i])
    }

    fn open(&self, i: usize, flags: i32) -> Out<i32> {
        // SAFETY: a valid NUL-terminated path; the returned fd is owned here.
        check(unsafe { libc::open(c(&self.path(i)).as_ptr(), flags, 0o644) } as i64)
            .map(|fd| fd as i32)
    }

    fn close(fd: i32) {
        // SAFETY: `fd` was opened by this harness and is closed once.
        unsafe { libc::close(fd) };
    }

    fn pwrite(fd: i32, offset: u64, data: &[u8]) -> Out<()> {
        // SAFETY: `data` is valid for `data.len()` bytes.
        let n = check(
            unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), offset as i64) } as i64,
        )?;
        assert_eq!(n as usize, data.len(), "short write on the real side");
        Ok(())
    }

    fn read_fd(fd: i32) -> Out<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: `buf` is valid for its length.
            let n = check(unsafe {
                libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), out.len() as i64)
            } as i64)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    fn apply(&mut self, op: &Op) -> Out<Option<Vec<u8>>> {
        if let Op::Su(alice) = *op {
            self.alice = alice && is_root();
            return Ok(None);
        }
        if self.alice {
            act_as(ALICE, ALICE);
        }
        let out = self.call(op);
        if self.alice {
            act_as(0, 0);
        }
        out
    }

    fn call(&mut self, op: &Op) -> Out<Option<Vec<u8>>> {
        let p = |i: usize| c(&self.path(i));
        // SAFETY: every call below gets valid NUL-terminated paths and
        // buffers that live across the call.
        unsafe {
            match *op {
                Op::Mkdir(i) => check(libc::mkdir(p(i).as_ptr(), 0o755) as i64).map(|_| None),
                Op::Create(i) => {
                    let fd = self.open(i, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)?;
                    Self::close(fd);
                    Ok(None)
                }
                Op::Write {
                    path,
                    offset,
                    len,
                    seed,
                } => {
                    let fd = self.open(path, libc::O_WRONLY)?;
                    let r = Self::pwrite(fd, offset, &bytes(len, seed));
                    Self::close(fd);
                    r.map(|_| None)
                }
                Op::Truncate(i, size) => {
                    check(libc::truncate(p(i).as_ptr(), size as i64) as i64).map(|_| None)
                }
                Op::Punch { path, offset, len } => {
                    let fd = self.open(path, libc::O_WRONLY)?;
                    let r = check(libc::fallocate(
                        fd,
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        offset as i64,
                        len as i64,
                    ) as i64);
                    Self::close(fd);
                    r.map(|_| None)
                }
                Op::CopyRange {
                    from,
                    off_in,
                    to,
                    off_out,
                    len,
                } => {
                    let fin = self.open(from, libc::O_RDONLY)?;
                    let fout = match self.open(to, libc::O_WRONLY) {
                        Ok(fd) => fd,
                        Err(e) => {
                            Self::close(fin);
                            return Err(e);
                        }
                    };
                    let (mut a, mut b) = (off_in as i64, off_out as i64);
                    let mut total = 0i64;
                    // The kernel may copy less than asked: go on to the end.
                    let r = loop {
                        let n = libc::copy_file_range(
                            fin,
                            &mut a,
                            fout,
                            &mut b,
                            (len as i64 - total) as usize,
                            0,
                        );
                        if n < 0 {
                            break Err(last_errno());
                        }
                        total += n as i64;
                        if n == 0 || total >= len as i64 {
                            break Ok(Some(total.to_string().into_bytes()));
                        }
                    };
                    Self::close(fin);
                    Self::close(fout);
                    r
                }
                Op::Read(i) => {
                    let fd = self.open(i, libc::O_RDONLY)?;
                    let r = Self::read_fd(fd);
                    Self::close(fd);
                    r.map(Some)
                }
                Op::Rename { from, to, flags } => {
                    let f = match flags {
                        1 => libc::RENAME_NOREPLACE,
                        2 => libc::RENAME_EXCHANGE,
                        _ => 0,
                    };
                    check(libc::renameat2(
                        libc::AT_FDCWD,
                        p(from).as_ptr(),
                        libc::AT_FDCWD,
                        p(to).as_ptr(),
                        f,
                    ) as i64)
                    .map(|_| None)
                }
                Op::Link(a, b) => {
                    check(libc::link(p(a).as_ptr(), p(b).as_ptr()) as i64).map(|_| None)
                }
                Op::Unlink(i) => check(libc::unlink(p(i).as_ptr()) as i64).map(|_| None),
                Op::Rmdir(i) => check(libc::rmdir(p(i).as_ptr()) as i64).map(|_| None),
                Op::Symlink(i) => {
                    let t = CString::new(DANGLING).unwrap();
                    check(libc::symlink(t.as_ptr(), p(i).as_ptr()) as i64).map(|_| None)
                }
                Op::SetXattr { path, name, value } => {
                    let n = CString::new(XATTRS[name]).unwrap();
                    let v = [value; 3];
                    check(libc::lsetxattr(
                        p(path).as_ptr(),
                        n.as_ptr(),
                        v.as_ptr().cast(),
                        v.len(),
                        0,
                    ) as i64)
                    .map(|_| None)
                }
                Op::GetXattr(i, name) => {
                    let n = CString::new(XATTRS[name]).unwrap();
                    let mut buf = [0u8; 256];
                    let len = check(libc::lgetxattr(
                        p(i).as_ptr(),
                        n.as_ptr(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    ) as i64)?;
                    Ok(Some(buf[..len as usize].to_vec()))
                }
                Op::RemoveXattr(i, name) => {
                    let n = CString::new(XATTRS[name]).unwrap();
                    check(libc::lremovexattr(p(i).as_ptr(), n.as_ptr()) as i64).map(|_| None)
                }
                Op::Chmod(i, mode) => check(libc::chmod(p(i).as_ptr(), mode) as i64).map(|_| None),
                Op::OpenKeep(slot, i) => {
                    let fd = self.open(i, libc::O_RDWR)?;
                    if let Some(old) = self.fds[slot].replace(fd) {
                        Self::close(old);
                    }
                    Ok(None)
                }
                Op::WriteOpen {
                    slot,
                    offset,
                    len,
                    seed,
                } => match self.fds[slot] {
                    Some(fd) => Self::pwrite(fd, offset, &bytes(len, seed)).map(|_| None),
                    None => Err(libc::EBADF),
                },
                Op::ReadOpen(slot) => match self.fds[slot] {
                    Some(fd) => {
                        let mut st: libc::stat = std::mem::zeroed();
                        check(libc::fstat(fd, &mut st) as i64)?;
                        let mut data = Self::read_fd(fd)?;
                        data.extend_from_slice(format!("|nlink={}", st.st_nlink).as_bytes());
                        Ok(Some(data))
                    }
                    None => Err(libc::EBADF),
                },
                Op::Close(slot) => match self.fds[slot].take() {
                    Some(fd) => {
                        Self::close(fd);
                        Ok(None)
                    }
                    None => Err(libc::EBADF),
                },
                Op::Chown(i, uid) => {
                    check(libc::chown(p(i).as_ptr(), uid, u32::MAX) as i64).map(|_| None)
                }
                Op::Su(_) => Ok(None),
            }
        }
    }
}

/// What a path holds, as both sides report it.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    /// Files: contents; symlinks: target; directories: nothing.
    data: Vec<u8>,
    /// Files: where data starts and stops again (`SEEK_DATA`,
    /// `SEEK_HOLE`), so holes match too.
    extents: Vec<(u64, u64)>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// The data runs of a real file, by `lseek`.
fn real_extents(path: &Path, size: u64) -> Vec<(u64, u64)> {
    let cp = c(path);
    // SAFETY: a valid path; the fd is closed below.
    let fd = unsafe { libc::open(cp.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0, "open {}", path.display());
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < size {
        // SAFETY: an open fd.
        let data = unsafe { libc::lseek(fd, at as i64, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: an open fd.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        out.push((data as u64, hole as u64));
        at = hole as u64;
    }
    // SAFETY: closed once.
    unsafe { libc::close(fd) };
    out
}

fn real_tree(root: &Path) -> BTreeMap<String, Entry> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let (kind, data) = if ft.is_dir() {
                dirs.push(path.clone());
                (NodeKind::Dir, Vec::new())
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&path).unwrap();
                (NodeKind::Symlink, t.as_os_str().as_bytes().to_vec())
            } else if ft.is_fifo() {
                (NodeKind::Fifo, Vec::new())
            } else {
                (NodeKind::File, std::fs::read(&path).unwrap())
            };
            let mut xattrs = BTreeMap::new();
            let cp = c(&path);
            let mut names = vec![0u8; 4096];
            // SAFETY: valid path and buffer.
            let n =
                unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
            assert!(n >= 0, "llistxattr {}", path.display());
            for name in names[..n as usize]
                .split(|&b| b == 0)
                .filter(|n| !n.is_empty())
            {
                let cn = CString::new(name).unwrap();
                let mut v = vec![0u8; 65536];
                // SAFETY: valid path, name and buffer.
                let len = unsafe {
                    libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len())
                };
                assert!(len >= 0);
                xattrs.insert(
                    String::from_utf8_lossy(name).into_owned(),
                    v[..len as usize].to_vec(),
                );
            }
            let extents = if kind == NodeKind::File {
                real_extents(&path, data.len() as u64)
            } else {
                Vec::new()
            };
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    nlink: md.nlink() as u32,
                    data,
                    extents,
                    xattrs,
                },
            );
        }
    }
    out
}

/// The fsx side.
struct Side {
    fs: Fs,
    fhs: [Option<Fh>; 2],
    me: Caller,
}

impl Side {
    /// The directory holding `path`'s last component, resolved as the
    /// kernel resolves it.
    async fn parent(&self, path: &str) -> Out<(u64, String)> {
        let mut at = self.fs.root();
        let parts: Vec<&str> = path.split('/').collect();
        for comp in &parts[..parts.len() - 1] {
            let a = self
                .fs
                .lookup(at, comp.as_bytes(), &self.me)
                .await
                .map_err(|e| e.errno())?;
            match a.kind {
                NodeKind::Dir => at = a.ino,
                NodeKind::Symlink => return Err(errno::ENOENT),
                _ => return Err(errno::ENOTDIR),
            }
        }
        // The kernel needs search permission on the last directory too
        // before it hands the last component to the file system.
        self.fs
            .lookup(at, b".", &self.me)
            .await
            .map_err(|e| e.errno())?;
        Ok((at as u64, parts[parts.len() - 1].to_string()))
    }

    /// The inode `path` names; `follow` resolves a final symlink (which
    /// always dangles here).
    async fn resolve(&self, path: &str, follow: bool) -> Out<fsx_posix::Attr> {
        let (dir, name) = self.parent(path).await?;
        let a = self
            .fs
            .lookup(dir as i64, name.as_bytes(), &self.me)
            .await
            .map_err(|e| e.errno())?;
        if follow && a.kind == NodeKind::Symlink {
            return Err(errno::ENOENT);
        }
        Ok(a)
    }

    async fn read_all(&self, fh: Fh) -> Out<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let chunk = self
                .fs
                .read(fh, out.len() as u64, 65536)
                .await
                .map_err(|e| e.errno())?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    async fn apply(&mut self, op: &Op) -> Out<Option<Vec<u8>>> {
        let fs = &self.fs;
        let me = &self.me;
        let e = |e: fsx_posix::FsError| {
            // An I/O error is never an answer the kernel gives here: show
            // what it was.
            assert_ne!(e.errno(), errno::EIO, "fsx: {e} ({e:?})");
            e.errno()
        };
        match *op {
            Op::Mkdir(i) => {
                let (d, n) = self.parent(PATHS[i]).await?;
                fs.mkdir(d as i64, n.as_bytes(), 0o755, me)
                    .await
                    .map_err(e)?;
                Ok(None)
            }
            Op::Create(i) => {
                let (d, n) = self.parent(PATHS[i]).await?;
                let (_, fh) = fs
                    .create(
                        d as i64,
                        n.as_bytes(),
                        0o644,
                        OpenFlags::read_write(),
                        true,
                        me,
                    )
                    .await
                    .map_err(e)?;
                fs.release(fh).await.map_err(e)?;
                Ok(None)
            }
            Op::Write {
                path,
                offset,
                len,
                seed,
            } => {
                let a = self.resolve(PATHS[path], true).await?;
                let flags = OpenFlags {
                    write: true,
                    ..OpenFlags::default()
                };
                let fh = fs.open(a.ino, flags, me).await.map_err(e)?;
                let r = fs.write(fh, offset, &bytes(len, seed)).await.map_err(e);
                fs.release(fh).await.map_err(e)?;
                r.map(|_| None)
            }
            Op::Truncate(i, size) => {
                let a = self.resolve(PATHS[i], true).await?;
                let set = SetAttrs {
                    size: Some(size),
                    ..SetAttrs::default()
                };
                fs.setattr(a.ino, &set, None, me).await.map_err(e)?;
                Ok(None)
            }
            Op::Punch { path, offset, len } => {
                let a = self.resolve(PATHS[path], true).await?;
                let flags = OpenFlags {
                    write: true,
                    ..OpenFlags::default()
                };
                let fh = fs.open(a.ino, flags, me).await.map_err(e)?;
                let r = fs.fallocate(fh, offset, len, true, true).await.map_err(e);
                fs.release(fh).await.map_err(e)?;
                r.map(|_| None)
            }
            Op::CopyRange {
                from,
                off_in,
                to,
                off_out,
                len,
            } => {
                let a = self.resolve(PATHS[from], true).await?;
                if a.kind == NodeKind::Dir {
                    // The kernel opens a directory for reading (through
                    // opendir) and refuses the copy after the destination
                    // opened.
                    let b = self.resolve(PATHS[to], true).await?;
                    let wo = OpenFlags {
                        write: true,
                        ..OpenFlags::default()
                    };
                    let fout = fs.open(b.ino, wo, me).await.map_err(e)?;
                    fs.release(fout).await.map_err(e)?;
                    return Err(errno::EISDIR);
                }
                let fin = fs
                    .open(a.ino, OpenFlags::read_only(), me)
                    .await
                    .map_err(e)?;
                let b = match self.resolve(PATHS[to], true).await {
                    Ok(b) => b,
                    Err(x) => {
                        fs.release(fin).await.map_err(e)?;
                        return Err(x);
                    }
                };
                let wo = OpenFlags {
                    write: true,
                    ..OpenFlags::default()
                };
                let fout = match fs.open(b.ino, wo, me).await {
                    Ok(f) => f,
                    Err(x) => {
                        fs.release(fin).await.map_err(e)?;
                        return Err(e(x));
                    }
                };
                // As on the kernel side: go on until the end or nothing
                // more comes (a copy within one file can find bytes its
                // first call wrote).
                let mut total = 0u64;
                let r = loop {
                    match fs
                        .copy_file_range(fin, off_in + total, fout, off_out + total, len - total)
                        .await
                    {
                        Err(x) => break Err(e(x)),
                        Ok(n) => {
                            total += n;
                            if n == 0 || total >= len {
                                break Ok(total);
                            }
                        }
                    }
                };
                fs.release(fin).await.map_err(e)?;
                fs.release(fout).await.map_err(e)?;
                r.map(|n| Some(n.to_string().into_bytes()))
            }
            Op::Read(i) => {
                let a = self.resolve(PATHS[i], true).await?;
                let fh = fs
                    .open(a.ino, OpenFlags::read_only(), me)
                    .await
                    .map_err(e)?;
                let r = self.read_all(fh).await;
                fs.release(fh).await.map_err(e)?;
                r.map(Some)
            }
            Op::Rename { from, to, flags } => {
                let (d1, n1) = self.parent(PATHS[from]).await?;
                let (d2, n2) = self.parent(PATHS[to]).await?;
                fs.rename(
                    d1 as i64,
                    n1.as_bytes(),
                    d2 as i64,
                    n2.as_bytes(),
                    rename_flags(flags),
                    me,
                )
                .await
                .map_err(e)?;
                Ok(None)
            }
            Op::Link(a, b) => {
                let src = self.resolve(PATHS[a], false).await?;
                let (d, n) = self.parent(PATHS[b]).await?;
                fs.link(src.ino, d as i64, n.as_bytes(), me)
                    .await
                    .map_err(e)?;
                Ok(None)
            }
            Op::Unlink(i) => {
                let (d, n) = self.parent(PATHS[i]).await?;
                fs.unlink(d as i64, n.as_bytes(), me).await.map_err(e)?;
                Ok(None)
            }
            Op::Rmdir(i) => {
                let (d, n) = self.parent(PATHS[i]).await?;
                fs.rmdir(d as i64, n.as_bytes(), me).await.map_err(e)?;
                Ok(None)
            }
            Op::Symlink(i) => {
                let (d, n) = self.parent(PATHS[i]).await?;
                fs.symlink(d as i64, n.as_bytes(), DANGLING.as_bytes(), me)
                    .await
                    .map_err(e)?;
                Ok(None)
            }
            Op::SetXattr { path, name, value } => {
                let a = self.resolve(PATHS[path], false).await?;
                fs.setxattr(
                    a.ino,
                    XATTRS[name].as_bytes(),
                    &[value; 3],
                    false,
                    false,
                    me,
                )
                .await
                .map_err(e)?;
                Ok(None)
            }
            Op::GetXattr(i, name) => {
                let a = self.resolve(PATHS[i], false).await?;
                let v = fs
                    .getxattr(a.ino, XATTRS[name].as_bytes(), me)
                    .await
                    .map_err(e)?;
                Ok(Some(v.to_vec()))
            }
            Op::RemoveXattr(i, name) => {
                let a = self.resolve(PATHS[i], false).await?;
                fs.removexattr(a.ino, XATTRS[name].as_bytes(), me)
                    .await
                    .map_err(e)?;
                Ok(None)
            }
            Op::Chmod(i, mode) => {
                let a = self.resolve(PATHS[i], true).await?;
                let set = SetAttrs {
                    mode: Some(mode),
                    ..SetAttrs::default()
                };
                fs.setattr(a.ino, &set, None, me).await.map_err(e)?;
                Ok(None)
            }
            Op::OpenKeep(slot, i) => {
                let a = self.resolve(PATHS[i], true).await?;
                let fh = fs
                    .open(a.ino, OpenFlags::read_write(), me)
                    .await
                    .map_err(e)?;
                if let Some(old) = self.fhs[slot].replace(fh) {
                    fs.release(old).await.map_err(e)?;
                }
                Ok(None)
            }
            Op::WriteOpen {
                slot,
                offset,
                len,
                seed,
            } => match self.fhs[slot] {
                // The descriptor stays open across a change of user: the
                // write is the current user's.
                Some(fh) => fs
                    .write_as(fh, offset, &bytes(len, seed), me)
                    .await
                    .map(|_| None)
                    .map_err(e),
                None => Err(errno::EBADF),
            },
            Op::ReadOpen(slot) => match self.fhs[slot] {
                Some(fh) => {
                    let ino = fs_ino(fs, fh);
                    let nlink = fs.getattr(ino).await.map_err(e)?.nlink;
                    let mut data = self.read_all(fh).await?;
                    data.extend_from_slice(format!("|nlink={nlink}").as_bytes());
                    Ok(Some(data))
                }
                None => Err(errno::EBADF),
            },
            Op::Close(slot) => match self.fhs[slot].take() {
                Some(fh) => fs.release(fh).await.map(|_| None).map_err(e),
                None => Err(errno::EBADF),
            },
            Op::Chown(i, uid) => {
                let a = self.resolve(PATHS[i], true).await?;
                let set = SetAttrs {
                    uid: Some(uid),
                    ..SetAttrs::default()
                };
                fs.setattr(a.ino, &set, None, me).await.map_err(e)?;
                Ok(None)
            }
            Op::Su(alice) => {
                self.me = caller(alice && is_root());
                Ok(None)
            }
        }
    }

    /// The whole tree, read as the test's own user (as the kernel side's
    /// is), whoever the calls currently come from.
    async fn tree(&self) -> BTreeMap<String, Entry> {
        let fs = &self.fs;
        let me = caller(false);
        let mut out = BTreeMap::new();
        let mut dirs = vec![(fs.root(), String::new())];
        while let Some((dir, prefix)) = dirs.pop() {
            for (d, plus) in fs.readdir_plus(dir, None, 10_000).await.unwrap() {
                let name = String::from_utf8(d.name.to_vec()).unwrap();
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let a = fs.getattr(d.ino).await.unwrap();
                assert_eq!(a.kind, d.kind, "{path}: entry kind and inode kind differ");
                assert_eq!(plus, a, "{path}: readdirplus and getattr differ");
                let mut extents = Vec::new();
                let data = match a.kind {
                    NodeKind::Dir => {
                        dirs.push((d.ino, path.clone()));
                        Vec::new()
                    }
                    NodeKind::Symlink => fs.readlink(d.ino).await.unwrap().to_vec(),
                    NodeKind::File => {
                        let fh = fs.open(d.ino, OpenFlags::read_only(), &me).await.unwrap();
                        let data = self.read_all(fh).await.unwrap();
                        extents = fsx_extents(fs, fh, data.len() as u64).await;
                        fs.release(fh).await.unwrap();
                        assert_eq!(
                            data.len() as u64,
                            a.size,
                            "{path}: size and contents disagree"
                        );
                        data
                    }
                    _ => Vec::new(),
                };
                let mut xattrs = BTreeMap::new();
                for n in fs.listxattr(d.ino, &me).await.unwrap() {
                    let v = fs.getxattr(d.ino, &n, &me).await.unwrap();
                    xattrs.insert(String::from_utf8_lossy(&n).into_owned(), v.to_vec());
                }
                out.insert(
                    path,
                    Entry {
                        kind: a.kind,
                        mode: a.mode,
                        uid: a.uid,
                        gid: a.gid,
                        nlink: a.nlink,
                        data,
                        extents,
                        xattrs,
                    },
                );
            }
        }
        out
    }
}

/// The data runs of an fsx file, by `Fs::lseek`.
async fn fsx_extents(fs: &Fs, fh: Fh, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < size {
        let Ok(data) = fs.lseek(fh, at, Whence::Data).await else {
            break;
        };
        let hole = fs.lseek(fh, data, Whence::Hole).await.unwrap();
        out.push((data, hole));
        at = hole;
    }
    out
}

/// The inode behind a handle (through a stat of what it reads).
fn fs_ino(fs: &Fs, fh: Fh) -> i64 {
    fs.handle_ino(fh).expect("an open handle")
}

/// The metadata engine a case runs on.
enum Meta {
    Sqlite,
    Postgres(Arc<fsx_testkit::postgres::PgServer>),
}

async fn volume(meta: &Meta, dir: &Path) -> Volume {
    let engine: fsx_engine::MetaArc = match meta {
        Meta::Sqlite => {
            Arc::new(fsx_meta::sqlite::SqliteMeta::open(dir.join("meta.db"), true).unwrap())
        }
        Meta::Postgres(server) => Arc::new(
            fsx_meta::postgres::PgMeta::connect(&server.fresh_url())
                .await
                .unwrap(),
        ),
    };
    let store = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
    Volume::create(
        engine,
        store,
        Arc::new(SystemEnv::new()),
        VolumeConfig::new("diff", 256 * 1024, "data", 1),
        VolumeOptions::default(),
    )
    .await
    .unwrap()
}

async fn run(meta: &Meta, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let real_root = dir.path().join("real");
    std::fs::create_dir(&real_root).unwrap();
    // Both roots are root's, 0755; the second user reaches the real one.
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), &real_root] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut real = Real {
        root: real_root.clone(),
        fds: [None, None],
        alice: false,
    };
    let fsx_dir = dir.path().join("fsx");
    std::fs::create_dir(&fsx_dir).unwrap();
    let fs = Fs::new(volume(meta, &fsx_dir).await).await.unwrap();
    let mut side = Side {
        fs,
        fhs: [None, None],
        me: caller(false),
    };
    let mut outcome = Ok(());
    for (i, op) in ops.iter().enumerate() {
        let want = real.apply(op);
        let got = side.apply(op).await;
        if want != got {
            outcome = Err(TestCaseError::fail(format!(
                "step {i} {op:?}: the kernel gave {}, fsx {}",
                brief(&want),
                brief(&got)
            )));
            break;
        }
        let (rt, ft) = (real_tree(&real_root), side.tree().await);
        if rt != ft {
            outcome = Err(TestCaseError::fail(format!(
                "after step {i} {op:?} the trees differ:\n kernel {:?}\n fsx    {:?}",
                summary(&rt),
                summary(&ft)
            )));
            break;
        }
    }
    for fd in real.fds.iter().flatten() {
        Real::close(*fd);
    }
    side.fs.close_all().await.unwrap();
    outcome
}

fn brief(r: &Out<Option<Vec<u8>>>) -> String {
    match r {
        Ok(None) => "ok".into(),
        Ok(Some(d)) => format!(
            "{} bytes ({:?}…)",
            d.len(),
            &d[d.len().saturating_sub(12)..]
        ),
        Err(e) => format!("errno {e}"),
    }
}

fn summary(t: &BTreeMap<String, Entry>) -> Vec<String> {
    t.iter()
        .map(|(p, e)| {
            format!(
                "{p} {:?} {:o} {}:{} n{} {}B {:?} data {:?}",
                e.kind,
                e.mode,
                e.uid,
                e.gid,
                e.nlink,
                e.data.len(),
                e.xattrs.keys().collect::<Vec<_>>(),
                e.extents
            )
        })
        .collect()
}

fn cases(default: u32) -> u32 {
    std::env::var("FSX_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn set_umask() {
    // Both sides get the modes asked for: the kernel applies the umask
    // before it calls a file system, so the fsx side receives modes with
    // it applied already.
    // SAFETY: umask has no memory effects.
    unsafe { libc::umask(0) };
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn sqlite_tree_behaves_like_the_kernel(ops in proptest::collection::vec(op(), 1..40)) {
        set_umask();
        runtime().block_on(run(&Meta::Sqlite, ops))?;
    }
}

/// One PostgreSQL server for every case, owned by the test so that it
/// stops when the test ends (a static would never be dropped).
#[test]
fn postgres_tree_behaves_like_the_kernel() {
    set_umask();
    let server = Arc::new(fsx_testkit::postgres::PgServer::start());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        runtime().block_on(run(&Meta::Postgres(server.clone()), ops))
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
