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
    AuthDecision, AuthStep, BrokerConfig, ConnectInfo, ConnectionInfo, Message, Policy,
};
use mqtt_session::codec::{Packet, QoS, ReasonCode};

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

// ---- authentication decided later (AuthDecision::Defer) ----------------------------------------

/// Defers every decision to the host.
#[derive(Clone, Default)]
struct Later;

impl Policy for Later {
    fn authenticate(&mut self, _: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Defer
    }

    fn continue_authentication(&mut self, _: &str, _: &str, _: Option<&[u8]>) -> AuthDecision {
        AuthDecision::Defer
    }
}

fn open_and_send(sim: &mut Sim<Later>, packets: &[mqtt_session::codec::Packet]) -> Client {
    let c = sim.open(mqtt_session::codec::ProtocolVersion::V5);
    for p in packets {
        sim.send(&c, p.clone());
    }
    c
}

/// A deferred CONNECT: the host is asked (the password is in the request, not in its Debug),
/// the connection is paused, nothing is answered, and the input behind the CONNECT waits; the
/// host's answer completes the CONNECT and the waiting input is handled after it.
#[test]
fn a_deferred_connect_waits_for_the_hosts_answer_with_its_input() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), Later);
    let mut connect = connect_v5("c", true, None);
    connect.username = Some("alice".try_into().unwrap());
    connect.password = Some(Bytes::from_static(b"pa55word"));
    let mut c = open_and_send(
        &mut sim,
        &[
            connect.into(),
            subscribe(1, &[("t", QoS::AtMostOnce)]).into(),
        ],
    );
    assert_eq!(sim.auth_requests.len(), 1);
    let (conn, request) = sim.auth_requests[0].clone();
    assert_eq!(conn, c.conn);
    assert_eq!(request.step, AuthStep::Connect);
    assert_eq!(request.username.as_deref(), Some("alice"));
    assert_eq!(request.password.as_deref(), Some(&b"pa55word"[..]));
    assert!(!format!("{request:?}").contains("pa55"));
    assert!(sim.paused.contains(&c.conn), "not read while deciding");
    assert!(sim.recv(&mut c).is_empty(), "no CONNACK, no SUBACK yet");
    assert!(!sim.broker.has_session("c"));

    sim.broker
        .handle_auth_decision(c.conn, AuthDecision::Accept, sim.now);
    sim.drain();
    let got = sim.recv(&mut c);
    assert!(
        matches!(got.as_slice(), [Packet::ConnAck(a), Packet::SubAck(_)] if a.reason_code == ReasonCode::SUCCESS),
        "{got:?}"
    );
    assert!(!sim.paused.contains(&c.conn));
    // A second answer, or one for a connection that asked nothing, is ignored.
    sim.broker
        .handle_auth_decision(c.conn, AuthDecision::Reject(ReasonCode::BANNED), sim.now);
    sim.drain();
    assert!(sim.recv(&mut c).is_empty());
    assert!(!sim.is_closed(&c));
}

#[test]
fn a_deferred_connect_can_be_refused_and_an_answer_after_the_close_is_ignored() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), Later);
    let mut c = open_and_send(&mut sim, &[connect_v5("c", true, None).into()]);
    sim.broker.handle_auth_decision(
        c.conn,
        AuthDecision::Reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        sim.now,
    );
    sim.drain();
    let got = sim.recv(&mut c);
    assert!(
        matches!(got.as_slice(), [Packet::ConnAck(a)] if a.reason_code == ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        "{got:?}"
    );
    assert!(sim.is_closed(&c));

    let d = open_and_send(&mut sim, &[connect_v5("d", true, None).into()]);
    sim.drop_connection(&d);
    sim.broker
        .handle_auth_decision(d.conn, AuthDecision::Accept, sim.now);
    sim.drain();
    assert!(
        !sim.broker.has_session("d"),
        "an answer for a closed connection is ignored"
    );
}

