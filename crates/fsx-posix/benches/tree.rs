//! The tree at the library layer beside `std::fs` on the local disk, in
//! one run: create, stat and unlink of many files in one directory and
//! spread over 100; readdir of a large directory; lookups 20 levels deep;
//! branch creation on a volume with many files against one with few.
//!
//! `cargo bench -p fsx-posix --bench tree` (release build). Sizes:
//! `FSX_BENCH_FILES` (default 10,000) and `FSX_BENCH_DIR_ENTRIES`
//! (default 100,000). fsx runs on the embedded default: SQLite metadata
//! (WAL, `synchronous=FULL`: every call durable) and a local-directory
//! store, both in a temporary directory on the same disk as the
//! `std::fs` side, which gets no `fsync` (the kernel's page cache only).
//! Results: a table on stdout, ratios fsx ÷ std (lower is better).

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fsx_engine::{SystemEnv, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_meta::sqlite::SqliteMeta;
use fsx_posix::{Caller, Fs, NodeKind, OpenFlags};
use fsx_store::local::LocalBackend;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn volume(dir: &Path) -> Volume {
    std::fs::create_dir_all(dir).unwrap();
    Volume::create(
        Arc::new(SqliteMeta::open(dir.join("meta.db"), true).unwrap()),
        Arc::new(LocalBackend::open(dir.join("data")).unwrap()),
        Arc::new(SystemEnv::new()),
        VolumeConfig::new("bench", 2 << 20, "data", 1),
        VolumeOptions::default(),
    )
    .await
    .unwrap()
}

struct Row {
    what: String,
    ops: usize,
    fsx: Duration,
    std: Duration,
}

fn report(rows: &[Row]) {
    println!(
        "| workload | ops | fsx ops/s | std::fs ops/s | fsx ÷ std time |\n|---|---:|---:|---:|---:|"
    );
    for r in rows {
        let rate = |d: Duration| r.ops as f64 / d.as_secs_f64().max(1e-9);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} |",
            r.what,
            r.ops,
            rate(r.fsx),
            rate(r.std),
            r.fsx.as_secs_f64() / r.std.as_secs_f64().max(1e-9)
        );
    }
}

fn name(i: usize) -> String {
    format!("file-{i:07}")
}

/// Create (open with O_CREAT, close), stat, unlink of `n` files, in one
/// directory or spread over 100.
async fn files(rows: &mut Vec<Row>, base: &Path, n: usize, spread: bool) {
    let fs = Fs::new(volume(&base.join("fsx")).await).await.unwrap();
    let me = Caller::root();
    let real = base.join("std");
    std::fs::create_dir_all(&real).unwrap();
    let dirs = if spread { 100 } else { 1 };
    let mut fsx_dirs = Vec::new();
    for d in 0..dirs {
        let name = format!("d{d}");
        fsx_dirs.push(
            fs.mkdir(fs.root(), name.as_bytes(), 0o755, &me)
                .await
                .unwrap()
                .ino,
        );
        std::fs::create_dir(real.join(&name)).unwrap();
    }
    let place = |i: usize| (i % dirs, name(i));
    let label = if spread {
        "over 100 directories"
    } else {
        "in one directory"
    };

    let t = Instant::now();
    for i in 0..n {
        let (d, f) = place(i);
        let (_, fh) = fs
            .create(
                fsx_dirs[d],
                f.as_bytes(),
                0o644,
                OpenFlags::read_write(),
                true,
                &me,
            )
            .await
            .unwrap();
        fs.release(fh).await.unwrap();
    }
    let fsx = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        let (d, f) = place(i);
        drop(std::fs::File::create(real.join(format!("d{d}")).join(f)).unwrap());
    }
    rows.push(Row {
        what: format!("create + close, {label}"),
        ops: n,
        fsx,
        std: t.elapsed(),
    });

    let t = Instant::now();
    for i in 0..n {
        let (d, f) = place(i);
        let a = fs.lookup(fsx_dirs[d], f.as_bytes(), &me).await.unwrap();
        assert_eq!(a.kind, NodeKind::File);
    }
    let fsx = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        let (d, f) = place(i);
        std::fs::symlink_metadata(real.join(format!("d{d}")).join(f)).unwrap();
    }
    rows.push(Row {
        what: format!("stat (lookup), {label}"),
        ops: n,
        fsx,
        std: t.elapsed(),
    });

    let t = Instant::now();
    for i in 0..n {
        let (d, f) = place(i);
        fs.unlink(fsx_dirs[d], f.as_bytes(), &me).await.unwrap();
    }
    let fsx = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        let (d, f) = place(i);
        std::fs::remove_file(real.join(format!("d{d}")).join(f)).unwrap();
    }
    rows.push(Row {
        what: format!("unlink, {label}"),
        ops: n,
        fsx,
        std: t.elapsed(),
    });
}

