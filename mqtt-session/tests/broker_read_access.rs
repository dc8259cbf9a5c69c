//! The policy's read check (`Policy::may_receive`), asked on every delivery: a subscription
//! wider than what its client may read is served, and what it may not read is withheld, on
//! every path a message takes to a session (a connected client, the offline queue, retained
//! messages on subscribing, shared subscriptions, wills), after a restart too. And the write
//! check on a will when it is published.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use mqtt_session::broker::{AuthorizationAction, BrokerConfig, BrokerEvent, StorageRecord};
use mqtt_session::codec::{Connect, Packet, QoS, ReasonCode};

/// `topic` may not be read by clients without a User Name, nor `secret/#` by `bob`.
fn policy() -> TestPolicy {
    TestPolicy {
        deny_receive: vec![
            ("-".to_owned(), "test/nosubscribe".to_owned()),
            ("bob".to_owned(), "secret/#".to_owned()),
        ],
        ..TestPolicy::default()
    }
}

fn as_user(mut c: Connect, user: &str) -> Connect {
    c.username = Some(user.try_into().unwrap());
    c
}

fn topics(pubs: &[mqtt_session::codec::Publish]) -> Vec<String> {
    pubs.iter().map(|p| p.topic.to_string()).collect()
}

#[test]
fn a_wide_subscription_is_served_without_the_topics_it_may_not_read() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let mut monitor = sim.subscriber(
        connect_v5("monitor", true, None),
        &[("#", QoS::AtLeastOnce)],
    );
    let mut narrow = sim.subscriber(
        connect_v5("narrow", true, None),
        &[("test/+", QoS::AtLeastOnce)],
    );
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    for (i, t) in ["test/nosubscribe", "test/ok", "other"].iter().enumerate() {
        let acks = sim.publish(
            &mut publisher,
            publish(t, b"m", QoS::AtLeastOnce, Some(i as u16 + 1)),
        );
        // The publisher is answered as usual: the message was accepted by the broker.
        let [Packet::PubAck(ack)] = &acks[..] else {
            panic!("expected a PUBACK: {acks:?}")
        };
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    }
    assert_eq!(
        topics(&sim.recv_publishes(&mut monitor)),
        ["test/ok", "other"]
    );
    assert_eq!(topics(&sim.recv_publishes(&mut narrow)), ["test/ok"]);
}

#[test]
fn the_read_check_is_per_user() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let mut bob = sim.subscriber(
        as_user(connect_v5("bob-1", true, None), "bob"),
        &[("#", QoS::AtMostOnce)],
    );
    let mut alice = sim.subscriber(
        as_user(connect_v5("alice-1", true, None), "alice"),
        &[("#", QoS::AtMostOnce)],
    );
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    for t in ["secret/a", "test/nosubscribe", "news"] {
        sim.publish(&mut publisher, publish(t, b"m", QoS::AtMostOnce, None));
    }
    assert_eq!(
        topics(&sim.recv_publishes(&mut bob)),
        ["test/nosubscribe", "news"]
    );
    assert_eq!(
        topics(&sim.recv_publishes(&mut alice)),
        ["secret/a", "test/nosubscribe", "news"]
    );
}

// v5 [MQTT-3.3.1-9] retained messages on subscribing, less those the client may not read.
#[test]
fn retained_messages_sent_on_subscribing_are_checked() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    for t in ["test/nosubscribe", "test/ok"] {
        sim.publish(&mut publisher, retained(t, b"r"));
    }
    let (mut c, _) = sim.connect(connect_v5("s", true, None));
    let (ack, pubs) = sim.subscribe_ack(&mut c, subscribe(1, &[("test/#", QoS::AtMostOnce)]));
    assert_eq!(ack.reason_codes, [ReasonCode::GRANTED_QOS_0]);
    assert_eq!(topics(&pubs), ["test/ok"]);
    assert!(pubs[0].retain);
}

#[test]
fn an_offline_queue_holds_only_what_its_session_may_read() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let s = sim.subscriber(
        as_user(connect_v5("bob-1", true, Some(3600)), "bob"),
        &[("#", QoS::AtLeastOnce)],
    );
    sim.disconnect(&s, ReasonCode::SUCCESS);
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    sim.publish(
        &mut publisher,
        publish("secret/x", b"m", QoS::AtLeastOnce, Some(1)),
    );
    sim.publish(
        &mut publisher,
        publish("public/x", b"m", QoS::AtLeastOnce, Some(2)),
    );
    // Nothing withheld is stored either.
    let queued: Vec<&str> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            StorageRecord::Queued { message, .. } => Some(&*message.topic),
            _ => None,
        })
        .collect();
    assert_eq!(queued, ["public/x"]);
    let (mut back, ack) = sim.connect(as_user(connect_v5("bob-1", false, Some(3600)), "bob"));
    assert!(ack.session_present);
    assert_eq!(topics(&sim.recv_publishes(&mut back)), ["public/x"]);
}

