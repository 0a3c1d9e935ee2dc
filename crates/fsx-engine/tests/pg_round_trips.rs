//! PostgreSQL round trips of the page-store calls a user makes, pinned.
//!
//! A page-store volume on real PostgreSQL metadata (and a local-directory
//! store) runs the same round of `write` + `sync` calls three times, and
//! [`PgMeta::round_trips`] measures each call: a 1-page sync, a 64-page
//! sync, a sync that fills an extent so packing runs after it (the whole
//! `sync` call, packing included), a truncation and its sync, and a
//! reader's one-page read, which asks the metadata for the page map
//! (`read_map`) every time.
//!
//! Why three rounds: the first warms the per-connection statement cache and
//! moves the file from empty to packed extents; the second is the steady
//! state measured; the third must cost exactly the same, which shows the
//! figures are a steady state and not a warm-up artefact. Every call runs
//! alone on one pooled connection, the clock is manual (no lease expires,
//! no automatic commit falls due), so the counts are deterministic.
//!
//! The bounds are the counts measured after the metadata engines were
//! rewritten over shared logic (issue 12), each below what it was before
//! (in the comment at the constants): a change may lower them, never raise
//! them. Lower a bound when a change lowers its count.

mod common;

use std::sync::Arc;

use common::pattern;
use fsx_engine::{File, ManualEnv, OpenOptions, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_meta::postgres::PgMeta;
use fsx_store::local::LocalBackend;

// Measured at c1d3c1f before the shared-logic rewrite (steady state):
// 15 / 15 / 45 / 19 / 8 in the order below. By metadata call, then: a sync
// was `commit_writes` (11 round trips, 15 with a truncation's cut) and
// `dirty_counts` (4); packing an extent added `dirty_extent` (9),
// `pin_extent` (3) and `commit_pack` (18); a read was `read_map` (8).
// The shared logic (issue 12) brought them to the bounds below: a write
// finds the head and its file row in one statement, chains are cached, and
// the packer's question resolves the view's layer in its own statement.
/// A sync of one dirty page.
const SYNC_ONE_PAGE_MAX: u64 = 12;
/// A sync of 64 dirty pages of one extent (not filling it).
const SYNC_64_PAGES_MAX: u64 = 12;
/// A sync of the 256 pages of a whole extent, packing included.
const SYNC_FULL_EXTENT_MAX: u64 = 38;
/// A truncation into a packed extent and the sync after it.
const SYNC_AFTER_TRUNCATE_MAX: u64 = 16;
/// A reader's read of one page of a packed extent (one `read_map`).
const READ_ONE_PAGE_MAX: u64 = 6;

const PAGE: u32 = 4096;
/// 1 MiB extents of 4 KiB pages.
const EXTENT: u32 = 1 << 20;
const PPE: u64 = (EXTENT / PAGE) as u64;

/// Round trips of one round's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    sync_one_page: u64,
    sync_64_pages: u64,
    sync_full_extent: u64,
    sync_after_truncate: u64,
    read_one_page: u64,
}

/// Round trips `call` caused.
async fn measure<F: std::future::Future<Output = ()>>(pg: &PgMeta, call: F) -> u64 {
    let before = pg.round_trips();
    call.await;
    pg.round_trips() - before
}

/// Distinct page contents for round `round`, so no round dedups against
/// another's extents.
fn page(round: u64, page_no: u64) -> Vec<u8> {
    pattern(round * 1_000_003 + page_no + 1, PAGE as usize)
}

