//! The API over real HTTP on loopback: every endpoint, the authorisation
//! matrix (each route × no, bad, revoked, read, write, admin and another
//! volume's token), and hostile input — each refused with its code,
//! nothing changed, the server still serving.

mod common;

use common::*;
use fsx_protocol::{Access, Method, ROUTES, RouteId, Scope};
use serde_json::json;

fn seg(key: &str) -> &str {
    key.rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_works() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let admin = token(&vol, Scope::Admin, 1).await;
    let server = serve(vec![vol.clone()], None).await;
    let base = format!("{}/v1/volumes/vol", server.url());
    let c = client();
    let auth = format!("Bearer {admin}");
    let get = |p: &str| c.get(format!("{base}{p}")).header("authorization", &auth);
    let post = |p: &str, b: serde_json::Value| {
        c.post(format!("{base}{p}"))
            .header("authorization", &auth)
            .json(&b)
    };

    let h = c
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let h = c
        .get(format!("{}/readyz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);

    // Tree: mkdir, write, stat, list, read (with ranges), rename, remove.
    let r = post("/mkdir", json!({"path": "/a/b", "parents": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let r = c
        .put(format!("{base}/file?path=/a/b/f.bin"))
        .header("authorization", &auth)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let w: serde_json::Value = r.json().await.unwrap();
    assert_eq!(w["size"], 100_000);
    let st: serde_json::Value = get("/stat?path=/a/b/f.bin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (st["kind"].as_str(), st["size"].as_u64()),
        (Some("file"), Some(100_000))
    );
    let st: serde_json::Value = get("/stat?path=/")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["kind"], "dir");
    let whole = get("/file?path=/a/b/f.bin").send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), data);
    let part = get("/file?path=/a/b/f.bin")
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        "bytes 10-19/100000"
    );
    assert_eq!(part.bytes().await.unwrap(), data[10..20]);
    let tail = get("/file?path=/a/b/f.bin")
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap(), data[99_995..]);
    let bad = get("/file?path=/a/b/f.bin")
        .header("range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(code(bad).await, (416, "range_not_satisfiable".into()));
    // A PUT over an existing file replaces it whole and leaves nothing
    // beside it.
    let r = c
        .put(format!("{base}/file?path=/a/b/g.bin"))
        .header("authorization", &auth)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{base}/file?path=/a/b/g.bin"))
        .header("authorization", &auth)
        .body(&b"short"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = get("/file?path=/a/b/g.bin").send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap(), &b"short"[..]);
    let listed: serde_json::Value = get("/list?path=/a/b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<_> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["f.bin", "g.bin"], "what the uploads left");
    let r = post("/remove", json!({"path": "/a/b/g.bin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    for i in 0..3 {
        let r = c
            .put(format!("{base}/file?path=/a/n{i}"))
            .header("authorization", &auth)
            .body(vec![i; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let page: serde_json::Value = get("/list?path=/a&limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<_> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b", "n0"]);
    assert_eq!(page["next"], "n0");
    let page: serde_json::Value = get("/list?path=/a&limit=2&after=n0")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<_> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["n1", "n2"]);
    assert!(page["next"].is_null());
    let r = post("/rename", json!({"from": "/a/n0", "to": "/a/b/m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/rename", json!({"from": "/a/n1", "to": "/a/b/m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (409, "conflict".into()),
        "no replace without asking"
    );
    let r = post(
        "/rename",
        json!({"from": "/a/n1", "to": "/a/b/m", "replace": true}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/remove", json!({"path": "/a/b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (409, "conflict".into()), "not empty");
    let r = post("/remove", json!({"path": "/a/n2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/stat?path=/a/n2").send().await.unwrap();
    assert_eq!(code(r).await, (404, "not_found".into()));

    // Branches and history.
    let c1: serde_json::Value = post("/commit", json!({"message": "one"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c1 = c1["id"].as_i64().unwrap();
    let b: serde_json::Value = post("/branches", json!({"name": "dev"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["name"], "dev");
    let r = c
        .put(format!("{base}/file?path=/dev-only&branch=dev"))
        .header("authorization", &auth)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/stat?path=/dev-only").send().await.unwrap();
    assert_eq!(r.status(), 404, "main does not see dev's write");
    let list: serde_json::Value = get("/branches").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["branches"].as_array().unwrap().len(), 2);
    post("/commit", json!({"branch": "dev", "message": "dev"}))
        .send()
        .await
        .unwrap();
    let d: serde_json::Value = get(&format!("/diff?a={c1}&b=dev"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changes = d["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["kind"] == "added" && c["new_name"] == "dev-only"),
        "{d}"
    );
    let m: serde_json::Value = post("/merge", json!({"source": "dev"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["outcome"], "fast_forward", "{m}");
    assert_eq!(
        get("/stat?path=/dev-only").send().await.unwrap().status(),
        200
    );
    let log: serde_json::Value = get("/log?limit=10")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log["commits"].as_array().unwrap().len() >= 2, "{log}");
    let r = post("/reset", json!({"branch": "main", "commit": c1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get("/stat?path=/dev-only").send().await.unwrap().status(),
        404
    );

    // Extents.
    let (blob, key) = extent(7);
    let r = c
        .head(format!("{base}/extents/{}", seg(&key)))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let m: serde_json::Value = post("/extents-missing", json!({"keys": [key]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["missing"], json!([key]));
    let r = c
        .put(format!("{base}/extents/{}", seg(&key)))
        .header("authorization", &auth)
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .put(format!("{base}/extents/{}", seg(&key)))
        .header("authorization", &auth)
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "already there");
    let r = c
        .head(format!("{base}/extents/{}", seg(&key)))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["content-length"].to_str().unwrap()
        ),
        (200, "64")
    );
    let r = get(&format!("/extents/{}", seg(&key)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), blob);
    let r = get(&format!("/extents/{}", seg(&key)))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], b"EXT1");
    let m: serde_json::Value = post("/extents-missing", json!({"keys": [key]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["missing"], json!([]));

    let info: serde_json::Value = get("").send().await.unwrap().json().await.unwrap();
    assert_eq!(info["name"], "vol");
    assert_eq!(info["stats"]["files"], 2, "{info}");
    assert_eq!(info["stats"]["branches"], 2);
    assert_eq!(info["public_read"], false);
    server.shutdown().await.unwrap();
}

/// A request of `route` on volume `vol` with a harmless body, so that a
/// request that gets through does something small.
fn request(
    c: &reqwest::Client,
    base: &str,
    route: &fsx_protocol::Route,
    key: &str,
) -> reqwest::RequestBuilder {
    let path = route
        .path
        .replace("{vol}", "vol")
        .replace("{key}", seg(key));
    let query = match route.id {
        RouteId::Stat | RouteId::ReadFile => "?path=/f",
        RouteId::List => "?path=/",
        RouteId::WriteFile => "?path=/new",
        RouteId::Diff => "?a=main&b=main",
        _ => "",
    };
    let url = format!("{base}{path}{query}");
    let (blob, _) = extent(9);
    let b = match route.method {
        Method::Get => c.get(url),
        Method::Head => c.head(url),
        Method::Put => c.put(url),
        Method::Post => c.post(url),
    };
    match route.id {
        RouteId::WriteFile => b.body("new"),
        RouteId::Mkdir => b.json(&json!({"path": "/newdir"})),
        RouteId::Rename => b.json(&json!({"from": "/f", "to": "/g"})),
        RouteId::Remove => b.json(&json!({"path": "/f"})),
        RouteId::CreateBranch => b.json(&json!({"name": "other"})),
        RouteId::Commit => b.json(&json!({"message": "m"})),
        RouteId::Merge => b.json(&json!({"source": "main", "into": "main"})),
        RouteId::Reset => b.json(&json!({"branch": "main", "commit": 999})),
        RouteId::ExtentPut => b.body(blob),
        RouteId::ExtentsMissing => b.json(&json!({"keys": []})),
        _ => b,
    }
}

/// What the volume shows, to compare before and after refused requests.
async fn snapshot(dir: &std::path::Path) -> String {
    let v = open(dir).await;
    let files: Vec<_> = v
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();
    let branches: Vec<_> = v
        .branches()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.name, b.commit))
        .collect();
    let (_, key9) = extent(9);
    let has = fsx_store::ExtentBackendExt::exists(
        v.store().as_ref(),
        &fsx_store::ObjectKey::new(&key9).unwrap(),
    )
    .await
    .unwrap();
    format!("{files:?} {branches:?} {has}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let other = make_volume(&dir.path().join("other"), None).await;
    let read = token(&vol, Scope::Read, 1).await;
    let write = token(&vol, Scope::Write, 2).await;
    let admin = token(&vol, Scope::Admin, 3).await;
    let revoked = token(&vol, Scope::Admin, 4).await;
    let foreign = token(&other, Scope::Admin, 5).await;
    let revoked_id = fsx_protocol::Token::parse(&revoked).unwrap();
    open(&vol)
        .await
        .meta()
        .revoke_token(revoked_id.id(), 2)
        .await
        .unwrap();
    // A file and a directory for the routes to find.
    {
        let v = open(&vol).await;
        let mut f = v
            .open_file("f", fsx_engine::OpenOptions::create(4096))
            .await
            .unwrap();
        f.write_at(0, b"hello").await.unwrap();
        f.close().await.unwrap();
    }
    let server = serve(vec![vol.clone(), other.clone()], None).await;
    let c = client();
    let base = server.url();
    let (_, key) = extent(9);
    // A token with a valid form that no volume knows, and a malformed one.
    let unknown = format!("fsx_{}_{}", "ab".repeat(8), "cd".repeat(32));
    let bad_secret = format!(
        "{}{}",
        &read[..read.len() - 1],
        if read.ends_with('0') { "1" } else { "0" }
    );

    for route in ROUTES {
        let Access::Token(needed) = route.access else {
            continue;
        };
        let mut before = snapshot(&vol).await;
        for (who, tok, expect) in [
            ("no token", None, 401),
            ("malformed", Some("nonsense"), 401),
            ("unknown", Some(unknown.as_str()), 401),
            ("wrong secret", Some(bad_secret.as_str()), 401),
            ("revoked", Some(revoked.as_str()), 401),
            ("other volume", Some(foreign.as_str()), 403),
            (
                "read",
                Some(read.as_str()),
                if Scope::Read.allows(needed) { 0 } else { 403 },
            ),
            (
                "write",
                Some(write.as_str()),
                if Scope::Write.allows(needed) { 0 } else { 403 },
            ),
        ] {
            let mut b = request(&c, &base, route, &key);
            if let Some(t) = tok {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            let r = b.send().await.unwrap();
            let status = r.status().as_u16();
            if expect == 0 {
                assert!(
                    ![401, 403].contains(&status),
                    "{:?} with {who}: {status}",
                    route.id
                );
                before = snapshot(&vol).await;
                continue;
            }
            assert_eq!(status, expect, "{:?} with {who}", route.id);
            if route.method != Method::Head {
                let (_, c) = code(r).await;
                assert_eq!(
                    c,
                    if expect == 401 {
                        "unauthorized"
                    } else {
                        "forbidden"
                    }
                );
            }
            assert_eq!(
                snapshot(&vol).await,
                before,
                "a refused {:?} with {who} changed the volume",
                route.id
            );
        }
        // Admin passes every check.
        let r = request(&c, &base, route, &key)
            .header("authorization", format!("Bearer {admin}"))
            .send()
            .await
            .unwrap();
        assert!(
            ![401, 403].contains(&r.status().as_u16()),
            "{:?} with admin: {}",
            route.id,
            r.status()
        );
    }
    // Public-read: reads without a token, never writes.
    server.shutdown().await.unwrap();
    open(&vol)
        .await
        .meta()
        .set_setting("server.public_read", "true")
        .await
        .unwrap();
    let server = serve(vec![vol.clone()], None).await;
    let base = server.url();
    // The write route's allowed request wrote /new.
    let r = c
        .get(format!("{base}/v1/volumes/vol/file?path=/new"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"new"[..]);
    let r = c
        .put(format!("{base}/v1/volumes/vol/file?path=/f"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let admin = token(&vol, Scope::Admin, 1).await;
    let limits = fsx_server::Limits {
        max_body: 1 << 20,
        max_header_bytes: 8 << 10,
        rate_per_sec: 0.0,
        rate_burst: 1000.0,
        ..Default::default()
    };
    let server = serve(vec![vol.clone()], Some(limits)).await;
    let base = format!("{}/v1/volumes/vol", server.url());
    let c = client();
    let auth = format!("Bearer {admin}");
    let before = snapshot(&vol).await;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            c.post(format!("{base}/mkdir")).body("{\"path\":"),
            400,
            "invalid_json",
        ),
        (
            "unknown field",
            c.post(format!("{base}/mkdir"))
                .body(r#"{"path":"/x","evil":1}"#),
            400,
            "invalid_json",
        ),
        (
            "oversized body",
            c.put(format!("{base}/file?path=/big"))
                .body(vec![0u8; (1 << 20) + 1]),
            413,
            "payload_too_large",
        ),
        (
            "oversized extent",
            c.put(format!("{base}/extents/{}", seg(&extent(1).1)))
                .body(vec![0u8; (1 << 20) + 1]),
            413,
            "payload_too_large",
        ),
        (
            "oversized headers",
            c.get(format!("{base}/stat?path=/"))
                .header("x-pad", "a".repeat(9000)),
            431,
            "headers_too_large",
        ),
        (
            "traversal",
            c.put(format!("{base}/file?path=/../etc/passwd")).body("x"),
            400,
            "invalid_path",
        ),
        (
            "dot-dot component",
            c.post(format!("{base}/mkdir"))
                .json(&json!({"path": "/a/../b"})),
            400,
            "invalid_path",
        ),
        (
            "NUL in a name",
            c.put(format!("{base}/file?path=/a%00b")).body("x"),
            400,
            "invalid_path",
        ),
        (
            "NUL in JSON",
            c.post(format!("{base}/mkdir"))
                .json(&json!({"path": "/a\u{0}b"})),
            400,
            "invalid_path",
        ),
        (
            "long component",
            c.post(format!("{base}/mkdir"))
                .json(&json!({"path": format!("/{}", "n".repeat(256))})),
            400,
            "invalid_path",
        ),
        (
            "bad branch",
            c.get(format!("{base}/stat?path=/&branch=../x")),
            400,
            "invalid_name",
        ),
        (
            "bad key",
            c.put(format!("{base}/extents/ext-zz")).body("x"),
            400,
            "invalid_key",
        ),
        (
            "bad key in batch",
            c.post(format!("{base}/extents-missing"))
                .json(&json!({"keys": ["fsx/volume"]})),
            400,
            "invalid_key",
        ),
        (
            "mismatched extent",
            c.put(format!("{base}/extents/{}", seg(&extent(1).1)))
                .body(extent(2).0),
            400,
            "key_mismatch",
        ),
        (
            "unknown volume",
            c.get(format!("{}/v1/volumes/nope", server.url())),
            404,
            "not_found",
        ),
        (
            "unknown route",
            c.get(format!("{}/v1/nothing", server.url())),
            404,
            "not_found",
        ),
    ];
    for (what, b, status, expect) in cases {
        let r = b.header("authorization", &auth).send().await.unwrap();
        assert_eq!(code(r).await, (status, expect.to_string()), "{what}");
        // The server still serves others.
        let ok = c
            .get(format!("{base}/stat?path=/"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "after {what}");
    }
    assert_eq!(
        snapshot(&vol).await,
        before,
        "refused requests changed the volume"
    );
    let (_, key1) = extent(1);
    let v = open(&vol).await;
    assert!(
        !fsx_store::ExtentBackendExt::exists(
            v.store().as_ref(),
            &fsx_store::ObjectKey::new(&key1).unwrap()
        )
        .await
        .unwrap(),
        "a mismatched extent was stored"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_per_token_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let a = token(&vol, Scope::Read, 1).await;
    let b = token(&vol, Scope::Read, 2).await;
    let limits = fsx_server::Limits {
        rate_per_sec: 0.0,
        rate_burst: 3.0,
        ..Default::default()
    };
    let server = serve(vec![vol], Some(limits)).await;
    let url = format!("{}/v1/volumes/vol/branches", server.url());
    let c = client();
    for _ in 0..3 {
        let r = c
            .get(&url)
            .header("authorization", format!("Bearer {a}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c
        .get(&url)
        .header("authorization", format!("Bearer {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (429, "rate_limited".into()));
    let r = c
        .get(&url)
        .header("authorization", format!("Bearer {b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "another token has its own bucket");
    server.shutdown().await.unwrap();
}
