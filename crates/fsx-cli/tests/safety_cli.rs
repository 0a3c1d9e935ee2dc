//! Issue 11 at the command line: what a user met and what now holds —
//! dead writers' leases are broken, outputs are atomic, exit codes say
//! whether data is safe, and bad input gets a clear error.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{fails, fsx, ok, s};

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
fn a_killed_writers_lease_does_not_block_rm_mv_reset_or_merge() {
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

    // Merging into a branch (a fast-forward: main has not moved since
    // feature began, but the dead shell still holds a lease on it).
    kill_sql_holding_lease(&vol, "app.db", &[]);
    ok(&["branch", "create", s(&vol), "feature"]);
    ok(&[
        "file",
        "put",
        s(&src),
        s(&vol),
        "new",
        "--branch",
        "feature",
    ]);
    let merged = ok(&["merge", s(&vol), "feature", "--into", "main"]);
    assert!(merged.contains("fast-forward"), "{merged}");
    assert!(ok(&["file", "ls", s(&vol)]).contains("new"));
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

/// Every extent object of a volume's local data directory (files that
/// start with `EXT1`).
fn extent_files(vol: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![vol.join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().starts_with(b"EXT1") {
                out.push(p);
            }
        }
    }
    out
}

/// Flips one bit in the page data of every extent.
fn corrupt_extents(vol: &Path) {
    let files = extent_files(vol);
    assert!(!files.is_empty());
    for p in files {
        let mut b = std::fs::read(&p).unwrap();
        let i = b.len() - 1;
        b[i] ^= 0x10;
        std::fs::write(&p, b).unwrap();
    }
}

fn volume_with(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let vol = dir.join("vol");
    ok(&["init", s(&vol)]);
    let src = dir.join("src.bin");
    std::fs::write(&src, data).unwrap();
    ok(&["file", "put", s(&src), s(&vol), name]);
    vol
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_get_leaves_the_existing_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::random(300_000, 1);
    let vol = volume_with(dir.path(), "f", &data);
    corrupt_extents(&vol);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("dest.bin");
    std::fs::write(&dest, b"the user's old contents").unwrap();

    let err = fails(&["file", "get", s(&vol), "f", s(&dest)]);
    assert_eq!(std::fs::read(&dest).unwrap(), b"the user's old contents");
    assert_eq!(names_in(&out_dir), ["dest.bin"], "no temporary file left");
    assert!(err.contains("damaged"), "{err}");
    assert!(err.contains("left as it was"), "{err}");
}

#[test]
fn a_successful_get_replaces_the_destination_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::random(300_000, 2);
    let vol = volume_with(dir.path(), "f", &data);
    let dest = dir.path().join("dest.bin");
    std::fs::write(&dest, vec![1u8; 1_000_000]).unwrap();
    ok(&["file", "get", s(&vol), "f", s(&dest)]);
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // Through a symlink: the link stays, its target gets the data.
    let link = dir.path().join("link.bin");
    std::os::unix::fs::symlink(&dest, &link).unwrap();
    std::fs::write(&dest, b"old").unwrap();
    ok(&["file", "get", s(&vol), "f", s(&link)]);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn a_get_into_the_volumes_own_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::random(50_000, 3);
    let vol = volume_with(dir.path(), "a", &data);
    std::os::unix::fs::symlink(vol.join("meta.db"), dir.path().join("link.db")).unwrap();
    let sneaky = format!("{}/../vol/data/x", s(&vol));
    for dest in [
        s(&vol.join("meta.db")).to_string(),
        s(&vol.join("meta.db-wal")).to_string(),
        s(&vol.join("new-file")).to_string(),
        sneaky,
        s(&dir.path().join("link.db")).to_string(),
    ] {
        let err = fails(&["file", "get", s(&vol), "a", &dest]);
        assert!(err.contains("inside the volume"), "{dest}: {err}");
    }
    // The volume is intact.
    assert_eq!(fsx(&["file", "get", s(&vol), "a", "-"]).stdout, data);
    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
}

#[test]
fn a_failed_put_of_a_new_name_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    // A directory opens but cannot be read: the put fails after it began.
    let err = fails(&["file", "put", s(dir.path()), s(&vol), "new.db"]);
    assert!(err.contains("nothing was stored"), "{err}");
    assert_eq!(ok(&["file", "ls", s(&vol)]), "");
    // And the name is free for the next put.
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"ok").unwrap();
    ok(&["file", "put", s(&src), s(&vol), "new.db"]);
    assert_eq!(fsx(&["file", "get", s(&vol), "new.db", "-"]).stdout, b"ok");
}

