#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Will Messages (sections 3.1.2.5, 3.1.3.2, 3.14.4): when they are published (every abnormal
//! close, DISCONNECT 0x04, after the Will Delay Interval, when the session ends first), when
//! they are not (normal DISCONNECT, a new connection within the delay), and what they carry.

mod common;

use common::*;
use mqtt_session::broker::BrokerEvent;
use mqtt_session::codec::{
    Packet, PayloadFormatIndicator, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling,
};

/// A 5.0 subscriber to `filter` at QoS 2 with Retain As Published (so the RETAIN flag of what
/// it receives is the flag the will was published with).
fn watcher(sim: &mut Sim, id: &str, filter_: &str) -> (Client, Vec<Publish>) {
    let (mut c, _) = sim.connect(connect_v5(id, true, None));
    let opts = options(
        QoS::ExactlyOnce,
        false,
        true,
        RetainHandling::SendAtSubscribe,
    );
    let (ack, retained) = sim.subscribe_ack(&mut c, subscribe_with(1, filter_, opts));
    assert_eq!(ack.reason_codes, [ReasonCode::GRANTED_QOS_2]);
    (c, retained)
}

/// The device: 5.0, session expiry as given, a QoS 1 will on `status/dev`.
fn device(sim: &mut Sim, session_expiry: Option<u32>, delay: Option<u32>) -> Client {
    let mut w = will("status/dev", b"offline", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = delay;
    let (dev, ack) = sim.connect(connect_v5_will("dev", session_expiry, w));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    dev
}

fn will_payloads(sim: &mut Sim, c: &mut Client) -> Vec<String> {
    payloads(&sim.recv_publishes(c))
}

// ---- Abnormal closes publish the will ----------------------------------------------------------

// v5 [MQTT-3.1.2-7] [MQTT-3.1.2-8]
#[test]
fn v5_the_will_is_published_when_the_transport_drops() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/+");
    let dev = device(&mut sim, None, None);
    assert!(sim.wills_published().is_empty());
    sim.drop_connection(&dev);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert!(sim.events.iter().any(|e| matches!(e,
        BrokerEvent::WillPublished { client_id, topic } if client_id == "dev" && *topic == "status/dev")));
    let got = sim.recv_publishes(&mut w);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic.to_string(), "status/dev");
    assert_eq!(&got[0].payload[..], b"offline");
}

// v5 [MQTT-3.1.2-8] [MQTT-3.1.2-22]
#[test]
fn v5_the_will_is_published_when_keep_alive_times_out() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let mut connect = connect_v5_will(
        "dev",
        None,
        will("status/dev", b"offline", QoS::AtMostOnce, false),
    );
    connect.keep_alive = 20;
    let (dev, _) = sim.connect(connect);
    sim.advance(29);
    assert!(sim.wills_published().is_empty());
    sim.advance(1);
    assert!(sim.is_closed(&dev));
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

// v5 [MQTT-3.1.2-8] [MQTT-4.13.1-1] [MQTT-3.3.1-4]
#[test]
fn v5_the_will_is_published_when_the_server_closes_for_a_protocol_error() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let mut dev = device(&mut sim, None, None);
    // A PUBLISH with both QoS bits set is malformed.
    sim.send_bytes(&dev, &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]);
    assert_eq!(
        disconnect_reason(&sim.recv(&mut dev)),
        Some(ReasonCode::MALFORMED_PACKET)
    );
    assert!(sim.is_closed(&dev));
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_the_will_is_published_when_a_packet_exceeds_the_maximum_packet_size() {
    let mut sim = Sim::with_config(config_with(|c| c.maximum_packet_size = 64));
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let mut dev = device(&mut sim, None, None);
    sim.send(
        &dev,
        publish_owned("big", vec![0; 100], QoS::AtMostOnce, None),
    );
    assert_eq!(
        disconnect_reason(&sim.recv(&mut dev)),
        Some(ReasonCode::PACKET_TOO_LARGE)
    );
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_disconnect_0x04_asks_for_the_will_to_be_published() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, None, None);
    sim.disconnect(&dev, ReasonCode::DISCONNECT_WITH_WILL_MESSAGE);
    assert!(sim.is_closed(&dev));
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
    // The DISCONNECT itself was a clean one.
    assert!(sim.violations().is_empty());
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_disconnect_with_an_error_reason_code_still_publishes_the_will() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, None, None);
    // "The Client closes the Network Connection without first sending a DISCONNECT packet with
    // a Reason Code 0x00 (Normal disconnection)" (section 3.1.2.5).
    sim.disconnect(&dev, ReasonCode::UNSPECIFIED_ERROR);
    assert!(sim.is_closed(&dev));
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

