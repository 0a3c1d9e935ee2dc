//! `fsx mount` through the real kernel: what a program sees on the mount,
//! that `fsync` survives a SIGKILL of the daemon, that two mounts of one
//! volume see each other's closed files, that a commit mounts read-only,
//! and that a mount that cannot start says why.
//!
//! Every test mounts its own volume on its own directory and unmounts it
//! when it ends, failed or not.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fails, fsx, ok, random, s};
use tempfile::TempDir;

/// A mounted volume, unmounted on drop.
struct Mounted {
    mountpoint: PathBuf,
    pid: i32,
}

impl Mounted {
    fn new(volume: &Path, mountpoint: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(mountpoint).unwrap();
        let mut args = vec!["mount", s(volume), s(mountpoint)];
        args.extend_from_slice(extra);
        let out = ok(&args);
        // "mounted V at M (daemon pid N, log L)"
        let pid = out
            .split("daemon pid ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no daemon pid in {out:?}"));
        Self {
            mountpoint: mountpoint.to_path_buf(),
            pid,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    fn umount(&mut self) {
        if !self.mountpoint.as_os_str().is_empty() {
            let out = fsx(&["umount", s(&self.mountpoint)]);
            assert!(
                out.status.success(),
                "fsx umount failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            self.mountpoint = PathBuf::new();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.mountpoint.as_os_str().is_empty() {
            let _ = fsx(&["umount", s(&self.mountpoint)]);
        }
    }
}

fn volume(tmp: &TempDir) -> PathBuf {
    let v = tmp.path().join("vol");
    ok(&["init", s(&v)]);
    v
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn files_on_the_mount_behave_as_on_a_disk_and_outlive_it() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    let mut m = Mounted::new(&vol, &tmp.path().join("mnt"), &[]);

    // Contents, sizes, names.
    let data = random(3 << 20, 1);
    std::fs::write(m.path("big"), &data).unwrap();
    std::fs::create_dir_all(m.path("a/b/c")).unwrap();
    std::fs::write(m.path("a/b/c/small"), b"hello").unwrap();
    std::os::unix::fs::symlink("b/c/small", m.path("a/link")).unwrap();
    std::fs::hard_link(m.path("a/b/c/small"), m.path("a/hard")).unwrap();
    assert_eq!(std::fs::read(m.path("a/link")).unwrap(), b"hello");
    assert_eq!(std::fs::metadata(m.path("a/hard")).unwrap().nlink(), 2);
    assert_eq!(std::fs::read(m.path("big")).unwrap(), data);
    let mut names: Vec<_> = std::fs::read_dir(m.path("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "hard", "link"]);

    // O_APPEND writes go to the end whatever the offset.
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(m.path("log"))
        .unwrap();
    f.write_all(b"one ").unwrap();
    f.write_all(b"two").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(std::fs::read(m.path("log")).unwrap(), b"one two");

    // An unlinked file stays usable through its descriptor.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("log"))
        .unwrap();
    std::fs::remove_file(m.path("log")).unwrap();
    f.write_all_at(b"ONE", 0).unwrap();
    let mut back = [0; 7];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(&back, b"ONE two");
    assert_eq!(errno_of(std::fs::metadata(m.path("log"))), libc::ENOENT);
    drop(f);

    // Sparse files: holes read as zeros and SEEK_DATA/SEEK_HOLE find them.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("sparse"))
        .unwrap();
    f.write_all_at(&[7; 4096], 1 << 20).unwrap();
    f.sync_all().unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: lseek on an open descriptor.
    let (data_at, hole_at) = unsafe {
        (
            libc::lseek(fd, 0, libc::SEEK_DATA),
            libc::lseek(fd, 0, libc::SEEK_HOLE),
        )
    };
    assert_eq!((data_at, hole_at), (1 << 20, 0));
    let mut zeros = vec![1; 4096];
    f.read_exact_at(&mut zeros, 4096).unwrap();
    assert!(zeros.iter().all(|&b| b == 0));
    // Punching a hole turns data back into zeros.
    // SAFETY: fallocate on an open descriptor.
    let r = unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            1 << 20,
            4096,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let mut punched = vec![1; 4096];
    f.read_exact_at(&mut punched, 1 << 20).unwrap();
    assert!(punched.iter().all(|&b| b == 0));
    assert_eq!(f.metadata().unwrap().len(), (1 << 20) + 4096);
    drop(f);

    // A shared writable mapping reaches the file.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("mapped"))
        .unwrap();
    f.set_len(8192).unwrap();
    // SAFETY: a fresh shared mapping of 8 KiB of an open file, written
    // and unmapped here; nothing else aliases it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::ptr::copy_nonoverlapping(b"mapped!".as_ptr(), p.cast::<u8>().add(4096), 7);
        assert_eq!(libc::msync(p, 8192, libc::MS_SYNC), 0);
        libc::munmap(p, 8192);
    }
    f.sync_all().unwrap();
    drop(f);
    let mut mapped = vec![0; 7];
    File::open(m.path("mapped"))
        .unwrap()
        .read_exact_at(&mut mapped, 4096)
        .unwrap();
    assert_eq!(mapped, b"mapped!");

    // O_DIRECT reads and writes aligned buffers.
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: a 4 KiB aligned allocation, freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: `buf` holds 4096 bytes.
    let slice = unsafe { std::slice::from_raw_parts_mut(buf, 4096) };
    slice.fill(0x5a);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(m.path("direct"))
        .unwrap();
    f.write_all_at(slice, 0).unwrap();
    slice.fill(0);
    f.read_exact_at(slice, 0).unwrap();
    assert!(slice.iter().all(|&b| b == 0x5a));
    drop(f);
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };

    // Extended attributes.
    let st = Command::new("setfattr")
        .args(["-n", "user.colour", "-v", "blue", s(&m.path("big"))])
        .status()
        .expect("setfattr runs (Debian's attr package; scripts/test.sh installs it)");
    assert!(st.success());
    let got = Command::new("getfattr")
        .args(["--only-values", "-n", "user.colour", s(&m.path("big"))])
        .output()
        .unwrap();
    assert_eq!(got.stdout, b"blue");

    // Permissions are the volume's.
    std::fs::set_permissions(m.path("big"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::metadata(m.path("big")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(errno_of(std::fs::remove_dir(m.path("a"))), libc::ENOTEMPTY);
    assert_eq!(
        errno_of(std::fs::rename(m.path("a"), m.path("a/b/c/inside"))),
        libc::EINVAL
    );

    // All of it is in the volume after the mount is gone.
    m.umount();
    let listing = ok(&["ls", &format!("{}:/a/b/c", s(&vol))]);
    assert!(listing.contains("small"), "{listing}");
    let out = tmp.path().join("out");
    ok(&["export", s(&vol), s(&out)]);
    assert_eq!(std::fs::read(out.join("big")).unwrap(), data);
    assert_eq!(
        std::fs::read(out.join("mapped")).unwrap()[4096..4103],
        *b"mapped!"
    );
    let fsck = fsx(&["fsck", s(&vol)]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn posix_locks_conflict_between_processes_and_go_with_them() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    let m = Mounted::new(&vol, &tmp.path().join("mnt"), &[]);
    let path = m.path("lockfile");
    std::fs::write(&path, b"x").unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut lk = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 10,
        l_pid: 0,
    };
    // SAFETY: fcntl with a valid flock struct on an open descriptor.
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &lk) }, 0);
    // Another process is refused the same bytes, and told who holds them.
    let probe = |start: u64| {
        Command::new("python3")
            .args([
                "-c",
                "import fcntl,os,sys\n\
                 f=os.open(sys.argv[1],os.O_RDWR)\n\
                 try:\n  fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB,5,int(sys.argv[2]))\n  print('got')\n\
                 except OSError as e:\n  print('refused',e.errno)\n",
                s(&path),
                &start.to_string(),
            ])
            .output()
            .expect("python3 runs the lock probe (scripts/test.sh installs it)")
    };
    let out = String::from_utf8(probe(0).stdout).unwrap();
    assert!(out.starts_with("refused"), "{out}");
    let out = String::from_utf8(probe(20).stdout).unwrap();
    assert_eq!(out.trim(), "got", "bytes 20..25 are free");
    lk.l_type = libc::F_RDLCK as i16;
    // F_GETLK from this process sees no conflict with its own lock.
    // SAFETY: as above; F_GETLK writes the struct it is given.
    let got = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut lk) };
    assert_eq!(got, 0);
    assert_eq!(lk.l_type, libc::F_UNLCK as i16);
    // Closing any descriptor of the file drops the process's locks.
    drop(f);
    let out = String::from_utf8(probe(0).stdout).unwrap();
    assert_eq!(out.trim(), "got", "the lock went with the close");
}

