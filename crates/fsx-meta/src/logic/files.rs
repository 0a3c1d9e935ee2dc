//! Files and pages: files, writer leases, durable writes, read maps, the
//! dirty-page buffer and packing, written once for every engine
//! ([`crate::contract::MetaFiles`]).
//!
//! A file on a branch is changed only by the holder of its lease, and
//! every change of a file's head rows (its lease, write sequence, dirty
//! pages, map entries) happens under [`Lock::Files`] of that file on that
//! branch, so a lease check and the write it guards cannot interleave
//! with another writer's.

use std::collections::BTreeMap;

use super::layers::{self, CommitKind};
use super::{Column, Lock, Tx, args, changes, extents, tree};
use crate::contract::{
    BranchId, BranchInfo, ChangeKind, DirtyExtent, DirtyPageCheck, DirtyPageCursor, DirtySummary,
    ExtentWrite, FileId, FileMeta, FileRename, LayerId, LeaseInfo, LeaseRequest, NewChange,
    PackCommit, PageWrite, ReadMap, View, WriteBatch,
};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::num;

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `→ id`: takes the next file id (never handed out twice).
    NextFileId,
    /// `(layer, id, name, page_size, created_ms)`: a new, empty file.
    CreateFile,
    /// `(branch, id) → holder, expires_ms`.
    Lease,
    /// `(branch, id, holder, expires_ms)`: takes or renews a lease.
    SetLease,
    /// `(branch, id, expires_ms)`: renews the lease.
    RenewLease,
    /// `(branch, id, holder)`: releases a lease if `holder` has it.
    ReleaseLease,
    /// `(layer, id, from)`: drops the layer's dirty pages from `from` on.
    DropPagesFrom,
    /// `(layer, id, first, end)`: deletes a layer's dirty pages in
    /// `[first, end)`.
    DropPagesBetween,
    /// `(layer, id, cut)`: lowers the row's page cut to `cut`.
    CutPages,
    /// `(layer, id, cut)`: lowers the row's extent cut to `cut`.
    CutExtents,
    /// `(layer, id, size, modified_ms) → write_seq`: the next write
    /// sequence, with the new size.
    NextWrite,
    /// `(layer, id, seq)` then `(page_no, data, crc)` per row: writes
    /// dirty pages, replacing the layer's versions.
    UpsertPages,
    /// `(branch or NULL, commit or NULL, id, ppe, extent indexes) → idx,
    /// count`: the dirty pages of each extent in the view's top layer.
    DirtyCounts,
    /// `(layer, id, ppe) → idx, count`.
    DirtySummary,
    /// `(layer, file, page, limit) → layer, file_id, page_no, data, crc`:
    /// dirty pages after a cursor, in key order.
    DirtyAfter,
    /// `(layer, id, idx) → key`: the layer's own entry, if any.
    OwnExtent,
    /// `(layer, id, idx, key or NULL)`: sets the layer's entry.
    SetExtent,
    /// `(layer, id, idx)`: deletes the layer's entry.
    DeleteExtent,
    /// `(layer, id)` then `(page_no, seq)` per row: deletes dirty pages a
    /// pack consumed, if not rewritten since.
    DeleteConsumed,
}

/// The lease of file `file_id` on `branch`, if any.
pub(crate) async fn lease_of(
    tx: &impl Tx,
    branch: BranchId,
    file_id: FileId,
) -> Result<Option<LeaseInfo>> {
    match tx
        .query_opt(Q::Lease.into(), args![branch, file_id])
        .await?
    {
        Some(r) => Ok(Some(LeaseInfo {
            holder: r.text(0, "lease holder")?,
            expires_ms: r.i64(1, "lease expiry")?,
        })),
        None => Ok(None),
    }
}

fn busy(file_id: FileId, lease: &LeaseInfo, now_ms: i64) -> MetaError {
    MetaError::new(
        MetaErrorKind::Busy,
        format!(
            "file #{file_id} is open for writing by {} (lease expires in {} ms); only one writer per file at a time",
            lease.holder,
            lease.expires_ms.saturating_sub(now_ms).max(0)
        ),
    )
}

