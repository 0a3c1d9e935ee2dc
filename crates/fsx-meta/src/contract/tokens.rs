//! API tokens: the bearer tokens `fsx serve` accepts for this volume,
//! kept in the volume's metadata so that every server sharing it (several
//! processes on one PostgreSQL, later a Durable Object) knows the same
//! tokens.
//!
//! The metadata never sees a secret: a token is stored as its public id,
//! a label, a scope and the hash of its secret (hashing and checking are
//! `fsx-protocol`'s; this family stores and returns the hash as given).

use fsx_store::BoxFuture;

use crate::Result;

/// The scopes a token may have, weakest first (what `fsx-protocol`'s
/// `Scope` names).
pub const TOKEN_SCOPES: [&str; 3] = ["read", "write", "admin"];

/// Longest token label, in bytes.
pub const TOKEN_LABEL_MAX: usize = 200;

/// A token as stored, hash included: what a server checks a request
/// against. Built with [`TokenRecord::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRecord {
    /// The token's public id.
    pub id: String,
    /// Free text saying whom or what it is for.
    pub label: String,
    /// One of [`TOKEN_SCOPES`].
    pub scope: String,
    /// The hash of its secret.
    pub secret_hash: String,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Revocation time, ms; a revoked token opens nothing.
    pub revoked_ms: Option<i64>,
}

impl TokenRecord {
    /// A new, unrevoked token.
    pub fn new(
        id: impl Into<String>,
        label: impl Into<String>,
        scope: impl Into<String>,
        secret_hash: impl Into<String>,
        created_ms: i64,
    ) -> Self {
        Self {
            id: id.into(),
            label: label.into(),
            scope: scope.into(),
            secret_hash: secret_hash.into(),
            created_ms,
            revoked_ms: None,
        }
    }
}

/// A token as listed: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The token's public id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// Its scope.
    pub scope: String,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Revocation time, ms.
    pub revoked_ms: Option<i64>,
}

/// API tokens of a volume.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]).
///
/// - **Ids are unique forever.** [`MetaTokens::create_token`] refuses an
///   id already stored, revoked or not, with `AlreadyExists`, and changes
///   nothing; ids are 1–64 characters of `0-9 a-z`.
/// - **Checked fields.** A scope outside [`TOKEN_SCOPES`], an empty hash
///   or one longer than 128 bytes, a label longer than
///   [`TOKEN_LABEL_MAX`] bytes or with control characters, a revocation
///   set at creation: `InvalidInput`, nothing stored.
/// - **Hashes stay inside.** [`MetaTokens::tokens`] never returns a hash;
///   only [`MetaTokens::token`], the lookup a server authenticates with,
///   does.
/// - **Revocation is final.** [`MetaTokens::revoke_token`] stamps the
///   token (`NotFound` if there is no such id); revoking again keeps the
///   first time. Nothing un-revokes a token; a revoked token stays listed.
pub trait MetaTokens {
    /// Stores a new token.
    fn create_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, Result<()>>;

    /// Every token, oldest first, without hashes.
    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>>>;

    /// The token `id`, hash included, or `None`.
    fn token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>>>;

    /// Revokes the token `id` at `now_ms`.
    fn revoke_token<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, Result<()>>;
}
