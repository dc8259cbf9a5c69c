//! The client's `connect` over each transport against servers made of the crate's own server
//! side (`websocket::accept`) and a tokio-rustls acceptor: bytes arrive intact both ways,
//! including payloads larger than a frame and than the bridge's buffers; TLS with a test CA;
//! mutual TLS; what a failure looks like.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use mqtt_transport::{ConnectOptions, Endpoint, Error, Scheme, connect, tls, websocket};
use support::{Kind, Pki, TempDir, accept, exchange, listener, payload, read_to_end};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Larger than one WebSocket frame the bridge sends and than its buffers
/// ([`websocket::BRIDGE_BUFFER`]).
const LARGE: usize = 200 * 1024;

/// A client of `kind` connects to a server of `kind` (on 127.0.0.1, or `localhost` for TLS),
/// and each side sends the other a small payload, then a large one, at the same time; then
/// the client lets go and the server's stream ends.
async fn round_trip(kind: Kind) {
    const { assert!(LARGE > 3 * websocket::BRIDGE_BUFFER) };
    let dir = TempDir::new(&format!("{kind:?}"));
    let pki = Pki::new(dir.path());
    let acceptor = pki.acceptor(false);
    let (listener, addr) = listener().await;
    let (scheme, host) = match kind {
        Kind::Tcp => ("mqtt", "127.0.0.1"),
        Kind::Tls => ("mqtts", "localhost"),
        Kind::Ws => ("ws", "127.0.0.1"),
        Kind::Wss => ("wss", "localhost"),
    };
    let endpoint: Endpoint = format!("{scheme}://{host}:{}", addr.port())
        .parse()
        .unwrap();
    let server = tokio::spawn(async move {
        let mut stream = accept(
            &listener,
            kind,
            Some(&acceptor),
            &websocket::Options::default(),
        )
        .await
        .unwrap();
        exchange(&mut stream, b"from the server", b"from the client").await;
        exchange(&mut stream, &payload(LARGE, 2), &payload(LARGE, 1)).await;
        // The client lets go: the end of the stream, nothing more.
        assert_eq!(read_to_end(&mut stream).await.unwrap_or_default(), b"");
    });
    let config = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    let options = ConnectOptions::default().with_tls_config(config);
    let mut stream = connect(&endpoint, &options).await.unwrap();
    exchange(&mut stream, b"from the client", b"from the server").await;
    exchange(&mut stream, &payload(LARGE, 1), &payload(LARGE, 2)).await;
    drop(stream);
    tokio::time::timeout(support::STEP, server)
        .await
        .expect("the server did not see the end of the stream")
        .unwrap();
}

#[tokio::test]
async fn tcp_bytes_arrive_intact_both_ways() {
    round_trip(Kind::Tcp).await;
}

#[tokio::test]
async fn tls_with_the_test_ca_bytes_arrive_intact_both_ways() {
    round_trip(Kind::Tls).await;
}

// v5 v3.1.1 [MQTT-6.0.0-2] [MQTT-6.0.0-3] [MQTT-6.0.0-4]: the client offers `mqtt`, the server
// selects it; payloads cross frames and are concatenated.
#[tokio::test]
async fn websocket_bytes_arrive_intact_both_ways() {
    round_trip(Kind::Ws).await;
}

// v5 v3.1.1 [MQTT-6.0.0-2] [MQTT-6.0.0-3] [MQTT-6.0.0-4]: the same over TLS.
#[tokio::test]
async fn websocket_over_tls_bytes_arrive_intact_both_ways() {
    round_trip(Kind::Wss).await;
}

/// A server that requires a client certificate the test CA signed accepts the client that
/// has one, and refuses the client that has none (in TLS 1.3 the refusal comes after the
/// client's side of the handshake: its first read fails).
#[tokio::test]
async fn mutual_tls_accepts_a_trusted_client_certificate_and_refuses_none() {
    let dir = TempDir::new("mtls");
    let pki = Pki::new(dir.path());
    let acceptor = pki.acceptor(true);
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        // The client with a certificate.
        let mut stream = accept(
            &listener,
            Kind::Tls,
            Some(&acceptor),
            &websocket::Options::default(),
        )
        .await
        .unwrap();
        exchange(&mut stream, b"hello client", b"hello server").await;
        // The client without one.
        let refused = accept(
            &listener,
            Kind::Tls,
            Some(&acceptor),
            &websocket::Options::default(),
        )
        .await;
        assert!(
            refused.is_err(),
            "a client without a certificate was accepted"
        );
        refused.err().unwrap_or_default()
    });
    let endpoint: Endpoint = format!("mqtts://localhost:{}", addr.port())
        .parse()
        .unwrap();
    let with_certificate = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .with_client_certificate(pki.path("client.pem"), pki.path("client-key.pem"))
        .build()
        .unwrap();
    let options = ConnectOptions::default().with_tls_config(with_certificate);
    let mut stream = connect(&endpoint, &options).await.unwrap();
    exchange(&mut stream, b"hello server", b"hello client").await;

    let without = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    let options = ConnectOptions::default().with_tls_config(without);
    match connect(&endpoint, &options).await {
        Err(Error::Tls { .. }) => {}
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(mut stream) => {
            let mut byte = [0];
            let read = tokio::time::timeout(support::STEP, stream.read(&mut byte))
                .await
                .expect("the refusal did not come");
            assert!(read.is_err(), "the first read after a refusal: {read:?}");
        }
    }
    let why = server.await.unwrap();
    assert!(why.to_lowercase().contains("certificate"), "{why}");
}

