//! The `settings` family's statements.

use crate::logic::settings::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::InsertSetting => "INSERT INTO fsx_volume (key, value) VALUES (?1, ?2)",
        Q::StampLayers => "UPDATE fsx_layers SET created_ms = ?1",
        Q::StampBranches => "UPDATE fsx_branches SET created_ms = ?1, commit_ms = ?1",
        Q::Setting => "SELECT value FROM fsx_volume WHERE key = ?1",
        Q::UpsertSetting => {
            "INSERT INTO fsx_volume (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        }
        Q::AddCounters => {
            "INSERT INTO fsx_counters (tier, op, calls, bytes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tier, op) DO UPDATE SET calls = calls + excluded.calls,
                 bytes = bytes + excluded.bytes"
        }
        Q::HasTables => {
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'fsx_volume'"
        }
        Q::UncheckedPages => {
            "SELECT layer, file_id, page_no, data FROM fsx_dirty_pages WHERE crc IS NULL LIMIT ?1"
        }
        Q::SetPageCrc => {
            "UPDATE fsx_dirty_pages SET crc = ?4 WHERE layer = ?1 AND file_id = ?2 AND page_no = ?3"
        }
        Q::Counters => "SELECT tier, op, calls, bytes FROM fsx_counters ORDER BY tier, op",
    }
}
