#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Publish and subscribe through the broker engine (sections 3.3 to 3.11, 4.3 to 4.9): topic
//! matching, overlapping and shared subscriptions, subscription options and identifiers,
//! retained messages, SUBACK / UNSUBACK, the QoS flows in both directions, redelivery and
//! ordering, flow control, packet size limits, topic aliases, message expiry and the offline
//! queue.

mod common;

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use common::*;
use mqtt_session::broker::{BrokerConfig, DropReason};
use mqtt_session::codec::{
    Connect, Packet, PacketId, PayloadFormatIndicator, ProtocolVersion, PubAck, PubRec, Publish,
    QoS, ReasonCode, RetainHandling,
};

fn v5_client(sim: &mut Sim, id: &str) -> Client {
    sim.connect(connect_v5(id, true, None)).0
}

fn topics(ps: &[Publish]) -> Vec<String> {
    ps.iter().map(|p| p.topic.to_string()).collect()
}

/// Acknowledges `ps` as a client would (QoS 2: PUBREC, then PUBCOMP after the PUBREL).
fn ack_all(sim: &mut Sim, c: &mut Client, ps: &[Publish]) {
    for p in ps {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => sim.send(c, puback(p.packet_id.unwrap())),
            QoS::ExactlyOnce => {
                let id = p.packet_id.unwrap();
                sim.send(c, pubrec(id));
                assert!(matches!(&sim.recv(c)[..], [Packet::PubRel(r)] if r.packet_id == id));
                sim.send(c, pubcomp(id));
            }
        }
    }
}

// ---- Topic matching ----------------------------------------------------------------------------

// v5 v3.1.1 [MQTT-3.3.2-3]
#[test]
fn mqtt_3_3_2_3_wildcards_match_as_section_4_7_describes() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        let connect = |id: &str| -> Connect {
            if version.is_v5() {
                connect_v5(id, true, None)
            } else {
                connect_v311(id, true)
            }
        };
        let mut one = sim.subscriber(connect("one"), &[("sport/tennis/+", QoS::AtMostOnce)]);
        let mut multi = sim.subscriber(connect("multi"), &[("sport/#", QoS::AtMostOnce)]);
        let mut two = sim.subscriber(connect("two"), &[("+/+", QoS::AtMostOnce)]);
        let mut all = sim.subscriber(connect("all"), &[("#", QoS::AtMostOnce)]);
        let (mut p, _) = sim.connect(connect("p"));
        let published = [
            "sport",
            "sport/tennis",
            "sport/tennis/p1",
            "sport/tennis/p1/ranking",
            "/finance",
        ];
        for t in published {
            sim.publish(&mut p, publish(t, b"x", QoS::AtMostOnce, None));
        }
        assert_eq!(topics(&sim.recv_publishes(&mut one)), ["sport/tennis/p1"]);
        assert_eq!(
            topics(&sim.recv_publishes(&mut multi)),
            [
                "sport",
                "sport/tennis",
                "sport/tennis/p1",
                "sport/tennis/p1/ranking"
            ]
        );
        assert_eq!(
            topics(&sim.recv_publishes(&mut two)),
            ["sport/tennis", "/finance"]
        );
        assert_eq!(topics(&sim.recv_publishes(&mut all)), published);
    }
}

// v5 [MQTT-4.7.1-1] [MQTT-4.7.1-2]
// v3.1.1 [MQTT-4.7.1-2] [MQTT-4.7.1-3]
#[test]
fn a_subscribe_with_a_misplaced_wildcard_closes_the_connection() {
    for bad in ["a#", "a/#/b", "a+", "a/b+/c"] {
        for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
            let mut sim = Sim::new();
            let connect = if version.is_v5() {
                connect_v5("c", true, None)
            } else {
                connect_v311("c", true)
            };
            let (mut c, _) = sim.connect(connect);
            // SUBSCRIBE, packet id 1, one filter, QoS 0 (built by hand: the encoder refuses it).
            let mut body = vec![0x00, 0x01];
            if version.is_v5() {
                body.push(0x00);
            }
            body.extend_from_slice(&u16::try_from(bad.len()).unwrap().to_be_bytes());
            body.extend_from_slice(bad.as_bytes());
            body.push(0x00);
            let mut bytes = vec![0x82, u8::try_from(body.len()).unwrap()];
            bytes.extend_from_slice(&body);
            sim.send_bytes(&c, &bytes);
            let got = sim.recv(&mut c);
            assert!(
                got.iter().all(|p| matches!(p, Packet::Disconnect(_))),
                "{bad}: {got:?}"
            );
            assert!(sim.is_closed(&c), "{bad}");
            assert_eq!(sim.broker.subscription_count(), 0);
        }
    }
}

/// Sends raw bytes from a connected subscriber of `#`; returns what came back to it.
fn malformed_from_client(version: ProtocolVersion, bytes: &[u8]) -> (Sim, Client, Vec<Packet>) {
    let mut sim = Sim::new();
    let connect = if version.is_v5() {
        connect_v5("c", true, None)
    } else {
        connect_v311("c", true)
    };
    let (mut c, _) = sim.connect(connect);
    sim.send_bytes(&c, bytes);
    let got = sim.recv(&mut c);
    (sim, c, got)
}

// v5 [MQTT-3.8.1-1] [MQTT-3.10.1-1] [MQTT-3.8.3-1] [MQTT-3.8.3-2] [MQTT-3.8.3-5] [MQTT-3.10.3-1] [MQTT-3.10.3-2] [MQTT-4.8.2-1] [MQTT-4.8.2-2] [MQTT-4.13.1-1]
#[test]
fn v5_a_malformed_subscribe_or_unsubscribe_closes_the_connection() {
    let head: &[u8] = &[0x00, 0x01, 0x00]; // packet id 1, no properties
    let t = lp(b"t");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "SUBSCRIBE flags 0000",
            framed(0x80, &cat(&[head, &t, &[0]])),
        ),
        ("UNSUBSCRIBE flags 0000", framed(0xA0, &cat(&[head, &t]))),
        ("SUBSCRIBE without a filter", framed(0x82, head)),
        ("UNSUBSCRIBE without a filter", framed(0xA2, head)),
        (
            "reserved option bits",
            framed(0x82, &cat(&[head, &t, &[0x40]])),
        ),
        (
            "SUBSCRIBE filter not UTF-8",
            framed(0x82, &cat(&[head, &lp(&[0xC3, 0x28]), &[0]])),
        ),
        (
            "UNSUBSCRIBE filter not UTF-8",
            framed(0xA2, &cat(&[head, &lp(&[0xFF])])),
        ),
        (
            "empty ShareName",
            framed(0x82, &cat(&[head, &lp(b"$share//t"), &[0]])),
        ),
        (
            "ShareName with +",
            framed(0x82, &cat(&[head, &lp(b"$share/g+/t"), &[0]])),
        ),
        (
            "ShareName without a filter",
            framed(0x82, &cat(&[head, &lp(b"$share/g/"), &[0]])),
        ),
    ];
    for (what, bytes) in cases {
        let (sim, c, got) = malformed_from_client(ProtocolVersion::V5, &bytes);
        assert!(
            matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code.is_error()),
            "{what}: {got:?}"
        );
        assert!(sim.is_closed(&c), "{what}");
        assert_eq!(sim.broker.subscription_count(), 0, "{what}");
    }
}

// v3.1.1 [MQTT-3.8.1-1] [MQTT-3.10.1-1] [MQTT-3.8.3-1] [MQTT-3.8.3-3] [MQTT-3.10.3-1] [MQTT-3.10.3-2] [MQTT-4.8.0-1]
#[test]
fn v311_a_malformed_subscribe_or_unsubscribe_closes_the_connection() {
    let head: &[u8] = &[0x00, 0x01];
    let t = lp(b"t");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "SUBSCRIBE flags 0000",
            framed(0x80, &cat(&[head, &t, &[0]])),
        ),
        ("UNSUBSCRIBE flags 0000", framed(0xA0, &cat(&[head, &t]))),
        ("SUBSCRIBE without a filter", framed(0x82, head)),
        ("UNSUBSCRIBE without a filter", framed(0xA2, head)),
        (
            "reserved option bits",
            framed(0x82, &cat(&[head, &t, &[0x04]])),
        ),
        (
            "SUBSCRIBE filter not UTF-8",
            framed(0x82, &cat(&[head, &lp(&[0xC3, 0x28]), &[0]])),
        ),
        (
            "UNSUBSCRIBE filter not UTF-8",
            framed(0xA2, &cat(&[head, &lp(&[0xFF])])),
        ),
    ];
    for (what, bytes) in cases {
        let (sim, c, got) = malformed_from_client(ProtocolVersion::V3_1_1, &bytes);
        assert!(got.is_empty(), "{what}: {got:?}");
        assert!(sim.is_closed(&c), "{what}");
        assert_eq!(sim.broker.subscription_count(), 0, "{what}");
    }
}

/// A PUBLISH body: topic, (5.0: properties,) payload `x`.
fn publish_body(version: ProtocolVersion, topic_bytes: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = lp(topic_bytes);
    if version.is_v5() {
        body.push(u8::try_from(props.len()).unwrap());
        body.extend_from_slice(props);
    }
    body.push(b'x');
    body
}

// v5 [MQTT-3.3.1-2] [MQTT-3.3.1-4] [MQTT-3.3.2-1] [MQTT-3.3.2-2] [MQTT-4.7.0-1] [MQTT-4.7.3-1] [MQTT-4.7.3-2]
// v3.1.1 [MQTT-3.3.1-2] [MQTT-3.3.1-4] [MQTT-3.3.2-1] [MQTT-3.3.2-2] [MQTT-4.7.1-1] [MQTT-4.7.3-1] [MQTT-4.7.3-2]
#[test]
fn a_malformed_publish_closes_the_connection_and_is_not_delivered() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let b = |t: &[u8]| publish_body(version, t, &[]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("topic with +", framed(0x30, &b(b"a/+"))),
            ("topic with #", framed(0x30, &b(b"a/#"))),
            ("topic not UTF-8", framed(0x30, &b(&[b'a', 0xC3, 0x28]))),
            ("topic with U+0000", framed(0x30, &b(b"a\0b"))),
            ("empty topic", framed(0x30, &b(b""))),
            (
                "QoS 3",
                framed(0x36, &cat(&[&lp(b"t"), &[0, 1], &b(b"")[2..]])),
            ),
            ("DUP at QoS 0", framed(0x38, &b(b"t"))),
        ];
        for (what, bytes) in cases {
            let mut sim = Sim::new();
            let connect = |id: &str| -> Connect {
                if version.is_v5() {
                    connect_v5(id, true, None)
                } else {
                    connect_v311(id, true)
                }
            };
            let mut all = sim.subscriber(connect("all"), &[("#", QoS::AtMostOnce)]);
            let (mut c, _) = sim.connect(connect("c"));
            sim.send_bytes(&c, &bytes);
            let got = sim.recv(&mut c);
            if version.is_v5() {
                assert!(
                    matches!(&got[..], [Packet::Disconnect(d)] if d.reason_code.is_error()),
                    "{what}: {got:?}"
                );
            } else {
                assert!(got.is_empty(), "{what}: {got:?}");
            }
            assert!(sim.is_closed(&c), "{version:?} {what}");
            assert!(
                sim.recv_publishes(&mut all).is_empty(),
                "{version:?} {what}"
            );
        }
    }
}

// v5 [MQTT-3.3.2-13] [MQTT-3.3.2-14] [MQTT-3.3.2-19]
#[test]
fn v5_a_publish_with_an_invalid_response_topic_or_content_type_is_refused() {
    let cases: Vec<(&str, Vec<u8>, ReasonCode)> = vec![
        (
            "Response Topic with #",
            cat(&[&[0x08], &lp(b"replies/#")]),
            ReasonCode::PROTOCOL_ERROR,
        ),
        (
            "Response Topic not UTF-8",
            cat(&[&[0x08], &lp(&[0xC3, 0x28])]),
            ReasonCode::MALFORMED_PACKET,
        ),
        (
            "Content Type not UTF-8",
            cat(&[&[0x03], &lp(&[0xFF])]),
            ReasonCode::MALFORMED_PACKET,
        ),
    ];
    for (what, props, code) in cases {
        let bytes = framed(0x30, &publish_body(ProtocolVersion::V5, b"t", &props));
        let (sim, c, got) = malformed_from_client(ProtocolVersion::V5, &bytes);
        assert_eq!(disconnect_reason(&got), Some(code), "{what}");
        assert!(sim.is_closed(&c), "{what}");
    }
}

