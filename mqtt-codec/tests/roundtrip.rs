//! Property tests of the codec: every valid packet encodes, decodes back to itself with exactly
//! the bytes written, streams in arbitrary pieces, and no input makes the decoder panic.
//!
//! The strategies (`strategies/mod.rs`) generate arbitrary valid packets of every type for
//! MQTT 3.1.1 (with 3.1 CONNECTs) and 5.0.
// Test code: a failed unwrap, index or panic in a helper or a strategy is a failed test (the
// workspace denies them for library code, and clippy's `allow-*-in-tests` only covers `#[test]`
// functions).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod strategies;

use core::num::NonZeroUsize;

use bytes::{BufMut, Bytes, BytesMut};
use mqtt_codec::{
    Decoder, FixedHeader, Packet, PacketType, ProtocolVersion, Publish, Status, TopicName, VBI_MAX,
    Violation, read_fixed_header, vbi_len,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use strategies::{packet, versioned_packet};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V3_1_1: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The minimal Variable Byte Integer encoding of `value`, written here independently of the
/// codec.
fn vbi_bytes(mut value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// `value` encoded in exactly `len` bytes (1 to 4; at least the minimal length): the minimal
/// encoding followed by zero groups, which is not minimal when `len` is longer.
fn padded_vbi(value: u32, len: usize) -> Vec<u8> {
    let mut out = vbi_bytes(value);
    while out.len() < len {
        if let Some(last) = out.last_mut() {
            *last |= 0x80;
        }
        out.push(0);
    }
    out
}

/// The version a packet is encoded in on a connection of `version`: a CONNECT's own.
fn own_version(p: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match p {
        Packet::Connect(c) => c.protocol,
        _ => version,
    }
}

/// Encodes `p` into a fresh buffer, checking that the returned count is the bytes written.
fn encode(p: &Packet, version: ProtocolVersion) -> Result<Bytes, TestCaseError> {
    let mut buf = BytesMut::new();
    let written = match p.encode(version, &mut buf) {
        Ok(n) => n,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "encode({version:?}) failed: {e}"
            )));
        }
    };
    prop_assert_eq!(
        written,
        buf.len(),
        "encode returned a count other than the bytes written"
    );
    Ok(buf.freeze())
}

/// Decodes `wire` expecting exactly one whole packet of `wire.len()` bytes.
fn decode_whole(decoder: &mut Decoder, wire: &Bytes) -> Result<Packet, TestCaseError> {
    match decoder.decode_bytes(wire) {
        Ok(Status::Complete((p, len))) => {
            prop_assert_eq!(len, wire.len(), "decoded length is not the bytes written");
            Ok(p)
        }
        other => Err(TestCaseError::fail(format!(
            "decoding {} bytes {:02X?} gave {other:?}",
            wire.len(),
            &wire[..wire.len().min(64)]
        ))),
    }
}

/// The decoders a receiver of a packet encoded for `version` could use: one made for the
/// version, and for a CONNECT also a server's, which learns the version from it.
fn receivers(p: &Packet, version: ProtocolVersion) -> Vec<Decoder> {
    let mut d = vec![Decoder::with_version(version)];
    if matches!(p, Packet::Connect(_)) {
        d.push(Decoder::new());
    }
    d
}

