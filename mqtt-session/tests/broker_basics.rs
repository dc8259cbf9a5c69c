//! First scenarios of the broker engine: connect, subscribe, publish at each QoS, persistent
//! sessions, wills, retained messages, restart.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use mqtt_session::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

// v5 [MQTT-3.1.2-4] [MQTT-3.2.2-2]
#[test]
fn clean_start_1_gives_session_present_0() {
    let mut sim = Sim::new();
    let (_c, ack) = sim.connect(connect_v5("a", true, Some(300)));
    assert!(!ack.session_present);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
}

// v5 [MQTT-3.1.2-5] [MQTT-3.2.2-3] [MQTT-3.1.2-23]
#[test]
fn persistent_session_receives_messages_published_while_offline() {
    let mut sim = Sim::new();
    let (mut sub, _) = sim.connect(connect_v5("sub", true, Some(300)));
    sim.send(&sub, subscribe(1, &[("t/#", QoS::AtLeastOnce)]));
    assert!(matches!(sim.recv(&mut sub)[..], [Packet::SubAck(_)]));
    sim.send(&sub, mqtt_session::codec::Disconnect::default());
    let (publisher, _) = sim.connect(connect_v5("pub", true, None));
    sim.send(&publisher, publish("t/1", b"m1", QoS::AtLeastOnce, Some(1)));
    sim.send(&publisher, publish("t/2", b"m2", QoS::AtLeastOnce, Some(2)));
    sim.advance(10);
    let (mut sub2, ack) = sim.connect(connect_v5("sub", false, Some(300)));
    assert!(ack.session_present);
    let got = sim.recv_publishes(&mut sub2);
    assert_eq!(got.len(), 2);
    assert_eq!(&got[0].payload[..], b"m1");
    assert_eq!(&got[1].payload[..], b"m2");
    assert!(got.iter().all(|p| p.qos == QoS::AtLeastOnce && !p.dup));
}

// v5 [MQTT-3.3.4-1] [MQTT-4.3.3-8] [MQTT-4.3.3-11]
#[test]
fn qos2_flow_from_publisher_to_subscriber() {
    let mut sim = Sim::new();
    let (mut sub, _) = sim.connect(connect_v5("sub", true, None));
    sim.send(&sub, subscribe(1, &[("a", QoS::ExactlyOnce)]));
    sim.recv(&mut sub);
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    sim.send(&publisher, publish("a", b"x", QoS::ExactlyOnce, Some(7)));
    assert!(matches!(&sim.recv(&mut publisher)[..], [Packet::PubRec(r)] if r.packet_id == pid(7)));
    // Delivered to the subscriber at once (the broker took ownership at PUBREC).
    let got = sim.recv_publishes(&mut sub);
    assert_eq!(got.len(), 1);
    let id = got[0].packet_id.unwrap();
    // A duplicate PUBLISH before PUBREL is acknowledged but not delivered again.
    let mut dup = publish("a", b"x", QoS::ExactlyOnce, Some(7));
    dup.dup = true;
    sim.send(&publisher, dup);
    assert!(matches!(&sim.recv(&mut publisher)[..], [Packet::PubRec(_)]));
    assert!(sim.recv_publishes(&mut sub).is_empty());
    sim.send(&publisher, pubrel(pid(7)));
    assert!(matches!(&sim.recv(&mut publisher)[..], [Packet::PubComp(c)] if c.packet_id == pid(7)));
    sim.send(&sub, pubrec(id));
    assert!(matches!(&sim.recv(&mut sub)[..], [Packet::PubRel(r)] if r.packet_id == id));
    sim.send(&sub, pubcomp(id));
    assert_eq!(sim.broker.pending_messages("sub"), 0);
}

