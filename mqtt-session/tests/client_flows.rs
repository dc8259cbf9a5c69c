#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The client engine's message flows, against the broker engine (`pair::Pair`) or a scripted
//! server (`pair::Scripted`): QoS 0/1/2 both ways, re-delivery on resume, exactly-once
//! delivery of QoS 2, Receive Maximum and Maximum Packet Size both ways, topic aliases both
//! ways, SUBSCRIBE / UNSUBSCRIBE and their reason codes, requests made while disconnected, and
//! Packet Identifier allocation.

mod pair;

use std::collections::BTreeSet;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use mqtt_session::broker::{
    AuthDecision, Broker, BrokerConfig, BrokerEvent, ConnectInfo, DropReason as BrokerDrop, Policy,
};
use mqtt_session::client::{ClientConfig, ClientError, ClientEvent, DropReason};
use mqtt_session::codec::{
    ConnAck, Disconnect, Packet, PacketId, Properties, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, ReasonCode, SubAck, SubscriptionOptions, TopicFilter, TopicName,
    UnsubAck,
};
use pair::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn published(events: &[ClientEvent]) -> Vec<(PacketId, ReasonCode)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Published {
                packet_id,
                reason_code,
            } => Some((*packet_id, *reason_code)),
            _ => None,
        })
        .collect()
}

fn messages(events: &[ClientEvent]) -> Vec<Publish> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(p) => Some((**p).clone()),
            _ => None,
        })
        .collect()
}

fn server_publish(topic: &str, payload: &'static [u8], qos: QoS, id: Option<u16>) -> Publish {
    let mut p = Publish::new(
        TopicName::try_from(topic).unwrap(),
        Bytes::from_static(payload),
    );
    p.qos = qos;
    p.packet_id = id.and_then(PacketId::new);
    p
}

/// A scripted server connection that accepted the client, with CONNACK properties `props`.
fn scripted(config: ClientConfig, props: Properties) -> Scripted {
    let mut s = Scripted::new(config);
    s.connect();
    let mut ack = ConnAck::new(false, ReasonCode::SUCCESS);
    ack.properties = props;
    s.server_sends(ack);
    s.take_events();
    s
}

// ---- QoS flows ----------------------------------------------------------------------------------

// v5 [MQTT-4.3.1-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2] [MQTT-4.3.2-4] [MQTT-4.3.3-8] [MQTT-4.3.3-11]
// v3.1.1 [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1] [MQTT-4.3.2-2] [MQTT-4.3.3-2]
// [MQTT-4.5.0-2]
#[test]
fn qos_0_1_2_flows_in_both_directions_through_the_broker() {
    for version in [V5, V311] {
        for qos in QOS {
            let mut pair = Pair::new();
            let sub = pair.add_connected(config(version, "sub"));
            let sid = pair.subscribe(sub, "t/#", QoS::ExactlyOnce);
            assert!(pair.take_events(sub).contains(&ClientEvent::Subscribed {
                packet_id: sid,
                reason_codes: vec![ReasonCode::GRANTED_QOS_2]
            }));
            let publ = pair.add_connected(config(version, "pub"));
            let id = pair.publish(publ, "t/1", b"hello", qos).unwrap();
            assert_eq!(id.is_some(), qos != QoS::AtMostOnce);
            let events = pair.take_events(publ);
            if let Some(id) = id {
                assert_eq!(published(&events), [(id, ReasonCode::SUCCESS)]);
            }
            let got = messages(&pair.take_events(sub));
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].qos, &got[0].payload[..]), (qos, &b"hello"[..]));
            assert_eq!(got[0].topic.as_utf8().as_str(), "t/1");

            // The publisher's side of the wire: PUBLISH with DUP 0, then the release at QoS 2.
            let sent: Vec<Packet> = pair.sent(publ).into_iter().skip(1).collect();
            match qos {
                QoS::AtMostOnce => {
                    assert!(
                        matches!(&sent[..], [Packet::Publish(p)] if !p.dup && p.packet_id.is_none())
                    )
                }
                QoS::AtLeastOnce => {
                    assert!(
                        matches!(&sent[..], [Packet::Publish(p)] if !p.dup && p.packet_id == id)
                    )
                }
                QoS::ExactlyOnce => assert!(matches!(&sent[..],
                    [Packet::Publish(p), Packet::PubRel(r)] if !p.dup && Some(r.packet_id) == id)),
            }
            // The subscriber's side: it acknowledges as the QoS says.
            let acks: Vec<Packet> = pair
                .sent(sub)
                .into_iter()
                .filter(|p| !matches!(p, Packet::Connect(_) | Packet::Subscribe(_)))
                .collect();
            let rid = got[0].packet_id;
            match qos {
                QoS::AtMostOnce => assert!(acks.is_empty()),
                QoS::AtLeastOnce => {
                    assert!(matches!(&acks[..], [Packet::PubAck(a)] if Some(a.packet_id) == rid))
                }
                QoS::ExactlyOnce => assert!(matches!(&acks[..],
                    [Packet::PubRec(a), Packet::PubComp(c)]
                        if Some(a.packet_id) == rid && Some(c.packet_id) == rid)),
            }
            assert_eq!(pair.client(publ).in_flight(), 0);
            assert_eq!(pair.client(sub).inbound_qos2_pending(), 0);
        }
    }
}

