//! Layers, branches and commits in SQLite: finding what a view shows,
//! copy-on-write of file rows, committing, and collecting layers.
//!
//! Every function runs inside the caller's transaction; the rules of what a
//! layer shows live in [`crate::resolve`] and the retention rules in
//! [`crate::graph`], so this module only moves rows.

use bytes::Bytes;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{col_opt_u64, col_u32, col_u64, exec, query_all, query_one, sql_err};
use crate::contract::*;
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::num;
use crate::resolve::{FileRow, Flat, Walk, topmost};

const BRANCH_COLUMNS: &str = "id, name, head, commit_id, created_ms, commit_ms";
const COMMIT_COLUMNS: &str = "id, layer, parent, merged, branch, message, auto, created_ms";
const FILE_ROW_COLUMNS: &str = "layer, id, name, page_size, size, write_seq, cut_page, cut_extent, deleted, created_ms, modified_ms";

fn branch_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BranchInfo> {
    Ok(BranchInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        head: r.get(2)?,
        commit: r.get(3)?,
        created_ms: r.get(4)?,
        commit_ms: r.get(5)?,
    })
}

fn commit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommitInfo> {
    Ok(CommitInfo {
        id: r.get(0)?,
        layer: r.get(1)?,
        parent: r.get(2)?,
        merged: r.get(3)?,
        branch: r.get(4)?,
        message: r.get(5)?,
        auto: r.get::<_, i64>(6)? != 0,
        created_ms: r.get(7)?,
    })
}

fn file_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
    file_row_at(r, 0)
}

/// A [`FileRow`] from [`FILE_ROW_COLUMNS`] starting at column `at`.
fn file_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        layer: r.get(at)?,
        id: r.get(at + 1)?,
        name: r.get(at + 2)?,
        page_size: col_u32(r, at + 3, "page size")?,
        size: col_u64(r, at + 4, "file size")?,
        write_seq: r.get(at + 5)?,
        cut_page: col_opt_u64(r, at + 6, "cut page")?,
        cut_extent: col_opt_u64(r, at + 7, "cut extent")?,
        deleted: r.get::<_, i64>(at + 8)? != 0,
        created_ms: r.get(at + 9)?,
        modified_ms: r.get(at + 10)?,
    })
}

pub(super) fn branch(tx: &Transaction<'_>, id: BranchId) -> Result<BranchInfo> {
    query_one(
        tx,
        &format!("SELECT {BRANCH_COLUMNS} FROM fsx_branches WHERE id = ?1"),
        params![id],
        branch_row,
    )
    .optional()
    .map_err(sql_err)?
    .ok_or_else(|| MetaError::not_found(format!("branch #{id} does not exist (was it deleted?)")))
}

pub(super) fn commit(tx: &Transaction<'_>, id: CommitId) -> Result<CommitInfo> {
    query_one(
        tx,
        &format!("SELECT {COMMIT_COLUMNS} FROM fsx_commits WHERE id = ?1"),
        params![id],
        commit_row,
    )
    .optional()
    .map_err(sql_err)?
    .ok_or_else(|| {
        MetaError::not_found(format!(
            "commit {id} does not exist (it may have expired; `fsx log` lists commits)"
        ))
    })
}

/// The layer a view reads first.
pub(super) fn top_layer(tx: &Transaction<'_>, view: View) -> Result<LayerId> {
    match view {
        View::Branch(b) => Ok(branch(tx, b)?.head),
        View::Commit(c) => Ok(commit(tx, c)?.layer),
    }
}

/// `top` and its ancestors, top first.
pub(super) fn chain(tx: &Transaction<'_>, top: LayerId) -> Result<Vec<LayerId>> {
    let chain: Vec<LayerId> = query_all(
        tx,
        "WITH RECURSIVE chain(id, depth) AS (
             SELECT id, 0 FROM fsx_layers WHERE id = ?1
             UNION ALL
             SELECT l.parent, chain.depth + 1 FROM fsx_layers l JOIN chain ON l.id = chain.id
             WHERE l.parent IS NOT NULL
         )
         SELECT id FROM chain ORDER BY depth",
        params![top],
        |r| r.get(0),
    )?;
    if chain.is_empty() {
        return Err(MetaError::conflict(format!(
            "layer {top} no longer exists (a commit or branch change removed it); retry"
        )));
    }
    Ok(chain)
}

