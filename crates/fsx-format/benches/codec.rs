//! Codec throughput on a full 2 MiB extent (512 pages of 4 KiB), next to a
//! 2 MiB memcpy measured in the same run as the reference.
//!
//! Run: `cargo bench -p fsx-format --bench codec`

#![allow(clippy::print_stderr, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fsx_format::{Compression, Extent, ExtentView, content_key, encode};

const PAGE: usize = 4096;
const PAGES: usize = 512;

/// Deterministic, database-like pages: mostly varied bytes with some runs.
fn pages() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..PAGES)
        .map(|p| {
            (0..PAGE)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if (i / 64) % 4 == 0 { p as u8 } else { x as u8 }
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let pages = pages();
    let refs: Vec<(u32, &[u8])> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32, p.as_slice()))
        .collect();
    let blob = encode(PAGE as u32, refs.iter().copied(), Compression::None).unwrap();
    let zblob = encode(
        PAGE as u32,
        refs.iter().copied(),
        Compression::Zstd { level: 3 },
    )
    .unwrap();

    let mut g = c.benchmark_group("extent_2mib");
    g.throughput(Throughput::Bytes((PAGE * PAGES) as u64));
    g.sample_size(30);

    let mut dst = vec![0u8; blob.len()];
    g.bench_function("memcpy (reference)", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&blob));
            black_box(&dst);
        })
    });
    g.bench_function("encode raw", |b| {
        b.iter(|| {
            encode(
                PAGE as u32,
                black_box(&refs).iter().copied(),
                Compression::None,
            )
            .unwrap()
        })
    });
    g.bench_function("verify (parse + FNV-1a checksum)", |b| {
        b.iter(|| {
            ExtentView::parse(black_box(&blob))
                .unwrap()
                .verify()
                .unwrap()
        })
    });
    g.bench_function("content key (SHA-256)", |b| {
        b.iter(|| content_key(black_box(&blob)))
    });
    g.bench_function("encode zstd-3", |b| {
        b.iter(|| {
            encode(
                PAGE as u32,
                black_box(&refs).iter().copied(),
                Compression::Zstd { level: 3 },
            )
            .unwrap()
        })
    });
    g.bench_function("decode zstd-3 (verify + decompress)", |b| {
        b.iter(|| Extent::decode(black_box(&zblob)).unwrap().data().len())
    });
    g.finish();

    let mut g = c.benchmark_group("single_page_of_2mib");
    g.throughput(Throughput::Bytes(PAGE as u64));
    g.bench_function("page 511, trusted (parse, no checksum)", |b| {
        b.iter(|| {
            Extent::decode_trusted(black_box(&blob))
                .unwrap()
                .page(black_box(511))
                .unwrap()[0]
        })
    });
    g.bench_function("memcpy one page (reference)", |b| {
        let mut page = [0u8; PAGE];
        b.iter(|| {
            page.copy_from_slice(&black_box(&blob)[blob.len() - PAGE..]);
            black_box(page[0])
        })
    });
    g.finish();
    eprintln!(
        "compressed 2 MiB extent: {} bytes ({:.1}%)",
        zblob.len(),
        100.0 * zblob.len() as f64 / blob.len() as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
