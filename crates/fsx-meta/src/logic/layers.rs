//! Layers, branches and commits: finding what a view shows, copy-on-write
//! of file rows, committing, and collecting layers — the row moves every
//! family builds on.
//!
//! Every function runs inside the caller's transaction, under the locks
//! the caller took (see "Lock order" in [`super`]); what a layer shows is
//! decided in [`crate::resolve`] and what retention keeps in
//! [`crate::graph`], so this module only reads and moves rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod walk;

pub(crate) use walk::{bump_epoch, read_map_flat, walk, walk_rows};

use super::{Column, Lock, Row, Tx, args, corrupt, extents};
use crate::contract::{
    BranchId, BranchInfo, CommitId, CommitInfo, FileId, LayerGraph, LayerId, LayerInfo, LayerUsage,
    View,
};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::num;
use crate::resolve::{FileRow, topmost};

/// The statements of this family. "File row" columns are `layer, id,
/// name, page_size, size, write_seq, cut_page, cut_extent, deleted,
/// created_ms, modified_ms`; branch columns `id, name, head, commit_id,
/// created_ms, commit_ms`; commit columns `id, layer, parent, merged,
/// branch, message, auto, created_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(id) →` branch columns.
    Branch,
    /// `(name) →` branch columns.
    BranchNamed,
    /// `→` branch columns of every branch, by name.
    Branches,
    /// `(id) →` commit columns.
    Commit,
    /// `→` commit columns of every commit, by id.
    Commits,
    /// `(top) → id`: the layer and its ancestors, top first.
    Chain,
    /// `(layer) → parent, frozen`.
    LayerParent,
    /// `→ id, parent, frozen` of every layer, by id.
    Layers,
    /// `(id) →` file rows of a file in every layer.
    FileRows,
    /// `(layers) →` file rows of those layers.
    FileRowsIn,
    /// `(layer, id) →` that layer's file row.
    FileRow,
    /// `(branch, id) → head,` then the head's file row or NULLs.
    HeadRow,
    /// `(layer, id, lo, hi) → page_no, seq, data, crc`: one layer's dirty
    /// pages in a page range.
    DirtyRange,
    /// `(layer, id, lo, hi) → extent_idx, key`: one layer's map entries in
    /// an extent range.
    ExtentRange,
    /// `(layers, id, lo, hi) → layer, page_no, seq, data IS NULL`: dirty
    /// page versions in a page range, without their bytes.
    DirtyKeysRange,
    /// `(layers, id, lo, hi) → layer, extent_idx, key`.
    ExtentsRange,
    /// `(layers, id) → layer, page_no, seq, data IS NULL`: every version.
    DirtyKeys,
    /// `(layers, id) → layer, extent_idx, key`: every version.
    Extents,
    /// `(layer, id, pages) → page_no, data, crc` of the pages with bytes.
    DirtyData,
    /// `(layers, id, idx) → layer, key`: one extent's entries.
    ExtentAt,
    /// `→ layers.epoch` as an integer, if set.
    Epoch,
    /// Moves `layers.epoch` on.
    BumpEpoch,
    /// `(layer, id, name, page_size, size, write_seq, created_ms,
    /// modified_ms)`: a live file row without cuts.
    InsertFileRow,
    /// `(layer, id, name, page_size, write_seq, created_ms, modified_ms)`:
    /// a tombstone (inserted or made of the existing row).
    Tombstone,
    /// `(layer, id)`: deletes a file row.
    DeleteFileRow,
    /// `(layer, id)`: deletes a layer's dirty pages of a file.
    DeleteDirtyOfFile,
    /// `(branch, id)`: deletes a lease.
    DeleteLease,
    /// `(layer, id, from) → key`: deletes map entries from an index on.
    DeleteExtentsFrom,
    /// `(layer) → any`: whether the layer holds any row.
    LayerHasRows,
    /// `(parent, created_ms) → id`: a new head layer.
    NewLayer,
    /// `(layer)`: freezes it.
    Freeze,
    /// `(branch, head)`: moves a branch's head.
    SetHead,
    /// `→ id`: takes the next commit id (never handed out twice).
    NextCommitId,
    /// `(id, layer, parent, merged, branch, message, auto, created_ms)`.
    InsertCommit,
    /// `(branch, commit, commit_ms)`.
    SetBranchCommit,
    /// `(branch, now_ms, file or NULL) → file_id, holder`: a live lease.
    LiveLease,
    /// `(ids)`: deletes commits.
    DeleteCommits,
    /// `(layers) → key`: deletes those layers' map entries.
    DeleteExtentsIn,
    /// `(layers)`: deletes those layers' dirty pages.
    DeleteDirtyIn,
    /// `(layers)`: deletes those layers' file rows.
    DeleteFilesIn,
    /// `(layers)`: deletes those layers' tree rows (nodes, entries and
    /// extended attributes: one statement per table).
    DeleteNodesIn,
    DeleteEntriesIn,
    DeleteXattrsIn,
    /// `(layers)`: deletes the layers.
    DeleteLayers,
    /// `(l, c, extent_size)`: drops `l`'s dirty pages that `c` hides.
    FoldDropDirty,
    /// `(l, c) → key`: drops `l`'s map entries that `c` hides.
    FoldDropExtents,
    /// `(l, c)`: moves dirty pages from `l` to `c`.
    FoldMoveDirty,
    /// `(l, c)`: moves map entries from `l` to `c`.
    FoldMoveExtents,
    /// `(l, c)`: `c`'s file rows absorb the cuts of `l`'s.
    FoldMergeCuts,
    /// `(l, c)`: drops `l`'s file rows that `c` has too.
    FoldDropFiles,
    /// `(l, c)`: moves the rest of `l`'s file rows to `c`.
    FoldMoveFiles,
    /// `(l, c)`: drops `l`'s tree rows that `c` has too, then moves the
    /// rest to `c` (per table: nodes, entries, extended attributes).
    FoldDropNodes,
    FoldMoveNodes,
    FoldDropEntries,
    FoldMoveEntries,
    FoldDropXattrs,
    FoldMoveXattrs,
    /// `(l, c)`: `c` takes `l`'s parent.
    FoldReparent,
    /// `(l)`: deletes the layer.
    DeleteLayer,
    /// `(layer, id, name, page_size, size, write_seq, created_ms,
    /// modified_ms)`: a file row replacing the head's, with cuts 0.
    CopyFileRow,
    /// `(layer, id)` then `(extent_idx, key)` per row.
    InsertExtents,
    /// `(layer, id)` then `(page_no, seq, data, crc)` per row.
    InsertDirty,
    /// `(layers) → count, bytes`: extents only those layers reference.
    UsageExtents,
    /// `(layers) → bytes` of their dirty pages.
    UsageDirty,
}

