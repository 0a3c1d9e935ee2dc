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
}
