//! The SQLite schema and its migrations.
//!
//! | table | row | invariant |
//! |---|---|---|
//! | `fsx_volume` | one setting (`schema_version`, `volume_id`, `extent_size`, `store_url`, `created_ms`) | written at init; `schema_version` bumped only by migrations |
//! | `fsx_files` | a file: name, page size, size, `write_seq` | `write_seq` only grows |
//! | `fsx_extent_map` | `(file, extent index) → key` | every key has an `fsx_extents` row |
//! | `fsx_extents` | key, refcount, state (0 live, 1 deleting), bytes, idle clock | refcount = number of map rows naming the key |
//! | `fsx_dirty_pages` | `(file, page) → seq, data` (NULL data = hole) | overrides the extent map |
//! | `fsx_leases` | `file → holder, expiry` | at most one holder per file |
//! | `fsx_hot_extents` | `(key, part) → bytes` of the hot tier | parts of one key are contiguous from 0 |
//! | `fsx_counters` | `(tier, op) → calls, bytes` (since version 2) | only grows |
//! | `fsx_tier_copies` | `(key, tier) → bytes, state (0 present, 1 queued), attempts, next_ms, last_error` (since version 3) | a present row means the tier held a verified copy; queued rows are the replication queue |
//! | `fsx_extent_access` | `key → hits, last_ms` (since version 3) | only grows until the extent is forgotten |
//! | `fsx_extent_digests` | `key → digests` of its pages (since version 3) | written with the extent's first copy; forgotten with it |
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
];
