//! `fsx store check` against the stores a user would point it at — a local
//! directory, SeaweedFS over S3, Redis — and against one that misbehaves.

use std::process::{Command, Output};

fn check(url: &str, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fsx"));
    cmd.args(["store", "check", url]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn assert_all_pass(out: &Output) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(", 0 failed"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    assert!(
        text.lines().filter(|l| l.starts_with("PASS")).count() >= 14,
        "{text}"
    );
}

#[test]
fn a_local_directory_passes() {
    let dir = tempfile::tempdir().unwrap();
    assert_all_pass(&check(&format!("file://{}", dir.path().display()), &[]));
}

#[test]
fn seaweedfs_over_s3_passes() {
    let s3 = fsx_testkit::S3Fixture::new().unwrap();
    let url = s3.url().unwrap();
    assert_all_pass(&check(
        &url,
        &[
            ("AWS_ACCESS_KEY_ID", s3.access_key()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
        ],
    ));
}

#[test]
fn redis_passes_with_cloudflare_kv_limits() {
    let redis = fsx_testkit::RedisFixture::new().unwrap();
    let url = redis.url("max_value=26214400&write_interval_ms=1000&on_limit=wait");
    assert_all_pass(&check(&url, &[]));
}

#[test]
fn a_store_that_loses_objects_fails_naming_the_check() {
    // An LRU cache far smaller than the suite's working set evicts objects
    // it acknowledged: a store that would lose data.
    let out = check("lru://?capacity=100000", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL concurrent_distinct_keys"), "{text}");
    assert!(text.contains("1 failed"), "{text}");
}

#[test]
fn an_unreachable_store_fails_with_a_clear_message() {
    let port = fsx_testkit::free_port().unwrap();
    let out = check(&format!("redis://127.0.0.1:{port}/0"), &[]);
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains(&port.to_string()) || all.contains("unavailable"),
        "{all}"
    );
}
