//! Crash test of large writes: a writer process that appends megabytes at
//! a time is SIGKILLed again and again on one volume (SQLite metadata,
//! local-directory store, 2 MiB extents of 4 KiB pages), and loses nothing
//! a `sync` acknowledged.
//!
//! Large writes take their own path: a sync stores the extents its buffer
//! fills whole straight into the store, several uploads in flight, and its
//! metadata transaction installs them (`File::store_full_extents`); a
//! writer whose buffer passes `max_buffer_bytes` (6 MiB here) syncs on its
//! own inside `write_at`. The writer appends 1–6 MiB chunks of seeded bytes,
//! now and then rewrites an earlier region (partly past the end) or
//! shrinks the file to an unaligned size, and syncs every third step, so
//! kills land in encoding, uploads, sync transactions and packing, and in
//! syncs nobody asked for.
//!
//! After each kill the volume is reopened and checked:
//!
//! - the file is byte for byte the model after some whole step `j` from
//!   the last acknowledged step `A` up to the next sync step: a sync is one
//!   metadata transaction (nothing of an acknowledged step may be missing,
//!   nothing half-synced may show), and a writer syncs on its own only
//!   between `write_at`s, so any durable state past `A` is the state after
//!   a whole step, never part of one (this pins that `write_at` buffers the
//!   whole write before its own sync; a sync inside a write would fail here
//!   with the offset of the first differing byte);
//! - fsck is clean: extents that an interrupted sync stored but never
//!   installed are pinned records awaiting GC, not orphans or dangling
//!   references, and every installed extent is in the store intact.
//!
//! The next writer goes on from the step the file matched. At the end GC
//! runs with no grace period and the file must still read as the model,
//! with fsck clean.
//!
//! The writer prints `ack N` with the number `N` of the last step a sync
//! made durable (not a byte count: rewrites and truncations make the bytes
//! durable a function of the step, not the other way round). The test
//! binary is its own writer: the driver re-runs this test with
//! `FSX_BULK_CRASH_CHILD` set. The seed picks the workload and the kill
//! points; `FSX_CRASH_SEED` and `FSX_CRASH_KILLS` repeat or extend a run
//! (see `fsx_testkit::crash`).

// The child writer reports acknowledgements on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::sync::Arc;

use fsx_engine::{NoProgress, OpenOptions, SystemEnv, Volume, VolumeOptions};
use fsx_meta::sqlite::SqliteMeta;
use fsx_store::local::LocalBackend;
use fsx_testkit::crash;

const TEST_NAME: &str = "killed_during_large_writes_loses_no_synced_byte";
/// Kill points per run; `FSX_CRASH_KILLS` raises it.
const KILLS: usize = 20;

const MIB: u64 = 1 << 20;
const PAGE: u32 = 4096;
/// 512 pages: an append of a few MiB fills whole extents.
const EXTENT: u32 = 2 << 20;
/// Small enough that two chunks usually pass it: the writer syncs on its
/// own early between acknowledged syncs, leaving time for a kill to find
/// that sync's state durable and unacknowledged.
const MAX_BUFFER: usize = 6 << 20;
/// A file past this size is shrunk, which bounds the test's bytes.
const CAP: u64 = 16 * MIB;
/// Steps between the writer's syncs.
const SYNC_EVERY: u64 = 3;

/// One step of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write { offset: u64, len: u64 },
    Truncate(u64),
}

/// A 64-bit mix (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The writer's steps and bytes, from the run's seed: step `i` is a
/// function of the seed, `i` and the file's size before it, all of which
/// the driver knows, so it can rebuild the file after any step.
#[derive(Debug, Clone, Copy)]
struct Workload {
    seed: u64,
}

impl Workload {
    /// Step `i`'s own random number.
    fn hash(self, i: u64) -> u64 {
        mix(self.seed ^ mix(i))
    }

