//! The conformance suite every [`MetaEngine`] passes: one list of named
//! checks, each run against a fresh, empty engine.
//!
//! An engine's tests call [`run`] with a factory of fresh engines (a new
//! SQLite file, a new PostgreSQL schema) and assert that every check
//! passes. Checks exercise the contract only, never engine internals.

use bytes::Bytes;
use fsx_store::BoxFuture;

use crate::contract::*;
use crate::error::MetaErrorKind;

/// The outcome of one check: `Err` carries what went wrong.
pub type CheckResult = std::result::Result<(), String>;

/// A check against a fresh engine.
pub type CheckFn = for<'a> fn(&'a dyn MetaEngine) -> BoxFuture<'a, CheckResult>;

/// Every check, by name.
pub const CHECKS: &[(&str, CheckFn)] = &[
    ("volume_init_and_open", |m| {
        Box::pin(files::volume_init_and_open(m))
    }),
    ("files_create_list_rename_delete", |m| {
        Box::pin(files::files(m))
    }),
    ("leases_one_writer", |m| Box::pin(files::leases(m))),
    ("commits_keep_the_lease_half_a_ttl_ahead", |m| {
        Box::pin(files::lease_stays_ahead(m))
    }),
    ("writes_are_read_back_as_snapshots", |m| {
        Box::pin(files::writes(m))
    }),
    ("pack_consumes_exactly_what_it_read", |m| {
        Box::pin(files::pack(m))
    }),
    ("batches_install_whole_extents", |m| {
        Box::pin(files::batches_install_whole_extents(m))
    }),
    ("pack_preconditions_change_nothing", |m| {
        Box::pin(files::pack_conflicts(m))
    }),
    ("shared_extents_are_refcounted", |m| Box::pin(refcounts(m))),
    ("gc_respects_grace_and_pins", |m| Box::pin(gc(m))),
    ("gc_claims_oldest_first", |m| {
        Box::pin(extents::gc_claims_oldest_first(m))
    }),
    ("shrink_releases_references", |m| Box::pin(shrink(m))),
    ("listing_pages_through_everything", |m| Box::pin(listing(m))),
    ("counters_and_totals_accumulate", |m| Box::pin(counters(m))),
    ("settings_round_trip_and_reserved_names", |m| {
        Box::pin(settings(m))
    }),
    ("tier_queue_and_copy_records", |m| Box::pin(tier_records(m))),
    ("tier_batches_apply_marks_in_order", |m| {
        Box::pin(tiers::batch_marks_apply_in_order(m))
    }),
    ("access_statistics_and_digests", |m| Box::pin(access(m))),
    ("branches_isolate_writes", |m| {
        Box::pin(branches::isolation(m))
    }),
    ("branches_pack_and_truncate_on_their_own_layer", |m| {
        Box::pin(branches::pack_and_truncate(m))
    }),
    ("commits_time_travel_and_reset", |m| {
        Box::pin(branches::commits_and_reset(m))
    }),
    ("expired_commits_fold_and_free", |m| {
        Box::pin(branches::expiry(m))
    }),
    ("deleting_a_branch_frees_only_its_extents", |m| {
        Box::pin(branches::delete_branch(m))
    }),
    ("merge_copies_files_and_commits", |m| {
        Box::pin(branches::merge(m))
    }),
    ("automatic_commits_follow_the_interval", |m| {
        Box::pin(branches::auto_commit(m))
    }),
    ("commit_ids_are_never_reused", |m| {
        Box::pin(branches::commit_ids_never_reused(m))
    }),
    ("commits_fold_journals", |m| {
        Box::pin(branches::commits_fold_journals(m))
    }),
    ("dirty_pages_are_checksummed", |m| Box::pin(dirty_checks(m))),
    ("out_of_range_numbers_are_refused_and_change_nothing", |m| {
        Box::pin(out_of_range(m))
    }),
    ("tree_names_kinds_and_listing", |m| {
        Box::pin(tree::basics(m))
    }),
    ("tree_renames_follow_posix", |m| Box::pin(tree::renames(m))),
    ("tree_removal_and_orphans", |m| {
        Box::pin(tree::removal_and_orphans(m))
    }),
    ("tree_permissions_are_checked_inside", |m| {
        Box::pin(tree::permissions(m))
    }),
    ("tree_extended_attributes", |m| Box::pin(tree::xattrs(m))),
    ("tree_per_branch_and_commit", |m| {
        Box::pin(tree::branches(m))
    }),
    ("locks_conflict_split_and_die_with_their_session", |m| {
        Box::pin(tree::locks(m))
    }),
    ("tree_changes_may_wait_for_a_barrier", |m| {
        Box::pin(tree::deferred_durability(m))
    }),
    ("tokens_are_stored_listed_and_revoked", |m| {
        Box::pin(tokens::tokens(m))
    }),
    ("changes_are_recorded_in_order", |m| {
        Box::pin(changes::changes_are_recorded_in_order(m))
    }),
];

