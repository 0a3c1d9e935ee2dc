//! The metadata contract: what every metadata engine (SQLite, PostgreSQL,
//! and later a Durable Object's SQLite) provides to the page store.
//!
//! # Model
//!
//! A volume holds named **files**, each with a fixed page size and a byte
//! size. A file's pages live in one of two places:
//!
//! - the **extent map**: `(file, extent index) → content key`. Extent *i* of a
//!   file holds its pages `[i·N, (i+1)·N)` where `N = extent size / page
//!   size`; pages absent from the extent are holes;
//! - the **dirty-page buffer**: `(file, page) → bytes or hole`, written by
//!   [`MetaEngine::commit_writes`]. A dirty entry overrides the extent map.
//!
//! Every content key that any map entry names has an **extent record** whose
//! `refcount` equals the number of map entries naming it. Records with
//! refcount 0 are candidates for garbage collection.
//!
//! # Contract
//!
//! Each method is one atomic transaction: after it returns `Ok` its effects
//! are durable (they survive a crash of the process or machine) and visible
//! to every later call on any engine instance of the same volume; after it
//! returns `Err` it has changed nothing.
//!
//! - **Leases.** A file has at most one writer. [`MetaEngine::acquire_lease`]
//!   grants the lease when it is free, expired, held by the same holder, or
//!   held by `break_holder` (a holder the caller has proven dead); otherwise
//!   it fails with `Busy`. [`MetaEngine::commit_writes`] and
//!   [`MetaEngine::commit_pack`] fail with `Busy` unless the caller holds the
//!   lease (an expired lease nobody else took still counts, and is renewed).
//!   Reads never need a lease and are never blocked by one.
//! - **Reads are snapshots.** [`MetaEngine::read_map`] returns the size, dirty
//!   pages and extent keys of one consistent state.
//! - **Write sequence.** Every `commit_writes` batch gets a sequence number
//!   larger than any before it for that file; a dirty page carries the
//!   sequence of the batch that wrote it last.
//! - **Dirty pages are checked** (schema version 5). Every dirty-page row
//!   carries a checksum ([`crate::checksum`]) written with it; every read
//!   that returns a dirty page's bytes verifies it first and fails with
//!   `Corrupt` (naming file, page and layer) instead of returning wrong
//!   bytes.
//! - **Commit ids are never reused** (schema version 5): an id, once
//!   handed out, names that commit or nothing, whatever resets, branch
//!   deletions, folds and expiries removed since.
//! - **Packing is optimistic.** [`MetaEngine::commit_pack`] installs a new
//!   extent only if the map entry still holds the expected key and the new
//!   key's record is live, and removes exactly the dirty pages whose
//!   `(page, seq)` it consumed; pages rewritten since stay dirty. A failed
//!   precondition is `Conflict`, and nothing changes.
//! - **Pins protect uploads.** Before an extent is uploaded it is pinned
//!   ([`MetaEngine::pin_extent`]): its record exists, is live, and its idle
//!   clock restarts. GC only claims records whose refcount is 0 and whose idle
//!   clock is older than the grace period, and a claimed (deleting) record
//!   cannot be pinned or referenced. So an uploader that finishes within the
//!   grace period can never have its extent deleted underneath it, and one
//!   that does not gets `Conflict` and retries.
//! - **Tier records** (schema version 3). [`MetaEngine::tier_record`]
//!   applies a batch of copy records atomically: a `Present` mark says the
//!   tier holds a verified copy; a `Queued` mark asks for a copy (the durable
//!   replication queue) and never downgrades a `Present` record. A queued
//!   record is returned by [`MetaEngine::tier_due`] once its `next_ms` has
//!   passed, until it is marked present or forgotten; so a copy queued in the
//!   same transaction that made the extent durable survives any crash.
//! - **Branches and layers** (schema version 4). A volume's state is a tree
//!   of **layers**. Every row of the file table, the extent map and the
//!   dirty buffer belongs to one layer; a layer has at most one parent, and
//!   what a layer *shows* is its own rows over what its parent shows, with
//!   the layer's truncation cuts and deletions hiding parent rows (see
//!   [`crate::resolve`]). A **branch** names a mutable head layer; every
//!   write goes to the head of the branch it names. A **commit** names a
//!   frozen layer. Committing freezes the head and gives the branch a new,
//!   empty head on top of it; creating a branch commits its source (if the
//!   head holds changes) and gives the new branch an empty head on top of
//!   the same frozen layer. So both are O(1): no page map or data is copied,
//!   and a frozen layer never changes what it shows (packing may change how
//!   it stores it). Writes on one branch are therefore invisible to every
//!   other branch and commit. A layer that holds extent or dirty rows of a
//!   file also holds that file's row, so reads visit only the layers where
//!   the file changed, however long the chain.
//! - **Retention.** A layer lives while a branch head, a commit or a child
//!   layer needs it. Deleting a branch, resetting one, or expiring automatic
//!   commits removes commits no branch reaches any more, deletes layers
//!   nothing needs (releasing their references) and folds a layer that only
//!   one child needs into that child. So `refcount` keeps meaning "map rows
//!   naming the key, in any layer", and GC frees exactly what no branch or
//!   retained commit can show.
//! - **Idempotency.** `release_lease` of a lease not held, `gc_forget` of a
//!   missing record, and `delete_file` of a file already gone (`NotFound`)
//!   never corrupt anything.

