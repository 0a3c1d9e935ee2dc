//! FNV-1a 64, the checksum of an extent's stored data section.
//!
//! The reference chose it; it is weak against adversaries (content keys use
//! SHA-256 for that) but catches torn and bit-flipped data. The loop is one
//! long dependency chain, so it runs at roughly a byte per multiply latency.

pub(crate) const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `data`.
pub fn fnv1a64(data: &[u8]) -> u64 {
    fnv1a64_continue(FNV_OFFSET_BASIS, data)
}

/// FNV-1a 64 carried on from state `h` over `data`: the checksum of a
/// concatenation, computed piece by piece.
pub(crate) fn fnv1a64_continue(h: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The checksum stored in a header for a data section: the reference writes
/// 0 for an empty extent rather than the FNV offset basis.
pub(crate) fn section_checksum(data: &[u8]) -> u64 {
    if data.is_empty() { 0 } else { fnv1a64(data) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Published FNV-1a 64 test values.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(section_checksum(b""), 0);
        assert_eq!(
            fnv1a64_continue(fnv1a64(b"foo"), b"bar"),
            fnv1a64(b"foobar")
        );
    }
}
