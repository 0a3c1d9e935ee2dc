//! Extents and GC: extent records, upload pins, garbage collection and the
//! reference audit.

use fsx_store::BoxFuture;

use super::{ExtentRecord, ExtentTotals};
use crate::Result;

/// Extent records and their garbage collection.
///
/// # Contract
///
/// Every method is one atomic transaction (see [`crate::contract`]).
///
/// - **Refcounts.** Every content key that any map entry (in any layer)
///   names has an extent record whose `refcount` equals the number of map
///   entries naming it. Records with refcount 0 are candidates for garbage
///   collection.
/// - **Pins protect uploads.** Before an extent is uploaded it is pinned
///   ([`MetaExtents::pin_extent`]): its record exists, is live, and its idle
///   clock restarts. GC only claims records whose refcount is 0 and whose idle
///   clock is older than the grace period, and a claimed (deleting) record
///   cannot be pinned or referenced. So an uploader that finishes within the
///   grace period can never have its extent deleted underneath it, and one
///   that does not gets `Conflict` and retries. A pin commits without a
///   disk flush of its own: the transaction that references the extent
///   comes later in the same ordered log, so it is durable only with the
///   pin; a pin a crash takes leaves at most an unreferenced object, which
///   GC removes after the grace period.
/// - **Idempotency.** `gc_forget` of a missing record never corrupts
///   anything.
pub trait MetaExtents {
    /// Ensures a live record for `key` and restarts its idle clock;
    /// `Conflict` if GC is deleting it. Returns `true` when the record may
    /// have been made by this pin (it did not exist, or was made in the
    /// same millisecond): the store then most likely lacks the object,
    /// and an uploader writes it without reading it first. `false`: the
    /// record existed, and so may an intact copy.
    fn pin_extent<'a>(
        &'a self,
        key: &'a str,
        bytes: u64,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Claims at most `limit` records with refcount 0 idle since before
    /// `now_ms - grace_ms`, the longest idle first, marking them deleting;
    /// returns their keys in that order.
    fn gc_claim(
        &self,
        now_ms: i64,
        grace_ms: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<String>>>;

    /// Claims a store object that has no record (an orphan) by creating a
    /// deleting record; `false` if a record exists (it is not an orphan).
    fn gc_claim_orphan<'a>(&'a self, key: &'a str, now_ms: i64) -> BoxFuture<'a, Result<bool>>;

    /// Removes a deleting record once its object is gone.
    fn gc_forget<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Extent records with keys after `after`, ascending, at most `limit`.
    fn list_extents<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ExtentRecord>>>;

    /// Totals over the extent records.
    fn extent_totals(&self) -> BoxFuture<'_, Result<ExtentTotals>>;

    /// The number of map entries naming each key, for keys after `after`,
    /// ascending, at most `limit` keys.
    fn count_references<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, i64)>>>;
}
