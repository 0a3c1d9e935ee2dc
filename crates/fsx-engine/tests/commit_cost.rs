//! What one small commit costs the embedded metadata engine, pinned.
//!
//! A page-store volume on SQLite metadata runs 1-page `write` + `sync`
//! calls in a steady state (the file's row in the head, the statement cache
//! warm, no extent filling up), and [`SqliteMeta::statements`] counts the
//! metadata statements each sync runs. `docs/ARCHITECTURE.md` ("The cost of
//! one commit") lists them; this test fails if a change adds one without
//! updating that account (lower the bound when a change removes one).

mod common;

use std::sync::Arc;

use common::pattern;
use fsx_engine::{ManualEnv, OpenOptions, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_meta::sqlite::SqliteMeta;
use fsx_store::local::LocalBackend;

const PAGE: u32 = 4096;

/// Statements of a steady-state 1-page sync: the lease check (renewal
/// skipped while more than half the lease is left), the head and its file
/// row, the file's next write sequence and size, the page, the packer's
/// count of the extent's dirty pages, and the change feed's record.
const SYNC_ONE_PAGE_STATEMENTS: u64 = 6;

/// A volume on SQLite metadata in a temporary directory, with local
/// journals if `journals`.
struct Setup {
    _dir: tempfile::TempDir,
    meta: Arc<SqliteMeta>,
    env: Arc<ManualEnv>,
    volume: Volume,
}

async fn setup(journals: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(SqliteMeta::open(dir.path().join("meta.db"), true).unwrap());
    let store = Arc::new(LocalBackend::open(dir.path().join("data")).unwrap());
    let env = Arc::new(ManualEnv::new(1_000_000));
    let dir_of_journals: Option<Arc<dyn fsx_engine::journal::JournalDir>> = journals.then(|| {
        Arc::new(fsx_engine::journal::LocalJournalDir::new(
            dir.path().join("meta.db-journals"),
        )) as _
    });
    let volume = Volume::create(
        meta.clone(),
        store,
        env.clone(),
        VolumeConfig::new("commit-cost", 2 << 20, "data", 1),
        VolumeOptions::default().journals(dir_of_journals),
    )
    .await
    .unwrap();
    Setup {
        _dir: dir,
        meta,
        env,
        volume,
    }
}

impl Setup {
    /// Runs 20 `write_at(at(i))` + `sync` calls a few seconds apart (so the
    /// lease ages and is renewed when half of it is gone, as between real
    /// commits); returns the metadata statements of each.
    async fn syncs(
        &self,
        f: &mut fsx_engine::File,
        at: impl Fn(u64) -> (u64, Vec<u8>),
    ) -> Vec<u64> {
        let mut counts = Vec::new();
        for i in 0..20u64 {
            self.env.advance(3_000);
            let before = self.meta.statements();
            let (offset, data) = at(i);
            f.write_at(offset, &data).await.unwrap();
            f.sync().await.unwrap();
            counts.push(self.meta.statements() - before);
        }
        counts
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_commit_runs_the_documented_statements() {
    let t = setup(false).await;
    let mut f = t
        .volume
        .open_file("db", OpenOptions::create(PAGE))
        .await
        .unwrap();
    let counts = t
        .syncs(&mut f, |i| {
            ((i % 8) * u64::from(PAGE), pattern(i + 1, PAGE as usize))
        })
        .await;
    // The first syncs create the head's row and warm up; the rest are the
    // steady state, except a renewal of the lease now and then.
    let steady = &counts[4..];
    let typical = *steady.iter().min().unwrap();
    eprintln!("statements per 1-page sync: {counts:?}");
    assert!(
        typical <= SYNC_ONE_PAGE_STATEMENTS,
        "a 1-page sync ran {typical} metadata statements, more than the {SYNC_ONE_PAGE_STATEMENTS} \
         documented in docs/ARCHITECTURE.md: {counts:?}"
    );
    let renewals = steady.iter().filter(|&&n| n > typical).count();
    assert!(
        renewals <= steady.len() / 4,
        "the lease was rewritten in {renewals} of {} commits: {counts:?}",
        steady.len()
    );
    // Every write is there.
    for i in 12..20u64 {
        let got = f
            .read_at((i % 8) * u64::from(PAGE), PAGE as usize)
            .await
            .unwrap();
        assert_eq!(got, pattern(i + 1, PAGE as usize));
    }
}

/// A journal's sync (a database's WAL commit) runs no metadata statement
/// at all: one `fdatasync` of the local journal, and a lease renewal once
/// half of the lease is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_commit_runs_no_metadata_statement() {
    let t = setup(true).await;
    let mut f = t
        .volume
        .open_file("db-wal", OpenOptions::create(PAGE).journal(true))
        .await
        .unwrap();
    // WAL frames: 24 bytes of header and a page, unaligned.
    let counts = t
        .syncs(&mut f, |i| (32 + i * 4120, pattern(i + 1, 4120)))
        .await;
    eprintln!("statements per journal sync: {counts:?}");
    let quiet = counts.iter().filter(|&&n| n == 0).count();
    assert!(
        quiet >= counts.len() * 3 / 4,
        "journal syncs ran metadata statements: {counts:?}"
    );
    for i in 0..20u64 {
        let got = f.read_at(32 + i * 4120, 4120).await.unwrap();
        assert_eq!(got, pattern(i + 1, 4120));
    }
}
