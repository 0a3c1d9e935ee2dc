//! The SIGKILL harness of the crash tests: a test re-runs its own binary as
//! a child that prints `ack N` after each durable step, kills it after a
//! random number of acknowledgements, and then checks that every
//! acknowledged step survived.
//!
//! [`run_child`] is the general form: it can also let the child run on for
//! a seeded delay after the last acknowledgement it waits for, or let it
//! end on its own (a crash test's child that aborts at an injected
//! failpoint, see `fsx_engine::failpoint`).
//!
//! Reproducible: the seed comes from `FSX_CRASH_SEED` when set (and is
//! printed either way), the number of kills from `FSX_CRASH_KILLS`.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::Duration;

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
    let run = run_child::<T>(
        test_name,
        &[(env, value)],
        Stop::AfterAcks {
            acks,
            delay: Duration::ZERO,
        },
    );
    (run.acks_before_stop, run.last)
}

/// When [`run_child`] stops the child.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// SIGKILL once it has printed `acks` acknowledgements and then `delay`
    /// has passed (the child goes on working meanwhile, so a seeded delay
    /// moves the kill to a point between acknowledgements that no ack
    /// count reaches). A child that ends first is not killed.
    AfterAcks {
        /// Acknowledgements to wait for.
        acks: u64,
        /// How long to let it run on after them.
        delay: Duration,
    },
    /// Let the child end on its own (an injected crash or the end of its
    /// workload).
    Never,
}

/// How a child run ended.
#[derive(Debug)]
pub enum Ending {
    /// The harness killed it.
    Killed,
    /// It ended on its own, with this status.
    Exited(ExitStatus),
}

/// What a child printed and how it ended.
#[derive(Debug)]
pub struct ChildRun<T> {
    /// Acknowledgements seen before the harness stopped waiting for more
    /// (for [`Stop::AfterAcks`], at most `acks`).
    pub acks_before_stop: u64,
    /// Acknowledgements printed in all.
    pub acks: u64,
    /// The last acknowledged `N`.
    pub last: Option<T>,
    /// Whether the child printed `done` (it finished its workload).
    pub done: bool,
    /// How it ended.
    pub ending: Ending,
    /// What it wrote to stdout besides acknowledgements (libtest's report
    /// of a failed child goes there).
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl<T> ChildRun<T> {
    /// Whether the child aborted itself (SIGABRT), as an injected crash does.
    pub fn aborted(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        matches!(&self.ending, Ending::Exited(s) if s.signal() == Some(6))
    }

    /// The last lines of the child's stdout (besides acknowledgements) and
    /// stderr, for the failure message of a child that died of something
    /// else than the crash under test.
    pub fn output_tail(&self) -> String {
        let tail = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "stdout:\n{}\nstderr:\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// Runs test `test_name` of the current test binary as a child with `envs`
/// set, reading `ack N` and `done` lines from its stdout, and stops it as
/// `stop` says.
pub fn run_child<T: FromStr>(test_name: &str, envs: &[(&str, &str)], stop: Stop) -> ChildRun<T>
where
    T::Err: std::fmt::Debug,
{
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = Command::new(exe);
    command
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the child test starts");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let mut stderr = child.stderr.take().expect("the child's stderr is piped");
    // Drained on a thread so a chatty child never blocks on a full pipe.
    let stderr = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let mut run = ChildRun {
        acks_before_stop: 0,
        acks: 0,
        last: None,
        done: false,
        ending: Ending::Killed,
        stdout: String::new(),
        stderr: String::new(),
    };
    let take = |line: std::io::Result<String>, run: &mut ChildRun<T>| {
        let line = line.expect("the child's output is text");
        // libtest prints `test NAME ... ` without a newline before the
        // test runs, so the child's first line arrives behind it: look at
        // the end of the line, not its start.
        if line.split_whitespace().last() == Some("done") {
            run.done = true;
        } else if let Some((_, n)) = line.rsplit_once("ack ") {
            run.last = Some(n.parse::<T>().expect("an ack carries a number"));
            run.acks += 1;
        } else {
            run.stdout.push_str(&line);
            run.stdout.push('\n');
        }
    };
    let mut lines = BufReader::new(stdout).lines();
    let mut kill = None;
    if let Stop::AfterAcks { acks, delay } = stop {
        for line in lines.by_ref() {
            take(line, &mut run);
            if run.acks == acks {
                kill = Some(delay);
                break;
            }
        }
    }
    run.acks_before_stop = run.acks;
    if let Some(delay) = kill {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        // A child that already ended cannot be killed; that is fine.
        if matches!(child.try_wait(), Ok(None)) {
            child.kill().expect("the child can be killed");
        }
    }
    for line in lines {
        take(line, &mut run);
    }
    let status = child.wait().expect("the child is reaped");
    run.stderr = stderr.join().unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    if kill.is_none() || status.signal() != Some(9) {
        run.ending = Ending::Exited(status);
    }
    run
}
