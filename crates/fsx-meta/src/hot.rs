//! The hot tier: extents kept as blobs in the metadata engine's own
//! database, behind the ordinary [`ExtentBackend`](fsx_store::ExtentBackend)
//! contract, so the tiering layer treats it like any other store.
//!
//! One store type, [`HotStore`], over either engine:
//! `sqlite::SqliteHotStore` (from `SqliteMeta::hot_store`) and
//! `postgres::PgHotStore` (from `PgMeta::hot_store`). Its transactions are
//! written once (`logic::hot`), the SQL text per dialect; both pass
//! `fsx_store`'s conformance suite.
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

use fsx_store::{Capabilities, ErrorKind, ListPage, ObjectKey, ObjectMeta, StoreError};

use crate::error::{MetaError, MetaErrorKind};
use crate::logic::corrupt;

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

/// Extents stored in the metadata database of engine `E` (see the module
/// docs), sharing that engine's connections. Made by the engine's
/// `hot_store`.
#[derive(Clone)]
pub struct HotStore<E> {
    pub(crate) meta: E,
    pub(crate) max_row_bytes: usize,
    pub(crate) capabilities: Capabilities,
}

impl<E> HotStore<E> {
    /// A store over `meta`; `InvalidInput` when `max_row_bytes` is below
    /// [`MIN_ROW_BYTES`].
    pub(crate) fn new(meta: E, max_row_bytes: usize) -> crate::Result<Self> {
        if max_row_bytes < MIN_ROW_BYTES {
            return Err(MetaError::invalid(format!(
                "a hot store's maximum row size must be at least {MIN_ROW_BYTES} bytes, not {max_row_bytes} \
                 (default {DEFAULT_MAX_ROW_BYTES}, a Durable Object's row limit)"
            )));
        }
        Ok(HotStore {
            meta,
            max_row_bytes,
            capabilities: Capabilities::new(HOT_MAX_OBJECT_SIZE)
                .supports_range(true)
                .durable_put(true),
        })
    }

    /// The configured row limit.
    pub fn max_row_bytes(&self) -> usize {
        self.max_row_bytes
    }
}

/// The store's answer for an absent object.
pub(crate) fn not_found(key: &ObjectKey) -> StoreError {
    StoreError::not_found(format!("no hot object {key}"))
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
/// parts hold `part_len` bytes each. `Corrupt` when the two disagree;
/// `InvalidInput` for an inverted range.
pub(crate) fn plan_read(
    key: &ObjectKey,
    range: &Range<u64>,
    total_len: i64,
    part_len: i64,
) -> crate::Result<ReadPlan> {
    let total = u64::try_from(total_len).map_err(|_| {
        corrupt(format!(
            "hot object {key} records a negative length {total_len}"
        ))
    })?;
    let bytes = fsx_store::backend::resolve_range(range, total)
        .map_err(|e| MetaError::invalid(e.message().to_owned()).with_source(e))?;
    let bytes = crate::num::count(bytes.start)..crate::num::count(bytes.end);
    if bytes.is_empty() {
        return Ok(ReadPlan { bytes, parts: None });
    }
    if part_len <= 0 {
        return Err(corrupt(format!(
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
/// `first..` and add up to the range, then joins them (a single slice is
/// returned as it is, uncopied).
pub(crate) fn assemble(
    key: &ObjectKey,
    bytes: &Range<u64>,
    first: i64,
    mut slices: Vec<(i64, bytes::Bytes)>,
) -> crate::Result<bytes::Bytes> {
    let want = usize::try_from(bytes.end - bytes.start).map_err(|_| {
        MetaError::invalid(format!(
            "hot object {key}: the range {}..{} is too long for this platform's memory",
            bytes.start, bytes.end
        ))
    })?;
    for (i, (part, _)) in slices.iter().enumerate() {
        let expected = first.saturating_add(crate::num::len(i));
        if *part != expected {
            return Err(corrupt(format!(
                "hot object {key}: part {expected} is missing (found part {part})"
            )));
        }
    }
    let held: usize = slices.iter().map(|(_, d)| d.len()).sum();
    if held != want {
        return Err(corrupt(format!(
            "hot object {key}: its parts hold {held} bytes of the range {}..{}, expected {want}",
            bytes.start, bytes.end
        )));
    }
    if slices.len() == 1 {
        return Ok(slices.pop().map(|(_, d)| d).unwrap_or_default());
    }
    let mut out = Vec::with_capacity(want);
    for (_, data) in &slices {
        out.extend_from_slice(data);
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
pub(crate) fn list_page(mut rows: Vec<(String, i64)>, limit: usize) -> crate::Result<ListPage> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let objects = rows
        .into_iter()
        .map(|(k, n)| {
            let key = ObjectKey::new(&k).map_err(|e| {
                corrupt(format!("hot tier holds an invalid key {k:?}")).with_source(e)
            })?;
            let size =
                u64::try_from(n).map_err(|_| corrupt(format!("hot object {k} has length {n}")))?;
            Ok(ObjectMeta::new(key, size))
        })
        .collect::<crate::Result<Vec<_>>>()?;
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
            MetaErrorKind::Corrupt
        );
    }
}