/// Runs every check, each on an engine from `fresh`; returns the failures
/// as `(name, message)`.
pub async fn run<F, Fut>(mut fresh: F) -> Vec<(&'static str, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Box<dyn MetaEngine>>,
{
    let mut failures = Vec::new();
    for (name, check) in CHECKS {
        let engine = fresh().await;
        if let Err(e) = check(engine.as_ref()).await {
            failures.push((*name, e));
        }
    }
    failures
}

const PS: u32 = 4096;
const PPE: u64 = 512;
const TTL: i64 = 30_000;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

mod branches;
mod changes;
mod extents;
mod files;
mod tiers;
mod tokens;
mod tree;

/// `Ok` value or a message naming the call.
fn ok<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: unexpected error: {e}"))
}

/// An error of `kind`, or a message.
fn err_kind<T: std::fmt::Debug>(
    what: &str,
    r: crate::Result<T>,
    kind: MetaErrorKind,
) -> CheckResult {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(format!("{what}: expected {kind}, got {e}")),
        Ok(v) => Err(format!("{what}: expected {kind}, got Ok({v:?})")),
    }
}

fn page(b: u8) -> Option<Bytes> {
    Some(Bytes::from(vec![b; crate::num::u32_len(PS)]))
}

fn pw(page_no: u64, b: u8) -> PageWrite {
    PageWrite {
        page_no,
        data: page(b),
    }
}

async fn init(m: &dyn MetaEngine) -> Result<(), String> {
    ok(
        "init_volume",
        m.init_volume(&VolumeConfig::new("vol-test", 2 << 20, "memory://", 1))
            .await,
    )
}

async fn new_file(
    m: &dyn MetaEngine,
    name: &str,
    holder: &str,
    now: i64,
) -> Result<(FileMeta, LeaseRequest), String> {
    let f = ok(
        "create_file",
        m.create_file(MAIN_BRANCH, name, PS, now).await,
    )?;
    let lease = LeaseRequest::new(f.id, holder, now, TTL);
    ok("acquire_lease", m.acquire_lease(&lease).await)?;
    Ok((f, lease))
}

async fn refcount(m: &dyn MetaEngine, key: &str) -> Result<Option<ExtentRecord>, String> {
    let all = ok("list_extents", m.list_extents(None, 10_000).await)?;
    Ok(all.into_iter().find(|r| r.key == key))
}

async fn pack_one(
    m: &dyn MetaEngine,
    lease: &LeaseRequest,
    idx: u64,
    key: Option<&str>,
    now: i64,
) -> Result<(), String> {
    let d = ok(
        "dirty_extent",
        m.dirty_extent(View::Branch(lease.branch), lease.file_id, idx, PPE)
            .await,
    )?;
    if let Some(k) = key {
        ok("pin_extent", m.pin_extent(k, 100, now).await)?;
    }
    let consumed = d.pages.iter().map(|p| (p.page_no, p.seq)).collect();
    let c = PackCommit::new(
        lease.clone(),
        d.layer,
        idx,
        d.current_key,
        key.map(str::to_string),
        consumed,
    );
    ok("commit_pack", m.commit_pack(&c).await)
}

