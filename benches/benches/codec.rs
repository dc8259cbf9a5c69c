//! Codec benchmarks: `mqtt-codec` beside the MQTT codecs of other Rust crates, measured in the
//! same run on the same bytes.
//!
//! # What is measured
//!
//! Six cases, each for MQTT 3.1.1 (`-v311`) and 5.0 (`-v5`): PUBLISH QoS 0 with 16 bytes,
//! QoS 1 with 1 KiB and with 64 KiB, CONNECT with properties and a will, SUBSCRIBE with ten
//! filters, and a mixed stream of 20 packets. Criterion groups are `decode/<case>-<version>`
//! and `encode/<case>-<version>`; the benchmark ids in a group are the contenders:
//!
//! | id | crate and API |
//! |---|---|
//! | `ours` | `mqtt_codec`: `Decoder::decode(&mut BytesMut)`, `Packet::encode(version, &mut BytesMut)` |
//! | `ours-borrowed` | `mqtt_codec`'s borrowed views: `Decoder::decode_ref(&[u8])` → `PacketRef` (every case); `PublishRef::encode` (PUBLISH cases) |
//! | `rumqttc` | rumqttc 0.25's own codec: `rumqttc::mqttbytes::v4::Packet` for 3.1.1, `rumqttc::v5::mqttbytes::v5::Packet` for 5.0 (`read(&mut BytesMut, max)`, `write(&mut BytesMut, max)`) |
//! | `mqttbytes` | mqttbytes 0.6: `mqttbytes::v4::read` / `mqttbytes::v5::read`, and each packet struct's `write` |
//! | `mqtt-protocol-core` | mqtt-protocol-core 0.7, the way its `Connection` receives: `PacketBuilder::feed` frames, then the packet type's `parse` (`RawPacket::parse_exact`, `GenericPublish::parse`); encoding is `GenericPacketTrait::to_buffers` copied into a reusable `Vec<u8>` (it has no encode-into-buffer API) |
//! | `mqttrs` | mqttrs 0.4 (3.1.1 only): `decode_slice`, `encode_slice` |
//!
//! The packets: PUBLISH to `sensors/building-7/floor-3/temp` (31 bytes), in MQTT 5.0 with a
//! Message Expiry Interval and a Content Type; CONNECT with Clean Start, Keep Alive, user
//! name, password and a QoS 1 retained will, in 5.0 also Session Expiry Interval, Receive
//! Maximum, a User Property and a Will Delay Interval; SUBSCRIBE with ten filters (exact, `+`
//! and `#`; in 5.0 with No Local, Retain As Published, Retain Handling and a Subscription
//! Identifier). The mixed stream: PUBLISH QoS 0, 1 and 2 of 6 to 256 bytes, PUBACK, PUBREC,
//! PUBREL, PUBCOMP, PINGREQ, PINGRESP, SUBSCRIBE, SUBACK and UNSUBACK, both directions of a
//! connection mixed (the codecs do not care which side they are on). It has no UNSUBSCRIBE:
//! mqttbytes 0.6 left a `dbg!` in its MQTT 5.0 UNSUBSCRIBE decoder, which would time writes
//! to stderr.
//!
//! Every case's wire bytes are made once by our encoder. Before anything is timed, each
//! contender must decode exactly those bytes into a packet equal to the one it builds itself,
//! and its encoding of that packet must be byte-identical to ours: the contenders are
//! compared on the same packets, not on packets of the same name.
//!
//! # Decoding
//!
//! Each contender decodes from a ready buffer holding the whole case (one packet, or the 20
//! of the stream), packet after packet to the end. The buffer is a fresh copy made in the
//! untimed setup of `iter_batched_ref`, for every contender alike (batches of about 256 KiB of
//! inputs, so that they are in the cache as a read buffer would be). The contenders that
//! consume a `BytesMut` (ours, rumqttc, mqttbytes) get it in the shared representation that a
//! long-lived read buffer has after its first split, so none of them pays `bytes`' one-time
//! promotion of a fresh buffer; mqtt-protocol-core and mqttrs read the same fresh copy as a
//! `&[u8]`. mqttrs's `decode_slice` does not say how long the packet was, so its stream loop
//! reads the Remaining Length itself to step to the next packet. Every decoded packet is
//! passed through `black_box` and dropped inside the timed routine, for every contender.
//!
//! # Encoding
//!
//! Each contender encodes packet values built beforehand (all of the case's packets, in
//! order) into one reusable buffer, cleared each iteration: a `BytesMut` for ours, rumqttc
//! and mqttbytes, a `Vec<u8>` for mqtt-protocol-core, a `[u8]` of the exact size for mqttrs.
//! (mqtt-protocol-core's builders already hold most of a packet in wire form, so part of its
//! encoding cost is in building the packet, which is not timed.)
//!
//! # Reported
//!
//! Criterion reports the time per iteration (one packet, or the whole stream for
//! `mixed_stream`) and, with `Throughput::Bytes` of the encoded case, bytes per second.
//! Besides, written by `benches::Extras` to `target/criterion/extra/codec.json`:
//!
//! - for each (group, id): `allocs`, `alloc_bytes` and `retained_bytes` per iteration of
//!   exactly the timed operation, counted over 1000 iterations by the counting global
//!   allocator (installed for every contender alike, so the small cost of counting is paid by
//!   all); `packets` (per iteration: 1, or 20 for `mixed_stream`) and `wire_bytes` (the
//!   latter on `ours` only: it is the same for every contender);
//! - group `strictness`, id `<contender>-<version>`: metric `rejects:<case>` for a handful of
//!   malformed packets: 1 when the contender returns an error, 0 when it accepts the packet,
//!   2 when it panics. Each malformed packet has a well-formed twin that every contender must
//!   accept, so that a rejection is for the defect the case names. Not timed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::num::NonZeroU16;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use benches::{Extras, count_allocs};
use bytes::{BufMut, Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};

use mqtt_codec as ours;
use mqtt_protocol_core::mqtt as mpc;
use mqttbytes::v4 as mb4;
use mqttbytes::v5 as mb5;
use rumqttc::mqttbytes::v4 as rq4;
use rumqttc::v5::mqttbytes::v5 as rq5;

use mpc::packet::GenericPacketTrait as _;

#[global_allocator]
static GLOBAL: &benches::Counting = &benches::INSTRUMENTED_SYSTEM;

/// Iterations of each operation counted for allocations.
const ALLOC_ITERS: usize = 1000;

// ---------------------------------------------------------------------------------------------
// The packets, described once and built by every contender.
// ---------------------------------------------------------------------------------------------

const TOPIC: &str = "sensors/building-7/floor-3/temp";
const PAYLOAD_16: &[u8; 16] = br#"{"temp":21.5625}"#;
const CLIENT_ID: &str = "bench-client-0001";
const KEEP_ALIVE: u16 = 30;
const SESSION_EXPIRY: u32 = 3600;
const RECEIVE_MAXIMUM: u16 = 32;
const USER_PROPERTY: (&str, &str) = ("region", "eu-west-1");
const WILL_TOPIC: &str = "clients/bench-client-0001/status";
const WILL_PAYLOAD: &[u8] = br#"{"state":"offline"}"#;
const WILL_DELAY: u32 = 30;
const USERNAME: &str = "bench-user";
// ASCII: rumqttc and mqttbytes keep the password as a `String`.
const PASSWORD: &str = "s3cret-password";
const MESSAGE_EXPIRY: u32 = 3600;
const CONTENT_TYPE: &str = "application/json";

/// The protocol version of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    V311,
    V5,
}

impl V {
    fn suffix(self) -> &'static str {
        match self {
            V::V311 => "v311",
            V::V5 => "v5",
        }
    }

    fn ours(self) -> ours::ProtocolVersion {
        match self {
            V::V311 => ours::ProtocolVersion::V3_1_1,
            V::V5 => ours::ProtocolVersion::V5,
        }
    }

    fn is_v5(self) -> bool {
        self == V::V5
    }
}

/// A PUBLISH. In MQTT 5.0 it carries a Message Expiry Interval and a Content Type.
#[derive(Debug, Clone)]
struct PubSpec {
    qos: u8,
    pid: u16,
    retain: bool,
    topic: &'static str,
    payload: Bytes,
    props: bool,
}

/// One Topic Filter of a SUBSCRIBE with its options (only `qos` in MQTT 3.1.1).
#[derive(Debug, Clone, Copy)]
struct FilterSpec {
    filter: &'static str,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
}

#[derive(Debug, Clone)]
struct SubSpec {
    pid: u16,
    filters: Vec<FilterSpec>,
    subscription_id: Option<u32>,
}

