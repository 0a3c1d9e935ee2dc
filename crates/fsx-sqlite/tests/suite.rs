//! Correctness suite: real SQLite on the fsx VFS, through rusqlite.
//!
//! One workload (schema changes, a large transaction, many small
//! autocommits, blobs larger than an extent, indexes, VACUUM) runs in every
//! journal mode and at page sizes 512, 4096 and 65536, with
//! `PRAGMA integrity_check` after each step, then again after close and
//! reopen. Further tests cover two connections in one process, a second
//! process (this test binary re-run as a child) that must get SQLITE_BUSY,
//! and clear errors for a missing volume.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use common::{check, open};
use rusqlite::{Connection, ErrorCode, params};

/// A blob larger than the default 2 MiB extent.
const BIG_BLOB: usize = 3 << 20;

fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The workload; returns what `verify` must find afterwards.
fn workload(c: &Connection, small: usize) -> Result<()> {
    c.execute_batch("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
    check(c, "create table")?;
    // A large transaction.
    let tx = c.unchecked_transaction()?;
    {
        let mut st = tx.prepare("INSERT INTO kv VALUES (?1, ?2)")?;
        for i in 0..5_000i64 {
            st.execute(params![
                i,
                format!("value {i} {}", "x".repeat((i % 50) as usize))
            ])?;
        }
    }
    tx.commit()?;
    check(c, "large transaction")?;
    // Many small autocommits.
    for i in 0..small as i64 {
        c.execute(
            "UPDATE kv SET v = ?2 WHERE k = ?1",
            params![i * 7 % 5_000, format!("updated {i}")],
        )?;
    }
    check(c, "small autocommits")?;
    // Schema changes.
    c.execute_batch(
        "ALTER TABLE kv ADD COLUMN extra INTEGER DEFAULT 7;
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
         CREATE INDEX kv_v ON kv (v);",
    )?;
    check(c, "schema changes and index")?;
    // Blobs larger than an extent.
    for id in 0..2u64 {
        c.execute(
            "INSERT INTO blobs VALUES (?1, ?2)",
            params![id as i64, blob(id, BIG_BLOB)],
        )?;
    }
    check(c, "big blobs")?;
    c.execute("DELETE FROM kv WHERE k % 3 = 0", [])?;
    c.execute_batch("DROP INDEX kv_v; CREATE INDEX kv_extra ON kv (extra, v);")?;
    check(c, "delete and reindex")?;
    c.execute_batch("VACUUM")?;
    check(c, "vacuum")?;
    Ok(())
}

fn verify(c: &Connection, small: usize) -> Result<()> {
    check(c, "reopen")?;
    let n: i64 = c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?;
    ensure!(n == 5_000 - 1_667, "kv has {n} rows");
    let last = small as i64 - 1;
    let k = last * 7 % 5_000;
    if k % 3 != 0 {
        let v: String = c.query_row("SELECT v FROM kv WHERE k = ?1", [k], |r| r.get(0))?;
        ensure!(v == format!("updated {last}"), "row {k} is {v:?}");
    }
    for id in 0..2u64 {
        let data: Vec<u8> =
            c.query_row("SELECT data FROM blobs WHERE id = ?1", [id as i64], |r| {
                r.get(0)
            })?;
        ensure!(data == blob(id, BIG_BLOB), "blob {id} differs");
    }
    Ok(())
}

fn run(journal: &str, page_size: u32, small: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    {
        let c = open(&vol, "app.db")?;
        c.execute_batch(&format!(
            "PRAGMA page_size = {page_size}; PRAGMA journal_mode = {journal}; PRAGMA synchronous = FULL;"
        ))?;
        workload(&c, small).with_context(|| format!("{journal} at page size {page_size}"))?;
        let ps: u32 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        ensure!(ps == page_size, "page size is {ps}, not {page_size}");
        verify(&c, small)?;
    }
    let c = open(&vol, "app.db")?;
    verify(&c, small).with_context(|| format!("{journal} at page size {page_size}, reopened"))?;
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if journal == "wal" {
        ensure!(mode == "wal", "journal mode {mode} after reopen");
    }
    Ok(())
}

#[test]
fn delete_journal_at_every_page_size() -> Result<()> {
    for ps in [512, 4096, 65536] {
        run("delete", ps, 300)?;
    }
    Ok(())
}

#[test]
fn wal_at_every_page_size() -> Result<()> {
    for ps in [512, 4096, 65536] {
        run("wal", ps, 300)?;
    }
    Ok(())
}

#[test]
fn truncate_and_persist_journals() -> Result<()> {
    run("truncate", 4096, 100)?;
    run("persist", 4096, 100)
}

#[test]
fn two_connections_see_each_others_commits() -> Result<()> {
    for journal in ["delete", "wal"] {
        let dir = tempfile::tempdir()?;
        let vol = dir.path().join("vol");
        let a = open(&vol, "shared.db")?;
        a.execute_batch(&format!(
            "PRAGMA journal_mode = {journal}; CREATE TABLE t (n INTEGER)"
        ))?;
        let b = open(&vol, "shared.db")?;
        b.busy_timeout(std::time::Duration::from_secs(5))?;
        for i in 0..20 {
            let (w, r) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            w.execute("INSERT INTO t VALUES (?1)", [i])?;
            let n: i64 = r.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
            ensure!(
                n == i + 1,
                "{journal}: the other connection sees {n} rows after {}",
                i + 1
            );
        }
        // A writer in one connection blocks the other's writes, not its reads.
        a.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (100)")?;
        b.busy_timeout(std::time::Duration::ZERO)?;
        let err = b.execute("INSERT INTO t VALUES (101)", []).unwrap_err();
        ensure!(
            err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy),
            "{journal}: {err}"
        );
        let n: i64 = b.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
        ensure!(n == 20, "{journal}: uncommitted rows visible: {n}");
        a.execute_batch("COMMIT")?;
        let n: i64 = b.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
        ensure!(n == 21, "{journal}: {n}");
        check(&b, journal)?;
    }
    Ok(())
}

