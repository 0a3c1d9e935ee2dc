//! Reading a file's pages through a chain of layers: the walk of the
//! layers where the file changed, and the cached [`Flat`] of a long run of
//! frozen layers. What each layer contributes is decided by
//! [`crate::resolve`]; this module only fetches the rows, and checks every
//! dirty page's checksum before its bytes are used.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::{Q, layer_row, rows_by_id};
use crate::contract::{FileId, LayerId, ReadMap};
use crate::error::Result;
use crate::logic::{Tx, args, corrupt};
use crate::num;
use crate::resolve::{FileRow, Flat, Walk};

type DirtyRow = (u64, i64, Option<Bytes>);
type MapRow = (u64, Option<String>);

/// Resolves pages `[first, first + count)` of file `id` through `chain`.
pub(crate) async fn walk<T: Tx>(
    tx: &T,
    chain: &[LayerId],
    id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Walk> {
    walk_rows(tx, chain, &rows_by_id(tx, id).await?, id, first, count, ppe).await
}

/// [`walk`] with the file's rows already read.
///
/// A layer holding rows of a file holds its file row too (writes, packs,
/// folds and merges keep them together), so only the layers where the
/// file changed are read. Up to [`Tx::SHALLOW_WALK`] of them are asked in
/// turn, with their bytes, stopping once the range is resolved; past it,
/// one statement asks all of them for the keys of the range's versions
/// and only the pages that win are read: the cost grows with how often
/// the range changed, not with the layers, and shadowed versions are
/// never read.
pub(crate) async fn walk_rows<T: Tx>(
    tx: &T,
    chain: &[LayerId],
    rows: &[FileRow],
    id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Walk> {
    let by_layer: HashMap<LayerId, &FileRow> = rows.iter().map(|r| (r.layer, r)).collect();
    let touched: Vec<LayerId> = chain
        .iter()
        .copied()
        .filter(|l| by_layer.contains_key(l))
        .collect();
    let mut w = Walk::new(first, count, ppe);
    if touched.len() <= T::SHALLOW_WALK {
        for &layer in chain {
            if w.finished() {
                break;
            }
            let Some(&row) = by_layer.get(&layer) else {
                w.layer(None, [], []);
                continue;
            };
            let (dirty, extents) = layer_range(tx, layer, id, &w).await?;
            w.layer(Some(row), dirty, extents);
        }
        return Ok(w);
    }
    let (p0, p1) = w.page_range();
    let (e0, e1) = w.extent_range();
    let mut dirty: HashMap<LayerId, Vec<DirtyRow>> = HashMap::new();
    for r in tx
        .query(
            Q::DirtyKeysRange.into(),
            args![&touched, id, num::bound(p0), num::bound(p1)],
        )
        .await?
    {
        let hole = r.bool(3, "hole")?;
        dirty.entry(r.i64(0, "layer")?).or_default().push((
            r.u64(1, "page number")?,
            r.i64(2, "seq")?,
            (!hole).then(Bytes::new),
        ));
    }
    let mut extents: HashMap<LayerId, Vec<MapRow>> = HashMap::new();
    for r in tx
        .query(
            Q::ExtentsRange.into(),
            args![&touched, id, num::bound(e0), num::bound(e1)],
        )
        .await?
    {
        extents
            .entry(r.i64(0, "layer")?)
            .or_default()
            .push((r.u64(1, "extent index")?, r.opt_text(2, "extent key")?));
    }
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
        Err(corrupt(format!(
            "a dirty page of file #{id} vanished inside a read transaction"
        )))
    }
}

/// One layer's dirty pages (with their bytes, verified) and extent
/// entries of file `id` inside `w`'s range.
async fn layer_range(
    tx: &impl Tx,
    layer: LayerId,
    id: FileId,
    w: &Walk,
) -> Result<(Vec<DirtyRow>, Vec<MapRow>)> {
    let (p0, p1) = w.page_range();
    let (e0, e1) = w.extent_range();
    let rows = tx
        .query(
            Q::DirtyRange.into(),
            args![layer, id, num::bound(p0), num::bound(p1)],
        )
        .await?;
    let mut dirty = Vec::with_capacity(rows.len());
    for r in rows {
        let page = r.u64(0, "page number")?;
        let data = r.opt_blob(2, "page data")?;
        crate::checksum::verify_page(layer, id, page, data.as_deref(), r.opt_i64(3, "crc")?)?;
        dirty.push((page, r.i64(1, "seq")?, data));
    }
    let extents = tx
        .query(
            Q::ExtentRange.into(),
            args![layer, id, num::bound(e0), num::bound(e1)],
        )
        .await?
        .iter()
        .map(|r| Ok((r.u64(0, "extent index")?, r.opt_text(1, "extent key")?)))
        .collect::<Result<Vec<_>>>()?;
    Ok((dirty, extents))
}

/// Reads the bytes of the dirty pages `(page, layer)` a walk kept unread
/// into it; false if one of them is not there.
async fn fill_unread(
    tx: &impl Tx,
    w: &mut Walk,
    id: FileId,
    pages: Vec<(u64, LayerId)>,
) -> Result<bool> {
    let mut by_layer: BTreeMap<LayerId, Vec<i64>> = BTreeMap::new();
    for (page, layer) in pages {
        by_layer.entry(layer).or_default().push(num::bound(page));
    }
    for (layer, pages) in by_layer {
        for r in tx
            .query(Q::DirtyData.into(), args![layer, id, &pages])
            .await?
        {
            let page = r.u64(0, "page number")?;
            let data = r.opt_blob(1, "page data")?.unwrap_or_default();
            crate::checksum::verify_page(layer, id, page, Some(&data), r.opt_i64(2, "crc")?)?;
            w.fill(page, data);
        }
    }
    Ok(w.unread().is_empty())
}

/// The counter of rewrites of frozen layers' rows (packs of committed
/// pages, folds, deletions). What a frozen layer *shows* never changes,
/// but where its pages live does; a [`Flat`] built at one epoch is only
/// used at that epoch. Absent: 0.
pub(crate) async fn epoch(tx: &impl Tx) -> Result<i64> {
    match tx.query_opt(Q::Epoch.into(), &[]).await? {
        Some(r) => r.i64(0, "layers.epoch"),
        None => Ok(0),
    }
}

/// Moves [`epoch`] on. Called last in a transaction that rewrote frozen
/// rows, so the row lock it takes (PostgreSQL) is held only until the
/// commit and never waited for while holding another.
pub(crate) async fn bump_epoch(tx: &impl Tx) -> Result<()> {
    tx.exec(Q::BumpEpoch.into(), &[]).await?;
    Ok(())
}

/// File `id` as the frozen layers `run` (top-down) show it, from every
/// version of its rows in the run.
async fn flat(tx: &impl Tx, run: &[LayerId], id: FileId, ppe: u64) -> Result<Flat> {
    let rows = rows_by_id(tx, id).await?;
    let mut dirty = Vec::new();
    for r in tx.query(Q::DirtyKeys.into(), args![run, id]).await? {
        dirty.push((
            r.i64(0, "layer")?,
            r.u64(1, "page number")?,
            r.i64(2, "seq")?,
            r.bool(3, "hole")?,
        ));
    }
    let mut extents = Vec::new();
    for r in tx.query(Q::Extents.into(), args![run, id]).await? {
        extents.push((
            r.i64(0, "layer")?,
            r.u64(1, "extent index")?,
            r.opt_text(2, "extent key")?,
        ));
    }
    Ok(Flat::build(run, &rows, dirty, extents, ppe))
}

/// Pages `[first, first + count)` of file `id` through an optional head
/// layer (with the head's own row of the file, if it has one) over a
/// [`Flat`] of the frozen layers below it. `None` if a page the flat names
/// is gone (it is stale: the caller drops it and walks the layers).
async fn walk_flat(
    tx: &impl Tx,
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
            let (dirty, extents) = layer_range(tx, layer, id, &w).await?;
            w.layer(Some(row), dirty, extents);
        }
        Some((_, None)) => w.layer(None, [], []),
        None => {}
    }
    let unread = flat.resolve(&mut w);
    Ok(fill_unread(tx, &mut w, id, unread).await?.then_some(w))
}

