//! Branch and history commands: `fsx branch create|list|delete|config`,
//! `fsx commit`, `fsx log`, `fsx reset`, `fsx diff` and `fsx merge`.
//!
//! Each command is one call into `fsx_engine::branch` (the policy lives
//! there); this module parses, picks the view and prints. Conventions:
//!
//! - a **SPEC** names a view: a branch name, else a commit id (what
//!   `Volume::resolve` accepts); a name wins over a number;
//! - writes go to a branch (`main` unless `--branch`/`--into` says
//!   otherwise); a commit is read-only;
//! - `--json` prints one JSON document for scripts; text is for people;
//! - exit codes: 0 done, 1 a merge stopped on conflicts (nothing applied),
//!   2 an error (the message says what; nothing changed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use fsx_engine::branch::{AUTO_COMMIT_SETTING, AUTO_RETAIN_SETTING, DEFAULT_AUTO_RETAIN_MS};
use fsx_engine::{MergeStrategy, Volume};
use fsx_meta::{BranchInfo, CommitId, LayerUsage, MAIN_BRANCH_NAME, View};

use fsx_protocol::types as t;

use crate::remote_cmd::remote;
use crate::volume_cmd::{open_volume, parse_duration, runtime, shown};

/// `fsx branch …`.
#[derive(Subcommand)]
pub enum BranchCommand {
    /// Create a branch: a writable copy of a branch or commit, made in
    /// constant time (no data is copied).
    ///
    /// The new branch starts at SPEC's latest commit; when SPEC is a branch
    /// whose head holds uncommitted changes, they are committed first
    /// (an automatic commit) so both branches start from the same state.
    /// Writes on either branch are invisible to the other. Prints the new
    /// branch and the commit it starts at.
    Create {
        /// The volume directory.
        path: PathBuf,
        /// Name of the new branch: 1 to 100 characters from A-Z a-z 0-9 and
        /// `.` `_` `-` `/`, not starting with `-`, `/` or `.` (a name that
        /// is a number hides the commit of that id from SPECs).
        name: String,
        /// Branch name or commit id to start from.
        #[arg(long, value_name = "SPEC", default_value = MAIN_BRANCH_NAME)]
        from: String,
    },
    /// List branches: name, latest commit, creation time, and the bytes
    /// only that branch holds.
    ///
    /// UNIQUE BYTES is what deleting the branch would free at the next
    /// `fsx gc`: the extents nothing else references plus the page data it
    /// holds in the metadata engine. Times are UTC.
    List {
        /// The volume directory.
        path: PathBuf,
        /// Print a JSON array: name, id, commit, created_ms, commit_ms,
        /// unique_bytes and unique {extents, extent_bytes, dirty_bytes}.
        #[arg(long)]
        json: bool,
    },
    /// Delete a branch and the commits only it reaches.
    ///
    /// The data only it referenced is freed by the next `fsx gc` (after
    /// the grace period). `main` cannot be deleted (reset it instead), nor
    /// a branch a writer has a file of open.
    Delete {
        /// The volume directory.
        path: PathBuf,
        /// The branch to delete.
        name: String,
    },
    /// Show or set the volume's automatic commits (every branch).
    ///
    /// With automatic commits on, a write to a branch whose latest commit
    /// is older than the interval commits the branch first, so its history
    /// has a point at least every interval. `fsx gc` expires automatic
    /// commits older than the retention (unless one is a branch's latest);
    /// explicit `fsx commit`s are kept. Without options, prints the
    /// current values.
    Config {
        /// The volume directory.
        path: PathBuf,
        /// Commit automatically at most this often (e.g. 30s, 10m, 1h), or
        /// `off`.
        #[arg(long, value_name = "DURATION|off", value_parser = parse_interval)]
        auto_commit: Option<Duration>,
        /// Keep automatic commits this long (e.g. 12h, 7d; default 7d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        retain: Option<Duration>,
    },
}

/// How `fsx merge` resolves files changed differently on both sides.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Strategy {
    /// Stop, apply nothing, list the conflicting files, exit 1.
    Fail,
    /// Keep the target branch's version.
    Ours,
    /// Take the source's version.
    Theirs,
}

