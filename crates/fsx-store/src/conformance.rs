//! The conformance suite: the one definition of "this backend works".
//!
//! Every backend's tests run [`run_all`] against the real server and assert
//! that nothing failed; `fsx store check URL` runs the same [`checks`]
//! against whatever store a user points it at and prints one line per
//! check. The suite is written once, here, and never copied.
//!
//! Each [`Check`] is named, runs against an `Arc<dyn ExtentBackend>` and
//! writes only keys under `<caller prefix><check name>/`. After the check's
//! body, the runner deletes whatever is left under that prefix and fails the
//! check if anything survives the cleanup, so a run leaves the store as it
//! found it (pass a fresh prefix per run: concurrent runs under one prefix
//! would see each other's keys).
//!
//! Checks read the backend's [`Capabilities`](crate::Capabilities): sizes
//! above `max_object_size` must be *rejected* with `InvalidInput`; a
//! `per_key_write_interval` makes re-puts wait for the `retry_after` hint
//! (through the injected [`Sleeper`]); an `Unsupported` `get_range` is
//! accepted only from a backend that declares no range support; an
//! `Unsupported` `put_if_absent` (the caches, which never own a store) is
//! reported as a skip, so `fsx store check` shows whether a store can hold
//! a volume's marker.
//!
//! The suite is runtime-free: concurrency uses `join_all`, waiting goes
//! through the caller's sleeper.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::backend::{BoxFuture, ExtentBackend, ExtentBackendExt, ListRequest, MAX_LIST_LIMIT};
use crate::error::{ErrorKind, StoreError};
use crate::inject::{Sleeper, SplitMix64};
use crate::key::{MAX_KEY_LEN, ObjectKey, validate_prefix};

/// What a check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend behaved as the contract says; the note says what was shown.
    Passed(String),
    /// The check does not apply to this backend (e.g. a declared limit).
    Skipped(String),
    /// The backend broke the contract; the message says how.
    Failed(String),
}

impl Outcome {
    /// Whether this outcome fails the suite.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }
}

/// The result of one check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The check's [`Check::name`].
    pub name: &'static str,
    /// Its outcome.
    pub outcome: Outcome,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Passed(note) => write!(f, "PASS {}: {note}", self.name),
            Outcome::Skipped(why) => write!(f, "SKIP {}: {why}", self.name),
            Outcome::Failed(why) => write!(f, "FAIL {}: {why}", self.name),
        }
    }
}

/// What a check runs against.
#[derive(Debug, Clone)]
pub struct CheckContext {
    backend: Arc<dyn ExtentBackend>,
    prefix: String,
    sleeper: Arc<dyn Sleeper>,
}

impl CheckContext {
    /// Run checks against `backend` under `prefix` (non-empty, ending with
    /// `/`, a valid key prefix), waiting for rate limits through `sleeper`.
    pub fn new(
        backend: Arc<dyn ExtentBackend>,
        prefix: &str,
        sleeper: Arc<dyn Sleeper>,
    ) -> crate::Result<Self> {
        validate_prefix(prefix)?;
        if !prefix.ends_with('/') {
            return Err(StoreError::invalid(format!(
                "conformance prefix {prefix:?} must end with '/'"
            )));
        }
        Ok(Self {
            backend,
            prefix: prefix.to_owned(),
            sleeper,
        })
    }
}

type CheckResult = Result<Outcome, String>;
type CheckFn = for<'a> fn(&'a Scope) -> BoxFuture<'a, CheckResult>;

/// One named conformance check.
pub struct Check {
    /// Stable name, used in key prefixes and in reports.
    pub name: &'static str,
    /// One line saying what the check shows.
    pub summary: &'static str,
    body: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Everything a check body needs: the backend and its own key prefix.
struct Scope {
    backend: Arc<dyn ExtentBackend>,
    prefix: String,
    sleeper: Arc<dyn Sleeper>,
}

impl Scope {
    fn key(&self, name: &str) -> Result<ObjectKey, String> {
        ObjectKey::new(&format!("{}{name}", self.prefix))
            .map_err(|e| format!("building key {name:?}: {e}"))
    }

