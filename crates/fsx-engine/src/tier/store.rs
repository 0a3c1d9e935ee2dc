//! [`TieredStore`]: the read path, the hot-first write path, the
//! replication queue's worker, eviction, explicit promotion and demotion,
//! and scrubbing. The invariants are in the parent module's docs.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use fsx_meta::{CopyState, Counter, MetaEngine, MetaError, MetaErrorKind, TierCopy, TierMark};
use fsx_store::wrappers::{MeterSnapshot, Metered, Operation};
use fsx_store::{
    BoxFuture, Capabilities, ErrorKind as StoreKind, ExtentBackend, ListPage, ListRequest,
    ObjectKey, ObjectMeta, StoreError,
};

use super::{CACHE, COLD, HOT, KV, TierPolicy, TierSet};
use crate::env::Environment;

/// Bytes of one page digest.
const DIGEST_LEN: usize = 8;

/// The first [`DIGEST_LEN`] bytes of SHA-256 over the page index (u32 LE)
/// and the page: binding the index means bytes of another page never pass.
fn page_digest(index: u32, page: &[u8]) -> [u8; DIGEST_LEN] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(index.to_le_bytes());
    h.update(page);
    let d = h.finalize();
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&d[..DIGEST_LEN]);
    out
}

/// Digests of every page index of a raw extent (zeros for an absent page),
/// or `None` for a compressed or undecodable blob (no range path then).
fn page_digests(blob: &[u8]) -> Option<Vec<u8>> {
    let extent = fsx_format::Extent::decode_trusted(blob).ok()?;
    if extent.header().codec != fsx_format::Codec::Raw {
        return None;
    }
    let count = extent.header().page_count as usize;
    let mut out = vec![0u8; count * DIGEST_LEN];
    for (i, page) in extent.pages() {
        let at = i as usize * DIGEST_LEN;
        out.get_mut(at..at + DIGEST_LEN)?
            .copy_from_slice(&page_digest(i, page));
    }
    Some(out)
}

/// Records read per metadata call when walking a tier.
const PAGE: usize = 500;

/// One tier: its store, metered under the tier's name.
struct Tier {
    name: &'static str,
    store: Arc<dyn ExtentBackend>,
    meter: Arc<Metered>,
    /// Copies that failed verification, since the process started.
    corrupt: AtomicU64,
    /// What the meter and `corrupt` read at the last counter flush.
    flushed: Mutex<(MeterSnapshot, u64)>,
}

impl Tier {
    fn new(name: &'static str, meter: Arc<Metered>) -> Self {
        let snapshot = meter.snapshot();
        Self {
            name,
            store: meter.clone(),
            meter,
            corrupt: AtomicU64::new(0),
            flushed: Mutex::new((snapshot, 0)),
        }
    }

    fn caps(&self) -> &Capabilities {
        self.store.capabilities()
    }
}

/// What one [`TieredStore::replicate`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicationReport {
    /// Copies written and recorded present.
    pub copied: u64,
    /// Attempts that failed and were rescheduled with backoff.
    pub failed: u64,
    /// Queue entries dropped: their tier is not configured or the extent is
    /// larger than the tier's maximum object size.
    pub dropped: u64,
}

/// What a [`TieredStore::scrub`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScrubReport {
    /// Recorded copies read and verified.
    pub checked: u64,
    /// `(tier, key)` of copies that were missing or failed verification.
    pub bad: Vec<(String, String)>,
    /// Of those, copies rewritten from a good copy elsewhere.
    pub repaired: u64,
}

/// One tier's line of `fsx tier status`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStatus {
    /// Tier name.
    pub tier: String,
    /// The store behind it.
    pub store: String,
    /// Extents with a present copy record.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Configured capacity in bytes, if limited.
    pub capacity: Option<u64>,
    /// Copies waiting in the replication queue for this tier.
    pub queued: u64,
    /// Largest object the tier accepts.
    pub max_object_size: u64,
}

