//! Local journals (`fsx_engine::journal`), checked against a model: random
//! writes, truncations, syncs, clean reopens, crashes (the writer dropped
//! without closing, its lease left to expire), commits taken by another
//! handle while the writer is open, and reads by another handle. The file
//! must always read as the model says — through the writer, through any
//! other handle of the branch, and, after the last close, through a volume
//! opened without journals (the page store alone) — and every commit must
//! keep showing the file as it was when it was taken.

mod common;

use std::sync::Arc;

use common::{TestVolume, pattern};
use fsx_engine::journal::LocalJournalDir;
use fsx_engine::{File, OpenOptions, Volume, VolumeOptions};
use proptest::prelude::*;

const PAGE: u32 = 4096;
/// The smallest extents (64 pages), so folding a journal packs several.
const EXTENT: u32 = 256 << 10;
const TTL_MS: i64 = 30_000;

#[derive(Debug, Clone)]
enum Op {
    Write {
        offset: u64,
        len: usize,
        seed: u64,
    },
    Truncate(u64),
    Sync,
    /// The writer is dropped without closing; the next one waits out its
    /// lease and folds what it left.
    Crash,
    /// Closed cleanly and opened again.
    Reopen,
    /// Another handle commits the branch.
    Commit,
    /// Another handle reads the file.
    ReadOther,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..600_000, 1usize..9_000, any::<u64>())
            .prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        1 => (0u64..700_000).prop_map(Op::Truncate),
        3 => Just(Op::Sync),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
        1 => Just(Op::Commit),
        2 => Just(Op::ReadOther),
    ]
}

fn journaled(t: &TestVolume) -> VolumeOptions {
    VolumeOptions::default()
        .lease_ttl_ms(TTL_MS)
        .journals(Some(Arc::new(LocalJournalDir::new(
            t.path().join("meta.db-journals"),
        ))))
}

/// A new volume, and a handle on it with journals.
async fn journaled_volume() -> (TestVolume, Volume) {
    let (t, _) = TestVolume::new(EXTENT).await;
    let v = t.reopen_with(journaled(&t)).await.volume;
    (t, v)
}

async fn open_writer(v: &Volume) -> File {
    v.open_file("app.db-wal", OpenOptions::create(PAGE).journal(true))
        .await
        .unwrap()
}

async fn read_all(v: &Volume, name: &str) -> Vec<u8> {
    let f = v.open_file(name, OpenOptions::read()).await.unwrap();
    f.read_at(0, f.size() as usize).await.unwrap()
}

