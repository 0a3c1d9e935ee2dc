//! Fuzzes what `fsx serve` parses from untrusted requests, all of it in
//! `fsx-protocol` (runtime-free): route matching of a method and path
//! against the route table, the validation of volume names, branch specs,
//! entry names, tree paths, content keys and tokens, the query strings
//! and `Range` headers of `fsx_protocol::request`, and every JSON request
//! body of `fsx_protocol::types`.
//!
//! Every input goes to every parser (as a path, a name, a header value, a
//! query string and a JSON body), so a seed is a plain text file and one
//! interesting string reaches all of them. Beyond "no panic", what a
//! parser accepts must keep the promises the server relies on:
//!
//! - a route found has the method asked for (or GET for a HEAD), its
//!   template refilled with the raw segments gives the path back, and no
//!   other route of that method fits the path;
//! - a volume name or entry name that validates has no `/` or NUL and is
//!   neither `.` nor `..`; a branch spec has no NUL, space or control
//!   character and does not start with `-`, `/` or `.`;
//! - a tree path that validates prints in its normal form, which parses
//!   to the same path and prints the same (normalising is idempotent),
//!   and its components are names that validate;
//! - a content key or token that parses prints back as the same string;
//! - a range lies inside its object;
//! - a query or JSON body that parses serialises to one that parses to
//!   the same value.
#![no_main]

use fsx_protocol::request::{parse_query, parse_range};
use fsx_protocol::routes::{Method, ROUTES, RouteMatch, match_route};
use fsx_protocol::token::{Token, TokenHash};
use fsx_protocol::types as t;
use fsx_protocol::validate::{check_entry_name, check_spec, check_volume_name};
use fsx_protocol::{ContentKey, TreePath};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn routes(path: &str) {
    for method in [Method::Get, Method::Head, Method::Put, Method::Post] {
        match match_route(method, path) {
            RouteMatch::Found { route, params } => {
                assert!(
                    route.method == method
                        || (method == Method::Head && route.method == Method::Get),
                    "{} {path:?} matched {:?}",
                    method.as_str(),
                    route
                );
                // The raw segments put back into the template give the path.
                let raw: Vec<&str> = path.split('/').collect();
                let refilled: Vec<&str> = route
                    .path
                    .split('/')
                    .zip(&raw)
                    .map(|(t, s)| if t.starts_with('{') { *s } else { t })
                    .collect();
                assert_eq!(refilled.join("/"), path, "{:?}", route);
                assert_eq!(
                    params.len(),
                    route.path.matches('{').count(),
                    "{path:?}: {params:?}"
                );
                let same_method = ROUTES
                    .iter()
                    .filter(|r| r.method == route.method)
                    .filter(|r| r.path.split('/').count() == raw.len())
                    .filter(|r| {
                        r.path
                            .split('/')
                            .zip(&raw)
                            .all(|(t, s)| t.starts_with('{') || t == *s)
                    })
                    .count();
                assert_eq!(same_method, 1, "{path:?} fits {same_method} routes");
            }
            RouteMatch::BadParam { route } => {
                assert!(route.path.contains('{'), "{path:?}: {route:?}");
                assert!(
                    path.contains('%'),
                    "only a percent-escape can be bad: {path:?}"
                );
            }
            RouteMatch::MethodNotAllowed | RouteMatch::NotFound => {}
        }
    }
}

fn is_name_safe(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '\0']) && s != "." && s != ".."
}

fn names(s: &str) {
    if check_volume_name(s).is_ok() {
        assert!(
            is_name_safe(s) && !s.starts_with('.') && s.len() <= 255,
            "{s:?}"
        );
    }
    if check_entry_name(s).is_ok() {
        assert!(is_name_safe(s) && s.len() <= 255, "{s:?}");
        let p = TreePath::parse(s).expect("a name is a path");
        assert_eq!(p.components(), [s]);
    }
    if check_spec(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= 100, "{s:?}");
        assert!(!s.starts_with(['-', '/', '.']), "{s:?}");
        assert!(
            !s.chars().any(|c| c.is_whitespace() || c.is_control()),
            "{s:?}"
        );
    }
}

