//! The page store against real SQLite metadata and a real local-directory
//! store: durability of `sync`, one writer per file, packing, dedup and
//! reference counting, GC and fsck.

mod common;

use common::{TestVolume, extent_objects, pattern};
use fsx_engine::{ErrorKind, GcOptions, NoProgress, OpenOptions};
use fsx_store::ExtentBackend;
use fsx_store::wrappers::Operation;

const MIB: u32 = 1 << 20;

#[tokio::test]
async fn synced_writes_survive_a_lost_handle_and_unsynced_ones_do_not() {
    let (t, v) = TestVolume::new(MIB).await;
    let mut f = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    f.write_at(0, &pattern(1, 10_000)).await.unwrap();
    f.sync().await.unwrap();
    f.write_at(10_000, &pattern(2, 5_000)).await.unwrap();
    // The process dies: the handle is never closed, nothing more is synced.
    drop(f);
    drop(v);
    let v = t.reopen().await;
    let f = v.volume.open_file("db", OpenOptions::read()).await.unwrap();
    assert_eq!(f.size(), 10_000);
    assert_eq!(f.read_at(0, 20_000).await.unwrap(), pattern(1, 10_000));
}

#[tokio::test]
async fn one_writer_per_file_and_readers_never_blocked() {
    let (_t, v) = TestVolume::new(MIB).await;
    let mut w = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    let err = v
        .volume
        .open_file("db", OpenOptions::write())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(err.to_string().contains("cannot write \"db\""), "{err}");
    w.write_at(0, b"hello").await.unwrap();
    w.sync().await.unwrap();
    let r = v.volume.open_file("db", OpenOptions::read()).await.unwrap();
    assert_eq!(r.read_at(0, 5).await.unwrap(), b"hello");
    let err = v.volume.delete("db").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    w.close().await.unwrap();
    let w2 = v
        .volume
        .open_file("db", OpenOptions::write())
        .await
        .unwrap();
    assert!(w2.is_writer());
}

#[tokio::test]
async fn an_expired_lease_can_be_taken_over() {
    let (t, v) = TestVolume::new(MIB).await;
    let mut w = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    w.write_at(0, b"first").await.unwrap();
    w.sync().await.unwrap();
    t.env.advance(31_000);
    let mut w2 = v
        .volume
        .open_file("db", OpenOptions::write())
        .await
        .unwrap();
    w2.write_at(0, b"second").await.unwrap();
    w2.sync().await.unwrap();
    // The first writer lost its lease: its writes are refused, not torn in.
    w.write_at(0, b"stale!").await.unwrap();
    assert_eq!(w.sync().await.unwrap_err().kind(), ErrorKind::Busy);
    let r = v.volume.open_file("db", OpenOptions::read()).await.unwrap();
    assert_eq!(r.read_at(0, 6).await.unwrap(), b"second");
}

#[tokio::test]
async fn an_idle_writer_that_renews_its_lease_keeps_the_file() {
    let (t, v) = TestVolume::new(MIB).await;
    let mut w = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    w.write_at(0, b"first").await.unwrap();
    w.sync().await.unwrap();
    // Idle for twice the 30 s lease, renewing as a mount's daemon does.
    for _ in 0..12 {
        t.env.advance(5_000);
        w.renew_lease().await.unwrap();
    }
    let other = v.volume.open_file("db", OpenOptions::write()).await;
    assert_eq!(other.unwrap_err().kind(), ErrorKind::Busy);
    w.write_at(0, b"later").await.unwrap();
    w.sync().await.unwrap();
    // A reader renews nothing and fails nothing.
    let mut r = v.volume.open_file("db", OpenOptions::read()).await.unwrap();
    r.renew_lease().await.unwrap();
    assert_eq!(r.read_at(0, 5).await.unwrap(), b"later");
}

