//! The `tokio-util` adapter: `MqttCodec` frames a byte stream into packets and back, learning
//! the version from CONNECT on the server side.
// Test code: a panic is a failure report. (The workspace denies these in library code.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::BytesMut;
use mqtt_codec::{
    CodecError, Connect, MqttCodec, Packet, ProtocolVersion, Publish, TopicName, Violation,
};
use tokio_util::codec::{Decoder, Encoder};

#[test]
fn server_side_codec_learns_the_version_from_connect() {
    let mut client = MqttCodec::with_version(ProtocolVersion::V3_1_1);
    let mut server = MqttCodec::new();
    let mut wire = BytesMut::new();
    let connect = Packet::from(Connect::new(
        ProtocolVersion::V3_1_1,
        "c1".try_into().unwrap(),
    ));
    let publish = Packet::Publish(Publish::new(
        TopicName::try_from("a/b").unwrap(),
        &b"hi"[..],
    ));
    client.encode(&connect, &mut wire).unwrap();
    client.encode(&publish, &mut wire).unwrap();
    assert_eq!(server.decode(&mut wire).unwrap(), Some(connect));
    assert_eq!(server.decode(&mut wire).unwrap(), Some(publish.clone()));
    assert_eq!(server.decode(&mut wire).unwrap(), None);
    // The server now encodes in 3.1.1: a PUBLISH with properties cannot be sent.
    let mut with_props = publish;
    if let Packet::Publish(p) = &mut with_props {
        p.properties.message_expiry_interval = Some(5);
    }
    let err = server.encode(&with_props, &mut wire).unwrap_err();
    assert!(matches!(err, CodecError::Protocol(e) if e.violation() == Violation::NotRepresentable));
}

#[test]
fn encoding_before_connect_is_refused() {
    let mut server = MqttCodec::new();
    let mut wire = BytesMut::new();
    let err = server.encode(Packet::PingResp, &mut wire).unwrap_err();
    assert!(matches!(err, CodecError::VersionUnknown));
    assert!(wire.is_empty());
}

#[test]
fn outgoing_maximum_packet_size_is_enforced() {
    let mut codec = MqttCodec::with_version(ProtocolVersion::V5);
    codec.set_max_outgoing_packet_size(Some(16));
    let mut wire = BytesMut::new();
    let big = Packet::Publish(Publish::new(
        TopicName::try_from("t").unwrap(),
        vec![0u8; 64],
    ));
    let err = codec.encode(&big, &mut wire).unwrap_err();
    assert!(matches!(err, CodecError::Protocol(e) if e.violation() == Violation::PacketTooLarge));
    assert!(wire.is_empty());
}
