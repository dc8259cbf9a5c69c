#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The client engine's storage records (`ClientConfig::persist`) and `Client::restore`: a
//! process that dies at any point and is restarted from what its host stored resumes its flows
//! where they were. Against the broker engine (`pair::Pair`): every stored QoS 1 message
//! arrives at least once and every QoS 2 message exactly once, whatever the point of the
//! crash; the record format refuses what it cannot read.

mod pair;

use std::collections::BTreeMap;

use bytes::Bytes;
use mqtt_session::client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientRecord, ClientRecordError, StoreChange,
    decode_stored,
};
use mqtt_session::codec::{
    ConnAck, Packet, PacketId, ProtocolVersion, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
    TopicName,
};
use pair::*;
use proptest::prelude::*;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn stored(version: ProtocolVersion, id: &str) -> ClientConfig {
    let mut c = persistent(version, id);
    c.persist = true;
    c
}

/// How many times each payload arrived.
fn counts(messages: &[Publish]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in messages {
        *counts
            .entry(String::from_utf8_lossy(&m.payload).into_owned())
            .or_insert(0) += 1;
    }
    counts
}

// ---- the format ---------------------------------------------------------------------------------

#[test]
fn every_stored_record_reads_back_as_itself() {
    let mut publish = message("a/b", b"payload", QoS::ExactlyOnce);
    publish.packet_id = PacketId::new(7);
    publish.retain = true;
    publish.properties.message_expiry_interval = Some(60);
    for record in [
        ClientRecord::ClientId("auto-1234".to_owned()),
        ClientRecord::Outbound { seq: 42, publish },
        ClientRecord::Released { packet_id: pid(7) },
        ClientRecord::InboundQos2 { packet_id: pid(9) },
    ] {
        let StoreChange::Put { key, value } = record.change().unwrap() else {
            panic!("a put");
        };
        assert_eq!(decode_stored(&key, &value).unwrap(), record);
    }
    assert_eq!(
        ClientRecord::OutboundDone { packet_id: pid(7) }.change(),
        Ok(StoreChange::Delete(vec![[1, 0, 7], [2, 0, 7]]))
    );
    assert_eq!(
        ClientRecord::Cleared.change(),
        Ok(StoreChange::DeleteAllButClientId)
    );
}

#[test]
fn stored_values_that_do_not_fit_their_key_are_refused() {
    let mut publish = message("t", b"x", QoS::AtLeastOnce);
    publish.packet_id = PacketId::new(5);
    let StoreChange::Put { value, .. } =
        ClientRecord::Outbound { seq: 1, publish }.change().unwrap()
    else {
        panic!("a put");
    };
    // Under another Packet Identifier.
    assert_eq!(
        decode_stored(&[1, 0, 6], &value),
        Err(ClientRecordError::Mismatch)
    );
    // Cut short, or with bytes after it.
    assert!(decode_stored(&[1, 0, 5], &value.slice(..value.len() - 1)).is_err());
    let mut longer = value.to_vec();
    longer.push(0);
    assert_eq!(
        decode_stored(&[1, 0, 5], &Bytes::from(longer)),
        Err(ClientRecordError::TrailingBytes)
    );
    assert_eq!(
        decode_stored(&[1, 0, 5], &Bytes::from_static(&[0; 4])),
        Err(ClientRecordError::Truncated)
    );
    assert_eq!(
        decode_stored(&[9, 0, 5], &value),
        Err(ClientRecordError::UnknownKey)
    );
    assert_eq!(
        decode_stored(&[2, 0, 0], &Bytes::new()),
        Err(ClientRecordError::UnknownKey),
        "Packet Identifier 0"
    );
    assert_eq!(
        decode_stored(&[3, 0, 1], &Bytes::from_static(b"x")),
        Err(ClientRecordError::TrailingBytes)
    );
    assert_eq!(
        decode_stored(&[0, 0, 0], &Bytes::from_static(&[0xFF])),
        Err(ClientRecordError::NotUtf8)
    );
}

proptest! {
    #[test]
    fn any_stored_bytes_decode_or_are_refused(key in proptest::collection::vec(any::<u8>(), 0..5),
                                               value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_stored(&key, &Bytes::from(value));
    }
}

#[test]
fn restore_refuses_a_store_that_is_not_a_session() {
    let config = stored(V5, "c");
    let removal = Client::restore(config.clone(), [ClientRecord::Cleared]);
    assert!(matches!(removal, Err(ClientError::InvalidStore(_))));
    let orphan = Client::restore(
        config.clone(),
        [ClientRecord::Released { packet_id: pid(3) }],
    );
    assert!(matches!(orphan, Err(ClientError::InvalidStore(_))));
    let mut publish = message("t", b"x", QoS::AtLeastOnce);
    publish.packet_id = PacketId::new(3);
    let twice = Client::restore(
        config,
        [
            ClientRecord::Outbound {
                seq: 1,
                publish: publish.clone(),
            },
            ClientRecord::Outbound { seq: 2, publish },
        ],
    );
    assert!(matches!(twice, Err(ClientError::InvalidStore(_))));
}

