//! TLS for clients (`mqtts://`, `wss://`): a rustls client configuration — TLS 1.3 and 1.2 on
//! the `aws-lc-rs` provider (X25519MLKEM768 preferred), trusting the operating system's roots
//! and/or CA certificates from PEM files, optionally with a client certificate (mutual TLS) —
//! and the handshake on a connected stream.
//!
//! ```no_run
//! use mqtt_transport::tls;
//!
//! # async fn example() -> Result<(), mqtt_transport::Error> {
//! let config = tls::ClientConfigBuilder::new()
//!     .with_ca_file("ca.pem")
//!     .with_client_certificate("client.pem", "client-key.pem")
//!     .build()?;
//! let tcp = tokio::net::TcpStream::connect("broker.example:8883")
//!     .await
//!     .map_err(|e| mqtt_transport::Error::Io { context: "connect".into(), source: e })?;
//! let stream = tls::connect(tcp, "broker.example", config).await?;
//! # drop(stream);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Error;

/// A client's TLS connection over `S` (by default a TCP connection).
pub type TlsStream<S = TcpStream> = tokio_rustls::client::TlsStream<S>;

/// Builds a client's TLS configuration from the roots it trusts and its certificate.
///
/// What is trusted: the operating system's roots ([`with_system_roots`]) and/or the CA
/// certificates of PEM files ([`with_ca_file`]); with neither, the system's roots.
///
/// [`with_system_roots`]: ClientConfigBuilder::with_system_roots
/// [`with_ca_file`]: ClientConfigBuilder::with_ca_file
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientConfigBuilder {
    system_roots: bool,
    ca_files: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
}

impl ClientConfigBuilder {
    /// A builder that trusts the system's roots unless told otherwise, without a client
    /// certificate.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the operating system's root certificates (as well as any CA file given).
    #[must_use]
    pub fn with_system_roots(mut self) -> Self {
        self.system_roots = true;
        self
    }

    /// Trusts the CA certificates of the PEM file `path` (every `CERTIFICATE` in it; at least
    /// one). May be given more than once.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Authenticates with a client certificate (mutual TLS): its chain (the certificate first,
    /// then any intermediates) and its private key (PKCS #8, PKCS #1 or SEC1), each from a PEM
    /// file.
    #[must_use]
    pub fn with_client_certificate(
        mut self,
        chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some((chain.into(), key.into()));
        self
    }

    /// Reads the files (and the system's store) and builds the configuration. This blocks on
    /// file reads: in async code, call it once at start-up or on a blocking thread.
    ///
    /// # Errors
    /// [`Error::InvalidFile`] naming a file that cannot be read, holds no certificate or key,
    /// holds a CA certificate that cannot be used, or a key that does not go with the client
    /// certificate; [`Error::NoRootCertificates`] when the system's roots are to be trusted and
    /// none load.
    pub fn build(&self) -> Result<Arc<ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        if self.system_roots || self.ca_files.is_empty() {
            add_system_roots(&mut roots)?;
        }
        for path in &self.ca_files {
            for cert in load_certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| Error::file(path, format!("not a usable CA certificate: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Tls {
                context: "TLS configuration".to_owned(),
                source: Box::new(e),
            })?
            .with_root_certificates(roots);
        let config = match &self.client_certificate {
            Some((chain_path, key_path)) => {
                let chain = load_certificates(chain_path)?;
                let key = load_private_key(key_path)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::file(
                        key_path,
                        format!(
                            "the key does not go with the certificate {}: {e}",
                            chain_path.display()
                        ),
                    )
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// Adds the operating system's root certificates to `roots`.
fn add_system_roots(roots: &mut RootCertStore) -> Result<(), Error> {
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let message = if found.errors.is_empty() {
            "none found (give a CA file instead)".to_owned()
        } else {
            found
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(Error::NoRootCertificates { message });
    }
    Ok(())
}

/// The certificates of the PEM file `path`, in order (at least one).
///
/// # Errors
/// [`Error::InvalidFile`]: the file cannot be read, is not PEM, or holds no `CERTIFICATE`.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let error = |e: rustls_pki_types::pem::Error| {
        Error::file(path, format!("cannot read certificates: {e}"))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if certs.is_empty() {
        return Err(Error::file(
            path,
            "no CERTIFICATE in the file (PEM expected)",
        ));
    }
    Ok(certs)
}

/// The first private key of the PEM file `path` (PKCS #8, PKCS #1 or SEC1).
///
/// # Errors
/// [`Error::InvalidFile`]: the file cannot be read or holds no private key.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Error::file(path, format!("no usable private key (PEM expected): {e}")))
}

/// The TLS handshake as a client on `stream` (a connected TCP stream, usually), verifying the
/// server's certificate for `server_name` — a DNS name, or an IP address (an IPv6 one with or
/// without its brackets) — with `config`.
///
/// # Errors
/// [`Error::Tls`]: `server_name` is neither a DNS name nor an IP address, or the handshake
/// failed (the server's certificate is not trusted or not for `server_name`, the server
/// refused the client's certificate or wanted one, the connection broke). In TLS 1.3 the
/// client's side of the handshake ends before the server has checked the client's
/// certificate: a server's refusal of it is then the error of the first read.
pub async fn connect<S>(
    stream: S,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bare = server_name
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(server_name);
    let name = ServerName::try_from(bare.to_owned()).map_err(|e| Error::Tls {
        context: format!("TLS server name `{server_name}`"),
        source: Box::new(e),
    })?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| Error::Tls {
            context: format!("TLS handshake with {server_name}"),
            source: Box::new(e),
        })
}
