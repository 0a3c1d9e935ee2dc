//! Crash test: a writer process commits numbered transactions through the
//! VFS and is SIGKILLed at random points, in WAL mode (what users run) and
//! in the DELETE journal mode. After each kill the database is reopened:
//! `integrity_check` must say ok, every transaction the writer acknowledged
//! must be there with its exact bytes, and nothing past the one in flight
//! (acknowledged + 1) may be.
//!
//! Payloads are pseudo-random bytes, never zeros: fsx reads a hole as
//! zeros, so a zero payload could not tell a lost page from a written one.
//!
//! The test binary is its own writer: the driver re-runs this test with
//! `FSX_SQLITE_CRASH_CHILD` set. `FSX_CRASH_KILLS` sets the kills in WAL
//! mode (default 100; DELETE mode gets half as many);
//! `FSX_CRASH_SEED` replays a run.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;

use common::{check, open};
use fsx_testkit::crash;

const TEST_NAME: &str = "kill_at_random_points_loses_no_committed_transaction";
const CHILD_ENV: &str = "FSX_SQLITE_CRASH_CHILD";
const WAL_KILLS: usize = 100;

/// Bytes of payload in transaction `n`: some span several pages.
fn payload_len(n: i64) -> i64 {
    (n * 7_919) % 12_000
}

/// The payload of transaction `n`: `payload_len(n)` bytes of a stream
/// seeded by `n`, none of them zero.
fn payload(n: i64) -> Vec<u8> {
    let mut x = (n.cast_unsigned() ^ 0x9E37_79B9_7F4A_7C15) | 1;
    (0..payload_len(n))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 1..=255: never a zero byte.
            u8::try_from(x % 255).unwrap() + 1
        })
        .collect()
}

/// The writer: one INSERT per transaction from `start` on, printing
/// `ack N` once COMMIT returned, until it is killed.
fn child(spec: &str) {
    let mut parts = spec.rsplitn(3, ':');
    let start: i64 = parts.next().unwrap().parse().unwrap();
    let mode = parts.next().unwrap();
    let vol = Path::new(parts.next().unwrap());
    let c = open(vol, &format!("{mode}.db")).unwrap();
    // The killed predecessor's leases are broken: its process is gone.
    c.execute_batch(&format!(
        "PRAGMA journal_mode = {mode}; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 40;
         CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, v BLOB NOT NULL);"
    ))
    .unwrap();
    let mut out = std::io::stdout().lock();
    for n in start.. {
        c.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            rusqlite::params![n, payload(n)],
        )
        .unwrap();
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
    }
}

/// Reopens the database after a kill; returns the highest `n` present.
fn verify(vol: &Path, mode: &str, seed: u64, kill: usize, last_ack: Option<i64>) -> Option<i64> {
    let c = open(vol, &format!("{mode}.db")).unwrap();
    check(&c, &format!("{mode} kill {kill} (seed {seed})")).unwrap();
    let rows: Vec<(i64, Vec<u8>)> = match c.prepare("SELECT n, v FROM t ORDER BY n") {
        Ok(mut st) => st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap(),
        // The table does not exist yet: the writer died before its first
        // commit.
        Err(_) => Vec::new(),
    };
    for (n, v) in &rows {
        assert!(
            *v == payload(*n),
            "seed {seed}, {mode} kill {kill}: transaction {n} has wrong bytes"
        );
    }
    let count = i64::try_from(rows.len()).unwrap();
    let max = rows.last().map(|(n, _)| *n);
    let present = max.map_or(0, |m| m + 1);
    assert_eq!(
        count, present,
        "seed {seed}, {mode} kill {kill}: transactions missing below {max:?}"
    );
    let acked = last_ack.map_or(0, |a| a + 1);
    assert!(
        present == acked || present == acked + 1,
        "seed {seed}, {mode} kill {kill}: acknowledged up to {last_ack:?}, found up to {max:?}"
    );
    max
}

#[test]
fn kill_at_random_points_loses_no_committed_transaction() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let seed = crash::seed("sqlite crash test");
    let wal_kills = crash::kills(WAL_KILLS);
    let mut rng = crash::Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let mut applied = [None::<i64>, None];
    let modes = ["delete", "wal"];
    // WAL, WAL, DELETE, …: both modes see kills throughout the run.
    let total = wal_kills + wal_kills / 2;
    for kill in 0..total {
        let m = usize::from(kill % 3 != 2);
        let mode = modes[m];
        let start = applied[m].map_or(0, |a| a + 1);
        let acks_wanted = 1 + rng.below(12);
        let (acks, last) = crash::kill_after_acks::<i64>(
            TEST_NAME,
            CHILD_ENV,
            &format!("{}:{mode}:{start}", vol.display()),
            acks_wanted,
        );
        assert_eq!(
            acks, acks_wanted,
            "seed {seed}: the writer died on its own before kill {kill}"
        );
        let last_ack = last.or(applied[m]);
        applied[m] = verify(&vol, mode, seed, kill, last_ack);
    }
    eprintln!(
        "after {total} kills ({wal_kills} in WAL mode): {:?} transactions survive in (delete, wal)",
        applied.map(|a| a.map_or(0, |a| a + 1))
    );
}
