//! What a layer shows: the resolution rules of layered rows, shared by every
//! engine so that SQLite and PostgreSQL cannot disagree about them.
//!
//! An engine walks a view's layer chain top-down (the view's own layer
//! first) and feeds each layer's rows to a [`Walk`]. The rules:
//!
//! - a file's metadata is its **topmost** file row; a `deleted` row means the
//!   file does not exist in the view;
//! - within one layer a dirty page overrides the layer's extent entry;
//! - an extent entry (a key, or a tombstone meaning "empty") hides every
//!   lower row of that extent, dirty or packed;
//! - a layer's truncation cuts hide lower dirty pages at or after
//!   `cut_page` and lower extent entries at or after `cut_extent`; a
//!   deleted row hides everything lower (both cuts are 0);
//! - rows of one layer that an upper row already decided are ignored.
//!
//! Invariant: the result depends only on the rows, never on the order an
//! engine returns rows of one layer in.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::contract::{DirtyPage, FileId, FileMeta, LayerId, PageWrite, ReadMap};

/// One layer's row of the file table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRow {
    pub layer: LayerId,
    pub id: FileId,
    pub name: String,
    pub page_size: u32,
    pub size: u64,
    pub write_seq: i64,
    pub cut_page: Option<u64>,
    pub cut_extent: Option<u64>,
    pub deleted: bool,
    pub created_ms: i64,
    pub modified_ms: i64,
}

impl FileRow {
    pub fn meta(&self) -> FileMeta {
        FileMeta {
            id: self.id,
            name: self.name.clone(),
            page_size: self.page_size,
            size: self.size,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
        }
    }

    /// True if the extent cut hides no page the page cut leaves visible
    /// (`cut_extent * ppe >= cut_page`): what [`Flat`] needs of the rows
    /// above it.
    pub fn cuts_whole_extents(&self, ppe: u64) -> bool {
        let (page, extent) = self.cuts();
        extent.saturating_mul(ppe.max(1)) >= page
    }

    /// The cuts `(page, extent)` this row applies to the layers below it.
    pub fn cuts(&self) -> (u64, u64) {
        if self.deleted {
            (0, 0)
        } else {
            (
                self.cut_page.unwrap_or(u64::MAX),
                self.cut_extent.unwrap_or(u64::MAX),
            )
        }
    }
}

/// Depth of each layer in a chain (0 = the view's own layer).
pub(crate) fn depths(chain: &[LayerId]) -> BTreeMap<LayerId, usize> {
    chain.iter().enumerate().map(|(d, &l)| (l, d)).collect()
}

/// The topmost row of each file among `rows` (rows of any layers; those
/// outside `chain` are ignored), deleted ones included.
pub(crate) fn topmost(chain: &[LayerId], rows: Vec<FileRow>) -> BTreeMap<FileId, FileRow> {
    let depth = depths(chain);
    let mut best: BTreeMap<FileId, (usize, FileRow)> = BTreeMap::new();
    for r in rows {
        let Some(&d) = depth.get(&r.layer) else {
            continue;
        };
        match best.get(&r.id) {
            Some((bd, _)) if *bd <= d => {}
            _ => {
                best.insert(r.id, (d, r));
            }
        }
    }
    best.into_iter().map(|(id, (_, r))| (id, r)).collect()
}

/// The topmost of one file's `rows` along `chain`, deleted or not.
pub(crate) fn top_of<'a>(chain: &[LayerId], rows: &'a [FileRow]) -> Option<&'a FileRow> {
    let by_layer: std::collections::HashMap<LayerId, &FileRow> =
        rows.iter().map(|r| (r.layer, r)).collect();
    chain.iter().find_map(|l| by_layer.get(l).copied())
}

/// Files visible in a view whose chain is `chain`, by id. (Their names
/// are the tree's: `fsx_files.name` is only a label.)
pub(crate) fn visible_files(chain: &[LayerId], rows: Vec<FileRow>) -> BTreeMap<FileId, FileRow> {
    let mut files = topmost(chain, rows);
    files.retain(|_, r| !r.deleted);
    files
}

/// A page-range resolution in progress; feed it layers top-down.
#[derive(Debug)]
pub(crate) struct Walk {
    first: u64,
    last: u64,
    ppe: u64,
    depth: usize,
    page_cut: u64,
    ext_cut: u64,
    dirty: BTreeMap<u64, (usize, i64, Option<Bytes>)>,
    extents: BTreeMap<u64, (usize, Option<String>)>,
}

