//! A file of pages: reads, buffered writes, `sync`, truncate, and packing.
//!
//! # Where a page is
//!
//! Newest first: the writer's unsynced buffer (only in the writing handle);
//! the durable dirty-page buffer in the metadata; the extent the page map
//! names; otherwise a hole, which reads as zeros.
//!
//! # Durability
//!
//! `write_at` changes the handle's buffer — and, once the buffer passes
//! `max_buffer_bytes`, syncs it on its own at the end of that write, so
//! unacknowledged writes may already be durable after a crash, whole
//! writes at a time (never part of one `write_at`). `sync` commits the buffer,
//! the size, and any truncation as one metadata transaction: once it returns,
//! the writes survive a crash. Packing moves dirty pages into extents later;
//! it changes where pages are, never what they read as, and is atomic in the
//! metadata, so a crash during packing loses nothing.
//!
//! # Truncation
//!
//! Shrinking records the lowest page cut since the last sync. Until then the
//! handle reads pages at or past it as zeros unless rewritten; at sync the
//! batch drops durable dirty pages and whole extents past the cut and writes
//! holes over the pages of a partly cut extent, so a later growth reads
//! zeros there too.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use fsx_format::{Extent, content_key, encode, encode_into};
use fsx_meta::{
    BranchId, ExtentWrite, FileMeta, LeaseRequest, PackCommit, PageWrite, View, WriteBatch,
};
use fsx_store::BoxFuture;
use fsx_store::ObjectKey;
use futures_util::FutureExt;
use futures_util::future::MaybeDone;
use futures_util::stream::{self, StreamExt};

use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JournalDir, JournalFile, io_error as journal_err};
use crate::volume::Shared;

mod read;

/// Bytes a journal is copied by, into or out of the page store.
const JOURNAL_CHUNK: usize = 1 << 20;

/// How often packing retries after losing an optimistic race.
const PACK_ATTEMPTS: usize = 3;

struct Writer {
    holder: String,
    buffer: BTreeMap<u64, Option<Bytes>>,
    buffered_bytes: usize,
    cut_from: Option<u64>,
    synced_size: u64,
    /// When the lease was last taken or renewed. A sync renews it through
    /// the metadata anyway, except a journal's (see [`File::commit`]).
    renewed_ms: i64,
    /// Extents the buffer fills whole, on their way into the store while
    /// the writer goes on writing: encoded and hashed on compute threads,
    /// then pinned and uploaded, `extents_in_flight` at a time; the next
    /// sync waits for them and installs them. A write into one or a cut
    /// drops its entry (what it stored is then garbage GC frees). In a
    /// mutex only so that a handle can be shared between threads: it is
    /// reached through `&mut self` (`Mutex::get_mut`), never locked.
    staged: std::sync::Mutex<BTreeMap<u64, Staged>>,
}

impl Writer {
    fn staged(&mut self) -> &mut BTreeMap<u64, Staged> {
        self.staged
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An extent staged for the next sync (see [`Writer::staged`]).
enum Staged {
    /// Being encoded and hashed on a compute thread.
    Encoding(EncodeJob),
    /// Pinned; its upload under way, or waiting for a slot. The upload
    /// holds no metadata transaction, so it may wait between polls.
    Storing {
        key: String,
        upload: MaybeDone<BoxFuture<'static, Result<()>>>,
        started: bool,
    },
    /// Failed: the sync puts its pages in the dirty buffer instead.
    Failed(Error),
}

/// An encoded extent and its content key.
type Encoded = (Bytes, String);

/// An extent being encoded on a compute thread.
type EncodeJob = futures_channel::oneshot::Receiver<Result<Encoded>>;

/// An open file. Reading needs `&self`; writing needs `&mut self` and a
/// handle opened for writing.
pub struct File {
    shared: Arc<Shared>,
    /// What this handle reads: a branch (writable with a lease) or a commit.
    view: View,
    meta: FileMeta,
    ppe: u64,
    size: u64,
    writer: Option<Writer>,
    /// Extents written since the last pack: the only ones a sync can have
    /// filled.
    touched_extents: std::collections::BTreeSet<u64>,
    /// Pack full extents after each `sync` (see
    /// [`crate::OpenOptions::pack_on_sync`]).
    pack_on_sync: bool,
    /// The local journal holding this file's bytes, when there is one (see
    /// [`crate::journal`]): a writer's own, or one a reader found.
    local: Option<Local>,
    /// What this handle knows of the page map (see [`read`]).
    snapshot: std::sync::Mutex<read::MapSnapshot>,
    /// The page after the last one read: a read starting there is
    /// sequential and reads ahead.
    next_page: std::sync::atomic::AtomicU64,
}

/// An extent a sync stored itself, and the pages it holds.
struct DirectExtent {
    write: ExtentWrite,
    pages: Vec<PageWrite>,
}

/// A local journal a handle reads, or writes in place of the page store.
struct Local {
    file: Box<dyn JournalFile>,
    name: String,
    dir: Arc<dyn JournalDir>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "File({:?}, {} bytes, {})",
            self.meta.name,
            self.size,
            if self.writer.is_some() { "rw" } else { "ro" }
        )
    }
}

