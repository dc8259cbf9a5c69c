#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The client engine's manual acknowledgement of received messages
//! (`ClientConfig::manual_acks`, `Client::ack`) and what it does with messages in flight when
//! the session is lost (`resend_qos1_on_session_loss`, `resend_qos2_on_session_loss`).

mod pair;

use bytes::Bytes;
use mqtt_session::client::{ClientConfig, ClientError, ClientEvent, DropReason};
use mqtt_session::codec::{
    ConnAck, Disconnect, Packet, PacketId, ProtocolVersion, PubAck, PubRec, PubRel, Publish, QoS,
    ReasonCode, TopicName,
};
use pair::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn server_publish(payload: &'static [u8], qos: QoS, id: u16) -> Publish {
    let mut p = Publish::new(
        TopicName::try_from("t").unwrap(),
        Bytes::from_static(payload),
    );
    p.qos = qos;
    p.packet_id = PacketId::new(id);
    p
}

fn received(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(p) => Some(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => None,
        })
        .collect()
}

fn manual(c: ClientConfig) -> ClientConfig {
    let mut c = c;
    c.manual_acks = true;
    c
}

fn accepted(config: ClientConfig, session_present: bool) -> Scripted {
    let mut s = Scripted::new(config);
    s.connect_accepted(session_present);
    s.take_events();
    s.take_sent();
    s
}

// v5 v3.1.1 [MQTT-4.6.0-2] [MQTT-4.6.0-3] v5 [MQTT-4.3.2-4] [MQTT-4.3.3-8]
#[test]
fn mqtt_4_6_0_2_manual_acknowledgements_are_sent_in_the_order_the_messages_arrived() {
    for version in [V5, V311] {
        let mut s = accepted(manual(persistent(version, "c")), false);
        s.server_sends(server_publish(b"a", QoS::AtLeastOnce, 3));
        s.server_sends(server_publish(b"b", QoS::ExactlyOnce, 9));
        s.server_sends(server_publish(b"c", QoS::AtLeastOnce, 1));
        s.server_sends(server_publish(b"d", QoS::AtMostOnce, 0));
        // Reported at once, acknowledged by nobody yet.
        assert_eq!(received(&s.take_events()), ["a", "b", "c", "d"]);
        assert!(s.take_sent().is_empty());
        assert_eq!(s.client.awaiting_ack(), 3);
        // The last one first: held behind the two before it.
        assert_eq!(s.with(|c, now| c.ack(pid(1), now)), Ok(true));
        assert!(s.take_sent().is_empty());
        assert_eq!(s.with(|c, now| c.ack(pid(3), now)), Ok(true));
        assert_eq!(s.take_sent(), [Packet::PubAck(PubAck::new(pid(3)))]);
        assert_eq!(s.with(|c, now| c.ack(pid(9), now)), Ok(true));
        assert_eq!(
            s.take_sent(),
            [
                Packet::PubRec(PubRec::new(pid(9))),
                Packet::PubAck(PubAck::new(pid(1)))
            ]
        );
        assert_eq!(s.client.awaiting_ack(), 0);
        // Once acknowledged, an identifier is not awaiting anything.
        assert_eq!(s.with(|c, now| c.ack(pid(3), now)), Ok(false));
        assert!(s.take_sent().is_empty());
    }
}

#[test]
fn ack_is_refused_when_acknowledgements_are_automatic() {
    let mut s = accepted(config(V5, "c"), false);
    s.server_sends(server_publish(b"a", QoS::AtLeastOnce, 3));
    assert_eq!(s.take_sent(), [Packet::PubAck(PubAck::new(pid(3)))]);
    assert!(matches!(
        s.with(|c, now| c.ack(pid(3), now)),
        Err(ClientError::NotAllowed(_))
    ));
}

// v5 [MQTT-3.3.4-9]: QoS 1 messages the application holds count against our Receive Maximum.
#[test]
fn v5_mqtt_3_3_4_9_held_messages_count_against_our_receive_maximum() {
    let mut c = manual(config(V5, "c"));
    c.receive_maximum = 2;
    let mut s = accepted(c, false);
    s.server_sends(server_publish(b"a", QoS::AtLeastOnce, 1));
    s.server_sends(server_publish(b"b", QoS::ExactlyOnce, 2));
    assert!(!s.closed);
    // A slot comes free when the application acknowledges one.
    s.with(|c, now| c.ack(pid(1), now)).unwrap();
    s.server_sends(server_publish(b"c", QoS::AtLeastOnce, 3));
    assert!(!s.closed);
    assert_eq!(received(&s.take_events()), ["a", "b", "c"]);
    s.take_sent();
    // A third unacknowledged one is more than we announced: DISCONNECT 0x93.
    s.server_sends(server_publish(b"d", QoS::AtLeastOnce, 4));
    assert!(s.closed);
    assert_eq!(
        s.take_sent(),
        [Packet::Disconnect(Disconnect::new(
            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
        ))]
    );
    assert!(received(&s.take_events()).is_empty());
}

