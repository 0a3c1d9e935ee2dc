//! File-system calls over an fsx volume: the tree of the metadata engine
//! ([`fsx_meta::MetaTree`]) and the page store's files ([`fsx_engine`]),
//! by inode number and open handle, each failing with a POSIX errno.
//!
//! This layer knows nothing of FUSE, so it is tested without a kernel
//! (against a real directory, in `tests/differential.rs`); `fsx mount`
//! puts a FUSE adapter over it.
//!
//! # Model
//!
//! - **One view.** An [`Fs`] serves one branch (read-write, unless made
//!   [`Fs::read_only`]) or one commit (read-only: every change is
//!   `EROFS`).
//! - **Handles share one file.** Every handle of an inode in this [`Fs`]
//!   goes through one page-store [`fsx_engine::File`], so what one handle
//!   writes the others read at once; it is opened for writing (taking the
//!   file's lease) when the first writable handle opens, and closed —
//!   synced, lease released — when the last handle closes.
//! - **Durability.** `fsync`, `flush` (every `close(2)`) and the last
//!   `release` of a written file make its writes durable (one metadata
//!   transaction), never a queued upload.
//! - **Unlinked while open.** Removing the last name of an inode a handle
//!   holds open leaves an orphan: its data stays readable and writable
//!   through the handles until the last one closes.
//! - **Permissions** are checked against the [`Caller`] each call names,
//!   inside the metadata transaction for changes of the tree; `open`
//!   checks read and write permission once, as the kernel does.
//!
//! # Deviations from POSIX
//!
//! - `atime` changes only when set explicitly (as `noatime` mounts do).
//! - A regular file's `mtime` and `ctime` move with its writes when they
//!   become durable, at millisecond resolution.
//! - `fallocate` reserves no space (an object store has none to reserve):
//!   without `KEEP_SIZE` it only sets the size.
//! - POSIX ACLs (`system.posix_acl_*`) are stored and returned, not
//!   enforced, and do not change the mode bits.

mod error;
mod fs;

pub use error::{FsError, Result, errno};
pub use fs::{Fh, Fs, LockRange, OpenFlags, SetAttrs, StatFs, Whence};
pub use fsx_meta::contract::{Attr, DirEntry, Ino, LockKind, NodeKind, SetTime};
pub use fsx_meta::perm::Caller;
pub use fsx_meta::rename::RenameFlags;
