//! The route table: every endpoint of the API, with the scope a token
//! needs for it. Servers build their router from [`ROUTES`] (each
//! [`RouteId`] one handler, matched exhaustively, so a route in the table
//! cannot go unserved), and `docs/API.md` documents exactly these routes
//! (a test compares the two).
//!
//! Path templates use `{name}` for one segment, as axum and OpenAPI do.
//! Tree paths travel in the query string (`?path=`), not in the URL path,
//! so the root, names with `%` or `?`, and path checks need no second
//! decoding rule.
//!
//! [`match_route`] is the table's own matcher, for servers without axum
//! (the Workers build) and for the fuzz target: a test of `fsx-server`
//! (`tests/route_match.rs`) checks that axum's router answers every path
//! the way it says. Its rules, which are axum's: a literal segment matches
//! itself byte for byte (no percent-decoding, no case folding); a `{name}`
//! matches one segment, empty only when it is not the path's last one
//! (`/v1/volumes//stat` names the volume "", which validation then
//! refuses), and is percent-decoded afterwards (a
//! segment that does not decode to UTF-8 is [`RouteMatch::BadParam`]); no
//! trailing `/` is ignored; `HEAD` is served by a path's `GET` route when
//! the path has no `HEAD` route of its own.

use crate::Scope;

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
}

impl Method {
    /// The method named `s` (exactly, upper case, as HTTP spells it), if
    /// the API uses it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GET" => Some(Method::Get),
            "HEAD" => Some(Method::Head),
            "PUT" => Some(Method::Put),
            "POST" => Some(Method::Post),
            _ => None,
        }
    }

    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone: health checks and metrics.
    Public,
    /// A token of the route's volume with at least this scope (or, for
    /// [`Scope::Read`], anyone when the volume is public-read).
    Token(Scope),
}

/// Names every route, for handlers and logs. Not `non_exhaustive` on
/// purpose: a server matches it exhaustively, so a new route fails to
/// build every server that does not serve it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteId {
    /// The process is up.
    Healthz,
    /// Every served volume answers.
    Readyz,
    /// The server's metrics in the Prometheus text format.
    Metrics,
    /// A volume's identity, settings the API exposes, and statistics.
    VolumeInfo,
    /// One tree entry's attributes.
    Stat,
    /// A directory's entries, paged.
    List,
    /// The page-store files by name (what `fsx file ls` lists).
    Files,
    /// A file's bytes (whole, or a `Range`).
    ReadFile,
    /// Replaces a file's bytes with the body (creating it).
    WriteFile,
    /// Makes a directory.
    Mkdir,
    /// Renames an entry.
    Rename,
    /// Removes a file or an empty directory.
    Remove,
    /// The volume's branches.
    Branches,
    /// Creates a branch.
    CreateBranch,
    /// Commits a branch.
    Commit,
    /// The commits behind a branch or commit.
    Log,
    /// How two views' files differ.
    Diff,
    /// Merges a branch or commit into a branch.
    Merge,
    /// Points a branch at an older commit.
    Reset,
    /// Whether the volume's store holds an extent, and its size.
    ExtentHead,
    /// An extent's bytes (whole, or a `Range`).
    ExtentGet,
    /// Stores an extent whose bytes hash to its key.
    ExtentPut,
    /// Which of the given keys the store lacks.
    ExtentsMissing,
    /// The changes after a sequence number (the change feed).
    Changes,
    /// A WebSocket that pushes each new change as it commits.
    Watch,
}

/// One endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Which one.
    pub id: RouteId,
    /// Its method.
    pub method: Method,
    /// Its path template.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn route(id: RouteId, method: Method, path: &'static str, access: Access) -> Route {
    Route {
        id,
        method,
        path,
        access,
    }
}

