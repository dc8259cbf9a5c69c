//! MQTT 5.0 hex vectors: every packet type decoded from bytes written by hand (from the figures of
//! the specification where it gives them), re-encoded byte for byte, and the malformed packets the
//! specification describes rejected with the right statement and reason code.
// Test code: a failed unwrap, index or panic in a helper is a failed test (the workspace denies
// them for library code, and clippy's `allow-*-in-tests` only covers `#[test]` functions).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use common::{
    assert_encode_refused, assert_prefixes_incomplete, assert_rejected, decode_bytewise, decode_ok,
    decode_one, encode, hex, roundtrip,
};
use mqtt_codec::{
    Auth, ConnAck, Connect, Decoder, Disconnect, Error, Packet, PacketId, PacketType,
    PayloadFormatIndicator, ProtocolVersion, PubAck, Publish, QoS, ReasonCode, RetainHandling,
    Status, SubAck, Subscribe, SubscriptionOptions, TopicFilter, TopicName, UnsubAck, Utf8String,
    Violation,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
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

/// A canonical MQTT 5.0 vector on an established connection: decodes and re-encodes to itself.
fn valid(h: &str) -> Packet {
    roundtrip(Some(V5), h)
}

/// A canonical CONNECT, decoded by a server's decoder (which learns the version from it).
fn valid_connect(h: &str) -> Connect {
    let c = *variant!(roundtrip(None, h), Connect);
    assert_eq!(c.protocol, V5);
    c
}

/// A malformed MQTT 5.0 vector on an established connection.
#[track_caller]
fn malformed(h: &str, violation: Violation, statement: Option<&str>, reason: ReasonCode) -> Error {
    let err = assert_rejected(Some(V5), h, violation, statement, reason);
    assert_eq!(err.version(), Some(V5));
    err
}

/// A malformed CONNECT, decoded by a server's decoder.
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

fn pid(id: u16) -> Option<PacketId> {
    PacketId::new(id)
}

fn filter(text: &str) -> TopicFilter {
    TopicFilter::try_from(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

// v5 [MQTT-2.2.2-1]: no properties is a Property Length of zero (the `00` after Keep Alive),
// and re-encoding writes it.
#[test]
fn connect_minimal() {
    // CONNECT "MQTT" level 5, Clean Start, Keep Alive 60, no properties, empty Client Identifier.
    let c = valid_connect("10 0D 0004 4D515454 05 02 003C 00 0000");
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert!(c.properties.is_empty());
    assert_eq!(c.client_id, "");
    assert_eq!((c.will, c.username, c.password), (None, None, None));
}

// v5 [MQTT-3.1.3-1]: the payload's fields in their order (decoded, and re-encoded byte for byte).
#[test]
fn connect_figure_3_6_with_will_user_name_and_password() {
    // The variable header of Figure 3-6 (flags 0xCE: User Name, Password, Will QoS 1, Will,
    // Clean Start; Keep Alive 10; Session Expiry Interval 10), then the payload: Client Identifier
    // "cid1", Will Properties (Will Delay Interval 30), Will Topic "w/t", Will Payload "by",
    // User Name "user", Password "pw".
    let c = valid_connect(
        "10 2F
         0004 4D515454 05 CE 000A 05 11 0000000A
         0004 63696431
         05 18 0000001E
         0003 772F74
         0002 6279
         0004 75736572
         0002 7077",
    );
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.properties.session_expiry_interval, Some(10));
    assert_eq!(c.client_id, "cid1");
    let will = c.will.unwrap();
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, false));
    assert_eq!(will.properties.will_delay_interval, Some(30));
    assert_eq!(will.topic, "w/t");
    assert_eq!(will.payload, Bytes::from_static(b"by"));
    assert_eq!(c.username.unwrap(), "user");
    assert_eq!(c.password.unwrap(), Bytes::from_static(b"pw"));
}

#[test]
fn connect_with_every_connect_property() {
    // CONNECT with Session Expiry 60, Authentication Method "m", Authentication Data 01 02,
    // Request Problem Information 0, Request Response Information 1, Receive Maximum 10,
    // Topic Alias Maximum 5, User Property k=v, Maximum Packet Size 4096; Client Identifier "c".
    let c = valid_connect(
        "10 32 0004 4D515454 05 02 003C
         24 11 0000003C  15 0001 6D  16 0002 0102  17 00  19 01  21 000A  22 0005
            26 0001 6B 0001 76  27 00001000
         0001 63",
    );
    let p = &c.properties;
    assert_eq!(p.session_expiry_interval, Some(60));
    assert_eq!(p.authentication_method().unwrap(), "m");
    assert_eq!(p.authentication_data(), Some(&[1, 2][..]));
    assert_eq!(p.request_problem_information, Some(false));
    assert_eq!(p.request_response_information, Some(true));
    assert_eq!(p.receive_maximum, NonZeroU16::new(10));
    assert_eq!(p.topic_alias_maximum, Some(5));
    assert_eq!(p.user_properties().collect::<Vec<_>>(), [("k", "v")]);
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(4096));
    assert_eq!(c.client_id, "c");
}

#[test]
fn connect_will_with_every_will_property() {
    // CONNECT flags 0x36 (Will Retain, Will QoS 2, Will, Clean Start), empty Client Identifier,
    // Will Properties: Payload Format Indicator 1, Message Expiry 10, Content Type "t",
    // Response Topic "r", Correlation Data 01, Will Delay 5, User Property k=v;
    // Will Topic "w", empty Will Payload.
    let c = valid_connect(
        "10 32 0004 4D515454 05 36 003C 00
         0000
         1F 01 01  02 0000000A  03 0001 74  08 0001 72  09 0001 01  18 00000005
            26 0001 6B 0001 76
         0001 77
         0000",
    );
    let will = c.will.unwrap();
    assert_eq!((will.qos, will.retain), (QoS::ExactlyOnce, true));
    assert_eq!(will.topic, "w");
    assert!(will.payload.is_empty());
    let p = &will.properties;
    assert_eq!(
        p.payload_format_indicator,
        Some(PayloadFormatIndicator::Utf8)
    );
    assert_eq!(p.message_expiry_interval, Some(10));
    assert_eq!(p.content_type().unwrap(), "t");
    assert_eq!(p.response_topic().unwrap(), "r");
    assert_eq!(p.correlation_data(), Some(&[1][..]));
    assert_eq!(p.will_delay_interval, Some(5));
    assert_eq!(p.user_properties().collect::<Vec<_>>(), [("k", "v")]);
}

#[test]
fn connect_user_name_without_password() {
    // CONNECT flags 0x82 (User Name, Clean Start), Client Identifier "c", User Name "u1".
    let c = valid_connect("10 12 0004 4D515454 05 82 003C 00 0001 63 0002 7531");
    assert_eq!(c.username.unwrap(), "u1");
    assert_eq!(c.password, None);
}

#[test]
fn connect_password_without_user_name_is_valid_in_v5() {
    // CONNECT flags 0x42 (Password, Clean Start), empty Client Identifier, Password "pw".
    let c = valid_connect("10 11 0004 4D515454 05 42 003C 00 0000 0002 7077");
    assert_eq!(c.username, None);
    assert_eq!(c.password.unwrap(), Bytes::from_static(b"pw"));
}

