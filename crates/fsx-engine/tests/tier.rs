//! Tiered storage over real backends: SQLite metadata and its hot tier,
//! local-directory and SeaweedFS (S3) cold tiers, Redis as KV, the memory
//! LRU and the disk cache. Every placement path: landing in hot, queued
//! replication to cold, reads falling through and filling the cache,
//! promotion to KV by access count, eviction from hot after the cold copy
//! is confirmed, explicit promotion/demotion, repair of bad copies, GC in
//! every tier, a cold outage, and the KV write-rate limit.
//!
//! The engine's own in-memory extent cache is disabled (`cache_bytes(0)`)
//! so that every read reaches the tiers.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::pattern;
use fsx_engine::tier::{COLD, HOT, KV, TierConfig, TierPolicy, TierSet};
use fsx_engine::{
    Environment, GcOptions, ManualEnv, NoProgress, OpenOptions, SystemEnv, Volume, VolumeOptions,
};
use fsx_meta::prelude::*;
use fsx_meta::sqlite::SqliteMeta;
use fsx_meta::{CopyState, VolumeConfig};
use fsx_store::cache::{DiskCache, LruCache};
use fsx_store::inject::NoSleep;
use fsx_store::local::LocalBackend;
use fsx_store::redis_kv::RedisKvBackend;
use fsx_store::wrappers::{FaultInjecting, OpFaults, Operation};
use fsx_store::{ExtentBackend, ExtentBackendExt, ObjectKey};
use fsx_testkit::{RedisFixture, S3Fixture};

const EXTENT: u32 = 256 * 1024;
const PS: usize = 4096;
/// Three full extents.
const FILE_BYTES: usize = 3 * EXTENT as usize;

struct Rig {
    dir: tempfile::TempDir,
    env: Arc<ManualEnv>,
    /// What the volume sees: `env`, or the real clock where a store's own
    /// real-time limit is involved.
    clock: Arc<dyn Environment>,
    meta: Arc<SqliteMeta>,
    cold: Arc<dyn ExtentBackend>,
}

impl Rig {
    async fn new(cold: Option<Arc<dyn ExtentBackend>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), true).unwrap());
        let cold =
            cold.unwrap_or_else(|| Arc::new(LocalBackend::open(dir.path().join("data")).unwrap()));
        let env = Arc::new(ManualEnv::new(1_000_000));
        let config = VolumeConfig::new("tier-volume", EXTENT, "data", 1);
        Volume::create(
            meta.clone(),
            cold.clone(),
            env.clone(),
            config,
            VolumeOptions::default(),
        )
        .await
        .unwrap();
        Self {
            dir,
            clock: env.clone(),
            env,
            meta,
            cold,
        }
    }

    /// A rig whose volumes see the real clock.
    async fn real_time() -> Self {
        let mut rig = Self::new(None).await;
        rig.clock = Arc::new(SystemEnv::new());
        rig
    }

    fn hot(&self) -> Arc<dyn ExtentBackend> {
        self.meta.hot_tier(2_000_000).unwrap().unwrap()
    }

    async fn open(&self, cold: Arc<dyn ExtentBackend>, set: TierSet) -> Volume {
        let options = VolumeOptions::default()
            .cache_bytes(0)
            .lease_ttl_ms(600_000)
            .tiers(Some(set));
        Volume::open(self.meta.clone(), cold, self.clock.clone(), options)
            .await
            .unwrap()
    }

    async fn open_hot(&self, policy: TierPolicy) -> Volume {
        let set = TierSet::new().hot(Some(self.hot())).policy(policy);
        self.open(self.cold.clone(), set).await
    }
}

fn content() -> Vec<u8> {
    pattern(7, FILE_BYTES)
}

async fn write_file(v: &Volume) {
    let mut f = v
        .open_file("f", OpenOptions::create(PS as u32))
        .await
        .unwrap();
    f.write_at(0, &content()).await.unwrap();
    f.close().await.unwrap();
}