// v5 [MQTT-4.3.3-10] v3.1.1 [MQTT-4.3.3-2]: a QoS 2 message the application has not
// acknowledged when the connection is lost is not delivered again, and its PUBREC waits.
#[test]
fn v5_mqtt_4_3_3_10_a_held_qos_2_message_survives_a_reconnection_once() {
    for version in [V5, V311] {
        let mut s = accepted(manual(persistent(version, "c")), false);
        let p = server_publish(b"once", QoS::ExactlyOnce, 7);
        s.server_sends(p.clone());
        assert_eq!(received(&s.take_events()), ["once"]);
        s.transport_lost();
        s.connect();
        s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
        s.take_events();
        let mut dup = p.clone();
        dup.dup = true;
        s.server_sends(dup.clone());
        assert!(received(&s.take_events()).is_empty(), "{version:?}");
        assert!(
            s.take_sent().is_empty(),
            "the PUBREC waits for the application"
        );
        assert_eq!(s.with(|c, now| c.ack(pid(7), now)), Ok(true));
        assert_eq!(s.take_sent(), [Packet::PubRec(PubRec::new(pid(7)))]);
        s.server_sends(PubRel::new(pid(7)));
        assert_eq!(s.client.inbound_qos2_pending(), 0);

        // Acknowledged while disconnected: the re-sent PUBLISH gets its PUBREC at once.
        s.server_sends(server_publish(b"second", QoS::ExactlyOnce, 8));
        assert_eq!(received(&s.take_events()), ["second"]);
        s.take_sent();
        s.transport_lost();
        assert_eq!(s.with(|c, now| c.ack(pid(8), now)), Ok(true));
        s.connect();
        s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
        s.take_events();
        let mut dup = server_publish(b"second", QoS::ExactlyOnce, 8);
        dup.dup = true;
        s.server_sends(dup);
        assert!(received(&s.take_events()).is_empty());
        assert_eq!(s.take_sent(), [Packet::PubRec(PubRec::new(pid(8)))]);
    }
}

// A QoS 1 message held when the connection is lost is sent again by the server and reported
// again (at least once); a late `ack` of the old delivery finds nothing to acknowledge.
// v5 v3.1.1 [MQTT-4.4.0-1]
#[test]
fn mqtt_4_4_0_1_a_held_qos_1_message_is_reported_again_after_a_reconnection() {
    let mut s = accepted(manual(persistent(V5, "c")), false);
    s.server_sends(server_publish(b"a", QoS::AtLeastOnce, 5));
    assert_eq!(received(&s.take_events()), ["a"]);
    s.transport_lost();
    assert_eq!(s.with(|c, now| c.ack(pid(5), now)), Ok(false));
    assert_eq!(s.client.awaiting_ack(), 0);
    s.connect();
    s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
    s.take_events();
    let mut dup = server_publish(b"a", QoS::AtLeastOnce, 5);
    dup.dup = true;
    s.server_sends(dup.clone());
    // The same PUBLISH again while still held: one PUBACK answers both.
    s.server_sends(dup);
    assert_eq!(received(&s.take_events()), ["a"]);
    assert_eq!(s.with(|c, now| c.ack(pid(5), now)), Ok(true));
    assert_eq!(s.take_sent(), [Packet::PubAck(PubAck::new(pid(5)))]);
}

// A PUBREL for a message whose PUBREC we have not sent breaks the QoS 2 flow (section 4.3.3).
#[test]
fn a_pubrel_before_the_held_pubrec_is_a_protocol_error() {
    let mut s = accepted(manual(config(V5, "c")), false);
    s.server_sends(server_publish(b"a", QoS::ExactlyOnce, 5));
    s.take_events();
    s.server_sends(PubRel::new(pid(5)));
    assert!(s.closed);
    assert_eq!(
        s.take_sent(),
        [Packet::Disconnect(Disconnect::new(
            ReasonCode::PROTOCOL_ERROR
        ))]
    );
}

