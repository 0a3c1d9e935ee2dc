//! `fsx_meta::rename::decide` compared with `renameat2` on the local file
//! system, over every combination of: source missing, a file or a
//! directory; destination missing, a file, an empty or a non-empty
//! directory, or another link of the source's inode; the source above the
//! destination, the destination above the source, or neither; and the
//! flags (none, `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, both). Each case
//! runs in a fresh directory; the errno must match, and on success so must
//! what the two names hold afterwards.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fsx_meta::rename::{RenameAction, RenameCase, RenameFlags, Side, decide};

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
                    let want = decide(case, flags);
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