async fn run(ops: Vec<Op>) {
    let (t, _) = TestVolume::new(EXTENT).await;
    let writer_volume = t.reopen_with(journaled(&t)).await.volume;
    let other = t.reopen_with(journaled(&t)).await.volume;
    let mut f = Some(open_writer(&writer_volume).await);
    let mut model: Vec<u8> = Vec::new();
    let mut commits = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write { offset, len, seed } => {
                let data = pattern(seed, len);
                f.as_mut().unwrap().write_at(offset, &data).await.unwrap();
                let end = offset as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[offset as usize..end].copy_from_slice(&data);
            }
            Op::Truncate(size) => {
                f.as_mut().unwrap().truncate(size).await.unwrap();
                model.resize(size as usize, 0);
            }
            Op::Sync => f.as_mut().unwrap().sync().await.unwrap(),
            Op::Crash => {
                drop(f.take());
                t.env.advance(TTL_MS + 1);
                f = Some(open_writer(&writer_volume).await);
            }
            Op::Reopen => {
                f.take().unwrap().close().await.unwrap();
                f = Some(open_writer(&writer_volume).await);
            }
            Op::Commit => {
                let c = other.commit(&format!("step {step}")).await.unwrap();
                commits.push((c.id, model.clone()));
            }
            Op::ReadOther => {
                assert_eq!(
                    read_all(&other, "app.db-wal").await,
                    model,
                    "another handle at step {step}"
                );
            }
        }
        let w = f.as_ref().unwrap();
        assert_eq!(w.size(), model.len() as u64, "writer's size at step {step}");
        // Time passes between calls, so leases age and are renewed.
        t.env.advance(1_000);
    }
    let w = f.take().unwrap();
    assert_eq!(
        w.read_at(0, model.len()).await.unwrap(),
        model,
        "the writer reads the model"
    );
    w.close().await.unwrap();
    // Closed: the page store alone holds it, and no journal is left.
    let plain = t.reopen().await.volume;
    assert_eq!(read_all(&plain, "app.db-wal").await, model, "after close");
    let left: Vec<_> = std::fs::read_dir(t.path().join("meta.db-journals"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "journals left after close: {left:?}");
    for (id, want) in commits {
        let at = plain.at_commit(id).await.unwrap();
        assert_eq!(read_all(&at, "app.db-wal").await, want, "commit {id}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn a_journal_reads_as_its_model(ops in prop::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}

/// A branch taken while a journal is open starts with the journal's
/// content, and the two sides stay apart afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_taken_while_a_journal_is_open_holds_it() {
    let (t, main) = journaled_volume().await;
    let mut f = open_writer(&main).await;
    f.write_at(0, &pattern(1, 10_000)).await.unwrap();
    f.sync().await.unwrap();
    let other = t.reopen_with(journaled(&t)).await.volume;
    other.create_branch("dev").await.unwrap();
    f.write_at(5_000, &pattern(2, 10_000)).await.unwrap();
    f.sync().await.unwrap();
    let dev = other.checkout("dev").await.unwrap();
    assert_eq!(read_all(&dev, "app.db-wal").await, pattern(1, 10_000));
    let mut want = pattern(1, 10_000);
    want.resize(15_000, 0);
    want[5_000..].copy_from_slice(&pattern(2, 10_000));
    assert_eq!(read_all(&other, "app.db-wal").await, want, "main, open");
    f.close().await.unwrap();
    assert_eq!(read_all(&other, "app.db-wal").await, want, "main, closed");
    assert_eq!(
        read_all(&dev, "app.db-wal").await,
        pattern(1, 10_000),
        "dev, after main closed"
    );
}

/// A writer that lost its lease (it expired and another took the file)
/// fails its next sync instead of acknowledging bytes nobody keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_lease_was_taken_cannot_sync() {
    let (t, v) = journaled_volume().await;
    let mut first = open_writer(&v).await;
    first.write_at(0, &pattern(1, 5_000)).await.unwrap();
    first.sync().await.unwrap();
    t.env.advance(TTL_MS + 1);
    let mut second = open_writer(&v).await;
    assert_eq!(
        second.read_at(0, 5_000).await.unwrap(),
        pattern(1, 5_000),
        "the second writer took over the first one's synced bytes"
    );
    first.write_at(0, &pattern(2, 5_000)).await.unwrap();
    let err = first.sync().await.unwrap_err();
    assert_eq!(err.kind(), fsx_engine::ErrorKind::Busy, "{err}");
    second.write_at(100, b"second").await.unwrap();
    second.sync().await.unwrap();
    second.close().await.unwrap();
    let mut want = pattern(1, 5_000);
    want[100..106].copy_from_slice(b"second");
    assert_eq!(read_all(&v, "app.db-wal").await, want);
}

/// `fsx gc` folds the journal of a writer that died: its synced bytes go
/// into the volume and the journal goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_folds_a_dead_writers_journal() {
    let (t, v) = journaled_volume().await;
    let mut f = open_writer(&v).await;
    f.write_at(0, &pattern(7, 300_000)).await.unwrap();
    f.sync().await.unwrap();
    drop(f);
    t.env.advance(TTL_MS + 1);
    let (packed, in_use) = v.pack_abandoned(&fsx_engine::NoProgress).await.unwrap();
    assert_eq!((packed, in_use.len()), (1, 0));
    let left = std::fs::read_dir(t.path().join("meta.db-journals"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the journal is gone");
    let plain = t.reopen().await.volume;
    assert_eq!(read_all(&plain, "app.db-wal").await, pattern(7, 300_000));
}

/// A reset discards a dead writer's journal with the rest of the head: the
/// next writer does not fold it back over the commit the branch was reset
/// to. The same holds for deleting the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_or_delete_does_not_bring_a_dead_writers_journal_back() {
    let (t, v) = journaled_volume().await;
    let mut f = open_writer(&v).await;
    f.write_at(0, &pattern(1, 6_000)).await.unwrap();
    f.close().await.unwrap();
    let base = v.commit("base").await.unwrap();
    let mut f = open_writer(&v).await;
    f.write_at(0, &pattern(2, 9_000)).await.unwrap();
    f.sync().await.unwrap();
    drop(f);
    t.env.advance(TTL_MS + 1);
    v.reset(base.id).await.unwrap();
    let f = open_writer(&v).await;
    assert_eq!(
        f.read_at(0, 9_000).await.unwrap(),
        pattern(1, 6_000),
        "the reset branch shows the commit"
    );
    f.close().await.unwrap();

    let mut f = open_writer(&v).await;
    f.write_at(0, &pattern(3, 9_000)).await.unwrap();
    f.sync().await.unwrap();
    drop(f);
    t.env.advance(TTL_MS + 1);
    v.delete("app.db-wal").await.unwrap();
    let f = open_writer(&v).await;
    assert_eq!(f.size(), 0, "a new file, not the deleted one's journal");
    f.close().await.unwrap();
}

/// `diff` reads an open journal as the file: a WAL cut short since a
/// commit shows as changed, with its sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_reads_an_open_journal() {
    let (_t, v) = journaled_volume().await;
    let mut f = open_writer(&v).await;
    f.write_at(0, &pattern(1, 20_000)).await.unwrap();
    f.close().await.unwrap();
    let c = v.commit("long").await.unwrap();
    let mut f = open_writer(&v).await;
    f.truncate(5_000).await.unwrap();
    f.write_at(0, &pattern(2, 100)).await.unwrap();
    f.sync().await.unwrap();
    let changes = v
        .diff(fsx_meta::View::Commit(c.id), v.view())
        .await
        .unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (changes[0].old_size, changes[0].new_size),
        (20_000, 5_000),
        "{changes:?}"
    );
    f.close().await.unwrap();
}

