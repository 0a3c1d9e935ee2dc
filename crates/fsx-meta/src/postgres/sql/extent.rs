//! The `extents` family's statements.

use crate::logic::extents::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Incref => "UPDATE fsx_extents SET refcount = refcount + $2 WHERE key = $1 AND state = 0",
        Q::Decref => {
            "UPDATE fsx_extents SET refcount = refcount - $2,
                 idle_since_ms = CASE WHEN refcount = $2 THEN $3 ELSE idle_since_ms END
             WHERE key = $1 AND refcount >= $2"
        }
    }
}
