//! The order in which a property list is written does not depend on the order in which its
//! properties were set: the encoder writes them in one canonical order (Table 2-4's, with the
//! User Properties after Retain Available), User Properties and Subscription Identifiers in the
//! order they were added. The encoder has a one-copy path for lists whose variable-length
//! properties all come before, or all after, the fixed-size ones, and a general path that
//! interleaves them; both must give the same bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Decoder, Packet, PayloadFormatIndicator, Properties, ProtocolVersion, Publish, TopicName,
    Utf8String,
};
use proptest::prelude::*;

/// One property of a PUBLISH, set through the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    PayloadFormat,
    MessageExpiry,
    ContentType,
    ResponseTopic,
    CorrelationData,
    SubscriptionIdentifier(u32),
    TopicAlias,
    UserProperty(u8),
}

impl Op {
    /// The property identifier on the wire.
    fn id(self) -> u8 {
        match self {
            Op::PayloadFormat => 0x01,
            Op::MessageExpiry => 0x02,
            Op::ContentType => 0x03,
            Op::ResponseTopic => 0x08,
            Op::CorrelationData => 0x09,
            Op::SubscriptionIdentifier(_) => 0x0B,
            Op::TopicAlias => 0x23,
            Op::UserProperty(_) => 0x26,
        }
    }

    /// Where the property comes in the canonical order.
    fn rank(self) -> usize {
        match self {
            Op::PayloadFormat => 0,
            Op::MessageExpiry => 1,
            Op::ContentType => 2,
            Op::ResponseTopic => 3,
            Op::CorrelationData => 4,
            Op::SubscriptionIdentifier(_) => 5,
            Op::TopicAlias => 19,
            Op::UserProperty(_) => 22,
        }
    }

    fn apply(self, p: &mut Properties) {
        let utf8 = |s: &str| Utf8String::try_from(s).unwrap();
        match self {
            Op::PayloadFormat => p.payload_format_indicator = Some(PayloadFormatIndicator::Utf8),
            Op::MessageExpiry => p.message_expiry_interval = Some(3600),
            Op::ContentType => p.set_content_type(Some(utf8("text/plain"))),
            Op::ResponseTopic => p
                .set_response_topic(Some(TopicName::try_from("reply/here").unwrap()))
                .unwrap(),
            Op::CorrelationData => p.set_correlation_data(Some(b"corr")).unwrap(),
            Op::SubscriptionIdentifier(v) => p.push_subscription_identifier(v).unwrap(),
            Op::TopicAlias => p.topic_alias = NonZeroU16::new(7),
            Op::UserProperty(n) => p.push_user_property(utf8("k"), utf8(&n.to_string())),
        }
    }
}

/// The property list of a 5.0 PUBLISH (topic `t`, QoS 0) with these properties: the bytes after
/// the Property Length.
fn encoded_properties(props: &Properties) -> Vec<u8> {
    let mut publish = Publish::new(TopicName::try_from("t").unwrap(), Bytes::new());
    publish.properties = props.clone();
    let packet = Packet::Publish(publish);
    let mut buf = BytesMut::new();
    packet.encode(ProtocolVersion::V5, &mut buf).unwrap();
    // Fixed header (2 bytes: every list here is short), topic (3), Property Length (1).
    assert!(buf[1] < 128 && buf[5] < 128, "a short packet");
    let len = usize::from(buf[5]);
    let list = buf[6..6 + len].to_vec();
    // The bytes decode back to the same properties.
    let mut decoder = Decoder::with_version(ProtocolVersion::V5);
    let Some(Packet::Publish(back)) = decoder.decode(&mut buf).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert_eq!(&back.properties, props);
    list
}

/// The identifiers of a property list, in order, with the values of the User Properties and
/// Subscription Identifiers (which must keep their order).
fn walk(mut list: &[u8]) -> Vec<(u8, Option<u8>)> {
    let mut out = Vec::new();
    while let [id, rest @ ..] = list {
        let (len, value) = match id {
            0x01 => (1, None),
            0x02 => (4, None),
            0x03 | 0x08 | 0x09 => (
                2 + usize::from(u16::from_be_bytes([rest[0], rest[1]])),
                None,
            ),
            0x0B => (1, Some(rest[0])),
            0x23 => (2, None),
            0x26 => {
                let k = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let v = usize::from(u16::from_be_bytes([rest[k], rest[k + 1]]));
                // The value is the decimal `n` of `UserProperty(n)`.
                let text = std::str::from_utf8(&rest[k + 2..k + 2 + v]).unwrap();
                (k + 2 + v, Some(text.parse().unwrap()))
            }
            other => panic!("unexpected property {other:#x}"),
        };
        out.push((*id, value));
        list = &rest[len..];
    }
    out
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    (
        any::<[bool; 6]>(),
        prop::collection::vec(1_u32..100, 0..3),
        prop::collection::vec(any::<u8>(), 0..3),
    )
        .prop_flat_map(|(flags, ids, users)| {
            let singles = [
                Op::PayloadFormat,
                Op::MessageExpiry,
                Op::ContentType,
                Op::ResponseTopic,
                Op::CorrelationData,
                Op::TopicAlias,
            ];
            let mut ops: Vec<Op> = singles
                .into_iter()
                .zip(flags)
                .filter(|(_, on)| *on)
                .map(|(op, _)| op)
                .collect();
            ops.extend(ids.into_iter().map(Op::SubscriptionIdentifier));
            ops.extend(users.into_iter().map(Op::UserProperty));
            Just(ops).prop_shuffle()
        })
}

proptest! {
    /// v5 Table 2-4 order whatever the order of the setters; repeated properties keep theirs.
    #[test]
    fn properties_encode_in_one_order_whatever_order_they_were_set_in(ops in ops()) {
        let mut props = Properties::default();
        for op in &ops {
            op.apply(&mut props);
        }
        let got = walk(&encoded_properties(&props));

        // The expected list: sorted by rank, stable (so repeated ones keep their order).
        let mut sorted = ops.clone();
        sorted.sort_by_key(|op| op.rank());
        let expected: Vec<(u8, Option<u8>)> = sorted
            .iter()
            .map(|op| {
                let value = match *op {
                    Op::SubscriptionIdentifier(v) => Some(u8::try_from(v).unwrap()),
                    Op::UserProperty(n) => Some(n),
                    _ => None,
                };
                (op.id(), value)
            })
            .collect();
        prop_assert_eq!(&got, &expected);

        // The same properties set in the canonical order give the same bytes.
        let mut canonical = Properties::default();
        for op in &sorted {
            op.apply(&mut canonical);
        }
        prop_assert_eq!(encoded_properties(&canonical), encoded_properties(&props));
    }
}
