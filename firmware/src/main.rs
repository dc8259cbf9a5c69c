//! The test firmware (see Cargo.toml): prints what it checked over semihosting and exits with
//! 0 when everything passed, 1 otherwise; a panic reports itself and exits non-zero.
#![no_std]
#![no_main]

extern crate alloc;

mod session;
mod vectors;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap as Heap;
use mqtt_codec::ProtocolVersion;
use panic_semihosting as _;

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// The heap: the engines allocate their state, the vectors their packets.
const HEAP_SIZE: usize = 256 * 1024;

#[entry]
fn main() -> ! {
    // SAFETY: called once, first thing, before anything allocates (the only unsafe code of
    // this firmware: the heap's memory is a static array the macro declares).
    unsafe {
        embedded_alloc::init!(HEAP, HEAP_SIZE);
    }
    let mut ok = true;

    let tally = vectors::run(include_str!("../../mqtt-codec/tests/data/vectors.tsv"));
    hprintln!(
        "vectors: {} valid, {} malformed, {} failed",
        tally.valid,
        tally.malformed,
        tally.failures.len()
    );
    for failure in &tally.failures {
        hprintln!("FAILED {}", failure);
        ok = false;
    }

    for (name, version) in [
        ("5.0", ProtocolVersion::V5),
        ("3.1.1", ProtocolVersion::V3_1_1),
    ] {
        match session::run(version) {
            Ok(delivered) => hprintln!(
                "session {}: resumed after both transports were lost, {} deliveries, every QoS 2 message once",
                name,
                delivered
            ),
            Err(why) => {
                hprintln!("FAILED session {}: {}", name, why);
                ok = false;
            }
        }
    }
    hprintln!("heap in use at the end: {} bytes", HEAP.used());

    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    #[allow(clippy::empty_loop)]
    loop {}
}
