#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The broker engine's side of CONNECT and CONNACK (sections 3.1, 3.2, 4.1, 4.12): client
//! identifiers, Clean Start / Clean Session, Session Expiry, session takeover, keep alive,
//! authentication (user name and password, enhanced authentication, re-authentication) and
//! the protocol errors of a connection's first packets.

mod common;

use bytes::Bytes;
use common::*;
use mqtt_session::broker::{AuthDecision, BrokerConfig, BrokerEvent, ConnectInfo, Policy};
use mqtt_session::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

/// CONNECT bytes (3.1.1 layout: no properties) with this protocol level and connect flags, for
/// client "x", keep alive 60.
fn raw_connect_v311_layout(level: u8, flags: u8) -> Vec<u8> {
    vec![
        0x10, 0x0D, 0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 60, 0, 1, b'x',
    ]
}

/// A CONNECT 5.0 with enhanced authentication method `TOKEN` and the data `hello`, which
/// [`TestPolicy`] answers with a challenge.
fn connect_token(client_id: &str) -> mqtt_session::codec::Connect {
    let mut c = connect_v5(client_id, true, Some(60));
    c.properties.set_authentication_method(Some(utf8("TOKEN")));
    c.properties
        .set_authentication_data(Some(b"hello"))
        .unwrap();
    c
}

fn token_policy() -> TestPolicy {
    TestPolicy {
        auth_method: Some("TOKEN".to_owned()),
        ..TestPolicy::default()
    }
}

fn connected_events<P: Policy + Clone>(sim: &Sim<P>) -> Vec<(String, bool)> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::ClientConnected {
                client_id,
                session_present,
                ..
            } => Some((client_id.clone(), *session_present)),
            _ => None,
        })
        .collect()
}

// ---- CONNACK -----------------------------------------------------------------------------------

// v5 [MQTT-3.1.4-5] [MQTT-3.2.0-1] [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-4.12.0-6]
#[test]
fn v5_connect_is_acknowledged_first_with_success_and_the_servers_limits() {
    let config = BrokerConfig::default();
    let mut sim = Sim::with_config(config.clone());
    let (mut c, packets) = sim.connect_raw(connect_v5("dev1", true, None));
    let Packet::ConnAck(ack) = only(packets) else {
        panic!("first packet is not a CONNACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    assert_eq!(
        ack.properties.receive_maximum.map(|r| r.get()),
        Some(config.receive_maximum)
    );
    assert_eq!(
        ack.properties.maximum_packet_size.map(|m| m.get()),
        Some(config.maximum_packet_size)
    );
    assert_eq!(
        ack.properties.topic_alias_maximum,
        Some(config.topic_alias_maximum)
    );
    // QoS 2 and retained messages are supported: nothing to say about them.
    assert_eq!(ack.properties.maximum_qos, None);
    assert_eq!(ack.properties.retain_available, None);
    // The client sent an identifier and no Authentication Method.
    assert_eq!(ack.properties.assigned_client_identifier(), None);
    assert_eq!(ack.properties.authentication_method(), None);
    assert!(!sim.is_closed(&c));
    assert!(sim.recv(&mut c).is_empty());
    assert_eq!(connected_events(&sim), [("dev1".to_owned(), false)]);
    assert!(sim.broker.is_connected("dev1"));
}

// v3.1.1 [MQTT-3.1.4-4] [MQTT-3.2.0-1] [MQTT-3.2.2-1]
#[test]
fn v311_connect_is_acknowledged_with_return_code_0_and_session_present_0() {
    let mut sim = Sim::new();
    let (c, packets) = sim.connect_raw(connect_v311("dev1", true));
    let Packet::ConnAck(ack) = only(packets) else {
        panic!("first packet is not a CONNACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    assert_eq!(ack.properties, Default::default());
    assert!(!sim.is_closed(&c));
    assert!(sim.events.iter().any(|e| matches!(e,
        BrokerEvent::ClientConnected { client_id, protocol: ProtocolVersion::V3_1_1, .. } if client_id == "dev1")));
}

// v5 [MQTT-3.2.0-2] [MQTT-3.1.0-2]
#[test]
fn v5_a_second_connect_gets_no_second_connack_but_a_protocol_error() {
    let mut sim = Sim::new();
    let (mut c, _) = sim.connect(connect_v5("x", true, None));
    sim.send(&c, connect_v5("x", false, None));
    let got = sim.recv(&mut c);
    assert!(
        got.iter().all(|p| !matches!(p, Packet::ConnAck(_))),
        "{got:?}"
    );
    assert_eq!(disconnect_reason(&got), Some(ReasonCode::PROTOCOL_ERROR));
    assert!(sim.is_closed(&c));
    assert_eq!(sim.violations(), [ReasonCode::PROTOCOL_ERROR]);
}

// v3.1.1 [MQTT-3.1.0-2] [MQTT-4.8.0-1]
#[test]
fn v311_a_second_connect_closes_the_connection_without_a_word() {
    let mut sim = Sim::new();
    let (mut c, _) = sim.connect(connect_v311("x", true));
    sim.send(&c, connect_v311("x", true));
    assert!(sim.recv(&mut c).is_empty());
    assert!(sim.is_closed(&c));
    assert!(!sim.broker.is_connected("x"));
}

// v5 v3.1.1 [MQTT-3.1.0-1]
#[test]
fn a_first_packet_other_than_connect_closes_the_connection_without_connack() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        let mut c = sim.open(version);
        sim.send_bytes(&c, &[0xC0, 0x00]); // PINGREQ
        assert!(sim.recv(&mut c).is_empty());
        assert!(sim.is_closed(&c));
        assert_eq!(sim.violations().len(), 1);
        assert_eq!(sim.broker.session_count(), 0);
    }
}

// v5 v3.1.1 [MQTT-3.1.2-2]
#[test]
fn an_unsupported_protocol_level_is_refused_with_return_code_1_and_closed() {
    let mut sim = Sim::new();
    let mut c = sim.open(ProtocolVersion::V3_1_1);
    sim.send_bytes(&c, &raw_connect_v311_layout(7, 0x02));
    // The 3.1.1 CONNACK 20 02 00 01 ("unacceptable protocol level"), read as 0x84.
    let got = sim.recv(&mut c);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if !a.session_present
            && a.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        "{got:?}"
    );
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
}

// v5 [MQTT-3.1.2-3] [MQTT-3.1.4-1]
#[test]
fn v5_connect_with_the_reserved_flag_set_is_refused_and_closed() {
    let mut sim = Sim::new();
    let mut c = sim.open(ProtocolVersion::V5);
    sim.send_bytes(
        &c,
        &[
            0x10, 0x0E, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x03, 0, 60, 0, 0, 1, b'x',
        ],
    );
    let got = sim.recv(&mut c);
    assert!(
        got.iter()
            .all(|p| matches!(p, Packet::ConnAck(a) if a.reason_code.is_error()))
    );
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
    assert_eq!(sim.violations(), [ReasonCode::MALFORMED_PACKET]);
}

// v3.1.1 [MQTT-3.1.2-3] [MQTT-3.1.4-1]
#[test]
fn v311_connect_with_the_reserved_flag_set_is_closed_without_connack() {
    let mut sim = Sim::new();
    let mut c = sim.open(ProtocolVersion::V3_1_1);
    sim.send_bytes(&c, &raw_connect_v311_layout(4, 0x03));
    assert!(sim.recv(&mut c).is_empty());
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
}

