//! Branches, commits and merges as an operator runs them with the real
//! `fsx` binary: isolation between branches and commits, log, diff, reset,
//! fast-forward and conflicting merges, what deleting a branch frees,
//! automatic commits and their expiry, SQL on a branch or commit, and
//! clear errors that change nothing.

mod common;

use common::*;

use std::path::Path;

/// The bytes of `name` as `view` (`--branch X`, `--commit N`, or nothing)
/// shows them.
fn get(vol: &Path, name: &str, view: &[&str]) -> Vec<u8> {
    let mut args = vec!["file", "get", s(vol), name, "-"];
    args.extend_from_slice(view);
    let out = fsx(&args);
    assert!(
        out.status.success(),
        "fsx {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Writes `data` to a local file and puts it in the volume as `name`.
fn put(dir: &Path, vol: &Path, name: &str, data: &[u8], view: &[&str]) {
    let src = dir.join("src.bin");
    std::fs::write(&src, data).unwrap();
    let mut args = vec!["file", "put", s(&src), s(vol), name];
    args.extend_from_slice(view);
    ok(&args);
}

fn commit(vol: &Path, message: &str, branch: &str) -> i64 {
    let out = ok(&["commit", s(vol), "-m", message, "--branch", branch]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("`fsx commit` prints the commit id alone: {out:?}"))
}

/// Volume with 256 KiB extents: 64 pages of 4 KiB each.
fn volume(dir: &Path) -> std::path::PathBuf {
    let vol = dir.join("vol");
    ok(&["init", s(&vol), "--extent-size", "256K"]);
    vol
}

#[test]
fn branches_and_commits_each_show_their_own_bytes_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    let a = random(300_000, 1);
    put(dir.path(), &vol, "db", &a, &[]);
    let c1 = commit(&vol, "first", "main");

    let out = ok(&["branch", "create", s(&vol), "feat"]);
    assert!(
        out.contains(&format!("created branch feat from main at commit {c1}")),
        "{out}"
    );
    // The branch changes two pages; main is rewritten.
    let mut b = a.clone();
    b[10 * 4096 + 5] ^= 0xff;
    b[20 * 4096] ^= 0xff;
    put(dir.path(), &vol, "db", &b, &["--branch", "feat"]);
    let m = random(200_000, 2);
    put(dir.path(), &vol, "db", &m, &[]);

    assert!(get(&vol, "db", &[]) == m, "main reads its own bytes");
    assert!(
        get(&vol, "db", &["--branch", "feat"]) == b,
        "the branch its own"
    );
    let c1s = c1.to_string();
    assert!(
        get(&vol, "db", &["--commit", &c1s]) == a,
        "the commit its own"
    );
    let ls = ok(&["file", "ls", s(&vol), "--commit", &c1s]);
    assert!(ls.contains("300000") && ls.contains("db"), "{ls}");
    let stat = ok(&["file", "stat", s(&vol), "db", "--branch", "feat"]);
    assert!(stat.contains("size:      300000"), "{stat}");
    let stat = ok(&["file", "stat", s(&vol), "db"]);
    assert!(stat.contains("size:      200000"), "{stat}");

    // Log: newest first, with branch and message; main's log does not
    // show the branch's commit.
    let c2 = commit(&vol, "feat work", "feat");
    let log = ok(&["log", s(&vol), "feat"]);
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].trim_start().starts_with(&c2.to_string())
            && lines[0].contains("feat  feat work")
            && lines[1].trim_start().starts_with(&c1s)
            && lines[1].contains("main  first"),
        "{log}"
    );
    let main_log = ok(&["log", s(&vol)]);
    assert!(
        main_log.contains("first") && !main_log.contains("feat work"),
        "{main_log}"
    );
    let log = json(&["log", s(&vol), "feat", "--json"]);
    assert_eq!(log[0]["id"], c2);
    assert_eq!(log[0]["parent"], c1);
    assert_eq!(log[0]["message"], "feat work");
    assert_eq!(log[0]["auto"], false);
    assert_eq!(log[1]["id"], c1);
    assert_eq!(ok(&["log", s(&vol), "feat", "-n", "1"]).lines().count(), 1);

    // Diff names the file and exactly the changed pages.
    let diff = ok(&["diff", s(&vol), &c1s, "feat"]);
    assert_eq!(diff.trim(), "modified  db  300000 bytes  pages 10, 20");
    let diff = json(&["diff", s(&vol), &c1s, &c2.to_string(), "--json"]);
    assert_eq!(
        diff,
        serde_json::json!([{
            "id": diff[0]["id"], "kind": "modified", "old_name": "db", "new_name": "db",
            "old_size": 300000, "new_size": 300000,
            "pages": [{"start": 10, "end": 11}, {"start": 20, "end": 21}],
        }])
    );
    let diff = ok(&["diff", s(&vol), "feat", "main"]);
    assert!(
        diff.contains("modified  db  300000 -> 200000 bytes  pages 0-73"),
        "{diff}"
    );
    assert!(ok(&["diff", s(&vol), "feat", &c2.to_string()]).contains("no differences"));

    // Reset discards the branch's commit and its changes.
    let out = ok(&["reset", s(&vol), "feat", &c1s]);
    assert!(
        out.contains(&format!("reset branch feat to commit {c1}")),
        "{out}"
    );
    assert!(get(&vol, "db", &["--branch", "feat"]) == a);
    let log = json(&["log", s(&vol), "feat", "--json"]);
    assert_eq!(log[0]["id"], c1, "{log}");
    let err = fails(&[
        "file",
        "get",
        s(&vol),
        "db",
        "-",
        "--commit",
        &c2.to_string(),
    ]);
    assert!(
        err.contains("does not exist"),
        "a commit no branch reaches is gone: {err}"
    );
    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
}

