//! [`Error`]: what a call of the API can fail with, sorted by what the
//! caller does next (fix the token, fix the address, raise a limit, or
//! read the server's own message).
//!
//! The messages are written for the person running the CLI: they name the
//! environment variable, the scope, the URL or the server flag involved,
//! so a command can print them as they are.

use fsx_protocol::{ApiError, ErrorCode, Scope};

/// A failed call of the fsx API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The volume URL is not `http(s)://HOST:PORT/v1/volumes/NAME`.
    #[error("{url:?} is not a remote volume URL ({why}): use http(s)://HOST:PORT/v1/volumes/NAME")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// No token was given and the volume is not public-read.
    #[error(
        "FSX_TOKEN is not set and volume {volume} at {url} is not public-read: set FSX_TOKEN to a token of the volume (`fsx token create`)"
    )]
    NoToken {
        /// The volume.
        volume: String,
        /// The server.
        url: String,
    },
    /// 401: the token given is malformed, unknown or revoked.
    #[error("the token in FSX_TOKEN is missing, wrong or revoked (server at {url}: {message})")]
    Unauthorized {
        /// The server.
        url: String,
        /// The server's message.
        message: String,
    },
    /// 403: the token is valid but lacks the scope (or is another
    /// volume's).
    #[error(
        "the token lacks the {scope} scope for volume {volume}, or belongs to another volume (server: {message})"
    )]
    Forbidden {
        /// The scope the call needs.
        scope: Scope,
        /// The volume.
        volume: String,
        /// The server's message.
        message: String,
    },
    /// Nothing answers at the address (refused, unresolvable, TLS
    /// failure before any HTTP).
    #[error("no fsx server answers at {url}")]
    Unreachable {
        /// The server.
        url: String,
        /// Why the connection failed.
        #[source]
        source: reqwest::Error,
    },
    /// A body larger than the server accepts; nothing was written.
    #[error(
        "{what} is more than the server at {url} accepts in one request ({limit}); nothing was written: start `fsx serve` with a larger --max-body"
    )]
    TooLarge {
        /// What was too large (`the file (40000000 bytes)`).
        what: String,
        /// The server.
        url: String,
        /// Its limit, as it said it (`33554432 bytes`).
        limit: String,
    },
    /// The server refused or failed the call with a protocol error.
    #[error("{error}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's error.
        error: ApiError,
    },
    /// The server answered something that is not the protocol (a proxy's
    /// page, an older server).
    #[error("the server at {url} answered {status} with a body that is not the fsx API ({why})")]
    Protocol {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What did not parse.
        why: String,
    },
    /// The connection failed midway (after it was made).
    #[error("the request to {url} failed")]
    Transport {
        /// The URL asked.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The change feed's WebSocket could not be opened, or failed.
    #[error("the WebSocket {url} failed: {why}")]
    WebSocket {
        /// The socket's URL.
        url: String,
        /// What failed.
        why: String,
    },
    /// The server closed the change feed's WebSocket: resume from the
    /// last change handled, or (`gone`) start over.
    #[error("the server closed the WebSocket {url} ({code}: {reason})")]
    WatchClosed {
        /// The socket's URL.
        url: String,
        /// The close code (1001: the server stops; 1013: too slow).
        code: u16,
        /// The server's reason.
        reason: String,
        /// The changes after the cursor are no longer kept.
        gone: bool,
    },
    /// Reading what was to be uploaded failed; the upload was abandoned
    /// (the server stores nothing of an incomplete body).
    #[error("reading the data to upload failed")]
    Read {
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The protocol's error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { error, .. } => Some(error.code),
            Error::Unauthorized { .. } | Error::NoToken { .. } => Some(ErrorCode::Unauthorized),
            Error::Forbidden { .. } => Some(ErrorCode::Forbidden),
            Error::TooLarge { .. } => Some(ErrorCode::PayloadTooLarge),
            _ => None,
        }
    }

    /// Whether the server said the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }
}
