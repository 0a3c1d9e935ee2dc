//! `fsx sql`: SQL as an argument, a script on stdin, tab-separated rows,
//! clear errors, and a database that `fsx file` and a second `fsx sql` see.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn fsx(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: &str) -> String {
    let out = fsx(args, stdin);
    assert!(
        out.status.success(),
        "fsx {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn sql_runs_statements_and_prints_rows() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)], "");
    let out = ok(
        &[
            "sql",
            s(&vol),
            "app.db",
            "CREATE TABLE t (a INTEGER, b TEXT, c BLOB); \
             INSERT INTO t VALUES (1, 'one', NULL), (2, 'two', x'00ff'); \
             SELECT * FROM t ORDER BY a; PRAGMA integrity_check;",
        ],
        "",
    );
    assert_eq!(out, "1\tone\t\n2\ttwo\tx'00ff'\nok\n");
    // A script on stdin, statements over several lines.
    let out = ok(
        &["sql", s(&vol), "app.db"],
        "PRAGMA journal_mode = wal;\nINSERT INTO t\n  VALUES (3, 'three', NULL);\nSELECT count(*)\nFROM t;\n.quit\nSELECT 'not run';\n",
    );
    assert_eq!(out, "wal\n3\n");
    let ls = ok(&["file", "ls", s(&vol)], "");
    assert!(ls.contains("app.db"), "{ls}");
    let out = ok(
        &["sql", s(&vol), "app.db", "SELECT group_concat(b) FROM t"],
        "",
    );
    assert_eq!(out, "one,two,three\n");
}

#[test]
fn sql_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let out = fsx(&["sql", s(&vol), "app.db", "SELECT 1"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not an fsx volume"), "{err}");
    assert!(!vol.exists(), "a failed sql created the volume");
    ok(&["init", s(&vol)], "");
    let out = fsx(&["sql", s(&vol), "app.db", "SELECT nope"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such column"), "{err}");
    // A failing statement on stdin makes the exit code non-zero.
    let out = fsx(&["sql", s(&vol), "app.db"], "SELECT 1;\nSELECT nope;\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
}