// v5 [MQTT-4.4.0-2]
#[test]
fn v5_mqtt_4_4_0_2_an_error_in_pubrec_ends_the_flow_without_retransmission() {
    struct NoPublish;
    impl Policy for NoPublish {
        fn authenticate(&mut self, _: &ConnectInfo<'_>) -> AuthDecision {
            AuthDecision::Accept
        }
        fn may_publish(&mut self, _: &str, _: Option<&str>, _: &str) -> bool {
            false
        }
    }
    let mut pair = Pair::with_broker(Broker::with_policy(BrokerConfig::default(), NoPublish));
    let i = pair.add_connected(persistent(V5, "c"));
    let a = pair
        .publish(i, "t", b"x", QoS::ExactlyOnce)
        .unwrap()
        .unwrap();
    let b = pair
        .publish(i, "t", b"y", QoS::AtLeastOnce)
        .unwrap()
        .unwrap();
    assert_eq!(
        published(&pair.take_events(i)),
        [
            (a, ReasonCode::NOT_AUTHORIZED),
            (b, ReasonCode::NOT_AUTHORIZED)
        ]
    );
    assert!(!pair.sent(i).iter().any(|p| matches!(p, Packet::PubRel(_))));
    pair.drop_link(i, 0);
    pair.clear_wire(i);
    pair.connect(i);
    assert!(publishes(&pair.sent(i)).is_empty(), "not retransmitted");
}

/// The fuzz finding `client/receive-maximum-pubrec-for-message-awaiting-resend`, as a rule:
/// a message the client sent on an earlier connection, and has not sent again on this one
/// (the server's Receive Maximum is smaller now), is still the client's flow. A PUBREC for it
/// is the server's acknowledgement of the PUBLISH it received then, not a PUBREC for an unknown
/// flow: an error PUBREC ends the flow, reported, and the PUBLISH is never sent again
/// (v5 [MQTT-4.4.0-2]); a successful one is answered with PUBREL, and the PUBLISH is not sent
/// again either (v5 [MQTT-4.3.3-4] [MQTT-4.3.3-6]). A PUBACK for such a QoS 1 message ends its
/// flow too. None of them is a PUBLISH in flight on this connection, so the Receive Maximum
/// still allows one PUBLISH at a time (v5 [MQTT-3.3.4-7]).
// v5 [MQTT-4.4.0-2] [MQTT-4.3.3-4] [MQTT-4.3.3-6] [MQTT-3.3.4-7]
#[test]
fn v5_mqtt_4_4_0_2_an_acknowledgement_of_a_publish_from_an_earlier_connection_ends_its_flow() {
    let props = Properties {
        receive_maximum: NonZeroU16::new(4),
        ..Properties::default()
    };
    let mut s = scripted(persistent(V5, "c"), props);
    let ids: Vec<PacketId> = [
        QoS::ExactlyOnce,
        QoS::ExactlyOnce,
        QoS::ExactlyOnce,
        QoS::AtLeastOnce,
    ]
    .into_iter()
    .enumerate()
    .map(|(n, qos)| {
        s.with(|c, now| c.publish(message("t", format!("m{n}").as_bytes(), qos), now))
            .unwrap()
            .unwrap()
    })
    .collect();
    assert_eq!(publishes(&s.take_sent()).len(), 4);
    s.transport_lost();
    s.connect();
    // Session present, and a Receive Maximum of 1 now: only the first is sent again.
    let mut ack = ConnAck::new(true, ReasonCode::SUCCESS);
    ack.properties.receive_maximum = NonZeroU16::new(1);
    s.server_sends(ack);
    let resent = publishes(&s.take_sent());
    assert_eq!(resent.len(), 1);
    assert!(resent[0].dup);
    assert_eq!(resent[0].packet_id, Some(ids[0]));
    s.take_events();

    // An error PUBREC for the third, still waiting: its flow ends, no PUBREL 0x92.
    let mut rec = PubRec::new(ids[2]);
    rec.reason_code = ReasonCode::QUOTA_EXCEEDED;
    s.server_sends(rec);
    assert_eq!(s.take_sent(), []);
    assert_eq!(
        published(&s.take_events()),
        [(ids[2], ReasonCode::QUOTA_EXCEEDED)]
    );
    // A successful PUBREC for the second: PUBREL, and its PUBLISH is not sent again.
    s.server_sends(PubRec::new(ids[1]));
    assert_eq!(s.take_sent(), [Packet::PubRel(PubRel::new(ids[1]))]);
    // A PUBACK for the fourth (QoS 1): done.
    s.server_sends(PubAck::new(ids[3]));
    assert_eq!(published(&s.take_events()), [(ids[3], ReasonCode::SUCCESS)]);
    // The first completes: nothing else is left to send.
    s.server_sends(PubRec::new(ids[0]));
    assert_eq!(s.take_sent(), [Packet::PubRel(PubRel::new(ids[0]))]);
    s.server_sends(PubComp::new(ids[0]));
    s.server_sends(PubComp::new(ids[1]));
    assert!(publishes(&s.take_sent()).is_empty(), "nothing sent twice");
    assert_eq!(
        published(&s.take_events()),
        [(ids[0], ReasonCode::SUCCESS), (ids[1], ReasonCode::SUCCESS)]
    );
    assert_eq!(s.client.in_flight(), 0);
    assert_eq!(s.client.queued(), 0);
    assert_eq!(s.client.packet_ids_in_use(), 0);

    // A PUBREC for an identifier the client never sent is still "not found".
    s.server_sends(PubRec::new(pid(999)));
    let mut rel = PubRel::new(pid(999));
    rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    assert_eq!(s.take_sent(), [Packet::PubRel(rel)]);
}

// ---- Re-delivery on resume ----------------------------------------------------------------------

