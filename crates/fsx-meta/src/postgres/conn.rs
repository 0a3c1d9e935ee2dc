//! Connections to PostgreSQL: URL parsing, a small connection pool, error
//! classification, and the transaction helper every engine call goes
//! through.
//!
//! - **Pool.** A `tokio_postgres::Client` runs one transaction at a time,
//!   so each call checks out its own connection. At most
//!   [`MAX_CONNECTIONS`] are open per engine (a semaphore bounds them, so a
//!   burst of callers queues instead of exhausting the server's
//!   `max_connections`); idle ones are kept for reuse, closed ones dropped.
//! - **Runtime.** Each connection needs a driver task. [`Pool::open`]
//!   spawns both the connect and the driver on the tokio runtime captured
//!   when the engine was created, so the engine's futures can be polled from
//!   any executor once it exists.
//! - **Statements** are prepared once per connection and cached by their SQL
//!   text (always a `&'static str`), which halves the round trips of a call.
//! - **Round trips.** Every exchange with the server the engine causes is
//!   counted in one counter per engine (shared by its connections), so tests
//!   and benchmarks can pin how many a call costs
//!   ([`super::PgMeta::round_trips`]): each `BEGIN`, each prepare (a
//!   statement-cache miss), each query, execute or batch, each `COMMIT`, and
//!   each `ROLLBACK` (sent when a transaction is dropped unfinished); opening
//!   a connection counts as one, though its handshake takes a few. Counted
//!   when sent, so an exchange that fails still counts.
//! - **Retries.** The engine's `run` (`dialect`) retries a whole transaction, on a fresh
//!   checkout, when PostgreSQL aborted it with a serialization failure or a
//!   deadlock (SQLSTATE 40001, 40P01): both mean the server rolled it back,
//!   so a retry can never apply it twice. Any other error is returned as is.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Row, Statement, Transaction};

use crate::error::{MetaError, MetaErrorKind, Result};

/// Most connections one engine opens at once.
pub(crate) const MAX_CONNECTIONS: usize = 8;
/// How often a transaction aborted by a serialization failure or deadlock
/// is tried in all.
pub(crate) const MAX_ATTEMPTS: u32 = 8;
/// Connect timeout when the URL does not set `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest schema name PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_SCHEMA_LEN: usize = 63;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data (idle clients, a statement cache) stays valid if a
    // holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A parsed `postgres://` URL: the driver's configuration, the schema to
/// use (if any), and a description without the password for messages.
#[derive(Clone)]
pub(crate) struct PgUrl {
    pub(crate) config: Config,
    pub(crate) schema: Option<String>,
    pub(crate) shown: String,
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

const URL_HELP: &str = "use postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]";

impl PgUrl {
    /// Parses `postgres://user:pass@host:port/db[?schema=NAME&...]`. The
    /// `schema` parameter is ours; every other parameter goes to the driver
    /// (`connect_timeout`, `application_name`, `options`, ...).
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let mut parsed = url::Url::parse(url).map_err(|e| {
            MetaError::invalid(format!(
                "{:?} is not a valid URL ({e}): {URL_HELP}",
                redact(url)
            ))
            .with_source(e)
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(MetaError::invalid(format!(
                "{:?} is not a PostgreSQL URL (scheme {:?}): {URL_HELP}",
                redact(url),
                parsed.scheme()
            )));
        }
        let mut schema = None;
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            if k == "schema" {
                schema = Some(v.into_owned());
            } else {
                rest.push((k.into_owned(), v.into_owned()));
            }
        }
        if let Some(s) = &schema {
            check_schema_name(s)?;
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&rest);
        }
        let mut config: Config = parsed
            .as_str()
            .parse()
            .map_err(|e: tokio_postgres::Error| {
                MetaError::invalid(format!(
                    "{:?} is not a usable PostgreSQL URL ({}): {URL_HELP}",
                    redact(url),
                    describe(&e)
                ))
                .with_source(e)
            })?;
        if config.get_hosts().is_empty() {
            return Err(MetaError::invalid(format!(
                "{:?} names no host: {URL_HELP}",
                redact(url)
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("fsx");
        }
        if let Some(s) = &schema {
            // Every connection resolves unqualified table names in the
            // volume's schema only. The name was checked to need no quoting.
            let opts = match config.get_options() {
                Some(o) if !o.is_empty() => format!("{o} -c search_path={s}"),
                _ => format!("-c search_path={s}"),
            };
            config.options(opts);
        }
        let shown = describe_target(&config, schema.as_deref());
        Ok(Self {
            config,
            schema,
            shown,
        })
    }
}

/// Schema names must need no quoting, so they can go into `search_path`
/// and DDL verbatim: lowercase ASCII letters, digits and `_`, not starting
/// with a digit, at most 63 bytes.
fn check_schema_name(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SCHEMA_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
        && !s.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(MetaError::invalid(format!(
            "schema name {s:?} is not allowed: use 1 to {MAX_SCHEMA_LEN} lowercase letters, digits and '_', \
             not starting with a digit or pg_"
        )))
    }
}

/// The URL with any password replaced, for messages: fsx's one display
/// form of a URL ([`fsx_store::SafeUrl`]).
fn redact(url: &str) -> String {
    fsx_store::redact(url)
}

fn describe_target(config: &Config, schema: Option<&str>) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut s = format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().or(config.get_user()).unwrap_or("?")
    );
    if let Some(schema) = schema {
        s.push_str("?schema=");
        s.push_str(schema);
    }
    s
}

