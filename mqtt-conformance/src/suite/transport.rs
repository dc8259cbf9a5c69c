//! The network transports of chapter 6 (WebSocket) and TLS: the subprotocol the broker
//! selects, text frames refused, packets not aligned on frame boundaries, and a CONNECT over
//! TLS.

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use mqtt_codec::{Decoder, Packet, PacketType, ReasonCode, SubscriptionOptions};
use mqtt_transport::{ConnectOptions, Endpoint};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::TestCase;
use crate::conn::{brief, malformed};
use crate::ctx::{Ctx, qos, subscribe};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "transport.websocket_subprotocol",
            ["MQTT-6.0.0-4"],
            "the WebSocket handshake offering `mqtt` is answered with the subprotocol `mqtt`",
            [WebSocket],
            false,
            websocket_subprotocol
        ),
        case!(
            v311,
            "transport.websocket_subprotocol",
            ["MQTT-6.0.0-4"],
            "the WebSocket handshake offering `mqtt` is answered with the subprotocol `mqtt`",
            [WebSocket],
            false,
            websocket_subprotocol
        ),
        case!(
            v5,
            "transport.websocket_text_frame",
            ["MQTT-6.0.0-1"],
            "a CONNECT in a WebSocket text frame closes the connection",
            [WebSocket],
            false,
            websocket_text_frame
        ),
        case!(
            v311,
            "transport.websocket_text_frame",
            ["MQTT-6.0.0-1"],
            "a CONNECT in a WebSocket text frame closes the connection",
            [WebSocket],
            false,
            websocket_text_frame
        ),
        case!(
            v5,
            "transport.websocket_unaligned_packets",
            ["MQTT-6.0.0-2"],
            "a CONNECT split over two binary frames, then SUBSCRIBE and PINGREQ in one frame, are all answered",
            [WebSocket],
            false,
            websocket_unaligned
        ),
        case!(
            v311,
            "transport.websocket_unaligned_packets",
            ["MQTT-6.0.0-2"],
            "a CONNECT split over two binary frames, then SUBSCRIBE and PINGREQ in one frame, are all answered",
            [WebSocket],
            false,
            websocket_unaligned
        ),
        case!(
            v5,
            "transport.tls_connect",
            [],
            "a CONNECT over TLS (verified against --cafile) is accepted",
            [Tls],
            false,
            tls_connect
        ),
        case!(
            v311,
            "transport.tls_connect",
            [],
            "a CONNECT over TLS (verified against --cafile) is accepted",
            [Tls],
            false,
            tls_connect
        ),
    ]
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket to the configured endpoint, offering `mqtt`; returns the stream and the
/// subprotocol the broker selected.
async fn ws_open(cx: &Ctx) -> Result<(Ws, Option<String>), Stop> {
    let url = cx.target().options.websocket.clone().unwrap_or_default();
    let endpoint: Endpoint = url
        .parse()
        .map_err(|e| Failure::plain("a valid --websocket URL", format!("{url}: {e}")))?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Failure::plain("a valid --websocket URL", format!("{url}: {e}")))?;
    request
        .headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("mqtt"));
    let addr = format!("{}:{}", endpoint.host(), endpoint.port());
    let within = cx.answer_within();
    let tcp = tokio::time::timeout(within, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| {
            Failure::plain(
                "a TCP connection",
                format!("none to {addr} within {within:?}"),
            )
        })?
        .map_err(|e| Failure::plain("a TCP connection", format!("{addr}: {e}")))?;
    let (ws, response) =
        tokio::time::timeout(within, tokio_tungstenite::client_async(request, tcp))
            .await
            .map_err(|_| {
                Failure::plain("a WebSocket handshake", format!("none within {within:?}"))
            })?
            .map_err(|e| Failure::plain("a WebSocket handshake", e.to_string()))?;
    let selected = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((ws, selected))
}

/// The packets in the broker's binary frames, decoded strictly, until `n` have come or the
/// time is up; `Ok(None)` when the connection closed first.
async fn ws_packets(cx: &Ctx, ws: &mut Ws, n: usize) -> Result<Option<Vec<Packet>>, Stop> {
    let mut decoder = Decoder::with_version(cx.version().protocol());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + cx.answer_within();
    while out.len() < n {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => break,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Ok(None),
            Ok(Some(Ok(Message::Binary(b)))) => buf.extend_from_slice(&b),
            Ok(Some(Ok(Message::Text(t)))) => {
                return Err(Failure::of(
                    "MQTT-6.0.0-1",
                    "MQTT packets in binary frames only",
                    format!("a text frame: {:?}", t.as_str()),
                )
                .into());
            }
            Ok(Some(Ok(_))) => {}
        }
        loop {
            let before = buf.clone();
            match decoder.decode(&mut buf) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => break,
                Err(e) => return Err(malformed(&e, &before).into()),
            }
        }
    }
    Ok(Some(out))
}

