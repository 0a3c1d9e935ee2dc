//! `fsx-volume`: the volume directory, shared by the `fsx` binary and the
//! SQLite VFS.
//!
//! A volume is a directory holding [`VOLUME_FILE`] (`fsx-volume.json`),
//! which names the metadata engine and the data store by URL:
//!
//! ```json
//! { "meta": "sqlite://meta.db", "store": "data" }
//! ```
//!
//! Relative URLs (`sqlite://meta.db`, `data`) are resolved against the
//! directory, so the embedded defaults live inside it and the directory can
//! be moved whole. `postgres://…`, `s3://…`, `redis://…` and absolute paths
//! are used as written.
//!
//! This crate keeps only the directory: which URLs a volume names and where
//! relative ones point. Turning a URL into an engine is
//! [`fsx_meta::open_meta`] (metadata; see [`fsx_meta::open`] for the URL
//! forms) and [`fsx_store::open_backend`] (data).
//!
//! Invariants: the volume file is written only after the volume was created
//! in its metadata and store, so a directory holding it is always a usable
//! volume; a refused creation removes a directory it created.
//!
//! Secrets: every URL in a message goes through [`fsx_store::redact`]. A
//! password need not be in the file at all: PostgreSQL takes it from
//! `?password_file=PATH` or `PGPASSWORD`, Redis from `?password_file=PATH`
//! or `REDIS_PASSWORD`, S3 from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//! (see [`fsx_store::url`]). The volume file is created with mode 0600
//! in case it holds one anyway.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fsx_engine::{Environment, Volume, VolumeOptions};
use fsx_meta::{MetaEngine, OpenOptions, VolumeConfig};
use serde::{Deserialize, Serialize};

/// The file in a volume directory that names its engines.
pub const VOLUME_FILE: &str = "fsx-volume.json";

pub use fsx_meta::open::PG_PASSWORD_ENV;

/// Extent size of volumes created with the defaults (2 MiB).
pub const DEFAULT_EXTENT_SIZE: u32 = 2 << 20;

/// What went wrong opening or creating a volume directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// The directory holds no volume file.
    #[error(
        "{dir} is not an fsx volume (cannot read {VOLUME_FILE}); create one with `fsx init {dir}`"
    )]
    NotAVolume {
        /// The directory.
        dir: String,
        /// Why the file could not be read.
        source: std::io::Error,
    },
    /// The directory already holds a volume.
    #[error("{0} is already an fsx volume ({VOLUME_FILE} exists)")]
    AlreadyExists(String),
    /// The volume file does not parse.
    #[error("{path} is damaged")]
    Damaged {
        /// The volume file.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A URL names an engine or store that cannot be used.
    #[error("{0}")]
    InvalidUrl(String),
    /// The metadata engine failed.
    #[error("cannot open the metadata engine {url:?}")]
    Meta {
        /// The engine's URL, redacted (see [`fsx_store::SafeUrl`]).
        url: String,
        /// Its error.
        source: fsx_meta::MetaError,
    },
    /// The data store failed to open.
    #[error("cannot open the data store {url:?}")]
    Store {
        /// The store's URL, redacted (see [`fsx_store::SafeUrl`]).
        url: String,
        /// Its error.
        source: fsx_store::StoreError,
    },
    /// The page store refused the volume.
    #[error("{what} {dir}")]
    Engine {
        /// "cannot open the volume in" or "cannot create a volume in".
        what: &'static str,
        /// The directory.
        dir: String,
        /// The engine's error.
        source: fsx_engine::Error,
    },
    /// A local file operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl VolumeError {
    /// Whether the error says the directory holds no volume (yet).
    pub fn is_not_a_volume(&self) -> bool {
        matches!(self, Self::NotAVolume { .. })
    }
}

/// `error: cause: cause…`, the whole chain on one line (for places that
/// show only `Display`, such as SQLite's error log).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Result alias of this crate.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// The contents of [`VOLUME_FILE`]. Its `Debug` shows the URLs redacted.
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VolumeFile {
    /// Metadata engine URL, possibly relative to the directory.
    pub meta: String,
    /// Data store URL or path, possibly relative to the directory.
    pub store: String,
}

impl std::fmt::Debug for VolumeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeFile")
            .field("meta", &fsx_store::SafeUrl::new(self.meta.as_str()))
            .field("store", &fsx_store::SafeUrl::new(self.store.as_str()))
            .finish()
    }
}

