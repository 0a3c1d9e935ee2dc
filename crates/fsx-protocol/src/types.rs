//! Request and response bodies (JSON) and query strings of every route,
//! named after the [`RouteId`](crate::RouteId) they belong to.
//!
//! Conventions: times are milliseconds (`*_ms`) or nanoseconds (`*_ns`)
//! since the Unix epoch; `branch` defaults to `main`; unknown JSON fields
//! are refused (`deny_unknown_fields`), so a misspelt option fails instead
//! of being ignored.

use serde::{Deserialize, Serialize};

/// The branch a request names when it names none.
pub const DEFAULT_BRANCH: &str = "main";
/// Entries a listing returns when the query names no limit.
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
/// Most entries one listing returns.
pub const MAX_LIST_LIMIT: u32 = 10_000;
/// Commits a log returns when the query names no limit.
pub const DEFAULT_LOG_LIMIT: u32 = 20;
/// Most commits one log returns.
pub const MAX_LOG_LIMIT: u32 = 10_000;
/// Most keys one "which do you lack" call may ask about.
pub const MAX_MISSING_KEYS: usize = 10_000;

fn main_branch() -> String {
    DEFAULT_BRANCH.to_string()
}

/// `GET /v1/volumes/{vol}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The name it is served under.
    pub name: String,
    /// Its permanent id.
    pub volume_id: String,
    /// Extent size in bytes.
    pub extent_size: u32,
    /// Creation time.
    pub created_ms: i64,
    /// Whether reads need no token.
    pub public_read: bool,
    /// The largest request body the server accepts (`fsx serve
    /// --max-body`): also the largest file one `PUT …/file` writes.
    /// Clients check it before sending (0 from a server that does not say).
    #[serde(default)]
    pub max_body: u64,
    /// The data store's URL with its credentials removed.
    #[serde(default)]
    pub store: String,
    /// Statistics.
    pub stats: VolumeStats,
}

/// A volume's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStats {
    /// Page files (in every directory) on `main`.
    pub files: u64,
    /// Their bytes.
    pub file_bytes: u64,
    /// Extent records.
    pub extents: u64,
    /// Their stored bytes.
    pub extent_bytes: u64,
    /// Extent records some page map references.
    #[serde(default)]
    pub referenced_extents: u64,
    /// Their stored bytes.
    #[serde(default)]
    pub referenced_bytes: u64,
    /// Branches.
    pub branches: u64,
    /// Operation counters by tier and operation.
    pub counters: Vec<Counter>,
    /// The I/O settings the server runs the volume with, by name.
    #[serde(default)]
    pub settings: Vec<Setting>,
}

/// One setting and its effective value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// Its name (`io.cache_bytes`, …).
    pub name: String,
    /// Its value.
    pub value: u64,
}

/// One operation counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Tier (`cold` is the data store).
    pub tier: String,
    /// Operation.
    pub op: String,
    /// Calls.
    pub calls: u64,
    /// Bytes moved.
    pub bytes: u64,
}

/// `?path=P&branch=B`: stat, read and write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    /// The tree path (see [`crate::validate`]).
    pub path: String,
    /// The branch (default `main`).
    #[serde(default = "main_branch")]
    pub branch: String,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
}

/// `GET …/stat`: one entry's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// The path asked for, normalised (`/a/b`).
    pub path: String,
    /// Inode number.
    pub ino: i64,
    /// Kind.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (with set-id and sticky bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Links.
    pub nlink: u32,
    /// Modification time.
    pub mtime_ns: i64,
    /// Status change time.
    pub ctime_ns: i64,
}

/// `?path=P&branch=B&after=NAME&limit=N` of `GET …/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The directory.
    pub path: String,
    /// The branch (default `main`).
    #[serde(default = "main_branch")]
    pub branch: String,
    /// Start after this name (the previous page's `next`).
    #[serde(default)]
    pub after: Option<String>,
    /// At most this many entries (default 1000, at most 10,000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Its name (names that are not UTF-8 are shown with U+FFFD).
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime_ns: i64,
}

/// `GET …/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    /// Entries by name bytes.
    pub entries: Vec<ListEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// `?prefix=P&branch=B` of `GET …/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    /// Only names starting with this (default: every file).
    #[serde(default)]
    pub prefix: String,
    /// The branch (default `main`).
    #[serde(default = "main_branch")]
    pub branch: String,
}

/// One page-store file: its name is its tree path without the leading
/// `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Page size.
    pub page_size: u32,
    /// Modification time.
    pub modified_ms: i64,
}

/// `GET …/files`: every file whose name starts with the prefix, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Files {
    /// The files.
    pub files: Vec<FileInfo>,
}

/// `PUT …/file`: the file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The path, normalised.
    pub path: String,
    /// Its size now.
    pub size: u64,
}

/// `POST …/mkdir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkdirRequest {
    /// The directory to make.
    pub path: String,
    /// The branch (default `main`).
    #[serde(default = "main_branch")]
    pub branch: String,
    /// Make missing parents too, and succeed if it exists (`mkdir -p`).
    #[serde(default)]
    pub parents: bool,
}

/// `POST …/rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The entry to rename.
    pub from: String,
    /// Its new path (the parent must exist).
    pub to: String,
    /// The branch (default `main`).
    #[serde(default = "main_branch")]
    pub branch: String,
    /// Replace an existing `to` (as `rename(2)` does); otherwise an
    /// existing `to` is a conflict.
    #[serde(default)]
    pub replace: bool,
}

