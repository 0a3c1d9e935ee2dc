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
