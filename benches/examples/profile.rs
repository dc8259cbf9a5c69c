//! A fixed workload of the broker engine for profilers: run it under
//! `valgrind --tool=callgrind`, which counts instructions and so gives the same answer on a busy
//! machine. See `benches/README.md` ("Profiling").
//!
//! ```sh
//! cargo build --release -p benches --example profile
//! valgrind --tool=callgrind --callgrind-out-file=target/callgrind.out \
//!     target/release/examples/profile fanout 1000 0 2000
//! callgrind_annotate --inclusive=yes target/callgrind.out | head -40
//! ```
//!
//! The clients speak MQTT 5.0; `PROFILE_PROTOCOL=4` makes them speak 3.1.1 (`fanout`, `route`).
//!
//! Scenarios (`profile SCENARIO [ARGS]`):
//! - `fanout SUBSCRIBERS QOS PUBLISHES`: one topic with SUBSCRIBERS sessions on it; PUBLISHES
//!   messages at QOS, every delivery acknowledged (QoS 1) by the subscribers.
//! - `route SESSIONS FILTERS_PER_SESSION PUBLISHES`: many sessions with distinct exact, `+` and
//!   `#` filters; each publish matches one subscription.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::{Bytes, BytesMut};
use mqtt_session::Timestamp;
use mqtt_session::broker::{Broker, BrokerConfig, ConnectionId, Output};
use mqtt_session::codec::{
    Connect, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// The clients' protocol: MQTT 5.0, or 3.1.1 with `PROFILE_PROTOCOL=4` in the environment.
fn protocol() -> ProtocolVersion {
    static PROTOCOL: std::sync::OnceLock<ProtocolVersion> = std::sync::OnceLock::new();
    *PROTOCOL.get_or_init(|| match std::env::var("PROFILE_PROTOCOL").as_deref() {
        Ok("4") => ProtocolVersion::V3_1_1,
        _ => V5,
    })
}

fn encode(p: &Packet) -> Bytes {
    let mut b = BytesMut::new();
    p.encode(protocol(), &mut b).unwrap();
    b.freeze()
}

fn connect(broker: &mut Broker, id: &str, now: Timestamp) -> ConnectionId {
    let conn = broker.handle_connection_opened(now);
    let mut c = Connect::new(protocol(), id.try_into().unwrap());
    c.clean_start = true;
    c.keep_alive = 0;
    broker.handle_bytes(conn, &encode(&Packet::Connect(Box::new(c))), now);
    conn
}

fn subscribe(
    broker: &mut Broker,
    conn: ConnectionId,
    filters: &[String],
    qos: QoS,
    now: Timestamp,
) {
    for (i, chunk) in filters.chunks(100).enumerate() {
        let s = Subscribe {
            packet_id: PacketId::new(u16::try_from(i % 60_000 + 1).unwrap()).unwrap(),
            properties: Default::default(),
            filters: chunk
                .iter()
                .map(|f| {
                    (
                        TopicFilter::new_v5(f.as_str().try_into().unwrap()).unwrap(),
                        SubscriptionOptions::qos(qos),
                    )
                })
                .collect(),
        };
        broker.handle_bytes(conn, &encode(&Packet::Subscribe(s)), now);
    }
}

/// Drains the outputs; returns the number of transmits and the bytes sent.
fn drain(broker: &mut Broker) -> (usize, usize) {
    let (mut n, mut bytes) = (0, 0);
    let now = Timestamp::from_secs(1_700_000_000);
    while let Some(out) = broker.poll_output() {
        match out {
            Output::Persist { seq, .. } => broker.handle_committed(seq),
            Output::TransmitReady { connection } => {
                while let Some(data) = broker.poll_transmit(connection, usize::MAX, now) {
                    n += 1;
                    bytes += data.len();
                }
            }
            _ => {}
        }
    }
    (n, bytes)
}

fn publish_bytes(topic: &str, qos: QoS, id: u16) -> Bytes {
    let mut p = Publish::new(
        TopicName::new(topic.try_into().unwrap()).unwrap(),
        Bytes::from_static(&[0x5a; 64]),
    );
    p.qos = qos;
    p.packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        PacketId::new(id)
    };
    encode(&Packet::Publish(p))
}

fn config() -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.max_inflight = u16::MAX;
    c.receive_maximum = u16::MAX;
    c
}

fn fanout(subscribers: usize, qos: QoS, publishes: usize) {
    let now = Timestamp::from_secs(1_700_000_000);
    let mut broker = Broker::new(config());
    let conns: Vec<ConnectionId> = (0..subscribers)
        .map(|i| {
            let c = connect(&mut broker, &format!("sub-{i}"), now);
            subscribe(&mut broker, c, &["fan/out/topic".to_owned()], qos, now);
            c
        })
        .collect();
    let publisher = connect(&mut broker, "publisher", now);
    drain(&mut broker);
    let mut deliveries = 0;
    for k in 0..publishes {
        // Packet identifiers run through 1..=65535 and wrap, as the engine allocates them.
        let id = u16::try_from(k % 65_535 + 1).unwrap();
        broker.handle_bytes(publisher, &publish_bytes("fan/out/topic", qos, id), now);
        deliveries += drain(&mut broker).0;
        if qos != QoS::AtMostOnce {
            // Each subscriber's k-th message has packet identifier k mod 65535 + 1 (the engine
            // allocates them in order, and every earlier one has been acknowledged).
            let ack = encode(&Packet::PubAck(PubAck::new(PacketId::new(id).unwrap())));
            for &c in &conns {
                broker.handle_bytes(c, &ack, now);
            }
            drain(&mut broker);
        }
    }
    println!(
        "fanout: {deliveries} transmits for {publishes} publishes to {subscribers} subscribers"
    );
}