#[test]
fn server_decoder_learns_v5_from_connect() {
    // A v5 CONNECT, then a PUBACK with a reason code (RL 3), only valid in v5.
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(&hex("10 0D 0004 4D515454 05 02 003C 00 0000  40 03 0001 10")[..]);
    assert!(matches!(
        decoder.decode(&mut buf).unwrap(),
        Some(Packet::Connect(_))
    ));
    assert_eq!(decoder.version(), Some(V5));
    let ack = variant!(decoder.decode(&mut buf).unwrap().unwrap(), PubAck);
    assert_eq!(ack.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_success_without_properties() {
    // CONNACK: no flags, Success, Property Length 0.
    let a = variant!(valid("20 03 00 00 00"), ConnAck);
    assert_eq!(a, ConnAck::new(false, ReasonCode::SUCCESS));
}

#[test]
fn connack_session_present_with_server_properties() {
    // CONNACK Session Present, Success, with Session Expiry 10, Assigned Client Identifier "id",
    // Server Keep Alive 30, Receive Maximum 20, Topic Alias Maximum 10, Maximum QoS 1,
    // Retain Available 0, Maximum Packet Size 1024, Wildcard 1, Subscription Identifiers 1,
    // Shared Subscriptions 0.
    let a = variant!(
        valid(
            "20 25 01 00
             22 11 0000000A  12 0002 6964  13 001E  21 0014  22 000A  24 01  25 00
                27 00000400  28 01  29 01  2A 00",
        ),
        ConnAck
    );
    assert!(a.session_present);
    assert_eq!(a.reason_code, ReasonCode::SUCCESS);
    let p = &a.properties;
    assert_eq!(p.session_expiry_interval, Some(10));
    assert_eq!(p.assigned_client_identifier().unwrap(), "id");
    assert_eq!(p.server_keep_alive, Some(30));
    assert_eq!(p.receive_maximum, NonZeroU16::new(20));
    assert_eq!(p.topic_alias_maximum, Some(10));
    assert_eq!(p.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(p.retain_available, Some(false));
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(1024));
    assert_eq!(p.wildcard_subscription_available, Some(true));
    assert_eq!(p.subscription_identifier_available, Some(true));
    assert_eq!(p.shared_subscription_available, Some(false));
}

#[test]
fn connack_refusal_with_reason_string() {
    // CONNACK 0x87 Not authorized, Reason String "nope".
    let a = variant!(valid("20 0A 00 87 07 1F 0004 6E6F7065"), ConnAck);
    assert!(!a.session_present);
    assert_eq!(a.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(a.properties.reason_string().unwrap(), "nope");
}

#[test]
fn connack_server_moved_with_server_reference() {
    // CONNACK 0x9D Server moved, Server Reference "host".
    let a = variant!(valid("20 0A 00 9D 07 1C 0004 686F7374"), ConnAck);
    assert_eq!(a.reason_code, ReasonCode::SERVER_MOVED);
    assert_eq!(a.properties.server_reference().unwrap(), "host");
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

#[test]
fn publish_qos0() {
    // PUBLISH QoS 0 "a/b", no properties, payload "hi".
    let p = variant!(valid("30 08 0003 612F62 00 6869"), Publish);
    assert_eq!((p.dup, p.qos, p.retain), (false, QoS::AtMostOnce, false));
    assert_eq!(p.topic, "a/b");
    assert_eq!(p.packet_id, None);
    assert!(p.properties.is_empty());
    assert_eq!(p.payload, Bytes::from_static(b"hi"));
}

#[test]
fn publish_qos1_figure_3_9() {
    // The variable header of Figure 3-9 ("a/b", Packet Identifier 10, no properties), payload "hi".
    let p = variant!(valid("32 0A 0003 612F62 000A 00 6869"), Publish);
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(p.packet_id, pid(10));
    assert_eq!(p.payload, Bytes::from_static(b"hi"));
}

#[test]
fn publish_qos2_dup_retain() {
    // PUBLISH flags 0xD (DUP, QoS 2, RETAIN), "a/b", Packet Identifier 11, payload "hi".
    let p = variant!(valid("3D 0A 0003 612F62 000B 00 6869"), Publish);
    assert_eq!((p.dup, p.qos, p.retain), (true, QoS::ExactlyOnce, true));
    assert_eq!(p.packet_id, pid(11));
}

#[test]
fn publish_qos1_retain_with_empty_payload() {
    // PUBLISH QoS 1 RETAIN "a/b", Packet Identifier 1, no properties, no payload.
    let p = variant!(valid("33 08 0003 612F62 0001 00"), Publish);
    assert_eq!((p.qos, p.retain), (QoS::AtLeastOnce, true));
    assert!(p.payload.is_empty());
}

#[test]
fn publish_with_every_publish_property() {
    // PUBLISH QoS 1 "a/b" id 1 with Payload Format 1, Message Expiry 60, Content Type "json",
    // Response Topic "r/t", Correlation Data C0DE, Subscription Identifier 5, Topic Alias 7,
    // User Properties b=1 and a=2; payload "hi".
    let p = variant!(
        valid(
            "32 36 0003 612F62 0001
             2C 01 01  02 0000003C  03 0004 6A736F6E  08 0003 722F74  09 0002 C0DE  0B 05
                23 0007  26 0001 62 0001 31  26 0001 61 0001 32
             6869",
        ),
        Publish
    );
    let props = &p.properties;
    assert_eq!(
        props.payload_format_indicator,
        Some(PayloadFormatIndicator::Utf8)
    );
    assert_eq!(props.message_expiry_interval, Some(60));
    assert_eq!(props.content_type().unwrap(), "json");
    assert_eq!(props.response_topic().unwrap(), "r/t");
    assert_eq!(props.correlation_data(), Some(&[0xC0, 0xDE][..]));
    assert_eq!(
        props.subscription_identifiers().collect::<Vec<_>>(),
        vec![5]
    );
    assert_eq!(props.topic_alias, NonZeroU16::new(7));
    assert_eq!(
        props.user_properties().collect::<Vec<_>>(),
        vec![("b", "1"), ("a", "2")]
    );
    assert_eq!(p.payload, Bytes::from_static(b"hi"));
}

#[test]
fn publish_user_properties_keep_their_order_and_duplicates() {
    // PUBLISH QoS 0 "a/b" with User Properties z=1, a=2, z=3 (the same name twice), no payload.
    let p = variant!(
        valid(
            "30 1B 0003 612F62
             15 26 0001 7A 0001 31  26 0001 61 0001 32  26 0001 7A 0001 33",
        ),
        Publish
    );
    assert_eq!(
        p.properties.user_properties().collect::<Vec<_>>(),
        vec![("z", "1"), ("a", "2"), ("z", "3")]
    );
}

#[test]
fn publish_may_repeat_subscription_identifier() {
    // PUBLISH QoS 0 "a/b" with Subscription Identifiers 1 and 128 (two-byte VBI 80 01).
    let p = variant!(valid("30 0B 0003 612F62 05 0B 01 0B 8001"), Publish);
    assert_eq!(
        p.properties.subscription_identifiers().collect::<Vec<_>>(),
        vec![1, 128]
    );
}

#[test]
fn publish_empty_topic_with_topic_alias_is_valid() {
    // PUBLISH QoS 0 with an empty Topic Name and Topic Alias 1, payload "hi".
    let p = variant!(valid("30 08 0000 03 23 0001 6869"), Publish);
    assert_eq!(p.topic, "");
    assert_eq!(p.properties.topic_alias, NonZeroU16::new(1));
}

// v5 [MQTT-1.5.4-3]
#[test]
fn publish_topic_keeps_a_leading_byte_order_mark() {
    // PUBLISH QoS 0, Topic Name EF BB BF 61 (U+FEFF "a").
    let p = variant!(valid("30 07 0004 EFBBBF61 00"), Publish);
    assert_eq!(p.topic, "\u{FEFF}a");
    assert_eq!(p.topic.as_utf8().len(), 4);
}

#[test]
fn publish_topic_figure_1_2_four_byte_character() {
    // PUBLISH QoS 0 with the Topic Name of Figure 1-2: "A" U+2A6D4 (F0 AA 9B 94).
    let p = variant!(valid("30 08 0005 41F0AA9B94 00"), Publish);
    assert_eq!(p.topic, "A\u{2A6D4}");
}

#[test]
fn publish_with_two_byte_remaining_length() {
    // PUBLISH QoS 0 "a/b", 200-byte payload: Remaining Length 206 = CE 01.
    let h = format!("30 CE01 0003 612F62 00 {}", "AB".repeat(200));
    let p = variant!(valid(&h), Publish);
    assert_eq!(p.payload.len(), 200);
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

#[test]
fn puback_short_forms() {
    // PUBACK id 1, Remaining Length 2: Success.
    let a = variant!(valid("40 02 0001"), PubAck);
    assert_eq!(a, PubAck::new(PacketId::new(1).unwrap()));
    // PUBACK id 1, Remaining Length 3: 0x10 No matching subscribers, no Property Length.
    let a = variant!(valid("40 03 0001 10"), PubAck);
    assert_eq!(a.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    assert!(a.properties.is_empty());
}

#[test]
fn puback_with_reason_string_and_user_property() {
    // PUBACK id 1, 0x80 Unspecified error, Reason String "no", User Property k=v.
    let a = variant!(
        valid("40 10 0001 80 0C 1F 0002 6E6F 26 0001 6B 0001 76"),
        PubAck
    );
    assert_eq!(a.reason_code, ReasonCode::UNSPECIFIED_ERROR);
    assert_eq!(a.properties.reason_string().unwrap(), "no");
    assert_eq!(
        a.properties.user_properties().collect::<Vec<_>>(),
        [("k", "v")]
    );
}

#[test]
fn puback_success_in_longer_forms_is_valid() {
    // PUBACK id 1, Success written out (RL 3), and with an empty Property Length (RL 4): both
    // mean the same as RL 2, which is what the encoder writes.
    for h in ["40 03 0001 00", "40 04 0001 00 00"] {
        let a = decode_ok(Some(V5), h);
        assert_eq!(
            a,
            Packet::PubAck(PubAck::new(PacketId::new(1).unwrap())),
            "{h}"
        );
        assert_eq!(encode(&a, V5), hex("40 02 0001"));
    }
}

#[test]
fn pubrec_short_forms_and_properties() {
    // PUBREC id 1 (RL 2).
    let r = variant!(valid("50 02 0001"), PubRec);
    assert_eq!(r.reason_code, ReasonCode::SUCCESS);
    // PUBREC id 1, 0x91 Packet Identifier in use (RL 3).
    let r = variant!(valid("50 03 0001 91"), PubRec);
    assert_eq!(r.reason_code, ReasonCode::PACKET_IDENTIFIER_IN_USE);
    // PUBREC id 2, 0x10 No matching subscribers, Reason String "ok".
    let r = variant!(valid("50 09 0002 10 05 1F 0002 6F6B"), PubRec);
    assert_eq!(r.packet_id.get(), 2);
    assert_eq!(r.properties.reason_string().unwrap(), "ok");
}

#[test]
fn pubrel_short_forms_and_properties() {
    // PUBREL (flags 0010) id 1 (RL 2).
    let r = variant!(valid("62 02 0001"), PubRel);
    assert_eq!((r.packet_id.get(), r.reason_code), (1, ReasonCode::SUCCESS));
    // PUBREL id 1, 0x92 Packet Identifier not found (RL 3).
    let r = variant!(valid("62 03 0001 92"), PubRel);
    assert_eq!(r.reason_code, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
    // PUBREL id 3, Success with Reason String "ok".
    let r = variant!(valid("62 09 0003 00 05 1F 0002 6F6B"), PubRel);
    assert_eq!(r.reason_code, ReasonCode::SUCCESS);
    assert_eq!(r.properties.reason_string().unwrap(), "ok");
}

#[test]
fn pubcomp_short_forms_and_properties() {
    // PUBCOMP id 1 (RL 2).
    let c = variant!(valid("70 02 0001"), PubComp);
    assert_eq!(c.reason_code, ReasonCode::SUCCESS);
    // PUBCOMP id 1, 0x92 Packet Identifier not found (RL 3).
    let c = variant!(valid("70 03 0001 92"), PubComp);
    assert_eq!(c.reason_code, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
    // PUBCOMP id 1, 0x92 with Reason String "x".
    let c = variant!(valid("70 08 0001 92 04 1F 0001 78"), PubComp);
    assert_eq!(c.properties.reason_string().unwrap(), "x");
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn subscribe_figure_3_21() {
    // SUBSCRIBE id 10, no properties, the payload of Figure 3-21: "a/b" QoS 1, "c/d" QoS 2.
    let sub = variant!(
        valid("82 0F 000A 00 0003 612F62 01 0003 632F64 02"),
        Subscribe
    );
    assert_eq!(sub.packet_id.get(), 10);
    assert_eq!(
        sub.filters,
        vec![
            (filter("a/b"), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            (filter("c/d"), SubscriptionOptions::qos(QoS::ExactlyOnce)),
        ]
    );
}

#[test]
fn subscribe_with_every_option_bit_and_subscription_identifier() {
    // SUBSCRIBE id 11, Subscription Identifier 128, User Property k=v;
    // "a/+" options 0x2E (Retain Handling 2, Retain As Published, No Local, QoS 2),
    // "#" options 0x19 (Retain Handling 1, Retain As Published, QoS 1).
    let sub = variant!(
        valid("82 17 000B 0A 0B 8001 26 0001 6B 0001 76 0003 612F2B 2E 0001 23 19"),
        Subscribe
    );
    assert_eq!(
        sub.properties
            .subscription_identifiers()
            .collect::<Vec<_>>(),
        vec![128]
    );
    assert_eq!(
        sub.properties.user_properties().collect::<Vec<_>>(),
        [("k", "v")]
    );
    let all = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    let rap = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: true,
        retain_handling: RetainHandling::SendIfNew,
    };
    assert_eq!(sub.filters, vec![(filter("a/+"), all), (filter("#"), rap)]);
}

#[test]
fn subscribe_retain_handling_values() {
    // SUBSCRIBE id 1: "a" options 0x00, "b" 0x10, "c" 0x20 (Retain Handling 0, 1, 2).
    let sub = variant!(
        valid("82 0F 0001 00 0001 61 00 0001 62 10 0001 63 20"),
        Subscribe
    );
    let handling: Vec<_> = sub.filters.iter().map(|(_, o)| o.retain_handling).collect();
    assert_eq!(
        handling,
        [
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNew,
            RetainHandling::DoNotSend
        ]
    );
}

#[test]
fn subscribe_shared_subscription() {
    // SUBSCRIBE id 1, "$share/g/a/#" QoS 1.
    let sub = variant!(
        valid("82 12 0001 00 000C 2473686172652F672F612F23 01"),
        Subscribe
    );
    assert_eq!(sub.filters[0].0.shared(), Some(("g", "a/#")));
}

#[test]
fn suback_granted_qos() {
    // SUBACK id 10, no properties, Granted QoS 0, 1, 2.
    let a = variant!(valid("90 06 000A 00 00 01 02"), SubAck);
    assert_eq!(
        a.reason_codes,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2
        ]
    );
}

#[test]
fn suback_every_failure_reason_code() {
    // SUBACK id 10, Reason String "x", reason codes 80 83 87 8F 91 97 9E A1 A2.
    let a = variant!(
        valid("90 10 000A 04 1F 0001 78 80 83 87 8F 91 97 9E A1 A2"),
        SubAck
    );
    let codes: Vec<u8> = a.reason_codes.iter().map(|c| c.0).collect();
    assert_eq!(
        codes,
        [0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
    );
    assert_eq!(a.properties.reason_string().unwrap(), "x");
}

#[test]
fn unsubscribe_figure_3_30() {
    // UNSUBSCRIBE id 11, no properties, the payload of Figure 3.30: "a/b", "c/d".
    let u = variant!(valid("A2 0D 000B 00 0003 612F62 0003 632F64"), Unsubscribe);
    assert_eq!(u.packet_id.get(), 11);
    assert_eq!(u.filters, vec![filter("a/b"), filter("c/d")]);
}

#[test]
fn unsubscribe_with_user_property() {
    // UNSUBSCRIBE id 12, User Property k=v, "#".
    let u = variant!(
        valid("A2 0D 000C 07 26 0001 6B 0001 76 0001 23"),
        Unsubscribe
    );
    assert_eq!(
        u.properties.user_properties().collect::<Vec<_>>(),
        [("k", "v")]
    );
    assert_eq!(u.filters, vec![filter("#")]);
}

#[test]
fn unsuback_reason_codes() {
    // UNSUBACK id 11, no properties, Success and 0x11 No subscription existed.
    let a = variant!(valid("B0 05 000B 00 00 11"), UnsubAck);
    assert_eq!(
        a.reason_codes,
        [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
}

#[test]
fn unsuback_every_failure_reason_code() {
    // UNSUBACK id 11, Reason String "x", reason codes 80 83 87 8F 91.
    let a = variant!(valid("B0 0C 000B 04 1F 0001 78 80 83 87 8F 91"), UnsubAck);
    let codes: Vec<u8> = a.reason_codes.iter().map(|c| c.0).collect();
    assert_eq!(codes, [0x80, 0x83, 0x87, 0x8F, 0x91]);
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn pingreq_and_pingresp() {
    // PINGREQ, PINGRESP.
    assert_eq!(valid("C0 00"), Packet::PingReq);
    assert_eq!(valid("D0 00"), Packet::PingResp);
}

#[test]
fn disconnect_short_forms() {
    // DISCONNECT with Remaining Length 0: Normal disconnection.
    assert_eq!(variant!(valid("E0 00"), Disconnect), Disconnect::default());
    // DISCONNECT with Remaining Length 1: 0x04 Disconnect with Will Message.
    let d = variant!(valid("E0 01 04"), Disconnect);
    assert_eq!(d, Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE));
}

#[test]
fn disconnect_figure_3_24() {
    // The variable header of Figure 3-24: Normal disconnection, Session Expiry Interval 0.
    // (The figure labels the Property Length 5 but draws the bits of 7; 5 is right.)
    let d = variant!(valid("E0 07 00 05 11 00000000"), Disconnect);
    assert_eq!(d.reason_code, ReasonCode::NORMAL_DISCONNECTION);
    assert_eq!(d.properties.session_expiry_interval, Some(0));
}

#[test]
fn disconnect_server_moved_with_server_reference() {
    // DISCONNECT 0x9D Server moved, Server Reference "host2".
    let d = variant!(valid("E0 0A 9D 08 1C 0005 686F737432"), Disconnect);
    assert_eq!(d.reason_code, ReasonCode::SERVER_MOVED);
    assert_eq!(d.properties.server_reference().unwrap(), "host2");
}

#[test]
fn disconnect_success_with_empty_property_length_is_valid() {
    // DISCONNECT 0x00 with Property Length 0 (RL 2); the encoder writes the RL 0 form.
    let d = decode_ok(Some(V5), "E0 02 00 00");
    assert_eq!(d, Packet::Disconnect(Disconnect::default()));
    assert_eq!(encode(&d, V5), hex("E0 00"));
}

#[test]
fn auth_short_form() {
    // AUTH with Remaining Length 0: Success, no properties.
    assert_eq!(variant!(valid("F0 00"), Auth), Auth::default());
}

#[test]
fn auth_continue_with_method_and_data() {
    // AUTH 0x18 Continue authentication, Authentication Method "m", Authentication Data AB CD.
    let a = variant!(valid("F0 0B 18 09 15 0001 6D 16 0002 ABCD"), Auth);
    assert_eq!(a.reason_code, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(a.properties.authentication_method().unwrap(), "m");
    assert_eq!(a.properties.authentication_data(), Some(&[0xAB, 0xCD][..]));
}

#[test]
fn auth_reauthenticate_with_reason_string() {
    // AUTH 0x19 Re-authenticate, Authentication Method "m", Reason String "x".
    let a = variant!(valid("F0 0A 19 08 15 0001 6D 1F 0001 78"), Auth);
    assert_eq!(a.reason_code, ReasonCode::RE_AUTHENTICATE);
    assert_eq!(a.properties.reason_string().unwrap(), "x");
}

// ---------------------------------------------------------------------------------------------
// Fixed header: Variable Byte Integers, packet types, reserved flags
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt_1_5_5_1_non_minimal_remaining_length_is_rejected() {
    // PINGREQ with Remaining Length 0 written in two bytes (80 00).
    let e = malformed(
        "C0 8000",
        Violation::VariableByteIntegerNotMinimal,
        Some("MQTT-1.5.5-1"),
        MALFORMED,
    );
    assert_eq!(e.packet_type(), Some(PacketType::PingReq));
    // PUBLISH "a/b" "hi" with Remaining Length 8 written in two bytes (88 00).
    malformed(
        "30 8800 0003 612F62 00 6869",
        Violation::VariableByteIntegerNotMinimal,
        Some("MQTT-1.5.5-1"),
        MALFORMED,
    );
}

#[test]
fn mqtt_1_5_5_1_non_minimal_property_length_is_rejected() {
    // PUBLISH "a/b" with Property Length 0 written as 80 00, payload "hi".
    malformed(
        "30 09 0003 612F62 8000 6869",
        Violation::VariableByteIntegerNotMinimal,
        Some("MQTT-1.5.5-1"),
        MALFORMED,
    );
}

#[test]
fn mqtt_1_5_5_1_non_minimal_subscription_identifier_is_rejected() {
    // SUBSCRIBE id 1 with Subscription Identifier 1 written as 81 00, "a" QoS 0.
    malformed(
        "82 0A 0001 03 0B 8100 0001 61 00",
        Violation::VariableByteIntegerNotMinimal,
        Some("MQTT-1.5.5-1"),
        MALFORMED,
    );
}

#[test]
fn mqtt_1_5_5_1_non_minimal_connect_remaining_length_is_rejected_by_server_decoder() {
    // A v5 CONNECT whose Remaining Length 13 is written as 8D 00, to a server's decoder (which
    // only learns the version from the CONNECT itself).
    let e = malformed_connect(
        "10 8D00 0004 4D515454 05 02 003C 00 0000",
        Violation::VariableByteIntegerNotMinimal,
        Some("MQTT-1.5.5-1"),
        MALFORMED,
    );
    assert_eq!(e.version(), Some(V5));
}

#[test]
fn five_byte_remaining_length_is_rejected() {
    // PUBLISH whose Remaining Length continues into a fifth byte.
    malformed(
        "30 FFFFFFFF7F",
        Violation::VariableByteIntegerTooLong,
        None,
        MALFORMED,
    );
    // The fourth byte still has its continuation bit: refused before the fifth arrives.
    let err = Decoder::with_version(V5)
        .decode_bytes(&hex("30 80808080"))
        .unwrap_err();
    assert_eq!(err.violation(), Violation::VariableByteIntegerTooLong);
}

#[test]
fn packet_type_0_is_rejected() {
    // First byte 0x00: the reserved packet type 0.
    malformed("00 00", Violation::InvalidPacketType, None, MALFORMED);
    // Also to a server's decoder, before anything else.
    assert_rejected(None, "00 00", Violation::InvalidPacketType, None, MALFORMED);
}

// v5 [MQTT-2.1.3-1]
#[test]
fn v5_mqtt_2_1_3_1_reserved_flags_must_be_zero() {
    // Each packet type whose flags are all reserved as 0, with one flag bit set.
    for h in [
        "21 03 00 00 00",   // CONNACK
        "42 02 0001",       // PUBACK
        "58 02 0001",       // PUBREC
        "71 02 0001",       // PUBCOMP
        "94 04 0001 00 00", // SUBACK
        "B2 04 0001 00 00", // UNSUBACK
        "C1 00",            // PINGREQ
        "D4 00",            // PINGRESP
    ] {
        malformed(h, Violation::ReservedFlags, Some("MQTT-2.1.3-1"), MALFORMED);
    }
    // CONNECT with flags 0001.
    malformed_connect(
        "11 0D 0004 4D515454 05 02 003C 00 0000",
        Violation::ReservedFlags,
        Some("MQTT-2.1.3-1"),
        MALFORMED,
    );
}

// v5 [MQTT-3.6.1-1]
#[test]
fn v5_mqtt_3_6_1_1_pubrel_flags_must_be_0010() {
    // PUBREL id 1 with flags 0000, 0011 and 1010.
    for h in ["60 02 0001", "63 02 0001", "6A 02 0001"] {
        malformed(h, Violation::ReservedFlags, Some("MQTT-3.6.1-1"), MALFORMED);
    }
}

// v5 [MQTT-3.8.1-1]
#[test]
fn v5_mqtt_3_8_1_1_subscribe_flags_must_be_0010() {
    // SUBSCRIBE id 1 "a" QoS 0 with flags 0000 and 0011.
    for h in ["80 07 0001 00 0001 61 00", "83 07 0001 00 0001 61 00"] {
        malformed(h, Violation::ReservedFlags, Some("MQTT-3.8.1-1"), MALFORMED);
    }
}

// v5 [MQTT-3.10.1-1]
#[test]
fn v5_mqtt_3_10_1_1_unsubscribe_flags_must_be_0010() {
    // UNSUBSCRIBE id 1 "a" with flags 0000 and 0110.
    for h in ["A0 06 0001 00 0001 61", "A6 06 0001 00 0001 61"] {
        malformed(
            h,
            Violation::ReservedFlags,
            Some("MQTT-3.10.1-1"),
            MALFORMED,
        );
    }
}

// v5 [MQTT-3.15.1-1]
#[test]
fn v5_mqtt_3_15_1_1_auth_flags_must_be_zero() {
    // AUTH with flags 0001 and 1000.
    for h in ["F1 00", "F8 00"] {
        malformed(
            h,
            Violation::ReservedFlags,
            Some("MQTT-3.15.1-1"),
            MALFORMED,
        );
    }
}

#[test]
fn disconnect_reserved_flags_are_malformed() {
    // DISCONNECT with flags 0001 and 0010 (the statement named is checked below).
    for h in ["E1 00", "E2 00"] {
        let err = decode_one(Some(V5), h).unwrap_err();
        assert_eq!(err.violation(), Violation::ReservedFlags, "{h}");
        assert_eq!(err.reason_code(), MALFORMED, "{h}");
    }
}

// v5 [MQTT-3.14.1-1]
#[test]
fn v5_mqtt_3_14_1_1_disconnect_reserved_flags_name_their_statement() {
    // DISCONNECT with flags 0001.
    malformed(
        "E1 00",
        Violation::ReservedFlags,
        Some("MQTT-3.14.1-1"),
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// PUBLISH: flags, packet identifier, topic name
// ---------------------------------------------------------------------------------------------

// v5 [MQTT-3.3.1-4]
#[test]
fn v5_mqtt_3_3_1_4_publish_qos_3_is_rejected() {
    // PUBLISH with both QoS bits set (flags 0110), "a/b" id 1.
    malformed(
        "36 08 0003 612F62 0001 00",
        Violation::InvalidQos,
        Some("MQTT-3.3.1-4"),
        MALFORMED,
    );
}

// v5 [MQTT-3.3.1-2]
#[test]
fn v5_mqtt_3_3_1_2_dup_with_qos_0_is_rejected() {
    // PUBLISH flags 1000 (DUP at QoS 0), "a/b".
    malformed(
        "38 06 0003 612F62 00",
        Violation::DupWithQos0,
        Some("MQTT-3.3.1-2"),
        MALFORMED,
    );
}

// v5 [MQTT-2.2.1-3]
#[test]
fn v5_mqtt_2_2_1_3_packet_identifier_0_is_rejected() {
    // PUBLISH QoS 1 "a/b" with Packet Identifier 0.
    malformed(
        "32 08 0003 612F62 0000 00",
        Violation::PacketIdZero,
        Some("MQTT-2.2.1-3"),
        PROTOCOL,
    );
    // SUBSCRIBE with Packet Identifier 0, "a" QoS 0.
    malformed(
        "82 07 0000 00 0001 61 00",
        Violation::PacketIdZero,
        Some("MQTT-2.2.1-3"),
        PROTOCOL,
    );
    // UNSUBSCRIBE with Packet Identifier 0, "a".
    malformed(
        "A2 06 0000 00 0001 61",
        Violation::PacketIdZero,
        Some("MQTT-2.2.1-3"),
        PROTOCOL,
    );
}

#[test]
fn puback_packet_identifier_0_is_rejected() {
    // PUBACK with Packet Identifier 0 (no PUBLISH can have had it).
    malformed(
        "40 02 0000",
        Violation::PacketIdZero,
        Some("MQTT-2.2.1-3"),
        PROTOCOL,
    );
    // PUBREL with Packet Identifier 0 and a reason code.
    malformed(
        "62 03 0000 92",
        Violation::PacketIdZero,
        Some("MQTT-2.2.1-3"),
        PROTOCOL,
    );
}

// v5 [MQTT-3.3.2-2] [MQTT-4.7.0-1]
#[test]
fn v5_mqtt_3_3_2_2_publish_topic_with_wildcard_is_rejected() {
    // PUBLISH QoS 0 with Topic Name "a/+", then "a/#".
    for h in ["30 06 0003 612F2B 00", "30 06 0003 612F23 00"] {
        malformed(
            h,
            Violation::TopicNameWildcard,
            Some("MQTT-3.3.2-2"),
            ReasonCode::TOPIC_NAME_INVALID,
        );
    }
}

#[test]
fn publish_empty_topic_without_topic_alias_is_a_protocol_error() {
    // PUBLISH QoS 0 with an empty Topic Name and no properties.
    malformed("30 03 0000 00", Violation::TopicNameEmpty, None, PROTOCOL);
    // PUBLISH QoS 0 with an empty Topic Name and a Message Expiry Interval, but no Topic Alias.
    malformed(
        "30 08 0000 05 02 0000000A",
        Violation::TopicNameEmpty,
        None,
        PROTOCOL,
    );
}

// v5 [MQTT-1.5.4-1] [MQTT-3.3.2-1]
#[test]
fn v5_mqtt_1_5_4_1_ill_formed_utf8_topic_is_rejected() {
    for h in [
        "30 05 0002 61FF 00",   // "a" then 0xFF, which never occurs in UTF-8
        "30 06 0003 EDA080 00", // ED A0 80: the surrogate U+D800
        "30 05 0002 C0AF 00",   // C0 AF: an overlong encoding of "/"
        "30 04 0001 C3 00",     // C3: a sequence cut short
    ] {
        malformed(h, Violation::InvalidUtf8, Some("MQTT-1.5.4-1"), MALFORMED);
    }
}

// v5 [MQTT-1.5.4-2] [MQTT-4.7.3-2]
#[test]
fn v5_mqtt_1_5_4_2_null_character_in_topic_is_rejected() {
    // PUBLISH QoS 0 with Topic Name "a" U+0000 "b".
    malformed(
        "30 06 0003 610062 00",
        Violation::NullCharacter,
        Some("MQTT-1.5.4-2"),
        MALFORMED,
    );
}

// v5 [MQTT-1.5.4-1] [MQTT-3.1.3-4]
#[test]
fn v5_mqtt_1_5_4_1_surrogate_in_client_identifier_is_rejected() {
    // CONNECT with Client Identifier ED A0 80 (U+D800).
    malformed_connect(
        "10 10 0004 4D515454 05 02 003C 00 0003 EDA080",
        Violation::InvalidUtf8,
        Some("MQTT-1.5.4-1"),
        MALFORMED,
    );
}

// v5 [MQTT-1.5.4-2] [MQTT-3.1.3-4]
#[test]
fn v5_mqtt_1_5_4_2_null_character_in_client_identifier_is_rejected() {
    // CONNECT with Client Identifier U+0000.
    malformed_connect(
        "10 0E 0004 4D515454 05 02 003C 00 0001 00",
        Violation::NullCharacter,
        Some("MQTT-1.5.4-2"),
        MALFORMED,
    );
}

// v5 [MQTT-1.5.4-1] [MQTT-3.1.3-12]
#[test]
fn v5_mqtt_3_1_3_12_ill_formed_user_name_is_rejected() {
    // CONNECT flags 0x82, empty Client Identifier, User Name FF.
    malformed_connect(
        "10 10 0004 4D515454 05 82 003C 00 0000 0001 FF",
        Violation::InvalidUtf8,
        Some("MQTT-1.5.4-1"),
        MALFORMED,
    );
}

// v5 [MQTT-1.5.7-1] [MQTT-1.5.4-1] [MQTT-1.5.4-2]
#[test]
fn v5_mqtt_1_5_7_1_user_property_strings_must_be_utf8() {
    // PUBLISH "a/b" with a User Property whose name is ED A0 80 (a surrogate), value "v".
    malformed(
        "30 0F 0003 612F62 09 26 0003 EDA080 0001 76",
        Violation::InvalidUtf8,
        Some("MQTT-1.5.4-1"),
        MALFORMED,
    );
    // PUBLISH "a/b" with a User Property k = U+0000.
    malformed(
        "30 0D 0003 612F62 07 26 0001 6B 0001 00",
        Violation::NullCharacter,
        Some("MQTT-1.5.4-2"),
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, UNSUBSCRIBE: topic filters and subscription options
// ---------------------------------------------------------------------------------------------

// v5 [MQTT-4.7.1-1]
#[test]
fn v5_mqtt_4_7_1_1_misplaced_multi_level_wildcard_is_rejected() {
    let code = ReasonCode::TOPIC_FILTER_INVALID;
    let v = Violation::MultiLevelWildcardMisplaced;
    // SUBSCRIBE id 1 "a/#/b" QoS 0, then "a#".
    malformed(
        "82 0B 0001 00 0005 612F232F62 00",
        v,
        Some("MQTT-4.7.1-1"),
        code,
    );
    malformed("82 08 0001 00 0002 6123 00", v, Some("MQTT-4.7.1-1"), code);
    // UNSUBSCRIBE id 1 "a/#/b".
    malformed(
        "A2 0A 0001 00 0005 612F232F62",
        v,
        Some("MQTT-4.7.1-1"),
        code,
    );
}

// v5 [MQTT-4.7.1-2]
#[test]
fn v5_mqtt_4_7_1_2_single_level_wildcard_not_filling_a_level_is_rejected() {
    let code = ReasonCode::TOPIC_FILTER_INVALID;
    let v = Violation::SingleLevelWildcardMisplaced;
    // SUBSCRIBE id 1 "a+" QoS 0, then "a/+b".
    malformed("82 08 0001 00 0002 612B 00", v, Some("MQTT-4.7.1-2"), code);
    malformed(
        "82 0A 0001 00 0004 612F2B62 00",
        v,
        Some("MQTT-4.7.1-2"),
        code,
    );
    // UNSUBSCRIBE id 1 "a+".
    malformed("A2 07 0001 00 0002 612B", v, Some("MQTT-4.7.1-2"), code);
}

// v5 [MQTT-4.7.3-1]
#[test]
fn v5_mqtt_4_7_3_1_empty_topic_filter_is_rejected() {
    let code = ReasonCode::TOPIC_FILTER_INVALID;
    // SUBSCRIBE id 1 with an empty filter, QoS 0.
    malformed(
        "82 06 0001 00 0000 00",
        Violation::TopicFilterEmpty,
        Some("MQTT-4.7.3-1"),
        code,
    );
    // UNSUBSCRIBE id 1 with an empty filter.
    malformed(
        "A2 05 0001 00 0000",
        Violation::TopicFilterEmpty,
        Some("MQTT-4.7.3-1"),
        code,
    );
}

// v5 [MQTT-4.8.2-2]
#[test]
fn v5_mqtt_4_8_2_2_ill_formed_shared_subscription_is_rejected() {
    let code = ReasonCode::TOPIC_FILTER_INVALID;
    let v = Violation::SharedSubscriptionInvalid;
    // SUBSCRIBE id 1 "$share/g" (no "/" after the ShareName).
    malformed(
        "82 0E 0001 00 0008 2473686172652F67 00",
        v,
        Some("MQTT-4.8.2-2"),
        code,
    );
    // SUBSCRIBE id 1 "$share/g/" (no filter after the "/").
    malformed(
        "82 0F 0001 00 0009 2473686172652F672F 00",
        v,
        Some("MQTT-4.8.2-2"),
        code,
    );
    // SUBSCRIBE id 1 "$share/g+/a" (a wildcard in the ShareName).
    malformed(
        "82 11 0001 00 000B 2473686172652F672B2F61 00",
        v,
        Some("MQTT-4.8.2-2"),
        code,
    );
    // UNSUBSCRIBE id 1 "$share/g".
    malformed(
        "A2 0D 0001 00 0008 2473686172652F67",
        v,
        Some("MQTT-4.8.2-2"),
        code,
    );
}

#[test]
fn shared_subscription_with_empty_share_name_is_rejected() {
    // SUBSCRIBE id 1 "$share//a" (the statement named is checked below).
    let err = decode_one(Some(V5), "82 0F 0001 00 0009 2473686172652F2F61 00").unwrap_err();
    assert_eq!(err.violation(), Violation::ShareNameEmpty);
    assert_eq!(err.reason_code(), ReasonCode::TOPIC_FILTER_INVALID);
}

// v5 [MQTT-4.8.2-1]
#[test]
fn v5_mqtt_4_8_2_1_empty_share_name_names_its_statement() {
    // SUBSCRIBE id 1 "$share//a".
    malformed(
        "82 0F 0001 00 0009 2473686172652F2F61 00",
        Violation::ShareNameEmpty,
        Some("MQTT-4.8.2-1"),
        ReasonCode::TOPIC_FILTER_INVALID,
    );
}

// v5 [MQTT-3.8.3-2]
#[test]
fn v5_mqtt_3_8_3_2_subscribe_without_filters_is_rejected() {
    // SUBSCRIBE id 1, no properties, no payload.
    malformed(
        "82 03 0001 00",
        Violation::SubscribeWithoutFilters,
        Some("MQTT-3.8.3-2"),
        PROTOCOL,
    );
}

// v5 [MQTT-3.10.3-2]
#[test]
fn v5_mqtt_3_10_3_2_unsubscribe_without_filters_is_rejected() {
    // UNSUBSCRIBE id 1, no properties, no payload.
    malformed(
        "A2 03 0001 00",
        Violation::UnsubscribeWithoutFilters,
        Some("MQTT-3.10.3-2"),
        PROTOCOL,
    );
}

// v5 [MQTT-3.8.3-5]
#[test]
fn v5_mqtt_3_8_3_5_subscription_options_reserved_bits_are_rejected() {
    // SUBSCRIBE id 1 "a" with options 0x40, 0x80, 0xC1.
    for opts in ["40", "80", "C1"] {
        malformed(
            &format!("82 07 0001 00 0001 61 {opts}"),
            Violation::SubscriptionOptionsReserved,
            Some("MQTT-3.8.3-5"),
            MALFORMED,
        );
    }
}

#[test]
fn subscription_maximum_qos_3_is_a_protocol_error() {
    // SUBSCRIBE id 1 "a" with options 0x03.
    malformed(
        "82 07 0001 00 0001 61 03",
        Violation::SubscriptionQosInvalid,
        None,
        PROTOCOL,
    );
}

#[test]
fn subscription_retain_handling_3_is_a_protocol_error() {
    // SUBSCRIBE id 1 "a" with options 0x30.
    malformed(
        "82 07 0001 00 0001 61 30",
        Violation::RetainHandlingInvalid,
        None,
        PROTOCOL,
    );
}

// v5 [MQTT-3.8.3-4]
#[test]
fn v5_mqtt_3_8_3_4_no_local_on_shared_subscription_is_rejected() {
    // SUBSCRIBE id 1 "$share/g/a" with options 0x04 (No Local).
    malformed(
        "82 10 0001 00 000A 2473686172652F672F61 04",
        Violation::NoLocalOnSharedSubscription,
        Some("MQTT-3.8.3-4"),
        PROTOCOL,
    );
}

// ---------------------------------------------------------------------------------------------
// CONNECT: protocol name and level, flags, payload
// ---------------------------------------------------------------------------------------------

// v5 [MQTT-3.1.2-1]
#[test]
fn v5_mqtt_3_1_2_1_wrong_protocol_name_is_rejected() {
    let code = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    // CONNECT with protocol name "MQTX", then "mqtt".
    for name in ["4D515458", "6D717474"] {
        malformed_connect(
            &format!("10 0D 0004 {name} 05 02 003C 00 0000"),
            Violation::ProtocolNameInvalid,
            Some("MQTT-3.1.2-1"),
            code,
        );
    }
}

// v5 [MQTT-3.1.2-2]
#[test]
fn v5_mqtt_3_1_2_2_unsupported_protocol_level_is_rejected() {
    let code = ReasonCode::UNSUPPORTED_PROTOCOL_VERSION;
    let v = Violation::UnsupportedProtocolVersion;
    // CONNECT "MQTT" level 6.
    malformed_connect(
        "10 0D 0004 4D515454 06 02 003C 00 0000",
        v,
        Some("MQTT-3.1.2-2"),
        code,
    );
    // CONNECT "MQIsdp" level 5: the name does not go with the level.
    malformed_connect(
        "10 0F 0006 4D5149736470 05 02 003C 00 0000",
        v,
        Some("MQTT-3.1.2-2"),
        code,
    );
}

// v5 [MQTT-3.1.2-3]
#[test]
fn v5_mqtt_3_1_2_3_connect_reserved_flag_is_rejected() {
    // CONNECT flags 0x03 (Clean Start and the reserved bit).
    malformed_connect(
        "10 0D 0004 4D515454 05 03 003C 00 0000",
        Violation::ConnectReservedFlag,
        Some("MQTT-3.1.2-3"),
        MALFORMED,
    );
}

// v5 [MQTT-3.1.2-11]
#[test]
fn v5_mqtt_3_1_2_11_will_qos_without_will_flag_is_rejected() {
    // CONNECT flags 0x0A (Will QoS 1 without Will), then 0x12 (Will QoS 2 without Will).
    for flags in ["0A", "12"] {
        malformed_connect(
            &format!("10 0D 0004 4D515454 05 {flags} 003C 00 0000"),
            Violation::WillQosWithoutWill,
            Some("MQTT-3.1.2-11"),
            MALFORMED,
        );
    }
}

// v5 [MQTT-3.1.2-13]
#[test]
fn v5_mqtt_3_1_2_13_will_retain_without_will_flag_is_rejected() {
    // CONNECT flags 0x22 (Will Retain without Will).
    malformed_connect(
        "10 0D 0004 4D515454 05 22 003C 00 0000",
        Violation::WillRetainWithoutWill,
        Some("MQTT-3.1.2-13"),
        MALFORMED,
    );
}

// v5 [MQTT-3.1.2-12]
#[test]
fn v5_mqtt_3_1_2_12_will_qos_3_is_rejected() {
    // CONNECT flags 0x1E (Will QoS 3, Will, Clean Start), will topic "w", empty will payload.
    malformed_connect(
        "10 13 0004 4D515454 05 1E 003C 00 0000 00 0001 77 0000",
        Violation::WillQosInvalid,
        Some("MQTT-3.1.2-12"),
        MALFORMED,
    );
}

// v5 [MQTT-3.1.2-9]
#[test]
fn v5_mqtt_3_1_2_9_missing_will_fields_are_rejected() {
    // CONNECT flags 0x06 (Will, Clean Start) that ends after the Client Identifier.
    malformed_connect(
        "10 0D 0004 4D515454 05 06 003C 00 0000",
        Violation::Truncated,
        None,
        MALFORMED,
    );
    // ... or after the Will Properties.
    malformed_connect(
        "10 0E 0004 4D515454 05 06 003C 00 0000 00",
        Violation::Truncated,
        None,
        MALFORMED,
    );
    // ... or after the Will Topic "w".
    malformed_connect(
        "10 11 0004 4D515454 05 06 003C 00 0000 00 0001 77",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

// v5 [MQTT-3.1.2-17]
#[test]
fn v5_mqtt_3_1_2_17_missing_user_name_is_rejected() {
    // CONNECT flags 0x82 (User Name, Clean Start) that ends after the Client Identifier.
    malformed_connect(
        "10 0D 0004 4D515454 05 82 003C 00 0000",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

// v5 [MQTT-3.1.2-19]
#[test]
fn v5_mqtt_3_1_2_19_missing_password_is_rejected() {
    // CONNECT flags 0xC2 (User Name, Password, Clean Start) that ends after the User Name "u".
    malformed_connect(
        "10 10 0004 4D515454 05 C2 003C 00 0000 0001 75",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

#[test]
fn connect_client_identifier_running_past_remaining_length_is_rejected() {
    // CONNECT whose Client Identifier claims 5 bytes and has 2.
    malformed_connect(
        "10 0F 0004 4D515454 05 02 003C 00 0005 6162",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

// v5 [MQTT-3.2.2-1]
#[test]
fn v5_mqtt_3_2_2_1_connack_reserved_flags_are_rejected() {
    // CONNACK acknowledge flags 0x02, then 0x80.
    for h in ["20 03 02 00 00", "20 03 80 00 00"] {
        malformed(
            h,
            Violation::ConnAckReservedFlags,
            Some("MQTT-3.2.2-1"),
            MALFORMED,
        );
    }
}

// v5 [MQTT-3.2.2-6]
#[test]
fn v5_mqtt_3_2_2_6_session_present_with_error_code_is_rejected() {
    // CONNACK Session Present with 0x80 Unspecified error.
    malformed(
        "20 03 01 80 00",
        Violation::SessionPresentOnError,
        Some("MQTT-3.2.2-6"),
        PROTOCOL,
    );
}

#[test]
fn connack_without_property_length_is_rejected() {
    // CONNACK with Remaining Length 2: v5 has no short form of CONNACK.
    malformed("20 02 00 00", Violation::Truncated, None, MALFORMED);
}

// ---------------------------------------------------------------------------------------------
// Reason codes not defined for the packet
// ---------------------------------------------------------------------------------------------

/// One vector per packet type that carries a reason code, with a code it may not carry, and the
/// statement that requires the sender to use one of that packet's codes.
const UNKNOWN_REASON_CODES: &[(&str, &str)] = &[
    ("20 03 00 03 00", "MQTT-3.2.2-8"),    // CONNACK 0x03
    ("20 03 00 8B 00", "MQTT-3.2.2-8"),    // CONNACK 0x8B (a DISCONNECT code)
    ("40 03 0001 01", "MQTT-3.4.2-1"),     // PUBACK 0x01
    ("40 03 0001 92", "MQTT-3.4.2-1"),     // PUBACK 0x92 (a PUBREL code)
    ("50 03 0001 81", "MQTT-3.5.2-1"),     // PUBREC 0x81
    ("62 03 0001 10", "MQTT-3.6.2-1"),     // PUBREL 0x10 (a PUBACK code)
    ("70 03 0001 80", "MQTT-3.7.2-1"),     // PUBCOMP 0x80
    ("90 04 0001 00 03", "MQTT-3.9.3-2"),  // SUBACK 0x03
    ("B0 04 0001 00 02", "MQTT-3.11.3-2"), // UNSUBACK 0x02
    ("E0 01 01", "MQTT-3.14.2-1"),         // DISCONNECT 0x01
    ("E0 01 84", "MQTT-3.14.2-1"),         // DISCONNECT 0x84 (a CONNACK code)
    ("F0 02 80 00", "MQTT-3.15.2-1"),      // AUTH 0x80
];

#[test]
fn reason_codes_not_defined_for_the_packet_are_rejected() {
    for &(h, _) in UNKNOWN_REASON_CODES {
        let err = decode_one(Some(V5), h).unwrap_err();
        assert_eq!(err.violation(), Violation::InvalidReasonCode, "{h}");
        assert_eq!(err.reason_code(), MALFORMED, "{h}");
    }
}

fn unknown_reason_code(statement: &str) {
    for &(h, s) in UNKNOWN_REASON_CODES.iter().filter(|(_, s)| *s == statement) {
        malformed(h, Violation::InvalidReasonCode, Some(s), MALFORMED);
    }
}

// v5 [MQTT-3.2.2-8]
#[test]
fn v5_mqtt_3_2_2_8_connack_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.2.2-8");
}

// v5 [MQTT-3.4.2-1]
#[test]
fn v5_mqtt_3_4_2_1_puback_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.4.2-1");
}

// v5 [MQTT-3.5.2-1]
#[test]
fn v5_mqtt_3_5_2_1_pubrec_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.5.2-1");
}

// v5 [MQTT-3.6.2-1]
#[test]
fn v5_mqtt_3_6_2_1_pubrel_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.6.2-1");
}

// v5 [MQTT-3.7.2-1]
#[test]
fn v5_mqtt_3_7_2_1_pubcomp_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.7.2-1");
}

// v5 [MQTT-3.9.3-2]
#[test]
fn v5_mqtt_3_9_3_2_suback_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.9.3-2");
}

// v5 [MQTT-3.11.3-2]
#[test]
fn v5_mqtt_3_11_3_2_unsuback_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.11.3-2");
}

// v5 [MQTT-3.14.2-1]
#[test]
fn v5_mqtt_3_14_2_1_disconnect_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.14.2-1");
}

// v5 [MQTT-3.15.2-1]
#[test]
fn v5_mqtt_3_15_2_1_auth_unknown_reason_code_is_rejected() {
    unknown_reason_code("MQTT-3.15.2-1");
}

#[test]
fn suback_and_unsuback_without_reason_codes_are_rejected() {
    // SUBACK id 1, no properties, no reason code.
    malformed(
        "90 03 0001 00",
        Violation::AckWithoutReasonCodes,
        Some("MQTT-3.9.3-2"),
        PROTOCOL,
    );
    // UNSUBACK id 1, no properties, no reason code.
    let err = decode_one(Some(V5), "B0 03 0001 00").unwrap_err();
    assert_eq!(err.violation(), Violation::AckWithoutReasonCodes);
}

// v5 [MQTT-3.11.3-2]
#[test]
fn v5_mqtt_3_11_3_2_unsuback_without_reason_codes_names_its_statement() {
    // UNSUBACK id 1, no properties, no reason code.
    malformed(
        "B0 03 0001 00",
        Violation::AckWithoutReasonCodes,
        Some("MQTT-3.11.3-2"),
        PROTOCOL,
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_property_identifier_is_malformed() {
    // PUBLISH "a/b" with property 0x04 (not defined).
    malformed(
        "30 08 0003 612F62 02 04 00",
        Violation::UnknownProperty,
        None,
        MALFORMED,
    );
}

#[test]
fn property_not_allowed_in_the_packet_is_malformed() {
    // CONNECT with Topic Alias 1.
    malformed_connect(
        "10 10 0004 4D515454 05 02 003C 03 2300 01 0000",
        Violation::PropertyNotAllowed,
        None,
        MALFORMED,
    );
    // PUBLISH "a/b" with Will Delay Interval 1.
    malformed(
        "30 0B 0003 612F62 05 18 00000001",
        Violation::PropertyNotAllowed,
        None,
        MALFORMED,
    );
    // PUBACK id 1, Success, with Topic Alias 1.
    malformed(
        "40 07 0001 00 03 23 0001",
        Violation::PropertyNotAllowed,
        None,
        MALFORMED,
    );
}

#[test]
fn property_not_allowed_in_will_properties_is_malformed() {
    // CONNECT with Will, whose Will Properties hold Session Expiry Interval 1; Will Topic "w".
    malformed_connect(
        "10 18 0004 4D515454 05 06 003C 00 0000 05 11 00000001 0001 77 0000",
        Violation::PropertyNotAllowed,
        None,
        MALFORMED,
    );
}

#[test]
fn duplicate_property_is_a_protocol_error() {
    // PUBLISH "a/b" with Message Expiry Interval 1 and 2.
    malformed(
        "30 10 0003 612F62 0A 02 00000001 02 00000002",
        Violation::DuplicateProperty,
        None,
        PROTOCOL,
    );
    // CONNACK with Reason String "a" twice.
    malformed(
        "20 0B 00 00 08 1F 0001 61 1F 0001 61",
        Violation::DuplicateProperty,
        None,
        PROTOCOL,
    );
}

#[test]
fn subscription_identifier_twice_in_subscribe_is_a_protocol_error() {
    // SUBSCRIBE id 1 with Subscription Identifiers 1 and 2, "a" QoS 0.
    malformed(
        "82 0B 0001 04 0B 01 0B 02 0001 61 00",
        Violation::DuplicateProperty,
        None,
        PROTOCOL,
    );
}

#[test]
fn subscription_identifier_0_is_a_protocol_error() {
    // SUBSCRIBE id 1 with Subscription Identifier 0, "a" QoS 0.
    malformed(
        "82 09 0001 02 0B 00 0001 61 00",
        Violation::InvalidPropertyValue,
        None,
        PROTOCOL,
    );
    // PUBLISH "a/b" with Subscription Identifier 0.
    malformed(
        "30 08 0003 612F62 02 0B 00",
        Violation::InvalidPropertyValue,
        None,
        PROTOCOL,
    );
}

#[test]
fn receive_maximum_0_is_a_protocol_error() {
    // CONNECT with Receive Maximum 0.
    malformed_connect(
        "10 10 0004 4D515454 05 02 003C 03 21 0000 0000",
        Violation::InvalidPropertyValue,
        None,
        PROTOCOL,
    );
}

#[test]
fn maximum_packet_size_0_is_a_protocol_error() {
    // CONNECT with Maximum Packet Size 0.
    malformed_connect(
        "10 12 0004 4D515454 05 02 003C 05 27 00000000 0000",
        Violation::InvalidPropertyValue,
        None,
        PROTOCOL,
    );
}

// v5 [MQTT-3.3.2-8]
#[test]
fn v5_mqtt_3_3_2_8_topic_alias_0_is_rejected() {
    // PUBLISH "a/b" with Topic Alias 0.
    malformed(
        "30 09 0003 612F62 03 23 0000",
        Violation::TopicAliasZero,
        Some("MQTT-3.3.2-8"),
        ReasonCode::TOPIC_ALIAS_INVALID,
    );
}

#[test]
fn maximum_qos_2_is_a_protocol_error() {
    // CONNACK with Maximum QoS 2.
    malformed(
        "20 05 00 00 02 24 02",
        Violation::InvalidPropertyValue,
        None,
        PROTOCOL,
    );
}

#[test]
fn boolean_properties_other_than_0_or_1_are_protocol_errors() {
    // CONNECT with Request Problem Information 2.
    malformed_connect(
        "10 0F 0004 4D515454 05 02 003C 02 17 02 0000",
        Violation::InvalidPropertyValue,
        None,
        PROTOCOL,
    );
    // CONNACK with Retain Available 2.
    malformed(
        "20 05 00 00 02 25 02",
        Violation::InvalidPropertyValue,
        None,
        PROTOCOL,
    );
}

#[test]
fn authentication_data_without_method_is_a_protocol_error() {
    // CONNECT with Authentication Data AA and no Authentication Method.
    malformed_connect(
        "10 11 0004 4D515454 05 02 003C 04 16 0001 AA 0000",
        Violation::AuthenticationDataWithoutMethod,
        None,
        PROTOCOL,
    );
    // AUTH 0x18 with Authentication Data AA and no Authentication Method.
    malformed(
        "F0 06 18 04 16 0001 AA",
        Violation::AuthenticationDataWithoutMethod,
        None,
        PROTOCOL,
    );
}

#[test]
fn auth_without_authentication_method_is_a_protocol_error() {
    // AUTH 0x18 Continue authentication with an empty property list: section 3.15.2.2.2 says
    // "It is a Protocol Error to omit the Authentication Method".
    let err = decode_one(Some(V5), "F0 02 18 00").unwrap_err();
    assert_eq!(err.packet_type(), Some(PacketType::Auth));
    assert_eq!(err.reason_code(), PROTOCOL);
}

// v5 [MQTT-3.3.2-14]
#[test]
fn v5_mqtt_3_3_2_14_response_topic_with_wildcard_is_rejected() {
    // PUBLISH "a/b" with Response Topic "r/#".
    malformed(
        "30 0C 0003 612F62 06 08 0003 722F23",
        Violation::ResponseTopicInvalid,
        Some("MQTT-3.3.2-14"),
        PROTOCOL,
    );
    // CONNECT whose Will Properties hold Response Topic "+".
    malformed_connect(
        "10 17 0004 4D515454 05 06 003C 00 0000 04 08 0001 2B 0001 77 0000",
        Violation::ResponseTopicInvalid,
        Some("MQTT-3.3.2-14"),
        PROTOCOL,
    );
}

#[test]
fn property_running_past_its_property_length_is_rejected() {
    // PUBLISH "a/b" whose Property Length 2 cuts a Message Expiry Interval after its first byte.
    malformed(
        "30 0A 0003 612F62 02 02 00 0000",
        Violation::Truncated,
        None,
        MALFORMED,
    );
    // PUBLISH "a/b" whose Property Length 5 runs past the Remaining Length.
    malformed(
        "30 06 0003 612F62 05",
        Violation::Truncated,
        None,
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// Lengths: trailing bytes, truncated fields
// ---------------------------------------------------------------------------------------------

#[test]
fn trailing_bytes_are_rejected() {
    for h in [
        "C0 01 00",            // PINGREQ with one byte of body
        "D0 01 00",            // PINGRESP with one byte of body
        "E0 03 00 00 00",      // DISCONNECT: reason code, empty properties, one byte more
        "40 05 0001 00 00 00", // PUBACK: reason code, empty properties, one byte more
        "20 04 00 00 00 00",   // CONNACK: empty properties, one byte more
        "F0 03 00 00 00",      // AUTH: reason code, empty properties, one byte more
    ] {
        malformed(h, Violation::TrailingBytes, None, MALFORMED);
    }
}

#[test]
fn field_running_past_remaining_length_is_rejected() {
    for h in [
        "30 04 0010 6162",       // PUBLISH whose Topic Name claims 16 bytes
        "30 00",                 // PUBLISH with no Topic Name at all
        "32 05 0003 612F62",     // PUBLISH QoS 1 without its Packet Identifier
        "40 01 00",              // PUBACK with half a Packet Identifier
        "82 06 0001 00 0001 61", // SUBSCRIBE filter "a" without its options byte
        "F0 01 18",              // AUTH with a reason code but no Property Length
    ] {
        malformed(h, Violation::Truncated, None, MALFORMED);
    }
}

// ---------------------------------------------------------------------------------------------
// Connection state and framing
// ---------------------------------------------------------------------------------------------

// v5 v3.1.1 [MQTT-3.1.0-1]
#[test]
fn mqtt_3_1_0_1_first_packet_must_be_connect() {
    // PINGREQ, then PUBLISH, to a server's decoder that has not seen a CONNECT.
    for h in ["C0 00", "30 06 0003 612F62 00"] {
        assert_rejected(
            None,
            h,
            Violation::FirstPacketNotConnect,
            Some("MQTT-3.1.0-1"),
            PROTOCOL,
        );
    }
    // The first byte is enough.
    let err = Decoder::new().decode_bytes(&hex("82")).unwrap_err();
    assert_eq!(err.violation(), Violation::FirstPacketNotConnect);
}

#[test]
fn packet_larger_than_maximum_is_refused_from_the_fixed_header() {
    let too_large = |e: Error| {
        assert_eq!(e.violation(), Violation::PacketTooLarge);
        assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
        assert_eq!(e.statement(), None);
    };
    let mut decoder = Decoder::with_version(V5).max_packet_size(1024);
    // Only the fixed header of a PUBLISH claiming 268 435 455 bytes.
    too_large(decoder.decode_bytes(&hex("30 FFFFFF7F")).unwrap_err());
    // Only the fixed header of a PUBLISH of 3 + 1022 = 1025 bytes.
    too_large(decoder.decode_bytes(&hex("30 FE07")).unwrap_err());
    // 3 + 1021 = 1024 bytes is allowed: incomplete, 1021 bytes to go.
    let status = decoder.decode_bytes(&hex("30 FD07")).unwrap();
    assert_eq!(
        status,
        Status::Incomplete(std::num::NonZeroUsize::new(1021))
    );
    // The streaming decoder refuses it too, rather than waiting.
    let mut buf = BytesMut::from(&hex("30 FFFFFF7F")[..]);
    too_large(decoder.decode(&mut buf).unwrap_err());
    // A server's decoder, given only the header of a CONNECT claiming 200 bytes.
    let mut server = Decoder::new().max_packet_size(100);
    too_large(server.decode_bytes(&hex("10 C801")).unwrap_err());
}

// ---------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------

const STREAM: &[&str] = &[
    "10 0D 0004 4D515454 05 02 003C 00 0000",      // CONNECT
    "32 0A 0003 612F62 000A 00 6869",              // PUBLISH QoS 1
    "82 0F 000A 00 0003 612F62 01 0003 632F64 02", // SUBSCRIBE
    "62 03 0001 92",                               // PUBREL with a reason code
    "F0 0B 18 09 15 0001 6D 16 0002 ABCD",         // AUTH
    "C0 00",                                       // PINGREQ
    "E0 07 00 05 11 00000000",                     // DISCONNECT
];

#[test]
fn stream_fed_byte_by_byte_yields_the_same_packets() {
    let expected: Vec<Packet> = STREAM
        .iter()
        .enumerate()
        .map(|(i, h)| decode_ok(if i == 0 { None } else { Some(V5) }, h))
        .collect();
    let stream: Vec<u8> = STREAM.iter().flat_map(|h| hex(h)).collect();
    assert_eq!(decode_bytewise(None, &stream), expected);
}

#[test]
fn every_strict_prefix_is_incomplete() {
    assert_prefixes_incomplete(None, STREAM[0]);
    for h in &STREAM[1..] {
        assert_prefixes_incomplete(Some(V5), h);
    }
    // A two-byte Remaining Length: the header is only known after its third byte.
    let long = format!("30 CE01 0003 612F62 00 {}", "AB".repeat(200));
    assert_prefixes_incomplete(Some(V5), &long);
}

#[test]
fn decode_bytes_reads_only_the_first_packet() {
    // PINGREQ followed by PINGRESP.
    let buf = hex("C0 00 D0 00");
    let status = Decoder::with_version(V5).decode_bytes(&buf).unwrap();
    assert_eq!(status, Status::Complete((Packet::PingReq, 2)));
}

#[test]
fn decode_keeps_a_partial_packet_for_the_next_read() {
    // PUBACK, then the first three bytes of a PUBLISH.
    let mut decoder = Decoder::with_version(V5);
    let mut buf = BytesMut::from(&hex("40 02 0001 30 08 00")[..]);
    assert!(matches!(
        decoder.decode(&mut buf).unwrap(),
        Some(Packet::PubAck(_))
    ));
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], &hex("30 08 00")[..]);
    // The rest of it arrives.
    buf.extend_from_slice(&hex("03 612F62 00 6869"));
    let p = variant!(decoder.decode(&mut buf).unwrap().unwrap(), Publish);
    assert_eq!(p.topic, "a/b");
    assert!(buf.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Encoder refusals
// ---------------------------------------------------------------------------------------------

fn publish(topic: &str) -> Publish {
    Publish::new(TopicName::try_from(topic).unwrap(), &b"hi"[..])
}

#[test]
fn encoder_refuses_publish_qos1_without_packet_id() {
    let mut p = publish("a/b");
    p.qos = QoS::AtLeastOnce;
    assert_encode_refused(&Packet::Publish(p), V5, Violation::PacketIdMismatch);
}

#[test]
fn encoder_refuses_publish_qos0_with_packet_id() {
    let mut p = publish("a/b");
    p.packet_id = pid(1);
    assert_encode_refused(&Packet::Publish(p), V5, Violation::PacketIdMismatch);
}

#[test]
fn encoder_refuses_dup_at_qos0() {
    let mut p = publish("a/b");
    p.dup = true;
    assert_encode_refused(&Packet::Publish(p), V5, Violation::DupWithQos0);
}

#[test]
fn encoder_refuses_empty_topic_without_topic_alias() {
    assert_encode_refused(&Packet::Publish(publish("")), V5, Violation::TopicNameEmpty);
    // With a Topic Alias it is written.
    let mut p = publish("");
    p.properties.topic_alias = NonZeroU16::new(1);
    assert_eq!(
        encode(&Packet::Publish(p), V5),
        hex("30 08 0000 03 23 0001 6869")
    );
}

#[test]
fn encoder_refuses_subscribe_without_filters() {
    let sub = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![],
    };
    assert_encode_refused(
        &Packet::Subscribe(sub),
        V5,
        Violation::SubscribeWithoutFilters,
    );
}

#[test]
fn encoder_refuses_no_local_on_shared_subscription() {
    let opts = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::default()
    };
    let sub = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(filter("$share/g/a"), opts)],
    };
    assert_encode_refused(
        &Packet::Subscribe(sub),
        V5,
        Violation::NoLocalOnSharedSubscription,
    );
}

#[test]
fn encoder_refuses_acks_without_reason_codes() {
    let id = PacketId::new(1).unwrap();
    let suback = SubAck {
        packet_id: id,
        properties: Default::default(),
        reason_codes: vec![],
    };
    assert_encode_refused(
        &Packet::SubAck(suback),
        V5,
        Violation::AckWithoutReasonCodes,
    );
    let unsuback = UnsubAck {
        packet_id: id,
        properties: Default::default(),
        reason_codes: vec![],
    };
    assert_encode_refused(
        &Packet::UnsubAck(unsuback),
        V5,
        Violation::AckWithoutReasonCodes,
    );
}

#[test]
fn encoder_refuses_reason_codes_not_defined_for_the_packet() {
    let mut ack = PubAck::new(PacketId::new(1).unwrap());
    ack.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    assert_encode_refused(&Packet::PubAck(ack), V5, Violation::InvalidReasonCode);
    let auth = Auth {
        reason_code: ReasonCode::UNSPECIFIED_ERROR,
        ..Auth::default()
    };
    assert_encode_refused(&Packet::Auth(auth), V5, Violation::InvalidReasonCode);
}

#[test]
fn encoder_refuses_session_present_with_error_code() {
    let ack = ConnAck::new(true, ReasonCode::NOT_AUTHORIZED);
    assert_encode_refused(&Packet::ConnAck(ack), V5, Violation::SessionPresentOnError);
}

#[test]
fn encoder_refuses_invalid_properties() {
    // Topic Alias in CONNECT.
    let mut c = Connect::new(V5, s("c"));
    c.properties.topic_alias = NonZeroU16::new(1);
    assert_encode_refused(&Packet::from(c), V5, Violation::PropertyNotAllowed);
    // Maximum QoS 2 in CONNACK.
    let mut ack = ConnAck::new(false, ReasonCode::SUCCESS);
    ack.properties.maximum_qos = Some(QoS::ExactlyOnce);
    assert_encode_refused(&Packet::ConnAck(ack), V5, Violation::InvalidPropertyValue);
    // Two Subscription Identifiers in SUBSCRIBE.
    let mut sub = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(filter("a"), SubscriptionOptions::default())],
    };
    sub.properties.push_subscription_identifier(1).unwrap();
    sub.properties.push_subscription_identifier(2).unwrap();
    assert_encode_refused(&Packet::Subscribe(sub), V5, Violation::DuplicateProperty);
    // Authentication Data without Authentication Method in AUTH.
    let mut auth = Auth {
        reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
        ..Auth::default()
    };
    auth.properties
        .set_authentication_data(Some(&b"x"[..]))
        .unwrap();
    assert_encode_refused(
        &Packet::Auth(auth),
        V5,
        Violation::AuthenticationDataWithoutMethod,
    );
}

#[test]
fn encoder_refuses_a_connect_of_another_version() {
    // A 3.1.1 CONNECT on a connection encoded as v5.
    let c = Connect::new(ProtocolVersion::V3_1_1, s("c"));
    assert_encode_refused(&Packet::from(c), V5, Violation::NotRepresentable);
}

#[test]
fn encode_limited_refuses_a_packet_over_the_maximum_size() {
    // PUBLISH QoS 0 "a/b" "hi" is 10 bytes.
    let p = Packet::Publish(publish("a/b"));
    let mut buf = BytesMut::from(&b"prefix"[..]);
    let err = p.encode_limited(V5, 9, &mut buf).unwrap_err();
    assert_eq!(err.violation(), Violation::PacketTooLarge);
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(&buf[..], b"prefix");
    // At exactly the maximum it is written.
    assert_eq!(p.encode_limited(V5, 10, &mut buf).unwrap(), 10);
    assert_eq!(&buf[6..], &hex("30 08 0003 612F62 00 6869")[..]);
}