impl Default for VolumeFile {
    /// The embedded defaults: SQLite metadata and a data directory inside
    /// the volume.
    fn default() -> Self {
        Self {
            meta: "sqlite://meta.db".into(),
            store: "data".into(),
        }
    }
}

impl VolumeFile {
    /// A volume file naming `meta` and `store`, each defaulting to the
    /// embedded engine.
    pub fn new(meta: Option<String>, store: Option<String>) -> Self {
        let d = Self::default();
        Self {
            meta: meta.unwrap_or(d.meta),
            store: store.unwrap_or(d.store),
        }
    }

    /// Opens the metadata engine this file names, a relative `sqlite://`
    /// path inside the volume directory `dir` (see [`fsx_meta::open`]);
    /// `create` creates a missing SQLite database. PostgreSQL needs a
    /// tokio runtime.
    pub async fn open_meta(&self, dir: &Path, create: bool) -> Result<Arc<dyn MetaEngine>> {
        let options = OpenOptions::new().create(create).base_dir(dir);
        fsx_meta::open_meta(&self.meta, &options)
            .await
            .map_err(|source| VolumeError::Meta {
                url: fsx_store::redact(&resolve(dir, &self.meta)),
                source,
            })
    }

    /// Where the volume's local journals live, when its metadata is an
    /// embedded SQLite database: beside it (`meta.db-journals/`), on the
    /// same disk and synced the same way, so a journal is as durable as the
    /// metadata (see `fsx_engine::journal`). `None` for PostgreSQL, whose
    /// volumes other machines share.
    pub fn journal_dir(&self, dir: &Path) -> Option<Arc<dyn fsx_engine::journal::JournalDir>> {
        let db = fsx_meta::open::sqlite_path(&self.meta, Some(dir)).ok()??;
        let mut journals = db.into_os_string();
        journals.push("-journals");
        Some(Arc::new(fsx_engine::journal::LocalJournalDir::new(
            journals,
        )))
    }

    /// Reads the volume file of `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let vf = dir.join(VOLUME_FILE);
        let text = std::fs::read(&vf).map_err(|source| VolumeError::NotAVolume {
            dir: dir.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| VolumeError::Damaged {
            path: vf.display().to_string(),
            source,
        })
    }
}

/// Resolves a URL or path from the volume file against the volume dir, for
/// showing it and for opening a store. (Opening the metadata resolves its
/// `sqlite://` path itself: [`VolumeFile::open_meta`].)
pub fn resolve(dir: &Path, url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite://")
        && !rest.starts_with('/')
    {
        return format!("sqlite://{}", dir.join(rest).display());
    }
    if !url.contains("://") && !url.starts_with('/') {
        return dir.join(url).display().to_string();
    }
    url.to_string()
}

/// The absolute form of `path` (not following symlinks).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| VolumeError::Io {
        what: "cannot resolve",
        path: path.display().to_string(),
        source,
    })
}

/// Opens the data store of an existing volume. Only durable stores are
/// accepted (no memory or cache store: see `check_durable`); a local directory that is missing is
/// an error, never recreated (see
/// [`fsx_store::open_existing_backend`]).
pub fn open_store(url: &str) -> Result<Arc<dyn fsx_store::ExtentBackend>> {
    check_durable(url, fsx_store::open_existing_backend(url))
}

/// Opens (creating a local directory if needed) the data store of a new
/// volume. Only durable stores are accepted (no memory or cache store: see `check_durable`).
pub fn create_store(url: &str) -> Result<Arc<dyn fsx_store::ExtentBackend>> {
    check_durable(url, fsx_store::open_backend(url))
}

/// Refuses a store that may lose what it was given: memory (`memory://`)
/// and caches (`lru://`, `diskcache://`, anything whose capabilities say
/// `may_evict`). A volume's store holds the only durable copy of every
/// extent, so a cache there loses data as soon as it evicts; caches go in
/// front of a durable store, as the volume's cache tier.
fn check_durable(
    url: &str,
    opened: fsx_store::Result<Arc<dyn fsx_store::ExtentBackend>>,
) -> Result<Arc<dyn fsx_store::ExtentBackend>> {
    let shown = fsx_store::redact(url);
    let store = opened.map_err(|source| VolumeError::Store {
        url: shown.clone(),
        source,
    })?;
    let caps = store.capabilities();
    let memory = url.starts_with("memory://");
    if memory || caps.may_evict {
        let (what, cache) = if memory {
            (
                "keeps data only in memory",
                "lru://?capacity=BYTES".to_owned(),
            )
        } else {
            ("is a cache, which may drop what it holds", shown.clone())
        };
        return Err(VolumeError::InvalidUrl(format!(
            "{shown:?} {what}, so it cannot be a volume's store: a volume needs a durable store \
             (a directory, file:///dir, s3://, redis://). Put a cache in front of one instead: \
             `fsx init VOLUME --store DIR_OR_URL --cache {cache}` \
             (or `fsx tier config VOLUME --cache {cache}` for an existing volume)"
        )));
    }
    Ok(store)
}

