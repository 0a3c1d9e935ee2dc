//! Volume creation and opening, settings and operation counters, written
//! once for every engine ([`crate::contract::MetaSettings`]).

use std::collections::BTreeMap;

use super::{Column, Lock, Tx, args, corrupt};
use crate::contract::{Counter, VolumeConfig, check_setting_name};
use crate::error::{MetaError, MetaErrorKind, Result};
use crate::{SCHEMA_VERSION, check_extent_size, num};

/// The statements of this family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Q {
    /// `(key, value)`: a new setting.
    InsertSetting,
    /// `(created_ms)`: every layer's creation time (at init).
    StampLayers,
    /// `(created_ms)`: every branch's creation and commit time (at init).
    StampBranches,
    /// `(key) → value`.
    Setting,
    /// `(key, value)`: sets a setting, replacing its value.
    UpsertSetting,
    /// `(tier, op, calls, bytes)` per row: adds to a counter.
    AddCounters,
    /// `→ bool`: whether the volume's tables exist.
    HasTables,
    /// `(limit) → layer, file_id, page_no, data` of dirty pages without a
    /// checksum (written before schema version 5).
    UncheckedPages,
    /// `(layer, file_id, page_no, crc)`.
    SetPageCrc,
    /// `→ tier, op, calls, bytes`, by tier and op.
    Counters,
}

/// The schema version that added dirty-page checksums, which its migration
/// computes for the pages already there.
const CHECKSUMS_SINCE: u32 = 5;

/// The schema version that added the file tree, whose migration makes the
/// root and turns the flat names into entries.
const TREE_SINCE: u32 = 6;

/// The schema version of the volume's tables; 0 when there are none.
pub(crate) async fn schema_version(tx: &impl Tx) -> Result<u32> {
    if !tx
        .query_one(Q::HasTables.into(), &[])
        .await?
        .bool(0, "tables exist")?
    {
        return Ok(0);
    }
    let v = match tx
        .query_opt(Q::Setting.into(), args!["schema_version"])
        .await?
    {
        Some(r) => r.text(0, "schema_version")?,
        None => return Err(corrupt("fsx_volume has no schema_version")),
    };
    v.parse()
        .map_err(|_| corrupt(format!("schema_version {v:?} is not a number")))
}

/// Creates or upgrades the tables from version `from` to
/// [`SCHEMA_VERSION`], with the data migrations.
pub(crate) async fn migrate(tx: &impl Tx, from: u32) -> Result<()> {
    for (v, sql) in tx.migrations().iter().enumerate().skip(num::u32_len(from)) {
        tracing::info!(from = v, to = v + 1, "migrating metadata schema");
        tx.batch(sql).await?;
        if v + 1 == num::u32_len(CHECKSUMS_SINCE) {
            backfill_page_checksums(tx).await?;
        }
        if v + 1 == num::u32_len(TREE_SINCE) {
            super::tree::migrate_flat_names(tx).await?;
        }
    }
    let version = SCHEMA_VERSION.to_string();
    tx.exec(Q::UpsertSetting.into(), args!["schema_version", &version])
        .await?;
    Ok(())
}

/// Computes the checksum of every dirty page written before there were
/// checksums, a thousand at a time.
async fn backfill_page_checksums(tx: &impl Tx) -> Result<()> {
    loop {
        let rows = tx.query(Q::UncheckedPages.into(), args![1000i64]).await?;
        if rows.is_empty() {
            return Ok(());
        }
        for r in rows {
            let (layer, file) = (r.i64(0, "layer")?, r.i64(1, "file id")?);
            let page = r.u64(2, "page number")?;
            let data = r.opt_blob(3, "page data")?;
            // The same bits the write path hashes.
            let crc = crate::checksum::page_checksum(file, page, data.as_deref());
            tx.exec(
                Q::SetPageCrc.into(),
                args![layer, file, num::bound(page), crc],
            )
            .await?;
        }
    }
}

/// A setting the volume cannot lack.
pub(crate) async fn get_setting(tx: &impl Tx, key: &str) -> Result<String> {
    match tx.query_opt(Q::Setting.into(), args![key]).await? {
        Some(r) => r.text(0, "setting value"),
        None => Err(corrupt(format!("volume setting {key} is missing"))),
    }
}

async fn parse_setting<T: std::str::FromStr>(tx: &impl Tx, key: &str) -> Result<T> {
    let v = get_setting(tx, key).await?;
    v.parse()
        .map_err(|_| corrupt(format!("volume setting {key}={v:?} is malformed")))
}

pub(crate) async fn init_volume(tx: &impl Tx, config: &VolumeConfig) -> Result<()> {
    check_extent_size(config.extent_size)?;
    tx.lock(Lock::Volume).await?;
    if schema_version(tx).await? != 0 {
        return Err(MetaError::new(
            MetaErrorKind::AlreadyExists,
            format!("{} already holds an fsx volume", tx.location()),
        ));
    }
    migrate(tx, 0).await?;
    let extent_size = config.extent_size.to_string();
    let created = config.created_ms.to_string();
    for (k, v) in [
        ("volume_id", config.volume_id.as_str()),
        ("extent_size", &extent_size),
        ("store_url", &config.store_url),
        ("created_ms", &created),
    ] {
        tx.exec(Q::InsertSetting.into(), args![k, v]).await?;
    }
    tx.exec(Q::StampLayers.into(), args![config.created_ms])
        .await?;
    tx.exec(Q::StampBranches.into(), args![config.created_ms])
        .await?;
    Ok(())
}