use Access::{Public, Token};
use Method::{Get, Head, Post, Put};
use Scope::{Admin, Read, Write};

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    route(RouteId::Healthz, Get, "/healthz", Public),
    route(RouteId::Readyz, Get, "/readyz", Public),
    route(RouteId::Metrics, Get, "/metrics", Public),
    route(RouteId::VolumeInfo, Get, "/v1/volumes/{vol}", Token(Read)),
    route(RouteId::Stat, Get, "/v1/volumes/{vol}/stat", Token(Read)),
    route(RouteId::List, Get, "/v1/volumes/{vol}/list", Token(Read)),
    route(RouteId::Files, Get, "/v1/volumes/{vol}/files", Token(Read)),
    route(
        RouteId::ReadFile,
        Get,
        "/v1/volumes/{vol}/file",
        Token(Read),
    ),
    route(
        RouteId::WriteFile,
        Put,
        "/v1/volumes/{vol}/file",
        Token(Write),
    ),
    route(
        RouteId::Mkdir,
        Post,
        "/v1/volumes/{vol}/mkdir",
        Token(Write),
    ),
    route(
        RouteId::Rename,
        Post,
        "/v1/volumes/{vol}/rename",
        Token(Write),
    ),
    route(
        RouteId::Remove,
        Post,
        "/v1/volumes/{vol}/remove",
        Token(Write),
    ),
    route(
        RouteId::Branches,
        Get,
        "/v1/volumes/{vol}/branches",
        Token(Read),
    ),
    route(
        RouteId::CreateBranch,
        Post,
        "/v1/volumes/{vol}/branches",
        Token(Write),
    ),
    route(
        RouteId::Commit,
        Post,
        "/v1/volumes/{vol}/commit",
        Token(Write),
    ),
    route(RouteId::Log, Get, "/v1/volumes/{vol}/log", Token(Read)),
    route(RouteId::Diff, Get, "/v1/volumes/{vol}/diff", Token(Read)),
    route(
        RouteId::Merge,
        Post,
        "/v1/volumes/{vol}/merge",
        Token(Write),
    ),
    route(
        RouteId::Reset,
        Post,
        "/v1/volumes/{vol}/reset",
        Token(Admin),
    ),
    route(
        RouteId::ExtentHead,
        Head,
        "/v1/volumes/{vol}/extents/{key}",
        Token(Read),
    ),
    route(
        RouteId::ExtentGet,
        Get,
        "/v1/volumes/{vol}/extents/{key}",
        Token(Read),
    ),
    route(
        RouteId::ExtentPut,
        Put,
        "/v1/volumes/{vol}/extents/{key}",
        Token(Write),
    ),
    route(
        RouteId::ExtentsMissing,
        Post,
        "/v1/volumes/{vol}/extents-missing",
        Token(Read),
    ),
    route(
        RouteId::Changes,
        Get,
        "/v1/volumes/{vol}/changes",
        Token(Read),
    ),
    route(RouteId::Watch, Get, "/v1/volumes/{vol}/watch", Token(Read)),
];

/// The route of `id`.
pub fn route_of(id: RouteId) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.id == id)
}

/// How a request's method and path meet the table (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The route that serves it, and its `{name}` parameters, decoded, in
    /// template order.
    Found {
        /// The route.
        route: &'static Route,
        /// `(name, value)` per parameter.
        params: Vec<(&'static str, String)>,
    },
    /// The route's path matches but a parameter is not UTF-8 once
    /// percent-decoded.
    BadParam {
        /// The route.
        route: &'static Route,
    },
    /// Some route has this path, none with this method (405).
    MethodNotAllowed,
    /// No route has this path (404).
    NotFound,
}

/// The raw `{name}` segments of `path` if it fits `template`.
fn fit<'p>(template: &'static str, path: &'p str) -> Option<Vec<(&'static str, &'p str)>> {
    let mut params = Vec::new();
    let mut segments = path.split('/');
    let mut template = template.split('/').peekable();
    while let Some(t) = template.next() {
        let s = segments.next()?;
        let last = template.peek().is_none();
        match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            // axum's router (matchit) lets a parameter be empty between
            // two slashes, not at the end of the path.
            Some(_) if last && s.is_empty() => return None,
            Some(name) => params.push((name, s)),
            None if t == s => {}
            None => return None,
        }
    }
    segments.next().is_none().then_some(params)
}

