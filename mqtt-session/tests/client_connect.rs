#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The client engine's connection lifecycle, against the broker engine (through `pair::Pair`)
//! or a scripted server (`pair::Scripted`): CONNECT in both versions, Clean Start and Session
//! Present, the Assigned Client Identifier, keep alive, refusals, DISCONNECT both ways, and
//! enhanced authentication.

mod pair;

use bytes::Bytes;
use mqtt_session::broker::{AuthDecision, Broker, BrokerConfig, BrokerEvent, ConnectInfo, Policy};
use mqtt_session::client::{ClientConfig, ClientError, ClientEvent, DropReason};
use mqtt_session::codec::{
    Auth, ConnAck, Disconnect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS,
    ReasonCode, TopicName, Will,
};
use pair::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn connected_events(events: &[ClientEvent]) -> Vec<bool> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Connected {
                session_present, ..
            } => Some(*session_present),
            _ => None,
        })
        .collect()
}

fn disconnected(events: &[ClientEvent]) -> Vec<(Option<ReasonCode>, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Disconnected {
                reason_code,
                from_server,
                ..
            } => Some((*reason_code, *from_server)),
            _ => None,
        })
        .collect()
}

fn connect_of(p: Packet) -> mqtt_session::codec::Connect {
    match p {
        Packet::Connect(c) => *c,
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

// ---- CONNECT -------------------------------------------------------------------------------

// v5 v3.1.1 [MQTT-3.1.0-1]
#[test]
fn mqtt_3_1_0_1_connect_is_the_first_packet_and_carries_the_configuration() {
    let mut c = ClientConfig::new(V5, "dev-1");
    c.clean_start = false;
    c.keep_alive = 30;
    c.session_expiry_interval = 600;
    c.receive_maximum = 7;
    c.maximum_packet_size = 4096;
    c.topic_alias_maximum = 3;
    c.username = Some("alice".into());
    c.password = Some(Bytes::from_static(b"secret"));
    c.request_response_information = true;
    let will_props = Properties {
        will_delay_interval: Some(5),
        ..Properties::default()
    };
    c.will = Some(Will {
        topic: TopicName::try_from("dev-1/status").unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: will_props,
    });
    let mut s = Scripted::new(c);
    // Nothing before the transport is up; then the CONNECT alone (the scripted server's decoder
    // only accepts a CONNECT first).
    assert!(s.take_sent().is_empty());
    let connect = connect_of(s.connect());
    assert_eq!(connect.protocol, V5);
    assert_eq!(connect.client_id.as_str(), "dev-1");
    assert!(!connect.clean_start);
    assert_eq!(connect.keep_alive, 30);
    let p = &connect.properties;
    assert_eq!(p.session_expiry_interval, Some(600));
    assert_eq!(p.receive_maximum.map(|r| r.get()), Some(7));
    assert_eq!(p.maximum_packet_size.map(|m| m.get()), Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(3));
    assert_eq!(p.request_response_information, Some(true));
    assert_eq!(connect.username.as_deref(), Some("alice"));
    assert_eq!(connect.password.as_deref(), Some(&b"secret"[..]));
    let will = connect.will.unwrap();
    assert_eq!(will.topic.as_utf8().as_str(), "dev-1/status");
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
    assert_eq!(will.properties.will_delay_interval, Some(5));

    // MQTT 3.1.1: no properties.
    let mut c = ClientConfig::new(V311, "dev-2");
    c.username = Some("bob".into());
    let mut s = Scripted::new(c);
    let connect = connect_of(s.connect());
    assert_eq!(connect.protocol, V311);
    assert!(connect.properties.is_empty());
    assert!(connect.clean_start);
    assert_eq!(connect.keep_alive, 60);
}

// v3.1.1 [MQTT-3.1.2-22] [MQTT-3.1.3-7]
#[test]
fn v311_mqtt_3_1_2_22_configurations_that_make_no_valid_connect_are_refused() {
    let mut c = ClientConfig::new(V311, "x");
    c.password = Some(Bytes::from_static(b"pw"));
    assert!(matches!(
        mqtt_session::client::Client::new(c),
        Err(ClientError::InvalidConfig(_))
    ));
    let mut c = ClientConfig::new(V311, "");
    c.clean_start = false;
    assert!(matches!(
        mqtt_session::client::Client::new(c),
        Err(ClientError::InvalidConfig(_))
    ));
    let mut c = ClientConfig::new(V311, "x");
    c.authentication_method = Some("SCRAM".into());
    assert!(mqtt_session::client::Client::new(c).is_err());
    // A will with MQTT 5.0 properties in 3.1.1: the codec refuses it.
    let mut c = ClientConfig::new(V311, "x");
    let props = Properties {
        will_delay_interval: Some(1),
        ..Properties::default()
    };
    c.will = Some(Will {
        topic: TopicName::try_from("t").unwrap(),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: props,
    });
    assert!(matches!(
        mqtt_session::client::Client::new(c),
        Err(ClientError::InvalidPacket(_))
    ));
}

// v5 [MQTT-3.1.4-5] v3.1.1 [MQTT-3.1.4-4]
#[test]
fn connects_to_the_broker_in_both_versions() {
    for version in [V5, V311] {
        let mut pair = Pair::new();
        let c = pair.add_connected(config(version, "c1"));
        let events = pair.take_events(c);
        assert_eq!(connected_events(&events), [false]);
        assert!(pair.broker_events.iter().any(|e| matches!(
            e,
            BrokerEvent::ClientConnected { client_id, protocol, .. }
                if client_id == "c1" && *protocol == version
        )));
        assert!(pair.client(c).is_connected());
        // What the 3.1.1 CONNACK cannot say takes the protocol's defaults.
        let limits = pair.client(c).server_limits().unwrap().clone();
        assert_eq!(limits.maximum_qos, QoS::ExactlyOnce);
        assert!(limits.retain_available);
    }
}

/// A policy that records the credentials it saw and accepts.
#[derive(Default)]
struct Recorder {
    seen: Vec<(String, Option<String>, Option<Vec<u8>>)>,
}

impl Policy for Recorder {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        self.seen.push((
            info.client_id.to_owned(),
            info.username.map(str::to_owned),
            info.password.map(<[u8]>::to_vec),
        ));
        AuthDecision::Accept
    }
}

// v5 [MQTT-3.1.2-17] [MQTT-3.1.2-19] v3.1.1 [MQTT-3.1.2-19] [MQTT-3.1.2-21]
#[test]
fn mqtt_3_1_2_19_user_name_and_password_reach_the_server() {
    for version in [V5, V311] {
        let broker = Broker::with_policy(BrokerConfig::default(), Recorder::default());
        let mut pair = Pair::with_broker(broker);
        let mut c = config(version, "c1");
        c.username = Some("alice".into());
        c.password = Some(Bytes::from_static(b"pw"));
        pair.add_connected(c);
        assert_eq!(
            pair.broker.policy_mut().seen,
            [(
                "c1".to_owned(),
                Some("alice".to_owned()),
                Some(b"pw".to_vec())
            )]
        );
    }
}

// v5 [MQTT-3.1.2-8] [MQTT-3.14.4-3] v3.1.1 [MQTT-3.1.2-8] [MQTT-3.14.4-3]
#[test]
fn mqtt_3_1_2_8_the_will_is_published_when_the_connection_fails_not_after_disconnect() {
    for version in [V5, V311] {
        let mut pair = Pair::new();
        let watcher = pair.add_connected(config(version, "watcher"));
        pair.subscribe(watcher, "status/#", QoS::AtLeastOnce);
        let mut c = config(version, "dev");
        c.will = Some(Will {
            topic: TopicName::try_from("status/dev").unwrap(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
        let dev = pair.add_connected(c.clone());
        pair.drop_link(dev, 0);
        pair.settle();
        assert_eq!(payloads(&pair.take_messages(watcher)), ["offline"]);

        // A normal DISCONNECT: no will.
        pair.connect(dev);
        pair.with(dev, |c, now| {
            c.disconnect(ReasonCode::NORMAL_DISCONNECTION, None, now)
        })
        .unwrap();
        pair.settle();
        assert!(pair.take_messages(watcher).is_empty());
        assert!(!pair.client(dev).has_transport());
    }
}

// ---- Clean Start and Session Present ----------------------------------------------------------

// v5 [MQTT-3.1.2-5] [MQTT-4.4.0-1] v3.1.1 [MQTT-3.1.2-4] [MQTT-4.4.0-1]
#[test]
fn mqtt_4_4_0_1_a_persistent_session_is_resumed_and_queued_messages_arrive() {
    for version in [V5, V311] {
        let mut pair = Pair::new();
        let sub = pair.add_connected(persistent(version, "sub"));
        pair.subscribe(sub, "t", QoS::AtLeastOnce);
        let publ = pair.add_connected(config(version, "pub"));
        pair.drop_link(sub, 0);
        pair.publish(publ, "t", b"while away", QoS::AtLeastOnce)
            .unwrap();
        pair.take_events(sub);
        pair.connect(sub);
        let events = pair.take_events(sub);
        // 5.0: Clean Start 0 on the reconnection; 3.1.1: Clean Session 0 as configured.
        let last_connect = pair
            .sent(sub)
            .into_iter()
            .filter_map(|p| match p {
                Packet::Connect(c) => Some(c),
                _ => None,
            })
            .last()
            .unwrap();
        assert!(!last_connect.clean_start);
        assert_eq!(connected_events(&events), [true]);
        let messages: Vec<Publish> = events
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Message(p) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(payloads(&messages), ["while away"]);
    }
}

// v5 [MQTT-3.2.2-5]
#[test]
fn v5_mqtt_3_2_2_5_session_present_0_discards_the_session_state_keeps_unsent_messages() {
    let mut pair = Pair::new();
    let sub = pair.add_connected(config(V5, "sub"));
    pair.subscribe(sub, "t", QoS::AtLeastOnce);
    let mut c = config(V5, "pub");
    c.session_expiry_interval = 1;
    let publ = pair.add_connected(c);
    // The PUBLISH reaches the broker, its PUBACK is lost with the connection.
    pair.delay_ms = (100, 100);
    let in_flight = pair
        .act(publ, |c, now| {
            c.publish(message("t", b"first", QoS::AtLeastOnce), now)
        })
        .unwrap()
        .unwrap();
    pair.advance_ms(150);
    pair.delay_ms = (0, 0);
    assert_eq!(pair.client(publ).in_flight(), 1);
    pair.drop_link(publ, 0);
    // Published while disconnected: never sent, so not session state.
    let queued = pair
        .publish(publ, "t", b"second", QoS::AtLeastOnce)
        .unwrap()
        .unwrap();
    pair.take_events(publ);
    // The broker's session expires (Session Expiry Interval 1 s).
    pair.advance(2);
    pair.connect(publ);
    let events = pair.take_events(publ);
    assert_eq!(connected_events(&events), [false]);
    assert!(events.contains(&ClientEvent::PublishDropped {
        packet_id: Some(in_flight),
        reason: DropReason::SessionDiscarded
    }));
    assert!(events.contains(&ClientEvent::Published {
        packet_id: queued,
        reason_code: ReasonCode::SUCCESS
    }));
    assert_eq!(pair.client(publ).in_flight(), 0);
    assert_eq!(payloads(&pair.take_messages(sub)), ["first", "second"]);
}

// v5 [MQTT-3.2.2-4]
#[test]
fn v5_mqtt_3_2_2_4_session_present_1_without_session_state_closes_the_connection() {
    // Session Expiry 0: the session ends with each connection, so a Session Present 1 on the
    // next one cannot be right.
    let mut s = Scripted::new(config(V5, "c"));
    s.connect_accepted(false);
    s.transport_lost();
    s.take_events();
    let connect = connect_of(s.connect());
    assert!(
        !connect.clean_start,
        "resumption is attempted after the first CONNACK"
    );
    s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
    assert_eq!(
        s.take_sent(),
        [Packet::Disconnect(Disconnect::new(
            ReasonCode::PROTOCOL_ERROR
        ))]
    );
    assert!(s.closed);
    let events = s.take_events();
    assert!(matches!(
        events[0],
        ClientEvent::ProtocolViolation {
            reason_code: ReasonCode::PROTOCOL_ERROR,
            ..
        }
    ));
    assert_eq!(
        disconnected(&events),
        [(Some(ReasonCode::PROTOCOL_ERROR), false)]
    );
    // The next connection starts clean, so that client and server agree again.
    let connect = connect_of(s.connect());
    assert!(connect.clean_start);

    // The same with Clean Start 1 in the CONNECT (the server should have said 0).
    let mut c = config(V5, "d");
    c.session_expiry_interval = 60;
    let mut s = Scripted::new(c);
    s.connect();
    s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
    assert!(s.closed);
    // MQTT 3.1.1 with Clean Session 1 likewise (section 3.2.2.2 of 3.1.1).
    let mut s = Scripted::new(config(V311, "e"));
    s.connect();
    s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
    assert!(s.closed);
    assert!(
        s.take_sent().is_empty(),
        "no DISCONNECT in 3.1.1 after a bad CONNACK"
    );
}

// v5 [MQTT-3.1.2-5] v3.1.1 [MQTT-3.1.2-4]
#[test]
fn mqtt_3_1_2_5_a_new_client_with_clean_start_0_resumes_the_servers_session() {
    // Documented choice: a fresh Client configured with Clean Start 0 accepts Session Present 1
    // (the session of an earlier instance), and completes what the server re-sends.
    for version in [V5, V311] {
        let mut pair = Pair::new();
        let first = pair.add_connected(persistent(version, "dev"));
        pair.subscribe(first, "t", QoS::AtLeastOnce);
        pair.drop_link(first, 0);
        let publ = pair.add_connected(config(version, "pub"));
        pair.publish(publ, "t", b"kept", QoS::AtLeastOnce).unwrap();
        let mut c = persistent(version, "dev");
        c.clean_start = false;
        let again = pair.add_connected(c);
        let events = pair.take_events(again);
        assert_eq!(connected_events(&events), [true]);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::Message(p) if &p.payload[..] == b"kept"))
        );
        assert!(
            !pair.peers[again]
                .sent
                .iter()
                .any(|(_, p)| matches!(p, Packet::Disconnect(_)))
        );
    }
}

// v3.1.1 [MQTT-3.1.2-6]
#[test]
fn v311_mqtt_3_1_2_6_clean_session_discards_in_flight_messages_on_each_connection() {
    let mut s = Scripted::new(config(V311, "c"));
    s.connect_accepted(false);
    let id = s
        .with(|c, now| c.publish(message("t", b"x", QoS::AtLeastOnce), now))
        .unwrap()
        .unwrap();
    assert_eq!(publishes(&s.take_sent()).len(), 1);
    s.transport_lost();
    s.take_events();
    let connect = connect_of(s.connect());
    assert!(connect.clean_start);
    let events = s.take_events();
    assert_eq!(
        events,
        [ClientEvent::PublishDropped {
            packet_id: Some(id),
            reason: DropReason::SessionDiscarded
        }]
    );
    s.server_sends(ConnAck::new(false, ReasonCode::SUCCESS));
    assert!(publishes(&s.take_sent()).is_empty(), "not re-sent");
}

// ---- Assigned Client Identifier ----------------------------------------------------------------

// v5 [MQTT-3.2.2-16] [MQTT-3.1.3-7] [MQTT-3.1.3-6]
#[test]
fn v5_mqtt_3_2_2_16_the_assigned_client_identifier_is_adopted_and_reused() {
    let mut pair = Pair::new();
    let mut c = config(V5, "");
    c.session_expiry_interval = 600;
    let i = pair.add_connected(c);
    let events = pair.take_events(i);
    let assigned = events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Connected {
                assigned_client_id, ..
            } => assigned_client_id.clone(),
            _ => None,
        })
        .expect("an Assigned Client Identifier");
    assert_eq!(pair.client(i).client_id(), assigned);
    pair.drop_link(i, 0);
    pair.connect(i);
    let connect = pair
        .sent(i)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Connect(c) => Some(c),
            _ => None,
        })
        .last()
        .unwrap();
    assert_eq!(connect.client_id.as_str(), assigned);
    assert_eq!(connected_events(&pair.take_events(i)), [true]);

    // A server that assigns nothing breaks [MQTT-3.2.2-16]: the connection is closed.
    let mut s = Scripted::new(config(V5, ""));
    s.connect();
    s.server_sends(ConnAck::new(false, ReasonCode::SUCCESS));
    assert!(s.closed);
}

