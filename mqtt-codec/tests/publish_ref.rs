//! `PublishRef` (the borrowed PUBLISH) against `Publish` (the owned one): the same packets,
//! the same encodings, the same violations, on valid PUBLISH packets of both versions and on
//! the same packets damaged at random. The check is `fuzz/checks/codec.rs`'s, which the
//! `decode_v311`, `decode_v5` and `roundtrip` fuzz targets also run.
// Test code: a panic is a failure report. (The workspace denies these in library code.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mqtt_codec::{
    Packet, PropertiesRef, PropertyId, PropertyValue, ProtocolVersion, PublishRef, Status,
    Violation, read_fixed_header,
};
use proptest::prelude::*;

include!("../../fuzz/checks/codec.rs");

/// Valid PUBLISH packets (from `Packet::arbitrary_for`), encoded, then damaged at up to three
/// random bytes of the body.
fn publish_body() -> impl Strategy<Value = (ProtocolVersion, u8, Vec<u8>)> {
    (
        prop::collection::vec(any::<u8>(), 64..512),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..=3),
    )
        .prop_filter_map("a PUBLISH", |(seed, damage)| {
            let mut u = mqtt_codec::arbitrary::Unstructured::new(&seed);
            let version = if u.arbitrary::<bool>().ok()? {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            };
            let packet = Packet::arbitrary_for(&mut u, version).ok()?;
            if !matches!(packet, Packet::Publish(_)) {
                return None;
            }
            let mut wire = bytes::BytesMut::new();
            packet.encode(version, &mut wire).ok()?;
            let Ok(Status::Complete(h)) = read_fixed_header(&wire, Some(version), u32::MAX) else {
                return None;
            };
            let mut body = wire[h.header_length..h.packet_length()].to_vec();
            for (at, byte) in damage {
                if !body.is_empty() {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
            }
            Some((version, h.first_byte, body))
        })
}

