#![no_main]
//! Fuzz target `decode_v5`: see `fuzz/checks/codec.rs` for what is checked.

use libfuzzer_sys::fuzz_target;

include!("../checks/codec.rs");

fuzz_target!(|data: &[u8]| {
    codec_checks::decode(data, Some(mqtt_codec::ProtocolVersion::V5));
    codec_checks::decode(data, None);
});