/// Sends raw CONNECT `bytes` on a new connection of `version`; returns what came back.
fn send_raw_connect(
    sim: &mut Sim,
    version: ProtocolVersion,
    bytes: &[u8],
) -> (Client, Vec<Packet>) {
    let mut c = sim.open(version);
    sim.send_bytes(&c, bytes);
    let got = sim.recv(&mut c);
    (c, got)
}

// v5 [MQTT-3.1.2-9] [MQTT-3.1.2-11] [MQTT-3.1.2-12] [MQTT-3.1.2-13] [MQTT-3.1.2-16] [MQTT-3.1.2-17]
// v5 [MQTT-3.1.2-18] [MQTT-3.1.2-19] [MQTT-3.1.3-3] [MQTT-3.1.3-4] [MQTT-3.1.3-11] [MQTT-3.1.3-12] [MQTT-3.1.4-1]
#[test]
fn v5_a_malformed_connect_is_refused_and_closed_without_a_session() {
    let x = lp(b"x");
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("Will QoS without the Will Flag", 0x0A, x.clone()),
        ("Will Retain without the Will Flag", 0x22, x.clone()),
        ("Will QoS 3", 0x1E, cat(&[&x, &[0], &lp(b"t"), &lp(b"m")])),
        ("Will Flag without will fields", 0x06, x.clone()),
        ("User Name Flag without a user name", 0x82, x.clone()),
        ("Password Flag without a password", 0x42, x.clone()),
        ("Client Identifier not UTF-8", 0x02, lp(&[0xC3, 0x28])),
        ("no Client Identifier", 0x02, Vec::new()),
        (
            "Will Topic not UTF-8",
            0x06,
            cat(&[&x, &[0], &lp(&[0xFF]), &lp(b"m")]),
        ),
        ("User Name not UTF-8", 0x82, cat(&[&x, &lp(&[0xC3, 0x28])])),
        ("a User Name without the flag", 0x02, cat(&[&x, &lp(b"u")])),
        (
            "a Password without the flag",
            0x80 | 0x02,
            cat(&[&x, &lp(b"u"), &lp(b"pw")]),
        ),
    ];
    for (what, flags, payload) in cases {
        let mut sim = Sim::new();
        let (c, got) = send_raw_connect(
            &mut sim,
            ProtocolVersion::V5,
            &raw_connect(b"MQTT", 5, flags, &payload),
        );
        assert!(
            got.iter()
                .all(|p| matches!(p, Packet::ConnAck(a) if a.reason_code.is_error())),
            "{what}: {got:?}"
        );
        assert!(sim.is_closed(&c), "{what}");
        assert_eq!(sim.broker.session_count(), 0, "{what}");
        assert_eq!(sim.violations().len(), 1, "{what}");
    }
}

// v3.1.1 [MQTT-3.1.2-9] [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-14] [MQTT-3.1.2-15] [MQTT-3.1.2-18]
// v3.1.1 [MQTT-3.1.2-19] [MQTT-3.1.2-20] [MQTT-3.1.2-21] [MQTT-3.1.2-22] [MQTT-3.1.3-3] [MQTT-3.1.3-4]
// v3.1.1 [MQTT-3.1.3-10] [MQTT-3.1.3-11] [MQTT-3.1.4-1]
#[test]
fn v311_a_malformed_connect_is_closed_without_connack() {
    let x = lp(b"x");
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("Will QoS without the Will Flag", 0x0A, x.clone()),
        ("Will Retain without the Will Flag", 0x22, x.clone()),
        ("Will QoS 3", 0x1E, cat(&[&x, &lp(b"t"), &lp(b"m")])),
        ("Will Flag without will fields", 0x06, x.clone()),
        ("User Name Flag without a user name", 0x82, x.clone()),
        (
            "Password Flag without a password",
            0xC2,
            cat(&[&x, &lp(b"u")]),
        ),
        ("Password without a user name", 0x42, cat(&[&x, &lp(b"pw")])),
        ("Client Identifier not UTF-8", 0x02, lp(&[0xC3, 0x28])),
        ("no Client Identifier", 0x02, Vec::new()),
        (
            "Will Topic not UTF-8",
            0x06,
            cat(&[&x, &lp(&[0xFF]), &lp(b"m")]),
        ),
        ("User Name not UTF-8", 0x82, cat(&[&x, &lp(&[0xC3, 0x28])])),
        ("a User Name without the flag", 0x02, cat(&[&x, &lp(b"u")])),
        (
            "a Password without the flag",
            0x80 | 0x02,
            cat(&[&x, &lp(b"u"), &lp(b"pw")]),
        ),
    ];
    for (what, flags, payload) in cases {
        let mut sim = Sim::new();
        let (c, got) = send_raw_connect(
            &mut sim,
            ProtocolVersion::V3_1_1,
            &raw_connect(b"MQTT", 4, flags, &payload),
        );
        assert!(got.is_empty(), "{what}: {got:?}");
        assert!(sim.is_closed(&c), "{what}");
        assert_eq!(sim.broker.session_count(), 0, "{what}");
    }
}

// v3.1.1 [MQTT-3.1.2-1]
#[test]
fn v311_a_connect_with_another_protocol_name_is_not_processed_as_mqtt() {
    let mut sim = Sim::new();
    let (c, got) = send_raw_connect(
        &mut sim,
        ProtocolVersion::V3_1_1,
        &raw_connect(b"MQTX", 4, 0x02, &lp(b"x")),
    );
    // At most a refusal, then the close.
    assert!(
        got.iter()
            .all(|p| matches!(p, Packet::ConnAck(a) if a.reason_code.is_error())),
        "{got:?}"
    );
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
    assert!(
        sim.events
            .iter()
            .all(|e| !matches!(e, BrokerEvent::ClientConnected { .. }))
    );
}

// v3.1.1 [MQTT-3.2.2-6]: no return code of Table 3.1 fits a CONNECT that is not MQTT's (a
// protocol name other than "MQTT"): the connection is closed without a CONNACK.
#[test]
fn v311_a_connect_that_is_not_mqtt_is_closed_without_a_connack() {
    let mut sim = Sim::new();
    let c = sim.open(ProtocolVersion::V3_1_1);
    sim.send_bytes(&c, &raw_connect(b"MQTX", 4, 0x02, &lp(b"x")));
    assert!(sim.is_closed(&c));
    assert!(sim.recv_raw(&c).is_empty());
    assert_eq!(sim.broker.session_count(), 0);
}

// v5 [MQTT-3.1.2-1] [MQTT-3.2.2-8]
#[test]
fn v5_a_connect_with_another_protocol_name_gets_at_most_a_5_0_connack_0x84() {
    let mut sim = Sim::new();
    let c = sim.open(ProtocolVersion::V5);
    sim.send_bytes(&c, &raw_connect(b"MQTX", 5, 0x02, &lp(b"x")));
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
    let mut bytes = bytes::BytesMut::from(&sim.recv_raw(&c)[..]);
    // Nothing, or a CONNACK a 5.0 client can read: 0x84 Unsupported Protocol Version.
    let mut decoder = mqtt_session::codec::Decoder::with_version(ProtocolVersion::V5);
    match decoder.decode(&mut bytes) {
        Ok(None) => assert!(bytes.is_empty()),
        Ok(Some(Packet::ConnAck(a))) => {
            assert_eq!(a.reason_code, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        }
        other => panic!("not a 5.0 CONNACK: {other:?} ({bytes:02x?})"),
    }
}

// v5 [MQTT-3.15.1-1]
#[test]
fn v5_auth_with_reserved_flags_set_is_malformed() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect_raw(connect_token("dev"));
    sim.send(
        &c,
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TOKEN",
            Some(b"answer"),
        ),
    );
    sim.recv(&mut c);
    sim.send_bytes(&c, &[0xF1, 0x00]);
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::MALFORMED_PACKET)
    );
    assert!(sim.is_closed(&c));
}