// ---- Keep alive --------------------------------------------------------------------------------

// v5 [MQTT-3.1.2-20] v3.1.1 [MQTT-3.1.2-23]
#[test]
fn keep_alive_pingreq_after_a_keep_alive_without_sending() {
    for version in [V5, V311] {
        let mut pair = Pair::new();
        let mut c = config(version, "c");
        c.keep_alive = 10;
        let i = pair.add_connected(c);
        pair.clear_wire(i);
        pair.advance_ms(9_999);
        assert!(pair.sent(i).is_empty());
        pair.advance_ms(1);
        assert_eq!(pair.sent(i), [Packet::PingReq]);
        assert_eq!(pair.received(i), [Packet::PingResp]);
        // Any packet sent restarts the count.
        pair.advance(5);
        pair.publish(i, "t", b"x", QoS::AtMostOnce).unwrap();
        pair.clear_wire(i);
        pair.advance_ms(9_999);
        assert!(pair.sent(i).is_empty());
        pair.advance_ms(1);
        assert_eq!(pair.sent(i), [Packet::PingReq]);
        // A long quiet time: pings keep the broker from closing the connection.
        pair.advance(600);
        assert!(pair.client(i).is_connected());
        assert!(disconnected(&pair.take_events(i)).is_empty());
    }
}

