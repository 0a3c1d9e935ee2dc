//! `SEEK_DATA` and `SEEK_HOLE` over a file's pages: where the next data or
//! the next hole starts, from which pages hold data. A page with no dirty
//! row and no extent entry (or absent from its extent) is a hole; the file
//! tree's `lseek` answers from this (issue 14). `tests/sparse_kernel.rs`
//! compares it with `lseek` on sparse files of the local file system,
//! whose 4 KiB blocks behave as these pages do.

use std::ops::Range;

/// What to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The next byte that is data (`SEEK_DATA`).
    Data,
    /// The next byte that is in a hole (`SEEK_HOLE`); the end of the file
    /// counts as one.
    Hole,
}

/// The offset `seek` finds from `offset` in a file of `size` bytes whose
/// pages of `page_size` bytes in `data` (ascending, disjoint page ranges)
/// hold data; `None` where `lseek` fails with `ENXIO`: at or past the end,
/// or no data after `offset`.
pub fn seek(
    data: &[Range<u64>],
    page_size: u64,
    size: u64,
    offset: u64,
    seek: Seek,
) -> Option<u64> {
    if offset >= size {
        return None;
    }
    let page = offset / page_size;
    // The first run that ends after `page`.
    let i = data.partition_point(|r| r.end <= page);
    let run = data.get(i);
    match seek {
        Seek::Data => match run {
            Some(r) if r.start <= page => Some(offset),
            Some(r) => Some(r.start * page_size).filter(|&at| at < size),
            None => None,
        },
        Seek::Hole => match run {
            Some(r) if r.start <= page => Some((r.end * page_size).min(size)),
            _ => Some(offset),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_holes() {
        // Pages 1-2 and 5 hold data; 8 pages of 10 bytes, size 75.
        let data = [1..3, 5..6];
        assert_eq!(seek(&data, 10, 75, 0, Seek::Data), Some(10));
        assert_eq!(seek(&data, 10, 75, 0, Seek::Hole), Some(0));
        assert_eq!(seek(&data, 10, 75, 15, Seek::Hole), Some(30));
        assert_eq!(seek(&data, 10, 75, 31, Seek::Data), Some(50));
        assert_eq!(seek(&data, 10, 75, 55, Seek::Hole), Some(60));
        assert_eq!(seek(&data, 10, 75, 61, Seek::Data), None);
        assert_eq!(seek(&data, 10, 75, 75, Seek::Hole), None);
        // Data running past the end: the hole is the end.
        let all = vec![Range { start: 0, end: 9 }];
        assert_eq!(seek(&all, 10, 75, 3, Seek::Hole), Some(75));
    }
}
