//! Strict URI parameters through rusqlite: a misspelt, repeated or empty
//! parameter fails the open with `SQLITE_CANTOPEN` and a message naming it,
//! and writes nothing anywhere; SQLite's own documented parameters pass.
//! (`extension.rs` checks the same through the `sqlite3` shell and Python.)

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, ensure};
use common::open;
use rusqlite::{Connection, ErrorCode, OpenFlags};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The engine's view of the volume (its own handle, as `fsx` would).
fn engine(volume: &Path) -> fsx_engine::Volume {
    block_on(fsx_volume::open(
        volume,
        Arc::new(fsx_engine::SystemEnv::new()),
        fsx_engine::VolumeOptions::default(),
    ))
    .unwrap()
}

/// Files of `view` (`main` or a branch) with their sizes.
fn files(v: &fsx_engine::Volume, branch: Option<&str>) -> Vec<(String, u64)> {
    let v = match branch {
        Some(b) => block_on(v.checkout(b)).unwrap(),
        None => v.clone(),
    };
    block_on(v.list(""))
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect()
}

/// Opening `query` on `app.db` read-write-create must fail with
/// SQLITE_CANTOPEN and a message containing each of `words`.
fn refused(vol: &Path, query: &str, words: &[&str]) -> Result<()> {
    fsx_sqlite::register()?;
    let uri = format!("file:app.db?vfs=fsx&volume={}&{query}", vol.display());
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI;
    let result = Connection::open_with_flags(&uri, flags).and_then(|c| {
        // Were it opened, this is the write a typo would misdirect.
        c.execute_batch("CREATE TABLE IF NOT EXISTS t (v TEXT); INSERT INTO t VALUES ('typo')")
    });
    let Err(err) = result else {
        anyhow::bail!("{uri} opened and wrote");
    };
    ensure!(
        err.sqlite_error_code() == Some(ErrorCode::CannotOpen),
        "{uri}: {err}"
    );
    let msg = fsx_sqlite::last_error().unwrap_or_default();
    for w in words {
        ensure!(msg.contains(w), "{uri}: {msg:?} lacks {w:?}");
    }
    Ok(())
}

#[test]
fn a_misspelt_branch_parameter_opens_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    {
        let c = open(&vol, "app.db")?;
        c.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('main')")?;
    }
    let v = engine(&vol);
    block_on(v.create_branch("dev"))?;
    let before = (files(&v, None), files(&v, Some("dev")));

    refused(&vol, "brnach=dev", &["\"brnach\"", "branch", "volume"])?;
    // A new database name is not created either.
    let uri = format!("file:new.db?vfs=fsx&volume={}&brnach=dev", vol.display());
    ensure!(Connection::open(&uri).is_err(), "{uri} opened");

    let after = (files(&v, None), files(&v, Some("dev")));
    ensure!(before == after, "{before:?} became {after:?}");
    let c = open(&vol, "app.db")?;
    let rows: Vec<String> = c
        .prepare("SELECT v FROM t")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ensure!(rows == ["main"], "main holds {rows:?}");
    Ok(())
}

#[test]
fn repeated_or_empty_parameters_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    drop(open(&vol, "app.db")?);
    let other = dir.path().join("other");
    refused(&vol, "branch=a&branch=b", &["branch=", "twice"])?;
    refused(
        &vol,
        &format!("volume={}", other.display()),
        &["volume=", "twice"],
    )?;
    refused(&vol, "mode=rwc&mode=rw", &["mode=", "twice"])?;
    refused(&vol, "branch=", &["branch=", "empty"])?;
    refused(&vol, "commit=", &["commit=", "empty"])?;
    ensure!(
        !other.exists(),
        "a refused open created {}",
        other.display()
    );
    Ok(())
}

#[test]
fn sqlites_own_parameters_pass() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    {
        let c = open(&vol, "app.db")?;
        c.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')")?;
    }
    fsx_sqlite::register()?;
    let uri = format!(
        "file:app.db?vfs=fsx&volume={}&mode=rw&cache=private&psow=1&nolock=0&immutable=0&modeof={}",
        vol.display(),
        vol.display()
    );
    let c = Connection::open(&uri)
        .map_err(|e| anyhow::anyhow!("{e} ({:?})", fsx_sqlite::last_error()))?;
    c.execute("INSERT INTO t VALUES ('y')", [])?;
    let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    ensure!(n == 2, "{n} rows");
    Ok(())
}
