//! PostgreSQL as a dialect of the shared logic ([`crate::logic::Tx`]):
//! binding [`Param`]s (lists as arrays), decoding rows into [`Row`]s,
//! taking the logic's [`Lock`]s as advisory and row locks, and running a
//! logic function as one transaction, retried after a serialization
//! failure or a deadlock.

use std::error::Error as StdError;

use bytes::{Bytes, BytesMut};
use fsx_store::BoxFuture;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::conn::{self, MAX_ATTEMPTS, is_retryable};
use super::{PgMeta, sql};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::logic::{Caches, Cell, Column, Lock, Param, Row, Stmt, Tx, TxKind, Within};

/// One PostgreSQL transaction seen by the shared logic.
pub(crate) struct PgTx<'a> {
    tx: &'a conn::Tx<'a>,
    caches: &'a Caches,
    shown: &'a str,
}

type BoxError = Box<dyn StdError + Sync + Send>;

fn mismatch(what: &str, ty: &Type) -> BoxError {
    format!("fsx binds {what} where the statement wants {ty}").into()
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match *self {
            Param::OptInt(None) | Param::OptText(None) | Param::OptBlob(None) => Ok(IsNull::Yes),
            Param::Int(v) | Param::OptInt(Some(v)) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => Err(mismatch("an integer", ty)),
            },
            Param::Text(s) | Param::OptText(Some(s)) if <&str as ToSql>::accepts(ty) => {
                s.to_sql(ty, out)
            }
            Param::OptBlob(Some(b)) if <&[u8] as ToSql>::accepts(ty) => b.to_sql(ty, out),
            Param::Ints(v) if <&[i64] as ToSql>::accepts(ty) => v.to_sql(ty, out),
            Param::Texts(v) if <&[&str] as ToSql>::accepts(ty) => v.to_sql(ty, out),
            _ => Err(mismatch(&format!("{self:?}"), ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, which knows the variant.
        true
    }

    to_sql_checked!();
}

impl ToSql for Column<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self {
            Column::Ints(v) if <&[i64] as ToSql>::accepts(ty) => v.to_sql(ty, out),
            Column::OptBlobs(v) if <&[Option<&[u8]>] as ToSql>::accepts(ty) => v.to_sql(ty, out),
            Column::Texts(v) if <&[&str] as ToSql>::accepts(ty) => v.to_sql(ty, out),
            _ => Err(mismatch("a column of values", ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn decode(r: &tokio_postgres::Row) -> Result<Row> {
    let bad = |i: usize, e: tokio_postgres::Error| {
        MetaError::new(
            MetaErrorKind::Corrupt,
            format!(
                "postgres: unexpected value in column {i}: {}",
                conn::describe(&e)
            ),
        )
        .with_source(e)
    };
    let mut cells = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let cell = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            Type::BYTEA => r
                .try_get::<_, Option<Vec<u8>>>(i)
                .map(|v| v.map(|v| Cell::Blob(Bytes::from(v)))),
            Type::VOID => Ok(None),
            _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Cell::Text)),
        }
        .map_err(|e| bad(i, e))?;
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

/// Advisory-lock classes (the two-key form of `pg_advisory_xact_lock`, so
/// they cannot collide with the volume lock; the hot tier has a class of
/// its own).
const GRAPH_LOCK: i32 = 0x6673_7867; // "fsxg"
const NAMES_LOCK: i32 = 0x6673_786e; // "fsxn"
pub(super) const FILE_LOCK: i32 = 0x6673_7866; // "fsxf"
const PACK_LOCK: i32 = 0x6673_7870; // "fsxp"
const HOT_LOCK: i32 = 0x6873_7478; // "hstx"

impl PgTx<'_> {
    async fn lock_pair(&self, class: i32, a: i64, b: i64) -> Result<()> {
        self.tx
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext(concat_ws('/', current_schema(), $2::BIGINT, $3::BIGINT)))",
                &[&class, &a, &b],
            )
            .await?;
        Ok(())
    }
}

