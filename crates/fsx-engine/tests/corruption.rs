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
//! Both metadata engines: SQLite (50 seeds by default) and PostgreSQL (25:
//! each of its seeds builds the volume twice, since its rows cannot be
//! copied aside like a directory). `FSX_CORRUPT_SEEDS` sets the number of
//! seeds of both; `FSX_CORRUPT_SEED` runs one seed, as printed by a
//! failure.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::pattern;
use fsx_engine::tier::{TierPolicy, TierSet};
use fsx_engine::{ErrorKind, ManualEnv, NoProgress, OpenOptions, Volume, VolumeOptions};
use fsx_meta::postgres::PgMeta;
use fsx_meta::sqlite::SqliteMeta;
use fsx_meta::{MetaEngine, VolumeConfig};
use fsx_store::ExtentBackend;
use fsx_store::cache::DiskCache;
use fsx_store::local::LocalBackend;
use fsx_testkit::postgres::PgServer;

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

/// The metadata engine a volume of the test uses: SQLite in the volume's
/// directory, or a schema on a real PostgreSQL server (with a driver
/// connection to damage its rows).
enum Engine<'a> {
    Sqlite,
    Postgres {
        url: String,
        schema: String,
        raw: &'a tokio_postgres::Client,
    },
}

async fn meta(dir: &Path, engine: &Engine<'_>, create: bool) -> fsx_engine::MetaArc {
    match engine {
        Engine::Sqlite => Arc::new(SqliteMeta::open(dir.join("meta.db"), create).unwrap()),
        Engine::Postgres { url, .. } => Arc::new(PgMeta::connect(url).await.unwrap()),
    }
}

async fn open(dir: &Path, engine: &Engine<'_>, env: Arc<ManualEnv>) -> Volume {
    open_with(dir, engine, env, TierPolicy::default()).await
}

