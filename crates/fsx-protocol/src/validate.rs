//! Validation of what a request names: volumes, branches (and commit
//! specs), tree paths and content keys. Every function refuses with an
//! [`InvalidInput`] that maps to one [`ErrorCode`], so a
//! server answers bad input with a 400 before anything is looked up.
//!
//! Rules:
//!
//! - **Volume names** are the volume directory's name: 1–255 bytes of
//!   `A-Z a-z 0-9 . _ -`, not starting with `.` (no hidden directory, no
//!   `..`).
//! - **Branch specs** name a branch (or a commit by its id): 1–100
//!   characters of `A-Z a-z 0-9 . _ - /`, not starting with `-`, `/` or
//!   `.`; the engine applies the exact branch-name rule when it makes one.
//! - **Tree paths** are `/`-separated, absolute or not (`/` and the empty
//!   path are the root): no `.` or `..` component, no NUL, no empty
//!   component (`a//b`, a trailing `/`), each component at most 255
//!   bytes, the whole at most 4096 bytes (Linux's `NAME_MAX` and
//!   `PATH_MAX`).
//! - **Entry names** (one component, e.g. a listing's `after`) follow
//!   the component rule: 1–255 bytes, no `/`, no NUL, not `.` or `..`.
//! - **Content keys** are `extent/ext-` and 32 lowercase hex digits (what
//!   [`fsx_format::content_key`] makes); in a URL path the segment is the
//!   key without its `extent/` directory.

use fsx_format::CONTENT_KEY_PREFIX;

use crate::error::{ApiError, ErrorCode};

/// Longest component of a tree path, in bytes.
pub const NAME_MAX: usize = 255;
/// Longest tree path, in bytes.
pub const PATH_MAX: usize = 4096;
/// Longest branch spec, in bytes.
pub const SPEC_MAX: usize = 100;
/// Hex digits of a content key.
const KEY_HEX_LEN: usize = 32;

/// Why a name, path or key from outside is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A path that breaks a rule of the module docs.
    #[error("invalid path {path:?}: {why}")]
    Path {
        /// The path, cut to 100 characters.
        path: String,
        /// Which rule.
        why: &'static str,
    },
    /// A volume or branch name that breaks a rule of the module docs.
    #[error("invalid {what} {name:?}: {why}")]
    Name {
        /// "volume name" or "branch".
        what: &'static str,
        /// The name, cut to 100 characters.
        name: String,
        /// Which rule.
        why: &'static str,
    },
    /// A malformed content key.
    #[error("invalid content key {0:?}: expected extent/ext- and 32 lowercase hex digits")]
    Key(String),
}

impl InvalidInput {
    /// The stable code of the refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            InvalidInput::Path { .. } => ErrorCode::InvalidPath,
            InvalidInput::Name { .. } => ErrorCode::InvalidName,
            InvalidInput::Key(_) => ErrorCode::InvalidKey,
        }
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// At most 100 characters of `s`, with control characters escaped, for
/// messages.
fn cut(s: &str) -> String {
    s.chars()
        .take(100)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Checks a volume name (see the module docs).
pub fn check_volume_name(name: &str) -> Result<(), InvalidInput> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > NAME_MAX {
        Some("longer than 255 bytes")
    } else if name.starts_with('.') {
        Some("starts with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("use only A-Z a-z 0-9 . _ -")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(InvalidInput::Name {
            what: "volume name",
            name: cut(name),
            why,
        }),
    }
}

/// Checks a branch spec: a branch name or a commit id (see the module
/// docs).
pub fn check_spec(spec: &str) -> Result<(), InvalidInput> {
    let why = if spec.is_empty() {
        Some("empty")
    } else if spec.len() > SPEC_MAX {
        Some("longer than 100 characters")
    } else if spec.starts_with(['-', '/', '.']) {
        Some("starts with - / or .")
    } else if !spec
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        Some("use only A-Z a-z 0-9 . _ - /")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(InvalidInput::Name {
            what: "branch",
            name: cut(spec),
            why,
        }),
    }
}

