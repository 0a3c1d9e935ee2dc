//! `fsx serve`: volumes over HTTP, the API of [`fsx_protocol`].
//!
//! | module | what |
//! |---|---|
//! | [`config`] | what a server serves and its limits |
//! | `auth` | bearer tokens against the volume's metadata, scopes, public-read, the rate per token |
//! | `limits` | request ids and logs, concurrency, per-request time, header size |
//! | `metrics` | `/metrics`: requests by route and status, latencies, bytes, and each volume's extents, tiers and queue |
//! | `handlers` | one function per [`fsx_protocol::RouteId`] |
//! | `background` | the server's own work: tier copies, counters, pruning the feed, scheduled GC |
//! | `feed` | the change feed: `…/changes` pages and the `…/watch` WebSocket |
//! | `reply` | errors of every layer as the protocol's JSON error body |
//! | `tls` | TLS from certificate files |
//! | [`wire`] | the engine's answers in the API's terms (shared with the CLI) |
//!
//! # Invariants
//!
//! - **The route table is the router.** `router` walks
//!   [`fsx_protocol::ROUTES`] and asks `handlers` for each route's
//!   handler by an exhaustive match, with the route's access check in
//!   front of it: no route is served without its check, no route of the
//!   table is left unserved; the change feed's `/changes` and `/watch`
//!   are rows of the table like the others.
//! - **Refused means unchanged.** Authentication, scope, validation of
//!   names, paths and keys, body and header limits all run before a
//!   handler touches a volume.
//! - **2xx means durable.** A handler answers success only after the
//!   change is durable (a file's `fsync`, a metadata transaction, a store
//!   put).
//! - **A timeout never cuts a change in half.** Handlers run in tasks of
//!   their own; the per-request timeout stops waiting (408), not the work,
//!   so no open handle, lease or half-written file is left behind.

pub mod config;

mod auth;
mod background;
mod feed;
mod handlers;
mod limits;
mod metrics;
mod reply;
mod tls;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodFilter, MethodRouter};
use fsx_protocol::ROUTES;

pub use config::{Limits, ServeConfig, TlsFiles};

use crate::auth::RateLimiter;
use crate::handlers::ServedVolume;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A volume directory could not be opened.
    #[error("cannot serve the volume in {dir}")]
    Volume {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: Box<fsx_volume::VolumeError>,
    },
    /// The volume's setting `server.public_read` could not be read.
    #[error("cannot read the settings of the volume in {dir}")]
    Settings {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: fsx_meta::MetaError,
    },
    /// A volume name that the API cannot carry, or served twice.
    #[error("cannot serve {dir} as {name:?}: {why}")]
    Name {
        /// The directory.
        dir: String,
        /// The name it would be served under.
        name: String,
        /// Why not.
        why: String,
    },
    /// Nothing to serve.
    #[error("no volumes to serve")]
    NoVolumes,
    /// Listing `--volumes DIR`.
    #[error("cannot list volumes in {dir}")]
    List {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key cannot be used.
    #[error("cannot use the TLS certificate {cert} and key {key}: {why}")]
    Tls {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
        /// Why.
        why: String,
    },
    /// The metrics registry refused a metric (a defect: names clash).
    #[error("cannot set up the metrics: {0}")]
    Metrics(String),
    /// The server stopped with an I/O error.
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
}

/// Longest wait at shutdown for WebSockets to send their close frames.
const SOCKETS_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// The server's shared state.
#[derive(Debug)]
pub(crate) struct AppState {
    /// Served volumes by name.
    pub volumes: BTreeMap<String, Arc<ServedVolume>>,
    pub limits: Limits,
    pub rate: RateLimiter,
    pub inflight: Arc<tokio::sync::Semaphore>,
    pub metrics: metrics::Metrics,
    /// Open WebSockets.
    pub sockets: feed::Sockets,
    /// Turns true when the server stops.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// How often every volume is garbage-collected, if at all.
    pub gc_every: Option<std::time::Duration>,
    /// The grace period of those runs.
    pub gc_grace: std::time::Duration,
}