impl Walk {
    /// Resolves pages `[first, first + count)` (`count >= 1`) of a file with
    /// `ppe` pages per extent.
    pub fn new(first: u64, count: u64, ppe: u64) -> Self {
        Self {
            first,
            last: first.saturating_add(count.max(1) - 1),
            ppe: ppe.max(1),
            depth: 0,
            page_cut: u64::MAX,
            ext_cut: u64::MAX,
            dirty: BTreeMap::new(),
            extents: BTreeMap::new(),
        }
    }

    /// First and last extent index of the range.
    pub fn extent_range(&self) -> (u64, u64) {
        (self.first / self.ppe, self.last / self.ppe)
    }

    /// First and last page of the range.
    pub fn page_range(&self) -> (u64, u64) {
        (self.first, self.last)
    }

    /// True when no lower layer can change the result.
    pub fn finished(&self) -> bool {
        let (e0, e1) = self.extent_range();
        if self.ext_cut <= e0 && self.page_cut <= self.first {
            return true;
        }
        (e0..=e1).all(|i| self.extents.contains_key(&i))
    }

    /// Feeds the next layer down: its file row (if it has one), its dirty
    /// pages `(page, seq, data)` and its extent entries `(index, key or
    /// tombstone)`.
    pub fn layer(
        &mut self,
        file: Option<&FileRow>,
        dirty: impl IntoIterator<Item = (u64, i64, Option<Bytes>)>,
        extents: impl IntoIterator<Item = (u64, Option<String>)>,
    ) {
        let d = self.depth;
        let (e0, e1) = self.extent_range();
        // Dirty pages first: within a layer they override its extents.
        for (page, seq, data) in dirty {
            if page < self.first || page > self.last || page >= self.page_cut {
                continue;
            }
            if self.dirty.contains_key(&page) || self.extents.contains_key(&(page / self.ppe)) {
                continue;
            }
            self.dirty.insert(page, (d, seq, data));
        }
        for (idx, key) in extents {
            if idx < e0 || idx > e1 || idx >= self.ext_cut {
                continue;
            }
            self.extents.entry(idx).or_insert((d, key));
        }
        if let Some(f) = file {
            let (p, e) = f.cuts();
            self.page_cut = self.page_cut.min(p);
            self.ext_cut = self.ext_cut.min(e);
        }
        self.depth += 1;
    }

    /// Dirty pages the walk kept whose bytes were not read yet, with the
    /// depth of the layer they come from: an engine may feed a dirty page
    /// as `Some(Bytes::new())` (a page is never empty) and read only the
    /// pages that win, then [`Walk::fill`] them.
    pub fn unread(&self) -> Vec<(u64, usize)> {
        self.dirty
            .iter()
            .filter(|(_, (_, _, data))| data.as_ref().is_some_and(Bytes::is_empty))
            .map(|(&page, (d, _, _))| (page, *d))
            .collect()
    }

    /// Supplies the bytes of a page [`Walk::unread`] named.
    pub fn fill(&mut self, page: u64, data: Bytes) {
        if let Some((_, _, slot)) = self.dirty.get_mut(&page) {
            *slot = Some(data);
        }
    }

    /// The resolved pages as a [`ReadMap`] of a file `size` bytes long.
    pub fn read_map(self, size: u64) -> ReadMap {
        ReadMap {
            size,
            dirty: self
                .dirty
                .into_iter()
                .map(|(page_no, (_, _, data))| PageWrite { page_no, data })
                .collect(),
            extents: self
                .extents
                .into_iter()
                .filter_map(|(i, (_, k))| k.map(|k| (i, k)))
                .collect(),
        }
    }

    /// The resolved extent key (of the range's first extent) and dirty
    /// pages, marking pages below the top layer as inherited.
    pub fn dirty_extent(self) -> (Option<String>, Vec<DirtyPage>) {
        let (e0, _) = self.extent_range();
        let key = self.extents.get(&e0).and_then(|(_, k)| k.clone());
        let pages = self
            .dirty
            .into_iter()
            .map(|(page_no, (d, seq, data))| DirtyPage {
                page_no,
                seq,
                data,
                inherited: d > 0,
            })
            .collect();
        (key, pages)
    }
}

