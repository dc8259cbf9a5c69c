#![no_main]
//! Fuzz target `host_files`: see `fuzz/checks/host_files.rs` for what is checked.

use libfuzzer_sys::fuzz_target;

include!("../checks/host_files.rs");

fuzz_target!(|data: &[u8]| {
    host_files_checks::run(data);
});
