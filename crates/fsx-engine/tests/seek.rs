//! `File::seek` (`SEEK_DATA` / `SEEK_HOLE`) against a model: seeded random
//! writes (whole and partial pages), truncations that shrink and grow,
//! syncs and packs; after each step the writer's answers, and after each
//! sync a fresh reader's, must equal `fsx_engine::sparse::seek` (itself
//! compared with the kernel's `lseek` by `sparse_kernel.rs`) over the
//! model's data pages.

mod common;

use std::ops::Range;

use common::TestVolume;
use fsx_engine::sparse::{Seek, seek};
use fsx_engine::{File, OpenOptions};

const PAGE: u64 = 4096;
const EXTENT: u32 = 256 << 10;

/// Data pages of the model as ascending page ranges, below `size`.
fn ranges(present: &[bool], size: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for (p, &here) in present.iter().enumerate() {
        let p = p as u64;
        if !here || p * PAGE >= size {
            continue;
        }
        match out.last_mut() {
            Some(r) if r.end == p => r.end = p + 1,
            _ => out.push(p..p + 1),
        }
    }
    out
}

async fn check(f: &File, present: &[bool], size: u64, what: &str) {
    assert_eq!(f.size(), size, "{what}: size");
    let data = ranges(present, size);
    let pages = size.div_ceil(PAGE);
    // Every fifth page boundary with its neighbours, a byte inside each
    // other page, and the end.
    let offsets = (0..=pages + 1)
        .flat_map(|p| {
            if p % 5 == 0 {
                vec![p * PAGE, (p * PAGE).saturating_sub(1), p * PAGE + 7]
            } else {
                vec![p * PAGE + 100]
            }
        })
        .chain([size, size.saturating_sub(1)]);
    for offset in offsets {
        for whence in [Seek::Data, Seek::Hole] {
            let want = seek(&data, PAGE, size, offset, whence);
            let got = f.seek(offset, whence).await.unwrap();
            assert_eq!(
                got, want,
                "{what}: {whence:?} from {offset}, size {size}, data {data:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_data_and_hole_follow_the_model() {
    let mut rng = fsx_testkit::crash::Rng(0x2545_f491_4f6c_dd1d_u64);
    let (_t, v) = TestVolume::new(EXTENT).await;
    let span = 3 * u64::from(EXTENT) / PAGE; // pages over three extents
    for round in 0..8 {
        let name = format!("f{round}");
        let mut f = v
            .volume
            .open_file(&name, OpenOptions::create(PAGE as u32))
            .await
            .unwrap();
        let mut present = vec![false; span as usize + 8];
        let mut size = 0u64;
        for step in 0..30 {
            let what = format!("round {round} step {step}");
            match rng.below(10) {
                0..=5 => {
                    // A write of 1-80 pages' worth, aligned or not.
                    let page = rng.below(span);
                    let len = 1 + rng.below(80 * PAGE);
                    let at = page * PAGE
                        + if rng.below(2) == 0 {
                            0
                        } else {
                            rng.below(PAGE)
                        };
                    let end = (at + len).min(span * PAGE);
                    f.write_at(at, &vec![0x5a; (end - at) as usize])
                        .await
                        .unwrap();
                    for p in at / PAGE..end.div_ceil(PAGE) {
                        present[p as usize] = true;
                    }
                    size = size.max(end);
                }
                6 | 7 => {
                    let to = rng.below(span * PAGE);
                    f.truncate(to).await.unwrap();
                    if to < size {
                        // Whole pages past the cut are holes; the page the
                        // cut falls in keeps what it was (a hole stays a
                        // hole, as on ext4).
                        for p in to.div_ceil(PAGE)..span {
                            present[p as usize] = false;
                        }
                    }
                    size = to;
                }
                8 => {
                    f.sync().await.unwrap();
                    let r = v
                        .volume
                        .open_file(&name, OpenOptions::read())
                        .await
                        .unwrap();
                    check(&r, &present, size, &format!("{what}, a reader after sync")).await;
                }
                _ => f.pack_dirty().await.unwrap(),
            }
            check(&f, &present, size, &what).await;
        }
        f.close().await.unwrap();
    }
}