impl Tx for PgTx<'_> {
    // A statement per layer costs a round trip: one layer alone is read
    // with its bytes (two statements), more at once (three).
    const SHALLOW_WALK: usize = 1;

    async fn query(&self, stmt: Stmt, args: &[Param<'_>]) -> Result<Vec<Row>> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|p| p as _).collect();
        self.tx
            .query(sql::text(stmt), &params)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn exec(&self, stmt: Stmt, args: &[Param<'_>]) -> Result<u64> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|p| p as _).collect();
        self.tx.execute(sql::text(stmt), &params).await
    }

    async fn exec_each(
        &self,
        stmt: Stmt,
        fixed: &[Param<'_>],
        columns: &[Column<'_>],
    ) -> Result<u64> {
        if columns.first().is_none_or(|c| c.len() == 0) {
            return Ok(0);
        }
        // One round trip: the statement takes each column as an array.
        let params: Vec<&(dyn ToSql + Sync)> = fixed
            .iter()
            .map(|p| p as _)
            .chain(columns.iter().map(|c| c as _))
            .collect();
        self.tx.execute(sql::text(stmt), &params).await
    }

    async fn lock(&self, lock: Lock<'_>) -> Result<()> {
        match lock {
            Lock::Volume => {
                self.tx
                    .execute(
                        "SELECT pg_advisory_xact_lock(hashtext('fsx-volume:' || coalesce(current_schema(), '')))",
                        &[],
                    )
                    .await?;
            }
            Lock::Graph { exclusive } => {
                let sql = if exclusive {
                    "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))"
                } else {
                    "SELECT pg_advisory_xact_lock_shared($1, hashtext(coalesce(current_schema(), '')))"
                };
                self.tx.execute(sql, &[&GRAPH_LOCK]).await?;
            }
            Lock::Names(branch) => self.lock_pair(NAMES_LOCK, branch, 0).await?,
            Lock::Files(branch, ids) => {
                let mut ids = ids.to_vec();
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    self.lock_pair(FILE_LOCK, branch, id).await?;
                }
            }
            Lock::Pack(layer, file) => self.lock_pair(PACK_LOCK, layer, file).await?,
            Lock::Extents(keys) => {
                if !keys.is_empty() {
                    self.tx
                        .query(
                            "SELECT key FROM fsx_extents WHERE key = ANY($1) ORDER BY key FOR UPDATE",
                            &[&keys],
                        )
                        .await?;
                }
            }
            // Not per schema (as the hot tier always locked): two volumes'
            // puts of one key may queue behind each other, which is only a
            // wait, never a wrong answer.
            Lock::HotKey(key) => {
                self.tx
                    .execute(
                        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                        &[&HOT_LOCK, &key],
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn batch(&self, sql: &str) -> Result<()> {
        self.tx.batch(sql).await
    }

    fn migrations(&self) -> &'static [&'static str] {
        super::schema::MIGRATIONS
    }

    fn location(&self) -> String {
        self.shown.to_owned()
    }

    fn caches(&self) -> &Caches {
        self.caches
    }
}

impl PgMeta {
    /// Runs the logic function `f` in one transaction of `kind`, committing
    /// on `Ok`, rolling back on `Err`, and running it again (at most
    /// [`MAX_ATTEMPTS`] times in all) when the server aborted it with a
    /// serialization failure or a deadlock.
    pub(crate) async fn run<'a, T>(
        &'a self,
        kind: TxKind,
        f: impl for<'t> Fn(&'t PgTx<'t>, Within<'t, 'a>) -> BoxFuture<'t, Result<T>>,
    ) -> Result<T> {
        let ticket = self.durability.begin(kind);
        let begin = match ticket.kind {
            TxKind::Write | TxKind::Tree => conn::TxKind::Write,
            TxKind::Runtime => conn::TxKind::Runtime,
            TxKind::Read | TxKind::ReadOwnWrites => conn::TxKind::Read,
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = async {
                let mut c = self.pool.get().await?;
                let tx = c.begin(begin).await?;
                let value = {
                    let ptx = PgTx {
                        tx: &tx,
                        caches: &self.caches,
                        shown: &self.pool.url().shown,
                    };
                    let value = f(&ptx, Within::default()).await?;
                    if let Some(n) = ticket.barrier {
                        crate::logic::write_barrier(&ptx, n).await?;
                    }
                    value
                };
                tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "postgres transaction aborted; retrying");
                }
                Ok(v) => {
                    self.durability.committed(ticket);
                    break Ok(v);
                }
                other => break other,
            }
        }
    }

    /// What the engine knows of its deferred commits.
    pub(crate) fn durability(&self) -> &crate::logic::Durability {
        &self.durability
    }
}
