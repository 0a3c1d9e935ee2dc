//! `/metrics` over real HTTP: it counts what the server answered, by
//! route template and status, reads each volume's extents from its
//! metadata, and is valid Prometheus text (`promtool check metrics`).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use fsx_protocol::Scope;

/// The value of the sample `name{labels}` (labels in the encoder's
/// order: sorted by name).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_read_volumes_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let write = token(&vol, Scope::Write, 1).await;
    let server = serve(vec![vol.clone()], None).await;
    let base = server.url();
    let c = client();

    let data = vec![7u8; 3 << 20];
    let r = c
        .put(format!("{base}/v1/volumes/vol/file?path=/big"))
        .header("authorization", format!("Bearer {write}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = c
            .get(format!("{base}/v1/volumes/vol/stat?path=/big"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    let r = c.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    assert_eq!(
        sample(
            &text,
            r#"fsx_http_requests_total{method="GET",route="/v1/volumes/{vol}/stat",status="401"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"fsx_http_requests_total{method="PUT",route="/v1/volumes/{vol}/file",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"fsx_http_request_bytes_total{route="/v1/volumes/{vol}/file"}"#
        ),
        Some(data.len() as f64),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"fsx_http_request_duration_seconds_count{method="PUT",route="/v1/volumes/{vol}/file"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // The volume's own figures come from its metadata: the 3 MiB file
    // needs at least one extent.
    let extents = sample(&text, r#"fsx_extents{volume="vol"}"#).expect("fsx_extents of vol");
    assert!(extents >= 1.0, "{text}");
    let from_meta = open(&vol).await.meta().extent_totals().await.unwrap();
    assert_eq!(extents, from_meta.count as f64);

    let promtool = std::env::var("FSX_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{promtool} is needed to check the metrics' format ({e}): \
                 apt-get install prometheus (scripts/test.sh does), or set FSX_PROMTOOL"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    server.shutdown().await.unwrap();
}
