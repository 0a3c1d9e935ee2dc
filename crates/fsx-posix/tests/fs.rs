//! The calls the differential test does not cover, each against a real
//! volume (SQLite metadata, local-directory store): unlinked files kept
//! open, sessions killed with files unlinked and locks held (a real
//! SIGKILLed child process), locks between two sessions, `statfs`, sparse
//! files, `fallocate`, read-only commits and shared handles.

// The killed child speaks to the harness on stdout.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use fsx_engine::{GcOptions, NoProgress, SystemEnv, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_meta::sqlite::SqliteMeta;
use fsx_posix::{Caller, Fs, LockKind, LockRange, OpenFlags, RenameFlags, SetAttrs, Whence, errno};
use fsx_store::local::LocalBackend;
use fsx_testkit::crash;

async fn create(dir: &Path) -> Volume {
    Volume::create(
        Arc::new(SqliteMeta::open(dir.join("meta.db"), true).unwrap()),
        Arc::new(LocalBackend::open(dir.join("data")).unwrap()),
        Arc::new(SystemEnv::new()),
        VolumeConfig::new("fs-test", 256 * 1024, "data", 1),
        VolumeOptions::default(),
    )
    .await
    .unwrap()
}

async fn open(dir: &Path) -> Volume {
    Volume::open(
        Arc::new(SqliteMeta::open(dir.join("meta.db"), false).unwrap()),
        Arc::new(LocalBackend::open(dir.join("data")).unwrap()),
        Arc::new(SystemEnv::new()),
        VolumeOptions::default(),
    )
    .await
    .unwrap()
}

fn root() -> Caller {
    Caller::root()
}

fn posix(owner: u64, start: u64, stop: u64, exclusive: bool) -> LockRange {
    LockRange {
        kind: LockKind::Posix,
        owner,
        start,
        stop,
        exclusive,
    }
}

async fn read_all(fs: &Fs, fh: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(fh, out.len() as u64, 1 << 20).await.unwrap();
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_file_lives_until_its_last_handle_closes() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::new(create(dir.path()).await).await.unwrap();
    let me = root();
    let (a, fh) = fs
        .create(fs.root(), b"f", 0o644, OpenFlags::read_write(), true, &me)
        .await
        .unwrap();
    fs.write(fh, 0, &[7u8; 10_000]).await.unwrap();
    let reader = fs.open(a.ino, OpenFlags::read_only(), &me).await.unwrap();
    fs.unlink(fs.root(), b"f", &me).await.unwrap();
    assert_eq!(
        fs.lookup(fs.root(), b"f", &me).await.unwrap_err().errno(),
        errno::ENOENT
    );
    // Both handles still read and write it; stat says it has no link.
    fs.write(fh, 10_000, b"more").await.unwrap();
    fs.fsync(fh).await.unwrap();
    let data = read_all(&fs, reader).await;
    assert_eq!(data.len(), 10_004);
    assert_eq!(&data[10_000..], b"more");
    let st = fs.getattr(a.ino).await.unwrap();
    assert_eq!((st.nlink, st.size), (0, 10_004));
    assert_eq!(fs.volume().meta().orphans().await.unwrap().len(), 1);
    fs.release(fh).await.unwrap();
    assert_eq!(read_all(&fs, reader).await.len(), 10_004, "one handle left");
    fs.release(reader).await.unwrap();
    // The last close dropped it: no orphan, no inode, no data.
    assert!(fs.volume().meta().orphans().await.unwrap().is_empty());
    assert_eq!(fs.getattr(a.ino).await.unwrap_err().errno(), errno::ENOENT);
    let gc = fs
        .volume()
        .gc(&GcOptions::default().grace_ms(0), &NoProgress)
        .await
        .unwrap();
    assert!(
        fs.volume().fsck(&NoProgress).await.unwrap().is_clean(),
        "fsck after the orphan went ({gc:?})"
    );
}

const CHILD: &str = "a_session_killed_with_a_file_unlinked_and_a_lock_held_loses_both";

