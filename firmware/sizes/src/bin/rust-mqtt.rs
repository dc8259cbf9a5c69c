//! The program with rust-mqtt 0.6 (MQTT 5.0, its `alloc` buffer).
#![no_std]
#![no_main]

use core::num::NonZero;

use cortex_m_rt::entry;
use mqtt_firmware_sizes::{Heap, SERVER, Scripted, block_on, exit, hprintln, init_heap};
use rust_mqtt::Bytes;
use rust_mqtt::buffer::AllocBuffer;
use rust_mqtt::client::Client;
use rust_mqtt::client::event::Event;
use rust_mqtt::client::options::{
    ConnectOptions, PublicationOptions, SubscriptionOptions, TopicReference,
};
use rust_mqtt::config::KeepAlive;
use rust_mqtt::types::{MqttString, TopicFilter, TopicName};

#[global_allocator]
static HEAP: Heap = Heap::empty();

#[entry]
fn main() -> ! {
    init_heap!(HEAP);
    let t = Scripted::new(SERVER);
    let ok = block_on(async {
        let mut buffer = AllocBuffer;
        let mut client = Client::<'_, '_, _, _, 1, 1, 1, 1, 16, 0, 1>::new(&mut buffer);
        let Some(keep_alive) = NonZero::new(60) else {
            return false;
        };
        let Ok(id) = MqttString::try_from("fw-sizes") else {
            return false;
        };
        if client
            .connect(
                t,
                &ConnectOptions::new().keep_alive(KeepAlive::Seconds(keep_alive)),
                Some(id),
            )
            .await
            .is_err()
        {
            return false;
        }
        let Ok(filter) = MqttString::from_str("fw/in") else {
            return false;
        };
        let Some(filter) = TopicFilter::new(filter) else {
            return false;
        };
        if client
            .subscribe(filter, &SubscriptionOptions::new().at_least_once())
            .await
            .is_err()
        {
            return false;
        }
        if !matches!(client.poll().await, Ok(Event::Suback(_))) {
            return false;
        }
        let Ok(topic) = MqttString::from_str("fw/out") else {
            return false;
        };
        let Some(topic) = TopicName::new(topic) else {
            return false;
        };
        let options = PublicationOptions::new(TopicReference::Name(topic)).at_least_once();
        if client
            .publish(&options, Bytes::from(&b"21.5 degrees C"[..]))
            .await
            .is_err()
        {
            return false;
        }
        if !matches!(client.poll().await, Ok(Event::PublishAcknowledged(_))) {
            return false;
        }
        match client.poll().await {
            Ok(Event::Publish(p)) => {
                hprintln!("rust-mqtt: received {} bytes", p.message.len());
                true
            }
            _ => false,
        }
    });
    exit(ok)
}
