//! Fixtures of the server tests: volumes, tokens, a server on a free
//! loopback port (stopped when the test ends), and a client.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fsx_engine::{SystemEnv, VolumeOptions};
use fsx_meta::TokenRecord;
use fsx_protocol::{Scope, Token};
use fsx_server::{ServeConfig, Server};
use fsx_volume::VolumeFile;

/// Makes a volume in `dir` (SQLite metadata, or `meta` when given).
pub async fn make_volume(dir: &Path, meta: Option<String>) -> PathBuf {
    fsx_volume::create(
        dir,
        &VolumeFile::new(meta, None),
        2 << 20,
        Arc::new(SystemEnv::new()),
        VolumeOptions::default(),
    )
    .await
    .unwrap();
    dir.to_path_buf()
}

/// A new token of `scope` stored in the volume in `dir`; returns it whole.
pub async fn token(dir: &Path, scope: Scope, seed: u8) -> String {
    let mut bytes = [0u8; fsx_protocol::token::RANDOM_BYTES];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    let t = Token::from_random(&bytes);
    let v = open(dir).await;
    v.meta()
        .create_token(&TokenRecord::new(
            t.id(),
            "test",
            scope.as_str(),
            t.hash().to_hex(),
            1,
        ))
        .await
        .unwrap();
    t.reveal()
}

/// The volume in `dir`, opened beside the server (as `fsx` would be).
pub async fn open(dir: &Path) -> fsx_engine::Volume {
    fsx_volume::open(dir, Arc::new(SystemEnv::new()), VolumeOptions::default())
        .await
        .unwrap()
}

/// Starts a server of `volumes` on a free loopback port.
pub async fn serve(volumes: Vec<PathBuf>, limits: Option<fsx_server::Limits>) -> Server {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), volumes);
    if let Some(l) = limits {
        config.limits = l;
    }
    Server::start(config).await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// The error code of a JSON error answer.
pub async fn code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

/// A tiny EXT1 extent and its key.
pub fn extent(seed: u8) -> (Vec<u8>, String) {
    let mut blob = vec![0u8; 64];
    blob[..4].copy_from_slice(b"EXT1");
    blob[4] = 1;
    blob[8..12].copy_from_slice(&4096u32.to_le_bytes());
    blob[40] = seed;
    let key = fsx_format::content_key(&blob);
    (blob, key)
}

/// The value of the metric line starting with `series ` (name and
/// labels, as `/metrics` prints them) of the server at `server`.
pub async fn metric(server: &str, series: &str) -> Option<u64> {
    let text = client()
        .get(format!("{server}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
}
