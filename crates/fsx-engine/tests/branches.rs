//! Branch isolation, model-based: random interleavings of writes, syncs,
//! packs, truncations, directory creations, moves and removals, commits,
//! branch creations (from heads and from commits), resets, branch
//! deletions, GC and crashes over several branches, each checked against
//! its own model of files and directories — on SQLite and on a real
//! PostgreSQL server.
//!
//! Every branch models each file twice (what its writer sees, and what is
//! durable); every commit keeps the durable files of its branch when it was
//! made. After each step that can break isolation, every branch and every
//! commit that should still exist is read back in full.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Engine, Harness, pattern};
use fsx_engine::{File, GcOptions, NoProgress, OpenOptions, Volume};
use fsx_meta::contract::MakeNode;
use fsx_meta::perm::Caller;
use fsx_meta::rename::RenameFlags;
use fsx_meta::{CommitId, View};
use proptest::prelude::*;

/// Files, some inside directories (a write makes the directories on its
/// path, as `fsx file put` does).
const FILES: [&str; 4] = ["db", "db-wal", "d1/f", "d1/e/g"];
/// Directories the tree operations name.
const DIRS: [&str; 4] = ["d1", "d2", "d1/e", "d2/e"];
const BRANCHES: [&str; 4] = ["main", "b1", "b2", "b3"];
const SPAN: u64 = 600_000;
const PS: u32 = 4096;