/// The User Name of a session is persisted: after a restart, the read checks of its offline
/// session still use it.
#[test]
fn the_session_user_name_survives_a_restart() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let s = sim.subscriber(
        as_user(connect_v5("bob-1", true, Some(3600)), "bob"),
        &[("#", QoS::AtLeastOnce)],
    );
    sim.disconnect(&s, ReasonCode::SUCCESS);
    assert!(sim.records.iter().any(|r| matches!(
        r,
        StorageRecord::Session { client_id, username: Some(u), .. } if client_id == "bob-1" && u == "bob"
    )));
    sim.restart();
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    sim.publish(
        &mut publisher,
        publish("secret/x", b"m", QoS::AtLeastOnce, Some(1)),
    );
    sim.publish(
        &mut publisher,
        publish("public/x", b"m", QoS::AtLeastOnce, Some(2)),
    );
    // Twice: the snapshot a host writes after a restart keeps it too.
    sim.records = sim.broker.snapshot();
    sim.restart();
    let (mut back, ack) = sim.connect(as_user(connect_v5("bob-1", false, Some(3600)), "bob"));
    assert!(ack.session_present);
    assert_eq!(topics(&sim.recv_publishes(&mut back)), ["public/x"]);
}

/// A session resumed under another User Name is checked as that user from then on.
#[test]
fn a_session_resumed_under_another_user_name_is_checked_as_that_user() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let s = sim.subscriber(
        as_user(connect_v5("c", true, Some(3600)), "alice"),
        &[("secret/#", QoS::AtLeastOnce)],
    );
    sim.disconnect(&s, ReasonCode::SUCCESS);
    let (mut c, _) = sim.connect(as_user(connect_v5("c", false, Some(3600)), "bob"));
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    sim.publish(
        &mut publisher,
        publish("secret/x", b"m", QoS::AtLeastOnce, Some(1)),
    );
    assert!(sim.recv_publishes(&mut c).is_empty());
    assert!(sim.records.iter().any(|r| matches!(
        r,
        StorageRecord::Session { client_id, username: Some(u), .. } if client_id == "c" && u == "bob"
    )));
}

// v5 [MQTT-4.8.2-3] one member of the group gets the message: one that may read it.
#[test]
fn a_shared_subscription_delivers_to_members_that_may_read() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let mut bob = sim.subscriber(
        as_user(connect_v5("bob-1", true, None), "bob"),
        &[("$share/g/secret/#", QoS::AtMostOnce)],
    );
    let mut alice = sim.subscriber(
        as_user(connect_v5("alice-1", true, None), "alice"),
        &[("$share/g/secret/#", QoS::AtMostOnce)],
    );
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    for _ in 0..4 {
        sim.publish(
            &mut publisher,
            publish("secret/a", b"m", QoS::AtMostOnce, None),
        );
    }
    assert!(sim.recv_publishes(&mut bob).is_empty());
    assert_eq!(sim.recv_publishes(&mut alice).len(), 4);

    // A group where no member may read it delivers to nobody.
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let mut bob = sim.subscriber(
        as_user(connect_v5("bob-1", true, None), "bob"),
        &[("$share/g/secret/#", QoS::AtMostOnce)],
    );
    let (mut publisher, _) = sim.connect(connect_v5("pub", true, None));
    sim.publish(
        &mut publisher,
        publish("secret/a", b"m", QoS::AtMostOnce, None),
    );
    assert!(sim.recv_publishes(&mut bob).is_empty());
}

// v5 [MQTT-3.1.2-8] a will is published as a message; its readers are checked like any other.
#[test]
fn a_will_reaches_only_the_sessions_that_may_read_it() {
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy());
    let mut bob = sim.subscriber(
        as_user(connect_v5("bob-1", true, None), "bob"),
        &[("secret/#", QoS::AtMostOnce)],
    );
    let mut alice = sim.subscriber(
        as_user(connect_v5("alice-1", true, None), "alice"),
        &[("secret/#", QoS::AtMostOnce)],
    );
    let mut c = connect_v5("dying", true, None);
    c.will = Some(will("secret/will", b"gone", QoS::AtMostOnce, false));
    let (dying, _) = sim.connect(c);
    sim.drop_connection(&dying);
    assert_eq!(sim.wills_published(), ["dying"]);
    assert!(sim.recv_publishes(&mut bob).is_empty());
    assert_eq!(topics(&sim.recv_publishes(&mut alice)), ["secret/will"]);
}

/// A will is a PUBLISH of its client: the write check applies when it is published.
#[test]
fn a_will_its_client_may_not_publish_is_discarded() {
    let policy = TestPolicy {
        deny_publish: vec!["locked".to_owned()],
        ..TestPolicy::default()
    };
    let mut sim = Sim::with_policy(BrokerConfig::default(), policy);
    let mut s = sim.subscriber(connect_v5("s", true, None), &[("#", QoS::AtMostOnce)]);
    let mut c = connect_v5("dying", true, None);
    c.will = Some(will("locked", b"gone", QoS::AtMostOnce, true));
    let (dying, _) = sim.connect(c);
    sim.drop_connection(&dying);
    assert!(sim.wills_published().is_empty());
    assert!(sim.events.iter().any(|e| matches!(
        e,
        BrokerEvent::NotAuthorized { client_id, action: AuthorizationAction::Will, target }
            if client_id == "dying" && target == "locked"
    )));
    assert!(sim.recv_publishes(&mut s).is_empty());
    // Not retained either, and not left pending: a restart does not publish it.
    assert_eq!(sim.broker.retained_count(), 0);
    sim.restart();
    assert!(sim.wills_published().is_empty());
}
