//! Hardened decoding: a borrowed view that checks the whole structure, and a
//! decoded extent that serves pages without copying.
//!
//! Order of checks, each before anything relies on it: header fields
//! ([`Header::parse`]); the bitmap fits the buffer; the stated page count is
//! exactly the highest set bit + 1 and no bit past it is set; the stated
//! extent size is exactly popcount × page size; the buffer ends exactly where
//! the data section does. Only then is the checksum computed, and only a
//! verified compressed section is handed to the decompressor, into a buffer
//! of the (already bounded) stated size. Parsing allocates nothing.

use std::borrow::Cow;

use crate::checksum::section_checksum;
use crate::header::{Codec, HEADER_LEN, Header};
use crate::{FormatError, MAX_DECOMPRESSED_LEN};

/// A structurally valid extent, borrowed from its buffer; the checksum is
/// not yet verified (see [`ExtentView::verify`]).
#[derive(Debug, Clone, Copy)]
pub struct ExtentView<'a> {
    header: Header,
    bitmap: &'a [u8],
    stored: &'a [u8],
    present: u32,
}

impl<'a> ExtentView<'a> {
    /// Checks the structure of `buf` against its header (everything but the
    /// checksum). Allocates nothing.
    pub fn parse(buf: &'a [u8]) -> Result<Self, FormatError> {
        let header = Header::parse(buf)?;
        let body = buf.get(HEADER_LEN..).unwrap_or_default();
        let bitmap = body
            .get(..header.bitmap_len())
            .ok_or(FormatError::Truncated {
                part: "the page bitmap",
                needed: (HEADER_LEN + header.bitmap_len()) as u64,
                actual: buf.len(),
            })?;
        let present = check_bitmap(&header, bitmap)?;

        let expected = u64::from(present) * u64::from(header.page_size);
        if u64::from(header.extent_size) != expected {
            return Err(FormatError::DataSizeMismatch {
                stated: header.extent_size,
                present: u64::from(present),
                page_size: header.page_size,
                expected,
            });
        }
        if header.codec == Codec::Zstd && header.extent_size > MAX_DECOMPRESSED_LEN {
            return Err(FormatError::TooLarge {
                stated: u64::from(header.extent_size),
                limit: MAX_DECOMPRESSED_LEN,
            });
        }

        let rest = body.get(bitmap.len()..).unwrap_or_default();
        let stored_len = header.stored_data_len() as usize;
        let total = (HEADER_LEN + bitmap.len()) as u64 + stored_len as u64;
        let stored = rest.get(..stored_len).ok_or(FormatError::Truncated {
            part: "the page data",
            needed: total,
            actual: buf.len(),
        })?;
        if rest.len() > stored_len {
            return Err(FormatError::TrailingBytes {
                expected: total,
                extra: (rest.len() - stored_len) as u64,
            });
        }
        if present == 0 && header.checksum != 0 {
            // The reference writes 0 for an empty data section.
            return Err(FormatError::ChecksumMismatch {
                stored: header.checksum,
                computed: 0,
            });
        }
        Ok(Self {
            header,
            bitmap,
            stored,
            present,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Indices of the present pages, ascending, read from the bitmap.
    pub fn present_pages(&self) -> PresentPages<'a> {
        PresentPages::new(self.bitmap)
    }

    /// Number of present pages.
    pub fn present_count(&self) -> u32 {
        self.present
    }

    /// Whether page `index` is present.
    pub fn contains(&self, index: u32) -> bool {
        bit(self.bitmap, index)
    }

    /// The data section as stored (compressed or raw).
    pub fn stored_data(&self) -> &'a [u8] {
        self.stored
    }

    /// The checksum of the stored data section.
    pub fn computed_checksum(&self) -> u64 {
        section_checksum(self.stored)
    }

    /// Checks the stored checksum against the data.
    pub fn verify(&self) -> Result<(), FormatError> {
        let computed = self.computed_checksum();
        if computed == self.header.checksum {
            Ok(())
        } else {
            Err(FormatError::ChecksumMismatch {
                stored: self.header.checksum,
                computed,
            })
        }
    }
}

/// Checks the bitmap against the header's page count; returns the number of
/// present pages.
fn check_bitmap(header: &Header, bitmap: &[u8]) -> Result<u32, FormatError> {
    let page_count = header.page_count;
    let Some(&last) = bitmap.last() else {
        return Ok(0);
    };
    let used_bits = page_count - (bitmap.len() as u32 - 1) * 8; // 1..=8
    if used_bits < 8 && last >> used_bits != 0 {
        return Err(FormatError::PageCountMismatch {
            page_count,
            detail: "a page past the page count is marked present",
        });
    }
    if last & (1 << (used_bits - 1)) == 0 {
        return Err(FormatError::PageCountMismatch {
            page_count,
            detail: "the last page is absent (page count must be the highest present index + 1)",
        });
    }
    Ok(popcount(bitmap))
}

fn popcount(bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(8);
    let mut n: u32 = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        n += u64::from_le_bytes(w).count_ones();
    }
    n + chunks
        .remainder()
        .iter()
        .map(|b| b.count_ones())
        .sum::<u32>()
}

