//! `PacketRef` (every packet borrowed from the input) against `Packet` (owned): the same
//! packets and the same errors, on valid packets of every type in both versions, on the same
//! packets damaged at random, and on any bytes. The check is `fuzz/checks/codec.rs`'s, which
//! the `decode_v311`, `decode_v5` and `roundtrip` fuzz targets also run on every input.
// Test code: a panic is a failure report. (The workspace denies these in library code.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)] // (the strategies this file does not use)
mod strategies;

use bytes::BytesMut;
use mqtt_codec::{
    Decoder, Packet, PacketRef, PacketType, PropertyId, PropertyValue, ProtocolVersion, ReasonCode,
    Status, Violation, read_fixed_header,
};
use proptest::prelude::*;
use strategies::versioned_packet;

include!("../../fuzz/checks/codec.rs");

/// A valid packet of any type, encoded, then damaged at up to three random bytes of its body.
fn damaged() -> impl Strategy<Value = (ProtocolVersion, u8, Vec<u8>)> {
    (
        versioned_packet(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..=3),
    )
        .prop_map(|((version, packet), damage)| {
            let version = match &packet {
                Packet::Connect(c) => c.protocol,
                _ => version,
            };
            let mut wire = BytesMut::new();
            packet.encode(version, &mut wire).unwrap();
            let Ok(Status::Complete(h)) = read_fixed_header(&wire, Some(version), u32::MAX) else {
                panic!("an encoded packet has a whole fixed header");
            };
            let mut body = wire[h.header_length..h.packet_length()].to_vec();
            for (at, byte) in damage {
                if !body.is_empty() {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
            }
            (version, h.first_byte, body)
        })
}

/// Text made of the pieces the topic and filter rules care about.
fn tricky_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        &b"$share/"[..],
        b"g",
        b"/",
        b"+",
        b"#",
        b"a",
        b"\0",
        b"\xC3",
    ]);
    prop::collection::vec(piece, 0..5).prop_map(|p| p.concat())
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// SUBSCRIBE and UNSUBSCRIBE with filters that break (or nearly break) the filter and
    /// shared-subscription syntax: v5 [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1]
    /// [MQTT-4.8.2-1] [MQTT-4.8.2-2] [MQTT-3.8.3-4] [MQTT-3.8.3-5].
    #[test]
    fn packet_ref_agrees_on_filters(
        filters in prop::collection::vec((tricky_text(), any::<u8>()), 1..3),
        v5 in any::<bool>(),
        unsubscribe in any::<bool>(),
    ) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
        let mut body = vec![0x00, 0x01];
        if v5 {
            body.push(0);
        }
        for (f, options) in &filters {
            string(&mut body, f);
            if !unsubscribe {
                body.push(options & 0x2F);
            }
        }
        let first_byte = if unsubscribe { 0xA2 } else { 0x82 };
        codec_checks::packet_ref_agrees(first_byte, &body, version);
    }

    /// CONNECT with a will whose topic and payload break (or nearly break) the rules, and
    /// any flags: v5 [MQTT-3.1.2-3] [MQTT-3.1.2-11] [MQTT-3.1.2-12] [MQTT-3.1.2-13]
    /// [MQTT-3.1.3-11] [MQTT-3.3.2-2].
    #[test]
    fn packet_ref_agrees_on_connect(
        flags in any::<u8>(),
        client_id in tricky_text(),
        topic in tricky_text(),
        user in tricky_text(),
        v5 in any::<bool>(),
    ) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
        let mut body = Vec::new();
        string(&mut body, b"MQTT");
        body.push(if v5 { 5 } else { 4 });
        body.push(flags);
        body.extend_from_slice(&[0, 60]);
        if v5 {
            body.push(0);
        }
        string(&mut body, &client_id);
        if flags & 0x04 != 0 {
            if v5 {
                body.push(0);
            }
            string(&mut body, &topic);
            string(&mut body, b"payload");
        }
        if flags & 0x80 != 0 {
            string(&mut body, &user);
        }
        if flags & 0x40 != 0 {
            string(&mut body, b"pw");
        }
        codec_checks::packet_ref_agrees(0x10, &body, version);
    }

    // v5 [MQTT-1.5.4-1] [MQTT-1.5.4-2] [MQTT-2.1.3-1] [MQTT-3.1.2-3] [MQTT-3.8.3-4]
    // [MQTT-4.7.1-1] [MQTT-4.8.2-1] and every other rule the decoders share.
    #[test]
    fn packet_ref_agrees_with_packet((version, first_byte, body) in damaged()) {
        codec_checks::packet_ref_agrees(first_byte, &body, version);
    }

    /// Any bytes at all, after any first byte.
    #[test]
    fn packet_ref_agrees_on_any_bytes(
        first_byte in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..48),
        v5 in any::<bool>(),
    ) {
        let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V3_1_1 };
        codec_checks::packet_ref_agrees(first_byte, &body, version);
    }

    /// Valid packets decode to the same packet through both decoders, and the borrowed one
    /// never fails where the owned one succeeds.
    #[test]
    fn every_valid_packet_decodes_borrowed((version, packet) in versioned_packet()) {
        let version = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => version,
        };
        let mut wire = BytesMut::new();
        packet.encode(version, &mut wire).unwrap();
        let mut decoder = Decoder::with_version(version);
        let Status::Complete((r, used)) = decoder.decode_ref(&wire).unwrap() else {
            panic!("a whole packet");
        };
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(r.to_packet(), packet);
    }
}

