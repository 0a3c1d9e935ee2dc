//! Branches and history, written once for every engine
//! ([`crate::contract::MetaBranches`]): creating, resetting and deleting
//! branches, commits, expiry and merges.
//!
//! # Invariants
//!
//! - Every transaction here that changes the layer graph (a head, a layer,
//!   a commit, a branch) takes [`Lock::Graph`] exclusive before it reads
//!   anything, so its checks (the name is free, no writer holds a lease,
//!   the commit exists) still hold when it acts.
//! - Commit ids are never reused (see [`layers::commit_branch`]), and
//!   whatever a change leaves unreachable is collected in the same
//!   transaction ([`layers::collect`]).

use super::files;
use super::layers::{self, CommitKind};
use super::{Lock, Tx, args, changes};
use crate::contract::{
    BranchId, BranchInfo, ChangeKind, CommitId, CommitInfo, FileId, JournalSnapshot, MAIN_BRANCH,
    NewChange, View,
};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::num;

/// The statements of this family (branch columns: see [`layers::Q`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(name, head, commit, now_ms)`: a new branch, created and committed
    /// at `now_ms`.
    InsertBranch,
    /// `(id)`: deletes a branch.
    DeleteBranch,
    /// `(branch)`: deletes every lease on a branch.
    DeleteBranchLeases,
    /// `(id, head, commit, commit_ms)`: points a branch at a commit with a
    /// new head.
    ResetBranch,
    /// `(id, parent, merged)`: a commit's new parents.
    Relink,
}

/// A forced commit that returned nothing: [`layers::commit_branch`]
/// always commits when forced, so this is a bug, not bad input.
fn forced_commit_made_nothing() -> MetaError {
    MetaError::new(MetaErrorKind::Other, "forced commit made nothing")
}

/// Creates branch `name` from `from` (see
/// [`crate::MetaBranches::create_branch`]); the caller checked the name.
pub(crate) async fn create_branch(
    tx: &impl Tx,
    name: &str,
    from: View,
    now_ms: i64,
) -> Result<BranchInfo> {
    tx.lock(Lock::Graph { exclusive: true }).await?;
    if layers::branch_named(tx, name).await?.is_some() {
        return Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("branch {name:?} already exists"),
        ));
    }
    // A branch point committed on the source branch is a change of it.
    let mut branch_point = None;
    let (base_layer, base_commit) = match from {
        View::Commit(c) => (layers::commit(tx, c).await?.layer, Some(c)),
        View::Branch(b) => {
            let src = layers::branch(tx, b).await?;
            let parent = layers::layer_parent(tx, src.head)
                .await?
                .and_then(|(p, _)| p);
            match parent {
                // An unchanged head shows what its parent does: branch from
                // the parent, without a commit.
                Some(p) if layers::is_empty(tx, src.head).await? => (p, src.commit),
                _ => {
                    let message = format!("branch point of {name}");
                    let kind = CommitKind {
                        message: &message,
                        auto: true,
                        merged: None,
                        force: true,
                    };
                    let c = layers::commit_branch(tx, b, kind, now_ms)
                        .await?
                        .ok_or_else(forced_commit_made_nothing)?;
                    branch_point = Some((b, c.id));
                    (c.layer, Some(c.id))
                }
            }
        }
    };
    let head = layers::new_layer(tx, Some(base_layer), now_ms).await?;
    tx.exec(
        Q::InsertBranch.into(),
        args![name, head, base_commit, now_ms],
    )
    .await?;
    let made = layers::branch_named(tx, name)
        .await?
        .ok_or_else(|| MetaError::new(MetaErrorKind::Other, "branch vanished"))?;
    if let Some((b, c)) = branch_point {
        let change = NewChange::new(ChangeKind::Commit, b, now_ms).commit(Some(c));
        changes::record(tx, change).await?;
    }
    let change = NewChange::new(ChangeKind::BranchCreate, made.id, now_ms).commit(base_commit);
    changes::record(tx, change).await?;
    Ok(made)
}

/// The branch called `name`, or `NotFound`.
pub(crate) async fn branch_named(tx: &impl Tx, name: &str) -> Result<BranchInfo> {
    layers::branch_named(tx, name).await?.ok_or_else(|| {
        MetaError::not_found(format!(
            "no branch {name:?} (`fsx branch list` shows the branches)"
        ))
    })
}

