//! Conformance checks of branches, commits and retention (schema version 4).

use super::*;

/// Page 0 of file `id` as `view` shows it: its fill byte from a dirty page,
/// `Some(0)` for a hole, or the extent key it comes from.
async fn page0(m: &dyn MetaEngine, view: View, id: FileId) -> Result<String, String> {
    let map = ok("read_map", m.read_map(view, id, 0, 1, PPE).await)?;
    if let Some(p) = map.dirty.first() {
        return Ok(match &p.data {
            Some(d) => format!("dirty:{}", d[0]),
            None => "hole".into(),
        });
    }
    Ok(match map.extents.first() {
        Some((_, k)) => format!("extent:{k}"),
        None => "hole".into(),
    })
}

/// A read map without page bytes, for messages.
fn brief(m: &ReadMap) -> String {
    let dirty: Vec<String> = m
        .dirty
        .iter()
        .map(|p| match &p.data {
            Some(d) => format!("{}={}", p.page_no, d[0]),
            None => format!("{}=hole", p.page_no),
        })
        .collect();
    format!("size {} dirty {dirty:?} extents {:?}", m.size, m.extents)
}

async fn write(
    m: &dyn MetaEngine,
    lease: &LeaseRequest,
    pages: Vec<PageWrite>,
    size: u64,
) -> CheckResult {
    ok(
        "commit_writes",
        m.commit_writes(&WriteBatch::new(lease.clone(), pages, size))
            .await,
    )
}

async fn lease_on(
    m: &dyn MetaEngine,
    branch: BranchId,
    id: FileId,
    holder: &str,
    now: i64,
) -> Result<LeaseRequest, String> {
    let l = LeaseRequest::new(id, holder, now, TTL).on_branch(branch);
    ok("acquire_lease", m.acquire_lease(&l).await)?;
    Ok(l)
}

pub(super) async fn isolation(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, main_w) = new_file(m, "f", "w", 1).await?;
    write(m, &main_w, vec![pw(0, 1)], 4096).await?;
    let c1 = ok(
        "commit",
        m.commit(CommitRequest::new(MAIN_BRANCH, "one", 2)).await,
    )?
    .ok_or("an explicit commit must be made")?;
    ensure!(!c1.auto && c1.parent.is_none(), "first commit {c1:?}");
    let dev = ok(
        "create_branch",
        m.create_branch("dev", View::Commit(c1.id), 3).await,
    )?;
    ensure!(dev.commit == Some(c1.id), "dev starts at c1: {dev:?}");
    err_kind(
        "duplicate branch",
        m.create_branch("dev", View::MAIN, 3).await,
        MetaErrorKind::AlreadyExists,
    )?;
    err_kind(
        "bad branch name",
        m.create_branch("a b", View::MAIN, 3).await,
        MetaErrorKind::InvalidInput,
    )?;
    // The same holder writes the same file on two branches at once.
    let dev_w = lease_on(m, dev.id, f.id, "w", 4).await?;
    write(m, &main_w, vec![pw(0, 2)], 4096).await?;
    write(m, &dev_w, vec![pw(0, 3)], 8192).await?;
    let dv = View::Branch(dev.id);
    ensure!(
        page0(m, View::MAIN, f.id).await? == "dirty:2",
        "main sees its write"
    );
    ensure!(page0(m, dv, f.id).await? == "dirty:3", "dev sees its write");
    ensure!(
        page0(m, View::Commit(c1.id), f.id).await? == "dirty:1",
        "the commit is frozen"
    );
    ensure!(
        ok("file", m.file(View::MAIN, "f").await)?.size == 4096
            && ok("file", m.file(dv, "f").await)?.size == 8192,
        "sizes are per branch"
    );
    // Namespace changes stay on their branch.
    ok("create g", m.create_file(dev.id, "g", PS, 5).await)?;
    ok(
        "rename on dev",
        m.rename_file(FileRename::new(dev.id, "f", "f2", "w", 5))
            .await,
    )?;
    let names = |v: Vec<FileMeta>| v.into_iter().map(|f| f.name).collect::<Vec<_>>();
    ensure!(
        names(ok("list", m.list_files(View::MAIN, "").await)?) == ["f"],
        "main's namespace changed"
    );
    ensure!(
        names(ok("list", m.list_files(dv, "").await)?) == ["f2", "g"],
        "dev's namespace"
    );
    err_kind(
        "old name on dev",
        m.file(dv, "f").await,
        MetaErrorKind::NotFound,
    )?;
    ok("delete on dev", m.delete_file(dev.id, "f2", "w", 6).await)?;
    ensure!(
        ok("file", m.file(View::MAIN, "f").await)?.id == f.id,
        "a deletion on dev removed main's file"
    );
    err_kind(
        "deleted on dev",
        m.read_map(dv, f.id, 0, 1, PPE).await,
        MetaErrorKind::NotFound,
    )?;
    // A branch from main's head commits main first, automatically.
    let b2 = ok("branch b2", m.create_branch("b2", View::MAIN, 7).await)?;
    let main = ok("main", m.branch(MAIN_BRANCH_NAME).await)?;
    let point = ok(
        "commit_info",
        m.commit_info(b2.commit.ok_or("no base")?).await,
    )?;
    ensure!(
        point.auto && main.commit == Some(point.id) && point.parent == Some(c1.id),
        "branch point {point:?} main {main:?}"
    );
    ensure!(
        page0(m, View::Branch(b2.id), f.id).await? == "dirty:2",
        "b2 starts from main's head"
    );
    let all: Vec<String> = ok("branches", m.branches().await)?
        .into_iter()
        .map(|b| b.name)
        .collect();
    ensure!(all == ["b2", "dev", "main"], "branches {all:?}");
    Ok(())
}

