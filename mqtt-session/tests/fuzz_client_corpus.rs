//! Replays the committed corpus of the `client` fuzz target (seeds, and every crash fixed) on
//! stable Rust, through the same checks the fuzz target runs (`fuzz/checks/client.rs`).
// Test code: a panic is a failure report. (The workspace denies these in library code.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::Path;

include!("../../fuzz/checks/client.rs");
include!("../../fuzz/checks/corpus.rs");

#[test]
fn client_corpus() {
    replay("client", client_checks::run);
}

/// Pseudo-random inputs through the checks, so that `cargo test` exercises them beyond the
/// committed corpus (deterministic: the same inputs every run).
#[test]
fn client_checks_on_generated_inputs() {
    let mut seed = 0x5DEE_CE66_D1CE_4E5B_u64;
    for n in 0..400 {
        let data = random(&mut seed, 64 + (n % 16) * 64);
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client_checks::run(&data)));
        assert!(result.is_ok(), "generated input {n} fails: {data:02x?}");
    }
}

fn random(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}

/// Writes the seed corpus of the `client` target: pseudo-random bytes of a few sizes (the
/// target reads them as a configuration and operations), half of them starting by bringing the
/// transport up and accepting the CONNECT. Deterministic; run it with
/// `cargo test -p mqtt-session --test fuzz_client_corpus -- --ignored write_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/client; run by hand"]
fn write_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/client");
    fs::create_dir_all(&dir).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for n in 0..16 {
        let mut data = Vec::new();
        // Configuration: MQTT 5.0 or 3.1.1 alternately, then the rest at random.
        data.push((n % 2) as u8);
        data.extend(random(&mut seed, 12));
        if n % 4 < 2 {
            // Operation 0 (transport up), then 3 (a CONNACK).
            data.extend_from_slice(&[0, 0, 0, 3, 3]);
        }
        data.extend(random(&mut seed, 96 + n * 40));
        fs::write(dir.join(format!("seed-{n:03}")), &data).unwrap();
    }
}