// v5 [MQTT-4.4.0-1] [MQTT-4.6.0-1] [MQTT-3.3.1-1]
// v3.1.1 [MQTT-4.4.0-1] [MQTT-4.6.0-1] [MQTT-3.3.1-1] [MQTT-2.3.1-3]
#[test]
fn mqtt_4_4_0_1_unacknowledged_publishes_are_resent_with_dup_in_order_on_resume() {
    for version in [V5, V311] {
        let mut pair = Pair::new();
        let sub = pair.add_connected(persistent(version, "sub"));
        pair.subscribe(sub, "t", QoS::ExactlyOnce);
        let publ = pair.add_connected(persistent(version, "pub"));
        // Everything sent is lost with the connection: the broker never sees it.
        pair.delay_ms = (50, 50);
        let mut ids = Vec::new();
        for (n, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce]
            .into_iter()
            .enumerate()
        {
            let payload = format!("m{n}");
            let id = pair
                .act(publ, |c, now| {
                    c.publish(message("t", payload.as_bytes(), qos), now)
                })
                .unwrap()
                .unwrap();
            ids.push(id);
        }
        pair.drop_link(publ, 0);
        pair.delay_ms = (0, 0);
        assert_eq!(pair.client(publ).queued(), 3);
        pair.clear_wire(publ);
        pair.connect(publ);
        let resent = publishes(&pair.sent(publ));
        assert_eq!(resent.len(), 3);
        for (p, id) in resent.iter().zip(&ids) {
            assert!(p.dup, "DUP on re-delivery");
            assert_eq!(p.packet_id, Some(*id), "original Packet Identifier");
        }
        assert_eq!(
            payloads(&pair.take_messages(sub)),
            ["m0", "m1", "m2"],
            "in the original order"
        );
        assert_eq!(pair.client(publ).in_flight(), 0);
    }
}

// v5 [MQTT-4.4.0-1] [MQTT-4.3.3-5] [MQTT-4.3.3-6] [MQTT-4.3.3-4] v3.1.1 [MQTT-4.4.0-1]
#[test]
fn mqtt_4_4_0_1_an_unacknowledged_pubrel_is_resent_and_the_publish_is_not() {
    for version in [V5, V311] {
        let mut s = scripted(persistent(version, "c"), Properties::default());
        let id = s
            .with(|c, now| c.publish(message("t", b"x", QoS::ExactlyOnce), now))
            .unwrap()
            .unwrap();
        assert_eq!(publishes(&s.take_sent()).len(), 1);
        s.server_sends(PubRec::new(id));
        assert_eq!(s.take_sent(), [Packet::PubRel(PubRel::new(id))]);
        s.transport_lost();
        s.connect();
        s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
        assert_eq!(s.take_sent(), [Packet::PubRel(PubRel::new(id))]);
        // A duplicate PUBREC is answered with the PUBREL again.
        s.server_sends(PubRec::new(id));
        assert_eq!(s.take_sent(), [Packet::PubRel(PubRel::new(id))]);
        s.take_events();
        s.server_sends(PubComp::new(id));
        assert_eq!(published(&s.take_events()), [(id, ReasonCode::SUCCESS)]);
        assert_eq!(s.client.in_flight(), 0);
        assert_eq!(s.client.packet_ids_in_use(), 0);
    }
}

// v5 [MQTT-4.3.3-10] [MQTT-4.3.3-11] [MQTT-4.3.3-12] v3.1.1 [MQTT-4.3.3-2]
#[test]
fn v5_mqtt_4_3_3_10_a_qos_2_message_is_delivered_once_until_its_pubrel() {
    for version in [V5, V311] {
        let mut s = scripted(persistent(version, "c"), Properties::default());
        let p = server_publish("t", b"once", QoS::ExactlyOnce, Some(7));
        s.server_sends(p.clone());
        let mut dup = p.clone();
        dup.dup = true;
        s.server_sends(dup.clone());
        assert_eq!(messages(&s.take_events()).len(), 1);
        assert_eq!(
            s.take_sent(),
            [
                Packet::PubRec(PubRec::new(pid(7))),
                Packet::PubRec(PubRec::new(pid(7)))
            ]
        );
        // Across a reconnection too (the session is resumed).
        s.transport_lost();
        s.connect();
        s.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
        s.take_events();
        s.server_sends(dup);
        assert!(messages(&s.take_events()).is_empty());
        assert_eq!(s.take_sent(), [Packet::PubRec(PubRec::new(pid(7)))]);
        s.server_sends(PubRel::new(pid(7)));
        assert_eq!(s.take_sent(), [Packet::PubComp(PubComp::new(pid(7)))]);
        // After the PUBCOMP, the identifier is a new message [MQTT-4.3.3-12].
        s.server_sends(server_publish("t", b"new", QoS::ExactlyOnce, Some(7)));
        assert_eq!(payloads(&messages(&s.take_events())), ["new"]);
    }
}

// v5 [MQTT-4.3.2-5]
#[test]
fn v5_mqtt_4_3_2_5_after_puback_the_same_identifier_is_a_new_message() {
    let mut s = scripted(config(V5, "c"), Properties::default());
    s.server_sends(server_publish("t", b"a", QoS::AtLeastOnce, Some(3)));
    s.server_sends(server_publish("t", b"b", QoS::AtLeastOnce, Some(3)));
    assert_eq!(payloads(&messages(&s.take_events())), ["a", "b"]);
}

