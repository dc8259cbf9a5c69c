//! MQTT 3.1.1 (and the 3.1 CONNECT) hex vectors: every packet type decoded from bytes written by
//! hand, re-encoded byte for byte, and the malformed packets the specification describes rejected
//! with the right statement and reason code.
// Test code: a failed unwrap, index or panic in a helper is a failed test (the workspace denies
// them for library code, and clippy's `allow-*-in-tests` only covers `#[test]` functions).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use bytes::{Bytes, BytesMut};
use common::{
    assert_encode_refused, assert_prefixes_incomplete, assert_rejected, decode_bytewise, decode_ok,
    decode_one, encode, hex, roundtrip,
};
use mqtt_codec::{
    Auth, ConnAck, Connect, Decoder, Disconnect, Error, Packet, PacketId, PacketType,
    ProtocolVersion, PubAck, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Utf8String, Violation, Will,
};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

/// Unwraps one variant of [`Packet`].
macro_rules! variant {
    ($packet:expr, $variant:ident) => {
        match $packet {
            Packet::$variant(p) => p,
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

/// A canonical MQTT 3.1.1 vector on an established connection: decodes and re-encodes to itself.
fn valid(h: &str) -> Packet {
    roundtrip(Some(V311), h)
}

/// A canonical CONNECT, decoded by a server's decoder (which learns the version from it).
fn valid_connect(h: &str) -> Connect {
    *variant!(roundtrip(None, h), Connect)
}

/// A malformed MQTT 3.1.1 vector on an established connection.
#[track_caller]
fn malformed(h: &str, violation: Violation, statement: Option<&str>, reason: ReasonCode) -> Error {
    let err = assert_rejected(Some(V311), h, violation, statement, reason);
    assert_eq!(err.version(), Some(V311));
    err
}

/// A malformed 3.1.1 CONNECT, decoded by a server's decoder.
#[track_caller]
fn malformed_connect(
    h: &str,
    violation: Violation,
    statement: Option<&str>,
    reason: ReasonCode,
) -> Error {
    let err = assert_rejected(None, h, violation, statement, reason);
    assert_eq!(err.packet_type(), Some(PacketType::Connect));
    err
}

fn s(text: &str) -> Utf8String {
    Utf8String::try_from(text).unwrap()
}

fn id(value: u16) -> PacketId {
    PacketId::new(value).unwrap()
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::try_from(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// CONNECT (3.1.1 and 3.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_minimal() {
    // CONNECT "MQTT" level 4, Clean Session, Keep Alive 60, empty Client Identifier.
    let c = valid_connect("10 0C 0004 4D515454 04 02 003C 0000");
    assert_eq!(c.protocol, V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "");
    assert!(c.properties.is_empty());
    assert_eq!((c.will, c.username, c.password), (None, None, None));
}

// v3.1.1 [MQTT-3.1.3-1]: the payload's fields in their order (decoded, and re-encoded byte for
// byte).
#[test]
fn connect_with_will_user_name_and_password() {
    // CONNECT flags 0xF6 (User Name, Password, Will Retain, Will QoS 2, Will, Clean Session),
    // Client Identifier "c", Will Topic "w", Will Message "m", User Name "u", Password "p".
    let c = valid_connect(
        "10 19 0004 4D515454 04 F6 003C
         0001 63  0001 77  0001 6D  0001 75  0001 70",
    );
    assert_eq!(c.client_id, "c");
    let will = c.will.unwrap();
    assert_eq!((will.qos, will.retain), (QoS::ExactlyOnce, true));
    assert_eq!(will.topic, "w");
    assert_eq!(will.payload, Bytes::from_static(b"m"));
    assert!(will.properties.is_empty());
    assert_eq!(c.username.unwrap(), "u");
    assert_eq!(c.password.unwrap(), Bytes::from_static(b"p"));
}

#[test]
fn connect_will_qos1_and_user_name_only() {
    // CONNECT flags 0x8E (User Name, Will QoS 1, Will, Clean Session), keep alive 0,
    // Client Identifier "c", Will Topic "w", Will Message "m", User Name "u".
    let c = valid_connect("10 16 0004 4D515454 04 8E 0000 0001 63 0001 77 0001 6D 0001 75");
    assert_eq!(c.keep_alive, 0);
    let will = c.will.unwrap();
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, false));
    assert_eq!(c.username.unwrap(), "u");
    assert_eq!(c.password, None);
}

#[test]
fn connect_without_clean_session() {
    // CONNECT flags 0x00, Keep Alive 10, Client Identifier "abc".
    let c = valid_connect("10 0F 0004 4D515454 04 00 000A 0003 616263");
    assert!(!c.clean_start);
    assert_eq!(c.client_id, "abc");
}

#[test]
fn connect_mqtt_3_1() {
    // CONNECT "MQIsdp" level 3, Clean Session, Keep Alive 60, Client Identifier "c".
    let c = valid_connect("10 0F 0006 4D5149736470 03 02 003C 0001 63");
    assert_eq!(c.protocol, ProtocolVersion::V3_1);
    assert_eq!(c.client_id, "c");
}

#[test]
fn server_decoder_takes_the_version_from_the_connect() {
    // A 3.1.1 CONNECT, then a PUBACK with a v5 reason code: trailing bytes in 3.1.1.
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(&hex("10 0C 0004 4D515454 04 02 003C 0000  40 03 0001 10")[..]);
    assert!(matches!(
        decoder.decode(&mut buf).unwrap(),
        Some(Packet::Connect(_))
    ));
    assert_eq!(decoder.version(), Some(V311));
    let err = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(err.violation(), Violation::TrailingBytes);
    assert_eq!(err.version(), Some(V311));
}

#[test]
fn mqtt_3_1_connection_is_decoded_as_3_1_1() {
    // A 3.1 CONNECT, then a PUBLISH without a Property Length, then AUTH (reserved before 5.0).
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(&hex("10 0F 0006 4D5149736470 03 02 003C 0001 63")[..]);
    assert!(decoder.decode(&mut buf).unwrap().is_some());
    assert_eq!(decoder.version(), Some(ProtocolVersion::V3_1));
    buf.extend_from_slice(&hex("30 05 0003 612F62"));
    let p = variant!(decoder.decode(&mut buf).unwrap().unwrap(), Publish);
    assert_eq!((p.topic.as_utf8().as_str(), p.payload.len()), ("a/b", 0));
    buf.extend_from_slice(&hex("F0 00"));
    assert_eq!(
        decoder.decode(&mut buf).unwrap_err().violation(),
        Violation::InvalidPacketType
    );
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_accepted() {
    // CONNACK, return code 0; then with Session Present.
    assert_eq!(
        variant!(valid("20 02 00 00"), ConnAck),
        ConnAck::new(false, ReasonCode::SUCCESS)
    );
    assert_eq!(
        variant!(valid("20 02 01 00"), ConnAck),
        ConnAck::new(true, ReasonCode::SUCCESS)
    );
}

#[test]
fn connack_return_codes_map_to_reason_codes() {
    // CONNACK return codes 1 to 5 travel as the v5 reason codes that mean the same.
    for (code, reason) in [
        (1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION), // 0x84
        (2, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),  // 0x85
        (3, ReasonCode::SERVER_UNAVAILABLE),           // 0x88
        (4, ReasonCode::BAD_USER_NAME_OR_PASSWORD),    // 0x86
        (5, ReasonCode::NOT_AUTHORIZED),               // 0x87
    ] {
        let a = variant!(valid(&format!("20 02 00 {code:02X}")), ConnAck);
        assert_eq!(a, ConnAck::new(false, reason), "return code {code}");
    }
}

// ---------------------------------------------------------------------------------------------
// PUBLISH and its acknowledgements
// ---------------------------------------------------------------------------------------------

#[test]
fn publish_qos0() {
    // PUBLISH QoS 0 "a/b", payload "hi" (no Property Length in 3.1.1).
    let p = variant!(valid("30 07 0003 612F62 6869"), Publish);
    assert_eq!(
        (p.dup, p.qos, p.retain, p.packet_id),
        (false, QoS::AtMostOnce, false, None)
    );
    assert_eq!(p.topic, "a/b");
    assert_eq!(p.payload, Bytes::from_static(b"hi"));
}

#[test]
fn publish_qos1_retain() {
    // PUBLISH QoS 1 RETAIN "a/b", Packet Identifier 10, payload "hi".
    let p = variant!(valid("33 09 0003 612F62 000A 6869"), Publish);
    assert_eq!((p.qos, p.retain), (QoS::AtLeastOnce, true));
    assert_eq!(p.packet_id, PacketId::new(10));
}

#[test]
fn publish_qos2_dup() {
    // PUBLISH DUP QoS 2 "a/b", Packet Identifier 11, empty payload.
    let p = variant!(valid("3C 07 0003 612F62 000B"), Publish);
    assert_eq!((p.dup, p.qos, p.retain), (true, QoS::ExactlyOnce, false));
    assert_eq!(p.packet_id, PacketId::new(11));
    assert!(p.payload.is_empty());
}

// v3.1.1 [MQTT-1.5.3-3]
#[test]
fn v311_mqtt_1_5_3_3_publish_topic_keeps_a_leading_byte_order_mark() {
    // PUBLISH QoS 0, Topic Name EF BB BF 61 (U+FEFF "a"), no payload.
    let p = variant!(valid("30 06 0004 EFBBBF61"), Publish);
    assert_eq!(p.topic, "\u{FEFF}a");
}

#[test]
fn publish_acknowledgements() {
    // PUBACK, PUBREC, PUBREL (flags 0010) and PUBCOMP, each with Packet Identifier 0x1234.
    let a = variant!(valid("40 02 1234"), PubAck);
    assert_eq!(a, PubAck::new(id(0x1234)));
    let r = variant!(valid("50 02 1234"), PubRec);
    assert_eq!(
        (r.packet_id, r.reason_code),
        (id(0x1234), ReasonCode::SUCCESS)
    );
    let r = variant!(valid("62 02 1234"), PubRel);
    assert_eq!(r.packet_id, id(0x1234));
    let c = variant!(valid("70 02 1234"), PubComp);
    assert_eq!(c.packet_id, id(0x1234));
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PING, DISCONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_three_filters() {
    // SUBSCRIBE id 10: "a/b" QoS 1, "c/d" QoS 2, "#" QoS 0.
    let sub = variant!(
        valid("82 12 000A 0003 612F62 01 0003 632F64 02 0001 23 00"),
        Subscribe
    );
    assert_eq!(sub.packet_id, id(10));
    assert_eq!(
        sub.filters,
        vec![
            (filter("a/b"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            (filter("c/d"), SubscriptionOptions::qos(QoS::ExactlyOnce)),
            (filter("#"), SubscriptionOptions::qos(QoS::AtMostOnce)),
        ]
    );
}

#[test]
fn suback_return_codes() {
    // SUBACK id 10: return codes 0x00, 0x01, 0x02 and 0x80 (Failure).
    let a = variant!(valid("90 06 000A 00 01 02 80"), SubAck);
    assert_eq!(
        a.reason_codes,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::UNSPECIFIED_ERROR
        ]
    );
}

#[test]
fn unsubscribe_two_filters() {
    // UNSUBSCRIBE id 11: "a/b", "c/+".
    let u = variant!(valid("A2 0C 000B 0003 612F62 0003 632F2B"), Unsubscribe);
    assert_eq!(u.packet_id, id(11));
    assert_eq!(u.filters, vec![filter("a/b"), filter("c/+")]);
}

#[test]
fn unsuback() {
    // UNSUBACK id 11: only the Packet Identifier in 3.1.1.
    let a = variant!(valid("B0 02 000B"), UnsubAck);
    assert_eq!(a.packet_id, id(11));
    assert!(a.reason_codes.is_empty());
}

#[test]
fn pingreq_pingresp_disconnect() {
    // PINGREQ, PINGRESP, DISCONNECT.
    assert_eq!(valid("C0 00"), Packet::PingReq);
    assert_eq!(valid("D0 00"), Packet::PingResp);
    assert_eq!(valid("E0 00"), Packet::Disconnect(Disconnect::default()));
}

#[test]
fn non_minimal_remaining_length_is_accepted_in_3_1_1() {
    // PINGREQ with Remaining Length 0 written as 80 00: only MQTT 5.0 requires the minimal
    // encoding; the encoder writes it minimal.
    let p = decode_ok(Some(V311), "C0 8000");
    assert_eq!(p, Packet::PingReq);
    assert_eq!(encode(&p, V311), hex("C0 00"));
}

#[test]
fn share_prefix_is_an_ordinary_topic_level_in_3_1_1() {
    // SUBSCRIBE id 1 "$share/g" QoS 0: two ordinary levels in 3.1.1.
    let sub = variant!(valid("82 0D 0001 0008 2473686172652F67 00"), Subscribe);
    assert_eq!(sub.filters[0].0, "$share/g");
    // UNSUBSCRIBE id 1 "$share//a": three levels, the second empty.
    let u = variant!(valid("A2 0D 0001 0009 2473686172652F2F61"), Unsubscribe);
    assert_eq!(u.filters[0], "$share//a");
}

// ---------------------------------------------------------------------------------------------
// Fixed header
// ---------------------------------------------------------------------------------------------

// v3.1.1 [MQTT-2.2.2-1] [MQTT-2.2.2-2]
#[test]
fn v311_mqtt_2_2_2_1_reserved_flags_must_be_zero() {
    // Each packet type whose flags are all reserved as 0, with one flag bit set.
    for h in [
        "21 02 00 00",   // CONNACK
        "41 02 0001",    // PUBACK
        "52 02 0001",    // PUBREC
        "78 02 0001",    // PUBCOMP
        "91 03 0001 00", // SUBACK
        "B1 02 0001",    // UNSUBACK
        "C2 00",         // PINGREQ
        "D1 00",         // PINGRESP
    ] {
        malformed(h, Violation::ReservedFlags, Some("MQTT-2.2.2-1"), MALFORMED);
    }
    // CONNECT with flags 1000.
    malformed_connect(
        "18 0C 0004 4D515454 04 02 003C 0000",
        Violation::ReservedFlags,
        Some("MQTT-2.2.2-1"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.6.1-1]
#[test]
fn v311_mqtt_3_6_1_1_pubrel_flags_must_be_0010() {
    // PUBREL id 1 with flags 0000 and 0011.
    for h in ["60 02 0001", "63 02 0001"] {
        malformed(h, Violation::ReservedFlags, Some("MQTT-3.6.1-1"), MALFORMED);
    }
}

// v3.1.1 [MQTT-3.8.1-1]
#[test]
fn v311_mqtt_3_8_1_1_subscribe_flags_must_be_0010() {
    // SUBSCRIBE id 1 "a" QoS 0 with flags 0000.
    malformed(
        "80 06 0001 0001 61 00",
        Violation::ReservedFlags,
        Some("MQTT-3.8.1-1"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.10.1-1]
#[test]
fn v311_mqtt_3_10_1_1_unsubscribe_flags_must_be_0010() {
    // UNSUBSCRIBE id 1 "a" with flags 0011.
    malformed(
        "A3 05 0001 0001 61",
        Violation::ReservedFlags,
        Some("MQTT-3.10.1-1"),
        MALFORMED,
    );
}

#[test]
fn disconnect_reserved_flags_are_malformed() {
    // DISCONNECT with flags 0001 (the statement named is checked below).
    let err = decode_one(Some(V311), "E1 00").unwrap_err();
    assert_eq!(err.violation(), Violation::ReservedFlags);
    assert_eq!(err.reason_code(), MALFORMED);
}

// v3.1.1 [MQTT-3.14.1-1]
#[test]
fn v311_mqtt_3_14_1_1_disconnect_reserved_flags_name_their_statement() {
    // DISCONNECT with flags 0001.
    malformed(
        "E1 00",
        Violation::ReservedFlags,
        Some("MQTT-3.14.1-1"),
        MALFORMED,
    );
}

#[test]
fn packet_type_0_is_rejected() {
    // First byte 0x00: the reserved packet type 0.
    malformed("00 00", Violation::InvalidPacketType, None, MALFORMED);
}

#[test]
fn auth_packet_type_is_reserved_in_3_1_1() {
    // AUTH (type 15) does not exist before MQTT 5.0; refused from its first byte.
    malformed("F0 00", Violation::InvalidPacketType, None, MALFORMED);
    let err = Decoder::with_version(V311)
        .decode_bytes(&hex("F0"))
        .unwrap_err();
    assert_eq!(err.violation(), Violation::InvalidPacketType);
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

// v3.1.1 [MQTT-3.3.1-4]
#[test]
fn v311_mqtt_3_3_1_4_publish_qos_3_is_rejected() {
    // PUBLISH with both QoS bits set (flags 0110), "a/b" id 1.
    malformed(
        "36 07 0003 612F62 0001",
        Violation::InvalidQos,
        Some("MQTT-3.3.1-4"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.3.1-2]
#[test]
fn v311_mqtt_3_3_1_2_dup_with_qos_0_is_rejected() {
    // PUBLISH flags 1000 (DUP at QoS 0), "a/b".
    malformed(
        "38 05 0003 612F62",
        Violation::DupWithQos0,
        Some("MQTT-3.3.1-2"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-2.3.1-1]
#[test]
fn v311_mqtt_2_3_1_1_packet_identifier_0_is_rejected() {
    let v = Violation::PacketIdZero;
    // PUBLISH QoS 1 "a/b" with Packet Identifier 0.
    malformed("32 07 0003 612F62 0000", v, Some("MQTT-2.3.1-1"), PROTOCOL);
    // SUBSCRIBE with Packet Identifier 0, "a" QoS 0.
    malformed("82 06 0000 0001 61 00", v, Some("MQTT-2.3.1-1"), PROTOCOL);
    // UNSUBSCRIBE with Packet Identifier 0, "a".
    malformed("A2 05 0000 0001 61", v, Some("MQTT-2.3.1-1"), PROTOCOL);
}

#[test]
fn puback_packet_identifier_0_is_rejected() {
    // PUBACK with Packet Identifier 0.
    malformed(
        "40 02 0000",
        Violation::PacketIdZero,
        Some("MQTT-2.3.1-1"),
        PROTOCOL,
    );
}

// v3.1.1 [MQTT-3.3.2-2] [MQTT-4.7.1-1]
#[test]
fn v311_mqtt_3_3_2_2_publish_topic_with_wildcard_is_rejected() {
    // PUBLISH QoS 0 with Topic Name "a/+", then "#".
    for h in ["30 05 0003 612F2B", "30 03 0001 23"] {
        malformed(
            h,
            Violation::TopicNameWildcard,
            Some("MQTT-3.3.2-2"),
            ReasonCode::TOPIC_NAME_INVALID,
        );
    }
}

// v3.1.1 [MQTT-4.7.3-1]
#[test]
fn v311_mqtt_4_7_3_1_empty_topic_name_is_rejected() {
    // PUBLISH QoS 0 with an empty Topic Name, then with payload "hi".
    for h in ["30 02 0000", "30 04 0000 6869"] {
        malformed(h, Violation::TopicNameEmpty, Some("MQTT-4.7.3-1"), PROTOCOL);
    }
}

// v3.1.1 [MQTT-1.5.3-1] [MQTT-3.3.2-1]
#[test]
fn v311_mqtt_1_5_3_1_ill_formed_utf8_topic_is_rejected() {
    for h in [
        "30 04 0002 61FF",   // "a" then 0xFF
        "30 05 0003 EDA080", // ED A0 80: the surrogate U+D800
        "30 04 0002 C0AF",   // an overlong "/"
    ] {
        malformed(h, Violation::InvalidUtf8, Some("MQTT-1.5.3-1"), MALFORMED);
    }
}

// v3.1.1 [MQTT-1.5.3-2] [MQTT-4.7.3-2]
#[test]
fn v311_mqtt_1_5_3_2_null_character_in_topic_is_rejected() {
    // PUBLISH QoS 0 with Topic Name "a" U+0000 "b".
    malformed(
        "30 05 0003 610062",
        Violation::NullCharacter,
        Some("MQTT-1.5.3-2"),
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

// v3.1.1 [MQTT-1.5.3-1] [MQTT-3.1.3-4]
#[test]
fn v311_mqtt_3_1_3_4_surrogate_in_client_identifier_is_rejected() {
    // CONNECT with Client Identifier ED A0 80 (U+D800).
    malformed_connect(
        "10 0F 0004 4D515454 04 02 003C 0003 EDA080",
        Violation::InvalidUtf8,
        Some("MQTT-1.5.3-1"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-1.5.3-1] [MQTT-3.1.3-10]
#[test]
fn v311_mqtt_3_1_3_10_ill_formed_will_topic_is_rejected() {
    // CONNECT flags 0x06 (Will, Clean Session), empty Client Identifier, Will Topic C3 28.
    malformed_connect(
        "10 12 0004 4D515454 04 06 003C 0000 0002 C328 0000",
        Violation::InvalidUtf8,
        Some("MQTT-1.5.3-1"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-1.5.3-2] [MQTT-3.1.3-11]
#[test]
fn v311_mqtt_3_1_3_11_null_character_in_user_name_is_rejected() {
    // CONNECT flags 0x82 (User Name, Clean Session), User Name "u" U+0000 "v".
    malformed_connect(
        "10 11 0004 4D515454 04 82 003C 0000 0003 750076",
        Violation::NullCharacter,
        Some("MQTT-1.5.3-2"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.2-1]
#[test]
fn v311_mqtt_3_1_2_1_wrong_protocol_name_is_rejected() {
    // CONNECT with protocol name "MQTX" at level 4.
    malformed_connect(
        "10 0C 0004 4D515458 04 02 003C 0000",
        Violation::ProtocolNameInvalid,
        Some("MQTT-3.1.2-1"),
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    );
}

// v3.1.1 [MQTT-3.1.2-2]
#[test]
fn v311_mqtt_3_1_2_2_unsupported_protocol_level_is_rejected() {
    let code = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    let v = Violation::UnsupportedProtocolVersion;
    // CONNECT "MQTT" level 6.
    malformed_connect(
        "10 0C 0004 4D515454 06 02 003C 0000",
        v,
        Some("MQTT-3.1.2-2"),
        code,
    );
    // CONNECT "MQIsdp" level 4, then "MQTT" level 3: the name does not go with the level.
    malformed_connect(
        "10 0E 0006 4D5149736470 04 02 003C 0000",
        v,
        Some("MQTT-3.1.2-2"),
        code,
    );
    malformed_connect(
        "10 0C 0004 4D515454 03 02 003C 0000",
        v,
        Some("MQTT-3.1.2-2"),
        code,
    );
}

// v3.1.1 [MQTT-3.1.2-3]
#[test]
fn v311_mqtt_3_1_2_3_connect_reserved_flag_is_rejected() {
    // CONNECT flags 0x03 (Clean Session and the reserved bit).
    malformed_connect(
        "10 0C 0004 4D515454 04 03 003C 0000",
        Violation::ConnectReservedFlag,
        Some("MQTT-3.1.2-3"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.2-13] [MQTT-3.1.2-11]
#[test]
fn v311_mqtt_3_1_2_13_will_qos_without_will_flag_is_rejected() {
    // CONNECT flags 0x0A (Will QoS 1 without Will).
    malformed_connect(
        "10 0C 0004 4D515454 04 0A 003C 0000",
        Violation::WillQosWithoutWill,
        Some("MQTT-3.1.2-13"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.2-15] [MQTT-3.1.2-11]
#[test]
fn v311_mqtt_3_1_2_15_will_retain_without_will_flag_is_rejected() {
    // CONNECT flags 0x22 (Will Retain without Will).
    malformed_connect(
        "10 0C 0004 4D515454 04 22 003C 0000",
        Violation::WillRetainWithoutWill,
        Some("MQTT-3.1.2-15"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.2-14]
#[test]
fn v311_mqtt_3_1_2_14_will_qos_3_is_rejected() {
    // CONNECT flags 0x1E (Will QoS 3, Will, Clean Session), Will Topic "w", Will Message "m".
    malformed_connect(
        "10 12 0004 4D515454 04 1E 003C 0000 0001 77 0001 6D",
        Violation::WillQosInvalid,
        Some("MQTT-3.1.2-14"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.2-22]
#[test]
fn v311_mqtt_3_1_2_22_password_without_user_name_is_rejected() {
    // CONNECT flags 0x42 (Password, Clean Session), Password "pw" (valid in MQTT 5.0).
    malformed_connect(
        "10 10 0004 4D515454 04 42 003C 0000 0002 7077",
        Violation::PasswordWithoutUserName,
        Some("MQTT-3.1.2-22"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.2-9]
#[test]
fn v311_mqtt_3_1_2_9_missing_will_fields_are_rejected() {
    // CONNECT flags 0x06 (Will, Clean Session) ending after the Client Identifier, then after
    // the Will Topic "w".
    for h in [
        "10 0C 0004 4D515454 04 06 003C 0000",
        "10 0F 0004 4D515454 04 06 003C 0000 0001 77",
    ] {
        malformed_connect(h, Violation::Truncated, None, MALFORMED);
    }
}

// v3.1.1 [MQTT-3.1.2-19]
#[test]
fn v311_mqtt_3_1_2_19_missing_user_name_is_rejected() {
    // CONNECT flags 0x82 (User Name, Clean Session) ending after the Client Identifier.
    malformed_connect(
        "10 0C 0004 4D515454 04 82 003C 0000",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.2-21]
#[test]
fn v311_mqtt_3_1_2_21_missing_password_is_rejected() {
    // CONNECT flags 0xC2 (User Name, Password, Clean Session) ending after the User Name "u".
    malformed_connect(
        "10 0F 0004 4D515454 04 C2 003C 0000 0001 75",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

#[test]
fn connect_with_v5_properties_is_rejected_at_level_4() {
    // CONNECT level 4 followed by a v5 Property Length 0: the Client Identifier length is then
    // read as 00 00 and one byte is left over.
    malformed_connect(
        "10 0D 0004 4D515454 04 02 003C 00 0000",
        Violation::TrailingBytes,
        None,
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_reserved_flags_are_rejected() {
    // CONNACK acknowledge flags 0x02 (bits 7-1 are reserved; 3.1.1 has no statement for it).
    malformed(
        "20 02 02 00",
        Violation::ConnAckReservedFlags,
        None,
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.2.2-4]
#[test]
fn v311_mqtt_3_2_2_4_session_present_with_non_zero_return_code_is_rejected() {
    // CONNACK Session Present with return code 1, then 5.
    for h in ["20 02 01 01", "20 02 01 05"] {
        malformed(
            h,
            Violation::SessionPresentOnError,
            Some("MQTT-3.2.2-4"),
            PROTOCOL,
        );
    }
}

#[test]
fn connack_unknown_return_code_is_rejected() {
    // CONNACK return code 6 (reserved), then 0x84 (a v5 reason code, not a 3.1.1 return code).
    for h in ["20 02 00 06", "20 02 00 84"] {
        malformed(h, Violation::InvalidReasonCode, None, MALFORMED);
    }
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE
// ---------------------------------------------------------------------------------------------

#[test]
fn misplaced_wildcards_are_rejected() {
    // SUBSCRIBE id 1 "a/#/b", then "a+"; UNSUBSCRIBE id 1 "a/#/b", then "a+" (statements below).
    for (h, v) in [
        (
            "82 0A 0001 0005 612F232F62 00",
            Violation::MultiLevelWildcardMisplaced,
        ),
        (
            "82 07 0001 0002 612B 00",
            Violation::SingleLevelWildcardMisplaced,
        ),
        (
            "A2 09 0001 0005 612F232F62",
            Violation::MultiLevelWildcardMisplaced,
        ),
        (
            "A2 06 0001 0002 612B",
            Violation::SingleLevelWildcardMisplaced,
        ),
    ] {
        let err = decode_one(Some(V311), h).unwrap_err();
        assert_eq!(err.violation(), v, "{h}");
        assert_eq!(err.reason_code(), ReasonCode::TOPIC_FILTER_INVALID, "{h}");
    }
}

// v3.1.1 [MQTT-4.7.1-2]
#[test]
fn v311_mqtt_4_7_1_2_misplaced_multi_level_wildcard_is_rejected() {
    let code = ReasonCode::TOPIC_FILTER_INVALID;
    let v = Violation::MultiLevelWildcardMisplaced;
    // SUBSCRIBE id 1 "a/#/b" QoS 0; UNSUBSCRIBE id 1 "a/#/b".
    malformed(
        "82 0A 0001 0005 612F232F62 00",
        v,
        Some("MQTT-4.7.1-2"),
        code,
    );
    malformed("A2 09 0001 0005 612F232F62", v, Some("MQTT-4.7.1-2"), code);
}

// v3.1.1 [MQTT-4.7.1-3]
#[test]
fn v311_mqtt_4_7_1_3_single_level_wildcard_not_filling_a_level_is_rejected() {
    let code = ReasonCode::TOPIC_FILTER_INVALID;
    let v = Violation::SingleLevelWildcardMisplaced;
    // SUBSCRIBE id 1 "a+" QoS 0; UNSUBSCRIBE id 1 "a+".
    malformed("82 07 0001 0002 612B 00", v, Some("MQTT-4.7.1-3"), code);
    malformed("A2 06 0001 0002 612B", v, Some("MQTT-4.7.1-3"), code);
}

// v3.1.1 [MQTT-4.7.3-1]
#[test]
fn v311_mqtt_4_7_3_1_empty_topic_filter_is_rejected() {
    let code = ReasonCode::TOPIC_FILTER_INVALID;
    // SUBSCRIBE id 1 with an empty filter, QoS 0; UNSUBSCRIBE id 1 with an empty filter.
    malformed(
        "82 05 0001 0000 00",
        Violation::TopicFilterEmpty,
        Some("MQTT-4.7.3-1"),
        code,
    );
    malformed(
        "A2 04 0001 0000",
        Violation::TopicFilterEmpty,
        Some("MQTT-4.7.3-1"),
        code,
    );
}

// v3.1.1 [MQTT-1.5.3-1] [MQTT-3.8.3-1]
#[test]
fn v311_mqtt_3_8_3_1_ill_formed_topic_filter_is_rejected() {
    // SUBSCRIBE id 1 with filter ED A0 80 (a surrogate), QoS 0.
    malformed(
        "82 08 0001 0003 EDA080 00",
        Violation::InvalidUtf8,
        Some("MQTT-1.5.3-1"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.8.3-3]
#[test]
fn v311_mqtt_3_8_3_3_subscribe_without_filters_is_rejected() {
    // SUBSCRIBE id 1 with no payload.
    malformed(
        "82 02 0001",
        Violation::SubscribeWithoutFilters,
        Some("MQTT-3.8.3-3"),
        PROTOCOL,
    );
}

// v3.1.1 [MQTT-3.10.3-2]
#[test]
fn v311_mqtt_3_10_3_2_unsubscribe_without_filters_is_rejected() {
    // UNSUBSCRIBE id 1 with no payload.
    malformed(
        "A2 02 0001",
        Violation::UnsubscribeWithoutFilters,
        Some("MQTT-3.10.3-2"),
        PROTOCOL,
    );
}

#[test]
fn subscription_options_bits_2_to_7_are_reserved() {
    // SUBSCRIBE id 1 "a" with each of bits 2 to 7 set (v5's No Local, Retain As Published,
    // Retain Handling and reserved bits).
    for bit in 2..8 {
        malformed(
            &format!("82 06 0001 0001 61 {:02X}", 1u8 << bit),
            Violation::SubscriptionOptionsReserved,
            None,
            MALFORMED,
        );
    }
}

#[test]
fn subscription_qos_3_is_rejected() {
    // SUBSCRIBE id 1 "a" with requested QoS 3.
    malformed(
        "82 06 0001 0001 61 03",
        Violation::SubscriptionQosInvalid,
        None,
        PROTOCOL,
    );
}

#[test]
fn suback_reserved_return_code_is_rejected() {
    // SUBACK id 1 with return code 0x03, then 0x87 (a v5 reason code only).
    for h in ["90 03 0001 03", "90 03 0001 87"] {
        let err = decode_one(Some(V311), h).unwrap_err();
        assert_eq!(err.violation(), Violation::InvalidReasonCode, "{h}");
        assert_eq!(err.reason_code(), MALFORMED, "{h}");
    }
}

// v3.1.1 [MQTT-3.9.3-2]
#[test]
fn v311_mqtt_3_9_3_2_suback_reserved_return_code_names_its_statement() {
    // SUBACK id 1 with return code 0x03.
    malformed(
        "90 03 0001 03",
        Violation::InvalidReasonCode,
        Some("MQTT-3.9.3-2"),
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.8.4-5]
#[test]
fn v311_mqtt_3_8_4_5_suback_without_return_codes_is_rejected() {
    // SUBACK id 1 with no return code.
    malformed(
        "90 02 0001",
        Violation::AckWithoutReasonCodes,
        Some("MQTT-3.8.4-5"),
        PROTOCOL,
    );
}

// ---------------------------------------------------------------------------------------------
// Lengths and framing
// ---------------------------------------------------------------------------------------------

#[test]
fn trailing_bytes_are_rejected() {
    for h in [
        "40 03 0001 00",  // PUBACK with a (v5) reason code
        "50 03 0001 00",  // PUBREC with a reason code
        "62 03 0001 00",  // PUBREL with a reason code
        "70 03 0001 00",  // PUBCOMP with a reason code
        "B0 03 0001 00",  // UNSUBACK with a (v5) reason code
        "20 03 00 00 00", // CONNACK with a (v5) Property Length
        "C0 01 00",       // PINGREQ with a body
        "E0 01 00",       // DISCONNECT with a (v5) reason code
    ] {
        malformed(h, Violation::TrailingBytes, None, MALFORMED);
    }
}

#[test]
fn field_running_past_remaining_length_is_rejected() {
    for h in [
        "32 05 0003 612F62",  // PUBLISH QoS 1 without its Packet Identifier
        "30 03 0005 61",      // PUBLISH whose Topic Name claims 5 bytes
        "82 05 0001 0001 61", // SUBSCRIBE filter "a" without its QoS byte
        "B0 01 00",           // UNSUBACK with half a Packet Identifier
    ] {
        malformed(h, Violation::Truncated, None, MALFORMED);
    }
    // CONNECT whose Client Identifier claims 5 bytes and has 2.
    malformed_connect(
        "10 0E 0004 4D515454 04 02 003C 0005 6162",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

// v3.1.1 [MQTT-3.1.0-1]
#[test]
fn v311_mqtt_3_1_0_1_first_packet_must_be_connect() {
    // A 3.1.1 SUBSCRIBE, then a CONNACK, to a server's decoder that has not seen a CONNECT.
    for h in ["82 06 0001 0001 61 00", "20 02 00 00"] {
        assert_rejected(
            None,
            h,
            Violation::FirstPacketNotConnect,
            Some("MQTT-3.1.0-1"),
            PROTOCOL,
        );
    }
}

#[test]
fn packet_larger_than_maximum_is_refused_from_the_fixed_header() {
    let mut decoder = Decoder::with_version(V311).max_packet_size(16);
    // Only the fixed header of a PUBLISH of 2 + 15 = 17 bytes.
    let err = decoder.decode_bytes(&hex("30 0F")).unwrap_err();
    assert_eq!(err.violation(), Violation::PacketTooLarge);
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // 2 + 14 = 16 bytes is allowed.
    assert!(matches!(
        decoder.decode_bytes(&hex("30 0E")),
        Ok(mqtt_codec::Status::Incomplete(_))
    ));
}

const STREAM: &[&str] = &[
    "10 19 0004 4D515454 04 F6 003C 0001 63 0001 77 0001 6D 0001 75 0001 70", // CONNECT
    "82 0E 000A 0003 612F62 01 0003 632F64 02",                               // SUBSCRIBE
    "3C 07 0003 612F62 000B",                                                 // PUBLISH QoS 2 DUP
    "62 02 000B",                                                             // PUBREL
    "A2 07 000C 0003 612F62",                                                 // UNSUBSCRIBE
    "C0 00",                                                                  // PINGREQ
    "E0 00",                                                                  // DISCONNECT
];

#[test]
fn stream_fed_byte_by_byte_yields_the_same_packets() {
    let expected: Vec<Packet> = STREAM
        .iter()
        .enumerate()
        .map(|(i, h)| decode_ok(if i == 0 { None } else { Some(V311) }, h))
        .collect();
    let stream: Vec<u8> = STREAM.iter().flat_map(|h| hex(h)).collect();
    assert_eq!(decode_bytewise(None, &stream), expected);
}

#[test]
fn every_strict_prefix_is_incomplete() {
    assert_prefixes_incomplete(None, STREAM[0]);
    for h in &STREAM[1..] {
        assert_prefixes_incomplete(Some(V311), h);
    }
    // The 3.1 CONNECT.
    assert_prefixes_incomplete(None, "10 0F 0006 4D5149736470 03 02 003C 0001 63");
}

// ---------------------------------------------------------------------------------------------
// Encoder refusals: what 3.1.1 cannot carry
// ---------------------------------------------------------------------------------------------

fn publish() -> Publish {
    Publish::new(TopicName::try_from("a/b").unwrap(), &b"hi"[..])
}

#[test]
fn encoder_refuses_properties_in_3_1_1() {
    let mut p = publish();
    p.properties.message_expiry_interval = Some(10);
    assert_encode_refused(&Packet::Publish(p), V311, Violation::NotRepresentable);
    let mut c = Connect::new(V311, s("c"));
    c.properties.session_expiry_interval = Some(10);
    assert_encode_refused(&Packet::from(c), V311, Violation::NotRepresentable);
    let mut ack = PubAck::new(id(1));
    ack.properties.set_reason_string(Some(s("x")));
    assert_encode_refused(&Packet::PubAck(ack), V311, Violation::NotRepresentable);
}

#[test]
fn encoder_refuses_will_properties_in_3_1_1() {
    let mut c = Connect::new(V311, s("c"));
    let mut will = Will {
        topic: TopicName::try_from("w").unwrap(),
        payload: Bytes::from_static(b"m"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = Some(5);
    c.will = Some(will);
    assert_encode_refused(&Packet::from(c), V311, Violation::NotRepresentable);
}

#[test]
fn encoder_refuses_non_success_reason_codes_in_3_1_1() {
    let mut ack = PubAck::new(id(1));
    ack.reason_code = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    assert_encode_refused(&Packet::PubAck(ack), V311, Violation::NotRepresentable);
    let d = Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE);
    assert_encode_refused(&Packet::Disconnect(d), V311, Violation::NotRepresentable);
    let u = UnsubAck {
        packet_id: id(1),
        properties: Default::default(),
        reason_codes: vec![ReasonCode::SUCCESS],
    };
    assert_encode_refused(&Packet::UnsubAck(u), V311, Violation::NotRepresentable);
}

#[test]
fn encoder_refuses_codes_without_a_3_1_1_value() {
    // CONNACK 0x8A Banned has no 3.1.1 return code; SUBACK 0x87 is not a 3.1.1 return code.
    let ack = ConnAck::new(false, ReasonCode::BANNED);
    assert_encode_refused(&Packet::ConnAck(ack), V311, Violation::InvalidReasonCode);
    let sub = SubAck {
        packet_id: id(1),
        properties: Default::default(),
        reason_codes: vec![ReasonCode::NOT_AUTHORIZED],
    };
    assert_encode_refused(&Packet::SubAck(sub), V311, Violation::InvalidReasonCode);
}

#[test]
fn encoder_refuses_auth_in_3_1_1() {
    assert_encode_refused(
        &Packet::Auth(Auth::default()),
        V311,
        Violation::NotRepresentable,
    );
}

#[test]
fn encoder_refuses_v5_subscription_options_in_3_1_1() {
    for opts in [
        SubscriptionOptions {
            no_local: true,
            ..SubscriptionOptions::default()
        },
        SubscriptionOptions {
            retain_as_published: true,
            ..SubscriptionOptions::default()
        },
        SubscriptionOptions {
            retain_handling: RetainHandling::DoNotSend,
            ..SubscriptionOptions::default()
        },
    ] {
        let sub = Subscribe {
            packet_id: id(1),
            properties: Default::default(),
            filters: vec![(filter("a"), opts)],
        };
        assert_encode_refused(&Packet::Subscribe(sub), V311, Violation::NotRepresentable);
    }
}

#[test]
fn encoder_refuses_password_without_user_name_in_3_1_1() {
    let mut c = Connect::new(V311, s("c"));
    c.password = Some(Bytes::from_static(b"pw"));
    assert_encode_refused(&Packet::from(c), V311, Violation::PasswordWithoutUserName);
}

#[test]
fn encoder_refuses_publish_qos1_without_packet_id() {
    let mut p = publish();
    p.qos = QoS::AtLeastOnce;
    assert_encode_refused(&Packet::Publish(p), V311, Violation::PacketIdMismatch);
}

#[test]
fn encoder_refuses_subscribe_without_filters() {
    let sub = Subscribe {
        packet_id: id(1),
        properties: Default::default(),
        filters: vec![],
    };
    assert_encode_refused(
        &Packet::Subscribe(sub),
        V311,
        Violation::SubscribeWithoutFilters,
    );
}

#[test]
fn encode_limited_refuses_a_packet_over_the_maximum_size() {
    // PUBLISH QoS 0 "a/b" "hi" is 9 bytes in 3.1.1.
    let p = Packet::Publish(publish());
    let mut buf = BytesMut::new();
    let err = p.encode_limited(V311, 8, &mut buf).unwrap_err();
    assert_eq!(err.violation(), Violation::PacketTooLarge);
    assert!(buf.is_empty());
    assert_eq!(p.encode_limited(V311, 9, &mut buf).unwrap(), 9);
    assert_eq!(buf.freeze(), hex("30 07 0003 612F62 6869"));
}

#[test]
fn encoder_writes_a_3_1_connect_on_a_3_1_1_connection() {
    // The 3.1 CONNECT is written with its own name and level.
    let c = Packet::from(Connect::new(ProtocolVersion::V3_1, s("c")));
    assert_eq!(
        encode(&c, V311),
        hex("10 0F 0006 4D5149736470 03 02 003C 0001 63")
    );
}
