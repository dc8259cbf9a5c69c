//! The transports: every listener turns what it accepts into an [`Accepted`] connection — a
//! byte stream (any `AsyncRead + AsyncWrite`) with what is known of its peer — so that the
//! engine side is the same for all of them.
//!
//! A listener's accept loop only accepts; anything slow (a handshake) runs in a task of its
//! own, bounded in time, so one slow or hostile peer never delays the others.

use std::net::SocketAddr;
use std::time::Duration;

use mqtt_session::broker::ConnectionInfo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::engine::Input;

/// A connection's byte stream, whatever the transport.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A boxed [`Transport`].
pub(crate) type Stream = Box<dyn Transport>;

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
pub(crate) async fn accept_tcp(listener: TcpListener, inputs: mpsc::Sender<Input>) {
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
