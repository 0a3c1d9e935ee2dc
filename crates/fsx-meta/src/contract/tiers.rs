//! Tiers: the engine's own hot tier, copy records and the replication
//! queue, page digests and access statistics.

use bytes::Bytes;
use fsx_store::BoxFuture;

use super::{AccessStats, TierCopy, TierMark, TierTotals};
use crate::Result;

/// Where copies of extents live, and which are wanted.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]).
///
/// - **Tier records** (schema version 3). [`MetaTiers::tier_record`]
///   applies a batch of copy records atomically: a `Present` mark says the
///   tier holds a verified copy; a `Queued` mark asks for a copy (the durable
///   replication queue) and never downgrades a `Present` record. A queued
///   record is returned by [`MetaTiers::tier_due`] once its `next_ms` has
///   passed, until it is marked present or forgotten; so a copy queued in the
///   same transaction that made the extent durable survives any crash.
pub trait MetaTiers {
    /// The engine's own hot tier (extents as rows of its database, parts of
    /// at most `max_row_bytes`), or `None` if the engine has none.
    fn hot_tier(
        &self,
        max_row_bytes: usize,
    ) -> Result<Option<std::sync::Arc<dyn fsx_store::ExtentBackend>>>;

    /// Applies copy records atomically (see the trait docs): `Present`
    /// upserts and clears any queue state; `Queued` inserts with
    /// `next_ms = now_ms` unless a record exists.
    fn tier_record<'a>(&'a self, marks: &'a [TierMark], now_ms: i64) -> BoxFuture<'a, Result<()>>;

    /// Records a failed copy attempt: attempts + 1, the next attempt not
    /// before `next_ms`. No effect unless the record is queued.
    fn tier_retry<'a>(
        &'a self,
        key: &'a str,
        tier: &'a str,
        next_ms: i64,
        error: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes the copy record of `key` in `tier`, or every record, the
    /// access statistics and the page digests of `key` when `tier` is
    /// `None`.
    fn tier_forget<'a>(&'a self, key: &'a str, tier: Option<&'a str>) -> BoxFuture<'a, Result<()>>;

    /// Every copy record of `key`.
    fn tier_copies<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<TierCopy>>>;

    /// Copy records of `tier` with keys after `after`, ascending, at most
    /// `limit`.
    fn tier_list<'a>(
        &'a self,
        tier: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TierCopy>>>;

    /// Queued records whose `next_ms <= now_ms`, oldest first, at most
    /// `limit`.
    fn tier_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<TierCopy>>>;

    /// Totals per tier, sorted by tier name.
    fn tier_totals(&self) -> BoxFuture<'_, Result<Vec<TierTotals>>>;

    /// Adds `hits` reads of `key` at `now_ms` to its access statistics.
    fn touch_extent<'a>(
        &'a self,
        key: &'a str,
        hits: u64,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<()>>;

    /// The access statistics of `key` (zero if never read).
    fn extent_access<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<AccessStats>>;

    /// Stores the page digests of `key` (opaque to the engine; written by
    /// the tiering layer so single pages read by range can be verified),
    /// replacing any earlier ones.
    fn set_extent_digests<'a>(
        &'a self,
        key: &'a str,
        digests: &'a [u8],
    ) -> BoxFuture<'a, Result<()>>;

    /// The page digests of `key`, if stored.
    fn extent_digests<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;
}
