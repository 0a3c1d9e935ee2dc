//! `fsx`: the command-line tool of fsx.
//!
//! The binary is a composition root: it parses arguments, builds concrete
//! backends and engines from URLs and paths, shows progress, and turns
//! library errors into messages and exit codes. Logic that can be tested
//! without a terminal lives in the library crates.

// Printing is this binary's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench_cmd;
mod branch_cmd;
mod extent_cmd;
mod mount_cmd;
mod remote_cmd;
mod serve_cmd;
mod sql_cmd;
mod store_cmd;
mod tier_cmd;
mod token_cmd;
mod tree;
mod tree_cmd;
mod volume_cmd;
mod watch_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fsx: page-native, deduplicating, branchable storage for databases on
/// object storage.
#[derive(Parser)]
#[command(
    name = "fsx",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What the exit status says, above all whether data is safe.
const EXIT_STATUS: &str = "\
Exit status:
  0    success; the data is safe. A put whose pages could not be packed into
       extents still exits 0 with a warning: they are durable in the metadata
       and `fsx gc` packs them.
  1    a finding, not an error: `fsck` found faults, `extent verify|inspect`
       a bad extent, `store check` a failed check, `merge` stopped on
       conflicts (nothing applied), `sql` a failed statement, `import` or
       `export` could not copy something (each named on stderr; everything
       else was copied).
  2    an error (bad arguments included): the command failed and changed
       nothing. A failed `file get` leaves the destination as it was; a failed
       `file put` of a new name stores nothing under it. Maintenance (gc,
       tier commands) stops in a consistent state the next run finishes.
  3    `file put` over an existing file failed after part of the new data
       became durable: the file may hold part of it; put it again.
Output to a closed pipe (`fsx … | head`) ends the command quietly, as SIGPIPE.";

#[derive(Subcommand)]
enum Command {
    /// Create a volume (embedded defaults: SQLite metadata and a data
    /// directory inside PATH).
    Init(volume_cmd::InitArgs),
    /// Copy files in and out of a volume, list, rename, delete them.
    #[command(subcommand)]
    File(volume_cmd::FileCommand),
    /// Copy a local directory tree into a volume's file tree.
    ///
    /// Copies the contents of DIR into VOLUME:/PATH (default: the root;
    /// missing directories of PATH are made), which must be empty unless
    /// --force. Keeps file contents with their holes, modes (set-user-ID,
    /// set-group-ID, sticky), access and modification times (ns), symlinks,
    /// hard links, extended attributes (user., trusted., security.), FIFOs,
    /// sockets and device nodes, and — when run as root — owners (else the
    /// copies are the user's, and a note says so); PATH itself takes DIR's
    /// attributes. Whatever cannot be copied is named on
    /// stderr with the reason, the rest is copied, and the exit status is 1.
    Import(tree_cmd::ImportArgs),
    /// Copy a directory tree of a volume out into a local directory.
    ///
    /// Copies the contents of VOLUME:/PATH (default: the root) into DIR,
    /// which is made if missing and must be empty unless --force; DIR takes
    /// PATH's attributes. Keeps what `fsx import` keeps, holes included.
    /// Whatever cannot be copied is named on stderr with the reason, the
    /// rest is copied, and the exit status is 1.
    Export(tree_cmd::ExportArgs),
    /// List a directory of a volume's file tree (or show one entry).
    ///
    /// Names are printed as they are unless they hold control characters
    /// or bytes that are not UTF-8: then quoted, with escapes.
    Ls(tree_cmd::LsArgs),
    /// Mount a volume's tree as a local file system (FUSE).
    ///
    /// Every database and program can then use the volume. `fsync`,
    /// `fdatasync` and `close` of a written file are durable when they
    /// return; a crash of the daemon loses nothing they acknowledged. The
    /// daemon detaches once the mount is ready (--foreground keeps it);
    /// `fsx umount`, `fusermount3 -u`, SIGTERM or SIGINT unmount it after
    /// closing every file. Needs root, or fusermount3 and access to
    /// /dev/fuse. Another mount of the volume on the same PostgreSQL
    /// metadata sees a file closed here whole at its next open.
    Mount(mount_cmd::MountArgs),
    /// Unmount a volume mounted with `fsx mount`, and wait until its
    /// daemon has closed its files and exited.
    Umount(mount_cmd::UmountArgs),
    #[command(flatten)]
    Volume(volume_cmd::VolumeCommand),
    /// Branches: create (from a branch or commit), list with the bytes each
    /// holds alone, delete, and configure automatic commits.
    #[command(subcommand)]
    Branch(branch_cmd::BranchCommand),
    #[command(flatten)]
    History(branch_cmd::HistoryCommand),
    /// Run SQL on a database in a volume through the fsx SQLite VFS (an
    /// interactive shell when no SQL is given).
    Sql(sql_cmd::SqlArgs),
    /// Inspect and verify EXT1 extent files.
    #[command(subcommand)]
    Extent(extent_cmd::ExtentCommand),
    /// Check and benchmark storage backends (conformance suite, throughput).
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Load tests: `fsx bench serve` loads the HTTP API of `fsx serve`.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
    /// Tiered storage: status, promotion, demotion, configuration,
    /// replication and scrubbing.
    #[command(subcommand)]
    Tier(tier_cmd::TierCommand),
    /// Monthly storage and operation cost by tier, next to the same
    /// operations with one blob per page.
    Cost(tier_cmd::CostArgs),
    /// API tokens for `fsx serve`: create (printed once), list, revoke.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Serve volumes over HTTP (docs/API.md): every request needs a token
    /// of its volume (`fsx token create`) unless the volume is public-read
    /// (`server.public_read` = true). Prints `listening on URL`; SIGTERM or
    /// SIGINT stop it after the requests in flight.
    Serve(serve_cmd::ServeArgs),
    /// Print a volume's changes as they happen (its change feed): one
    /// line per change, `SEQ KIND BRANCH PATH [-> PATH]`, from a volume
    /// directory or a remote volume (`http(s)://…/v1/volumes/NAME`, token
    /// from FSX_TOKEN). A remote feed interrupted by a server restart is
    /// resumed from the last line printed.
    Watch(watch_cmd::WatchArgs),
}