#[test]
fn merge_fast_forwards_stops_on_conflicts_and_resolves_with_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    put(dir.path(), &vol, "db", &random(100_000, 1), &[]);
    commit(&vol, "base", "main");
    ok(&["branch", "create", s(&vol), "feat"]);
    let b = random(100_000, 2);
    put(dir.path(), &vol, "db", &b, &["--branch", "feat"]);

    let out = ok(&["merge", s(&vol), "feat"]);
    assert!(out.contains("fast-forward: main is now at commit"), "{out}");
    assert!(get(&vol, "db", &[]) == b);

    // Both sides change db; only the branch adds extra.
    let (c, d, e) = (random(100_000, 3), random(120_000, 4), random(5000, 5));
    put(dir.path(), &vol, "db", &c, &[]);
    put(dir.path(), &vol, "db", &d, &["--branch", "feat"]);
    put(dir.path(), &vol, "extra", &e, &["--branch", "feat"]);
    let out = fsx(&["merge", s(&vol), "feat"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "CONFLICT db");
    assert!(
        stderr.contains("nothing was applied") && stderr.contains("--strategy theirs"),
        "{stderr}"
    );
    assert!(get(&vol, "db", &[]) == c, "a stopped merge applies nothing");
    assert!(!ok(&["file", "ls", s(&vol)]).contains("extra"));

    let out = ok(&["merge", s(&vol), "feat", "--strategy", "theirs"]);
    assert!(
        out.contains("merged feat into main as commit")
            && out.contains("taken     extra")
            && out.contains("conflict  db: took feat's version"),
        "{out}"
    );
    assert!(get(&vol, "db", &[]) == d);
    assert!(get(&vol, "extra", &[]) == e);
    assert!(
        get(&vol, "db", &["--branch", "feat"]) == d,
        "the source is unchanged"
    );
    let out = ok(&["merge", s(&vol), "feat", "--into", "main"]);
    assert!(out.contains("main already contains feat"), "{out}");
    assert!(ok(&["log", s(&vol)]).contains("[merge of "));
    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
}

