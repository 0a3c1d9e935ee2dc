//! `docs/API.md` documents exactly the routes of the protocol's table,
//! with their scopes.

use fsx_protocol::{Access, ROUTES};

#[test]
fn the_documented_routes_are_the_route_table() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md")).unwrap();
    let mut documented: Vec<(String, String, String)> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let method = *cells.get(1)?;
            if !["GET", "HEAD", "PUT", "POST"].contains(&method) {
                return None;
            }
            Some((
                method.to_string(),
                cells[2].trim_matches('`').to_string(),
                cells[3].to_string(),
            ))
        })
        .collect();
    let mut table: Vec<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            let scope = match r.access {
                Access::Public => "public".to_string(),
                Access::Token(s) => s.to_string(),
            };
            (r.method.as_str().to_string(), r.path.to_string(), scope)
        })
        .collect();
    documented.sort();
    table.sort();
    assert_eq!(documented, table);
}
