//! A volume: one metadata engine, one data store, and the files in them.
//!
//! A data store belongs to exactly one volume. Reference counts live in the
//! volume's metadata, so a second volume sharing the store could have its
//! extents collected by the first one's GC; the store's `fsx/volume` marker
//! object names its volume, and opening checks it.
//!
//! The marker is the store's claim and its proof of life:
//! - `create` writes it *first*, with `put_if_absent` (never overwriting a
//!   marker another volume wrote, even in a race), and only then
//!   initialises the metadata; a failed initialisation removes the marker
//!   it wrote.
//! - `open` requires it. A store without a marker is not this volume's
//!   store: an unmounted disk's empty mount point, a deleted bucket, a wrong
//!   URL. Opening it anyway would write new data where the old cannot be
//!   found, so it is an error naming the store; the marker is never
//!   rewritten by `open`.

use std::sync::Arc;

use bytes::Bytes;
use fsx_format::Compression;
use fsx_meta::{
    BranchId, Counter, ExtentTotals, FileMeta, FileRename, LeaseRequest, MetaEngine, View,
    VolumeConfig,
};
use fsx_store::wrappers::{MeterSnapshot, Metered, Operation};
use fsx_store::{ExtentBackend, ObjectKey};

use crate::cache::ExtentCache;
use crate::env::Environment;
use crate::error::{Error, ErrorKind, Result};
use crate::file::File;
use crate::journal::{JournalDir, journal_name};
use crate::tier::{TierSet, TieredStore};

/// Tier name of a volume's data store in the persistent counters.
pub const DATA_TIER: &str = "cold";

/// Pseudo-tier of the page operation counters (`write`: pages made durable
/// by `sync`; `read`: pages served from the dirty buffer or an extent).
pub const PAGE_COUNTER_TIER: &str = "pages";

/// Key of the marker object naming the volume that owns a store.
pub const VOLUME_MARKER_KEY: &str = "fsx/volume";

/// Tunables of an open volume (not stored in the volume).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VolumeOptions {
    /// How long a writer's lease lasts without renewal.
    pub lease_ttl_ms: i64,
    /// How new extents are compressed.
    pub compression: Compression,
    /// Bytes of verified extents kept in memory, shared by every handle of
    /// the volume in the process (setting `io.cache_bytes`).
    pub cache_bytes: u64,
    /// Extents a sync uploads, or a read loads, at once (setting
    /// `io.extents_in_flight`).
    pub extents_in_flight: usize,
    /// Extents a sequential read loads ahead of the one it needs (setting
    /// `io.readahead_extents`; 0 turns readahead off).
    pub readahead_extents: usize,
    /// Unsynced bytes a writer buffers before syncing on its own.
    pub max_buffer_bytes: usize,
    /// Whether `sync` packs extents whose dirty pages fill them.
    pub pack_on_sync: bool,
    /// The size a file system over the volume reports (setting
    /// `fs.capacity_bytes`; 1 PiB by default: an object store is as large
    /// as the bill).
    pub capacity_bytes: u64,
    /// Changes the volume's change feed keeps (setting `changes.retain`;
    /// the oldest beyond are pruned by [`Volume::prune_changes`]).
    pub changes_retain: u64,
    /// Faster tiers in front of the data store; `None` keeps every extent
    /// in the data store only, without tier records.
    pub tiers: Option<TierSet>,
    /// Where writers opened with [`OpenOptions::journal`] keep local
    /// journals (see [`crate::journal`]); only for a volume whose metadata
    /// is on the same machine. `None`: journals go through the page store
    /// like every file.
    pub journals: Option<Arc<dyn JournalDir>>,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 30_000,
            compression: Compression::None,
            cache_bytes: 64 << 20,
            extents_in_flight: 4,
            readahead_extents: 8,
            max_buffer_bytes: 32 << 20,
            pack_on_sync: true,
            capacity_bytes: 1 << 50,
            changes_retain: fsx_meta::DEFAULT_CHANGES_KEPT,
            tiers: None,
            journals: None,
        }
    }
}

impl VolumeOptions {
    /// Sets the lease time-to-live.
    pub fn lease_ttl_ms(mut self, ms: i64) -> Self {
        self.lease_ttl_ms = ms;
        self
    }

