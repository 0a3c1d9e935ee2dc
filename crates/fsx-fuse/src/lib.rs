//! `fsx mount`: a volume's file tree as a local file system, through FUSE.
//!
//! This crate is an adapter: every call of the kernel is one call of
//! [`fsx_posix::Fs`], which holds the semantics (permissions, orphans,
//! locks, durability) and is tested without a kernel. What lives here is
//! what only a kernel mount has: inode numbers as the kernel sees them,
//! directory offsets, the kernel's caches and when to drop them, and the
//! session's lifetime.
//!
//! # Model
//!
//! - **Requests run concurrently.** The FUSE threads only decode a request
//!   and hand it to a task on the daemon's runtime, which replies when its
//!   `Fs` call finishes; a slow `fsync` or a cold read from the object
//!   store holds up nothing else.
//! - **Durability is the library's.** `fsync`, `fdatasync` and every
//!   `close(2)` (FUSE `flush`) of a written file make its writes durable in
//!   one metadata transaction before they return; there is no write-back
//!   cache in the kernel (writes reach the daemon as they are made) and no
//!   queue of uploads behind an acknowledged `fsync`.
//! - **Caches.** The kernel keeps attributes and names for
//!   [`MountConfig::attr_ttl`] / [`MountConfig::entry_ttl`]
//!   ([`DEFAULT_TTL`], 10 s, by default) and a file's pages across opens
//!   while the file is unchanged (`FOPEN_KEEP_CACHE`). The daemon follows
//!   the volume's change feed every 100 ms and drops from the kernel's
//!   caches what another writer changed (`follow`), so the timeouts only
//!   bound what the feed cannot say (a reset of the branch). An open that
//!   finds the file changed since this mount last saw it (another mount
//!   wrote it) drops the kernel's pages and attributes of it first:
//!   close-to-open consistency, whatever the feed's delay.
//! - **Inode numbers** are the tree's own, except that the kernel's root
//!   is always 1: the volume's root and inode 1 trade places (a swap, so
//!   every number still names one inode).
//! - **Locks.** POSIX byte-range locks (`fcntl`) are the volume's, shared
//!   by every mount on the same metadata engine and released when the
//!   mount's session dies; `flock` locks are kept by the kernel, per mount
//!   (fuser does not tell `flock` requests from whole-file `fcntl` ones).
//!
//! # Invariants
//!
//! - A reply is sent exactly once per request (each `Reply*` is moved into
//!   the task that answers it).
//! - The kernel's inode 1 is the volume's root; [`Inodes`] is an involution.

mod attr;
mod follow;
mod fs;
mod session;

pub use attr::Inodes;
pub use fs::FsxFuse;
pub use session::{DEFAULT_TTL, Mount, MountConfig, MountError, unmount};
