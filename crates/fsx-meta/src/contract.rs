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
//!   [`MetaFiles::commit_writes`]. A dirty entry overrides the extent map.
//!
//! Every content key that any map entry names has an **extent record** whose
//! `refcount` equals the number of map entries naming it. Records with
//! refcount 0 are candidates for garbage collection.
//!
//! # Contract
//!
//! The contract is split by family, one trait each, with its own
//! "Contract" section:
//!
//! | trait | family |
//! |---|---|
//! | [`MetaSettings`] | volume creation and opening, settings, operation counters |
//! | [`MetaFiles`] | files, leases, writes, read maps, dirty pages, packing |
//! | [`MetaExtents`] | extent records, upload pins, GC, the reference audit |
//! | [`MetaTiers`] | the hot tier, copy records and the replication queue, digests, access statistics |
//! | [`MetaBranches`] | branches, commits, layers, merges, expiry |
//! | [`MetaTree`] | the file tree: inodes, entries, links, symlinks, extended attributes, orphans |
//! | [`MetaChanges`] | the change feed: every change of content, numbered in the transaction that made it |
//! | [`MetaTokens`] | the API tokens `fsx serve` accepts (hashed secrets, scopes, revocation) |
//!
//! [`MetaEngine`] is their sum; callers import [`crate::prelude`]. What
//! holds for every method of every family:
//!
//! Each method is one atomic transaction: after it returns `Ok` its effects
//! are durable (they survive a crash of the process or machine) and visible
//! to every later call on any engine instance of the same volume; after it
//! returns `Err` it has changed nothing. The one exception is opt-in: tree
//! changes of an instance told to [`MetaTree::defer_durability`] are
//! durable at its next barrier (see [`MetaTree`]'s "Durability").

use bytes::Bytes;

use crate::Result;

mod branches;
mod changes;
mod extents;
mod files;
mod settings;
mod tiers;
mod tokens;
mod tree;

pub use branches::MetaBranches;
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unused_imports)
)]
pub(crate) use changes::NewChange;
pub use changes::{Change, ChangeKind, DEFAULT_CHANGES_KEPT, MetaChanges};
pub use extents::MetaExtents;
pub use files::MetaFiles;
pub use settings::MetaSettings;
pub use tiers::MetaTiers;
pub use tokens::{MetaTokens, TOKEN_LABEL_MAX, TOKEN_SCOPES, TokenInfo, TokenRecord};
pub use tree::{
    Attr, ByteLock, DirEntry, Ino, LockKind, MakeNode, MetaTree, NewLease, NodeKind, Orphan,
    SetAttr, SetTime, TreeNode, Unlinked,
};

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
    /// Whole extents the batch writes straight to the store, applied after
    /// the drops and before `pages` (see [`ExtentWrite`]).
    pub extents: Vec<ExtentWrite>,
}

/// A whole extent a writer encoded and stored itself instead of putting
/// its pages in the dirty buffer: in the head, the extent's map entry
/// becomes `key` (which the writer pinned with
/// [`MetaExtents::pin_extent`] before
/// uploading it) and the head's dirty pages `pages` (the extent's whole
/// page range) are dropped, since the extent replaces all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentWrite {
    /// Extent index within the file.
    pub extent_idx: u64,
    /// The extent's content key.
    pub key: String,
    /// The pages the extent covers, `[first, end)`.
    pub pages: std::ops::Range<u64>,
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
            extents: Vec::new(),
        }
    }

    /// Installs whole extents too (see [`WriteBatch::extents`]).
    pub fn with_extents(mut self, extents: Vec<ExtentWrite>) -> Self {
        self.extents = extents;
        self
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

/// One dirty-page row as [`MetaFiles::check_dirty_pages`] found it.
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

/// A rename (see [`MetaFiles::rename_file`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileRename<'a> {
    /// The branch the rename is made on.
    pub branch: BranchId,
    /// The file's current name.
    pub from: &'a str,
    /// Its new name.
    pub to: &'a str,
    /// Replace `to` if it exists (its references are released); otherwise
    /// an existing `to` is `AlreadyExists`.
    pub replace: bool,
    /// The caller's lease holder name: a live lease of anyone else on either
    /// file is `Busy`.
    pub holder: &'a str,
    /// Current time, ms since the Unix epoch.
    pub now_ms: i64,
}

impl<'a> FileRename<'a> {
    /// Renames `from` to `to` on `branch`, refusing to replace an existing
    /// `to` (see [`FileRename::replace`]).
    pub fn new(branch: BranchId, from: &'a str, to: &'a str, holder: &'a str, now_ms: i64) -> Self {
        Self {
            branch,
            from,
            to,
            replace: false,
            holder,
            now_ms,
        }
    }