/// Section 3.14.2.2.2: a DISCONNECT raising a zero Session Expiry Interval is not a valid
/// DISCONNECT, so the close is abnormal.
// v5 [MQTT-3.1.2-8]
#[test]
fn v5_an_invalid_disconnect_publishes_the_will() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, None, None);
    sim.send(&dev, disconnect_with_expiry(ReasonCode::SUCCESS, 60));
    assert!(sim.is_closed(&dev));
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

// v5 [MQTT-3.14.1-1] [MQTT-3.1.2-8]
// v3.1.1 [MQTT-3.14.1-1] [MQTT-3.1.2-8]
#[test]
fn a_disconnect_with_reserved_flags_set_is_malformed_and_the_will_is_published() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut sim = Sim::new();
        let (mut w, _) = watcher(&mut sim, "w", "status/dev");
        let mut connect = if version.is_v5() {
            connect_v5("dev", true, None)
        } else {
            connect_v311("dev", true)
        };
        connect.will = Some(will("status/dev", b"offline", QoS::AtMostOnce, false));
        let (mut dev, _) = sim.connect(connect);
        sim.send_bytes(&dev, &[0xE1, 0x00]);
        let got = sim.recv(&mut dev);
        if version.is_v5() {
            assert_eq!(disconnect_reason(&got), Some(ReasonCode::MALFORMED_PACKET));
        } else {
            assert!(got.is_empty());
        }
        assert!(sim.is_closed(&dev));
        assert_eq!(will_payloads(&mut sim, &mut w), ["offline"], "{version:?}");
    }
}

// v5 [MQTT-3.1.4-3] [MQTT-3.1.2-8]
#[test]
fn v5_the_will_of_a_client_taken_over_is_published_when_it_has_no_delay() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let _dev = device(&mut sim, Some(600), None);
    let (_dev2, ack) = sim.connect(connect_v5("dev", false, Some(600)));
    assert!(ack.session_present);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

/// Section 3.1.4, step 1, and its non-normative comment: when the existing connection had a
/// Session Expiry Interval of 0, its session ends on the takeover, and its will is sent.
// v5 [MQTT-3.1.4-3] [MQTT-3.1.2-8]
#[test]
fn v5_taking_over_a_session_with_expiry_0_ends_it_and_publishes_the_delayed_will() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let _dev = device(&mut sim, None, Some(30));
    let (_dev2, ack) = sim.connect(connect_v5("dev", false, Some(600)));
    assert!(!ack.session_present);
    assert_eq!(sim.sessions_ended(), ["dev"]);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

/// Section 3.1.4, step 1, non-normative comment: "If the Session Expiry Interval of the
/// existing Network Connection is 0, or the new Network Connection has Clean Start set to 1
/// then if the existing Network Connection has a Will Message it will be sent because the
/// original Session is ended on the takeover."
// v5 [MQTT-3.1.4-3] [MQTT-3.1.2-8]
#[test]
fn v5_taking_over_with_clean_start_1_publishes_the_delayed_will_of_the_ended_session() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let _dev = device(&mut sim, Some(600), Some(30));
    let (_dev2, ack) = sim.connect(connect_v5("dev", true, Some(600)));
    assert!(!ack.session_present);
    assert_eq!(sim.sessions_ended(), ["dev"]);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

