//! A volume's tier configuration, kept in its metadata settings so every
//! process that opens the volume composes the same tiers.
//!
//! | setting | meaning | default |
//! |---|---|---|
//! | `tier.hot` | `meta` (the metadata engine's hot tier) or `none` | `none` |
//! | `tier.hot_max_row` | the hot tier's row limit in bytes | 2,000,000 |
//! | `tier.kv` | URL of the KV store, empty for none | empty |
//! | `tier.cache` | URL of the cache store, empty for none | empty |
//! | `tier.hot_capacity` | bytes the hot tier may hold, 0 = unlimited | 0 |
//! | `tier.kv_capacity` | bytes the KV tier may hold, 0 = unlimited | 0 |
//! | `tier.kv_min_hits` | reads of an extent that make it warm (copied to KV), 0 = never | 3 |
//! | `tier.kv_on_write` | new extents are queued for KV too | `false` |
//! | `tier.retry_base_ms` / `tier.retry_max_ms` | replication backoff | 1,000 / 300,000 |
//!
//! URLs are opened by the composition root (the CLI), never here.

use fsx_meta::MetaEngine;

use crate::error::{Error, Result};

/// Default row limit of the hot tier: a Durable Object's 2 MB per row (the
/// same value as `fsx_meta::hot::DEFAULT_MAX_ROW_BYTES`, which is only
/// compiled with an engine feature).
pub const DEFAULT_HOT_MAX_ROW: usize = 2_000_000;

/// Placement policy of a tiered volume.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierPolicy {
    /// Bytes the hot tier may hold; above it, extents whose cold copy is
    /// confirmed are evicted, least recently read first.
    pub hot_capacity_bytes: Option<u64>,
    /// Bytes the KV tier may hold; promotions beyond it are skipped and
    /// [`super::TieredStore::enforce_capacity`] evicts the coldest.
    pub kv_capacity_bytes: Option<u64>,
    /// Reads (that missed the in-memory cache) after which an extent is
    /// warm and queued for KV; 0 disables promotion on reads.
    pub kv_min_hits: u64,
    /// Queue every new extent for KV as well as cold.
    pub kv_on_write: bool,
    /// First retry delay of a failed copy; doubled per attempt.
    pub retry_base_ms: i64,
    /// Largest retry delay.
    pub retry_max_ms: i64,
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self {
            hot_capacity_bytes: None,
            kv_capacity_bytes: None,
            kv_min_hits: 3,
            kv_on_write: false,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
        }
    }
}

impl TierPolicy {
    /// Sets the hot tier's capacity.
    pub fn hot_capacity_bytes(mut self, bytes: Option<u64>) -> Self {
        self.hot_capacity_bytes = bytes;
        self
    }

    /// Sets the KV tier's capacity.
    pub fn kv_capacity_bytes(mut self, bytes: Option<u64>) -> Self {
        self.kv_capacity_bytes = bytes;
        self
    }

    /// Sets the reads that make an extent warm.
    pub fn kv_min_hits(mut self, hits: u64) -> Self {
        self.kv_min_hits = hits;
        self
    }

    /// Sets whether new extents go to KV too.
    pub fn kv_on_write(mut self, yes: bool) -> Self {
        self.kv_on_write = yes;
        self
    }

    /// Sets the replication backoff.
    pub fn retry(mut self, base_ms: i64, max_ms: i64) -> Self {
        self.retry_base_ms = base_ms.max(1);
        self.retry_max_ms = max_ms.max(self.retry_base_ms);
        self
    }

    /// Delay before attempt `attempts + 1` of a copy that failed `attempts`
    /// times: `base · 2^attempts`, capped.
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let factor = 1i64.checked_shl(attempts.min(32)).unwrap_or(i64::MAX);
        self.retry_base_ms
            .saturating_mul(factor)
            .min(self.retry_max_ms)
    }
}

/// What a volume's settings say about its tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierConfig {
    /// Use the metadata engine's hot tier.
    pub hot: bool,
    /// The hot tier's row limit.
    pub hot_max_row_bytes: usize,
    /// URL of the KV store.
    pub kv_url: Option<String>,
    /// URL of the cache store.
    pub cache_url: Option<String>,
    /// Placement policy.
    pub policy: TierPolicy,
}

