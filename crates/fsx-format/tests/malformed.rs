//! Every kind of malformed extent is rejected with its own error, without a
//! panic, including the two the reference accepts: a data size that
//! disagrees with the bitmap, and a page count far beyond the buffer.

use fsx_format::{Compression, ErrorKind, Extent, ExtentView, FormatError, Header, encode};

fn sparse() -> Vec<u8> {
    let a = vec![1u8; 4096];
    let b = vec![2u8; 4096];
    encode(
        4096,
        [(0, a.as_slice()), (2, b.as_slice()), (9, a.as_slice())],
        Compression::None,
    )
    .unwrap()
}

fn set_u32(blob: &mut [u8], off: usize, v: u32) {
    blob[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn decode_err(blob: &[u8]) -> FormatError {
    let err = Extent::decode(blob).expect_err("malformed extent must be rejected");
    // The error always renders to a message an operator can act on.
    assert!(!err.to_string().is_empty());
    err
}

#[test]
fn bad_magic() {
    let mut b = sparse();
    b[0] = b'X';
    assert!(matches!(decode_err(&b), FormatError::BadMagic { found } if &found == b"XXT1"));
}

#[test]
fn unsupported_version() {
    let mut b = sparse();
    b[4] = 2;
    let e = decode_err(&b);
    assert!(matches!(e, FormatError::UnsupportedVersion { version: 2 }));
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[test]
fn unknown_flags_and_codec() {
    let mut b = sparse();
    b[6] = 0x02;
    assert!(matches!(
        decode_err(&b),
        FormatError::UnsupportedFlags { flags: 2 }
    ));
    let mut b = sparse();
    b[28] = 7;
    assert!(matches!(
        decode_err(&b),
        FormatError::UnsupportedCodec { codec: 7 }
    ));
    let mut b = sparse();
    b[28] = 1; // zstd without the compressed flag
    assert!(matches!(decode_err(&b), FormatError::CodecMismatch { .. }));
    let mut b = sparse();
    set_u32(&mut b, 32, 10); // raw extent with a stored length
    assert!(matches!(decode_err(&b), FormatError::CodecMismatch { .. }));
}

#[test]
fn reserved_bytes_must_be_zero() {
    for off in [29, 31, 36, 63] {
        let mut b = sparse();
        b[off] = 0x80;
        assert!(
            matches!(decode_err(&b), FormatError::ReservedNotZero { offset, value: 0x80 } if offset == off),
            "offset {off}"
        );
    }
}

#[test]
fn truncated_anywhere() {
    let b = sparse();
    for len in [0, 1, 4, 63, 64, 65, 66, 100, b.len() - 1] {
        let e = decode_err(&b[..len]);
        assert!(matches!(e, FormatError::Truncated { .. }), "len {len}: {e}");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }
}

#[test]
fn trailing_bytes() {
    let mut b = sparse();
    b.push(0);
    assert!(matches!(
        decode_err(&b),
        FormatError::TrailingBytes { extra: 1, .. }
    ));
}

#[test]
fn invalid_page_sizes() {
    for ps in [0u32, 1, 256, 4095, 4097, 131072, u32::MAX] {
        let mut b = sparse();
        set_u32(&mut b, 8, ps);
        assert!(
            matches!(decode_err(&b), FormatError::InvalidPageSize { page_size } if page_size == ps)
        );
        let e = encode(ps, std::iter::empty(), Compression::None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn huge_page_count_is_rejected_without_allocating() {
    // The reference would allocate a bitmap for 4 billion pages.
    let mut b = sparse();
    set_u32(&mut b, 12, u32::MAX);
    assert!(matches!(
        decode_err(&b),
        FormatError::Truncated {
            part: "the page bitmap",
            ..
        }
    ));
}

#[test]
fn page_count_disagreeing_with_bitmap() {
    // Last page absent: page count 10 claims page 9, so drop bit 9.
    let mut b = sparse();
    b[65] &= !0b10;
    assert!(matches!(
        decode_err(&b),
        FormatError::PageCountMismatch { .. }
    ));
    // A bit set past the page count (bit 10 in the second bitmap byte).
    let mut b = sparse();
    b[65] |= 0b100;
    assert!(matches!(
        decode_err(&b),
        FormatError::PageCountMismatch { .. }
    ));
    // Page count 0 with a nonempty data section: the data is then trailing.
    let mut b = sparse();
    set_u32(&mut b, 12, 0);
    assert!(Extent::decode(&b).is_err());
}

#[test]
fn data_size_disagreeing_with_bitmap() {
    // The reference trusts the stated size; the bitmap holds 3 pages.
    let mut b = sparse();
    set_u32(&mut b, 16, 4096 * 2);
    let e = decode_err(&b);
    assert!(
        matches!(
            e,
            FormatError::DataSizeMismatch {
                present: 3,
                expected: 12288,
                ..
            }
        ),
        "{e}"
    );
    let mut b = sparse();
    set_u32(&mut b, 16, 4096 * 3 + 1);
    assert!(matches!(
        decode_err(&b),
        FormatError::DataSizeMismatch { .. }
    ));
}

#[test]
fn checksum_mismatch_in_data_and_in_header() {
    let mut b = sparse();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(
        decode_err(&b),
        FormatError::ChecksumMismatch { .. }
    ));
    // Structure is still sound, so a view parses and reports the fault.
    let view = ExtentView::parse(&b).unwrap();
    assert!(view.verify().is_err());
    assert_ne!(view.computed_checksum(), view.header().checksum);

    let mut b = sparse();
    b[20] ^= 0xff;
    assert!(matches!(
        decode_err(&b),
        FormatError::ChecksumMismatch { .. }
    ));

    // An empty extent must carry checksum 0, as the reference writes.
    let mut e = encode(4096, std::iter::empty(), Compression::None).unwrap();
    e[20] = 1;
    assert!(matches!(
        decode_err(&e),
        FormatError::ChecksumMismatch { .. }
    ));
}

#[test]
fn damaged_zstd_frames() {
    let pages: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
    let z = encode(
        4096,
        pages
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.as_slice())),
        Compression::Zstd { level: 3 },
    )
    .unwrap();
    let h = Header::parse(&z).unwrap();
    assert_eq!(h.codec, fsx_format::Codec::Zstd);

    // A damaged frame whose checksum was recomputed to match: the
    // decompressor itself must catch it.
    let data_at = 64 + h.bitmap_len();
    for off in [data_at, data_at + 5, z.len() - 2] {
        let mut b = z.clone();
        b[off] ^= 0x5a;
        let sum = fsx_format::fnv1a64(&b[data_at..]);
        b[20..28].copy_from_slice(&sum.to_le_bytes());
        let e = decode_err(&b);
        assert!(
            matches!(e, FormatError::Decompress { .. }),
            "offset {off}: {e}"
        );
    }

    // A stated size above the cap is refused before any allocation.
    let mut b = z.clone();
    set_u32(&mut b, 16, (fsx_format::MAX_DECOMPRESSED_LEN) + 4096);
    assert!(Extent::decode(&b).is_err());
}

#[test]
fn encoder_rejects_bad_pages() {
    let p = vec![0u8; 4096];
    let short = vec![0u8; 100];
    let e = encode(4096, [(0, short.as_slice())], Compression::None).unwrap_err();
    assert!(matches!(
        e,
        FormatError::PageLength {
            index: 0,
            len: 100,
            page_size: 4096
        }
    ));
    let e = encode(
        4096,
        [(3, p.as_slice()), (3, p.as_slice())],
        Compression::None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        FormatError::PageOrder {
            index: 3,
            previous: 3
        }
    ));
    let e = encode(
        4096,
        [(5, p.as_slice()), (1, p.as_slice())],
        Compression::None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        FormatError::PageOrder {
            index: 1,
            previous: 5
        }
    ));
    let e = encode(4096, [(u32::MAX, p.as_slice())], Compression::None).unwrap_err();
    assert!(matches!(e, FormatError::ExtentTooBig { .. }));
}