/// A new connection with Clean Start 1 is not a connection "to this Session" ([MQTT-3.1.3-9]):
/// it ends the old session, and a session that ends publishes its pending will.
// v5 [MQTT-3.1.2-8] [MQTT-3.1.2-4]
#[test]
fn v5_clean_start_1_within_the_will_delay_publishes_the_will_of_the_discarded_session() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, Some(600), Some(30));
    sim.drop_connection(&dev);
    sim.advance(10);
    let (_dev2, ack) = sim.connect(connect_v5("dev", true, Some(600)));
    assert!(!ack.session_present);
    assert_eq!(sim.sessions_ended(), ["dev"]);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

// ---- A normal DISCONNECT discards the will -----------------------------------------------------

// v5 [MQTT-3.14.4-3] [MQTT-3.1.2-10]
#[test]
fn v5_disconnect_0x00_discards_the_will_for_good() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, Some(10), Some(5));
    sim.disconnect(&dev, ReasonCode::NORMAL_DISCONNECTION);
    // Not at the delay, not when the session ends.
    sim.advance(60);
    assert!(!sim.broker.has_session("dev"));
    assert!(sim.wills_published().is_empty());
    assert!(sim.recv_publishes(&mut w).is_empty());
    assert!(sim.records.iter().any(|r| matches!(r,
        mqtt_session::broker::StorageRecord::WillCleared { client_id } if client_id == "dev")));
}

// v5 [MQTT-3.1.2-10]
#[test]
fn v5_a_published_will_is_removed_from_the_session() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, Some(600), None);
    sim.drop_connection(&dev);
    assert_eq!(sim.wills_published(), ["dev"]);
    // The session lives on, without its will: a reconnection without a will that drops again
    // publishes nothing more.
    let (dev2, ack) = sim.connect(connect_v5("dev", false, Some(600)));
    assert!(ack.session_present);
    sim.drop_connection(&dev2);
    sim.advance(600);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

// ---- Will Delay Interval -----------------------------------------------------------------------

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_the_will_waits_for_the_will_delay_interval() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, Some(600), Some(30));
    sim.drop_connection(&dev);
    sim.advance_ms(29_999);
    assert!(sim.wills_published().is_empty());
    assert!(sim.recv_publishes(&mut w).is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
    // The session itself lives on.
    assert!(sim.broker.has_session("dev"));
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_disconnect_0x04_honours_the_will_delay_interval() {
    let mut sim = Sim::new();
    let dev = device(&mut sim, Some(600), Some(30));
    sim.disconnect(&dev, ReasonCode::DISCONNECT_WITH_WILL_MESSAGE);
    sim.advance(29);
    assert!(sim.wills_published().is_empty());
    sim.advance(1);
    assert_eq!(sim.wills_published(), ["dev"]);
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_the_will_is_published_when_the_session_ends_before_the_delay() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, Some(10), Some(60));
    sim.drop_connection(&dev);
    sim.advance_ms(9_999);
    assert!(sim.wills_published().is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(sim.sessions_ended(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
    // The will is published before the session-ended notice.
    let will_at = sim
        .events
        .iter()
        .position(|e| matches!(e, BrokerEvent::WillPublished { .. }));
    let end_at = sim
        .events
        .iter()
        .position(|e| matches!(e, BrokerEvent::SessionEnded { .. }));
    assert!(will_at < end_at);
    // Not a second time at the original delay.
    sim.advance(60);
    assert_eq!(sim.wills_published(), ["dev"]);
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_with_session_expiry_0_the_delayed_will_is_published_at_once() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, None, Some(300));
    sim.drop_connection(&dev);
    // The session ended with the connection, and the will with it.
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline"]);
}

// v5 [MQTT-3.1.3-9]
#[test]
fn v5_a_new_connection_within_the_will_delay_cancels_the_will() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, Some(600), Some(30));
    sim.drop_connection(&dev);
    sim.advance(20);
    // Back in time, without a will this time.
    let (dev2, ack) = sim.connect(connect_v5("dev", false, Some(600)));
    assert!(ack.session_present);
    sim.advance(60);
    assert!(sim.wills_published().is_empty());
    // The cancelled will is not published later either, when the new connection drops.
    sim.drop_connection(&dev2);
    sim.advance(600);
    assert!(!sim.broker.has_session("dev"));
    assert!(sim.wills_published().is_empty());
    assert!(sim.recv_publishes(&mut w).is_empty());
}