async fn refcounts(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (_, l1) = new_file(m, "one", "w", 5).await?;
    let (_, l2) = new_file(m, "two", "w", 5).await?;
    for l in [&l1, &l2] {
        ok(
            "commit",
            m.commit_writes(&WriteBatch::new(l.clone(), vec![pw(0, 1)], 4096))
                .await,
        )?;
        pack_one(m, l, 0, Some("extent/ext-same"), 6).await?;
    }
    let r = refcount(m, "extent/ext-same").await?.ok_or("no record")?;
    ensure!(
        r.refcount == 2,
        "identical extents of two files: refcount {}",
        r.refcount
    );
    // Rewriting one file's extent releases only its reference (the
    // reference implementation deleted the shared blob here).
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(l1.clone(), vec![pw(0, 2)], 4096))
            .await,
    )?;
    pack_one(m, &l1, 0, Some("extent/ext-new"), 7).await?;
    let r = refcount(m, "extent/ext-same").await?.ok_or("no record")?;
    ensure!(
        r.refcount == 1 && r.state == ExtentState::Live,
        "after rewrite: {r:?}"
    );
    ok(
        "delete two",
        m.delete_file(MAIN_BRANCH, "two", "w", 8).await,
    )?;
    let r = refcount(m, "extent/ext-same").await?.ok_or("no record")?;
    ensure!(
        r.refcount == 0 && r.idle_since_ms == 8,
        "after delete: {r:?}"
    );
    let refs = ok("count_references", m.count_references(None, 100).await)?;
    ensure!(
        refs == vec![("extent/ext-new".to_string(), 1)],
        "references {refs:?}"
    );
    Ok(())
}

async fn gc(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (_, lease) = new_file(m, "f", "w", 0).await?;
    ok("pin", m.pin_extent("extent/ext-a", 10, 1000).await)?;
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(0, 1)], 4096))
            .await,
    )?;
    pack_one(m, &lease, 0, Some("extent/ext-b"), 1000).await?;
    // Within the grace period nothing is claimed; referenced never.
    let c = ok("gc_claim", m.gc_claim(1500, 1000, 10).await)?;
    ensure!(c.is_empty(), "claimed inside the grace period: {c:?}");
    // A pin restarts the idle clock.
    ok("re-pin", m.pin_extent("extent/ext-a", 10, 1900).await)?;
    let c = ok("gc_claim", m.gc_claim(2500, 1000, 10).await)?;
    ensure!(c.is_empty(), "a re-pinned extent was claimed: {c:?}");
    let c = ok("gc_claim", m.gc_claim(3000, 1000, 10).await)?;
    ensure!(c == ["extent/ext-a"], "claim after grace gave {c:?}");
    let again = ok("gc_claim", m.gc_claim(3000, 1000, 10).await)?;
    ensure!(again.is_empty(), "claimed twice: {again:?}");
    err_kind(
        "pin while deleting",
        m.pin_extent("extent/ext-a", 10, 3001).await,
        MetaErrorKind::Conflict,
    )?;
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(1, 1)], 8192))
            .await,
    )?;
    let d = ok(
        "dirty_extent",
        m.dirty_extent(View::MAIN, lease.file_id, 0, PPE).await,
    )?;
    let consumed = d.pages.iter().map(|p| (p.page_no, p.seq)).collect();
    let c = PackCommit::new(
        lease.clone(),
        d.layer,
        0,
        Some("extent/ext-b".into()),
        Some("extent/ext-a".into()),
        consumed,
    );
    err_kind(
        "reference a deleting extent",
        m.commit_pack(&c).await,
        MetaErrorKind::Conflict,
    )?;
    ok("forget", m.gc_forget("extent/ext-a").await)?;
    ok("forget again", m.gc_forget("extent/ext-a").await)?;
    ensure!(
        refcount(m, "extent/ext-a").await?.is_none(),
        "forgotten record still listed"
    );
    ok(
        "forget referenced is a no-op",
        m.gc_forget("extent/ext-b").await,
    )?;
    ensure!(
        refcount(m, "extent/ext-b")
            .await?
            .is_some_and(|r| r.refcount == 1),
        "referenced record lost"
    );
    // Orphans.
    ensure!(
        ok("orphan", m.gc_claim_orphan("extent/ext-orphan", 5).await)?,
        "orphan not claimed"
    );
    ensure!(
        !ok("orphan b", m.gc_claim_orphan("extent/ext-b", 5).await)?,
        "a referenced key was claimed as orphan"
    );
    err_kind(
        "pin claimed orphan",
        m.pin_extent("extent/ext-orphan", 1, 6).await,
        MetaErrorKind::Conflict,
    )?;
    ok("forget orphan", m.gc_forget("extent/ext-orphan").await)?;
    ok(
        "pin after forget",
        m.pin_extent("extent/ext-orphan", 1, 7).await,
    )?;
    Ok(())
}

