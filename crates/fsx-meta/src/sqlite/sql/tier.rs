//! The `tiers` family's statements.

use crate::logic::tiers::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Record => {
            "INSERT INTO fsx_tier_copies (key, tier, bytes, state, attempts, next_ms, last_error)
             VALUES (?2, ?3, ?4, ?5, 0, CASE WHEN ?5 = 0 THEN 0 ELSE ?1 END, NULL)
             ON CONFLICT (key, tier) DO UPDATE SET bytes = excluded.bytes, state = 0,
                 attempts = 0, next_ms = 0, last_error = NULL
             WHERE excluded.state = 0"
        }
        Q::Retry => {
            "UPDATE fsx_tier_copies SET attempts = attempts + 1, next_ms = ?3, last_error = ?4
             WHERE key = ?1 AND tier = ?2 AND state = 1"
        }
        Q::ForgetCopy => "DELETE FROM fsx_tier_copies WHERE key = ?1 AND tier = ?2",
        Q::ForgetCopies => "DELETE FROM fsx_tier_copies WHERE key = ?1",
        Q::ForgetAccess => "DELETE FROM fsx_extent_access WHERE key = ?1",
        Q::ForgetDigests => "DELETE FROM fsx_extent_digests WHERE key = ?1",
        Q::Copies => {
            "SELECT key, tier, bytes, state, attempts, next_ms, last_error
             FROM fsx_tier_copies WHERE key = ?1 ORDER BY tier"
        }
        Q::List => {
            "SELECT key, tier, bytes, state, attempts, next_ms, last_error
             FROM fsx_tier_copies WHERE tier = ?1 AND key > ?2 ORDER BY key LIMIT ?3"
        }
        Q::Due => {
            "SELECT key, tier, bytes, state, attempts, next_ms, last_error
             FROM fsx_tier_copies WHERE state = 1 AND next_ms <= ?1
             ORDER BY next_ms, key, tier LIMIT ?2"
        }
        Q::Totals => {
            "SELECT tier,
                    coalesce(sum(CASE WHEN state = 0 THEN 1 ELSE 0 END), 0),
                    coalesce(sum(CASE WHEN state = 0 THEN bytes ELSE 0 END), 0),
                    coalesce(sum(CASE WHEN state = 1 THEN 1 ELSE 0 END), 0)
             FROM fsx_tier_copies GROUP BY tier ORDER BY tier"
        }
        Q::Touch => {
            "INSERT INTO fsx_extent_access (key, hits, last_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET hits = hits + excluded.hits,
                 last_ms = max(last_ms, excluded.last_ms)"
        }
        Q::Access => "SELECT hits, last_ms FROM fsx_extent_access WHERE key = ?1",
        Q::SetDigests => {
            "INSERT INTO fsx_extent_digests (key, digests) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET digests = excluded.digests"
        }
        Q::Digests => "SELECT digests FROM fsx_extent_digests WHERE key = ?1",
    }
}
