//! The walker: scans a [`Source`] tree, then makes it again under a
//! [`Dest`] directory, following the rules in the [module
//! docs](super) — attributes last and in order, directories after their
//! children, hard links by source inode, every failure reported and
//! counted, never fatal to the rest.

use std::collections::HashMap;
use std::time::Duration;

use fsx_posix::NodeKind;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Attributes, Dest, Make, Source, Stat, shown_bytes};

/// Bytes read and written per call.
const CHUNK: usize = 1 << 20;

/// How a copy runs.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `import` or `export`, for the progress bar.
    pub verb: &'static str,
    /// Merge into what the destination holds: a non-directory of the same
    /// name is replaced, a directory merged into.
    pub force: bool,
    /// Give the copies their source's owners (only root may); otherwise
    /// they belong to `own_ids`.
    pub keep_owners: bool,
    /// The copier's uid and gid.
    pub own_ids: (u32, u32),
}

/// What a copy made, and what it could not.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    /// FIFOs, sockets and device nodes.
    pub specials: u64,
    /// Sizes of the regular files copied (holes included).
    pub bytes: u64,
    /// Problems reported: each names what was not copied.
    pub problems: u64,
    /// Entries whose owner differs from the copier's, when owners are not
    /// kept.
    pub owners_not_kept: u64,
}

/// One scanned entry of the source.
struct Entry<N> {
    name: Vec<u8>,
    node: N,
    stat: Stat,
    /// A symlink's target.
    target: Option<Vec<u8>>,
    children: Vec<Entry<N>>,
}

impl<N> Entry<N> {
    fn descendants(&self) -> u64 {
        self.children.iter().map(|c| 1 + c.descendants()).sum()
    }
}

/// Copies the tree at `src_root` into the existing directory `dst_root`
/// (its children, then the root's own attributes onto `dst_root`).
/// Fails only when the source root cannot be read; everything else that
/// fails is reported and counted in the returned [`Tally`].
pub(crate) async fn copy_tree<S: Source, D: Dest>(
    src: &S,
    src_root: S::Node,
    dst: &D,
    dst_root: D::Node,
    options: &Options,
) -> anyhow::Result<Tally> {
    let stat = src.stat(&src_root).await?;
    anyhow::ensure!(
        stat.kind == NodeKind::Dir,
        "{} is not a directory",
        src.show(&src_root)
    );
    let mut copier = Copier {
        src,
        dst,
        options,
        links: HashMap::new(),
        tally: Tally::default(),
        bar: spinner(&format!("{}: scanning", options.verb)),
        files_total: 0,
    };
    let root = copier.scan(Vec::new(), src_root, stat).await;
    let (files, bytes) = totals(&root);
    copier.bar.finish_and_clear();
    copier.bar = bytes_bar(bytes);
    copier.files_total = files;
    copier.show_progress();
    copier.copy_children(&root, &dst_root).await;
    copier.apply_attributes(&root, &dst_root).await;
    copier.tally.dirs += 1;
    copier.bar.finish_and_clear();
    Ok(copier.tally)
}

/// Regular files and their bytes, each inode once.
fn totals<N>(root: &Entry<N>) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root];
    let (mut files, mut bytes) = (0, 0);
    while let Some(e) = stack.pop() {
        if e.stat.kind == NodeKind::File && (e.stat.nlink < 2 || seen.insert(e.stat.id)) {
            files += 1;
            bytes += e.stat.size;
        }
        stack.extend(&e.children);
    }
    (files, bytes)
}

fn spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {pos} entries") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn bytes_bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
    {
        pb.set_style(style);
    }
    pb
}

struct Copier<'a, S: Source, D: Dest> {
    src: &'a S,
    dst: &'a D,
    options: &'a Options,
    /// The copy of each source inode with several links, once made.
    links: HashMap<(u64, u64), D::Node>,
    tally: Tally,
    bar: ProgressBar,
    files_total: u64,
}

