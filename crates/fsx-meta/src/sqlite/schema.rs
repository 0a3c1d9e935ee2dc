//! The SQLite schema and its migrations.
//!
//! Since version 4 the file table, the extent map and the dirty buffer are
//! keyed by **layer** first (see "Branches and layers" in
//! [`crate::contract`]), and leases by branch.
//!
//! | table | row | invariant |
//! |---|---|---|
//! | `fsx_layers` | `id → parent, frozen` (since 4) | a layer with a child is frozen; a frozen layer never changes what it shows |
//! | `fsx_branches` | `id → name, head layer, latest commit` (since 4) | a head is never frozen and belongs to one branch |
//! | `fsx_commits` | `id → layer, parent, merged, branch name, message, auto` (since 4) | a commit's layer is frozen |
//! | `fsx_volume` | one setting (`schema_version`, `volume_id`, `extent_size`, `store_url`, `created_ms`, `next_file_id`, `next_commit_id` (since 5)) | written at init; `schema_version` bumped only by migrations; the `next_*` counters only grow |
//! | `fsx_files` | `(layer, file) →` name, page size, size, `write_seq`, cuts, deleted | `write_seq` only grows along a chain |
//! | `fsx_extent_map` | `(layer, file, extent index) → key` (NULL: tombstone) | every key has an `fsx_extents` row |
//! | `fsx_extents` | key, refcount, state (0 live, 1 deleting), bytes, idle clock | refcount = number of map rows naming the key, over all layers |
//! | `fsx_dirty_pages` | `(layer, file, page) → seq, data` (NULL data = hole), `crc` (since 5) | overrides the layer's extent map; `crc` = `checksum::page_checksum` of the row |
//! | `fsx_leases` | `(branch, file) → holder, expiry` (without a rowid since 9) | at most one holder per file per branch |
//! | `fsx_hot_extents` | `(key, part) → bytes` of the hot tier | parts of one key are contiguous from 0 |
//! | `fsx_counters` | `(tier, op) → calls, bytes` (since version 2) | only grows |
//! | `fsx_tier_copies` | `(key, tier) → bytes, state (0 present, 1 queued), attempts, next_ms, last_error` (since version 3) | a present row means the tier held a verified copy; queued rows are the replication queue |
//! | `fsx_extent_access` | `key → hits, last_ms` (since version 3) | only grows until the extent is forgotten |
//! | `fsx_extent_digests` | `key → digests` of its pages (since version 3) | written with the extent's first copy; forgotten with it |
//! | `fsx_nodes` | `(layer, ino) →` kind, mode, owner, nlink, rdev, times (ns), `data_seq`, parent (directories), symlink target, deleted (since 6) | a regular file's inode number is its `fsx_files` id; `root_ino` in `fsx_volume` names the root |
//! | `fsx_entries` | `(layer, parent, name) → ino, kind`, deleted (since 6) | names are bytes: 1–255, no `/`, no NUL, not `.`/`..` |
//! | `fsx_xattrs` | `(layer, ino, name) → value`, deleted (since 6) | Linux's limits: name ≤ 255 bytes, value ≤ 64 KiB |
//! | `fsx_orphans` | `(branch, ino) → holder, since` (since 6) | an unlinked regular file `holder` still has open: its data stays until its last close, or until `holder` is found dead |
//! | `fsx_tokens` | `id → label, scope, secret_hash, created_ms, revoked_ms` (since 7) | ids unique forever; the secret itself is never stored; a revoked row stays |
//! | `fsx_changes` | `seq →` at_ms, branch, kind, ino, parent, name, to_parent, to_name, commit_id (since 8), origin (since 9) | one row per change of content, written by the transaction that made it; `seq` is 1, 2, 3 … in commit order; pruned from the oldest, never the newest |
//! | `fsx_locks` | `(branch, ino, kind, holder, owner, start) → stop, exclusive` (since 6) | `flock` (kind 1) and POSIX byte-range (kind 2) locks; the locks of one holder and owner never overlap; a dead holder's locks are void |
//!
//! `MIGRATIONS[i]` takes a volume from schema version `i` to `i + 1`;
//! version 0 means "empty database".

