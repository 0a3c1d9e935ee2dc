//! The `sqlite3_vfs` and `sqlite3_io_methods` SQLite calls, over [`FsxVfs`].
//!
//! Each C callback decodes its arguments, calls one method of the VFS and
//! turns its `Result` into a SQLite code; nothing here decides anything
//! about files. The registered `sqlite3_vfs` carries an [`App`] in
//! `pAppData`: the VFS, its I/O method table, the SQLite functions to call
//! ([`Api`], the linked SQLite's or the host's) and the SQLite's default VFS,
//! to which randomness, sleep, time and `dlopen` are delegated. Both are
//! leaked on success: a registered VFS lives as long as the process.
//!
//! Every `sqlite3_file` SQLite allocates for the VFS is a [`FileWrapper`]
//! (`szOsFile` is its size): SQLite's header first, then the [`Handle`],
//! written in `xOpen` and moved out again in `xClose`.
//!
//! For a main database `xOpen` reads the URI parameters with
//! `sqlite3_uri_key`/`sqlite3_uri_parameter` (they live behind the name's
//! terminating NUL, where only SQLite's functions may look) and checks them
//! ([`OpenParams::parse`]) before the VFS sees the open.

use std::borrow::Cow;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::{null, null_mut};

use rusqlite::ffi as sys;
use rusqlite::ffi::{sqlite3_file, sqlite3_int64, sqlite3_io_methods, sqlite3_vfs};

use crate::abi::{Api, LockLevel, OpenKind, OpenOpts, ShmLockMode, VfsResult};
use crate::params::OpenParams;
use crate::vfs::{FsxVfs, Handle, fail};

/// Longest path SQLite may hand the VFS (`mxPathname`).
const MAX_PATH: c_int = 512;

/// What the registered VFS points to (`pAppData`).
struct App {
    vfs: FsxVfs,
    io: sqlite3_io_methods,
    api: Api,
    /// The default VFS of the same SQLite when fsx registered.
    base: *mut sqlite3_vfs,
}

/// SQLite's `sqlite3_file` "subclass": its header must come first.
#[repr(C)]
struct FileWrapper {
    base: sqlite3_file,
    app: *const App,
    handle: Handle,
}

// SQLite calls the VFS and its files from any thread, and allocates each
// `sqlite3_file` with its own malloc, which aligns to 8 bytes.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    const fn sent<T: Send>() {}
    shared::<FsxVfs>();
    sent::<Handle>();
    assert!(std::mem::align_of::<FileWrapper>() <= 8);
};

/// Registers `vfs` as `name` through `api` (not as the default VFS).
pub(crate) fn register(api: Api, name: &CStr, vfs: FsxVfs) -> VfsResult<()> {
    crate::abi::set_log(&api);
    // SAFETY: vfs_find(NULL) returns the default VFS or NULL.
    let base = unsafe { (api.vfs_find)(null()) };
    let app = Box::into_raw(Box::new(App {
        vfs,
        io: io_methods(),
        api,
        base,
    }));
    let name = CString::from(name).into_raw();
    let sz_os_file =
        c_int::try_from(std::mem::size_of::<FileWrapper>()).map_err(|_| sys::SQLITE_INTERNAL)?;
    let p_vfs = Box::into_raw(Box::new(sqlite3_vfs {
        iVersion: 3,
        szOsFile: sz_os_file,
        mxPathname: MAX_PATH,
        pNext: null_mut(),
        zName: name,
        pAppData: app.cast(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dlopen),
        xDlError: Some(x_dlerror),
        xDlSym: Some(x_dlsym),
        xDlClose: Some(x_dlclose),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: None,
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }));
    // SAFETY: `p_vfs` is a complete sqlite3_vfs whose memory is never
    // freed while registered.
    let rc = unsafe { (api.vfs_register)(p_vfs, 0) };
    if rc != sys::SQLITE_OK {
        // SAFETY: SQLite refused it, so nothing else points to these.
        unsafe {
            drop(Box::from_raw(p_vfs));
            drop(Box::from_raw(app));
            drop(CString::from_raw(name));
        }
        return Err(rc);
    }
    Ok(())
}