fn connect_bytes(cx: &Ctx, name: &str) -> Result<Vec<u8>, Stop> {
    let mut wire = BytesMut::new();
    Packet::from(cx.connect_packet(name))
        .encode(cx.version().protocol(), &mut wire)
        .map_err(|e| Failure::plain("an encodable CONNECT", e.to_string()))?;
    Ok(wire.to_vec())
}

async fn websocket_subprotocol(cx: Ctx) -> TestResult {
    let (mut ws, selected) = ws_open(&cx).await?;
    ensure!(
        selected.as_deref() == Some("mqtt"),
        "MQTT-6.0.0-4",
        "the 101 response selects the subprotocol `mqtt`",
        "Sec-WebSocket-Protocol {selected:?}"
    );
    let _ = ws.close(None).await;
    Ok(())
}

async fn websocket_text_frame(cx: Ctx) -> TestResult {
    let (mut ws, _) = ws_open(&cx).await?;
    let connect = connect_bytes(&cx, "a")?;
    // The CONNECT's bytes as text: a CONNECT without properties and with an ASCII client id
    // is valid UTF-8.
    let text = String::from_utf8_lossy(&connect).into_owned();
    let _ = ws.send(Message::Text(text.into())).await;
    match ws_packets(&cx, &mut ws, 1).await {
        Ok(None) => Ok(()),
        Ok(Some(packets)) => {
            let seen: Vec<String> = packets.iter().map(brief).collect();
            Err(Failure::of(
                "MQTT-6.0.0-1",
                "the connection closed after a text frame",
                if seen.is_empty() {
                    format!("still open after {:?}", cx.answer_within())
                } else {
                    format!("the broker answered: {}", seen.join(", "))
                },
            )
            .into())
        }
        Err(Stop::Fail(f)) if f.statement.is_none() => Ok(()),
        Err(e) => Err(e),
    }
}

async fn websocket_unaligned(cx: Ctx) -> TestResult {
    let (mut ws, _) = ws_open(&cx).await?;
    let connect = connect_bytes(&cx, "a")?;
    let (first, second) = connect.split_at(connect.len() / 2);
    for part in [first, second] {
        ws.send(Message::Binary(Bytes::copy_from_slice(part)))
            .await
            .map_err(|e| Failure::plain("an open WebSocket", e.to_string()))?;
    }
    let connack = ws_packets(&cx, &mut ws, 1).await?.unwrap_or_default();
    match connack.first() {
        Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::SUCCESS => {}
        other => {
            return Err(Failure::of(
                "MQTT-6.0.0-2",
                "CONNACK 0x00 for a CONNECT split over two frames",
                format!("{:?}", other.map(brief)),
            )
            .into());
        }
    }
    let mut wire = BytesMut::new();
    let sub = subscribe(7, &cx.topic("ws"), SubscriptionOptions::qos(qos(0)))?;
    for p in [Packet::from(sub), Packet::PingReq] {
        p.encode(cx.version().protocol(), &mut wire)
            .map_err(|e| Failure::plain("an encodable packet", e.to_string()))?;
    }
    ws.send(Message::Binary(Bytes::from(wire.to_vec())))
        .await
        .map_err(|e| Failure::plain("an open WebSocket", e.to_string()))?;
    let answers = ws_packets(&cx, &mut ws, 2).await?.unwrap_or_default();
    let types: Vec<PacketType> = answers.iter().map(Packet::packet_type).collect();
    ensure!(
        types == [PacketType::SubAck, PacketType::PingResp],
        "MQTT-6.0.0-2",
        "SUBACK and PINGRESP for SUBSCRIBE and PINGREQ sent in one frame",
        "{types:?}"
    );
    let _ = ws.close(None).await;
    Ok(())
}

async fn tls_connect(cx: Ctx) -> TestResult {
    let target = cx.target();
    let addr = target.options.tls.clone().unwrap_or_default();
    let url = format!("mqtts://{addr}");
    let endpoint: Endpoint = url
        .parse()
        .map_err(|e| Failure::plain("a valid --tls address", format!("{addr}: {e}")))?;
    let mut builder = mqtt_transport::tls::ClientConfigBuilder::new();
    builder = match &target.options.cafile {
        Some(ca) => builder.with_ca_file(ca.clone()),
        None => builder.with_system_roots(),
    };
    let config = builder
        .build()
        .map_err(|e| Failure::plain("a TLS configuration", e.to_string()))?;
    let options = ConnectOptions::default()
        .with_tls_config(Arc::clone(&config))
        .with_connect_timeout(cx.answer_within());
    let stream = mqtt_transport::connect(&endpoint, &options)
        .await
        .map_err(|e| Failure::plain("a TLS connection", format!("{url}: {e}")))?;
    let mut conn = cx.wrap("tls", stream);
    conn.send(cx.connect_packet("t")).await?;
    let ack = conn.connack("MQTT-3.2.0-1").await?;
    if ack.reason_code != ReasonCode::SUCCESS {
        return Err(Failure::plain(
            "CONNACK 0x00 over TLS",
            format!("CONNACK {:#04x}", ack.reason_code.0),
        )
        .into());
    }
    conn.disconnect().await;
    Ok(())
}