impl Default for TierConfig {
    fn default() -> Self {
        Self {
            hot: false,
            hot_max_row_bytes: DEFAULT_HOT_MAX_ROW,
            kv_url: None,
            cache_url: None,
            policy: TierPolicy::default(),
        }
    }
}

fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "volume setting {name}={value:?} is malformed; fix it with `fsx tier config`"
        ))
    })
}

fn nonzero(v: u64) -> Option<u64> {
    (v > 0).then_some(v)
}

fn url(v: String) -> Option<String> {
    let v = v.trim().to_string();
    (!v.is_empty() && v != "none").then_some(v)
}

impl TierConfig {
    /// Whether any tier besides cold is configured.
    pub fn is_tiered(&self) -> bool {
        self.hot || self.kv_url.is_some() || self.cache_url.is_some()
    }

    /// Reads the configuration from the volume's settings (defaults for
    /// settings never written).
    pub async fn load(meta: &dyn MetaEngine) -> Result<Self> {
        let mut c = Self::default();
        let get = |name: &'static str| async move {
            meta.setting(name)
                .await
                .map(|v| v.map(|v| (name, v)))
                .map_err(Error::from)
        };
        if let Some((n, v)) = get("tier.hot").await? {
            c.hot = match v.as_str() {
                "meta" => true,
                "none" | "" => false,
                _ => {
                    return Err(Error::invalid(format!(
                        "volume setting {n}={v:?} is malformed: use meta or none"
                    )));
                }
            };
        }
        if let Some((n, v)) = get("tier.hot_max_row").await? {
            c.hot_max_row_bytes = parse(n, &v)?;
        }
        if let Some((_, v)) = get("tier.kv").await? {
            c.kv_url = url(v);
        }
        if let Some((_, v)) = get("tier.cache").await? {
            c.cache_url = url(v);
        }
        if let Some((n, v)) = get("tier.hot_capacity").await? {
            c.policy.hot_capacity_bytes = nonzero(parse(n, &v)?);
        }
        if let Some((n, v)) = get("tier.kv_capacity").await? {
            c.policy.kv_capacity_bytes = nonzero(parse(n, &v)?);
        }
        if let Some((n, v)) = get("tier.kv_min_hits").await? {
            c.policy.kv_min_hits = parse(n, &v)?;
        }
        if let Some((n, v)) = get("tier.kv_on_write").await? {
            c.policy.kv_on_write = parse(n, &v)?;
        }
        let base = match get("tier.retry_base_ms").await? {
            Some((n, v)) => parse(n, &v)?,
            None => c.policy.retry_base_ms,
        };
        let max = match get("tier.retry_max_ms").await? {
            Some((n, v)) => parse(n, &v)?,
            None => c.policy.retry_max_ms,
        };
        c.policy = c.policy.retry(base, max);
        Ok(c)
    }

    /// Writes every setting of this configuration.
    pub async fn save(&self, meta: &dyn MetaEngine) -> Result<()> {
        let p = &self.policy;
        let settings = [
            (
                "tier.hot",
                if self.hot { "meta" } else { "none" }.to_string(),
            ),
            ("tier.hot_max_row", self.hot_max_row_bytes.to_string()),
            ("tier.kv", self.kv_url.clone().unwrap_or_default()),
            ("tier.cache", self.cache_url.clone().unwrap_or_default()),
            (
                "tier.hot_capacity",
                p.hot_capacity_bytes.unwrap_or(0).to_string(),
            ),
            (
                "tier.kv_capacity",
                p.kv_capacity_bytes.unwrap_or(0).to_string(),
            ),
            ("tier.kv_min_hits", p.kv_min_hits.to_string()),
            ("tier.kv_on_write", p.kv_on_write.to_string()),
            ("tier.retry_base_ms", p.retry_base_ms.to_string()),
            ("tier.retry_max_ms", p.retry_max_ms.to_string()),
        ];
        for (name, value) in settings {
            meta.set_setting(name, &value).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = TierPolicy::default().retry(100, 1_000);
        assert_eq!(p.backoff_ms(0), 100);
        assert_eq!(p.backoff_ms(1), 200);
        assert_eq!(p.backoff_ms(3), 800);
        assert_eq!(p.backoff_ms(4), 1_000);
        assert_eq!(p.backoff_ms(u32::MAX), 1_000);
    }
}
