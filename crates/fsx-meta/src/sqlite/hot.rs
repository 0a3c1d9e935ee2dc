//! The hot tier in the SQLite metadata database: [`SqliteHotStore`].
//!
//! Layout, splitting and invariants are described in [`crate::hot`]. Here:
//! a `put` is one `BEGIN IMMEDIATE` transaction on the engine's writer
//! connection, so it serialises with metadata writes and with other puts;
//! reads run on the engine's pooled readers, one snapshot each (WAL), so
//! they never wait for a writer. Like the engine, calls run synchronously
//! when their future is first polled.

use std::ops::Range;

use bytes::Bytes;
use fsx_store::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectKey, ObjectMeta,
    StoreError,
};
use rusqlite::{OptionalExtension, params};

use super::{SqliteMeta, sql_err};
use crate::hot::{
    ReadPlan, assemble, capabilities, check_max_row_bytes, list_page, plan_read, split, store_err,
};
use crate::num;

/// Extents stored in the SQLite metadata database (see [`crate::hot`]).
#[derive(Clone)]
pub struct SqliteHotStore {
    meta: SqliteMeta,
    max_row_bytes: usize,
    capabilities: Capabilities,
}

impl SqliteMeta {
    /// The hot tier of this volume, sharing this engine's connections; no
    /// stored row will exceed `max_row_bytes` (see [`crate::hot`];
    /// [`crate::hot::DEFAULT_MAX_ROW_BYTES`] models a Durable Object).
    /// `InvalidInput` below [`crate::hot::MIN_ROW_BYTES`].
    pub fn hot_store(&self, max_row_bytes: usize) -> crate::Result<SqliteHotStore> {
        check_max_row_bytes(max_row_bytes)?;
        Ok(SqliteHotStore {
            meta: self.clone(),
            max_row_bytes,
            capabilities: capabilities(),
        })
    }

    /// [`crate::contract::MetaTiers::hot_tier`]: this engine always has a
    /// hot tier, [`SqliteHotStore`].
    pub(crate) fn open_hot_tier(
        &self,
        max_row_bytes: usize,
    ) -> crate::Result<Option<std::sync::Arc<dyn ExtentBackend>>> {
        Ok(Some(std::sync::Arc::new(self.hot_store(max_row_bytes)?)))
    }
}

impl SqliteHotStore {
    /// The configured row limit.
    pub fn max_row_bytes(&self) -> usize {
        self.max_row_bytes
    }

    fn read_range(&self, key: &ObjectKey, range: Range<u64>) -> fsx_store::Result<Bytes> {
        let k = key.as_str();
        self.meta
            .read(|tx| {
                let head: Option<(i64, i64)> = tx
                    .query_row(
                        "SELECT total_len, length(data) FROM fsx_hot_extents WHERE key = ?1 AND part = 0",
                        params![k],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(sql_err)?;
                let Some((total, part_len)) = head else {
                    return Ok(Err(StoreError::not_found(format!("no hot object {key}"))));
                };
                let ReadPlan { bytes, parts } = match plan_read(key, &range, total, part_len) {
                    Ok(plan) => plan,
                    Err(e) => return Ok(Err(e)),
                };
                let Some((first, last)) = parts else {
                    return Ok(Ok(Bytes::new()));
                };
                // Each part contributes [lo, hi) of its own bytes, computed
                // in SQL so only the requested bytes leave the database.
                let mut st = tx
                    .prepare_cached(
                        "SELECT part, substr(data, max(?2 - part * ?4, 0) + 1,
                                 min(?3 - part * ?4, length(data)) - max(?2 - part * ?4, 0))
                         FROM fsx_hot_extents WHERE key = ?1 AND part >= ?5 AND part <= ?6 ORDER BY part",
                    )
                    .map_err(sql_err)?;
                let slices = st
                    .query_map(params![k, num::bound(bytes.start), num::bound(bytes.end), part_len, first, last], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })
                    .map_err(sql_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql_err)?;
                Ok(assemble(key, &bytes, first, slices))
            })
            .map_err(store_err)?
    }
}

