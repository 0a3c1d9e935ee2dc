//! [`open_meta`]: the one place that maps a URL to a metadata engine, as
//! `fsx_store::open_backend` is for data stores.
//!
//! Composition roots (the volume directory, the CLI, the SQLite VFS) call
//! this; library code takes an `Arc<dyn MetaEngine>` and never names an
//! engine.
//!
//! | URL | engine | feature |
//! |---|---|---|
//! | `sqlite:///abs/dir/meta.db` | `SqliteMeta` on that file | `sqlite` |
//! | `sqlite://meta.db`, `sqlite://rel/dir/meta.db` | the same, the path relative to [`OpenOptions::base_dir`] (else the working directory) | `sqlite` |
//! | `postgres://USER@HOST[:PORT]/DB[?schema=NAME&…]`, `postgresql://…` | `PgMeta` (needs a tokio runtime) | `postgres` |
//!
//! **SQLite.** Everything after `sqlite://` is a path, percent-decoded
//! (`%20` is a space); a leading `/` makes it absolute. It takes no
//! parameters, so a `?` or `#` in a file name is written `%3F` or `%23`.
//! The path is decoded as written rather than normalised by `url::Url`,
//! which would drop a leading `..` and refuse a space in `sqlite://rel`
//! (there `rel` would be a URL host).
//!
//! **PostgreSQL.** Parsed with `url::Url` through [`SafeUrl`], so the user
//! and password are percent-decoded (write `@` in a password as `%40`).
//! Parameters ([`POSTGRES_PARAMS`]): `schema=NAME` puts the volume's tables
//! in that schema (created if missing), `password_file=PATH` names a file
//! whose first line is the password, and the rest are the driver's
//! connection parameters (`connect_timeout=SECONDS`, default 10;
//! `application_name`, `options`, …). The password is the one in the URL,
//! else the `password_file`'s, else [`PG_PASSWORD_ENV`] (`PGPASSWORD`).
//!
//! Errors: an empty or malformed URL, an unknown scheme, an unknown
//! parameter, a PostgreSQL URL naming no host and an unreadable password
//! file are [`MetaErrorKind::InvalidInput`] with a message naming the
//! problem and what is accepted; an engine not built in is
//! [`MetaErrorKind::Unsupported`]. Invariant: no message shows a password
//! (URLs are shown through [`SafeUrl`]'s `Display`).
//!
//! Compatibility: every URL an older `fsx-volume.json` holds opens the same
//! database as before: the default `sqlite://meta.db` (relative to the
//! volume directory, given as `base_dir`), absolute `sqlite:///` paths, and
//! PostgreSQL URLs, whose parameters the driver already checked against the
//! same list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fsx_store::SafeUrl;
use fsx_store::url::PASSWORD_FILE_PARAM;

use crate::contract::MetaEngine;
use crate::error::{MetaError, MetaErrorKind, Result};

/// Environment variable holding the PostgreSQL password when the URL has
/// none (libpq's name).
pub const PG_PASSWORD_ENV: &str = "PGPASSWORD";

/// The URL schemes [`open_meta`] accepts.
pub const SCHEMES: &[&str] = &["sqlite://", "postgres://", "postgresql://"];

/// Query parameters a PostgreSQL URL may carry: ours (`schema`,
/// `password_file`), then tokio-postgres's connection parameters, which it
/// checks itself.
pub const POSTGRES_PARAMS: &[&str] = &[
    "schema",
    PASSWORD_FILE_PARAM,
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

const SQLITE_HELP: &str =
    "use sqlite:///abs/path/meta.db, or sqlite://meta.db for a path relative to the volume";
const POSTGRES_HELP: &str = "use postgres://USER@HOST[:PORT]/DATABASE[?schema=NAME], the password \
     in PGPASSWORD or in a file named by ?password_file=PATH";

/// How [`open_meta`] opens an engine.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Create the SQLite database file if it is missing (a PostgreSQL
    /// schema is always created if missing). Default `false`: a missing
    /// file is `NotFound`.
    pub create: bool,
    /// The directory a relative `sqlite://` path is relative to (a volume's
    /// directory); `None` for the working directory.
    pub base_dir: Option<PathBuf>,
}

impl OpenOptions {
    /// Open an existing database, relative paths from the working directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`OpenOptions::create`].
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Sets [`OpenOptions::base_dir`].
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }
}

