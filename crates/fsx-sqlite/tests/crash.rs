//! Crash test: a writer process commits numbered transactions through the
//! VFS and is SIGKILLed at random points, in the DELETE journal mode and in
//! WAL mode. After each kill the database is reopened: `integrity_check`
//! must say ok, every transaction the writer acknowledged must be there, and
//! nothing past the one in flight (acknowledged + 1) may be.
//!
//! The test binary is its own writer: the driver re-runs this test with
//! `FSX_SQLITE_CRASH_CHILD` set. `FSX_CRASH_KILLS` sets the kills per mode
//! (default 50, so 100 per run); `FSX_CRASH_SEED` replays a run.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;

use common::{check, open};
use fsx_testkit::crash;

const TEST_NAME: &str = "kill_at_random_points_loses_no_committed_transaction";
const CHILD_ENV: &str = "FSX_SQLITE_CRASH_CHILD";
const KILLS_PER_MODE: usize = 50;

/// Bytes of payload in transaction `n`: some span several pages.
fn payload_len(n: i64) -> i64 {
    (n * 7_919) % 12_000
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
            "INSERT INTO t VALUES (?1, zeroblob(?2))",
            [n, payload_len(n)],
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
    let (count, max, bad): (i64, Option<i64>, i64) = c
        .query_row(
            "SELECT count(*), max(n), sum(length(v) != (n * 7919) % 12000) FROM t",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                ))
            },
        )
        .unwrap_or((0, None, 0));
    assert_eq!(
        bad, 0,
        "seed {seed}, {mode} kill {kill}: rows with wrong payloads"
    );
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
    let kills = crash::kills(KILLS_PER_MODE);
    let mut rng = crash::Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    let mut applied = [None::<i64>, None];
    let modes = ["delete", "wal"];
    for kill in 0..kills * 2 {
        // Alternate modes so both see kills throughout the run.
        let m = kill % 2;
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
        "after {} kills: {:?} transactions survive in (delete, wal)",
        kills * 2,
        applied.map(|a| a.map_or(0, |a| a + 1))
    );
}
