//! Where the load goes: a volume over the HTTP API (a remote server, or
//! the one `fsx bench serve` starts in process), or the same volume
//! through the library directly, with no HTTP in between — the reference
//! the HTTP figures are compared with.
//!
//! Both sides do what one API call does and nothing more: the direct
//! side mirrors the server's handlers (`fsx-server/src/handlers.rs`: a
//! PUT writes a hidden file beside the target, fsyncs it and renames it
//! over; a read opens the page-store file), so the ratio between the two
//! is the price of HTTP, JSON, auth and the server's limits.
//!
//! Every call answers `Ok` only for a success status; an error keeps the
//! status and the protocol's code, so the report can say what failed.

use std::sync::Arc;
use std::time::Duration;

use fsx_posix::{Attr, Caller, Fs, NodeKind, OpenFlags, RenameFlags};
use fsx_protocol::types as t;
use reqwest::{StatusCode, Url, header};

/// Why a call failed.
#[derive(Debug, Clone)]
pub struct OpError {
    /// The HTTP status (`None`: no answer, or a direct call).
    pub status: Option<u16>,
    /// The protocol's error code, or a short tag (`transport`, `errno 2`).
    pub code: String,
    /// The message.
    pub message: String,
}

impl OpError {
    fn local(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: None,
            code: code.into(),
            message: message.into(),
        }
    }

    /// Whether this says "no such entry".
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404) || self.code == "not_found"
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s} {}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl From<fsx_posix::FsError> for OpError {
    fn from(e: fsx_posix::FsError) -> Self {
        let code = if e.errno() == fsx_posix::errno::ENOENT {
            "not_found".to_string()
        } else {
            format!("errno {}", e.errno())
        };
        OpError::local(code, e.message().to_string())
    }
}

