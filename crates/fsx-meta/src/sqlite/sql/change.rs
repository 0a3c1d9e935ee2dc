//! The `changes` family's statements. The number is the rowid: the single
//! writer commits in numbering order, and the newest row is never pruned,
//! so `max(seq) + 1` never repeats a number.

use crate::logic::changes::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Record => {
            "INSERT INTO fsx_changes
                 (at_ms, branch, kind, ino, parent, name, to_parent, to_name, commit_id,
                  origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        }
        Q::After => {
            "SELECT c.seq, c.at_ms, c.branch, b.name, c.kind, c.ino, c.parent, c.name,
                    c.to_parent, c.to_name, c.commit_id, c.origin
             FROM fsx_changes c LEFT JOIN fsx_branches b ON b.id = c.branch
             WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2"
        }
        Q::Last => "SELECT coalesce(max(seq), 0) FROM fsx_changes",
        Q::Prune => "DELETE FROM fsx_changes WHERE seq <= ?1",
    }
}
