//! Crash and error tests through the engine's named failpoints
//! (`fsx_engine::failpoint`), on both metadata engines.
//!
//! **Crashes.** A writer process runs a workload that touches every point
//! — writes, syncs, checkpoints (pin, upload, pack commit), commits, GC
//! with no grace (packing what commits froze; claim, delete, forget) and
//! replication of a hot tier to cold —
//! and printing `ack N` after step N is durable. Each run the driver picks
//! a point (every point in turn) and a hit, from the seed, and the child
//! aborts itself there (`FSX_FAILPOINTS=POINT=HIT:crash`); every fifth run
//! instead is SIGKILLed a seeded delay after a seeded number of
//! acknowledgements, so kills also land between the points. A normal run
//! makes 120 crashes at failpoints (80 on SQLite, 40 on PostgreSQL) and
//! 30 kills. After every
//! death the volume is reopened: the file holds exactly the state of the
//! last acknowledged step (or of the one in flight, which may have become
//! durable before it was acknowledged), every page reads, and fsck is
//! clean. At the end a GC and a replication pass finish what the dead
//! writers left, and the volume is still right.
//!
//! **Errors.** In one process, every hit of every point fails with a seeded
//! probability: each failed operation returns an `Unavailable` error naming
//! the point (no panic), the process carries on, a read after every sync
//! that succeeded shows every write so far, and once the faults stop the
//! volume is complete and fsck-clean. Every point must have fired.
//!
//! Reproduce with `FSX_CRASH_SEED` (printed); `FSX_FAILPOINT_RUNS` sets the
//! number of crash runs per engine.

// The child reports acknowledgements on stdout; the driver its counts.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Workload;
use fsx_engine::failpoint::{FAILPOINTS_VAR, from_process_env};
use fsx_engine::tier::{COLD, TierPolicy, TierSet};
use fsx_engine::{
    Environment, ErrorKind, FailAction, Failpoint, FaultPlan, GcOptions, ManualEnv, NoProgress,
    OpenOptions, SeededFaults, SystemEnv, Volume, VolumeOptions,
};
use fsx_meta::VolumeConfig;
use fsx_meta::sqlite::SqliteMeta;
use fsx_store::local::LocalBackend;
use fsx_testkit::crash::{self, Ending, Stop};

/// `START|DIR|META`: the child's first step, the volume directory, and
/// `sqlite` or a PostgreSQL URL.
const CHILD_VAR: &str = "FSX_FAILPOINT_CHILD";
const RUNS_VAR: &str = "FSX_FAILPOINT_RUNS";
/// Crash runs per engine in a normal run.
const SQLITE_RUNS: usize = 100;
const POSTGRES_RUNS: usize = 50;
/// Steps a child takes at most: enough for every point to be hit a few
/// times, so the chosen hit is reached.
const CHILD_STEPS: u64 = 40;
const EXTENT: u32 = 256 * 1024;
const SPAN: u64 = 1_200_000;

const WORKLOAD: Workload = Workload {
    span: SPAN,
    truncate_every: 11,
    max_len: 40_000,
};

fn model_after(last: Option<u64>) -> Vec<u8> {
    WORKLOAD.model_after(last)
}

/// Which metadata engine, as the child is told: `sqlite` (in the volume
/// directory) or a PostgreSQL URL.
async fn meta(dir: &Path, spec: &str, create: bool) -> fsx_engine::MetaArc {
    if spec == "sqlite" {
        Arc::new(SqliteMeta::open(dir.join("meta.db"), create).unwrap())
    } else {
        Arc::new(fsx_meta::postgres::PgMeta::connect(spec).await.unwrap())
    }
}

async fn create(dir: &Path, spec: &str) {
    let store = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
    let config = VolumeConfig::new("failpoints", EXTENT, "data", 1);
    let v = Volume::create(
        meta(dir, spec, true).await,
        store,
        Arc::new(SystemEnv::new()),
        config,
        VolumeOptions::default(),
    )
    .await
    .unwrap();
    v.open_file("f", OpenOptions::create(4096))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
}

/// The volume with a hot tier (in the metadata) in front of the local
/// store, so new extents queue copies for replication.
async fn open(dir: &Path, spec: &str, env: Arc<dyn Environment>) -> Volume {
    let meta = meta(dir, spec, false).await;
    let hot = meta.hot_tier(2_000_000).unwrap();
    let store = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
    let options = VolumeOptions::default().lease_ttl_ms(600_000).tiers(Some(
        TierSet::new()
            .hot(hot)
            .policy(TierPolicy::default().retry(1, 10)),
    ));
    Volume::open(meta, store, env, options).await.unwrap()
}

