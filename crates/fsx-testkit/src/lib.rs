//! Test fixtures for fsx (dev-only): real servers and unique names.
//!
//! Tests use the real thing. Each fixture first looks for a shared server
//! announced by the environment (`scripts/services.sh start` writes these):
//!
//! | variable | example |
//! |---|---|
//! | `FSX_TEST_S3_URL` | `s3://fsx-test?endpoint=http://127.0.0.1:41007&region=us-east-1` |
//! | `FSX_TEST_REDIS_URL` | `redis://127.0.0.1:41020/0` |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | credentials of that S3 server |
//!
//! and otherwise starts its own server (SeaweedFS `weed mini`, `redis-server`)
//! on free 127.0.0.1 ports in a temporary directory, waits until it answers
//! (polling with a deadline, no fixed sleeps), and kills it on drop. If no
//! server can be had, the fixture returns an error and the test fails: a
//! missing server is never a skipped test.
//!
//! Isolation: every test works under [`unique_prefix`], so tests sharing one
//! server (nextest runs them in parallel processes) never see each other.

pub mod crash;
pub mod postgres;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

pub use tempfile::TempDir;

/// A key prefix (ending in `/`) no other test or run uses.
pub fn unique_prefix(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "test-{label}-{}-{nanos}-{}/",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh temporary directory, removed on drop.
pub fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("fsx-test-")
        .tempdir()
        .context("creating a temporary directory")
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
struct Server {
    child: Child,
    name: &'static str,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Fail early, with the server's log, if it exited during startup.
    fn check_alive(&mut self, log: &Path) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!(
                "{} exited during startup with {status}; log:\n{tail}",
                self.name
            );
        }
        Ok(())
    }
}

/// Poll `ready` every 100 ms until it returns true or `timeout` passes.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what} did not become ready within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A currently free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn find_program(name: &str) -> Result<()> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(anyhow!(
            "`{name}` is not installed and no shared server is configured; run `scripts/services.sh start ENVFILE` and source ENVFILE"
        ))
    }
}

/// A Redis server for one test.
#[derive(Debug)]
pub struct RedisFixture {
    base_url: String,
    _server: Option<Server>,
}

impl RedisFixture {
    /// Use `FSX_TEST_REDIS_URL` or start `redis-server`.
    pub fn new() -> Result<Self> {
        if let Ok(url) = std::env::var("FSX_TEST_REDIS_URL")
            && !url.is_empty()
        {
            return Ok(Self {
                base_url: url,
                _server: None,
            });
        }
        find_program("redis-server")?;
        let dir = temp_dir()?;
        let port = free_port()?;
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let mut server = Server {
            child,
            name: "redis-server",
            _dir: dir,
        };
        wait_until("redis-server", Duration::from_secs(20), || {
            server.check_alive(&log)?;
            Ok(redis_ping(port))
        })?;
        Ok(Self {
            base_url: format!("redis://127.0.0.1:{port}/0"),
            _server: Some(server),
        })
    }

