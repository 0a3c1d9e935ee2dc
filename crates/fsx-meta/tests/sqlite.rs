//! The SQLite engine against the shared conformance suite, plus what only
//! an embedded engine has: schema versioning on disk, and readers that are
//! never refused while a writer holds its transaction.

use fsx_meta::prelude::*;
use fsx_meta::sqlite::SqliteMeta;
use fsx_meta::{MAIN_BRANCH, MetaErrorKind, View, VolumeConfig};

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
    block_on(m.create_file(MAIN_BRANCH, "f", 4096, 1)).unwrap();
    // Another process's writer holds an open write transaction.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("UPDATE fsx_files SET size = 1 WHERE name = 'f'", [])
        .unwrap();
    // Readers see the last committed state at once.
    for _ in 0..20 {
        assert_eq!(block_on(m.file(View::MAIN, "f")).unwrap().size, 0);
    }
    tx.commit().unwrap();
    assert_eq!(block_on(m.file(View::MAIN, "f")).unwrap().size, 1);
}

/// A flipped bit in a dirty page's data, page number or checksum, made
/// straight in `meta.db`, is a `Corrupt` error, never wrong bytes.
#[test]
fn damaged_dirty_pages_are_refused() {
    for what in ["data", "page number", "checksum"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let m = SqliteMeta::open(&path, true).unwrap();
        let r = block_on(fsx_meta::conformance::damaged_dirty_page_is_refused(
            &m,
            |file, page| {
                let c = rusqlite::Connection::open(&path).unwrap();
                let key = rusqlite::params![file, page as i64];
                let n = match what {
                    "data" => {
                        let mut data: Vec<u8> = c
                            .query_row(
                                "SELECT data FROM fsx_dirty_pages WHERE file_id = ?1 AND page_no = ?2",
                                key,
                                |r| r.get(0),
                            )
                            .unwrap();
                        data[100] ^= 0x10;
                        c.execute(
                            "UPDATE fsx_dirty_pages SET data = ?3 WHERE file_id = ?1 AND page_no = ?2",
                            rusqlite::params![file, page as i64, data],
                        )
                    }
                    "page number" => c.execute(
                        "UPDATE fsx_dirty_pages SET page_no = page_no + 1 WHERE file_id = ?1 AND page_no = ?2",
                        key,
                    ),
                    _ => c.execute(
                        "UPDATE fsx_dirty_pages SET crc = crc + 1024 WHERE file_id = ?1 AND page_no = ?2",
                        key,
                    ),
                }
                .unwrap();
                assert_eq!(n, 1, "{what}: no row changed");
                async {}
            },
        ));
        assert_eq!(r, Ok(()), "flip of the {what}");
    }
}

/// A negative size or an oversized page size, written straight into
/// `meta.db`, reads back as `Corrupt` naming it, never as a wrapped number.
#[test]
fn out_of_range_columns_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let m = SqliteMeta::open(&path, true).unwrap();
    let r = block_on(fsx_meta::conformance::out_of_range_columns_are_corrupt(
        &m,
        |file, set| {
            let c = rusqlite::Connection::open(&path).unwrap();
            let n = c
                .execute(&format!("UPDATE fsx_files SET {set} WHERE id = ?1"), [file])
                .unwrap();
            assert!(n >= 1, "{set}: no row changed");
            async {}
        },
    ));
    assert_eq!(r, Ok(()));
}
