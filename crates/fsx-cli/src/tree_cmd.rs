//! `fsx import`, `fsx export` and `fsx ls`: whole directory trees between
//! the local file system and a volume's file tree, and listings of it.
//!
//! A place in a volume is written `VOLUME[:/PATH]`: the volume directory,
//! then optionally `:` and an absolute path in its tree (default `/`).
//! The volume is found by its `fsx-volume.json`, so a volume directory
//! whose own name holds `:/` still parses: the first split whose left
//! side is a volume wins.
//!
//! Missing directories of an import's PATH are made as `fsx file put`
//! makes a name's directories: mode 0755, the tree root's user's.
//! Destinations must be empty (or new) unless `--force` merges into them;
//! the copy itself and what it keeps are in [`crate::tree`]. A copy that
//! could not copy everything still copies the rest, then exits 1 with
//! each problem named on stderr; anything that stops the command before
//! it copies (no volume, a refused destination) is an error (exit 2).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use fsx_posix::{Attr, Fs, NodeKind};

use crate::tree::copy::{Options, Tally, copy_tree};
use crate::tree::local::LocalTree;
use crate::tree::shown_bytes;
use crate::tree::volume::{VNode, VolumeTree, reason};
use crate::volume_cmd::{ViewArgs, canonical, open_volume, runtime, volume_files};

/// `fsx import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The local directory to copy (its contents go into PATH).
    dir: PathBuf,
    /// The volume directory, optionally followed by `:/PATH`, the directory
    /// of the volume's tree to copy into (made if missing; default: the
    /// root).
    #[arg(value_name = "VOLUME[:/PATH]")]
    target: OsString,
    /// Import into branch NAME instead of main.
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,
    /// Merge into a non-empty destination: an entry of the same name is
    /// replaced, unless both are directories (then merged); a directory in
    /// the way of anything else is reported, never removed.
    #[arg(long, short)]
    force: bool,
}

/// `fsx export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The volume directory, optionally followed by `:/PATH`, the directory
    /// of the volume's tree to copy out (default: the root).
    #[arg(value_name = "VOLUME[:/PATH]")]
    source: OsString,
    /// The local directory to copy into (made if missing; must be empty
    /// unless --force).
    dir: PathBuf,
    /// Merge into a non-empty destination: an entry of the same name is
    /// replaced, unless both are directories (then merged); a directory in
    /// the way of anything else is reported, never removed.
    #[arg(long, short)]
    force: bool,
    #[command(flatten)]
    view: ViewArgs,
}

/// `fsx ls`.
#[derive(Args)]
pub struct LsArgs {
    /// The volume directory, optionally followed by `:/PATH` (default: the
    /// root). A directory lists its entries; anything else lists itself.
    #[arg(value_name = "VOLUME[:/PATH]")]
    target: OsString,
    /// Long format: mode, links, owner, group, size (a device's
    /// major, minor), modification time (UTC), name, and `-> target` for
    /// a symlink.
    #[arg(short = 'l')]
    long: bool,
    #[command(flatten)]
    view: ViewArgs,
}

/// A place in a volume: `VOLUME[:/PATH]`.
struct Place {
    volume: PathBuf,
    /// The path's names, from the root.
    names: Vec<Vec<u8>>,
}

impl Place {
    fn parse(arg: &OsStr) -> anyhow::Result<Place> {
        let bytes = arg.as_bytes();
        let is_volume = |dir: &[u8]| {
            !dir.is_empty()
                && Path::new(OsStr::from_bytes(dir))
                    .join(fsx_volume::VOLUME_FILE)
                    .is_file()
        };
        let splits: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i..].starts_with(b":/"))
            .collect();
        let (volume, path) = match splits.iter().find(|&&i| is_volume(&bytes[..i])) {
            Some(&i) => (&bytes[..i], &bytes[i + 1..]),
            None if is_volume(bytes) || splits.is_empty() => (bytes, &b"/"[..]),
            None => {
                let dir = &bytes[..splits[0]];
                bail!(
                    "{} is not an fsx volume (no {} in it): write VOLUME:/PATH, the volume \
                     directory `fsx init` made, then the path in its tree",
                    shown_bytes(dir),
                    fsx_volume::VOLUME_FILE
                );
            }
        };
        let mut names = Vec::new();
        for name in path.split(|&b| b == b'/') {
            match name {
                b"" | b"." => {}
                b".." => bail!(
                    "{}: `..` is not allowed in a path in a volume; write the path from the root",
                    shown_bytes(bytes)
                ),
                n => names.push(n.to_vec()),
            }
        }
        Ok(Place {
            volume: PathBuf::from(OsStr::from_bytes(volume)),
            names,
        })
    }

    fn label(&self) -> String {
        shown_bytes(self.volume.as_os_str().as_bytes()).into_owned()
    }
}