    /// Put, waiting out a per-key write-rate limit (bounded).
    async fn put_patiently(&self, key: &ObjectKey, value: Bytes) -> Result<(), String> {
        let interval = self
            .backend
            .capabilities()
            .per_key_write_interval
            .unwrap_or_default();
        let mut waited = Duration::ZERO;
        let budget = interval * 4 + Duration::from_secs(5);
        loop {
            match self.backend.put(key, value.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Unavailable && waited < budget => {
                    let wait = e.retry_after().unwrap_or(Duration::from_millis(100))
                        + Duration::from_millis(20);
                    waited += wait;
                    self.sleeper.sleep(wait).await;
                }
                Err(e) => return Err(format!("put {key} ({} bytes): {e}", value.len())),
            }
        }
    }

    async fn put(&self, key: &ObjectKey, value: Bytes) -> Result<(), String> {
        let len = value.len();
        self.backend
            .put(key, value)
            .await
            .map_err(|e| format!("put {key} ({len} bytes): {e}"))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, String> {
        self.backend
            .get(key)
            .await
            .map_err(|e| format!("get {key}: {e}"))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), String> {
        self.backend
            .delete(key)
            .await
            .map_err(|e| format!("delete {key}: {e}"))
    }

    async fn expect_missing(&self, key: &ObjectKey) -> Result<(), String> {
        expect_kind(
            self.backend.get(key).await,
            ErrorKind::NotFound,
            &format!("get of missing {key}"),
        )?;
        expect_kind(
            self.backend.head(key).await,
            ErrorKind::NotFound,
            &format!("head of missing {key}"),
        )?;
        Ok(())
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn expect_kind<T: fmt::Debug>(
    result: crate::Result<T>,
    kind: ErrorKind,
    what: &str,
) -> Result<(), String> {
    match result {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(format!("{what}: expected {kind}, got error {e}")),
        Ok(v) => Err(format!(
            "{what}: expected {kind}, got Ok({})",
            short_debug(&v)
        )),
    }
}

fn short_debug<T: fmt::Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary(80)])
    } else {
        s
    }
}

/// Deterministic, incompressible test bytes.
fn pattern(len: usize, seed: u64) -> Bytes {
    let rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn describe_mismatch(what: &str, got: &[u8], want: &[u8]) -> String {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    match first {
        Some(i) => format!(
            "{what}: {} bytes back, {} expected, first difference at byte {i}",
            got.len(),
            want.len()
        ),
        None => format!("{what}: {} bytes back, {} expected", got.len(), want.len()),
    }
}

fn same(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(describe_mismatch(what, got, want))
    }
}

