//! Following a volume's change feed: pages of `GET …/changes`, and the
//! `GET …/watch` WebSocket ([`Watcher`]), over `ws://` or `wss://` (the
//! same trust as the HTTP calls: the platform's certificate verifier).
//!
//! A [`Watcher`] yields the server's events in order; when the server
//! closes the socket for a reason the client can act on (it read too
//! slowly, the server is stopping, the cursor is too old), the error says
//! which, and the caller resumes with `since` = the last change it
//! handled.

use std::sync::Arc;

use fsx_protocol::RouteId;
use fsx_protocol::feed::{CLOSE_GONE, ChangesPage, WatchEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{Error, RemoteVolume, Result};

/// A transport a WebSocket runs over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The `…/watch` WebSocket of one volume.
pub struct Watcher {
    ws: WebSocketStream<Box<dyn Io>>,
    url: String,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn ws_error(url: &str, e: tungstenite::Error) -> Error {
    Error::WebSocket {
        url: url.to_string(),
        why: e.to_string(),
    }
}

impl RemoteVolume {
    /// `GET …/changes`: the changes after `since`, at most `limit`, with
    /// their paths when `paths`.
    pub async fn changes(&self, since: u64, limit: u32, paths: bool) -> Result<ChangesPage> {
        let (since, limit) = (since.to_string(), limit.to_string());
        let paths = if paths { "true" } else { "false" };
        self.get_json(
            RouteId::Changes,
            &[("since", &since), ("limit", &limit), ("paths", paths)],
        )
        .await
    }

    /// Opens `GET …/watch`: the changes after `since` (default: from
    /// now), then each new one.
    pub async fn watch(&self, since: Option<u64>, paths: bool) -> Result<Watcher> {
        let since = since.map(|s| s.to_string());
        let mut query = vec![("paths", if paths { "true" } else { "false" })];
        if let Some(s) = &since {
            query.push(("since", s));
        }
        let mut url = self.route_url(RouteId::Watch, &query);
        let tls = url.scheme() == "https";
        // Only the scheme changes: the URL was built from an http(s) one.
        let _ = url.set_scheme(if tls { "wss" } else { "ws" });
        let shown = url.to_string();
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let mut request = shown
            .as_str()
            .into_client_request()
            .map_err(|e| ws_error(&shown, e))?;
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::WebSocket {
                    url: shown.clone(),
                    why: "the token holds characters a header cannot carry".into(),
                }
            })?;
            request.headers_mut().insert("authorization", value);
        }
        let unreachable = |e: std::io::Error| Error::WebSocket {
            url: shown.clone(),
            why: format!("no fsx server answers: {e}"),
        };
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if tls {
            use rustls_platform_verifier::ConfigVerifierExt;
            let config =
                tokio_rustls::rustls::ClientConfig::with_platform_verifier().map_err(|e| {
                    Error::WebSocket {
                        url: shown.clone(),
                        why: format!("TLS cannot be set up: {e}"),
                    }
                })?;
            let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                Error::WebSocket {
                    url: shown.clone(),
                    why: format!("{host:?} is not a TLS server name: {e}"),
                }
            })?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            Box::new(connector.connect(name, tcp).await.map_err(unreachable)?)
        } else {
            Box::new(tcp)
        };
        match tokio_tungstenite::client_async(request, io).await {
            Ok((ws, _)) => Ok(Watcher { ws, url: shown }),
            Err(tungstenite::Error::Http(response)) => {
                // The server's JSON error, as for any other call.
                let status = response.status().as_u16();
                let body = response.body().clone().unwrap_or_default();
                Err(self.decode_failure(RouteId::Watch, &shown, status, &body))
            }
            Err(e) => Err(ws_error(&shown, e)),
        }
    }
}

impl Watcher {
    /// The next event; `None` once the server closed the socket normally
    /// or the client called [`Watcher::close`]. A close for a reason the
    /// caller acts on is an [`Error::WatchClosed`] with the server's code.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>> {
        loop {
            let Some(msg) = self.ws.next().await else {
                return Ok(None);
            };
            match msg.map_err(|e| ws_error(&self.url, e))? {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map(Some).map_err(|e| {
                        Error::WebSocket {
                            url: self.url.clone(),
                            why: format!("the server sent a message that is not the fsx feed: {e}"),
                        }
                    });
                }
                Message::Close(frame) => {
                    let Some(frame) = frame else {
                        return Ok(None);
                    };
                    let code = u16::from(frame.code);
                    if frame.code == CloseCode::Normal {
                        return Ok(None);
                    }
                    return Err(Error::WatchClosed {
                        url: self.url.clone(),
                        code,
                        reason: frame.reason.to_string(),
                        gone: code == CLOSE_GONE,
                    });
                }
                // Pings are answered by the WebSocket layer while reading.
                _ => {}
            }
        }
    }

    /// Sends a message the protocol does not expect (for tests of the
    /// server's defences).
    #[doc(hidden)]
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| ws_error(&self.url, e))
    }

    /// Closes the socket normally.
    pub async fn close(mut self) -> Result<()> {
        match self.ws.close(None).await {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Ok(()),
            Err(e) => Err(ws_error(&self.url, e)),
        }
    }
}
