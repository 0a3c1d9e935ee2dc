//! Checksums of dirty-page rows (schema version 5).
//!
//! A page in the durable dirty buffer is the only copy of bytes an
//! application has synced but fsx has not yet packed into an extent, so it
//! must be as self-checking as an extent: a flipped bit in `meta.db` (or a
//! PostgreSQL page) has to become a `Corrupt` error, never wrong bytes.
//!
//! Every `fsx_dirty_pages` row carries `crc`, a 64-bit XXH3 (stored as the
//! `i64` with the same bits) of the row's **file id, page number and data**
//! — the data, or a fixed marker for a hole. Covering the key columns
//! means a flip that moves a row to another page or file is caught too;
//! the layer is left out on purpose, because folding a layer moves its rows
//! into its child (`UPDATE … SET layer`), which must not invalidate them.
//! The sequence number is left out too: it only decides which pages a pack
//! consumes, never what a read returns.
//!
//! XXH3 rather than SHA: the checksum is computed inside `sync` (the commit
//! path), where a 4 KiB page costs well under a microsecond; it guards
//! against accidents (bit rot, torn or misdirected writes, hand edits), not
//! against an attacker who can write the database.
//!
//! Rows written by a build before version 5 get their checksums from the
//! 4 → 5 migration (`backfill` in each engine). A row whose `crc` is NULL
//! after that is reported as corrupt.

use crate::contract::{FileId, LayerId};
use crate::error::{MetaError, MetaErrorKind, Result};

/// What a hole hashes as (a hole has no bytes, but its row still has a
/// checksum, so a flip that turns data into NULL is caught).
const HOLE: &[u8] = b"fsx-hole";

/// The checksum of dirty page `page_no` of file `file_id` holding `data`
/// (`None`: a hole).
pub fn page_checksum(file_id: FileId, page_no: u64, data: Option<&[u8]>) -> i64 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(&file_id.to_le_bytes());
    h.update(&page_no.to_le_bytes());
    match data {
        Some(d) => {
            h.update(&[1]);
            h.update(d);
        }
        None => {
            h.update(&[0]);
            h.update(HOLE);
        }
    }
    // The column stores the digest's 64 bits as they are.
    h.digest().cast_signed()
}

/// Checks a dirty-page row read back from the database; a mismatch is a
/// `Corrupt` error naming the file, page and layer.
pub fn verify_page(
    layer: LayerId,
    file_id: FileId,
    page_no: u64,
    data: Option<&[u8]>,
    crc: Option<i64>,
) -> Result<()> {
    match crc {
        Some(c) if c == page_checksum(file_id, page_no, data) => Ok(()),
        Some(_) => Err(MetaError::new(
            MetaErrorKind::Corrupt,
            format!(
                "dirty page {page_no} of file #{file_id} in layer {layer} fails its checksum: \
                 the metadata database is damaged; restore it from a backup or rewrite the page \
                 (`fsx fsck` lists every damaged page)"
            ),
        )),
        None => Err(MetaError::new(
            MetaErrorKind::Corrupt,
            format!(
                "dirty page {page_no} of file #{file_id} in layer {layer} has no checksum: \
                 the metadata database is damaged (`fsx fsck` lists every damaged page)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_covers_file_page_and_bytes() {
        let d = vec![7u8; 4096];
        let base = page_checksum(3, 9, Some(&d));
        assert_eq!(base, page_checksum(3, 9, Some(&d)));
        assert_ne!(base, page_checksum(4, 9, Some(&d)));
        assert_ne!(base, page_checksum(3, 8, Some(&d)));
        assert_ne!(base, page_checksum(3, 9, None));
        let mut flipped = d.clone();
        flipped[100] ^= 0x10;
        assert_ne!(base, page_checksum(3, 9, Some(&flipped)));
        assert!(verify_page(1, 3, 9, Some(&d), Some(base)).is_ok());
        let e = verify_page(1, 3, 9, Some(&flipped), Some(base)).unwrap_err();
        assert_eq!(e.kind(), MetaErrorKind::Corrupt);
        assert!(e.message().contains("page 9 of file #3 in layer 1"));
        assert!(verify_page(1, 3, 9, None, None).is_err());
    }
}
