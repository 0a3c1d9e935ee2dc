//! The hot tier in the PostgreSQL metadata database: [`PgHotStore`].
//!
//! Layout, splitting and invariants are described in [`crate::hot`]. Here:
//!
//! - a `put` (and a `delete`) first takes a transaction-scoped advisory lock
//!   on the key, then deletes the old parts and inserts the new ones: two
//!   concurrent puts of one key queue instead of colliding on the primary
//!   key, and the last to commit wins whole;
//! - reads run in one `REPEATABLE READ READ ONLY` transaction, so the part
//!   0 header and the parts read after it come from one snapshot;
//! - `get_range` slices with `substring()` in SQL; with the column's
//!   `STORAGE EXTERNAL` PostgreSQL fetches only the TOAST chunks covering the
//!   slice.

use std::ops::Range;

use bytes::Bytes;
use fsx_store::{
    BoxFuture, Capabilities, ExtentBackend, ListPage, ListRequest, ObjectKey, ObjectMeta,
    StoreError,
};

use super::PgMeta;
use super::conn::{Pool, Tx, TxKind, col, transact};
use crate::hot::{
    ReadPlan, assemble, capabilities, check_max_row_bytes, list_page, plan_read, split, store_err,
};
use crate::num;

/// Advisory-lock namespace of hot-tier keys (the two-key form of
/// `pg_advisory_xact_lock`, so it cannot collide with the volume lock).
const HOT_LOCK_CLASS: i32 = 0x6873_7478; // "hstx"

/// Extents stored in the PostgreSQL metadata database (see [`crate::hot`]).
#[derive(Clone)]
pub struct PgHotStore {
    meta: PgMeta,
    max_row_bytes: usize,
    capabilities: Capabilities,
}

impl PgMeta {
    /// The hot tier of this volume, sharing this engine's connection pool;
    /// no stored row will exceed `max_row_bytes` (see [`crate::hot`];
    /// [`crate::hot::DEFAULT_MAX_ROW_BYTES`] models a Durable Object).
    /// `InvalidInput` below [`crate::hot::MIN_ROW_BYTES`].
    pub fn hot_store(&self, max_row_bytes: usize) -> crate::Result<PgHotStore> {
        check_max_row_bytes(max_row_bytes)?;
        Ok(PgHotStore {
            meta: self.clone(),
            max_row_bytes,
            capabilities: capabilities(),
        })
    }

    /// [`crate::contract::MetaTiers::hot_tier`]: this engine always has a
    /// hot tier, [`PgHotStore`].
    pub(crate) fn open_hot_tier(
        &self,
        max_row_bytes: usize,
    ) -> crate::Result<Option<std::sync::Arc<dyn ExtentBackend>>> {
        Ok(Some(std::sync::Arc::new(self.hot_store(max_row_bytes)?)))
    }
}

impl std::fmt::Debug for PgHotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgHotStore({}, max_row_bytes={})",
            self.meta.url(),
            self.max_row_bytes
        )
    }
}

impl std::fmt::Display for PgHotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres hot tier in {} (rows up to {} bytes)",
            self.meta.url(),
            self.max_row_bytes
        )
    }
}

async fn lock_key(tx: &Tx<'_>, key: &str) -> crate::Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&HOT_LOCK_CLASS, &key],
    )
    .await?;
    Ok(())
}

async fn read_range(
    tx: &Tx<'_>,
    key: &ObjectKey,
    range: &Range<u64>,
) -> crate::Result<fsx_store::Result<Bytes>> {
    let k = key.as_str();
    let Some(head) = tx
        .query_opt("SELECT total_len, octet_length(data)::bigint FROM fsx_hot_extents WHERE key = $1 AND part = 0", &[&k])
        .await?
    else {
        return Ok(Err(StoreError::not_found(format!("no hot object {key}"))));
    };
    let (total, part_len): (i64, i64) = (col(&head, 0)?, col(&head, 1)?);
    let ReadPlan { bytes, parts } = match plan_read(key, range, total, part_len) {
        Ok(plan) => plan,
        Err(e) => return Ok(Err(e)),
    };
    let Some((first, last)) = parts else {
        return Ok(Ok(Bytes::new()));
    };
    // Each part contributes [lo, hi) of its own bytes; substring() is
    // 1-based and its length is in bytes for bytea.
    let rows = tx
        .query(
            "SELECT part, substring(data FROM (greatest($2 - part * $4, 0) + 1)::int
                                   FOR (least($3 - part * $4, octet_length(data)) - greatest($2 - part * $4, 0))::int)
             FROM fsx_hot_extents WHERE key = $1 AND part >= $5 AND part <= $6 ORDER BY part",
            &[&k, &num::bound(bytes.start), &num::bound(bytes.end), &part_len, &first, &last],
        )
        .await?;
    let mut slices = Vec::with_capacity(rows.len());
    for r in &rows {
        slices.push((col::<i64>(r, 0)?, col::<Vec<u8>>(r, 1)?));
    }
    Ok(assemble(key, &bytes, first, slices))
}

