//! The one public error type of `fsx-meta`, classified by what the caller
//! does next.
//!
//! | kind | caller's next step |
//! |---|---|
//! | [`MetaErrorKind::NotFound`] | the file, volume or row does not exist |
//! | [`MetaErrorKind::AlreadyExists`] | the name or volume is taken |
//! | [`MetaErrorKind::Busy`] | another writer holds the file's lease: wait or give up |
//! | [`MetaErrorKind::Conflict`] | an optimistic check failed (the state moved on): redo the operation from a fresh read |
//! | [`MetaErrorKind::Unavailable`] | the database cannot be reached or is locked: retry later |
//! | [`MetaErrorKind::InvalidInput`] | the request is wrong: fix it |
//! | [`MetaErrorKind::Unsupported`] | the volume is newer than this build: upgrade fsx |
//! | [`MetaErrorKind::Corrupt`] | the metadata contradicts itself: run `fsx fsck` |
//! | [`MetaErrorKind::Other`] | anything else: report |

use std::error::Error as StdError;
use std::fmt;

/// Boxed error source kept inside a [`MetaError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Result alias of this crate.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// What went wrong, by what the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetaErrorKind {
    /// The object does not exist.
    NotFound,
    /// The name is already taken.
    AlreadyExists,
    /// A lease is held by another writer.
    Busy,
    /// An optimistic precondition failed; redo from a fresh read.
    Conflict,
    /// The engine is unreachable or locked; retry later.
    Unavailable,
    /// The request is malformed.
    InvalidInput,
    /// The volume needs a newer fsx.
    Unsupported,
    /// The stored metadata is inconsistent.
    Corrupt,
    /// What was asked for is no longer kept (changes older than the
    /// feed keeps): start over from the current state.
    Gone,
    /// A file-tree call refused, with the errno the kernel returns for it
    /// (see [`crate::contract::MetaTree`]).
    Refused(crate::names::Refused),
    /// Anything else.
    Other,
}

impl fmt::Display for MetaErrorKind {
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
            Self::Refused(r) => return write!(f, "refused (errno {})", r.errno()),
            Self::Other => "error",
        })
    }
}

/// An error from a metadata engine.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct MetaError {
    kind: MetaErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl MetaError {
    /// An error of `kind` with a message for the operator.
    pub fn new(kind: MetaErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What the caller should do next.
    pub fn kind(&self) -> MetaErrorKind {
        self.kind
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A `NotFound` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(MetaErrorKind::NotFound, message)
    }

    /// A `Conflict` error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(MetaErrorKind::Conflict, message)
    }

    /// A refusal of a file-tree call, with its errno.
    pub fn refused(refused: crate::names::Refused, message: impl Into<String>) -> Self {
        Self::new(MetaErrorKind::Refused(refused), message)
    }

    /// An `InvalidInput` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(MetaErrorKind::InvalidInput, message)
    }
}
