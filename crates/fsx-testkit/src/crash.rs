//! The SIGKILL harness of the crash tests: a test re-runs its own binary as
//! a child that prints `ack N` after each durable step, kills it after a
//! random number of acknowledgements, and then checks that every
//! acknowledged step survived.
//!
//! Reproducible: the seed comes from `FSX_CRASH_SEED` when set (and is
//! printed either way), the number of kills from `FSX_CRASH_KILLS`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// The run's seed: `FSX_CRASH_SEED`, else the clock. Printed so a failing
/// run can be repeated.
// The seed goes to the test's own output, which is where a reader of a
// failed run looks.
#[allow(clippy::print_stderr)]
pub fn seed(what: &str) -> u64 {
    let seed = std::env::var("FSX_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("{what} seed {seed} (rerun with FSX_CRASH_SEED={seed})");
    seed
}

/// Kills to make: `FSX_CRASH_KILLS`, else `default`.
pub fn kills(default: usize) -> usize {
    std::env::var("FSX_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(default)
}

/// A xorshift generator: kill points that a seed reproduces.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs test `test_name` of the current test binary as a child with
/// `env = value` set, SIGKILLs it once it has printed `acks` lines
/// `ack N`, and returns how many it printed before the kill and the last
/// `N` it printed at all (acknowledgements already in the pipe when the
/// kill landed count: the step was durable).
pub fn kill_after_acks<T: FromStr>(
    test_name: &str,
    env: &str,
    value: &str,
    acks: u64,
) -> (u64, Option<T>)
where
    T::Err: std::fmt::Debug,
{
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child test starts");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let parse = |line: std::io::Result<String>| {
        let line = line.expect("the child's output is text");
        line.strip_prefix("ack ")
            .map(|n| n.parse::<T>().expect("an ack carries a number"))
    };
    let mut lines = BufReader::new(stdout).lines();
    let (mut seen, mut last) = (0, None);
    for line in lines.by_ref() {
        if let Some(n) = parse(line) {
            last = Some(n);
            seen += 1;
            if seen == acks {
                break;
            }
        }
    }
    child.kill().expect("the child can be killed");
    child.wait().expect("the killed child is reaped");
    for line in lines {
        if let Some(n) = parse(line) {
            last = Some(n);
        }
    }
    (seen, last)
}