// v3.1.1 [MQTT-3.6.1-1]
#[test]
fn v311_a_pubrel_with_reserved_flags_0000_closes_the_connection() {
    let (sim, c, got) = malformed_from_client(ProtocolVersion::V3_1_1, &[0x60, 0x02, 0x00, 0x01]);
    assert!(got.is_empty());
    assert!(sim.is_closed(&c));
}

// v5 [MQTT-3.6.2-1]
#[test]
fn v5_a_pubrec_for_an_unknown_packet_id_gets_pubrel_0x92() {
    let mut sim = Sim::new();
    let (mut c, _) = sim.connect(connect_v5("c", true, None));
    sim.send(&c, pubrec(pid(77)));
    let Packet::PubRel(rel) = only(sim.recv(&mut c)) else {
        panic!("expected PUBREL")
    };
    assert_eq!(rel.packet_id, pid(77));
    assert_eq!(rel.reason_code, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
    assert!(!sim.is_closed(&c));
}

// v5 v3.1.1 [MQTT-4.7.2-1]
#[test]
fn mqtt_4_7_2_1_leading_wildcards_do_not_match_dollar_topics() {
    let mut sim = Sim::new();
    let mut hash = sim.subscriber(connect_v5("hash", true, None), &[("#", QoS::AtMostOnce)]);
    let mut plus = sim.subscriber(
        connect_v5("plus", true, None),
        &[("+/monitor/Clients", QoS::AtMostOnce)],
    );
    let mut sys = sim.subscriber(
        connect_v5("sys", true, None),
        &[("$SYS/#", QoS::AtMostOnce)],
    );
    let mut sysplus = sim.subscriber(
        connect_v5("sysplus", true, None),
        &[("$SYS/monitor/+", QoS::AtMostOnce)],
    );
    let mut p = v5_client(&mut sim, "p");
    sim.publish(
        &mut p,
        publish("$SYS/monitor/Clients", b"1", QoS::AtMostOnce, None),
    );
    sim.publish(
        &mut p,
        publish("x/monitor/Clients", b"2", QoS::AtMostOnce, None),
    );
    assert_eq!(payloads(&sim.recv_publishes(&mut hash)), ["2"]);
    assert_eq!(payloads(&sim.recv_publishes(&mut plus)), ["2"]);
    assert_eq!(payloads(&sim.recv_publishes(&mut sys)), ["1"]);
    assert_eq!(payloads(&sim.recv_publishes(&mut sysplus)), ["1"]);
    // Retained messages on $ topics are not sent to a "#" subscription either.
    sim.publish(&mut p, retained("$SYS/uptime", b"42"));
    let mut late = v5_client(&mut sim, "late");
    let (_, got) = sim.subscribe_ack(&mut late, subscribe(1, &[("#", QoS::AtMostOnce)]));
    assert!(got.is_empty());
    let (_, got) = sim.subscribe_ack(&mut late, subscribe(2, &[("$SYS/+", QoS::AtMostOnce)]));
    assert_eq!(payloads(&got), ["42"]);
}

// v5 v3.1.1 [MQTT-4.7.3-4]
#[test]
fn mqtt_4_7_3_4_topics_are_matched_without_normalization() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("a/b", QoS::AtMostOnce)]);
    let mut p = v5_client(&mut sim, "p");
    for t in [
        "A/b",
        "a/B",
        "a/b/",
        "/a/b",
        "a//b",
        "a/b ",
        "a/b\u{FEFF}",
        "a/b",
    ] {
        sim.publish(
            &mut p,
            publish_owned(t, b"x".to_vec(), QoS::AtMostOnce, None),
        );
    }
    assert_eq!(topics(&sim.recv_publishes(&mut s)), ["a/b"]);
}

// ---- Overlapping subscriptions and subscription identifiers ------------------------------------

// v5 [MQTT-3.3.4-2] [MQTT-3.3.4-3] [MQTT-3.3.4-4]
#[test]
fn v5_overlapping_subscriptions_give_one_copy_at_the_highest_qos_with_every_identifier() {
    let mut sim = Sim::new();
    let mut s = v5_client(&mut sim, "s");
    sim.subscribe_ack(&mut s, subscribe_id(1, &[("a/+", QoS::AtMostOnce)], 1));
    sim.subscribe_ack(&mut s, subscribe_id(2, &[("a/#", QoS::ExactlyOnce)], 2));
    sim.subscribe_ack(&mut s, subscribe(3, &[("a/b", QoS::AtLeastOnce)]));
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("a/b", b"x", QoS::ExactlyOnce, Some(1)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
    let ids: BTreeSet<u32> = got[0].properties.subscription_identifiers().collect();
    assert_eq!(ids, BTreeSet::from([1, 2]));
    // A message matching only one of them carries only its identifier.
    sim.publish(&mut p, publish("a/c/d", b"y", QoS::AtLeastOnce, Some(2)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]
            .properties
            .subscription_identifiers()
            .collect::<Vec<_>>(),
        [2]
    );
}

// v3.1.1 [MQTT-3.3.5-1]
#[test]
fn v311_overlapping_subscriptions_deliver_at_the_highest_matching_qos() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(
        connect_v311("s", true),
        &[
            ("a/+", QoS::AtMostOnce),
            ("a/#", QoS::AtLeastOnce),
            ("#", QoS::AtMostOnce),
        ],
    );
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(&mut p, publish("a/b", b"x", QoS::ExactlyOnce, Some(1)));
    let got = sim.recv_publishes(&mut s);
    assert!(!got.is_empty());
    assert!(got.iter().any(|g| g.qos == QoS::AtLeastOnce), "{got:?}");
    assert!(got.iter().all(|g| g.qos <= QoS::AtLeastOnce));
}

// v5 [MQTT-3.3.4-5]
#[test]
fn v5_a_shared_and_a_non_shared_match_give_two_copies_each_with_its_own_identifier() {
    let mut sim = Sim::new();
    let mut s = v5_client(&mut sim, "s");
    sim.subscribe_ack(&mut s, subscribe_id(1, &[("a", QoS::AtLeastOnce)], 7));
    sim.subscribe_ack(
        &mut s,
        subscribe_id(2, &[("$share/g/a", QoS::AtLeastOnce)], 9),
    );
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("a", b"x", QoS::AtLeastOnce, Some(1)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 2);
    let mut ids: Vec<Vec<u32>> = got
        .iter()
        .map(|g| g.properties.subscription_identifiers().collect::<Vec<_>>())
        .collect();
    ids.sort();
    assert_eq!(ids, [vec![7], vec![9]]);
}

// v5 [MQTT-3.8.4-3]
#[test]
fn v5_subscribing_to_the_same_filter_replaces_the_subscription() {
    let mut sim = Sim::new();
    let mut s = v5_client(&mut sim, "s");
    sim.subscribe_ack(&mut s, subscribe_id(1, &[("a", QoS::ExactlyOnce)], 5));
    let (ack, _) = sim.subscribe_ack(&mut s, subscribe(2, &[("a", QoS::AtMostOnce)]));
    assert_eq!(ack.reason_codes, [ReasonCode::GRANTED_QOS_0]);
    assert_eq!(sim.broker.subscription_count(), 1);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("a", b"x", QoS::ExactlyOnce, Some(1)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 1);
    // The new options and (no) identifier hold.
    assert_eq!(got[0].qos, QoS::AtMostOnce);
    assert!(
        got[0]
            .properties
            .subscription_identifiers()
            .next()
            .is_none()
    );
}

// v3.1.1 [MQTT-3.8.4-3]
#[test]
fn v311_subscribing_to_the_same_filter_replaces_the_subscription() {
    let mut sim = Sim::new();
    let (mut s, _) = sim.connect(connect_v311("s", true));
    sim.subscribe_ack(&mut s, subscribe(1, &[("a", QoS::AtMostOnce)]));
    sim.subscribe_ack(&mut s, subscribe(2, &[("a", QoS::ExactlyOnce)]));
    assert_eq!(sim.broker.subscription_count(), 1);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(&mut p, publish("a", b"x", QoS::ExactlyOnce, Some(1)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
}

/// Section 3.2.2.3.12: Subscription Identifiers not available; a SUBSCRIBE with one is a
/// Protocol Error, 0xA1.
#[test]
fn v5_a_subscription_identifier_when_not_supported_is_refused_with_0xa1() {
    let mut sim = Sim::with_config(config_with(|c| {
        c.subscription_identifiers_available = false
    }));
    let (mut s, ack) = sim.connect(connect_v5("s", true, None));
    assert_eq!(
        ack.properties.subscription_identifier_available,
        Some(false)
    );
    sim.send(&s, subscribe_id(1, &[("a", QoS::AtMostOnce)], 1));
    assert_eq!(
        disconnect_reason(&sim.recv(&mut s)),
        Some(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
    );
    assert!(sim.is_closed(&s));
    assert_eq!(sim.broker.subscription_count(), 0);
}

// v5 [MQTT-3.3.4-6]
#[test]
fn v5_a_publish_from_a_client_with_a_subscription_identifier_is_a_protocol_error() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("a", QoS::AtMostOnce)]);
    let mut p = v5_client(&mut sim, "p");
    let mut bad = publish("a", b"x", QoS::AtLeastOnce, Some(1));
    bad.properties.push_subscription_identifier(3).unwrap();
    let got = sim.publish(&mut p, bad);
    assert_eq!(disconnect_reason(&got), Some(ReasonCode::PROTOCOL_ERROR));
    assert!(got.iter().all(|g| !matches!(g, Packet::PubAck(_))));
    assert!(sim.recv_publishes(&mut s).is_empty());
}

// ---- Subscription options ----------------------------------------------------------------------

// v5 [MQTT-3.8.3-3]
#[test]
fn v5_no_local_keeps_a_clients_own_messages_from_it() {
    let mut sim = Sim::new();
    let mut me = v5_client(&mut sim, "me");
    let opts = options(
        QoS::AtLeastOnce,
        true,
        false,
        RetainHandling::SendAtSubscribe,
    );
    sim.subscribe_ack(&mut me, subscribe_with(1, "chat", opts));
    let mut other = sim.subscriber(
        connect_v5("other", true, None),
        &[("chat", QoS::AtLeastOnce)],
    );
    let got = sim.publish(&mut me, publish("chat", b"mine", QoS::AtLeastOnce, Some(1)));
    // Acknowledged as delivered (another session matched), but not to the publisher.
    assert!(matches!(&got[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::SUCCESS));
    assert_eq!(payloads(&sim.recv_publishes(&mut other)), ["mine"]);
    // Messages of other clients still reach it.
    sim.publish(
        &mut other,
        publish("chat", b"yours", QoS::AtLeastOnce, Some(1)),
    );
    assert_eq!(payloads(&sim.recv_publishes(&mut me)), ["yours"]);
}

// v5 [MQTT-3.3.1-12]
#[test]
fn v5_retain_as_published_0_clears_the_retain_flag() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("r", QoS::AtMostOnce)]);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, retained("r", b"x"));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(payloads(&got), ["x"]);
    assert!(!got[0].retain);
}

// v5 [MQTT-3.3.1-13]
#[test]
fn v5_retain_as_published_1_keeps_the_retain_flag_as_published() {
    let mut sim = Sim::new();
    let mut s = v5_client(&mut sim, "s");
    let opts = options(
        QoS::AtMostOnce,
        false,
        true,
        RetainHandling::SendAtSubscribe,
    );
    sim.subscribe_ack(&mut s, subscribe_with(1, "r", opts));
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, retained("r", b"kept"));
    sim.publish(&mut p, publish("r", b"plain", QoS::AtMostOnce, None));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(payloads(&got), ["kept", "plain"]);
    assert!(got[0].retain);
    assert!(!got[1].retain);
}

fn with_retained(sim: &mut Sim) {
    let mut p = v5_client(sim, "p");
    sim.publish(
        &mut p,
        retained_qos("r/1", b"one", QoS::AtLeastOnce, Some(1)),
    );
    sim.publish(
        &mut p,
        retained_qos("r/2", b"two", QoS::ExactlyOnce, Some(2)),
    );
    sim.send(&p, pubrel(pid(2)));
}

