//! The `branches` family's statements.

use crate::logic::branches::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::InsertBranch => {
            "INSERT INTO fsx_branches (name, head, commit_id, created_ms, commit_ms)
             VALUES (?1, ?2, ?3, ?4, ?4)"
        }
        Q::DeleteBranch => "DELETE FROM fsx_branches WHERE id = ?1",
        Q::DeleteBranchLeases => "DELETE FROM fsx_leases WHERE branch = ?1",
        Q::ResetBranch => {
            "UPDATE fsx_branches SET head = ?2, commit_id = ?3, commit_ms = ?4 WHERE id = ?1"
        }
        Q::Relink => "UPDATE fsx_commits SET parent = ?2, merged = ?3 WHERE id = ?1",
    }
}