async fn shrink(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, lease) = new_file(m, "f", "w", 0).await?;
    let pages: Vec<PageWrite> = (0..3).map(|e| pw(e * PPE, e as u8 + 1)).collect();
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(lease.clone(), pages, 3 * PPE * 4096))
            .await,
    )?;
    for (i, k) in ["extent/ext-0", "extent/ext-1", "extent/ext-2"]
        .iter()
        .enumerate()
    {
        pack_one(m, &lease, crate::num::count(i), Some(k), 1).await?;
    }
    ok(
        "dirty tail",
        m.commit_writes(&WriteBatch::new(
            lease.clone(),
            vec![pw(PPE + 5, 9)],
            3 * PPE * 4096,
        ))
        .await,
    )?;
    // Truncate to 1.5 extents: extent 2 goes, dirty pages from PPE + 1 go.
    let size = PPE * 4096 + 4096;
    let b = WriteBatch::new(lease.clone(), vec![], size).shrink(PPE + 1, 2);
    ok("shrink", m.commit_writes(&b).await)?;
    let map = ok(
        "read_map",
        m.read_map(View::MAIN, f.id, 0, 3 * PPE, PPE).await,
    )?;
    ensure!(map.size == size, "size {}", map.size);
    let keys: Vec<&str> = map.extents.iter().map(|(_, k)| k.as_str()).collect();
    ensure!(keys == ["extent/ext-0", "extent/ext-1"], "extents {keys:?}");
    ensure!(map.dirty.is_empty(), "dirty pages past the end survived");
    let r = refcount(m, "extent/ext-2").await?.ok_or("no record")?;
    ensure!(
        r.refcount == 0 && r.idle_since_ms == 0,
        "dropped extent record {r:?}"
    );
    Ok(())
}

async fn listing(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    for i in 0..25 {
        ok(
            "pin",
            m.pin_extent(&format!("extent/ext-{i:02}"), i, 1).await,
        )?;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ok("list_extents", m.list_extents(after.as_deref(), 7).await)?;
        ensure!(page.len() <= 7, "page of {}", page.len());
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.key.clone());
        seen.extend(page.into_iter().map(|r| r.key));
    }
    let want: Vec<String> = (0..25).map(|i| format!("extent/ext-{i:02}")).collect();
    ensure!(seen == want, "paged listing gave {seen:?}");
    Ok(())
}

async fn counters(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let c = |tier: &str, op: &str, calls, bytes| Counter {
        tier: tier.into(),
        op: op.into(),
        calls,
        bytes,
    };
    ensure!(
        ok("counters", m.counters().await)?.is_empty(),
        "a new volume has counters"
    );
    ok(
        "add",
        m.add_counters(&[c("cold", "put", 2, 100), c("cold", "get", 1, 10)])
            .await,
    )?;
    ok(
        "add",
        m.add_counters(&[c("cold", "put", 3, 1000), c("hot", "put", 1, 1)])
            .await,
    )?;
    let got = ok("counters", m.counters().await)?;
    let want = vec![
        c("cold", "get", 1, 10),
        c("cold", "put", 5, 1100),
        c("hot", "put", 1, 1),
    ];
    ensure!(got == want, "counters {got:?}, expected {want:?}");

    ensure!(
        ok("totals", m.extent_totals().await)? == ExtentTotals::default(),
        "a new volume has extents"
    );
    let (_, lease) = new_file(m, "f", "w", 0).await?;
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(0, 1)], 4096))
            .await,
    )?;
    pack_one(m, &lease, 0, Some("extent/ext-a"), 1).await?; // pinned with 100 bytes
    ok("pin", m.pin_extent("extent/ext-b", 50, 1).await)?;
    let t = ok("totals", m.extent_totals().await)?;
    let want = ExtentTotals {
        count: 2,
        bytes: 150,
        referenced_count: 1,
        referenced_bytes: 100,
    };
    ensure!(t == want, "totals {t:?}, expected {want:?}");
    Ok(())
}