#[derive(Debug, Clone)]
enum Op {
    Write {
        branch: usize,
        file: usize,
        offset: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        branch: usize,
        file: usize,
        size: u64,
    },
    Sync {
        branch: usize,
    },
    Pack {
        branch: usize,
    },
    Commit {
        branch: usize,
    },
    BranchFromHead {
        from: usize,
        to: usize,
    },
    BranchFromCommit {
        commit: usize,
        to: usize,
    },
    Reset {
        branch: usize,
        commit: usize,
    },
    Delete {
        branch: usize,
    },
    Gc,
    Crash,
    Mkdir {
        branch: usize,
        dir: usize,
    },
    Rmdir {
        branch: usize,
        dir: usize,
    },
    MoveDir {
        branch: usize,
        from: usize,
        to: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let b = 0..BRANCHES.len();
    let f = 0..FILES.len();
    prop_oneof![
        8 => (b.clone(), f.clone(), 0..SPAN, 1usize..20_000, any::<u64>())
            .prop_map(|(branch, file, offset, len, seed)| Op::Write { branch, file, offset, len, seed }),
        // Page-aligned cuts half the time: the cases where whole pages and
        // extents go (and packing can leave an extent empty).
        2 => (b.clone(), f, prop_oneof![0..SPAN, (0..SPAN / u64::from(PS)).prop_map(|p| p * u64::from(PS))])
            .prop_map(|(branch, file, size)| Op::Truncate { branch, file, size }),
        3 => b.clone().prop_map(|branch| Op::Sync { branch }),
        1 => b.clone().prop_map(|branch| Op::Pack { branch }),
        3 => b.clone().prop_map(|branch| Op::Commit { branch }),
        3 => (b.clone(), b.clone()).prop_map(|(from, to)| Op::BranchFromHead { from, to }),
        2 => (0usize..16, b.clone()).prop_map(|(commit, to)| Op::BranchFromCommit { commit, to }),
        1 => (b.clone(), 0usize..16).prop_map(|(branch, commit)| Op::Reset { branch, commit }),
        1 => b.clone().prop_map(|branch| Op::Delete { branch }),
        1 => Just(Op::Gc),
        1 => Just(Op::Crash),
        2 => (b.clone(), 0..DIRS.len()).prop_map(|(branch, dir)| Op::Mkdir { branch, dir }),
        1 => (b.clone(), 0..DIRS.len()).prop_map(|(branch, dir)| Op::Rmdir { branch, dir }),
        2 => (b, 0..DIRS.len(), 0..DIRS.len())
            .prop_map(|(branch, from, to)| Op::MoveDir { branch, from, to }),
    ]
}

type Dirs = BTreeSet<String>;

/// The directories on `path`'s way (`a/b/c` → `a`, `a/b`).
fn ancestors(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    (1..parts.len()).map(|i| parts[..i].join("/")).collect()
}

fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Every directory of `view`, by path, walked through the tree.
async fn read_dirs(v: &Volume) -> Dirs {
    let meta = v.meta();
    let mut out = Dirs::new();
    let mut todo = vec![(meta.root().await.unwrap(), String::new())];
    while let Some((ino, path)) = todo.pop() {
        for e in meta.readdir(v.view(), ino, None, 10_000).await.unwrap() {
            if e.kind == fsx_meta::NodeKind::Dir {
                let name = String::from_utf8(e.name.to_vec()).unwrap();
                let p = if path.is_empty() {
                    name
                } else {
                    format!("{path}/{name}")
                };
                out.insert(p.clone());
                todo.push((e.ino, p));
            }
        }
    }
    out
}

type Files = BTreeMap<String, Vec<u8>>;

#[derive(Default)]
struct BranchModel {
    current: Files,
    durable: Files,
    /// Directory changes are durable at once.
    dirs: Dirs,
    tip: Option<CommitId>,
}

struct CommitModel {
    parent: Option<CommitId>,
    files: Files,
    dirs: Dirs,
}

async fn read_all(v: &Volume) -> Files {
    let mut out = Files::new();
    for f in v.list("").await.unwrap() {
        let h = v.open_file(&f.name, OpenOptions::read()).await.unwrap();
        out.insert(
            f.name.clone(),
            h.read_at(0, h.size() as usize).await.unwrap(),
        );
    }
    out
}

fn reachable(
    branches: &BTreeMap<String, BranchModel>,
    commits: &BTreeMap<CommitId, CommitModel>,
) -> BTreeSet<CommitId> {
    let mut seen = BTreeSet::new();
    for b in branches.values() {
        let mut cur = b.tip;
        while let Some(c) = cur {
            if !seen.insert(c) {
                break;
            }
            cur = commits.get(&c).and_then(|m| m.parent);
        }
    }
    seen
}

enum TreeOp<'a> {
    Mkdir(&'a str),
    Rmdir(&'a str),
    Move(&'a str, &'a str),
}

/// The directory holding `path`'s last component, and that component.
async fn place(v: &Volume, path: &str) -> fsx_meta::Result<(fsx_meta::Ino, Vec<u8>)> {
    let meta = v.meta();
    let root = Caller::root();
    let mut at = meta.root().await?;
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        at = meta.lookup(v.view(), at, p.as_bytes(), &root).await?.ino;
    }
    Ok((at, parts[parts.len() - 1].as_bytes().to_vec()))
}

/// A change of the tree on `v`'s branch, as root.
async fn tree_op(v: &Volume, op: TreeOp<'_>) -> fsx_meta::Result<()> {
    let meta = v.meta();
    let root = Caller::root();
    let branch = v.branch_id().unwrap();
    match op {
        TreeOp::Mkdir(d) => {
            let (parent, name) = place(v, d).await?;
            let node = MakeNode {
                branch,
                parent,
                name: &name,
                kind: fsx_meta::NodeKind::Dir,
                mode: 0o755,
                rdev: 0,
                target: None,
                page_size: 0,
                caller: &root,
                now_ns: 1,
                lease: None,
            };
            meta.make(&node).await.map(|_| ())
        }
        TreeOp::Rmdir(d) => {
            let (parent, name) = place(v, d).await?;
            meta.remove(branch, parent, &name, true, None, &root, 1)
                .await
                .map(|_| ())
        }
        TreeOp::Move(a, b) => {
            let (p1, n1) = place(v, a).await?;
            let (p2, n2) = place(v, b).await?;
            meta.rename(
                branch,
                p1,
                &n1,
                p2,
                &n2,
                RenameFlags::default(),
                None,
                &root,
                1,
            )
            .await
            .map(|_| ())
        }
    }
}

struct State {
    volume: Volume,
    branches: BTreeMap<String, BranchModel>,
    commits: BTreeMap<CommitId, CommitModel>,
    writers: BTreeMap<(String, String), File>,
}

impl State {
    async fn on(&self, branch: &str) -> Volume {
        self.volume.checkout(branch).await.unwrap()
    }

    /// Closes (syncing) every writer of `branch`.
    async fn close_writers(&mut self, branch: &str) {
        let keys: Vec<_> = self
            .writers
            .keys()
            .filter(|(b, _)| b == branch)
            .cloned()
            .collect();
        for k in keys {
            self.writers.remove(&k).unwrap().close().await.unwrap();
        }
        if let Some(m) = self.branches.get_mut(branch) {
            m.durable = m.current.clone();
        }
    }

    /// Syncs every writer of `branch`.
    async fn sync_writers(&mut self, branch: &str, pack: bool) {
        for ((b, _), w) in self.writers.iter_mut() {
            if b == branch {
                if pack {
                    w.checkpoint().await.unwrap();
                } else {
                    w.sync().await.unwrap();
                }
            }
        }
        let m = self.branches.get_mut(branch).unwrap();
        m.durable = m.current.clone();
    }