/// A policy that accepts every CONNECT (Authentication Method included) and refuses every
/// re-authentication with 0x85, a reason code DISCONNECT does not have.
#[derive(Debug, Clone)]
struct ReauthRefused;

impl Policy for ReauthRefused {
    fn authenticate(&mut self, _info: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Accept
    }
    fn continue_authentication(&mut self, _: &str, _: &str, _: Option<&[u8]>) -> AuthDecision {
        AuthDecision::Reject(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
    }
}

// v5 [MQTT-3.14.2-1] [MQTT-4.12.1-2]
#[test]
fn v5_a_disconnect_uses_only_disconnect_reason_codes() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), ReauthRefused);
    let (mut c, ack) = sim.connect(connect_token("dev"));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.authentication_method(), Some("TOKEN"));
    sim.send(&c, auth(ReasonCode::RE_AUTHENTICATE, "TOKEN", Some(b"x")));
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::UNSPECIFIED_ERROR)
    );
    assert!(sim.is_closed(&c));
}

// ---- Client Identifier -------------------------------------------------------------------------

// v5 v3.1.1 [MQTT-3.1.3-5]
#[test]
fn client_ids_of_1_to_23_alphanumeric_characters_are_allowed() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        for id in [
            "0",
            "abcdefghijklmnopqrstuvw",
            "ABCDEFGHIJKLMNOPQRSTUVW",
            "01234567890123456789XYZ",
        ] {
            let connect = if version == ProtocolVersion::V5 {
                connect_v5(id, true, None)
            } else {
                connect_v311(id, true)
            };
            let (_c, ack) = sim.connect(connect);
            assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{id}");
            assert!(sim.broker.is_connected(id));
        }
    }
}

// v5 [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16]
#[test]
fn v5_an_empty_client_id_gets_an_assigned_identifier_returned_in_connack() {
    let policy = TestPolicy::default();
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy.clone());
    let (_c, ack) = sim.connect(connect_v5("", true, Some(60)));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let assigned = ack
        .properties
        .assigned_client_identifier()
        .expect("Assigned Client Identifier");
    let assigned = assigned.to_owned();
    assert!(!assigned.is_empty());
    // Processed as if the client had sent it: the session, the policy, the event use it.
    assert!(sim.broker.is_connected(&assigned));
    assert_eq!(policy.log()[0], format!("connect {assigned} - -"));
    assert_eq!(connected_events(&sim), [(assigned.clone(), false)]);
    // A second client without an identifier gets another one.
    let (_d, ack2) = sim.connect(connect_v5("", true, Some(60)));
    let second = ack2.properties.assigned_client_identifier().unwrap();
    assert_ne!(second, assigned);
    assert_eq!(sim.broker.session_count(), 2);
}

// v5 [MQTT-3.1.3-7] [MQTT-3.1.2-5] [MQTT-3.2.2-3]
#[test]
fn v5_a_session_under_an_assigned_client_id_can_be_resumed_with_that_id() {
    let mut sim = Sim::new();
    let (mut c, ack) = sim.connect(connect_v5("", false, Some(600)));
    let assigned = ack.properties.assigned_client_identifier().unwrap();
    sim.subscribe_ack(&mut c, subscribe(1, &[("t", QoS::AtLeastOnce)]));
    sim.drop_connection(&c);
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("t", b"kept", QoS::AtLeastOnce, Some(1)));
    let (mut again, ack) = sim.connect(connect_v5(assigned, false, Some(600)));
    assert!(ack.session_present);
    assert_eq!(ack.properties.assigned_client_identifier(), None);
    assert_eq!(payloads(&sim.recv_publishes(&mut again)), ["kept"]);
}

// v5 [MQTT-3.2.2-16]
#[test]
fn v5_the_assigned_client_id_is_not_the_id_of_an_existing_session() {
    let mut sim = Sim::new();
    // Sessions named like the identifiers the broker assigns, one offline, one online.
    let (c1, _) = sim.connect(connect_v5("auto-1", true, Some(600)));
    sim.drop_connection(&c1);
    let (_c2, _) = sim.connect(connect_v5("auto-2", true, Some(600)));
    let (_c3, ack) = sim.connect(connect_v5("", true, None));
    let assigned = ack.properties.assigned_client_identifier().unwrap();
    assert!(!["auto-1", "auto-2"].contains(&assigned), "{assigned:?}");
    // The existing sessions were not touched.
    assert!(sim.broker.has_session("auto-1"));
    assert!(sim.broker.is_connected("auto-2"));
    assert!(sim.sessions_ended().is_empty());
}

