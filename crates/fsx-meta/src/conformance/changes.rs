//! Conformance checks of the change feed ([`MetaChanges`]).

use super::*;
use crate::perm::Caller;
use crate::rename::RenameFlags;

const NOW_NS: i64 = 7_000_000_000;
const NOW_MS: i64 = NOW_NS / 1_000_000;

/// What a recorded change says, without its number and time.
type Shape = (
    ChangeKind,
    BranchId,
    Option<Ino>,
    Option<(Ino, Vec<u8>)>,
    Option<(Ino, Vec<u8>)>,
    Option<CommitId>,
);

fn shape(c: &Change) -> Shape {
    let entry = |p: Option<Ino>, n: &Option<Bytes>| p.zip(n.as_ref().map(|n| n.to_vec()));
    (
        c.kind,
        c.branch,
        c.ino,
        entry(c.parent, &c.name),
        entry(c.to_parent, &c.to_name),
        c.commit,
    )
}

/// Every change since `after`, read in pages of `page`.
async fn all_after(m: &dyn MetaEngine, after: u64, page: usize) -> Result<Vec<Change>, String> {
    let mut out: Vec<Change> = Vec::new();
    let mut at = after;
    loop {
        let got = ok("changes", m.changes(at, page).await)?;
        ensure!(got.len() <= page, "changes returned more than its limit");
        let Some(last) = got.last() else {
            return Ok(out);
        };
        at = last.seq;
        out.extend(got);
    }
}

