//! Extent records: references, upload pins, garbage collection and the
//! reference audit, written once for every engine
//! ([`crate::contract::MetaExtents`]).
//!
//! A record's `refcount` equals the number of map entries naming its key;
//! it only changes through [`incref`] and [`decref`], single conditional
//! statements that a concurrent GC claim cannot slip between.
//!
//! Pins and claims race only through one row each, so they take no
//! [`Lock`]: [`pin_extent`] upserts and reads back the state it commits
//! with in one statement (the upsert always writes, so PostgreSQL holds
//! the row lock from then on), and [`gc_claim`] is one conditional
//! `UPDATE … RETURNING` whose PostgreSQL text picks its candidates once,
//! skipping rows another transaction holds (`FOR UPDATE SKIP LOCKED`), and
//! re-checks its condition on the newest row version.

use std::collections::BTreeMap;

use super::{Lock, Row, Tx, args, corrupt};
use crate::contract::{ExtentRecord, ExtentState, ExtentTotals};
use crate::error::{MetaError, Result};
use crate::num;

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(key, n)`: adds `n` references to a live record; changes 1 row or
    /// none (no record, or being collected).
    Incref,
    /// `(key, n, now_ms)`: drops `n` references, starting the idle clock
    /// when the last goes; changes 1 row or none (fewer references).
    Decref,
    /// `(key, bytes, now_ms) → state, created now`: creates a live record
    /// or restarts the idle clock of a live one (a deleting one keeps its
    /// clock); always returns the record's state, and whether it was
    /// created at `now_ms`.
    Pin,
    /// `(cutoff_ms, limit) → key, idle_since_ms`: marks deleting up to
    /// `limit` unreferenced live records idle since before `cutoff_ms`,
    /// oldest first, skipping any another transaction holds.
    Claim,
    /// `(key, now_ms)`: a deleting record for an orphan object; changes 1
    /// row or none (a record exists).
    ClaimOrphan,
    /// `(key)`: deletes the record if it is deleting and unreferenced.
    Forget,
    /// `(after, limit) → key, refcount, state, bytes, idle_since_ms`, by
    /// key.
    List,
    /// `→ count, bytes, referenced count, referenced bytes` (one row).
    Totals,
    /// `(after, limit) → key, references`: map entries per key, by key.
    CountReferences,
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

/// Ensures a live record for `key`, restarting its idle clock; `Conflict`
/// if GC is deleting it.
pub(crate) async fn pin_extent(tx: &impl Tx, key: &str, bytes: u64, now_ms: i64) -> Result<bool> {
    let bytes = num::to_sql(bytes, "extent size")?;
    let row = tx
        .query_one(Q::Pin.into(), args![key, bytes, now_ms])
        .await?;
    if row.i64(0, "extent state")? == 0 {
        row.bool(1, "extent new")
    } else {
        Err(MetaError::conflict(format!(
            "extent {key} is being garbage-collected; retry after GC"
        )))
    }
}

/// Claims up to `limit` unreferenced records idle since before
/// `now_ms - grace_ms`; their keys, oldest first (ties by key), so a GC
/// run deletes in the same order on every engine.
pub(crate) async fn gc_claim(
    tx: &impl Tx,
    now_ms: i64,
    grace_ms: i64,
    limit: usize,
) -> Result<Vec<String>> {
    let cutoff = now_ms.saturating_sub(grace_ms);
    let rows = tx
        .query(Q::Claim.into(), args![cutoff, num::limit(limit)])
        .await?;
    let mut claimed = rows
        .iter()
        .map(|r| Ok((r.i64(1, "extent idle clock")?, r.text(0, "extent key")?)))
        .collect::<Result<Vec<_>>>()?;
    // `UPDATE … RETURNING` promises no order.
    claimed.sort_unstable();
    Ok(claimed.into_iter().map(|(_, key)| key).collect())
}

/// Claims an object without a record; `false` if a record exists.
pub(crate) async fn gc_claim_orphan(tx: &impl Tx, key: &str, now_ms: i64) -> Result<bool> {
    Ok(tx.exec(Q::ClaimOrphan.into(), args![key, now_ms]).await? == 1)
}

/// Removes a deleting record (a missing one is no error).
pub(crate) async fn gc_forget(tx: &impl Tx, key: &str) -> Result<()> {
    tx.exec(Q::Forget.into(), args![key]).await?;
    Ok(())
}

fn extent_record(r: &Row) -> Result<ExtentRecord> {
    Ok(ExtentRecord {
        key: r.text(0, "extent key")?,
        refcount: r.i64(1, "extent refcount")?,
        state: if r.i64(2, "extent state")? == 0 {
            ExtentState::Live
        } else {
            ExtentState::Deleting
        },
        bytes: r.u64(3, "extent size")?,
        idle_since_ms: r.i64(4, "extent idle clock")?,
    })
}

pub(crate) async fn list_extents(
    tx: &impl Tx,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ExtentRecord>> {
    tx.query(
        Q::List.into(),
        args![after.unwrap_or(""), num::limit(limit)],
    )
    .await?
    .iter()
    .map(extent_record)
    .collect()
}

pub(crate) async fn extent_totals(tx: &impl Tx) -> Result<ExtentTotals> {
    let r = tx.query_one(Q::Totals.into(), &[]).await?;
    Ok(ExtentTotals {
        count: r.u64(0, "extent count")?,
        bytes: r.u64(1, "extent bytes")?,
        referenced_count: r.u64(2, "referenced extent count")?,
        referenced_bytes: r.u64(3, "referenced extent bytes")?,
    })
}

pub(crate) async fn count_references(
    tx: &impl Tx,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, i64)>> {
    tx.query(
        Q::CountReferences.into(),
        args![after.unwrap_or(""), num::limit(limit)],
    )
    .await?
    .iter()
    .map(|r| Ok((r.text(0, "extent key")?, r.i64(1, "reference count")?)))
    .collect()
}

/// `impl MetaExtents for $engine`: each method one transaction of the
/// engine's `run` over the function above (`$mode`: see
/// [`super::run`]).
macro_rules! impl_meta_extents {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            impl MetaExtents for $engine {
                fn pin_extent<'a>(
                    &'a self,
                    key: &'a str,
                    bytes: u64,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<bool>> {
                    // No disk flush of its own (see the contract's "Pins
                    // protect uploads").
                    run!($mode, self, Runtime, |tx| extents::pin_extent(
                        tx, key, bytes, now_ms
                    )
                    .await)
                }

                fn gc_claim(
                    &self,
                    now_ms: i64,
                    grace_ms: i64,
                    limit: usize,
                ) -> BoxFuture<'_, Result<Vec<String>>> {
                    run!($mode, self, Write, |tx| extents::gc_claim(
                        tx, now_ms, grace_ms, limit
                    )
                    .await)
                }

                fn gc_claim_orphan<'a>(
                    &'a self,
                    key: &'a str,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<bool>> {
                    run!($mode, self, Write, |tx| extents::gc_claim_orphan(
                        tx, key, now_ms
                    )
                    .await)
                }

                fn gc_forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| extents::gc_forget(tx, key).await)
                }

                fn list_extents<'a>(
                    &'a self,
                    after: Option<&'a str>,
                    limit: usize,
                ) -> BoxFuture<'a, Result<Vec<ExtentRecord>>> {
                    run!($mode, self, Read, |tx| extents::list_extents(
                        tx, after, limit
                    )
                    .await)
                }

                fn extent_totals(&self) -> BoxFuture<'_, Result<ExtentTotals>> {
                    run!($mode, self, Read, |tx| extents::extent_totals(tx).await)
                }

                fn count_references<'a>(
                    &'a self,
                    after: Option<&'a str>,
                    limit: usize,
                ) -> BoxFuture<'a, Result<Vec<(String, i64)>>> {
                    run!($mode, self, Read, |tx| extents::count_references(
                        tx, after, limit
                    )
                    .await)
                }
            }
        }
    };
}
pub(crate) use impl_meta_extents;
