//! Reads through the VFS against native SQLite, as issue 17 asks: "SQLite
//! through the VFS (200,000 rows, fresh connection, small page cache): full
//! scan ≤ 1.3× native, indexed point selects ≤ 1.1×".
//!
//! One database, built once per storage in WAL mode (what users run):
//! `t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL)` with an
//! index on `k`, as a plain file and as a file of an fsx volume in the same
//! directory. Each timed phase runs on a fresh connection with
//! `PRAGMA cache_size = -2000` (a 2 MB page cache, so SQLite keeps going
//! back to the storage):
//!
//! - full scan: `SELECT count(*), sum(length(v)) FROM t NOT INDEXED`;
//! - point selects: `SELECT v FROM t WHERE k = ?` for pseudo-random `k`
//!   from a fixed-seed LCG, the same sequence on both storages.
//!
//! The VFS keeps a volume open for the life of the process, with its extent
//! cache, so a connection is fresh in two senses, both measured: the first
//! connection of a process (a child process re-running this binary) and a
//! later fresh connection in a process where an earlier one ran the same
//! phase. The native file is in the OS page cache throughout, and so are the
//! volume's extent files and metadata database: neither side reads the disk.
//!
//! Native and fsx runs alternate, `FSX_BENCH_RUNS` rounds; the results of
//! both storages must agree, else the bench fails. It prints every time,
//! then the medians and their ratios as a markdown table for BENCHMARKS.md.
//!
//! ```text
//! FSX_BENCH_DIR=/var/tmp cargo bench -p fsx-sqlite --bench read
//! FSX_BENCH_ROWS=200000 FSX_BENCH_SELECTS=20000 FSX_BENCH_RUNS=3 FSX_BENCH_DIR=/var/tmp cargo bench -p fsx-sqlite --bench read
//! ```
//!
//! One child by hand (after a run kept its directory with
//! `FSX_BENCH_KEEP=1`):
//!
//! ```text
//! FSX_BENCH_CHILD=fsx:scan FSX_BENCH_CHILD_DIR=/var/tmp/.tmpXXXX target/release/deps/read-<hash>
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::env_usize;
use rusqlite::{Connection, OptionalExtension, params};

const STORAGES: [&str; 2] = ["native", "fsx"];
const PHASES: [&str; 2] = ["scan", "selects"];

/// Every pragma a timed connection sets; the rest are SQLite's defaults,
/// which the child reads back and prints.
const READER_PRAGMAS: &str = "PRAGMA cache_size = -2000;";

const SCAN: &str = "SELECT count(*), sum(length(v)) FROM t NOT INDEXED";
const SELECT: &str = "SELECT v FROM t WHERE k = ?1";

/// The LCG's seed: the same `k` sequence on every storage and every run.
const LCG_SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// The `v` of row `i`, as in the `sqlite` bench.
fn value(i: usize) -> String {
    format!("{i:08}-{}", "abcdefghij".repeat(9))
}

/// The `k` of row `i`: a permutation of `0..rows` when 7,919 (a prime) does
/// not divide `rows`, so a point select finds one row.
fn key(i: usize, rows: usize) -> i64 {
    ((i * 7_919) % rows) as i64
}

/// The keys the point selects look up.
fn lookups(rows: usize, n: usize) -> impl Iterator<Item = i64> {
    let mut x = LCG_SEED;
    (0..n).map(move |_| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The high bits: an LCG's low bits have short periods.
        ((x >> 33) % rows as u64) as i64
    })
}

/// Opens `storage`'s database under `dir`; `create` lets the VFS create
/// the fsx volume.
fn open(storage: &str, dir: &Path, create: bool) -> Result<Connection> {
    Ok(match storage {
        "native" => Connection::open(dir.join("native.db"))?,
        _ => {
            fsx_sqlite::register()?;
            let mode = if create { "&mode=rwc" } else { "" };
            Connection::open(format!(
                "file:bench.db?vfs=fsx&volume={}{mode}",
                dir.join("vol").display()
            ))
            .with_context(|| format!("opening the fsx database: {:?}", fsx_sqlite::last_error()))?
        }
    })
}