pub(super) fn layer_parent(
    tx: &Transaction<'_>,
    layer: LayerId,
) -> Result<Option<(Option<LayerId>, bool)>> {
    query_one(
        tx,
        "SELECT parent, frozen FROM fsx_layers WHERE id = ?1",
        params![layer],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
    )
    .optional()
    .map_err(sql_err)
}

pub(super) fn rows_by_id(tx: &Transaction<'_>, id: FileId) -> Result<Vec<FileRow>> {
    query_all(
        tx,
        &format!("SELECT {FILE_ROW_COLUMNS} FROM fsx_files WHERE id = ?1"),
        params![id],
        file_row,
    )
}

/// The topmost row of file `id` in `chain`, deleted or not.
pub(super) fn top_row(
    tx: &Transaction<'_>,
    chain: &[LayerId],
    id: FileId,
) -> Result<Option<FileRow>> {
    Ok(topmost(chain, rows_by_id(tx, id)?).remove(&id))
}

/// The file `id` as `chain` shows it, or `NotFound`.
pub(super) fn visible(tx: &Transaction<'_>, chain: &[LayerId], id: FileId) -> Result<FileRow> {
    Ok(visible_rows(tx, chain, id)?.1)
}

/// Every row of file `id`, and the one `chain` shows (`NotFound` if none
/// or deleted): what a read resolves through, read once.
pub(super) fn visible_rows(
    tx: &Transaction<'_>,
    chain: &[LayerId],
    id: FileId,
) -> Result<(Vec<FileRow>, FileRow)> {
    let rows = rows_by_id(tx, id)?;
    match crate::resolve::top_of(chain, &rows) {
        Some(r) if !r.deleted => {
            let top = r.clone();
            Ok((rows, top))
        }
        _ => Err(MetaError::not_found(format!("file #{id} no longer exists"))),
    }
}

