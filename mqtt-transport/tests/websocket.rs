//! The WebSocket transport against peers that are not this crate: tokio-tungstenite servers
//! that select no subprotocol or another one, that send a text frame or too large a message;
//! tokio-tungstenite clients that do not offer `mqtt`, ask for another path or send a text
//! frame.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use futures_util::{SinkExt, StreamExt};
use mqtt_transport::{Error, websocket};
use support::{STEP, listener, read_to_end};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// A tokio-tungstenite server's end of one connection on `listener`, whose upgrade response
/// selects `subprotocol` (if any).
async fn raw_server(
    listener: &TcpListener,
    subprotocol: Option<&'static str>,
) -> Option<WebSocketStream<TcpStream>> {
    let (tcp, _) = listener.accept().await.unwrap();
    let callback = move |_: &Request, mut response: Response| {
        if let Some(p) = subprotocol {
            response
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
        }
        Ok(response)
    };
    tokio_tungstenite::accept_hdr_async(tcp, callback)
        .await
        .ok()
}

/// A tokio-tungstenite client of `ws://addr{path}`, offering `subprotocol` (if any).
async fn raw_client(
    addr: std::net::SocketAddr,
    path: &str,
    subprotocol: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(request, tcp)
        .await
        .map(|(ws, _)| ws)
}

/// The next message from `ws` that is not a ping or pong (within [`STEP`]).
async fn next_message(
    ws: &mut WebSocketStream<TcpStream>,
) -> Option<Result<Message, tungstenite::Error>> {
    loop {
        match tokio::time::timeout(STEP, ws.next())
            .await
            .expect("nothing came")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => return other,
        }
    }
}

// v5 v3.1.1 [MQTT-6.0.0-4]: a server that selects no subprotocol, or another one, is refused with
// an error that says so.
#[tokio::test]
async fn the_client_refuses_a_server_that_does_not_select_mqtt() {
    for selected in [None, Some("chat")] {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move { raw_server(&listener, selected).await.is_some() });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let url = format!("ws://{addr}/mqtt");
        let e = websocket::connect(tcp, &url, &websocket::Options::default())
            .await
            .err()
            .expect("a server that does not select mqtt");
        assert!(
            matches!(e, Error::SubprotocolNotSelected { .. }),
            "{selected:?}: {e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("did not select the subprotocol `mqtt`"),
            "{selected:?}: {text}"
        );
        // (The server's side of the upgrade completed: the refusal is the client's.)
        assert!(server.await.unwrap(), "{selected:?}");
    }
}