/// Every byte `fsync` acknowledged is there after the daemon is killed
/// mid-write and the volume mounted again; bytes written after it are
/// either there or the acknowledged ones.
#[test]
fn fsync_survives_a_sigkill_of_the_daemon() {
    let seed: u64 = std::env::var("FSX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("replay with FSX_CRASH_SEED={seed}");
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    let mp = tmp.path().join("mnt");
    for round in 0..3u64 {
        crash_round(&vol, &mp, seed.wrapping_add(round));
    }
    let out = fsx(&["fsck", s(&vol)]);
    assert!(
        out.status.success(),
        "fsck after the crashes: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a file must hold: the bytes at its last acknowledged fsync, and
/// the writes since (any of which may or may not have survived).
#[derive(Default, Clone)]
struct Model {
    acked: Vec<u8>,
    since: Vec<(usize, Vec<u8>)>,
    current: Vec<u8>,
}

impl Model {
    fn write(&mut self, off: usize, data: &[u8]) {
        if self.current.len() < off + data.len() {
            self.current.resize(off + data.len(), 0);
        }
        self.current[off..off + data.len()].copy_from_slice(data);
        self.since.push((off, data.to_vec()));
    }

    fn ack(&mut self) {
        self.acked = self.current.clone();
        self.since.clear();
    }

    fn check(&self, name: &str, got: &[u8], seed: u64) {
        let max = self
            .since
            .iter()
            .map(|(o, d)| o + d.len())
            .max()
            .unwrap_or(0)
            .max(self.acked.len());
        assert!(
            got.len() >= self.acked.len() && got.len() <= max,
            "{name}: size {} outside {}..={max} (seed {seed})",
            got.len(),
            self.acked.len()
        );
        for (i, &b) in got.iter().enumerate() {
            let was = self.acked.get(i).copied().unwrap_or(0);
            if b == was {
                continue;
            }
            let later = self
                .since
                .iter()
                .any(|(o, d)| i >= *o && i < o + d.len() && d[i - o] == b);
            assert!(
                later,
                "{name}: byte {i} is {b}, neither the acknowledged {was} nor a later write (seed {seed})"
            );
        }
    }
}

fn crash_round(vol: &Path, mp: &Path, seed: u64) {
    let m = Mounted::new(vol, mp, &[]);
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let names: Vec<String> = (0..4).map(|i| format!("f{seed}-{i}")).collect();
    let mut files: Vec<File> = names
        .iter()
        .map(|n| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(m.path(n))
                .unwrap()
        })
        .collect();
    let mut models = vec![Model::default(); names.len()];
    let kill_after = 50 + (next() % 400) as usize;
    for op in 0.. {
        if op == kill_after {
            // SAFETY: kill sends a signal to the daemon's pid.
            assert_eq!(unsafe { libc::kill(m.pid, libc::SIGKILL) }, 0);
        }
        let i = (next() % names.len() as u64) as usize;
        let r = if next() % 5 == 0 {
            files[i].sync_all().map(|()| models[i].ack())
        } else {
            let off = (next() % (4 << 20)) as usize;
            let len = 1 + (next() % (64 << 10)) as usize;
            let data = random(len, next());
            let r = files[i].write_all_at(&data, off as u64);
            // A write the kernel took may have reached the daemon even if
            // the reply never came.
            models[i].write(off, &data);
            r
        };
        if r.is_err() {
            assert!(
                op >= kill_after,
                "op {op} failed before the kill (seed {seed})"
            );
            break;
        }
    }
    files.clear();
    // Wait for the daemon to be gone before unmounting what it left.
    loop {
        // SAFETY: signal 0 only tests for the process.
        if unsafe { libc::kill(m.pid, 0) } != 0 {
            break;
        }
        std::thread::yield_now();
    }
    drop(m);
    let m = Mounted::new(vol, mp, &[]);
    for (n, model) in names.iter().zip(&models) {
        let mut got = Vec::new();
        File::open(m.path(n))
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        model.check(n, &got, seed);
    }
}

/// A file closed on one mount is seen whole at the next open on another
/// mount of the same volume, even where the other had it cached.
#[test]
fn a_file_closed_on_one_mount_is_whole_at_the_next_open_on_another() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    close_to_open(&tmp, &vol);
}

/// The same on PostgreSQL metadata, which is how mounts on several
/// machines share a volume.
#[test]
fn mounts_sharing_postgres_metadata_see_each_others_closed_files() {
    let pg = fsx_testkit::postgres::PgServer::start();
    let tmp = TempDir::new().unwrap();
    let vol = tmp.path().join("vol");
    ok(&["init", s(&vol), "--meta", &pg.fresh_url()]);
    close_to_open(&tmp, &vol);
}

fn close_to_open(tmp: &TempDir, vol: &Path) {
    let vol = vol.to_path_buf();
    let a = Mounted::new(&vol, &tmp.path().join("a"), &[]);
    // B's kernel would keep attributes and names for an hour: only the
    // check at open can make it see A's changes.
    let b = Mounted::new(
        &vol,
        &tmp.path().join("b"),
        &["--attr-timeout", "1h", "--entry-timeout", "1h"],
    );
    std::fs::write(a.path("shared"), random(100_000, 1)).unwrap();
    assert_eq!(std::fs::read(b.path("shared")).unwrap(), random(100_000, 1));
    for (round, len) in [(2u64, 100_000usize), (3, 250_000), (4, 7_000), (5, 300_000)] {
        // Rewritten in place on A (same inode), closed.
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(a.path("shared"))
            .unwrap();
        f.write_all(&random(len, round)).unwrap();
        drop(f);
        // B had the old contents cached; its next open sees the new ones.
        let mut got = Vec::new();
        File::open(b.path("shared"))
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got.len(), len, "round {round}: size");
        assert!(got == random(len, round), "round {round}: contents");
    }
    // A new file made on B is there on A at once.
    std::fs::write(b.path("fresh"), b"from b").unwrap();
    assert_eq!(std::fs::read(a.path("fresh")).unwrap(), b"from b");
}

