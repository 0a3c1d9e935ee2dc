//! `fsx-store`: the storage layer under fsx — one [`ExtentBackend`] contract,
//! its backends, composable wrappers, and the conformance suite every
//! backend must pass.
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`backend`] | the contract (read its "Contract" section first) | — |
//! | [`aligned`] | blobs placed for direct I/O | — |
//! | [`key`] | validated [`ObjectKey`]s and content keys | — |
//! | [`error`] | [`StoreError`] classified by caller action | — |
//! | [`memory`] | in-memory reference backend | — |
//! | [`cache`] | bounded LRU (memory) and verified disk cache | disk: `local` |
//! | [`wrappers`] | retry, fault injection, metering | — |
//! | [`conformance`] | the shared suite, also run by `fsx store check` | — |
//! | [`inject`] | injected sleep and randomness | tokio sleeper: `tokio` |
//! | `local` | crash-safe local directory | `local` |
//! | `s3` | S3, R2, MinIO, SeaweedFS via `object_store` | `s3` |
//! | `redis_kv` | Redis as a Cloudflare-KV-like store | `redis` |
//! | [`open`] | `open_backend(url)` for composition roots | per scheme |
//! | [`url`] | [`SafeUrl`]: parsing, redaction, credentials from a file or the environment | — |
//!
//! Invariants every part keeps: keys are validated before any I/O; a put
//! above a backend's declared maximum is rejected before any I/O; errors keep
//! their source; the core (everything without a feature) is runtime-free.

pub mod aligned;
pub mod backend;
pub mod cache;
pub mod conformance;
pub mod error;
pub mod inject;
pub mod key;
#[cfg(feature = "local")]
pub mod local;
pub mod memory;
pub mod open;
#[cfg(feature = "redis")]
pub mod redis_kv;
#[cfg(feature = "s3")]
pub mod s3;
mod sync;
pub mod url;
pub mod wrappers;

pub use aligned::{IO_ALIGN, aligned_blob};
pub use backend::{
    BoxFuture, Capabilities, ExtentBackend, ExtentBackendExt, ListPage, ListRequest, MaybeSend,
    MaybeSync, ObjectMeta,
};
pub use error::{ErrorKind, Result, StoreError};
pub use key::ObjectKey;
pub use open::{open_backend, open_existing_backend};
pub use url::{SafeUrl, redact};
