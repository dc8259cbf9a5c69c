//! TLS (`--tls-listen`, `--wss-listen`): the server's rustls configuration — TLS 1.3 and 1.2 on
//! the `aws-lc-rs` provider (X25519MLKEM768 preferred), the certificate chain and key from PEM files, and optionally client
//! certificates verified against `--client-ca` — and the identity a verified client
//! certificate proves (its subject Common Name).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{ConfigError, Settings};

/// The server's TLS configuration for `settings`, or `None` without a TLS listener.
///
/// # Errors
/// A [`ConfigError`] naming the file (certificate, key, client CA) that cannot be read or
/// used, or whose key does not fit the certificate.
pub(crate) fn server_config(settings: &Settings) -> Result<Option<Arc<ServerConfig>>, ConfigError> {
    if settings.tls_listen.is_none() && settings.wss_listen.is_none() {
        return Ok(None);
    }
    let (Some(cert_path), Some(key_path)) = (&settings.cert, &settings.key) else {
        return Err(ConfigError {
            file: None,
            line: None,
            key: Some("cert".to_owned()),
            message: "a TLS listener needs --cert and --key".to_owned(),
        });
    };
    let certs = load_certs(cert_path, "the certificate")?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| ConfigError::in_file(key_path, None, format!("no usable private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError::in_file(cert_path, None, format!("TLS: {e}")))?;
    let builder = match &settings.client_ca {
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca_path, "the client CA")? {
                roots.add(cert).map_err(|e| {
                    ConfigError::in_file(ca_path, None, format!("not a usable CA certificate: {e}"))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if settings.require_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| ConfigError::in_file(ca_path, None, format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        ConfigError::in_file(
            key_path,
            None,
            format!(
                "the key does not go with the certificate {}: {e}",
                cert_path.display()
            ),
        )
    })?;
    tracing::info!(
        cert = %cert_path.display(),
        client_ca = settings.client_ca.as_ref().map(|p| p.display().to_string()),
        require_certificate = settings.require_certificate,
        "TLS configured"
    );
    Ok(Some(Arc::new(config)))
}

/// The certificates of a PEM file (at least one).
fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let error = |e: rustls_pki_types::pem::Error| {
        ConfigError::in_file(path, None, format!("cannot read {what}: {e}"))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if certs.is_empty() {
        return Err(ConfigError::in_file(
            path,
            None,
            format!("{what}: no CERTIFICATE in the file (PEM expected)"),
        ));
    }
    Ok(certs)
}

/// The subject Common Name of the client certificate that rustls verified for `connection`
/// (`None` without one, or without a Common Name, or an empty one). rustls shows a peer's certificates only
/// once its verifier accepted them, so this is never the name of an untrusted certificate.
pub(crate) fn identity(connection: &rustls::ServerConnection) -> Option<String> {
    let der = connection.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty()).then(|| cn.to_owned())
}