impl File {
    pub(crate) fn new(
        shared: Arc<Shared>,
        view: View,
        meta: FileMeta,
        holder: Option<String>,
        pack_on_sync: bool,
    ) -> Self {
        let ppe = u64::from(shared.config.extent_size / meta.page_size).max(1);
        let size = meta.size;
        let writer = holder.map(|holder| Writer {
            holder,
            buffer: BTreeMap::new(),
            buffered_bytes: 0,
            cut_from: None,
            synced_size: size,
            renewed_ms: shared.env.now_ms(),
            staged: Default::default(),
        });
        Self {
            shared,
            view,
            meta,
            ppe,
            size,
            writer,
            touched_extents: Default::default(),
            pack_on_sync,
            local: None,
            snapshot: Default::default(),
            next_page: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// The file's name when opened.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// The file's id.
    pub(crate) fn meta_id(&self) -> fsx_meta::FileId {
        self.meta.id
    }

    /// Bytes per page.
    pub fn page_size(&self) -> u32 {
        self.meta.page_size
    }

    /// Size in bytes as this handle sees it: its own writes included for a
    /// writer; as of opening or the last [`File::refresh`] for a reader.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file's bytes are in a local journal (see
    /// [`crate::journal`]) for this handle.
    pub fn has_journal(&self) -> bool {
        self.local.is_some()
    }

    /// Whether this handle holds the write lease.
    pub fn is_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// Unsynced bytes in this handle's buffer.
    pub fn unsynced_bytes(&self) -> usize {
        self.writer.as_ref().map_or(0, |w| w.buffered_bytes)
    }

    fn ps(&self) -> u64 {
        u64::from(self.meta.page_size)
    }

    fn writer_mut(&mut self) -> Result<&mut Writer> {
        let name = self.meta.name.clone();
        self.writer.as_mut().ok_or_else(|| {
            Error::invalid(format!(
                "{name:?} is open read-only; open it for writing to change it"
            ))
        })
    }

    fn lease(&self, w: &Writer) -> LeaseRequest {
        // A writer always has a branch view (see `Volume::open_file`).
        let branch = match self.view {
            View::Branch(b) => b,
            View::Commit(_) => fsx_meta::MAIN_BRANCH,
        };
        LeaseRequest::new(
            self.meta.id,
            w.holder.clone(),
            self.shared.env.now_ms(),
            self.shared.options.lease_ttl_ms,
        )
        .on_branch(branch)
    }

    /// The lease a pack commits under: the writer's; for a commit, whose
    /// layer is frozen and needs none, a placeholder the engine ignores.
    fn pack_lease(&self) -> Result<LeaseRequest> {
        match (&self.writer, self.view) {
            (Some(w), _) => Ok(self.lease(w)),
            (None, View::Commit(_)) => Ok(LeaseRequest::new(
                self.meta.id,
                "fsx-pack-commit",
                self.shared.env.now_ms(),
                self.shared.options.lease_ttl_ms,
            )),
            (None, View::Branch(_)) => Err(Error::invalid(format!(
                "{:?} is open read-only: packing needs the write lease",
                self.meta.name
            ))),
        }
    }

    /// Packs every extent with dirty pages of this handle's own layer. On a
    /// commit this moves the dirty pages it froze into extents (what it
    /// shows is unchanged), so a retained commit does not keep them in the
    /// metadata engine for ever.
    pub async fn pack_dirty(&mut self) -> Result<()> {
        self.pack(false).await
    }

    /// The branch this handle writes to; commits are read-only.
    fn branch(&self) -> Result<BranchId> {
        match self.view {
            View::Branch(b) => Ok(b),
            View::Commit(c) => Err(crate::volume::read_only(c)),
        }
    }

    /// What this handle reads.
    pub fn view(&self) -> View {
        self.view
    }

    /// Re-reads the size from the metadata (readers see other writers'
    /// synced changes; a writer's own size is always current).
    pub async fn refresh(&mut self) -> Result<()> {
        if let Some(l) = &self.local {
            if self.writer.is_none() {
                self.size = l.file.size().map_err(|e| journal_err(&l.name, "read", e))?;
            }
            return Ok(());
        }
        if self.writer.is_none() {
            self.size = self
                .shared
                .meta
                .file(self.view, &self.meta.name)
                .await?
                .size;
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `offset`; shorter at the end of the file.
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        if let Some(l) = &self.local {
            return l.read(offset, end);
        }
        let first = offset / self.ps();
        let pages = self.pages(first, (end - 1) / self.ps() - first + 1).await?;
        let mut out = Vec::with_capacity((end - offset) as usize);
        for (i, page) in pages.iter().enumerate() {
            let (from, to) = self.wanted(first + i as u64, offset, end);
            match page {
                Some(p) => out.extend_from_slice(p.get(from..to).unwrap_or_default()),
                None => out.resize(out.len() + (to - from), 0),
            }
        }
        Ok(out)
    }

    /// The part `[from, to)` of page `page_no` that a read of bytes
    /// `[offset, end)` covers.
    fn wanted(&self, page_no: u64, offset: u64, end: u64) -> (usize, usize) {
        let ps = self.ps();
        let page_start = page_no * ps;
        let from = offset.saturating_sub(page_start) as usize;
        (from, (end - page_start).min(ps) as usize)
    }

    /// Like [`File::read_at`], but the bytes come as pieces, in order,
    /// that share memory with the extent cache rather than copies: a bulk
    /// copy out writes them as they are.
    pub async fn read_bytes_at(&self, offset: u64, len: usize) -> Result<Vec<Bytes>> {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        if let Some(l) = &self.local {
            return Ok(vec![Bytes::from(l.read(offset, end)?)]);
        }
        let first = offset / self.ps();
        let pages = self.pages(first, (end - 1) / self.ps() - first + 1).await?;
        let mut out = Vec::with_capacity(pages.len());
        for (i, page) in pages.iter().enumerate() {
            let (from, to) = self.wanted(first + i as u64, offset, end);
            out.push(match page {
                Some(p) if p.get(from..to).is_some() => p.slice(from..to),
                Some(_) => Bytes::new(),
                None => zeros(to - from),
            });
        }
        Ok(out)
    }

    /// Reads page `page_no` whole (zeros for a hole or past the end).
    pub async fn read_page(&self, page_no: u64) -> Result<Bytes> {
        let p = self.pages(page_no, 1).await?.pop().flatten();
        Ok(p.unwrap_or_else(|| Bytes::from(vec![0u8; self.meta.page_size as usize])))
    }

    /// Pages `[first, first + count)`: `None` for zeros.
    pub(crate) async fn pages(&self, first: u64, count: u64) -> Result<Vec<Option<Bytes>>> {
        if let Some(l) = &self.local {
            let ps = self.ps();
            let bytes = l.read(first * ps, ((first + count) * ps).min(self.size))?;
            let mut out: Vec<Option<Bytes>> = bytes
                .chunks(ps as usize)
                .map(|c| {
                    let mut page = c.to_vec();
                    page.resize(ps as usize, 0);
                    Some(Bytes::from(page))
                })
                .collect();
            out.resize(count as usize, None);
            return Ok(out);
        }
        if let Some(hit) = self.pages_from_memory(first, count) {
            return Ok(hit);
        }
        self.pages_from_storage(first, count).await
    }

    /// A verified extent blob, stored raw, from the cache or the store.
    async fn load_extent(&self, key: &str) -> Result<Bytes> {
        load_extent(&self.shared, key, &self.meta.name).await
    }

    /// Writes `data` at `offset`, growing the file if needed. Durable once
    /// [`File::sync`] returns; earlier if the buffer passes
    /// `max_buffer_bytes`, which makes this write end with a sync. The whole
    /// of `data` is buffered first: callers bound memory by writing in
    /// chunks (the CLI writes 1 MiB at a time).
    pub async fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.write(offset, data, None).await
    }

    /// Like [`File::write_at`], but the whole pages of `data` are kept as
    /// slices of it, not copied: for a caller that hands its buffer over
    /// (a bulk copy reads into a fresh buffer per chunk). Holding on to a
    /// page holds the whole of `data` until the next sync.
    pub async fn write_bytes(&mut self, offset: u64, data: Bytes) -> Result<()> {
        self.write(offset, &data, Some(&data)).await
    }

    /// `data`, and the same bytes as `owned` when the caller gave them.
    async fn write(&mut self, offset: u64, data: &[u8], owned: Option<&Bytes>) -> Result<()> {
        self.writer_mut()?;
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Error::invalid("write past the largest possible file offset"))?;
        if let Some(l) = &self.local {
            l.file
                .write_at(data, offset)
                .map_err(|e| journal_err(&l.name, "write", e))?;
            self.size = self.size.max(end);
            return Ok(());
        }
        let ps = self.ps();
        let mut pos = offset;
        while pos < end {
            let page_no = pos / ps;
            let page_start = page_no * ps;
            let in_page = (pos - page_start) as usize;
            let n = ((ps - in_page as u64).min(end - pos)) as usize;
            let at = (pos - offset) as usize;
            let src = &data[at..at + n];
            let page = if n == ps as usize {
                owned.map_or_else(|| Bytes::copy_from_slice(src), |b| b.slice(at..at + n))
            } else {
                let mut p = if page_start < self.size {
                    self.read_page(page_no).await?.to_vec()
                } else {
                    vec![0u8; ps as usize]
                };
                p[in_page..in_page + n].copy_from_slice(src);
                Bytes::from(p)
            };
            self.buffer_page(page_no, Some(page));
            pos += n as u64;
        }
        self.size = self.size.max(end);
        self.stage_filled(offset / ps, (end - 1) / ps);
        self.advance_staged().await;
        if self.unsynced_bytes() >= self.shared.options.max_buffer_bytes {
            self.sync().await?;
        }
        Ok(())
    }

    /// Writes one whole page.
    pub async fn write_page(&mut self, page_no: u64, data: &[u8]) -> Result<()> {
        if data.len() != self.meta.page_size as usize {
            return Err(Error::invalid(format!(
                "a page of {:?} is {} bytes, not {}",
                self.meta.name,
                self.meta.page_size,
                data.len()
            )));
        }
        let offset = page_no.checked_mul(self.ps()).ok_or_else(|| {
            Error::invalid(format!(
                "page {page_no} of {:?} lies past the largest possible file offset",
                self.meta.name
            ))
        })?;
        self.write_at(offset, data).await
    }

    /// Stages the extents among pages `[first, last]` that the buffer now
    /// fills whole (see [`Writer::staged`]), when the next sync will store
    /// them directly: their encoding starts on a compute thread.
    fn stage_filled(&mut self, first: u64, last: u64) {
        let ppe = self.ppe;
        let page_size = self.meta.page_size;
        let shared = self.shared.clone();
        let direct = self.pack_on_sync && self.local.is_none();
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        // A buffer smaller than an extent fills none: the common case of
        // a database's page writes costs no scan.
        if !direct || w.cut_from.is_some() || (w.buffer.len() as u64) < ppe {
            return;
        }
        for idx in first / ppe..=last / ppe {
            let start = idx * ppe;
            if w.staged().contains_key(&idx)
                || w.buffer.range(start..start + ppe).count() as u64 != ppe
            {
                continue;
            }
            let present = present_of(start, w.buffer.range(start..start + ppe));
            if present.is_empty() {
                continue;
            }
            let job = submit_encode(&shared, page_size, present);
            w.staged().insert(idx, Staged::Encoding(job));
        }
    }

    /// Moves staged extents along without waiting for them: pins those
    /// whose encoding finished (the pin is a metadata transaction, so it is
    /// awaited here, never left open), and polls uploads — those under way,
    /// and new ones while fewer than `extents_in_flight` are. An upload
    /// polled here has no waker to call back (nothing would act on it):
    /// the next write polls again, and the sync awaits it.
    async fn advance_staged(&mut self) {
        let s = self.shared.clone();
        let in_flight = s.options.extents_in_flight.max(1);
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let staged = w.staged();
        let mut busy = staged
            .values()
            .filter(|st| {
                matches!(
                    st,
                    Staged::Storing {
                        upload: MaybeDone::Future(_),
                        started: true,
                        ..
                    }
                )
            })
            .count();
        for st in staged.values_mut() {
            if let Staged::Encoding(job) = st {
                *st = match job.try_recv() {
                    Ok(None) => continue,
                    Ok(Some(Ok((blob, key)))) => match pin(&s, &key, &blob).await {
                        Ok(new) => Staged::Storing {
                            upload: MaybeDone::Future(Box::pin(upload(
                                s.clone(),
                                key.clone(),
                                blob,
                                new,
                            ))),
                            key,
                            started: false,
                        },
                        Err(e) => Staged::Failed(e),
                    },
                    Ok(Some(Err(e))) => Staged::Failed(e),
                    Err(_) => Staged::Failed(lost_job()),
                };
            }
            if let Staged::Storing {
                upload: upload @ MaybeDone::Future(_),
                started,
                ..
            } = st
                && (*started || busy < in_flight)
            {
                busy += usize::from(!*started);
                *started = true;
                if upload.now_or_never().is_some() {
                    busy -= 1;
                }
            }
        }
    }

    /// Makes extent `idx` of this file the extent stored under `key` (whole:
    /// every page of it), sharing it rather than copying its bytes — how
    /// `copy_file_range` clones. The caller read `key` from another file's
    /// map, whose entry keeps the record live meanwhile. Durable when this
    /// returns (it syncs what was buffered first, then commits the new
    /// entry); the file grows to cover the extent if it was shorter.
    pub async fn clone_extent(&mut self, idx: u64, key: &str) -> Result<()> {
        self.writer_mut()?;
        if self.local.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a file with a local journal shares no extents; copy its bytes",
            ));
        }
        self.commit().await?;
        let ppe = self.ppe;
        let first = idx
            .checked_mul(ppe)
            .ok_or_else(|| Error::invalid("an extent past the largest offset"))?;
        let end_bytes = (first + ppe)
            .checked_mul(self.ps())
            .ok_or_else(|| Error::invalid("an extent past the largest offset"))?;
        let size = self.size.max(end_bytes);
        let w = self
            .writer
            .as_ref()
            .ok_or_else(|| Error::invalid("read-only"))?;
        let batch = WriteBatch::new(self.lease(w), Vec::new(), size)
            .auto_commit(self.shared.auto_commit_ms())
            .with_extents(vec![ExtentWrite {
                extent_idx: idx,
                key: key.to_string(),
                pages: first..first + ppe,
            }]);
        self.shared.meta.commit_writes(&batch).await?;
        self.snapshot().forget(idx);
        self.touched_extents.insert(idx);
        self.size = size;
        self.writer_mut()?.synced_size = size;
        Ok(())
    }

    /// Makes bytes `[offset, offset + len)` read as zeros without changing
    /// the size (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): whole pages become
    /// holes (`SEEK_HOLE` finds them, and they take no space once
    /// packed), the partial pages at either end are zeroed. Not durable
    /// until [`File::sync`].
    pub async fn punch_hole(&mut self, offset: u64, len: u64) -> Result<()> {
        self.writer_mut()?;
        if offset >= self.size {
            return Ok(());
        }
        // A punch reaching the end of the file takes the whole last page
        // (as ext4 does): nothing past the end is data anyway.
        let reach = offset.saturating_add(len);
        let end = if reach >= self.size {
            self.size.div_ceil(self.ps()) * self.ps()
        } else {
            reach
        };
        if self.local.is_some() {
            // A local journal has no holes: zeros read the same.
            let end = end.min(self.size);
            let zeros = vec![0u8; (end - offset).min(1 << 20) as usize];
            let mut at = offset;
            while at < end {
                let n = (end - at).min(zeros.len() as u64) as usize;
                self.write_at(at, &zeros[..n]).await?;
                at += n as u64;
            }
            return Ok(());
        }
        let ps = self.ps();
        // Whole pages become holes; parts of pages are zeroed, unless the
        // page is a hole already (zeroing it would make it data).
        let mut at = offset;
        while at < end {
            let page = at / ps;
            let stop = ((page + 1) * ps).min(end);
            if at == page * ps && stop == (page + 1) * ps {
                self.buffer_page(page, None);
            } else if self.seek(page * ps, crate::sparse::Seek::Data).await? == Some(page * ps) {
                // Never past the end: zeroing must not grow the file.
                let upto = stop.min(self.size);
                if at < upto {
                    let zeros = vec![0u8; (upto - at) as usize];
                    self.write_at(at, &zeros).await?;
                }
            }
            at = stop;
        }
        if self.unsynced_bytes() >= self.shared.options.max_buffer_bytes {
            self.sync().await?;
        }
        Ok(())
    }

    fn buffer_page(&mut self, page_no: u64, data: Option<Bytes>) {
        let ppe = self.ppe;
        if let Some(w) = self.writer.as_mut() {
            w.staged().remove(&(page_no / ppe));
            let len = data.as_ref().map_or(0, Bytes::len);
            if let Some(old) = w.buffer.insert(page_no, data) {
                w.buffered_bytes -= old.map_or(0, |b| b.len());
            }
            w.buffered_bytes += len;
        }
    }

    /// Sets the size: shrinking discards the bytes past it (they read as
    /// zeros if the file grows again); growing adds zeros. Not durable until
    /// [`File::sync`].
    pub async fn truncate(&mut self, size: u64) -> Result<()> {
        self.writer_mut()?;
        if let Some(l) = &self.local {
            l.file
                .set_len(size)
                .map_err(|e| journal_err(&l.name, "truncate", e))?;
            self.size = size;
            return Ok(());
        }
        if size >= self.size {
            self.size = size;
            return Ok(());
        }
        let ps = self.ps();
        let keep_pages = size.div_ceil(ps);
        // Zero the tail of a partly kept last page, unless that page is a
        // hole, which stays one (as on ext4). (Writing it anyway once hid a
        // packer bug that lost the holes written past the cut:
        // `tests/pack_hides_lower.rs`.)
        let tail = (size % ps) as usize;
        // With a tail, at least one page is kept.
        let last_start = keep_pages.saturating_sub(1) * ps;
        let last_page = if tail != 0
            && self.seek(last_start, crate::sparse::Seek::Data).await? == Some(last_start)
        {
            let mut p = self.read_page(keep_pages - 1).await?.to_vec();
            p[tail..].fill(0);
            Some(Bytes::from(p))
        } else {
            None
        };
        let w = self.writer_mut()?;
        let dropped: usize = w
            .buffer
            .split_off(&keep_pages)
            .values()
            .map(|v| v.as_ref().map_or(0, Bytes::len))
            .sum();
        w.buffered_bytes -= dropped;
        w.cut_from = Some(w.cut_from.map_or(keep_pages, |c| c.min(keep_pages)));
        // A sync with a cut stores no extent directly.
        w.staged().clear();
        if let Some(p) = last_page {
            self.buffer_page(keep_pages - 1, Some(p));
        }
        self.size = size;
        Ok(())
    }

    /// Makes every write and truncation so far durable, in one metadata
    /// transaction; then, if the volume says so, packs extents that dirty
    /// pages fill (a packing failure is logged, not returned: the data is
    /// already durable).
    pub async fn sync(&mut self) -> Result<()> {
        self.commit().await?;
        if self.pack_on_sync
            && self.local.is_none()
            && let Err(e) = self.pack(true).await
        {
            tracing::warn!(file = %self.meta.name, error = %e, "packing after sync failed; pages stay in the dirty buffer");
        }
        Ok(())
    }

    /// The durable part of `sync`.
    async fn commit(&mut self) -> Result<()> {
        if self.local.is_some() {
            return self.commit_journal().await;
        }
        let size = self.size;
        let ppe = self.ppe;
        let w = self.writer_mut()?;
        if w.buffer.is_empty() && w.cut_from.is_none() && w.synced_size == size {
            return Ok(());
        }
        let mut pages: BTreeMap<u64, Option<Bytes>> = w.buffer.clone();
        let cut = w.cut_from;
        let staged = std::mem::take(w.staged());
        // Extents the buffer fills go straight to the store: their pages
        // never pass through the dirty buffer (see `store_full_extents`).
        let direct = if cut.is_none() && self.pack_on_sync {
            self.store_full_extents(&mut pages, staged).await?
        } else {
            Vec::new()
        };
        if let Some(cut) = cut {
            // Holes over the whole cut part of the extent that straddles the
            // cut: the extent entry stays visible below the cut (only whole
            // extents are cut), and this batch's page cut hides the holes
            // any earlier truncation wrote there. Stopping at the durable
            // size would let bytes truncated long ago show again once the
            // file grows back over them.
            let extent_end = cut.div_ceil(ppe) * ppe;
            for p in cut..extent_end {
                pages.entry(p).or_insert(None);
            }
        }
        let pages: Vec<PageWrite> = pages
            .into_iter()
            .map(|(page_no, data)| PageWrite { page_no, data })
            .collect();
        let direct_pages: Vec<PageWrite> = direct.iter().flat_map(|d| d.pages.clone()).collect();
        let mut batch = WriteBatch::new(
            self.lease(
                self.writer
                    .as_ref()
                    .ok_or_else(|| Error::invalid("read-only"))?,
            ),
            pages,
            size,
        )
        .auto_commit(self.shared.auto_commit_ms())
        .with_extents(direct.into_iter().map(|d| d.write).collect());
        if let Some(cut) = cut {
            batch = batch.shrink(cut, cut.div_ceil(ppe));
        }
        crate::failpoint::check(&*self.shared.env, crate::Failpoint::SyncBefore)?;
        self.shared.meta.commit_writes(&batch).await?;
        crate::failpoint::check(&*self.shared.env, crate::Failpoint::SyncAfter)?;
        self.touched_extents
            .extend(batch.pages.iter().map(|p| p.page_no / ppe));
        {
            let mut snap = self.snapshot();
            snap.apply_commit(ppe, &batch.pages, cut);
            for d in &direct_pages {
                snap.forget(d.page_no / ppe);
            }
        }
        self.shared.page_writes.fetch_add(
            (batch.pages.len() + direct_pages.len()) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let w = self.writer_mut()?;
        w.buffer.clear();
        w.staged().clear();
        w.buffered_bytes = 0;
        w.cut_from = None;
        w.synced_size = size;
        Ok(())
    }

    /// Takes the extents that `pages` (a writer's buffer) fills whole out of
    /// it, encodes each, pins its key and stores it unless the store holds
    /// an intact copy, as the packer does; the sync's metadata transaction
    /// then installs them (`WriteBatch::extents`). A bulk write so costs
    /// one upload per extent and a map entry, instead of its pages going
    /// into the metadata first and out again when packed. A crash before
    /// that transaction leaves pinned objects that nothing references,
    /// which GC frees.
    async fn store_full_extents(
        &self,
        pages: &mut BTreeMap<u64, Option<Bytes>>,
        mut staged: BTreeMap<u64, Staged>,
    ) -> Result<Vec<DirectExtent>> {
        let ppe = self.ppe;
        let mut full: Vec<u64> = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        for &p in pages.keys() {
            let idx = p / ppe;
            run = match run {
                Some((i, n)) if i == idx && p == idx * ppe + n => Some((i, n + 1)),
                _ if p == idx * ppe => Some((idx, 1)),
                _ => None,
            };
            if run == Some((idx, ppe)) {
                full.push(idx);
            }
        }
        let s = &self.shared;
        let mut prepared: Vec<(u64, Vec<PageWrite>)> = Vec::with_capacity(full.len());
        for idx in full {
            let first = idx * ppe;
            let taken: Vec<PageWrite> = (first..first + ppe)
                .filter_map(|p| pages.remove(&p).map(|data| PageWrite { page_no: p, data }))
                .collect();
            if taken.iter().all(|p| p.data.is_none()) {
                // All holes: the dirty buffer records them more cheaply.
                for p in taken {
                    pages.insert(p.page_no, p.data);
                }
                continue;
            }
            prepared.push((idx, taken));
        }
        // A pipeline: each extent is encoded and hashed on the
        // environment's compute threads, then pinned and uploaded, several
        // at once; most were staged while the buffer was filling.
        let page_size = self.meta.page_size;
        let stores: Vec<BoxFuture<'_, (u64, Result<String>)>> = prepared
            .iter()
            .map(|(idx, taken)| {
                let idx = *idx;
                match staged.remove(&idx) {
                    Some(st) => Box::pin(async move { (idx, finish_staged(s, st).await) })
                        as BoxFuture<'_, _>,
                    None => {
                        let present =
                            present_of(idx * ppe, taken.iter().map(|p| (&p.page_no, &p.data)));
                        let job = submit_encode(s, page_size, present);
                        Box::pin(async move { (idx, store_encoded(s, job).await) })
                    }
                }
            })
            .collect();
        let mut uploads: Vec<(u64, Result<String>)> = stream::iter(stores)
            .buffer_unordered(s.options.extents_in_flight.max(1))
            .collect()
            .await;
        uploads.sort_by_key(|(idx, _)| *idx);
        let mut out = Vec::with_capacity(prepared.len());
        for ((idx, taken), (_, stored)) in prepared.into_iter().zip(uploads) {
            let key = match stored {
                Ok(key) => key,
                Err(e) => {
                    // The dirty buffer still takes the pages: the sync's
                    // durability must not depend on the store (a claimed
                    // record, a store that is down), as packing's does not.
                    tracing::warn!(file = %self.meta.name, extent = idx, error = %e, "storing a full extent at sync failed; its pages go to the dirty buffer");
                    for p in taken {
                        pages.insert(p.page_no, p.data);
                    }
                    continue;
                }
            };
            let first = idx * ppe;
            out.push(DirectExtent {
                write: ExtentWrite {
                    extent_idx: idx,
                    key,
                    pages: first..first + ppe,
                },
                pages: taken,
            });
        }
        Ok(out)
    }

    /// The durable part of a journal's `sync`: one `fdatasync` of it. No
    /// metadata transaction renews the lease of a journal's writer, so it
    /// is renewed here once half of it is gone, before anything is
    /// acknowledged: a writer that lost it (another took it after it
    /// expired) fails instead.
    async fn commit_journal(&mut self) -> Result<()> {
        let now = self.shared.env.now_ms();
        let w = self
            .writer
            .as_ref()
            .ok_or_else(|| Error::invalid("read-only"))?;
        if now.saturating_sub(w.renewed_ms) >= self.shared.options.lease_ttl_ms / 2 {
            let request = self.lease(w);
            self.shared.meta.acquire_lease(&request).await?;
            self.writer_mut()?.renewed_ms = now;
        }
        if let Some(l) = &self.local {
            crate::failpoint::check(&*self.shared.env, crate::Failpoint::SyncBefore)?;
            l.file.sync().map_err(|e| journal_err(&l.name, "sync", e))?;
            crate::failpoint::check(&*self.shared.env, crate::Failpoint::SyncAfter)?;
        }
        Ok(())
    }

    /// Renews the write lease once half of it is gone; nothing for a
    /// reader. A writer that syncs renews it anyway; one that sits idle
    /// (a database's table nobody writes for an hour) calls this so that
    /// another machine cannot take the file from under it.
    pub async fn renew_lease(&mut self) -> Result<()> {
        let now = self.shared.env.now_ms();
        let Some(w) = self.writer.as_ref() else {
            return Ok(());
        };
        if now.saturating_sub(w.renewed_ms) < self.shared.options.lease_ttl_ms / 2 {
            return Ok(());
        }
        let request = self.lease(w);
        self.shared.meta.acquire_lease(&request).await?;
        self.writer_mut()?.renewed_ms = now;
        Ok(())
    }

    /// Syncs, then packs every extent with dirty pages (a checkpoint).
    pub async fn checkpoint(&mut self) -> Result<()> {
        self.commit().await?;
        if self.local.is_some() {
            // A journal is packed when it is folded, at close.
            return Ok(());
        }
        self.pack(false).await
    }

    /// Checkpoints and releases the write lease. Dropping a writer without
    /// closing keeps unsynced writes from ever being durable and leaves the
    /// lease to expire.
    pub async fn close(mut self) -> Result<()> {
        if self.writer.is_none() {
            return Ok(());
        }
        self.fold_own_journal().await?;
        self.checkpoint().await?;
        let w = self.writer_mut()?;
        let holder = w.holder.clone();
        self.shared
            .meta
            .release_lease(self.branch()?, self.meta.id, &holder)
            .await?;
        self.writer = None;
        Ok(())
    }

    /// Like [`File::close`], but once the data is durable a failure to pack
    /// does not fail the close: the lease is released anyway and the
    /// packing error returned as `Ok(Some(error))`; the pages stay in the
    /// durable dirty buffer, where reads find them and `fsx gc` packs them.
    /// `Err` means the last writes may not be durable.
    pub async fn close_durable(mut self) -> Result<Option<Error>> {
        if self.writer.is_none() {
            return Ok(None);
        }
        self.fold_own_journal().await?;
        self.commit().await?;
        let unpacked = self.pack(false).await.err();
        self.abandon_lease().await?;
        Ok(unpacked)
    }

    /// Releases the write lease without syncing: writes since the last
    /// sync are dropped. For a writer giving up after a failure, so the
    /// file is not held until the lease expires. A local journal is left
    /// as a crash would leave it (its unsynced writes may survive), for the
    /// next writer to fold.
    pub async fn abandon(mut self) -> Result<()> {
        self.abandon_lease().await
    }

    async fn abandon_lease(&mut self) -> Result<()> {
        let Some(w) = self.writer.take() else {
            return Ok(());
        };
        self.shared
            .meta
            .release_lease(self.branch()?, self.meta.id, &w.holder)
            .await?;
        Ok(())
    }

    /// Writes the bytes of `journal` into the page store as this file's
    /// content (written, sized and synced, not yet packed). The page store
    /// copy is empty or equal to it (see [`crate::journal`]).
    async fn write_journal_content(&mut self, journal: &dyn JournalFile, name: &str) -> Result<()> {
        let len = journal.size().map_err(|e| journal_err(name, "read", e))?;
        let mut buf = vec![0u8; JOURNAL_CHUNK];
        let mut offset = 0;
        while offset < len {
            let want = (len - offset).min(JOURNAL_CHUNK as u64) as usize;
            let got = journal
                .read_at(&mut buf[..want], offset)
                .map_err(|e| journal_err(name, "read", e))?;
            if got == 0 {
                break;
            }
            self.write_at(offset, &buf[..got]).await?;
            offset += got as u64;
        }
        self.truncate(len).await?;
        self.commit().await
    }

    /// Folds a journal left by a writer that is gone into the page store,
    /// then deletes it (see [`crate::journal`]). Called by a new writer
    /// before anything else touches the file.
    pub(crate) async fn fold_leftover(&mut self, dir: &dyn JournalDir, name: &str) -> Result<()> {
        let Some(journal) = dir.open(name).map_err(|e| journal_err(name, "open", e))? else {
            return Ok(());
        };
        tracing::info!(file = %self.meta.name, journal = name, "folding the local journal of a writer that is gone");
        self.write_journal_content(journal.as_ref(), name).await?;
        dir.remove(name).map_err(|e| journal_err(name, "remove", e))
    }

    /// Moves this writer's content into a new local journal `name` and
    /// empties the page store's copy: from now on the journal is the file.
    pub(crate) async fn start_journal(
        &mut self,
        dir: &Arc<dyn JournalDir>,
        name: &str,
    ) -> Result<()> {
        let draft = dir
            .create(name)
            .map_err(|e| journal_err(name, "create", e))?;
        let mut offset = 0;
        while offset < self.size {
            let chunk = self.read_at(offset, JOURNAL_CHUNK).await?;
            if chunk.is_empty() {
                break;
            }
            // Pages of zeros are left unwritten: the journal's `set_len`
            // below makes them a hole, which reads as zeros. A database's
            // new WAL segment is zero-filled before it is first written.
            let ps = self.ps() as usize;
            let mut run: Option<usize> = None;
            for at in (0..chunk.len()).step_by(ps).chain([chunk.len()]) {
                let data = chunk
                    .get(at..(at + ps).min(chunk.len()))
                    .is_some_and(|p| p.iter().any(|&b| b != 0));
                match (run, data) {
                    (None, true) => run = Some(at),
                    (Some(from), false) => {
                        draft
                            .write_at(&chunk[from..at], offset + from as u64)
                            .map_err(|e| journal_err(name, "write", e))?;
                        run = None;
                    }
                    _ => {}
                }
            }
            offset += chunk.len() as u64;
        }
        draft
            .set_len(self.size)
            .map_err(|e| journal_err(name, "write", e))?;
        draft.sync().map_err(|e| journal_err(name, "sync", e))?;
        dir.publish(name)
            .map_err(|e| journal_err(name, "publish", e))?;
        // The journal is whole and durable: a crash from here on folds it
        // back. Only now may the page store's copy go.
        let size = self.size;
        if size > 0 {
            self.truncate(0).await?;
            self.commit().await?;
        }
        self.size = size;
        self.local = Some(Local {
            file: draft,
            name: name.to_string(),
            dir: Arc::clone(dir),
        });
        Ok(())
    }

    /// Reads this branch's file from its local journal `name`, if its
    /// writer keeps one (a reader's handle).
    pub(crate) fn read_journal(&mut self, dir: &Arc<dyn JournalDir>, name: &str) -> Result<()> {
        let Some(journal) = dir.open(name).map_err(|e| journal_err(name, "open", e))? else {
            return Ok(());
        };
        self.size = journal.size().map_err(|e| journal_err(name, "read", e))?;
        self.local = Some(Local {
            file: journal,
            name: name.to_string(),
            dir: Arc::clone(dir),
        });
        Ok(())
    }

    /// Folds this writer's own journal into the page store and deletes it:
    /// the file is an ordinary page file again.
    async fn fold_own_journal(&mut self) -> Result<()> {
        let Some(local) = self.local.take() else {
            return Ok(());
        };
        self.size = 0;
        if let Err(e) = self
            .write_journal_content(local.file.as_ref(), &local.name)
            .await
        {
            // Still the file's content: keep using it.
            self.local = Some(local);
            return Err(e);
        }
        local
            .dir
            .remove(&local.name)
            .map_err(|e| journal_err(&local.name, "remove", e))
    }

    /// Packs dirty extents: only those that dirty pages fill if `full_only`.
    async fn pack(&mut self, full_only: bool) -> Result<()> {
        let summary = if full_only {
            // Only extents this handle wrote since it last packed can have
            // become full: ask about those, not the whole dirty buffer.
            let touched: Vec<u64> = std::mem::take(&mut self.touched_extents)
                .into_iter()
                .collect();
            if touched.is_empty() {
                return Ok(());
            }
            self.shared
                .meta
                .dirty_counts(self.view, self.meta.id, self.ppe, &touched)
                .await?
        } else {
            self.touched_extents.clear();
            self.shared
                .meta
                .dirty_summary(self.view, self.meta.id, self.ppe)
                .await?
        };
        for d in summary {
            if full_only && d.pages < self.ppe {
                continue;
            }
            self.pack_extent(d.extent_idx).await?;
        }
        Ok(())
    }

    /// Folds the dirty pages of extent `idx` into a new extent.
    async fn pack_extent(&mut self, idx: u64) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_pack_extent(idx).await {
                Err(e) if e.kind() == ErrorKind::Conflict && attempt < PACK_ATTEMPTS => {
                    tracing::debug!(file = %self.meta.name, idx, attempt, "packing lost a race; retrying");
                }
                other => return other,
            }
        }
    }

    async fn try_pack_extent(&mut self, idx: u64) -> Result<()> {
        let s = self.shared.clone();
        let ps = self.ps();
        let dirty = s
            .meta
            .dirty_extent(self.view, self.meta.id, idx, self.ppe)
            .await?;
        let first = idx * self.ppe;
        let live_pages = dirty.size.div_ceil(ps);
        let mut pages: BTreeMap<u32, Bytes> = BTreeMap::new();
        if let Some(key) = &dirty.current_key {
            let blob = self.load_extent(key).await?;
            let extent = Extent::decode_trusted(&blob)?;
            for (i, p) in extent.pages() {
                pages.insert(i, blob.slice_ref(p));
            }
        }
        for d in &dirty.pages {
            let within = (d.page_no - first) as u32;
            match &d.data {
                Some(b) => pages.insert(within, b.clone()),
                None => pages.remove(&within),
            };
        }
        pages.retain(|&i, _| first + u64::from(i) < live_pages);
        // Inherited pages are part of the content but stay where they are.
        let consumed: Vec<(u64, i64)> = dirty
            .pages
            .iter()
            .filter(|p| !p.inherited)
            .map(|p| (p.page_no, p.seq))
            .collect();

        let new_key = if pages.is_empty() {
            None
        } else {
            let present: Vec<(u32, Bytes)> = pages.into_iter().collect();
            let (blob, key) = encode_extent(self.meta.page_size, &present, s.options.compression)?;
            if dirty.current_key.as_deref() != Some(key.as_str()) {
                crate::failpoint::check(&*s.env, crate::Failpoint::Pin)?;
                let new = s
                    .meta
                    .pin_extent(&key, blob.len() as u64, s.env.now_ms())
                    .await?;
                let okey = ObjectKey::new(&key)?;
                // After a successful pin GC cannot be deleting this key, so
                // an existing object is the same content unless it was
                // damaged: it is read and checked against its key (one get,
                // which also answers "missing"), and a missing or bad copy
                // is replaced by this good one, so new references never
                // point at bytes that cannot be read back. A record the pin
                // made has no object to check (at most an orphan of the
                // same content, which the put replaces).
                if new || !stored_intact(&s, &okey).await? {
                    crate::failpoint::check(&*s.env, crate::Failpoint::Upload)?;
                    s.store.put(&okey, blob.clone()).await?;
                }
                s.cache.insert(&key, raw_for_cache(blob)?);
            }
            Some(key)
        };
        let lease = self.pack_lease()?;
        let commit = PackCommit::new(
            lease,
            dirty.layer,
            idx,
            dirty.current_key.clone(),
            new_key,
            consumed,
        );
        crate::failpoint::check(&*s.env, crate::Failpoint::PackCommit)?;
        s.meta.commit_pack(&commit).await?;
        self.snapshot().forget(idx);
        Ok(())
    }
}