/// History commands, at the top level (`fsx commit`, `fsx log`, …).
#[derive(Subcommand)]
pub enum HistoryCommand {
    /// Commit a branch; prints the new commit's id.
    ///
    /// Freezes the branch's current state (every synced write) under a new
    /// commit id, in constant time. The id is printed alone, for scripts:
    /// `c=$(fsx commit PATH -m "before migration")`.
    Commit {
        /// The volume directory.
        path: PathBuf,
        /// The commit message.
        #[arg(short, long, value_name = "MSG", default_value = "")]
        message: String,
        /// The branch to commit.
        #[arg(long, value_name = "NAME", default_value = MAIN_BRANCH_NAME)]
        branch: String,
    },
    /// Show the commits behind a branch or commit, newest first.
    ///
    /// One line per commit: id, time (UTC), the branch it was made on,
    /// markers and message.
    /// `[auto]` marks an automatic commit (interval, branch creation,
    /// before a merge), `[merge of N]` a merge commit. Follows first
    /// parents, as `git log --first-parent` does.
    Log {
        /// The volume directory.
        path: PathBuf,
        /// Branch name or commit id to start from.
        #[arg(default_value = MAIN_BRANCH_NAME)]
        spec: String,
        /// Show at most N commits.
        #[arg(
            short = 'n',
            long = "max-count",
            value_name = "N",
            default_value_t = 20
        )]
        max_count: usize,
        /// Print a JSON array of commits: id, parent, merged, branch,
        /// message, auto, created_ms.
        #[arg(long)]
        json: bool,
    },
    /// Point a branch at a commit, discarding its changes since.
    ///
    /// Changes since the commit are discarded whether committed or not;
    /// commits no branch reaches any more are removed, and what only they
    /// referenced is freed by the next `fsx gc`. Refused while a writer has
    /// a file of the branch open.
    Reset {
        /// The volume directory.
        path: PathBuf,
        /// The branch to move.
        branch: String,
        /// The commit it will show (`fsx log` lists commits).
        #[arg(value_parser = clap::value_parser!(CommitId).range(1..))]
        commit: CommitId,
    },
    /// Show how the files of SPEC_B differ from those of SPEC_A.
    ///
    /// One line per changed file: the kind of change, names, sizes and
    /// changed page ranges.
    /// Files are matched by identity, so a rename shows as `renamed`.
    /// Kinds: added, removed, renamed, modified. Page ranges are page
    /// numbers, both ends included (`0-3, 7`); pages past a file's end
    /// count as zeros.
    Diff {
        /// The volume directory.
        path: PathBuf,
        /// The old side: branch name or commit id.
        spec_a: String,
        /// The new side: branch name or commit id.
        spec_b: String,
        /// Print a JSON array: id, kind, old_name, new_name, old_size,
        /// new_size, pages [{start, end}] with end excluded.
        #[arg(long)]
        json: bool,
    },
    /// Merge a branch or commit into a branch.
    ///
    /// Fast-forwards when the target has not moved since the source left
    /// it; otherwise merges file by file against their latest common
    /// commit (a database file is only consistent as a whole): a file
    /// changed on one side only is taken from that side; a file changed
    /// differently on both sides is a conflict. With `--strategy fail` (the
    /// default) conflicts stop the merge: nothing is applied, the
    /// conflicting files are listed (`CONFLICT name`) and fsx exits with
    /// code 1. Both sides' uncommitted changes are committed first
    /// (automatic commits), even when the merge stops.
    Merge {
        /// The volume directory.
        path: PathBuf,
        /// What to merge: branch name or commit id.
        source: String,
        /// The branch to merge into.
        #[arg(long, value_name = "BRANCH", default_value = MAIN_BRANCH_NAME)]
        into: String,
        /// How to resolve files changed differently on both sides.
        #[arg(long, value_enum, default_value_t = Strategy::Fail)]
        strategy: Strategy,
    },
}

/// `off`, `0s`, or a duration.
fn parse_interval(s: &str) -> Result<Duration, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// The volume as `spec` (a branch name, else a commit id) shows it.
async fn at_spec(v: &Volume, spec: &str) -> anyhow::Result<Volume> {
    Ok(match v.resolve(spec).await? {
        View::Branch(_) => v.checkout(spec).await?,
        View::Commit(id) => v.at_commit(id).await?,
    })
}

