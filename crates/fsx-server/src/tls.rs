//! TLS from PEM files: an [`axum::serve::Listener`] that accepts TCP
//! connections and completes their handshakes.
//!
//! Handshakes run in tasks of their own (a slow or silent client must not
//! hold up the next accept), bounded in time; a failed one is logged at
//! debug level and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::{ServerError, TlsFiles};

/// Longest time a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    let fail = |why: String| ServerError::Tls {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| fail(format!("reading the certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("reading the certificate: {e}")))?;
    if certs.is_empty() {
        return Err(fail("the certificate file holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| fail(format!("reading the key: {e}")))?;
    // The provider is named rather than taken from the process default:
    // `ServerConfig::builder()` panics when more than one provider is
    // compiled in (a dependency enabling rustls's `ring` would do it) and
    // none was installed.
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS connections from a TCP listener.
///
/// The TCP listener is owned here, not by a background task: when axum
/// drops this listener at the start of a graceful shutdown, the port is
/// closed at once, as it is without TLS. (A task of its own would keep
/// accepting, and completing handshakes, until its next accept noticed.)
pub(crate) struct TlsListener {
    listener: TcpListener,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    /// Handshake tasks send finished connections here; the sender is kept
    /// so that `ready` never ends while the listener lives.
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        Self {
            listener,
            addr,
            acceptor,
            tx,
            ready,
        }
    }

    /// Starts the handshake of a new TCP connection in a task of its own.
    fn handshake(&self, tcp: TcpStream, peer: SocketAddr) {
        let (acceptor, ready) = (self.acceptor.clone(), self.tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                // A send fails only once the listener is gone (shutdown):
                // the connection is then dropped.
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Cancel-safe, as axum needs (it drops this future when shutdown
        // begins): both awaits are, and a handshake is started without
        // awaiting anything.
        loop {
            tokio::select! {
                Some(c) = self.ready.recv() => return c,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => self.handshake(tcp, peer),
                    Err(e) => {
                        // Out of descriptors and the like: the next accept
                        // may work once connections close.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::task::yield_now().await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
