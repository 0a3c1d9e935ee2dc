//! The corruption acceptance test of issue 11: over many seeds, build a
//! volume whose data sits in every place fsx keeps it — extents in the
//! cold local store, in the disk cache and in the hot SQL tier, and synced
//! pages still in the dirty buffer — flip one random bit in one random
//! place that carries data, and require that
//!
//! - every read (whole files and single pages, from a fresh process's view)
//!   returns the right bytes or a `Corrupt` error, never wrong bytes; and
//! - `fsck` on an untouched copy of the damaged volume reports the flip
//!   (a damaged dirty page, a bad copy found by its tier scrub, or a bad
//!   copy its verification reads met and skipped).
//!
//! Places flipped: a byte of an extent object in the cold store or in the
//! disk cache (the whole blob is covered by its content key), a byte of a
//! hot-tier row (part of an extent blob), a byte of a dirty page's data, a
//! bit of a dirty page's checksum. Places not flipped, and why: free space
//! and B-tree structure of `meta.db` (SQLite's own business: a flip there is
//! either harmless or an SQLite error, which carries no data), the per-page
//! digests of `fsx_extent_digests` (checks, not data: a flip makes a range
//! read fall back or fail, never serve wrong bytes), and a dirty page's key
//! columns: a flip of its page number that moves the row outside the file
//! is found by `fsck` (the checksum covers the page number) but not by
//! reads, which no longer look there — see `fsx_meta::checksum`.
//!
//! `FSX_CORRUPT_SEEDS` sets the number of seeds (default 50);
//! `FSX_CORRUPT_SEED` runs one seed, as printed by a failure.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::pattern;
use fsx_engine::tier::{TierPolicy, TierSet};
use fsx_engine::{ErrorKind, ManualEnv, NoProgress, OpenOptions, Volume, VolumeOptions};
use fsx_meta::sqlite::SqliteMeta;
use fsx_meta::{MetaEngine, VolumeConfig};
use fsx_store::ExtentBackend;
use fsx_store::cache::DiskCache;
use fsx_store::local::LocalBackend;

