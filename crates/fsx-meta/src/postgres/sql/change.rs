//! The `changes` family's statements. Numbers come from the counter row
//! `fsx_change_seq`, whose lock the recording transaction holds until it
//! commits: so transactions commit in numbering order, and a reader that
//! sees a number sees every number below it.

use crate::logic::changes::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Record => {
            "WITH n AS (UPDATE fsx_change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq)
             INSERT INTO fsx_changes
                 (seq, at_ms, branch, kind, ino, parent, name, to_parent, to_name, commit_id,
                  origin)
             SELECT n.seq, $1::BIGINT, $2::BIGINT, $3::TEXT, $4::BIGINT, $5::BIGINT,
                    $6::BYTEA, $7::BIGINT, $8::BYTEA, $9::BIGINT, $10::BIGINT
             FROM n"
        }
        Q::After => {
            "SELECT c.seq, c.at_ms, c.branch, b.name, c.kind, c.ino, c.parent, c.name,
                    c.to_parent, c.to_name, c.commit_id, c.origin
             FROM fsx_changes c LEFT JOIN fsx_branches b ON b.id = c.branch
             WHERE c.seq > $1 ORDER BY c.seq LIMIT $2"
        }
        Q::Last => "SELECT seq FROM fsx_change_seq WHERE id = 1",
        Q::Prune => "DELETE FROM fsx_changes WHERE seq <= $1",
    }
}
