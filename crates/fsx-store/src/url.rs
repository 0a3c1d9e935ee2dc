//! [`SafeUrl`]: the one type for metadata and store URLs, and the one place
//! that decides how a URL is shown.
//!
//! A URL may carry a secret — the password of `postgres://user:PASSWORD@…`
//! or `redis://:PASSWORD@…`, or a credential in a query parameter. fsx never
//! prints one: every message, log line, JSON field and progress line that
//! names a URL formats it through [`SafeUrl`]'s `Display` (or [`redact`]),
//! which replaces the secret with `***`. Only the code that connects calls
//! [`SafeUrl::expose`].
//!
//! Parsing is `url::Url`'s, so percent-encoding is decoded one way
//! everywhere. Plain paths (`data`, `/abs/dir`) are not URLs; they hold no
//! secret and are kept and shown as written.
//!
//! # Credentials outside the URL
//!
//! A URL need not hold its secret, so that `fsx-volume.json` and the
//! metadata need not either:
//!
//! | where | how |
//! |---|---|
//! | a file | the `password_file=PATH` query parameter: the file's first line is the password (PostgreSQL, Redis) |
//! | the environment | `PGPASSWORD` (PostgreSQL), `REDIS_PASSWORD` (Redis), `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (S3) |
//!
//! A password written in the URL wins over both; a `password_file` wins over
//! the environment. [`SafeUrl::with_password_from`] applies this order.
//!
//! Invariants: `Display` and `Debug` never contain the password or the value
//! of a secret query parameter ([`SECRET_PARAMS`]); a URL that does not parse
//! is shown with everything between `://` and the last `@` hidden.

use std::fmt;

/// Query parameters whose values are secrets and are shown as `***`.
pub const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "secret",
    "secret_access_key",
    "aws_secret_access_key",
    "token",
    "session_token",
    "access_token",
    "sslpassword",
];

/// The query parameter naming a file that holds the password.
pub const PASSWORD_FILE_PARAM: &str = "password_file";

/// What the replaced secret looks like.
const MASK: &str = "***";

/// A metadata or store URL (or a plain path) whose `Display` hides secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct SafeUrl {
    /// The URL as given (or as completed with a password); the only copy
    /// that may hold a secret.
    raw: String,
    /// The parsed URL, `None` for plain paths.
    parsed: Option<url::Url>,
}

/// Why a URL could not be completed with its credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The `password_file` could not be read.
    #[error(
        "cannot read the password file {path} named by {url}: make it readable by this user (mode 0600)"
    )]
    PasswordFile {
        /// The file.
        path: String,
        /// The URL, redacted.
        url: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The URL cannot take a password (it has no host).
    #[error("{0} cannot carry a password (it names no host)")]
    CannotHavePassword(String),
}

impl SafeUrl {
    /// Wraps a URL or path. Never fails: a string that is not a URL is kept
    /// as a path (and shown redacted in case it was a malformed URL).
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let parsed = if raw.contains("://") {
            url::Url::parse(&raw).ok()
        } else {
            None
        };
        Self { raw, parsed }
    }

    /// The URL with its secret, for the code that connects. Never format
    /// this into a message.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The parsed URL, `None` for plain paths and malformed URLs.
    pub fn parsed(&self) -> Option<&url::Url> {
        self.parsed.as_ref()
    }

    /// The scheme (`postgres`, `s3`, …), `None` for plain paths.
    pub fn scheme(&self) -> Option<&str> {
        self.raw.split_once("://").map(|(s, _)| s)
    }

    /// Whether the URL itself holds a password or a secret parameter.
    pub fn has_secret(&self) -> bool {
        match &self.parsed {
            Some(u) => u.password().is_some() || u.query_pairs().any(|(k, _)| is_secret_param(&k)),
            None => self.raw.contains("://") && self.raw.contains('@'),
        }
    }

    /// Completes the URL with a password from outside it (see the module
    /// docs): a password in the URL is kept; else the first line of the
    /// `password_file` parameter's file (the parameter is removed); else the
    /// environment variable `env_var` through `getenv`. Returns the URL
    /// unchanged when none applies.
    pub fn with_password_from(
        &self,
        env_var: &str,
        getenv: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, UrlError> {
        let Some(parsed) = &self.parsed else {
            return Ok(self.clone());
        };
        let mut u = parsed.clone();
        let file = u
            .query_pairs()
            .find(|(k, _)| k == PASSWORD_FILE_PARAM)
            .map(|(_, v)| v.into_owned());
        if file.is_some() {
            let rest: Vec<(String, String)> = u
                .query_pairs()
                .filter(|(k, _)| k != PASSWORD_FILE_PARAM)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if rest.is_empty() {
                u.set_query(None);
            } else {
                u.query_pairs_mut().clear().extend_pairs(rest);
            }
        }
        if u.password().is_some() {
            return Ok(Self::from_url(u));
        }
        let password = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(&path).map_err(|source| UrlError::PasswordFile {
                        path: path.clone(),
                        url: self.to_string(),
                        source,
                    })?;
                Some(text.lines().next().unwrap_or("").to_owned())
            }
            None => getenv(env_var).filter(|p| !p.is_empty()),
        };
        if let Some(p) = password {
            u.set_password(Some(&p))
                .map_err(|()| UrlError::CannotHavePassword(self.to_string()))?;
        }
        Ok(Self::from_url(u))
    }

    fn from_url(u: url::Url) -> Self {
        Self {
            raw: u.as_str().to_owned(),
            parsed: Some(u),
        }
    }
}

