//! Layers, branches and commits in PostgreSQL: finding what a view shows,
//! copy-on-write of file rows, committing, and collecting layers. The same
//! steps and SQL logic as the SQLite engine's `layers` module.
//!
//! Every function runs inside the caller's transaction, under the locks
//! the engine's module docs describe; the rules of what a layer shows live
//! in [`crate::resolve`] and the retention rules in [`crate::graph`], so
//! this module only moves rows. Where SQLite asks one layer at a time, this
//! module fetches the rows of the whole chain in one statement (a round
//! trip costs more than the rows) and feeds them to the same resolution.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio_postgres::Row;

use super::conn::{Tx, col};
use super::{corrupt, decref, incref, lock_extents};
use crate::contract::*;
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::num;
use crate::resolve::{FileRow, Flat, Walk, topmost};

/// `SELECT` of the branch columns (a `&'static str`, for the statement
/// cache).
macro_rules! branch_sql {
    ($($rest:literal)+) => {
        concat!("SELECT id, name, head, commit_id, created_ms, commit_ms ", $($rest),+)
    };
}

/// `SELECT` of the commit columns.
macro_rules! commit_sql {
    ($($rest:literal)+) => {
        concat!(
            "SELECT id, layer, parent, merged, branch, message, auto, created_ms ",
            $($rest),+
        )
    };
}

/// `SELECT` of the file-row columns.
macro_rules! file_row_sql {
    ($($rest:literal)+) => {
        concat!(
            "SELECT layer, id, name, page_size, size, write_seq, cut_page, cut_extent, deleted, \
             created_ms, modified_ms ",
            $($rest),+
        )
    };
}

fn branch_row(r: &Row) -> Result<BranchInfo> {
    Ok(BranchInfo {
        id: col(r, 0)?,
        name: col(r, 1)?,
        head: col(r, 2)?,
        commit: col(r, 3)?,
        created_ms: col(r, 4)?,
        commit_ms: col(r, 5)?,
    })
}

fn commit_row(r: &Row) -> Result<CommitInfo> {
    Ok(CommitInfo {
        id: col(r, 0)?,
        layer: col(r, 1)?,
        parent: col(r, 2)?,
        merged: col(r, 3)?,
        branch: col(r, 4)?,
        message: col(r, 5)?,
        auto: col::<i64>(r, 6)? != 0,
        created_ms: col(r, 7)?,
    })
}

fn file_row(r: &Row) -> Result<FileRow> {
    let page_size: i64 = col(r, 3)?;
    Ok(FileRow {
        layer: col(r, 0)?,
        id: col(r, 1)?,
        name: col(r, 2)?,
        page_size: num::u32_from_sql(page_size, "page size")?,
        size: num::from_sql(col(r, 4)?, "file size")?,
        write_seq: col(r, 5)?,
        cut_page: col::<Option<i64>>(r, 6)?
            .map(|v| num::from_sql(v, "cut page"))
            .transpose()?,
        cut_extent: col::<Option<i64>>(r, 7)?
            .map(|v| num::from_sql(v, "cut extent"))
            .transpose()?,
        deleted: col::<i64>(r, 8)? != 0,
        created_ms: col(r, 9)?,
        modified_ms: col(r, 10)?,
    })
}

pub(super) async fn branch(tx: &Tx<'_>, id: BranchId) -> Result<BranchInfo> {
    match tx
        .query_opt(branch_sql!("FROM fsx_branches WHERE id = $1"), &[&id])
        .await?
    {
        Some(r) => branch_row(&r),
        None => Err(MetaError::not_found(format!(
            "branch #{id} does not exist (was it deleted?)"
        ))),
    }
}

pub(super) async fn branch_named(tx: &Tx<'_>, name: &str) -> Result<Option<BranchInfo>> {
    tx.query_opt(branch_sql!("FROM fsx_branches WHERE name = $1"), &[&name])
        .await?
        .as_ref()
        .map(branch_row)
        .transpose()
}

pub(super) async fn branches(tx: &Tx<'_>) -> Result<Vec<BranchInfo>> {
    tx.query(branch_sql!("FROM fsx_branches ORDER BY name"), &[])
        .await?
        .iter()
        .map(branch_row)
        .collect()
}

pub(super) async fn commit(tx: &Tx<'_>, id: CommitId) -> Result<CommitInfo> {
    match tx
        .query_opt(commit_sql!("FROM fsx_commits WHERE id = $1"), &[&id])
        .await?
    {
        Some(r) => commit_row(&r),
        None => Err(MetaError::not_found(format!(
            "commit {id} does not exist (it may have expired; `fsx log` lists commits)"
        ))),
    }
}

