//! Tier copy records and the replication queue, access statistics and page
//! digests, written once for every engine
//! ([`crate::contract::MetaTiers`]).
//!
//! A batch of copy marks is one statement whatever its size
//! ([`Tx::exec_each`]: PostgreSQL binds it as arrays, so a sync's round
//! trips do not grow with its extents). Its rows are distinct and sorted by
//! `(key, tier)`, so concurrent writers lock copy records in one order and
//! never wait on each other in a cycle.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use bytes::Bytes;

use super::{Column, Row, Tx, args, corrupt};
use crate::contract::{AccessStats, CopyState, TierCopy, TierMark, TierTotals};
use crate::error::Result;
use crate::num;

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(now_ms)`, then per row `(key, tier, bytes, state)`: state 0
    /// (present) upserts the record and clears its queue state; state 1
    /// (queued) inserts a record due at `now_ms` and leaves an existing
    /// one alone.
    Record,
    /// `(key, tier, next_ms, error)`: one more failed attempt of a queued
    /// record; changes 1 row or none.
    Retry,
    /// `(key, tier)`: deletes one copy record.
    ForgetCopy,
    /// `(key)`: deletes every copy record of the key.
    ForgetCopies,
    /// `(key)`: deletes the key's access statistics.
    ForgetAccess,
    /// `(key)`: deletes the key's page digests.
    ForgetDigests,
    /// `(key) → key, tier, bytes, state, attempts, next_ms, last_error`,
    /// by tier.
    Copies,
    /// `(tier, after, limit) →` the columns of [`Q::Copies`], by key.
    List,
    /// `(now_ms, limit) →` the columns of [`Q::Copies`] of queued records
    /// due by `now_ms`, by `next_ms`, key and tier.
    Due,
    /// `→ tier, present count, present bytes, queued count`, by tier.
    Totals,
    /// `(key, hits, now_ms)`: adds reads to the access statistics.
    Touch,
    /// `(key) → hits, last_ms`.
    Access,
    /// `(key, digests)`: stores the page digests, replacing any.
    SetDigests,
    /// `(key) → digests`.
    Digests,
}

/// Applies `marks` as one batch. A batch may mark one copy twice; the
/// outcome is what applying the marks one by one gives: the last
/// `Present` mark if there is one (it overwrites whatever came before),
/// else the first `Queued` (a later one finds the record and does
/// nothing).
pub(crate) async fn tier_record(tx: &impl Tx, marks: &[TierMark], now_ms: i64) -> Result<()> {
    let mut rows: BTreeMap<(&str, &str), (i64, CopyState)> = BTreeMap::new();
    for m in marks {
        let value = (num::to_sql(m.bytes, "extent size")?, m.state);
        match rows.entry((&m.key, &m.tier)) {
            Entry::Vacant(e) => {
                e.insert(value);
            }
            Entry::Occupied(mut e) => {
                if m.state == CopyState::Present {
                    e.insert(value);
                }
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let columns = [
        Column::Texts(rows.keys().map(|k| k.0).collect()),
        Column::Texts(rows.keys().map(|k| k.1).collect()),
        Column::Ints(rows.values().map(|v| v.0).collect()),
        Column::Ints(rows.values().map(|v| copy_state(v.1)).collect()),
    ];
    tx.exec_each(Q::Record.into(), args![now_ms], &columns)
        .await?;
    Ok(())
}

fn copy_state(s: CopyState) -> i64 {
    match s {
        CopyState::Present => 0,
        CopyState::Queued => 1,
    }
}

pub(crate) async fn tier_retry(
    tx: &impl Tx,
    key: &str,
    tier: &str,
    next_ms: i64,
    error: &str,
) -> Result<()> {
    tx.exec(Q::Retry.into(), args![key, tier, next_ms, error])
        .await?;
    Ok(())
}

/// Forgets one copy of `key`, or (`tier` `None`) everything known of it.
pub(crate) async fn tier_forget(tx: &impl Tx, key: &str, tier: Option<&str>) -> Result<()> {
    match tier {
        Some(t) => {
            tx.exec(Q::ForgetCopy.into(), args![key, t]).await?;
        }
        None => {
            for q in [Q::ForgetCopies, Q::ForgetAccess, Q::ForgetDigests] {
                tx.exec(q.into(), args![key]).await?;
            }
        }
    }
    Ok(())
}

fn tier_copy(r: &Row) -> Result<TierCopy> {
    Ok(TierCopy {
        key: r.text(0, "copy key")?,
        tier: r.text(1, "copy tier")?,
        bytes: r.u64(2, "copy bytes")?,
        state: if r.i64(3, "copy state")? == 0 {
            CopyState::Present
        } else {
            CopyState::Queued
        },
        // Counting on past `u32::MAX` failed attempts changes nothing.
        attempts: u32::try_from(r.u64(4, "copy attempts")?).unwrap_or(u32::MAX),
        next_ms: r.i64(5, "copy next attempt")?,
        last_error: r.opt_text(6, "copy last error")?,
    })
}

fn tier_copies_of(rows: &[Row]) -> Result<Vec<TierCopy>> {
    rows.iter().map(tier_copy).collect()
}

pub(crate) async fn tier_copies(tx: &impl Tx, key: &str) -> Result<Vec<TierCopy>> {
    tier_copies_of(&tx.query(Q::Copies.into(), args![key]).await?)
}

pub(crate) async fn tier_list(
    tx: &impl Tx,
    tier: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<TierCopy>> {
    let args = args![tier, after.unwrap_or(""), num::limit(limit)];
    tier_copies_of(&tx.query(Q::List.into(), args).await?)
}

pub(crate) async fn tier_due(tx: &impl Tx, now_ms: i64, limit: usize) -> Result<Vec<TierCopy>> {
    let args = args![now_ms, num::limit(limit)];
    tier_copies_of(&tx.query(Q::Due.into(), args).await?)
}

pub(crate) async fn tier_totals(tx: &impl Tx) -> Result<Vec<TierTotals>> {
    tx.query(Q::Totals.into(), &[])
        .await?
        .iter()
        .map(|r| {
            Ok(TierTotals {
                tier: r.text(0, "copy tier")?,
                count: r.u64(1, "copy count")?,
                bytes: r.u64(2, "copy bytes")?,
                queued: r.u64(3, "queue length")?,
            })
        })
        .collect()
}

pub(crate) async fn touch_extent(tx: &impl Tx, key: &str, hits: u64, now_ms: i64) -> Result<()> {
    tx.exec(Q::Touch.into(), args![key, num::bound(hits), now_ms])
        .await?;
    Ok(())
}

pub(crate) async fn extent_access(tx: &impl Tx, key: &str) -> Result<AccessStats> {
    match tx.query_opt(Q::Access.into(), args![key]).await? {
        None => Ok(AccessStats::default()),
        Some(r) => Ok(AccessStats {
            hits: r.u64(0, "access hits")?,
            last_ms: r.i64(1, "access time")?,
        }),
    }
}

pub(crate) async fn set_extent_digests(tx: &impl Tx, key: &str, digests: &[u8]) -> Result<()> {
    tx.exec(Q::SetDigests.into(), args![key, digests]).await?;
    Ok(())
}

pub(crate) async fn extent_digests(tx: &impl Tx, key: &str) -> Result<Option<Bytes>> {
    let Some(r) = tx.query_opt(Q::Digests.into(), args![key]).await? else {
        return Ok(None);
    };
    match r.opt_blob(0, "page digests")? {
        Some(d) => Ok(Some(d)),
        None => Err(corrupt(format!(
            "the page digests of {key} are NULL; run `fsx fsck`"
        ))),
    }
}

/// `impl MetaTiers for $engine`: each method one transaction of the
/// engine's `run` over the function above (`$mode`: see [`super::run`]).
/// The engine provides `open_hot_tier(max_row_bytes)` (its own hot tier,
/// the one engine-specific method) and `is_read_only()`: on read-only
/// media `touch_extent` is skipped (statistics are best effort, like the
/// counters; a read must not fail for want of a place to count it).
macro_rules! impl_meta_tiers {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            impl MetaTiers for $engine {
                fn hot_tier(
                    &self,
                    max_row_bytes: usize,
                ) -> Result<Option<std::sync::Arc<dyn fsx_store::ExtentBackend>>> {
                    Ok(Some(std::sync::Arc::new(self.hot_store(max_row_bytes)?)))
                }

                fn tier_record<'a>(
                    &'a self,
                    marks: &'a [TierMark],
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| tiers::tier_record(
                        tx, marks, now_ms
                    )
                    .await)
                }

                fn tier_retry<'a>(
                    &'a self,
                    key: &'a str,
                    tier: &'a str,
                    next_ms: i64,
                    error: &'a str,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| tiers::tier_retry(
                        tx, key, tier, next_ms, error
                    )
                    .await)
                }

                fn tier_forget<'a>(
                    &'a self,
                    key: &'a str,
                    tier: Option<&'a str>,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| tiers::tier_forget(tx, key, tier)
                        .await)
                }

                fn tier_copies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<TierCopy>>> {
                    run!($mode, self, Read, |tx| tiers::tier_copies(tx, key).await)
                }

                fn tier_list<'a>(
                    &'a self,
                    tier: &'a str,
                    after: Option<&'a str>,
                    limit: usize,
                ) -> BoxFuture<'a, Result<Vec<TierCopy>>> {
                    run!($mode, self, Read, |tx| tiers::tier_list(
                        tx, tier, after, limit
                    )
                    .await)
                }

                fn tier_due(
                    &self,
                    now_ms: i64,
                    limit: usize,
                ) -> BoxFuture<'_, Result<Vec<TierCopy>>> {
                    run!($mode, self, Read, |tx| tiers::tier_due(tx, now_ms, limit)
                        .await)
                }

                fn tier_totals(&self) -> BoxFuture<'_, Result<Vec<TierTotals>>> {
                    run!($mode, self, Read, |tx| tiers::tier_totals(tx).await)
                }

                fn touch_extent<'a>(
                    &'a self,
                    key: &'a str,
                    hits: u64,
                    now_ms: i64,
                ) -> BoxFuture<'a, Result<()>> {
                    if self.is_read_only() {
                        return Box::pin(async { Ok(()) });
                    }
                    run!($mode, self, Write, |tx| tiers::touch_extent(
                        tx, key, hits, now_ms
                    )
                    .await)
                }

                fn extent_access<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<AccessStats>> {
                    run!($mode, self, Read, |tx| tiers::extent_access(tx, key).await)
                }

                fn set_extent_digests<'a>(
                    &'a self,
                    key: &'a str,
                    digests: &'a [u8],
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| tiers::set_extent_digests(
                        tx, key, digests
                    )
                    .await)
                }

                fn extent_digests<'a>(
                    &'a self,
                    key: &'a str,
                ) -> BoxFuture<'a, Result<Option<bytes::Bytes>>> {
                    run!($mode, self, Read, |tx| tiers::extent_digests(tx, key).await)
                }
            }
        }
    };
}
pub(crate) use impl_meta_tiers;