/// One round: at its start every extent of `f` is packed (or the file is
/// new); at its end too (a checkpoint, not measured).
async fn round(pg: &PgMeta, volume: &Volume, f: &mut File, r: u64) -> Figures {
    let ps = u64::from(PAGE);
    // Three 1-page syncs in extent 0; each must cost the same once the
    // first round has warmed the statement cache.
    let mut one = Vec::new();
    for p in 0..3 {
        one.push(
            measure(pg, async {
                f.write_at(p * ps, &page(r, p)).await.unwrap();
                f.sync().await.unwrap();
            })
            .await,
        );
    }
    assert!(
        r == 0 || one.iter().all(|&n| n == one[0]),
        "round {r}: 1-page syncs differ: {one:?}"
    );
    // 64 pages of extent 0: 67 dirty pages of 256, so nothing packs.
    let sync_64_pages = measure(pg, async {
        for p in 64..128 {
            f.write_at(p * ps, &page(r, p)).await.unwrap();
        }
        f.sync().await.unwrap();
    })
    .await;
    // All of extent 1: packing runs inside `sync`.
    let sync_full_extent = measure(pg, async {
        for p in PPE..2 * PPE {
            f.write_at(p * ps, &page(r, p)).await.unwrap();
        }
        f.sync().await.unwrap();
    })
    .await;
    // A reader (no clean-page cache) reading a page of the packed extent;
    // the first read warms the statement cache in the first round.
    let reader = volume.open_file("db", OpenOptions::read()).await.unwrap();
    let target = PPE + 44;
    assert_eq!(
        reader.read_at(target * ps, PAGE as usize).await.unwrap(),
        page(r, target)
    );
    let read_one_page = measure(pg, async {
        let got = reader.read_at(target * ps, PAGE as usize).await.unwrap();
        assert_eq!(got, page(r, target));
    })
    .await;
    // Cut extent 1 at a page boundary (no page to read back): the sync
    // writes holes over its cut part and drops nothing else.
    let sync_after_truncate = measure(pg, async {
        f.truncate((PPE + PPE / 4) * ps).await.unwrap();
        f.sync().await.unwrap();
    })
    .await;
    f.checkpoint().await.unwrap();
    Figures {
        sync_one_page: one[0],
        sync_64_pages,
        sync_full_extent,
        sync_after_truncate,
        read_one_page,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trips_per_sync_stay_within_the_baseline() {
    let server = fsx_testkit::postgres::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pg = Arc::new(PgMeta::connect(&server.fresh_url()).await.unwrap());
    let store = Arc::new(LocalBackend::open(dir.path().join("data")).unwrap());
    let volume = Volume::create(
        pg.clone(),
        store,
        Arc::new(ManualEnv::new(1_000_000)),
        VolumeConfig::new("round-trips", EXTENT, "data", 1),
        VolumeOptions::default(),
    )
    .await
    .unwrap();
    let mut f = volume
        .open_file("db", OpenOptions::create(PAGE))
        .await
        .unwrap();

    let mut rounds = Vec::new();
    for r in 0..3 {
        let figures = round(&pg, &volume, &mut f, r).await;
        eprintln!("round {r} (round 0 warms up): {figures:?}");
        rounds.push(figures);
    }
    assert_eq!(
        rounds[1], rounds[2],
        "the steady state should cost the same every round"
    );
    let steady = rounds[1];
    eprintln!(
        "PostgreSQL round trips, steady state: sync of 1 page {}, of 64 pages {}, \
         of a whole extent (packing included) {}, truncate + sync {}, read of 1 page {}",
        steady.sync_one_page,
        steady.sync_64_pages,
        steady.sync_full_extent,
        steady.sync_after_truncate,
        steady.read_one_page
    );
    for (what, got, max) in [
        ("sync of 1 page", steady.sync_one_page, SYNC_ONE_PAGE_MAX),
        ("sync of 64 pages", steady.sync_64_pages, SYNC_64_PAGES_MAX),
        (
            "sync of a whole extent",
            steady.sync_full_extent,
            SYNC_FULL_EXTENT_MAX,
        ),
        (
            "truncate + sync",
            steady.sync_after_truncate,
            SYNC_AFTER_TRUNCATE_MAX,
        ),
        ("read of 1 page", steady.read_one_page, READ_ONE_PAGE_MAX),
    ] {
        assert!(
            got <= max,
            "{what}: {got} PostgreSQL round trips, more than the {max} pinned (see the constants)"
        );
    }
    f.close().await.unwrap();
}
