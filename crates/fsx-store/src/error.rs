//! The one public error type of `fsx-store`.
//!
//! Errors are classified by **what the caller does next**, not by where they
//! came from: a caller matches on [`StoreError::kind`] and never on message
//! text. Backend-specific detail (an S3 status, a Redis reply, an `io::Error`)
//! travels in the message and, unchanged, in the `source` chain — a source is
//! never dropped.
//!
//! | kind | caller's next step |
//! |---|---|
//! | [`ErrorKind::NotFound`] | treat as absent (a miss); do not retry |
//! | [`ErrorKind::InvalidInput`] | fix the request (bad key, range, size); retrying cannot help |
//! | [`ErrorKind::Unavailable`] | retry later, with backoff; honour [`StoreError::retry_after`] |
//! | [`ErrorKind::Corrupt`] | the stored bytes failed verification: read another copy / repair |
//! | [`ErrorKind::Unsupported`] | the backend cannot do this operation; use another path |
//! | [`ErrorKind::Other`] | not classifiable (configuration, permissions, bugs): report |

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// Boxed error source kept inside a [`StoreError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Result alias used throughout the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong, sorted by what the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// The request itself is wrong (key, range, size, parameter); do not retry.
    InvalidInput,
    /// A transient failure (network, server 5xx, rate limit); retry with backoff.
    Unavailable,
    /// Stored content failed verification (checksum / content hash).
    Corrupt,
    /// The backend does not support this operation.
    Unsupported {
        /// The operation that was refused, e.g. `"get_range"`.
        operation: &'static str,
    },
    /// Anything else: misconfiguration, permission denied, internal errors.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::NotFound => f.write_str("not found"),
            ErrorKind::InvalidInput => f.write_str("invalid input"),
            ErrorKind::Unavailable => f.write_str("unavailable"),
            ErrorKind::Corrupt => f.write_str("corrupt"),
            ErrorKind::Unsupported { operation } => write!(f, "unsupported operation {operation}"),
            ErrorKind::Other => f.write_str("error"),
        }
    }
}

/// The error returned by every [`ExtentBackend`](crate::ExtentBackend) call.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    #[source]
    source: Option<BoxError>,
}

impl StoreError {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Attach a hint of how long to wait before retrying (rate limits).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// Shorthand for [`ErrorKind::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported { operation }, message)
    }

    /// Shorthand for [`ErrorKind::Other`].
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// What the caller should do next.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For rate-limited [`ErrorKind::Unavailable`] errors: the earliest moment
    /// a retry can succeed, measured from when the error was produced.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Classify an `io::Error` from local storage. `what` names the operation
    /// and object for the message.
    pub fn from_io(what: impl fmt::Display, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::InvalidInput | Io::InvalidFilename | Io::FileTooLarge => ErrorKind::InvalidInput,
            Io::Interrupted
            | Io::TimedOut
            | Io::WouldBlock
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::ConnectionRefused
            | Io::BrokenPipe
            | Io::ResourceBusy => ErrorKind::Unavailable,
            Io::InvalidData | Io::UnexpectedEof => ErrorKind::Corrupt,
            _ => ErrorKind::Other,
        };
        Self::new(kind, format!("{what}: {err}")).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_source_are_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow disk");
        let err = StoreError::from_io("get extent/x", io);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.kind().is_retryable());
        assert_eq!(err.to_string(), "unavailable: get extent/x: slow disk");
        assert!(StdError::source(&err).is_some());
    }

    #[test]
    fn unsupported_names_the_operation() {
        let err = StoreError::unsupported("get_range", "no ranges here");
        assert_eq!(
            err.kind(),
            ErrorKind::Unsupported {
                operation: "get_range"
            }
        );
        assert!(!err.kind().is_retryable());
    }
}
