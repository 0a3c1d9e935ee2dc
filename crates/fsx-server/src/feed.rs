//! The change feed over HTTP: `GET …/changes` pages through a volume's
//! numbered changes, `GET …/watch` pushes them over a WebSocket as they
//! commit (see [`fsx_protocol::feed`] for the protocol).
//!
//! # Invariants
//!
//! - **The metadata is the feed.** Both routes read the changes the
//!   engine numbered in the transactions that made them; the server keeps
//!   no copy, so a restart of the server loses nothing and invents
//!   nothing, and changes made elsewhere (a mount, the CLI, another server
//!   on the same PostgreSQL) are in it too.
//! - **A socket sends every change after its cursor, in order, once.**
//!   The cursor moves only past a change the socket has sent; on any
//!   doubt (a failed read, a slow reader, a missed ping) the socket closes
//!   and the client resumes from the last number it handled.
//! - **Bounded.** Each socket holds one page of changes at most; a reader
//!   that does not take a message within
//!   [`crate::Limits::ws_send_timeout`] is closed
//!   (1013) instead of buffered for; sockets beyond
//!   [`crate::Limits::max_websockets`] are refused (503); a client that
//!   sends anything but pongs and a close is closed after
//!   [`MAX_STRIKES`] messages (1008).
//! - **One poller per volume.** It reads the newest number every
//!   [`POLL_EVERY`] while a socket follows the volume, and wakes the
//!   sockets when it moves: a socket costs no query while nothing changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::Uri;
use axum::response::Response;
use fsx_meta::{BranchId, Change, Ino, MetaErrorKind, View};
use fsx_protocol::ErrorCode;
use fsx_protocol::feed::{
    CLOSE_GOING_AWAY, CLOSE_GONE, CLOSE_POLICY, CLOSE_TRY_AGAIN, ChangesPage,
    DEFAULT_CHANGES_LIMIT, FeedChange, MAX_CHANGES_LIMIT, WatchEvent, WatchQuery,
};
use tokio::sync::{Notify, watch};

use crate::AppState;
use crate::handlers::ServedVolume;
use crate::reply::{Fail, Result, json};

/// How often a followed volume's newest change number is read.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(100);
/// Messages (other than pongs and a close) a client may send in one ping
/// period before its socket is closed.
pub(crate) const MAX_STRIKES: u32 = 16;
/// Largest message a client may send (it has nothing to send).
const MAX_CLIENT_MESSAGE: usize = 4 << 10;
/// Changes a socket reads at once.
const SOCKET_PAGE: usize = 256;

/// The newest change number of one volume, as its poller last read it.
#[derive(Debug)]
pub(crate) struct Feed {
    last: watch::Sender<u64>,
}

impl Feed {
    pub fn new() -> Self {
        Self {
            last: watch::Sender::new(0),
        }
    }
}

/// The open sockets of a server: counted for the limit and the metrics,
/// and awaited at shutdown so that each gets its close frame.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    open: AtomicUsize,
    closed: Notify,
}

/// One open socket; dropping it closes the count.
pub(crate) struct SocketSlot(Arc<AppState>);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.sockets.open.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.websockets(-1);
        self.0.sockets.closed.notify_waiters();
    }
}

impl Sockets {
    /// A slot, unless `max` are open.
    fn take(state: &Arc<AppState>) -> Option<SocketSlot> {
        let max = state.limits.max_websockets;
        state
            .sockets
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        state.metrics.websockets(1);
        Some(SocketSlot(state.clone()))
    }

