//! `fsx-engine`: the page store at the heart of fsx.
//!
//! Databases write pages; the engine keeps them as files of fixed-size
//! pages. A write lands in the writer's buffer, `sync` makes it durable in
//! one small metadata transaction (the dirty-page buffer), and the packer
//! folds dirty pages into immutable, content-addressed extents in the data
//! store, switching the page map and reference counts in one transaction.
//! Identical extents are stored once; an extent is deleted only by GC, only
//! when nothing references it, and only after a grace period.
//!
//! | module | what |
//! |---|---|
//! | [`volume`] | open/create a volume over a metadata engine and a store; file namespace |
//! | [`file`](mod@file) | reads, buffered writes, sync, truncate, packing |
//! | [`branch`] | branches, commits, time travel, diff and merge |
//! | [`gc`] | garbage collection and fsck |
//! | [`settings`] | the I/O knobs stored in a volume: extents in flight, readahead, cache size |
//! | [`sparse`] | `SEEK_DATA` / `SEEK_HOLE` over a file's pages |
//! | [`journal`] | local journals: a database's journal or WAL in a local file while it is open |
//! | [`tier`] | tiered storage: cache → KV → hot → cold, replication queue, policy |
//! | [`env`](mod@env) | injected clock, identity and liveness |
//! | [`failpoint`] | named failpoints that tests fail or crash through the environment |
//! | [`error`] | [`Error`], classified by caller action |
//!
//! The engine is runtime-free: it awaits the metadata and store futures but
//! spawns nothing and sleeps nowhere, so any executor (or a Workers event
//! loop) can drive it. CPU-heavy work (encoding and hashing extents) goes
//! through [`Environment::compute`], which a native process runs on worker
//! threads and a Workers build inline.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod branch;
mod cache;
pub mod env;
pub mod error;
pub mod failpoint;
pub mod file;
pub mod gc;
pub mod journal;
mod lease;
pub mod progress;
pub mod settings;
pub mod sparse;
pub mod tier;
pub mod volume;

pub use branch::{FileChange, MergeOutcome, MergeStrategy};
pub use env::{Environment, ManualEnv, SystemEnv};
pub use error::{Error, ErrorKind, Result};
pub use failpoint::{FailAction, Failpoint, FaultPlan, SeededFaults};
pub use file::File;
pub use gc::{FsckReport, GcOptions, GcReport};
pub use progress::{NoProgress, Progress};
/// A shared metadata engine, as volumes hold it.
pub type MetaArc = std::sync::Arc<dyn fsx_meta::MetaEngine>;

pub use volume::{DATA_TIER, OpenOptions, PAGE_COUNTER_TIER, Volume, VolumeOptions, VolumeStats};
