//! Conformance checks of the files family: volumes, files, leases,
//! writes, read maps and packing.

use super::*;

pub(super) async fn volume_init_and_open(m: &dyn MetaEngine) -> CheckResult {
    err_kind(
        "open before init",
        m.open_volume().await,
        MetaErrorKind::NotFound,
    )?;
    err_kind(
        "init with a 3 MiB extent size",
        m.init_volume(&VolumeConfig::new("v", 3 << 20, "memory://", 1))
            .await,
        MetaErrorKind::InvalidInput,
    )?;
    let cfg = VolumeConfig::new("vol-1", 1 << 20, "file:///data", 42);
    ok("init_volume", m.init_volume(&cfg).await)?;
    let got = ok("open_volume", m.open_volume().await)?;
    ensure!(got == cfg, "open_volume returned {got:?}, expected {cfg:?}");
    err_kind(
        "second init",
        m.init_volume(&cfg).await,
        MetaErrorKind::AlreadyExists,
    )?;
    Ok(())
}

pub(super) async fn files(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let a = ok(
        "create a",
        m.create_file(MAIN_BRANCH, "db/a%_1", PS, 10).await,
    )?;
    ensure!(
        a.size == 0 && a.page_size == PS && a.name == "db/a%_1",
        "new file is {a:?}"
    );
    err_kind(
        "duplicate create",
        m.create_file(MAIN_BRANCH, "db/a%_1", PS, 11).await,
        MetaErrorKind::AlreadyExists,
    )?;
    ok(
        "create b",
        m.create_file(MAIN_BRANCH, "db/ab", 8192, 12).await,
    )?;
    ok(
        "create c",
        m.create_file(MAIN_BRANCH, "other", PS, 13).await,
    )?;
    let names = |v: Vec<FileMeta>| v.into_iter().map(|f| f.name).collect::<Vec<_>>();
    let listed = names(ok("list", m.list_files(View::MAIN, "db/a%").await)?);
    ensure!(
        listed == ["db/a%_1"],
        "prefix with % must be literal, got {listed:?}"
    );
    let listed = names(ok("list", m.list_files(View::MAIN, "").await)?);
    ensure!(
        listed == ["db/a%_1", "db/ab", "other"],
        "list all gave {listed:?}"
    );

    err_kind(
        "rename onto existing",
        m.rename_file(FileRename::new(MAIN_BRANCH, "db/ab", "other", "h", 20))
            .await,
        MetaErrorKind::AlreadyExists,
    )?;
    ok(
        "rename replace",
        m.rename_file(FileRename::new(MAIN_BRANCH, "db/ab", "other", "h", 21).replace(true))
            .await,
    )?;
    let other = ok("file other", m.file(View::MAIN, "other").await)?;
    ensure!(
        other.page_size == 8192,
        "rename must keep the file's identity, got {other:?}"
    );
    err_kind(
        "old name",
        m.file(View::MAIN, "db/ab").await,
        MetaErrorKind::NotFound,
    )?;
    err_kind(
        "rename missing",
        m.rename_file(FileRename::new(MAIN_BRANCH, "nope", "x", "h", 22))
            .await,
        MetaErrorKind::NotFound,
    )?;

    // A live lease of another writer blocks delete and rename.
    ok(
        "lease",
        m.acquire_lease(&LeaseRequest::new(a.id, "w1", 30, TTL))
            .await,
    )?;
    err_kind(
        "delete under lease",
        m.delete_file(MAIN_BRANCH, "db/a%_1", "w2", 31).await,
        MetaErrorKind::Busy,
    )?;
    err_kind(
        "rename under lease",
        m.rename_file(FileRename::new(MAIN_BRANCH, "db/a%_1", "z", "w2", 31))
            .await,
        MetaErrorKind::Busy,
    )?;
    ok(
        "delete by holder",
        m.delete_file(MAIN_BRANCH, "db/a%_1", "w1", 32).await,
    )?;
    err_kind(
        "deleted",
        m.file(View::MAIN, "db/a%_1").await,
        MetaErrorKind::NotFound,
    )?;
    err_kind(
        "delete again",
        m.delete_file(MAIN_BRANCH, "db/a%_1", "w1", 33).await,
        MetaErrorKind::NotFound,
    )?;
    Ok(())
}