fn is_secret_param(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(u) = &self.parsed else {
            return f.write_str(&redact_unparsed(&self.raw));
        };
        let mut shown = u.clone();
        if shown.password().is_some() {
            // Cannot fail: the URL already holds a password, so it has a host.
            let _ = shown.set_password(Some(MASK));
        }
        if u.query_pairs().any(|(k, _)| is_secret_param(&k)) {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if is_secret_param(&k) {
                        MASK.to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        // `Url` percent-encodes the mask; show it plainly.
        f.write_str(&shown.as_str().replace("%2A%2A%2A", MASK))
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// `url` as it may be shown: its password and secret parameters replaced by
/// `***` (see [`SafeUrl`]).
pub fn redact(url: &str) -> String {
    SafeUrl::new(url).to_string()
}

/// A string that did not parse as a URL: hide everything between `://` and
/// the last `@` (where a password would be), and any `secret=value`.
fn redact_unparsed(raw: &str) -> String {
    let mut out = match (raw.find("://"), raw.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{MASK}{}", &raw[..s + 3], &raw[at..]),
        _ => raw.to_owned(),
    };
    if let Some((head, query)) = out.clone().split_once('?') {
        let pairs: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}={MASK}"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}?{}", pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Hunter2Secret";

    #[test]
    fn display_and_debug_hide_the_password() {
        for raw in [
            "postgres://alice:Hunter2Secret@127.0.0.1:1/db",
            "postgres://alice:Hunter2Secret@127.0.0.1:1/db?schema=v",
            "redis://:Hunter2Secret@127.0.0.1:6379/0?prefix=x",
            "s3://b/p?endpoint=http://h&secret_access_key=Hunter2Secret",
            "postgres://alice:Hunter2Secret@[not a host/db",
            "postgres://alice:Hunter2%53ecret@h/db",
        ] {
            let u = SafeUrl::new(raw);
            for shown in [u.to_string(), format!("{u:?}"), redact(raw)] {
                assert!(!shown.contains(SECRET), "{raw} shown as {shown}");
                assert!(!shown.contains("Hunter2%53"), "{raw} shown as {shown}");
                assert!(shown.contains(MASK), "{raw} shown as {shown}");
            }
            assert_eq!(u.expose(), raw);
            assert!(u.has_secret());
        }
        assert_eq!(
            SafeUrl::new("postgres://alice:pw@h:5/db").to_string(),
            "postgres://alice:***@h:5/db"
        );
        assert_eq!(SafeUrl::new("data").to_string(), "data");
        assert!(!SafeUrl::new("postgres://alice@h/db").has_secret());
    }

    #[test]
    fn password_comes_from_the_url_then_the_file_then_the_environment() {
        let env = |name: &str| (name == "PGPASSWORD").then(|| "fromenv".to_owned());
        let no_env = |_: &str| None;
        let in_url = SafeUrl::new("postgres://a:inurl@h/db")
            .with_password_from("PGPASSWORD", &env)
            .unwrap();
        assert_eq!(in_url.parsed().unwrap().password(), Some("inurl"));
        let from_env = SafeUrl::new("postgres://a@h/db")
            .with_password_from("PGPASSWORD", &env)
            .unwrap();
        assert_eq!(from_env.parsed().unwrap().password(), Some("fromenv"));
        assert!(!from_env.to_string().contains("fromenv"));

        let dir = std::env::temp_dir().join(format!("fsx-url-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "p@ss word\nignored\n").unwrap();
        let raw = format!(
            "postgres://a@h/db?password_file={}&schema=s",
            file.display()
        );
        let from_file = SafeUrl::new(&raw)
            .with_password_from("PGPASSWORD", &env)
            .unwrap();
        let p = from_file.parsed().unwrap();
        assert_eq!(
            url::Url::parse(from_file.expose()).unwrap().password(),
            p.password()
        );
        assert_eq!(p.query(), Some("schema=s"));
        assert!(!from_file.to_string().contains("ss%20word"));
        let missing = SafeUrl::new("postgres://a@h/db?password_file=/nonexistent/pw")
            .with_password_from("PGPASSWORD", &no_env)
            .unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/pw"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
        let none = SafeUrl::new("postgres://a@h/db")
            .with_password_from("PGPASSWORD", &no_env)
            .unwrap();
        assert_eq!(none.parsed().unwrap().password(), None);
    }
}
