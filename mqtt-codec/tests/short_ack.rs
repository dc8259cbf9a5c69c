//! `Decoder::decode_short_ack` takes exactly what `Decoder::decode` would return as a
//! PUBACK, PUBREC, PUBREL or PUBCOMP with a Remaining Length of 2, and leaves everything else
//! (valid or not) to it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::BytesMut;
use mqtt_codec::{Decoder, Packet, PacketType, ProtocolVersion, ReasonCode};

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// Every first byte and Remaining Length byte, with Packet Identifiers 0, 1 and 0xffff and a
/// following byte, in every version: the short path agrees with the general one.
// A Packet Identifier of 0 is left to the general path, which refuses it.
#[test]
fn short_acks_agree_with_the_general_decoder() {
    let mut taken = 0;
    for version in VERSIONS {
        for first in 0..=u8::MAX {
            for len in 0..=4_u8 {
                for id in [0_u16, 1, 0xffff] {
                    let [hi, lo] = id.to_be_bytes();
                    let wire = [first, len, hi, lo, 0x00, 0xc0];
                    let mut fast = BytesMut::from(&wire[..]);
                    let mut general = BytesMut::from(&wire[..]);
                    let mut d1 = Decoder::with_version(version);
                    let mut d2 = Decoder::with_version(version);
                    let expected = d2.decode(&mut general);
                    match d1.decode_short_ack(&mut fast) {
                        Some((ty, packet_id)) => {
                            taken += 1;
                            let (want_ty, want_id, code, props) = match expected {
                                Ok(Some(Packet::PubAck(p))) => {
                                    (PacketType::PubAck, p.packet_id, p.reason_code, p.properties)
                                }
                                Ok(Some(Packet::PubRec(p))) => {
                                    (PacketType::PubRec, p.packet_id, p.reason_code, p.properties)
                                }
                                Ok(Some(Packet::PubRel(p))) => {
                                    (PacketType::PubRel, p.packet_id, p.reason_code, p.properties)
                                }
                                Ok(Some(Packet::PubComp(p))) => (
                                    PacketType::PubComp,
                                    p.packet_id,
                                    p.reason_code,
                                    p.properties,
                                ),
                                other => panic!("{wire:02x?} {version:?}: general gave {other:?}"),
                            };
                            assert_eq!((ty, packet_id), (want_ty, want_id), "{wire:02x?}");
                            assert_eq!(code, ReasonCode::SUCCESS);
                            assert!(props.is_empty());
                            // Both consumed the same bytes.
                            assert_eq!(fast, general, "{wire:02x?} {version:?}");
                        }
                        None => {
                            // Nothing taken; whatever the general path says stands.
                            assert_eq!(&fast[..], &wire[..]);
                            if let Ok(Some(
                                Packet::PubAck(_)
                                | Packet::PubRec(_)
                                | Packet::PubRel(_)
                                | Packet::PubComp(_),
                            )) = expected
                            {
                                assert_ne!(len, 2, "{wire:02x?} {version:?}: a short ack left");
                            }
                        }
                    }
                }
            }
        }
    }
    // 4 types x 2 non-zero identifiers x 3 versions.
    assert_eq!(taken, 24);
}

/// A server's decoder before CONNECT, and one whose maximum packet size is below 4 bytes,
/// take nothing: the general path refuses what is there.
#[test]
fn short_acks_left_to_the_general_path_when_it_refuses_them() {
    let wire = [0x40, 2, 0, 1];
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(Decoder::new().decode_short_ack(&mut buf), None);
    assert!(Decoder::new().decode(&mut buf).is_err());
    let mut small = Decoder::with_version(ProtocolVersion::V5).max_packet_size(3);
    assert_eq!(small.decode_short_ack(&mut buf), None);
    assert!(small.decode(&mut buf).is_err());
}