/// Listing a directory of `n` entries (made with `mknod`, one
/// transaction each).
async fn readdir(rows: &mut Vec<Row>, base: &Path, n: usize) -> Fs {
    let fs = Fs::new(volume(&base.join("fsx")).await).await.unwrap();
    let me = Caller::root();
    let real = base.join("std");
    std::fs::create_dir_all(&real).unwrap();
    let dir = fs.mkdir(fs.root(), b"big", 0o755, &me).await.unwrap().ino;
    std::fs::create_dir(real.join("big")).unwrap();
    for i in 0..n {
        fs.mknod(dir, name(i).as_bytes(), NodeKind::File, 0o644, 0, &me)
            .await
            .unwrap();
        drop(std::fs::File::create(real.join("big").join(name(i))).unwrap());
    }
    let t = Instant::now();
    let mut seen = 0;
    let mut after: Option<bytes::Bytes> = None;
    loop {
        let page = fs.readdir(dir, after.as_deref(), 1024).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        seen += page.len();
    }
    assert_eq!(seen, n);
    let fsx = t.elapsed();
    let t = Instant::now();
    let count = std::fs::read_dir(real.join("big")).unwrap().count();
    assert_eq!(count, n);
    rows.push(Row {
        what: format!("readdir of {n} entries (pages of 1,024; ops = entries)"),
        ops: n,
        fsx,
        std: t.elapsed(),
    });
    fs
}

/// Resolving a path 20 directories deep, component by component.
async fn deep(rows: &mut Vec<Row>, base: &Path, times: usize) {
    let fs = Fs::new(volume(&base.join("fsx")).await).await.unwrap();
    let me = Caller::root();
    let mut real = base.join("std");
    let mut at = fs.root();
    for i in 0..20 {
        let n = format!("level{i}");
        at = fs.mkdir(at, n.as_bytes(), 0o755, &me).await.unwrap().ino;
        real = real.join(&n);
    }
    std::fs::create_dir_all(&real).unwrap();
    let t = Instant::now();
    for _ in 0..times {
        let mut at = fs.root();
        for i in 0..20 {
            at = fs
                .lookup(at, format!("level{i}").as_bytes(), &me)
                .await
                .unwrap()
                .ino;
        }
    }
    let fsx = t.elapsed();
    let t = Instant::now();
    for _ in 0..times {
        std::fs::symlink_metadata(&real).unwrap();
    }
    rows.push(Row {
        what: format!("path 20 directories deep, {times} resolutions (ops = resolutions)"),
        ops: times,
        fsx,
        std: t.elapsed(),
    });
}

/// Branch creation on a volume holding `big` files against one holding
/// 100: the median of 5 creations each.
async fn branches(big_fs: &Fs, base: &Path, big: usize) {
    let small = Fs::new(volume(&base.join("small")).await).await.unwrap();
    let me = Caller::root();
    for i in 0..100 {
        small
            .mknod(
                small.root(),
                name(i).as_bytes(),
                NodeKind::File,
                0o644,
                0,
                &me,
            )
            .await
            .unwrap();
    }
    let time = async |fs: &Fs, tag: &str| {
        let mut v = Vec::new();
        for i in 0..5 {
            let t = Instant::now();
            fs.volume()
                .create_branch(&format!("{tag}-{i}"))
                .await
                .unwrap();
            v.push(t.elapsed());
        }
        v.sort();
        v[2]
    };
    let b = time(big_fs, "big").await;
    let s = time(&small, "small").await;
    println!(
        "\nbranch creation (median of 5): {big} files {:.2} ms, 100 files {:.2} ms, ratio {:.2}",
        b.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3,
        b.as_secs_f64() / s.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used.
    let n = env_usize("FSX_BENCH_FILES", 10_000);
    let entries = env_usize("FSX_BENCH_DIR_ENTRIES", 100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let mut rows = Vec::new();
        files(&mut rows, &tmp.path().join("one"), n, false).await;
        files(&mut rows, &tmp.path().join("spread"), n, true).await;
        let big = readdir(&mut rows, &tmp.path().join("readdir"), entries).await;
        deep(&mut rows, &tmp.path().join("deep"), n).await;
        report(&rows);
        branches(&big, &tmp.path().join("branches"), entries).await;
    });
}