// v5 v3.1.1 [MQTT-4.6.0-2] [MQTT-4.6.0-3] v5 [MQTT-4.5.0-2]
#[test]
fn mqtt_4_6_0_2_acknowledgements_follow_the_order_of_the_publishes() {
    for version in [V5, V311] {
        let mut s = scripted(config(version, "c"), Properties::default());
        for (id, qos) in [
            (3, QoS::AtLeastOnce),
            (9, QoS::ExactlyOnce),
            (1, QoS::AtLeastOnce),
            (2, QoS::ExactlyOnce),
        ] {
            s.server_sends(server_publish("t", b"x", qos, Some(id)));
        }
        assert_eq!(
            s.take_sent(),
            [
                Packet::PubAck(PubAck::new(pid(3))),
                Packet::PubRec(PubRec::new(pid(9))),
                Packet::PubAck(PubAck::new(pid(1))),
                Packet::PubRec(PubRec::new(pid(2))),
            ]
        );
    }
}

// v5 [MQTT-4.3.3-11]
#[test]
fn v5_mqtt_4_3_3_11_a_pubrel_for_an_unknown_flow_is_completed_with_0x92() {
    let mut s = scripted(config(V5, "c"), Properties::default());
    s.server_sends(PubRel::new(pid(5)));
    let mut comp = PubComp::new(pid(5));
    comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    assert_eq!(s.take_sent(), [Packet::PubComp(comp)]);
    assert!(!s.closed);
}

// ---- Receive Maximum ----------------------------------------------------------------------------

