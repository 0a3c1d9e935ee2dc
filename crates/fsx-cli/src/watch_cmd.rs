//! `fsx watch URL|VOLUME`: prints a volume's changes as they happen, one
//! line each (`SEQ KIND BRANCH PATH [-> PATH]`, or JSON with `--json`).
//!
//! A remote volume is followed over the server's `…/watch` WebSocket; a
//! closed socket is reopened from the last change printed, so a restart
//! of the server neither skips nor repeats a line. A local volume is
//! followed by reading its feed from the metadata every
//! [`LOCAL_POLL`]. Either way the lines come from the volume's numbered
//! feed (see `fsx_meta::MetaChanges`): nothing is missed between two
//! reads, whoever made the change.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use fsx_meta::MetaErrorKind;
use fsx_protocol::feed::{FeedChange, WatchEvent};

use crate::remote_cmd::remote;
use crate::volume_cmd::{open_volume, runtime};

/// How often a local volume's feed is read while following it.
const LOCAL_POLL: Duration = Duration::from_millis(200);
/// Longest wait between two attempts to reopen a remote feed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Changes read at once from a local volume.
const LOCAL_PAGE: usize = 1000;

/// `fsx watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// A volume directory, or `http(s)://HOST:PORT/v1/volumes/NAME` (token
    /// from FSX_TOKEN).
    volume: PathBuf,
    /// Print the changes after this number first (0: every change the
    /// volume keeps); default: only changes from now on.
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,
    /// Stop once every change up to the newest has been printed, instead
    /// of following.
    #[arg(long)]
    once: bool,
    /// One JSON object per line (the API's change), instead of text.
    #[arg(long)]
    json: bool,
}

/// One line of output.
fn line(c: &FeedChange, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(serde_json::to_string(c)?);
    }
    let branch = c
        .branch
        .clone()
        .unwrap_or_else(|| format!("#{}", c.branch_id));
    let mut out = format!("{} {} {branch}", c.seq, c.kind);
    if let Some(p) = &c.path {
        out.push(' ');
        out.push_str(&crate::volume_cmd::shown(p));
    }
    if let Some(p) = &c.to_path {
        out.push_str(" -> ");
        out.push_str(&crate::volume_cmd::shown(p));
    }
    if let Some(id) = c.commit {
        out.push_str(&format!(" commit={id}"));
    }
    if c.path.is_none()
        && c.commit.is_none()
        && let Some(ino) = c.ino
    {
        out.push_str(&format!(" ino={ino}"));
    }
    Ok(out)
}

fn print(c: &FeedChange, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", line(c, json)?)?;
    // Each change is visible as it happens, also through a pipe.
    out.flush()?;
    Ok(())
}

/// Runs `fsx watch`.
pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match remote(&args.volume)? {
            Some(r) => follow_remote(&r, &args).await,
            None => follow_local(&args).await,
        }
    })
}

async fn follow_local(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let v = open_volume(&args.volume).await?;
    let meta = v.meta().clone();
    let mut cursor = match args.since {
        Some(s) => s,
        None => meta.last_change().await?,
    };
    loop {
        let page = match meta.changes(cursor, LOCAL_PAGE).await {
            Ok(p) => p,
            Err(e) if e.kind() == MetaErrorKind::Gone => bail!("{e}"),
            Err(e) => return Err(e.into()),
        };
        let full = page.len() == LOCAL_PAGE;
        for c in fsx_server::wire::feed_changes(meta.as_ref(), &page, true).await? {
            print(&c, args.json)?;
            cursor = c.seq;
        }
        if full {
            continue;
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(LOCAL_POLL).await;
    }
}

async fn follow_remote(r: &fsx_client::RemoteVolume, args: &WatchArgs) -> anyhow::Result<ExitCode> {
    if args.once {
        let mut cursor = args.since.unwrap_or(0);
        loop {
            let page = r
                .changes(cursor, fsx_protocol::feed::MAX_CHANGES_LIMIT, true)
                .await?;
            for c in &page.changes {
                print(c, args.json)?;
            }
            cursor = page.next;
            if page.changes.is_empty() || page.next >= page.last {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let mut cursor = args.since;
    let mut backoff = Duration::from_millis(200);
    let mut ever_connected = false;
    loop {
        let mut watcher = match r.watch(cursor, true).await {
            Ok(w) => w,
            // The first connection's failure is the user's to fix; a later
            // one is a server restarting, waited out.
            Err(e) if !ever_connected => return Err(e.into()),
            Err(e) => {
                eprintln!("fsx: watch: {e}; retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        ever_connected = true;
        loop {
            match watcher.next().await {
                Ok(Some(WatchEvent::Hello { since, .. })) => {
                    cursor = Some(since);
                    backoff = Duration::from_millis(200);
                }
                Ok(Some(WatchEvent::Change(c))) => {
                    print(&c, args.json)?;
                    cursor = Some(c.seq);
                }
                Ok(Some(WatchEvent::Gone { message })) => {
                    bail!("{message}");
                }
                Ok(None) => return Ok(ExitCode::SUCCESS),
                Err(fsx_client::Error::WatchClosed {
                    gone: true, reason, ..
                }) => {
                    bail!("{reason}");
                }
                Err(e) => {
                    eprintln!(
                        "fsx: watch: {e}; reopening from change {}",
                        cursor.unwrap_or(0)
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