async fn read_file(v: &Volume) -> Vec<u8> {
    let f = v.open_file("f", OpenOptions::read()).await.unwrap();
    f.read_at(0, FILE_BYTES).await.unwrap()
}

async fn extent_keys(v: &Volume) -> Vec<String> {
    let mut keys: Vec<String> = v
        .meta()
        .count_references(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

async fn in_store(store: &dyn ExtentBackend, key: &str) -> bool {
    store.exists(&ObjectKey::new(key).unwrap()).await.unwrap()
}

/// Calls of `op` on `tier` in the volume's persistent counters.
async fn calls(v: &Volume, tier: &str, op: &str) -> u64 {
    v.stats()
        .await
        .unwrap()
        .counters
        .iter()
        .find(|c| c.tier == tier && c.op == op)
        .map_or(0, |c| c.calls)
}

async fn state(meta: &dyn MetaEngine, key: &str, tier: &str) -> Option<CopyState> {
    meta.tier_copies(key)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.tier == tier)
        .map(|c| c.state)
}

/// Writes land in hot (the durability point) with cold queued; replication
/// copies them to cold; eviction then empties hot and reads come from cold.
async fn hot_first_then_cold(cold: Option<Arc<dyn ExtentBackend>>) {
    let rig = Rig::new(cold).await;
    let v = rig.open_hot(TierPolicy::default()).await;
    write_file(&v).await;
    let keys = extent_keys(&v).await;
    assert_eq!(keys.len(), 3);
    let hot = rig.hot();
    for k in &keys {
        assert!(in_store(hot.as_ref(), k).await, "{k} landed in hot");
        assert!(
            !in_store(rig.cold.as_ref(), k).await,
            "{k} is not in cold before replication"
        );
        assert_eq!(
            state(rig.meta.as_ref(), k, COLD).await,
            Some(CopyState::Queued)
        );
    }
    let status = v.tiers().unwrap().status().await.unwrap();
    let cold_status = status.iter().find(|s| s.tier == COLD).unwrap();
    assert_eq!(cold_status.queued, 3);
    assert_eq!(read_file(&v).await, content(), "served from hot meanwhile");
    assert!(calls(&v, HOT, "get").await >= 3);

    let report = v.tiers().unwrap().replicate_all().await.unwrap();
    assert_eq!(report.copied, 3);
    for k in &keys {
        assert!(in_store(rig.cold.as_ref(), k).await);
        assert_eq!(
            state(rig.meta.as_ref(), k, COLD).await,
            Some(CopyState::Present)
        );
    }
    // A hot capacity of one byte evicts everything whose cold copy is
    // confirmed; reads then fall through to cold.
    drop(v);
    let v = rig
        .open_hot(TierPolicy::default().hot_capacity_bytes(Some(1)))
        .await;
    assert_eq!(v.tiers().unwrap().enforce_capacity().await.unwrap(), 3);
    for k in &keys {
        assert!(!in_store(hot.as_ref(), k).await, "{k} was evicted from hot");
    }
    let before = calls(&v, COLD, "get").await;
    assert_eq!(read_file(&v).await, content());
    assert!(
        calls(&v, COLD, "get").await >= before + 3,
        "served from cold"
    );
    assert!(v.fsck(&NoProgress).await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_hot_and_replicate_to_a_local_cold_tier() {
    hot_first_then_cold(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_land_hot_and_replicate_to_seaweedfs() {
    let s3 = S3Fixture::new().unwrap();
    let cold = Arc::new(
        fsx_store::s3::S3Backend::from_url_with_credentials(
            &s3.url().unwrap(),
            s3.access_key(),
            s3.secret_key(),
        )
        .unwrap(),
    );
    hot_first_then_cold(Some(cold)).await;
}

/// Without a hot tier, extents land in cold directly and are recorded
/// there; a cache in front is filled by reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hot_writes_land_in_cold_and_reads_fill_the_disk_cache() {
    let rig = Rig::new(None).await;
    let cache: Arc<dyn ExtentBackend> =
        Arc::new(DiskCache::open(rig.dir.path().join("cache"), 64 << 20).unwrap());
    let set = TierSet::new().cache(Some(cache.clone()));
    let v = rig.open(rig.cold.clone(), set).await;
    write_file(&v).await;
    let keys = extent_keys(&v).await;
    for k in &keys {
        assert!(in_store(rig.cold.as_ref(), k).await);
        assert_eq!(
            state(rig.meta.as_ref(), k, COLD).await,
            Some(CopyState::Present)
        );
        assert!(
            !in_store(cache.as_ref(), k).await,
            "writes do not fill the cache"
        );
    }
    assert_eq!(v.tiers().unwrap().replicate_all().await.unwrap().copied, 0);
    assert_eq!(read_file(&v).await, content());
    for k in &keys {
        assert!(
            in_store(cache.as_ref(), k).await,
            "a cold read filled the cache"
        );
    }
    let cold_gets = calls(&v, COLD, "get").await;
    assert_eq!(read_file(&v).await, content());
    assert_eq!(
        calls(&v, COLD, "get").await,
        cold_gets,
        "served from the cache"
    );
}

/// Reads count accesses (persisted); an extent read `kv_min_hits` times is
/// queued for KV and then served from there. Explicit demotion and
/// promotion move copies between tiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_extents_are_promoted_to_redis_and_served_from_it() {
    let redis = RedisFixture::new().unwrap();
    let rig = Rig::new(None).await;
    let kv: Arc<dyn ExtentBackend> = Arc::new(RedisKvBackend::from_url(&redis.url("")).unwrap());
    let lru: Arc<dyn ExtentBackend> = Arc::new(LruCache::new(0));
    let set = |policy| {
        TierSet::new()
            .cache(Some(lru.clone()))
            .kv(Some(kv.clone()))
            .hot(Some(rig.hot()))
            .policy(policy)
    };
    let v = rig
        .open(rig.cold.clone(), set(TierPolicy::default().kv_min_hits(2)))
        .await;
    write_file(&v).await;
    let keys = extent_keys(&v).await;
    v.tiers().unwrap().replicate_all().await.unwrap();
    assert_eq!(read_file(&v).await, content());
    assert!(
        state(rig.meta.as_ref(), &keys[0], KV).await.is_none(),
        "one read is not warm"
    );
    assert_eq!(read_file(&v).await, content());
    for k in &keys {
        assert_eq!(
            state(rig.meta.as_ref(), k, KV).await,
            Some(CopyState::Queued)
        );
        assert_eq!(rig.meta.extent_access(k).await.unwrap().hits, 2);
    }
    assert_eq!(v.tiers().unwrap().replicate_all().await.unwrap().copied, 3);
    let hot_gets = calls(&v, HOT, "get").await;
    let kv_gets = calls(&v, KV, "get").await;
    assert_eq!(read_file(&v).await, content());
    assert_eq!(
        calls(&v, HOT, "get").await,
        hot_gets,
        "KV is read before hot"
    );
    assert_eq!(calls(&v, KV, "get").await, kv_gets + 3);

    // Demote from KV, then promote back by hand.
    let t = v.tiers().unwrap();
    t.demote(&keys[0], KV).await.unwrap();
    assert!(!in_store(kv.as_ref(), &keys[0]).await);
    assert!(
        t.demote(&keys[0], COLD).await.is_err(),
        "cold is never demoted"
    );
    t.promote(&keys[0], KV).await.unwrap();
    assert!(in_store(kv.as_ref(), &keys[0]).await);
    let status = t.status().await.unwrap();
    let kv_status = status.iter().find(|s| s.tier == KV).unwrap();
    assert_eq!((kv_status.count, kv_status.queued), (3, 0));

    // Access statistics survive a restart.
    drop(v);
    let v = rig.open(rig.cold.clone(), set(TierPolicy::default())).await;
    assert_eq!(v.meta().extent_access(&keys[1]).await.unwrap().hits, 3);
}

/// The cold tier fails every put for a while: writes still succeed (hot is
/// the durability point), replication retries with backoff, and after the
/// outage the queue drains and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_outage_delays_replication_but_loses_nothing() {
    let rig = Rig::new(None).await;
    let failing: Arc<dyn ExtentBackend> = Arc::new(
        FaultInjecting::new(rig.cold.clone(), 42, Arc::new(NoSleep::new()))
            .with(Operation::Put, OpFaults::new().error_rate(1.0)),
    );
    let policy = TierPolicy::default().retry(1_000, 60_000);
    let set = TierSet::new().hot(Some(rig.hot())).policy(policy.clone());
    let v = rig.open(failing, set).await;
    write_file(&v).await;
    let keys = extent_keys(&v).await;
    let t = v.tiers().unwrap();
    let r = t.replicate_all().await.unwrap();
    assert_eq!((r.copied, r.failed), (0, 3));
    // Nothing is due again before the backoff; then it fails again, and
    // the delay doubles.
    assert_eq!(t.replicate_all().await.unwrap().failed, 0);
    rig.env.advance(1_000);
    assert_eq!(t.replicate_all().await.unwrap().failed, 3);
    let copy = rig.meta.tier_copies(&keys[0]).await.unwrap();
    let queued = copy.iter().find(|c| c.tier == COLD).unwrap();
    assert_eq!(queued.attempts, 2);
    assert_eq!(queued.next_ms, 1_000_000 + 1_000 + 2_000);
    assert!(queued.last_error.is_some());
    assert_eq!(read_file(&v).await, content(), "readable during the outage");
    drop(v);

    // The outage ends (a restart with a healthy store); the queue drains.
    rig.env.advance(2_000);
    let v = rig.open_hot(policy).await;
    let r = v.tiers().unwrap().replicate_all().await.unwrap();
    assert_eq!((r.copied, r.failed), (3, 0));
    for k in &keys {
        assert!(in_store(rig.cold.as_ref(), k).await);
    }
    let v = rig
        .open_hot(TierPolicy::default().hot_capacity_bytes(Some(1)))
        .await;
    v.tiers().unwrap().enforce_capacity().await.unwrap();
    assert_eq!(
        read_file(&v).await,
        content(),
        "cold alone holds everything"
    );
}

/// A corrupted cold copy is found by a scrub and rewritten from hot; a
/// corrupted hot copy is never served: the read falls through to cold and
/// repairs hot in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_copies_are_detected_never_served_and_repaired() {
    let rig = Rig::new(None).await;
    let v = rig.open_hot(TierPolicy::default()).await;
    write_file(&v).await;
    let keys = extent_keys(&v).await;
    let t = v.tiers().unwrap();
    t.replicate_all().await.unwrap();
    let key = ObjectKey::new(&keys[1]).unwrap();
    let good = rig.cold.get(&key).await.unwrap();

    let mut bad = good.to_vec();
    bad[100] ^= 0xff;
    rig.cold.put(&key, Bytes::from(bad.clone())).await.unwrap();
    let report = t.scrub().await.unwrap();
    assert_eq!(report.bad, vec![(COLD.to_string(), keys[1].clone())]);
    assert_eq!(report.repaired, 1);
    assert_eq!(
        rig.cold.get(&key).await.unwrap(),
        good,
        "cold repaired from hot"
    );

    let hot = rig.hot();
    hot.put(&key, Bytes::from(bad)).await.unwrap();
    assert_eq!(
        read_file(&v).await,
        content(),
        "the bad hot copy was not served"
    );
    assert_eq!(hot.get(&key).await.unwrap(), good, "hot repaired in place");
    assert!(
        calls(&v, HOT, "corrupt").await >= 1,
        "the bad copy was reported"
    );
    assert!(calls(&v, COLD, "corrupt").await >= 1);
    assert!(t.scrub().await.unwrap().bad.is_empty());
}

/// GC deletes an unreferenced extent from every tier and forgets its
/// records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_from_every_tier() {
    let redis = RedisFixture::new().unwrap();
    let rig = Rig::new(None).await;
    let kv: Arc<dyn ExtentBackend> = Arc::new(RedisKvBackend::from_url(&redis.url("")).unwrap());
    let set = TierSet::new()
        .kv(Some(kv.clone()))
        .hot(Some(rig.hot()))
        .policy(TierPolicy::default().kv_on_write(true));
    let v = rig.open(rig.cold.clone(), set).await;
    write_file(&v).await;
    let keys = extent_keys(&v).await;
    assert_eq!(v.tiers().unwrap().replicate_all().await.unwrap().copied, 6);
    let hot = rig.hot();
    for k in &keys {
        for store in [&kv, &hot, &rig.cold] {
            assert!(in_store(store.as_ref(), k).await);
        }
    }
    v.delete("f").await.unwrap();
    rig.env.advance(10);
    let report = v
        .gc(&GcOptions::default().grace_ms(0), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.deleted, 3);
    for k in &keys {
        for store in [&kv, &hot, &rig.cold] {
            assert!(!in_store(store.as_ref(), k).await, "{k} left in {store}");
        }
        assert!(rig.meta.tier_copies(k).await.unwrap().is_empty());
    }
    let status = v.tiers().unwrap().status().await.unwrap();
    assert!(
        status.iter().all(|s| s.count == 0 && s.queued == 0),
        "{status:?}"
    );
}

