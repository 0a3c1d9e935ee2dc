//! `fsx_meta::rename::decide` compared with `renameat2` on the local file
//! system, over every combination of: source missing, a file or a
//! directory; destination missing, a file, an empty or a non-empty
//! directory, or another link of the source's inode; the source above the
//! destination, the destination above the source, or neither; and the
//! flags (none, `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, both). Each case
//! runs in a fresh directory; the errno must match, and on success so must
//! what the two names hold afterwards.
//!
//! The permission cases run as another user (a child process that drops
//! root): both directories' modes (sticky included), who owns the source
//! and the destination, a source directory the caller may or may not
//! write, replacing or exchanging. Switching users needs root; run as
//! another user, the same layouts are made with that user owning
//! everything, and it renames them itself.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fsx_meta::rename::{RenameAccess, RenameAction, RenameCase, RenameFlags, Side, decide};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    File,
    EmptyDir,
    FullDir,
    /// Another link of the source (a file).
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Apart,
    SrcAbove,
    DstAbove,
}

fn make(path: &Path, kind: Kind) {
    match kind {
        Kind::Missing | Kind::Link => {}
        Kind::File => std::fs::write(path, b"f").unwrap(),
        Kind::EmptyDir => std::fs::create_dir(path).unwrap(),
        Kind::FullDir => {
            std::fs::create_dir(path).unwrap();
            std::fs::write(path.join("inside"), b"i").unwrap();
        }
    }
}

/// What is at `path`: `None`, or (inode, is a directory).
fn look(path: &Path) -> Option<(u64, bool)> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.ino(), m.is_dir()))
}

fn side(path: &Path) -> Option<Side> {
    let (ino, dir) = look(path)?;
    let empty = !dir || std::fs::read_dir(path).unwrap().next().is_none();
    Some(Side { ino, dir, empty })
}

/// Lays out one case under `root`; returns (source path, destination path).
fn lay_out(root: &Path, src: Kind, dst: Kind, rel: Relation) -> (PathBuf, PathBuf) {
    match rel {
        Relation::Apart => {
            std::fs::create_dir(root.join("a")).unwrap();
            std::fs::create_dir(root.join("b")).unwrap();
            let (s, d) = (root.join("a/s"), root.join("b/d"));
            make(&s, src);
            if dst == Kind::Link {
                std::fs::hard_link(&s, &d).unwrap();
            } else {
                make(&d, dst);
            }
            (s, d)
        }
        // The source is a directory holding the destination's parent.
        Relation::SrcAbove => {
            let s = root.join("s");
            std::fs::create_dir_all(s.join("x")).unwrap();
            let d = s.join("x/d");
            make(&d, dst);
            (s, d)
        }
        // The destination is a directory holding the source.
        Relation::DstAbove => {
            let d = root.join("d");
            std::fs::create_dir(&d).unwrap();
            let s = d.join("s");
            make(&s, src);
            (s, d)
        }
    }
}

fn renameat2(from: &Path, to: &Path, flags: RenameFlags) -> Result<(), i32> {
    let f = CString::new(from.as_os_str().as_bytes()).unwrap();
    let t = CString::new(to.as_os_str().as_bytes()).unwrap();
    let bits = if flags.no_replace {
        libc::RENAME_NOREPLACE
    } else {
        0
    } | if flags.exchange {
        libc::RENAME_EXCHANGE
    } else {
        0
    };
    // SAFETY: valid NUL-terminated paths that outlive the call, which only
    // reads them.
    let r =
        unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), bits) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

