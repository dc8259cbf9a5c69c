//! The tokio client against this repository's broker (in the test process) and mosquitto:
//! acknowledgement futures, subscriptions, reconnection and resumption, resubscription,
//! offline buffering, manual acknowledgement, a consumer that stops reading, TLS and
//! WebSocket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use mqtt_client::{
    Client, ClientError, ConnectOptions, Error, Event, ProtocolVersion, QoS, ReasonCode,
};
use mqtt_transport::tls::ClientConfigBuilder;
use support::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Publishes at QoS 0, 1 and 2 and receives them; the futures resolve with the
/// acknowledgements' codes.
async fn round_trip(url: &str, version: ProtocolVersion, tag: &str) {
    let (sub, mut sub_events) = within(
        "connect",
        Client::connect(options(url, &format!("{tag}-sub"), version)),
    )
    .await
    .unwrap();
    assert!(matches!(
        sub_events.recv().await,
        Some(Event::Connected {
            session_present: false,
            ..
        })
    ));
    let filter = format!("rt/{tag}/#");
    assert_eq!(
        within("SUBACK", sub.subscribe(&filter, QoS::ExactlyOnce))
            .await
            .unwrap(),
        QoS::ExactlyOnce
    );
    let (publ, _pub_events) = within(
        "connect",
        Client::connect(options(url, &format!("{tag}-pub"), version)),
    )
    .await
    .unwrap();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut delivery = within(
            "queued",
            publ.publish(&format!("rt/{tag}/{i}"), format!("m{i}"), qos, false),
        )
        .await
        .unwrap();
        let id = within("stored", delivery.stored()).await.unwrap();
        assert_eq!(id.is_some(), qos != QoS::AtMostOnce);
        assert_eq!(delivery.packet_id(), id);
        // v5 [MQTT-4.3.2-4] [MQTT-4.3.3-11]: PUBACK / PUBCOMP with success.
        assert_eq!(
            within("acknowledged", delivery).await.unwrap(),
            ReasonCode::SUCCESS
        );
        let m = next_message(&mut sub_events).await;
        assert_eq!(m.topic.to_string(), format!("rt/{tag}/{i}"));
        assert_eq!(&m.payload[..], format!("m{i}").as_bytes());
        assert_eq!(m.qos, qos);
    }
    let codes = within("UNSUBACK", sub.unsubscribe(&[filter.as_str()]))
        .await
        .unwrap();
    if version == V5 {
        assert_eq!(codes, [ReasonCode::SUCCESS]);
    } else {
        assert!(codes.is_empty());
    }
    within("disconnect", sub.disconnect()).await.unwrap();
    // The stream ends after a disconnection, and the handle refuses more.
    assert!(
        within("end", async {
            loop {
                if sub_events.recv().await.is_none() {
                    return true;
                }
            }
        })
        .await
    );
    assert_closed(sub.publish("rt/x", "late", QoS::AtMostOnce, false).await);
    within("disconnect", publ.disconnect()).await.unwrap();
}

#[tokio::test]
async fn qos_0_1_2_round_trip_against_our_broker() {
    let dir = temp_dir("rt");
    let broker = OurBroker::tcp(&dir).await;
    round_trip(&broker.url(), V5, "ours5").await;
    round_trip(&broker.url(), V311, "ours311").await;
    broker.stop().await;
}

#[tokio::test]
async fn qos_0_1_2_round_trip_against_mosquitto() {
    let dir = temp_dir("rt-mosq");
    let Some(mosquitto) = Mosquitto::start(&dir).await else {
        return;
    };
    round_trip(&mosquitto.url(), V5, "mosq5").await;
    round_trip(&mosquitto.url(), V311, "mosq311").await;
}

