//! What one database commit costs, on fsx and on the raw disk: autocommit
//! point updates with `synchronous = FULL`, in WAL mode (what users run)
//! and in the rollback-journal mode (SQLite's default), native SQLite and
//! fsx's VFS on the same disk, runs interleaved.
//!
//! For each mode and storage it reports the latency of one commit (mean and
//! p99 over every commit of every run), and from a separate counted run:
//! `fsync`s and `fdatasync`s per commit (counted by `strace -c` when it is on
//! the PATH, so that run is not timed) and bytes written per commit (the process's `wchar` from
//! `/proc/self/io`: every byte any `write`/`pwrite` moved, the metadata
//! database's WAL and checkpoints included).
//!
//! ```text
//! FSX_BENCH_DIR=/var/tmp cargo bench -p fsx-sqlite --bench commit
//! FSX_BENCH_RUNS=3 FSX_BENCH_UPDATES=10000 FSX_BENCH_ROWS=20000 FSX_BENCH_COUNTED=10000 …
//! FSX_BENCH_MODES=wal …   # one mode only (default: wal,delete)
//! ```
//!
//! To see where one storage's bytes go, trace a child by hand:
//!
//! ```text
//! FSX_BENCH_CHILD=fsx:wal FSX_BENCH_CHILD_DIR=/var/tmp/x FSX_BENCH_SETUP=1 target/release/deps/commit-<hash>
//! FSX_BENCH_CHILD=fsx:wal FSX_BENCH_CHILD_DIR=/var/tmp/x strace -f -y -e trace=pwrite64,fdatasync,fsync target/release/deps/commit-<hash>
//! ```
//!
//! Payloads are `randomblob`s: fsx reads holes as zeros, so a zero payload
//! could not tell a lost page from a written one, and random bytes do not
//! compress.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::{env_usize, which};
use rusqlite::{Connection, params};

const MODES: [&str; 2] = ["wal", "delete"];
const STORAGES: [&str; 2] = ["native", "fsx"];

/// Opens the database of `storage` under `dir`.
fn open(storage: &str, dir: &Path) -> Result<Connection> {
    Ok(match storage {
        "native" => Connection::open(dir.join("native.db"))?,
        _ => {
            fsx_sqlite::register()?;
            Connection::open(format!(
                "file:bench.db?vfs=fsx&volume={}&mode=rwc",
                dir.join("vol").display()
            ))?
        }
    })
}