#[test]
fn rename_decisions_match_the_kernel() {
    let kinds = [Kind::Missing, Kind::File, Kind::EmptyDir, Kind::FullDir];
    let mut checked = 0;
    for rel in [Relation::Apart, Relation::SrcAbove, Relation::DstAbove] {
        for src in kinds {
            for dst in kinds.iter().copied().chain([Kind::Link]) {
                // Layouts that cannot exist: a link of a missing source, a
                // source above something that is not a directory, a
                // destination holding the source that is not a full
                // directory.
                let possible = match rel {
                    Relation::Apart => dst != Kind::Link || src == Kind::File,
                    Relation::SrcAbove => {
                        matches!(src, Kind::EmptyDir | Kind::FullDir) && dst != Kind::Link
                    }
                    Relation::DstAbove => dst == Kind::FullDir && src != Kind::Missing,
                };
                if !possible {
                    continue;
                }
                for (no_replace, exchange) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let flags = RenameFlags {
                        no_replace,
                        exchange,
                    };
                    let tmp = tempfile::tempdir().unwrap();
                    let (s, d) = lay_out(tmp.path(), src, dst, rel);
                    let case = RenameCase {
                        src: side(&s),
                        dst: side(&d),
                        src_above_dst: rel == Relation::SrcAbove,
                        dst_above_src: rel == Relation::DstAbove,
                    };
                    let before = (look(&s), look(&d));
                    let want = decide(case, flags, &RenameAccess::root());
                    let got = renameat2(&s, &d, flags);
                    let what = format!("{rel:?} {src:?} → {dst:?}, {flags:?}");
                    assert_eq!(got, want.map(|_| ()).map_err(|e| e.errno()), "{what}");
                    let after = (look(&s), look(&d));
                    let expected_after = match want {
                        Err(_) | Ok(RenameAction::Nothing) => before,
                        Ok(RenameAction::Move | RenameAction::Replace) => (None, before.0),
                        Ok(RenameAction::Exchange) => (before.1, before.0),
                    };
                    assert_eq!(
                        after, expected_after,
                        "{what}: what the names hold afterwards"
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} renames compared with the kernel's");
}

/// A caller who is neither root nor the directories' owner.
const STRANGER: u32 = 4103;
const OTHER: u32 = 4100;
const CHILD: &str = "FSX_RENAME_CHILD";

/// One permission case: the two directories' modes, who owns the source
/// (and whether it is a directory the caller may write), what the
/// destination is and who owns it, and whether to exchange.
#[derive(Debug, Clone, Copy)]
struct PermCase {
    src_dir_mode: u32,
    dst_dir_mode: u32,
    src_dir: bool,
    src_owner: u32,
    src_mode: u32,
    dst: Kind,
    dst_owner: u32,
    exchange: bool,
}

fn perm_cases() -> Vec<PermCase> {
    let mut out = Vec::new();
    for src_dir_mode in [0o755, 0o777, 0o1777] {
        for dst_dir_mode in [0o755, 0o777, 0o1777] {
            for (src_dir, src_mode) in [(false, 0o644), (true, 0o755), (true, 0o777)] {
                for src_owner in [STRANGER, OTHER] {
                    for (dst, dst_owner) in [
                        (Kind::Missing, OTHER),
                        (Kind::File, STRANGER),
                        (Kind::File, OTHER),
                        (Kind::EmptyDir, OTHER),
                    ] {
                        for exchange in [false, true] {
                            if exchange && dst == Kind::Missing {
                                continue;
                            }
                            out.push(PermCase {
                                src_dir_mode,
                                dst_dir_mode,
                                src_dir,
                                src_owner,
                                src_mode,
                                dst,
                                dst_owner,
                                exchange,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

fn set(path: &Path, uid: u32, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn owned(uid: u32, mode: u32, dir: bool) -> fsx_meta::perm::Owned {
    fsx_meta::perm::Owned {
        uid,
        gid: uid,
        mode,
        dir,
    }
}

#[test]
fn rename_permissions_match_the_kernel() {
    let cases = perm_cases();
    if let Ok(root) = std::env::var(CHILD) {
        let gid = STRANGER;
        // SAFETY: plain system calls with valid arguments; this child runs
        // this one test on one thread.
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setresgid(gid, gid, gid), 0);
            assert_eq!(libc::setresuid(STRANGER, STRANGER, STRANGER), 0);
        }
        println!();
        for (i, c) in cases.iter().enumerate() {
            let base = Path::new(&root).join(i.to_string());
            let flags = RenameFlags {
                no_replace: false,
                exchange: c.exchange,
            };
            let got = renameat2(&base.join("A/s"), &base.join("B/d"), flags);
            println!("case {i} {}", got.err().unwrap_or(0));
        }
        return;
    }
    // SAFETY: no preconditions.
    let me = unsafe { libc::geteuid() };
    let as_root = me == 0;
    if !as_root {
        eprintln!("not root: every file is this user's own, and the renames run as this user");
    }
    // As root the files get their owners and a child renames as STRANGER;
    // otherwise everything belongs to this user, who renames.
    let who = |uid: u32| if as_root { uid } else { me };
    let caller = who(STRANGER);
    let set = |path: &Path, uid: u32, mode: u32| {
        if as_root {
            set(path, uid, mode);
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    set(root, 0, 0o755);
    let mut want = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let base = root.join(i.to_string());
        std::fs::create_dir(&base).unwrap();
        set(&base, 0, 0o755);
        let (a, b) = (base.join("A"), base.join("B"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let s = a.join("s");
        make(
            &s,
            if c.src_dir {
                Kind::EmptyDir
            } else {
                Kind::File
            },
        );
        set(&s, c.src_owner, c.src_mode);
        let d = b.join("d");
        make(&d, c.dst);
        if c.dst != Kind::Missing {
            set(
                &d,
                c.dst_owner,
                if c.dst == Kind::EmptyDir {
                    0o755
                } else {
                    0o644
                },
            );
        }
        set(&a, 0, c.src_dir_mode);
        set(&b, 0, c.dst_dir_mode);
        let case = RenameCase {
            src: side(&s),
            dst: side(&d),
            src_above_dst: false,
            dst_above_src: false,
        };
        let access = RenameAccess {
            caller: fsx_meta::perm::Caller::new(caller, caller, &[]),
            src_dir: owned(who(0), c.src_dir_mode, true),
            dst_dir: owned(who(0), c.dst_dir_mode, true),
            src: owned(who(c.src_owner), c.src_mode, c.src_dir),
            dst: (c.dst != Kind::Missing).then(|| {
                owned(
                    who(c.dst_owner),
                    if c.dst == Kind::EmptyDir {
                        0o755
                    } else {
                        0o644
                    },
                    c.dst == Kind::EmptyDir,
                )
            }),
            same_dir: false,
        };
        let flags = RenameFlags {
            no_replace: false,
            exchange: c.exchange,
        };
        let code = decide(case, flags, &access).map_or_else(|e| e.errno(), |_| 0);
        want.push(format!("case {i} {code}"));
    }
    if !as_root {
        for (i, w) in want.iter().enumerate() {
            let base = root.join(i.to_string());
            let flags = RenameFlags {
                no_replace: false,
                exchange: cases[i].exchange,
            };
            let got = renameat2(&base.join("A/s"), &base.join("B/d"), flags);
            let got = format!("case {i} {}", got.err().unwrap_or(0));
            assert_eq!(got, *w, "{:?}", cases[i]);
        }
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rename_permissions_match_the_kernel",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = stdout.lines().filter(|l| l.starts_with("case ")).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (g, w) in got.iter().zip(&want) {
        let i: usize = w.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(*g, w, "{:?}", cases[i]);
    }
    eprintln!("{} permission cases compared with the kernel's", want.len());
}
