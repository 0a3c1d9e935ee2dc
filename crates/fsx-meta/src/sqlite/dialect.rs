//! SQLite as a dialect of the shared logic ([`crate::logic::Tx`]): binding
//! [`Param`]s, decoding rows into [`Row`]s, and running a logic function
//! as one synchronous transaction.
//!
//! Every call is answered before it returns, so a logic function's future
//! completes in its first poll ([`crate::logic::complete`]); the engine
//! needs no async runtime. Locks are no-ops: `BEGIN IMMEDIATE` already
//! makes the writer the only one, and readers see one snapshot.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{ToSql, Transaction};

use super::{SqliteMeta, sql, sql_err};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::logic::{Caches, Cell, Column, Lock, Param, Row, Stmt, Tx, TxKind};

/// One SQLite transaction seen by the shared logic.
pub(crate) struct SqliteTx<'a> {
    tx: &'a Transaction<'a>,
    caches: &'a Caches,
    path: &'a std::path::Path,
    statements: &'a AtomicU64,
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::{Borrowed, Owned};
        Ok(match *self {
            Param::OptInt(None) | Param::OptText(None) | Param::OptBlob(None) => Owned(Value::Null),
            Param::Int(v) | Param::OptInt(Some(v)) => Owned(Value::Integer(v)),
            Param::Text(s) | Param::OptText(Some(s)) => Borrowed(ValueRef::Text(s.as_bytes())),
            Param::OptBlob(Some(b)) => Borrowed(ValueRef::Blob(b)),
            // `rarray(?n)`: the carray-like table of rusqlite's `array`
            // module, loaded on every connection.
            Param::Ints(v) => array(v.iter().copied().map(Value::Integer).collect()),
            Param::Texts(v) => array(v.iter().map(|s| Value::Text((*s).to_owned())).collect()),
        })
    }
}

/// A list bound for `rarray(?n)` (the pointer type name the module
/// checks).
fn array(values: Vec<Value>) -> rusqlite::types::ToSqlOutput<'static> {
    rusqlite::types::ToSqlOutput::from_rc(Rc::new(values), c"rarray")
}

fn cell(v: ValueRef<'_>) -> Result<Cell> {
    Ok(match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Text(t) => Cell::Text(
            std::str::from_utf8(t)
                .map_err(|e| {
                    MetaError::new(
                        MetaErrorKind::Corrupt,
                        "sqlite: a text column is not UTF-8; run `fsx fsck`",
                    )
                    .with_source(e)
                })?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Cell::Blob(Bytes::copy_from_slice(b)),
        ValueRef::Real(_) => {
            return Err(MetaError::new(
                MetaErrorKind::Corrupt,
                "sqlite: a column holds a floating-point value where fsx stores none; run `fsx fsck`",
            ));
        }
    })
}

impl SqliteTx<'_> {
    fn prepare(&self, stmt: Stmt) -> Result<rusqlite::CachedStatement<'_>> {
        self.tx.prepare_cached(sql::text(stmt)).map_err(sql_err)
    }

    fn counted(&self, n: usize) {
        self.statements
            .fetch_add(crate::num::count(n), Ordering::Relaxed);
    }

    fn query_now(&self, stmt: Stmt, args: &[Param<'_>]) -> Result<Vec<Row>> {
        let mut st = self.prepare(stmt)?;
        self.counted(1);
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sql_err)? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(cell(r.get_ref(i).map_err(sql_err)?)?);
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn exec_now(&self, stmt: Stmt, args: &[Param<'_>]) -> Result<u64> {
        let mut st = self.prepare(stmt)?;
        self.counted(1);
        let n = st
            .execute(rusqlite::params_from_iter(args.iter()))
            .map_err(sql_err)?;
        Ok(crate::num::count(n))
    }
}

impl Tx for SqliteTx<'_> {
    const SHALLOW_WALK: usize = 3;

    async fn query(&self, stmt: Stmt, args: &[Param<'_>]) -> Result<Vec<Row>> {
        self.query_now(stmt, args)
    }

    async fn exec(&self, stmt: Stmt, args: &[Param<'_>]) -> Result<u64> {
        self.exec_now(stmt, args)
    }

    async fn exec_each(
        &self,
        stmt: Stmt,
        fixed: &[Param<'_>],
        columns: &[Column<'_>],
    ) -> Result<u64> {
        let rows = columns.first().map_or(0, Column::len);
        let mut st = self.prepare(stmt)?;
        self.counted(rows);
        let mut changed = 0;
        let mut args: Vec<Param<'_>> = Vec::with_capacity(fixed.len() + columns.len());
        for i in 0..rows {
            args.clear();
            args.extend_from_slice(fixed);
            args.extend(columns.iter().map(|c| c.get(i)));
            changed += st
                .execute(rusqlite::params_from_iter(args.iter()))
                .map_err(sql_err)?;
        }
        Ok(crate::num::count(changed))
    }

    async fn lock(&self, _lock: Lock<'_>) -> Result<()> {
        Ok(())
    }

    async fn batch(&self, sql: &str) -> Result<()> {
        self.tx.execute_batch(sql).map_err(sql_err)
    }

    fn migrations(&self) -> &'static [&'static str] {
        super::schema::MIGRATIONS
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn caches(&self) -> &Caches {
        self.caches
    }
}

impl SqliteMeta {
    /// Runs the logic function `f` in one transaction of `kind` (see
    /// [`TxKind`]), committing when it returns `Ok`. Runs when polled, to
    /// the end, in that one poll.
    pub(crate) async fn run<T>(
        &self,
        kind: TxKind,
        f: impl AsyncFnOnce(&SqliteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let inner = &self.inner;
        let ticket = inner.durability.begin(kind);
        let body = |tx: &Transaction<'_>| {
            let tx = SqliteTx {
                tx,
                caches: &inner.caches,
                path: &inner.path,
                statements: &inner.statements,
            };
            crate::logic::complete(async {
                let value = f(&tx).await?;
                if let Some(n) = ticket.barrier {
                    crate::logic::write_barrier(&tx, n).await?;
                }
                Ok(value)
            })
        };
        let out = match ticket.kind {
            TxKind::Write | TxKind::Tree => self.write(body),
            TxKind::Runtime => self.write_runtime(body),
            TxKind::Read => self.read(body),
            TxKind::ReadOwnWrites => self.read_on_writer(body),
        }?;
        inner.durability.committed(ticket);
        Ok(out)
    }

    /// What the engine knows of its deferred commits.
    pub(crate) fn durability(&self) -> &crate::logic::Durability {
        &self.inner.durability
    }
}