// v5 [MQTT-3.2.2-5]: Session Present 0 while messages are in flight. With the resend options,
// they are sent again as new messages (DUP 0, in their order); without, they are given up.
#[test]
fn v5_mqtt_3_2_2_5_messages_in_flight_are_resent_or_dropped_when_the_session_is_lost() {
    for (resend1, resend2) in [(false, false), (true, false), (true, true)] {
        let mut c = persistent(V5, "c");
        c.resend_qos1_on_session_loss = resend1;
        c.resend_qos2_on_session_loss = resend2;
        let mut s = accepted(c, false);
        let one = s
            .with(|c, now| c.publish(message("t", b"one", QoS::AtLeastOnce), now))
            .unwrap()
            .unwrap();
        let two = s
            .with(|c, now| c.publish(message("t", b"two", QoS::ExactlyOnce), now))
            .unwrap()
            .unwrap();
        let released = s
            .with(|c, now| c.publish(message("t", b"three", QoS::ExactlyOnce), now))
            .unwrap()
            .unwrap();
        s.server_sends(PubRec::new(released));
        assert_eq!(s.client.in_flight(), 3);
        s.transport_lost();
        s.take_sent();
        s.take_events();
        // The server lost the session.
        s.connect();
        s.server_sends(ConnAck::new(false, ReasonCode::SUCCESS));
        let events = s.take_events();
        let dropped: Vec<PacketId> = events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::PublishDropped {
                    packet_id: Some(id),
                    reason: DropReason::SessionDiscarded,
                } => Some(*id),
                _ => None,
            })
            .collect();
        let mut expect_dropped = Vec::new();
        let mut expect_sent = Vec::new();
        for (id, payload, resend) in [
            (one, "one", resend1),
            (two, "two", resend2),
            (released, "three", resend2),
        ] {
            if resend {
                expect_sent.push(payload);
            } else {
                expect_dropped.push(id);
            }
        }
        assert_eq!(dropped, expect_dropped, "{resend1} {resend2}");
        let sent = publishes(&s.take_sent());
        assert!(sent.iter().all(|p| !p.dup), "sent as new messages: DUP 0");
        assert_eq!(payloads(&sent), expect_sent);
        assert_eq!(s.client.in_flight(), expect_sent.len());
    }
}

// The same through the broker engine in MQTT 3.1.1, where a Clean Session connection loses the
// session on every reconnection: a QoS 1 message whose PUBACK was lost arrives again.
// v3.1.1 [MQTT-3.1.2-6]
#[test]
fn v311_mqtt_3_1_2_6_clean_session_resends_unacknowledged_qos_1_as_new_when_asked() {
    let mut pair = Pair::new();
    let sub = pair.add_connected(config(V311, "sub"));
    pair.subscribe(sub, "t", QoS::AtLeastOnce);
    let mut c = config(V311, "pub");
    c.resend_qos1_on_session_loss = true;
    let publ = pair.add_connected(c);
    pair.delay_ms = (100, 100);
    let id = pair
        .act(publ, |c, now| {
            c.publish(message("t", b"first", QoS::AtLeastOnce), now)
        })
        .unwrap()
        .unwrap();
    pair.advance_ms(150);
    pair.delay_ms = (0, 0);
    pair.drop_link(publ, 0);
    pair.take_events(publ);
    pair.connect(publ);
    let events = pair.take_events(publ);
    assert!(events.contains(&ClientEvent::Published {
        packet_id: id,
        reason_code: ReasonCode::SUCCESS
    }));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::PublishDropped { .. }))
    );
    // Delivered twice: the first copy reached the broker before the connection was lost.
    assert_eq!(payloads(&pair.take_messages(sub)), ["first", "first"]);
}

// The client's own in-flight window, below the server's Receive Maximum: at most
// `max_in_flight` QoS 1/2 messages unacknowledged; the rest wait, in order.
// v5 [MQTT-3.3.4-7] (the server's quota is the upper bound)
#[test]
fn max_in_flight_bounds_the_messages_awaiting_acknowledgement() {
    for version in [V5, V311] {
        let mut c = config(version, "c");
        c.max_in_flight = 2;
        let mut s = accepted(c, false);
        let ids: Vec<PacketId> = (0..5)
            .map(|i| {
                s.with(|c, now| {
                    c.publish(
                        message("t", format!("{i}").as_bytes(), QoS::AtLeastOnce),
                        now,
                    )
                })
                .unwrap()
                .unwrap()
            })
            .collect();
        assert_eq!(payloads(&publishes(&s.take_sent())), ["0", "1"]);
        assert_eq!(s.client.in_flight(), 2);
        s.server_sends(PubAck::new(ids[1]));
        assert_eq!(payloads(&publishes(&s.take_sent())), ["2"]);
        s.server_sends(PubAck::new(ids[0]));
        s.server_sends(PubAck::new(ids[2]));
        assert_eq!(payloads(&publishes(&s.take_sent())), ["3", "4"]);
    }
    let mut c = config(V5, "c");
    c.max_in_flight = 0;
    assert!(matches!(
        mqtt_session::client::Client::new(c),
        Err(ClientError::InvalidConfig(_))
    ));
}

// The session epoch: a lost session (Session Present 0, or a Clean Start) starts a new one, in
// which the server may reuse the Packet Identifiers of messages the application still holds.
// v5 [MQTT-3.2.2-5]
#[test]
fn v5_mqtt_3_2_2_5_a_lost_session_starts_a_new_epoch() {
    let mut s = accepted(manual(persistent(V5, "c")), false);
    let epoch = s.client.session_epoch();
    s.server_sends(server_publish(b"old", QoS::AtLeastOnce, 1));
    s.transport_lost();
    s.connect();
    s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
    assert_eq!(s.client.session_epoch(), epoch, "resumed: the same session");
    s.transport_lost();
    s.connect();
    s.server_sends(ConnAck::new(false, ReasonCode::SUCCESS));
    assert_eq!(s.client.session_epoch(), epoch + 1, "lost: a new session");
}
