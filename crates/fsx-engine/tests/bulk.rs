//! Bulk writes: the extents a sync's buffer fills whole go straight to the
//! store and are installed by the sync's own metadata transaction; the rest
//! goes to the dirty buffer. The file reads back exactly, the whole extents
//! never sit in the dirty buffer, and fsck is clean.

mod common;

use std::sync::Arc;

use common::pattern;
use fsx_engine::{ManualEnv, NoProgress, OpenOptions, Volume, VolumeOptions};
use fsx_meta::sqlite::SqliteMeta;
use fsx_meta::{MetaFiles, VolumeConfig};
use fsx_store::local::LocalBackend;

const EXTENT: u32 = 256 << 10;
const PAGE: u32 = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_write_skips_the_dirty_buffer_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), true).unwrap());
    let store = Arc::new(LocalBackend::open(dir.path().join("data")).unwrap());
    let env = Arc::new(ManualEnv::new(1_000_000));
    let volume = Volume::create(
        meta.clone(),
        store,
        env,
        VolumeConfig::new("bulk", EXTENT, "file://data", 1),
        VolumeOptions::default(),
    )
    .await
    .unwrap();
    let mut f = volume
        .open_file("big", OpenOptions::create(PAGE))
        .await
        .unwrap();
    // Eleven whole extents and a partial one; two pages of extent 3 are
    // never written (a hole).
    let len = 11 * EXTENT as usize + 10_000;
    let mut want = pattern(1, len);
    let hole = 3 * EXTENT as usize..3 * EXTENT as usize + 2 * PAGE as usize;
    want[hole.clone()].fill(0);
    f.write_at(0, &want[..hole.start]).await.unwrap();
    f.write_at(hole.end as u64, &want[hole.end..])
        .await
        .unwrap();
    f.truncate(len as u64).await.unwrap();
    f.sync().await.unwrap();
    let ppe = u64::from(EXTENT / PAGE);
    let dirty = meta
        .dirty_summary(f.view(), meta.file(f.view(), "big").await.unwrap().id, ppe)
        .await
        .unwrap();
    // Extent 3 (its two unwritten pages were never in the buffer) and the
    // partial extent 11 go to the dirty buffer; every other one does not.
    let idx: Vec<u64> = dirty.iter().map(|d| d.extent_idx).collect();
    assert_eq!(idx, [3, 11], "{dirty:?}");
    assert_eq!(
        f.read_at(0, len).await.unwrap(),
        want,
        "the writer reads it"
    );
    f.close().await.unwrap();
    let r = volume.open_file("big", OpenOptions::read()).await.unwrap();
    assert_eq!(r.read_at(0, len).await.unwrap(), want, "a reader reads it");
    let fsck = volume.fsck(&NoProgress).await.unwrap();
    assert!(fsck.is_clean(), "{fsck:?}");
}

/// An extent the buffer fills starts on its way to the store before the
/// sync; a later write into it, or a truncation, must win over that early
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_an_extent_filled_win_over_its_early_upload() {
    let (_t, v) = common::TestVolume::new(EXTENT).await;
    let mut f = v
        .volume
        .open_file("f", OpenOptions::create(PAGE))
        .await
        .unwrap();
    let extent = EXTENT as usize;
    let mut want = pattern(3, 4 * extent);
    // Extents 0-3 fill whole and are staged, one write each.
    for i in 0..4 {
        f.write_at((i * extent) as u64, &want[i * extent..(i + 1) * extent])
            .await
            .unwrap();
    }
    // A page of extent 1 rewritten, extent 2 rewritten whole.
    let page = pattern(4, PAGE as usize);
    let at = extent + 5 * PAGE as usize;
    want[at..at + PAGE as usize].copy_from_slice(&page);
    f.write_at(at as u64, &page).await.unwrap();
    let again = pattern(5, extent);
    want[2 * extent..3 * extent].copy_from_slice(&again);
    f.write_at((2 * extent) as u64, &again).await.unwrap();
    f.sync().await.unwrap();
    assert!(
        f.read_at(0, want.len()).await.unwrap() == want,
        "after the sync"
    );
    // Staged again, then cut into: the cut wins.
    let more = pattern(6, extent);
    f.write_at((4 * extent) as u64, &more).await.unwrap();
    f.truncate((4 * extent + 100) as u64).await.unwrap();
    want.extend_from_slice(&more[..100]);
    f.sync().await.unwrap();
    f.close().await.unwrap();
    let reopened = _t.reopen().await;
    let r = reopened
        .volume
        .open_file("f", OpenOptions::read())
        .await
        .unwrap();
    assert_eq!(r.size(), want.len() as u64);
    assert!(
        r.read_at(0, want.len()).await.unwrap() == want,
        "after reopening"
    );
    let fsck = reopened.volume.fsck(&NoProgress).await.unwrap();
    assert!(fsck.is_clean(), "{fsck:?}");
}