/// `POST …/remove`: a file, symlink or empty directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// The entry to remove.
    pub path: String,
    /// The branch (default `main`).
    #[serde(default = "main_branch")]
    pub branch: String,
}

/// A tree change done (mkdir, rename, remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The path changed (for a rename, the new one), normalised.
    pub path: String,
}

/// A branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    /// Name.
    pub name: String,
    /// Id.
    pub id: i64,
    /// Latest commit.
    pub commit: Option<i64>,
    /// Creation time.
    pub created_ms: i64,
    /// Time of its latest commit (or creation).
    pub commit_ms: i64,
    /// What only this branch holds: in `GET …/branches`, absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<BranchUsage>,
}

/// What deleting a branch would free at the next GC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchUsage {
    /// Extents only it references.
    pub extents: u64,
    /// Their bytes.
    pub extent_bytes: u64,
    /// Page data it holds in the metadata engine (not yet packed).
    pub dirty_bytes: u64,
}

/// `GET …/branches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branches {
    /// Every branch, by name.
    pub branches: Vec<Branch>,
}

/// `POST …/branches`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBranchRequest {
    /// The new branch's name.
    pub name: String,
    /// The branch or commit id it starts from (default `main`).
    #[serde(default = "main_branch")]
    pub from: String,
}

/// A commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Id.
    pub id: i64,
    /// The branch's previous commit.
    pub parent: Option<i64>,
    /// For a merge, the commit merged in.
    pub merged: Option<i64>,
    /// The branch it was made on.
    pub branch: String,
    /// Message.
    pub message: String,
    /// Made automatically.
    pub auto: bool,
    /// When.
    pub created_ms: i64,
}

/// `POST …/commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The branch (default `main`).
    #[serde(default = "main_branch")]
    pub branch: String,
    /// The message.
    #[serde(default)]
    pub message: String,
}

/// `?spec=S&limit=N` of `GET …/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Branch name or commit id (default `main`).
    #[serde(default = "main_branch")]
    pub spec: String,
    /// At most this many commits (default 20, at most 10,000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `GET …/log`: newest first, following first parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// The commits.
    pub commits: Vec<Commit>,
}

/// `?a=SPEC&b=SPEC` of `GET …/diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The old side.
    pub a: String,
    /// The new side.
    pub b: String,
}

/// Pages `[start, end)` of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRange {
    /// First page.
    pub start: u64,
    /// Past the last page.
    pub end: u64,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// File id.
    pub id: i64,
    /// `added`, `removed`, `renamed` or `modified`.
    pub kind: String,
    /// Its path on side a.
    pub old_name: Option<String>,
    /// Its path on side b.
    pub new_name: Option<String>,
    /// Size on side a.
    pub old_size: u64,
    /// Size on side b.
    pub new_size: u64,
    /// Changed pages.
    pub pages: Vec<PageRange>,
}

/// `GET …/diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// Changed files.
    pub changes: Vec<Change>,
}

/// How a merge resolves files changed differently on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStrategy {
    /// Stop and apply nothing.
    #[default]
    Fail,
    /// Keep the target's version.
    Ours,
    /// Take the source's.
    Theirs,
}

/// `POST …/merge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// Branch name or commit id to merge.
    pub source: String,
    /// The branch to merge into (default `main`).
    #[serde(default = "main_branch")]
    pub into: String,
    /// Conflict resolution (default `fail`).
    #[serde(default)]
    pub strategy: MergeStrategy,
}

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeOutcome {
    /// The target already contained the source.
    UpToDate,
    /// The target moved to the source's commit.
    FastForward,
    /// A merge commit was made.
    Merged,
    /// Stopped on conflicts; nothing applied.
    Conflicts,
}

/// `POST …/merge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merged {
    /// What happened.
    pub outcome: MergeOutcome,
    /// The target's new commit (fast-forward, merge).
    pub commit: Option<Commit>,
    /// Files taken from the source (changed there only).
    pub taken: Vec<String>,
    /// Conflicting files resolved by the strategy.
    pub resolved: Vec<String>,
    /// Conflicting files that stopped the merge.
    pub conflicts: Vec<String>,
}

/// `POST …/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The branch to move.
    pub branch: String,
    /// The commit it will show.
    pub commit: i64,
}

/// `POST …/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetDone {
    /// The branch.
    pub branch: String,
    /// The commit it shows now.
    pub commit: i64,
}

/// `PUT …/extents/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtentStored {
    /// The key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// False when the store already held it (nothing was written).
    pub created: bool,
}

/// `POST …/extents-missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    /// Content keys (at most 10,000).
    pub keys: Vec<String>,
}

/// `POST …/extents-missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    /// The keys the store lacks, in the order asked.
    pub missing: Vec<String>,
}

/// `GET /healthz`, `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or what is not.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let r: Result<MkdirRequest, _> = serde_json::from_str(r#"{"path":"/a"}"#);
        assert!(r.is_ok_and(|r| r.branch == "main" && !r.parents));
        let r: Result<MkdirRequest, _> = serde_json::from_str(r#"{"path":"/a","parent":true}"#);
        assert!(r.is_err(), "a misspelt option is refused");
        let r: Result<MergeRequest, _> = serde_json::from_str(r#"{"source":"dev"}"#);
        assert!(r.is_ok_and(|r| r.strategy == MergeStrategy::Fail && r.into == "main"));
    }
}
