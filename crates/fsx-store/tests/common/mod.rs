//! Helpers shared by the backend test files: run the one conformance suite
//! and fail with every failing check named.

#![allow(dead_code)] // each test binary uses a subset
#![allow(clippy::print_stdout)] // reports shown on failure

use std::sync::Arc;

use fsx_store::ExtentBackend;
use fsx_store::conformance::{CheckContext, CheckReport, Outcome, run_all};
use fsx_store::inject::TokioSleeper;

/// Run the whole suite under `prefix` and return the reports.
pub async fn conformance_reports(
    backend: Arc<dyn ExtentBackend>,
    prefix: &str,
) -> Vec<CheckReport> {
    let ctx = CheckContext::new(backend, prefix, Arc::new(TokioSleeper))
        .expect("valid conformance prefix");
    run_all(&ctx).await
}

/// Run the whole suite and panic, listing every failed check, unless all
/// pass. Returns the reports so callers can assert on skips.
pub async fn assert_conformance(backend: Arc<dyn ExtentBackend>, prefix: &str) -> Vec<CheckReport> {
    let shown = backend.to_string();
    let reports = conformance_reports(backend, prefix).await;
    for report in &reports {
        println!("{report}");
    }
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| r.outcome.is_failure())
        .map(|r| r.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{shown} failed conformance:\n{}",
        failures.join("\n")
    );
    reports
}

/// The outcome of the check named `name`.
pub fn outcome<'a>(reports: &'a [CheckReport], name: &str) -> &'a Outcome {
    &reports
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
        .outcome
}

/// A durable backend must offer `put_if_absent` (a volume's marker needs
/// it): both checks passed, not skipped.
pub fn assert_creates_if_absent(reports: &[CheckReport]) {
    for name in ["put_if_absent", "concurrent_put_if_absent"] {
        assert!(
            matches!(outcome(reports, name), Outcome::Passed(_)),
            "{name}: {:?}",
            outcome(reports, name)
        );
    }
}

/// Puts one object and checks that listing it reports a write time close
/// to now (orphan GC relies on it).
pub async fn assert_lists_write_times(backend: &dyn ExtentBackend, prefix: &str) {
    use fsx_store::ExtentBackendExt;
    let key = fsx_store::ObjectKey::new(&format!("{prefix}aged")).unwrap();
    backend
        .put(&key, bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    let listed = backend.list_all(prefix).await.unwrap();
    backend.delete(&key).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t = listed
        .iter()
        .find(|o| o.key == key)
        .and_then(|o| o.last_modified_ms)
        .expect("a write time in the listing");
    assert!((now - t).abs() < 3_600_000, "write time {t} vs now {now}");
}
