//! `fsx serve` with the real binary: the printed address, a token from
//! `fsx token create`, a graceful stop on SIGTERM while a large PUT is in
//! flight (the PUT finishes, the process exits 0), acknowledged writes
//! readable after a restart, and a missing volume, a busy port or missing
//! TLS files refused at startup with a clear message.
//!
//! HTTP is spoken by hand over `std::net::TcpStream`: the test must
//! control exactly when each part of a request body is sent, and know
//! (from the server's `100 Continue`) that the handler is already reading
//! it when SIGTERM arrives. Every wait is bounded by a deadline; nothing
//! sleeps to synchronise.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use common::*;

/// Longest wait for anything the server should do promptly: a guard
/// against a hang, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `fsx serve`, killed if the test ends (or fails) first.
struct Served {
    pid: u32,
    log: PathBuf,
    /// Lines of its stdout, from a thread reading them.
    lines: mpsc::Receiver<String>,
    /// Its exit status, from a thread waiting for it: waits can then have
    /// a deadline.
    exited: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
}

impl Served {
    /// Starts `fsx serve ARGS` with its stderr in the file `log`.
    fn start(args: &[&str], log: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
            .arg("serve")
            .args(args)
            .env("FSX_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (exit_tx, exited) = mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        Self {
            pid,
            log: log.to_path_buf(),
            lines,
            exited,
            status: None,
        }
    }

    /// The server's stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of the `listening on URL` line it prints once ready.
    fn addr(&self) -> SocketAddr {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        let url = url::Url::parse(url.trim()).unwrap();
                        assert_eq!(url.scheme(), "http", "{line}");
                        return url.socket_addrs(|| None).unwrap()[0];
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("fsx serve ended without an address:\n{}", self.log())
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "fsx serve printed no address in {DEADLINE:?}:\n{}",
                        self.log()
                    )
                }
            }
        }
    }

    /// Sends the process `signal` (`TERM`, `KILL`).
    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{signal} {}", self.pid);
    }

    /// Its exit status, once it has exited (within [`DEADLINE`]).
    fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        match self.exited.recv_timeout(DEADLINE) {
            Ok(s) => {
                self.status = Some(s);
                s
            }
            Err(_) => panic!("fsx serve did not exit in {DEADLINE:?}:\n{}", self.log()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // Only a process not yet reaped is killed: its pid is still ours.
        if let Err(TryRecvError::Empty) = self.exited.try_recv() {
            self.signal("KILL");
            let _ = self.exited.recv_timeout(DEADLINE);
        }
    }
}

/// An answer: status, headers (names lowercased), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }
}

/// A connection whose reads and writes give up after [`DEADLINE`].
fn connect(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.set_write_timeout(Some(DEADLINE)).unwrap();
    let reader = BufReader::new(tcp.try_clone().unwrap());
    (tcp, reader)
}

/// The request line and headers of a request with a body of `len` bytes.
fn head(method: &str, target: &str, token: Option<&str>, len: usize, extra: &str) -> String {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {len}\r\n\
         {extra}Connection: close\r\n\r\n"
    )
}

/// Reads a status line and headers.
fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            return (status, headers);
        }
        let (n, v) = h.split_once(':').unwrap();
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// Reads the rest of an answer: the body up to the end of the connection
/// (every request says `Connection: close`).
fn read_reply(
    r: &mut BufReader<TcpStream>,
    (status, headers): (u16, Vec<(String, String)>),
) -> Reply {
    let mut body = Vec::new();
    r.read_to_end(&mut body).unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

/// One request, whole.
fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: &[u8],
) -> Reply {
    let (mut tcp, mut r) = connect(addr);
    tcp.write_all(head(method, target, token, body.len(), "").as_bytes())
        .unwrap();
    tcp.write_all(body).unwrap();
    let h = read_head(&mut r);
    read_reply(&mut r, h)
}

/// Returns once the server has begun its graceful shutdown: it has logged
/// that it is stopping (the line `fsx serve` writes on SIGTERM, with
/// `FSX_LOG=info`) and `addr` refuses connections. The log is watched
/// first so that only a few connections probe the port: a tight loop of
/// connects would use up ephemeral ports (each leaves a TIME_WAIT).
fn wait_stopping(served: &Served, addr: SocketAddr) {
    let deadline = Instant::now() + DEADLINE;
    while !served
        .log()
        .contains("stopping: letting requests in flight finish")
    {
        assert!(
            Instant::now() < deadline,
            "no stopping line {DEADLINE:?} after SIGTERM:\n{}",
            served.log()
        );
        std::thread::yield_now();
    }
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(e) if e.kind() != std::io::ErrorKind::ConnectionReset => {
                panic!("connecting to {addr}: {e}")
            }
            // Still accepting (the stop is logged just before it is
            // asked), or reset: queued by the kernel as the port closed.
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "{addr} still accepts connections {DEADLINE:?} after SIGTERM"
                );
                std::thread::yield_now();
            }
        }
    }
}

