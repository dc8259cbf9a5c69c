//! The broker dies under a subscriber with a persistent session while QoS 1 and QoS 2 streams
//! flow to it: this repository's broker is SIGKILLed (it runs in a child process) and
//! restarted on its data; mosquitto is stopped with SIGTERM (it saves its state only then) and
//! restarted. Both clients reconnect and resume on their own. Every QoS 1 message arrives at
//! least once, every QoS 2 message exactly once, and every publication's future resolves
//! with a success code.
//! v5 [MQTT-4.3.3-10] (no duplicate onward delivery of QoS 2), [MQTT-4.4.0-1] (re-sent on
//! resume), [MQTT-4.5.0-1]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use mqtt_client::{Client, Event, ProtocolVersion, QoS};
use support::*;

/// Not a test: the body of a child broker (see `support::ChildBroker`).
#[test]
fn child_broker() {
    child_broker_main();
}

const COUNT: usize = 200;

/// What the subscriber received: how many times each payload arrived.
async fn receive_all(events: &mut mqtt_client::Events) -> BTreeMap<String, usize> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < 2 * COUNT {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {} messages after 90 s; missing: {:?}",
                    seen.len(),
                    2 * COUNT,
                    missing(&seen)
                )
            })
            .expect("the subscriber stopped");
        if let Event::Message(m) = event {
            *seen
                .entry(String::from_utf8(m.payload.to_vec()).unwrap())
                .or_default() += 1;
        }
    }
    seen
}

fn missing(seen: &BTreeMap<String, usize>) -> Vec<String> {
    expected()
        .into_iter()
        .filter(|k| !seen.contains_key(k))
        .take(40)
        .collect()
}

fn expected() -> Vec<String> {
    (0..COUNT)
        .flat_map(|i| [format!("q1-{i}"), format!("q2-{i}")])
        .collect()
}

fn check(seen: &BTreeMap<String, usize>) {
    for key in expected() {
        let n = seen.get(&key).copied().unwrap_or(0);
        if key.starts_with("q2") {
            assert_eq!(n, 1, "QoS 2 message {key} arrived {n} times");
        } else {
            assert!(n >= 1, "QoS 1 message {key} never arrived");
        }
    }
}

/// Publishes the two streams from a task, returning when every delivery resolved.
fn publish_streams(publ: Client, tag: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut deliveries = Vec::new();
        for i in 0..COUNT {
            for (qos, name) in [(QoS::AtLeastOnce, "q1"), (QoS::ExactlyOnce, "q2")] {
                let d = publ
                    .publish(&format!("{tag}/{name}"), format!("{name}-{i}"), qos, false)
                    .await
                    .unwrap();
                deliveries.push(d);
            }
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for d in deliveries {
            let code = tokio::time::timeout(Duration::from_secs(90), d)
                .await
                .expect("a delivery resolved")
                .expect("acknowledged");
            assert_delivered(code);
        }
    })
}

fn persistent_options(url: &str, id: &str, version: ProtocolVersion) -> mqtt_client::Options {
    let mut o = persistent(options(url, id, version));
    o.session.max_queued_messages = 100_000;
    o
}

