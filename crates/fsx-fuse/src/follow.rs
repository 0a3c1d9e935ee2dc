//! Following the volume's change feed, so the kernel's caches of this
//! mount drop what another writer changed: another mount of the volume
//! (on this machine or, with PostgreSQL metadata, on any), `fsx` commands,
//! `fsx serve`.
//!
//! Every [`FOLLOW_EVERY`] the daemon reads the newest change number; when
//! it moved, it reads the changes after the last one it saw. A change of
//! this mount's branch made by another engine instance (its
//! [`Change::origin`] is not ours) drops the kernel's name and attributes
//! of what it touched, and for a change of a file's bytes its cached
//! pages. A mount's own changes go through the kernel, which keeps its
//! caches right itself: dropping them would only cost lookups.
//!
//! What cannot be followed change by change — a reset or a merge of this
//! branch, or a feed pruned past the last change seen — drops the
//! attributes and pages of every inode this mount has opened; names
//! cached then go stale for at most the entry timeout.
//!
//! Invariant: the notifier is written from blocking threads only, never
//! from a runtime worker: the kernel may make the write wait for a
//! directory lock that a request in progress holds, and that request's
//! reply may need the runtime.

use std::sync::Arc;
use std::time::Duration;

use fsx_meta::{Change, ChangeKind, MetaErrorKind, View};

use crate::fs::SharedFs;

/// How often the feed's newest number is read.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Changes read at once.
const BATCH: usize = 1000;

/// What a change asks of the kernel's caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    /// The name `parent`/`name` (the volume's inode numbers).
    Entry(i64, Vec<u8>),
    /// The attributes of an inode.
    Attrs(i64),
    /// The attributes and cached pages of an inode.
    Pages(i64),
    /// Everything this mount has opened.
    Everything,
}

/// What the kernel must forget for `c`, a change another writer made to
/// this mount's branch.
pub(crate) fn drops(c: &Change) -> Vec<Forget> {
    let mut out = Vec::new();
    let entry = |p: Option<i64>, n: &Option<bytes::Bytes>| {
        p.zip(n.as_ref()).map(|(p, n)| Forget::Entry(p, n.to_vec()))
    };
    match c.kind {
        ChangeKind::Make | ChangeKind::Remove | ChangeKind::Link | ChangeKind::Rename => {
            out.extend(entry(c.parent, &c.name));
            out.extend(entry(c.to_parent, &c.to_name));
            // The directories' times, sizes and link counts, and their
            // listings.
            out.extend(c.parent.map(Forget::Pages));
            out.extend(
                c.to_parent
                    .filter(|&p| Some(p) != c.parent)
                    .map(Forget::Pages),
            );
            // The node's link count and ctime.
            out.extend(c.ino.map(Forget::Attrs));
        }
        ChangeKind::Attr | ChangeKind::Xattr => out.extend(c.ino.map(Forget::Attrs)),
        ChangeKind::Data => out.extend(c.ino.map(Forget::Pages)),
        ChangeKind::Reset | ChangeKind::Merge => out.push(Forget::Everything),
        // A commit or a new branch changes nothing a branch shows; a
        // deleted branch cannot be written any more.
        _ => {}
    }
    out
}

/// Follows the feed for as long as the mount lives (the task is aborted
/// at unmount). A view of a commit never changes: nothing to follow.
pub(crate) async fn follow(shared: Arc<dyn SharedFs>) {
    let volume = shared.fs().volume();
    let View::Branch(branch) = volume.view() else {
        return;
    };
    let meta = volume.meta().clone();
    let own = meta.origin();
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut after = None;
    let mut warned = false;
    loop {
        tick.tick().await;
        let last = match meta.last_change().await {
            Ok(n) => n,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "reading the change feed failed; the kernel's caches of other writers' changes last their timeouts until it works again");
                    warned = true;
                }
                continue;
            }
        };
        warned = false;
        let Some(seen) = after else {
            // Start from now: what the kernel caches was read after it.
            after = Some(last);
            continue;
        };
        if last == seen {
            continue;
        }
        let mut todo = Vec::new();
        if last < seen {
            // Numbers taken back (a power loss took deferred changes):
            // what the kernel holds may be of changes that are gone.
            todo.push(Forget::Everything);
            after = Some(last);
        } else {
            match meta.changes(seen, BATCH).await {
                Ok(changes) => {
                    for c in &changes {
                        if c.branch == branch && c.origin != Some(own) {
                            todo.extend(drops(c));
                        }
                    }
                    after = Some(changes.last().map_or(last, |c| c.seq));
                }
                Err(e) if e.kind() == MetaErrorKind::Gone => {
                    todo.push(Forget::Everything);
                    after = Some(last);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the change feed failed; it is retried");
                    continue;
                }
            }
        }
        if todo.is_empty() {
            continue;
        }
        let s = shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.forget(&todo)).await {
            tracing::warn!(error = %e, "dropping the kernel's caches failed");
        }
    }
}
