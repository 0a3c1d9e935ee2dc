//! Tests that need the engine's internals: volumes written by older schema
//! versions (built by running the real migrations up to that version), and
//! the engine's advisory locks.

use std::sync::Arc;

use bytes::Bytes;

use fsx_testkit::postgres::PgServer;

use super::conn::{TxKind, col, is_retryable, transact};
use super::*;
use crate::SCHEMA_VERSION;
use crate::contract::*;

/// A volume written by schema version `v` (1 to 3) migrates to the current
/// version with its files, extents, dirty pages and leases on `main`, and
/// new file ids collide neither with a file that exists nor with one the
/// old identity column handed out before it was deleted.
async fn migrate_from(server: &PgServer, v: usize) {
    let url = server.fresh_url();
    let m = PgMeta::connect(&url).await.unwrap();
    // Odd versions: the identity handed out ids up to 40 to files deleted
    // since, so only the sequence knows them. Even ones: file 7 was
    // inserted by id, so only max(id) knows it.
    let handed_out = if v % 2 == 1 {
        "SELECT setval(pg_get_serial_sequence('fsx_files', 'id'), 40);"
    } else {
        ""
    };
    let fixture = format!(
        "INSERT INTO fsx_volume (key, value) VALUES ('schema_version', '{v}'), ('volume_id', 'v'),
             ('extent_size', '2097152'), ('store_url', 'memory://'), ('created_ms', '1');
         INSERT INTO fsx_files (id, name, page_size, size, write_seq, created_ms, modified_ms)
             VALUES (7, 'kept', 4096, 8192, 3, 1, 2);
         {handed_out}
         INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
             VALUES ('extent/k', 1, 0, 100, 1, 1);
         INSERT INTO fsx_extent_map (file_id, extent_idx, key) VALUES (7, 0, 'extent/k');
         INSERT INTO fsx_dirty_pages (file_id, page_no, seq, data)
             VALUES (7, 1, 3, decode(repeat('00', 4096), 'hex'));
         INSERT INTO fsx_leases (file_id, holder, expires_ms) VALUES (7, 'w', 99);"
    );
    transact!(m.pool(), TxKind::Write, |tx| async {
        for sql in &schema::MIGRATIONS[..v] {
            tx.batch(sql).await?;
        }
        tx.batch(&fixture).await
    })
    .unwrap();

    // Another instance opens it, as a newer fsx would.
    let m = PgMeta::connect(&url).await.unwrap();
    m.open_volume().await.unwrap();
    let f = m.file(View::MAIN, "kept").await.unwrap();
    assert_eq!((f.id, f.size), (7, 8192), "from version {v}");
    let map = m.read_map(View::MAIN, 7, 0, 2, 512).await.unwrap();
    assert_eq!(map.extents, vec![(0, "extent/k".to_string())]);
    assert_eq!(map.dirty.len(), 1);
    let lease = m.lease(MAIN_BRANCH, 7).await.unwrap().unwrap();
    assert_eq!(lease.holder, "w");
    // New ids never collide with migrated or handed-out ones.
    let g = m.create_file(MAIN_BRANCH, "new", 4096, 3).await.unwrap();
    let bound = if v % 2 == 1 { 40 } else { 7 };
    assert!(g.id > bound, "from version {v}: new file id {}", g.id);
    let refs = m.count_references(None, 10).await.unwrap();
    assert_eq!(refs, vec![("extent/k".to_string(), 1)]);
    // Tables of every version work.
    m.add_counters(&[Counter {
        tier: "cold".into(),
        op: "put".into(),
        calls: 1,
        bytes: 2,
    }])
    .await
    .unwrap();
    let mark = TierMark::new("extent/k", "cold", 7, CopyState::Queued);
    m.tier_record(std::slice::from_ref(&mark), 5).await.unwrap();
    assert_eq!(m.tier_due(5, 10).await.unwrap().len(), 1);
    // The migrated file is writable, and branches see it.
    let lease = LeaseRequest::new(7, "w2", 100, 1000);
    m.acquire_lease(&lease).await.unwrap();
    let page = PageWrite {
        page_no: 0,
        data: Some(Bytes::from(vec![5; 4096])),
    };
    m.commit_writes(&WriteBatch::new(lease, vec![page], 8192))
        .await
        .unwrap();
    let dev = m.create_branch("dev", View::MAIN, 4).await.unwrap();
    let map = m
        .read_map(View::Branch(dev.id), 7, 0, 2, 512)
        .await
        .unwrap();
    assert_eq!(map.dirty.len(), 2, "dev inherits both dirty pages");
    let version = m.setting("schema_version").await.unwrap().unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_schemas_migrate_with_their_data() {
    let server = PgServer::start();
    // Versions whose tables have no layer column; their dirty page gets
    // its checksum from the 4 → 5 migration, or the reads above fail.
    for v in 1..4 {
        migrate_from(&server, v).await;
    }
}

/// A version-6 volume (the tables of 6, no token table) gets an empty
/// token table that works, and keeps its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_6_gets_tokens() {
    let server = PgServer::start();
    let url = server.fresh_url();
    let m = PgMeta::connect(&url).await.unwrap();
    m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))
        .await
        .unwrap();
    m.create_file(MAIN_BRANCH, "kept", 4096, 2).await.unwrap();
    transact!(m.pool(), TxKind::Write, |tx| async {
        tx.batch(
            "DROP TABLE fsx_tokens;
             DROP TABLE fsx_changes;
             DROP TABLE fsx_change_seq;
             UPDATE fsx_volume SET value = '6' WHERE key = 'schema_version';",
        )
        .await
    })
    .unwrap();
    let m = PgMeta::connect(&url).await.unwrap();
    m.open_volume().await.unwrap();
    assert!(m.file(View::MAIN, "kept").await.is_ok());
    assert!(m.tokens().await.unwrap().is_empty());
    m.create_token(&TokenRecord::new("0a", "", "read", "h", 3))
        .await
        .unwrap();
    assert_eq!(m.tokens().await.unwrap().len(), 1);
    let version = m.setting("schema_version").await.unwrap().unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
}

