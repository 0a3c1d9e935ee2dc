//! The server's own work on its volumes: with `gc_every`, an extent
//! stored over the API and never referenced is deleted by a scheduled GC
//! once its grace is over, and the change feed is pruned to the volume's
//! `changes.retain` by the same runs — observed through the API, with the
//! runs counted in `/metrics` (waited for by count, never by time).

mod common;

use std::time::{Duration, Instant};

use common::*;
use fsx_protocol::Scope;

/// Scheduled GC runs of volume `vol` so far.
async fn gc_runs(server: &str) -> u64 {
    metric(server, "fsx_gc_runs_total{volume=\"vol\"}")
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_gc_frees_unreferenced_extents_and_prunes_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let write = token(&vol, Scope::Write, 1).await;
    // The feed keeps 2 changes (a knob read when the volume is opened).
    fsx_engine::settings::set_io_knob(open(&vol).await.meta().as_ref(), "changes.retain", "2")
        .await
        .unwrap();
    let mut config =
        fsx_server::ServeConfig::new("127.0.0.1:0".parse().unwrap(), vec![vol.clone()]);
    config.gc_every = Some(Duration::from_millis(50));
    config.gc_grace = Duration::ZERO;
    let server = fsx_server::Server::start(config).await.unwrap();
    let url = server.url();
    let base = format!("{url}/v1/volumes/vol");
    let c = client();
    let (blob, key) = extent(9);
    let seg = key.rsplit('/').next().unwrap().to_string();
    let put = c
        .put(format!("{base}/extents/{seg}"))
        .bearer_auth(&write)
        .body(blob)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    for p in ["/a", "/b", "/c", "/d"] {
        let r = c
            .post(format!("{base}/mkdir"))
            .bearer_auth(&write)
            .json(&serde_json::json!({ "path": p }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Two runs that began after the writes above.
    let start = gc_runs(&url).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while gc_runs(&url).await < start + 2 {
        assert!(Instant::now() < deadline, "no scheduled gc ran in 60 s");
        tokio::task::yield_now().await;
    }
    let head = c
        .head(format!("{base}/extents/{seg}"))
        .bearer_auth(&write)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        404,
        "the unreferenced extent is still stored"
    );
    let old = c
        .get(format!("{base}/changes?since=0"))
        .bearer_auth(&write)
        .send()
        .await
        .unwrap();
    assert_eq!(code(old).await, (410, "gone".to_string()));
    let kept: serde_json::Value = c
        .get(format!("{base}/changes?since=2"))
        .bearer_auth(&write)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kept["changes"].as_array().map(Vec::len), Some(2), "{kept}");
    server.shutdown().await.unwrap();
}