    fn step(self, i: u64, size: u64) -> Step {
        let h = self.hash(i);
        if size > CAP {
            // Somewhere in the first half, rarely page-aligned: the cut
            // falls inside an extent, whose cut part the sync must cover
            // with holes.
            return Step::Truncate(h % (CAP / 2));
        }
        match i % 10 {
            4 if size > 0 => Step::Write {
                // A rewrite at an unaligned offset, partly past the end
                // when it starts near it.
                offset: h % size,
                len: MIB / 2 + (h >> 20) % (2 * MIB),
            },
            8 if size > 0 => Step::Truncate(size - (h >> 20) % size.min(3 * MIB)),
            _ => {
                // Appends of 1–6 MiB, page-sized except one in three, so
                // the appends after those start inside a page.
                let mut len = MIB + (h >> 20) % (5 * MIB);
                if !h.is_multiple_of(3) {
                    len -= len % u64::from(PAGE);
                }
                Step::Write { offset: size, len }
            }
        }
    }

    /// The bytes step `i` writes at `offset`: a function of the step and
    /// of the absolute position, so a rewrite differs from what it
    /// overwrites and a misplaced page differs from the one it replaced.
    fn bytes(self, i: u64, offset: u64, len: u64) -> Vec<u8> {
        let base = self.hash(i);
        let first = offset / 8;
        let last = (offset + len).div_ceil(8);
        let mut out = Vec::with_capacity(((last - first) * 8) as usize);
        for w in first..last {
            out.extend_from_slice(&mix(base ^ w).to_le_bytes());
        }
        out.drain(..(offset % 8) as usize);
        out.truncate(len as usize);
        out
    }

    /// Applies step `i` to the model of the file.
    fn apply(self, m: &mut Vec<u8>, i: u64) {
        match self.step(i, m.len() as u64) {
            Step::Write { offset, len } => {
                let (start, end) = (offset as usize, (offset + len) as usize);
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[start..end].copy_from_slice(&self.bytes(i, offset, len));
            }
            Step::Truncate(size) => m.resize(size as usize, 0),
        }
    }
}

/// Whether the writer syncs (and acknowledges) after step `i`.
fn syncs_after(i: u64) -> bool {
    i % SYNC_EVERY == SYNC_EVERY - 1
}

async fn open(dir: &Path) -> Volume {
    let meta = Arc::new(SqliteMeta::open(dir.join("meta.db"), false).unwrap());
    let store = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
    let options = VolumeOptions::default()
        .lease_ttl_ms(600_000)
        .max_buffer_bytes(MAX_BUFFER);
    Volume::open(meta, store, Arc::new(SystemEnv::new()), options)
        .await
        .unwrap()
}

/// The writer: applies steps from `start` on, printing `ack N` once a sync
/// after step N has returned, until it is killed.
async fn child(dir: &Path, start: u64, work: Workload) {
    let volume = open(dir).await;
    // The killed predecessor's lease is broken because its process is gone.
    let mut f = volume.open_file("f", OpenOptions::write()).await.unwrap();
    for i in start.. {
        match work.step(i, f.size()) {
            Step::Write { offset, len } => f.write_at(offset, &work.bytes(i, offset, len)).await,
            Step::Truncate(size) => f.truncate(size).await,
        }
        .unwrap();
        if syncs_after(i) {
            // A checkpoint now and then packs what syncs left in the dirty
            // buffer, so kills also land in packing.
            if i % (5 * SYNC_EVERY) == SYNC_EVERY - 1 {
                f.checkpoint().await.unwrap();
            } else {
                f.sync().await.unwrap();
            }
            println!("ack {i}");
        }
    }
}

