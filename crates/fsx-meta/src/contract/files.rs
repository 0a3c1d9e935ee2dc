//! Files and pages: files, writer leases, durable writes, read maps, the
//! dirty-page buffer and packing.

use fsx_store::BoxFuture;

use super::{
    BranchId, DirtyExtent, DirtyPageCheck, DirtyPageCursor, DirtySummary, FileId, FileMeta,
    FileRename, LeaseInfo, LeaseRequest, PackCommit, ReadMap, View, WriteBatch,
};
use crate::Result;

/// Files and their pages: what the page store reads and writes.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]).
///
/// - **Leases.** A file has at most one writer. [`MetaFiles::acquire_lease`]
///   grants the lease when it is free, expired, held by the same holder, or
///   held by `break_holder` (a holder the caller has proven dead); otherwise
///   it fails with `Busy`. [`MetaFiles::commit_writes`] and
///   [`MetaFiles::commit_pack`] fail with `Busy` unless the caller holds the
///   lease (an expired lease nobody else took still counts, and is renewed).
///   After either returns `Ok` at `now_ms`, the lease lasts at least until
///   `now_ms + ttl_ms / 2`: it is renewed once less than half its time is
///   left. Reads never need a lease and are never blocked by one.
/// - **Reads are snapshots.** [`MetaFiles::read_map`] returns the size, dirty
///   pages and extent keys of one consistent state.
/// - **Write sequence.** Every `commit_writes` batch gets a sequence number
///   larger than any before it for that file; a dirty page carries the
///   sequence of the batch that wrote it last.
/// - **Dirty pages are checked** (schema version 5). Every dirty-page row
///   carries a checksum ([`crate::checksum`]) written with it; every read
///   that returns a dirty page's bytes verifies it first and fails with
///   `Corrupt` (naming file, page and layer) instead of returning wrong
///   bytes.
/// - **Packing is optimistic.** [`MetaFiles::commit_pack`] installs a new
///   extent only if the map entry still holds the expected key and the new
///   key's record is live, and removes exactly the dirty pages whose
///   `(page, seq)` it consumed; pages rewritten since stay dirty. A failed
///   precondition is `Conflict`, and nothing changes.
/// - **Idempotency.** `release_lease` of a lease not held and `delete_file`
///   of a file already gone (`NotFound`) never corrupt anything.
pub trait MetaFiles {
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

    /// The file with id `id` in `view` (named by its label: use the tree
    /// for its paths), or `NotFound`.
    fn file_by_id(&self, view: View, id: FileId) -> BoxFuture<'_, Result<FileMeta>>;

    /// Files of `view` whose names start with `prefix`, ascending by name.
    fn list_files<'a>(
        &'a self,
        view: View,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FileMeta>>>;

    /// Renames a file (see [`FileRename`]). If `to` exists it is replaced
    /// (its references are released) when `replace` is set, else
    /// `AlreadyExists`. Fails with `Busy` if either file has a live lease
    /// held by someone other than `holder`.
    fn rename_file<'a>(&'a self, rename: FileRename<'a>) -> BoxFuture<'a, Result<()>>;

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

    /// Every dirty-page row after `after` (ordered by `(layer, file, page)`,
    /// ascending; [`DirtyPageCheck::cursor`] of the last row resumes), at
    /// most `limit`, each checked against its checksum: how `fsck` verifies
    /// the dirty buffer and counts what is unpacked.
    /// A damaged row is reported (`intact: false`), not an error.
    fn check_dirty_pages(
        &self,
        after: Option<DirtyPageCursor>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<DirtyPageCheck>>>;

    /// Installs a packed extent (see [`PackCommit`]).
    fn commit_pack<'a>(&'a self, commit: &'a PackCommit) -> BoxFuture<'a, Result<()>>;
}