/// Which route of [`ROUTES`] serves `method` on `path` (the URL's path,
/// still percent-encoded, without its query string).
pub fn match_route(method: Method, path: &str) -> RouteMatch {
    let mut path_known = false;
    let mut get = None;
    for route in ROUTES {
        let Some(raw) = fit(route.path, path) else {
            continue;
        };
        path_known = true;
        if route.method == method {
            return decoded(route, raw);
        }
        if method == Method::Head && route.method == Method::Get {
            get = Some((route, raw));
        }
    }
    match get {
        Some((route, raw)) => decoded(route, raw),
        None if path_known => RouteMatch::MethodNotAllowed,
        None => RouteMatch::NotFound,
    }
}

fn decoded(route: &'static Route, raw: Vec<(&'static str, &str)>) -> RouteMatch {
    let mut params = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        match percent_encoding::percent_decode_str(value).decode_utf8() {
            Ok(v) => params.push((name, v.into_owned())),
            Err(_) => return RouteMatch::BadParam { route },
        }
    }
    RouteMatch::Found { route, params }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_unique_and_versioned() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(a.id != b.id, "{:?} twice", a.id);
                assert!(
                    (a.method, a.path) != (b.method, b.path),
                    "{} {} twice",
                    a.method.as_str(),
                    a.path
                );
            }
            match a.access {
                Access::Public => assert!(!a.path.starts_with(crate::API_PREFIX)),
                Access::Token(_) => assert!(a.path.starts_with("/v1/volumes/{vol}")),
            }
        }
        assert!(route_of(RouteId::Reset).is_some_and(|r| r.access == Access::Token(Scope::Admin)));
    }

    fn found(m: &RouteMatch) -> Option<(RouteId, Vec<String>)> {
        match m {
            RouteMatch::Found { route, params } => {
                Some((route.id, params.iter().map(|(_, v)| v.clone()).collect()))
            }
            _ => None,
        }
    }

    #[test]
    fn the_matcher_follows_the_table() {
        for route in ROUTES {
            let path = route.path.replace("{vol}", "v").replace("{key}", "ext-00");
            let m = match_route(route.method, &path);
            assert_eq!(found(&m).map(|f| f.0), Some(route.id), "{path}");
        }
        assert_eq!(
            found(&match_route(Method::Get, "/v1/volumes/a%20b/stat")),
            Some((RouteId::Stat, vec!["a b".to_string()]))
        );
        assert_eq!(
            found(&match_route(Method::Head, "/v1/volumes/v/extents/k")),
            Some((RouteId::ExtentHead, vec!["v".into(), "k".into()]))
        );
        assert_eq!(
            found(&match_route(Method::Head, "/healthz")).map(|f| f.0),
            Some(RouteId::Healthz),
            "HEAD falls back to GET"
        );
        for missing in [
            "",
            "/",
            "/healthz/",
            "/v1/volumes/",
            "/v1/volumes/v/extents/",
            "/V1/volumes/v",
        ] {
            assert_eq!(
                match_route(Method::Get, missing),
                RouteMatch::NotFound,
                "{missing:?}"
            );
        }
        assert_eq!(
            found(&match_route(Method::Get, "/v1/volumes//stat")),
            Some((RouteId::Stat, vec![String::new()]))
        );
        assert_eq!(
            match_route(Method::Post, "/v1/volumes/v/stat"),
            RouteMatch::MethodNotAllowed
        );
        assert!(matches!(
            match_route(Method::Get, "/v1/volumes/%ff/stat"),
            RouteMatch::BadParam { .. }
        ));
        assert_eq!(Method::parse("GET"), Some(Method::Get));
        assert_eq!(Method::parse("get"), None);
    }
}
