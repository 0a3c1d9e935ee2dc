//! The file tree, written once for every engine
//! ([`crate::contract::MetaTree`]), and the paths the flat file API
//! (`logic::files`) resolves through it.
//!
//! # Rows
//!
//! `fsx_nodes`, `fsx_entries` and `fsx_xattrs` are layered like
//! `fsx_files`: a view's chain is read top first, the topmost row of a key
//! wins, and a `deleted` row hides the rows below it. Every change writes
//! whole rows into the branch's head, so copy-on-write needs no separate
//! step, and branch creation copies nothing. A regular file's inode number
//! is its `fsx_files` id: its size and data stay there, its name and
//! attributes here.
//!
//! # Locks
//!
//! Every change takes the graph lock shared and [`Lock::Names`] of its
//! branch, which serialises the branch's namespace changes: a check (a
//! name is free, a directory is empty, a directory is not its own
//! ancestor) and the change it guards cannot interleave with another's.
//! Removing a regular file's data then takes [`Lock::Files`] of it, in the
//! order of `logic`'s lock list.
//!
//! # Times
//!
//! A node's times are nanoseconds. A regular file's contents change
//! through the page store, which stamps `fsx_files.modified_ms` and moves
//! `write_seq` on; `data_seq` records the `write_seq` at which `setattr`
//! last set `mtime`, so a later write shows as the newer `mtime` (ms
//! resolution) and an explicit `mtime` after it wins.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;

use super::layers::{self};
use super::{Lock, Row, Tx, args, corrupt, files};
use crate::contract::{
    Attr, BranchId, ByteLock, DirEntry, FileMeta, Ino, LayerId, LockKind, MakeNode, NodeKind,
    Orphan, SetAttr, SetTime, TreeNode, Unlinked, View,
};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::names::{self, Refused, XattrOp};
use crate::perm::{self, Caller, Owned};
use crate::remove::{self, RemoveOp};
use crate::rename::{self, RenameAccess, RenameAction, RenameCase, RenameFlags, Side};
use crate::resolve::FileRow;

/// The statements of this family. "Node columns" are `layer, ino, kind,
/// mode, uid, gid, nlink, rdev, atime_ns, mtime_ns, ctime_ns, btime_ns,
/// data_seq, parent, target, deleted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(layers, ino) →` node columns of every version in those layers.
    NodeRows,
    /// Node columns: writes the row, replacing the layer's version.
    PutNode,
    /// `(layers, parent, name) → layer, ino, kind, deleted`.
    EntryRows,
    /// `(layers, parent, after, limit) → layer, name, ino, kind,
    /// deleted`: entry versions after a name, by name.
    DirRows,
    /// `(layers, ino) → parent, name`: every entry version naming `ino`.
    EntriesOf,
    /// `(layer, parent, name, ino, kind, deleted)`: writes an entry row.
    PutEntry,
    /// `(layer, parent, name)`: deletes the layer's entry row.
    DeleteEntry,
    /// `(layers, ino, name) → layer, value, deleted`.
    XattrRows,
    /// `(layers, ino) → layer, name, deleted`, by name.
    XattrNames,
    /// `(layer, ino, name, value, deleted)`: writes an attribute row.
    PutXattr,
    /// `(layer, ino)`: deletes the layer's attribute rows of an inode.
    DeleteXattrsOf,
    /// `(branch, ino, holder, since_ms)`: records an orphan (no-op if
    /// recorded).
    AddOrphan,
    /// `(branch, ino)`: forgets an orphan.
    DeleteOrphan,
    /// `→ branch, ino, holder, since_ms` of every orphan.
    Orphans,
    /// `(branch, ino, kind) → holder, owner, start, stop, exclusive`.
    LocksOf,
    /// `(branch, ino, kind, holder, owner, start, stop, exclusive)`.
    AddLock,
    /// `(branch, ino, kind, holder, owner)`: deletes one owner's locks of
    /// a file.
    DeleteOwnerLocks,
    /// `(holder, ino or NULL, kind or NULL, owner)`: deletes a holder's
    /// locks (of that kind and owner, when given).
    ReleaseLocks,
}

/// Where the root's inode number is kept (`fsx_volume`).
const ROOT_SETTING: &str = "root_ino";

/// Default permissions of what the flat file API makes (as root).
const FLAT_FILE_MODE: u32 = 0o644;
const FLAT_DIR_MODE: u32 = 0o755;

/// A node row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeRow {
    pub layer: LayerId,
    pub ino: Ino,
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: u64,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub btime_ns: i64,
    pub data_seq: i64,
    pub parent: Option<Ino>,
    pub target: Option<Bytes>,
    pub deleted: bool,
}

impl NodeRow {
    fn owned(&self) -> Owned {
        Owned {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
            dir: self.kind == NodeKind::Dir,
        }
    }

    fn side(&self, empty: bool) -> Side {
        Side {
            ino: self.ino.cast_unsigned(),
            dir: self.kind == NodeKind::Dir,
            empty,
        }
    }

    fn touch(&mut self, now_ns: i64) {
        self.mtime_ns = now_ns;
        self.ctime_ns = now_ns;
    }
}

fn kind_at(r: &Row, i: usize) -> Result<NodeKind> {
    let code = r.i64(i, "node kind")?;
    NodeKind::from_code(code).ok_or_else(|| corrupt(format!("node kind {code} is unknown")))
}

fn blob_at(r: &Row, i: usize, what: &str) -> Result<Bytes> {
    r.opt_blob(i, what)?
        .ok_or_else(|| corrupt(format!("{what} is NULL")))
}

/// An entry version from column `at` on (`ino, kind, deleted`): `None`
/// for a tombstone, whose other columns mean nothing.
fn entry_version(r: &Row, at: usize) -> Result<Option<(Ino, NodeKind)>> {
    if r.bool(at + 2, "deleted")? {
        return Ok(None);
    }
    Ok(Some((r.i64(at, "entry ino")?, kind_at(r, at + 1)?)))
}

fn node_row(r: &Row) -> Result<NodeRow> {
    Ok(NodeRow {
        layer: r.i64(0, "node layer")?,
        ino: r.i64(1, "ino")?,
        kind: kind_at(r, 2)?,
        mode: r.u32(3, "mode")?,
        uid: r.u32(4, "uid")?,
        gid: r.u32(5, "gid")?,
        nlink: r.u32(6, "nlink")?,
        rdev: r.u64(7, "rdev")?,
        atime_ns: r.i64(8, "atime")?,
        mtime_ns: r.i64(9, "mtime")?,
        ctime_ns: r.i64(10, "ctime")?,
        btime_ns: r.i64(11, "btime")?,
        data_seq: r.i64(12, "data_seq")?,
        parent: r.opt_i64(13, "parent")?,
        target: r.opt_blob(14, "symlink target")?,
        deleted: r.bool(15, "deleted")?,
    })
}

/// The row of the topmost layer of `chain` among `rows` (by layer).
fn topmost<T>(chain: &[LayerId], rows: impl IntoIterator<Item = (LayerId, T)>) -> Option<T> {
    rows.into_iter()
        .filter_map(|(l, t)| chain.iter().position(|&c| c == l).map(|i| (i, t)))
        .min_by_key(|(i, _)| *i)
        .map(|(_, t)| t)
}

fn refused(r: Refused, what: impl std::fmt::Display) -> MetaError {
    MetaError::refused(r, what.to_string())
}

fn enoent(what: impl std::fmt::Display) -> MetaError {
    refused(Refused::NotFound, what)
}

fn check_name(name: &[u8]) -> Result<()> {
    names::check_name(name).map_err(|r| {
        refused(
            r,
            format!("{:?} is not a valid name", String::from_utf8_lossy(name)),
        )
    })
}

fn denied(d: perm::Denied) -> Refused {
    match d {
        perm::Denied::Access => Refused::Access,
        perm::Denied::NotPermitted => Refused::NotPermitted,
    }
}

fn ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

/// The root's inode number.
pub(crate) async fn root(tx: &impl Tx) -> Result<Ino> {
    let v = super::settings::get_setting(tx, ROOT_SETTING).await?;
    v.parse()
        .map_err(|_| corrupt(format!("volume setting {ROOT_SETTING}={v:?} is malformed")))
}

/// `ino` as `chain` shows it (deleted or not).
async fn top_node(tx: &impl Tx, chain: &[LayerId], ino: Ino) -> Result<Option<NodeRow>> {
    let rows = tx.query(Q::NodeRows.into(), args![chain, ino]).await?;
    let rows = rows
        .iter()
        .map(|r| node_row(r).map(|n| (n.layer, n)))
        .collect::<Result<Vec<_>>>()?;
    Ok(topmost(chain, rows))
}

/// `ino` as `chain` shows it, if it exists.
pub(crate) async fn node(tx: &impl Tx, chain: &[LayerId], ino: Ino) -> Result<Option<NodeRow>> {
    Ok(top_node(tx, chain, ino).await?.filter(|n| !n.deleted))
}

async fn need_node(tx: &impl Tx, chain: &[LayerId], ino: Ino) -> Result<NodeRow> {
    node(tx, chain, ino)
        .await?
        .ok_or_else(|| enoent(format!("inode {ino} does not exist")))
}

