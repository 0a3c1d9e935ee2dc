//! One handler per route of [`fsx_protocol::ROUTES`], and the volumes
//! they serve.
//!
//! - **Tree** calls go through one [`Fs`] per branch (made at first use,
//!   kept), as the tree's superuser: the token's scope is the
//!   permission, as the volume's owner running `fsx file` has every
//!   permission. Reads stream from a page-store file of the branch.
//! - **Branches and history** are the calls `fsx branch`, `fsx commit`,
//!   `log`, `diff`, `merge` and `reset` make (`fsx_engine::branch`).
//! - **Extents** are the volume's store by content key. Every extent
//!   served is checked against its key first (a range too: extents are at
//!   most 16 MiB, so it is read whole); every extent stored is checked
//!   before anything is written.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, on};
use bytes::Bytes;
use fsx_engine::{SystemEnv, Volume, VolumeOptions};
use fsx_meta::View;
use fsx_posix::{Attr, Caller, Fs, Ino, NodeKind, OpenFlags, RenameFlags};
use fsx_protocol::types::{self as t, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_LOG_LIMIT};
use fsx_protocol::validate::{check_spec, check_volume_name};
use fsx_protocol::{ContentKey, ErrorCode, Route, RouteId, TreePath};
use fsx_store::{ExtentBackendExt, ObjectKey};

use crate::reply::{Fail, Result, json};
use crate::wire;
use crate::{AppState, ServerError, filter};

/// The volume setting that lets requests without a token read.
pub const PUBLIC_READ_SETTING: &str = "server.public_read";

/// Bytes read from a file per chunk of a streamed answer.
const READ_CHUNK: usize = 1 << 20;

/// Extents asked about at once by the "which do you lack" call.
const HEADS_IN_FLIGHT: usize = 16;

/// A volume this server serves.
pub(crate) struct ServedVolume {
    /// The name it is served under.
    pub name: String,
    /// Its `main` branch (other views come from it).
    pub volume: Volume,
    /// Reads need no token (the volume's `server.public_read` setting,
    /// read at start).
    pub public_read: bool,
    /// The file system of each branch used so far.
    trees: Mutex<HashMap<String, Arc<Fs>>>,
    /// Its change feed's newest number, for the sockets that follow it.
    pub feed: crate::feed::Feed,
}

impl std::fmt::Debug for ServedVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedVolume")
            .field("name", &self.name)
            .field("public_read", &self.public_read)
            .finish_non_exhaustive()
    }
}

impl ServedVolume {
    /// The file system of `branch`.
    async fn tree(&self, branch: &str) -> Result<Arc<Fs>> {
        check_spec(branch)?;
        let known = self
            .trees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(branch)
            .cloned();
        if let Some(fs) = known {
            return Ok(fs);
        }
        let volume = self.volume.checkout(branch).await?;
        let fs = Arc::new(Fs::new(volume).await?);
        // Two first requests may both make one; the first kept wins, the
        // other holds nothing open.
        Ok(self
            .trees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(branch.to_string())
            .or_insert(fs)
            .clone())
    }

    /// The volume as `spec` (a branch name, else a commit id) shows it.
    async fn at_spec(&self, spec: &str) -> Result<Volume> {
        check_spec(spec)?;
        Ok(match self.volume.resolve(spec).await? {
            View::Branch(_) => self.volume.checkout(spec).await?,
            View::Commit(id) => self.volume.at_commit(id).await?,
        })
    }
}

/// Opens every volume directory, named by its directory name.
pub(crate) async fn open_volumes(
    dirs: &[PathBuf],
) -> std::result::Result<BTreeMap<String, Arc<ServedVolume>>, ServerError> {
    if dirs.is_empty() {
        return Err(ServerError::NoVolumes);
    }
    let mut out = BTreeMap::new();
    for dir in dirs {
        let shown = dir.display().to_string();
        let abs = fsx_volume::absolute(dir).map_err(|source| ServerError::Volume {
            dir: shown.clone(),
            source: Box::new(source),
        })?;
        let name = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = check_volume_name(&name) {
            return Err(ServerError::Name {
                dir: shown,
                name,
                why: e.to_string(),
            });
        }
        if out.contains_key(&name) {
            return Err(ServerError::Name {
                dir: shown,
                name,
                why: "another volume is served under that name".into(),
            });
        }
        let volume = fsx_volume::open(&abs, Arc::new(SystemEnv::new()), VolumeOptions::default())
            .await
            .map_err(|source| ServerError::Volume {
                dir: shown.clone(),
                source: Box::new(source),
            })?;
        let public_read = volume
            .meta()
            .setting(PUBLIC_READ_SETTING)
            .await
            .map_err(|source| ServerError::Settings {
                dir: shown.clone(),
                source,
            })?
            .is_some_and(|v| v == "true");
        tracing::info!(volume = %name, dir = %abs.display(), public_read, "serving volume");
        out.insert(
            name.clone(),
            Arc::new(ServedVolume {
                name,
                volume,
                public_read,
                trees: Mutex::new(HashMap::new()),
                feed: crate::feed::Feed::new(),
            }),
        );
    }
    Ok(out)
}

