//! MQTT over WebSocket (MQTT 5.0 section 6), both sides: the HTTP upgrade with the `mqtt`
//! subprotocol — [`accept`] as a server, [`connect`] as a client — then a bridge between the
//! WebSocket's binary frames and a byte stream ([`BoxStream`]), which MQTT reads and writes as
//! it does a TCP connection.
//!
//! - A server serves one path ([`Options::path`], by default [`DEFAULT_PATH`] `/mqtt`):
//!   another path gets HTTP 404. A client that does not offer the `mqtt` subprotocol gets 400
//!   [MQTT-6.0.0-3]; the response selects `mqtt` [MQTT-6.0.0-4].
//! - A client offers `mqtt` and refuses a server that does not select it
//!   ([`Error::SubprotocolNotSelected`]). Its frames are masked (by tungstenite).
//! - Binary frames only: a text frame closes the connection (close code 1003)
//!   [MQTT-6.0.0-1]. Frame boundaries mean nothing: the payloads are concatenated into the
//!   byte stream, so a packet may span frames and a frame may hold several packets
//!   [MQTT-6.0.0-2].
//! - Pings are answered (by tungstenite); a close frame ends the connection.
//! - What a peer can make the bridge hold is bounded: a frame or message is at most
//!   [`Options::max_message_size`] bytes (larger ones end the connection), and each direction
//!   of the byte stream buffers at most [`BRIDGE_BUFFER`] bytes (then the bridge stops reading
//!   that side, as TCP would).
//!
//! The bridge is a task of its own (spawned with [`tokio::spawn`]: [`accept`] and [`connect`]
//! must run inside a tokio runtime). It ends when either side closes: the peer's close or
//! error is the end of the byte stream; dropping the byte stream (or shutting down its write
//! side) sends the peer a close frame after the last bytes written, within
//! [`CLOSE_FLUSH_TIMEOUT`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{AsyncStream, BoxStream, Error};

/// The path a server serves by default, and a `ws://` or `wss://` endpoint's default path.
pub const DEFAULT_PATH: &str = "/mqtt";
/// The subprotocol [MQTT-6.0.0-3] [MQTT-6.0.0-4].
pub const SUBPROTOCOL: &str = "mqtt";
/// How many bytes each direction of the bridge holds at most (and the most one frame sent
/// carries).
pub const BRIDGE_BUFFER: usize = 64 * 1024;
/// How long the bridge may take to pass on the last bytes and the close frame once the byte
/// stream has been dropped.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The default of [`Options::max_message_size`]: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The WebSocket settings of [`accept`] and [`connect`].
///
/// ```
/// let options = mqtt_transport::websocket::Options::default()
///     .with_path("/ws")
///     .with_max_message_size(1024 * 1024);
/// assert_eq!(options.path, "/ws");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The only path a server ([`accept`]) serves; other paths get HTTP 404. (A client's path
    /// is in the URL given to [`connect`].) Default: [`DEFAULT_PATH`].
    pub path: String,
    /// The largest frame, and the largest message, accepted from the peer; a larger one ends
    /// the connection. Default: [`DEFAULT_MAX_MESSAGE_SIZE`]. (A server sets its maximum
    /// packet size.)
    pub max_message_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.to_owned(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl Options {
    /// These options with the path a server serves.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// These options with the largest frame and message accepted from the peer.
    #[must_use]
    pub fn with_max_message_size(mut self, max_message_size: usize) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// tungstenite's configuration for these options.
    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

/// Performs the server's side of the WebSocket upgrade on `stream` (TCP, or TLS for `wss`),
/// and returns the byte stream of the MQTT connection; a task of its own bridges the two
/// until either side closes.
///
/// # Errors
/// [`Error::WebSocket`]: the handshake's error: not an upgrade, a wrong path (answered 404),
/// no `mqtt` subprotocol offered (answered 400), an I/O error.
pub async fn accept<S: AsyncStream>(stream: S, options: &Options) -> Result<BoxStream, Error> {
    let path = options.path.as_str();
    let check = |request: &Request, response: Response| check_request(path, request, response);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(options.config()))
        .await
        .map_err(|e| Error::WebSocket {
            context: "WebSocket upgrade".to_owned(),
            source: Box::new(e),
        })?;
    Ok(spawn_bridge(ws))
}

/// The upgrade request's checks: the path, and the `mqtt` subprotocol, which the response
/// selects.
#[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
fn check_request(
    path: &str,
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            &format!("MQTT over WebSocket is served on {path} only"),
        ));
    }
    // v5 [MQTT-6.0.0-3] the client offers `mqtt`; [MQTT-6.0.0-4] the server selects it.
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offered {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol `mqtt` must be offered",
        ));
    }
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}

/// An HTTP error response to an upgrade request.
fn refusal(status: StatusCode, text: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{text}\n")));
    *response.status_mut() = status;
    response
}

