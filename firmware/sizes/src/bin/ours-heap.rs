//! The heap a session of mqtt-embedded uses: connected and subscribed, then with 8 QoS 1
//! messages of 14 bytes in flight (published, not acknowledged).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use cortex_m_rt::entry;
use mqtt_embedded::{
    ClientConfig, MqttClient, ProtocolVersion, Publish, QoS, SubscriptionOptions, TopicFilter,
    TopicName,
};
use mqtt_firmware_sizes::{Heap, Scripted, Still, block_on, exit, hprintln, init_heap};

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// CONNACK and SUBACK only: the PUBLISHes stay in flight.
static SERVER: &[u8] = &[
    0x20, 0x03, 0x00, 0x00, 0x00, 0x90, 0x04, 0x00, 0x01, 0x00, 0x01,
];

#[entry]
fn main() -> ! {
    init_heap!(HEAP);
    let before = HEAP.used();
    let mut t = Scripted::new(SERVER);
    let ok = block_on(async {
        let config = ClientConfig::new(ProtocolVersion::V5, "fw-sizes");
        let Ok(mut client) = MqttClient::new(config, Still) else {
            return false;
        };
        if client.connect(&mut t).await.is_err() {
            return false;
        }
        let Ok(filter) = TopicFilter::try_from("fw/in") else {
            return false;
        };
        if client
            .subscribe(
                &mut t,
                vec![(filter, SubscriptionOptions::qos(QoS::AtLeastOnce))],
            )
            .await
            .is_err()
        {
            return false;
        }
        let connected = HEAP.used() - before;
        for _ in 0..8 {
            let Ok(topic) = TopicName::try_from("fw/out") else {
                return false;
            };
            let mut message = Publish::new(topic, &b"21.5 degrees C"[..]);
            message.qos = QoS::AtLeastOnce;
            if client.publish(&mut t, message).await.is_err() {
                return false;
            }
        }
        hprintln!(
            "ours heap: {} bytes connected and subscribed, {} with 8 QoS 1 messages in flight ({} in flight)",
            connected,
            HEAP.used() - before,
            client.engine().in_flight()
        );
        client.engine().in_flight() == 8
    });
    exit(ok)
}