/// Every check, in the order `fsx store check` runs them.
pub fn checks() -> &'static [Check] {
    macro_rules! check {
        ($name:literal, $summary:literal, $f:ident) => {
            Check {
                name: $name,
                summary: $summary,
                body: |s| Box::pin($f(s)),
            }
        };
    }
    static CHECKS: &[Check] = &[
        check!(
            "invalid_keys",
            "bad keys and prefixes are rejected as InvalidInput before any I/O",
            invalid_keys
        ),
        check!(
            "missing_keys",
            "get/get_range/head of a missing key are NotFound; delete is Ok",
            missing_keys
        ),
        check!("roundtrip_0b", "a 0-byte object round-trips", roundtrip_0b),
        check!("roundtrip_1b", "a 1-byte object round-trips", roundtrip_1b),
        check!(
            "roundtrip_4kib",
            "a 4 KiB object round-trips",
            roundtrip_4kib
        ),
        check!(
            "roundtrip_2mib",
            "a 2 MiB object round-trips (or is rejected above the limit)",
            roundtrip_2mib
        ),
        check!(
            "roundtrip_16mib",
            "a 16 MiB object round-trips (or is rejected above the limit)",
            roundtrip_16mib
        ),
        check!(
            "too_large",
            "a put one byte above max_object_size is rejected and stores nothing",
            too_large
        ),
        check!(
            "overwrite",
            "a re-put replaces the object, longer or shorter",
            overwrite
        ),
        check!(
            "delete_idempotent",
            "delete removes; deleting again is Ok",
            delete_idempotent
        ),
        check!(
            "range_reads",
            "range edge cases: at/past end, zero length, past end, inverted",
            range_reads
        ),
        check!(
            "list_pages",
            "25 keys in pages of 7: sorted, complete, no duplicates, prefix-exact",
            list_pages
        ),
        check!(
            "key_charset",
            "keys with spaces, Unicode, punctuation and 512 bytes round-trip and list",
            key_charset
        ),
        check!(
            "concurrent_distinct_keys",
            "16 concurrent puts then gets of distinct keys",
            concurrent_distinct_keys
        ),
        check!(
            "concurrent_same_key",
            "concurrent puts and gets of one key never tear",
            concurrent_same_key
        ),
        check!(
            "put_if_absent",
            "put_if_absent creates an absent key once and never overwrites",
            put_if_absent
        ),
        check!(
            "concurrent_put_if_absent",
            "of 8 concurrent put_if_absent calls for one key exactly one wins",
            concurrent_put_if_absent
        ),
    ];
    CHECKS
}

/// Run one check, then clean up its keys.
pub async fn run_check(check: &Check, ctx: &CheckContext) -> CheckReport {
    let scope = Scope {
        backend: ctx.backend.clone(),
        prefix: format!("{}{}/", ctx.prefix, check.name),
        sleeper: ctx.sleeper.clone(),
    };
    let outcome = match (check.body)(&scope).await {
        Ok(outcome) => outcome,
        Err(message) => Outcome::Failed(message),
    };
    let outcome = match cleanup(&scope).await {
        Ok(()) => outcome,
        Err(message) if !outcome.is_failure() => Outcome::Failed(message),
        Err(message) => match outcome {
            Outcome::Failed(first) => {
                Outcome::Failed(format!("{first}; and cleanup failed: {message}"))
            }
            other => other,
        },
    };
    CheckReport {
        name: check.name,
        outcome,
    }
}

/// Run every check in order.
pub async fn run_all(ctx: &CheckContext) -> Vec<CheckReport> {
    let mut reports = Vec::new();
    for check in checks() {
        reports.push(run_check(check, ctx).await);
    }
    reports
}

async fn cleanup(scope: &Scope) -> Result<(), String> {
    let left = scope
        .backend
        .list_all(&scope.prefix)
        .await
        .map_err(|e| format!("cleanup list: {e}"))?;
    for meta in &left {
        scope.delete(&meta.key).await?;
    }
    let after = scope
        .backend
        .list_all(&scope.prefix)
        .await
        .map_err(|e| format!("cleanup list: {e}"))?;
    ensure!(
        after.is_empty(),
        "cleanup: {} keys remain under {} after deleting them",
        after.len(),
        scope.prefix
    );
    Ok(())
}

async fn invalid_keys(scope: &Scope) -> CheckResult {
    let long = format!("{}{}", scope.prefix, "k".repeat(MAX_KEY_LEN));
    let bad_keys = [
        String::new(),
        format!("/{}x", scope.prefix),
        format!("{}a//b", scope.prefix),
        format!("{}a/", scope.prefix),
        format!("{}../x", scope.prefix),
        format!("{}./x", scope.prefix),
        format!("{}a/../../x", scope.prefix),
        format!("{}ctl\u{1}x", scope.prefix),
        format!("{}new\nline", scope.prefix),
        format!("{}back\\slash", scope.prefix),
        long,
    ];
    for bad in &bad_keys {
        expect_kind(
            ObjectKey::new(bad),
            ErrorKind::InvalidInput,
            &format!("key {:?}", short_debug(bad)),
        )?;
    }
    for bad in ["/x", "a//", "../", "tab\tx"] {
        expect_kind(
            ListRequest::new(bad),
            ErrorKind::InvalidInput,
            &format!("list prefix {bad:?}"),
        )?;
    }
    // No key object exists for any of them, so nothing can have been
    // written; confirm the scope is still empty.
    let listed = scope
        .backend
        .list_all(&scope.prefix)
        .await
        .map_err(|e| format!("list: {e}"))?;
    ensure!(
        listed.is_empty(),
        "{} keys appeared under the scope",
        listed.len()
    );
    Ok(Outcome::Passed(format!(
        "{} keys and 4 prefixes rejected",
        bad_keys.len()
    )))
}