pub(super) async fn pack_and_truncate(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, main_w) = new_file(m, "f", "w", 1).await?;
    write(
        m,
        &main_w,
        vec![pw(0, 1), pw(1, 1), pw(PPE, 2)],
        (PPE + 1) * 4096,
    )
    .await?;
    pack_one(m, &main_w, 0, Some("extent/a"), 2).await?;
    pack_one(m, &main_w, 1, Some("extent/b"), 2).await?;
    // An unpacked page that dev's truncation must hide.
    write(m, &main_w, vec![pw(2, 7)], (PPE + 1) * 4096).await?;
    let dev = ok("branch", m.create_branch("dev", View::MAIN, 3).await)?;
    let dv = View::Branch(dev.id);
    let dev_w = lease_on(m, dev.id, f.id, "w", 3).await?;
    // Truncate dev to one page: extent 1 goes, page 1 becomes a hole.
    let b = WriteBatch::new(
        dev_w.clone(),
        vec![PageWrite {
            page_no: 1,
            data: None,
        }],
        4096,
    )
    .shrink(1, 1);
    ok("shrink on dev", m.commit_writes(&b).await)?;
    let map = ok("read_map dev", m.read_map(dv, f.id, 0, 2 * PPE, PPE).await)?;
    ensure!(
        map.extents == vec![(0, "extent/a".to_string())]
            && map.dirty
                == vec![PageWrite {
                    page_no: 1,
                    data: None
                }],
        "dev after truncation {}",
        brief(&map)
    );
    // Growing again shows zeros, not what the truncation cut.
    write(m, &dev_w, vec![], 3 * 4096).await?;
    let map = ok("read_map dev", m.read_map(dv, f.id, 0, 3, PPE).await)?;
    ensure!(
        map.size == 3 * 4096 && map.dirty.len() == 1,
        "dev after growing {}",
        brief(&map)
    );
    let map = ok(
        "read_map main",
        m.read_map(View::MAIN, f.id, 0, 2 * PPE, PPE).await,
    )?;
    ensure!(
        map.extents.len() == 2 && map.dirty == vec![pw(2, 7)],
        "main after dev's truncation {}",
        brief(&map)
    );
    // Packing dev's extent 0 folds in the inherited key, on dev only.
    let d = ok("dirty_extent", m.dirty_extent(dv, f.id, 0, PPE).await)?;
    ensure!(
        d.current_key.as_deref() == Some("extent/a")
            && d.pages.len() == 1
            && !d.pages[0].inherited
            && d.layer == dev.head,
        "dirty extent on dev {d:?}"
    );
    let counts = ok(
        "dirty_summary",
        m.dirty_summary(View::MAIN, f.id, PPE).await,
    )?;
    ensure!(
        counts.is_empty(),
        "main has no dirty pages of its own: {counts:?}"
    );
    pack_one(m, &dev_w, 0, Some("extent/a1"), 4).await?;
    ensure!(
        page0(m, dv, f.id).await? == "extent:extent/a1",
        "dev packed"
    );
    ensure!(
        page0(m, View::MAIN, f.id).await? == "extent:extent/a",
        "main kept"
    );
    for (k, n) in [("extent/a", 1), ("extent/a1", 1), ("extent/b", 1)] {
        let r = refcount(m, k).await?.ok_or(format!("no record {k}"))?;
        ensure!(r.refcount == n, "{k}: refcount {} != {n}", r.refcount);
    }
    // A pack on main's head with dev's lease is refused.
    let d = ok(
        "dirty_extent",
        m.dirty_extent(View::MAIN, f.id, 0, PPE).await,
    )?;
    let bad = PackCommit::new(dev_w.clone(), d.layer, 0, d.current_key, None, vec![]);
    err_kind(
        "pack another branch's head",
        m.commit_pack(&bad).await,
        MetaErrorKind::Conflict,
    )?;
    Ok(())
}