fn paths(s: &str) {
    let Ok(p) = TreePath::parse(s) else { return };
    let normal = p.to_string();
    assert!(normal.starts_with('/'), "{normal:?}");
    let expected = if s.starts_with('/') || s.is_empty() {
        if s.is_empty() {
            "/".to_string()
        } else {
            s.to_string()
        }
    } else {
        format!("/{s}")
    };
    assert_eq!(normal, expected, "a valid path is already normal");
    let again = TreePath::parse(&normal).expect("the normal form parses");
    assert_eq!(again, p);
    assert_eq!(again.to_string(), normal);
    assert!(normal.len() <= fsx_protocol::validate::PATH_MAX + 1);
    for c in p.components() {
        assert!(check_entry_name(c).is_ok(), "component {c:?} of {s:?}");
    }
    assert_eq!(p.is_root(), p.components().is_empty());
}

fn keys_and_tokens(s: &str) {
    if let Ok(k) = ContentKey::parse(s) {
        assert_eq!(k.as_str(), s);
        assert!(!k.segment().contains('/'));
        assert_eq!(ContentKey::from_segment(k.segment()).as_ref(), Ok(&k));
    }
    if let Ok(k) = ContentKey::from_segment(s) {
        assert_eq!(k.segment(), s);
    }
    if let Ok(token) = Token::parse(s) {
        assert_eq!(token.reveal(), s, "a token re-formats to itself");
        assert!(fsx_protocol::token::check_id(token.id()).is_ok());
        let stored = TokenHash::from_hex(&token.hash().to_hex()).expect("own hash parses");
        assert!(token.matches(&stored));
    }
    if let Ok(token) = Token::from_bearer(s) {
        assert!(s.starts_with("Bearer "));
        assert!(s.contains(&token.reveal()));
    }
    if let Ok(h) = TokenHash::from_hex(s) {
        assert!(h.to_hex().eq_ignore_ascii_case(s));
    }
}

fn ranges(s: &str) {
    for size in [0, 1, 100, 4096, u64::MAX - 1, u64::MAX] {
        if let Ok((start, end)) = parse_range(s, size) {
            assert!(
                start < end && end <= size,
                "{s:?} of {size}: {start}..{end}"
            );
        }
    }
}

/// Parses `q` as `T`; whatever parses must survive a round trip.
fn query<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(q: &str) {
    let Ok(v) = parse_query::<T>(Some(q)) else {
        return;
    };
    let again = serde_urlencoded::to_string(&v).expect("a parsed query serialises");
    let back = parse_query::<T>(Some(&again));
    assert_eq!(back.as_ref().ok(), Some(&v), "{q:?} -> {again:?}");
}

/// Parses `body` as `T`; whatever parses must survive a round trip.
fn body<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(body) else {
        return;
    };
    let again = serde_json::to_vec(&v).expect("a parsed body serialises");
    let back = serde_json::from_slice::<T>(&again);
    assert_eq!(
        back.as_ref().ok(),
        Some(&v),
        "{:?}",
        String::from_utf8_lossy(&again)
    );
}

fuzz_target!(|data: &[u8]| {
    body::<t::MkdirRequest>(data);
    body::<t::RenameRequest>(data);
    body::<t::RemoveRequest>(data);
    body::<t::CreateBranchRequest>(data);
    body::<t::CommitRequest>(data);
    body::<t::MergeRequest>(data);
    body::<t::ResetRequest>(data);
    body::<t::MissingRequest>(data);
    // What a client parses from a server: the error body, and the change
    // feed's pages and WebSocket messages.
    let _ = serde_json::from_slice::<fsx_protocol::ErrorBody>(data);
    body::<fsx_protocol::feed::ChangesPage>(data);
    body::<fsx_protocol::feed::WatchEvent>(data);

    // Paths, names, headers and queries are text by the time they reach
    // the protocol (axum hands out `&str`).
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    routes(s);
    names(s);
    paths(s);
    keys_and_tokens(s);
    ranges(s);
    query::<t::PathQuery>(s);
    query::<t::ListQuery>(s);
    query::<t::FilesQuery>(s);
    query::<t::LogQuery>(s);
    query::<t::DiffQuery>(s);
    query::<fsx_protocol::feed::ChangesQuery>(s);
    query::<fsx_protocol::feed::WatchQuery>(s);
});
