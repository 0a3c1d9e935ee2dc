//! `fsx-sqlite`: real SQLite on the fsx page store.
//!
//! The VFS `fsx` stores SQLite's database, rollback journal and WAL as fsx
//! files of a volume; temp files stay in memory. Open a database with a URI:
//!
//! ```text
//! file:app.db?vfs=fsx&volume=/path/to/volume
//! file:app.db?vfs=fsx&volume=/path/to/volume&mode=rwc   (creates a missing volume)
//! file:app.db?vfs=fsx&volume=/path/to/volume&branch=dev  (a branch; default main)
//! file:app.db?vfs=fsx&volume=/path/to/volume&commit=42   (a commit, read-only)
//! ```
//!
//! Parameters are read strictly: one fsx does not know and SQLite does not
//! document (`brnach=dev`), one given twice, or an empty `volume=`,
//! `branch=` or `commit=` fails the open with `SQLITE_CANTOPEN`; the reason
//! is in [`last_error`], the `tracing` log and SQLite's error log (`.log
//! stderr` in the `sqlite3` shell).
//!
//! Three ways in:
//!
//! - Rust: call [`register`] once, then open the URI with rusqlite (URIs
//!   enabled, which rusqlite's default flags do).
//! - Any SQLite: load the extension `libfsx_sqlite.so` (this crate's
//!   cdylib; entry point `sqlite3_fsxsqlite_init`), e.g. `.load
//!   ./libfsx_sqlite` in the `sqlite3` shell or `load_extension` in Python.
//! - The command line: `fsx sql PATH DB [SQL]`.
//!
//! The VFS owns a tokio runtime (two workers) that carries the engine's I/O;
//! SQLite's threads block on the engine's futures. See [`vfs`] for how files
//! are mapped, shared between connections and kept durable; `locks.rs` and
//! `shm.rs` hold the in-process lock levels and WAL index.
//!
//! | module | what |
//! |---|---|
//! | [`vfs`] | the VFS methods over `fsx_engine::File` |
//! | `locks` | SQLite lock levels between connections of a process |
//! | `shm` | the in-memory WAL index |
//! | `params` | the URI parameters, checked: an unknown one fails the open |
//! | `glue` | the C callbacks SQLite calls (`sqlite3_vfs`, `sqlite3_io_methods`) |
//! | `abi` | SQLite's flags, and its functions from the linked SQLite or the host |
//!
//! The crate builds with nothing but cargo: it uses the pre-generated
//! bindings of `libsqlite3-sys` (through rusqlite), never bindgen.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod abi;
mod glue;
mod locks;
mod params;
mod shm;
pub mod vfs;

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Mutex, PoisonError};

pub use abi::ApiRoutines;
pub use vfs::{FSX_PAGE_SIZE, LEASE_TTL_MS, VfsStats, last_error, stats};

/// The VFS name to use in URIs (`vfs=fsx`).
pub const VFS_NAME: &str = "fsx";

/// Why the VFS could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The VFS's runtime could not start.
    #[error("cannot start the fsx VFS runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// SQLite refused the registration (a SQLite result code).
    #[error("SQLite refused to register the fsx VFS (code {0})")]
    Register(i32),
    /// The SQLite loading the extension lacks what the VFS needs.
    #[error("cannot install the fsx VFS: {0}")]
    Host(String),
}

/// Registration happens once per process (per SQLite library).
static REGISTERED: Mutex<bool> = Mutex::new(false);

/// Registers the VFS `fsx` with the SQLite linked into this program (the
/// one rusqlite uses). Idempotent.
pub fn register() -> Result<(), Error> {
    let mut done = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
    if *done {
        return Ok(());
    }
    glue::register(abi::Api::linked(), c"fsx", vfs::FsxVfs::new()?).map_err(Error::Register)?;
    *done = true;
    Ok(())
}

/// Registers the VFS with the SQLite that is loading this library as an
/// extension, calling that SQLite's functions (never the one linked in).
///
/// # Safety
///
/// `api` must be the `sqlite3_api_routines` SQLite passed to the
/// extension's entry point.
pub unsafe fn register_dynamic(api: *const ApiRoutines) -> Result<(), Error> {
    let mut done = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
    if *done {
        return Ok(());
    }
    // SAFETY: per the caller, `api` is SQLite's routine table.
    let api = unsafe { abi::Api::host(api) }.map_err(Error::Host)?;
    glue::register(api, c"fsx", vfs::FsxVfs::new()?).map_err(Error::Register)?;
    *done = true;
    Ok(())
}

/// The extension's entry point: SQLite derives its name from
/// `libfsx_sqlite.so`. Registers the VFS `fsx` and keeps the library loaded.
///
/// # Safety
///
/// Only SQLite's extension loader may call this, with its own arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_fsxsqlite_init(
    _db: *mut c_void,
    _err: *mut *mut c_char,
    api: *const ApiRoutines,
) -> c_int {
    // SAFETY: SQLite passes its routine table, as `register_dynamic` needs.
    match unsafe { register_dynamic(api) } {
        // The VFS outlives any connection: never unload the library.
        Ok(()) => rusqlite::ffi::SQLITE_OK_LOAD_PERMANENTLY,
        Err(Error::Register(code)) => code,
        Err(e) => {
            tracing::error!("{e}");
            rusqlite::ffi::SQLITE_ERROR
        }
    }
}
