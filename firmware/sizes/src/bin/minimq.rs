//! The program with minimq 0.13 (no allocation; keep alive on embassy-time, whose driver this
//! firmware provides: a clock that stands still, as the other programs have).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use minimq::{Buffers, ConfigBuilder, Publication, QoS, Session, SubscriptionOptions, TopicFilter};
use mqtt_firmware_sizes::{Heap, SERVER, Scripted, block_on, exit, hprintln, init_heap};

#[global_allocator]
static HEAP: Heap = Heap::empty();

struct Still;

impl embassy_time_driver::Driver for Still {
    fn now(&self) -> u64 {
        core::hint::black_box(0)
    }
    fn schedule_wake(&self, _at: u64, _waker: &core::task::Waker) {}
}

embassy_time_driver::time_driver_impl!(static DRIVER: Still = Still);

#[entry]
fn main() -> ! {
    init_heap!(HEAP);
    let mut t = Scripted::new(SERVER);
    let ok = block_on(async {
        let mut rx = [0u8; 256];
        let mut tx = [0u8; 768];
        let Ok(config) = ConfigBuilder::new(Buffers::new(&mut rx, &mut tx)).client_id("fw-sizes")
        else {
            return false;
        };
        let mut session = Session::new(config.keepalive_interval(60));
        let Ok(mut conn) = session.connect(&mut t).await else {
            return false;
        };
        let filter = TopicFilter::new("fw/in")
            .options(SubscriptionOptions::default().maximum_qos(QoS::AtLeastOnce));
        let Ok(sub) = conn.subscribe(&[filter], &[]).await else {
            return false;
        };
        let publication = Publication::new("fw/out", &b"21.5 degrees C"[..]).qos(QoS::AtLeastOnce);
        let Ok(Some(publish)) = conn.publish(publication).await else {
            return false;
        };
        while !(conn.is_complete(&sub) && conn.is_complete(&publish)) {
            if conn.poll().await.is_err() {
                return false;
            }
        }
        match conn.recv().await {
            Ok(message) => {
                hprintln!("minimq: received {} bytes", message.payload().len());
                true
            }
            Err(_) => false,
        }
    });
    exit(ok)
}