fn io_methods() -> sqlite3_io_methods {
    sqlite3_io_methods {
        iVersion: 3,
        xClose: Some(x_close),
        xRead: Some(x_read),
        xWrite: Some(x_write),
        xTruncate: Some(x_truncate),
        xSync: Some(x_sync),
        xFileSize: Some(x_file_size),
        xLock: Some(x_lock),
        xUnlock: Some(x_unlock),
        xCheckReservedLock: Some(x_check_reserved_lock),
        xFileControl: Some(x_file_control),
        xSectorSize: Some(x_sector_size),
        xDeviceCharacteristics: Some(x_device_characteristics),
        xShmMap: Some(x_shm_map),
        xShmLock: Some(x_shm_lock),
        xShmBarrier: Some(x_shm_barrier),
        xShmUnmap: Some(x_shm_unmap),
        xFetch: Some(x_fetch),
        xUnfetch: Some(x_unfetch),
    }
}

/// The result code of `r`.
fn code(r: VfsResult<()>) -> c_int {
    r.map_or_else(|e| e, |()| sys::SQLITE_OK)
}

/// # Safety
///
/// `p_vfs` must be null or a VFS [`register`] registered.
unsafe fn app<'a>(p_vfs: *mut sqlite3_vfs) -> VfsResult<&'a App> {
    // SAFETY: per the caller, `pAppData` of a registered fsx VFS is a leaked
    // `App`, never freed.
    unsafe {
        p_vfs
            .as_ref()
            .and_then(|v| v.pAppData.cast::<App>().as_ref())
            .ok_or(sys::SQLITE_INTERNAL)
    }
}

/// The wrapper and VFS of an open file.
///
/// # Safety
///
/// `p_file` must be null or a file [`x_open`] opened and not yet closed,
/// not otherwise borrowed (SQLite calls one method of a file at a time).
unsafe fn file<'a>(p_file: *mut sqlite3_file) -> VfsResult<(&'a mut Handle, &'a FsxVfs)> {
    // SAFETY: per the caller, `p_file` is an initialised FileWrapper whose
    // `app` is a leaked App.
    unsafe {
        let w = p_file
            .cast::<FileWrapper>()
            .as_mut()
            .ok_or(sys::SQLITE_INTERNAL)?;
        let app = w.app.as_ref().ok_or(sys::SQLITE_INTERNAL)?;
        Ok((&mut w.handle, &app.vfs))
    }
}

/// `p` as text (lossily); `None` for NULL.
///
/// # Safety
///
/// `p` must be null or a NUL-terminated string that outlives `'a`.
unsafe fn text<'a>(p: *const c_char) -> Option<Cow<'a, str>> {
    // SAFETY: per the caller.
    unsafe { p.as_ref().map(|p| CStr::from_ptr(p).to_string_lossy()) }
}

/// The URI parameters of main database `name`, in order.
///
/// # Safety
///
/// `name` must be a main database name SQLite passed to `xOpen` (so
/// `sqlite3_uri_key` and `sqlite3_uri_parameter` may read it).
unsafe fn uri_pairs(api: &Api, name: *const c_char) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for i in 0.. {
        // SAFETY: per the caller; uri_key returns NULL past the last key,
        // and keys and values are NUL-terminated strings inside `name`.
        unsafe {
            let key = (api.uri_key)(name, i);
            let Some(k) = text(key) else { break };
            let v = text((api.uri_parameter)(name, key)).unwrap_or_default();
            pairs.push((k.into_owned(), v.into_owned()));
        }
    }
    pairs
}

unsafe extern "C" fn x_open(
    p_vfs: *mut sqlite3_vfs,
    z_name: sys::sqlite3_filename,
    p_file: *mut sqlite3_file,
    flags: c_int,
    p_out_flags: *mut c_int,
) -> c_int {
    // SQLite requires pMethods set, to NULL at least, even on failure.
    // SAFETY: SQLite passes szOsFile writable bytes.
    if let Some(f) = unsafe { p_file.as_mut() } {
        f.pMethods = null();
    }
    // SAFETY: SQLite calls xOpen of a registered VFS.
    let app = match unsafe { app(p_vfs) } {
        Ok(a) => a,
        Err(e) => return e,
    };
    let opts = OpenOpts::new(flags);
    // SAFETY: z_name is NULL or a NUL-terminated name valid during xOpen.
    let name = unsafe { text(z_name) };
    let params = if !z_name.is_null() && opts.kind() == OpenKind::MainDb {
        // SAFETY: a non-null main database name passed to xOpen.
        let pairs = unsafe { uri_pairs(&app.api, z_name) };
        let shown = name.as_deref().unwrap_or_default();
        match OpenParams::parse(shown, &pairs) {
            Ok(p) => Some(p),
            Err(message) => return fail(sys::SQLITE_CANTOPEN, message),
        }
    } else {
        None
    };
    let handle = match app.vfs.open(name.as_deref(), opts, params) {
        Ok(h) => h,
        Err(e) => return e,
    };
    // SAFETY: NULL or SQLite's out-parameter.
    if let Some(out) = unsafe { p_out_flags.as_mut() } {
        let mut f = flags;
        if handle.readonly() {
            f = (f & !sys::SQLITE_OPEN_READWRITE) | sys::SQLITE_OPEN_READONLY;
        }
        if handle.in_memory() {
            f |= sys::SQLITE_OPEN_MEMORY;
        }
        *out = f;
    }
    // SAFETY: SQLite owns szOsFile = size_of::<FileWrapper>() bytes at
    // p_file, uninitialised; writing a whole wrapper initialises them.
    unsafe {
        std::ptr::write(
            p_file.cast::<FileWrapper>(),
            FileWrapper {
                base: sqlite3_file { pMethods: &app.io },
                app,
                handle,
            },
        );
    }
    sys::SQLITE_OK
}