// v5 [MQTT-3.1.2-20]
#[test]
fn v5_mqtt_3_1_2_20_no_pingresp_within_the_ping_timeout_closes_the_connection() {
    let mut c = config(V5, "c");
    c.keep_alive = 10;
    c.ping_timeout = core::time::Duration::from_secs(3);
    let mut s = Scripted::new(c);
    s.connect_accepted(false);
    s.take_events();
    assert_eq!(s.client.poll_timeout(), Some(s.now.plus_secs(10)));
    s.advance_ms(10_000);
    assert_eq!(s.take_sent(), [Packet::PingReq]);
    assert_eq!(s.client.poll_timeout(), Some(s.now.plus_secs(3)));
    s.advance_ms(2_999);
    assert!(!s.closed);
    s.advance_ms(1);
    assert!(s.closed);
    assert_eq!(
        s.take_events(),
        [
            ClientEvent::PingTimeout,
            ClientEvent::Disconnected {
                reason_code: None,
                from_server: false,
                reason_string: None,
                server_reference: None
            }
        ]
    );
    assert_eq!(s.client.poll_timeout(), None);
}

// v5 [MQTT-3.1.2-21] [MQTT-3.2.2-21]
#[test]
fn v5_mqtt_3_1_2_21_the_server_keep_alive_replaces_ours() {
    let mut bc = BrokerConfig::default();
    bc.max_keep_alive = Some(5);
    let mut pair = Pair::with_config(bc);
    let mut c = config(V5, "c");
    c.keep_alive = 60;
    let i = pair.add_connected(c);
    assert_eq!(pair.client(i).server_limits().unwrap().keep_alive, 5);
    pair.clear_wire(i);
    pair.advance(5);
    assert_eq!(pair.sent(i), [Packet::PingReq]);
    // The broker holds us to 5 s (7.5 s with its grace): the pings keep the connection.
    pair.advance(100);
    assert!(pair.client(i).is_connected());
}