/// A packet, as every contender builds it. The specs of a case are already right for its
/// version (no 5.0 field in a 3.1.1 case).
#[derive(Debug, Clone)]
enum Spec {
    /// The CONNECT of `connect_props_will`: Clean Start, Keep Alive, a QoS 1 retained will,
    /// user name and password; in MQTT 5.0 also Session Expiry Interval, Receive Maximum, a
    /// User Property and a Will Delay Interval.
    Connect,
    Publish(PubSpec),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe(SubSpec),
    /// Packet id and the granted QoS of each filter.
    SubAck(u16, Vec<u8>),
    /// Packet id and the number of filters (MQTT 5.0 has one reason code each).
    UnsubAck(u16, usize),
    PingReq,
    PingResp,
}

/// A case: its packets and their wire bytes (made by our encoder).
struct Case {
    name: &'static str,
    v: V,
    specs: Vec<Spec>,
    wire: Bytes,
}

fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| b'a' + u8::try_from(i % 26).unwrap())
        .collect::<Vec<u8>>()
        .into()
}

fn publish(qos: u8, pid: u16, topic: &'static str, payload: Bytes, v: V) -> Spec {
    Spec::Publish(PubSpec {
        qos,
        pid,
        retain: false,
        topic,
        payload,
        props: v.is_v5(),
    })
}