pub(crate) async fn delete_branch(tx: &impl Tx, name: &str, now_ms: i64) -> Result<()> {
    tx.lock(Lock::Graph { exclusive: true }).await?;
    let br = layers::branch_named(tx, name)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no branch {name:?}")))?;
    if br.id == MAIN_BRANCH {
        return Err(MetaError::invalid(
            "the main branch cannot be deleted (reset it to a commit instead)",
        ));
    }
    layers::check_no_writers(tx, &br, None, now_ms).await?;
    tx.exec(Q::DeleteBranchLeases.into(), args![br.id]).await?;
    tx.exec(Q::DeleteBranch.into(), args![br.id]).await?;
    layers::collect(tx, now_ms).await?;
    changes::record(tx, NewChange::new(ChangeKind::BranchDelete, br.id, now_ms)).await
}

/// Commits a branch's head (see [`crate::MetaBranches::commit`]): an
/// explicit commit is always made, an automatic one only over changes.
pub(crate) async fn commit(
    tx: &impl Tx,
    branch: BranchId,
    message: &str,
    auto: bool,
    journals: &[JournalSnapshot],
    now_ms: i64,
) -> Result<Option<CommitInfo>> {
    tx.lock(Lock::Graph { exclusive: true }).await?;
    let ids: Vec<FileId> = journals.iter().map(|j| j.file_id).collect();
    if !ids.is_empty() {
        tx.lock(Lock::Files(branch, &ids)).await?;
    }
    // The journals' content goes into the layer this commit freezes (over
    // whatever lower layers held), and the new head shows the live ones
    // empty again: their writers keep the content outside until they close.
    for j in journals {
        let content = files::HeadWrite {
            pages: &j.pages,
            size: j.size,
            drop_pages_from: Some(0),
            drop_extents_from: Some(0),
            extents: &[],
        };
        files::write_head(tx, branch, j.file_id, &content, now_ms).await?;
    }
    let kind = CommitKind {
        message,
        auto,
        merged: None,
        force: !auto,
    };
    let made = layers::commit_branch(tx, branch, kind, now_ms).await?;
    if made.is_some() {
        for j in journals.iter().filter(|j| j.live) {
            let empty = files::HeadWrite {
                pages: &[],
                size: 0,
                drop_pages_from: Some(0),
                drop_extents_from: Some(0),
                extents: &[],
            };
            files::write_head(tx, branch, j.file_id, &empty, now_ms).await?;
        }
    }
    if let Some(c) = &made {
        let change = NewChange::new(ChangeKind::Commit, branch, now_ms).commit(Some(c.id));
        changes::record(tx, change).await?;
    }
    Ok(made)
}

pub(crate) async fn reset_branch(
    tx: &impl Tx,
    branch: BranchId,
    to: CommitId,
    now_ms: i64,
) -> Result<()> {
    tx.lock(Lock::Graph { exclusive: true }).await?;
    let br = layers::branch(tx, branch).await?;
    layers::check_no_writers(tx, &br, None, now_ms).await?;
    let target = layers::commit(tx, to).await?;
    let head = layers::new_layer(tx, Some(target.layer), now_ms).await?;
    tx.exec(Q::ResetBranch.into(), args![branch, head, to, now_ms])
        .await?;
    tx.exec(Q::DeleteBranchLeases.into(), args![branch]).await?;
    layers::collect(tx, now_ms).await?;
    let reset = NewChange::new(ChangeKind::Reset, branch, now_ms).commit(Some(to));
    changes::record(tx, reset).await
}

/// Removes the automatic commits before `before_ms` that no branch points
/// at, relinking their descendants past them; returns how many went.
pub(crate) async fn expire_commits(tx: &impl Tx, before_ms: i64, now_ms: i64) -> Result<u64> {
    tx.lock(Lock::Graph { exclusive: true }).await?;
    let g = layers::graph(tx).await?;
    let gone = crate::graph::expirable(&g, before_ms);
    for (id, parent, merged) in crate::graph::relink(&g, &gone) {
        tx.exec(Q::Relink.into(), args![id, parent, merged]).await?;
    }
    if !gone.is_empty() {
        let ids: Vec<CommitId> = gone.iter().copied().collect();
        tx.exec(layers::Q::DeleteCommits.into(), args![&ids])
            .await?;
    }
    layers::collect(tx, now_ms).await?;
    Ok(num::count(gone.len()))
}