// ---- Refusal, DISCONNECT -----------------------------------------------------------------------

struct RejectWith(ReasonCode);

impl Policy for RejectWith {
    fn authenticate(&mut self, _info: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Reject(self.0)
    }
}

// v5 [MQTT-4.13.2-1] [MQTT-3.2.2-7] v3.1.1 [MQTT-3.2.2-5]
#[test]
fn mqtt_4_13_2_1_a_refused_connection_is_reported_and_closed() {
    for (version, code) in [
        (V5, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (V5, ReasonCode::BANNED),
        (V311, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
    ] {
        let broker = Broker::with_policy(BrokerConfig::default(), RejectWith(code));
        let mut pair = Pair::with_broker(broker);
        let i = pair.add(config(version, "c"));
        pair.connect(i);
        let events = pair.take_events(i);
        assert!(matches!(
            &events[0],
            ClientEvent::ConnectionRefused { reason_code, .. } if *reason_code == code
        ));
        assert_eq!(disconnected(&events), [(Some(code), true)]);
        assert!(!pair.client(i).has_transport());
        // Only the CONNECT was sent.
        assert_eq!(pair.sent(i).len(), 1);
    }
}

// v5 [MQTT-3.1.4-3]
#[test]
fn v5_mqtt_3_1_4_3_a_server_disconnect_is_reported_with_its_reason() {
    let mut pair = Pair::new();
    let first = pair.add_connected(config(V5, "same"));
    let second = pair.add_connected(config(V5, "same"));
    assert!(pair.client(second).is_connected());
    let events = pair.take_events(first);
    assert_eq!(
        disconnected(&events),
        [(Some(ReasonCode::SESSION_TAKEN_OVER), true)]
    );
    assert!(!pair.client(first).has_transport());

    // The server shutting down.
    pair.broker.handle_shutdown(pair.now);
    pair.drain();
    pair.settle();
    assert_eq!(
        disconnected(&pair.take_events(second)),
        [(Some(ReasonCode::SERVER_SHUTTING_DOWN), true)]
    );
}

// v5 [MQTT-3.14.4-1] [MQTT-3.14.4-2] [MQTT-3.14.2-1] v3.1.1 [MQTT-3.14.4-1] [MQTT-3.14.4-2]
#[test]
fn mqtt_3_14_4_1_after_disconnect_nothing_is_sent_and_the_connection_closes() {
    for version in [V5, V311] {
        let mut s = Scripted::new(config(version, "c"));
        s.connect_accepted(false);
        s.take_events();
        s.with(|c, now| c.disconnect(ReasonCode::NORMAL_DISCONNECTION, None, now))
            .unwrap();
        assert_eq!(
            s.take_sent(),
            [Packet::Disconnect(Disconnect::new(
                ReasonCode::NORMAL_DISCONNECTION
            ))]
        );
        assert!(s.closed);
        assert_eq!(
            disconnected(&s.take_events()),
            [(Some(ReasonCode::NORMAL_DISCONNECTION), false)]
        );
        // Commands now queue; nothing goes out.
        s.with(|c, now| c.publish(message("t", b"x", QoS::AtLeastOnce), now))
            .unwrap();
        assert!(s.take_sent().is_empty());
        assert!(matches!(
            s.with(|c, now| c.disconnect(ReasonCode::NORMAL_DISCONNECTION, None, now)),
            Err(ClientError::NotAllowed(_))
        ));
    }
    // Only DISCONNECT reason codes [MQTT-3.14.2-1]; none at all in 3.1.1.
    let mut s = Scripted::new(config(V5, "c"));
    s.connect_accepted(false);
    assert!(matches!(
        s.with(|c, now| c.disconnect(ReasonCode::GRANTED_QOS_1, None, now)),
        Err(ClientError::InvalidPacket(_))
    ));
    let mut s = Scripted::new(config(V311, "c"));
    s.connect_accepted(false);
    assert!(
        s.with(|c, now| c.disconnect(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, None, now))
            .is_err()
    );
}

// v5 [MQTT-4.1.0-2]
#[test]
fn v5_mqtt_4_1_0_2_the_session_expiry_can_be_changed_at_disconnect() {
    let mut pair = Pair::new();
    let mut c = config(V5, "c");
    c.session_expiry_interval = 3600;
    let i = pair.add_connected(c);
    pair.with(i, |c, now| {
        c.disconnect(ReasonCode::NORMAL_DISCONNECTION, Some(0), now)
    })
    .unwrap();
    pair.settle();
    assert!(!pair.broker.has_session("c"));
    // A CONNECT with Session Expiry 0 cannot set one at DISCONNECT (section 3.14.2.2.2).
    let j = pair.add_connected(config(V5, "d"));
    assert!(matches!(
        pair.with(j, |c, now| c.disconnect(
            ReasonCode::NORMAL_DISCONNECTION,
            Some(60),
            now
        )),
        Err(ClientError::NotAllowed(_))
    ));
    assert!(pair.client(j).is_connected());
}

// ---- Enhanced authentication -------------------------------------------------------------------

/// A challenge-response policy: method "CHALLENGE", the server sends "nonce", the client must
/// answer "nonce+secret"; a re-authentication must send "again".
#[derive(Default)]
struct Challenge {
    steps: Vec<Option<Vec<u8>>>,
}

impl Policy for Challenge {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        match info.authentication_method {
            Some("CHALLENGE") => {
                self.steps
                    .push(info.authentication_data.map(<[u8]>::to_vec));
                AuthDecision::Continue(Some(Bytes::from_static(b"nonce")))
            }
            Some(_) => AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD),
            None => AuthDecision::Accept,
        }
    }

    fn continue_authentication(
        &mut self,
        _client_id: &str,
        _method: &str,
        data: Option<&[u8]>,
    ) -> AuthDecision {
        self.steps.push(data.map(<[u8]>::to_vec));
        match data {
            Some(b"nonce+secret") | Some(b"again") => AuthDecision::Accept,
            _ => AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED),
        }
    }
}

