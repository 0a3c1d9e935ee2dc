//! Conformance checks of tier copy batches: a batch is one statement on
//! some engines, and must still mean what applying its marks one by one
//! means.

use super::*;

/// The one copy record of `key` in `tier`.
async fn copy_of(m: &dyn MetaEngine, key: &str, tier: &str) -> Result<TierCopy, String> {
    let copies = ok("tier_copies", m.tier_copies(key).await)?;
    copies
        .into_iter()
        .find(|c| c.tier == tier)
        .ok_or_else(|| format!("no {tier} copy record of {key}"))
}

/// A batch that marks one copy more than once ends as the marks applied in
/// order would leave it: the last `Present` mark wins, else the first
/// `Queued`; and a `Queued` mark leaves an existing queued record (its
/// attempts and backoff) alone.
pub(super) async fn batch_marks_apply_in_order(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (q, p) = (CopyState::Queued, CopyState::Present);
    ok(
        "tier_record",
        m.tier_record(
            &[
                TierMark::new("extent/qp", "cold", 5, q),
                TierMark::new("extent/pq", "cold", 7, p),
                TierMark::new("extent/qq", "cold", 9, q),
                TierMark::new("extent/pp", "cold", 1, p),
                TierMark::new("extent/qp", "cold", 6, p),
                TierMark::new("extent/pq", "cold", 8, q),
                TierMark::new("extent/qq", "cold", 10, q),
                TierMark::new("extent/pp", "cold", 2, p),
            ],
            100,
        )
        .await,
    )?;
    for (key, bytes, state) in [
        ("extent/qp", 6, p),
        ("extent/pq", 7, p),
        ("extent/qq", 9, q),
        ("extent/pp", 2, p),
    ] {
        let c = copy_of(m, key, "cold").await?;
        ensure!(
            c.bytes == bytes && c.state == state,
            "{key}: expected {bytes} bytes {state:?}, got {c:?}"
        );
    }
    let c = copy_of(m, "extent/qq", "cold").await?;
    ensure!(c.next_ms == 100, "a queued copy is due at once: {c:?}");

    ok(
        "tier_retry",
        m.tier_retry("extent/qq", "cold", 500, "cold is down").await,
    )?;
    ok(
        "tier_record",
        m.tier_record(&[TierMark::new("extent/qq", "cold", 11, q)], 200)
            .await,
    )?;
    let c = copy_of(m, "extent/qq", "cold").await?;
    ensure!(
        c.bytes == 9 && c.attempts == 1 && c.next_ms == 500 && c.state == q,
        "queuing a queued copy again keeps its record: {c:?}"
    );
    Ok(())
}