/// The router of the whole API over `state`: [`ROUTES`], each behind its
/// access check, then the server-wide limits.
fn router(state: Arc<AppState>) -> Router {
    let mut paths: BTreeMap<&'static str, MethodRouter<Arc<AppState>>> = BTreeMap::new();
    for route in ROUTES {
        let method_router = handlers::handler(route)
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), *route),
                auth::check,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), *route),
                metrics::track,
            ));
        let entry = paths.remove(route.path);
        paths.insert(
            route.path,
            match entry {
                Some(m) => m.merge(method_router),
                None => method_router,
            },
        );
    }
    let mut app = Router::new();
    for (path, m) in paths {
        app = app.route(path, m);
    }
    limits::layers(
        app.fallback(reply::not_found).with_state(state.clone()),
        state,
    )
}

/// Which methods a filter names (for a route's `MethodRouter`).
pub(crate) fn filter(method: fsx_protocol::Method) -> MethodFilter {
    match method {
        fsx_protocol::Method::Get => MethodFilter::GET,
        fsx_protocol::Method::Head => MethodFilter::HEAD,
        fsx_protocol::Method::Put => MethodFilter::PUT,
        fsx_protocol::Method::Post => MethodFilter::POST,
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    tls: bool,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Server {
    /// Opens the volumes of `config`, binds its address and starts
    /// serving on the current tokio runtime.
    pub async fn start(config: ServeConfig) -> Result<Self, ServerError> {
        let volumes = handlers::open_volumes(&config.volumes).await?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let state = Arc::new(AppState {
            volumes,
            rate: RateLimiter::new(config.limits.rate_per_sec, config.limits.rate_burst),
            inflight: Arc::new(tokio::sync::Semaphore::new(config.limits.max_concurrent)),
            limits: config.limits.clone(),
            metrics: metrics::Metrics::new().map_err(|e| ServerError::Metrics(e.to_string()))?,
            sockets: feed::Sockets::default(),
            stop: stopped.clone(),
            gc_every: config.gc_every,
            gc_grace: config.gc_grace,
        });
        let app = router(state.clone());
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        tokio::spawn(feed::poll(state.clone(), stopped.clone()));
        tokio::spawn(background::run(state.clone(), stopped.clone()));
        let shutdown = async move {
            // Either `Server::shutdown` or the sender being dropped.
            let _ = stopped.wait_for(|s| *s).await;
        };
        let tls = config.tls.is_some();
        // Upgraded connections (WebSockets) are not the HTTP server's to
        // wait for: they see the stop themselves, send their close frame,
        // and are waited for here.
        let drained = async move {
            state.sockets.drained(SOCKETS_AT_SHUTDOWN).await;
        };
        let task = match &config.tls {
            Some(files) => {
                let acceptor = tls::acceptor(files)?;
                let listener = tls::TlsListener::new(listener, acceptor);
                tokio::spawn(async move {
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                        .map_err(ServerError::Serve);
                    drained.await;
                    served
                })
            }
            None => tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .map_err(ServerError::Serve);
                drained.await;
                served
            }),
        };
        tracing::info!(%addr, tls, "serving");
        Ok(Self {
            addr,
            tls,
            stop,
            task,
        })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the server (`http://` or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting connections, lets requests in flight finish, and
    /// returns once every connection is closed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Runs until the server stops (after [`Server::shutdown`] from
    /// elsewhere, or an error).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        }
    }

    /// A handle that stops the server from another task.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }
}

/// Stops a [`Server`] gracefully (see [`Server::shutdown`]).
#[derive(Debug, Clone)]
pub struct Stopper(tokio::sync::watch::Sender<bool>);

impl Stopper {
    /// Asks the server to stop.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// The volumes in `dir` (every subdirectory holding an fsx volume file),
/// named by their directory name, sorted.
pub fn volumes_in(dir: &std::path::Path) -> Result<Vec<PathBuf>, ServerError> {
    let list = |source| ServerError::List {
        dir: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list)? {
        let path = entry.map_err(list)?.path();
        if path.is_dir() && fsx_volume::VolumeFile::read(&path).is_ok() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
