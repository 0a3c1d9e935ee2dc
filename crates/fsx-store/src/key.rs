//! Validated object keys.
//!
//! An [`ObjectKey`] can only be built through [`ObjectKey::new`], so a bad
//! key is rejected with [`ErrorKind::InvalidInput`](crate::ErrorKind) before
//! any backend sees it: no backend ever has to defend against `..`, an
//! absolute path or a control character.
//!
//! Rules (the intersection of what S3, R2, Cloudflare KV, Redis and a POSIX
//! directory accept without escaping surprises):
//!
//! - 1 to [`MAX_KEY_LEN`] bytes of UTF-8 (512 is Cloudflare KV's key limit);
//! - `/` separates segments; no leading `/`, no empty segment (`//` or a
//!   trailing `/`), no `.` or `..` segment;
//! - no control characters (Unicode `Cc`), no backslash.
//!
//! Keys order by their UTF-8 bytes, which is the order S3 and every backend's
//! `list` return.
//!
//! Content keys name immutable extents by what they hold:
//! `extent/ext-<32 lowercase hex>`, the first 16 bytes of the SHA-256 of the
//! whole blob. [`ObjectKey::content_digest_prefix`] recovers the digest so a
//! reader can verify bytes against the key alone.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};

/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Directory of content-addressed extent keys (the format crate owns it).
pub use fsx_format::CONTENT_KEY_PREFIX;

/// Number of hex digits of the SHA-256 kept in a content key.
const CONTENT_HEX_LEN: usize = 32;

/// A validated key. Cheap to clone; compares and orders by bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validate `key` against the rules in the module docs.
    pub fn new(key: &str) -> Result<Self> {
        if key.is_empty() {
            return Err(StoreError::invalid("object key is empty"));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::invalid(format!(
                "object key is {} bytes, the limit is {MAX_KEY_LEN}",
                key.len()
            )));
        }
        check_chars(key)?;
        if key.starts_with('/') {
            return Err(StoreError::invalid(format!(
                "object key {key:?} starts with '/'"
            )));
        }
        for segment in key.split('/') {
            check_segment(key, segment)?;
        }
        Ok(Self(key.to_owned()))
    }

    /// The content key of `bytes`: `extent/ext-<first 32 hex of SHA-256>`.
    pub fn for_content(bytes: &[u8]) -> Self {
        Self(fsx_format::content_key(bytes))
    }

    /// If this is a content key, the 16-byte SHA-256 prefix it names.
    pub fn content_digest_prefix(&self) -> Option<[u8; CONTENT_HEX_LEN / 2]> {
        let hex = self.0.strip_prefix(CONTENT_KEY_PREFIX)?;
        if hex.len() != CONTENT_HEX_LEN || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; CONTENT_HEX_LEN / 2];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(out)
    }

    /// For a content key, check that `bytes` hash to it. Other keys pass.
    ///
    /// Returns [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) on mismatch.
    pub fn verify_content(&self, bytes: &[u8]) -> Result<()> {
        let Some(expected) = self.content_digest_prefix() else {
            return Ok(());
        };
        let digest = Sha256::digest(bytes);
        if digest[..expected.len()] == expected {
            Ok(())
        } else {
            Err(StoreError::corrupt(format!(
                "content of {self} hashes to {}, not to its key",
                hex::encode(&digest[..expected.len()])
            )))
        }
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validate a `list` prefix. A prefix is any string that could start a valid
/// key: it may be empty or end with `/`, and its last segment may be partial,
/// but the complete segments before it follow the key rules.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.len() > MAX_KEY_LEN {
        return Err(StoreError::invalid(format!(
            "list prefix is {} bytes, the limit is {MAX_KEY_LEN}",
            prefix.len()
        )));
    }
    check_chars(prefix)?;
    if prefix.starts_with('/') {
        return Err(StoreError::invalid(format!(
            "list prefix {prefix:?} starts with '/'"
        )));
    }
    // Every segment but the last is complete; the last may be the beginning
    // of a longer segment (e.g. `ext-ab` matching `ext-abcd…`).
    let mut segments: Vec<&str> = prefix.split('/').collect();
    segments.pop();
    for segment in segments {
        check_segment(prefix, segment)?;
    }
    Ok(())
}

fn check_chars(key: &str) -> Result<()> {
    if let Some(c) = key.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(StoreError::invalid(format!(
            "object key {key:?} contains the forbidden character {c:?}"
        )));
    }
    Ok(())
}

fn check_segment(key: &str, segment: &str) -> Result<()> {
    match segment {
        "" => Err(StoreError::invalid(format!(
            "object key {key:?} has an empty segment"
        ))),
        "." | ".." => Err(StoreError::invalid(format!(
            "object key {key:?} has a relative segment {segment:?}"
        ))),
        _ => Ok(()),
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound because the derived `Eq`/`Ord`/`Hash` of the one-field newtype are
// exactly `String`'s, so maps keyed by `ObjectKey` can be queried by `&str`.
impl std::borrow::Borrow<str> for ObjectKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "extent/ext-00",
            "a b/ü/ключ",
            ".hidden/x",
            "x.y/z..w",
            "a+b%20c",
        ] {
            assert_eq!(ObjectKey::new(key).unwrap().as_str(), key);
        }
        ObjectKey::new(&"k".repeat(MAX_KEY_LEN)).unwrap();
    }

    #[test]
    fn rejects_bad_keys() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for key in [
            "", "/a", "a//b", "a/", "..", "a/../b", "./a", "a/.", "a\nb", "a\u{0}b", "a\\b",
            "a\u{85}b", &long,
        ] {
            let err = ObjectKey::new(key).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{key:?}");
        }
    }

    #[test]
    fn prefixes() {
        for p in ["", "a", "a/", "extent/ext-ab", "a/."] {
            validate_prefix(p).unwrap();
        }
        for p in ["/a", "a//", "../x", "a\tb"] {
            assert_eq!(
                validate_prefix(p).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{p:?}"
            );
        }
    }

    #[test]
    fn content_keys_round_trip_and_verify() {
        let key = ObjectKey::for_content(b"hello");
        // SHA-256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e...
        assert_eq!(key.as_str(), "extent/ext-2cf24dba5fb0a30e26e83b2ac5b9e29e");
        assert!(key.content_digest_prefix().is_some());
        key.verify_content(b"hello").unwrap();
        assert_eq!(
            key.verify_content(b"hellO").unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        let plain = ObjectKey::new("extent/ext-zz").unwrap();
        assert!(plain.content_digest_prefix().is_none());
        plain.verify_content(b"anything").unwrap();
    }
}