/// `SELECT` of the branch columns (in the order [`branch_row`] decodes
/// them) and the rest of a statement, as one literal: for the dialects'
/// statement text.
macro_rules! branch_sql {
    ($($rest:literal)+) => {
        concat!("SELECT id, name, head, commit_id, created_ms, commit_ms ", $($rest),+)
    };
}
pub(crate) use branch_sql;

/// `SELECT` of the commit columns (in the order [`commit_row`] decodes them).
macro_rules! commit_sql {
    ($($rest:literal)+) => {
        concat!("SELECT id, layer, parent, merged, branch, message, auto, created_ms ", $($rest),+)
    };
}
pub(crate) use commit_sql;

/// `SELECT` of the file-row columns (in the order [`file_row_at`] decodes
/// them).
macro_rules! file_row_sql {
    ($($rest:literal)+) => {
        concat!(
            "SELECT layer, id, name, page_size, size, write_seq, cut_page, cut_extent, deleted, \
             created_ms, modified_ms ",
            $($rest),+
        )
    };
}
pub(crate) use file_row_sql;

fn branch_row(r: &Row) -> Result<BranchInfo> {
    Ok(BranchInfo {
        id: r.i64(0, "branch id")?,
        name: r.text(1, "branch name")?,
        head: r.i64(2, "branch head")?,
        commit: r.opt_i64(3, "branch commit")?,
        created_ms: r.i64(4, "branch created_ms")?,
        commit_ms: r.i64(5, "branch commit_ms")?,
    })
}

fn commit_row(r: &Row) -> Result<CommitInfo> {
    Ok(CommitInfo {
        id: r.i64(0, "commit id")?,
        layer: r.i64(1, "commit layer")?,
        parent: r.opt_i64(2, "commit parent")?,
        merged: r.opt_i64(3, "merged commit")?,
        branch: r.text(4, "commit branch")?,
        message: r.text(5, "commit message")?,
        auto: r.bool(6, "commit auto")?,
        created_ms: r.i64(7, "commit created_ms")?,
    })
}