// v5 [MQTT-3.1.2-8] v3.1.1 [MQTT-3.1.2-8]
#[test]
fn will_is_published_when_the_connection_drops_and_kept_retained() {
    let mut sim = Sim::new();
    let mut c = connect_v311("dev", true);
    c.will = Some(will("status/dev", b"offline", QoS::AtLeastOnce, true));
    let (dev, _) = sim.connect(c);
    sim.drop_connection(&dev);
    assert_eq!(sim.wills_published(), ["dev"]);
    let (mut later, _) = sim.connect(connect_v311("later", true));
    sim.send(&later, subscribe(1, &[("status/+", QoS::AtLeastOnce)]));
    let got = sim.recv_publishes(&mut later);
    assert_eq!(got.len(), 1);
    assert!(got[0].retain);
    assert_eq!(&got[0].payload[..], b"offline");
}

// v5 [MQTT-3.14.4-3] [MQTT-3.1.2-10]
#[test]
fn will_is_not_published_after_a_normal_disconnect() {
    let mut sim = Sim::new();
    let mut c = connect_v5("dev", true, None);
    c.will = Some(will("status/dev", b"offline", QoS::AtMostOnce, false));
    let (dev, _) = sim.connect(c);
    sim.send(&dev, mqtt_session::codec::Disconnect::default());
    assert!(sim.is_closed(&dev));
    assert!(sim.wills_published().is_empty());
}

// v5 [MQTT-3.1.3-9]
#[test]
fn will_delay_is_honoured_and_cancelled_by_reconnect() {
    let mut sim = Sim::new();
    let mut c = connect_v5("dev", true, Some(600));
    let mut w = will("status/dev", b"offline", QoS::AtMostOnce, false);
    w.properties.will_delay_interval = Some(30);
    c.will = Some(w.clone());
    let (dev, _) = sim.connect(c.clone());
    sim.drop_connection(&dev);
    sim.advance(29);
    assert!(sim.wills_published().is_empty());
    let mut again = connect_v5("dev", false, Some(600));
    again.will = Some(w);
    let (dev2, _) = sim.connect(again);
    sim.advance(60);
    assert!(sim.wills_published().is_empty());
    sim.drop_connection(&dev2);
    sim.advance(30);
    assert_eq!(sim.wills_published(), ["dev"]);
}

// v5 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7]
#[test]
fn retained_message_replaced_and_cleared() {
    let mut sim = Sim::new();
    let (p, _) = sim.connect(connect_v5("p", true, None));
    sim.send(&p, retained("r", b"one"));
    sim.send(&p, retained("r", b"two"));
    assert_eq!(&sim.broker.retained("r").unwrap().payload[..], b"two");
    sim.send(&p, retained("r", b""));
    assert!(sim.broker.retained("r").is_none());
    let (mut s, _) = sim.connect(connect_v5("s", true, None));
    sim.send(&s, subscribe(1, &[("r", QoS::AtMostOnce)]));
    assert!(sim.recv_publishes(&mut s).is_empty());
}