/// Every change of content is recorded, in order, numbered 1, 2, 3 …
/// without gaps, with what it changed; reads, refusals and failed calls
/// record nothing; a read starts after any number and stops at its
/// limit; pruning forgets the oldest and a read from before them is
/// `Gone`; numbers are never given twice.
pub(super) async fn changes_are_recorded_in_order(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    ensure!(
        ok("last_change", m.last_change().await)? == 0,
        "a new volume has changes"
    );
    ensure!(
        ok("changes", m.changes(0, 10).await)?.is_empty(),
        "a new volume lists changes"
    );
    let me = Caller::root();
    let root = ok("root", m.root().await)?;
    let mut want: Vec<Shape> = Vec::new();
    let node = |parent: Ino, name: &'static [u8], kind: NodeKind| MakeNode {
        branch: MAIN_BRANCH,
        parent,
        name,
        kind,
        mode: if kind == NodeKind::Dir { 0o755 } else { 0o644 },
        rdev: 0,
        target: None,
        page_size: PS,
        caller: &me,
        now_ns: NOW_NS,
        lease: None,
    };

    // The tree API.
    let d = ok("mkdir d", m.make(&node(root, b"d", NodeKind::Dir)).await)?;
    want.push((
        ChangeKind::Make,
        MAIN_BRANCH,
        Some(d.ino),
        Some((root, b"d".to_vec())),
        None,
        None,
    ));
    let f = ok(
        "create d/f",
        m.make(&node(d.ino, b"f", NodeKind::File)).await,
    )?;
    want.push((
        ChangeKind::Make,
        MAIN_BRANCH,
        Some(f.ino),
        Some((d.ino, b"f".to_vec())),
        None,
        None,
    ));
    // Refused and read-only calls record nothing.
    ensure!(
        m.make(&node(d.ino, b"f", NodeKind::File)).await.is_err(),
        "a second d/f was made"
    );
    ok("lookup", m.lookup(View::MAIN, d.ino, b"f", &me).await)?;
    ok("readdir", m.readdir(View::MAIN, d.ino, None, 10).await)?;
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    ok(
        "chmod",
        m.setattr(MAIN_BRANCH, f.ino, &chmod, &me, NOW_NS).await,
    )?;
    want.push((ChangeKind::Attr, MAIN_BRANCH, Some(f.ino), None, None, None));
    ok(
        "setxattr",
        m.setxattr(
            MAIN_BRANCH,
            f.ino,
            b"user.a",
            Some(b"1"),
            false,
            false,
            &me,
            NOW_NS,
        )
        .await,
    )?;
    want.push((
        ChangeKind::Xattr,
        MAIN_BRANCH,
        Some(f.ino),
        None,
        None,
        None,
    ));
    ok(
        "link",
        m.link(MAIN_BRANCH, f.ino, root, b"f2", &me, NOW_NS).await,
    )?;
    want.push((
        ChangeKind::Link,
        MAIN_BRANCH,
        Some(f.ino),
        Some((root, b"f2".to_vec())),
        None,
        None,
    ));
    let flags = RenameFlags::default();
    ok(
        "rename d/f g",
        m.rename(
            MAIN_BRANCH,
            d.ino,
            b"f",
            root,
            b"g",
            flags,
            None,
            &me,
            NOW_NS,
        )
        .await,
    )?;
    want.push((
        ChangeKind::Rename,
        MAIN_BRANCH,
        None,
        Some((d.ino, b"f".to_vec())),
        Some((root, b"g".to_vec())),
        None,
    ));
    ensure!(
        m.remove(MAIN_BRANCH, root, b"absent", false, None, &me, NOW_NS)
            .await
            .is_err(),
        "removing a missing name succeeded"
    );
    ok(
        "unlink f2",
        m.remove(MAIN_BRANCH, root, b"f2", false, None, &me, NOW_NS)
            .await,
    )?;
    want.push((
        ChangeKind::Remove,
        MAIN_BRANCH,
        Some(f.ino),
        Some((root, b"f2".to_vec())),
        None,
        None,
    ));

    // The flat API names its entries by the directory the tree holds.
    let x = ok(
        "create_file x/y",
        m.create_file(MAIN_BRANCH, "x/y", PS, NOW_MS).await,
    )?;
    // `x` was made by the create; the change names the file's entry.
    let x_dir = ok("lookup x", m.lookup(View::MAIN, root, b"x", &me).await)?.ino;
    want.push((
        ChangeKind::Make,
        MAIN_BRANCH,
        Some(x.id),
        Some((x_dir, b"y".to_vec())),
        None,
        None,
    ));
    let lease = LeaseRequest::new(x.id, "w", NOW_MS, TTL);
    ok("acquire_lease", m.acquire_lease(&lease).await)?;
    ok(
        "commit_writes",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(0, 1)], 4096))
            .await,
    )?;
    want.push((ChangeKind::Data, MAIN_BRANCH, Some(x.id), None, None, None));
    ok(
        "release_lease",
        m.release_lease(MAIN_BRANCH, x.id, "w").await,
    )?;
    ok(
        "rename_file",
        m.rename_file(FileRename::new(MAIN_BRANCH, "x/y", "z", "w", NOW_MS))
            .await,
    )?;
    want.push((
        ChangeKind::Rename,
        MAIN_BRANCH,
        Some(x.id),
        Some((x_dir, b"y".to_vec())),
        Some((root, b"z".to_vec())),
        None,
    ));
    let missing = m.delete_file(MAIN_BRANCH, "x/y", "w", NOW_MS).await;
    err_kind(
        "delete_file of a moved name",
        missing,
        MetaErrorKind::NotFound,
    )?;

    // Paths, read back while the names exist.
    let deep = ok(
        "mkdir x/deep",
        m.make(&node(x_dir, b"deep", NodeKind::Dir)).await,
    )?;
    want.push((
        ChangeKind::Make,
        MAIN_BRANCH,
        Some(deep.ino),
        Some((x_dir, b"deep".to_vec())),
        None,
        None,
    ));
    let asked = [f.ino, root, d.ino, deep.ino, x_dir, 999_999];
    let paths = ok("paths_of", m.paths_of(View::MAIN, &asked).await)?;
    let expect: [Option<&[u8]>; 6] = [
        Some(b"/g"),
        Some(b"/"),
        Some(b"/d"),
        Some(b"/x/deep"),
        Some(b"/x"),
        None,
    ];
    ensure!(
        paths.iter().map(|p| p.as_deref()).eq(expect),
        "paths are {paths:?}"
    );
    ok(
        "delete_file z",
        m.delete_file(MAIN_BRANCH, "z", "w", NOW_MS).await,
    )?;
    want.push((
        ChangeKind::Remove,
        MAIN_BRANCH,
        Some(x.id),
        Some((root, b"z".to_vec())),
        None,
        None,
    ));
    let path = ok(
        "paths_of a deleted file",
        m.paths_of(View::MAIN, &[x.id]).await,
    )?;
    ensure!(path == [None], "a deleted file has path {path:?}");

    // Branches and commits.
    let c1 = ok(
        "commit",
        m.commit(CommitRequest::new(MAIN_BRANCH, "one", NOW_MS))
            .await,
    )?
    .ok_or("an explicit commit made nothing")?;
    want.push((
        ChangeKind::Commit,
        MAIN_BRANCH,
        None,
        None,
        None,
        Some(c1.id),
    ));
    let dev = ok(
        "create_branch dev",
        m.create_branch("dev", View::Commit(c1.id), NOW_MS).await,
    )?;
    want.push((
        ChangeKind::BranchCreate,
        dev.id,
        None,
        None,
        None,
        Some(c1.id),
    ));
    err_kind(
        "create_branch dev again",
        m.create_branch("dev", View::MAIN, NOW_MS).await,
        MetaErrorKind::AlreadyExists,
    )?;
    ok(
        "reset main",
        m.reset_branch(MAIN_BRANCH, c1.id, NOW_MS).await,
    )?;
    want.push((
        ChangeKind::Reset,
        MAIN_BRANCH,
        None,
        None,
        None,
        Some(c1.id),
    ));
    ok("delete_branch dev", m.delete_branch("dev", NOW_MS).await)?;
    want.push((ChangeKind::BranchDelete, dev.id, None, None, None, None));

    // Read back: in order, numbered 1…n, each as made.
    let got = all_after(m, 0, 3).await?;
    let seqs: Vec<u64> = got.iter().map(|c| c.seq).collect();
    let expect: Vec<u64> = (1..=crate::num::count(want.len())).collect();
    ensure!(
        seqs == expect,
        "change numbers are {seqs:?}, not {expect:?}"
    );
    for (i, (c, w)) in got.iter().zip(&want).enumerate() {
        ensure!(shape(c) == *w, "change {} is {c:?}, not {w:?}", i + 1);
        ensure!(c.at_ms == NOW_MS, "change {} is timed {}", i + 1, c.at_ms);
        ensure!(
            c.origin == Some(m.origin()),
            "change {} has origin {:?}, not this instance's {}",
            i + 1,
            c.origin,
            m.origin()
        );
    }
    ensure!(m.origin() > 0, "an origin is positive, not {}", m.origin());
    ensure!(
        got[0].branch_name.as_deref() == Some(MAIN_BRANCH_NAME),
        "a change of main names branch {:?}",
        got[0].branch_name
    );
    let last = ok("last_change", m.last_change().await)?;
    ensure!(
        last == crate::num::count(want.len()),
        "last_change is {last}"
    );
    let tail = ok("changes after 5", m.changes(5, 2).await)?;
    ensure!(
        tail.iter().map(|c| c.seq).collect::<Vec<_>>() == [6, 7],
        "changes(5, 2) are {tail:?}"
    );
    ensure!(
        ok("changes after the last", m.changes(last, 10).await)?.is_empty(),
        "changes after the newest"
    );
    err_kind(
        "a read of 0 changes",
        m.changes(0, 0).await,
        MetaErrorKind::InvalidInput,
    )?;

    // Pruning keeps the newest; a read from before them is Gone.
    err_kind(
        "prune to nothing",
        m.prune_changes(0).await,
        MetaErrorKind::InvalidInput,
    )?;
    let forgot = ok("prune_changes", m.prune_changes(3).await)?;
    ensure!(
        forgot == last - 3,
        "pruning forgot {forgot} of {last}, keeping 3"
    );
    err_kind(
        "a read from before the kept",
        m.changes(0, 10).await,
        MetaErrorKind::Gone,
    )?;
    err_kind(
        "a read from just before the kept",
        m.changes(last - 4, 10).await,
        MetaErrorKind::Gone,
    )?;
    let kept = all_after(m, last - 3, 10).await?;
    ensure!(kept.len() == 3, "{} changes kept of 3", kept.len());
    ensure!(
        ok("prune again", m.prune_changes(3).await)? == 0,
        "pruning twice forgot more"
    );
    // Down to one, then the next change takes the next number.
    ok("prune to one", m.prune_changes(1).await)?;
    ok("mkdir e", m.make(&node(root, b"e", NodeKind::Dir)).await)?;
    let next = all_after(m, last, 10).await?;
    ensure!(
        next.len() == 1 && next[0].seq == last + 1 && next[0].kind == ChangeKind::Make,
        "the change after pruning is {next:?}"
    );
    Ok(())
}