/// Another mount's changes reach this mount's kernel caches through the
/// change feed: both keep names and attributes for an hour, so only the
/// daemons' invalidations can make `stat` on one see what the other
/// changed.
#[test]
fn another_mounts_changes_leave_the_kernel_caches() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    feed_invalidates(&tmp, &vol);
}

/// The same between mounts sharing PostgreSQL metadata.
#[test]
fn another_mounts_changes_leave_the_kernel_caches_on_postgres() {
    let pg = fsx_testkit::postgres::PgServer::start();
    let tmp = TempDir::new().unwrap();
    let vol = tmp.path().join("vol");
    ok(&["init", s(&vol), "--meta", &pg.fresh_url()]);
    feed_invalidates(&tmp, &vol);
}

/// Waits (at most 10 s) until `ready` holds; panics with `what` if it
/// never does.
fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "B never saw {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn feed_invalidates(tmp: &TempDir, vol: &Path) {
    let hour = ["--attr-timeout", "1h", "--entry-timeout", "1h"];
    let a = Mounted::new(vol, &tmp.path().join("a"), &hour);
    let b = Mounted::new(vol, &tmp.path().join("b"), &hour);
    std::fs::create_dir(a.path("d")).unwrap();
    std::fs::write(a.path("f"), b"abc").unwrap();
    // B caches the names and attributes.
    assert_eq!(
        std::fs::metadata(b.path("f")).unwrap().mode() & 0o777,
        0o644
    );
    assert_eq!(std::fs::metadata(b.path("f")).unwrap().len(), 3);
    assert!(std::fs::metadata(b.path("d")).unwrap().is_dir());
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.mode() & 0o777).ok();

    std::fs::set_permissions(a.path("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    eventually("the chmod", || mode(&b.path("f")) == Some(0o600));

    // A write and close on A: B's cached size goes without B opening it.
    let mut f = OpenOptions::new().append(true).open(a.path("f")).unwrap();
    f.write_all(b"defg").unwrap();
    drop(f);
    eventually("the new size", || {
        std::fs::metadata(b.path("f")).map(|m| m.len()).ok() == Some(7)
    });

    std::fs::rename(a.path("f"), a.path("d/g")).unwrap();
    eventually("the rename", || {
        errno_of(std::fs::metadata(b.path("f"))) == libc::ENOENT
            && mode(&b.path("d/g")) == Some(0o600)
    });
    assert_eq!(std::fs::read(b.path("d/g")).unwrap(), b"abcdefg");

    std::fs::remove_file(a.path("d/g")).unwrap();
    eventually("the removal", || {
        errno_of(std::fs::metadata(b.path("d/g"))) == libc::ENOENT
    });

    // And the other way round.
    std::fs::write(b.path("d/h"), b"from b").unwrap();
    assert_eq!(std::fs::metadata(a.path("d/h")).unwrap().len(), 6);
    std::fs::remove_file(b.path("d/h")).unwrap();
    eventually("B's removal on A", || {
        errno_of(std::fs::metadata(a.path("d/h"))) == libc::ENOENT
    });
}

#[test]
fn a_commit_mounts_read_only_with_the_commits_contents() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    let mut m = Mounted::new(&vol, &tmp.path().join("mnt"), &[]);
    std::fs::write(m.path("f"), b"before").unwrap();
    m.umount();
    let id = ok(&["commit", s(&vol), "-m", "snap"]).trim().to_string();
    let mut m = Mounted::new(&vol, &tmp.path().join("mnt"), &[]);
    std::fs::write(m.path("f"), b"after!").unwrap();
    let c = Mounted::new(&vol, &tmp.path().join("c"), &["--commit", &id]);
    assert_eq!(std::fs::read(c.path("f")).unwrap(), b"before");
    assert_eq!(errno_of(std::fs::write(c.path("f"), b"x")), libc::EROFS);
    assert_eq!(errno_of(std::fs::write(c.path("new"), b"x")), libc::EROFS);
    assert_eq!(errno_of(std::fs::create_dir(c.path("d"))), libc::EROFS);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"after!");
    m.umount();
}

