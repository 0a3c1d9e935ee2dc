//! [`RemoteVolume`]: one volume of one server, and a method per route.
//!
//! Every call goes through [`RemoteVolume::send`], which adds the token,
//! turns transport failures into [`Error::Unreachable`] or
//! [`Error::Transport`], and an error status into the [`Error`] variant
//! the protocol's code calls for; the scope a 403 names comes from the
//! route table, not from the server's message.

use bytes::Bytes;
use fsx_protocol::types as t;
use fsx_protocol::{Access, ErrorBody, ErrorCode, RouteId, Scope, routes::route_of};
use reqwest::{Method, Url, header};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{Error, Result};

/// Bytes read from the source per chunk of an upload.
const UPLOAD_CHUNK: usize = 1 << 20;

/// Whether `s` names a remote volume (an `http://` or `https://` URL)
/// rather than a local directory.
pub fn is_remote(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// One volume of an fsx server.
#[derive(Clone)]
pub struct RemoteVolume {
    http: reqwest::Client,
    /// `scheme://host:port`, for messages and URLs.
    server: Url,
    /// The volume's name.
    name: String,
    /// The bearer token, if any.
    pub(crate) token: Option<String>,
}

impl std::fmt::Debug for RemoteVolume {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteVolume")
            .field("server", &self.server.as_str())
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A file being downloaded: its size, then its bytes chunk by chunk.
#[derive(Debug)]
pub struct FileReader {
    size: u64,
    got: u64,
    url: String,
    response: reqwest::Response,
}

impl FileReader {
    /// The file's size, as the server announced it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next chunk, `None` at the end. A body that ends before the
    /// announced size (the server failed midway) is an error, never a
    /// short file.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let next = self
            .response
            .chunk()
            .await
            .map_err(|source| Error::Transport {
                url: self.url.clone(),
                source,
            })?;
        match next {
            Some(b) => {
                self.got += b.len() as u64;
                Ok(Some(b))
            }
            None if self.got < self.size => Err(Error::Protocol {
                url: self.url.clone(),
                status: 200,
                why: format!("the body ended after {} of {} bytes", self.got, self.size),
            }),
            None => Ok(None),
        }
    }
}

impl RemoteVolume {
    /// The volume named by `url` (`http(s)://HOST:PORT/v1/volumes/NAME`),
    /// called with `token` (none: only a public-read volume answers).
    pub fn new(url: &str, token: Option<String>) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme is not http or https"));
        }
        if parsed.host_str().is_none() {
            return Err(invalid("no host"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a volume URL has no query or fragment"));
        }
        let path = parsed.path().trim_end_matches('/');
        let name = path
            .strip_prefix("/v1/volumes/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| invalid("the path is not /v1/volumes/NAME"))?;
        fsx_protocol::validate::check_volume_name(name).map_err(|e| invalid(&e.to_string()))?;
        let mut server = parsed.clone();
        server.set_path("");
        let http = reqwest::Client::builder()
            .user_agent(concat!("fsx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::Transport {
                url: url.to_string(),
                source,
            })?;
        Ok(Self {
            http,
            server,
            name: name.to_string(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The volume's name on its server.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's address, `scheme://host:port`.
    pub fn server(&self) -> &str {
        self.server.as_str().trim_end_matches('/')
    }

    /// The volume's URL.
    pub fn url(&self) -> String {
        format!("{}/v1/volumes/{}", self.server(), self.name)
    }

    /// The URL of `route` with `query` pairs.
    pub(crate) fn route_url(&self, route: RouteId, query: &[(&str, &str)]) -> Url {
        let template = route_of(route).map_or("", |r| r.path);
        let path = template.replace("{vol}", &self.name);
        let mut url = self.server.clone();
        url.set_path(&path);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// Sends a request of `route` and turns every failure into an
    /// [`Error`]: the answer returned has a success status.
    async fn send(
        &self,
        route: RouteId,
        query: &[(&str, &str)],
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let url = self.route_url(route, query);
        let method = match route_of(route).map(|r| r.method) {
            Some(fsx_protocol::Method::Head) => Method::HEAD,
            Some(fsx_protocol::Method::Put) => Method::PUT,
            Some(fsx_protocol::Method::Post) => Method::POST,
            _ => Method::GET,
        };
        tracing::debug!(%method, %url, "fsx API call");
        let mut req = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let response = build(req).send().await.map_err(|source| {
            if source.is_connect() {
                Error::Unreachable {
                    url: self.server().to_string(),
                    source,
                }
            } else {
                Error::Transport {
                    url: url.to_string(),
                    source,
                }
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.failure(route, url, response).await)
    }

    /// The [`Error`] of an answer with an error status.
    async fn failure(&self, route: RouteId, url: Url, response: reqwest::Response) -> Error {
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(source) => {
                return Error::Transport {
                    url: url.to_string(),
                    source,
                };
            }
        };
        self.decode_failure(route, url.as_str(), status.as_u16(), &body)
    }

    /// The [`Error`] of an answer of `status` with `body`.
    pub(crate) fn decode_failure(
        &self,
        route: RouteId,
        url: &str,
        status: u16,
        body: &[u8],
    ) -> Error {
        let error = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => b.error,
            Err(e) => {
                return Error::Protocol {
                    url: url.to_string(),
                    status,
                    why: e.to_string(),
                };
            }
        };
        match error.code {
            ErrorCode::Unauthorized if self.token.is_none() => Error::NoToken {
                volume: self.name.clone(),
                url: self.server().to_string(),
            },
            ErrorCode::Unauthorized => Error::Unauthorized {
                url: self.server().to_string(),
                message: error.message,
            },
            ErrorCode::Forbidden => Error::Forbidden {
                scope: match route_of(route).map(|r| r.access) {
                    Some(Access::Token(s)) => s,
                    _ => Scope::Read,
                },
                volume: self.name.clone(),
                message: error.message,
            },
            ErrorCode::PayloadTooLarge => Error::TooLarge {
                what: "the request body".into(),
                url: self.server().to_string(),
                limit: error.message,
            },
            _ => Error::Api { status, error },
        }
    }

    /// A JSON answer of `route`.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        route: RouteId,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let url = self.route_url(route, query).to_string();
        let response = self.send(route, query, |b| b).await?;
        decode(url, response).await
    }

    /// `body` sent as JSON to `route`, its JSON answer.
    async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        route: RouteId,
        body: &B,
    ) -> Result<T> {
        let url = self.route_url(route, &[]).to_string();
        let response = self.send(route, &[], |b| b.json(body)).await?;
        decode(url, response).await
    }

    /// `GET /v1/volumes/{vol}`: identity, limits and statistics.
    pub async fn info(&self) -> Result<t::VolumeInfo> {
        self.get_json(RouteId::VolumeInfo, &[]).await
    }

    /// `GET …/files`: the page-store files of `branch` (or commit id)
    /// whose name starts with `prefix`.
    pub async fn files(&self, prefix: &str, branch: &str) -> Result<t::Files> {
        self.get_json(RouteId::Files, &[("prefix", prefix), ("branch", branch)])
            .await
    }

    /// `GET …/stat`: one tree entry.
    pub async fn stat(&self, path: &str, branch: &str) -> Result<t::Stat> {
        self.get_json(RouteId::Stat, &[("path", path), ("branch", branch)])
            .await
    }

    /// `GET …/list`: one page of a directory, after `after`.
    pub async fn list(&self, path: &str, branch: &str, after: Option<&str>) -> Result<t::ListPage> {
        let mut q = vec![("path", path), ("branch", branch)];
        if let Some(a) = after {
            q.push(("after", a));
        }
        self.get_json(RouteId::List, &q).await
    }

    /// `GET …/file`: a file's bytes, streamed.
    pub async fn read_file(&self, path: &str, branch: &str) -> Result<FileReader> {
        let q = [("path", path), ("branch", branch)];
        let url = self.route_url(RouteId::ReadFile, &q).to_string();
        let response = self.send(RouteId::ReadFile, &q, |b| b).await?;
        let size = response.content_length().ok_or_else(|| Error::Protocol {
            url: url.clone(),
            status: response.status().as_u16(),
            why: "no Content-Length".into(),
        })?;
        Ok(FileReader {
            size,
            got: 0,
            url,
            response,
        })
    }

    /// `PUT …/file`: replaces the file at `path` with what `source`
    /// yields, streamed in chunks. `size`, when known, is checked against
    /// the server's `max_body` (from [`Self::info`], passed as
    /// `max_body`; 0 when unknown) before anything is sent; a source of
    /// unknown size is abandoned as soon as it passes the limit, so the
    /// server stores nothing.
    pub async fn write_file<R>(
        &self,
        path: &str,
        branch: &str,
        source: R,
        size: Option<u64>,
        max_body: u64,
    ) -> Result<t::Written>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let too_large = |what: String| Error::TooLarge {
            what,
            url: self.server().to_string(),
            limit: format!("{max_body} bytes"),
        };
        if let Some(n) = size
            && max_body > 0
            && n > max_body
        {
            return Err(too_large(format!("the file ({n} bytes)")));
        }
        let limit = if max_body > 0 { max_body } else { u64::MAX };
        // The reader's own error is kept aside: reqwest only reports that
        // the body failed.
        let read_error = std::sync::Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
        let seen = read_error.clone();
        let chunks =
            futures_util::stream::unfold((source, 0u64, false), move |(mut source, sent, done)| {
                let seen = seen.clone();
                async move {
                    if done {
                        return None;
                    }
                    let mut buf = vec![0u8; UPLOAD_CHUNK];
                    let result = async {
                        let mut filled = 0;
                        while filled < buf.len() {
                            let n = source.read(&mut buf[filled..]).await?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                        }
                        Ok::<_, std::io::Error>(filled)
                    }
                    .await;
                    match result {
                        Ok(0) => None,
                        Ok(n) if sent + n as u64 > limit => {
                            let e = std::io::Error::other(OverLimit);
                            *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(std::io::Error::other(OverLimit));
                            Some((Err(e), (source, sent, true)))
                        }
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Bytes::from(buf)), (source, sent + n as u64, false)))
                        }
                        Err(e) => {
                            *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(std::io::Error::new(e.kind(), e.to_string()));
                            Some((Err(e), (source, sent, true)))
                        }
                    }
                }
            });
        let q = [("path", path), ("branch", branch)];
        let url = self.route_url(RouteId::WriteFile, &q).to_string();
        let sent = self
            .send(RouteId::WriteFile, &q, |b| {
                let b = b.header(header::CONTENT_TYPE, "application/octet-stream");
                let b = match size {
                    Some(n) => b.header(header::CONTENT_LENGTH, n),
                    None => b,
                };
                b.body(reqwest::Body::wrap_stream(chunks))
            })
            .await;
        let taken = read_error.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (sent, taken) {
            (Ok(response), _) => decode(url, response).await,
            (Err(_), Some(e)) if e.get_ref().is_some_and(|i| i.is::<OverLimit>()) => {
                Err(too_large(format!("the data (more than {max_body} bytes)")))
            }
            (Err(_), Some(source)) => Err(Error::Read { source }),
            (Err(e), None) => Err(e),
        }
    }

    /// `POST …/mkdir`.
    pub async fn mkdir(&self, req: &t::MkdirRequest) -> Result<t::Done> {
        self.post_json(RouteId::Mkdir, req).await
    }

    /// `POST …/rename`.
    pub async fn rename(&self, req: &t::RenameRequest) -> Result<t::Done> {
        self.post_json(RouteId::Rename, req).await
    }

    /// `POST …/remove`.
    pub async fn remove(&self, req: &t::RemoveRequest) -> Result<t::Done> {
        self.post_json(RouteId::Remove, req).await
    }

    /// `GET …/branches`: every branch with what only it holds.
    pub async fn branches(&self) -> Result<t::Branches> {
        self.get_json(RouteId::Branches, &[]).await
    }

    /// `POST …/branches`: a new branch.
    pub async fn create_branch(&self, req: &t::CreateBranchRequest) -> Result<t::Branch> {
        self.post_json(RouteId::CreateBranch, req).await
    }

    /// `POST …/commit`.
    pub async fn commit(&self, req: &t::CommitRequest) -> Result<t::Commit> {
        self.post_json(RouteId::Commit, req).await
    }

    /// `GET …/log`: at most `limit` commits behind `spec`, newest first.
    pub async fn log(&self, spec: &str, limit: u32) -> Result<t::Log> {
        let limit = limit.to_string();
        self.get_json(RouteId::Log, &[("spec", spec), ("limit", &limit)])
            .await
    }

    /// `GET …/diff`.
    pub async fn diff(&self, a: &str, b: &str) -> Result<t::Diff> {
        self.get_json(RouteId::Diff, &[("a", a), ("b", b)]).await
    }

    /// `POST …/merge`.
    pub async fn merge(&self, req: &t::MergeRequest) -> Result<t::Merged> {
        self.post_json(RouteId::Merge, req).await
    }

    /// `POST …/reset`.
    pub async fn reset(&self, req: &t::ResetRequest) -> Result<t::ResetDone> {
        self.post_json(RouteId::Reset, req).await
    }
}