#[tokio::test]
async fn packing_turns_many_page_writes_into_few_extent_puts() {
    let (t, v) = TestVolume::new(2 * MIB).await;
    let mut f = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    // 16 MiB in 4096 page writes, synced every 64 pages like a database.
    for page in 0..4096u64 {
        f.write_page(page, &pattern(page, 4096)).await.unwrap();
        if page % 64 == 63 {
            f.sync().await.unwrap();
        }
    }
    f.close().await.unwrap();
    let puts = v.meter.snapshot().op(Operation::Put).calls;
    // 8 extents, plus the volume marker written at creation.
    assert_eq!(puts, 8 + 1, "16 MiB of 4 KiB pages must cost 8 extent PUTs");
    let v2 = t.reopen().await;
    let f = v2
        .volume
        .open_file("db", OpenOptions::read())
        .await
        .unwrap();
    for page in [0u64, 511, 512, 4095] {
        assert_eq!(
            f.read_page(page).await.unwrap(),
            pattern(page, 4096),
            "page {page}"
        );
    }
    assert_eq!(extent_objects(&v2.local).await.len(), 8);
}

#[tokio::test]
async fn identical_extents_are_stored_once_and_never_deleted_while_shared() {
    let (t, v) = TestVolume::new(MIB).await;
    let data = pattern(7, MIB as usize);
    for name in ["a", "b"] {
        let mut f = v
            .volume
            .open_file(name, OpenOptions::create(4096))
            .await
            .unwrap();
        f.write_at(0, &data).await.unwrap();
        f.close().await.unwrap();
    }
    assert_eq!(
        extent_objects(&v.local).await.len(),
        1,
        "two identical files, one extent"
    );

    // Rewrite a's only extent: the shared extent must survive for b (the
    // TypeScript reference deleted it here).
    let mut a = v.volume.open_file("a", OpenOptions::write()).await.unwrap();
    a.write_at(0, b"changed").await.unwrap();
    a.close().await.unwrap();
    t.env.advance(2 * 60 * 60 * 1000);
    let report = v
        .volume
        .gc(&GcOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.deleted, 0);
    let b = v.volume.open_file("b", OpenOptions::read()).await.unwrap();
    assert_eq!(b.read_at(0, MIB as usize).await.unwrap(), data);

    // Once b is gone too, GC frees it — but only after the grace period.
    v.volume.delete("b").await.unwrap();
    let report = v
        .volume
        .gc(&GcOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.deleted, 0, "inside the grace period");
    t.env.advance(60 * 60 * 1000 + 1);
    let report = v
        .volume
        .gc(&GcOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert_eq!(
        extent_objects(&v.local).await.len(),
        1,
        "only a's new extent is left"
    );
    let a = v.volume.open_file("a", OpenOptions::read()).await.unwrap();
    assert_eq!(&a.read_at(0, 7).await.unwrap(), b"changed");
    assert_eq!(a.read_at(7, 100).await.unwrap(), data[7..107]);
    assert!(v.volume.fsck(&NoProgress).await.unwrap().is_clean());
}

#[tokio::test]
async fn truncate_shrinks_frees_and_regrows_with_zeros() {
    let (t, v) = TestVolume::new(256 * 1024).await;
    let mut f = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    let data = pattern(3, 1_000_000);
    f.write_at(0, &data).await.unwrap();
    f.checkpoint().await.unwrap();
    let before = extent_objects(&v.local).await.len();
    assert_eq!(before, 4);
    f.truncate(300_001).await.unwrap();
    f.sync().await.unwrap();
    f.truncate(900_000).await.unwrap();
    f.close().await.unwrap();
    let f = t
        .reopen()
        .await
        .volume
        .open_file("db", OpenOptions::read())
        .await
        .unwrap();
    assert_eq!(f.size(), 900_000);
    let got = f.read_at(0, 900_000).await.unwrap();
    assert_eq!(got[..300_001], data[..300_001]);
    assert!(
        got[300_001..].iter().all(|&b| b == 0),
        "regrown bytes must read as zeros"
    );
    t.env.advance(2 * 60 * 60 * 1000);
    let report = v
        .volume
        .gc(&GcOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(
        report.deleted >= 2,
        "truncation must free whole extents, freed {}",
        report.deleted
    );
    assert!(v.volume.fsck(&NoProgress).await.unwrap().is_clean());
}

#[tokio::test]
async fn fsck_finds_missing_corrupt_and_orphan_extents_and_gc_removes_orphans() {
    let (_t, v) = TestVolume::new(MIB).await;
    for (name, seed) in [("a", 1), ("b", 2)] {
        let mut f = v
            .volume
            .open_file(name, OpenOptions::create(4096))
            .await
            .unwrap();
        f.write_at(0, &pattern(seed, 100_000)).await.unwrap();
        f.close().await.unwrap();
    }
    let clean = v.volume.fsck(&NoProgress).await.unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(clean.extents_checked, 2);

    let keys = extent_objects(&v.local).await;
    let key_a = fsx_store::ObjectKey::new(&keys[0]).unwrap();
    let key_b = fsx_store::ObjectKey::new(&keys[1]).unwrap();
    // Corrupt one object on disk, remove the other, add an orphan.
    let path = v.local.path_for(&key_a);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[200] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    v.local.delete(&key_b).await.unwrap();
    let orphan_blob = fsx_format::encode(
        4096,
        [(0u32, &[9u8; 4096][..])],
        fsx_format::Compression::None,
    )
    .unwrap();
    let orphan = fsx_store::ObjectKey::new(&fsx_format::content_key(&orphan_blob)).unwrap();
    v.local.put(&orphan, orphan_blob.into()).await.unwrap();

    let report = v.volume.fsck(&NoProgress).await.unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.missing, vec![key_b.as_str().to_string()]);
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].0, key_a.as_str());
    assert_eq!(report.orphans, vec![orphan.as_str().to_string()]);

    // Reading damaged data is an error, never wrong bytes.
    let reopened = v.volume.clone();
    let err = reopened
        .open_file("a", OpenOptions::read())
        .await
        .unwrap()
        .read_at(0, 10)
        .await;
    let err2 = reopened
        .open_file("b", OpenOptions::read())
        .await
        .unwrap()
        .read_at(0, 10)
        .await;
    for e in [err, err2] {
        // One of the two files hits the corrupt object, the other the
        // missing one (which is which depends on the content keys); both
        // may be served from the cache filled by the writer, which holds
        // verified bytes.
        if let Err(e) = e {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        }
    }

    let gc = v
        .volume
        .gc(&GcOptions::default().orphan_grace_ms(0), &NoProgress)
        .await
        .unwrap();
    assert_eq!(gc.orphans_deleted, 1);
    assert!(v.volume.fsck(&NoProgress).await.unwrap().orphans.is_empty());
}

