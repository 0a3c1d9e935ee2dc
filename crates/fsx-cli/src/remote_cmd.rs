//! Remote volumes: `fsx file put|get|ls|rm|mv|stat`, `fsx branch
//! list|create`, `fsx commit`, `log`, `diff`, `merge`, `reset` and
//! `stats`, which take a volume directory, also take
//! `http(s)://HOST:PORT/v1/volumes/NAME`, a volume of `fsx serve`, with
//! the token from `FSX_TOKEN` ([`fsx_client`]).
//!
//! Each remote command prints through the same function as its local
//! twin (`print_*` in `branch_cmd`, [`StatsReport`] in `volume_cmd`), so
//! both print alike; what the local command prints and the API did not
//! carry was added to the API, not left out here. Errors exit 2 as local
//! ones do.
//!
//! What differs, and why:
//!
//! - `file put` streams the file as one `PUT`, which the server makes
//!   durable and renames into place: a failed put leaves the old file
//!   whole (never exit 3). The rename makes it a new file, where a local
//!   put rewrites the old one in place: a merge sees two files of one
//!   name where it would see one file changed on both sides. A file over the server's `--max-body` is
//!   refused before anything is sent. `--page-size` and `--sync-pages`
//!   are the writer's choices and the server is the writer, so they are
//!   refused rather than ignored.
//! - `file get` and `file put` work on branches; `--commit` works for
//!   `file ls` and `file stat` (the tree routes take branches only).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use fsx_client::RemoteVolume;
use fsx_meta::ExtentTotals;
use fsx_protocol::types as t;

use crate::branch_cmd::{BranchRow, print_branches, print_created, print_log};
use crate::volume_cmd::{Destination, FileCommand, StatsReport, ViewArgs, bar, put_done, shown};

/// The environment variable holding the token of a remote volume.
pub const TOKEN_VAR: &str = "FSX_TOKEN";

/// The remote volume `path` names, if it is a URL, with the token from
/// [`TOKEN_VAR`]. Without a token, calls go out without one: a
/// public-read volume answers reads, any other says the token is missing.
pub fn remote(path: &Path) -> anyhow::Result<Option<RemoteVolume>> {
    let s = path.to_string_lossy();
    if !fsx_client::is_remote(&s) {
        return Ok(None);
    }
    let token = std::env::var(TOKEN_VAR).ok();
    Ok(Some(RemoteVolume::new(&s, token)?))
}

/// The tree path of a file name (`a/b` is `/a/b`).
fn tree_path(name: &str) -> String {
    format!("/{}", name.trim_start_matches('/'))
}

/// The branch a file command works on; a commit only where the API
/// reads commits (`what` names the command for the refusal).
fn branch_of(view: &ViewArgs, what: &str, commits_ok: bool) -> anyhow::Result<String> {
    Ok(match (&view.branch, view.commit) {
        (Some(b), _) => b.clone(),
        (None, Some(id)) if commits_ok => id.to_string(),
        (None, Some(_)) => {
            bail!("`fsx file {what}` of a remote volume works on branches, not --commit")
        }
        (None, None) => t::DEFAULT_BRANCH.to_string(),
    })
}