use bytes::Bytes;
use fsx_store::BoxFuture;

use crate::Result;

/// Identifier of a file, stable across renames and shared by every branch
/// that inherits the file; never reused.
pub type FileId = i64;

/// Identifier of a branch.
pub type BranchId = i64;

/// Identifier of a commit.
pub type CommitId = i64;

/// Identifier of a layer (see the module docs).
pub type LayerId = i64;

/// The branch every volume starts with, named [`MAIN_BRANCH_NAME`].
pub const MAIN_BRANCH: BranchId = 1;

/// Name of [`MAIN_BRANCH`].
pub const MAIN_BRANCH_NAME: &str = "main";

/// What a read sees: a branch's current state, or a commit (read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The head of a branch: its own writes over its base.
    Branch(BranchId),
    /// A commit, frozen.
    Commit(CommitId),
}

impl View {
    /// The head of `main`.
    pub const MAIN: View = View::Branch(MAIN_BRANCH);
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            View::Branch(b) => write!(f, "branch #{b}"),
            View::Commit(c) => write!(f, "commit {c}"),
        }
    }
}

/// A branch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BranchInfo {
    /// Identifier.
    pub id: BranchId,
    /// Unique name.
    pub name: String,
    /// Its mutable head layer.
    pub head: LayerId,
    /// Its latest commit (the parent of the next one), if any.
    pub commit: Option<CommitId>,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Time of its latest commit, or of its creation if none, ms.
    pub commit_ms: i64,
}

/// A commit: a frozen state of a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitInfo {
    /// Identifier, increasing with time.
    pub id: CommitId,
    /// The frozen layer it shows.
    pub layer: LayerId,
    /// The branch's previous commit.
    pub parent: Option<CommitId>,
    /// For a merge, the commit merged in.
    pub merged: Option<CommitId>,
    /// Name of the branch it was made on.
    pub branch: String,
    /// Message.
    pub message: String,
    /// Made automatically (by the commit interval or a branch creation);
    /// automatic commits can expire.
    pub auto: bool,
    /// Time, ms.
    pub created_ms: i64,
}

/// A layer, for retention planning and fsck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// Identifier.
    pub id: LayerId,
    /// The layer it shows through to.
    pub parent: Option<LayerId>,
    /// Frozen (a commit's or a shared base) rather than a branch head.
    pub frozen: bool,
}

/// Every layer, branch and commit of a volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerGraph {
    /// Layers, ascending by id.
    pub layers: Vec<LayerInfo>,
    /// Branches, ascending by name.
    pub branches: Vec<BranchInfo>,
    /// Commits, ascending by id.
    pub commits: Vec<CommitInfo>,
}

/// What only some layers hold: what deleting them would free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerUsage {
    /// Extents referenced by those layers and nothing else.
    pub extents: u64,
    /// Their bytes.
    pub extent_bytes: u64,
    /// Bytes of dirty pages those layers hold in the metadata engine.
    pub dirty_bytes: u64,
}

/// Settings of a volume, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeConfig {
    /// Random identifier of the volume.
    pub volume_id: String,
    /// Bytes of page data per extent: a power of two, 256 KiB to 16 MiB.
    pub extent_size: u32,
    /// URL of the data store, as given at creation.
    pub store_url: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
}