fn challenge_config() -> ClientConfig {
    let mut c = config(V5, "dev");
    c.authentication_method = Some("CHALLENGE".into());
    c.authentication_data = Some(Bytes::from_static(b"hello"));
    c
}

// v5 [MQTT-4.12.0-2] [MQTT-4.12.0-3] [MQTT-4.12.0-5] [MQTT-3.1.2-30]
#[test]
fn v5_mqtt_4_12_0_3_the_auth_exchange_answers_each_challenge_with_the_hosts_data() {
    let broker = Broker::with_policy(BrokerConfig::default(), Challenge::default());
    let mut pair = Pair::with_broker(broker);
    let i = pair.add(challenge_config());
    // Published before connecting: must wait for the CONNACK [MQTT-3.1.2-30].
    pair.publish(i, "t", b"queued", QoS::AtLeastOnce).unwrap();
    pair.connect(i);
    let events = pair.take_events(i);
    assert_eq!(
        events,
        [ClientEvent::AuthChallenge {
            method: "CHALLENGE".into(),
            data: Some(Bytes::from_static(b"nonce"))
        }]
    );
    assert!(!pair.client(i).is_connected());
    pair.with(i, |c, now| {
        c.authenticate(Some(Bytes::from_static(b"nonce+secret")), now)
    })
    .unwrap();
    assert!(pair.client(i).is_connected());
    assert_eq!(
        pair.broker.policy_mut().steps,
        [Some(b"hello".to_vec()), Some(b"nonce+secret".to_vec())]
    );
    // On the wire: CONNECT, AUTH 0x18 with our method, then (after the CONNACK) the PUBLISH.
    let sent = pair.sent(i);
    assert!(matches!(&sent[0], Packet::Connect(_)));
    match &sent[1] {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, ReasonCode::CONTINUE_AUTHENTICATION);
            assert_eq!(a.properties.authentication_method(), Some("CHALLENGE"));
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
    assert!(matches!(&sent[2], Packet::Publish(_)));
    let received = pair.received(i);
    assert!(matches!(&received[0], Packet::Auth(_)));
    assert!(matches!(&received[1], Packet::ConnAck(a)
        if a.properties.authentication_method() == Some("CHALLENGE")));

    // No challenge pending: `authenticate` is refused.
    assert!(matches!(
        pair.with(i, |c, now| c.authenticate(None, now)),
        Err(ClientError::NotAllowed(_))
    ));
}