// v5 v3.1.1 [MQTT-6.0.0-1]: a text frame from the server ends the client's stream (after the binary
// payloads before it), and the client closes with 1003 (unsupported data).
#[tokio::test]
async fn a_text_frame_from_the_server_ends_the_clients_stream() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = raw_server(&listener, Some("mqtt")).await.unwrap();
        ws.send(Message::Binary("before".into())).await.unwrap();
        ws.send(Message::Text("not MQTT".into())).await.unwrap();
        let _ = ws.send(Message::Binary("after".into())).await;
        next_message(&mut ws).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/mqtt");
    let mut stream = websocket::connect(tcp, &url, &websocket::Options::default())
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut stream).await.unwrap(), b"before");
    match server.await.unwrap() {
        Some(Ok(Message::Close(frame))) => {
            assert_eq!(frame.map(|f| f.code), Some(CloseCode::Unsupported));
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

// v5 v3.1.1 [MQTT-6.0.0-1]: the same on the server's side: a text frame from the client ends the
// server's stream and is answered with close code 1003.
#[tokio::test]
async fn a_text_frame_from_the_client_ends_the_servers_stream() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = websocket::accept(tcp, &websocket::Options::default())
            .await
            .unwrap();
        read_to_end(&mut stream).await.unwrap()
    });
    let mut ws = raw_client(addr, "/mqtt", Some("mqtt")).await.unwrap();
    ws.send(Message::Binary(vec![0x10, 0x00].into()))
        .await
        .unwrap();
    ws.send(Message::Text("CONNECT".into())).await.unwrap();
    match next_message(&mut ws).await {
        Some(Ok(Message::Close(frame))) => {
            assert_eq!(frame.map(|f| f.code), Some(CloseCode::Unsupported));
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(server.await.unwrap(), [0x10, 0x00]);
}

// v5 v3.1.1 [MQTT-6.0.0-3]: the server serves its path only (404 elsewhere) and refuses a client
// that does not offer `mqtt` (400); [MQTT-6.0.0-4] it selects `mqtt` when it is offered among
// others.
#[tokio::test]
async fn the_server_serves_its_path_to_clients_offering_mqtt() {
    let (listener, addr) = listener().await;
    let options = websocket::Options::default().with_path("/ws");
    let server = tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..5 {
            let (tcp, _) = listener.accept().await.unwrap();
            results.push(
                websocket::accept(tcp, &options)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        }
        results
    });
    let status = |r: Result<WebSocketStream<TcpStream>, tungstenite::Error>| match r {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status(raw_client(addr, "/mqtt", Some("mqtt")).await), 404);
    assert_eq!(status(raw_client(addr, "/ws", None).await), 400);
    assert_eq!(status(raw_client(addr, "/ws", Some("chat")).await), 400);
    // This crate's client: the refusal is an error with the status.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let e = websocket::connect(
        tcp,
        &format!("ws://{addr}/mqtt"),
        &websocket::Options::default(),
    )
    .await
    .err()
    .expect("a wrong path");
    assert!(matches!(e, Error::WebSocket { .. }), "{e}");
    assert!(e.to_string().contains("404"), "{e}");
    // Offered among others, `mqtt` is selected.
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "chat, mqtt".parse().unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    // (tungstenite's client accepts a response selecting one of those offered.)
    let (_ws, response) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "mqtt"
    );
    let results = server.await.unwrap();
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        4,
        "{results:?}"
    );
    assert!(results[4].is_ok(), "{results:?}");
}

/// A message larger than the limit ends the connection, on either side, and nothing of it
/// reaches the byte stream.
#[tokio::test]
async fn a_message_over_the_limit_ends_the_stream() {
    let options = websocket::Options::default().with_max_message_size(1024);
    // Server side.
    let (server_listener, addr) = listener().await;
    let server_options = options.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = server_listener.accept().await.unwrap();
        let mut stream = websocket::accept(tcp, &server_options).await.unwrap();
        read_to_end(&mut stream).await.unwrap_or_default()
    });
    let mut ws = raw_client(addr, "/mqtt", Some("mqtt")).await.unwrap();
    ws.send(Message::Binary(vec![1; 1024].into()))
        .await
        .unwrap();
    let _ = ws.send(Message::Binary(vec![2; 1025].into())).await;
    assert_eq!(server.await.unwrap(), vec![1; 1024]);
    // Client side.
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = raw_server(&listener, Some("mqtt")).await.unwrap();
        ws.send(Message::Binary(vec![1; 1000].into()))
            .await
            .unwrap();
        let _ = ws.send(Message::Binary(vec![2; 4000].into())).await;
        // Held open until the client has gone.
        let _ = next_message(&mut ws).await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = websocket::connect(tcp, &format!("ws://{addr}/mqtt"), &options)
        .await
        .unwrap();
    assert_eq!(
        read_to_end(&mut stream).await.unwrap_or_default(),
        vec![1; 1000]
    );
    let _ = stream.shutdown().await;
    drop(stream);
    server.await.unwrap();
}

/// `websocket::connect` over any stream: here an in-memory pipe to `websocket::accept`, with
/// a `wss://` URL (the scheme only names the request; the stream is what it is).
#[tokio::test]
async fn connect_and_accept_meet_over_any_stream() {
    let (client, server) = tokio::io::duplex(4096);
    let options = websocket::Options::default();
    let (client, server) = tokio::join!(
        websocket::connect(client, "wss://broker.example/mqtt?token=x", &options),
        websocket::accept(server, &options)
    );
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    tokio::join!(
        support::exchange(&mut client, b"ping", b"pong"),
        support::exchange(&mut server, b"pong", b"ping")
    );
}
