//! The `tree` family's statements.

use crate::logic::tree::Q;

pub(super) fn text(q: Q) -> &'static str {
    match q {
        Q::NodeRows => {
            "SELECT layer, ino, kind, mode, uid, gid, nlink, rdev, atime_ns, mtime_ns, ctime_ns,
                    btime_ns, data_seq, parent, target, deleted
             FROM fsx_nodes WHERE layer IN rarray(?1) AND ino = ?2"
        }
        Q::PutNode => {
            // An upsert, not `INSERT OR REPLACE`: a replace deletes and
            // reinserts the row, rewriting its entry in every index, where
            // an update leaves the index on `ino` alone (one page less to
            // write per change of an existing node).
            "INSERT INTO fsx_nodes (layer, ino, kind, mode, uid, gid, nlink, rdev,
                 atime_ns, mtime_ns, ctime_ns, btime_ns, data_seq, parent, target, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
             ON CONFLICT (layer, ino) DO UPDATE SET kind = excluded.kind, mode = excluded.mode,
                 uid = excluded.uid, gid = excluded.gid, nlink = excluded.nlink,
                 rdev = excluded.rdev, atime_ns = excluded.atime_ns,
                 mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns,
                 btime_ns = excluded.btime_ns, data_seq = excluded.data_seq,
                 parent = excluded.parent, target = excluded.target, deleted = excluded.deleted"
        }
        Q::EntryRows => {
            "SELECT layer, ino, kind, deleted FROM fsx_entries
             WHERE layer IN rarray(?1) AND parent = ?2 AND name = ?3"
        }
        Q::DirRows => {
            "SELECT layer, name, ino, kind, deleted FROM fsx_entries
             WHERE layer IN rarray(?1) AND parent = ?2 AND name > ?3
             ORDER BY name LIMIT ?4"
        }
        Q::EntriesOf => {
            "SELECT DISTINCT parent, name FROM fsx_entries
             WHERE layer IN rarray(?1) AND ino = ?2 AND deleted = 0"
        }
        Q::PutEntry => {
            // An upsert, as `PutNode`.
            "INSERT INTO fsx_entries (layer, parent, name, ino, kind, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (layer, parent, name) DO UPDATE SET ino = excluded.ino,
                 kind = excluded.kind, deleted = excluded.deleted"
        }
        Q::DeleteEntry => "DELETE FROM fsx_entries WHERE layer = ?1 AND parent = ?2 AND name = ?3",
        Q::XattrRows => {
            "SELECT layer, value, deleted FROM fsx_xattrs
             WHERE layer IN rarray(?1) AND ino = ?2 AND name = ?3"
        }
        Q::XattrNames => {
            "SELECT layer, name, deleted FROM fsx_xattrs
             WHERE layer IN rarray(?1) AND ino = ?2 ORDER BY name"
        }
        Q::PutXattr => {
            "INSERT OR REPLACE INTO fsx_xattrs (layer, ino, name, value, deleted)
             VALUES (?1, ?2, ?3, ?4, ?5)"
        }
        Q::DeleteXattrsOf => "DELETE FROM fsx_xattrs WHERE layer = ?1 AND ino = ?2",
        Q::AddOrphan => {
            "INSERT OR IGNORE INTO fsx_orphans (branch, ino, holder, since_ms)
             VALUES (?1, ?2, ?3, ?4)"
        }
        Q::DeleteOrphan => "DELETE FROM fsx_orphans WHERE branch = ?1 AND ino = ?2",
        Q::Orphans => "SELECT branch, ino, holder, since_ms FROM fsx_orphans ORDER BY branch, ino",
        Q::LocksOf => {
            "SELECT holder, owner, start, stop, exclusive FROM fsx_locks
             WHERE branch = ?1 AND ino = ?2 AND kind = ?3 ORDER BY holder, owner, start"
        }
        Q::AddLock => {
            "INSERT INTO fsx_locks (branch, ino, kind, holder, owner, start, stop, exclusive)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        }
        Q::DeleteOwnerLocks => {
            "DELETE FROM fsx_locks
             WHERE branch = ?1 AND ino = ?2 AND kind = ?3 AND holder = ?4 AND owner = ?5"
        }
        Q::ReleaseLocks => {
            "DELETE FROM fsx_locks WHERE holder = ?1 AND (?2 IS NULL OR ino = ?2)
                 AND (?3 IS NULL OR (kind = ?3 AND owner = ?4))"
        }
    }
}