impl<S: Source, D: Dest> Copier<'_, S, D> {
    /// Reports a problem as it happens (above the progress bar).
    fn fail(&mut self, node: &S::Node, what: &str, err: &anyhow::Error) {
        self.tally.problems += 1;
        let path = self.src.show(node);
        let sep = if what.is_empty() { "" } else { ": " };
        let line = format!(
            "fsx: not copied: {path}{sep}{what}: {}",
            crate::message(err)
        );
        self.bar.suspend(|| eprintln!("{line}"));
    }

    fn show_progress(&self) {
        self.bar.set_message(format!(
            "{} {}/{} files",
            self.options.verb, self.tally.files, self.files_total
        ));
    }

    /// The entry at `node` and, for a directory, everything below it.
    /// Each entry is `lstat`ed before anything reads it.
    async fn scan(&mut self, name: Vec<u8>, node: S::Node, stat: Stat) -> Entry<S::Node> {
        let mut entry = Entry {
            name,
            node,
            stat,
            target: None,
            children: Vec::new(),
        };
        match entry.stat.kind {
            NodeKind::Symlink => match self.src.read_link(&entry.node).await {
                Ok(t) => entry.target = Some(t),
                Err(e) => self.fail(&entry.node, "reading the symlink", &e),
            },
            NodeKind::Dir => {
                let children = match self.src.children(&entry.node).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.fail(&entry.node, "listing the directory", &e);
                        Vec::new()
                    }
                };
                for (name, node) in children {
                    self.bar.inc(1);
                    match self.src.stat(&node).await {
                        Ok(stat) => {
                            let child = Box::pin(self.scan(name, node, stat)).await;
                            let unreadable_link =
                                child.stat.kind == NodeKind::Symlink && child.target.is_none();
                            if !unreadable_link {
                                entry.children.push(child);
                            }
                        }
                        Err(e) => self.fail(&node, "", &e),
                    }
                }
            }
            _ => {}
        }
        entry
    }

    async fn copy_children(&mut self, dir: &Entry<S::Node>, into: &D::Node) {
        for child in &dir.children {
            Box::pin(self.copy_entry(child, into)).await;
        }
    }

    async fn copy_entry(&mut self, e: &Entry<S::Node>, parent: &D::Node) {
        let dst = self.dst;
        let merge_into = if self.options.force {
            match self.clear_way(e, parent).await {
                Ok(m) => m,
                Err(err) => return self.fail(&e.node, "", &err),
            }
        } else {
            None
        };
        let linked = e.stat.kind != NodeKind::Dir && e.stat.nlink > 1;
        if linked && let Some(first) = self.links.get(&e.stat.id).cloned() {
            match dst.link(&first, parent, &e.name).await {
                Ok(()) => self.tally.hard_links += 1,
                Err(err) => self.fail(&e.node, "making the hard link", &err),
            }
            return;
        }
        let made = match e.stat.kind {
            NodeKind::Dir => match merge_into {
                Some(n) => Ok(n),
                None => dst.make(parent, &e.name, Make::Dir).await,
            },
            NodeKind::File => self.copy_file(e, parent).await,
            NodeKind::Symlink => {
                let target = e.target.as_deref().unwrap_or_default();
                dst.make(parent, &e.name, Make::Symlink(target)).await
            }
            kind => {
                dst.make(parent, &e.name, Make::Special(kind, e.stat.rdev))
                    .await
            }
        };
        let node = match made {
            Ok(n) => n,
            Err(err) => {
                let inside = e.descendants();
                let err = if inside > 0 {
                    err.context(format!(
                        "the {inside} entries inside were not copied either"
                    ))
                } else {
                    err
                };
                return self.fail(&e.node, "", &err);
            }
        };
        match e.stat.kind {
            NodeKind::Dir => self.tally.dirs += 1,
            NodeKind::File => {}
            NodeKind::Symlink => self.tally.symlinks += 1,
            _ => self.tally.specials += 1,
        }
        if e.stat.kind == NodeKind::Dir {
            self.copy_children(e, &node).await;
        }
        self.apply_attributes(e, &node).await;
        if linked {
            self.links.insert(e.stat.id, node);
        }
    }

    /// With `--force`: what is at the entry's name goes, unless both are
    /// directories (returned, to merge into). A directory in the way of
    /// something else is never removed.
    async fn clear_way(
        &self,
        e: &Entry<S::Node>,
        parent: &D::Node,
    ) -> anyhow::Result<Option<D::Node>> {
        match self.dst.existing(parent, &e.name).await? {
            None => Ok(None),
            Some((n, true)) if e.stat.kind == NodeKind::Dir => Ok(Some(n)),
            Some((_, true)) => {
                anyhow::bail!("a directory of that name is in the destination (not replaced)")
            }
            Some((_, false)) => {
                self.dst.remove(parent, &e.name).await?;
                Ok(None)
            }
        }
    }

    /// Copies a regular file's data stretches (holes stay holes) and sets
    /// its size; on failure removes the partial copy.
    async fn copy_file(&mut self, e: &Entry<S::Node>, parent: &D::Node) -> anyhow::Result<D::Node> {
        let (src, dst) = (self.src, self.dst);
        let mut reader = src.open(&e.node).await?;
        let (node, mut writer) = match dst.create(parent, &e.name).await {
            Ok(made) => made,
            Err(err) => {
                let _ = src.close(reader).await;
                return Err(err);
            }
        };
        let size = e.stat.size;
        let mut copied = 0u64;
        let data = async {
            let mut offset = 0;
            while let Some((start, end)) = src.data(&mut reader, offset, size).await? {
                let mut at = start;
                while at < end {
                    let want = (end - at).min(CHUNK as u64) as usize;
                    let chunk = src.read(&mut reader, at, want).await?;
                    if chunk.is_empty() {
                        // The file shrank since the scan; its size is
                        // still set to the scanned one.
                        break;
                    }
                    dst.write(&mut writer, at, &chunk).await?;
                    at += chunk.len() as u64;
                    copied += chunk.len() as u64;
                    self.bar.inc(chunk.len() as u64);
                }
                offset = end;
            }
            anyhow::Ok(())
        }
        .await;
        let closed = src.close(reader).await;
        let finished = dst.finish(writer, size).await;
        if let Err(err) = data.and(closed).and(finished) {
            if let Err(e2) = dst.remove(parent, &e.name).await {
                return Err(err.context(format!("the partial copy remains ({e2})")));
            }
            return Err(err);
        }
        self.bar.inc(size.saturating_sub(copied));
        self.tally.files += 1;
        self.tally.bytes += size;
        self.show_progress();
        Ok(node)
    }

    /// Extended attributes, then owner, mode and times (see the module
    /// docs for why in this order).
    async fn apply_attributes(&mut self, e: &Entry<S::Node>, node: &D::Node) {
        let (src, dst) = (self.src, self.dst);
        match src.xattr_names(&e.node).await {
            Err(err) => self.fail(&e.node, "listing extended attributes", &err),
            Ok(names) => {
                for name in names {
                    let copied = async {
                        let value = src.xattr(&e.node, &name).await?;
                        dst.set_xattr(node, &name, &value).await
                    }
                    .await;
                    if let Err(err) = copied {
                        let what = format!("extended attribute {}", shown_bytes(&name));
                        self.fail(&e.node, &what, &err);
                    }
                }
            }
        }
        // The owner is always set: a destination makes nodes as its own
        // user (a volume as the tree's superuser), and a set-group-ID
        // directory gives its group to what is made in it.
        let (uid, gid) = if self.options.keep_owners {
            (e.stat.uid, e.stat.gid)
        } else {
            if (e.stat.uid, e.stat.gid) != self.options.own_ids {
                self.tally.owners_not_kept += 1;
            }
            self.options.own_ids
        };
        let attrs = Attributes {
            uid,
            gid,
            mode: (e.stat.kind != NodeKind::Symlink).then_some(e.stat.mode),
            atime_ns: e.stat.atime_ns,
            mtime_ns: e.stat.mtime_ns,
        };
        if let Err(err) = dst.set_attributes(node, &attrs).await {
            self.fail(&e.node, "owner, mode and times", &err);
        }
    }
}