#[tokio::test]
async fn a_refused_connection_is_an_error_naming_the_code() {
    let dir = temp_dir("refused");
    let mut settings = settings(&dir, "127.0.0.1:0");
    let passwords = dir.join("passwords");
    mqtt_broker::password::set_password(&passwords, "alice", b"secret").unwrap();
    settings.password_file = Some(passwords);
    settings.allow_anonymous = false;
    let broker = OurBroker::start(settings).await;
    // The right credentials are accepted.
    let mut o = options(&broker.url(), "alice", V5);
    o.session.username = Some("alice".to_owned());
    o.session.password = Some(bytes::Bytes::from_static(b"secret"));
    let (alice, _events) = Client::connect(o).await.unwrap();
    alice.disconnect().await.unwrap();
    // A wrong password: refused, and a refusal the client does not retry.
    let mut o = options(&broker.url(), "alice", V5);
    o.session.username = Some("alice".to_owned());
    o.session.password = Some(bytes::Bytes::from_static(b"wrong"));
    let result = Client::connect(o).await;
    assert!(
        matches!(
            result,
            Err(Error::Refused {
                reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                ..
            })
        ),
        "{result:?}"
    );
    let result = Client::connect(options(&broker.url(), "anon", V5)).await;
    assert!(
        matches!(
            result,
            Err(Error::Refused {
                reason_code: ReasonCode::NOT_AUTHORIZED | ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                ..
            })
        ),
        "{result:?}"
    );
    broker.stop().await;
    // Nothing listening: the transport's error.
    let result = Client::connect(options(&format!("mqtt://{}", broker_gone()), "x", V5)).await;
    assert!(matches!(result, Err(Error::Transport(_))), "{result:?}");
}

