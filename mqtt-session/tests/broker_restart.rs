#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! What survives a restart of the broker from its storage records (`Broker::restore`):
//! persistent sessions with their subscriptions and queues, QoS 1/2 state in both directions,
//! retained messages, pending wills and session expiry deadlines — and what does not: sessions
//! with a Session Expiry Interval of 0, whose wills are then published.

mod common;

use common::*;
use mqtt_session::codec::{Packet, ProtocolVersion, QoS, ReasonCode, RetainHandling};

// v5 [MQTT-3.1.2-23] [MQTT-3.1.2-5] [MQTT-3.2.2-3]
#[test]
fn v5_a_persistent_session_and_its_offline_queue_survive_a_restart() {
    let mut sim = Sim::new();
    let s = v5_subscriber_with_id(&mut sim);
    sim.drop_connection(&s);
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("q/1", b"one", QoS::AtLeastOnce, Some(1)));
    sim.publish(&mut p, publish("q/2", b"two", QoS::ExactlyOnce, Some(2)));
    sim.send(&p, pubrel(pid(2)));
    sim.publish(&mut p, publish("q/3", b"zero", QoS::AtMostOnce, None));
    sim.restart_after(30);
    assert!(sim.broker.has_session("s"));
    assert_eq!(sim.broker.subscription_count(), 1);
    assert_eq!(sim.broker.pending_messages("s"), 2);

    let (mut s2, ack) = sim.connect(connect_v5("s", false, Some(3600)));
    assert!(ack.session_present);
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["one", "two"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(got[1].qos, QoS::ExactlyOnce);
    assert!(
        got.iter()
            .all(|g| !g.dup && g.properties.subscription_identifiers().collect::<Vec<_>>() == [7])
    );
    // The subscription routes new messages after the restart too.
    let (mut p2, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p2, publish("q/4", b"four", QoS::AtLeastOnce, Some(1)));
    assert_eq!(payloads(&sim.recv_publishes(&mut s2)), ["four"]);
}

fn v5_subscriber_with_id(sim: &mut Sim) -> Client {
    let (mut s, _) = sim.connect(connect_v5("s", true, Some(3600)));
    sim.subscribe_ack(&mut s, subscribe_id(1, &[("q/#", QoS::ExactlyOnce)], 7));
    s
}

// v3.1.1 [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2]
#[test]
fn v311_a_clean_session_0_session_and_its_queue_survive_a_restart() {
    let mut sim = Sim::new();
    let s = sim.subscriber(connect_v311("s", false), &[("q", QoS::AtLeastOnce)]);
    sim.drop_connection(&s);
    let (mut p, _) = sim.connect(connect_v311("p", true));
    for (i, m) in [b"1" as &'static [u8], b"2", b"3"].into_iter().enumerate() {
        sim.publish(
            &mut p,
            publish(
                "q",
                m,
                QoS::AtLeastOnce,
                Some(u16::try_from(i + 1).unwrap()),
            ),
        );
    }
    sim.restart();
    let (mut s2, ack) = sim.connect(connect_v311("s", false));
    assert!(ack.session_present);
    assert_eq!(payloads(&sim.recv_publishes(&mut s2)), ["1", "2", "3"]);
}

// v5 [MQTT-3.8.3-3] [MQTT-3.3.1-13] [MQTT-3.10.4-2]
#[test]
fn v5_subscription_options_and_unsubscriptions_survive_a_restart() {
    let mut sim = Sim::new();
    let (mut s, _) = sim.connect(connect_v5("s", true, Some(3600)));
    let opts = options(
        QoS::AtLeastOnce,
        true,
        true,
        RetainHandling::SendAtSubscribe,
    );
    sim.subscribe_ack(&mut s, subscribe_with(1, "t", opts));
    sim.subscribe_ack(&mut s, subscribe(2, &[("gone", QoS::AtLeastOnce)]));
    sim.send(&s, unsubscribe(3, &["gone"]));
    sim.recv(&mut s);
    sim.restart();
    assert_eq!(sim.broker.subscription_count(), 1);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(3600)));
    // No Local: its own message does not come back.
    let got = sim.publish(
        &mut s2,
        retained_qos("t", b"own", QoS::AtLeastOnce, Some(1)),
    );
    assert!(matches!(&got[..], [Packet::PubAck(_)]), "{got:?}");
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(
        &mut p,
        retained_qos("t", b"other", QoS::AtLeastOnce, Some(1)),
    );
    sim.publish(&mut p, publish("gone", b"x", QoS::AtLeastOnce, Some(2)));
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["other"]);
    // Retain As Published.
    assert!(got[0].retain);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

