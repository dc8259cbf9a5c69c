//! Server redirection (MQTT 5.0 section 4.11): a CONNACK or DISCONNECT with 0x9C Use another
//! server or 0x9D Server moved and a Server Reference. The client follows it
//! (`Options::follow_server_reference`, on by default): 0x9C for the connection it makes, 0x9D
//! for good; loops end as a refusal; references it cannot or may not follow are reported.
//!
//! The redirecting servers are the test's own (they answer each CONNECT as told); the server
//! redirected to is this repository's broker, in the test process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mqtt_client::{Client, Error, Event, ProtocolVersion, QoS, ReasonCode};
use mqtt_session::codec::{ConnAck, Decoder, Disconnect, Packet, ProtocolVersion as V};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// What a redirecting server answers every CONNECT with.
#[derive(Debug, Clone)]
enum Answer {
    /// CONNACK with this reason code and Server Reference; then the server waits for the
    /// client to close.
    Refuse(ReasonCode, Option<String>),
    /// CONNACK 0x00, then DISCONNECT with this reason code and Server Reference.
    AcceptThenDisconnect(ReasonCode, Option<String>),
}

/// A server of the test's own that answers each CONNECT as its script says (the n-th
/// CONNECT the n-th answer, the last one from then on), and counts them.
struct Redirector {
    addr: SocketAddr,
    connects: Arc<AtomicUsize>,
}

impl Redirector {
    /// Answers every CONNECT the same.
    async fn start(answer: Answer) -> Self {
        Self::script(vec![answer]).await
    }

    async fn script(answers: Vec<Answer>) -> Self {
        Self::script_with(|_| answers).await
    }

    /// A server whose script depends on its own address.
    async fn script_with(answers: impl FnOnce(SocketAddr) -> Vec<Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answers = Arc::new(answers(addr));
        assert!(!answers.is_empty());
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connects);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&answers), Arc::clone(&counter)));
            }
        });
        Self { addr, connects }
    }

    fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    answers: Arc<Vec<Answer>>,
    connects: Arc<AtomicUsize>,
) {
    let mut decoder = Decoder::new();
    let mut buf = bytes::BytesMut::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Packet::Connect(_))) => break,
            Ok(Some(other)) => panic!("CONNECT first, not {other:?}"),
            Ok(None) => {}
            Err(e) => panic!("the client sent a malformed CONNECT: {e}"),
        }
        if socket.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
    let n = connects.fetch_add(1, Ordering::SeqCst);
    let answer = &answers[n.min(answers.len() - 1)];
    let reference = |r: &Option<String>| r.as_deref().map(|r| r.try_into().unwrap());
    let mut out = bytes::BytesMut::new();
    match answer {
        Answer::Refuse(code, r) => {
            let mut ack = ConnAck::new(false, *code);
            ack.properties.set_server_reference(reference(r));
            Packet::ConnAck(ack).encode(V::V5, &mut out).unwrap();
        }
        Answer::AcceptThenDisconnect(code, r) => {
            Packet::ConnAck(ConnAck::new(false, ReasonCode::SUCCESS))
                .encode(V::V5, &mut out)
                .unwrap();
            let mut d = Disconnect::new(*code);
            d.properties.set_server_reference(reference(r));
            Packet::Disconnect(d).encode(V::V5, &mut out).unwrap();
        }
    }
    socket.write_all(&out).await.unwrap();
    // Until the client closes (it must, after a refusal or a DISCONNECT), unread bytes
    // dropped: closing first could reset the connection before the client has read ours.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(STEP, async {
        while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await;
}

/// The next event.
async fn next_event(events: &mut mqtt_client::Events) -> Event {
    within("an event", events.recv())
        .await
        .expect("the client stopped")
}

/// The next event is `Connected`.
async fn expect_connected(events: &mut mqtt_client::Events) {
    let event = next_event(events).await;
    assert!(
        matches!(event, Event::Connected { .. }),
        "Connected, not {event:?}"
    );
}

/// Subscribes, publishes at QoS 1 and receives it: the connection works.
async fn round_trip(client: &Client, events: &mut mqtt_client::Events, topic: &str) {
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    client
        .publish(topic, &b"through"[..], QoS::AtLeastOnce, false)
        .await
        .unwrap()
        .await
        .unwrap();
    let m = next_message(events).await;
    assert_eq!((&*m.topic, &m.payload[..]), (topic, &b"through"[..]));
}