fn gc_now() -> GcOptions {
    GcOptions::default().grace_ms(0)
}

/// The writer: steps from `start` on, `ack N` once step N is durable,
/// replicating and collecting between steps; `done` after
/// [`CHILD_STEPS`] steps if no failpoint stopped it first.
async fn child(spec: &str) {
    // On stdout too, which the driver reads, so a failure shows its cause.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        println!("child panicked: {info}");
        hook(info);
    }));
    let mut parts = spec.splitn(3, '|');
    let (Some(start), Some(dir), Some(meta_spec)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD_VAR} {spec:?}");
    };
    let start: u64 = start.parse().unwrap();
    let env = from_process_env(Arc::new(SystemEnv::new())).unwrap();
    let v = open(Path::new(dir), meta_spec, env).await;
    // The dead predecessor's lease is broken because its process is gone.
    let mut f = v.open_file("f", OpenOptions::write()).await.unwrap();
    for i in start..start + CHILD_STEPS {
        WORKLOAD.apply_to(&mut f, i).await.unwrap();
        f.sync().await.unwrap();
        println!("ack {i}");
        if i % 5 == 4
            && let Err(e) = f.pack_dirty().await
        {
            assert!(awaits_gc(&e), "{e}");
        }
        if i % 3 == 2 {
            v.tiers().unwrap().replicate_all().await.unwrap();
        }
        // A commit freezes dirty pages into its layer, which GC then packs
        // (through the same pin, upload and pack-commit points).
        if i % 13 == 12 {
            v.commit(&format!("step {i}")).await.unwrap();
        }
        if i % 4 == 3 {
            v.gc(&gc_now(), &NoProgress).await.unwrap();
        }
    }
    println!("done");
}

/// Whether `e` is the packer meeting an extent of the same content that a
/// GC has claimed but not yet deleted (a dead GC leaves such claims). The
/// pack cannot reuse it — the GC may be deleting it right now — so it
/// fails and the pages stay dirty, durable, until a GC run has finished the
/// deletion and a later pack succeeds.
fn awaits_gc(e: &fsx_engine::Error) -> bool {
    e.kind() == ErrorKind::Conflict && e.to_string().contains("garbage-collected")
}

/// How often a run's chosen point is reached before it fires: small, so
/// every point is reached within [`CHILD_STEPS`].
fn max_hit(point: Failpoint) -> u64 {
    match point {
        Failpoint::SyncBefore | Failpoint::SyncAfter => 8,
        _ => 3,
    }
}

async fn check(dir: &Path, spec: &str, seed: u64, run: usize, acked: Option<u64>) -> Option<u64> {
    let v = open(dir, spec, Arc::new(SystemEnv::new())).await;
    let f = v.open_file("f", OpenOptions::read()).await.unwrap();
    let got = f.read_at(0, f.size() as usize).await.unwrap_or_else(|e| {
        panic!("seed {seed}, run {run}: the file does not read after the crash: {e}")
    });
    let next = acked.map_or(0, |a| a + 1);
    let applied = if got == model_after(acked) {
        acked
    } else if got == model_after(Some(next)) {
        Some(next)
    } else {
        let matches = (0..next + CHILD_STEPS).find(|&k| got == model_after(Some(k)));
        let want = model_after(acked);
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "seed {seed}, run {run}: after ack {acked:?} the file ({} bytes) matches neither that step ({} bytes, first difference at {first:?}) nor step {next} (it is step {matches:?})",
            got.len(),
            want.len()
        );
    };
    let report = v.fsck(&NoProgress).await.unwrap();
    assert!(report.is_clean(), "seed {seed}, run {run}: {report:?}");
    applied
}