/// A file as a run of frozen layers shows it, resolved once: which layer's
/// dirty page or which extent entry each page comes from, and the topmost
/// file row. Frozen layers never change what they show (packing and
/// folding rewrite rows, never content; engines drop a `Flat` when they
/// do), so a read through a long history can feed its own layer and then
/// this one summary instead of every layer the file changed in.
///
/// Invariant: feeding a [`Walk`] the layers above the run and then
/// [`Flat::feed`] resolves every range exactly as feeding it the run's
/// layers one by one would, provided every file row above the run cuts
/// [`FileRow::cuts_whole_extents`] (the engine's truncations do). An
/// extent cut reaching below the page cut would unhide dirty pages that an
/// extent entry of the run hid, which the summary no longer knows of.
#[derive(Debug, Clone)]
pub(crate) struct Flat {
    /// The topmost row of the file in the run, deleted or not.
    pub top: Option<FileRow>,
    /// Winning dirty pages: `page -> (layer holding it, seq, hole)`.
    dirty: BTreeMap<u64, (LayerId, i64, bool)>,
    /// Winning extent entries: `index -> key or tombstone`.
    extents: BTreeMap<u64, Option<String>>,
}

impl Flat {
    /// Resolves the whole file over `run` (frozen layers, top-down) from
    /// its `rows` (file rows of any layers), every dirty page version
    /// `(layer, page, seq, hole)` and every extent entry `(layer, index,
    /// key)` (rows of layers outside the run are ignored).
    pub fn build(
        run: &[LayerId],
        rows: &[FileRow],
        dirty: impl IntoIterator<Item = (LayerId, u64, i64, bool)>,
        extents: impl IntoIterator<Item = (LayerId, u64, Option<String>)>,
        ppe: u64,
    ) -> Self {
        let depth = depths(run);
        let mut dirty_by: Vec<Vec<(u64, i64, Option<Bytes>)>> = vec![Vec::new(); run.len()];
        let mut ext_by: Vec<Vec<(u64, Option<String>)>> = vec![Vec::new(); run.len()];
        // The walk spans every page any row of the run mentions, so nothing
        // it holds falls outside and no range asked of it later can.
        let mut end = 1u64;
        for (layer, page, seq, hole) in dirty {
            if let Some(&d) = depth.get(&layer) {
                end = end.max(page.saturating_add(1));
                dirty_by[d].push((page, seq, (!hole).then(Bytes::new)));
            }
        }
        let ppe = ppe.max(1);
        for (layer, idx, key) in extents {
            if let Some(&d) = depth.get(&layer) {
                end = end.max(idx.saturating_add(1).saturating_mul(ppe));
                ext_by[d].push((idx, key));
            }
        }
        let by_layer: std::collections::HashMap<LayerId, &FileRow> =
            rows.iter().map(|r| (r.layer, r)).collect();
        let mut w = Walk::new(0, end, ppe);
        for (d, (dirty, extents)) in dirty_by.into_iter().zip(ext_by).enumerate() {
            w.layer(by_layer.get(&run[d]).copied(), dirty, extents);
        }
        Self {
            top: top_of(run, rows).cloned(),
            dirty: w
                .dirty
                .into_iter()
                .map(|(p, (d, seq, data))| (p, (run[d], seq, data.is_none())))
                .collect(),
            extents: w.extents.into_iter().map(|(i, (_, k))| (i, k)).collect(),
        }
    }

    /// Feeds the run to `w` as one layer below those it was fed already.
    /// Dirty pages arrive unread (see [`Walk::unread`]); [`Flat::layer_of`]
    /// says where to read them.
    pub fn feed(&self, w: &mut Walk) {
        let (p0, p1) = w.page_range();
        let (e0, e1) = w.extent_range();
        w.layer(
            None,
            self.dirty
                .range(p0..=p1)
                .map(|(&p, &(_, seq, hole))| (p, seq, (!hole).then(Bytes::new))),
            self.extents.range(e0..=e1).map(|(&i, k)| (i, k.clone())),
        );
    }

    /// Feeds the run to `w` (if lower layers still matter) and says where
    /// to read the pages it left unread: `(page, layer)`.
    pub fn resolve(&self, w: &mut Walk) -> Vec<(u64, LayerId)> {
        if !w.finished() {
            self.feed(w);
        }
        w.unread()
            .into_iter()
            .filter_map(|(page, _)| self.layer_of(page).map(|l| (page, l)))
            .collect()
    }