// v5 [MQTT-3.3.1-9] [MQTT-3.8.4-4]
#[test]
fn v5_retain_handling_0_sends_retained_messages_at_every_subscribe() {
    let mut sim = Sim::new();
    with_retained(&mut sim);
    let mut s = v5_client(&mut sim, "s");
    let opts = options(
        QoS::ExactlyOnce,
        false,
        false,
        RetainHandling::SendAtSubscribe,
    );
    let (_, got) = sim.subscribe_ack(&mut s, subscribe_with(1, "r/+", opts));
    let mut got_payloads = payloads(&got);
    got_payloads.sort();
    assert_eq!(got_payloads, ["one", "two"]);
    ack_all(&mut sim, &mut s, &got);
    // Again when the subscription is replaced.
    let (_, again) = sim.subscribe_ack(&mut s, subscribe_with(2, "r/+", opts));
    assert_eq!(again.len(), 2);
}

// v5 [MQTT-3.3.1-10]
#[test]
fn v5_retain_handling_1_sends_retained_messages_only_for_a_new_subscription() {
    let mut sim = Sim::new();
    with_retained(&mut sim);
    let mut s = v5_client(&mut sim, "s");
    let opts = options(QoS::ExactlyOnce, false, false, RetainHandling::SendIfNew);
    let (_, got) = sim.subscribe_ack(&mut s, subscribe_with(1, "r/+", opts));
    assert_eq!(got.len(), 2);
    ack_all(&mut sim, &mut s, &got);
    let (ack, again) = sim.subscribe_ack(&mut s, subscribe_with(2, "r/+", opts));
    assert_eq!(ack.reason_codes, [ReasonCode::GRANTED_QOS_2]);
    assert!(again.is_empty());
}

// v5 [MQTT-3.3.1-11]
#[test]
fn v5_retain_handling_2_sends_no_retained_messages() {
    let mut sim = Sim::new();
    with_retained(&mut sim);
    let mut s = v5_client(&mut sim, "s");
    let opts = options(QoS::ExactlyOnce, false, false, RetainHandling::DoNotSend);
    let (ack, got) = sim.subscribe_ack(&mut s, subscribe_with(1, "r/+", opts));
    assert_eq!(ack.reason_codes, [ReasonCode::GRANTED_QOS_2]);
    assert!(got.is_empty());
    // The subscription itself works.
    let mut p = v5_client(&mut sim, "p2");
    sim.publish(&mut p, publish("r/3", b"three", QoS::AtMostOnce, None));
    assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["three"]);
}

// v5 [MQTT-3.8.4-8]
#[test]
fn v5_retained_messages_at_subscribe_have_retain_1_and_the_lower_of_both_qos() {
    let mut sim = Sim::new();
    with_retained(&mut sim);
    let mut s = v5_client(&mut sim, "s");
    let (_, got) = sim.subscribe_ack(&mut s, subscribe(1, &[("r/#", QoS::AtLeastOnce)]));
    let mut got = got;
    got.sort_by_key(|p| p.topic.to_string());
    assert_eq!(topics(&got), ["r/1", "r/2"]);
    assert!(got.iter().all(|p| p.retain));
    // r/1 was retained at QoS 1, r/2 at QoS 2: both limited to the granted QoS 1.
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::AtLeastOnce);
    let (_, got0) = sim.subscribe_ack(&mut s, subscribe(2, &[("r/1", QoS::AtMostOnce)]));
    assert_eq!(got0[0].qos, QoS::AtMostOnce);
}

// v5 [MQTT-3.3.4-3]
#[test]
fn v5_retained_messages_sent_at_subscribe_carry_the_subscription_identifier() {
    let mut sim = Sim::new();
    with_retained(&mut sim);
    let mut s = v5_client(&mut sim, "s");
    let (_, got) = sim.subscribe_ack(&mut s, subscribe_id(1, &[("r/1", QoS::AtLeastOnce)], 99));
    assert_eq!(payloads(&got), ["one"]);
    assert_eq!(
        got[0]
            .properties
            .subscription_identifiers()
            .collect::<Vec<_>>(),
        [99]
    );
}

// ---- Retained messages -------------------------------------------------------------------------

// v5 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7]
#[test]
fn v5_retained_messages_are_replaced_and_removed_by_an_empty_payload() {
    let mut sim = Sim::new();
    let mut live = v5_client(&mut sim, "live");
    let opts = options(
        QoS::AtMostOnce,
        false,
        true,
        RetainHandling::SendAtSubscribe,
    );
    sim.subscribe_ack(&mut live, subscribe_with(1, "r", opts));
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, retained("r", b"one"));
    sim.publish(&mut p, retained("r", b"two"));
    assert_eq!(sim.broker.retained_count(), 1);
    assert_eq!(&sim.broker.retained("r").unwrap().payload[..], b"two");
    sim.publish(&mut p, retained("r", b""));
    assert_eq!(sim.broker.retained_count(), 0);
    // The empty message is still delivered to current subscribers as a normal message.
    let got = sim.recv_publishes(&mut live);
    assert_eq!(payloads(&got), ["one", "two", ""]);
    let mut later = v5_client(&mut sim, "later");
    let (_, got) = sim.subscribe_ack(&mut later, subscribe(1, &[("r", QoS::AtMostOnce)]));
    assert!(got.is_empty());
}

// v5 [MQTT-3.3.1-8]
#[test]
fn v5_a_publish_without_retain_neither_stores_nor_removes_the_retained_message() {
    let mut sim = Sim::new();
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, retained("r", b"kept"));
    sim.publish(&mut p, publish("r", b"passing", QoS::AtMostOnce, None));
    sim.publish(&mut p, publish("r", b"", QoS::AtMostOnce, None));
    sim.publish(
        &mut p,
        publish("other", b"not retained", QoS::AtMostOnce, None),
    );
    assert_eq!(sim.broker.retained_count(), 1);
    assert_eq!(&sim.broker.retained("r").unwrap().payload[..], b"kept");
}

// v3.1.1 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] [MQTT-3.3.1-9]
#[test]
fn v311_retained_messages_go_to_new_subscriptions_with_retain_1_and_to_established_ones_with_0() {
    let mut sim = Sim::new();
    let mut live = sim.subscriber(connect_v311("live", true), &[("r/+", QoS::AtLeastOnce)]);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(
        &mut p,
        retained_qos("r/1", b"one", QoS::AtLeastOnce, Some(1)),
    );
    let got = sim.recv_publishes(&mut live);
    assert_eq!(payloads(&got), ["one"]);
    assert!(!got[0].retain);
    let retained_msg = sim.broker.retained("r/1").unwrap();
    assert_eq!(retained_msg.qos, QoS::AtLeastOnce);
    let (mut late, _) = sim.connect(connect_v311("late", true));
    let (_, got) = sim.subscribe_ack(&mut late, subscribe(1, &[("r/#", QoS::ExactlyOnce)]));
    assert_eq!(payloads(&got), ["one"]);
    assert!(got[0].retain);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

// v3.1.1 [MQTT-3.3.1-7] [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.3.1-12]
#[test]
fn v311_qos_0_and_empty_retained_messages_replace_and_clear() {
    let mut sim = Sim::new();
    let mut live = sim.subscriber(connect_v311("live", true), &[("r", QoS::AtMostOnce)]);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(
        &mut p,
        retained_qos("r", b"first", QoS::AtLeastOnce, Some(1)),
    );
    // A QoS 0 retained message replaces the previous one.
    sim.publish(&mut p, retained("r", b"second"));
    assert_eq!(&sim.broker.retained("r").unwrap().payload[..], b"second");
    // RETAIN 0 changes nothing.
    sim.publish(&mut p, publish("r", b"", QoS::AtMostOnce, None));
    assert_eq!(&sim.broker.retained("r").unwrap().payload[..], b"second");
    // A zero-byte retained message is forwarded and clears the topic; it is not stored.
    sim.publish(&mut p, retained("r", b""));
    assert_eq!(sim.broker.retained_count(), 0);
    assert_eq!(
        payloads(&sim.recv_publishes(&mut live)),
        ["first", "second", "", ""]
    );
    let (mut late, _) = sim.connect(connect_v311("late", true));
    let (_, got) = sim.subscribe_ack(&mut late, subscribe(1, &[("r", QoS::AtMostOnce)]));
    assert!(got.is_empty());
}

// ---- Shared subscriptions ----------------------------------------------------------------------

/// Section 4.8.2: each message to one member of the share group only.
// v5 [MQTT-4.8.2-3]
#[test]
fn v5_each_message_goes_to_exactly_one_member_of_a_share_group_at_its_granted_qos() {
    let mut sim = Sim::new();
    let mut a = sim.subscriber(
        connect_v5("a", true, None),
        &[("$share/g/job/+", QoS::AtMostOnce)],
    );
    let mut b = sim.subscriber(
        connect_v5("b", true, None),
        &[("$share/g/job/+", QoS::AtLeastOnce)],
    );
    let mut p = v5_client(&mut sim, "p");
    for i in 0..10u8 {
        sim.publish(
            &mut p,
            publish_owned("job/x", vec![b'0' + i], QoS::AtLeastOnce, Some(1)),
        );
    }
    let got_a = sim.recv_publishes(&mut a);
    let got_b = sim.recv_publishes(&mut b);
    assert_eq!(got_a.len() + got_b.len(), 10);
    let mut all = payloads(&got_a);
    all.extend(payloads(&got_b));
    all.sort();
    assert_eq!(all, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    // Both members got work (round robin), each at the QoS its subscription granted.
    assert!(!got_a.is_empty() && !got_b.is_empty());
    assert!(got_a.iter().all(|p| p.qos == QoS::AtMostOnce));
    assert!(got_b.iter().all(|p| p.qos == QoS::AtLeastOnce));
    assert!(got_a.iter().chain(&got_b).all(|p| p.topic == "job/x"));
}

/// Section 4.8.2: no retained messages are sent for a shared subscription.
#[test]
fn v5_a_shared_subscription_gets_no_retained_messages() {
    let mut sim = Sim::new();
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, retained("job/1", b"old"));
    let mut a = v5_client(&mut sim, "a");
    let (ack, got) =
        sim.subscribe_ack(&mut a, subscribe(1, &[("$share/g/job/+", QoS::AtMostOnce)]));
    assert_eq!(ack.reason_codes, [ReasonCode::GRANTED_QOS_0]);
    assert!(got.is_empty());
    let (_, got) = sim.subscribe_ack(&mut a, subscribe(2, &[("job/+", QoS::AtMostOnce)]));
    assert_eq!(payloads(&got), ["old"]);
}

/// Section 3.3.4: a shared delivery carries the receiving member's Subscription Identifier.
// v5 [MQTT-3.3.4-3]
#[test]
fn v5_a_shared_delivery_carries_the_receiving_members_identifier() {
    let mut sim = Sim::new();
    let mut a = v5_client(&mut sim, "a");
    sim.subscribe_ack(
        &mut a,
        subscribe_id(1, &[("$share/g/t", QoS::AtMostOnce)], 11),
    );
    let mut b = v5_client(&mut sim, "b");
    sim.subscribe_ack(
        &mut b,
        subscribe_id(1, &[("$share/g/t", QoS::AtMostOnce)], 22),
    );
    let mut p = v5_client(&mut sim, "p");
    for _ in 0..4 {
        sim.publish(&mut p, publish("t", b"x", QoS::AtMostOnce, None));
    }
    let got_a = sim.recv_publishes(&mut a);
    let got_b = sim.recv_publishes(&mut b);
    assert_eq!(got_a.len() + got_b.len(), 4);
    assert!(
        got_a
            .iter()
            .all(|p| p.properties.subscription_identifiers().collect::<Vec<_>>() == [11])
    );
    assert!(
        got_b
            .iter()
            .all(|p| p.properties.subscription_identifiers().collect::<Vec<_>>() == [22])
    );
}

// v5 [MQTT-3.8.3-4]
#[test]
fn v5_no_local_on_a_shared_subscription_is_a_protocol_error() {
    let mut sim = Sim::new();
    let (mut c, _) = sim.connect(connect_v5("c", true, None));
    // SUBSCRIBE id 1, no properties, "$share/g/t" with options QoS 0 + No Local (built by hand:
    // the encoder refuses it).
    let mut bytes = vec![0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0A];
    bytes.extend_from_slice(b"$share/g/t");
    bytes.push(0x04);
    sim.send_bytes(&c, &bytes);
    assert_eq!(
        disconnect_reason(&sim.recv(&mut c)),
        Some(ReasonCode::PROTOCOL_ERROR)
    );
    assert!(sim.is_closed(&c));
    assert_eq!(sim.broker.subscription_count(), 0);
}

// v5 [MQTT-4.8.2-6]
#[test]
fn v5_a_shared_message_refused_by_its_member_is_not_sent_to_another() {
    let mut sim = Sim::new();
    let mut a = sim.subscriber(
        connect_v5("a", true, None),
        &[("$share/g/t", QoS::AtLeastOnce)],
    );
    let mut b = sim.subscriber(
        connect_v5("b", true, None),
        &[("$share/g/t", QoS::AtLeastOnce)],
    );
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"x", QoS::AtLeastOnce, Some(1)));
    let got_a = sim.recv_publishes(&mut a);
    let got_b = sim.recv_publishes(&mut b);
    assert_eq!(got_a.len() + got_b.len(), 1);
    let (receiver, got) = if got_a.is_empty() {
        (&b, &got_b)
    } else {
        (&a, &got_a)
    };
    let mut refuse = PubAck::new(got[0].packet_id.unwrap());
    refuse.reason_code = ReasonCode::UNSPECIFIED_ERROR;
    sim.send(receiver, refuse);
    assert!(sim.recv_publishes(&mut a).is_empty());
    assert!(sim.recv_publishes(&mut b).is_empty());
    assert_eq!(
        sim.broker.pending_messages("a") + sim.broker.pending_messages("b"),
        0
    );
}