// v5 [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-2.2.1-4]
#[test]
fn v5_an_unacknowledged_qos_1_publish_is_resent_with_its_id_after_a_restart() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(
        connect_v5("s", true, Some(3600)),
        &[("t", QoS::AtLeastOnce)],
    );
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(
        &mut p,
        publish("t", b"in flight", QoS::AtLeastOnce, Some(1)),
    );
    let id = sim.recv_publishes(&mut s)[0].packet_id.unwrap();
    sim.publish(&mut p, publish("t", b"acked", QoS::AtLeastOnce, Some(2)));
    let acked = sim.recv_publishes(&mut s)[0].packet_id.unwrap();
    sim.send(&s, puback(acked));
    sim.restart();
    assert_eq!(sim.broker.pending_messages("s"), 1);
    let (mut s2, ack) = sim.connect(connect_v5("s", false, Some(3600)));
    assert!(ack.session_present);
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["in flight"]);
    assert_eq!(got[0].packet_id, Some(id));
    assert!(got[0].dup);
    // A new message does not take the identifier still in flight.
    let (mut p2, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p2, publish("t", b"new", QoS::AtLeastOnce, Some(1)));
    let new = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&new), ["new"]);
    assert_ne!(new[0].packet_id, Some(id));
    sim.send(&s2, puback(id));
    sim.send(&s2, puback(new[0].packet_id.unwrap()));
    assert_eq!(sim.broker.pending_messages("s"), 0);
}

// v5 [MQTT-4.4.0-1] [MQTT-4.3.3-6] [MQTT-4.3.3-5]
#[test]
fn v5_outgoing_qos_2_state_survives_a_restart() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(
        connect_v5("s", true, Some(3600)),
        &[("t", QoS::ExactlyOnce)],
    );
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("t", b"released", QoS::ExactlyOnce, Some(1)));
    sim.publish(&mut p, publish("t", b"sent", QoS::ExactlyOnce, Some(2)));
    let got = sim.recv_publishes(&mut s);
    let (released, sent) = (got[0].packet_id.unwrap(), got[1].packet_id.unwrap());
    sim.send(&s, pubrec(released));
    assert!(matches!(&sim.recv(&mut s)[..], [Packet::PubRel(_)]));
    sim.restart();
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(3600)));
    let got = sim.recv(&mut s2);
    // PUBREL again for the first (its PUBLISH is not sent again), PUBLISH (DUP) for the second.
    assert!(
        matches!(&got[..], [Packet::PubRel(r), Packet::Publish(p)]
            if r.packet_id == released && p.packet_id == Some(sent) && p.dup && &p.payload[..] == b"sent"),
        "{got:?}"
    );
    sim.send(&s2, pubcomp(released));
    sim.send(&s2, pubrec(sent));
    assert!(matches!(&sim.recv(&mut s2)[..], [Packet::PubRel(r)] if r.packet_id == sent));
    sim.send(&s2, pubcomp(sent));
    assert_eq!(sim.broker.pending_messages("s"), 0);
}

// v5 [MQTT-4.3.3-10] [MQTT-4.3.3-11]
#[test]
fn v5_incoming_qos_2_state_survives_a_restart() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(
        connect_v5("s", true, Some(3600)),
        &[("t", QoS::AtLeastOnce)],
    );
    let (mut p, _) = sim.connect(connect_v5("p", true, Some(3600)));
    let got = sim.publish(&mut p, publish("t", b"once", QoS::ExactlyOnce, Some(5)));
    assert!(matches!(&got[..], [Packet::PubRec(_)]));
    let first = sim.recv_publishes(&mut s);
    sim.send(&s, puback(first[0].packet_id.unwrap()));
    sim.restart();
    // The publisher did not see the PUBREC: it sends the PUBLISH again, then PUBREL.
    let (mut p2, ack) = sim.connect(connect_v5("p", false, Some(3600)));
    assert!(ack.session_present);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(3600)));
    let mut again = publish("t", b"once", QoS::ExactlyOnce, Some(5));
    again.dup = true;
    let got = sim.publish(&mut p2, again);
    assert!(matches!(&got[..], [Packet::PubRec(r)] if r.packet_id == pid(5)));
    sim.send(&p2, pubrel(pid(5)));
    let got = sim.recv(&mut p2);
    assert!(
        matches!(&got[..], [Packet::PubComp(c)] if c.packet_id == pid(5) && c.reason_code == ReasonCode::SUCCESS),
        "{got:?}"
    );
    assert!(
        sim.recv_publishes(&mut s2).is_empty(),
        "delivered only once"
    );
}

