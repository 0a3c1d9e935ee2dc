//! `fsx bench serve`: a bounded load test of the HTTP API.
//!
//! Given a volume URL (`http(s)://HOST:PORT/v1/volumes/NAME`, token from
//! `FSX_TOKEN`) it loads that server and starts nothing; given a local
//! volume directory it starts a server in this process on `127.0.0.1:0`
//! with a fresh write token (revoked at the end) and loads it, or with
//! `--direct` runs the same workload through the library with no HTTP at
//! all (the reference for the HTTP figures).
//!
//! N clients (default 32) each own a directory under
//! `/fsx-bench/RUN/cN` and make calls back to back for a fixed time,
//! then stop: a mix of small-file PUTs (new and over existing files),
//! range GETs, stats, listings, mkdirs, renames and removes, with a
//! configurable share of changes (`workload` has the details and what is
//! checked). The report gives per operation and overall the count,
//! throughput, p50/p99/max latency and errors, and the peak memory of the
//! server. Files are left in place for inspection.
//!
//! # Invariants
//!
//! - **It stops by itself**: no call starts after the duration; a call in
//!   flight then finishes (a guard of 120 s per request bounds a hung
//!   server).
//! - **Every failure is unexpected** (no client races another), so any
//!   failed call, wrong byte or failed `--verify` check exits 1.
//! - **Every acknowledged change is remembered** (`--verify`, `--ack-log`)
//!   and checkable later (`--check-ack-log`), even after a SIGKILL of the
//!   server or of this process (see `workload` for the log's format).

mod target;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use fsx_meta::TokenRecord;
use fsx_protocol::Scope;

use crate::volume_cmd::{parse_duration, parse_size, runtime};
use target::{DirectTarget, HttpTarget, Target};
use workload::{AckLog, CheckReport, Client, Mix, OpKind, Progress, Tally};

/// `fsx bench …`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Load `fsx serve` with concurrent clients for a fixed time and report
    /// throughput, p50/p99/max latency, errors and the server's peak memory.
    ///
    /// TARGET is a volume URL (http(s)://HOST:PORT/v1/volumes/NAME, with the
    /// token in FSX_TOKEN; nothing is started) or a volume directory (a
    /// server is started in this process on 127.0.0.1 with a fresh write
    /// token, revoked at the end). Each client works in its own directory
    /// under /fsx-bench/RUN/ (left in place). Exits 1 if any call failed or
    /// answered wrong bytes, or a --verify or --check-ack-log check failed.
    Serve(ServeBenchArgs),
}

/// `fsx bench serve`.
#[derive(Args)]
pub struct ServeBenchArgs {
    /// A volume URL or a volume directory.
    target: String,
    /// Clients making calls at once.
    #[arg(long, default_value_t = 32,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    clients: usize,
    /// How long the load runs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
    duration: Duration,
    /// Share of calls that change something (PUT, mkdir, rename, remove).
    #[arg(long, value_name = "0..1", default_value_t = 0.3)]
    write_ratio: f64,
    /// Largest file a PUT writes (sizes are uniform from 1 byte up to it).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "16K")]
    max_file_size: u64,
    /// Files each client keeps at most.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_files: usize,
    /// Seed of the workload (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// At the end, read back every file, directory and removal the clients
    /// had acknowledged and compare (contents by hash).
    #[arg(long)]
    verify: bool,
    /// Append a line per change sent and per answer to FILE, written at
    /// once (see the crash test: `fsx bench serve --check-ack-log`).
    #[arg(long, value_name = "FILE")]
    ack_log: Option<PathBuf>,
    /// Run no load: check that the target holds every change the ack log
    /// FILE says was acknowledged (changes in flight when it ends may have
    /// happened or not).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ack_log", "verify", "direct"])]
    check_ack_log: Option<PathBuf>,
    /// With a volume directory: run the workload through the library in
    /// this process, with no HTTP (the reference for the HTTP figures).
    #[arg(long)]
    direct: bool,
    /// With a URL: the server's process id, to sample its memory
    /// (/proc/PID/status).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    progress: u64,
}

/// Runs `fsx bench …`.
pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Serve(args) => runtime()?.block_on(serve(args)),
    }
}

/// What is being loaded, and what to stop afterwards.
struct Setup {
    target: Arc<Target>,
    /// What the report calls it.
    label: String,
    /// The process whose memory is sampled.
    pid: Option<u32>,
    /// The server started here, and the token to revoke.
    local: Option<(fsx_server::Server, fsx_engine::Volume, String)>,
}