/// The layer a view reads first.
pub(super) async fn top_layer(tx: &Tx<'_>, view: View) -> Result<LayerId> {
    match view {
        View::Branch(b) => Ok(branch(tx, b).await?.head),
        View::Commit(c) => Ok(commit(tx, c).await?.layer),
    }
}

/// `top` and its ancestors, top first.
pub(super) async fn chain(tx: &Tx<'_>, top: LayerId) -> Result<Vec<LayerId>> {
    let chain = tx
        .query(
            "WITH RECURSIVE chain(id, depth) AS (
                 SELECT id, 0 FROM fsx_layers WHERE id = $1
                 UNION ALL
                 SELECT l.parent, chain.depth + 1 FROM fsx_layers l JOIN chain ON l.id = chain.id
                 WHERE l.parent IS NOT NULL
             )
             SELECT id FROM chain ORDER BY depth",
            &[&top],
        )
        .await?
        .iter()
        .map(|r| col(r, 0))
        .collect::<Result<Vec<LayerId>>>()?;
    if chain.is_empty() {
        return Err(MetaError::conflict(format!(
            "layer {top} no longer exists (a commit or branch change removed it); retry"
        )));
    }
    Ok(chain)
}

/// `(parent, frozen)` of a layer, or `None` if it does not exist.
pub(super) async fn layer_parent(
    tx: &Tx<'_>,
    layer: LayerId,
) -> Result<Option<(Option<LayerId>, bool)>> {
    match tx
        .query_opt(
            "SELECT parent, frozen FROM fsx_layers WHERE id = $1",
            &[&layer],
        )
        .await?
    {
        Some(r) => Ok(Some((col(&r, 0)?, col::<i64>(&r, 1)? != 0))),
        None => Ok(None),
    }
}

async fn rows_by_id(tx: &Tx<'_>, id: FileId) -> Result<Vec<FileRow>> {
    tx.query(file_row_sql!("FROM fsx_files WHERE id = $1"), &[&id])
        .await?
        .iter()
        .map(file_row)
        .collect()
}

/// The topmost row of file `id` in `chain`, deleted or not.
pub(super) async fn top_row(tx: &Tx<'_>, chain: &[LayerId], id: FileId) -> Result<Option<FileRow>> {
    Ok(topmost(chain, rows_by_id(tx, id).await?).remove(&id))
}

/// The file `id` as `chain` shows it, or `NotFound`.
pub(super) async fn visible(tx: &Tx<'_>, chain: &[LayerId], id: FileId) -> Result<FileRow> {
    match top_row(tx, chain, id).await? {
        Some(r) if !r.deleted => Ok(r),
        _ => Err(MetaError::not_found(format!("file #{id} no longer exists"))),
    }
}

