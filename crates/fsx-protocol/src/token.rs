//! Bearer tokens: `fsx_<id>_<secret>`.
//!
//! - `id`: 16 lowercase hex digits (8 random bytes), public: it names the
//!   token in `fsx token list` and in logs, and lets a server find the
//!   stored record in one lookup;
//! - `secret`: 64 lowercase hex digits (32 random bytes), shown once, at
//!   creation, and never stored: the metadata keeps only its SHA-256
//!   ([`TokenHash`]), which [`Token::matches`] compares in constant
//!   time, so a server's answer time says nothing about how much of a
//!   guessed secret was right.
//!
//! This crate has no randomness source (it is runtime-free); the caller
//! passes the bytes to [`Token::from_random`] (the server and CLI take
//! them from the operating system).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every token.
pub const TOKEN_PREFIX: &str = "fsx_";
/// Length of a token id in hex digits.
pub const ID_HEX_LEN: usize = 16;
/// Length of a token secret in hex digits.
pub const SECRET_HEX_LEN: usize = 64;
/// How many random bytes [`Token::from_random`] takes.
pub const RANDOM_BYTES: usize = (ID_HEX_LEN + SECRET_HEX_LEN) / 2;

/// Why a string is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not `fsx_<16 hex>_<64 hex>`.
    #[error("malformed token: expected fsx_ followed by 16 and 64 lowercase hex digits")]
    Malformed,
    /// A token id that is not 16 lowercase hex digits.
    #[error("malformed token id {0:?}: expected 16 lowercase hex digits")]
    BadId(String),
    /// A stored hash that is not 64 hex digits.
    #[error("malformed token hash: expected 64 hex digits")]
    BadHash,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a token id: 16 lowercase hex digits.
pub fn check_id(id: &str) -> Result<(), TokenError> {
    if is_lower_hex(id, ID_HEX_LEN) {
        Ok(())
    } else {
        Err(TokenError::BadId(id.chars().take(40).collect()))
    }
}

/// A token: its public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    id: String,
    secret: String,
}

impl std::fmt::Debug for Token {
    // Never the secret: tokens end up in logs through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A new token from `RANDOM_BYTES` bytes of the caller's randomness.
    pub fn from_random(bytes: &[u8; RANDOM_BYTES]) -> Self {
        let (id, secret) = bytes.split_at(ID_HEX_LEN / 2);
        Self {
            id: hex::encode(id),
            secret: hex::encode(secret),
        }
    }

    /// Parses `fsx_<id>_<secret>` (what `Authorization: Bearer` carries).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let rest = s.strip_prefix(TOKEN_PREFIX).ok_or(TokenError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
        if !is_lower_hex(id, ID_HEX_LEN) || !is_lower_hex(secret, SECRET_HEX_LEN) {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// Parses an `Authorization` header's value: `Bearer` and a token
    /// (spaces around the token are ignored).
    pub fn from_bearer(value: &str) -> Result<Self, TokenError> {
        let token = value.strip_prefix("Bearer ").ok_or(TokenError::Malformed)?;
        Self::parse(token.trim())
    }

    /// The public id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The hash to store for this token.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of_secret(&self.secret)
    }

    /// The whole token, to hand to its user once. Spelled out (no
    /// `Display`) so that printing a secret is never an accident.
    pub fn reveal(&self) -> String {
        format!("{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }

    /// Whether this token's secret is the one `stored` was made from
    /// (constant time in the secret).
    pub fn matches(&self, stored: &TokenHash) -> bool {
        stored.matches(&self.secret)
    }
}

/// The SHA-256 of a token's secret: what the metadata stores.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    fn of_secret(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Parses the stored form: 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, TokenError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| TokenError::BadHash)?;
        Ok(Self(out))
    }

    /// The stored form: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `secret` hashes to this, compared in constant time.
    fn matches(&self, secret: &str) -> bool {
        let other = Self::of_secret(secret);
        bool::from(self.0.ct_eq(&other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(seed: u8) -> Token {
        let mut bytes = [0u8; RANDOM_BYTES];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed.wrapping_add(i as u8);
        }
        Token::from_random(&bytes)
    }

    #[test]
    fn tokens_round_trip_and_match_only_their_hash() {
        let t = token(1);
        let s = t.reveal();
        assert!(s.starts_with("fsx_"));
        assert_eq!(s.len(), 4 + ID_HEX_LEN + 1 + SECRET_HEX_LEN);
        let back = Token::parse(&s).unwrap_or_else(|_| token(0));
        assert_eq!(back, t);
        let stored = TokenHash::from_hex(&t.hash().to_hex()).unwrap_or(TokenHash([0; 32]));
        assert!(back.matches(&stored));
        assert!(!token(2).matches(&stored));
        assert!(check_id(t.id()).is_ok());
        // The secret never shows in debug output.
        assert!(!format!("{t:?}").contains(&s[4 + ID_HEX_LEN + 1..]));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = token(3).reveal();
        for bad in [
            "",
            "fsx_",
            "fsx__",
            "Bearer x",
            &good[..good.len() - 1],
            &good.to_uppercase(),
            &good.replace("fsx_", "fsy_"),
            &format!("{good}0"),
            &format!("{good}\0"),
        ] {
            assert_eq!(Token::parse(bad), Err(TokenError::Malformed), "{bad:?}");
        }
        assert!(check_id("0123456789abcdeg").is_err());
        assert_eq!(
            Token::from_bearer(&format!("Bearer  {good} ")),
            Token::parse(&good)
        );
        for bad in [
            good.clone(),
            format!("bearer {good}"),
            format!("Basic {good}"),
        ] {
            assert_eq!(Token::from_bearer(&bad), Err(TokenError::Malformed));
        }
        assert!(TokenHash::from_hex("zz").is_err());
    }
}