    /// Records a commit the engine may have made on `branch` (an automatic
    /// one when a branch was created from its head).
    async fn note_tip(&mut self, branch: &str) {
        let info = self.volume.meta().branch(branch).await.unwrap();
        let m = self.branches.get_mut(branch).unwrap();
        if info.commit != m.tip {
            let id = info.commit.unwrap();
            self.commits.insert(
                id,
                CommitModel {
                    parent: m.tip,
                    files: m.durable.clone(),
                    dirs: m.dirs.clone(),
                },
            );
            m.tip = Some(id);
        }
    }

    async fn check(&self, when: &str) {
        self.check_with(&self.volume, when).await
    }

    /// Checks every branch and commit through `volume` (a fresh one has no
    /// cached extents, so it proves the store still holds them).
    async fn check_with(&self, volume: &Volume, when: &str) {
        for (name, m) in &self.branches {
            let v = volume.checkout(name).await.unwrap();
            let got = read_all(&v).await;
            assert!(
                got == m.durable,
                "{when}: branch {name} does not read its durable model (files {:?} vs {:?})",
                got.keys().collect::<Vec<_>>(),
                m.durable.keys().collect::<Vec<_>>()
            );
            assert_eq!(
                read_dirs(&v).await,
                m.dirs,
                "{when}: directories of branch {name}"
            );
        }
        let live = reachable(&self.branches, &self.commits);
        for (id, c) in &self.commits {
            if live.contains(id) {
                let v = volume.at_commit(*id).await.unwrap();
                assert!(read_all(&v).await == c.files, "{when}: commit {id} changed");
                assert_eq!(
                    read_dirs(&v).await,
                    c.dirs,
                    "{when}: directories of commit {id}"
                );
            } else {
                assert!(
                    volume.at_commit(*id).await.is_err(),
                    "{when}: commit {id} should be gone"
                );
            }
        }
    }
}

async fn run(engine: Engine, ops: Vec<Op>) {
    let h = Harness::new(engine);
    let mut st = State {
        volume: h.create().await,
        branches: BTreeMap::from([("main".to_string(), BranchModel::default())]),
        commits: BTreeMap::new(),
        writers: BTreeMap::new(),
    };
    let mut made: Vec<CommitId> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        h.env.advance(10);
        let when = format!("op {i} {op:?}");
        match op {
            Op::Write {
                branch,
                file,
                offset,
                len,
                seed,
            } => {
                let b = BRANCHES[branch].to_string();
                if !st.branches.contains_key(&b) {
                    continue;
                }
                let f = FILES[file].to_string();
                let key = (b.clone(), f.clone());
                if !st.writers.contains_key(&key) {
                    let v = st.on(&b).await;
                    let w = v.open_file(&f, OpenOptions::create(PS)).await.unwrap();
                    st.writers.insert(key.clone(), w);
                    let m = st.branches.get_mut(&b).unwrap();
                    // Creation is durable at once (an empty file, and the
                    // directories on its path).
                    m.current.entry(f.clone()).or_default();
                    m.durable.entry(f.clone()).or_default();
                    m.dirs.extend(ancestors(&f));
                }
                let data = pattern(seed, len);
                st.writers
                    .get_mut(&key)
                    .unwrap()
                    .write_at(offset, &data)
                    .await
                    .unwrap();
                let content = st
                    .branches
                    .get_mut(&b)
                    .unwrap()
                    .current
                    .get_mut(&f)
                    .unwrap();
                let end = offset as usize + len;
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[offset as usize..end].copy_from_slice(&data);
            }
            Op::Truncate { branch, file, size } => {
                let key = (BRANCHES[branch].to_string(), FILES[file].to_string());
                if let Some(w) = st.writers.get_mut(&key) {
                    w.truncate(size).await.unwrap();
                    let m = st.branches.get_mut(&key.0).unwrap();
                    m.current.get_mut(&key.1).unwrap().resize(size as usize, 0);
                }
            }
            Op::Sync { branch } | Op::Pack { branch } => {
                let b = BRANCHES[branch];
                if st.branches.contains_key(b) {
                    st.sync_writers(b, matches!(op, Op::Pack { .. })).await;
                }
            }
            Op::Commit { branch } => {
                let b = BRANCHES[branch];
                if !st.branches.contains_key(b) {
                    continue;
                }
                let c = st.on(b).await.commit("test").await.unwrap();
                let m = st.branches.get_mut(b).unwrap();
                assert_eq!(c.parent, m.tip, "{when}: parent link");
                st.commits.insert(
                    c.id,
                    CommitModel {
                        parent: m.tip,
                        files: m.durable.clone(),
                        dirs: m.dirs.clone(),
                    },
                );
                m.tip = Some(c.id);
                made.push(c.id);
                st.check(&when).await;
            }
            Op::BranchFromHead { from, to } => {
                let (from, to) = (BRANCHES[from], BRANCHES[to]);
                if !st.branches.contains_key(from) || st.branches.contains_key(to) {
                    continue;
                }
                st.on(from).await.create_branch(to).await.unwrap();
                st.note_tip(from).await;
                let src = &st.branches[from];
                let m = BranchModel {
                    current: src.durable.clone(),
                    durable: src.durable.clone(),
                    dirs: src.dirs.clone(),
                    tip: src.tip,
                };
                st.branches.insert(to.to_string(), m);
                st.check(&when).await;
            }
            Op::BranchFromCommit { commit, to } => {
                let to = BRANCHES[to];
                let live = reachable(&st.branches, &st.commits);
                let Some(&c) = made.get(commit).filter(|c| live.contains(c)) else {
                    continue;
                };
                if st.branches.contains_key(to) {
                    continue;
                }
                st.volume
                    .at_commit(c)
                    .await
                    .unwrap()
                    .create_branch(to)
                    .await
                    .unwrap();
                let files = st.commits[&c].files.clone();
                st.branches.insert(
                    to.to_string(),
                    BranchModel {
                        current: files.clone(),
                        durable: files,
                        dirs: st.commits[&c].dirs.clone(),
                        tip: Some(c),
                    },
                );
                st.check(&when).await;
            }
            Op::Reset { branch, commit } => {
                let b = BRANCHES[branch];
                let live = reachable(&st.branches, &st.commits);
                let Some(&c) = made.get(commit).filter(|c| live.contains(c)) else {
                    continue;
                };
                if !st.branches.contains_key(b) {
                    continue;
                }
                st.close_writers(b).await;
                st.on(b).await.reset(c).await.unwrap();
                let files = st.commits[&c].files.clone();
                st.branches.insert(
                    b.to_string(),
                    BranchModel {
                        current: files.clone(),
                        durable: files,
                        dirs: st.commits[&c].dirs.clone(),
                        tip: Some(c),
                    },
                );
                st.check(&when).await;
            }
            Op::Delete { branch } => {
                let b = BRANCHES[branch];
                if b == "main" || !st.branches.contains_key(b) {
                    continue;
                }
                st.close_writers(b).await;
                st.volume.delete_branch(b).await.unwrap();
                st.branches.remove(b);
                st.check(&when).await;
            }
            Op::Gc => {
                st.volume
                    .gc(&GcOptions::default().grace_ms(0), &NoProgress)
                    .await
                    .unwrap();
                st.check_with(&h.reopen().await, &when).await;
            }
            Op::Crash => {
                st.writers.clear();
                h.env.advance(31_000);
                st.volume = h.reopen().await;
                for m in st.branches.values_mut() {
                    m.current = m.durable.clone();
                }
                st.check(&when).await;
            }
            Op::Mkdir { branch, dir } => {
                let b = BRANCHES[branch];
                let Some(m) = st.branches.get(b) else {
                    continue;
                };
                let d = DIRS[dir];
                let ok = !m.dirs.contains(d) && parent(d).is_none_or(|p| m.dirs.contains(p));
                let v = st.on(b).await;
                let r = tree_op(&v, TreeOp::Mkdir(d)).await;
                assert_eq!(r.is_ok(), ok, "{when}: mkdir {d}: {r:?}");
                if ok {
                    st.branches.get_mut(b).unwrap().dirs.insert(d.to_string());
                }
                st.check(&when).await;
            }
            Op::Rmdir { branch, dir } => {
                let b = BRANCHES[branch];
                let Some(m) = st.branches.get(b) else {
                    continue;
                };
                let d = DIRS[dir];
                let ok = m.dirs.contains(d)
                    && !m.dirs.iter().any(|x| under(x, d))
                    && !m.durable.keys().any(|f| under(f, d));
                let v = st.on(b).await;
                let r = tree_op(&v, TreeOp::Rmdir(d)).await;
                assert_eq!(r.is_ok(), ok, "{when}: rmdir {d}: {r:?}");
                if ok {
                    st.branches.get_mut(b).unwrap().dirs.remove(d);
                }
                st.check(&when).await;
            }
            Op::MoveDir { branch, from, to } => {
                let b = BRANCHES[branch];
                if !st.branches.contains_key(b) {
                    continue;
                }
                // Moving renames open files' paths: close them first.
                st.close_writers(b).await;
                let m = &st.branches[b];
                let (from, to) = (DIRS[from], DIRS[to]);
                let empty = |d: &str| {
                    !m.dirs.iter().any(|x| under(x, d)) && !m.durable.keys().any(|f| under(f, d))
                };
                let ok = m.dirs.contains(from)
                    && parent(to).is_none_or(|p| m.dirs.contains(p))
                    && !under(to, from)
                    && (from == to || !m.dirs.contains(to) || empty(to));
                let v = st.on(b).await;
                let r = tree_op(&v, TreeOp::Move(from, to)).await;
                assert_eq!(r.is_ok(), ok, "{when}: move {from} to {to}: {r:?}");
                let m = st.branches.get_mut(b).unwrap();
                if ok && from != to {
                    let moved = |p: &str| format!("{to}{}", &p[from.len()..]);
                    let dirs: Dirs = std::mem::take(&mut m.dirs)
                        .into_iter()
                        .filter(|d| d != to)
                        .map(|d| {
                            if d == from || under(&d, from) {
                                moved(&d)
                            } else {
                                d
                            }
                        })
                        .collect();
                    m.dirs = dirs;
                    let files: Files = std::mem::take(&mut m.durable)
                        .into_iter()
                        .map(|(f, data)| {
                            if under(&f, from) {
                                (moved(&f), data)
                            } else {
                                (f, data)
                            }
                        })
                        .collect();
                    m.current = files.clone();
                    m.durable = files;
                }
                st.check(&when).await;
            }
        }
    }
    for (name, w) in std::mem::take(&mut st.writers) {
        w.close().await.unwrap();
        let m = st.branches.get_mut(&name.0).unwrap();
        m.durable = m.current.clone();
    }
    st.check("end").await;
    st.volume
        .gc(&GcOptions::default().grace_ms(0), &NoProgress)
        .await
        .unwrap();
    st.check_with(&h.reopen().await, "after gc").await;
    let report = st.volume.fsck(&NoProgress).await.unwrap();
    assert!(report.is_clean(), "fsck after the run: {report:?}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_branches_are_isolated(ops in proptest::collection::vec(op(), 1..80)) {
        runtime().block_on(run(Engine::Sqlite, ops));
    }
}

