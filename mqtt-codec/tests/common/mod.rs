//! Helpers shared by the hex-vector tests (`vectors_v5.rs`, `vectors_v311.rs`).
#![allow(dead_code)] // each test file uses a different subset

use bytes::{Bytes, BytesMut};
use mqtt_codec::{Decoder, Error, Packet, ProtocolVersion, ReasonCode, Status, Violation};

/// The hex vectors as data (`tests/data/vectors.tsv`), for what runs them without these tests:
/// `tests/vectors_file.rs` on std, the firmware under QEMU (`firmware/`). Every vector these
/// helpers check must be in it; `tests/data/update-vectors.sh` writes it anew.
const VECTORS: &str = include_str!("../data/vectors.tsv");

/// A vector's line in `tests/data/vectors.tsv`: recorded (`RECORD_VECTORS=file`), or checked
/// to be there.
fn note(line: &str) {
    if let Some(path) = std::env::var_os("RECORD_VECTORS") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        // One write per line: the test threads' lines do not interleave.
        file.write_all(format!("{line}\n").as_bytes()).unwrap();
    } else {
        assert!(
            VECTORS.lines().any(|l| l == line),
            "this vector is not in tests/data/vectors.tsv (run tests/data/update-vectors.sh): {line}"
        );
    }
}

/// The version column of the vectors file (`server`: a server's decoder, before the CONNECT).
fn version_name(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::V5) => "5",
        Some(ProtocolVersion::V3_1_1) => "3.1.1",
        Some(ProtocolVersion::V3_1) => "3.1",
        None => "server",
    }
}

/// The hex digits of `s`, upper case, without spaces.
fn canonical_hex(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_ascii_whitespace() && *c != '_')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The bytes of a hex string; whitespace (and `_`) between digits is ignored.
pub(crate) fn hex(s: &str) -> Bytes {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'_')
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).unwrap();
            u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex {text:?} in {s:?}"))
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A decoder for `version`; `None` is a server's decoder that waits for the CONNECT.
pub(crate) fn decoder(version: Option<ProtocolVersion>) -> Decoder {
    match version {
        Some(v) => Decoder::with_version(v),
        None => Decoder::new(),
    }
}

/// Decodes the one packet the hex holds with [`Decoder::decode_bytes`], asserting that it
/// spans the whole input. An incomplete input is a test failure.
pub(crate) fn decode_one(version: Option<ProtocolVersion>, hex_str: &str) -> Result<Packet, Error> {
    let buf = hex(hex_str);
    match decoder(version).decode_bytes(&buf)? {
        Status::Complete((packet, len)) => {
            assert_eq!(
                len,
                buf.len(),
                "the input is not exactly one packet: {hex_str}"
            );
            Ok(packet)
        }
        Status::Incomplete(needed) => panic!("incomplete ({needed:?} more needed): {hex_str}"),
    }
}

/// [`decode_one`], which must succeed.
pub(crate) fn decode_ok(version: Option<ProtocolVersion>, hex_str: &str) -> Packet {
    decode_one(version, hex_str).unwrap_or_else(|e| panic!("{hex_str} was rejected: {e}"))
}

/// Encodes `packet` for `version`, checking that `encoded_len` agrees with what was written.
pub(crate) fn encode(packet: &Packet, version: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    let written = packet
        .encode(version, &mut buf)
        .unwrap_or_else(|e| panic!("{packet:?} could not be encoded: {e}"));
    assert_eq!(written, buf.len());
    assert_eq!(packet.encoded_len(version).unwrap(), written);
    buf.freeze()
}