/// The handler of `route`. The match is exhaustive: a route added to the
/// table does not build until it is served here.
pub(crate) fn handler(route: &Route) -> MethodRouter<Arc<AppState>> {
    let f = filter(route.method);
    match route.id {
        RouteId::Healthz => on(f, healthz),
        RouteId::Readyz => on(f, readyz),
        RouteId::Metrics => on(f, crate::metrics::scrape),
        RouteId::VolumeInfo => on(f, volume_info),
        RouteId::Stat => on(f, stat),
        RouteId::List => on(f, list),
        RouteId::Files => on(f, files),
        RouteId::ReadFile => on(f, read_file),
        RouteId::WriteFile => on(f, write_file),
        RouteId::Mkdir => on(f, mkdir),
        RouteId::Rename => on(f, rename),
        RouteId::Remove => on(f, remove),
        RouteId::Branches => on(f, branches),
        RouteId::CreateBranch => on(f, create_branch),
        RouteId::Commit => on(f, commit),
        RouteId::Log => on(f, log),
        RouteId::Diff => on(f, diff),
        RouteId::Merge => on(f, merge),
        RouteId::Reset => on(f, reset),
        RouteId::ExtentHead => on(f, extent_head),
        RouteId::ExtentGet => on(f, extent_get),
        RouteId::ExtentPut => on(f, extent_put),
        RouteId::ExtentsMissing => on(f, extents_missing),
        RouteId::Changes => on(f, crate::feed::changes),
        RouteId::Watch => on(f, crate::feed::watch),
    }
}

type Vol = Extension<Arc<ServedVolume>>;

/// The query string as `T`; a 400 naming the problem otherwise (the
/// protocol's parser, which the fuzz target drives).
fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T> {
    Ok(fsx_protocol::request::parse_query(uri.query())?)
}

/// The whole body, at most the server's limit.
async fn body_bytes(state: &AppState, body: Body) -> Result<Bytes> {
    axum::body::to_bytes(body, state.limits.max_body)
        .await
        .map_err(|_| crate::limits::too_large(state.limits.max_body))
}

/// The body as JSON `T`.
async fn json_body<T: serde::de::DeserializeOwned>(state: &AppState, body: Body) -> Result<T> {
    let bytes = body_bytes(state, body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Fail::new(ErrorCode::InvalidJson, format!("bad JSON body: {e}")))
}

fn kind(k: NodeKind) -> t::Kind {
    match k {
        NodeKind::Dir => t::Kind::Dir,
        NodeKind::File => t::Kind::File,
        NodeKind::Symlink => t::Kind::Symlink,
        NodeKind::Fifo => t::Kind::Fifo,
        NodeKind::Socket => t::Kind::Socket,
        NodeKind::CharDev => t::Kind::CharDev,
        NodeKind::BlockDev => t::Kind::BlockDev,
    }
}

/// The inode `path` names in `fs` (as the superuser, see the module docs).
async fn resolve(fs: &Fs, components: &[String]) -> Result<Attr> {
    let root = Caller::root();
    let mut attr = fs.getattr(fs.root()).await?;
    for c in components {
        attr = fs.lookup(attr.ino, c.as_bytes(), &root).await?;
    }
    Ok(attr)
}

/// The parent directory of `path` and its last component; the root has
/// neither.
async fn parent_of<'p>(fs: &Fs, path: &'p TreePath) -> Result<(Ino, &'p str)> {
    let Some((parent, name)) = path.split_last() else {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            "the root cannot be made, renamed, replaced or removed",
        ));
    };
    let dir = resolve(fs, parent).await?;
    if dir.kind != NodeKind::Dir {
        return Err(Fail::new(
            ErrorCode::Conflict,
            format!("the parent of {path} is not a directory"),
        ));
    }
    Ok((dir.ino, name))
}

