//! [`Error`]: why a transport could not be set up.

use std::path::PathBuf;
use std::time::Duration;

/// A boxed error of one of the libraries underneath (rustls, tungstenite): its message is
/// part of [`Error`]'s, and it stays reachable through [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a connection could not be made or accepted, or a TLS configuration built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket could not be used: the name did not resolve, the connection was refused, the
    /// peer closed during a handshake.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (for example `connect to broker.example:1883`).
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted or mismatched server certificate, a client
    /// certificate the server refused), or a TLS setting cannot be used (a server name that
    /// is not a DNS name or an IP address).
    #[error("{context}: {source}")]
    Tls {
        /// What was being done.
        context: String,
        /// rustls' error (usually a [`rustls::Error`] inside a [`std::io::Error`]).
        #[source]
        source: BoxError,
    },
    /// No trusted root certificate could be loaded from the operating system's store.
    #[error("TLS: no trusted root certificates in the system store: {message}")]
    NoRootCertificates {
        /// What was found instead (the errors of the store, if any).
        message: String,
    },
    /// A certificate or private key file cannot be read or used.
    #[error("{}: {message}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The WebSocket upgrade failed: not an upgrade, refused by the server (its HTTP status is
    /// in the message), or refused by this side (a wrong path, no `mqtt` subprotocol).
    #[error("{context}: {source}")]
    WebSocket {
        /// What was being done.
        context: String,
        /// tungstenite's error.
        #[source]
        source: BoxError,
    },
    /// The WebSocket server accepted the upgrade without selecting the subprotocol `mqtt`
    /// that the client offered (v5 [MQTT-6.0.0-4]).
    #[error(
        "the WebSocket server did not select the subprotocol `mqtt` ({detail}): not an MQTT \
         server, or not its MQTT path"
    )]
    SubprotocolNotSelected {
        /// What the server answered instead (no subprotocol, or another one).
        detail: String,
    },
    /// An endpoint string (`mqtts://host:8883`, …) that cannot be used.
    #[error("invalid endpoint `{input}`: {reason}")]
    InvalidEndpoint {
        /// The string.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting (with the handshakes) took longer than allowed.
    #[error("{context}: timed out after {after:?}")]
    Timeout {
        /// What was being done.
        context: String,
        /// The time allowed.
        after: Duration,
    },
}

impl Error {
    /// An [`Error::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::InvalidFile`].
    pub(crate) fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self::InvalidFile {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