/// Merging a branch whose journal is open takes the journal's content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_takes_an_open_journal_of_its_source() {
    let (_t, main) = journaled_volume().await;
    let mut f = open_writer(&main).await;
    f.write_at(0, b"base").await.unwrap();
    f.close().await.unwrap();
    main.create_branch("dev").await.unwrap();
    let dev = main.checkout("dev").await.unwrap();
    let mut d = open_writer(&dev).await;
    d.write_at(0, &pattern(5, 8_000)).await.unwrap();
    d.sync().await.unwrap();
    main.merge(dev.view(), fsx_engine::MergeStrategy::Fail)
        .await
        .unwrap();
    assert_eq!(read_all(&main, "app.db-wal").await, pattern(5, 8_000));
    d.write_at(0, b"later").await.unwrap();
    d.close().await.unwrap();
    assert_eq!(
        read_all(&main, "app.db-wal").await,
        pattern(5, 8_000),
        "main keeps what it merged"
    );
}

/// A file that is mostly zeros (a database's WAL segment, zero-filled
/// before it is used) moves into a journal whole, its zeros left as a
/// hole of the journal file rather than written, and reads back the same
/// before and after the journal is folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_started_over_zeros_keeps_them_as_a_hole() {
    use std::os::unix::fs::MetadataExt;
    let (t, _) = TestVolume::new(EXTENT).await;
    let plain = t.reopen().await.volume;
    let len = 3 << 20;
    let mut want = vec![0u8; len];
    want[(1 << 20)..(1 << 20) + 8192].copy_from_slice(&pattern(3, 8192));
    let mut f = plain
        .open_file("seg.wal", OpenOptions::create(PAGE))
        .await
        .unwrap();
    f.write_at(0, &want).await.unwrap();
    f.sync().await.unwrap();
    f.close().await.unwrap();

    let v = t.reopen_with(journaled(&t)).await.volume;
    let mut w = v
        .open_file("seg.wal", OpenOptions::write().journal(true))
        .await
        .unwrap();
    assert!(w.has_journal());
    assert_eq!(
        w.read_at(0, len).await.unwrap(),
        want,
        "the journal holds the file"
    );
    let journals: Vec<_> = std::fs::read_dir(t.path().join("meta.db-journals"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let meta = std::fs::metadata(&journals[0]).unwrap();
    assert_eq!(meta.len(), len as u64);
    assert!(
        meta.blocks() * 512 < (1 << 20),
        "{} bytes allocated for 8 KiB of data: the zeros were written",
        meta.blocks() * 512
    );
    w.write_at(100, b"after").await.unwrap();
    want[100..105].copy_from_slice(b"after");
    w.sync().await.unwrap();
    w.close().await.unwrap();
    let plain = t.reopen().await.volume;
    assert_eq!(read_all(&plain, "seg.wal").await, want);
}
