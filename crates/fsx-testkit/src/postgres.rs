//! A real PostgreSQL server for a test: `FSX_TEST_PG_URL` when set (e.g.
//! from `scripts/services-postgres.sh`), else a throwaway cluster this
//! process creates with `initdb` in a temporary directory and stops on
//! drop. A test that cannot get a server fails: it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The password of the throwaway cluster's `fsx` role.
const PASSWORD: &str = "fsx-test-pw";

/// A PostgreSQL server for one test.
pub struct PgServer {
    base_url: String,
    // Held for its Drop, which stops the throwaway server.
    #[allow(dead_code)]
    cluster: Option<Cluster>,
}

static SCHEMA_SEQ: AtomicU64 = AtomicU64::new(0);

impl PgServer {
    /// `FSX_TEST_PG_URL`, or a new throwaway cluster. Panics (failing the
    /// test) if neither can be had.
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("FSX_TEST_PG_URL")
            && !url.is_empty()
        {
            return Self {
                base_url: url,
                cluster: None,
            };
        }
        match Cluster::start() {
            Ok(cluster) => Self {
                base_url: format!(
                    "postgres://fsx:{PASSWORD}@127.0.0.1:{}/postgres",
                    cluster.port
                ),
                cluster: Some(cluster),
            },
            Err(e) => panic!(
                "no PostgreSQL for the test: FSX_TEST_PG_URL is unset and a throwaway cluster could not start: {e}\n\
                 (install PostgreSQL with `apt-get install postgresql`, or run scripts/services-postgres.sh)"
            ),
        }
    }

    /// The server's URL without a schema.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A schema name no other test or run uses.
    pub fn fresh_schema(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "t{}_{}_{}",
            std::process::id(),
            SCHEMA_SEQ.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        )
    }

    /// The URL of `schema` on this server.
    pub fn url(&self, schema: &str) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}schema={schema}", self.base_url)
    }

    /// The URL of a fresh schema.
    pub fn fresh_url(&self) -> String {
        self.url(&self.fresh_schema())
    }

    /// A plain driver connection (no schema), for poking at tables.
    pub async fn raw_client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.base_url, tokio_postgres::NoTls)
            .await
            .expect("raw connection");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

/// A throwaway PostgreSQL cluster in a temporary directory.
struct Cluster {
    // Held for its Drop, which removes the data directory.
    #[allow(dead_code)]
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

/// `(uid, gid)` to run PostgreSQL as: the `postgres` user when we are root
/// (PostgreSQL refuses to run as root), else ourselves (`None`).
fn run_as() -> Result<Option<(u32, u32)>, String> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self")
        .map_err(|e| format!("reading /proc/self: {e}"))?
        .uid();
    if me != 0 {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            let uid = f[2].parse().map_err(|_| format!("bad uid in {line:?}"))?;
            let gid = f[3].parse().map_err(|_| format!("bad gid in {line:?}"))?;
            return Ok(Some((uid, gid)));
        }
    }
    Err("running as root and there is no `postgres` user to run PostgreSQL as".into())
}

/// The directory holding `initdb` and `postgres`.
fn pg_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("FSX_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if Path::new(dir).join("initdb").exists() && Path::new(dir).join("postgres").exists() {
            return Ok(PathBuf::from(dir));
        }
    }
    Err(
        "no initdb/postgres found (looked in /usr/lib/postgresql/*/bin, $FSX_PG_BIN and $PATH)"
            .into(),
    )
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn command(bin: &Path, user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(bin);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    c
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let bin = pg_bin_dir()?;
        let user = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("fsx-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{PASSWORD}\n"))
            .map_err(|e| format!("writing {}: {e}", pw.display()))?;
        if let Some((uid, gid)) = user {
            for p in [dir.path(), pw.as_path()] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "fsx",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pw.display()))
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // A port can be taken between finding it free and binding it: try a
        // few.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let log = std::fs::File::create(dir.path().join("postgres.log"))
                .map_err(|e| e.to_string())?;
            let child = command(&bin.join("postgres"), user)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                // Throwaway data: PostgreSQL's own durability is not under test.
                .args(["-c", "fsync=off", "-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("starting postgres: {e}"))?;
            let mut child = child;
            match wait_ready(&mut child, dir.path(), Duration::from_secs(60)) {
                Ok(()) => return Ok(Cluster { dir, child, port }),
                Err(e) => {
                    last_err = e;
                    stop(&mut child);
                }
            }
        }
        Err(last_err)
    }
}

/// Polls the postmaster.pid status line, which says `ready` once the
/// server accepts connections; fails early if the server exited.
fn wait_ready(child: &mut Child, dir: &Path, timeout: Duration) -> Result<(), String> {
    let pidfile = dir.join("data").join("postmaster.pid");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            return Err(format!("postgres exited during startup ({status}): {log}"));
        }
        if let Ok(text) = std::fs::read_to_string(&pidfile)
            && text.lines().nth(7).is_some_and(|l| l.trim() == "ready")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("postgres not ready after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Fast shutdown (SIGINT), bounded; SIGKILL if it does not stop.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
