//! The C side of the VFS: SQLite's flags as Rust types, and the table of
//! SQLite functions the VFS calls.
//!
//! fsx talks to SQLite through the pre-generated bindings of
//! `libsqlite3-sys` (re-exported as `rusqlite::ffi`), so nothing in the
//! build runs bindgen or needs libclang. Two SQLites can be on the other
//! side:
//!
//! - **static**: the SQLite bundled into this program (rusqlite's);
//!   [`Api::linked`] takes its functions directly.
//! - **dynamic**: the host that loads `libfsx_sqlite.so` as an extension.
//!   The extension must call the *host's* functions, which arrive as a
//!   `sqlite3_api_routines*` at the entry point. libsqlite3-sys declares that
//!   struct opaque (its `loadable_extension` feature would define it, but
//!   would also route every rusqlite call of the program through the host,
//!   fsx's own metadata database included), so [`ApiRoutines`] declares the
//!   prefix fsx needs, field for field as in SQLite's `sqlite3ext.h`. SQLite
//!   only ever appends to that struct, so a prefix stays valid for every
//!   later SQLite; [`MIN_HOST_VERSION`] is the first one that has all of it.
//!   A unit test checks the field names and order against the header
//!   libsqlite3-sys ships.

use std::ffi::{CString, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi as sys;
use rusqlite::ffi::sqlite3_vfs;

/// A SQLite result code (primary or extended).
pub(crate) type SqliteErr = c_int;

/// The result of a VFS method: a value, or the SQLite code to return.
pub(crate) type VfsResult<T> = Result<T, SqliteErr>;

/// `sqlite3_uri_parameter(zFilename, zParam)`.
pub(crate) type UriParameter = unsafe extern "C" fn(*const c_char, *const c_char) -> *const c_char;
/// `sqlite3_uri_key(zFilename, N)`.
pub(crate) type UriKey = unsafe extern "C" fn(*const c_char, c_int) -> *const c_char;
/// `sqlite3_log(iErrCode, zFormat, ...)`.
type Log = unsafe extern "C" fn(c_int, *const c_char, ...);

/// The oldest host SQLite the extension accepts: 3.31.0 added
/// `sqlite3_uri_key`, the last routine of [`ApiRoutines`].
pub(crate) const MIN_HOST_VERSION: c_int = 3_031_000;

/// The SQLite functions the VFS calls, from one SQLite library.
#[derive(Clone, Copy)]
pub(crate) struct Api {
    pub(crate) vfs_find: unsafe extern "C" fn(*const c_char) -> *mut sqlite3_vfs,
    pub(crate) vfs_register: unsafe extern "C" fn(*mut sqlite3_vfs, c_int) -> c_int,
    pub(crate) uri_parameter: UriParameter,
    pub(crate) uri_key: UriKey,
    log: Log,
}

impl Api {
    /// The SQLite linked into this program (rusqlite's bundled one).
    pub(crate) fn linked() -> Self {
        Self {
            vfs_find: sys::sqlite3_vfs_find,
            vfs_register: sys::sqlite3_vfs_register,
            uri_parameter: sys::sqlite3_uri_parameter,
            uri_key: sys::sqlite3_uri_key,
            log: sys::sqlite3_log,
        }
    }

    /// The host SQLite that loads the extension.
    ///
    /// # Safety
    ///
    /// `api` must be null or the `sqlite3_api_routines*` SQLite passed to
    /// the extension's entry point.
    pub(crate) unsafe fn host(api: *const ApiRoutines) -> Result<Self, String> {
        // SAFETY: per the caller, non-null `api` is SQLite's routine table,
        // which starts with the fields `ApiRoutines` declares up to
        // `libversion_number` in every SQLite version.
        let r = unsafe { api.as_ref() }.ok_or("SQLite passed no API routines")?;
        let version = r.libversion_number.ok_or("no sqlite3_libversion_number")?;
        // SAFETY: a routine of the host, taking no arguments.
        let version = unsafe { version() };
        if version < MIN_HOST_VERSION {
            // Later fields of `ApiRoutines` would lie past the end of the
            // host's table.
            return Err(format!(
                "the fsx extension needs SQLite 3.31.0 or later; this SQLite is {}.{}.{}",
                version / 1_000_000,
                version / 1000 % 1000,
                version % 1000
            ));
        }
        let missing = |what: &str| format!("this SQLite has no {what}");
        Ok(Self {
            vfs_find: r.vfs_find.ok_or_else(|| missing("sqlite3_vfs_find"))?,
            vfs_register: r
                .vfs_register
                .ok_or_else(|| missing("sqlite3_vfs_register"))?,
            uri_parameter: r
                .uri_parameter
                .ok_or_else(|| missing("sqlite3_uri_parameter"))?,
            uri_key: r.uri_key.ok_or_else(|| missing("sqlite3_uri_key"))?,
            log: r.log.ok_or_else(|| missing("sqlite3_log"))?,
        })
    }
}

/// `sqlite3_log` of the SQLite the VFS is registered in, once registered.
static LOG: OnceLock<Log> = OnceLock::new();

/// Remembers `api`'s `sqlite3_log` for [`log`].
pub(crate) fn set_log(api: &Api) {
    let _ = LOG.set(api.log);
}

/// Passes `message` to SQLite's error log (`sqlite3_log`), which an
/// application reads with `SQLITE_CONFIG_LOG` and the `sqlite3` shell shows
/// after `.log stderr`: SQLite itself reduces a failed open to "unable to
/// open database file".
pub(crate) fn log(code: c_int, message: &str) {
    let Some(log) = LOG.get() else { return };
    // A message with a NUL is cut there rather than dropped.
    let text = message.split('\0').next().unwrap_or_default();
    let Ok(text) = CString::new(text) else { return };
    // SAFETY: `log` is sqlite3_log of a live SQLite; "%s" with one
    // NUL-terminated string is a valid format and argument list.
    unsafe { log(code, c"%s".as_ptr(), text.as_ptr()) };
}

/// What kind of file SQLite opens (`SQLITE_OPEN_MAIN_DB`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenKind {
    Unknown,
    MainDb,
    MainJournal,
    TempDb,
    TempJournal,
    TransientDb,
    SubJournal,
    SuperJournal,
    Wal,
}