impl VolumeConfig {
    /// A configuration; `extent_size` is checked by [`crate::check_extent_size`].
    pub fn new(
        volume_id: impl Into<String>,
        extent_size: u32,
        store_url: impl Into<String>,
        created_ms: i64,
    ) -> Self {
        Self {
            volume_id: volume_id.into(),
            extent_size,
            store_url: store_url.into(),
            created_ms,
        }
    }
}

/// What a volume's metadata says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileMeta {
    /// Identifier, stable across renames.
    pub id: FileId,
    /// Name within the volume.
    pub name: String,
    /// Bytes per page.
    pub page_size: u32,
    /// Size in bytes.
    pub size: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Last write, ms since the Unix epoch.
    pub modified_ms: i64,
}

/// Who wants a lease, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseRequest {
    /// The branch the writer writes to.
    pub branch: BranchId,
    /// The file.
    pub file_id: FileId,
    /// Unique name of the writer (process and handle).
    pub holder: String,
    /// Current time, ms since the Unix epoch.
    pub now_ms: i64,
    /// How long the lease lasts without renewal.
    pub ttl_ms: i64,
    /// A holder the caller has proven dead, whose lease may be taken even if
    /// unexpired.
    pub break_holder: Option<String>,
}

impl LeaseRequest {
    /// A request for `holder` at `now_ms`, lasting `ttl_ms`, on `main`
    /// (see [`LeaseRequest::on_branch`]).
    pub fn new(file_id: FileId, holder: impl Into<String>, now_ms: i64, ttl_ms: i64) -> Self {
        Self {
            branch: MAIN_BRANCH,
            file_id,
            holder: holder.into(),
            now_ms,
            ttl_ms,
            break_holder: None,
        }
    }

    /// Writes to `branch` instead of `main`.
    pub fn on_branch(mut self, branch: BranchId) -> Self {
        self.branch = branch;
        self
    }

    /// Allows taking the lease from `holder`, known to be dead.
    pub fn break_holder(mut self, holder: Option<String>) -> Self {
        self.break_holder = holder;
        self
    }
}

/// The current holder of a file's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Holder name.
    pub holder: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_ms: i64,
}

/// A page written to the dirty buffer: bytes, or a hole (reads as zeros,
/// left out of the next extent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageWrite {
    /// Page number within the file.
    pub page_no: u64,
    /// Exactly one page of bytes, or `None` for a hole.
    pub data: Option<Bytes>,
}

/// One durable batch of writes to a file (the page store's `sync`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriteBatch {
    /// The writer's lease (renewed by the commit).
    pub lease: LeaseRequest,
    /// Pages to put in the dirty buffer.
    pub pages: Vec<PageWrite>,
    /// File size after the batch.
    pub size: u64,
    /// When shrinking: dirty pages with `page_no >= drop_pages_from` are
    /// removed before `pages` are applied.
    pub drop_pages_from: Option<u64>,
    /// When shrinking: map entries with `extent_idx >= drop_extents_from`
    /// are removed (their references released) before `pages` are applied.
    pub drop_extents_from: Option<u64>,
    /// Automatic commits: if the branch's head holds changes and its latest
    /// commit (or creation) is at least this old, the head is committed
    /// (automatic commit) before the batch is applied, in the same
    /// transaction.
    pub auto_commit_ms: Option<i64>,
}

impl WriteBatch {
    /// A batch under `lease` leaving the file `size` bytes long.
    pub fn new(lease: LeaseRequest, pages: Vec<PageWrite>, size: u64) -> Self {
        Self {
            lease,
            pages,
            size,
            drop_pages_from: None,
            drop_extents_from: None,
            auto_commit_ms: None,
        }
    }

    /// Commits the branch automatically first when its latest commit is at
    /// least `interval_ms` old (see [`WriteBatch::auto_commit_ms`]).
    pub fn auto_commit(mut self, interval_ms: Option<i64>) -> Self {
        self.auto_commit_ms = interval_ms.filter(|&ms| ms > 0);
        self
    }

    /// Drops dirty pages from `page_no` and extents from `extent_idx` on.
    pub fn shrink(mut self, page_no: u64, extent_idx: u64) -> Self {
        self.drop_pages_from = Some(page_no);
        self.drop_extents_from = Some(extent_idx);
        self
    }
}

