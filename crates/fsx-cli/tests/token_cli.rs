//! `fsx token create|list|revoke` with the real binary: the token is
//! printed once (with a warning), listed without its secret, revoked for
//! good; bad scopes and unknown ids are clear errors that change nothing.

mod common;

use common::*;

#[test]
fn tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);

    let out = fsx(&[
        "token",
        "create",
        s(&vol),
        "--scope",
        "write",
        "--label",
        "ci",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let parsed = fsx_protocol::Token::parse(&token).expect("a well-formed token is printed");
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(warning.contains("only time"), "no warning: {warning}");

    let list = ok(&["token", "list", s(&vol)]);
    assert!(list.contains(parsed.id()), "{list}");
    assert!(list.contains("write") && list.contains("ci"), "{list}");
    let secret = &token[token.len() - 64..];
    assert!(!list.contains(secret), "the list shows the secret");

    let err = fails(&["token", "create", s(&vol), "--scope", "root"]);
    assert!(err.contains("root"), "{err}");
    let err = fails(&["token", "revoke", s(&vol), "00000000000000ff"]);
    assert!(err.contains("no token"), "{err}");
    assert_eq!(ok(&["token", "list", s(&vol)]).lines().count(), 2);

    ok(&["token", "revoke", s(&vol), parsed.id()]);
    let list = ok(&["token", "list", s(&vol)]);
    let line = list.lines().find(|l| l.starts_with(parsed.id())).unwrap();
    assert!(!line.contains("  -  "), "not shown revoked: {line}");
}