/// Two CONNECTs with the same Client Identifier are completed in the order they arrived, even
/// when the host answers the second first: the second then takes the session over.
#[test]
fn deferred_connects_with_one_client_id_complete_in_arrival_order() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), Later);
    let mut first = open_and_send(&mut sim, &[connect_v5("same", true, Some(60)).into()]);
    let mut second = open_and_send(&mut sim, &[connect_v5("same", false, Some(60)).into()]);
    sim.broker
        .handle_auth_decision(second.conn, AuthDecision::Accept, sim.now);
    sim.drain();
    assert!(sim.recv(&mut second).is_empty(), "waits for the first");
    sim.broker
        .handle_auth_decision(first.conn, AuthDecision::Accept, sim.now);
    sim.drain();
    // The first connected, then was taken over by the second (Session Present).
    let got = sim.recv(&mut first);
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if !a.session_present),
        "{got:?}"
    );
    assert!(sim.is_closed(&first));
    let got = sim.recv(&mut second);
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if a.session_present),
        "{got:?}"
    );
    assert!(!sim.is_closed(&second));

    // The first closing before its answer lets the second go on at once.
    let a = open_and_send(&mut sim, &[connect_v5("other", true, None).into()]);
    let mut b = open_and_send(&mut sim, &[connect_v5("other", true, None).into()]);
    sim.broker
        .handle_auth_decision(b.conn, AuthDecision::Accept, sim.now);
    sim.drain();
    assert!(sim.recv(&mut b).is_empty());
    sim.drop_connection(&a);
    let got = sim.recv(&mut b);
    assert!(
        matches!(got.first(), Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::SUCCESS),
        "{got:?}"
    );
}

/// Enhanced authentication with the decisions deferred: AUTH exchange, then success.
#[test]
fn a_deferred_enhanced_authentication_exchange() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), Later);
    let mut connect = connect_v5("e", true, None);
    connect
        .properties
        .set_authentication_method(Some("token".try_into().unwrap()));
    connect
        .properties
        .set_authentication_data(Some(b"hello"))
        .unwrap();
    let mut c = open_and_send(&mut sim, &[connect.into()]);
    sim.broker.handle_auth_decision(
        c.conn,
        AuthDecision::Continue(Some(Bytes::from_static(b"challenge"))),
        sim.now,
    );
    sim.drain();
    assert!(matches!(sim.recv(&mut c).as_slice(), [Packet::Auth(_)]));
    let mut auth = mqtt_session::codec::Auth {
        reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Default::default(),
    };
    auth.properties
        .set_authentication_method(Some("token".try_into().unwrap()));
    auth.properties
        .set_authentication_data(Some(b"answer"))
        .unwrap();
    sim.send(&c, auth);
    let (_, request) = sim.auth_requests.last().cloned().unwrap();
    assert_eq!(request.step, AuthStep::Continue);
    assert_eq!(request.authentication_data.as_deref(), Some(&b"answer"[..]));
    assert!(sim.recv(&mut c).is_empty());
    sim.broker
        .handle_auth_decision(c.conn, AuthDecision::Accept, sim.now);
    sim.drain();
    let got = sim.recv(&mut c);
    assert!(
        matches!(got.as_slice(), [Packet::ConnAck(a)] if a.reason_code == ReasonCode::SUCCESS),
        "{got:?}"
    );
}

/// [MQTT-3.1.3-6] An assigned Client Identifier stays unique when another client takes it while
/// the first one's authentication is being decided: the first gets a new one.
#[test]
fn an_assigned_client_id_taken_while_deciding_is_replaced() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), Later);
    let mut empty = connect_v5("", false, Some(60));
    empty.client_id = "".try_into().unwrap();
    let mut first = open_and_send(&mut sim, &[empty.into()]);
    let assigned = sim.auth_requests[0].1.client_id.clone();
    let mut second = open_and_send(&mut sim, &[connect_v5(&assigned, true, Some(60)).into()]);
    let conn = second.conn;
    sim.broker
        .handle_auth_decision(conn, AuthDecision::Accept, sim.now);
    sim.drain();
    assert!(matches!(
        sim.recv(&mut second).first(),
        Some(Packet::ConnAck(_))
    ));
    sim.broker
        .handle_auth_decision(first.conn, AuthDecision::Accept, sim.now);
    sim.drain();
    let got = sim.recv(&mut first);
    let Some(Packet::ConnAck(ack)) = got.first() else {
        panic!("{got:?}")
    };
    let given = ack
        .properties
        .assigned_client_identifier()
        .unwrap()
        .to_string();
    assert_ne!(given, assigned);
    assert!(!ack.session_present);
    assert!(
        !sim.is_closed(&second),
        "the other client keeps its session and connection"
    );
}

