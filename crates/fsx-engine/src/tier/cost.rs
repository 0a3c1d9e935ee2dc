//! `fsx cost`: what a volume's storage and operations cost per month, by
//! tier, from its persistent counters and a price table — and what the same
//! page operations would cost with one blob per page (the design the seed
//! compares against), measured from the page counters rather than guessed.
//!
//! # Model
//!
//! | tier | priced as | storage | operations |
//! |---|---|---|---|
//! | `cold` | R2 Standard | bytes of every extent record | put, list: class A; get, get_range, head: class B; delete: free |
//! | `kv` | Workers KV | present KV copies | get: read; put: write; delete: delete; list: list |
//! | `hot` | Durable Object SQLite storage | present hot copies | rows read / written: one per call, or per started `max_row` bytes if more |
//! | `cache` | Cache API | free | free |
//! | one blob per page | R2 Standard | bytes of the files | each page written by `sync`: class A; each page read from storage: class B |
//!
//! Operation counts are totals since the volume was created, so they are
//! priced as one month's worth; storage is priced at its current size for a
//! month. The defaults are Cloudflare's published list prices (without
//! free allowances); every entry can be overridden by a `cost.NAME`
//! setting of the volume.

use std::collections::BTreeMap;

use fsx_meta::{Counter, MetaEngine};

use super::{CACHE, COLD, HOT, KV};
use crate::error::{Error, Result};
use crate::volume::PAGE_COUNTER_TIER;

const GB: f64 = 1e9;
const MILLION: f64 = 1e6;

/// Prices in US dollars: storage per GB-month, operations per million.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable(BTreeMap<&'static str, f64>);

/// `(name, default price, what it is)`.
pub const PRICES: &[(&str, f64, &str)] = &[
    (
        "r2_storage_gb_month",
        0.015,
        "R2 Standard storage, $/GB-month",
    ),
    (
        "r2_class_a_million",
        4.50,
        "R2 class A operations (put, list), $/million",
    ),
    (
        "r2_class_b_million",
        0.36,
        "R2 class B operations (get, head), $/million",
    ),
    (
        "kv_storage_gb_month",
        0.50,
        "Workers KV storage, $/GB-month",
    ),
    ("kv_read_million", 0.50, "Workers KV reads, $/million"),
    ("kv_write_million", 5.00, "Workers KV writes, $/million"),
    ("kv_delete_million", 5.00, "Workers KV deletes, $/million"),
    ("kv_list_million", 5.00, "Workers KV lists, $/million"),
    (
        "do_storage_gb_month",
        0.20,
        "Durable Object SQLite storage, $/GB-month",
    ),
    (
        "do_rows_read_million",
        0.001,
        "Durable Object SQLite rows read, $/million",
    ),
    (
        "do_rows_written_million",
        1.00,
        "Durable Object SQLite rows written, $/million",
    ),
];

impl Default for PriceTable {
    fn default() -> Self {
        Self(PRICES.iter().map(|&(n, p, _)| (n, p)).collect())
    }
}

impl PriceTable {
    /// The defaults with the volume's `cost.NAME` overrides applied.
    pub async fn load(meta: &dyn MetaEngine) -> Result<Self> {
        let mut t = Self::default();
        for &(name, _, _) in PRICES {
            if let Some(v) = meta.setting(&format!("cost.{name}")).await? {
                t.set(name, &v)?;
            }
        }
        Ok(t)
    }

    /// Overrides one price; `InvalidInput` for an unknown name or a value
    /// that is not a non-negative number.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let known = PRICES.iter().find(|p| p.0 == name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown price {name:?}; known: {}",
                PRICES.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let v: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "price {name}={value:?} is not a non-negative number"
                ))
            })?;
        self.0.insert(known.0, v);
        Ok(())
    }

    /// One price.
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// Every price, by name.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }
}

/// One tier's monthly cost.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TierCost {
    /// Tier name, or `one-blob-per-page`.
    pub tier: String,
    /// Bytes stored.
    pub stored_bytes: u64,
    /// Operations counted.
    pub operations: u64,
    /// Storage cost, $/month.
    pub storage: f64,
    /// Operation cost, $.
    pub ops: f64,
}

impl TierCost {
    /// Storage plus operations.
    pub fn total(&self) -> f64 {
        self.storage + self.ops
    }
}

/// The report of `fsx cost`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct CostReport {
    /// Per tier that has storage or operations.
    pub tiers: Vec<TierCost>,
    /// The same page operations with one blob per page.
    pub one_blob_per_page: TierCost,
}

impl CostReport {
    /// Total of the tiers.
    pub fn total(&self) -> f64 {
        self.tiers.iter().map(TierCost::total).sum()
    }

    /// Tiered total over the one-blob-per-page total (`None` if the
    /// baseline costs nothing).
    pub fn ratio(&self) -> Option<f64> {
        let base = self.one_blob_per_page.total();
        (base > 0.0).then(|| self.total() / base)
    }
}

/// Inputs of a cost computation, all read from the volume's metadata.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CostInputs {
    /// Persistent operation counters.
    pub counters: Vec<Counter>,
    /// Present bytes per tier (from the copy records).
    pub tier_bytes: BTreeMap<String, u64>,
    /// Bytes of every extent record (cold holds all of them eventually).
    pub extent_bytes: u64,
    /// Bytes of the files.
    pub file_bytes: u64,
    /// The hot tier's row limit.
    pub hot_max_row: u64,
}

fn calls(counters: &[Counter], tier: &str, ops: &[&str]) -> (u64, u64) {
    counters
        .iter()
        .filter(|c| c.tier == tier && ops.contains(&c.op.as_str()))
        .fold((0, 0), |(n, b), c| (n + c.calls, b + c.bytes))
}