#[test]
fn serve_answers_stops_gracefully_on_sigterm_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let token = ok(&["token", "create", s(&vol), "--scope", "write"])
        .trim()
        .to_string();

    let mut served = Served::start(
        &[s(&vol), "--listen", "127.0.0.1:0"],
        &dir.path().join("serve1.log"),
    );
    let addr = served.addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    // The token from `fsx token create` opens the volume; no token does not.
    let info = request(addr, "GET", "/v1/volumes/vol", Some(&token), b"");
    assert_eq!(info.status, 200, "{}", String::from_utf8_lossy(&info.body));
    assert_eq!(info.json()["name"], "vol");
    let anonymous = request(addr, "GET", "/v1/volumes/vol", None, b"");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"]["code"], "unauthorized");

    // A write acknowledged before the signal.
    let small = request(
        addr,
        "PUT",
        "/v1/volumes/vol/file?path=/small.txt",
        Some(&token),
        b"acknowledged",
    );
    assert_eq!(
        small.status,
        200,
        "{}",
        String::from_utf8_lossy(&small.body)
    );

    // A large PUT in flight when SIGTERM arrives. `Expect: 100-continue`
    // makes the server say when the handler starts reading the body; half
    // of it is sent, then the signal, then (once the server has stopped
    // accepting connections, so the shutdown has surely begun) the rest.
    let big = random(8 << 20, 16);
    let (mut tcp, mut r) = connect(addr);
    tcp.write_all(
        head(
            "PUT",
            "/v1/volumes/vol/file?path=/big.bin",
            Some(&token),
            big.len(),
            "Expect: 100-continue\r\n",
        )
        .as_bytes(),
    )
    .unwrap();
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 100, "the server did not start reading the body");
    let half = big.len() / 2;
    tcp.write_all(&big[..half]).unwrap();
    served.signal("TERM");
    wait_stopping(&served, addr);
    // Whether the rest can still be sent is the server's choice; a clean
    // refusal shows in the answer.
    let rest = tcp.write_all(&big[half..]);
    let (status, headers) = read_head(&mut r);
    let reply = read_reply(&mut r, (status, headers));
    let big_acknowledged = match reply.status {
        200 => {
            assert!(rest.is_ok(), "answered 200 without the whole body");
            assert_eq!(reply.json()["size"], big.len(), "{}", reply.json());
            true
        }
        // A clean refusal: a JSON error that says to retry.
        503 => {
            assert_eq!(reply.json()["error"]["code"], "unavailable");
            false
        }
        other => panic!(
            "the in-flight PUT got {other}: {}\n{}",
            String::from_utf8_lossy(&reply.body),
            served.log()
        ),
    };
    let status = served.wait();
    assert!(
        status.success(),
        "fsx serve exited with {status} after SIGTERM:\n{}",
        served.log()
    );
    assert!(!served.log().contains("panicked"), "{}", served.log());

    // After a restart, every acknowledged write reads back whole.
    let mut served = Served::start(
        &[s(&vol), "--listen", "127.0.0.1:0"],
        &dir.path().join("serve2.log"),
    );
    let addr = served.addr();
    let got = request(
        addr,
        "GET",
        "/v1/volumes/vol/file?path=/small.txt",
        Some(&token),
        b"",
    );
    assert_eq!(
        (got.status, got.body.as_slice()),
        (200, &b"acknowledged"[..])
    );
    if big_acknowledged {
        let got = request(
            addr,
            "GET",
            "/v1/volumes/vol/file?path=/big.bin",
            Some(&token),
            b"",
        );
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-length"), Some("8388608"));
        assert!(got.body == big, "the big file read back differs");
    }
    // An idle server stops on SIGTERM too.
    served.signal("TERM");
    let status = served.wait();
    assert!(status.success(), "{status}:\n{}", served.log());

    // SIGTERM at once after the address is printed (as a supervisor may
    // send it) is a graceful stop too, not death by signal.
    let mut served = Served::start(
        &[s(&vol), "--listen", "127.0.0.1:0"],
        &dir.path().join("serve3.log"),
    );
    served.addr();
    served.signal("TERM");
    let status = served.wait();
    assert!(status.success(), "{status}:\n{}", served.log());
}

