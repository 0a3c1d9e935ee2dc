//! `fsx_engine::sparse::seek` compared with `lseek(SEEK_DATA / SEEK_HOLE)`
//! on sparse files of the local file system: seeded random files of 4 KiB
//! blocks, some written and the rest left as holes, their size sometimes
//! past the last block written and sometimes inside it, asked from every
//! 1,000th byte and every block boundary.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use fsx_engine::sparse::{Seek, seek};

const PAGE: u64 = 4096;

fn kernel(fd: i32, offset: u64, whence: Seek) -> Option<u64> {
    let w = match whence {
        Seek::Data => libc::SEEK_DATA,
        Seek::Hole => libc::SEEK_HOLE,
    };
    // SAFETY: an open descriptor; lseek only moves its offset.
    let r = unsafe { libc::lseek(fd, offset as libc::off_t, w) };
    if r < 0 {
        let e = std::io::Error::last_os_error().raw_os_error();
        assert_eq!(e, Some(libc::ENXIO), "lseek failed otherwise");
        None
    } else {
        Some(r as u64)
    }
}

#[test]
fn seek_data_and_hole_match_the_kernel() {
    let mut rng = fsx_testkit::crash::Rng(0x9e37_79b9_7f4a_7c15_u64);
    let dir = tempfile::tempdir().unwrap();
    let mut asked = 0;
    for round in 0..40 {
        let pages = 4 + rng.below(60);
        let written: Vec<u64> = (0..pages).filter(|_| rng.below(3) == 0).collect();
        let path = dir.path().join(format!("f{round}"));
        let f = std::fs::File::create(&path).unwrap();
        for &p in &written {
            f.write_all_at(&[0xa5; PAGE as usize], p * PAGE).unwrap();
        }
        // The size: past the last block, or cutting into it.
        let size = match rng.below(3) {
            0 => pages * PAGE,
            1 => (pages * PAGE).saturating_sub(rng.below(PAGE)),
            _ => pages * PAGE + rng.below(4 * PAGE),
        };
        f.set_len(size).unwrap();
        f.sync_all().unwrap();
        let mut data: Vec<Range<u64>> = Vec::new();
        for &p in &written {
            if p * PAGE >= size {
                continue;
            }
            match data.last_mut() {
                Some(r) if r.end == p => r.end = p + 1,
                _ => data.push(p..p + 1),
            }
        }
        let offsets = (0..size + 2 * PAGE)
            .step_by(1000)
            .chain((0..=pages + 1).map(|p| p * PAGE))
            .chain((0..=pages).map(|p| (p * PAGE).saturating_sub(1)));
        for offset in offsets {
            for whence in [Seek::Data, Seek::Hole] {
                let want = kernel(f.as_raw_fd(), offset, whence);
                let got = seek(&data, PAGE, size, offset, whence);
                assert_eq!(
                    got, want,
                    "round {round}: {whence:?} from {offset} in a file of {size} bytes with data {data:?}"
                );
                asked += 1;
            }
        }
    }
    eprintln!("{asked} seeks compared with the kernel's");
}
