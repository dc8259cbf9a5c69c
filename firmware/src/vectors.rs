//! Runs the codec's hex vectors (`mqtt-codec/tests/data/vectors.tsv`): each valid one must
//! decode and re-encode to the same bytes, each malformed one must be refused with the same
//! violation, normative statement and reason code. `no_std` + `alloc`: the firmware runs it
//! under QEMU, and `mqtt-codec/tests/vectors_file.rs` runs the same source on std.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{Decoder, Packet, ProtocolVersion, Status};

/// What a run found.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Valid vectors that decoded and re-encoded to the same bytes.
    pub(crate) valid: usize,
    /// Malformed vectors refused as the file says.
    pub(crate) malformed: usize,
    /// One line per vector that did not behave as the file says.
    pub(crate) failures: Vec<String>,
}

/// Runs every vector of `text` (the file's contents).
pub(crate) fn run(text: &str) -> Tally {
    let mut tally = Tally::default();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match check(line) {
            Ok(true) => tally.valid += 1,
            Ok(false) => tally.malformed += 1,
            Err(why) => tally.failures.push(format!("{line}: {why}")),
        }
    }
    tally
}

/// Checks one line; `Ok(true)` for a valid vector, `Ok(false)` for a malformed one.
fn check(line: &str) -> Result<bool, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let (kind, version, hex) = match fields.as_slice() {
        [kind, version, hex, ..] => (*kind, *version, *hex),
        _ => return Err(String::from("fewer than 3 fields")),
    };
    let version = match version {
        "5" => Some(ProtocolVersion::V5),
        "3.1.1" => Some(ProtocolVersion::V3_1_1),
        "3.1" => Some(ProtocolVersion::V3_1),
        "server" => None,
        other => return Err(format!("unknown version {other}")),
    };
    let bytes = Bytes::from(parse_hex(hex)?);
    let mut decoder = match version {
        Some(v) => Decoder::with_version(v),
        None => Decoder::new(),
    };
    let decoded = match decoder.decode_bytes(&bytes) {
        Ok(Status::Complete((packet, len))) if len == bytes.len() => Ok(packet),
        Ok(Status::Complete((_, len))) => {
            return Err(format!("decoded {len} bytes of {}", bytes.len()));
        }
        Ok(Status::Incomplete(_)) => return Err(String::from("incomplete")),
        Err(e) => Err(e),
    };
    match (kind, decoded) {
        ("valid", Ok(packet)) => {
            let encode_as = match (&packet, version) {
                (Packet::Connect(c), _) => c.protocol,
                (_, Some(v)) => v,
                (_, None) => return Err(String::from("only a CONNECT decodes without a version")),
            };
            let mut out = BytesMut::new();
            packet
                .encode(encode_as, &mut out)
                .map_err(|e| format!("re-encoding refused: {e}"))?;
            if out[..] == bytes[..] {
                Ok(true)
            } else {
                Err(String::from("re-encoded to other bytes"))
            }
        }
        ("valid", Err(e)) => Err(format!("refused: {e}")),
        ("malformed", Ok(_)) => Err(String::from("decoded")),
        ("malformed", Err(e)) => {
            let [_, _, _, violation, statement, reason] = fields.as_slice() else {
                return Err(String::from("a malformed vector has 6 fields"));
            };
            let got = (
                format!("{:?}", e.violation()),
                e.statement().unwrap_or("-"),
                format!("{}", e.reason_code().0),
            );
            if (got.0.as_str(), got.1, got.2.as_str()) == (*violation, *statement, *reason) {
                Ok(false)
            } else {
                Err(format!("refused as {} {} {}", got.0, got.1, got.2))
            }
        }
        (other, _) => Err(format!("unknown kind {other}")),
    }
}

/// The bytes of a string of hex digit pairs.
fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err(String::from("odd number of hex digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex at {i}"))
        })
        .collect()
}
