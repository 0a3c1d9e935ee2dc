//! The PostgreSQL engine against a real server (`FSX_TEST_PG_URL`, or a
//! throwaway cluster the test starts): the shared conformance suite, a
//! newer schema refused, races between engine instances sharing one volume
//! (leases, packing against GC, writes against commits and branch
//! changes), and connection errors that say what to fix. Migrations from
//! older schemas and the deadlock retry need the engine's internals: they
//! are unit tests in `fsx_meta::postgres`.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::pg::PgServer;
use fsx_meta::postgres::PgMeta;
use fsx_meta::prelude::*;
use fsx_meta::{
    CommitRequest, ExtentState, LeaseRequest, MAIN_BRANCH, MetaErrorKind, PackCommit, PageWrite,
    View, VolumeConfig, WriteBatch,
};

const TTL: i64 = 1_000_000;

fn volume() -> VolumeConfig {
    VolumeConfig::new("vol-pg", 2 << 20, "memory://", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let server = PgServer::start();
    let mut n = 0;
    let failures = fsx_meta::conformance::run(|| {
        n += 1;
        let url = server.fresh_url();
        async move { Box::new(PgMeta::connect(&url).await.expect("connect")) as Box<dyn MetaEngine> }
    })
    .await;
    assert!(failures.is_empty(), "conformance failures: {failures:#?}");
    assert_eq!(n, fsx_meta::conformance::CHECKS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused_and_left_untouched() {
    let server = PgServer::start();
    let schema = server.fresh_schema();
    let m = PgMeta::connect(&server.url(&schema)).await.unwrap();
    m.init_volume(&volume()).await.unwrap();
    assert_eq!(m.open_volume().await.unwrap(), volume());
    let raw = server.raw_client().await;
    let bump = format!("UPDATE {schema}.fsx_volume SET value = '99' WHERE key = 'schema_version'");
    assert_eq!(raw.execute(bump.as_str(), &[]).await.unwrap(), 1);
    // A second engine instance (think: another process) refuses it too.
    let other = PgMeta::connect(&server.url(&schema)).await.unwrap();
    for engine in [&m, &other] {
        let err = engine.open_volume().await.unwrap_err();
        assert_eq!(err.kind(), MetaErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("upgrade fsx"), "{err}");
    }
    let get = format!("SELECT value FROM {schema}.fsx_volume WHERE key = 'schema_version'");
    let v: String = raw.query_one(get.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(v, "99", "a refused open must not touch the version");
    // Initialising an existing volume is refused as well.
    let err = other.init_volume(&volume()).await.unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::AlreadyExists, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_isolate_volumes_in_one_database() {
    let server = PgServer::start();
    let a = PgMeta::connect(&server.fresh_url()).await.unwrap();
    let b = PgMeta::connect(&server.fresh_url()).await.unwrap();
    a.init_volume(&volume()).await.unwrap();
    b.init_volume(&VolumeConfig::new("vol-b", 1 << 20, "file:///b", 2))
        .await
        .unwrap();
    a.create_file(MAIN_BRANCH, "only-in-a", 4096, 1)
        .await
        .unwrap();
    assert_eq!(a.list_files(View::MAIN, "").await.unwrap().len(), 1);
    assert!(b.list_files(View::MAIN, "").await.unwrap().is_empty());
    assert_eq!(b.open_volume().await.unwrap().volume_id, "vol-b");
}

/// Many tasks on two engine instances race for one file's lease, round
/// after round: exactly one wins each round, the rest get `Busy`, and only
/// the winner's writes are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_race_between_instances_has_one_winner() {
    const ROUNDS: i64 = 15;
    const RACERS: usize = 12;
    let server = PgServer::start();
    let url = server.fresh_url();
    let first = Arc::new(PgMeta::connect(&url).await.unwrap());
    let second = Arc::new(PgMeta::connect(&url).await.unwrap());
    first.init_volume(&volume()).await.unwrap();
    let file = first
        .create_file(MAIN_BRANCH, "contended", 4096, 0)
        .await
        .unwrap();
    for round in 0..ROUNDS {
        let now = 1000 + round * 10;
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let engine = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let holder = format!("r{round}-w{i}");
            let id = file.id;
            tasks.push(tokio::spawn(async move {
                let lease = LeaseRequest::new(id, holder.clone(), now, TTL);
                let got = engine.acquire_lease(&lease).await;
                let page = PageWrite {
                    page_no: i as u64,
                    data: Some(Bytes::from(vec![i as u8; 4096])),
                };
                let wrote = engine
                    .commit_writes(&WriteBatch::new(lease, vec![page], 4096 * 64))
                    .await;
                (holder, got, wrote)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (holder, got, wrote) = t.await.unwrap();
            match got {
                Ok(()) => {
                    wrote.unwrap_or_else(|e| {
                        panic!("round {round}: the lease holder {holder} could not write: {e}")
                    });
                    winners.push(holder);
                }
                Err(e) => {
                    assert_eq!(
                        e.kind(),
                        MetaErrorKind::Busy,
                        "round {round}: {holder}: {e}"
                    );
                    let e = wrote.expect_err("a loser's write must be refused");
                    assert_eq!(
                        e.kind(),
                        MetaErrorKind::Busy,
                        "round {round}: {holder}: {e}"
                    );
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let lease = second
            .lease(MAIN_BRANCH, file.id)
            .await
            .unwrap()
            .expect("a lease");
        assert_eq!(lease.holder, winners[0], "round {round}");
        first
            .release_lease(MAIN_BRANCH, file.id, &winners[0])
            .await
            .unwrap();
    }
    // Every accepted write is the winner's, one page per round at most.
    let map = first
        .read_map(View::MAIN, file.id, 0, RACERS as u64, 512)
        .await
        .unwrap();
    assert!(!map.dirty.is_empty() && map.dirty.len() <= ROUNDS as usize);
}

/// Packers on two instances keep installing and dropping one extent on
/// many files while a collector on each instance tries to claim it.
/// Afterwards (and after every round) the extent's refcount equals the
/// number of map entries naming it, is never negative, and a claimed
/// (deleting) extent is referenced nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pack_and_gc_race_keeps_refcounts_exact() {
    const FILES: usize = 6;
    const ROUNDS: usize = 6;
    const FLIPS: usize = 5; // odd: packers end on an install
    let server = PgServer::start();
    let url = server.fresh_url();
    let engines = [
        Arc::new(PgMeta::connect(&url).await.unwrap()),
        Arc::new(PgMeta::connect(&url).await.unwrap()),
    ];
    engines[0].init_volume(&volume()).await.unwrap();
    let mut leases = Vec::new();
    for f in 0..FILES {
        let file = engines[0]
            .create_file(MAIN_BRANCH, &format!("f{f}"), 4096, 0)
            .await
            .unwrap();
        let lease = LeaseRequest::new(file.id, format!("packer-{f}"), 0, TTL);
        engines[0].acquire_lease(&lease).await.unwrap();
        leases.push(lease);
    }
    // Every pack installs into main's head (no commits here).
    let head = engines[0].branch("main").await.unwrap().head;
    let mut claimed_rounds = 0;
    let mut referenced_rounds = 0;
    for round in 0..ROUNDS {
        let key = format!("extent/ext-round-{round:02}");
        engines[round % 2].pin_extent(&key, 100, 0).await.unwrap();
        let mut tasks = Vec::new();
        for (f, lease) in leases.iter().enumerate() {
            let engine = engines[f % 2].clone();
            let lease = lease.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                // Install, drop, install...: each flip changes the refcount.
                let mut current: Option<String> = None;
                for flip in 0..FLIPS {
                    let next = if flip % 2 == 0 {
                        Some(key.clone())
                    } else {
                        None
                    };
                    let c = PackCommit::new(
                        lease.clone(),
                        head,
                        0,
                        current.clone(),
                        next.clone(),
                        vec![],
                    );
                    match engine.commit_pack(&c).await {
                        Ok(()) => current = next,
                        Err(e) if e.kind() == MetaErrorKind::Conflict => {}
                        Err(e) => panic!("commit_pack: {e}"),
                    }
                }
                current
            }));
        }
        for engine in &engines {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..FLIPS {
                    engine.gc_claim(10_000, 10, 100).await.expect("gc_claim");
                }
                None
            }));
        }
        let mut installed = 0;
        for t in tasks {
            if t.await.unwrap().is_some() {
                installed += 1;
            }
        }
        let rec = engines[0]
            .list_extents(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.key == key)
            .expect("the record survives: only gc_forget removes it");
        let refs = engines[1]
            .count_references(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, n)| n);
        assert!(
            rec.refcount >= 0,
            "round {round}: negative refcount {rec:?}"
        );
        assert_eq!(
            rec.refcount, refs,
            "round {round}: refcount differs from the map"
        );
        assert_eq!(
            refs, installed,
            "round {round}: map entries differ from the packers' view"
        );
        if rec.state == ExtentState::Deleting {
            assert_eq!(refs, 0, "round {round}: a claimed extent is referenced");
            claimed_rounds += 1;
        } else if refs > 0 {
            referenced_rounds += 1;
        }
        // Clear the files for the next round.
        for (f, lease) in leases.iter().enumerate() {
            let map = engines[0]
                .read_map(View::MAIN, lease.file_id, 0, 1, 512)
                .await
                .unwrap();
            if let Some((_, k)) = map.extents.first() {
                let c = PackCommit::new(lease.clone(), head, 0, Some(k.clone()), None, vec![]);
                engines[f % 2].commit_pack(&c).await.unwrap();
            }
        }
    }
    // Not an assertion on timing, just a record of what the races did.
    println!(
        "rounds claimed by GC: {claimed_rounds}, rounds ending referenced: {referenced_rounds}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_say_what_to_fix() {
    let server = PgServer::start();
    let mut wrong = url::Url::parse(server.base_url()).unwrap();
    wrong
        .set_password(Some("definitely-wrong-password"))
        .unwrap();
    let err = PgMeta::connect(wrong.as_str()).await.unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("password"), "{err}");
    assert!(
        !err.to_string().contains("definitely-wrong-password"),
        "password leaked: {err}"
    );

    let mut missing_db = url::Url::parse(server.base_url()).unwrap();
    missing_db.set_path("/no_such_database_fsx");
    let err = PgMeta::connect(missing_db.as_str()).await.unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("no_such_database_fsx"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PgMeta::connect(&format!("postgres://fsx:pw@127.0.0.1:{port}/fsx"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.to_string().contains("is the server running"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver error is kept as the source"
    );

    for bad in [
        "mysql://u:pw@h/db",
        "postgres://u:pw@h/db?schema=Has-Caps",
        "postgres://u:pw@h/db?nonsense=1",
    ] {
        let err = PgMeta::connect(bad).await.unwrap_err();
        assert_eq!(err.kind(), MetaErrorKind::InvalidInput, "{bad}: {err}");
    }
}

#[test]
fn connect_outside_a_runtime_is_a_clear_error_and_connect_on_works_anywhere() {
    let err =
        futures_executor::block_on(PgMeta::connect("postgres://u:pw@127.0.0.1:1/db")).unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("tokio runtime"), "{err}");

    // With a runtime handle, the engine's futures run on any executor.
    let server = PgServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let m = futures_executor::block_on(PgMeta::connect_on(
        &server.fresh_url(),
        runtime.handle().clone(),
    ))
    .unwrap();
    futures_executor::block_on(m.init_volume(&volume())).unwrap();
    assert_eq!(
        futures_executor::block_on(m.open_volume()).unwrap(),
        volume()
    );
    drop(m);
    drop(server);
}

/// What page 0 of a file holds in a view: its fill byte, whether a dirty
/// page or an extent holds it (the race test's extents are named after
/// their content, `extent/...-v<byte>`).
async fn page0_byte(m: &PgMeta, view: View, id: i64) -> Option<u8> {
    let map = m.read_map(view, id, 0, 1, 512).await.unwrap();
    if let Some(p) = map.dirty.first() {
        return p.data.as_ref().map(|d| d[0]);
    }
    map.extents
        .first()
        .map(|(_, k)| k.rsplit_once("-v").unwrap().1.parse().unwrap())
}

/// Writers on two engine instances keep writing (with automatic commits
/// due every few batches) and packing, while another task commits, creates
/// and deletes branches and expires automatic commits. No write may land in
/// a frozen layer: every commit still shows what it showed when it was
/// made, main ends with every writer's last write, the graph keeps its
/// invariants, and refcounts match the map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_race_commits_branches_and_expiry() {
    const FILES: usize = 4;
    const WRITES: u8 = 24;
    let server = PgServer::start();
    let url = server.fresh_url();
    let engines = [
        Arc::new(PgMeta::connect(&url).await.unwrap()),
        Arc::new(PgMeta::connect(&url).await.unwrap()),
    ];
    engines[0].init_volume(&volume()).await.unwrap();
    let mut writers = Vec::new();
    let mut ids = Vec::new();
    for f in 0..FILES {
        let engine = engines[f % 2].clone();
        let file = engine
            .create_file(MAIN_BRANCH, &format!("f{f}"), 4096, 0)
            .await
            .unwrap();
        ids.push(file.id);
        let lease = LeaseRequest::new(file.id, format!("w{f}"), 0, TTL);
        engine.acquire_lease(&lease).await.unwrap();
        writers.push(tokio::spawn(async move {
            for b in 1..=WRITES {
                let mut l = lease.clone();
                l.now_ms = 1000 + i64::from(b) * 10;
                let page = PageWrite {
                    page_no: 0,
                    data: Some(Bytes::from(vec![b; 4096])),
                };
                let batch = WriteBatch::new(l.clone(), vec![page], 4096).auto_commit(Some(30));
                engine.commit_writes(&batch).await.unwrap();
                if b % 4 != 0 {
                    continue;
                }
                // Pack extent 0 of whatever layer main's head is now (it
                // may be frozen by the time the pack lands).
                let d = engine
                    .dirty_extent(View::MAIN, l.file_id, 0, 512)
                    .await
                    .unwrap();
                let Some(p0) = d.pages.iter().find(|p| p.page_no == 0) else {
                    continue;
                };
                let byte = p0.data.as_ref().unwrap()[0];
                let key = format!("extent/f{f}-v{byte}");
                engine.pin_extent(&key, 4096, l.now_ms).await.unwrap();
                let consumed = d
                    .pages
                    .iter()
                    .filter(|p| !p.inherited)
                    .map(|p| (p.page_no, p.seq))
                    .collect();
                let c = PackCommit::new(l, d.layer, 0, d.current_key, Some(key), consumed);
                match engine.commit_pack(&c).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == MetaErrorKind::Conflict => {}
                    Err(e) => panic!("commit_pack: {e}"),
                }
            }
        }));
    }
    let ids = Arc::new(ids);
    let admin = {
        let engine = engines[1].clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for j in 0..12i64 {
                let now = 1000 + j * 20;
                let c = engine
                    .commit(CommitRequest::new(MAIN_BRANCH, "explicit", now))
                    .await
                    .unwrap()
                    .expect("an explicit commit is always made");
                let mut shown = Vec::new();
                for &id in ids.iter() {
                    shown.push(page0_byte(&engine, View::Commit(c.id), id).await);
                }
                seen.push((c.id, shown));
                let b = engine
                    .create_branch(&format!("b{j}"), View::MAIN, now)
                    .await
                    .unwrap();
                if j % 2 == 1 {
                    engine.delete_branch(&b.name, now).await.unwrap();
                }
                engine.expire_commits(now, now).await.unwrap();
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = admin.await.unwrap();
    let m = &engines[0];
    for (c, shown) in &seen {
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(
                page0_byte(m, View::Commit(*c), id).await,
                shown[i],
                "commit {c} changed what file {id} shows"
            );
        }
    }
    for w in seen.windows(2) {
        for i in 0..FILES {
            assert!(w[0].1[i] <= w[1].1[i], "commits went back in time: {w:?}");
        }
    }
    for &id in ids.iter() {
        assert_eq!(page0_byte(m, View::MAIN, id).await, Some(WRITES));
    }
    let g = m.layer_graph().await.unwrap();
    let frozen = |l: i64| g.layers.iter().find(|x| x.id == l).map(|x| x.frozen);
    for b in &g.branches {
        assert_eq!(frozen(b.head), Some(false), "head of {b:?}");
    }
    for c in &g.commits {
        assert_eq!(frozen(c.layer), Some(true), "layer of {c:?}");
    }
    for l in &g.layers {
        if let Some(p) = l.parent {
            assert_eq!(frozen(p), Some(true), "parent of {l:?}");
        }
    }
    let refs = m.count_references(None, 10_000).await.unwrap();
    let records = m.list_extents(None, 10_000).await.unwrap();
    for r in &records {
        let n = refs
            .iter()
            .find(|(k, _)| *k == r.key)
            .map_or(0, |(_, n)| *n);
        assert_eq!(r.refcount, n, "{r:?}");
    }
    // Not an assertion on timing, just a record of what the races did.
    println!(
        "commits kept: {} ({} automatic), layers: {}, branches: {}, extents: {} ({} referenced)",
        g.commits.len(),
        g.commits.iter().filter(|c| c.auto).count(),
        g.layers.len(),
        g.branches.len(),
        records.len(),
        refs.len()
    );
}

/// A flipped bit in a dirty page's data, page number or checksum, made
/// straight in the database, is a `Corrupt` error, never wrong bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_dirty_pages_are_refused() {
    let server = PgServer::start();
    let raw = server.raw_client().await;
    for (what, set) in [
        (
            "data",
            "data = overlay(data placing set_byte(substring(data from 101 for 1), 0,
                 get_byte(data, 100) # 16) from 101 for 1)",
        ),
        ("page number", "page_no = page_no + 1"),
        ("checksum", "crc = crc # 1024"),
    ] {
        let schema = server.fresh_schema();
        let m = PgMeta::connect(&server.url(&schema)).await.unwrap();
        let raw = &raw;
        let schema2 = schema.clone();
        let r = fsx_meta::conformance::damaged_dirty_page_is_refused(&m, |file, page| async move {
            let sql = format!(
                "UPDATE {schema2}.fsx_dirty_pages SET {set} WHERE file_id = $1 AND page_no = $2"
            );
            let n = raw
                .execute(sql.as_str(), &[&file, &(page as i64)])
                .await
                .unwrap();
            assert_eq!(n, 1, "{what}: no row changed");
        })
        .await;
        assert_eq!(r, Ok(()), "flip of the {what}");
    }
}

/// A negative size or an oversized page size, written straight into the
/// database, reads back as `Corrupt` naming it, never as a wrapped number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_columns_are_corrupt() {
    let server = PgServer::start();
    let raw = server.raw_client().await;
    let schema = server.fresh_schema();
    let m = PgMeta::connect(&server.url(&schema)).await.unwrap();
    let (raw, schema) = (&raw, &schema);
    let r = fsx_meta::conformance::out_of_range_columns_are_corrupt(&m, |file, set| async move {
        let sql = format!("UPDATE {schema}.fsx_files SET {set} WHERE id = $1");
        let n = raw.execute(sql.as_str(), &[&file]).await.unwrap();
        assert!(n >= 1, "{set}: no row changed");
    })
    .await;
    assert_eq!(r, Ok(()));
}
