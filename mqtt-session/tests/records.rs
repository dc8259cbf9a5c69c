//! The binary record format (`mqtt_session::broker::record`): every kind of record round-trips,
//! and anything that is not a whole, valid record is refused with an error naming what is
//! wrong, never a panic. (The property tests of `broker_restore.rs` also pass every record a
//! broker emits through the binary form: see `harness::World`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::{Bytes, BytesMut};
use mqtt_session::Timestamp;
use mqtt_session::broker::record::{RECORD_FORMAT, RecordError, decode_record, encode_record};
use mqtt_session::broker::{Message, StorageRecord};
use mqtt_session::codec::{
    PacketId, PayloadFormatIndicator, QoS, RetainHandling, SubscriptionOptions, TopicName,
    Utf8String,
};
use proptest::prelude::*;

fn message(qos: QoS, retain: bool, rich: bool) -> Box<Message> {
    let topic = TopicName::new(Utf8String::try_from("a/b/c").unwrap()).unwrap();
    let mut m = Message::new(topic, Bytes::from_static(b"payload \x00\xff"), qos, retain);
    if rich {
        m.properties.payload_format_indicator = Some(PayloadFormatIndicator::Unspecified);
        m.properties
            .set_content_type(Some("text/plain".try_into().unwrap()));
        m.properties
            .set_response_topic(Some("reply/here".try_into().unwrap()))
            .unwrap();
        m.properties
            .set_correlation_data(Some(b"\x01\x02"))
            .unwrap();
        m.properties
            .push_user_property("k".try_into().unwrap(), "v".try_into().unwrap());
        m.publisher = Some("publisher-1".into());
        m.expires_at = Some(Timestamp::from_millis(1_700_000_123_456));
    }
    Box::new(m)
}

/// One record of every kind (and of both message shapes).
fn every_kind() -> Vec<StorageRecord> {
    let c = || "client-é".to_owned();
    let id = PacketId::new(0xbeef).unwrap();
    let at = Timestamp::from_millis(1_700_000_000_001);
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    vec![
        StorageRecord::Session {
            client_id: c(),
            expiry_interval: u32::MAX,
            username: Some("user".to_owned()),
        },
        StorageRecord::Session {
            client_id: String::new(),
            expiry_interval: 0,
            username: None,
        },
        StorageRecord::SessionDisconnected {
            client_id: c(),
            at,
            expiry_interval: 3600,
        },
        StorageRecord::SessionConnected { client_id: c() },
        StorageRecord::SessionEnded { client_id: c() },
        StorageRecord::Subscribed {
            client_id: c(),
            filter: "$share/g/a/+/#".to_owned(),
            options,
            subscription_id: Some(268_435_455),
        },
        StorageRecord::Subscribed {
            client_id: c(),
            filter: "x".to_owned(),
            options: SubscriptionOptions::qos(QoS::AtMostOnce),
            subscription_id: None,
        },
        StorageRecord::Unsubscribed {
            client_id: c(),
            filter: "a/#".to_owned(),
        },
        StorageRecord::Queued {
            client_id: c(),
            seq: u64::MAX,
            message: message(QoS::ExactlyOnce, true, true).into(),
            qos: QoS::AtLeastOnce,
            retain: true,
            subscription_ids: vec![1, 7, 268_435_455],
        },
        StorageRecord::Queued {
            client_id: c(),
            seq: 0,
            message: message(QoS::AtLeastOnce, false, false).into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        },
        StorageRecord::Sent {
            client_id: c(),
            seq: 42,
            packet_id: id,
        },
        StorageRecord::Released {
            client_id: c(),
            seq: 42,
        },
        StorageRecord::Delivered {
            client_id: c(),
            seq: 42,
        },
        StorageRecord::IncomingQos2 {
            client_id: c(),
            packet_id: id,
        },
        StorageRecord::IncomingQos2Released {
            client_id: c(),
            packet_id: id,
        },
        StorageRecord::Will {
            client_id: c(),
            message: {
                // A will keeps its Message Expiry Interval until it is published.
                let mut m = message(QoS::AtMostOnce, true, true);
                m.properties.message_expiry_interval = Some(120);
                m
            },
            delay: 30,
        },
        StorageRecord::WillScheduled { client_id: c(), at },
        StorageRecord::WillCleared { client_id: c() },
        StorageRecord::Retained {
            message: message(QoS::AtLeastOnce, true, false),
        },
        StorageRecord::RetainedCleared {
            topic: "a/b".to_owned(),
        },
    ]
}

