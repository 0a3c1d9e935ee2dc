//! The fixed 64-byte EXT1 header: parsing with every field checked, and
//! serialisation.
//!
//! Parsing a header looks at the first 64 bytes only; whether the rest of the
//! buffer matches what the header states is [`crate::ExtentView`]'s job.

use crate::{FormatError, valid_page_size};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;
/// The four magic bytes, `EXT1`.
pub const MAGIC: [u8; 4] = *b"EXT1";
/// The only format version.
pub const VERSION: u16 = 1;
/// Flag bit 0: "compressed" as the reference writes it (see [`Codec`]).
pub const FLAG_COMPRESSED: u16 = 1;

const OFF_VERSION: usize = 4;
const OFF_FLAGS: usize = 6;
const OFF_PAGE_SIZE: usize = 8;
const OFF_PAGE_COUNT: usize = 12;
const OFF_EXTENT_SIZE: usize = 16;
const OFF_CHECKSUM: usize = 20;
const OFF_CODEC: usize = 28;
const OFF_STORED_LEN: usize = 32;
/// Reserved ranges that must read as zero.
const RESERVED: [(usize, usize); 2] = [(29, 32), (36, HEADER_LEN)];

/// How the page-data section is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Page data stored as is (every extent the reference wrote).
    Raw,
    /// Page data is one zstd frame.
    Zstd,
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Self::Raw => 0,
            Self::Zstd => 1,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw",
            Self::Zstd => "zstd",
        })
    }
}

/// The decoded fields of an EXT1 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version (always [`VERSION`] once parsed).
    pub version: u16,
    /// Flag bits as stored.
    pub flags: u16,
    /// Bytes per page.
    pub page_size: u32,
    /// Highest present page index + 1, or 0 for an empty extent.
    pub page_count: u32,
    /// Uncompressed bytes of page data: present pages × page size.
    pub extent_size: u32,
    /// FNV-1a 64 of the stored data section.
    pub checksum: u64,
    /// How the data section is stored.
    pub codec: Codec,
    /// Length of the stored data section when compressed (0 when raw).
    pub stored_len: u32,
}

fn u16_at(h: &[u8; HEADER_LEN], off: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&h[off..off + 2]);
    u16::from_le_bytes(b)
}

fn u32_at(h: &[u8; HEADER_LEN], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&h[off..off + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(h: &[u8; HEADER_LEN], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[off..off + 8]);
    u64::from_le_bytes(b)
}

impl Header {
    /// Parses and checks the header at the start of `buf`.
    ///
    /// Checks magic, version, flags, codec, reserved bytes and page size;
    /// the counts are checked against the rest of the buffer by
    /// [`crate::ExtentView::parse`].
    pub fn parse(buf: &[u8]) -> Result<Self, FormatError> {
        // A wrong magic says more about a short file than "truncated" does.
        if let Some(&[a, b, c, d]) = buf.get(..4)
            && [a, b, c, d] != MAGIC
        {
            return Err(FormatError::BadMagic {
                found: [a, b, c, d],
            });
        }
        let h: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FormatError::Truncated {
                part: "the header",
                needed: HEADER_LEN as u64,
                actual: buf.len(),
            })?;
        let magic = [h[0], h[1], h[2], h[3]];
        if magic != MAGIC {
            return Err(FormatError::BadMagic { found: magic });
        }
        let version = u16_at(h, OFF_VERSION);
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion { version });
        }
        let flags = u16_at(h, OFF_FLAGS);
        if flags & !FLAG_COMPRESSED != 0 {
            return Err(FormatError::UnsupportedFlags { flags });
        }
        let codec = match h[OFF_CODEC] {
            0 => Codec::Raw,
            1 => Codec::Zstd,
            codec => return Err(FormatError::UnsupportedCodec { codec }),
        };
        for (start, end) in RESERVED {
            if let Some((i, &value)) = h[start..end].iter().enumerate().find(|(_, b)| **b != 0) {
                return Err(FormatError::ReservedNotZero {
                    offset: start + i,
                    value,
                });
            }
        }
        let stored_len = u32_at(h, OFF_STORED_LEN);
        match codec {
            Codec::Raw if stored_len != 0 => {
                return Err(FormatError::CodecMismatch {
                    detail: "raw extent with a nonzero stored length",
                });
            }
            Codec::Zstd if flags & FLAG_COMPRESSED == 0 => {
                return Err(FormatError::CodecMismatch {
                    detail: "zstd codec without the compressed flag",
                });
            }
            _ => {}
        }
        let page_size = u32_at(h, OFF_PAGE_SIZE);
        if !valid_page_size(page_size) {
            return Err(FormatError::InvalidPageSize { page_size });
        }
        Ok(Self {
            version,
            flags,
            page_size,
            page_count: u32_at(h, OFF_PAGE_COUNT),
            extent_size: u32_at(h, OFF_EXTENT_SIZE),
            checksum: u64_at(h, OFF_CHECKSUM),
            codec,
            stored_len,
        })
    }

    /// Length in bytes of the page bitmap.
    pub fn bitmap_len(&self) -> usize {
        // u32 / 8 always fits in usize on the 32- and 64-bit targets fsx runs on.
        self.page_count.div_ceil(8) as usize
    }

    /// Length of the data section as it lies in the blob.
    pub fn stored_data_len(&self) -> u32 {
        match self.codec {
            Codec::Raw => self.extent_size,
            Codec::Zstd => self.stored_len,
        }
    }

    /// Whether flag bit 0 ("compressed") is set. For the reference's files
    /// this does not mean the data is compressed; [`Header::codec`] says how
    /// it is stored.
    pub fn compressed_flag(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// The 64 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&self.version.to_le_bytes());
        h[OFF_FLAGS..OFF_FLAGS + 2].copy_from_slice(&self.flags.to_le_bytes());
        h[OFF_PAGE_SIZE..OFF_PAGE_SIZE + 4].copy_from_slice(&self.page_size.to_le_bytes());
        h[OFF_PAGE_COUNT..OFF_PAGE_COUNT + 4].copy_from_slice(&self.page_count.to_le_bytes());
        h[OFF_EXTENT_SIZE..OFF_EXTENT_SIZE + 4].copy_from_slice(&self.extent_size.to_le_bytes());
        h[OFF_CHECKSUM..OFF_CHECKSUM + 8].copy_from_slice(&self.checksum.to_le_bytes());
        h[OFF_CODEC] = self.codec.id();
        h[OFF_STORED_LEN..OFF_STORED_LEN + 4].copy_from_slice(&self.stored_len.to_le_bytes());
        h
    }
}
