//! The engine's answers in the API's terms: one conversion each, shared by
//! the server's handlers and the CLI's `--json` output, so a local and a
//! remote command print the same thing by construction.

use fsx_engine::{FileChange, MergeOutcome};
use fsx_meta::{BranchInfo, CommitInfo};
use fsx_protocol::types as t;

/// A commit.
pub fn commit(c: &CommitInfo) -> t::Commit {
    t::Commit {
        id: c.id,
        parent: c.parent,
        merged: c.merged,
        branch: c.branch.clone(),
        message: c.message.clone(),
        auto: c.auto,
        created_ms: c.created_ms,
    }
}

/// A branch, without its usage.
pub fn branch(b: &BranchInfo) -> t::Branch {
    t::Branch {
        name: b.name.clone(),
        id: b.id,
        commit: b.commit,
        created_ms: b.created_ms,
        commit_ms: b.commit_ms,
        unique: None,
    }
}

/// A file changed between two views.
pub fn change(c: &FileChange) -> t::Change {
    t::Change {
        id: c.id,
        kind: c.kind().to_string(),
        old_name: c.old_name.clone(),
        new_name: c.new_name.clone(),
        old_size: c.old_size,
        new_size: c.new_size,
        pages: c
            .pages
            .iter()
            .map(|r| t::PageRange {
                start: r.start,
                end: r.end,
            })
            .collect(),
    }
}

/// A merge's outcome.
pub fn merged(o: MergeOutcome) -> t::Merged {
    let mut out = t::Merged {
        outcome: t::MergeOutcome::UpToDate,
        commit: None,
        taken: Vec::new(),
        resolved: Vec::new(),
        conflicts: Vec::new(),
    };
    match o {
        MergeOutcome::UpToDate => {}
        MergeOutcome::FastForward(c) => {
            out.outcome = t::MergeOutcome::FastForward;
            out.commit = Some(commit(&c));
        }
        MergeOutcome::Merged {
            commit: c,
            taken,
            resolved,
        } => {
            out.outcome = t::MergeOutcome::Merged;
            out.commit = Some(commit(&c));
            out.taken = taken;
            out.resolved = resolved;
        }
        MergeOutcome::Conflicts(names) => {
            out.outcome = t::MergeOutcome::Conflicts;
            out.conflicts = names;
        }
    }
    out
}

/// Changes of the feed, with their paths when asked for (see
/// `crate::feed`): what `…/changes`, `…/watch` and `fsx watch` show.
pub use crate::feed::feed_changes;