fn encoded(record: &StorageRecord) -> Bytes {
    let mut buf = BytesMut::new();
    encode_record(record, &mut buf).unwrap();
    buf.freeze()
}

#[test]
fn every_kind_of_record_round_trips() {
    assert_eq!(RECORD_FORMAT, 1);
    for record in every_kind() {
        let bytes = encoded(&record);
        assert_eq!(decode_record(&bytes).unwrap(), record, "{bytes:02x?}");
    }
}

/// A message's topic and payload are read in place: they share the record's buffer.
#[test]
fn stored_messages_share_the_record_buffer() {
    let record = StorageRecord::Retained {
        message: message(QoS::AtLeastOnce, true, true),
    };
    let bytes = encoded(&record);
    let Ok(StorageRecord::Retained { message }) = decode_record(&bytes) else {
        panic!("not a Retained record");
    };
    let range = bytes.as_ptr_range();
    assert!(range.contains(&message.payload.as_ptr()));
}

/// Every proper prefix of every record is refused as truncated (or, where the cut leaves a
/// shorter valid field, as something else), and a byte more is refused as trailing.
#[test]
fn truncated_and_overlong_records_are_refused() {
    for record in every_kind() {
        let bytes = encoded(&record);
        for cut in 0..bytes.len() {
            let err = decode_record(&bytes.slice(..cut)).expect_err("a prefix decoded");
            assert!(
                matches!(err, RecordError::Truncated | RecordError::Message(_)),
                "{record:?} cut at {cut}: {err}"
            );
        }
        let mut longer = BytesMut::from(&bytes[..]);
        longer.extend_from_slice(&[0]);
        assert_eq!(
            decode_record(&longer.freeze()),
            Err(RecordError::TrailingBytes(1))
        );
    }
}

#[test]
fn invalid_fields_are_named() {
    assert_eq!(
        decode_record(&Bytes::from_static(&[0])),
        Err(RecordError::UnknownKind(0))
    );
    assert_eq!(
        decode_record(&Bytes::from_static(&[200, 0, 0])),
        Err(RecordError::UnknownKind(200))
    );
    // Session with a User Name presence byte of 2.
    let bad = [1, 0, 1, b'c', 0, 0, 0, 0, 2];
    assert_eq!(
        decode_record(&Bytes::copy_from_slice(&bad)),
        Err(RecordError::Invalid("username"))
    );
    // A Client Identifier that is not UTF-8.
    let bad = [3, 0, 1, 0xff];
    assert_eq!(
        decode_record(&Bytes::copy_from_slice(&bad)),
        Err(RecordError::NotUtf8)
    );
    // Sent with Packet Identifier 0.
    let mut bad = vec![8, 0, 1, b'c'];
    bad.extend_from_slice(&7_u64.to_be_bytes());
    bad.extend_from_slice(&[0, 0]);
    assert_eq!(
        decode_record(&Bytes::from(bad)),
        Err(RecordError::Invalid("packet_id"))
    );
    // A Queued record whose message is a PINGREQ.
    let mut bad = vec![7, 0, 1, b'c'];
    bad.extend_from_slice(&7_u64.to_be_bytes());
    bad.extend_from_slice(&[0, 0, 0, 2, 0xc0, 0]);
    assert_eq!(
        decode_record(&Bytes::from(bad)),
        Err(RecordError::Invalid("message packet type"))
    );
}

/// A Queued record claiming 65 535 Subscription Identifiers in a few bytes is refused before
/// anything is allocated for them.
#[test]
fn counts_beyond_the_input_are_refused() {
    let record = every_kind()
        .into_iter()
        .find(|r| matches!(r, StorageRecord::Queued { subscription_ids, .. } if subscription_ids.is_empty()))
        .unwrap();
    let bytes = encoded(&record);
    let mut bad = BytesMut::from(&bytes[..]);
    let n = bad.len();
    bad[n - 2..].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(decode_record(&bad.freeze()), Err(RecordError::Truncated));
}

proptest! {
    /// Any bytes: an error or a record that encodes back to the same bytes; never a panic.
    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let src = Bytes::from(bytes);
        if let Ok(record) = decode_record(&src) {
            prop_assert_eq!(decode_record(&encoded(&record)).unwrap(), record);
        }
    }

    /// Every record with one byte changed: an error or a record, never a panic.
    #[test]
    fn mutated_records_never_panic(which in 0..20_usize, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let kinds = every_kind();
        let record = &kinds[which % kinds.len()];
        let mut bytes = BytesMut::from(&encoded(record)[..]);
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode_record(&bytes.freeze());
    }
}
