//! The API over a volume whose metadata is in PostgreSQL
//! (`FSX_TEST_PG_URL`, or a throwaway cluster the test starts: the
//! convention of `fsx_testkit::postgres`, which fails the test, never
//! skips it, when neither can be had). Each run uses a schema of its own.
//!
//! A short end-to-end flow — tokens, a write read back with a range, a
//! listing, a branch and a commit — and refused requests that leave the
//! metadata, read straight from PostgreSQL, exactly as it was.

mod common;

use common::*;
use fsx_protocol::Scope;
use fsx_testkit::postgres::PgServer;
use serde_json::json;

/// The tree, branches and commits of `schema`, read from PostgreSQL
/// itself, to compare before and after refused requests.
async fn pg_state(pg: &PgServer, schema: &str) -> String {
    let raw = pg.raw_client().await;
    let sql = format!(
        "SELECT
           (SELECT coalesce(string_agg(name || ':' || size || ':' || write_seq, ',' ORDER BY name), '')
              FROM {schema}.fsx_files),
           (SELECT coalesce(string_agg(name || ':' || head || ':' || coalesce(commit_id, 0), ',' ORDER BY name), '')
              FROM {schema}.fsx_branches),
           (SELECT count(*) FROM {schema}.fsx_commits),
           (SELECT count(*) || ':' || coalesce(sum(mtime_ns), 0) || ':' || coalesce(sum(ctime_ns), 0)
              FROM {schema}.fsx_nodes),
           (SELECT count(*) FROM {schema}.fsx_entries),
           (SELECT count(*) FROM {schema}.fsx_dirty_pages)"
    );
    let row = raw.query_one(sql.as_str(), &[]).await.unwrap();
    let (files, branches): (String, String) = (row.get(0), row.get(1));
    let commits: i64 = row.get(2);
    let nodes: String = row.get(3);
    let (entries, dirty): (i64, i64) = (row.get(4), row.get(5));
    format!(
        "files {files}; branches {branches}; commits {commits}; nodes {nodes}; entries {entries}; dirty {dirty}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_on_postgres_metadata_over_http() {
    let pg = PgServer::start();
    let schema = pg.fresh_schema();
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), Some(pg.url(&schema))).await;
    // Tokens are stored in the volume's metadata: in PostgreSQL here.
    let write = token(&vol, Scope::Write, 1).await;
    let read = token(&vol, Scope::Read, 2).await;
    let raw = pg.raw_client().await;
    let stored: i64 = raw
        .query_one(
            format!("SELECT count(*) FROM {schema}.fsx_tokens").as_str(),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 2, "the tokens are not in PostgreSQL");

    let server = serve(vec![vol.clone()], None).await;
    let base = format!("{}/v1/volumes/vol", server.url());
    let c = client();

    // Write a file (more than one page), read a range of it back, list.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let r = c
        .put(format!("{base}/file?path=/data.bin"))
        .bearer_auth(&write)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = c
        .get(format!("{base}/file?path=/data.bin"))
        .bearer_auth(&read)
        .header("range", "bytes=131000-131999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        "bytes 131000-131999/300000"
    );
    assert_eq!(r.bytes().await.unwrap(), data[131_000..132_000]);
    let list: serde_json::Value = c
        .get(format!("{base}/list?path=/"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(
        (entries[0]["name"].as_str(), entries[0]["size"].as_u64()),
        (Some("data.bin"), Some(300_000)),
        "{list}"
    );

    // A branch, a change on it and a commit; main is unchanged.
    let r = c
        .post(format!("{base}/branches"))
        .bearer_auth(&write)
        .json(&json!({"name": "dev", "from": "main"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = c
        .put(format!("{base}/file?path=/dev.txt&branch=dev"))
        .bearer_auth(&write)
        .body("on dev")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/commit"))
        .bearer_auth(&write)
        .json(&json!({"branch": "dev", "message": "first on dev"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let commit: serde_json::Value = r.json().await.unwrap();
    let log: serde_json::Value = c
        .get(format!("{base}/log?spec=dev"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["commits"][0]["id"], commit["id"], "{log}");
    assert_eq!(log["commits"][0]["message"], "first on dev", "{log}");
    let on_main = c
        .get(format!("{base}/stat?path=/dev.txt"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(code(on_main).await, (404, "not_found".into()));

    // Refused: no token, a wrong one, a read token writing. Each changes
    // nothing in PostgreSQL.
    let before = pg_state(&pg, &schema).await;
    // The write token with the last digit of its secret changed.
    let last = if write.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &write[..write.len() - 1]);
    for (bearer, expected) in [
        (None, (401, "unauthorized")),
        (Some(&wrong), (401, "unauthorized")),
        (Some(&read), (403, "forbidden")),
    ] {
        let with = |b: reqwest::RequestBuilder| match bearer {
            Some(t) => b.bearer_auth(t),
            None => b,
        };
        let refused = [
            with(c.put(format!("{base}/file?path=/data.bin"))).body("overwritten"),
            with(c.put(format!("{base}/file?path=/new.bin"))).body("new"),
            with(c.post(format!("{base}/branches"))).json(&json!({"name": "evil"})),
            with(c.post(format!("{base}/commit"))).json(&json!({"branch": "dev"})),
            with(c.post(format!("{base}/remove"))).json(&json!({"path": "/data.bin"})),
        ];
        for req in refused {
            let (status, code) = code(req.send().await.unwrap()).await;
            assert_eq!((status, code.as_str()), expected, "{bearer:?}");
        }
    }
    assert_eq!(pg_state(&pg, &schema).await, before);
    let whole = c
        .get(format!("{base}/file?path=/data.bin"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.bytes().await.unwrap(), data);

    server.shutdown().await.unwrap();
}