/// Pages `[first, first + count)` of a file through a cached [`Flat`] of
/// the frozen layers of `chain` below `head` (the view's own layer, `None`
/// for a commit): a long history costs one walk of the head. `None` when
/// the flat path does not apply.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_map_flat(
    tx: &impl Tx,
    chain: &[LayerId],
    head: Option<LayerId>,
    file_id: FileId,
    first: u64,
    count: u64,
    ppe: u64,
) -> Result<Option<ReadMap>> {
    let Some(run) = crate::resolve::flat_run(chain, head.is_some()) else {
        return Ok(None);
    };
    let head_row = match head {
        Some(h) => layer_row(tx, h, file_id).await?,
        None => None,
    };
    if !crate::resolve::flat_fits_under(head_row.as_ref(), ppe) {
        return Ok(None);
    }
    let epoch = epoch(tx).await?;
    let key = (run[0], file_id, ppe);
    let cached = tx.caches().flats().get(epoch, key);
    let flat = match cached {
        Some(f) => f,
        None => {
            let f = Arc::new(flat(tx, run, file_id, ppe).await?);
            tx.caches().flats().insert(epoch, key, f.clone());
            f
        }
    };
    let file = flat.file(head_row.as_ref(), file_id)?;
    let head = head.map(|h| (h, head_row.as_ref()));
    match walk_flat(tx, head, &flat, file_id, first, count, ppe).await? {
        Some(w) => Ok(Some(w.read_map(file.size))),
        None => {
            tx.caches().flats().stale(file_id);
            Ok(None)
        }
    }
}