/// Waits for a staged extent to be stored; its key.
async fn finish_staged(s: &Shared, st: Staged) -> Result<String> {
    match st {
        Staged::Encoding(job) => store_encoded(s, job).await,
        Staged::Storing {
            key, mut upload, ..
        } => {
            (&mut upload).await;
            std::pin::Pin::new(&mut upload)
                .take_output()
                .unwrap_or_else(|| Err(lost_job()))?;
            Ok(key)
        }
        Staged::Failed(e) => Err(e),
    }
}

fn lost_job() -> Error {
    Error::new(ErrorKind::Other, "a staged extent lost its result")
}

/// Pins and stores an extent encoded by `job` (see [`pin`], [`upload`]);
/// returns its key.
async fn store_encoded(s: &Shared, job: EncodeJob) -> Result<String> {
    let (blob, key) = crate::env::finished(job).await??;
    let new = pin(s, &key, &blob).await?;
    upload(s, key.clone(), blob, new).await?;
    Ok(key)
}

/// Pins an extent's record before its upload, so GC cannot delete it
/// while it is on its way; `true` when the pin made the record (see
/// `MetaExtents::pin_extent`).
async fn pin(s: &Shared, key: &str, blob: &Bytes) -> Result<bool> {
    crate::failpoint::check(&*s.env, crate::Failpoint::Pin)?;
    Ok(s.meta
        .pin_extent(key, blob.len() as u64, s.env.now_ms())
        .await?)
}