/// A CONNACK 0x9C Use another server with a Server Reference: the first connection is made
/// to the referenced server, at once, and works; once it ends, the client goes back to the
/// server it was configured with (0x9C is for now, 0x9D for good).
#[tokio::test]
async fn v5_use_another_server_in_connack_is_followed_for_this_connection() {
    let dir = temp_dir("redirect-9c");
    let broker = OurBroker::tcp(&dir).await;
    let a = Redirector::start(Answer::Refuse(
        ReasonCode::USE_ANOTHER_SERVER,
        Some(format!("127.0.0.1:{}", broker.addr.port())),
    ))
    .await;
    let (client, mut events) = within("connect", Client::connect(options(&a.url(), "r9c", V5)))
        .await
        .unwrap();
    match next_event(&mut events).await {
        Event::Redirected {
            reason_code,
            server_reference,
            to,
            permanent,
        } => {
            assert_eq!(reason_code, ReasonCode::USE_ANOTHER_SERVER);
            assert_eq!(
                server_reference,
                format!("127.0.0.1:{}", broker.addr.port())
            );
            assert_eq!(to.to_string(), format!("mqtt://{}", broker.addr));
            assert!(!permanent);
        }
        other => panic!("Redirected first, not {other:?}"),
    }
    expect_connected(&mut events).await;
    round_trip(&client, &mut events, "redirect/9c").await;
    assert_eq!(a.connects(), 1);
    // The referenced server goes away: the next attempt is at the configured server again.
    broker.stop().await;
    connects_reach(&a, 2).await;
    drop(client);
}

