//! `Publish::encode_delivery` against the copy it stands for: a clone of the message with the
//! delivery's fields set, encoded with `Packet::encode_limited`. Same bytes, or the same
//! violation, for random messages of both versions and random deliveries.
// Test code: a panic is a failure report. (The workspace denies these in library code.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::num::NonZeroU16;

use bytes::BytesMut;
use mqtt_codec::{Delivery, Packet, PacketId, Properties, ProtocolVersion, QoS, TopicName};
use proptest::prelude::*;

fn message() -> impl Strategy<Value = (ProtocolVersion, mqtt_codec::Publish)> {
    prop::collection::vec(any::<u8>(), 32..400).prop_filter_map("a PUBLISH", |seed| {
        let mut u = mqtt_codec::arbitrary::Unstructured::new(&seed);
        let version = if u.arbitrary::<bool>().ok()? {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        match Packet::arbitrary_for(&mut u, version).ok()? {
            Packet::Publish(p) => Some((version, p)),
            _ => None,
        }
    })
}

fn delivery() -> impl Strategy<Value = (bool, u8, bool, u16, bool, u16, Option<u32>, Vec<u32>)> {
    (
        any::<bool>(),
        0_u8..3,
        any::<bool>(),
        0_u16..4,
        any::<bool>(),
        0_u16..3,
        prop::option::of(0_u32..5),
        prop::collection::vec(0_u32..3, 0..3),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    // v5 [MQTT-3.3.2-6] [MQTT-3.3.4-3] [MQTT-3.3.1-2] [MQTT-3.3.2-8]
    #[test]
    fn encode_delivery_is_the_encoding_of_the_modified_copy(
        (version, message) in message(),
        (dup, qos, retain, pid, omit_topic, alias, expiry, sub_ids) in delivery(),
        limit in prop::option::of(8_u32..200),
    ) {
        let qos = match qos { 0 => QoS::AtMostOnce, 1 => QoS::AtLeastOnce, _ => QoS::ExactlyOnce };
        let d = Delivery {
            dup,
            qos,
            retain,
            packet_id: PacketId::new(pid),
            omit_topic,
            topic_alias: NonZeroU16::new(alias),
            message_expiry_interval: expiry,
            subscription_identifiers: &sub_ids,
        };
        let max = limit.unwrap_or(u32::MAX);
        let mut copy = message.clone();
        copy.dup = dup;
        copy.qos = qos;
        copy.retain = retain;
        copy.packet_id = d.packet_id;
        if omit_topic {
            copy.topic = TopicName::empty();
        }
        if version.is_v5() {
            copy.properties.topic_alias = d.topic_alias;
            copy.properties.message_expiry_interval = expiry;
            copy.properties.clear_subscription_identifiers();
            for &id in &sub_ids {
                if copy.properties.push_subscription_identifier(id).is_err() {
                    // A Subscription Identifier of 0 cannot be in a `Properties` at all; the
                    // delivery refuses it (with this violation, or one found before it).
                    let mut got = BytesMut::new();
                    let got = message.encode_delivery(&d, version, max, &mut got);
                    prop_assert!(got.is_err(), "{got:?}");
                    return Ok(());
                }
            }
        } else {
            copy.properties = Properties::default();
        }
        let mut want = BytesMut::new();
        let want = Packet::Publish(copy).encode_limited(version, max, &mut want).map(|n| (n, want));
        let mut got = BytesMut::new();
        let got = message.encode_delivery(&d, version, max, &mut got).map(|n| (n, got));
        match (want, got) {
            (Ok((a, wa)), Ok((b, wb))) => {
                prop_assert_eq!(a, b);
                prop_assert_eq!(&wa[..], &wb[..]);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.violation(), b.violation()),
            (a, b) => prop_assert!(false, "copy: {:?}, delivery: {:?}", a.map(|x| x.0), b.map(|x| x.0)),
        }
    }
}
