//! A SIGKILL of `fsx serve` under load loses no acknowledged change.
//!
//! Each seeded round starts `fsx serve` on one volume (embedded SQLite
//! metadata), runs `fsx bench serve URL --ack-log LOG` against it as a
//! child process, SIGKILLs the server once the log holds a seeded number
//! of acknowledged changes, restarts it on the same volume and checks
//! that every change the log says was acknowledged is there, twice:
//!
//! 1. through the restarted server (`fsx bench serve --check-ack-log`);
//! 2. independently of the HTTP path and of the bench's own checker:
//!    this file replays the log itself, and after the rounds the volume's
//!    tree is copied out with `fsx export` and compared file by file
//!    (size and SHA-256), directory by directory, removal by removal.
//!
//! `fsx fsck` must find the volume clean after every round. The seed is
//! printed; `FSX_CRASH_SEED=N` replays one. Every wait polls something the
//! processes write (the `listening on` line, the ack log) against a
//! deadline; nothing sleeps to synchronise.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;
use tempfile::TempDir;

/// Longest wait for anything that should happen promptly: a guard
/// against a hang, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `fsx serve`, killed if the test ends (or fails) first.
struct Served {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Served {
    fn start(vol: &Path, log: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
            .args(["serve", s(vol), "--listen", "127.0.0.1:0"])
            // The load is the point, not the rate limit.
            .args(["--rate", "1000000", "--burst", "1000000"])
            .env("FSX_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let name = vol.file_name().unwrap().to_str().unwrap();
        let server = loop {
            match rx.recv_timeout(DEADLINE) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "fsx serve ended without an address:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ),
                Err(RecvTimeoutError::Timeout) => panic!("fsx serve printed no address"),
            }
        };
        Self {
            child,
            url: format!("{server}/v1/volumes/{name}"),
            log: log.to_path_buf(),
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{signal} {}", self.child.id());
    }

    /// Its exit status, once it has exited (within [`DEADLINE`]).
    fn wait(&mut self) -> ExitStatus {
        wait_for(&mut self.child, "fsx serve", &self.log)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `child` to exit, polling against [`DEADLINE`].
fn wait_for(child: &mut Child, what: &str, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit in {DEADLINE:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a path should hold after the crash, by this file's own replay of
/// the ack log (see `fsx bench serve`'s docs for the format).
#[derive(Debug, Clone, PartialEq)]
enum Want {
    File {
        size: u64,
        digest: String,
    },
    Dir,
    Absent,
    /// A change to it was in flight at the kill: either outcome is right.
    Unknown,
}

/// Marks the paths of a change whose outcome is unknown.
fn unknown(state: &mut BTreeMap<String, Want>, change: &[String]) {
    for p in &change[1..] {
        if p.starts_with('/') {
            state.insert(p.clone(), Want::Unknown);
        }
    }
}

fn replay(log: &str, state: &mut BTreeMap<String, Want>) -> usize {
    let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut acked = 0;
    for line in log.lines().filter(|l| !l.starts_with('#')) {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "B" => {
                let change: Vec<String> = w[3..].iter().map(|s| s.to_string()).collect();
                // A change never answered (no answer came before the
                // kill; the client went on): either outcome is right.
                if let Some(earlier) = pending.insert(w[1].to_string(), change) {
                    unknown(state, &earlier);
                }
            }
            "A" => {
                let c = pending.remove(w[1]).expect("an answer to a change sent");
                acked += 1;
                match c[0].as_str() {
                    "put" => {
                        state.insert(
                            c[1].clone(),
                            Want::File {
                                size: c[2].parse().unwrap(),
                                digest: c[3].clone(),
                            },
                        );
                    }
                    "mkdir" => {
                        state.insert(c[1].clone(), Want::Dir);
                    }
                    "rename" => {
                        let moved = state.insert(c[1].clone(), Want::Absent);
                        state.insert(c[2].clone(), moved.unwrap_or(Want::Unknown));
                    }
                    "remove" => {
                        state.insert(c[1].clone(), Want::Absent);
                    }
                    other => panic!("unknown change {other} in {line:?}"),
                }
            }
            "F" => panic!("the server refused a change before the kill: {line:?}\n{log}"),
            other => panic!("unknown line kind {other}: {line:?}"),
        }
    }
    for c in pending.values() {
        unknown(state, c);
    }
    acked
}

/// Acknowledgement lines in the ack log so far.
fn acks(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("A "))
        .count()
}

/// The volume's change feed, read directly: `(seq, kind, ino)` of every
/// change, checked to be numbered 1, 2, 3 … without a gap.
fn feed(vol: &Path) -> Vec<(u64, String, Option<i64>)> {
    let out = ok(&["watch", s(vol), "--since", "0", "--once", "--json"]);
    let changes: Vec<(u64, String, Option<i64>)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                v["kind"].as_str().unwrap().to_string(),
                v["ino"].as_i64(),
            )
        })
        .collect();
    for (i, c) in changes.iter().enumerate() {
        assert_eq!(c.0, i as u64 + 1, "the feed has a gap or a repeat: {c:?}");
    }
    changes
}

/// Acknowledged changes of one round's log, by kind.
fn acked_kinds(log: &str) -> BTreeMap<String, usize> {
    let mut sent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in log.lines().filter(|l| !l.starts_with('#')) {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "B" => {
                sent.insert(w[1], w[3]);
            }
            "A" => {
                if let Some(kind) = sent.remove(w[1]) {
                    *out.entry(kind.to_string()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    out
}

fn digest(bytes: &[u8]) -> String {
    fsx_format::content_key(bytes)
        .strip_prefix(fsx_format::CONTENT_KEY_PREFIX)
        .unwrap()
        .to_string()
}

#[test]
fn a_sigkill_under_load_loses_no_acknowledged_change() {
    let seed: u64 = std::env::var("FSX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("replay with FSX_CRASH_SEED={seed}");
    let tmp = TempDir::new().unwrap();
    let vol = tmp.path().join("vol");
    ok(&["init", s(&vol)]);
    let token = ok(&["token", "create", s(&vol), "--scope", "write"])
        .trim()
        .to_string();
    let mut want = BTreeMap::new();
    let mut total_acked = 0;
    let mut fed: Vec<(u64, String, Option<i64>)> = Vec::new();
    let mut rng = seed | 1;
    for round in 0..3u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Where the kill falls: after this many acknowledged changes.
        let kill_after = 20 + (rng % 400) as usize;
        let mut server = Served::start(&vol, &tmp.path().join(format!("serve{round}.log")));
        let ack_log = tmp.path().join(format!("ack{round}.log"));
        let bench_log = tmp.path().join(format!("bench{round}.log"));
        let mut bench = Command::new(env!("CARGO_BIN_EXE_fsx"))
            .args(["bench", "serve", &server.url, "--ack-log", s(&ack_log)])
            .args(["--clients", "8", "--duration", "60s", "--progress", "0"])
            .args([
                "--write-ratio",
                "0.6",
                "--seed",
                &(seed ^ round).to_string(),
            ])
            .env("FSX_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&bench_log).unwrap())
            .stderr(std::fs::File::create(tmp.path().join(format!("bench{round}.err"))).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + DEADLINE;
        while acks(&ack_log) < kill_after {
            assert!(
                bench.try_wait().unwrap().is_none(),
                "the load ended before the kill (seed {seed}): {}",
                std::fs::read_to_string(&bench_log).unwrap_or_default()
            );
            assert!(
                Instant::now() < deadline,
                "{kill_after} acknowledgements did not come (seed {seed})"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        server.signal("KILL");
        let status = server.wait();
        assert!(!status.success(), "the server was killed: {status:?}");
        // The load only fails from here on; its log is complete.
        let _ = bench.kill();
        let _ = bench.wait();

        let text = std::fs::read_to_string(&ack_log).unwrap();
        let acked = replay(&text, &mut want);
        assert!(acked >= kill_after, "round {round}: {acked} acknowledged");
        total_acked += acked;
        eprintln!("round {round}: killed after {acked} acknowledged changes (seed {seed})");

        // Back up on the same volume: the log's acknowledged changes are
        // all there, checked through the server.
        let mut server = Served::start(&vol, &tmp.path().join(format!("restart{round}.log")));
        let out = Command::new(env!("CARGO_BIN_EXE_fsx"))
            .args([
                "bench",
                "serve",
                &server.url,
                "--check-ack-log",
                s(&ack_log),
            ])
            .env("FSX_TOKEN", &token)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && report.contains(" 0 mismatches"),
            "round {round} (seed {seed}): {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.signal("TERM");
        assert!(server.wait().success(), "a graceful stop after the restart");
        let fsck = fsx(&["fsck", s(&vol)]);
        assert!(
            fsck.status.success(),
            "fsck after round {round} (seed {seed}): {}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
        // The change feed went on where it stood: what it said before
        // the kill it still says, numbered alike, and it numbers the
        // round's changes after it without a gap (checked in `feed`).
        let now = feed(&vol);
        assert!(
            now.len() >= fed.len() && now[..fed.len()] == fed[..],
            "round {round} (seed {seed}): the feed changed what it said before"
        );
        // Every acknowledged change of the round is in it: a put is a
        // rename of its temporary file into place, a mkdir a make.
        let new = &now[fed.len()..];
        let count = |k: &str| new.iter().filter(|c| c.1 == k).count();
        let acked = acked_kinds(&text);
        let n = |k: &str| acked.get(k).copied().unwrap_or(0);
        assert!(
            count("rename") >= n("put") + n("rename"),
            "round {round} (seed {seed}): {acked:?}"
        );
        assert!(
            count("make") >= n("put") + n("mkdir"),
            "round {round} (seed {seed}): {acked:?}"
        );
        assert!(
            count("remove") >= n("remove"),
            "round {round} (seed {seed}): {acked:?}"
        );
        fed = now;
    }

    // The tree as the volume holds it, without HTTP, against this file's
    // own replay of every round's log.
    let out = tmp.path().join("export");
    ok(&["export", &format!("{}:/fsx-bench", s(&vol)), s(&out)]);
    let (mut files, mut dirs, mut absent) = (0, 0, 0);
    for (path, w) in &want {
        let local = out.join(path.strip_prefix("/fsx-bench/").unwrap());
        match w {
            Want::File { size, digest: d } => {
                let bytes = std::fs::read(&local).unwrap_or_else(|e| {
                    panic!("{path}: acknowledged as {size} bytes, but: {e} (seed {seed})")
                });
                assert_eq!(bytes.len() as u64, *size, "{path} (seed {seed})");
                assert_eq!(&digest(&bytes), d, "{path}: other bytes (seed {seed})");
                files += 1;
            }
            Want::Dir => {
                assert!(local.is_dir(), "{path}: acknowledged mkdir (seed {seed})");
                dirs += 1;
            }
            Want::Absent => {
                assert!(
                    !local.exists(),
                    "{path}: acknowledged as removed or renamed away (seed {seed})"
                );
                absent += 1;
            }
            Want::Unknown => {}
        }
    }
    eprintln!(
        "{total_acked} acknowledged changes: {files} files, {dirs} directories, {absent} removals checked"
    );
    assert!(files > 0, "no file was checked (seed {seed})");
}
