//! `Packet::encode_fitting`: the Reason String, then the User Properties, of an
//! acknowledgement, CONNACK, DISCONNECT or AUTH are left out when they would take the packet
//! over the receiver's Maximum Packet Size; anything else too large is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Auth, ConnAck, Decoder, Disconnect, Packet, PacketId, Properties, ProtocolVersion, PubAck,
    PubComp, PubRec, PubRel, Publish, ReasonCode, SubAck, TopicName, UnsubAck, Utf8String,
    Violation,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// One packet of each kind that may carry the optional properties, with a Reason String and
/// a User Property.
fn packets() -> Vec<Packet> {
    let id = PacketId::new(7).unwrap();
    let mut packets = vec![
        Packet::ConnAck(ConnAck::new(false, ReasonCode::NOT_AUTHORIZED)),
        Packet::PubAck(PubAck::new(id)),
        Packet::PubRec(PubRec::new(id)),
        Packet::PubRel(PubRel::new(id)),
        Packet::PubComp(PubComp::new(id)),
        Packet::SubAck(SubAck {
            packet_id: id,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::GRANTED_QOS_1],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: id,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::SUCCESS],
        }),
        Packet::Disconnect(Disconnect::new(ReasonCode::PROTOCOL_ERROR)),
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Default::default(),
        }),
    ];
    for p in &mut packets {
        let auth = matches!(p, Packet::Auth(_));
        let props = props_mut(p);
        if auth {
            props.set_authentication_method(Some(Utf8String::try_from("X").unwrap()));
        }
        props.set_reason_string(Some(
            Utf8String::try_from("a reason string of some length").unwrap(),
        ));
        props.push_user_property(
            Utf8String::try_from("key").unwrap(),
            Utf8String::try_from("value").unwrap(),
        );
    }
    packets
}

/// The properties of one of the packets of [`packets`].
fn props_mut(p: &mut Packet) -> &mut Properties {
    match p {
        Packet::ConnAck(p) => &mut p.properties,
        Packet::PubAck(p) => &mut p.properties,
        Packet::PubRec(p) => &mut p.properties,
        Packet::PubRel(p) => &mut p.properties,
        Packet::PubComp(p) => &mut p.properties,
        Packet::SubAck(p) => &mut p.properties,
        Packet::UnsubAck(p) => &mut p.properties,
        Packet::Disconnect(p) => &mut p.properties,
        Packet::Auth(p) => &mut p.properties,
        _ => unreachable!(),
    }
}

fn size(p: &Packet) -> u32 {
    let mut buf = BytesMut::new();
    u32::try_from(p.encode(V5, &mut buf).unwrap()).unwrap()
}

fn decode(bytes: &mut BytesMut) -> Packet {
    Decoder::with_version(V5)
        .decode(bytes)
        .unwrap()
        .expect("a whole packet")
}

/// Strips the optional properties: `reason` the Reason String, `users` the User Properties.
fn without(p: &Packet, reason: bool, users: bool) -> Packet {
    let mut p = p.clone();
    let props = props_mut(&mut p);
    if reason {
        props.set_reason_string(None);
    }
    if users {
        props.clear_user_properties();
    }
    p
}

// v5 [MQTT-3.2.2-19] [MQTT-3.2.2-20] [MQTT-3.4.2-2] [MQTT-3.4.2-3] [MQTT-3.5.2-2]
// [MQTT-3.5.2-3] [MQTT-3.6.2-2] [MQTT-3.6.2-3] [MQTT-3.7.2-2] [MQTT-3.7.2-3] [MQTT-3.9.2-1]
// [MQTT-3.9.2-2] [MQTT-3.11.2-1] [MQTT-3.11.2-2] [MQTT-3.14.2-3] [MQTT-3.14.2-4]
// [MQTT-3.15.2-2] [MQTT-3.15.2-3]
#[test]
fn reason_string_then_user_properties_are_left_out_to_fit() {
    for p in packets() {
        let full = size(&p);
        let no_reason = without(&p, true, false);
        let bare = without(&p, true, true);
        let (no_reason_size, bare_size) = (size(&no_reason), size(&bare));
        assert!(bare_size < no_reason_size && no_reason_size < full, "{p:?}");

        // It fits: sent whole.
        let mut buf = BytesMut::new();
        assert_eq!(p.encode_fitting(V5, full, &mut buf).unwrap(), full as usize);
        assert_eq!(decode(&mut buf), p);
        // One byte short: without the Reason String, with the User Properties.
        for max in [full - 1, no_reason_size] {
            let mut buf = BytesMut::new();
            assert_eq!(
                p.encode_fitting(V5, max, &mut buf).unwrap(),
                no_reason_size as usize
            );
            assert_eq!(decode(&mut buf), no_reason, "max {max}");
        }
        // Shorter still: without both.
        for max in [no_reason_size - 1, bare_size] {
            let mut buf = BytesMut::new();
            assert_eq!(
                p.encode_fitting(V5, max, &mut buf).unwrap(),
                bare_size as usize
            );
            assert_eq!(decode(&mut buf), bare, "max {max}");
        }
        // Too large even so: refused, nothing written.
        let mut buf = BytesMut::new();
        let e = p.encode_fitting(V5, bare_size - 1, &mut buf).unwrap_err();
        assert_eq!(e.violation(), Violation::PacketTooLarge);
        assert!(buf.is_empty());
    }
}

/// A PUBLISH is never trimmed: its User Properties are the application's.
#[test]
fn a_publish_is_refused_not_trimmed() {
    let mut p = Publish::new(TopicName::try_from("t").unwrap(), Bytes::from_static(b"x"));
    p.properties.push_user_property(
        Utf8String::try_from("key").unwrap(),
        Utf8String::try_from("value").unwrap(),
    );
    let p = Packet::Publish(p);
    let mut buf = BytesMut::new();
    let e = p.encode_fitting(V5, size(&p) - 1, &mut buf).unwrap_err();
    assert_eq!(e.violation(), Violation::PacketTooLarge);
    assert!(buf.is_empty());
}

/// Topic Names and Topic Filters are UTF-8 strings of at most 65 535 bytes: a longer one
/// cannot be made, and an encoded topic's length prefix can say no more. v5 v3.1.1
/// [MQTT-4.7.3-3]
#[test]
fn topics_are_at_most_65535_bytes() {
    use mqtt_codec::TopicFilter;
    let longest = "a/".repeat(32_767) + "b";
    assert_eq!(longest.len(), 65_535);
    assert!(TopicName::try_from(longest.as_str()).is_ok());
    assert!(TopicFilter::try_from(longest.as_str()).is_ok());
    let too_long = longest.clone() + "c";
    assert!(TopicName::try_from(too_long.as_str()).is_err());
    assert!(TopicFilter::try_from(too_long.as_str()).is_err());
    // The longest one round-trips in a PUBLISH (length prefix FF FF).
    let p = Packet::Publish(Publish::new(
        TopicName::try_from(longest.as_str()).unwrap(),
        Bytes::from_static(b"x"),
    ));
    let mut buf = BytesMut::new();
    p.encode(V5, &mut buf).unwrap();
    let mut wire = buf.clone();
    assert_eq!(decode(&mut wire), p);
    assert!(buf.windows(2).any(|w| w == [0xFF, 0xFF]));
}