// v5 [MQTT-4.12.0-4]
#[test]
fn v5_mqtt_4_12_0_4_a_failed_authentication_is_a_refused_connection() {
    let broker = Broker::with_policy(BrokerConfig::default(), Challenge::default());
    let mut pair = Pair::with_broker(broker);
    let i = pair.add(challenge_config());
    pair.connect(i);
    pair.take_events(i);
    pair.with(i, |c, now| {
        c.authenticate(Some(Bytes::from_static(b"wrong")), now)
    })
    .unwrap();
    let events = pair.take_events(i);
    assert!(matches!(
        &events[0],
        ClientEvent::ConnectionRefused { reason_code, .. }
            if *reason_code == ReasonCode::NOT_AUTHORIZED
    ));
    assert!(!pair.client(i).has_transport());
}

// v5 [MQTT-4.12.1-1]
#[test]
fn v5_mqtt_4_12_1_1_re_authentication() {
    let broker = Broker::with_policy(BrokerConfig::default(), Challenge::default());
    let mut pair = Pair::with_broker(broker);
    let i = pair.add(challenge_config());
    pair.connect(i);
    pair.with(i, |c, now| {
        c.authenticate(Some(Bytes::from_static(b"nonce+secret")), now)
    })
    .unwrap();
    pair.take_events(i);
    pair.clear_wire(i);
    pair.with(i, |c, now| {
        c.reauthenticate(Some(Bytes::from_static(b"again")), now)
    })
    .unwrap();
    assert!(matches!(&pair.sent(i)[..],
            [Packet::Auth(a)] if a.reason_code == ReasonCode::RE_AUTHENTICATE));
    assert_eq!(pair.take_events(i), [ClientEvent::Reauthenticated]);
    assert!(pair.client(i).is_connected());
}

