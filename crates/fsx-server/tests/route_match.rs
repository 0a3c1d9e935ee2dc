//! `fsx_protocol::match_route` (the table's own matcher, which the fuzz
//! target drives and a server without axum would use) agrees with the
//! router `fsx serve` builds from the same table: for every route, and
//! for near misses of each (a trailing `/`, an empty or extra segment,
//! other case, percent-encoded literals and parameters, each method), the
//! status the server answers is the one the match predicts.
//!
//! Requests are written by hand over a `TcpStream`, so the request target
//! reaches the server byte for byte (an HTTP client library would
//! normalise `//`, `..` or percent-escapes first).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use fsx_protocol::validate::check_volume_name;
use fsx_protocol::{Access, Method, ROUTES, RouteMatch, match_route};

/// The status and body the server answers `method target`.
fn send(addr: SocketAddr, method: &str, target: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        tcp,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// What the server should answer, from the pure match: the status, and
/// a piece of the error message when there is a body to hold it.
fn expected(method: Method, target: &str) -> (u16, Option<&'static str>) {
    match match_route(method, target) {
        RouteMatch::NotFound => (404, Some("no endpoint")),
        RouteMatch::MethodNotAllowed => (405, None),
        RouteMatch::BadParam { .. } => (400, Some("invalid_name")),
        RouteMatch::Found { route, params } => match route.access {
            Access::Public => (200, None),
            Access::Token(_) => {
                let vol = params
                    .iter()
                    .find(|(n, _)| *n == "vol")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_default();
                if check_volume_name(vol).is_err() {
                    (400, Some("invalid_name"))
                } else if vol != "vol" {
                    (404, Some("serves no volume"))
                } else {
                    (401, Some("unauthorized"))
                }
            }
        },
    }
}

fn targets() -> Vec<String> {
    let mut out = vec![
        "/".to_string(),
        "/v1".into(),
        "/v1/volumes".into(),
        "/v1/volumes/".into(),
        "/healthz?x=1".into(),
        "//healthz".into(),
        "/healthz/".into(),
        "/HEALTHZ".into(),
        "/heal%74hz".into(),
        "/v1/vol%75mes/vol/stat".into(),
        "/v1/volumes/vol/./stat".into(),
        "/v1/volumes/vol/../vol/stat".into(),
    ];
    for route in ROUTES {
        for vol in [
            "vol", "other", "v%6fl", "a%20b", "%ff", "%2e%2e", ".hidden", "a%2Fb",
        ] {
            let base = route.path.replace("{vol}", vol);
            for key in ["ext-0", "%00", "e%FFx"] {
                let p = base.replace("{key}", key);
                out.push(format!("{p}/"));
                out.push(format!("{p}/x"));
                out.push(p.replace("/v1/", "/v1//"));
                out.push(p.to_uppercase());
                out.push(p);
            }
        }
        out.push(route.path.replace("{vol}", "").replace("{key}", ""));
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_router_answers_as_the_table_matches() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = runtime.block_on(async {
        let vol = make_volume(&dir.path().join("vol"), None).await;
        serve(vec![vol], None).await
    });
    let addr = server.local_addr();
    let mut checked = 0;
    for target in targets() {
        let path = target.split('?').next().unwrap_or_default();
        for method in [Method::Get, Method::Head, Method::Put, Method::Post] {
            let (status, body) = send(addr, method.as_str(), &target);
            let (want, text) = expected(method, path);
            assert_eq!(
                status,
                want,
                "{} {target}: the table says {:?}; the server answered {body}",
                method.as_str(),
                match_route(method, path)
            );
            if let Some(text) = text
                && method != Method::Head
            {
                assert!(
                    body.contains(text),
                    "{} {target}: expected {text:?} in {body}",
                    method.as_str()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} requests");
    runtime.block_on(server.shutdown()).unwrap();
}