/// Tiers behind one [`ExtentBackend`]; see the module docs.
pub struct TieredStore {
    /// Read order: cache, kv, hot, cold; cold is always present and last.
    tiers: Vec<Tier>,
    meta: Arc<dyn MetaEngine>,
    env: Arc<dyn Environment>,
    policy: TierPolicy,
    capabilities: Capabilities,
    /// Last write time of `(tier index, key)` in tiers with a per-key write
    /// interval, so this process never asks for a write the store would
    /// refuse.
    last_write: Mutex<HashMap<(usize, String), i64>>,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tiered(")?;
        for (i, t) in self.tiers.iter().enumerate() {
            if i > 0 {
                write!(f, " → ")?;
            }
            write!(f, "{}: {}", t.name, t.meter.inner())?;
        }
        write!(f, ")")
    }
}

fn meta_err(e: MetaError) -> StoreError {
    let kind = match e.kind() {
        MetaErrorKind::Unavailable | MetaErrorKind::Busy | MetaErrorKind::Conflict => {
            StoreKind::Unavailable
        }
        _ => StoreKind::Other,
    };
    StoreError::new(kind, format!("tier records: {e}")).with_source(e)
}

fn is_content(key: &ObjectKey) -> bool {
    key.as_str().starts_with(fsx_format::CONTENT_KEY_PREFIX)
}

impl TieredStore {
    /// Tiers over `cold` (the volume's metered data store) and the faster
    /// tiers of `set`, each metered under its tier name.
    pub fn new(
        cold: Arc<Metered>,
        set: TierSet,
        meta: Arc<dyn MetaEngine>,
        env: Arc<dyn Environment>,
    ) -> Self {
        let mut tiers = Vec::new();
        for (name, store) in [(CACHE, set.cache), (KV, set.kv), (HOT, set.hot)] {
            if let Some(s) = store {
                tiers.push(Tier::new(name, Arc::new(Metered::new(s))));
            }
        }
        tiers.push(Tier::new(COLD, cold));
        // A put goes to the durability tier, then to cold: it must fit both.
        let cold_caps = tiers[tiers.len() - 1].caps().clone();
        let max = tiers
            .iter()
            .filter(|t| t.name == HOT)
            .map(|t| t.caps().max_object_size)
            .fold(cold_caps.max_object_size, u64::min);
        let durable = tiers
            .iter()
            .any(|t| (t.name == HOT || t.name == COLD) && t.caps().durable_put);
        // Every content key is read through `read_verified`.
        let capabilities = Capabilities::new(max)
            .supports_range(cold_caps.supports_range)
            .durable_put(durable)
            .checks_content(true);
        Self {
            tiers,
            meta,
            env,
            policy: set.policy,
            capabilities,
            last_write: Mutex::new(HashMap::new()),
        }
    }

    /// The placement policy.
    pub fn policy(&self) -> &TierPolicy {
        &self.policy
    }