#[test]
fn a_mount_that_cannot_start_says_why_and_leaves_nothing() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    let missing = tmp.path().join("nowhere");
    let err = fails(&["mount", s(&vol), s(&missing)]);
    assert!(err.contains("does not exist"), "{err}");
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = fails(&["mount", s(&vol), s(&file)]);
    assert!(err.contains("not a directory"), "{err}");
    let err = fails(&["mount", s(&tmp.path().join("novolume")), s(tmp.path())]);
    assert!(err.contains("novolume"), "{err}");
    let err = fails(&["mount", s(&vol), s(tmp.path()), "--branch", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    // A mount point that is already one.
    let mp = tmp.path().join("mnt");
    let m = Mounted::new(&vol, &mp, &[]);
    let err = fails(&["mount", s(&vol), s(&mp)]);
    assert!(err.contains("already a mount point"), "{err}");
    drop(m);
    let err = fails(&["umount", s(&mp)]);
    assert!(err.contains("not a mount point"), "{err}");
    // -o rw on a read-only mount is a contradiction.
    let err = fails(&["mount", s(&vol), s(&mp), "--read-only", "-o", "rw"]);
    assert!(err.contains("read-only"), "{err}");
    // Another user than root, without fusermount3 or access to /dev/fuse.
    let status = Command::new("chmod")
        .args(["-R", "a+rwX", s(tmp.path())])
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_fsx"))
        .args(["mount", s(&vol), s(&mp)])
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mount as root, or install fusermount3"),
        "{err}"
    );
    // Nothing was left mounted.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(s(tmp.path())), "{mounts}");
}

