//! Real databases on an `fsx mount`: their own files, their own I/O, their
//! own consistency checks, and the data still there after the volume is
//! unmounted and mounted again.
//!
//! What these tests prove, each on a volume and mount point of its own:
//!
//! - **PostgreSQL 15** (run as the `postgres` user on a mount with
//!   `-o allow_other`): `initdb` with data checksums, `pgbench -i` and a
//!   timed `pgbench` run; every account is there, the balances add up to
//!   the history's deltas (and to the tellers' and branches'), the history
//!   holds exactly the transactions pgbench reported, `pg_amcheck` finds
//!   nothing, and `pg_checksums --check` verifies every page once the
//!   server is stopped. Then a **crash**: the fsx daemon is SIGKILLed in
//!   the middle of a pgbench run (and PostgreSQL with it, like a power
//!   loss), `fsx umount` clears the dead mount, `fsx mount` mounts the
//!   volume again, and PostgreSQL recovers from its WAL: every transaction
//!   seen committed before the kill is still there, the balances still
//!   add up, and `pg_amcheck` and `pg_checksums` are clean.
//! - **SQLite** through its native (unix) VFS on the mount, in WAL mode
//!   (the `-shm` file is mmapped from the mount, and the WAL is left
//!   un-checkpointed across the remount so the reader must replay it) and
//!   in rollback-journal mode: thousands of rows in many transactions,
//!   rolled-back transactions leaving no trace, `PRAGMA integrity_check`
//!   ok and every row as written after a remount. And in both modes the
//!   fsx daemon SIGKILLed with a transaction open: after a remount every
//!   committed row is there and the open transaction is not.
//! - **DuckDB**, **ClickHouse** in process (chDB, a `MergeTree` table) and
//!   **Kuzu** (a graph): built on the mount, queried after a remount, the
//!   answers compared with values computed here. These run in a Python
//!   interpreter named by `FSX_TEST_PYTHON` (scripts/test.sh creates that
//!   virtualenv with scripts/python-tools.sh); without it the tests fail
//!   and say so, they never skip.
//!
//! Size: `FSX_MOUNT_PG_SCALE` (default 2) and `FSX_MOUNT_PG_SECONDS`
//! (default 10) set pgbench's scale and run length; the full run
//! is scale 10 for 60 s.
//!
//! Every mount is undone by a guard whose `Drop` runs `fsx umount`, so a
//! failing test leaves no mount behind; PostgreSQL is stopped before it.

// The tests report what they ran (versions, transaction counts) and
// cleanup failures on stderr.
#![allow(clippy::print_stderr)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long any one command may take before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// Commands with a deadline