// v5 [MQTT-3.1.3-8] [MQTT-3.2.2-6] [MQTT-3.2.2-7]
#[test]
fn v5_a_refused_empty_client_id_gets_0x85_and_the_connection_is_closed() {
    let config = config_with(|c| c.allow_empty_client_id = false);
    let mut sim = Sim::with_config(config);
    let (c, ack) = sim.connect(connect_v5("", true, None));
    assert_eq!(ack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(!ack.session_present);
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
    assert!(sim.events.iter().any(|e| matches!(e,
        BrokerEvent::ConnectionRejected { reason_code, .. } if *reason_code == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)));
}

// v3.1.1 [MQTT-3.1.3-6]
#[test]
fn v311_an_empty_client_id_with_clean_session_is_given_a_unique_id() {
    let mut sim = Sim::new();
    let (_a, ack_a) = sim.connect(connect_v311("", true));
    let (_b, ack_b) = sim.connect(connect_v311("", true));
    assert_eq!(ack_a.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack_b.reason_code, ReasonCode::SUCCESS);
    // 3.1.1 has no property to tell the client; the broker still keeps two sessions apart.
    let ids = connected_events(&sim);
    assert_eq!(ids.len(), 2);
    assert!(!ids[0].0.is_empty());
    assert_ne!(ids[0].0, ids[1].0);
    assert_eq!(sim.broker.session_count(), 2);
}

// v3.1.1 [MQTT-3.1.3-8] [MQTT-3.2.2-4] [MQTT-3.2.2-5]
#[test]
fn v311_an_empty_client_id_without_clean_session_is_rejected_with_0x02() {
    let mut sim = Sim::new();
    let (c, ack) = sim.connect(connect_v311("", false));
    // Return code 0x02 (Identifier rejected) decodes as 0x85.
    assert_eq!(ack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(!ack.session_present);
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
}

// v3.1.1 [MQTT-3.1.3-9]
#[test]
fn v311_a_client_id_the_server_refuses_gets_0x02() {
    let config = config_with(|c| c.allow_empty_client_id = false);
    let mut sim = Sim::with_config(config);
    let (c, ack) = sim.connect(connect_v311("", true));
    assert_eq!(ack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(sim.is_closed(&c));
}

// ---- Clean Start and sessions ------------------------------------------------------------------

// v5 [MQTT-3.1.2-4] [MQTT-3.1.4-4] [MQTT-3.2.2-2]
#[test]
fn v5_mqtt_3_1_2_4_clean_start_discards_the_session() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::AtLeastOnce)]);
    sim.drop_connection(&sub);
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("t", b"queued", QoS::AtLeastOnce, Some(1)));
    assert_eq!(sim.broker.pending_messages("s"), 1);

    let (mut s2, ack) = sim.connect(connect_v5("s", true, Some(600)));
    assert!(!ack.session_present);
    assert_eq!(sim.sessions_ended(), ["s"]);
    // Neither the queued message nor the subscription survived.
    assert!(sim.recv(&mut s2).is_empty());
    assert_eq!(sim.broker.pending_messages("s"), 0);
    let acks = sim.publish(&mut p, publish("t", b"after", QoS::AtLeastOnce, Some(2)));
    assert!(
        matches!(&acks[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
    assert!(sim.recv(&mut s2).is_empty());
}

// v5 [MQTT-3.1.2-5] [MQTT-3.2.2-3] [MQTT-3.1.3-2]
#[test]
fn v5_clean_start_0_resumes_the_existing_session_and_its_subscriptions() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(
        connect_v5("s", true, Some(600)),
        &[("t/+", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&sub);
    sim.advance(100);
    let (mut s2, ack) = sim.connect(connect_v5("s", false, Some(600)));
    assert!(ack.session_present);
    assert_eq!(connected_events(&sim)[1], ("s".to_owned(), true));
    // No new SUBSCRIBE: the session's subscription still routes.
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("t/1", b"hello", QoS::AtLeastOnce, Some(1)));
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["hello"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

// v5 [MQTT-3.1.2-6] [MQTT-3.2.2-3]
#[test]
fn v5_clean_start_0_without_a_session_creates_one_with_session_present_0() {
    let mut sim = Sim::new();
    let (c, ack) = sim.connect(connect_v5("new", false, Some(600)));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    assert!(sim.broker.has_session("new"));
    sim.drop_connection(&c);
    let (_c2, ack2) = sim.connect(connect_v5("new", false, Some(600)));
    assert!(ack2.session_present);
}

// v5 [MQTT-3.1.2-23]
#[test]
fn v5_the_session_is_kept_after_the_connection_only_with_a_session_expiry_above_0() {
    let mut sim = Sim::new();
    let (kept, _) = sim.connect(connect_v5("kept", true, Some(1)));
    let (absent, _) = sim.connect(connect_v5("absent", true, None));
    let (zero, _) = sim.connect(connect_v5("zero", true, Some(0)));
    for c in [&kept, &absent, &zero] {
        sim.drop_connection(c);
    }
    assert!(sim.broker.has_session("kept"));
    assert!(!sim.broker.has_session("absent"));
    assert!(!sim.broker.has_session("zero"));
    assert_eq!(sim.sessions_ended(), ["absent", "zero"]);
}

// v5 [MQTT-4.1.0-2] [MQTT-3.2.2-3]
#[test]
fn v5_the_session_is_discarded_once_the_session_expiry_interval_has_passed() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(connect_v5("s", true, Some(30)), &[("t", QoS::AtLeastOnce)]);
    sim.drop_connection(&sub);
    sim.advance_ms(29_999);
    assert!(sim.broker.has_session("s"));
    assert!(sim.sessions_ended().is_empty());
    sim.advance_ms(1);
    assert!(!sim.broker.has_session("s"));
    assert_eq!(sim.sessions_ended(), ["s"]);
    assert_eq!(sim.broker.subscription_count(), 0);
    let (_s2, ack) = sim.connect(connect_v5("s", false, Some(30)));
    assert!(!ack.session_present);
}

// v5 [MQTT-4.1.0-1]
#[test]
fn v5_the_session_is_not_discarded_while_its_connection_is_open() {
    let mut sim = Sim::new();
    let (c, _) = sim.connect(connect_v5("s", true, Some(10)));
    sim.drop_connection(&c);
    sim.advance(5);
    // Back before expiry; the old deadline (5 s from now) must not end the resumed session.
    let (mut c2, ack) = sim.connect(connect_v5("s", false, Some(10)));
    assert!(ack.session_present);
    for _ in 0..10 {
        sim.advance(10);
        sim.send(&c2, Packet::PingReq);
        assert_eq!(sim.recv(&mut c2), [Packet::PingResp]);
    }
    assert!(sim.broker.is_connected("s"));
    assert!(sim.sessions_ended().is_empty());
}

// v5 [MQTT-3.1.2-23]
#[test]
fn v5_session_expiry_0xffffffff_never_expires() {
    let config = config_with(|c| c.max_keep_alive = None);
    let mut sim = Sim::with_config(config);
    let (c, _) = sim.connect(connect_v5("forever", true, Some(u32::MAX)));
    sim.drop_connection(&c);
    sim.advance(10 * 365 * 24 * 3600);
    assert!(sim.broker.has_session("forever"));
    let (_c2, ack) = sim.connect(connect_v5("forever", false, Some(u32::MAX)));
    assert!(ack.session_present);
}

/// Section 3.2.2.3.2: a server that grants less than asked says so in CONNACK, and uses it.
#[test]
fn v5_a_capped_session_expiry_is_returned_in_connack_and_used() {
    let config = config_with(|c| c.max_session_expiry = Some(60));
    let mut sim = Sim::with_config(config);
    let (c, ack) = sim.connect(connect_v5("s", true, Some(3600)));
    assert_eq!(ack.properties.session_expiry_interval, Some(60));
    sim.drop_connection(&c);
    sim.advance(60);
    assert!(!sim.broker.has_session("s"));
    // A request within the limit is not echoed.
    let (_c, ack) = sim.connect(connect_v5("t", true, Some(30)));
    assert_eq!(ack.properties.session_expiry_interval, None);
}

/// Section 3.14.2.2.2: the Session Expiry Interval of DISCONNECT replaces the CONNECT's.
#[test]
fn v5_disconnect_can_shorten_the_session_expiry_to_0() {
    let mut sim = Sim::new();
    let (c, _) = sim.connect(connect_v5("s", true, Some(600)));
    sim.send(&c, disconnect_with_expiry(ReasonCode::SUCCESS, 0));
    assert!(sim.is_closed(&c));
    assert!(!sim.broker.has_session("s"));
    assert_eq!(sim.sessions_ended(), ["s"]);

    let (d, _) = sim.connect(connect_v5("d", true, Some(5)));
    sim.send(&d, disconnect_with_expiry(ReasonCode::SUCCESS, 100));
    sim.advance(99);
    assert!(sim.broker.has_session("d"));
    sim.advance(1);
    assert!(!sim.broker.has_session("d"));
}

/// Section 3.14.2.2.2: a non-zero Session Expiry Interval at DISCONNECT after 0 at CONNECT is
/// a Protocol Error; the session still ends with its connection.
#[test]
fn v5_disconnect_raising_a_zero_session_expiry_is_a_protocol_error() {
    let mut sim = Sim::new();
    let (mut c, _) = sim.connect(connect_v5("s", true, None));
    sim.send(&c, disconnect_with_expiry(ReasonCode::SUCCESS, 60));
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
    assert!(sim.is_closed(&c));
    assert!(!sim.broker.has_session("s"));
}

// ---- Session takeover --------------------------------------------------------------------------

// v5 [MQTT-3.1.4-3] [MQTT-3.2.2-3]
#[test]
fn v5_takeover_disconnects_the_existing_client_with_0x8e_and_keeps_the_session() {
    let mut sim = Sim::new();
    let mut first = sim.subscriber(
        connect_v5("same", true, Some(60)),
        &[("t", QoS::AtLeastOnce)],
    );
    let (mut second, ack) = sim.connect(connect_v5("same", false, Some(60)));
    assert!(ack.session_present);
    assert_eq!(
        disconnect_reason(&sim.recv(&mut first)),
        Some(ReasonCode::SESSION_TAKEN_OVER)
    );
    assert!(sim.is_closed(&first));
    assert!(!sim.is_closed(&second));
    assert!(sim.events.iter().any(|e| matches!(e,
        BrokerEvent::ClientDisconnected { connection, graceful: false, .. } if *connection == first.conn)));
    // Messages now go to the new connection only.
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("t", b"m", QoS::AtLeastOnce, Some(1)));
    assert_eq!(payloads(&sim.recv_publishes(&mut second)), ["m"]);
    assert!(sim.recv(&mut first).is_empty());
}

// v3.1.1 [MQTT-3.1.4-2] [MQTT-3.2.2-2]
#[test]
fn v311_takeover_closes_the_existing_connection() {
    let mut sim = Sim::new();
    let (mut first, _) = sim.connect(connect_v311("same", false));
    let (second, ack) = sim.connect(connect_v311("same", false));
    assert!(ack.session_present);
    // 3.1.1 has no server DISCONNECT: the connection is just closed.
    assert!(sim.recv(&mut first).is_empty());
    assert!(sim.is_closed(&first));
    assert!(!sim.is_closed(&second));
    assert!(sim.broker.is_connected("same"));
    assert_eq!(sim.broker.connection_count(), 1);
}

// v5 [MQTT-3.1.4-2] [MQTT-3.2.2-6] [MQTT-3.2.2-7]
#[test]
fn v5_a_refused_connect_does_not_take_over_or_touch_the_existing_session() {
    let policy = TestPolicy {
        users: vec![("alice".to_owned(), b"secret".to_vec())],
        ..TestPolicy::default()
    };
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy);
    let mut good = connect_v5("dev", true, Some(600));
    good.username = Some(utf8("alice"));
    good.password = Some(Bytes::from_static(b"secret"));
    let (mut first, ack) = sim.connect(good);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);

    let mut bad = connect_v5("dev", false, Some(600));
    bad.username = Some(utf8("alice"));
    bad.password = Some(Bytes::from_static(b"guess"));
    let (intruder, ack) = sim.connect(bad);
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // Session Present is 0 with an error even though a session exists.
    assert!(!ack.session_present);
    assert!(sim.is_closed(&intruder));
    assert!(!sim.is_closed(&first));
    assert!(sim.recv(&mut first).is_empty());
    assert!(sim.broker.is_connected("dev"));
}

