#![no_main]
//! Fuzz target `websocket`: see `fuzz/checks/websocket.rs` for what is checked.

use libfuzzer_sys::fuzz_target;

include!("../checks/websocket.rs");

fuzz_target!(|data: &[u8]| {
    websocket_checks::run(data);
});
