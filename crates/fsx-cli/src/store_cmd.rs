//! `fsx store check|bench URL`: the operator's view of a storage backend.
//!
//! `check` runs the conformance suite of `fsx_store::conformance` — the same
//! checks every backend's tests run — against the store a URL names, under a
//! fresh key prefix that it cleans up, and prints one line per check and a
//! summary. Exit code 0 only when no check failed.
//!
//! `bench` measures put, get, range-get and delete throughput and latency
//! (p50/p99) at 4 KiB and 2 MiB, with a progress bar on stderr and a table on
//! stdout. It writes only under its own prefix and deletes what it wrote.
//!
//! Both open the store with `fsx_store::open_backend` (URL forms in its
//! docs) and run on their own tokio runtime.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Subcommand;
use fsx_store::conformance::{CheckContext, Outcome, checks, run_check};
use fsx_store::inject::{SplitMix64, TokioSleeper};
use fsx_store::{ExtentBackend, ObjectKey, open_backend};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// Commands on storage backends.
#[derive(Subcommand)]
pub enum StoreCommand {
    /// Run the conformance suite against a store: one PASS/FAIL/SKIP line per
    /// check and a summary. Exits 0 only if no check failed.
    ///
    /// URL forms: memory://, file:///dir, /dir, s3://bucket/prefix?endpoint=…,
    /// redis://host:port/db?prefix=…, lru://?capacity=N,
    /// diskcache:///dir?capacity=N. S3 credentials come from AWS_ACCESS_KEY_ID
    /// and AWS_SECRET_ACCESS_KEY.
    Check {
        /// The store to check.
        url: String,
        /// Key prefix to work under (default: fsx-check/TIME-PID/).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Measure put/get/range-get/delete throughput and latency at 4 KiB and
    /// 2 MiB.
    Bench {
        /// The store to measure.
        url: String,
        /// Number of 4 KiB objects.
        #[arg(long, default_value_t = 500,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
        small_count: usize,
        /// Number of 2 MiB objects.
        #[arg(long, default_value_t = 40,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
        large_count: usize,
        /// Operations in flight at once.
        #[arg(long, default_value_t = 4,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
        concurrency: usize,
        /// Key prefix to work under (default: fsx-bench/TIME-PID/).
        #[arg(long)]
        prefix: Option<String>,
    },
}

/// Runs a store command on a fresh tokio runtime.
pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cmd {
            StoreCommand::Check { url, prefix } => check(&url, prefix).await,
            StoreCommand::Bench {
                url,
                small_count,
                large_count,
                concurrency,
                prefix,
            } => {
                bench(
                    &url,
                    BenchPlan {
                        small_count,
                        large_count,
                        concurrency: concurrency.max(1),
                    },
                    prefix,
                )
                .await
            }
        }
    })
}

fn default_prefix(kind: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("fsx-{kind}/{secs}-{}/", std::process::id())
}