async fn crash_runs(test_name: &str, spec: &str, dir: &Path, default_runs: usize) {
    let seed = crash::seed(test_name);
    let mut rng = crash::Rng(seed);
    create(dir, spec).await;
    let runs = std::env::var(RUNS_VAR)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default_runs);
    let mut crashed: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut kills, mut finished) = (0, 0);
    let mut applied: Option<u64> = None;
    let started = std::time::Instant::now();
    for run in 0..runs {
        let start = applied.map_or(0, |a| a + 1);
        let child_spec = format!("{start}|{}|{spec}", dir.display());
        // Every fifth run a SIGKILL, the others a crash at the next point
        // in turn: a fixed share, so a run's crash count does not depend
        // on the seed.
        let (plan, stop) = if run % 5 == 4 {
            let acks = 1 + rng.below(6);
            let delay = Duration::from_millis(rng.below(40));
            (FaultPlan::none(), Stop::AfterAcks { acks, delay })
        } else {
            let point = Failpoint::ALL[(run - run / 5) % Failpoint::ALL.len()];
            let hit = 1 + rng.below(max_hit(point));
            (
                FaultPlan::none().at(point, hit, FailAction::Crash),
                Stop::Never,
            )
        };
        let plan_text = plan.to_string();
        let r = crash::run_child::<u64>(
            test_name,
            &[(CHILD_VAR, &child_spec), (FAILPOINTS_VAR, &plan_text)],
            stop,
        );
        if r.aborted() && !plan_text.is_empty() {
            let point = plan_text.split('=').next().unwrap_or_default();
            *crashed
                .entry(Failpoint::from_name(point).unwrap().name())
                .or_default() += 1;
        } else if matches!(r.ending, Ending::Killed) {
            kills += 1;
        } else if r.done {
            finished += 1;
        } else {
            panic!(
                "seed {seed}, run {run} (plan {plan_text:?}, {stop:?}): the child died of something else ({:?}):\n{}",
                r.ending,
                r.output_tail()
            );
        }
        eprintln!(
            "run {run}: plan {plan_text:?} {stop:?}: {} acks, last {:?}, {:?}, done {}",
            r.acks, r.last, r.ending, r.done
        );
        applied = check(dir, spec, seed, run, r.last.or(applied)).await;
    }
    let total: u64 = crashed.values().sum();
    eprintln!(
        "{test_name}: {runs} runs in {:.1?}: {total} crashes at failpoints {crashed:?}, {kills} kills, {finished} ran to the end; {} steps applied",
        started.elapsed(),
        applied.map_or(0, |a| a + 1)
    );
    if runs >= 4 * Failpoint::ALL.len() {
        for p in Failpoint::ALL {
            assert!(
                crashed.get(p.name()).copied().unwrap_or(0) > 0,
                "seed {seed}: no run crashed at {p}: {crashed:?}"
            );
        }
    }

    // What the dead writers left — unreferenced uploads, claimed records,
    // queued copies — is finished by one more GC and replication pass.
    let v = open(dir, spec, Arc::new(SystemEnv::new())).await;
    v.gc(&gc_now(), &NoProgress).await.unwrap();
    v.tiers().unwrap().replicate_all().await.unwrap();
    let f = v.open_file("f", OpenOptions::read()).await.unwrap();
    assert!(
        f.read_at(0, f.size() as usize).await.unwrap() == model_after(applied),
        "seed {seed}: after the final gc"
    );
    let report = v.fsck(&NoProgress).await.unwrap();
    assert!(report.is_clean(), "seed {seed}: {report:?}");
    assert_eq!(report.deleting, 0, "seed {seed}: {report:?}");
    assert_eq!(queued(&v).await, 0, "seed {seed}: copies still queued");
}

async fn queued(v: &Volume) -> u64 {
    v.meta()
        .tier_totals()
        .await
        .unwrap()
        .iter()
        .find(|t| t.tier == COLD)
        .map_or(0, |t| t.queued)
}

