// The checks behind the codec fuzz targets. This file is `include!`d by the fuzz targets and by
// `mqtt-codec/tests/fuzz_corpus.rs`, which replays the committed corpora on stable Rust, so a
// crash found once stays a test forever. Each check panics (a fuzz finding) when the codec is
// wrong, and returns quietly for input that is merely invalid.

// Findings are reported by panicking, as libFuzzer expects.
#[allow(
    dead_code,
    unreachable_pub,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
mod codec_checks {
    use bytes::{Bytes, BytesMut};
    use mqtt_codec::arbitrary::Unstructured;
    use mqtt_codec::{
        Decoder, Packet, PacketRef, ProtocolVersion, PublishRef, Status, read_fixed_header,
    };

    /// The borrowed decoder agrees with the owned one on any body, for every packet type: both
    /// accept, the borrowed packet converting to the owned one, or both refuse with the same
    /// error (violation, packet type and version).
    pub fn packet_ref_agrees(first_byte: u8, body: &[u8], version: ProtocolVersion) {
        let owned = Packet::decode_body(first_byte, &Bytes::copy_from_slice(body), version);
        let borrowed = PacketRef::decode(first_byte, body, version);
        match (&owned, &borrowed) {
            (Ok(p), Ok(r)) => {
                assert_eq!(r.packet_type(), p.packet_type());
                assert_eq!(&r.to_packet(), p, "PacketRef and Packet decode differently");
                // A CONNECT's payload is read again by its accessors, when asked.
                if let (PacketRef::Connect(c), Packet::Connect(o)) = (r, p) {
                    assert_eq!(c.username(), o.username.as_deref(), "ConnectRef::username");
                    assert_eq!(c.password(), o.password.as_deref(), "ConnectRef::password");
                    match (c.will(), &o.will) {
                        (Some(w), Some(ow)) => {
                            assert_eq!(w.topic, &*ow.topic, "WillRef::topic");
                            assert_eq!(w.payload, &ow.payload[..], "WillRef::payload");
                            assert_eq!((w.qos, w.retain), (ow.qos, ow.retain), "WillRef flags");
                            assert_eq!(
                                w.properties
                                    .to_properties_in(mqtt_codec::PropertyContext::Will),
                                Ok(ow.properties.clone()),
                                "WillRef::properties"
                            );
                        }
                        (None, None) => {}
                        (a, b) => panic!("ConnectRef::will {a:?} / {b:?}"),
                    }
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "PacketRef and Packet refuse differently"),
            (a, b) => panic!("PacketRef and Packet disagree: {a:?} / {b:?}"),
        }
        if first_byte >> 4 == 3 {
            publish_ref_agrees(first_byte, body, version);
        }
    }

    /// `Decoder::decode_ref` agrees with `Decoder::decode_bytes` on the start of `input`, and
    /// leaves the decoder in the same state (the version a CONNECT sets).
    fn decode_ref_agrees(decoder: &Decoder, input: &Bytes) {
        let mut a = decoder.clone();
        let mut b = decoder.clone();
        let owned = a.decode_bytes(input);
        let borrowed = b.decode_ref(input);
        match (&owned, &borrowed) {
            (Ok(Status::Complete((p, n))), Ok(Status::Complete((r, m)))) => {
                assert_eq!(n, m);
                assert_eq!(
                    &r.to_packet(),
                    p,
                    "decode_ref and decode_bytes decode differently"
                );
            }
            (Ok(Status::Incomplete(n)), Ok(Status::Incomplete(m))) => assert_eq!(n, m),
            (Err(x), Err(y)) => assert_eq!(x, y, "decode_ref and decode_bytes refuse differently"),
            (x, y) => panic!("decode_ref and decode_bytes disagree: {x:?} / {y:?}"),
        }
        assert_eq!(a.version(), b.version());
    }

    /// The borrowed PUBLISH decoder agrees with the owned one on any body: both accept, with
    /// the same packet and the same encoding, or both refuse with the same violation.
    pub fn publish_ref_agrees(first_byte: u8, body: &[u8], version: ProtocolVersion) {
        let owned = Packet::decode_body(first_byte, &Bytes::copy_from_slice(body), version);
        let borrowed = PublishRef::decode(first_byte, body, version);
        match (owned, borrowed) {
            (Ok(Packet::Publish(p)), Ok(r)) => {
                assert_eq!(
                    r.to_publish(),
                    p,
                    "PublishRef and Publish decode differently"
                );
                // The same length; the same packet once decoded (the bytes may differ in the
                // order of the properties: PublishRef keeps the wire order, Publish its own).
                let mut b = BytesMut::new();
                let nb = r
                    .encode(version, &mut b)
                    .expect("decoded PublishRef encodes");
                assert_eq!(r.encoded_len(version).ok(), Some(nb));
                assert_eq!(nb, b.len());
                let packet = Packet::Publish(p);
                assert_eq!(
                    packet.encoded_len(version).ok(),
                    Some(nb),
                    "PublishRef encodes to another length"
                );
                match Decoder::with_version(version).decode_bytes(&b.freeze()) {
                    Ok(Status::Complete((again, n))) => {
                        assert_eq!(n, nb);
                        assert_eq!(again, packet, "PublishRef encodes another packet");
                    }
                    other => panic!("PublishRef's encoding does not decode: {other:?}"),
                }
            }
            (Err(a), Err(b)) => assert_eq!(
                a.violation(),
                b.violation(),
                "PublishRef and Publish refuse for different reasons"
            ),
            (a, b) => panic!("PublishRef and Publish disagree: {a:?} / {b:?}"),
        }
    }

    /// The version a decoded packet re-encodes in: a CONNECT's own, else the stream's.
    fn version_of(packet: &Packet, stream: ProtocolVersion) -> ProtocolVersion {
        match packet {
            Packet::Connect(c) => c.protocol,
            _ => stream,
        }
    }

    /// Raw bytes as a stream of `version` packets (or, with `None`, as a server's connection
    /// that starts with CONNECT): never panic; whatever decodes re-encodes to bytes that decode
    /// to the same packet, and the encoder's length is exact.
    pub fn decode(data: &[u8], version: Option<ProtocolVersion>) {
        let mut decoder = match version {
            Some(v) => Decoder::with_version(v),
            None => Decoder::new(),
        };
        let mut input = Bytes::copy_from_slice(data);
        loop {
            let stream_version = decoder.version();
            if let (Some(v), Ok(Status::Complete(h))) = (
                stream_version,
                read_fixed_header(&input, stream_version, u32::MAX),
            ) && let Some(body) = input.get(h.header_length..h.packet_length())
            {
                packet_ref_agrees(h.first_byte, body, v);
            }
            decode_ref_agrees(&decoder, &input);
            let (packet, len) = match decoder.decode_bytes(&input) {
                Ok(Status::Complete(done)) => done,
                Ok(Status::Incomplete(_)) | Err(_) => return,
            };
            assert!(len > 0 && len <= input.len());
            let v = version_of(
                &packet,
                stream_version
                    .or(decoder.version())
                    .unwrap_or(ProtocolVersion::V5),
            );
            let mut out = BytesMut::new();
            let written = match packet.encode(v, &mut out) {
                Ok(n) => n,
                Err(e) => panic!("decoded packet does not re-encode: {e}\n{packet:#?}"),
            };
            assert_eq!(written, out.len());
            assert_eq!(packet.encoded_len(v).ok(), Some(written));
            let mut again = Decoder::with_version(v);
            match again.decode_bytes(&out.freeze()) {
                Ok(Status::Complete((p, n))) => {
                    assert_eq!(n, written);
                    assert_eq!(p, packet, "re-encoded packet decodes differently");
                }
                other => panic!("re-encoded packet does not decode: {other:?}\n{packet:#?}"),
            }
            input = input.slice(len..);
        }
    }

    /// Structured: a valid packet encodes, its length is exact, and it decodes to itself; the
    /// re-encoding is byte for byte the same.
    pub fn roundtrip(data: &[u8]) {
        let mut u = Unstructured::new(data);
        let Ok(version) = u.arbitrary::<ProtocolVersion>() else {
            return;
        };
        let Ok(packet) = Packet::arbitrary_for(&mut u, version) else {
            return;
        };
        let mut buf = BytesMut::new();
        let written = match packet.encode(version, &mut buf) {
            Ok(n) => n,
            Err(e) => panic!("valid packet refused: {e}\n{packet:#?}"),
        };
        assert_eq!(packet.encoded_len(version).ok(), Some(written));
        let bytes = buf.freeze();
        if let Ok(Status::Complete(h)) = read_fixed_header(&bytes, Some(version), u32::MAX) {
            packet_ref_agrees(
                h.first_byte,
                &bytes[h.header_length..h.packet_length()],
                version,
            );
        }
        match Decoder::with_version(version).decode_bytes(&bytes) {
            Ok(Status::Complete((p, n))) => {
                assert_eq!(n, written);
                assert_eq!(p, packet);
                let mut again = BytesMut::new();
                assert!(p.encode(version, &mut again).is_ok());
                assert_eq!(&again[..], &bytes[..]);
            }
            other => panic!("encoded packet does not decode: {other:?}\n{packet:#?}"),
        }
    }

    /// A valid stream split at arbitrary points decodes to the same packets, in order.
    pub fn stream(data: &[u8]) {
        let mut u = Unstructured::new(data);
        let Ok(version) = u.arbitrary::<ProtocolVersion>() else {
            return;
        };
        let count = u.int_in_range(1..=8).unwrap_or(1);
        let mut packets = Vec::new();
        let mut wire = BytesMut::new();
        for _ in 0..count {
            let Ok(p) = Packet::arbitrary_for(&mut u, version) else {
                break;
            };
            if matches!(p, Packet::Connect(_)) {
                continue; // a CONNECT mid-stream is fine, but keep the decoder's version simple
            }
            if p.encode(version, &mut wire).is_err() {
                panic!("valid packet refused: {p:#?}");
            }
            packets.push(p);
        }
        let wire = wire.freeze();
        let mut decoder = Decoder::with_version(version);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut pos = 0;
        while pos < wire.len() {
            let step = usize::from(u.arbitrary::<u8>().unwrap_or(255)).max(1);
            let end = (pos + step).min(wire.len());
            buf.extend_from_slice(&wire[pos..end]);
            pos = end;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(p)) => decoded.push(p),
                    Ok(None) => break,
                    Err(e) => panic!("valid stream rejected: {e}"),
                }
            }
        }
        assert!(buf.is_empty(), "{} bytes left", buf.len());
        assert_eq!(decoded, packets);
    }
}