// v3.1.1 [MQTT-4.3.3-2]
#[test]
fn v311_incoming_qos_2_state_survives_a_restart() {
    let mut sim = Sim::new();
    let s = sim.subscriber(connect_v311("s", false), &[("t", QoS::AtLeastOnce)]);
    sim.drop_connection(&s);
    let (mut p, _) = sim.connect(connect_v311("p", false));
    sim.publish(&mut p, publish("t", b"once", QoS::ExactlyOnce, Some(5)));
    sim.restart();
    let (mut p2, _) = sim.connect(connect_v311("p", false));
    let mut again = publish("t", b"once", QoS::ExactlyOnce, Some(5));
    again.dup = true;
    assert!(
        matches!(&sim.publish(&mut p2, again)[..], [Packet::PubRec(r)] if r.packet_id == pid(5))
    );
    sim.send(&p2, pubrel(pid(5)));
    assert!(matches!(&sim.recv(&mut p2)[..], [Packet::PubComp(c)] if c.packet_id == pid(5)));
    let (mut s2, _) = sim.connect(connect_v311("s", false));
    assert_eq!(payloads(&sim.recv_publishes(&mut s2)), ["once"]);
}

// v5 [MQTT-3.3.1-5] [MQTT-3.3.1-6]
#[test]
fn v5_retained_messages_survive_a_restart() {
    let mut sim = Sim::new();
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, retained("r/1", b"old"));
    sim.publish(&mut p, retained("r/2", b"cleared soon"));
    sim.publish(
        &mut p,
        retained_qos("r/1", b"new", QoS::AtLeastOnce, Some(1)),
    );
    sim.publish(&mut p, retained("r/2", b""));
    sim.publish(&mut p, retained("r/3", b"three"));
    sim.restart();
    sim.restart();
    assert_eq!(sim.broker.retained_count(), 2);
    let (mut s, _) = sim.connect(connect_v5("s", true, None));
    let (_, got) = sim.subscribe_ack(&mut s, subscribe(1, &[("r/+", QoS::ExactlyOnce)]));
    let mut got = got;
    got.sort_by_key(|g| g.topic.to_string());
    assert_eq!(payloads(&got), ["new", "three"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert!(got.iter().all(|g| g.retain));
}

// v5 [MQTT-3.3.2-5] [MQTT-3.3.2-6]
#[test]
fn v5_message_expiry_keeps_counting_across_a_restart() {
    let mut sim = Sim::new();
    let s = sim.subscriber(
        connect_v5("s", true, Some(3600)),
        &[("t", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&s);
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    let mut short = publish("t", b"short", QoS::AtLeastOnce, Some(1));
    short.properties.message_expiry_interval = Some(10);
    sim.publish(&mut p, short);
    let mut long = publish("t", b"long", QoS::AtLeastOnce, Some(2));
    long.properties.message_expiry_interval = Some(60);
    sim.publish(&mut p, long);
    // Down for 20 s.
    sim.restart_after(20);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(3600)));
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["long"]);
    assert_eq!(got[0].properties.message_expiry_interval, Some(40));
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_a_pending_will_keeps_its_delay_across_a_restart() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(
        connect_v5("sub", true, Some(3600)),
        &[("status/#", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&sub);
    let (dev, _) = sim.connect(connect_v5_will(
        "dev",
        Some(3600),
        will_delayed("status/dev", b"gone", 30),
    ));
    sim.drop_connection(&dev);
    sim.restart_after(10);
    assert!(sim.wills_published().is_empty());
    let (mut sub2, _) = sim.connect(connect_v5("sub", false, Some(3600)));
    sim.advance_ms(19_999);
    assert!(sim.wills_published().is_empty());
    sim.advance_ms(1);
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(payloads(&sim.recv_publishes(&mut sub2)), ["gone"]);
}

// v5 [MQTT-3.1.2-8]
#[test]
fn v5_a_will_whose_delay_passed_while_the_broker_was_down_is_published_at_restart() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(
        connect_v5("sub", true, Some(3600)),
        &[("status/#", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&sub);
    let mut w = will("status/dev", b"gone", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(30);
    let (dev, _) = sim.connect(connect_v5_will("dev", Some(3600), w));
    sim.drop_connection(&dev);
    sim.restart_after(100);
    assert_eq!(sim.wills_published(), ["dev"]);
    let (mut sub2, _) = sim.connect(connect_v5("sub", false, Some(3600)));
    assert_eq!(payloads(&sim.recv_publishes(&mut sub2)), ["gone"]);
    // Once only.
    sim.restart();
    assert_eq!(sim.wills_published(), ["dev"]);
}

// v5 [MQTT-3.1.3-9]
#[test]
fn v5_a_will_cancelled_by_a_reconnection_stays_cancelled_after_a_restart() {
    let mut sim = Sim::new();
    let (dev, _) = sim.connect(connect_v5_will(
        "dev",
        Some(3600),
        will_delayed("status/dev", b"gone", 30),
    ));
    sim.drop_connection(&dev);
    sim.advance(10);
    let (dev2, _) = sim.connect(connect_v5("dev", false, Some(3600)));
    sim.disconnect(&dev2, ReasonCode::NORMAL_DISCONNECTION);
    sim.restart_after(100);
    sim.advance(100);
    assert!(sim.wills_published().is_empty());
    assert!(sim.broker.has_session("dev"));
}

// v5 [MQTT-4.1.0-2]
#[test]
fn v5_the_session_expiry_deadline_survives_a_restart() {
    let mut sim = Sim::new();
    let (c, _) = sim.connect(connect_v5("s", true, Some(60)));
    sim.drop_connection(&c);
    sim.restart_after(20);
    sim.advance_ms(39_999);
    assert!(sim.broker.has_session("s"));
    sim.advance_ms(1);
    assert!(!sim.broker.has_session("s"));
    assert_eq!(sim.sessions_ended(), ["s"]);
}

/// Section 3.14.2.2.2: the Session Expiry Interval set by DISCONNECT is the one restored.
// v5 [MQTT-4.1.0-2]
#[test]
fn v5_a_session_expiry_changed_at_disconnect_survives_a_restart() {
    let mut sim = Sim::new();
    let (c, _) = sim.connect(connect_v5("s", true, Some(5)));
    sim.send(&c, disconnect_with_expiry(ReasonCode::SUCCESS, 100));
    sim.restart_after(50);
    sim.advance_ms(49_999);
    assert!(sim.broker.has_session("s"));
    sim.advance_ms(1);
    assert!(!sim.broker.has_session("s"));
}

// v5 [MQTT-4.1.0-2] [MQTT-3.2.2-3]
#[test]
fn v5_a_session_that_expired_while_the_broker_was_down_is_gone_after_restart() {
    let mut sim = Sim::new();
    let s = sim.subscriber(connect_v5("s", true, Some(60)), &[("t", QoS::AtLeastOnce)]);
    sim.drop_connection(&s);
    sim.restart_after(61);
    assert!(!sim.broker.has_session("s"));
    assert_eq!(sim.broker.subscription_count(), 0);
    assert_eq!(sim.sessions_ended(), ["s"]);
    let (_s2, ack) = sim.connect(connect_v5("s", false, Some(60)));
    assert!(!ack.session_present);
}

// v5 [MQTT-3.1.2-8] [MQTT-3.1.2-23]
#[test]
fn v5_a_connected_session_is_disconnected_by_the_restart_and_expires_from_then() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(
        connect_v5("sub", true, Some(3600)),
        &[("status/#", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&sub);
    let w = will("status/dev", b"gone", QoS::AtLeastOnce, false);
    let (_dev, _) = sim.connect(connect_v5_will("dev", Some(60), w));
    sim.advance(1000);
    sim.restart();
    // The connection ended without DISCONNECT: the will (no delay) is published.
    assert_eq!(sim.wills_published(), ["dev"]);
    assert!(sim.broker.has_session("dev"));
    sim.advance_ms(59_999);
    assert!(sim.broker.has_session("dev"));
    sim.advance_ms(1);
    assert!(!sim.broker.has_session("dev"));
    let (mut sub2, _) = sim.connect(connect_v5("sub", false, Some(3600)));
    assert_eq!(payloads(&sim.recv_publishes(&mut sub2)), ["gone"]);
}

// v5 [MQTT-3.1.2-8] [MQTT-3.1.2-23]
#[test]
fn v5_a_session_with_expiry_0_ends_at_restart_and_its_will_is_published() {
    let mut sim = Sim::new();
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, retained("unrelated", b"x"));
    let w = will("status/dev", b"gone", QoS::AtLeastOnce, true);
    let (_dev, _) = sim.connect(connect_v5_will("dev", None, w));
    sim.restart();
    assert!(!sim.broker.has_session("dev"));
    assert!(!sim.broker.has_session("p"));
    assert_eq!(sim.wills_published(), ["dev"]);
    assert!(sim.sessions_ended().contains(&"dev".to_owned()));
    // A retained will shows where it went.
    assert_eq!(
        &sim.broker.retained("status/dev").unwrap().payload[..],
        b"gone"
    );
    // Even a delayed will is published, since the session ended.
    let mut sim = Sim::new();
    let (_dev, _) = sim.connect(connect_v5_will(
        "dev",
        None,
        will_delayed("status/dev", b"gone", 300),
    ));
    sim.restart();
    assert_eq!(sim.wills_published(), ["dev"]);
}

// v3.1.1 [MQTT-3.1.2-8] [MQTT-3.1.2-6]
#[test]
fn v311_a_clean_session_ends_at_restart_and_its_will_is_published() {
    let mut sim = Sim::new();
    let mut c = connect_v311("dev", true);
    c.will = Some(will("status/dev", b"gone", QoS::AtMostOnce, true));
    let (dev, _) = sim.connect(c);
    assert_eq!(dev.version, ProtocolVersion::V3_1_1);
    sim.restart();
    assert!(!sim.broker.has_session("dev"));
    assert_eq!(sim.wills_published(), ["dev"]);
    assert_eq!(
        &sim.broker.retained("status/dev").unwrap().payload[..],
        b"gone"
    );
}

// v5 [MQTT-3.1.2-8] [MQTT-4.5.0-1]
#[test]
fn v5_a_will_published_at_restart_reaches_a_subscriber_named_before_its_publisher() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(
        connect_v5("a-sub", true, Some(3600)),
        &[("status/#", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&sub);
    let (_dev, _) = sim.connect(connect_v5_will(
        "m-dev",
        None,
        will("status/m", b"gone", QoS::AtLeastOnce, false),
    ));
    sim.restart();
    assert_eq!(sim.wills_published(), ["m-dev"]);
    let (mut sub2, _) = sim.connect(connect_v5("a-sub", false, Some(3600)));
    assert_eq!(payloads(&sim.recv_publishes(&mut sub2)), ["gone"]);
}

// v5 [MQTT-3.1.2-8] [MQTT-4.5.0-1]
#[test]
fn v5_a_will_published_at_restart_reaches_a_subscriber_named_after_its_publisher() {
    let mut sim = Sim::new();
    let sub = sim.subscriber(
        connect_v5("z-sub", true, Some(3600)),
        &[("status/#", QoS::AtLeastOnce)],
    );
    sim.drop_connection(&sub);
    let (_dev, _) = sim.connect(connect_v5_will(
        "m-dev",
        None,
        will("status/m", b"gone", QoS::AtLeastOnce, false),
    ));
    sim.restart();
    assert_eq!(sim.wills_published(), ["m-dev"]);
    assert_eq!(
        sim.broker.pending_messages("z-sub"),
        1,
        "the will is queued for z-sub"
    );
    let (mut sub2, _) = sim.connect(connect_v5("z-sub", false, Some(3600)));
    assert_eq!(payloads(&sim.recv_publishes(&mut sub2)), ["gone"]);
}

/// Restoring is idempotent: restarting again from the records gives the same broker.
#[test]
fn v5_restarting_twice_gives_the_same_state() {
    let mut sim = Sim::new();
    let mut s = sim.subscriber(
        connect_v5("s", true, Some(3600)),
        &[("t", QoS::ExactlyOnce)],
    );
    let (mut p, _) = sim.connect(connect_v5("p", true, None));
    sim.publish(&mut p, publish("t", b"1", QoS::AtLeastOnce, Some(1)));
    sim.recv(&mut s);
    sim.publish(&mut p, retained("r", b"x"));
    sim.restart();
    let first = (
        sim.broker.session_count(),
        sim.broker.pending_messages("s"),
        sim.broker.retained_count(),
    );
    sim.restart();
    let second = (
        sim.broker.session_count(),
        sim.broker.pending_messages("s"),
        sim.broker.retained_count(),
    );
    assert_eq!(first, (1, 1, 1));
    assert_eq!(first, second);
    let (mut s2, _) = sim.connect(connect_v5("s", false, Some(3600)));
    let got = sim.recv_publishes(&mut s2);
    assert_eq!(payloads(&got), ["1"]);
    assert!(got[0].dup);
}
