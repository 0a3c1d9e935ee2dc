//! The memory backend, the LRU cache and the wrappers, against the shared
//! conformance suite, plus the wrapper-specific behaviours.

mod common;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{assert_conformance, conformance_reports, outcome};
use fsx_store::cache::LruCache;
use fsx_store::conformance::Outcome;
use fsx_store::inject::NoSleep;
use fsx_store::memory::MemoryBackend;
use fsx_store::wrappers::{FaultInjecting, Metered, OpFaults, Operation, RetryPolicy, Retrying};
use fsx_store::{
    BoxFuture, Capabilities, ErrorKind, ExtentBackend, ExtentBackendExt, ListPage, ListRequest,
    ObjectKey, ObjectMeta, Result,
};

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

#[tokio::test]
async fn memory_passes_conformance() {
    let reports = assert_conformance(Arc::new(MemoryBackend::new()), "conf/").await;
    common::assert_creates_if_absent(&reports);
    assert!(
        matches!(outcome(&reports, "roundtrip_16mib"), Outcome::Passed(n) if n.contains("16777216 bytes"))
    );
}

#[tokio::test]
async fn small_memory_rejects_what_it_cannot_hold() {
    let backend = Arc::new(MemoryBackend::with_max_object_size(4 << 20));
    let reports = assert_conformance(backend.clone(), "conf/").await;
    assert!(
        matches!(outcome(&reports, "roundtrip_16mib"), Outcome::Passed(n) if n.contains("rejected"))
    );
    assert!(matches!(outcome(&reports, "too_large"), Outcome::Passed(_)));
    assert!(backend.is_empty(), "the suite left objects behind");
}

#[tokio::test]
async fn lru_cache_passes_conformance() {
    assert_conformance(Arc::new(LruCache::new(64 << 20)), "conf/").await;
}