/// Checks the wire layout of `p` independently of the codec's decoder, so that encoder and
/// decoder cannot agree on a wrong one: the first byte, the Remaining Length, and the fields at
/// the start and end of the body (sections 2 and 3).
fn check_layout(p: &Packet, version: ProtocolVersion, wire: &[u8]) -> Result<(), TestCaseError> {
    let v5 = own_version(p, version).is_v5();
    let flags = match p {
        Packet::Publish(x) => u8::from(x.dup) << 3 | (x.qos as u8) << 1 | u8::from(x.retain),
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    };
    prop_assert_eq!(wire[0], (p.packet_type() as u8) << 4 | flags, "first byte");
    let vbi_len = wire[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("a whole header")
        + 1;
    let body = &wire[1 + vbi_len..];
    prop_assert_eq!(
        &wire[1..=vbi_len],
        &vbi_bytes(body.len() as u32)[..],
        "Remaining Length"
    );
    let u16_at = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match p {
        Packet::Connect(c) => {
            let name = c.protocol.protocol_name().as_bytes();
            let n = name.len();
            prop_assert_eq!(usize::from(u16_at(0)), n);
            prop_assert_eq!(&body[2..2 + n], name);
            prop_assert_eq!(body[2 + n], c.protocol.level());
            let mut flags = u8::from(c.clean_start) << 1;
            if let Some(w) = &c.will {
                flags |= 0b100 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
            }
            flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
            prop_assert_eq!(body[3 + n], flags, "CONNECT flags");
            prop_assert_eq!(u16_at(4 + n), c.keep_alive);
            if let Some(password) = &c.password {
                prop_assert!(body.ends_with(password));
            }
        }
        Packet::ConnAck(c) => {
            prop_assert_eq!(body[0], u8::from(c.session_present));
            let code = if v5 {
                Some(c.reason_code.0)
            } else {
                c.reason_code.to_v3_connect_return_code()
            };
            prop_assert_eq!(Some(body[1]), code);
            if !v5 {
                prop_assert_eq!(body.len(), 2);
            }
        }
        Packet::Publish(x) => {
            let n = x.topic.len();
            prop_assert_eq!(usize::from(u16_at(0)), n);
            prop_assert_eq!(&body[2..2 + n], x.topic.as_bytes());
            if let Some(id) = x.packet_id {
                prop_assert_eq!(u16_at(2 + n), id.get());
            }
            prop_assert!(body.ends_with(&x.payload));
        }
        Packet::PubAck(a) => check_ack(
            body,
            a.packet_id,
            a.reason_code,
            a.properties.is_empty(),
            v5,
        )?,
        Packet::PubRec(a) => check_ack(
            body,
            a.packet_id,
            a.reason_code,
            a.properties.is_empty(),
            v5,
        )?,
        Packet::PubRel(a) => check_ack(
            body,
            a.packet_id,
            a.reason_code,
            a.properties.is_empty(),
            v5,
        )?,
        Packet::PubComp(a) => check_ack(
            body,
            a.packet_id,
            a.reason_code,
            a.properties.is_empty(),
            v5,
        )?,
        Packet::Subscribe(x) => {
            prop_assert_eq!(u16_at(0), x.packet_id.get());
            let (filter, o) = x.filters.last().expect("a filter");
            let options = o.qos as u8
                | u8::from(o.no_local) << 2
                | u8::from(o.retain_as_published) << 3
                | (o.retain_handling as u8) << 4;
            prop_assert_eq!(body[body.len() - 1], options, "subscription options");
            let end = body.len() - 1;
            prop_assert_eq!(&body[end - filter.len()..end], filter.as_bytes());
        }
        Packet::SubAck(x) => {
            prop_assert_eq!(u16_at(0), x.packet_id.get());
            let codes: Vec<u8> = x.reason_codes.iter().map(|c| c.0).collect();
            prop_assert!(body.ends_with(&codes));
        }
        Packet::Unsubscribe(x) => {
            prop_assert_eq!(u16_at(0), x.packet_id.get());
            let filter = x.filters.last().expect("a filter");
            prop_assert!(body.ends_with(filter.as_bytes()));
        }
        Packet::UnsubAck(x) => {
            prop_assert_eq!(u16_at(0), x.packet_id.get());
            let codes: Vec<u8> = x.reason_codes.iter().map(|c| c.0).collect();
            prop_assert!(body.ends_with(&codes));
            if !v5 {
                prop_assert_eq!(body.len(), 2);
            }
        }
        Packet::PingReq | Packet::PingResp => prop_assert!(body.is_empty()),
        Packet::Disconnect(d) => {
            check_reason_and_properties(body, d.reason_code, d.properties.is_empty(), v5)?;
        }
        Packet::Auth(a) => {
            check_reason_and_properties(body, a.reason_code, a.properties.is_empty(), v5)?;
        }
        _ => prop_assert!(false, "a packet type the test does not know"),
    }
    Ok(())
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: the Packet Identifier, then (5.0) the reason code unless it
/// is Success without properties, then the properties if any.
fn check_ack(
    body: &[u8],
    id: mqtt_codec::PacketId,
    code: mqtt_codec::ReasonCode,
    no_properties: bool,
    v5: bool,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(u16::from_be_bytes([body[0], body[1]]), id.get());
    if !v5 || (code == mqtt_codec::ReasonCode::SUCCESS && no_properties) {
        prop_assert_eq!(body.len(), 2);
    } else {
        prop_assert_eq!(body[2], code.0);
        if no_properties {
            prop_assert_eq!(body.len(), 3);
        }
    }
    Ok(())
}

/// DISCONNECT and AUTH: empty before 5.0 and for Success without properties; otherwise the
/// reason code first.
fn check_reason_and_properties(
    body: &[u8],
    code: mqtt_codec::ReasonCode,
    no_properties: bool,
    v5: bool,
) -> Result<(), TestCaseError> {
    if !v5 || (code == mqtt_codec::ReasonCode::SUCCESS && no_properties) {
        prop_assert!(body.is_empty());
    } else {
        prop_assert_eq!(body[0], code.0);
    }
    Ok(())
}

/// Property 1: `p` encodes for `version`, decodes back to itself from exactly the bytes
/// written, and re-encodes to the same bytes.
fn check_round_trip(p: &Packet, version: ProtocolVersion) -> Result<Bytes, TestCaseError> {
    let wire = encode(p, version)?;
    check_layout(p, version, &wire)?;
    for mut decoder in receivers(p, version) {
        let learns = decoder.version().is_none();
        let decoded = decode_whole(&mut decoder, &wire)?;
        prop_assert_eq!(&decoded, p);
        if learns {
            prop_assert_eq!(decoder.version(), Some(own_version(p, version)));
        }
        let again = encode(&decoded, version)?;
        prop_assert_eq!(
            &again[..],
            &wire[..],
            "re-encoding the decoded packet differs"
        );
    }
    Ok(wire)
}

/// Whatever `decoder` made of `input`, a decoded packet must re-encode (in its own version) to
/// bytes that decode to the same packet, and that canonical encoding must be stable.
fn check_reencodes(
    decoder: &Decoder,
    result: &Result<Status<(Packet, usize)>, mqtt_codec::Error>,
    input_len: usize,
) -> Result<(), TestCaseError> {
    let Ok(Status::Complete((p, len))) = result else {
        return Ok(());
    };
    prop_assert!(*len <= input_len, "consumed {len} of {input_len} bytes");
    let version = own_version(p, decoder.version().unwrap_or(V5));
    let wire = encode(p, version)?;
    let mut fresh = Decoder::with_version(version);
    let again = decode_whole(&mut fresh, &wire)?;
    prop_assert_eq!(&again, p, "canonical re-encoding decodes to another packet");
    let twice = encode(&again, version)?;
    prop_assert_eq!(&twice[..], &wire[..]);
    Ok(())
}

/// `decode_bytes` and `decode` agree on `input`: same packet or same error, and `decode`
/// consumes exactly the packet (nothing when incomplete).
fn check_decoders_agree(make: impl Fn() -> Decoder, input: &[u8]) -> Result<(), TestCaseError> {
    let bytes = Bytes::copy_from_slice(input);
    let mut a = make();
    let by_bytes = a.decode_bytes(&bytes);
    let mut b = make();
    let mut buf = BytesMut::from(input);
    let by_buf = b.decode(&mut buf);
    match (&by_bytes, by_buf) {
        (Ok(Status::Complete((p, len))), Ok(Some(q))) => {
            prop_assert_eq!(p, &q);
            prop_assert_eq!(buf.len(), input.len() - len);
            prop_assert_eq!(a.version(), b.version());
        }
        (Ok(Status::Incomplete(_)), Ok(None)) => prop_assert_eq!(buf.len(), input.len()),
        (Err(e), Err(f)) => prop_assert_eq!(*e, f),
        (x, y) => prop_assert!(false, "decode_bytes gave {x:?} but decode gave {y:?}"),
    }
    check_reencodes(&a, &by_bytes, input.len())
}

fn decoder_for(version: Option<ProtocolVersion>) -> Decoder {
    version.map_or_else(Decoder::new, Decoder::with_version)
}

// ---------------------------------------------------------------------------------------------
// 1. Round trip
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip_v3_1_1(p in packet(V3_1_1)) {
        check_round_trip(&p, V3_1_1)?;
    }

    #[test]
    fn round_trip_v5(p in packet(V5)) {
        check_round_trip(&p, V5)?;
    }
}

proptest! {
    /// After a 3.1 CONNECT the connection is decoded as 3.1.1.
    #[test]
    fn round_trip_v3_1(p in packet(V3_1)) {
        check_round_trip(&p, V3_1)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. encoded_len is exact
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn encoded_len_is_the_bytes_appended(
        (version, p) in versioned_packet(),
        existing in vec(any::<u8>(), 0..64),
    ) {
        let expected = p.encoded_len(version);
        prop_assert!(expected.is_ok(), "encoded_len failed: {expected:?}");
        let expected = expected?;
        let mut buf = BytesMut::from(&existing[..]);
        let written = p.encode(version, &mut buf)?;
        prop_assert_eq!(written, expected);
        prop_assert_eq!(buf.len(), existing.len() + expected);
        prop_assert_eq!(&buf[..existing.len()], &existing[..], "encode changed what was there");
        // The appended packet is the packet.
        let appended = buf.split_off(existing.len()).freeze();
        prop_assert_eq!(&appended[..], &encode(&p, version)?[..]);
    }

    /// The size limits of the encoder and the decoder are exact: a packet of `n` bytes passes a
    /// limit of `n` and is refused by a limit of `n - 1`, without anything written.
    #[test]
    fn maximum_packet_size_is_exact((version, p) in versioned_packet()) {
        let wire = encode(&p, version)?;
        let n = u32::try_from(wire.len()).expect("small");
        let mut buf = BytesMut::new();
        prop_assert_eq!(p.encode_limited(version, n, &mut buf)?, wire.len());
        let mut buf = BytesMut::from(&b"xy"[..]);
        let err = p.encode_limited(version, n - 1, &mut buf);
        prop_assert_eq!(err.map_err(|e| e.violation()), Err(Violation::PacketTooLarge));
        prop_assert_eq!(&buf[..], b"xy");

        let mut decoder = Decoder::with_version(version).max_packet_size(n);
        prop_assert_eq!(decode_whole(&mut decoder, &wire)?, p.clone());
        let mut decoder = Decoder::with_version(version).max_packet_size(n - 1);
        let err = decoder.decode_bytes(&wire).map_err(|e| e.violation());
        prop_assert_eq!(err, Err(Violation::PacketTooLarge));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Prefixes are incomplete
// ---------------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn every_strict_prefix_is_incomplete((version, p) in versioned_packet()) {
        let wire = encode(&p, version)?;
        let header = read_fixed_header(&wire, Some(version), Decoder::MAX_PACKET_SIZE)?;
        let Status::Complete(header) = header else {
            return Err(TestCaseError::fail("the fixed header of a whole packet is incomplete"));
        };
        prop_assert_eq!(header.packet_length(), wire.len());
        for mut decoder in receivers(&p, version) {
            for n in 0..wire.len() {
                let prefix = wire.slice(..n);
                let expected = if n < header.header_length {
                    None
                } else {
                    NonZeroUsize::new(wire.len() - n)
                };
                match decoder.decode_bytes(&prefix) {
                    Ok(Status::Incomplete(needed)) => prop_assert_eq!(
                        needed, expected, "prefix of {} of {} bytes", n, wire.len()
                    ),
                    other => prop_assert!(
                        false, "prefix of {} of {} bytes gave {:?}", n, wire.len(), other
                    ),
                }
                // The buffered decoder keeps the bytes for later.
                if n < 16 || n + 16 > wire.len() {
                    let mut buf = BytesMut::from(&prefix[..]);
                    prop_assert_eq!(decoder.decode(&mut buf)?, None);
                    prop_assert_eq!(buf.len(), n);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Streams split anywhere
// ---------------------------------------------------------------------------------------------

/// Cuts `wire` at the points `cuts` picks, feeds the pieces one by one into one buffer and
/// decodes whatever is whole after each.
fn feed_in_pieces(
    mut decoder: Decoder,
    wire: &[u8],
    cuts: &[Index],
) -> Result<Vec<Packet>, TestCaseError> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
    points.push(0);
    points.push(wire.len());
    points.sort_unstable();
    points.dedup();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in points.windows(2) {
        buf.extend_from_slice(&wire[piece[0]..piece[1]]);
        while let Some(p) = decoder.decode(&mut buf)? {
            out.push(p);
        }
    }
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    Ok(out)
}

proptest! {
    #[test]
    fn a_stream_split_anywhere_yields_the_packets(
        (version, packets) in strategies::version()
            .prop_flat_map(|v| (Just(v), vec(packet(v), 1..=6))),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let mut wire = BytesMut::new();
        for p in &packets {
            p.encode(version, &mut wire)?;
        }
        let got = feed_in_pieces(Decoder::with_version(version), &wire, &cuts)?;
        prop_assert_eq!(got, packets);
    }

    /// A server's decoder: the CONNECT first (its version learnt), then that version's packets.
    #[test]
    fn a_server_stream_learns_the_version(
        (version, connect, packets) in strategies::version().prop_flat_map(|v| {
            (Just(v), strategies::connect(v), vec(packet(v), 0..=4))
        }),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        let connect = Packet::from(connect);
        let mut wire = BytesMut::new();
        connect.encode(version, &mut wire)?;
        for p in &packets {
            p.encode(version, &mut wire)?;
        }
        let got = feed_in_pieces(Decoder::new(), &wire, &cuts)?;
        let mut expected = vec![connect];
        expected.extend(packets);
        prop_assert_eq!(got, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Variable Byte Integer boundaries in the fixed header
// ---------------------------------------------------------------------------------------------

/// (Remaining Length, fixed header length) at the boundaries of the table of section 1.5.5.
const BOUNDARIES: [(u32, usize); 8] = [
    (0, 2),
    (127, 2),
    (128, 3),
    (16_383, 3),
    (16_384, 4),
    (2_097_151, 4),
    (2_097_152, 5),
    (268_435_455, 5),
];

#[test]
fn remaining_length_boundaries_read_back() {
    for (value, header_length) in BOUNDARIES {
        let mut header = vec![0x30];
        header.extend(vbi_bytes(value));
        assert_eq!(header.len(), header_length, "{value}");
        assert_eq!(1 + vbi_len(value), header_length, "{value}");
        for version in [V3_1, V3_1_1, V5] {
            assert_eq!(
                read_fixed_header(&header, Some(version), Decoder::MAX_PACKET_SIZE),
                Ok(Status::Complete(FixedHeader {
                    first_byte: 0x30,
                    remaining_length: value as usize,
                    header_length,
                    minimal: true,
                })),
                "{value} {version:?}"
            );
            // The decoder then waits for exactly the body.
            if let Some(body) = NonZeroUsize::new(value as usize) {
                let mut decoder = Decoder::with_version(version);
                assert_eq!(
                    decoder.decode_bytes(&Bytes::from(header.clone())),
                    Ok(Status::Incomplete(Some(body))),
                    "{value} {version:?}"
                );
            }
            // Any shorter header is incomplete, with nothing known yet.
            for n in 0..header_length {
                assert_eq!(
                    read_fixed_header(&header[..n], Some(version), Decoder::MAX_PACKET_SIZE),
                    Ok(Status::Incomplete(None)),
                    "{value} {version:?} {n}"
                );
            }
        }
    }
}

/// A PUBLISH (or, for 0, a PINGREQ) whose body is exactly `body_len` bytes, encoded and decoded
/// in full.
#[test]
fn packets_at_the_remaining_length_boundaries_round_trip() {
    for (value, header_length) in BOUNDARIES {
        if value > 2_097_152 {
            continue; // 256 MiB: the header alone is checked above.
        }
        for version in [V3_1_1, V5] {
            let body_len = value as usize;
            let packet = if body_len == 0 {
                Packet::PingReq
            } else {
                // Topic "t" (3 bytes) and, in 5.0, an empty Property Length (1 byte).
                let overhead = 3 + usize::from(version.is_v5());
                if body_len < overhead {
                    continue;
                }
                let payload = vec![0xA5; body_len - overhead];
                let topic = TopicName::try_from("t").expect("valid");
                Packet::Publish(Publish::new(topic, payload))
            };
            let len = packet.encoded_len(version).expect("valid");
            assert_eq!(len, header_length + body_len, "{value} {version:?}");
            let mut buf = BytesMut::new();
            assert_eq!(packet.encode(version, &mut buf), Ok(len));
            assert_eq!(
                &buf[1..header_length],
                &vbi_bytes(value)[..],
                "{value} {version:?}"
            );
            let wire = buf.freeze();
            let mut decoder = Decoder::with_version(version);
            assert_eq!(
                decoder.decode_bytes(&wire),
                Ok(Status::Complete((packet.clone(), len))),
                "{value} {version:?}"
            );
            // One byte short: exactly one byte needed (unknown while in the fixed header).
            let needed = if len - 1 < header_length {
                None
            } else {
                NonZeroUsize::new(1)
            };
            assert_eq!(
                decoder.decode_bytes(&wire.slice(..len - 1)),
                Ok(Status::Incomplete(needed)),
                "{value} {version:?}"
            );
        }
    }
    // 128 is the smallest body of a two-byte Remaining Length; check one in each direction.
    let topic = TopicName::try_from("t").expect("valid");
    for (payload_len, header_length) in [(124, 2), (125, 3)] {
        let p = Packet::Publish(Publish::new(topic.clone(), vec![1; payload_len]));
        assert_eq!(p.encoded_len(V3_1_1), Ok(header_length + 3 + payload_len));
    }
}

/// The largest Remaining Length (268 435 455, a five-byte fixed header) is encodable; one more
/// is refused by `encoded_len` and `encode` alike, with nothing written.
#[test]
fn the_largest_remaining_length_and_one_more() {
    // 256 MiB of zeroes, which the allocator maps lazily: only lengths are computed here.
    let zeroes = Bytes::from(vec![0u8; VBI_MAX as usize]);
    let topic = TopicName::try_from("t").expect("valid");
    for version in [V3_1_1, V5] {
        let overhead = 3 + usize::from(version.is_v5());
        let payload = zeroes.slice(..VBI_MAX as usize - overhead);
        let fits = Packet::Publish(Publish::new(topic.clone(), payload));
        assert_eq!(
            fits.encoded_len(version),
            Ok(5 + VBI_MAX as usize),
            "{version:?}"
        );
        let mut buf = BytesMut::from(&b"xy"[..]);
        let limited = fits.encode_limited(version, Decoder::MAX_PACKET_SIZE - 1, &mut buf);
        assert_eq!(
            limited.map_err(|e| e.violation()),
            Err(Violation::PacketTooLarge)
        );
        assert_eq!(&buf[..], b"xy");

        let payload = zeroes.slice(..VBI_MAX as usize - overhead + 1);
        let too_big = Packet::Publish(Publish::new(topic.clone(), payload));
        let expected = Err(Violation::RemainingLengthTooLarge);
        assert_eq!(
            too_big.encoded_len(version).map_err(|e| e.violation()),
            expected
        );
        assert_eq!(
            too_big.encode(version, &mut buf).map_err(|e| e.violation()),
            expected
        );
        assert_eq!(&buf[..], b"xy");
    }
}

#[test]
fn a_fifth_remaining_length_byte_is_an_error() {
    let input = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    for version in [Some(V3_1), Some(V3_1_1), Some(V5)] {
        for len in 5..=input.len() {
            let err = read_fixed_header(&input[..len], version, Decoder::MAX_PACKET_SIZE)
                .map_err(|e| e.violation());
            assert_eq!(
                err,
                Err(Violation::VariableByteIntegerTooLong),
                "{version:?} {len}"
            );
        }
        let err = decoder_for(version)
            .decode_bytes(&Bytes::copy_from_slice(&input))
            .map_err(|e| e.violation());
        assert_eq!(
            err,
            Err(Violation::VariableByteIntegerTooLong),
            "{version:?}"
        );
    }
    // The same for a server's first packet.
    let connect = [0x10, 0x80, 0x80, 0x80, 0x80, 0x01];
    let err = Decoder::new().decode_bytes(&Bytes::copy_from_slice(&connect));
    assert_eq!(
        err.map_err(|e| e.violation()),
        Err(Violation::VariableByteIntegerTooLong)
    );
}

// v5 [MQTT-1.5.5-1]
#[test]
fn non_minimal_remaining_length_is_an_error_in_v5_only() {
    // (bytes of the Remaining Length, value)
    let cases: [(&[u8], usize); 5] = [
        (&[0x80, 0x00], 0),
        (&[0x83, 0x00], 3),
        (&[0xFF, 0x80, 0x00], 127),
        (&[0x80, 0x80, 0x80, 0x00], 0),
        (&[0x80, 0x81, 0x80, 0x00], 128),
    ];
    for (vbi, value) in cases {
        let mut header = vec![0x30];
        header.extend_from_slice(vbi);
        let err = read_fixed_header(&header, Some(V5), Decoder::MAX_PACKET_SIZE)
            .map_err(|e| e.violation());
        assert_eq!(
            err,
            Err(Violation::VariableByteIntegerNotMinimal),
            "{vbi:02X?}"
        );
        for version in [V3_1, V3_1_1] {
            assert_eq!(
                read_fixed_header(&header, Some(version), Decoder::MAX_PACKET_SIZE),
                Ok(Status::Complete(FixedHeader {
                    first_byte: 0x30,
                    remaining_length: value,
                    header_length: 1 + vbi.len(),
                    minimal: false,
                })),
                "{vbi:02X?} {version:?}"
            );
        }
    }

    // A whole 3.1.1 PUBLISH "t" with a Remaining Length of 3 in two bytes decodes; in 5.0 (with
    // its empty Property Length) it is refused.
    let wire = Bytes::from_static(&[0x30, 0x83, 0x00, 0x00, 0x01, b't']);
    let expected = Packet::Publish(Publish::new(TopicName::try_from("t").expect("valid"), ""));
    assert_eq!(
        Decoder::with_version(V3_1_1).decode_bytes(&wire),
        Ok(Status::Complete((expected, wire.len())))
    );
    let wire = Bytes::from_static(&[0x30, 0x84, 0x00, 0x00, 0x01, b't', 0x00]);
    let err = Decoder::with_version(V5)
        .decode_bytes(&wire)
        .map_err(|e| e.violation());
    assert_eq!(err, Err(Violation::VariableByteIntegerNotMinimal));
    let err = read_fixed_header(&wire, Some(V5), Decoder::MAX_PACKET_SIZE);
    assert_eq!(err.map_err(|e| e.statement()), Err(Some("MQTT-1.5.5-1")));

    // A server does not know the version before the CONNECT: a non-minimal CONNECT Remaining
    // Length is refused once the CONNECT says 5.0, and accepted for 3.1.1.
    for (protocol, ok) in [(V3_1_1, true), (V5, false), (V3_1, true)] {
        let connect = Packet::from(mqtt_codec::Connect::new(
            protocol,
            mqtt_codec::Utf8String::try_from("c").expect("valid"),
        ));
        let mut minimal = BytesMut::new();
        connect.encode(protocol, &mut minimal).expect("valid");
        assert!(minimal[1] < 0x80, "a short CONNECT");
        let mut wire = vec![minimal[0], minimal[1] | 0x80, 0x00];
        wire.extend_from_slice(&minimal[2..]);
        let wire = Bytes::from(wire);
        let mut decoder = Decoder::new();
        let got = decoder.decode_bytes(&wire).map_err(|e| e.violation());
        if ok {
            assert_eq!(
                got,
                Ok(Status::Complete((connect, wire.len()))),
                "{protocol:?}"
            );
            assert_eq!(decoder.version(), Some(protocol));
        } else {
            assert_eq!(
                got,
                Err(Violation::VariableByteIntegerNotMinimal),
                "{protocol:?}"
            );
        }
    }
}

proptest! {
    /// Every Remaining Length reads back from the fixed header; padded encodings are refused
    /// in 5.0 and read back in 3.1.1.
    #[test]
    fn any_remaining_length_reads_back(value in 0..=VBI_MAX, extra in 0usize..=3) {
        let minimal_len = vbi_len(value);
        let len = (minimal_len + extra).min(4);
        let mut header = vec![0x30];
        header.extend(padded_vbi(value, len));
        let expected = FixedHeader {
            first_byte: 0x30,
            remaining_length: value as usize,
            header_length: 1 + len,
            minimal: len == minimal_len,
        };
        prop_assert_eq!(
            read_fixed_header(&header, Some(V3_1_1), Decoder::MAX_PACKET_SIZE),
            Ok(Status::Complete(expected))
        );
        let v5 = read_fixed_header(&header, Some(V5), Decoder::MAX_PACKET_SIZE)
            .map_err(|e| e.violation());
        if len == minimal_len {
            prop_assert_eq!(v5, Ok(Status::Complete(expected)));
        } else {
            prop_assert_eq!(v5, Err(Violation::VariableByteIntegerNotMinimal));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Arbitrary and damaged input
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes never panic any decoder; what decodes re-encodes to itself; the two
    /// decoding entry points agree.
    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..=512)) {
        for version in [None, Some(V3_1), Some(V3_1_1), Some(V5)] {
            check_decoders_agree(|| decoder_for(version), &input)?;
        }
    }
}

/// A damage done to a valid encoding.
#[derive(Debug, Clone)]
enum Damage {
    /// XOR these bytes into these positions.
    Flip(Vec<(Index, u8)>),
    /// Keep this much of the body and rewrite the Remaining Length to match.
    Cut(Index),
    /// Append these bytes to the body and rewrite the Remaining Length to match.
    Extend(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => vec((any::<Index>(), 1..=u8::MAX), 1..=4).prop_map(Damage::Flip),
        1 => any::<Index>().prop_map(Damage::Cut),
        1 => vec(any::<u8>(), 1..=8).prop_map(Damage::Extend),
    ]
}

fn apply(wire: &[u8], version: ProtocolVersion, damage: &Damage) -> Vec<u8> {
    let body_start = match read_fixed_header(wire, Some(version), Decoder::MAX_PACKET_SIZE) {
        Ok(Status::Complete(h)) => h.header_length,
        _ => unreachable!("a valid encoding"),
    };
    let reframe = |body: &[u8]| {
        let mut out = vec![wire[0]];
        out.extend(vbi_bytes(u32::try_from(body.len()).expect("small")));
        out.extend_from_slice(body);
        out
    };
    match damage {
        Damage::Flip(flips) => {
            let mut out = wire.to_vec();
            for (at, x) in flips {
                out[at.index(wire.len())] ^= x;
            }
            out
        }
        Damage::Cut(at) => {
            let body = &wire[body_start..];
            reframe(&body[..at.index(body.len() + 1)])
        }
        Damage::Extend(more) => {
            let mut body = wire[body_start..].to_vec();
            body.extend_from_slice(more);
            reframe(&body)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Damaged valid packets never panic a decoder; what still decodes re-encodes to itself.
    #[test]
    fn damaged_packets_never_panic((version, p) in versioned_packet(), damage in damage()) {
        let wire = encode(&p, version)?;
        let input = apply(&wire, version, &damage);
        check_decoders_agree(|| Decoder::with_version(version), &input)?;
        if matches!(p, Packet::Connect(_)) {
            check_decoders_agree(Decoder::new, &input)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding for another version: refused, or still a round trip
// ---------------------------------------------------------------------------------------------

proptest! {
    /// A packet encoded for a version it was not made for is either refused (by `encode` and
    /// `encoded_len` alike, with nothing written) or decodes back to itself in that version.
    #[test]
    fn encoding_for_any_version_is_refused_or_round_trips(
        (_, p) in versioned_packet(),
        other in strategies::version(),
    ) {
        let mut buf = BytesMut::new();
        buf.put_slice(b"prefix");
        let len = p.encoded_len(other);
        let written = p.encode(other, &mut buf);
        prop_assert_eq!(&len, &written, "encoded_len and encode disagree");
        match written {
            Ok(n) => {
                prop_assert_eq!(buf.len(), 6 + n);
                let wire = buf.split_off(6).freeze();
                for mut decoder in receivers(&p, other) {
                    prop_assert_eq!(&decode_whole(&mut decoder, &wire)?, &p);
                }
            }
            Err(_) => prop_assert_eq!(&buf[..], b"prefix", "a refused packet wrote bytes"),
        }
    }
}

#[test]
fn auth_is_refused_before_v5() {
    let auth = Packet::Auth(mqtt_codec::Auth::default());
    for version in [V3_1, V3_1_1] {
        assert_eq!(
            auth.encoded_len(version).map_err(|e| e.violation()),
            Err(Violation::NotRepresentable)
        );
    }
    assert_eq!(auth.packet_type(), PacketType::Auth);
}

// ---------------------------------------------------------------------------------------------
// 7. serde
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "serde")]
proptest! {
    #[test]
    fn serde_json_round_trip((_, p) in versioned_packet()) {
        let json = serde_json::to_string(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Packet =
            serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, p);
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Large packets
// ---------------------------------------------------------------------------------------------

/// Packets whose fields before the payload take kilobytes (thousands of filters, long property
/// lists, a large will) round-trip like small ones: the encoder writes them through the same
/// pre-sized window, which must be exactly filled.
#[test]
fn large_packets_round_trip() {
    use mqtt_codec::{
        Connect, Disconnect, PacketId, Properties, QoS, ReasonCode, SubAck, Subscribe,
        SubscriptionOptions, TopicFilter, Utf8String, Will,
    };
    let s = |t: &str| Utf8String::try_from(t).unwrap();
    let id = PacketId::new(7).unwrap();
    let mut user = Properties::default();
    for i in 0..300 {
        user.push_user_property(s(&format!("key-{i}")), s(&"v".repeat(i % 40)));
    }
    let mut publish_props = user.clone();
    publish_props.message_expiry_interval = Some(9);
    publish_props
        .set_correlation_data(Some(&[3; 5000]))
        .unwrap();
    let mut publish = Publish::new(TopicName::try_from("a/b").unwrap(), vec![1_u8; 4000]);
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = Some(id);
    publish.properties = publish_props;
    let filters = |v5: bool| {
        (0..400)
            .map(|i| {
                let f = TopicFilter::try_from(format!("sensors/{i}/+/temperature").as_str());
                let mut o = SubscriptionOptions::qos(QoS::AtLeastOnce);
                o.no_local = v5 && i % 2 == 0;
                (f.unwrap(), o)
            })
            .collect::<Vec<_>>()
    };
    let mut connect = Connect::new(V5, s("large-client"));
    connect.properties = user.clone();
    connect.will = Some(Will {
        topic: TopicName::try_from("will/topic").unwrap(),
        payload: Bytes::from(vec![9_u8; 20_000]),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: user.clone(),
    });
    connect.username = Some(s(&"u".repeat(3000)));
    connect.password = Some(Bytes::from(vec![0_u8; 3000]));
    let mut disconnect = Disconnect::new(ReasonCode::UNSPECIFIED_ERROR);
    disconnect
        .properties
        .set_reason_string(Some(s(&"r".repeat(10_000))));
    let cases: Vec<(Packet, ProtocolVersion)> = vec![
        (Packet::Publish(publish), V5),
        (
            Packet::Subscribe(Subscribe {
                packet_id: id,
                properties: user.clone(),
                filters: filters(true),
            }),
            V5,
        ),
        (
            Packet::Subscribe(Subscribe {
                packet_id: id,
                properties: Properties::default(),
                filters: filters(false),
            }),
            V3_1_1,
        ),
        (
            Packet::SubAck(SubAck {
                packet_id: id,
                properties: user,
                reason_codes: vec![ReasonCode::GRANTED_QOS_1; 5000],
            }),
            V5,
        ),
        (Packet::Connect(Box::new(connect)), V5),
        (Packet::Disconnect(disconnect), V5),
    ];
    for (p, version) in cases {
        let wire = check_round_trip(&p, version).unwrap();
        assert!(
            wire.len() > 4000,
            "{:?}: {} bytes",
            p.packet_type(),
            wire.len()
        );
        assert_eq!(p.encoded_len(version).unwrap(), wire.len());
    }
}