/// A consistent view of part of a file, for reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadMap {
    /// File size in bytes.
    pub size: u64,
    /// Dirty pages in the requested range, ascending.
    pub dirty: Vec<PageWrite>,
    /// `(extent index, content key)` of map entries overlapping the range,
    /// ascending.
    pub extents: Vec<(u64, String)>,
}

/// A dirty page with the sequence of the batch that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyPage {
    /// Page number.
    pub page_no: u64,
    /// Batch sequence.
    pub seq: i64,
    /// Bytes, or `None` for a hole.
    pub data: Option<Bytes>,
    /// Shown through from a layer below the one being packed: part of the
    /// extent's content, but not the packed layer's to consume.
    pub inherited: bool,
}

/// One dirty-page row as [`MetaEngine::check_dirty_pages`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirtyPageCheck {
    /// The layer holding the row.
    pub layer: LayerId,
    /// The file.
    pub file_id: FileId,
    /// The page.
    pub page_no: u64,
    /// Whether the row is a hole.
    pub hole: bool,
    /// Whether the row matches its checksum ([`crate::checksum`]).
    pub intact: bool,
}

/// Everything the packer needs to rebuild one extent of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyExtent {
    /// File size when read.
    pub size: u64,
    /// The layer being packed (the branch head, or a commit's layer).
    pub layer: LayerId,
    /// The extent's current content key, if any (possibly a lower layer's).
    pub current_key: Option<String>,
    /// Dirty pages of the extent, ascending.
    pub pages: Vec<DirtyPage>,
}

/// Installs a packed extent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PackCommit {
    /// The writer's lease (checked when `layer` is a branch head).
    pub lease: LeaseRequest,
    /// The layer to install into: [`DirtyExtent::layer`].
    pub layer: LayerId,
    /// Extent index within the file.
    pub extent_idx: u64,
    /// The key the map entry must still hold (`None`: no entry).
    pub expected_key: Option<String>,
    /// The key to install (`None`: the extent became empty; remove the entry).
    pub new_key: Option<String>,
    /// `(page, seq)` of the dirty pages folded into the new extent.
    pub consumed: Vec<(u64, i64)>,
}

impl PackCommit {
    /// A commit replacing `expected_key` by `new_key` at `extent_idx` of
    /// `layer`.
    pub fn new(
        lease: LeaseRequest,
        layer: LayerId,
        extent_idx: u64,
        expected_key: Option<String>,
        new_key: Option<String>,
        consumed: Vec<(u64, i64)>,
    ) -> Self {
        Self {
            lease,
            layer,
            extent_idx,
            expected_key,
            new_key,
            consumed,
        }
    }
}

/// Lifecycle state of an extent record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentState {
    /// Referenced, pinned or waiting out its grace period.
    Live,
    /// Claimed by GC: its object is being deleted.
    Deleting,
}

/// An extent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentRecord {
    /// Content key.
    pub key: String,
    /// Number of map entries naming it.
    pub refcount: i64,
    /// Lifecycle state.
    pub state: ExtentState,
    /// Blob size in bytes.
    pub bytes: u64,
    /// Since when it has been idle (unreferenced or last pinned), ms.
    pub idle_since_ms: i64,
}

/// Per-file dirty state, for the packer and for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtySummary {
    /// Extent index.
    pub extent_idx: u64,
    /// Dirty pages in it.
    pub pages: u64,
}

/// Accumulated operation counters of one tier and operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// Tier name (`cold` for a volume's data store).
    pub tier: String,
    /// Operation name (`put`, `get`, `get_range`, `delete`, `head`, `list`).
    pub op: String,
    /// Calls made.
    pub calls: u64,
    /// Payload bytes moved (sent for puts, received for gets).
    pub bytes: u64,
}

/// How many extents the volume holds, and how many of them files use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtentTotals {
    /// Extent records (referenced, pinned or awaiting GC).
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Records with at least one reference.
    pub referenced_count: u64,
    /// Their bytes.
    pub referenced_bytes: u64,
}

/// State of one tier's copy of an extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// The tier holds a copy that verified when it was written or read.
    Present,
    /// A copy is wanted there: an entry of the replication queue.
    Queued,
}

/// A change to one tier's copy record (see [`MetaEngine::tier_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierMark {
    /// Content key of the extent.
    pub key: String,
    /// Tier name (`cache`, `kv`, `hot`, `cold`).
    pub tier: String,
    /// Blob size in bytes.
    pub bytes: u64,
    /// The new state.
    pub state: CopyState,
}