fn main() -> ExitCode {
    restore_sigpipe();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FSX_LOG")
                // fuser warns when the kernel's unmount came first (every
                // `fsx umount`): not worth a line in the log.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,fuser::session=error")
                }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => volume_cmd::init(args),
        Command::File(cmd) => volume_cmd::run_file(cmd),
        Command::Import(args) => tree_cmd::import(args),
        Command::Export(args) => tree_cmd::export(args),
        Command::Ls(args) => tree_cmd::ls(args),
        Command::Mount(args) => mount_cmd::mount(args),
        Command::Umount(args) => mount_cmd::umount(args),
        Command::Volume(cmd) => volume_cmd::run(cmd),
        Command::Branch(cmd) => branch_cmd::run_branch(cmd),
        Command::History(cmd) => branch_cmd::run_history(cmd),
        Command::Sql(args) => sql_cmd::run(args),
        Command::Extent(cmd) => extent_cmd::run(cmd),
        Command::Store(cmd) => store_cmd::run(cmd),
        Command::Bench(cmd) => bench_cmd::run(cmd),
        Command::Tier(cmd) => tier_cmd::run(cmd),
        Command::Cost(args) => tier_cmd::run_cost(args),
        Command::Token(cmd) => token_cmd::run(cmd),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Watch(args) => watch_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fsx: error: {}", message(&err));
            ExitCode::from(2)
        }
    }
}

/// Lets SIGPIPE end the process, as it ends `cat` or `ls`: `fsx … | head`
/// then stops quietly when `head` has read enough. Rust ignores SIGPIPE by
/// default, which turns the closed pipe into an error that `println!`
/// answers with a panic (exit 101). Socket writes are unaffected: the
/// standard library sends with `MSG_NOSIGNAL`.
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists;
    // setting a signal's disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// An error and its causes, joined by `: `, leaving out a cause that only
/// repeats what is already said: library errors keep their source (a
/// metadata error inside an engine error), whose text is often the same
/// message behind a `kind: ` prefix.
fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let repeated = !out.is_empty()
            && (out.contains(&text)
                || text
                    .split_once(": ")
                    .is_some_and(|(_, rest)| out.contains(rest)));
        if repeated {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