/// The child: opens a file, writes and syncs it, takes a lock, unlinks
/// the file while it is open, says so and waits to be killed.
async fn child(dir: &Path) {
    let fs = Fs::new(open(dir).await).await.unwrap();
    let me = root();
    let (a, fh) = fs
        .create(
            fs.root(),
            b"doomed",
            0o644,
            OpenFlags::read_write(),
            true,
            &me,
        )
        .await
        .unwrap();
    fs.write(fh, 0, &vec![1u8; 600_000]).await.unwrap();
    fs.fsync(fh).await.unwrap();
    fs.setlk(a.ino, &posix(1, 0, u64::MAX, true)).await.unwrap();
    fs.unlink(fs.root(), b"doomed", &me).await.unwrap();
    // The lock's file is gone from the tree: lock a named one too.
    let (b, _) = fs
        .create(
            fs.root(),
            b"kept",
            0o644,
            OpenFlags::read_write(),
            true,
            &me,
        )
        .await
        .unwrap();
    fs.setlk(b.ino, &posix(1, 0, 100, true)).await.unwrap();
    println!("ack {}", a.ino);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_with_a_file_unlinked_and_a_lock_held_loses_both() {
    if let Ok(dir) = std::env::var("FSX_POSIX_CHILD") {
        child(Path::new(&dir)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(create(dir.path()).await);
    let run = crash::run_child::<i64>(
        CHILD,
        &[("FSX_POSIX_CHILD", dir.path().to_str().unwrap())],
        crash::Stop::AfterAcks {
            acks: 1,
            delay: std::time::Duration::ZERO,
        },
    );
    assert!(
        matches!(run.ending, crash::Ending::Killed),
        "the child ended on its own: {}",
        run.output_tail()
    );
    let doomed = run.last.expect("the child acknowledged its unlink");
    let volume = open(dir.path()).await;
    let orphans = volume.meta().orphans().await.unwrap();
    assert_eq!(
        orphans.len(),
        1,
        "the dead session's unlinked file is recorded"
    );
    assert_eq!(orphans[0].ino, doomed);
    // The next file system over the volume reclaims it.
    let fs = Fs::new(volume).await.unwrap();
    assert!(fs.volume().meta().orphans().await.unwrap().is_empty());
    assert_eq!(fs.getattr(doomed).await.unwrap_err().errno(), errno::ENOENT);
    // The dead session's lock does not hold anyone up.
    let kept = fs.lookup(fs.root(), b"kept", &root()).await.unwrap();
    fs.setlk(kept.ino, &posix(9, 0, 10, true)).await.unwrap();
    let gc = fs
        .volume()
        .gc(&GcOptions::default().grace_ms(0), &NoProgress)
        .await
        .unwrap();
    assert!(
        gc.deleted > 0,
        "the unlinked file's extents are freed: {gc:?}"
    );
    assert!(fs.volume().fsck(&NoProgress).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_hold_between_sessions_until_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let a = Fs::new(create(dir.path()).await).await.unwrap();
    let b = Fs::new(open(dir.path()).await).await.unwrap();
    let me = root();
    let (f, fh) = a
        .create(a.root(), b"db", 0o644, OpenFlags::read_write(), true, &me)
        .await
        .unwrap();
    a.setlk(f.ino, &posix(1, 0, 4096, true)).await.unwrap();
    let e = b
        .setlk(f.ino, &posix(1, 100, 200, false))
        .await
        .unwrap_err();
    assert_eq!(e.errno(), errno::EAGAIN);
    let seen = b.getlk(f.ino, &posix(1, 100, 200, false)).await.unwrap();
    assert_eq!(
        seen.map(|l| (l.start, l.stop, l.exclusive)),
        Some((0, 4096, true))
    );
    b.setlk(f.ino, &posix(1, 4096, 8192, false)).await.unwrap();
    // flock is separate from POSIX locks and whole-file.
    let fl = LockRange {
        kind: LockKind::Flock,
        owner: fh,
        start: 0,
        stop: 0,
        exclusive: true,
    };
    a.setlk(f.ino, &fl).await.unwrap();
    assert_eq!(
        b.setlk(f.ino, &fl).await.unwrap_err().errno(),
        errno::EAGAIN
    );
    a.unlock_owner(f.ino, LockKind::Posix, 1).await.unwrap();
    b.setlk(f.ino, &posix(1, 100, 200, true)).await.unwrap();
    assert_eq!(
        b.setlk(f.ino, &fl).await.unwrap_err().errno(),
        errno::EAGAIN
    );
    a.close_all().await.unwrap();
    b.setlk(f.ino, &fl).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_files_fallocate_statfs_and_shared_handles() {
    let dir = tempfile::tempdir().unwrap();
    let volume = create(dir.path()).await;
    fsx_engine::settings::set_io_knob(
        volume.meta().as_ref(),
        "fs.capacity_bytes",
        &(1u64 << 30).to_string(),
    )
    .await
    .unwrap();
    drop(volume);
    let fs = Fs::new(open(dir.path()).await).await.unwrap();
    let me = root();
    let st = fs.statfs().await.unwrap();
    assert_eq!(st.blocks * u64::from(st.block_size), 1 << 30);
    assert_eq!(st.name_max, 255);
    let (a, w) = fs
        .create(
            fs.root(),
            b"sparse",
            0o644,
            OpenFlags::read_write(),
            true,
            &me,
        )
        .await
        .unwrap();
    // Data at 0 and at 1 MiB, a hole between and after (fallocate
    // extends the size without data).
    fs.write(w, 0, &[1u8; 4096]).await.unwrap();
    fs.write(w, 1 << 20, &[2u8; 4096]).await.unwrap();
    fs.fallocate(w, 0, 3 << 20, false, false).await.unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 3 << 20);
    assert_eq!(fs.lseek(w, 0, Whence::Hole).await.unwrap(), 4096);
    assert_eq!(fs.lseek(w, 4096, Whence::Data).await.unwrap(), 1 << 20);
    assert_eq!(
        fs.lseek(w, (1 << 20) + 4096, Whence::Data)
            .await
            .unwrap_err()
            .errno(),
        errno::ENXIO
    );
    // KEEP_SIZE leaves the size; PUNCH_HOLE zeroes the range.
    fs.fallocate(w, 0, 4 << 20, true, false).await.unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 3 << 20);
    fs.fallocate(w, 100, 200, true, true).await.unwrap();
    // A punch over whole pages leaves a hole SEEK_HOLE finds.
    fs.write(w, 2 << 20, &[3u8; 3 * 4096]).await.unwrap();
    fs.fallocate(w, (2 << 20) + 4096, 4096, true, true)
        .await
        .unwrap();
    assert_eq!(
        fs.lseek(w, 2 << 20, Whence::Hole).await.unwrap(),
        (2 << 20) + 4096
    );
    assert_eq!(
        fs.lseek(w, (2 << 20) + 4096, Whence::Data).await.unwrap(),
        (2 << 20) + 8192
    );
    fs.fsync(w).await.unwrap();
    assert_eq!(
        fs.lseek(w, (2 << 20) + 4096, Whence::Data).await.unwrap(),
        (2 << 20) + 8192,
        "the hole is durable"
    );
    // A second handle sees the first's unsynced writes at once.
    let r = fs.open(a.ino, OpenFlags::read_only(), &me).await.unwrap();
    let head = fs.read(r, 0, 400).await.unwrap();
    assert!(head[..100].iter().all(|&b| b == 1) && head[100..300].iter().all(|&b| b == 0));
    assert_eq!(head[300], 1);
    // O_APPEND writes at the end, wherever the caller asks.
    let ap = fs
        .open(
            a.ino,
            OpenFlags {
                write: true,
                append: true,
                ..OpenFlags::default()
            },
            &me,
        )
        .await
        .unwrap();
    fs.write(ap, 0, b"tail").await.unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, (3 << 20) + 4);
    assert_eq!(fs.read(r, 3 << 20, 10).await.unwrap(), b"tail");
    // A handle not open for writing cannot write.
    assert_eq!(
        fs.write(r, 0, b"x").await.unwrap_err().errno(),
        errno::EBADF
    );
    fs.close_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_read_only_and_keeps_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let volume = create(dir.path()).await;
    let fs = Fs::new(volume.clone()).await.unwrap();
    let me = root();
    let d = fs.mkdir(fs.root(), b"dir", 0o755, &me).await.unwrap();
    let (_, fh) = fs
        .create(d.ino, b"f", 0o600, OpenFlags::read_write(), true, &me)
        .await
        .unwrap();
    fs.write(fh, 0, b"committed").await.unwrap();
    fs.release(fh).await.unwrap();
    let c = volume.commit("snap").await.unwrap();
    fs.unlink(d.ino, b"f", &me).await.unwrap();
    let old = Fs::new(volume.at_commit(c.id).await.unwrap())
        .await
        .unwrap();
    let f = old.lookup(d.ino, b"f", &me).await.unwrap();
    assert_eq!(f.mode, 0o600);
    let r = old.open(f.ino, OpenFlags::read_only(), &me).await.unwrap();
    assert_eq!(read_all(&old, r).await, b"committed");
    for e in [
        old.mkdir(old.root(), b"x", 0o755, &me).await.map(|_| ()),
        old.unlink(d.ino, b"f", &me).await,
        old.open(f.ino, OpenFlags::read_write(), &me)
            .await
            .map(|_| ()),
        old.setattr(
            f.ino,
            &SetAttrs {
                mode: Some(0o644),
                ..SetAttrs::default()
            },
            None,
            &me,
        )
        .await
        .map(|_| ()),
    ] {
        assert_eq!(e.unwrap_err().errno(), errno::EROFS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_file_range_shares_whole_extents_and_copies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::new(create(dir.path()).await).await.unwrap();
    let me = root();
    const E: u64 = 256 * 1024;
    let data: Vec<u8> = (0..3 * E + 1000).map(|i| (i % 251) as u8).collect();
    let (src, w) = fs
        .create(fs.root(), b"src", 0o644, OpenFlags::read_write(), true, &me)
        .await
        .unwrap();
    fs.write(w, 0, &data).await.unwrap();
    fs.fsync(w).await.unwrap();
    let (dst, d) = fs
        .create(fs.root(), b"dst", 0o644, OpenFlags::read_write(), true, &me)
        .await
        .unwrap();
    let n = fs.copy_file_range(w, 0, d, 0, 10 * E).await.unwrap();
    assert_eq!(n, data.len() as u64, "stops at the source's end");
    fs.fsync(d).await.unwrap();
    assert_eq!(read_all(&fs, d).await, data);
    // The whole extents are the source's: the same keys, no new bytes.
    let meta = fs.volume().meta();
    let keys = async |ino| {
        meta.read_map(fsx_meta::View::MAIN, ino, 0, 4 * 64, 64)
            .await
            .unwrap()
            .extents
    };
    let (ks, kd) = (keys(src.ino).await, keys(dst.ino).await);
    assert!(ks.len() >= 3, "the source is packed: {ks:?}");
    assert_eq!(
        ks[..3],
        kd[..3],
        "the destination shares the source's extents"
    );
    // Unaligned: bytes.
    let (_, u) = fs
        .create(
            fs.root(),
            b"unaligned",
            0o644,
            OpenFlags::read_write(),
            true,
            &me,
        )
        .await
        .unwrap();
    assert_eq!(fs.copy_file_range(w, 100, u, 7, E).await.unwrap(), E);
    let got = read_all(&fs, u).await;
    assert_eq!(&got[7..], &data[100..100 + E as usize]);
    assert!(got[..7].iter().all(|&b| b == 0));
    // Writing the clone leaves the source alone; the source's removal
    // leaves the clone whole.
    fs.write(d, 5, b"changed").await.unwrap();
    fs.fsync(d).await.unwrap();
    assert_eq!(read_all(&fs, w).await, data);
    fs.release(w).await.unwrap();
    fs.unlink(fs.root(), b"src", &me).await.unwrap();
    // Every writer closed first: a GC without a grace period would also
    // take the records a writer pinned for extents it has not committed
    // yet (what the grace period is for).
    fs.release(d).await.unwrap();
    fs.release(u).await.unwrap();
    fs.volume()
        .gc(&GcOptions::default().grace_ms(0), &NoProgress)
        .await
        .unwrap();
    let mut want = data.clone();
    want[5..12].copy_from_slice(b"changed");
    let again = fs.open(dst.ino, OpenFlags::read_only(), &me).await.unwrap();
    assert_eq!(read_all(&fs, again).await, want);
    assert!(fs.volume().fsck(&NoProgress).await.unwrap().is_clean());
    // Overlapping ranges of one file are refused.
    let d = fs
        .open(dst.ino, OpenFlags::read_write(), &me)
        .await
        .unwrap();
    assert_eq!(
        fs.copy_file_range(d, 0, d, 10, 100)
            .await
            .unwrap_err()
            .errno(),
        errno::EINVAL
    );
    fs.close_all().await.unwrap();
}

/// Many open files each below their own buffer limit still keep no more
/// unsynced bytes in all than the session's limit: the write that goes
/// over it syncs its own file first. The synced bytes are there for
/// another session, the rest after close.
#[tokio::test(flavor = "multi_thread")]
async fn many_open_files_keep_unsynced_bytes_under_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::new(create(dir.path()).await).await.unwrap();
    let limit = 1u64 << 20;
    fs.set_dirty_limit(limit);
    let chunk = 256 * 1024;
    let mut fhs = Vec::new();
    for i in 0..8u8 {
        let (_, fh) = fs
            .create(
                fs.root(),
                format!("f{i}").as_bytes(),
                0o644,
                OpenFlags::read_write(),
                true,
                &root(),
            )
            .await
            .unwrap();
        fhs.push(fh);
    }
    let mut peak = 0;
    for round in 0..4u64 {
        for (i, &fh) in fhs.iter().enumerate() {
            let data = vec![i as u8 + 1; chunk];
            fs.write(fh, round * chunk as u64, &data).await.unwrap();
            peak = peak.max(fs.dirty_bytes());
        }
    }
    // 8 MiB written, none of it synced by the caller.
    assert!(
        peak <= limit + chunk as u64,
        "{peak} unsynced bytes buffered with a limit of {limit}"
    );
    assert!(peak > 0);
    let other = Fs::new(open(dir.path()).await).await.unwrap();
    let mut synced = 0;
    for i in 0..8u8 {
        let a = other
            .lookup(other.root(), format!("f{i}").as_bytes(), &root())
            .await
            .unwrap();
        synced += a.size;
    }
    assert!(
        synced >= 8 * 4 * chunk as u64 - limit - chunk as u64,
        "only {synced} bytes reached the volume before close"
    );
    for fh in fhs {
        fs.release(fh).await.unwrap();
    }
    assert_eq!(fs.dirty_bytes(), 0);
    for i in 0..8u8 {
        let a = other
            .lookup(other.root(), format!("f{i}").as_bytes(), &root())
            .await
            .unwrap();
        assert_eq!(a.size, 4 * chunk as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_changes_without_dirsync_wait_for_the_next_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::new(create(dir.path()).await).await.unwrap();
    let me = root();
    // The library's default: every change is durable when it returns.
    fs.mkdir(fs.root(), b"synced", 0o755, &me).await.unwrap();
    assert!(!fs.tree_sync_pending());

    fs.set_dirsync(false);
    let d = fs.mkdir(fs.root(), b"d", 0o755, &me).await.unwrap();
    assert!(fs.tree_sync_pending(), "a deferred mkdir waits for nothing");
    assert_eq!(fs.lookup(fs.root(), b"d", &me).await.unwrap().ino, d.ino);
    fs.sync_tree().await.unwrap();
    assert!(!fs.tree_sync_pending(), "fsyncdir left a change waiting");

    // Closing an empty new file is no barrier (as on a local disk) …
    let (_, fh) = fs
        .create(d.ino, b"empty", 0o644, OpenFlags::read_write(), true, &me)
        .await
        .unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert!(
        fs.tree_sync_pending(),
        "closing an unwritten file flushed the tree"
    );
    // … but closing a written one syncs its data durably, and that commit
    // carries every change before it.
    let (_, fh) = fs
        .create(d.ino, b"written", 0o644, OpenFlags::read_write(), true, &me)
        .await
        .unwrap();
    fs.write(fh, 0, b"bytes").await.unwrap();
    fs.flush(fh).await.unwrap();
    assert!(!fs.tree_sync_pending(), "a durable data sync is no barrier");
    fs.release(fh).await.unwrap();

    // fsync of a file with nothing to write is a barrier too.
    fs.rename(
        d.ino,
        b"empty",
        d.ino,
        b"renamed",
        RenameFlags::default(),
        &me,
    )
    .await
    .unwrap();
    assert!(fs.tree_sync_pending());
    let reader = fs
        .open(
            fs.lookup(d.ino, b"written", &me).await.unwrap().ino,
            OpenFlags::read_only(),
            &me,
        )
        .await
        .unwrap();
    fs.fsync(reader).await.unwrap();
    assert!(!fs.tree_sync_pending(), "fsync left the rename waiting");
    fs.release(reader).await.unwrap();

    // So is closing the file system.
    fs.unlink(d.ino, b"renamed", &me).await.unwrap();
    assert!(fs.tree_sync_pending());
    fs.close_all().await.unwrap();
    assert!(!fs.tree_sync_pending(), "close_all left the unlink waiting");

    fs.set_dirsync(true);
    fs.mkdir(fs.root(), b"again", 0o755, &me).await.unwrap();
    assert!(!fs.tree_sync_pending());
}

const DEFERRED_CHILD: &str = "deferred_tree_changes_outlive_a_killed_session";

/// The child: without dirsync, round `i` makes `d<i>`, creates `d<i>/f`
/// and renames it to `d<i>/g`, never syncing, then acknowledges `i`.
async fn deferred_child(dir: &Path) {
    let fs = Fs::new(open(dir).await).await.unwrap();
    fs.set_dirsync(false);
    let me = root();
    for i in 0u64.. {
        let d = fs
            .mkdir(fs.root(), format!("d{i}").as_bytes(), 0o755, &me)
            .await
            .unwrap();
        let (_, fh) = fs
            .create(d.ino, b"f", 0o644, OpenFlags::read_write(), true, &me)
            .await
            .unwrap();
        fs.release(fh).await.unwrap();
        fs.rename(d.ino, b"f", d.ino, b"g", RenameFlags::default(), &me)
            .await
            .unwrap();
        // What is acknowledged here is not durable yet: the test is about
        // deferred commits.
        assert!(fs.tree_sync_pending());
        println!("ack {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_tree_changes_outlive_a_killed_session() {
    if let Ok(dir) = std::env::var("FSX_POSIX_DEFERRED_CHILD") {
        deferred_child(Path::new(&dir)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(create(dir.path()).await);
    let mut rng = crash::Rng(crash::seed(DEFERRED_CHILD));
    let acks = 50 + rng.below(150);
    let run = crash::run_child::<u64>(
        DEFERRED_CHILD,
        &[("FSX_POSIX_DEFERRED_CHILD", dir.path().to_str().unwrap())],
        crash::Stop::AfterAcks {
            acks,
            delay: std::time::Duration::from_micros(rng.below(3_000)),
        },
    );
    assert!(
        matches!(run.ending, crash::Ending::Killed),
        "the child ended on its own: {}",
        run.output_tail()
    );
    let last = run.last.expect("the child acknowledged a round");
    let fs = Fs::new(open(dir.path()).await).await.unwrap();
    let me = root();
    for i in 0..=last {
        let d = fs
            .lookup(fs.root(), format!("d{i}").as_bytes(), &me)
            .await
            .unwrap_or_else(|e| panic!("acknowledged d{i} is gone: {e}"));
        fs.lookup(d.ino, b"g", &me)
            .await
            .unwrap_or_else(|e| panic!("acknowledged d{i}/g is gone: {e}"));
        assert_eq!(
            fs.lookup(d.ino, b"f", &me).await.unwrap_err().errno(),
            errno::ENOENT,
            "d{i}/f was renamed"
        );
    }
    assert!(fs.volume().fsck(&NoProgress).await.unwrap().is_clean());
}

/// Opens and closes are serialised by one lock, and a close of a written
/// file holds it through its durable sync; under a steady stream of
/// writers making, writing and closing files, another `create` still gets
/// its turn: it completes while the stream goes on, not after it ends
/// (with an unfair lock it waited for the whole stream, as `fsx bench
/// serve` found).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_not_starved_by_a_stream_of_opens_and_closes() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const ROUNDS: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(Fs::new(create(dir.path()).await).await.unwrap());
    let me = root();
    let write = OpenFlags {
        write: true,
        ..OpenFlags::default()
    };
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let churners: Vec<_> = (0..4)
        .map(|c| {
            let (fs, done, started) = (fs.clone(), done.clone(), started.clone());
            tokio::spawn(async move {
                let me = root();
                let mut n = 0;
                while n < ROUNDS && !done.load(Ordering::SeqCst) {
                    let name = format!("c{c}-{n}");
                    let (_, fh) = fs
                        .create(fs.root(), name.as_bytes(), 0o644, write, true, &me)
                        .await
                        .unwrap();
                    fs.write(fh, 0, b"x").await.unwrap();
                    fs.release(fh).await.unwrap();
                    n += 1;
                    started.fetch_add(1, Ordering::SeqCst);
                }
                n
            })
        })
        .collect();
    // Into the stream before the create asks for its turn.
    while started.load(Ordering::SeqCst) < 8 {
        tokio::task::yield_now().await;
    }
    let (_, fh) = fs
        .create(fs.root(), b"new", 0o644, write, true, &me)
        .await
        .unwrap();
    done.store(true, Ordering::SeqCst);
    fs.release(fh).await.unwrap();
    for c in churners {
        let n = c.await.unwrap();
        assert!(
            n < ROUNDS,
            "the create waited until a writer had made and closed {ROUNDS} files"
        );
    }
}

/// An open of a file during its last close waits for that close: it
/// neither meets the closing handle's lease nor misses its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_during_the_last_close_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(Fs::new(create(dir.path()).await).await.unwrap());
    let me = root();
    let write = OpenFlags {
        read: true,
        write: true,
        ..OpenFlags::default()
    };
    let (a, mut fh) = fs
        .create(fs.root(), b"f", 0o644, write, true, &me)
        .await
        .unwrap();
    for round in 0..8u8 {
        let data = vec![round; 512 << 10];
        fs.write(fh, 0, &data).await.unwrap();
        // The last handle closes (a durable sync of 512 KiB unsynced)
        // while the file is opened for writing again.
        let closing = {
            let fs = fs.clone();
            tokio::spawn(async move { fs.release(fh).await })
        };
        let reopened = fs.open(a.ino, write, &me).await.unwrap();
        closing.await.unwrap().unwrap();
        assert_eq!(read_all(&fs, reopened).await, data, "round {round}");
        fh = reopened;
    }
    fs.release(fh).await.unwrap();
}

/// A database's WAL (`*-wal`, `*-journal`, `*.wal`, PostgreSQL's segment
/// names) is kept in a local journal while it is written: a sync is one
/// `fdatasync` of it, and the volume's own copy stays empty until the
/// close folds it in. Meanwhile another session on the volume sees its
/// size and bytes (a database checks a hot journal's size); after the
/// close the volume holds them; an ordinary file is not journaled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_wal_is_kept_in_a_local_journal_while_written() {
    use fsx_engine::journal::LocalJournalDir;
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("meta.db-journals");
    let with_journals = || {
        VolumeOptions::default().journals(Some(Arc::new(LocalJournalDir::new(
            journals.clone().into_os_string(),
        ))))
    };
    let v = Volume::create(
        Arc::new(SqliteMeta::open(dir.path().join("meta.db"), true).unwrap()),
        Arc::new(LocalBackend::open(dir.path().join("data")).unwrap()),
        Arc::new(SystemEnv::new()),
        VolumeConfig::new("fs-test", 256 * 1024, "data", 1),
        with_journals(),
    )
    .await
    .unwrap();
    let fs = Fs::new(v.clone()).await.unwrap();
    let other = Fs::new(
        Volume::open(
            Arc::new(SqliteMeta::open(dir.path().join("meta.db"), false).unwrap()),
            Arc::new(LocalBackend::open(dir.path().join("data")).unwrap()),
            Arc::new(SystemEnv::new()),
            with_journals(),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let me = root();
    let rw = OpenFlags {
        read: true,
        write: true,
        ..OpenFlags::default()
    };
    let data = vec![7u8; 100_000];
    for (name, journaled) in [
        (&b"db-wal"[..], true),
        (b"000000010000000000000001", true),
        (b"plain", false),
    ] {
        let (a, fh) = fs
            .create(fs.root(), name, 0o644, rw, true, &me)
            .await
            .unwrap();
        fs.write(fh, 0, &data).await.unwrap();
        fs.fsync(fh).await.unwrap();
        let stored = v
            .meta()
            .getattr(fsx_meta::View::MAIN, a.ino)
            .await
            .unwrap()
            .size;
        assert_eq!(
            stored == 0,
            journaled,
            "{name:?}: the volume's copy holds {stored}"
        );
        assert_eq!(
            v.journal_size(a.ino).unwrap().is_some(),
            journaled,
            "{name:?}"
        );
        // The other session sees it whole.
        let seen = other.lookup(other.root(), name, &me).await.unwrap();
        assert_eq!(seen.size, data.len() as u64, "{name:?}");
        let rh = other
            .open(a.ino, OpenFlags::read_only(), &me)
            .await
            .unwrap();
        assert_eq!(read_all(&other, rh).await, data, "{name:?}");
        other.release(rh).await.unwrap();
        fs.release(fh).await.unwrap();
        // A journaled file stays open a while after its last close
        // (synced, its lease held): a reopen finds it as it was, without
        // a fold into the volume and a new journal.
        assert_eq!(
            v.journal_size(a.ino).unwrap().is_some(),
            journaled,
            "{name:?}"
        );
        if journaled {
            // The journal file's inode: a fold and a new journal would
            // make another file.
            let journal_ino = || {
                use std::os::unix::fs::MetadataExt;
                let mut inos: Vec<u64> = std::fs::read_dir(&journals)
                    .unwrap()
                    .map(|e| e.unwrap().metadata().unwrap().ino())
                    .collect();
                inos.sort_unstable();
                inos
            };
            let before = journal_ino();
            assert_eq!(before.len(), 1, "{name:?}");
            let fh = fs.open(a.ino, rw, &me).await.unwrap();
            fs.write(fh, 0, &data).await.unwrap();
            fs.release(fh).await.unwrap();
            assert_eq!(journal_ino(), before, "{name:?}: folded between two opens");
            assert_eq!(other.getattr(a.ino).await.unwrap().size, data.len() as u64);
        }
        // Once idle, the close folds it into the volume.
        fs.close_idle_journals(true).await.unwrap();
        let stored = v
            .meta()
            .getattr(fsx_meta::View::MAIN, a.ino)
            .await
            .unwrap()
            .size;
        assert_eq!(stored, data.len() as u64, "{name:?} after the close");
        assert!(v.journal_size(a.ino).unwrap().is_none(), "{name:?}");
        assert_eq!(other.getattr(a.ino).await.unwrap().size, data.len() as u64);
    }
}