/// Whether this process runs as root (and so keeps owners).
fn is_root() -> bool {
    // SAFETY: geteuid only reads the process's credentials.
    unsafe { libc::geteuid() == 0 }
}

fn own_ids() -> (u32, u32) {
    // SAFETY: as in `is_root`.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

async fn open_fs(place: &Place, view: &ViewArgs) -> anyhow::Result<Fs> {
    let volume = view.select(open_volume(&place.volume).await?).await?;
    Fs::new(volume).await.map_err(reason)
}

/// Walks `place`'s names from the root; with `make`, makes the missing
/// directories (mode 0755).
async fn resolve(
    tree: &VolumeTree<'_>,
    place: &Place,
    make: bool,
) -> anyhow::Result<(VNode, Attr)> {
    let root = tree.fs.root();
    let mut attr = tree.fs.getattr(root).await.map_err(reason)?;
    let mut node = VNode {
        ino: root,
        path: b"/".to_vec(),
        owner: None,
    }
    .owned_by(&attr);
    for name in &place.names {
        if attr.kind != NodeKind::Dir {
            bail!("{} is not a directory", tree.show_node(&node));
        }
        attr = match tree.lookup(node.ino, name).await? {
            Some(a) => a,
            None if make => tree
                .fs
                .mkdir(node.ino, name, 0o755, &tree.caller)
                .await
                .map_err(reason)
                .with_context(|| format!("cannot make {}", tree.show_node(&node.child(name, 0))))?,
            None => bail!("{} does not exist", tree.show_node(&node.child(name, 0))),
        };
        node = node.child(name, attr.ino).owned_by(&attr);
    }
    Ok((node, attr))
}

/// `fsx import DIR VOLUME[:/PATH]`.
pub fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let place = Place::parse(&args.target)?;
    let src = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot read {}", args.dir.display()))?;
    if !src.is_dir() {
        bail!(
            "{} is not a directory: import copies a directory's tree \
             (use `fsx file put` for one file)",
            args.dir.display()
        );
    }
    for own in volume_files(&place.volume)? {
        if own.starts_with(&src) || src.starts_with(&own) {
            bail!(
                "{} holds the volume's own files ({}) or lies inside them: importing would \
                 copy the volume into itself; import a directory outside the volume",
                args.dir.display(),
                own.display()
            );
        }
    }
    let view = ViewArgs {
        branch: args.branch,
        commit: None,
    };
    runtime()?.block_on(async {
        let fs = open_fs(&place, &view).await?;
        let tree = VolumeTree::new(&fs, place.label());
        let (dst, attr) = resolve(&tree, &place, true).await?;
        let shown = tree.show_node(&dst);
        if attr.kind != NodeKind::Dir {
            bail!("{shown} is not a directory: import copies into a directory");
        }
        if !args.force && !tree.entries(dst.ino).await?.is_empty() {
            bail!(
                "{shown} is not empty: import copies into an empty or new directory; \
                 choose another path (VOLUME:/PATH) or pass --force to merge into it \
                 (entries of the same name are replaced)"
            );
        }
        let started = Instant::now();
        let copied = copy_tree(&LocalTree, src, &tree, dst, &options("import", args.force)).await;
        let closed = fs.close_all().await.map_err(reason);
        let flushed = fs.volume().flush_counters().await;
        let tally = copied?;
        closed?;
        flushed?;
        Ok(summary("imported", &tally, started))
    })
}