// v5 [MQTT-3.1.3-9] [MQTT-3.1.2-7]
#[test]
fn v5_a_reconnection_with_a_new_will_replaces_the_old_one() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let dev = device(&mut sim, Some(600), Some(30));
    sim.drop_connection(&dev);
    sim.advance(10);
    let mut connect = connect_v5("dev", false, Some(600));
    let mut second = will("status/dev", b"offline again", QoS::AtMostOnce, false);
    second.properties.will_delay_interval = Some(30);
    connect.will = Some(second);
    let (dev2, _) = sim.connect(connect);
    sim.drop_connection(&dev2);
    sim.advance(30);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(will_payloads(&mut sim, &mut w), ["offline again"]);
}

// ---- What the will carries ---------------------------------------------------------------------

// v5 [MQTT-3.1.2-15]
#[test]
fn v5_a_will_with_will_retain_is_published_as_a_retained_message() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let (dev, _) = sim.connect(connect_v5_will(
        "dev",
        None,
        will("status/dev", b"offline", QoS::AtLeastOnce, true),
    ));
    sim.drop_connection(&dev);
    let got = sim.recv_publishes(&mut w);
    assert!(
        got[0].retain,
        "Retain As Published shows the RETAIN flag it was published with"
    );
    assert_eq!(
        &sim.broker.retained("status/dev").unwrap().payload[..],
        b"offline"
    );
    // A later subscriber gets it as a retained message.
    let (_late, got) = watcher(&mut sim, "late", "status/#");
    assert_eq!(payloads(&got), ["offline"]);
    assert!(got[0].retain);
}

// v5 [MQTT-3.1.2-14]
#[test]
fn v5_a_will_without_will_retain_is_published_as_a_non_retained_message() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    // An older retained message on the will topic stays as it is.
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, retained("status/dev", b"online"));
    sim.recv(&mut w);
    let dev = device(&mut sim, None, None);
    sim.drop_connection(&dev);
    let got = sim.recv_publishes(&mut w);
    assert_eq!(payloads(&got), ["offline"]);
    assert!(!got[0].retain);
    assert_eq!(
        &sim.broker.retained("status/dev").unwrap().payload[..],
        b"online"
    );
}

// v5 [MQTT-3.8.4-8]
#[test]
fn v5_the_will_is_delivered_at_its_will_qos_within_the_granted_qos() {
    let mut sim = Sim::new();
    let (mut q2, _) = watcher(&mut sim, "q2", "status/dev");
    let (mut q0, _) = sim.connect(connect_v5("q0", true, None));
    sim.send(&q0, subscribe(1, &[("status/dev", QoS::AtMostOnce)]));
    sim.recv(&mut q0);
    let (dev, _) = sim.connect(connect_v5_will(
        "dev",
        None,
        will("status/dev", b"x", QoS::ExactlyOnce, false),
    ));
    sim.drop_connection(&dev);
    let got2 = sim.recv_publishes(&mut q2);
    assert_eq!(got2[0].qos, QoS::ExactlyOnce);
    assert!(got2[0].packet_id.is_some());
    let got0 = sim.recv_publishes(&mut q0);
    assert_eq!(got0[0].qos, QoS::AtMostOnce);
    assert_eq!(got0[0].packet_id, None);
}