async fn check(url: &str, prefix: Option<String>) -> anyhow::Result<ExitCode> {
    let backend =
        open_backend(url).with_context(|| format!("opening {}", fsx_store::redact(url)))?;
    let prefix = prefix.unwrap_or_else(|| default_prefix("check"));
    let ctx = CheckContext::new(backend.clone(), &prefix, Arc::new(TokioSleeper))
        .with_context(|| format!("prefix {prefix:?}"))?;
    println!("checking {backend} under {prefix}");
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut failed_names = Vec::new();
    for check in checks() {
        let started = Instant::now();
        let report = run_check(check, &ctx).await;
        let secs = started.elapsed().as_secs_f64();
        let (tag, detail) = match &report.outcome {
            Outcome::Passed(note) => {
                passed += 1;
                ("PASS", note)
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                ("SKIP", why)
            }
            Outcome::Failed(why) => {
                failed += 1;
                failed_names.push(report.name);
                ("FAIL", why)
            }
        };
        println!("{tag} {:<26} {secs:>7.2}s  {detail}", report.name);
    }
    let total = passed + failed + skipped;
    println!("{total} checks: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        println!("failed: {}", failed_names.join(", "));
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

struct BenchPlan {
    small_count: usize,
    large_count: usize,
    concurrency: usize,
}

/// One measured phase: latencies of every operation and the bytes moved.
struct Phase {
    op: &'static str,
    size_label: &'static str,
    latencies: Vec<Duration>,
    bytes: u64,
    wall: Duration,
}

impl Phase {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn row(&self) -> String {
        let secs = self.wall.as_secs_f64().max(1e-9);
        format!(
            "{:<10} {:>6} {:>6} {:>10.1} {:>10.0} {:>10.2} {:>10.2}",
            self.op,
            self.size_label,
            self.latencies.len(),
            self.bytes as f64 / secs / 1e6,
            self.latencies.len() as f64 / secs,
            self.percentile(50.0).as_secs_f64() * 1e3,
            self.percentile(99.0).as_secs_f64() * 1e3,
        )
    }
}

#[derive(Clone, Copy)]
enum BenchOp {
    Put,
    Get,
    GetRange { len: u64 },
    Delete,
}

impl BenchOp {
    fn name(self) -> &'static str {
        match self {
            BenchOp::Put => "put",
            BenchOp::Get => "get",
            BenchOp::GetRange { .. } => "get_range",
            BenchOp::Delete => "delete",
        }
    }
}

async fn bench(url: &str, plan: BenchPlan, prefix: Option<String>) -> anyhow::Result<ExitCode> {
    let backend =
        open_backend(url).with_context(|| format!("opening {}", fsx_store::redact(url)))?;
    let prefix = prefix.unwrap_or_else(|| default_prefix("bench"));
    let max = backend.capabilities().max_object_size;
    let mut sizes = vec![("4KiB", 4usize << 10, plan.small_count, 1u64 << 10)];
    if (2u64 << 20) <= max {
        sizes.push(("2MiB", 2 << 20, plan.large_count, 4 << 10));
    } else {
        eprintln!("skipping 2 MiB objects: the store's limit is {max} bytes");
    }
    let ops_per_object = 4u64;
    let total: u64 = sizes
        .iter()
        .map(|(_, _, n, _)| *n as u64 * ops_per_object)
        .sum();
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<16} [{bar:40}] {pos}/{len} ops {elapsed_precise}",
        )
        .context("progress template")?
        .progress_chars("=> "),
    );
    let mut phases = Vec::new();
    for (label, size, count, range_len) in sizes {
        let rng = SplitMix64::new(size as u64);
        let objects: Vec<(ObjectKey, Bytes)> = (0..count)
            .map(|i| {
                let key = ObjectKey::new(&format!("{prefix}{label}/{i:06}"))?;
                let mut data = Vec::with_capacity(size + 8);
                while data.len() < size {
                    data.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
                data.truncate(size);
                Ok((key, Bytes::from(data)))
            })
            .collect::<fsx_store::Result<_>>()?;
        for op in [
            BenchOp::Put,
            BenchOp::Get,
            BenchOp::GetRange { len: range_len },
            BenchOp::Delete,
        ] {
            progress.set_message(format!("{} {label}", op.name()));
            let phase = run_phase(
                &backend,
                &objects,
                op,
                label,
                plan.concurrency,
                &rng,
                &progress,
            )
            .await?;
            phases.push(phase);
        }
    }
    progress.finish_and_clear();
    println!("store: {backend}");
    println!(
        "concurrency: {}; ranges: 1 KiB of 4 KiB objects, 4 KiB of 2 MiB objects",
        plan.concurrency
    );
    println!(
        "{:<10} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "op", "size", "count", "MB/s", "ops/s", "p50 ms", "p99 ms"
    );
    for phase in &phases {
        println!("{}", phase.row());
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_phase(
    backend: &Arc<dyn ExtentBackend>,
    objects: &[(ObjectKey, Bytes)],
    op: BenchOp,
    size_label: &'static str,
    concurrency: usize,
    rng: &SplitMix64,
    progress: &ProgressBar,
) -> anyhow::Result<Phase> {
    // Range offsets are drawn up front so the timed loop does no extra work.
    let offsets: Vec<u64> = objects
        .iter()
        .map(|(_, v)| match op {
            BenchOp::GetRange { len } => rng.below((v.len() as u64 / len).max(1)) * len,
            _ => 0,
        })
        .collect();
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Duration, u64)>> =
        futures_util::stream::iter(objects.iter().zip(offsets))
            .map(|((key, value), offset)| async move {
                let t = Instant::now();
                let bytes = match op {
                    BenchOp::Put => {
                        backend.put(key, value.clone()).await?;
                        value.len() as u64
                    }
                    BenchOp::Get => {
                        let got = backend.get(key).await?;
                        if got.len() != value.len() {
                            bail!("get {key}: {} bytes, expected {}", got.len(), value.len());
                        }
                        got.len() as u64
                    }
                    BenchOp::GetRange { len } => {
                        let got = backend.get_range(key, offset..offset + len).await?;
                        let want = &value
                            [offset as usize..(offset + len).min(value.len() as u64) as usize];
                        if got != want {
                            bail!("get_range {key} at {offset}: wrong bytes");
                        }
                        got.len() as u64
                    }
                    BenchOp::Delete => {
                        backend.delete(key).await?;
                        0
                    }
                };
                progress.inc(1);
                Ok((t.elapsed(), bytes))
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let wall = started.elapsed();
    let mut latencies = Vec::with_capacity(results.len());
    let mut bytes = 0;
    for result in results {
        let (latency, n) = result.with_context(|| format!("{} {size_label}", op.name()))?;
        latencies.push(latency);
        bytes += n;
    }
    Ok(Phase {
        op: op.name(),
        size_label,
        latencies,
        bytes,
        wall,
    })
}