async fn missing_keys(scope: &Scope) -> CheckResult {
    let key = scope.key("never-written")?;
    scope.expect_missing(&key).await?;
    let b = &scope.backend;
    expect_kind(
        b.get_range(&key, 0..10).await,
        ErrorKind::NotFound,
        "get_range 0..10 of a missing key",
    )?;
    expect_kind(
        b.get_range(&key, 3..3).await,
        ErrorKind::NotFound,
        "zero-length get_range of a missing key",
    )?;
    let exists = b.exists(&key).await.map_err(|e| format!("exists: {e}"))?;
    ensure!(!exists, "exists() is true for a key never written");
    scope.delete(&key).await?;
    scope.delete(&key).await?;
    Ok(Outcome::Passed(
        "NotFound everywhere, delete of a missing key is Ok".into(),
    ))
}

async fn roundtrip(scope: &Scope, size: usize) -> CheckResult {
    let key = scope.key(&format!("object-{size}"))?;
    let caps = scope.backend.capabilities().clone();
    let value = pattern(size, size as u64);
    if size as u64 > caps.max_object_size {
        expect_kind(
            scope.backend.put(&key, value).await,
            ErrorKind::InvalidInput,
            &format!(
                "put of {size} bytes above the limit of {}",
                caps.max_object_size
            ),
        )?;
        scope.expect_missing(&key).await?;
        return Ok(Outcome::Passed(format!(
            "rejected: above the declared max of {} bytes",
            caps.max_object_size
        )));
    }
    scope.put(&key, value.clone()).await?;
    let got = scope.get(&key).await?;
    same(&format!("get {key}"), &got, &value)?;
    let meta = scope
        .backend
        .head(&key)
        .await
        .map_err(|e| format!("head {key}: {e}"))?;
    ensure!(
        meta.size == size as u64,
        "head {key}: size {} but {size} bytes were put",
        meta.size
    );
    ensure!(meta.key == key, "head {key}: returned key {}", meta.key);
    match scope.backend.get_range(&key, 0..size as u64).await {
        Ok(got) => same(&format!("get_range 0..{size} of {key}"), &got, &value)?,
        Err(e) if matches!(e.kind(), ErrorKind::Unsupported { .. }) && !caps.supports_range => {}
        Err(e) => return Err(format!("get_range 0..{size} of {key}: {e}")),
    }
    scope.delete(&key).await?;
    scope.expect_missing(&key).await?;
    Ok(Outcome::Passed(format!(
        "{size} bytes put, read, sized, deleted"
    )))
}

async fn roundtrip_0b(scope: &Scope) -> CheckResult {
    roundtrip(scope, 0).await
}

async fn roundtrip_1b(scope: &Scope) -> CheckResult {
    roundtrip(scope, 1).await
}

async fn roundtrip_4kib(scope: &Scope) -> CheckResult {
    roundtrip(scope, 4 << 10).await
}

async fn roundtrip_2mib(scope: &Scope) -> CheckResult {
    roundtrip(scope, 2 << 20).await
}

async fn roundtrip_16mib(scope: &Scope) -> CheckResult {
    roundtrip(scope, 16 << 20).await
}

/// Largest limit for which the suite materialises a too-large object.
const TOO_LARGE_PROBE_LIMIT: u64 = 64 << 20;

