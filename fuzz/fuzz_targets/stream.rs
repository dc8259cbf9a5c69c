#![no_main]
//! Fuzz target `stream`: see `fuzz/checks/codec.rs` for what is checked.

use libfuzzer_sys::fuzz_target;

include!("../checks/codec.rs");

fuzz_target!(|data: &[u8]| {
    codec_checks::stream(data);
});
