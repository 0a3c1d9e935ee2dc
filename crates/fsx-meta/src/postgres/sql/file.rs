//! The `files` family's statements.

use crate::logic::files::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::NextFileId => {
            "UPDATE fsx_volume SET value = (value::BIGINT + 1)::TEXT WHERE key = 'next_file_id'
             RETURNING value::BIGINT - 1"
        }
        Q::CreateFile => {
            "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, created_ms, modified_ms)
             VALUES ($1, $2, $3, $4, 0, 0, $5, $5)"
        }
        Q::Lease => "SELECT holder, expires_ms FROM fsx_leases WHERE branch = $1 AND file_id = $2",
        Q::SetLease => {
            "INSERT INTO fsx_leases (branch, file_id, holder, expires_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (branch, file_id) DO UPDATE SET holder = excluded.holder,
                 expires_ms = excluded.expires_ms"
        }
        Q::RenewLease => {
            "UPDATE fsx_leases SET expires_ms = $3 WHERE branch = $1 AND file_id = $2"
        }
        Q::ReleaseLease => {
            "DELETE FROM fsx_leases WHERE branch = $1 AND file_id = $2 AND holder = $3"
        }
        Q::DropPagesBetween => {
            "DELETE FROM fsx_dirty_pages WHERE layer = $1 AND file_id = $2 AND page_no >= $3 AND page_no < $4"
        }
        Q::DropPagesFrom => {
            "DELETE FROM fsx_dirty_pages WHERE layer = $1 AND file_id = $2 AND page_no >= $3"
        }
        Q::CutPages => {
            "UPDATE fsx_files SET cut_page = LEAST(coalesce(cut_page, $3), $3)
             WHERE layer = $1 AND id = $2"
        }
        Q::CutExtents => {
            "UPDATE fsx_files SET cut_extent = LEAST(coalesce(cut_extent, $3), $3)
             WHERE layer = $1 AND id = $2"
        }
        Q::NextWrite => {
            "UPDATE fsx_files SET write_seq = write_seq + 1, size = $3, modified_ms = $4
             WHERE layer = $1 AND id = $2 RETURNING write_seq"
        }
        Q::UpsertPages => {
            "INSERT INTO fsx_dirty_pages (layer, file_id, page_no, seq, data, crc)
             SELECT $1, $2, p, $3, d, c FROM unnest($4::BIGINT[], $5::BYTEA[], $6::BIGINT[]) AS t(p, d, c)
             ON CONFLICT (layer, file_id, page_no) DO UPDATE SET seq = excluded.seq,
                 data = excluded.data, crc = excluded.crc"
        }
        Q::DirtyCounts => {
            "SELECT e.idx, (SELECT count(*) FROM fsx_dirty_pages d
                            WHERE d.layer = coalesce((SELECT head FROM fsx_branches WHERE id = $1),
                                                     (SELECT layer FROM fsx_commits WHERE id = $2))
                              AND d.file_id = $3
                              AND d.page_no >= e.idx * $4
                              AND d.page_no < (e.idx + 1) * $4)::BIGINT
             FROM unnest($5::BIGINT[]) AS e(idx) ORDER BY e.idx"
        }
        Q::DirtySummary => {
            "SELECT page_no / $3 AS idx, count(*) FROM fsx_dirty_pages
             WHERE layer = $1 AND file_id = $2 GROUP BY idx ORDER BY idx"
        }
        Q::DirtyAfter => {
            "SELECT layer, file_id, page_no, data, crc FROM fsx_dirty_pages
             WHERE (layer, file_id, page_no) > ($1, $2, $3)
             ORDER BY layer, file_id, page_no LIMIT $4"
        }
        Q::OwnExtent => {
            "SELECT key FROM fsx_extent_map WHERE layer = $1 AND file_id = $2 AND extent_idx = $3"
        }
        Q::SetExtent => {
            "INSERT INTO fsx_extent_map (layer, file_id, extent_idx, key) VALUES ($1, $2, $3, $4)
             ON CONFLICT (layer, file_id, extent_idx) DO UPDATE SET key = excluded.key"
        }
        Q::DeleteExtent => {
            "DELETE FROM fsx_extent_map WHERE layer = $1 AND file_id = $2 AND extent_idx = $3"
        }
        Q::DeleteConsumed => {
            "DELETE FROM fsx_dirty_pages d USING unnest($3::BIGINT[], $4::BIGINT[]) AS c(page_no, seq)
             WHERE d.layer = $1 AND d.file_id = $2 AND d.page_no = c.page_no AND d.seq = c.seq"
        }
    }
}
