//! What the engine needs from its surroundings, injected so the core stays
//! free of ambient time, randomness and OS calls (tests drive a manual
//! clock; a Workers build supplies its own), and the failpoints a crash
//! test drives through it (`crate::failpoint`), and where CPU-heavy work
//! runs ([`Environment::compute`]): the engine has no runtime and spawns
//! no thread itself, so a Workers build runs it inline.

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

    /// Runs `job`, CPU work such as encoding and hashing an extent,
    /// where it does not hold up the caller's thread if the environment
    /// has such a place; by default, inline. The job must run exactly
    /// once (a lost job fails the operation that awaits it).
    fn compute(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        job();
    }
}

/// Hands `f` to [`Environment::compute`] now; its result arrives on the
/// returned receiver (see [`finished`]).
pub(crate) fn submit<T: Send + 'static>(
    env: &dyn Environment,
    f: impl FnOnce() -> T + Send + 'static,
) -> futures_channel::oneshot::Receiver<T> {
    let (tx, rx) = futures_channel::oneshot::channel();
    env.compute(Box::new(move || {
        // The receiver is gone only if its result is no longer wanted.
        let _ = tx.send(f());
    }));
    rx
}

/// Runs `f` through [`Environment::compute`] and awaits its result.
pub(crate) async fn offload<T: Send + 'static>(
    env: &dyn Environment,
    f: impl FnOnce() -> T + Send + 'static,
) -> crate::Result<T> {
    finished(submit(env, f)).await
}

/// The result of a job from [`submit`].
pub(crate) async fn finished<T>(rx: futures_channel::oneshot::Receiver<T>) -> crate::Result<T> {
    rx.await.map_err(|_| {
        crate::Error::new(
            crate::ErrorKind::Other,
            "a CPU job was dropped before it finished (it panicked)",
        )
    })
}

/// A job for [`Environment::compute`].
type Job = Box<dyn FnOnce() + Send>;

/// Worker threads that run [`Environment::compute`] jobs for
/// [`SystemEnv`], one per core, started on first use.
struct Pool {
    jobs: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>,
}

impl Pool {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fsx-compute-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok(job) = job else { return };
                        // A panicking job drops its result sender, which
                        // fails its caller; the worker lives on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        Self {
            jobs: std::sync::Mutex::new((started > 0).then_some(tx)),
        }
    }

    /// Queues `job`, or gives it back if there is no worker.
    fn submit(&self, job: Job) -> Result<(), Job> {
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match jobs.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

/// The real environment of a native process: the system clock, holder ids
/// of the form `host:pid:n`, and `/proc` to see whether a local holder's
/// process is gone.
pub struct SystemEnv {
    host: String,
    pid: u32,
    counter: AtomicU64,
    pool: std::sync::OnceLock<Pool>,
}

impl std::fmt::Debug for SystemEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SystemEnv({}:{})", self.host, self.pid)
    }
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
            pool: std::sync::OnceLock::new(),
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

    fn compute(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        if let Err(job) = self.pool.get_or_init(Pool::start).submit(job) {
            job();
        }
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