// v5 [MQTT-4.12.0-6] [MQTT-4.12.0-7]
#[test]
fn v5_mqtt_4_12_0_6_auth_without_a_method_is_a_protocol_error() {
    let mut s = Scripted::new(config(V5, "c"));
    s.connect();
    let mut auth = Auth {
        reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties::default(),
    };
    auth.properties
        .set_authentication_method(Some("X".try_into().unwrap()));
    s.server_sends(auth);
    assert!(s.closed);
    assert!(matches!(
        s.take_events()[0],
        ClientEvent::ProtocolViolation { .. }
    ));
    // And we never start one [MQTT-4.12.0-7].
    let mut s = Scripted::new(config(V5, "c"));
    s.connect_accepted(false);
    assert!(matches!(
        s.with(|c, now| c.reauthenticate(None, now)),
        Err(ClientError::NotAllowed(_))
    ));
    assert!(s.take_sent().is_empty());
}

// v5 [MQTT-4.12.0-5]
#[test]
fn v5_mqtt_4_12_0_5_an_auth_with_another_method_is_a_protocol_error() {
    let mut s = Scripted::new(challenge_config());
    s.connect();
    let mut auth = Auth {
        reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties::default(),
    };
    auth.properties
        .set_authentication_method(Some("OTHER".try_into().unwrap()));
    s.server_sends(auth);
    assert!(s.closed);
    // A successful CONNACK without our method, likewise.
    let mut s = Scripted::new(challenge_config());
    s.connect();
    s.server_sends(ConnAck::new(false, ReasonCode::SUCCESS));
    assert!(s.closed);
}

