//! Packing a layer's own pages into the very extent a lower layer already
//! shows must still leave an entry in that layer: the rows it consumes
//! (a punched hole, the holes a truncation wrote past its cut) hid a lower
//! layer's dirty page. Without the entry a punched page reads back at
//! once, and a truncated one once GC packs the lower page into a lower
//! extent, which a page cut does not hide. Found by the long-history test
//! (seed 1795799457031012169) once a cut inside a hole page left it a
//! hole, as ext4 does.

mod common;

use common::{Engine, Harness};
use fsx_engine::{GcOptions, NoProgress, OpenOptions, Volume};
use fsx_testkit::postgres::PgServer;

const PS: u64 = 4096;

async fn read_all(v: &Volume, name: &str) -> Vec<u8> {
    let f = v.open_file(name, OpenOptions::read()).await.unwrap();
    f.read_at(0, f.size() as usize).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_to_the_lower_extent_keeps_hiding_what_the_layer_cut() {
    cut_stays_hidden(|| Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_pack_to_the_lower_extent_keeps_hiding_what_the_layer_cut() {
    let server = PgServer::start();
    cut_stays_hidden(|| Engine::Postgres(server.fresh_url())).await;
}

async fn cut_stays_hidden(engine: impl Fn() -> Engine) {
    // A cut in the hole after the packed pages (kept a hole, as on ext4)
    // and one on the page boundary: neither writes a page of its own.
    for cut in [3 * PS + 100, 4 * PS] {
        let h = Harness::new(engine());
        let volume = h.create().await;
        let mut f = volume
            .open_file("db", OpenOptions::create(PS as u32))
            .await
            .unwrap();
        f.write_at(0, &vec![1; 3 * PS as usize]).await.unwrap();
        f.sync().await.unwrap();
        f.pack_dirty().await.unwrap();
        // A dirty page of the frozen layer, past the cut to come.
        f.write_at(5 * PS, &vec![5; PS as usize]).await.unwrap();
        f.sync().await.unwrap();
        volume.commit("a").await.unwrap();
        // Packs to the lower layer's own extent: the same key.
        f.truncate(cut).await.unwrap();
        f.sync().await.unwrap();
        f.pack_dirty().await.unwrap();
        volume.commit("b").await.unwrap();
        // Grows the file back over the truncated page.
        f.write_at(10 * PS, &[9]).await.unwrap();
        f.sync().await.unwrap();
        let mut want = vec![0u8; 10 * PS as usize + 1];
        want[..3 * PS as usize].fill(1);
        want[10 * PS as usize] = 9;
        assert!(
            read_all(&volume, "db").await == want,
            "cut {cut}: before gc"
        );
        // Packs the first commit's page 5 into its extent.
        volume
            .gc(&GcOptions::default().grace_ms(0), &NoProgress)
            .await
            .unwrap();
        let fresh = h.reopen().await;
        let got = read_all(&fresh, "db").await;
        let differ: Vec<usize> = (0..want.len())
            .filter(|&i| got.get(i) != want.get(i))
            .take(5)
            .collect();
        assert!(
            got == want,
            "cut {cut}: after gc, bytes differ at {differ:?}"
        );
        let fsck = fresh.fsck(&NoProgress).await.unwrap();
        assert!(fsck.is_clean(), "{fsck:?}");
        f.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_to_the_lower_extent_keeps_a_punched_page_a_hole() {
    punched_page_stays_a_hole(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_pack_to_the_lower_extent_keeps_a_punched_page_a_hole() {
    let server = PgServer::start();
    punched_page_stays_a_hole(Engine::Postgres(server.fresh_url())).await;
}

async fn punched_page_stays_a_hole(engine: Engine) {
    let h = Harness::new(engine);
    let volume = h.create().await;
    let mut f = volume
        .open_file("db", OpenOptions::create(PS as u32))
        .await
        .unwrap();
    f.write_at(0, &vec![1; 3 * PS as usize]).await.unwrap();
    f.sync().await.unwrap();
    f.pack_dirty().await.unwrap();
    f.write_at(5 * PS, &vec![5; PS as usize]).await.unwrap();
    f.sync().await.unwrap();
    volume.commit("a").await.unwrap();
    f.punch_hole(5 * PS, PS).await.unwrap();
    f.sync().await.unwrap();
    let mut want = vec![0u8; 6 * PS as usize];
    want[..3 * PS as usize].fill(1);
    assert!(read_all(&volume, "db").await == want, "before packing");
    // Packs to the lower layer's own extent: the same key.
    f.pack_dirty().await.unwrap();
    assert!(read_all(&volume, "db").await == want, "after packing");
    volume
        .gc(&GcOptions::default().grace_ms(0), &NoProgress)
        .await
        .unwrap();
    let fresh = h.reopen().await;
    assert!(read_all(&fresh, "db").await == want, "after gc");
    let fsck = fresh.fsck(&NoProgress).await.unwrap();
    assert!(fsck.is_clean(), "{fsck:?}");
    f.close().await.unwrap();
}