// ---- Authentication policy ---------------------------------------------------------------------

// v5 [MQTT-3.1.4-2] [MQTT-3.2.2-8]
#[test]
fn v5_user_name_and_password_are_checked_by_the_policy() {
    let policy = TestPolicy {
        users: vec![("alice".to_owned(), b"secret".to_vec())],
        banned: vec!["mallory".to_owned()],
        ..TestPolicy::default()
    };
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy.clone());
    let cases = [
        (
            "a",
            Some("alice"),
            Some(&b"secret"[..]),
            ReasonCode::SUCCESS,
        ),
        (
            "b",
            Some("alice"),
            Some(&b"wrong"[..]),
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ),
        ("c", None, None, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (
            "mallory",
            Some("alice"),
            Some(&b"secret"[..]),
            ReasonCode::BANNED,
        ),
    ];
    for (id, user, password, want) in cases {
        let mut c = connect_v5(id, true, None);
        c.username = user.map(utf8);
        c.password = password.map(Bytes::from_static);
        let (client, ack) = sim.connect(c);
        assert_eq!(ack.reason_code, want, "{id}");
        assert_eq!(sim.is_closed(&client), want.is_error(), "{id}");
    }
    assert_eq!(policy.log()[0], "connect a alice -");
    assert!(sim.broker.is_connected("a"));
    assert_eq!(sim.broker.session_count(), 1);
}

// v5 [MQTT-3.1.4-6]
// v3.1.1 [MQTT-3.1.4-5]
#[test]
fn data_after_a_refused_connect_is_not_processed() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let policy = TestPolicy {
            banned: vec!["bad".to_owned()],
            ..TestPolicy::default()
        };
        let mut sim = Sim::with_policy(BrokerConfig::default(), policy.clone());
        let mut c = sim.open(version);
        let connect = if version.is_v5() {
            connect_v5("bad", true, None)
        } else {
            connect_v311("bad", true)
        };
        // CONNECT, then a retained PUBLISH and a SUBSCRIBE in the same read.
        let mut bytes = bytes::BytesMut::new();
        Packet::from(connect).encode(version, &mut bytes).unwrap();
        Packet::from(retained("r", b"sneaky"))
            .encode(version, &mut bytes)
            .unwrap();
        Packet::from(subscribe(1, &[("#", QoS::AtMostOnce)]))
            .encode(version, &mut bytes)
            .unwrap();
        sim.send_bytes(&c, &bytes);
        let got = sim.recv(&mut c);
        assert!(
            matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code.is_error()),
            "{got:?}"
        );
        assert!(sim.is_closed(&c));
        assert_eq!(sim.broker.retained_count(), 0);
        assert_eq!(sim.broker.subscription_count(), 0);
        assert_eq!(policy.log().len(), 1, "{:?}", policy.log());
    }
}

/// A policy that refuses every CONNECT with one reason code.
#[derive(Debug, Clone)]
struct RejectWith(ReasonCode);

impl Policy for RejectWith {
    fn authenticate(&mut self, _info: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Reject(self.0)
    }
}

// v5 [MQTT-3.2.2-8] [MQTT-3.2.2-6] [MQTT-3.2.2-7]
#[test]
fn v5_a_refusal_uses_only_connack_reason_codes() {
    let cases = [
        (ReasonCode::SERVER_BUSY, ReasonCode::SERVER_BUSY),
        (ReasonCode::BANNED, ReasonCode::BANNED),
        // Not a CONNACK reason code: Unspecified error instead.
        (
            ReasonCode::PACKET_IDENTIFIER_IN_USE,
            ReasonCode::UNSPECIFIED_ERROR,
        ),
        (
            ReasonCode::SESSION_TAKEN_OVER,
            ReasonCode::UNSPECIFIED_ERROR,
        ),
    ];
    for (decision, sent) in cases {
        let mut sim = Sim::with_policy(BrokerConfig::default(), RejectWith(decision));
        let (c, ack) = sim.connect(connect_v5("c", true, None));
        assert_eq!(ack.reason_code, sent);
        assert!(!ack.session_present);
        assert!(sim.is_closed(&c));
    }
}