impl PgHotStore {
    /// The configured row limit.
    pub fn max_row_bytes(&self) -> usize {
        self.max_row_bytes
    }

    fn pool(&self) -> &Pool {
        self.meta.pool()
    }

    async fn read(&self, key: &ObjectKey, range: Range<u64>) -> fsx_store::Result<Bytes> {
        transact!(self.pool(), TxKind::Read, |tx| read_range(tx, key, &range)).map_err(store_err)?
    }
}

impl ExtentBackend for PgHotStore {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<Bytes>> {
        Box::pin(self.read(key, 0..u64::MAX))
    }

    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, fsx_store::Result<Bytes>> {
        Box::pin(async move {
            fsx_store::backend::check_range(&range)?;
            self.read(key, range).await
        })
    }

    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, fsx_store::Result<()>> {
        Box::pin(async move {
            self.capabilities.check_put_size(key, value.len())?;
            let parts = split(key, &value, self.max_row_bytes);
            let total = num::len(value.len());
            let k = key.as_str();
            transact!(self.pool(), TxKind::Write, |tx| async {
                lock_key(tx, k).await?;
                tx.execute("DELETE FROM fsx_hot_extents WHERE key = $1", &[&k]).await?;
                for (i, part) in parts.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO fsx_hot_extents (key, part, total_len, data) VALUES ($1, $2, $3, $4)",
                        &[&k, &(num::len(i)), &total, part],
                    )
                    .await?;
                }
                Ok(())
            })
            .map_err(store_err)
        })
    }

    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<()>> {
        Box::pin(async move {
            let k = key.as_str();
            transact!(self.pool(), TxKind::Write, |tx| async {
                lock_key(tx, k).await?;
                tx.execute("DELETE FROM fsx_hot_extents WHERE key = $1", &[&k])
                    .await?;
                Ok(())
            })
            .map_err(store_err)
        })
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<ObjectMeta>> {
        Box::pin(async move {
            let k = key.as_str();
            let total: Option<i64> = transact!(self.pool(), TxKind::Read, |tx| async {
                match tx
                    .query_opt(
                        "SELECT total_len FROM fsx_hot_extents WHERE key = $1 AND part = 0",
                        &[&k],
                    )
                    .await?
                {
                    Some(r) => Ok(Some(col::<i64>(&r, 0)?)),
                    None => Ok(None),
                }
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
        Box::pin(async move {
            let limit = request.effective_limit();
            let after = request.start_after.as_ref().map_or("", |k| k.as_str());
            let prefix = request.prefix.as_str();
            let rows = transact!(self.pool(), TxKind::Read, |tx| async {
                // `key >= prefix` lets the primary key index find the start;
                // keys compare by bytes (COLLATE "C"). One extra row says
                // whether more follow.
                let rows = tx
                    .query(
                        "SELECT key, total_len FROM fsx_hot_extents
                         WHERE part = 0 AND key >= $1 AND starts_with(key, $1) AND key > $2
                         ORDER BY key LIMIT $3",
                        &[&prefix, &after, &(num::limit_plus_one(limit))],
                    )
                    .await?;
                rows.iter()
                    .map(|r| Ok((col::<String>(r, 0)?, col::<i64>(r, 1)?)))
                    .collect::<crate::Result<Vec<_>>>()
            })
            .map_err(store_err)?;
            list_page(rows, limit)
        })
    }
}