/// The file called `name` in `chain`, if any.
pub(super) fn find(tx: &Transaction<'_>, chain: &[LayerId], name: &str) -> Result<Option<FileRow>> {
    let candidates: Vec<FileId> = query_all(
        tx,
        "SELECT DISTINCT id FROM fsx_files WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )?;
    for id in candidates {
        if let Some(r) = top_row(tx, chain, id)?
            && !r.deleted
            && r.name == name
        {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Every file row of the layers of `chain`.
pub(super) fn chain_rows(tx: &Transaction<'_>, chain: &[LayerId]) -> Result<Vec<FileRow>> {
    let mut rows = Vec::new();
    for &l in chain {
        rows.extend(query_all(
            tx,
            &format!("SELECT {FILE_ROW_COLUMNS} FROM fsx_files WHERE layer = ?1"),
            params![l],
            file_row,
        )?);
    }
    Ok(rows)
}

/// Resolves pages `[first, first + count)` of file `id` through `chain`,
/// given the file's rows.
pub(super) fn walk_rows(
    tx: &Transaction<'_>,
    chain: &[LayerId],
    rows: &[FileRow],
    id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Walk> {
    let by_layer: std::collections::HashMap<LayerId, &FileRow> =
        rows.iter().map(|r| (r.layer, r)).collect();
    let touched: Vec<LayerId> = chain
        .iter()
        .copied()
        .filter(|l| by_layer.contains_key(l))
        .collect();
    if touched.len() > SHALLOW {
        return walk_deep(tx, chain, rows, &touched, id, first, count, ppe);
    }
    let mut w = Walk::new(first, count, ppe);
    for &layer in chain {
        if w.finished() {
            break;
        }
        // A layer holding rows of a file holds its file row too (writes,
        // packs, folds and merges keep them together), so a layer without
        // one has nothing to say: long chains cost what the file changed.
        let Some(&row) = by_layer.get(&layer) else {
            w.layer(None, [], []);
            continue;
        };
        let (dirty, extents) = layer_range(tx, layer, id, &w)?;
        w.layer(Some(row), dirty, extents);
    }
    Ok(w)
}

/// One layer's dirty pages (with their bytes) and extent entries of file
/// `id` inside `w`'s range.
#[allow(clippy::type_complexity)]
fn layer_range(
    tx: &Transaction<'_>,
    layer: LayerId,
    id: FileId,
    w: &Walk,
) -> Result<(Vec<(u64, i64, Option<Bytes>)>, Vec<(u64, Option<String>)>)> {
    let (p0, p1) = w.page_range();
    let (e0, e1) = w.extent_range();
    let rows = query_all(
        tx,
        "SELECT page_no, seq, data, crc FROM fsx_dirty_pages
         WHERE layer = ?1 AND file_id = ?2 AND page_no >= ?3 AND page_no <= ?4",
        params![layer, id, num::bound(p0), num::bound(p1)],
        |r| {
            Ok((
                col_u64(r, 0, "page number")?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        },
    )?;
    let mut dirty = Vec::with_capacity(rows.len());
    for (page, seq, data, crc) in rows {
        crate::checksum::verify_page(layer, id, page, data.as_deref(), crc)?;
        dirty.push((page, seq, data.map(Bytes::from)));
    }
    let extents = query_all(
        tx,
        "SELECT extent_idx, key FROM fsx_extent_map
         WHERE layer = ?1 AND file_id = ?2 AND extent_idx >= ?3 AND extent_idx <= ?4",
        params![layer, id, num::bound(e0), num::bound(e1)],
        |r| Ok((col_u64(r, 0, "extent index")?, r.get(1)?)),
    )?;
    Ok((dirty, extents))
}

/// Up to this many layers holding rows of a file, a read asks each layer
/// in turn (two statements each, stopping as soon as the range is
/// resolved); past it, [`walk_deep`] asks all of them at once.
const SHALLOW: usize = 3;

/// [`walk_rows`] for a file changed in many layers (a long history of
/// commits): one statement for the extent entries of the range in every
/// layer, one for the dirty pages' keys without their bytes (both through
/// the `(file, index)` indexes), then the bytes of only the pages that
/// win, layer by layer. Cost grows with the versions of the range, not
/// with the layers, and shadowed page versions are never read.
#[allow(clippy::too_many_arguments)]
fn walk_deep(
    tx: &Transaction<'_>,
    chain: &[LayerId],
    rows: &[FileRow],
    touched: &[LayerId],
    id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Walk> {
    use std::collections::HashMap;
    let mut w = Walk::new(first, count, ppe);
    let (p0, p1) = w.page_range();
    let (e0, e1) = w.extent_range();
    // The (file, index) indexes return the versions of this range in every
    // layer: a cost that grows with how often these pages changed, not
    // with how many layers the file has. Rows of layers outside the chain
    // (other branches) are dropped here.
    let in_chain: std::collections::HashSet<LayerId> = touched.iter().copied().collect();
    let mut extents: HashMap<LayerId, Vec<(u64, Option<String>)>> = HashMap::new();
    for (layer, idx, key) in query_all(
        tx,
        "SELECT layer, extent_idx, key FROM fsx_extent_map INDEXED BY fsx_extent_map_file
         WHERE file_id = ?1 AND extent_idx >= ?2 AND extent_idx <= ?3",
        params![id, num::bound(e0), num::bound(e1)],
        |r| {
            Ok((
                r.get::<_, LayerId>(0)?,
                col_u64(r, 1, "extent index")?,
                r.get::<_, Option<String>>(2)?,
            ))
        },
    )? {
        if in_chain.contains(&layer) {
            extents.entry(layer).or_default().push((idx, key));
        }
    }
    let mut dirty: HashMap<LayerId, Vec<(u64, i64, Option<Bytes>)>> = HashMap::new();
    for (layer, page, seq, hole) in query_all(
        tx,
        "SELECT layer, page_no, seq, data IS NULL FROM fsx_dirty_pages INDEXED BY fsx_dirty_pages_file
         WHERE file_id = ?1 AND page_no >= ?2 AND page_no <= ?3",
        params![id, num::bound(p0), num::bound(p1)],
        |r| {
            Ok((
                r.get::<_, LayerId>(0)?,
                col_u64(r, 1, "page number")?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
            ))
        },
    )? {
        if in_chain.contains(&layer) {
            let data = (!hole).then(Bytes::new);
            dirty.entry(layer).or_default().push((page, seq, data));
        }
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
    if fill_unread(tx, &mut w, id, unread)? {
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
fn fill_unread(
    tx: &Transaction<'_>,
    w: &mut Walk,
    id: FileId,
    pages: Vec<(u64, LayerId)>,
) -> Result<bool> {
    use std::collections::{HashMap, HashSet};
    let mut by_layer: HashMap<LayerId, Vec<u64>> = HashMap::new();
    for (page, layer) in pages {
        by_layer.entry(layer).or_default().push(page);
    }
    for (layer, pages) in by_layer {
        let (lo, hi) = (pages.iter().min(), pages.iter().max());
        let (Some(&lo), Some(&hi)) = (lo, hi) else {
            continue;
        };
        let wanted: HashSet<u64> = pages.into_iter().collect();
        for (page, data, crc) in query_all(
            tx,
            "SELECT page_no, data, crc FROM fsx_dirty_pages
             WHERE layer = ?1 AND file_id = ?2 AND page_no >= ?3 AND page_no <= ?4
               AND data IS NOT NULL",
            params![layer, id, num::bound(lo), num::bound(hi)],
            |r| {
                Ok((
                    col_u64(r, 0, "page number")?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            },
        )? {
            if wanted.contains(&page) {
                crate::checksum::verify_page(layer, id, page, Some(&data), crc)?;
                w.fill(page, Bytes::from(data));
            }
        }
    }
    Ok(w.unread().is_empty())
}

/// The counter of changes to frozen layers' rows (packs of committed
/// pages, folds, deletions). What a frozen layer *shows* never changes,
/// but where its pages live does; a [`Flat`] built at one epoch is only
/// used at that epoch. Absent: 0.
pub(super) fn epoch(tx: &Transaction<'_>) -> Result<i64> {
    let v: Option<String> = query_one(
        tx,
        "SELECT value FROM fsx_volume WHERE key = 'layers.epoch'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql_err)?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Moves [`epoch`] on: every transaction that rewrites a frozen layer's
/// rows calls this.
pub(super) fn bump_epoch(tx: &Transaction<'_>) -> Result<()> {
    exec(
        tx,
        "INSERT INTO fsx_volume (key, value) VALUES ('layers.epoch', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        [],
    )
    .map_err(sql_err)?;
    Ok(())
}

/// File `id` as the frozen layers `run` (top-down) show it, from every
/// version of its rows (through the `(file, index)` indexes).
pub(super) fn flat(tx: &Transaction<'_>, run: &[LayerId], id: FileId, ppe: u64) -> Result<Flat> {
    let rows = rows_by_id(tx, id)?;
    let dirty = query_all(
        tx,
        "SELECT layer, page_no, seq, data IS NULL FROM fsx_dirty_pages INDEXED BY fsx_dirty_pages_file
         WHERE file_id = ?1",
        params![id],
        |r| {
            Ok((
                r.get::<_, LayerId>(0)?,
                col_u64(r, 1, "page number")?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
            ))
        },
    )?;
    let extents = query_all(
        tx,
        "SELECT layer, extent_idx, key FROM fsx_extent_map INDEXED BY fsx_extent_map_file
         WHERE file_id = ?1",
        params![id],
        |r| {
            Ok((
                r.get::<_, LayerId>(0)?,
                col_u64(r, 1, "extent index")?,
                r.get::<_, Option<String>>(2)?,
            ))
        },
    )?;
    Ok(Flat::build(run, &rows, dirty, extents, ppe))
}

/// Layer `layer`'s own row of file `id`, if it has one.
pub(super) fn layer_row(
    tx: &Transaction<'_>,
    layer: LayerId,
    id: FileId,
) -> Result<Option<FileRow>> {
    query_one(
        tx,
        &format!("SELECT {FILE_ROW_COLUMNS} FROM fsx_files WHERE layer = ?1 AND id = ?2"),
        params![layer, id],
        file_row,
    )
    .optional()
    .map_err(sql_err)
}

/// Pages `[first, first + count)` of file `id` through an optional head
/// layer (with the head's own row of the file, if it has one) over a
/// [`Flat`] of the frozen layers below it. `None` if a page the flat names
/// is gone (it is stale: the caller drops it and walks the layers).
pub(super) fn walk_flat(
    tx: &Transaction<'_>,
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
            let (dirty, extents) = layer_range(tx, layer, id, &w)?;
            w.layer(Some(row), dirty, extents);
        }
        Some((_, None)) => w.layer(None, [], []),
        None => {}
    }
    let unread = flat.resolve(&mut w);
    Ok(fill_unread(tx, &mut w, id, unread)?.then_some(w))
}

/// The key extent `idx` of file `id` shows through `chain` (`None`: no
/// entry, a tombstone, or hidden by a cut).
pub(super) fn visible_key(
    tx: &Transaction<'_>,
    chain: &[LayerId],
    id: FileId,
    idx: u64,
) -> Result<Option<String>> {
    let rows = rows_by_id(tx, id)?;
    let by_layer: std::collections::HashMap<LayerId, &FileRow> =
        rows.iter().map(|r| (r.layer, r)).collect();
    let mut st = tx
        .prepare_cached(
            "SELECT key FROM fsx_extent_map WHERE layer = ?1 AND file_id = ?2 AND extent_idx = ?3",
        )
        .map_err(sql_err)?;
    for &layer in chain {
        let Some(&row) = by_layer.get(&layer) else {
            continue;
        };
        let own: Option<Option<String>> = st
            .query_row(params![layer, id, num::to_sql(idx, "extent index")?], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql_err)?;
        if let Some(key) = own {
            return Ok(key);
        }
        if row.cuts().1 <= idx {
            return Ok(None);
        }
    }
    Ok(None)
}

/// The head of `branch` and that head's own row of file `id`, if it has
/// one, in one query: the common case of a write, which then needs no
/// chain.
pub(super) fn head_row(
    tx: &Transaction<'_>,
    branch: BranchId,
    id: FileId,
) -> Result<(LayerId, Option<FileRow>)> {
    // Built once: it runs on every write.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let columns: Vec<String> = FILE_ROW_COLUMNS
            .split(", ")
            .map(|c| format!("f.{c}"))
            .collect();
        format!(
            "SELECT b.head, {} FROM fsx_branches b
             LEFT JOIN fsx_files f ON f.layer = b.head AND f.id = ?2
             WHERE b.id = ?1",
            columns.join(", ")
        )
    });
    let mut st = tx.prepare_cached(&SQL).map_err(sql_err)?;
    let found = st
        .query_row(params![branch, id], |r| {
            let head: LayerId = r.get(0)?;
            let present: Option<i64> = r.get(1)?;
            let row = match present {
                Some(_) => Some(file_row_at(r, 1)?),
                None => None,
            };
            Ok((head, row))
        })
        .optional()
        .map_err(sql_err)?;
    found.ok_or_else(|| {
        MetaError::not_found(format!("branch #{branch} does not exist (was it deleted?)"))
    })
}

/// Makes sure `head` has its own row of file `id` (copying the row it
/// inherits), and returns it; `NotFound` if the file is not visible.
pub(super) fn own_row(tx: &Transaction<'_>, chain: &[LayerId], id: FileId) -> Result<FileRow> {
    let head = chain[0];
    let top = visible(tx, chain, id)?;
    if top.layer == head {
        return Ok(top);
    }
    exec(
        tx,
        "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                deleted, created_ms, modified_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, 0, ?7, ?8)",
        params![
            head,
            id,
            top.name,
            top.page_size,
            num::to_sql(top.size, "file size")?,
            top.write_seq,
            top.created_ms,
            top.modified_ms
        ],
    )
    .map_err(sql_err)?;
    Ok(FileRow {
        layer: head,
        cut_page: None,
        cut_extent: None,
        ..top
    })
}

/// Removes file `id` from the head of `chain`: its own rows go, and a
/// tombstone hides what lower layers hold.
pub(super) fn remove_file(
    tx: &Transaction<'_>,
    branch: BranchId,
    chain: &[LayerId],
    row: &FileRow,
    now_ms: i64,
) -> Result<()> {
    let head = chain[0];
    drop_own_extents(tx, head, row.id, 0, now_ms)?;
    exec(
        tx,
        "DELETE FROM fsx_dirty_pages WHERE layer = ?1 AND file_id = ?2",
        params![head, row.id],
    )
    .map_err(sql_err)?;
    exec(
        tx,
        "DELETE FROM fsx_leases WHERE branch = ?1 AND file_id = ?2",
        params![branch, row.id],
    )
    .map_err(sql_err)?;
    if chain.len() > 1 {
        exec(tx,
            "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                    deleted, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, 0, 0, 1, ?6, ?7)
             ON CONFLICT (layer, id) DO UPDATE SET deleted = 1, size = 0, cut_page = 0,
                 cut_extent = 0, modified_ms = excluded.modified_ms",
            params![head, row.id, row.name, row.page_size, row.write_seq, row.created_ms, now_ms],
        )
        .map_err(sql_err)?;
    } else {
        exec(
            tx,
            "DELETE FROM fsx_files WHERE layer = ?1 AND id = ?2",
            params![head, row.id],
        )
        .map_err(sql_err)?;
    }
    Ok(())
}

/// Removes `layer`'s own map entries of a file from `from_idx` on,
/// releasing their references.
pub(super) fn drop_own_extents(
    tx: &Transaction<'_>,
    layer: LayerId,
    file_id: FileId,
    from_idx: u64,
    now_ms: i64,
) -> Result<()> {
    let keys: Vec<Option<String>> = query_all(
        tx,
        "DELETE FROM fsx_extent_map WHERE layer = ?1 AND file_id = ?2 AND extent_idx >= ?3 RETURNING key",
        params![layer, file_id, num::bound(from_idx)],
        |r| r.get(0),
    )?;
    for key in keys.iter().flatten() {
        super::decref(tx, key, now_ms)?;
    }
    Ok(())
}

/// True when `layer` holds no rows at all.
pub(super) fn is_empty(tx: &Transaction<'_>, layer: LayerId) -> Result<bool> {
    let n: i64 = query_one(
        tx,
        "SELECT EXISTS (SELECT 1 FROM fsx_files WHERE layer = ?1)
                  + EXISTS (SELECT 1 FROM fsx_extent_map WHERE layer = ?1)
                  + EXISTS (SELECT 1 FROM fsx_dirty_pages WHERE layer = ?1)",
        params![layer],
        |r| r.get(0),
    )
    .map_err(sql_err)?;
    Ok(n == 0)
}

pub(super) fn new_layer(
    tx: &Transaction<'_>,
    parent: Option<LayerId>,
    now_ms: i64,
) -> Result<LayerId> {
    query_one(
        tx,
        "INSERT INTO fsx_layers (parent, frozen, created_ms) VALUES (?1, 0, ?2) RETURNING id",
        params![parent, now_ms],
        |r| r.get(0),
    )
    .map_err(sql_err)
}

/// Commits a branch (see [`MetaBranches::commit`](crate::MetaBranches::commit)); with `force` a commit is
/// made even when nothing changed.
pub(super) fn commit_branch(
    tx: &Transaction<'_>,
    branch_id: BranchId,
    message: &str,
    auto: bool,
    merged: Option<CommitId>,
    force: bool,
    now_ms: i64,
) -> Result<Option<CommitInfo>> {
    let br = branch(tx, branch_id)?;
    let empty = is_empty(tx, br.head)?;
    let parent = layer_parent(tx, br.head)?.and_then(|(p, _)| p);
    if empty && auto && !force {
        return Ok(None);
    }
    let layer = match (empty, parent) {
        (true, Some(p)) => p,
        _ => {
            exec(
                tx,
                "UPDATE fsx_layers SET frozen = 1 WHERE id = ?1",
                params![br.head],
            )
            .map_err(sql_err)?;
            let head = new_layer(tx, Some(br.head), now_ms)?;
            exec(
                tx,
                "UPDATE fsx_branches SET head = ?2 WHERE id = ?1",
                params![br.id, head],
            )
            .map_err(sql_err)?;
            br.head
        }
    };
    // From the counter, not the table's largest id + 1: a reset, a branch
    // deletion or an expiry removes commits, and an id someone noted down
    // must never name another state.
    let id: CommitId = query_one(
        tx,
        "UPDATE fsx_volume SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_commit_id'
         RETURNING CAST(value AS INTEGER) - 1",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql_err)?
    .ok_or_else(|| {
        MetaError::new(
            MetaErrorKind::Corrupt,
            "volume setting next_commit_id is missing",
        )
    })?;
    query_one(
        tx,
        "INSERT INTO fsx_commits (id, layer, parent, merged, branch, message, auto, created_ms)
             VALUES (?8, ?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        params![
            layer,
            br.commit,
            merged,
            br.name,
            message,
            i64::from(auto),
            now_ms,
            id
        ],
        |r| r.get::<_, CommitId>(0),
    )
    .map_err(sql_err)?;
    exec(
        tx,
        "UPDATE fsx_branches SET commit_id = ?2, commit_ms = ?3 WHERE id = ?1",
        params![br.id, id, now_ms],
    )
    .map_err(sql_err)?;
    commit(tx, id).map(Some)
}
