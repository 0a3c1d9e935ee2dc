//! The change feed, written once for every engine
//! ([`crate::contract::MetaChanges`]).
//!
//! A change is recorded by the contract method that made it, after its
//! logic function returned (the family macros call [`record`]): so the
//! numbering is the last thing a transaction does before the engine
//! commits it. That matters on PostgreSQL, where numbering locks the
//! counter row until the commit — taken last, it is held briefly and
//! can take part in no lock cycle (see "Lock order" in `crate::logic`).
//! SQLite numbers by rowid: its single writer commits in numbering
//! order already, and the newest row is never pruned, so a number is
//! never given twice.

use std::collections::HashMap;

use bytes::Bytes;

use super::{Tx, args, corrupt, layers, settings, tree};
use crate::contract::{BranchId, Change, ChangeKind, Ino, LayerId, NewChange, View};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::num;

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(at_ms, branch, kind, ino, parent, name, to_parent, to_name,
    /// commit_id, origin)`: records a change under the next number.
    Record,
    /// `(after, limit) → seq, at_ms, branch, branch name, kind, ino,
    /// parent, name, to_parent, to_name, commit_id, origin`, ascending.
    After,
    /// `→ seq` of the newest change (0 when none).
    Last,
    /// `(through)`: forgets the changes numbered up to `through`.
    Prune,
}

/// Where the greatest number forgotten is kept (`fsx_volume`).
pub(crate) const PRUNED_KEY: &str = "changes.pruned";

/// Most changes one read returns.
pub(crate) const MAX_READ: usize = 10_000;

/// Records `c` under the next number. Called last in a transaction (see
/// the module docs).
pub(crate) async fn record(tx: &impl Tx, c: NewChange<'_>) -> Result<()> {
    tx.exec(
        Q::Record.into(),
        args![
            c.at_ms,
            c.branch,
            c.kind.as_str(),
            c.ino,
            c.parent,
            c.name,
            c.to_parent,
            c.to_name,
            c.commit,
            tx.caches().origin(),
        ],
    )
    .await?;
    Ok(())
}

/// Records a change of the flat file API, which names files by path:
/// `path` (and a rename's `to`) as the directory entry the tree holds for
/// it, once the change is made (the flat API never removes directories,
/// so the parents are still there).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_path(
    tx: &impl Tx,
    chain: &[LayerId],
    kind: ChangeKind,
    branch: BranchId,
    ino: Ino,
    path: &str,
    to: Option<&str>,
    at_ms: i64,
) -> Result<()> {
    let entry = |p: &str| {
        let p = p.to_owned();
        async move {
            let (dir, leaf) = tree::parent_of(tx, chain, &p)
                .await?
                .ok_or_else(|| corrupt(format!("the directory of {p:?} vanished")))?;
            Ok::<_, MetaError>((dir, leaf.to_vec()))
        }
    };
    let (dir, leaf) = entry(path).await?;
    let dest = match to {
        Some(to) => Some(entry(to).await?),
        None => None,
    };
    let mut c = NewChange::new(kind, branch, at_ms)
        .ino(ino)
        .entry(dir, &leaf);
    if let Some((d, l)) = &dest {
        c = c.to(*d, l);
    }
    record(tx, c).await
}

/// `ns` as ms, for the changes of calls that are timed in ns.
pub(crate) fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

async fn pruned(tx: &impl Tx) -> Result<u64> {
    match tx
        .query_opt(settings::Q::Setting.into(), args![PRUNED_KEY])
        .await?
    {
        None => Ok(0),
        Some(r) => r
            .text(0, "changes.pruned")?
            .parse()
            .map_err(|_| corrupt("the setting changes.pruned is not a number")),
    }
}

pub(crate) async fn changes(tx: &impl Tx, after: u64, limit: usize) -> Result<Vec<Change>> {
    if limit == 0 || limit > MAX_READ {
        return Err(MetaError::invalid(format!(
            "a read of the change feed returns 1 to {MAX_READ} changes, not {limit}"
        )));
    }
    let pruned = pruned(tx).await?;
    if after < pruned {
        return Err(MetaError::new(
            MetaErrorKind::Gone,
            format!(
                "the changes after {after} are no longer kept (the volume keeps those after \
                 {pruned}); start over from the volume's current state"
            ),
        ));
    }
    tx.query(Q::After.into(), args![num::bound(after), num::limit(limit)])
        .await?
        .iter()
        .map(|r| {
            let kind = r.text(4, "change kind")?;
            Ok(Change {
                seq: r.u64(0, "change seq")?,
                at_ms: r.i64(1, "change at_ms")?,
                branch: r.i64(2, "change branch")?,
                branch_name: r.opt_text(3, "change branch name")?,
                kind: ChangeKind::from_name(&kind)
                    .ok_or_else(|| corrupt(format!("change kind {kind:?} is unknown")))?,
                ino: r.opt_i64(5, "change ino")?,
                parent: r.opt_i64(6, "change parent")?,
                name: r.opt_blob(7, "change name")?,
                to_parent: r.opt_i64(8, "change to_parent")?,
                to_name: r.opt_blob(9, "change to_name")?,
                commit: r.opt_i64(10, "change commit")?,
                origin: r.opt_i64(11, "change origin")?,
            })
        })
        .collect()
}