const CHILD_ENV: &str = "FSX_SQLITE_BUSY_CHILD";

/// The child's side: try to read, print what happened.
fn busy_child(spec: &str) -> Result<()> {
    let vol = Path::new(spec);
    let c = open(vol, "busy.db")?;
    c.busy_timeout(std::time::Duration::ZERO)?;
    match c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)) {
        Ok(n) => {
            check(&c, "child read")?;
            println!("\n@@ rows {n}");
        }
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => println!("\n@@ busy"),
        Err(e) => println!("\n@@ error {e}"),
    }
    Ok(())
}

fn run_child(vol: &Path) -> Result<String> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "another_process_gets_busy_not_corruption",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, vol)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout
        .lines()
        .find_map(|l| l.strip_prefix("@@ "))
        .map_or_else(
            || {
                format!(
                    "no answer: {stdout} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            },
            str::to_string,
        ))
}

#[test]
fn another_process_gets_busy_not_corruption() -> Result<()> {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return busy_child(&spec);
    }
    for journal in ["delete", "wal"] {
        let dir = tempfile::tempdir()?;
        let vol = dir.path().join("vol");
        {
            let c = open(&vol, "busy.db")?;
            c.execute_batch(&format!(
                "PRAGMA journal_mode = {journal}; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);"
            ))?;
            c.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2);")?;
            let got = run_child(&vol)?;
            ensure!(
                got == "busy",
                "{journal}: during a write transaction the child said {got:?}"
            );
            c.execute_batch("COMMIT")?;
            check(&c, "after the child")?;
        }
        // Once the first process has closed the database the child reads it.
        let got = run_child(&vol)?;
        ensure!(
            got == "rows 2",
            "{journal}: after close the child said {got:?}"
        );
    }
    Ok(())
}

#[test]
fn a_missing_volume_is_a_clear_error_unless_created() -> Result<()> {
    fsx_sqlite::register()?;
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("nothing-here");
    let err = Connection::open(common::uri(&vol, "x.db", false)).unwrap_err();
    ensure!(
        err.sqlite_error_code() == Some(ErrorCode::CannotOpen),
        "{err}"
    );
    let msg = fsx_sqlite::last_error().unwrap_or_default();
    ensure!(
        msg.contains("not an fsx volume") && msg.contains("mode=rwc"),
        "{msg}"
    );
    ensure!(!vol.exists(), "a failed open created {}", vol.display());
    let err = Connection::open("file:x.db?vfs=fsx").unwrap_err();
    ensure!(
        err.sqlite_error_code() == Some(ErrorCode::CannotOpen),
        "{err}"
    );
    ensure!(
        fsx_sqlite::last_error()
            .unwrap_or_default()
            .contains("volume=PATH")
    );
    let c = Connection::open(common::uri(&vol, "x.db", true))?;
    c.execute_batch("CREATE TABLE t (n); INSERT INTO t VALUES (1);")?;
    ensure!(vol.join(fsx_volume::VOLUME_FILE).exists());
    Ok(())
}

#[test]
fn one_name_in_two_volumes_stays_apart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (va, vb) = (dir.path().join("a"), dir.path().join("b"));
    let a = open(&va, "same.db")?;
    let b = open(&vb, "same.db")?;
    for (c, mode) in [(&a, "delete"), (&b, "wal")] {
        c.execute_batch(&format!(
            "PRAGMA journal_mode = {mode}; CREATE TABLE t (v TEXT)"
        ))?;
    }
    // Interleaved commits: each journal must land in its own volume.
    for i in 0..30 {
        a.execute("INSERT INTO t VALUES (?1)", [format!("a{i}")])?;
        b.execute("INSERT INTO t VALUES (?1)", [format!("b{i}")])?;
    }
    drop((a, b));
    for (v, want) in [(&va, "a"), (&vb, "b")] {
        let c = open(v, "same.db")?;
        check(&c, want)?;
        let (n, ok): (i64, i64) = c.query_row(
            "SELECT count(*), sum(substr(v, 1, 1) = ?1) FROM t",
            [want],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        ensure!(n == 30 && ok == 30, "volume {want}: {n} rows, {ok} its own");
    }
    Ok(())
}