/// Stores a pinned extent — at once when its record is `new` (no copy to
/// check: one request, not two), else unless the store holds an intact
/// copy — and caches it. No metadata transaction: it may wait between
/// polls.
async fn upload(
    s: impl std::ops::Deref<Target = Shared>,
    key: String,
    blob: Bytes,
    new: bool,
) -> Result<()> {
    let okey = ObjectKey::new(&key)?;
    if new || !stored_intact(&s, &okey).await? {
        crate::failpoint::check(&*s.env, crate::Failpoint::Upload)?;
        s.store.put(&okey, blob.clone()).await?;
    }
    s.cache.insert(&key, raw_for_cache(blob)?);
    Ok(())
}

/// The present pages among `pages` of the extent starting at page
/// `first`, indexed within it.
fn present_of<'a>(
    first: u64,
    pages: impl Iterator<Item = (&'a u64, &'a Option<Bytes>)>,
) -> Vec<(u32, Bytes)> {
    pages
        .filter_map(|(p, d)| Some(((p - first) as u32, d.clone()?)))
        .collect()
}

/// Starts encoding and hashing an extent on a compute thread.
fn submit_encode(s: &Shared, page_size: u32, present: Vec<(u32, Bytes)>) -> EncodeJob {
    let compression = s.options.compression;
    crate::env::submit(&*s.env, move || {
        encode_extent(page_size, &present, compression)
    })
}

