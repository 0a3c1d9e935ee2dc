//! Fuzzes the EXT1 decoder with arbitrary bytes.
//!
//! Invariants checked on every input: no panic; whatever decodes is
//! self-consistent (each listed page readable, sizes agree) and re-encodes
//! to an extent with the same pages.
#![no_main]

use fsx_format::{Compression, Extent, ExtentView, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let view = ExtentView::parse(data);
    let _ = view.map(|v| v.verify());
    if let Ok(extent) = Extent::decode(data) {
        let h = *extent.header();
        let present: Vec<u32> = extent.present_pages().collect();
        assert_eq!(
            present.len() as u64 * u64::from(h.page_size),
            u64::from(h.extent_size)
        );
        for &i in &present {
            assert_eq!(extent.page(i).map(<[u8]>::len), Some(h.page_size as usize));
        }
        let again = encode(h.page_size, extent.pages(), Compression::None).expect("re-encode");
        let back = Extent::decode(&again).expect("decode re-encoded");
        assert_eq!(back.data(), extent.data());
        assert_eq!(back.present_pages().collect::<Vec<u32>>(), present);
    }
});