// v3.1.1 [MQTT-3.2.2-4] [MQTT-3.2.2-5]
#[test]
fn v311_a_refusal_uses_only_3_1_1_return_codes() {
    let cases = [
        (
            ReasonCode::SERVER_UNAVAILABLE,
            ReasonCode::SERVER_UNAVAILABLE,
        ),
        (
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (ReasonCode::SERVER_BUSY, ReasonCode::NOT_AUTHORIZED),
    ];
    for (decision, sent) in cases {
        let mut sim = Sim::with_policy(BrokerConfig::default(), RejectWith(decision));
        let (c, ack) = sim.connect(connect_v311("c", true));
        assert_eq!(ack.reason_code, sent);
        assert!(sim.is_closed(&c));
    }
}

// v3.1.1 [MQTT-3.2.2-4] [MQTT-3.2.2-5]
#[test]
fn v311_a_refused_connect_gets_a_3_1_1_return_code_and_session_present_0() {
    let policy = TestPolicy {
        users: vec![("alice".to_owned(), b"secret".to_vec())],
        banned: vec!["mallory".to_owned()],
        ..TestPolicy::default()
    };
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy);
    // A session exists for "dev".
    let mut ok = connect_v311("dev", false);
    ok.username = Some(utf8("alice"));
    ok.password = Some(Bytes::from_static(b"secret"));
    let (c, _) = sim.connect(ok);
    sim.drop_connection(&c);

    let mut bad = connect_v311("dev", false);
    bad.username = Some(utf8("alice"));
    bad.password = Some(Bytes::from_static(b"nope"));
    let (c, ack) = sim.connect(bad);
    // Return code 4 (bad user name or password).
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert!(!ack.session_present);
    assert!(sim.is_closed(&c));

    // 0x8A (Banned) has no 3.1.1 return code: 5 (not authorized) is used.
    let mut banned = connect_v311("mallory", true);
    banned.username = Some(utf8("alice"));
    banned.password = Some(Bytes::from_static(b"secret"));
    let (c, ack) = sim.connect(banned);
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert!(sim.is_closed(&c));
}

// ---- Enhanced authentication -------------------------------------------------------------------

// v5 [MQTT-4.12.0-2] [MQTT-4.12.0-5] [MQTT-3.2.0-1] [MQTT-3.15.2-1]
#[test]
fn v5_enhanced_authentication_exchanges_auth_before_a_connack_with_the_method() {
    let policy = token_policy();
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy.clone());
    let (mut c, got) = sim.connect_raw(connect_token("dev"));
    // AUTH 0x18 with the same method and the challenge; no CONNACK yet.
    let Packet::Auth(challenge) = only(got) else {
        panic!("expected AUTH")
    };
    assert_eq!(challenge.reason_code, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(challenge.properties.authentication_method(), Some("TOKEN"));
    assert_eq!(
        challenge.properties.authentication_data(),
        Some(&b"challenge"[..])
    );
    assert!(!sim.broker.is_connected("dev"));

    sim.send(
        &c,
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TOKEN",
            Some(b"answer"),
        ),
    );
    let Packet::ConnAck(ack) = only(sim.recv(&mut c)) else {
        panic!("expected CONNACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.authentication_method(), Some("TOKEN"));
    assert!(sim.broker.is_connected("dev"));
    assert_eq!(
        policy.log(),
        ["connect dev - TOKEN", "auth dev TOKEN answer"]
    );
}

// v5 [MQTT-4.12.0-2] [MQTT-4.12.0-5]
#[test]
fn v5_enhanced_authentication_may_take_several_rounds() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, got) = sim.connect_raw(connect_token("dev"));
    assert!(matches!(&got[..], [Packet::Auth(_)]));
    sim.send(
        &c,
        auth(ReasonCode::CONTINUE_AUTHENTICATION, "TOKEN", Some(b"more")),
    );
    let Packet::Auth(again) = only(sim.recv(&mut c)) else {
        panic!("expected AUTH")
    };
    assert_eq!(again.reason_code, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(again.properties.authentication_method(), Some("TOKEN"));
    assert_eq!(again.properties.authentication_data(), Some(&b"again"[..]));
    sim.send(
        &c,
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TOKEN",
            Some(b"answer"),
        ),
    );
    assert!(
        matches!(&sim.recv(&mut c)[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::SUCCESS)
    );
}

// v5 [MQTT-4.12.0-4] [MQTT-3.2.2-6] [MQTT-3.2.2-7]
#[test]
fn v5_enhanced_authentication_can_be_refused_with_a_connack_error_and_close() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect_raw(connect_token("dev"));
    sim.send(
        &c,
        auth(ReasonCode::CONTINUE_AUTHENTICATION, "TOKEN", Some(b"wrong")),
    );
    let Packet::ConnAck(ack) = only(sim.recv(&mut c)) else {
        panic!("expected CONNACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert!(!ack.session_present);
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
}

// v5 [MQTT-4.12.0-1]
#[test]
fn v5_an_unsupported_authentication_method_is_refused_with_0x8c() {
    // The default policy supports no method at all.
    let mut sim = Sim::new();
    let (c, ack) = sim.connect(connect_token("dev"));
    assert_eq!(ack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(sim.is_closed(&c));
    // A policy supporting another method.
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let mut other = connect_token("dev");
    other
        .properties
        .set_authentication_method(Some(utf8("SCRAM-SHA-1")));
    let (c, ack) = sim.connect(other);
    assert_eq!(ack.reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
}

// v5 [MQTT-3.1.2-30] [MQTT-3.14.0-1]
#[test]
fn v5_a_packet_other_than_auth_during_authentication_is_a_protocol_error_answered_by_connack() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect_raw(connect_token("dev"));
    sim.send(&c, retained("r", b"too early"));
    let got = sim.recv(&mut c);
    // No DISCONNECT before a successful CONNACK: the error is a CONNACK.
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::PROTOCOL_ERROR && !a.session_present),
        "{got:?}"
    );
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.retained_count(), 0);
}

// v5 [MQTT-4.12.0-5]
#[test]
fn v5_auth_with_another_method_during_authentication_is_a_protocol_error() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect_raw(connect_token("dev"));
    sim.send(
        &c,
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "OTHER",
            Some(b"answer"),
        ),
    );
    let got = sim.recv(&mut c);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::PROTOCOL_ERROR)
    );
    assert!(sim.is_closed(&c));
    assert!(!sim.broker.has_session("dev"));
}

// v5 [MQTT-4.12.0-3]
#[test]
fn v5_auth_without_continue_authentication_during_authentication_is_a_protocol_error() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect_raw(connect_token("dev"));
    sim.send(
        &c,
        auth(ReasonCode::RE_AUTHENTICATE, "TOKEN", Some(b"answer")),
    );
    let got = sim.recv(&mut c);
    assert!(
        matches!(&got[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::PROTOCOL_ERROR)
    );
    assert!(sim.is_closed(&c));
}

/// A policy that asks every client for more authentication data.
#[derive(Debug, Clone)]
struct AlwaysContinue;

impl Policy for AlwaysContinue {
    fn authenticate(&mut self, _info: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Continue(Some(Bytes::from_static(b"more please")))
    }
}

// v5 [MQTT-4.12.0-6]
#[test]
fn v5_no_auth_packet_is_sent_to_a_client_without_an_authentication_method() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), AlwaysContinue);
    let (c, got) = sim.connect_raw(connect_v5("plain", true, None));
    assert!(got.iter().all(|p| !matches!(p, Packet::Auth(_))), "{got:?}");
    let [Packet::ConnAck(ack)] = &got[..] else {
        panic!("expected a CONNACK, got {got:?}")
    };
    assert!(ack.reason_code.is_error());
    assert_eq!(ack.properties.authentication_method(), None);
    assert!(sim.is_closed(&c));
}

