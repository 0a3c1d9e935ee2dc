//! Property tests: any set of pages at any supported page size round-trips
//! through encode and decode, raw and compressed, and every decode path
//! agrees with a plain map of the pages.

use std::collections::BTreeMap;

use fsx_format::{Codec, Compression, Extent, ExtentView, content_key, encode};
use proptest::prelude::*;

/// Page sizes 512..=65536, pages at indices below 600 (sparse and dense),
/// page contents that are either compressible runs or noise.
fn page_set() -> impl Strategy<Value = (u32, BTreeMap<u32, Vec<u8>>)> {
    (9u32..=16).prop_flat_map(|shift| {
        let size = 1u32 << shift;
        // Keep the total small for large pages so the test stays quick.
        let max_pages = (256 * 1024 / size as usize).clamp(1, 64);
        let page = prop_oneof![
            (any::<u8>()).prop_map(move |b| vec![b; size as usize]),
            proptest::collection::vec(any::<u8>(), size as usize),
        ];
        (
            Just(size),
            proptest::collection::btree_map(0u32..600, page, 0..=max_pages),
        )
    })
}

fn check(size: u32, pages: &BTreeMap<u32, Vec<u8>>, compression: Compression) -> Vec<u8> {
    let blob = encode(
        size,
        pages.iter().map(|(i, p)| (*i, p.as_slice())),
        compression,
    )
    .unwrap();
    let extent = Extent::decode(&blob).unwrap();
    let h = extent.header();
    assert_eq!(h.page_size, size);
    assert_eq!(h.page_count, pages.keys().next_back().map_or(0, |i| i + 1));
    assert_eq!(h.extent_size as usize, pages.len() * size as usize);
    assert_eq!(
        extent.present_pages().collect::<Vec<_>>(),
        pages.keys().copied().collect::<Vec<_>>()
    );
    for index in 0..h.page_count + 9 {
        assert_eq!(
            extent.page(index),
            pages.get(&index).map(Vec::as_slice),
            "page {index}"
        );
    }
    let listed: BTreeMap<u32, Vec<u8>> = extent.pages().map(|(i, p)| (i, p.to_vec())).collect();
    assert_eq!(&listed, pages);
    assert_eq!(Extent::decode_trusted(&blob).unwrap().data(), extent.data());
    blob
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn raw_round_trip((size, pages) in page_set()) {
        let blob = check(size, &pages, Compression::None);
        let view = ExtentView::parse(&blob).unwrap();
        prop_assert_eq!(view.header().codec, Codec::Raw);
        prop_assert_eq!(view.header().flags, 0);
        // Encoding is deterministic, so the content key is too.
        let again = encode(size, pages.iter().map(|(i, p)| (*i, p.as_slice())), Compression::None).unwrap();
        prop_assert_eq!(content_key(&again), content_key(&blob));
    }

    #[test]
    fn zstd_round_trip((size, pages) in page_set(), level in 1i32..=9) {
        let blob = check(size, &pages, Compression::Zstd { level });
        let raw_len = 64 + pages.keys().next_back().map_or(0, |i| (i + 1).div_ceil(8) as usize)
            + pages.len() * size as usize;
        // Compression is only kept when it pays.
        prop_assert!(blob.len() <= raw_len);
        let view = ExtentView::parse(&blob).unwrap();
        if view.header().codec == Codec::Zstd {
            prop_assert!(view.header().compressed_flag());
            prop_assert!(blob.len() < raw_len);
        }
    }

    /// Flipping any one byte of a valid extent is either detected or, when it
    /// lands in a field the codec tolerates, still decodes without panicking.
    #[test]
    fn single_byte_corruption_never_panics((size, pages) in page_set(), pos in any::<prop::sample::Index>(), xor in 1u8..=255, zstd in any::<bool>()) {
        let compression = if zstd { Compression::Zstd { level: 3 } } else { Compression::None };
        let mut blob = encode(size, pages.iter().map(|(i, p)| (*i, p.as_slice())), compression).unwrap();
        let at = pos.index(blob.len());
        blob[at] ^= xor;
        // Any change to the header or bitmap either fails structurally or
        // changes what decodes; any change to the data fails the checksum
        // (FNV-1a detects every single-byte change).
        if let Ok(e) = Extent::decode(&blob) {
            prop_assert!(at < 64 + e.view().header().bitmap_len());
        }
    }
}

#[test]
fn compressible_full_extent_compresses() {
    let pages: BTreeMap<u32, Vec<u8>> = (0..512).map(|i| (i, vec![(i % 7) as u8; 4096])).collect();
    let blob = check(4096, &pages, Compression::Zstd { level: 3 });
    assert_eq!(
        ExtentView::parse(&blob).unwrap().header().codec,
        Codec::Zstd
    );
    assert!(
        blob.len() < 64 * 1024,
        "2 MiB of runs compressed to {} bytes",
        blob.len()
    );
}