#[test]
fn merge_with_ours_keeps_the_target_and_takes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    put(dir.path(), &vol, "db", &random(50_000, 1), &[]);
    ok(&["branch", "create", s(&vol), "feat"]);
    let (c, d, e) = (random(50_000, 2), random(50_000, 3), random(5000, 4));
    put(dir.path(), &vol, "db", &c, &[]);
    put(dir.path(), &vol, "db", &d, &["--branch", "feat"]);
    put(dir.path(), &vol, "extra", &e, &["--branch", "feat"]);
    let out = ok(&["merge", s(&vol), "feat", "--strategy", "ours"]);
    assert!(out.contains("conflict  db: kept main's version"), "{out}");
    assert!(get(&vol, "db", &[]) == c);
    assert!(get(&vol, "extra", &[]) == e);
}

#[test]
fn deleting_a_branch_frees_its_unique_bytes_at_gc() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    let a = random(600_000, 1);
    put(dir.path(), &vol, "db", &a, &[]);
    // main's head holds changes: creating the branch commits them first.
    let out = ok(&["branch", "create", s(&vol), "feat", "--from", "main"]);
    assert!(out.contains("at commit"), "{out}");
    put(
        dir.path(),
        &vol,
        "db",
        &random(600_000, 2),
        &["--branch", "feat"],
    );

    // 147 pages of 4 KiB in extents of 64: 3 extents only the branch has.
    let list = json(&["branch", "list", s(&vol), "--json"]);
    let feat = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "feat")
        .unwrap()
        .clone();
    assert_eq!(feat["unique"]["extents"], 3, "{list}");
    let unique = feat["unique_bytes"].as_u64().unwrap();
    assert!(unique >= 600_000, "{list}");
    let text = ok(&["branch", "list", s(&vol)]);
    assert!(
        text.lines().next().unwrap().contains("UNIQUE BYTES")
            && text
                .lines()
                .any(|l| l.starts_with("feat ") && l.ends_with(&unique.to_string())),
        "{text}"
    );
    let st = json(&["stats", s(&vol), "--json"]);
    let in_stats = st["branches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "feat")
        .unwrap();
    assert_eq!(in_stats["unique_bytes"], unique, "{st}");
    assert!(ok(&["stats", s(&vol)]).contains(&format!("branch feat: {unique} unique bytes")));

    let gc = ok(&["gc", s(&vol), "--grace", "0s"]);
    assert!(gc.contains("deleted 0 unreferenced extents"), "{gc}");
    let out = ok(&["branch", "delete", s(&vol), "feat"]);
    assert!(out.contains("deleted branch feat"), "{out}");
    assert!(!ok(&["branch", "list", s(&vol)]).contains("feat"));
    let err = fails(&["file", "get", s(&vol), "db", "-", "--branch", "feat"]);
    assert!(err.contains("no branch \"feat\""), "{err}");
    let gc = ok(&["gc", s(&vol), "--grace", "0s"]);
    assert!(gc.contains("deleted 3 unreferenced extents"), "{gc}");
    let fsck = ok(&["fsck", s(&vol)]);
    assert!(
        fsck.contains("1 branches") && fsck.contains("clean") && !fsck.contains("GRAPH"),
        "{fsck}"
    );
    assert!(get(&vol, "db", &[]) == a, "main is untouched");
}

#[test]
fn automatic_commits_are_configured_made_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    let out = ok(&["branch", "config", s(&vol)]);
    assert_eq!(out, "auto-commit: off\nretain:      7d (default)\n");
    let out = ok(&[
        "branch",
        "config",
        s(&vol),
        "--auto-commit",
        "1s",
        "--retain",
        "0s",
    ]);
    assert_eq!(out, "auto-commit: every 1s\nretain:      0s\n");

    for seed in 1..=3 {
        put(dir.path(), &vol, "db", &random(10_000, seed), &[]);
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
    put(dir.path(), &vol, "db", &random(10_000, 4), &[]);
    let log = json(&["log", s(&vol), "--json"]);
    let autos = log.as_array().unwrap().len();
    assert!(
        autos >= 3 && log[0]["auto"] == true,
        "a write every 1.2 s commits before it: {log}"
    );
    assert!(ok(&["log", s(&vol)]).contains("[auto] "));
    let gc = ok(&["gc", s(&vol), "--grace", "0s"]);
    let expired = format!("expired {} automatic commits", autos - 1);
    assert!(gc.contains(&expired), "all but main's latest: {gc}");
    assert_eq!(
        json(&["log", s(&vol), "--json"]).as_array().unwrap().len(),
        1
    );
    assert!(get(&vol, "db", &[]) == random(10_000, 4));

    let out = ok(&["branch", "config", s(&vol), "--auto-commit", "off"]);
    assert!(out.starts_with("auto-commit: off\n"), "{out}");
    let err = fails(&["branch", "config", s(&vol), "--auto-commit", "never"]);
    assert!(err.contains("not a duration"), "{err}");
    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
}