// v5 [MQTT-3.1.2-22]
#[test]
fn keep_alive_timeout_closes_and_publishes_will() {
    let mut sim = Sim::new();
    let mut c = connect_v5("k", true, None);
    c.keep_alive = 10;
    c.will = Some(will("w", b"gone", QoS::AtMostOnce, false));
    let (mut k, _) = sim.connect(c);
    sim.advance(14);
    assert!(!sim.is_closed(&k));
    sim.send(&k, Packet::PingReq);
    assert!(matches!(&sim.recv(&mut k)[..], [Packet::PingResp]));
    sim.advance(14);
    assert!(!sim.is_closed(&k));
    sim.advance(2);
    assert!(sim.is_closed(&k));
    assert!(
        matches!(&sim.recv(&mut k)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
    assert_eq!(sim.wills_published(), ["k"]);
}

// v5 [MQTT-3.1.4-3]
#[test]
fn second_connection_with_the_same_client_id_takes_over() {
    let mut sim = Sim::new();
    let (mut first, _) = sim.connect(connect_v5("same", true, Some(60)));
    let (_second, ack) = sim.connect(connect_v5("same", false, Some(60)));
    assert!(ack.session_present);
    assert!(sim.is_closed(&first));
    assert!(
        matches!(&sim.recv(&mut first)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SESSION_TAKEN_OVER)
    );
}

// v5 [MQTT-3.1.0-2]
#[test]
fn second_connect_is_a_protocol_error() {
    let mut sim = Sim::new();
    let (mut c, _) = sim.connect(connect_v5("x", true, None));
    sim.send(&c, connect_v5("x", true, None));
    assert!(sim.is_closed(&c));
    assert!(
        matches!(&sim.recv(&mut c)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR)
    );
}

#[test]
fn queued_messages_survive_a_restart() {
    let mut sim = Sim::new();
    let (sub, _) = sim.connect(connect_v311("sub", false));
    sim.send(&sub, subscribe(1, &[("q", QoS::AtLeastOnce)]));
    sim.drop_connection(&sub);
    let (publisher, _) = sim.connect(connect_v311("pub", true));
    sim.send(&publisher, publish("q", b"kept", QoS::AtLeastOnce, Some(1)));
    sim.restart();
    let (mut sub2, ack) = sim.connect(connect_v311("sub", false));
    assert!(ack.session_present);
    let got = sim.recv_publishes(&mut sub2);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"kept");
    assert_eq!(sub2.version, ProtocolVersion::V3_1_1);
}

#[test]
fn a_snapshot_restores_like_the_full_log() {
    let mut sim = Sim::new();
    let (sub, _) = sim.connect(connect_v5("sub", true, Some(600)));
    sim.send(&sub, subscribe(1, &[("a/+", QoS::ExactlyOnce)]));
    sim.drop_connection(&sub);
    let mut c = connect_v5("pub", true, Some(60));
    let mut w = will("w", b"bye", QoS::AtLeastOnce, true);
    w.properties.will_delay_interval = Some(100);
    c.will = Some(w);
    let (publisher, _) = sim.connect(c);
    sim.send(
        &publisher,
        publish("a/1", b"one", QoS::AtLeastOnce, Some(1)),
    );
    sim.send(&publisher, retained("a/r", b"kept"));
    sim.drop_connection(&publisher);
    sim.advance(5);
    let snapshot = sim.broker.snapshot();
    assert!(
        snapshot.len() <= sim.records.len(),
        "{} vs {}",
        snapshot.len(),
        sim.records.len()
    );
    sim.records = snapshot;
    sim.restart();
    sim.advance(100);
    assert_eq!(sim.wills_published(), ["pub"]);
    let (mut sub2, ack) = sim.connect(connect_v5("sub", false, Some(600)));
    assert!(ack.session_present);
    let got = sim.recv_publishes(&mut sub2);
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [&b"one"[..]]);
    assert_eq!(&sim.broker.retained("a/r").unwrap().payload[..], b"kept");
    assert_eq!(&sim.broker.retained("w").unwrap().payload[..], b"bye");
}

#[test]
fn a_connection_that_never_sends_connect_is_closed_after_the_connect_timeout() {
    let mut sim = Sim::new();
    let idle = sim.open(ProtocolVersion::V5);
    sim.advance(29);
    assert!(!sim.is_closed(&idle));
    sim.advance(1);
    assert!(sim.is_closed(&idle));
}

#[test]
fn shutdown_sends_server_shutting_down_to_v5_clients_and_closes_all() {
    let mut sim = Sim::new();
    let mut c = connect_v5("v5", true, Some(60));
    c.will = Some(will("w/v5", b"gone", QoS::AtMostOnce, false));
    let (mut v5, _) = sim.connect(c);
    let (mut v3, _) = sim.connect(connect_v311("v3", false));
    sim.broker.handle_shutdown(sim.now);
    sim.drain();
    assert!(sim.is_closed(&v5) && sim.is_closed(&v3));
    assert!(
        matches!(&sim.recv(&mut v5)[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SERVER_SHUTTING_DOWN)
    );
    assert!(sim.recv(&mut v3).is_empty());
    // Not a DISCONNECT from the client: the will is published.
    assert_eq!(sim.wills_published(), ["v5"]);
    assert!(sim.broker.has_session("v3"));
}