pub(super) async fn commits_and_reset(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, w) = new_file(m, "f", "w", 1).await?;
    write(m, &w, vec![pw(0, 1)], 4096).await?;
    let c1 = ok(
        "c1",
        m.commit(CommitRequest::new(MAIN_BRANCH, "one", 2)).await,
    )?
    .ok_or("c1")?;
    write(m, &w, vec![pw(0, 2)], 4096).await?;
    pack_one(m, &w, 0, Some("extent/two"), 3).await?;
    let c2 = ok(
        "c2",
        m.commit(CommitRequest::new(MAIN_BRANCH, "two", 4)).await,
    )?
    .ok_or("c2")?;
    ensure!(c2.parent == Some(c1.id), "parent link {c2:?}");
    // Nothing changed: an automatic commit is skipped, an explicit one made.
    ensure!(
        ok(
            "auto",
            m.commit(CommitRequest::new(MAIN_BRANCH, "auto", 5).automatic())
                .await
        )?
        .is_none(),
        "empty automatic commit"
    );
    let c3 = ok(
        "c3",
        m.commit(CommitRequest::new(MAIN_BRANCH, "same", 5)).await,
    )?
    .ok_or("c3")?;
    ensure!(c3.layer == c2.layer, "an empty commit shows c2's layer");
    ensure!(
        page0(m, View::Commit(c1.id), f.id).await? == "dirty:1",
        "time travel to c1"
    );
    ensure!(
        page0(m, View::Commit(c2.id), f.id).await? == "extent:extent/two",
        "time travel to c2"
    );
    err_kind(
        "reset under a live lease",
        m.reset_branch(MAIN_BRANCH, c1.id, 6).await,
        MetaErrorKind::Busy,
    )?;
    ok("release", m.release_lease(MAIN_BRANCH, f.id, "w").await)?;
    ok("reset", m.reset_branch(MAIN_BRANCH, c1.id, 6).await)?;
    ensure!(
        page0(m, View::MAIN, f.id).await? == "dirty:1",
        "main after reset"
    );
    let main = ok("main", m.branch("main").await)?;
    ensure!(main.commit == Some(c1.id), "main's commit {main:?}");
    for c in [c2.id, c3.id] {
        err_kind(
            "a commit reset away",
            m.commit_info(c).await,
            MetaErrorKind::NotFound,
        )?;
    }
    let r = refcount(m, "extent/two").await?.ok_or("no record")?;
    ensure!(
        r.refcount == 0,
        "an extent only a discarded commit held keeps refcount {}",
        r.refcount
    );
    err_kind(
        "unknown commit",
        m.reset_branch(MAIN_BRANCH, 9999, 7).await,
        MetaErrorKind::NotFound,
    )?;
    Ok(())
}

pub(super) async fn expiry(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, w) = new_file(m, "f", "w", 1).await?;
    let mut keys = Vec::new();
    for i in 0..3u8 {
        write(m, &w, vec![pw(0, i + 1)], 4096).await?;
        let k = format!("extent/v{i}");
        pack_one(m, &w, 0, Some(&k), 10 + i64::from(i)).await?;
        keys.push(k);
        ok(
            "auto commit",
            m.commit(CommitRequest::new(MAIN_BRANCH, "auto", 100 + i64::from(i)).automatic())
                .await,
        )?
        .ok_or("a commit with changes")?;
    }
    let before = ok("graph", m.layer_graph().await)?;
    ensure!(before.commits.len() == 3, "commits {:?}", before.commits);
    // The first two expire; the third is main's latest and stays.
    let n = ok("expire", m.expire_commits(1_000, 1_000).await)?;
    ensure!(n == 2, "expired {n}");
    let after = ok("graph", m.layer_graph().await)?;
    ensure!(
        after.commits.len() == 1 && after.commits[0].parent.is_none(),
        "commits after expiry {:?}",
        after.commits
    );
    ensure!(
        after.layers.len() < before.layers.len(),
        "expired layers were folded: {} -> {}",
        before.layers.len(),
        after.layers.len()
    );
    for (k, n) in [(&keys[0], 0), (&keys[1], 0), (&keys[2], 1)] {
        let r = refcount(m, k).await?.ok_or("no record")?;
        ensure!(r.refcount == n, "{k}: refcount {} != {n}", r.refcount);
    }
    ensure!(
        page0(m, View::MAIN, f.id).await? == "extent:extent/v2",
        "main still reads its data"
    );
    Ok(())
}