async fn open_with(
    dir: &Path,
    engine: &Engine<'_>,
    env: Arc<ManualEnv>,
    policy: TierPolicy,
) -> Volume {
    let meta = meta(dir, engine, false).await;
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
async fn build(dir: &Path, engine: &Engine<'_>, seed: u64) {
    let env = Arc::new(ManualEnv::new(1_000_000));
    {
        let meta = meta(dir, engine, true).await;
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
            engine,
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
    let v = open(dir, engine, env).await;
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

type Sql = dyn tokio_postgres::types::ToSql + Sync;

/// Rows of one table, as the damage needs them.
type HotRow = (String, i64, Vec<u8>);
type DirtyRow = (i64, i64, i64, Vec<u8>, i64);

async fn hot_rows(dir: &Path, engine: &Engine<'_>) -> Vec<HotRow> {
    match engine {
        Engine::Sqlite => {
            let c = rusqlite::Connection::open(dir.join("meta.db")).unwrap();
            c.prepare("SELECT key, part, data FROM fsx_hot_extents ORDER BY key, part")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        }
        Engine::Postgres { schema, raw, .. } => raw
            .query(
                &format!("SELECT key, part, data FROM {schema}.fsx_hot_extents ORDER BY key, part"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    }
}

async fn set_hot_row(dir: &Path, engine: &Engine<'_>, row: &HotRow) {
    let (key, part, data) = row;
    let n = match engine {
        Engine::Sqlite => rusqlite::Connection::open(dir.join("meta.db"))
            .unwrap()
            .execute(
                "UPDATE fsx_hot_extents SET data = ?3 WHERE key = ?1 AND part = ?2",
                rusqlite::params![key, part, data],
            )
            .unwrap() as u64,
        Engine::Postgres { schema, raw, .. } => raw
            .execute(
                &format!(
                    "UPDATE {schema}.fsx_hot_extents SET data = $3 WHERE key = $1 AND part = $2"
                ),
                &[key as &Sql, part, data],
            )
            .await
            .unwrap(),
    };
    assert_eq!(n, 1);
}

async fn dirty_rows(dir: &Path, engine: &Engine<'_>) -> Vec<DirtyRow> {
    let sql = |prefix: &str| {
        format!(
            "SELECT layer, file_id, page_no, data, crc FROM {prefix}fsx_dirty_pages
             WHERE data IS NOT NULL ORDER BY layer, file_id, page_no"
        )
    };
    match engine {
        Engine::Sqlite => {
            let c = rusqlite::Connection::open(dir.join("meta.db")).unwrap();
            c.prepare(&sql(""))
                .unwrap()
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        }
        Engine::Postgres { schema, raw, .. } => raw
            .query(&sql(&format!("{schema}.")), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect(),
    }
}

async fn set_dirty_row(dir: &Path, engine: &Engine<'_>, row: &DirtyRow) {
    let (layer, file, page, data, crc) = row;
    let sql = |prefix: &str, p: [&str; 5]| {
        format!(
            "UPDATE {prefix}fsx_dirty_pages SET data = {}, crc = {}
             WHERE layer = {} AND file_id = {} AND page_no = {}",
            p[3], p[4], p[0], p[1], p[2]
        )
    };
    let n = match engine {
        Engine::Sqlite => rusqlite::Connection::open(dir.join("meta.db"))
            .unwrap()
            .execute(
                &sql("", ["?1", "?2", "?3", "?4", "?5"]),
                rusqlite::params![layer, file, page, data, crc],
            )
            .unwrap() as u64,
        Engine::Postgres { schema, raw, .. } => raw
            .execute(
                &sql(&format!("{schema}."), ["$1", "$2", "$3", "$4", "$5"]),
                &[layer as &Sql, file, page, data, crc],
            )
            .await
            .unwrap(),
    };
    assert_eq!(n, 1);
}

/// Flips one bit somewhere that carries data; returns where, for messages.
async fn flip(dir: &Path, engine: &Engine<'_>, rng: &mut Rng) -> String {
    match rng.below(5) {
        t @ (0 | 1) => {
            let root = dir.join(if t == 0 { "data" } else { "cache" });
            let files = blobs(&root);
            assert!(!files.is_empty(), "no extent objects in {}", root.display());
            let p = &files[rng.below(files.len())];
            let mut bytes = std::fs::read(p).unwrap();
            flip_bit(&mut bytes, rng);
            std::fs::write(p, bytes).unwrap();
            format!(
                "{} object {}",
                if t == 0 { "cold" } else { "cache" },
                p.file_name().unwrap().to_string_lossy()
            )
        }
        2 => {
            let rows = hot_rows(dir, engine).await;
            assert!(!rows.is_empty(), "the hot tier is empty");
            let mut row = rows[rng.below(rows.len())].clone();
            flip_bit(&mut row.2, rng);
            set_hot_row(dir, engine, &row).await;
            format!("hot row {} part {}", row.0, row.1)
        }
        t => {
            let rows = dirty_rows(dir, engine).await;
            assert_eq!(rows.len(), B_PAGES, "b's pages are in the dirty buffer");
            let mut row = rows[rng.below(rows.len())].clone();
            if t == 3 {
                flip_bit(&mut row.3, rng);
            } else {
                row.4 ^= 1 << rng.below(64);
            }
            set_dirty_row(dir, engine, &row).await;
            format!(
                "dirty page {} {}",
                row.2,
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

/// Reads every file of the damaged volume in `dir` (whole, and a few
/// single pages): right bytes or `Corrupt`.
async fn check_reads(
    dir: &Path,
    engine: &Engine<'_>,
    seed: u64,
    place: &str,
) -> Result<(), String> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let v = open(dir, engine, Arc::new(ManualEnv::new(2_000_000))).await;
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
    Ok(())
}

/// `fsck` of the damaged volume in `dir` must report the damage.
async fn check_fsck(dir: &Path, engine: &Engine<'_>, place: &str) -> Result<(), String> {
    let v = open(dir, engine, Arc::new(ManualEnv::new(2_000_000))).await;
    let report = v.fsck(&NoProgress).await.unwrap();
    if report.is_clean() {
        return Err(format!("{place}: fsck did not report the flip: {report:?}"));
    }
    Ok(())
}

/// SQLite: one damaged volume, copied before the reads (which repair
/// what they can) so that fsck sees the damage as it was.
async fn run_seed_sqlite(seed: u64) -> Result<(), String> {
    let root = tempfile::tempdir().unwrap();
    let (damaged, copy) = (root.path().join("v"), root.path().join("copy"));
    std::fs::create_dir_all(&damaged).unwrap();
    build(&damaged, &Engine::Sqlite, seed).await;
    let place = flip(&damaged, &Engine::Sqlite, &mut Rng::new(seed)).await;
    copy_dir(&damaged, &copy);
    check_reads(&damaged, &Engine::Sqlite, seed, &place).await?;
    check_fsck(&copy, &Engine::Sqlite, &place).await
}

/// PostgreSQL: the same volume built and damaged twice (everything is
/// deterministic in the seed), once for the reads and once for fsck.
async fn run_seed_postgres(
    seed: u64,
    server: &PgServer,
    raw: &tokio_postgres::Client,
) -> Result<(), String> {
    let mut places = Vec::new();
    for reads in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let schema = server.fresh_schema();
        let engine = Engine::Postgres {
            url: server.url(&schema),
            schema,
            raw,
        };
        build(root.path(), &engine, seed).await;
        let place = flip(root.path(), &engine, &mut Rng::new(seed)).await;
        if reads {
            check_reads(root.path(), &engine, seed, &place).await?;
        } else {
            check_fsck(root.path(), &engine, &place).await?;
        }
        places.push(place);
    }
    assert_eq!(
        places[0], places[1],
        "the same seed damaged different places"
    );
    Ok(())
}

/// The seeds to run: `FSX_CORRUPT_SEED`, else `1..=FSX_CORRUPT_SEEDS`,
/// else `1..=default`.
fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("FSX_CORRUPT_SEED") {
        Ok(s) => vec![s.parse().expect("FSX_CORRUPT_SEED is a number")],
        Err(_) => {
            let n = std::env::var("FSX_CORRUPT_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(default);
            (1..=n).collect()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_bit_is_refused_or_harmless_and_reported_by_fsck() {
    let mut failures = Vec::new();
    for seed in seeds(50) {
        if let Err(e) = run_seed_sqlite(seed).await {
            failures.push(format!("seed {seed} (FSX_CORRUPT_SEED={seed}): {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The same on PostgreSQL metadata (its hot tier and dirty buffer are
/// rows there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_bit_is_refused_or_harmless_and_reported_by_fsck_on_postgres() {
    let server = PgServer::start();
    let raw = server.raw_client().await;
    let mut failures = Vec::new();
    // Each PostgreSQL seed builds its volume twice: fewer by default.
    for seed in seeds(25) {
        if let Err(e) = run_seed_postgres(seed, &server, &raw).await {
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
    build(root.path(), &Engine::Sqlite, 7).await;
    let v = open(
        root.path(),
        &Engine::Sqlite,
        Arc::new(ManualEnv::new(2_000_000)),
    )
    .await;
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