impl TierMark {
    /// A mark of `key` in `tier`.
    pub fn new(
        key: impl Into<String>,
        tier: impl Into<String>,
        bytes: u64,
        state: CopyState,
    ) -> Self {
        Self {
            key: key.into(),
            tier: tier.into(),
            bytes,
            state,
        }
    }
}

/// One tier's copy record of an extent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierCopy {
    /// Content key.
    pub key: String,
    /// Tier name.
    pub tier: String,
    /// Blob size in bytes.
    pub bytes: u64,
    /// Present, or queued for replication.
    pub state: CopyState,
    /// Failed copy attempts so far (queued records).
    pub attempts: u32,
    /// Earliest time of the next attempt, ms (queued records).
    pub next_ms: i64,
    /// The last attempt's error, if any.
    pub last_error: Option<String>,
}

/// Totals of one tier's copy records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierTotals {
    /// Tier name.
    pub tier: String,
    /// Present copies.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Queued copies (replication queue length for this tier).
    pub queued: u64,
}

/// Persisted access statistics of one extent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessStats {
    /// Reads that missed the in-memory cache.
    pub hits: u64,
    /// Time of the last such read, ms.
    pub last_ms: i64,
}

/// Names of the settings [`MetaEngine::set_setting`] refuses to change.
pub const RESERVED_SETTINGS: &[&str] = &[
    "schema_version",
    "volume_id",
    "extent_size",
    "store_url",
    "created_ms",
    "next_file_id",
    // The SQLite engine's count of rewrites of frozen layers.
    "layers.epoch",
];

/// Refuses a [`RESERVED_SETTINGS`] name or an empty one.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn check_setting_name(name: &str) -> Result<()> {
    if name.is_empty() || RESERVED_SETTINGS.contains(&name) {
        return Err(crate::MetaError::invalid(format!(
            "{name:?} cannot be set: it is empty or fixed at volume creation"
        )));
    }
    Ok(())
}

/// The metadata engine. See the module docs for the contract.
pub trait MetaEngine: fsx_store::MaybeSend + fsx_store::MaybeSync + std::fmt::Debug {
    /// Creates the schema and records `config`; `AlreadyExists` if the
    /// database already holds a volume.
    fn init_volume<'a>(&'a self, config: &'a VolumeConfig) -> BoxFuture<'a, Result<()>>;

    /// Checks the schema version (migrating an older one, refusing a newer
    /// one with `Unsupported`) and returns the configuration; `NotFound` if
    /// the database holds no volume.
    fn open_volume(&self) -> BoxFuture<'_, Result<VolumeConfig>>;

    /// Creates an empty file on a branch; `AlreadyExists` if the name is
    /// taken there.
    fn create_file<'a>(
        &'a self,
        branch: BranchId,
        name: &'a str,
        page_size: u32,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<FileMeta>>;

    /// The file called `name` in `view`, or `NotFound`.
    fn file<'a>(&'a self, view: View, name: &'a str) -> BoxFuture<'a, Result<FileMeta>>;

    /// Files of `view` whose names start with `prefix`, ascending by name.
    fn list_files<'a>(
        &'a self,
        view: View,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FileMeta>>>;