pub(super) async fn delete_branch(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, w) = new_file(m, "f", "w", 1).await?;
    write(m, &w, vec![pw(0, 1), pw(PPE, 1)], (PPE + 1) * 4096).await?;
    pack_one(m, &w, 0, Some("extent/shared"), 2).await?;
    pack_one(m, &w, 1, Some("extent/shared1"), 2).await?;
    let dev = ok("branch", m.create_branch("dev", View::MAIN, 3).await)?;
    let dw = lease_on(m, dev.id, f.id, "dw", 3).await?;
    write(m, &dw, vec![pw(0, 9)], (PPE + 1) * 4096).await?;
    pack_one(m, &dw, 0, Some("extent/dev-only"), 4).await?;
    ok(
        "commit on dev",
        m.commit(CommitRequest::new(dev.id, "dev work", 5)).await,
    )?;
    let g = ok("graph", m.layer_graph().await)?;
    let doomed = crate::graph::deleted_with_branch(&g, dev.id);
    let usage = ok("layer_usage", m.layer_usage(&doomed).await)?;
    ensure!(
        usage.extents == 1 && usage.extent_bytes == 100,
        "dev's unique extents {usage:?}"
    );
    err_kind(
        "delete with a live writer",
        m.delete_branch("dev", 6).await,
        MetaErrorKind::Busy,
    )?;
    err_kind(
        "delete main",
        m.delete_branch("main", 6).await,
        MetaErrorKind::InvalidInput,
    )?;
    ok("release", m.release_lease(dev.id, f.id, "dw").await)?;
    ok("delete dev", m.delete_branch("dev", 7).await)?;
    err_kind("dev gone", m.branch("dev").await, MetaErrorKind::NotFound)?;
    for (k, n) in [
        ("extent/dev-only", 0),
        ("extent/shared", 1),
        ("extent/shared1", 1),
    ] {
        let r = refcount(m, k).await?.ok_or("no record")?;
        ensure!(r.refcount == n, "{k}: refcount {} != {n}", r.refcount);
    }
    ensure!(
        page0(m, View::MAIN, f.id).await? == "extent:extent/shared",
        "main unaffected"
    );
    let refs = ok("count_references", m.count_references(None, 100).await)?;
    ensure!(
        refs == vec![
            ("extent/shared".to_string(), 1),
            ("extent/shared1".to_string(), 1)
        ],
        "references {refs:?}"
    );
    Ok(())
}