async fn settings(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    ensure!(
        ok("setting", m.setting("tier.hot").await)?.is_none(),
        "an unset setting reads as None"
    );
    ok("set_setting", m.set_setting("tier.hot", "meta").await)?;
    ok("set_setting", m.set_setting("tier.hot", "none").await)?;
    ensure!(
        ok("setting", m.setting("tier.hot").await)?.as_deref() == Some("none"),
        "the last value set is read back"
    );
    for name in RESERVED_SETTINGS.iter().copied().chain([""]) {
        err_kind(
            "set_setting(reserved)",
            m.set_setting(name, "x").await,
            MetaErrorKind::InvalidInput,
        )?;
    }
    let config = ok("open_volume", m.open_volume().await)?;
    ensure!(
        config.volume_id == "vol-test",
        "reserved settings are unchanged"
    );
    Ok(())
}

async fn tier_records(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (a, b) = ("extent/ext-a", "extent/ext-b");
    ok(
        "tier_record",
        m.tier_record(
            &[
                TierMark::new(a, "hot", 10, CopyState::Present),
                TierMark::new(a, "cold", 10, CopyState::Queued),
                TierMark::new(b, "cold", 20, CopyState::Queued),
            ],
            100,
        )
        .await,
    )?;
    let due = ok("tier_due", m.tier_due(100, 10).await)?;
    ensure!(due.len() == 2, "two queued copies are due, got {due:?}");
    ensure!(
        due.iter()
            .all(|c| c.state == CopyState::Queued && c.tier == "cold"),
        "only queued copies are due: {due:?}"
    );
    ensure!(
        ok("tier_due", m.tier_due(99, 10).await)?.is_empty(),
        "nothing is due before its next_ms"
    );
    // A failed attempt pushes the entry back and counts it.
    ok(
        "tier_retry",
        m.tier_retry(b, "cold", 500, "cold is down").await,
    )?;
    let due = ok("tier_due", m.tier_due(499, 10).await)?;
    ensure!(
        due.len() == 1 && due[0].key == a,
        "a retried entry waits for its backoff: {due:?}"
    );
    let copies = ok("tier_copies", m.tier_copies(b).await)?;
    ensure!(
        copies.len() == 1
            && copies[0].attempts == 1
            && copies[0].next_ms == 500
            && copies[0].last_error.as_deref() == Some("cold is down"),
        "the retry is recorded: {copies:?}"
    );
    // Queued never downgrades a present copy; present clears queue state.
    ok(
        "tier_record",
        m.tier_record(&[TierMark::new(a, "hot", 10, CopyState::Queued)], 100)
            .await,
    )?;
    ok(
        "tier_record",
        m.tier_record(&[TierMark::new(b, "cold", 20, CopyState::Present)], 600)
            .await,
    )?;
    let copies = ok("tier_copies", m.tier_copies(b).await)?;
    ensure!(
        copies.len() == 1 && copies[0].state == CopyState::Present && copies[0].attempts == 0,
        "a present mark clears the queue entry: {copies:?}"
    );
    let copies = ok("tier_copies", m.tier_copies(a).await)?;
    ensure!(
        copies
            .iter()
            .any(|c| c.tier == "hot" && c.state == CopyState::Present),
        "a queued mark never downgrades a present copy: {copies:?}"
    );
    let totals = ok("tier_totals", m.tier_totals().await)?;
    let want = vec![
        TierTotals {
            tier: "cold".into(),
            count: 1,
            bytes: 20,
            queued: 1,
        },
        TierTotals {
            tier: "hot".into(),
            count: 1,
            bytes: 10,
            queued: 0,
        },
    ];
    ensure!(totals == want, "totals {totals:?}, expected {want:?}");
    let listed = ok("tier_list", m.tier_list("cold", None, 1).await)?;
    ensure!(
        listed.len() == 1 && listed[0].key == a,
        "tier_list pages in key order: {listed:?}"
    );
    let listed = ok("tier_list", m.tier_list("cold", Some(a), 10).await)?;
    ensure!(
        listed.len() == 1 && listed[0].key == b,
        "tier_list continues after a key: {listed:?}"
    );
    ok("tier_forget", m.tier_forget(a, Some("cold")).await)?;
    ensure!(
        ok("tier_copies", m.tier_copies(a).await)?.len() == 1,
        "forgetting one tier keeps the others"
    );
    ok("tier_forget", m.tier_forget(a, None).await)?;
    ok("tier_forget", m.tier_forget(a, None).await)?;
    ensure!(
        ok("tier_copies", m.tier_copies(a).await)?.is_empty(),
        "forgetting every tier removes every record (idempotently)"
    );
    Ok(())
}