async fn healthz() -> Response {
    json(&t::Health {
        status: "ok".into(),
    })
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    for v in state.volumes.values() {
        if let Err(e) = v.volume.meta().setting("volume_id").await {
            tracing::warn!(volume = %v.name, error = %e, "volume not ready");
            return Fail::new(
                ErrorCode::Unavailable,
                format!("volume {} does not answer", v.name),
            )
            .into_response();
        }
    }
    json(&t::Health {
        status: "ok".into(),
    })
}

async fn volume_info(State(state): State<Arc<AppState>>, Extension(v): Vol) -> Result<Response> {
    let config = v.volume.config().clone();
    let stats = v.volume.stats().await?;
    let branches = v.volume.branches().await?;
    Ok(json(&t::VolumeInfo {
        name: v.name.clone(),
        volume_id: config.volume_id,
        extent_size: config.extent_size,
        created_ms: config.created_ms,
        public_read: v.public_read,
        max_body: state.limits.max_body as u64,
        store: fsx_store::redact(&config.store_url),
        stats: t::VolumeStats {
            files: stats.files.len() as u64,
            file_bytes: stats.files.iter().map(|f| f.size).sum(),
            extents: stats.extents.count,
            extent_bytes: stats.extents.bytes,
            referenced_extents: stats.extents.referenced_count,
            referenced_bytes: stats.extents.referenced_bytes,
            branches: branches.len() as u64,
            settings: stats
                .io
                .iter()
                .map(|&(name, value)| t::Setting {
                    name: name.to_string(),
                    value,
                })
                .collect(),
            counters: stats
                .counters
                .into_iter()
                .map(|c| t::Counter {
                    tier: c.tier,
                    op: c.op,
                    calls: c.calls,
                    bytes: c.bytes,
                })
                .collect(),
        },
    }))
}

async fn stat(Extension(v): Vol, uri: Uri) -> Result<Response> {
    let q: t::PathQuery = query(&uri)?;
    let path = TreePath::parse(&q.path)?;
    let fs = v.tree(&q.branch).await?;
    let a = resolve(&fs, path.components()).await?;
    Ok(json(&t::Stat {
        path: path.to_string(),
        ino: a.ino as i64,
        kind: kind(a.kind),
        size: a.size,
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        nlink: a.nlink,
        mtime_ns: a.mtime_ns,
        ctime_ns: a.ctime_ns,
    }))
}

async fn list(Extension(v): Vol, uri: Uri) -> Result<Response> {
    let q: t::ListQuery = query(&uri)?;
    let path = TreePath::parse(&q.path)?;
    if let Some(after) = &q.after {
        fsx_protocol::validate::check_entry_name(after)?;
    }
    let limit = q
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT) as usize;
    let fs = v.tree(&q.branch).await?;
    let dir = resolve(&fs, path.components()).await?;
    fs.opendir(dir.ino, &Caller::root()).await?;
    let mut rows = fs
        .readdir_plus(dir.ino, q.after.as_deref().map(str::as_bytes), limit + 1)
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let entries: Vec<t::ListEntry> = rows
        .iter()
        .map(|(e, a)| t::ListEntry {
            name: String::from_utf8_lossy(&e.name).into_owned(),
            kind: kind(a.kind),
            size: a.size,
            mtime_ns: a.mtime_ns,
        })
        .collect();
    let next = if more {
        rows.last()
            .map(|(e, _)| String::from_utf8_lossy(&e.name).into_owned())
    } else {
        None
    };
    Ok(json(&t::ListPage { entries, next }))
}

/// The page-store files of a branch by name, as `fsx file ls` lists them
/// (a file's name is its tree path without the leading `/`).
async fn files(Extension(v): Vol, uri: Uri) -> Result<Response> {
    let q: t::FilesQuery = query(&uri)?;
    let view = v.at_spec(&q.branch).await?;
    let files = view.list(&q.prefix).await?;
    Ok(json(&t::Files {
        files: files
            .into_iter()
            .map(|f| t::FileInfo {
                name: f.name,
                size: f.size,
                page_size: f.page_size,
                modified_ms: f.modified_ms,
            })
            .collect(),
    }))
}