/// Requires `req.holder` to hold the lease, and renews it once less than
/// half its time is left: a writer that commits keeps at least half a TTL
/// ahead of it, and a commit does not rewrite the lease row (a page of the
/// metadata database) every time. The caller holds the file's lock on the
/// lease's branch.
async fn check_lease(tx: &impl Tx, req: &LeaseRequest) -> Result<()> {
    match lease_of(tx, req.branch, req.file_id).await? {
        Some(l) if l.holder == req.holder => {
            if l.expires_ms.saturating_sub(req.now_ms) >= req.ttl_ms.saturating_add(1) / 2 {
                return Ok(());
            }
            tx.exec(
                Q::RenewLease.into(),
                args![
                    req.branch,
                    req.file_id,
                    req.now_ms.saturating_add(req.ttl_ms)
                ],
            )
            .await?;
            Ok(())
        }
        Some(l) => Err(busy(req.file_id, &l, req.now_ms)),
        None => Err(MetaError::new(
            MetaErrorKind::Busy,
            format!(
                "{} does not hold the write lease of file #{} (it was released or taken)",
                req.holder, req.file_id
            ),
        )),
    }
}

/// `Busy` if someone other than `holder` holds a live lease. The caller
/// holds the file's lock on `branch`.
async fn check_no_other_writer(
    tx: &impl Tx,
    branch: BranchId,
    file_id: FileId,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    match lease_of(tx, branch, file_id).await? {
        Some(l) if l.holder != holder && l.expires_ms > now_ms => Err(busy(file_id, &l, now_ms)),
        _ => Ok(()),
    }
}

pub(crate) async fn create_file(
    tx: &impl Tx,
    branch: BranchId,
    name: &str,
    page_size: u32,
    now_ms: i64,
) -> Result<FileMeta> {
    tx.lock(Lock::Graph { exclusive: false }).await?;
    tx.lock(Lock::Names(branch)).await?;
    let chain = layers::head_chain(tx, branch).await?;
    let id = tree::create_file_at(tx, &chain, name, page_size, now_ms).await?;
    changes::record_path(tx, &chain, ChangeKind::Make, branch, id, name, None, now_ms).await?;
    tree::file_meta(tx, &chain, id, name).await
}

pub(crate) async fn file(tx: &impl Tx, view: View, name: &str) -> Result<FileMeta> {
    let chain = layers::view_chain(tx, view).await?;
    match tree::file_at(tx, &chain, name).await? {
        Some(id) => tree::file_meta(tx, &chain, id, name).await,
        None => Err(MetaError::not_found(format!("no file {name:?}"))),
    }
}

pub(crate) async fn file_by_id(tx: &impl Tx, view: View, id: FileId) -> Result<FileMeta> {
    let chain = layers::view_chain(tx, view).await?;
    Ok(layers::visible(tx, &chain, id).await?.meta())
}

pub(crate) async fn list_files(tx: &impl Tx, view: View, prefix: &str) -> Result<Vec<FileMeta>> {
    let chain = layers::view_chain(tx, view).await?;
    let paths = tree::list_paths(tx, &chain, prefix).await?;
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let rows = layers::chain_rows(tx, &chain).await?;
    let files = crate::resolve::visible_files(&chain, rows);
    Ok(paths
        .into_iter()
        .filter_map(|(path, id)| {
            files.get(&id).map(|r| {
                let mut m = r.meta();
                m.name = path;
                m
            })
        })
        .collect())
}

pub(crate) async fn rename_file(tx: &impl Tx, rename: &FileRename<'_>) -> Result<()> {
    let FileRename {
        branch,
        from,
        to,
        replace,
        holder,
        now_ms,
    } = *rename;
    tx.lock(Lock::Graph { exclusive: false }).await?;
    tx.lock(Lock::Names(branch)).await?;
    let chain = layers::head_chain(tx, branch).await?;
    // Names cannot change under the names lock.
    let src = tree::file_at(tx, &chain, from)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no file {from:?}")))?;
    let same = tree::components(from)? == tree::components(to)?;
    let dst = if same {
        None
    } else {
        tree::file_at(tx, &chain, to).await?
    };
    let ids: Vec<FileId> = std::iter::once(src).chain(dst).collect();
    tx.lock(Lock::Files(branch, &ids)).await?;
    check_no_other_writer(tx, branch, src, holder, now_ms).await?;
    if same || dst == Some(src) {
        return Ok(());
    }
    if let Some(dst) = dst {
        if !replace {
            return Err(MetaError::new(
                MetaErrorKind::AlreadyExists,
                format!("file {to:?} already exists"),
            ));
        }
        check_no_other_writer(tx, branch, dst, holder, now_ms).await?;
        tree::unlink_file(tx, branch, &chain, to, dst, now_ms).await?;
    }
    tree::move_file(tx, &chain, from, to, src, now_ms).await?;
    changes::record_path(
        tx,
        &chain,
        ChangeKind::Rename,
        branch,
        src,
        from,
        Some(to),
        now_ms,
    )
    .await
}