async fn too_large(scope: &Scope) -> CheckResult {
    let max = scope.backend.capabilities().max_object_size;
    if max >= TOO_LARGE_PROBE_LIMIT {
        return Ok(Outcome::Skipped(format!(
            "declared max is {max} bytes; the suite only allocates objects up to {TOO_LARGE_PROBE_LIMIT}"
        )));
    }
    let key = scope.key("too-large")?;
    let value = Bytes::from(vec![7u8; max as usize + 1]);
    expect_kind(
        scope.backend.put(&key, value).await,
        ErrorKind::InvalidInput,
        &format!("put of {} bytes", max + 1),
    )?;
    scope.expect_missing(&key).await?;
    Ok(Outcome::Passed(format!(
        "{} bytes rejected, nothing stored",
        max + 1
    )))
}

async fn overwrite(scope: &Scope) -> CheckResult {
    let key = scope.key("object")?;
    let short = pattern(1000, 1);
    let long = pattern(3000, 2);
    scope.put(&key, short.clone()).await?;
    scope.put_patiently(&key, long.clone()).await?;
    same(
        "get after overwrite with a longer object",
        &scope.get(&key).await?,
        &long,
    )?;
    let meta = scope
        .backend
        .head(&key)
        .await
        .map_err(|e| format!("head: {e}"))?;
    ensure!(
        meta.size == 3000,
        "head after overwrite: size {}, expected 3000",
        meta.size
    );
    // A shorter object must not keep the longer one's tail.
    scope.put_patiently(&key, short.clone()).await?;
    same(
        "get after overwrite with a shorter object",
        &scope.get(&key).await?,
        &short,
    )?;
    // The same bytes again: the idempotent re-put of a content key.
    scope.put_patiently(&key, short.clone()).await?;
    same(
        "get after re-put of the same bytes",
        &scope.get(&key).await?,
        &short,
    )?;
    scope.delete(&key).await?;
    Ok(Outcome::Passed(
        "longer, shorter and identical re-puts read back".into(),
    ))
}

async fn delete_idempotent(scope: &Scope) -> CheckResult {
    let key = scope.key("object")?;
    scope.put(&key, pattern(100, 3)).await?;
    scope.delete(&key).await?;
    scope.expect_missing(&key).await?;
    scope.delete(&key).await?;
    let listed = scope
        .backend
        .list_all(&scope.prefix)
        .await
        .map_err(|e| format!("list: {e}"))?;
    ensure!(
        listed.is_empty(),
        "deleted key still listed: {:?}",
        listed.first().map(|m| m.key.to_string())
    );
    Ok(Outcome::Passed("deleted, gone, second delete Ok".into()))
}

async fn range_reads(scope: &Scope) -> CheckResult {
    let key = scope.key("object")?;
    let value = pattern(1000, 4);
    scope.put(&key, value.clone()).await?;
    let supports = scope.backend.capabilities().supports_range;
    // (range, expected slice) — the semantics documented in `backend`.
    let cases: [(std::ops::Range<u64>, std::ops::Range<usize>); 9] = [
        (0..10, 0..10),
        (990..1000, 990..1000),
        (995..1010, 995..1000),
        (1000..1010, 1000..1000),
        (2000..3000, 1000..1000),
        (500..500, 500..500),
        (1000..1000, 1000..1000),
        (0..u64::MAX, 0..1000),
        (1..999, 1..999),
    ];
    for (range, want) in cases {
        match scope.backend.get_range(&key, range.clone()).await {
            Ok(got) => same(&format!("get_range {range:?}"), &got, &value[want])?,
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported { .. }) && !supports => {
                scope.delete(&key).await?;
                return Ok(Outcome::Skipped("get_range unsupported (declared)".into()));
            }
            Err(e) => return Err(format!("get_range {range:?} of a 1000-byte object: {e}")),
        }
    }
    #[allow(clippy::reversed_empty_ranges)] // the inverted range is the point
    let inverted = 10..5;
    expect_kind(
        scope.backend.get_range(&key, inverted).await,
        ErrorKind::InvalidInput,
        "get_range 10..5",
    )?;
    scope.delete(&key).await?;
    Ok(Outcome::Passed(
        "9 ranges clamp like read(2); inverted range rejected".into(),
    ))
}

