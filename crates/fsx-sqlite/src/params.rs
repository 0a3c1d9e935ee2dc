//! The URI parameters of a main database, read strictly.
//!
//! `file:app.db?vfs=fsx&volume=PATH&branch=dev` names the volume, and the
//! branch or commit, in its query. A misspelt parameter must not be
//! ignored: `brnach=dev` would otherwise open `main` read-write. So every
//! parameter must be one fsx reads ([`FSX_PARAMS`]) or one SQLite itself
//! documents for URIs ([`SQLITE_PARAMS`]); anything else fails the open
//! with `SQLITE_CANTOPEN` and a message naming it. A parameter given twice
//! is refused too (SQLite's `sqlite3_uri_parameter` would see the first,
//! SQLite's own `mode=` parsing the last), and fsx's own parameters may not
//! be empty.

/// The parameters fsx reads.
pub(crate) const FSX_PARAMS: &[&str] = &["volume", "branch", "commit"];

/// The URI parameters SQLite documents (<https://sqlite.org/uri.html>),
/// which it reads itself; `mode` is also read by fsx (`rwc` creates a
/// missing volume).
pub(crate) const SQLITE_PARAMS: &[&str] = &[
    "vfs",
    "mode",
    "cache",
    "immutable",
    "nolock",
    "psow",
    "modeof",
];

/// URI parameters of the main database being opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpenParams {
    /// `volume=PATH`.
    pub(crate) volume: Option<String>,
    /// `mode=…` (`rwc` allows creating a missing volume).
    pub(crate) mode: Option<String>,
    /// `branch=NAME`: the branch to open (default `main`).
    pub(crate) branch: Option<String>,
    /// `commit=ID`: a commit to open, read-only.
    pub(crate) commit: Option<String>,
}

impl OpenParams {
    /// Checks the `(key, value)` pairs of `name`'s URI, in order, and keeps
    /// the ones fsx reads. The error says what is wrong and what is
    /// accepted.
    pub(crate) fn parse(name: &str, pairs: &[(String, String)]) -> Result<Self, String> {
        let mut params = Self::default();
        for (i, (key, value)) in pairs.iter().enumerate() {
            let fsx = FSX_PARAMS.contains(&key.as_str());
            if !fsx && !SQLITE_PARAMS.contains(&key.as_str()) {
                return Err(format!(
                    "fsx: unknown URI parameter {key:?} in {name:?}; fsx reads {}, \
                     SQLite reads {} (check the spelling)",
                    FSX_PARAMS.join(", "),
                    SQLITE_PARAMS.join(", ")
                ));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(format!(
                    "fsx: URI parameter {key}= is given twice in {name:?}; give it once"
                ));
            }
            if fsx && value.is_empty() {
                return Err(format!(
                    "fsx: URI parameter {key}= is empty in {name:?}; give a value or leave it out"
                ));
            }
            let slot = match key.as_str() {
                "volume" => &mut params.volume,
                "branch" => &mut params.branch,
                "commit" => &mut params.commit,
                "mode" => &mut params.mode,
                _ => continue,
            };
            *slot = Some(value.clone());
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<OpenParams, String> {
        let pairs: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OpenParams::parse("app.db", &pairs)
    }

    #[test]
    fn known_parameters_are_read() {
        let p = parse(&[
            ("vfs", "fsx"),
            ("volume", "/v"),
            ("branch", "dev"),
            ("mode", "rwc"),
            ("cache", "shared"),
            ("psow", "1"),
            ("nolock", "1"),
            ("immutable", "0"),
            ("modeof", "/x"),
        ])
        .unwrap();
        assert_eq!(p.volume.as_deref(), Some("/v"));
        assert_eq!(p.branch.as_deref(), Some("dev"));
        assert_eq!(p.mode.as_deref(), Some("rwc"));
        assert_eq!(p.commit, None);
    }

    #[test]
    fn a_misspelt_parameter_is_refused_by_name() {
        let e = parse(&[("vfs", "fsx"), ("volume", "/v"), ("brnach", "dev")]).unwrap_err();
        assert!(e.contains("\"brnach\"") && e.contains("branch"), "{e}");
        // Case matters to SQLite, so it does here.
        assert!(parse(&[("Volume", "/v")]).is_err());
    }

    #[test]
    fn duplicates_and_empty_values_are_refused() {
        let e = parse(&[("volume", "/v"), ("branch", "a"), ("branch", "b")]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert!(parse(&[("mode", "ro"), ("mode", "rwc")]).is_err());
        let e = parse(&[("volume", "/v"), ("branch", "")]).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(parse(&[("volume", "")]).is_err());
        // SQLite's own parameters keep SQLite's rules.
        assert!(parse(&[("volume", "/v"), ("cache", "")]).is_ok());
    }
}
