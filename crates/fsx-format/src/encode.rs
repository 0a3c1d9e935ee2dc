//! Encoding pages into an EXT1 blob.
//!
//! Raw output is byte-identical with the TypeScript reference's
//! `buildExtent` for the same pages: header, bitmap, then the present pages
//! in index order, with the reserved bytes zero.

use crate::checksum::{FNV_OFFSET_BASIS, fnv1a64_continue, section_checksum};
use crate::header::{Codec, FLAG_COMPRESSED, HEADER_LEN, Header, VERSION};
use crate::{FormatError, valid_page_size};

/// How to store the page data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Raw, as the reference writes (readable by the TypeScript fsx).
    #[default]
    None,
    /// A zstd frame at the given level (1..=22; 3 is zstd's default).
    ///
    /// When compression does not make the data section smaller the extent
    /// is written raw instead, so readers never pay to decompress nothing.
    Zstd {
        /// zstd compression level.
        level: i32,
    },
}

/// Encodes `pages` — `(index, bytes)` in strictly ascending index order,
/// each exactly `page_size` bytes — into an EXT1 blob.
pub fn encode<'p>(
    page_size: u32,
    pages: impl IntoIterator<Item = (u32, &'p [u8])>,
    compression: Compression,
) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    encode_into(&mut out, page_size, pages, compression)?;
    Ok(out)
}

/// Like [`encode`], but appends the blob to `out`, so the caller chooses
/// where it lives (a buffer placed for direct I/O). At most
/// [`raw_len`]`(page_size, count of pages)` bytes are appended; on an
/// error, none.
pub fn encode_into<'p>(
    out: &mut Vec<u8>,
    page_size: u32,
    pages: impl IntoIterator<Item = (u32, &'p [u8])>,
    compression: Compression,
) -> Result<(), FormatError> {
    if !valid_page_size(page_size) {
        return Err(FormatError::UnsupportedPageSize { page_size });
    }
    let pages: Vec<(u32, &[u8])> = pages.into_iter().collect();
    let mut previous: Option<u32> = None;
    for &(index, data) in &pages {
        if data.len() != page_size as usize {
            return Err(FormatError::PageLength {
                index,
                len: data.len(),
                page_size,
            });
        }
        if let Some(previous) = previous.filter(|&p| p >= index) {
            return Err(FormatError::PageOrder { index, previous });
        }
        previous = Some(index);
    }
    let page_count = match previous {
        // Index u32::MAX would need a page count of 2^32.
        Some(u32::MAX) => {
            return Err(FormatError::ExtentTooBig {
                pages: 1 << 32,
                page_size,
            });
        }
        Some(last) => last + 1,
        None => 0,
    };
    let data_len = pages.len() as u64 * u64::from(page_size);
    let extent_size = u32::try_from(data_len).map_err(|_| FormatError::ExtentTooBig {
        pages: pages.len() as u64,
        page_size,
    })?;

    let mut bitmap = vec![0u8; page_count.div_ceil(8) as usize];
    for &(index, _) in &pages {
        if let Some(b) = bitmap.get_mut((index / 8) as usize) {
            *b |= 1 << (index % 8);
        }
    }

    let mut header = Header {
        version: VERSION,
        flags: 0,
        page_size,
        page_count,
        extent_size,
        checksum: 0,
        codec: Codec::Raw,
        stored_len: 0,
    };

    if let Compression::Zstd { level } = compression
        && !pages.is_empty()
    {
        let mut raw = Vec::with_capacity(data_len as usize);
        for &(_, data) in &pages {
            raw.extend_from_slice(data);
        }
        let compressed = compress(&raw, level)?;
        if compressed.len() < raw.len() {
            header.flags = FLAG_COMPRESSED;
            header.codec = Codec::Zstd;
            header.stored_len = compressed.len() as u32; // smaller than raw, which fits u32
            header.checksum = section_checksum(&compressed);
            out.reserve(HEADER_LEN + bitmap.len() + compressed.len());
            out.extend_from_slice(&header.to_bytes());
            out.extend_from_slice(&bitmap);
            out.extend_from_slice(&compressed);
            return Ok(());
        }
    }

    let start = out.len();
    out.reserve(HEADER_LEN + bitmap.len() + data_len as usize);
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&bitmap);
    // Each page is checksummed right after it is copied, while it is
    // still in the L1 cache: one pass over memory instead of two.
    let mut fnv = FNV_OFFSET_BASIS;
    for &(_, data) in &pages {
        let at = out.len();
        out.extend_from_slice(data);
        fnv = fnv1a64_continue(fnv, out.get(at..).unwrap_or_default());
    }
    header.checksum = if pages.is_empty() { 0 } else { fnv };
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(())
}

/// The length of the raw blob of `pages` present pages whose highest
/// index is below `page_count`, each `page_size` bytes: the most
/// [`encode_into`] appends for them.
pub fn raw_len(page_size: u32, page_count: u32, pages: u32) -> usize {
    HEADER_LEN + page_count.div_ceil(8) as usize + pages as usize * page_size as usize
}

fn compress(raw: &[u8], level: i32) -> Result<Vec<u8>, FormatError> {
    let mut c =
        zstd::bulk::Compressor::new(level).map_err(|source| FormatError::Compress { source })?;
    // The frame's own checksum and size let the decoder catch a corrupt
    // frame even where FNV would collide.
    c.include_checksum(true)
        .map_err(|source| FormatError::Compress { source })?;
    c.include_contentsize(true)
        .map_err(|source| FormatError::Compress { source })?;
    c.compress(raw)
        .map_err(|source| FormatError::Compress { source })
}
