//! The `hot` family's statements (the hot tier, [`crate::hot`]).

use crate::logic::hot::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Head => {
            "SELECT total_len, octet_length(data)::bigint FROM fsx_hot_extents
             WHERE key = $1 AND part = 0"
        }
        // Each part contributes [lo, hi) of its own bytes; substring() is
        // 1-based and its length is in bytes for bytea. With the column's
        // `STORAGE EXTERNAL` only the TOAST chunks covering the slice are
        // fetched.
        Q::Slices => {
            "SELECT part, substring(data FROM (greatest($2 - part * $4, 0) + 1)::int
                                   FOR (least($3 - part * $4, octet_length(data)) - greatest($2 - part * $4, 0))::int)
             FROM fsx_hot_extents WHERE key = $1 AND part >= $5 AND part <= $6 ORDER BY part"
        }
        Q::Delete => "DELETE FROM fsx_hot_extents WHERE key = $1",
        // Every part in one statement (one round trip).
        Q::InsertParts => {
            "INSERT INTO fsx_hot_extents (key, part, total_len, data)
             SELECT $1::TEXT, t.part, $2::BIGINT, t.data
             FROM unnest($3::BIGINT[], $4::BYTEA[]) AS t(part, data)"
        }
        // `key >= prefix` lets the primary key index find the start; keys
        // compare by bytes (COLLATE "C").
        Q::List => {
            "SELECT key, total_len FROM fsx_hot_extents
             WHERE part = 0 AND key >= $1 AND starts_with(key, $1) AND key > $2
             ORDER BY key LIMIT $3"
        }
    }
}