/// Performs the client's side of the WebSocket upgrade on `stream` (a TCP connection, or a
/// TLS one for `wss`) for `url` (`ws://host:port/path` or `wss://…`: its host and port are
/// the request's `Host`, its path and query the request's target; the connection itself is
/// `stream`), offering the subprotocol `mqtt` [MQTT-6.0.0-3], and returns the byte stream of
/// the MQTT connection; a task of its own bridges the two until either side closes.
/// [`Options::path`] is not used (the path is the URL's).
///
/// # Errors
/// [`Error::WebSocket`] when the URL is not a `ws://` or `wss://` URL, the server refuses the
/// upgrade (its HTTP status is in the message) or the handshake fails;
/// [`Error::SubprotocolNotSelected`] when the server accepts without selecting `mqtt`
/// [MQTT-6.0.0-4].
pub async fn connect<S: AsyncStream>(
    stream: S,
    url: &str,
    options: &Options,
) -> Result<BoxStream, Error> {
    let context = || format!("WebSocket upgrade of {url}");
    let mut request = url.into_client_request().map_err(|e| Error::WebSocket {
        context: context(),
        source: Box::new(e),
    })?;
    // v5 [MQTT-6.0.0-3] the client offers `mqtt`.
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (ws, response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(options.config()))
            .await
            .map_err(|e| match e {
                // tungstenite checks that the response selects one of the offered
                // subprotocols (RFC 6455 section 4.1).
                tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(e)) => {
                    let detail = match e {
                        SubProtocolError::NoSubProtocol => "its response selects none",
                        SubProtocolError::InvalidSubProtocol => "its response selects another one",
                        SubProtocolError::ServerSentSubProtocolNoneRequested => {
                            "its response selects one that was not offered"
                        }
                    };
                    Error::SubprotocolNotSelected {
                        detail: detail.to_owned(),
                    }
                }
                e => Error::WebSocket {
                    context: context(),
                    source: Box::new(e),
                },
            })?;
    // v5 [MQTT-6.0.0-4] the server selects `mqtt` (checked again here: the offer has only it).
    let selected = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if selected.as_deref() != Some(SUBPROTOCOL) {
        return Err(Error::SubprotocolNotSelected {
            detail: selected.map_or_else(
                || "its response selects none".to_owned(),
                |p| format!("its response selects `{p}`"),
            ),
        });
    }
    Ok(spawn_bridge(ws))
}

/// Starts the bridge of `ws` and returns its byte stream.
fn spawn_bridge<S>(ws: WebSocketStream<S>) -> BoxStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (engine_side, bridge_side) = tokio::io::duplex(BRIDGE_BUFFER);
    let (dropped, engine_gone) = oneshot::channel();
    tokio::spawn(bridge(ws, bridge_side, engine_gone));
    Box::new(EngineEnd {
        stream: engine_side,
        _dropped: dropped,
    })
}

/// The engine's end of the bridge (what the MQTT side, the broker's or the client's engine,
/// reads and writes): a byte stream that tells the bridge when the engine lets go of it
/// (drops it), so that a bridge stuck sending to a peer that reads nothing ends too.
struct EngineEnd {
    stream: DuplexStream,
    _dropped: oneshot::Sender<()>,
}

impl AsyncRead for EngineEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for EngineEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Why the bridge ended.
enum Ended {
    /// The peer closed, failed or broke the rules (with the close frame to send it, if any).
    Peer(Option<CloseFrame>),
    /// The engine closed its end.
    Engine,
}

/// Pumps the peer's binary frames into the engine's byte stream, and the engine's bytes into
/// binary frames, each direction on its own (one blocked never stops the other), until
/// either side closes; then closes the WebSocket.
async fn bridge<S>(
    ws: WebSocketStream<S>,
    bridge_side: DuplexStream,
    engine_gone: oneshot::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut frames) = ws.split();
    let (mut from_engine, mut to_engine) = tokio::io::split(bridge_side);
    let ended = {
        let inbound = async {
            while let Some(message) = frames.next().await {
                match message {
                    // v5 [MQTT-6.0.0-2] payloads are concatenated: packets need not be
                    // aligned on frames.
                    Ok(Message::Binary(data)) => {
                        if to_engine.write_all(&data).await.is_err() {
                            return Ended::Engine;
                        }
                    }
                    // v5 [MQTT-6.0.0-1] any other data frame closes the connection.
                    Ok(Message::Text(_)) => {
                        tracing::debug!("WebSocket text frame: connection closed");
                        return Ended::Peer(Some(CloseFrame {
                            code: CloseCode::Unsupported,
                            reason: "MQTT uses binary frames only".into(),
                        }));
                    }
                    Ok(Message::Close(_)) => return Ended::Peer(None),
                    // Pongs answer pings: tungstenite answers the peer's pings itself.
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                    Err(e) => {
                        tracing::debug!("WebSocket: {e}");
                        return Ended::Peer(None);
                    }
                }
            }
            Ended::Peer(None)
        };
        let outbound = async {
            let mut buf = BytesMut::new();
            loop {
                buf.reserve(BRIDGE_BUFFER);
                match from_engine.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let data = buf.split().freeze();
                        if sink.send(Message::Binary(data)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        tokio::pin!(inbound, outbound, engine_gone);
        tokio::select! {
            ended = &mut inbound => ended,
            () = &mut outbound => Ended::Engine,
            _ = &mut engine_gone => {
                // The engine has let go: pass on what it wrote last, for a while.
                let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut outbound).await;
                Ended::Engine
            }
        }
    };
    // The engine's byte stream ends now (its reader sees the end of the stream).
    drop(to_engine);
    drop(from_engine);
    let closing = async {
        if let Ended::Peer(Some(frame)) = ended {
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        // Sends a close frame (unless one was sent) and flushes.
        let _ = sink.close().await;
    };
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, closing).await;
    // Dropping the WebSocket closes the socket.
}