    /// Names of the configured tiers, fastest first.
    pub fn tier_names(&self) -> Vec<&'static str> {
        self.tiers.iter().map(|t| t.name).collect()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t.name == name)
    }

    fn has(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    /// The tier that makes new extents durable: hot if configured, else cold.
    fn landing(&self) -> usize {
        self.index(HOT).unwrap_or(self.tiers.len() - 1)
    }

    /// Operation counters of the faster tiers (cold is flushed by the
    /// volume) since the last call, plus `corrupt` counts of every tier.
    pub(crate) fn counter_deltas(&self) -> Vec<Counter> {
        let mut out = Vec::new();
        for t in &self.tiers {
            let now = t.meter.snapshot();
            let corrupt = t.corrupt.load(Ordering::Relaxed);
            let mut flushed = t.flushed.lock().unwrap_or_else(PoisonError::into_inner);
            let (before, corrupt_before) = *flushed;
            if t.name != COLD {
                for op in Operation::ALL {
                    let (a, b) = (now.op(op), before.op(op));
                    let calls = a.calls.saturating_sub(b.calls);
                    let bytes = (a.bytes_written + a.bytes_read)
                        .saturating_sub(b.bytes_written + b.bytes_read);
                    if calls > 0 {
                        out.push(Counter {
                            tier: t.name.into(),
                            op: op.name().into(),
                            calls,
                            bytes,
                        });
                    }
                }
            }
            if corrupt > corrupt_before {
                out.push(Counter {
                    tier: t.name.into(),
                    op: "corrupt".into(),
                    calls: corrupt - corrupt_before,
                    bytes: 0,
                });
            }
            *flushed = (now, corrupt);
        }
        out
    }

    /// Present tiers of `key` according to its copy records.
    async fn present(&self, key: &str) -> fsx_store::Result<Vec<TierCopy>> {
        let copies = self.meta.tier_copies(key).await.map_err(meta_err)?;
        Ok(copies
            .into_iter()
            .filter(|c| c.state == CopyState::Present)
            .collect())
    }

    /// The first good copy of `key`, reading tiers fastest first and
    /// skipping `exclude`; copies that are bad (or recorded but gone) are
    /// reported and repaired from the good one. Returns the tier index and
    /// the verified bytes.
    async fn read_verified(
        &self,
        key: &ObjectKey,
        exclude: Option<usize>,
    ) -> fsx_store::Result<(usize, Bytes)> {
        let recorded: BTreeSet<String> = self
            .present(key.as_str())
            .await?
            .into_iter()
            .map(|c| c.tier)
            .collect();
        let mut bad = Vec::new();
        let mut failure: Option<StoreError> = None;
        let mut found = None;
        for (idx, t) in self.tiers.iter().enumerate() {
            if Some(idx) == exclude {
                continue;
            }
            let is_recorded = recorded.contains(t.name);
            // Durable faster tiers are asked only when a record says they
            // hold a copy (a pointless KV or SQL round trip otherwise); the
            // cache is cheap to ask and keeps no records; cold is the
            // fallback for extents written before tiering was configured.
            if !(is_recorded || t.caps().may_evict || t.name == COLD) {
                continue;
            }
            // A store that checks its own copies (the local directory)
            // fails a bad one as `Corrupt` below instead.
            let check = |blob: &Bytes| {
                if t.caps().checks_content {
                    Ok(())
                } else {
                    key.verify_content(blob)
                }
            };
            match t.store.get(key).await {
                Ok(blob) => match check(&blob) {
                    Ok(()) => {
                        found = Some((idx, blob));
                        break;
                    }
                    Err(e) => {
                        t.corrupt.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(tier = t.name, %key, error = %e, "a copy failed its content key; reading another tier");
                        bad.push(idx);
                    }
                },
                // A store that checks its own copies (the disk cache)
                // reports a bad one as `Corrupt`: a bad copy, not an outage.
                Err(e) if e.kind() == StoreKind::Corrupt => {
                    t.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tier = t.name, %key, error = %e, "a copy failed its own check; reading another tier");
                    bad.push(idx);
                }
                Err(e) if e.kind() == StoreKind::NotFound => {
                    if is_recorded && !t.caps().may_evict {
                        t.corrupt.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(tier = t.name, %key, "a recorded copy is missing; reading another tier");
                        bad.push(idx);
                    }
                }
                Err(e) => {
                    tracing::warn!(tier = t.name, %key, error = %e, "tier unavailable; reading another tier");
                    failure = Some(e);
                }
            }
        }
        let Some((idx, blob)) = found else {
            return Err(if !bad.is_empty() {
                StoreError::corrupt(format!(
                    "no tier holds a good copy of {key}: bad copies in {}",
                    bad.iter()
                        .map(|&i| self.tiers[i].name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            } else {
                failure.unwrap_or_else(|| StoreError::not_found(format!("{key} is in no tier")))
            });
        };
        for b in bad {
            self.repair(b, key, &blob).await;
        }
        Ok((idx, blob))
    }

    /// Rewrites a bad copy in place, or queues the rewrite when the tier
    /// cannot take it now (write interval, outage).
    async fn repair(&self, idx: usize, key: &ObjectKey, blob: &Bytes) {
        let name = self.tiers[idx].name;
        let outcome = match self.write_copy(idx, key, blob.clone()).await {
            Ok(()) => {
                self.mark(key.as_str(), name, blob.len(), CopyState::Present)
                    .await
            }
            Err(e) => {
                tracing::warn!(tier = name, %key, error = %e, "repair deferred to the replication queue");
                match self.meta.tier_forget(key.as_str(), Some(name)).await {
                    Ok(()) => {
                        self.mark(key.as_str(), name, blob.len(), CopyState::Queued)
                            .await
                    }
                    Err(e) => Err(meta_err(e)),
                }
            }
        };
        match outcome {
            Ok(()) => tracing::info!(tier = name, %key, "repaired a bad copy"),
            Err(e) => tracing::warn!(tier = name, %key, error = %e, "could not record a repair"),
        }
    }

    async fn mark(
        &self,
        key: &str,
        tier: &str,
        bytes: usize,
        state: CopyState,
    ) -> fsx_store::Result<()> {
        let m = TierMark::new(key, tier, bytes as u64, state);
        self.meta
            .tier_record(std::slice::from_ref(&m), self.env.now_ms())
            .await
            .map_err(meta_err)
    }

    /// Writes one copy into tier `idx`, checking its size limit and write
    /// interval first; a write too soon is `Unavailable` with a retry hint
    /// and never reaches the store.
    async fn write_copy(&self, idx: usize, key: &ObjectKey, blob: Bytes) -> fsx_store::Result<()> {
        let t = &self.tiers[idx];
        t.caps().check_put_size(key, blob.len())?;
        let interval = t.caps().per_key_write_interval;
        let slot = (idx, key.as_str().to_string());
        if let Some(interval) = interval {
            let now = self.env.now_ms();
            let wait = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
            let last = self
                .last_write
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&slot)
                .copied();
            if let Some(last) = last
                && now - last < wait
            {
                let left = (wait - (now - last)).max(1) as u64;
                return Err(StoreError::unavailable(format!(
                    "{key} was written to {} {} ms ago; its write interval is {wait} ms",
                    t.name,
                    now - last
                ))
                .with_retry_after(std::time::Duration::from_millis(left)));
            }
        }
        t.store.put(key, blob).await?;
        if interval.is_some() {
            self.last_write
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(slot, self.env.now_ms());
        }
        Ok(())
    }

    /// Copies `key` into tier `idx` from the fastest other tier holding a
    /// good copy, and records it present.
    async fn copy_to(&self, idx: usize, key: &ObjectKey) -> fsx_store::Result<()> {
        let (_, blob) = self.read_verified(key, Some(idx)).await?;
        let len = blob.len();
        crate::failpoint::check_store(&*self.env, crate::Failpoint::Replicate)?;
        self.write_copy(idx, key, blob).await?;
        crate::failpoint::check_store(&*self.env, crate::Failpoint::ReplicateRecord)?;
        self.mark(key.as_str(), self.tiers[idx].name, len, CopyState::Present)
            .await
    }

    /// After a verified read from a slower tier: fill the cache now, and
    /// queue a KV copy once the extent is warm.
    async fn fill(&self, from: usize, key: &ObjectKey, blob: &Bytes) {
        if let Some(c) = self.index(CACHE)
            && c < from
            && blob.len() as u64 <= self.tiers[c].caps().max_object_size
            && let Err(e) = self.tiers[c].store.put(key, blob.clone()).await
        {
            tracing::debug!(%key, error = %e, "cache fill failed");
        }
        let now = self.env.now_ms();
        if let Err(e) = self.meta.touch_extent(key.as_str(), 1, now).await {
            tracing::warn!(%key, error = %e, "could not record an access");
            return;
        }
        let Some(k) = self.index(KV) else { return };
        // Served by KV or a faster tier already: nothing to promote.
        if k >= from || self.policy.kv_min_hits == 0 {
            return;
        }
        let fits = blob.len() as u64 <= self.tiers[k].caps().max_object_size;
        let warm = match self.meta.extent_access(key.as_str()).await {
            Ok(a) => a.hits >= self.policy.kv_min_hits,
            Err(_) => false,
        };
        if fits
            && warm
            && self.kv_has_room(blob.len() as u64).await
            && let Err(e) = self
                .mark(key.as_str(), KV, blob.len(), CopyState::Queued)
                .await
        {
            tracing::warn!(%key, error = %e, "could not queue a KV promotion");
        }
    }

    async fn kv_has_room(&self, more: u64) -> bool {
        let Some(cap) = self.policy.kv_capacity_bytes else {
            return true;
        };
        match self.meta.tier_totals().await {
            Ok(t) => {
                let used = t.iter().find(|t| t.tier == KV).map_or(0, |t| t.bytes);
                used + more <= cap
            }
            Err(_) => false,
        }
    }

    /// Works through up to `limit` due entries of the replication queue.
    /// Failures are rescheduled with the policy's backoff (or the store's
    /// retry hint); nothing is ever dropped except entries no tier can hold.
    pub async fn replicate(&self, limit: usize) -> crate::Result<ReplicationReport> {
        let mut report = ReplicationReport::default();
        let due = self.meta.tier_due(self.env.now_ms(), limit).await?;
        for c in due {
            let key = ObjectKey::new(&c.key)?;
            let Some(idx) = self.index(&c.tier) else {
                tracing::warn!(key = %c.key, tier = %c.tier, "dropping a queue entry for a tier this volume no longer has");
                self.meta.tier_forget(&c.key, Some(&c.tier)).await?;
                report.dropped += 1;
                continue;
            };
            if c.bytes > self.tiers[idx].caps().max_object_size {
                tracing::warn!(key = %c.key, tier = %c.tier, bytes = c.bytes, "extent larger than the tier allows; not copied");
                self.meta.tier_forget(&c.key, Some(&c.tier)).await?;
                report.dropped += 1;
                continue;
            }
            match self.copy_to(idx, &key).await {
                Ok(()) => report.copied += 1,
                Err(e) => {
                    let now = self.env.now_ms();
                    let hint = e
                        .retry_after()
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    let delay = hint.unwrap_or_else(|| self.policy.backoff_ms(c.attempts));
                    tracing::info!(key = %c.key, tier = %c.tier, attempts = c.attempts + 1, delay_ms = delay, error = %e, "copy failed; will retry");
                    self.meta
                        .tier_retry(&c.key, &c.tier, now.saturating_add(delay), &e.to_string())
                        .await?;
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Runs [`TieredStore::replicate`] until nothing is due now.
    pub async fn replicate_all(&self) -> crate::Result<ReplicationReport> {
        let mut total = ReplicationReport::default();
        loop {
            let r = self.replicate(PAGE).await?;
            total.copied += r.copied;
            total.failed += r.failed;
            total.dropped += r.dropped;
            // Failed entries are rescheduled into the future, so a pass
            // that only failed has nothing left that is due now.
            if r.copied + r.dropped == 0 {
                return Ok(total);
            }
        }
    }

    /// Every copy record of `tier`.
    async fn records(&self, tier: &str) -> crate::Result<Vec<TierCopy>> {
        let mut out: Vec<TierCopy> = Vec::new();
        loop {
            let after = out.last().map(|c| c.key.clone());
            let page = self.meta.tier_list(tier, after.as_deref(), PAGE).await?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }

    async fn cold_confirmed(&self, key: &str) -> crate::Result<bool> {
        Ok(self.present(key).await?.iter().any(|c| c.tier == COLD))
    }

    /// Evicts from `hot` and `kv` while they hold more than their capacity:
    /// least recently read first, and only extents whose cold copy is
    /// confirmed. Returns the number of copies evicted.
    pub async fn enforce_capacity(&self) -> crate::Result<u64> {
        let mut evicted = 0;
        for (name, cap) in [
            (HOT, self.policy.hot_capacity_bytes),
            (KV, self.policy.kv_capacity_bytes),
        ] {
            let (Some(idx), Some(cap)) = (self.index(name), cap) else {
                continue;
            };
            let present: Vec<TierCopy> = self
                .records(name)
                .await?
                .into_iter()
                .filter(|c| c.state == CopyState::Present)
                .collect();
            let mut used: u64 = present.iter().map(|c| c.bytes).sum();
            if used <= cap {
                continue;
            }
            let mut by_age = Vec::with_capacity(present.len());
            for c in present {
                let a = self.meta.extent_access(&c.key).await?;
                by_age.push((a.last_ms, a.hits, c));
            }
            by_age.sort_by(|a, b| (a.0, a.1, &a.2.key).cmp(&(b.0, b.1, &b.2.key)));
            for (_, _, c) in by_age {
                if used <= cap {
                    break;
                }
                if !self.cold_confirmed(&c.key).await? {
                    continue;
                }
                let key = ObjectKey::new(&c.key)?;
                self.tiers[idx].store.delete(&key).await?;
                self.meta.tier_forget(&c.key, Some(name)).await?;
                used = used.saturating_sub(c.bytes);
                evicted += 1;
            }
            if used > cap {
                tracing::info!(
                    tier = name,
                    used,
                    cap,
                    "over capacity until cold copies are confirmed"
                );
            }
        }
        Ok(evicted)
    }

    /// Copies `key` into `tier` now (explicit promotion).
    pub async fn promote(&self, key: &str, tier: &str) -> crate::Result<()> {
        let idx = self.index(tier).ok_or_else(|| {
            crate::Error::invalid(format!(
                "this volume has no {tier} tier (it has {})",
                self.tier_names().join(", ")
            ))
        })?;
        let okey = ObjectKey::new(key)?;
        self.copy_to(idx, &okey).await?;
        Ok(())
    }

    /// Removes the copy of `key` from `tier` (explicit demotion); refused
    /// for cold, and while the cold copy is not confirmed.
    pub async fn demote(&self, key: &str, tier: &str) -> crate::Result<()> {
        if tier == COLD {
            return Err(crate::Error::invalid(
                "cold is the bottom tier; an extent leaves it only through GC",
            ));
        }
        let idx = self
            .index(tier)
            .ok_or_else(|| crate::Error::invalid(format!("this volume has no {tier} tier")))?;
        if !self.cold_confirmed(key).await? {
            return Err(crate::Error::new(
                crate::ErrorKind::Conflict,
                format!(
                    "the cold copy of {key} is not confirmed yet; run `fsx tier replicate` first"
                ),
            ));
        }
        let okey = ObjectKey::new(key)?;
        self.tiers[idx].store.delete(&okey).await?;
        self.meta.tier_forget(key, Some(tier)).await?;
        Ok(())
    }

    /// Reads every recorded copy in every durable tier, verifies it, and
    /// repairs what is missing or bad from a good copy elsewhere. Extents
    /// that GC has claimed are left out: their copies are going, and a GC
    /// killed between deleting them and forgetting their records leaves
    /// records of copies that are rightly gone.
    pub async fn scrub(&self) -> crate::Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let claimed = self.claimed_by_gc().await?;
        for (idx, t) in self.tiers.iter().enumerate() {
            if t.caps().may_evict {
                continue;
            }
            for c in self.records(t.name).await? {
                if c.state != CopyState::Present || claimed.contains(&c.key) {
                    continue;
                }
                let key = ObjectKey::new(&c.key)?;
                report.checked += 1;
                let good = match t.store.get(&key).await {
                    Ok(b) => key.verify_content(&b).is_ok(),
                    Err(e) if matches!(e.kind(), StoreKind::NotFound | StoreKind::Corrupt) => false,
                    Err(e) => return Err(e.into()),
                };
                if good {
                    continue;
                }
                t.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tier = t.name, key = %c.key, "scrub found a bad copy");
                report.bad.push((t.name.to_string(), c.key.clone()));
                match self.read_verified(&key, Some(idx)).await {
                    Ok((_, blob)) => {
                        self.repair(idx, &key, &blob).await;
                        if self.present(&c.key).await?.iter().any(|p| p.tier == t.name) {
                            report.repaired += 1;
                        }
                    }
                    Err(e) => {
                        tracing::error!(tier = t.name, key = %c.key, error = %e, "no good copy to repair from")
                    }
                }
            }
        }
        Ok(report)
    }

    /// Keys of the extents GC has claimed for deletion.
    async fn claimed_by_gc(&self) -> crate::Result<BTreeSet<String>> {
        let mut claimed = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .meta
                .list_extents(after.as_deref(), PAGE)
                .await
                .map_err(meta_err)?;
            let Some(last) = page.last() else {
                return Ok(claimed);
            };
            after = Some(last.key.clone());
            claimed.extend(
                page.into_iter()
                    .filter(|r| r.state == fsx_meta::ExtentState::Deleting)
                    .map(|r| r.key),
            );
        }
    }

    /// Per tier: present copies, bytes, capacity and queue length.
    pub async fn status(&self) -> crate::Result<Vec<TierStatus>> {
        let totals = self.meta.tier_totals().await?;
        Ok(self
            .tiers
            .iter()
            .map(|t| {
                let tot = totals.iter().find(|x| x.tier == t.name);
                TierStatus {
                    tier: t.name.to_string(),
                    store: t.meter.inner().to_string(),
                    count: tot.map_or(0, |x| x.count),
                    bytes: tot.map_or(0, |x| x.bytes),
                    capacity: match t.name {
                        HOT => self.policy.hot_capacity_bytes,
                        KV => self.policy.kv_capacity_bytes,
                        _ => None,
                    },
                    queued: tot.map_or(0, |x| x.queued),
                    max_object_size: t.caps().max_object_size,
                }
            })
            .collect())
    }

    /// Page `index` of extent `key` by one range read from cold, verified
    /// against its page digest: `Some(None)` for a hole, `Some(Some(page))`
    /// for a page, `None` when this path does not apply and the caller
    /// reads the whole extent instead — a faster tier holds a copy, the
    /// cold copy is not confirmed, cold has no range support, the extent
    /// has no digests (compressed, or written before tiering), or the page
    /// failed its digest (reported; the whole-extent read then verifies,
    /// repairs or fails).
    pub async fn read_page(
        &self,
        key: &str,
        index: u32,
        page_size: u32,
    ) -> fsx_store::Result<Option<Option<Bytes>>> {
        let cold = self.cold();
        if !cold.caps().supports_range {
            return Ok(None);
        }
        let present = self.present(key).await?;
        if present.iter().any(|c| c.tier != COLD) || !present.iter().any(|c| c.tier == COLD) {
            return Ok(None);
        }
        let Some(digests) = self.meta.extent_digests(key).await.map_err(meta_err)? else {
            return Ok(None);
        };
        let count = digests.len() / DIGEST_LEN;
        let idx = index as usize;
        let digest_of = |i: usize| &digests[i * DIGEST_LEN..(i + 1) * DIGEST_LEN];
        if idx >= count || digest_of(idx) == [0u8; DIGEST_LEN] {
            return Ok(Some(None));
        }
        // The page's offset follows from which pages are present, which
        // the digests (metadata, trusted) record: no header read needed.
        let rank = (0..idx)
            .filter(|&i| digest_of(i) != [0u8; DIGEST_LEN])
            .count() as u64;
        let ps = u64::from(page_size);
        let start = (fsx_format::HEADER_LEN + count.div_ceil(8)) as u64 + rank * ps;
        let okey = ObjectKey::new(key)?;
        let page = match cold.store.get_range(&okey, start..start + ps).await {
            Ok(p) => p,
            Err(e) if e.kind() == StoreKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if page.len() as u64 == ps && page_digest(index, &page) == digest_of(idx) {
            if let Err(e) = self.meta.touch_extent(key, 1, self.env.now_ms()).await {
                tracing::warn!(%key, error = %e, "could not record an access");
            }
            return Ok(Some(Some(page)));
        }
        cold.corrupt.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(tier = COLD, %key, index, "a page read by range failed its digest; reading the whole extent");
        Ok(None)
    }

    fn cold(&self) -> &Tier {
        &self.tiers[self.tiers.len() - 1]
    }

    async fn tiered_get(&self, key: &ObjectKey) -> fsx_store::Result<Bytes> {
        let (idx, blob) = self.read_verified(key, None).await?;
        self.fill(idx, key, &blob).await;
        Ok(blob)
    }

    async fn tiered_put(&self, key: &ObjectKey, value: Bytes) -> fsx_store::Result<()> {
        let land = self.landing();
        let len = value.len() as u64;
        self.capabilities.check_put_size(key, value.len())?;
        // Digests first: a put whose digests are missing would only lose
        // the range-read path, but digests of an extent that was never
        // stored are forgotten with its record by GC.
        if let Some(digests) = page_digests(&value) {
            self.meta
                .set_extent_digests(key.as_str(), &digests)
                .await
                .map_err(meta_err)?;
        }
        self.write_copy(land, key, value).await?;
        let mut marks = vec![TierMark::new(
            key.as_str(),
            self.tiers[land].name,
            len,
            CopyState::Present,
        )];
        if self.tiers[land].name != COLD {
            marks.push(TierMark::new(key.as_str(), COLD, len, CopyState::Queued));
        }
        if self.policy.kv_on_write && self.has(KV) {
            marks.push(TierMark::new(key.as_str(), KV, len, CopyState::Queued));
        }
        self.meta
            .tier_record(&marks, self.env.now_ms())
            .await
            .map_err(meta_err)
    }

    async fn tiered_delete(&self, key: &ObjectKey) -> fsx_store::Result<()> {
        for t in &self.tiers {
            t.store.delete(key).await?;
        }
        self.meta
            .tier_forget(key.as_str(), None)
            .await
            .map_err(meta_err)
    }

    async fn tiered_head(&self, key: &ObjectKey) -> fsx_store::Result<ObjectMeta> {
        // Only a recorded durable copy counts: an unrecorded hot copy left
        // by a crash between its put and its records must be put again, so
        // that its cold replication is queued.
        let present = self.present(key.as_str()).await?;
        if let Some(c) = present.iter().find(|c| {
            self.index(&c.tier)
                .is_some_and(|i| !self.tiers[i].caps().may_evict)
        }) {
            return Ok(ObjectMeta::new(key.clone(), c.bytes));
        }
        self.cold().store.head(key).await
    }

    async fn tiered_range(&self, key: &ObjectKey, range: Range<u64>) -> fsx_store::Result<Bytes> {
        let present = self.present(key.as_str()).await?;
        for t in &self.tiers {
            if !(present.iter().any(|c| c.tier == t.name) || t.name == COLD) {
                continue;
            }
            match t.store.get_range(key, range.clone()).await {
                Err(e) if e.kind() == StoreKind::NotFound || e.kind() == StoreKind::Unavailable => {
                    if t.name == COLD {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
        Err(StoreError::not_found(format!("{key} is in no tier")))
    }
}

impl ExtentBackend for TieredStore {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// A verified copy from the fastest tier holding one (see the module
    /// docs). Non-extent keys come from cold, unverified, as any store's.
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<Bytes>> {
        Box::pin(async move {
            if is_content(key) {
                self.tiered_get(key).await
            } else {
                self.cold().store.get(key).await
            }
        })
    }

    /// Bytes of the copy in the fastest tier that records one (or cold).
    /// A range cannot be checked against the content key, which covers the
    /// whole blob: callers that need verified bytes use `get`.
    fn get_range<'a>(
        &'a self,
        key: &'a ObjectKey,
        range: Range<u64>,
    ) -> BoxFuture<'a, fsx_store::Result<Bytes>> {
        Box::pin(async move {
            if is_content(key) {
                self.tiered_range(key, range).await
            } else {
                self.cold().store.get_range(key, range).await
            }
        })
    }

    /// Lands an extent in the durability tier and queues its replication,
    /// in that order (see the module docs).
    fn put<'a>(&'a self, key: &'a ObjectKey, value: Bytes) -> BoxFuture<'a, fsx_store::Result<()>> {
        Box::pin(async move {
            if is_content(key) {
                self.tiered_put(key, value).await
            } else {
                self.cold().store.put(key, value).await
            }
        })
    }

    /// Deletes from every tier, then forgets the records (GC's path).
    fn delete<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<()>> {
        Box::pin(async move {
            if is_content(key) {
                self.tiered_delete(key).await
            } else {
                self.cold().store.delete(key).await
            }
        })
    }

    fn head<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, fsx_store::Result<ObjectMeta>> {
        Box::pin(async move {
            if is_content(key) {
                self.tiered_head(key).await
            } else {
                self.cold().store.head(key).await
            }
        })
    }

    /// Cold's listing: every extent ends up there, and extents not yet
    /// replicated always have records (they were pinned before upload), so
    /// GC's orphan scan needs nothing else.
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, fsx_store::Result<ListPage>> {
        self.cold().store.list(request)
    }
}
