//! SQLite on branches and commits: a database branched while open, then
//! changed on both sides, keeps each side consistent (`integrity_check`)
//! and isolated; a commit opened with `&commit=` is the old database,
//! read-only.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use common::{check, open};
use rusqlite::{Connection, OpenFlags};

/// Opens `db` on `scope` (`branch=NAME` or `commit=ID`).
fn open_at(volume: &Path, db: &str, scope: &str, read_only: bool) -> Result<Connection> {
    fsx_sqlite::register()?;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI
    };
    Connection::open_with_flags(
        format!("file:{db}?vfs=fsx&volume={}&{scope}", volume.display()),
        flags,
    )
    .map_err(|e| anyhow::anyhow!("{e} ({:?})", fsx_sqlite::last_error()))
}

fn rows(c: &Connection, tag: &str) -> Result<i64> {
    Ok(c.query_row("SELECT count(*) FROM t WHERE tag = ?1", [tag], |r| r.get(0))?)
}

/// The engine's view of the same volume (its own handle, as `fsx` would).
fn engine(volume: &Path) -> fsx_engine::Volume {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(fsx_volume::open(
        volume,
        Arc::new(fsx_engine::SystemEnv::new()),
        fsx_engine::VolumeOptions::default(),
    ))
    .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn branch_changed_on_both_sides(journal: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    let main = open(&vol, "app.db")?;
    main.execute_batch(&format!(
        "PRAGMA journal_mode = {journal};
         CREATE TABLE t (id INTEGER PRIMARY KEY, tag TEXT, payload BLOB);
         CREATE INDEX t_tag ON t (tag);"
    ))?;
    for i in 0..200 {
        main.execute(
            "INSERT INTO t (tag, payload) VALUES ('base', randomblob(?1))",
            [100 + i * 37 % 3000],
        )?;
    }
    // Commit and branch while the database is open (and, in WAL mode,
    // with frames still in the WAL).
    let v = engine(&vol);
    let base = block_on(v.commit("base rows"))?;
    block_on(v.create_branch("dev"))?;

    let dev = open_at(&vol, "app.db", "branch=dev", false)?;
    check(&dev, "opening dev")?;
    ensure!(rows(&dev, "base")? == 200, "dev starts with main's rows");
    main.execute_batch(
        "BEGIN; INSERT INTO t (tag, payload) SELECT 'main', randomblob(500) FROM t LIMIT 50;
         UPDATE t SET payload = randomblob(2000) WHERE id % 7 = 0; COMMIT;",
    )?;
    dev.execute_batch(
        "BEGIN; INSERT INTO t (tag, payload) SELECT 'dev', randomblob(800) FROM t LIMIT 70;
         DELETE FROM t WHERE tag = 'base' AND id % 5 = 0; COMMIT;",
    )?;
    for (c, who) in [(&main, "main"), (&dev, "dev")] {
        check(c, who)?;
    }
    ensure!(
        rows(&main, "main")? == 50 && rows(&main, "dev")? == 0,
        "main sees only its own rows"
    );
    ensure!(
        rows(&dev, "dev")? == 70 && rows(&dev, "main")? == 0,
        "dev sees only its own rows"
    );
    ensure!(
        rows(&main, "base")? == 200 && rows(&dev, "base")? == 160,
        "deletes stay on dev"
    );

    // Time travel: the commit is the database before either change.
    let old = open_at(&vol, "app.db", &format!("commit={}", base.id), true)?;
    check(&old, "the old commit")?;
    ensure!(rows(&old, "base")? == 200, "old commit rows");
    ensure!(
        rows(&old, "main")? == 0 && rows(&old, "dev")? == 0,
        "old commit unchanged"
    );
    let err = old
        .execute("INSERT INTO t (tag) VALUES ('x')", [])
        .unwrap_err();
    ensure!(
        err.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly),
        "writing a commit must fail read-only, got {err}"
    );
    drop(old);

    // Both sides survive closing and reopening.
    drop((main, dev));
    let main = open(&vol, "app.db")?;
    let dev = open_at(&vol, "app.db", "branch=dev", false)?;
    check(&main, "main reopened")?;
    check(&dev, "dev reopened")?;
    ensure!(
        rows(&main, "main")? == 50 && rows(&dev, "dev")? == 70,
        "after reopen"
    );
    Ok(())
}

#[test]
fn wal_database_branched_and_changed_on_both_sides() -> Result<()> {
    branch_changed_on_both_sides("wal")
}

#[test]
fn delete_journal_database_branched_and_changed_on_both_sides() -> Result<()> {
    branch_changed_on_both_sides("delete")
}

#[test]
fn unknown_branch_or_commit_is_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    open(&vol, "app.db")?.execute_batch("CREATE TABLE t (n)")?;
    for (scope, says) in [
        ("branch=nope", "branch"),
        ("commit=999", "commit 999"),
        ("commit=abc", "not a commit id"),
        ("branch=main&commit=1", "not both"),
    ] {
        let err = open_at(&vol, "app.db", scope, false)
            .and_then(|c| c.execute_batch("SELECT * FROM t").map_err(Into::into))
            .unwrap_err();
        ensure!(err.to_string().contains(says), "{scope}: {err}");
    }
    Ok(())
}

/// A WAL database closed cleanly has no WAL in its commit; reading that
/// commit and closing it neither fails nor tries to change the commit.
#[test]
fn a_commit_without_its_wal_opens_and_closes_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    {
        let c = open(&vol, "app.db")?;
        c.execute_batch(
            "PRAGMA journal_mode = wal; CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x');",
        )?;
    }
    let v = engine(&vol);
    let c1 = block_on(v.commit("closed"))?;
    for _ in 0..2 {
        let old = open_at(&vol, "app.db", &format!("commit={}", c1.id), true)?;
        check(&old, "commit without a WAL")?;
        ensure!(rows_of(&old)? == 1, "the committed row");
        drop(old);
        let err = fsx_sqlite::last_error().unwrap_or_default();
        ensure!(
            !err.contains("read-only"),
            "closing the commit tried to write: {err}"
        );
    }
    let main = open(&vol, "app.db")?;
    main.execute("INSERT INTO t VALUES ('y')", [])?;
    check(&main, "main after reading its commit")?;
    let at = block_on(v.at_commit(c1.id))?;
    let files: Vec<String> = block_on(at.list(""))?.into_iter().map(|f| f.name).collect();
    ensure!(files == ["app.db"], "the commit's files stay {files:?}");
    Ok(())
}

fn rows_of(c: &Connection) -> Result<i64> {
    Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
}