/// The error runs: every point fails now and then; nothing panics, reads
/// after successful syncs are right, and the volume ends complete.
/// Returns what the run did — errors and hits per point, the file's final
/// bytes — so a second run of the same seed can be compared with it.
async fn error_runs(label: &str, spec: &str, dir: &Path, seed: u64) -> (Vec<(u64, u64)>, Vec<u8>) {
    create(dir, spec).await;
    let clock = Arc::new(ManualEnv::new(1_000_000));
    // The second hit of every point fails for sure (so every point is
    // covered whatever the seed), the rest at random.
    let plan = Failpoint::ALL
        .iter()
        .fold(FaultPlan::none().random_errors(seed, 5), |plan, &p| {
            plan.at(p, 2, FailAction::Error)
        });
    let faults = Arc::new(SeededFaults::new(clock.clone(), plan));
    let v = open(dir, spec, faults.clone()).await;
    let mut f = v.open_file("f", OpenOptions::write()).await.unwrap();
    let mut model = Vec::new();
    let injected = |e: &fsx_engine::Error| {
        if awaits_gc(e) {
            return;
        }
        assert_eq!(e.kind(), ErrorKind::Unavailable, "seed {seed}: {e}");
        assert!(e.to_string().contains("injected fault"), "seed {seed}: {e}");
    };
    let mut synced = 0;
    for i in 0..150u64 {
        WORKLOAD.apply_to(&mut f, i).await.unwrap();
        WORKLOAD.apply(&mut model, i);
        clock.advance(5);
        let r = if i % 5 == 4 {
            f.checkpoint().await
        } else {
            f.sync().await
        };
        match r {
            Ok(()) => {
                synced += 1;
                let reader = v.open_file("f", OpenOptions::read()).await.unwrap();
                let got = reader.read_at(0, reader.size() as usize).await.unwrap();
                assert!(
                    got == model,
                    "seed {seed}: step {i} reads wrong after a sync"
                );
            }
            Err(e) => injected(&e),
        }
        if i % 3 == 2
            && let Err(e) = v.tiers().unwrap().replicate_all().await
        {
            injected(&e);
        }
        if i % 4 == 3
            && let Err(e) = v.gc(&gc_now(), &NoProgress).await
        {
            injected(&e);
        }
    }
    faults.arm(false);
    let fired: BTreeMap<&str, (u64, u64)> = Failpoint::ALL
        .iter()
        .map(|&p| (p.name(), (faults.fired_at(p), faults.hits(p))))
        .collect();
    eprintln!(
        "failpoint errors ({label}): {} injected, (errors, hits) by point {fired:?}, {synced} of 150 syncs succeeded",
        faults.fired()
    );
    for (point, (n, _)) in &fired {
        assert!(
            *n > 0,
            "seed {seed}: no error was injected at {point}: {fired:?}"
        );
    }

    // Faults off: everything works and finishes what the errors left. GC
    // first: a pack of content that a failed GC claimed waits for it. The
    // clock moves on only after the close: a day without renewal would
    // let GC take the writer's lease to pack its pages.
    v.gc(&gc_now(), &NoProgress).await.unwrap();
    f.close().await.unwrap();
    clock.advance(86_400_000);
    v.gc(&gc_now(), &NoProgress).await.unwrap();
    v.tiers().unwrap().replicate_all().await.unwrap();
    assert_eq!(queued(&v).await, 0, "seed {seed}");
    let report = v.fsck(&NoProgress).await.unwrap();
    assert!(report.is_clean(), "seed {seed}: {report:?}");
    assert_eq!(report.deleting, 0, "seed {seed}: {report:?}");
    drop(v);
    let v = open(dir, spec, clock).await;
    let f = v.open_file("f", OpenOptions::read()).await.unwrap();
    assert!(
        f.read_at(0, f.size() as usize).await.unwrap() == model,
        "seed {seed}: after reopening"
    );
    (fired.into_values().collect(), model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoint_crashes_sqlite() {
    if let Ok(spec) = std::env::var(CHILD_VAR) {
        return child(&spec).await;
    }
    let dir = tempfile::tempdir().unwrap();
    crash_runs(
        "failpoint_crashes_sqlite",
        "sqlite",
        dir.path(),
        SQLITE_RUNS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoint_crashes_postgres() {
    if let Ok(spec) = std::env::var(CHILD_VAR) {
        return child(&spec).await;
    }
    let server = fsx_testkit::postgres::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    crash_runs(
        "failpoint_crashes_postgres",
        &server.fresh_url(),
        dir.path(),
        POSTGRES_RUNS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoint_errors_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let seed = crash::seed("failpoint errors");
    error_runs("sqlite", "sqlite", dir.path(), seed).await;
}

/// One seed, one run: the same seed injects the same errors at the same
/// hits and ends in the same bytes, so a failure's printed seed replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoint_errors_replay_by_seed() {
    let seed = crash::seed("failpoint replay");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = error_runs("sqlite", "sqlite", a.path(), seed).await;
    let second = error_runs("sqlite", "sqlite", b.path(), seed).await;
    assert!(
        first == second,
        "seed {seed}: two runs differ: {:?} vs {:?}",
        first.0,
        second.0
    );
    let c = tempfile::tempdir().unwrap();
    let other = error_runs("sqlite", "sqlite", c.path(), seed ^ 0x5555).await;
    assert_ne!(
        first.0, other.0,
        "seed {seed}: another seed injected the same errors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failpoint_errors_postgres() {
    let server = fsx_testkit::postgres::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let seed = crash::seed("failpoint errors");
    error_runs("postgres", &server.fresh_url(), dir.path(), seed).await;
}
