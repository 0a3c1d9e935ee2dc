//! Model-based test: random sequences of writes, truncations, syncs,
//! checkpoints and crashes against a plain byte vector per file.
//!
//! Two models are kept: what the writer sees (every write so far) and what
//! is durable (as of the last sync). A crash drops the writer without
//! syncing and reopens the volume from scratch; afterwards the file must
//! equal the durable model exactly — nothing acknowledged lost, nothing
//! unacknowledged visible.

mod common;

use common::{TestVolume, pattern};
use fsx_engine::{File, OpenOptions, Volume};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, len: usize, seed: u64 },
    Truncate { size: u64 },
    Sync,
    Checkpoint,
    Crash,
    ReadBack { offset: u64, len: usize },
    ReaderSeesDurable,
}

/// Offsets span several 256 KiB extents of 512-byte pages.
const SPAN: u64 = 900_000;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SPAN, 1usize..40_000, any::<u64>()).prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        2 => (0..SPAN).prop_map(|size| Op::Truncate { size }),
        3 => Just(Op::Sync),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Crash),
        2 => (0..SPAN, 1usize..50_000).prop_map(|(offset, len)| Op::ReadBack { offset, len }),
        1 => Just(Op::ReaderSeesDurable),
    ]
}

fn apply_write(model: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if model.len() < end {
        model.resize(end, 0);
    }
    model[offset as usize..end].copy_from_slice(data);
}

async fn whole(f: &File) -> Vec<u8> {
    f.read_at(0, f.size() as usize).await.unwrap()
}

async fn run(ops: Vec<Op>, page_size: u32) {
    let (t, opened) = TestVolume::new(256 * 1024).await;
    let mut volume: Volume = opened.volume;
    let mut f = volume
        .open_file("f", OpenOptions::create(page_size))
        .await
        .unwrap();
    let mut current: Vec<u8> = Vec::new();
    let mut durable: Vec<u8> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write { offset, len, seed } => {
                let data = pattern(seed, len);
                f.write_at(offset, &data).await.unwrap();
                apply_write(&mut current, offset, &data);
            }
            Op::Truncate { size } => {
                f.truncate(size).await.unwrap();
                current.resize(size as usize, 0);
            }
            Op::Sync => {
                f.sync().await.unwrap();
                durable = current.clone();
            }
            Op::Checkpoint => {
                f.checkpoint().await.unwrap();
                durable = current.clone();
            }
            Op::Crash => {
                drop(f);
                // The dead writer's lease must expire before a new one.
                t.env.advance(31_000);
                volume = t.reopen().await.volume;
                f = volume.open_file("f", OpenOptions::write()).await.unwrap();
                current = durable.clone();
                assert_eq!(f.size(), durable.len() as u64, "op {i}: size after crash");
                assert!(
                    whole(&f).await == durable,
                    "op {i}: content after crash differs from the last sync"
                );
            }
            Op::ReadBack { offset, len } => {
                let got = f.read_at(offset, len).await.unwrap();
                let from = (offset as usize).min(current.len());
                let to = (offset as usize + len).min(current.len());
                assert!(
                    got == current[from..to],
                    "op {i}: read_at({offset}, {len}) differs from the model"
                );
            }
            Op::ReaderSeesDurable => {
                let r = volume.open_file("f", OpenOptions::read()).await.unwrap();
                assert_eq!(r.size(), durable.len() as u64, "op {i}: reader size");
                assert!(
                    whole(&r).await == durable,
                    "op {i}: a reader must see exactly the synced state"
                );
            }
        }
    }
    f.close().await.unwrap();
    let r = t
        .reopen()
        .await
        .volume
        .open_file("f", OpenOptions::read())
        .await
        .unwrap();
    assert!(whole(&r).await == current, "after close");
    let report = volume.fsck(&fsx_engine::NoProgress).await.unwrap();
    assert!(report.is_clean(), "fsck after the run: {report:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn page_store_matches_the_model(ops in proptest::collection::vec(op(), 1..40), page_size in prop_oneof![Just(512u32), Just(4096), Just(8192)]) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops, page_size));
    }
}
