//! The PostgreSQL hot tier against a real server (`FSX_TEST_PG_URL`, or a
//! throwaway cluster): the store conformance suite at a Durable Object's row
//! limit and at a small one, and the split of a full extent into rows that
//! each fit the limit.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::assert_store_conformance;
use common::pg::PgServer;
use fsx_meta::VolumeConfig;
use fsx_meta::hot::{DEFAULT_MAX_ROW_BYTES, MIN_ROW_BYTES, ROW_OVERHEAD};
use fsx_meta::postgres::PgMeta;
use fsx_meta::prelude::*;
use fsx_store::{ExtentBackend, ObjectKey};

async fn volume(url: &str) -> PgMeta {
    let meta = PgMeta::connect(url).await.unwrap();
    meta.init_volume(&VolumeConfig::new("v", 2 << 20, "memory://", 1))
        .await
        .unwrap();
    meta
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_store_conformance_at_the_durable_object_row_limit() {
    let server = PgServer::start();
    let store = volume(&server.fresh_url())
        .await
        .hot_store(DEFAULT_MAX_ROW_BYTES)
        .unwrap();
    assert_store_conformance(Arc::new(store), "conf/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_store_conformance_with_many_small_parts() {
    let server = PgServer::start();
    let store = volume(&server.fresh_url())
        .await
        .hot_store(100_000)
        .unwrap();
    assert_store_conformance(Arc::new(store), "conf/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_extent_is_split_into_rows_that_fit() {
    let server = PgServer::start();
    let schema = server.fresh_schema();
    let meta = volume(&server.url(&schema)).await;
    let store = meta.hot_store(DEFAULT_MAX_ROW_BYTES).unwrap();
    let value: Vec<u8> = (0..(2 << 20) + 64)
        .map(|i: usize| (i * 7 + i / 251) as u8)
        .collect();
    let value = Bytes::from(value);
    let key = ObjectKey::for_content(&value);
    store.put(&key, value.clone()).await.unwrap();

    let raw = server.raw_client().await;
    let sql = format!(
        "SELECT count(*), max(octet_length(data) + octet_length(key) + $2)::bigint
         FROM {schema}.fsx_hot_extents WHERE key = $1"
    );
    let row = raw
        .query_one(sql.as_str(), &[&key.as_str(), &(ROW_OVERHEAD as i32)])
        .await
        .unwrap();
    let (rows, largest): (i64, i64) = (row.get(0), row.get(1));
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
    for range in [1_999_000..2_001_000u64, 2_097_000..2_097_216, 0..1] {
        let got = store.get_range(&key, range.clone()).await.unwrap();
        assert_eq!(
            got,
            value.slice(range.start as usize..range.end as usize),
            "{range:?}"
        );
    }
    store.put(&key, Bytes::from_static(b"short")).await.unwrap();
    let sql = format!("SELECT count(*) FROM {schema}.fsx_hot_extents WHERE key = $1");
    let rows: i64 = raw
        .query_one(sql.as_str(), &[&key.as_str()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "a shorter re-put leaves no stale part");
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"short"));
}

/// Two engine instances race puts of one key with objects of different
/// part counts: every read is one whole object, never a mix of parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_from_two_instances_never_mix_parts() {
    let server = PgServer::start();
    let url = server.fresh_url();
    let a = Arc::new(volume(&url).await.hot_store(50_000).unwrap());
    let b = Arc::new(
        PgMeta::connect(&url)
            .await
            .unwrap()
            .hot_store(50_000)
            .unwrap(),
    );
    let key = ObjectKey::new("extent/contended").unwrap();
    let values: Vec<Bytes> = (0..6u8)
        .map(|i| Bytes::from(vec![i; 40_000 * (i as usize + 1)]))
        .collect();
    let mut tasks = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (k, v) = (key.clone(), v.clone());
        tasks.push(tokio::spawn(async move {
            store.put(&k, v).await.map(|()| None)
        }));
        let store = if i % 2 == 0 { b.clone() } else { a.clone() };
        let k = key.clone();
        tasks.push(tokio::spawn(async move {
            match store.get(&k).await {
                Ok(got) => Ok(Some(got)),
                Err(e) if e.kind() == fsx_store::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }));
    }
    for t in tasks {
        if let Some(got) = t.await.unwrap().unwrap() {
            assert!(
                values.contains(&got),
                "a read of {} bytes matches no put",
                got.len()
            );
        }
    }
    let last = a.get(&key).await.unwrap();
    assert!(values.contains(&last));
}

/// A put costs the same round trips however many parts its object has:
/// `BEGIN`, the key lock, the delete, one insert of every part, `COMMIT`;
/// a read costs `BEGIN`, part 0, the slices, `COMMIT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_do_not_grow_with_the_parts_of_an_object() {
    let server = PgServer::start();
    let meta = volume(&server.fresh_url()).await;
    let store = meta.hot_store(MIN_ROW_BYTES).unwrap();
    let key = ObjectKey::new("extent/parts").unwrap();
    let one_part = Bytes::from(vec![1u8; 1000]);
    let six_parts = Bytes::from(vec![6u8; 6 * 4096 + 17]);
    // Warm the statement cache: a prepare counts only on a miss.
    store.put(&key, one_part.clone()).await.unwrap();
    store.get(&key).await.unwrap();

    for value in [one_part, six_parts] {
        let from = meta.round_trips();
        store.put(&key, value.clone()).await.unwrap();
        assert_eq!(
            meta.round_trips() - from,
            5,
            "a put of {} bytes: BEGIN, lock, delete, insert, COMMIT",
            value.len()
        );
        let from = meta.round_trips();
        assert_eq!(store.get(&key).await.unwrap(), value);
        assert_eq!(
            meta.round_trips() - from,
            4,
            "a get of {} bytes: BEGIN, part 0, slices, COMMIT",
            value.len()
        );
    }
}