/// 128 random bits from the standard library's per-process random hasher
/// keys, so volume ids need no extra dependency.
pub fn new_volume_id() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let a = std::collections::hash_map::RandomState::new().hash_one(nanos);
    let b = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("vol-{a:016x}{b:016x}")
}

/// `options` with the volume's journal directory, unless the caller chose.
fn with_journals(options: VolumeOptions, file: &VolumeFile, dir: &Path) -> VolumeOptions {
    if options.journals.is_some() {
        return options;
    }
    let journals = file.journal_dir(dir);
    options.journals(journals)
}

/// Opens the volume in directory `path`.
pub async fn open(
    path: &Path,
    env: Arc<dyn Environment>,
    options: VolumeOptions,
) -> Result<Volume> {
    let dir = absolute(path)?;
    let file = VolumeFile::read(&dir)?;
    let meta = file.open_meta(&dir, false).await?;
    let options = with_journals(options, &file, &dir);
    let store = open_store(&resolve(&dir, &file.store))?;
    // The tiers (hot, KV, cache) are configured in the volume's metadata.
    let options = if options.tiers.is_some() {
        options
    } else {
        let tiers =
            fsx_engine::tier::TierSet::from_settings(&meta, &|url| fsx_store::open_backend(url))
                .await
                .map_err(|source| VolumeError::Engine {
                    what: "cannot open the tiers of",
                    dir: dir.display().to_string(),
                    source,
                })?;
        options.tiers(tiers)
    };
    Volume::open(meta, store, env, options)
        .await
        .map_err(|source| VolumeError::Engine {
            what: "cannot open the volume in",
            dir: dir.display().to_string(),
            source,
        })
}

