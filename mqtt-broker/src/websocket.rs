//! MQTT over WebSocket (`--ws-listen`, `--wss-listen`; MQTT 5.0 section 6): the HTTP upgrade
//! on path `/mqtt` with the `mqtt` subprotocol, then a bridge between the WebSocket's binary
//! frames and a byte stream, which the engine reads and writes as it does a TCP connection.
//!
//! - Only `/mqtt` is served: another path gets HTTP 404. A client that does not offer the
//!   `mqtt` subprotocol gets 400 [MQTT-6.0.0-3]; the response selects `mqtt` [MQTT-6.0.0-4].
//! - Binary frames only: a text frame closes the connection (close code 1003)
//!   [MQTT-6.0.0-1]. Frame boundaries mean nothing: the payloads are concatenated into the
//!   byte stream, so a packet may span frames and a frame may hold several packets
//!   [MQTT-6.0.0-2].
//! - Pings are answered (by tungstenite); a close frame ends the connection.
//! - What a peer can make the bridge hold is bounded: a frame or message is at most the
//!   broker's maximum packet size (larger ones end the connection), and each direction of the
//!   byte stream buffers at most [`BRIDGE_BUFFER`] bytes (then the bridge stops reading that
//!   side, as TCP would).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::transport::Stream;

/// The only path served.
pub(crate) const PATH: &str = "/mqtt";
/// The subprotocol [MQTT-6.0.0-3] [MQTT-6.0.0-4].
const SUBPROTOCOL: &str = "mqtt";
/// How many bytes each direction of the bridge holds at most.
pub(crate) const BRIDGE_BUFFER: usize = 64 * 1024;
/// How long the bridge may take to pass on the engine's last bytes and the close frame once
/// the engine has let go of the connection.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// Performs the WebSocket upgrade on `stream` (TCP, or TLS for `wss`), and returns the byte
/// stream the engine uses; a task of its own bridges the two until either side closes.
///
/// # Errors
/// The handshake's error: not an upgrade, a wrong path, no `mqtt` subprotocol, an I/O error.
pub(crate) async fn accept<S>(stream: S, max_size: usize) -> Result<Stream, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_size))
        .max_frame_size(Some(max_size));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check_request, Some(config))
        .await?;
    let (engine_side, bridge_side) = tokio::io::duplex(BRIDGE_BUFFER);
    let (dropped, engine_gone) = oneshot::channel();
    tokio::spawn(bridge(ws, bridge_side, engine_gone));
    Ok(Box::new(EngineEnd {
        stream: engine_side,
        _dropped: dropped,
    }))
}

/// The upgrade request's checks: the path, and the `mqtt` subprotocol, which the response
/// selects.
#[allow(clippy::result_large_err)] // the callback's signature is tungstenite's
fn check_request(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != PATH {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            "MQTT over WebSocket is served on /mqtt only",
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

/// The engine's end of the bridge: a byte stream that tells the bridge when the engine lets go
/// of it (drops it), so that a bridge stuck sending to a peer that reads nothing ends too.
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
                let _ = tokio::time::timeout(CLOSE_FLUSH, &mut outbound).await;
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
    let _ = tokio::time::timeout(CLOSE_FLUSH, closing).await;
    // Dropping the WebSocket closes the socket.
}

/// What [`replay`] saw: the bytes the engine's byte stream received, and what was sent back to
/// the client (the HTTP response, then frames).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Replay {
    /// Whether the upgrade was accepted (the bridge ran).
    pub upgraded: bool,
    /// Every byte the engine read from its end of the bridge, in order.
    pub to_engine: Vec<u8>,
    /// Everything written back to the client.
    pub to_client: Vec<u8>,
}

/// For the `websocket` fuzz target and its replay test: runs the broker's upgrade and bridge
/// (the same code as a `--ws-listen` connection, frames and messages at most `max_size`
/// bytes) on a client that sends `request` (the HTTP upgrade request), waits for the
/// upgrade, sends `frames`, and ends its stream; returns what the engine and the client
/// received. (A client may not send frames before the upgrade's response: bytes after the
/// request in the same read are refused.) The engine's side reads until the bridge ends it
/// and writes nothing.
#[doc(hidden)]
#[must_use]
pub fn replay(request: &[u8], frames: &[u8], max_size: usize) -> Replay {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return Replay::default();
    };
    runtime.block_on(async {
        // Large enough that neither side ever waits for the other to read.
        let room = (request.len() + frames.len()).max(BRIDGE_BUFFER) * 4 + 4096;
        let (mut peer, server) = tokio::io::duplex(room);
        let _ = peer.write_all(request).await;
        if frames.is_empty() {
            let _ = peer.shutdown().await;
        }
        let mut out = Replay::default();
        if let Ok(mut engine) = accept(server, max_size).await {
            out.upgraded = true;
            if !frames.is_empty() {
                let _ = peer.write_all(frames).await;
                let _ = peer.shutdown().await;
            }
            let _ = engine.read_to_end(&mut out.to_engine).await;
            drop(engine);
        }
        let _ = tokio::time::timeout(CLOSE_FLUSH * 2, peer.read_to_end(&mut out.to_client)).await;
        out
    })
}