// v5 [MQTT-4.8.2-4] [MQTT-4.8.2-5]
#[test]
fn v5_a_shared_message_for_an_offline_member_waits_for_it_and_dies_with_its_session() {
    let mut sim = Sim::new();
    let a = sim.subscriber(
        connect_v5("a", true, Some(100)),
        &[("$share/g/t", QoS::AtLeastOnce)],
    );
    let b = sim.subscriber(
        connect_v5("b", true, Some(1000)),
        &[("$share/g/t", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&a);
    sim.drop_connection(&b);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"one", QoS::AtLeastOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"two", QoS::AtLeastOnce, Some(2)));
    // With no member online, each message is queued for one member.
    assert_eq!(
        sim.broker.pending_messages("a") + sim.broker.pending_messages("b"),
        2
    );
    let for_a = sim.broker.pending_messages("a");
    // a's session ends before it comes back: its message is not given to b.
    sim.advance(100);
    assert!(!sim.broker.has_session("a"));
    let (mut b2, _) = sim.connect(connect_v5("b", false, Some(1000)));
    let got = sim.recv_publishes(&mut b2);
    assert_eq!(got.len(), 2 - for_a);
}

// v5 [MQTT-4.8.2-4]
#[test]
fn v5_a_shared_message_queued_for_an_offline_member_is_delivered_when_it_reconnects() {
    let mut sim = Sim::new();
    let a = sim.subscriber(
        connect_v5("a", true, Some(100)),
        &[("$share/g/t", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&a);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"one", QoS::AtLeastOnce, Some(1)));
    let (mut a2, _) = sim.connect(connect_v5("a", false, Some(100)));
    assert_eq!(payloads(&sim.recv_publishes(&mut a2)), ["one"]);
}

/// Section 3.2.2.3.13: Shared Subscription Available 0 → SUBACK 0x9E.
#[test]
fn v5_shared_subscriptions_when_not_supported_are_refused_in_suback() {
    let mut sim = Sim::with_config(config_with(|c| c.shared_subscription_available = false));
    let (mut s, ack) = sim.connect(connect_v5("s", true, None));
    assert_eq!(ack.properties.shared_subscription_available, Some(false));
    let (ack, _) = sim.subscribe_ack(
        &mut s,
        subscribe(
            4,
            &[("$share/g/t", QoS::AtLeastOnce), ("t", QoS::AtLeastOnce)],
        ),
    );
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::GRANTED_QOS_1
        ]
    );
    assert_eq!(sim.broker.subscription_count(), 1);
}

// ---- SUBACK ------------------------------------------------------------------------------------

fn deny_policy() -> TestPolicy {
    TestPolicy {
        deny_subscribe: vec!["secret/#".to_owned()],
        deny_publish: vec!["secret/x".to_owned()],
        ..TestPolicy::default()
    }
}

// v5 [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5] [MQTT-3.8.4-6] [MQTT-3.9.3-1] [MQTT-2.2.1-6] [MQTT-3.9.3-2]
#[test]
fn v5_suback_has_the_packet_id_and_one_reason_code_per_filter_in_order() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), deny_policy());
    let (mut s, _) = sim.connect(connect_v5("s", true, None));
    sim.send(
        &s,
        subscribe(
            0x1234,
            &[
                ("a", QoS::AtLeastOnce),
                ("secret/#", QoS::AtLeastOnce),
                ("b/+", QoS::AtMostOnce),
                ("c/#", QoS::ExactlyOnce),
            ],
        ),
    );
    let Packet::SubAck(ack) = only(sim.recv(&mut s)) else {
        panic!("expected SUBACK")
    };
    assert_eq!(ack.packet_id, pid(0x1234));
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_2
        ]
    );
    // The refused filter did not subscribe; the others did.
    assert_eq!(sim.broker.subscription_count(), 3);
}

// v3.1.1 [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-4] [MQTT-3.8.4-5] [MQTT-3.9.3-1] [MQTT-3.9.3-2] [MQTT-2.3.1-7]
#[test]
fn v311_suback_has_a_return_code_per_filter_and_0x80_for_a_refusal() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), deny_policy());
    let (mut s, _) = sim.connect(connect_v311("s", true));
    sim.send(
        &s,
        subscribe(
            9,
            &[("secret/#", QoS::AtLeastOnce), ("a", QoS::ExactlyOnce)],
        ),
    );
    let Packet::SubAck(ack) = only(sim.recv(&mut s)) else {
        panic!("expected SUBACK")
    };
    assert_eq!(ack.packet_id, pid(9));
    assert_eq!(
        ack.reason_codes,
        [ReasonCode::UNSPECIFIED_ERROR, ReasonCode::GRANTED_QOS_2]
    );
}

// v5 [MQTT-3.8.4-7] [MQTT-3.8.4-8]
// v3.1.1 [MQTT-3.8.4-5] [MQTT-3.8.4-6]
#[test]
fn the_granted_qos_may_be_lower_and_limits_what_is_delivered() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::with_config(config_with(|c| c.maximum_qos = QoS::AtLeastOnce));
        let connect = |id: &str| -> Connect {
            if version.is_v5() {
                connect_v5(id, true, None)
            } else {
                connect_v311(id, true)
            }
        };
        let (mut s, _) = sim.connect(connect("s"));
        let (ack, _) = sim.subscribe_ack(
            &mut s,
            subscribe(1, &[("hi", QoS::ExactlyOnce), ("lo", QoS::AtMostOnce)]),
        );
        assert_eq!(
            ack.reason_codes,
            [ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_0]
        );
        let (mut p, _) = sim.connect(connect("p"));
        sim.publish(&mut p, publish("hi", b"1", QoS::AtLeastOnce, Some(1)));
        sim.publish(&mut p, publish("hi", b"0", QoS::AtMostOnce, None));
        sim.publish(&mut p, publish("lo", b"1", QoS::AtLeastOnce, Some(2)));
        let got = sim.recv_publishes(&mut s);
        let qos: Vec<QoS> = got.iter().map(|p| p.qos).collect();
        assert_eq!(qos, [QoS::AtLeastOnce, QoS::AtMostOnce, QoS::AtMostOnce]);
    }
}

/// Section 3.2.2.3.11: Wildcard Subscription Available 0 → SUBACK 0xA2.
// v3.1.1 [MQTT-3.8.3-2]
#[test]
fn wildcard_subscriptions_when_not_supported_are_refused() {
    let config = config_with(|c| c.wildcard_subscription_available = false);
    let mut sim = Sim::with_config(config.clone());
    let (mut s, ack) = sim.connect(connect_v5("s", true, None));
    assert_eq!(ack.properties.wildcard_subscription_available, Some(false));
    let (ack, _) = sim.subscribe_ack(
        &mut s,
        subscribe(1, &[("a/+", QoS::AtMostOnce), ("a/b", QoS::AtMostOnce)]),
    );
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ReasonCode::GRANTED_QOS_0
        ]
    );
    let mut sim = Sim::with_config(config);
    let (mut s, _) = sim.connect(connect_v311("s", true));
    let (ack, _) = sim.subscribe_ack(&mut s, subscribe(1, &[("#", QoS::AtMostOnce)]));
    assert_eq!(ack.reason_codes, [ReasonCode::UNSPECIFIED_ERROR]);
    assert_eq!(sim.broker.subscription_count(), 0);
}

// ---- UNSUBSCRIBE -------------------------------------------------------------------------------

// v5 [MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6] [MQTT-3.11.3-1] [MQTT-3.11.3-2]
#[test]
fn v5_unsuback_has_the_packet_id_and_a_reason_code_per_filter_compared_character_by_character() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(
        connect_v5("s", true, None),
        &[
            ("a/+", QoS::AtMostOnce),
            ("b", QoS::AtMostOnce),
            ("$share/g/c", QoS::AtMostOnce),
        ],
    );
    sim.send(
        &s,
        unsubscribe(0x0203, &["a/#", "b", "$share/g/c", "b", "a/+"]),
    );
    let Packet::UnsubAck(ack) = only(sim.recv(&mut s)) else {
        panic!("expected UNSUBACK")
    };
    assert_eq!(ack.packet_id, pid(0x0203));
    assert_eq!(
        ack.reason_codes,
        [
            ReasonCode::NO_SUBSCRIPTION_EXISTED,
            ReasonCode::SUCCESS,
            ReasonCode::SUCCESS,
            ReasonCode::NO_SUBSCRIPTION_EXISTED,
            ReasonCode::SUCCESS
        ]
    );
    assert_eq!(sim.broker.subscription_count(), 0);
    // Even when nothing is removed, an UNSUBACK.
    sim.send(&s, unsubscribe(7, &["nothing"]));
    let Packet::UnsubAck(ack) = only(sim.recv(&mut s)) else {
        panic!("expected UNSUBACK")
    };
    assert_eq!(ack.packet_id, pid(7));
    assert_eq!(ack.reason_codes, [ReasonCode::NO_SUBSCRIPTION_EXISTED]);
}

// v3.1.1 [MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6]
#[test]
fn v311_unsuback_has_the_packet_id_even_when_nothing_was_removed() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v311("s", true), &[("a/+", QoS::AtMostOnce)]);
    sim.send(&s, unsubscribe(5, &["a/#", "x"]));
    let Packet::UnsubAck(ack) = only(sim.recv(&mut s)) else {
        panic!("expected UNSUBACK")
    };
    assert_eq!(ack.packet_id, pid(5));
    assert!(ack.reason_codes.is_empty());
    assert_eq!(sim.broker.subscription_count(), 1);
    sim.send(&s, unsubscribe(6, &["a/+"]));
    assert!(matches!(&sim.recv(&mut s)[..], [Packet::UnsubAck(a)] if a.packet_id == pid(6)));
    assert_eq!(sim.broker.subscription_count(), 0);
}

// v5 [MQTT-3.10.4-2] [MQTT-3.10.4-3]
// v3.1.1 [MQTT-3.10.4-2] [MQTT-3.10.4-3]
#[test]
fn unsubscribe_stops_new_messages_but_completes_those_in_flight() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        let connect = |id: &str| -> Connect {
            if version.is_v5() {
                connect_v5(id, true, None)
            } else {
                connect_v311(id, true)
            }
        };
        let mut s = sim.subscriber(connect("s"), &[("t", QoS::ExactlyOnce)]);
        let (mut p, _) = sim.connect(connect("p"));
        sim.publish(
            &mut p,
            publish("t", b"in flight", QoS::ExactlyOnce, Some(1)),
        );
        let got = sim.recv_publishes(&mut s);
        let id = got[0].packet_id.unwrap();
        sim.send(&s, unsubscribe(2, &["t"]));
        assert!(matches!(&sim.recv(&mut s)[..], [Packet::UnsubAck(_)]));
        sim.publish(&mut p, publish("t", b"new", QoS::ExactlyOnce, Some(2)));
        assert!(sim.recv_publishes(&mut s).is_empty());
        // The QoS 2 flow already started completes.
        sim.send(&s, pubrec(id));
        assert!(matches!(&sim.recv(&mut s)[..], [Packet::PubRel(r)] if r.packet_id == id));
        sim.send(&s, pubcomp(id));
        assert_eq!(sim.broker.pending_messages("s"), 0);
    }
}