#[tokio::test]
async fn damaged_extents_are_errors_for_a_fresh_reader() {
    let (t, v) = TestVolume::new(MIB).await;
    let mut f = v
        .volume
        .open_file("a", OpenOptions::create(4096))
        .await
        .unwrap();
    f.write_at(0, &pattern(1, 50_000)).await.unwrap();
    f.close().await.unwrap();
    let key = fsx_store::ObjectKey::new(&extent_objects(&v.local).await[0]).unwrap();
    let path = v.local.path_for(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let fresh = t.reopen().await;
    let f = fresh
        .volume
        .open_file("a", OpenOptions::read())
        .await
        .unwrap();
    let err = f.read_at(0, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("damaged"), "{err}");
}

#[tokio::test]
async fn a_store_belongs_to_one_volume() {
    let (t, v) = TestVolume::new(MIB).await;
    let meta2 = std::sync::Arc::new(
        fsx_meta::sqlite::SqliteMeta::open(t.path().join("other.db"), true).unwrap(),
    );
    let config = fsx_meta::VolumeConfig::new("second", MIB, "file://data", 2);
    let err = fsx_engine::Volume::create(
        meta2,
        v.meter.clone(),
        t.env.clone(),
        config,
        Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(
        err.to_string()
            .contains("already belongs to volume test-volume"),
        "{err}"
    );
}

/// A writer's cached pages must not outlive a truncation: pages cut off and
/// later grown back read as zeros, from the writer itself and from others.
#[tokio::test]
async fn a_writer_never_serves_pages_it_cut_off() {
    let (t, v) = TestVolume::new(256 * 1024).await;
    let mut f = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    let data = pattern(9, 1_000_000);
    f.write_at(0, &data).await.unwrap();
    f.checkpoint().await.unwrap();
    // Read everything (filling the writer's cache), then cut deep.
    assert_eq!(f.read_at(0, 1_000_000).await.unwrap(), data);
    f.truncate(10_000).await.unwrap();
    f.sync().await.unwrap();
    // Grow past the old end without touching the middle.
    f.write_at(1_100_000, b"tail").await.unwrap();
    f.sync().await.unwrap();
    // A range the writer had read whole before the cut, and the whole gap.
    let cached = f.read_at(300_000, 500_000).await.unwrap();
    assert!(
        cached.iter().all(|&b| b == 0),
        "the writer served bytes it had cut off"
    );
    let middle = f.read_at(10_000, 1_090_000).await.unwrap();
    assert!(
        middle.iter().all(|&b| b == 0),
        "the writer served bytes it had cut off"
    );
    let fresh = t
        .reopen()
        .await
        .volume
        .open_file("db", OpenOptions::read())
        .await
        .unwrap();
    assert_eq!(fresh.read_at(0, 10_000).await.unwrap(), data[..10_000]);
    assert!(
        fresh
            .read_at(10_000, 1_090_000)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
}

/// Truncated bytes never come back: a shrink whose cut falls past the
/// durable size (the file grew and shrank again between syncs) must still
/// hide the packed extent that straddles the cut, whose tail an earlier
/// truncation had masked. Found by the long-history branch test.
#[tokio::test]
async fn truncated_bytes_stay_gone_after_regrowing_twice() {
    const EXTENT: u32 = 256 * 1024; // 64 pages of 4 KiB
    let (_t, v) = TestVolume::new(EXTENT).await;
    let mut f = v
        .volume
        .open_file("db", OpenOptions::create(4096))
        .await
        .unwrap();
    // Pages 0..64 packed into one extent, old bytes at pages 57..61.
    f.write_at(0, &pattern(1, 300_000)).await.unwrap();
    f.sync().await.unwrap();
    f.pack_dirty().await.unwrap();
    // Shrink into the extent: its tail is masked.
    f.truncate(68_897).await.unwrap();
    f.sync().await.unwrap();
    // Grow past the old bytes, then shrink to a size still past the
    // durable one before syncing.
    f.write_at(255_182, &pattern(2, 18_578)).await.unwrap();
    f.truncate(215_778).await.unwrap();
    f.sync().await.unwrap();
    // Grow again: everything between the cuts reads as zeros.
    f.write_at(370_383, &pattern(3, 5_684)).await.unwrap();
    f.sync().await.unwrap();
    let mut want = pattern(1, 68_897);
    want.resize(370_383, 0);
    want.extend_from_slice(&pattern(3, 5_684));
    assert!(f.read_at(0, want.len()).await.unwrap() == want, "writer");
    let r = v.volume.open_file("db", OpenOptions::read()).await.unwrap();
    assert!(r.read_at(0, want.len()).await.unwrap() == want, "reader");
    f.pack_dirty().await.unwrap();
    let r = v.volume.open_file("db", OpenOptions::read()).await.unwrap();
    assert!(
        r.read_at(0, want.len()).await.unwrap() == want,
        "after packing"
    );
}