fn broker_gone() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The broker goes away and comes back (same port, same data): the client reconnects with
/// backoff, the session resumes, and messages published to it while it was away arrive.
/// A message published by the client while offline is queued and sent on resume.
/// v5 [MQTT-3.2.2-2] (Session Present 1), [MQTT-4.4.0-1]
#[tokio::test]
async fn mqtt_4_4_0_1_reconnects_and_resumes_the_session_after_the_broker_restarts() {
    for version in [V5, V311] {
        let dir = temp_dir(&format!("resume-{version:?}"));
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let broker = OurBroker::start(settings(&dir, &listen)).await;
        let url = broker.url();
        let (sub, mut events) = Client::connect(persistent(options(&url, "resume-sub", version)))
            .await
            .unwrap();
        wait_for(&mut events, "connected", is_connected).await;
        sub.subscribe("resume/#", QoS::AtLeastOnce).await.unwrap();
        broker.stop().await;
        let e = wait_for(&mut events, "disconnected", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
        assert!(
            matches!(
                e,
                Event::Disconnected {
                    reconnect_in: Some(_),
                    ..
                }
            ),
            "{e:?}"
        );
        // Published while offline: queued.
        let offline = sub
            .publish("resume/self", "offline", QoS::AtLeastOnce, false)
            .await
            .unwrap();
        let broker = OurBroker::start(settings(&dir, &listen)).await;
        let e = wait_for(&mut events, "reconnected", is_connected).await;
        assert!(
            matches!(
                e,
                Event::Connected {
                    session_present: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            within("offline message acknowledged", offline)
                .await
                .unwrap(),
            ReasonCode::SUCCESS
        );
        let m = next_message(&mut events).await;
        assert_eq!(&m.payload[..], b"offline");
        sub.disconnect().await.unwrap();
        broker.stop().await;
    }
}

/// The server lost the session (a new broker with a fresh data directory): the client
/// subscribes again to what had been granted, and says so.
#[tokio::test]
async fn resubscribes_when_the_server_lost_the_session() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let broker = OurBroker::start(settings(&temp_dir("resub-a"), &listen)).await;
    let url = broker.url();
    let (sub, mut events) = Client::connect(persistent(options(&url, "resub", V5)))
        .await
        .unwrap();
    sub.subscribe("resub/a", QoS::AtLeastOnce).await.unwrap();
    sub.subscribe("resub/b/#", QoS::AtMostOnce).await.unwrap();
    broker.stop().await;
    let broker = OurBroker::start(settings(&temp_dir("resub-b"), &listen)).await;
    let e = wait_for(&mut events, "reconnected", |e| {
        matches!(
            e,
            Event::Connected {
                session_present: false,
                ..
            }
        )
    })
    .await;
    drop(e);
    let mut resubscribed = BTreeSet::new();
    while resubscribed.len() < 2 {
        if let Event::Resubscribed {
            filter,
            reason_code,
        } = wait_for(&mut events, "resubscribed", |e| {
            matches!(e, Event::Resubscribed { .. })
        })
        .await
        {
            assert!(!reason_code.is_error());
            resubscribed.insert(filter);
        }
    }
    assert_eq!(
        resubscribed,
        BTreeSet::from(["resub/a".to_owned(), "resub/b/#".to_owned()])
    );
    let (publ, _e) = Client::connect(options(&url, "resub-pub", V5))
        .await
        .unwrap();
    publ.publish("resub/b/x", "again", QoS::AtMostOnce, false)
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(&next_message(&mut events).await.payload[..], b"again");
    broker.stop().await;
}

/// While offline, publications wait in the engine's queue up to `max_queued_messages`; beyond,
/// they are refused at once with a clear error. On reconnection the queued ones are sent and
/// their futures resolve.
#[tokio::test]
async fn offline_publications_are_buffered_up_to_the_limit() {
    let dir = temp_dir("offline");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let broker = OurBroker::start(settings(&dir, &listen)).await;
    let mut o = persistent(options(&broker.url(), "offline", V5));
    o.session.max_queued_messages = 5;
    let (client, mut events) = Client::connect(o).await.unwrap();
    wait_for(&mut events, "connected", is_connected).await;
    broker.stop().await;
    wait_for(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let mut deliveries = Vec::new();
    for i in 0..5 {
        let mut d = client
            .publish("offline/t", format!("{i}"), QoS::AtLeastOnce, false)
            .await
            .unwrap();
        assert!(d.stored().await.unwrap().is_some(), "queued while offline");
        deliveries.push(d);
    }
    let mut refused = client
        .publish("offline/t", "6", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let stored = refused.stored().await;
    assert!(
        matches!(stored, Err(Error::Engine(ClientError::QueueFull))),
        "{stored:?}"
    );
    let result = refused.await;
    assert!(
        matches!(result, Err(Error::Engine(ClientError::QueueFull))),
        "{result:?}"
    );
    let broker = OurBroker::start(settings(&dir, &listen)).await;
    for d in deliveries {
        // Nobody subscribes: 0x10 No matching subscribers, a success.
        let code = within("delivered", d).await.unwrap();
        assert!(!code.is_error(), "{code:?}");
    }
    client.disconnect().await.unwrap();
    broker.stop().await;
}

/// Manual acknowledgement: the PUBACK waits for `ack`; a message not acknowledged when the
/// connection is lost is sent again by the server on resume (DUP), one acknowledged is not.
/// v5 [MQTT-4.4.0-1] [MQTT-3.3.1-1]
#[tokio::test]
async fn manual_acknowledgement_holds_the_puback_until_the_application_acks() {
    let dir = temp_dir("manual");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let broker = OurBroker::start(settings(&dir, &listen)).await;
    let url = broker.url();
    let mut o = persistent(options(&url, "manual-sub", V5));
    o.manual_acks = true;
    let (sub, mut events) = Client::connect(o).await.unwrap();
    sub.subscribe("manual/#", QoS::AtLeastOnce).await.unwrap();
    let (publ, _e) = Client::connect(options(&url, "manual-pub", V5))
        .await
        .unwrap();
    let acked = publ
        .publish("manual/1", "one", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let held = publ
        .publish("manual/2", "two", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    acked.await.unwrap();
    held.await.unwrap();
    let one = next_message(&mut events).await;
    let two = next_message(&mut events).await;
    assert_eq!(&one.payload[..], b"one");
    assert_eq!(&two.payload[..], b"two");
    sub.ack(&one).await.unwrap();
    // A fence: once the broker acknowledges a PUBLISH the subscriber sent after that PUBACK,
    // it has read the PUBACK (one stream, in order).
    sub.publish("fence/manual", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap()
        .await
        .unwrap();
    broker.stop().await;
    let broker = OurBroker::start(settings(&dir, &listen)).await;
    wait_for(&mut events, "reconnected", is_connected).await;
    let again = next_message(&mut events).await;
    assert_eq!(
        &again.payload[..],
        b"two",
        "only the held message comes again"
    );
    assert!(again.dup);
    sub.ack(&again).await.unwrap();
    sub.disconnect().await.unwrap();
    broker.stop().await;
}

/// A consumer that stops reading events: the connection task keeps reading the socket, so
/// keep alive goes on (no ping timeout, no reconnection); QoS 0 messages beyond the event
/// buffer are dropped and counted; QoS 1 messages are all delivered, in order, once the
/// consumer reads again (their PUBACKs waited, and the broker's flow control held the rest).
#[tokio::test]
async fn a_consumer_that_stops_reading_does_not_stall_the_connection() {
    let dir = temp_dir("slow");
    let broker = OurBroker::tcp(&dir).await;
    let url = broker.url();
    let mut o = options(&url, "slow-sub", V5);
    o.session.keep_alive = 1;
    // Generous for a loaded CI machine, and still short enough: a client that stopped reading
    // would miss its first PINGRESP (sent at 1 s) and give up at about 3 s, inside the 3.5 s.
    o.session.ping_timeout = Duration::from_secs(2);
    o.event_capacity = 8;
    o.session.receive_maximum = 4;
    let (sub, mut events) = Client::connect(o).await.unwrap();
    wait_for(&mut events, "connected", is_connected).await;
    sub.subscribe("slow/#", QoS::AtLeastOnce).await.unwrap();
    let (publ, _e) = Client::connect(options(&url, "slow-pub", V5))
        .await
        .unwrap();
    const N: usize = 50;
    let mut deliveries = Vec::new();
    for i in 0..N {
        publ.publish("slow/0", format!("zero {i}"), QoS::AtMostOnce, false)
            .await
            .unwrap()
            .await
            .unwrap();
        deliveries.push(
            publ.publish("slow/1", format!("{i}"), QoS::AtLeastOnce, false)
                .await
                .unwrap(),
        );
    }
    // The consumer reads nothing for 3.5 keep-alive periods.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut qos1 = Vec::new();
    let mut qos0 = 0;
    let mut lagged = 0;
    while qos1.len() < N {
        match within("events", events.recv()).await.unwrap() {
            Event::Message(m) if m.qos == QoS::AtLeastOnce => {
                qos1.push(String::from_utf8(m.payload.to_vec()).unwrap());
            }
            Event::Message(_) => qos0 += 1,
            Event::Lagged { dropped } => lagged += dropped,
            e @ (Event::Disconnected { .. } | Event::ConnectFailed { .. }) => {
                panic!("the connection should have stayed up: {e:?}")
            }
            _ => {}
        }
    }
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(qos1, expected, "every QoS 1 message, in order");
    assert!(lagged > 0, "QoS 0 messages were dropped and counted");
    assert_eq!(
        qos0 + lagged as usize,
        N,
        "each QoS 0 message delivered or counted"
    );
    for d in deliveries {
        within("acknowledged", d).await.unwrap();
    }
    broker.stop().await;
}

/// TLS with a test CA (mqtts://), and WebSocket (ws://): the same round trip.
#[tokio::test]
async fn tls_and_websocket_transports() {
    let dir = temp_dir("transports");
    let pki = Pki::new(&dir);
    let mut s = settings(&dir, "127.0.0.1:0");
    s.tls_listen = Some("127.0.0.1:0".to_owned());
    s.ws_listen = Some("127.0.0.1:0".to_owned());
    s.wss_listen = Some("127.0.0.1:0".to_owned());
    s.cert = Some(pki.path("server.pem"));
    s.key = Some(pki.path("server-key.pem"));
    let broker = OurBroker::start(s).await;
    let tls = ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap();
    let transport = ConnectOptions::default().with_tls_config(tls);
    let urls = [
        format!("mqtts://localhost:{}", broker.listener("tls").port()),
        format!("ws://127.0.0.1:{}/mqtt", broker.listener("ws").port()),
        format!("wss://localhost:{}/mqtt", broker.listener("wss").port()),
    ];
    for (i, url) in urls.iter().enumerate() {
        let mut o = options(url, &format!("tr-{i}"), V5);
        o.transport = transport.clone();
        let (c, mut events) = within(url, Client::connect(o)).await.unwrap();
        c.subscribe("tr/#", QoS::AtLeastOnce).await.unwrap();
        let big = vec![b'x'; 200 * 1024];
        c.publish("tr/big", big.clone(), QoS::AtLeastOnce, false)
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(next_message(&mut events).await.payload.len(), big.len());
        c.disconnect().await.unwrap();
    }
    // A server certificate we do not trust: refused.
    let o = options(&urls[0], "tr-untrusted", V5);
    let result = Client::connect(o).await;
    assert!(matches!(result, Err(Error::Transport(_))), "{result:?}");
    broker.stop().await;
}

/// A server of the test's own that challenges the CONNECT (MQTT 5.0 enhanced
/// authentication): AUTH 0x18 with "challenge", expecting AUTH 0x18 with the authenticator's
/// answer, then CONNACK. Returns its address and what it saw in the client's AUTH.
async fn challenging_server() -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Option<bytes::Bytes>>,
) {
    use mqtt_session::codec::{Auth, ConnAck, Decoder, Packet, ProtocolVersion as V};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut decoder = Decoder::new();
        let mut buf = bytes::BytesMut::new();
        let mut next = async |socket: &mut tokio::net::TcpStream| loop {
            if let Some(p) = decoder.decode(&mut buf).unwrap() {
                return Some(p);
            }
            if socket.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        };
        let Some(Packet::Connect(connect)) = next(&mut socket).await else {
            panic!("CONNECT first");
        };
        assert_eq!(connect.properties.authentication_method(), Some("TEST"));
        let mut auth = Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Default::default(),
        };
        auth.properties
            .set_authentication_method(Some("TEST".try_into().unwrap()));
        auth.properties
            .set_authentication_data(Some(b"challenge"))
            .unwrap();
        let mut out = bytes::BytesMut::new();
        Packet::Auth(auth).encode(V::V5, &mut out).unwrap();
        socket.write_all(&out).await.unwrap();
        let answer = match next(&mut socket).await {
            Some(Packet::Auth(a)) => a
                .properties
                .authentication_data()
                .map(bytes::Bytes::copy_from_slice),
            _ => return None,
        };
        let mut ack = ConnAck::new(false, ReasonCode::SUCCESS);
        ack.properties
            .set_authentication_method(Some("TEST".try_into().unwrap()));
        out.clear();
        Packet::ConnAck(ack).encode(V::V5, &mut out).unwrap();
        socket.write_all(&out).await.unwrap();
        // Until the client leaves.
        while next(&mut socket).await.is_some() {}
        answer
    });
    (addr, task)
}

/// MQTT 5.0 enhanced authentication through `Options::authenticator`: the server's challenge
/// is answered with what the callback returns, and the connection is accepted. Without an
/// authenticator, the challenge ends the first connection at once.
/// v5 [MQTT-4.12.0-2] [MQTT-4.12.0-3]
#[tokio::test]
async fn v5_enhanced_authentication_through_the_authenticator() {
    let (addr, server) = challenging_server().await;
    let mut o = options(&format!("mqtt://{addr}"), "auth", V5);
    o.session.authentication_method = Some("TEST".to_owned());
    o.authenticator = Some(std::sync::Arc::new(
        |method: &str, data: Option<&bytes::Bytes>| {
            assert_eq!(method, "TEST");
            let mut answer = b"response:".to_vec();
            answer.extend_from_slice(data.map_or(&[][..], |d| &d[..]));
            Some(bytes::Bytes::from(answer))
        },
    ));
    let (client, _events) = within("connect", Client::connect(o)).await.unwrap();
    client.disconnect().await.unwrap();
    assert_eq!(
        server.await.unwrap().as_deref(),
        Some(&b"response:challenge"[..])
    );

    let (addr, server) = challenging_server().await;
    let mut o = options(&format!("mqtt://{addr}"), "auth", V5);
    o.session.authentication_method = Some("TEST".to_owned());
    let result = within("refused", Client::connect(o)).await;
    assert!(matches!(result, Err(Error::NotConnected)), "{result:?}");
    assert_eq!(server.await.unwrap(), None);
}

/// `disconnect` resolves once the farewell is written: a program that publishes a burst of
/// QoS 0 messages (whose deliveries resolve at once), disconnects and ends its runtime loses
/// none of them, and its will is not published (the DISCONNECT 0x00 arrived).
/// v5 [MQTT-3.1.2-8] [MQTT-3.14.4-3]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_disconnect_resolves_after_the_farewell_is_written() {
    let dir = temp_dir("farewell");
    let broker = OurBroker::tcp(&dir).await;
    let url = broker.url();
    let (sub, mut events) = Client::connect(options(&url, "farewell-sub", V5))
        .await
        .unwrap();
    sub.subscribe("farewell/#", QoS::AtMostOnce).await.unwrap();
    const N: usize = 2000;
    let publisher_url = url.clone();
    tokio::task::spawn_blocking(move || {
        // A runtime of its own, dropped as soon as `disconnect` resolves.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut o = options(&publisher_url, "farewell-pub", V5);
            o.session.will = Some(mqtt_client::Will {
                topic: mqtt_client::TopicName::try_from("farewell/will").unwrap(),
                payload: bytes::Bytes::from_static(b"will"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
            });
            let (publ, _events) = Client::connect(o).await.unwrap();
            for i in 0..N {
                // Dropped: nobody waits for a QoS 0 message.
                drop(
                    publ.publish("farewell/t", format!("{i}"), QoS::AtMostOnce, false)
                        .await
                        .unwrap(),
                );
            }
            publ.disconnect().await.unwrap();
        });
        drop(runtime);
    })
    .await
    .unwrap();
    let mut got = 0;
    while got < N {
        let m = next_message(&mut events).await;
        assert_ne!(&m.payload[..], b"will", "the will was published");
        got += 1;
    }
    // Nothing more: in particular no will.
    let more = tokio::time::timeout(Duration::from_millis(300), events.recv()).await;
    assert!(!matches!(more, Ok(Some(Event::Message(_)))), "{more:?}");
    broker.stop().await;
}