// ---- QoS flows: the broker as receiver ---------------------------------------------------------

// v5 [MQTT-3.3.4-1] [MQTT-4.3.2-4] [MQTT-4.5.0-1]
#[test]
fn v5_qos_1_publish_is_acknowledged_with_puback_after_being_routed() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t", QoS::AtLeastOnce)]);
    let mut p = v5_client(&mut sim, "p");
    let got = sim.publish(&mut p, publish("t", b"x", QoS::AtLeastOnce, Some(42)));
    let Packet::PubAck(ack) = only(got) else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.packet_id, pid(42));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["x"]);
    // No subscriber: 0x10; a QoS 0 PUBLISH gets no answer.
    let got = sim.publish(&mut p, publish("nobody", b"x", QoS::AtLeastOnce, Some(43)));
    assert!(
        matches!(&got[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NO_MATCHING_SUBSCRIBERS)
    );
    assert!(
        sim.publish(&mut p, publish("t", b"y", QoS::AtMostOnce, None))
            .is_empty()
    );
}

// v5 [MQTT-4.3.2-5]
// v3.1.1 [MQTT-4.3.2-2]
#[test]
fn a_qos_1_publish_reusing_an_acknowledged_packet_id_is_a_new_message() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        let connect = |id: &str| -> Connect {
            if version.is_v5() {
                connect_v5(id, true, None)
            } else {
                connect_v311(id, true)
            }
        };
        let mut s = sim.subscriber(connect("s"), &[("t", QoS::AtLeastOnce)]);
        let (mut p, _) = sim.connect(connect("p"));
        sim.publish(&mut p, publish("t", b"first", QoS::AtLeastOnce, Some(1)));
        let mut again = publish("t", b"second", QoS::AtLeastOnce, Some(1));
        again.dup = true;
        let got = sim.publish(&mut p, again);
        assert!(matches!(&got[..], [Packet::PubAck(a)] if a.packet_id == pid(1)));
        assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["first", "second"]);
    }
}

// v5 [MQTT-4.3.3-8] [MQTT-4.3.3-10] [MQTT-4.3.3-11] [MQTT-4.3.3-12] [MQTT-2.2.1-5]
#[test]
fn v5_qos_2_publish_is_received_once_and_its_id_is_free_after_pubcomp() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t", QoS::AtMostOnce)]);
    let mut p = v5_client(&mut sim, "p");
    let got = sim.publish(&mut p, publish("t", b"one", QoS::ExactlyOnce, Some(9)));
    assert!(
        matches!(&got[..], [Packet::PubRec(r)] if r.packet_id == pid(9) && r.reason_code == ReasonCode::SUCCESS)
    );
    // Re-sent before PUBREL: PUBREC again, not delivered again.
    let mut dup = publish("t", b"one", QoS::ExactlyOnce, Some(9));
    dup.dup = true;
    let got = sim.publish(&mut p, dup);
    assert!(matches!(&got[..], [Packet::PubRec(r)] if r.packet_id == pid(9)));
    sim.send(&p, pubrel(pid(9)));
    let got = sim.recv(&mut p);
    assert!(
        matches!(&got[..], [Packet::PubComp(c)] if c.packet_id == pid(9) && c.reason_code == ReasonCode::SUCCESS)
    );
    assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["one"]);
    // After PUBCOMP the identifier starts a new message.
    sim.publish(&mut p, publish("t", b"two", QoS::ExactlyOnce, Some(9)));
    assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["two"]);
}

// v3.1.1 [MQTT-4.3.3-2] [MQTT-3.3.4-1]
#[test]
fn v311_qos_2_publish_is_received_once() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v311("s", true), &[("t", QoS::ExactlyOnce)]);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    let got = sim.publish(&mut p, publish("t", b"one", QoS::ExactlyOnce, Some(3)));
    assert!(matches!(&got[..], [Packet::PubRec(r)] if r.packet_id == pid(3)));
    let mut dup = publish("t", b"one", QoS::ExactlyOnce, Some(3));
    dup.dup = true;
    assert!(matches!(&sim.publish(&mut p, dup)[..], [Packet::PubRec(_)]));
    sim.send(&p, pubrel(pid(3)));
    assert!(matches!(&sim.recv(&mut p)[..], [Packet::PubComp(c)] if c.packet_id == pid(3)));
    assert_eq!(sim.recv_publishes(&mut s).len(), 1);
}

/// A client completes a QoS 2 flow, loses the PUBCOMP with the connection, and sends PUBREL
/// again on resume (as [MQTT-4.4.0-1] requires of it); it must get its PUBCOMP.
fn pubrel_again_after_a_lost_pubcomp(version: ProtocolVersion) {
    let mut sim = Sim::new();
    let connect = || -> Connect {
        if version.is_v5() {
            connect_v5("p", false, Some(600))
        } else {
            connect_v311("p", false)
        }
    };
    let (mut p, _) = sim.connect(connect());
    sim.publish(&mut p, publish("t", b"x", QoS::ExactlyOnce, Some(4)));
    sim.send(&p, pubrel(pid(4)));
    assert!(matches!(&sim.recv(&mut p)[..], [Packet::PubComp(c)] if c.packet_id == pid(4)));
    sim.drop_connection(&p);
    let (mut p2, ack) = sim.connect(connect());
    assert!(ack.session_present);
    sim.send(&p2, pubrel(pid(4)));
    let got = sim.recv(&mut p2);
    assert!(
        matches!(&got[..], [Packet::PubComp(c)] if c.packet_id == pid(4)),
        "{got:?}"
    );
    assert!(!sim.is_closed(&p2));
}

// v5 [MQTT-4.3.3-11] [MQTT-3.7.2-1]
#[test]
fn v5_a_pubrel_for_a_completed_flow_is_still_answered_with_pubcomp() {
    pubrel_again_after_a_lost_pubcomp(ProtocolVersion::V5);
}

// v3.1.1 [MQTT-4.3.3-2]
#[test]
fn v311_a_pubrel_for_a_completed_flow_is_still_answered_with_pubcomp() {
    pubrel_again_after_a_lost_pubcomp(ProtocolVersion::V3_1_1);
}

// v5 [MQTT-4.3.3-13]
#[test]
fn v5_the_qos_2_acknowledgements_continue_after_the_message_expired() {
    let mut sim = Sim::new();
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    let mut m = publish("t", b"x", QoS::ExactlyOnce, Some(8));
    m.properties.message_expiry_interval = Some(1);
    assert!(matches!(&sim.publish(&mut p, m)[..], [Packet::PubRec(_)]));
    sim.advance(10);
    sim.send(&p, pubrel(pid(8)));
    let got = sim.recv(&mut p);
    assert!(
        matches!(&got[..], [Packet::PubComp(c)] if c.packet_id == pid(8) && c.reason_code == ReasonCode::SUCCESS),
        "{got:?}"
    );
}

// v5 [MQTT-4.3.3-9] [MQTT-3.5.2-1]
#[test]
fn v5_after_a_pubrec_error_the_same_packet_id_is_a_new_message() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), deny_policy());
    let (mut s, _) = sim.connect(connect_v5("s", true, None));
    sim.subscribe_ack(&mut s, subscribe(1, &[("ok", QoS::AtMostOnce)]));
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    let got = sim.publish(
        &mut p,
        publish("secret/x", b"no", QoS::ExactlyOnce, Some(5)),
    );
    assert!(matches!(&got[..], [Packet::PubRec(r)] if r.reason_code == ReasonCode::NOT_AUTHORIZED));
    let got = sim.publish(&mut p, publish("ok", b"yes", QoS::ExactlyOnce, Some(5)));
    assert!(matches!(&got[..], [Packet::PubRec(r)] if r.reason_code == ReasonCode::SUCCESS));
    assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["yes"]);
}

// v5 [MQTT-3.4.2-1]
#[test]
fn v5_an_unauthorized_publish_is_refused_with_0x87_and_not_routed() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), deny_policy());
    let (mut s, _) = sim.connect(connect_v5("s", true, None));
    sim.subscribe_ack(&mut s, subscribe(1, &[("#", QoS::AtLeastOnce)]));
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    let mut denied = publish("secret/x", b"no", QoS::AtLeastOnce, Some(1));
    denied.retain = true;
    let got = sim.publish(&mut p, denied);
    assert!(matches!(&got[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::NOT_AUTHORIZED));
    assert!(sim.recv_publishes(&mut s).is_empty());
    assert_eq!(sim.broker.retained_count(), 0);
    assert!(!sim.is_closed(&p));
}

// v3.1.1 [MQTT-3.3.5-2]
#[test]
fn v311_an_unauthorized_publish_is_acknowledged_but_not_delivered() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), deny_policy());
    let (mut s, _) = sim.connect(connect_v311("s", true));
    sim.subscribe_ack(&mut s, subscribe(1, &[("#", QoS::AtLeastOnce)]));
    let (mut p, _) = sim.connect(connect_v311("p", true));
    let got = sim.publish(
        &mut p,
        publish("secret/x", b"no", QoS::AtLeastOnce, Some(1)),
    );
    assert!(matches!(&got[..], [Packet::PubAck(a)] if a.packet_id == pid(1)));
    assert!(sim.recv_publishes(&mut s).is_empty());
    assert!(!sim.is_closed(&p));
}

// ---- QoS flows: the broker as sender -----------------------------------------------------------

// v5 [MQTT-4.3.1-1] [MQTT-3.3.1-2] [MQTT-3.3.1-3] [MQTT-2.2.1-2]
// v3.1.1 [MQTT-4.3.1-1] [MQTT-3.3.1-2] [MQTT-3.3.1-3] [MQTT-2.3.1-5]
#[test]
fn the_dup_flag_is_not_propagated_and_qos_0_has_dup_0_and_no_packet_id() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        let connect = |id: &str| -> Connect {
            if version.is_v5() {
                connect_v5(id, true, None)
            } else {
                connect_v311(id, true)
            }
        };
        let mut q0 = sim.subscriber(connect("q0"), &[("t", QoS::AtMostOnce)]);
        let mut q2 = sim.subscriber(connect("q2"), &[("t", QoS::ExactlyOnce)]);
        let (mut p, _) = sim.connect(connect("p"));
        let mut dup = publish("t", b"x", QoS::ExactlyOnce, Some(1));
        dup.dup = true;
        sim.publish(&mut p, dup);
        let got = sim.recv_publishes(&mut q0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].qos, QoS::AtMostOnce);
        assert!(!got[0].dup);
        assert_eq!(got[0].packet_id, None);
        let got = sim.recv_publishes(&mut q2);
        assert_eq!(got[0].qos, QoS::ExactlyOnce);
        assert!(!got[0].dup, "a first delivery, whatever the incoming DUP");
    }
}

