//! What a server serves and the limits it keeps. Defaults are sized for
//! one machine serving a few clients: raise them with the flags of `fsx
//! serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default grace period of scheduled GC runs: an hour, as `fsx gc`.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(3600);

/// Default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// A server's configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Volume directories; each is served under its directory's name.
    pub volumes: Vec<PathBuf>,
    /// TLS, when given.
    pub tls: Option<TlsFiles>,
    /// Request limits.
    pub limits: Limits,
    /// Garbage-collect every volume this often (`None`: never; `fsx gc`
    /// does it by hand).
    pub gc_every: Option<Duration>,
    /// How long an extent must have been unreferenced (or, without a
    /// record, stored) before a scheduled GC deletes it (`fsx gc --grace`
    /// and `--orphan-grace`).
    pub gc_grace: Duration,
}

impl ServeConfig {
    /// Serves `volumes` on `listen` with default limits, without TLS.
    pub fn new(listen: SocketAddr, volumes: Vec<PathBuf>) -> Self {
        Self {
            listen,
            volumes,
            tls: None,
            limits: Limits::default(),
            gc_every: None,
            gc_grace: DEFAULT_GC_GRACE,
        }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Request limits. Every refusal is a JSON error with its own code.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes (413 `payload_too_large`). Must hold
    /// an extent (16 MiB at most, plus its header and bitmap) and is the
    /// largest file one PUT writes.
    pub max_body: usize,
    /// Largest total of request header names and values, bytes (431
    /// `headers_too_large`).
    pub max_header_bytes: usize,
    /// Longest time a request is waited for (408 `timeout`).
    pub request_timeout: Duration,
    /// Requests handled at once; more are refused (503 `unavailable`).
    pub max_concurrent: usize,
    /// Requests per second per token (and per public volume for requests
    /// without one); 429 `rate_limited` beyond the burst.
    pub rate_per_sec: f64,
    /// Requests a token may make at once after being idle.
    pub rate_burst: f64,
    /// WebSockets (`…/watch`) open at once; more are refused (503
    /// `unavailable`). They do not count as requests in flight.
    pub max_websockets: usize,
    /// How often a WebSocket is pinged; two unanswered pings close it
    /// (1013).
    pub ws_ping_every: Duration,
    /// Longest wait for a WebSocket to take one message before it is
    /// closed (1013): a reader that does not read is not buffered for.
    pub ws_send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 32 << 20,
            max_header_bytes: 16 << 10,
            request_timeout: Duration::from_secs(60),
            max_concurrent: 256,
            rate_per_sec: 200.0,
            rate_burst: 400.0,
            max_websockets: 256,
            ws_ping_every: Duration::from_secs(15),
            ws_send_timeout: Duration::from_secs(10),
        }
    }
}