    /// File `id` as a view shows it whose own layer holds `own` (or that
    /// is the run itself), or `NotFound`.
    pub fn file(&self, own: Option<&FileRow>, id: FileId) -> crate::Result<FileRow> {
        match own.or(self.top.as_ref()) {
            Some(r) if !r.deleted => Ok(r.clone()),
            _ => Err(crate::MetaError::not_found(format!(
                "file #{id} no longer exists"
            ))),
        }
    }

    /// Pages and extent entries held: the summary's size.
    pub fn len(&self) -> usize {
        self.dirty.len() + self.extents.len()
    }

    /// The layer holding the winning version of dirty page `page`.
    pub fn layer_of(&self, page: u64) -> Option<LayerId> {
        self.dirty.get(&page).map(|&(l, _, _)| l)
    }
}

/// [`Flat`]s by `(top frozen layer, file, pages per extent)`, all of one
/// epoch (the engine's count of rewrites of frozen rows): a newer epoch
/// empties it, and a reader still on an older snapshot keeps what it
/// builds to itself. Bounded by the pages and extents it holds.
#[derive(Debug, Default)]
pub(crate) struct FlatCache {
    epoch: i64,
    entries: usize,
    map: std::collections::HashMap<(LayerId, FileId, u64), std::sync::Arc<Flat>>,
}

/// Pages and extent entries a [`FlatCache`] holds before it starts over
/// (tens of MiB at most).
const FLAT_CACHE_ENTRIES: usize = 1 << 20;

impl FlatCache {
    /// The flat for `key` built at `epoch`, if held.
    pub fn get(&self, epoch: i64, key: (LayerId, FileId, u64)) -> Option<std::sync::Arc<Flat>> {
        (self.epoch == epoch)
            .then(|| self.map.get(&key).cloned())
            .flatten()
    }