#[test]
fn postgres_branches_are_isolated() {
    let server = fsx_testkit::postgres::PgServer::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 8,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..80), |ops| {
            runtime().block_on(run(Engine::Postgres(server.fresh_url()), ops));
            Ok(())
        })
        .unwrap();
}

/// Deleting a branch frees the extents only it referenced, keeps the
/// shared ones, and leaves every other branch fully readable (from a fresh
/// volume, so from the store, not a cache).
#[test]
fn deleting_a_branch_frees_its_unique_extents() {
    runtime().block_on(async {
        let h = Harness::new(Engine::Sqlite);
        let volume = h.create().await;
        let base = pattern(1, 4 << 20);
        let mut w = volume
            .open_file("db", OpenOptions::create(PS))
            .await
            .unwrap();
        w.write_at(0, &base).await.unwrap();
        w.close().await.unwrap();
        volume.create_branch("dev").await.unwrap();
        let dev = volume.checkout("dev").await.unwrap();
        let mut w = dev.open_file("db", OpenOptions::write()).await.unwrap();
        let change = pattern(2, 1 << 20);
        w.write_at(1 << 20, &change).await.unwrap();
        w.close().await.unwrap();
        let mut dev_content = base.clone();
        dev_content[1 << 20..2 << 20].copy_from_slice(&change);
        let objects = || async { common::extent_objects(h.store().as_ref()).await.len() };
        // 4 MiB in 256 KiB extents: 16 shared, 4 rewritten on dev.
        assert_eq!(objects().await, 20);
        let usage = volume.branch_usage().await.unwrap();
        let dev_usage = usage.iter().find(|(b, _)| b.name == "dev").unwrap().1;
        let main_usage = usage.iter().find(|(b, _)| b.name == "main").unwrap().1;
        assert_eq!(dev_usage.extents, 4, "dev's unique extents");
        assert_eq!(
            main_usage.extents, 0,
            "main's head holds nothing of its own"
        );

        volume.delete_branch("dev").await.unwrap();
        h.env.advance(1);
        let report = volume
            .gc(&GcOptions::default().grace_ms(0), &NoProgress)
            .await
            .unwrap();
        assert_eq!(
            report.deleted, 4,
            "gc frees exactly dev's extents: {report:?}"
        );
        assert_eq!(objects().await, 16);
        let fresh = h.reopen().await;
        assert!(read_all(&fresh).await == Files::from([("db".to_string(), base.clone())]));
        assert!(fresh.checkout("dev").await.is_err());
        let fsck = fresh.fsck(&NoProgress).await.unwrap();
        assert!(fsck.is_clean(), "{fsck:?}");
        let _ = dev_content;
    });
}

