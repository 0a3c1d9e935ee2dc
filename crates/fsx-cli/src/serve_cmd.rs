//! `fsx serve`: the volumes over HTTP (`fsx_server`). This module parses
//! the flags, prints the address (the port chosen for `:0`, which tests
//! read) and stops the server gracefully on SIGTERM or SIGINT: requests in
//! flight finish first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use fsx_server::{Limits, ServeConfig, Server, TlsFiles};

use crate::volume_cmd::{parse_duration, parse_size, runtime};

/// `fsx serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Volume directories, each served under its directory's name.
    volumes: Vec<PathBuf>,
    /// Also serve every volume in this directory.
    #[arg(long, value_name = "DIR")]
    volumes_dir: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = fsx_server::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// TLS certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest request body (e.g. 32M): also the largest file one PUT writes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "32M")]
    max_body: u64,
    /// Largest total of request headers (e.g. 16K).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "16K")]
    max_header_bytes: u64,
    /// Longest time a request is waited for.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    request_timeout: Duration,
    /// Requests handled at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_concurrent: usize,
    /// Requests per second per token; more get 429 after the burst.
    #[arg(long, value_name = "N", default_value_t = 200.0)]
    rate: f64,
    /// Requests a token may make at once after being idle.
    #[arg(long, value_name = "N", default_value_t = 400.0)]
    burst: f64,
    /// WebSockets (`fsx watch`, sync agents) open at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_websockets: usize,
    /// Garbage-collect every served volume this often (e.g. 1h), as `fsx
    /// gc` does; default: never (run `fsx gc` yourself).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    gc_every: Option<Duration>,
    /// How long an extent must have been unreferenced before a scheduled
    /// GC deletes it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    gc_grace: Duration,
}

/// Runs `fsx serve` until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut volumes = args.volumes;
    if let Some(dir) = &args.volumes_dir {
        volumes.extend(fsx_server::volumes_in(dir)?);
    }
    if volumes.is_empty() {
        bail!("no volumes to serve: name volume directories, or --volumes-dir DIR");
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    let config = ServeConfig {
        listen: args.listen,
        volumes,
        tls,
        limits: Limits {
            max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
            max_header_bytes: usize::try_from(args.max_header_bytes).unwrap_or(usize::MAX),
            request_timeout: args.request_timeout,
            max_concurrent: args.max_concurrent.max(1),
            rate_per_sec: args.rate,
            rate_burst: args.burst,
            max_websockets: args.max_websockets.max(1),
            ..Limits::default()
        },
        gc_every: args.gc_every,
        gc_grace: args.gc_grace,
    };
    runtime()?.block_on(async {
        // The signals are watched before the address is printed: a
        // supervisor that sends SIGTERM as soon as it has read the
        // address must get a graceful stop, not the default action
        // (death by signal).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot watch SIGINT")?;
        let server = Server::start(config).await?;
        println!("listening on {}", server.url());
        let stopper = server.stopper();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping: letting requests in flight finish");
            stopper.stop();
        });
        server.wait().await.context("the server stopped")?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