/// The views read the fields of each packet type.
#[test]
fn views_read_their_fields() {
    let v5 = ProtocolVersion::V5;
    // SUBSCRIBE 5.0: id 7, Subscription Identifier 3, "$share/g/a" with QoS 1 and "b/#" with
    // No Local and Retain Handling 2.
    let wire = [
        0x82, 0x18, 0x00, 0x07, 0x02, 0x0B, 0x03, 0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e',
        b'/', b'g', b'/', b'a', 0x01, 0x00, 0x03, b'b', b'/', b'#', 0x24,
    ];
    let mut decoder = Decoder::with_version(v5);
    let Status::Complete((PacketRef::Subscribe(s), n)) = decoder.decode_ref(&wire).unwrap() else {
        panic!("a SUBSCRIBE");
    };
    assert_eq!(n, wire.len());
    assert_eq!(s.packet_id.get(), 7);
    assert_eq!(
        s.properties.get(PropertyId::SubscriptionIdentifier),
        Some(PropertyValue::VariableByteInteger(3))
    );
    let filters: Vec<_> = s.filters().collect();
    assert_eq!(filters.len(), 2);
    assert_eq!(filters[0].0, "$share/g/a");
    assert_eq!(filters[0].1.qos, mqtt_codec::QoS::AtLeastOnce);
    assert_eq!(filters[1].0, "b/#");
    assert!(filters[1].1.no_local);
    assert_eq!(
        filters[1].1.retain_handling,
        mqtt_codec::RetainHandling::DoNotSend
    );

    // SUBACK 5.0: id 7, Reason String "r", codes 1 and 0x87.
    let wire = [
        0x90, 0x09, 0x00, 0x07, 0x04, 0x1F, 0x00, 0x01, b'r', 0x01, 0x87,
    ];
    let Status::Complete((PacketRef::SubAck(a), _)) = decoder.decode_ref(&wire).unwrap() else {
        panic!("a SUBACK");
    };
    assert_eq!(a.properties.reason_string(), Some("r"));
    assert_eq!(
        a.reason_codes().collect::<Vec<_>>(),
        [ReasonCode(1), ReasonCode(0x87)]
    );

    // A 3.1.1 CONNECT with a will, a user name and a password: the decoder learns the version.
    let mut connect = mqtt_codec::Connect::new(
        ProtocolVersion::V3_1_1,
        mqtt_codec::Utf8String::try_from("c1").unwrap(),
    );
    connect.will = Some(mqtt_codec::Will {
        topic: mqtt_codec::TopicName::try_from("w/t").unwrap(),
        payload: bytes::Bytes::from_static(b"bye"),
        qos: mqtt_codec::QoS::AtLeastOnce,
        retain: true,
        properties: mqtt_codec::Properties::default(),
    });
    connect.username = Some(mqtt_codec::Utf8String::try_from("u").unwrap());
    connect.password = Some(bytes::Bytes::from_static(b"secret"));
    let mut wire = BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(ProtocolVersion::V3_1_1, &mut wire)
        .unwrap();
    let mut server = Decoder::new();
    let Status::Complete((PacketRef::Connect(c), _)) = server.decode_ref(&wire).unwrap() else {
        panic!("a CONNECT");
    };
    assert_eq!(server.version(), Some(ProtocolVersion::V3_1_1));
    assert_eq!(c.client_id, "c1");
    let will = c.will().unwrap();
    assert_eq!(
        (will.topic, will.payload, will.retain),
        ("w/t", &b"bye"[..], true)
    );
    assert_eq!(c.username(), Some("u"));
    assert_eq!(c.password(), Some(&b"secret"[..]));
    // The password is not in the Debug output.
    let debug = format!("{c:?}");
    assert!(!debug.contains("secret"), "{debug}");
}