async fn subscriber(
    url: &str,
    id: &str,
    version: ProtocolVersion,
    filter: &str,
) -> (Client, mqtt_client::Events) {
    let (sub, mut events) = Client::connect(persistent_options(url, id, version))
        .await
        .unwrap();
    wait_for(&mut events, "connected", is_connected).await;
    sub.subscribe(filter, QoS::ExactlyOnce).await.unwrap();
    (sub, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_3_3_10_our_broker_sigkilled_twice_under_qos_1_and_2_streams() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let tag = if version == ProtocolVersion::V5 {
            "k5"
        } else {
            "k311"
        };
        let dir = temp_dir(&format!("kill-{tag}"));
        let port = free_port();
        let mut broker = ChildBroker::start(port, &dir).await;
        let url = format!("mqtt://127.0.0.1:{port}");
        let (sub, mut events) =
            subscriber(&url, &format!("{tag}-sub"), version, &format!("{tag}/#")).await;
        let (publ, _pub_events) =
            Client::connect(persistent_options(&url, &format!("{tag}-pub"), version))
                .await
                .unwrap();
        let publishing = publish_streams(publ.clone(), tag);
        let receiving = tokio::spawn(async move {
            let seen = receive_all(&mut events).await;
            (seen, events)
        });
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let (port, dir) = broker.kill();
            tokio::time::sleep(Duration::from_millis(100)).await;
            broker = ChildBroker::start(port, &dir).await;
        }
        publishing.await.unwrap();
        let (seen, _events) = receiving.await.unwrap();
        check(&seen);
        sub.disconnect().await.unwrap();
        publ.disconnect().await.unwrap();
        drop(broker);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// mosquitto 2.0 (Debian's) stopped with SIGTERM and restarted twice under the same streams.
/// mosquitto 2.0.11 does not keep its sessions whole across these restarts (docs/interop.md:
/// in 5.0 a session is often not restored, Session Present 0; after a restart it sometimes
/// sends a QoS 2 PUBLISH again, as new, after it had sent its PUBREL), so what is checked is
/// the client's side: every publication's future resolves (acknowledged, or `SessionLost` only
/// when mosquitto answered Session Present 0 to the publisher), nothing arrives that was not
/// published, and in 3.1.1 (where mosquitto keeps the sessions) every message arrives. What
/// mosquitto lost or sent twice is counted and printed. The strict check (QoS 2 exactly once)
/// runs against this repository's broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_3_3_10_mosquitto_restarted_under_qos_1_and_2_streams() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let tag = if version == ProtocolVersion::V5 {
            "m5"
        } else {
            "m311"
        };
        let dir = temp_dir(&format!("mosq-restart-{tag}"));
        let Some(mut mosquitto) = Mosquitto::start(&dir).await else {
            return;
        };
        let url = mosquitto.url();
        let (sub, mut events) =
            subscriber(&url, &format!("{tag}-sub"), version, &format!("{tag}/#")).await;
        let (publ, mut pub_events) =
            Client::connect(persistent_options(&url, &format!("{tag}-pub"), version))
                .await
                .unwrap();
        let publishing = tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for i in 0..COUNT {
                for (qos, name) in [(QoS::AtLeastOnce, "q1"), (QoS::ExactlyOnce, "q2")] {
                    let d = publ
                        .publish(&format!("{tag}/{name}"), format!("{name}-{i}"), qos, false)
                        .await
                        .unwrap();
                    deliveries.push(d);
                }
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let mut lost_sessions = 0;
            for d in deliveries {
                match tokio::time::timeout(Duration::from_secs(60), d)
                    .await
                    .expect("a delivery resolved")
                {
                    Ok(code) => assert_delivered(code),
                    Err(mqtt_client::Error::SessionLost) => lost_sessions += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (publ, lost_sessions)
        });
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            mosquitto = mosquitto.restart().await;
        }
        let (publ, lost_sessions) = publishing.await.unwrap();
        let mut session_present_0 = 0;
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(10), pub_events.recv()).await
        {
            if matches!(
                e,
                Event::Connected {
                    session_present: false,
                    ..
                }
            ) {
                session_present_0 += 1;
            }
        }
        if lost_sessions > 0 {
            assert!(
                session_present_0 > 1,
                "SessionLost only when mosquitto did not resume the publisher's session"
            );
        }
        // Everything mosquitto still delivers, until it has been quiet for 2 s.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(2), events.recv()).await
        {
            if let Event::Message(m) = event {
                *seen
                    .entry(String::from_utf8(m.payload.to_vec()).unwrap())
                    .or_default() += 1;
            }
        }
        let published = expected();
        for key in seen.keys() {
            assert!(published.contains(key), "{key} was never published");
        }
        // mosquitto sometimes sends a QoS 2 PUBLISH again after its PUBREL (docs/interop.md),
        // which the client cannot tell from a new message: counted, not asserted.
        let twice = seen
            .iter()
            .filter(|(k, n)| k.starts_with("q2") && **n > 1)
            .count();
        if version == ProtocolVersion::V3_1_1 {
            // With `max_inflight_messages 0` mosquitto 2.0.11 keeps 3.1.1 sessions across these
            // restarts: every message arrives.
            let missing: Vec<_> = published
                .iter()
                .filter(|k| !seen.contains_key(*k))
                .collect();
            assert!(missing.is_empty(), "never arrived: {missing:?}");
        }
        let lost: Vec<_> = published
            .iter()
            .filter(|k| !seen.contains_key(*k))
            .collect();
        eprintln!(
            "mosquitto {version:?}: {} of {} messages delivered; {} lost by the broker \
             (first: {:?}); {twice} QoS 2 messages twice; {lost_sessions} publications failed \
             with SessionLost",
            seen.len(),
            published.len(),
            lost.len(),
            lost.first()
        );
        sub.disconnect().await.unwrap();
        publ.disconnect().await.unwrap();
        drop(mosquitto);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
