//! The SQLite engine against the shared conformance suite, plus what only
//! an embedded engine has: schema versioning on disk, and readers that are
//! never refused while a writer holds its transaction.

use fsx_meta::sqlite::SqliteMeta;
use fsx_meta::{MetaEngine, MetaErrorKind, VolumeConfig};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

#[test]
fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    let failures = block_on(fsx_meta::conformance::run(|| {
        n += 1;
        let path = dir.path().join(format!("meta-{n}.db"));
        async move { Box::new(SqliteMeta::open(path, true).unwrap()) as Box<dyn MetaEngine> }
    }));
    assert!(failures.is_empty(), "conformance failures: {failures:#?}");
    assert_eq!(n, fsx_meta::conformance::CHECKS.len());
}

#[test]
fn missing_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteMeta::open(dir.path().join("nope.db"), false).unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::NotFound);
    assert!(err.to_string().contains("nope.db"), "{err}");
    let err = SqliteMeta::open_url("postgres://x", false).unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::InvalidInput);
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let m = SqliteMeta::open(&path, true).unwrap();
    block_on(m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))).unwrap();
    drop(m);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE fsx_volume SET value = '99' WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(c);
    let m = SqliteMeta::open(&path, false).unwrap();
    let err = block_on(m.open_volume()).unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::Unsupported);
    assert!(err.to_string().contains("upgrade fsx"), "{err}");
    drop(m);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM fsx_volume WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, "99");
}

#[test]
fn readers_are_not_locked_out_by_a_writer_in_another_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let m = SqliteMeta::open(&path, true).unwrap();
    block_on(m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))).unwrap();
    block_on(m.create_file("f", 4096, 1)).unwrap();
    // Another process's writer holds an open write transaction.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("UPDATE fsx_files SET size = 1 WHERE name = 'f'", [])
        .unwrap();
    // Readers see the last committed state at once.
    for _ in 0..20 {
        assert_eq!(block_on(m.file("f")).unwrap().size, 0);
    }
    tx.commit().unwrap();
    assert_eq!(block_on(m.file("f")).unwrap().size, 1);
}

#[test]
fn an_older_schema_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let m = SqliteMeta::open(&path, true).unwrap();
    block_on(m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))).unwrap();
    block_on(m.create_file("kept", 4096, 1)).unwrap();
    drop(m);
    // Turn it into a version-1 volume: no counters or tier tables.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE fsx_counters; DROP TABLE fsx_tier_copies; DROP TABLE fsx_extent_access; DROP TABLE fsx_extent_digests;
         UPDATE fsx_volume SET value = '1' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(c);
    let m = SqliteMeta::open(&path, false).unwrap();
    block_on(m.open_volume()).unwrap();
    let counter = fsx_meta::Counter {
        tier: "cold".into(),
        op: "put".into(),
        calls: 1,
        bytes: 2,
    };
    block_on(m.add_counters(std::slice::from_ref(&counter))).unwrap();
    assert_eq!(block_on(m.counters()).unwrap(), vec![counter]);
    assert_tier_tables_work(&m);
    assert_eq!(
        block_on(m.file("kept")).unwrap().name,
        "kept",
        "migration keeps the data"
    );
    drop(m);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM fsx_volume WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, fsx_meta::SCHEMA_VERSION.to_string());
}

/// The version-3 tables exist and work after a migration.
fn assert_tier_tables_work(m: &SqliteMeta) {
    use fsx_meta::{CopyState, TierMark};
    let mark = TierMark::new("extent/ext-1", "cold", 7, CopyState::Queued);
    block_on(m.tier_record(std::slice::from_ref(&mark), 5)).unwrap();
    assert_eq!(block_on(m.tier_due(5, 10)).unwrap().len(), 1);
    block_on(m.touch_extent("extent/ext-1", 2, 9)).unwrap();
    assert_eq!(block_on(m.extent_access("extent/ext-1")).unwrap().hits, 2);
}

#[test]
fn a_version_2_schema_gains_the_tier_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let m = SqliteMeta::open(&path, true).unwrap();
    block_on(m.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))).unwrap();
    drop(m);
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE fsx_tier_copies; DROP TABLE fsx_extent_access; DROP TABLE fsx_extent_digests;
         UPDATE fsx_volume SET value = '2' WHERE key = 'schema_version';",
    )
    .unwrap();
    drop(c);
    let m = SqliteMeta::open(&path, false).unwrap();
    block_on(m.open_volume()).unwrap();
    assert_tier_tables_work(&m);
}