async fn need_dir(tx: &impl Tx, chain: &[LayerId], ino: Ino) -> Result<NodeRow> {
    let n = need_node(tx, chain, ino).await?;
    if n.kind != NodeKind::Dir {
        return Err(refused(
            Refused::NotDir,
            format!("inode {ino} is not a directory"),
        ));
    }
    Ok(n)
}

/// The entry `name` of `parent` in `chain`, if any.
pub(crate) async fn entry(
    tx: &impl Tx,
    chain: &[LayerId],
    parent: Ino,
    name: &[u8],
) -> Result<Option<(Ino, NodeKind)>> {
    let rows = tx
        .query(Q::EntryRows.into(), args![chain, parent, name])
        .await?;
    let rows = rows
        .iter()
        .map(|r| Ok((r.i64(0, "entry layer")?, entry_version(r, 1)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(topmost(chain, rows).flatten())
}

/// One layer's version of an entry: `None` for a tombstone.
type Version = (LayerId, Option<(Ino, NodeKind)>);

/// Rows fetched per statement while listing a directory.
const DIR_BATCH: usize = 512;

/// Up to `limit` entries of `dir` after `after`, by name.
pub(crate) async fn dir_page(
    tx: &impl Tx,
    chain: &[LayerId],
    dir: Ino,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    let mut cursor: Vec<u8> = after.unwrap_or_default().to_vec();
    while out.len() < limit {
        let batch = DIR_BATCH.max(limit.saturating_sub(out.len()).saturating_mul(2));
        let rows = tx
            .query(
                Q::DirRows.into(),
                args![
                    chain,
                    dir,
                    &cursor[..],
                    i64::try_from(batch).unwrap_or(i64::MAX)
                ],
            )
            .await?;
        let full = rows.len() >= batch;
        // Versions of one name, grouped; the last group may be cut short by
        // the limit, so it is read again by the next batch unless this one
        // was the last.
        let mut groups: BTreeMap<Bytes, Vec<Version>> = BTreeMap::new();
        for r in &rows {
            let name = blob_at(r, 1, "entry name")?;
            groups
                .entry(name)
                .or_default()
                .push((r.i64(0, "entry layer")?, entry_version(r, 2)?));
        }
        if full && groups.len() > 1 {
            groups.pop_last();
        }
        let Some(last) = groups.keys().next_back().cloned() else {
            break;
        };
        for (name, versions) in groups {
            if let Some(Some((ino, kind))) = topmost(chain, versions) {
                out.push(DirEntry { name, ino, kind });
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        if !full {
            break;
        }
        cursor = last.to_vec();
    }
    Ok(out)
}

async fn is_empty_dir(tx: &impl Tx, chain: &[LayerId], dir: Ino) -> Result<bool> {
    Ok(dir_page(tx, chain, dir, None, 1).await?.is_empty())
}

/// Writes `n` into `layer` (its own version, replacing any).
async fn put_node(tx: &impl Tx, layer: LayerId, n: &NodeRow) -> Result<()> {
    tx.exec(
        Q::PutNode.into(),
        args![
            layer,
            n.ino,
            n.kind.code(),
            n.mode,
            n.uid,
            n.gid,
            n.nlink,
            crate::num::to_sql(n.rdev, "rdev")?,
            n.atime_ns,
            n.mtime_ns,
            n.ctime_ns,
            n.btime_ns,
            n.data_seq,
            n.parent,
            n.target.as_deref(),
            n.deleted
        ],
    )
    .await?;
    Ok(())
}

async fn put_entry(
    tx: &impl Tx,
    layer: LayerId,
    parent: Ino,
    name: &[u8],
    ino: Ino,
    kind: NodeKind,
) -> Result<()> {
    tx.exec(
        Q::PutEntry.into(),
        args![layer, parent, name, ino, kind.code(), false],
    )
    .await?;
    Ok(())
}

/// Removes entry `parent/name` from the head of `chain`: a tombstone
/// where a lower layer may hold the name.
async fn drop_entry(tx: &impl Tx, chain: &[LayerId], parent: Ino, name: &[u8]) -> Result<()> {
    if chain.len() > 1 {
        tx.exec(
            Q::PutEntry.into(),
            args![chain[0], parent, name, 0i64, 0i64, true],
        )
        .await?;
    } else {
        tx.exec(Q::DeleteEntry.into(), args![chain[0], parent, name])
            .await?;
    }
    Ok(())
}

/// The attributes of `n`; a regular file's size and write times come from
/// its file row.
pub(crate) async fn attr(tx: &impl Tx, chain: &[LayerId], n: &NodeRow) -> Result<Attr> {
    let mut a = Attr {
        ino: n.ino,
        kind: n.kind,
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        nlink: n.nlink,
        rdev: n.rdev,
        size: n.target.as_ref().map_or(0, |t| t.len() as u64),
        page_size: 0,
        atime_ns: n.atime_ns,
        mtime_ns: n.mtime_ns,
        ctime_ns: n.ctime_ns,
        btime_ns: n.btime_ns,
    };
    if n.kind == NodeKind::File {
        let f = layers::visible(tx, chain, n.ino).await?;
        apply_file(&mut a, n, &f);
    }
    Ok(a)
}

fn apply_file(a: &mut Attr, n: &NodeRow, f: &FileRow) {
    a.size = f.size;
    a.page_size = f.page_size;
    if f.write_seq > n.data_seq {
        let written = f.modified_ms.saturating_mul(1_000_000);
        a.mtime_ns = written;
        a.ctime_ns = a.ctime_ns.max(written);
    }
}

/// What a change works on: its branch's head chain, under the locks.
async fn begin_change(tx: &impl Tx, branch: BranchId) -> Result<Arc<Vec<LayerId>>> {
    tx.lock(Lock::Graph { exclusive: false }).await?;
    tx.lock(Lock::Names(branch)).await?;
    layers::head_chain(tx, branch).await
}

pub(crate) async fn getattr(tx: &impl Tx, view: View, ino: Ino) -> Result<Attr> {
    let chain = layers::view_chain(tx, view).await?;
    let n = need_node(tx, &chain, ino).await?;
    attr(tx, &chain, &n).await
}

pub(crate) async fn lookup(
    tx: &impl Tx,
    view: View,
    parent: Ino,
    name: &[u8],
    caller: &Caller,
) -> Result<Attr> {
    let chain = layers::view_chain(tx, view).await?;
    let p = need_dir(tx, &chain, parent).await?;
    if !perm::may(caller, p.owned(), perm::X) {
        return Err(refused(Refused::Access, "search permission denied"));
    }
    let target = match name {
        b"." => p,
        b".." => need_node(tx, &chain, p.parent.unwrap_or(parent)).await?,
        _ => {
            if name.len() > names::NAME_MAX {
                return Err(refused(Refused::NameTooLong, "name too long"));
            }
            let (ino, _) = entry(tx, &chain, parent, name)
                .await?
                .ok_or_else(|| enoent(format!("no entry {:?}", String::from_utf8_lossy(name))))?;
            need_node(tx, &chain, ino).await?
        }
    };
    attr(tx, &chain, &target).await
}

pub(crate) async fn readdir(
    tx: &impl Tx,
    view: View,
    dir: Ino,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<DirEntry>> {
    let chain = layers::view_chain(tx, view).await?;
    need_dir(tx, &chain, dir).await?;
    dir_page(tx, &chain, dir, after, limit).await
}

pub(crate) async fn tree_nodes(tx: &impl Tx, view: View) -> Result<Vec<TreeNode>> {
    let chain = layers::view_chain(tx, view).await?;
    let mut found: BTreeMap<Ino, TreeNode> = BTreeMap::new();
    let mut todo = vec![(root(tx).await?, String::new())];
    while let Some((dir, path)) = todo.pop() {
        let mut after: Option<Bytes> = None;
        loop {
            let page = dir_page(tx, &chain, dir, after.as_deref(), 1024).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for e in page {
                let name = String::from_utf8_lossy(&e.name);
                let p = if path.is_empty() {
                    name.into_owned()
                } else {
                    format!("{path}/{name}")
                };
                if let Some(t) = found.get_mut(&e.ino) {
                    t.links.push((dir, e.name));
                    continue;
                }
                let n = need_node(tx, &chain, e.ino).await?;
                if n.kind == NodeKind::Dir {
                    todo.push((e.ino, p.clone()));
                }
                found.insert(
                    e.ino,
                    TreeNode {
                        attr: attr(tx, &chain, &n).await?,
                        target: n.target.clone(),
                        links: vec![(dir, e.name)],
                        path: p,
                    },
                );
            }
        }
    }
    let mut out: Vec<TreeNode> = found.into_values().collect();
    for t in &mut out {
        t.links.sort();
    }
    Ok(out)
}

pub(crate) async fn readdir_plus(
    tx: &impl Tx,
    view: View,
    dir: Ino,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(DirEntry, Attr)>> {
    let chain = layers::view_chain(tx, view).await?;
    need_dir(tx, &chain, dir).await?;
    let mut out = Vec::new();
    for e in dir_page(tx, &chain, dir, after, limit).await? {
        let n = need_node(tx, &chain, e.ino).await?;
        let a = attr(tx, &chain, &n).await?;
        out.push((e, a));
    }
    Ok(out)
}

pub(crate) async fn readlink(tx: &impl Tx, view: View, ino: Ino) -> Result<Bytes> {
    let chain = layers::view_chain(tx, view).await?;
    let n = need_node(tx, &chain, ino).await?;
    match (n.kind, n.target) {
        (NodeKind::Symlink, Some(t)) => Ok(t),
        _ => Err(refused(Refused::Invalid, "not a symbolic link")),
    }
}

pub(crate) async fn make(tx: &impl Tx, m: &MakeNode<'_>) -> Result<Attr> {
    let chain = begin_change(tx, m.branch).await?;
    if m.name.len() > names::NAME_MAX {
        return Err(refused(Refused::NameTooLong, "name too long"));
    }
    let p = need_dir(tx, &chain, m.parent).await?;
    if !perm::may(m.caller, p.owned(), perm::X) {
        return Err(refused(Refused::Access, "search permission denied"));
    }
    check_name(m.name)?;
    if entry(tx, &chain, m.parent, m.name).await?.is_some() {
        return Err(refused(
            Refused::Exists,
            format!("{:?} exists", String::from_utf8_lossy(m.name)),
        ));
    }
    if !perm::may(m.caller, p.owned(), perm::W) {
        return Err(refused(Refused::Access, "write permission denied"));
    }
    if m.kind == NodeKind::Symlink {
        names::check_symlink_target(m.target.unwrap_or_default())
            .map_err(|r| refused(r, "invalid symlink target"))?;
    }
    let n = make_in(tx, &chain, p, m).await?;
    attr(tx, &chain, &n).await
}

/// Makes `m` in directory `p` of `chain`'s head: the checks are done.
async fn make_in(
    tx: &impl Tx,
    chain: &[LayerId],
    mut p: NodeRow,
    m: &MakeNode<'_>,
) -> Result<NodeRow> {
    let head = chain[0];
    let ino = tx
        .query_opt(files::Q::NextFileId.into(), &[])
        .await?
        .ok_or_else(|| corrupt("volume setting next_file_id is missing"))?
        .i64(0, "next inode number")?;
    let dir = m.kind == NodeKind::Dir;
    let owned = perm::new_inode(m.caller, p.owned(), m.mode, dir);
    let n = NodeRow {
        layer: head,
        ino,
        kind: m.kind,
        mode: owned.mode,
        uid: owned.uid,
        gid: owned.gid,
        nlink: if dir { 2 } else { 1 },
        rdev: m.rdev,
        atime_ns: m.now_ns,
        mtime_ns: m.now_ns,
        ctime_ns: m.now_ns,
        btime_ns: m.now_ns,
        data_seq: 0,
        parent: dir.then_some(p.ino),
        target: m.target.map(Bytes::copy_from_slice),
        deleted: false,
    };
    put_node(tx, head, &n).await?;
    put_entry(tx, head, p.ino, m.name, ino, m.kind).await?;
    if m.kind == NodeKind::File {
        let label = String::from_utf8_lossy(m.name);
        tx.exec(
            files::Q::CreateFile.into(),
            args![head, ino, label.as_ref(), m.page_size, ms(m.now_ns)],
        )
        .await?;
        // Nobody else can know the new inode yet: its lease is free.
        if let Some(l) = m.lease {
            tx.exec(
                files::Q::SetLease.into(),
                args![m.branch, ino, l.holder, l.expires_ms],
            )
            .await?;
        }
    }
    p.touch(m.now_ns);
    if dir {
        p.nlink = p.nlink.saturating_add(1);
    }
    put_node(tx, head, &p).await?;
    Ok(n)
}

pub(crate) async fn setattr(
    tx: &impl Tx,
    branch: BranchId,
    ino: Ino,
    set: &SetAttr,
    caller: &Caller,
    now_ns: i64,
) -> Result<Attr> {
    let chain = begin_change(tx, branch).await?;
    let mut n = need_node(tx, &chain, ino).await?;
    if let Some(mode) = set.mode {
        n.mode = perm::chmod(caller, n.owned(), mode).map_err(|d| refused(denied(d), "chmod"))?;
    }
    if set.uid.is_some() || set.gid.is_some() {
        n.mode = perm::chown(caller, n.owned(), set.uid, set.gid)
            .map_err(|d| refused(denied(d), "chown"))?;
        n.uid = set.uid.unwrap_or(n.uid);
        n.gid = set.gid.unwrap_or(n.gid);
    }
    let times = [set.atime, set.mtime];
    if times.iter().any(Option::is_some) {
        let now = times.iter().flatten().all(|t| *t == SetTime::Now);
        perm::set_times(caller, n.owned(), now).map_err(|d| refused(denied(d), "utimens"))?;
        let at = |t: SetTime| match t {
            SetTime::Now => now_ns,
            SetTime::At(v) => v,
        };
        if let Some(t) = set.atime {
            n.atime_ns = at(t);
        }
        if let Some(t) = set.mtime {
            n.mtime_ns = at(t);
            if n.kind == NodeKind::File {
                n.data_seq = layers::visible(tx, &chain, ino).await?.write_seq;
            }
        }
    }
    if set.written {
        n.mode = perm::after_write(caller, n.mode);
    }
    n.ctime_ns = now_ns;
    put_node(tx, chain[0], &n).await?;
    attr(tx, &chain, &n).await
}

pub(crate) async fn link(
    tx: &impl Tx,
    branch: BranchId,
    ino: Ino,
    new_parent: Ino,
    new_name: &[u8],
    caller: &Caller,
    now_ns: i64,
) -> Result<Attr> {
    let chain = begin_change(tx, branch).await?;
    if new_name.len() > names::NAME_MAX {
        return Err(refused(Refused::NameTooLong, "name too long"));
    }
    let mut p = need_dir(tx, &chain, new_parent).await?;
    if !perm::may(caller, p.owned(), perm::X) {
        return Err(refused(Refused::Access, "search permission denied"));
    }
    check_name(new_name)?;
    let target = node(tx, &chain, ino).await?;
    let exists = entry(tx, &chain, new_parent, new_name).await?.is_some();
    remove::decide_link(
        caller,
        p.owned(),
        target
            .as_ref()
            .map(|n| (n.owned(), n.kind == NodeKind::File)),
        exists,
        true,
    )
    .map_err(|r| refused(r, "link"))?;
    let Some(mut n) = target else {
        return Err(enoent("link source"));
    };
    let head = chain[0];
    put_entry(tx, head, new_parent, new_name, ino, n.kind).await?;
    n.nlink = n.nlink.saturating_add(1);
    n.ctime_ns = now_ns;
    put_node(tx, head, &n).await?;
    p.touch(now_ns);
    put_node(tx, head, &p).await?;
    attr(tx, &chain, &n).await
}

/// Takes one link from `n` (already gone from its directory): the inode
/// goes with its last link, unless it is a regular file that is `open`
/// or (`lease_keeps`) has a live writer.
async fn unlink_node(
    tx: &impl Tx,
    branch: BranchId,
    chain: &[LayerId],
    mut n: NodeRow,
    open: Option<&str>,
    lease_keeps: bool,
    now_ns: i64,
) -> Result<Unlinked> {
    let head = chain[0];
    n.ctime_ns = now_ns;
    n.nlink = if n.kind == NodeKind::Dir {
        0
    } else {
        n.nlink.saturating_sub(1)
    };
    let mut orphaned = false;
    if n.nlink == 0 && n.kind == NodeKind::File {
        tx.lock(Lock::Files(branch, &[n.ino])).await?;
        // A live writer elsewhere keeps it too, under its name.
        let writer = if lease_keeps {
            files::lease_of(tx, branch, n.ino)
                .await?
                .filter(|l| l.expires_ms > ms(now_ns))
                .map(|l| l.holder)
        } else {
            None
        };
        if let Some(holder) = open.map(str::to_string).or(writer) {
            tx.exec(
                Q::AddOrphan.into(),
                args![branch, n.ino, &holder, ms(now_ns)],
            )
            .await?;
            orphaned = true;
        } else {
            let f = layers::visible(tx, chain, n.ino).await?;
            layers::remove_file(tx, branch, chain, &f, ms(now_ns)).await?;
        }
    }
    let out = Unlinked {
        ino: n.ino,
        kind: n.kind,
        nlink: n.nlink,
        orphaned,
    };
    if n.nlink == 0 && !orphaned {
        n.deleted = true;
        tx.exec(Q::DeleteXattrsOf.into(), args![head, n.ino])
            .await?;
    }
    put_node(tx, head, &n).await?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn remove(
    tx: &impl Tx,
    branch: BranchId,
    parent: Ino,
    name: &[u8],
    dir: bool,
    open: Option<&str>,
    caller: &Caller,
    now_ns: i64,
) -> Result<Unlinked> {
    let chain = begin_change(tx, branch).await?;
    if name.len() > names::NAME_MAX {
        return Err(refused(Refused::NameTooLong, "name too long"));
    }
    let mut p = need_dir(tx, &chain, parent).await?;
    let op = if dir {
        RemoveOp::Rmdir
    } else {
        RemoveOp::Unlink
    };
    let found = match name {
        b"." | b".." => None,
        _ => entry(tx, &chain, parent, name).await?,
    };
    let n = match found {
        Some((ino, _)) => Some(need_node(tx, &chain, ino).await?),
        None => None,
    };
    let side = match &n {
        Some(n) if n.kind == NodeKind::Dir => {
            Some((n.side(is_empty_dir(tx, &chain, n.ino).await?), n.uid))
        }
        Some(n) => Some((n.side(true), n.uid)),
        None => None,
    };
    if !dir && matches!(name, b"." | b"..") {
        // unlink(".") is refused before the name is looked up.
        if !perm::may(caller, p.owned(), perm::X) {
            return Err(refused(Refused::Access, "search permission denied"));
        }
        return Err(refused(Refused::IsDir, "unlink of a directory"));
    }
    remove::decide(caller, p.owned(), op, name, side).map_err(|r| {
        refused(
            r,
            format!("cannot remove {:?}", String::from_utf8_lossy(name)),
        )
    })?;
    let n = n.ok_or_else(|| enoent("entry vanished"))?;
    drop_entry(tx, &chain, parent, name).await?;
    p.touch(now_ns);
    if n.kind == NodeKind::Dir {
        p.nlink = p.nlink.saturating_sub(1);
    }
    put_node(tx, chain[0], &p).await?;
    unlink_node(tx, branch, &chain, n, open, true, now_ns).await
}

/// True when `ancestor` is `ino` or one of its ancestors (directories
/// only), walking parents inside the transaction.
async fn is_ancestor(tx: &impl Tx, chain: &[LayerId], ancestor: Ino, ino: Ino) -> Result<bool> {
    let mut at = ino;
    // A tree deeper than this is corrupt (a cycle), not deep.
    for _ in 0..100_000 {
        if at == ancestor {
            return Ok(true);
        }
        match node(tx, chain, at).await?.and_then(|n| n.parent) {
            Some(p) if p != at => at = p,
            _ => return Ok(false),
        }
    }
    Err(corrupt(format!("the parents of inode {ino} form a cycle")))
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn rename(
    tx: &impl Tx,
    branch: BranchId,
    parent: Ino,
    name: &[u8],
    new_parent: Ino,
    new_name: &[u8],
    flags: RenameFlags,
    open_dst: Option<&str>,
    caller: &Caller,
    now_ns: i64,
) -> Result<Option<Unlinked>> {
    let chain = begin_change(tx, branch).await?;
    let head = chain[0];
    for n in [name, new_name] {
        if n.len() > names::NAME_MAX {
            return Err(refused(Refused::NameTooLong, "name too long"));
        }
    }
    let sp = need_dir(tx, &chain, parent).await?;
    let dp = need_dir(tx, &chain, new_parent).await?;
    for d in [&sp, &dp] {
        if !perm::may(caller, d.owned(), perm::X) {
            return Err(refused(Refused::Access, "search permission denied"));
        }
    }
    for n in [name, new_name] {
        if matches!(n, b"." | b"..") {
            return Err(refused(Refused::Invalid, "cannot rename . or .."));
        }
        check_name(n)?;
    }
    let lookup = async |dir: Ino, name: &[u8]| -> Result<Option<NodeRow>> {
        match entry(tx, &chain, dir, name).await? {
            Some((ino, _)) => Ok(Some(need_node(tx, &chain, ino).await?)),
            None => Ok(None),
        }
    };
    let src = lookup(parent, name).await?;
    let dst = lookup(new_parent, new_name).await?;
    let side = async |n: &Option<NodeRow>| -> Result<Option<Side>> {
        Ok(match n {
            Some(n) if n.kind == NodeKind::Dir => {
                Some(n.side(is_empty_dir(tx, &chain, n.ino).await?))
            }
            Some(n) => Some(n.side(true)),
            None => None,
        })
    };
    let above = async |n: &Option<NodeRow>, below: Ino| -> Result<bool> {
        match n {
            Some(n) if n.kind == NodeKind::Dir => is_ancestor(tx, &chain, n.ino, below).await,
            _ => Ok(false),
        }
    };
    let case = RenameCase {
        src: side(&src).await?,
        dst: side(&dst).await?,
        src_above_dst: above(&src, new_parent).await?,
        dst_above_src: above(&dst, parent).await?,
    };
    let any = RenameAccess::root().src;
    let access = RenameAccess {
        caller: caller.clone(),
        src_dir: sp.owned(),
        dst_dir: dp.owned(),
        src: src.as_ref().map_or(any, NodeRow::owned),
        dst: dst.as_ref().map(NodeRow::owned),
        same_dir: parent == new_parent,
    };
    let action = rename::decide(case, flags, &access).map_err(|r| refused(r, "rename"))?;
    let (Some(mut src), RenameAction::Move | RenameAction::Replace | RenameAction::Exchange) =
        (src, action)
    else {
        return Ok(None);
    };
    // The parents, changed in one place when they are one directory.
    let mut dirs: BTreeMap<Ino, NodeRow> = BTreeMap::new();
    dirs.insert(sp.ino, sp);
    dirs.insert(dp.ino, dp);
    fn nlink(dirs: &mut BTreeMap<Ino, NodeRow>, ino: Ino, delta: i32) {
        if let Some(d) = dirs.get_mut(&ino) {
            d.nlink = d.nlink.saturating_add_signed(delta);
        }
    }
    let src_dir = src.kind == NodeKind::Dir;
    let mut replaced = None;
    match action {
        RenameAction::Exchange => {
            let mut dst = dst.ok_or_else(|| enoent("exchange destination vanished"))?;
            put_entry(tx, head, parent, name, dst.ino, dst.kind).await?;
            put_entry(tx, head, new_parent, new_name, src.ino, src.kind).await?;
            let dst_dir = dst.kind == NodeKind::Dir;
            if parent != new_parent && src_dir != dst_dir {
                let (gains, loses) = if src_dir {
                    (new_parent, parent)
                } else {
                    (parent, new_parent)
                };
                nlink(&mut dirs, gains, 1);
                nlink(&mut dirs, loses, -1);
            }
            if dst_dir {
                dst.parent = Some(parent);
            }
            dst.ctime_ns = now_ns;
            put_node(tx, head, &dst).await?;
        }
        _ => {
            if let Some(d) = dst {
                if d.kind == NodeKind::Dir {
                    nlink(&mut dirs, new_parent, -1);
                }
                replaced = Some(unlink_node(tx, branch, &chain, d, open_dst, true, now_ns).await?);
            }
            drop_entry(tx, &chain, parent, name).await?;
            put_entry(tx, head, new_parent, new_name, src.ino, src.kind).await?;
            if src_dir && parent != new_parent {
                nlink(&mut dirs, parent, -1);
                nlink(&mut dirs, new_parent, 1);
            }
        }
    }
    if src_dir {
        src.parent = Some(new_parent);
    }
    src.ctime_ns = now_ns;
    put_node(tx, head, &src).await?;
    for d in dirs.values_mut() {
        d.touch(now_ns);
        put_node(tx, head, d).await?;
    }
    Ok(replaced)
}

pub(crate) async fn forget_orphan(
    tx: &impl Tx,
    branch: BranchId,
    ino: Ino,
    now_ns: i64,
) -> Result<()> {
    tx.lock(Lock::Graph { exclusive: false }).await?;
    tx.exec(Q::DeleteOrphan.into(), args![branch, ino]).await?;
    // The branch may have been deleted (and the file with it) meanwhile.
    match layers::branch(tx, branch).await {
        Ok(_) => {}
        Err(e) if e.kind() == MetaErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    tx.lock(Lock::Names(branch)).await?;
    let chain = layers::head_chain(tx, branch).await?;
    let Some(mut n) = node(tx, &chain, ino).await? else {
        return Ok(());
    };
    if n.nlink > 0 {
        return Ok(());
    }
    if n.kind == NodeKind::File {
        tx.lock(Lock::Files(branch, &[ino])).await?;
        if let Ok(f) = layers::visible(tx, &chain, ino).await {
            layers::remove_file(tx, branch, &chain, &f, ms(now_ns)).await?;
        }
    }
    n.deleted = true;
    tx.exec(Q::DeleteXattrsOf.into(), args![chain[0], ino])
        .await?;
    put_node(tx, chain[0], &n).await
}

async fn xattr_value(
    tx: &impl Tx,
    chain: &[LayerId],
    ino: Ino,
    name: &[u8],
) -> Result<Option<Bytes>> {
    let rows = tx
        .query(Q::XattrRows.into(), args![chain, ino, name])
        .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok((
                r.i64(0, "xattr layer")?,
                (r.opt_blob(1, "xattr value")?, r.bool(2, "deleted")?),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(match topmost(chain, rows) {
        Some((v, false)) => Some(v.unwrap_or_default()),
        _ => None,
    })
}

pub(crate) async fn getxattr(
    tx: &impl Tx,
    view: View,
    ino: Ino,
    name: &[u8],
    caller: &Caller,
) -> Result<Bytes> {
    let chain = layers::view_chain(tx, view).await?;
    let n = need_node(tx, &chain, ino).await?;
    names::check_xattr(
        caller,
        n.owned(),
        n.kind == NodeKind::File,
        XattrOp::Get,
        name,
        0,
    )
    .map_err(|r| refused(r, "getxattr"))?;
    xattr_value(tx, &chain, ino, name)
        .await?
        .ok_or_else(|| refused(Refused::NoData, "no such attribute"))
}

pub(crate) async fn listxattr(
    tx: &impl Tx,
    view: View,
    ino: Ino,
    caller: &Caller,
) -> Result<Vec<Bytes>> {
    let chain = layers::view_chain(tx, view).await?;
    need_node(tx, &chain, ino).await?;
    let rows = tx
        .query(Q::XattrNames.into(), args![&chain[..], ino])
        .await?;
    let mut by_name: BTreeMap<Bytes, Vec<(LayerId, bool)>> = BTreeMap::new();
    for r in &rows {
        by_name
            .entry(blob_at(r, 1, "xattr name")?)
            .or_default()
            .push((r.i64(0, "xattr layer")?, r.bool(2, "deleted")?));
    }
    Ok(by_name
        .into_iter()
        .filter(|(name, versions)| {
            topmost(&chain, versions.iter().map(|&(l, d)| (l, d))) == Some(false)
                && (caller.is_root() || !name.starts_with(b"trusted."))
        })
        .map(|(name, _)| name)
        .collect())
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn setxattr(
    tx: &impl Tx,
    branch: BranchId,
    ino: Ino,
    name: &[u8],
    value: Option<&[u8]>,
    create: bool,
    replace: bool,
    caller: &Caller,
    now_ns: i64,
) -> Result<()> {
    let chain = begin_change(tx, branch).await?;
    let mut n = need_node(tx, &chain, ino).await?;
    names::check_xattr(
        caller,
        n.owned(),
        n.kind == NodeKind::File,
        XattrOp::Set,
        name,
        value.map_or(0, <[u8]>::len),
    )
    .map_err(|r| refused(r, "setxattr"))?;
    if create && replace {
        return Err(refused(Refused::Invalid, "XATTR_CREATE with XATTR_REPLACE"));
    }
    if let Some(v) = value
        && (name == names::ACL_ACCESS || name == names::ACL_DEFAULT)
    {
        names::check_acl_value(v).map_err(|r| refused(r, "not a POSIX ACL"))?;
    }
    let exists = xattr_value(tx, &chain, ino, name).await?.is_some();
    if value.is_some() && create && exists {
        return Err(refused(Refused::Exists, "attribute exists"));
    }
    if (value.is_none() || replace) && !exists {
        return Err(refused(Refused::NoData, "no such attribute"));
    }
    let head = chain[0];
    match value {
        Some(v) => {
            tx.exec(Q::PutXattr.into(), args![head, ino, name, v, false])
                .await?;
        }
        None => {
            tx.exec(
                Q::PutXattr.into(),
                args![head, ino, name, None::<&[u8]>, true],
            )
            .await?;
        }
    }
    n.ctime_ns = now_ns;
    put_node(tx, head, &n).await
}

// ---------------------------------------------------------------------------
// Paths: what the flat file API (`logic::files`) resolves names through.

/// The components of a flat file name: `/`-separated, a leading `/`
/// ignored, each a valid entry name.
pub(crate) fn components(path: &str) -> Result<Vec<&[u8]>> {
    let rel = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<&[u8]> = rel.split('/').map(str::as_bytes).collect();
    for p in &parts {
        if let Err(r) = names::check_name(p) {
            return Err(MetaError::invalid(format!(
                "{path:?} is not a valid path: component {:?} is {}",
                String::from_utf8_lossy(p),
                match r {
                    Refused::NameTooLong => "longer than 255 bytes",
                    _ => "empty, `.`, `..` or holds NUL",
                }
            )));
        }
    }
    Ok(parts)
}

/// The directory that holds `path`'s last component, if every directory
/// on the way exists, and that component.
pub(crate) async fn parent_of<'p>(
    tx: &impl Tx,
    chain: &[LayerId],
    path: &'p str,
) -> Result<Option<(Ino, &'p [u8])>> {
    let parts = components(path)?;
    let Some((leaf, dirs)) = parts.split_last() else {
        return Err(MetaError::invalid("an empty path names no file"));
    };
    let mut at = root(tx).await?;
    for d in dirs {
        match entry(tx, chain, at, d).await? {
            Some((ino, NodeKind::Dir)) => at = ino,
            _ => return Ok(None),
        }
    }
    Ok(Some((at, leaf)))
}

/// The regular file at `path` in `chain`, if any.
pub(crate) async fn file_at(tx: &impl Tx, chain: &[LayerId], path: &str) -> Result<Option<Ino>> {
    let Some((dir, leaf)) = parent_of(tx, chain, path).await? else {
        return Ok(None);
    };
    Ok(match entry(tx, chain, dir, leaf).await? {
        Some((ino, NodeKind::File)) => Some(ino),
        _ => None,
    })
}

/// The directory that will hold `path`, made (as root, `0755`) where
/// missing; `AlreadyExists` if a component is not a directory.
pub(crate) async fn make_parents<'p>(
    tx: &impl Tx,
    chain: &[LayerId],
    path: &'p str,
    now_ns: i64,
) -> Result<(NodeRow, &'p [u8])> {
    let parts = components(path)?;
    let Some((leaf, dirs)) = parts.split_last() else {
        return Err(MetaError::invalid("an empty path names no file"));
    };
    let root_caller = Caller::root();
    let mut at = need_dir(tx, chain, root(tx).await?).await?;
    for d in dirs {
        at = match entry(tx, chain, at.ino, d).await? {
            Some((ino, NodeKind::Dir)) => need_dir(tx, chain, ino).await?,
            Some(_) => {
                return Err(MetaError::new(
                    MetaErrorKind::AlreadyExists,
                    format!(
                        "{path:?}: {:?} exists and is not a directory",
                        String::from_utf8_lossy(d)
                    ),
                ));
            }
            None => {
                let m = MakeNode {
                    branch: 0,
                    parent: at.ino,
                    name: d,
                    kind: NodeKind::Dir,
                    mode: FLAT_DIR_MODE,
                    rdev: 0,
                    target: None,
                    page_size: 0,
                    caller: &root_caller,
                    now_ns,
                    lease: None,
                };
                make_in(tx, chain, at, &m).await?
            }
        };
    }
    Ok((at, leaf))
}

/// Makes a regular file at `path` for the flat API (parents made as
/// needed); `AlreadyExists` if the name is taken.
pub(crate) async fn create_file_at(
    tx: &impl Tx,
    chain: &[LayerId],
    path: &str,
    page_size: u32,
    now_ms: i64,
) -> Result<Ino> {
    let now_ns = now_ms.saturating_mul(1_000_000);
    let (dir, leaf) = make_parents(tx, chain, path, now_ns).await?;
    if entry(tx, chain, dir.ino, leaf).await?.is_some() {
        return Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("file {path:?} already exists"),
        ));
    }
    let root_caller = Caller::root();
    let m = MakeNode {
        branch: 0,
        parent: dir.ino,
        name: leaf,
        kind: NodeKind::File,
        mode: FLAT_FILE_MODE,
        rdev: 0,
        target: None,
        page_size,
        caller: &root_caller,
        now_ns,
        lease: None,
    };
    Ok(make_in(tx, chain, dir, &m).await?.ino)
}

/// Moves the entry of regular file `ino` at `from` to `to` (parents made
/// as needed) for the flat API; the caller removed whatever `to` named.
pub(crate) async fn move_file(
    tx: &impl Tx,
    chain: &[LayerId],
    from: &str,
    to: &str,
    ino: Ino,
    now_ms: i64,
) -> Result<()> {
    let now_ns = now_ms.saturating_mul(1_000_000);
    let (src_dir, src_leaf) = parent_of(tx, chain, from)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no file {from:?}")))?;
    let (mut dst_dir, dst_leaf) = make_parents(tx, chain, to, now_ns).await?;
    drop_entry(tx, chain, src_dir, src_leaf).await?;
    put_entry(tx, chain[0], dst_dir.ino, dst_leaf, ino, NodeKind::File).await?;
    let mut n = need_node(tx, chain, ino).await?;
    n.ctime_ns = now_ns;
    put_node(tx, chain[0], &n).await?;
    if src_dir != dst_dir.ino {
        let mut s = need_dir(tx, chain, src_dir).await?;
        s.touch(now_ns);
        put_node(tx, chain[0], &s).await?;
    }
    dst_dir.touch(now_ns);
    put_node(tx, chain[0], &dst_dir).await
}

/// Removes the entry at `path` of regular file `ino` for the flat API
/// (the caller checked the lease), dropping the file with its last link.
pub(crate) async fn unlink_file(
    tx: &impl Tx,
    branch: BranchId,
    chain: &[LayerId],
    path: &str,
    ino: Ino,
    now_ms: i64,
) -> Result<()> {
    let now_ns = now_ms.saturating_mul(1_000_000);
    let (dir, leaf) = parent_of(tx, chain, path)
        .await?
        .ok_or_else(|| MetaError::not_found(format!("no file {path:?}")))?;
    drop_entry(tx, chain, dir, leaf).await?;
    let mut d = need_dir(tx, chain, dir).await?;
    d.touch(now_ns);
    put_node(tx, chain[0], &d).await?;
    let n = need_node(tx, chain, ino).await?;
    // The caller checked that no other writer holds the file.
    unlink_node(tx, branch, chain, n, None, false, now_ns).await?;
    Ok(())
}

/// Every regular file of `chain` whose path (no leading `/`) starts with
/// `prefix`, by path; a file with several links appears once per path.
pub(crate) async fn list_paths(
    tx: &impl Tx,
    chain: &[LayerId],
    prefix: &str,
) -> Result<BTreeMap<String, Ino>> {
    let prefix = prefix.strip_prefix('/').unwrap_or(prefix);
    let mut out = BTreeMap::new();
    let mut dirs = vec![(root(tx).await?, String::new())];
    while let Some((dir, path)) = dirs.pop() {
        let mut after: Option<Bytes> = None;
        loop {
            let page = dir_page(tx, chain, dir, after.as_deref(), 1024).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for e in page {
                // Flat names are text; a name that is not UTF-8 is listed
                // lossily (the tree API sees its bytes).
                let name = String::from_utf8_lossy(&e.name);
                let p = if path.is_empty() {
                    name.into_owned()
                } else {
                    format!("{path}/{name}")
                };
                match e.kind {
                    NodeKind::Dir
                        if p.starts_with(prefix) || prefix.starts_with(&format!("{p}/")) =>
                    {
                        dirs.push((e.ino, p));
                    }
                    NodeKind::File if p.starts_with(prefix) => {
                        out.insert(p, e.ino);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// `FileMeta` of file `ino` in `chain`, named `path`.
pub(crate) async fn file_meta(
    tx: &impl Tx,
    chain: &[LayerId],
    ino: Ino,
    path: &str,
) -> Result<FileMeta> {
    let mut m = layers::visible(tx, chain, ino).await?.meta();
    m.name = path.strip_prefix('/').unwrap_or(path).to_string();
    Ok(m)
}

// ---------------------------------------------------------------------------
// Merging: a file taken from another view keeps its paths there.

/// The `(parent, name)` entries naming `ino` in `chain`.
async fn links_of(tx: &impl Tx, chain: &[LayerId], ino: Ino) -> Result<BTreeSet<(Ino, Bytes)>> {
    let rows = tx.query(Q::EntriesOf.into(), args![chain, ino]).await?;
    let mut out = BTreeSet::new();
    for r in &rows {
        let (parent, name) = (r.i64(0, "entry parent")?, blob_at(r, 1, "entry name")?);
        if entry(tx, chain, parent, &name).await?.map(|e| e.0) == Some(ino) {
            out.insert((parent, name));
        }
    }
    Ok(out)
}

/// The first (by parent, then name) of the entries naming `ino` in
/// `chain`, if any.
pub(crate) async fn first_link(
    tx: &impl Tx,
    chain: &[LayerId],
    ino: Ino,
) -> Result<Option<(Ino, Bytes)>> {
    Ok(links_of(tx, chain, ino).await?.into_iter().next())
}

/// Makes the tree of `target` (a head chain) show file `ino` under the
/// names `source` shows it, copying the directories on the way that
/// `target` lacks; `Conflict` when a name is taken there by another inode.
pub(crate) async fn copy_links(
    tx: &impl Tx,
    target: &[LayerId],
    source: &[LayerId],
    ino: Ino,
    now_ns: i64,
) -> Result<()> {
    let head = target[0];
    let want = links_of(tx, source, ino).await?;
    let have = links_of(tx, target, ino).await?;
    let theirs = node(tx, source, ino).await?;
    let ours = node(tx, target, ino).await?;
    let dir = theirs.as_ref().or(ours.as_ref()).map(|n| n.kind) == Some(NodeKind::Dir);
    if theirs.is_none() && dir && !is_empty_dir(tx, target, ino).await? {
        return Err(MetaError::conflict(format!(
            "directory #{ino} was removed on one side and holds new entries on the other; \
             remove or move them and merge again"
        )));
    }
    // A directory's link count is 2 plus its subdirectories: an entry of
    // one that moves counts for its new parent.
    let step = |d: &mut NodeRow, by: i32| {
        d.touch(now_ns);
        if dir {
            d.nlink = d.nlink.saturating_add_signed(by);
        }
    };
    for (p, n) in have.difference(&want) {
        drop_entry(tx, target, *p, n).await?;
        if let Some(mut d) = node(tx, target, *p).await? {
            step(&mut d, -1);
            put_node(tx, head, &d).await?;
        }
    }
    let Some(mut n) = theirs else {
        if let Some(mut t) = ours {
            t.deleted = true;
            put_node(tx, head, &t).await?;
        }
        return Ok(());
    };
    for (p, name) in want.difference(&have) {
        ensure_dir(tx, target, source, *p, now_ns).await?;
        if entry(tx, target, *p, name).await?.is_some() {
            return Err(MetaError::conflict(format!(
                "two files would be called {:?} in directory #{p}; rename one on either side and merge again",
                String::from_utf8_lossy(name)
            )));
        }
        put_entry(tx, head, *p, name, ino, n.kind).await?;
        let mut d = need_dir(tx, target, *p).await?;
        step(&mut d, 1);
        put_node(tx, head, &d).await?;
    }
    n.layer = head;
    n.nlink = if dir {
        // Ours (updated by the subdirectories merged so far), or a new
        // directory's own two.
        match node(tx, target, ino).await? {
            Some(o) => o.nlink,
            None => 2,
        }
    } else {
        u32::try_from(want.len()).unwrap_or(u32::MAX)
    };
    put_node(tx, head, &n).await
}

/// Makes directory `dir` of `source` exist in `target`, with its
/// ancestors.
async fn ensure_dir(
    tx: &impl Tx,
    target: &[LayerId],
    source: &[LayerId],
    dir: Ino,
    now_ns: i64,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while node(tx, target, at).await?.is_none() {
        let d = need_dir(tx, source, at).await?;
        let parent = d
            .parent
            .ok_or_else(|| corrupt(format!("directory {at} has no parent")))?;
        missing.push(d);
        at = parent;
    }
    for mut d in missing.into_iter().rev() {
        let parent = d.parent.unwrap_or_default();
        let name = links_of(tx, source, d.ino)
            .await?
            .into_iter()
            .find(|(p, _)| *p == parent)
            .map(|(_, n)| n)
            .ok_or_else(|| corrupt(format!("directory {} has no entry", d.ino)))?;
        if entry(tx, target, parent, &name).await?.is_some() {
            return Err(MetaError::conflict(format!(
                "directory {:?} exists on both sides as different directories; rename one and merge again",
                String::from_utf8_lossy(&name)
            )));
        }
        d.nlink = 2;
        d.layer = target[0];
        put_node(tx, target[0], &d).await?;
        put_entry(tx, target[0], parent, &name, d.ino, NodeKind::Dir).await?;
        let mut p = need_dir(tx, target, parent).await?;
        p.nlink = p.nlink.saturating_add(1);
        p.touch(now_ns);
        put_node(tx, target[0], &p).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Migration to schema version 6: the flat names become the tree.

/// Allocates the root (in every bottom layer) and turns every layer's file
/// rows into entries and nodes: a file appears where its name first shows,
/// a rename moves its entry, a deletion removes it. A name with `/` makes
/// directories; a name the tree cannot hold (a component that is empty,
/// too long, or a file where a directory is needed) is kept in the root
/// with `/` spelt `∕` (U+2215), and a warning says so.
pub(crate) async fn migrate_flat_names(tx: &impl Tx) -> Result<()> {
    let root = tx
        .query_opt(files::Q::NextFileId.into(), &[])
        .await?
        .ok_or_else(|| corrupt("volume setting next_file_id is missing"))?
        .i64(0, "next inode number")?;
    tx.exec(
        super::settings::Q::UpsertSetting.into(),
        args![ROOT_SETTING, &root.to_string()],
    )
    .await?;
    let graph = layers::graph(tx).await?;
    let mut ids: Vec<LayerId> = graph.layers.iter().map(|l| l.id).collect();
    ids.sort_unstable();
    for l in ids {
        let chain = layers::chain(tx, l).await?;
        let info = graph.layers.iter().find(|x| x.id == l);
        if info.is_some_and(|x| x.parent.is_none()) {
            let n = NodeRow {
                layer: l,
                ino: root,
                kind: NodeKind::Dir,
                mode: FLAT_DIR_MODE,
                uid: 0,
                gid: 0,
                nlink: 2,
                rdev: 0,
                atime_ns: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                btime_ns: 0,
                data_seq: 0,
                parent: None,
                target: None,
                deleted: false,
            };
            put_node(tx, l, &n).await?;
        }
        let below = &chain[1..];
        let rows = layers::chain_rows(tx, &[l]).await?;
        // Names that go first, then names that come: a name freed and
        // taken in one layer ends up taken.
        let mut gone = Vec::new();
        let mut come = Vec::new();
        for r in rows {
            let prev = if below.is_empty() {
                None
            } else {
                layers::top_row(tx, below, r.id)
                    .await?
                    .filter(|p| !p.deleted)
            };
            match (&prev, r.deleted) {
                (Some(p), true) => gone.push((p.name.clone(), r.id, true)),
                (Some(p), false) if p.name != r.name => {
                    gone.push((p.name.clone(), r.id, false));
                    come.push(r);
                }
                (None, false) => come.push(r),
                _ => {}
            }
        }
        for (name, id, deleted) in gone {
            if let Some((dir, leaf)) = migrated_place(tx, &chain, &name, id).await?
                && entry(tx, &chain, dir, &leaf).await?.map(|e| e.0) == Some(id)
            {
                drop_entry(tx, &chain, dir, &leaf).await?;
            }
            if deleted && let Some(mut n) = node(tx, &chain, id).await? {
                n.deleted = true;
                put_node(tx, l, &n).await?;
            }
        }
        for r in come {
            let now_ns = r.modified_ms.saturating_mul(1_000_000);
            let place = match components(&r.name) {
                Ok(_) => match make_parents(tx, &chain, &r.name, now_ns).await {
                    Ok((dir, leaf)) if entry(tx, &chain, dir.ino, leaf).await?.is_none() => {
                        Some((dir.ino, leaf.to_vec()))
                    }
                    Ok(_) => None,
                    Err(e) if e.kind() == MetaErrorKind::AlreadyExists => None,
                    Err(e) => return Err(e),
                },
                Err(_) => None,
            };
            let (dir, leaf) = match place {
                Some(p) => p,
                None => {
                    let leaf = fallback_name(&r.name, r.id);
                    tracing::warn!(
                        name = %r.name,
                        kept_as = %String::from_utf8_lossy(&leaf),
                        "a file name does not fit the tree; it is kept in the root under another name"
                    );
                    (root, leaf)
                }
            };
            put_entry(tx, l, dir, &leaf, r.id, NodeKind::File).await?;
            if node(tx, &chain, r.id).await?.is_none() {
                let n = NodeRow {
                    layer: l,
                    ino: r.id,
                    kind: NodeKind::File,
                    mode: FLAT_FILE_MODE,
                    uid: 0,
                    gid: 0,
                    nlink: 1,
                    rdev: 0,
                    atime_ns: r.modified_ms.saturating_mul(1_000_000),
                    mtime_ns: r.modified_ms.saturating_mul(1_000_000),
                    ctime_ns: r.modified_ms.saturating_mul(1_000_000),
                    btime_ns: r.created_ms.saturating_mul(1_000_000),
                    data_seq: 0,
                    parent: None,
                    target: None,
                    deleted: false,
                };
                put_node(tx, l, &n).await?;
            }
        }
    }
    Ok(())
}

/// Where a migrated name lives, if it was placed by its path.
async fn migrated_place(
    tx: &impl Tx,
    chain: &[LayerId],
    name: &str,
    id: Ino,
) -> Result<Option<(Ino, Vec<u8>)>> {
    if components(name).is_ok()
        && let Some((dir, leaf)) = parent_of(tx, chain, name).await?
        && entry(tx, chain, dir, leaf).await?.map(|e| e.0) == Some(id)
    {
        return Ok(Some((dir, leaf.to_vec())));
    }
    Ok(Some((root(tx).await?, fallback_name(name, id))))
}

/// A root entry name for a flat name the tree cannot hold as a path.
fn fallback_name(name: &str, id: Ino) -> Vec<u8> {
    let mut out: Vec<u8> = name.replace('/', "\u{2215}").replace('\0', "").into_bytes();
    if out.is_empty() || out == b"." || out == b".." {
        out = format!("file-{id}").into_bytes();
    }
    if out.len() > names::NAME_MAX {
        let tail = format!("~{id}");
        let mut cut = names::NAME_MAX - tail.len();
        while !name.is_char_boundary(cut.min(name.len())) && cut > 0 {
            cut -= 1;
        }
        out.truncate(cut);
        out.extend_from_slice(tail.as_bytes());
    }
    out
}

pub(crate) async fn orphans(tx: &impl Tx) -> Result<Vec<Orphan>> {
    tx.query(Q::Orphans.into(), &[])
        .await?
        .iter()
        .map(|r| {
            Ok(Orphan {
                branch: r.i64(0, "orphan branch")?,
                ino: r.i64(1, "orphan ino")?,
                holder: r.text(2, "orphan holder")?,
                since_ms: r.i64(3, "orphan since")?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Locks: runtime rows, not layered; a file's are changed under its
// `Lock::Files`, so a conflict check and the insert it guards are one.

/// Byte offsets are stored as SQL integers: `u64::MAX` ("to any end")
/// and everything past `i64::MAX` are `i64::MAX`.
fn offset_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn offset_of(v: i64) -> u64 {
    if v == i64::MAX {
        u64::MAX
    } else {
        v.cast_unsigned()
    }
}

async fn locks_of(tx: &impl Tx, req: &ByteLock) -> Result<Vec<ByteLock>> {
    tx.query(
        Q::LocksOf.into(),
        args![req.branch, req.ino, req.kind.code()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ByteLock {
            branch: req.branch,
            ino: req.ino,
            kind: req.kind,
            holder: r.text(0, "lock holder")?,
            owner: r.i64(1, "lock owner")?.cast_unsigned(),
            start: offset_of(r.i64(2, "lock start")?),
            stop: offset_of(r.i64(3, "lock stop")?),
            exclusive: r.bool(4, "lock exclusive")?,
        })
    })
    .collect()
}

fn same_owner(a: &ByteLock, b: &ByteLock) -> bool {
    a.holder == b.holder && a.owner == b.owner
}

fn overlaps(a: &ByteLock, b: &ByteLock) -> bool {
    a.start < b.stop && b.start < a.stop
}

/// The whole file, for `flock`.
fn normalised(req: &ByteLock) -> Result<ByteLock> {
    let mut l = req.clone();
    if l.kind == LockKind::Flock {
        l.start = 0;
        l.stop = u64::MAX;
    }
    if l.start >= l.stop {
        return Err(refused(Refused::Invalid, "an empty lock range"));
    }
    Ok(l)
}

fn conflict(existing: &[ByteLock], req: &ByteLock) -> Option<ByteLock> {
    existing
        .iter()
        .find(|l| !same_owner(l, req) && overlaps(l, req) && (l.exclusive || req.exclusive))
        .cloned()
}

/// Replaces the owner's locks of the file by `req`'s owner's locks minus
/// `req`'s range, plus `req` itself when `take`.
async fn rewrite_owner(
    tx: &impl Tx,
    existing: Vec<ByteLock>,
    req: &ByteLock,
    take: bool,
) -> Result<()> {
    let mut keep = Vec::new();
    for l in existing.into_iter().filter(|l| same_owner(l, req)) {
        if !overlaps(&l, req) {
            keep.push(l);
            continue;
        }
        if l.start < req.start {
            keep.push(ByteLock {
                stop: req.start,
                ..l.clone()
            });
        }
        if req.stop < l.stop {
            keep.push(ByteLock {
                start: req.stop,
                ..l
            });
        }
    }
    if take {
        keep.push(req.clone());
    }
    tx.exec(
        Q::DeleteOwnerLocks.into(),
        args![
            req.branch,
            req.ino,
            req.kind.code(),
            &req.holder,
            req.owner.cast_signed()
        ],
    )
    .await?;
    for l in keep {
        tx.exec(
            Q::AddLock.into(),
            args![
                l.branch,
                l.ino,
                l.kind.code(),
                &l.holder,
                l.owner.cast_signed(),
                offset_sql(l.start),
                offset_sql(l.stop),
                l.exclusive
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn set_lock(tx: &impl Tx, req: &ByteLock) -> Result<Option<ByteLock>> {
    let req = normalised(req)?;
    tx.lock(Lock::Files(req.branch, &[req.ino])).await?;
    let existing = locks_of(tx, &req).await?;
    if let Some(c) = conflict(&existing, &req) {
        return Ok(Some(c));
    }
    rewrite_owner(tx, existing, &req, true).await?;
    Ok(None)
}

pub(crate) async fn unlock(tx: &impl Tx, req: &ByteLock) -> Result<()> {
    let req = normalised(req)?;
    tx.lock(Lock::Files(req.branch, &[req.ino])).await?;
    let existing = locks_of(tx, &req).await?;
    rewrite_owner(tx, existing, &req, false).await
}

pub(crate) async fn test_lock(tx: &impl Tx, req: &ByteLock) -> Result<Option<ByteLock>> {
    let req = normalised(req)?;
    Ok(conflict(&locks_of(tx, &req).await?, &req))
}

pub(crate) async fn release_locks(
    tx: &impl Tx,
    holder: &str,
    ino: Option<Ino>,
    owner: Option<(LockKind, u64)>,
) -> Result<()> {
    tx.exec(
        Q::ReleaseLocks.into(),
        args![
            holder,
            ino,
            owner.map(|(k, _)| k.code()),
            owner.map(|(_, o)| o.cast_signed())
        ],
    )
    .await?;
    Ok(())
}

/// `impl MetaTree for $engine` (`$mode`: see [`super::run`]).
macro_rules! impl_meta_tree {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            use $crate::logic::tree;
            use $crate::logic::changes::ms;
            use $crate::perm::Caller;
            use $crate::rename::RenameFlags;
            use bytes::Bytes;

            impl MetaTree for $engine {
                fn defer_durability(&self, on: bool) {
                    self.durability().set_defer(on);
                }

                fn barrier(&self) -> BoxFuture<'_, Result<()>> {
                    if !self.durability().pending() {
                        return Box::pin(std::future::ready(Ok(())));
                    }
                    // A durable write begun with deferred commits pending
                    // writes the barrier row itself (`logic::Durability`).
                    run!($mode, self, Write, |_tx| Ok(()))
                }

                fn durability_pending(&self) -> bool {
                    self.durability().pending()
                }

                fn root(&self) -> BoxFuture<'_, Result<Ino>> {
                    run!($mode, self, Read, |tx| tree::root(tx).await)
                }

                fn getattr(&self, view: View, ino: Ino) -> BoxFuture<'_, Result<Attr>> {
                    run!($mode, self, Read, |tx| tree::getattr(tx, view, ino).await)
                }

                fn lookup<'a>(
                    &'a self,
                    view: View,
                    parent: Ino,
                    name: &'a [u8],
                    caller: &'a Caller,
                ) -> BoxFuture<'a, Result<Attr>> {
                    run!($mode, self, Read, |tx| tree::lookup(tx, view, parent, name, caller)
                        .await)
                }

                fn readdir<'a>(
                    &'a self,
                    view: View,
                    dir: Ino,
                    after: Option<&'a [u8]>,
                    limit: usize,
                ) -> BoxFuture<'a, Result<Vec<DirEntry>>> {
                    run!($mode, self, Read, |tx| tree::readdir(tx, view, dir, after, limit)
                        .await)
                }

                fn readdir_plus<'a>(
                    &'a self,
                    view: View,
                    dir: Ino,
                    after: Option<&'a [u8]>,
                    limit: usize,
                ) -> BoxFuture<'a, Result<Vec<(DirEntry, Attr)>>> {
                    run!($mode, self, Read, |tx| tree::readdir_plus(tx, view, dir, after, limit)
                        .await)
                }

                fn tree_nodes(&self, view: View) -> BoxFuture<'_, Result<Vec<TreeNode>>> {
                    run!($mode, self, Read, |tx| tree::tree_nodes(tx, view).await)
                }

                fn readlink(&self, view: View, ino: Ino) -> BoxFuture<'_, Result<Bytes>> {
                    run!($mode, self, Read, |tx| tree::readlink(tx, view, ino).await)
                }

                fn make<'a>(&'a self, node: &'a MakeNode<'a>) -> BoxFuture<'a, Result<Attr>> {
                    run!($mode, self, Tree, |tx| {
                        let made = tree::make(tx, node).await?;
                        let change = NewChange::new(ChangeKind::Make, node.branch, ms(node.now_ns))
                            .ino(made.ino)
                            .entry(node.parent, node.name);
                        changes::record(tx, change).await?;
                        Ok(made)
                    })
                }

                fn setattr<'a>(
                    &'a self,
                    branch: BranchId,
                    ino: Ino,
                    set: &'a SetAttr,
                    caller: &'a Caller,
                    now_ns: i64,
                ) -> BoxFuture<'a, Result<Attr>> {
                    run!($mode, self, Tree, |tx| {
                        let attr = tree::setattr(tx, branch, ino, set, caller, now_ns).await?;
                        let change = NewChange::new(ChangeKind::Attr, branch, ms(now_ns)).ino(ino);
                        changes::record(tx, change).await?;
                        Ok(attr)
                    })
                }

                fn link<'a>(
                    &'a self,
                    branch: BranchId,
                    ino: Ino,
                    new_parent: Ino,
                    new_name: &'a [u8],
                    caller: &'a Caller,
                    now_ns: i64,
                ) -> BoxFuture<'a, Result<Attr>> {
                    run!($mode, self, Tree, |tx| {
                        let attr =
                            tree::link(tx, branch, ino, new_parent, new_name, caller, now_ns)
                                .await?;
                        let change = NewChange::new(ChangeKind::Link, branch, ms(now_ns))
                            .ino(ino)
                            .entry(new_parent, new_name);
                        changes::record(tx, change).await?;
                        Ok(attr)
                    })
                }

                fn remove<'a>(
                    &'a self,
                    branch: BranchId,
                    parent: Ino,
                    name: &'a [u8],
                    dir: bool,
                    open: Option<&'a str>,
                    caller: &'a Caller,
                    now_ns: i64,
                ) -> BoxFuture<'a, Result<Unlinked>> {
                    run!($mode, self, Tree, |tx| {
                        let gone =
                            tree::remove(tx, branch, parent, name, dir, open, caller, now_ns)
                                .await?;
                        let change = NewChange::new(ChangeKind::Remove, branch, ms(now_ns))
                            .ino(gone.ino)
                            .entry(parent, name);
                        changes::record(tx, change).await?;
                        Ok(gone)
                    })
                }

                fn rename<'a>(
                    &'a self,
                    branch: BranchId,
                    parent: Ino,
                    name: &'a [u8],
                    new_parent: Ino,
                    new_name: &'a [u8],
                    flags: RenameFlags,
                    open_dst: Option<&'a str>,
                    caller: &'a Caller,
                    now_ns: i64,
                ) -> BoxFuture<'a, Result<Option<Unlinked>>> {
                    run!($mode, self, Tree, |tx| {
                        let replaced = tree::rename(
                            tx, branch, parent, name, new_parent, new_name, flags, open_dst,
                            caller, now_ns,
                        )
                        .await?;
                        let change = NewChange::new(ChangeKind::Rename, branch, ms(now_ns))
                            .entry(parent, name)
                            .to(new_parent, new_name);
                        changes::record(tx, change).await?;
                        if flags.exchange {
                            // Both entries moved: the other one the other way.
                            let back = NewChange::new(ChangeKind::Rename, branch, ms(now_ns))
                                .entry(new_parent, new_name)
                                .to(parent, name);
                            changes::record(tx, back).await?;
                        }
                        Ok(replaced)
                    })
                }

                fn forget_orphan(
                    &self,
                    branch: BranchId,
                    ino: Ino,
                    now_ns: i64,
                ) -> BoxFuture<'_, Result<()>> {
                    run!($mode, self, Tree, |tx| tree::forget_orphan(tx, branch, ino, now_ns)
                        .await)
                }

                fn orphans(&self) -> BoxFuture<'_, Result<Vec<Orphan>>> {
                    run!($mode, self, Read, |tx| tree::orphans(tx).await)
                }

                fn set_lock<'a>(
                    &'a self,
                    lock: &'a ByteLock,
                ) -> BoxFuture<'a, Result<Option<ByteLock>>> {
                    run!($mode, self, Runtime, |tx| tree::set_lock(tx, lock).await)
                }

                fn unlock<'a>(&'a self, lock: &'a ByteLock) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Runtime, |tx| tree::unlock(tx, lock).await)
                }

                fn test_lock<'a>(
                    &'a self,
                    lock: &'a ByteLock,
                ) -> BoxFuture<'a, Result<Option<ByteLock>>> {
                    run!($mode, self, Read, |tx| tree::test_lock(tx, lock).await)
                }

                fn release_locks<'a>(
                    &'a self,
                    holder: &'a str,
                    ino: Option<Ino>,
                    owner: Option<(LockKind, u64)>,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Runtime, |tx| tree::release_locks(tx, holder, ino, owner)
                        .await)
                }

                fn getxattr<'a>(
                    &'a self,
                    view: View,
                    ino: Ino,
                    name: &'a [u8],
                    caller: &'a Caller,
                ) -> BoxFuture<'a, Result<Bytes>> {
                    run!($mode, self, Read, |tx| tree::getxattr(tx, view, ino, name, caller)
                        .await)
                }

                fn listxattr<'a>(
                    &'a self,
                    view: View,
                    ino: Ino,
                    caller: &'a Caller,
                ) -> BoxFuture<'a, Result<Vec<Bytes>>> {
                    run!($mode, self, Read, |tx| tree::listxattr(tx, view, ino, caller).await)
                }

                fn setxattr<'a>(
                    &'a self,
                    branch: BranchId,
                    ino: Ino,
                    name: &'a [u8],
                    value: Option<&'a [u8]>,
                    create: bool,
                    replace: bool,
                    caller: &'a Caller,
                    now_ns: i64,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Tree, |tx| {
                        tree::setxattr(
                            tx, branch, ino, name, value, create, replace, caller, now_ns,
                        )
                        .await?;
                        let change = NewChange::new(ChangeKind::Xattr, branch, ms(now_ns)).ino(ino);
                        changes::record(tx, change).await
                    })
                }
            }
        }
    };
}
pub(crate) use impl_meta_tree;