async fn list_pages(scope: &Scope) -> CheckResult {
    let mut expected = Vec::new();
    for i in 0..25u64 {
        let key = scope.key(&format!("k/{i:02}"))?;
        scope.put(&key, pattern(i as usize, i)).await?;
        expected.push((key, i));
    }
    // Decoys sorting just before and after the listed prefix.
    for decoy in ["k-before", "kz-after", "k"] {
        scope.put(&scope.key(decoy)?, pattern(1, 9)).await?;
    }
    let prefix = format!("{}k/", scope.prefix);
    let mut seen = Vec::new();
    let mut request = ListRequest::new(&prefix)
        .map_err(|e| e.to_string())?
        .limit(7);
    let mut pages = 0;
    loop {
        pages += 1;
        ensure!(
            pages <= 10,
            "list did not terminate after 10 pages of 7 for 25 keys"
        );
        let page = scope
            .backend
            .list(&request)
            .await
            .map_err(|e| format!("list page {pages}: {e}"))?;
        ensure!(
            page.objects.len() <= 7,
            "page {pages} has {} entries, limit 7",
            page.objects.len()
        );
        seen.extend(page.objects.iter().map(|m| (m.key.clone(), m.size)));
        match page.next_start_after {
            Some(next) => request = request.start_after(Some(next)),
            None => break,
        }
    }
    let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    let unique: BTreeSet<&str> = keys.iter().copied().collect();
    ensure!(
        unique.len() == keys.len(),
        "duplicate keys across pages: {} listed, {} distinct",
        keys.len(),
        unique.len()
    );
    ensure!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "keys not in ascending order: {keys:?}"
    );
    ensure!(
        seen == expected,
        "listed {:?}, expected the 25 keys k/00..k/24 with their sizes",
        short_debug(&keys)
    );
    // A partial last segment is a string prefix: k/1 matches k/1x.
    let partial = scope
        .backend
        .list_all(&format!("{}k/1", scope.prefix))
        .await
        .map_err(|e| format!("list: {e}"))?;
    ensure!(
        partial.len() == 10,
        "prefix k/1 listed {} keys, expected 10 (k/10..k/19)",
        partial.len()
    );
    let past_end = ListRequest::new(&prefix)
        .map_err(|e| e.to_string())?
        .start_after(Some(expected[24].0.clone()));
    let page = scope
        .backend
        .list(&past_end)
        .await
        .map_err(|e| format!("list past the end: {e}"))?;
    ensure!(
        page.objects.is_empty() && page.next_start_after.is_none(),
        "list after the last key is not empty"
    );
    let big = ListRequest::new(&prefix)
        .map_err(|e| e.to_string())?
        .limit(usize::MAX);
    let page = scope
        .backend
        .list(&big)
        .await
        .map_err(|e| format!("list with a huge limit: {e}"))?;
    ensure!(
        page.objects.len() == 25,
        "list with limit clamped to {MAX_LIST_LIMIT} returned {}",
        page.objects.len()
    );
    Ok(Outcome::Passed(format!(
        "25 keys in {pages} pages, decoys excluded, partial prefix exact"
    )))
}

