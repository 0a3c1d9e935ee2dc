//! Encoding pages into an EXT1 blob.
//!
//! Raw output is byte-identical with the TypeScript reference's
//! `buildExtent` for the same pages: header, bitmap, then the present pages
//! in index order, with the reserved bytes zero.

use crate::checksum::section_checksum;
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
            return Ok(assemble(&header, &bitmap, [compressed.as_slice()]));
        }
    }

    let out = assemble(&header, &bitmap, pages.iter().map(|&(_, d)| d));
    let data_start = HEADER_LEN + bitmap.len();
    header.checksum = section_checksum(out.get(data_start..).unwrap_or_default());
    let mut out = out;
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(out)
}

fn assemble<'d>(
    header: &Header,
    bitmap: &[u8],
    data: impl IntoIterator<Item = &'d [u8]>,
) -> Vec<u8> {
    let data_len = header.stored_data_len() as usize;
    let mut out = Vec::with_capacity(HEADER_LEN + bitmap.len() + data_len);
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(bitmap);
    for d in data {
        out.extend_from_slice(d);
    }
    out
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