/// `fsx export VOLUME[:/PATH] DIR`.
pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let place = Place::parse(&args.source)?;
    let dest = &args.dir;
    if let Some(d) = canonical(dest) {
        for own in volume_files(&place.volume)? {
            if d.starts_with(&own) || own.starts_with(&d) {
                bail!(
                    "refusing to export into {}: it holds the volume's own files ({}) or \
                     lies inside them, which the copy could overwrite; choose a destination \
                     outside the volume",
                    dest.display(),
                    own.display()
                );
            }
        }
    }
    runtime()?.block_on(async {
        let fs = open_fs(&place, &args.view).await?;
        let tree = VolumeTree::new(&fs, place.label());
        let (src, attr) = resolve(&tree, &place, false).await?;
        if attr.kind != NodeKind::Dir {
            bail!(
                "{} is not a directory: export copies a directory's tree \
                 (use `fsx file get` for one file)",
                tree.show_node(&src)
            );
        }
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let dest = std::fs::canonicalize(dest)
            .with_context(|| format!("cannot read {}", dest.display()))?;
        if !dest.is_dir() {
            bail!("{} is not a directory", dest.display());
        }
        let has_entries = std::fs::read_dir(&dest)
            .with_context(|| format!("cannot read {}", dest.display()))?
            .next()
            .is_some();
        if has_entries && !args.force {
            bail!(
                "{} is not empty: export writes only into an empty or new directory; \
                 empty it, choose another, or pass --force to merge into it \
                 (entries of the same name are replaced)",
                args.dir.display()
            );
        }
        let started = Instant::now();
        let copied = copy_tree(&tree, src, &LocalTree, dest, &options("export", args.force)).await;
        let closed = fs.close_all().await.map_err(reason);
        // The store's read counters, as `fsx file get` keeps them.
        let flushed = fs.volume().flush_counters().await;
        let tally = copied?;
        closed?;
        flushed?;
        Ok(summary("exported", &tally, started))
    })
}

fn options(verb: &'static str, force: bool) -> Options {
    Options {
        verb,
        force,
        keep_owners: is_root(),
        own_ids: own_ids(),
    }
}