/// Opens the volume, migrating an older schema unless `read_only` (then
/// an older schema is `Unsupported`: upgrading it needs writing).
pub(crate) async fn open_volume(tx: &impl Tx, read_only: bool) -> Result<VolumeConfig> {
    tx.lock(Lock::Volume).await?;
    let version = schema_version(tx).await?;
    if crate::schema_verdict(version, &tx.location())? {
        if read_only {
            return Err(MetaError::new(
                MetaErrorKind::Unsupported,
                format!(
                    "{} is metadata version {version} and needs upgrading to {SCHEMA_VERSION}, \
                     which needs writing it: open the volume once where it is writable",
                    tx.location()
                ),
            ));
        }
        migrate(tx, version).await?;
    }
    let config = VolumeConfig {
        volume_id: get_setting(tx, "volume_id").await?,
        extent_size: parse_setting(tx, "extent_size").await?,
        store_url: get_setting(tx, "store_url").await?,
        created_ms: parse_setting(tx, "created_ms").await?,
    };
    check_extent_size(config.extent_size).map_err(|e| corrupt(e.message().to_string()))?;
    Ok(config)
}

pub(crate) async fn setting(tx: &impl Tx, name: &str) -> Result<Option<String>> {
    tx.query_opt(Q::Setting.into(), args![name])
        .await?
        .map(|r| r.text(0, "setting value"))
        .transpose()
}

pub(crate) async fn set_setting(tx: &impl Tx, name: &str, value: &str) -> Result<()> {
    check_setting_name(name)?;
    tx.exec(Q::UpsertSetting.into(), args![name, value]).await?;
    Ok(())
}

pub(crate) async fn add_counters(tx: &impl Tx, deltas: &[Counter]) -> Result<()> {
    // One row per counter, in key order: a batch may name one twice, and
    // concurrent writers then lock rows in one order.
    let mut sums: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for d in deltas {
        let s = sums.entry((&d.tier, &d.op)).or_default();
        s.0 = s.0.saturating_add(num::to_sql(d.calls, "counter calls")?);
        s.1 = s.1.saturating_add(num::to_sql(d.bytes, "counter bytes")?);
    }
    if sums.is_empty() {
        return Ok(());
    }
    let columns = [
        Column::Texts(sums.keys().map(|k| k.0).collect()),
        Column::Texts(sums.keys().map(|k| k.1).collect()),
        Column::Ints(sums.values().map(|v| v.0).collect()),
        Column::Ints(sums.values().map(|v| v.1).collect()),
    ];
    tx.exec_each(Q::AddCounters.into(), &[], &columns).await?;
    Ok(())
}

pub(crate) async fn counters(tx: &impl Tx) -> Result<Vec<Counter>> {
    tx.query(Q::Counters.into(), &[])
        .await?
        .iter()
        .map(|r| {
            Ok(Counter {
                tier: r.text(0, "counter tier")?,
                op: r.text(1, "counter op")?,
                calls: r.u64(2, "counter calls")?,
                bytes: r.u64(3, "counter bytes")?,
            })
        })
        .collect()
}

/// `impl MetaSettings for $engine`: each method one transaction of the
/// engine's `run` over the function above (`$mode`: see [`super::run`]). The engine provides
/// `is_read_only()`; on read-only media opening reads and counting is
/// skipped (statistics are best effort; a read must not fail for want of
/// a place to count it).
macro_rules! impl_meta_settings {
    ($engine:ty, $mode:ident) => {
        $crate::logic::contract_impl! {
            impl MetaSettings for $engine {
                fn init_volume<'a>(
                    &'a self,
                    config: &'a VolumeConfig,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| settings::init_volume(tx, config)
                        .await)
                }

                fn open_volume(&self) -> BoxFuture<'_, Result<VolumeConfig>> {
                    let read_only = self.is_read_only();
                    let kind = if read_only { Read } else { Write };
                    run!($mode, self, kind, |tx| settings::open_volume(tx, read_only)
                        .await)
                }

                fn setting<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
                    run!($mode, self, Read, |tx| settings::setting(tx, name).await)
                }

                fn set_setting<'a>(
                    &'a self,
                    name: &'a str,
                    value: &'a str,
                ) -> BoxFuture<'a, Result<()>> {
                    run!($mode, self, Write, |tx| settings::set_setting(
                        tx, name, value
                    )
                    .await)
                }

                fn add_counters<'a>(&'a self, deltas: &'a [Counter]) -> BoxFuture<'a, Result<()>> {
                    if self.is_read_only() {
                        return Box::pin(async { Ok(()) });
                    }
                    run!($mode, self, Write, |tx| settings::add_counters(tx, deltas)
                        .await)
                }

                fn counters(&self) -> BoxFuture<'_, Result<Vec<Counter>>> {
                    run!($mode, self, Read, |tx| settings::counters(tx).await)
                }
            }
        }
    };
}
pub(crate) use impl_meta_settings;