/// A driver error in words: the server's message and SQLSTATE for database
/// errors, the cause chain for the others.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Classifies an error from a query: connection trouble and server
/// overload are `Unavailable` (retry later), serialization failures and
/// deadlocks left after [`MAX_ATTEMPTS`] too; bad input the server refused
/// is `InvalidInput`; the rest is `Other`. The driver error is kept as the
/// source.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> MetaError {
    let kind = match e.code() {
        None => MetaErrorKind::Unavailable, // I/O, closed connection, timeout
        Some(c) if is_retryable_code(c) => MetaErrorKind::Unavailable,
        Some(c) => match &c.code()[..2] {
            // connection exception, insufficient resources, operator
            // intervention (shutdown, cancel, statement timeout), system error
            "08" | "53" | "57" | "58" => MetaErrorKind::Unavailable,
            // data exception (e.g. a NUL byte in a name)
            "22" => MetaErrorKind::InvalidInput,
            "XX" => MetaErrorKind::Corrupt,
            _ => MetaErrorKind::Other,
        },
    };
    MetaError::new(kind, format!("postgres: {}", describe(&e))).with_source(e)
}

fn is_retryable_code(c: &SqlState) -> bool {
    *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
}

/// Whether PostgreSQL rolled the transaction back for a reason a retry can
/// fix (serialization failure, deadlock).
pub(crate) fn is_retryable(e: &MetaError) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
        .and_then(tokio_postgres::Error::code)
        .is_some_and(is_retryable_code)
}

/// Classifies a failure to connect, saying what to fix.
fn connect_err(url: &PgUrl, e: tokio_postgres::Error) -> MetaError {
    let target = &url.shown;
    let (kind, msg) = match e.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            (
                MetaErrorKind::InvalidInput,
                format!(
                    "PostgreSQL at {target} refused the login ({}): check the user and password in the URL",
                    describe(&e)
                ),
            )
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => (
            MetaErrorKind::InvalidInput,
            format!(
                "{} : create the database (createdb) or fix the URL's database name ({target})",
                describe(&e)
            ),
        ),
        Some(c)
            if c.code().starts_with("08")
                || c.code().starts_with("53")
                || c.code().starts_with("57") =>
        {
            (
                MetaErrorKind::Unavailable,
                format!(
                    "PostgreSQL at {target} cannot take a connection now ({}): retry later",
                    describe(&e)
                ),
            )
        }
        Some(_) => (
            MetaErrorKind::Other,
            format!("connecting to PostgreSQL at {target}: {}", describe(&e)),
        ),
        None => (
            MetaErrorKind::Unavailable,
            format!(
                "cannot reach PostgreSQL at {target} ({}): is the server running, and are the URL's host and port right?",
                describe(&e)
            ),
        ),
    };
    MetaError::new(kind, msg).with_source(e)
}

/// Exchanges with the server, shared by an engine's pool and connections
/// (see "Round trips" in the module docs).
#[derive(Debug, Default)]
pub(crate) struct RoundTrips(AtomicU64);

impl RoundTrips {
    /// Notes one exchange, about to be sent.
    fn add(&self) {
        // Relaxed: a statistic, ordering nothing else.
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One open connection and its prepared statements.
pub(crate) struct Conn {
    client: Client,
    statements: Mutex<HashMap<&'static str, Statement>>,
    round_trips: Arc<RoundTrips>,
}

impl Conn {
    /// Creates `schema` if it is missing. `target` names the server in
    /// messages.
    pub(crate) async fn ensure_schema(&self, schema: &str, target: &str) -> Result<()> {
        // The name was checked by `check_schema_name`: it needs no quoting.
        self.round_trips.add();
        match self
            .client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
        {
            Ok(()) => Ok(()),
            // Another process created it between our check and our insert:
            // IF NOT EXISTS does not cover that race, but the outcome is ours.
            Err(e)
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::DUPLICATE_SCHEMA) =>
            {
                Ok(())
            }
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                Err(MetaError::invalid(format!(
                    "the user of {target} may not create schema {schema} ({}): create it \
                 (CREATE SCHEMA {schema} AUTHORIZATION <user>) or grant CREATE on the database",
                    describe(&e)
                ))
                .with_source(e))
            }
            Err(e) => Err(pg_err(e)),
        }
    }
}