#[test]
fn sql_runs_on_a_branch_and_reads_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    let v = s(&vol);
    ok(&[
        "sql",
        v,
        "app.db",
        "CREATE TABLE t(x); INSERT INTO t VALUES (1)",
    ]);
    let c1 = commit(&vol, "one row", "main").to_string();
    ok(&["branch", "create", v, "feat"]);
    ok(&[
        "sql",
        v,
        "app.db",
        "INSERT INTO t VALUES (2)",
        "--branch",
        "feat",
    ]);
    ok(&["sql", v, "app.db", "INSERT INTO t VALUES (3), (4)"]);

    let count = "SELECT count(*) FROM t";
    assert_eq!(ok(&["sql", v, "app.db", count]), "3\n");
    assert_eq!(ok(&["sql", v, "app.db", count, "--branch", "feat"]), "2\n");
    assert_eq!(ok(&["sql", v, "app.db", count, "--commit", &c1]), "1\n");

    let err = fails(&[
        "sql",
        v,
        "app.db",
        "INSERT INTO t VALUES (5)",
        "--commit",
        &c1,
    ]);
    assert!(err.contains("readonly"), "{err}");
    let err = fails(&["sql", v, "app.db", count, "--branch", "nope"]);
    assert!(err.contains("nope"), "{err}");
    assert_eq!(ok(&["sql", v, "app.db", count, "--commit", &c1]), "1\n");
}

#[test]
fn errors_are_clear_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    let v = s(&vol);
    let a = random(50_000, 1);
    put(dir.path(), &vol, "db", &a, &[]);
    let c1 = commit(&vol, "first", "main").to_string();
    ok(&["branch", "create", v, "feat"]);
    let src = dir.path().join("other.bin");
    std::fs::write(&src, b"other").unwrap();
    let before = (
        ok(&["branch", "list", v, "--json"]),
        ok(&["log", v, "--json"]),
        ok(&["log", v, "feat", "--json"]),
    );

    let cases: &[(&[&str], &str)] = &[
        // Unknown branch or commit.
        (
            &["file", "get", v, "db", "-", "--branch", "nope"],
            "no branch \"nope\"",
        ),
        (
            &["file", "put", s(&src), v, "db", "--branch", "nope"],
            "no branch \"nope\"",
        ),
        (
            &["file", "ls", v, "--commit", "999"],
            "commit 999 does not exist",
        ),
        (&["commit", v, "--branch", "nope"], "no branch \"nope\""),
        (&["log", v, "nope"], "neither a branch nor a commit id"),
        (&["log", v, "999"], "commit 999 does not exist"),
        (
            &["diff", v, "main", "nope"],
            "neither a branch nor a commit id",
        ),
        (&["reset", v, "main", "999"], "commit 999 does not exist"),
        (&["reset", v, "nope", &c1], "no branch \"nope\""),
        (&["merge", v, "nope"], "neither a branch nor a commit id"),
        (
            &["merge", v, "feat", "--into", "nope"],
            "no branch \"nope\"",
        ),
        (
            &["branch", "create", v, "x", "--from", "nope"],
            "neither a branch nor a commit id",
        ),
        (&["branch", "delete", v, "nope"], "no branch \"nope\""),
        // Invalid or taken branch names; main stays.
        (
            &["branch", "create", v, "bad name!"],
            "not a valid branch name",
        ),
        (&["branch", "create", v, ".x"], "not a valid branch name"),
        (&["branch", "create", v, "feat"], "feat"),
        (&["branch", "delete", v, "main"], "cannot be deleted"),
        // Commits are read-only.
        (
            &["file", "put", s(&src), v, "db", "--commit", &c1],
            "read-only",
        ),
        (&["file", "rm", v, "db", "--commit", &c1], "read-only"),
        (
            &["file", "mv", v, "db", "db2", "--commit", &c1],
            "read-only",
        ),
        // A branch into itself.
        (&["merge", v, "main"], "into itself"),
        (&["merge", v, "feat", "--into", "feat"], "into itself"),
        // Argument errors.
        (
            &[
                "file", "get", v, "db", "-", "--branch", "feat", "--commit", &c1,
            ],
            "cannot be used with",
        ),
        (&["merge", v, "feat", "--strategy", "mine"], "invalid value"),
    ];
    for (args, want) in cases {
        let err = fails(args);
        assert!(
            err.contains(want),
            "fsx {args:?}: expected {want:?} in {err}"
        );
    }

    let after = (
        ok(&["branch", "list", v, "--json"]),
        ok(&["log", v, "--json"]),
        ok(&["log", v, "feat", "--json"]),
    );
    assert_eq!(before, after, "failed commands changed nothing");
    assert!(get(&vol, "db", &[]) == a);
    assert!(get(&vol, "db", &["--commit", &c1]) == a);
    assert_eq!(ok(&["file", "ls", v]).lines().count(), 1);
    assert!(ok(&["fsck", v]).contains("clean"));
}