fn filter(filter: &'static str, qos: u8, nl: bool, rap: bool, rh: u8, v: V) -> FilterSpec {
    if v.is_v5() {
        FilterSpec {
            filter,
            qos,
            no_local: nl,
            retain_as_published: rap,
            retain_handling: rh,
        }
    } else {
        FilterSpec {
            filter,
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }
}

fn ten_filters(v: V) -> Vec<FilterSpec> {
    vec![
        filter("sensors/building-7/floor-3/temp", 1, false, false, 0, v),
        filter("sensors/building-7/+/temp", 1, true, false, 0, v),
        filter("sensors/building-7/floor-3/#", 0, false, true, 1, v),
        filter("alerts/#", 2, false, false, 0, v),
        filter("devices/+/status", 1, true, true, 2, v),
        filter("devices/+/telemetry/+", 0, false, false, 1, v),
        filter("commands/bench-client-0001", 2, true, false, 0, v),
        filter("$SYS/broker/uptime", 0, false, false, 2, v),
        filter("config/+/+/version", 1, false, true, 0, v),
        filter("logs/#", 0, false, false, 0, v),
    ]
}

/// A realistic stretch of one connection: publishes of all three QoS with their
/// acknowledgements, keep-alive pings, a subscription and an unsubscription. Both directions
/// are mixed so that every packet type is decoded (the codecs do not care which side they
/// are on).
fn mixed_stream(v: V) -> Vec<Spec> {
    let sub_id = v.is_v5().then_some(18);
    let mut retained = match publish(1, 4, TOPIC, Bytes::from_static(PAYLOAD_16), v) {
        Spec::Publish(p) => p,
        _ => unreachable!(),
    };
    retained.retain = true;
    vec![
        publish(0, 0, TOPIC, Bytes::from_static(PAYLOAD_16), v),
        publish(1, 1, "sensors/building-7/floor-3/humidity", payload(128), v),
        Spec::PubAck(1),
        Spec::PingReq,
        Spec::PingResp,
        Spec::Subscribe(SubSpec {
            pid: 2,
            filters: ten_filters(v).into_iter().take(3).collect(),
            subscription_id: sub_id,
        }),
        Spec::SubAck(2, vec![1, 1, 0]),
        publish(2, 3, "alerts/building-7/smoke", payload(64), v),
        Spec::PubRec(3),
        Spec::PubRel(3),
        Spec::PubComp(3),
        publish(0, 0, TOPIC, Bytes::from_static(PAYLOAD_16), v),
        Spec::Publish(retained),
        Spec::PubAck(4),
        // No UNSUBSCRIBE: mqttbytes 0.6 has a `dbg!` left in its MQTT 5.0 UNSUBSCRIBE
        // decoder, which would time writes to stderr.
        publish(0, 0, TOPIC, Bytes::from_static(PAYLOAD_16), v),
        Spec::UnsubAck(5, 1),
        publish(
            0,
            0,
            "devices/dev-42/status",
            Bytes::from_static(b"online"),
            v,
        ),
        publish(1, 6, "devices/dev-42/telemetry/power", payload(256), v),
        Spec::PubAck(6),
        Spec::PingReq,
    ]
}

fn build_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for v in [V::V311, V::V5] {
        let list: Vec<(&'static str, Vec<Spec>)> = vec![
            (
                "publish_qos0_16B",
                vec![publish(0, 0, TOPIC, Bytes::from_static(PAYLOAD_16), v)],
            ),
            (
                "publish_qos1_1KiB",
                vec![publish(1, 0x1234, TOPIC, payload(1024), v)],
            ),
            (
                "publish_qos1_64KiB",
                vec![publish(1, 0x1234, TOPIC, payload(64 * 1024), v)],
            ),
            ("connect_props_will", vec![Spec::Connect]),
            (
                "subscribe_10",
                vec![Spec::Subscribe(SubSpec {
                    pid: 42,
                    filters: ten_filters(v),
                    subscription_id: v.is_v5().then_some(17),
                })],
            ),
            ("mixed_stream", mixed_stream(v)),
        ];
        for (name, specs) in list {
            let mut wire = BytesMut::new();
            for s in &specs {
                to_ours(s, v).encode(v.ours(), &mut wire).unwrap();
            }
            cases.push(Case {
                name,
                v,
                specs,
                wire: wire.freeze(),
            });
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// Building each contender's packet values.
// ---------------------------------------------------------------------------------------------

fn to_ours(s: &Spec, v: V) -> ours::Packet {
    use ours::{PacketId, Properties, QoS, ReasonCode, TopicFilter, TopicName, Utf8String};
    let pid = |id: u16| PacketId::new(id).unwrap();
    let qos = |q: u8| QoS::from_bits(q).unwrap();
    let utf8 = |s: &str| Utf8String::try_from(s).unwrap();
    match s {
        Spec::Connect => {
            let mut c = ours::Connect::new(v.ours(), utf8(CLIENT_ID));
            c.clean_start = true;
            c.keep_alive = KEEP_ALIVE;
            let mut will_props = Properties::default();
            if v.is_v5() {
                c.properties.session_expiry_interval = Some(SESSION_EXPIRY);
                c.properties.receive_maximum = NonZeroU16::new(RECEIVE_MAXIMUM);
                c.properties
                    .push_user_property(utf8(USER_PROPERTY.0), utf8(USER_PROPERTY.1));
                will_props.will_delay_interval = Some(WILL_DELAY);
            }
            c.will = Some(ours::Will {
                topic: TopicName::try_from(WILL_TOPIC).unwrap(),
                payload: Bytes::from_static(WILL_PAYLOAD),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: will_props,
            });
            c.username = Some(utf8(USERNAME));
            c.password = Some(Bytes::from_static(PASSWORD.as_bytes()));
            c.into()
        }
        Spec::Publish(p) => {
            let mut m =
                ours::Publish::new(TopicName::try_from(p.topic).unwrap(), p.payload.clone());
            m.qos = qos(p.qos);
            m.packet_id = PacketId::new(p.pid);
            m.retain = p.retain;
            if p.props {
                m.properties.message_expiry_interval = Some(MESSAGE_EXPIRY);
                m.properties.set_content_type(Some(utf8(CONTENT_TYPE)));
            }
            ours::Packet::Publish(m)
        }
        Spec::PubAck(id) => ours::Packet::PubAck(ours::PubAck::new(pid(*id))),
        Spec::PubRec(id) => ours::Packet::PubRec(ours::PubRec::new(pid(*id))),
        Spec::PubRel(id) => ours::Packet::PubRel(ours::PubRel::new(pid(*id))),
        Spec::PubComp(id) => ours::Packet::PubComp(ours::PubComp::new(pid(*id))),
        Spec::Subscribe(sub) => {
            let mut properties = Properties::default();
            if let Some(id) = sub.subscription_id {
                properties.push_subscription_identifier(id).unwrap();
            }
            let filters = sub
                .filters
                .iter()
                .map(|f| {
                    let opts = ours::SubscriptionOptions {
                        qos: qos(f.qos),
                        no_local: f.no_local,
                        retain_as_published: f.retain_as_published,
                        retain_handling: match f.retain_handling {
                            0 => ours::RetainHandling::SendAtSubscribe,
                            1 => ours::RetainHandling::SendIfNew,
                            _ => ours::RetainHandling::DoNotSend,
                        },
                    };
                    (TopicFilter::try_from(f.filter).unwrap(), opts)
                })
                .collect();
            ours::Packet::Subscribe(ours::Subscribe {
                packet_id: pid(sub.pid),
                properties,
                filters,
            })
        }
        Spec::SubAck(id, codes) => ours::Packet::SubAck(ours::SubAck {
            packet_id: pid(*id),
            properties: Properties::default(),
            reason_codes: codes.iter().map(|&c| ReasonCode(c)).collect(),
        }),
        Spec::UnsubAck(id, n) => ours::Packet::UnsubAck(ours::UnsubAck {
            packet_id: pid(*id),
            properties: Properties::default(),
            reason_codes: if v.is_v5() {
                vec![ReasonCode::SUCCESS; *n]
            } else {
                Vec::new()
            },
        }),
        Spec::PingReq => ours::Packet::PingReq,
        Spec::PingResp => ours::Packet::PingResp,
    }
}

fn to_rq4(s: &Spec) -> rq4::Packet {
    use rumqttc::mqttbytes::{Protocol, QoS};
    let qos = |q: u8| rumqttc::mqttbytes::qos(q).unwrap();
    match s {
        Spec::Connect => rq4::Packet::Connect(rq4::Connect {
            protocol: Protocol::V4,
            keep_alive: KEEP_ALIVE,
            client_id: CLIENT_ID.into(),
            clean_session: true,
            last_will: Some(rq4::LastWill::new(
                WILL_TOPIC,
                WILL_PAYLOAD,
                QoS::AtLeastOnce,
                true,
            )),
            login: Some(rq4::Login::new(USERNAME, PASSWORD)),
        }),
        Spec::Publish(p) => rq4::Packet::Publish(rq4::Publish {
            dup: false,
            qos: qos(p.qos),
            retain: p.retain,
            topic: p.topic.into(),
            pkid: p.pid,
            payload: p.payload.clone(),
        }),
        Spec::PubAck(id) => rq4::Packet::PubAck(rq4::PubAck::new(*id)),
        Spec::PubRec(id) => rq4::Packet::PubRec(rq4::PubRec::new(*id)),
        Spec::PubRel(id) => rq4::Packet::PubRel(rq4::PubRel::new(*id)),
        Spec::PubComp(id) => rq4::Packet::PubComp(rq4::PubComp::new(*id)),
        Spec::Subscribe(sub) => rq4::Packet::Subscribe(rq4::Subscribe {
            pkid: sub.pid,
            filters: sub
                .filters
                .iter()
                .map(|f| rq4::SubscribeFilter::new(f.filter.into(), qos(f.qos)))
                .collect(),
        }),
        Spec::SubAck(id, codes) => rq4::Packet::SubAck(rq4::SubAck::new(
            *id,
            codes
                .iter()
                .map(|&c| rq4::SubscribeReasonCode::Success(qos(c)))
                .collect(),
        )),
        Spec::UnsubAck(id, _) => rq4::Packet::UnsubAck(rq4::UnsubAck::new(*id)),
        Spec::PingReq => rq4::Packet::PingReq,
        Spec::PingResp => rq4::Packet::PingResp,
    }
}

fn to_rq5(s: &Spec) -> rq5::Packet {
    use rumqttc::v5::mqttbytes::QoS;
    let qos = |q: u8| rumqttc::v5::mqttbytes::qos(q).unwrap();
    match s {
        Spec::Connect => rq5::Packet::Connect(
            rq5::Connect {
                keep_alive: KEEP_ALIVE,
                client_id: CLIENT_ID.into(),
                clean_start: true,
                properties: Some(rq5::ConnectProperties {
                    session_expiry_interval: Some(SESSION_EXPIRY),
                    receive_maximum: Some(RECEIVE_MAXIMUM),
                    user_properties: vec![(USER_PROPERTY.0.into(), USER_PROPERTY.1.into())],
                    ..rq5::ConnectProperties::new()
                }),
            },
            Some(rq5::LastWill {
                topic: Bytes::from_static(WILL_TOPIC.as_bytes()),
                message: Bytes::from_static(WILL_PAYLOAD),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Some(rq5::LastWillProperties {
                    delay_interval: Some(WILL_DELAY),
                    payload_format_indicator: None,
                    message_expiry_interval: None,
                    content_type: None,
                    response_topic: None,
                    correlation_data: None,
                    user_properties: Vec::new(),
                }),
            }),
            Some(rq5::Login::new(USERNAME, PASSWORD)),
        ),
        Spec::Publish(p) => rq5::Packet::Publish(rq5::Publish {
            dup: false,
            qos: qos(p.qos),
            retain: p.retain,
            topic: Bytes::from_static(p.topic.as_bytes()),
            pkid: p.pid,
            payload: p.payload.clone(),
            properties: p.props.then(|| rq5::PublishProperties {
                message_expiry_interval: Some(MESSAGE_EXPIRY),
                content_type: Some(CONTENT_TYPE.into()),
                ..Default::default()
            }),
        }),
        Spec::PubAck(id) => rq5::Packet::PubAck(rq5::PubAck::new(*id, None)),
        Spec::PubRec(id) => rq5::Packet::PubRec(rq5::PubRec::new(*id, None)),
        Spec::PubRel(id) => rq5::Packet::PubRel(rq5::PubRel::new(*id, None)),
        Spec::PubComp(id) => rq5::Packet::PubComp(rq5::PubComp::new(*id, None)),
        Spec::Subscribe(sub) => rq5::Packet::Subscribe(rq5::Subscribe {
            pkid: sub.pid,
            filters: sub
                .filters
                .iter()
                .map(|f| rq5::Filter {
                    path: f.filter.into(),
                    qos: qos(f.qos),
                    nolocal: f.no_local,
                    preserve_retain: f.retain_as_published,
                    retain_forward_rule: match f.retain_handling {
                        0 => rq5::RetainForwardRule::OnEverySubscribe,
                        1 => rq5::RetainForwardRule::OnNewSubscribe,
                        _ => rq5::RetainForwardRule::Never,
                    },
                })
                .collect(),
            properties: sub.subscription_id.map(|id| rq5::SubscribeProperties {
                id: Some(id as usize),
                user_properties: Vec::new(),
            }),
        }),
        Spec::SubAck(id, codes) => rq5::Packet::SubAck(rq5::SubAck {
            pkid: *id,
            return_codes: codes
                .iter()
                .map(|&c| rq5::SubscribeReasonCode::Success(qos(c)))
                .collect(),
            properties: None,
        }),
        Spec::UnsubAck(id, n) => rq5::Packet::UnsubAck(rq5::UnsubAck {
            pkid: *id,
            reasons: vec![rq5::UnsubAckReason::Success; *n],
            properties: None,
        }),
        Spec::PingReq => rq5::Packet::PingReq(rq5::PingReq),
        Spec::PingResp => rq5::Packet::PingResp(rq5::PingResp),
    }
}

fn mb_qos(q: u8) -> mqttbytes::QoS {
    mqttbytes::qos(q).unwrap()
}

fn to_mb4(s: &Spec) -> mb4::Packet {
    match s {
        Spec::Connect => mb4::Packet::Connect(mb4::Connect {
            protocol: mqttbytes::Protocol::V4,
            keep_alive: KEEP_ALIVE,
            client_id: CLIENT_ID.into(),
            clean_session: true,
            last_will: Some(mb4::LastWill::new(
                WILL_TOPIC,
                WILL_PAYLOAD,
                mqttbytes::QoS::AtLeastOnce,
                true,
            )),
            login: Some(mb4::Login::new(USERNAME, PASSWORD)),
        }),
        Spec::Publish(p) => mb4::Packet::Publish(mb4::Publish {
            dup: false,
            qos: mb_qos(p.qos),
            retain: p.retain,
            topic: p.topic.into(),
            pkid: p.pid,
            payload: p.payload.clone(),
        }),
        Spec::PubAck(id) => mb4::Packet::PubAck(mb4::PubAck::new(*id)),
        Spec::PubRec(id) => mb4::Packet::PubRec(mb4::PubRec::new(*id)),
        Spec::PubRel(id) => mb4::Packet::PubRel(mb4::PubRel::new(*id)),
        Spec::PubComp(id) => mb4::Packet::PubComp(mb4::PubComp::new(*id)),
        Spec::Subscribe(sub) => mb4::Packet::Subscribe(mb4::Subscribe {
            pkid: sub.pid,
            filters: sub
                .filters
                .iter()
                .map(|f| mb4::SubscribeFilter::new(f.filter.into(), mb_qos(f.qos)))
                .collect(),
        }),
        Spec::SubAck(id, codes) => mb4::Packet::SubAck(mb4::SubAck::new(
            *id,
            codes
                .iter()
                .map(|&c| mb4::SubscribeReasonCode::Success(mb_qos(c)))
                .collect(),
        )),
        Spec::UnsubAck(id, _) => mb4::Packet::UnsubAck(mb4::UnsubAck::new(*id)),
        Spec::PingReq => mb4::Packet::PingReq,
        Spec::PingResp => mb4::Packet::PingResp,
    }
}

fn to_mb5(s: &Spec) -> mb5::Packet {
    match s {
        Spec::Connect => mb5::Packet::Connect(mb5::Connect {
            protocol: mqttbytes::Protocol::V5,
            keep_alive: KEEP_ALIVE,
            client_id: CLIENT_ID.into(),
            clean_session: true,
            last_will: Some(mb5::LastWill {
                topic: WILL_TOPIC.into(),
                message: Bytes::from_static(WILL_PAYLOAD),
                qos: mqttbytes::QoS::AtLeastOnce,
                retain: true,
                properties: Some(mb5::WillProperties {
                    delay_interval: Some(WILL_DELAY),
                    payload_format_indicator: None,
                    message_expiry_interval: None,
                    content_type: None,
                    response_topic: None,
                    correlation_data: None,
                    user_properties: Vec::new(),
                }),
            }),
            login: Some(mb5::Login::new(USERNAME, PASSWORD)),
            properties: Some(mb5::ConnectProperties {
                session_expiry_interval: Some(SESSION_EXPIRY),
                receive_maximum: Some(RECEIVE_MAXIMUM),
                max_packet_size: None,
                topic_alias_max: None,
                request_response_info: None,
                request_problem_info: None,
                user_properties: vec![(USER_PROPERTY.0.into(), USER_PROPERTY.1.into())],
                authentication_method: None,
                authentication_data: None,
            }),
        }),
        Spec::Publish(p) => mb5::Packet::Publish(mb5::Publish {
            dup: false,
            qos: mb_qos(p.qos),
            retain: p.retain,
            topic: p.topic.into(),
            pkid: p.pid,
            properties: p.props.then(|| mb5::PublishProperties {
                payload_format_indicator: None,
                message_expiry_interval: Some(MESSAGE_EXPIRY),
                topic_alias: None,
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
                subscription_identifiers: Vec::new(),
                content_type: Some(CONTENT_TYPE.into()),
            }),
            payload: p.payload.clone(),
        }),
        Spec::PubAck(id) => mb5::Packet::PubAck(mb5::PubAck::new(*id)),
        Spec::PubRec(id) => mb5::Packet::PubRec(mb5::PubRec::new(*id)),
        Spec::PubRel(id) => mb5::Packet::PubRel(mb5::PubRel::new(*id)),
        Spec::PubComp(id) => mb5::Packet::PubComp(mb5::PubComp::new(*id)),
        Spec::Subscribe(sub) => mb5::Packet::Subscribe(mb5::Subscribe {
            pkid: sub.pid,
            filters: sub
                .filters
                .iter()
                .map(|f| mb5::SubscribeFilter {
                    path: f.filter.into(),
                    qos: mb_qos(f.qos),
                    nolocal: f.no_local,
                    preserve_retain: f.retain_as_published,
                    retain_forward_rule: match f.retain_handling {
                        0 => mb5::RetainForwardRule::OnEverySubscribe,
                        1 => mb5::RetainForwardRule::OnNewSubscribe,
                        _ => mb5::RetainForwardRule::Never,
                    },
                })
                .collect(),
            properties: sub.subscription_id.map(|id| mb5::SubscribeProperties {
                id: Some(id as usize),
                user_properties: Vec::new(),
            }),
        }),
        Spec::SubAck(id, codes) => mb5::Packet::SubAck(mb5::SubAck {
            pkid: *id,
            return_codes: codes
                .iter()
                .map(|&c| match c {
                    0 => mb5::SubscribeReasonCode::QoS0,
                    1 => mb5::SubscribeReasonCode::QoS1,
                    _ => mb5::SubscribeReasonCode::QoS2,
                })
                .collect(),
            properties: None,
        }),
        Spec::UnsubAck(id, n) => mb5::Packet::UnsubAck(mb5::UnsubAck {
            pkid: *id,
            reasons: vec![mb5::UnsubAckReason::Success; *n],
            properties: None,
        }),
        Spec::PingReq => mb5::Packet::PingReq,
        Spec::PingResp => mb5::Packet::PingResp,
    }
}

fn to_mpc(s: &Spec, v: V) -> mpc::packet::Packet {
    use mpc::packet::{
        ContentType, MessageExpiryInterval, Qos, ReceiveMaximum, RetainHandling,
        SessionExpiryInterval, SubEntry, SubOpts, SubscriptionIdentifier, UserProperty,
        WillDelayInterval, v3_1_1 as m3, v5_0 as m5,
    };
    use mpc::result_code::{SubackReasonCode, SubackReturnCode, UnsubackReasonCode};
    let qos = |q: u8| match q {
        0 => Qos::AtMostOnce,
        1 => Qos::AtLeastOnce,
        _ => Qos::ExactlyOnce,
    };
    let entries = |sub: &SubSpec| -> Vec<SubEntry> {
        sub.filters
            .iter()
            .map(|f| {
                let rh = match f.retain_handling {
                    0 => RetainHandling::SendRetained,
                    1 => RetainHandling::SendRetainedIfNotExists,
                    _ => RetainHandling::DoNotSendRetained,
                };
                let opts = SubOpts::new()
                    .set_qos(qos(f.qos))
                    .set_nl(f.no_local)
                    .set_rap(f.retain_as_published)
                    .set_rh(rh);
                SubEntry::new(f.filter, opts).unwrap()
            })
            .collect()
    };
    match (s, v) {
        (Spec::Connect, V::V311) => m3::Connect::builder()
            .client_id(CLIENT_ID)
            .unwrap()
            .clean_session(true)
            .keep_alive(KEEP_ALIVE)
            .will_message(WILL_TOPIC, WILL_PAYLOAD.to_vec(), Qos::AtLeastOnce, true)
            .unwrap()
            .user_name(USERNAME)
            .unwrap()
            .password(PASSWORD)
            .unwrap()
            .build()
            .unwrap()
            .into(),
        (Spec::Connect, V::V5) => m5::Connect::builder()
            .client_id(CLIENT_ID)
            .unwrap()
            .clean_start(true)
            .keep_alive(KEEP_ALIVE)
            .props(vec![
                SessionExpiryInterval::new(SESSION_EXPIRY).unwrap().into(),
                ReceiveMaximum::new(RECEIVE_MAXIMUM).unwrap().into(),
                UserProperty::new(USER_PROPERTY.0, USER_PROPERTY.1)
                    .unwrap()
                    .into(),
            ])
            .will_message(WILL_TOPIC, WILL_PAYLOAD.to_vec(), Qos::AtLeastOnce, true)
            .unwrap()
            .will_props(vec![WillDelayInterval::new(WILL_DELAY).unwrap().into()])
            .user_name(USERNAME)
            .unwrap()
            .password(PASSWORD)
            .unwrap()
            .build()
            .unwrap()
            .into(),
        (Spec::Publish(p), V::V311) => {
            let mut b = m3::Publish::builder()
                .topic_name(p.topic)
                .unwrap()
                .qos(qos(p.qos))
                .retain(p.retain)
                .payload(p.payload.to_vec());
            if p.qos > 0 {
                b = b.packet_id(p.pid);
            }
            b.build().unwrap().into()
        }
        (Spec::Publish(p), V::V5) => {
            let mut b = m5::Publish::builder()
                .topic_name(p.topic)
                .unwrap()
                .qos(qos(p.qos))
                .retain(p.retain)
                .payload(p.payload.to_vec());
            if p.qos > 0 {
                b = b.packet_id(p.pid);
            }
            if p.props {
                b = b.props(vec![
                    MessageExpiryInterval::new(MESSAGE_EXPIRY).unwrap().into(),
                    ContentType::new(CONTENT_TYPE).unwrap().into(),
                ]);
            }
            b.build().unwrap().into()
        }
        (Spec::PubAck(id), V::V311) => m3::Puback::builder().packet_id(*id).build().unwrap().into(),
        (Spec::PubAck(id), V::V5) => m5::Puback::builder().packet_id(*id).build().unwrap().into(),
        (Spec::PubRec(id), V::V311) => m3::Pubrec::builder().packet_id(*id).build().unwrap().into(),
        (Spec::PubRec(id), V::V5) => m5::Pubrec::builder().packet_id(*id).build().unwrap().into(),
        (Spec::PubRel(id), V::V311) => m3::Pubrel::builder().packet_id(*id).build().unwrap().into(),
        (Spec::PubRel(id), V::V5) => m5::Pubrel::builder().packet_id(*id).build().unwrap().into(),
        (Spec::PubComp(id), V::V311) => m3::Pubcomp::builder()
            .packet_id(*id)
            .build()
            .unwrap()
            .into(),
        (Spec::PubComp(id), V::V5) => m5::Pubcomp::builder()
            .packet_id(*id)
            .build()
            .unwrap()
            .into(),
        (Spec::Subscribe(sub), V::V311) => m3::Subscribe::builder()
            .packet_id(sub.pid)
            .entries(entries(sub))
            .build()
            .unwrap()
            .into(),
        (Spec::Subscribe(sub), V::V5) => {
            let mut b = m5::Subscribe::builder()
                .packet_id(sub.pid)
                .entries(entries(sub));
            if let Some(id) = sub.subscription_id {
                b = b.props(vec![SubscriptionIdentifier::new(id).unwrap().into()]);
            }
            b.build().unwrap().into()
        }
        (Spec::SubAck(id, codes), V::V311) => m3::Suback::builder()
            .packet_id(*id)
            .return_codes(
                codes
                    .iter()
                    .map(|&c| match c {
                        0 => SubackReturnCode::SuccessMaximumQos0,
                        1 => SubackReturnCode::SuccessMaximumQos1,
                        _ => SubackReturnCode::SuccessMaximumQos2,
                    })
                    .collect(),
            )
            .build()
            .unwrap()
            .into(),
        (Spec::SubAck(id, codes), V::V5) => m5::Suback::builder()
            .packet_id(*id)
            .reason_codes(
                codes
                    .iter()
                    .map(|&c| match c {
                        0 => SubackReasonCode::GrantedQos0,
                        1 => SubackReasonCode::GrantedQos1,
                        _ => SubackReasonCode::GrantedQos2,
                    })
                    .collect(),
            )
            .build()
            .unwrap()
            .into(),
        (Spec::UnsubAck(id, _), V::V311) => m3::Unsuback::builder()
            .packet_id(*id)
            .build()
            .unwrap()
            .into(),
        (Spec::UnsubAck(id, n), V::V5) => m5::Unsuback::builder()
            .packet_id(*id)
            .reason_codes(vec![UnsubackReasonCode::Success; *n])
            .build()
            .unwrap()
            .into(),
        (Spec::PingReq, V::V311) => m3::Pingreq::new().into(),
        (Spec::PingReq, V::V5) => m5::Pingreq::new().into(),
        (Spec::PingResp, V::V311) => m3::Pingresp::new().into(),
        (Spec::PingResp, V::V5) => m5::Pingresp::new().into(),
    }
}

fn to_mqttrs(s: &Spec) -> mqttrs::Packet<'_> {
    use mqttrs::{Pid, QoS, QosPid};
    let pid = |id: u16| Pid::try_from(id).unwrap();
    let qos = |q: u8| match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    match s {
        Spec::Connect => mqttrs::Packet::Connect(mqttrs::Connect {
            protocol: mqttrs::Protocol::MQTT311,
            keep_alive: KEEP_ALIVE,
            client_id: CLIENT_ID,
            clean_session: true,
            last_will: Some(mqttrs::LastWill {
                topic: WILL_TOPIC,
                message: WILL_PAYLOAD,
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            username: Some(USERNAME),
            password: Some(PASSWORD.as_bytes()),
        }),
        Spec::Publish(p) => mqttrs::Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: match p.qos {
                0 => QosPid::AtMostOnce,
                1 => QosPid::AtLeastOnce(pid(p.pid)),
                _ => QosPid::ExactlyOnce(pid(p.pid)),
            },
            retain: p.retain,
            topic_name: p.topic,
            payload: &p.payload,
        }),
        Spec::PubAck(id) => mqttrs::Packet::Puback(pid(*id)),
        Spec::PubRec(id) => mqttrs::Packet::Pubrec(pid(*id)),
        Spec::PubRel(id) => mqttrs::Packet::Pubrel(pid(*id)),
        Spec::PubComp(id) => mqttrs::Packet::Pubcomp(pid(*id)),
        Spec::Subscribe(sub) => mqttrs::Packet::Subscribe(mqttrs::Subscribe::new(
            pid(sub.pid),
            sub.filters
                .iter()
                .map(|f| mqttrs::SubscribeTopic {
                    topic_path: f.filter.to_owned(),
                    qos: qos(f.qos),
                })
                .collect(),
        )),
        Spec::SubAck(id, codes) => mqttrs::Packet::Suback(mqttrs::Suback::new(
            pid(*id),
            codes
                .iter()
                .map(|&c| mqttrs::SubscribeReturnCodes::Success(qos(c)))
                .collect(),
        )),
        Spec::UnsubAck(id, _) => mqttrs::Packet::Unsuback(pid(*id)),
        Spec::PingReq => mqttrs::Packet::Pingreq,
        Spec::PingResp => mqttrs::Packet::Pingresp,
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding a whole buffer, packet after packet. Each decoded packet goes to `sink`: in the
// benchmarks `black_box` and drop, in the checks a `Vec`. The result is the packet count.
// ---------------------------------------------------------------------------------------------

type DecodeResult = Result<usize, String>;

fn dec_ours(
    d: &mut ours::Decoder,
    buf: &mut BytesMut,
    mut sink: impl FnMut(ours::Packet),
) -> DecodeResult {
    let mut n = 0;
    while !buf.is_empty() {
        match d.decode(buf) {
            Ok(Some(p)) => sink(p),
            Ok(None) => return Err("incomplete".into()),
            Err(e) => return Err(e.to_string()),
        }
        n += 1;
    }
    Ok(n)
}

/// Our borrowed decoder (`PacketRef`): `Decoder::decode_ref` on the buffer, in place.
fn dec_ours_ref<'a>(
    buf: &'a [u8],
    v: V,
    mut sink: impl FnMut(ours::PacketRef<'a>),
) -> DecodeResult {
    let mut decoder = ours::Decoder::with_version(v.ours());
    let mut rest = buf;
    let mut n = 0;
    while !rest.is_empty() {
        match decoder.decode_ref(rest) {
            Ok(ours::Status::Complete((p, used))) => {
                sink(p);
                rest = rest.get(used..).unwrap_or_default();
            }
            Ok(ours::Status::Incomplete(_)) => return Err("incomplete".into()),
            Err(e) => return Err(e.to_string()),
        }
        n += 1;
    }
    Ok(n)
}

fn dec_rq4(buf: &mut BytesMut, mut sink: impl FnMut(rq4::Packet)) -> DecodeResult {
    let mut n = 0;
    while !buf.is_empty() {
        sink(rq4::Packet::read(buf, usize::MAX).map_err(|e| e.to_string())?);
        n += 1;
    }
    Ok(n)
}

fn dec_rq5(buf: &mut BytesMut, mut sink: impl FnMut(rq5::Packet)) -> DecodeResult {
    let mut n = 0;
    while !buf.is_empty() {
        sink(rq5::Packet::read(buf, None).map_err(|e| e.to_string())?);
        n += 1;
    }
    Ok(n)
}

fn dec_mb4(buf: &mut BytesMut, mut sink: impl FnMut(mb4::Packet)) -> DecodeResult {
    let mut n = 0;
    while !buf.is_empty() {
        sink(mb4::read(buf, usize::MAX).map_err(|e| format!("{e:?}"))?);
        n += 1;
    }
    Ok(n)
}

fn dec_mb5(buf: &mut BytesMut, mut sink: impl FnMut(mb5::Packet)) -> DecodeResult {
    let mut n = 0;
    while !buf.is_empty() {
        sink(mb5::read(buf, usize::MAX).map_err(|e| format!("{e:?}"))?);
        n += 1;
    }
    Ok(n)
}

/// What mqtt-protocol-core's `Connection` does with a framed packet once it knows the
/// version (`process_recv_packet`), without the connection's state checks.
fn mpc_parse(
    raw: &mpc::connection::RawPacket,
    v: V,
) -> Result<mpc::packet::Packet, mpc::result_code::MqttError> {
    use mpc::connection::PacketData;
    use mpc::packet::{v3_1_1 as m3, v5_0 as m5};
    use mpc::result_code::MqttError;
    Ok(match (raw.packet_type(), v) {
        (1, V::V311) => raw.parse_exact(m3::Connect::parse)?.into(),
        (1, V::V5) => raw.parse_exact(m5::Connect::parse)?.into(),
        (2, V::V311) => raw.parse_exact(m3::Connack::parse)?.into(),
        (2, V::V5) => raw.parse_exact(m5::Connack::parse)?.into(),
        (3, _) => {
            let PacketData::Publish(arc) = &raw.data else {
                return Err(MqttError::MalformedPacket);
            };
            match v {
                V::V311 => m3::Publish::parse(raw.flags(), arc.clone())?.0.into(),
                V::V5 => m5::Publish::parse(raw.flags(), arc.clone())?.0.into(),
            }
        }
        (4, V::V311) => raw.parse_exact(m3::Puback::parse)?.into(),
        (4, V::V5) => raw.parse_exact(m5::Puback::parse)?.into(),
        (5, V::V311) => raw.parse_exact(m3::Pubrec::parse)?.into(),
        (5, V::V5) => raw.parse_exact(m5::Pubrec::parse)?.into(),
        (6, V::V311) => raw.parse_exact(m3::Pubrel::parse)?.into(),
        (6, V::V5) => raw.parse_exact(m5::Pubrel::parse)?.into(),
        (7, V::V311) => raw.parse_exact(m3::Pubcomp::parse)?.into(),
        (7, V::V5) => raw.parse_exact(m5::Pubcomp::parse)?.into(),
        (8, V::V311) => raw.parse_exact(m3::Subscribe::parse)?.into(),
        (8, V::V5) => raw.parse_exact(m5::Subscribe::parse)?.into(),
        (9, V::V311) => raw.parse_exact(m3::Suback::parse)?.into(),
        (9, V::V5) => raw.parse_exact(m5::Suback::parse)?.into(),
        (10, V::V311) => raw.parse_exact(m3::Unsubscribe::parse)?.into(),
        (10, V::V5) => raw.parse_exact(m5::Unsubscribe::parse)?.into(),
        (11, V::V311) => raw.parse_exact(m3::Unsuback::parse)?.into(),
        (11, V::V5) => raw.parse_exact(m5::Unsuback::parse)?.into(),
        (12, V::V311) => raw.parse_exact(m3::Pingreq::parse)?.into(),
        (12, V::V5) => raw.parse_exact(m5::Pingreq::parse)?.into(),
        (13, V::V311) => raw.parse_exact(m3::Pingresp::parse)?.into(),
        (13, V::V5) => raw.parse_exact(m5::Pingresp::parse)?.into(),
        (14, V::V311) => raw.parse_exact(m3::Disconnect::parse)?.into(),
        (14, V::V5) => raw.parse_exact(m5::Disconnect::parse)?.into(),
        (15, V::V5) => raw.parse_exact(m5::Auth::parse)?.into(),
        _ => return Err(MqttError::MalformedPacket),
    })
}

fn dec_mpc(
    builder: &mut mpc::connection::PacketBuilder,
    buf: &[u8],
    v: V,
    mut sink: impl FnMut(mpc::packet::Packet),
) -> DecodeResult {
    use mpc::connection::PacketBuildResult;
    let mut cursor = mpc::common::Cursor::new(buf);
    let mut n = 0;
    while cursor.position() < buf.len() as u64 {
        match builder.feed(&mut cursor) {
            PacketBuildResult::Complete(raw) => {
                sink(mpc_parse(&raw, v).map_err(|e| format!("{e:?}"))?);
                n += 1;
            }
            PacketBuildResult::Incomplete => {
                builder.reset();
                return Err("incomplete".into());
            }
            PacketBuildResult::Error(e) => return Err(format!("{e:?}")),
        }
    }
    Ok(n)
}

/// The length of the packet at the start of `buf`, from its Remaining Length (mqttrs's
/// `decode_slice` does not return it).
fn frame_len(buf: &[u8]) -> Option<usize> {
    let mut len = 0;
    for i in 1..5 {
        let b = *buf.get(i)?;
        len |= usize::from(b & 0x7F) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some(i + 1 + len);
        }
    }
    None
}

fn dec_mqttrs<'a>(buf: &'a [u8], mut sink: impl FnMut(mqttrs::Packet<'a>)) -> DecodeResult {
    let mut off = 0;
    let mut n = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        match mqttrs::decode_slice(rest) {
            Ok(Some(p)) => sink(p),
            Ok(None) => return Err("incomplete".into()),
            Err(e) => return Err(format!("{e:?}")),
        }
        off += frame_len(rest).ok_or("bad remaining length")?;
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Encoding a list of packets into a reusable buffer.
// ---------------------------------------------------------------------------------------------

type EncodeResult = Result<usize, String>;

fn enc_ours(packets: &[ours::Packet], v: V, buf: &mut BytesMut) -> EncodeResult {
    buf.clear();
    for p in packets {
        p.encode(v.ours(), buf).map_err(|e| e.to_string())?;
    }
    Ok(buf.len())
}

fn enc_ours_ref(packets: &[ours::PublishRef<'_>], v: V, buf: &mut BytesMut) -> EncodeResult {
    buf.clear();
    for p in packets {
        p.encode(v.ours(), buf).map_err(|e| e.to_string())?;
    }
    Ok(buf.len())
}

fn enc_rq4(packets: &[rq4::Packet], buf: &mut BytesMut) -> EncodeResult {
    buf.clear();
    for p in packets {
        p.write(buf, usize::MAX).map_err(|e| e.to_string())?;
    }
    Ok(buf.len())
}

fn enc_rq5(packets: &[rq5::Packet], buf: &mut BytesMut) -> EncodeResult {
    buf.clear();
    for p in packets {
        p.write(buf, None).map_err(|e| e.to_string())?;
    }
    Ok(buf.len())
}

fn enc_mb4(packets: &[mb4::Packet], buf: &mut BytesMut) -> EncodeResult {
    buf.clear();
    for p in packets {
        let r = match p {
            mb4::Packet::Connect(x) => x.write(buf),
            mb4::Packet::ConnAck(x) => x.write(buf),
            mb4::Packet::Publish(x) => x.write(buf),
            mb4::Packet::PubAck(x) => x.write(buf),
            mb4::Packet::PubRec(x) => x.write(buf),
            mb4::Packet::PubRel(x) => x.write(buf),
            mb4::Packet::PubComp(x) => x.write(buf),
            mb4::Packet::Subscribe(x) => x.write(buf),
            mb4::Packet::SubAck(x) => x.write(buf),
            mb4::Packet::Unsubscribe(x) => x.write(buf),
            mb4::Packet::UnsubAck(x) => x.write(buf),
            mb4::Packet::PingReq => mb4::PingReq.write(buf),
            mb4::Packet::PingResp => mb4::PingResp.write(buf),
            mb4::Packet::Disconnect => mb4::Disconnect.write(buf),
        };
        r.map_err(|e| format!("{e:?}"))?;
    }
    Ok(buf.len())
}

fn enc_mb5(packets: &[mb5::Packet], buf: &mut BytesMut) -> EncodeResult {
    buf.clear();
    for p in packets {
        let r = match p {
            mb5::Packet::Connect(x) => x.write(buf),
            mb5::Packet::ConnAck(x) => x.write(buf),
            mb5::Packet::Publish(x) => x.write(buf),
            mb5::Packet::PubAck(x) => x.write(buf),
            mb5::Packet::PubRec(x) => x.write(buf),
            mb5::Packet::PubRel(x) => x.write(buf),
            mb5::Packet::PubComp(x) => x.write(buf),
            mb5::Packet::Subscribe(x) => x.write(buf),
            mb5::Packet::SubAck(x) => x.write(buf),
            mb5::Packet::Unsubscribe(x) => x.write(buf),
            mb5::Packet::UnsubAck(x) => x.write(buf),
            mb5::Packet::PingReq => mb5::PingReq.write(buf),
            mb5::Packet::PingResp => mb5::PingResp.write(buf),
            mb5::Packet::Disconnect(x) => x.write(buf),
        };
        r.map_err(|e| format!("{e:?}"))?;
    }
    Ok(buf.len())
}

fn enc_mpc(packets: &[mpc::packet::Packet], buf: &mut Vec<u8>) -> EncodeResult {
    buf.clear();
    for p in packets {
        for slice in p.to_buffers() {
            buf.extend_from_slice(&slice);
        }
    }
    Ok(buf.len())
}

fn enc_mqttrs(packets: &[mqttrs::Packet<'_>], buf: &mut [u8]) -> EncodeResult {
    let mut off = 0;
    for p in packets {
        off += mqttrs::encode_slice(p, &mut buf[off..]).map_err(|e| format!("{e:?}"))?;
    }
    Ok(off)
}

// ---------------------------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------------------------

/// A fresh copy of `wire` in the shared representation a long-lived read buffer has after
/// its first `split_to`: splitting it again only bumps a reference count, as it does for a
/// connection's read buffer in steady state.
fn shared_copy(wire: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(wire.len());
    buf.put_slice(wire);
    drop(buf.split_to(0));
    buf
}

/// How many inputs one timed batch prepares: about 256 KiB of them, so that they stay in
/// the cache as they would in a read buffer, between 4 and 1024.
fn batch_size(wire_len: usize) -> u64 {
    u64::try_from((256 * 1024 / (wire_len + 64)).clamp(4, 1024)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Checks: every contender decodes our bytes to its own packets and encodes them to our bytes.
// ---------------------------------------------------------------------------------------------

fn assert_wire(who: &str, case: &str, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{who} does not encode {case} as we do:\n got  {got:02x?}\n want {want:02x?}"
    );
}

fn check_decoded<T: PartialEq + std::fmt::Debug>(
    who: &str,
    case: &str,
    r: DecodeResult,
    got: &[T],
    want: &[T],
) {
    assert_eq!(r, Ok(want.len()), "{who} failed to decode {case}");
    assert!(
        got == want,
        "{who} decodes {case} to other packets than it builds:\n got  {got:?}\n want {want:?}"
    );
}

/// The sink of the timed decoders: the packet is made observable, then dropped.
fn drop_it<T>(p: T) {
    drop(black_box(p));
}

// ---------------------------------------------------------------------------------------------
// Benchmark plumbing.
// ---------------------------------------------------------------------------------------------

/// Counts the allocations of `routine` on inputs from `setup`, then times it.
#[allow(clippy::too_many_arguments)]
fn bench_decode<I, O>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    extras: &mut Extras,
    group: &str,
    id: &str,
    packets: usize,
    batch: u64,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(&mut I) -> O,
) {
    let mut inputs: Vec<I> = (0..ALLOC_ITERS).map(|_| setup()).collect();
    let stats = count_allocs(GLOBAL, ALLOC_ITERS, |i| routine(&mut inputs[i]));
    drop(inputs);
    extras.record_allocs(group, id, stats);
    extras.record(group, id, "packets", packets as f64);
    g.bench_function(id, |b| {
        b.iter_batched_ref(&mut setup, &mut routine, BatchSize::NumIterations(batch));
    });
}

/// Counts the allocations of `routine` (after one warm-up call that sizes the reusable
/// buffer), then times it.
fn bench_encode<O>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    extras: &mut Extras,
    group: &str,
    id: &str,
    packets: usize,
    mut routine: impl FnMut() -> O,
) {
    drop(routine());
    let stats = count_allocs(GLOBAL, ALLOC_ITERS, |_| routine());
    extras.record_allocs(group, id, stats);
    extras.record(group, id, "packets", packets as f64);
    g.bench_function(id, |b| b.iter(&mut routine));
}

fn bench_case(c: &mut Criterion, extras: &mut Extras, case: &Case) {
    let v = case.v;
    let wire: &[u8] = &case.wire;
    let n = case.specs.len();
    let label = format!("{}-{}", case.name, v.suffix());
    let batch = batch_size(wire.len());
    let bytes = Throughput::Bytes(wire.len() as u64);

    // Every contender's own packet values, checked against our bytes in both directions.
    let ours_p: Vec<ours::Packet> = case.specs.iter().map(|s| to_ours(s, v)).collect();
    let mpc_p: Vec<mpc::packet::Packet> = case.specs.iter().map(|s| to_mpc(s, v)).collect();
    let rq4_p: Vec<rq4::Packet> = case.specs.iter().map(to_rq4).collect();
    let rq5_p: Vec<rq5::Packet> = case.specs.iter().map(to_rq5).collect();
    let mb4_p: Vec<mb4::Packet> = case.specs.iter().map(to_mb4).collect();
    let mb5_p: Vec<mb5::Packet> = case.specs.iter().map(to_mb5).collect();
    let mqttrs_p: Vec<mqttrs::Packet<'_>> = case.specs.iter().map(to_mqttrs).collect();
    // Our borrowed PUBLISH (`PublishRef`), for encoding in the PUBLISH cases: the packets
    // borrowed from the case's wire bytes. (Every case decodes borrowed, as `PacketRef`.)
    let is_publish_case = case.name.starts_with("publish");
    let mut ours_ref_p: Vec<ours::PublishRef<'_>> = Vec::new();
    if is_publish_case {
        dec_ours_ref(wire, v, |p| {
            if let ours::PacketRef::Publish(p) = p {
                ours_ref_p.push(p);
            }
        })
        .unwrap();
    }
    {
        let mut buf = BytesMut::new();
        assert_eq!(enc_ours(&ours_p, v, &mut buf), Ok(wire.len()));
        assert_wire("ours", &label, &buf, wire);
        let mut got = Vec::new();
        let r = dec_ours(
            &mut ours::Decoder::with_version(v.ours()),
            &mut shared_copy(wire),
            |p| got.push(p),
        );
        check_decoded("ours", &label, r, &got, &ours_p);
        let mut got = Vec::new();
        let r = dec_ours_ref(wire, v, |p| got.push(p.to_packet()));
        check_decoded("ours-borrowed", &label, r, &got, &ours_p);
        if is_publish_case {
            assert_eq!(enc_ours_ref(&ours_ref_p, v, &mut buf), Ok(wire.len()));
            assert_wire("ours-borrowed", &label, &buf, wire);
        }

        let mut vbuf = Vec::new();
        enc_mpc(&mpc_p, &mut vbuf).unwrap();
        assert_wire("mqtt-protocol-core", &label, &vbuf, wire);
        let mut got = Vec::new();
        let mut builder = mpc::connection::PacketBuilder::new();
        let r = dec_mpc(&mut builder, wire, v, |p| got.push(p));
        check_decoded("mqtt-protocol-core", &label, r, &got, &mpc_p);

        match v {
            V::V311 => {
                enc_rq4(&rq4_p, &mut buf).unwrap();
                assert_wire("rumqttc", &label, &buf, wire);
                let mut got = Vec::new();
                let r = dec_rq4(&mut shared_copy(wire), |p| got.push(p));
                check_decoded("rumqttc", &label, r, &got, &rq4_p);

                enc_mb4(&mb4_p, &mut buf).unwrap();
                assert_wire("mqttbytes", &label, &buf, wire);
                let mut got = Vec::new();
                let r = dec_mb4(&mut shared_copy(wire), |p| got.push(p));
                check_decoded("mqttbytes", &label, r, &got, &mb4_p);

                let mut sbuf = vec![0; wire.len()];
                assert_eq!(enc_mqttrs(&mqttrs_p, &mut sbuf), Ok(wire.len()));
                assert_wire("mqttrs", &label, &sbuf, wire);
                let mut got = Vec::new();
                let r = dec_mqttrs(wire, |p| got.push(p));
                check_decoded("mqttrs", &label, r, &got, &mqttrs_p);
            }
            V::V5 => {
                enc_rq5(&rq5_p, &mut buf).unwrap();
                assert_wire("rumqttc", &label, &buf, wire);
                let mut got = Vec::new();
                let r = dec_rq5(&mut shared_copy(wire), |p| got.push(p));
                check_decoded("rumqttc", &label, r, &got, &rq5_p);

                enc_mb5(&mb5_p, &mut buf).unwrap();
                assert_wire("mqttbytes", &label, &buf, wire);
                let mut got = Vec::new();
                let r = dec_mb5(&mut shared_copy(wire), |p| got.push(p));
                check_decoded("mqttbytes", &label, r, &got, &mb5_p);
            }
        }
    }

    // Decoding.
    let group = format!("decode/{label}");
    let mut g = c.benchmark_group(&group);
    g.throughput(bytes.clone());
    extras.record(&group, "ours", "wire_bytes", wire.len() as f64);
    let mut dec = ours::Decoder::with_version(v.ours());
    bench_decode(
        &mut g,
        extras,
        &group,
        "ours",
        n,
        batch,
        || shared_copy(wire),
        |buf| dec_ours(&mut dec, buf, drop_it),
    );
    bench_decode(
        &mut g,
        extras,
        &group,
        "ours-borrowed",
        n,
        batch,
        || wire.to_vec(),
        |buf| dec_ours_ref(buf, v, drop_it),
    );
    match v {
        V::V311 => {
            bench_decode(
                &mut g,
                extras,
                &group,
                "rumqttc",
                n,
                batch,
                || shared_copy(wire),
                |buf| dec_rq4(buf, drop_it),
            );
            bench_decode(
                &mut g,
                extras,
                &group,
                "mqttbytes",
                n,
                batch,
                || shared_copy(wire),
                |buf| dec_mb4(buf, drop_it),
            );
        }
        V::V5 => {
            bench_decode(
                &mut g,
                extras,
                &group,
                "rumqttc",
                n,
                batch,
                || shared_copy(wire),
                |buf| dec_rq5(buf, drop_it),
            );
            bench_decode(
                &mut g,
                extras,
                &group,
                "mqttbytes",
                n,
                batch,
                || shared_copy(wire),
                |buf| dec_mb5(buf, drop_it),
            );
        }
    }
    let mut builder = mpc::connection::PacketBuilder::new();
    bench_decode(
        &mut g,
        extras,
        &group,
        "mqtt-protocol-core",
        n,
        batch,
        || wire.to_vec(),
        |buf| dec_mpc(&mut builder, buf, v, drop_it),
    );
    if v == V::V311 {
        bench_decode(
            &mut g,
            extras,
            &group,
            "mqttrs",
            n,
            batch,
            || wire.to_vec(),
            |buf| dec_mqttrs(buf, drop_it),
        );
    }
    g.finish();

    // Encoding.
    let group = format!("encode/{label}");
    let mut g = c.benchmark_group(&group);
    g.throughput(bytes);
    extras.record(&group, "ours", "wire_bytes", wire.len() as f64);
    let mut buf = BytesMut::with_capacity(wire.len());
    bench_encode(&mut g, extras, &group, "ours", n, || {
        enc_ours(&ours_p, v, &mut buf)
    });
    if is_publish_case {
        bench_encode(&mut g, extras, &group, "ours-borrowed", n, || {
            enc_ours_ref(&ours_ref_p, v, &mut buf)
        });
    }
    match v {
        V::V311 => {
            bench_encode(&mut g, extras, &group, "rumqttc", n, || {
                enc_rq4(&rq4_p, &mut buf)
            });
            bench_encode(&mut g, extras, &group, "mqttbytes", n, || {
                enc_mb4(&mb4_p, &mut buf)
            });
        }
        V::V5 => {
            bench_encode(&mut g, extras, &group, "rumqttc", n, || {
                enc_rq5(&rq5_p, &mut buf)
            });
            bench_encode(&mut g, extras, &group, "mqttbytes", n, || {
                enc_mb5(&mb5_p, &mut buf)
            });
        }
    }
    let mut vbuf = Vec::with_capacity(wire.len());
    bench_encode(&mut g, extras, &group, "mqtt-protocol-core", n, || {
        enc_mpc(&mpc_p, &mut vbuf)
    });
    if v == V::V311 {
        let mut sbuf = vec![0; wire.len()];
        bench_encode(&mut g, extras, &group, "mqttrs", n, || {
            enc_mqttrs(&mqttrs_p, &mut sbuf)
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Strictness: which malformed packets each contender refuses.
// ---------------------------------------------------------------------------------------------

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = u8::try_from(len % 128).unwrap();
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// One row of the strictness matrix: a malformed packet, and the same packet without its
/// defect, which every contender must accept (so that a rejection is for that defect).
struct Malformed {
    name: &'static str,
    bad: Vec<u8>,
    good: Vec<u8>,
}

/// The malformed packets of the strictness matrix for `v`.
fn malformed(v: V) -> Vec<Malformed> {
    // The Property Length of an empty property list, in MQTT 5.0 only.
    let no_props: &[u8] = if v.is_v5() { &[0] } else { &[] };
    let level: &[u8] = if v.is_v5() { b"\x05" } else { b"\x04" };
    let publish = |first: u8, head: &[u8]| frame(first, &cat(&[head, no_props, b"x"]));
    let connect = |flags: &[u8]| {
        frame(
            0x10,
            &cat(&[
                b"\x00\x04MQTT",
                level,
                flags,
                b"\x00\x1e",
                no_props,
                b"\x00\x04abcd",
            ]),
        )
    };
    let row = |name, bad, good| Malformed { name, bad, good };
    let mut rows = vec![
        // [MQTT-3.3.1-4] both QoS bits set.
        row(
            "publish_qos_3",
            publish(0x36, b"\x00\x03a/b\x00\x01"),
            publish(0x32, b"\x00\x03a/b\x00\x01"),
        ),
        // [MQTT-3.3.2-2] a wildcard in a Topic Name.
        row(
            "publish_topic_wildcard",
            publish(0x30, b"\x00\x05a/+/c"),
            publish(0x30, b"\x00\x05a/b/c"),
        ),
        // [MQTT-1.5.3-1] (v3.1.1 [MQTT-1.5.3-1]) ill-formed UTF-8 ("\xc3\x28").
        row(
            "publish_topic_invalid_utf8",
            publish(0x30, b"\x00\x03a\xc3\x28"),
            publish(0x30, b"\x00\x03a\xc3\xa9"),
        ),
        // [MQTT-2.2.1-3] (v3.1.1 [MQTT-2.3.1-1]) a QoS 1 PUBLISH with Packet Identifier 0.
        row(
            "publish_qos1_packet_id_0",
            publish(0x32, b"\x00\x03a/b\x00\x00"),
            publish(0x32, b"\x00\x03a/b\x00\x01"),
        ),
        // [MQTT-3.8.1-1] SUBSCRIBE fixed-header flags 0000 instead of 0010.
        row(
            "subscribe_reserved_flags",
            frame(0x80, &cat(&[b"\x00\x01", no_props, b"\x00\x03a/b\x01"])),
            frame(0x82, &cat(&[b"\x00\x01", no_props, b"\x00\x03a/b\x01"])),
        ),
        // [MQTT-3.1.2-3] the reserved bit of the CONNECT flags set.
        row("connect_reserved_flag", connect(b"\x03"), connect(b"\x02")),
    ];
    if v.is_v5() {
        rows.extend([
            // Section 2.2.2.2: Session Expiry Interval is not a PUBLISH property.
            row(
                "v5_publish_session_expiry_property",
                frame(0x30, b"\x00\x03a/b\x05\x11\x00\x00\x00\x3cx"),
                frame(0x30, b"\x00\x03a/b\x05\x02\x00\x00\x00\x3cx"),
            ),
            // Section 2.2.2.2: Message Expiry Interval twice.
            row(
                "v5_publish_duplicate_message_expiry",
                frame(
                    0x30,
                    b"\x00\x03a/b\x0a\x02\x00\x00\x00\x3c\x02\x00\x00\x00\x3cx",
                ),
                frame(0x30, b"\x00\x03a/b\x07\x02\x00\x00\x00\x3c\x01\x00x"),
            ),
            // [MQTT-1.5.5-1] Remaining Length 7 written in two bytes.
            row(
                "v5_remaining_length_not_minimal",
                cat(&[b"\x30\x87\x00", b"\x00\x03a/b\x00x"]),
                cat(&[b"\x30\x07", b"\x00\x03a/b\x00x"]),
            ),
        ]);
    }
    rows
}

/// 1 for an error, 0 for a packet accepted, 2 for a panic.
fn verdict(decode: impl FnOnce() -> DecodeResult) -> f64 {
    match panic::catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(_)) => 0.0,
        Ok(Err(_)) => 1.0,
        Err(_) => 2.0,
    }
}

/// The verdicts of every contender of version `v` on `bytes`, as (contender, verdict).
fn verdicts(v: V, b: &[u8]) -> Vec<(&'static str, f64)> {
    let mut out = vec![(
        "ours",
        verdict(|| {
            dec_ours(
                &mut ours::Decoder::with_version(v.ours()),
                &mut BytesMut::from(b),
                drop,
            )
        }),
    )];
    match v {
        V::V311 => {
            out.push(("rumqttc", verdict(|| dec_rq4(&mut BytesMut::from(b), drop))));
            out.push((
                "mqttbytes",
                verdict(|| dec_mb4(&mut BytesMut::from(b), drop)),
            ));
        }
        V::V5 => {
            out.push(("rumqttc", verdict(|| dec_rq5(&mut BytesMut::from(b), drop))));
            out.push((
                "mqttbytes",
                verdict(|| dec_mb5(&mut BytesMut::from(b), drop)),
            ));
        }
    }
    out.push((
        "mqtt-protocol-core",
        verdict(|| dec_mpc(&mut mpc::connection::PacketBuilder::new(), b, v, drop)),
    ));
    if v == V::V311 {
        out.push(("mqttrs", verdict(|| dec_mqttrs(b, drop))));
    }
    out
}

fn strictness(extras: &mut Extras) {
    // Peers may panic on malformed input: counted, not printed.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut rows = Vec::new();
    let mut controls = Vec::new();
    for v in [V::V311, V::V5] {
        for m in malformed(v) {
            for (who, x) in verdicts(v, &m.good) {
                if x != 0.0 {
                    controls.push(format!("{who}-{} {}: {x}", v.suffix(), m.name));
                }
            }
            for (who, x) in verdicts(v, &m.bad) {
                rows.push((format!("{who}-{}", v.suffix()), m.name, x));
            }
        }
    }
    panic::set_hook(hook);
    assert!(
        controls.is_empty(),
        "well-formed controls refused: {controls:?}"
    );
    for (id, name, x) in rows {
        extras.record("strictness", &id, &format!("rejects:{name}"), x);
    }
}

fn codec(c: &mut Criterion) {
    let mut extras = Extras::new("codec");
    strictness(&mut extras);
    for case in build_cases() {
        bench_case(c, &mut extras, &case);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = codec
}
criterion_main!(benches);
