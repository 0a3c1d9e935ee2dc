//! The `hot` family's statements (the hot tier, [`crate::hot`]).

use crate::logic::hot::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Head => {
            "SELECT total_len, length(data) FROM fsx_hot_extents WHERE key = ?1 AND part = 0"
        }
        // Each part contributes [lo, hi) of its own bytes, computed in SQL
        // so only the requested bytes leave the database; substr() is
        // 1-based and counts bytes on a blob.
        Q::Slices => {
            "SELECT part, substr(data, max(?2 - part * ?4, 0) + 1,
                     min(?3 - part * ?4, length(data)) - max(?2 - part * ?4, 0))
             FROM fsx_hot_extents WHERE key = ?1 AND part >= ?5 AND part <= ?6 ORDER BY part"
        }
        Q::Delete => "DELETE FROM fsx_hot_extents WHERE key = ?1",
        Q::InsertParts => {
            "INSERT INTO fsx_hot_extents (key, part, total_len, data) VALUES (?1, ?3, ?2, ?4)"
        }
        // Text compares by bytes (BINARY collation); substr and length
        // count characters on both sides, so the prefix test is exact.
        Q::List => {
            "SELECT key, total_len FROM fsx_hot_extents
             WHERE part = 0 AND key >= ?1 AND substr(key, 1, length(?1)) = ?1 AND key > ?2
             ORDER BY key LIMIT ?3"
        }
    }
}
