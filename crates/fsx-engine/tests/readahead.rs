//! The read path's economies, counted: a handle that holds the lease reads
//! a whole file page by page with one map query per batch of extents, not
//! one per page; a sequential read loads the next extents ahead in one go,
//! as `io.readahead_extents` says (0 turns it off); a fresh handle finds
//! what another handle of the process already loaded in the volume's
//! cache. Every count is checked against the bytes read.

mod common;

use std::sync::Arc;

use common::{TestVolume, pattern};
use fsx_engine::{OpenOptions, Volume};
use fsx_meta::sqlite::SqliteMeta;

const EXTENT: u32 = 256 << 10;
const PAGE: u32 = 4096;
const PPE: u64 = (EXTENT / PAGE) as u64;
const EXTENTS: usize = 24;

struct Fixture {
    _volume: TestVolume,
    meta: Arc<SqliteMeta>,
    volume: Volume,
    want: Vec<u8>,
}

/// A volume holding one packed file of [`EXTENTS`] extents, reopened so
/// its cache is empty, with `settings` stored before the reopen.
async fn fixture(settings: &[(&str, &str)]) -> Fixture {
    let (t, first) = TestVolume::new(EXTENT).await;
    let want = pattern(7, EXTENTS * EXTENT as usize);
    let mut f = first
        .volume
        .open_file("db", OpenOptions::create(PAGE))
        .await
        .unwrap();
    f.write_at(0, &want).await.unwrap();
    f.close().await.unwrap();
    for (name, value) in settings {
        fsx_engine::settings::set_io_knob(first.meta.as_ref(), name, value)
            .await
            .unwrap();
    }
    let again = t.reopen().await;
    Fixture {
        _volume: t,
        meta: again.meta,
        volume: again.volume,
        want,
    }
}

/// Store gets since the volume opened (the volume's own counters, less
/// the one read of its marker object).
async fn gets(v: &Volume) -> u64 {
    let stats = v.stats().await.unwrap();
    stats
        .counters
        .iter()
        .filter(|c| c.tier == fsx_engine::DATA_TIER && c.op == "get")
        .map(|c| c.calls)
        .sum::<u64>()
        - 1
}

async fn read_pages(f: &fsx_engine::File, pages: std::ops::Range<u64>, want: &[u8]) {
    for p in pages {
        let got = f.read_page(p).await.unwrap();
        let at = (p * u64::from(PAGE)) as usize;
        assert_eq!(&got[..], &want[at..at + PAGE as usize], "page {p}");
    }
}

#[tokio::test]
async fn a_lease_holder_reads_page_by_page_with_a_query_per_batch() {
    let fx = fixture(&[]).await;
    let f = fx
        .volume
        .open_file("db", OpenOptions::write())
        .await
        .unwrap();
    let before = fx.meta.statements();
    let pages = EXTENTS as u64 * PPE;
    read_pages(&f, 0..pages, &fx.want).await;
    let queries = fx.meta.statements() - before;
    // Without a snapshot this would be a map read (a few statements) per
    // page: 1,536. With one: four map reads, of extent 0, then of each
    // readahead batch (1-9, 10-18, 19-23).
    assert!(
        queries <= 4 * 4,
        "{queries} metadata statements to read {pages} pages"
    );
    // Read again: everything is in the snapshot and the cache.
    let before = fx.meta.statements();
    read_pages(&f, 0..pages, &fx.want).await;
    assert_eq!(fx.meta.statements() - before, 0, "a second pass queries");
}

#[tokio::test]
async fn a_sequential_read_loads_the_next_extents_ahead() {
    let fx = fixture(&[]).await;
    let f = fx
        .volume
        .open_file("db", OpenOptions::read())
        .await
        .unwrap();
    assert_eq!(gets(&fx.volume).await, 0);
    // The first read is not known to be sequential: one extent.
    read_pages(&f, 0..PPE, &fx.want).await;
    assert_eq!(gets(&fx.volume).await, 1);
    // The first page of extent 1 continues the run: extent 1 and the
    // eight after it (the default) are loaded together.
    read_pages(&f, PPE..PPE + 1, &fx.want).await;
    assert_eq!(gets(&fx.volume).await, 10);
    // Nothing more is loaded until the run passes extent 9.
    read_pages(&f, PPE + 1..10 * PPE, &fx.want).await;
    assert_eq!(gets(&fx.volume).await, 10);
    read_pages(&f, 10 * PPE..10 * PPE + 1, &fx.want).await;
    assert_eq!(gets(&fx.volume).await, 19);
    // A jump is not sequential: just the extent it lands in.
    read_pages(&f, 22 * PPE..22 * PPE + 1, &fx.want).await;
    assert_eq!(gets(&fx.volume).await, 20);
}

#[tokio::test]
async fn readahead_follows_the_volume_setting() {
    let fx = fixture(&[("io.readahead_extents", "0")]).await;
    let stats = fx.volume.stats().await.unwrap();
    assert!(
        stats.io.contains(&("io.readahead_extents", 0)),
        "{:?}",
        stats.io
    );
    let f = fx
        .volume
        .open_file("db", OpenOptions::read())
        .await
        .unwrap();
    read_pages(&f, 0..3 * PPE, &fx.want).await;
    assert_eq!(gets(&fx.volume).await, 3, "one load per extent, none ahead");

    let fx = fixture(&[("io.readahead_extents", "2")]).await;
    let f = fx
        .volume
        .open_file("db", OpenOptions::read())
        .await
        .unwrap();
    read_pages(&f, 0..PPE + 1, &fx.want).await;
    assert_eq!(gets(&fx.volume).await, 1 + 3);
}

#[tokio::test]
async fn a_fresh_handle_reads_what_the_process_already_loaded() {
    let fx = fixture(&[]).await;
    let len = fx.want.len();
    {
        let f = fx
            .volume
            .open_file("db", OpenOptions::read())
            .await
            .unwrap();
        assert_eq!(f.read_at(0, len).await.unwrap(), fx.want);
    }
    let loaded = gets(&fx.volume).await;
    assert_eq!(loaded, EXTENTS as u64, "each extent loaded once");
    let f = fx
        .volume
        .open_file("db", OpenOptions::write())
        .await
        .unwrap();
    read_pages(&f, 0..EXTENTS as u64 * PPE, &fx.want).await;
    assert_eq!(
        gets(&fx.volume).await,
        loaded,
        "the second handle loaded again"
    );
}

#[tokio::test]
async fn stored_settings_out_of_range_are_refused() {
    let fx = fixture(&[]).await;
    for (name, value) in [
        ("io.extents_in_flight", "0"),
        ("io.readahead_extents", "-3"),
        ("io.cache_bytes", "lots"),
        ("io.nonsense", "1"),
    ] {
        let err = fsx_engine::settings::set_io_knob(fx.meta.as_ref(), name, value)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), fsx_engine::ErrorKind::InvalidInput, "{err}");
    }
    let stats = fx.volume.stats().await.unwrap();
    assert!(
        stats.io.contains(&("io.extents_in_flight", 4)),
        "{:?}",
        stats.io
    );
}