pub(crate) async fn last(tx: &impl Tx) -> Result<u64> {
    tx.query_one(Q::Last.into(), &[])
        .await?
        .u64(0, "last change")
}

pub(crate) async fn prune(tx: &impl Tx, keep: u64) -> Result<u64> {
    if keep == 0 {
        return Err(MetaError::invalid(
            "the change feed keeps at least its newest change",
        ));
    }
    let through = last(tx).await?.saturating_sub(keep);
    if through <= pruned(tx).await? {
        return Ok(0);
    }
    let n = tx.exec(Q::Prune.into(), args![num::bound(through)]).await?;
    let through = through.to_string();
    tx.exec(
        settings::Q::UpsertSetting.into(),
        args![PRUNED_KEY, through.as_str()],
    )
    .await?;
    Ok(n)
}

/// Deepest directory nesting [`paths_of`] follows before it calls the
/// tree corrupt (a cycle of parents).
const MAX_DEPTH: usize = 4096;

pub(crate) async fn paths_of(tx: &impl Tx, view: View, inos: &[Ino]) -> Result<Vec<Option<Bytes>>> {
    let chain = layers::view_chain(tx, view).await?;
    let root = tree::root(tx).await?;
    // Directories met on the way, by inode: the changes of one page
    // mostly share their parents.
    let mut known: HashMap<Ino, Option<Bytes>> = HashMap::new();
    known.insert(root, Some(Bytes::from_static(b"/")));
    let mut out = Vec::with_capacity(inos.len());
    for &ino in inos {
        out.push(path_in(tx, &chain, &mut known, ino).await?);
    }
    Ok(out)
}

async fn path_in(
    tx: &impl Tx,
    chain: &[LayerId],
    known: &mut HashMap<Ino, Option<Bytes>>,
    ino: Ino,
) -> Result<Option<Bytes>> {
    // Up to the first inode whose path is known.
    let mut names: Vec<(Ino, Bytes)> = Vec::new();
    let mut at = ino;
    let base = loop {
        if let Some(p) = known.get(&at) {
            break p.clone();
        }
        if names.len() > MAX_DEPTH {
            return Err(corrupt(format!(
                "inode {ino}'s parents go deeper than {MAX_DEPTH} directories; run `fsx fsck`"
            )));
        }
        match tree::first_link(tx, chain, at).await? {
            Some((parent, name)) => {
                names.push((at, name));
                at = parent;
            }
            None => break None,
        }
    };
    // Back down, remembering each directory's path.
    let mut path = base;
    for (node, name) in names.into_iter().rev() {
        path = path.map(|p| {
            let mut v = Vec::with_capacity(p.len() + 1 + name.len());
            if p.as_ref() != b"/" {
                v.extend_from_slice(&p);
            }
            v.push(b'/');
            v.extend_from_slice(&name);
            Bytes::from(v)
        });
        known.insert(node, path.clone());
    }
    Ok(path)
}

/// `impl MetaChanges for $engine` (`$mode`: see [`super::run`]).
macro_rules! impl_meta_changes {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            impl MetaChanges for $engine {
                fn changes(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Change>>> {
                    run!($mode, self, Read, |tx| changes::changes(tx, after, limit).await)
                }

                fn last_change(&self) -> BoxFuture<'_, Result<u64>> {
                    run!($mode, self, Read, |tx| changes::last(tx).await)
                }

                fn origin(&self) -> i64 {
                    self.engine_caches().origin()
                }

                fn prune_changes(&self, keep: u64) -> BoxFuture<'_, Result<u64>> {
                    run!($mode, self, Write, |tx| changes::prune(tx, keep).await)
                }

                fn paths_of<'a>(
                    &'a self,
                    view: View,
                    inos: &'a [Ino],
                ) -> BoxFuture<'a, Result<Vec<Option<bytes::Bytes>>>> {
                    run!($mode, self, Read, |tx| changes::paths_of(tx, view, inos).await)
                }
            }
        }
    };
}
pub(crate) use impl_meta_changes;
