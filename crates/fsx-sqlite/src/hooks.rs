//! The one piece of raw FFI: reading URI parameters in `xOpen`.
//!
//! `sqlite-plugin` hands the VFS a file name as a string, but the
//! parameters of `file:app.db?vfs=fsx&volume=PATH` live after the name's
//! terminating NUL and are read with `sqlite3_uri_parameter` on SQLite's own
//! pointer. So after registration the VFS's `xOpen` is wrapped: the wrapper
//! reads `volume`, `mode`, `branch` and `commit` for a main database, leaves them in a
//! thread-local for [`crate::vfs`] (the open runs synchronously on the same
//! thread), and calls the original.

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int};
use std::sync::OnceLock;

use rusqlite::ffi;

/// URI parameters of the main database being opened on this thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenParams {
    /// `volume=PATH`.
    pub(crate) volume: Option<String>,
    /// `mode=…` (`rwc` allows creating a missing volume).
    pub(crate) mode: Option<String>,
    /// `branch=NAME`: the branch to open (default `main`).
    pub(crate) branch: Option<String>,
    /// `commit=ID`: a commit to open, read-only.
    pub(crate) commit: Option<String>,
}

thread_local! {
    static PARAMS: RefCell<Option<OpenParams>> = const { RefCell::new(None) };
}

/// Takes the parameters the wrapper left for this thread's open.
pub(crate) fn take_params() -> Option<OpenParams> {
    PARAMS.with(|p| p.borrow_mut().take())
}

type XOpen = unsafe extern "C" fn(
    *mut ffi::sqlite3_vfs,
    ffi::sqlite3_filename,
    *mut ffi::sqlite3_file,
    c_int,
    *mut c_int,
) -> c_int;

/// `sqlite3_uri_parameter` of the SQLite the VFS is registered in.
pub(crate) type UriParameter = unsafe extern "C" fn(*const c_char, *const c_char) -> *const c_char;

struct Hook {
    original: XOpen,
    uri_parameter: UriParameter,
}

static HOOK: OnceLock<Hook> = OnceLock::new();

/// Wraps the `xOpen` of the registered VFS `vfs`.
///
/// # Safety
///
/// `vfs` must point to a registered `sqlite3_vfs` that no connection uses
/// yet, and `uri_parameter` must belong to the SQLite it is registered in.
pub(crate) unsafe fn install(
    vfs: *mut ffi::sqlite3_vfs,
    uri_parameter: UriParameter,
) -> Result<(), &'static str> {
    // SAFETY: the caller guarantees `vfs` is a valid, registered VFS that
    // is not in use, so reading and replacing its `xOpen` races nothing.
    let vfs = unsafe { vfs.as_mut() }.ok_or("the VFS was not registered")?;
    let original = vfs.xOpen.ok_or("the VFS has no xOpen")?;
    HOOK.set(Hook {
        original,
        uri_parameter,
    })
    .map_err(|_| "the fsx VFS is already registered in another SQLite in this process")?;
    vfs.xOpen = Some(x_open);
    Ok(())
}

/// Reads URI parameter `name` of `file`.
///
/// # Safety
///
/// `file` must be a file name SQLite passed to `xOpen` for a main database.
unsafe fn param(f: UriParameter, file: *const c_char, name: &CStr) -> Option<String> {
    // SAFETY: per the caller, `file` is a name SQLite built with its URI
    // parameters, which is what `sqlite3_uri_parameter` requires; it returns
    // NULL or a NUL-terminated string inside that name.
    let v = unsafe { f(file, name.as_ptr()) };
    if v.is_null() {
        return None;
    }
    // SAFETY: non-null results are NUL-terminated and live as long as the
    // name, which outlives this call.
    Some(unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(hook) = HOOK.get() else {
        return ffi::SQLITE_INTERNAL;
    };
    if !name.is_null() && flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
        // SAFETY: a non-null main database name passed to xOpen is exactly
        // what `param` requires.
        let params = unsafe {
            OpenParams {
                volume: param(hook.uri_parameter, name, c"volume"),
                mode: param(hook.uri_parameter, name, c"mode"),
                branch: param(hook.uri_parameter, name, c"branch"),
                commit: param(hook.uri_parameter, name, c"commit"),
            }
        };
        PARAMS.with(|p| *p.borrow_mut() = Some(params));
    }
    // SAFETY: forwarding SQLite's own arguments to the xOpen it registered.
    let rc = unsafe { (hook.original)(vfs, name, file, flags, out_flags) };
    // Never leave parameters for an unrelated later open.
    PARAMS.with(|p| p.borrow_mut().take());
    rc
}