pub(crate) async fn delete_file(
    tx: &impl Tx,
    branch: BranchId,
    name: &str,
    holder: &str,
    now_ms: i64,
) -> Result<()> {
    tx.lock(Lock::Graph { exclusive: false }).await?;
    tx.lock(Lock::Names(branch)).await?;
    let chain = layers::head_chain(tx, branch).await?;
    let id = tree::file_at(tx, &chain, name)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no file {name:?}")))?;
    tx.lock(Lock::Files(branch, &[id])).await?;
    check_no_other_writer(tx, branch, id, holder, now_ms).await?;
    tree::unlink_file(tx, branch, &chain, name, id, now_ms).await?;
    changes::record_path(
        tx,
        &chain,
        ChangeKind::Remove,
        branch,
        id,
        name,
        None,
        now_ms,
    )
    .await
}

pub(crate) async fn acquire_lease(tx: &impl Tx, req: &LeaseRequest) -> Result<()> {
    tx.lock(Lock::Graph { exclusive: false }).await?;
    tx.lock(Lock::Files(req.branch, &[req.file_id])).await?;
    let chain = layers::head_chain(tx, req.branch).await?;
    layers::visible(tx, &chain, req.file_id).await?;
    if let Some(l) = lease_of(tx, req.branch, req.file_id).await? {
        let free = l.holder == req.holder
            || l.expires_ms <= req.now_ms
            || req.break_holder.as_deref() == Some(l.holder.as_str());
        if !free {
            return Err(busy(req.file_id, &l, req.now_ms));
        }
    }
    tx.exec(
        Q::SetLease.into(),
        args![
            req.branch,
            req.file_id,
            &req.holder,
            req.now_ms.saturating_add(req.ttl_ms)
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn release_lease(
    tx: &impl Tx,
    branch: BranchId,
    file_id: FileId,
    holder: &str,
) -> Result<()> {
    tx.exec(Q::ReleaseLease.into(), args![branch, file_id, holder])
        .await?;
    Ok(())
}

pub(crate) async fn commit_writes(tx: &impl Tx, batch: &WriteBatch) -> Result<()> {
    let file_id = batch.lease.file_id;
    let branch = batch.lease.branch;
    let now = batch.lease.now_ms;
    let due = |br: &BranchInfo| {
        batch
            .auto_commit_ms
            .is_some_and(|interval| now.saturating_sub(br.commit_ms) >= interval)
    };
    // An automatic commit changes the graph, so it needs the graph lock
    // exclusive: decide the mode before taking it, and decide again under
    // it (another writer may have committed meanwhile). A commit only moves
    // `commit_ms` forward, so a batch found not due stays not due.
    let exclusive = batch.auto_commit_ms.is_some() && due(&layers::branch(tx, branch).await?);
    tx.lock(Lock::Graph { exclusive }).await?;
    let mut auto = None;
    if exclusive && due(&layers::branch(tx, branch).await?) {
        auto = layers::commit_branch(tx, branch, CommitKind::AUTOMATIC, now).await?;
    }
    tx.lock(Lock::Files(branch, &[file_id])).await?;
    check_lease(tx, &batch.lease).await?;
    let content = HeadWrite {
        pages: &batch.pages,
        size: batch.size,
        drop_pages_from: batch.drop_pages_from,
        drop_extents_from: batch.drop_extents_from,
        extents: &batch.extents,
    };
    write_head(tx, branch, file_id, &content, now).await?;
    if let Some(c) = auto {
        let change = NewChange::new(ChangeKind::Commit, branch, now).commit(Some(c.id));
        changes::record(tx, change).await?;
    }
    changes::record(
        tx,
        NewChange::new(ChangeKind::Data, branch, now).ino(file_id),
    )
    .await
}

/// What [`write_head`] writes to a file in a branch head.
pub(crate) struct HeadWrite<'a> {
    pub(crate) pages: &'a [PageWrite],
    pub(crate) size: u64,
    pub(crate) drop_pages_from: Option<u64>,
    pub(crate) drop_extents_from: Option<u64>,
    pub(crate) extents: &'a [ExtentWrite],
}

/// Writes `w` to file `file_id` in `branch`'s head: the body of
/// [`commit_writes`] once the lease is checked, and how a commit folds a
/// local journal in. The caller holds the file's lock.
pub(crate) async fn write_head(
    tx: &impl Tx,
    branch: BranchId,
    file_id: FileId,
    w: &HeadWrite<'_>,
    now: i64,
) -> Result<()> {
    // Most writes find the file's row in the head already: no chain.
    let (head, file) = match layers::head_row(tx, branch, file_id).await? {
        (head, Some(row)) if !row.deleted => (head, row),
        (_, Some(_)) => {
            return Err(MetaError::not_found(format!(
                "file #{file_id} no longer exists"
            )));
        }
        (_, None) => {
            let chain = layers::head_chain(tx, branch).await?;
            (chain[0], layers::own_row(tx, &chain, file_id).await?)
        }
    };
    for p in w.pages {
        if let Some(d) = &p.data
            && d.len() != num::u32_len(file.page_size)
        {
            return Err(MetaError::invalid(format!(
                "page {} is {} bytes; file {:?} has {}-byte pages",
                p.page_no,
                d.len(),
                file.name,
                file.page_size
            )));
        }
    }
    let size = num::to_sql(w.size, "file size")?;
    if let Some(from) = w.drop_pages_from {
        // A cut beyond every stored page (up to `u64::MAX`) drops nothing:
        // clamp, never wrap to a negative bound.
        let from = num::bound(from);
        tx.exec(Q::DropPagesFrom.into(), args![head, file_id, from])
            .await?;
        tx.exec(Q::CutPages.into(), args![head, file_id, from])
            .await?;
    }
    if let Some(from) = w.drop_extents_from {
        layers::drop_own_extents(tx, head, file_id, from, now).await?;
        tx.exec(Q::CutExtents.into(), args![head, file_id, num::bound(from)])
            .await?;
    }
    if !w.extents.is_empty() {
        install_extents(tx, head, file_id, w.extents, now).await?;
    }
    let seq = tx
        .query_one(Q::NextWrite.into(), args![head, file_id, size, now])
        .await?
        .i64(0, "write_seq")?;
    if w.pages.is_empty() {
        return Ok(());
    }
    // A page written twice in one batch keeps its last write (as applying
    // them in order would), and appears once: a batch's rows must not
    // collide (see `Tx::exec_each`).
    let mut last: BTreeMap<i64, Option<&[u8]>> = BTreeMap::new();
    for p in w.pages {
        last.insert(num::to_sql(p.page_no, "page number")?, p.data.as_deref());
    }
    let columns = [
        Column::Ints(last.keys().copied().collect()),
        Column::OptBlobs(last.values().copied().collect()),
        Column::Ints(
            last.iter()
                .map(|(&p, d)| crate::checksum::page_checksum(file_id, p.cast_unsigned(), *d))
                .collect(),
        ),
    ];
    tx.exec_each(Q::UpsertPages.into(), args![head, file_id, seq], &columns)
        .await?;
    Ok(())
}

/// Points the head's map entries at whole extents a writer stored itself
/// and drops the head's dirty pages they replace (see
/// [`crate::ExtentWrite`]); references move as in [`commit_pack`].
async fn install_extents(
    tx: &impl Tx,
    head: LayerId,
    file_id: FileId,
    writes: &[ExtentWrite],
    now: i64,
) -> Result<()> {
    let mut olds = Vec::with_capacity(writes.len());
    for e in writes {
        let idx = num::to_sql(e.extent_idx, "extent index")?;
        let old = match tx
            .query_opt(Q::OwnExtent.into(), args![head, file_id, idx])
            .await?
        {
            Some(r) => r.opt_text(0, "extent key")?,
            None => None,
        };
        olds.push(old);
    }
    let mut keys: Vec<String> = writes
        .iter()
        .map(|e| e.key.clone())
        .chain(olds.iter().flatten().cloned())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    tx.lock(Lock::Extents(&keys)).await?;
    for (e, old) in writes.iter().zip(olds) {
        let idx = num::to_sql(e.extent_idx, "extent index")?;
        extents::incref(tx, &e.key, 1).await?;
        tx.exec(
            Q::SetExtent.into(),
            args![head, file_id, idx, e.key.as_str()],
        )
        .await?;
        if let Some(old) = &old {
            extents::decref(tx, old, 1, now).await?;
        }
        tx.exec(
            Q::DropPagesBetween.into(),
            args![
                head,
                file_id,
                num::to_sql(e.pages.start, "page number")?,
                num::to_sql(e.pages.end, "page number")?
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn read_map<T: Tx>(
    tx: &T,
    view: View,
    file_id: FileId,
    first_page: u64,
    count: u64,
    ppe: u64,
) -> Result<ReadMap> {
    let chain = layers::view_chain(tx, view).await?;
    if count > 0 && ppe > 0 {
        let head = matches!(view, View::Branch(_)).then(|| chain[0]);
        if let Some(map) =
            layers::read_map_flat(tx, &chain, head, file_id, first_page, count, ppe).await?
        {
            return Ok(map);
        }
    }
    let (rows, file) = layers::visible_rows(tx, &chain, file_id).await?;
    if count == 0 || ppe == 0 {
        return Ok(ReadMap {
            size: file.size,
            ..ReadMap::default()
        });
    }
    Ok(
        layers::walk_rows(tx, &chain, &rows, file_id, first_page, count, ppe)
            .await?
            .read_map(file.size),
    )
}

fn check_ppe(ppe: u64) -> Result<()> {
    if ppe == 0 {
        return Err(MetaError::invalid("pages_per_extent must be positive"));
    }
    Ok(())
}

fn summaries(rows: Vec<super::Row>) -> Result<Vec<DirtySummary>> {
    let mut out = Vec::new();
    for r in rows {
        let pages = r.u64(1, "dirty page count")?;
        if pages > 0 {
            out.push(DirtySummary {
                extent_idx: r.u64(0, "extent index")?,
                pages,
            });
        }
    }
    Ok(out)
}

pub(crate) async fn dirty_counts(
    tx: &impl Tx,
    view: View,
    file_id: FileId,
    ppe: u64,
    extents: &[u64],
) -> Result<Vec<DirtySummary>> {
    check_ppe(ppe)?;
    let mut idxs: Vec<i64> = extents.iter().map(|&i| num::bound(i)).collect();
    idxs.sort_unstable();
    idxs.dedup();
    // The packer asks after every sync: the view's layer is resolved in
    // the same statement.
    let (branch, commit) = match view {
        View::Branch(b) => (Some(b), None),
        View::Commit(c) => (None, Some(c)),
    };
    let rows = tx
        .query(
            Q::DirtyCounts.into(),
            args![branch, commit, file_id, num::bound(ppe), &idxs],
        )
        .await?;
    summaries(rows)
}

pub(crate) async fn dirty_summary(
    tx: &impl Tx,
    view: View,
    file_id: FileId,
    ppe: u64,
) -> Result<Vec<DirtySummary>> {
    check_ppe(ppe)?;
    let layer = layers::top_layer(tx, view).await?;
    let rows = tx
        .query(
            Q::DirtySummary.into(),
            args![layer, file_id, num::bound(ppe)],
        )
        .await?;
    summaries(rows)
}

pub(crate) async fn dirty_extent<T: Tx>(
    tx: &T,
    view: View,
    file_id: FileId,
    extent_idx: u64,
    ppe: u64,
) -> Result<DirtyExtent> {
    check_ppe(ppe)?;
    let chain = layers::view_chain(tx, view).await?;
    let (rows, file) = layers::visible_rows(tx, &chain, file_id).await?;
    let first = extent_idx.saturating_mul(ppe);
    let (current_key, pages) = layers::walk_rows(tx, &chain, &rows, file_id, first, ppe, ppe)
        .await?
        .dirty_extent();
    Ok(DirtyExtent {
        size: file.size,
        layer: chain[0],
        current_key,
        pages,
    })
}

pub(crate) async fn check_dirty_pages(
    tx: &impl Tx,
    after: Option<DirtyPageCursor>,
    limit: usize,
) -> Result<Vec<DirtyPageCheck>> {
    let (l, f, p) = after.map_or((i64::MIN, i64::MIN, i64::MIN), |c| {
        (c.layer, c.file_id, num::bound(c.page_no))
    });
    let mut out = Vec::new();
    for r in tx
        .query(Q::DirtyAfter.into(), args![l, f, p, num::limit(limit)])
        .await?
    {
        let layer = r.i64(0, "layer")?;
        let file_id = r.i64(1, "file id")?;
        let page_no = r.u64(2, "page number")?;
        let data = r.opt_blob(3, "page data")?;
        let intact = crate::checksum::verify_page(
            layer,
            file_id,
            page_no,
            data.as_deref(),
            r.opt_i64(4, "crc")?,
        )
        .is_ok();
        out.push(DirtyPageCheck {
            layer,
            file_id,
            page_no,
            hole: data.is_none(),
            intact,
        });
    }
    Ok(out)
}

pub(crate) async fn commit_pack(tx: &impl Tx, c: &PackCommit) -> Result<()> {
    let file_id = c.lease.file_id;
    let now = c.lease.now_ms;
    let idx = num::to_sql(c.extent_idx, "extent index")?;
    tx.lock(Lock::Graph { exclusive: false }).await?;
    let Some((parent, frozen)) = layers::layer_parent(tx, c.layer).await? else {
        return Err(MetaError::conflict(format!(
            "layer {} was collected while packing; pack again",
            c.layer
        )));
    };
    if frozen {
        // A commit's layer: no lease, but one packer per file at a time.
        tx.lock(Lock::Pack(c.layer, file_id)).await?;
    } else {
        // A head: only its branch's lease holder packs it.
        tx.lock(Lock::Files(c.lease.branch, &[file_id])).await?;
        if layers::branch(tx, c.lease.branch).await?.head != c.layer {
            return Err(MetaError::conflict(format!(
                "layer {} is not the head of branch #{}; pack again",
                c.layer, c.lease.branch
            )));
        }
        check_lease(tx, &c.lease).await?;
    }
    let chain = layers::chain(tx, c.layer).await?;
    layers::visible(tx, &chain, file_id).await?;
    let entry = layers::visible_entry(tx, &chain, file_id, c.extent_idx).await?;
    let current = entry.as_ref().and_then(|(_, key)| key.clone());
    if current != c.expected_key {
        return Err(MetaError::conflict(format!(
            "extent {} of file #{file_id} changed while packing ({current:?}, expected {:?})",
            c.extent_idx, c.expected_key
        )));
    }
    // The rows this pack consumes hid lower ones (a hole over a lower dirty
    // page, the holes a truncation wrote past its cut), and once they are
    // gone only an extent entry of this layer keeps hiding them: a page
    // cut covers lower dirty pages, not the lower extent GC may pack them
    // into later. So the layer gets an entry of its own even when it packs
    // to nothing (a tombstone) or to the very extent a lower layer shows.
    let own_entry = entry.is_some_and(|(layer, _)| layer == c.layer);
    let hide_lower = parent.is_some() && !c.consumed.is_empty() && !own_entry;
    if c.new_key != c.expected_key || hide_lower {
        let old = match tx
            .query_opt(Q::OwnExtent.into(), args![c.layer, file_id, idx])
            .await?
        {
            Some(r) => r.opt_text(0, "extent key")?,
            None => None,
        };
        let mut keys: Vec<&str> = c
            .new_key
            .iter()
            .chain(old.iter())
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        tx.lock(Lock::Extents(&keys)).await?;
        match (&c.new_key, parent) {
            (Some(new), _) => {
                extents::incref(tx, new, 1).await?;
                tx.exec(
                    Q::SetExtent.into(),
                    args![c.layer, file_id, idx, new.as_str()],
                )
                .await?;
            }
            // Lower layers may show this extent: hide it.
            (None, Some(_)) => {
                tx.exec(
                    Q::SetExtent.into(),
                    args![c.layer, file_id, idx, None::<&str>],
                )
                .await?;
            }
            (None, None) => {
                tx.exec(Q::DeleteExtent.into(), args![c.layer, file_id, idx])
                    .await?;
            }
        }
        if let Some(old) = &old {
            extents::decref(tx, old, 1, now).await?;
        }
    }
    if !c.consumed.is_empty() {
        let columns = [
            Column::Ints(c.consumed.iter().map(|&(p, _)| num::bound(p)).collect()),
            Column::Ints(c.consumed.iter().map(|&(_, s)| s).collect()),
        ];
        tx.exec_each(Q::DeleteConsumed.into(), args![c.layer, file_id], &columns)
            .await?;
    }
    if frozen {
        // Where a frozen layer's pages live changed.
        layers::bump_epoch(tx).await?;
    }
    Ok(())
}

/// `impl MetaFiles for $engine` (`$mode`: see [`super::run`]).
macro_rules! impl_meta_files {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            impl MetaFiles for $engine {
                fn create_file<'a>(
                    &'a self,
                    branch: BranchId,
                    name: &'a str,
                    page_size: u32,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<FileMeta>> {
                    run!($mode, self, Write, |tx| files::create_file(
                        tx, branch, name, page_size, now_ms
                    )
                    .await)
                }

                fn file<'a>(
                    &'a self,
                    view: View,
                    name: &'a str,
                ) -> BoxFuture<'a, Result<FileMeta>> {
                    run!($mode, self, Read, |tx| files::file(tx, view, name).await)
                }

                fn file_by_id(&self, view: View, id: FileId) -> BoxFuture<'_, Result<FileMeta>> {
                    run!($mode, self, Read, |tx| files::file_by_id(tx, view, id).await)
                }

                fn list_files<'a>(
                    &'a self,
                    view: View,
                    prefix: &'a str,
                ) -> BoxFuture<'a, Result<Vec<FileMeta>>> {
                    run!($mode, self, Read, |tx| files::list_files(tx, view, prefix)
                        .await)
                }

                fn rename_file<'a>(&'a self, rename: FileRename<'a>) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| files::rename_file(tx, &rename)
                        .await)
                }

                fn delete_file<'a>(
                    &'a self,
                    branch: BranchId,
                    name: &'a str,
                    holder: &'a str,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| files::delete_file(
                        tx, branch, name, holder, now_ms
                    )
                    .await)
                }

                fn acquire_lease<'a>(&'a self, req: &'a LeaseRequest) -> BoxFuture<'a, Result<()>> {
                    // A lease dies with its holder: no fsync of its own.
                    run!($mode, self, Runtime, |tx| files::acquire_lease(tx, req).await)
                }

                fn release_lease<'a>(
                    &'a self,
                    branch: BranchId,
                    file_id: FileId,
                    holder: &'a str,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Runtime, |tx| files::release_lease(
                        tx, branch, file_id, holder
                    )
                    .await)
                }

                fn lease(
                    &self,
                    branch: BranchId,
                    file_id: FileId,
                ) -> BoxFuture<'_, Result<Option<LeaseInfo>>> {
                    run!($mode, self, Read, |tx| files::lease_of(tx, branch, file_id)
                        .await)
                }

                fn commit_writes<'a>(&'a self, batch: &'a WriteBatch) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| files::commit_writes(tx, batch)
                        .await)
                }

                fn read_map(
                    &self,
                    view: View,
                    file_id: FileId,
                    first_page: u64,
                    count: u64,
                    pages_per_extent: u64,
                ) -> BoxFuture<'_, Result<ReadMap>> {
                    run!($mode, self, Read, |tx| {
                        files::read_map(tx, view, file_id, first_page, count, pages_per_extent)
                            .await
                    })
                }

                fn dirty_counts<'a>(
                    &'a self,
                    view: View,
                    file_id: FileId,
                    pages_per_extent: u64,
                    extents: &'a [u64],
                ) -> BoxFuture<'a, Result<Vec<DirtySummary>>> {
                    run!($mode, self, ReadOwnWrites, |tx| {
                        files::dirty_counts(tx, view, file_id, pages_per_extent, extents).await
                    })
                }

                fn dirty_summary(
                    &self,
                    view: View,
                    file_id: FileId,
                    pages_per_extent: u64,
                ) -> BoxFuture<'_, Result<Vec<DirtySummary>>> {
                    run!($mode, self, Read, |tx| files::dirty_summary(
                        tx,
                        view,
                        file_id,
                        pages_per_extent
                    )
                    .await)
                }

                fn dirty_extent(
                    &self,
                    view: View,
                    file_id: FileId,
                    extent_idx: u64,
                    pages_per_extent: u64,
                ) -> BoxFuture<'_, Result<DirtyExtent>> {
                    run!($mode, self, Read, |tx| {
                        files::dirty_extent(tx, view, file_id, extent_idx, pages_per_extent).await
                    })
                }

                fn check_dirty_pages(
                    &self,
                    after: Option<DirtyPageCursor>,
                    limit: usize,
                ) -> BoxFuture<'_, Result<Vec<DirtyPageCheck>>> {
                    run!($mode, self, Read, |tx| files::check_dirty_pages(
                        tx, after, limit
                    )
                    .await)
                }

                fn commit_pack<'a>(&'a self, commit: &'a PackCommit) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| files::commit_pack(tx, commit)
                        .await)
                }
            }
        }
    };
}
pub(crate) use impl_meta_files;