/// A file row from column `at` on.
fn file_row_at(r: &Row, at: usize) -> Result<FileRow> {
    Ok(FileRow {
        layer: r.i64(at, "file layer")?,
        id: r.i64(at + 1, "file id")?,
        name: r.text(at + 2, "file name")?,
        page_size: r.u32(at + 3, "page size")?,
        size: r.u64(at + 4, "file size")?,
        write_seq: r.i64(at + 5, "write_seq")?,
        cut_page: r.opt_u64(at + 6, "cut page")?,
        cut_extent: r.opt_u64(at + 7, "cut extent")?,
        deleted: r.bool(at + 8, "deleted")?,
        created_ms: r.i64(at + 9, "file created_ms")?,
        modified_ms: r.i64(at + 10, "file modified_ms")?,
    })
}

fn file_row(r: &Row) -> Result<FileRow> {
    file_row_at(r, 0)
}

fn file_rows(rows: Vec<Row>) -> Result<Vec<FileRow>> {
    rows.iter().map(file_row).collect()
}

pub(crate) async fn branch(tx: &impl Tx, id: BranchId) -> Result<BranchInfo> {
    match tx.query_opt(Q::Branch.into(), args![id]).await? {
        Some(r) => branch_row(&r),
        None => Err(MetaError::not_found(format!(
            "branch #{id} does not exist (was it deleted?)"
        ))),
    }
}

pub(crate) async fn branch_named(tx: &impl Tx, name: &str) -> Result<Option<BranchInfo>> {
    tx.query_opt(Q::BranchNamed.into(), args![name])
        .await?
        .as_ref()
        .map(branch_row)
        .transpose()
}

pub(crate) async fn branches(tx: &impl Tx) -> Result<Vec<BranchInfo>> {
    tx.query(Q::Branches.into(), &[])
        .await?
        .iter()
        .map(branch_row)
        .collect()
}

pub(crate) async fn commit(tx: &impl Tx, id: CommitId) -> Result<CommitInfo> {
    match tx.query_opt(Q::Commit.into(), args![id]).await? {
        Some(r) => commit_row(&r),
        None => Err(MetaError::not_found(format!(
            "commit {id} does not exist (it may have expired; `fsx log` lists commits)"
        ))),
    }
}

/// The layer a view reads first.
pub(crate) async fn top_layer(tx: &impl Tx, view: View) -> Result<LayerId> {
    match view {
        View::Branch(b) => Ok(branch(tx, b).await?.head),
        View::Commit(c) => Ok(commit(tx, c).await?.layer),
    }
}

/// `top` and its ancestors, top first (cached: see [`super::Caches`]).
pub(crate) async fn chain(tx: &impl Tx, top: LayerId) -> Result<Arc<Vec<LayerId>>> {
    if let Some(c) = tx.caches().chain(top) {
        return Ok(c);
    }
    let chain = tx
        .query(Q::Chain.into(), args![top])
        .await?
        .iter()
        .map(|r| r.i64(0, "layer id"))
        .collect::<Result<Vec<LayerId>>>()?;
    if chain.is_empty() {
        return Err(MetaError::conflict(format!(
            "layer {top} no longer exists (a commit or branch change removed it); retry"
        )));
    }
    let chain = Arc::new(chain);
    tx.caches().keep_chain(top, chain.clone());
    Ok(chain)
}

/// The chain of a branch's head.
pub(crate) async fn head_chain(tx: &impl Tx, branch_id: BranchId) -> Result<Arc<Vec<LayerId>>> {
    let head = branch(tx, branch_id).await?.head;
    chain(tx, head).await
}

/// The chain a view reads.
pub(crate) async fn view_chain(tx: &impl Tx, view: View) -> Result<Arc<Vec<LayerId>>> {
    let top = top_layer(tx, view).await?;
    chain(tx, top).await
}

/// `(parent, frozen)` of a layer, or `None` if it does not exist.
pub(crate) async fn layer_parent(
    tx: &impl Tx,
    layer: LayerId,
) -> Result<Option<(Option<LayerId>, bool)>> {
    match tx.query_opt(Q::LayerParent.into(), args![layer]).await? {
        Some(r) => Ok(Some((
            r.opt_i64(0, "layer parent")?,
            r.bool(1, "layer frozen")?,
        ))),
        None => Ok(None),
    }
}