    /// Waits until every socket closed, or `limit` passed.
    pub async fn drained(&self, limit: Duration) {
        let wait = async {
            loop {
                let closed = self.closed.notified();
                if self.open.load(Ordering::SeqCst) == 0 {
                    return;
                }
                closed.await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::warn!(
                open = self.open.load(Ordering::SeqCst),
                "WebSockets still open at shutdown; closing them without a close frame"
            );
        }
    }
}

/// Reads each followed volume's newest change number every
/// [`POLL_EVERY`] until `stop`.
pub(crate) async fn poll(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stop) => return,
        }
        for v in state.volumes.values() {
            if v.feed.last.receiver_count() == 0 {
                continue;
            }
            match v.volume.meta().last_change().await {
                Ok(n) => {
                    v.feed.last.send_if_modified(|last| {
                        let moved = *last != n;
                        *last = n;
                        moved
                    });
                }
                Err(e) => {
                    tracing::warn!(volume = %v.name, error = %e, "reading the change feed failed")
                }
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here, never
    // held across another await.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// `path` joined with `name` (`/` + `a` is `/a`).
fn join(path: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1 + name.len());
    if path != b"/" {
        out.extend_from_slice(path);
    }
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `changes` in the API's terms, with their paths as each branch shows
/// them now when `paths` (one snapshot per branch).
pub async fn feed_changes(
    meta: &dyn fsx_meta::MetaEngine,
    changes: &[Change],
    paths: bool,
) -> std::result::Result<Vec<FeedChange>, fsx_meta::MetaError> {
    // The inode each path hangs off: an entry's directory, else the node.
    let anchor = |c: &Change| -> (Option<Ino>, Option<Ino>) {
        match (c.parent, c.ino) {
            (Some(p), _) => (Some(p), c.to_parent),
            (None, Some(i)) if !c.kind.is_branch() => (Some(i), None),
            _ => (None, None),
        }
    };
    let mut found: BTreeMap<(BranchId, Ino), Option<bytes::Bytes>> = BTreeMap::new();
    if paths {
        let mut by_branch: BTreeMap<BranchId, Vec<Ino>> = BTreeMap::new();
        for c in changes.iter().filter(|c| c.branch_name.is_some()) {
            let (a, b) = anchor(c);
            by_branch
                .entry(c.branch)
                .or_default()
                .extend(a.into_iter().chain(b));
        }
        for (branch, mut inos) in by_branch {
            inos.sort_unstable();
            inos.dedup();
            match meta.paths_of(View::Branch(branch), &inos).await {
                Ok(got) => found.extend(inos.into_iter().map(|i| (branch, i)).zip(got)),
                // Deleted since the page was read: its paths are gone.
                Err(e) if e.kind() == MetaErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    let path_of = |branch: BranchId, at: Option<Ino>, name: Option<&bytes::Bytes>| {
        let base = found.get(&(branch, at?))?.as_ref()?;
        Some(text(&match name {
            Some(n) => join(base, n),
            None => base.to_vec(),
        }))
    };
    Ok(changes
        .iter()
        .map(|c| {
            let (a, b) = anchor(c);
            FeedChange {
                seq: c.seq,
                at_ms: c.at_ms,
                branch_id: c.branch,
                branch: c.branch_name.clone(),
                kind: c.kind.as_str().to_string(),
                ino: c.ino,
                commit: c.commit,
                path: paths
                    .then(|| path_of(c.branch, a, c.name.as_ref()))
                    .flatten(),
                to_path: paths
                    .then(|| path_of(c.branch, b, c.to_name.as_ref()))
                    .flatten(),
            }
        })
        .collect())
}

type Vol = Extension<Arc<ServedVolume>>;

/// `GET …/changes`.
pub(crate) async fn changes(Extension(v): Vol, uri: Uri) -> Result<Response> {
    let q: fsx_protocol::feed::ChangesQuery = fsx_protocol::request::parse_query(uri.query())?;
    let limit = q.limit.unwrap_or(DEFAULT_CHANGES_LIMIT);
    if limit == 0 || limit > MAX_CHANGES_LIMIT {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            format!("limit must be 1 to {MAX_CHANGES_LIMIT}, not {limit}"),
        ));
    }
    let meta = v.volume.meta();
    let page = meta.changes(q.since, limit as usize).await?;
    let next = page.last().map_or(q.since, |c| c.seq);
    let last = meta.last_change().await?.max(next);
    let changes = feed_changes(meta.as_ref(), &page, q.paths).await?;
    Ok(json(&ChangesPage {
        changes,
        next,
        last,
    }))
}

/// `GET …/watch`.
pub(crate) async fn watch(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    uri: Uri,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    let q: WatchQuery = fsx_protocol::request::parse_query(uri.query())?;
    let upgrade = upgrade.map_err(|e| {
        Fail::new(
            ErrorCode::BadRequest,
            format!(
                "this route is a WebSocket (`Connection: Upgrade`, `Upgrade: websocket`): {}",
                e.body_text()
            ),
        )
    })?;
    let Some(slot) = Sockets::take(&state) else {
        return Err(Fail::new(
            ErrorCode::Unavailable,
            format!(
                "the server has as many WebSockets open as it allows ({}): retry later",
                state.limits.max_websockets
            ),
        ));
    };
    // Where the feed starts is decided now, so that the client's
    // `Hello` names a point before anything it will be sent.
    let since = match q.since {
        Some(s) => s,
        None => v.volume.meta().last_change().await?,
    };
    let stop = state.stop.clone();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            let follower = Follower {
                socket,
                v,
                paths: q.paths,
                cursor: since,
                send_timeout: state.limits.ws_send_timeout,
                ping_every: state.limits.ws_ping_every,
            };
            follower.run(stop).await;
            drop(slot);
        }))
}