/// A diff names the changed page ranges; a merge takes one-sided changes,
/// reports two-sided ones, and resolves them by strategy.
#[test]
fn diff_and_merge_at_file_granularity() {
    use fsx_engine::{MergeOutcome, MergeStrategy};
    runtime().block_on(async {
        let h = Harness::new(Engine::Sqlite);
        let volume = h.create().await;
        for name in ["a", "b", "c"] {
            let mut w = volume
                .open_file(name, OpenOptions::create(PS))
                .await
                .unwrap();
            w.write_at(0, &pattern(1, 64 * 4096)).await.unwrap();
            w.close().await.unwrap();
        }
        let base = volume.commit("base").await.unwrap();
        volume.create_branch("dev").await.unwrap();
        let dev = volume.checkout("dev").await.unwrap();
        let write = |v: Volume, name: &'static str, page: u64, seed: u64| async move {
            let mut w = v.open_file(name, OpenOptions::write()).await.unwrap();
            w.write_at(page * 4096, &pattern(seed, 2 * 4096))
                .await
                .unwrap();
            w.close().await.unwrap();
        };
        write(dev.clone(), "a", 10, 5).await; // dev only
        write(dev.clone(), "c", 3, 6).await; // both sides
        write(volume.clone(), "b", 20, 7).await; // main only
        write(volume.clone(), "c", 30, 8).await;
        let diff = volume
            .diff(View::Commit(base.id), dev.view())
            .await
            .unwrap();
        let summary: Vec<(String, Vec<(u64, u64)>)> = diff
            .iter()
            .map(|c| {
                let ranges = c.pages.iter().map(|r| (r.start, r.end)).collect();
                (c.new_name.clone().unwrap(), ranges)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a".to_string(), vec![(10, 12)]),
                ("c".to_string(), vec![(3, 5)])
            ]
        );

        let before = read_all(&volume).await;
        let graph_before = volume.meta().layer_graph().await.unwrap();
        match volume.merge(dev.view(), MergeStrategy::Fail).await.unwrap() {
            MergeOutcome::Conflicts(c) => assert_eq!(c, vec!["c".to_string()]),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let after_fail = read_all(&volume).await;
        assert!(after_fail == before, "a failed merge applied something");
        assert_eq!(
            volume.meta().layer_graph().await.unwrap(),
            graph_before,
            "a failed merge left commits behind"
        );
        let dev_files = read_all(&dev).await;
        match volume
            .merge(dev.view(), MergeStrategy::Theirs)
            .await
            .unwrap()
        {
            MergeOutcome::Merged {
                taken, resolved, ..
            } => {
                assert_eq!(taken, vec!["a".to_string()]);
                assert_eq!(resolved, vec!["c".to_string()]);
            }
            other => panic!("expected a merge, got {other:?}"),
        }
        let merged = read_all(&volume).await;
        assert!(merged["a"] == dev_files["a"] && merged["c"] == dev_files["c"]);
        assert!(merged["b"] == before["b"], "main's own change kept");
        // Merging again changes nothing; dev fast-forwards to main.
        assert_eq!(
            volume.merge(dev.view(), MergeStrategy::Fail).await.unwrap(),
            MergeOutcome::UpToDate
        );
        match dev.merge(volume.view(), MergeStrategy::Fail).await.unwrap() {
            MergeOutcome::FastForward(_) => {}
            other => panic!("expected a fast-forward, got {other:?}"),
        }
        assert!(read_all(&dev).await == merged);
        let fsck = volume.fsck(&NoProgress).await.unwrap();
        assert!(fsck.is_clean(), "{fsck:?}");
    });
}

