//! Named failpoints: places in the write, pack, GC and replication paths
//! where a test can make the engine fail or die, on purpose, at a chosen
//! hit.
//!
//! # Design
//!
//! The engine asks its injected [`Environment`] at each point
//! ([`Environment::failpoint`]); the default answer is
//! [`FailAction::Continue`], so a normal environment ([`crate::SystemEnv`],
//! [`crate::ManualEnv`]) never fails anywhere and the cost is one virtual
//! call. There is no global registry: the plan travels with the
//! environment, so two volumes in one process (a test and its reopened
//! copy) have independent plans, and the core stays free of statics.
//!
//! [`SeededFaults`] wraps another environment and answers from a
//! [`FaultPlan`]: exact rules (`upload=3:crash` — crash at the third hit of
//! `upload`), one seeded crash (`seed=N`), or seeded random errors
//! (`errors=SEED/ONE_IN`). Hits are counted per point and per
//! `SeededFaults`, so a plan reproduces as long as the workload does.
//!
//! # Where the points are
//!
//! Each point fires *before* the step it names, so an injected error is the
//! step failing and an injected crash leaves the state just before it:
//!
//! | point | before | a crash leaves |
//! |---|---|---|
//! | `sync-before` | a sync's metadata transaction | the writes unsynced (not acknowledged) |
//! | `sync-after` | a sync returning, its transaction committed | the writes durable but not acknowledged |
//! | `pin` | the packer pins a new extent's record | dirty pages only |
//! | `upload` | the packer puts the extent object | a pinned record without its object |
//! | `pack-commit` | the pack's metadata transaction (map swap, refcounts) | an unreferenced uploaded extent |
//! | `gc-claim` | GC claims a batch of unreferenced records | nothing claimed |
//! | `gc-delete` | GC deletes a claimed object from the store | a claimed record, object present |
//! | `gc-forget` | GC forgets a record whose object it deleted | a claimed record, object gone |
//! | `replicate` | a queued copy is written to its tier | the copy still queued |
//! | `replicate-record` | a written copy is recorded present | the copy written but still queued |
//!
//! # Actions
//!
//! - [`FailAction::Error`]: the operation returns an `Unavailable` error
//!   that names the point; nothing panics, and the volume stays consistent
//!   (every point is a place where a real I/O error can happen).
//! - [`FailAction::Crash`]: the process aborts on the spot (no destructors,
//!   no flushing: as close to a SIGKILL at that instant as a process can
//!   do to itself). Only for the child process of a crash test.
//!
//! # Not in production by accident
//!
//! Nothing reads [`FAILPOINTS_VAR`] on its own: a program fails points only
//! if it builds a [`SeededFaults`] — the crash tests' child processes do,
//! from that variable, and so does [`from_process_env`] for a debugging
//! build that opts in. The variable's name says what it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::env::Environment;
use crate::error::{Error, ErrorKind, Result};

/// The environment variable a crash test's child reads its plan from
/// (syntax in [`FaultPlan::parse`]).
pub const FAILPOINTS_VAR: &str = "FSX_FAILPOINTS";

/// A named place where the engine asks whether to fail. See the module
/// docs for where each one is and what a crash there leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Failpoint {
    /// Before a sync's metadata transaction.
    SyncBefore,
    /// After a sync's metadata transaction, before it returns.
    SyncAfter,
    /// Before the packer pins a new extent's record.
    Pin,
    /// Before the packer puts the extent object into the store.
    Upload,
    /// Before the pack's metadata transaction.
    PackCommit,
    /// Before GC claims unreferenced records.
    GcClaim,
    /// Before GC deletes a claimed object.
    GcDelete,
    /// Before GC forgets a record whose object it deleted.
    GcForget,
    /// Before a queued tier copy is written.
    Replicate,
    /// Before a written tier copy is recorded present.
    ReplicateRecord,
}

impl Failpoint {
    /// Every point, in the order of the module docs' table.
    pub const ALL: [Failpoint; 10] = [
        Self::SyncBefore,
        Self::SyncAfter,
        Self::Pin,
        Self::Upload,
        Self::PackCommit,
        Self::GcClaim,
        Self::GcDelete,
        Self::GcForget,
        Self::Replicate,
        Self::ReplicateRecord,
    ];

    /// The point's name in plans and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::SyncBefore => "sync-before",
            Self::SyncAfter => "sync-after",
            Self::Pin => "pin",
            Self::Upload => "upload",
            Self::PackCommit => "pack-commit",
            Self::GcClaim => "gc-claim",
            Self::GcDelete => "gc-delete",
            Self::GcForget => "gc-forget",
            Self::Replicate => "replicate",
            Self::ReplicateRecord => "replicate-record",
        }
    }

    /// The point called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&p| p == self).unwrap_or(0)
    }
}

