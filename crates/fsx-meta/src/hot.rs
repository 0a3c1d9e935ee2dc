//! The hot tier: extents kept as blobs in the metadata engine's own
//! database, behind the ordinary [`ExtentBackend`](fsx_store::ExtentBackend)
//! contract, so the tiering layer treats it like any other store.
//!
//! Implementations: `sqlite::SqliteHotStore` (from
//! `SqliteMeta::hot_store`) and `postgres::PgHotStore` (from
//! `PgMeta::hot_store`); both pass `fsx_store`'s conformance suite.
//!
//! # Row size: objects are split, not declined
//!
//! A store may cap the size of one row: a Durable Object's SQLite allows
//! 2 MB per row, so a full 2 MiB extent plus its header does not fit in one.
//! Declining such objects would keep exactly the common case out of the
//! hot tier, so objects are **split** into parts, each stored as one row of
//! `fsx_hot_extents(key, part, total_len, data)`:
//!
//! | column | meaning |
//! |---|---|
//! | `key` | the object key |
//! | `part` | 0, 1, 2, … — contiguous, no gaps |
//! | `total_len` | the whole object's length, the same in every part |
//! | `data` | bytes `[part·P, min((part+1)·P, total_len))`, where `P` is part 0's length |
//!
//! Invariants:
//!
//! - **No row exceeds the limit.** A row is accounted as its data plus its
//!   key plus [`ROW_OVERHEAD`] bytes for the other columns and the
//!   engine's record header, and `P = max_row_bytes - key length -
//!   ROW_OVERHEAD`.
//! - **All parts but the last are exactly `P` bytes**, so a reader finds the
//!   parts covering a range from part 0's length alone, and `get_range`
//!   reads only those (sliced in SQL). `P` is read back from storage, never
//!   recomputed, so a store reopened with a different limit still reads old
//!   objects.
//! - **Atomic objects.** A `put` deletes the key's old parts and inserts the
//!   new ones in one transaction; a read takes one snapshot; so a reader sees
//!   the whole old object, the whole new one, or none, never a mix of parts.
//!   An object of 0 bytes is one empty part 0, so it exists.
//! - **Durable.** A `put` returns after its transaction committed durably
//!   (SQLite `synchronous = FULL`; PostgreSQL `synchronous_commit = on`).
//!
//! Objects up to [`HOT_MAX_OBJECT_SIZE`] are accepted: twice the largest
//! extent size, so a 16 MiB extent with its header and incompressible
//! frames fits. The table must exist: initialise the volume (`init_volume`
//! or `open_volume`) before using its hot store.

use std::ops::Range;

use fsx_store::{ErrorKind, ListPage, ObjectKey, ObjectMeta, StoreError};

use crate::error::{MetaError, MetaErrorKind};

/// Default row limit: a Durable Object's 2 MB per row.
pub const DEFAULT_MAX_ROW_BYTES: usize = 2_000_000;

/// Smallest row limit a hot store accepts: a maximal key, the overhead and
/// 4 KiB of data.
pub const MIN_ROW_BYTES: usize = fsx_store::key::MAX_KEY_LEN + ROW_OVERHEAD + 4096;

/// Bytes a row costs beyond its data and key: `part` and `total_len`
/// (8 bytes each) and a generous allowance for the engine's record header.
pub const ROW_OVERHEAD: usize = 64;

/// Largest object a hot store accepts: twice the largest extent size.
// `u64::from` is not const; widening a `u32` with `as` is exact.
pub const HOT_MAX_OBJECT_SIZE: u64 = 2 * crate::MAX_EXTENT_SIZE as u64;

/// Checks a configured row limit.
pub(crate) fn check_max_row_bytes(max_row_bytes: usize) -> crate::Result<()> {
    if max_row_bytes < MIN_ROW_BYTES {
        return Err(MetaError::invalid(format!(
            "a hot store's maximum row size must be at least {MIN_ROW_BYTES} bytes, not {max_row_bytes} \
             (default {DEFAULT_MAX_ROW_BYTES}, a Durable Object's row limit)"
        )));
    }
    Ok(())
}

/// The capabilities both hot stores declare.
pub(crate) fn capabilities() -> fsx_store::Capabilities {
    fsx_store::Capabilities::new(HOT_MAX_OBJECT_SIZE)
        .supports_range(true)
        .durable_put(true)
}

/// Splits `value` into the parts stored for `key` under `max_row_bytes`.
/// An empty value is one empty part.
pub(crate) fn split<'v>(key: &ObjectKey, value: &'v [u8], max_row_bytes: usize) -> Vec<&'v [u8]> {
    // `check_max_row_bytes` guarantees room for at least 4 KiB per part.
    let part_len = max_row_bytes
        .saturating_sub(key.as_str().len() + ROW_OVERHEAD)
        .max(1);
    if value.is_empty() {
        vec![value]
    } else {
        value.chunks(part_len).collect()
    }
}

/// What to read for one range request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadPlan {
    /// The object bytes to return, clamped to its length (an `i64` column),
    /// so both ends convert back to SQL exactly.
    pub(crate) bytes: Range<u64>,
    /// The first and last part holding them; `None` when the range is empty.
    pub(crate) parts: Option<(i64, i64)>,
}

