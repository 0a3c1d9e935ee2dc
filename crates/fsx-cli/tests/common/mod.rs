//! Running the real `fsx` binary from tests.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `fsx` with `args`.
pub fn fsx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fsx"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = fsx(args);
    assert!(
        out.status.success(),
        "fsx {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 2 (an error rather than a
/// finding); returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = fsx(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "fsx {args:?} should fail with an error: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must succeed and print JSON.
pub fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
