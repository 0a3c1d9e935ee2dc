//! Issue 11 at the command line: what a user met and what now holds —
//! dead writers' leases are broken, outputs are atomic, exit codes say
//! whether data is safe, and bad input gets a clear error.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{fails, ok, s};

/// Starts `fsx sql` on `db` in `vol`, makes it write (so it takes the
/// file's write lease, which it keeps while the shell runs), waits until
/// it has answered, and SIGKILLs it; returns once the process is reaped,
/// so its pid is gone from `/proc`.
fn kill_sql_holding_lease(vol: &Path, db: &str, view: &[&str]) {
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(["sql", s(vol), db])
        .args(view)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"CREATE TABLE IF NOT EXISTS t(x); INSERT INTO t VALUES (1); SELECT 'ready';\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the shell answered");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
}

#[test]
fn a_killed_writers_lease_does_not_block_rm_mv_or_reset() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"kept").unwrap();
    ok(&["file", "put", s(&src), s(&vol), "keep"]);
    ok(&["commit", s(&vol), "-m", "base"]);

    // mv: the dead shell's lease on app.db is broken.
    kill_sql_holding_lease(&vol, "app.db", &[]);
    ok(&["file", "mv", s(&vol), "app.db", "moved.db"]);
    assert_eq!(
        ok(&["sql", s(&vol), "moved.db", "SELECT count(*) FROM t"]).trim(),
        "1"
    );

    // rm.
    kill_sql_holding_lease(&vol, "moved.db", &[]);
    ok(&["file", "rm", s(&vol), "moved.db"]);

    // reset (and branch delete) need the whole branch free.
    kill_sql_holding_lease(&vol, "app.db", &[]);
    ok(&["reset", s(&vol), "main", "1"]);
    let ls = ok(&["file", "ls", s(&vol)]);
    assert!(!ls.contains("app.db") && ls.contains("keep"), "{ls}");

    // Deleting a branch.
    ok(&["branch", "create", s(&vol), "dev"]);
    kill_sql_holding_lease(&vol, "app.db", &["--branch", "dev"]);
    ok(&["branch", "delete", s(&vol), "dev"]);
    assert!(!ok(&["branch", "list", s(&vol)]).contains("dev"));
}

#[test]
fn a_live_writers_lease_still_blocks_rm() {
    // The lease of a process that is alive is never broken.
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(["sql", s(&vol), "app.db"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"CREATE TABLE t(x); INSERT INTO t VALUES (1); SELECT 'ready';\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let err = fails(&["file", "rm", s(&vol), "app.db"]);
    assert!(
        err.contains("open for writing") || err.contains("busy"),
        "{err}"
    );
    // The shell ends normally and releases its lease.
    stdin.write_all(b".quit\n").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    ok(&["file", "rm", s(&vol), "app.db"]);
}
