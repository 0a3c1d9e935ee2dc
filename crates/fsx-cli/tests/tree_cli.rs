//! `fsx import`, `fsx export` and `fsx ls` on real local trees.
//!
//! The round trip builds a tree of about 2,000 files with everything a
//! tree can hold — nested and empty directories, odd byte names, symlinks
//! (dangling ones too), hard links across directories, extended
//! attributes, sparse files, set-id and sticky modes, nanosecond times, a
//! FIFO and a socket, and as root owners, `trusted.` attributes and device
//! nodes — imports it, exports it to a new directory, runs the real `diff
//! -r --no-dereference`, and compares every path's mode, owner, link
//! count, size, times, symlink target, attributes, data stretches (holes)
//! and which paths share an inode.
//!
//! Every access time in the source lies in the future and after the
//! modification time: with `relatime` (the usual mount option) reading a
//! directory or file then leaves it alone, so the tree's times stay what
//! the test set while the test and the import read it.
//!
//! Run as root (as CI does) the root-only parts are asserted too; as
//! anyone else everything else still is.

mod common;

use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

fn is_root() -> bool {
    // SAFETY: geteuid only reads the process's credentials.
    unsafe { libc::geteuid() == 0 }
}

fn at(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_times(p: &Path, atime_ns: i64, mtime_ns: i64) {
    let ts = |ns: i64| libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    };
    let times = [ts(atime_ns), ts(mtime_ns)];
    let path = c_path(p);
    // SAFETY: a valid C string and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {p:?}: {}", std::io::Error::last_os_error());
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let path = c_path(p);
    let name = CString::new(name).unwrap();
    // SAFETY: valid C strings; `value` is readable for its length.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let path = c_path(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: the buffer is writable for its length.
    let n = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "llistxattr {p:?}");
    buf.truncate(n as usize);
    let mut out = BTreeMap::new();
    for name in buf.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(n >= 0, "lgetxattr {p:?}");
        value.truncate(n as usize);
        out.insert(name.to_vec(), value);
    }
    out
}