#[test]
fn a_killed_put_of_a_new_name_never_shows_under_it_and_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(["file", "put", "-", s(&vol), "big.db", "--sync-pages", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&common::random(1 << 20, 4)).unwrap();
    stdin.flush().unwrap();
    // Wait (by polling the volume, not by time) until the put has made
    // pages durable, then kill it mid-copy.
    let mut seen = String::new();
    for _ in 0..2000 {
        seen = ok(&["file", "ls", s(&vol)]);
        if seen.contains(".fsx-partial/") && !seen.contains(" 0 ") {
            break;
        }
    }
    assert!(seen.contains(".fsx-partial/"), "{seen}");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let ls = ok(&["file", "ls", s(&vol)]);
    assert!(!ls.contains(" big.db"), "the name never appeared: {ls}");

    // The next put removes what the killed one left.
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"small").unwrap();
    ok(&["file", "put", s(&src), s(&vol), "other.db"]);
    let ls = ok(&["file", "ls", s(&vol)]);
    assert_eq!(ls.lines().count(), 1, "{ls}");
    assert!(ls.contains("other.db"), "{ls}");
}

#[test]
fn a_put_whose_packing_fails_is_durable_and_exits_0_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    // Every fan-out directory of the data store that does not exist yet is
    // made a plain file, so no new extent can be stored (even by root);
    // the volume's marker object stays readable.
    let objects = vol.join("data/objects");
    for i in 0..=255u8 {
        let p = objects.join(format!("{i:02x}"));
        if !p.exists() {
            std::fs::write(&p, b"").unwrap();
        }
    }
    let data = common::random(100_000, 5);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let out = fsx(&["file", "put", s(&src), s(&vol), "f.db"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("warning") && err.contains("fsx gc"), "{err}");
    assert_eq!(fsx(&["file", "get", s(&vol), "f.db", "-"]).stdout, data);
}

#[test]
fn a_reput_of_identical_bytes_over_a_corrupt_extent_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::random(200_000, 6);
    let vol = volume_with(dir.path(), "a", &data);
    corrupt_extents(&vol);
    ok(&["file", "put", s(&dir.path().join("src.bin")), s(&vol), "b"]);
    assert_eq!(fsx(&["file", "get", s(&vol), "b", "-"]).stdout, data);
    // The good copy replaced the bad one, for the first file too.
    assert_eq!(fsx(&["file", "get", s(&vol), "a", "-"]).stdout, data);
    assert!(ok(&["fsck", s(&vol)]).contains("clean"));
}

#[test]
fn extent_verify_of_an_endless_file_stops_with_an_error() {
    let out = fsx(&["extent", "verify", "/dev/zero"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("longer than the largest extent"), "{text}");
    let out = fsx(&["extent", "inspect", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than the largest extent"));
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    // More than a pipe's buffer of output, so the writer meets the closed
    // pipe whatever the timing.
    let missing = "/nonexistent/fsx-test-extent-file-with-a-long-name.ext1";
    let args: Vec<&str> = std::iter::once("extent")
        .chain(std::iter::once("verify"))
        .chain(std::iter::repeat_n(missing, 3000))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(missing), "{line}");
    // The reader is gone (dropped above), like `| head -1`.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "{err}");
}

#[test]
fn numeric_flags_out_of_range_are_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"x").unwrap();
    for (flag, value, says) in [
        ("--sync-pages", "0", "not in 1.."),
        ("--page-size", "100", "not in 512..=65536"),
        ("--page-size", "99999999999", "--page-size"),
    ] {
        let err = fails(&["file", "put", s(&src), s(&vol), "f", flag, value]);
        assert!(
            err.contains(says) && err.contains(flag),
            "{flag} {value}: {err}"
        );
    }
    let err = fails(&[
        "sql",
        s(&vol),
        "a.db",
        "--busy-timeout",
        "99999999999",
        "SELECT 1",
    ]);
    assert!(err.contains("--busy-timeout"), "{err}");
    for flag in ["--concurrency", "--small-count", "--large-count"] {
        let store = dir.path().join("store");
        let err = fails(&["store", "bench", s(&store), flag, "0"]);
        assert!(err.contains("not in 1..") && err.contains(flag), "{err}");
        assert!(!store.exists(), "a refused bench touched its store");
    }
    assert_eq!(ok(&["file", "ls", s(&vol)]), "");
}