/// The marker of an upload abandoned at the server's limit.
#[derive(Debug, thiserror::Error)]
#[error("the data is larger than the server accepts")]
struct OverLimit;

/// A success answer's JSON body as `T`.
async fn decode<T: DeserializeOwned>(url: String, response: reqwest::Response) -> Result<T> {
    let status = response.status();
    let body = response.bytes().await.map_err(|source| Error::Transport {
        url: url.clone(),
        source,
    })?;
    serde_json::from_slice(&body).map_err(|e| Error::Protocol {
        url,
        status: status.as_u16(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_urls_parse() {
        let v = RemoteVolume::new("http://127.0.0.1:7878/v1/volumes/db/", None);
        assert!(v.as_ref().is_ok_and(|v| v.name() == "db"
            && v.server() == "http://127.0.0.1:7878"
            && v.url() == "http://127.0.0.1:7878/v1/volumes/db"));
        for bad in [
            "http://127.0.0.1:7878/volumes/db",
            "http://127.0.0.1:7878/v1/volumes/",
            "http://127.0.0.1:7878/v1/volumes/a/b",
            "ftp://h/v1/volumes/db",
            "http://h/v1/volumes/db?x=1",
        ] {
            assert!(
                matches!(RemoteVolume::new(bad, None), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
        assert!(is_remote("HTTPS://x") && is_remote("http://x") && !is_remote("./vol"));
    }

    #[test]
    fn urls_carry_the_volume_and_the_query() {
        let v = RemoteVolume::new("https://h:1/v1/volumes/db", Some("t".into()));
        let url =
            v.map(|v| v.route_url(RouteId::ReadFile, &[("path", "/a b"), ("branch", "main")]));
        assert!(
            url.is_ok_and(
                |u| u.as_str() == "https://h:1/v1/volumes/db/file?path=%2Fa+b&branch=main"
            )
        );
    }
}