    /// Whether an existing `to` is replaced.
    pub fn replace(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }
}

/// Where [`MetaFiles::check_dirty_pages`] resumes: the position of the last
/// row of the previous batch, `(layer, file, page)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirtyPageCursor {
    /// The layer.
    pub layer: LayerId,
    /// The file.
    pub file_id: FileId,
    /// The page.
    pub page_no: u64,
}

impl DirtyPageCheck {
    /// The cursor that resumes a scan after this row.
    pub fn cursor(&self) -> DirtyPageCursor {
        DirtyPageCursor {
            layer: self.layer,
            file_id: self.file_id,
            page_no: self.page_no,
        }
    }
}

/// A commit of a branch's head (see [`MetaBranches::commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitRequest<'a> {
    /// The branch whose head is committed.
    pub branch: BranchId,
    /// The commit message.
    pub message: &'a str,
    /// An automatic commit ([`CommitInfo::auto`], which can expire): made
    /// only if the head changed since the branch's latest commit.
    pub auto: bool,
    /// Current time, ms since the Unix epoch.
    pub now_ms: i64,
    /// Files whose content lives outside the metadata while a writer has
    /// them open (the page store's local journals): each is written into
    /// the head as `pages` and `size` before the head is frozen, and left
    /// empty in the new head while its writer lives
    /// ([`JournalSnapshot::live`]), all in the commit's transaction. So the
    /// commit holds the file as it was, and the head never holds a copy
    /// that the writer's later bytes have made stale.
    pub journals: &'a [JournalSnapshot],
}

/// The whole content of a file kept outside the metadata, as of now (see
/// [`CommitRequest::journals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSnapshot {
    /// The file.
    pub file_id: FileId,
    /// Every page of the content, whole (the last one zero-padded).
    pub pages: Vec<PageWrite>,
    /// The content's length in bytes.
    pub size: u64,
    /// Whether a writer may still change the content (its lease is held by
    /// a process that runs): the new head then shows the file empty, so it
    /// never holds a copy the writer's later bytes make stale. A journal
    /// nobody writes any more stays in the new head as it is.
    pub live: bool,
}

impl<'a> CommitRequest<'a> {
    /// An explicit commit of `branch`: always made, even with nothing
    /// changed.
    pub fn new(branch: BranchId, message: &'a str, now_ms: i64) -> Self {
        Self {
            branch,
            message,
            auto: false,
            now_ms,
            journals: &[],
        }
    }

    /// Folds `journals` into the commit (see [`CommitRequest::journals`]).
    pub fn journals(mut self, journals: &'a [JournalSnapshot]) -> Self {
        self.journals = journals;
        self
    }

    /// Makes it an automatic commit (see [`CommitRequest::auto`]).
    pub fn automatic(mut self) -> Self {
        self.auto = true;
        self
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

/// A change to one tier's copy record (see [`MetaTiers::tier_record`]).
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

/// Names of the settings [`MetaSettings::set_setting`] refuses to change.
pub const RESERVED_SETTINGS: &[&str] = &[
    "schema_version",
    "volume_id",
    "extent_size",
    "store_url",
    "created_ms",
    "next_file_id",
    "next_commit_id",
    // The inode number of the tree's root (schema version 6).
    "root_ino",
    // The SQLite engine's count of rewrites of frozen layers.
    "layers.epoch",
    // The greatest change number the feed forgot (schema version 8).
    "changes.pruned",
    // What makes a durable commit flush the deferred ones before it.
    "durability.barrier",
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

/// The metadata engine: the sum of the family traits, each with its own
/// "Contract" section ([`MetaSettings`], [`MetaFiles`], [`MetaExtents`],
/// [`MetaTiers`], [`MetaBranches`], [`MetaTree`]); see the module docs for
/// what holds across all of them.
///
/// Implemented for every type that implements all six, so an engine
/// implements the families and `Arc<dyn MetaEngine>` keeps working. Import
/// [`crate::prelude`] to call the families' methods.
pub trait MetaEngine:
    MetaSettings
    + MetaFiles
    + MetaExtents
    + MetaTiers
    + MetaBranches
    + MetaTree
    + MetaTokens
    + MetaChanges
    + fsx_store::MaybeSend
    + fsx_store::MaybeSync
    + std::fmt::Debug
{
}

impl<T> MetaEngine for T where
    T: MetaSettings
        + MetaFiles
        + MetaExtents
        + MetaTiers
        + MetaBranches
        + MetaTree
        + MetaTokens
        + MetaChanges
        + fsx_store::MaybeSend
        + fsx_store::MaybeSync
        + std::fmt::Debug
        + ?Sized
{
}
