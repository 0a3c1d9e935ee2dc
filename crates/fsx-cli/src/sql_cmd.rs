//! `fsx sql PATH DB [SQL]`: real SQLite on a volume, through the fsx VFS.
//!
//! With SQL, runs each statement and prints the rows of those that return
//! any, one per line, columns separated by tabs (NULL prints empty, blobs as
//! `x'…'`). Without, reads statements from stdin, one or more lines each,
//! ended by `;` (a prompt is shown on a terminal); `.quit` ends. The
//! database is `DB` inside the volume, created if missing; the volume must
//! exist (`fsx init`).
//!
//! `--branch NAME` and `--commit ID` pass `&branch=`/`&commit=` to the VFS
//! URI; a commit is opened read-only (and must hold the database).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, OpenFlags};

/// `fsx sql`.
#[derive(Args)]
pub struct SqlArgs {
    /// The volume directory.
    path: PathBuf,
    /// The database's name in the volume (e.g. app.db).
    db: String,
    /// SQL to run; without it, an interactive shell reads stdin.
    sql: Option<String>,
    /// How long to wait for a lock held by another connection or process.
    #[arg(long, default_value = "5000", value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=i32::MAX as u64))]
    busy_timeout: u64,
    #[command(flatten)]
    view: crate::volume_cmd::ViewArgs,
}

/// Percent-encodes what would end or split a URI's path or parameter.
fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'%' | b'?' | b'#' | b'&' | b'=' | b'\0' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

/// Checks that the branch or commit exists, and that a commit (read-only)
/// holds the database, so the error is fsx's own rather than SQLite's
/// "unable to open database file".
fn check_view(dir: &Path, db: &str, view: &crate::volume_cmd::ViewArgs) -> anyhow::Result<()> {
    if view.branch.is_none() && view.commit.is_none() {
        return Ok(());
    }
    crate::volume_cmd::runtime()?.block_on(async {
        let v = view
            .select(crate::volume_cmd::open_volume(dir).await?)
            .await?;
        if let Some(c) = view.commit {
            v.stat(db)
                .await
                .with_context(|| format!("cannot open {db:?} at commit {c}"))?;
        }
        anyhow::Ok(())
    })
}

fn open(path: &Path, db: &str, view: &crate::volume_cmd::ViewArgs) -> anyhow::Result<Connection> {
    let dir = fsx_volume::absolute(path)?;
    // The VFS would refuse too, but SQLite reduces its reason to
    // "unable to open database file".
    fsx_volume::VolumeFile::read(&dir)?;
    crate::volume_cmd::check_meta_not_empty(&dir)?;
    check_view(&dir, db, view)?;
    fsx_sqlite::register()?;
    let mut uri = format!(
        "file:{}?vfs=fsx&volume={}",
        uri_escape(db),
        uri_escape(&dir.display().to_string())
    );
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if let Some(branch) = &view.branch {
        uri.push_str(&format!("&branch={}", uri_escape(branch)));
    }
    if let Some(commit) = view.commit {
        uri.push_str(&format!("&commit={commit}"));
        flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    }
    Connection::open_with_flags(&uri, flags).map_err(|e| {
        let why = fsx_sqlite::last_error().unwrap_or_default();
        anyhow::anyhow!("cannot open {db:?} in {}: {e} {why}", dir.display())
    })
}

fn value(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("x'{hex}'")
        }
    }
}

/// Runs every statement of `sql`, printing rows to `out`.
fn execute(c: &Connection, sql: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut batch = Batch::new(c, sql);
    while let Some(mut st) = batch.next()? {
        let columns = st.column_count();
        let mut rows = st.raw_query();
        while let Some(row) = rows.next()? {
            let line: Vec<String> = (0..columns)
                .map(|i| row.get_ref(i).map(value))
                .collect::<Result<_, _>>()?;
            writeln!(out, "{}", line.join("\t"))?;
        }
    }
    Ok(())
}

/// Runs `fsx sql`.
pub fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let c = open(&args.path, &args.db, &args.view)?;
    c.busy_timeout(Duration::from_millis(args.busy_timeout))?;
    let stdout = std::io::stdout();
    if let Some(sql) = &args.sql {
        execute(&c, sql, &mut stdout.lock())?;
        c.close()
            .map_err(|(_, e)| e)
            .context("closing the database")?;
        return Ok(ExitCode::SUCCESS);
    }
    let interactive = std::io::stdin().is_terminal();
    let mut failed = false;
    let mut pending = String::new();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            print!("{}", if pending.is_empty() { "fsx> " } else { "...> " });
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        if pending.is_empty() && matches!(line.trim(), ".quit" | ".exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !pending.trim_end().ends_with(';') {
            continue;
        }
        if let Err(e) = execute(&c, &pending, &mut stdout.lock()) {
            eprintln!("error: {e:#}");
            failed = true;
        }
        pending.clear();
    }
    if !pending.trim().is_empty()
        && let Err(e) = execute(&c, &pending, &mut stdout.lock())
    {
        eprintln!("error: {e:#}");
        failed = true;
    }
    c.close()
        .map_err(|(_, e)| e)
        .context("closing the database")?;
    Ok(if failed && !interactive {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