// v5 [MQTT-3.1.3-10] [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]
#[test]
fn v5_will_properties_are_carried_over_unaltered_with_user_properties_in_order() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let mut wl = will(
        "status/dev",
        b"{\"state\":\"offline\"}",
        QoS::AtLeastOnce,
        false,
    );
    let props = &mut wl.properties;
    props.payload_format_indicator = Some(PayloadFormatIndicator::Utf8);
    props.set_content_type(Some(utf8("application/json")));
    props
        .set_response_topic(Some(topic("status/dev/ack")))
        .unwrap();
    props
        .set_correlation_data(Some(&[0xDE, 0xAD, 0xBE, 0xEF]))
        .unwrap();
    for (k, v) in [("z", "last"), ("a", "first"), ("z", "again")] {
        props.push_user_property(utf8(k), utf8(v));
    }
    props.will_delay_interval = Some(5);
    let (dev, _) = sim.connect(connect_v5_will("dev", Some(60), wl));
    sim.drop_connection(&dev);
    sim.advance(5);
    let got = sim.recv_publishes(&mut w);
    assert_eq!(got.len(), 1);
    let p = &got[0].properties;
    assert_eq!(
        p.payload_format_indicator,
        Some(PayloadFormatIndicator::Utf8)
    );
    assert_eq!(p.content_type(), Some("application/json"));
    assert_eq!(p.response_topic(), Some("status/dev/ack"));
    assert_eq!(p.correlation_data(), Some(&[0xDE, 0xAD, 0xBE, 0xEF][..]));
    let users: Vec<(&str, &str)> = p.user_properties().collect();
    assert_eq!(users, [("z", "last"), ("a", "first"), ("z", "again")]);
    // The Will Delay Interval is not part of the published message.
    assert_eq!(p.will_delay_interval, None);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

/// Section 3.1.3.2.4: the will's Message Expiry Interval is sent as the Publication Expiry
/// Interval when the will is published; it then counts down like any message's.
// v5 [MQTT-3.3.2-6]
#[test]
fn v5_the_will_message_expiry_is_forwarded_and_reduced_while_queued() {
    let mut sim = Sim::new();
    // A persistent subscriber, offline when the will is published.
    let s = sim.subscriber(
        connect_v5("s", true, Some(600)),
        &[("status/dev", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&s);

    let mut wl = will("status/dev", b"offline", QoS::AtLeastOnce, false);
    wl.properties.message_expiry_interval = Some(300);
    let (dev, _) = sim.connect(connect_v5_will("dev", None, wl));
    sim.drop_connection(&dev);
    sim.advance(100);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(600)));
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["offline"]);
    assert_eq!(got[0].properties.message_expiry_interval, Some(200));
}

/// Section 3.1.3.2.4: the lifetime of the will starts when it is published, not at CONNECT.
// v5 [MQTT-3.1.2-8] [MQTT-3.3.2-6]
#[test]
fn v5_the_will_message_expiry_starts_when_the_will_is_published() {
    let mut sim = Sim::new();
    let (mut w, _) = watcher(&mut sim, "w", "status/dev");
    let mut wl = will("status/dev", b"offline", QoS::AtLeastOnce, true);
    wl.properties.message_expiry_interval = Some(60);
    let mut connect = connect_v5_will("dev", None, wl);
    connect.keep_alive = 30;
    let (mut dev, _) = sim.connect(connect);
    // Connected for ten minutes, well beyond the will's 60 s lifetime.
    for _ in 0..20 {
        sim.advance(30);
        sim.send(&dev, Packet::PingReq);
        sim.recv(&mut dev);
    }
    sim.drop_connection(&dev);
    let got = sim.recv_publishes(&mut w);
    assert_eq!(payloads(&got), ["offline"], "the will must be delivered");
    assert_eq!(got[0].properties.message_expiry_interval, Some(60));
    // And kept as the retained message for its 60 s.
    sim.advance(30);
    let (_late, got) = watcher(&mut sim, "late", "status/dev");
    assert_eq!(payloads(&got), ["offline"]);
    assert_eq!(got[0].properties.message_expiry_interval, Some(30));
}

// ---- MQTT 3.1.1 --------------------------------------------------------------------------------