/// Statements taking the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    "
    CREATE TABLE fsx_volume (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE fsx_files (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        page_size   INTEGER NOT NULL,
        size        INTEGER NOT NULL DEFAULT 0,
        write_seq   INTEGER NOT NULL DEFAULT 0,
        created_ms  INTEGER NOT NULL,
        modified_ms INTEGER NOT NULL
    );
    CREATE TABLE fsx_extents (
        key           TEXT PRIMARY KEY,
        refcount      INTEGER NOT NULL,
        state         INTEGER NOT NULL DEFAULT 0,
        bytes         INTEGER NOT NULL,
        created_ms    INTEGER NOT NULL,
        idle_since_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX fsx_extents_idle ON fsx_extents (refcount, idle_since_ms);
    CREATE TABLE fsx_extent_map (
        file_id    INTEGER NOT NULL,
        extent_idx INTEGER NOT NULL,
        key        TEXT NOT NULL,
        PRIMARY KEY (file_id, extent_idx)
    ) WITHOUT ROWID;
    CREATE INDEX fsx_extent_map_key ON fsx_extent_map (key);
    CREATE TABLE fsx_dirty_pages (
        file_id INTEGER NOT NULL,
        page_no INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        data    BLOB,
        PRIMARY KEY (file_id, page_no)
    );
    CREATE TABLE fsx_leases (
        file_id    INTEGER PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE fsx_hot_extents (
        key       TEXT NOT NULL,
        part      INTEGER NOT NULL,
        total_len INTEGER NOT NULL,
        data      BLOB NOT NULL,
        PRIMARY KEY (key, part)
    );
    ",
    // 1 → 2: persistent operation counters (`fsx stats`).
    "
    CREATE TABLE fsx_counters (
        tier  TEXT NOT NULL,
        op    TEXT NOT NULL,
        calls INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (tier, op)
    ) WITHOUT ROWID;
    ",
    // 2 → 3: tiered storage: copy records and the replication queue, and
    // access statistics.
    "
    CREATE TABLE fsx_tier_copies (
        key        TEXT NOT NULL,
        tier       TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        state      INTEGER NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        next_ms    INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (key, tier)
    ) WITHOUT ROWID;
    CREATE INDEX fsx_tier_copies_due ON fsx_tier_copies (state, next_ms);
    CREATE INDEX fsx_tier_copies_tier ON fsx_tier_copies (tier, key);
    CREATE TABLE fsx_extent_access (
        key     TEXT PRIMARY KEY,
        hits    INTEGER NOT NULL,
        last_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE fsx_extent_digests (
        key     TEXT PRIMARY KEY,
        digests BLOB NOT NULL
    ) WITHOUT ROWID;
    ",
    // 3 → 4: branches, commits and layers. Existing rows become layer 1,
    // the head of `main`.
    "
    CREATE TABLE fsx_layers (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        parent     INTEGER,
        frozen     INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX fsx_layers_parent ON fsx_layers (parent);
    CREATE TABLE fsx_branches (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        head       INTEGER NOT NULL,
        commit_id  INTEGER,
        created_ms INTEGER NOT NULL,
        commit_ms  INTEGER NOT NULL
    );
    CREATE TABLE fsx_commits (
        id         INTEGER PRIMARY KEY,
        layer      INTEGER NOT NULL,
        parent     INTEGER,
        merged     INTEGER,
        branch     TEXT NOT NULL,
        message    TEXT NOT NULL,
        auto       INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    INSERT INTO fsx_layers (id, parent, frozen, created_ms) VALUES (1, NULL, 0, 0);
    INSERT INTO fsx_branches (id, name, head, commit_id, created_ms, commit_ms)
        VALUES (1, 'main', 1, NULL, 0, 0);
    INSERT INTO fsx_volume (key, value)
        SELECT 'next_file_id', coalesce(max(id), 0) + 1 FROM fsx_files;

    CREATE TABLE fsx_files_v4 (
        layer       INTEGER NOT NULL,
        id          INTEGER NOT NULL,
        name        TEXT NOT NULL,
        page_size   INTEGER NOT NULL,
        size        INTEGER NOT NULL DEFAULT 0,
        write_seq   INTEGER NOT NULL DEFAULT 0,
        cut_page    INTEGER,
        cut_extent  INTEGER,
        deleted     INTEGER NOT NULL DEFAULT 0,
        created_ms  INTEGER NOT NULL,
        modified_ms INTEGER NOT NULL,
        PRIMARY KEY (layer, id)
    ) WITHOUT ROWID;
    INSERT INTO fsx_files_v4 (layer, id, name, page_size, size, write_seq, created_ms, modified_ms)
        SELECT 1, id, name, page_size, size, write_seq, created_ms, modified_ms FROM fsx_files;
    DROP TABLE fsx_files;
    ALTER TABLE fsx_files_v4 RENAME TO fsx_files;
    CREATE INDEX fsx_files_name ON fsx_files (name);
    CREATE INDEX fsx_files_id ON fsx_files (id);

    CREATE TABLE fsx_extent_map_v4 (
        layer      INTEGER NOT NULL,
        file_id    INTEGER NOT NULL,
        extent_idx INTEGER NOT NULL,
        key        TEXT,
        PRIMARY KEY (layer, file_id, extent_idx)
    ) WITHOUT ROWID;
    INSERT INTO fsx_extent_map_v4 (layer, file_id, extent_idx, key)
        SELECT 1, file_id, extent_idx, key FROM fsx_extent_map;
    DROP TABLE fsx_extent_map;
    ALTER TABLE fsx_extent_map_v4 RENAME TO fsx_extent_map;
    CREATE INDEX fsx_extent_map_key ON fsx_extent_map (key);
    -- Versions of a range in every layer, for files with a long history.
    CREATE INDEX fsx_extent_map_file ON fsx_extent_map (file_id, extent_idx);

    CREATE TABLE fsx_dirty_pages_v4 (
        layer   INTEGER NOT NULL,
        file_id INTEGER NOT NULL,
        page_no INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        data    BLOB,
        PRIMARY KEY (layer, file_id, page_no)
    );
    INSERT INTO fsx_dirty_pages_v4 (layer, file_id, page_no, seq, data)
        SELECT 1, file_id, page_no, seq, data FROM fsx_dirty_pages;
    DROP TABLE fsx_dirty_pages;
    ALTER TABLE fsx_dirty_pages_v4 RENAME TO fsx_dirty_pages;
    CREATE INDEX fsx_dirty_pages_file ON fsx_dirty_pages (file_id, page_no);

    CREATE TABLE fsx_leases_v4 (
        branch     INTEGER NOT NULL,
        file_id    INTEGER NOT NULL,
        holder     TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (branch, file_id)
    );
    INSERT INTO fsx_leases_v4 (branch, file_id, holder, expires_ms)
        SELECT 1, file_id, holder, expires_ms FROM fsx_leases;
    DROP TABLE fsx_leases;
    ALTER TABLE fsx_leases_v4 RENAME TO fsx_leases;
    ",
    // 4 → 5: integrity. Dirty pages carry a checksum (`crate::checksum`;
    // existing rows get theirs from `backfill_page_checksums`, run right
    // after this batch), and commit ids come from a counter that only
    // grows, so an id a reset or an expiry freed is never handed out again.
    // The counter starts past every id in use and every id the table's
    // rowid ever handed out that is still visible (the largest one).
    "
    ALTER TABLE fsx_dirty_pages ADD COLUMN crc INTEGER;
    INSERT INTO fsx_volume (key, value)
        SELECT 'next_commit_id', coalesce(max(id), 0) + 1 FROM fsx_commits;
    ",
    // 5 → 6: the file tree (`crate::logic::tree`). Layered like
    // `fsx_files`; the root and the entries of existing files come from
    // `tree::migrate_flat_names`, run right after this batch.
    "
    CREATE TABLE fsx_nodes (
        layer    INTEGER NOT NULL,
        ino      INTEGER NOT NULL,
        kind     INTEGER NOT NULL,
        mode     INTEGER NOT NULL,
        uid      INTEGER NOT NULL,
        gid      INTEGER NOT NULL,
        nlink    INTEGER NOT NULL,
        rdev     INTEGER NOT NULL,
        atime_ns INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        btime_ns INTEGER NOT NULL,
        data_seq INTEGER NOT NULL,
        parent   INTEGER,
        target   BLOB,
        deleted  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (layer, ino)
    ) WITHOUT ROWID;
    CREATE INDEX fsx_nodes_ino ON fsx_nodes (ino);
    CREATE TABLE fsx_entries (
        layer   INTEGER NOT NULL,
        parent  INTEGER NOT NULL,
        name    BLOB NOT NULL,
        ino     INTEGER NOT NULL,
        kind    INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (layer, parent, name)
    ) WITHOUT ROWID;
    CREATE INDEX fsx_entries_dir ON fsx_entries (parent, name);
    CREATE INDEX fsx_entries_ino ON fsx_entries (ino);
    CREATE TABLE fsx_xattrs (
        layer   INTEGER NOT NULL,
        ino     INTEGER NOT NULL,
        name    BLOB NOT NULL,
        value   BLOB,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (layer, ino, name)
    ) WITHOUT ROWID;
    CREATE INDEX fsx_xattrs_ino ON fsx_xattrs (ino, name);
    CREATE TABLE fsx_orphans (
        branch   INTEGER NOT NULL,
        ino      INTEGER NOT NULL,
        holder   TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        PRIMARY KEY (branch, ino)
    );
    CREATE TABLE fsx_locks (
        branch    INTEGER NOT NULL,
        ino       INTEGER NOT NULL,
        kind      INTEGER NOT NULL,
        holder    TEXT NOT NULL,
        owner     INTEGER NOT NULL,
        start     INTEGER NOT NULL,
        stop      INTEGER NOT NULL,
        exclusive INTEGER NOT NULL,
        PRIMARY KEY (branch, ino, kind, holder, owner, start)
    );
    CREATE INDEX fsx_locks_holder ON fsx_locks (holder);
    ",
    // 6 → 7: the API tokens of `fsx serve` (`crate::logic::tokens`).
    "
    CREATE TABLE fsx_tokens (
        id          TEXT PRIMARY KEY,
        label       TEXT NOT NULL,
        scope       TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        revoked_ms  INTEGER
    ) WITHOUT ROWID;
    ",
    // 7 → 8: the change feed (`crate::logic::changes`). The number is the
    // rowid (no AUTOINCREMENT: the newest row is never deleted, so a
    // number never repeats, and no `sqlite_sequence` page is written per
    // change).
    "
    CREATE TABLE fsx_changes (
        seq       INTEGER PRIMARY KEY,
        at_ms     INTEGER NOT NULL,
        branch    INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        ino       INTEGER,
        parent    INTEGER,
        name      BLOB,
        to_parent INTEGER,
        to_name   BLOB,
        commit_id INTEGER
    );
    ",
    // 8 → 9: which engine instance made each change, so that a follower
    // that writes too (a mount) can skip its own; and leases keyed by
    // their primary key alone (no rowid beside it), so that taking and
    // releasing one writes one B-tree, not two — every create and close
    // of a written file does both. And no index on file names nor on
    // nodes' numbers alone: since the flat API resolves paths through the
    // tree (6), no statement looks a file row up by name, and every
    // statement on nodes names their layers, which the primary key
    // (layer, ino) serves; every create wrote both indexes.
    "
    ALTER TABLE fsx_changes ADD COLUMN origin INTEGER;
    DROP INDEX IF EXISTS fsx_files_name;
    DROP INDEX IF EXISTS fsx_nodes_ino;
    CREATE TABLE fsx_leases_v9 (
        branch     INTEGER NOT NULL,
        file_id    INTEGER NOT NULL,
        holder     TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (branch, file_id)
    ) WITHOUT ROWID;
    INSERT INTO fsx_leases_v9 (branch, file_id, holder, expires_ms)
        SELECT branch, file_id, holder, expires_ms FROM fsx_leases;
    DROP TABLE fsx_leases;
    ALTER TABLE fsx_leases_v9 RENAME TO fsx_leases;
    ",
];