#[tokio::test]
async fn lru_evicts_least_recently_used_by_bytes() {
    let cache = LruCache::new(10_000);
    for name in ["a", "b", "c"] {
        cache
            .put(&key(name), Bytes::from(vec![1u8; 3000]))
            .await
            .unwrap();
    }
    assert_eq!(cache.used_bytes(), 9000);
    // Touch "a" so "b" becomes the least recently used.
    cache.get(&key("a")).await.unwrap();
    cache
        .put(&key("d"), Bytes::from(vec![2u8; 3000]))
        .await
        .unwrap();
    assert_eq!(cache.evictions(), 1);
    assert!(
        !cache.exists(&key("b")).await.unwrap(),
        "b should have been evicted"
    );
    for name in ["a", "c", "d"] {
        assert!(
            cache.exists(&key(name)).await.unwrap(),
            "{name} should be cached"
        );
    }
    assert!(cache.used_bytes() <= 10_000);
    // One object of the whole capacity evicts everything else.
    cache
        .put(&key("big"), Bytes::from(vec![3u8; 10_000]))
        .await
        .unwrap();
    assert_eq!(cache.used_bytes(), 10_000);
    assert_eq!(cache.list_all("").await.unwrap().len(), 1);
    let err = cache
        .put(&key("huge"), Bytes::from(vec![0u8; 10_001]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        cache.exists(&key("big")).await.unwrap(),
        "a rejected put must not evict"
    );
}

/// The acceptance workload: 20 % transient faults on every operation
/// (before and after the write took effect), retry on top, no error
/// surfaces and every object is intact.
#[tokio::test]
async fn retry_over_twenty_percent_faults_completes_the_workload() {
    let memory = Arc::new(MemoryBackend::new());
    let faults = OpFaults::new().error_rate(0.2).fail_after_effect_rate(0.1);
    let faulty = Arc::new(
        FaultInjecting::new(memory.clone(), 42, Arc::new(NoSleep::new())).with_all(faults),
    );
    let sleeper = Arc::new(NoSleep::new());
    let retrying = Retrying::new(
        faulty.clone(),
        RetryPolicy::new().max_attempts(12),
        sleeper.clone(),
    );
    let mut objects = Vec::new();
    for i in 0..200u32 {
        let value = Bytes::from(format!("object {i} ").repeat(i as usize % 50 + 1));
        let k = ObjectKey::for_content(&value);
        retrying
            .put(&k, value.clone())
            .await
            .expect("put surfaced an error");
        objects.push((k, value));
    }
    for (k, value) in &objects {
        assert_eq!(
            &retrying.get(k).await.expect("get surfaced an error"),
            value
        );
        let head = retrying
            .get_range(k, 0..4)
            .await
            .expect("get_range surfaced an error");
        assert_eq!(head, value.slice(0..4));
        k.verify_content(&memory.get(k).await.unwrap()).unwrap();
    }
    let listed = retrying
        .list_all("extent/")
        .await
        .expect("list surfaced an error");
    assert_eq!(listed.len(), objects.len());
    let stats = faulty.stats();
    assert!(
        stats.failed_before > 50,
        "too few faults injected to mean anything: {stats:?}"
    );
    assert!(stats.failed_after_effect > 5, "{stats:?}");
    assert_eq!(
        retrying.retries(),
        stats.failed_before + stats.failed_after_effect
    );
    assert_eq!(sleeper.recorded().len() as u64, retrying.retries());
}

#[tokio::test]
async fn retrying_wrapper_stack_passes_conformance_despite_faults() {
    let faulty = FaultInjecting::new(Arc::new(MemoryBackend::new()), 7, Arc::new(NoSleep::new()))
        .with_all(OpFaults::new().error_rate(0.2));
    let retrying = Retrying::new(
        Arc::new(faulty),
        RetryPolicy::new().max_attempts(20),
        Arc::new(NoSleep::new()),
    );
    let metered = Arc::new(Metered::new(Arc::new(retrying)));
    assert_conformance(metered.clone(), "conf/").await;
    assert!(
        metered
            .to_string()
            .starts_with("metered over retrying(20 attempts"),
        "{metered}"
    );
}

#[tokio::test]
async fn retry_gives_up_after_max_attempts_with_backoff() {
    let always = FaultInjecting::new(Arc::new(MemoryBackend::new()), 1, Arc::new(NoSleep::new()))
        .with(Operation::Get, OpFaults::new().error_rate(1.0));
    let sleeper = Arc::new(NoSleep::new());
    let policy = RetryPolicy::new()
        .max_attempts(5)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(400));
    let retrying = Retrying::new(Arc::new(always), policy, sleeper.clone());
    let err = retrying.get(&key("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("after 5 attempts"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the last error is kept as source"
    );
    let slept = sleeper.recorded();
    assert_eq!(slept.len(), 4, "4 waits between 5 attempts");
    // Equal jitter: each wait is within [base/2, base], base doubling to the cap.
    for (wait, base_ms) in slept.iter().zip([100u64, 200, 400, 400]) {
        let base = Duration::from_millis(base_ms);
        assert!(
            *wait >= base / 2 && *wait <= base,
            "wait {wait:?} outside [{:?}, {base:?}]",
            base / 2
        );
    }
}

#[tokio::test]
async fn retry_does_not_retry_permanent_errors() {
    let memory = Arc::new(MemoryBackend::with_max_object_size(10));
    let retrying = Retrying::new(memory, RetryPolicy::new(), Arc::new(NoSleep::new()));
    let err = retrying.get(&key("missing")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = retrying
        .put(&key("big"), Bytes::from(vec![0u8; 11]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(retrying.retries(), 0);
}

#[tokio::test]
async fn retry_waits_at_least_the_retry_after_hint() {
    let sleeper = Arc::new(NoSleep::new());
    let flaky = Arc::new(RateLimitedOnce::default());
    let retrying = Retrying::new(
        flaky,
        RetryPolicy::new().initial_backoff(Duration::from_millis(1)),
        sleeper.clone(),
    );
    retrying
        .put(&key("k"), Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(sleeper.recorded(), [Duration::from_secs(3)]);
}

#[tokio::test]
async fn fail_after_effect_leaves_the_object_written() {
    let memory = Arc::new(MemoryBackend::new());
    let faulty = FaultInjecting::new(memory.clone(), 3, Arc::new(NoSleep::new()))
        .with(Operation::Put, OpFaults::new().fail_after_effect_rate(1.0))
        .with(
            Operation::Delete,
            OpFaults::new().fail_after_effect_rate(1.0),
        );
    let k = key("written/anyway");
    let err = faulty
        .put(&k, Bytes::from_static(b"payload"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(
        memory.get(&k).await.unwrap(),
        Bytes::from_static(b"payload")
    );
    let err = faulty.delete(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(!memory.exists(&k).await.unwrap(), "the delete took effect");
    assert_eq!(faulty.stats().failed_after_effect, 2);
    assert_eq!(faulty.stats().failed_before, 0);
}

#[tokio::test]
async fn fail_before_leaves_nothing_written() {
    let memory = Arc::new(MemoryBackend::new());
    let faulty = FaultInjecting::new(memory.clone(), 3, Arc::new(NoSleep::new())).with(
        Operation::Put,
        OpFaults::new()
            .error_rate(1.0)
            .latency(Duration::from_millis(5)),
    );
    let sleeper_free = faulty.put(&key("k"), Bytes::from_static(b"v")).await;
    assert_eq!(sleeper_free.unwrap_err().kind(), ErrorKind::Unavailable);
    assert!(memory.is_empty());
}

#[tokio::test]
async fn fault_injection_is_deterministic_per_seed() {
    async fn run(seed: u64) -> Vec<bool> {
        let faulty = FaultInjecting::new(
            Arc::new(MemoryBackend::new()),
            seed,
            Arc::new(NoSleep::new()),
        )
        .with_all(OpFaults::new().error_rate(0.5));
        let mut out = Vec::new();
        for i in 0..64 {
            out.push(
                faulty
                    .put(&key(&format!("k{i}")), Bytes::new())
                    .await
                    .is_ok(),
            );
        }
        out
    }
    assert_eq!(run(9).await, run(9).await);
    assert_ne!(run(9).await, run(10).await);
}

#[tokio::test]
async fn metered_counts_calls_outcomes_and_bytes() {
    let metered = Metered::new(Arc::new(MemoryBackend::new()));
    metered
        .put(&key("a"), Bytes::from(vec![0u8; 1000]))
        .await
        .unwrap();
    metered
        .put(&key("b"), Bytes::from(vec![0u8; 24]))
        .await
        .unwrap();
    metered.get(&key("a")).await.unwrap();
    metered.get(&key("nope")).await.unwrap_err();
    metered.get_range(&key("a"), 10..110).await.unwrap();
    metered.head(&key("b")).await.unwrap();
    metered.delete(&key("b")).await.unwrap();
    metered.list(&ListRequest::new("").unwrap()).await.unwrap();
    let snap = metered.snapshot();
    let put = snap.op(Operation::Put);
    assert_eq!((put.calls, put.bytes_written, put.errors), (2, 1024, 0));
    let get = snap.op(Operation::Get);
    assert_eq!(
        (get.calls, get.not_found, get.bytes_read, get.errors),
        (2, 1, 1000, 0)
    );
    assert_eq!(snap.op(Operation::GetRange).bytes_read, 100);
    assert_eq!(snap.total_calls(), 8);
    assert_eq!(snap.total_bytes_read(), 1100);
}

/// A backend that breaks the contract in one place must fail exactly the
/// checks that look there, by name.
#[tokio::test]
async fn a_misbehaving_store_fails_the_named_checks() {
    let broken = Arc::new(DropsLastListEntry(MemoryBackend::new()));
    let reports = conformance_reports(broken, "conf/").await;
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.outcome.is_failure())
        .map(|r| r.name)
        .collect();
    assert!(failed.contains(&"list_pages"), "{failed:?}");
    assert!(!failed.contains(&"roundtrip_4kib"), "{failed:?}");
    let bad_range = Arc::new(RangeIgnoresEnd(MemoryBackend::new()));
    let reports = conformance_reports(bad_range, "conf/").await;
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.outcome.is_failure())
        .map(|r| r.name)
        .collect();
    assert_eq!(failed, ["range_reads"]);
}

/// Refuses the first put with a 3 s rate-limit hint, then works.
#[derive(Debug, Default)]
struct RateLimitedOnce {
    inner: MemoryBackend,
    refused: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for RateLimitedOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rate-limited-once")
    }
}

impl ExtentBackend for RateLimitedOnce {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
        self.inner.get(key)
    }
    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        self.inner.get_range(key, range)
    }
    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
        if !self.refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let err = fsx_store::StoreError::unavailable("rate limited")
                .with_retry_after(Duration::from_secs(3));
            return Box::pin(async move { Err(err) });
        }
        self.inner.put(key, value)
    }
    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
        self.inner.delete(key)
    }
    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
        self.inner.head(key)
    }
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        self.inner.list(request)
    }
}

