//! The reference vectors written by the TypeScript fsx: every file decodes to
//! the header fields and page hashes its manifest lists, and re-encodes byte
//! for byte (except `compress_flag_4k`, whose flag bit the raw encoder never
//! sets).

use std::collections::BTreeMap;
use std::path::PathBuf;

use fsx_format::{Codec, Compression, Extent, ExtentView, content_key, encode, fnv1a64};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Manifest {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    file: String,
    page_size: u32,
    page_count: u32,
    flags: u16,
    version: u16,
    extent_size: u32,
    checksum_fnv1a64_hex: String,
    total_bytes: usize,
    present_pages: Vec<u32>,
    page_sha256: BTreeMap<String, String>,
    content_key: String,
    valid: bool,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/ext1")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn manifest_lists_every_vector_file() {
    let m = manifest();
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".ext1"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = m.vectors.iter().map(|v| v.file.clone()).collect();
    listed.sort();
    assert_eq!(files, listed);
    assert_eq!(m.vectors.len(), 9);
}

#[test]
fn every_vector_decodes_to_its_manifest() {
    for v in manifest().vectors {
        assert!(v.valid, "{}: the manifest only lists valid vectors", v.name);
        let blob = std::fs::read(dir().join(&v.file)).unwrap();
        assert_eq!(blob.len(), v.total_bytes, "{}", v.name);

        let extent = Extent::decode(&blob).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let h = extent.header();
        assert_eq!(h.version, v.version, "{}", v.name);
        assert_eq!(h.flags, v.flags, "{}", v.name);
        assert_eq!(h.page_size, v.page_size, "{}", v.name);
        assert_eq!(h.page_count, v.page_count, "{}", v.name);
        assert_eq!(h.extent_size, v.extent_size, "{}", v.name);
        assert_eq!(
            format!("{:016x}", h.checksum),
            v.checksum_fnv1a64_hex,
            "{}",
            v.name
        );
        assert_eq!(
            h.codec,
            Codec::Raw,
            "{}: reference data is always stored raw",
            v.name
        );
        assert_eq!(
            extent.present_pages().collect::<Vec<_>>(),
            v.present_pages,
            "{}",
            v.name
        );
        assert_eq!(content_key(&blob), v.content_key, "{}", v.name);
        if v.extent_size > 0 {
            assert_eq!(fnv1a64(extent.data()), h.checksum, "{}", v.name);
        }

        assert_eq!(v.page_sha256.len(), v.present_pages.len(), "{}", v.name);
        for (index, want) in &v.page_sha256 {
            let index: u32 = index.parse().unwrap();
            let page = extent
                .page(index)
                .unwrap_or_else(|| panic!("{}: page {index} missing", v.name));
            assert_eq!(
                hex::encode(Sha256::digest(page)),
                *want,
                "{} page {index}",
                v.name
            );
        }
        // Pages not listed read as absent, including just past the end.
        for index in 0..v.page_count + 8 {
            if !v.present_pages.contains(&index) {
                assert!(extent.page(index).is_none(), "{} page {index}", v.name);
            }
        }
        let view = ExtentView::parse(&blob).unwrap();
        assert_eq!(view.present_count() as usize, v.present_pages.len());
    }
}

#[test]
fn every_vector_reencodes_byte_for_byte() {
    for v in manifest().vectors {
        let blob = std::fs::read(dir().join(&v.file)).unwrap();
        let extent = Extent::decode(&blob).unwrap();
        let again = encode(v.page_size, extent.pages(), Compression::None).unwrap();
        if v.name == "compress_flag_4k" {
            // Same data, but the reference set flag bit 0 without compressing.
            assert_eq!(v.flags, 1);
            assert_eq!(again.len(), blob.len());
            assert_eq!(again[8..], blob[8..], "only the flags may differ");
        } else {
            assert!(
                again == blob,
                "{}: re-encoding differs from the reference",
                v.name
            );
        }
    }
}

#[test]
fn every_vector_survives_zstd_reencoding() {
    for v in manifest().vectors {
        let blob = std::fs::read(dir().join(&v.file)).unwrap();
        let extent = Extent::decode(&blob).unwrap();
        let z = encode(v.page_size, extent.pages(), Compression::Zstd { level: 3 }).unwrap();
        let back = Extent::decode(&z).unwrap();
        assert_eq!(back.data(), extent.data(), "{}", v.name);
        assert_eq!(back.present_pages().collect::<Vec<_>>(), v.present_pages);
    }
}