/// Whether an open may create the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateMode {
    None,
    Create,
    MustCreate,
}

/// Read-only, or read-write with a create mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    ReadOnly,
    ReadWrite { create: CreateMode },
}

impl OpenMode {
    pub(crate) fn is_readonly(self) -> bool {
        self == Self::ReadOnly
    }
}

/// The `flags` of `xOpen`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenOpts {
    flags: c_int,
}

impl OpenOpts {
    pub(crate) fn new(flags: c_int) -> Self {
        Self { flags }
    }

    pub(crate) fn kind(self) -> OpenKind {
        let f = self.flags;
        [
            (sys::SQLITE_OPEN_MAIN_DB, OpenKind::MainDb),
            (sys::SQLITE_OPEN_MAIN_JOURNAL, OpenKind::MainJournal),
            (sys::SQLITE_OPEN_TEMP_DB, OpenKind::TempDb),
            (sys::SQLITE_OPEN_TEMP_JOURNAL, OpenKind::TempJournal),
            (sys::SQLITE_OPEN_TRANSIENT_DB, OpenKind::TransientDb),
            (sys::SQLITE_OPEN_SUBJOURNAL, OpenKind::SubJournal),
            (sys::SQLITE_OPEN_SUPER_JOURNAL, OpenKind::SuperJournal),
            (sys::SQLITE_OPEN_WAL, OpenKind::Wal),
        ]
        .into_iter()
        .find(|(bit, _)| f & bit != 0)
        .map_or(OpenKind::Unknown, |(_, k)| k)
    }