pub(super) async fn merge(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, w) = new_file(m, "f", "w", 1).await?;
    write(m, &w, vec![pw(0, 1)], 4096).await?;
    let (g, gw) = new_file(m, "g", "w", 1).await?;
    write(m, &gw, vec![pw(0, 2)], 4096).await?;
    ok("release f", m.release_lease(MAIN_BRANCH, f.id, "w").await)?;
    let dev = ok("branch", m.create_branch("dev", View::MAIN, 2).await)?;
    let dw = lease_on(m, dev.id, f.id, "dw", 3).await?;
    write(m, &dw, vec![pw(0, 5), pw(1, 5)], 8192).await?;
    pack_one(m, &dw, 0, Some("extent/f-dev"), 3).await?;
    write(m, &dw, vec![pw(1, 6)], 8192).await?;
    ok("release", m.release_lease(dev.id, f.id, "dw").await)?;
    ok("delete g on dev", m.delete_file(dev.id, "g", "dw", 4).await)?;
    let h = ok("create h", m.create_file(dev.id, "h", PS, 4).await)?;
    let tip = ok(
        "commit dev",
        m.commit(CommitRequest::new(dev.id, "dev", 5)).await,
    )?
    .ok_or("tip")?;
    // g still has a live writer on main: merging it is refused, atomically.
    err_kind(
        "merge over a writer",
        m.merge_files(
            MAIN_BRANCH,
            View::Commit(tip.id),
            &[f.id, g.id, h.id],
            "merge",
            tip.id,
            6,
        )
        .await,
        MetaErrorKind::Busy,
    )?;
    ensure!(
        page0(m, View::MAIN, f.id).await? == "dirty:1",
        "a refused merge changed main"
    );
    ok("release g", m.release_lease(MAIN_BRANCH, g.id, "w").await)?;
    let c = ok(
        "merge",
        m.merge_files(
            MAIN_BRANCH,
            View::Commit(tip.id),
            &[f.id, g.id, h.id],
            "merge",
            tip.id,
            7,
        )
        .await,
    )?;
    ensure!(c.merged == Some(tip.id) && !c.auto, "merge commit {c:?}");
    let names: Vec<String> = ok("list", m.list_files(View::MAIN, "").await)?
        .into_iter()
        .map(|f| f.name)
        .collect();
    ensure!(names == ["f", "h"], "main's files after merge {names:?}");
    let map = ok("read_map", m.read_map(View::MAIN, f.id, 0, 2, PPE).await)?;
    ensure!(
        map.size == 8192
            && map.extents == vec![(0, "extent/f-dev".to_string())]
            && map.dirty == vec![pw(1, 6)],
        "f on main after merge {}",
        brief(&map)
    );
    let r = refcount(m, "extent/f-dev").await?.ok_or("no record")?;
    ensure!(
        r.refcount == 2,
        "both branches reference f's extent: {}",
        r.refcount
    );
    // Main's writer can continue on the merged file.
    let w2 = lease_on(m, MAIN_BRANCH, f.id, "w2", 8).await?;
    write(m, &w2, vec![pw(0, 8)], 8192).await?;
    ensure!(
        page0(m, View::MAIN, f.id).await? == "dirty:8",
        "write after merge"
    );
    ensure!(
        page0(m, View::Branch(dev.id), f.id).await? == "extent:extent/f-dev",
        "dev unaffected by main's write"
    );
    Ok(())
}

pub(super) async fn auto_commit(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (_, w) = new_file(m, "f", "w", 1).await?;
    let batch = |now: i64, b: u8| {
        let mut l = w.clone();
        l.now_ms = now;
        WriteBatch::new(l, vec![pw(0, b)], 4096).auto_commit(Some(1_000))
    };
    ok("first", m.commit_writes(&batch(10, 1)).await)?;
    ok("within the interval", m.commit_writes(&batch(500, 2)).await)?;
    let g = ok("graph", m.layer_graph().await)?;
    ensure!(g.commits.is_empty(), "committed too early: {:?}", g.commits);
    ok(
        "after the interval",
        m.commit_writes(&batch(1_200, 3)).await,
    )?;
    let g = ok("graph", m.layer_graph().await)?;
    ensure!(
        g.commits.len() == 1 && g.commits[0].auto && g.commits[0].created_ms == 1_200,
        "one automatic commit: {:?}",
        g.commits
    );
    let c = g.commits[0].id;
    ensure!(
        page0(m, View::Commit(c), w.file_id).await? == "dirty:2",
        "the automatic commit holds the writes before the interval passed"
    );
    ensure!(
        page0(m, View::MAIN, w.file_id).await? == "dirty:3",
        "the batch lands after it"
    );
    Ok(())
}

