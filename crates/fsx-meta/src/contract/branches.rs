//! Branches and history: branches, commits, layers, merge support and
//! expiry.

use fsx_store::BoxFuture;

use super::{
    BranchId, BranchInfo, CommitId, CommitInfo, CommitRequest, FileId, LayerGraph, LayerId,
    LayerUsage, View,
};
use crate::Result;

/// Branches, commits and the layers under them.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]).
///
/// - **Branches and layers** (schema version 4). A volume's state is a tree
///   of **layers**. Every row of the file table, the extent map and the
///   dirty buffer belongs to one layer; a layer has at most one parent, and
///   what a layer *shows* is its own rows over what its parent shows, with
///   the layer's truncation cuts and deletions hiding parent rows (see
///   `crate::resolve`). A **branch** names a mutable head layer; every
///   write goes to the head of the branch it names. A **commit** names a
///   frozen layer. Committing freezes the head and gives the branch a new,
///   empty head on top of it; creating a branch commits its source (if the
///   head holds changes) and gives the new branch an empty head on top of
///   the same frozen layer. So both are O(1): no page map or data is copied,
///   and a frozen layer never changes what it shows (packing may change how
///   it stores it). Writes on one branch are therefore invisible to every
///   other branch and commit. A layer that holds extent or dirty rows of a
///   file also holds that file's row, so reads visit only the layers where
///   the file changed, however long the chain.
/// - **Commit ids are never reused** (schema version 5): an id, once
///   handed out, names that commit or nothing, whatever resets, branch
///   deletions, folds and expiries removed since.
/// - **Retention.** A layer lives while a branch head, a commit or a child
///   layer needs it. Deleting a branch, resetting one, or expiring automatic
///   commits removes commits no branch reaches any more, deletes layers
///   nothing needs (releasing their references) and folds a layer that only
///   one child needs into that child. So `refcount` keeps meaning "map rows
///   naming the key, in any layer", and GC frees exactly what no branch or
///   retained commit can show.
pub trait MetaBranches {
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

    /// Commits a branch's head (see [`CommitRequest`]). An automatic commit
    /// with nothing changed since the latest commit does nothing and returns
    /// `None`.
    fn commit<'a>(
        &'a self,
        request: CommitRequest<'a>,
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