/// Where `got` first differs from `want`, for a failure message. Compares
/// page-sized slices first: a byte-by-byte scan of tens of MiB is slow in a
/// debug build.
fn diff(got: &[u8], want: &[u8]) -> String {
    let both = got.len().min(want.len());
    let first = (0..both).step_by(PAGE as usize).find_map(|at| {
        let end = (at + PAGE as usize).min(both);
        let (g, w) = (&got[at..end], &want[at..end]);
        (g != w).then(|| at + g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0))
    });
    format!(
        "size {} vs {}, first differing byte at {first:?}",
        got.len(),
        want.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_large_writes_loses_no_synced_byte() {
    if let Ok(spec) = std::env::var("FSX_BULK_CRASH_CHILD") {
        let (dir, start) = spec.rsplit_once(':').unwrap();
        let seed = std::env::var("FSX_BULK_CRASH_SEED").unwrap();
        let work = Workload {
            seed: seed.parse().unwrap(),
        };
        child(Path::new(dir), start.parse().unwrap(), work).await;
        return;
    }
    // The seed picks the workload (chunk sizes, rewrites, cuts, bytes) and
    // the kill points.
    let seed = crash::seed("bulk crash test");
    let work = Workload { seed };
    let mut rng = crash::Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    common::create_crash_volume(dir.path(), "bulk-crash", EXTENT).await;

    let kills = crash::kills(KILLS);
    // The file after steps `0..=applied`, which the last check found.
    let mut applied: Option<u64> = None;
    let mut model: Vec<u8> = Vec::new();
    // Kills after which the file held more than the last acknowledgement.
    let mut past_ack = 0;
    for kill in 0..kills {
        let start = applied.map_or(0, |a| a + 1);
        // One ack shows the writer is past its start-up; a seeded delay
        // after it moves the kill into the next steps' writes, uploads and
        // syncs, its own included (the steps up to the next ack take about
        // half a second in a debug build).
        let delay = std::time::Duration::from_millis(rng.below(600));
        let run = crash::run_child::<u64>(
            TEST_NAME,
            &[
                (
                    "FSX_BULK_CRASH_CHILD",
                    &format!("{}:{start}", dir.path().display()),
                ),
                ("FSX_BULK_CRASH_SEED", &seed.to_string()),
            ],
            crash::Stop::AfterAcks { acks: 1, delay },
        );
        assert!(
            matches!(run.ending, crash::Ending::Killed),
            "seed {seed}: the writer died on its own before kill {kill}: {:?}\n{}",
            run.ending,
            run.output_tail()
        );
        let acked = run.last.unwrap();
        for i in start..=acked {
            work.apply(&mut model, i);
        }
        let volume = open(dir.path()).await;
        let f = volume.open_file("f", OpenOptions::read()).await.unwrap();
        let got = f.read_at(0, f.size() as usize).await.unwrap();
        // Candidates: the acknowledged state, then each step up to the next
        // sync the writer may have been in (an ack printed after the kill
        // would have been read above).
        let mut candidate = model.clone();
        let mut matched = (got == candidate).then_some(acked);
        let mut tried = vec![format!("step {acked}: {}", diff(&got, &candidate))];
        let mut j = acked;
        loop {
            j += 1;
            let s = work.step(j, candidate.len() as u64);
            work.apply(&mut candidate, j);
            if got == candidate {
                matched = Some(j);
                model.clone_from(&candidate);
            }
            tried.push(format!("step {j} ({s:?}): {}", diff(&got, &candidate)));
            if syncs_after(j) {
                break;
            }
        }
        let Some(matched) = matched else {
            panic!(
                "seed {seed}, kill {kill}: after ack {acked} the file is no whole-step state:\n{}",
                tried.join("\n")
            );
        };
        past_ack += usize::from(matched > acked);
        applied = Some(matched);
        let report = volume.fsck(&NoProgress).await.unwrap();
        assert!(report.is_clean(), "seed {seed}, kill {kill}: {report:?}");
    }
    let volume = open(dir.path()).await;
    let report = common::gc_now(&volume).await;
    eprintln!(
        "after {kills} kills: {} steps applied, file {:.1} MiB, {past_ack} kills left a step past the last ack durable, gc freed {} extents",
        applied.map_or(0, |a| a + 1),
        model.len() as f64 / MIB as f64,
        report.deleted
    );
    let got = common::read_all(&volume, "f").await;
    assert!(
        got == model,
        "seed {seed}: after gc: {}",
        diff(&got, &model)
    );
    assert!(volume.fsck(&NoProgress).await.unwrap().is_clean());
}