/// Opens the metadata engine `url` names (see the module docs). PostgreSQL
/// must be opened inside a tokio runtime, which then drives its
/// connections; SQLite opens without one (the future is ready at once).
pub async fn open_meta(url: &str, options: &OpenOptions) -> Result<Arc<dyn MetaEngine>> {
    match parse(url, options, &|name| std::env::var(name).ok())? {
        Target::Sqlite(path) => open_sqlite(&path, options.create),
        Target::Postgres(url) => open_postgres(&url).await,
    }
}

/// The database file a `sqlite://` URL names, resolved as [`open_meta`]
/// resolves it (relative to `base_dir`); `Ok(None)` for other schemes. For
/// callers that look at the file itself (permissions, backups).
pub fn sqlite_path(url: &str, base_dir: Option<&Path>) -> Result<Option<PathBuf>> {
    match url.strip_prefix("sqlite://") {
        Some(rest) => parse_sqlite(rest, &SafeUrl::new(url), base_dir).map(Some),
        None => Ok(None),
    }
}

/// What a URL names, checked and completed, before anything is opened.
#[derive(Debug)]
enum Target {
    /// The database file, resolved against the base directory.
    Sqlite(PathBuf),
    /// The URL completed with its password (never shown).
    Postgres(SafeUrl),
}