/// A version-7 volume gets an empty change feed numbering from 1, and
/// keeps its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_7_gets_changes() {
    let server = PgServer::start();
    let url = server.fresh_url();
    let m = PgMeta::connect(&url).await.unwrap();
    m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))
        .await
        .unwrap();
    m.create_file(MAIN_BRANCH, "kept", 4096, 2).await.unwrap();
    transact!(m.pool(), TxKind::Write, |tx| async {
        tx.batch(
            "DROP TABLE fsx_changes;
             DROP TABLE fsx_change_seq;
             UPDATE fsx_volume SET value = '7' WHERE key = 'schema_version';",
        )
        .await
    })
    .unwrap();
    let m = PgMeta::connect(&url).await.unwrap();
    m.open_volume().await.unwrap();
    assert!(m.file(View::MAIN, "kept").await.is_ok());
    assert_eq!(m.last_change().await.unwrap(), 0);
    m.create_file(MAIN_BRANCH, "new", 4096, 3).await.unwrap();
    let got = m.changes(0, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].seq, got[0].kind), (1, crate::ChangeKind::Make));
    let version = m.setting("schema_version").await.unwrap().unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
}

/// A version-8 volume keeps its changes (without an origin) and records
/// the origin of every change after them; two instances on one volume
/// record different origins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_8_gets_origins() {
    let server = PgServer::start();
    let url = server.fresh_url();
    let m = PgMeta::connect(&url).await.unwrap();
    m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))
        .await
        .unwrap();
    m.create_file(MAIN_BRANCH, "old", 4096, 2).await.unwrap();
    transact!(m.pool(), TxKind::Write, |tx| async {
        tx.batch(
            "ALTER TABLE fsx_changes DROP COLUMN origin;
             UPDATE fsx_volume SET value = '8' WHERE key = 'schema_version';",
        )
        .await
    })
    .unwrap();
    let a = PgMeta::connect(&url).await.unwrap();
    a.open_volume().await.unwrap();
    let b = PgMeta::connect(&url).await.unwrap();
    b.open_volume().await.unwrap();
    assert_ne!(a.origin(), b.origin());
    a.create_file(MAIN_BRANCH, "by-a", 4096, 3).await.unwrap();
    b.create_file(MAIN_BRANCH, "by-b", 4096, 4).await.unwrap();
    let got = b.changes(0, 10).await.unwrap();
    let origins: Vec<Option<i64>> = got.iter().map(|c| c.origin).collect();
    assert_eq!(origins, [None, Some(a.origin()), Some(b.origin())]);
    let version = m.setting("schema_version").await.unwrap().unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
}

