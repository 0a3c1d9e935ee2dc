//! The engine's error: one type, classified by what the caller does next,
//! carrying the lower layer's error as its source.

use std::fmt;

use fsx_meta::{MetaError, MetaErrorKind};
use fsx_store::StoreError;

/// What went wrong, by what the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The volume or file does not exist.
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// Another writer holds the file: wait or give up.
    Busy,
    /// A concurrent change won a race: redo the operation.
    Conflict,
    /// The metadata or the store cannot be reached: retry later.
    Unavailable,
    /// The request is wrong: fix it.
    InvalidInput,
    /// The volume needs a newer fsx.
    Unsupported,
    /// Stored data or metadata failed verification: run `fsx fsck`.
    Corrupt,
    /// What was asked for is no longer kept (changes older than the
    /// volume's feed keeps): start over from the current state.
    Gone,
    /// Anything else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::Busy => "busy",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::InvalidInput => "invalid input",
            Self::Unsupported => "unsupported",
            Self::Corrupt => "corrupt",
            Self::Gone => "gone",
            Self::Other => "error",
        })
    }
}

/// An error from the page store.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// What the caller should do next.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl From<MetaError> for Error {
    fn from(e: MetaError) -> Self {
        let kind = match e.kind() {
            MetaErrorKind::NotFound => ErrorKind::NotFound,
            MetaErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            MetaErrorKind::Busy => ErrorKind::Busy,
            MetaErrorKind::Conflict => ErrorKind::Conflict,
            MetaErrorKind::Unavailable => ErrorKind::Unavailable,
            MetaErrorKind::InvalidInput => ErrorKind::InvalidInput,
            MetaErrorKind::Unsupported => ErrorKind::Unsupported,
            MetaErrorKind::Corrupt => ErrorKind::Corrupt,
            MetaErrorKind::Gone => ErrorKind::Gone,
            _ => ErrorKind::Other,
        };
        Self::new(kind, format!("metadata: {}", e.message())).with_source(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        use fsx_store::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::InvalidInput => ErrorKind::InvalidInput,
            K::Unavailable => ErrorKind::Unavailable,
            K::Corrupt => ErrorKind::Corrupt,
            _ => ErrorKind::Other,
        };
        Self::new(kind, format!("data store: {e}")).with_source(e)
    }
}

impl From<fsx_format::FormatError> for Error {
    fn from(e: fsx_format::FormatError) -> Self {
        let kind = match e.kind() {
            fsx_format::ErrorKind::Corrupt => ErrorKind::Corrupt,
            fsx_format::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidInput,
        };
        Self::new(kind, format!("extent: {e}")).with_source(e)
    }
}