// ---- Timeouts and violations ------------------------------------------------------------------

// v5 [MQTT-3.2.0-1] v3.1.1 [MQTT-3.2.0-1]
#[test]
fn mqtt_3_2_0_1_the_connack_must_come_first() {
    for version in [V5, V311] {
        let mut s = Scripted::new(config(version, "c"));
        s.connect();
        s.server_sends(PubAck::new(mqtt_session::codec::PacketId::new(1).unwrap()));
        assert!(s.closed);
        assert!(s.take_sent().is_empty());
    }
    // No CONNACK at all within the connect timeout.
    let mut s = Scripted::new(config(V5, "c"));
    s.connect();
    s.advance_ms(30_000);
    assert!(s.closed);
    assert_eq!(s.take_events()[0], ClientEvent::ConnectTimeout);
}

// v5 [MQTT-3.2.0-2]
#[test]
fn v5_mqtt_3_2_0_2_a_second_connack_is_a_protocol_error() {
    let mut s = Scripted::new(config(V5, "c"));
    s.connect_accepted(false);
    s.server_sends(ConnAck::new(false, ReasonCode::SUCCESS));
    assert_eq!(
        s.take_sent(),
        [Packet::Disconnect(Disconnect::new(
            ReasonCode::PROTOCOL_ERROR
        ))]
    );
    assert!(s.closed);
}

// v5 v3.1.1 [MQTT-3.3.1-4] v3.1.1 [MQTT-4.8.0-1]
#[test]
fn mqtt_3_3_1_4_malformed_packets_close_the_connection() {
    for version in [V5, V311] {
        let mut s = Scripted::new(config(version, "c"));
        s.connect_accepted(false);
        s.take_events();
        // PUBLISH with both QoS bits set.
        s.server_sends_bytes(&[0x36, 0x03, 0x00, 0x01, b't']);
        assert!(s.closed);
        let events = s.take_events();
        assert!(matches!(
            &events[0],
            ClientEvent::ProtocolViolation { reason_code, error: Some(e) }
                if *reason_code == ReasonCode::MALFORMED_PACKET
                    && e.statement() == Some("MQTT-3.3.1-4")
        ));
        let sent = s.take_sent();
        if version.is_v5() {
            assert_eq!(
                sent,
                [Packet::Disconnect(Disconnect::new(
                    ReasonCode::MALFORMED_PACKET
                ))]
            );
        } else {
            assert!(sent.is_empty());
        }
        // Bytes after the close are ignored.
        s.server_sends_bytes(&[0xD0, 0x00]);
        assert!(s.take_events().is_empty());
    }
}