fn bit(bitmap: &[u8], index: u32) -> bool {
    bitmap
        .get((index / 8) as usize)
        .is_some_and(|b| b & (1 << (index % 8)) != 0)
}

/// Number of present pages with an index below `index`.
fn rank(bitmap: &[u8], index: u32) -> u32 {
    let whole = (index / 8) as usize;
    let below = bitmap.get(..whole).map_or(0, popcount);
    let partial = bitmap
        .get(whole)
        .map_or(0, |b| (b & ((1u8 << (index % 8)) - 1)).count_ones());
    below + partial
}

/// Iterator over the indices of present pages, ascending.
#[derive(Debug, Clone)]
pub struct PresentPages<'a> {
    bytes: std::slice::Iter<'a, u8>,
    base: u32,
    current: u8,
}

impl<'a> PresentPages<'a> {
    fn new(bitmap: &'a [u8]) -> Self {
        let mut bytes = bitmap.iter();
        let current = bytes.next().copied().unwrap_or(0);
        Self {
            bytes,
            base: 0,
            current,
        }
    }
}

impl Iterator for PresentPages<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.current == 0 {
            self.current = *self.bytes.next()?;
            self.base += 8;
        }
        let bit = self.current.trailing_zeros();
        self.current &= self.current - 1;
        Some(self.base + bit)
    }
}

/// A verified, decoded extent whose pages can be read directly.
///
/// For raw extents the page data is borrowed from the input buffer, so
/// reading a page copies nothing; compressed extents own their decompressed
/// data.
#[derive(Debug, Clone)]
pub struct Extent<'a> {
    view: ExtentView<'a>,
    data: Cow<'a, [u8]>,
}

impl<'a> Extent<'a> {
    /// Parses `buf`, verifies its checksum and decompresses it if needed.
    pub fn decode(buf: &'a [u8]) -> Result<Self, FormatError> {
        let view = ExtentView::parse(buf)?;
        view.verify()?;
        Self::from_view(view)
    }

    /// Like [`Extent::decode`] but skips the FNV checksum, for callers that
    /// have already verified the whole blob against its content key.
    pub fn decode_trusted(buf: &'a [u8]) -> Result<Self, FormatError> {
        Self::from_view(ExtentView::parse(buf)?)
    }

    fn from_view(view: ExtentView<'a>) -> Result<Self, FormatError> {
        let data = match view.header.codec {
            Codec::Raw => Cow::Borrowed(view.stored),
            Codec::Zstd => Cow::Owned(decompress(view.stored, view.header.extent_size)?),
        };
        Ok(Self { view, data })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.view.header
    }

    /// The structural view this extent was decoded from.
    pub fn view(&self) -> &ExtentView<'a> {
        &self.view
    }

    /// Indices of the present pages, ascending.
    pub fn present_pages(&self) -> PresentPages<'a> {
        self.view.present_pages()
    }

    /// The bytes of page `index`, or `None` when it is absent.
    pub fn page(&self, index: u32) -> Option<&[u8]> {
        if !self.view.contains(index) {
            return None;
        }
        let size = self.view.header.page_size as usize;
        let start = rank(self.view.bitmap, index) as usize * size;
        self.data.get(start..start + size)
    }

    /// The present pages with their bytes, ascending by index.
    pub fn pages(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        let size = self.view.header.page_size as usize;
        self.present_pages().zip(self.data.chunks_exact(size))
    }

    /// The uncompressed page data of all present pages, in index order.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

fn decompress(stored: &[u8], extent_size: u32) -> Result<Vec<u8>, FormatError> {
    let want = extent_size as usize;
    // Capacity is the exact stated size, already bounded by the bitmap and
    // MAX_DECOMPRESSED_LEN; the decompressor fails rather than grow it.
    let mut out = Vec::with_capacity(want);
    zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(stored, &mut out))
        .map_err(|e| FormatError::Decompress {
            detail: "zstd frame does not decode to the stated size".into(),
            source: Some(e),
        })?;
    if out.len() != want {
        return Err(FormatError::Decompress {
            detail: format!("decoded {} bytes, header states {want}", out.len()),
            source: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_and_iteration_agree() {
        let bitmap = [0b1010_0101u8, 0, 0b1000_0001, 0xff, 0x01];
        let pages: Vec<u32> = PresentPages::new(&bitmap).collect();
        assert_eq!(
            pages,
            vec![0, 2, 5, 7, 16, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32]
        );
        for (r, &p) in pages.iter().enumerate() {
            assert_eq!(rank(&bitmap, p), r as u32);
            assert!(bit(&bitmap, p));
        }
        assert_eq!(popcount(&bitmap), pages.len() as u32);
        assert!(!bit(&bitmap, 1000));
    }
}