fn route(sessions: usize, per_session: usize, publishes: usize) {
    let now = Timestamp::from_secs(1_700_000_000);
    let mut broker = Broker::new(config());
    for s in 0..sessions {
        let c = connect(&mut broker, &format!("s-{s}"), now);
        let filters: Vec<String> = (0..per_session)
            .map(|j| match j % 10 {
                0..=5 => format!("t/{s}/{j}/x"),
                6..=8 => format!("p/{s}/+/{j}"),
                _ => format!("h/{s}/{j}/#"),
            })
            .collect();
        subscribe(&mut broker, c, &filters, QoS::AtMostOnce, now);
    }
    let publisher = connect(&mut broker, "publisher", now);
    drain(&mut broker);
    println!("route: {} subscriptions", broker.subscription_count());
    let topics: Vec<Bytes> = (0..1000)
        .map(|k| {
            let s = (k * 7919) % sessions;
            publish_bytes(&format!("t/{s}/0/x"), QoS::AtMostOnce, 1)
        })
        .collect();
    let mut deliveries = 0;
    for k in 0..publishes {
        broker.handle_bytes(publisher, &topics[k % topics.len()], now);
        deliveries += drain(&mut broker).0;
    }
    println!("route: {deliveries} deliveries for {publishes} publishes");
}

/// Decodes (and drops) the same PUBLISH `n` times through `Decoder::decode(&mut BytesMut)`,
/// as the codec bench does: MQTT 5.0 with Message Expiry and Content Type, or 3.1.1.
fn decode(v5: bool, n: usize) {
    use mqtt_session::codec::{Decoder, Utf8String};
    let version = if v5 { V5 } else { ProtocolVersion::V3_1_1 };
    let mut p = Publish::new(
        TopicName::new("sensors/building-7/floor-3/temp".try_into().unwrap()).unwrap(),
        Bytes::from_static(&[0x5a; 16]),
    );
    if v5 {
        p.properties.message_expiry_interval = Some(3600);
        p.properties
            .set_content_type(Some(Utf8String::try_from("application/json").unwrap()));
    }
    let mut wire = BytesMut::new();
    Packet::Publish(p).encode(version, &mut wire).unwrap();
    let mut decoder = Decoder::with_version(version);
    let mut buf = BytesMut::with_capacity(wire.len() * n);
    for _ in 0..n {
        buf.extend_from_slice(&wire);
    }
    // The shared representation a long-lived read buffer has after its first split.
    drop(buf.split_to(0));
    let mut count = 0;
    if std::env::var_os("BORROWED").is_some() {
        use mqtt_session::codec::{PublishRef, Status, read_fixed_header};
        let mut rest = &buf[..];
        while let Ok(Status::Complete(h)) = read_fixed_header(rest, Some(version), u32::MAX) {
            let body = &rest[h.header_length..h.packet_length()];
            let p = PublishRef::decode(h.first_byte, body, version).unwrap();
            std::hint::black_box(&p);
            rest = &rest[h.packet_length()..];
            count += 1;
        }
        println!("decode (borrowed): {count} packets of {} bytes", wire.len());
        return;
    }
    while let Some(packet) = decoder.decode(&mut buf).unwrap() {
        std::hint::black_box(&packet);
        count += 1;
    }
    println!("decode: {count} packets of {} bytes", wire.len());
}

/// Encodes the PUBLISH of `decode` `n` times into a buffer cleared each time, owned
/// (`Packet::encode`) or, with BORROWED set, borrowed (`PublishRef::encode`).
fn encode_loop(v5: bool, n: usize) {
    use mqtt_session::codec::{PublishRef, Status, Utf8String, read_fixed_header};
    let version = if v5 { V5 } else { ProtocolVersion::V3_1_1 };
    let mut p = Publish::new(
        TopicName::new("sensors/building-7/floor-3/temp".try_into().unwrap()).unwrap(),
        Bytes::from_static(&[0x5a; 16]),
    );
    if v5 {
        p.properties.message_expiry_interval = Some(3600);
        p.properties
            .set_content_type(Some(Utf8String::try_from("application/json").unwrap()));
    }
    let packet = Packet::Publish(p);
    let mut wire = BytesMut::new();
    packet.encode(version, &mut wire).unwrap();
    let Ok(Status::Complete(h)) = read_fixed_header(&wire, Some(version), u32::MAX) else {
        panic!("framing")
    };
    let r = PublishRef::decode(h.first_byte, &wire[h.header_length..], version).unwrap();
    let mut buf = BytesMut::with_capacity(256);
    let borrowed = std::env::var_os("BORROWED").is_some();
    let mut total = 0;
    for _ in 0..n {
        buf.clear();
        total += if borrowed {
            r.encode(version, &mut buf).unwrap()
        } else {
            packet.encode(version, &mut buf).unwrap()
        };
        std::hint::black_box(&buf);
    }
    println!("encode: {total} bytes");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let qos = |i: usize| match num(i, 0) {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    match args.first().map(String::as_str) {
        Some("fanout") => fanout(num(1, 1000), qos(2), num(3, 1000)),
        Some("encode") => encode_loop(num(1, 5) == 5, num(2, 100_000)),
        Some("decode") => decode(num(1, 5) == 5, num(2, 100_000)),
        Some("route") => route(num(1, 10_000), num(2, 10), num(3, 100_000)),
        _ => {
            eprintln!(
                "usage: profile fanout SUBSCRIBERS QOS PUBLISHES | route SESSIONS FILTERS PUBLISHES"
            );
            std::process::exit(64);
        }
    }
}
