//! Garbage collection and consistency checking.
//!
//! # GC protocol
//!
//! An extent's object is deleted only after its record has been *claimed*
//! (marked deleting) in the metadata, and a claim needs the record to be
//! unreferenced and idle for longer than the grace period. Uploaders pin a
//! record before uploading and reference it within the grace period, and
//! neither a pin nor a reference succeeds on a deleting record — so GC never
//! deletes an extent that a file, or an upload in flight, depends on. The
//! record is forgotten only after the object is gone; a GC that dies midway
//! leaves deleting records, which the next run finishes first.
//!
//! Before collecting extents a run expires automatic commits past their
//! retention (which may fold layers and release references) and packs the
//! dirty pages that commits froze into extents (which may replace extents
//! of those layers), so what they release is collected by the same run.
//!
//! Then it packs what writers left in the dirty buffer of branch heads: a
//! killed or failed writer leaves its synced pages there (durable, but
//! costing a metadata row each, and never packed by anyone else). A file
//! whose writer is gone — its lease expired, or its holder a process of
//! this machine that no longer runs — is opened for writing, which takes
//! over the lease, and packed through the ordinary pack path (pin, upload,
//! one metadata transaction); a file whose writer is alive is left to it.
//!
//! fsck reads every dirty page and checks it against its checksum (see
//! `fsx_meta::checksum`): a damaged page is a fault; unpacked pages are
//! listed per branch (or commit) and file as a warning, not a fault.
//!
//! Store objects with no record at all (orphans: an object left by a
//! metadata restore, or written by hand) are claimed the same way, by
//! creating a deleting record, before they are deleted — and only when the
//! store says they were written longer than [`GcOptions::orphan_grace_ms`]
//! ago: an object of unknown age (a backend that keeps no times) or a young
//! one (perhaps a writer whose metadata is not visible to this run, or a
//! restore in progress) is left for a later run.

use std::collections::{BTreeMap, BTreeSet};

use fsx_format::Extent;
use fsx_meta::{ExtentRecord, ExtentState, FileId, LayerId, View};
use fsx_store::{ExtentBackendExt, ObjectKey};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::volume::Volume;

const BATCH: usize = 500;

/// Options of a GC run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcOptions {
    /// How long an extent must have been unreferenced before it is deleted.
    pub grace_ms: i64,
    /// Also delete store objects that no record names.
    pub orphans: bool,
    /// How long ago an orphan object must have been written (by the store's
    /// clock) before it is deleted; orphans of unknown age are deleted
    /// only when this is 0.
    pub orphan_grace_ms: i64,
    /// Expire automatic commits older than the volume's retention first
    /// (see [`crate::branch::AUTO_RETAIN_SETTING`]).
    pub expire_commits: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace_ms: 60 * 60 * 1000,
            orphans: true,
            orphan_grace_ms: 60 * 60 * 1000,
            expire_commits: true,
        }
    }
}

impl GcOptions {
    /// Sets the grace period.
    pub fn grace_ms(mut self, ms: i64) -> Self {
        self.grace_ms = ms;
        self
    }

    /// Sets the orphan grace period.
    pub fn orphan_grace_ms(mut self, ms: i64) -> Self {
        self.orphan_grace_ms = ms;
        self
    }

    /// Sets whether orphans are collected.
    pub fn orphans(mut self, yes: bool) -> Self {
        self.orphans = yes;
        self
    }
}

/// What a GC run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Unreferenced extents deleted.
    pub deleted: u64,
    /// Their bytes, as recorded.
    pub bytes_freed: u64,
    /// Orphan objects deleted.
    pub orphans_deleted: u64,
    /// Orphan objects kept: younger than the orphan grace, or of unknown age.
    pub orphans_kept: u64,
    /// Deletions left unfinished by an earlier run, finished now.
    pub resumed: u64,
    /// Automatic commits expired.
    pub commits_expired: u64,
    /// Commits whose frozen dirty pages were packed into extents.
    pub commits_packed: u64,
    /// Files of branch heads whose dirty pages a gone writer left, packed.
    pub files_packed: u64,
    /// `branch/file` names with dirty pages left alone because a live
    /// writer holds them.
    pub files_in_use: Vec<String>,
    /// Unlinked files whose last holder died with them open, dropped.
    pub unlinked_reclaimed: u64,
    /// Changes of the change feed beyond `changes.retain`, forgotten.
    pub changes_pruned: u64,
}

/// Dirty pages not yet packed into extents, of one file in one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedPages {
    /// Whose they are: `branch NAME`, `commit ID`, or `layer ID` (a
    /// frozen layer no commit names directly).
    pub owner: String,
    /// The file's name there, or `#ID` if the layer shows no such file.
    pub file: String,
    /// How many pages (holes included).
    pub pages: u64,
}

