//! Decoding a PUBLISH allocates nothing: the topic, the payload and the variable-length
//! properties (strings, binary data, User Properties, Subscription Identifiers) are
//! reference-counted slices of the input buffer.
//!
//! Measured with `allocation-counter`, whose global allocator counts per thread, around the
//! decode calls only: the test harness's other threads (and other tests running in parallel)
//! allocate without being counted, so the result does not depend on scheduling. The input buffer is
//! a `BytesMut` already shared (its first `split_to` made it reference-counted), which is what a
//! connection's read buffer is after its first packet.
// Test code: a panic is a failure report. (The workspace denies these in library code.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::{BufMut, BytesMut};
use mqtt_codec::{
    Decoder, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};

/// Allocations (including reallocations) made by this thread while `f` runs.
fn allocations_in<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (info.count_total, out.expect("measure runs the closure"))
}

fn publishes(version: ProtocolVersion, count: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    for i in 0..count {
        let mut p = Publish::new(
            TopicName::try_from("sensors/building-7/floor-3/t").unwrap(),
            vec![i as u8; 100],
        );
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(i as u16 + 1);
        if version.is_v5() {
            p.properties.message_expiry_interval = Some(60);
            p.properties
                .set_content_type(Some("application/json".try_into().unwrap()));
            p.properties.set_correlation_data(Some(b"corr")).unwrap();
            p.properties
                .set_response_topic(Some(TopicName::try_from("reply/here").unwrap()))
                .unwrap();
            p.properties
                .push_user_property("k".try_into().unwrap(), "v".try_into().unwrap());
            p.properties
                .push_user_property("k2".try_into().unwrap(), "v2".try_into().unwrap());
            p.properties.push_subscription_identifier(7).unwrap();
        }
        Packet::Publish(p).encode(version, &mut buf).unwrap();
    }
    // A PINGREQ first, decoded before measuring, makes the buffer shared the way a live
    // connection's is.
    let mut with_ping = BytesMut::with_capacity(buf.len() + 2);
    with_ping.put_slice(&[0xC0, 0x00]);
    with_ping.put_slice(&buf);
    with_ping
}

fn decode_allocations(version: ProtocolVersion) -> (u64, usize) {
    let mut decoder = Decoder::with_version(version);
    let mut buf = publishes(version, 100);
    assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Packet::PingReq));
    let mut decoded = Vec::with_capacity(100);
    let (allocations, ()) = allocations_in(|| {
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            decoded.push(p);
        }
    });
    assert_eq!(decoded.len(), 100);
    for (i, p) in decoded.iter().enumerate() {
        let Packet::Publish(p) = p else {
            panic!("not a publish")
        };
        assert_eq!(p.payload.len(), 100);
        assert_eq!(p.payload[0], i as u8);
        assert_eq!(p.topic, "sensors/building-7/floor-3/t");
    }
    (allocations, decoded.len())
}

#[test]
fn decoding_a_v311_publish_allocates_nothing() {
    let (allocations, n) = decode_allocations(ProtocolVersion::V3_1_1);
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {n} PUBLISH packets"
    );
}

#[test]
fn decoding_a_v5_publish_with_properties_allocates_nothing() {
    let (allocations, n) = decode_allocations(ProtocolVersion::V5);
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {n} PUBLISH packets"
    );
}

#[test]
fn the_counter_does_count() {
    // Guards against a test that cannot fail: a SUBSCRIBE's filters do allocate (a Vec).
    let sub = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Properties::default(),
        filters: vec![(
            TopicFilter::try_from("a/+").unwrap(),
            SubscriptionOptions::default(),
        )],
    };
    let mut buf = BytesMut::new();
    buf.put_slice(&[0xC0, 0x00]);
    Packet::Subscribe(sub)
        .encode(ProtocolVersion::V5, &mut buf)
        .unwrap();
    let mut decoder = Decoder::with_version(ProtocolVersion::V5);
    decoder.decode(&mut buf).unwrap();
    let (allocations, packet) = allocations_in(|| decoder.decode(&mut buf).unwrap());
    assert!(packet.is_some());
    assert!(allocations >= 1);
}
