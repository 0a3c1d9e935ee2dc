//! Volume commands: `fsx init`, file commands (`put`, `get`, `ls`, `rm`,
//! `mv`, `stat`) and maintenance (`stats`, `fsck`, `gc`).
//!
//! A volume is a directory holding `fsx-volume.json`, which names the
//! metadata engine and the data store by URL. With the embedded defaults
//! both live inside the directory (`meta.db`, `data/`), written as paths
//! relative to it so the directory can be moved whole.
//!
//! File commands work on `main` unless `--branch NAME` or `--commit ID`
//! ([`ViewArgs`]) says otherwise; a commit is read-only, and the engine's
//! own error says so when a write is attempted on one.
//!
//! # What a failure leaves
//!
//! - `get` writes a temporary file beside the destination, fsyncs it and
//!   renames it over the destination: a failed get leaves the destination
//!   as it was. Destinations inside the volume or on its own metadata
//!   database or data directory are refused (by canonical path).
//! - `put` of a new name writes under `.fsx-partial/<holder>/NAME` and
//!   renames to NAME once the data is durable, so NAME never shows partial
//!   data; a failed put removes its partial file, and each put removes
//!   those of writers known dead (killed puts). A put over an existing file
//!   rewrites it in place and exits 3 if it fails after part of the new
//!   data became durable, 2 if nothing changed.
//! - Packing is not durability: a put whose data is durable but whose
//!   packing failed exits 0 with a warning (the pages stay in the dirty
//!   buffer, where reads find them).
//! - Names with control characters are printed quoted with escapes
//!   ([`shown`]), never raw; the engine refuses them for new files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use fsx_engine::{Environment, GcOptions, OpenOptions, Progress, SystemEnv, Volume, VolumeOptions};
use fsx_meta::CommitId;
use fsx_volume::{VolumeFile, resolve};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// `fsx init`.
#[derive(Args)]
pub struct InitArgs {
    /// Directory of the new volume.
    path: PathBuf,
    /// Metadata engine URL: sqlite:///path/meta.db, or
    /// postgres://user:password@host:port/db[?schema=NAME] so several
    /// machines can share the volume (default: sqlite://meta.db inside the
    /// volume).
    #[arg(long)]
    meta: Option<String>,
    /// Data store URL: a directory, file:///dir, s3://bucket/prefix?…,
    /// redis://… (default: data/ inside the volume).
    #[arg(long)]
    store: Option<String>,
    /// Bytes of page data per extent: a power of two, 256K to 16M.
    #[arg(long, default_value = "2M", value_parser = parse_size)]
    extent_size: u64,
    #[command(flatten)]
    tier: crate::tier_cmd::TierArgs,
}

/// Which branch or commit a command works on (default: the `main` branch).
#[derive(Args, Clone, Debug, Default)]
pub struct ViewArgs {
    /// Work on branch NAME instead of main (`fsx branch list` shows the
    /// branches).
    #[arg(long, value_name = "NAME", conflicts_with = "commit")]
    pub branch: Option<String>,
    /// Read the files as commit ID showed them. Commits are read-only:
    /// writes fail (`fsx log` lists commits).
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(CommitId).range(1..))]
    pub commit: Option<CommitId>,
}

impl ViewArgs {
    /// `volume` seen through the chosen branch or commit; `NotFound` for an
    /// unknown one.
    pub async fn select(&self, volume: Volume) -> anyhow::Result<Volume> {
        Ok(match (&self.branch, self.commit) {
            (Some(name), _) => volume.checkout(name).await?,
            (None, Some(id)) => volume.at_commit(id).await?,
            (None, None) => volume,
        })
    }
}