/// Loses the last entry of every full list page.
#[derive(Debug)]
struct DropsLastListEntry(MemoryBackend);

/// Ignores the range end (returns everything from `start`).
#[derive(Debug)]
struct RangeIgnoresEnd(MemoryBackend);

macro_rules! delegate_except {
    ($ty:ident, $($method:item)*) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($ty))
            }
        }
        impl ExtentBackend for $ty {
            fn capabilities(&self) -> &Capabilities {
                self.0.capabilities()
            }
            fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Bytes>> {
                self.0.get(key)
            }
            fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, Result<()>> {
                self.0.put(key, value)
            }
            fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<()>> {
                self.0.delete(key)
            }
            fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<ObjectMeta>> {
                self.0.head(key)
            }
            $($method)*
        }
    };
}

delegate_except! {
    DropsLastListEntry,
    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        self.0.get_range(key, range)
    }
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        Box::pin(async move {
            let mut page = self.0.list(request).await?;
            if page.next_start_after.is_some() {
                page.objects.pop();
            }
            Ok(page)
        })
    }
}

delegate_except! {
    RangeIgnoresEnd,
    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(async move {
            if range.start > range.end {
                return Err(fsx_store::StoreError::invalid("inverted"));
            }
            let all = self.0.get(key).await?;
            let start = (range.start as usize).min(all.len());
            Ok(all.slice(start..))
        })
    }
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<ListPage>> {
        self.0.list(request)
    }
}