async fn access(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let key = "extent/ext-a";
    ensure!(
        ok("extent_access", m.extent_access(key).await)? == AccessStats::default(),
        "an extent never read has no hits"
    );
    ok("touch_extent", m.touch_extent(key, 2, 50).await)?;
    ok("touch_extent", m.touch_extent(key, 1, 40).await)?;
    let stats = ok("extent_access", m.extent_access(key).await)?;
    ensure!(
        stats
            == AccessStats {
                hits: 3,
                last_ms: 50
            },
        "hits add up and recency never goes back: {stats:?}"
    );
    ensure!(
        ok("extent_digests", m.extent_digests(key).await)?.is_none(),
        "no digests until set"
    );
    ok(
        "set_extent_digests",
        m.set_extent_digests(key, b"one").await,
    )?;
    ok(
        "set_extent_digests",
        m.set_extent_digests(key, b"two").await,
    )?;
    ensure!(
        ok("extent_digests", m.extent_digests(key).await)?.as_deref() == Some(&b"two"[..]),
        "the last digests set are read back"
    );
    ok("tier_forget", m.tier_forget(key, None).await)?;
    ensure!(
        ok("extent_access", m.extent_access(key).await)? == AccessStats::default(),
        "forgetting an extent drops its statistics"
    );
    ensure!(
        ok("extent_digests", m.extent_digests(key).await)?.is_none(),
        "forgetting an extent drops its digests"
    );
    Ok(())
}

/// Every dirty page carries a checksum that `check_dirty_pages` verifies
/// (schema version 5); holes are reported as holes, and the listing pages
/// through every row in `(layer, file, page)` order.
async fn dirty_checks(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, w) = new_file(m, "f", "w", 1).await?;
    let (g, wg) = new_file(m, "g", "w", 1).await?;
    let pages = vec![
        pw(0, 1),
        PageWrite {
            page_no: 1,
            data: None,
        },
        pw(2, 3),
    ];
    ok(
        "commit_writes f",
        m.commit_writes(&WriteBatch::new(w.clone(), pages, 3 * 4096))
            .await,
    )?;
    ok(
        "commit_writes g",
        m.commit_writes(&WriteBatch::new(wg.clone(), vec![pw(5, 9)], 6 * 4096))
            .await,
    )?;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let batch = ok("check_dirty_pages", m.check_dirty_pages(after, 2).await)?;
        ensure!(
            batch.len() <= 2,
            "a page of {} rows for limit 2",
            batch.len()
        );
        let Some(last) = batch.last() else { break };
        after = Some(last.cursor());
        all.extend(batch);
    }
    let seen: Vec<(FileId, u64, bool, bool)> = all
        .iter()
        .map(|c| (c.file_id, c.page_no, c.hole, c.intact))
        .collect();
    ensure!(
        seen == vec![
            (f.id, 0, false, true),
            (f.id, 1, true, true),
            (f.id, 2, false, true),
            (g.id, 5, false, true),
        ],
        "dirty rows {seen:?}"
    );
    // Packing removes what it consumed from the check too.
    pack_one(m, &w, 0, Some("extent/f0"), 2).await?;
    let left = ok("check_dirty_pages", m.check_dirty_pages(None, 100).await)?;
    ensure!(
        left.len() == 1 && left[0].file_id == g.id,
        "after packing f: {left:?}"
    );
    Ok(())
}