/// Thousands of CONNECTs with one Client Identifier, answered last to first: completed in
/// arrival order without recursing once per waiting CONNECT.
#[test]
fn many_deferred_connects_of_one_client_id_complete_without_deep_recursion() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), Later);
    let clients: Vec<Client> = (0..3000)
        .map(|_| open_and_send(&mut sim, &[connect_v5("same", true, None).into()]))
        .collect();
    for c in clients.iter().skip(1).rev() {
        sim.broker
            .handle_auth_decision(c.conn, AuthDecision::Accept, sim.now);
    }
    sim.broker
        .handle_auth_decision(clients[0].conn, AuthDecision::Accept, sim.now);
    sim.drain();
    // Each took the session over from the one before: only the last is still connected.
    let open: Vec<bool> = clients.iter().map(|c| !sim.is_closed(c)).collect();
    assert_eq!(open.iter().filter(|o| **o).count(), 1);
    assert!(open[2999]);
}

/// `Broker::stats` counts PUBLISH packets received from clients and sent to them (host
/// messages are not received from a client; re-deliveries are sent again).
#[test]
fn stats_count_publishes_received_and_sent() {
    let mut sim = Sim::with_config(BrokerConfig::default());
    let mut a = sim.subscriber(connect_v5("a", true, None), &[("t/#", QoS::AtMostOnce)]);
    let mut b = sim.subscriber(connect_v5("b", true, None), &[("t/#", QoS::AtLeastOnce)]);
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    assert_eq!(sim.broker.stats().publish_received, 0);
    sim.publish(&mut p, publish("t/1", b"x", QoS::AtLeastOnce, Some(1)));
    sim.publish(&mut p, publish("u/1", b"nobody", QoS::AtMostOnce, None));
    let m = Message::new(topic("t/host"), &b"h"[..], QoS::AtMostOnce, false);
    assert!(sim.broker.handle_publish(m, sim.now));
    sim.drain();
    assert_eq!(sim.recv_publishes(&mut a).len(), 2);
    assert_eq!(sim.recv_publishes(&mut b).len(), 2);
    let stats = sim.broker.stats();
    assert_eq!(stats.publish_received, 2);
    assert_eq!(stats.publish_sent, 4);
}

/// `handle_publish_volatile`: a retained message the host makes again after a restart
/// (`$SYS`) is delivered and retained like any other, but never stored.
#[test]
fn a_volatile_retained_message_is_never_stored() {
    use mqtt_session::broker::StorageRecord;
    let mut sim = Sim::with_config(BrokerConfig::default());
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("$SYS/#", QoS::AtMostOnce)]);
    let volatile = |payload: &'static [u8]| {
        Message::new(topic("$SYS/broker/uptime"), payload, QoS::AtMostOnce, true)
    };
    sim.records.clear();
    assert!(sim.broker.handle_publish_volatile(volatile(b"1"), sim.now));
    sim.drain();
    assert_eq!(sim.recv_publishes(&mut s).len(), 1);
    assert_eq!(sim.broker.retained_count(), 1);
    assert!(sim.records.is_empty(), "{:?}", sim.records);
    assert!(
        sim.broker
            .snapshot()
            .iter()
            .all(|r| !matches!(r, StorageRecord::Retained { .. }))
    );

    // A durable message on the topic is stored; a volatile one replacing it clears it from
    // storage (else a restart would bring the old one back).
    let durable = Message::new(
        topic("$SYS/broker/uptime"),
        &b"d"[..],
        QoS::AtMostOnce,
        true,
    );
    sim.broker.handle_publish(durable, sim.now);
    sim.drain();
    assert!(
        matches!(sim.records.as_slice(), [StorageRecord::Retained { .. }]),
        "{:?}",
        sim.records
    );
    sim.records.clear();
    sim.broker.handle_publish_volatile(volatile(b"2"), sim.now);
    sim.drain();
    assert!(
        matches!(
            sim.records.as_slice(),
            [StorageRecord::RetainedCleared { .. }]
        ),
        "{:?}",
        sim.records
    );
    assert_eq!(sim.broker.retained_count(), 1);
    // Clearing a volatile one stores nothing.
    sim.records.clear();
    sim.broker.handle_publish_volatile(volatile(b""), sim.now);
    sim.drain();
    assert!(sim.records.is_empty(), "{:?}", sim.records);
    assert_eq!(sim.broker.retained_count(), 0);
}

