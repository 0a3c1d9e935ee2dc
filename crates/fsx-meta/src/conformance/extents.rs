//! Conformance checks of extent records beyond the basic GC rules: the
//! order in which GC claims them.

use super::*;

/// GC claims the records idle longest first, at most `limit` per call, and
/// returns them in that order (ties by key), so a run deletes in the same
/// order on every engine.
pub(super) async fn gc_claims_oldest_first(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    for (key, idle_since) in [
        ("extent/ext-a", 300),
        ("extent/ext-b", 100),
        ("extent/ext-c", 200),
        ("extent/ext-d", 100),
    ] {
        ok("pin", m.pin_extent(key, 10, idle_since).await)?;
    }
    let c = ok("gc_claim", m.gc_claim(10_000, 0, 1).await)?;
    ensure!(
        c.len() == 1 && (c[0] == "extent/ext-b" || c[0] == "extent/ext-d"),
        "a claim of one takes an oldest record: {c:?}"
    );
    let mut want = vec![
        "extent/ext-b",
        "extent/ext-d",
        "extent/ext-c",
        "extent/ext-a",
    ];
    want.retain(|k| *k != c[0]);
    let rest = ok("gc_claim", m.gc_claim(10_000, 0, 10).await)?;
    ensure!(
        rest == want,
        "claims come oldest first: {rest:?}, expected {want:?}"
    );
    Ok(())
}
