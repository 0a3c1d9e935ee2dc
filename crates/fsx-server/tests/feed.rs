//! The change feed over real HTTP and WebSockets on loopback: pages of
//! `…/changes`, the `…/watch` socket (order, resume, limits, floods,
//! shutdown), and the feed's property — for concurrent writers, a
//! follower that reconnects across server restarts receives every
//! committed change exactly once, in order, and nothing else — on SQLite
//! and on PostgreSQL metadata.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fsx_client::{Error as ClientError, RemoteVolume, Watcher};
use fsx_protocol::Scope;
use fsx_protocol::feed::{ChangesPage, FeedChange, WatchEvent};
use fsx_testkit::crash::{Rng, seed};
use fsx_testkit::postgres::PgServer;
use serde_json::json;

/// Longest wait for one event a test expects: a failure, never a pace.
const EVENT_WAIT: Duration = Duration::from_secs(30);

async fn next(w: &mut Watcher) -> Result<Option<WatchEvent>, ClientError> {
    tokio::time::timeout(EVENT_WAIT, w.next())
        .await
        .expect("no event within 30 s")
}

async fn next_change(w: &mut Watcher) -> FeedChange {
    match next(w).await.unwrap() {
        Some(WatchEvent::Change(c)) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

async fn post(c: &reqwest::Client, url: &str, token: &str, body: serde_json::Value) -> u16 {
    c.post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What a change says, for comparison: kind, branch, path, destination.
fn said(c: &FeedChange) -> (String, Option<String>, Option<String>, Option<String>) {
    (
        c.kind.clone(),
        c.branch.clone(),
        c.path.clone(),
        c.to_path.clone(),
    )
}

fn s(
    kind: &str,
    path: Option<&str>,
    to: Option<&str>,
) -> (String, Option<String>, Option<String>, Option<String>) {
    (
        kind.to_string(),
        Some("main".to_string()),
        path.map(str::to_string),
        to.map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_paged_in_order_with_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let write = token(&vol, Scope::Write, 1).await;
    let read = token(&vol, Scope::Read, 2).await;
    let server = serve(vec![vol.clone()], None).await;
    let base = format!("{}/v1/volumes/vol", server.url());
    let c = client();
    assert_eq!(
        post(&c, &format!("{base}/mkdir"), &write, json!({"path": "/d"})).await,
        200
    );
    assert_eq!(
        post(
            &c,
            &format!("{base}/mkdir"),
            &write,
            json!({"path": "/d/e"})
        )
        .await,
        200
    );
    assert_eq!(
        post(
            &c,
            &format!("{base}/rename"),
            &write,
            json!({"from": "/d/e", "to": "/f"})
        )
        .await,
        200
    );
    assert_eq!(
        post(&c, &format!("{base}/remove"), &write, json!({"path": "/f"})).await,
        200
    );
    // A refused request changes nothing, so the feed says nothing.
    assert_eq!(
        post(&c, &format!("{base}/remove"), &write, json!({"path": "/f"})).await,
        404
    );
    assert_eq!(
        post(
            &c,
            &format!("{base}/commit"),
            &write,
            json!({"message": "one"})
        )
        .await,
        200
    );

    let remote = RemoteVolume::new(&base, Some(read.clone())).unwrap();
    let all = remote.changes(0, 100, true).await.unwrap();
    let got: Vec<_> = all.changes.iter().map(said).collect();
    assert_eq!(
        got,
        vec![
            s("make", Some("/d"), None),
            s("make", Some("/d/e"), None),
            s("rename", Some("/d/e"), Some("/f")),
            s("remove", Some("/f"), None),
            s("commit", None, None),
        ]
    );
    let seqs: Vec<u64> = all.changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!((all.next, all.last), (5, 5));
    assert!(all.changes[4].commit.is_some());
    // Without paths, none are resolved.
    let bare = remote.changes(0, 100, false).await.unwrap();
    assert!(
        bare.changes
            .iter()
            .all(|c| c.path.is_none() && c.to_path.is_none())
    );
    // Paged: two at a time, from any number.
    let page = remote.changes(1, 2, false).await;
    let page: ChangesPage = page.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        page.changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!((page.next, page.last), (3, 5));
    let end = remote.changes(5, 10, true).await.unwrap();
    assert!(end.changes.is_empty() && end.next == 5);
    // Bad queries are 400, named.
    for q in [
        "limit=0",
        "limit=10001",
        "since=-1",
        "since=x",
        "paths=maybe",
        "bogus=1",
    ] {
        let r = c
            .get(format!("{base}/changes?{q}"))
            .bearer_auth(&read)
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (400, "bad_request".to_string()), "{q}");
    }
    // A cursor older than what the volume keeps is 410 gone.
    let v = open(&vol).await;
    assert_eq!(v.meta().prune_changes(2).await.unwrap(), 3);
    let r = c
        .get(format!("{base}/changes?since=1"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (410, "gone".to_string()));
    let kept = remote.changes(3, 10, false).await.unwrap();
    assert_eq!(
        kept.changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [4, 5]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_pushes_changes_as_they_commit_and_resumes_from_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let write = token(&vol, Scope::Write, 1).await;
    let read = token(&vol, Scope::Read, 2).await;
    let server = serve(vec![vol.clone()], None).await;
    let base = format!("{}/v1/volumes/vol", server.url());
    let c = client();
    post(&c, &format!("{base}/mkdir"), &write, json!({"path": "/a"})).await;
    let remote = RemoteVolume::new(&base, Some(read.clone())).unwrap();

    // From now: hello names the newest, then only what comes after.
    let mut now = remote.watch(None, true).await.unwrap();
    assert_eq!(
        next(&mut now).await.unwrap(),
        Some(WatchEvent::Hello { since: 1, last: 1 })
    );
    // From the start: the change already made, then new ones as they come.
    let mut all = remote.watch(Some(0), true).await.unwrap();
    assert_eq!(
        next(&mut all).await.unwrap(),
        Some(WatchEvent::Hello { since: 0, last: 1 })
    );
    assert_eq!(
        said(&next_change(&mut all).await),
        s("make", Some("/a"), None)
    );
    // A change made by another process (the volume opened beside the
    // server, as `fsx` or a mount would) reaches the sockets too.
    let v = open(&vol).await;
    let fs = fsx_posix::Fs::new(v.clone()).await.unwrap();
    let root = fs.root();
    fs.mkdir(root, b"b", 0o755, &fsx_posix::Caller::root())
        .await
        .unwrap();
    post(
        &c,
        &format!("{base}/rename"),
        &write,
        json!({"from": "/b", "to": "/c"}),
    )
    .await;
    for w in [&mut now, &mut all] {
        let b = next_change(w).await;
        // A made entry's path is its directory's now, and its own name.
        assert_eq!((b.seq, said(&b)), (2, s("make", Some("/b"), None)));
        let r = next_change(w).await;
        assert_eq!((r.seq, said(&r)), (3, s("rename", Some("/b"), Some("/c"))));
    }
    // Resuming from a cursor sends what came after it, once.
    all.close().await.unwrap();
    let mut again = remote.watch(Some(2), false).await.unwrap();
    assert_eq!(
        next(&mut again).await.unwrap(),
        Some(WatchEvent::Hello { since: 2, last: 3 })
    );
    let r = next_change(&mut again).await;
    assert_eq!(
        (r.seq, r.kind.as_str(), r.path.as_deref()),
        (3, "rename", None)
    );
    // A socket the route refuses: no token, a plain GET, a cursor pruned.
    let anon = RemoteVolume::new(&base, None).unwrap();
    assert!(matches!(
        anon.watch(None, false).await,
        Err(ClientError::NoToken { .. })
    ));
    let plain = c
        .get(format!("{base}/watch"))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(code(plain).await, (400, "bad_request".to_string()));
    v.meta().prune_changes(1).await.unwrap();
    let mut old = remote.watch(Some(0), false).await.unwrap();
    next(&mut old).await.unwrap();
    assert!(matches!(
        next(&mut old).await.unwrap(),
        Some(WatchEvent::Gone { .. })
    ));
    match next(&mut old).await {
        Err(ClientError::WatchClosed {
            code: 4410,
            gone: true,
            ..
        }) => {}
        other => panic!("expected close 4410, got {other:?}"),
    }
    drop(fs);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_bounded_floods_closed_and_shutdown_says_goodbye() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let read = token(&vol, Scope::Read, 2).await;
    let limits = fsx_server::Limits {
        max_websockets: 2,
        ..fsx_server::Limits::default()
    };
    let server = serve(vec![vol.clone()], Some(limits)).await;
    let base = format!("{}/v1/volumes/vol", server.url());
    let remote = RemoteVolume::new(&base, Some(read.clone())).unwrap();
    let mut a = remote.watch(None, false).await.unwrap();
    let mut b = remote.watch(None, false).await.unwrap();
    next(&mut a).await.unwrap();
    next(&mut b).await.unwrap();
    // A third is refused while two are open, and counted in the metrics.
    match remote.watch(None, false).await {
        Err(e) => assert_eq!(e.code(), Some(fsx_protocol::ErrorCode::Unavailable), "{e}"),
        Ok(_) => panic!("a third socket opened past the limit of 2"),
    }
    let metrics = client()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("fsx_websockets_open 2"), "{metrics}");
    // A client that floods its socket is closed with 1008; the server
    // goes on serving the others.
    for i in 0..100 {
        if a.send_text(&format!("flood {i}")).await.is_err() {
            break;
        }
    }
    match next(&mut a).await {
        Err(ClientError::WatchClosed { code: 1008, .. }) => {}
        other => panic!("expected close 1008, got {other:?}"),
    }
    // Its slot is free again.
    let mut c = loop {
        match remote.watch(None, false).await {
            Ok(w) => break w,
            // The flooder's slot frees when its task ends.
            Err(e) if e.code() == Some(fsx_protocol::ErrorCode::Unavailable) => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("{e}"),
        }
    };
    next(&mut c).await.unwrap();
    // Shutdown: every open socket gets close code 1001, then the server
    // is gone.
    let stopping = tokio::spawn(server.shutdown());
    for w in [&mut b, &mut c] {
        match next(w).await {
            Err(ClientError::WatchClosed { code: 1001, .. }) => {}
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    stopping.await.unwrap().unwrap();
}

/// What the writers of the property test did: for each path-level change
/// they asked for, whether the server acknowledged it (`true`) or the
/// answer was lost to a restart (`false`: it may or may not have
/// happened).
type Asked = Arc<
    Mutex<
        Vec<(
            (String, Option<String>, Option<String>, Option<String>),
            bool,
        )>,
    >,
>;

/// One writer: random mkdir, rename and remove under its own directory,
/// through the server at `base()`, until `stop`.
async fn writer(
    id: u64,
    base: Arc<Mutex<String>>,
    token: String,
    asked: Asked,
    ops: u64,
    seed: u64,
) {
    let c = client();
    let mut rng = Rng(seed.wrapping_mul(id + 7) | 1);
    let mut names: Vec<String> = Vec::new();
    let top = format!("/w{id}");
    let mut n = 0;
    // Every attempt takes new names, so a retry after a lost answer never
    // collides with what the lost attempt may have made.
    let mut k = 0u64;
    let mut made_top = false;
    while n < ops {
        k += 1;
        let url = base.lock().unwrap().clone();
        let (route, body, change) = if !made_top {
            ("mkdir", json!({"path": top}), s("make", Some(&top), None))
        } else {
            match (rng.below(3), names.is_empty()) {
                (0, _) | (_, true) => {
                    let p = format!("{top}/d{k}");
                    ("mkdir", json!({"path": p}), s("make", Some(&p), None))
                }
                (1, false) => {
                    let i = rng.below(names.len() as u64) as usize;
                    let from = names[i].clone();
                    let to = format!("{top}/r{k}");
                    (
                        "rename",
                        json!({"from": from, "to": to}),
                        s("rename", Some(&from), Some(&to)),
                    )
                }
                _ => {
                    let i = rng.below(names.len() as u64) as usize;
                    let p = names[i].clone();
                    ("remove", json!({"path": p}), s("remove", Some(&p), None))
                }
            }
        };
        let sent = c
            .post(format!("{url}/{route}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        // Not sent at all (the server is restarting), or refused before
        // any handler ran (503 while stopping): nothing happened; again.
        let not_done = match &sent {
            Err(e) => e.is_connect(),
            Ok(r) => r.status().as_u16() == 503,
        };
        if not_done {
            tokio::task::yield_now().await;
            continue;
        }
        match sent.map(|r| r.status().as_u16()) {
            Ok(200) => {
                asked.lock().unwrap().push((change.clone(), true));
                made_top = true;
                match route {
                    "mkdir" if change.2.as_deref() != Some(top.as_str()) => {
                        names.push(change.2.clone().unwrap())
                    }
                    "rename" => {
                        let from = change.2.clone().unwrap();
                        names.retain(|p| *p != from);
                        names.push(change.3.clone().unwrap());
                    }
                    "remove" => {
                        let p = change.2.clone().unwrap();
                        names.retain(|q| *q != p);
                    }
                    _ => {}
                }
                n += 1;
            }
            // Its own directory, made by an attempt whose answer was lost.
            Ok(409) if !made_top => made_top = true,
            Ok(status) if status < 500 && status != 408 => {
                panic!("writer {id}: {route} {body} answered {status}")
            }
            // Lost to a restart (refused connection, reset, 503 while
            // stopping): it may have happened. The writer moves on to
            // other names, so a retry is never mistaken for a duplicate.
            _ => {
                asked.lock().unwrap().push((change.clone(), false));
                if route == "mkdir" && change.2.as_deref() == Some(top.as_str()) {
                    // Whether it exists is unknown: make sure it does.
                    made_top = false;
                }
                // The old names stay uncertain: forget them.
                names.clear();
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Follows the feed at `base()` from `since`, reopening the socket on
/// every failure, until it has seen `until` (set by the test at the end).
async fn follower(
    base: Arc<Mutex<String>>,
    token: String,
    seen: Arc<Mutex<Vec<FeedChange>>>,
    until: Arc<Mutex<Option<u64>>>,
) {
    let mut cursor = 0u64;
    loop {
        if until.lock().unwrap().is_some_and(|u| cursor >= u) {
            return;
        }
        let url = base.lock().unwrap().clone();
        let remote = RemoteVolume::new(&url, Some(token.clone())).unwrap();
        let Ok(mut w) = remote.watch(Some(cursor), true).await else {
            tokio::task::yield_now().await;
            continue;
        };
        loop {
            let event = tokio::select! {
                e = w.next() => e,
                // Re-check `until` now and then while idle.
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if until.lock().unwrap().is_some_and(|u| cursor >= u) {
                        return;
                    }
                    continue;
                }
            };
            match event {
                Ok(Some(WatchEvent::Hello { since, .. })) => assert_eq!(since, cursor),
                Ok(Some(WatchEvent::Change(c))) => {
                    assert_eq!(c.seq, cursor + 1, "the feed skipped or repeated a number");
                    cursor = c.seq;
                    seen.lock().unwrap().push(c);
                }
                Ok(Some(WatchEvent::Gone { message })) => panic!("gone: {message}"),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// The property on one volume (its run's shape goes to the test's
/// output, beside its seed): 3 writers, 2 graceful restarts of the
/// server on the same port mid-run, a follower reconnecting each time.
#[allow(clippy::print_stderr)]
async fn feed_property(vol: PathBuf) {
    let seed = seed("feed property");
    let write = token(&vol, Scope::Write, 1).await;
    let read = token(&vol, Scope::Read, 2).await;
    let mut server = serve(vec![vol.clone()], None).await;
    let addr = server.local_addr();
    let base = Arc::new(Mutex::new(format!("{}/v1/volumes/vol", server.url())));
    let asked: Asked = Arc::default();
    let seen: Arc<Mutex<Vec<FeedChange>>> = Arc::default();
    let until: Arc<Mutex<Option<u64>>> = Arc::default();
    let follow = tokio::spawn(follower(
        base.clone(),
        read.clone(),
        seen.clone(),
        until.clone(),
    ));
    let writers: Vec<_> = (0..3)
        .map(|id| {
            tokio::spawn(writer(
                id,
                base.clone(),
                write.clone(),
                asked.clone(),
                40,
                seed,
            ))
        })
        .collect();
    let mut rng = Rng(seed);
    for _ in 0..2 {
        // Restart once the writers have made some progress (counted, not
        // timed).
        let at = asked.lock().unwrap().len() as u64 + 10 + rng.below(20);
        while (asked.lock().unwrap().len() as u64) < at && !writers.iter().all(|w| w.is_finished())
        {
            tokio::task::yield_now().await;
        }
        server.shutdown().await.unwrap();
        server = serve_at(addr, vol.clone()).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let last = open(&vol).await.meta().last_change().await.unwrap();
    *until.lock().unwrap() = Some(last);
    tokio::time::timeout(Duration::from_secs(60), follow)
        .await
        .expect("the follower did not catch up within 60 s")
        .unwrap();
    server.shutdown().await.unwrap();

    // Exactly once, in order: 1..=last, no gaps (checked as received).
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, last);
    assert!(seen.iter().enumerate().all(|(i, c)| c.seq == i as u64 + 1));
    // Nothing missed, nothing invented: every acknowledged change is in
    // the feed once; every change in the feed was asked for.
    let mut feed: BTreeMap<_, u32> = BTreeMap::new();
    for c in seen.iter() {
        *feed.entry(said(c)).or_default() += 1;
    }
    let asked = asked.lock().unwrap();
    let lost = asked.iter().filter(|(_, acked)| !acked).count();
    eprintln!(
        "feed property: {last} changes followed across 2 restarts; {} asked, {lost} of them \
         with the answer lost to a restart",
        asked.len()
    );
    for (change, acked) in asked.iter() {
        let n = feed.get(change).copied().unwrap_or(0);
        if *acked {
            assert_eq!(n, 1, "acknowledged {change:?} is in the feed {n} times");
        } else {
            assert!(n <= 1, "unacknowledged {change:?} is in the feed {n} times");
        }
    }
    for (change, n) in &feed {
        assert!(
            asked.iter().any(|(a, _)| a == change),
            "the feed holds {change:?} ({n} times), which no writer asked for"
        );
    }
}

/// A server on `addr` again (the port the follower and writers know).
async fn serve_at(addr: std::net::SocketAddr, vol: PathBuf) -> fsx_server::Server {
    let config = fsx_server::ServeConfig::new(addr, vec![vol]);
    fsx_server::Server::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_delivers_every_change_once_in_order_across_restarts_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    feed_property(vol).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_feed_delivers_every_change_once_in_order_across_restarts_postgres() {
    let pg = PgServer::start();
    let schema = pg.fresh_schema();
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), Some(pg.url(&schema))).await;
    feed_property(vol).await;
}

/// Open WebSockets, from `/metrics`.
async fn open_sockets(server: &str) -> Option<u64> {
    metric(server, "fsx_websockets_open").await
}

/// A client that stops reading stops answering pings: its socket is
/// closed (1013, resume later), its slot freed for another, and the
/// server holds nothing for it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_closed_and_its_slot_freed() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let read = token(&vol, Scope::Read, 2).await;
    let limits = fsx_server::Limits {
        max_websockets: 1,
        ws_ping_every: Duration::from_millis(50),
        ws_send_timeout: Duration::from_millis(200),
        ..fsx_server::Limits::default()
    };
    let server = serve(vec![vol.clone()], Some(limits)).await;
    let url = server.url();
    let remote = RemoteVolume::new(&format!("{url}/v1/volumes/vol"), Some(read)).unwrap();
    let mut idle = remote.watch(None, false).await.unwrap();
    assert_eq!(open_sockets(&url).await, Some(1));
    // Not read from here on: no pong goes back.
    let deadline = std::time::Instant::now() + EVENT_WAIT;
    while open_sockets(&url).await != Some(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle socket stayed open"
        );
        tokio::task::yield_now().await;
    }
    // Its slot serves another client.
    let mut other = remote.watch(None, false).await.unwrap();
    assert!(matches!(
        next(&mut other).await.unwrap(),
        Some(WatchEvent::Hello { .. })
    ));
    // What the idle client finds once it reads again: the hello sent
    // before, then the end — the close frame saying "resume" (1013), or,
    // when its own pending pongs hit the closed connection first, the
    // transport's error. Either way it resumes from its cursor.
    assert!(matches!(
        next(&mut idle).await.unwrap(),
        Some(WatchEvent::Hello { .. })
    ));
    match next(&mut idle).await {
        Err(ClientError::WatchClosed { code: 1013, .. } | ClientError::WebSocket { .. }) => {}
        other => panic!("expected the socket closed, got {other:?}"),
    }
    server.shutdown().await.unwrap();
}