/// Creates a volume in directory `path` (creating the directory if needed)
/// described by `file`, and writes its volume file last. A refused
/// creation removes a directory it created.
pub async fn create(
    path: &Path,
    file: &VolumeFile,
    extent_size: u32,
    env: Arc<dyn Environment>,
    options: VolumeOptions,
) -> Result<Volume> {
    let dir = absolute(path)?;
    if dir.join(VOLUME_FILE).exists() {
        return Err(VolumeError::AlreadyExists(dir.display().to_string()));
    }
    let created_dir = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Io {
        what: "cannot create",
        path: dir.display().to_string(),
        source,
    })?;
    // The metadata may come to hold credentials too (a tier's URL), so an
    // embedded database is created owner-only; SQLite gives its -wal and
    // -shm files the database file's mode.
    // (A URL that does not parse creates nothing: opening it reports why.)
    let meta_file = fsx_meta::open::sqlite_path(&file.meta, Some(&dir))
        .ok()
        .flatten()
        .filter(|p| !p.exists());
    if let Some(p) = &meta_file {
        write_private(p, b"").map_err(|source| VolumeError::Io {
            what: "cannot create",
            path: p.display().to_string(),
            source,
        })?;
    }
    let result = create_in(&dir, file, extent_size, env, options).await;
    if result.is_err() {
        // A refused creation leaves nothing behind.
        if created_dir {
            let _ = std::fs::remove_dir_all(&dir);
        } else if let Some(p) = &meta_file {
            for suffix in ["", "-wal", "-shm"] {
                let mut name = p.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
    }
    result
}

async fn create_in(
    dir: &Path,
    file: &VolumeFile,
    extent_size: u32,
    env: Arc<dyn Environment>,
    options: VolumeOptions,
) -> Result<Volume> {
    let meta = file.open_meta(dir, true).await?;
    let options = with_journals(options, file, dir);
    let store = create_store(&resolve(dir, &file.store))?;
    let config = VolumeConfig::new(
        new_volume_id(),
        extent_size,
        // Informational only (`fsx info`); never a secret.
        fsx_store::redact(&file.store),
        env.now_ms(),
    );
    let engine_err = |source| VolumeError::Engine {
        what: "cannot create a volume in",
        dir: dir.display().to_string(),
        source,
    };
    let volume = Volume::create(meta, store, env, config, options)
        .await
        .map_err(engine_err)?;
    volume.flush_counters().await.map_err(engine_err)?;
    let vf = dir.join(VOLUME_FILE);
    let text = serde_json::to_vec_pretty(file).map_err(|source| VolumeError::Damaged {
        path: vf.display().to_string(),
        source,
    })?;
    write_private(&vf, &text).map_err(|source| VolumeError::Io {
        what: "cannot write",
        path: vf.display().to_string(),
        source,
    })?;
    Ok(volume)
}

/// Writes a new file readable by its owner only: it may hold credentials
/// (a password in a URL). The mode is set at creation, so the file is
/// never readable by others, not even briefly; `create_new` refuses to
/// replace a file another process created meanwhile.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn relative_urls_resolve_inside_the_volume() {
        let d = Path::new("/v");
        assert_eq!(resolve(d, "sqlite://meta.db"), "sqlite:///v/meta.db");
        assert_eq!(resolve(d, "sqlite:///abs/m.db"), "sqlite:///abs/m.db");
        assert_eq!(resolve(d, "data"), "/v/data");
        assert_eq!(resolve(d, "/abs/data"), "/abs/data");
        assert_eq!(resolve(d, "s3://b/p"), "s3://b/p");
    }

    #[test]
    fn debug_and_errors_hide_passwords() {
        let f = VolumeFile::new(
            Some("postgres://a:Hunter2Secret@h/db".into()),
            Some("redis://:Hunter2Secret@h/0".into()),
        );
        let shown = format!("{f:?}");
        assert!(
            !shown.contains("Hunter2Secret") && shown.contains("***"),
            "{shown}"
        );
        let err = open_store("redis://:Hunter2Secret@h/0?max_value=x")
            .map(|_| ())
            .unwrap_err();
        let chain = error_chain(&err);
        assert!(!chain.contains("Hunter2Secret"), "{chain}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_then_open_and_refuse_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let env: Arc<dyn Environment> = Arc::new(fsx_engine::SystemEnv::new());
        let missing = open(&dir, env.clone(), VolumeOptions::default()).await;
        assert!(missing.unwrap_err().is_not_a_volume());
        let v = create(
            &dir,
            &VolumeFile::default(),
            DEFAULT_EXTENT_SIZE,
            env.clone(),
            VolumeOptions::default(),
        )
        .await
        .unwrap();
        let again = open(&dir, env.clone(), VolumeOptions::default())
            .await
            .unwrap();
        assert_eq!(v.config().volume_id, again.config().volume_id);
        let twice = create(
            &dir,
            &VolumeFile::default(),
            DEFAULT_EXTENT_SIZE,
            env,
            VolumeOptions::default(),
        )
        .await;
        assert!(matches!(twice, Err(VolumeError::AlreadyExists(_))));
    }

    /// The metadata path is resolved as a path, not pasted into a URL, so
    /// a directory name that URL syntax would misread (`%41`, `#`, `?`,
    /// spaces) still holds the volume; and a volume file naming the
    /// database by absolute URL, as older versions wrote, opens it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn volume_files_name_their_database_by_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a b%41#c?d");
        let env: Arc<dyn Environment> = Arc::new(fsx_engine::SystemEnv::new());
        let v = create(
            &dir,
            &VolumeFile::default(),
            DEFAULT_EXTENT_SIZE,
            env.clone(),
            VolumeOptions::default(),
        )
        .await
        .unwrap();
        assert!(dir.join("meta.db").is_file());
        // Nothing was created beside the volume (a path cut at the `?`).
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let id = v.config().volume_id.clone();
        drop(v);
        let again = open(&dir, env.clone(), VolumeOptions::default())
            .await
            .unwrap();
        assert_eq!(again.config().volume_id, id);
        drop(again);

        let plain = tmp.path().join("plain");
        let v = create(
            &plain,
            &VolumeFile::default(),
            DEFAULT_EXTENT_SIZE,
            env.clone(),
            VolumeOptions::default(),
        )
        .await
        .unwrap();
        let id = v.config().volume_id.clone();
        drop(v);
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let file = format!(
            r#"{{"meta": "sqlite://{}", "store": "{}"}}"#,
            plain.join("meta.db").display(),
            plain.join("data").display()
        );
        std::fs::write(other.join(VOLUME_FILE), file).unwrap();
        let v = open(&other, env, VolumeOptions::default()).await.unwrap();
        assert_eq!(v.config().volume_id, id);
    }
}
