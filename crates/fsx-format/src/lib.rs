//! EXT1: the immutable, checksummed extent format of fsx.
//!
//! An extent packs up to `page count` fixed-size database pages into one blob.
//! The format is byte-compatible with the extents the TypeScript fsx has
//! already written in production, and this crate is the hardened reader of
//! them: every header field is checked against the buffer before it is used,
//! so a corrupt or hostile blob yields a typed [`FormatError`], never a panic
//! and never an allocation sized by an unchecked header field.
//!
//! # Layout (all integers little-endian)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `EXT1` |
//! | 4 | 2 | version = 1 |
//! | 6 | 2 | flags; bit 0 = "compressed" (other bits must be zero) |
//! | 8 | 4 | page size: a power of two from 512 to 65536 |
//! | 12 | 4 | page count = highest present page index + 1 (0 when empty) |
//! | 16 | 4 | extent size = present pages × page size (uncompressed bytes) |
//! | 20 | 8 | FNV-1a 64 of the stored data section (0 for an empty extent) |
//! | 28 | 1 | codec (fsx extension): 0 = raw, 1 = zstd |
//! | 29 | 3 | reserved, zero |
//! | 32 | 4 | stored data length when codec ≠ raw, else 0 (fsx extension) |
//! | 36 | 28 | reserved, zero |
//! | 64 | ⌈page count / 8⌉ | bitmap, bit *i* (LSB first in byte *i*/8) = page *i* present |
//! | 64 + bitmap | stored length | page data of present pages in index order |
//!
//! # Compression and the reference's flag bit
//!
//! The TypeScript writer sets flag bit 0 when compression is configured but
//! stores the data raw. The flag bit therefore cannot tell a reader how the
//! data is stored. fsx adds a codec byte in the (previously zero) reserved
//! area: codec 0 means raw whatever flag bit 0 says, so every reference file
//! keeps reading; codec 1 means a zstd frame and always comes with flag bit 0.
//! The checksum covers the stored bytes, so an extent is verified before any
//! decompression touches it.
//!
//! # Content keys
//!
//! Stores address an extent by [`content_key`]: `extent/ext-` followed by the
//! first 32 hex digits of the SHA-256 of the whole blob, as the reference does.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod checksum;
mod decode;
mod encode;
mod error;
mod header;
mod key;

pub use checksum::fnv1a64;
pub use decode::{Extent, ExtentView, PresentPages};
pub use encode::{Compression, encode, encode_into, raw_len};
pub use error::{ErrorKind, FormatError};
pub use header::{Codec, FLAG_COMPRESSED, HEADER_LEN, Header, MAGIC, VERSION};
pub use key::{CONTENT_KEY_PREFIX, content_key};

/// Smallest page size an extent may declare.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest page size an extent may declare.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Upper bound on the uncompressed page data of a compressed extent.
///
/// A compressed extent is the only case where decoding allocates more than
/// the input's length (zero pages compress a thousandfold), so the stated
/// size is capped: four times the largest extent a volume may be created
/// with (16 MiB).
pub const MAX_DECOMPRESSED_LEN: u32 = 64 << 20;

/// Whether `page_size` is one an extent may declare.
pub fn valid_page_size(page_size: u32) -> bool {
    (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}
