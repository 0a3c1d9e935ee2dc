//! Blobs placed in memory for direct I/O.
//!
//! A local store writes an extent file with `O_DIRECT` when the blob
//! starts on an [`IO_ALIGN`] boundary: the disk then takes the bytes from
//! the blob itself, where a buffered write costs the CPU a copy into the
//! page cache (on a 2-core machine, about as much as hashing the blob). Producers of large blobs (the engine's extent
//! encoder) build them with [`aligned_blob`]; an unaligned blob is still
//! stored correctly, through the page cache.

use bytes::Bytes;

/// The alignment direct I/O needs of a buffer's address, length and file
/// offset on the file systems fsx runs on (their block size; 4 KiB covers
/// every logical block size in use).
pub const IO_ALIGN: usize = 4096;

/// A blob of at most `max_len` bytes, appended by `fill` to an empty
/// vector whose first byte lies on an [`IO_ALIGN`] boundary. If `fill`
/// writes more than `max_len` bytes the vector may move and the blob is
/// merely unaligned.
pub fn aligned_blob<E>(
    max_len: usize,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Bytes, E> {
    let mut v: Vec<u8> = Vec::with_capacity(max_len + IO_ALIGN);
    let pad = v.as_ptr().align_offset(IO_ALIGN).min(IO_ALIGN);
    v.resize(pad, 0);
    fill(&mut v)?;
    let end = v.len();
    // A vector whose length equals its capacity becomes `Bytes` without
    // a reallocation, which would move the blob off its boundary.
    v.resize(v.capacity(), 0);
    Ok(Bytes::from(v).slice(pad..end))
}

/// Whether `data` starts on an [`IO_ALIGN`] boundary; how many of its
/// leading bytes direct I/O can then move (whole blocks), else 0.
pub fn direct_prefix(data: &[u8]) -> usize {
    if data.as_ptr().align_offset(IO_ALIGN) == 0 {
        data.len() / IO_ALIGN * IO_ALIGN
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_blobs_start_on_the_boundary() {
        for len in [0usize, 1, 4095, 4096, 2 * 1024 * 1024 + 128] {
            let b = aligned_blob::<()>(len, |v| {
                v.extend((0..len).map(|i| i as u8));
                Ok(())
            })
            .unwrap();
            assert_eq!(b.len(), len);
            assert!(b.iter().enumerate().all(|(i, &x)| x == i as u8));
            assert_eq!(direct_prefix(&b), len / IO_ALIGN * IO_ALIGN);
        }
    }

    #[test]
    fn overfilling_stays_correct() {
        let b = aligned_blob::<()>(10, |v| {
            v.extend(std::iter::repeat_n(7u8, 10_000));
            Ok(())
        })
        .unwrap();
        assert_eq!(&b[..], &[7u8; 10_000][..]);
    }
}
