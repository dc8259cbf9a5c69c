#![no_main]
//! Fuzz target `broker`: see `fuzz/checks/broker.rs` for what is checked.

use libfuzzer_sys::fuzz_target;

include!("../checks/broker.rs");

fuzz_target!(|data: &[u8]| {
    broker_checks::run(data);
});