fn mknod(p: &Path, mode: u32, dev: u64) -> std::io::Result<()> {
    let path = c_path(p);
    // SAFETY: a valid C string.
    let r = unsafe { libc::mknod(path.as_ptr(), mode as libc::mode_t, dev as libc::dev_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A file's data stretches as `SEEK_DATA`/`SEEK_HOLE` report them.
fn segments(p: &Path) -> Vec<(u64, u64)> {
    let f = File::open(p).unwrap();
    let size = f.metadata().unwrap().len() as i64;
    let mut out = Vec::new();
    let mut off = 0;
    while off < size {
        // SAFETY: lseek only moves the descriptor's offset.
        let start = unsafe { libc::lseek(f.as_raw_fd(), off, libc::SEEK_DATA) };
        if start < 0 {
            break;
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(f.as_raw_fd(), start, libc::SEEK_HOLE) };
        out.push((start as u64, end as u64));
        off = end;
    }
    out
}

/// Everything compared of one path.
#[derive(Debug, PartialEq)]
struct Info {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    /// Regular files and symlinks (a directory's size is the file
    /// system's business).
    size: Option<u64>,
    atime_ns: i64,
    mtime_ns: i64,
    rdev: u64,
    target: Option<Vec<u8>>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    segments: Option<Vec<(u64, u64)>>,
    contents: Option<Vec<u8>>,
}

/// A tree as compared: every path (relative, bytes; the root is empty),
/// and the groups of paths sharing an inode.
struct Snapshot {
    paths: BTreeMap<Vec<u8>, Info>,
    links: BTreeSet<Vec<Vec<u8>>>,
}

fn snapshot(root: &Path) -> Snapshot {
    let mut paths = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    let mut stack = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let p = at(root, &rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let t = m.file_type();
        if t.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                let name = e.unwrap().file_name();
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(name.as_bytes());
                stack.push(child);
            }
        } else {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
        let regular = t.is_file();
        paths.insert(
            rel,
            Info {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                nlink: m.nlink(),
                size: (regular || t.is_symlink()).then_some(m.len()),
                atime_ns: m.atime() * 1_000_000_000 + m.atime_nsec(),
                mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                rdev: m.rdev(),
                target: t
                    .is_symlink()
                    .then(|| std::fs::read_link(&p).unwrap().into_os_string().into_vec()),
                xattrs: xattrs(&p),
                segments: regular.then(|| segments(&p)),
                contents: regular.then(|| std::fs::read(&p).unwrap()),
            },
        );
    }
    let links = inodes
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Snapshot { paths, links }
}

/// Asserts that `b` holds exactly `a`'s paths with equal [`Info`] and
/// the same hard-link groups.
fn assert_same(a: &Snapshot, b: &Snapshot) {
    let names = |s: &Snapshot| s.paths.keys().cloned().collect::<BTreeSet<_>>();
    let (na, nb) = (names(a), names(b));
    let missing: Vec<_> = na
        .difference(&nb)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let extra: Vec<_> = nb
        .difference(&na)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    let mut differ = Vec::new();
    for (p, ia) in &a.paths {
        let ib = &b.paths[p];
        if ia != ib {
            let mut d = format!("{:?}:", String::from_utf8_lossy(p));
            macro_rules! field {
                ($f:ident) => {
                    if ia.$f != ib.$f {
                        d += &format!(" {} {:?} != {:?};", stringify!($f), ia.$f, ib.$f);
                    }
                };
            }
            field!(mode);
            field!(uid);
            field!(gid);
            field!(nlink);
            field!(size);
            field!(atime_ns);
            field!(mtime_ns);
            field!(rdev);
            field!(target);
            field!(xattrs);
            field!(segments);
            if ia.contents != ib.contents {
                d += " contents differ;";
            }
            differ.push(d);
        }
    }
    assert!(
        differ.is_empty(),
        "{} paths differ, first: {:#?}",
        differ.len(),
        &differ[..differ.len().min(20)]
    );
    assert_eq!(a.links, b.links, "hard-link groups differ");
}

/// Runs the real `diff -r --no-dereference`. GNU diff reports any two
/// special files (even two FIFOs) as different; those lines are accepted
/// when both sides are of the same type (their attributes are compared
/// by [`assert_same`]), and nothing else may be printed.
fn assert_diff_clean(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .expect("diff runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let unexpected: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            let kinds = [
                "fifo",
                "socket",
                "character special file",
                "block special file",
            ];
            !kinds.iter().any(|k| {
                l.starts_with("File ")
                    && l.contains(&format!(" is a {k} while file "))
                    && l.ends_with(&format!(" is a {k}"))
            })
        })
        .collect();
    assert!(
        matches!(out.status.code(), Some(0 | 1)) && unexpected.is_empty(),
        "diff -r found differences ({:?}): {unexpected:#?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the source tree; returns the number of regular files made.
struct Builder {
    root: PathBuf,
    made: u64,
}

impl Builder {
    fn path(&self, rel: &[u8]) -> PathBuf {
        at(&self.root, rel)
    }

    fn dir(&mut self, rel: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn file(&mut self, rel: &[u8], len: usize) -> PathBuf {
        let p = self.path(rel);
        self.made += 1;
        std::fs::write(&p, random(len, self.made)).unwrap();
        p
    }

    fn symlink(&mut self, rel: &[u8], target: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &p).unwrap();
        p
    }

    fn chmod(&self, rel: &[u8], mode: u32) {
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Names that are not plain: spaces, control characters, bytes that are
/// not UTF-8, quotes, the longest allowed.
fn odd_names() -> Vec<Vec<u8>> {
    vec![
        b"with space".to_vec(),
        b" leading and trailing ".to_vec(),
        b"new\nline".to_vec(),
        b"tab\there".to_vec(),
        b"bad\xff\xfebytes".to_vec(),
        "\u{e9}t\u{e9} \u{1f600}".as_bytes().to_vec(),
        b"-dash".to_vec(),
        b"quote\"and'apostrophe".to_vec(),
        b"back\\slash".to_vec(),
        b"esc\x1b[31mred".to_vec(),
        vec![b'n'; 255],
    ]
}

/// The tree of the round trip: about 2,000 files.
fn build_tree(root: &Path) {
    let root_user = is_root();
    let mut b = Builder {
        root: root.to_path_buf(),
        made: 0,
    };
    // Bulk: 8 × 6 directories of 42 files, some empty, a few of 200 KB.
    for d in 0..8 {
        for s in 0..6 {
            let dir = format!("d{d}/s{s}");
            b.dir(dir.as_bytes());
            for f in 0..42 {
                let n = d * 252 + s * 42 + f;
                let len = match n % 97 {
                    0 => 0,
                    1 => 200_000,
                    _ => (n * 7919) % 3000,
                };
                let p = b.file(format!("{dir}/f{f}").as_bytes(), len);
                if n % 10 == 3 {
                    set_xattr(&p, "user.note", &random(n % 40, n as u64)).unwrap();
                }
                if n % 50 == 7 {
                    set_xattr(&p, "user.empty", b"").unwrap();
                    set_xattr(&p, "user.binary\u{e9}", b"\0\x01\xff\0").unwrap();
                }
                if root_user && n % 25 == 11 {
                    set_xattr(&p, "trusted.t", format!("trusted {n}").as_bytes()).unwrap();
                }
            }
            set_xattr(&b.path(dir.as_bytes()), "user.dir", dir.as_bytes()).unwrap();
        }
    }
    // Deep and empty directories.
    let deep = (0..12)
        .map(|i| format!("level{i}"))
        .collect::<Vec<_>>()
        .join("/");
    b.dir(format!("deep/{deep}").as_bytes());
    b.file(format!("deep/{deep}/bottom").as_bytes(), 123);
    b.dir(b"empty");
    b.dir(b"d1/s1/empty-inside");
    b.file(b"empty-file", 0);

    // Odd names: files, a directory, a symlink.
    b.dir(b"names");
    for (i, name) in odd_names().into_iter().enumerate() {
        let mut rel = b"names/".to_vec();
        rel.extend_from_slice(&name);
        b.file(&rel, 10 + i);
    }
    b.dir(b"names/dir \xff\nx");
    b.file(b"names/dir \xff\nx/inner", 5);

    // Symlinks: to files and directories, dangling, absolute, looping,
    // with a target that is not UTF-8.
    b.dir(b"links");
    b.symlink(b"links/to-file", b"../d0/s0/f1");
    b.symlink(b"links/to-dir", b"../d1");
    b.symlink(b"links/dangling", b"nowhere/at/all");
    b.symlink(b"links/dangling2", b"../missing \xff\xfe");
    b.symlink(b"links/absolute", b"/nonexistent/abs/path");
    b.symlink(b"links/loop", b"loop");
    b.symlink(b"links/new\nline", b"target with\nnewline");
    b.symlink(b"links/long", &[b'x'; 1000]);
    for i in 0..12 {
        b.symlink(
            format!("d{}/s2/link{i}", i % 8).as_bytes(),
            format!("f{i}").as_bytes(),
        );
    }
    if root_user {
        // Only trusted attributes may sit on a symlink.
        set_xattr(&b.path(b"links/to-file"), "trusted.on-link", b"x").unwrap();
    }

    // Hard links: 12 inodes with 3 or 4 names across directories.
    b.dir(b"hard");
    for i in 0..12u32 {
        let first = b.file(format!("hard/h{i}").as_bytes(), 100 + i as usize * 37);
        set_xattr(&first, "user.linked", &i.to_le_bytes()).unwrap();
        let others = [
            format!("d{}/s3/hl{i}", i % 8),
            format!("d{}/s4/hl{i} b", (i + 3) % 8),
        ];
        for o in others {
            std::fs::hard_link(&first, b.path(o.as_bytes())).unwrap();
        }
        if i % 3 == 0 {
            let mut odd = b"hard/\xff".to_vec();
            odd.extend_from_slice(i.to_string().as_bytes());
            std::fs::hard_link(&first, b.path(&odd)).unwrap();
        }
    }

    // Sparse files: a hole in the middle, a hole at the end, all hole,
    // data not aligned to blocks.
    b.dir(b"sparse");
    let f = File::create(b.path(b"sparse/middle")).unwrap();
    f.write_all_at(&random(5000, 1), 0).unwrap();
    f.write_all_at(&random(8192, 2), 3 << 20).unwrap();
    let f = File::create(b.path(b"sparse/tail")).unwrap();
    f.write_all_at(&random(4096, 3), 0).unwrap();
    f.set_len(2 << 20).unwrap();
    File::create(b.path(b"sparse/all-hole"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let f = File::create(b.path(b"sparse/unaligned")).unwrap();
    f.write_all_at(&random(100, 4), 100).unwrap();
    f.write_all_at(&random(50, 5), 1_000_000).unwrap();
    f.set_len(2_000_000).unwrap();

    // Special files.
    b.dir(b"special");
    mknod(&b.path(b"special/fifo"), libc::S_IFIFO | 0o640, 0).unwrap();
    let sock = std::os::unix::net::UnixListener::bind(b.path(b"special/socket")).unwrap();
    drop(sock);
    if root_user {
        mknod(
            &b.path(b"special/null"),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        )
        .unwrap();
        mknod(
            &b.path(b"special/block"),
            libc::S_IFBLK | 0o600,
            libc::makedev(7, 200),
        )
        .unwrap();
        b.chmod(b"special/null", 0o666);
    }
    // Modes as asked, whatever the umask.
    b.chmod(b"special/fifo", 0o640);
    b.chmod(b"special/socket", 0o751);

    // Modes, and owners as root (chown before chmod: chown clears set-id
    // bits).
    b.dir(b"modes");
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("private", 0o600),
        ("readonly", 0o444),
        ("all", 0o777),
    ] {
        b.file(format!("modes/{name}").as_bytes(), 64);
        if root_user {
            let p = b.path(format!("modes/{name}").as_bytes());
            std::os::unix::fs::lchown(&p, Some(1234), Some(5678)).unwrap();
        }
        b.chmod(format!("modes/{name}").as_bytes(), mode);
    }
    if root_user {
        b.file(b"modes/nothing", 10);
        b.chmod(b"modes/nothing", 0o000);
        std::os::unix::fs::lchown(b.path(b"links/absolute"), Some(42), Some(43)).unwrap();
        std::os::unix::fs::lchown(b.path(b"d2"), Some(1000), Some(1000)).unwrap();
    }
    for (name, mode) in [
        ("sticky", 0o1777),
        ("setgid-dir", 0o2775),
        ("read-only-dir", 0o555),
    ] {
        let rel = format!("modes/{name}");
        b.dir(rel.as_bytes());
        b.file(format!("{rel}/inside").as_bytes(), 3);
        b.chmod(rel.as_bytes(), mode);
    }

    // Times last, children before their directory: nanoseconds, one
    // before the epoch, one far ahead; every access time in the future
    // and after the modification time (see the module docs).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut i = 0i64;
    set_times_post_order(root, &mut |p: &Path| {
        i += 1;
        let name = p
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let mtime = match name.as_slice() {
            b"setuid" => -1_234_567_891_011_123,
            b"setgid" => 4_102_444_800_123_456_789,
            _ => 1_500_000_000_000_000_000 + i * 1_234_567_891,
        };
        // After the modification time too, or relatime moves it.
        let day = 86_400_000_000_000;
        let atime = (now + day + i * 1_001).max(mtime + day);
        set_times(p, atime, mtime);
    });
}

fn set_times_post_order(p: &Path, f: &mut impl FnMut(&Path)) {
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for c in children {
            set_times_post_order(&c, f);
        }
    }
    f(p);
}

/// `s` with every access time cleared: for trees whose access times the
/// test leaves to the mount (reading a directory may move them).
fn without_atimes(mut s: Snapshot) -> Snapshot {
    for i in s.paths.values_mut() {
        i.atime_ns = 0;
    }
    s
}

fn count_files(s: &Snapshot) -> usize {
    s.paths.values().filter(|i| i.contents.is_some()).count()
}

#[test]
fn import_export_round_trip_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src);
    let before = snapshot(&src);
    assert!(
        count_files(&before) >= 2000,
        "{} files",
        count_files(&before)
    );

    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let out = fsx(&["import", s(&src), s(&vol)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {stderr}");
    assert!(!stderr.contains("not copied"), "{stderr}");
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(
        summary.starts_with("imported ")
            && summary.contains(" hard links")
            && summary.contains(" s\n"),
        "{summary}"
    );
    // Every name of a linked inode after the first is a hard link.
    let extra_links: usize = before.links.iter().map(|g| g.len() - 1).sum();
    assert!(
        summary.contains(&format!("{extra_links} hard links")),
        "{summary}"
    );

    check_ls(&vol);

    let back = dir.path().join("back");
    let out = fsx(&["export", s(&vol), s(&back)]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = snapshot(&back);
    assert_same(&before, &after);
    assert_diff_clean(&src, &back);

    // The sparse files kept their holes (checked above against the
    // source's stretches; and they are real holes).
    let blocks = std::fs::metadata(back.join("sparse/middle"))
        .unwrap()
        .blocks();
    assert!(
        blocks * 512 < 1 << 20,
        "{blocks} blocks for 3 MiB with a hole"
    );
    assert_eq!(
        after.paths[&b"sparse/all-hole"[..]].segments,
        Some(vec![]),
        "all hole"
    );
    if is_root() {
        assert_eq!(after.paths[&b"modes/setuid"[..]].uid, 1234);
        assert!(after.paths.contains_key(&b"special/null"[..]));
    }
}

/// `fsx ls` of the imported tree: names escaped, long format.
fn check_ls(vol: &Path) {
    let top = ok(&["ls", s(vol)]);
    let top: Vec<&str> = top.lines().collect();
    assert_eq!(
        top,
        [
            "d0",
            "d1",
            "d2",
            "d3",
            "d4",
            "d5",
            "d6",
            "d7",
            "deep",
            "empty",
            "empty-file",
            "hard",
            "links",
            "modes",
            "names",
            "sparse",
            "special"
        ]
    );
    let names = ok(&["ls", &format!("{}:/names", s(vol))]);
    for expected in [
        r#""new\nline""#,
        r#""tab\there""#,
        r#""bad\xff\xfebytes""#,
        r#""esc\u{1b}[31mred""#,
        "with space",
        "\u{e9}t\u{e9} \u{1f600}",
        r#""dir \xff\nx""#,
    ] {
        assert!(
            names.lines().any(|l| l == expected),
            "{expected} in {names}"
        );
    }
    assert!(!names.contains('\x1b') && names.lines().count() == odd_names().len() + 1);

    let long = ok(&["ls", "-l", &format!("{}:/modes", s(vol))]);
    let line = |name: &str| {
        long.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} in {long}"))
            .to_string()
    };
    assert!(line("setuid").starts_with("-rwsr-xr-x 1 "), "{long}");
    assert!(line("setgid").starts_with("-rwxr-sr-x 1 "), "{long}");
    assert!(line("sticky").starts_with("drwxrwxrwt 2 "), "{long}");
    assert!(line("readonly").starts_with("-r--r--r-- 1 "), "{long}");
    // 2100-01-01 00:00:00.123 UTC, and 1969.
    assert!(line("setgid").contains(" 2100-01-01 00:00:00 "), "{long}");
    assert!(line("setuid").contains(" 1969-12-17 "), "{long}");
    if is_root() {
        assert!(line("setuid").contains(" 1234 5678 64 "), "{long}");
    }

    let links = ok(&["ls", "-l", &format!("{}:/links", s(vol))]);
    assert!(
        links
            .lines()
            .any(|l| l.starts_with("lrwxrwxrwx ") && l.ends_with(" dangling -> nowhere/at/all")),
        "{links}"
    );
    assert!(
        links
            .lines()
            .any(|l| l.ends_with(r#" "new\nline" -> "target with\nnewline""#)),
        "{links}"
    );
    let special = ok(&["ls", "-l", &format!("{}:/special", s(vol))]);
    assert!(
        special
            .lines()
            .any(|l| l.starts_with("prw-r----- ") && l.ends_with(" fifo")),
        "{special}"
    );
    assert!(
        special
            .lines()
            .any(|l| l.starts_with("srwxr-x--x ") && l.ends_with(" socket")),
        "{special}"
    );
    if is_root() {
        assert!(
            special.lines().any(|l| l.starts_with("crw-rw-rw- ")
                && l.contains(" 1, 3 ")
                && l.ends_with(" null")),
            "{special}"
        );
    }
    // A file lists itself; a missing path is an error.
    let one = ok(&["ls", "-l", &format!("{}:/hard/h1", s(vol))]);
    let fields: Vec<&str> = one.split_whitespace().collect();
    assert!(
        one.lines().count() == 1
            && fields[0].starts_with("-rw")
            && fields[1] == "3"
            && fields.last() == Some(&"/hard/h1"),
        "{one}"
    );
    let err = fails(&["ls", &format!("{}:/no/such", s(vol))]);
    assert!(
        err.contains("/no") && err.contains("does not exist"),
        "{err}"
    );
}

/// A small tree for the other cases.
fn small_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/one"), b"one").unwrap();
    std::fs::write(root.join("a/b/two"), b"two").unwrap();
    std::os::unix::fs::symlink("one", root.join("a/link")).unwrap();
}

#[test]
fn import_into_a_sub_path_and_refusing_non_empty_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    small_tree(&src);
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let place = format!("{}:/sub/dir", s(&vol));

    let out = ok(&["import", s(&src), &place]);
    assert!(
        out.starts_with("imported 2 files, 3 directories, 1 symlink"),
        "{out}"
    );
    assert_eq!(ok(&["ls", s(&vol)]), "sub\n");
    assert_eq!(ok(&["ls", &format!("{}:/sub", s(&vol))]), "dir\n");
    assert_eq!(ok(&["ls", &place]), "a\n");
    assert_eq!(ok(&["ls", &format!("{place}/a")]), "b\nlink\none\n");

    // A non-empty destination in the volume is refused without --force.
    let err = fails(&["import", s(&src), &place]);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    std::fs::write(src.join("a/one"), b"changed").unwrap();
    std::fs::write(src.join("a/three"), b"3").unwrap();
    ok(&["import", "--force", s(&src), &place]);
    assert_eq!(ok(&["ls", &format!("{place}/a")]), "b\nlink\none\nthree\n");

    // Out again: exactly the source.
    let back = dir.path().join("back");
    ok(&["export", &place, s(&back)]);
    assert_same(
        &without_atimes(snapshot(&src)),
        &without_atimes(snapshot(&back)),
    );

    // A non-empty local destination is refused and left alone.
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep"), b"mine").unwrap();
    let err = fails(&["export", &place, s(&busy)]);
    assert!(
        err.contains("is not empty") && err.contains("--force"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&busy)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["keep"], "nothing written");
    // --force merges: what was there stays, the copy lands beside it.
    ok(&["export", "--force", &place, s(&busy)]);
    assert_eq!(std::fs::read(busy.join("keep")).unwrap(), b"mine");
    assert_eq!(std::fs::read(busy.join("a/one")).unwrap(), b"changed");

    // A file is not a directory to import or export; an export into the
    // volume's own files is refused.
    let err = fails(&[
        "export",
        &format!("{place}/a/one"),
        s(&dir.path().join("x")),
    ]);
    assert!(err.contains("not a directory"), "{err}");
    let err = fails(&["export", s(&vol), s(&vol.join("data/x"))]);
    assert!(err.contains("volume's own files"), "{err}");
    let err = fails(&["export", "--force", s(&vol), s(dir.path())]);
    assert!(err.contains("volume's own files"), "{err}");
    let err = fails(&["import", s(&src.join("a/one")), s(&vol)]);
    assert!(err.contains("not a directory"), "{err}");
    let err = fails(&["import", s(&src), &format!("{}/nope:/x", s(dir.path()))]);
    assert!(err.contains("not an fsx volume"), "{err}");
}

/// The `system.posix_acl_access` attribute of an ACL granting user 4242
/// read access: a namespace the volume's tree does not keep.
fn acl_blob() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 4242),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn what_cannot_be_copied_is_named_and_the_rest_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    // The copy runs as an unprivileged user (as root, through `setpriv`):
    // it must reach the tree, and own the volume.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("src");
    small_tree(&src);
    // Nobody but root reads this.
    let closed = src.join("a/b/closed");
    std::fs::write(&closed, b"secret").unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).unwrap();
    // A POSIX ACL is kept (stored as its attribute).
    let acl = src.join("a/with acl");
    std::fs::write(&acl, b"acl").unwrap();
    let has_acl = set_xattr(&acl, "system.posix_acl_access", &acl_blob()).is_ok();
    assert!(
        has_acl || !is_root(),
        "as root this test needs POSIX ACLs on the temporary directory's file system"
    );
    let vol = dir.path().join("vol");
    let as_user = |args: &[&str]| {
        let mut c = if is_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_fsx"));
            c
        } else {
            std::process::Command::new(env!("CARGO_BIN_EXE_fsx"))
        };
        c.args(args).output().unwrap()
    };
    if is_root() {
        std::fs::create_dir(&vol).unwrap();
        std::os::unix::fs::chown(&vol, Some(65534), Some(65534)).unwrap();
    }
    let init = as_user(&["init", s(&vol)]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let out = as_user(&["import", s(&src), s(&vol)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit 1 after copying the rest: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("fsx: not copied: ")
            && l.contains("closed")
            && l.contains("Permission denied")),
        "the unreadable file is named: {stderr}"
    );
    assert!(
        stderr.contains("1 problem"),
        "counted in the summary: {stderr}"
    );
    // Everything else is there.
    let back = dir.path().join("back");
    ok(&["export", s(&vol), s(&back)]);
    assert_eq!(std::fs::read(back.join("a/b/two")).unwrap(), b"two");
    assert_eq!(
        std::fs::read_link(back.join("a/link")).unwrap(),
        Path::new("one")
    );
    assert!(!back.join("a/b/closed").exists());
    assert_eq!(std::fs::read(back.join("a/with acl")).unwrap(), b"acl");
    if has_acl {
        assert_eq!(
            xattrs(&back.join("a/with acl")).get(&b"system.posix_acl_access"[..]),
            xattrs(&acl).get(&b"system.posix_acl_access"[..]),
            "the ACL came back"
        );
    }
}
