//! The S3 backend against a real SeaweedFS server (`FSX_TEST_S3_URL`, or
//! one the fixture starts). Fails, never skips, without a server.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{assert_conformance, outcome};
use fsx_store::conformance::Outcome;
use fsx_store::inject::TokioSleeper;
use fsx_store::s3::S3Backend;
use fsx_store::wrappers::{FaultInjecting, OpFaults, RetryPolicy, Retrying};
use fsx_store::{ErrorKind, ExtentBackend, ExtentBackendExt, ObjectKey};
use fsx_testkit::S3Fixture;

fn open(fixture: &S3Fixture) -> S3Backend {
    let url = fixture.url().unwrap();
    S3Backend::from_url_with_credentials(&url, fixture.access_key(), fixture.secret_key()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_conformance() {
    let fixture = S3Fixture::new().expect("an S3 server for the test");
    let reports = assert_conformance(Arc::new(open(&fixture)), "conf/").await;
    common::assert_creates_if_absent(&reports);
    common::assert_lists_write_times(&open(&fixture), "aged/").await;
    assert!(matches!(
        outcome(&reports, "roundtrip_16mib"),
        Outcome::Passed(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_with_small_declared_limit_rejects_before_upload() {
    let fixture = S3Fixture::new().expect("an S3 server for the test");
    let url = format!("{}&max_object_size=1048576", fixture.url().unwrap());
    let backend =
        S3Backend::from_url_with_credentials(&url, fixture.access_key(), fixture.secret_key())
            .unwrap();
    let reports = assert_conformance(Arc::new(backend), "conf/").await;
    assert!(matches!(outcome(&reports, "too_large"), Outcome::Passed(_)));
    assert!(
        matches!(outcome(&reports, "roundtrip_2mib"), Outcome::Passed(n) if n.contains("rejected"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retry_over_faults_keeps_every_object_intact() {
    let fixture = S3Fixture::new().expect("an S3 server for the test");
    let s3 = Arc::new(open(&fixture));
    let faulty = FaultInjecting::new(s3.clone(), 11, Arc::new(TokioSleeper))
        .with_all(OpFaults::new().error_rate(0.2).fail_after_effect_rate(0.1));
    let retrying = Retrying::new(
        Arc::new(faulty),
        RetryPolicy::new()
            .max_attempts(12)
            .initial_backoff(std::time::Duration::from_millis(1)),
        Arc::new(TokioSleeper),
    );
    let mut keys = Vec::new();
    for i in 0..40u32 {
        let value = Bytes::from(format!("s3 object {i}").repeat(100));
        let k = ObjectKey::for_content(&value);
        retrying
            .put(&k, value.clone())
            .await
            .expect("put surfaced an error");
        keys.push((k, value));
    }
    for (k, value) in &keys {
        assert_eq!(
            &retrying.get(k).await.expect("get surfaced an error"),
            value
        );
        k.verify_content(&s3.get(k).await.unwrap()).unwrap();
    }
    assert_eq!(
        retrying.list_all("extent/").await.unwrap().len(),
        keys.len()
    );
    assert!(retrying.retries() > 0);
    for (k, _) in &keys {
        retrying.delete(k).await.unwrap();
    }
    assert!(s3.list_all("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_secret_is_not_retryable_success() {
    let fixture = S3Fixture::new().expect("an S3 server for the test");
    let backend = S3Backend::from_url_with_credentials(
        &fixture.url().unwrap(),
        fixture.access_key(),
        "wrong-secret",
    )
    .unwrap();
    let err = backend
        .put(&ObjectKey::new("k").unwrap(), Bytes::from_static(b"v"))
        .await
        .unwrap_err();
    assert_ne!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn s3_url_errors_are_clear() {
    for (url, needle) in [
        ("s3://", "names no bucket"),
        ("s3://b?bogus=1", "unknown S3 URL parameter"),
        ("s3://b/a//b", "empty segment"),
        ("s3://b?max_object_size=x", "not a number"),
    ] {
        let err = S3Backend::from_url_with_credentials(url, "k", "s").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}");
        assert!(err.to_string().contains(needle), "{url}: {err}");
    }
}