async fn key_charset(scope: &Scope) -> CheckResult {
    let room = MAX_KEY_LEN - scope.prefix.len();
    // A maximal key made of segments short enough for any file system.
    let mut long = String::new();
    while long.len() + 101 < room {
        long.push_str(&"L".repeat(100));
        long.push('/');
    }
    long.push_str(&"E".repeat(room - long.len()));
    let names = [
        "sp ace".to_owned(),
        "ü-ключ-日本".to_owned(),
        "plus+percent%20".to_owned(),
        "tilde~quote'\"".to_owned(),
        "dots.../x".to_owned(),
        ".hidden".to_owned(),
        "semi;colon=eq&amp".to_owned(),
        "hash#q?".to_owned(),
        "paren(x)[y]{z}*".to_owned(),
        "Case".to_owned(),
        "case".to_owned(),
        "emoji-🦀".to_owned(),
        long,
    ];
    let mut keys = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let key = scope.key(name)?;
        let value = pattern(10 + i, 100 + i as u64);
        scope.put(&key, value.clone()).await?;
        same(&format!("get {key}"), &scope.get(&key).await?, &value)?;
        keys.push(key);
    }
    keys.sort();
    let listed: Vec<ObjectKey> = scope
        .backend
        .list_all(&scope.prefix)
        .await
        .map_err(|e| format!("list: {e}"))?
        .into_iter()
        .map(|m| m.key)
        .collect();
    ensure!(
        listed == keys,
        "listed {:?}, expected {:?}",
        short_debug(&listed),
        short_debug(&keys)
    );
    for key in &keys {
        scope.delete(key).await?;
        scope.expect_missing(key).await?;
    }
    Ok(Outcome::Passed(format!(
        "{} unusual keys, one of {MAX_KEY_LEN} bytes",
        keys.len()
    )))
}

async fn concurrent_distinct_keys(scope: &Scope) -> CheckResult {
    const N: usize = 16;
    let mut items = Vec::new();
    for i in 0..N {
        items.push((
            scope.key(&format!("k{i:02}"))?,
            pattern(64 << 10, 200 + i as u64),
        ));
    }
    let puts = join_all(items.iter().map(|(k, v)| scope.put(k, v.clone()))).await;
    puts.into_iter().collect::<Result<Vec<()>, String>>()?;
    let gets = join_all(items.iter().map(|(k, _)| scope.get(k))).await;
    for ((key, want), got) in items.iter().zip(gets) {
        same(&format!("get {key}"), &got?, want)?;
    }
    let deletes = join_all(items.iter().map(|(k, _)| scope.delete(k))).await;
    deletes.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(Outcome::Passed(format!("{N} × 64 KiB concurrently")))
}

async fn concurrent_same_key(scope: &Scope) -> CheckResult {
    const N: usize = 8;
    let key = scope.key("contended")?;
    let values: Vec<Bytes> = (0..N).map(|i| pattern(64 << 10, 300 + i as u64)).collect();
    let puts = values.iter().map(|v| {
        let b = scope.backend.clone();
        let key = key.clone();
        let v = v.clone();
        boxed(async move { Op::Put(b.put(&key, v).await) })
    });
    let gets = (0..N).map(|_| {
        let b = scope.backend.clone();
        let key = key.clone();
        boxed(async move { Op::Get(b.get(&key).await) })
    });
    // Interleave puts and gets so reads race the writes.
    let mut ops = Vec::new();
    for (p, g) in puts.zip(gets) {
        ops.push(p);
        ops.push(g);
    }
    let results = join_all(ops).await;
    let mut succeeded = Vec::new();
    let mut put_index = 0;
    for result in results {
        match result {
            Op::Put(Ok(())) => {
                succeeded.push(values[put_index].clone());
                put_index += 1;
            }
            Op::Put(Err(e)) if e.kind() == ErrorKind::Unavailable => put_index += 1,
            Op::Put(Err(e)) => return Err(format!("concurrent put of {key}: {e}")),
            Op::Get(Ok(got)) => ensure!(
                values.contains(&got),
                "a concurrent get returned {} bytes matching none of the values put (torn write?)",
                got.len()
            ),
            Op::Get(Err(e)) if e.kind() == ErrorKind::NotFound => {}
            Op::Get(Err(e)) => return Err(format!("concurrent get of {key}: {e}")),
        }
    }
    ensure!(
        !succeeded.is_empty(),
        "none of {N} concurrent puts of one key succeeded"
    );
    let last = scope.get(&key).await?;
    ensure!(
        succeeded.contains(&last),
        "after the race, {key} holds {} bytes matching no successful put",
        last.len()
    );
    scope.delete(&key).await?;
    Ok(Outcome::Passed(format!(
        "{}/{N} puts accepted, every read whole",
        succeeded.len()
    )))
}

