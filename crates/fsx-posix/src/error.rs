//! Errors of file-system calls: an errno, with the message and source
//! that explain it.

use std::fmt;

/// The errno values this layer returns (Linux numbering, which FUSE
/// speaks on every platform it runs on).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Argument list too long (an attribute value too large).
    pub const E2BIG: i32 = 7;
    /// Bad file descriptor (a handle not open for that).
    pub const EBADF: i32 = 9;
    /// Try again.
    pub const EAGAIN: i32 = 11;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// Not a directory.
    pub const ENOTDIR: i32 = 20;
    /// Is a directory.
    pub const EISDIR: i32 = 21;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// File too large.
    pub const EFBIG: i32 = 27;
    /// Read-only file system.
    pub const EROFS: i32 = 30;
    /// Result out of range.
    pub const ERANGE: i32 = 34;
    /// File name too long.
    pub const ENAMETOOLONG: i32 = 36;
    /// Directory not empty.
    pub const ENOTEMPTY: i32 = 39;
    /// Too many levels of symbolic links.
    pub const ELOOP: i32 = 40;
    /// No data (an absent extended attribute).
    pub const ENODATA: i32 = 61;
    /// Not supported.
    pub const EOPNOTSUPP: i32 = 95;
    /// No such device or address (no data or hole past the offset).
    pub const ENXIO: i32 = 6;
}

/// A failed file-system call.
#[derive(Debug, thiserror::Error)]
pub struct FsError {
    errno: i32,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

impl FsError {
    /// An error with `errno`.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Self {
            errno,
            message: message.into(),
            source: None,
        }
    }

    /// The errno the call returns.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The result of a file-system call.
pub type Result<T, E = FsError> = std::result::Result<T, E>;

impl From<fsx_meta::MetaError> for FsError {
    fn from(e: fsx_meta::MetaError) -> Self {
        use fsx_meta::MetaErrorKind as K;
        let errno = match e.kind() {
            K::Refused(r) => r.errno(),
            K::NotFound => errno::ENOENT,
            K::AlreadyExists => errno::EEXIST,
            K::Busy => errno::EBUSY,
            K::Conflict => errno::EAGAIN,
            K::InvalidInput => errno::EINVAL,
            K::Unsupported => errno::EOPNOTSUPP,
            _ => errno::EIO,
        };
        Self {
            errno,
            message: e.message().to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl From<fsx_engine::Error> for FsError {
    fn from(e: fsx_engine::Error) -> Self {
        use fsx_engine::ErrorKind as K;
        let errno = match e.kind() {
            K::NotFound => errno::ENOENT,
            K::AlreadyExists => errno::EEXIST,
            K::Busy => errno::EBUSY,
            K::Conflict => errno::EAGAIN,
            K::InvalidInput => errno::EINVAL,
            K::Unsupported => errno::EOPNOTSUPP,
            _ => errno::EIO,
        };
        Self {
            errno,
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}