impl From<fsx_engine::Error> for OpError {
    fn from(e: fsx_engine::Error) -> Self {
        OpError::local("engine", e.to_string())
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// A volume to load.
pub enum Target {
    /// Over the HTTP API.
    Http(HttpTarget),
    /// Through the library, in this process.
    Direct(DirectTarget),
}

impl Target {
    /// Replaces the file at `path` with `data`; durable when answered.
    pub async fn put(&self, path: &str, data: Vec<u8>) -> OpResult<()> {
        match self {
            Target::Http(h) => h.put(path, data).await,
            Target::Direct(d) => d.put(path, &data).await,
        }
    }

    /// `len` bytes of `path` from `start` (fewer at its end).
    pub async fn get_range(&self, path: &str, start: u64, len: u64) -> OpResult<Vec<u8>> {
        match self {
            Target::Http(h) => h.get(path, Some((start, len))).await,
            Target::Direct(d) => d.read(path, start, len).await,
        }
    }

    /// The whole file.
    pub async fn read(&self, path: &str) -> OpResult<Vec<u8>> {
        match self {
            Target::Http(h) => h.get(path, None).await,
            Target::Direct(d) => d.read(path, 0, u64::MAX).await,
        }
    }

    /// Kind and size of `path`; `None` when it does not exist.
    pub async fn stat(&self, path: &str) -> OpResult<Option<(t::Kind, u64)>> {
        let r = match self {
            Target::Http(h) => h.stat(path).await,
            Target::Direct(d) => d.stat(path).await,
        };
        match r {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names in directory `path` (at most 10,000).
    pub async fn list(&self, path: &str) -> OpResult<Vec<String>> {
        match self {
            Target::Http(h) => h.list(path).await,
            Target::Direct(d) => d.list(path).await,
        }
    }

    /// Makes directory `path` (and its parents when `parents`).
    pub async fn mkdir(&self, path: &str, parents: bool) -> OpResult<()> {
        match self {
            Target::Http(h) => {
                h.post(
                    "mkdir",
                    &t::MkdirRequest {
                        path: path.into(),
                        branch: t::DEFAULT_BRANCH.into(),
                        parents,
                    },
                )
                .await
            }
            Target::Direct(d) => d.mkdir(path, parents).await,
        }
    }

    /// Renames `from` to `to`, which must not exist.
    pub async fn rename(&self, from: &str, to: &str) -> OpResult<()> {
        match self {
            Target::Http(h) => {
                h.post(
                    "rename",
                    &t::RenameRequest {
                        from: from.into(),
                        to: to.into(),
                        branch: t::DEFAULT_BRANCH.into(),
                        replace: false,
                    },
                )
                .await
            }
            Target::Direct(d) => d.rename(from, to).await,
        }
    }

    /// Removes a file or an empty directory.
    pub async fn remove(&self, path: &str) -> OpResult<()> {
        match self {
            Target::Http(h) => {
                h.post(
                    "remove",
                    &t::RemoveRequest {
                        path: path.into(),
                        branch: t::DEFAULT_BRANCH.into(),
                    },
                )
                .await
            }
            Target::Direct(d) => d.remove(path).await,
        }
    }
}

/// A volume URL and its token. One client, so connections are kept alive
/// and shared by every simulated client, as a pool of workers would.
pub struct HttpTarget {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl HttpTarget {
    /// The volume at `url` (`http(s)://HOST:PORT/v1/volumes/NAME`).
    pub fn new(url: &str, token: Option<String>, clients: usize) -> anyhow::Result<Self> {
        // Checked as the CLI's remote volumes are.
        let remote = fsx_client::RemoteVolume::new(url, token.clone())?;
        let base = Url::parse(&remote.url())?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("fsx-bench/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(clients)
            // A guard against a hung server, far above any sane latency:
            // a request that hits it counts as an error.
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self { http, base, token })
    }

    fn url(&self, route: &str, path: Option<&str>) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}/{route}", self.base.path()));
        if let Some(p) = path {
            url.query_pairs_mut().append_pair("path", p);
        }
        url
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> OpResult<reqwest::Response> {
        let r = req.send().await.map_err(|e| OpError {
            status: None,
            code: "transport".into(),
            message: e.to_string(),
        })?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<fsx_protocol::ErrorBody>(&body) {
            Ok(b) => (
                serde_json::to_value(b.error.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                b.error.message,
            ),
            Err(_) => (
                "no_error_body".into(),
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            ),
        };
        Err(OpError {
            status: Some(status),
            code,
            message,
        })
    }

    async fn body(r: reqwest::Response) -> OpResult<Vec<u8>> {
        r.bytes().await.map(|b| b.to_vec()).map_err(|e| OpError {
            status: None,
            code: "transport".into(),
            message: format!("reading the body: {e}"),
        })
    }

    async fn put(&self, path: &str, data: Vec<u8>) -> OpResult<()> {
        let req = self
            .request(reqwest::Method::PUT, self.url("file", Some(path)))
            .body(data);
        self.send(req).await.map(drop)
    }

    async fn get(&self, path: &str, range: Option<(u64, u64)>) -> OpResult<Vec<u8>> {
        let mut req = self.request(reqwest::Method::GET, self.url("file", Some(path)));
        if let Some((start, len)) = range {
            let last = start.saturating_add(len.max(1)) - 1;
            req = req.header(header::RANGE, format!("bytes={start}-{last}"));
        }
        let r = self.send(req).await?;
        let want = if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        if r.status() != want {
            return Err(OpError {
                status: Some(r.status().as_u16()),
                code: "unexpected_status".into(),
                message: format!("expected {want}"),
            });
        }
        Self::body(r).await
    }

    async fn stat(&self, path: &str) -> OpResult<(t::Kind, u64)> {
        let r = self
            .send(self.request(reqwest::Method::GET, self.url("stat", Some(path))))
            .await?;
        let s: t::Stat = decode(&Self::body(r).await?)?;
        Ok((s.kind, s.size))
    }

    async fn list(&self, path: &str) -> OpResult<Vec<String>> {
        let mut url = self.url("list", Some(path));
        url.query_pairs_mut()
            .append_pair("limit", &t::MAX_LIST_LIMIT.to_string());
        let r = self.send(self.request(reqwest::Method::GET, url)).await?;
        let page: t::ListPage = decode(&Self::body(r).await?)?;
        Ok(page.entries.into_iter().map(|e| e.name).collect())
    }

    async fn post<B: serde::Serialize>(&self, route: &str, body: &B) -> OpResult<()> {
        let req = self
            .request(reqwest::Method::POST, self.url(route, None))
            .json(body);
        let r = self.send(req).await?;
        let _: t::Done = decode(&Self::body(r).await?)?;
        Ok(())
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> OpResult<T> {
    serde_json::from_slice(body).map_err(|e| OpError::local("bad_answer", e.to_string()))
}

/// The `main` branch of a local volume, through `fsx_posix::Fs` as the
/// superuser (what the server's handlers do with a token's rights).
pub struct DirectTarget {
    fs: Arc<Fs>,
}

impl DirectTarget {
    /// Opens the volume in `dir`.
    pub async fn open(dir: &std::path::Path) -> anyhow::Result<Self> {
        let volume = crate::volume_cmd::open_volume(dir).await?;
        Ok(Self {
            fs: Arc::new(Fs::new(volume).await?),
        })
    }

    fn components(path: &str) -> OpResult<Vec<String>> {
        fsx_protocol::TreePath::parse(path)
            .map(|p| p.components().to_vec())
            .map_err(|e| OpError::local("invalid_path", e.to_string()))
    }

    async fn resolve(&self, components: &[String]) -> OpResult<Attr> {
        let root = Caller::root();
        let mut a = self.fs.getattr(self.fs.root()).await?;
        for c in components {
            a = self.fs.lookup(a.ino, c.as_bytes(), &root).await?;
        }
        Ok(a)
    }

    /// The parent directory's inode and the last component.
    async fn parent(&self, path: &str) -> OpResult<(fsx_posix::Ino, String)> {
        let mut c = Self::components(path)?;
        let name = c
            .pop()
            .ok_or_else(|| OpError::local("bad_request", "the root"))?;
        Ok((self.resolve(&c).await?.ino, name))
    }

    async fn put(&self, path: &str, data: &[u8]) -> OpResult<()> {
        let (parent, name) = self.parent(path).await?;
        let root = Caller::root();
        let temp = format!(".{name}.fsx-bench.{}", std::process::id());
        let flags = OpenFlags {
            write: true,
            ..OpenFlags::default()
        };
        let (_, fh) = self
            .fs
            .create(parent, temp.as_bytes(), 0o644, flags, true, &root)
            .await?;
        let written = async {
            let mut at = 0;
            while at < data.len() {
                let n = self.fs.write(fh, at as u64, &data[at..]).await?;
                if n == 0 {
                    return Err(fsx_posix::FsError::new(
                        fsx_posix::errno::EIO,
                        "a write wrote nothing",
                    ));
                }
                at += n;
            }
            self.fs.fsync(fh).await
        }
        .await;
        let released = self.fs.release(fh).await;
        written.and(released)?;
        self.fs
            .rename(
                parent,
                temp.as_bytes(),
                parent,
                name.as_bytes(),
                RenameFlags::default(),
                &root,
            )
            .await?;
        Ok(())
    }

    async fn read(&self, path: &str, start: u64, len: u64) -> OpResult<Vec<u8>> {
        let c = Self::components(path)?;
        let a = self.resolve(&c).await?;
        if a.kind != NodeKind::File {
            return Err(OpError::local("conflict", "not a regular file"));
        }
        let file = self
            .fs
            .volume()
            .open_file(&c.join("/"), fsx_engine::OpenOptions::read())
            .await?;
        let end = start.saturating_add(len).min(file.size());
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let chunk = file
                .read_at(at, usize::try_from(end - at).unwrap_or(usize::MAX))
                .await?;
            if chunk.is_empty() {
                break;
            }
            at += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn stat(&self, path: &str) -> OpResult<(t::Kind, u64)> {
        let a = self.resolve(&Self::components(path)?).await?;
        let kind = match a.kind {
            NodeKind::Dir => t::Kind::Dir,
            NodeKind::File => t::Kind::File,
            NodeKind::Symlink => t::Kind::Symlink,
            NodeKind::Fifo => t::Kind::Fifo,
            NodeKind::Socket => t::Kind::Socket,
            NodeKind::CharDev => t::Kind::CharDev,
            NodeKind::BlockDev => t::Kind::BlockDev,
        };
        Ok((kind, a.size))
    }

    async fn list(&self, path: &str) -> OpResult<Vec<String>> {
        let dir = self.resolve(&Self::components(path)?).await?;
        self.fs.opendir(dir.ino, &Caller::root()).await?;
        let rows = self
            .fs
            .readdir_plus(dir.ino, None, t::MAX_LIST_LIMIT as usize)
            .await?;
        Ok(rows
            .iter()
            .map(|(e, _)| String::from_utf8_lossy(&e.name).into_owned())
            .collect())
    }

    async fn mkdir(&self, path: &str, parents: bool) -> OpResult<()> {
        let root = Caller::root();
        if !parents {
            let (parent, name) = self.parent(path).await?;
            self.fs.mkdir(parent, name.as_bytes(), 0o755, &root).await?;
            return Ok(());
        }
        let mut dir = self.fs.getattr(self.fs.root()).await?;
        for c in Self::components(path)? {
            dir = match self.fs.lookup(dir.ino, c.as_bytes(), &root).await {
                Ok(a) => a,
                Err(e) if e.errno() == fsx_posix::errno::ENOENT => {
                    self.fs.mkdir(dir.ino, c.as_bytes(), 0o755, &root).await?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> OpResult<()> {
        let (src, src_name) = self.parent(from).await?;
        let (dst, dst_name) = self.parent(to).await?;
        let flags = RenameFlags {
            no_replace: true,
            ..RenameFlags::default()
        };
        self.fs
            .rename(
                src,
                src_name.as_bytes(),
                dst,
                dst_name.as_bytes(),
                flags,
                &Caller::root(),
            )
            .await?;
        Ok(())
    }

    async fn remove(&self, path: &str) -> OpResult<()> {
        let (parent, name) = self.parent(path).await?;
        let root = Caller::root();
        let a = self.fs.lookup(parent, name.as_bytes(), &root).await?;
        if a.kind == NodeKind::Dir {
            self.fs.rmdir(parent, name.as_bytes(), &root).await?;
        } else {
            self.fs.unlink(parent, name.as_bytes(), &root).await?;
        }
        Ok(())
    }
}
