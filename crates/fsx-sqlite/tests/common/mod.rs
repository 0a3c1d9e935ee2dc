//! Helpers shared by the VFS tests.

#![allow(dead_code)]

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// The URI of database `db` in the volume at `volume`.
pub fn uri(volume: &Path, db: &str, create_volume: bool) -> String {
    format!(
        "file:{db}?vfs=fsx&volume={}{}",
        volume.display(),
        if create_volume { "&mode=rwc" } else { "" }
    )
}

/// Opens `db` in the volume at `volume` (created if missing).
pub fn open(volume: &Path, db: &str) -> anyhow::Result<Connection> {
    fsx_sqlite::register()?;
    Connection::open_with_flags(
        uri(volume, db, true),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| anyhow::anyhow!("{e} ({:?})", fsx_sqlite::last_error()))
}

/// `PRAGMA integrity_check` must say ok.
pub fn check(c: &Connection, when: &str) -> anyhow::Result<()> {
    let r: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    anyhow::ensure!(r == "ok", "integrity_check after {when}: {r}");
    Ok(())
}

/// The path of the extension next to the test binary.
pub fn extension_path() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for dir in [
        deps.clone(),
        deps.parent().map(Path::to_path_buf).unwrap_or_default(),
    ] {
        let p = dir.join("libfsx_sqlite.so");
        if p.exists() {
            return p;
        }
    }
    deps.join("libfsx_sqlite.so")
}
