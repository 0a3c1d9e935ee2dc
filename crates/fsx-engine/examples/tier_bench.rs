//! Read latency of one 2 MiB extent served by each tier of a
//! `TieredStore`, next to a raw `get` of the same object from the same
//! backend in the same run (the difference is the tier's bookkeeping: the
//! copy-record lookup, the content-key check, the access-statistics write).
//!
//! ```text
//! scripts/services.sh start /tmp/svc.env && source /tmp/svc.env
//! cargo run --release -p fsx-engine --example tier_bench [ITERATIONS]
//! ```
//!
//! Uses the Redis and SeaweedFS servers named by `FSX_TEST_REDIS_URL` and
//! `FSX_TEST_S3_URL` (or starts its own). Prints a Markdown table.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fsx_engine::SystemEnv;
use fsx_engine::tier::{TierSet, TieredStore};
use fsx_meta::VolumeConfig;
use fsx_meta::prelude::*;
use fsx_meta::sqlite::SqliteMeta;
use fsx_store::cache::LruCache;
use fsx_store::local::LocalBackend;
use fsx_store::redis_kv::RedisKvBackend;
use fsx_store::wrappers::Metered;
use fsx_store::{ExtentBackend, ObjectKey};

fn extent() -> (ObjectKey, Bytes) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let pages: Vec<(u32, Vec<u8>)> = (0..512)
        .map(|i| {
            let page = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            (i, page)
        })
        .collect();
    let blob = fsx_format::encode(
        4096,
        pages.iter().map(|(i, p)| (*i, p.as_slice())),
        fsx_format::Compression::None,
    )
    .unwrap();
    let key = ObjectKey::new(&fsx_format::content_key(&blob)).unwrap();
    (key, Bytes::from(blob))
}

fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    (ms(p50), ms(p99))
}

async fn time_get(store: &dyn ExtentBackend, key: &ObjectKey, n: usize) -> (f64, f64) {
    // One warm-up read (connections, page cache).
    store.get(key).await.unwrap();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let b = store.get(key).await.unwrap();
        samples.push(t.elapsed());
        assert!(!b.is_empty());
    }
    summary(samples)
}

async fn time_range(store: &dyn ExtentBackend, key: &ObjectKey, n: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        // One 4 KiB page somewhere in the extent.
        // Header (64 bytes) and a 512-page bitmap (64 bytes) come first.
        let start = 64 + 64 + (i as u64 % 512) * 4096;
        let t = Instant::now();
        let b = store.get_range(key, start..start + 4096).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(b.len(), 4096);
    }
    summary(samples)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), true).unwrap());
    meta.init_volume(&VolumeConfig::new("bench", 2 << 20, "data", 1))
        .await
        .unwrap();
    let meta_dyn: Arc<dyn MetaEngine> = meta.clone();
    let env = Arc::new(SystemEnv::new());
    let redis = fsx_testkit::RedisFixture::new().unwrap();
    let s3 = fsx_testkit::S3Fixture::new().unwrap();

    let local: Arc<dyn ExtentBackend> =
        Arc::new(LocalBackend::open(dir.path().join("data")).unwrap());
    let seaweed: Arc<dyn ExtentBackend> = Arc::new(
        fsx_store::s3::S3Backend::from_url_with_credentials(
            &s3.url().unwrap(),
            s3.access_key(),
            s3.secret_key(),
        )
        .unwrap(),
    );
    let kv: Arc<dyn ExtentBackend> = Arc::new(RedisKvBackend::from_url(&redis.url("")).unwrap());
    let hot = meta.hot_tier(2_000_000).unwrap().unwrap();
    let cache: Arc<dyn ExtentBackend> = Arc::new(LruCache::new(64 << 20));

    let (key, blob) = extent();
    let tiered = |cold: &Arc<dyn ExtentBackend>, set: TierSet| {
        TieredStore::new(
            Arc::new(Metered::new(cold.clone())),
            set,
            meta_dyn.clone(),
            env.clone(),
        )
    };

    println!("| tier hit | tiered get p50 / p99 (ms) | raw backend get p50 / p99 (ms) |");
    println!("|---|---|---|");
    // Cold only: local directory and SeaweedFS.
    for (name, cold) in [("cold, local dir", &local), ("cold, SeaweedFS", &seaweed)] {
        let t = tiered(cold, TierSet::new());
        t.put(&key, blob.clone()).await.unwrap();
        let (a, b) = time_get(&t, &key, n).await;
        let (c, d) = time_get(cold.as_ref(), &key, n).await;
        println!("| {name} (full extent) | {a:.2} / {b:.2} | {c:.2} / {d:.2} |");
    }
    {
        // The cold-only store of the loop above holds the extent and its
        // page digests, so single pages are read by verified range reads.
        let t = tiered(&seaweed, TierSet::new());
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let start = Instant::now();
            let page = t
                .read_page(key.as_str(), (i % 512) as u32, 4096)
                .await
                .unwrap();
            samples.push(start.elapsed());
            assert_eq!(page.unwrap().unwrap().len(), 4096);
        }
        let (a, b) = summary(samples);
        let (c, d) = time_range(seaweed.as_ref(), &key, n).await;
        println!(
            "| cold, SeaweedFS, one 4 KiB page by range | {a:.2} / {b:.2} | {c:.2} / {d:.2} |"
        );
    }
    // Hot over cold.
    let t = tiered(&local, TierSet::new().hot(Some(hot.clone())));
    t.promote(key.as_str(), "hot").await.unwrap();
    let (a, b) = time_get(&t, &key, n).await;
    let (c, d) = time_get(hot.as_ref(), &key, n).await;
    println!("| hot, SQLite rows | {a:.2} / {b:.2} | {c:.2} / {d:.2} |");
    // KV over hot over cold.
    let t = tiered(
        &local,
        TierSet::new().kv(Some(kv.clone())).hot(Some(hot.clone())),
    );
    t.promote(key.as_str(), "kv").await.unwrap();
    let (a, b) = time_get(&t, &key, n).await;
    let (c, d) = time_get(kv.as_ref(), &key, n).await;
    println!("| KV, Redis | {a:.2} / {b:.2} | {c:.2} / {d:.2} |");
    // Cache over everything.
    let t = tiered(
        &local,
        TierSet::new()
            .cache(Some(cache.clone()))
            .kv(Some(kv.clone()))
            .hot(Some(hot.clone())),
    );
    cache.put(&key, blob.clone()).await.unwrap();
    let (a, b) = time_get(&t, &key, n).await;
    let (c, d) = time_get(cache.as_ref(), &key, n).await;
    println!("| cache, memory LRU | {a:.2} / {b:.2} | {c:.2} / {d:.2} |");
}
