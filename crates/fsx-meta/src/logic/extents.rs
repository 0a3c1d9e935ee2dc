//! Extent records: references, upload pins, garbage collection and the
//! reference audit, written once for every engine
//! ([`crate::contract::MetaExtents`]).
//!
//! A record's `refcount` equals the number of map entries naming its key;
//! it only changes through [`incref`] and [`decref`], single conditional
//! statements that a concurrent GC claim cannot slip between.

use std::collections::BTreeMap;

use super::{Lock, Tx, args, corrupt};
use crate::error::{MetaError, Result};

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(key, n)`: adds `n` references to a live record; changes 1 row or
    /// none (no record, or being collected).
    Incref,
    /// `(key, n, now_ms)`: drops `n` references, starting the idle clock
    /// when the last goes; changes 1 row or none (fewer references).
    Decref,
}

/// Adds `n` references to `key`; `Conflict` unless its record is live.
pub(crate) async fn incref(tx: &impl Tx, key: &str, n: i64) -> Result<()> {
    if tx.exec(Q::Incref.into(), args![key, n]).await? == 1 {
        Ok(())
    } else {
        Err(MetaError::conflict(format!(
            "extent {key} is not pinned or is being garbage-collected; pack again"
        )))
    }
}

/// Releases `n` references to `key`; the idle clock starts when the last
/// one goes.
pub(crate) async fn decref(tx: &impl Tx, key: &str, n: i64, now_ms: i64) -> Result<()> {
    if tx.exec(Q::Decref.into(), args![key, n, now_ms]).await? == 1 {
        Ok(())
    } else {
        Err(corrupt(format!(
            "extent {key} is referenced {n} more times than its record counts (or has no record); run `fsx fsck`"
        )))
    }
}

/// Releases one reference per key of `keys` (`None`: a tombstone, which
/// references nothing), locking the records in key order first.
pub(crate) async fn release(
    tx: &impl Tx,
    keys: impl IntoIterator<Item = Option<String>>,
    now_ms: i64,
) -> Result<()> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for key in keys.into_iter().flatten() {
        *counts.entry(key).or_default() += 1;
    }
    let sorted: Vec<&str> = counts.keys().map(String::as_str).collect();
    tx.lock(Lock::Extents(&sorted)).await?;
    for (key, n) in &counts {
        decref(tx, key, *n, now_ms).await?;
    }
    Ok(())
}