// v3.1.1 [MQTT-4.3.3-1] [MQTT-4.3.2-1] [MQTT-2.3.1-6]
#[test]
fn v311_qos_1_and_2_are_sent_with_fresh_packet_ids_and_dup_0_until_acknowledged() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v311("s", true), &[("t", QoS::ExactlyOnce)]);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(&mut p, publish("t", b"two", QoS::ExactlyOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"one", QoS::AtLeastOnce, Some(2)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(payloads(&got), ["two", "one"]);
    assert_eq!(
        (got[0].qos, got[1].qos),
        (QoS::ExactlyOnce, QoS::AtLeastOnce)
    );
    assert!(got.iter().all(|g| !g.dup));
    let (a, b) = (got[0].packet_id.unwrap(), got[1].packet_id.unwrap());
    assert_ne!(a, b);
    sim.send(&s, pubrec(a));
    assert!(matches!(&sim.recv(&mut s)[..], [Packet::PubRel(r)] if r.packet_id == a));
    sim.send(&s, puback(b));
    assert_eq!(sim.broker.pending_messages("s"), 1);
    sim.send(&s, pubcomp(a));
    assert_eq!(sim.broker.pending_messages("s"), 0);
}

// v5 [MQTT-4.3.2-1] [MQTT-4.3.2-2] [MQTT-4.3.2-3] [MQTT-3.3.1-3]
#[test]
fn v5_qos_1_is_sent_with_dup_0_a_packet_id_and_held_until_puback() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t", QoS::AtLeastOnce)]);
    let mut p = v5_client(&mut sim, "p");
    let mut incoming = publish("t", b"x", QoS::AtLeastOnce, Some(1));
    incoming.dup = true; // not propagated
    sim.publish(&mut p, incoming);
    sim.publish(&mut p, publish("t", b"y", QoS::AtLeastOnce, Some(2)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|g| g.qos == QoS::AtLeastOnce && !g.dup));
    let (a, b) = (got[0].packet_id.unwrap(), got[1].packet_id.unwrap());
    assert_ne!(a, b);
    assert_eq!(sim.broker.pending_messages("s"), 2);
    sim.send(&s, puback(a));
    assert_eq!(sim.broker.pending_messages("s"), 1);
    // A PUBACK for an id not in flight changes nothing.
    sim.send(&s, puback(pid(999)));
    assert_eq!(sim.broker.pending_messages("s"), 1);
    sim.send(&s, puback(b));
    assert_eq!(sim.broker.pending_messages("s"), 0);
}

// v5 [MQTT-4.3.3-1] [MQTT-4.3.3-2] [MQTT-4.3.3-3] [MQTT-4.3.3-4] [MQTT-4.3.3-5] [MQTT-2.2.1-5]
// v5 [MQTT-3.6.2-1]
#[test]
fn v5_qos_2_is_sent_held_until_pubrec_then_pubrel_held_until_pubcomp() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t", QoS::ExactlyOnce)]);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"x", QoS::ExactlyOnce, Some(1)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
    assert!(!got[0].dup);
    let id = got[0].packet_id.unwrap();
    assert_eq!(sim.broker.pending_messages("s"), 1);
    sim.send(&s, pubrec(id));
    let Packet::PubRel(rel) = only(sim.recv(&mut s)) else {
        panic!("expected PUBREL")
    };
    assert_eq!(rel.packet_id, id);
    assert_eq!(rel.reason_code, ReasonCode::SUCCESS);
    assert_eq!(sim.broker.pending_messages("s"), 1);
    sim.send(&s, pubcomp(id));
    assert_eq!(sim.broker.pending_messages("s"), 0);
    assert!(sim.recv(&mut s).is_empty());
}

// v5 [MQTT-2.2.1-4] [MQTT-4.3.2-1]
// v3.1.1 [MQTT-2.3.1-4] [MQTT-4.3.2-1]
#[test]
fn packet_ids_in_flight_are_never_reused_even_after_wrapping_around() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        let connect = |id: &str| -> Connect {
            if version.is_v5() {
                connect_v5(id, true, None)
            } else {
                connect_v311(id, true)
            }
        };
        let mut s = sim.subscriber(connect("s"), &[("t", QoS::AtLeastOnce)]);
        let (mut p, _) = sim.connect(connect("p"));
        // The first message stays unacknowledged all along.
        sim.publish(&mut p, publish("t", b"first", QoS::AtLeastOnce, Some(1)));
        let stuck = sim.recv_publishes(&mut s)[0].packet_id.unwrap();
        let mut sent = 0usize;
        while sent < 66_000 {
            let mut bytes = BytesMut::new();
            for i in 1..=60u16 {
                Packet::Publish(publish("t", b"m", QoS::AtLeastOnce, Some(i)))
                    .encode(version, &mut bytes)
                    .unwrap();
            }
            sim.send_bytes(&p, &bytes);
            sim.recv(&mut p);
            let got = sim.recv_publishes(&mut s);
            assert_eq!(got.len(), 60);
            let ids: BTreeSet<u16> = got.iter().map(|g| g.packet_id.unwrap().get()).collect();
            assert_eq!(ids.len(), 60, "ids in flight together are distinct");
            assert!(
                !ids.contains(&stuck.get()),
                "id {stuck:?} is still in flight"
            );
            let mut acks = BytesMut::new();
            for g in &got {
                Packet::PubAck(PubAck::new(g.packet_id.unwrap()))
                    .encode(version, &mut acks)
                    .unwrap();
            }
            sim.send_bytes(&s, &acks);
            sent += 60;
        }
        assert_eq!(sim.broker.pending_messages("s"), 1);
    }
}

// v5 [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.3.3-6] [MQTT-3.1.2-5]
#[test]
fn v5_on_resume_unacknowledged_publish_is_resent_with_dup_and_pubrel_again_in_order() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::ExactlyOnce)]);
    let mut p = v5_client(&mut sim, "p");
    for (i, payload) in [b"a" as &'static [u8], b"b", b"c", b"d"]
        .into_iter()
        .enumerate()
    {
        let qos = if i == 3 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let id = u16::try_from(i + 1).unwrap();
        sim.publish(&mut p, publish("t", payload, qos, Some(id)));
        if qos == QoS::ExactlyOnce {
            sim.send(&p, pubrel(pid(id)));
        }
    }
    let got = sim.recv_publishes(&mut s);
    assert_eq!(payloads(&got), ["a", "b", "c", "d"]);
    let ids: Vec<_> = got.iter().map(|g| g.packet_id.unwrap()).collect();
    // a: PUBREC'd (PUBREL sent, PUBCOMP awaited); b: complete; c, d: unacknowledged.
    sim.send(&s, pubrec(ids[0]));
    sim.send(&s, pubrec(ids[1]));
    sim.send(&s, pubcomp(ids[1]));
    sim.recv(&mut s);
    sim.drop_connection(&s);
    sim.publish(&mut p, publish("t", b"e", QoS::AtLeastOnce, Some(9)));

    let (mut s2, ack) = sim.connect(connect_v5("s", false, Some(600)));
    assert!(ack.session_present);
    let got = sim.recv(&mut s2);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(matches!(&got[0], Packet::PubRel(r) if r.packet_id == ids[0]));
    let Packet::Publish(c) = &got[1] else {
        panic!("expected PUBLISH c")
    };
    assert_eq!(
        (&c.payload[..], c.packet_id, c.dup, c.qos),
        (&b"c"[..], Some(ids[2]), true, QoS::ExactlyOnce)
    );
    let Packet::Publish(d) = &got[2] else {
        panic!("expected PUBLISH d")
    };
    assert_eq!(
        (&d.payload[..], d.packet_id, d.dup, d.qos),
        (&b"d"[..], Some(ids[3]), true, QoS::AtLeastOnce)
    );
    // The message queued while offline is a first delivery.
    let Packet::Publish(e) = &got[3] else {
        panic!("expected PUBLISH e")
    };
    assert_eq!(&e.payload[..], b"e");
    assert!(!e.dup);
    assert!(!ids.contains(&e.packet_id.unwrap()));
}

// v3.1.1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]
#[test]
fn v311_on_resume_unacknowledged_publish_and_pubrel_are_resent() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v311("s", false), &[("t", QoS::ExactlyOnce)]);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    sim.publish(&mut p, publish("t", b"a", QoS::ExactlyOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"b", QoS::AtLeastOnce, Some(2)));
    let got = sim.recv_publishes(&mut s);
    let (a, b) = (got[0].packet_id.unwrap(), got[1].packet_id.unwrap());
    sim.send(&s, pubrec(a));
    sim.recv(&mut s);
    sim.drop_connection(&s);
    let (mut s2, _) = sim.connect(connect_v311("s", false));
    let got = sim.recv(&mut s2);
    assert!(
        matches!(&got[..], [Packet::PubRel(r), Packet::Publish(p)]
        if r.packet_id == a && p.packet_id == Some(b) && p.dup && &p.payload[..] == b"b"),
        "{got:?}"
    );
}

// v5 [MQTT-4.4.0-1] [MQTT-3.1.4-3]
#[test]
fn v5_after_a_takeover_the_new_connection_gets_what_the_old_one_left_unacknowledged() {
    let mut sim = Sim::new();
    let mut old = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::AtLeastOnce)]);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"x", QoS::AtLeastOnce, Some(1)));
    let id = sim.recv_publishes(&mut old)[0].packet_id.unwrap();
    let (mut new, ack) = sim.connect(connect_v5("s", false, Some(600)));
    assert!(ack.session_present);
    let got = sim.recv_publishes(&mut new);
    assert_eq!(payloads(&got), ["x"]);
    assert_eq!(got[0].packet_id, Some(id));
    assert!(got[0].dup);
    assert_eq!(
        disconnect_reason(&sim.recv(&mut old)),
        Some(ReasonCode::SESSION_TAKEN_OVER)
    );
}

// v5 [MQTT-4.4.0-1]
#[test]
fn v5_nothing_is_resent_while_the_connection_lasts() {
    let mut sim = Sim::with_config(config_with(|c| c.max_keep_alive = None));
    let mut s = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::ExactlyOnce)]);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"a", QoS::ExactlyOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"b", QoS::AtLeastOnce, Some(2)));
    let got = sim.recv_publishes(&mut s);
    assert_eq!(got.len(), 2);
    sim.send(&s, pubrec(got[0].packet_id.unwrap()));
    sim.recv(&mut s);
    sim.advance(24 * 3600);
    assert!(sim.recv(&mut s).is_empty());
    assert_eq!(sim.broker.pending_messages("s"), 2);
}

// v5 [MQTT-4.4.0-2]
#[test]
fn v5_a_message_acknowledged_with_an_error_is_not_resent() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::ExactlyOnce)]);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"a", QoS::AtLeastOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"b", QoS::ExactlyOnce, Some(2)));
    let got = sim.recv_publishes(&mut s);
    let mut nack = PubAck::new(got[0].packet_id.unwrap());
    nack.reason_code = ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR;
    sim.send(&s, nack);
    let mut rec = PubRec::new(got[1].packet_id.unwrap());
    rec.reason_code = ReasonCode::QUOTA_EXCEEDED;
    sim.send(&s, rec);
    // No PUBREL for a PUBREC error, and nothing left to resend.
    assert!(sim.recv(&mut s).is_empty());
    assert_eq!(sim.broker.pending_messages("s"), 0);
    sim.drop_connection(&s);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(600)));
    assert!(sim.recv(&mut s2).is_empty());
}

/// Receives what the broker sent to `c`: records first deliveries in `received` (payloads) and
/// the packet ids awaiting PUBACK in `inflight`.
fn collect(
    sim: &mut Sim,
    c: &mut Client,
    inflight: &mut VecDeque<PacketId>,
    received: &mut Vec<u8>,
) {
    for g in sim.recv_publishes(c) {
        if !received.contains(&g.payload[0]) {
            received.push(g.payload[0]);
        }
        let id = g.packet_id.unwrap();
        if !inflight.contains(&id) {
            inflight.push_back(id);
        }
    }
}

// v5 [MQTT-4.6.0-5] [MQTT-4.6.0-6]
// v3.1.1 [MQTT-4.6.0-5] [MQTT-4.6.0-6]
#[test]
fn messages_from_one_client_are_delivered_in_the_order_received() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        // Few messages in flight, so that most wait in the queue.
        let mut sim = Sim::with_config(config_with(|c| c.max_inflight = 3));
        let connect = |id: &str, clean: bool| -> Connect {
            if version.is_v5() {
                connect_v5(id, clean, Some(600))
            } else {
                connect_v311(id, clean)
            }
        };
        let mut s = sim.subscriber(connect("s", false), &[("t", QoS::AtLeastOnce)]);
        let (mut p, _) = sim.connect(connect("p", true));
        let (mut inflight, mut received) = (VecDeque::new(), Vec::new());
        let mut online = true;
        for i in 0..30u8 {
            sim.publish(
                &mut p,
                publish_owned("t", vec![i], QoS::AtLeastOnce, Some(u16::from(i) + 1)),
            );
            if i == 10 {
                // Offline for a while, with messages in flight and queued.
                sim.drop_connection(&s);
                inflight.clear();
                online = false;
            }
            if i == 20 {
                s = sim.connect(connect("s", false)).0;
                online = true;
            }
            if online {
                collect(&mut sim, &mut s, &mut inflight, &mut received);
                // The client acknowledges the oldest message only: the rest keep waiting.
                if let Some(id) = inflight.pop_front() {
                    sim.send(&s, puback(id));
                }
                collect(&mut sim, &mut s, &mut inflight, &mut received);
            }
        }
        while let Some(id) = inflight.pop_front() {
            sim.send(&s, puback(id));
            collect(&mut sim, &mut s, &mut inflight, &mut received);
        }
        let want: Vec<u8> = (0..30).collect();
        assert_eq!(received, want, "{version:?}");
        assert_eq!(sim.broker.pending_messages("s"), 0);
    }
}

