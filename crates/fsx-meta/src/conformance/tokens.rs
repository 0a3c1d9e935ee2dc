//! Conformance checks of API tokens ([`MetaTokens`]).

use super::*;

/// Tokens are stored with their hash, listed without it, looked up by id,
/// revoked for good; bad records and duplicate ids change nothing.
pub(super) async fn tokens(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    ensure!(
        ok("tokens", m.tokens().await)?.is_empty(),
        "a new volume has tokens"
    );
    let a = TokenRecord::new("00aa", "ci runner", "write", "h1", 10);
    let b = TokenRecord::new("00bb", "", "read", "h2", 20);
    ok("create_token a", m.create_token(&a).await)?;
    ok("create_token b", m.create_token(&b).await)?;
    let dup = TokenRecord::new("00aa", "other", "admin", "h3", 30);
    err_kind(
        "create_token with a taken id",
        m.create_token(&dup).await,
        MetaErrorKind::AlreadyExists,
    )?;
    let mut revoked_early = TokenRecord::new("00cc", "", "read", "h", 1);
    revoked_early.revoked_ms = Some(1);
    let long_label = "x".repeat(TOKEN_LABEL_MAX + 1);
    for (what, bad) in [
        (
            "an unknown scope",
            TokenRecord::new("00cc", "", "root", "h", 1),
        ),
        ("an empty hash", TokenRecord::new("00cc", "", "read", "", 1)),
        ("an empty id", TokenRecord::new("", "", "read", "h", 1)),
        (
            "an id with '/'",
            TokenRecord::new("a/b", "", "read", "h", 1),
        ),
        (
            "a label with a newline",
            TokenRecord::new("00cc", "a\nb", "read", "h", 1),
        ),
        (
            "a label too long",
            TokenRecord::new("00cc", long_label, "read", "h", 1),
        ),
        ("a token revoked at creation", revoked_early),
    ] {
        err_kind(
            &format!("create_token with {what}"),
            m.create_token(&bad).await,
            MetaErrorKind::InvalidInput,
        )?;
    }
    let listed = ok("tokens", m.tokens().await)?;
    let ids: Vec<_> = listed.iter().map(|t| t.id.as_str()).collect();
    ensure!(ids == ["00aa", "00bb"], "listed {ids:?}, oldest first");
    ensure!(
        listed[0].label == "ci runner" && listed[0].scope == "write" && listed[0].created_ms == 10,
        "listed {:?}",
        listed[0]
    );
    let got = ok("token", m.token("00aa").await)?;
    ensure!(got.as_ref() == Some(&a), "lookup gave {got:?}, not {a:?}");
    ensure!(
        ok("token of an unknown id", m.token("00ff").await)?.is_none(),
        "an unknown id was found"
    );
    ensure!(
        ok("token of a malformed id", m.token("../x").await)?.is_none(),
        "a malformed id was found"
    );
    ok("revoke_token", m.revoke_token("00aa", 50).await)?;
    ok("revoke_token again", m.revoke_token("00aa", 60).await)?;
    err_kind(
        "revoke_token of an unknown id",
        m.revoke_token("00ff", 60).await,
        MetaErrorKind::NotFound,
    )?;
    let got = ok("token", m.token("00aa").await)?;
    ensure!(
        got.as_ref().and_then(|t| t.revoked_ms) == Some(50),
        "revocation kept {got:?}, not the first time"
    );
    let listed = ok("tokens", m.tokens().await)?;
    ensure!(
        listed.len() == 2 && listed[0].revoked_ms == Some(50) && listed[1].revoked_ms.is_none(),
        "after revoking: {listed:?}"
    );
    Ok(())
}