impl std::fmt::Display for Failpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the engine does at a failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailAction {
    /// Go on as normal.
    Continue,
    /// Fail the operation with an `Unavailable` error naming the point.
    Error,
    /// Abort the process on the spot.
    Crash,
}

impl FailAction {
    fn name(self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::Error => "error",
            Self::Crash => "crash",
        }
    }
}

/// Asks `env` about `point` and acts: `Ok` to go on, an error to fail, or
/// no return at all for a crash.
pub(crate) fn check(env: &dyn Environment, point: Failpoint) -> Result<()> {
    match env.failpoint(point) {
        FailAction::Continue => Ok(()),
        FailAction::Error => Err(Error::new(ErrorKind::Unavailable, injected(point))),
        FailAction::Crash => crash(point),
    }
}

/// [`check`] for code that returns the store's error type.
pub(crate) fn check_store(env: &dyn Environment, point: Failpoint) -> fsx_store::Result<()> {
    match env.failpoint(point) {
        FailAction::Continue => Ok(()),
        FailAction::Error => Err(fsx_store::StoreError::unavailable(injected(point))),
        FailAction::Crash => crash(point),
    }
}

fn injected(point: Failpoint) -> String {
    format!(
        "injected fault at failpoint `{point}` ({FAILPOINTS_VAR}); the operation did not complete, retry it"
    )
}

fn crash(point: Failpoint) -> ! {
    tracing::error!(failpoint = %point, "injected crash: aborting the process");
    // Abort, not exit: no destructor, flush or lease release may run, just
    // as under a SIGKILL at this instant.
    std::process::abort()
}

/// A plan that [`FaultPlan::parse`] refused.
#[derive(Debug, thiserror::Error)]
#[error("bad failpoint plan {spec:?}: {reason}")]
pub struct FaultPlanError {
    spec: String,
    reason: String,
}

/// One exact rule: `action` at hit number `hit` (1-based) of `point`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    point: Failpoint,
    hit: u64,
    action: FailAction,
}

/// Which hits of which points fail, and how. Built by [`FaultPlan::parse`]
/// or the constructors; [`std::fmt::Display`] prints it back in the
/// syntax `parse` reads, so a failing run can be repeated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    rules: Vec<Rule>,
    /// `(seed, one_in)`: each hit of each point fails with probability
    /// `1 / one_in`, decided by a hash of the seed, the point and the hit.
    errors: Option<(u64, u64)>,
}

/// The highest hit a `seed=N` plan picks: low enough that a workload of a
/// few operations reaches it.
const SEEDED_MAX_HIT: u64 = 8;

impl FaultPlan {
    /// A plan that never fails.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a rule: `action` at hit number `hit` (1-based) of `point`.
    pub fn at(mut self, point: Failpoint, hit: u64, action: FailAction) -> Self {
        self.rules.push(Rule { point, hit, action });
        self
    }

    /// One crash at a point of `points` and a hit in `1..=max_hit`, both
    /// chosen by `seed`.
    pub fn seeded_crash(seed: u64, points: &[Failpoint], max_hit: u64) -> Self {
        let points = if points.is_empty() {
            &Failpoint::ALL[..]
        } else {
            points
        };
        let r = mix(seed);
        let point = points[(r % points.len() as u64) as usize];
        let hit = 1 + mix(r) % max_hit.max(1);
        Self::none().at(point, hit, FailAction::Crash)
    }

    /// Every hit of every point fails with probability `1 / one_in`,
    /// decided by `seed`.
    pub fn random_errors(mut self, seed: u64, one_in: u64) -> Self {
        self.errors = Some((seed, one_in.max(1)));
        self
    }