pub(super) async fn leases(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let f = ok("create", m.create_file(MAIN_BRANCH, "f", PS, 0).await)?;
    let l1 = LeaseRequest::new(f.id, "w1", 1000, TTL);
    let l2 = LeaseRequest::new(f.id, "w2", 1000, TTL);
    err_kind(
        "write without lease",
        m.commit_writes(&WriteBatch::new(l1.clone(), vec![pw(0, 1)], 4096))
            .await,
        MetaErrorKind::Busy,
    )?;
    ok("w1 acquires", m.acquire_lease(&l1).await)?;
    ok("w1 renews", m.acquire_lease(&l1).await)?;
    err_kind(
        "w2 while held",
        m.acquire_lease(&l2).await,
        MetaErrorKind::Busy,
    )?;
    err_kind(
        "w2 writes",
        m.commit_writes(&WriteBatch::new(l2.clone(), vec![pw(0, 2)], 4096))
            .await,
        MetaErrorKind::Busy,
    )?;
    ok(
        "w1 writes",
        m.commit_writes(&WriteBatch::new(l1.clone(), vec![pw(0, 1)], 4096))
            .await,
    )?;
    let info = ok("lease", m.lease(MAIN_BRANCH, f.id).await)?.ok_or("no lease recorded")?;
    ensure!(
        info.holder == "w1" && info.expires_ms == 1000 + TTL,
        "lease is {info:?}"
    );
    // Breaking a proven-dead holder.
    ok(
        "w2 breaks w1",
        m.acquire_lease(&l2.clone().break_holder(Some("w1".into())))
            .await,
    )?;
    err_kind(
        "w1 lost it",
        m.commit_writes(&WriteBatch::new(l1.clone(), vec![pw(0, 3)], 4096))
            .await,
        MetaErrorKind::Busy,
    )?;
    // Expiry.
    let later = LeaseRequest::new(f.id, "w3", 1000 + TTL + 1, TTL);
    ok("w3 after expiry", m.acquire_lease(&later).await)?;
    ok(
        "w2 releases (not holder: no-op)",
        m.release_lease(MAIN_BRANCH, f.id, "w2").await,
    )?;
    err_kind(
        "w1 again",
        m.acquire_lease(&LeaseRequest::new(f.id, "w1", 1000 + TTL + 2, TTL))
            .await,
        MetaErrorKind::Busy,
    )?;
    ok(
        "w3 releases",
        m.release_lease(MAIN_BRANCH, f.id, "w3").await,
    )?;
    ok(
        "w1 after release",
        m.acquire_lease(&LeaseRequest::new(f.id, "w1", 1000 + TTL + 3, TTL))
            .await,
    )?;
    // The failed writes changed nothing.
    let map = ok("read_map", m.read_map(View::MAIN, f.id, 0, 1, PPE).await)?;
    ensure!(
        map.dirty == vec![pw(0, 1)],
        "only w1's write may be visible, got {:?}",
        map.dirty.len()
    );
    Ok(())
}

/// A writer that commits never runs out of lease: after a commit at `now`,
/// the lease lasts until `now + TTL / 2` at least, wherever in its life the
/// lease was.
pub(super) async fn lease_stays_ahead(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let f = ok("create", m.create_file(MAIN_BRANCH, "f", PS, 0).await)?;
    ok(
        "acquire",
        m.acquire_lease(&LeaseRequest::new(f.id, "w", 1000, TTL))
            .await,
    )?;
    // Commits at a tenth, at just over half and past the whole of the TTL
    // (expired, and nobody took it).
    for (page, now) in [
        (0, 1000 + TTL / 10),
        (1, 1000 + TTL / 2 + 1),
        (2, 1000 + TTL / 2 + 1 + TTL),
    ] {
        let l = LeaseRequest::new(f.id, "w", now, TTL);
        ok(
            "commit",
            m.commit_writes(&WriteBatch::new(l, vec![pw(page, 1)], 3 * 4096))
                .await,
        )?;
        let info = ok("lease", m.lease(MAIN_BRANCH, f.id).await)?.ok_or("no lease")?;
        ensure!(
            info.holder == "w" && info.expires_ms >= now + TTL / 2,
            "after a commit at {now} the lease is {info:?}: less than half a TTL ahead"
        );
    }
    Ok(())
}

