//! The program with mqtt-embedded (the client engine of this repository).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use cortex_m_rt::entry;
use mqtt_embedded::{
    ClientConfig, MqttClient, ProtocolVersion, Publish, QoS, SubscriptionOptions, TopicFilter,
    TopicName,
};
use mqtt_firmware_sizes::{Heap, SERVER, Scripted, Still, block_on, exit, hprintln, init_heap};

#[global_allocator]
static HEAP: Heap = Heap::empty();

#[entry]
fn main() -> ! {
    init_heap!(HEAP);
    let mut t = Scripted::new(SERVER);
    let ok = block_on(async {
        let mut config = ClientConfig::new(ProtocolVersion::V5, "fw-sizes");
        config.keep_alive = 60;
        let Ok(mut client) = MqttClient::new(config, Still) else {
            return false;
        };
        if client.connect(&mut t).await.is_err() {
            return false;
        }
        let Ok(filter) = TopicFilter::try_from("fw/in") else {
            return false;
        };
        let granted = client
            .subscribe(
                &mut t,
                vec![(filter, SubscriptionOptions::qos(QoS::AtLeastOnce))],
            )
            .await;
        let Ok(topic) = TopicName::try_from("fw/out") else {
            return false;
        };
        let mut message = Publish::new(topic, &b"21.5 degrees C"[..]);
        message.qos = QoS::AtLeastOnce;
        let acked = client.publish_acked(&mut t, message).await;
        let received = client.receive(&mut t).await;
        match (granted, acked, received) {
            (Ok(_), Ok(_), Ok(m)) => {
                hprintln!("ours: received {} bytes", m.payload.len());
                true
            }
            _ => false,
        }
    });
    exit(ok)
}
