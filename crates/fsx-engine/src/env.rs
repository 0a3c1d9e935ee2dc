//! What the engine needs from its surroundings, injected so the core stays
//! free of ambient time, randomness and OS calls (tests drive a manual
//! clock; a Workers build supplies its own), and the failpoints a crash
//! test drives through it (`crate::failpoint`).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::failpoint::{FailAction, Failpoint};

/// Time, identity and liveness as the engine sees them.
pub trait Environment: fsx_store::MaybeSend + fsx_store::MaybeSync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// A name for a new writer, unique across processes and machines.
    fn new_holder_id(&self) -> String;

    /// Whether `holder` (a name from [`Environment::new_holder_id`]) is
    /// known to be dead, so its lease may be broken before it expires.
    /// `false` when unsure.
    fn holder_is_dead(&self, holder: &str) -> bool;

    /// What to do at failpoint `point` (see [`crate::failpoint`]): always
    /// [`FailAction::Continue`] unless the environment injects faults, as
    /// [`crate::failpoint::SeededFaults`] does for crash tests.
    fn failpoint(&self, point: Failpoint) -> FailAction {
        let _ = point;
        FailAction::Continue
    }
}

/// The real environment of a native process: the system clock, holder ids
/// of the form `host:pid:n`, and `/proc` to see whether a local holder's
/// process is gone.
#[derive(Debug)]
pub struct SystemEnv {
    host: String,
    pid: u32,
    counter: AtomicU64,
}

impl SystemEnv {
    /// The environment of this process.
    pub fn new() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            host,
            pid: std::process::id(),
            counter: AtomicU64::new(0),
        }
    }
}

impl Default for SystemEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Environment for SystemEnv {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn new_holder_id(&self) -> String {
        // The start time keeps ids unique across pid reuse.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}:{}:{}-{n}", self.host, self.pid, self.now_ms())
    }

    fn holder_is_dead(&self, holder: &str) -> bool {
        let mut parts = holder.splitn(3, ':');
        let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        host == self.host
            && pid != self.pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
}

/// A deterministic environment for tests: a clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualEnv {
    now: AtomicI64,
    counter: AtomicU64,
}

impl ManualEnv {
    /// A clock at `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            now: AtomicI64::new(now_ms),
            counter: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Environment for ManualEnv {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn new_holder_id(&self) -> String {
        format!("test:{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn holder_is_dead(&self, _holder: &str) -> bool {
        false
    }
}
