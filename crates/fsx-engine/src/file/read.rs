//! The read path of a [`File`]: where each page comes from, the handle's
//! snapshot of the page map, and readahead.
//!
//! # One map query for many reads
//!
//! A handle whose file cannot change under it — a writer (its lease makes
//! it the only one) or a commit (frozen) — keeps what it learnt of the page
//! map, by extent: the extent's content key and its dirty pages. Later
//! reads of the same extent need no metadata query: a page is a dirty
//! page's bytes, a slice of the verified extent blob in the volume's
//! process-wide cache ([`crate::cache::ExtentCache`]), or a hole. A writer
//! applies its own syncs to the snapshot and forgets an extent it packs.
//! A reader of a branch may see other writers' syncs at any read, so it
//! keeps no snapshot.
//!
//! The snapshot holds keys and dirty pages, never extent bytes: memory is
//! bounded by [`SNAPSHOT_PAGES`] dirty pages and [`SNAPSHOT_EXTENTS`]
//! entries, and extent bytes by the cache's byte budget.
//!
//! # Readahead
//!
//! A read that starts where the previous one ended is sequential. When a
//! sequential read has to go to the metadata or the store, it also maps and
//! loads the next [`crate::VolumeOptions::readahead_extents`] extents, with
//! [`crate::VolumeOptions::extents_in_flight`] loads at once, into the
//! cache: the following reads are served from memory, and a store with
//! latency (S3) is read with several requests in flight. The engine has no
//! runtime of its own, so readahead happens inside the read that triggers
//! it, never in the background.
//!
//! # Invariant
//!
//! A key in the snapshot was in the map when read or was installed by this
//! writer; it names content that was verified when loaded. If another
//! process frees it after a pack (a commit's dirty pages packed elsewhere),
//! the load fails as missing: the read then forgets the snapshot and
//! resolves again from the metadata, once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};

use bytes::Bytes;
use fsx_format::Extent;
use fsx_meta::{PageWrite, View};
use futures_util::stream::{self, StreamExt};

use super::File;
use crate::error::{ErrorKind, Result};

/// Most extents a snapshot maps (8 GiB of a file in 2 MiB extents).
pub(super) const SNAPSHOT_EXTENTS: usize = 4096;
/// Most dirty pages a snapshot holds (32 MiB of 4 KiB pages); past either
/// bound it starts over.
pub(super) const SNAPSHOT_PAGES: usize = 8192;

/// What the metadata says about one extent's pages.
#[derive(Debug, Clone, Default)]
pub(super) struct ExtentMap {
    key: Option<String>,
    dirty: BTreeMap<u64, Option<Bytes>>,
}

/// A stable handle's snapshot of the page map, by extent index.
#[derive(Debug, Default)]
pub(super) struct MapSnapshot {
    extents: HashMap<u64, ExtentMap>,
    pages: usize,
}

impl MapSnapshot {
    fn insert(&mut self, idx: u64, map: ExtentMap) {
        if self.extents.len() >= SNAPSHOT_EXTENTS || self.pages + map.dirty.len() > SNAPSHOT_PAGES {
            self.clear();
        }
        self.pages += map.dirty.len();
        if let Some(old) = self.extents.insert(idx, map) {
            self.pages -= old.dirty.len();
        }
    }

    fn remove(&mut self, idx: u64) {
        if let Some(old) = self.extents.remove(&idx) {
            self.pages -= old.dirty.len();
        }
    }

    pub(super) fn clear(&mut self) {
        self.extents.clear();
        self.pages = 0;
    }

    /// Applies a writer's committed batch: what the metadata now holds for
    /// each extent the snapshot maps. Extents past a cut are gone; pages
    /// written become dirty pages that shadow the extent below them.
    pub(super) fn apply_commit(&mut self, ppe: u64, pages: &[PageWrite], cut: Option<u64>) {
        if let Some(cut) = cut {
            let keep = cut.div_ceil(ppe);
            let gone: Vec<u64> = self
                .extents
                .keys()
                .copied()
                .filter(|&i| i >= keep)
                .collect();
            for idx in gone {
                self.remove(idx);
            }
            if let Some(m) = self.extents.get_mut(&(cut / ppe)) {
                let dropped = m.dirty.split_off(&cut).len();
                self.pages -= dropped;
            }
        }
        for p in pages {
            if let Some(m) = self.extents.get_mut(&(p.page_no / ppe))
                && m.dirty.insert(p.page_no, p.data.clone()).is_none()
            {
                self.pages += 1;
            }
        }
        if self.pages > SNAPSHOT_PAGES {
            self.clear();
        }
    }

