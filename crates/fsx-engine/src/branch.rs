//! Branches, commits, time travel, diff and merge over a whole volume.
//!
//! The metadata engine makes branching and committing O(1) (see "Branches
//! and layers" in [`fsx_meta::contract`]); this module gives them names and
//! policy:
//!
//! - a **spec** names a view: a branch name, else a commit id;
//! - **diff** compares two views file by file (files are matched by id, so
//!   renames show as renames) and page by page; extents whose keys match on
//!   both sides are equal without reading them, others are read and compared;
//! - **merge** fast-forwards when it can, else merges three-way at file
//!   granularity (a database file is only consistent as a whole): files
//!   changed on one side only are taken, files changed differently on both
//!   sides are conflicts, resolved by a [`MergeStrategy`] or reported with
//!   nothing applied.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use bytes::Bytes;
use fsx_meta::{
    BranchId, BranchInfo, CommitId, CommitInfo, CommitRequest, FileId, FileMeta, Ino,
    JournalSnapshot, LayerUsage, MetaEngine, MetaErrorKind, NodeKind, PageWrite, TreeNode, View,
};

use crate::error::{Error, ErrorKind, Result};
use crate::volume::{OpenOptions, Volume};

/// Volume setting: automatic commit interval in ms (absent or 0: off).
pub const AUTO_COMMIT_SETTING: &str = "commit.auto_interval_ms";

/// Volume setting: how long automatic commits are kept, in ms (default
/// [`DEFAULT_AUTO_RETAIN_MS`]); `fsx gc` expires older ones.
pub const AUTO_RETAIN_SETTING: &str = "commit.auto_retain_ms";

/// Automatic commits are kept a week unless configured otherwise.
pub const DEFAULT_AUTO_RETAIN_MS: i64 = 7 * 24 * 3600 * 1000;

/// Reads a non-negative integer setting.
pub(crate) async fn duration_setting(meta: &dyn MetaEngine, name: &str) -> Result<Option<i64>> {
    match meta.setting(name).await? {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(Some)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "volume setting {name}={v:?} is not a number of milliseconds; set it again"
                    ),
                )
            }),
    }
}

/// How a merge resolves files changed differently on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeStrategy {
    /// Apply nothing and report the conflicts.
    #[default]
    Fail,
    /// Keep the target branch's version.
    Ours,
    /// Take the source's version.
    Theirs,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The target already contains the source.
    UpToDate,
    /// The target moved to the source's commit.
    FastForward(CommitInfo),
    /// A merge commit on the target, with the names of the files taken from
    /// the source and of the conflicts resolved by the strategy.
    Merged {
        /// The merge commit.
        commit: CommitInfo,
        /// Files changed on the source only, taken.
        taken: Vec<String>,
        /// Conflicts the strategy resolved.
        resolved: Vec<String>,
    },
    /// Files changed differently on both sides; nothing was applied.
    Conflicts(Vec<String>),
}

/// How one file differs between two views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The file's identity (stable across renames and branches).
    pub id: FileId,
    /// Its name in the first view (`None`: added).
    pub old_name: Option<String>,
    /// Its name in the second view (`None`: removed).
    pub new_name: Option<String>,
    /// Size in the first view.
    pub old_size: u64,
    /// Size in the second view.
    pub new_size: u64,
    /// Page ranges whose content differs (pages past a file's end read as
    /// zeros).
    pub pages: Vec<Range<u64>>,
}

impl FileChange {
    /// `added`, `removed`, `renamed` or `modified`.
    pub fn kind(&self) -> &'static str {
        match (&self.old_name, &self.new_name) {
            (None, _) => "added",
            (_, None) => "removed",
            (Some(a), Some(b)) if a != b => "renamed",
            _ => "modified",
        }
    }
}

/// `from` and every commit it descends from (parents and merged commits).
fn ancestors(graph: &fsx_meta::LayerGraph, from: CommitId) -> BTreeSet<CommitId> {
    let parents: BTreeMap<CommitId, (Option<CommitId>, Option<CommitId>)> = graph
        .commits
        .iter()
        .map(|c| (c.id, (c.parent, c.merged)))
        .collect();
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(c) = stack.pop() {
        if seen.insert(c)
            && let Some((p, m)) = parents.get(&c)
        {
            stack.extend(p);
            stack.extend(m);
        }
    }
    seen
}