/// Open connections of one engine (see the module docs).
pub(crate) struct Pool {
    url: PgUrl,
    runtime: Handle,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    round_trips: Arc<RoundTrips>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url.shown)
    }
}

impl Pool {
    pub(crate) fn new(url: PgUrl, runtime: Handle) -> Self {
        Self {
            url,
            runtime,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_CONNECTIONS),
            round_trips: Arc::default(),
        }
    }

    /// Exchanges with the server since the pool was created (see "Round
    /// trips" in the module docs).
    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    pub(crate) fn url(&self) -> &PgUrl {
        &self.url
    }

    /// Opens a new connection, spawning the connect and its driver task on
    /// the engine's runtime.
    pub(crate) async fn open(&self) -> Result<Conn> {
        let config = self.url.config.clone();
        let runtime = self.runtime.clone();
        self.round_trips.add();
        let joined = self
            .runtime
            .spawn(async move {
                let (client, connection) = config.connect(NoTls).await?;
                runtime.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %describe(&e), "postgres connection ended");
                    }
                });
                Ok::<_, tokio_postgres::Error>(client)
            })
            .await;
        let client = match joined {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(connect_err(&self.url, e)),
            Err(e) => {
                return Err(MetaError::new(
                    MetaErrorKind::Unavailable,
                    format!("connecting to PostgreSQL at {}: the runtime dropped the task (is it shutting down?)", self.url.shown),
                )
                .with_source(e));
            }
        };
        Ok(Conn {
            client,
            statements: Mutex::new(HashMap::new()),
            round_trips: self.round_trips.clone(),
        })
    }

    /// Checks out a connection: an idle open one, or a new one.
    pub(crate) async fn get(&self) -> Result<Pooled<'_>> {
        let permit = self.permits.acquire().await.map_err(|e| {
            MetaError::new(MetaErrorKind::Unavailable, "the connection pool is closed")
                .with_source(e)
        })?;
        let reused = {
            let mut idle = lock(&self.idle);
            idle.retain(|c| !c.client.is_closed());
            idle.pop()
        };
        let conn = match reused {
            Some(c) => c,
            None => self.open().await?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self,
            _permit: permit,
        })
    }

    /// Adds a connection opened by [`Pool::open`] to the idle set.
    pub(crate) fn put_idle(&self, conn: Conn) {
        lock(&self.idle).push(conn);
    }
}

/// A checked-out connection; returns to the pool when dropped (unless it
/// closed). A transaction dropped unfinished has already queued its
/// `ROLLBACK` on the connection, ahead of anything the next user sends.
pub(crate) struct Pooled<'p> {
    conn: Option<Conn>,
    pool: &'p Pool,
    _permit: SemaphorePermit<'p>,
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && !c.client.is_closed()
        {
            self.pool.put_idle(c);
        }
    }
}

/// Isolation of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxKind {
    /// READ COMMITTED, read-write: checks take row locks (see the engine's
    /// module docs).
    Write,
    /// REPEATABLE READ, read-only: one snapshot for the whole call, never a
    /// serialization failure.
    Read,
    /// As `Write`, committed without waiting for the WAL flush
    /// (`synchronous_commit = off`): rows that die with their holder.
    Runtime,
}

impl Pooled<'_> {
    /// Starts a transaction of `kind`.
    pub(crate) async fn begin(&mut self, kind: TxKind) -> Result<Tx<'_>> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(MetaError::new(
                MetaErrorKind::Other,
                "connection already returned to the pool",
            ));
        };
        let builder = conn.client.build_transaction();
        let builder = match kind {
            TxKind::Write | TxKind::Runtime => {
                builder.isolation_level(IsolationLevel::ReadCommitted)
            }
            TxKind::Read => builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true),
        };
        conn.round_trips.add();
        let tx = builder.start().await.map_err(pg_err)?;
        if kind == TxKind::Runtime {
            conn.round_trips.add();
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .map_err(pg_err)?;
        }
        Ok(Tx {
            tx,
            statements: &conn.statements,
            rollback: Rollback {
                round_trips: &conn.round_trips,
                armed: true,
            },
        })
    }
}

/// An open transaction with the connection's statement cache.
pub(crate) struct Tx<'c> {
    tx: Transaction<'c>,
    statements: &'c Mutex<HashMap<&'static str, Statement>>,
    rollback: Rollback<'c>,
}

/// Counts the `ROLLBACK` the driver sends when a transaction is dropped
/// without a commit (the driver queues it from its own `Drop`).
struct Rollback<'c> {
    round_trips: &'c RoundTrips,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.round_trips.add();
        }
    }
}