    /// Forgets extent `idx` (its pages moved: a pack, a direct install).
    pub(super) fn forget(&mut self, idx: u64) {
        self.remove(idx);
    }
}

/// Where one requested page comes from.
enum Source {
    Zero,
    Bytes(Bytes),
    Extent(String),
}

impl File {
    /// Whether nothing but this handle can change what it reads, so its
    /// map snapshot stays true (see the module docs).
    fn stable(&self) -> bool {
        self.writer.is_some() || matches!(self.view, View::Commit(_))
    }

    pub(super) fn snapshot(&self) -> MutexGuard<'_, MapSnapshot> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pages served from memory alone — the writer's buffer, its cut, the
    /// snapshot and the extent cache — or `None` if any needs a query or a
    /// load.
    pub(super) fn pages_from_memory(&self, first: u64, count: u64) -> Option<Vec<Option<Bytes>>> {
        if !self.stable() {
            return None;
        }
        let snap = self.snapshot();
        let mut blobs: HashMap<&str, Bytes> = HashMap::new();
        let mut out = Vec::with_capacity(count as usize);
        for p in first..first + count {
            if let Some(w) = &self.writer {
                if let Some(b) = w.buffer.get(&p) {
                    out.push(b.clone());
                    continue;
                }
                if w.cut_from.is_some_and(|c| p >= c) {
                    out.push(None);
                    continue;
                }
            }
            let m = snap.extents.get(&(p / self.ppe))?;
            if let Some(d) = m.dirty.get(&p) {
                out.push(d.clone());
                continue;
            }
            let Some(key) = m.key.as_deref() else {
                out.push(None);
                continue;
            };
            let blob = match blobs.get(key) {
                Some(b) => b.clone(),
                None => {
                    let b = self.shared.cache.get(key)?;
                    blobs.insert(key, b.clone());
                    b
                }
            };
            out.push(page_of(&blob, (p % self.ppe) as u32).ok()?);
        }
        self.next_page.store(first + count, Ordering::Relaxed);
        Some(out)
    }

    /// Pages from the metadata and the store (see the module docs).
    pub(super) async fn pages_from_storage(
        &self,
        first: u64,
        count: u64,
    ) -> Result<Vec<Option<Bytes>>> {
        let sequential = self.next_page.swap(first + count, Ordering::Relaxed) == first;
        match self.resolve(first, count, sequential, true).await {
            Err(e) if e.kind() == ErrorKind::Corrupt && self.stable() => {
                // A key the snapshot kept may have been packed away and
                // freed since: resolve from the metadata before failing.
                self.snapshot().clear();
                self.resolve(first, count, sequential, false).await
            }
            other => other,
        }
    }