/// Milliseconds since the epoch as RFC 3339 in UTC, to the second.
fn format_time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Milliseconds in the largest unit that divides them: `7d`, `90m`, `1500ms`.
fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Page ranges as `0-3, 7` (both ends included).
fn format_pages(pages: &[std::ops::Range<u64>]) -> String {
    let parts: Vec<String> = pages
        .iter()
        .map(|r| {
            if r.end - r.start == 1 {
                r.start.to_string()
            } else {
                format!("{}-{}", r.start, r.end - 1)
            }
        })
        .collect();
    parts.join(", ")
}

/// A branch and what only it holds, from a local volume or a server:
/// what `fsx branch list` and `fsx stats` print.
pub(crate) struct BranchRow {
    pub name: String,
    pub id: i64,
    pub commit: Option<i64>,
    pub created_ms: i64,
    pub commit_ms: i64,
    pub extents: u64,
    pub extent_bytes: u64,
    pub dirty_bytes: u64,
}

impl BranchRow {
    /// A branch of a local volume.
    pub(crate) fn local((b, u): &(BranchInfo, LayerUsage)) -> Self {
        Self {
            name: b.name.clone(),
            id: b.id,
            commit: b.commit,
            created_ms: b.created_ms,
            commit_ms: b.commit_ms,
            extents: u.extents,
            extent_bytes: u.extent_bytes,
            dirty_bytes: u.dirty_bytes,
        }
    }

    /// Bytes deleting the branch would free.
    fn unique_bytes(&self) -> u64 {
        self.extent_bytes + self.dirty_bytes
    }
}

/// One branch and its usage, as `fsx branch list --json` and `fsx stats
/// --json` print it.
pub(crate) fn branch_json(b: &BranchRow) -> serde_json::Value {
    serde_json::json!({
        "name": b.name,
        "id": b.id,
        "commit": b.commit,
        "created_ms": b.created_ms,
        "commit_ms": b.commit_ms,
        "unique_bytes": b.unique_bytes(),
        "unique": {
            "extents": b.extents,
            "extent_bytes": b.extent_bytes,
            "dirty_bytes": b.dirty_bytes,
        },
    })
}