    /// Renames a file. If `to` exists it is replaced (its references are
    /// released) when `replace` is set, else `AlreadyExists`. Fails with
    /// `Busy` if either file has a live lease held by someone other than
    /// `holder`.
    fn rename_file<'a>(
        &'a self,
        branch: BranchId,
        from: &'a str,
        to: &'a str,
        replace: bool,
        holder: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes a file, its dirty pages and its map entries (releasing their
    /// references). `Busy` if someone other than `holder` has a live lease.
    fn delete_file<'a>(
        &'a self,
        branch: BranchId,
        name: &'a str,
        holder: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Takes or renews a file's lease.
    fn acquire_lease<'a>(&'a self, request: &'a LeaseRequest) -> BoxFuture<'a, Result<()>>;

    /// Releases a lease if `holder` holds it.
    fn release_lease<'a>(
        &'a self,
        branch: BranchId,
        file_id: FileId,
        holder: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// The current lease of a file on a branch, expired or not.
    fn lease(&self, branch: BranchId, file_id: FileId) -> BoxFuture<'_, Result<Option<LeaseInfo>>>;

    /// Durably applies a batch of writes (see [`WriteBatch`]).
    fn commit_writes<'a>(&'a self, batch: &'a WriteBatch) -> BoxFuture<'a, Result<()>>;

    /// A snapshot of pages `[first_page, first_page + count)` of a file;
    /// `pages_per_extent` maps pages to extent indices.
    fn read_map(
        &self,
        view: View,
        file_id: FileId,
        first_page: u64,
        count: u64,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<ReadMap>>;

    /// Dirty page counts (of the view's own layer) of the given extents of a
    /// file (those with none
    /// are left out), ascending. Cost grows with the extents asked about,
    /// not with the file's whole dirty buffer: the packer asks after every
    /// sync.
    fn dirty_counts<'a>(
        &'a self,
        view: View,
        file_id: FileId,
        pages_per_extent: u64,
        extents: &'a [u64],
    ) -> BoxFuture<'a, Result<Vec<DirtySummary>>>;

    /// Extents of a file with dirty pages of the view's own layer,
    /// ascending.
    fn dirty_summary(
        &self,
        view: View,
        file_id: FileId,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<Vec<DirtySummary>>>;

    /// The dirty pages and current key of one extent of a file, as the
    /// view's own layer shows them (see [`DirtyExtent`]).
    fn dirty_extent(
        &self,
        view: View,
        file_id: FileId,
        extent_idx: u64,
        pages_per_extent: u64,
    ) -> BoxFuture<'_, Result<DirtyExtent>>;

    /// Every dirty-page row after `after` (`(layer, file, page)`, ascending
    /// in that order), at most `limit`, each checked against its checksum:
    /// how `fsck` verifies the dirty buffer and counts what is unpacked.
    /// A damaged row is reported (`intact: false`), not an error.
    fn check_dirty_pages(
        &self,
        after: Option<(LayerId, FileId, u64)>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DirtyPageCheck>>>;

    /// Ensures a live record for `key` and restarts its idle clock;
    /// `Conflict` if GC is deleting it.
    fn pin_extent<'a>(&'a self, key: &'a str, bytes: u64, now_ms: i64)
    -> BoxFuture<'a, Result<()>>;

    /// Installs a packed extent (see [`PackCommit`]).
    fn commit_pack<'a>(&'a self, commit: &'a PackCommit) -> BoxFuture<'a, Result<()>>;

    /// Claims up to `limit` records with refcount 0 idle since before
    /// `now_ms - grace_ms`, marking them deleting; returns their keys.
    fn gc_claim(
        &self,
        now_ms: i64,
        grace_ms: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>>>;

    /// Claims a store object that has no record (an orphan) by creating a
    /// deleting record; `false` if a record exists (it is not an orphan).
    fn gc_claim_orphan<'a>(&'a self, key: &'a str, now_ms: i64) -> BoxFuture<'a, Result<bool>>;

    /// Removes a deleting record once its object is gone.
    fn gc_forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Extent records with keys after `after`, ascending, at most `limit`.
    fn list_extents<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ExtentRecord>>>;

    /// Adds `deltas` to the volume's persistent operation counters (summing
    /// by tier and operation).
    fn add_counters<'a>(&'a self, deltas: &'a [Counter]) -> BoxFuture<'a, Result<()>>;

    /// The volume's operation counters, sorted by tier and operation.
    fn counters(&self) -> BoxFuture<'_, Result<Vec<Counter>>>;

    /// Totals over the extent records.
    fn extent_totals(&self) -> BoxFuture<'_, Result<ExtentTotals>>;

    /// The number of map entries naming each key, for keys after `after`,
    /// ascending, at most `limit` keys.
    fn count_references<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, i64)>>>;

    /// The engine's own hot tier (extents as rows of its database, parts of
    /// at most `max_row_bytes`), or `None` if the engine has none.
    fn hot_tier(
        &self,
        max_row_bytes: usize,
    ) -> Result<Option<std::sync::Arc<dyn fsx_store::ExtentBackend>>>;

    /// A volume setting, or `None` if never set.
    fn setting<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>>>;

    /// Sets a volume setting; `InvalidInput` for a [`RESERVED_SETTINGS`]
    /// name.
    fn set_setting<'a>(&'a self, name: &'a str, value: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Applies copy records atomically (see the module docs): `Present`
    /// upserts and clears any queue state; `Queued` inserts with
    /// `next_ms = now_ms` unless a record exists.
    fn tier_record<'a>(&'a self, marks: &'a [TierMark], now_ms: i64) -> BoxFuture<'a, Result<()>>;

    /// Records a failed copy attempt: attempts + 1, the next attempt not
    /// before `next_ms`. No effect unless the record is queued.
    fn tier_retry<'a>(
        &'a self,
        key: &'a str,
        tier: &'a str,
        next_ms: i64,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes the copy record of `key` in `tier`, or every record, the
    /// access statistics and the page digests of `key` when `tier` is
    /// `None`.
    fn tier_forget<'a>(&'a self, key: &'a str, tier: Option<&'a str>) -> BoxFuture<'a, Result<()>>;

    /// Every copy record of `key`.
    fn tier_copies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<TierCopy>>>;

    /// Copy records of `tier` with keys after `after`, ascending, at most
    /// `limit`.
    fn tier_list<'a>(
        &'a self,
        tier: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TierCopy>>>;

    /// Queued records whose `next_ms <= now_ms`, oldest first, at most
    /// `limit`.
    fn tier_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<TierCopy>>>;

    /// Totals per tier, sorted by tier name.
    fn tier_totals(&self) -> BoxFuture<'_, Result<Vec<TierTotals>>>;

    /// Adds `hits` reads of `key` at `now_ms` to its access statistics.
    fn touch_extent<'a>(
        &'a self,
        key: &'a str,
        hits: u64,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// The access statistics of `key` (zero if never read).
    fn extent_access<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<AccessStats>>;

    /// Stores the page digests of `key` (opaque to the engine; written by
    /// the tiering layer so single pages read by range can be verified),
    /// replacing any earlier ones.
    fn set_extent_digests<'a>(
        &'a self,
        key: &'a str,
        digests: &'a [u8],
    ) -> BoxFuture<'a, Result<()>>;

    /// The page digests of `key`, if stored.
    fn extent_digests<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Creates branch `name` from a branch head (committing that head first
    /// if it holds changes) or from a commit; O(1). `AlreadyExists` if the
    /// name is taken, `InvalidInput` if it is not a valid branch name.
    fn create_branch<'a>(
        &'a self,
        name: &'a str,
        from: View,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<BranchInfo>>;

    /// The branch called `name`, or `NotFound`.
    fn branch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<BranchInfo>>;

    /// Every branch, ascending by name.
    fn branches(&self) -> BoxFuture<'_, Result<Vec<BranchInfo>>>;

    /// Deletes a branch and whatever only it needed (see "Retention").
    /// `InvalidInput` for `main`, `Busy` while a writer holds a live lease on
    /// it.
    fn delete_branch<'a>(&'a self, name: &'a str, now_ms: i64) -> BoxFuture<'a, Result<()>>;

    /// Commits a branch's head. With `auto` and nothing changed since the
    /// latest commit, does nothing and returns `None`.
    fn commit<'a>(
        &'a self,
        branch: BranchId,
        message: &'a str,
        auto: bool,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Option<CommitInfo>>>;

    /// The commit `id`, or `NotFound`.
    fn commit_info(&self, id: CommitId) -> BoxFuture<'_, Result<CommitInfo>>;

    /// Points a branch at a commit, discarding its head's changes; `Busy`
    /// while a writer holds a live lease on the branch.
    fn reset_branch(
        &self,
        branch: BranchId,
        to: CommitId,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<()>>;

    /// Removes automatic commits made before `before_ms` that are not a
    /// branch's latest commit, then collects layers; returns how many
    /// commits were removed.
    fn expire_commits(&self, before_ms: i64, now_ms: i64) -> BoxFuture<'_, Result<u64>>;

    /// Makes `files` on `target` what they are in `source` (absent there:
    /// deleted), then commits `target` with `merged` as the second parent,
    /// all in one transaction. `Busy` if a writer holds a live lease on any
    /// of those files on `target`.
    fn merge_files<'a>(
        &'a self,
        target: BranchId,
        source: View,
        files: &'a [FileId],
        message: &'a str,
        merged: CommitId,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<CommitInfo>>;

    /// Every layer, branch and commit.
    fn layer_graph(&self) -> BoxFuture<'_, Result<LayerGraph>>;

    /// What only `layers` hold (see [`LayerUsage`]).
    fn layer_usage<'a>(&'a self, layers: &'a [LayerId]) -> BoxFuture<'a, Result<LayerUsage>>;
}