/// Builds the table in WAL mode, then checkpoints it into the database
/// file, so readers start from the database alone.
fn build(c: &Connection, rows: usize) -> Result<()> {
    let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode gave {mode}");
    c.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL);",
    )?;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(10_000) {
        let tx = c.unchecked_transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT INTO t VALUES (?1, ?2, ?3)")?;
            for &i in chunk {
                st.execute(params![i as i64, key(i, rows), value(i)])?;
            }
        }
        tx.commit()?;
    }
    c.execute_batch("CREATE INDEX t_k ON t (k);")?;
    // The planner must do what the phases are named for.
    let scan = plan(c, SCAN, [])?;
    ensure!(
        scan.starts_with("SCAN t"),
        "the full scan's plan is {scan:?}"
    );
    let select = plan(c, SELECT, [0])?;
    ensure!(
        select.contains("USING INDEX t_k"),
        "the point select's plan is {select:?}"
    );
    let busy: (i64, i64, i64) = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    ensure!(busy.0 == 0, "the checkpoint was blocked: {busy:?}");
    Ok(())
}

/// The query plan of `sql`, its steps joined.
fn plan<P: rusqlite::Params>(c: &Connection, sql: &str, p: P) -> Result<String> {
    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let steps: Vec<String> = st
        .query_map(p, |r| r.get::<_, String>(3))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(steps.join("; "))
}

/// What a phase found; equal on both storages, or the bench fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    rows: i64,
    bytes: i64,
}