#[test]
fn sigterm_unmounts_after_closing_files() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    let mp = tmp.path().join("mnt");
    let mut m = Mounted::new(&vol, &mp, &[]);
    let mut f = File::create(m.path("kept")).unwrap();
    f.write_all(b"written, not synced").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    drop(f);
    // SAFETY: kill sends a signal to the daemon's pid.
    assert_eq!(unsafe { libc::kill(m.pid, libc::SIGTERM) }, 0);
    loop {
        // SAFETY: signal 0 only tests for the process.
        if unsafe { libc::kill(m.pid, 0) } != 0 {
            break;
        }
        std::thread::yield_now();
    }
    m.mountpoint = PathBuf::new();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(s(&mp)), "{mounts}");
    let log = std::fs::read_to_string(vol.join("mount.log")).unwrap();
    assert!(log.contains("unmounted"), "{log}");
    let out = tmp.path().join("out");
    ok(&["file", "get", s(&vol), "kept", s(&out)]);
    assert_eq!(std::fs::read(out).unwrap(), b"written, not synced");
}

/// A POSIX lock taken through one mount holds on another mount of the
/// volume, and goes when the first mount's daemon dies.
#[test]
fn locks_hold_across_mounts_and_die_with_their_mount() {
    let tmp = TempDir::new().unwrap();
    let vol = volume(&tmp);
    let mut a = Mounted::new(&vol, &tmp.path().join("a"), &[]);
    let b = Mounted::new(&vol, &tmp.path().join("b"), &[]);
    std::fs::write(a.path("shared.lock"), b"x").unwrap();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(a.path("shared.lock"))
        .unwrap();
    let lk = libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    // SAFETY: fcntl with a valid flock struct on an open descriptor.
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &lk) }, 0);
    let probe = || {
        let out = Command::new("python3")
            .args([
                "-c",
                // Read-only: one mount at a time may hold a file open
                // for writing (the write lease).
                "import fcntl,os,sys\n\
                 f=os.open(sys.argv[1],os.O_RDONLY)\n\
                 try:\n  fcntl.lockf(f,fcntl.LOCK_SH|fcntl.LOCK_NB)\n  print('got')\n\
                 except OSError as e:\n  print('refused',e.errno)\n",
                s(&b.path("shared.lock")),
            ])
            .output()
            .expect("python3 runs the lock probe");
        String::from_utf8(out.stdout).unwrap()
    };
    let seen = probe();
    assert!(seen.starts_with("refused"), "B must see A's lock: {seen}");
    // A's daemon dies with the lock held (the process holding it lives on).
    // SAFETY: kill sends a signal to the daemon's pid.
    assert_eq!(unsafe { libc::kill(a.pid, libc::SIGKILL) }, 0);
    // SAFETY: signal 0 only tests for the process.
    while unsafe { libc::kill(a.pid, 0) } == 0 {
        std::thread::yield_now();
    }
    assert_eq!(probe().trim(), "got", "a dead mount's locks are void");
    drop(f);
    a.umount();
}