/// Query parameters.
pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Tx<'_> {
    /// Notes one exchange on this transaction's connection.
    fn sent(&self) {
        self.rollback.round_trips.add();
    }

    async fn statement(&self, sql: &'static str) -> Result<Statement> {
        if let Some(st) = lock(self.statements).get(sql) {
            return Ok(st.clone());
        }
        self.sent();
        let st = self.tx.prepare(sql).await.map_err(pg_err)?;
        lock(self.statements).insert(sql, st.clone());
        Ok(st)
    }

    /// Every row of `sql`.
    pub(crate) async fn query(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        let st = self.statement(sql).await?;
        self.sent();
        self.tx.query(&st, params).await.map_err(pg_err)
    }

    /// The one row of `sql` (tests; the engine reads through `dialect`).
    #[cfg(test)]
    pub(crate) async fn query_one(&self, sql: &'static str, params: Params<'_>) -> Result<Row> {
        let st = self.statement(sql).await?;
        self.sent();
        self.tx.query_one(&st, params).await.map_err(pg_err)
    }

    /// Rows changed by `sql`.
    pub(crate) async fn execute(&self, sql: &'static str, params: Params<'_>) -> Result<u64> {
        let st = self.statement(sql).await?;
        self.sent();
        self.tx.execute(&st, params).await.map_err(pg_err)
    }

    /// Runs several statements without parameters (DDL), uncached.
    pub(crate) async fn batch(&self, sql: &str) -> Result<()> {
        self.sent();
        self.tx.batch_execute(sql).await.map_err(pg_err)
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<()> {
        let Self {
            tx, mut rollback, ..
        } = self;
        // COMMIT replaces the ROLLBACK: the driver sends no ROLLBACK after a
        // commit, even a failed one.
        rollback.armed = false;
        rollback.round_trips.add();
        tx.commit().await.map_err(pg_err)
    }
}

#[cfg(test)]
/// Column `idx` of `row` as `T`; a type mismatch is a schema problem,
/// reported rather than panicking.
pub(crate) fn col<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r Row,
    idx: usize,
) -> Result<T> {
    row.try_get(idx).map_err(|e| {
        MetaError::new(
            MetaErrorKind::Corrupt,
            format!(
                "postgres: unexpected value in column {idx}: {}",
                describe(&e)
            ),
        )
        .with_source(e)
    })
}

#[cfg(test)]
/// Tests only: runs `$body` (an expression of type `impl Future<Output =
/// Result<T>>` using `$tx: &Tx`) in one transaction of `$kind` on a
/// connection from `$pool`, committing on `Ok`, with the retries of the
/// engine's `run` (`dialect`), for tests that need raw SQL.
macro_rules! transact {
    ($pool:expr, $kind:expr, |$tx:ident| $body:expr) => {{
        let pool: &$crate::postgres::conn::Pool = $pool;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = async {
                let mut conn = pool.get().await?;
                let tx = conn.begin($kind).await?;
                let value = {
                    let $tx = &tx;
                    $body.await?
                };
                tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Err(e) if attempt < $crate::postgres::conn::MAX_ATTEMPTS && $crate::postgres::conn::is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "postgres transaction aborted; retrying");
                }
                other => break other,
            }
        }
    }};
}
#[cfg(test)]
pub(crate) use transact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_keep_the_password_out_of_messages() {
        let u =
            PgUrl::parse("postgres://fsx:s3cret@127.0.0.1:6543/db?schema=vol_1&connect_timeout=3")
                .unwrap();
        assert_eq!(u.schema.as_deref(), Some("vol_1"));
        assert_eq!(u.config.get_ports(), &[6543]);
        assert_eq!(u.config.get_dbname(), Some("db"));
        assert_eq!(
            u.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(u.config.get_options(), Some("-c search_path=vol_1"));
        assert!(!u.shown.contains("s3cret"), "{}", u.shown);
        let u = PgUrl::parse("postgresql://fsx@localhost/fsx").unwrap();
        assert_eq!(u.schema, None);
        assert_eq!(
            u.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
    }

    #[test]
    fn bad_urls_are_invalid_input_without_the_password() {
        for bad in [
            "mysql://u:pw@h/db",
            "postgres://u:pw@h/db?schema=Bad-Name",
            "postgres://u:pw@h/db?schema=1abc",
            "postgres://u:pw@h/db?schema=",
            "postgres://u:pw@h/db?bogus_option=1",
            "not a url at all",
        ] {
            let e = PgUrl::parse(bad).unwrap_err();
            assert_eq!(e.kind(), MetaErrorKind::InvalidInput, "{bad}: {e}");
            assert!(
                !e.to_string().contains(":pw@"),
                "{bad}: password leaked: {e}"
            );
        }
    }
}
