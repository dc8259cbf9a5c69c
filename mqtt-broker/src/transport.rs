//! The transports: every listener turns what it accepts into an [`Accepted`] connection — a
//! byte stream (any `AsyncRead + AsyncWrite`) with what is known of its peer — so that the
//! engine side is the same for all of them.
//!
//! A listener's accept loop only accepts; anything slow (a handshake) runs in a task of its
//! own, bounded in time, so one slow or hostile peer never delays the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqtt_session::broker::ConnectionInfo;
use mqtt_transport::websocket;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::engine::Input;
use crate::inputs::InputTx;
use crate::{BoxError, tls};

/// How long a connection's TLS and WebSocket handshakes may take together.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many handshakes of one listener may be under way at once: beyond, its accept loop waits
/// for one to end (a flood of handshakes costs bounded memory).
const MAX_HANDSHAKES: usize = 1024;

/// A connection's byte stream, whatever the transport (mqtt-transport's).
pub(crate) type Stream = mqtt_transport::BoxStream;

/// A connection ready for MQTT.
pub(crate) struct Accepted {
    /// Its bytes.
    pub(crate) stream: Stream,
    /// The peer's address and, over TLS with a client certificate, its identity.
    pub(crate) info: ConnectionInfo,
    /// Which listener: `tcp`, `tls`, `ws` or `wss` (for the logs).
    pub(crate) transport: &'static str,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("info", &self.info)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Accepts TCP connections and hands each to the engine.
pub(crate) async fn accept_tcp(listener: TcpListener, inputs: InputTx) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, "TCP_NODELAY: {e}");
                }
                let accepted = Accepted {
                    stream: Box::new(stream),
                    info: ConnectionInfo::from_peer(peer),
                    transport: "tcp",
                };
                if inputs.send(Input::Accepted(accepted)).await.is_err() {
                    return;
                }
            }
            Err(e) => accept_failed(&e).await,
        }
    }
}

/// A listener whose connections need a handshake before MQTT.
#[derive(Clone)]
pub(crate) enum Handshake {
    /// TLS (`--tls-listen`).
    Tls(TlsAcceptor),
    /// WebSocket (`--ws-listen`) on `/mqtt`, frames and messages of at most the maximum
    /// packet size.
    Ws(websocket::Options),
    /// WebSocket over TLS (`--wss-listen`).
    Wss(TlsAcceptor, websocket::Options),
}

impl Handshake {
    /// The transport's name, for the logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Tls(_) => "tls",
            Self::Ws(_) => "ws",
            Self::Wss(..) => "wss",
        }
    }
}

/// Accepts connections and does each one's handshake in a task of its own, bounded by
/// [`HANDSHAKE_TIMEOUT`]: a peer that fails it (plaintext on a TLS port, an untrusted client
/// certificate, a wrong WebSocket path) or stalls loses its own connection only. The connections
/// whose handshake succeeds are handed to the engine.
pub(crate) async fn accept_with_handshake(
    listener: TcpListener,
    handshake: Handshake,
    inputs: InputTx,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, "TCP_NODELAY: {e}");
                }
                let handshake = handshake.clone();
                let inputs = inputs.clone();
                tokio::spawn(async move {
                    let transport = handshake.name();
                    let result =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake.run(stream, peer)).await;
                    drop(permit);
                    match result {
                        Ok(Ok(accepted)) => {
                            let _ = inputs.send(Input::Accepted(accepted)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, transport, "handshake failed: {e}"),
                        Err(_) => tracing::info!(%peer, transport, "handshake timed out"),
                    }
                });
            }
            Err(e) => accept_failed(&e).await,
        }
    }
}

impl Handshake {
    /// The handshake(s) on a new connection from `peer`.
    async fn run(self, stream: TcpStream, peer: SocketAddr) -> Result<Accepted, BoxError> {
        let transport = self.name();
        let info = ConnectionInfo::from_peer(peer);
        let (stream, info): (Stream, _) = match self {
            Self::Tls(acceptor) => {
                let stream = acceptor.accept(stream).await?;
                let info = with_identity(info, stream.get_ref().1);
                (Box::new(stream), info)
            }
            Self::Ws(options) => (websocket::accept(stream, &options).await?, info),
            Self::Wss(acceptor, options) => {
                let stream = acceptor.accept(stream).await?;
                let info = with_identity(info, stream.get_ref().1);
                (websocket::accept(stream, &options).await?, info)
            }
        };
        Ok(Accepted {
            stream,
            info,
            transport,
        })
    }
}

/// `info` with the identity of the client certificate that the TLS handshake verified, if any.
fn with_identity(info: ConnectionInfo, connection: &rustls::ServerConnection) -> ConnectionInfo {
    match tls::identity(connection) {
        Some(identity) => info.with_tls_identity(identity),
        None => info,
    }
}

/// After a failed `accept` (for example too many open files): wait a little rather than spin.
pub(crate) async fn accept_failed(e: &std::io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The address a listener is bound to.
pub(crate) fn local_addr(listener: &TcpListener) -> Result<SocketAddr, crate::Error> {
    listener.local_addr().map_err(|source| crate::Error::Io {
        context: "the listener's address".to_owned(),
        source,
    })
}
