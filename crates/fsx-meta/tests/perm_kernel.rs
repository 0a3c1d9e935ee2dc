//! The permission rules of `fsx_meta::perm`, compared with the kernel's:
//! files and directories with every mode are made in a temporary directory
//! of the local file system, then a child process that has switched to
//! another user (`setgroups`, `setresgid`, `setresuid`) asks the kernel
//! (`faccessat` with `AT_EACCESS`, `unlink`, `rmdir`, `chmod`,
//! `utimensat`, creating files and directories, extended attributes,
//! writes) and prints what it was told; every answer must equal the
//! rule's (`fsx_meta::perm`, `names`, `remove`).
//!
//! Switching users needs root. Run as another user, the test compares
//! only what that user can ask as itself, and says so.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use fsx_meta::names::{self, XattrOp};
use fsx_meta::perm::{self, Caller, Denied, Owned, R, W, X};
use fsx_meta::remove::{self, RemoveOp};
use fsx_meta::rename::Side;

const CHILD: &str = "FSX_PERM_CHILD";

/// Extended-attribute questions: file (`attr` a regular file of mode
/// 0644, `fifo` a FIFO), whether to set (else get), name, value length.
const XATTRS: &[(&str, bool, &str, usize)] = &[
    ("attr", true, "user.a", 1),
    ("attr", false, "user.a", 0),
    ("attr", true, "user.b", 65537),
    ("attr", true, "user.", 1),
    ("attr", true, "bogus.a", 1),
    ("attr", true, "trusted.a", 1),
    ("attr", false, "trusted.a", 0),
    ("attr", true, "security.a", 1),
    ("attr", false, "security.a", 0),
    ("fifo", true, "user.a", 1),
    ("fifo", false, "user.a", 0),
];
const OWNER: u32 = 4100;

/// Link questions: the target's owner (`true`: the caller) and mode, a
/// directory target, the new name existing, the new directory's mode.
fn links() -> Vec<(bool, u32, bool, bool, u32)> {
    let mut out = Vec::new();
    for mine in [true, false] {
        for mode in [0o644, 0o666, 0o4666, 0o2676, 0o2666] {
            for dir_mode in [0o755, 0o777] {
                out.push((mine, mode, false, false, dir_mode));
            }
        }
        out.push((mine, 0o777, true, false, 0o777));
        out.push((mine, 0o666, false, true, 0o777));
    }
    out
}

/// Removal questions: the directory's mode, what the entry is (`f` file,
/// `e` empty directory, `n` non-empty directory, `-` nothing), whether
/// the caller owns it, and the call (`u` unlink, `r` rmdir).
fn removals() -> Vec<(u32, char, bool, char)> {
    let mut out = Vec::new();
    for mode in [0o755, 0o777, 0o1777, 0o666] {
        for kind in ['f', 'e', 'n', '-'] {
            for mine in [true, false] {
                for op in ['u', 'r'] {
                    out.push((mode, kind, mine, op));
                }
            }
        }
    }
    out
}
const GROUP: u32 = 4200;

/// The callers compared: the owner, a member of the file's group by
/// primary and by supplementary group, a stranger, and root.
fn callers() -> Vec<Caller> {
    vec![
        Caller::new(OWNER, 4300, &[]),
        Caller::new(4101, GROUP, &[]),
        Caller::new(4102, 4300, &[4301, GROUP]),
        Caller::new(4103, 4300, &[]),
        Caller::root(),
    ]
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// In the child: become `caller`, for good.
fn become_caller(c: &Caller) {
    let groups: Vec<libc::gid_t> = c.groups.clone();
    // SAFETY: plain system calls on valid arguments (a slice that outlives
    // the call); the child is single-threaded at this point of its test.
    unsafe {
        assert_eq!(libc::setgroups(groups.len(), groups.as_ptr()), 0);
        assert_eq!(libc::setresgid(c.gid, c.gid, c.gid), 0);
        assert_eq!(libc::setresuid(c.uid, c.uid, c.uid), 0);
    }
}

/// The kernel's `access` answer for `path` and `want`, as the caller.
fn kernel_may(path: &Path, want: u32) -> bool {
    let p = cstr(path);
    // SAFETY: a valid NUL-terminated path; faccessat reads it only.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            p.as_ptr(),
            want as libc::c_int,
            libc::AT_EACCESS,
        ) == 0
    }
}