/// A workload that would write one KV key many times a second (repeated
/// promotions and repairs of a corrupted KV copy) never makes the store
/// refuse a write: the tier defers instead. Asserted from the Redis
/// backend's own limiter counters, with the store set to reject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_write_rate_is_never_exceeded() {
    let redis = RedisFixture::new().unwrap();
    let url = redis.url("write_interval_ms=1000&on_limit=reject");
    let limited = Arc::new(RedisKvBackend::from_url(&url).unwrap());
    // Same keys, no limiter: how the test corrupts copies behind fsx's back.
    let raw =
        RedisKvBackend::from_url(&url.replace("write_interval_ms=1000", "write_interval_ms=0"))
            .unwrap();
    // Redis enforces the interval in real time, so the tier must see it too.
    let rig = Rig::real_time().await;
    let set = TierSet::new()
        .kv(Some(limited.clone() as Arc<dyn ExtentBackend>))
        .hot(Some(rig.hot()))
        .policy(TierPolicy::default().kv_min_hits(1));
    let v = rig.open(rig.cold.clone(), set).await;
    write_file(&v).await;
    let keys = extent_keys(&v).await;
    let key = ObjectKey::new(&keys[0]).unwrap();
    let t = v.tiers().unwrap();
    t.replicate_all().await.unwrap();
    t.promote(&keys[0], KV).await.unwrap();
    let good = raw.get(&key).await.unwrap();
    for round in 0..20 {
        // Explicit promotions of a key just written: fsx refuses them
        // inside the interval and sends them after it (how many rounds fit
        // in a second depends on the machine); either way the limiter must
        // never have to reject one, which the end of the test checks.
        let _ = t.promote(&keys[0], KV).await;
        raw.put(&key, Bytes::from_static(b"garbage")).await.unwrap();
        assert_eq!(read_file(&v).await, content(), "round {round}");
        t.replicate_all().await.unwrap();
    }
    assert_eq!(
        limited.limiter_stats().rejected,
        0,
        "fsx never asked for a write too soon"
    );
    // A deferred repair happens at the retry time it was scheduled for,
    // which the tier derived from the interval: wait until then, not longer.
    // (On a loaded machine the last round may already have come after the
    // interval and repaired the copy at once: nothing is queued then.)
    let queued = rig
        .meta
        .tier_copies(&keys[0])
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.tier == KV && c.state == CopyState::Queued);
    if let Some(copy) = queued {
        let wait = copy.next_ms - rig.clock.now_ms();
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        }
        t.replicate_all().await.unwrap();
    }
    assert_eq!(raw.get(&key).await.unwrap(), good);
    assert_eq!(limited.limiter_stats().rejected, 0);
}