// ---- Flow control ------------------------------------------------------------------------------

// v5 [MQTT-3.3.4-9] [MQTT-4.9.0-2] [MQTT-4.9.0-1]
#[test]
fn v5_the_clients_receive_maximum_limits_unacknowledged_publishes() {
    let mut sim = Sim::new();
    let mut connect = connect_v5("s", true, None);
    connect.properties.receive_maximum = std::num::NonZeroU16::new(2);
    let mut s = sim.subscriber(connect, &[("t", QoS::ExactlyOnce)]);
    let mut p = v5_client(&mut sim, "p");
    for i in 1..=5u16 {
        let qos = if i % 2 == 0 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        sim.publish(
            &mut p,
            publish_owned("t", vec![b'0' + u8::try_from(i).unwrap()], qos, Some(i)),
        );
        if qos == QoS::ExactlyOnce {
            sim.send(&p, pubrel(pid(i)));
        }
    }
    let got = sim.recv_publishes(&mut s);
    assert_eq!(payloads(&got), ["1", "2"]);
    // PUBACK of the QoS 1 message frees one slot.
    sim.send(&s, puback(got[0].packet_id.unwrap()));
    let got3 = sim.recv_publishes(&mut s);
    assert_eq!(payloads(&got3), ["3"]);
    // A QoS 2 message holds its slot until PUBCOMP, not PUBREC.
    let id2 = got[1].packet_id.unwrap();
    sim.send(&s, pubrec(id2));
    assert!(sim.recv_publishes(&mut s).is_empty());
    sim.send(&s, pubcomp(id2));
    let got4 = sim.recv_publishes(&mut s);
    assert_eq!(payloads(&got4), ["4"]);
    // "3" and "4" fill the quota; a PUBREC with an error code frees "4"'s slot.
    let mut refused = PubRec::new(got4[0].packet_id.unwrap());
    refused.reason_code = ReasonCode::UNSPECIFIED_ERROR;
    sim.send(&s, refused);
    assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["5"]);
    assert_eq!(sim.broker.pending_messages("s"), 2);
}

// v5 [MQTT-3.3.4-10] [MQTT-4.9.0-3]
#[test]
fn v5_other_packets_flow_while_the_send_quota_is_zero() {
    let mut sim = Sim::new();
    let mut connect = connect_v5("s", true, None);
    connect.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let mut s = sim.subscriber(connect, &[("t", QoS::AtLeastOnce)]);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(&mut p, publish("t", b"1", QoS::AtLeastOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"2", QoS::AtLeastOnce, Some(2)));
    assert_eq!(sim.recv_publishes(&mut s).len(), 1);
    sim.send(&s, Packet::PingReq);
    sim.send(&s, subscribe(5, &[("u", QoS::AtMostOnce)]));
    sim.send(&s, unsubscribe(6, &["u"]));
    // The client's own QoS 2 PUBLISH is still answered.
    sim.send(&s, publish("x", b"mine", QoS::ExactlyOnce, Some(1)));
    let got = sim.recv(&mut s);
    assert!(
        matches!(&got[..],
        [Packet::PingResp, Packet::SubAck(a), Packet::UnsubAck(u), Packet::PubRec(r)]
        if a.packet_id == pid(5) && u.packet_id == pid(6) && r.packet_id == pid(1)),
        "{got:?}"
    );
}

/// Section 3.3.4: more unacknowledged QoS 2 PUBLISH than our Receive Maximum is 0x93.
#[test]
fn v5_exceeding_the_servers_receive_maximum_is_refused_with_0x93() {
    let mut sim = Sim::with_config(config_with(|c| c.receive_maximum = 2));
    let (mut p, ack) = sim.connect(connect_v5("p", true, None));
    assert_eq!(ack.properties.receive_maximum.map(|r| r.get()), Some(2));
    // QoS 1 is acknowledged at once and does not count.
    for i in 1..=5 {
        let got = sim.publish(&mut p, publish("t", b"q1", QoS::AtLeastOnce, Some(i)));
        assert!(matches!(&got[..], [Packet::PubAck(_)]));
    }
    sim.publish(&mut p, publish("t", b"a", QoS::ExactlyOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"b", QoS::ExactlyOnce, Some(2)));
    sim.send(&p, pubrel(pid(1)));
    sim.recv(&mut p);
    let got = sim.publish(&mut p, publish("t", b"c", QoS::ExactlyOnce, Some(3)));
    assert!(matches!(&got[..], [Packet::PubRec(_)]));
    let got = sim.publish(&mut p, publish("t", b"d", QoS::ExactlyOnce, Some(4)));
    assert_eq!(
        disconnect_reason(&got),
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
    assert!(sim.is_closed(&p));
}

// ---- Maximum Packet Size -----------------------------------------------------------------------

// v5 [MQTT-3.1.2-24] [MQTT-3.1.2-25]
#[test]
fn v5_a_message_larger_than_the_clients_maximum_packet_size_is_dropped_as_if_sent() {
    let mut sim = Sim::new();
    let mut connect = connect_v5("s", true, None);
    connect.properties.maximum_packet_size = std::num::NonZeroU32::new(64);
    let mut s = sim.subscriber(connect, &[("t", QoS::AtLeastOnce)]);
    let mut p = v5_client(&mut sim, "p");
    let got = sim.publish(
        &mut p,
        publish_owned("t", vec![7; 100], QoS::AtLeastOnce, Some(1)),
    );
    assert!(matches!(&got[..], [Packet::PubAck(a)] if a.reason_code == ReasonCode::SUCCESS));
    sim.publish(
        &mut p,
        publish_owned("t", vec![1; 10], QoS::AtLeastOnce, Some(2)),
    );
    sim.publish(
        &mut p,
        publish_owned("t", vec![2; 100], QoS::AtMostOnce, None),
    );
    let got = sim.recv(&mut s);
    let pubs = publishes(&got);
    assert_eq!(pubs.len(), 1);
    assert_eq!(&pubs[0].payload[..], &[1; 10]);
    assert_eq!(
        sim.dropped("s"),
        [
            ("t".to_owned(), DropReason::TooLarge),
            ("t".to_owned(), DropReason::TooLarge)
        ]
    );
    sim.send(&s, puback(pubs[0].packet_id.unwrap()));
    assert_eq!(sim.broker.pending_messages("s"), 0);
}

// v5 [MQTT-3.1.2-24] [MQTT-3.1.2-25]
#[test]
fn v5_an_unacknowledged_message_too_large_for_the_new_connection_is_dropped_as_if_sent() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::AtLeastOnce)]);
    let mut p = v5_client(&mut sim, "p");
    sim.publish(
        &mut p,
        publish_owned("t", vec![7; 100], QoS::AtLeastOnce, Some(1)),
    );
    assert_eq!(sim.recv_publishes(&mut s).len(), 1);
    sim.drop_connection(&s);
    sim.publish(
        &mut p,
        publish_owned("t", vec![1; 10], QoS::AtLeastOnce, Some(2)),
    );
    // Back with a smaller Maximum Packet Size (and one message at a time).
    let mut connect = connect_v5("s", false, Some(600));
    connect.properties.maximum_packet_size = std::num::NonZeroU32::new(64);
    connect.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (mut s2, _) = sim.connect(connect);
    let got = sim.recv_publishes(&mut s2);
    // The big one cannot be sent: it is discarded as if delivered, and the queue moves on.
    assert_eq!(payloads(&got), [String::from_utf8(vec![1; 10]).unwrap()]);
    assert!(!got[0].dup);
    assert_eq!(sim.dropped("s"), [("t".to_owned(), DropReason::TooLarge)]);
    sim.send(&s2, puback(got[0].packet_id.unwrap()));
    assert_eq!(sim.broker.pending_messages("s"), 0);
}

/// Section 3.1.2.11.4: a packet above the server's Maximum Packet Size is refused with 0x95.
#[test]
fn v5_a_packet_larger_than_the_servers_maximum_packet_size_is_refused_with_0x95() {
    let mut sim = Sim::with_config(config_with(|c| c.maximum_packet_size = 128));
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t", QoS::AtMostOnce)]);
    let (mut p, ack) = sim.connect(connect_v5("p", true, None));
    assert_eq!(
        ack.properties.maximum_packet_size.map(|m| m.get()),
        Some(128)
    );
    // Exactly 128 bytes is accepted: 2 (header) + 2 + 1 (topic) + 1 (properties) + 122.
    sim.publish(
        &mut p,
        publish_owned("t", vec![0; 122], QoS::AtMostOnce, None),
    );
    assert_eq!(sim.recv_publishes(&mut s).len(), 1);
    let got = sim.publish(
        &mut p,
        publish_owned("t", vec![0; 123], QoS::AtMostOnce, None),
    );
    assert_eq!(disconnect_reason(&got), Some(ReasonCode::PACKET_TOO_LARGE));
    assert!(sim.is_closed(&p));
    assert!(sim.recv_publishes(&mut s).is_empty());
}

// ---- Topic aliases -----------------------------------------------------------------------------

// v5 [MQTT-3.3.2-12]
#[test]
fn v5_inbound_topic_aliases_are_set_used_and_remapped() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t/#", QoS::AtMostOnce)]);
    let (mut p, ack) = sim.connect(connect_v5("p", true, None));
    let max = ack.properties.topic_alias_maximum.unwrap();
    assert!(max >= 2);
    let mut set = publish("t/a", b"1", QoS::AtMostOnce, None);
    set.properties.topic_alias = alias(max);
    sim.publish(&mut p, set);
    let mut used = publish("t/a", b"2", QoS::AtMostOnce, None);
    used.topic = mqtt_session::codec::TopicName::empty();
    used.properties.topic_alias = alias(max);
    sim.publish(&mut p, used.clone());
    let mut remap = publish("t/b", b"3", QoS::AtMostOnce, None);
    remap.properties.topic_alias = alias(max);
    sim.publish(&mut p, remap);
    used.payload = Bytes::from_static(b"4");
    sim.publish(&mut p, used);
    let got = sim.recv_publishes(&mut s);
    assert_eq!(topics(&got), ["t/a", "t/a", "t/b", "t/b"]);
    assert_eq!(payloads(&got), ["1", "2", "3", "4"]);
    // The subscriber allowed no aliases: none is sent to it.
    assert!(got.iter().all(|g| g.properties.topic_alias.is_none()));
}

/// Section 3.3.2.3.4: a Topic Alias above the server's Topic Alias Maximum is 0x94.
#[test]
fn v5_a_topic_alias_above_the_maximum_is_refused_with_0x94() {
    for max in [0u16, 4] {
        let mut sim = Sim::with_config(config_with(|c| c.topic_alias_maximum = max));
        let (mut p, ack) = sim.connect(connect_v5("p", true, None));
        assert_eq!(ack.properties.topic_alias_maximum, Some(max));
        let mut bad = publish("t", b"x", QoS::AtMostOnce, None);
        bad.properties.topic_alias = alias(max + 1);
        let got = sim.publish(&mut p, bad);
        assert_eq!(
            disconnect_reason(&got),
            Some(ReasonCode::TOPIC_ALIAS_INVALID)
        );
        assert!(sim.is_closed(&p));
    }
}

/// Section 3.3.2.3.4: an alias without a mapping is a Protocol Error.
// v5 [MQTT-3.3.2-7]
#[test]
fn v5_topic_alias_mappings_do_not_survive_the_connection() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t", QoS::AtMostOnce)]);
    let (mut p, _) = sim.connect(connect_v5("p", true, Some(600)));
    let mut set = publish("t", b"1", QoS::AtMostOnce, None);
    set.properties.topic_alias = alias(1);
    sim.publish(&mut p, set);
    sim.drop_connection(&p);
    let (mut p2, _) = sim.connect(connect_v5("p", false, Some(600)));
    let mut used = publish("t", b"2", QoS::AtMostOnce, None);
    used.topic = mqtt_session::codec::TopicName::empty();
    used.properties.topic_alias = alias(1);
    let got = sim.publish(&mut p2, used);
    assert_eq!(disconnect_reason(&got), Some(ReasonCode::PROTOCOL_ERROR));
    assert_eq!(payloads(&sim.recv_publishes(&mut s)), ["1"]);
}