/// Prints the one-line summary and the notes; exit 1 when something was
/// not copied.
fn summary(done: &str, t: &Tally, started: Instant) -> ExitCode {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    println!(
        "{done} {}, {}, {}, {}, {} ({} bytes) in {:.2} s",
        plural(t.files, "file", "files"),
        plural(t.dirs, "directory", "directories"),
        plural(t.symlinks, "symlink", "symlinks"),
        plural(t.hard_links, "hard link", "hard links"),
        plural(t.specials, "special file", "special files"),
        t.bytes,
        started.elapsed().as_secs_f64()
    );
    if t.owners_not_kept > 0 {
        let (uid, gid) = own_ids();
        eprintln!(
            "fsx: note: owners were not kept (only root can set them): {} belonging to \
             other users now belong to uid {uid}, gid {gid}",
            plural(t.owners_not_kept, "entry", "entries")
        );
    }
    if t.problems > 0 {
        eprintln!(
            "fsx: {} reported above: what each names was not copied; everything else was",
            plural(t.problems, "problem", "problems")
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `fsx ls VOLUME[:/PATH] [-l]`.
pub fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let place = Place::parse(&args.target)?;
    runtime()?.block_on(async {
        let fs = open_fs(&place, &args.view).await?;
        let tree = VolumeTree::new(&fs, place.label());
        let (node, attr) = resolve(&tree, &place, false).await?;
        let mut rows = Vec::new();
        if attr.kind == NodeKind::Dir {
            for e in tree.entries(node.ino).await? {
                let a = if args.long {
                    Some(fs.getattr(e.ino).await.map_err(reason)?)
                } else {
                    None
                };
                rows.push((e.name.to_vec(), a));
            }
        } else {
            rows.push((node.path.clone(), Some(attr)));
        }
        let mut lines = Vec::new();
        for (name, a) in rows {
            let shown = shown_bytes(&name).into_owned();
            match a.filter(|_| args.long) {
                None => lines.push(vec![shown]),
                Some(a) => {
                    let mut name = shown;
                    if a.kind == NodeKind::Symlink {
                        let target = fs.readlink(a.ino).await.map_err(reason)?;
                        name = format!("{name} -> {}", shown_bytes(&target));
                    }
                    let size = if matches!(a.kind, NodeKind::CharDev | NodeKind::BlockDev) {
                        let (major, minor) = dev_numbers(a.rdev);
                        format!("{major}, {minor}")
                    } else {
                        a.size.to_string()
                    };
                    lines.push(vec![
                        mode_string(a.kind, a.mode),
                        a.nlink.to_string(),
                        a.uid.to_string(),
                        a.gid.to_string(),
                        size,
                        utc(a.mtime_ns),
                        name,
                    ]);
                }
            }
        }
        print_columns(&lines);
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints rows with every column but the last (the name) right-aligned
/// to its widest cell, as `ls -l` does.
fn print_columns(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else if c == 0 {
                line.push_str(&format!("{cell:<w$} ", w = widths[c]));
            } else {
                line.push_str(&format!("{cell:>w$} ", w = widths[c]));
            }
        }
        println!("{line}");
    }
}

/// `ls -l`'s mode column: the type, then `rwx` for owner, group and
/// others, with `s`/`S` for set-user-ID and set-group-ID and `t`/`T` for
/// sticky (capital when the execute bit under it is off).
fn mode_string(kind: NodeKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        NodeKind::Dir => 'd',
        NodeKind::File => '-',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::CharDev => 'c',
        NodeKind::BlockDev => 'b',
    });
    let class = |shift: u32, special: u32, on: char| {
        let bits = (mode >> shift) & 7;
        let exec = match (bits & 1 != 0, mode & special != 0) {
            (true, true) => on,
            (false, true) => on.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        };
        [
            if bits & 4 != 0 { 'r' } else { '-' },
            if bits & 2 != 0 { 'w' } else { '-' },
            exec,
        ]
    };
    s.extend(class(6, 0o4000, 's'));
    s.extend(class(3, 0o2000, 's'));
    s.extend(class(0, 0o1000, 't'));
    s
}

/// Linux's major and minor numbers of a device number.
fn dev_numbers(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

/// A time (ns since the epoch) as `YYYY-MM-DD HH:MM:SS` in UTC, for any
/// time before or after the epoch.
fn utc(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date in the proleptic Gregorian calendar, counting
    // in 400-year eras from 0000-03-01 (so the leap day ends a year).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_prints_them() {
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o6644), "-rwSr-Sr--");
        assert_eq!(mode_string(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeKind::Dir, 0o1770), "drwxrwx--T");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(NodeKind::Fifo, 0o600), "prw-------");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400 * 1_000_000_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000_999_999_999), "2023-11-14 22:13:20");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(utc(-2_208_988_800 * 1_000_000_000), "1900-01-01 00:00:00");
    }

    #[test]
    fn device_numbers_split_as_glibc_does() {
        assert_eq!(dev_numbers(0x0103), (1, 3));
        let dev = (259u64 << 8) | 0x05 | (0x1200u64 << 12);
        assert_eq!(dev_numbers(dev), (259, 0x1205));
    }

    #[test]
    fn places_parse() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v:/x");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join(fsx_volume::VOLUME_FILE), "{}").unwrap();
        let arg = |s: &str| OsString::from(s);
        let p = Place::parse(&arg(&format!("{}:/a//b/./c", vol.display()))).unwrap();
        assert_eq!(p.volume, vol);
        assert_eq!(p.names, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let p = Place::parse(vol.as_os_str()).unwrap();
        assert!(p.names.is_empty());
        let err = Place::parse(&arg(&format!("{}:/a/../b", vol.display())))
            .err()
            .unwrap();
        assert!(err.to_string().contains("`..`"), "{err}");
        let err = Place::parse(&arg(&format!("{}/nothing:/a", dir.path().display())))
            .err()
            .unwrap();
        assert!(err.to_string().contains("is not an fsx volume"), "{err}");
    }
}