/// The configuration round-trips through the volume's settings and
/// composes the tiers it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_settings_compose_the_tiers() {
    let rig = Rig::new(None).await;
    let meta: Arc<dyn MetaEngine> = rig.meta.clone();
    assert!(
        TierSet::from_settings(&meta, &|u| fsx_store::open_backend(u))
            .await
            .unwrap()
            .is_none(),
        "an unconfigured volume has no tiers"
    );
    let mut config = TierConfig::default();
    config.hot = true;
    config.cache_url = Some("lru://?capacity=1048576".into());
    config.policy = TierPolicy::default()
        .hot_capacity_bytes(Some(5 << 20))
        .kv_min_hits(7);
    config.save(meta.as_ref()).await.unwrap();
    assert_eq!(TierConfig::load(meta.as_ref()).await.unwrap(), config);
    let set = TierSet::from_settings(&meta, &|u| fsx_store::open_backend(u))
        .await
        .unwrap()
        .unwrap();
    assert!(set.hot.is_some() && set.cache.is_some() && set.kv.is_none());
    assert_eq!(set.policy.kv_min_hits, 7);
}

/// A one-page read of an extent that only cold holds reads just that page
/// by range, verified against its page digest; a damaged page is never
/// served (the whole-extent read then finds no good copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_page_reads_from_cold_use_verified_range_reads() {
    let rig = Rig::new(None).await;
    let v = rig.open_hot(TierPolicy::default()).await;
    write_file(&v).await;
    v.tiers().unwrap().replicate_all().await.unwrap();
    drop(v);
    let v = rig
        .open_hot(TierPolicy::default().hot_capacity_bytes(Some(1)))
        .await;
    v.tiers().unwrap().enforce_capacity().await.unwrap();
    let f = v.open_file("f", OpenOptions::read()).await.unwrap();
    let want = content();
    let (gets, ranges) = (
        calls(&v, COLD, "get").await,
        calls(&v, COLD, "get_range").await,
    );
    for page in [0u64, 5, 64, 191] {
        let at = page as usize * PS;
        assert_eq!(
            f.read_page(page).await.unwrap(),
            want[at..at + PS],
            "page {page}"
        );
    }
    assert_eq!(calls(&v, COLD, "get").await, gets, "no whole-extent read");
    assert_eq!(calls(&v, COLD, "get_range").await, ranges + 4);
    // Multi-page reads fetch whole extents.
    assert_eq!(f.read_at(0, 2 * PS).await.unwrap(), want[..2 * PS]);
    assert_eq!(calls(&v, COLD, "get").await, gets + 1);

    // Damage page 70 (extent 1, page 6) in cold.
    let id = v.stat("f").await.unwrap().id;
    let keys: Vec<String> = v
        .meta()
        .read_map(fsx_meta::View::MAIN, id, 64, 1, 64)
        .await
        .unwrap()
        .extents
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    let key = ObjectKey::new(&keys[0]).unwrap();
    let page_at = fsx_format::HEADER_LEN + 8 + 6 * PS;
    // Damaged on the disk, in place, as bit rot would: a put of bytes that
    // do not hash to their key breaks the store contract instead.
    let path = LocalBackend::open(rig.dir.path().join("data"))
        .unwrap()
        .path_for(&key);
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, (page_at + 10) as u64).unwrap();
        file.write_all_at(&[b[0] ^ 1], (page_at + 10) as u64)
            .unwrap();
    }
    let err = f.read_page(70).await.unwrap_err();
    assert_eq!(err.kind(), fsx_engine::ErrorKind::Corrupt, "{err}");
    assert!(
        calls(&v, COLD, "corrupt").await >= 2,
        "range and whole reads both reported it"
    );
}