/// Encodes the present pages of an extent and hashes the blob.
fn encode_extent(
    page_size: u32,
    present: &[(u32, Bytes)],
    compression: fsx_format::Compression,
) -> Result<Encoded> {
    let page_count = present.last().map_or(0, |(i, _)| i + 1);
    let most = fsx_format::raw_len(page_size, page_count, present.len() as u32);
    // Placed for direct I/O: a local store writes it to disk without
    // copying it through the page cache.
    let blob = fsx_store::aligned_blob(most, |out| {
        encode_into(
            out,
            page_size,
            present.iter().map(|(i, p)| (*i, p.as_ref())),
            compression,
        )
    })?;
    let key = content_key(&blob);
    Ok((blob, key))
}

/// Whether the stored object `key` reads back and matches its content key
/// (missing or damaged: `false`; other failures are errors).
async fn stored_intact(s: &Shared, key: &ObjectKey) -> Result<bool> {
    match s.store.get(key).await {
        Ok(blob) => {
            let intact = key.verify_content(&blob).is_ok();
            if !intact {
                tracing::warn!(key = %key, "a stored extent is damaged; rewriting it from the copy being packed");
            }
            Ok(intact)
        }
        Err(e)
            if matches!(
                e.kind(),
                fsx_store::ErrorKind::NotFound | fsx_store::ErrorKind::Corrupt
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// `n` zero bytes (at most a page), without allocating.
fn zeros(n: usize) -> Bytes {
    static ZEROS: [u8; fsx_format::MAX_PAGE_SIZE as usize] =
        [0; fsx_format::MAX_PAGE_SIZE as usize];
    Bytes::from_static(&ZEROS[..n.min(ZEROS.len())])
}

/// Re-encodes a compressed extent raw so cached page reads are slices.
fn raw_for_cache(blob: Bytes) -> Result<Bytes> {
    let extent = Extent::decode_trusted(&blob)?;
    if extent.header().codec == fsx_format::Codec::Raw {
        return Ok(blob);
    }
    let raw = encode(
        extent.header().page_size,
        extent.pages(),
        fsx_format::Compression::None,
    )?;
    Ok(Bytes::from(raw))
}

/// Fetches and verifies an extent: the blob must hash to its key and decode.
pub(crate) async fn load_extent(s: &Shared, key: &str, file: &str) -> Result<Bytes> {
    if let Some(b) = s.cache.get(key) {
        return Ok(b);
    }
    let okey = ObjectKey::new(key)?;
    let blob = s.store.get(&okey).await.map_err(|e| match e.kind() {
        fsx_store::ErrorKind::NotFound => Error::corrupt(format!(
            "extent {key} of {file:?} is missing from the data store; run `fsx fsck`"
        ))
        .with_source(e),
        fsx_store::ErrorKind::Corrupt => Error::corrupt(format!(
            "extent {key} of {file:?} is damaged in the data store: {e}"
        ))
        .with_source(e),
        _ => Error::from(e),
    })?;
    // Hashing 2 MiB is the CPU cost of a read: on a compute thread, so
    // several loads in flight verify in parallel. A store that checks its
    // own copies (the local directory, the tiered store) has done it, and
    // fails a bad copy as `Corrupt`.
    let verified = if s.store.capabilities().checks_content {
        Ok(blob)
    } else {
        crate::env::offload(&*s.env, move || okey.verify_content(&blob).map(|()| blob)).await?
    };
    let blob = verified.map_err(|e| {
        Error::corrupt(format!(
            "extent {key} of {file:?} is damaged in the data store: {e}"
        ))
        .with_source(e)
    })?;
    let raw = raw_for_cache(blob)?;
    s.cache.insert(key, raw.clone());
    Ok(raw)
}

impl Local {
    /// Bytes `[from, to)`, zeros past the journal's end.
    fn read(&self, from: u64, to: u64) -> Result<Vec<u8>> {
        let mut out = vec![0u8; to.saturating_sub(from) as usize];
        self.file
            .read_at(&mut out, from)
            .map_err(|e| journal_err(&self.name, "read", e))?;
        Ok(out)
    }
}