// v5 [MQTT-3.1.2-26] [MQTT-3.3.2-11]
#[test]
fn v5_outbound_topic_aliases_stay_within_the_clients_maximum() {
    let mut sim = Sim::new();
    let mut connect = connect_v5("s", true, None);
    connect.properties.topic_alias_maximum = Some(2);
    let mut s = sim.subscriber(connect, &[("t/#", QoS::AtMostOnce)]);
    let mut p = v5_client(&mut sim, "p");
    for t in ["t/a", "t/b", "t/a", "t/c", "t/b", "t/c"] {
        sim.publish(&mut p, publish(t, b"x", QoS::AtMostOnce, None));
    }
    let got = sim.recv_publishes(&mut s);
    let seen: Vec<(String, Option<u16>)> = got
        .iter()
        .map(|g| {
            (
                g.topic.to_string(),
                g.properties.topic_alias.map(|a| a.get()),
            )
        })
        .collect();
    let want: Vec<(String, Option<u16>)> = vec![
        ("t/a".into(), Some(1)),
        ("t/b".into(), Some(2)),
        (String::new(), Some(1)),
        ("t/c".into(), None),
        (String::new(), Some(2)),
        ("t/c".into(), None),
    ];
    assert_eq!(seen, want);
}

// v5 [MQTT-3.1.2-27]
#[test]
fn v5_no_topic_alias_is_sent_to_a_client_that_allows_none() {
    let mut sim = Sim::new();
    let mut zero = connect_v5("zero", true, None);
    zero.properties.topic_alias_maximum = Some(0);
    let mut zero = sim.subscriber(zero, &[("t", QoS::AtMostOnce)]);
    let mut absent = sim.subscriber(connect_v5("absent", true, None), &[("t", QoS::AtMostOnce)]);
    let mut p = v5_client(&mut sim, "p");
    for _ in 0..3 {
        sim.publish(&mut p, publish("t", b"x", QoS::AtMostOnce, None));
    }
    for c in [&mut zero, &mut absent] {
        let got = sim.recv_publishes(c);
        assert_eq!(got.len(), 3);
        assert!(
            got.iter()
                .all(|g| g.properties.topic_alias.is_none() && g.topic == "t")
        );
    }
}

// ---- Message expiry ----------------------------------------------------------------------------

// v5 [MQTT-3.3.2-5]
#[test]
fn v5_an_expired_message_is_never_sent() {
    let mut sim = Sim::new();
    let s = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::AtLeastOnce)]);
    sim.drop_connection(&s);
    let mut p = v5_client(&mut sim, "p");
    let mut short = publish("t", b"short", QoS::AtLeastOnce, Some(1));
    short.properties.message_expiry_interval = Some(10);
    sim.publish(&mut p, short);
    let mut long = publish("t", b"long", QoS::AtLeastOnce, Some(2));
    long.properties.message_expiry_interval = Some(100);
    sim.publish(&mut p, long);
    sim.advance(10);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(600)));
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["long"]);
    assert_eq!(sim.dropped("s"), [("t".to_owned(), DropReason::Expired)]);
}

// v5 [MQTT-3.3.2-6]
#[test]
fn v5_the_message_expiry_interval_is_reduced_by_the_time_the_message_waited() {
    let mut sim = Sim::new();
    let mut online = sim.subscriber(connect_v5("online", true, None), &[("t", QoS::AtLeastOnce)]);
    let offline = sim.subscriber(
        connect_v5("offline", true, Some(600)),
        &[("t", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&offline);
    let mut p = v5_client(&mut sim, "p");
    let mut m = publish("t", b"m", QoS::AtLeastOnce, Some(1));
    m.properties.message_expiry_interval = Some(60);
    sim.publish(&mut p, m);
    assert_eq!(
        sim.recv_publishes(&mut online)[0]
            .properties
            .message_expiry_interval,
        Some(60)
    );
    sim.advance(25);
    let (mut back, _) = sim.connect(connect_v5("offline", false, Some(600)));
    let got = sim.recv_publishes(&mut back);
    assert_eq!(got[0].properties.message_expiry_interval, Some(35));
    // A message without expiry carries none.
    sim.publish(&mut p, publish("t", b"n", QoS::AtLeastOnce, Some(2)));
    assert_eq!(
        sim.recv_publishes(&mut back)[0]
            .properties
            .message_expiry_interval,
        None
    );
}

// v5 [MQTT-3.3.2-5] [MQTT-3.3.2-6]
#[test]
fn v5_retained_messages_expire_too() {
    let mut sim = Sim::new();
    let mut p = v5_client(&mut sim, "p");
    let mut r = retained("r", b"x");
    r.properties.message_expiry_interval = Some(30);
    sim.publish(&mut p, r);
    sim.advance(10);
    let mut a = v5_client(&mut sim, "a");
    let (_, got) = sim.subscribe_ack(&mut a, subscribe(1, &[("r", QoS::AtMostOnce)]));
    assert_eq!(got[0].properties.message_expiry_interval, Some(20));
    sim.advance(20);
    let mut b = v5_client(&mut sim, "b");
    let (_, got) = sim.subscribe_ack(&mut b, subscribe(1, &[("r", QoS::AtMostOnce)]));
    assert!(got.is_empty());
}

// v5 [MQTT-4.3.3-7]
#[test]
fn v5_expiry_is_not_applied_to_a_qos_2_message_already_sent() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, Some(600)), &[("t", QoS::ExactlyOnce)]);
    let mut p = v5_client(&mut sim, "p");
    let mut m = publish("t", b"m", QoS::ExactlyOnce, Some(1));
    m.properties.message_expiry_interval = Some(5);
    sim.publish(&mut p, m);
    let id = sim.recv_publishes(&mut s)[0].packet_id.unwrap();
    sim.drop_connection(&s);
    sim.advance(60);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(600)));
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["m"]);
    assert_eq!(got[0].packet_id, Some(id));
    assert!(got[0].dup);
    assert!(sim.dropped("s").is_empty());
}

// v5 [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]
#[test]
fn v5_application_message_properties_are_forwarded_unaltered() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("t", QoS::AtLeastOnce)]);
    let mut old = sim.subscriber(connect_v311("old", true), &[("t", QoS::AtLeastOnce)]);
    let mut p = v5_client(&mut sim, "p");
    let mut m = publish("t", b"\xE2\x82\xAC", QoS::AtLeastOnce, Some(1));
    m.properties.payload_format_indicator = Some(PayloadFormatIndicator::Utf8);
    m.properties
        .set_content_type(Some(utf8("text/plain; charset=utf-8")));
    m.properties
        .set_response_topic(Some(topic("replies/p")))
        .unwrap();
    m.properties
        .set_correlation_data(Some(b"\x00\x01req-7"))
        .unwrap();
    for (k, v) in [("k", "2"), ("a", "1"), ("k", "1")] {
        m.properties.push_user_property(utf8(k), utf8(v));
    }
    sim.publish(&mut p, m.clone());
    let got = sim.recv_publishes(&mut s);
    let q = &got[0].properties;
    assert_eq!(
        q.payload_format_indicator,
        m.properties.payload_format_indicator
    );
    assert_eq!(q.content_type(), m.properties.content_type());
    assert_eq!(q.response_topic(), m.properties.response_topic());
    assert_eq!(q.correlation_data(), m.properties.correlation_data());
    assert_eq!(
        q.user_properties().collect::<Vec<_>>(),
        [("k", "2"), ("a", "1"), ("k", "1")]
    );
    // A 3.1.1 subscriber gets the same message, without properties.
    let got = sim.recv_publishes(&mut old);
    assert_eq!(&got[0].payload[..], b"\xE2\x82\xAC");
    assert_eq!(got[0].properties, Default::default());
}

// ---- The offline queue -------------------------------------------------------------------------

/// A configured limit: the newest message is dropped, with an event.
#[test]
fn v5_a_full_queue_drops_the_newest_message_and_says_so() {
    let mut sim = Sim::with_config(config_with(|c| c.max_queued_messages = 2));
    let s = sim.subscriber(connect_v5("s", true, Some(600)), &[("q", QoS::AtLeastOnce)]);
    sim.drop_connection(&s);
    let mut p = v5_client(&mut sim, "p");
    for (i, m) in [b"1" as &'static [u8], b"2", b"3"].into_iter().enumerate() {
        sim.publish(
            &mut p,
            publish(
                "q",
                m,
                QoS::AtLeastOnce,
                Some(u16::try_from(i + 1).unwrap()),
            ),
        );
    }
    assert_eq!(sim.broker.pending_messages("s"), 2);
    assert_eq!(sim.dropped("s"), [("q".to_owned(), DropReason::QueueFull)]);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(600)));
    assert_eq!(payloads(&sim.recv_publishes(&mut s2)), ["1", "2"]);
}

#[test]
fn v5_the_queue_is_also_limited_in_bytes() {
    let mut sim = Sim::with_config(config_with(|c| c.max_queued_bytes = 20));
    let s = sim.subscriber(connect_v5("s", true, Some(600)), &[("q", QoS::AtLeastOnce)]);
    sim.drop_connection(&s);
    let mut p = v5_client(&mut sim, "p");
    // Each message counts 10 bytes (topic and payload).
    for i in 1..=3u16 {
        sim.publish(
            &mut p,
            publish_owned(
                "q",
                vec![b'0' + u8::try_from(i).unwrap(); 9],
                QoS::AtLeastOnce,
                Some(i),
            ),
        );
    }
    assert_eq!(sim.broker.pending_messages("s"), 2);
    assert_eq!(sim.dropped("s"), [("q".to_owned(), DropReason::QueueFull)]);
}

// v3.1.1 [MQTT-3.1.2-5]
#[test]
fn qos_0_messages_are_queued_for_an_offline_session_only_when_configured() {
    for queue_qos0 in [false, true] {
        let mut sim = Sim::with_config(config_with(|c| c.queue_qos0_when_offline = queue_qos0));
        let s = sim.subscriber(connect_v311("s", false), &[("q", QoS::AtLeastOnce)]);
        sim.drop_connection(&s);
        let (mut p, _) = sim.connect(connect_v311("p", true));
        sim.publish(&mut p, publish("q", b"zero", QoS::AtMostOnce, None));
        sim.publish(&mut p, publish("q", b"one", QoS::AtLeastOnce, Some(1)));
        let (mut s2, _) = sim.connect(connect_v311("s", false));
        let got = sim.recv_publishes(&mut s2);
        if queue_qos0 {
            assert_eq!(payloads(&got), ["zero", "one"]);
            assert_eq!(got[0].qos, QoS::AtMostOnce);
        } else {
            assert_eq!(payloads(&got), ["one"]);
        }
    }
}

/// A DISCONNECT for a packet the decoder rejects names the rule broken in its Reason String,
/// unless the Reason String would take it over the client's Maximum Packet Size: then it is
/// sent without. v5 [MQTT-3.14.2-3] [MQTT-3.1.2-24]
#[test]
fn v5_a_violation_disconnect_names_the_rule_unless_too_large() {
    for (max, named) in [(None, true), (Some(16), false)] {
        let mut sim = Sim::new();
        let mut c = connect_v5("p", true, None);
        c.properties.maximum_packet_size = max.map(|m| std::num::NonZeroU32::new(m).unwrap());
        let (mut p, _) = sim.connect(c);
        // A PUBLISH with both QoS bits set [MQTT-3.3.1-4]: Malformed Packet.
        sim.send_bytes(&p, &[0x36, 0x04, 0x00, 0x01, b'a', 0x00]);
        let got = sim.recv(&mut p);
        let Some(Packet::Disconnect(d)) = got.iter().find(|g| matches!(g, Packet::Disconnect(_)))
        else {
            panic!("no DISCONNECT in {got:?}")
        };
        assert_eq!(d.reason_code, ReasonCode::MALFORMED_PACKET);
        match (named, &d.properties.reason_string()) {
            (true, Some(text)) => assert!(text.contains("[MQTT-3.3.1-4]"), "{text:?}"),
            (false, None) => {}
            other => panic!("max {max:?}: {other:?}"),
        }
    }
}