/// `fsx file …` on a remote volume.
pub async fn file_command(
    r: &RemoteVolume,
    view: &ViewArgs,
    cmd: FileCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        FileCommand::Ls { prefix, .. } => {
            let branch = branch_of(view, "ls", true)?;
            for f in r.files(&prefix, &branch).await?.files {
                crate::volume_cmd::print_ls_line(&f.name, f.size, f.page_size);
            }
        }
        FileCommand::Put {
            local,
            name,
            page_size,
            sync_pages,
            ..
        } => {
            let branch = branch_of(view, "put", false)?;
            if page_size != 4096 || sync_pages.is_some() {
                bail!(
                    "--page-size and --sync-pages do not apply to a remote volume: the server writes the file"
                );
            }
            return put(r, &local, &name, &branch).await;
        }
        FileCommand::Get { name, local, .. } => {
            let branch = branch_of(view, "get", false)?;
            get(r, &name, &local, &branch).await?;
        }
        FileCommand::Rm { name, .. } => {
            let branch = branch_of(view, "rm", false)?;
            r.remove(&t::RemoveRequest {
                path: tree_path(&name),
                branch,
            })
            .await?;
        }
        FileCommand::Mv {
            from, to, force, ..
        } => {
            let branch = branch_of(view, "mv", false)?;
            r.rename(&t::RenameRequest {
                from: tree_path(&from),
                to: tree_path(&to),
                branch,
                replace: force,
            })
            .await?;
        }
        FileCommand::Stat { name, .. } => {
            let branch = branch_of(view, "stat", true)?;
            let files = r.files(&name, &branch).await?.files;
            let f = files
                .into_iter()
                .find(|f| f.name == name)
                .with_context(|| format!("not found: no file named {}", shown(&name)))?;
            crate::volume_cmd::print_stat(&f.name, f.size, f.page_size, f.modified_ms);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `fsx file put` to a server: one streamed `PUT`, checked against the
/// server's body limit first when the size is known.
async fn put(r: &RemoteVolume, local: &Path, name: &str, branch: &str) -> anyhow::Result<ExitCode> {
    let max_body = r.info().await?.max_body;
    let written = if local.as_os_str() == "-" {
        r.write_file(&tree_path(name), branch, tokio::io::stdin(), None, max_body)
            .await
    } else {
        let file = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("cannot read {}", local.display()))?;
        let size = file
            .metadata()
            .await
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        r.write_file(&tree_path(name), branch, file, size, max_body)
            .await
    };
    let written = written.with_context(|| {
        format!(
            "put of {} failed; nothing changed on the server",
            shown(name)
        )
    })?;
    Ok(put_done(name, written.size, None))
}

/// `fsx file get` from a server: streamed to stdout, or to a file beside
/// the destination that replaces it once complete.
async fn get(r: &RemoteVolume, name: &str, local: &Path, branch: &str) -> anyhow::Result<()> {
    let mut reader = r.read_file(&tree_path(name), branch).await?;
    let pb = bar(Some(reader.size()), "get");
    let mut copy = async |out: &mut dyn std::io::Write| -> anyhow::Result<()> {
        while let Some(chunk) = reader.chunk().await? {
            out.write_all(&chunk).context("write failed")?;
            pb.inc(chunk.len() as u64);
        }
        out.flush().context("write failed")?;
        Ok(())
    };
    if local.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        copy(&mut out).await?;
        pb.finish_and_clear();
        return Ok(());
    }
    let (dest, mut out) = Destination::create(local)?;
    let copied = copy(&mut out).await;
    pb.finish_and_clear();
    dest.finish(out, copied)
}

/// A branch as the server lists it.
fn branch_row(b: t::Branch) -> BranchRow {
    let u = b.unique.unwrap_or(t::BranchUsage {
        extents: 0,
        extent_bytes: 0,
        dirty_bytes: 0,
    });
    BranchRow {
        name: b.name,
        id: b.id,
        commit: b.commit,
        created_ms: b.created_ms,
        commit_ms: b.commit_ms,
        extents: u.extents,
        extent_bytes: u.extent_bytes,
        dirty_bytes: u.dirty_bytes,
    }
}

/// `fsx branch list` of a remote volume.
pub async fn branch_list(r: &RemoteVolume, json: bool) -> anyhow::Result<ExitCode> {
    let rows: Vec<_> = r
        .branches()
        .await?
        .branches
        .into_iter()
        .map(branch_row)
        .collect();
    print_branches(&rows, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `fsx branch create` on a remote volume.
pub async fn branch_create(r: &RemoteVolume, name: &str, from: &str) -> anyhow::Result<ExitCode> {
    let b = r
        .create_branch(&t::CreateBranchRequest {
            name: name.to_string(),
            from: from.to_string(),
        })
        .await?;
    print_created(&b.name, from, b.commit);
    Ok(ExitCode::SUCCESS)
}

/// `fsx log` of a remote volume.
pub async fn log(
    r: &RemoteVolume,
    spec: &str,
    max_count: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if max_count == 0 {
        // As the local log: nothing asked, nothing shown.
        print_log(&[], json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let limit = u32::try_from(max_count)
        .unwrap_or(u32::MAX)
        .min(t::MAX_LOG_LIMIT);
    let commits = r.log(spec, limit).await?.commits;
    print_log(&commits, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `fsx stats` of a remote volume.
pub async fn stats(r: &RemoteVolume) -> anyhow::Result<StatsReport> {
    let info = r.info().await?;
    let branches = r.branches().await?.branches;
    let s = info.stats;
    Ok(StatsReport {
        volume_id: info.volume_id,
        extent_size: info.extent_size,
        store: info.store,
        counters: s
            .counters
            .into_iter()
            .map(|c| (c.tier, c.op, c.calls, c.bytes))
            .collect(),
        extents: ExtentTotals {
            count: s.extents,
            bytes: s.extent_bytes,
            referenced_count: s.referenced_extents,
            referenced_bytes: s.referenced_bytes,
        },
        files: s.files,
        file_bytes: s.file_bytes,
        settings: s.settings.into_iter().map(|x| (x.name, x.value)).collect(),
        branches: branches.into_iter().map(branch_row).collect(),
    })
}