    pub(crate) fn mode(self) -> OpenMode {
        let f = self.flags;
        if f & sys::SQLITE_OPEN_READONLY != 0 || f & sys::SQLITE_OPEN_READWRITE == 0 {
            return OpenMode::ReadOnly;
        }
        let must = sys::SQLITE_OPEN_CREATE | sys::SQLITE_OPEN_EXCLUSIVE;
        let create = if f & must == must {
            CreateMode::MustCreate
        } else if f & sys::SQLITE_OPEN_CREATE != 0 {
            CreateMode::Create
        } else {
            CreateMode::None
        };
        OpenMode::ReadWrite { create }
    }

    pub(crate) fn delete_on_close(self) -> bool {
        self.flags & sys::SQLITE_OPEN_DELETEONCLOSE != 0
    }
}

/// SQLite's five file lock levels, in order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
pub(crate) enum LockLevel {
    Unlocked,
    Shared,
    Reserved,
    Pending,
    Exclusive,
}

impl LockLevel {
    /// The level of `SQLITE_LOCK_*` `raw`; `None` for anything else.
    pub(crate) fn from_raw(raw: c_int) -> Option<Self> {
        Some(match raw {
            sys::SQLITE_LOCK_NONE => Self::Unlocked,
            sys::SQLITE_LOCK_SHARED => Self::Shared,
            sys::SQLITE_LOCK_RESERVED => Self::Reserved,
            sys::SQLITE_LOCK_PENDING => Self::Pending,
            sys::SQLITE_LOCK_EXCLUSIVE => Self::Exclusive,
            _ => return None,
        })
    }
}

/// What an `xShmLock` call asks for.
#[derive(Copy, Clone, Debug)]
pub(crate) enum ShmLockMode {
    LockShared,
    LockExclusive,
    UnlockShared,
    UnlockExclusive,
}

impl ShmLockMode {
    /// The mode of `xShmLock`'s `flags`; `None` for an invalid combination.
    pub(crate) fn from_raw(flags: c_int) -> Option<Self> {
        const LOCK_SHARED: c_int = sys::SQLITE_SHM_LOCK | sys::SQLITE_SHM_SHARED;
        const LOCK_EXCLUSIVE: c_int = sys::SQLITE_SHM_LOCK | sys::SQLITE_SHM_EXCLUSIVE;
        const UNLOCK_SHARED: c_int = sys::SQLITE_SHM_UNLOCK | sys::SQLITE_SHM_SHARED;
        const UNLOCK_EXCLUSIVE: c_int = sys::SQLITE_SHM_UNLOCK | sys::SQLITE_SHM_EXCLUSIVE;
        Some(match flags {
            LOCK_SHARED => Self::LockShared,
            LOCK_EXCLUSIVE => Self::LockExclusive,
            UNLOCK_SHARED => Self::UnlockShared,
            UNLOCK_EXCLUSIVE => Self::UnlockExclusive,
            _ => return None,
        })
    }
}

/// A routine of `sqlite3_api_routines` fsx does not call: every field of
/// that struct is one function pointer.
type Slot = *const c_void;

/// Declares [`ApiRoutines`] and the list of its field names (for the test
/// against `sqlite3ext.h`).
macro_rules! api_routines {
    ($($name:ident: $ty:ty,)*) => {
        /// The prefix of SQLite's `sqlite3_api_routines` (from
        /// `sqlite3ext.h`) up to the last routine fsx calls. Only the
        /// typed fields are read.
        #[repr(C)]
        #[allow(dead_code)]
        pub struct ApiRoutines {
            $($name: $ty,)*
        }

        /// The field names of [`ApiRoutines`], in order.
        #[cfg(test)]
        pub(crate) const API_FIELDS: &[&str] = &[$(stringify!($name)),*];
    };
}