// ---- what is stored, and when ---------------------------------------------------------------

/// The records come before the bytes that depend on them, and the store holds exactly the
/// flows in progress: a message from its publication to its acknowledgement, a released one
/// until PUBCOMP, an inbound QoS 2 message from its PUBREC to its PUBREL.
#[test]
fn the_store_holds_exactly_the_flows_in_progress() {
    for version in [V5, V311] {
        let mut s = Scripted::new(stored(version, "c"));
        s.connect_accepted(false);
        s.take_sent();
        let one = s
            .with(|c, now| c.publish(message("t", b"one", QoS::AtLeastOnce), now))
            .unwrap()
            .unwrap();
        let two = s
            .with(|c, now| c.publish(message("t", b"two", QoS::ExactlyOnce), now))
            .unwrap()
            .unwrap();
        s.with(|c, now| c.publish(message("t", b"zero", QoS::AtMostOnce), now))
            .unwrap();
        assert_eq!(s.store.outbound(), 2, "QoS 1 and 2 stored, QoS 0 not");
        s.server_sends(PubRec::new(two));
        assert!(s.store.0.contains_key(&[2, 0, two.get() as u8]));
        s.server_sends(mqtt_session::codec::PubAck::new(one));
        s.server_sends(PubComp::new(two));
        assert!(s.store.0.is_empty(), "{:?}", s.store);
        // Inbound QoS 2: stored with its PUBREC, gone with its PUBREL.
        let mut p = Publish::new(TopicName::try_from("in").unwrap(), Bytes::from_static(b"i"));
        p.qos = QoS::ExactlyOnce;
        p.packet_id = PacketId::new(77);
        s.server_sends(p);
        assert_eq!(
            s.store.records(),
            [ClientRecord::InboundQos2 { packet_id: pid(77) }]
        );
        s.server_sends(PubRel::new(pid(77)));
        assert!(s.store.0.is_empty());
    }
}

/// The Client Identifier the server assigned is stored, and a restored client uses it.
#[test]
fn v5_mqtt_3_2_2_16_an_assigned_client_identifier_is_stored_and_restored() {
    let mut c = stored(V5, "");
    c.clean_start = true;
    let mut s = Scripted::new(c.clone());
    s.connect_accepted(false);
    assert_eq!(s.client.client_id(), "assigned-1");
    let mut restored = Scripted::new(c.clone());
    restored.client = Client::restore(c, s.store.records()).unwrap();
    assert_eq!(restored.client.client_id(), "assigned-1");
    let Packet::Connect(connect) = restored.connect() else {
        panic!("a CONNECT");
    };
    assert_eq!(connect.client_id.as_str(), "assigned-1");
}

/// A restored message is sent again with DUP 1 and its Packet Identifier, in order; a
/// released one gets its PUBREL, not its PUBLISH. v5 v3.1.1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]
#[test]
fn mqtt_4_4_0_1_a_restored_client_resends_with_dup_and_pubrel_in_order() {
    for version in [V5, V311] {
        let mut s = Scripted::new(stored(version, "c"));
        s.connect_accepted(false);
        let ids: Vec<PacketId> = ["a", "b", "c"]
            .iter()
            .map(|p| {
                s.with(|c, now| c.publish(message("t", p.as_bytes(), QoS::ExactlyOnce), now))
                    .unwrap()
                    .unwrap()
            })
            .collect();
        s.server_sends(PubRec::new(ids[1]));
        s.take_sent();
        let mut restored = Scripted::new(stored(version, "c"));
        restored.client = Client::restore(stored(version, "c"), s.store.records()).unwrap();
        let Packet::Connect(connect) = restored.connect() else {
            panic!("a CONNECT");
        };
        assert!(
            !connect.clean_start,
            "Clean Start 0: the session is resumed"
        );
        restored.server_sends(ConnAck::new(true, ReasonCode::SUCCESS));
        let sent = restored.take_sent();
        assert_eq!(sent.first(), Some(&Packet::PubRel(PubRel::new(ids[1]))));
        let republished = publishes(&sent);
        assert_eq!(payloads(&republished), ["a", "c"]);
        assert!(republished.iter().all(|p| p.dup));
        assert_eq!(
            republished.iter().map(|p| p.packet_id).collect::<Vec<_>>(),
            [Some(ids[0]), Some(ids[2])]
        );
        // New messages get new identifiers.
        let next = restored
            .with(|c, now| c.publish(message("t", b"d", QoS::AtLeastOnce), now))
            .unwrap()
            .unwrap();
        assert!(!ids.contains(&next));
    }
}