// v5 [MQTT-3.3.4-7] [MQTT-4.9.0-1] [MQTT-4.9.0-2] [MQTT-3.3.4-8] [MQTT-4.9.0-3]
#[test]
fn v5_mqtt_3_3_4_7_the_servers_receive_maximum_is_respected() {
    let props = Properties {
        receive_maximum: NonZeroU16::new(2),
        ..Properties::default()
    };
    let mut s = scripted(config(V5, "c"), props);
    let ids: Vec<PacketId> = (0..5)
        .map(|n| {
            s.with(|c, now| {
                c.publish(
                    message("t", format!("{n}").as_bytes(), QoS::AtLeastOnce),
                    now,
                )
            })
            .unwrap()
            .unwrap()
        })
        .collect();
    let sent = publishes(&s.take_sent());
    assert_eq!(
        sent.iter()
            .map(|p| p.packet_id.unwrap())
            .collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!((s.client.in_flight(), s.client.queued()), (2, 3));
    // Other packets are not held back [MQTT-3.3.4-8]: a SUBSCRIBE and a QoS 2 acknowledgement.
    s.with(|c, now| {
        c.subscribe(
            vec![(
                TopicFilter::try_from("x").unwrap(),
                SubscriptionOptions::qos(QoS::AtMostOnce),
            )],
            Properties::default(),
            now,
        )
    })
    .unwrap();
    s.server_sends(server_publish("in", b"x", QoS::ExactlyOnce, Some(40)));
    let sent = s.take_sent();
    assert!(matches!(
        &sent[..],
        [Packet::Subscribe(_), Packet::PubRec(_)]
    ));
    // Each acknowledgement frees one slot, in order.
    s.server_sends(PubAck::new(ids[0]));
    assert_eq!(publishes(&s.take_sent())[0].packet_id, Some(ids[2]));
    s.server_sends(PubAck::new(ids[1]));
    s.server_sends(PubAck::new(ids[2]));
    let sent = publishes(&s.take_sent());
    assert_eq!(
        sent.iter()
            .map(|p| p.packet_id.unwrap())
            .collect::<Vec<_>>(),
        ids[3..]
    );
    // QoS 0 is not counted but waits its turn behind the queue.
    assert_eq!(s.client.queued(), 0);
}

// v5 [MQTT-3.3.4-7]
#[test]
fn v5_mqtt_3_3_4_7_through_the_broker_a_receive_maximum_of_1_is_never_exceeded() {
    let mut bc = BrokerConfig::default();
    bc.receive_maximum = 1;
    let mut pair = Pair::with_config(bc);
    pair.delay_ms = (5, 40);
    let sub = pair.add_connected(config(V5, "sub"));
    pair.subscribe(sub, "t", QoS::ExactlyOnce);
    let publ = pair.add_connected(config(V5, "pub"));
    for n in 0..20 {
        pair.act(publ, |c, now| {
            c.publish(
                message("t", format!("{n}").as_bytes(), QoS::ExactlyOnce),
                now,
            )
        })
        .unwrap();
        assert!(pair.client(publ).in_flight() <= 1);
    }
    pair.settle();
    // Were the limit exceeded, the broker would have disconnected with 0x93.
    assert!(
        !pair
            .broker_events
            .iter()
            .any(|e| matches!(e, BrokerEvent::ProtocolViolation { .. }))
    );
    assert_eq!(published(&pair.take_events(publ)).len(), 20);
    assert_eq!(pair.take_messages(sub).len(), 20);
}

// v5 [MQTT-3.3.4-9]
#[test]
fn v5_mqtt_3_3_4_9_our_receive_maximum_is_announced_and_enforced() {
    // The broker keeps to it: a subscriber with Receive Maximum 1 gets every QoS 2 message.
    let mut pair = Pair::new();
    pair.delay_ms = (5, 40);
    let mut c = config(V5, "sub");
    c.receive_maximum = 1;
    let sub = pair.add_connected(c);
    pair.subscribe(sub, "t", QoS::ExactlyOnce);
    let publ = pair.add_connected(config(V5, "pub"));
    for n in 0..10 {
        pair.act(publ, |c, now| {
            c.publish(
                message("t", format!("{n}").as_bytes(), QoS::ExactlyOnce),
                now,
            )
        })
        .unwrap();
    }
    pair.settle();
    assert_eq!(
        payloads(&pair.take_messages(sub)),
        (0..10).map(|n| n.to_string()).collect::<Vec<_>>()
    );
    assert!(matches!(&pair.sent(sub)[0],
            Packet::Connect(c) if c.properties.receive_maximum == NonZeroU16::new(1)));

    // A server that does not: DISCONNECT 0x93.
    let mut c = config(V5, "c");
    c.receive_maximum = 2;
    let mut s = scripted(c, Properties::default());
    for id in 1..=2 {
        s.server_sends(server_publish("t", b"x", QoS::ExactlyOnce, Some(id)));
    }
    assert!(!s.closed);
    s.server_sends(server_publish("t", b"x", QoS::ExactlyOnce, Some(3)));
    assert!(s.closed);
    assert_eq!(
        s.take_sent().last(),
        Some(&Packet::Disconnect(Disconnect::new(
            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
        )))
    );
    assert_eq!(messages(&s.take_events()).len(), 2);
}

// ---- Maximum Packet Size ------------------------------------------------------------------------

// v5 [MQTT-3.2.2-15]
#[test]
fn v5_mqtt_3_2_2_15_nothing_larger_than_the_servers_maximum_packet_size_is_sent() {
    let mut bc = BrokerConfig::default();
    bc.maximum_packet_size = 128;
    let mut pair = Pair::with_config(bc);
    let i = pair.add(config(V5, "c"));
    // Queued before the server said its limit: dropped when the CONNACK tells.
    let big = vec![b'x'; 200];
    let queued = pair.publish(i, "t", &big, QoS::AtLeastOnce).unwrap();
    pair.connect(i);
    assert!(pair.take_events(i).contains(&ClientEvent::PublishDropped {
        packet_id: queued,
        reason: DropReason::TooLarge
    }));
    // Once known, refused at once.
    assert!(matches!(
        pair.publish(i, "t", &big, QoS::AtMostOnce),
        Err(ClientError::PacketTooLarge { maximum: 128, .. })
    ));
    let long_filter = "f/".repeat(70);
    assert!(matches!(
        pair.with(i, |c, now| c.subscribe(
            vec![(
                TopicFilter::try_from(long_filter.as_str()).unwrap(),
                SubscriptionOptions::qos(QoS::AtMostOnce)
            )],
            Properties::default(),
            now
        )),
        Err(ClientError::PacketTooLarge { .. })
    ));
    assert_eq!(pair.client(i).packet_ids_in_use(), 0);
    pair.publish(i, "t", b"small", QoS::AtLeastOnce).unwrap();
    assert!(pair.client(i).is_connected());
    assert!(
        !pair
            .broker_events
            .iter()
            .any(|e| matches!(e, BrokerEvent::ProtocolViolation { .. }))
    );
}

// v5 [MQTT-3.1.2-24] [MQTT-3.1.2-25]
#[test]
fn v5_mqtt_3_1_2_24_our_maximum_packet_size_is_announced_and_enforced() {
    let mut pair = Pair::new();
    let mut c = config(V5, "sub");
    c.maximum_packet_size = 100;
    let sub = pair.add_connected(c);
    pair.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = pair.add_connected(config(V5, "pub"));
    pair.publish(publ, "t", &[b'x'; 200], QoS::AtLeastOnce)
        .unwrap();
    pair.publish(publ, "t", b"fits", QoS::AtLeastOnce).unwrap();
    // The broker dropped the large one for this subscriber, and sent the other.
    assert_eq!(payloads(&pair.take_messages(sub)), ["fits"]);
    assert!(pair.broker_events.iter().any(|e| matches!(
        e,
        BrokerEvent::MessageDropped {
            reason: BrokerDrop::TooLarge,
            ..
        }
    )));
    assert!(pair.client(sub).is_connected());

    // A server that sends more: DISCONNECT 0x95, before reading the body.
    let mut c = config(V5, "c");
    c.maximum_packet_size = 100;
    let mut s = scripted(c, Properties::default());
    s.server_sends_bytes(&[0x30, 0xC8, 0x01, 0x00, 0x01]);
    assert!(s.closed);
    assert_eq!(
        s.take_sent(),
        [Packet::Disconnect(Disconnect::new(
            ReasonCode::PACKET_TOO_LARGE
        ))]
    );
}

// ---- Topic aliases ------------------------------------------------------------------------------

// v5 [MQTT-3.3.2-9] [MQTT-3.2.2-17] [MQTT-3.3.2-8] [MQTT-3.3.2-7]
#[test]
fn v5_mqtt_3_3_2_9_outbound_topic_aliases_follow_the_documented_strategy() {
    let mut bc = BrokerConfig::default();
    bc.topic_alias_maximum = 2;
    let mut pair = Pair::with_config(bc);
    let sub = pair.add_connected(config(V5, "sub"));
    pair.subscribe(sub, "#", QoS::AtMostOnce);
    let publ = pair.add_connected(config(V5, "pub"));
    pair.clear_wire(publ);
    for t in ["a", "b", "c", "a", "b", "c"] {
        pair.publish(publ, t, b"x", QoS::AtMostOnce).unwrap();
    }
    let wire: Vec<(String, Option<u16>)> = publishes(&pair.sent(publ))
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                p.properties.topic_alias.map(|a| a.get()),
            )
        })
        .collect();
    let expect = |v: &[(&str, Option<u16>)]| -> Vec<(String, Option<u16>)> {
        v.iter().map(|(t, a)| (t.to_string(), *a)).collect()
    };
    assert_eq!(
        wire,
        expect(&[
            ("a", Some(1)),
            ("b", Some(2)),
            ("c", None),
            ("", Some(1)),
            ("", Some(2)),
            ("c", None)
        ])
    );
    let got: Vec<String> = pair
        .take_messages(sub)
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(got, ["a", "b", "c", "a", "b", "c"]);
    // Not carried over to the next connection [MQTT-3.3.2-7].
    pair.drop_link(publ, 0);
    pair.connect(publ);
    pair.clear_wire(publ);
    pair.publish(publ, "a", b"x", QoS::AtMostOnce).unwrap();
    assert!(matches!(&publishes(&pair.sent(publ))[..],
            [p] if p.topic == "a" && p.properties.topic_alias.map(|a| a.get()) == Some(1)));
}

