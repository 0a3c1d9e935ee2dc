//! Retention planning over the layer graph, shared by every engine (and by
//! `fsx stats`, which asks what deleting a branch would free).
//!
//! Rules (see "Retention" in [`crate::contract`]):
//!
//! - a commit is kept while some branch's latest commit reaches it through
//!   parent or merge links;
//! - a layer is needed while it is a branch head, a kept commit's layer, or
//!   the parent of a needed layer; every other layer is deleted;
//! - a needed layer that is neither a head nor a kept commit's layer and has
//!   exactly one child is folded into that child (its rows the child does
//!   not hide move up, the rest are dropped), so history that nothing can
//!   name any more costs nothing and chains stay short.

use std::collections::{BTreeMap, BTreeSet};

use crate::contract::{BranchId, CommitId, LayerGraph, LayerId};

/// What an engine must do to the graph, in order: remove the commits,
/// delete the layers, then apply the folds one after the other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Commits no branch reaches.
    pub remove_commits: Vec<CommitId>,
    /// Layers nothing needs.
    pub delete_layers: Vec<LayerId>,
    /// `(layer, child)`: fold `layer` into its only child.
    pub folds: Vec<(LayerId, LayerId)>,
}

impl RetentionPlan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove_commits.is_empty() && self.delete_layers.is_empty() && self.folds.is_empty()
    }
}

/// Plans the collection of `graph`.
pub fn plan(graph: &LayerGraph) -> RetentionPlan {
    let commits: BTreeMap<CommitId, _> = graph.commits.iter().map(|c| (c.id, c)).collect();
    let mut reachable = BTreeSet::new();
    let mut stack: Vec<CommitId> = graph.branches.iter().filter_map(|b| b.commit).collect();
    while let Some(c) = stack.pop() {
        let Some(info) = commits.get(&c) else {
            continue;
        };
        if reachable.insert(c) {
            stack.extend(info.parent);
            stack.extend(info.merged);
        }
    }
    let remove_commits: Vec<CommitId> = commits
        .keys()
        .filter(|c| !reachable.contains(c))
        .copied()
        .collect();

    let mut parent: BTreeMap<LayerId, Option<LayerId>> =
        graph.layers.iter().map(|l| (l.id, l.parent)).collect();
    let pinned: BTreeSet<LayerId> = graph
        .branches
        .iter()
        .map(|b| b.head)
        .chain(
            reachable
                .iter()
                .filter_map(|c| commits.get(c).map(|c| c.layer)),
        )
        .collect();
    let mut needed = BTreeSet::new();
    for &l in &pinned {
        let mut cur = Some(l);
        while let Some(id) = cur {
            if !needed.insert(id) {
                break;
            }
            cur = parent.get(&id).copied().flatten();
        }
    }
    let delete_layers: Vec<LayerId> = parent
        .keys()
        .filter(|l| !needed.contains(l))
        .copied()
        .collect();
    parent.retain(|l, _| needed.contains(l));

    let mut folds = Vec::new();
    let candidates: Vec<LayerId> = needed
        .iter()
        .filter(|l| !pinned.contains(l))
        .copied()
        .collect();
    for l in candidates {
        let children: Vec<LayerId> = parent
            .iter()
            .filter(|(_, p)| **p == Some(l))
            .map(|(c, _)| *c)
            .collect();
        if let [child] = children[..] {
            let up = parent.remove(&l).flatten();
            parent.insert(child, up);
            folds.push((l, child));
        }
    }
    RetentionPlan {
        remove_commits,
        delete_layers,
        folds,
    }
}

/// Automatic commits made before `before_ms` that are no branch's latest
/// commit: what [`crate::MetaBranches::expire_commits`] removes.
pub fn expirable(graph: &LayerGraph, before_ms: i64) -> BTreeSet<CommitId> {
    let tips: BTreeSet<CommitId> = graph.branches.iter().filter_map(|b| b.commit).collect();
    graph
        .commits
        .iter()
        .filter(|c| c.auto && c.created_ms < before_ms && !tips.contains(&c.id))
        .map(|c| c.id)
        .collect()
}