unsafe extern "C" fn x_delete(
    p_vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    _sync: c_int,
) -> c_int {
    // SAFETY: SQLite passes its registered VFS and a file name.
    let (app, name) = unsafe { (app(p_vfs), text(z_name)) };
    match (app, name) {
        (Ok(a), Some(n)) => code(a.vfs.delete(&n)),
        _ => sys::SQLITE_INTERNAL,
    }
}

unsafe extern "C" fn x_access(
    p_vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    _flags: c_int,
    p_res: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes its registered VFS, a name and an out-pointer.
    let (app, name, out) = unsafe { (app(p_vfs), text(z_name), p_res.as_mut()) };
    let (Ok(app), Some(name), Some(out)) = (app, name, out) else {
        return sys::SQLITE_INTERNAL;
    };
    match app.vfs.access(&name) {
        Ok(found) => {
            *out = c_int::from(found);
            sys::SQLITE_OK
        }
        Err(e) => e,
    }
}

unsafe extern "C" fn x_full_pathname(
    p_vfs: *mut sqlite3_vfs,
    z_name: *const c_char,
    n_out: c_int,
    z_out: *mut c_char,
) -> c_int {
    // SAFETY: SQLite passes its registered VFS and a name.
    let (app, name) = unsafe { (app(p_vfs), text(z_name)) };
    let (Ok(app), Some(name)) = (app, name) else {
        return sys::SQLITE_INTERNAL;
    };
    let full = match app.vfs.canonical_path(name) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let room = usize::try_from(n_out).unwrap_or(0);
    if full.len() >= room {
        return fail(
            sys::SQLITE_CANTOPEN,
            format!("fsx: the name {full:?} is longer than SQLite's {MAX_PATH}-byte limit"),
        );
    }
    // SAFETY: SQLite provides n_out writable bytes at z_out, and the name
    // and its NUL fit.
    unsafe {
        std::ptr::copy_nonoverlapping(full.as_ptr(), z_out.cast::<u8>(), full.len());
        *z_out.add(full.len()) = 0;
    }
    sys::SQLITE_OK
}

/// The default VFS the delegated calls go to.
///
/// # Safety
///
/// As for [`app`].
unsafe fn base<'a>(p_vfs: *mut sqlite3_vfs) -> Option<&'a mut sqlite3_vfs> {
    // SAFETY: per the caller; `base` is NULL or SQLite's default VFS, which
    // stays registered.
    unsafe { app(p_vfs).ok().and_then(|a| a.base.as_mut()) }
}

unsafe extern "C" fn x_dlopen(p_vfs: *mut sqlite3_vfs, z_path: *const c_char) -> *mut c_void {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        match base(p_vfs) {
            Some(b) => b.xDlOpen.map_or(null_mut(), |f| f(b, z_path)),
            None => null_mut(),
        }
    }
}

unsafe extern "C" fn x_dlerror(p_vfs: *mut sqlite3_vfs, n: c_int, z_err: *mut c_char) {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        if let Some(b) = base(p_vfs)
            && let Some(f) = b.xDlError
        {
            f(b, n, z_err);
        }
    }
}

type DlSym = unsafe extern "C" fn(*mut sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn x_dlsym(
    p_vfs: *mut sqlite3_vfs,
    handle: *mut c_void,
    z_symbol: *const c_char,
) -> Option<DlSym> {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        let b = base(p_vfs)?;
        b.xDlSym.and_then(|f| f(b, handle, z_symbol))
    }
}