// v5 [MQTT-3.2.2-18]
#[test]
fn v5_mqtt_3_2_2_18_no_topic_alias_when_the_server_allows_none() {
    let mut bc = BrokerConfig::default();
    bc.topic_alias_maximum = 0;
    let mut pair = Pair::with_config(bc);
    let publ = pair.add_connected(config(V5, "pub"));
    for _ in 0..3 {
        pair.publish(publ, "a", b"x", QoS::AtLeastOnce).unwrap();
    }
    assert!(
        publishes(&pair.sent(publ))
            .iter()
            .all(|p| p.properties.topic_alias.is_none() && p.topic == "a")
    );
}

// v5 [MQTT-3.3.2-10] [MQTT-3.3.2-11]
#[test]
fn v5_mqtt_3_3_2_10_inbound_topic_aliases_are_resolved() {
    let mut pair = Pair::new();
    let mut c = config(V5, "sub");
    c.topic_alias_maximum = 2;
    let sub = pair.add_connected(c);
    pair.subscribe(sub, "#", QoS::AtLeastOnce);
    let publ = pair.add_connected(config(V5, "pub"));
    for t in ["a", "b", "c", "a", "b", "c"] {
        pair.publish(publ, t, b"x", QoS::AtLeastOnce).unwrap();
    }
    // The broker used aliases (never above our maximum)...
    let wire = publishes(&pair.received(sub));
    assert!(wire.iter().any(|p| p.topic.is_empty()));
    assert!(
        wire.iter()
            .all(|p| p.properties.topic_alias.is_none_or(|a| a.get() <= 2))
    );
    // ... and the application sees full topics, without the alias.
    let got = pair.take_messages(sub);
    assert_eq!(
        got.iter().map(|m| m.topic.to_string()).collect::<Vec<_>>(),
        ["a", "b", "c", "a", "b", "c"]
    );
    assert!(got.iter().all(|m| m.properties.topic_alias.is_none()));
}

// v5 [MQTT-3.3.2-10]
#[test]
fn v5_mqtt_3_3_2_10_an_invalid_or_unknown_inbound_alias_closes_the_connection() {
    let mut c = config(V5, "c");
    c.topic_alias_maximum = 2;
    let mut s = scripted(c.clone(), Properties::default());
    let mut p = server_publish("a", b"x", QoS::AtMostOnce, None);
    p.properties.topic_alias = NonZeroU16::new(3);
    s.server_sends(p);
    assert_eq!(
        s.take_sent(),
        [Packet::Disconnect(Disconnect::new(
            ReasonCode::TOPIC_ALIAS_INVALID
        ))]
    );
    assert!(s.closed);

    let mut s = scripted(c, Properties::default());
    let mut p = Publish::new(TopicName::empty(), Bytes::from_static(b"x"));
    p.properties.topic_alias = NonZeroU16::new(1);
    s.server_sends(p);
    assert_eq!(
        s.take_sent(),
        [Packet::Disconnect(Disconnect::new(
            ReasonCode::PROTOCOL_ERROR
        ))]
    );
    // A client that allows none refuses alias 1 as well.
    let mut s = scripted(config(V5, "c"), Properties::default());
    let mut p = server_publish("a", b"x", QoS::AtMostOnce, None);
    p.properties.topic_alias = NonZeroU16::new(1);
    s.server_sends(p);
    assert!(s.closed);
}

// ---- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------------

