//! A real volume for tests: SQLite metadata and a local-directory store in
//! a temporary directory, a manual clock, and a metered store so tests can
//! count what reached the store.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fsx_engine::{ManualEnv, Volume, VolumeOptions};
use fsx_meta::VolumeConfig;
use fsx_meta::sqlite::SqliteMeta;
use fsx_store::ExtentBackend;
use fsx_store::local::LocalBackend;
use fsx_store::wrappers::Metered;

pub struct TestVolume {
    pub dir: tempfile::TempDir,
    pub env: Arc<ManualEnv>,
    pub extent_size: u32,
}

pub struct Opened {
    pub volume: Volume,
    pub meter: Arc<Metered>,
    pub local: LocalBackend,
    pub meta: Arc<SqliteMeta>,
}

impl TestVolume {
    pub async fn new(extent_size: u32) -> (Self, Opened) {
        let t = Self {
            dir: tempfile::tempdir().unwrap(),
            env: Arc::new(ManualEnv::new(1_000_000)),
            extent_size,
        };
        let (meta, meter, local) = t.parts(true);
        let config = VolumeConfig::new("test-volume", extent_size, "file://data", 1);
        let volume = Volume::create(
            meta.clone(),
            meter.clone(),
            t.env.clone(),
            config,
            VolumeOptions::default(),
        )
        .await
        .unwrap();
        (
            t,
            Opened {
                volume,
                meter,
                local,
                meta,
            },
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn meta_path(&self) -> PathBuf {
        self.dir.path().join("meta.db")
    }

    fn parts(&self, create: bool) -> (Arc<SqliteMeta>, Arc<Metered>, LocalBackend) {
        let meta = Arc::new(SqliteMeta::open(self.meta_path(), create).unwrap());
        let local = LocalBackend::open(self.dir.path().join("data")).unwrap();
        let meter = Arc::new(Metered::new(
            Arc::new(local.clone()) as Arc<dyn ExtentBackend>
        ));
        (meta, meter, local)
    }

    /// A fresh process's view of the same volume: new connections, new caches.
    pub async fn reopen(&self) -> Opened {
        self.reopen_with(VolumeOptions::default()).await
    }

    pub async fn reopen_with(&self, options: VolumeOptions) -> Opened {
        let (meta, meter, local) = self.parts(false);
        let volume = Volume::open(meta.clone(), meter.clone(), self.env.clone(), options)
            .await
            .unwrap();
        Opened {
            volume,
            meter,
            local,
            meta,
        }
    }
}

/// Deterministic bytes for a test write.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Extent objects currently in the store directory.
pub async fn extent_objects(store: &dyn ExtentBackend) -> Vec<String> {
    use fsx_store::ExtentBackendExt;
    store
        .list_all("extent/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.as_str().to_string())
        .collect()
}

/// Which metadata engine a [`Harness`] volume uses.
pub enum Engine {
    Sqlite,
    /// A fresh schema URL on a real PostgreSQL server.
    Postgres(String),
}

/// A volume over either metadata engine and a local-directory store with
/// 256 KiB extents, reopened from scratch as often as a test likes.
pub struct Harness {
    pub engine: Engine,
    pub dir: tempfile::TempDir,
    pub env: Arc<ManualEnv>,
}

impl Harness {
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            dir: tempfile::tempdir().unwrap(),
            env: Arc::new(ManualEnv::new(1_000_000)),
        }
    }

    pub async fn meta(&self, create: bool) -> fsx_engine::MetaArc {
        match &self.engine {
            Engine::Sqlite => {
                Arc::new(SqliteMeta::open(self.dir.path().join("meta.db"), create).unwrap())
            }
            Engine::Postgres(url) => {
                Arc::new(fsx_meta::postgres::PgMeta::connect(url).await.unwrap())
            }
        }
    }

    pub fn store(&self) -> Arc<LocalBackend> {
        Arc::new(LocalBackend::open(self.dir.path().join("data")).unwrap())
    }

    /// Creates the volume.
    pub async fn create(&self) -> Volume {
        let config = VolumeConfig::new("harness", 256 * 1024, "data", 1);
        Volume::create(
            self.meta(true).await,
            self.store(),
            self.env.clone(),
            config,
            VolumeOptions::default(),
        )
        .await
        .unwrap()
    }

    /// Opens the volume afresh (no cached extents).
    pub async fn reopen(&self) -> Volume {
        Volume::open(
            self.meta(false).await,
            self.store(),
            self.env.clone(),
            VolumeOptions::default(),
        )
        .await
        .unwrap()
    }
}

/// One step of a crash test's deterministic workload.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    Write { offset: u64, len: usize },
    Truncate(u64),
}