/// The engine-specific half of the checksum check: writes dirty pages, lets
/// `flip` damage page 1 of the file in the engine's own database (one bit
/// of its data, or its page number, or its checksum), then requires every
/// read of that page to fail with `Corrupt` naming it, reads of the other
/// pages to succeed, and `check_dirty_pages` to report exactly that row.
pub async fn damaged_dirty_page_is_refused<F, Fut>(m: &dyn MetaEngine, flip: F) -> CheckResult
where
    F: FnOnce(FileId, u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    init(m).await?;
    let (f, w) = new_file(m, "f", "w", 1).await?;
    ok(
        "commit_writes",
        m.commit_writes(&WriteBatch::new(
            w.clone(),
            vec![pw(0, 1), pw(1, 2), pw(3, 4)],
            4 * 4096,
        ))
        .await,
    )?;
    ok("read before", m.read_map(View::MAIN, f.id, 0, 4, PPE).await)?;
    flip(f.id, 1).await;
    let e = match m.read_map(View::MAIN, f.id, 0, 4, PPE).await {
        Ok(map) => {
            let got: Vec<(u64, Option<u8>)> = map
                .dirty
                .iter()
                .map(|p| (p.page_no, p.data.as_ref().map(|d| d[0])))
                .collect();
            return Err(format!("a damaged dirty page was read back: {got:?}"));
        }
        Err(e) => e,
    };
    ensure!(
        e.kind() == MetaErrorKind::Corrupt,
        "read of a damaged page: {e}"
    );
    ensure!(
        // A flipped page number names where the row now claims to be.
        e.message().contains(&format!("file #{}", f.id)) && e.message().contains("dirty page "),
        "the error names neither file nor page: {e}"
    );
    let only0 = ok("read page 0", m.read_map(View::MAIN, f.id, 0, 1, PPE).await)?;
    ensure!(
        only0.dirty.len() == 1 && only0.dirty[0].data == page(1),
        "page 0 {only0:?}"
    );
    err_kind(
        "packing a damaged page",
        m.dirty_extent(View::MAIN, f.id, 0, PPE).await,
        MetaErrorKind::Corrupt,
    )?;
    let checks = ok("check_dirty_pages", m.check_dirty_pages(None, 100).await)?;
    let bad: Vec<u64> = checks
        .iter()
        .filter(|c| !c.intact)
        .map(|c| c.page_no)
        .collect();
    ensure!(
        bad.len() == 1 && checks.len() == 3,
        "check_dirty_pages found {bad:?} of {checks:?}"
    );
    Ok(())
}

/// Everything [`out_of_range`] expects to stay the same.
#[derive(Debug, PartialEq)]
struct Snapshot {
    file: FileMeta,
    map: ReadMap,
    dirty: DirtyExtent,
    counters: Vec<Counter>,
    totals: ExtentTotals,
    copies: Vec<TierCopy>,
}

async fn snapshot(m: &dyn MetaEngine, f: &FileMeta) -> Result<Snapshot, String> {
    Ok(Snapshot {
        file: ok("file", m.file(View::MAIN, &f.name).await)?,
        map: ok(
            "read_map",
            m.read_map(View::MAIN, f.id, 0, 2 * PPE, PPE).await,
        )?,
        dirty: ok(
            "dirty_extent",
            m.dirty_extent(View::MAIN, f.id, 0, PPE).await,
        )?,
        counters: ok("counters", m.counters().await)?,
        totals: ok("extent_totals", m.extent_totals().await)?,
        copies: ok("tier_copies", m.tier_copies("extent/ext-big").await)?,
    })
}