fn parse(
    url: &str,
    options: &OpenOptions,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Target> {
    let shown = SafeUrl::new(url);
    match url.split_once("://") {
        Some(("sqlite", rest)) => Ok(Target::Sqlite(parse_sqlite(
            rest,
            &shown,
            options.base_dir.as_deref(),
        )?)),
        Some(("postgres" | "postgresql", _)) => {
            Ok(Target::Postgres(parse_postgres(&shown, getenv)?))
        }
        _ => Err(MetaError::invalid(format!(
            "unsupported metadata URL {:?}: the schemes are {}; {SQLITE_HELP}; or {POSTGRES_HELP}",
            shown.to_string(),
            SCHEMES.join(", ")
        ))),
    }
}

/// `rest` is what follows `sqlite://` (see the module docs).
fn parse_sqlite(rest: &str, shown: &SafeUrl, base_dir: Option<&Path>) -> Result<PathBuf> {
    if rest.is_empty() {
        return Err(MetaError::invalid(format!(
            "{:?} names no database file: {SQLITE_HELP}",
            shown.to_string()
        )));
    }
    if let Some(at) = rest.find(['?', '#']) {
        return Err(MetaError::invalid(format!(
            "{:?}: SQLite metadata URLs take no parameters (found {:?}); {SQLITE_HELP}, \
             writing a '?' in a file name as %3F and a '#' as %23",
            shown.to_string(),
            &rest[at..]
        )));
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(rest).collect();
    if bytes.contains(&0) {
        return Err(MetaError::invalid(format!(
            "{:?}: a file name cannot hold a NUL byte (%00)",
            shown.to_string()
        )));
    }
    let path = path_from_bytes(bytes).map_err(|e| {
        MetaError::invalid(format!(
            "{:?}: the decoded path is not UTF-8",
            shown.to_string()
        ))
        .with_source(e)
    })?;
    Ok(match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    })
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> std::result::Result<PathBuf, std::string::FromUtf8Error> {
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> std::result::Result<PathBuf, std::string::FromUtf8Error> {
    String::from_utf8(bytes).map(PathBuf::from)
}

/// Checks a PostgreSQL URL and completes it with its password.
fn parse_postgres(shown: &SafeUrl, getenv: &dyn Fn(&str) -> Option<String>) -> Result<SafeUrl> {
    // `url::ParseError` names the kind of fault only, never the text.
    let parsed = url::Url::parse(shown.expose()).map_err(|e| {
        MetaError::invalid(format!(
            "{:?} is not a valid URL ({e}): {POSTGRES_HELP}",
            shown.to_string()
        ))
        .with_source(e)
    })?;
    for (name, _) in parsed.query_pairs() {
        if !POSTGRES_PARAMS.contains(&name.as_ref()) {
            return Err(MetaError::invalid(format!(
                "unknown parameter {name:?} in the PostgreSQL URL {:?}; accepted: {}",
                shown.to_string(),
                POSTGRES_PARAMS.join(", ")
            )));
        }
    }
    // The driver also takes the host as a parameter (a Unix socket
    // directory, say); without either it would guess one.
    let names_host = parsed.host_str().is_some_and(|h| !h.is_empty())
        || parsed
            .query_pairs()
            .any(|(k, v)| matches!(k.as_ref(), "host" | "hostaddr") && !v.is_empty());
    if !names_host {
        return Err(MetaError::invalid(format!(
            "{:?} names no host: {POSTGRES_HELP}",
            shown.to_string()
        )));
    }
    shown
        .with_password_from(PG_PASSWORD_ENV, getenv)
        .map_err(|e| {
            MetaError::invalid(format!(
                "the password for {:?} is not available",
                shown.to_string()
            ))
            .with_source(e)
        })
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &Path, create: bool) -> Result<Arc<dyn MetaEngine>> {
    Ok(Arc::new(crate::sqlite::SqliteMeta::open(path, create)?))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(path: &Path, _create: bool) -> Result<Arc<dyn MetaEngine>> {
    Err(disabled("sqlite", &path.display().to_string()))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &SafeUrl) -> Result<Arc<dyn MetaEngine>> {
    Ok(Arc::new(
        crate::postgres::PgMeta::connect(url.expose()).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &SafeUrl) -> Result<Arc<dyn MetaEngine>> {
    Err(disabled("postgres", &url.to_string()))
}

#[allow(dead_code)] // unused when both engines are built in
fn disabled(feature: &str, what: &str) -> MetaError {
    MetaError::new(
        MetaErrorKind::Unsupported,
        format!("{what:?} needs fsx-meta's `{feature}` feature, which this build leaves out"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const SECRET: &str = "Hunter2Secret";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn target(url: &str, base: Option<&str>) -> Result<Target> {
        let mut options = OpenOptions::new();
        if let Some(b) = base {
            options = options.base_dir(b);
        }
        parse(url, &options, &no_env)
    }

    fn sqlite(url: &str, base: Option<&str>) -> PathBuf {
        match target(url, base).unwrap() {
            Target::Sqlite(p) => p,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn postgres(url: &str, env: &dyn Fn(&str) -> Option<String>) -> SafeUrl {
        match parse(url, &OpenOptions::new(), env).unwrap() {
            Target::Postgres(u) => u,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn invalid(url: &str) -> String {
        let err = target(url, Some("/v")).unwrap_err();
        assert_eq!(err.kind(), MetaErrorKind::InvalidInput, "{url}: {err}");
        err.to_string()
    }

    #[test]
    fn sqlite_paths_resolve_like_the_volume_directory_did() {
        // The default of every volume file, relative to the volume.
        assert_eq!(
            sqlite("sqlite://meta.db", Some("/v")),
            Path::new("/v/meta.db")
        );
        assert_eq!(
            sqlite("sqlite://sub/meta.db", Some("/v")),
            Path::new("/v/sub/meta.db")
        );
        // `..` is kept, not normalised away as a URL path would be.
        assert_eq!(
            sqlite("sqlite://../shared/meta.db", Some("/v")),
            Path::new("/v/../shared/meta.db")
        );
        // Without a base: relative to the working directory, as written.
        assert_eq!(sqlite("sqlite://meta.db", None), Path::new("meta.db"));
        assert_eq!(
            sqlite("sqlite:///abs/m.db", Some("/v")),
            Path::new("/abs/m.db")
        );
        // Percent-decoded; a raw space (as an old file may hold) is kept.
        assert_eq!(
            sqlite("sqlite:///a%20b/m%3F.db", None),
            Path::new("/a b/m?.db")
        );
        assert_eq!(
            sqlite("sqlite://my dir/meta.db", Some("/v")),
            Path::new("/v/my dir/meta.db")
        );
        assert_eq!(
            sqlite_path("sqlite://meta.db", Some(Path::new("/v"))).unwrap(),
            Some(PathBuf::from("/v/meta.db"))
        );
        assert_eq!(sqlite_path("postgres://h/db", None).unwrap(), None);
    }

    #[test]
    fn bad_sqlite_urls_say_what_to_write() {
        assert!(invalid("sqlite://").contains("names no database file"));
        let text = invalid("sqlite:///v/meta.db?mode=ro");
        assert!(
            text.contains("take no parameters") && text.contains("%3F"),
            "{text}"
        );
        assert!(invalid("sqlite:///v/a#b").contains("%23"));
        assert!(invalid("sqlite:///v/a%00b").contains("NUL"));
    }

    #[test]
    fn postgres_urls_keep_schema_and_driver_parameters() {
        let u = postgres(
            "postgres://alice@db.example:5433/fsx?schema=vol_1&connect_timeout=3",
            &no_env,
        );
        assert_eq!(
            u.expose(),
            "postgres://alice@db.example:5433/fsx?schema=vol_1&connect_timeout=3"
        );
        let u = postgres("postgresql://alice@h/db", &no_env);
        assert_eq!(u.parsed().unwrap().password(), None);
        // A Unix socket directory as the host parameter names a host too.
        postgres("postgres:///db?host=/run/postgresql&user=alice", &no_env);
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_urls_reach_the_driver_decoded() {
        use crate::postgres::conn::PgUrl;
        // Percent-encoded password, the schema parameter taken out as ours.
        let u = postgres("postgres://alice:p%40ss%2Fw@h:5/db?schema=vol_1", &no_env);
        let pg = PgUrl::parse(u.expose()).unwrap();
        assert_eq!(pg.config.get_password(), Some(&b"p@ss/w"[..]));
        assert_eq!(pg.config.get_user(), Some("alice"));
        assert_eq!(pg.config.get_dbname(), Some("db"));
        assert_eq!(pg.schema.as_deref(), Some("vol_1"));
        assert!(!format!("{:?}", pg).contains("p@ss"));
    }

    #[test]
    fn postgres_password_from_the_url_then_the_file_then_the_environment() {
        let env = |name: &str| (name == PG_PASSWORD_ENV).then(|| "fromenv".to_owned());
        let from_env = postgres("postgres://a@h/db", &env);
        assert_eq!(from_env.parsed().unwrap().password(), Some("fromenv"));
        let in_url = postgres("postgres://a:inurl@h/db", &env);
        assert_eq!(in_url.parsed().unwrap().password(), Some("inurl"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, format!("{SECRET}@x\nignored\n")).unwrap();
        let from_file = postgres(
            &format!(
                "postgres://a@h/db?{PASSWORD_FILE_PARAM}={}&schema=s",
                file.display()
            ),
            &env,
        );
        let p = from_file.parsed().unwrap();
        assert_eq!(p.password(), Some(&*format!("{SECRET}%40x")));
        // The parameter is consumed; the driver never sees it.
        assert_eq!(p.query(), Some("schema=s"));
        assert!(!from_file.to_string().contains(SECRET));

        let missing = format!("postgres://a@h/db?{PASSWORD_FILE_PARAM}=/nonexistent/pw");
        let err = parse(&missing, &OpenOptions::new(), &env).unwrap_err();
        assert_eq!(err.kind(), MetaErrorKind::InvalidInput);
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("/nonexistent/pw"), "{chain}");
    }

    #[test]
    fn bad_postgres_urls_are_refused_without_showing_the_password() {
        let text = invalid("postgres://a:Hunter2Secret@h/db?sslcert=x");
        assert!(
            text.contains("unknown parameter \"sslcert\"")
                && text.contains("schema, password_file"),
            "{text}"
        );
        assert!(!text.contains(SECRET), "{text}");
        assert!(invalid("postgres:///db").contains("names no host"));
        assert!(invalid("postgres:///db?host=").contains("names no host"));
        for url in [
            "postgres://a:Hunter2Secret@/db",
            "postgres://a:Hunter2Secret@:5/db",
        ] {
            let text = invalid(url);
            assert!(text.contains("empty host"), "{text}");
            assert!(!text.contains(SECRET), "{text}");
        }
        let text = invalid("postgres://a:Hunter2Secret@h:notaport/db");
        assert!(text.contains("not a valid URL"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }

    #[test]
    fn unknown_schemes_list_the_accepted_ones() {
        for url in [
            "",
            "meta.db",
            "/abs/meta.db",
            "mysql://a:Hunter2Secret@h/db",
            "SQLITE://m",
        ] {
            let text = invalid(url);
            assert!(
                text.contains("sqlite://, postgres://, postgresql://"),
                "{url}: {text}"
            );
            assert!(!text.contains(SECRET), "{text}");
        }
    }

    #[test]
    fn open_creates_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions::new().base_dir(dir.path());
        let run = |o: &OpenOptions| futures_executor::block_on(open_meta("sqlite://m.db", o));
        #[cfg(feature = "sqlite")]
        {
            let err = run(&options).map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), MetaErrorKind::NotFound, "{err}");
            run(&options.clone().create(true)).unwrap();
            assert!(dir.path().join("m.db").exists());
            run(&options).unwrap();
        }
        #[cfg(not(feature = "sqlite"))]
        {
            let err = run(&options).map(|_| ()).unwrap_err();
            assert_eq!(err.kind(), MetaErrorKind::Unsupported, "{err}");
        }
    }
}