api_routines! {
    aggregate_context: Slot,
    aggregate_count: Slot,
    bind_blob: Slot,
    bind_double: Slot,
    bind_int: Slot,
    bind_int64: Slot,
    bind_null: Slot,
    bind_parameter_count: Slot,
    bind_parameter_index: Slot,
    bind_parameter_name: Slot,
    bind_text: Slot,
    bind_text16: Slot,
    bind_value: Slot,
    busy_handler: Slot,
    busy_timeout: Slot,
    changes: Slot,
    close: Slot,
    collation_needed: Slot,
    collation_needed16: Slot,
    column_blob: Slot,
    column_bytes: Slot,
    column_bytes16: Slot,
    column_count: Slot,
    column_database_name: Slot,
    column_database_name16: Slot,
    column_decltype: Slot,
    column_decltype16: Slot,
    column_double: Slot,
    column_int: Slot,
    column_int64: Slot,
    column_name: Slot,
    column_name16: Slot,
    column_origin_name: Slot,
    column_origin_name16: Slot,
    column_table_name: Slot,
    column_table_name16: Slot,
    column_text: Slot,
    column_text16: Slot,
    column_type: Slot,
    column_value: Slot,
    commit_hook: Slot,
    complete: Slot,
    complete16: Slot,
    create_collation: Slot,
    create_collation16: Slot,
    create_function: Slot,
    create_function16: Slot,
    create_module: Slot,
    data_count: Slot,
    db_handle: Slot,
    declare_vtab: Slot,
    enable_shared_cache: Slot,
    errcode: Slot,
    errmsg: Slot,
    errmsg16: Slot,
    exec: Slot,
    expired: Slot,
    finalize: Slot,
    free: Slot,
    free_table: Slot,
    get_autocommit: Slot,
    get_auxdata: Slot,
    get_table: Slot,
    global_recover: Slot,
    interruptx: Slot,
    last_insert_rowid: Slot,
    libversion: Slot,
    libversion_number: Option<unsafe extern "C" fn() -> c_int>,
    malloc: Slot,
    mprintf: Slot,
    open: Slot,
    open16: Slot,
    prepare: Slot,
    prepare16: Slot,
    profile: Slot,
    progress_handler: Slot,
    realloc: Slot,
    reset: Slot,
    result_blob: Slot,
    result_double: Slot,
    result_error: Slot,
    result_error16: Slot,
    result_int: Slot,
    result_int64: Slot,
    result_null: Slot,
    result_text: Slot,
    result_text16: Slot,
    result_text16be: Slot,
    result_text16le: Slot,
    result_value: Slot,
    rollback_hook: Slot,
    set_authorizer: Slot,
    set_auxdata: Slot,
    xsnprintf: Slot,
    step: Slot,
    table_column_metadata: Slot,
    thread_cleanup: Slot,
    total_changes: Slot,
    trace: Slot,
    transfer_bindings: Slot,
    update_hook: Slot,
    user_data: Slot,
    value_blob: Slot,
    value_bytes: Slot,
    value_bytes16: Slot,
    value_double: Slot,
    value_int: Slot,
    value_int64: Slot,
    value_numeric_type: Slot,
    value_text: Slot,
    value_text16: Slot,
    value_text16be: Slot,
    value_text16le: Slot,
    value_type: Slot,
    vmprintf: Slot,
    overload_function: Slot,
    prepare_v2: Slot,
    prepare16_v2: Slot,
    clear_bindings: Slot,
    create_module_v2: Slot,
    bind_zeroblob: Slot,
    blob_bytes: Slot,
    blob_close: Slot,
    blob_open: Slot,
    blob_read: Slot,
    blob_write: Slot,
    create_collation_v2: Slot,
    file_control: Slot,
    memory_highwater: Slot,
    memory_used: Slot,
    mutex_alloc: Slot,
    mutex_enter: Slot,
    mutex_free: Slot,
    mutex_leave: Slot,
    mutex_try: Slot,
    open_v2: Slot,
    release_memory: Slot,
    result_error_nomem: Slot,
    result_error_toobig: Slot,
    sleep: Slot,
    soft_heap_limit: Slot,
    vfs_find: Option<unsafe extern "C" fn(*const c_char) -> *mut sqlite3_vfs>,
    vfs_register: Option<unsafe extern "C" fn(*mut sqlite3_vfs, c_int) -> c_int>,
    vfs_unregister: Slot,
    xthreadsafe: Slot,
    result_zeroblob: Slot,
    result_error_code: Slot,
    test_control: Slot,
    randomness: Slot,
    context_db_handle: Slot,
    extended_result_codes: Slot,
    limit: Slot,
    next_stmt: Slot,
    sql: Slot,
    status: Slot,
    backup_finish: Slot,
    backup_init: Slot,
    backup_pagecount: Slot,
    backup_remaining: Slot,
    backup_step: Slot,
    compileoption_get: Slot,
    compileoption_used: Slot,
    create_function_v2: Slot,
    db_config: Slot,
    db_mutex: Slot,
    db_status: Slot,
    extended_errcode: Slot,
    log: Option<unsafe extern "C" fn(c_int, *const c_char, ...)>,
    soft_heap_limit64: Slot,
    sourceid: Slot,
    stmt_status: Slot,
    strnicmp: Slot,
    unlock_notify: Slot,
    wal_autocheckpoint: Slot,
    wal_checkpoint: Slot,
    wal_hook: Slot,
    blob_reopen: Slot,
    vtab_config: Slot,
    vtab_on_conflict: Slot,
    close_v2: Slot,
    db_filename: Slot,
    db_readonly: Slot,
    db_release_memory: Slot,
    errstr: Slot,
    stmt_busy: Slot,
    stmt_readonly: Slot,
    stricmp: Slot,
    uri_boolean: Slot,
    uri_int64: Slot,
    uri_parameter: Option<UriParameter>,
    xvsnprintf: Slot,
    wal_checkpoint_v2: Slot,
    auto_extension: Slot,
    bind_blob64: Slot,
    bind_text64: Slot,
    cancel_auto_extension: Slot,
    load_extension: Slot,
    malloc64: Slot,
    msize: Slot,
    realloc64: Slot,
    reset_auto_extension: Slot,
    result_blob64: Slot,
    result_text64: Slot,
    strglob: Slot,
    value_dup: Slot,
    value_free: Slot,
    result_zeroblob64: Slot,
    bind_zeroblob64: Slot,
    value_subtype: Slot,
    result_subtype: Slot,
    status64: Slot,
    strlike: Slot,
    db_cacheflush: Slot,
    system_errno: Slot,
    trace_v2: Slot,
    expanded_sql: Slot,
    set_last_insert_rowid: Slot,
    prepare_v3: Slot,
    prepare16_v3: Slot,
    bind_pointer: Slot,
    result_pointer: Slot,
    value_pointer: Slot,
    vtab_nochange: Slot,
    value_nochange: Slot,
    vtab_collation: Slot,
    keyword_count: Slot,
    keyword_name: Slot,
    keyword_check: Slot,
    str_new: Slot,
    str_finish: Slot,
    str_appendf: Slot,
    str_vappendf: Slot,
    str_append: Slot,
    str_appendall: Slot,
    str_appendchar: Slot,
    str_reset: Slot,
    str_errcode: Slot,
    str_length: Slot,
    str_value: Slot,
    create_window_function: Slot,
    normalized_sql: Slot,
    stmt_isexplain: Slot,
    value_frombind: Slot,
    drop_modules: Slot,
    hard_heap_limit64: Slot,
    uri_key: Option<UriKey>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::{Path, PathBuf};

    use super::*;

    /// The field names of `struct sqlite3_api_routines` in `header`, in
    /// order: each declaration is one function pointer `(*name)(...)`,
    /// possibly with a calling-convention macro before the `*`.
    fn header_fields(header: &str) -> Vec<String> {
        let start = header
            .find("struct sqlite3_api_routines {")
            .expect("sqlite3ext.h declares struct sqlite3_api_routines");
        let body = &header[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("};").unwrap()];
        // Drop comments.
        let mut text = String::new();
        let mut rest = body;
        while let Some(i) = rest.find("/*") {
            text.push_str(&rest[..i]);
            rest = &rest[i + 2..];
            rest = &rest[rest.find("*/").map_or(rest.len(), |j| j + 2)..];
        }
        text.push_str(rest);
        text.split(';')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                // `ret (*name)(args)` or `ret (SQLITE_CDECL*name)(args)`.
                let open = d.find('(').unwrap_or_else(|| panic!("not a routine: {d}"));
                let inner = &d[open + 1..];
                let star = inner
                    .find('*')
                    .unwrap_or_else(|| panic!("not a pointer: {d}"));
                let prefix = inner[..star].trim();
                assert!(
                    prefix.is_empty() || prefix.starts_with("SQLITE_"),
                    "unexpected declaration: {d}"
                );
                let name = &inner[star + 1..];
                let end = name.find(')').unwrap_or_else(|| panic!("no ')': {d}"));
                name[..end].trim().to_string()
            })
            .collect()
    }

    /// `sqlite3ext.h` of the libsqlite3-sys this workspace locks, in the
    /// cargo registry cargo built it from.
    fn bundled_header() -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        let at = lock
            .find("name = \"libsqlite3-sys\"")
            .expect("Cargo.lock has libsqlite3-sys");
        let version = lock[at..]
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("version = \""))
            .and_then(|v| v.strip_suffix('"'))
            .expect("a version line after the name")
            .to_string();
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .expect("CARGO_HOME or HOME");
        let src = home.join("registry/src");
        for index in std::fs::read_dir(&src).unwrap() {
            let p = index
                .unwrap()
                .path()
                .join(format!("libsqlite3-sys-{version}/sqlite3/sqlite3ext.h"));
            if p.exists() {
                return p;
            }
        }
        panic!("no libsqlite3-sys-{version} under {}", src.display());
    }

    #[test]
    fn the_routine_prefix_matches_sqlite3ext_h() {
        let header = std::fs::read_to_string(bundled_header()).unwrap();
        let fields = header_fields(&header);
        assert!(fields.len() > API_FIELDS.len(), "{} fields", fields.len());
        if let Some(i) = (0..API_FIELDS.len()).find(|&i| fields[i] != API_FIELDS[i]) {
            panic!(
                "field {i} of sqlite3_api_routines is {:?} in sqlite3ext.h, {:?} in ApiRoutines",
                fields[i], API_FIELDS[i]
            );
        }
        // Every field one pointer wide, so the offsets are the header's.
        assert_eq!(
            std::mem::size_of::<ApiRoutines>(),
            API_FIELDS.len() * std::mem::size_of::<Slot>()
        );
        let slot = std::mem::size_of::<Slot>();
        let index = |n: &str| API_FIELDS.iter().position(|f| *f == n).unwrap() * slot;
        assert_eq!(
            std::mem::offset_of!(ApiRoutines, vfs_find),
            index("vfs_find")
        );
        assert_eq!(std::mem::offset_of!(ApiRoutines, uri_key), index("uri_key"));
        assert_eq!(std::mem::offset_of!(ApiRoutines, log), index("log"));
    }

    #[test]
    fn the_header_parser_sees_every_routine() {
        let h = "struct sqlite3_api_routines {\n  int (*a)(int);\n  /* x; y */\n  \
                 char *(SQLITE_CDECL*b)(const char*,...);\n  void (*c)(void(*)(void*));\n};";
        assert_eq!(header_fields(h), ["a", "b", "c"]);
    }

    #[test]
    fn open_flags_decode() {
        let o = OpenOpts::new(
            sys::SQLITE_OPEN_MAIN_DB | sys::SQLITE_OPEN_READWRITE | sys::SQLITE_OPEN_CREATE,
        );
        assert_eq!(o.kind(), OpenKind::MainDb);
        assert_eq!(
            o.mode(),
            OpenMode::ReadWrite {
                create: CreateMode::Create
            }
        );
        let o = OpenOpts::new(sys::SQLITE_OPEN_WAL | sys::SQLITE_OPEN_READONLY);
        assert_eq!((o.kind(), o.mode()), (OpenKind::Wal, OpenMode::ReadOnly));
        assert_eq!(LockLevel::from_raw(99), None);
        assert!(ShmLockMode::from_raw(0).is_none());
    }
}