unsafe extern "C" fn x_dlclose(p_vfs: *mut sqlite3_vfs, handle: *mut c_void) {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        if let Some(b) = base(p_vfs)
            && let Some(f) = b.xDlClose
        {
            f(b, handle);
        }
    }
}

unsafe extern "C" fn x_randomness(p_vfs: *mut sqlite3_vfs, n: c_int, z_out: *mut c_char) -> c_int {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        match base(p_vfs) {
            Some(b) => b.xRandomness.map_or(0, |f| f(b, n, z_out)),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_sleep(p_vfs: *mut sqlite3_vfs, micros: c_int) -> c_int {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        match base(p_vfs) {
            Some(b) => b.xSleep.map_or(0, |f| f(b, micros)),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_current_time(p_vfs: *mut sqlite3_vfs, out: *mut f64) -> c_int {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        match base(p_vfs) {
            Some(b) => b.xCurrentTime.map_or(sys::SQLITE_ERROR, |f| f(b, out)),
            None => sys::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn x_current_time_int64(
    p_vfs: *mut sqlite3_vfs,
    out: *mut sqlite3_int64,
) -> c_int {
    // SAFETY: delegating SQLite's own arguments to its default VFS.
    unsafe {
        match base(p_vfs) {
            Some(b) => b.xCurrentTimeInt64.map_or(sys::SQLITE_ERROR, |f| f(b, out)),
            None => sys::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn x_close(p_file: *mut sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file x_open opened, once; moving the wrapper
    // out leaves bytes SQLite frees without reading, and pMethods = NULL
    // marks the file closed.
    let w = unsafe {
        let Some(f) = p_file.as_mut() else {
            return sys::SQLITE_INTERNAL;
        };
        f.pMethods = null();
        std::ptr::read(p_file.cast::<FileWrapper>())
    };
    // SAFETY: the App outlives every file.
    match unsafe { w.app.as_ref() } {
        Some(app) => code(app.vfs.close(w.handle)),
        None => sys::SQLITE_INTERNAL,
    }
}

/// Runs `f` on the file's handle and VFS.
///
/// # Safety
///
/// As for [`file`].
unsafe fn with_file(
    p_file: *mut sqlite3_file,
    f: impl FnOnce(&mut Handle, &FsxVfs) -> VfsResult<()>,
) -> c_int {
    // SAFETY: per the caller.
    match unsafe { file(p_file) } {
        Ok((h, vfs)) => code(f(h, vfs)),
        Err(e) => e,
    }
}

unsafe extern "C" fn x_read(
    p_file: *mut sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    offset: sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes an open file and `amt` writable bytes at buf.
    unsafe {
        with_file(p_file, |h, vfs| {
            let len = usize::try_from(amt).map_err(|_| sys::SQLITE_IOERR_READ)?;
            let offset = usize::try_from(offset).map_err(|_| sys::SQLITE_IOERR_READ)?;
            let buf = std::slice::from_raw_parts_mut(buf.cast::<u8>(), len);
            let n = vfs.read(h, offset, buf)?;
            if n < len {
                // SQLite requires the rest zeroed on a short read.
                buf[n..].fill(0);
                return Err(sys::SQLITE_IOERR_SHORT_READ);
            }
            Ok(())
        })
    }
}

unsafe extern "C" fn x_write(
    p_file: *mut sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    offset: sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes an open file and `amt` readable bytes at buf.
    unsafe {
        with_file(p_file, |h, vfs| {
            let len = usize::try_from(amt).map_err(|_| sys::SQLITE_IOERR_WRITE)?;
            let offset = usize::try_from(offset).map_err(|_| sys::SQLITE_IOERR_WRITE)?;
            let buf = std::slice::from_raw_parts(buf.cast::<u8>(), len);
            if vfs.write(h, offset, buf)? != len {
                return Err(sys::SQLITE_IOERR_WRITE);
            }
            Ok(())
        })
    }
}

unsafe extern "C" fn x_truncate(p_file: *mut sqlite3_file, size: sqlite3_int64) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        with_file(p_file, |h, vfs| {
            let size = usize::try_from(size).map_err(|_| sys::SQLITE_IOERR_TRUNCATE)?;
            vfs.truncate(h, size)
        })
    }
}

unsafe extern "C" fn x_sync(p_file: *mut sqlite3_file, _flags: c_int) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe { with_file(p_file, |h, vfs| vfs.sync(h)) }
}

unsafe extern "C" fn x_file_size(p_file: *mut sqlite3_file, p_size: *mut sqlite3_int64) -> c_int {
    // SAFETY: SQLite passes an open file and an out-pointer.
    unsafe {
        with_file(p_file, |h, vfs| {
            let size = vfs.file_size(h)?;
            let out = p_size.as_mut().ok_or(sys::SQLITE_INTERNAL)?;
            *out = sqlite3_int64::try_from(size).map_err(|_| sys::SQLITE_IOERR_FSTAT)?;
            Ok(())
        })
    }
}

unsafe extern "C" fn x_lock(p_file: *mut sqlite3_file, raw: c_int) -> c_int {
    let Some(level) = LockLevel::from_raw(raw) else {
        return sys::SQLITE_IOERR_LOCK;
    };
    // SAFETY: SQLite passes an open file.
    unsafe { with_file(p_file, |h, vfs| vfs.lock(h, level)) }
}

unsafe extern "C" fn x_unlock(p_file: *mut sqlite3_file, raw: c_int) -> c_int {
    let Some(level) = LockLevel::from_raw(raw) else {
        return sys::SQLITE_IOERR_UNLOCK;
    };
    // SAFETY: SQLite passes an open file.
    unsafe { with_file(p_file, |h, vfs| vfs.unlock(h, level)) }
}

unsafe extern "C" fn x_check_reserved_lock(p_file: *mut sqlite3_file, p_out: *mut c_int) -> c_int {
    // SAFETY: SQLite passes an open file and an out-pointer.
    unsafe {
        with_file(p_file, |h, vfs| {
            let out = p_out.as_mut().ok_or(sys::SQLITE_INTERNAL)?;
            *out = c_int::from(vfs.check_reserved_lock(h));
            Ok(())
        })
    }
}

unsafe extern "C" fn x_file_control(
    _p_file: *mut sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    // No file controls: SQLite falls back to its defaults for each.
    sys::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_p_file: *mut sqlite3_file) -> c_int {
    FsxVfs::sector_size()
}

unsafe extern "C" fn x_device_characteristics(_p_file: *mut sqlite3_file) -> c_int {
    FsxVfs::device_characteristics()
}

unsafe extern "C" fn x_shm_map(
    p_file: *mut sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite passes an open file and an out-pointer.
    unsafe {
        with_file(p_file, |h, vfs| {
            let region = usize::try_from(region).map_err(|_| sys::SQLITE_IOERR_SHMMAP)?;
            let size = usize::try_from(size).map_err(|_| sys::SQLITE_IOERR_SHMMAP)?;
            let p = vfs.shm_map(h, region, size, extend != 0)?;
            *pp.as_mut().ok_or(sys::SQLITE_INTERNAL)? = p.map_or(null_mut(), |p| p.as_ptr().cast());
            Ok(())
        })
    }
}

unsafe extern "C" fn x_shm_lock(
    p_file: *mut sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let Some(mode) = ShmLockMode::from_raw(flags) else {
        return sys::SQLITE_IOERR_SHMLOCK;
    };
    let (Ok(offset), Ok(n)) = (u32::try_from(offset), u32::try_from(n)) else {
        return sys::SQLITE_IOERR_SHMLOCK;
    };
    // SAFETY: SQLite passes an open file.
    unsafe { with_file(p_file, |h, vfs| vfs.shm_lock(h, offset, n, mode)) }
}

unsafe extern "C" fn x_shm_barrier(_p_file: *mut sqlite3_file) {
    FsxVfs::shm_barrier();
}

unsafe extern "C" fn x_shm_unmap(p_file: *mut sqlite3_file, _delete: c_int) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        with_file(p_file, |h, vfs| {
            vfs.shm_unmap(h);
            Ok(())
        })
    }
}

unsafe extern "C" fn x_fetch(
    _p_file: *mut sqlite3_file,
    _offset: sqlite3_int64,
    _amt: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    // No memory mapping: a NULL page makes SQLite use xRead.
    // SAFETY: NULL or SQLite's out-pointer.
    if let Some(p) = unsafe { pp.as_mut() } {
        *p = null_mut();
    }
    sys::SQLITE_OK
}

unsafe extern "C" fn x_unfetch(
    _p_file: *mut sqlite3_file,
    _offset: sqlite3_int64,
    _p: *mut c_void,
) -> c_int {
    sys::SQLITE_OK
}