/// The borrowed decoder names the same rules as the owned one.
#[test]
fn mqtt_3_8_3_4_no_local_on_a_shared_subscription_is_refused_borrowed() {
    // v5 [MQTT-3.8.3-4]: SUBSCRIBE "$share/g/a" with No Local.
    let body = [
        0x00, 0x01, 0x00, 0x00, 0x0A, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/', b'a',
        0x04,
    ];
    let err = PacketRef::decode(0x82, &body, ProtocolVersion::V5).unwrap_err();
    assert_eq!(err.violation(), Violation::NoLocalOnSharedSubscription);
    assert_eq!(err.packet_type(), Some(PacketType::Subscribe));
    codec_checks::packet_ref_agrees(0x82, &body, ProtocolVersion::V5);
}

#[test]
fn mqtt_2_1_3_1_reserved_flags_are_refused_borrowed() {
    // v5 [MQTT-2.1.3-1]: a PUBACK with flags 0b0001.
    let err = PacketRef::decode(0x41, &[0x00, 0x01], ProtocolVersion::V5).unwrap_err();
    assert_eq!(err.violation(), Violation::ReservedFlags);
}

/// A property list converts in its own packet's context, and says so when asked for another.
#[test]
fn properties_ref_converts_in_its_own_context() {
    // CONNACK 5.0 with Receive Maximum 10.
    let body = [0x00, 0x00, 0x03, 0x21, 0x00, 0x0A];
    let Ok(PacketRef::ConnAck(c)) = PacketRef::decode(0x20, &body, ProtocolVersion::V5) else {
        panic!("a CONNACK");
    };
    let ctx = mqtt_codec::PropertyContext::Packet(PacketType::ConnAck);
    let props = c.properties.to_properties_in(ctx).unwrap();
    assert_eq!(props.receive_maximum.map(|v| v.get()), Some(10));
    // Receive Maximum is not a PUBLISH property (section 2.2.2.2).
    let publish = mqtt_codec::PropertyContext::Packet(PacketType::Publish);
    assert_eq!(
        c.properties.to_properties_in(publish),
        Err(Violation::PropertyNotAllowed)
    );
}

/// The will is read in the CONNECT's own version, whatever the caller does to `protocol`.
#[test]
fn connect_ref_reads_its_will_in_its_own_version() {
    let mut connect = mqtt_codec::Connect::new(
        ProtocolVersion::V5,
        mqtt_codec::Utf8String::try_from("c").unwrap(),
    );
    let will_props = mqtt_codec::Properties {
        will_delay_interval: Some(5),
        ..Default::default()
    };
    connect.will = Some(mqtt_codec::Will {
        topic: mqtt_codec::TopicName::try_from("w").unwrap(),
        payload: bytes::Bytes::from_static(b"x"),
        qos: mqtt_codec::QoS::AtMostOnce,
        retain: false,
        properties: will_props,
    });
    let packet = Packet::Connect(Box::new(connect));
    let mut wire = BytesMut::new();
    packet.encode(ProtocolVersion::V5, &mut wire).unwrap();
    let Status::Complete((PacketRef::Connect(mut c), _)) =
        Decoder::new().decode_ref(&wire).unwrap()
    else {
        panic!("a CONNECT");
    };
    c.protocol = ProtocolVersion::V3_1_1;
    let will = c.will().unwrap();
    assert_eq!((will.topic, will.payload), ("w", &b"x"[..]));
    c.protocol = ProtocolVersion::V5;
    assert_eq!(PacketRef::Connect(c).to_packet(), packet);
}
