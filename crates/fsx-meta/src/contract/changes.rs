//! The change feed: every change of a volume's content — its file tree,
//! its files' bytes, its branches — as a numbered record written in the
//! transaction that made the change (an outbox). A follower reads the
//! records after the last number it saw, so it can neither miss a change
//! nor see one that did not happen, whatever crashed in between.
//!
//! What is not content is not recorded: leases, byte-range locks, packing
//! (the bytes stay the same), tier copies, garbage collection, tokens,
//! commit expiry.

use bytes::Bytes;
use fsx_store::BoxFuture;

use super::{BranchId, CommitId, Ino, View};
use crate::Result;

/// Changes a volume keeps by default, counted back from the newest
/// (`changes.retain` in the volume's settings overrides it): a follower
/// further behind is told to start over ([`crate::MetaErrorKind::Gone`]).
pub const DEFAULT_CHANGES_KEPT: u64 = 1_000_000;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A node was made at `parent`/`name` (file, directory, symlink,
    /// special file).
    Make,
    /// The entry `parent`/`name` was removed (the node with its last link).
    Remove,
    /// The entry `parent`/`name` moved to `to_parent`/`to_name` (whatever
    /// that name held before is gone).
    Rename,
    /// `ino` got a new name `parent`/`name` (a hard link).
    Link,
    /// `ino`'s attributes changed (mode, owner, times, size by truncate).
    Attr,
    /// `ino`'s extended attributes changed.
    Xattr,
    /// `ino`'s bytes changed (a durable write of a regular file).
    Data,
    /// The branch was made (from `commit`, when made from one).
    BranchCreate,
    /// The branch was deleted.
    BranchDelete,
    /// The branch's head was committed as `commit`.
    Commit,
    /// The branch was reset to `commit`.
    Reset,
    /// Files were merged into the branch, as `commit`.
    Merge,
}

impl ChangeKind {
    /// Every kind, in the order of their names.
    pub const ALL: [ChangeKind; 12] = [
        ChangeKind::Make,
        ChangeKind::Remove,
        ChangeKind::Rename,
        ChangeKind::Link,
        ChangeKind::Attr,
        ChangeKind::Xattr,
        ChangeKind::Data,
        ChangeKind::BranchCreate,
        ChangeKind::BranchDelete,
        ChangeKind::Commit,
        ChangeKind::Reset,
        ChangeKind::Merge,
    ];

