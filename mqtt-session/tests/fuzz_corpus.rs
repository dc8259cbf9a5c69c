//! Replays the committed corpus of the `broker` fuzz target (seeds, and every crash fixed) on
//! stable Rust, through the same checks the fuzz target runs (`fuzz/checks/broker.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::Path;

include!("../../fuzz/checks/broker.rs");
include!("../../fuzz/checks/corpus.rs");

/// The corpus through the fuzz target's checks (which tolerate the known, unfixed bugs listed
/// at `broker_checks::TOLERATE_KNOWN_BUGS`).
#[test]
fn broker_corpus() {
    replay("broker", broker_checks::run);
}

/// The corpus through the strict checks: passes once the known bugs are fixed (then set
/// `TOLERATE_KNOWN_BUGS` to `false` and drop this test).
#[test]
fn broker_corpus_strict() {
    replay("broker", |d| broker_checks::run_with(d, false));
}

/// Writes the seed corpus of the `broker` target: pseudo-random bytes of a few sizes (the
/// target reads them as operations), and inputs that start by connecting clients. Deterministic;
/// run it with `cargo test -p mqtt-session --test fuzz_corpus -- --ignored write_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/broker; run by hand"]
fn write_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/broker");
    fs::create_dir_all(&dir).unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut random = |len: usize| (0..len).map(|_| next() as u8).collect::<Vec<u8>>();
    for n in 0..24 {
        let mut data = Vec::new();
        if n % 2 == 0 {
            // Operation 8..=11 (a CONNECT) twice, so that sessions exist from the start.
            data.extend_from_slice(&[8, 0, 0, 9, 1, 1]);
        }
        data.extend(random(64 + n * 48));
        fs::write(dir.join(format!("seed-{n:03}")), &data).unwrap();
    }
}

// ---- findings of the broker fuzz target, as plain scenarios ------------------------------------

use bytes::BytesMut;
use mqtt_codec::{
    Connect, Decoder, Packet, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
};
use mqtt_session::Timestamp;
use mqtt_session::broker::{Broker, BrokerConfig, ConnectionId, Output};

/// What the broker answered to one input: its outputs, and the bytes pulled for each
/// connection it said was ready (and the farewells of the ones it closed), in order.
#[derive(Debug)]
struct Answer {
    outputs: Vec<Output>,
    sent: Vec<(ConnectionId, bytes::Bytes)>,
}

/// Sends `packet` on `conn` and returns what the broker answered, as a host that commits at
/// once and pulls everything would see it.
fn exchange(broker: &mut Broker, conn: ConnectionId, packet: Packet, now: Timestamp) -> Answer {
    let mut buf = BytesMut::new();
    packet.encode(ProtocolVersion::V5, &mut buf).unwrap();
    broker.handle_bytes(conn, &buf, now);
    let mut answer = Answer {
        outputs: Vec::new(),
        sent: Vec::new(),
    };
    while let Some(out) = broker.poll_output() {
        match &out {
            Output::Persist { seq, .. } => broker.handle_committed(*seq),
            Output::TransmitReady { connection } => {
                while let Some(data) = broker.poll_transmit(*connection, usize::MAX, now) {
                    answer.sent.push((*connection, data));
                }
            }
            Output::Close {
                connection,
                farewell,
            } => answer.sent.push((*connection, farewell.clone())),
            _ => {}
        }
        answer.outputs.push(out);
    }
    answer
}

fn transmits(answer: &Answer, conn: ConnectionId) -> Vec<bytes::Bytes> {
    answer
        .sent
        .iter()
        .filter(|(c, d)| *c == conn && !d.is_empty())
        .map(|(_, d)| d.clone())
        .collect()
}

/// Broker bug (fuzz input `regressions/broker/connack-exceeds-client-maximum-packet-size`): a
/// 5.0 client whose Maximum Packet Size is below the size of the broker's CONNACK (16 bytes with
/// the default configuration: Receive Maximum, Maximum Packet Size and Topic Alias Maximum
/// properties) gets no CONNACK at all — `send` refuses the packet (v5 MQTT-3.1.2-24), leaves an
/// empty `Output::Transmit`, and the connection stays connected (`ClientConnected` is
/// reported) although the client never heard back. The broker should send a CONNACK that fits
/// (the properties it may leave out) or refuse and close the connection; in no case an empty
/// transmit ("one or more whole packets").
#[test]
fn connack_too_large_for_the_client_is_not_silently_dropped() {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = Timestamp::from_secs(1_000);
    let conn = broker.handle_connection_opened(now);
    let mut connect = Connect::new(ProtocolVersion::V5, "a".try_into().unwrap());
    connect.properties.maximum_packet_size = std::num::NonZeroU32::new(12);
    let outputs = exchange(&mut broker, conn, Packet::from(connect), now);
    let sent = transmits(&outputs, conn);
    let closed = outputs
        .outputs
        .iter()
        .any(|o| matches!(o, Output::Close { connection, .. } if *connection == conn));
    let mut wire = BytesMut::from(&sent.concat()[..]);
    let connack = Decoder::with_version(ProtocolVersion::V5)
        .decode(&mut wire)
        .unwrap();
    assert!(
        matches!(connack, Some(Packet::ConnAck(_)))
            && sent.iter().map(|d| d.len()).sum::<usize>() <= 12
            || closed,
        "neither a CONNACK within 12 bytes nor a close: {outputs:?}"
    );
}

/// Broker bug: a PUBLISH larger than the subscriber's Maximum Packet Size is dropped
/// (v5 MQTT-3.1.2-24, and reported as `MessageDropped`), but leaves an empty `Output::Transmit`
/// for the subscriber's connection, against the documented contract of `Output::Transmit` (one
/// or more whole packets). `Broker::send` pushes the transmit before encoding into it.
#[test]
fn no_empty_transmit_when_a_publish_exceeds_the_subscriber_maximum_packet_size() {
    let mut broker = Broker::new(BrokerConfig::default());
    let now = Timestamp::from_secs(1_000);
    let sub = broker.handle_connection_opened(now);
    let mut connect = Connect::new(ProtocolVersion::V5, "sub".try_into().unwrap());
    connect.properties.maximum_packet_size = std::num::NonZeroU32::new(64);
    let _ = exchange(&mut broker, sub, Packet::from(connect), now);
    let subscribe = Subscribe {
        packet_id: mqtt_codec::PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            "t".try_into().unwrap(),
            SubscriptionOptions::qos(QoS::AtMostOnce),
        )],
    };
    let _ = exchange(&mut broker, sub, Packet::Subscribe(subscribe), now);
    let publisher = broker.handle_connection_opened(now);
    let _ = exchange(
        &mut broker,
        publisher,
        Packet::from(Connect::new(ProtocolVersion::V5, "pub".try_into().unwrap())),
        now,
    );
    let publish = Publish::new("t".try_into().unwrap(), vec![0u8; 100]);
    let outputs = exchange(&mut broker, publisher, Packet::Publish(publish), now);
    assert!(
        outputs.sent.iter().all(|(_, d)| !d.is_empty())
            || outputs
                .outputs
                .iter()
                .any(|o| matches!(o, Output::Close { .. })),
        "empty transmit: {outputs:?}"
    );
    // The message was too large for the subscriber: it gets nothing, and it is reported.
    assert!(transmits(&outputs, sub).is_empty(), "{outputs:?}");
}