/// The advisory lock the engine takes on file `id` of `branch` in
/// `schema`, as another session would spell it.
fn file_lock_sql(schema: &str, branch: BranchId, id: FileId) -> String {
    format!(
        "SELECT pg_advisory_xact_lock({}, hashtext(concat_ws('/', '{schema}', {branch}::BIGINT, {id}::BIGINT)))",
        super::dialect::FILE_LOCK
    )
}

/// A deadlock that PostgreSQL breaks by aborting the engine's transaction
/// is retried, not reported: another session holds the lock of file `b`
/// and then wants `a`'s while the engine's rename holds `a`'s and waits for
/// `b`'s. The engine waits first and the other session's deadlock check is
/// pushed far out, so the engine's transaction is the victim; the retry
/// then succeeds once the other session commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_transaction_is_retried() {
    let server = PgServer::start();
    let schema = server.fresh_schema();
    let m = Arc::new(PgMeta::connect(&server.url(&schema)).await.unwrap());
    m.init_volume(&VolumeConfig::new("vol-pg", 2 << 20, "memory://", 1))
        .await
        .unwrap();
    let a = m.create_file(MAIN_BRANCH, "a", 4096, 1).await.unwrap();
    let b = m.create_file(MAIN_BRANCH, "b", 4096, 1).await.unwrap();

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
    tx.batch_execute(&file_lock_sql(&schema, MAIN_BRANCH, b.id))
        .await
        .unwrap();

    let engine = m.clone();
    let rename = tokio::spawn(async move {
        engine
            .rename_file(FileRename::new(MAIN_BRANCH, "a", "b", "h", 2).replace(true))
            .await
    });
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
    tx.batch_execute(&file_lock_sql(&schema, MAIN_BRANCH, a.id))
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

/// The round-trip counter counts each exchange once: connecting, `BEGIN`,
/// a prepare only on a statement-cache miss, each query, `COMMIT`, and the
/// `ROLLBACK` of a transaction that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_count_every_exchange() {
    let server = PgServer::start();
    let m = PgMeta::connect(&server.fresh_url()).await.unwrap();
    assert_eq!(m.round_trips(), 2, "a connection and CREATE SCHEMA");
    let delta = |f: u64| m.round_trips() - f;

    let from = m.round_trips();
    let one = || async {
        transact!(m.pool(), TxKind::Read, |tx| async {
            col::<i64>(&tx.query_one("SELECT 1::BIGINT", &[]).await?, 0)
        })
    };
    assert_eq!(one().await.unwrap(), 1);
    assert_eq!(delta(from), 4, "BEGIN, prepare, query, COMMIT");
    let from = m.round_trips();
    one().await.unwrap();
    assert_eq!(
        delta(from),
        3,
        "BEGIN, query, COMMIT: the statement is cached"
    );

    let from = m.round_trips();
    transact!(m.pool(), TxKind::Write, |tx| tx.batch("SELECT 1; SELECT 2")).unwrap();
    assert_eq!(delta(from), 3, "BEGIN, batch, COMMIT");

    // No row where one is required: the call fails and rolls back.
    let from = m.round_trips();
    let err = transact!(m.pool(), TxKind::Read, |tx| tx
        .query_one("SELECT 1::BIGINT WHERE false", &[]))
    .unwrap_err();
    assert!(!is_retryable(&err), "{err}");
    assert_eq!(delta(from), 4, "BEGIN, prepare, query, ROLLBACK");

    // Clones share the count.
    let clone = m.clone();
    let from = m.round_trips();
    transact!(clone.pool(), TxKind::Read, |tx| tx
        .query_one("SELECT 1::BIGINT", &[]))
    .unwrap();
    assert_eq!(delta(from), 3, "a clone's call counts on the original");
}