/// What fsck found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Referenced extents fetched and verified.
    pub extents_checked: u64,
    /// Their bytes.
    pub bytes_checked: u64,
    /// Referenced extents absent from the store.
    pub missing: Vec<String>,
    /// Referenced extents whose bytes fail verification, with the fault.
    pub corrupt: Vec<(String, String)>,
    /// `(key, recorded refcount, actual references)` that disagree.
    pub refcount_mismatch: Vec<(String, i64, i64)>,
    /// Keys the page map names that have no record.
    pub dangling: Vec<String>,
    /// Store objects that no record names.
    pub orphans: Vec<String>,
    /// Unreferenced extents waiting for GC (normal, not a fault).
    pub awaiting_gc: u64,
    /// Records a GC began deleting (finished by the next GC run).
    pub deleting: u64,
    /// Faults of the branch, commit and layer graph.
    pub graph_faults: Vec<String>,
    /// Branches, commits and layers checked.
    pub branches: u64,
    /// Commits checked.
    pub commits: u64,
    /// Layers checked.
    pub layers: u64,
    /// Dirty pages read and checked against their checksums.
    pub dirty_pages_checked: u64,
    /// Dirty pages that fail their checksum, described for the operator.
    pub damaged_pages: Vec<String>,
    /// Dirty pages waiting to be packed (normal after a sync; a warning
    /// when a writer died: `fsx gc` packs them).
    pub unpacked: Vec<UnpackedPages>,
    /// Bad or missing copies in a tier (`tier`, key) that the scrub of
    /// every durable tier found; each was rewritten from a good copy when
    /// one exists (see `copies_repaired`).
    pub bad_copies: Vec<(String, String)>,
    /// Of `bad_copies`, how many were repaired.
    pub copies_repaired: u64,
    /// Bad copies the verification reads met and skipped (in any tier,
    /// caches included), served from a good copy instead.
    pub bad_copies_skipped: u64,
}

impl FsckReport {
    /// Whether the volume is consistent.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.refcount_mismatch.is_empty()
            && self.dangling.is_empty()
            && self.orphans.is_empty()
            && self.graph_faults.is_empty()
            && self.damaged_pages.is_empty()
            && self.bad_copies.is_empty()
            && self.bad_copies_skipped == 0
    }
}

impl Volume {
    async fn all_records(&self) -> Result<Vec<ExtentRecord>> {
        let mut out = Vec::new();
        loop {
            let after = out.last().map(|r: &ExtentRecord| r.key.clone());
            let page = self
                .shared
                .meta
                .list_extents(after.as_deref(), BATCH)
                .await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    async fn all_references(&self) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .shared
                .meta
                .count_references(after.as_deref(), BATCH)
                .await?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            out.extend(page);
        }
    }