impl std::fmt::Debug for SqliteHotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SqliteHotStore({}, max_row_bytes={})",
            self.meta.path().display(),
            self.max_row_bytes
        )
    }
}

impl std::fmt::Display for SqliteHotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sqlite hot tier in {} (rows up to {} bytes)",
            self.meta.path().display(),
            self.max_row_bytes
        )
    }
}

/// Defers a synchronous call until the future is polled, as the contract's
/// laziness rule requires.
fn lazy<'a, T: 'a>(
    f: impl FnOnce() -> fsx_store::Result<T> + Send + 'a,
) -> BoxFuture<'a, fsx_store::Result<T>> {
    Box::pin(async move { f() })
}

impl ExtentBackend for SqliteHotStore {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<Bytes>> {
        lazy(move || self.read_range(key, 0..u64::MAX))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, fsx_store::Result<Bytes>> {
        lazy(move || {
            fsx_store::backend::check_range(&range)?;
            self.read_range(key, range)
        })
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, fsx_store::Result<()>> {
        lazy(move || {
            self.capabilities.check_put_size(key, value.len())?;
            let parts = split(key, &value, self.max_row_bytes);
            let total = num::len(value.len());
            self.meta
                .write(|tx| {
                    tx.execute("DELETE FROM fsx_hot_extents WHERE key = ?1", params![key.as_str()]).map_err(sql_err)?;
                    let mut st = tx
                        .prepare_cached(
                            "INSERT INTO fsx_hot_extents (key, part, total_len, data) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .map_err(sql_err)?;
                    for (i, part) in parts.iter().enumerate() {
                        st.execute(params![key.as_str(), num::len(i), total, part]).map_err(sql_err)?;
                    }
                    Ok(())
                })
                .map_err(store_err)
        })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<()>> {
        lazy(move || {
            self.meta
                .write(|tx| {
                    tx.execute(
                        "DELETE FROM fsx_hot_extents WHERE key = ?1",
                        params![key.as_str()],
                    )
                    .map_err(sql_err)?;
                    Ok(())
                })
                .map_err(store_err)
        })
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<ObjectMeta>> {
        lazy(move || {
            let total: Option<i64> = self
                .meta
                .read(|tx| {
                    tx.query_row(
                        "SELECT total_len FROM fsx_hot_extents WHERE key = ?1 AND part = 0",
                        params![key.as_str()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql_err)
                })
                .map_err(store_err)?;
            match total {
                Some(n) => Ok(ObjectMeta::new(
                    key.clone(),
                    u64::try_from(n).map_err(|_| {
                        StoreError::corrupt(format!("hot object {key} has length {n}"))
                    })?,
                )),
                None => Err(StoreError::not_found(format!("no hot object {key}"))),
            }
        })
    }

    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, fsx_store::Result<ListPage>> {
        lazy(move || {
            let limit = request.effective_limit();
            let after = request.start_after.as_ref().map_or("", |k| k.as_str());
            let rows: Vec<(String, i64)> = self
                .meta
                .read(|tx| {
                    // Text compares by bytes (BINARY collation); substr and
                    // length count characters on both sides, so the prefix
                    // test is exact. One extra row says whether more follow.
                    let mut st = tx
                        .prepare_cached(
                            "SELECT key, total_len FROM fsx_hot_extents
                             WHERE part = 0 AND key >= ?1 AND substr(key, 1, length(?1)) = ?1 AND key > ?2
                             ORDER BY key LIMIT ?3",
                        )
                        .map_err(sql_err)?;
                    st.query_map(params![request.prefix, after, num::limit_plus_one(limit)], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(sql_err)?
                        .collect::<rusqlite::Result<_>>()
                        .map_err(sql_err)
                })
                .map_err(store_err)?;
            list_page(rows, limit)
        })
    }
}
