//! The `layers` family's statements.

use crate::logic::layers::{Q, branch_sql, commit_sql, file_row_sql};

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::Branch => branch_sql!("FROM fsx_branches WHERE id = ?1"),
        Q::BranchNamed => branch_sql!("FROM fsx_branches WHERE name = ?1"),
        Q::Branches => branch_sql!("FROM fsx_branches ORDER BY name"),
        Q::Commit => commit_sql!("FROM fsx_commits WHERE id = ?1"),
        Q::Commits => commit_sql!("FROM fsx_commits ORDER BY id"),
        Q::Chain => {
            "WITH RECURSIVE chain(id, depth) AS (
                 SELECT id, 0 FROM fsx_layers WHERE id = ?1
                 UNION ALL
                 SELECT l.parent, chain.depth + 1 FROM fsx_layers l JOIN chain ON l.id = chain.id
                 WHERE l.parent IS NOT NULL
             )
             SELECT id FROM chain ORDER BY depth"
        }
        Q::LayerParent => "SELECT parent, frozen FROM fsx_layers WHERE id = ?1",
        Q::Layers => "SELECT id, parent, frozen FROM fsx_layers ORDER BY id",
        Q::FileRows => file_row_sql!("FROM fsx_files WHERE id = ?1"),
        Q::FileRowsIn => file_row_sql!("FROM fsx_files WHERE layer IN rarray(?1)"),
        Q::FileRow => file_row_sql!("FROM fsx_files WHERE layer = ?1 AND id = ?2"),
        Q::HeadRow => {
            "SELECT b.head, f.layer, f.id, f.name, f.page_size, f.size, f.write_seq, f.cut_page,
                    f.cut_extent, f.deleted, f.created_ms, f.modified_ms
             FROM fsx_branches b LEFT JOIN fsx_files f ON f.layer = b.head AND f.id = ?2
             WHERE b.id = ?1"
        }
        Q::DirtyRange => {
            "SELECT page_no, seq, data, crc FROM fsx_dirty_pages
             WHERE layer = ?1 AND file_id = ?2 AND page_no >= ?3 AND page_no <= ?4"
        }
        Q::ExtentRange => {
            "SELECT extent_idx, key FROM fsx_extent_map
             WHERE layer = ?1 AND file_id = ?2 AND extent_idx >= ?3 AND extent_idx <= ?4"
        }
        Q::DirtyKeysRange => {
            "SELECT layer, page_no, seq, data IS NULL FROM fsx_dirty_pages INDEXED BY fsx_dirty_pages_file
             WHERE file_id = ?2 AND page_no >= ?3 AND page_no <= ?4 AND layer IN rarray(?1)"
        }
        Q::ExtentsRange => {
            "SELECT layer, extent_idx, key FROM fsx_extent_map INDEXED BY fsx_extent_map_file
             WHERE file_id = ?2 AND extent_idx >= ?3 AND extent_idx <= ?4 AND layer IN rarray(?1)"
        }
        Q::DirtyKeys => {
            "SELECT layer, page_no, seq, data IS NULL FROM fsx_dirty_pages INDEXED BY fsx_dirty_pages_file
             WHERE file_id = ?2 AND layer IN rarray(?1)"
        }
        Q::Extents => {
            "SELECT layer, extent_idx, key FROM fsx_extent_map INDEXED BY fsx_extent_map_file
             WHERE file_id = ?2 AND layer IN rarray(?1)"
        }
        Q::DirtyData => {
            "SELECT page_no, data, crc FROM fsx_dirty_pages
             WHERE layer = ?1 AND file_id = ?2 AND page_no IN rarray(?3) AND data IS NOT NULL"
        }
        Q::ExtentAt => {
            "SELECT layer, key FROM fsx_extent_map
             WHERE layer IN rarray(?1) AND file_id = ?2 AND extent_idx = ?3"
        }
        Q::Epoch => "SELECT CAST(value AS INTEGER) FROM fsx_volume WHERE key = 'layers.epoch'",
        Q::BumpEpoch => {
            "INSERT INTO fsx_volume (key, value) VALUES ('layers.epoch', '1')
             ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        }
        Q::InsertFileRow => {
            "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                    deleted, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, 0, ?7, ?8)"
        }
        Q::Tombstone => {
            "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                    deleted, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, 0, 0, 1, ?6, ?7)
             ON CONFLICT (layer, id) DO UPDATE SET deleted = 1, size = 0, cut_page = 0,
                 cut_extent = 0, modified_ms = excluded.modified_ms"
        }
        Q::DeleteFileRow => "DELETE FROM fsx_files WHERE layer = ?1 AND id = ?2",
        Q::DeleteDirtyOfFile => "DELETE FROM fsx_dirty_pages WHERE layer = ?1 AND file_id = ?2",
        Q::DeleteLease => "DELETE FROM fsx_leases WHERE branch = ?1 AND file_id = ?2",
        Q::DeleteExtentsFrom => {
            "DELETE FROM fsx_extent_map WHERE layer = ?1 AND file_id = ?2 AND extent_idx >= ?3
             RETURNING key"
        }
        Q::LayerHasRows => {
            "SELECT EXISTS (SELECT 1 FROM fsx_files WHERE layer = ?1)
                 OR EXISTS (SELECT 1 FROM fsx_extent_map WHERE layer = ?1)
                 OR EXISTS (SELECT 1 FROM fsx_dirty_pages WHERE layer = ?1)
                 OR EXISTS (SELECT 1 FROM fsx_nodes WHERE layer = ?1)
                 OR EXISTS (SELECT 1 FROM fsx_entries WHERE layer = ?1)
                 OR EXISTS (SELECT 1 FROM fsx_xattrs WHERE layer = ?1)"
        }
        Q::NewLayer => {
            "INSERT INTO fsx_layers (parent, frozen, created_ms) VALUES (?1, 0, ?2) RETURNING id"
        }
        Q::Freeze => "UPDATE fsx_layers SET frozen = 1 WHERE id = ?1",
        Q::SetHead => "UPDATE fsx_branches SET head = ?2 WHERE id = ?1",
        // A counter of its own: SQLite would hand the largest id out again
        // once its commit is gone.
        Q::NextCommitId => {
            "UPDATE fsx_volume SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_commit_id'
             RETURNING CAST(value AS INTEGER) - 1"
        }
        Q::InsertCommit => {
            "INSERT INTO fsx_commits (id, layer, parent, merged, branch, message, auto, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        }
        Q::SetBranchCommit => {
            "UPDATE fsx_branches SET commit_id = ?2, commit_ms = ?3 WHERE id = ?1"
        }
        Q::LiveLease => {
            "SELECT file_id, holder FROM fsx_leases
             WHERE branch = ?1 AND expires_ms > ?2 AND (?3 IS NULL OR file_id = ?3)
             ORDER BY file_id LIMIT 1"
        }
        Q::DeleteCommits => "DELETE FROM fsx_commits WHERE id IN rarray(?1)",
        Q::DeleteExtentsIn => "DELETE FROM fsx_extent_map WHERE layer IN rarray(?1) RETURNING key",
        Q::DeleteDirtyIn => "DELETE FROM fsx_dirty_pages WHERE layer IN rarray(?1)",
        Q::DeleteFilesIn => "DELETE FROM fsx_files WHERE layer IN rarray(?1)",
        Q::DeleteNodesIn => "DELETE FROM fsx_nodes WHERE layer IN rarray(?1)",
        Q::DeleteEntriesIn => "DELETE FROM fsx_entries WHERE layer IN rarray(?1)",
        Q::DeleteXattrsIn => "DELETE FROM fsx_xattrs WHERE layer IN rarray(?1)",
        Q::DeleteLayers => "DELETE FROM fsx_layers WHERE id IN rarray(?1)",
        Q::FoldDropDirty => {
            "DELETE FROM fsx_dirty_pages AS d WHERE d.layer = ?1 AND (
                 EXISTS (SELECT 1 FROM fsx_dirty_pages x
                         WHERE x.layer = ?2 AND x.file_id = d.file_id AND x.page_no = d.page_no)
              OR EXISTS (SELECT 1 FROM fsx_files f
                         WHERE f.layer = ?2 AND f.id = d.file_id
                           AND (f.deleted = 1 OR f.cut_page <= d.page_no))
              OR EXISTS (SELECT 1 FROM fsx_extent_map x
                         WHERE x.layer = ?2 AND x.file_id = d.file_id
                           AND x.extent_idx = d.page_no / (?3 / (SELECT p.page_size FROM fsx_files p
                                                                       WHERE p.id = d.file_id LIMIT 1))))"
        }
        Q::FoldDropExtents => {
            "DELETE FROM fsx_extent_map AS m WHERE m.layer = ?1 AND (
                 EXISTS (SELECT 1 FROM fsx_extent_map x
                         WHERE x.layer = ?2 AND x.file_id = m.file_id AND x.extent_idx = m.extent_idx)
              OR EXISTS (SELECT 1 FROM fsx_files f
                         WHERE f.layer = ?2 AND f.id = m.file_id
                           AND (f.deleted = 1 OR f.cut_extent <= m.extent_idx)))
             RETURNING key"
        }
        Q::FoldMoveDirty => "UPDATE fsx_dirty_pages SET layer = ?2 WHERE layer = ?1",
        Q::FoldMoveExtents => "UPDATE fsx_extent_map SET layer = ?2 WHERE layer = ?1",
        Q::FoldMergeCuts => {
            "UPDATE fsx_files AS f SET
                 cut_page = (SELECT CASE WHEN x.deleted = 1 THEN 0
                                         WHEN x.cut_page IS NULL THEN f.cut_page
                                         WHEN f.cut_page IS NULL THEN x.cut_page
                                         ELSE min(f.cut_page, x.cut_page) END
                             FROM fsx_files x WHERE x.layer = ?1 AND x.id = f.id),
                 cut_extent = (SELECT CASE WHEN x.deleted = 1 THEN 0
                                           WHEN x.cut_extent IS NULL THEN f.cut_extent
                                           WHEN f.cut_extent IS NULL THEN x.cut_extent
                                           ELSE min(f.cut_extent, x.cut_extent) END
                               FROM fsx_files x WHERE x.layer = ?1 AND x.id = f.id)
             WHERE f.layer = ?2 AND EXISTS (SELECT 1 FROM fsx_files x WHERE x.layer = ?1 AND x.id = f.id)"
        }
        Q::FoldDropFiles => {
            "DELETE FROM fsx_files AS x WHERE x.layer = ?1
                 AND EXISTS (SELECT 1 FROM fsx_files f WHERE f.layer = ?2 AND f.id = x.id)"
        }
        Q::FoldMoveFiles => "UPDATE fsx_files SET layer = ?2 WHERE layer = ?1",
        Q::FoldDropNodes => {
            "DELETE FROM fsx_nodes AS x WHERE x.layer = ?1
                 AND EXISTS (SELECT 1 FROM fsx_nodes n WHERE n.layer = ?2 AND n.ino = x.ino)"
        }
        Q::FoldMoveNodes => "UPDATE fsx_nodes SET layer = ?2 WHERE layer = ?1",
        Q::FoldDropEntries => {
            "DELETE FROM fsx_entries AS x WHERE x.layer = ?1
                 AND EXISTS (SELECT 1 FROM fsx_entries e
                             WHERE e.layer = ?2 AND e.parent = x.parent AND e.name = x.name)"
        }
        Q::FoldMoveEntries => "UPDATE fsx_entries SET layer = ?2 WHERE layer = ?1",
        Q::FoldDropXattrs => {
            "DELETE FROM fsx_xattrs AS x WHERE x.layer = ?1
                 AND EXISTS (SELECT 1 FROM fsx_xattrs a
                             WHERE a.layer = ?2 AND a.ino = x.ino AND a.name = x.name)"
        }
        Q::FoldMoveXattrs => "UPDATE fsx_xattrs SET layer = ?2 WHERE layer = ?1",
        Q::FoldReparent => {
            "UPDATE fsx_layers SET parent = (SELECT parent FROM fsx_layers WHERE id = ?1) WHERE id = ?2"
        }
        Q::DeleteLayer => "DELETE FROM fsx_layers WHERE id = ?1",
        Q::CopyFileRow => {
            "INSERT INTO fsx_files (layer, id, name, page_size, size, write_seq, cut_page, cut_extent,
                                    deleted, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, 0, ?7, ?8)
             ON CONFLICT (layer, id) DO UPDATE SET name = excluded.name, page_size = excluded.page_size,
                 size = excluded.size, write_seq = excluded.write_seq, cut_page = 0, cut_extent = 0,
                 deleted = 0, created_ms = excluded.created_ms, modified_ms = excluded.modified_ms"
        }
        Q::InsertExtents => {
            "INSERT INTO fsx_extent_map (layer, file_id, extent_idx, key) VALUES (?1, ?2, ?3, ?4)"
        }
        Q::InsertDirty => {
            "INSERT INTO fsx_dirty_pages (layer, file_id, page_no, seq, data, crc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        }
        Q::UsageExtents => {
            "SELECT count(*), coalesce(sum(e.bytes), 0) FROM
                 (SELECT key, count(*) AS n FROM fsx_extent_map
                  WHERE layer IN rarray(?1) AND key IS NOT NULL GROUP BY key) r
             JOIN fsx_extents e ON e.key = r.key WHERE e.refcount = r.n"
        }
        Q::UsageDirty => {
            "SELECT coalesce(sum(length(data)), 0) FROM fsx_dirty_pages
             WHERE layer IN rarray(?1)"
        }
    }
}
