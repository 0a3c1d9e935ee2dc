//! A truncation inside an extent whose lower layer holds a dirty page of
//! it, packed at close to nothing, then a branch and GC: the truncated
//! bytes must not read back. (GC packs the lower layer's dirty page into
//! an extent, which the head's page cut alone does not hide; the packer
//! leaves a tombstone that does.) Found by the branch isolation proptest;
//! the cut is page-aligned here, which random sizes almost never are.

mod common;

use common::Harness;
use fsx_engine::{GcOptions, NoProgress, OpenOptions, Volume};

async fn read_all(v: &Volume, name: &str) -> Vec<u8> {
    let f = v.open_file(name, OpenOptions::read()).await.unwrap();
    f.read_at(0, f.size() as usize).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bytes_stay_gone_after_a_branch_and_gc() {
    for engine_cut in [1u64, 4096, 8192] {
        let h = Harness::new(common::Engine::Sqlite);
        let volume = h.create().await;
        volume.create_branch("b2").await.unwrap();
        let b2 = volume.checkout("b2").await.unwrap();
        let mut f = b2.open_file("db", OpenOptions::create(4096)).await.unwrap();
        f.write_at(102_400, &[7]).await.unwrap();
        f.sync().await.unwrap();
        f.truncate(engine_cut).await.unwrap();
        f.write_at(262_144, &[9]).await.unwrap();
        b2.create_branch("b1").await.unwrap();
        f.close().await.unwrap();
        let mut want = vec![0u8; 262_145];
        want[262_144] = 9;
        assert!(
            read_all(&b2, "db").await == want,
            "cut {engine_cut}: before gc"
        );
        volume
            .gc(&GcOptions::default().grace_ms(0), &NoProgress)
            .await
            .unwrap();
        let fresh = h.reopen().await.checkout("b2").await.unwrap();
        let got = read_all(&fresh, "db").await;
        let differ: Vec<usize> = (0..want.len())
            .filter(|&i| got.get(i) != want.get(i))
            .take(5)
            .collect();
        assert!(
            got == want,
            "cut {engine_cut}: after gc, bytes differ at {differ:?}"
        );
        // And the branch taken before the truncation keeps the old byte.
        let b1 = h.reopen().await.checkout("b1").await.unwrap();
        assert_eq!(
            read_all(&b1, "db").await[102_400],
            7,
            "cut {engine_cut}: b1"
        );
        let fsck = fresh.fsck(&NoProgress).await.unwrap();
        assert!(fsck.is_clean(), "{fsck:?}");
    }
}
