//! What the host gives the broker engine besides a client's bytes: messages of its own
//! (`handle_publish`: `$SYS` topics, bridges, tests) and what it knows of a connection when it
//! opens (`handle_connection_opened_with`: the peer address and TLS identity the policy sees);
//! and what the engine never shows: a password or authentication data in `Debug`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use mqtt_session::broker::{
    AuthDecision, BrokerConfig, ConnectInfo, ConnectionInfo, Message, Policy,
};
use mqtt_session::codec::{QoS, ReasonCode};

#[test]
fn a_host_message_is_routed_and_retained_like_a_clients() {
    let mut sim = Sim::with_config(config_with(|c| c.maximum_qos = QoS::AtLeastOnce));
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("$SYS/#", QoS::AtLeastOnce)]);
    let mut m = Message::new(
        topic("$SYS/broker/uptime"),
        &b"42"[..],
        QoS::ExactlyOnce,
        true,
    );
    m.properties.message_expiry_interval = Some(30);
    assert!(sim.broker.handle_publish(m, sim.now));
    sim.drain();
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, Bytes::from_static(b"42"));
    // [MQTT-3.2.2-11] capped at the Maximum QoS; the expiry counts from now.
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[0].properties.message_expiry_interval, Some(30));
    // Retained, for a later subscriber; and no session matched a topic nobody follows.
    assert_eq!(sim.broker.retained_count(), 1);
    let m = Message::new(topic("nobody/listens"), &b"x"[..], QoS::AtMostOnce, false);
    assert!(!sim.broker.handle_publish(m, sim.now));
}

/// Records what the policy was told.
#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<Vec<String>>>);

impl Policy for Recorder {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        self.0.borrow_mut().push(format!("{info:?}"));
        if info.transport.tls_identity.as_deref() == Some("device-7") {
            AuthDecision::Accept
        } else {
            AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED)
        }
    }
}

#[test]
fn the_policy_sees_the_peer_and_tls_identity_and_never_a_password_in_debug() {
    let policy = Recorder::default();
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy.clone());
    let peer = "192.0.2.7:50000".parse().unwrap();
    let conn = sim.broker.handle_connection_opened_with(
        ConnectionInfo::from_peer(peer).with_tls_identity("device-7"),
        sim.now,
    );
    let mut connect = connect_v5("d7", true, None);
    connect.username = Some("device".try_into().unwrap());
    connect.password = Some(Bytes::from_static(b"s3cret-pass"));
    let mut bytes = bytes::BytesMut::new();
    mqtt_session::codec::Packet::from(connect)
        .encode(mqtt_session::codec::ProtocolVersion::V5, &mut bytes)
        .unwrap();
    sim.broker.handle_bytes(conn, &bytes, sim.now);
    sim.drain();
    assert!(sim.broker.has_session("d7"), "accepted on its TLS identity");
    let seen = policy.0.borrow().join("\n");
    assert!(
        seen.contains("192.0.2.7:50000") && seen.contains("device-7"),
        "{seen}"
    );
    assert!(!seen.contains("s3cret"), "{seen}");
    assert!(seen.contains("<redacted>"), "{seen}");
}
