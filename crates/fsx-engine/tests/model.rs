//! Model-based test: random sequences of writes, reads, truncations,
//! renames, syncs, packs (checkpoints), clean reopens and crashes over
//! several files, checked against a plain byte vector per file — on both
//! metadata engines (SQLite, and a real PostgreSQL server).
//!
//! Each file has two models: what its writer sees (every write so far) and
//! what is durable (as of its last sync). A crash drops every handle without
//! syncing and reopens the volume from scratch; afterwards every file must
//! equal its durable model exactly — nothing acknowledged lost, nothing
//! unacknowledged visible.

mod common;

use std::collections::BTreeMap;

use common::{Engine, Harness, pattern};
use fsx_engine::{File, NoProgress, OpenOptions, Volume};
use proptest::prelude::*;

const NAMES: [&str; 3] = ["a", "b", "dir/c"];
/// Offsets span several 256 KiB extents.
const SPAN: u64 = 700_000;

#[derive(Debug, Clone)]
enum Op {
    Write {
        file: usize,
        offset: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        file: usize,
        size: u64,
    },
    /// Truncation to a fraction (in thousandths) of the file's current
    /// size: always a shrink, often into a packed extent.
    Shrink {
        file: usize,
        permille: u64,
    },
    Sync {
        file: usize,
    },
    Pack {
        file: usize,
    },
    Rename {
        from: usize,
        to: usize,
    },
    ReadBack {
        file: usize,
        offset: u64,
        len: usize,
    },
    ReaderSeesDurable {
        file: usize,
    },
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let f = 0..NAMES.len();
    prop_oneof![
        8 => (f.clone(), 0..SPAN, 1usize..30_000, any::<u64>())
            .prop_map(|(file, offset, len, seed)| Op::Write { file, offset, len, seed }),
        2 => (f.clone(), 0..SPAN).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => (f.clone(), 0u64..1000).prop_map(|(file, permille)| Op::Shrink { file, permille }),
        4 => f.clone().prop_map(|file| Op::Sync { file }),
        1 => f.clone().prop_map(|file| Op::Pack { file }),
        1 => (f.clone(), f.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        3 => (f.clone(), 0..SPAN, 1usize..40_000).prop_map(|(file, offset, len)| Op::ReadBack { file, offset, len }),
        1 => f.prop_map(|file| Op::ReaderSeesDurable { file }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

#[derive(Default, Clone)]
struct Model {
    current: Vec<u8>,
    durable: Vec<u8>,
}

async fn whole(f: &File) -> Vec<u8> {
    f.read_at(0, f.size() as usize).await.unwrap()
}

async fn check_durable(volume: &Volume, files: &BTreeMap<String, Model>, when: &str) {
    let listed: Vec<String> = volume
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    let expected: Vec<String> = files.keys().cloned().collect();
    assert_eq!(listed, expected, "{when}: file list");
    for (name, m) in files {
        let r = volume.open_file(name, OpenOptions::read()).await.unwrap();
        assert_eq!(r.size(), m.durable.len() as u64, "{when}: size of {name}");
        assert!(
            whole(&r).await == m.durable,
            "{when}: {name} differs from its last sync"
        );
    }
}

async fn run(engine: Engine, ops: Vec<Op>, page_size: u32) {
    let h = Harness::new(engine);
    let mut volume = h.create().await;
    let mut files: BTreeMap<String, Model> = BTreeMap::new();
    let mut writers: BTreeMap<String, File> = BTreeMap::new();

    for (i, op) in ops.into_iter().enumerate() {
        // Files come into being (durably, empty) on first touch.
        let touch = |file: usize| NAMES[file].to_string();
        if let Op::Write { file, .. }
        | Op::Truncate { file, .. }
        | Op::Shrink { file, .. }
        | Op::Sync { file }
        | Op::Pack { file } = op
        {
            let name = touch(file);
            if !writers.contains_key(&name) {
                writers.insert(
                    name.clone(),
                    volume
                        .open_file(&name, OpenOptions::create(page_size))
                        .await
                        .unwrap(),
                );
                files.entry(name).or_default();
            }
        }
        match op {
            Op::Write {
                file,
                offset,
                len,
                seed,
            } => {
                let name = touch(file);
                let data = pattern(seed, len);
                writers
                    .get_mut(&name)
                    .unwrap()
                    .write_at(offset, &data)
                    .await
                    .unwrap();
                let m = &mut files.get_mut(&name).unwrap().current;
                let end = offset as usize + len;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[offset as usize..end].copy_from_slice(&data);
            }
            Op::Truncate { file, .. } | Op::Shrink { file, .. } => {
                let name = touch(file);
                let size = match op {
                    Op::Shrink { permille, .. } => {
                        files[&name].current.len() as u64 * permille / 1000
                    }
                    Op::Truncate { size, .. } => size,
                    _ => unreachable!(),
                };
                writers
                    .get_mut(&name)
                    .unwrap()
                    .truncate(size)
                    .await
                    .unwrap();
                files
                    .get_mut(&name)
                    .unwrap()
                    .current
                    .resize(size as usize, 0);
            }
            Op::Sync { file } | Op::Pack { file } => {
                let name = touch(file);
                let w = writers.get_mut(&name).unwrap();
                if matches!(op, Op::Pack { .. }) {
                    w.checkpoint().await.unwrap()
                } else {
                    w.sync().await.unwrap()
                }
                let m = files.get_mut(&name).unwrap();
                m.durable = m.current.clone();
            }
            Op::Rename { from, to } => {
                let (from, to) = (touch(from), touch(to));
                if !files.contains_key(&from) || from == to {
                    continue;
                }
                // Renaming needs both files closed (no other writer).
                for name in [&from, &to] {
                    if let Some(w) = writers.remove(name) {
                        w.close().await.unwrap();
                        let m = files.get_mut(name).unwrap();
                        m.durable = m.current.clone();
                    }
                }
                volume.rename(&from, &to, true).await.unwrap();
                let m = files.remove(&from).unwrap();
                files.insert(to, m);
            }
            Op::ReadBack { file, offset, len } => {
                let name = touch(file);
                let Some(m) = files.get(&name) else { continue };
                let got = match writers.get(&name) {
                    Some(w) => w.read_at(offset, len).await.unwrap(),
                    None => volume
                        .open_file(&name, OpenOptions::read())
                        .await
                        .unwrap()
                        .read_at(offset, len)
                        .await
                        .unwrap(),
                };
                let model = if writers.contains_key(&name) {
                    &m.current
                } else {
                    &m.durable
                };
                let from = (offset as usize).min(model.len());
                let to = (offset as usize + len).min(model.len());
                assert!(
                    got == model[from..to],
                    "op {i}: read_at({offset}, {len}) of {name} differs"
                );
            }
            Op::ReaderSeesDurable { file } => {
                let name = touch(file);
                let Some(m) = files.get(&name) else { continue };
                let r = volume.open_file(&name, OpenOptions::read()).await.unwrap();
                assert!(
                    whole(&r).await == m.durable,
                    "op {i}: a reader of {name} must see exactly its last sync"
                );
            }
            Op::Reopen => {
                for (name, w) in std::mem::take(&mut writers) {
                    w.close().await.unwrap();
                    let m = files.get_mut(&name).unwrap();
                    m.durable = m.current.clone();
                }
                volume = h.reopen().await;
                check_durable(&volume, &files, &format!("op {i} (reopen)")).await;
            }
            Op::Crash => {
                writers.clear();
                // Dead writers' leases must expire before new ones.
                h.env.advance(31_000);
                volume = h.reopen().await;
                for m in files.values_mut() {
                    m.current = m.durable.clone();
                }
                check_durable(&volume, &files, &format!("op {i} (crash)")).await;
            }
        }
    }
    for (name, w) in std::mem::take(&mut writers) {
        w.close().await.unwrap();
        let m = files.get_mut(&name).unwrap();
        m.durable = m.current.clone();
    }
    let volume = h.reopen().await;
    check_durable(&volume, &files, "end").await;
    let report = volume.fsck(&NoProgress).await.unwrap();
    assert!(report.is_clean(), "fsck after the run: {report:?}");
}

fn page_size() -> impl Strategy<Value = u32> {
    prop_oneof![Just(512u32), Just(4096), Just(8192)]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_page_store_matches_the_model(ops in proptest::collection::vec(op(), 1..50), ps in page_size()) {
        runtime().block_on(run(Engine::Sqlite, ops, ps));
    }
}

/// The server lives for the whole run (a proptest runner inside the test,
/// rather than `proptest!`, so it is stopped when the test ends).
#[test]
fn postgres_page_store_matches_the_model() {
    let server = fsx_testkit::postgres::PgServer::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    let strategy = (proptest::collection::vec(op(), 1..50), page_size());
    runner
        .run(&strategy, |(ops, ps)| {
            runtime().block_on(run(Engine::Postgres(server.fresh_url()), ops, ps));
            Ok(())
        })
        .unwrap();
}