// v5 [MQTT-4.12.0-7]
#[test]
fn v5_auth_from_a_client_that_did_not_use_enhanced_authentication_is_a_protocol_error() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect(connect_v5("plain", true, None));
    sim.send(
        &c,
        auth(ReasonCode::RE_AUTHENTICATE, "TOKEN", Some(b"answer")),
    );
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
    assert!(sim.is_closed(&c));
}

// v5 [MQTT-4.12.1-1] [MQTT-4.12.0-5]
#[test]
fn v5_re_authentication_after_connack_succeeds_with_auth_0x00() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect_raw(connect_token("dev"));
    sim.send(
        &c,
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TOKEN",
            Some(b"answer"),
        ),
    );
    assert!(
        matches!(&sim.recv(&mut c)[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::SUCCESS)
    );

    sim.send(
        &c,
        auth(ReasonCode::RE_AUTHENTICATE, "TOKEN", Some(b"answer")),
    );
    let Packet::Auth(done) = only(sim.recv(&mut c)) else {
        panic!("expected AUTH")
    };
    assert_eq!(done.reason_code, ReasonCode::SUCCESS);
    assert_eq!(done.properties.authentication_method(), Some("TOKEN"));
    // The connection goes on as before.
    assert!(!sim.is_closed(&c));
    sim.send(&c, Packet::PingReq);
    assert_eq!(sim.recv(&mut c), [Packet::PingResp]);
}

// v5 [MQTT-4.12.1-2]
#[test]
fn v5_a_failed_re_authentication_disconnects_and_closes() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let (mut c, _) = sim.connect_raw(connect_token("dev"));
    sim.send(
        &c,
        auth(
            ReasonCode::CONTINUE_AUTHENTICATION,
            "TOKEN",
            Some(b"answer"),
        ),
    );
    sim.recv(&mut c);
    sim.send(
        &c,
        auth(ReasonCode::RE_AUTHENTICATE, "TOKEN", Some(b"stolen")),
    );
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::NOT_AUTHORIZED)
    );
    assert!(sim.is_closed(&c));
    assert!(!sim.broker.is_connected("dev"));
}

// v5 [MQTT-3.1.2-22]
#[test]
fn v5_keep_alive_applies_while_enhanced_authentication_is_in_progress() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), token_policy());
    let mut connect = connect_token("dev");
    connect.keep_alive = 10;
    let (c, got) = sim.connect_raw(connect);
    assert!(matches!(&got[..], [Packet::Auth(_)]));
    // The client never answers the challenge.
    sim.advance(15);
    assert!(
        sim.is_closed(&c),
        "a silent client must be closed after 1.5 × Keep Alive"
    );
}

// ---- Capabilities announced in CONNACK ---------------------------------------------------------

// v5 [MQTT-3.2.2-9] [MQTT-3.2.2-10]
#[test]
fn v5_a_server_without_qos_2_says_so_and_still_accepts_subscribe_at_qos_2() {
    let config = config_with(|c| c.maximum_qos = QoS::AtLeastOnce);
    let mut sim = Sim::with_config(config);
    let (mut c, ack) = sim.connect(connect_v5("c", true, None));
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    sim.send(
        &c,
        subscribe(3, &[("a", QoS::ExactlyOnce), ("b", QoS::AtMostOnce)]),
    );
    let Packet::SubAck(s) = only(sim.recv(&mut c)) else {
        panic!("expected SUBACK")
    };
    assert_eq!(
        s.reason_codes,
        [ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_0]
    );
    // A PUBLISH above the Maximum QoS is refused with 0x9B (section 3.2.2.3.4).
    sim.send(&c, publish("a", b"x", QoS::ExactlyOnce, Some(1)));
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::QOS_NOT_SUPPORTED)
    );
    assert!(sim.is_closed(&c));
}

// v5 [MQTT-3.2.2-12]
#[test]
fn v5_a_will_qos_above_the_maximum_qos_is_refused() {
    let config = config_with(|c| c.maximum_qos = QoS::AtLeastOnce);
    let mut sim = Sim::with_config(config);
    let mut connect = connect_v5("dev", true, None);
    connect.will = Some(will("status/dev", b"gone", QoS::ExactlyOnce, false));
    let (c, ack) = sim.connect(connect);
    assert_eq!(ack.reason_code, ReasonCode::QOS_NOT_SUPPORTED);
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
}

// v5 [MQTT-3.2.2-13]
#[test]
fn v5_a_retained_will_is_refused_when_retain_is_not_available() {
    let config = config_with(|c| c.retain_available = false);
    let mut sim = Sim::with_config(config);
    let mut connect = connect_v5("dev", true, None);
    connect.will = Some(will("status/dev", b"gone", QoS::AtMostOnce, true));
    let (c, ack) = sim.connect(connect);
    assert_eq!(ack.reason_code, ReasonCode::RETAIN_NOT_SUPPORTED);
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.session_count(), 0);
}

// v5 [MQTT-3.1.2-28]
#[test]
fn v5_response_information_is_returned_only_when_requested() {
    let config = config_with(|c| c.response_information = Some("replies/".to_owned()));
    let mut sim = Sim::with_config(config);
    let mut asks = connect_v5("asks", true, None);
    asks.properties.request_response_information = Some(true);
    let (_a, ack) = sim.connect(asks);
    assert_eq!(ack.properties.response_information(), Some("replies/"));
    let mut declines = connect_v5("declines", true, None);
    declines.properties.request_response_information = Some(false);
    let (_d, ack) = sim.connect(declines);
    assert_eq!(ack.properties.response_information(), None);
    let (_s, ack) = sim.connect(connect_v5("silent", true, None));
    assert_eq!(ack.properties.response_information(), None);
}

// v5 [MQTT-3.1.2-29]
#[test]
fn v5_no_reason_string_or_user_property_when_problem_information_is_declined() {
    let policy = TestPolicy {
        deny_publish: vec!["secret".to_owned()],
        ..TestPolicy::default()
    };
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy);
    let mut connect = connect_v5("c", true, None);
    connect.properties.request_problem_information = Some(false);
    let (mut c, _) = sim.connect(connect);
    let got = sim.publish(&mut c, publish("secret", b"x", QoS::AtLeastOnce, Some(1)));
    let Packet::PubAck(ack) = only(got) else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(ack.properties.reason_string(), None);
    assert!(ack.properties.user_properties().next().is_none());
}

/// Section 3.2.2.3.5: a PUBLISH with RETAIN when Retain Available is 0 is refused with 0x9A.
#[test]
fn v5_retain_not_available_is_announced_and_a_retained_publish_refused() {
    let config = config_with(|c| c.retain_available = false);
    let mut sim = Sim::with_config(config);
    let (mut c, ack) = sim.connect(connect_v5("c", true, None));
    assert_eq!(ack.properties.retain_available, Some(false));
    sim.send(&c, retained("r", b"x"));
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::RETAIN_NOT_SUPPORTED)
    );
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.retained_count(), 0);
}

