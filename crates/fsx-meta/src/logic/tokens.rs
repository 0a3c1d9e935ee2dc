//! API tokens, written once for every engine
//! ([`crate::contract::MetaTokens`]): single statements on `fsx_tokens`,
//! whose primary key keeps ids unique.

use super::{Tx, args};
use crate::contract::{TOKEN_LABEL_MAX, TOKEN_SCOPES, TokenInfo, TokenRecord};
use crate::error::{MetaError, MetaErrorKind, Result};

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(id, label, scope, secret_hash, created_ms)`: inserts unless the
    /// id exists (0 rows then).
    InsertToken,
    /// `→ id, label, scope, created_ms, revoked_ms`, oldest first.
    Tokens,
    /// `(id) → id, label, scope, secret_hash, created_ms, revoked_ms`.
    Token,
    /// `(id, now_ms)`: stamps an unrevoked token.
    RevokeToken,
    /// `(id) → 1` if the token exists.
    TokenExists,
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return Err(MetaError::invalid(format!(
            "{:?} is not a token id: use 1 to 64 characters of 0-9 a-z",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

fn check_record(t: &TokenRecord) -> Result<()> {
    check_id(&t.id)?;
    if !TOKEN_SCOPES.contains(&t.scope.as_str()) {
        return Err(MetaError::invalid(format!(
            "{:?} is not a token scope: use read, write or admin",
            t.scope
        )));
    }
    if t.secret_hash.is_empty() || t.secret_hash.len() > 128 {
        return Err(MetaError::invalid(
            "a token's secret hash must be 1 to 128 bytes",
        ));
    }
    if t.label.len() > TOKEN_LABEL_MAX || t.label.chars().any(char::is_control) {
        return Err(MetaError::invalid(format!(
            "a token label is at most {TOKEN_LABEL_MAX} bytes without control characters"
        )));
    }
    if t.revoked_ms.is_some() {
        return Err(MetaError::invalid("a new token cannot be revoked already"));
    }
    Ok(())
}

pub(crate) async fn create_token(tx: &impl Tx, t: &TokenRecord) -> Result<()> {
    check_record(t)?;
    let n = tx
        .exec(
            Q::InsertToken.into(),
            args![&t.id, &t.label, &t.scope, &t.secret_hash, t.created_ms],
        )
        .await?;
    if n == 0 {
        return Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("a token with id {} already exists", t.id),
        ));
    }
    Ok(())
}

pub(crate) async fn tokens(tx: &impl Tx) -> Result<Vec<TokenInfo>> {
    tx.query(Q::Tokens.into(), &[])
        .await?
        .iter()
        .map(|r| {
            Ok(TokenInfo {
                id: r.text(0, "token id")?,
                label: r.text(1, "token label")?,
                scope: r.text(2, "token scope")?,
                created_ms: r.i64(3, "token created_ms")?,
                revoked_ms: r.opt_i64(4, "token revoked_ms")?,
            })
        })
        .collect()
}

pub(crate) async fn token(tx: &impl Tx, id: &str) -> Result<Option<TokenRecord>> {
    // A malformed id names no token: the caller's input, not an error.
    if check_id(id).is_err() {
        return Ok(None);
    }
    tx.query_opt(Q::Token.into(), args![id])
        .await?
        .map(|r| {
            Ok(TokenRecord {
                id: r.text(0, "token id")?,
                label: r.text(1, "token label")?,
                scope: r.text(2, "token scope")?,
                secret_hash: r.text(3, "token secret_hash")?,
                created_ms: r.i64(4, "token created_ms")?,
                revoked_ms: r.opt_i64(5, "token revoked_ms")?,
            })
        })
        .transpose()
}

pub(crate) async fn revoke_token(tx: &impl Tx, id: &str, now_ms: i64) -> Result<()> {
    check_id(id)?;
    if tx.exec(Q::RevokeToken.into(), args![id, now_ms]).await? > 0 {
        return Ok(());
    }
    match tx.query_opt(Q::TokenExists.into(), args![id]).await? {
        Some(_) => Ok(()),
        None => Err(MetaError::not_found(format!("no token with id {id}"))),
    }
}

/// `impl MetaTokens for $engine` (`$mode`: see [`super::run`]).
macro_rules! impl_meta_tokens {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            impl MetaTokens for $engine {
                fn create_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| tokens::create_token(tx, token).await)
                }

                fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>>> {
                    run!($mode, self, Read, |tx| tokens::tokens(tx).await)
                }

                fn token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TokenRecord>>> {
                    run!($mode, self, Read, |tx| tokens::token(tx, id).await)
                }

                fn revoke_token<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| tokens::revoke_token(tx, id, now_ms).await)
                }
            }
        }
    };
}
pub(crate) use impl_meta_tokens;
