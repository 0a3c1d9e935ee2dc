//! Tiered storage: one [`ExtentBackend`] made of up to four stores, read
//! fastest first, written hot first, and kept consistent through durable
//! records in the metadata engine.
//!
//! | tier | typical store | role |
//! |---|---|---|
//! | `cache` | memory LRU, disk cache | may evict at any time; filled on every slower read |
//! | `kv` | Redis / Cloudflare KV | warm copies of frequently read extents; per-key write limit |
//! | `hot` | the metadata engine's own rows | the durability point of new extents when configured |
//! | `cold` | object store / local directory | the bottom tier; holds every extent eventually |
//!
//! # Invariants
//!
//! - **Durable first.** A new extent's `put` returns only after it is in the
//!   hot tier (or, without one, in cold), *and* its copy record and the
//!   replication queue entries (`cold`, plus `kv` if the policy writes new
//!   extents there) are committed in one metadata transaction. The queue is
//!   a table of the metadata engine, so it survives restarts and crashes;
//!   [`TieredStore::replicate`] drains it and reschedules failures with
//!   exponential backoff.
//! - **Never the last copy.** A copy in `hot` or `kv` is removed (evicted or
//!   demoted) only while the `cold` record says the cold copy is present,
//!   and a present record is written only after the copy was written and
//!   verified. Cold copies are removed only by GC.
//! - **Verified or not served.** Every copy read whole is checked against its
//!   content key before it is returned. A copy that fails is reported (a
//!   `warn` log and the `corrupt` counter of its tier), the next tier is
//!   read, and the bad copy is overwritten in place with the good bytes
//!   (through the KV write-rate guard for `kv`).
//! - **Write-rate limits are respected before the store is asked.** A tier
//!   that declares a per-key write interval is never sent two writes of one
//!   key inside it by this process: a fill or repair that would is deferred
//!   through the queue instead.
//! - **Object-size limits.** A copy larger than a tier's declared maximum is
//!   never attempted there; the queue entry is dropped with a log line.
//!
//! - **Single pages by range, verified.** When an extent lands, the digest
//!   of each of its pages (8 bytes of SHA-256 over the page index and
//!   bytes) is stored in the metadata. A one-page read of an extent that
//!   only cold holds ([`TieredStore::read_page`]) fetches just that page
//!   with a range read and serves it only if it matches its digest; any
//!   doubt (no digests, compressed extent, mismatch) falls back to the
//!   verified whole-extent read. The whole extent is not fetched in the
//!   background (nothing is spawned here); the next multi-page read of it
//!   fetches and caches it.
//!
//! Keys outside the content-key namespace (the volume marker) are not
//! tiered: they live in `cold` only.
//!
//! The module is runtime-free: nothing is spawned. Replication, eviction
//! and scrubbing run when a caller drives them ([`TieredStore::replicate`],
//! [`TieredStore::enforce_capacity`], [`TieredStore::scrub`]); the CLI does
//! after each command, a server would on a timer.

mod config;
pub mod cost;
mod store;

pub use config::{DEFAULT_HOT_MAX_ROW, TierConfig, TierPolicy};
pub use store::{ReplicationReport, ScrubReport, TierStatus, TieredStore};

use std::sync::Arc;

use fsx_meta::MetaEngine;
use fsx_store::ExtentBackend;

use crate::error::{Error, Result};

/// Opens a store from a URL. Composition roots pass
/// `fsx_store::open_backend`; the engine itself never names a backend.
pub type OpenStore<'a> =
    &'a (dyn Fn(&str) -> fsx_store::Result<Arc<dyn ExtentBackend>> + Send + Sync);

/// Name of the cache tier in records, counters and the CLI.
pub const CACHE: &str = "cache";
/// Name of the KV tier.
pub const KV: &str = "kv";
/// Name of the hot tier.
pub const HOT: &str = "hot";
/// Name of the cold tier (a volume's data store).
pub const COLD: &str = crate::volume::DATA_TIER;

/// The faster tiers of a volume, composed by the caller (only composition
/// roots name concrete backends); the cold tier is the volume's data store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TierSet {
    /// A cache that may evict at any time.
    pub cache: Option<Arc<dyn ExtentBackend>>,
    /// A KV store.
    pub kv: Option<Arc<dyn ExtentBackend>>,
    /// The hot tier (normally the metadata engine's own,
    /// [`fsx_meta::MetaTiers::hot_tier`]).
    pub hot: Option<Arc<dyn ExtentBackend>>,
    /// Placement policy.
    pub policy: TierPolicy,
}

impl TierSet {
    /// No faster tiers: every extent lives in cold only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the cache tier.
    pub fn cache(mut self, store: Option<Arc<dyn ExtentBackend>>) -> Self {
        self.cache = store;
        self
    }

    /// Sets the KV tier.
    pub fn kv(mut self, store: Option<Arc<dyn ExtentBackend>>) -> Self {
        self.kv = store;
        self
    }

    /// Sets the hot tier.
    pub fn hot(mut self, store: Option<Arc<dyn ExtentBackend>>) -> Self {
        self.hot = store;
        self
    }

    /// Sets the policy.
    pub fn policy(mut self, policy: TierPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl TierSet {
    /// The tiers a volume's settings ask for ([`TierConfig`]), or `None`
    /// when it has none besides cold. KV and cache URLs are opened with
    /// `open`; the hot tier is the metadata engine's own.
    pub async fn from_settings(
        meta: &Arc<dyn MetaEngine>,
        open: OpenStore<'_>,
    ) -> Result<Option<TierSet>> {
        let config = TierConfig::load(meta.as_ref()).await?;
        if !config.is_tiered() {
            return Ok(None);
        }
        let open_url =
            |what: &str, url: &Option<String>| -> Result<Option<Arc<dyn ExtentBackend>>> {
                url.as_deref()
                    .map(|u| {
                        open(u).map_err(|e| {
                            Error::invalid(format!(
                                "cannot open the {what} tier {:?}: {e}",
                                fsx_store::redact(u)
                            ))
                            .with_source(e)
                        })
                    })
                    .transpose()
            };
        let hot = if config.hot {
            let hot = meta.hot_tier(config.hot_max_row_bytes)?;
            if hot.is_none() {
                return Err(Error::invalid(format!(
                    "the metadata engine {meta:?} has no hot tier; set tier.hot to none"
                )));
            }
            hot
        } else {
            None
        };
        Ok(Some(
            TierSet::new()
                .cache(open_url(CACHE, &config.cache_url)?)
                .kv(open_url(KV, &config.kv_url)?)
                .hot(hot)
                .policy(config.policy),
        ))
    }
}

impl crate::Volume {
    /// The inputs of `fsx cost`, read from the metadata (this process's
    /// counters flushed first).
    pub async fn cost_inputs(&self) -> Result<cost::CostInputs> {
        let stats = self.stats().await?;
        let meta = self.meta();
        let tier_bytes = meta
            .tier_totals()
            .await?
            .into_iter()
            .map(|t| (t.tier, t.bytes))
            .collect();
        let config = TierConfig::load(meta.as_ref()).await?;
        Ok(cost::CostInputs {
            counters: stats.counters,
            tier_bytes,
            extent_bytes: stats.extents.bytes,
            file_bytes: stats.files.iter().map(|f| f.size).sum(),
            hot_max_row: config.hot_max_row_bytes as u64,
        })
    }
}