/// A byte range `[start, end)` asked for by a `Range` header, against an
/// object of `size` bytes: `None` for the whole object.
fn range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let Ok(value) = value.to_str() else {
        // Not even ASCII: the protocol's parser gives the 416 and its text.
        return Ok(Some(fsx_protocol::request::parse_range("", size)?));
    };
    Ok(Some(fsx_protocol::request::parse_range(value, size)?))
}

/// Headers of a whole or partial answer of `size` bytes.
fn ranged(status_range: Option<(u64, u64)>, size: u64, body: Body) -> Response {
    let (status, len) = match status_range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, e - s),
        None => (StatusCode::OK, size),
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some((s, e)) = status_range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{}/{size}", e - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    r
}

async fn read_file(Extension(v): Vol, uri: Uri, headers: HeaderMap) -> Result<Response> {
    let q: t::PathQuery = query(&uri)?;
    let path = TreePath::parse(&q.path)?;
    let fs = v.tree(&q.branch).await?;
    let a = resolve(&fs, path.components()).await?;
    if a.kind != NodeKind::File {
        return Err(Fail::new(
            ErrorCode::Conflict,
            format!("{path} is not a regular file"),
        ));
    }
    let name = path.components().join("/");
    let file = fs
        .volume()
        .open_file(&name, fsx_engine::OpenOptions::read())
        .await?;
    let size = file.size();
    let r = range(&headers, size)?;
    let (start, end) = r.unwrap_or((0, size));
    // Chunks are read as the client takes them; an error midway ends the
    // body early, which the client sees as fewer bytes than announced.
    let chunks = futures_util::stream::unfold((file, start), move |(file, at)| async move {
        if at >= end {
            return None;
        }
        let want = ((end - at) as usize).min(READ_CHUNK);
        match file.read_at(at, want).await {
            Ok(bytes) if !bytes.is_empty() => {
                let n = bytes.len() as u64;
                Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), (file, at + n)))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "reading a file failed midway");
                Some((Err(std::io::Error::other(e)), (file, end)))
            }
        }
    });
    Ok(ranged(r, size, Body::from_stream(chunks)))
}