    async fn extent_objects(&self) -> Result<Vec<ObjectKey>> {
        Ok(self
            .shared
            .store
            .list_all(fsx_format::CONTENT_KEY_PREFIX)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    async fn delete_claimed(&self, key: &str) -> Result<()> {
        let okey = ObjectKey::new(key)?;
        crate::failpoint::check(&*self.shared.env, crate::Failpoint::GcDelete)?;
        self.shared.store.delete(&okey).await?;
        self.shared.cache.remove(key);
        crate::failpoint::check(&*self.shared.env, crate::Failpoint::GcForget)?;
        self.shared.meta.gc_forget(key).await?;
        Ok(())
    }

    /// Deletes unreferenced extents older than the grace period (and
    /// orphans, if asked).
    pub async fn gc(&self, options: &GcOptions, progress: &dyn Progress) -> Result<GcReport> {
        // Before collecting extents: a reclaimed file's extents are then
        // unreferenced, and this run frees them.
        let mut report = GcReport {
            unlinked_reclaimed: self.reclaim_orphans().await?,
            changes_pruned: self.prune_changes().await?,
            ..GcReport::default()
        };
        if options.expire_commits {
            let retain = crate::branch::duration_setting(
                self.shared.meta.as_ref(),
                crate::branch::AUTO_RETAIN_SETTING,
            )
            .await?
            .unwrap_or(crate::branch::DEFAULT_AUTO_RETAIN_MS);
            let now = self.shared.env.now_ms();
            progress.phase("expiring automatic commits", None);
            report.commits_expired = self
                .shared
                .meta
                .expire_commits(now.saturating_sub(retain), now)
                .await?;
        }
        // Before packing: a pack whose extent has the content of one an
        // interrupted GC claimed cannot pin it until that deletion is
        // finished, so finishing it later would leave every run failing.
        let stuck: Vec<String> = self
            .all_records()
            .await?
            .into_iter()
            .filter(|r| r.state == ExtentState::Deleting)
            .map(|r| r.key)
            .collect();
        if !stuck.is_empty() {
            progress.phase("finishing interrupted deletions", Some(stuck.len() as u64));
            for key in stuck {
                self.delete_claimed(&key).await?;
                report.resumed += 1;
                progress.advance(1);
            }
        }
        // Before the records are read: packing replaces extents, and what
        // it replaces is collected by this run.
        report.commits_packed = self.pack_commits(progress).await?;
        (report.files_packed, report.files_in_use) = self.pack_abandoned(progress).await?;
        let records = self.all_records().await?;
        let sizes: BTreeMap<&str, u64> =
            records.iter().map(|r| (r.key.as_str(), r.bytes)).collect();

        progress.phase("deleting unreferenced extents", None);
        loop {
            let now = self.shared.env.now_ms();
            crate::failpoint::check(&*self.shared.env, crate::Failpoint::GcClaim)?;
            let keys = self
                .shared
                .meta
                .gc_claim(now, options.grace_ms, BATCH)
                .await?;
            if keys.is_empty() {
                break;
            }
            for key in keys {
                self.delete_claimed(&key).await?;
                report.deleted += 1;
                report.bytes_freed += sizes.get(key.as_str()).copied().unwrap_or(0);
                progress.advance(1);
            }
        }

        if options.orphans {
            let known: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
            let now = self.shared.env.now_ms();
            let mut candidates: Vec<ObjectKey> = Vec::new();
            for o in self
                .shared
                .store
                .list_all(fsx_format::CONTENT_KEY_PREFIX)
                .await?
            {
                if known.contains(o.key.as_str()) {
                    continue;
                }
                // A zero grace takes every orphan, whatever the clocks say.
                let old_enough = options.orphan_grace_ms <= 0
                    || o.last_modified_ms
                        .is_some_and(|t| now.saturating_sub(t) >= options.orphan_grace_ms);
                if old_enough {
                    candidates.push(o.key);
                } else {
                    report.orphans_kept += 1;
                }
            }
            progress.phase("deleting orphan objects", Some(candidates.len() as u64));
            for key in candidates {
                // A record created since the listing means it is in use now.
                if self
                    .shared
                    .meta
                    .gc_claim_orphan(key.as_str(), self.shared.env.now_ms())
                    .await?
                {
                    self.delete_claimed(key.as_str()).await?;
                    report.orphans_deleted += 1;
                }
                progress.advance(1);
            }
        }
        tracing::info!(?report, "gc finished");
        Ok(report)
    }

    /// Checks that every referenced extent exists and verifies, that
    /// reference counts match the page map, and that the store holds no
    /// orphans. Reads every referenced extent once.
    pub async fn fsck(&self, progress: &dyn Progress) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        progress.phase("checking branches, commits and layers", None);
        let graph = self.shared.meta.layer_graph().await?;
        report.graph_faults = graph_faults(&graph);
        report.branches = graph.branches.len() as u64;
        report.commits = graph.commits.len() as u64;
        report.layers = graph.layers.len() as u64;
        self.check_dirty(&graph, &mut report, progress).await?;
        let records = self.all_records().await?;
        let refs = self.all_references().await?;
        let by_key: BTreeMap<&str, &ExtentRecord> =
            records.iter().map(|r| (r.key.as_str(), r)).collect();

        for (key, &count) in &refs {
            match by_key.get(key.as_str()) {
                None => report.dangling.push(key.clone()),
                Some(r) if r.refcount != count => {
                    report
                        .refcount_mismatch
                        .push((key.clone(), r.refcount, count))
                }
                Some(_) => {}
            }
        }
        for r in &records {
            if !refs.contains_key(&r.key) && r.refcount != 0 {
                report
                    .refcount_mismatch
                    .push((r.key.clone(), r.refcount, 0));
            }
            match r.state {
                ExtentState::Deleting => report.deleting += 1,
                ExtentState::Live if r.refcount == 0 => report.awaiting_gc += 1,
                ExtentState::Live => {}
            }
        }

        // Bad copies the reads below skip (a cache's, or a tier's whose
        // good copy another tier served) show only in the tiers' counters.
        let skipped_before = self.corrupt_count().await?;
        let to_check: Vec<&String> = refs.keys().collect();
        progress.phase("verifying referenced extents", Some(to_check.len() as u64));
        for key in to_check {
            let okey = ObjectKey::new(key)?;
            match self.shared.store.get(&okey).await {
                Ok(blob) => {
                    report.extents_checked += 1;
                    report.bytes_checked += blob.len() as u64;
                    let verdict = okey
                        .verify_content(&blob)
                        .map_err(|e| e.to_string())
                        .and_then(|()| {
                            Extent::decode(&blob).map(|_| ()).map_err(|e| e.to_string())
                        });
                    if let Err(fault) = verdict {
                        report.corrupt.push((key.clone(), fault));
                    }
                }
                Err(e) if e.kind() == fsx_store::ErrorKind::NotFound => {
                    report.missing.push(key.clone())
                }
                // A store that checks its own copies refuses a bad one.
                Err(e) if e.kind() == fsx_store::ErrorKind::Corrupt => {
                    report.extents_checked += 1;
                    report.corrupt.push((key.clone(), e.to_string()));
                }
                Err(e) => return Err(Error::from(e)),
            }
            progress.advance(1);
        }

        report.bad_copies_skipped = self.corrupt_count().await?.saturating_sub(skipped_before);
        if let Some(tiers) = self.tiers() {
            progress.phase("scrubbing every copy in every tier", None);
            let scrub = tiers.scrub().await?;
            report.bad_copies = scrub.bad;
            report.copies_repaired = scrub.repaired;
        }

        progress.phase("looking for orphan objects", None);
        for key in self.extent_objects().await? {
            if !by_key.contains_key(key.as_str()) {
                report.orphans.push(key.as_str().to_string());
            }
        }
        Ok(report)
    }
}

impl Volume {
    /// Bad copies met by reads so far, over every tier (flushed first, so
    /// the count is current).
    async fn corrupt_count(&self) -> Result<u64> {
        if self.tiers().is_none() {
            return Ok(0);
        }
        self.flush_counters().await?;
        Ok(self
            .stats()
            .await?
            .counters
            .iter()
            .filter(|c| c.op == "corrupt")
            .map(|c| c.calls)
            .sum())
    }

