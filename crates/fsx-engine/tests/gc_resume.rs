//! A GC interrupted between deleting an extent's object and forgetting its
//! record leaves the record claimed. A writer that later packs the same
//! content cannot pin it until that deletion is finished, so the next GC
//! must finish it before it packs anything (here: the pages of a writer
//! that vanished): otherwise every later GC run failed on its own packing
//! and the volume could never be collected.

mod common;

use std::sync::Arc;

use common::pattern;
use fsx_engine::failpoint::{FailAction, Failpoint, FaultPlan, SeededFaults};
use fsx_engine::{ErrorKind, GcOptions, ManualEnv, NoProgress, OpenOptions, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_meta::sqlite::SqliteMeta;
use fsx_store::local::LocalBackend;

const EXTENT: u32 = 256 * 1024;

#[tokio::test]
async fn gc_finishes_an_interrupted_deletion_before_packing_the_same_content() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualEnv::new(1_000_000));
    let env = Arc::new(SeededFaults::new(
        clock.clone(),
        FaultPlan::none().at(Failpoint::GcForget, 1, FailAction::Error),
    ));
    let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), true).unwrap());
    let store = Arc::new(LocalBackend::open(dir.path().join("data")).unwrap());
    let config = VolumeConfig::new("gc-resume", EXTENT, "file://data", 1);
    let v = Volume::create(meta, store, env, config, VolumeOptions::default())
        .await
        .unwrap();
    let gc = GcOptions::default().grace_ms(0);
    let data = pattern(7, EXTENT as usize);

    let mut a = v.open_file("a", OpenOptions::create(4096)).await.unwrap();
    a.write_at(0, &data).await.unwrap();
    a.close().await.unwrap();
    v.delete("a").await.unwrap();
    clock.advance(1_000);
    // GC claims the unreferenced extent, deletes its object, and fails
    // before forgetting the record.
    let err = v.gc(&gc, &NoProgress).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("injected fault"), "{err}");

    // The same content again, durable at sync, by a writer that then
    // vanishes: its pages wait for GC to pack them.
    let mut b = v.open_file("b", OpenOptions::create(4096)).await.unwrap();
    b.write_at(0, &data).await.unwrap();
    b.sync().await.unwrap();
    drop(b);
    clock.advance(60_000);

    let report = v.gc(&gc, &NoProgress).await.unwrap();
    assert_eq!(report.resumed, 1, "{report:?}");
    assert_eq!(report.files_packed, 1, "{report:?}");
    let b = v.open_file("b", OpenOptions::read()).await.unwrap();
    assert!(b.read_at(0, data.len()).await.unwrap() == data);
    let fsck = v.fsck(&NoProgress).await.unwrap();
    assert!(fsck.is_clean(), "{fsck:?}");
    assert!(fsck.unpacked.is_empty(), "{fsck:?}");
    assert_eq!(fsck.extents_checked, 1, "{fsck:?}");
}

/// On a tiered volume, a GC killed while deleting a claimed extent's copies
/// leaves copy records of objects that are rightly gone until the next GC
/// finishes the deletion: fsck's scrub of every tier must not count them
/// as bad copies (nor try to repair them).
#[tokio::test]
async fn fsck_does_not_count_a_claimed_extents_deleted_copies_as_bad() {
    use fsx_engine::tier::TierSet;
    use fsx_store::ExtentBackend;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualEnv::new(1_000_000));
    // GC fails right after its claim, before deleting anything.
    let env = Arc::new(SeededFaults::new(
        clock.clone(),
        FaultPlan::none().at(Failpoint::GcDelete, 1, FailAction::Error),
    ));
    let meta: fsx_engine::MetaArc =
        Arc::new(SqliteMeta::open(dir.path().join("meta.db"), true).unwrap());
    let hot = meta.hot_tier(2_000_000).unwrap().unwrap();
    let cold = Arc::new(LocalBackend::open(dir.path().join("data")).unwrap());
    let config = VolumeConfig::new("gc-resume-tiers", EXTENT, "file://data", 1);
    let options = VolumeOptions::default().tiers(Some(TierSet::new().hot(Some(hot.clone()))));
    let v = Volume::create(meta, cold.clone(), env, config, options)
        .await
        .unwrap();
    let mut a = v.open_file("a", OpenOptions::create(4096)).await.unwrap();
    a.write_at(0, &pattern(9, EXTENT as usize)).await.unwrap();
    a.close().await.unwrap();
    v.tiers().unwrap().replicate_all().await.unwrap();
    v.delete("a").await.unwrap();
    clock.advance(1_000);
    let gc = GcOptions::default().grace_ms(0);
    v.gc(&gc, &NoProgress).await.unwrap_err();
    // What the killed GC got done: both copies deleted, records kept.
    let records = v.meta().list_extents(None, 10).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].state, fsx_meta::ExtentState::Deleting);
    let key = fsx_store::ObjectKey::new(&records[0].key).unwrap();
    hot.delete(&key).await.unwrap();
    cold.delete(&key).await.unwrap();

    let fsck = v.fsck(&NoProgress).await.unwrap();
    assert_eq!(fsck.deleting, 1, "{fsck:?}");
    assert!(fsck.bad_copies.is_empty(), "{fsck:?}");
    assert!(fsck.is_clean(), "{fsck:?}");
    v.gc(&gc, &NoProgress).await.unwrap();
    let fsck = v.fsck(&NoProgress).await.unwrap();
    assert_eq!(fsck.deleting, 0, "{fsck:?}");
    assert!(fsck.is_clean(), "{fsck:?}");
}