/// Commands on the files of a volume (`fsx file …`).
#[derive(Subcommand)]
pub enum FileCommand {
    /// Copy a local file (or stdin with `-`) into the volume.
    ///
    /// A new name appears only once all the data is durable: until then it
    /// is written under `.fsx-partial/<writer>/NAME`, which a failed put
    /// removes and the next put removes after a killed one. An existing
    /// file is rewritten in place (exit 3 if that fails midway). If packing
    /// the pages into extents fails, the data is still durable: the put
    /// warns and exits 0, and `fsx gc` packs them later. New names may not
    /// hold control characters.
    Put {
        /// Source file, or `-` for stdin.
        local: PathBuf,
        /// The volume directory.
        path: PathBuf,
        /// Name in the volume.
        name: String,
        /// Page size for a new file (a power of two, 512 to 65536).
        #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(512..=65536))]
        page_size: u32,
        /// Make the data durable every N pages (N >= 1), as a database
        /// would commit (default: once, at the end).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        sync_pages: Option<u64>,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Copy a file out of the volume to a local file (or stdout with `-`).
    ///
    /// The data is written to a temporary file next to LOCAL, flushed to
    /// disk, and renamed over LOCAL only when complete, so a failed get
    /// (a damaged extent, a full disk) leaves LOCAL as it was. LOCAL may
    /// not lie inside the volume or on its metadata database or data
    /// directory.
    Get {
        /// The volume directory.
        path: PathBuf,
        /// Name in the volume.
        name: String,
        /// Destination, or `-` for stdout.
        local: PathBuf,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// List files: size, page size, name (quoted with escapes when it
    /// holds control characters).
    Ls {
        /// The volume directory.
        path: PathBuf,
        /// Only names starting with this.
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Delete a file.
    Rm {
        /// The volume directory.
        path: PathBuf,
        /// Name in the volume.
        name: String,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Rename a file.
    Mv {
        /// The volume directory.
        path: PathBuf,
        /// Current name.
        from: String,
        /// New name.
        to: String,
        /// Replace `to` if it exists.
        #[arg(long, short)]
        force: bool,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Show one file's size, page size and times.
    Stat {
        /// The volume directory.
        path: PathBuf,
        /// Name in the volume.
        name: String,
        #[command(flatten)]
        view: ViewArgs,
    },
}

/// Maintenance commands on a volume.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Data store counters, stored extents, and each branch's unique bytes.
    ///
    /// Operation and byte counters of the data store, the number and bytes
    /// of stored extents, and what deleting each branch would free. A
    /// branch's unique bytes are the extents only it references plus the
    /// page data it holds in the metadata engine: what `fsx branch delete`
    /// followed by `fsx gc` would free. Files are those of main.
    Stats {
        /// The volume directory.
        path: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show or change the volume's settings: extents in flight,
    /// readahead, cache size, the capacity a file system reports.
    ///
    /// With no NAME=VALUE, prints every setting with its value and where
    /// it comes from (stored in the volume, or the default). Settings are
    /// stored in the volume's metadata and apply to every process that
    /// opens it from then on; `fsx stats` shows them too.
    ///
    ///   io.extents_in_flight  extents a sync uploads, or a read loads, at once (1-64, default 4)
    ///   io.readahead_extents  extents a sequential read loads ahead (0-256, 0: off; default 8)
    ///   io.cache_bytes        bytes of verified extents cached in memory, per volume and process (default 64 MiB)
    ///   changes.retain        changes the change feed keeps; older ones are pruned by fsx gc, mounts and fsx serve (default 1000000)
    Config {
        /// The volume directory.
        path: PathBuf,
        /// Settings to store, as NAME=VALUE.
        settings: Vec<String>,
    },
    /// Check extents, reference counts, orphans and the branch graph; exit
    /// 0 only when the volume is clean.
    ///
    /// Verifies that every referenced extent exists and matches its content
    /// key and checksum, that reference counts match the page maps, that
    /// the store holds no orphan objects, and that the graph of branches,
    /// commits and layers is sound (no dangling parent, no cycle, no shared
    /// or frozen branch head). Prints one line per fault and the numbers
    /// checked; exits 1 when a fault was found.
    ///
    /// Also reads every page still in the dirty buffer and checks it
    /// against its checksum (DAMAGED: a fault), lists the unpacked pages
    /// per branch or commit and file (UNPACKED: a warning, not a fault),
    /// and, on a tiered volume, verifies every copy in every tier (BADCOPY:
    /// a fault; a bad copy is rewritten from a good one when one exists).
    Fsck {
        /// The volume directory.
        path: PathBuf,
        /// First pack the pages that writers which are gone (killed, or
        /// whose lease expired) left in the dirty buffer, as `fsx gc` does.
        #[arg(long)]
        repair: bool,
    },
    /// Expire old automatic commits, delete unreferenced extents and
    /// orphan objects.
    ///
    /// First removes automatic commits older than the volume's retention
    /// (`fsx branch config --retain`, default 7d), except a branch's latest
    /// one; explicit commits are kept while a branch reaches them. Then
    /// deletes extents nothing references any more once they have been
    /// unreferenced for the grace period, which protects writers in flight.
    Gc {
        /// The volume directory.
        path: PathBuf,
        /// How long an extent must have been unreferenced (e.g. 1h, 10m, 0s).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: Duration,
        /// Leave orphan objects alone.
        #[arg(long)]
        no_orphans: bool,
        /// Delete an orphan object (one no record names) only when the
        /// store says it was written longer ago than this (e.g. 1h, 0s);
        /// orphans of unknown age (Redis) are deleted only with 0s.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        orphan_grace: Duration,
    },
}

/// `1048576`, `256K`, `2M`, `16M`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (examples: 2M, 256K, 1048576)"))
}

/// `90`, `90s`, `15m`, `1h`, `2d`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bare_seconds = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parsed = if bare_seconds {
        s.parse().map(Duration::from_secs).ok()
    } else {
        humantime::parse_duration(s).ok()
    };
    parsed.ok_or_else(|| format!("{s:?} is not a duration (examples: 0s, 90s, 15m, 1h, 7d)"))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `fsx init`.
pub fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let extent_size = u32::try_from(args.extent_size)
        .ok()
        .filter(|&e| fsx_meta::check_extent_size(e).is_ok());
    let Some(extent_size) = extent_size else {
        bail!(
            "extent size {} is not allowed: use a power of two from 256K to 16M (default 2M)",
            args.extent_size
        );
    };
    let dir = fsx_volume::absolute(&args.path)?;
    let file = VolumeFile::new(args.meta, args.store);
    let existed = dir.exists();
    let volume = runtime()?.block_on(async {
        let volume = fsx_volume::create(
            &dir,
            &file,
            extent_size,
            Arc::new(SystemEnv::new()),
            VolumeOptions::default(),
        )
        .await?;
        if let Err(e) = crate::tier_cmd::configure(volume.meta(), &args.tier).await {
            // A refused tier option leaves no half-made volume behind.
            if !existed {
                drop(volume);
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
        anyhow::Ok(volume)
    })?;
    println!(
        "created volume {} in {}",
        volume.config().volume_id,
        dir.display()
    );
    println!(
        "  metadata:    {}",
        fsx_store::redact(&resolve(&dir, &file.meta))
    );
    println!(
        "  data store:  {}",
        fsx_store::redact(&resolve(&dir, &file.store))
    );
    println!("  extent size: {} KiB", extent_size / 1024);
    if [&file.meta, &file.store]
        .iter()
        .any(|u| fsx_store::SafeUrl::new(u.as_str()).has_secret())
    {
        eprintln!(
            "note: {} (mode 0600) now holds a password from the URL; to keep it out, give it in \
             PGPASSWORD / REDIS_PASSWORD or as ?password_file=PATH",
            fsx_volume::VOLUME_FILE
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the volume in `path`.
pub async fn open_volume(path: &Path) -> anyhow::Result<Volume> {
    if fsx_client::is_remote(&path.to_string_lossy()) {
        bail!(
            "this command does not take a remote volume ({}): only `fsx file put|get|ls|rm|mv|stat`, `fsx branch list|create`, `fsx commit`, `fsx log`, `fsx diff`, `fsx merge`, `fsx reset` and `fsx stats` do; run it on the server's volume directory",
            path.display()
        );
    }
    check_meta_not_empty(path)?;
    Ok(fsx_volume::open(path, Arc::new(SystemEnv::new()), VolumeOptions::default()).await?)
}

/// Refuses a volume whose SQLite metadata database is an empty file (a
/// truncated copy, a failed restore): opening it would only report a
/// missing table, and nothing must be recreated over a lost database.
pub(crate) fn check_meta_not_empty(path: &Path) -> anyhow::Result<()> {
    let Ok(dir) = fsx_volume::absolute(path) else {
        return Ok(());
    };
    let Ok(file) = VolumeFile::read(&dir) else {
        // Opening reports a missing or damaged volume file.
        return Ok(());
    };
    let Ok(Some(db)) = fsx_meta::open::sqlite_path(&file.meta, Some(&dir)) else {
        return Ok(());
    };
    if std::fs::metadata(&db).is_ok_and(|m| m.is_file() && m.len() == 0) {
        bail!(
            "the metadata database {} of the volume in {} is empty (0 bytes): it holds no fsx metadata, \
             so this is not a usable fsx volume; restore meta.db from a backup (fsx does not recreate it)",
            db.display(),
            dir.display()
        );
    }
    Ok(())
}

pub(crate) fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let style = if len.is_some() {
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
    } else {
        ProgressStyle::with_template("{spinner} {msg} {pos}")
    };
    if let Ok(style) = style {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

/// Progress of GC and fsck on an indicatif bar (hidden when stderr is not
/// a terminal).
struct BarProgress(std::sync::Mutex<Option<ProgressBar>>);

impl Progress for BarProgress {
    fn phase(&self, name: &str, total: Option<u64>) {
        let mut b = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = b.take() {
            old.finish_and_clear();
        }
        *b = Some(bar(total, name));
    }

    fn advance(&self, n: u64) {
        if let Some(b) = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            b.inc(n);
        }
    }
}

impl Drop for BarProgress {
    fn drop(&mut self) {
        if let Some(b) = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            b.finish_and_clear();
        }
    }
}

pub(crate) const COPY_CHUNK: usize = 1 << 20;

/// Runs a file command.
pub fn run_file(cmd: FileCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let (path, view) = match &cmd {
            FileCommand::Put { path, view, .. }
            | FileCommand::Get { path, view, .. }
            | FileCommand::Ls { path, view, .. }
            | FileCommand::Rm { path, view, .. }
            | FileCommand::Mv { path, view, .. }
            | FileCommand::Stat { path, view, .. } => (path.clone(), view.clone()),
        };
        if let Some(r) = crate::remote_cmd::remote(&path)? {
            return crate::remote_cmd::file_command(&r, &view, cmd).await;
        }
        let v = view.select(open_volume(&path).await?).await?;
        let result = file_command(&v, cmd).await;
        // Counters are kept even when the command failed midway.
        let flushed = v.flush_counters().await;
        let code = result?;
        flushed?;
        Ok(code)
    })
}

async fn file_command(v: &Volume, cmd: FileCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FileCommand::Ls { prefix, .. } => {
            for f in v.list(&prefix).await? {
                print_ls_line(&f.name, f.size, f.page_size);
            }
        }
        FileCommand::Put {
            local,
            name,
            page_size,
            sync_pages,
            ..
        } => return put(v, &local, &name, page_size, sync_pages).await,
        FileCommand::Get {
            path, name, local, ..
        } => get(v, &path, &name, &local).await?,
        FileCommand::Rm { name, .. } => v.delete(&name).await?,
        FileCommand::Mv {
            from, to, force, ..
        } => v.rename(&from, &to, force).await?,
        FileCommand::Stat { name, .. } => {
            let f = v.stat(&name).await?;
            print_stat(&f.name, f.size, f.page_size, f.modified_ms);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a put of a new name writes before the name appears:
/// `.fsx-partial/<holder>/<name>`, renamed to `<name>` once the data is
/// durable. The holder (`host:pid:…`) says which process wrote it, so a
/// later put can remove what a killed one left.
const PARTIAL_DIR: &str = ".fsx-partial/";

/// Exit code of a command that failed after part of its change became
/// durable (a put over an existing file that failed midway).
pub(crate) const EXIT_PARTIAL: u8 = 3;

/// A name as printed: unchanged unless it holds control characters
/// (newline, ESC…), which could forge lines or terminal escapes; then
/// quoted with Rust string escapes (`"a\nb"`, `"\u{1b}[31m"`).
pub(crate) fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        std::borrow::Cow::Owned(format!("{name:?}"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Removes what killed puts left under [`PARTIAL_DIR`]: files whose
/// writer's process is known to be gone. Best effort; a failure only
/// leaves them for the next put.
async fn remove_dead_partials(v: &Volume) {
    let env = SystemEnv::new();
    let Ok(files) = v.list(PARTIAL_DIR).await else {
        return;
    };
    for f in files {
        let holder = f.name[PARTIAL_DIR.len()..].split('/').next().unwrap_or("");
        if env.holder_is_dead(holder) {
            match v.delete(&f.name).await {
                Ok(()) => tracing::info!(name = %f.name, "removed what a killed put left"),
                Err(e) => {
                    tracing::debug!(name = %f.name, error = %e, "cannot remove a killed put's file")
                }
            }
        }
    }
}

/// `fsx file put`: all or nothing for a new name. A new name is written
/// under [`PARTIAL_DIR`] and renamed once the data is durable, so a failed
/// or killed put never leaves a partial file under it (a failed one
/// removes its partial file; the next put removes a killed one's). An
/// existing file is rewritten in place: a failure after some of its pages
/// became durable exits [`EXIT_PARTIAL`]. Packing is not part of
/// durability: if it fails the data is safe in the dirty buffer, and the
/// put warns and exits 0.
async fn put(
    v: &Volume,
    local: &Path,
    name: &str,
    page_size: u32,
    sync_pages: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let input: Box<dyn Read + Send> = if local.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(open_source(local).with_context(|| format!("cannot read {}", local.display()))?)
    };
    let total = std::fs::metadata(local)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    remove_dead_partials(v).await;
    let exists = match v.stat(name).await {
        Ok(_) => true,
        Err(e) if e.kind() == fsx_engine::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    let target = if exists {
        name.to_string()
    } else {
        // The final name is checked now, not after the copy.
        if name.chars().any(char::is_control) {
            bail!(
                "{name:?} is not a valid new file name: control characters (newline, tab, ESC…) are not allowed"
            );
        }
        format!("{PARTIAL_DIR}{}/{name}", SystemEnv::new().new_holder_id())
    };
    let mut f = v.open_file(&target, OpenOptions::create(page_size)).await?;
    let sync_every = sync_pages.map(|n| n * u64::from(f.page_size()));
    let pb = bar(total, "put");
    let mut synced = false;
    // A pipe hands over what it has as it comes (a writer may be waiting
    // for this put to sync what it sent); a regular file fills each chunk.
    let stream = local.as_os_str() == "-" || !std::fs::metadata(local).is_ok_and(|m| m.is_file());
    let copied = copy_in(
        &mut f,
        read_ahead(input, stream),
        sync_every,
        &pb,
        &mut synced,
    )
    .await;
    pb.finish_and_clear();
    let outcome = match copied {
        Ok(size) => f
            .close_durable()
            .await
            .map(|unpacked| (size, unpacked))
            .map_err(anyhow::Error::from),
        Err(e) => {
            if let Err(e2) = f.abandon().await {
                tracing::warn!(error = %e2, "cannot release the write lease after a failed put");
            }
            Err(e)
        }
    };
    if !exists {
        let outcome = match outcome {
            Ok(done) => v
                .rename(&target, name, false)
                .await
                .map(|()| done)
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        return match outcome {
            Ok((size, unpacked)) => Ok(put_done(name, size, unpacked)),
            Err(e) => {
                if let Err(e2) = v.delete(&target).await {
                    tracing::warn!(name = %target, error = %e2, "cannot remove a failed put's partial file; the next put removes it");
                }
                Err(e.context(format!(
                    "put of {} failed; nothing was stored under that name",
                    shown(name)
                )))
            }
        };
    }
    match outcome {
        Ok((size, unpacked)) => Ok(put_done(name, size, unpacked)),
        // Nothing of the new data became durable: the file is unchanged.
        Err(e) if !synced => Err(e.context(format!(
            "put over {} failed; the file was left as it was",
            shown(name)
        ))),
        Err(e) => {
            eprintln!(
                "fsx: error: {}",
                crate::message(&e.context(format!(
                    "put over the existing file {} failed midway; it may hold part of the new data",
                    shown(name)
                )))
            );
            Ok(ExitCode::from(EXIT_PARTIAL))
        }
    }
}

/// Copies `input` into `f` (syncing every `sync_every` bytes if given)
/// and cuts the file to what was copied; returns its size. Sets `synced`
/// once any of the new data has become durable (an explicit sync, or the
/// writer's own when its buffer fills).
async fn copy_in(
    f: &mut fsx_engine::File,
    chunks: std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    sync_every: Option<u64>,
    pb: &ProgressBar,
    synced: &mut bool,
) -> anyhow::Result<u64> {
    let mut offset = 0u64;
    let mut next_sync = sync_every.unwrap_or(u64::MAX);
    // The reader thread is a chunk or two ahead: waiting for it here is
    // waiting for the disk, which the engine's own threads keep busy.
    for chunk in chunks {
        let mut chunk = chunk.context("read failed")?;
        while !chunk.is_empty() {
            let n = (next_sync - offset).min(chunk.len().min(COPY_CHUNK) as u64) as usize;
            let before = f.unsynced_bytes();
            f.write_bytes(offset, chunk.split_to(n)).await?;
            // Writes only grow the buffer; it shrinks (to empty) only when
            // the writer synced on its own.
            let after = f.unsynced_bytes();
            *synced |= after < before || after == 0;
            offset += n as u64;
            if offset == next_sync {
                f.sync().await?;
                *synced = true;
                next_sync = next_sync.saturating_add(sync_every.unwrap_or(u64::MAX));
            }
            pb.inc(n as u64);
        }
    }
    f.truncate(offset).await?;
    Ok(offset)
}

/// Bytes a put reads its source by ([`read_ahead`]): large, because a
/// direct read of one request keeps only as much of the disk busy as it
/// asks for (the page cache's readahead would otherwise do that).
const READ_CHUNK: usize = 8 << 20;

/// The most a put reads from a pipe at once ([`read_ahead`]).
const STREAM_CHUNK: usize = 1 << 20;

/// Chunks read ahead of a put ([`read_ahead`]).
const CHUNKS_AHEAD: usize = 2;

/// Reads `input` on a thread of its own, [`READ_CHUNK`] bytes at a time,
/// each into a fresh buffer that the engine keeps whole pages of without
/// copying them ([`fsx_engine::File::write_bytes`]), up to
/// [`CHUNKS_AHEAD`] chunks ahead: the disk reads the source while the
/// engine encodes and stores what came before. Ends after the last chunk
/// or the first error; stops when the receiver is dropped.
fn read_ahead(
    mut input: Box<dyn Read + Send>,
    stream: bool,
) -> std::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
    let spawned = std::thread::Builder::new()
        .name("fsx-put-read".into())
        .spawn(move || {
            // A stream's reads are copied out of one buffer: the engine
            // keeps what it is given until the next sync, and a slice of
            // a fresh chunk would keep all of the chunk for a few bytes.
            let mut stream_buf = vec![0u8; if stream { STREAM_CHUNK } else { 0 }];
            loop {
                let chunk = if stream {
                    match read_some(&mut *input, &mut stream_buf) {
                        Ok(0) => return,
                        Ok(n) => Ok(bytes::Bytes::copy_from_slice(&stream_buf[..n])),
                        Err(e) => Err(e),
                    }
                } else {
                    // Placed for direct I/O (see `open_source`).
                    let mut buf = vec![0u8; READ_CHUNK + fsx_store::IO_ALIGN];
                    let pad = buf
                        .as_ptr()
                        .align_offset(fsx_store::IO_ALIGN)
                        .min(fsx_store::IO_ALIGN);
                    match read_full(&mut *input, &mut buf[pad..pad + READ_CHUNK]) {
                        Ok(0) => return,
                        Ok(n) => Ok(bytes::Bytes::from(buf).slice(pad..pad + n)),
                        Err(e) => Err(e),
                    }
                };
                let failed = chunk.is_err();
                if tx.send(chunk).is_err() || failed {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        // The receiver then reports the failure as the first chunk.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let _ = tx.send(Err(e));
        return rx;
    }
    rx
}

/// A put's source file, read with direct I/O where the file system allows
/// it: the disk moves the bytes into the chunk buffers themselves, where
/// the page cache would cost a copy of every byte, and a put, which reads
/// its source once, leaves the page cache to what else is running.
fn open_source(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let plain = std::fs::File::open(path)?;
    if !plain.metadata()?.is_file() {
        return Ok(plain);
    }
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap_or(plain))
}

/// Prints one line of `fsx file ls` (local or remote).
pub(crate) fn print_ls_line(name: &str, size: u64, page_size: u32) {
    println!("{size:>14} {page_size:>6} {}", shown(name));
}

/// Prints `fsx file stat` (local or remote).
pub(crate) fn print_stat(name: &str, size: u64, page_size: u32, modified_ms: i64) {
    println!(
        "name:      {}\nsize:      {size}\npage size: {page_size}\nmodified:  {modified_ms} ms",
        shown(name)
    );
}

pub(crate) fn put_done(name: &str, size: u64, unpacked: Option<fsx_engine::Error>) -> ExitCode {
    if let Some(e) = unpacked {
        eprintln!(
            "fsx: warning: {} is stored durably, but packing its pages into extents failed ({e}); \
             they stay in the metadata's dirty buffer, where reads find them, until `fsx gc` packs them",
            shown(name)
        );
    }
    println!("{}: {size} bytes", shown(name));
    ExitCode::SUCCESS
}

/// `fsx file get`: to stdout, or atomically to a file. The data goes to a
/// temporary file next to the destination, is fsynced, and replaces the
/// destination by rename only when complete, so a failed get (a corrupt
/// extent, a full disk) leaves an existing destination as it was. A
/// destination inside the volume, or on its metadata or data store, is
/// refused: writing there would destroy the volume being read.
async fn get(v: &Volume, volume_dir: &Path, name: &str, local: &Path) -> anyhow::Result<()> {
    let f = v.open_file(name, OpenOptions::read()).await?;
    if local.as_os_str() == "-" {
        // Standard output's own descriptor: `Stdout` would split vectored
        // writes at newlines and copy the rest into its line buffer.
        use std::os::fd::AsFd;
        let stdout = std::io::stdout();
        let mut out = std::fs::File::from(stdout.as_fd().try_clone_to_owned()?);
        copy_out(&f, &mut out).await?;
        return Ok(());
    }
    check_destination(volume_dir, local)?;
    let (dest, mut out) = Destination::create(local)?;
    let copied = copy_out(&f, &mut out).await;
    dest.finish(out, copied)
}

/// A file being written beside its destination, renamed over it only
/// once complete and durable (`fsx file get`, local or remote).
pub(crate) struct Destination {
    local: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
}

impl Destination {
    /// Creates the temporary file beside `local`.
    pub(crate) fn create(local: &Path) -> anyhow::Result<(Self, std::fs::File)> {
        // A symlink keeps pointing where it did: its target is replaced.
        let dest = std::fs::canonicalize(local).or_else(|_| fsx_volume::absolute(local))?;
        let dir = dest
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let file_name = dest
            .file_name()
            .with_context(|| format!("{} names no file", local.display()))?;
        let tmp = dir.join(format!(
            ".{}.fsx-get-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))
            .with_context(|| format!("{} was left as it was", local.display()))?;
        // An existing destination keeps its permissions.
        if let Ok(m) = std::fs::metadata(&dest) {
            let _ = out.set_permissions(m.permissions());
        }
        Ok((
            Self {
                local: local.to_path_buf(),
                dest,
                dir,
                tmp,
            },
            out,
        ))
    }

    /// After the copy (`copied`): syncs and renames over the destination,
    /// or removes the temporary file and leaves the destination as it was.
    pub(crate) fn finish(
        self,
        out: std::fs::File,
        copied: anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let result = copied.and_then(|()| {
            out.sync_all()
                .with_context(|| format!("cannot flush {}", self.tmp.display()))?;
            std::fs::rename(&self.tmp, &self.dest)
                .with_context(|| format!("cannot replace {}", self.dest.display()))?;
            // The rename itself survives a crash once the directory is synced.
            if let Ok(d) = std::fs::File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result.with_context(|| format!("{} was left as it was", self.local.display()))
    }
}

async fn copy_out(f: &fsx_engine::File, out: &mut dyn Write) -> anyhow::Result<()> {
    let pb = bar(Some(f.size()), "get");
    let mut offset = 0;
    while offset < f.size() {
        // Pages shared with the extent cache, written with one vectored
        // call per chunk rather than copied into a buffer first.
        let pieces = f.read_bytes_at(offset, COPY_CHUNK).await?;
        let n: usize = pieces.iter().map(bytes::Bytes::len).sum();
        if n == 0 {
            break;
        }
        write_pieces(out, &pieces).context("write failed")?;
        offset += n as u64;
        pb.inc(n as u64);
    }
    out.flush().context("write failed")?;
    pb.finish_and_clear();
    Ok(())
}

/// Writes all of `pieces`, in order, with as few calls as the output takes.
fn write_pieces(out: &mut dyn Write, pieces: &[bytes::Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        pieces.iter().map(|p| std::io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Refuses a get destination inside the volume directory or on the
/// volume's own metadata database or data directory (compared as
/// canonical paths, so symlinks and `..` do not get around it).
fn check_destination(volume_dir: &Path, local: &Path) -> anyhow::Result<()> {
    let Some(dest) = canonical(local) else {
        return Ok(());
    };
    for p in volume_files(volume_dir)? {
        if dest == p || dest.starts_with(&p) {
            bail!(
                "refusing to write {} inside the volume's own files ({}): that would destroy the volume being read; choose a destination outside it",
                local.display(),
                p.display()
            );
        }
    }
    Ok(())
}

/// `p`'s canonical form; for a path that does not exist yet, its
/// nearest existing ancestor's canonical form plus the names below it.
pub(crate) fn canonical(p: &Path) -> Option<PathBuf> {
    let abs = fsx_volume::absolute(p).ok()?;
    let mut missing = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(mut c) = at.canonicalize() {
            c.extend(missing.iter().rev());
            return Some(c);
        }
        missing.push(at.file_name()?);
        at = at.parent()?;
    }
}

/// The volume directory, its SQLite metadata database (with its journal
/// files) and a local data directory, as [`canonical`] paths: what no
/// command may write into, nor copy the volume into.
pub(crate) fn volume_files(volume_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = fsx_volume::absolute(volume_dir)?;
    let mut protected = vec![dir.clone()];
    if let Ok(file) = VolumeFile::read(&dir) {
        if let Ok(Some(db)) = fsx_meta::open::sqlite_path(&file.meta, Some(&dir)) {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut name = db.clone().into_os_string();
                name.push(suffix);
                protected.push(PathBuf::from(name));
            }
        }
        let store = resolve(&dir, &file.store);
        let store = store.strip_prefix("file://").unwrap_or(&store);
        if !store.contains("://") {
            protected.push(PathBuf::from(store));
        }
    }
    Ok(protected.iter().filter_map(|p| canonical(p)).collect())
}

/// Fills `buf` unless the input ends first (pipes return short reads).
/// One read's worth: what the source has now (0 only at its end).
fn read_some(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What `fsx stats` prints, from a local volume or a server: one
/// printer for both, so both print alike.
pub(crate) struct StatsReport {
    pub volume_id: String,
    pub extent_size: u32,
    /// The data store's URL without credentials.
    pub store: String,
    /// Operation counters: tier, operation, calls, bytes.
    pub counters: Vec<(String, String, u64, u64)>,
    pub extents: fsx_meta::ExtentTotals,
    pub files: u64,
    pub file_bytes: u64,
    /// I/O settings by name.
    pub settings: Vec<(String, u64)>,
    pub branches: Vec<crate::branch_cmd::BranchRow>,
}

impl StatsReport {
    async fn local(path: &Path) -> anyhow::Result<Self> {
        let v = open_volume(path).await?;
        let stats = v.stats().await?;
        let branches = v.branch_usage().await?;
        Ok(Self {
            volume_id: v.config().volume_id.clone(),
            extent_size: v.config().extent_size,
            store: fsx_store::redact(&v.config().store_url),
            counters: stats
                .counters
                .iter()
                .map(|c| (c.tier.clone(), c.op.clone(), c.calls, c.bytes))
                .collect(),
            extents: stats.extents,
            files: stats.files.len() as u64,
            file_bytes: stats.files.iter().map(|f| f.size).sum(),
            settings: stats.io.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            branches: branches
                .iter()
                .map(crate::branch_cmd::BranchRow::local)
                .collect(),
        })
    }

    fn print(&self, json: bool) -> anyhow::Result<()> {
        let mut tiers: std::collections::BTreeMap<String, TierStats> = Default::default();
        for (tier, op, calls, bytes) in &self.counters {
            let t = tiers.entry(tier.clone()).or_insert(TierStats {
                puts: 0,
                gets: 0,
                deletes: 0,
                heads: 0,
                lists: 0,
                bytes_put: 0,
                bytes_got: 0,
            });
            match op.as_str() {
                "put" => {
                    t.puts += calls;
                    t.bytes_put += bytes;
                }
                "get" | "get_range" => {
                    t.gets += calls;
                    t.bytes_got += bytes;
                }
                "delete" => t.deletes += calls,
                "head" => t.heads += calls,
                "list" => t.lists += calls,
                _ => {}
            }
        }
        let e = &self.extents;
        if json {
            let out = serde_json::json!({
                "volume": self.volume_id,
                "extent_size": self.extent_size,
                "tiers": tiers,
                "extents": {
                    "count": e.count,
                    "bytes": e.bytes,
                    "referenced_count": e.referenced_count,
                    "referenced_bytes": e.referenced_bytes,
                },
                "files": { "count": self.files, "bytes": self.file_bytes },
                "branches": self.branches.iter().map(crate::branch_cmd::branch_json).collect::<Vec<_>>(),
                "settings": self.settings.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        println!("volume:      {}", self.volume_id);
        println!("extent size: {} KiB", self.extent_size / 1024);
        println!("data store:  {}", self.store);
        println!("files:       {} ({} bytes)", self.files, self.file_bytes);
        println!(
            "extents:     {} ({} bytes); {} referenced ({} bytes)",
            e.count, e.bytes, e.referenced_count, e.referenced_bytes
        );
        for (name, t) in &tiers {
            println!(
                "tier {name}: {} puts ({} bytes), {} gets ({} bytes), {} deletes, {} heads, {} lists",
                t.puts, t.bytes_put, t.gets, t.bytes_got, t.deletes, t.heads, t.lists
            );
        }
        for (name, value) in &self.settings {
            println!("setting {name} = {value}");
        }
        for b in &self.branches {
            println!(
                "branch {}: {} unique bytes ({} extents, {} bytes; {} bytes of unpacked pages)",
                b.name,
                b.extent_bytes + b.dirty_bytes,
                b.extents,
                b.extent_bytes,
                b.dirty_bytes
            );
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct TierStats {
    puts: u64,
    gets: u64,
    deletes: u64,
    heads: u64,
    lists: u64,
    bytes_put: u64,
    bytes_got: u64,
}

/// Runs a maintenance command.
pub fn run(cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(run_async(cmd))
}

async fn run_async(cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VolumeCommand::Stats { path, json } => {
            let report = match crate::remote_cmd::remote(&path)? {
                Some(r) => crate::remote_cmd::stats(&r).await?,
                None => StatsReport::local(&path).await?,
            };
            report.print(json)?;
        }
        VolumeCommand::Config { path, settings } => {
            let dir = fsx_volume::absolute(&path)?;
            check_meta_not_empty(&dir)?;
            let file = VolumeFile::read(&dir)?;
            let meta = file.open_meta(&dir, false).await?;
            // Every pair is checked before any is stored.
            let mut pairs = Vec::new();
            for kv in &settings {
                let (name, value) = kv
                    .split_once('=')
                    .with_context(|| format!("settings are NAME=VALUE, not {kv:?}"))?;
                let knob = fsx_engine::settings::IoKnob::named(name).with_context(|| {
                    let names: Vec<&str> = fsx_engine::settings::IO_KNOBS
                        .iter()
                        .map(|k| k.name)
                        .collect();
                    format!(
                        "{name:?} is not a setting; the settings are {}",
                        names.join(", ")
                    )
                })?;
                knob.parse(value)?;
                pairs.push((name, value));
            }
            for (name, value) in pairs {
                fsx_engine::settings::set_io_knob(meta.as_ref(), name, value).await?;
            }
            let defaults = VolumeOptions::default();
            for knob in fsx_engine::settings::IO_KNOBS {
                match meta.setting(knob.name).await? {
                    Some(v) => println!("{} = {v}", knob.name),
                    None => println!("{} = {} (default)", knob.name, knob.get(&defaults)),
                }
            }
        }
        VolumeCommand::Fsck { path, repair } => {
            let v = open_volume(&path).await?;
            if repair {
                let (packed, in_use) = v.pack_abandoned(&BarProgress(Default::default())).await?;
                println!("packed the dirty pages of {packed} files whose writer was gone");
                for f in &in_use {
                    println!(
                        "IN USE   {}: a live writer holds it; its pages stay unpacked",
                        shown(f)
                    );
                }
            }
            let report = v.fsck(&BarProgress(Default::default())).await?;
            v.flush_counters().await?;
            println!(
                "checked {} extents ({} bytes); {} branches, {} commits, {} layers",
                report.extents_checked,
                report.bytes_checked,
                report.branches,
                report.commits,
                report.layers
            );
            for k in &report.missing {
                println!("MISSING  {k}: referenced but absent from the store");
            }
            for (k, why) in &report.corrupt {
                println!("CORRUPT  {k}: {why}");
            }
            for (k, rec, actual) in &report.refcount_mismatch {
                println!("REFCOUNT {k}: recorded {rec}, referenced {actual} times");
            }
            for k in &report.dangling {
                println!("DANGLING {k}: referenced but has no extent record");
            }
            for fault in &report.graph_faults {
                println!("GRAPH    {fault}");
            }
            for (tier, key) in &report.bad_copies {
                println!(
                    "BADCOPY  {tier} {key}: missing or failing verification (repaired from a good copy if one exists)"
                );
            }
            if report.bad_copies_skipped > 0 {
                println!(
                    "BADCOPY  {} bad copies met while verifying, served from good copies (`fsx stats` counts them per tier)",
                    report.bad_copies_skipped
                );
            }
            for fault in &report.damaged_pages {
                println!("DAMAGED  dirty {fault}: the metadata database is damaged");
            }
            let unpacked: u64 = report.unpacked.iter().map(|u| u.pages).sum();
            if unpacked > 0 {
                println!(
                    "checked {} unpacked pages; waiting to be packed (`fsx gc` packs what a gone writer left):",
                    report.dirty_pages_checked
                );
                for u in &report.unpacked {
                    println!("UNPACKED {} {}: {} pages", u.owner, shown(&u.file), u.pages);
                }
            }
            for k in &report.orphans {
                println!(
                    "ORPHAN   {k}: in the store but unknown to the metadata (`fsx gc` removes it once older than --orphan-grace)"
                );
            }
            println!(
                "{} unreferenced extents awaiting GC, {} deletions in progress",
                report.awaiting_gc, report.deleting
            );
            if report.is_clean() {
                println!("clean");
                return Ok(ExitCode::SUCCESS);
            }
            println!("NOT CLEAN");
            return Ok(ExitCode::from(1));
        }
        VolumeCommand::Gc {
            path,
            grace,
            no_orphans,
            orphan_grace,
        } => {
            let v = open_volume(&path).await?;
            // A killed put's partial file is garbage, not data to pack.
            remove_dead_partials(&v).await;
            let options = GcOptions::default()
                .grace_ms(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX))
                .orphan_grace_ms(i64::try_from(orphan_grace.as_millis()).unwrap_or(i64::MAX))
                .orphans(!no_orphans);
            let r = v.gc(&options, &BarProgress(Default::default())).await?;
            v.flush_counters().await?;
            println!(
                "expired {} automatic commits; packed the dirty pages of {} commits; deleted {} \
                 unreferenced extents ({} bytes), {} orphans; finished {} interrupted deletions; \
                 forgot {} old changes of the change feed",
                r.commits_expired,
                r.commits_packed,
                r.deleted,
                r.bytes_freed,
                r.orphans_deleted,
                r.resumed,
                r.changes_pruned
            );
            if r.orphans_kept > 0 {
                println!(
                    "kept {} orphan objects younger than --orphan-grace (or of unknown age)",
                    r.orphans_kept
                );
            }
            if r.files_packed > 0 {
                println!(
                    "packed the dirty pages of {} files whose writer was gone",
                    r.files_packed
                );
            }
            if r.unlinked_reclaimed > 0 {
                println!(
                    "dropped {} unlinked files that a process which is gone still had open",
                    r.unlinked_reclaimed
                );
            }
            for f in &r.files_in_use {
                println!(
                    "IN USE   {}: a live writer holds it; its pages stay unpacked",
                    shown(f)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