#[test]
fn serve_refuses_to_start_without_its_volume_port_or_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let missing = dir.path().join("no-such-volume");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let no_cert = dir.path().join("no-cert.pem");
    let no_key = dir.path().join("no-key.pem");

    // (arguments, what the message must say)
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec![s(&missing), "--listen", "127.0.0.1:0"],
            vec![
                "cannot serve the volume in".into(),
                missing.display().to_string(),
            ],
        ),
        (
            vec![s(&vol), "--listen", &busy_addr],
            vec![format!("cannot listen on {busy_addr}"), "in use".into()],
        ),
        (
            vec![
                s(&vol),
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                s(&no_cert),
                "--tls-key",
                s(&no_key),
            ],
            vec![
                "TLS certificate".into(),
                no_cert.display().to_string(),
                no_key.display().to_string(),
            ],
        ),
    ];
    for (i, (args, said)) in cases.into_iter().enumerate() {
        let mut served = Served::start(&args, &dir.path().join(format!("fail{i}.log")));
        let status = served.wait();
        let log = served.log();
        assert_eq!(
            status.code(),
            Some(2),
            "fsx serve {args:?}: {status}\n{log}"
        );
        let error = log
            .lines()
            .find(|l| l.starts_with("fsx: error: "))
            .unwrap_or_else(|| panic!("fsx serve {args:?}: no error line:\n{log}"));
        for want in &said {
            assert!(
                error.contains(want.as_str()),
                "{args:?}: {want:?} not in {error:?}"
            );
        }
        assert!(!log.contains("panicked"), "{log}");
        let printed: Vec<String> = served.lines.try_iter().collect();
        assert!(
            !printed.iter().any(|l| l.starts_with("listening on")),
            "{args:?}: {printed:?}"
        );
    }
    drop(busy);
}

/// `fsx watch` as a user runs it: a child printing lines, read as they
/// come.
struct Watching {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Watching {
    fn start(url: &str, token: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fsx"))
            .args(["watch", url, "--since", "0"])
            .env("FSX_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next `n` lines (within [`DEADLINE`]).
    fn take(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.lines
                    .recv_timeout(DEADLINE)
                    .unwrap_or_else(|e| panic!("fsx watch printed {i} of {n} lines: {e}"))
            })
            .collect()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fsx watch URL` prints the changes of a served volume as they happen —
/// made by another process on the volume here — and, when the server
/// restarts, goes on from the last line it printed: no line lost, none
/// repeated. Its lines are what `fsx watch DIR --once` prints locally.
#[test]
fn watch_follows_a_served_volume_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    ok(&["init", s(&vol)]);
    let token = ok(&["token", "create", s(&vol), "--scope", "read"])
        .trim()
        .to_string();
    let mut served = Served::start(
        &[s(&vol), "--listen", "127.0.0.1:0"],
        &dir.path().join("serve1.log"),
    );
    let addr = served.addr();
    let url = format!("http://{addr}/v1/volumes/vol");
    let watch = Watching::start(&url, &token);
    let src = dir.path().join("x");
    std::fs::write(&src, b"hello").unwrap();
    ok(&["file", "put", s(&src), s(&vol), "docs/x.txt"]);
    // A put writes under a hidden name, then renames it into place.
    let first = watch.take(3);
    let kinds: Vec<&str> = first
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["make", "data", "rename"], "{first:?}");
    assert!(
        first[0].starts_with("1 make main /.fsx-partial/"),
        "{first:?}"
    );
    assert!(first[2].ends_with(" -> /docs/x.txt"), "{first:?}");

    served.signal("TERM");
    assert!(served.wait().success(), "{}", served.log());
    // Changed while no server runs: the feed is the volume's, not the
    // server's, so the watch gets it once the server is back.
    ok(&["file", "mv", s(&vol), "docs/x.txt", "docs/y.txt"]);
    let _again = Served::start(
        &[s(&vol), "--listen", &addr.to_string()],
        &dir.path().join("serve2.log"),
    );
    ok(&["file", "rm", s(&vol), "docs/y.txt"]);
    let rest = watch.take(2);
    assert_eq!(
        rest,
        [
            "4 rename main /docs/x.txt -> /docs/y.txt",
            "5 remove main /docs/y.txt"
        ]
    );
    // The same lines locally; a change naming only a node shows the
    // node's path when read (`data` of x.txt, now gone, showed its path
    // then and its number now), so those compare by number and kind.
    let local = ok(&["watch", s(&vol), "--since", "0", "--once"]);
    let all: Vec<String> = first.into_iter().chain(rest).collect();
    let key = |l: &str| -> String {
        match l.split(' ').nth(1) {
            Some("data" | "attr" | "xattr") => l.split(' ').take(3).collect::<Vec<_>>().join(" "),
            _ => l.to_string(),
        }
    };
    let local: Vec<String> = local.lines().map(key).collect();
    let remote: Vec<String> = all.iter().map(|l| key(l)).collect();
    assert_eq!(local, remote);
}
