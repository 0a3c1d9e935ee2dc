//! Tier commands: `fsx tier status|promote|demote|config|replicate|scrub`
//! and `fsx cost`.
//!
//! A volume's tiers are configured in its metadata settings (`tier.*`, see
//! `fsx_engine::tier::TierConfig`), so every process that opens the volume
//! composes the same tiers; this module opens the KV and cache URLs with
//! `fsx_store::open_backend` and the hot tier from the metadata engine.
//! Commands that open a tiered volume drain the replication queue before
//! they exit, so a command line user never leaves copies queued for long.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use fsx_engine::tier::cost::{PRICES, PriceTable, compute};
use fsx_engine::tier::{COLD, HOT, KV, TierConfig, TierSet};
use fsx_engine::{SystemEnv, Volume, VolumeOptions};
use fsx_volume::{VolumeFile, resolve};

/// Tier options of `fsx init` and `fsx tier config`.
#[derive(Args, Debug, Default, Clone)]
pub struct TierArgs {
    /// Hot tier: `meta` keeps new extents as rows of the metadata database
    /// (the durability point; replicated to the data store in the
    /// background), `none` writes them to the data store directly.
    #[arg(long, value_name = "meta|none")]
    pub hot: Option<String>,
    /// KV tier URL (redis://host:port/db?prefix=…&write_interval_ms=1000),
    /// or `none`.
    #[arg(long, value_name = "URL")]
    pub kv: Option<String>,
    /// Cache tier URL (lru://?capacity=BYTES, diskcache:///dir?capacity=BYTES),
    /// or `none`.
    #[arg(long, value_name = "URL")]
    pub cache: Option<String>,
    /// Bytes the hot tier may hold (e.g. 512M); 0 = unlimited.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub hot_capacity: Option<u64>,
    /// Bytes the KV tier may hold; 0 = unlimited.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub kv_capacity: Option<u64>,
    /// Reads after which an extent is warm and copied to KV; 0 = never.
    #[arg(long, value_name = "N")]
    pub kv_min_hits: Option<u64>,
    /// Copy every new extent to KV too.
    #[arg(long, value_name = "BOOL")]
    pub kv_on_write: Option<bool>,
    /// Override a price of `fsx cost` (NAME=VALUE; `fsx cost --prices`
    /// lists the names).
    #[arg(long = "price", value_name = "NAME=VALUE")]
    pub prices: Vec<String>,
}

impl TierArgs {
    fn is_empty(&self) -> bool {
        self.hot.is_none()
            && self.kv.is_none()
            && self.cache.is_none()
            && self.hot_capacity.is_none()
            && self.kv_capacity.is_none()
            && self.kv_min_hits.is_none()
            && self.kv_on_write.is_none()
            && self.prices.is_empty()
    }
}