/// The crash tests' workload: step `i` writes `pattern(i, …)` somewhere in
/// the first `span` bytes, or every `truncate_every`th step truncates, so
/// the state after any acknowledged step can be rebuilt from its number.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub span: u64,
    pub truncate_every: u64,
    pub max_len: u64,
}

impl Workload {
    pub fn step(&self, i: u64) -> Step {
        if i % self.truncate_every == self.truncate_every - 1 {
            Step::Truncate((i * 31_337) % self.span)
        } else {
            Step::Write {
                offset: (i * 104_729) % self.span,
                len: 1 + ((i * 7_919) % self.max_len) as usize,
            }
        }
    }

    /// Applies step `i` to the model file `m`.
    pub fn apply(&self, m: &mut Vec<u8>, i: u64) {
        match self.step(i) {
            Step::Write { offset, len } => {
                let end = offset as usize + len;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[offset as usize..end].copy_from_slice(&pattern(i, len));
            }
            Step::Truncate(size) => m.resize(size as usize, 0),
        }
    }

    /// The file after steps `0..=last` (empty for `None`).
    pub fn model_after(&self, last: Option<u64>) -> Vec<u8> {
        let mut m = Vec::new();
        if let Some(last) = last {
            for i in 0..=last {
                self.apply(&mut m, i);
            }
        }
        m
    }

    /// Applies step `i` to a real file.
    pub async fn apply_to(&self, f: &mut fsx_engine::File, i: u64) -> fsx_engine::Result<()> {
        match self.step(i) {
            Step::Write { offset, len } => f.write_at(offset, &pattern(i, len)).await,
            Step::Truncate(size) => f.truncate(size).await,
        }
    }
}

/// A new volume in `dir` as a crash test's processes share it: SQLite
/// metadata in `meta.db`, a local store in `data`, the system environment
/// (so a killed writer's lease is broken by the next process), holding one
/// empty file `f` of 4 KiB pages.
pub async fn create_crash_volume(dir: &Path, name: &str, extent_size: u32) {
    let meta = Arc::new(SqliteMeta::open(dir.join("meta.db"), true).unwrap());
    let store = Arc::new(LocalBackend::open(dir.join("data")).unwrap());
    let v = Volume::create(
        meta,
        store,
        Arc::new(fsx_engine::SystemEnv::new()),
        VolumeConfig::new(name, extent_size, "data", 1),
        VolumeOptions::default(),
    )
    .await
    .unwrap();
    v.open_file("f", fsx_engine::OpenOptions::create(4096))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
}

/// Runs GC with no grace period (nothing else runs at a crash test's end).
pub async fn gc_now(v: &Volume) -> fsx_engine::GcReport {
    v.gc(
        &fsx_engine::GcOptions::default().grace_ms(0),
        &fsx_engine::NoProgress,
    )
    .await
    .unwrap()
}

/// The whole content of file `name`.
pub async fn read_all(v: &Volume, name: &str) -> Vec<u8> {
    let f = v
        .open_file(name, fsx_engine::OpenOptions::read())
        .await
        .unwrap();
    f.read_at(0, f.size() as usize).await.unwrap()
}