    /// Packs the dirty pages of branch heads whose writer is gone (see
    /// the module docs); returns how many files it packed and the
    /// `branch/file` names a live writer holds.
    pub async fn pack_abandoned(&self, progress: &dyn Progress) -> Result<(u64, Vec<String>)> {
        let branches = self.shared.meta.branches().await?;
        progress.phase(
            "packing pages that writers left",
            Some(branches.len() as u64),
        );
        let (mut packed, mut in_use) = (0, Vec::new());
        // A local journal a writer left is folded the same way: by the
        // writer that takes the lease (see `crate::journal`).
        let journals = match &self.shared.options.journals {
            Some(dir) => dir
                .list()
                .map_err(|e| crate::journal::io_error("directory", "list", e))?,
            None => Vec::new(),
        };
        for b in branches {
            let on = self.with_view(View::Branch(b.id));
            for f in on.list("").await? {
                let ppe = self.pages_per_extent(f.page_size).max(1);
                let own = self
                    .shared
                    .meta
                    .dirty_summary(View::Branch(b.id), f.id, ppe)
                    .await?;
                let journal = crate::journal::journal_name(b.id, f.id);
                if own.is_empty() && !journals.contains(&journal) {
                    continue;
                }
                // Taking the lease is what proves the writer gone: an
                // expired lease, or one whose holder process no longer
                // runs, is granted; a live one is `Busy`.
                let file = match on.open_file(&f.name, crate::OpenOptions::write()).await {
                    Ok(file) => file,
                    Err(e) if e.kind() == crate::ErrorKind::Busy => {
                        in_use.push(format!("{}/{}", b.name, f.name));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                tracing::info!(branch = %b.name, file = %f.name, "packing pages (or a journal) a writer left");
                file.close().await?;
                packed += 1;
            }
            progress.advance(1);
        }
        Ok((packed, in_use))
    }

    /// Reads every dirty page, checks it against its checksum and counts
    /// the unpacked ones per layer and file (see [`FsckReport`]).
    async fn check_dirty(
        &self,
        graph: &fsx_meta::LayerGraph,
        report: &mut FsckReport,
        progress: &dyn Progress,
    ) -> Result<()> {
        progress.phase("checking unpacked pages", None);
        // Who owns a layer, and the view that names its files.
        let mut owners: BTreeMap<LayerId, (String, View)> = BTreeMap::new();
        for c in graph.commits.iter().rev() {
            owners.insert(c.layer, (format!("commit {}", c.id), View::Commit(c.id)));
        }
        for b in &graph.branches {
            owners.insert(b.head, (format!("branch {}", b.name), View::Branch(b.id)));
        }
        let mut counts: BTreeMap<(LayerId, FileId), u64> = BTreeMap::new();
        let mut damaged: Vec<(LayerId, FileId, u64)> = Vec::new();
        let mut after = None;
        loop {
            let batch = self.shared.meta.check_dirty_pages(after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.cursor());
            for c in &batch {
                report.dirty_pages_checked += 1;
                *counts.entry((c.layer, c.file_id)).or_default() += 1;
                if !c.intact {
                    damaged.push((c.layer, c.file_id, c.page_no));
                }
            }
            progress.advance(batch.len() as u64);
        }
        let mut names: BTreeMap<LayerId, BTreeMap<FileId, String>> = BTreeMap::new();
        let layers: BTreeSet<LayerId> = counts.keys().map(|&(l, _)| l).collect();
        for l in layers {
            let mut by_id = BTreeMap::new();
            if let Some((_, view)) = owners.get(&l) {
                for f in self.shared.meta.list_files(*view, "").await? {
                    by_id.insert(f.id, f.name);
                }
            }
            names.insert(l, by_id);
        }
        let owner = |l: LayerId| {
            owners
                .get(&l)
                .map_or_else(|| format!("layer {l}"), |(o, _)| o.clone())
        };
        let name = |l: LayerId, f: FileId| {
            names
                .get(&l)
                .and_then(|m| m.get(&f))
                .map_or_else(|| format!("#{f}"), |n| format!("{n:?}"))
        };
        for (l, f, page) in damaged {
            report.damaged_pages.push(format!(
                "page {page} of {} ({}, layer {l}) fails its checksum",
                name(l, f),
                owner(l)
            ));
        }
        for ((l, f), pages) in counts {
            report.unpacked.push(UnpackedPages {
                owner: owner(l),
                file: name(l, f),
                pages,
            });
        }
        Ok(())
    }
}

/// Structural faults of a layer graph: dangling links, cycles, shared or
/// frozen heads, mutable commit layers, mutable layers with children.
pub fn graph_faults(g: &fsx_meta::LayerGraph) -> Vec<String> {
    let mut faults = Vec::new();
    let layers: BTreeMap<i64, &fsx_meta::LayerInfo> = g.layers.iter().map(|l| (l.id, l)).collect();
    let commits: BTreeSet<i64> = g.commits.iter().map(|c| c.id).collect();
    let mut heads = BTreeMap::new();
    for l in &g.layers {
        if let Some(p) = l.parent {
            match layers.get(&p) {
                None => faults.push(format!("layer {} names a missing parent layer {p}", l.id)),
                Some(parent) if !parent.frozen => faults.push(format!(
                    "layer {p} has a child ({}) but is not frozen",
                    l.id
                )),
                Some(_) => {}
            }
        }
        // A chain longer than the number of layers loops.
        let mut cur = l.parent;
        let mut steps = 0;
        while let Some(id) = cur {
            steps += 1;
            if steps > layers.len() {
                faults.push(format!("layer {} is on a cycle of parents", l.id));
                break;
            }
            cur = layers.get(&id).and_then(|x| x.parent);
        }
    }
    for b in &g.branches {
        match layers.get(&b.head) {
            None => faults.push(format!(
                "branch {:?} names a missing head layer {}",
                b.name, b.head
            )),
            Some(l) if l.frozen => faults.push(format!(
                "branch {:?}'s head layer {} is frozen",
                b.name, b.head
            )),
            Some(_) => {}
        }
        if let Some(other) = heads.insert(b.head, b.name.clone()) {
            faults.push(format!(
                "branches {other:?} and {:?} share head layer {}",
                b.name, b.head
            ));
        }
        if let Some(c) = b.commit
            && !commits.contains(&c)
        {
            faults.push(format!("branch {:?} names a missing commit {c}", b.name));
        }
    }
    for c in &g.commits {
        match layers.get(&c.layer) {
            None => faults.push(format!("commit {} names a missing layer {}", c.id, c.layer)),
            Some(l) if !l.frozen => {
                faults.push(format!("commit {}'s layer {} is not frozen", c.id, c.layer))
            }
            Some(_) => {}
        }
        for p in c.parent.iter().chain(c.merged.iter()) {
            if !commits.contains(p) {
                faults.push(format!("commit {} names a missing parent commit {p}", c.id));
            }
        }
    }
    for l in &g.layers {
        if !l.frozen && !heads.contains_key(&l.id) {
            faults.push(format!("layer {} is mutable but no branch's head", l.id));
        }
    }
    faults
}
