//! Branch creation time against database size: a SQLite database of 10 MiB
//! and one of 1 GiB, built through the fsx VFS on a local volume, branched
//! many times. Creating a branch copies nothing, so the two should cost the
//! same (the target is a ratio of at most 1.2). Measured two ways:
//!
//! - **from a commit**: `create_branch` on a commit;
//! - **from the head**: after a small SQLite write on `main`, so the branch
//!   first commits `main`'s head (freezes it) — the usual case.
//!
//! The reference, in the same run, is what a branch costs without fsx:
//! copying the database file on the same disk (`std::fs::copy` + fsync).
//!
//! A second table is the price of history: a 10 MiB database scanned by a
//! fresh connection after 0, 100 and 1,000 commits that each changed a few
//! of its pages (`FSX_BENCH_HISTORY=0,100,1000`), before and after `fsx gc`
//! packs the commits' dirty pages.
//!
//! ```text
//! cargo bench -p fsx-sqlite --bench branch
//! FSX_BENCH_DIR=/var/tmp FSX_BENCH_BRANCHES=50 cargo bench -p fsx-sqlite --bench branch
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::env_usize;
use rusqlite::{Connection, OpenFlags};

const BLOB: usize = 256 << 10;

fn open(vol: &Path) -> Result<Connection> {
    fsx_sqlite::register()?;
    Ok(Connection::open_with_flags(
        format!("file:app.db?vfs=fsx&volume={}&mode=rwc", vol.display()),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
    )?)
}

/// Fills `c` with about `bytes` of rows.
fn fill(c: &Connection, bytes: usize) -> Result<()> {
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)")?;
    let rows = bytes / BLOB;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(64) {
        let tx = c.unchecked_transaction()?;
        for _ in chunk {
            tx.execute("INSERT INTO t (b) VALUES (randomblob(?1))", [BLOB as i64])?;
        }
        tx.commit()?;
    }
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

struct Row {
    size: usize,
    from_commit: (Duration, Duration),
    from_head: (Duration, Duration),
    copy: Duration,
    db_bytes: u64,
}

fn measure(root: &Path, size: usize, n: usize) -> Result<Row> {
    let vol = root.join(format!("vol-{size}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let c = open(&vol)?;
    let start = Instant::now();
    fill(&c, size)?;
    eprintln!(
        "  built a {} MiB database in {:.1?}",
        size >> 20,
        start.elapsed()
    );
    let volume = rt.block_on(fsx_volume::open(
        &vol,
        Arc::new(fsx_engine::SystemEnv::new()),
        fsx_engine::VolumeOptions::default(),
    ))?;
    let db_bytes = rt.block_on(volume.stat("app.db"))?.size;
    ensure!(db_bytes as usize >= size, "database is {db_bytes} bytes");

    let base = rt.block_on(volume.commit("bench base"))?;
    let at = rt.block_on(volume.at_commit(base.id))?;
    let mut from_commit = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        rt.block_on(at.create_branch(&format!("c{i}")))?;
        from_commit.push(t.elapsed());
    }
    let mut from_head = Vec::new();
    for i in 0..n {
        c.execute(
            "UPDATE t SET b = randomblob(100) WHERE id = ?1",
            [(i % 10 + 1) as i64],
        )?;
        let t = Instant::now();
        rt.block_on(volume.create_branch(&format!("h{i}")))?;
        from_head.push(t.elapsed());
    }
    drop(c);

    // Reference: a branch by copying the file on the same disk.
    let native = root.join(format!("native-{size}.db"));
    {
        let n = Connection::open(&native)?;
        fill(&n, size)?;
    }
    let copy_to = root.join(format!("copy-{size}.db"));
    let mut copies = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        std::fs::copy(&native, &copy_to)?;
        std::fs::File::open(&copy_to)?.sync_all()?;
        copies.push(t.elapsed());
        std::fs::remove_file(&copy_to)?;
    }
    std::fs::remove_file(&native)?;
    let row = Row {
        size,
        from_commit: (median(&mut from_commit), p90(&mut from_commit)),
        from_head: (median(&mut from_head), p90(&mut from_head)),
        copy: median(&mut copies),
        db_bytes,
    };
    drop(volume);
    std::fs::remove_dir_all(&vol).context("cleaning up")?;
    Ok(row)
}