    /// The server's URL without parameters, e.g. `redis://127.0.0.1:6379/0`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A store URL under a fresh key prefix, with extra `params`
    /// (`max_value=…&write_interval_ms=…`, may be empty).
    pub fn url(&self, params: &str) -> String {
        let prefix = unique_prefix("redis").replace('/', ":");
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let extra = if params.is_empty() {
            String::new()
        } else {
            format!("&{params}")
        };
        format!("{}{sep}prefix={prefix}{extra}", self.base_url)
    }
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// An S3 server (SeaweedFS) with a bucket, for one test.
#[derive(Debug)]
pub struct S3Fixture {
    base_url: String,
    access_key: String,
    secret_key: String,
    _server: Option<Server>,
}

const TEST_BUCKET: &str = "fsx-test";

impl S3Fixture {
    /// Use `FSX_TEST_S3_URL` (with the AWS credential variables) or start
    /// `weed mini`.
    pub fn new() -> Result<Self> {
        if let Ok(url) = std::env::var("FSX_TEST_S3_URL")
            && !url.is_empty()
        {
            let access_key = std::env::var("AWS_ACCESS_KEY_ID")
                .context("FSX_TEST_S3_URL is set but AWS_ACCESS_KEY_ID is not")?;
            let secret_key = std::env::var("AWS_SECRET_ACCESS_KEY")
                .context("FSX_TEST_S3_URL is set but AWS_SECRET_ACCESS_KEY is not")?;
            return Ok(Self {
                base_url: url,
                access_key,
                secret_key,
                _server: None,
            });
        }
        find_program("weed")?;
        find_program("curl")?;
        // A free port can be taken by a parallel test between our probe
        // and weed's bind: start again on fresh ports when that happened.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_weed() {
                Err(e) if attempt < 4 && format!("{e:#}").contains("address already in use") => {
                    continue;
                }
                r => return r,
            }
        }
    }

    fn start_weed() -> Result<Self> {
        let dir = temp_dir()?;
        let (access_key, secret_key) = ("fsxtestkey".to_owned(), "fsxtestsecret".to_owned());
        let config = dir.path().join("s3.json");
        std::fs::write(&config, s3_identity_json(&access_key, &secret_key))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let log = dir.path().join("weed.log");
        let mut ports = Vec::new();
        for _ in 0..WEED_PORT_FLAGS.len() {
            ports.push(free_port()?);
        }
        let s3_port = ports[0];
        let mut cmd = Command::new("weed");
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
            ])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-bucket={TEST_BUCKET}"));
        for (flag, port) in WEED_PORT_FLAGS.iter().zip(&ports) {
            cmd.arg(format!("-{flag}={port}"));
        }
        let log_file = std::fs::File::create(&log)?;
        // weed turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its
        // environment into an identity overriding s3.json.
        let child = cmd
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting weed mini")?;
        let mut server = Server {
            child,
            name: "weed mini",
            _dir: dir,
        };
        let endpoint = format!("http://127.0.0.1:{s3_port}");
        wait_until("SeaweedFS S3", Duration::from_secs(90), || {
            server.check_alive(&log)?;
            Ok(s3_put_probe(&endpoint, &access_key, &secret_key))
        })
        .map_err(|e| {
            // A port clash says so itself; a server that hangs may be out
            // of disk.
            if format!("{e:#}").contains("address already in use") {
                e
            } else {
                e.context(disk_note(&data))
            }
        })?;
        Ok(Self {
            base_url: format!("s3://{TEST_BUCKET}?endpoint={endpoint}&region=us-east-1"),
            access_key,
            secret_key,
            _server: Some(server),
        })
    }

    /// A store URL under a fresh root prefix inside the test bucket.
    pub fn url(&self) -> Result<String> {
        let prefix = unique_prefix("s3");
        let mut url = url::Url::parse(&self.base_url).context("parsing the S3 test URL")?;
        let path = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            prefix.trim_end_matches('/')
        );
        url.set_path(&path);
        Ok(url.to_string())
    }

    /// The access key id the server accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key the server accepts.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }
}

/// `weed mini` flags that open a listening port; all are set explicitly so
/// parallel servers never collide on defaults. The S3 port comes first.
const WEED_PORT_FLAGS: &[&str] = &[
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
];

/// What `df` says of `path`'s filesystem: SeaweedFS refuses writes once its
/// disk is under 1% free, which otherwise looks like a hung server.
fn disk_note(path: &Path) -> String {
    let df = Command::new("df").arg("-Ph").arg(path).output();
    let usage = match df {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(e) => format!("(df failed: {e})"),
    };
    format!(
        "SeaweedFS takes no writes when its disk is under 1% free; disk usage of {}:\n{usage}",
        path.display()
    )
}

/// The SeaweedFS identity file granting `access_key` full access.
pub fn s3_identity_json(access_key: &str, secret_key: &str) -> String {
    format!(
        r#"{{"identities":[{{"name":"fsx","credentials":[{{"accessKey":"{access_key}","secretKey":"{secret_key}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
    )
}

/// Ready means a signed PUT into the bucket succeeds (the S3 port answers
/// well before the volume server can take writes).
fn s3_put_probe(endpoint: &str, access_key: &str, secret_key: &str) -> bool {
    Command::new("curl")
        .args([
            "-sf",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "-X",
            "PUT",
            "--data-binary",
            "ready",
        ])
        .args([
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ])
        .arg("--user")
        .arg(format!("{access_key}:{secret_key}"))
        .arg(format!("{endpoint}/{TEST_BUCKET}/.fsx-ready"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique() {
        let a = unique_prefix("x");
        let b = unique_prefix("x");
        assert_ne!(a, b);
        assert!(a.ends_with('/'));
    }
}
