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
use super::{decref, lock_extents};
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