/// Commit ids are never handed out twice (schema version 5): not after a
/// reset removed the newest commits, not after a branch deletion removed
/// a branch's commits, not after expiry.
pub(super) async fn commit_ids_never_reused(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, w) = new_file(m, "f", "w", 1).await?;
    write(m, &w, vec![pw(0, 1)], 4096).await?;
    let c1 = ok(
        "c1",
        m.commit(CommitRequest::new(MAIN_BRANCH, "one", 2)).await,
    )?
    .ok_or("c1")?;
    write(m, &w, vec![pw(0, 2)], 4096).await?;
    let c2 = ok(
        "c2",
        m.commit(CommitRequest::new(MAIN_BRANCH, "two", 3)).await,
    )?
    .ok_or("c2")?;
    ok("release", m.release_lease(MAIN_BRANCH, f.id, "w").await)?;
    ok("reset", m.reset_branch(MAIN_BRANCH, c1.id, 4).await)?;
    let w = lease_on(m, MAIN_BRANCH, f.id, "w", 5).await?;
    write(m, &w, vec![pw(0, 3)], 4096).await?;
    let c3 = ok(
        "c3",
        m.commit(CommitRequest::new(MAIN_BRANCH, "three", 6)).await,
    )?
    .ok_or("c3")?;
    ensure!(
        c3.id > c2.id,
        "a commit after a reset got id {} although {} was handed out before",
        c3.id,
        c2.id
    );
    err_kind(
        "the id a reset removed",
        m.commit_info(c2.id).await,
        MetaErrorKind::NotFound,
    )?;
    ensure!(
        page0(m, View::Commit(c3.id), f.id).await? == "dirty:3",
        "the new commit shows its own data"
    );
    // A branch's own commits, then the branch, go away.
    let dev = ok("branch", m.create_branch("dev", View::MAIN, 7).await)?;
    let dw = lease_on(m, dev.id, f.id, "dw", 7).await?;
    write(m, &dw, vec![pw(0, 4)], 4096).await?;
    let d1 = ok("d1", m.commit(CommitRequest::new(dev.id, "dev", 8)).await)?.ok_or("d1")?;
    ok("release dev", m.release_lease(dev.id, f.id, "dw").await)?;
    ok("delete dev", m.delete_branch("dev", 9).await)?;
    write(m, &w, vec![pw(0, 5)], 4096).await?;
    let c4 = ok(
        "c4",
        m.commit(CommitRequest::new(MAIN_BRANCH, "four", 10)).await,
    )?
    .ok_or("c4")?;
    ensure!(
        c4.id > d1.id,
        "a commit after a branch deletion got id {} although {} was handed out before",
        c4.id,
        d1.id
    );
    Ok(())
}

/// A commit folds the journals it is given (`CommitRequest::journals`)
/// into the layer it freezes, over whatever lower layers held; the new
/// head shows a live journal's file empty and a dead one's as folded; the
/// writer's lease is untouched.
pub(super) async fn commits_fold_journals(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, f_w) = new_file(m, "f.db-wal", "w", 1).await?;
    let (g, _) = new_file(m, "g.db-wal", "v", 1).await?;
    // Lower layers hold older content, which the journals replace whole.
    write(m, &f_w, vec![pw(0, 1), pw(1, 1)], 8192).await?;
    ok(
        "commit",
        m.commit(CommitRequest::new(MAIN_BRANCH, "old", 2)).await,
    )?;
    let journals = [
        JournalSnapshot {
            file_id: f.id,
            pages: vec![pw(0, 9)],
            size: 4096,
            live: true,
        },
        JournalSnapshot {
            file_id: g.id,
            pages: vec![pw(0, 5)],
            size: 4096,
            live: false,
        },
    ];
    let c = ok(
        "commit with journals",
        m.commit(CommitRequest::new(MAIN_BRANCH, "with journals", 3).journals(&journals))
            .await,
    )?
    .ok_or("an explicit commit must be made")?;
    let at = View::Commit(c.id);
    let f_at = ok("read_map", m.read_map(at, f.id, 0, 2, PPE).await)?;
    ensure!(
        f_at.size == 4096 && page0(m, at, f.id).await? == "dirty:9",
        "the commit holds f's journal: {}",
        brief(&f_at)
    );
    ensure!(
        page0(m, at, g.id).await? == "dirty:5",
        "the commit holds g's journal"
    );
    let f_head = ok("read_map", m.read_map(View::MAIN, f.id, 0, 2, PPE).await)?;
    ensure!(
        f_head.size == 0
            && f_head.dirty.iter().all(|p| p.data.is_none())
            && f_head.extents.is_empty(),
        "the head shows a live journal's file empty: {}",
        brief(&f_head)
    );
    let g_head = ok("read_map", m.read_map(View::MAIN, g.id, 0, 1, PPE).await)?;
    ensure!(
        g_head.size == 4096 && page0(m, View::MAIN, g.id).await? == "dirty:5",
        "the head keeps a dead journal as folded: {}",
        brief(&g_head)
    );
    // The journal's writer still holds its lease and writes on.
    let later = LeaseRequest::new(f.id, "w", 4, TTL).on_branch(MAIN_BRANCH);
    write(m, &later, vec![pw(0, 3)], 4096).await?;
    ensure!(
        page0(m, View::MAIN, f.id).await? == "dirty:3" && page0(m, at, f.id).await? == "dirty:9",
        "the writer writes on its head, the commit stays"
    );
    Ok(())
}