/// A server whose certificate the client does not trust is refused during the handshake.
#[tokio::test]
async fn tls_refuses_an_untrusted_server_certificate() {
    let dir = TempDir::new("untrusted");
    let pki = Pki::new(dir.path());
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config("untrusted", false));
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        let _ = accept(
            &listener,
            Kind::Tls,
            Some(&acceptor),
            &websocket::Options::default(),
        )
        .await;
    });
    let config = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    let endpoint: Endpoint = format!("mqtts://localhost:{}", addr.port())
        .parse()
        .unwrap();
    let options = ConnectOptions::default().with_tls_config(config);
    let e = connect(&endpoint, &options)
        .await
        .err()
        .expect("an untrusted server");
    assert!(matches!(e, Error::Tls { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("TLS handshake with localhost"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}

/// The server's certificate is checked against the endpoint's host name.
#[tokio::test]
async fn tls_refuses_a_certificate_for_another_name() {
    let dir = TempDir::new("wrong-name");
    let pki = Pki::new(dir.path());
    let acceptor = pki.acceptor(false);
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        let _ = accept(
            &listener,
            Kind::Tls,
            Some(&acceptor),
            &websocket::Options::default(),
        )
        .await;
    });
    let config = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let e = tls::connect(tcp, "broker.example", config)
        .await
        .expect_err("a wrong name");
    assert!(e.to_string().contains("not valid for name"), "{e}");
}

/// `tls::connect` takes an IPv6 address with or without its brackets, and a `wss://[::1]`
/// endpoint connects (when the machine has IPv6 loopback).
#[tokio::test]
async fn ipv6_literal_endpoints_connect() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback: skipped");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let dir = TempDir::new("ipv6");
    let pki = Pki::new(dir.path());
    let acceptor = pki.acceptor(false);
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let mut stream = accept(
                &listener,
                Kind::Wss,
                Some(&acceptor),
                &websocket::Options::default(),
            )
            .await
            .unwrap();
            exchange(&mut stream, b"v6", b"v6?").await;
        }
    });
    let config = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    let options = ConnectOptions::default().with_tls_config(config);
    for url in [
        format!("wss://[::1]:{port}"),
        format!("wss://[::1]:{port}/mqtt"),
    ] {
        let endpoint: Endpoint = url.parse().unwrap();
        assert_eq!(endpoint.host(), "::1");
        let mut stream = connect(&endpoint, &options).await.unwrap();
        exchange(&mut stream, b"v6?", b"v6").await;
    }
    server.await.unwrap();
}

/// A refused connection is an I/O error that names the address.
#[tokio::test]
async fn a_refused_connection_names_the_address() {
    let (listener, addr) = listener().await;
    drop(listener);
    let endpoint = Endpoint::new(Scheme::Tcp, "127.0.0.1", addr.port()).unwrap();
    let e = connect(&endpoint, &ConnectOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("connect to 127.0.0.1:{}: ", addr.port())),
        "{e}"
    );
}

/// A server that accepts the TCP connection and never answers the TLS handshake: the
/// connection times out.
#[tokio::test]
async fn a_silent_server_times_out() {
    let (listener, addr) = listener().await;
    let hold = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::time::sleep(support::STEP).await;
        drop(tcp);
    });
    let dir = TempDir::new("silent");
    let pki = Pki::new(dir.path());
    let config = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    let options = ConnectOptions::default()
        .with_tls_config(config)
        .with_connect_timeout(Duration::from_millis(300));
    let endpoint: Endpoint = format!("wss://localhost:{}", addr.port()).parse().unwrap();
    let e = connect(&endpoint, &options).await.err().expect("a timeout");
    assert!(
        matches!(e, Error::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains(&format!("wss://localhost:{}/mqtt", addr.port())),
        "{e}"
    );
    hold.abort();
}

/// Bytes written just before the client lets go still reach the server (the bridge passes on
/// the last bytes before its close frame).
#[tokio::test]
async fn websocket_last_bytes_before_drop_arrive() {
    let (listener, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut stream = accept(&listener, Kind::Ws, None, &websocket::Options::default())
            .await
            .unwrap();
        read_to_end(&mut stream).await.unwrap()
    });
    let endpoint: Endpoint = format!("ws://127.0.0.1:{}", addr.port()).parse().unwrap();
    let mut stream = connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap();
    let last = payload(LARGE, 7);
    stream.write_all(&last).await.unwrap();
    drop(stream);
    assert!(server.await.unwrap() == last);
}
