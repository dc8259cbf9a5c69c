#![no_main]
//! Fuzz target `client`: see `fuzz/checks/client.rs` for what is checked.

use libfuzzer_sys::fuzz_target;

include!("../checks/client.rs");

fuzz_target!(|data: &[u8]| {
    client_checks::run(data);
});
