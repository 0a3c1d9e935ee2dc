//! `fsx-protocol`: the versioned HTTP API that `fsx serve` speaks, and
//! that the later Cloudflare Workers build (a Durable Object) will speak
//! too.
//!
//! This crate holds everything of the protocol that is not I/O, so both
//! servers and every client share one definition:
//!
//! | module | what |
//! |---|---|
//! | [`routes`] | the route table: every endpoint's method, path template and required [`Scope`] |
//! | [`types`] | the JSON request and response bodies, and query strings |
//! | [`feed`] | the change feed: `…/changes` pages and the `…/watch` WebSocket's messages |
//! | [`request`] | parsing a request's query string and `Range` header |
//! | [`error`] | the JSON error body and its stable codes, with their HTTP statuses |
//! | [`token`] | bearer tokens: format, generation from caller-supplied randomness, hashing and constant-time checking |
//! | [`scope`] | [`Scope`]: read ⊂ write ⊂ admin |
//! | [`validate`] | volume and branch names, tree paths and content keys from outside |
//!
//! # Invariants
//!
//! - **Runtime-free.** No async runtime, no threads, no clock, no
//!   randomness source and no `Send` bounds: a wasm32 build runs it as is.
//! - **Input is validated here, once.** A server parses every name, path
//!   and key through [`validate`] before it reaches the engine, so a `..`,
//!   a NUL or a malformed key is a 400 with a stable code, never a lookup.
//! - **Stable codes.** [`error::ErrorCode`]'s strings are part of the
//!   protocol: clients branch on them, so they never change meaning.

pub mod error;
pub mod feed;
pub mod request;
pub mod routes;
pub mod scope;
pub mod token;
pub mod types;
pub mod validate;

pub use error::{ApiError, ErrorBody, ErrorCode};
pub use routes::{Access, Method, ROUTES, Route, RouteId, RouteMatch, match_route};
pub use scope::Scope;
pub use token::{Token, TokenError, TokenHash};
pub use validate::{ContentKey, InvalidInput, TreePath};

/// The path prefix of every versioned endpoint.
pub const API_PREFIX: &str = "/v1";
