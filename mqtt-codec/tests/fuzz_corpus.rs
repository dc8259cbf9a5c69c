//! Replays the committed fuzz corpora (seeds, and every crash fixed) on stable Rust, through the
//! same checks the fuzz targets run (`fuzz/checks/codec.rs`).
// Test code: a panic is a failure report. (The workspace denies these in library code.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::Path;

include!("../../fuzz/checks/codec.rs");
include!("../../fuzz/checks/corpus.rs");

#[test]
fn decode_v311_corpus() {
    replay("decode_v311", |d| {
        codec_checks::decode(d, Some(mqtt_codec::ProtocolVersion::V3_1_1));
        codec_checks::decode(d, None);
    });
}

#[test]
fn decode_v5_corpus() {
    replay("decode_v5", |d| {
        codec_checks::decode(d, Some(mqtt_codec::ProtocolVersion::V5));
        codec_checks::decode(d, None);
    });
}

#[test]
fn roundtrip_corpus() {
    replay("roundtrip", codec_checks::roundtrip);
}

#[test]
fn stream_corpus() {
    replay("stream", codec_checks::stream);
}

/// Writes the seed corpora: valid encodings of arbitrary packets (and streams of them) for the
/// decode targets, pseudo-random bytes for the structured ones. Deterministic; run it with
/// `cargo test -p mqtt-codec --test fuzz_corpus -- --ignored write_seed_corpora`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn write_seed_corpora() {
    use bytes::BytesMut;
    use mqtt_codec::arbitrary::Unstructured;
    use mqtt_codec::{Packet, ProtocolVersion};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut random = |len: usize| (0..len).map(|_| next() as u8).collect::<Vec<u8>>();
    for (target, version) in [
        ("decode_v311", ProtocolVersion::V3_1_1),
        ("decode_v5", ProtocolVersion::V5),
    ] {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        let mut n = 0;
        while n < 64 {
            let data = random(512);
            let mut u = Unstructured::new(&data);
            let mut wire = BytesMut::new();
            // A CONNECT first in half of them, so the server-side decoder gets past it.
            if n % 2 == 0 {
                let mut connect = mqtt_codec::Connect::new(version, "seed".try_into().unwrap());
                connect.keep_alive = 30;
                Packet::from(connect).encode(version, &mut wire).unwrap();
            }
            for _ in 0..(n % 4 + 1) {
                let Ok(p) = Packet::arbitrary_for(&mut u, version) else {
                    break;
                };
                p.encode(version, &mut wire).unwrap();
            }
            fs::write(dir.join(format!("seed-{n:03}")), &wire).unwrap();
            n += 1;
        }
    }
    for target in ["roundtrip", "stream"] {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        for n in 0..32 {
            fs::write(dir.join(format!("seed-{n:03}")), random(64 + n * 16)).unwrap();
        }
    }
}