    /// Reads a plan: items separated by commas, each one of
    ///
    /// - `NAME=HIT:ACTION` — `ACTION` (`error` or `crash`) at hit number
    ///   `HIT` (from 1) of the point `NAME` (e.g. `upload=3:crash`);
    /// - `seed=N` — one crash at a point and a hit in 1..=8 chosen by `N`
    ///   (a point the workload never reaches that often never fires);
    /// - `errors=SEED/ONE_IN` — every hit of every point fails with an
    ///   error with probability 1/`ONE_IN`, decided by `SEED`.
    pub fn parse(spec: &str) -> std::result::Result<Self, FaultPlanError> {
        let bad = |reason: String| FaultPlanError {
            spec: spec.to_string(),
            reason,
        };
        let number = |s: &str, what: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("{what} {s:?} is not a whole number")))
        };
        let mut plan = Self::none();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = item.split_once('=').ok_or_else(|| {
                bad(format!(
                    "{item:?} is not NAME=HIT:ACTION, seed=N or errors=SEED/ONE_IN"
                ))
            })?;
            match name.trim() {
                "seed" => {
                    let seeded = Self::seeded_crash(
                        number(value, "the seed")?,
                        &Failpoint::ALL,
                        SEEDED_MAX_HIT,
                    );
                    plan.rules.extend(seeded.rules);
                }
                "errors" => {
                    let (seed, one_in) = value
                        .split_once('/')
                        .ok_or_else(|| bad(format!("errors={value:?} is not SEED/ONE_IN")))?;
                    let one_in = number(one_in, "ONE_IN")?;
                    if one_in == 0 {
                        return Err(bad("errors=SEED/ONE_IN needs ONE_IN of at least 1".into()));
                    }
                    plan = plan.random_errors(number(seed, "the seed")?, one_in);
                }
                point => {
                    let point = Failpoint::from_name(point).ok_or_else(|| {
                        let names: Vec<&str> = Failpoint::ALL.iter().map(|p| p.name()).collect();
                        bad(format!(
                            "no failpoint {point:?}; the points are {}",
                            names.join(", ")
                        ))
                    })?;
                    let (hit, action) = value
                        .split_once(':')
                        .ok_or_else(|| bad(format!("{item:?} is not NAME=HIT:ACTION")))?;
                    let hit = number(hit, "the hit")?;
                    if hit == 0 {
                        return Err(bad("hits count from 1".into()));
                    }
                    let action = match action.trim() {
                        "error" => FailAction::Error,
                        "crash" => FailAction::Crash,
                        other => {
                            return Err(bad(format!(
                                "no action {other:?}; the actions are error and crash"
                            )));
                        }
                    };
                    plan = plan.at(point, hit, action);
                }
            }
        }
        Ok(plan)
    }

    /// What the plan says about hit number `hit` of `point`.
    fn action(&self, point: Failpoint, hit: u64) -> FailAction {
        if let Some(rule) = self.rules.iter().find(|r| r.point == point && r.hit == hit) {
            return rule.action;
        }
        match self.errors {
            Some((seed, one_in))
                if mix(seed ^ ((point.index() as u64 + 1) << 56) ^ hit).is_multiple_of(one_in) =>
            {
                FailAction::Error
            }
            _ => FailAction::Continue,
        }
    }
}

impl std::fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<String> = self
            .rules
            .iter()
            .map(|r| format!("{}={}:{}", r.point, r.hit, r.action.name()))
            .collect();
        if let Some((seed, one_in)) = self.errors {
            items.push(format!("errors={seed}/{one_in}"));
        }
        f.write_str(&items.join(","))
    }
}

/// SplitMix64's finaliser: a well-spread hash of one number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// An environment that fails failpoints by a [`FaultPlan`] and otherwise
/// is `inner` (its clock, holder ids and liveness).
#[derive(Debug)]
pub struct SeededFaults {
    inner: Arc<dyn Environment>,
    plan: FaultPlan,
    hits: [AtomicU64; Failpoint::ALL.len()],
    fired: [AtomicU64; Failpoint::ALL.len()],
    armed: AtomicBool,
}

impl SeededFaults {
    /// `inner`, failing by `plan`.
    pub fn new(inner: Arc<dyn Environment>, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            hits: Default::default(),
            fired: Default::default(),
            armed: AtomicBool::new(true),
        }
    }

    /// The plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// How often `point` was reached while armed.
    pub fn hits(&self, point: Failpoint) -> u64 {
        self.hits[point.index()].load(Ordering::Relaxed)
    }

    /// How many errors were injected (a crash never returns to count).
    pub fn fired(&self) -> u64 {
        self.fired.iter().map(|f| f.load(Ordering::Relaxed)).sum()
    }

    /// How many errors were injected at `point`.
    pub fn fired_at(&self, point: Failpoint) -> u64 {
        self.fired[point.index()].load(Ordering::Relaxed)
    }

    /// Stops (`false`) or resumes (`true`) failing and counting hits: a
    /// test disarms to check that later operations work.
    pub fn arm(&self, yes: bool) {
        self.armed.store(yes, Ordering::Relaxed);
    }
}