/// Prints `fsx branch list`.
pub(crate) fn print_branches(rows: &[BranchRow], json: bool) -> anyhow::Result<()> {
    if json {
        let out: Vec<_> = rows.iter().map(branch_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let width = rows.iter().map(|b| b.name.len()).max().unwrap_or(0).max(4);
    println!(
        "{:<width$}  {:>6}  {:<20}  {:>14}",
        "NAME", "COMMIT", "CREATED", "UNIQUE BYTES"
    );
    for b in rows {
        let commit = b.commit.map_or_else(|| "-".to_string(), |c| c.to_string());
        println!(
            "{:<width$}  {commit:>6}  {:<20}  {:>14}",
            b.name,
            format_time(b.created_ms),
            b.unique_bytes()
        );
    }
    Ok(())
}

/// Prints `fsx branch create`.
pub(crate) fn print_created(name: &str, from: &str, commit: Option<i64>) {
    match commit {
        Some(c) => println!("created branch {name} from {from} at commit {c}"),
        None => println!("created branch {name} from {from} (no commits yet)"),
    }
}

/// Prints `fsx log`.
pub(crate) fn print_log(commits: &[fsx_protocol::types::Commit], json: bool) -> anyhow::Result<()> {
    if json {
        // The API's commit has exactly the fields `--json` documents.
        let out: Vec<_> = commits
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for c in commits {
        let mut markers = String::new();
        if c.auto {
            markers.push_str("[auto] ");
        }
        if let Some(m) = c.merged {
            markers.push_str(&format!("[merge of {m}] "));
        }
        println!(
            "{:>6}  {}  {}  {markers}{}",
            c.id,
            format_time(c.created_ms),
            c.branch,
            shown(&c.message)
        );
    }
    Ok(())
}

/// Prints `fsx diff`.
fn print_diff(changes: &[t::Change], spec_a: &str, spec_b: &str, json: bool) -> anyhow::Result<()> {
    if json {
        // The API's change has exactly the fields `--json` documents.
        let out: Vec<_> = changes
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if changes.is_empty() {
        println!("no differences between {spec_a} and {spec_b}");
    }
    for c in changes {
        let name = match (&c.old_name, &c.new_name) {
            (Some(a), Some(b)) if a != b => format!("{a} -> {b}"),
            (Some(n), _) | (None, Some(n)) => shown(n).into_owned(),
            (None, None) => format!("file #{}", c.id),
        };
        let mut line = format!("{:<8}  {name}  ", c.kind);
        if c.old_size == c.new_size {
            line.push_str(&format!("{} bytes", c.new_size));
        } else {
            line.push_str(&format!("{} -> {} bytes", c.old_size, c.new_size));
        }
        if !c.pages.is_empty() {
            let pages: Vec<_> = c.pages.iter().map(|r| r.start..r.end).collect();
            line.push_str(&format!("  pages {}", format_pages(&pages)));
        }
        println!("{line}");
    }
    Ok(())
}

/// Prints `fsx merge`; exit 1 when it stopped on conflicts.
fn print_merged(m: &t::Merged, source: &str, into: &str, strategy: t::MergeStrategy) -> ExitCode {
    let commit = m.commit.as_ref().map_or(0, |c| c.id);
    match m.outcome {
        t::MergeOutcome::UpToDate => println!("{into} already contains {source}"),
        t::MergeOutcome::FastForward => {
            println!("fast-forward: {into} is now at commit {commit}");
        }
        t::MergeOutcome::Merged => {
            println!("merged {source} into {into} as commit {commit}");
            for name in &m.taken {
                println!("  taken     {} (changed on {source} only)", shown(name));
            }
            let side = match strategy {
                t::MergeStrategy::Theirs => format!("took {source}'s version"),
                _ => format!("kept {into}'s version"),
            };
            for name in &m.resolved {
                println!("  conflict  {}: {side}", shown(name));
            }
        }
        t::MergeOutcome::Conflicts => {
            for name in &m.conflicts {
                println!("CONFLICT {}", shown(name));
            }
            eprintln!(
                "fsx: merge stopped: {} file(s) changed differently on {into} and {source}; \
                 nothing was applied. Rerun with --strategy ours (keep {into}'s) or \
                 --strategy theirs (take {source}'s).",
                m.conflicts.len()
            );
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// Runs `fsx branch …`.
pub fn run_branch(cmd: BranchCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(branch(cmd))
}

async fn branch(cmd: BranchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BranchCommand::Create { path, name, from } => {
            if let Some(r) = remote(&path)? {
                return crate::remote_cmd::branch_create(&r, &name, &from).await;
            }
            let v = open_volume(&path).await?;
            let source = at_spec(&v, &from).await?;
            let b = source.create_branch(&name).await?;
            print_created(&b.name, &from, b.commit);
        }
        BranchCommand::List { path, json } => {
            if let Some(r) = remote(&path)? {
                return crate::remote_cmd::branch_list(&r, json).await;
            }
            let v = open_volume(&path).await?;
            let usage = v.branch_usage().await?;
            let rows: Vec<_> = usage.iter().map(BranchRow::local).collect();
            print_branches(&rows, json)?;
        }
        BranchCommand::Delete { path, name } => {
            let v = open_volume(&path).await?;
            v.delete_branch(&name).await?;
            println!("deleted branch {name}; `fsx gc` frees the data only it referenced");
        }
        BranchCommand::Config {
            path,
            auto_commit,
            retain,
        } => {
            let v = open_volume(&path).await?;
            let meta = v.meta();
            let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            if let Some(d) = auto_commit {
                meta.set_setting(AUTO_COMMIT_SETTING, &ms(d).to_string())
                    .await?;
            }
            if let Some(d) = retain {
                meta.set_setting(AUTO_RETAIN_SETTING, &ms(d).to_string())
                    .await?;
            }
            let auto = meta.setting(AUTO_COMMIT_SETTING).await?;
            let auto = match auto.as_deref().map(str::parse::<i64>) {
                None | Some(Ok(0)) => "off".to_string(),
                Some(Ok(n)) => format!("every {}", format_duration(n)),
                Some(Err(_)) => format!("{:?} (not a number of ms: set it again)", auto),
            };
            let kept = meta.setting(AUTO_RETAIN_SETTING).await?;
            let kept = match kept.as_deref().map(str::parse::<i64>) {
                None => format!("{} (default)", format_duration(DEFAULT_AUTO_RETAIN_MS)),
                Some(Ok(n)) => format_duration(n),
                Some(Err(_)) => format!("{:?} (not a number of ms: set it again)", kept),
            };
            println!("auto-commit: {auto}");
            println!("retain:      {kept}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `fsx commit|log|reset|diff|merge`.
pub fn run_history(cmd: HistoryCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(history(cmd))
}

async fn history(cmd: HistoryCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HistoryCommand::Commit {
            path,
            message,
            branch,
        } => {
            if let Some(r) = remote(&path)? {
                let c = r
                    .commit(&fsx_protocol::types::CommitRequest { branch, message })
                    .await?;
                println!("{}", c.id);
                return Ok(ExitCode::SUCCESS);
            }
            let v = open_volume(&path).await?.checkout(&branch).await?;
            let c = v.commit(&message).await?;
            println!("{}", c.id);
        }
        HistoryCommand::Log {
            path,
            spec,
            max_count,
            json,
        } => {
            if let Some(r) = remote(&path)? {
                return crate::remote_cmd::log(&r, &spec, max_count, json).await;
            }
            let v = open_volume(&path).await?;
            let commits = at_spec(&v, &spec).await?.log(max_count).await?;
            let commits: Vec<_> = commits.iter().map(fsx_server::wire::commit).collect();
            print_log(&commits, json)?;
        }
        HistoryCommand::Reset {
            path,
            branch,
            commit,
        } => {
            if let Some(r) = remote(&path)? {
                r.reset(&t::ResetRequest {
                    branch: branch.clone(),
                    commit,
                })
                .await?;
            } else {
                let v = open_volume(&path).await?.checkout(&branch).await?;
                v.reset(commit).await?;
            }
            println!("reset branch {branch} to commit {commit}");
        }
        HistoryCommand::Diff {
            path,
            spec_a,
            spec_b,
            json,
        } => {
            let changes = if let Some(r) = remote(&path)? {
                r.diff(&spec_a, &spec_b).await?.changes
            } else {
                let v = open_volume(&path).await?;
                let (a, b) = (v.resolve(&spec_a).await?, v.resolve(&spec_b).await?);
                v.diff(a, b)
                    .await?
                    .iter()
                    .map(fsx_server::wire::change)
                    .collect()
            };
            print_diff(&changes, &spec_a, &spec_b, json)?;
        }
        HistoryCommand::Merge {
            path,
            source,
            into,
            strategy,
        } => {
            let strategy = match strategy {
                Strategy::Fail => t::MergeStrategy::Fail,
                Strategy::Ours => t::MergeStrategy::Ours,
                Strategy::Theirs => t::MergeStrategy::Theirs,
            };
            let merged = if let Some(r) = remote(&path)? {
                r.merge(&t::MergeRequest {
                    source: source.clone(),
                    into: into.clone(),
                    strategy,
                })
                .await?
            } else {
                let v = open_volume(&path).await?;
                let target = v.checkout(&into).await?;
                let from = v.resolve(&source).await?;
                let engine_strategy = match strategy {
                    t::MergeStrategy::Fail => MergeStrategy::Fail,
                    t::MergeStrategy::Ours => MergeStrategy::Ours,
                    t::MergeStrategy::Theirs => MergeStrategy::Theirs,
                };
                fsx_server::wire::merged(target.merge(from, engine_strategy).await?)
            };
            return Ok(print_merged(&merged, &source, &into, strategy));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_735_689_599_000), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn durations_and_pages_print_compactly() {
        assert_eq!(format_duration(DEFAULT_AUTO_RETAIN_MS), "7d");
        assert_eq!(format_duration(90 * 60_000), "90m");
        assert_eq!(format_duration(1500), "1500ms");
        assert_eq!(format_pages(&[0..4, 7..8]), "0-3, 7");
        assert_eq!(parse_interval("off"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("10m"), Ok(Duration::from_secs(600)));
    }
}