    /// Keeps `flat`, built at `epoch`, unless the cache moved past it.
    pub fn insert(&mut self, epoch: i64, key: (LayerId, FileId, u64), flat: std::sync::Arc<Flat>) {
        if epoch > self.epoch || self.entries + flat.len() > FLAT_CACHE_ENTRIES {
            self.clear();
            self.epoch = self.epoch.max(epoch);
        }
        if self.epoch == epoch && flat.len() <= FLAT_CACHE_ENTRIES {
            self.entries += flat.len();
            self.map.insert(key, flat);
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.entries = 0;
    }

    /// A page a cached flat named was gone: a rewrite of frozen rows that
    /// did not move the epoch (a bug). Forgets everything, so the caller's
    /// layer walk serves the read; fails loudly in tests.
    pub fn stale(&mut self, id: FileId) {
        tracing::warn!(
            file_id = id,
            "stale resolved history; reading layer by layer"
        );
        debug_assert!(false, "stale resolved history of file #{id}");
        self.clear();
    }
}

/// The frozen layers of `chain` below the view's own layer (`has_head`:
/// a branch view, whose top layer is its head), if there are enough of
/// them to read through a [`Flat`].
pub(crate) fn flat_run(chain: &[LayerId], has_head: bool) -> Option<&[LayerId]> {
    let run = &chain[usize::from(has_head).min(chain.len())..];
    (run.len() > FLAT_AFTER_LAYERS).then_some(run)
}

/// Whether a [`Flat`] may stand under the view's own row `own` (see its
/// invariant): truncation always writes such rows.
pub(crate) fn flat_fits_under(own: Option<&FileRow>, ppe: u64) -> bool {
    own.is_none_or(|r| r.cuts_whole_extents(ppe))
}

/// Above this many frozen layers under a view, engines read through a
/// [`Flat`] of them; at or below it, layer by layer.
pub(crate) const FLAT_AFTER_LAYERS: usize = 8;

/// A resolved file as one layer's rows would hold it: extent entries and
/// dirty pages.
pub(crate) type FlatFile = (Vec<(u64, String)>, Vec<(u64, i64, Option<Bytes>)>);

/// Flattens a resolved whole-file walk into rows for one layer: what a
/// merge copies so that one layer shows the file exactly as the source did.
pub(crate) fn flatten(walk: Walk) -> FlatFile {
    let extents = walk
        .extents
        .into_iter()
        .filter_map(|(i, (_, k))| k.map(|k| (i, k)))
        .collect();
    let dirty = walk
        .dirty
        .into_iter()
        .map(|(p, (_, seq, data))| (p, seq, data))
        .collect();
    (extents, dirty)
}

/// Checks a branch name: 1 to 100 characters from `A-Z a-z 0-9 . _ - /`,
/// not starting with `-`, `/` or `.`, and not all digits (a commit id).
pub(crate) fn check_branch_name(name: &str) -> crate::Result<()> {
    // All digits would read as a commit id wherever a branch or commit is
    // named.
    let ok = !name.is_empty()
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name.len() <= 100
        && !name.starts_with(['-', '/', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(crate::MetaError::invalid(format!(
            "{name:?} is not a valid branch name: use 1 to 100 characters from A-Z a-z 0-9 . _ - /, \
             not starting with - / or . and not all digits (those name commits)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(layer: LayerId, cut: Option<(u64, u64)>, deleted: bool) -> FileRow {
        FileRow {
            layer,
            id: 1,
            name: "f".into(),
            page_size: 4096,
            size: 0,
            write_seq: 0,
            cut_page: cut.map(|c| c.0),
            cut_extent: cut.map(|c| c.1),
            deleted,
            created_ms: 0,
            modified_ms: 0,
        }
    }

    fn b(x: u8) -> Option<Bytes> {
        Some(Bytes::from(vec![x]))
    }

    #[test]
    fn upper_extent_hides_lower_dirty_and_dirty_overrides_same_layer_extent() {
        let mut w = Walk::new(0, 8, 4);
        // top: extent 0 = k2, dirty page 1
        w.layer(None, [(1, 5, b(9))], [(0, Some("k2".to_string()))]);
        // lower: dirty pages 0 and 5, extent 1 = k1
        w.layer(
            None,
            [(0, 1, b(1)), (5, 1, b(5))],
            [(1, Some("k1".to_string()))],
        );
        let m = w.read_map(8 * 4096);
        assert_eq!(
            m.dirty.iter().map(|p| p.page_no).collect::<Vec<_>>(),
            vec![1, 5]
        );
        assert_eq!(
            m.extents,
            vec![(0, "k2".to_string()), (1, "k1".to_string())]
        );
    }

    #[test]
    fn cuts_and_deletion_hide_lower_rows() {
        let mut w = Walk::new(0, 12, 4);
        w.layer(Some(&row(3, Some((6, 2)), false)), [(7, 1, b(7))], []);
        w.layer(
            None,
            [(5, 1, b(5)), (6, 1, b(6)), (9, 1, b(9))],
            [(0, Some("a".into())), (2, Some("c".into()))],
        );
        let m = w.read_map(0);
        assert_eq!(
            m.dirty.iter().map(|p| p.page_no).collect::<Vec<_>>(),
            vec![5, 7]
        );
        assert_eq!(m.extents, vec![(0, "a".to_string())]);

        let mut w = Walk::new(0, 4, 4);
        w.layer(Some(&row(3, None, true)), [], []);
        assert!(w.finished());
        w.layer(None, [(0, 1, b(1))], [(0, Some("a".into()))]);
        assert_eq!(w.read_map(0), ReadMap::default());
    }

    #[test]
    fn tombstones_hide_and_inherited_pages_are_marked() {
        let mut w = Walk::new(4, 4, 4);
        w.layer(None, [(5, 2, b(2))], []);
        w.layer(None, [(6, 1, b(1))], []);
        w.layer(None, [], [(1, None)]);
        assert!(w.finished());
        let (key, pages) = w.dirty_extent();
        assert_eq!(key, None);
        assert_eq!(
            pages
                .iter()
                .map(|p| (p.page_no, p.inherited))
                .collect::<Vec<_>>(),
            vec![(5, false), (6, true)]
        );
    }

    /// One layer of a random history: an optional file row `(cut_page,
    /// cut_extent, deleted)`, dirty pages `(page, hole)`, extent entries
    /// `(index, tombstone)`.
    type RandomLayer = (
        Option<(Option<u64>, Option<u64>, bool)>,
        Vec<(u64, bool)>,
        Vec<(u64, bool)>,
    );

    fn random_layer() -> impl proptest::strategy::Strategy<Value = RandomLayer> {
        (
            proptest::option::of((
                proptest::option::of(0u64..40),
                proptest::option::of(0u64..3),
                proptest::bool::weighted(0.1),
            )),
            proptest::collection::vec((0u64..40, proptest::bool::weighted(0.2)), 0..8),
            proptest::collection::vec((0u64..10, proptest::bool::weighted(0.2)), 0..3),
        )
    }

    proptest::proptest! {
        /// A `Flat` standing in for the lower layers of a chain resolves
        /// every range as those layers do one by one.
        #[test]
        fn flat_resolves_like_its_layers(
            layers in proptest::collection::vec(random_layer(), 1..10),
            split in 0usize..10,
            first in 0u64..44,
            count in 1u64..44,
        ) {
            const PPE: u64 = 4;
            // Layer ids grow downwards here; only their order matters.
            let chain: Vec<LayerId> = (0..layers.len() as LayerId).map(|l| 100 - l).collect();
            let split = split.min(layers.len());
            let bytes = |layer: LayerId, page: u64| Bytes::from(format!("{layer}:{page}"));
            let mut rows = Vec::new();
            let mut dirty = Vec::new();
            let mut extents = Vec::new();
            for (&l, (file, pages, exts)) in chain.iter().zip(&layers) {
                if let Some((cp, ce, deleted)) = *file {
                    let mut r = row(l, None, deleted);
                    // As truncation writes them: the extent cut at or past
                    // the first extent wholly past the page cut.
                    r.cut_page = cp;
                    r.cut_extent = cp.map(|p| p.div_ceil(PPE) + ce.unwrap_or(0));
                    rows.push(r);
                }
                for &(p, hole) in pages {
                    if !dirty.iter().any(|&(dl, dp, _, _)| dl == l && dp == p) {
                        dirty.push((l, p, 1, hole));
                    }
                }
                for &(i, tomb) in exts {
                    if !extents.iter().any(|(el, ei, _): &(LayerId, u64, Option<String>)| *el == l && *ei == i) {
                        extents.push((l, i, (!tomb).then(|| format!("k{l}.{i}"))));
                    }
                }
            }
            let feed = |w: &mut Walk, l: LayerId| {
                let file = rows.iter().find(|r| r.layer == l);
                w.layer(
                    file,
                    dirty.iter().filter(|d| d.0 == l).map(|&(_, p, seq, hole)| {
                        (p, seq, (!hole).then(|| bytes(l, p)))
                    }),
                    extents.iter().filter(|e| e.0 == l).map(|(_, i, k)| (*i, k.clone())),
                );
            };
            proptest::prop_assert!(rows.iter().all(|r| r.cuts_whole_extents(PPE)));
            let mut whole = Walk::new(first, count, PPE);
            for &l in &chain {
                feed(&mut whole, l);
            }
            let flat = Flat::build(&chain[split..], &rows, dirty.clone(), extents.clone(), PPE);
            let mut split_walk = Walk::new(first, count, PPE);
            for &l in &chain[..split] {
                feed(&mut split_walk, l);
            }
            flat.feed(&mut split_walk);
            let depth = split_walk.depth;
            for (page, d) in split_walk.unread() {
                proptest::prop_assert_eq!(d, depth - 1, "only the flat's pages are unread");
                let layer = flat.layer_of(page).expect("an unread page has a layer");
                split_walk.fill(page, bytes(layer, page));
            }
            proptest::prop_assert_eq!(split_walk.read_map(0), whole.read_map(0));
            proptest::prop_assert_eq!(
                flat.top.as_ref().map(|r| r.layer),
                top_of(&chain[split..], &rows).map(|r| r.layer)
            );
        }
    }

    #[test]
    fn topmost_row_decides_what_is_visible() {
        let mut a = row(1, None, false);
        a.name = "old".into();
        let mut b2 = row(2, None, false);
        b2.name = "new".into();
        let files = visible_files(&[2, 1], vec![a.clone(), b2]);
        assert_eq!(
            files.values().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        assert!(visible_files(&[2, 1], vec![a.clone(), row(2, None, true)]).is_empty());
        let files = visible_files(&[1], vec![a, row(2, None, true)]);
        assert_eq!(
            files.values().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["old"]
        );
    }

    #[test]
    fn branch_names() {
        for ok in ["main", "dev", "feature/x-1", "v1.2_a"] {
            assert!(check_branch_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "/x", ".x", "a b", "a;b", "123", &"x".repeat(101)] {
            assert!(check_branch_name(bad).is_err(), "{bad}");
        }
    }
}
