//! The Redis KV backend against a real redis-server (`FSX_TEST_REDIS_URL`,
//! or one the fixture starts): conformance with and without Cloudflare KV's
//! limits, and the shared per-key write-rate limiter.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{assert_conformance, outcome};
use fsx_store::conformance::Outcome;
use fsx_store::redis_kv::RedisKvBackend;
use fsx_store::{ErrorKind, ExtentBackend, ObjectKey};
use fsx_testkit::RedisFixture;

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_conformance() {
    let fixture = RedisFixture::new().expect("a Redis server for the test");
    let backend = RedisKvBackend::from_url(&fixture.url("")).unwrap();
    let reports = assert_conformance(Arc::new(backend), "conf/").await;
    common::assert_creates_if_absent(&reports);
}

/// Cloudflare KV's limits: 25 MiB values, one write per second per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_as_cloudflare_kv_passes_conformance() {
    let fixture = RedisFixture::new().expect("a Redis server for the test");
    let backend = Arc::new(
        RedisKvBackend::from_url(&fixture.url("max_value=26214400&write_interval_ms=1000"))
            .unwrap(),
    );
    let reports = assert_conformance(backend.clone(), "conf/").await;
    assert!(matches!(outcome(&reports, "too_large"), Outcome::Passed(_)));
    // Overwrites and the same-key race ran into the limiter.
    assert!(
        backend.limiter_stats().rejected >= 3,
        "{:?}",
        backend.limiter_stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_small_values_are_rejected_before_io() {
    let fixture = RedisFixture::new().expect("a Redis server for the test");
    let backend = Arc::new(RedisKvBackend::from_url(&fixture.url("max_value=1048576")).unwrap());
    let reports = assert_conformance(backend.clone(), "conf/").await;
    assert!(
        matches!(outcome(&reports, "roundtrip_16mib"), Outcome::Passed(n) if n.contains("rejected"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_rejects_and_is_shared_between_clients() {
    let fixture = RedisFixture::new().expect("a Redis server for the test");
    // A long interval, so no timing can make the second write legal.
    let url = fixture.url("write_interval_ms=60000");
    let first = RedisKvBackend::from_url(&url).unwrap();
    let second = RedisKvBackend::from_url(&url).unwrap();
    let k = key("limited");
    first.put(&k, Bytes::from_static(b"one")).await.unwrap();
    let err = first.put(&k, Bytes::from_static(b"two")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let wait = err.retry_after().expect("a retry_after hint");
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    // Another client (think: another process) shares the limit.
    let err = second
        .put(&k, Bytes::from_static(b"three"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    // Other keys are not limited, and the refused writes changed nothing.
    second
        .put(&key("other"), Bytes::from_static(b"free"))
        .await
        .unwrap();
    assert_eq!(second.get(&k).await.unwrap(), Bytes::from_static(b"one"));
    assert_eq!(first.limiter_stats().rejected, 1);
    assert_eq!(second.limiter_stats().rejected, 1);
    assert_eq!(first.limiter_stats().waited, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_wait_mode_serialises_writes() {
    let fixture = RedisFixture::new().expect("a Redis server for the test");
    // The interval is far longer than two back-to-back puts take, so the
    // second must meet the limiter whatever the machine's load.
    let backend =
        RedisKvBackend::from_url(&fixture.url("write_interval_ms=2000&on_limit=wait")).unwrap();
    let k = key("waited");
    backend.put(&k, Bytes::from_static(b"one")).await.unwrap();
    backend.put(&k, Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(backend.get(&k).await.unwrap(), Bytes::from_static(b"two"));
    let stats = backend.limiter_stats();
    assert!(stats.waited >= 1, "{stats:?}");
    assert_eq!(stats.rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_is_unavailable() {
    let port = fsx_testkit::free_port().unwrap();
    let backend = RedisKvBackend::from_url(&format!("redis://127.0.0.1:{port}/0")).unwrap();
    let err = backend.get(&key("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}