    /// Sets the compression of new extents.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Sets the extent cache size.
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets how many extents are uploaded or loaded at once.
    pub fn extents_in_flight(mut self, n: usize) -> Self {
        self.extents_in_flight = n;
        self
    }

    /// Sets how many extents a sequential read loads ahead.
    pub fn readahead_extents(mut self, n: usize) -> Self {
        self.readahead_extents = n;
        self
    }

    /// Sets the unsynced buffer limit.
    pub fn max_buffer_bytes(mut self, bytes: usize) -> Self {
        self.max_buffer_bytes = bytes;
        self
    }

    /// Sets where local journals live (see [`VolumeOptions::journals`]).
    pub fn journals(mut self, dir: Option<Arc<dyn JournalDir>>) -> Self {
        self.journals = dir;
        self
    }

    /// Puts faster tiers in front of the data store.
    pub fn tiers(mut self, tiers: Option<TierSet>) -> Self {
        self.tiers = tiers;
        self
    }

    /// Sets whether `sync` packs full extents.
    pub fn pack_on_sync(mut self, yes: bool) -> Self {
        self.pack_on_sync = yes;
        self
    }
}

/// What `fsx stats` reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VolumeStats {
    /// Operation counters by tier and operation.
    pub counters: Vec<Counter>,
    /// Extent totals.
    pub extents: ExtentTotals,
    /// The files.
    pub files: Vec<FileMeta>,
    /// The I/O settings this volume runs with (see [`crate::settings`]):
    /// name and effective value.
    pub io: Vec<(&'static str, u64)>,
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Take the write lease.
    pub write: bool,
    /// Create the file if missing, with this page size.
    pub create_page_size: Option<u32>,
    /// Pack full extents after each `sync` (`None`: the volume's
    /// [`VolumeOptions::pack_on_sync`]). Off for a file whose bytes are
    /// soon rewritten (a database's journal or WAL): its pages stay in the
    /// dirty buffer, where a rewrite replaces them in place, instead of
    /// being packed into extents that the next round of writes makes
    /// garbage; `checkpoint`, closing the file and GC still pack them.
    pub pack_on_sync: Option<bool>,
    /// The file is a database's journal or WAL: a writer keeps its bytes
    /// in a local journal when the volume has a journal directory (see
    /// [`crate::journal`]), so a `sync` is one `fdatasync` of a local file
    /// and no metadata transaction. Ignored without one.
    pub journal: bool,
}

impl OpenOptions {
    /// Read-only.
    pub fn read() -> Self {
        Self {
            write: false,
            create_page_size: None,
            pack_on_sync: None,
            journal: false,
        }
    }

    /// Read-write, the file must exist.
    pub fn write() -> Self {
        Self {
            write: true,
            create_page_size: None,
            pack_on_sync: None,
            journal: false,
        }
    }

    /// Sets [`OpenOptions::pack_on_sync`] for this handle.
    pub fn pack_on_sync(mut self, yes: bool) -> Self {
        self.pack_on_sync = Some(yes);
        self
    }

    /// Sets [`OpenOptions::journal`] for this handle.
    pub fn journal(mut self, yes: bool) -> Self {
        self.journal = yes;
        self
    }

    /// Read-write, creating the file with `page_size` if missing.
    pub fn create(page_size: u32) -> Self {
        Self {
            write: true,
            create_page_size: Some(page_size),
            pack_on_sync: None,
            journal: false,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) meta: Arc<dyn MetaEngine>,
    /// The data store, metered.
    pub(crate) store: Arc<dyn ExtentBackend>,
    meter: Arc<Metered>,
    /// The tiered store when faster tiers are configured (also `store`).
    pub(crate) tiered: Option<Arc<TieredStore>>,
    /// What the meter read at the last flush to the persistent counters.
    flushed: std::sync::Mutex<MeterSnapshot>,
    pub(crate) config: VolumeConfig,
    pub(crate) env: Arc<dyn Environment>,
    pub(crate) options: VolumeOptions,
    pub(crate) cache: ExtentCache,
    /// Pages made durable by `sync` and pages read from the dirty buffer
    /// or extents, since the last flush: the operations a
    /// one-blob-per-page store would have paid for (`fsx cost`).
    pub(crate) page_writes: std::sync::atomic::AtomicU64,
    pub(crate) page_reads: std::sync::atomic::AtomicU64,
    /// Automatic commit interval in ms (0: off), from the volume's
    /// [`crate::branch::AUTO_COMMIT_SETTING`].
    pub(crate) auto_commit: std::sync::atomic::AtomicI64,
}

impl Shared {
    /// The automatic commit interval, if on.
    pub(crate) fn auto_commit_ms(&self) -> Option<i64> {
        let ms = self.auto_commit.load(std::sync::atomic::Ordering::Relaxed);
        (ms > 0).then_some(ms)
    }
}

/// An open volume, seen through one branch or commit (`main` unless
/// [`Volume::checkout`] or [`Volume::at_commit`] says otherwise). Cheap to
/// clone.
#[derive(Clone)]
pub struct Volume {
    pub(crate) shared: Arc<Shared>,
    pub(crate) view: View,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Volume({}, {}, {:?}, {})",
            self.shared.config.volume_id, self.view, self.shared.meta, self.shared.store
        )
    }
}

