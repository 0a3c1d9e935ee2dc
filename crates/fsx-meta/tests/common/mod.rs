//! Shared by the engine test files: a runner for the store conformance
//! suite, and (`pg`) a real PostgreSQL server with fresh schemas in it.

#![allow(dead_code)] // each test binary uses a subset
#![allow(clippy::print_stdout)] // reports shown on failure

#[cfg(feature = "postgres")]
#[allow(unused_imports)]
pub use fsx_testkit::postgres as pg;

use std::sync::Arc;

use fsx_store::ExtentBackend;
use fsx_store::conformance::{CheckContext, run_all};
use fsx_store::inject::TokioSleeper;

/// Runs the whole store conformance suite under `prefix`, printing every
/// report, and panics naming every failed check.
pub async fn assert_store_conformance(backend: Arc<dyn ExtentBackend>, prefix: &str) {
    let shown = backend.to_string();
    let ctx = CheckContext::new(backend, prefix, Arc::new(TokioSleeper)).expect("valid prefix");
    let reports = run_all(&ctx).await;
    for r in &reports {
        println!("{r}");
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.outcome.is_failure())
        .map(|r| r.to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{shown} failed conformance:\n{}",
        failed.join("\n")
    );
}