    async fn resolve(
        &self,
        first: u64,
        count: u64,
        sequential: bool,
        use_snapshot: bool,
    ) -> Result<Vec<Option<Bytes>>> {
        let s = &self.shared;
        let ppe = self.ppe;
        let first_idx = first / ppe;
        let last_idx = (first + count - 1) / ppe;
        let stable = self.stable();

        // The map of every extent the request touches, and of the next few
        // when reading sequentially.
        let extents_in_file = self.size.div_ceil(self.ps()).div_ceil(ppe);
        let ahead_end = if sequential {
            (last_idx + 1 + s.options.readahead_extents as u64)
                .min(extents_in_file)
                .max(last_idx + 1)
        } else {
            last_idx + 1
        };
        let mut maps: BTreeMap<u64, ExtentMap> = BTreeMap::new();
        if stable && use_snapshot {
            let snap = self.snapshot();
            for idx in first_idx..ahead_end {
                if let Some(m) = snap.extents.get(&idx) {
                    maps.insert(idx, m.clone());
                }
            }
        }
        if let Some(from) = (first_idx..=last_idx).find(|i| !maps.contains_key(i)) {
            // A stable handle maps whole extents (its snapshot describes
            // them whole); a branch reader asks for just its pages, and
            // the readahead extents' keys.
            let (q_first, q_end) = if stable {
                (from * ppe, ahead_end * ppe)
            } else if sequential {
                (first, (first + count).max(ahead_end * ppe))
            } else {
                (first, first + count)
            };
            let map = s
                .meta
                .read_map(self.view, self.meta.id, q_first, q_end - q_first, ppe)
                .await?;
            let mut fresh: BTreeMap<u64, ExtentMap> = (q_first / ppe..q_end.div_ceil(ppe))
                .filter(|i| !maps.contains_key(i))
                .map(|i| (i, ExtentMap::default()))
                .collect();
            for (idx, key) in map.extents {
                if let Some(m) = fresh.get_mut(&idx) {
                    m.key = Some(key);
                }
            }
            for p in map.dirty {
                if let Some(m) = fresh.get_mut(&(p.page_no / ppe)) {
                    m.dirty.insert(p.page_no, p.data);
                }
            }
            if stable {
                let mut snap = self.snapshot();
                for (&idx, m) in &fresh {
                    snap.insert(idx, m.clone());
                }
            }
            maps.extend(fresh);
        }

        // Where each requested page comes from.
        let mut sources = Vec::with_capacity(count as usize);
        let mut stored = 0u64;
        for page_no in first..first + count {
            if let Some(w) = &self.writer {
                if let Some(p) = w.buffer.get(&page_no) {
                    sources.push(p.clone().map_or(Source::Zero, Source::Bytes));
                    continue;
                }
                if w.cut_from.is_some_and(|c| page_no >= c) {
                    sources.push(Source::Zero);
                    continue;
                }
            }
            let m = maps.get(&(page_no / ppe));
            if let Some(d) = m.and_then(|m| m.dirty.get(&page_no)) {
                stored += u64::from(d.is_some());
                sources.push(d.clone().map_or(Source::Zero, Source::Bytes));
                continue;
            }
            match m.and_then(|m| m.key.clone()) {
                None => sources.push(Source::Zero),
                Some(key) => {
                    stored += 1;
                    // A single page of an extent that only a range-capable
                    // cold tier holds, read on its own: just that page,
                    // verified by its digest.
                    if count == 1
                        && !sequential
                        && let Some(t) = &s.tiered
                        && !s.cache.contains(&key)
                        && let Some(page) = t
                            .read_page(&key, (page_no % ppe) as u32, self.meta.page_size)
                            .await?
                    {
                        sources.push(page.map_or(Source::Zero, Source::Bytes));
                        continue;
                    }
                    sources.push(Source::Extent(key));
                }
            }
        }
        s.page_reads.fetch_add(stored, Ordering::Relaxed);

        // The extents to load: those the pages need, and when reading
        // sequentially, the readahead ones; several at a time.
        let mut blobs: HashMap<String, Bytes> = HashMap::new();
        let mut to_load: Vec<(bool, String)> = Vec::new();
        for src in &sources {
            if let Source::Extent(k) = src
                && !blobs.contains_key(k)
                && !to_load.iter().any(|(_, l)| l == k)
            {
                match s.cache.get(k) {
                    Some(b) => {
                        blobs.insert(k.clone(), b);
                    }
                    None => to_load.push((true, k.clone())),
                }
            }
        }
        // Only when a needed extent must be loaded: the readahead then
        // goes out with it, several at once, and the next loads wait until
        // the run passes the extents it brought.
        if sequential && !to_load.is_empty() {
            for idx in last_idx + 1..ahead_end {
                if let Some(k) = maps.get(&idx).and_then(|m| m.key.clone())
                    && !s.cache.contains(&k)
                    && !to_load.iter().any(|(_, l)| *l == k)
                {
                    to_load.push((false, k));
                }
            }
        }
        let name = &self.meta.name;
        let loaded: Vec<(bool, String, Result<Bytes>)> = stream::iter(to_load)
            .map(|(need, k)| async move {
                let r = super::load_extent(s, &k, name).await;
                (need, k, r)
            })
            .buffer_unordered(s.options.extents_in_flight.max(1))
            .collect()
            .await;
        for (need, k, r) in loaded {
            match r {
                Ok(b) if need => {
                    blobs.insert(k, b);
                }
                Ok(_) => {}
                Err(e) if need => return Err(e),
                // A readahead load that fails costs nothing now: the read
                // that needs that extent will load it and report.
                Err(e) => tracing::debug!(file = %name, key = %k, error = %e, "readahead failed"),
            }
        }

        let mut out = Vec::with_capacity(sources.len());
        for (i, src) in sources.into_iter().enumerate() {
            let page_no = first + i as u64;
            out.push(match src {
                Source::Zero => None,
                Source::Bytes(b) => Some(b),
                Source::Extent(k) => {
                    let blob = blobs.get(&k).ok_or_else(|| {
                        crate::Error::corrupt(format!("extent {k} of {name:?} was not loaded"))
                    })?;
                    page_of(blob, (page_no % ppe) as u32)?
                }
            });
        }
        Ok(out)
    }
}

