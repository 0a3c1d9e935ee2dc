//! The hot tier's transactions, written once for every engine: the
//! [`ExtentBackend`](fsx_store::ExtentBackend) calls of
//! [`HotStore`](crate::hot::HotStore) over the `fsx_hot_extents` table.
//!
//! The layout and its invariants are in [`crate::hot`]. Here:
//!
//! - a read is one transaction: part 0's row says the object's length and
//!   the part length `P`, then one statement reads the covering parts,
//!   each already sliced in SQL to the bytes the range asks for;
//! - a write takes [`Lock::HotKey`] first, so two concurrent puts of one
//!   key queue instead of colliding on the primary key and the last to
//!   commit wins whole; then it deletes the old parts and inserts the new
//!   ones with one [`Tx::exec_each`] (one round trip on PostgreSQL however
//!   many parts);
//! - an absent object is `Ok(None)`, which the store reports as its own
//!   `NotFound`.

use std::ops::Range;

use bytes::Bytes;
use fsx_store::{ListPage, ObjectKey};

use super::{Column, Lock, Tx, args};
use crate::error::Result;
use crate::hot::{ReadPlan, assemble, list_page, plan_read, split};
use crate::num;

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(key) → total_len, part_len`: part 0's row (its data's length in
    /// bytes is the part length of the object).
    Head,
    /// `(key, start, end, part_len, first, last) → part, bytes` for parts
    /// `first..=last` by part: each part's bytes within `start..end` of
    /// the object, sliced in SQL.
    Slices,
    /// `(key)`: deletes every part of an object.
    Delete,
    /// `(key, total_len)` and per row `(part, data)`: inserts a part.
    InsertParts,
    /// `(prefix, after, limit) → key, total_len`: objects whose key starts
    /// with `prefix` and sorts after `after` (bytewise), in key order, at
    /// most `limit`.
    List,
}

/// The whole object `key`; `None` when there is none.
pub(crate) async fn get(tx: &impl Tx, key: &ObjectKey) -> Result<Option<Bytes>> {
    read_range(tx, key, &(0..u64::MAX)).await
}

/// Bytes `range` of object `key` (clamped to its length); `None` when
/// there is no such object. The caller checked that `range` is not
/// inverted.
pub(crate) async fn read_range(
    tx: &impl Tx,
    key: &ObjectKey,
    range: &Range<u64>,
) -> Result<Option<Bytes>> {
    let k = key.as_str();
    let Some(head) = tx.query_opt(Q::Head.into(), args![k]).await? else {
        return Ok(None);
    };
    let total = head.i64(0, "hot object length")?;
    let part_len = head.i64(1, "hot part length")?;
    let ReadPlan { bytes, parts } = plan_read(key, range, total, part_len)?;
    let Some((first, last)) = parts else {
        return Ok(Some(Bytes::new()));
    };
    let rows = tx
        .query(
            Q::Slices.into(),
            args![
                k,
                num::bound(bytes.start),
                num::bound(bytes.end),
                part_len,
                first,
                last
            ],
        )
        .await?;
    let slices = rows
        .iter()
        .map(|r| {
            let data = r.opt_blob(1, "hot part bytes")?.unwrap_or_default();
            Ok((r.i64(0, "hot part")?, data))
        })
        .collect::<Result<Vec<_>>>()?;
    assemble(key, &bytes, first, slices).map(Some)
}

/// Stores `value` as `key`, replacing any old object whole; no row holds
/// more than `max_row_bytes` (see [`crate::hot`]).
pub(crate) async fn put(
    tx: &impl Tx,
    key: &ObjectKey,
    value: &[u8],
    max_row_bytes: usize,
) -> Result<()> {
    let k = key.as_str();
    let parts = split(key, value, max_row_bytes);
    tx.lock(Lock::HotKey(k)).await?;
    tx.exec(Q::Delete.into(), args![k]).await?;
    let columns = [
        Column::Ints((0..parts.len()).map(num::len).collect()),
        Column::OptBlobs(parts.into_iter().map(Some).collect()),
    ];
    tx.exec_each(
        Q::InsertParts.into(),
        args![k, num::len(value.len())],
        &columns,
    )
    .await?;
    Ok(())
}

/// Removes object `key`; nothing to do when it is absent.
pub(crate) async fn delete(tx: &impl Tx, key: &ObjectKey) -> Result<()> {
    let k = key.as_str();
    tx.lock(Lock::HotKey(k)).await?;
    tx.exec(Q::Delete.into(), args![k]).await?;
    Ok(())
}

/// The length of object `key`; `None` when there is none.
pub(crate) async fn head(tx: &impl Tx, key: &ObjectKey) -> Result<Option<u64>> {
    tx.query_opt(Q::Head.into(), args![key.as_str()])
        .await?
        .map(|r| r.u64(0, "hot object length"))
        .transpose()
}

/// One page of objects under `prefix` after `after` (`""`: from the
/// start), at most `limit`.
pub(crate) async fn list(
    tx: &impl Tx,
    prefix: &str,
    after: &str,
    limit: usize,
) -> Result<ListPage> {
    // One extra row says whether more follow.
    let rows = tx
        .query(
            Q::List.into(),
            args![prefix, after, num::limit_plus_one(limit)],
        )
        .await?;
    let rows = rows
        .iter()
        .map(|r| Ok((r.text(0, "hot key")?, r.i64(1, "hot object length")?)))
        .collect::<Result<Vec<_>>>()?;
    list_page(rows, limit)
}

/// `impl ExtentBackend for $store` (a [`HotStore`](crate::hot::HotStore)
/// of one engine) with `Debug` and `Display` naming it `$name` at
/// `$location` (an expression over the engine `$meta`): each call one
/// transaction of the engine's `run` over the function above (`$mode`: see
/// [`super::run`]), its errors as store errors
/// ([`crate::hot::store_err`]). Checks of the request (range, size) come
/// first, inside the future, so a call does nothing until polled.
macro_rules! impl_hot_store {
    ($store:ty, $mode:ident, $name:literal, |$meta:ident| $location:expr) => {
        impl std::fmt::Debug for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let $meta = &self.meta;
                write!(
                    f,
                    "HotStore({} {}, max_row_bytes={})",
                    $name, $location, self.max_row_bytes
                )
            }
        }

        impl std::fmt::Display for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let $meta = &self.meta;
                write!(
                    f,
                    "{} hot tier in {} (rows up to {} bytes)",
                    $name, $location, self.max_row_bytes
                )
            }
        }

        impl fsx_store::ExtentBackend for $store {
            fn capabilities(&self) -> &fsx_store::Capabilities {
                &self.capabilities
            }

            fn get<'a>(
                &'a self,
                key: &'a fsx_store::ObjectKey,
            ) -> fsx_store::BoxFuture<'a, fsx_store::Result<bytes::Bytes>> {
                let meta = &self.meta;
                Box::pin(async move {
                    $crate::logic::run!($mode, meta, $crate::logic::TxKind::Read, |tx| {
                        $crate::logic::hot::get(tx, key).await
                    })
                    .await
                    .map_err($crate::hot::store_err)?
                    .ok_or_else(|| $crate::hot::not_found(key))
                })
            }

            fn get_range<'a>(
                &'a self,
                key: &'a fsx_store::ObjectKey,
                range: std::ops::Range<u64>,
            ) -> fsx_store::BoxFuture<'a, fsx_store::Result<bytes::Bytes>> {
                let meta = &self.meta;
                Box::pin(async move {
                    fsx_store::backend::check_range(&range)?;
                    let range = &range;
                    $crate::logic::run!($mode, meta, $crate::logic::TxKind::Read, |tx| {
                        $crate::logic::hot::read_range(tx, key, range).await
                    })
                    .await
                    .map_err($crate::hot::store_err)?
                    .ok_or_else(|| $crate::hot::not_found(key))
                })
            }

            fn put<'a>(
                &'a self,
                key: &'a fsx_store::ObjectKey,
                value: bytes::Bytes,
            ) -> fsx_store::BoxFuture<'a, fsx_store::Result<()>> {
                let meta = &self.meta;
                let max_row_bytes = self.max_row_bytes;
                Box::pin(async move {
                    self.capabilities.check_put_size(key, value.len())?;
                    let value: &[u8] = &value;
                    $crate::logic::run!($mode, meta, $crate::logic::TxKind::Write, |tx| {
                        $crate::logic::hot::put(tx, key, value, max_row_bytes).await
                    })
                    .await
                    .map_err($crate::hot::store_err)
                })
            }

            fn delete<'a>(
                &'a self,
                key: &'a fsx_store::ObjectKey,
            ) -> fsx_store::BoxFuture<'a, fsx_store::Result<()>> {
                let meta = &self.meta;
                Box::pin(async move {
                    $crate::logic::run!($mode, meta, $crate::logic::TxKind::Write, |tx| {
                        $crate::logic::hot::delete(tx, key).await
                    })
                    .await
                    .map_err($crate::hot::store_err)
                })
            }

            fn head<'a>(
                &'a self,
                key: &'a fsx_store::ObjectKey,
            ) -> fsx_store::BoxFuture<'a, fsx_store::Result<fsx_store::ObjectMeta>> {
                let meta = &self.meta;
                Box::pin(async move {
                    let size =
                        $crate::logic::run!($mode, meta, $crate::logic::TxKind::Read, |tx| {
                            $crate::logic::hot::head(tx, key).await
                        })
                        .await
                        .map_err($crate::hot::store_err)?
                        .ok_or_else(|| $crate::hot::not_found(key))?;
                    Ok(fsx_store::ObjectMeta::new(key.clone(), size))
                })
            }

            fn list<'a>(
                &'a self,
                request: &'a fsx_store::ListRequest,
            ) -> fsx_store::BoxFuture<'a, fsx_store::Result<fsx_store::ListPage>> {
                let meta = &self.meta;
                Box::pin(async move {
                    let limit = request.effective_limit();
                    let prefix = request.prefix.as_str();
                    let after = request.start_after.as_ref().map_or("", |k| k.as_str());
                    $crate::logic::run!($mode, meta, $crate::logic::TxKind::Read, |tx| {
                        $crate::logic::hot::list(tx, prefix, after, limit).await
                    })
                    .await
                    .map_err($crate::hot::store_err)
                })
            }
        }
    };
}
pub(crate) use impl_hot_store;