async fn setup(args: &ServeBenchArgs) -> anyhow::Result<Setup> {
    if fsx_client::is_remote(&args.target) {
        if args.direct {
            bail!("--direct needs a volume directory, not a URL");
        }
        let token = std::env::var("FSX_TOKEN").ok();
        let http = HttpTarget::new(&args.target, token, args.clients)?;
        return Ok(Setup {
            target: Arc::new(Target::Http(http)),
            label: format!("{} (remote)", args.target),
            pid: args.server_pid,
            local: None,
        });
    }
    if args.server_pid.is_some() {
        bail!("--server-pid is for a remote server; a local volume's server runs in this process");
    }
    let dir = PathBuf::from(&args.target);
    if args.direct {
        return Ok(Setup {
            target: Arc::new(Target::Direct(DirectTarget::open(&dir).await?)),
            label: format!("{} (direct, no HTTP)", dir.display()),
            pid: Some(std::process::id()),
            local: None,
        });
    }
    let volume = crate::volume_cmd::open_volume(&dir).await?;
    let token = crate::token_cmd::new_token()?;
    volume
        .meta()
        .create_token(&TokenRecord::new(
            token.id(),
            "fsx bench serve",
            Scope::Write.as_str(),
            token.hash().to_hex(),
            now_ms(),
        ))
        .await
        .context("cannot store the bench token")?;
    let mut config = fsx_server::ServeConfig::new(
        "127.0.0.1:0".parse().context("loopback address")?,
        vec![dir.clone()],
    );
    // The load is the point: the rate limit and the concurrency cap must
    // not be what is measured.
    config.limits.rate_per_sec = 1e9;
    config.limits.rate_burst = 1e9;
    config.limits.max_concurrent = config.limits.max_concurrent.max(args.clients * 2);
    let server = fsx_server::Server::start(config).await?;
    let name = fsx_volume::absolute(&dir)?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let url = format!("{}/v1/volumes/{name}", server.url());
    let http = HttpTarget::new(&url, Some(token.reveal()), args.clients)?;
    Ok(Setup {
        target: Arc::new(Target::Http(http)),
        label: format!("{url} (in process)"),
        pid: Some(std::process::id()),
        local: Some((server, volume, token.id().to_string())),
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A `kB` field of `/proc/PID/status`, in bytes.
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

async fn serve(args: ServeBenchArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.write_ratio) {
        bail!("--write-ratio must be between 0 and 1");
    }
    let setup = setup(&args).await?;
    let code = match &args.check_ack_log {
        Some(log) => check_log(&setup, log, args.clients).await,
        None => load(&setup, &args).await,
    };
    if let Some((server, volume, token)) = setup.local {
        // Only this run's token: the server's own shutdown cannot revoke it.
        volume
            .meta()
            .revoke_token(&token, now_ms())
            .await
            .context("cannot revoke the bench token")?;
        server.shutdown().await?;
    }
    code
}

async fn check_log(
    setup: &Setup,
    log: &std::path::Path,
    clients: usize,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(log)
        .with_context(|| format!("cannot read the ack log {}", log.display()))?;
    let expected = workload::expected_from_log(&text)?;
    let report = workload::check(&setup.target, &expected, clients).await;
    println!("target: {}", setup.label);
    print_check(&format!("ack log {}", log.display()), &report);
    Ok(if report.mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_check(what: &str, r: &CheckReport) {
    println!(
        "{what}: {} files, {} directories and {} removals as acknowledged; {} unknown (in flight); {} mismatches",
        r.files,
        r.dirs,
        r.absent,
        r.unknown,
        r.mismatches.len()
    );
    for m in r.mismatches.iter().take(20) {
        println!("  MISMATCH {m}");
    }
}

async fn load(setup: &Setup, args: &ServeBenchArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| now_ms().unsigned_abs());
    let run = format!("/fsx-bench/{seed}-{}", std::process::id());
    let mix = Mix {
        write_ratio: args.write_ratio,
        max_file_size: usize::try_from(args.max_file_size.max(1)).unwrap_or(usize::MAX),
        max_files: args.max_files.max(1),
    };
    let log = match &args.ack_log {
        Some(p) => Some(Arc::new(AckLog::create(
            p,
            &format!(
                "fsx bench serve run {run} seed {seed} target {}",
                setup.label
            ),
        )?)),
        None => None,
    };
    eprintln!(
        "fsx bench serve: {} clients for {:?} against {}, seed {seed}, under {run}",
        args.clients, args.duration, setup.label
    );
    // Each client's directory first, outside the measured time.
    setup
        .target
        .mkdir(&run, true)
        .await
        .map_err(|e| anyhow::anyhow!("cannot make {run}: {e}"))?;
    let clients: Vec<Client> = (0..args.clients as u64)
        .map(|i| Client::new(i, &run, seed))
        .collect();
    for c in &clients {
        setup
            .target
            .mkdir(c.dir(), false)
            .await
            .map_err(|e| anyhow::anyhow!("cannot make {}: {e}", c.dir()))?;
    }

    let hwm_before = setup.pid.and_then(|p| proc_status(p, "VmHWM:"));
    let rss_before = setup.pid.and_then(|p| proc_status(p, "VmRSS:"));
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample(setup.pid, progress.clone(), args.progress, stop_rx));

    let started = Instant::now();
    let until = started + args.duration;
    let mut tasks = Vec::new();
    for c in clients {
        let (target, log, progress, mix) = (
            setup.target.clone(),
            log.clone(),
            progress.clone(),
            mix.clone(),
        );
        tasks.push(tokio::spawn(async move {
            c.run(&target, &mix, until, log.as_deref(), &progress).await
        }));
    }
    let mut tally = Tally::default();
    let mut expected = BTreeMap::new();
    for t in tasks {
        let (t, e) = t.await.context("a client task failed")??;
        tally.merge(t);
        expected.extend(e);
    }
    let wall = started.elapsed();
    let _ = stop_tx.send(true);
    let peak_rss = sampler.await.unwrap_or(None);
    let hwm_after = setup.pid.and_then(|p| proc_status(p, "VmHWM:"));

    println!("target: {}", setup.label);
    println!(
        "clients: {}; duration: {:.1} s; write ratio: {}; file sizes: 1..={} bytes; at most {} files per client; seed: {seed}",
        args.clients,
        wall.as_secs_f64(),
        args.write_ratio,
        mix.max_file_size,
        mix.max_files
    );
    print_table(&tally, wall);
    let errors: u64 = tally.errors.iter().sum();
    for s in &tally.samples {
        println!("  ERROR {s}");
    }
    match (rss_before, peak_rss, hwm_before, hwm_after) {
        (Some(before), Some(peak), Some(h0), Some(h1)) => println!(
            "memory (pid {}{}): RSS {:.1} MiB before, peak {:.1} MiB sampled; VmHWM {:.1} -> {:.1} MiB",
            setup.pid.unwrap_or_default(),
            if setup.local.is_some() || args.direct {
                ", this process: server and clients"
            } else {
                ""
            },
            mib(before),
            mib(peak),
            mib(h0),
            mib(h1)
        ),
        _ => println!("memory: not sampled (give --server-pid for a remote server)"),
    }
    let mut failed = errors > 0;
    if args.verify {
        let report = workload::check(&setup.target, &expected, args.clients).await;
        print_check("verify", &report);
        failed |= !report.mismatches.is_empty();
    }
    if failed {
        println!("FAILED: {errors} calls failed or answered wrong data");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Samples the memory of `pid` (every 100 ms) and prints progress until
/// told to stop; returns the peak RSS seen.
async fn sample(
    pid: Option<u32>,
    progress: Arc<Progress>,
    every_secs: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<u64> {
    let started = Instant::now();
    let mut peak = pid.and_then(|p| proc_status(p, "VmRSS:"));
    let mut last_print = started;
    let mut last_ops = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if let Some(rss) = pid.and_then(|p| proc_status(p, "VmRSS:")) {
            peak = Some(peak.map_or(rss, |p| p.max(rss)));
        }
        if every_secs > 0 && last_print.elapsed() >= Duration::from_secs(every_secs) {
            let ops = progress.ops.load(Ordering::Relaxed);
            let rate = (ops - last_ops) as f64 / last_print.elapsed().as_secs_f64();
            eprintln!(
                "[{:>4.0}s] {ops} calls, {rate:.0}/s now, {} errors{}",
                started.elapsed().as_secs_f64(),
                progress.errors.load(Ordering::Relaxed),
                peak.map_or(String::new(), |p| format!(", peak RSS {:.1} MiB", mib(p)))
            );
            last_print = Instant::now();
            last_ops = ops;
        }
    }
    peak
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn print_table(tally: &Tally, wall: Duration) {
    let secs = wall.as_secs_f64().max(1e-9);
    println!(
        "{:<10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "op", "calls", "calls/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let row = |name: &str, lat: &mut Vec<Duration>, errors: u64| {
        lat.sort_unstable();
        println!(
            "{:<10} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            name,
            lat.len() as u64 + errors,
            (lat.len() as u64 + errors) as f64 / secs,
            ms(percentile(lat, 50.0)),
            ms(percentile(lat, 99.0)),
            ms(lat.last().copied().unwrap_or_default()),
            errors
        );
    };
    let mut all = Vec::new();
    for kind in OpKind::ALL {
        let i = OpKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let mut lat = tally.latencies[i].clone();
        all.extend_from_slice(&lat);
        row(kind.name(), &mut lat, tally.errors[i]);
    }
    row("all", &mut all, tally.errors.iter().sum());
}
