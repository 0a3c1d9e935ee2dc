//! The loadable extension `libfsx_sqlite.so` in other programs' SQLite:
//! Debian's `sqlite3` shell and Debian's `/usr/bin/python3`. Each loads the
//! extension, runs a workload in both journal modes, reopens, and checks
//! `integrity_check`. A misspelt URI parameter (`brnach=dev`) must fail
//! the open in both and leave the database as it was. A missing tool fails
//! the test (scripts/test.sh installs them); it is never skipped.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use anyhow::{Context, Result, ensure};

const SQLITE3: &str = "/usr/bin/sqlite3";
const PYTHON3: &str = "/usr/bin/python3";

fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String> {
    let (ok, stdout, stderr) = run_any(cmd, stdin)?;
    ensure!(ok, "{cmd:?} failed: {stdout}\n{stderr}");
    Ok(stdout)
}

/// Runs `cmd`: whether it succeeded, its stdout and its stderr.
fn run_any(cmd: &mut Command, stdin: Option<&str>) -> Result<(bool, String, String)> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?} (is it installed?)"))?;
    let input = stdin.unwrap_or_default().to_string();
    let mut pipe = child.stdin.take().context("no stdin")?;
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("stdin writer panicked"))??;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

#[test]
fn sqlite3_shell_loads_the_extension() -> Result<()> {
    let ext = common::extension_path();
    ensure!(ext.exists(), "{} was not built", ext.display());
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    let ext_stem = ext.with_extension("");
    for mode in ["delete", "wal"] {
        let script = format!(
            ".bail on
.load {ext}
.open file:{mode}.db?vfs=fsx&volume={vol}&mode=rwc
PRAGMA journal_mode = {mode};
CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)
  INSERT INTO t SELECT i, printf('row %d %s', i, hex(randomblob(40))) FROM c;
CREATE INDEX t_v ON t (v);
UPDATE t SET v = 'updated' WHERE n % 10 = 0;
DELETE FROM t WHERE n % 7 = 0;
VACUUM;
PRAGMA integrity_check;
SELECT count(*) FROM t;
",
            ext = ext_stem.display(),
            vol = vol.display()
        );
        let out = run(Command::new(SQLITE3).arg("-batch"), Some(&script))?;
        let lines: Vec<&str> = out.lines().collect();
        ensure!(lines.ends_with(&["ok", "17143"]), "{mode}: {out}");
        // Reopen in a fresh shell.
        let script = format!(
            ".bail on
.load {ext}
.open file:{mode}.db?vfs=fsx&volume={vol}
PRAGMA integrity_check;
SELECT count(*), sum(v = 'updated') FROM t;
PRAGMA journal_mode;
",
            ext = ext_stem.display(),
            vol = vol.display()
        );
        let out = run(Command::new(SQLITE3).arg("-batch"), Some(&script))?;
        ensure!(
            out.lines().collect::<Vec<_>>() == ["ok", "17143|1715", mode],
            "{mode} reopened: {out}"
        );
    }
    Ok(())
}

#[test]
fn python_loads_the_extension() -> Result<()> {
    let ext = common::extension_path();
    ensure!(ext.exists(), "{} was not built", ext.display());
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    let program = r#"
import sqlite3, sys
ext, vol = sys.argv[1], sys.argv[2]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(ext)
for mode in ("delete", "wal"):
    uri = f"file:{mode}.db?vfs=fsx&volume={vol}&mode=rwc"
    c = sqlite3.connect(uri, uri=True, isolation_level=None)
    c.execute(f"PRAGMA journal_mode = {mode}")
    c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v BLOB)")
    c.execute("BEGIN")
    c.executemany("INSERT INTO t VALUES (?, ?)", ((i, bytes([i % 256]) * (i % 3000)) for i in range(5000)))
    c.execute("COMMIT")
    for i in range(200):
        c.execute("UPDATE t SET v = ? WHERE n = ?", (b"u" * 100, i * 13))
    c.execute("CREATE INDEX t_v ON t (v)")
    c.execute("VACUUM")
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    c.close()
    c = sqlite3.connect(f"file:{mode}.db?vfs=fsx&volume={vol}", uri=True)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n, u = c.execute("SELECT count(*), sum(v = ?) FROM t", (b"u" * 100,)).fetchone()
    assert (n, u) == (5000, 200), (n, u)
    c.close()
    print(mode, "ok")
"#;
    let out = run(
        Command::new(PYTHON3)
            .arg("-c")
            .arg(program)
            .arg(&ext)
            .arg(&vol),
        None,
    )?;
    ensure!(out == "delete ok\nwal ok\n", "{out}");
    Ok(())
}

#[test]
fn a_misspelt_parameter_fails_the_open_in_the_shell_and_python() -> Result<()> {
    let ext = common::extension_path();
    ensure!(ext.exists(), "{} was not built", ext.display());
    let ext_stem = ext.with_extension("");
    let dir = tempfile::tempdir()?;
    let vol = dir.path().join("vol");
    let (ext_s, vol_s) = (ext_stem.display(), vol.display());
    let setup = format!(
        ".bail on
.load {ext_s}
.open file:app.db?vfs=fsx&volume={vol_s}&mode=rwc
CREATE TABLE t (v TEXT);
INSERT INTO t VALUES ('main');
"
    );
    run(Command::new(SQLITE3).arg("-batch"), Some(&setup))?;
    // `.log stderr` shows SQLite's error log, where the VFS says why.
    let typo = format!(
        ".bail on
.log stderr
.load {ext_s}
.open file:app.db?vfs=fsx&volume={vol_s}&brnach=dev
INSERT INTO t VALUES ('typo');
"
    );
    let (ok, out, err) = run_any(Command::new(SQLITE3).arg("-batch"), Some(&typo))?;
    ensure!(!ok, "the shell opened brnach=dev: {out}{err}");
    ensure!(
        err.contains("unable to open database") && err.contains("unknown URI parameter \"brnach\""),
        "{err}"
    );
    let program = r#"
import sqlite3, sys
ext, vol = sys.argv[1], sys.argv[2]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(ext)
try:
    c = sqlite3.connect(f"file:app.db?vfs=fsx&volume={vol}&brnach=dev", uri=True)
    c.execute("INSERT INTO t VALUES ('typo')")
    c.commit()
    print("opened")
except sqlite3.OperationalError as e:
    print("refused:", e)
c = sqlite3.connect(f"file:app.db?vfs=fsx&volume={vol}", uri=True)
print([r[0] for r in c.execute("SELECT v FROM t")])
"#;
    let out = run(
        Command::new(PYTHON3)
            .arg("-c")
            .arg(program)
            .arg(&ext)
            .arg(&vol),
        None,
    )?;
    ensure!(
        out == "refused: unable to open database file\n['main']\n",
        "{out}"
    );
    let check = format!(
        ".bail on
.load {ext_s}
.open file:app.db?vfs=fsx&volume={vol_s}
SELECT v FROM t;
"
    );
    let out = run(Command::new(SQLITE3).arg("-batch"), Some(&check))?;
    ensure!(out == "main\n", "main holds {out:?}");
    Ok(())
}
