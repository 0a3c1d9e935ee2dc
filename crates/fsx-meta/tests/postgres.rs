//! The PostgreSQL engine against a real server (`FSX_TEST_PG_URL`, or a
//! throwaway cluster the test starts): the shared conformance suite, schema
//! versioning, races between engine instances sharing one volume, and
//! connection errors that say what to fix.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::pg::PgServer;
use fsx_meta::postgres::PgMeta;
use fsx_meta::{
    ExtentState, LeaseRequest, MetaEngine, MetaErrorKind, PackCommit, PageWrite, VolumeConfig,
    WriteBatch,
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
async fn an_older_schema_is_migrated_on_open() {
    let server = PgServer::start();
    let schema = server.fresh_schema();
    let m = PgMeta::connect(&server.url(&schema)).await.unwrap();
    m.init_volume(&volume()).await.unwrap();
    m.create_file(MAIN_BRANCH, "kept", 4096, 1).await.unwrap();
    let raw = server.raw_client().await;
    let downgrade = format!(
        "DROP TABLE {schema}.fsx_counters; DROP TABLE {schema}.fsx_tier_copies; \
         DROP TABLE {schema}.fsx_extent_access; DROP TABLE {schema}.fsx_extent_digests; UPDATE {schema}.fsx_volume SET value = '1' WHERE key = 'schema_version'"
    );
    raw.batch_execute(downgrade.as_str()).await.unwrap();
    let m = PgMeta::connect(&server.url(&schema)).await.unwrap();
    m.open_volume().await.unwrap();
    let counter = fsx_meta::Counter {
        tier: "cold".into(),
        op: "put".into(),
        calls: 1,
        bytes: 2,
    };
    m.add_counters(std::slice::from_ref(&counter))
        .await
        .unwrap();
    assert_eq!(m.counters().await.unwrap(), vec![counter]);
    let mark = fsx_meta::TierMark::new("extent/ext-1", "cold", 7, fsx_meta::CopyState::Queued);
    m.tier_record(std::slice::from_ref(&mark), 5).await.unwrap();
    assert_eq!(
        m.tier_due(5, 10).await.unwrap().len(),
        1,
        "the version-3 queue works"
    );
    assert_eq!(
        m.file(View::MAIN, "kept").await.unwrap().name,
        "kept",
        "migration keeps the data"
    );
    let get = format!("SELECT value FROM {schema}.fsx_volume WHERE key = 'schema_version'");
    let v: String = raw.query_one(get.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(v, fsx_meta::SCHEMA_VERSION.to_string());
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
    a.create_file("only-in-a", 4096, 1).await.unwrap();
    assert_eq!(a.list_files("").await.unwrap().len(), 1);
    assert!(b.list_files("").await.unwrap().is_empty());
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
    let file = first.create_file("contended", 4096, 0).await.unwrap();
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
        let lease = second.lease(file.id).await.unwrap().expect("a lease");
        assert_eq!(lease.holder, winners[0], "round {round}");
        first.release_lease(file.id, &winners[0]).await.unwrap();
    }
    // Every accepted write is the winner's, one page per round at most.
    let map = first
        .read_map(file.id, 0, RACERS as u64, 512)
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
            .create_file(&format!("f{f}"), 4096, 0)
            .await
            .unwrap();
        let lease = LeaseRequest::new(file.id, format!("packer-{f}"), 0, TTL);
        engines[0].acquire_lease(&lease).await.unwrap();
        leases.push(lease);
    }
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
                    let c =
                        PackCommit::new(lease.clone(), 0, current.clone(), next.clone(), vec![]);
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
            let map = engines[0].read_map(lease.file_id, 0, 1, 512).await.unwrap();
            if let Some((_, k)) = map.extents.first() {
                let c = PackCommit::new(lease.clone(), 0, Some(k.clone()), None, vec![]);
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

/// A deadlock that PostgreSQL breaks by aborting the engine's transaction
/// is retried, not reported: another session holds `b` and then wants `a`
/// while the engine's rename holds `a` and waits for `b`. The engine waits
/// first and the other session's deadlock check is pushed far out, so the
/// engine's transaction is the victim; the retry then succeeds once the
/// other session commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_transaction_is_retried() {
    let server = PgServer::start();
    let schema = server.fresh_schema();
    let m = Arc::new(PgMeta::connect(&server.url(&schema)).await.unwrap());
    m.init_volume(&volume()).await.unwrap();
    m.create_file(MAIN_BRANCH, "a", 4096, 1).await.unwrap();
    m.create_file(MAIN_BRANCH, "b", 4096, 1).await.unwrap();

    let mut other = server.raw_client().await;
    // Only the engine's session may run the deadlock check in time, so it
    // is the victim however the machine schedules the two backends (the
    // test role is the cluster's superuser, who may set this).
    other
        .batch_execute("SET deadlock_timeout = '10min'")
        .await
        .unwrap();
    let watcher = server.raw_client().await;
    let tx = other.transaction().await.unwrap();
    let lock =
        |name: &str| format!("SELECT id FROM {schema}.fsx_files WHERE name = '{name}' FOR UPDATE");
    tx.query(lock("b").as_str(), &[]).await.unwrap();

    let engine = m.clone();
    let rename = tokio::spawn(async move { engine.rename_file(MAIN_BRANCH, "a", "b", true, "h", 2).await });
    // Bounded polling until the engine's transaction waits for our lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE wait_event_type = 'Lock' AND application_name = 'fsx'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the engine never waited for the lock"
        );
        tokio::task::yield_now().await;
    }
    // Close the cycle. The engine is aborted with 40P01 and retries, which
    // waits for this transaction to end.
    tx.query(lock("a").as_str(), &[])
        .await
        .expect("the engine, waiting first, should have been the deadlock victim");
    tx.commit().await.unwrap();
    rename
        .await
        .unwrap()
        .expect("the rename is retried after the deadlock");
    let names: Vec<String> = m
        .list_files(View::MAIN, "")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["b"]);
}