#[test]
fn an_empty_metadata_database_is_named_not_a_missing_table() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume_with(dir.path(), "a", b"data");
    std::fs::write(vol.join("meta.db"), b"").unwrap();
    for side in ["meta.db-wal", "meta.db-shm"] {
        let _ = std::fs::remove_file(vol.join(side));
    }
    for args in [
        vec!["file", "ls", s(&vol)],
        vec!["fsck", s(&vol)],
        vec!["sql", s(&vol), "a.db", "SELECT 1"],
    ] {
        let err = fails(&args);
        assert!(!err.contains("no such table"), "{args:?}: {err}");
        assert!(
            err.contains("is empty (0 bytes)") && err.contains(s(&vol.join("meta.db"))),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::metadata(vol.join("meta.db")).unwrap().len(), 0);
}

#[tokio::test]
async fn names_with_control_characters_are_refused_and_escaped_on_output() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume_with(dir.path(), "plain", b"x");
    let src = dir.path().join("src.bin");
    for bad in ["two\nlines", "esc\u{1b}[31mred", "tab\there"] {
        let err = fails(&["file", "put", s(&src), s(&vol), bad]);
        assert!(err.contains("control characters"), "{err}");
        let err = fails(&["file", "mv", s(&vol), "plain", bad]);
        assert!(err.contains("control characters"), "{err}");
    }
    // A name an older fsx stored: written here through the metadata engine.
    {
        use fsx_meta::prelude::*;
        let meta = fsx_meta::sqlite::SqliteMeta::open(vol.join("meta.db"), false).unwrap();
        meta.create_file(fsx_meta::MAIN_BRANCH, "evil\n\u{1b}[2Jname", 4096, 0)
            .await
            .unwrap();
    }
    let out = fsx(&["file", "ls", s(&vol)]);
    assert!(out.status.success());
    assert!(
        !out.stdout.contains(&0x1b),
        "no raw ESC in {:?}",
        out.stdout
    );
    let ls = String::from_utf8(out.stdout).unwrap();
    assert_eq!(ls.lines().count(), 2, "{ls}");
    assert!(ls.contains(r#""evil\n\u{1b}[2Jname""#), "{ls}");
    // Such a file can still be read and removed by its real name.
    ok(&["file", "rm", s(&vol), "evil\n\u{1b}[2Jname"]);
    // A commit message is text someone else typed, printed by `log`.
    ok(&["commit", s(&vol), "-m", "fix\n\u{1b}[2Jforged"]);
    let log = ok(&["log", s(&vol), "main"]);
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains(r#""fix\n\u{1b}[2Jforged""#), "{log}");
}

#[test]
fn a_put_over_an_existing_file_says_whether_it_changed_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = common::random(5 * 4096, 7);
    let vol = volume_with(dir.path(), "f", &old);

    // Failing before any new data is durable: exit 2, the file as it was.
    let err = fails(&["file", "put", s(dir.path()), s(&vol), "f"]);
    assert!(err.contains("left as it was"), "{err}");
    assert_eq!(fsx(&["file", "get", s(&vol), "f", "-"]).stdout, old);
    // Nor does it hold the file: renaming it works at once.
    ok(&["file", "mv", s(&vol), "f", "g"]);
    ok(&["file", "mv", s(&vol), "g", "f"]);

    // Failing after some pages were synced: exit 3. The last, partial page
    // must read the old page from an extent that is now damaged.
    corrupt_extents(&vol);
    let src = dir.path().join("new.bin");
    std::fs::write(&src, common::random(3 * 4096 + 100, 8)).unwrap();
    let out = fsx(&["file", "put", s(&src), s(&vol), "f", "--sync-pages", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("may hold part of the new data"), "{err}");
}

/// A small tmpfs, unmounted on drop; `None` where this process may not
/// mount (not root), so the full-disk test runs where it can.
struct SmallTmpfs(std::path::PathBuf);

impl SmallTmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", s(at)])
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Self(at.to_path_buf()))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_get_onto_a_full_disk_leaves_the_destination_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::random(500_000, 9);
    let vol = volume_with(dir.path(), "big", &data);
    // A skipped check would pass without proving anything.
    let disk = SmallTmpfs::mount(&dir.path().join("small"), "200k")
        .expect("cannot mount a 200k tmpfs here: this test needs root, as scripts/test.sh has");
    let dest = disk.0.join("dest.bin");
    std::fs::write(&dest, b"old contents").unwrap();
    let err = fails(&["file", "get", s(&vol), "big", s(&dest)]);
    assert_eq!(std::fs::read(&dest).unwrap(), b"old contents");
    assert_eq!(names_in(&disk.0), ["dest.bin"], "no temporary file left");
    assert!(
        err.contains("No space left") && err.contains("left as it was"),
        "{err}"
    );
}