pub(super) async fn writes(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, lease) = new_file(m, "f", "w", 5).await?;
    let batch = WriteBatch::new(
        lease.clone(),
        vec![
            pw(0, 1),
            pw(2, 2),
            PageWrite {
                page_no: 600,
                data: None,
            },
        ],
        601 * 4096,
    );
    ok("commit", m.commit_writes(&batch).await)?;
    err_kind(
        "short page",
        m.commit_writes(&WriteBatch::new(
            lease.clone(),
            vec![PageWrite {
                page_no: 1,
                data: Some(Bytes::from_static(b"x")),
            }],
            1,
        ))
        .await,
        MetaErrorKind::InvalidInput,
    )?;
    let map = ok("read_map", m.read_map(View::MAIN, f.id, 0, 3, PPE).await)?;
    ensure!(map.size == 601 * 4096, "size {}", map.size);
    ensure!(
        map.dirty == vec![pw(0, 1), pw(2, 2)],
        "dirty in [0,3) wrong"
    );
    let map = ok("read_map", m.read_map(View::MAIN, f.id, 599, 10, PPE).await)?;
    ensure!(
        map.dirty
            == vec![PageWrite {
                page_no: 600,
                data: None
            }],
        "hole must read back as a hole"
    );
    let meta = ok("file", m.file(View::MAIN, "f").await)?;
    ensure!(meta.size == 601 * 4096, "file size {}", meta.size);

    let before = ok(
        "dirty_extent",
        m.dirty_extent(View::MAIN, f.id, 0, PPE).await,
    )?;
    ok(
        "overwrite",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(2, 9)], 601 * 4096))
            .await,
    )?;
    let after = ok(
        "dirty_extent",
        m.dirty_extent(View::MAIN, f.id, 0, PPE).await,
    )?;
    let seq = |d: &DirtyExtent, p: u64| d.pages.iter().find(|x| x.page_no == p).map(|x| x.seq);
    ensure!(
        seq(&after, 2) > seq(&before, 2),
        "a rewrite must get a larger sequence"
    );
    ensure!(
        seq(&after, 0) == seq(&before, 0),
        "untouched pages keep their sequence"
    );
    let summary = ok(
        "dirty_summary",
        m.dirty_summary(View::MAIN, f.id, PPE).await,
    )?;
    ensure!(
        summary
            == vec![
                DirtySummary {
                    extent_idx: 0,
                    pages: 2
                },
                DirtySummary {
                    extent_idx: 1,
                    pages: 1
                }
            ],
        "summary {summary:?}"
    );
    let counts = ok(
        "dirty_counts",
        m.dirty_counts(View::MAIN, f.id, PPE, &[1, 0, 1, 7]).await,
    )?;
    ensure!(
        counts
            == vec![
                DirtySummary {
                    extent_idx: 0,
                    pages: 2
                },
                DirtySummary {
                    extent_idx: 1,
                    pages: 1
                }
            ],
        "dirty_counts {counts:?}"
    );
    let none = ok(
        "dirty_counts",
        m.dirty_counts(View::MAIN, f.id, PPE, &[5]).await,
    )?;
    ensure!(none.is_empty(), "dirty_counts of a clean extent: {none:?}");
    Ok(())
}

pub(super) async fn pack(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, lease) = new_file(m, "f", "w", 5).await?;
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(
            lease.clone(),
            vec![pw(0, 1), pw(1, 1)],
            8192,
        ))
        .await,
    )?;
    let d = ok(
        "dirty_extent",
        m.dirty_extent(View::MAIN, f.id, 0, PPE).await,
    )?;
    ensure!(
        d.current_key.is_none() && d.pages.len() == 2,
        "dirty extent {d:?}"
    );
    // Page 1 is rewritten after the packer read it.
    ok(
        "rewrite",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(1, 7)], 8192))
            .await,
    )?;
    ok("pin", m.pin_extent("extent/ext-a", 100, 6).await)?;
    let consumed = d.pages.iter().map(|p| (p.page_no, p.seq)).collect();
    ok(
        "commit_pack",
        m.commit_pack(&PackCommit::new(
            lease.clone(),
            d.layer,
            0,
            None,
            Some("extent/ext-a".into()),
            consumed,
        ))
        .await,
    )?;
    let map = ok("read_map", m.read_map(View::MAIN, f.id, 0, 2, PPE).await)?;
    ensure!(
        map.extents == vec![(0, "extent/ext-a".to_string())],
        "extents {:?}",
        map.extents
    );
    ensure!(
        map.dirty == vec![pw(1, 7)],
        "the rewritten page must stay dirty, got {} dirty",
        map.dirty.len()
    );
    let rec = refcount(m, "extent/ext-a").await?.ok_or("no record")?;
    ensure!(
        rec.refcount == 1 && rec.state == ExtentState::Live,
        "record {rec:?}"
    );
    // Packing again with the same content changes no references.
    pack_one(m, &lease, 0, Some("extent/ext-a"), 7).await?;
    let rec = refcount(m, "extent/ext-a").await?.ok_or("no record")?;
    ensure!(
        rec.refcount == 1,
        "repacking the same key must keep refcount 1, got {}",
        rec.refcount
    );
    ensure!(
        ok("read_map", m.read_map(View::MAIN, f.id, 0, 2, PPE).await)?
            .dirty
            .is_empty(),
        "all consumed"
    );
    Ok(())
}