fn device_v311(sim: &mut Sim, retain: bool) -> Client {
    let mut c = connect_v311("dev", true);
    c.will = Some(will("status/dev", b"offline", QoS::AtLeastOnce, retain));
    sim.connect(c).0
}

fn watcher_v311(sim: &mut Sim) -> Client {
    sim.subscriber(connect_v311("w", true), &[("status/#", QoS::AtLeastOnce)])
}

// v3.1.1 [MQTT-3.1.2-8] [MQTT-3.1.2-16]
#[test]
fn v311_the_will_is_published_when_the_connection_drops() {
    let mut sim = Sim::new();
    let mut w = watcher_v311(&mut sim);
    let dev = device_v311(&mut sim, false);
    sim.drop_connection(&dev);
    let got = sim.recv_publishes(&mut w);
    assert_eq!(payloads(&got), ["offline"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert!(!got[0].retain);
    assert_eq!(sim.broker.retained_count(), 0);
}

// v3.1.1 [MQTT-3.1.2-8] [MQTT-3.1.2-24]
#[test]
fn v311_the_will_is_published_when_keep_alive_times_out() {
    let mut sim = Sim::new();
    let mut w = watcher_v311(&mut sim);
    let mut c = connect_v311("dev", true);
    c.keep_alive = 10;
    c.will = Some(will("status/dev", b"offline", QoS::AtMostOnce, false));
    let (dev, _) = sim.connect(c);
    sim.advance(15);
    assert!(sim.is_closed(&dev));
    assert_eq!(payloads(&sim.recv_publishes(&mut w)), ["offline"]);
}

// v3.1.1 [MQTT-3.1.2-8] [MQTT-3.1.0-2]
#[test]
fn v311_the_will_is_published_when_the_server_closes_for_a_protocol_violation() {
    let mut sim = Sim::new();
    let mut w = watcher_v311(&mut sim);
    let dev = device_v311(&mut sim, false);
    sim.send(&dev, connect_v311("dev", true));
    assert!(sim.is_closed(&dev));
    assert_eq!(payloads(&sim.recv_publishes(&mut w)), ["offline"]);
}

// v3.1.1 [MQTT-3.1.2-10] [MQTT-3.14.4-3]
#[test]
fn v311_disconnect_discards_the_will() {
    let mut sim = Sim::new();
    let mut w = watcher_v311(&mut sim);
    let dev = device_v311(&mut sim, true);
    sim.send(&dev, mqtt_session::codec::Disconnect::default());
    assert!(sim.is_closed(&dev));
    assert!(sim.wills_published().is_empty());
    assert!(sim.recv_publishes(&mut w).is_empty());
    assert_eq!(sim.broker.retained_count(), 0);
}

// v3.1.1 [MQTT-3.1.2-12]
#[test]
fn v311_without_the_will_flag_nothing_is_published() {
    let mut sim = Sim::new();
    let mut w = watcher_v311(&mut sim);
    let (dev, _) = sim.connect(connect_v311("dev", true));
    sim.drop_connection(&dev);
    assert!(sim.wills_published().is_empty());
    assert!(sim.recv_publishes(&mut w).is_empty());
}

// v3.1.1 [MQTT-3.1.2-17]
#[test]
fn v311_a_will_with_will_retain_is_published_as_a_retained_message() {
    let mut sim = Sim::new();
    let dev = device_v311(&mut sim, true);
    sim.drop_connection(&dev);
    let retained = sim.broker.retained("status/dev").expect("will retained");
    assert_eq!(&retained.payload[..], b"offline");
    assert_eq!(retained.qos, QoS::AtLeastOnce);
    // A later 3.1.1 subscriber receives it with RETAIN 1.
    let (mut late, _) = sim.connect(connect_v311("late", true));
    sim.send(&late, subscribe(1, &[("status/+", QoS::AtLeastOnce)]));
    let got: Vec<Publish> = sim.recv_publishes(&mut late);
    assert_eq!(payloads(&got), ["offline"]);
    assert!(got[0].retain);
    assert_eq!(late.version, ProtocolVersion::V3_1_1);
}