/// One property in wire form: an identifier (any, known or not) and a value shaped by the
/// identifier's type, with the values the rules care about (0, 1, 2, wildcards, U+0000) likely.
fn property() -> impl Strategy<Value = Vec<u8>> {
    let text = prop::collection::vec(prop::sample::select(vec![b'a', b'+', b'#', 0, b'/']), 0..3);
    (0_u8..0x2C, 0_u8..3, any::<u16>(), text.clone(), text).prop_map(|(id, small, n, s1, s2)| {
        let mut out = vec![id];
        let string = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
            out.extend_from_slice(s);
        };
        match PropertyId::from_u32(u32::from(id)) {
            None => out.push(small),
            Some(p) => match p {
                PropertyId::PayloadFormatIndicator
                | PropertyId::RequestProblemInformation
                | PropertyId::RequestResponseInformation
                | PropertyId::RetainAvailable
                | PropertyId::WildcardSubscriptionAvailable
                | PropertyId::SubscriptionIdentifierAvailable
                | PropertyId::SharedSubscriptionAvailable
                | PropertyId::MaximumQos => out.push(small),
                PropertyId::ServerKeepAlive
                | PropertyId::TopicAliasMaximum
                | PropertyId::ReceiveMaximum
                | PropertyId::TopicAlias => out.extend_from_slice(&(n % 3).to_be_bytes()),
                PropertyId::MessageExpiryInterval
                | PropertyId::SessionExpiryInterval
                | PropertyId::WillDelayInterval
                | PropertyId::MaximumPacketSize => {
                    out.extend_from_slice(&u32::from(n % 3).to_be_bytes())
                }
                PropertyId::SubscriptionIdentifier => out.push(small),
                PropertyId::UserProperty => {
                    string(&mut out, &s1);
                    string(&mut out, &s2);
                }
                _ => string(&mut out, &s1),
            },
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// PUBLISH packets whose properties are built from valid and invalid identifiers and
    /// values, duplicates included (section 2.2.2.2).
    #[test]
    fn publish_ref_agrees_on_property_lists(
        props in prop::collection::vec(property(), 0..5),
        empty_topic in any::<bool>(),
        truncate in 0_usize..3,
    ) {
        let props: Vec<u8> = props.concat();
        let mut body = Vec::new();
        if empty_topic { body.extend_from_slice(&[0, 0]); } else { body.extend_from_slice(&[0, 1, b't']); }
        body.push(u8::try_from(props.len()).unwrap_or(0x7F).min(0x7F));
        body.extend_from_slice(&props);
        body.extend_from_slice(b"payload");
        body.truncate(body.len().saturating_sub(truncate * 4));
        codec_checks::publish_ref_agrees(0x30, &body, ProtocolVersion::V5);
    }

    // v5 [MQTT-3.3.2-2] [MQTT-3.3.1-4] [MQTT-3.3.2-8] [MQTT-1.5.4-1] [MQTT-1.5.4-2]
    #[test]
    fn publish_ref_agrees_with_publish((version, first_byte, body) in publish_body()) {
        codec_checks::publish_ref_agrees(first_byte, &body, version);
    }

    /// Any bytes at all, with any PUBLISH flags.
    #[test]
    fn publish_ref_agrees_on_any_bytes(flags in 0_u8..16, body in prop::collection::vec(any::<u8>(), 0..64), v5 in any::<bool>()) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
        codec_checks::publish_ref_agrees(0x30 | flags, &body, version);
    }
}

#[test]
fn properties_ref_reads_values_and_names_violations() {
    // Message Expiry 60, Content Type "a", User Property ("k", "v"), Subscription Identifier 2
    // twice (allowed in PUBLISH).
    let wire = [
        0x02, 0, 0, 0, 60, 0x03, 0, 1, b'a', 0x26, 0, 1, b'k', 0, 1, b'v', 0x0B, 2, 0x0B, 2,
    ];
    let p = PropertiesRef::new(&wire).unwrap();
    assert_eq!(p.message_expiry_interval(), Some(60));
    assert_eq!(p.topic_alias(), None);
    let all: Vec<_> = p.iter().collect();
    assert_eq!(
        all,
        [
            (
                PropertyId::MessageExpiryInterval,
                PropertyValue::FourByteInteger(60)
            ),
            (PropertyId::ContentType, PropertyValue::Utf8("a")),
            (PropertyId::UserProperty, PropertyValue::Pair("k", "v")),
            (
                PropertyId::SubscriptionIdentifier,
                PropertyValue::VariableByteInteger(2)
            ),
            (
                PropertyId::SubscriptionIdentifier,
                PropertyValue::VariableByteInteger(2)
            ),
        ]
    );
    let owned = p.to_properties();
    assert_eq!(owned.message_expiry_interval, Some(60));
    assert_eq!(owned.subscription_identifiers().collect::<Vec<_>>(), [2, 2]);
    // Message Expiry twice (section 2.2.2.2: a duplicate is a Protocol Error).
    assert_eq!(
        PropertiesRef::new(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
        Err(Violation::DuplicateProperty)
    );
    // Session Expiry Interval is not a PUBLISH property.
    assert_eq!(
        PropertiesRef::new(&[0x11, 0, 0, 0, 1]),
        Err(Violation::PropertyNotAllowed)
    );
    // v5 [MQTT-3.3.2-8] Topic Alias 0.
    assert_eq!(
        PropertiesRef::new(&[0x23, 0, 0]),
        Err(Violation::TopicAliasZero)
    );
}

#[test]
fn mqtt_3_3_2_2_publish_ref_refuses_wildcards_in_the_topic() {
    // v5 [MQTT-3.3.2-2]
    let body = [0, 3, b'a', b'/', b'+'];
    let err = PublishRef::decode(0x30, &body, ProtocolVersion::V5).unwrap_err();
    assert_eq!(err.violation(), Violation::TopicNameWildcard);
    assert_eq!(err.statement(), Some("MQTT-3.3.2-2"));
    // A packet that is not a PUBLISH.
    let err = PublishRef::decode(0x40, &[0, 1], ProtocolVersion::V5).unwrap_err();
    assert_eq!(err.violation(), Violation::InvalidPacketType);
}

#[test]
fn publish_ref_new_checks_the_topic_like_the_decoder() {
    // v5 [MQTT-3.3.2-2] [MQTT-1.5.4-2]
    assert_eq!(
        PublishRef::new("a/+", b"").unwrap_err(),
        Violation::TopicNameWildcard
    );
    assert_eq!(
        PublishRef::new("a\0b", b"").unwrap_err(),
        Violation::NullCharacter
    );
    let long = "x".repeat(65_536);
    assert_eq!(
        PublishRef::new(&long, b"").unwrap_err(),
        Violation::FieldTooLong
    );
    let mut p = PublishRef::new("a/b", b"hi").unwrap();
    assert_eq!(p.set_topic("#"), Err(Violation::TopicNameWildcard));
    assert_eq!(p.topic(), "a/b");
    p.set_topic("c").unwrap();
    assert_eq!(p.topic(), "c");
}
