//! The `extents` family's statements.

use crate::logic::extents::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Incref => "UPDATE fsx_extents SET refcount = refcount + ?2 WHERE key = ?1 AND state = 0",
        Q::Decref => {
            "UPDATE fsx_extents SET refcount = refcount - ?2,
                 idle_since_ms = CASE WHEN refcount = ?2 THEN ?3 ELSE idle_since_ms END
             WHERE key = ?1 AND refcount >= ?2"
        }
        Q::Pin => {
            // Always updates an existing record (so PostgreSQL locks it):
            // the state returned is the one the transaction commits with.
            "INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
             VALUES (?1, 0, 0, ?2, ?3, ?3)
             ON CONFLICT (key) DO UPDATE SET idle_since_ms =
                 CASE WHEN fsx_extents.state = 0 THEN excluded.idle_since_ms
                      ELSE fsx_extents.idle_since_ms END
             RETURNING state, created_ms = ?3"
        }
        Q::Claim => {
            "UPDATE fsx_extents SET state = 1
             WHERE key IN (SELECT key FROM fsx_extents
                           WHERE refcount = 0 AND state = 0 AND idle_since_ms < ?1
                           ORDER BY idle_since_ms LIMIT ?2)
             RETURNING key, idle_since_ms"
        }
        Q::ClaimOrphan => {
            "INSERT INTO fsx_extents (key, refcount, state, bytes, created_ms, idle_since_ms)
             VALUES (?1, 0, 1, 0, ?2, ?2) ON CONFLICT (key) DO NOTHING"
        }
        Q::Forget => "DELETE FROM fsx_extents WHERE key = ?1 AND state = 1 AND refcount = 0",
        Q::List => {
            "SELECT key, refcount, state, bytes, idle_since_ms FROM fsx_extents
             WHERE key > ?1 ORDER BY key LIMIT ?2"
        }
        Q::Totals => {
            "SELECT count(*), coalesce(sum(bytes), 0),
                    coalesce(sum(CASE WHEN refcount > 0 THEN 1 ELSE 0 END), 0),
                    coalesce(sum(CASE WHEN refcount > 0 THEN bytes ELSE 0 END), 0)
             FROM fsx_extents"
        }
        Q::CountReferences => {
            "SELECT key, count(*) FROM fsx_extent_map WHERE key > ?1
             GROUP BY key ORDER BY key LIMIT ?2"
        }
    }
}