async fn read_marker(store: &dyn ExtentBackend) -> Result<Option<String>> {
    let key = marker_key()?;
    match store.get(&key).await {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
        Err(e) if e.kind() == fsx_store::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from(e)),
    }
}

fn marker_key() -> Result<ObjectKey> {
    ObjectKey::new(VOLUME_MARKER_KEY).map_err(Error::from)
}

impl Volume {
    /// Creates a volume: initialises the metadata and claims the store.
    pub async fn create(
        meta: Arc<dyn MetaEngine>,
        store: Arc<dyn ExtentBackend>,
        env: Arc<dyn Environment>,
        config: VolumeConfig,
        options: VolumeOptions,
    ) -> Result<Self> {
        fsx_meta::check_extent_size(config.extent_size)?;
        let volume = Self::assemble(meta, store, env, config, options);
        let s = &volume.shared;
        let owned_by = |owner: String| {
            Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "the data store {} already belongs to volume {owner}; give this volume its own store \
                     (or prefix). If {owner} never finished its creation (an interrupted `fsx init`), \
                     delete the store's {VOLUME_MARKER_KEY} object and try again",
                    s.meter.inner()
                ),
            )
        };
        if let Some(owner) = read_marker(s.meter.as_ref()).await? {
            return Err(owned_by(owner));
        }
        // Claim the store before touching the metadata: of two volumes
        // created on one store at once, exactly one gets it.
        let id = Bytes::from(s.config.volume_id.clone());
        let key = marker_key()?;
        match s.meter.put_if_absent(&key, id.clone()).await {
            Ok(true) => {}
            Ok(false) => match read_marker(s.meter.as_ref()).await? {
                // A retried claim may find its own first attempt.
                Some(owner) if owner == s.config.volume_id => {}
                Some(owner) => return Err(owned_by(owner)),
                None => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the data store {} refused the volume marker but holds none: try again",
                            s.meter.inner()
                        ),
                    ));
                }
            },
            // A store that cannot create-if-absent: checked above, racy.
            Err(e) if matches!(e.kind(), fsx_store::ErrorKind::Unsupported { .. }) => {
                s.meter.put(&key, id).await?
            }
            Err(e) => return Err(e.into()),
        }
        if let Err(e) = s.meta.init_volume(&s.config).await {
            // Release the claim; a store left claimed by a volume that does
            // not exist could never be used again.
            let _ = s.meter.delete(&key).await;
            return Err(e.into());
        }
        volume.load_settings().await?;
        Ok(volume)
    }

    /// Opens an existing volume, checking that the store is its own.
    pub async fn open(
        meta: Arc<dyn MetaEngine>,
        store: Arc<dyn ExtentBackend>,
        env: Arc<dyn Environment>,
        options: VolumeOptions,
    ) -> Result<Self> {
        let config = meta.open_volume().await?;
        let options = crate::settings::apply(meta.as_ref(), options).await?;
        let volume = Self::assemble(meta, store, env, config, options);
        let s = &volume.shared;
        match read_marker(s.meter.as_ref()).await? {
            Some(owner) if owner == s.config.volume_id => {}
            Some(owner) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the data store {} belongs to volume {owner}, but the metadata is volume {}: \
                         check the --store URL",
                        s.meter.inner(),
                        s.config.volume_id
                    ),
                ));
            }
            // `create` writes the marker before the metadata, so a volume
            // whose store has none is looking at the wrong store.
            None => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "the data store {} holds no volume marker ({VOLUME_MARKER_KEY}), so it is not volume {}'s store: \
                         is its disk unmounted, its bucket deleted, or the store URL wrong? Point the volume at its \
                         store (fsx never adopts an empty store)",
                        s.meter.inner(),
                        s.config.volume_id
                    ),
                ));
            }
        }
        volume.load_settings().await?;
        Ok(volume)
    }

    /// Reads the settings an open volume acts on.
    async fn load_settings(&self) -> Result<()> {
        let ms = crate::branch::duration_setting(
            self.shared.meta.as_ref(),
            crate::branch::AUTO_COMMIT_SETTING,
        )
        .await?
        .unwrap_or(0);
        self.shared
            .auto_commit
            .store(ms, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn assemble(
        meta: Arc<dyn MetaEngine>,
        store: Arc<dyn ExtentBackend>,
        env: Arc<dyn Environment>,
        config: VolumeConfig,
        options: VolumeOptions,
    ) -> Self {
        let cache = ExtentCache::new(options.cache_bytes);
        let meter = Arc::new(Metered::new(store));
        let flushed = std::sync::Mutex::new(meter.snapshot());
        let tiered = options.tiers.clone().map(|set| {
            Arc::new(TieredStore::new(
                meter.clone(),
                set,
                meta.clone(),
                env.clone(),
            ))
        });
        let store: Arc<dyn ExtentBackend> = match &tiered {
            Some(t) => t.clone(),
            None => meter.clone(),
        };
        Self {
            shared: Arc::new(Shared {
                meta,
                store,
                meter,
                tiered,
                flushed,
                config,
                env,
                options,
                cache,
                page_writes: Default::default(),
                page_reads: Default::default(),
                auto_commit: Default::default(),
            }),
            view: View::MAIN,
        }
    }

    /// The volume's settings.
    pub fn config(&self) -> &VolumeConfig {
        &self.shared.config
    }

    /// The metadata engine.
    pub fn meta(&self) -> &Arc<dyn MetaEngine> {
        &self.shared.meta
    }

    /// The data store (the tiered store when tiers are configured).
    pub fn store(&self) -> &Arc<dyn ExtentBackend> {
        &self.shared.store
    }

    /// The tiered store, when faster tiers are configured.
    pub fn tiers(&self) -> Option<&Arc<TieredStore>> {
        self.shared.tiered.as_ref()
    }

    /// Opens a file; with [`OpenOptions::write`] takes its write lease
    /// (`Busy` if another writer has it).
    pub async fn open_file(&self, name: &str, options: OpenOptions) -> Result<File> {
        let s = &self.shared;
        check_name(name)?;
        if options.write || options.create_page_size.is_some() {
            self.branch_id()?;
        }
        let meta = match s.meta.file(self.view, name).await {
            Ok(m) => m,
            Err(e) if e.kind() == fsx_meta::MetaErrorKind::NotFound => {
                match options.create_page_size {
                    Some(ps) => {
                        check_new_name(name)?;
                        if !fsx_format::valid_page_size(ps) {
                            return Err(Error::invalid(format!(
                                "page size {ps} is not supported: use a power of two from 512 to 65536"
                            )));
                        }
                        match s
                            .meta
                            .create_file(self.branch_id()?, name, ps, s.env.now_ms())
                            .await
                        {
                            Ok(m) => m,
                            // Lost a creation race: open the winner's file.
                            Err(e) if e.kind() == fsx_meta::MetaErrorKind::AlreadyExists => {
                                s.meta.file(self.view, name).await?
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    None => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("no file {name:?} in this volume"),
                        ));
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        self.open_meta(meta, options).await
    }

    /// Opens file `id` (a regular file's inode number in the tree),
    /// whatever its names; an unlinked file that is still open somewhere
    /// (an orphan) opens too. [`OpenOptions::create`] is ignored.
    pub async fn open_id(&self, id: fsx_meta::FileId, options: OpenOptions) -> Result<File> {
        if options.write {
            self.branch_id()?;
        }
        let meta = self.shared.meta.file_by_id(self.view, id).await?;
        self.open_meta(meta, options).await
    }

    /// A new session id for leases, locks and open unlinked files: the
    /// environment's holder id (host, process, start).
    pub fn new_holder(&self) -> String {
        self.shared.env.new_holder_id()
    }

    /// Whether the session `holder` is known to be gone (its process ended
    /// on this host).
    pub fn holder_is_dead(&self, holder: &str) -> bool {
        self.shared.env.holder_is_dead(holder)
    }

    /// Drops unlinked files whose holder died with them open, and the
    /// locks of dead holders; returns how many files went. Run by `gc` and
    /// when a file system over the volume starts.
    pub async fn reclaim_orphans(&self) -> Result<u64> {
        let meta = &self.shared.meta;
        let mut n = 0;
        let mut dead = std::collections::BTreeSet::new();
        for o in meta.orphans().await? {
            if self.holder_is_dead(&o.holder) {
                let now_ns = self.shared.env.now_ms().saturating_mul(1_000_000);
                meta.forget_orphan(o.branch, o.ino, now_ns).await?;
                tracing::info!(ino = o.ino, holder = %o.holder, "reclaimed an unlinked file its dead holder had open");
                dead.insert(o.holder);
                n += 1;
            }
        }
        for holder in dead {
            meta.release_locks(&holder, None, None).await?;
        }
        Ok(n)
    }

    /// A writer's name and lease expiry for a regular file about to be
    /// made with its lease ([`fsx_meta::MakeNode::lease`]); open it with
    /// [`Volume::open_made`] under that name.
    pub fn new_file_lease(&self) -> (String, i64) {
        let s = &self.shared;
        (
            s.env.new_holder_id(),
            s.env.now_ms().saturating_add(s.options.lease_ttl_ms),
        )
    }

    /// Opens for writing file `id`, just made with its write lease taken
    /// by `holder` in the same transaction (see [`Volume::new_file_lease`]):
    /// no second transaction for the lease.
    pub async fn open_made(&self, id: fsx_meta::FileId, holder: String) -> Result<File> {
        self.open_made_with(id, holder, OpenOptions::write()).await
    }

    /// [`Volume::open_made`] with `options` (a writer's: its journal and
    /// packing choices).
    pub async fn open_made_with(
        &self,
        id: fsx_meta::FileId,
        holder: String,
        options: OpenOptions,
    ) -> Result<File> {
        self.branch_id()?;
        let meta = self.shared.meta.file_by_id(self.view, id).await?;
        self.open_with(meta, Some(holder), options).await
    }

    async fn open_meta(&self, meta: FileMeta, options: OpenOptions) -> Result<File> {
        let holder = if options.write {
            Some(self.acquire(&meta).await?)
        } else {
            None
        };
        self.open_with(meta, holder, options).await
    }

    async fn open_with(
        &self,
        meta: FileMeta,
        holder: Option<String>,
        options: OpenOptions,
    ) -> Result<File> {
        let s = &self.shared;
        let pack_on_sync = options
            .pack_on_sync
            .unwrap_or(self.shared.options.pack_on_sync);
        let writing = holder.is_some();
        let mut file = File::new(self.shared.clone(), self.view, meta, holder, pack_on_sync);
        // Commits are frozen: only a branch's files have journals.
        if let (Some(dir), View::Branch(branch)) = (&s.options.journals, self.view) {
            let name = journal_name(branch, file.meta_id());
            if writing {
                // A journal left by a writer that is gone holds the file:
                // fold it before anything else reads or writes.
                let prepared = async {
                    file.fold_leftover(dir.as_ref(), &name).await?;
                    if options.journal {
                        file.start_journal(dir, &name).await?;
                    }
                    Ok::<_, Error>(())
                }
                .await;
                if let Err(e) = prepared {
                    if let Err(release) = file.abandon().await {
                        tracing::warn!(error = %release, "releasing the lease after a failed open failed");
                    }
                    return Err(e);
                }
            } else {
                file.read_journal(dir, &name)?;
            }
        }
        Ok(file)
    }

    async fn acquire(&self, file: &FileMeta) -> Result<String> {
        let s = &self.shared;
        let holder = s.env.new_holder_id();
        let branch = self.branch_id()?;
        let current = s.meta.lease(branch, file.id).await?;
        let dead = current
            .filter(|l| s.env.holder_is_dead(&l.holder))
            .map(|l| l.holder);
        if let Some(d) = &dead {
            tracing::info!(file = %file.name, holder = %d, "breaking the lease of a writer that is gone");
        }
        let req = LeaseRequest::new(
            file.id,
            holder.clone(),
            s.env.now_ms(),
            s.options.lease_ttl_ms,
        )
        .on_branch(branch)
        .break_holder(dead);
        s.meta.acquire_lease(&req).await.map_err(|e| {
            let busy = e.kind() == fsx_meta::MetaErrorKind::Busy;
            let err = Error::from(e);
            if busy {
                Error::new(
                    ErrorKind::Busy,
                    format!("cannot write {:?}: {err}", file.name),
                )
            } else {
                err
            }
        })?;
        Ok(holder)
    }

    /// The file called `name`.
    pub async fn stat(&self, name: &str) -> Result<FileMeta> {
        let file = self.shared.meta.file(self.view, name).await?;
        Ok(self.with_journal_sizes(vec![file])?.remove(0))
    }

    /// Files whose names start with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<FileMeta>> {
        let files = self.shared.meta.list_files(self.view, prefix).await?;
        self.with_journal_sizes(files)
    }

    /// Whether writers opened with [`OpenOptions::journal`] get a local
    /// journal here (a branch of a volume with a journal directory).
    pub fn keeps_journals(&self) -> bool {
        self.shared.options.journals.is_some() && matches!(self.view, View::Branch(_))
    }

    /// The size of file `id`'s local journal, when it has one (see
    /// [`crate::journal`]: while a journal is active the volume's own copy
    /// of the file is empty, so this is the file's size).
    pub fn journal_size(&self, id: fsx_meta::FileId) -> Result<Option<u64>> {
        let (Some(dir), View::Branch(branch)) = (&self.shared.options.journals, self.view) else {
            return Ok(None);
        };
        let name = journal_name(branch, id);
        let io = |e| crate::journal::io_error(&name, "read", e);
        match dir.open(&name).map_err(io)? {
            Some(j) => Ok(Some(j.size().map_err(io)?)),
            None => Ok(None),
        }
    }

    /// `files` with the sizes of their local journals, where they have
    /// one: the journal is the file while it exists (see
    /// [`crate::journal`]).
    fn with_journal_sizes(&self, mut files: Vec<FileMeta>) -> Result<Vec<FileMeta>> {
        let (Some(dir), View::Branch(branch)) = (&self.shared.options.journals, self.view) else {
            return Ok(files);
        };
        let io = |e| crate::journal::io_error("directory", "read", e);
        let names = dir.list().map_err(io)?;
        if names.is_empty() {
            return Ok(files);
        }
        for f in &mut files {
            let name = journal_name(branch, f.id);
            if names.contains(&name)
                && let Some(j) = dir.open(&name).map_err(io)?
            {
                f.size = j.size().map_err(io)?;
            }
        }
        Ok(files)
    }

    /// Deletes a file; `Busy` while another writer has it open.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let s = &self.shared;
        let branch = self.branch_id()?;
        // A journal a dead writer left is folded first, so it cannot come
        // back later; a live writer's lease makes the deletion `Busy`.
        self.fold_dead_journals(branch, Some(&[name])).await?;
        // A dead writer's lease does not hold the file (see `lease`).
        self.retry_past_dead_leases(branch, Some(&[name]), || async {
            Ok(s.meta
                .delete_file(branch, name, &s.env.new_holder_id(), s.env.now_ms())
                .await?)
        })
        .await
    }

    /// Renames a file, replacing `to` if `replace`.
    pub async fn rename(&self, from: &str, to: &str, replace: bool) -> Result<()> {
        check_new_name(to)?;
        let s = &self.shared;
        let branch = self.branch_id()?;
        // A dead writer's lease does not hold either file (see `lease`).
        self.retry_past_dead_leases(branch, Some(&[from, to]), || async {
            Ok(s.meta
                .rename_file(
                    FileRename::new(branch, from, to, &s.env.new_holder_id(), s.env.now_ms())
                        .replace(replace),
                )
                .await?)
        })
        .await
    }

    /// Adds the data store operations made since the last flush to the
    /// volume's persistent counters (what `fsx stats` reports). Call it
    /// before a process exits; counters of a crashed process are lost, data
    /// never is.
    pub async fn flush_counters(&self) -> Result<()> {
        let s = &self.shared;
        let now = s.meter.snapshot();
        let before = *s
            .flushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let deltas: Vec<Counter> = Operation::ALL
            .iter()
            .filter_map(|&op| {
                let (a, b) = (now.op(op), before.op(op));
                let calls = a.calls.saturating_sub(b.calls);
                let bytes =
                    (a.bytes_written + a.bytes_read).saturating_sub(b.bytes_written + b.bytes_read);
                (calls > 0).then(|| Counter {
                    tier: DATA_TIER.into(),
                    op: op.name().into(),
                    calls,
                    bytes,
                })
            })
            .collect();
        let mut deltas = deltas;
        if let Some(t) = &s.tiered {
            deltas.extend(t.counter_deltas());
        }
        for (op, n) in [("write", &s.page_writes), ("read", &s.page_reads)] {
            let calls = n.swap(0, std::sync::atomic::Ordering::Relaxed);
            if calls > 0 {
                deltas.push(Counter {
                    tier: PAGE_COUNTER_TIER.into(),
                    op: op.into(),
                    calls,
                    bytes: 0,
                });
            }
        }
        if !deltas.is_empty() {
            s.meta.add_counters(&deltas).await?;
        }
        *s.flushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        Ok(())
    }

    /// Forgets the oldest changes of the volume's change feed beyond the
    /// newest `changes.retain` (a stored knob, see [`crate::settings`]);
    /// returns how many went. Run by `fsx gc`, the mount daemon and `fsx
    /// serve` in the background.
    pub async fn prune_changes(&self) -> Result<u64> {
        let keep = self.shared.options.changes_retain.max(1);
        Ok(self.shared.meta.prune_changes(keep).await?)
    }

    /// The volume's statistics: persistent operation counters (including
    /// this process's, flushed first) and extent totals.
    pub async fn stats(&self) -> Result<VolumeStats> {
        self.flush_counters().await?;
        Ok(VolumeStats {
            counters: self.shared.meta.counters().await?,
            extents: self.shared.meta.extent_totals().await?,
            files: self.shared.meta.list_files(self.view, "").await?,
            io: crate::settings::IO_KNOBS
                .iter()
                .map(|k| (k.name, k.get(&self.shared.options)))
                .collect(),
        })
    }

    /// The size a file system over the volume reports (`fs.capacity_bytes`).
    pub fn capacity_bytes(&self) -> u64 {
        self.shared.options.capacity_bytes
    }

    /// What this handle reads and writes.
    pub fn view(&self) -> View {
        self.view
    }

    /// The branch this handle writes to; `InvalidInput` for a commit, which
    /// is read-only.
    pub fn branch_id(&self) -> Result<BranchId> {
        match self.view {
            View::Branch(b) => Ok(b),
            View::Commit(c) => Err(read_only(c)),
        }
    }

    /// The same volume seen through `view`.
    pub(crate) fn with_view(&self, view: View) -> Volume {
        Volume {
            shared: self.shared.clone(),
            view,
        }
    }

    /// Pages per extent for a page size.
    pub fn pages_per_extent(&self, page_size: u32) -> u64 {
        u64::from(self.shared.config.extent_size / page_size)
    }
}

/// The error for writing to commit `c`.
pub(crate) fn read_only(c: fsx_meta::CommitId) -> Error {
    Error::invalid(format!(
        "commit {c} is read-only: create a branch from it (`fsx branch create PATH NAME --from {c}`) to write"
    ))
}

/// A name a file may be created or renamed to: a valid name without
/// control characters (newline, ESC…), which would let a name forge lines
/// or terminal escapes in listings. Existing names are still opened.
fn check_new_name(name: &str) -> Result<()> {
    check_name(name)?;
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{name:?} is not a valid new file name: control characters (newline, tab, ESC…) are not allowed"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 4096 || name.contains('\0') {
        return Err(Error::invalid(format!(
            "{name:?} is not a valid file name (1 to 4096 bytes, no NUL)"
        )));
    }
    Ok(())
}
