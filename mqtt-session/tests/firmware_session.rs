//! The client session the test firmware runs under QEMU (`firmware/src/session.rs`), run on
//! std from the same source: the client engine against the broker engine, both transports lost
//! mid-flow with QoS 1 and QoS 2 messages in flight, both sessions resumed; every message
//! acknowledged and delivered, each QoS 2 message exactly once.
// v5 [MQTT-4.3.3-10] [MQTT-4.4.0-1]
// v3.1.1 [MQTT-4.3.3-2] [MQTT-4.4.0-1]

extern crate alloc;

use mqtt_session::codec::ProtocolVersion;

#[path = "../../firmware/src/session.rs"]
mod session;

#[test]
fn mqtt_4_4_0_1_sessions_resume_after_both_transports_are_lost_v5() {
    let delivered = session::run(ProtocolVersion::V5).unwrap();
    assert!(delivered >= 8, "{delivered}");
}

#[test]
fn mqtt_4_4_0_1_sessions_resume_after_both_transports_are_lost_v311() {
    let delivered = session::run(ProtocolVersion::V3_1_1).unwrap();
    assert!(delivered >= 8, "{delivered}");
}
