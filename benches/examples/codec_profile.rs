//! A fixed codec workload for profilers: decodes (or encodes) one case of `benches/codec.rs`
//! many times, with nothing else in the process worth counting. Run it under
//! `valgrind --tool=callgrind` (instructions, the same on a busy machine) or `perf record`.
//!
//! ```sh
//! cargo build --release -p benches --example codec_profile
//! valgrind --tool=callgrind --callgrind-out-file=target/callgrind.codec \
//!     target/release/examples/codec_profile decode publish16 5 200000
//! callgrind_annotate --inclusive=yes target/callgrind.codec | head -40
//! ```
//!
//! `codec_profile decode|decode-ref|encode CASE VERSION COUNT`, where CASE is `publish16`
//! (QoS 0, 16 bytes, in 5.0 with a Message Expiry Interval and a Content Type), `connect`
//! (properties and a will), `subscribe10` (ten filters) or `acks` (PUBACK, PUBREC, PUBREL,
//! PUBCOMP), and VERSION is `4` or `5`. The packets are those of `benches/codec.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Connect, Decoder, Packet, PacketId, Properties, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, PublishRef, QoS, RetainHandling, Status, Subscribe, SubscriptionOptions,
    TopicFilter, TopicName, Utf8String, Will, read_fixed_header,
};

fn utf8(s: &str) -> Utf8String {
    Utf8String::try_from(s).unwrap()
}

fn packets(case: &str, v: ProtocolVersion) -> Vec<Packet> {
    let v5 = v.is_v5();
    match case {
        "publish16" => {
            let mut m = Publish::new(
                TopicName::try_from("sensors/building-7/floor-3/temp").unwrap(),
                Bytes::from_static(&[7; 16]),
            );
            if v5 {
                m.properties.message_expiry_interval = Some(3600);
                m.properties
                    .set_content_type(Some(utf8("application/json")));
            }
            vec![m.into()]
        }
        "connect" => {
            let mut c = Connect::new(v, utf8("bench-client-0001"));
            c.clean_start = true;
            c.keep_alive = 60;
            let mut will_props = Properties::default();
            if v5 {
                c.properties.session_expiry_interval = Some(3600);
                c.properties.receive_maximum = NonZeroU16::new(100);
                c.properties
                    .push_user_property(utf8("region"), utf8("eu-west"));
                will_props.will_delay_interval = Some(30);
            }
            c.will = Some(Will {
                topic: TopicName::try_from("clients/bench-client-0001/status").unwrap(),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: will_props,
            });
            c.username = Some(utf8("bench-user"));
            c.password = Some(Bytes::from_static(b"bench-password"));
            vec![c.into()]
        }
        "subscribe10" => {
            let mut properties = Properties::default();
            if v5 {
                properties.push_subscription_identifier(42).unwrap();
            }
            let filters = [
                "sensors/building-7/floor-3/temp",
                "sensors/+/floor-3/temp",
                "sensors/building-7/#",
                "alerts/#",
                "cmd/bench-client-0001/+",
                "a/b/c/d/e/f",
                "+/+/+",
                "status/+",
                "logs/app/error",
                "#",
            ]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let opts = SubscriptionOptions {
                    qos: QoS::from_bits((i % 3) as u8).unwrap(),
                    no_local: v5 && i % 2 == 1,
                    retain_as_published: v5 && i % 3 == 1,
                    retain_handling: if v5 && i % 4 == 3 {
                        RetainHandling::DoNotSend
                    } else {
                        RetainHandling::SendAtSubscribe
                    },
                };
                (TopicFilter::try_from(*f).unwrap(), opts)
            })
            .collect();
            vec![
                Subscribe {
                    packet_id: PacketId::new(7).unwrap(),
                    properties,
                    filters,
                }
                .into(),
            ]
        }
        "acks" => {
            let id = PacketId::new(9).unwrap();
            vec![
                PubAck::new(id).into(),
                PubRec::new(id).into(),
                PubRel::new(id).into(),
                PubComp::new(id).into(),
            ]
        }
        _ => panic!("unknown case {case}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, case, version, count] = &args[..] else {
        panic!("usage: codec_profile decode|decode-ref|encode CASE 4|5 COUNT");
    };
    let v = match version.as_str() {
        "4" => ProtocolVersion::V3_1_1,
        "5" => ProtocolVersion::V5,
        _ => panic!("version 4 or 5"),
    };
    let count: usize = count.parse().unwrap();
    let packets = packets(case, v);
    let mut wire = BytesMut::new();
    for p in &packets {
        p.encode(v, &mut wire).unwrap();
    }
    match mode.as_str() {
        "decode" => {
            // One long read buffer of `count` copies, in the shared form a read buffer has.
            let mut buf = BytesMut::with_capacity(wire.len() * count + 1);
            for _ in 0..count {
                buf.extend_from_slice(&wire);
            }
            let _ = buf.split_to(0);
            let mut d = if case == "connect" {
                Decoder::new()
            } else {
                Decoder::with_version(v)
            };
            while !buf.is_empty() {
                if case == "connect" {
                    d = Decoder::new();
                }
                black_box(d.decode(&mut buf).unwrap().unwrap());
            }
        }
        "decode-ref" => {
            // The same long buffer, read borrowed with `Decoder::decode_ref`.
            let mut all = Vec::with_capacity(wire.len() * count);
            for _ in 0..count {
                all.extend_from_slice(&wire);
            }
            let mut d = Decoder::with_version(v);
            let mut rest = &all[..];
            while !rest.is_empty() {
                if case == "connect" {
                    d = Decoder::new();
                }
                let Status::Complete((p, used)) = d.decode_ref(rest).unwrap() else {
                    panic!("a whole packet");
                };
                black_box(p);
                rest = &rest[used..];
            }
        }
        "decode-publish-ref" => {
            // PUBLISH cases: `read_fixed_header` and `PublishRef::decode`, without `PacketRef`.
            let mut all = Vec::with_capacity(wire.len() * count);
            for _ in 0..count {
                all.extend_from_slice(&wire);
            }
            let mut rest = &all[..];
            while !rest.is_empty() {
                let Status::Complete(h) = read_fixed_header(rest, Some(v), u32::MAX).unwrap()
                else {
                    panic!("a whole header");
                };
                let body = &rest[h.header_length..h.packet_length()];
                black_box(PublishRef::decode(h.first_byte, body, v).unwrap());
                rest = &rest[h.packet_length()..];
            }
        }
        "encode" => {
            let mut buf = BytesMut::with_capacity(wire.len() + 64);
            for _ in 0..count {
                buf.clear();
                for p in &packets {
                    black_box(p.encode(v, &mut buf).unwrap());
                }
            }
        }
        _ => panic!("mode decode, decode-ref or encode"),
    }
}