/// Seconds of a full scan of `app.db` through a fresh connection to
/// `scope` (no warm caches in this process).
fn scan(vol: &Path, scope: &str) -> Result<Duration> {
    let c = Connection::open_with_flags(
        format!("file:app.db?vfs=fsx&volume={}&{scope}", vol.display()),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )?;
    let t = Instant::now();
    // Concatenation reads every blob; length(b) alone would read no
    // overflow page.
    let n: i64 = c.query_row("SELECT sum(length(b || x'')) FROM t", [], |r| r.get(0))?;
    ensure!(n > 0, "empty scan");
    Ok(t.elapsed())
}

/// A 10 MiB database scanned after `commits` commits, each after a
/// one-row update of a small table (so every commit's layer holds a few
/// changed pages of the file, and the scanned pages lie below all of
/// them). The fresh connection's first read of the file under a long
/// history builds the summary of its frozen layers, so the time includes
/// that.
fn history(root: &Path, commits: usize) -> Result<(Duration, Duration, Duration)> {
    let vol = root.join(format!("hist-{commits}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    {
        let c = open(&vol)?;
        fill(&c, 10 << 20)?;
        // Small rows the commits change; the scan reads the big ones.
        c.execute_batch(
            "CREATE TABLE s (id INTEGER PRIMARY KEY, v BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO s SELECT i, randomblob(100) FROM n;",
        )?;
    }
    let volume = rt.block_on(fsx_volume::open(
        &vol,
        Arc::new(fsx_engine::SystemEnv::new()),
        fsx_engine::VolumeOptions::default(),
    ))?;
    let c = open(&vol)?;
    let mut last = rt.block_on(volume.commit("start"))?.id;
    for i in 0..commits {
        c.execute(
            "UPDATE s SET v = randomblob(100) WHERE id = ?1",
            [(i * 7 % 100 + 1) as i64],
        )?;
        last = rt.block_on(volume.commit("step"))?.id;
    }
    drop(c);
    let before = scan(&vol, &format!("commit={last}"))?;
    let head = scan(&vol, "branch=main")?;
    rt.block_on(volume.gc(&fsx_engine::GcOptions::default(), &fsx_engine::NoProgress))?;
    let after_gc = scan(&vol, &format!("commit={last}"))?;
    drop(volume);
    std::fs::remove_dir_all(&vol)?;
    Ok((before, head, after_gc))
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    let n = env_usize("FSX_BENCH_BRANCHES", 200);
    let base = std::env::var("FSX_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let root = tempfile::tempdir_in(base)?;
    let mut rows = Vec::new();
    for size in [10usize << 20, 1 << 30] {
        eprintln!("database of {} MiB, {n} branches each way", size >> 20);
        rows.push(measure(root.path(), size, n)?);
    }
    println!(
        "| database | file bytes | branch from commit (median / p90) | branch from head (median / p90) | copy the file (reference) |"
    );
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} MiB | {} | {:.2?} / {:.2?} | {:.2?} / {:.2?} | {:.2?} |",
            r.size >> 20,
            r.db_bytes,
            r.from_commit.0,
            r.from_commit.1,
            r.from_head.0,
            r.from_head.1,
            r.copy
        );
    }
    let ratio = |f: fn(&Row) -> Duration| f(&rows[1]).as_secs_f64() / f(&rows[0]).as_secs_f64();
    println!();
    println!(
        "1 GiB / 10 MiB: branch from commit {:.2}x, branch from head {:.2}x, file copy {:.1}x",
        ratio(|r| r.from_commit.0),
        ratio(|r| r.from_head.0),
        ratio(|r| r.copy)
    );
    let depths: Vec<usize> = std::env::var("FSX_BENCH_HISTORY")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 100, 1000]);
    println!();
    println!(
        "| commits that changed the file | scan of the latest commit | scan of main | same commit after `fsx gc` |"
    );
    println!("|---|---|---|---|");
    for n in depths {
        eprintln!("scanning a 10 MiB database after {n} commits");
        let (before, head, after) = history(root.path(), n)?;
        println!("| {n} | {before:.2?} | {head:.2?} | {after:.2?} |");
    }
    Ok(())
}