/// The latest common ancestor of two commits given their ancestor sets:
/// ids grow along parent links, so the largest common one descends from no
/// other common one.
fn merge_base(a: &BTreeSet<CommitId>, b: &BTreeSet<CommitId>) -> Option<CommitId> {
    a.intersection(b).max().copied()
}

/// Pages of a file, or nothing for a file absent from its view.
async fn read_pages(
    file: Option<&crate::File>,
    first: u64,
    count: u64,
) -> Result<Vec<Option<Bytes>>> {
    match file {
        Some(f) => f.pages(first, count).await,
        None => Ok(vec![None; count as usize]),
    }
}

impl Volume {
    /// The same volume on branch `name` (`NotFound` if there is none).
    pub async fn checkout(&self, name: &str) -> Result<Volume> {
        let b = self.shared.meta.branch(name).await?;
        Ok(self.with_view(View::Branch(b.id)))
    }

    /// The same volume as commit `id` showed it, read-only.
    pub async fn at_commit(&self, id: CommitId) -> Result<Volume> {
        self.shared.meta.commit_info(id).await?;
        Ok(self.with_view(View::Commit(id)))
    }

    /// The view a spec names: a branch name, else a commit id.
    pub async fn resolve(&self, spec: &str) -> Result<View> {
        match self.shared.meta.branch(spec).await {
            Ok(b) => return Ok(View::Branch(b.id)),
            Err(e) if e.kind() != MetaErrorKind::NotFound => return Err(e.into()),
            Err(_) => {}
        }
        match spec.parse::<CommitId>() {
            Ok(id) => {
                self.shared.meta.commit_info(id).await?;
                Ok(View::Commit(id))
            }
            Err(_) => Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{spec:?} is neither a branch nor a commit id (`fsx branch list`, `fsx log`)"
                ),
            )),
        }
    }

    /// Name of a branch, or `commit N`.
    pub async fn describe(&self, view: View) -> Result<String> {
        Ok(match view {
            View::Branch(id) => self.branch_info(id).await?.name,
            View::Commit(c) => format!("commit {c}"),
        })
    }

    async fn branch_info(&self, id: BranchId) -> Result<BranchInfo> {
        self.shared
            .meta
            .branches()
            .await?
            .into_iter()
            .find(|b| b.id == id)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("branch #{id} no longer exists"),
                )
            })
    }

    /// Creates branch `name` from this handle's view (a branch head is
    /// committed first if it holds changes). O(1).
    pub async fn create_branch(&self, name: &str) -> Result<BranchInfo> {
        let s = &self.shared;
        if let View::Branch(b) = self.view {
            let journals = self.journal_snapshots(b).await?;
            if !journals.is_empty() {
                // Open journals go into the branch point, which is then the
                // commit the branch starts from (see `crate::journal`).
                let message = format!("branch point of {name}");
                let point = s
                    .meta
                    .commit(
                        CommitRequest::new(b, &message, s.env.now_ms())
                            .automatic()
                            .journals(&journals),
                    )
                    .await?
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Other,
                            "a branch point with journals made nothing",
                        )
                    })?;
                return Ok(s
                    .meta
                    .create_branch(name, View::Commit(point.id), s.env.now_ms())
                    .await?);
            }
        }
        Ok(s.meta
            .create_branch(name, self.view, s.env.now_ms())
            .await?)
    }

    /// The content of every local journal of `branch` as of now, for a
    /// commit to hold (see [`crate::journal`]): a writer may be appending
    /// meanwhile, so this is what a crash at this moment could have left —
    /// every synced byte, perhaps some unsynced ones.
    async fn journal_snapshots(&self, branch: BranchId) -> Result<Vec<JournalSnapshot>> {
        let s = &self.shared;
        let Some(dir) = &s.options.journals else {
            return Ok(Vec::new());
        };
        let io = |name: &str, e| crate::journal::io_error(name, "read", e);
        let names = dir.list().map_err(|e| io("directory", e))?;
        let mut wanted = BTreeMap::new();
        for name in names {
            if let Some(id) = crate::journal::journal_of(&name, branch) {
                wanted.insert(id, name);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let files = s.meta.list_files(View::Branch(branch), "").await?;
        let mut out = Vec::new();
        for f in files {
            let Some(name) = wanted.get(&f.id) else {
                continue;
            };
            let Some(journal) = dir.open(name).map_err(|e| io(name, e))? else {
                continue;
            };
            let size = journal.size().map_err(|e| io(name, e))?;
            let ps = u64::from(f.page_size);
            let mut pages = Vec::new();
            let mut page_no = 0;
            while page_no * ps < size {
                let mut buf = vec![0u8; ps as usize];
                journal
                    .read_at(&mut buf, page_no * ps)
                    .map_err(|e| io(name, e))?;
                pages.push(PageWrite {
                    page_no,
                    data: Some(Bytes::from(buf)),
                });
                page_no += 1;
            }
            // Journals are local, so a holder that is gone is known to be:
            // its journal changes no more (the next writer folds it).
            let live = s
                .meta
                .lease(branch, f.id)
                .await?
                .is_some_and(|l| !s.env.holder_is_dead(&l.holder));
            out.push(JournalSnapshot {
                file_id: f.id,
                pages,
                size,
                live,
            });
        }
        Ok(out)
    }

    /// Every branch, by name.
    pub async fn branches(&self) -> Result<Vec<BranchInfo>> {
        Ok(self.shared.meta.branches().await?)
    }

    /// Deletes a branch and what only it referenced (freed by the next GC).
    pub async fn delete_branch(&self, name: &str) -> Result<()> {
        let s = &self.shared;
        let branch = s.meta.branch(name).await?.id;
        self.fold_dead_journals(branch, None).await?;
        // Dead writers' leases do not hold the branch (see `lease`).
        self.retry_past_dead_leases(branch, None, || async {
            Ok(s.meta.delete_branch(name, s.env.now_ms()).await?)
        })
        .await
    }

    /// Commits this handle's branch.
    pub async fn commit(&self, message: &str) -> Result<CommitInfo> {
        let s = &self.shared;
        let branch = self.branch_id()?;
        let journals = self.journal_snapshots(branch).await?;
        s.meta
            .commit(CommitRequest::new(branch, message, s.env.now_ms()).journals(&journals))
            .await?
            .ok_or_else(|| Error::new(ErrorKind::Other, "an explicit commit made nothing"))
    }

    /// The commit this view stands on: a branch's latest, or the commit.
    pub async fn current_commit(&self) -> Result<Option<CommitId>> {
        Ok(match self.view {
            View::Branch(b) => self.branch_info(b).await?.commit,
            View::Commit(c) => Some(c),
        })
    }

    /// Commits from this view's back along first parents, newest first, at
    /// most `limit`.
    pub async fn log(&self, limit: usize) -> Result<Vec<CommitInfo>> {
        let graph = self.shared.meta.layer_graph().await?;
        let by_id: BTreeMap<CommitId, &CommitInfo> =
            graph.commits.iter().map(|c| (c.id, c)).collect();
        let mut out = Vec::new();
        let mut cur = self.current_commit().await?;
        while let Some(id) = cur {
            if out.len() >= limit {
                break;
            }
            let Some(c) = by_id.get(&id) else { break };
            out.push((*c).clone());
            cur = c.parent;
        }
        Ok(out)
    }

    /// Points this handle's branch at commit `to`, discarding its changes
    /// since; `Busy` while a writer has a file of the branch open.
    pub async fn reset(&self, to: CommitId) -> Result<()> {
        let s = &self.shared;
        let branch = self.branch_id()?;
        self.fold_dead_journals(branch, None).await?;
        // Dead writers' leases do not hold the branch (see `lease`).
        self.retry_past_dead_leases(branch, None, || async {
            Ok(s.meta.reset_branch(branch, to, s.env.now_ms()).await?)
        })
        .await
    }

    /// Packs the dirty pages that commits froze into extents, one commit
    /// per frozen layer; returns how many commits had any. What every
    /// commit and branch shows is unchanged.
    pub async fn pack_commits(&self, progress: &dyn crate::Progress) -> Result<u64> {
        let graph = self.shared.meta.layer_graph().await?;
        let mut layers = BTreeSet::new();
        let commits: Vec<CommitId> = graph
            .commits
            .iter()
            .filter(|c| layers.insert(c.layer))
            .map(|c| c.id)
            .collect();
        progress.phase(
            "packing the dirty pages of commits",
            Some(commits.len() as u64),
        );
        let mut packed = 0;
        for c in commits {
            let at = self.with_view(View::Commit(c));
            let mut any = false;
            for f in at.list("").await? {
                let ppe = self.pages_per_extent(f.page_size).max(1);
                let own = self
                    .shared
                    .meta
                    .dirty_summary(View::Commit(c), f.id, ppe)
                    .await?;
                if own.is_empty() {
                    continue;
                }
                any = true;
                at.open_file(&f.name, OpenOptions::read())
                    .await?
                    .pack_dirty()
                    .await?;
            }
            packed += u64::from(any);
            progress.advance(1);
        }
        Ok(packed)
    }

    /// What deleting each branch would free (see [`LayerUsage`]).
    pub async fn branch_usage(&self) -> Result<Vec<(BranchInfo, LayerUsage)>> {
        let graph = self.shared.meta.layer_graph().await?;
        let mut out = Vec::new();
        for b in &graph.branches {
            let layers = fsx_meta::graph::deleted_with_branch(&graph, b.id);
            let usage = self.shared.meta.layer_usage(&layers).await?;
            out.push((b.clone(), usage));
        }
        Ok(out)
    }

    /// How the files of view `a` differ in view `b`.
    pub async fn diff(&self, a: View, b: View) -> Result<Vec<FileChange>> {
        let files = |v: View| async move {
            // `Volume::list`: an open journal's size is the file's.
            let list = self.with_view(v).list("").await?;
            Ok::<_, Error>(
                list.into_iter()
                    .map(|f| (f.id, f))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let (fa, fb) = (files(a).await?, files(b).await?);
        let ids: BTreeSet<FileId> = fa.keys().chain(fb.keys()).copied().collect();
        let mut out = Vec::new();
        for id in ids {
            if let Some(c) = self.diff_file(a, fa.get(&id), b, fb.get(&id)).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    async fn diff_file(
        &self,
        a: View,
        fa: Option<&FileMeta>,
        b: View,
        fb: Option<&FileMeta>,
    ) -> Result<Option<FileChange>> {
        let Some(any) = fa.or(fb) else {
            return Ok(None);
        };
        let mut change = FileChange {
            id: any.id,
            old_name: fa.map(|f| f.name.clone()),
            new_name: fb.map(|f| f.name.clone()),
            old_size: fa.map_or(0, |f| f.size),
            new_size: fb.map_or(0, |f| f.size),
            pages: Vec::new(),
        };
        let ps = u64::from(any.page_size);
        let pages = change.old_size.max(change.new_size).div_ceil(ps);
        let ppe = self.pages_per_extent(any.page_size).max(1);
        let open = |v: View, f: Option<&FileMeta>| {
            let name = f.map(|f| f.name.clone());
            let vol = self.with_view(v);
            async move {
                match name {
                    Some(n) => vol.open_file(&n, OpenOptions::read()).await.map(Some),
                    None => Ok(None),
                }
            }
        };
        let (ha, hb) = (open(a, fa).await?, open(b, fb).await?);
        let zero = Bytes::from(vec![0u8; ps as usize]);
        let mut differs: Vec<u64> = Vec::new();
        let mut first = 0;
        while first < pages {
            let count = ppe.min(pages - first);
            if !self.same_representation(a, fa, b, fb, first, count).await? {
                let (pa, pb) = (
                    read_pages(ha.as_ref(), first, count).await?,
                    read_pages(hb.as_ref(), first, count).await?,
                );
                for i in 0..count as usize {
                    let x = pa.get(i).cloned().flatten().unwrap_or_else(|| zero.clone());
                    let y = pb.get(i).cloned().flatten().unwrap_or_else(|| zero.clone());
                    if x != y {
                        differs.push(first + i as u64);
                    }
                }
            }
            first += count;
        }
        for p in differs {
            match change.pages.last_mut() {
                Some(r) if r.end == p => r.end = p + 1,
                _ => change.pages.push(p..p + 1),
            }
        }
        let unchanged = change.old_name == change.new_name
            && change.old_size == change.new_size
            && change.pages.is_empty();
        Ok((!unchanged).then_some(change))
    }

    /// True when both views store pages `[first, first + count)` the same
    /// way (same extents, same dirty pages), so they read the same.
    async fn same_representation(
        &self,
        a: View,
        fa: Option<&FileMeta>,
        b: View,
        fb: Option<&FileMeta>,
        first: u64,
        count: u64,
    ) -> Result<bool> {
        let (Some(fa), Some(fb)) = (fa, fb) else {
            return Ok(false);
        };
        let ppe = self.pages_per_extent(fa.page_size).max(1);
        let ma = self
            .shared
            .meta
            .read_map(a, fa.id, first, count, ppe)
            .await?;
        let mb = self
            .shared
            .meta
            .read_map(b, fb.id, first, count, ppe)
            .await?;
        Ok(ma.extents == mb.extents && ma.dirty == mb.dirty)
    }

    /// Merges `source` into this handle's branch (see the module docs).
    pub async fn merge(&self, source: View, strategy: MergeStrategy) -> Result<MergeOutcome> {
        // Dead writers' leases do not hold the target (see `lease`); a
        // merge refused as busy applied nothing, so it can run again.
        let target = self.branch_id()?;
        self.fold_dead_journals(target, None).await?;
        self.retry_past_dead_leases(target, None, || self.merge_once(source, strategy))
            .await
    }

    async fn merge_once(&self, source: View, strategy: MergeStrategy) -> Result<MergeOutcome> {
        let s = &self.shared;
        let target = self.branch_id()?;
        let now = s.env.now_ms();
        if source == View::Branch(target) {
            return Err(Error::invalid("cannot merge a branch into itself"));
        }
        // Conflicts are found on the heads first, so a merge that stops
        // leaves no trace, not even the commits a merge makes.
        if strategy == MergeStrategy::Fail {
            let conflicts = self.head_conflicts(source).await?;
            if !conflicts.is_empty() {
                return Ok(MergeOutcome::Conflicts(conflicts));
            }
        }
        // Both sides as commits: their heads' changes are part of the merge.
        // Open journals are part of each side (see `crate::journal`).
        let t_journals = self.journal_snapshots(target).await?;
        let t_commit = s
            .meta
            .commit(
                CommitRequest::new(target, "before merge", now)
                    .automatic()
                    .journals(&t_journals),
            )
            .await?
            .map(|c| c.id);
        let t_commit = match t_commit {
            Some(c) => Some(c),
            None => self.current_commit().await?,
        };
        let s_commit = match source {
            View::Commit(c) => c,
            View::Branch(b) => {
                let journals = self.journal_snapshots(b).await?;
                let made = s
                    .meta
                    .commit(
                        CommitRequest::new(b, "before merge", now)
                            .automatic()
                            .journals(&journals),
                    )
                    .await?;
                match made {
                    Some(c) => c.id,
                    None => self
                        .with_view(source)
                        .current_commit()
                        .await?
                        .ok_or_else(|| {
                            Error::invalid("the source branch has no commits to merge")
                        })?,
                }
            }
        };
        let graph = s.meta.layer_graph().await?;
        let of_source = ancestors(&graph, s_commit);
        let Some(t_commit) = t_commit else {
            s.meta.reset_branch(target, s_commit, now).await?;
            return Ok(MergeOutcome::FastForward(
                s.meta.commit_info(s_commit).await?,
            ));
        };
        let of_target = ancestors(&graph, t_commit);
        if of_target.contains(&s_commit) {
            return Ok(MergeOutcome::UpToDate);
        }
        if of_source.contains(&t_commit) {
            s.meta.reset_branch(target, s_commit, now).await?;
            return Ok(MergeOutcome::FastForward(
                s.meta.commit_info(s_commit).await?,
            ));
        }
        let base = merge_base(&of_source, &of_target);
        let sv = View::Commit(s_commit);
        let (one_sided, conflicts) = self.classify(base, sv, View::Commit(t_commit)).await?;
        let (mut take, taken): (Vec<FileId>, Vec<String>) = one_sided.into_iter().unzip();
        let mut resolved = Vec::new();
        match strategy {
            MergeStrategy::Fail if !conflicts.is_empty() => {
                return Ok(MergeOutcome::Conflicts(
                    conflicts.into_iter().map(|(_, n)| n).collect(),
                ));
            }
            MergeStrategy::Theirs => {
                for (id, n) in conflicts {
                    take.push(id);
                    resolved.push(n);
                }
            }
            _ => resolved = conflicts.into_iter().map(|(_, n)| n).collect(),
        }
        let message = format!(
            "merge {} into {}",
            self.describe(source).await?,
            self.describe(View::Branch(target)).await?
        );
        let commit = s
            .meta
            .merge_files(target, sv, &take, &message, s_commit, now)
            .await?;
        Ok(MergeOutcome::Merged {
            commit,
            taken,
            resolved,
        })
    }

    /// Files that `source` and this branch's head both changed, differently,
    /// since their latest common commit.
    async fn head_conflicts(&self, source: View) -> Result<Vec<String>> {
        let (Some(t), Some(s)) = (
            self.current_commit().await?,
            self.with_view(source).current_commit().await?,
        ) else {
            return Ok(Vec::new());
        };
        let graph = self.shared.meta.layer_graph().await?;
        let base = merge_base(&ancestors(&graph, s), &ancestors(&graph, t));
        let target = View::Branch(self.branch_id()?);
        let (_, conflicts) = self.classify(base, source, target).await?;
        Ok(conflicts.into_iter().map(|(_, n)| n).collect())
    }

    /// Splits the files `source` changed since `base` (all of them without
    /// one) into those `target` did not change (to take) and those it
    /// changed differently (conflicts), each with its name.
    async fn classify(
        &self,
        base: Option<CommitId>,
        source: View,
        target: View,
    ) -> Result<(Vec<(FileId, String)>, Vec<(FileId, String)>)> {
        let changed = |from: View| async move {
            let list = match base {
                Some(b) => self.diff(View::Commit(b), from).await?,
                None => self.diff_from_nothing(from).await?,
            };
            Ok::<_, Error>(
                list.into_iter()
                    .map(|c| (c.id, c))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let (cs, ct) = (changed(source).await?, changed(target).await?);
        let (mut take, mut conflicts) = (Vec::new(), Vec::new());
        for (id, c) in cs {
            let name = c.new_name.or(c.old_name).unwrap_or_default();
            if !ct.contains_key(&id) {
                take.push((id, name));
            } else if !self.file_equal(source, target, id).await? {
                conflicts.push((id, name));
            }
        }
        // Directories, symlinks and special files, after the files (a
        // directory goes once the files in it went), deepest first (a
        // directory goes once its subdirectories went).
        let others = |v: View| async move {
            Ok::<_, Error>(
                self.shared
                    .meta
                    .tree_nodes(v)
                    .await?
                    .into_iter()
                    .filter(|n| n.attr.kind != NodeKind::File)
                    .map(|n| (n.attr.ino, n))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        let nb = match base {
            Some(b) => others(View::Commit(b)).await?,
            None => BTreeMap::new(),
        };
        let (ns, nt) = (others(source).await?, others(target).await?);
        let mut nodes = Vec::new();
        for ino in ns.keys().chain(nb.keys()).collect::<BTreeSet<_>>() {
            let (s, b, t) = (ns.get(ino), nb.get(ino), nt.get(ino));
            if node_state(s) == node_state(b) {
                continue;
            }
            let Some(any) = s.or(b) else { continue };
            let name = if any.attr.kind == NodeKind::Dir {
                format!("{}/", any.path)
            } else {
                any.path.clone()
            };
            let depth = any.path.matches('/').count();
            if node_state(t) == node_state(b) {
                nodes.push((depth, *ino, name));
            } else if node_state(t) != node_state(s) {
                conflicts.push((*ino, name));
            }
        }
        nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
        take.extend(nodes.into_iter().map(|(_, ino, name)| (ino, name)));
        Ok((take, conflicts))
    }

    /// Every file of `view`, as added.
    async fn diff_from_nothing(&self, view: View) -> Result<Vec<FileChange>> {
        Ok(self
            .shared
            .meta
            .list_files(view, "")
            .await?
            .into_iter()
            .map(|f| FileChange {
                id: f.id,
                old_name: None,
                new_name: Some(f.name),
                old_size: 0,
                new_size: f.size,
                pages: Vec::new(),
            })
            .collect())
    }

    /// True when file `id` is the same (name, size, pages) in both views.
    async fn file_equal(&self, a: View, b: View, id: FileId) -> Result<bool> {
        let find = |v: View| async move {
            let list = self.shared.meta.list_files(v, "").await?;
            Ok::<_, Error>(list.into_iter().find(|f| f.id == id))
        };
        let (fa, fb) = (find(a).await?, find(b).await?);
        Ok(self
            .diff_file(a, fa.as_ref(), b, fb.as_ref())
            .await?
            .is_none())
    }
}

/// What a merge compares of an inode that is not a regular file: kind,
/// mode, owner, device, target and names — not times, which a directory
/// changes with every entry made or removed in it.
type NodeState<'a> = (
    NodeKind,
    u32,
    u32,
    u32,
    u64,
    Option<&'a [u8]>,
    &'a [(Ino, Bytes)],
);

fn node_state(n: Option<&TreeNode>) -> Option<NodeState<'_>> {
    n.map(|n| {
        (
            n.attr.kind,
            n.attr.mode,
            n.attr.uid,
            n.attr.gid,
            n.attr.rdev,
            n.target.as_deref(),
            n.links.as_slice(),
        )
    })
}