    /// The stored (and shown) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Make => "make",
            ChangeKind::Remove => "remove",
            ChangeKind::Rename => "rename",
            ChangeKind::Link => "link",
            ChangeKind::Attr => "attr",
            ChangeKind::Xattr => "xattr",
            ChangeKind::Data => "data",
            ChangeKind::BranchCreate => "branch-create",
            ChangeKind::BranchDelete => "branch-delete",
            ChangeKind::Commit => "commit",
            ChangeKind::Reset => "reset",
            ChangeKind::Merge => "merge",
        }
    }

    /// The kind stored as `name`.
    pub fn from_name(name: &str) -> Option<ChangeKind> {
        ChangeKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether it changes a branch rather than its tree.
    pub fn is_branch(self) -> bool {
        matches!(
            self,
            ChangeKind::BranchCreate
                | ChangeKind::BranchDelete
                | ChangeKind::Commit
                | ChangeKind::Reset
                | ChangeKind::Merge
        )
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// Its number: 1 for a volume's first change, then one more for each
    /// (no gaps), in the order the changes committed.
    pub seq: u64,
    /// When, ms since the Unix epoch (the writer's clock).
    pub at_ms: i64,
    /// The branch changed.
    pub branch: BranchId,
    /// Its name, `None` once the branch is deleted.
    pub branch_name: Option<String>,
    /// What happened.
    pub kind: ChangeKind,
    /// The node changed, where one is.
    pub ino: Option<Ino>,
    /// The directory of the entry changed (or the source of a rename).
    pub parent: Option<Ino>,
    /// The entry's name in `parent`.
    pub name: Option<Bytes>,
    /// A rename's destination directory.
    pub to_parent: Option<Ino>,
    /// A rename's destination name.
    pub to_name: Option<Bytes>,
    /// The commit made, merged or reset to.
    pub commit: Option<CommitId>,
    /// Which engine instance made it ([`MetaChanges::origin`]); `None`
    /// for changes recorded before volumes kept it (schema 9).
    pub origin: Option<i64>,
}

/// A change about to be recorded (everything but its number and the
/// branch's name, which the record and the reader fill in).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) struct NewChange<'a> {
    pub at_ms: i64,
    pub branch: BranchId,
    pub kind: ChangeKind,
    pub ino: Option<Ino>,
    pub parent: Option<Ino>,
    pub name: Option<&'a [u8]>,
    pub to_parent: Option<Ino>,
    pub to_name: Option<&'a [u8]>,
    pub commit: Option<CommitId>,
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
impl<'a> NewChange<'a> {
    pub fn new(kind: ChangeKind, branch: BranchId, at_ms: i64) -> Self {
        Self {
            at_ms,
            branch,
            kind,
            ino: None,
            parent: None,
            name: None,
            to_parent: None,
            to_name: None,
            commit: None,
        }
    }

    pub fn ino(mut self, ino: Ino) -> Self {
        self.ino = Some(ino);
        self
    }

    pub fn entry(mut self, parent: Ino, name: &'a [u8]) -> Self {
        self.parent = Some(parent);
        self.name = Some(name);
        self
    }

    pub fn to(mut self, parent: Ino, name: &'a [u8]) -> Self {
        self.to_parent = Some(parent);
        self.to_name = Some(name);
        self
    }

    pub fn commit(mut self, commit: Option<CommitId>) -> Self {
        self.commit = commit;
        self
    }
}

/// The change feed of a volume.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]).
///
/// - **Recorded with the change.** Every contract method that changes a
///   volume's content records its change(s) in its own transaction: a
///   method that fails records nothing, one that returns `Ok` has
///   recorded them. Which methods record what: [`ChangeKind`]. Tree
///   changes a mount commits without waiting for the disk
///   ([`crate::contract::MetaTree::defer_durability`]) are recorded the
///   same way, so a power loss that takes such a change back takes its
///   record back with it (and the numbers after it are given again).
/// - **Numbered in commit order, without gaps.** Numbers start at 1 and
///   grow by one per change. A reader that sees change `n` can see every
///   change before it: no later read of the feed shows a number below
///   the greatest it showed before (PostgreSQL: the counter row's lock is
///   held from numbering to commit).
/// - **Read in order.** [`MetaChanges::changes`] returns the changes
///   numbered above `after`, ascending, at most `limit` (1–10,000). When
///   some of them are no longer kept ([`MetaChanges::prune_changes`]), it
///   fails with `Gone`: the follower must start over from the volume's
///   state, not carry on past a hole.
/// - **Marked with their origin.** Every change records the
///   [`MetaChanges::origin`] of the engine instance that made it.
/// - **Pruned from the oldest.** [`MetaChanges::prune_changes`] forgets
///   the oldest changes so that at most `keep` remain (never the newest),
///   and returns how many it forgot.
pub trait MetaChanges {
    /// The changes numbered above `after`, ascending, at most `limit`.
    fn changes(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Change>>>;

    /// The number of the newest change, 0 when there is none.
    fn last_change(&self) -> BoxFuture<'_, Result<u64>>;

    /// The number this engine instance records as the origin of each
    /// change it makes ([`Change::origin`]): positive, fixed for the
    /// instance's life (its clones share it) and, in practice, different
    /// from every other instance's, in any process on any machine. A
    /// follower that also writes (a mount) skips its own changes by it.
    fn origin(&self) -> i64;

    /// Forgets the oldest changes so that at most `keep` (≥ 1) remain.
    fn prune_changes(&self, keep: u64) -> BoxFuture<'_, Result<u64>>;

    /// The path (`/a/b`) of each of `inos` in `view`, in one snapshot:
    /// the first of its names when it has several, `None` when nothing
    /// names it. What a follower shows for a change.
    fn paths_of<'a>(
        &'a self,
        view: View,
        inos: &'a [Ino],
    ) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>>;
}