/// Checks one entry name: a single component of a tree path (see the
/// module docs).
pub fn check_entry_name(name: &str) -> Result<(), InvalidInput> {
    let bad = |why| InvalidInput::Path {
        path: cut(name),
        why,
    };
    if name.contains('/') {
        return Err(bad("a name has no '/'"));
    }
    match TreePath::parse(name) {
        Ok(p) if p.is_root() => Err(bad("empty")),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A checked tree path: its components, root first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TreePath {
    components: Vec<String>,
}

impl TreePath {
    /// Parses and checks `path` (see the module docs).
    pub fn parse(path: &str) -> Result<Self, InvalidInput> {
        let bad = |why| InvalidInput::Path {
            path: cut(path),
            why,
        };
        if path.len() > PATH_MAX {
            return Err(bad("longer than 4096 bytes"));
        }
        if path.contains('\0') {
            return Err(bad("contains NUL"));
        }
        let rel = path.strip_prefix('/').unwrap_or(path);
        if rel.is_empty() {
            return Ok(Self {
                components: Vec::new(),
            });
        }
        let mut components = Vec::new();
        for c in rel.split('/') {
            match c {
                "" => return Err(bad("empty component (// or a trailing /)")),
                "." | ".." => return Err(bad("'.' and '..' are not allowed")),
                c if c.len() > NAME_MAX => return Err(bad("a component is longer than 255 bytes")),
                c => components.push(c.to_string()),
            }
        }
        Ok(Self { components })
    }

    /// The components, root first; empty for the root.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The parent and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(&[String], &str)> {
        self.components
            .split_last()
            .map(|(last, parent)| (parent, last.as_str()))
    }
}

impl std::fmt::Display for TreePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.components.is_empty() {
            return f.write_str("/");
        }
        for c in &self.components {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// A checked content key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentKey(String);

impl ContentKey {
    /// Parses a whole key: `extent/ext-` and 32 lowercase hex digits.
    pub fn parse(key: &str) -> Result<Self, InvalidInput> {
        let ok = key.strip_prefix(CONTENT_KEY_PREFIX).is_some_and(|hex| {
            hex.len() == KEY_HEX_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(Self(key.to_string()))
        } else {
            Err(InvalidInput::Key(cut(key)))
        }
    }

    /// Parses the URL form: the key without its `extent/` directory
    /// (`ext-` and 32 hex digits).
    pub fn from_segment(segment: &str) -> Result<Self, InvalidInput> {
        let dir = CONTENT_KEY_PREFIX
            .strip_suffix("ext-")
            .unwrap_or(CONTENT_KEY_PREFIX);
        Self::parse(&format!("{dir}{segment}")).map_err(|_| InvalidInput::Key(cut(segment)))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL form (see [`ContentKey::from_segment`]).
    pub fn segment(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Whether `bytes` hash to this key.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        fsx_format::content_key(bytes) == self.0
    }
}

impl std::fmt::Display for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_rules() {
        for root in ["", "/"] {
            assert!(TreePath::parse(root).is_ok_and(|p| p.is_root()));
        }
        let p = TreePath::parse("/a/b c/ü.db").unwrap_or_else(|_| TreePath {
            components: Vec::new(),
        });
        assert_eq!(p.components(), ["a", "b c", "ü.db"]);
        assert_eq!(p.to_string(), "/a/b c/ü.db");
        assert_eq!(
            TreePath::parse("a/b").map(|p| p.to_string()),
            Ok("/a/b".into())
        );
        let long = "x".repeat(256);
        let deep = "/a".repeat(2049);
        for bad in [
            "..", "/..", "/a/../b", "./a", "a/.", "a//b", "a/", "//", "a\0b", &long, &deep,
        ] {
            let e = TreePath::parse(bad);
            assert!(
                matches!(e, Err(InvalidInput::Path { .. })),
                "{bad:?} gave {e:?}"
            );
        }
        assert!(TreePath::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn entry_names_are_single_components() {
        for good in ["a", "b c", "ü.db", "...", ".hidden"] {
            assert!(check_entry_name(good).is_ok(), "{good:?}");
        }
        let long = "x".repeat(256);
        for bad in ["", "/", "a/b", "/a", "a/", ".", "..", "a\0", &long] {
            assert!(check_entry_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_specs_follow_the_rules() {
        for good in ["vol", "a.b_c-1", "V"] {
            assert!(check_volume_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "a\0"] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
        for good in ["main", "feature/x", "12", "v1.2"] {
            assert!(check_spec(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "/x", ".x", "a b", "a\0", &"b".repeat(101)] {
            assert!(check_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_well_formed_and_checked_against_bytes() {
        let blob = b"some bytes";
        let key = fsx_format::content_key(blob);
        let k = ContentKey::parse(&key).unwrap_or_else(|_| ContentKey(String::new()));
        assert!(k.matches(blob));
        assert!(!k.matches(b"other bytes"));
        assert_eq!(ContentKey::from_segment(k.segment()), Ok(k.clone()));
        for bad in [
            "",
            "extent/ext-",
            &key.to_uppercase(),
            &key[..key.len() - 1],
            &format!("{key}0"),
            &key.replace("extent/", "extent/../"),
            "fsx/volume",
        ] {
            assert!(ContentKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ContentKey::from_segment("../fsx/volume").is_err());
        assert_eq!(
            ContentKey::parse("x").map_err(|e| e.code()),
            Err(ErrorCode::InvalidKey)
        );
    }
}
