//! Content keys: the address of an extent in every store.
//!
//! Identical blobs get identical keys, which is what lets fsx store an extent
//! once across files, databases and branches. 128 bits of SHA-256 keep the
//! reference's key shape while leaving accidental collisions out of reach.

use sha2::{Digest, Sha256};

/// Prefix of every content key.
pub const CONTENT_KEY_PREFIX: &str = "extent/ext-";

/// The content key of a whole extent blob: `extent/ext-` and the first 32 hex
/// digits of its SHA-256.
pub fn content_key(blob: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(blob);
    let mut key = String::with_capacity(CONTENT_KEY_PREFIX.len() + 32);
    key.push_str(CONTENT_KEY_PREFIX);
    for byte in digest.iter().take(16) {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_extent_key_matches_reference() {
        // The 64-byte empty extent of the reference vectors.
        let mut blob = vec![0u8; 64];
        blob[..4].copy_from_slice(b"EXT1");
        blob[4] = 1;
        blob[8..12].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(
            content_key(&blob),
            "extent/ext-5dce7c40e0f4722a2572382b8a7f2402"
        );
    }
}