/// New `(commit, parent, merged)` links for the commits that named a
/// removed one: each points past the removed commits to the nearest kept
/// ancestor.
pub fn relink(
    graph: &LayerGraph,
    removed: &BTreeSet<CommitId>,
) -> Vec<(CommitId, Option<CommitId>, Option<CommitId>)> {
    let parents: BTreeMap<CommitId, Option<CommitId>> =
        graph.commits.iter().map(|c| (c.id, c.parent)).collect();
    let skip = |mut c: Option<CommitId>| {
        while let Some(id) = c {
            if !removed.contains(&id) {
                break;
            }
            c = parents.get(&id).copied().flatten();
        }
        c
    };
    graph
        .commits
        .iter()
        .filter(|c| !removed.contains(&c.id))
        .filter(|c| {
            c.parent.is_some_and(|p| removed.contains(&p))
                || c.merged.is_some_and(|m| removed.contains(&m))
        })
        .map(|c| (c.id, skip(c.parent), skip(c.merged)))
        .collect()
}

/// The layers deleting `branch` would delete (what only it needs).
pub fn deleted_with_branch(graph: &LayerGraph, branch: BranchId) -> Vec<LayerId> {
    let mut g = graph.clone();
    g.branches.retain(|b| b.id != branch);
    plan(&g).delete_layers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{BranchInfo, CommitInfo, LayerInfo};

    fn layer(id: LayerId, parent: Option<LayerId>) -> LayerInfo {
        LayerInfo {
            id,
            parent,
            frozen: true,
        }
    }

    fn branch(id: BranchId, head: LayerId, commit: Option<CommitId>) -> BranchInfo {
        BranchInfo {
            id,
            name: format!("b{id}"),
            head,
            commit,
            created_ms: 0,
            commit_ms: 0,
        }
    }

    fn commit(id: CommitId, layer: LayerId, parent: Option<CommitId>, auto: bool) -> CommitInfo {
        CommitInfo {
            id,
            layer,
            parent,
            merged: None,
            branch: "b".into(),
            message: String::new(),
            auto,
            created_ms: id,
        }
    }

    /// main: L1 (c1) <- L2 (c2) <- L3 head; dev: L4 head on L1.
    fn sample() -> LayerGraph {
        LayerGraph {
            layers: vec![
                layer(1, None),
                layer(2, Some(1)),
                layer(3, Some(2)),
                layer(4, Some(1)),
            ],
            branches: vec![branch(1, 3, Some(2)), branch(2, 4, Some(1))],
            commits: vec![commit(1, 1, None, false), commit(2, 2, Some(1), true)],
        }
    }

    #[test]
    fn nothing_to_do_on_a_healthy_graph() {
        assert!(plan(&sample()).is_empty());
    }

    #[test]
    fn deleting_a_branch_deletes_its_head_and_folds_the_base() {
        let mut g = sample();
        assert_eq!(deleted_with_branch(&g, 2), vec![4]);
        g.branches.retain(|b| b.id != 2);
        let p = plan(&g);
        assert_eq!(p.delete_layers, vec![4]);
        // L1 is still c1's layer: nothing folds.
        assert!(p.folds.is_empty());
    }

    #[test]
    fn expiring_commits_folds_their_layers() {
        let mut g = sample();
        g.branches.retain(|b| b.id != 2);
        let gone = expirable(&g, 100);
        assert!(gone.is_empty(), "the tip c2 is kept, c1 is not automatic");
        g.commits[0].auto = true;
        g.branches[0].commit = Some(2);
        let gone = expirable(&g, 100);
        assert_eq!(gone, BTreeSet::from([1]));
        assert_eq!(relink(&g, &gone), vec![(2, None, None)]);
        g.commits.retain(|c| c.id != 1);
        g.commits[0].parent = None;
        let p = plan(&g);
        assert_eq!(p.folds, vec![(1, 2)]);
        // dev's head went with dev.
        assert_eq!(p.delete_layers, vec![4]);
    }

    #[test]
    fn resetting_drops_unreachable_commits() {
        let mut g = sample();
        // main reset to c1: new head L5 on L1; L3 (old head) and c2 go.
        g.layers.push(layer(5, Some(1)));
        g.branches[0].head = 5;
        g.branches[0].commit = Some(1);
        let p = plan(&g);
        assert_eq!(p.remove_commits, vec![2]);
        assert_eq!(p.delete_layers, vec![2, 3]);
    }
}