/// Why a socket ends.
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The client went away (or the transport failed): nothing to send.
    Gone,
}

struct Follower {
    socket: WebSocket,
    v: Arc<ServedVolume>,
    paths: bool,
    cursor: u64,
    send_timeout: Duration,
    ping_every: Duration,
}

impl Follower {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let end = self.follow(&mut stop).await;
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                self.send_timeout,
                self.socket.send(Message::Close(Some(frame))),
            )
            .await;
        }
    }

    async fn send(&mut self, event: &WatchEvent) -> std::result::Result<(), End> {
        let text = serde_json::to_string(event)
            .map_err(|_| End::Close(1011, "the server could not encode a change"))?;
        match tokio::time::timeout(
            self.send_timeout,
            self.socket.send(Message::Text(text.into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Close(
                CLOSE_TRY_AGAIN,
                "the client reads too slowly; resume from the last change handled",
            )),
        }
    }

    /// Sends every change after the cursor.
    async fn catch_up(&mut self) -> std::result::Result<(), End> {
        let meta = self.v.volume.meta().clone();
        loop {
            let page = match meta.changes(self.cursor, SOCKET_PAGE).await {
                Ok(p) => p,
                Err(e) if e.kind() == MetaErrorKind::Gone => {
                    self.send(&WatchEvent::Gone {
                        message: e.message().to_string(),
                    })
                    .await?;
                    return Err(End::Close(
                        CLOSE_GONE,
                        "the changes asked for are no longer kept",
                    ));
                }
                Err(e) => {
                    tracing::warn!(volume = %self.v.name, error = %e, "reading the change feed failed");
                    return Err(End::Close(
                        CLOSE_TRY_AGAIN,
                        "the server could not read the change feed; resume later",
                    ));
                }
            };
            let full = page.len() == SOCKET_PAGE;
            let changes = feed_changes(meta.as_ref(), &page, self.paths)
                .await
                .map_err(|e| {
                    tracing::warn!(volume = %self.v.name, error = %e, "resolving change paths failed");
                    End::Close(
                        CLOSE_TRY_AGAIN,
                        "the server could not read the change feed; resume later",
                    )
                })?;
            for c in changes {
                let seq = c.seq;
                self.send(&WatchEvent::Change(c)).await?;
                self.cursor = seq;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn follow(&mut self, stop: &mut watch::Receiver<bool>) -> End {
        let mut last = self.v.feed.last.subscribe();
        let newest = match self.v.volume.meta().last_change().await {
            Ok(n) => n,
            Err(_) => {
                return End::Close(
                    CLOSE_TRY_AGAIN,
                    "the server could not read the change feed; resume later",
                );
            }
        };
        let hello = WatchEvent::Hello {
            since: self.cursor,
            last: newest,
        };
        if let Err(end) = self.send(&hello).await {
            return end;
        }
        let mut ping = tokio::time::interval(self.ping_every);
        ping.tick().await;
        let mut unanswered = 0u32;
        let mut strikes = 0u32;
        loop {
            if let Err(end) = self.catch_up().await {
                return end;
            }
            tokio::select! {
                changed = last.changed() => {
                    if changed.is_err() {
                        return End::Close(CLOSE_GOING_AWAY, "the server is shutting down");
                    }
                }
                _ = ping.tick() => {
                    // Strikes count per ping period: a client's
                    // occasional ping or stray message never adds up.
                    strikes = 0;
                    if unanswered >= 2 {
                        return End::Close(CLOSE_TRY_AGAIN, "pings went unanswered");
                    }
                    unanswered += 1;
                    let sent = tokio::time::timeout(
                        self.send_timeout,
                        self.socket.send(Message::Ping(bytes::Bytes::new())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return End::Gone;
                    }
                }
                msg = self.socket.recv() => match msg {
                    None | Some(Err(_)) => return End::Gone,
                    Some(Ok(Message::Close(_))) => return End::Gone,
                    Some(Ok(Message::Pong(_))) => unanswered = 0,
                    // Pings are answered by the WebSocket layer itself,
                    // but count: a flood of them is a flood.
                    Some(Ok(_)) => {
                        strikes += 1;
                        if strikes > MAX_STRIKES {
                            return End::Close(
                                CLOSE_POLICY,
                                "a client sends nothing on this socket but pongs and a close",
                            );
                        }
                    }
                },
                () = stopped(stop) => {
                    return End::Close(CLOSE_GOING_AWAY, "the server is shutting down");
                }
            }
        }
    }
}