// v5 [MQTT-3.14.4-1] [MQTT-3.14.4-2] [MQTT-3.14.2-2] [MQTT-4.13.1-1] [MQTT-4.13.2-1] [MQTT-3.6.1-1]
#[test]
fn v5_after_its_disconnect_for_a_protocol_error_the_server_sends_nothing_more() {
    let mut sim = Sim::new();
    let mut c = sim.subscriber(connect_v5("c", true, Some(600)), &[("t", QoS::AtMostOnce)]);
    // PUBREL with reserved flags 0000 instead of 0010: malformed.
    sim.send_bytes(&c, &[0x60, 0x02, 0x00, 0x01]);
    let got = sim.recv(&mut c);
    let [Packet::Disconnect(d)] = &got[..] else {
        panic!("expected DISCONNECT, got {got:?}")
    };
    assert_eq!(d.reason_code, ReasonCode::MALFORMED_PACKET);
    assert_eq!(d.properties.session_expiry_interval, None);
    assert!(sim.is_closed(&c));
    // Later messages for its session are not sent on the closed connection.
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("t", b"x", QoS::AtMostOnce, None));
    assert!(sim.recv(&mut c).is_empty());
    assert!(!sim.broker.is_connected("c"));
}

// ---- Keep alive --------------------------------------------------------------------------------

// v5 [MQTT-3.1.2-22] [MQTT-3.2.2-22]
#[test]
fn v5_the_clients_keep_alive_is_used_and_enforced_at_one_and_a_half_times() {
    let mut sim = Sim::new();
    let mut connect = connect_v5("k", true, None);
    connect.keep_alive = 10;
    let (mut c, ack) = sim.connect(connect);
    // Within the server's limit: no Server Keep Alive, the client's value holds.
    assert_eq!(ack.properties.server_keep_alive, None);
    sim.advance(9);
    // Any control packet counts, not only PINGREQ.
    sim.send(&c, subscribe(1, &[("t", QoS::AtMostOnce)]));
    sim.recv(&mut c);
    sim.advance_ms(14_999);
    assert!(!sim.is_closed(&c));
    sim.advance_ms(1);
    assert!(sim.is_closed(&c));
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert_eq!(sim.violations(), [ReasonCode::KEEP_ALIVE_TIMEOUT]);
}

// v5 [MQTT-3.1.2-22]
#[test]
fn v5_an_incomplete_packet_does_not_count_as_a_control_packet_for_keep_alive() {
    let mut sim = Sim::new();
    let mut connect = connect_v5("k", true, None);
    connect.keep_alive = 10;
    let (c, _) = sim.connect(connect);
    sim.advance(14);
    sim.send_bytes(&c, &[0xC0]); // the first byte of a PINGREQ
    sim.advance(1);
    assert!(sim.is_closed(&c));
}

/// Section 3.2.2.3.14: the server may impose a shorter keep alive; it then enforces that one.
// v5 [MQTT-3.1.2-22]
#[test]
fn v5_server_keep_alive_replaces_a_longer_client_keep_alive() {
    let config = config_with(|c| c.max_keep_alive = Some(30));
    let mut sim = Sim::with_config(config);
    let mut connect = connect_v5("k", true, None);
    connect.keep_alive = 100;
    let (c, ack) = sim.connect(connect);
    assert_eq!(ack.properties.server_keep_alive, Some(30));
    sim.advance_ms(44_999);
    assert!(!sim.is_closed(&c));
    sim.advance_ms(1);
    assert!(sim.is_closed(&c));
}

// v3.1.1 [MQTT-3.1.2-24]
#[test]
fn v311_keep_alive_is_enforced_at_one_and_a_half_times_without_disconnect() {
    let mut sim = Sim::new();
    let mut connect = connect_v311("k", true);
    connect.keep_alive = 4;
    let (mut c, _) = sim.connect(connect);
    sim.advance(5);
    sim.send(&c, Packet::PingReq);
    assert_eq!(sim.recv(&mut c), [Packet::PingResp]);
    sim.advance_ms(5_999);
    assert!(!sim.is_closed(&c));
    sim.advance_ms(1);
    assert!(sim.is_closed(&c));
    assert!(sim.recv(&mut c).is_empty());
}

/// Section 3.1.2.10 (3.1.1): a Keep Alive of 0 turns the mechanism off.
#[test]
fn v311_keep_alive_0_never_closes() {
    let mut sim = Sim::new();
    let (c, _) = sim.connect(connect_v311("k", true));
    sim.advance(7 * 24 * 3600);
    assert!(!sim.is_closed(&c));
    assert!(sim.broker.is_connected("k"));
}

// v5 v3.1.1 [MQTT-3.12.4-1]
#[test]
fn mqtt_3_12_4_1_pingreq_is_answered_with_pingresp() {
    for connect in [connect_v5("a", true, None), connect_v311("b", true)] {
        let mut sim = Sim::new();
        let (mut c, _) = sim.connect(connect);
        sim.send(&c, Packet::PingReq);
        sim.send(&c, Packet::PingReq);
        assert_eq!(sim.recv(&mut c), [Packet::PingResp, Packet::PingResp]);
    }
}

// ---- MQTT 3.1.1 Clean Session ------------------------------------------------------------------

// v3.1.1 [MQTT-3.1.2-4] [MQTT-3.2.2-2] [MQTT-3.1.2-5] [MQTT-3.1.3-2] [MQTT-3.1.4-3] [MQTT-4.5.0-1]
#[test]
fn v311_clean_session_0_resumes_and_keeps_qos_1_and_2_messages_while_offline() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(connect_v311("s", false), &[("t/#", QoS::ExactlyOnce)]);
    sim.drop_connection(&sub);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(&mut p, publish("t/0", b"zero", QoS::AtMostOnce, None));
    sim.publish(&mut p, publish("t/1", b"one", QoS::AtLeastOnce, Some(1)));
    sim.publish(&mut p, publish("t/2", b"two", QoS::ExactlyOnce, Some(2)));
    sim.send(&p, pubrel(pid(2)));
    sim.advance(3600);
    let (mut s2, ack) = sim.connect(connect_v311("s", false));
    assert!(ack.session_present);
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["one", "two"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
}

// v3.1.1 [MQTT-3.1.2-6] [MQTT-3.2.2-1] [MQTT-3.2.2-3] [MQTT-3.1.4-3]
#[test]
fn v311_clean_session_1_discards_the_previous_session_and_lasts_as_long_as_the_connection() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(connect_v311("s", false), &[("t", QoS::AtLeastOnce)]);
    sim.drop_connection(&sub);
    let (c, ack) = sim.connect(connect_v311("s", true));
    assert!(!ack.session_present);
    assert_eq!(sim.broker.subscription_count(), 0);
    sim.drop_connection(&c);
    assert!(!sim.broker.has_session("s"));
    // Nothing of it is used by a later session.
    let (_c, ack) = sim.connect(connect_v311("s", false));
    assert!(!ack.session_present);
}

// v3.1.1 [MQTT-3.1.2-7]
#[test]
fn v311_retained_messages_are_not_deleted_when_the_session_ends() {
    let mut sim = Sim::new();
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(
        &mut p,
        retained_qos("r/1", b"kept", QoS::AtLeastOnce, Some(1)),
    );
    sim.drop_connection(&p);
    assert_eq!(sim.sessions_ended(), ["p"]);
    assert_eq!(&sim.broker.retained("r/1").unwrap().payload[..], b"kept");
}

// v3.1.1 [MQTT-4.1.0-1] [MQTT-4.1.0-2]
#[test]
fn v311_a_clean_session_0_session_lasts_while_connected_and_after() {
    let mut sim = Sim::new();
    let (c, _) = sim.connect(connect_v311("s", false));
    sim.advance(24 * 3600);
    assert!(sim.broker.is_connected("s"));
    sim.drop_connection(&c);
    sim.advance(10 * 365 * 24 * 3600);
    assert!(sim.broker.has_session("s"));
    assert!(sim.sessions_ended().is_empty());
}