/// Creates the table with `rows` rows of 100 random bytes, in `mode`.
fn setup(c: &Connection, mode: &str, rows: usize) -> Result<()> {
    let got: String = c.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))?;
    ensure!(
        got.eq_ignore_ascii_case(mode),
        "journal_mode {mode} gave {got}"
    );
    c.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
    )?;
    let tx = c.unchecked_transaction()?;
    {
        let mut st = tx.prepare("INSERT INTO t VALUES (?1, randomblob(100))")?;
        for i in 0..rows {
            st.execute(params![i as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Runs `updates` autocommit updates; the latency of each.
fn updates(c: &Connection, mode: &str, rows: usize, n: usize) -> Result<Vec<Duration>> {
    // A reopened connection starts in the database's mode (WAL persists;
    // DELETE is the default), with the session's synchronous setting.
    c.execute_batch("PRAGMA synchronous = FULL")?;
    let got: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    ensure!(
        got.eq_ignore_ascii_case(mode),
        "journal_mode is {got}, not {mode}"
    );
    let mut st = c.prepare_cached("UPDATE t SET v = randomblob(100) WHERE id = ?1")?;
    let mut out = Vec::with_capacity(n);
    for u in 0..n {
        let id = (u * 7_919) % rows;
        let start = Instant::now();
        st.execute(params![id as i64])?;
        out.push(start.elapsed());
    }
    Ok(out)
}

/// `wchar` of this process (bytes its write-family calls moved).
fn wchar() -> Result<u64> {
    let io = std::fs::read_to_string("/proc/self/io")?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .context("no wchar in /proc/self/io")?
        .trim()
        .parse()
        .context("wchar")
}

/// The counted child: opens an existing database and runs `n` updates,
/// printing the bytes written.
fn child(storage: &str, mode: &str, dir: &Path, rows: usize, n: usize) -> Result<()> {
    if std::env::var_os("FSX_BENCH_SETUP").is_some() {
        // Only create the database (for tracing a child by hand).
        return setup(&open(storage, dir)?, mode, rows);
    }
    let c = open(storage, dir)?;
    // Warm: the first commit opens the journal or WAL.
    updates(&c, mode, rows, 1)?;
    let before = wchar()?;
    updates(&c, mode, rows, n)?;
    let after = wchar()?;
    println!("WCHAR {}", after - before);
    Ok(())
}

/// Syncs (if `strace` is on the PATH) and bytes per commit of `n`
/// updates, from a child run (the child's warm-up and opening are included
/// in the sync count: a handful over `n` commits).
fn counted(
    storage: &str,
    mode: &str,
    dir: &Path,
    rows: usize,
    n: usize,
) -> Result<(Option<(f64, f64)>, f64)> {
    let exe = std::env::current_exe()?;
    let trace = dir.join(format!("strace-{storage}-{mode}.txt"));
    let traced = which("strace").is_some();
    let mut cmd = if traced {
        let mut c = Command::new("strace");
        c.args(["-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o"])
            .arg(&trace)
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .env("FSX_BENCH_CHILD", format!("{storage}:{mode}"))
        .env("FSX_BENCH_CHILD_DIR", dir)
        .env("FSX_BENCH_ROWS", rows.to_string())
        .env("FSX_BENCH_COUNTED", n.to_string())
        .output()
        .context("running the counted child")?;
    ensure!(
        out.status.success(),
        "counted child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bytes: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WCHAR "))
        .context("child printed no WCHAR")?
        .parse()?;
    let syncs = if traced {
        let summary = std::fs::read_to_string(&trace)?;
        let count = |call: &str| -> f64 {
            let calls: u64 = summary
                .lines()
                .filter(|l| l.split_whitespace().last() == Some(call))
                .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
                .sum();
            calls as f64 / n as f64
        };
        Some((count("fsync"), count("fdatasync")))
    } else {
        None
    };
    Ok((syncs, bytes as f64 / n as f64))
}

fn mean_p99(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort_unstable();
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64;
    let p99 = v[(v.len() * 99 / 100).min(v.len() - 1)].as_secs_f64();
    (mean * 1e3, p99 * 1e3)
}

fn main() -> Result<()> {
    let rows = env_usize("FSX_BENCH_ROWS", 20_000);
    if let Ok(spec) = std::env::var("FSX_BENCH_CHILD") {
        let (storage, mode) = spec.split_once(':').context("FSX_BENCH_CHILD")?;
        let dir = PathBuf::from(std::env::var("FSX_BENCH_CHILD_DIR")?);
        return child(
            storage,
            mode,
            &dir,
            rows,
            env_usize("FSX_BENCH_COUNTED", 1_000),
        );
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs nothing.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") && std::env::var("FSX_BENCH_RUN").is_err() {
        return Ok(());
    }
    let runs = env_usize("FSX_BENCH_RUNS", 3);
    let n = env_usize("FSX_BENCH_UPDATES", 10_000);
    // As many counted commits as timed ones: the first commits after a
    // WAL is created append new pages (new dirty-page rows), later ones
    // rewrite pages in place, and a short count would weigh the former.
    let counted_n = env_usize("FSX_BENCH_COUNTED", n);
    let base = std::env::var("FSX_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    if which("strace").is_none() {
        eprintln!("strace is not on the PATH (apt install strace): the syncs column is skipped");
    }
    println!(
        "workload: {rows} rows of 100 random bytes, then {n} autocommit updates of one row (randomblob), \
         synchronous=FULL, {runs} interleaved runs per mode and storage; syncs and bytes from {counted_n} \
         more counted; in {}",
        base.display()
    );
    let wanted = std::env::var("FSX_BENCH_MODES").unwrap_or_else(|_| MODES.join(","));
    for w in wanted.split(',') {
        ensure!(
            MODES.contains(&w),
            "FSX_BENCH_MODES: unknown mode {w:?} (known: {})",
            MODES.join(", ")
        );
    }
    let selected = |mode: &str| wanted.split(',').any(|w| w == mode);
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); MODES.len() * STORAGES.len()];
    let mut per_run: Vec<Vec<f64>> = vec![Vec::new(); MODES.len() * STORAGES.len()];
    for run in 0..runs {
        for (m, mode) in MODES.iter().enumerate().filter(|(_, m)| selected(m)) {
            for (s, storage) in STORAGES.iter().enumerate() {
                let dir = tempfile::tempdir_in(&base)?;
                setup(&open(storage, dir.path())?, mode, rows)?;
                let c = open(storage, dir.path())?;
                let t = updates(&c, mode, rows, n)?;
                let total: f64 = t.iter().map(Duration::as_secs_f64).sum();
                eprintln!("run {run} {mode} {storage}: {total:.2} s");
                per_run[m * STORAGES.len() + s].push(total);
                lat[m * STORAGES.len() + s].extend(t);
            }
        }
    }
    println!(
        "\n| mode | storage | commit mean ms | commit p99 ms | fsync / fdatasync per commit | bytes written per commit | total s per run (median) | vs native |\n|---|---|---|---|---|---|---|---|"
    );
    for (m, mode) in MODES.iter().enumerate().filter(|(_, m)| selected(m)) {
        let mut native_median = 0.0;
        for (s, storage) in STORAGES.iter().enumerate() {
            let i = m * STORAGES.len() + s;
            let (mean, p99) = mean_p99(std::mem::take(&mut lat[i]));
            let dir = tempfile::tempdir_in(&base)?;
            setup(&open(storage, dir.path())?, mode, rows)?;
            let (syncs, bytes) = counted(storage, mode, dir.path(), rows, counted_n)?;
            let mut totals = per_run[i].clone();
            totals.sort_by(f64::total_cmp);
            let median = totals[totals.len() / 2];
            if *storage == "native" {
                native_median = median;
            }
            if median <= 0.0 {
                bail!("no time measured");
            }
            let syncs = syncs.map_or("-".into(), |(f, d)| format!("{f:.2} / {d:.2}"));
            println!(
                "| {mode} | {storage} | {mean:.3} | {p99:.3} | {syncs} | {bytes:.0} | {median:.2} | {:.2}× |",
                median / native_median
            );
        }
    }
    Ok(())
}