/// Names each client by its Password (as a TLS certificate would name it), and lets only
/// `alice` publish to `alice/...`.
#[derive(Clone, Default)]
struct NamedByPassword;

impl Policy for NamedByPassword {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        match info
            .password
            .map(|p| String::from_utf8_lossy(p).into_owned())
        {
            Some(name) => AuthDecision::AcceptAs(name),
            None => AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED),
        }
    }

    fn may_publish(&mut self, _client_id: &str, username: Option<&str>, topic: &str) -> bool {
        !topic.starts_with("alice/") || username == Some("alice")
    }
}

fn named(
    client_id: &str,
    clean_start: bool,
    user: Option<&str>,
    name: &str,
) -> mqtt_session::codec::Connect {
    let mut c = connect_v5(client_id, clean_start, Some(300));
    c.username = user.map(|u| u.try_into().unwrap());
    c.password = Some(Bytes::copy_from_slice(name.as_bytes()));
    c
}

/// `AuthDecision::AcceptAs`: the policy names the user; that name, not the CONNECT's User
/// Name, is what the policy is asked with afterwards. v5 [MQTT-3.1.4-2]
#[test]
fn accept_as_names_the_user_the_policy_is_asked_about() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), NamedByPassword);
    // Claims to be alice in its User Name; the policy named it bob.
    let (mut bob, ack) = sim.connect(named("b", true, Some("alice"), "bob"));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let got = sim.publish(
        &mut bob,
        publish("alice/x", b"no", QoS::AtLeastOnce, Some(1)),
    );
    assert!(
        matches!(got.as_slice(), [Packet::PubAck(a)] if a.reason_code == ReasonCode::NOT_AUTHORIZED),
        "{got:?}"
    );
    let (mut alice, _) = sim.connect(named("a", true, None, "alice"));
    let got = sim.publish(
        &mut alice,
        publish("alice/x", b"yes", QoS::AtLeastOnce, Some(1)),
    );
    assert!(
        matches!(got.as_slice(), [Packet::PubAck(a)] if !a.reason_code.is_error()),
        "{got:?}"
    );
}

/// `BrokerConfig::sessions_owned_by_user`: another user's CONNECT with the same Client
/// Identifier is refused; the session keeps what was queued for its user. v5 [MQTT-3.1.4-2]
#[test]
fn a_session_is_not_taken_by_another_user() {
    let config = config_with(|c| c.sessions_owned_by_user = true);
    let mut sim = Sim::with_policy(config, NamedByPassword);
    let alice = sim.subscriber(
        named("phone", true, None, "alice"),
        &[("inbox/#", QoS::AtLeastOnce)],
    );
    sim.disconnect(&alice, ReasonCode::SUCCESS);
    let (mut p, _) = sim.connect(named("p", true, None, "carol"));
    sim.publish(
        &mut p,
        publish("inbox/1", b"for alice", QoS::AtLeastOnce, Some(1)),
    );
    sim.drain();

    // bob, with alice's Client Identifier, Clean Start 0 or 1: refused.
    for clean_start in [false, true] {
        let (_, ack) = sim.connect(named("phone", clean_start, None, "bob"));
        assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
        assert!(!ack.session_present);
    }
    // alice resumes her session, with what was queued for her.
    let (mut alice, ack) = sim.connect(named("phone", false, None, "alice"));
    assert!(ack.session_present);
    sim.drain();
    let got = sim.recv_publishes(&mut alice);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, Bytes::from_static(b"for alice"));

    // The same check without the setting: bob would have resumed alice's session.
    let mut open = Sim::with_policy(BrokerConfig::default(), NamedByPassword);
    let (alice, _) = open.connect(named("phone", true, None, "alice"));
    open.disconnect(&alice, ReasonCode::SUCCESS);
    let (_, ack) = open.connect(named("phone", false, None, "bob"));
    assert!(ack.session_present);
}