/// A truncation on a branch hides what the parent had past the cut, also
/// after the file grows again over it; the parent keeps its bytes.
#[test]
fn truncation_on_a_branch_hides_the_parents_pages_past_the_cut() {
    runtime().block_on(async {
        let h = Harness::new(Engine::Sqlite);
        let volume = h.create().await;
        let mut w = volume
            .open_file("db", OpenOptions::create(PS))
            .await
            .unwrap();
        w.write_at(400_000, &[7u8; 5000]).await.unwrap();
        w.sync().await.unwrap();
        volume.create_branch("b1").await.unwrap();
        let b1 = volume.checkout("b1").await.unwrap();
        let mut w1 = b1.open_file("db", OpenOptions::write()).await.unwrap();
        w1.truncate(100_000).await.unwrap();
        w1.sync().await.unwrap();
        w1.write_at(500_000, &[1u8; 10]).await.unwrap();
        w1.sync().await.unwrap();
        let r = b1.open_file("db", OpenOptions::read()).await.unwrap();
        let got = r.read_at(400_000, 10).await.unwrap();
        assert_eq!(
            got,
            vec![0u8; 10],
            "the cut page reads as zeros on the branch"
        );
        let main = volume.open_file("db", OpenOptions::read()).await.unwrap();
        assert_eq!(main.read_at(400_000, 10).await.unwrap(), vec![7u8; 10]);
        drop(w);
    });
}