async fn write_file(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    uri: Uri,
    body: Body,
) -> Result<Response> {
    let q: t::PathQuery = query(&uri)?;
    let path = TreePath::parse(&q.path)?;
    let fs = v.tree(&q.branch).await?;
    let data = body_bytes(&state, body).await?;
    let (parent, name) = parent_of(&fs, &path).await?;
    // The bytes go to a new file that replaces the old one by a rename
    // once they are durable: a PUT that fails midway leaves the old file
    // whole, never a mixture.
    let temp = temp_name(name);
    let flags = OpenFlags {
        write: true,
        ..OpenFlags::default()
    };
    let root = Caller::root();
    let (_, fh) = fs
        .create(parent, temp.as_bytes(), 0o644, flags, true, &root)
        .await?;
    let written = async {
        let mut at = 0usize;
        while at < data.len() {
            let n = fs.write(fh, at as u64, &data[at..]).await?;
            if n == 0 {
                return Err(fsx_posix::FsError::new(
                    fsx_posix::errno::EIO,
                    "a write wrote nothing",
                ));
            }
            at += n;
        }
        fs.fsync(fh).await
    }
    .await;
    let released = fs.release(fh).await;
    let replaced = match written.and(released) {
        Ok(()) => {
            fs.rename(
                parent,
                temp.as_bytes(),
                parent,
                name.as_bytes(),
                RenameFlags::default(),
                &root,
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = replaced {
        if let Err(cleanup) = fs.unlink(parent, temp.as_bytes(), &root).await {
            tracing::warn!(file = %temp, error = %cleanup, "removing a failed upload's file failed");
        }
        return Err(e.into());
    }
    Ok(json(&t::Written {
        path: path.to_string(),
        size: data.len() as u64,
    }))
}

/// A name beside `name` for an upload in progress: hidden, and unique
/// within this process (the exclusive create refuses a clash with
/// another's).
fn temp_name(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Cut (at a character) so that a 255-byte name leaves room for the
    // suffix, at most 38 bytes.
    let mut cut = name.len().min(200);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}.fsx-put.{}.{n}", &name[..cut], std::process::id())
}

async fn mkdir(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::MkdirRequest = json_body(&state, body).await?;
    let path = TreePath::parse(&r.path)?;
    let fs = v.tree(&r.branch).await?;
    let root = Caller::root();
    if r.parents {
        let mut dir = fs.getattr(fs.root()).await?;
        for c in path.components() {
            dir = match fs.lookup(dir.ino, c.as_bytes(), &root).await {
                Ok(a) if a.kind == NodeKind::Dir => a,
                Ok(_) => {
                    return Err(Fail::new(
                        ErrorCode::Conflict,
                        format!("{c} in {path} is not a directory"),
                    ));
                }
                Err(e) if e.errno() == fsx_posix::errno::ENOENT => {
                    fs.mkdir(dir.ino, c.as_bytes(), 0o755, &root).await?
                }
                Err(e) => return Err(e.into()),
            };
        }
    } else {
        let (parent, name) = parent_of(&fs, &path).await?;
        fs.mkdir(parent, name.as_bytes(), 0o755, &root).await?;
    }
    Ok(json(&t::Done {
        path: path.to_string(),
    }))
}

async fn rename(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::RenameRequest = json_body(&state, body).await?;
    let (from, to) = (TreePath::parse(&r.from)?, TreePath::parse(&r.to)?);
    let fs = v.tree(&r.branch).await?;
    let (src, src_name) = parent_of(&fs, &from).await?;
    let (dst, dst_name) = parent_of(&fs, &to).await?;
    let flags = RenameFlags {
        no_replace: !r.replace,
        ..RenameFlags::default()
    };
    fs.rename(
        src,
        src_name.as_bytes(),
        dst,
        dst_name.as_bytes(),
        flags,
        &Caller::root(),
    )
    .await?;
    Ok(json(&t::Done {
        path: to.to_string(),
    }))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::RemoveRequest = json_body(&state, body).await?;
    let path = TreePath::parse(&r.path)?;
    let fs = v.tree(&r.branch).await?;
    let (parent, name) = parent_of(&fs, &path).await?;
    let root = Caller::root();
    let a = fs.lookup(parent, name.as_bytes(), &root).await?;
    if a.kind == NodeKind::Dir {
        fs.rmdir(parent, name.as_bytes(), &root).await?;
    } else {
        fs.unlink(parent, name.as_bytes(), &root).await?;
    }
    Ok(json(&t::Done {
        path: path.to_string(),
    }))
}

async fn branches(Extension(v): Vol) -> Result<Response> {
    // With each branch's unique bytes, as `fsx branch list` shows them.
    let list = v.volume.branch_usage().await?;
    Ok(json(&t::Branches {
        branches: list
            .iter()
            .map(|(b, u)| t::Branch {
                unique: Some(t::BranchUsage {
                    extents: u.extents,
                    extent_bytes: u.extent_bytes,
                    dirty_bytes: u.dirty_bytes,
                }),
                ..wire::branch(b)
            })
            .collect(),
    }))
}

async fn create_branch(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::CreateBranchRequest = json_body(&state, body).await?;
    check_spec(&r.name)?;
    let source = v.at_spec(&r.from).await?;
    let b = source.create_branch(&r.name).await?;
    Ok(json(&wire::branch(&b)))
}

async fn commit(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::CommitRequest = json_body(&state, body).await?;
    check_spec(&r.branch)?;
    let c = v
        .volume
        .checkout(&r.branch)
        .await?
        .commit(&r.message)
        .await?;
    Ok(json(&wire::commit(&c)))
}

async fn log(Extension(v): Vol, uri: Uri) -> Result<Response> {
    let q: t::LogQuery = query(&uri)?;
    let limit = q
        .limit
        .unwrap_or(t::DEFAULT_LOG_LIMIT)
        .clamp(1, MAX_LOG_LIMIT) as usize;
    let commits = v.at_spec(&q.spec).await?.log(limit).await?;
    Ok(json(&t::Log {
        commits: commits.iter().map(wire::commit).collect(),
    }))
}

async fn diff(Extension(v): Vol, uri: Uri) -> Result<Response> {
    let q: t::DiffQuery = query(&uri)?;
    check_spec(&q.a)?;
    check_spec(&q.b)?;
    let (a, b) = (v.volume.resolve(&q.a).await?, v.volume.resolve(&q.b).await?);
    let changes = v.volume.diff(a, b).await?;
    Ok(json(&t::Diff {
        changes: changes.iter().map(wire::change).collect(),
    }))
}

async fn merge(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::MergeRequest = json_body(&state, body).await?;
    check_spec(&r.source)?;
    check_spec(&r.into)?;
    let target = v.volume.checkout(&r.into).await?;
    let from = v.volume.resolve(&r.source).await?;
    let strategy = match r.strategy {
        t::MergeStrategy::Fail => fsx_engine::MergeStrategy::Fail,
        t::MergeStrategy::Ours => fsx_engine::MergeStrategy::Ours,
        t::MergeStrategy::Theirs => fsx_engine::MergeStrategy::Theirs,
    };
    Ok(json(&wire::merged(target.merge(from, strategy).await?)))
}

async fn reset(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::ResetRequest = json_body(&state, body).await?;
    check_spec(&r.branch)?;
    if r.commit < 1 {
        return Err(Fail::new(ErrorCode::BadRequest, "commit ids start at 1"));
    }
    v.volume.checkout(&r.branch).await?.reset(r.commit).await?;
    Ok(json(&t::ResetDone {
        branch: r.branch,
        commit: r.commit,
    }))
}

/// The store key of a URL's `{key}` segment.
fn store_key(segment: &str) -> Result<(ContentKey, ObjectKey)> {
    let key = ContentKey::from_segment(segment)?;
    let object = ObjectKey::new(key.as_str())
        .map_err(|e| Fail::new(ErrorCode::InvalidKey, e.to_string()))?;
    Ok((key, object))
}

async fn extent_head(
    Extension(v): Vol,
    Path((_, segment)): Path<(String, String)>,
) -> Result<Response> {
    let (_, key) = store_key(&segment)?;
    let meta = v.volume.store().head(&key).await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    r.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(r)
}

async fn extent_get(
    Extension(v): Vol,
    Path((_, segment)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (content, key) = store_key(&segment)?;
    let blob = v.volume.store().get(&key).await?;
    let checked = blob.clone();
    let intact = tokio::task::spawn_blocking(move || content.matches(&checked))
        .await
        .unwrap_or(false);
    if !intact {
        tracing::error!(key = %key.as_str(), "a stored extent does not match its key");
        return Err(Fail::new(
            ErrorCode::Internal,
            "the stored copy of this extent is damaged",
        ));
    }
    let size = blob.len() as u64;
    let r = range(&headers, size)?;
    let body = match r {
        Some((s, e)) => blob.slice(s as usize..e as usize),
        None => blob,
    };
    Ok(ranged(r, size, Body::from(body)))
}

async fn extent_put(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    Path((_, segment)): Path<(String, String)>,
    body: Body,
) -> Result<Response> {
    let (content, key) = store_key(&segment)?;
    let data = body_bytes(&state, body).await?;
    let checked = data.clone();
    let check_key = content.clone();
    let matches = tokio::task::spawn_blocking(move || check_key.matches(&checked))
        .await
        .unwrap_or(false);
    if !matches {
        return Err(Fail::new(
            ErrorCode::KeyMismatch,
            format!(
                "the body ({} bytes) does not hash to {content}; nothing was stored",
                data.len()
            ),
        ));
    }
    let store = v.volume.store();
    let size = data.len() as u64;
    let created = if store.exists(&key).await? {
        false
    } else {
        store.put(&key, data).await?;
        true
    };
    let mut r = json(&t::ExtentStored {
        key: content.to_string(),
        size,
        created,
    });
    if created {
        *r.status_mut() = StatusCode::CREATED;
    }
    Ok(r)
}

async fn extents_missing(
    State(state): State<Arc<AppState>>,
    Extension(v): Vol,
    body: Body,
) -> Result<Response> {
    let r: t::MissingRequest = json_body(&state, body).await?;
    if r.keys.len() > t::MAX_MISSING_KEYS {
        return Err(Fail::new(
            ErrorCode::BadRequest,
            format!("at most {} keys per call", t::MAX_MISSING_KEYS),
        ));
    }
    let keys = r
        .keys
        .iter()
        .map(|k| {
            let c = ContentKey::parse(k)?;
            store_key(c.segment()).map(|(_, o)| o)
        })
        .collect::<Result<Vec<_>>>()?;
    let store = v.volume.store();
    let mut found = Vec::with_capacity(keys.len());
    for batch in keys.chunks(HEADS_IN_FLIGHT) {
        found.extend(futures_util::future::join_all(batch.iter().map(|k| store.exists(k))).await);
    }
    let mut missing = Vec::new();
    for (key, found) in r.keys.into_iter().zip(found) {
        if !found? {
            missing.push(key);
        }
    }
    Ok(json(&t::Missing { missing }))
}