/// Decodes a canonical vector and checks that re-encoding it gives the same bytes.
/// `version` is the connection's (`None`: a server's first packet, a CONNECT).
pub(crate) fn roundtrip(version: Option<ProtocolVersion>, hex_str: &str) -> Packet {
    note(&format!(
        "valid\t{}\t{}",
        version_name(version),
        canonical_hex(hex_str)
    ));
    let packet = decode_ok(version, hex_str);
    let encode_as = match (&packet, version) {
        (Packet::Connect(c), _) => c.protocol,
        (_, Some(v)) => v,
        (_, None) => unreachable!("only a CONNECT decodes without a version"),
    };
    assert_eq!(
        encode(&packet, encode_as),
        hex(hex_str),
        "re-encoding {packet:?}"
    );
    packet
}

/// Asserts that `result` is the error `violation`, naming `statement` and answered with
/// `reason`; returns the error for further checks.
#[track_caller]
pub(crate) fn assert_violation(
    result: Result<Packet, Error>,
    violation: Violation,
    statement: Option<&str>,
    reason: ReasonCode,
) -> Error {
    let err = match result {
        Ok(packet) => panic!("expected {violation:?}, decoded {packet:?}"),
        Err(e) => e,
    };
    assert_eq!(err.violation(), violation, "{err}");
    assert_eq!(err.statement(), statement, "{err}");
    assert_eq!(err.reason_code(), reason, "{err}");
    err
}

/// Decodes `hex_str` and asserts it is rejected as [`assert_violation`] describes.
#[track_caller]
pub(crate) fn assert_rejected(
    version: Option<ProtocolVersion>,
    hex_str: &str,
    violation: Violation,
    statement: Option<&str>,
    reason: ReasonCode,
) -> Error {
    note(&format!(
        "malformed\t{}\t{}\t{violation:?}\t{}\t{}",
        version_name(version),
        canonical_hex(hex_str),
        statement.unwrap_or("-"),
        reason.0
    ));
    assert_violation(decode_one(version, hex_str), violation, statement, reason)
}

/// Asserts that the encoder refuses `packet` for `version` with `violation` and writes nothing
/// (the buffer already holds a few bytes, which must stay as they are).
#[track_caller]
pub(crate) fn assert_encode_refused(
    packet: &Packet,
    version: ProtocolVersion,
    violation: Violation,
) -> Error {
    let mut buf = BytesMut::from(&b"prefix"[..]);
    let err = packet
        .encode(version, &mut buf)
        .expect_err("the encoder accepted it");
    assert_eq!(err.violation(), violation, "{err}");
    assert_eq!(
        &buf[..],
        b"prefix",
        "the encoder wrote part of a refused packet"
    );
    assert_eq!(
        packet.encoded_len(version).map_err(|e| e.violation()),
        Err(violation)
    );
    err
}

/// Every strict prefix of the packet is `Incomplete`: `None` while the fixed header is cut,
/// then exactly the number of bytes still missing.
pub(crate) fn assert_prefixes_incomplete(version: Option<ProtocolVersion>, hex_str: &str) {
    let whole = hex(hex_str);
    let mut header_len = 2;
    while whole[header_len - 1] & 0x80 != 0 {
        header_len += 1;
    }
    for cut in 0..whole.len() {
        let prefix = whole.slice(..cut);
        let status = decoder(version)
            .decode_bytes(&prefix)
            .unwrap_or_else(|e| panic!("prefix of {cut} bytes of {hex_str}: {e}"));
        let needed = match status {
            Status::Incomplete(n) => n.map(|n| n.get()),
            Status::Complete(_) => panic!("prefix of {cut} bytes of {hex_str} is complete"),
        };
        let expected = (cut >= header_len).then(|| whole.len() - cut);
        assert_eq!(needed, expected, "prefix of {cut} bytes of {hex_str}");
    }
}

/// Feeds `stream` to [`Decoder::decode`] one byte at a time and collects the packets.
pub(crate) fn decode_bytewise(version: Option<ProtocolVersion>, stream: &[u8]) -> Vec<Packet> {
    let mut decoder = decoder(version);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for &byte in stream {
        buf.extend_from_slice(&[byte]);
        while let Some(packet) = decoder.decode(&mut buf).unwrap() {
            packets.push(packet);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    packets
}