pub(crate) async fn rows_by_id(tx: &impl Tx, id: FileId) -> Result<Vec<FileRow>> {
    file_rows(tx.query(Q::FileRows.into(), args![id]).await?)
}

/// The topmost row of file `id` in `chain`, deleted or not.
pub(crate) async fn top_row(
    tx: &impl Tx,
    chain: &[LayerId],
    id: FileId,
) -> Result<Option<FileRow>> {
    Ok(topmost(chain, rows_by_id(tx, id).await?).remove(&id))
}

/// The file `id` as `chain` shows it, or `NotFound`.
pub(crate) async fn visible(tx: &impl Tx, chain: &[LayerId], id: FileId) -> Result<FileRow> {
    Ok(visible_rows(tx, chain, id).await?.1)
}

/// Every row of file `id`, and the one `chain` shows (`NotFound` if none
/// or deleted): what a read resolves through, read once.
pub(crate) async fn visible_rows(
    tx: &impl Tx,
    chain: &[LayerId],
    id: FileId,
) -> Result<(Vec<FileRow>, FileRow)> {
    let rows = rows_by_id(tx, id).await?;
    match crate::resolve::top_of(chain, &rows) {
        Some(r) if !r.deleted => {
            let top = r.clone();
            Ok((rows, top))
        }
        _ => Err(MetaError::not_found(format!("file #{id} no longer exists"))),
    }
}

/// Every file row of the layers of `chain`.
pub(crate) async fn chain_rows(tx: &impl Tx, chain: &[LayerId]) -> Result<Vec<FileRow>> {
    file_rows(tx.query(Q::FileRowsIn.into(), args![chain]).await?)
}

/// Layer `layer`'s own row of file `id`, if it has one.
pub(crate) async fn layer_row(tx: &impl Tx, layer: LayerId, id: FileId) -> Result<Option<FileRow>> {
    tx.query_opt(Q::FileRow.into(), args![layer, id])
        .await?
        .as_ref()
        .map(file_row)
        .transpose()
}

/// The head of `branch` and that head's own row of file `id`, if it has
/// one, in one statement: the common case of a write, which then needs no
/// chain.
pub(crate) async fn head_row(
    tx: &impl Tx,
    branch_id: BranchId,
    id: FileId,
) -> Result<(LayerId, Option<FileRow>)> {
    let Some(r) = tx
        .query_opt(Q::HeadRow.into(), args![branch_id, id])
        .await?
    else {
        return Err(MetaError::not_found(format!(
            "branch #{branch_id} does not exist (was it deleted?)"
        )));
    };
    let head = r.i64(0, "branch head")?;
    let row = match r.opt_i64(1, "file layer")? {
        Some(_) => Some(file_row_at(&r, 1)?),
        None => None,
    };
    Ok((head, row))
}