/// `ok`, or the errno the last system call set.
fn outcome(ok: bool) -> String {
    if ok {
        "ok".to_string()
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(-1)
            .to_string()
    }
}

/// The child's work: what the kernel says, one line per question.
fn child(dir: &Path, caller: &Caller) {
    // The test harness has printed "test … " without a newline.
    println!();
    // Only root can become someone else; anyone else asks as itself.
    if is_root() && caller.uid != 0 {
        become_caller(caller);
    }
    for mode in 0..0o1000u32 {
        for kind in ["f", "d"] {
            let path = dir.join(format!("{kind}{mode:o}"));
            let answers: String = [R, W, X, R | W | X]
                .iter()
                .map(|&w| if kernel_may(&path, w) { '1' } else { '0' })
                .collect();
            println!("may {kind}{mode:o} {answers}");
        }
    }
    for (i, name) in ["sticky/mine", "sticky/theirs", "plain/mine", "plain/theirs"]
        .iter()
        .enumerate()
    {
        let r = std::fs::remove_file(dir.join(name));
        let code = match r {
            Ok(()) => "ok".to_string(),
            Err(e) => e.raw_os_error().unwrap_or(-1).to_string(),
        };
        println!("unlink {i} {code}");
    }
    let own = dir.join("own");
    let r = std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o2755));
    let mode = std::fs::metadata(&own)
        .map(|m| m.mode() & 0o7777)
        .unwrap_or(u32::MAX);
    println!("chmod {} {mode:o}", r.is_ok());
    for (i, (file, set, name, len)) in XATTRS.iter().enumerate() {
        let path = cstr(&dir.join(file));
        let name = CString::new(*name).unwrap();
        let value = vec![b'v'; *len];
        let mut buf = [0u8; 16];
        // SAFETY: valid NUL-terminated strings and buffers of the lengths
        // given; the calls only read them (or write `buf`).
        let r = unsafe {
            if *set {
                libc::setxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                ) as isize
            } else {
                libc::getxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            }
        };
        println!("xattr {i} {}", outcome(r >= 0));
    }
    // SAFETY: umask has no preconditions; this child is single-threaded.
    unsafe { libc::umask(0) };
    for parent in ["plaindir", "sgiddir"] {
        let f = dir.join(parent).join("new-file");
        let c = cstr(&f);
        // SAFETY: a valid NUL-terminated path; the descriptor is closed.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY,
                0o2775 as libc::c_uint,
            )
        };
        let made = fd >= 0;
        if made {
            // SAFETY: a descriptor this child opened.
            unsafe { libc::close(fd) };
        }
        let d = dir.join(parent).join("new-dir");
        let made_dir = std::fs::create_dir(&d).is_ok();
        for (path, ok) in [(&f, made), (&d, made_dir)] {
            let m = std::fs::metadata(path).ok().filter(|_| ok);
            let shown = m.map_or("none".to_string(), |m| {
                format!("{} {} {:o}", m.uid(), m.gid(), m.mode() & 0o7777)
            });
            println!("new {} {shown}", path.strip_prefix(dir).unwrap().display());
        }
    }
    for (i, (_, _, _, op)) in removals().iter().enumerate() {
        let victim = dir.join(format!("rm{i}/v"));
        let r = if *op == 'u' {
            std::fs::remove_file(&victim)
        } else {
            std::fs::remove_dir(&victim)
        };
        let code = r.map_or_else(
            |e| e.raw_os_error().unwrap_or(-1).to_string(),
            |()| "ok".into(),
        );
        println!("rm {i} {code}");
    }
    for (i, mode) in [0o644, 0o666, 0o600].into_iter().enumerate() {
        for (now, name) in [(true, "now"), (false, "given")] {
            let p = cstr(&dir.join(format!("times{i}")));
            let given = libc::timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            };
            let now_ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            };
            let ts = if now {
                [now_ts, now_ts]
            } else {
                [given, given]
            };
            // SAFETY: a valid NUL-terminated path and two timespecs.
            let r = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) };
            println!("times {i} {name} {} {mode:o}", outcome(r == 0));
        }
    }
    for i in 0..links().len() {
        let base = dir.join(format!("ln{i}"));
        let r = std::fs::hard_link(base.join("t"), base.join("d/new"));
        let code = r.map_or_else(
            |e| e.raw_os_error().unwrap_or(-1).to_string(),
            |()| "ok".into(),
        );
        println!("link {i} {code}");
    }
    let shared = dir.join("shared");
    let wrote = std::fs::OpenOptions::new()
        .append(true)
        .open(&shared)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
        .is_ok();
    let mode = std::fs::metadata(&shared).unwrap().mode() & 0o7777;
    println!("write {wrote} {mode:o}");
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// Makes the files the children ask about, for `caller`.
fn setup(dir: &Path, caller: &Caller, root: bool) {
    for mode in 0..0o1000u32 {
        let f = dir.join(format!("f{mode:o}"));
        std::fs::write(&f, b"").unwrap();
        let d = dir.join(format!("d{mode:o}"));
        std::fs::create_dir(&d).unwrap();
        if root {
            chown(&f, OWNER, GROUP);
            chown(&d, OWNER, GROUP);
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let other = if caller.uid == 4103 { OWNER } else { 4103 };
    for (sub, mode) in [("sticky", 0o1777), ("plain", 0o777)] {
        let d = dir.join(sub);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("mine"), b"").unwrap();
        std::fs::write(d.join("theirs"), b"").unwrap();
        if root {
            chown(&d, 0, 0);
            chown(&d.join("mine"), caller.uid, caller.gid);
            chown(&d.join("theirs"), other, other);
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for (i, (mode, kind, mine, _)) in removals().into_iter().enumerate() {
        let d = dir.join(format!("rm{i}"));
        std::fs::create_dir(&d).unwrap();
        let v = d.join("v");
        match kind {
            'f' => std::fs::write(&v, b"").unwrap(),
            'e' => std::fs::create_dir(&v).unwrap(),
            'n' => {
                std::fs::create_dir(&v).unwrap();
                std::fs::write(v.join("x"), b"").unwrap();
            }
            _ => {}
        }
        if root {
            chown(&d, OWNER, GROUP);
            if kind != '-' {
                let owner = if mine { caller.uid } else { 4999 };
                chown(&v, owner, owner);
            }
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for (i, (mine, mode, is_dir, exists, dir_mode)) in links().into_iter().enumerate() {
        let base = dir.join(format!("ln{i}"));
        std::fs::create_dir(&base).unwrap();
        let t = base.join("t");
        if is_dir {
            std::fs::create_dir(&t).unwrap();
        } else {
            std::fs::write(&t, b"").unwrap();
        }
        let d = base.join("d");
        std::fs::create_dir(&d).unwrap();
        if exists {
            std::fs::write(d.join("new"), b"").unwrap();
        }
        if root {
            let owner = if mine { caller.uid } else { OWNER + 50 };
            chown(&t, owner, owner);
            chown(&d, OWNER, GROUP);
        }
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    }
    for (i, mode) in [0o644, 0o666, 0o600].into_iter().enumerate() {
        let t = dir.join(format!("times{i}"));
        std::fs::write(&t, b"").unwrap();
        if root {
            chown(&t, OWNER, GROUP);
        }
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for (name, mode) in [("plaindir", 0o777), ("sgiddir", 0o2777)] {
        let d = dir.join(name);
        std::fs::create_dir(&d).unwrap();
        if root {
            chown(&d, OWNER, GROUP);
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let attr = dir.join("attr");
    std::fs::write(&attr, b"").unwrap();
    let fifo = cstr(&dir.join("fifo"));
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    if root {
        chown(&attr, OWNER, GROUP);
        chown(&dir.join("fifo"), OWNER, GROUP);
    }
    std::fs::set_permissions(&attr, std::fs::Permissions::from_mode(0o644)).unwrap();
    let own = dir.join("own");
    std::fs::write(&own, b"").unwrap();
    let shared = dir.join("shared");
    std::fs::write(&shared, b"").unwrap();
    if root {
        // Owned by the caller, in a group it is not in (unless root).
        chown(&own, caller.uid, 4999);
        chown(&shared, OWNER, GROUP);
    }
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o6777)).unwrap();
    // Directories the children must traverse.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn expect(caller: &Caller, dir: &Path, root: bool) -> Vec<String> {
    let mut out = Vec::new();
    let (uid, gid) = if root {
        (OWNER, GROUP)
    } else {
        (caller.uid, caller.gid)
    };
    for mode in 0..0o1000u32 {
        for (kind, is_dir) in [("f", false), ("d", true)] {
            let node = Owned {
                uid,
                gid,
                mode,
                dir: is_dir,
            };
            let answers: String = [R, W, X, R | W | X]
                .iter()
                .map(|&w| if perm::may(caller, node, w) { '1' } else { '0' })
                .collect();
            out.push(format!("may {kind}{mode:o} {answers}"));
        }
    }
    let other = if caller.uid == 4103 { OWNER } else { 4103 };
    let dir_owner = if root { 0 } else { caller.uid };
    for (i, (mode, entry)) in [
        (0o1777, caller.uid),
        (0o1777, other),
        (0o777, caller.uid),
        (0o777, other),
    ]
    .into_iter()
    .enumerate()
    {
        let d = Owned {
            uid: dir_owner,
            gid: dir_owner,
            mode,
            dir: true,
        };
        let entry = if root { entry } else { caller.uid };
        let code = match perm::may_remove(caller, d, entry) {
            Ok(()) => "ok".to_string(),
            Err(Denied::Access) => libc::EACCES.to_string(),
            Err(Denied::NotPermitted) => libc::EPERM.to_string(),
        };
        out.push(format!("unlink {i} {code}"));
    }
    let own_gid = if root { 4999 } else { caller.gid };
    let own = Owned {
        uid: caller.uid,
        gid: own_gid,
        mode: 0o644,
        dir: false,
    };
    match perm::chmod(caller, own, 0o2755) {
        Ok(m) => out.push(format!("chmod true {m:o}")),
        Err(_) => out.push("chmod false 644".into()),
    }
    let mut stored: Vec<(&str, &str)> = Vec::new();
    for (i, (file, set, name, len)) in XATTRS.iter().enumerate() {
        let node = Owned {
            uid,
            gid,
            mode: 0o644,
            dir: false,
        };
        let op = if *set { XattrOp::Set } else { XattrOp::Get };
        let checked = names::check_xattr(caller, node, *file == "attr", op, name.as_bytes(), *len);
        let code = match checked {
            // A get reads what an earlier set in the list stored; an
            // attribute nobody set reads as absent.
            Ok(()) if !*set && !stored.contains(&(*file, *name)) => libc::ENODATA.to_string(),
            Ok(()) => {
                if *set {
                    stored.push((*file, *name));
                }
                "ok".to_string()
            }
            Err(e) => e.errno().to_string(),
        };
        out.push(format!("xattr {i} {code}"));
    }
    for (parent, pmode) in [("plaindir", 0o777), ("sgiddir", 0o2777)] {
        let p = Owned {
            uid,
            gid,
            mode: pmode,
            dir: true,
        };
        for (name, mode, is_dir) in [("new-file", 0o2775, false), ("new-dir", 0o777, true)] {
            let n = perm::new_inode(caller, p, mode, is_dir);
            out.push(format!(
                "new {parent}/{name} {} {} {:o}",
                n.uid, n.gid, n.mode
            ));
        }
    }
    for (i, (mode, kind, mine, op)) in removals().into_iter().enumerate() {
        let d = Owned {
            uid,
            gid,
            mode,
            dir: true,
        };
        let entry = (kind != '-').then(|| {
            let side = Side {
                ino: 1,
                dir: kind != 'f',
                empty: kind != 'n',
            };
            let owner = if mine || !root { caller.uid } else { 4999 };
            (side, owner)
        });
        let op = if op == 'u' {
            RemoveOp::Unlink
        } else {
            RemoveOp::Rmdir
        };
        let code = remove::decide(caller, d, op, b"v", entry)
            .map_or_else(|e| e.errno().to_string(), |()| "ok".into());
        out.push(format!("rm {i} {code}"));
    }
    for (i, mode) in [0o644, 0o666, 0o600].into_iter().enumerate() {
        let node = Owned {
            uid,
            gid,
            mode,
            dir: false,
        };
        for (now, name) in [(true, "now"), (false, "given")] {
            let code = match perm::set_times(caller, node, now) {
                Ok(()) => "ok".to_string(),
                Err(Denied::Access) => libc::EACCES.to_string(),
                Err(Denied::NotPermitted) => libc::EPERM.to_string(),
            };
            out.push(format!("times {i} {name} {code} {mode:o}"));
        }
    }
    let protected =
        std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim() == "1");
    for (i, (mine, mode, is_dir, exists, dir_mode)) in links().into_iter().enumerate() {
        let owner = if mine || !root {
            caller.uid
        } else {
            OWNER + 50
        };
        let target = Owned {
            uid: owner,
            gid: owner,
            mode,
            dir: is_dir,
        };
        let d = Owned {
            uid,
            gid,
            mode: dir_mode,
            dir: true,
        };
        let code = remove::decide_link(caller, d, Some((target, !is_dir)), exists, protected)
            .map_or_else(|e| e.errno().to_string(), |()| "ok".into());
        out.push(format!("link {i} {code}"));
    }
    let shared = Owned {
        uid,
        gid,
        mode: 0o6777,
        dir: false,
    };
    let wrote = perm::may(caller, shared, W);
    let mode = if wrote {
        perm::after_write(caller, 0o6777)
    } else {
        0o6777
    };
    out.push(format!("write {wrote} {mode:o}"));
    let _ = dir;
    out
}

#[test]
fn permission_rules_match_the_kernel() {
    if let Ok(spec) = std::env::var(CHILD) {
        let (i, dir) = spec.split_once(':').unwrap();
        let caller = if is_root() {
            callers()[i.parse::<usize>().unwrap()].clone()
        } else {
            own_caller()
        };
        child(Path::new(dir), &caller);
        return;
    }
    let root = is_root();
    let cases: Vec<Caller> = if root { callers() } else { vec![own_caller()] };
    if !root {
        eprintln!("not root: comparing only this user's own view (switching users needs root)");
    }
    let mut checked = 0;
    for (i, caller) in cases.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir: PathBuf = tmp.path().to_path_buf();
        setup(&dir, caller, root);
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "permission_rules_match_the_kernel",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, format!("{i}:{}", dir.display()))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got: Vec<&str> = stdout
            .lines()
            .filter(|l| {
                [
                    "may ", "unlink ", "chmod ", "xattr ", "new ", "rm ", "times ", "link ",
                    "write ",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .collect();
        let want = expect(caller, &dir, root);
        assert_eq!(
            got.len(),
            want.len(),
            "caller {caller:?}: the child answered {} questions (the test directory must be reachable by \
             other users: is TMPDIR inside a private directory?):\n{}",
            got.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(*g, w, "caller {caller:?}: kernel vs fsx_meta::perm");
            checked += 1;
        }
    }
    eprintln!("{checked} answers compared with the kernel's");
}

fn own_caller() -> Caller {
    // SAFETY: these calls have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let groups = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Groups:")).map(|l| {
                l[7..]
                    .split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default();
    Caller { uid, gid, groups }
}
