//! Crash test: a writer process is SIGKILLed at random points, again and
//! again, on one volume (SQLite metadata, local-directory store). After each
//! kill the volume is reopened and must hold exactly the state after the
//! last acknowledged sync — or after the one in flight, which may have
//! committed before its acknowledgement was printed. The writer packs as it
//! goes, so kills land in writes, syncs, uploads and pack commits; each
//! kill comes a seeded delay (0–24 ms) after the last acknowledgement the
//! driver waited for, so kills fall between acknowledgements too. Kills at
//! chosen points inside those steps are in `crash_failpoints.rs`.
//!
//! The test binary is its own writer: the driver re-runs this test with
//! `FSX_CRASH_CHILD` set, and the test then plays the writer.

// The child writer reports acknowledgements on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Step, Workload};
use fsx_engine::{NoProgress, OpenOptions, SystemEnv, Volume, VolumeOptions};
use fsx_meta::sqlite::SqliteMeta;
use fsx_store::local::LocalBackend;
use fsx_testkit::crash;

const TEST_NAME: &str = "kill_at_random_points_loses_no_acknowledged_write";
/// Kill points per run; `FSX_CRASH_KILLS` raises it (the extended mode).
const KILLS: usize = 100;
const SPAN: u64 = 1_500_000;

const WORKLOAD: Workload = Workload {
    span: SPAN,
    truncate_every: 13,
    max_len: 30_000,
};

fn step(i: u64) -> Step {
    WORKLOAD.step(i)
}

fn model_after(last: Option<u64>) -> Vec<u8> {
    WORKLOAD.model_after(last)
}

async fn open(dir: &Path) -> Volume {
    let meta = Arc::new(SqliteMeta::open(dir.join("meta.db"), false).unwrap());
    let store = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
    let options = VolumeOptions::default().lease_ttl_ms(600_000);
    Volume::open(meta, store, Arc::new(SystemEnv::new()), options)
        .await
        .unwrap()
}

/// The writer: applies steps from `start` on, printing `ack N` after step N
/// is durable, until it is killed.
async fn child(dir: &Path, start: u64) {
    let volume = open(dir).await;
    // The killed predecessor's lease is broken because its process is gone.
    let mut f = volume.open_file("f", OpenOptions::write()).await.unwrap();
    for i in start.. {
        WORKLOAD.apply_to(&mut f, i).await.unwrap();
        if i % 17 == 16 {
            f.checkpoint().await.unwrap()
        } else {
            f.sync().await.unwrap()
        }
        println!("ack {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_random_points_loses_no_acknowledged_write() {
    if let Ok(spec) = std::env::var("FSX_CRASH_CHILD") {
        let (dir, start) = spec.rsplit_once(':').unwrap();
        child(Path::new(dir), start.parse().unwrap()).await;
        return;
    }
    let seed = crash::seed("crash test");
    let mut rng = crash::Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    common::create_crash_volume(dir.path(), "crash", 256 * 1024).await;

    let kills = crash::kills(KILLS);
    let mut applied: Option<u64> = None;
    for kill in 0..kills {
        let start = applied.map_or(0, |a| a + 1);
        let acks_wanted = 1 + rng.below(12);
        // A seeded delay after the last awaited ack moves the kill off the
        // ack boundaries, into the middle of the next steps.
        let delay = std::time::Duration::from_millis(rng.below(25));
        let run = crash::run_child::<u64>(
            TEST_NAME,
            &[(
                "FSX_CRASH_CHILD",
                &format!("{}:{start}", dir.path().display()),
            )],
            crash::Stop::AfterAcks {
                acks: acks_wanted,
                delay,
            },
        );
        assert!(
            matches!(run.ending, crash::Ending::Killed),
            "seed {seed}: the writer died on its own before kill {kill}: {:?}\n{}",
            run.ending,
            run.output_tail()
        );
        let last_ack = run.last.or(applied);

        let volume = open(dir.path()).await;
        let f = volume.open_file("f", OpenOptions::read()).await.unwrap();
        let got = f.read_at(0, f.size() as usize).await.unwrap();
        let acked = last_ack.unwrap();
        applied = if got == model_after(Some(acked)) {
            Some(acked)
        } else if got == model_after(Some(acked + 1)) {
            Some(acked + 1)
        } else {
            let diff = |m: &[u8]| {
                let first = got.iter().zip(m).position(|(a, b)| a != b);
                format!(
                    "size {} vs {}, first difference at {first:?}",
                    got.len(),
                    m.len()
                )
            };
            panic!(
                "seed {seed}, kill {kill}: after ack {acked} the file matches neither step {acked} ({}) nor {} ({}); steps: {:?} {:?}",
                diff(&model_after(Some(acked))),
                acked + 1,
                diff(&model_after(Some(acked + 1))),
                step(acked),
                step(acked + 1),
            );
        };
        let report = volume.fsck(&NoProgress).await.unwrap();
        assert!(report.is_clean(), "seed {seed}, kill {kill}: {report:?}");
    }
    let volume = open(dir.path()).await;
    let report = common::gc_now(&volume).await;
    eprintln!(
        "after {kills} kills: {} steps applied, gc freed {} extents",
        applied.map_or(0, |a| a + 1),
        report.deleted
    );
    assert!(
        common::read_all(&volume, "f").await == model_after(applied),
        "seed {seed}: after gc"
    );
    assert!(volume.fsck(&NoProgress).await.unwrap().is_clean());
}