/// `Some(skip)` when the backend does not offer `put_if_absent`.
fn unsupported_create(result: &crate::Result<bool>) -> Option<Outcome> {
    match result {
        Err(e) if matches!(e.kind(), ErrorKind::Unsupported { .. }) => Some(Outcome::Skipped(
            format!("the backend does not offer put_if_absent: {e}"),
        )),
        _ => None,
    }
}

async fn put_if_absent(scope: &Scope) -> CheckResult {
    let key = scope.key("claimed")?;
    let first = pattern(100, 11);
    let second = pattern(200, 12);
    let created = scope.backend.put_if_absent(&key, first.clone()).await;
    if let Some(skip) = unsupported_create(&created) {
        return Ok(skip);
    }
    let created = created.map_err(|e| format!("put_if_absent of absent {key}: {e}"))?;
    ensure!(created, "put_if_absent of an absent key returned false");
    same("get after put_if_absent", &scope.get(&key).await?, &first)?;
    let again = scope
        .backend
        .put_if_absent(&key, second.clone())
        .await
        .map_err(|e| format!("put_if_absent of existing {key}: {e}"))?;
    ensure!(!again, "put_if_absent of an existing key returned true");
    same(
        "get after a refused put_if_absent (must be unchanged)",
        &scope.get(&key).await?,
        &first,
    )?;
    // After a delete the key is absent again.
    scope.delete(&key).await?;
    let after_delete = scope
        .backend
        .put_if_absent(&key, second.clone())
        .await
        .map_err(|e| format!("put_if_absent after delete of {key}: {e}"))?;
    ensure!(after_delete, "put_if_absent after delete returned false");
    same("get after re-create", &scope.get(&key).await?, &second)?;
    scope.delete(&key).await?;
    Ok(Outcome::Passed(
        "created once, refused while present, created again after delete".into(),
    ))
}

async fn concurrent_put_if_absent(scope: &Scope) -> CheckResult {
    const N: usize = 8;
    let key = scope.key("contended")?;
    let values: Vec<Bytes> = (0..N).map(|i| pattern(4096, 400 + i as u64)).collect();
    let calls = values.iter().map(|v| {
        let b = scope.backend.clone();
        let key = key.clone();
        let v = v.clone();
        Box::pin(async move { b.put_if_absent(&key, v).await })
            as BoxFuture<'_, crate::Result<bool>>
    });
    let results = join_all(calls).await;
    let mut winners = Vec::new();
    for (i, r) in results.iter().enumerate() {
        if let Some(skip) = unsupported_create(r) {
            return Ok(skip);
        }
        match r {
            Ok(true) => winners.push(i),
            Ok(false) => {}
            Err(e) => return Err(format!("concurrent put_if_absent of {key}: {e}")),
        }
    }
    ensure!(
        winners.len() == 1,
        "{} of {N} concurrent put_if_absent calls claimed {key} (exactly 1 must)",
        winners.len()
    );
    same(
        "get after the race (the winner's bytes)",
        &scope.get(&key).await?,
        &values[winners[0]],
    )?;
    scope.delete(&key).await?;
    Ok(Outcome::Passed(
        "exactly one winner, its bytes stored".into(),
    ))
}

enum Op {
    Put(crate::Result<()>),
    Get(crate::Result<Bytes>),
}

fn boxed<'a>(f: impl Future<Output = Op> + crate::MaybeSend + 'a) -> BoxFuture<'a, Op> {
    Box::pin(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_key_safe() {
        let names: BTreeSet<&str> = checks().iter().map(|c| c.name).collect();
        assert_eq!(names.len(), checks().len());
        for name in names {
            ObjectKey::new(&format!("p/{name}/x")).unwrap();
        }
    }

    #[test]
    fn pattern_is_deterministic() {
        assert_eq!(pattern(33, 5), pattern(33, 5));
        assert_ne!(pattern(33, 5), pattern(33, 6));
        assert_eq!(pattern(0, 1).len(), 0);
    }
}