/// Sizes, offsets, page numbers, extent indexes and counters above what a
/// SQL integer holds (`i64::MAX`) are `InvalidInput` on every engine, never
/// wrapped to a negative number, and the refused call changes nothing.
/// Cut points and query bounds beyond every stored row select nothing.
async fn out_of_range(m: &dyn MetaEngine) -> CheckResult {
    init(m).await?;
    let (f, lease) = new_file(m, "f", "w", 5).await?;
    ok(
        "commit",
        m.commit_writes(&WriteBatch::new(
            lease.clone(),
            vec![pw(0, 1), pw(1, 2), pw(PPE, 3)],
            (PPE + 1) * u64::from(PS),
        ))
        .await,
    )?;
    pack_one(m, &lease, 1, Some("extent/ext-a"), 6).await?;
    ok(
        "add_counters",
        m.add_counters(&[Counter {
            tier: "cold".into(),
            op: "put".into(),
            calls: 1,
            bytes: 10,
        }])
        .await,
    )?;
    let key = "extent/ext-big";
    ok("pin_extent", m.pin_extent(key, 100, 7).await)?;
    let before = snapshot(m, &f).await?;
    let size = before.file.size;
    let invalid = MetaErrorKind::InvalidInput;
    for big in [u64::MAX, crate::num::SQL_MAX + 1] {
        err_kind(
            &format!("commit_writes with size {big}"),
            m.commit_writes(&WriteBatch::new(lease.clone(), vec![pw(0, 9)], big))
                .await,
            invalid,
        )?;
        let mut truncate = WriteBatch::new(lease.clone(), vec![], big);
        truncate.drop_pages_from = Some(0);
        truncate.drop_extents_from = Some(0);
        err_kind(
            &format!("truncate with size {big}"),
            m.commit_writes(&truncate).await,
            invalid,
        )?;
        err_kind(
            &format!("commit_writes of page {big}"),
            m.commit_writes(&WriteBatch::new(
                lease.clone(),
                vec![pw(0, 9), pw(big, 9)],
                size,
            ))
            .await,
            invalid,
        )?;
        err_kind(
            &format!("pin_extent of {big} bytes"),
            m.pin_extent("extent/ext-huge", big, 7).await,
            invalid,
        )?;
        let pack = PackCommit::new(
            lease.clone(),
            before.dirty.layer,
            big,
            None,
            Some(key.to_string()),
            vec![],
        );
        err_kind(
            &format!("commit_pack of extent {big}"),
            m.commit_pack(&pack).await,
            invalid,
        )?;
        for (calls, bytes) in [(big, 1), (1, big)] {
            let deltas = [
                Counter {
                    tier: "cold".into(),
                    op: "put".into(),
                    calls: 1,
                    bytes: 1,
                },
                Counter {
                    tier: "hot".into(),
                    op: "get".into(),
                    calls,
                    bytes,
                },
            ];
            err_kind(
                &format!("add_counters of {calls} calls, {bytes} bytes"),
                m.add_counters(&deltas).await,
                invalid,
            )?;
        }
        err_kind(
            &format!("tier_record of {big} bytes"),
            m.tier_record(&[TierMark::new(key, "cold", big, CopyState::Queued)], 8)
                .await,
            invalid,
        )?;
        let after = snapshot(m, &f).await?;
        ensure!(
            after == before,
            "refused calls with {big} changed the volume: {after:#?}, expected {before:#?}"
        );
    }

    // Bounds beyond every stored row select nothing, on every engine.
    let map = ok(
        "read_map far away",
        m.read_map(View::MAIN, f.id, crate::num::SQL_MAX + 1, 10, PPE)
            .await,
    )?;
    ensure!(
        map.dirty.is_empty() && map.extents.is_empty(),
        "read_map beyond i64::MAX found {map:?}"
    );
    let mut cut = WriteBatch::new(lease.clone(), vec![], size);
    cut.drop_pages_from = Some(u64::MAX);
    cut.drop_extents_from = Some(u64::MAX);
    ok("cut at u64::MAX", m.commit_writes(&cut).await)?;
    let after = snapshot(m, &f).await?;
    ensure!(
        after.map == before.map && after.dirty == before.dirty && after.totals == before.totals,
        "a cut at u64::MAX dropped pages or extents: {after:#?}, expected {before:#?}"
    );
    Ok(())
}

/// The engine-specific half of the range check on reads: lets `damage` run
/// `UPDATE fsx_files SET <set> WHERE id = <file>` in the engine's own
/// database, for each `set` of out-of-range values no engine writes (a
/// negative size, a page size above `u32::MAX`), and requires reading the
/// file to fail with `Corrupt` naming the quantity, never a wrapped number.
pub async fn out_of_range_columns_are_corrupt<F, Fut>(m: &dyn MetaEngine, damage: F) -> CheckResult
where
    F: Fn(FileId, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    init(m).await?;
    for (set, named) in [
        ("size = -1", "file size -1"),
        ("page_size = 4294967296", "page size 4294967296"),
    ] {
        let name = format!("f-{}", set.len());
        let (f, _) = new_file(m, &name, "w", 1).await?;
        ok("file before", m.file(View::MAIN, &name).await)?;
        damage(f.id, set).await;
        match m.file(View::MAIN, &name).await {
            Err(e) if e.kind() == MetaErrorKind::Corrupt && e.message().contains(named) => {}
            Err(e) => {
                return Err(format!(
                    "after {set}: expected Corrupt naming {named:?}, got {e}"
                ));
            }
            Ok(f) => return Err(format!("after {set}: the file was read back as {f:?}")),
        }
    }
    Ok(())
}
