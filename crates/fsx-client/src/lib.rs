//! `fsx-client`: a client of the fsx HTTP API (`fsx serve`,
//! `docs/API.md`), for the CLI's remote volumes and the sync agent.
//!
//! A [`RemoteVolume`] is one volume of one server, named by
//! `http(s)://HOST:PORT/v1/volumes/NAME`, with an optional bearer token.
//! Each method is one route of [`fsx_protocol::ROUTES`], and every body
//! is an [`fsx_protocol::types`] type: this crate defines no wire struct
//! of its own, so the client and the server cannot drift apart.
//!
//! # Invariants
//!
//! - **Files never sit whole in memory.** [`RemoteVolume::write_file`]
//!   streams from an [`AsyncRead`](tokio::io::AsyncRead) in chunks, and
//!   [`RemoteVolume::read_file`] hands the body out chunk by chunk.
//! - **Nothing is cut short silently.** An upload larger than the
//!   server's `--max-body` is refused before a byte is sent when its size
//!   is known, and abandoned (the server stores nothing of an incomplete
//!   body) when it is not; either way the caller gets
//!   [`Error::TooLarge`]. A download checks that it got the announced
//!   length.
//! - **Errors say what to do.** The protocol's codes become [`Error`]
//!   variants whose messages name the token variable, the scope, the URL
//!   or the server flag ([`error`]).

mod client;
pub mod error;
mod watch;

pub use client::{FileReader, RemoteVolume, is_remote};
pub use error::Error;
pub use watch::Watcher;

/// The result of every call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