/// Crashes at every point of a stream of QoS 1 and QoS 2 messages through the broker engine:
/// the first `deliver` bytes in flight reach the broker, the process is restored from its
/// store and reconnects. Every QoS 1 message arrives at least once, every QoS 2 message exactly
/// once, and the store ends empty. v5 [MQTT-4.3.3-10] [MQTT-4.4.0-1]
#[test]
fn mqtt_4_3_3_10_a_publisher_restored_after_a_crash_delivers_qos_2_exactly_once() {
    for version in [V5, V311] {
        for deliver in [0, 1, 7, 20, 45, 90, 200, 10_000] {
            for crash_after_ms in [0, 40, 90] {
                let mut pair = Pair::new();
                let sub = pair.add_connected(persistent(version, "sub"));
                pair.subscribe(sub, "t/#", QoS::ExactlyOnce);
                let publ = pair.add_connected(stored(version, "pub"));
                pair.delay_ms = (10, 30);
                let mut expected = Vec::new();
                for i in 0..12 {
                    let (qos, name) = if i % 2 == 0 {
                        (QoS::AtLeastOnce, format!("q1-{i}"))
                    } else {
                        (QoS::ExactlyOnce, format!("q2-{i}"))
                    };
                    pair.act(publ, |c, now| {
                        c.publish(message("t/x", name.as_bytes(), qos), now)
                    })
                    .unwrap();
                    expected.push(name);
                }
                pair.advance_ms(crash_after_ms);
                pair.crash_and_restore(publ, deliver);
                pair.delay_ms = (0, 0);
                pair.connect(publ);
                pair.settle();
                let got = counts(&pair.take_messages(sub));
                for name in &expected {
                    let n = got.get(name).copied().unwrap_or(0);
                    if name.starts_with("q2") {
                        assert_eq!(
                            n, 1,
                            "{version:?} deliver {deliver} at {crash_after_ms} ms: {name} x{n}"
                        );
                    } else {
                        assert!(
                            n >= 1,
                            "{version:?} deliver {deliver} at {crash_after_ms} ms: {name} lost"
                        );
                    }
                }
                assert_eq!(pair.client(publ).in_flight(), 0);
                assert_eq!(
                    pair.peers[publ].store.outbound(),
                    0,
                    "{:?}",
                    pair.peers[publ].store
                );
            }
        }
    }
}

/// A subscriber that crashes once it has the message is not given it again: whether its
/// PUBREC left (the broker re-sends PUBREL) or not (the broker re-sends the PUBLISH, with DUP),
/// the stored record says the identifier is that message until its PUBREL (the record is
/// committed before the PUBREC can leave). v5 [MQTT-4.3.3-10]
#[test]
fn mqtt_4_3_3_10_a_subscriber_restored_after_its_pubrec_is_not_given_the_message_again() {
    for version in [V5, V311] {
        for pubrec_left in [false, true] {
            let mut pair = Pair::new();
            let sub = pair.add_connected(stored(version, "sub"));
            pair.subscribe(sub, "t", QoS::ExactlyOnce);
            let publ = pair.add_connected(persistent(version, "pub"));
            pair.delay_ms = (50, 50);
            pair.act(publ, |c, now| {
                c.publish(message("t", b"once", QoS::ExactlyOnce), now)
            })
            .unwrap();
            // The PUBLISH reaches the subscriber, which answers PUBREC (in flight now).
            pair.advance_ms(120);
            assert_eq!(payloads(&pair.take_messages(sub)), ["once"]);
            pair.crash_and_restore(sub, if pubrec_left { 10_000 } else { 0 });
            pair.delay_ms = (0, 0);
            pair.connect(sub);
            pair.settle();
            let again = pair.take_messages(sub);
            assert!(
                again.is_empty(),
                "{version:?} (PUBREC left: {pubrec_left}): delivered again: {again:?}"
            );
            assert_eq!(pair.client(sub).inbound_qos2_pending(), 0);
            assert!(pair.peers[sub].store.0.is_empty());
        }
    }
}

/// Session Present 0 on the restored connection: the stored messages are given up (or sent
/// again as new, as configured), and the store is cleared. v5 [MQTT-3.2.2-5]
#[test]
fn v5_mqtt_3_2_2_5_a_restored_session_the_server_lost_is_cleared() {
    let mut s = Scripted::new(stored(V5, "c"));
    s.connect_accepted(false);
    let id = s
        .with(|c, now| c.publish(message("t", b"x", QoS::ExactlyOnce), now))
        .unwrap()
        .unwrap();
    let mut restored = Scripted::new(stored(V5, "c"));
    restored.client = Client::restore(stored(V5, "c"), s.store.records()).unwrap();
    restored.store = s.store.clone();
    restored.connect();
    restored.server_sends(ConnAck::new(false, ReasonCode::SUCCESS));
    assert!(
        restored
            .take_events()
            .contains(&ClientEvent::PublishDropped {
                packet_id: Some(id),
                reason: mqtt_session::client::DropReason::SessionDiscarded
            })
    );
    assert!(restored.store.0.is_empty());
}