/// GC packs the dirty pages a commit froze into extents: the commit, the
/// branch and a branch made from the commit read exactly as before, and the
/// metadata no longer holds those pages.
#[test]
fn gc_packs_the_dirty_pages_commits_froze() {
    runtime().block_on(async {
        let h = Harness::new(Engine::Sqlite);
        let volume = h.create().await;
        let mut w = volume
            .open_file("db", OpenOptions::create(PS))
            .await
            .unwrap();
        // Synced but never packed: fewer pages than an extent holds.
        w.write_at(0, &pattern(1, 40 * 4096)).await.unwrap();
        w.sync().await.unwrap();
        let c = volume.commit("dirty").await.unwrap();
        w.write_at(8192, &pattern(2, 4096)).await.unwrap();
        w.sync().await.unwrap();
        volume
            .at_commit(c.id)
            .await
            .unwrap()
            .create_branch("from-c")
            .await
            .unwrap();
        let snapshot = |v: Volume| async move { read_all(&v).await };
        let before_commit = snapshot(volume.at_commit(c.id).await.unwrap()).await;
        let before_main = snapshot(volume.clone()).await;
        let meta = volume.meta().clone();
        let file = volume.stat("db").await.unwrap();
        let own = meta
            .dirty_summary(View::Commit(c.id), file.id, 64)
            .await
            .unwrap();
        assert!(!own.is_empty(), "the commit froze dirty pages");

        h.env.advance(1);
        let report = volume
            .gc(&GcOptions::default().grace_ms(0), &NoProgress)
            .await
            .unwrap();
        assert_eq!(report.commits_packed, 1, "{report:?}");
        let own = meta
            .dirty_summary(View::Commit(c.id), file.id, 64)
            .await
            .unwrap();
        assert!(
            own.is_empty(),
            "the commit's pages are in an extent now: {own:?}"
        );
        let fresh = h.reopen().await;
        assert!(snapshot(fresh.at_commit(c.id).await.unwrap()).await == before_commit);
        assert!(snapshot(fresh.clone()).await == before_main);
        assert!(snapshot(fresh.checkout("from-c").await.unwrap()).await == before_commit);
        let fsck = fresh.fsck(&NoProgress).await.unwrap();
        assert!(fsck.is_clean(), "{fsck:?}");
        drop(w);
    });
}

/// Reads through long histories — more frozen layers than the SQLite
/// engine resolves one by one, so through its cached summary of them —
/// match the model at every commit and on every branch, before and after
/// another instance's GC rewrote those layers (packed the pages commits
/// froze, expired automatic commits and folded their layers) under the
/// first instance's cache.
#[test]
fn long_histories_read_right_before_and_after_gc_rewrites_them() {
    runtime().block_on(long_history(Engine::Sqlite));
}

/// [`long_histories_read_right_before_and_after_gc_rewrites_them`] on a
/// real PostgreSQL server.
#[test]
fn postgres_long_histories_read_right_before_and_after_gc_rewrites_them() {
    let server = fsx_testkit::postgres::PgServer::start();
    runtime().block_on(long_history(Engine::Postgres(server.fresh_url())));
}