/// `fsx tier …`.
#[derive(Subcommand)]
pub enum TierCommand {
    /// Per tier: extent count and bytes, capacity, replication queue.
    Status {
        /// The volume directory.
        path: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Copy the extents of file NAME (or of every file) into a faster tier.
    Promote {
        /// The volume directory.
        path: PathBuf,
        /// A file in the volume (default: every extent).
        name: Option<String>,
        /// Target tier (default: kv if configured, else hot).
        #[arg(long)]
        to: Option<String>,
    },
    /// Remove the extents of file NAME (or of every file) from the faster
    /// tiers; only copies whose cold copy is confirmed are removed.
    Demote {
        /// The volume directory.
        path: PathBuf,
        /// A file in the volume (default: every extent).
        name: Option<String>,
        /// Tier to leave (default: every tier above cold).
        #[arg(long)]
        from: Option<String>,
    },
    /// Change the volume's tier configuration.
    Config {
        /// The volume directory.
        path: PathBuf,
        #[command(flatten)]
        args: TierArgs,
    },
    /// Work through the replication queue now, then evict what exceeds a
    /// tier's capacity.
    Replicate {
        /// The volume directory.
        path: PathBuf,
    },
    /// Read and verify every recorded copy in every tier, repairing bad
    /// ones from a good copy. Exits 1 if a bad copy could not be repaired.
    Scrub {
        /// The volume directory.
        path: PathBuf,
    },
}

/// `fsx cost`.
#[derive(Args)]
pub struct CostArgs {
    /// The volume directory.
    path: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Override a price for this report (NAME=VALUE).
    #[arg(long = "price", value_name = "NAME=VALUE")]
    prices: Vec<String>,
    /// List the price names, defaults and the values in use.
    #[arg(long = "prices")]
    list_prices: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size (examples: 512M, 1G, 0)"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The tiers a volume's settings name, opened (`None` when untiered).
pub async fn tier_set(meta: &Arc<dyn fsx_meta::MetaEngine>) -> anyhow::Result<Option<TierSet>> {
    Ok(TierSet::from_settings(meta, &|url| fsx_store::open_backend(url)).await?)
}

/// Opens the volume in `path` with the tiers its settings configure.
pub async fn open_tiered(path: &Path) -> anyhow::Result<Volume> {
    let dir = fsx_volume::absolute(path)?;
    let file = VolumeFile::read(&dir)?;
    let meta = file.open_meta(&dir, false).await?;
    let store = fsx_volume::open_store(&resolve(&dir, &file.store))?;
    let tiers = tier_set(&meta).await?;
    Volume::open(
        meta,
        store,
        Arc::new(SystemEnv::new()),
        VolumeOptions::default().tiers(tiers),
    )
    .await
    .with_context(|| format!("cannot open the volume in {}", dir.display()))
}

/// Applies `args` to the volume's tier configuration (for `fsx init` and
/// `fsx tier config`); checks the URLs open before saving anything.
pub async fn configure(
    meta: &Arc<dyn fsx_meta::MetaEngine>,
    args: &TierArgs,
) -> anyhow::Result<()> {
    let mut config = TierConfig::load(meta.as_ref()).await?;
    if let Some(h) = &args.hot {
        config.hot = match h.as_str() {
            "meta" => true,
            "none" => false,
            _ => bail!("--hot takes meta or none, not {h:?}"),
        };
    }
    let url = |u: &String| (u != "none" && !u.is_empty()).then(|| u.clone());
    if let Some(u) = &args.kv {
        config.kv_url = url(u);
    }
    if let Some(u) = &args.cache {
        config.cache_url = url(u);
    }
    let p = config.policy.clone();
    let mut p = p;
    if let Some(c) = args.hot_capacity {
        p = p.hot_capacity_bytes((c > 0).then_some(c));
    }
    if let Some(c) = args.kv_capacity {
        p = p.kv_capacity_bytes((c > 0).then_some(c));
    }
    if let Some(n) = args.kv_min_hits {
        p = p.kv_min_hits(n);
    }
    if let Some(b) = args.kv_on_write {
        p = p.kv_on_write(b);
    }
    config.policy = p;
    for (what, u) in [("KV", &config.kv_url), ("cache", &config.cache_url)] {
        if let Some(u) = u {
            fsx_store::open_backend(u).with_context(|| {
                format!("cannot use {:?} as the {what} tier", fsx_store::redact(u))
            })?;
        }
    }
    if config.hot && meta.hot_tier(config.hot_max_row_bytes)?.is_none() {
        bail!("this metadata engine has no hot tier");
    }
    let mut prices = PriceTable::load(meta.as_ref()).await?;
    let mut price_settings = Vec::new();
    for kv in &args.prices {
        let (name, value) = kv
            .split_once('=')
            .with_context(|| format!("--price takes NAME=VALUE, not {kv:?}"))?;
        prices.set(name, value)?;
        price_settings.push((format!("cost.{name}"), value.to_string()));
    }
    config.save(meta.as_ref()).await?;
    for (name, value) in price_settings {
        meta.set_setting(&name, &value).await?;
    }
    Ok(())
}

/// Runs `fsx tier …`.
pub fn run(cmd: TierCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(run_async(cmd))
}

fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Content keys of file `name`'s extents, or of every referenced extent.
async fn extent_keys(v: &Volume, name: Option<&str>) -> anyhow::Result<Vec<String>> {
    let meta = v.meta();
    match name {
        Some(name) => {
            let f = v.stat(name).await?;
            let pages = f.size.div_ceil(u64::from(f.page_size));
            let map = meta
                .read_map(v.view(), f.id, 0, pages, v.pages_per_extent(f.page_size))
                .await?;
            Ok(map.extents.into_iter().map(|(_, k)| k).collect())
        }
        None => {
            let mut out: Vec<String> = Vec::new();
            loop {
                let page = meta
                    .count_references(out.last().map(String::as_str), 500)
                    .await?;
                if page.is_empty() {
                    return Ok(out);
                }
                out.extend(page.into_iter().map(|(k, _)| k));
            }
        }
    }
}

async fn run_async(cmd: TierCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TierCommand::Config { path, args } => {
            let v = open_tiered(&path).await?;
            if args.is_empty() {
                bail!(
                    "nothing to change: give --hot, --kv, --cache, a capacity, --kv-min-hits, --kv-on-write or --price"
                );
            }
            configure(v.meta(), &args).await?;
            let c = TierConfig::load(v.meta().as_ref()).await?;
            println!("hot:   {}", if c.hot { "meta" } else { "none" });
            let shown = |u: &Option<String>| u.as_deref().map_or("none".into(), fsx_store::redact);
            println!("kv:    {}", shown(&c.kv_url));
            println!("cache: {}", shown(&c.cache_url));
            return Ok(ExitCode::SUCCESS);
        }
        TierCommand::Status { path, json } => {
            let v = open_tiered(&path).await?;
            status(&v, json).await?;
            v.flush_counters().await?;
        }
        TierCommand::Promote { path, name, to } => {
            let v = open_tiered(&path).await?;
            let t = v
                .tiers()
                .context("this volume has no tiers besides its data store; configure them with `fsx tier config`")?;
            let to = to.unwrap_or_else(|| {
                if t.tier_names().contains(&KV) {
                    KV
                } else {
                    HOT
                }
                .to_string()
            });
            let keys = extent_keys(&v, name.as_deref()).await?;
            let mut failed = 0;
            for k in &keys {
                if let Err(e) = t.promote(k, &to).await {
                    eprintln!("fsx: {k}: {e}");
                    failed += 1;
                }
            }
            println!(
                "promoted {} of {} extents to {to}",
                keys.len() - failed,
                keys.len()
            );
            v.flush_counters().await?;
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        TierCommand::Demote { path, name, from } => {
            let v = open_tiered(&path).await?;
            let t = v
                .tiers()
                .context("this volume has no tiers besides its data store")?;
            let froms: Vec<String> = match from {
                Some(f) => vec![f],
                None => t
                    .tier_names()
                    .into_iter()
                    .filter(|n| *n != COLD)
                    .map(String::from)
                    .collect(),
            };
            t.replicate_all().await?;
            let keys = extent_keys(&v, name.as_deref()).await?;
            let mut failed = 0;
            for k in &keys {
                for f in &froms {
                    if let Err(e) = t.demote(k, f).await {
                        eprintln!("fsx: {k} in {f}: {e}");
                        failed += 1;
                    }
                }
            }
            println!("demoted {} extents from {}", keys.len(), froms.join(", "));
            v.flush_counters().await?;
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        TierCommand::Replicate { path } => {
            let v = open_tiered(&path).await?;
            let t = v
                .tiers()
                .context("this volume has no tiers besides its data store")?;
            let r = t.replicate_all().await?;
            let evicted = t.enforce_capacity().await?;
            println!(
                "copied {}, failed {} (rescheduled), dropped {}, evicted {evicted}",
                r.copied, r.failed, r.dropped
            );
            v.flush_counters().await?;
        }
        TierCommand::Scrub { path } => {
            let v = open_tiered(&path).await?;
            let t = v
                .tiers()
                .context("this volume has no tiers besides its data store; `fsx fsck` checks it")?;
            let r = t.scrub().await?;
            for (tier, key) in &r.bad {
                println!("bad copy: {tier} {key}");
            }
            println!(
                "checked {} copies: {} bad, {} repaired",
                r.checked,
                r.bad.len(),
                r.repaired
            );
            v.flush_counters().await?;
            if r.repaired < r.bad.len() as u64 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(v: &Volume, json: bool) -> anyhow::Result<()> {
    let rows = match v.tiers() {
        Some(t) => t.status().await?,
        None => Vec::new(),
    };
    let totals = v.meta().extent_totals().await?;
    if json {
        let tiers: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|r| {
                (
                    r.tier.clone(),
                    serde_json::json!({
                        "store": r.store,
                        "extents": r.count,
                        "bytes": r.bytes,
                        "capacity": r.capacity,
                        "queued": r.queued,
                        "max_object_size": r.max_object_size,
                    }),
                )
            })
            .collect();
        let out = serde_json::json!({
            "volume": v.config().volume_id,
            "tiered": v.tiers().is_some(),
            "tiers": tiers,
            "queue": rows.iter().map(|r| r.queued).sum::<u64>(),
            "extents": { "count": totals.count, "bytes": totals.bytes },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("volume: {}", v.config().volume_id);
    if rows.is_empty() {
        println!(
            "not tiered: every extent is in the data store ({} extents, {})",
            totals.count,
            fmt_bytes(totals.bytes)
        );
        return Ok(());
    }
    println!(
        "{:<6} {:>9} {:>11} {:>11} {:>7}  store",
        "tier", "extents", "bytes", "capacity", "queued"
    );
    for r in &rows {
        println!(
            "{:<6} {:>9} {:>11} {:>11} {:>7}  {}",
            r.tier,
            r.count,
            fmt_bytes(r.bytes),
            r.capacity.map_or("-".to_string(), fmt_bytes),
            r.queued,
            r.store
        );
    }
    println!("queue: {}", rows.iter().map(|r| r.queued).sum::<u64>());
    Ok(())
}

/// Runs `fsx cost`.
pub fn run_cost(args: CostArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let v = open_tiered(&args.path).await?;
        let mut prices = PriceTable::load(v.meta().as_ref()).await?;
        for kv in &args.prices {
            let (name, value) = kv
                .split_once('=')
                .with_context(|| format!("--price takes NAME=VALUE, not {kv:?}"))?;
            prices.set(name, value)?;
        }
        if args.list_prices {
            for &(name, default, what) in PRICES {
                println!("{name:<26} {:>10} (default {default}) {what}", prices.get(name));
            }
            return Ok(ExitCode::SUCCESS);
        }
        let report = compute(&v.cost_inputs().await?, &prices);
        if args.json {
            let tier = |t: &fsx_engine::tier::cost::TierCost| {
                serde_json::json!({
                    "stored_bytes": t.stored_bytes,
                    "operations": t.operations,
                    "storage_usd": t.storage,
                    "operations_usd": t.ops,
                    "total_usd": t.total(),
                })
            };
            let tiers: serde_json::Map<String, serde_json::Value> = report
                .tiers
                .iter()
                .map(|t| (t.tier.clone(), tier(t)))
                .collect();
            let out = serde_json::json!({
                "tiers": tiers,
                "total_usd": report.total(),
                "one_blob_per_page": tier(&report.one_blob_per_page),
                "ratio_to_one_blob_per_page": report.ratio(),
                "prices": prices.entries().collect::<std::collections::BTreeMap<_, _>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!(
                "{:<18} {:>11} {:>12} {:>12} {:>12} {:>12}",
                "", "stored", "operations", "storage $", "ops $", "total $/mo"
            );
            let line = |t: &fsx_engine::tier::cost::TierCost| {
                println!(
                    "{:<18} {:>11} {:>12} {:>12.6} {:>12.6} {:>12.6}",
                    t.tier,
                    fmt_bytes(t.stored_bytes),
                    t.operations,
                    t.storage,
                    t.ops,
                    t.total()
                )
            };
            for t in &report.tiers {
                line(t);
            }
            println!("{:<18} {:>63.6}", "total (tiered)", report.total());
            line(&report.one_blob_per_page);
            match report.ratio() {
                Some(r) => println!("tiered / one-blob-per-page: {r:.4}"),
                None => println!("tiered / one-blob-per-page: n/a (no page operations yet)"),
            }
            println!("operations are totals since the volume was created; storage is its current size for one month");
        }
        v.flush_counters().await?;
        Ok(ExitCode::SUCCESS)
    })
}