struct DenyFilter(&'static str);

impl Policy for DenyFilter {
    fn authenticate(&mut self, _: &ConnectInfo<'_>) -> AuthDecision {
        AuthDecision::Accept
    }
    fn may_subscribe(&mut self, _: &str, _: Option<&str>, filter: &str) -> bool {
        filter != self.0
    }
}

fn sub_opts(filters: &[(&str, QoS)]) -> Vec<(TopicFilter, SubscriptionOptions)> {
    filters
        .iter()
        .map(|(f, q)| {
            (
                TopicFilter::try_from(*f).unwrap(),
                SubscriptionOptions::qos(*q),
            )
        })
        .collect()
}

// v5 [MQTT-3.8.4-7] [MQTT-3.9.3-1] [MQTT-3.11.3-1] [MQTT-2.2.1-6]
// v3.1.1 [MQTT-3.9.3-1] [MQTT-3.9.3-2] [MQTT-2.3.1-7]
#[test]
fn mqtt_3_9_3_1_suback_and_unsuback_reason_codes_are_reported_in_order() {
    for version in [V5, V311] {
        let mut bc = BrokerConfig::default();
        bc.maximum_qos = QoS::AtLeastOnce;
        let broker = Broker::with_policy(bc, DenyFilter("secret/#"));
        let mut pair = Pair::with_broker(broker);
        let i = pair.add_connected(config(version, "c"));
        pair.take_events(i);
        let id = pair
            .with(i, |c, now| {
                c.subscribe(
                    sub_opts(&[
                        ("a", QoS::ExactlyOnce),
                        ("secret/#", QoS::AtMostOnce),
                        ("b", QoS::AtMostOnce),
                    ]),
                    Properties::default(),
                    now,
                )
            })
            .unwrap();
        let refused = if version.is_v5() {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::UNSPECIFIED_ERROR
        };
        assert_eq!(
            pair.take_events(i),
            [ClientEvent::Subscribed {
                packet_id: id,
                reason_codes: vec![
                    ReasonCode::GRANTED_QOS_1,
                    refused,
                    ReasonCode::GRANTED_QOS_0
                ]
            }]
        );
        let uid = pair
            .with(i, |c, now| {
                c.unsubscribe(
                    vec![
                        TopicFilter::try_from("a").unwrap(),
                        TopicFilter::try_from("zz").unwrap(),
                    ],
                    Properties::default(),
                    now,
                )
            })
            .unwrap();
        let codes = if version.is_v5() {
            vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        } else {
            vec![]
        };
        assert_eq!(
            pair.take_events(i),
            [ClientEvent::Unsubscribed {
                packet_id: uid,
                reason_codes: codes
            }]
        );
        assert_eq!(pair.client(i).packet_ids_in_use(), 0);
    }
}

// v5 [MQTT-3.8.4-6]
#[test]
fn v5_mqtt_3_8_4_6_a_suback_with_the_wrong_number_of_codes_is_a_protocol_error() {
    let mut s = scripted(config(V5, "c"), Properties::default());
    let id = s
        .with(|c, now| {
            c.subscribe(
                sub_opts(&[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)]),
                Properties::default(),
                now,
            )
        })
        .unwrap();
    s.server_sends(SubAck {
        packet_id: id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::GRANTED_QOS_0],
    });
    assert!(s.closed);
    // An UNSUBACK for an unknown identifier is ignored.
    let mut s = scripted(config(V5, "c"), Properties::default());
    s.server_sends(UnsubAck {
        packet_id: pid(9),
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::SUCCESS],
    });
    assert!(!s.closed);
}

// v5 [MQTT-3.3.4-6]
#[test]
fn v5_mqtt_3_3_4_6_what_the_server_does_not_support_is_refused_before_sending() {
    let mut bc = BrokerConfig::default();
    bc.maximum_qos = QoS::AtLeastOnce;
    bc.retain_available = false;
    bc.wildcard_subscription_available = false;
    bc.subscription_identifiers_available = false;
    let mut pair = Pair::with_config(bc);
    let i = pair.add_connected(config(V5, "c"));
    pair.clear_wire(i);
    // v5 [MQTT-3.2.2-11] [MQTT-3.2.2-14]
    assert_eq!(
        pair.publish(i, "t", b"x", QoS::ExactlyOnce),
        Err(ClientError::QosNotSupported {
            maximum: QoS::AtLeastOnce
        })
    );
    let mut retained = message("t", b"x", QoS::AtMostOnce);
    retained.retain = true;
    assert_eq!(
        pair.with(i, |c, now| c.publish(retained, now)),
        Err(ClientError::RetainNotSupported)
    );
    let mut with_sub_id = message("t", b"x", QoS::AtMostOnce);
    with_sub_id
        .properties
        .push_subscription_identifier(1)
        .unwrap();
    assert!(matches!(
        pair.with(i, |c, now| c.publish(with_sub_id, now)),
        Err(ClientError::NotAllowed(_))
    ));
    assert!(matches!(
        pair.with(i, |c, now| c.subscribe(
            sub_opts(&[("a/+", QoS::AtMostOnce)]),
            Properties::default(),
            now
        )),
        Err(ClientError::NotAllowed(_))
    ));
    let mut props = Properties::default();
    props.push_subscription_identifier(5).unwrap();
    assert!(matches!(
        pair.with(i, |c, now| c.subscribe(
            sub_opts(&[("a", QoS::AtMostOnce)]),
            props,
            now
        )),
        Err(ClientError::NotAllowed(_))
    ));
    assert!(pair.sent(i).is_empty());
    assert!(pair.client(i).is_connected());
}

// ---- While disconnected -------------------------------------------------------------------------

// v5 [MQTT-2.2.1-3] [MQTT-4.6.0-6] v3.1.1 [MQTT-2.3.1-2]
#[test]
fn mqtt_2_2_1_3_requests_made_while_disconnected_are_sent_on_the_next_connection() {
    for version in [V5, V311] {
        let mut pair = Pair::new();
        let publ = pair.add_connected(config(version, "pub"));
        let i = pair.add(persistent(version, "c"));
        // Before the first connection: a subscription and messages to ourselves.
        let sid = pair
            .with(i, |c, now| {
                c.subscribe(
                    sub_opts(&[("t", QoS::ExactlyOnce)]),
                    Properties::default(),
                    now,
                )
            })
            .unwrap();
        let mut ids = BTreeSet::new();
        for (n, qos) in QOS.into_iter().enumerate() {
            if let Some(id) = pair
                .publish(i, "t", format!("{n}").as_bytes(), qos)
                .unwrap()
            {
                assert!(ids.insert(id), "unused Packet Identifiers");
            }
        }
        assert!(!ids.contains(&sid));
        assert!(pair.sent(i).is_empty());
        pair.connect(i);
        let sent = pair.sent(i);
        assert!(matches!(
            &sent[..2],
            [Packet::Connect(_), Packet::Subscribe(_)]
        ));
        let events = pair.take_events(i);
        assert!(events.contains(&ClientEvent::Subscribed {
            packet_id: sid,
            reason_codes: vec![ReasonCode::GRANTED_QOS_2]
        }));
        assert_eq!(payloads(&messages(&events)), ["0", "1", "2"]);
        assert_eq!(published(&events).len(), 2);

        // Dropped while a SUBSCRIBE awaits its SUBACK: sent again on the next connection.
        pair.delay_ms = (50, 50);
        let sid = pair
            .act(i, |c, now| {
                c.subscribe(
                    sub_opts(&[("u", QoS::AtLeastOnce)]),
                    Properties::default(),
                    now,
                )
            })
            .unwrap();
        pair.drop_link(i, 0);
        pair.delay_ms = (0, 0);
        assert_eq!(pair.client(i).pending_requests(), 1);
        pair.connect(i);
        assert!(
            pair.take_events(i).iter().any(
                |e| matches!(e, ClientEvent::Subscribed { packet_id, .. } if *packet_id == sid)
            )
        );
        pair.publish(publ, "u", b"for u", QoS::AtLeastOnce).unwrap();
        assert_eq!(payloads(&pair.take_messages(i)), ["for u"]);
    }
}

