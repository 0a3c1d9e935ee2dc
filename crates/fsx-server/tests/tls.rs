//! TLS from certificate files: a self-signed certificate for
//! `localhost`/127.0.0.1 made for the test, a client trusting exactly that
//! certificate, plain HTTP on the TLS port, the port released at shutdown,
//! and certificate or key files that cannot be used refused at startup
//! with an error naming the file (never a panic, never a server that
//! starts without TLS).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use fsx_protocol::Scope;
use fsx_server::{ServeConfig, Server, ServerError, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a raw exchange with the server may take before the test gives
/// up: a guard against a hang, not a measurement.
const DEADLINE: Duration = Duration::from_secs(30);

/// A self-signed certificate for `localhost` and 127.0.0.1, written as
/// `cert.pem` and `key.pem` in `dir`; returns the files and the
/// certificate's PEM.
fn self_signed(dir: &Path) -> (TlsFiles, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_pem, key_pem) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, &cert_pem).unwrap();
    std::fs::write(&files.key, key_pem).unwrap();
    (files, cert_pem)
}

/// A client that trusts `cert_pem` and nothing else (no system roots, so
/// a success proves the server presented that certificate).
fn trusting(cert_pem: &str, localhost: Option<SocketAddr>) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    let mut b = reqwest::Client::builder().tls_certs_only([cert]);
    if let Some(addr) = localhost {
        // `localhost` may resolve to ::1 first; the server listens on
        // 127.0.0.1 only.
        b = b.resolve("localhost", addr);
    }
    b.build().unwrap()
}

fn config(vol: &Path, tls: TlsFiles) -> ServeConfig {
    let mut c = ServeConfig::new("127.0.0.1:0".parse().unwrap(), vec![vol.to_path_buf()]);
    c.tls = Some(tls);
    c
}

/// Sends `request` over a plain TCP connection and returns every byte
/// the server sends back before it closes the connection.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut reply = Vec::new();
        // A reset instead of a clean close also ends the exchange.
        let _ = tcp.read_to_end(&mut reply).await;
        reply
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("the server neither answered nor closed the connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_configured_certificate_and_nothing_in_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let read = token(&vol, Scope::Read, 1).await;
    let (files, cert_pem) = self_signed(dir.path());
    let server = Server::start(config(&vol, files)).await.unwrap();
    let addr = server.local_addr();
    assert_eq!(server.url(), format!("https://{addr}"));

    // An authenticated request succeeds, by address and by name (both are
    // in the certificate).
    for (url, client) in [
        (server.url(), trusting(&cert_pem, None)),
        (
            format!("https://localhost:{}", addr.port()),
            trusting(&cert_pem, Some(addr)),
        ),
    ] {
        let r = client
            .get(format!("{url}/v1/volumes/vol"))
            .bearer_auth(&read)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET over {url}: {e:?}"));
        assert_eq!(r.status(), 200, "{url}");
        let info: serde_json::Value = r.json().await.unwrap();
        assert_eq!(info["name"], "vol", "{info}");
        // Authentication is the same over TLS: no token, no volume.
        let r = client
            .get(format!("{url}/v1/volumes/vol"))
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (401, "unauthorized".into()));
    }

    // A client that trusts another certificate refuses this server: the
    // connection above was verified, not merely encrypted.
    let other =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let r = trusting(&other.cert.pem(), None)
        .get(format!("{}/healthz", server.url()))
        .send()
        .await;
    assert!(r.is_err(), "an untrusted certificate was accepted: {r:?}");

    // Plain HTTP to the TLS port: no HTTP answer at all (the handshake
    // fails and the connection is closed), neither raw nor through a
    // client.
    let request = format!(
        "GET /v1/volumes/vol HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {read}\r\n\
         Connection: close\r\n\r\n"
    );
    let reply = raw_exchange(addr, request.as_bytes()).await;
    assert!(
        !reply.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        !String::from_utf8_lossy(&reply).contains("\"name\""),
        "plain HTTP got the volume's information"
    );
    let r = client()
        .get(format!("http://{addr}/v1/volumes/vol"))
        .bearer_auth(&read)
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP got an answer: {r:?}");

    // The failed handshakes hurt no one: HTTPS still works.
    let r = trusting(&cert_pem, None)
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Shutdown releases the port: nothing accepts connections there
    // (or completes handshakes) once `shutdown` has returned.
    server.shutdown().await.unwrap();
    let after = tokio::net::TcpStream::connect(addr).await;
    assert!(
        after.is_err(),
        "the TLS port still accepts connections after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_certificate_or_key_files_fail_the_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let vol = make_volume(&dir.path().join("vol"), None).await;
    let (good, _) = self_signed(dir.path());
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let (other, _) = self_signed(&other_dir);
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let garbage = write("garbage.pem", "this is not PEM\n");
    let empty = write("empty.pem", "");
    let bad_base64 = write(
        "bad-base64.pem",
        "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
    );
    let bad_der = write(
        "bad-der.pem",
        "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
    );
    let missing = dir.path().join("missing.pem");

    // (certificate, key, a word the error must contain besides the files)
    let cases: Vec<(&Path, &Path, &str)> = vec![
        (&missing, &good.key, "certificate"),
        (&good.cert, &missing, "key"),
        (&garbage, &good.key, "certificate"),
        (&empty, &good.key, "certificate"),
        (&bad_base64, &good.key, "certificate"),
        (&good.cert, &garbage, "key"),
        (&good.cert, &empty, "key"),
        (&good.cert, &bad_der, "key"),
        // Both files swapped: a key where the certificate belongs.
        (&good.key, &good.cert, "certificate"),
        // A valid key, but not the certificate's.
        (&good.cert, &other.key, "key"),
    ];
    for (cert, key, word) in cases {
        let files = TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };
        let err = match Server::start(config(&vol, files)).await {
            Ok(server) => {
                server.shutdown().await.unwrap();
                panic!("started with certificate {cert:?} and key {key:?}");
            }
            Err(e) => e,
        };
        let text = err.to_string();
        assert!(
            matches!(err, ServerError::Tls { .. }),
            "{cert:?} {key:?}: not a TLS error: {text}"
        );
        for p in [cert, key] {
            assert!(text.contains(&p.display().to_string()), "{text}");
        }
        assert!(text.to_lowercase().contains(word), "{text}");
    }
}