/// Makes `files` on `target` what `source` shows, then commits `target`
/// with `merged` as second parent (see [`crate::MetaBranches::merge_files`]).
pub(crate) async fn merge_files(
    tx: &impl Tx,
    target: BranchId,
    source: View,
    files: &[FileId],
    message: &str,
    merged: CommitId,
    now_ms: i64,
) -> Result<CommitInfo> {
    tx.lock(Lock::Graph { exclusive: true }).await?;
    let br = layers::branch(tx, target).await?;
    // `merged` must exist: a commit whose second parent is gone would
    // name a state no one can read.
    layers::commit(tx, merged).await?;
    let target_chain = layers::chain(tx, br.head).await?;
    let source_chain = layers::view_chain(tx, source).await?;
    for &id in files {
        layers::check_no_writers(tx, &br, Some(id), now_ms).await?;
        layers::copy_file(tx, &br, &target_chain, &source_chain, id, now_ms).await?;
        super::tree::copy_links(
            tx,
            &target_chain,
            &source_chain,
            id,
            now_ms.saturating_mul(1_000_000),
        )
        .await?;
    }
    let kind = CommitKind {
        message,
        auto: false,
        merged: Some(merged),
        force: true,
    };
    let made = layers::commit_branch(tx, target, kind, now_ms)
        .await?
        .ok_or_else(forced_commit_made_nothing)?;
    // Each file taken, then the merge itself: a follower learns which
    // files to read again, and the commit that holds them.
    for &id in files {
        let change = NewChange::new(ChangeKind::Data, target, now_ms).ino(id);
        changes::record(tx, change).await?;
    }
    let change = NewChange::new(ChangeKind::Merge, target, now_ms).commit(Some(made.id));
    changes::record(tx, change).await?;
    Ok(made)
}

/// `impl MetaBranches for $engine`: each method one transaction of the
/// engine's `run` over the functions above (`$mode`: see [`super::run`]).
/// Reads run [`super::TxKind::Read`], changes [`super::TxKind::Write`].
macro_rules! impl_meta_branches {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            impl MetaBranches for $engine {
                fn create_branch<'a>(
                    &'a self,
                    name: &'a str,
                    from: View,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<BranchInfo>> {
                    // Checked before any transaction: a bad name is the
                    // caller's error whatever state the database is in.
                    if let Err(e) = $crate::resolve::check_branch_name(name) {
                        return Box::pin(std::future::ready(Err(e)));
                    }
                    run!($mode, self, Write, |tx| branches::create_branch(
                        tx, name, from, now_ms
                    )
                    .await)
                }

                fn branch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<BranchInfo>> {
                    run!($mode, self, Read, |tx| branches::branch_named(tx, name)
                        .await)
                }

                fn branches(&self) -> BoxFuture<'_, Result<Vec<BranchInfo>>> {
                    run!($mode, self, Read, |tx| layers::branches(tx).await)
                }

                fn delete_branch<'a>(
                    &'a self,
                    name: &'a str,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| branches::delete_branch(
                        tx, name, now_ms
                    )
                    .await)
                }

                fn commit<'a>(
                    &'a self,
                    request: CommitRequest<'a>,
                ) -> BoxFuture<'a, Result<Option<CommitInfo>>> {
                    let CommitRequest {
                        branch,
                        message,
                        auto,
                        now_ms,
                        journals,
                    } = request;
                    run!($mode, self, Write, |tx| branches::commit(
                        tx, branch, message, auto, journals, now_ms
                    )
                    .await)
                }

                fn commit_info(&self, id: CommitId) -> BoxFuture<'_, Result<CommitInfo>> {
                    run!($mode, self, Read, |tx| layers::commit(tx, id).await)
                }

                fn reset_branch(
                    &self,
                    branch: BranchId,
                    to: CommitId,
                    now_ms: i64,
                ) -> BoxFuture<'_, Result<()>> {
                    run!($mode, self, Write, |tx| branches::reset_branch(
                        tx, branch, to, now_ms
                    )
                    .await)
                }

                fn expire_commits(
                    &self,
                    before_ms: i64,
                    now_ms: i64,
                ) -> BoxFuture<'_, Result<u64>> {
                    run!($mode, self, Write, |tx| branches::expire_commits(
                        tx, before_ms, now_ms
                    )
                    .await)
                }

                fn merge_files<'a>(
                    &'a self,
                    target: BranchId,
                    source: View,
                    files: &'a [FileId],
                    message: &'a str,
                    merged: CommitId,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<CommitInfo>> {
                    run!($mode, self, Write, |tx| {
                        branches::merge_files(tx, target, source, files, message, merged, now_ms)
                            .await
                    })
                }

                fn layer_graph(&self) -> BoxFuture<'_, Result<LayerGraph>> {
                    run!($mode, self, Read, |tx| layers::graph(tx).await)
                }

                fn layer_usage<'a>(
                    &'a self,
                    ids: &'a [LayerId],
                ) -> BoxFuture<'a, Result<LayerUsage>> {
                    run!($mode, self, Read, |tx| layers::usage(tx, ids).await)
                }
            }
        }
    };
}
pub(crate) use impl_meta_branches;