pub(super) async fn pack_conflicts(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, lease) = new_file(m, "f", "w", 5).await?;
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(0, 1)], 4096))
            .await,
    )?;
    pack_one(m, &lease, 0, Some("extent/ext-a"), 6).await?;
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(0, 2)], 4096))
            .await,
    )?;
    let d = ok(
        "dirty_extent",
        m.dirty_extent(View::MAIN, f.id, 0, PPE).await,
    )?;
    let consumed: Vec<(u64, i64)> = d.pages.iter().map(|p| (p.page_no, p.seq)).collect();
    ok("pin b", m.pin_extent("extent/ext-b", 1, 7).await)?;
    // Wrong expectation.
    let bad = PackCommit::new(
        lease.clone(),
        d.layer,
        0,
        None,
        Some("extent/ext-b".into()),
        consumed.clone(),
    );
    err_kind(
        "stale expected key",
        m.commit_pack(&bad).await,
        MetaErrorKind::Conflict,
    )?;
    // Unpinned new key.
    let bad = PackCommit::new(
        lease.clone(),
        d.layer,
        0,
        Some("extent/ext-a".into()),
        Some("extent/ext-zz".into()),
        consumed.clone(),
    );
    err_kind(
        "unpinned key",
        m.commit_pack(&bad).await,
        MetaErrorKind::Conflict,
    )?;
    // Another writer.
    let other = LeaseRequest::new(f.id, "intruder", 8, TTL);
    let bad = PackCommit::new(
        other,
        d.layer,
        0,
        Some("extent/ext-a".into()),
        Some("extent/ext-b".into()),
        consumed,
    );
    err_kind(
        "without the lease",
        m.commit_pack(&bad).await,
        MetaErrorKind::Busy,
    )?;
    // Nothing changed.
    let map = ok("read_map", m.read_map(View::MAIN, f.id, 0, 1, PPE).await)?;
    ensure!(
        map.extents == vec![(0, "extent/ext-a".to_string())] && map.dirty == vec![pw(0, 2)],
        "state changed"
    );
    let a = refcount(m, "extent/ext-a").await?.ok_or("no a")?;
    let b = refcount(m, "extent/ext-b").await?.ok_or("no b")?;
    ensure!(
        a.refcount == 1 && b.refcount == 0,
        "refcounts a={} b={}",
        a.refcount,
        b.refcount
    );
    Ok(())
}

/// A batch can install whole extents a writer stored itself
/// (`WriteBatch::extents`): the map entry points at the key, the head's
/// dirty pages of that extent are gone (pages of other extents stay), a
/// lower layer's rows are hidden, and references move from the old key to
/// the new one.
pub(super) async fn batches_install_whole_extents(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, lease) = new_file(m, "f", "w", 5).await?;
    // A lower layer holds a dirty page of extent 0.
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(3, 1)], PPE * 4096))
            .await,
    )?;
    ok(
        "freeze",
        m.commit(CommitRequest::new(MAIN_BRANCH, "lower", 6)).await,
    )?;
    // The head has its own dirty pages in extents 0 and 1, and an extent.
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(
            lease.clone(),
            vec![pw(0, 2), pw(PPE, 2)],
            2 * PPE * 4096,
        ))
        .await,
    )?;
    ok("pin old", m.pin_extent("extent/ext-old", 100, 7).await)?;
    let written = |key: &str, at: i64| {
        let mut l = lease.clone();
        l.now_ms = at;
        WriteBatch::new(l, vec![pw(PPE + 1, 4)], 2 * PPE * 4096).with_extents(vec![ExtentWrite {
            extent_idx: 0,
            key: key.into(),
            pages: 0..PPE,
        }])
    };
    ok(
        "install old",
        m.commit_writes(&written("extent/ext-old", 8)).await,
    )?;
    ok("pin new", m.pin_extent("extent/ext-new", 100, 9).await)?;
    ok(
        "install new",
        m.commit_writes(&written("extent/ext-new", 10)).await,
    )?;
    let map = ok(
        "read_map",
        m.read_map(View::MAIN, f.id, 0, 2 * PPE, PPE).await,
    )?;
    ensure!(
        map.extents == vec![(0, "extent/ext-new".to_string())],
        "extents {:?}",
        map.extents
    );
    ensure!(
        map.dirty == vec![pw(PPE, 2), pw(PPE + 1, 4)],
        "only extent 1's pages stay dirty: {}",
        brief_dirty(&map)
    );
    let records = ok("list_extents", m.list_extents(None, 100).await)?;
    let refs = |k: &str| records.iter().find(|r| r.key == k).map(|r| r.refcount);
    ensure!(
        refs("extent/ext-old") == Some(0) && refs("extent/ext-new") == Some(1),
        "references moved to the new key: {records:?}"
    );
    Ok(())
}

fn brief_dirty(m: &ReadMap) -> String {
    format!(
        "{:?}",
        m.dirty.iter().map(|p| p.page_no).collect::<Vec<_>>()
    )
}