async fn long_history(engine: Engine) {
    use fsx_engine::branch::{AUTO_COMMIT_SETTING, AUTO_RETAIN_SETTING};
    use fsx_testkit::crash::Rng;
    let h = Harness::new(engine);
    let meta = h.create().await.meta().clone();
    meta.set_setting(AUTO_COMMIT_SETTING, "10").await.unwrap();
    meta.set_setting(AUTO_RETAIN_SETTING, "1000").await.unwrap();
    // Settings are read when a volume opens.
    let volume = h.reopen().await;
    let mut rng = Rng(fsx_testkit::crash::seed("long history"));
    let mut w = volume
        .open_file("db", OpenOptions::create(PS))
        .await
        .unwrap();
    let mut model: Vec<u8> = Vec::new();
    let mut commits: Vec<(CommitId, Vec<u8>)> = Vec::new();
    // Writes, truncations, packs; every sync 11 ms after the last makes
    // an automatic commit, every third round an explicit one.
    let step = |model: &mut Vec<u8>, rng: &mut Rng, round: u64| {
        let (offset, len) = (rng.below(SPAN), 1 + rng.below(20_000) as usize);
        let data = pattern(round, len);
        let end = offset as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(&data);
        let cut = (rng.below(8) == 0).then(|| rng.below(model.len() as u64 + 1));
        if let Some(c) = cut {
            model.truncate(c as usize);
        }
        (offset, data, cut)
    };
    for round in 0..36u64 {
        let (offset, data, cut) = step(&mut model, &mut rng, round);
        w.write_at(offset, &data).await.unwrap();
        if let Some(c) = cut {
            w.truncate(c).await.unwrap();
        }
        h.env.advance(11);
        w.sync().await.unwrap();
        if round % 5 == 4 {
            w.pack_dirty().await.unwrap();
        }
        if round % 3 == 2 {
            let c = volume.commit(&format!("round {round}")).await.unwrap();
            commits.push((c.id, model.clone()));
        }
    }
    // A branch from an early commit, with a history of its own.
    let (base, base_model) = commits[2].clone();
    volume
        .at_commit(base)
        .await
        .unwrap()
        .create_branch("side")
        .await
        .unwrap();
    let side = volume.checkout("side").await.unwrap();
    let mut ws = side.open_file("db", OpenOptions::write()).await.unwrap();
    let mut side_model = base_model;
    for round in 100..120u64 {
        let (offset, data, cut) = step(&mut side_model, &mut rng, round);
        ws.write_at(offset, &data).await.unwrap();
        if let Some(c) = cut {
            ws.truncate(c).await.unwrap();
        }
        h.env.advance(11);
        ws.sync().await.unwrap();
        if round % 4 == 0 {
            side.commit("side").await.unwrap();
        }
    }
    let log = volume.log(usize::MAX).await.unwrap();
    assert!(
        log.len() > 30,
        "a long history: {} commits on main",
        log.len()
    );

    async fn read_db(v: &Volume) -> Vec<u8> {
        let f = v.open_file("db", OpenOptions::read()).await.unwrap();
        f.read_at(0, f.size() as usize).await.unwrap()
    }
    let check = |label: &'static str| {
        let (volume, side, commits, model, side_model) =
            (&volume, &side, &commits, &model, &side_model);
        async move {
            assert!(read_db(volume).await == *model, "{label}: main");
            assert!(read_db(side).await == *side_model, "{label}: side");
            for (id, want) in commits {
                let at = volume.at_commit(*id).await.unwrap();
                assert!(read_db(&at).await == *want, "{label}: commit {id}");
            }
        }
    };
    check("before gc").await;
    drop((w, ws));

    // Another instance, with metadata caches of its own, rewrites the
    // frozen layers the first instance has summarised.
    h.env.advance(10_000);
    let other = h.reopen().await;
    // First expiry alone: folds move dirty pages between layers...
    let now = fsx_engine::Environment::now_ms(h.env.as_ref());
    let expired = other.meta().expire_commits(now - 1000, now).await.unwrap();
    assert!(expired > 10, "{expired} automatic commits expired");
    check("after folding, first instance").await;
    // ...then GC packs them into extents.
    let report = other
        .gc(&GcOptions::default().grace_ms(0), &NoProgress)
        .await
        .unwrap();
    assert!(report.commits_packed > 0, "{report:?}");
    check("after packing, first instance").await;
    let fresh = h.reopen().await;
    assert!(read_db(&fresh).await == model, "after gc, fresh instance");
    let fsck = fresh.fsck(&NoProgress).await.unwrap();
    assert!(fsck.is_clean(), "{fsck:?}");
}
