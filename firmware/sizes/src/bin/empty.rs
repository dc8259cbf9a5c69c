//! The runtime alone: what the other programs are measured against.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use mqtt_firmware_sizes::{Heap, SERVER, Scripted, block_on, exit, hprintln, init_heap};

#[global_allocator]
static HEAP: Heap = Heap::empty();

#[entry]
fn main() -> ! {
    init_heap!(HEAP);
    let mut t = Scripted::new(SERVER);
    let n = block_on(async {
        let mut buf = [0u8; 4];
        embedded_io_async::Read::read(&mut t, &mut buf)
            .await
            .unwrap_or(0)
    });
    hprintln!("empty: read {}", n);
    exit(n > 0)
}