#[test]
fn branches_work_the_same_on_postgres_metadata() {
    let pg = fsx_testkit::postgres::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let meta = pg.fresh_url();
    ok(&["init", s(&vol), "--meta", &meta, "--extent-size", "256K"]);
    let a = random(300_000, 1);
    put(dir.path(), &vol, "db", &a, &[]);
    let c1 = commit(&vol, "first", "main");
    let c1s = c1.to_string();
    ok(&["branch", "create", s(&vol), "feat", "--from", &c1s]);
    let mut b = a.clone();
    b[30 * 4096] ^= 1;
    put(dir.path(), &vol, "db", &b, &["--branch", "feat"]);
    let m = random(300_000, 2);
    put(dir.path(), &vol, "db", &m, &[]);
    assert!(get(&vol, "db", &[]) == m);
    assert!(get(&vol, "db", &["--branch", "feat"]) == b);
    assert!(get(&vol, "db", &["--commit", &c1s]) == a);
    let diff = ok(&["diff", s(&vol), &c1s, "feat"]);
    assert_eq!(diff.trim(), "modified  db  300000 bytes  pages 30");
    let log = json(&["log", s(&vol), "--json"]);
    assert_eq!(log[0]["id"], c1, "{log}");

    let out = fsx(&["merge", s(&vol), "feat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(get(&vol, "db", &[]) == m, "a stopped merge applies nothing");
    ok(&["merge", s(&vol), "feat", "--strategy", "theirs"]);
    assert!(get(&vol, "db", &[]) == b);

    put(
        dir.path(),
        &vol,
        "db",
        &random(300_000, 3),
        &["--branch", "feat"],
    );
    let list = json(&["branch", "list", s(&vol), "--json"]);
    assert_eq!(list[0]["name"], "feat", "{list}");
    assert_eq!(list[0]["unique"]["extents"], 2, "{list}");
    ok(&["branch", "delete", s(&vol), "feat"]);
    let gc = ok(&["gc", s(&vol), "--grace", "0s"]);
    assert!(gc.contains("deleted 2 unreferenced extents"), "{gc}");
    let fsck = ok(&["fsck", s(&vol)]);
    assert!(
        fsck.contains("1 branches") && fsck.contains("clean"),
        "{fsck}"
    );
    assert!(get(&vol, "db", &[]) == b);
}