/// Waits until `server` has seen `n` CONNECTs.
async fn connects_reach(server: &Redirector, n: usize) {
    within(&format!("{n} CONNECTs at {}", server.addr), async {
        while server.connects() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A DISCONNECT with 0x9D Server moved (for good) or 0x9C Use another server (for now) and a
/// Server Reference: the connection ends (reported with the reference, and the reconnection
/// at once), the client connects to the referenced server; when that connection ends too
/// (0x89 Server busy), the next one goes to the same server after 0x9D, back to the first
/// after 0x9C.
#[tokio::test]
async fn v5_redirection_in_disconnect_for_good_or_for_now() {
    for code in [ReasonCode::SERVER_MOVED, ReasonCode::USE_ANOTHER_SERVER] {
        let b =
            Redirector::start(Answer::AcceptThenDisconnect(ReasonCode::SERVER_BUSY, None)).await;
        let reference = format!("localhost:{}", b.addr.port());
        let a =
            Redirector::start(Answer::AcceptThenDisconnect(code, Some(reference.clone()))).await;
        let (client, mut events) = within("connect", Client::connect(options(&a.url(), "rd", V5)))
            .await
            .unwrap();
        expect_connected(&mut events).await;
        match next_event(&mut events).await {
            Event::Disconnected {
                reason_code,
                from_server,
                server_reference,
                reconnect_in,
                ..
            } => {
                assert_eq!(reason_code, Some(code));
                assert!(from_server);
                assert_eq!(server_reference.as_deref(), Some(reference.as_str()));
                assert_eq!(reconnect_in, Some(Duration::ZERO));
            }
            other => panic!("{code:?}: Disconnected, not {other:?}"),
        }
        match next_event(&mut events).await {
            Event::Redirected {
                reason_code,
                to,
                permanent,
                ..
            } => {
                assert_eq!(reason_code, code);
                assert_eq!(to.to_string(), format!("mqtt://{reference}"));
                assert_eq!(permanent, code == ReasonCode::SERVER_MOVED);
            }
            other => panic!("{code:?}: Redirected, not {other:?}"),
        }
        expect_connected(&mut events).await;
        match next_event(&mut events).await {
            Event::Disconnected { reason_code, .. } => {
                assert_eq!(reason_code, Some(ReasonCode::SERVER_BUSY));
            }
            other => panic!("{code:?}: Disconnected by b, not {other:?}"),
        }
        // The next connection: to b again after 0x9D, to a after 0x9C.
        expect_connected(&mut events).await;
        if code == ReasonCode::SERVER_MOVED {
            assert_eq!((a.connects(), b.connects()), (1, 2), "{code:?}");
        } else {
            assert_eq!((a.connects(), b.connects()), (2, 1), "{code:?}");
        }
        drop(client);
    }
}

/// A refusal that redirects on a reconnection takes the place of `ConnectFailed`; chains of
/// redirections are bounded, but only those made at once: a server that keeps sending the
/// client to one that is down gets it back after each backoff delay, and once the server it
/// names is up the client connects there (the bound did not stop the client for good).
#[tokio::test]
async fn v5_redirections_on_reconnection_and_the_bound_per_chain() {
    let dir = temp_dir("redirect-reconnect");
    let broker = OurBroker::tcp(&dir).await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut script = vec![Answer::AcceptThenDisconnect(ReasonCode::SERVER_BUSY, None)];
    script.extend(std::iter::repeat_n(
        Answer::Refuse(ReasonCode::USE_ANOTHER_SERVER, Some(down.to_string())),
        6,
    ));
    script.push(Answer::Refuse(
        ReasonCode::USE_ANOTHER_SERVER,
        Some(broker.addr.to_string()),
    ));
    let a = Redirector::script(script).await;
    let (client, mut events) = within("connect", Client::connect(options(&a.url(), "rr", V5)))
        .await
        .unwrap();
    expect_connected(&mut events).await;
    let mut redirected_to_down = 0;
    loop {
        match next_event(&mut events).await {
            Event::Redirected { to, .. } if to.port() == down.port() => redirected_to_down += 1,
            Event::Redirected { to, .. } => assert_eq!(to.port(), broker.addr.port()),
            Event::Connected { .. } => break,
            Event::ConnectFailed {
                server_reference, ..
            } => assert_eq!(server_reference, None, "a transport failure at {down}"),
            Event::Disconnected { reason_code, .. } => {
                assert_eq!(reason_code, Some(ReasonCode::SERVER_BUSY));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        redirected_to_down, 6,
        "more than four in all: one per chain"
    );
    assert_eq!(a.connects(), 8);
    round_trip(&client, &mut events, "redirect/reconnect").await;
    drop(client);
    broker.stop().await;
}

/// A server that redirects the client to itself: four redirections are followed, the fifth
/// is the refusal `connect` returns, with its Server Reference.
#[tokio::test]
async fn v5_redirection_loops_end_as_a_refusal() {
    let a = Redirector::script_with(|addr| {
        vec![Answer::Refuse(
            ReasonCode::USE_ANOTHER_SERVER,
            Some(addr.to_string()),
        )]
    })
    .await;
    let result = within("connect", Client::connect(options(&a.url(), "loop", V5))).await;
    match result {
        Err(Error::Refused {
            reason_code,
            server_reference,
            ..
        }) => {
            assert_eq!(reason_code, ReasonCode::USE_ANOTHER_SERVER);
            assert_eq!(server_reference, Some(a.addr.to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.connects(),
        5,
        "four redirections followed, then the refusal"
    );
}

/// References the client cannot or may not follow end the first connection as the refusal
/// they came with, carrying the reference: one that would change the transport (here from
/// plain TCP to TLS; the other way round is in mqtt-transport's endpoint tests), one with a
/// path, none at all, any when `follow_server_reference` is off, and one with a code that is
/// not a redirection.
#[tokio::test]
async fn v5_references_not_followed_are_reported_with_the_refusal() {
    let dir = temp_dir("redirect-not-followed");
    let broker = OurBroker::tcp(&dir).await;
    let usable = format!("127.0.0.1:{}", broker.addr.port());
    let cases = [
        (
            ReasonCode::SERVER_MOVED,
            Some(format!("mqtts://{usable}")),
            true,
        ),
        (
            ReasonCode::USE_ANOTHER_SERVER,
            Some("bad/reference".to_owned()),
            true,
        ),
        (ReasonCode::USE_ANOTHER_SERVER, None, true),
        (ReasonCode::SERVER_MOVED, Some(usable.clone()), false),
        // Not a redirection code: the reference means nothing.
        (ReasonCode::SERVER_UNAVAILABLE, Some(usable.clone()), true),
    ];
    for (code, reference, follow) in cases {
        let a = Redirector::start(Answer::Refuse(code, reference.clone())).await;
        let mut o = options(&a.url(), "nf", V5);
        o.follow_server_reference = follow;
        let result = within("connect", Client::connect(o)).await;
        match result {
            Err(Error::Refused {
                reason_code,
                server_reference,
                ..
            }) => {
                assert_eq!(reason_code, code, "{reference:?}");
                assert_eq!(server_reference, reference, "reported as sent");
            }
            other => panic!("{code:?} {reference:?}: {other:?}"),
        }
        assert_eq!(a.connects(), 1, "{reference:?}: asked once");
    }
    broker.stop().await;
}

/// A redirection after the client has connected, with reconnection off: the client stops,
/// reporting the reference, and does not follow it.
#[tokio::test]
async fn v5_no_redirection_when_reconnection_is_off() {
    let dir = temp_dir("redirect-no-reconnect");
    let broker = OurBroker::tcp(&dir).await;
    let reference = broker.addr.to_string();
    let a = Redirector::start(Answer::AcceptThenDisconnect(
        ReasonCode::SERVER_MOVED,
        Some(reference.clone()),
    ))
    .await;
    let mut o = options(&a.url(), "nr", V5);
    o.reconnect.enabled = false;
    let (_client, mut events) = within("connect", Client::connect(o)).await.unwrap();
    expect_connected(&mut events).await;
    match next_event(&mut events).await {
        Event::Disconnected {
            reason_code,
            server_reference,
            reconnect_in,
            ..
        } => {
            assert_eq!(reason_code, Some(ReasonCode::SERVER_MOVED));
            assert_eq!(server_reference, Some(reference));
            assert_eq!(reconnect_in, None, "the client stops");
        }
        other => panic!("Disconnected, not {other:?}"),
    }
    assert!(within("the end", events.recv()).await.is_none());
    broker.stop().await;
}
