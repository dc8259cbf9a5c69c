//! What the tests share: a directory per test, a test PKI made with rcgen at test time (a CA,
//! a server certificate for `localhost` and 127.0.0.1, a client certificate), servers of each
//! transport built from the crate's own `websocket::accept` and a tokio-rustls acceptor, and
//! payloads to exchange.
#![allow(dead_code)]

#[path = "pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mqtt_transport::rustls;
use mqtt_transport::{BoxStream, websocket};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long any one step may take.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// A fresh, empty directory for one test (under the target directory; removed when dropped).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("transport-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test PKI, as PEM files in a directory: `ca.pem`, `server.pem` + `server-key.pem`
/// (`localhost`, 127.0.0.1, ::1), `client.pem` + `client-key.pem` (Common Name `client`), and
/// a self-signed `untrusted.pem` + `untrusted-key.pem`.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
}

impl Pki {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: pki::write(dir),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A server configuration with the certificate `name` (`server` or `untrusted`),
    /// requiring a client certificate the test CA signed when `require_client_certificate`.
    pub(crate) fn server_config(
        &self,
        name: &str,
        require_client_certificate: bool,
    ) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap();
        let builder = if require_client_certificate {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain = CertificateDer::pem_file_iter(self.path(&format!("{name}.pem")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}-key.pem"))).unwrap();
        Arc::new(builder.with_single_cert(chain, key).unwrap())
    }

    pub(crate) fn acceptor(&self, require_client_certificate: bool) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config("server", require_client_certificate))
    }
}

/// Which transport a test server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

/// A listener on 127.0.0.1 (port chosen by the system).
pub(crate) async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts one connection of `kind` (with `tls` for `Tls` and `Wss`, and the WebSocket
/// `options` for `Ws` and `Wss`): the byte stream after the handshakes, or the error of one.
pub(crate) async fn accept(
    listener: &TcpListener,
    kind: Kind,
    tls: Option<&TlsAcceptor>,
    options: &websocket::Options,
) -> Result<BoxStream, String> {
    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
    match kind {
        Kind::Tcp => Ok(Box::new(tcp)),
        Kind::Tls => {
            let tls = tls.unwrap().accept(tcp).await.map_err(|e| e.to_string())?;
            Ok(Box::new(tls))
        }
        Kind::Ws => websocket::accept(tcp, options)
            .await
            .map_err(|e| e.to_string()),
        Kind::Wss => {
            let tls = tls.unwrap().accept(tcp).await.map_err(|e| e.to_string())?;
            websocket::accept(tls, options)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// `len` bytes that differ from one position and one `seed` to another.
pub(crate) fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Writes `send` and reads `expect.len()` bytes on `stream` at the same time (neither waits
/// for the other: each side's buffers are bounded), and checks that they are `expect`.
pub(crate) async fn exchange(stream: &mut BoxStream, send: &[u8], expect: &[u8]) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        writer.write_all(send).await.unwrap();
        writer.flush().await.unwrap();
    };
    let read = async {
        let mut got = vec![0; expect.len()];
        reader.read_exact(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::time::timeout(STEP, async { tokio::join!(write, read) })
        .await
        .expect("the exchange took too long");
    assert!(
        got == expect,
        "{} bytes received differ from those sent",
        got.len()
    );
}

/// Reads until the end of `stream` (within [`STEP`]): what came before it.
pub(crate) async fn read_to_end(stream: &mut BoxStream) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut got))
        .await
        .expect("the stream did not end")?;
    Ok(got)
}