const EXTENT: u32 = 256 * 1024;
const PS: usize = 4096;
/// File `a`: two full extents, packed.
const A_BYTES: usize = 2 * EXTENT as usize;
/// File `c`: one full extent, in the hot tier and cold.
const C_BYTES: usize = EXTENT as usize;
/// File `b`: pages synced but never packed (its writer "died").
const B_PAGES: usize = 6;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn expected(seed: u64) -> [(&'static str, Vec<u8>); 3] {
    [
        ("a", pattern(seed, A_BYTES)),
        ("b", pattern(seed + 1, B_PAGES * PS)),
        ("c", pattern(seed + 2, C_BYTES)),
    ]
}

async fn put(v: &Volume, name: &str, data: &[u8]) {
    let mut f = v
        .open_file(name, OpenOptions::create(PS as u32))
        .await
        .unwrap();
    f.write_at(0, data).await.unwrap();
    f.close().await.unwrap();
}

async fn open(dir: &Path, env: Arc<ManualEnv>) -> Volume {
    open_with(dir, env, TierPolicy::default()).await
}

async fn open_with(dir: &Path, env: Arc<ManualEnv>, policy: TierPolicy) -> Volume {
    let meta = Arc::new(SqliteMeta::open(dir.join("meta.db"), false).unwrap());
    let cold: Arc<dyn ExtentBackend> = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
    let cache: Arc<dyn ExtentBackend> =
        Arc::new(DiskCache::open(dir.join("cache"), 64 << 20).unwrap());
    let hot = meta.hot_tier(2_000_000).unwrap();
    let set = TierSet::new().cache(Some(cache)).hot(hot).policy(policy);
    let options = VolumeOptions::default()
        .cache_bytes(0)
        .lease_ttl_ms(600_000)
        .tiers(Some(set));
    Volume::open(meta, cold, env, options).await.unwrap()
}

/// Builds the volume of `seed` in `dir`: `a` in cold and the disk cache,
/// `c` in the hot tier and cold, `b` in the dirty buffer.
async fn build(dir: &Path, seed: u64) {
    let env = Arc::new(ManualEnv::new(1_000_000));
    {
        let meta = Arc::new(SqliteMeta::open(dir.join("meta.db"), true).unwrap());
        let cold: Arc<dyn ExtentBackend> = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
        let config = VolumeConfig::new("corrupt", EXTENT, "data", 1);
        Volume::create(meta, cold, env.clone(), config, VolumeOptions::default())
            .await
            .unwrap();
    }
    let [(_, a), (_, b), (_, c)] = expected(seed);
    {
        // `a` lands in hot, is replicated to cold and evicted from hot
        // (a hot capacity of one byte); a read from cold fills the cache.
        let v = open_with(
            dir,
            env.clone(),
            TierPolicy::default().hot_capacity_bytes(Some(1)),
        )
        .await;
        put(&v, "a", &a).await;
        let t = v.tiers().unwrap();
        t.replicate_all().await.unwrap();
        assert_eq!(t.enforce_capacity().await.unwrap(), 2);
        let f = v.open_file("a", OpenOptions::read()).await.unwrap();
        assert_eq!(f.read_at(0, A_BYTES).await.unwrap(), a);
        v.flush_counters().await.unwrap();
    }
    let v = open(dir, env).await;
    put(&v, "c", &c).await;
    v.tiers().unwrap().replicate_all().await.unwrap();
    let mut f = v
        .open_file("b", OpenOptions::create(PS as u32))
        .await
        .unwrap();
    f.write_at(0, &b).await.unwrap();
    f.sync().await.unwrap();
    // Dropped without closing: the pages stay unpacked.
    drop(f);
    v.flush_counters().await.unwrap();
}

/// Extent objects (EXT1 blobs) under `root`.
fn blobs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                // Cold objects are EXT1 blobs; cache files wrap them.
                if bytes.starts_with(b"EXT1") || bytes.starts_with(b"FSXCACH1") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

fn flip_bit(bytes: &mut [u8], rng: &mut Rng) {
    let at = rng.below(bytes.len());
    bytes[at] ^= 1 << rng.below(8);
}

/// Flips one bit somewhere that carries data; returns where, for messages.
fn flip(dir: &Path, rng: &mut Rng) -> String {
    let db = || rusqlite::Connection::open(dir.join("meta.db")).unwrap();
    match rng.below(5) {
        t @ (0 | 1) => {
            let root = dir.join(if t == 0 { "data" } else { "cache" });
            let files = blobs(&root);
            assert!(!files.is_empty(), "no extent objects in {}", root.display());
            let p = &files[rng.below(files.len())];
            let mut bytes = std::fs::read(p).unwrap();
            flip_bit(&mut bytes, rng);
            std::fs::write(p, bytes).unwrap();
            format!("object {}", p.display())
        }
        2 => {
            let c = db();
            let rows: Vec<(String, i64, Vec<u8>)> = c
                .prepare("SELECT key, part, data FROM fsx_hot_extents ORDER BY key, part")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(!rows.is_empty(), "the hot tier is empty");
            let (key, part, mut data) = rows[rng.below(rows.len())].clone();
            flip_bit(&mut data, rng);
            c.execute(
                "UPDATE fsx_hot_extents SET data = ?3 WHERE key = ?1 AND part = ?2",
                rusqlite::params![key, part, data],
            )
            .unwrap();
            format!("hot row {key} part {part}")
        }
        t => {
            let c = db();
            let rows: Vec<(i64, i64, i64, Vec<u8>, i64)> = c
                .prepare(
                    "SELECT layer, file_id, page_no, data, crc FROM fsx_dirty_pages
                     WHERE data IS NOT NULL ORDER BY layer, file_id, page_no",
                )
                .unwrap()
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(rows.len(), B_PAGES, "b's pages are in the dirty buffer");
            let (layer, file, page, mut data, crc) = rows[rng.below(rows.len())].clone();
            let crc = if t == 3 {
                flip_bit(&mut data, rng);
                crc
            } else {
                crc ^ (1 << rng.below(64))
            };
            c.execute(
                "UPDATE fsx_dirty_pages SET data = ?4, crc = ?5
                 WHERE layer = ?1 AND file_id = ?2 AND page_no = ?3",
                rusqlite::params![layer, file, page, data, crc],
            )
            .unwrap();
            format!(
                "dirty page {page} {}",
                if t == 3 { "data" } else { "checksum" }
            )
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `Ok(bytes)` must be `want`; an error must be `Corrupt`.
fn right_or_corrupt(
    got: fsx_engine::Result<Vec<u8>>,
    want: &[u8],
    what: &str,
) -> Result<(), String> {
    match got {
        Ok(b) if b == want => Ok(()),
        Ok(_) => Err(format!("{what}: WRONG BYTES returned")),
        Err(e) if e.kind() == ErrorKind::Corrupt => Ok(()),
        Err(e) => Err(format!("{what}: an error other than Corrupt: {e}")),
    }
}

async fn run_seed(seed: u64) -> Result<(), String> {
    let root = tempfile::tempdir().unwrap();
    let (damaged, copy) = (root.path().join("v"), root.path().join("copy"));
    std::fs::create_dir_all(&damaged).unwrap();
    build(&damaged, seed).await;
    let mut rng = Rng::new(seed);
    let place = flip(&damaged, &mut rng);
    copy_dir(&damaged, &copy);
    let env = Arc::new(ManualEnv::new(2_000_000));
    let v = open(&damaged, env.clone()).await;
    for (name, want) in &expected(seed) {
        let f = v.open_file(name, OpenOptions::read()).await.unwrap();
        right_or_corrupt(
            f.read_at(0, want.len()).await,
            want,
            &format!("{place}: {name}"),
        )?;
        // A few single pages (each read fetches and verifies its whole
        // extent: all of them would make a seed slow).
        for _ in 0..4 {
            let p = rng.below(want.len() / PS);
            let range = &want[p * PS..(p + 1) * PS];
            right_or_corrupt(
                f.read_at((p * PS) as u64, PS).await,
                range,
                &format!("{place}: {name} page {p}"),
            )?;
        }
    }
    drop(v);

    let v = open(&copy, env).await;
    let report = v.fsck(&NoProgress).await.unwrap();
    if report.is_clean() {
        return Err(format!("{place}: fsck did not report the flip: {report:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_bit_is_refused_or_harmless_and_reported_by_fsck() {
    let seeds: Vec<u64> = match std::env::var("FSX_CORRUPT_SEED") {
        Ok(s) => vec![s.parse().expect("FSX_CORRUPT_SEED is a number")],
        Err(_) => {
            let n = std::env::var("FSX_CORRUPT_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(50u64);
            (1..=n).collect()
        }
    };
    let mut failures = Vec::new();
    for seed in seeds {
        if let Err(e) = run_seed(seed).await {
            failures.push(format!("seed {seed} (FSX_CORRUPT_SEED={seed}): {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The build itself is sound: without a flip every read is right and
/// fsck is clean (so the test above fails only because of its flips).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undamaged_volume_reads_right_and_fsck_is_clean() {
    let root = tempfile::tempdir().unwrap();
    build(root.path(), 7).await;
    let v = open(root.path(), Arc::new(ManualEnv::new(2_000_000))).await;
    for (name, want) in &expected(7) {
        let f = v.open_file(name, OpenOptions::read()).await.unwrap();
        assert_eq!(&f.read_at(0, want.len()).await.unwrap(), want);
    }
    // Every place the flips aim at holds data.
    assert!(
        blobs(&root.path().join("cache")).len() >= 2,
        "a in the cache"
    );
    assert_eq!(blobs(&root.path().join("data")).len(), 3, "a and c in cold");
    let hot = v.meta().hot_tier(2_000_000).unwrap().unwrap();
    assert_eq!(
        common::extent_objects(hot.as_ref()).await.len(),
        1,
        "c in hot"
    );
    let report = v.fsck(&NoProgress).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.dirty_pages_checked, B_PAGES as u64);
    let meta: &dyn MetaEngine = v.meta().as_ref();
    assert_eq!(
        meta.check_dirty_pages(None, 100).await.unwrap().len(),
        B_PAGES
    );
}
