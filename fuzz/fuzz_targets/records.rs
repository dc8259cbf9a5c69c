#![no_main]
//! Fuzz target `records`: see `fuzz/checks/records.rs` for what is checked.

use libfuzzer_sys::fuzz_target;

include!("../checks/records.rs");

fuzz_target!(|data: &[u8]| {
    records_checks::run(data);
});