impl Environment for SeededFaults {
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }

    fn new_holder_id(&self) -> String {
        self.inner.new_holder_id()
    }

    fn holder_is_dead(&self, holder: &str) -> bool {
        self.inner.holder_is_dead(holder)
    }

    fn failpoint(&self, point: Failpoint) -> FailAction {
        if !self.armed.load(Ordering::Relaxed) {
            return FailAction::Continue;
        }
        let hit = self.hits[point.index()].fetch_add(1, Ordering::Relaxed) + 1;
        let action = self.plan.action(point, hit);
        if action != FailAction::Continue {
            tracing::warn!(failpoint = %point, hit, action = action.name(), "failpoint fires");
            if action == FailAction::Error {
                self.fired[point.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
        action
    }
}

/// `inner` failing by the plan in [`FAILPOINTS_VAR`] when that variable is
/// set (and not empty), else `inner` itself. For test children and
/// debugging builds that opt in; a bad plan is an error, never ignored.
pub fn from_process_env(
    inner: Arc<dyn Environment>,
) -> std::result::Result<Arc<dyn Environment>, FaultPlanError> {
    match std::env::var(FAILPOINTS_VAR) {
        Ok(spec) if !spec.trim().is_empty() => {
            Ok(Arc::new(SeededFaults::new(inner, FaultPlan::parse(&spec)?)))
        }
        _ => Ok(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualEnv;

    #[test]
    fn plans_read_back_what_they_print() {
        let plan = FaultPlan::parse("upload=3:crash, gc-delete=1:error,errors=7/5").unwrap();
        assert_eq!(
            plan.to_string(),
            "upload=3:crash,gc-delete=1:error,errors=7/5"
        );
        assert_eq!(FaultPlan::parse(&plan.to_string()).unwrap(), plan);
        assert_eq!(FaultPlan::parse("").unwrap(), FaultPlan::none());
    }

    #[test]
    fn bad_plans_say_what_is_wrong() {
        for (spec, says) in [
            ("uplod=1:crash", "no failpoint \"uplod\""),
            ("upload=0:crash", "from 1"),
            ("upload=x:crash", "not a whole number"),
            ("upload=1:explode", "no action"),
            ("upload", "not NAME=HIT:ACTION"),
            ("errors=1/0", "at least 1"),
        ] {
            let e = FaultPlan::parse(spec).unwrap_err().to_string();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn a_rule_fires_at_its_hit_only() {
        let env = SeededFaults::new(
            Arc::new(ManualEnv::new(0)),
            FaultPlan::none().at(Failpoint::Upload, 3, FailAction::Error),
        );
        let got: Vec<FailAction> = (0..5).map(|_| env.failpoint(Failpoint::Upload)).collect();
        use FailAction::{Continue as C, Error as E};
        assert_eq!(got, [C, C, E, C, C]);
        assert_eq!(env.failpoint(Failpoint::Pin), C);
        assert_eq!((env.hits(Failpoint::Upload), env.fired()), (5, 1));
        env.arm(false);
        assert_eq!(env.failpoint(Failpoint::Upload), C);
        assert_eq!(env.hits(Failpoint::Upload), 5);
    }

    #[test]
    fn seeds_reproduce_and_spread() {
        let a = FaultPlan::seeded_crash(42, &Failpoint::ALL, 8);
        assert_eq!(a, FaultPlan::seeded_crash(42, &Failpoint::ALL, 8));
        let points: std::collections::BTreeSet<String> = (0..200)
            .map(|s| FaultPlan::seeded_crash(s, &Failpoint::ALL, 8).to_string())
            .map(|p| p.split('=').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(points.len(), Failpoint::ALL.len(), "{points:?}");

        let errors = |seed| {
            let env = SeededFaults::new(
                Arc::new(ManualEnv::new(0)),
                FaultPlan::none().random_errors(seed, 4),
            );
            (0..400)
                .map(|i| env.failpoint(Failpoint::ALL[i % 10]) == FailAction::Error)
                .collect::<Vec<_>>()
        };
        assert_eq!(errors(9), errors(9));
        let n = errors(9).iter().filter(|&&e| e).count();
        assert!((60..140).contains(&n), "{n} of 400 failed at 1 in 4");
    }

    #[test]
    fn an_injected_error_names_its_point() {
        let env = SeededFaults::new(
            Arc::new(ManualEnv::new(0)),
            FaultPlan::none().at(Failpoint::GcForget, 1, FailAction::Error),
        );
        let e = check(&env, Failpoint::GcForget).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains("`gc-forget`"), "{e}");
        assert!(check(&env, Failpoint::GcForget).is_ok());
        assert!(check(&ManualEnv::new(0), Failpoint::GcForget).is_ok());
    }
}