// v5 [MQTT-2.2.1-3] v3.1.1 [MQTT-2.3.1-2]
#[test]
fn mqtt_2_2_1_3_packet_identifiers_in_use_are_never_reused() {
    let mut c = config(V5, "c");
    c.max_queued_messages = usize::MAX;
    let mut s = scripted(c, Properties::default());
    let mut seen = BTreeSet::new();
    for _ in 0..u16::MAX {
        let id = s
            .with(|c, now| c.publish(message("t", b"", QoS::AtLeastOnce), now))
            .unwrap()
            .unwrap();
        assert!(seen.insert(id));
    }
    s.take_sent();
    assert_eq!(
        s.with(|c, now| c.publish(message("t", b"", QoS::AtLeastOnce), now)),
        Err(ClientError::PacketIdsExhausted)
    );
    assert!(matches!(
        s.with(|c, now| c.subscribe(
            sub_opts(&[("a", QoS::AtMostOnce)]),
            Properties::default(),
            now
        )),
        Err(ClientError::PacketIdsExhausted)
    ));
    // QoS 0 needs none.
    assert_eq!(
        s.with(|c, now| c.publish(message("t", b"", QoS::AtMostOnce), now)),
        Ok(None)
    );
    s.server_sends(PubAck::new(pid(4242)));
    assert_eq!(
        s.with(|c, now| c.publish(message("t", b"", QoS::AtLeastOnce), now)),
        Ok(Some(pid(4242)))
    );
}

#[test]
fn the_queue_is_bounded() {
    let mut c = config(V5, "c");
    c.max_queued_messages = 2;
    let mut s = Scripted::new(c);
    for _ in 0..2 {
        s.with(|c, now| c.publish(message("t", b"", QoS::AtMostOnce), now))
            .unwrap();
    }
    assert_eq!(
        s.with(|c, now| c.publish(message("t", b"", QoS::AtMostOnce), now)),
        Err(ClientError::QueueFull)
    );
    // Maximum Packet Size of the broker, for completeness of `ServerLimits`.
    let props = Properties {
        maximum_packet_size: NonZeroU32::new(1000),
        ..Properties::default()
    };
    let s = scripted(config(V5, "d"), props);
    assert_eq!(s.client.server_limits().unwrap().maximum_packet_size, 1000);
}

/// Pulled transmit in the client engine (`docs/design/engine-io.md`): when the transport takes
/// nothing, the client holds at most `OUTBOX_HIGH_WATER` encoded bytes, the rest of its
/// messages stay queued as messages (bounded by `max_queued_messages`: `publish` then says
/// `QueueFull`), and pulling later gives every accepted message, in order.
#[test]
fn a_client_whose_transport_takes_nothing_holds_messages_not_bytes() {
    use mqtt_session::Timestamp;
    use mqtt_session::client::{Client, ClientOutput, OUTBOX_HIGH_WATER};
    let mut cfg = config(V5, "c");
    cfg.max_queued_messages = 100;
    let mut client = Client::new(cfg).unwrap();
    let now = Timestamp::from_secs(1_000);
    client.handle_connected(now);
    while client.poll_output().is_some() {}
    let connect = client.poll_transmit(usize::MAX, now).unwrap();
    assert_eq!(connect[0], 0x10);
    // CONNACK (5.0, accepted, no properties).
    client.handle_bytes(&[0x20, 0x03, 0x00, 0x00, 0x00], now);
    while client.poll_output().is_some() {}
    let mut accepted = 0u32;
    loop {
        let payload = accepted.to_be_bytes().repeat(256);
        match client.publish(message("t", &payload, QoS::AtMostOnce), now) {
            Ok(_) => accepted += 1,
            Err(ClientError::QueueFull) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(accepted < 10_000, "never full");
    }
    while client.poll_output().is_some() {}
    // 64 KiB encoded (about 63 messages of 1 KiB) plus 100 queued.
    let encoded = OUTBOX_HIGH_WATER / 1031 + 1;
    assert_eq!(accepted as usize, encoded + 100);
    let mut wire = bytes::BytesMut::new();
    while let Some(data) = client.poll_transmit(4096, now) {
        assert!(data.len() <= 4096);
        wire.extend_from_slice(&data);
    }
    let mut decoder = mqtt_session::codec::Decoder::with_version(V5);
    let mut n = 0u32;
    while let Some(Packet::Publish(p)) = decoder.decode(&mut wire).unwrap() {
        assert_eq!(p.payload[..4], n.to_be_bytes(), "in order");
        n += 1;
    }
    assert_eq!(n, accepted);
    assert!(matches!(
        client.poll_output(),
        None | Some(ClientOutput::Event(_))
    ));
}
