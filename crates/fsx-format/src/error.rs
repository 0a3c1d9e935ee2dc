//! Errors of encoding and decoding, classified by what the caller does next.
//!
//! A decode error always means the blob is not a usable extent; callers that
//! hold another copy (another tier, another replica) should fetch it rather
//! than retry the same bytes.

/// What the caller of the codec should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The blob is damaged or not an extent: read another copy.
    Corrupt,
    /// The blob is a well-formed extent of a kind this build cannot read
    /// (newer version or codec): upgrade fsx.
    Unsupported,
    /// The caller asked for something the format cannot express: fix the call.
    InvalidInput,
}

/// An error from the EXT1 codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The buffer ends before the structure its header describes.
    #[error("truncated extent: {needed} bytes needed for {part}, buffer holds {actual}")]
    Truncated {
        /// Which part of the extent did not fit.
        part: &'static str,
        /// Bytes the header implies.
        needed: u64,
        /// Bytes present.
        actual: usize,
    },
    /// The buffer continues past the end of the stated data section.
    #[error("extent has {extra} trailing bytes after its {expected}-byte body")]
    TrailingBytes {
        /// Length the header implies.
        expected: u64,
        /// Bytes beyond it.
        extra: u64,
    },
    /// The first four bytes are not `EXT1`.
    #[error("not an EXT1 extent: magic is {found:02x?}, expected \"EXT1\"")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A version this build does not know.
    #[error("unsupported extent version {version} (this build reads version 1)")]
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// Flag bits this build does not know.
    #[error("unsupported extent flags {flags:#06x} (only bit 0, compressed, is defined)")]
    UnsupportedFlags {
        /// The flags found.
        flags: u16,
    },
    /// A codec id this build does not know.
    #[error("unsupported extent codec {codec} (known: 0 raw, 1 zstd)")]
    UnsupportedCodec {
        /// The codec id found.
        codec: u8,
    },
    /// A reserved header byte is not zero.
    #[error("reserved header byte at offset {offset} is {value:#04x}, must be zero")]
    ReservedNotZero {
        /// Offset of the first nonzero reserved byte.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// The header's codec fields contradict each other.
    #[error("inconsistent codec fields: {detail}")]
    CodecMismatch {
        /// What disagrees.
        detail: &'static str,
    },
    /// A blob states a page size outside 512..=65536 or not a power of two.
    #[error("invalid page size {page_size}: must be a power of two from 512 to 65536")]
    InvalidPageSize {
        /// The page size given.
        page_size: u32,
    },
    /// The encoder was given a page size outside 512..=65536 or not a power
    /// of two.
    #[error("page size {page_size} is not supported: use a power of two from 512 to 65536")]
    UnsupportedPageSize {
        /// The page size given.
        page_size: u32,
    },
    /// The stated page count disagrees with the bitmap.
    #[error("page count {page_count} disagrees with the bitmap: {detail}")]
    PageCountMismatch {
        /// The page count stated in the header.
        page_count: u32,
        /// What disagrees.
        detail: &'static str,
    },
    /// The stated data size is not present pages × page size.
    #[error(
        "extent size {stated} disagrees with the bitmap: {present} present pages of {page_size} bytes make {expected}"
    )]
    DataSizeMismatch {
        /// The extent size stated in the header.
        stated: u32,
        /// Present pages according to the bitmap.
        present: u64,
        /// The page size.
        page_size: u32,
        /// The size the bitmap implies.
        expected: u64,
    },
    /// Decompressed data would exceed [`crate::MAX_DECOMPRESSED_LEN`].
    #[error("compressed extent states {stated} bytes of page data, above the limit of {limit}")]
    TooLarge {
        /// The stated uncompressed size.
        stated: u64,
        /// The limit.
        limit: u32,
    },
    /// The stored checksum does not match the data.
    #[error("checksum mismatch: header says {stored:016x}, data hashes to {computed:016x}")]
    ChecksumMismatch {
        /// Checksum in the header.
        stored: u64,
        /// Checksum of the data.
        computed: u64,
    },
    /// The compressed data section does not decompress to the stated size.
    #[error("compressed page data is damaged: {detail}")]
    Decompress {
        /// What went wrong.
        detail: String,
        /// The decompressor's error, when it gave one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Compression failed while encoding.
    #[error("zstd compression failed")]
    Compress {
        /// The compressor's error.
        #[source]
        source: std::io::Error,
    },
    /// A page given to the encoder is not exactly one page long.
    #[error("page {index} is {len} bytes, the extent's page size is {page_size}")]
    PageLength {
        /// Page index.
        index: u32,
        /// Its length.
        len: usize,
        /// The page size.
        page_size: u32,
    },
    /// Pages given to the encoder are not in strictly ascending index order.
    #[error(
        "page {index} follows page {previous}: pages must be given in strictly ascending order"
    )]
    PageOrder {
        /// The offending index.
        index: u32,
        /// The index before it.
        previous: u32,
    },
    /// The encoded data section would not fit the header's 32-bit size fields.
    #[error("{pages} pages of {page_size} bytes exceed the 4 GiB an extent can describe")]
    ExtentTooBig {
        /// Number of pages given.
        pages: u64,
        /// The page size.
        page_size: u32,
    },
}

impl FormatError {
    /// What the caller should do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::UnsupportedVersion { .. }
            | Self::UnsupportedFlags { .. }
            | Self::UnsupportedCodec { .. } => ErrorKind::Unsupported,
            Self::Compress { .. }
            | Self::UnsupportedPageSize { .. }
            | Self::PageLength { .. }
            | Self::PageOrder { .. }
            | Self::ExtentTooBig { .. } => ErrorKind::InvalidInput,
            Self::InvalidPageSize { .. }
            | Self::Truncated { .. }
            | Self::TrailingBytes { .. }
            | Self::BadMagic { .. }
            | Self::ReservedNotZero { .. }
            | Self::CodecMismatch { .. }
            | Self::PageCountMismatch { .. }
            | Self::DataSizeMismatch { .. }
            | Self::TooLarge { .. }
            | Self::ChecksumMismatch { .. }
            | Self::Decompress { .. } => ErrorKind::Corrupt,
        }
    }
}
