//! `fsx token create|list|revoke`: the API tokens `fsx serve` accepts for
//! a volume.
//!
//! Tokens live in the volume's metadata (`fsx_meta::MetaTokens`), so every
//! server of the volume knows them; only the hash of a token's secret is
//! stored, so `create` prints the token once and it cannot be shown again.
//! Token format, scopes and hashing are `fsx_protocol`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use fsx_meta::TokenRecord;
use fsx_protocol::{Scope, Token};

use crate::volume_cmd::{open_volume, runtime};

/// `fsx token …`.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token for `fsx serve` and print it (only this once).
    ///
    /// Scopes: `read` (tree, branches, history, extents, stats), `write`
    /// (read, and changes: files, directories, commits, branches, merges,
    /// extent uploads), `admin` (write, and reset). Give the token to a
    /// client as `Authorization: Bearer TOKEN`. Only a hash of it is
    /// stored: keep it now, it cannot be shown again.
    Create {
        /// The volume directory.
        path: PathBuf,
        /// What the token may do.
        #[arg(long, value_name = "read|write|admin")]
        scope: Scope,
        /// Whom or what it is for (shown by `fsx token list`).
        #[arg(long, value_name = "L", default_value = "")]
        label: String,
    },
    /// List a volume's tokens: id, scope, creation time, revocation, label.
    List {
        /// The volume directory.
        path: PathBuf,
    },
    /// Revoke a token: requests with it are refused (401) from now on,
    /// by every server of the volume.
    Revoke {
        /// The volume directory.
        path: PathBuf,
        /// The token's id (`fsx token list` shows it).
        id: String,
    },
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new token from the operating system's randomness.
pub(crate) fn new_token() -> anyhow::Result<Token> {
    let mut bytes = [0u8; fsx_protocol::token::RANDOM_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot get random bytes for a token: {e}"))?;
    Ok(Token::from_random(&bytes))
}

/// Runs `fsx token …`.
pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match cmd {
            TokenCommand::Create { path, scope, label } => {
                let v = open_volume(&path).await?;
                let token = new_token()?;
                let record = TokenRecord::new(
                    token.id(),
                    label,
                    scope.as_str(),
                    token.hash().to_hex(),
                    now_ms(),
                );
                v.meta()
                    .create_token(&record)
                    .await
                    .context("cannot store the token")?;
                println!("{}", token.reveal());
                eprintln!(
                    "fsx: token {} ({scope}) created; this is the only time it is shown: \
                     keep it now (only its hash is stored)",
                    token.id()
                );
            }
            TokenCommand::List { path } => {
                let v = open_volume(&path).await?;
                let tokens = v.meta().tokens().await?;
                println!(
                    "{:<16}  {:<5}  {:<20}  {:<20}  LABEL",
                    "ID", "SCOPE", "CREATED", "REVOKED"
                );
                for t in &tokens {
                    let revoked = t.revoked_ms.map_or_else(|| "-".to_string(), format_time);
                    println!(
                        "{:<16}  {:<5}  {:<20}  {:<20}  {}",
                        t.id,
                        t.scope,
                        format_time(t.created_ms),
                        revoked,
                        t.label
                    );
                }
            }
            TokenCommand::Revoke { path, id } => {
                let v = open_volume(&path).await?;
                v.meta().revoke_token(&id, now_ms()).await?;
                println!("revoked token {id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn format_time(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