/// Computes the report (pure, so it is unit-tested).
pub fn compute(inputs: &CostInputs, prices: &PriceTable) -> CostReport {
    let c = &inputs.counters;
    let p = |n| prices.get(n);
    let gb = |b: u64| b as f64 / GB;
    let m = |n: u64| n as f64 / MILLION;
    let mut tiers = Vec::new();

    let (a, _) = calls(c, COLD, &["put", "list"]);
    let (b, _) = calls(c, COLD, &["get", "get_range", "head"]);
    let (d, _) = calls(c, COLD, &["delete"]);
    tiers.push(TierCost {
        tier: COLD.into(),
        stored_bytes: inputs.extent_bytes,
        operations: a + b + d,
        storage: gb(inputs.extent_bytes) * p("r2_storage_gb_month"),
        ops: m(a) * p("r2_class_a_million") + m(b) * p("r2_class_b_million"),
    });

    let kv_bytes = inputs.tier_bytes.get(KV).copied().unwrap_or(0);
    let (r, _) = calls(c, KV, &["get", "get_range", "head"]);
    let (w, _) = calls(c, KV, &["put"]);
    let (del, _) = calls(c, KV, &["delete"]);
    let (l, _) = calls(c, KV, &["list"]);
    if kv_bytes + r + w + del + l > 0 {
        tiers.push(TierCost {
            tier: KV.into(),
            stored_bytes: kv_bytes,
            operations: r + w + del + l,
            storage: gb(kv_bytes) * p("kv_storage_gb_month"),
            ops: m(r) * p("kv_read_million")
                + m(w) * p("kv_write_million")
                + m(del) * p("kv_delete_million")
                + m(l) * p("kv_list_million"),
        });
    }

    let hot_bytes = inputs.tier_bytes.get(HOT).copied().unwrap_or(0);
    let rows = |(n, bytes): (u64, u64)| n.max(bytes.div_ceil(inputs.hot_max_row.max(1)));
    let read = calls(c, HOT, &["get", "get_range", "head", "list"]);
    let written = calls(c, HOT, &["put", "delete"]);
    if hot_bytes + read.0 + written.0 > 0 {
        tiers.push(TierCost {
            tier: HOT.into(),
            stored_bytes: hot_bytes,
            operations: read.0 + written.0,
            storage: gb(hot_bytes) * p("do_storage_gb_month"),
            ops: m(rows(read)) * p("do_rows_read_million")
                + m(rows(written)) * p("do_rows_written_million"),
        });
    }

    let (cache_ops, _) = calls(
        c,
        CACHE,
        &["get", "get_range", "put", "delete", "head", "list"],
    );
    if cache_ops > 0 {
        tiers.push(TierCost {
            tier: CACHE.into(),
            operations: cache_ops,
            ..TierCost::default()
        });
    }

    let (pw, _) = calls(c, PAGE_COUNTER_TIER, &["write"]);
    let (pr, _) = calls(c, PAGE_COUNTER_TIER, &["read"]);
    let one_blob_per_page = TierCost {
        tier: "one-blob-per-page".into(),
        stored_bytes: inputs.file_bytes,
        operations: pw + pr,
        storage: gb(inputs.file_bytes) * p("r2_storage_gb_month"),
        ops: m(pw) * p("r2_class_a_million") + m(pr) * p("r2_class_b_million"),
    };
    CostReport {
        tiers,
        one_blob_per_page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(tier: &str, op: &str, calls: u64, bytes: u64) -> Counter {
        Counter {
            tier: tier.into(),
            op: op.into(),
            calls,
            bytes,
        }
    }

    #[test]
    fn prices_tiers_and_the_baseline() {
        let inputs = CostInputs {
            counters: vec![
                counter(COLD, "put", 1_000_000, 0),
                counter(COLD, "get", 2_000_000, 0),
                counter(KV, "put", 1_000_000, 0),
                counter(HOT, "put", 10, 40_000_000),
                counter(PAGE_COUNTER_TIER, "write", 3_000_000, 0),
                counter(PAGE_COUNTER_TIER, "read", 1_000_000, 0),
            ],
            tier_bytes: [(KV.to_string(), 2_000_000_000)].into_iter().collect(),
            extent_bytes: 10_000_000_000,
            file_bytes: 10_000_000_000,
            hot_max_row: 2_000_000,
        };
        let r = compute(&inputs, &PriceTable::default());
        let cold = &r.tiers[0];
        assert!((cold.storage - 0.15).abs() < 1e-9);
        assert!((cold.ops - (4.5 + 0.72)).abs() < 1e-9);
        let kv = r.tiers.iter().find(|t| t.tier == KV).unwrap();
        assert!((kv.total() - (1.0 + 5.0)).abs() < 1e-9);
        // 10 puts of 40 MB in 2 MB rows are 20 rows written.
        let hot = r.tiers.iter().find(|t| t.tier == HOT).unwrap();
        assert!((hot.ops - 20.0 / 1e6).abs() < 1e-12);
        let base = &r.one_blob_per_page;
        assert!((base.total() - (0.15 + 3.0 * 4.5 + 0.36)).abs() < 1e-9);
        assert!(r.ratio().unwrap() < 1.0);
    }

    #[test]
    fn overrides_are_checked() {
        let mut t = PriceTable::default();
        t.set("r2_storage_gb_month", "0.02").unwrap();
        assert_eq!(t.get("r2_storage_gb_month"), 0.02);
        assert!(t.set("nope", "1").is_err());
        assert!(t.set("kv_read_million", "-1").is_err());
        assert!(t.set("kv_read_million", "NaN").is_err());
    }
}