/// The entry of extent `idx` of file `id` that `chain` shows: the layer
/// holding it and its key (`None`: a tombstone); `None` if there is no
/// entry or a cut hides it.
pub(crate) async fn visible_entry(
    tx: &impl Tx,
    chain: &[LayerId],
    id: FileId,
    idx: u64,
) -> Result<Option<(LayerId, Option<String>)>> {
    let rows = rows_by_id(tx, id).await?;
    let mut own: HashMap<LayerId, Option<String>> = HashMap::new();
    for r in tx
        .query(Q::ExtentAt.into(), args![chain, id, num::bound(idx)])
        .await?
    {
        own.insert(r.i64(0, "layer")?, r.opt_text(1, "extent key")?);
    }
    for &layer in chain {
        if let Some(key) = own.remove(&layer) {
            return Ok(Some((layer, key)));
        }
        if let Some(r) = rows.iter().find(|r| r.layer == layer)
            && r.cuts().1 <= idx
        {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Makes sure the head of `chain` has its own row of file `id` (copying
/// the row it inherits), and returns it; `NotFound` if the file is not
/// visible.
pub(crate) async fn own_row(tx: &impl Tx, chain: &[LayerId], id: FileId) -> Result<FileRow> {
    let head = chain[0];
    let top = visible(tx, chain, id).await?;
    if top.layer == head {
        return Ok(top);
    }
    tx.exec(
        Q::InsertFileRow.into(),
        args![
            head,
            id,
            &top.name,
            top.page_size,
            num::to_sql(top.size, "file size")?,
            top.write_seq,
            top.created_ms,
            top.modified_ms
        ],
    )
    .await?;
    Ok(FileRow {
        layer: head,
        cut_page: None,
        cut_extent: None,
        ..top
    })
}

/// Removes file `row` from the head of `chain` (of `branch`): its own rows
/// go, and a tombstone hides what lower layers hold.
pub(crate) async fn remove_file(
    tx: &impl Tx,
    branch_id: BranchId,
    chain: &[LayerId],
    row: &FileRow,
    now_ms: i64,
) -> Result<()> {
    let head = chain[0];
    drop_own_extents(tx, head, row.id, 0, now_ms).await?;
    tx.exec(Q::DeleteDirtyOfFile.into(), args![head, row.id])
        .await?;
    tx.exec(Q::DeleteLease.into(), args![branch_id, row.id])
        .await?;
    if chain.len() > 1 {
        tx.exec(
            Q::Tombstone.into(),
            args![
                head,
                row.id,
                &row.name,
                row.page_size,
                row.write_seq,
                row.created_ms,
                now_ms
            ],
        )
        .await?;
    } else {
        tx.exec(Q::DeleteFileRow.into(), args![head, row.id])
            .await?;
    }
    Ok(())
}

/// Removes `layer`'s own map entries of a file from `from_idx` on,
/// releasing their references.
pub(crate) async fn drop_own_extents(
    tx: &impl Tx,
    layer: LayerId,
    file_id: FileId,
    from_idx: u64,
    now_ms: i64,
) -> Result<()> {
    let rows = tx
        .query(
            Q::DeleteExtentsFrom.into(),
            args![layer, file_id, num::bound(from_idx)],
        )
        .await?;
    release_rows(tx, &rows, now_ms).await
}

/// Releases one reference per row (column 0: a key, or NULL for a
/// tombstone).
async fn release_rows(tx: &impl Tx, rows: &[Row], now_ms: i64) -> Result<()> {
    let keys = rows
        .iter()
        .map(|r| r.opt_text(0, "extent key"))
        .collect::<Result<Vec<_>>>()?;
    extents::release(tx, keys, now_ms).await
}

/// True when `layer` holds no rows at all.
pub(crate) async fn is_empty(tx: &impl Tx, layer: LayerId) -> Result<bool> {
    let r = tx.query_one(Q::LayerHasRows.into(), args![layer]).await?;
    Ok(!r.bool(0, "layer has rows")?)
}

pub(crate) async fn new_layer(
    tx: &impl Tx,
    parent: Option<LayerId>,
    now_ms: i64,
) -> Result<LayerId> {
    tx.query_one(Q::NewLayer.into(), args![parent, now_ms])
        .await?
        .i64(0, "layer id")
}

/// What a commit of a branch is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitKind<'a> {
    pub message: &'a str,
    /// Made by the commit interval or a branch creation: may expire, and
    /// is skipped when nothing changed unless `force`.
    pub auto: bool,
    /// For a merge, the commit merged in.
    pub merged: Option<CommitId>,
    /// Commit even when nothing changed.
    pub force: bool,
}

impl CommitKind<'_> {
    /// The commit the commit interval makes.
    pub const AUTOMATIC: CommitKind<'static> = CommitKind {
        message: "automatic commit",
        auto: true,
        merged: None,
        force: false,
    };
}

/// Commits a branch (see [`crate::MetaBranches::commit`]); `None` when an
/// automatic commit finds nothing changed. The caller holds the graph
/// lock exclusive.
pub(crate) async fn commit_branch(
    tx: &impl Tx,
    branch_id: BranchId,
    kind: CommitKind<'_>,
    now_ms: i64,
) -> Result<Option<CommitInfo>> {
    let br = branch(tx, branch_id).await?;
    let empty = is_empty(tx, br.head).await?;
    let parent = layer_parent(tx, br.head).await?.and_then(|(p, _)| p);
    if empty && kind.auto && !kind.force {
        return Ok(None);
    }
    let layer = match (empty, parent) {
        (true, Some(p)) => p,
        _ => {
            tx.exec(Q::Freeze.into(), args![br.head]).await?;
            let head = new_layer(tx, Some(br.head), now_ms).await?;
            tx.exec(Q::SetHead.into(), args![br.id, head]).await?;
            br.head
        }
    };
    // Never the table's largest id + 1: a reset, a branch deletion or an
    // expiry removes commits, and an id someone noted down must never name
    // another state.
    let id = tx
        .query_opt(Q::NextCommitId.into(), &[])
        .await?
        .ok_or_else(|| corrupt("volume setting next_commit_id is missing"))?
        .i64(0, "next commit id")?;
    tx.exec(
        Q::InsertCommit.into(),
        args![
            id,
            layer,
            br.commit,
            kind.merged,
            &br.name,
            kind.message,
            kind.auto,
            now_ms
        ],
    )
    .await?;
    tx.exec(Q::SetBranchCommit.into(), args![br.id, id, now_ms])
        .await?;
    commit(tx, id).await.map(Some)
}

/// Fails with `Busy` if a writer holds a live lease on `branch` (on
/// `file` only, when given).
pub(crate) async fn check_no_writers(
    tx: &impl Tx,
    branch: &BranchInfo,
    file: Option<FileId>,
    now_ms: i64,
) -> Result<()> {
    match tx
        .query_opt(Q::LiveLease.into(), args![branch.id, now_ms, file])
        .await?
    {
        Some(r) => Err(MetaError::new(
            MetaErrorKind::Busy,
            format!(
                "branch {:?} has a writer: file #{} is open by {}; close it (or wait for its lease to expire) first",
                branch.name,
                r.i64(0, "file id")?,
                r.text(1, "lease holder")?
            ),
        )),
        None => Ok(()),
    }
}

pub(crate) async fn graph(tx: &impl Tx) -> Result<LayerGraph> {
    let layers = tx
        .query(Q::Layers.into(), &[])
        .await?
        .iter()
        .map(|r| {
            Ok(LayerInfo {
                id: r.i64(0, "layer id")?,
                parent: r.opt_i64(1, "layer parent")?,
                frozen: r.bool(2, "layer frozen")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let commits = tx
        .query(Q::Commits.into(), &[])
        .await?
        .iter()
        .map(commit_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(LayerGraph {
        layers,
        branches: branches(tx).await?,
        commits,
    })
}

pub(crate) async fn extent_size(tx: &impl Tx) -> Result<i64> {
    let v = super::settings::get_setting(tx, "extent_size").await?;
    v.parse()
        .map_err(|_| corrupt(format!("extent_size {v:?} is malformed")))
}

/// Applies the retention plan of the current graph. The caller holds the
/// graph lock exclusive.
pub(crate) async fn collect(tx: &impl Tx, now_ms: i64) -> Result<()> {
    let plan = crate::graph::plan(&graph(tx).await?);
    if plan.is_empty() {
        return Ok(());
    }
    tracing::debug!(?plan, "collecting layers");
    if !plan.remove_commits.is_empty() {
        tx.exec(Q::DeleteCommits.into(), args![&plan.remove_commits])
            .await?;
    }
    if !plan.delete_layers.is_empty() {
        let ls = &plan.delete_layers;
        let rows = tx.query(Q::DeleteExtentsIn.into(), args![ls]).await?;
        release_rows(tx, &rows, now_ms).await?;
        tx.exec(Q::DeleteDirtyIn.into(), args![ls]).await?;
        tx.exec(Q::DeleteFilesIn.into(), args![ls]).await?;
        for q in [Q::DeleteNodesIn, Q::DeleteEntriesIn, Q::DeleteXattrsIn] {
            tx.exec(q.into(), args![ls]).await?;
        }
        tx.exec(Q::DeleteLayers.into(), args![ls]).await?;
    }
    if !plan.folds.is_empty() {
        let es = extent_size(tx).await?;
        for &(l, c) in &plan.folds {
            fold(tx, l, c, es, now_ms).await?;
        }
    }
    bump_epoch(tx).await
}

/// Folds layer `l` into its only child `c` (see [`crate::graph`]): rows of
/// `l` that `c` hides are dropped, the rest move up, and `c`'s cuts absorb
/// `l`'s.
async fn fold(tx: &impl Tx, l: LayerId, c: LayerId, extent_size: i64, now_ms: i64) -> Result<()> {
    // Dirty pages first, judged against c's own rows before any move.
    tx.exec(Q::FoldDropDirty.into(), args![l, c, extent_size])
        .await?;
    let rows = tx.query(Q::FoldDropExtents.into(), args![l, c]).await?;
    release_rows(tx, &rows, now_ms).await?;
    for q in [
        Q::FoldMoveDirty,
        Q::FoldMoveExtents,
        // File rows: c's row wins and takes l's cuts too; l's other rows
        // move.
        Q::FoldMergeCuts,
        Q::FoldDropFiles,
        Q::FoldMoveFiles,
        // Tree rows: c's version wins; l's others move.
        Q::FoldDropNodes,
        Q::FoldMoveNodes,
        Q::FoldDropEntries,
        Q::FoldMoveEntries,
        Q::FoldDropXattrs,
        Q::FoldMoveXattrs,
        Q::FoldReparent,
    ] {
        tx.exec(q.into(), args![l, c]).await?;
    }
    tx.exec(Q::DeleteLayer.into(), args![l]).await?;
    Ok(())
}

/// Makes file `id` in the head of `target` what `source` shows (absent
/// there: deleted).
pub(crate) async fn copy_file<T: Tx>(
    tx: &T,
    target: &BranchInfo,
    target_chain: &[LayerId],
    source_chain: &[LayerId],
    id: FileId,
    now_ms: i64,
) -> Result<()> {
    let head = target_chain[0];
    let src = top_row(tx, source_chain, id).await?.filter(|r| !r.deleted);
    let dst = top_row(tx, target_chain, id).await?.filter(|r| !r.deleted);
    let Some(src) = src else {
        if let Some(dst) = dst {
            remove_file(tx, target.id, target_chain, &dst, now_ms).await?;
        }
        return Ok(());
    };
    drop_own_extents(tx, head, id, 0, now_ms).await?;
    tx.exec(Q::DeleteDirtyOfFile.into(), args![head, id])
        .await?;
    let es = num::from_sql(extent_size(tx).await?, "extent size")?;
    let ppe = (es / u64::from(src.page_size.max(1))).max(1);
    let pages = src.size.div_ceil(u64::from(src.page_size.max(1))).max(1);
    let (extent_rows, dirty) =
        crate::resolve::flatten(walk(tx, source_chain, id, 0, pages, ppe).await?);
    let write_seq = src.write_seq.max(dst.as_ref().map_or(0, |d| d.write_seq));
    tx.exec(
        Q::CopyFileRow.into(),
        args![
            head,
            id,
            &src.name,
            src.page_size,
            num::to_sql(src.size, "file size")?,
            write_seq,
            src.created_ms,
            now_ms
        ],
    )
    .await?;
    if !extent_rows.is_empty() {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, key) in &extent_rows {
            *counts.entry(key.as_str()).or_default() += 1;
        }
        let keys: Vec<&str> = counts.keys().copied().collect();
        tx.lock(Lock::Extents(&keys)).await?;
        for (key, n) in &counts {
            extents::incref(tx, key, *n).await?;
        }
        let columns = [
            Column::Ints(extent_rows.iter().map(|(i, _)| num::bound(*i)).collect()),
            Column::Texts(extent_rows.iter().map(|(_, k)| k.as_str()).collect()),
        ];
        tx.exec_each(Q::InsertExtents.into(), args![head, id], &columns)
            .await?;
    }
    if !dirty.is_empty() {
        // The bytes came through `walk`, which verified them.
        let columns = [
            Column::Ints(dirty.iter().map(|(p, _, _)| num::bound(*p)).collect()),
            Column::Ints(dirty.iter().map(|(_, s, _)| *s).collect()),
            Column::OptBlobs(dirty.iter().map(|(_, _, d)| d.as_deref()).collect()),
            Column::Ints(
                dirty
                    .iter()
                    .map(|(p, _, d)| crate::checksum::page_checksum(id, *p, d.as_deref()))
                    .collect(),
            ),
        ];
        tx.exec_each(Q::InsertDirty.into(), args![head, id], &columns)
            .await?;
    }
    Ok(())
}

/// What only `layers` hold.
pub(crate) async fn usage(tx: &impl Tx, layers: &[LayerId]) -> Result<LayerUsage> {
    if layers.is_empty() {
        return Ok(LayerUsage::default());
    }
    let r = tx.query_one(Q::UsageExtents.into(), args![layers]).await?;
    let dirty = tx.query_one(Q::UsageDirty.into(), args![layers]).await?;
    Ok(LayerUsage {
        extents: r.u64(0, "extent count")?,
        extent_bytes: r.u64(1, "extent bytes")?,
        dirty_bytes: dirty.u64(0, "dirty bytes")?,
    })
}
