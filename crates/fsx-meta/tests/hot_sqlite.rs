//! The SQLite hot tier: the store conformance suite at a Durable Object's
//! row limit and at a small one (objects of many parts), and the split of
//! a full extent into rows that each fit the limit.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::assert_store_conformance;
use fsx_meta::hot::{DEFAULT_MAX_ROW_BYTES, MIN_ROW_BYTES, ROW_OVERHEAD};
use fsx_meta::prelude::*;
use fsx_meta::sqlite::SqliteMeta;
use fsx_meta::{MetaErrorKind, VolumeConfig};
use fsx_store::{ExtentBackend, ObjectKey};

fn volume(dir: &std::path::Path) -> SqliteMeta {
    let meta = SqliteMeta::open(dir.join("meta.db"), true).unwrap();
    futures_executor::block_on(meta.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1)))
        .unwrap();
    meta
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_store_conformance_at_the_durable_object_row_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = volume(dir.path()).hot_store(DEFAULT_MAX_ROW_BYTES).unwrap();
    assert_store_conformance(Arc::new(store), "conf/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_store_conformance_with_many_small_parts() {
    let dir = tempfile::tempdir().unwrap();
    let store = volume(dir.path()).hot_store(100_000).unwrap();
    assert_store_conformance(Arc::new(store), "conf/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_extent_is_split_into_rows_that_fit() {
    let dir = tempfile::tempdir().unwrap();
    let meta = volume(dir.path());
    let store = meta.hot_store(DEFAULT_MAX_ROW_BYTES).unwrap();
    let value: Vec<u8> = (0..(2 << 20) + 64)
        .map(|i: usize| (i * 7 + i / 251) as u8)
        .collect();
    let value = Bytes::from(value);
    let key = ObjectKey::for_content(&value);
    store.put(&key, value.clone()).await.unwrap();

    let db = rusqlite::Connection::open(meta.path()).unwrap();
    let (rows, largest): (i64, i64) = db
        .query_row(
            "SELECT count(*), max(length(data) + length(CAST(key AS BLOB)) + ?2) FROM fsx_hot_extents WHERE key = ?1",
            rusqlite::params![key.as_str(), ROW_OVERHEAD as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, 2, "a 2 MiB + 64 B extent takes two rows");
    assert!(
        largest as usize <= DEFAULT_MAX_ROW_BYTES,
        "a row of {largest} bytes exceeds the limit"
    );

    assert_eq!(
        store.get(&key).await.unwrap(),
        value,
        "read back byte-identical"
    );
    assert_eq!(store.head(&key).await.unwrap().size, value.len() as u64);
    // A range across the part boundary, and one inside the second part.
    for range in [1_999_000..2_001_000u64, 2_097_000..2_097_216, 0..1] {
        let got = store.get_range(&key, range.clone()).await.unwrap();
        assert_eq!(
            got,
            value.slice(range.start as usize..range.end as usize),
            "{range:?}"
        );
    }
    // A shorter re-put leaves no stale second part behind.
    store.put(&key, Bytes::from_static(b"short")).await.unwrap();
    let rows: i64 = db
        .query_row(
            "SELECT count(*) FROM fsx_hot_extents WHERE key = ?1",
            [key.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"short"));
}

#[test]
fn a_row_limit_below_the_minimum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = volume(dir.path());
    let err = meta.hot_store(MIN_ROW_BYTES - 1).unwrap_err();
    assert_eq!(err.kind(), MetaErrorKind::InvalidInput, "{err}");
    meta.hot_store(MIN_ROW_BYTES).unwrap();
}