/// Runs `phase` on `c`; what it found and how long it took.
fn run_phase(
    c: &Connection,
    phase: &str,
    rows: usize,
    selects: usize,
) -> Result<(Found, Duration)> {
    let start = Instant::now();
    let found = match phase {
        "scan" => {
            let (rows, bytes) = c.query_row(SCAN, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Found { rows, bytes }
        }
        _ => {
            let mut st = c.prepare(SELECT)?;
            let mut found = Found { rows: 0, bytes: 0 };
            for k in lookups(rows, selects) {
                let mut r = st.query([k])?;
                while let Some(row) = r.next()? {
                    found.rows += 1;
                    found.bytes += row.get_ref(0)?.as_str()?.len() as i64;
                }
            }
            found
        }
    };
    Ok((found, start.elapsed()))
}

/// The child: a phase on the process's first connection, then on a second
/// fresh one. Prints `OPEN`, `FIRST` and `WARM` lines for the parent.
fn child(spec: &str, dir: &Path, rows: usize, selects: usize) -> Result<()> {
    let (storage, phase) = spec
        .split_once(':')
        .context("FSX_BENCH_CHILD is STORAGE:PHASE")?;
    if storage == "fsx" {
        // Outside the timing: loading the VFS is once per process, not per
        // connection.
        fsx_sqlite::register()?;
    }
    for (i, label) in ["FIRST", "WARM"].into_iter().enumerate() {
        let start = Instant::now();
        let c = open(storage, dir, false)?;
        c.execute_batch(READER_PRAGMAS)?;
        let opened = start.elapsed();
        let (found, took) = run_phase(&c, phase, rows, selects)?;
        if i == 0 {
            println!("OPEN {}", opened.as_secs_f64());
            let pragma = |p: &str| -> Result<String> {
                use rusqlite::types::Value;
                // A pragma the VFS leaves out returns no row (mmap_size
                // without the VFS's memory-map methods).
                let v: Option<Value> = c
                    .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                    .optional()?;
                Ok(match v {
                    Some(Value::Integer(i)) => format!("{p}={i}"),
                    Some(Value::Text(t)) => format!("{p}={t}"),
                    Some(other) => format!("{p}={other:?}"),
                    None => format!("{p}=(none)"),
                })
            };
            let pragmas: Vec<String> = [
                "journal_mode",
                "cache_size",
                "page_size",
                "mmap_size",
                "locking_mode",
            ]
            .into_iter()
            .map(pragma)
            .collect::<Result<_>>()?;
            println!("PRAGMAS {}", pragmas.join(" "));
        }
        println!(
            "{label} {} {} {}",
            took.as_secs_f64(),
            found.rows,
            found.bytes
        );
        // Closed before the next one opens: the second connection shares
        // nothing with the first but the process (for fsx: the open volume
        // and its extent cache).
        c.close().map_err(|(_, e)| e)?;
    }
    Ok(())
}

/// One child's report.
struct ChildTimes {
    open: f64,
    first: (f64, Found),
    warm: (f64, Found),
    pragmas: String,
}

fn run_child(
    storage: &str,
    phase: &str,
    dir: &Path,
    rows: usize,
    selects: usize,
) -> Result<ChildTimes> {
    let out = Command::new(std::env::current_exe()?)
        .env("FSX_BENCH_CHILD", format!("{storage}:{phase}"))
        .env("FSX_BENCH_CHILD_DIR", dir)
        .env("FSX_BENCH_ROWS", rows.to_string())
        .env("FSX_BENCH_SELECTS", selects.to_string())
        .output()
        .context("running a child")?;
    ensure!(
        out.status.success(),
        "the {storage} {phase} child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |tag: &str| -> Result<Vec<&str>> {
        let rest = stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag)?.strip_prefix(' '))
            .with_context(|| format!("the {storage} {phase} child printed no {tag}:\n{stdout}"))?;
        Ok(rest.split(' ').collect())
    };
    let timed = |tag: &str| -> Result<(f64, Found)> {
        let f = line(tag)?;
        ensure!(f.len() == 3, "bad {tag} line: {f:?}");
        Ok((
            f[0].parse()?,
            Found {
                rows: f[1].parse()?,
                bytes: f[2].parse()?,
            },
        ))
    };
    Ok(ChildTimes {
        open: line("OPEN")?[0].parse()?,
        first: timed("FIRST")?,
        warm: timed("WARM")?,
        pragmas: line("PRAGMAS")?.join(" "),
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let rows = env_usize("FSX_BENCH_ROWS", 200_000);
    let selects = env_usize("FSX_BENCH_SELECTS", 20_000);
    if let Ok(spec) = std::env::var("FSX_BENCH_CHILD") {
        let dir = PathBuf::from(std::env::var("FSX_BENCH_CHILD_DIR")?);
        return child(&spec, &dir, rows, selects);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs nothing.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") && std::env::var("FSX_BENCH_RUN").is_err() {
        return Ok(());
    }
    let runs = env_usize("FSX_BENCH_RUNS", 3).max(1);
    ensure!(
        rows > 0 && selects > 0,
        "FSX_BENCH_ROWS and FSX_BENCH_SELECTS must be positive"
    );
    let base =
        std::env::var("FSX_BENCH_DIR").map_or_else(|_| PathBuf::from("/var/tmp"), PathBuf::from);
    let tmp = tempfile::tempdir_in(&base)?;
    let dir = tmp.path();

    for storage in STORAGES {
        let start = Instant::now();
        let c = open(storage, dir, true)?;
        build(&c, rows)?;
        c.close().map_err(|(_, e)| e)?;
        eprintln!("built {storage} in {:.1} s", start.elapsed().as_secs_f64());
    }
    let native_bytes = std::fs::metadata(dir.join("native.db"))?.len();

    // times[phase][storage]: (first, warm) per round.
    let mut first = vec![vec![Vec::new(); STORAGES.len()]; PHASES.len()];
    let mut warm = first.clone();
    let mut opens = vec![Vec::new(); STORAGES.len()];
    let mut pragmas = vec![String::new(); STORAGES.len()];
    for round in 0..runs {
        for (p, phase) in PHASES.iter().enumerate() {
            let mut found = Vec::new();
            // Alternating which storage goes first evens out drift (the
            // other engineer's builds, CPU frequency) across the two.
            let order: Vec<usize> = if (round + p) % 2 == 0 {
                vec![0, 1]
            } else {
                vec![1, 0]
            };
            for s in order {
                let storage = STORAGES[s];
                let t = run_child(storage, phase, dir, rows, selects)?;
                eprintln!(
                    "round {round} {phase} {storage}: open {:.4} s, first connection {:.4} s, fresh connection in a warm process {:.4} s",
                    t.open, t.first.0, t.warm.0
                );
                ensure!(
                    t.first.1 == t.warm.1,
                    "{storage} {phase}: the two connections found different things: {:?} vs {:?}",
                    t.first.1,
                    t.warm.1
                );
                found.push((storage, t.first.1));
                first[p][s].push(t.first.0);
                warm[p][s].push(t.warm.0);
                opens[s].push(t.open);
                pragmas[s] = t.pragmas;
            }
            if found[0].1 != found[1].1 {
                bail!("round {round} {phase}: the storages disagree: {found:?}");
            }
            let f = found[0].1;
            let want = match *phase {
                "scan" => Some(Found {
                    rows: rows as i64,
                    bytes: (0..rows).map(|i| value(i).len() as i64).sum(),
                }),
                // Each lookup finds its one row when `k` is a permutation.
                _ if !rows.is_multiple_of(7_919) => {
                    let mut row_of = vec![0; rows];
                    for i in 0..rows {
                        row_of[key(i, rows) as usize] = i;
                    }
                    Some(Found {
                        rows: selects as i64,
                        bytes: lookups(rows, selects)
                            .map(|k| value(row_of[k as usize]).len() as i64)
                            .sum(),
                    })
                }
                _ => None,
            };
            if let Some(want) = want {
                ensure!(
                    f == want,
                    "round {round} {phase}: found {f:?}, not {want:?}"
                );
            }
        }
    }

    println!(
        "\ncommand: FSX_BENCH_ROWS={rows} FSX_BENCH_SELECTS={selects} FSX_BENCH_RUNS={runs} FSX_BENCH_DIR={} \
         cargo bench -p fsx-sqlite --bench read\nran as: {}\nSQLite {}",
        base.display(),
        args.join(" "),
        rusqlite::version()
    );
    println!(
        "database: {rows} rows of t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL), index t_k on k, \
         {:.1} MiB, built in journal_mode=WAL and checkpointed",
        native_bytes as f64 / f64::from(1 << 20)
    );
    println!("reader connections: `{READER_PRAGMAS}`; read back:");
    for (s, storage) in STORAGES.iter().enumerate() {
        println!("  {storage}: {}", pragmas[s]);
    }
    println!(
        "cache state: the native file is in the OS page cache; so are the fsx volume's extent files and metadata database"
    );
    println!("full scan: `{SCAN}`; point selects: {selects} × `{SELECT}`, k from a fixed-seed LCG");
    println!(
        "\n| phase | connection | native s | fsx s | fsx / native | issue 17 target |\n|---|---|---|---|---|---|"
    );
    let targets = [1.3, 1.1];
    for (p, phase) in PHASES.iter().enumerate() {
        let name = match *phase {
            "scan" => "full scan".to_string(),
            _ => format!("{selects} point selects"),
        };
        for (which, times) in [
            ("first in its process", &first),
            ("fresh, warm process", &warm),
        ] {
            let n = median(&times[p][0]);
            let f = median(&times[p][1]);
            if n <= 0.0 {
                bail!("no time measured");
            }
            let ratio = f / n;
            let verdict = if ratio <= targets[p] { "met" } else { "missed" };
            println!(
                "| {name} | {which} | {n:.4} | {f:.4} | {ratio:.2}× | ≤ {:.1}×: {verdict} |",
                targets[p]
            );
        }
    }
    let (n, f) = (median(&opens[0]), median(&opens[1]));
    println!(
        "| open + pragmas | first in its process | {n:.4} | {f:.4} | {:.2}× | - |",
        f / n
    );
    println!("\nmedians of {runs} runs; each run's times are above (stderr).");
    if std::env::var_os("FSX_BENCH_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    Ok(())
}
