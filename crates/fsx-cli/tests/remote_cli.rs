//! Remote volumes in the CLI: a real `fsx serve` on 127.0.0.1 port 0,
//! tokens from `fsx token create`, and each remote command compared with
//! the same command on the local volume (output and exit code). Refusals
//! — a read token's put, no token, a bad token, nothing listening, a
//! file over `--max-body` — are clear errors that change nothing.
//!
//! Every server is a child process killed (and reaped) when its guard
//! drops, also when an assertion fails.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// The longest a server may take to print its address: a deadline for a
/// broken server, never a synchronisation.
const START_DEADLINE: Duration = Duration::from_secs(120);

/// A running `fsx serve`, killed when dropped.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

impl Server {
    fn start(vol: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
            .args(["serve", s(vol), "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Keep reading so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Server {
            child,
            base: String::new(),
        };
        let line = rx
            .recv_timeout(START_DEADLINE)
            .ok()
            .flatten()
            .expect("fsx serve printed no `listening on URL` line");
        server.base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        server
    }

    /// The URL of volume `name`.
    fn volume(&self, name: &str) -> String {
        format!("{}/v1/volumes/{name}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `fsx` with `FSX_TOKEN` set to `token`, or unset.
fn run(token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fsx"));
    c.args(args);
    match token {
        Some(t) => c.env("FSX_TOKEN", t),
        None => c.env_remove("FSX_TOKEN"),
    };
    c.output().unwrap()
}

/// Runs with `token`; must succeed; stdout.
fn rok(token: &str, args: &[&str]) -> String {
    let out = run(Some(token), args);
    assert!(
        out.status.success(),
        "fsx {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs with `token` (or none); must exit 2; stderr.
fn rfails(token: Option<&str>, args: &[&str]) -> String {
    let out = run(token, args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "fsx {args:?} should fail: {} / {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn token(vol: &Path, scope: &str) -> String {
    ok(&["token", "create", s(vol), "--scope", scope])
        .trim()
        .to_string()
}

/// A volume with one file and one commit.
fn volume(dir: &Path) -> std::path::PathBuf {
    let vol = dir.join("vol");
    ok(&["init", s(&vol)]);
    let seed = dir.join("seed");
    std::fs::write(&seed, random(100_000, 7)).unwrap();
    ok(&["file", "put", s(&seed), s(&vol), "seed"]);
    ok(&["commit", s(&vol), "-m", "first"]);
    vol
}

#[test]
fn remote_commands_print_what_local_ones_print() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    let write = token(&vol, "write");
    let read = token(&vol, "read");
    let server = Server::start(&vol, &[]);
    let url = server.volume("vol");
    let v = s(&vol);

    // put: a file of several chunks, over a name put locally first, so
    // both print the same line.
    let data = random(3 << 20 | 12_345, 1);
    let src = dir.path().join("src");
    std::fs::write(&src, &data).unwrap();
    let local_put = ok(&["file", "put", s(&src), v, "x"]);
    let remote_put = rok(&write, &["file", "put", s(&src), &url, "x"]);
    assert_eq!(remote_put, local_put);
    let remote_new = rok(&write, &["file", "put", s(&src), &url, "y"]);
    assert_eq!(remote_new, format!("y: {} bytes\n", data.len()));

    // get: byte-exact, to a file and to stdout, and the same file locally.
    let out_r = dir.path().join("out-r");
    rok(&read, &["file", "get", &url, "y", s(&out_r)]);
    assert!(std::fs::read(&out_r).unwrap() == data, "remote get differs");
    let out_l = dir.path().join("out-l");
    ok(&["file", "get", v, "y", s(&out_l)]);
    assert!(std::fs::read(&out_l).unwrap() == data, "local get differs");
    let piped = run(Some(&read), &["file", "get", &url, "x", "-"]);
    assert!(piped.status.success() && piped.stdout == data);

    // ls, stat.
    assert_eq!(rok(&read, &["file", "ls", &url]), ok(&["file", "ls", v]));
    assert_eq!(
        rok(&read, &["file", "ls", &url, "s"]),
        ok(&["file", "ls", v, "s"])
    );
    assert_eq!(
        rok(&read, &["file", "stat", &url, "y"]),
        ok(&["file", "stat", v, "y"])
    );

    // A missing file: exit 2 both ways, nothing written.
    let missing = dir.path().join("missing");
    rfails(Some(&read), &["file", "get", &url, "nope", s(&missing)]);
    fails(&["file", "get", v, "nope", s(&missing)]);
    assert!(!missing.exists());

    // branches: made remotely, seen locally; listed alike.
    let created = rok(&write, &["branch", "create", &url, "dev"]);
    assert!(
        created.starts_with("created branch dev from main at commit "),
        "{created}"
    );
    let local_list = ok(&["branch", "list", v]);
    assert!(
        local_list.lines().any(|l| l.starts_with("dev ")),
        "{local_list}"
    );
    assert_eq!(rok(&read, &["branch", "list", &url]), local_list);
    assert_eq!(
        rok(&read, &["branch", "list", &url, "--json"]),
        ok(&["branch", "list", v, "--json"])
    );
    rfails(Some(&write), &["branch", "create", &url, "dev"]);
    fails(&["branch", "create", v, "dev"]);

    // commit and log.
    let id = rok(&write, &["commit", &url, "-m", "remote"]);
    assert!(id.trim().parse::<u64>().is_ok(), "{id}");
    let local_log = ok(&["log", v]);
    assert!(local_log.contains("remote"), "{local_log}");
    assert_eq!(rok(&read, &["log", &url]), local_log);
    assert_eq!(
        rok(&read, &["log", &url, "dev", "-n", "1", "--json"]),
        ok(&["log", v, "dev", "-n", "1", "--json"])
    );
    rfails(Some(&read), &["log", &url, "no-such-branch"]);
    fails(&["log", v, "no-such-branch"]);

    // stats: the same lines; counters may move between the two runs.
    let remote_stats = rok(&read, &["stats", &url]);
    let local_stats = ok(&["stats", v]);
    let head = |s: &str| s.lines().take(4).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(head(&remote_stats), head(&local_stats));
    let labels = |s: &str| {
        s.lines()
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&remote_stats), labels(&local_stats));
    let rj: serde_json::Value =
        serde_json::from_str(&rok(&read, &["stats", &url, "--json"])).unwrap();
    let lj = json(&["stats", v, "--json"]);
    assert_eq!(rj["volume"], lj["volume"]);
    assert_eq!(rj["files"], lj["files"]);
    assert_eq!(rj["branches"], lj["branches"]);
    assert_eq!(rj["settings"], lj["settings"]);

    // diff, merge (a conflict exits 1 and applies nothing), reset.
    let small = dir.path().join("small");
    std::fs::write(&small, b"on dev").unwrap();
    rok(
        &write,
        &["file", "put", s(&small), &url, "z", "--branch", "dev"],
    );
    // A server's put replaces a file by a new one (a rename over it), so
    // the conflicting change of one file is made in place, locally.
    ok(&["file", "put", s(&small), v, "x", "--branch", "dev"]);
    ok(&["file", "put", s(&small), v, "seed"]);
    std::fs::write(&small, b"on main").unwrap();
    ok(&["file", "put", s(&small), v, "x"]);
    assert_eq!(
        rok(&read, &["diff", &url, "main", "dev"]),
        ok(&["diff", v, "main", "dev"])
    );
    assert_eq!(
        rok(&read, &["diff", &url, "main", "dev", "--json"]),
        ok(&["diff", v, "main", "dev", "--json"])
    );
    let before = ok(&["file", "ls", v]);
    let stopped = run(Some(&write), &["merge", &url, "dev"]);
    assert_eq!(
        stopped.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&stopped.stdout), "CONFLICT x\n");
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("nothing was applied"));
    assert_eq!(ok(&["file", "ls", v]), before);
    let merged = rok(&write, &["merge", &url, "dev", "--strategy", "ours"]);
    assert!(
        merged.starts_with("merged dev into main as commit "),
        "{merged}"
    );
    assert!(
        merged.contains("  taken     z (changed on dev only)"),
        "{merged}"
    );
    assert!(
        merged.contains("  conflict  x: kept main's version"),
        "{merged}"
    );
    assert!(ok(&["file", "ls", v]).contains(" z\n"));
    let first: serde_json::Value = json(&["log", v, "dev", "--json"]);
    let oldest = first.as_array().unwrap().last().unwrap()["id"].to_string();
    let err = rfails(Some(&write), &["reset", &url, "dev", &oldest]);
    assert!(err.contains("lacks the admin scope"), "{err}");
    let admin = token(&vol, "admin");
    assert_eq!(
        rok(&admin, &["reset", &url, "dev", &oldest]),
        format!("reset branch dev to commit {oldest}\n")
    );

    // A command with no remote form says so.
    let err = rfails(Some(&write), &["branch", "delete", &url, "dev"]);
    assert!(err.contains("remote volume"), "{err}");
}

#[test]
fn refusals_are_clear_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    let read = token(&vol, "read");
    let server = Server::start(&vol, &["--max-body", "1M"]);
    let url = server.volume("vol");
    let v = s(&vol);
    let before = ok(&["file", "ls", v]);
    let src = dir.path().join("src");
    std::fs::write(&src, b"new").unwrap();

    // A read token cannot put.
    let err = rfails(Some(&read), &["file", "put", s(&src), &url, "seed"]);
    assert!(
        err.contains("lacks the write scope for volume vol"),
        "{err}"
    );
    let err = rfails(Some(&read), &["branch", "create", &url, "b"]);
    assert!(err.contains("write scope"), "{err}");

    // No token, a wrong token.
    let err = rfails(None, &["file", "ls", &url]);
    assert!(err.contains("FSX_TOKEN is not set"), "{err}");
    let err = rfails(Some("fsx_garbage"), &["log", &url]);
    assert!(err.contains("missing, wrong or revoked"), "{err}");

    // Over the server's body limit: refused before sending (known size)
    // or while sending (stdin), naming the limit and the flag.
    let big = dir.path().join("big");
    std::fs::write(&big, random(2 << 20, 3)).unwrap();
    let write = token(&vol, "write");
    let err = rfails(Some(&write), &["file", "put", s(&big), &url, "big"]);
    assert!(
        err.contains("--max-body") && err.contains("1048576 bytes"),
        "{err}"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(["file", "put", "-", &url, "big"])
        .env("FSX_TOKEN", &write)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        // The put stops reading at the limit: a broken pipe is expected.
        let _ = stdin.write_all(&random(2 << 20, 4));
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--max-body"), "{err}");

    assert_eq!(
        ok(&["file", "ls", v]),
        before,
        "a refused call changed the volume"
    );
    assert!(!ok(&["branch", "list", v]).contains("\nb "));

    // Nothing listening; not a volume URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}/v1/volumes/vol");
    let err = rfails(Some(&read), &["file", "ls", &nowhere]);
    assert!(
        err.contains(&format!("no fsx server answers at http://127.0.0.1:{port}")),
        "{err}"
    );
    let err = rfails(
        Some(&read),
        &["stats", &format!("{}/volumes/vol", server.base)],
    );
    assert!(err.contains("not a remote volume URL"), "{err}");
}

#[test]
fn a_public_read_volume_reads_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let vol = volume(dir.path());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let v = fsx_volume::open(
            &vol,
            std::sync::Arc::new(fsx_engine::SystemEnv::new()),
            fsx_engine::VolumeOptions::default(),
        )
        .await
        .unwrap();
        v.meta()
            .set_setting("server.public_read", "true")
            .await
            .unwrap();
    });
    let server = Server::start(&vol, &[]);
    let url = server.volume("vol");
    let listed = run(None, &["file", "ls", &url]);
    assert!(listed.status.success());
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap(),
        ok(&["file", "ls", s(&vol)])
    );
    let src = dir.path().join("src");
    std::fs::write(&src, b"new").unwrap();
    let err = rfails(None, &["file", "put", s(&src), &url, "new"]);
    assert!(err.contains("FSX_TOKEN is not set"), "{err}");
}