/// The file called `name` in `chain`, if any: of the files with a row of
/// that name, the one whose topmost row still has it.
pub(super) async fn find(tx: &Tx<'_>, chain: &[LayerId], name: &str) -> Result<Option<FileRow>> {
    let rows = tx
        .query(
            file_row_sql!(
                "FROM fsx_files WHERE layer = ANY($1)
                   AND id IN (SELECT id FROM fsx_files WHERE name = $2)"
            ),
            &[&chain, &name],
        )
        .await?
        .iter()
        .map(file_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(topmost(chain, rows)
        .into_values()
        .find(|r| !r.deleted && r.name == name))
}

/// Every file row of the layers of `chain`.
pub(super) async fn chain_rows(tx: &Tx<'_>, chain: &[LayerId]) -> Result<Vec<FileRow>> {
    tx.query(
        file_row_sql!("FROM fsx_files WHERE layer = ANY($1)"),
        &[&chain],
    )
    .await?
    .iter()
    .map(file_row)
    .collect()
}

type DirtyRow = (u64, i64, Option<Bytes>);
type MapRow = (u64, Option<String>);

/// Resolves pages `[first, first + count)` of file `id` through `chain`.
pub(super) async fn walk(
    tx: &Tx<'_>,
    chain: &[LayerId],
    id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Walk> {
    let rows = rows_by_id(tx, id).await?;
    // A layer holding rows of a file holds its file row too, so only the
    // layers where the file changed need reading.
    let touched: Vec<LayerId> = chain
        .iter()
        .copied()
        .filter(|l| rows.iter().any(|r| r.layer == *l))
        .collect();
    let mut w = Walk::new(first, count, ppe);
    let (p0, p1) = w.page_range();
    let (e0, e1) = w.extent_range();
    // Keys first, bytes only for the pages that win: a long history holds
    // many versions of a hot page, and only the topmost one is read.
    let mut dirty: HashMap<LayerId, Vec<DirtyRow>> = HashMap::new();
    for r in tx
        .query(
            "SELECT layer, page_no, seq, data IS NULL FROM fsx_dirty_pages
             WHERE layer = ANY($1) AND file_id = $2 AND page_no >= $3 AND page_no <= $4",
            &[&touched, &id, &num::bound(p0), &num::bound(p1)],
        )
        .await?
    {
        let hole: bool = col(&r, 3)?;
        dirty.entry(col(&r, 0)?).or_default().push((
            num::from_sql(col(&r, 1)?, "page number")?,
            col(&r, 2)?,
            (!hole).then(Bytes::new),
        ));
    }
    let mut extents: HashMap<LayerId, Vec<MapRow>> = HashMap::new();
    for r in tx
        .query(
            "SELECT layer, extent_idx, key FROM fsx_extent_map
             WHERE layer = ANY($1) AND file_id = $2 AND extent_idx >= $3 AND extent_idx <= $4",
            &[&touched, &id, &num::bound(e0), &num::bound(e1)],
        )
        .await?
    {
        extents
            .entry(col(&r, 0)?)
            .or_default()
            .push((num::from_sql(col(&r, 1)?, "extent index")?, col(&r, 2)?));
    }
    let by_layer: HashMap<LayerId, &FileRow> = rows.iter().map(|r| (r.layer, r)).collect();
    for &layer in chain {
        if w.finished() {
            break;
        }
        w.layer(
            by_layer.get(&layer).copied(),
            dirty.remove(&layer).unwrap_or_default(),
            extents.remove(&layer).unwrap_or_default(),
        );
    }
    let unread: Vec<(u64, LayerId)> = w
        .unread()
        .into_iter()
        .map(|(page, depth)| (page, chain[depth]))
        .collect();
    if fill_unread(tx, &mut w, id, unread).await? {
        Ok(w)
    } else {
        Err(MetaError::new(
            MetaErrorKind::Corrupt,
            format!("a dirty page of file #{id} vanished inside a read transaction"),
        ))
    }
}

/// Reads the bytes of the dirty pages `(page, layer)` a walk kept unread
/// into it; false if one of them is not there.
async fn fill_unread(
    tx: &Tx<'_>,
    w: &mut Walk,
    id: FileId,
    pages: Vec<(u64, LayerId)>,
) -> Result<bool> {
    let mut by_layer: HashMap<LayerId, Vec<i64>> = HashMap::new();
    for (page, layer) in pages {
        by_layer.entry(layer).or_default().push(num::bound(page));
    }
    for (layer, pages) in by_layer {
        for r in tx
            .query(
                "SELECT page_no, data, crc FROM fsx_dirty_pages
                 WHERE layer = $1 AND file_id = $2 AND page_no = ANY($3) AND data IS NOT NULL",
                &[&layer, &id, &pages],
            )
            .await?
        {
            let page = num::from_sql(col(&r, 0)?, "page number")?;
            let data = col::<Vec<u8>>(&r, 1)?;
            crate::checksum::verify_page(layer, id, page, Some(&data), col(&r, 2)?)?;
            w.fill(page, Bytes::from(data));
        }
    }
    Ok(w.unread().is_empty())
}

/// The counter of rewrites of frozen layers' rows (packs of committed
/// pages, folds, deletions): a [`Flat`] built at one epoch is only used at
/// that epoch. Absent: 0.
pub(super) async fn epoch(tx: &Tx<'_>) -> Result<i64> {
    match tx
        .query_opt(
            "SELECT value::BIGINT FROM fsx_volume WHERE key = 'layers.epoch'",
            &[],
        )
        .await?
    {
        Some(r) => col(&r, 0),
        None => Ok(0),
    }
}

/// Moves [`epoch`] on. Called last in a transaction that rewrote frozen
/// rows, so the row lock it takes is held only until the commit and never
/// waited for while holding another.
pub(super) async fn bump_epoch(tx: &Tx<'_>) -> Result<()> {
    tx.execute(
        "INSERT INTO fsx_volume (key, value) VALUES ('layers.epoch', '1')
         ON CONFLICT (key) DO UPDATE SET value = (fsx_volume.value::BIGINT + 1)::TEXT",
        &[],
    )
    .await?;
    Ok(())
}

/// Layer `layer`'s own row of file `id`, if it has one.
pub(super) async fn layer_row(tx: &Tx<'_>, layer: LayerId, id: FileId) -> Result<Option<FileRow>> {
    tx.query_opt(
        file_row_sql!("FROM fsx_files WHERE layer = $1 AND id = $2"),
        &[&layer, &id],
    )
    .await?
    .as_ref()
    .map(file_row)
    .transpose()
}

/// File `id` as the frozen layers `run` (top-down) show it, from every
/// version of its rows in the run.
pub(super) async fn flat(tx: &Tx<'_>, run: &[LayerId], id: FileId, ppe: u64) -> Result<Flat> {
    let rows = rows_by_id(tx, id).await?;
    let mut dirty = Vec::new();
    for r in tx
        .query(
            "SELECT layer, page_no, seq, data IS NULL FROM fsx_dirty_pages
             WHERE layer = ANY($1) AND file_id = $2",
            &[&run, &id],
        )
        .await?
    {
        dirty.push((
            col(&r, 0)?,
            num::from_sql(col(&r, 1)?, "page number")?,
            col(&r, 2)?,
            col(&r, 3)?,
        ));
    }
    let mut extents = Vec::new();
    for r in tx
        .query(
            "SELECT layer, extent_idx, key FROM fsx_extent_map WHERE layer = ANY($1) AND file_id = $2",
            &[&run, &id],
        )
        .await?
    {
        extents.push((
            col(&r, 0)?,
            num::from_sql(col(&r, 1)?, "extent index")?,
            col(&r, 2)?,
        ));
    }
    Ok(Flat::build(run, &rows, dirty, extents, ppe))
}

/// Pages `[first, first + count)` of file `id` through an optional head
/// layer (with the head's own row of the file, if it has one) over a
/// [`Flat`] of the frozen layers below it. `None` if a page the flat names
/// is gone (it is stale: the caller drops it and walks the layers).
pub(super) async fn walk_flat(
    tx: &Tx<'_>,
    head: Option<(LayerId, Option<&FileRow>)>,
    flat: &Flat,
    id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Option<Walk>> {
    let mut w = Walk::new(first, count, ppe);
    match head {
        Some((layer, Some(row))) => {
            let (p0, p1) = w.page_range();
            let (e0, e1) = w.extent_range();
            let mut dirty: Vec<DirtyRow> = Vec::new();
            for r in tx
                .query(
                    "SELECT page_no, seq, data, crc FROM fsx_dirty_pages
                     WHERE layer = $1 AND file_id = $2 AND page_no >= $3 AND page_no <= $4",
                    &[&layer, &id, &num::bound(p0), &num::bound(p1)],
                )
                .await?
            {
                let page = num::from_sql(col(&r, 0)?, "page number")?;
                let data = col::<Option<Vec<u8>>>(&r, 2)?;
                crate::checksum::verify_page(layer, id, page, data.as_deref(), col(&r, 3)?)?;
                dirty.push((page, col(&r, 1)?, data.map(Bytes::from)));
            }
            let mut extents: Vec<MapRow> = Vec::new();
            for r in tx
                .query(
                    "SELECT extent_idx, key FROM fsx_extent_map
                     WHERE layer = $1 AND file_id = $2 AND extent_idx >= $3 AND extent_idx <= $4",
                    &[&layer, &id, &num::bound(e0), &num::bound(e1)],
                )
                .await?
            {
                extents.push((num::from_sql(col(&r, 0)?, "extent index")?, col(&r, 1)?));
            }
            w.layer(Some(row), dirty, extents);
        }
        Some((_, None)) => w.layer(None, [], []),
        None => {}
    }
    let unread = flat.resolve(&mut w);
    Ok(fill_unread(tx, &mut w, id, unread).await?.then_some(w))
}

/// The key extent `idx` of file `id` shows through `chain` (`None`: no
/// entry, a tombstone, or hidden by a cut).
pub(super) async fn visible_key(
    tx: &Tx<'_>,
    chain: &[LayerId],
    id: FileId,
    idx: u64,
) -> Result<Option<String>> {
    let rows = rows_by_id(tx, id).await?;
    let mut own: HashMap<LayerId, Option<String>> = HashMap::new();
    for r in tx
        .query(
            "SELECT layer, key FROM fsx_extent_map
             WHERE layer = ANY($1) AND file_id = $2 AND extent_idx = $3",
            &[&chain, &id, &num::bound(idx)],
        )
        .await?
    {
        own.insert(col(&r, 0)?, col(&r, 1)?);
    }
    for layer in chain {
        if let Some(key) = own.remove(layer) {
            return Ok(key);
        }
        if let Some(r) = rows.iter().find(|r| r.layer == *layer)
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
pub(super) async fn own_row(tx: &Tx<'_>, chain: &[LayerId], id: FileId) -> Result<FileRow> {
    let head = chain[0];
    let top = visible(tx, chain, id).await?;
    if top.layer == head {
        return Ok(top);
    }
    tx.execute(
        "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                deleted, created_ms, modified_ms)
         VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, 0, $7, $8)",
        &[
            &head,
            &id,
            &top.name,
            &i64::from(top.page_size),
            &num::bound(top.size),
            &top.write_seq,
            &top.created_ms,
            &top.modified_ms,
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
pub(super) async fn remove_file(
    tx: &Tx<'_>,
    branch: BranchId,
    chain: &[LayerId],
    row: &FileRow,
    now_ms: i64,
) -> Result<()> {
    let head = chain[0];
    drop_own_extents(tx, head, row.id, 0, now_ms).await?;
    tx.execute(
        "DELETE FROM fsx_dirty_pages WHERE layer = $1 AND file_id = $2",
        &[&head, &row.id],
    )
    .await?;
    tx.execute(
        "DELETE FROM fsx_leases WHERE branch = $1 AND file_id = $2",
        &[&branch, &row.id],
    )
    .await?;
    if chain.len() > 1 {
        tx.execute(
            "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                    deleted, created_ms, modified_ms)
             VALUES ($1, $2, $3, $4, 0, $5, 0, 0, 1, $6, $7)
             ON CONFLICT (layer, id) DO UPDATE SET deleted = 1, size = 0, cut_page = 0,
                 cut_extent = 0, modified_ms = excluded.modified_ms",
            &[
                &head,
                &row.id,
                &row.name,
                &i64::from(row.page_size),
                &row.write_seq,
                &row.created_ms,
                &now_ms,
            ],
        )
        .await?;
    } else {
        tx.execute(
            "DELETE FROM fsx_files WHERE layer = $1 AND id = $2",
            &[&head, &row.id],
        )
        .await?;
    }
    Ok(())
}

/// Removes `layer`'s own map entries of a file from `from_idx` on,
/// releasing their references.
pub(super) async fn drop_own_extents(
    tx: &Tx<'_>,
    layer: LayerId,
    file_id: FileId,
    from_idx: u64,
    now_ms: i64,
) -> Result<()> {
    let rows = tx
        .query(
            "DELETE FROM fsx_extent_map WHERE layer = $1 AND file_id = $2 AND extent_idx >= $3
             RETURNING key",
            &[&layer, &file_id, &num::bound(from_idx)],
        )
        .await?;
    release(tx, &rows, now_ms).await
}

/// Releases one reference per row of `rows` (column 0: a key, or NULL for
/// a tombstone), locking the records in key order first.
async fn release(tx: &Tx<'_>, rows: &[Row], now_ms: i64) -> Result<()> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows {
        if let Some(key) = col::<Option<String>>(r, 0)? {
            *counts.entry(key).or_default() += 1;
        }
    }
    let keys: Vec<&str> = counts.keys().map(String::as_str).collect();
    lock_extents(tx, &keys).await?;
    for (key, n) in &counts {
        decref(tx, key, *n, now_ms).await?;
    }
    Ok(())
}

/// True when `layer` holds no rows at all.
pub(super) async fn is_empty(tx: &Tx<'_>, layer: LayerId) -> Result<bool> {
    let any: bool = col(
        &tx.query_one(
            "SELECT EXISTS (SELECT 1 FROM fsx_files WHERE layer = $1)
                 OR EXISTS (SELECT 1 FROM fsx_extent_map WHERE layer = $1)
                 OR EXISTS (SELECT 1 FROM fsx_dirty_pages WHERE layer = $1)",
            &[&layer],
        )
        .await?,
        0,
    )?;
    Ok(!any)
}

pub(super) async fn new_layer(
    tx: &Tx<'_>,
    parent: Option<LayerId>,
    now_ms: i64,
) -> Result<LayerId> {
    col(
        &tx.query_one(
            "INSERT INTO fsx_layers (parent, frozen, created_ms) VALUES ($1, 0, $2) RETURNING id",
            &[&parent, &now_ms],
        )
        .await?,
        0,
    )
}

/// Commits a branch (see [`MetaBranches::commit`](crate::MetaBranches::commit)); with `force` a commit is
/// made even when nothing changed.
pub(super) async fn commit_branch(
    tx: &Tx<'_>,
    branch_id: BranchId,
    message: &str,
    auto: bool,
    merged: Option<CommitId>,
    force: bool,
    now_ms: i64,
) -> Result<Option<CommitInfo>> {
    let br = branch(tx, branch_id).await?;
    let empty = is_empty(tx, br.head).await?;
    let parent = layer_parent(tx, br.head).await?.and_then(|(p, _)| p);
    if empty && auto && !force {
        return Ok(None);
    }
    let layer = match (empty, parent) {
        (true, Some(p)) => p,
        _ => {
            tx.execute(
                "UPDATE fsx_layers SET frozen = 1 WHERE id = $1",
                &[&br.head],
            )
            .await?;
            let head = new_layer(tx, Some(br.head), now_ms).await?;
            tx.execute(
                "UPDATE fsx_branches SET head = $2 WHERE id = $1",
                &[&br.id, &head],
            )
            .await?;
            br.head
        }
    };
    // The id comes from the table's identity sequence, which never hands
    // out a number twice (not even after a rollback), so an id that a
    // reset, a branch deletion or an expiry freed never names another
    // commit; schema version 5 relies on this the way SQLite relies on its
    // `next_commit_id` counter.
    let id: CommitId = col(
        &tx.query_one(
            "INSERT INTO fsx_commits (layer, parent, merged, branch, message, auto, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &layer,
                &br.commit,
                &merged,
                &br.name,
                &message,
                &i64::from(auto),
                &now_ms,
            ],
        )
        .await?,
        0,
    )?;
    tx.execute(
        "UPDATE fsx_branches SET commit_id = $2, commit_ms = $3 WHERE id = $1",
        &[&br.id, &id, &now_ms],
    )
    .await?;
    commit(tx, id).await.map(Some)
}

/// Fails with `Busy` if a writer holds a live lease on `branch` (on
/// `file` only, when given).
pub(super) async fn check_no_writers(
    tx: &Tx<'_>,
    branch: &BranchInfo,
    file: Option<FileId>,
    now_ms: i64,
) -> Result<()> {
    let live = tx
        .query_opt(
            "SELECT file_id, holder FROM fsx_leases
             WHERE branch = $1 AND expires_ms > $2 AND ($3::BIGINT IS NULL OR file_id = $3)
             ORDER BY file_id LIMIT 1",
            &[&branch.id, &now_ms, &file],
        )
        .await?;
    match live {
        Some(r) => {
            let f: FileId = col(&r, 0)?;
            let holder: String = col(&r, 1)?;
            Err(MetaError::new(
                MetaErrorKind::Busy,
                format!(
                    "branch {:?} has a writer: file #{f} is open by {holder}; close it (or wait for its lease to expire) first",
                    branch.name
                ),
            ))
        }
        None => Ok(()),
    }
}

pub(super) async fn graph(tx: &Tx<'_>) -> Result<LayerGraph> {
    let layers = tx
        .query("SELECT id, parent, frozen FROM fsx_layers ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| {
            Ok(LayerInfo {
                id: col(r, 0)?,
                parent: col(r, 1)?,
                frozen: col::<i64>(r, 2)? != 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let commits = tx
        .query(commit_sql!("FROM fsx_commits ORDER BY id"), &[])
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

async fn extent_size(tx: &Tx<'_>) -> Result<i64> {
    let row = tx
        .query_opt(
            "SELECT value FROM fsx_volume WHERE key = 'extent_size'",
            &[],
        )
        .await?
        .ok_or_else(|| corrupt("volume setting extent_size is missing"))?;
    let v: String = col(&row, 0)?;
    v.parse()
        .map_err(|_| corrupt(format!("extent_size {v:?} is malformed")))
}

/// Applies the retention plan of the current graph.
pub(super) async fn collect(tx: &Tx<'_>, now_ms: i64) -> Result<()> {
    let plan = crate::graph::plan(&graph(tx).await?);
    if plan.is_empty() {
        return Ok(());
    }
    tracing::debug!(?plan, "collecting layers");
    if !plan.remove_commits.is_empty() {
        tx.execute(
            "DELETE FROM fsx_commits WHERE id = ANY($1)",
            &[&plan.remove_commits],
        )
        .await?;
    }
    if !plan.delete_layers.is_empty() {
        let ls = &plan.delete_layers;
        let rows = tx
            .query(
                "DELETE FROM fsx_extent_map WHERE layer = ANY($1) RETURNING key",
                &[ls],
            )
            .await?;
        release(tx, &rows, now_ms).await?;
        tx.execute("DELETE FROM fsx_dirty_pages WHERE layer = ANY($1)", &[ls])
            .await?;
        tx.execute("DELETE FROM fsx_files WHERE layer = ANY($1)", &[ls])
            .await?;
        tx.execute("DELETE FROM fsx_layers WHERE id = ANY($1)", &[ls])
            .await?;
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
async fn fold(tx: &Tx<'_>, l: LayerId, c: LayerId, extent_size: i64, now_ms: i64) -> Result<()> {
    // Dirty pages first, judged against c's own rows before any move.
    tx.execute(
        "DELETE FROM fsx_dirty_pages AS d WHERE d.layer = $1 AND (
             EXISTS (SELECT 1 FROM fsx_dirty_pages x
                     WHERE x.layer = $2 AND x.file_id = d.file_id AND x.page_no = d.page_no)
          OR EXISTS (SELECT 1 FROM fsx_files f
                     WHERE f.layer = $2 AND f.id = d.file_id
                       AND (f.deleted = 1 OR f.cut_page <= d.page_no))
          OR EXISTS (SELECT 1 FROM fsx_extent_map x
                     WHERE x.layer = $2 AND x.file_id = d.file_id
                       AND x.extent_idx = d.page_no / ($3::BIGINT / (SELECT p.page_size FROM fsx_files p
                                                                   WHERE p.id = d.file_id LIMIT 1))))",
        &[&l, &c, &extent_size],
    )
    .await?;
    let rows = tx
        .query(
            "DELETE FROM fsx_extent_map AS m WHERE m.layer = $1 AND (
                 EXISTS (SELECT 1 FROM fsx_extent_map x
                         WHERE x.layer = $2 AND x.file_id = m.file_id AND x.extent_idx = m.extent_idx)
              OR EXISTS (SELECT 1 FROM fsx_files f
                         WHERE f.layer = $2 AND f.id = m.file_id
                           AND (f.deleted = 1 OR f.cut_extent <= m.extent_idx)))
             RETURNING key",
            &[&l, &c],
        )
        .await?;
    release(tx, &rows, now_ms).await?;
    tx.execute(
        "UPDATE fsx_dirty_pages SET layer = $2 WHERE layer = $1",
        &[&l, &c],
    )
    .await?;
    tx.execute(
        "UPDATE fsx_extent_map SET layer = $2 WHERE layer = $1",
        &[&l, &c],
    )
    .await?;
    // File rows: c's row wins and takes l's cuts too; l's other rows move.
    tx.execute(
        "UPDATE fsx_files AS f SET
             cut_page = (SELECT CASE WHEN x.deleted = 1 THEN 0
                                     WHEN x.cut_page IS NULL THEN f.cut_page
                                     WHEN f.cut_page IS NULL THEN x.cut_page
                                     ELSE LEAST(f.cut_page, x.cut_page) END
                         FROM fsx_files x WHERE x.layer = $1 AND x.id = f.id),
             cut_extent = (SELECT CASE WHEN x.deleted = 1 THEN 0
                                       WHEN x.cut_extent IS NULL THEN f.cut_extent
                                       WHEN f.cut_extent IS NULL THEN x.cut_extent
                                       ELSE LEAST(f.cut_extent, x.cut_extent) END
                           FROM fsx_files x WHERE x.layer = $1 AND x.id = f.id)
         WHERE f.layer = $2 AND EXISTS (SELECT 1 FROM fsx_files x WHERE x.layer = $1 AND x.id = f.id)",
        &[&l, &c],
    )
    .await?;
    tx.execute(
        "DELETE FROM fsx_files AS x WHERE x.layer = $1
             AND EXISTS (SELECT 1 FROM fsx_files f WHERE f.layer = $2 AND f.id = x.id)",
        &[&l, &c],
    )
    .await?;
    tx.execute(
        "UPDATE fsx_files SET layer = $2 WHERE layer = $1",
        &[&l, &c],
    )
    .await?;
    tx.execute(
        "UPDATE fsx_layers SET parent = (SELECT parent FROM fsx_layers WHERE id = $1) WHERE id = $2",
        &[&l, &c],
    )
    .await?;
    tx.execute("DELETE FROM fsx_layers WHERE id = $1", &[&l])
        .await?;
    Ok(())
}

/// Makes file `id` in the head of `target` what `source` shows (absent
/// there: deleted).
pub(super) async fn copy_file(
    tx: &Tx<'_>,
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
    tx.execute(
        "DELETE FROM fsx_dirty_pages WHERE layer = $1 AND file_id = $2",
        &[&head, &id],
    )
    .await?;
    let es = num::from_sql(extent_size(tx).await?, "extent size")?;
    let ppe = (es / u64::from(src.page_size.max(1))).max(1);
    let pages = src.size.div_ceil(u64::from(src.page_size.max(1))).max(1);
    let (extents, dirty) =
        crate::resolve::flatten(walk(tx, source_chain, id, 0, pages, ppe).await?);
    let write_seq = src.write_seq.max(dst.as_ref().map_or(0, |d| d.write_seq));
    tx.execute(
        "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                deleted, created_ms, modified_ms)
         VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, $7, $8)
         ON CONFLICT (layer, id) DO UPDATE SET name = excluded.name, page_size = excluded.page_size,
             size = excluded.size, write_seq = excluded.write_seq, cut_page = 0, cut_extent = 0,
             deleted = 0, created_ms = excluded.created_ms, modified_ms = excluded.modified_ms",
        &[
            &head,
            &id,
            &src.name,
            &i64::from(src.page_size),
            &num::bound(src.size),
            &write_seq,
            &src.created_ms,
            &now_ms,
        ],
    )
    .await?;
    if !extents.is_empty() {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, key) in &extents {
            *counts.entry(key.as_str()).or_default() += 1;
        }
        let keys: Vec<&str> = counts.keys().copied().collect();
        lock_extents(tx, &keys).await?;
        for (key, n) in &counts {
            incref(tx, key, *n).await?;
        }
        let idxs: Vec<i64> = extents.iter().map(|(i, _)| num::bound(*i)).collect();
        let keys: Vec<&str> = extents.iter().map(|(_, k)| k.as_str()).collect();
        tx.execute(
            "INSERT INTO fsx_extent_map (layer, file_id, extent_idx, key)
             SELECT $1, $2, i, k FROM unnest($3::BIGINT[], $4::TEXT[]) AS t(i, k)",
            &[&head, &id, &idxs, &keys],
        )
        .await?;
    }
    if !dirty.is_empty() {
        let pages: Vec<i64> = dirty.iter().map(|(p, _, _)| num::bound(*p)).collect();
        let seqs: Vec<i64> = dirty.iter().map(|(_, s, _)| *s).collect();
        let datas: Vec<Option<&[u8]>> = dirty.iter().map(|(_, _, d)| d.as_deref()).collect();
        // The bytes came through `walk`, which verified them.
        let crcs: Vec<i64> = dirty
            .iter()
            .map(|(p, _, d)| crate::checksum::page_checksum(id, *p, d.as_deref()))
            .collect();
        tx.execute(
            "INSERT INTO fsx_dirty_pages (layer, file_id, page_no, seq, data, crc)
             SELECT $1, $2, p, s, d, c
             FROM unnest($3::BIGINT[], $4::BIGINT[], $5::BYTEA[], $6::BIGINT[]) AS t(p, s, d, c)",
            &[&head, &id, &pages, &seqs, &datas, &crcs],
        )
        .await?;
    }
    Ok(())
}

/// Fails with `Conflict` if two visible files of `chain` share a name among
/// `names`.
pub(super) async fn check_unique_names(
    tx: &Tx<'_>,
    chain: &[LayerId],
    names: &[String],
) -> Result<()> {
    let top = topmost(chain, chain_rows(tx, chain).await?);
    for name in names {
        let n = top
            .values()
            .filter(|r| !r.deleted && &r.name == name)
            .count();
        if n > 1 {
            return Err(MetaError::conflict(format!(
                "two files would be called {name:?}; rename one on either side and merge again"
            )));
        }
    }
    Ok(())
}

/// What only `layers` hold.
pub(super) async fn usage(tx: &Tx<'_>, layers: &[LayerId]) -> Result<LayerUsage> {
    if layers.is_empty() {
        return Ok(LayerUsage::default());
    }
    let r = tx
        .query_one(
            "SELECT count(*)::BIGINT, coalesce(sum(e.bytes), 0)::BIGINT FROM
                 (SELECT key, count(*) AS n FROM fsx_extent_map
                  WHERE layer = ANY($1) AND key IS NOT NULL GROUP BY key) r
             JOIN fsx_extents e ON e.key = r.key WHERE e.refcount = r.n",
            &[&layers],
        )
        .await?;
    let extents: i64 = col(&r, 0)?;
    let extent_bytes: i64 = col(&r, 1)?;
    let dirty_bytes: i64 = col(
        &tx.query_one(
            "SELECT coalesce(sum(length(data)), 0)::BIGINT FROM fsx_dirty_pages
             WHERE layer = ANY($1)",
            &[&layers],
        )
        .await?,
        0,
    )?;
    Ok(LayerUsage {
        extents: num::from_sql(extents, "extent count")?,
        extent_bytes: num::from_sql(extent_bytes, "extent bytes")?,
        dirty_bytes: num::from_sql(dirty_bytes, "dirty bytes")?,
    })
}