/// Runs `cmd` to completion, killing it (and failing) after `timeout`.
fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = reader(Box::new(out));
    let err = reader(Box::new(err));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{desc} did not finish within {timeout:?} (the mount may hang); stderr so far: {}",
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `cmd`, which must succeed; returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let out = run_timeout(cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{desc} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fsx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fsx"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A temporary directory other users can enter (PostgreSQL runs as
/// `postgres` and has to reach the mount point inside it).
fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("fsx-mount-db.")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// The mount guard

/// A volume mounted by `fsx mount`; dropping it runs `fsx umount`.
struct Mounted {
    volume: PathBuf,
    mountpoint: PathBuf,
    options: Vec<String>,
    mounted: bool,
}

impl Mounted {
    /// Creates a volume under `dir` and mounts it on `dir/mnt`.
    fn new(dir: &Path, options: &[&str]) -> Mounted {
        let volume = dir.join("vol");
        let mountpoint = dir.join("mnt");
        std::fs::create_dir(&mountpoint).unwrap();
        let mountpoint = std::fs::canonicalize(&mountpoint).unwrap();
        run_ok(fsx().args(["init", s(&volume)]));
        let mut m = Mounted {
            volume,
            mountpoint,
            options: options.iter().map(|o| o.to_string()).collect(),
            mounted: false,
        };
        m.mount();
        m
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }

    fn mount(&mut self) {
        assert!(!self.mounted);
        let mut cmd = fsx();
        cmd.args(["mount", s(&self.volume), s(&self.mountpoint)]);
        if !self.options.is_empty() {
            cmd.arg("-o").arg(self.options.join(","));
        }
        let out = run_timeout(&mut cmd, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "fsx mount failed ({}): {}\n{}\nmount.log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("mounted"),
            "fsx mount said: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        self.mounted = true;
    }

    /// `fsx umount`, which must succeed.
    fn umount(&mut self) {
        assert!(self.mounted);
        self.mounted = false;
        let out = run_timeout(fsx().args(["umount", s(&self.mountpoint)]), COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "fsx umount failed ({}): {}\n{}\nmount.log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    fn remount(&mut self) {
        self.umount();
        self.mount();
    }

    /// The daemon's pid, from its pid file.
    fn daemon_pid(&self) -> i32 {
        let name: String = s(&self.mountpoint)
            .chars()
            .map(|c| if c == '/' { '%' } else { c })
            .collect();
        let file = Path::new("/run/fsx").join(format!("{name}.pid"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("cannot read the daemon's pid file {}: {e}", file.display())
        });
        let pid: i32 = text.trim().parse().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(
            comm.trim(),
            "fsx",
            "pid {pid} from {} is not fsx",
            file.display()
        );
        pid
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.volume.join("mount.log")).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        match run_timeout_quiet(fsx().args(["umount", s(&self.mountpoint)])) {
            Some(o) if o.status.success() => {}
            Some(o) => eprintln!(
                "fsx umount {} failed in cleanup: {}",
                self.mountpoint.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            None => eprintln!("fsx umount {} hung in cleanup", self.mountpoint.display()),
        }
    }
}

/// For cleanup: like `run_timeout` but never panics.
fn run_timeout_quiet(cmd: &mut Command) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let started = Instant::now();
    while child.try_wait().ok()?.is_none() {
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().ok()
}

// ---------------------------------------------------------------------------
// Processes

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
            !matches!(state.and_then(|r| r.chars().next()), Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

/// `pid` and all its descendants, from /proc.
fn process_tree(pid: i32) -> Vec<i32> {
    let mut parent = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        if let Some((_, rest)) = stat.rsplit_once(')')
            && let Some(pp) = rest.split_whitespace().nth(1)
            && let Ok(pp) = pp.parse::<i32>()
        {
            parent.push((p, pp));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) with a pid this test started (or its descendant).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn wait_gone(pids: &[i32], what: &str) {
    let started = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} (pids {pids:?}) still alive 60 s after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL

const PG_USER: &str = "postgres";

fn pg_bin() -> PathBuf {
    let d = PathBuf::from(
        std::env::var("FSX_MOUNT_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    );
    assert!(
        d.join("initdb").exists() && d.join("pgbench").exists(),
        "PostgreSQL 15 is not installed in {} (apt-get install postgresql-15, or run scripts/test.sh; \
         FSX_MOUNT_PG_BIN names another bin directory)",
        d.display()
    );
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn uid_gid(user: &str) -> (u32, u32) {
    let c = std::ffi::CString::new(user).unwrap();
    // SAFETY: getpwnam with a valid C string; the two fields are copied
    // out at once. (Its static buffer is shared between threads, but every
    // caller here looks up the same user.)
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    assert!(
        !pw.is_null(),
        "no user {user}: PostgreSQL runs as that user"
    );
    // SAFETY: non-null pointer to a passwd entry.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn chown(p: &Path, user: &str) {
    let (uid, gid) = uid_gid(user);
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("cannot chown {} to {user}: {e}", p.display()));
}

/// A PostgreSQL cluster whose data directory is on a mount; dropping it
/// stops the server (immediately, or by SIGKILL if that fails).
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// Socket directory and server log (not on the mount).
    run_dir: PathBuf,
    port: u16,
    postmaster: Option<i32>,
}

impl Postgres {
    /// `initdb` (with data checksums) into `data`, which it creates;
    /// `no_sync` skips initdb's fsync of every file it wrote.
    fn init(data: PathBuf, run_dir: PathBuf, no_sync: bool) -> Postgres {
        let bin = pg_bin();
        std::fs::create_dir(&data).unwrap();
        chown(&data, PG_USER);
        std::fs::create_dir(&run_dir).unwrap();
        chown(&run_dir, PG_USER);
        let pg = Postgres {
            bin,
            data,
            run_dir,
            port: free_port(),
            postmaster: None,
        };
        let mut initdb = pg.cmd("initdb");
        if no_sync {
            initdb.arg("--no-sync");
        }
        run_ok(initdb.args([
            "-D",
            s(&pg.data),
            "--data-checksums",
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
        ]));
        pg
    }

    /// A PostgreSQL program run as the postgres user (setpriv execs it, so
    /// killing the child kills the program).
    fn cmd(&self, program: &str) -> Command {
        let (uid, gid) = uid_gid(PG_USER);
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups")
            .arg("--")
            .arg(self.bin.join(program))
            .current_dir(&self.run_dir)
            .env("HOME", &self.run_dir)
            .env("PGHOST", &self.run_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "postgres");
        c
    }

    fn log_file(&self) -> PathBuf {
        self.run_dir.join("postgres.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    fn start(&mut self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c shared_buffers=32MB \
             -c max_wal_size=256MB -c checkpoint_timeout=30s -c fsync=on",
            self.port,
            s(&self.run_dir)
        );
        let out = run_timeout(
            self.cmd("pg_ctl").args([
                "start",
                "-w",
                "-t",
                "240",
                "-D",
                s(&self.data),
                "-l",
                s(&self.log_file()),
                "-o",
                &opts,
            ]),
            COMMAND_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let pidfile = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        self.postmaster = Some(pidfile.lines().next().unwrap().trim().parse().unwrap());
    }

    fn stop(&mut self) {
        let out = run_timeout(
            self.cmd("pg_ctl")
                .args(["stop", "-w", "-t", "240", "-m", "fast", "-D", s(&self.data)]),
            COMMAND_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.postmaster = None;
    }

    /// One value from a query.
    fn query(&self, sql: &str) -> String {
        run_ok(
            self.cmd("psql")
                .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]),
        )
        .trim()
        .to_string()
    }

    fn query_i64(&self, sql: &str) -> i64 {
        let v = self.query(sql);
        v.parse()
            .unwrap_or_else(|_| panic!("{sql} returned {v:?}, not a number"))
    }

    /// pg_amcheck over every database: heap and B-tree checks, every heap
    /// tuple looked up in its indexes. Must report nothing.
    fn amcheck(&self) {
        let out = run_timeout(
            self.cmd("pg_amcheck")
                .args(["--all", "--install-missing", "--heapallindexed"]),
            COMMAND_TIMEOUT,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.trim().is_empty(),
            "pg_amcheck found corruption ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// pg_checksums over the stopped cluster: every page's checksum.
    fn verify_checksums(&self) {
        assert!(self.postmaster.is_none());
        let out = run_ok(
            self.cmd("pg_checksums")
                .args(["--check", "-D", s(&self.data)]),
        );
        assert!(
            out.contains("Bad checksums:  0"),
            "pg_checksums found bad pages:\n{out}"
        );
    }

    /// The pgbench invariants; returns the history's row count.
    fn check_bank(&self, scale: u64) -> i64 {
        let scale = scale as i64;
        assert_eq!(
            self.query_i64("SELECT count(*) FROM pgbench_accounts"),
            100_000 * scale,
            "pgbench_accounts lost or gained rows"
        );
        assert_eq!(
            self.query_i64("SELECT count(DISTINCT aid) FROM pgbench_accounts"),
            100_000 * scale
        );
        assert_eq!(
            self.query_i64("SELECT count(*) FROM pgbench_tellers"),
            10 * scale
        );
        assert_eq!(
            self.query_i64("SELECT count(*) FROM pgbench_branches"),
            scale
        );
        let sums = self.query(
            "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) || ' ' || \
                    (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers) || ' ' || \
                    (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches) || ' ' || \
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
        );
        let v: Vec<i64> = sums.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(
            (v[0], v[1], v[2]),
            (v[3], v[3], v[3]),
            "balances (accounts, tellers, branches) do not add up to the history's deltas {}",
            v[3]
        );
        // The primary key's index finds every account too.
        let via_index = run_ok(
            self.cmd("psql")
                .env("PGOPTIONS", "-c enable_seqscan=off")
                .args(["-X", "-At", "-c"])
                .arg("SELECT count(*) FROM pgbench_accounts WHERE aid > 0"),
        );
        let via_index: i64 = via_index.trim().parse().unwrap();
        assert_eq!(via_index, 100_000 * scale, "index scan disagrees");
        self.query_i64("SELECT count(*) FROM pgbench_history")
    }

    fn pgbench_init(&self, scale: u64) {
        run_ok(
            self.cmd("pgbench")
                .args(["-i", "-q", "-s", &scale.to_string()]),
        );
    }

    /// pgbench's run, not yet waited for.
    fn pgbench_spawn(&self, seconds: u64) -> Child {
        self.cmd("pgbench")
            .args(["-T", &seconds.to_string(), "-c", "4", "-j", "2", "-n"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Some(pm) = self.postmaster.take() else {
            return;
        };
        let stopped = run_timeout_quiet(self.cmd("pg_ctl").args([
            "stop",
            "-w",
            "-t",
            "60",
            "-m",
            "immediate",
            "-D",
            s(&self.data),
        ]))
        .is_some_and(|o| o.status.success());
        if !stopped {
            let tree = process_tree(pm);
            for p in &tree {
                sigkill(*p);
            }
        }
    }
}

/// The number pgbench printed after `label`.
fn pgbench_number(out: &str, label: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pgbench printed no {label:?}:\n{out}"))
}

fn wait_child(mut child: Child, timeout: Duration) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "pgbench did not finish within {timeout:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn pg_scale() -> u64 {
    env_u64("FSX_MOUNT_PG_SCALE", 2)
}

fn pg_seconds() -> u64 {
    env_u64("FSX_MOUNT_PG_SECONDS", 10)
}

/// PostgreSQL on the mount: pgbench, then its invariants, amcheck and
/// checksums, and the same again after a remount.
#[test]
fn postgres_pgbench_on_mount() {
    let dir = temp_dir();
    let mut mnt = Mounted::new(dir.path(), &["allow_other"]);
    // initdb syncs every file it writes (about a thousand).
    let mut pg = Postgres::init(mnt.path().join("pgdata"), dir.path().join("pgrun"), false);
    pg.start();
    let scale = pg_scale();
    pg.pgbench_init(scale);
    assert_eq!(pg.check_bank(scale), 0);
    let bench = pg.pgbench_spawn(pg_seconds());
    let out = wait_child(bench, Duration::from_secs(pg_seconds() + 300));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        pg.log()
    );
    let processed = pgbench_number(&stdout, "number of transactions actually processed:");
    let failed = pgbench_number(&stdout, "number of failed transactions:");
    assert!(processed > 0, "pgbench processed nothing:\n{stdout}");
    assert_eq!(failed, 0, "pgbench had failed transactions:\n{stdout}");
    eprintln!("pgbench: scale {scale}, {processed} transactions");
    assert_eq!(
        pg.check_bank(scale),
        processed,
        "pgbench_history should hold one row per committed transaction"
    );
    pg.amcheck();
    pg.stop();
    pg.verify_checksums();

    // The volume itself, not the kernel's cache: unmount, mount, check again.
    mnt.remount();
    pg.start();
    assert_eq!(pg.check_bank(scale), processed);
    pg.amcheck();
    pg.stop();
    pg.verify_checksums();
    drop(pg);
    mnt.umount();
}

/// The fsx daemon SIGKILLed under a running pgbench (PostgreSQL killed
/// with it): after `fsx umount` of the dead mount and `fsx mount`,
/// PostgreSQL recovers and loses no committed transaction.
#[test]
fn postgres_recovers_after_daemon_sigkill() {
    let dir = temp_dir();
    let mut mnt = Mounted::new(dir.path(), &["allow_other"]);
    // Quicker than a synced initdb: `fsx umount` makes what initdb wrote
    // durable (it returns once the daemon flushed and closed every file).
    let mut pg = Postgres::init(mnt.path().join("pgdata"), dir.path().join("pgrun"), true);
    mnt.remount();
    pg.start();
    let scale = pg_scale();
    pg.pgbench_init(scale);
    // A checkpoint, so recovery starts from one whose data files the mount
    // had to make durable, not from the cluster's creation.
    pg.query("CHECKPOINT");

    let kill_after = Duration::from_secs((pg_seconds() / 2).max(3));
    let bench = pg.pgbench_spawn(pg_seconds() * 10 + 60);
    let started = Instant::now();
    // Committed before the kill: whatever this query saw must survive.
    let mut committed = 0;
    while started.elapsed() < kill_after || committed == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "pgbench committed nothing in 120 s; server log:\n{}",
            pg.log()
        );
        committed = pg.query_i64("SELECT count(*) FROM pgbench_history");
        std::thread::sleep(Duration::from_millis(200));
    }

    let daemon = mnt.daemon_pid();
    let postmaster = pg.postmaster.unwrap();
    let pg_tree = process_tree(postmaster);
    sigkill(daemon);
    // PostgreSQL goes down with it, as in a power loss: nothing it does
    // against the dead mount afterwards matters.
    for p in &pg_tree {
        sigkill(*p);
    }
    wait_gone(&[daemon], "the fsx daemon");
    wait_gone(&pg_tree, "PostgreSQL");
    pg.postmaster = None;
    let out = wait_child(bench, Duration::from_secs(120));
    assert!(
        !out.status.success(),
        "pgbench should have lost its server:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("killed the fsx daemon (pid {daemon}) after {committed} committed transactions");

    // `fsx umount` cleans up the dead mount; then mount again.
    mnt.umount();
    mnt.mount();
    pg.start();
    let log = pg.log();
    assert!(
        log.contains("database system was interrupted")
            || log.contains("was not properly shut down"),
        "PostgreSQL should have run crash recovery; server log:\n{log}"
    );
    let history = pg.check_bank(scale);
    assert!(
        history >= committed,
        "{committed} transactions were committed before the kill but only {history} survived"
    );
    eprintln!("recovered: {history} transactions in the history (>= {committed} seen committed)");
    pg.amcheck();
    // Still a working database: more transactions on the recovered cluster.
    let out = wait_child(pg.pgbench_spawn(3), Duration::from_secs(300));
    assert!(
        out.status.success(),
        "pgbench after recovery failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let processed = pgbench_number(
        &String::from_utf8_lossy(&out.stdout),
        "number of transactions actually processed:",
    );
    assert_eq!(pg.check_bank(scale), history + processed);
    pg.stop();
    pg.verify_checksums();
    drop(pg);
    mnt.umount();
}

// ---------------------------------------------------------------------------
// SQLite (native VFS, through rusqlite)

const SQLITE_TXNS: i64 = 40;
const SQLITE_ROWS_PER_TXN: i64 = 250;

/// What the SQLite workload leaves: (count, sum(id), sum(v), sum(length(payload))).
fn sqlite_expected() -> (i64, i64, i64, i64) {
    let mut count = 0;
    let mut sum_id = 0;
    let mut sum_v = 0;
    let mut sum_len = 0;
    for t in 0..SQLITE_TXNS {
        for r in 0..SQLITE_ROWS_PER_TXN {
            let id = t * SQLITE_ROWS_PER_TXN + r;
            if id % 10 == 3 {
                continue; // deleted
            }
            let v = if id % 7 == 0 { id * 3 + 1 } else { id * 3 };
            count += 1;
            sum_id += id;
            sum_v += v;
            sum_len += 100 + id % 300;
        }
    }
    (count, sum_id, sum_v, sum_len)
}

fn sqlite_write(path: &Path, journal_mode: &str) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    if journal_mode == "wal" {
        // Leave the WAL un-checkpointed: after the remount the reader must
        // find the committed pages in the -wal file.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", journal_mode, |r| r.get(0))
        .unwrap();
    assert_eq!(mode, journal_mode);
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, payload BLOB NOT NULL);
         CREATE INDEX t_v ON t (v);",
    )
    .unwrap();
    for t in 0..SQLITE_TXNS {
        let tx = conn.transaction().unwrap();
        {
            let mut ins = tx
                .prepare("INSERT INTO t (id, v, payload) VALUES (?1, ?2, randomblob(?3))")
                .unwrap();
            for r in 0..SQLITE_ROWS_PER_TXN {
                let id = t * SQLITE_ROWS_PER_TXN + r;
                ins.execute((id, id * 3, 100 + id % 300)).unwrap();
            }
        }
        let lo = t * SQLITE_ROWS_PER_TXN;
        let hi = lo + SQLITE_ROWS_PER_TXN;
        tx.execute(
            "UPDATE t SET v = v + 1 WHERE id >= ?1 AND id < ?2 AND id % 7 = 0",
            (lo, hi),
        )
        .unwrap();
        tx.execute(
            "DELETE FROM t WHERE id >= ?1 AND id < ?2 AND id % 10 = 3",
            (lo, hi),
        )
        .unwrap();
        tx.commit().unwrap();
        // A transaction that is rolled back must leave no trace.
        let tx = conn.transaction().unwrap();
        tx.execute("DELETE FROM t", ()).unwrap();
        tx.execute(
            "INSERT INTO t (id, v, payload) VALUES (-1, 0, zeroblob(5000))",
            (),
        )
        .unwrap();
        tx.rollback().unwrap();
    }
    sqlite_check(&conn, journal_mode);
    drop(conn);
    if journal_mode == "wal" {
        let wal = path.with_extension("db-wal");
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 0,
            "{} should still hold the committed pages",
            wal.display()
        );
    }
}

fn sqlite_check(conn: &rusqlite::Connection, journal_mode: &str) {
    let ic: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ic, vec!["ok".to_string()], "integrity_check");
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, journal_mode);
    let got: (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(id), sum(v), sum(length(payload)) FROM t",
            (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(got, sqlite_expected(), "(count, sum(id), sum(v), sum(len))");
    // Through the index too.
    let via_index: i64 = conn
        .query_row(
            "SELECT count(*) FROM t INDEXED BY t_v WHERE v >= 0",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(via_index, sqlite_expected().0);
}

fn sqlite_on_mount(journal_mode: &str) {
    let dir = temp_dir();
    let mut mnt = Mounted::new(dir.path(), &[]);
    let db = mnt.path().join("test.db");
    sqlite_write(&db, journal_mode);
    mnt.remount();
    let conn = rusqlite::Connection::open(&db).unwrap();
    sqlite_check(&conn, journal_mode);
    // Still writable after the remount.
    conn.execute(
        "INSERT INTO t (id, v, payload) VALUES (1000000, 0, x'00')",
        (),
    )
    .unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", (), |r| r.get(0))
        .unwrap();
    assert_eq!(n, sqlite_expected().0 + 1);
    drop(conn);
    mnt.umount();
}

#[test]
fn sqlite_wal_on_mount() {
    sqlite_on_mount("wal");
}

#[test]
fn sqlite_rollback_journal_on_mount() {
    sqlite_on_mount("delete");
}

/// Commits, then the fsx daemon SIGKILLed with a transaction open: after
/// `fsx umount` and `fsx mount`, every committed row is there (synchronous
/// = FULL: each commit was synced), the open transaction is not, and the
/// database is intact.
fn sqlite_daemon_sigkill(journal_mode: &str) {
    let dir = temp_dir();
    let mut mnt = Mounted::new(dir.path(), &[]);
    let db = mnt.path().join("crash.db");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", journal_mode, |r| r.get(0))
        .unwrap();
    assert_eq!(mode, journal_mode);
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, txn INTEGER, pad BLOB)")
        .unwrap();
    let (txns, rows) = (30i64, 200i64);
    for t in 0..txns {
        let tx = conn.transaction().unwrap();
        for r in 0..rows {
            tx.execute(
                "INSERT INTO t (id, txn, pad) VALUES (?1, ?2, randomblob(300))",
                (t * rows + r, t),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    // Uncommitted: big enough to spill pages into the database file (or
    // the WAL) before the crash.
    conn.execute_batch("PRAGMA cache_size = 10; BEGIN").unwrap();
    conn.execute(
        "INSERT INTO t (id, txn, pad) SELECT id + 1000000, -1, randomblob(300) FROM t",
        (),
    )
    .unwrap();
    let daemon = mnt.daemon_pid();
    sigkill(daemon);
    wait_gone(&[daemon], "the fsx daemon");
    // The connection's files are on the dead mount: closing may fail.
    if let Err((conn, _)) = conn.close() {
        std::mem::forget(conn);
    }

    mnt.umount();
    mnt.mount();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let ic: String = conn
        .query_row("PRAGMA integrity_check", (), |r| r.get(0))
        .unwrap();
    assert_eq!(ic, "ok", "integrity_check after the daemon was killed");
    let got: (i64, i64, i64) = conn
        .query_row("SELECT count(*), sum(id), min(txn) FROM t", (), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let n = txns * rows;
    assert_eq!(
        got,
        (n, n * (n - 1) / 2, 0),
        "(count, sum(id), min(txn)): committed rows lost or the open transaction's kept"
    );
    drop(conn);
    mnt.umount();
}

#[test]
fn sqlite_wal_survives_daemon_sigkill() {
    sqlite_daemon_sigkill("wal");
}

#[test]
fn sqlite_rollback_journal_survives_daemon_sigkill() {
    sqlite_daemon_sigkill("delete");
}

// ---------------------------------------------------------------------------
// DuckDB, chDB, Kuzu (Python)

fn python() -> PathBuf {
    let Some(p) = std::env::var_os("FSX_TEST_PYTHON") else {
        panic!(
            "FSX_TEST_PYTHON is not set: these tests need a Python with duckdb, chdb and kuzu. \
             Run scripts/test.sh, or `export FSX_TEST_PYTHON=$(scripts/python-tools.sh)`"
        );
    };
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "FSX_TEST_PYTHON={} does not exist: run scripts/python-tools.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Runs one phase of `tests/mount_db/engines.py`; returns its JSON.
fn engine(engine: &str, phase: &str, dir: &Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mount_db/engines.py");
    let out = run_ok(Command::new(python()).args([script, engine, phase, s(dir)]));
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("{engine} {phase} printed no JSON ({e}): {out}"))
}

/// Builds with `engine` on a mount, remounts, reads; both answers must
/// equal `expected` (the engine's version aside).
fn python_engine_on_mount(name: &str, expected: serde_json::Value) {
    let python = python();
    let dir = temp_dir();
    let mut mnt = Mounted::new(dir.path(), &[]);
    let data = mnt.path().join(name);
    std::fs::create_dir(&data).unwrap();
    let strip = |mut v: serde_json::Value| {
        let version = v["version"].take();
        v.as_object_mut().unwrap().remove("version");
        (v, version)
    };
    let (written, version) = strip(engine(name, "write", &data));
    eprintln!("{name} {version} (python {})", python.display());
    assert_eq!(written, expected, "{name} on the mount, before the remount");
    mnt.remount();
    let (read, _) = strip(engine(name, "read", &data));
    assert_eq!(read, expected, "{name} after the remount");
    mnt.umount();
}

#[test]
fn duckdb_on_mount() {
    // engines.py: t = (i, i % 97) for i < 3M, then DELETE WHERE k = 13,
    // then k += 1000 WHERE i % 1000 = 0.
    let (mut count, mut sum_i, mut sum_k) = (0u64, 0u64, 0u64);
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..3_000_000u64 {
        let mut k = i % 97;
        if k == 13 {
            continue;
        }
        if i % 1000 == 0 {
            k += 1000;
        }
        count += 1;
        sum_i += i;
        sum_k += k;
        distinct.insert(k);
    }
    python_engine_on_mount(
        "duckdb",
        serde_json::json!({
            "count": count, "sum_i": sum_i, "sum_k": sum_k, "distinct_k": distinct.len(),
        }),
    );
}

#[test]
fn chdb_mergetree_on_mount() {
    // engines.py: (number, number % 97, toString(number)) for number < 1M,
    // inserted as four parts then merged by OPTIMIZE FINAL.
    let n = 1_000_000u64;
    let sum_len: u64 = (0..n).map(|i| i.to_string().len() as u64).sum();
    python_engine_on_mount(
        "chdb",
        serde_json::json!({
            "count": n,
            "sum_i": n * (n - 1) / 2,
            "sum_k": (0..n).map(|i| i % 97).sum::<u64>(),
            "sum_len": sum_len,
            "distinct_k": 97,
            "active_parts": 1,
            "check_ok": true,
        }),
    );
}

#[test]
fn kuzu_graph_on_mount() {
    // engines.py: nodes 0..N, edges i -> i+1 (w 1) and i -> 7i+3 (w 2), mod N.
    let n = 1000i64;
    let edges: Vec<(i64, i64, i64)> = (0..n)
        .flat_map(|i| [(i, (i + 1) % n, 1), (i, (i * 7 + 3) % n, 2)])
        .collect();
    let out_degree = |v: i64| edges.iter().filter(|e| e.0 == v).count();
    let paths2: usize = edges.iter().map(|e| out_degree(e.1)).sum();
    let mut out_of_5: Vec<i64> = edges.iter().filter(|e| e.0 == 5).map(|e| e.1).collect();
    out_of_5.sort();
    let mut into_0: Vec<i64> = edges.iter().filter(|e| e.1 == 0).map(|e| e.0).collect();
    into_0.sort();
    python_engine_on_mount(
        "kuzu",
        serde_json::json!({
            "nodes": n,
            "edges": edges.len(),
            "sum_w": edges.iter().map(|e| e.2).sum::<i64>(),
            "paths2": paths2,
            "out_of_5": out_of_5,
            "into_0": into_0,
            "name_999": "p999",
        }),
    );
}