impl File {
    /// `lseek`'s `SEEK_DATA` / `SEEK_HOLE` from `offset`, as this handle
    /// sees the file (a writer's own unsynced writes and cuts included):
    /// `None` where `lseek` fails with `ENXIO`. A page is data when a write
    /// put bytes in it — a dirty page, or a page present in its extent —
    /// and a hole otherwise; the end of the file counts as a hole. Asks the
    /// metadata about one extent at a time (its snapshot for a stable
    /// handle), reading extents' present-page bitmaps through the cache.
    pub async fn seek(&self, offset: u64, whence: crate::sparse::Seek) -> Result<Option<u64>> {
        use crate::sparse::Seek;
        let size = self.size;
        if offset >= size {
            return Ok(None);
        }
        if self.local.is_some() {
            // A local journal is a plain file with no holes of its own.
            return Ok(Some(match whence {
                Seek::Data => offset,
                Seek::Hole => size,
            }));
        }
        let ps = self.ps();
        let ppe = self.ppe;
        let pages = size.div_ceil(ps);
        let mut idx = offset / ps / ppe;
        while idx * ppe < pages {
            let present = self.present_pages(idx).await?;
            let from = (idx * ppe).max(offset / ps);
            let to = ((idx + 1) * ppe).min(pages);
            for page in from..to {
                if present[(page - idx * ppe) as usize] == (whence == Seek::Data) {
                    return Ok(Some((page * ps).max(offset)));
                }
            }
            idx += 1;
        }
        Ok(match whence {
            Seek::Data => None,
            Seek::Hole => Some(size),
        })
    }

    /// Which pages of extent `idx` hold data, as this handle sees them.
    async fn present_pages(&self, idx: u64) -> Result<Vec<bool>> {
        match self.present_pages_once(idx, true).await {
            Err(e) if e.kind() == ErrorKind::Corrupt && self.stable() => {
                // As for reads: a key the snapshot kept may have been
                // packed away and freed since; ask the metadata again.
                self.snapshot().clear();
                self.present_pages_once(idx, false).await
            }
            other => other,
        }
    }

    async fn present_pages_once(&self, idx: u64, use_snapshot: bool) -> Result<Vec<bool>> {
        let ppe = self.ppe;
        let first = idx * ppe;
        let map = match (use_snapshot && self.stable())
            .then(|| self.snapshot().extents.get(&idx).cloned())
        {
            Some(Some(m)) => m,
            _ => {
                let read = self
                    .shared
                    .meta
                    .read_map(self.view, self.meta.id, first, ppe, ppe)
                    .await?;
                ExtentMap {
                    key: read
                        .extents
                        .into_iter()
                        .find(|(i, _)| *i == idx)
                        .map(|(_, k)| k),
                    dirty: read
                        .dirty
                        .into_iter()
                        .map(|p| (p.page_no, p.data))
                        .collect(),
                }
            }
        };
        let mut present = vec![false; ppe as usize];
        if let Some(key) = &map.key {
            let blob = super::load_extent(&self.shared, key, &self.meta.name).await?;
            for i in Extent::decode_trusted(&blob)?.present_pages() {
                if let Some(p) = present.get_mut(i as usize) {
                    *p = true;
                }
            }
        }
        for (&page, data) in &map.dirty {
            present[(page - first) as usize] = data.is_some();
        }
        if let Some(w) = &self.writer {
            for (page, slot) in (first..first + ppe).zip(present.iter_mut()) {
                if let Some(b) = w.buffer.get(&page) {
                    *slot = b.is_some();
                } else if w.cut_from.is_some_and(|c| page >= c) {
                    *slot = false;
                }
            }
        }
        Ok(present)
    }
}

/// Page `within` of a verified, raw extent blob, as a slice of it.
fn page_of(blob: &Bytes, within: u32) -> Result<Option<Bytes>> {
    let extent = Extent::decode_trusted(blob)?;
    Ok(extent.page(within).map(|p| blob.slice_ref(p)))
}