/// The parts to read for `range` of an object of `total_len` bytes whose
/// parts hold `part_len` bytes each.
pub(crate) fn plan_read(
    key: &ObjectKey,
    range: &Range<u64>,
    total_len: i64,
    part_len: i64,
) -> fsx_store::Result<ReadPlan> {
    let total = u64::try_from(total_len).map_err(|_| {
        StoreError::corrupt(format!(
            "hot object {key} records a negative length {total_len}"
        ))
    })?;
    let bytes = fsx_store::backend::resolve_range(range, total)?;
    let bytes = crate::num::count(bytes.start)..crate::num::count(bytes.end);
    if bytes.is_empty() {
        return Ok(ReadPlan { bytes, parts: None });
    }
    if part_len <= 0 {
        return Err(StoreError::corrupt(format!(
            "hot object {key} of {total} bytes has an empty first part"
        )));
    }
    let part_len = part_len.unsigned_abs();
    // Both quotients are at most `total`, which came from an `i64`.
    let first = crate::num::bound(bytes.start / part_len);
    let last = crate::num::bound((bytes.end - 1) / part_len);
    Ok(ReadPlan {
        bytes,
        parts: Some((first, last)),
    })
}

/// Checks that the slices read for `bytes` came from consecutive parts
/// `first..` and add up to the range, then joins them.
pub(crate) fn assemble(
    key: &ObjectKey,
    bytes: &Range<u64>,
    first: i64,
    slices: Vec<(i64, Vec<u8>)>,
) -> fsx_store::Result<bytes::Bytes> {
    let want = usize::try_from(bytes.end - bytes.start).map_err(|_| {
        StoreError::invalid(format!(
            "hot object {key}: the range {}..{} is too long for this platform's memory",
            bytes.start, bytes.end
        ))
    })?;
    let mut out = Vec::with_capacity(want);
    for (i, (part, data)) in slices.into_iter().enumerate() {
        let expected = first.saturating_add(crate::num::len(i));
        if part != expected {
            return Err(StoreError::corrupt(format!(
                "hot object {key}: part {expected} is missing (found part {part})"
            )));
        }
        out.extend_from_slice(&data);
    }
    if out.len() != want {
        return Err(StoreError::corrupt(format!(
            "hot object {key}: its parts hold {} bytes of the range {}..{}, expected {want}",
            out.len(),
            bytes.start,
            bytes.end
        )));
    }
    Ok(bytes::Bytes::from(out))
}

/// A metadata-engine error as a store error, by the same caller action,
/// keeping it as the source.
pub(crate) fn store_err(e: MetaError) -> StoreError {
    let kind = match e.kind() {
        MetaErrorKind::NotFound => ErrorKind::NotFound,
        MetaErrorKind::InvalidInput => ErrorKind::InvalidInput,
        MetaErrorKind::Unavailable | MetaErrorKind::Busy | MetaErrorKind::Conflict => {
            ErrorKind::Unavailable
        }
        MetaErrorKind::Corrupt => ErrorKind::Corrupt,
        _ => ErrorKind::Other,
    };
    StoreError::new(kind, format!("hot tier: {}", e.message())).with_source(e)
}

/// A list page from up to `limit + 1` `(key, length)` rows in key order.
pub(crate) fn list_page(mut rows: Vec<(String, i64)>, limit: usize) -> fsx_store::Result<ListPage> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let objects = rows
        .into_iter()
        .map(|(k, n)| {
            let key = ObjectKey::new(&k).map_err(|e| {
                StoreError::corrupt(format!("hot tier holds an invalid key {k:?}")).with_source(e)
            })?;
            let size = u64::try_from(n)
                .map_err(|_| StoreError::corrupt(format!("hot object {k} has length {n}")))?;
            Ok(ObjectMeta::new(key, size))
        })
        .collect::<fsx_store::Result<Vec<_>>>()?;
    let next = if more {
        objects.last().map(|o| o.key.clone())
    } else {
        None
    };
    Ok(ListPage::new(objects, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_rows_under_the_limit() {
        let key = ObjectKey::new("extent/ext-0123456789abcdef0123456789abcdef").unwrap();
        let value = vec![1u8; (2 << 20) + 64];
        let parts = split(&key, &value, DEFAULT_MAX_ROW_BYTES);
        assert_eq!(parts.len(), 2);
        for p in &parts {
            assert!(p.len() + key.as_str().len() + ROW_OVERHEAD <= DEFAULT_MAX_ROW_BYTES);
        }
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), value.len());
        assert_eq!(split(&key, &[], DEFAULT_MAX_ROW_BYTES), vec![&[] as &[u8]]);
    }

    #[test]
    fn reads_plan_only_the_covering_parts() {
        let key = ObjectKey::new("k").unwrap();
        let ReadPlan { bytes, parts } = plan_read(&key, &(10..20), 100, 10).unwrap();
        assert_eq!((bytes, parts), (10..20, Some((1, 1))));
        let ReadPlan { bytes, parts } = plan_read(&key, &(5..95), 100, 10).unwrap();
        assert_eq!((bytes, parts), (5..95, Some((0, 9))));
        let ReadPlan { bytes, parts } = plan_read(&key, &(0..u64::MAX), 25, 10).unwrap();
        assert_eq!((bytes, parts), (0..25, Some((0, 2))));
        assert_eq!(plan_read(&key, &(30..40), 25, 10).unwrap().parts, None);
        assert_eq!(plan_read(&key, &(0..10), 0, 0).unwrap().parts, None);
        assert_eq!(
            plan_read(&key, &(0..10), 5, 0).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
}
