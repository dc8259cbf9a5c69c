//! MQTT over WebSocket (`--ws-listen`, `--wss-listen`; MQTT 5.0 section 6): the upgrade and the
//! bridge are mqtt-transport's [`websocket::accept`] (on path `/mqtt`, frames and messages of
//! at most the maximum packet size); here is the harness that replays them for the
//! `websocket` fuzz target.

use mqtt_transport::websocket::{self, BRIDGE_BUFFER, CLOSE_FLUSH_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let options = websocket::Options::default().with_max_message_size(max_size);
    runtime.block_on(async {
        // Large enough that neither side ever waits for the other to read.
        let room = (request.len() + frames.len()).max(BRIDGE_BUFFER) * 4 + 4096;
        let (mut peer, server) = tokio::io::duplex(room);
        let _ = peer.write_all(request).await;
        if frames.is_empty() {
            let _ = peer.shutdown().await;
        }
        let mut out = Replay::default();
        if let Ok(mut engine) = websocket::accept(server, &options).await {
            out.upgraded = true;
            if !frames.is_empty() {
                let _ = peer.write_all(frames).await;
                let _ = peer.shutdown().await;
            }
            let _ = engine.read_to_end(&mut out.to_engine).await;
            drop(engine);
        }
        let _ = tokio::time::timeout(
            CLOSE_FLUSH_TIMEOUT * 2,
            peer.read_to_end(&mut out.to_client),
        )
        .await;
        out
    })
}
