//! Property: a broker rebuilt from its storage records (`Broker::restore`) behaves afterwards
//! like one that never stopped.
//!
//! A restart ends every connection, so the reference is the same broker in which, at the same
//! instant, the transport drops every connection (`handle_connection_closed`). Both get the same
//! random scenario (`harness::scenario_strategy`, 4 clients, both protocol versions) with one
//! to three `Restart`s in it; each client keeps its own session state in each world and acknowledges what
//! it received there. After every step the two transcripts — the packets each client received
//! and the broker's events — must be equal, modulo what may legitimately differ:
//!
//! - connection identifiers (the restored broker numbers from 1 again): connections are named
//!   by client and ordinal;
//! - packet identifiers the broker chooses for new outgoing flows (the next free identifier is
//!   not persisted, and need not be): they are named by flow;
//! - the order of the events at the restart instant: the reference drops the connections in the
//!   order `Broker::restore` handles the sessions (see `World::restart`), and its
//!   `ClientDisconnected` events, which a restart cannot have, are left out;
//! - what happens at the restart instant itself. The reference closes the connections one by
//!   one, so a will published when one closes (delay 0, or Session Expiry 0) still reaches the
//!   clients whose connections are closed after it, while in a restart every connection is gone
//!   first. So the packets received during the restart step are left out, and so is the DUP flag
//!   of the messages published at a restart (in the reference such a QoS 1/2 message went out
//!   before the drop and is resent with DUP 1 on reconnection; restored, it was still queued and
//!   goes out with DUP 0 — in the same position, with the same flow name);
//! - QoS 0 messages queued at a restart (behind the in-flight window of a connected client):
//!   QoS 0 is not persisted, by design (storage.rs). So QoS 0 PUBLISH packets are compared as
//!   multisets per step: the restored broker may lack one the reference sends only if the
//!   message was accepted at or before the last restart.
//!
//! The broker's counters (sessions, connected clients, retained messages, subscriptions) must
//! also agree after every step.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;

use harness::{CLIENT_IDS, Expiry, Line, Op, RestartMode, Rx, WillSpec, World, scenario_strategy};
use mqtt_session::broker::BrokerEvent;
use mqtt_session::codec::{Packet, Properties, QoS};
use proptest::prelude::*;

/// The lines of `step` in `world`'s transcript that the comparison keeps.
fn comparable(world: &World, step: usize) -> Vec<Line> {
    let last_restart = world.restarts.iter().copied().filter(|r| *r <= step).max();
    world
        .transcript
        .iter()
        .filter(|(s, _)| *s == step)
        .map(|(_, l)| l.clone())
        .filter(|l| {
            // At a restart: what the reference's connections heard before their drop, and
            // their ClientDisconnected events.
            last_restart != Some(step)
                || !matches!(
                    l,
                    Line::Event(BrokerEvent::ClientDisconnected { .. }) | Line::Rx { .. }
                )
        })
        .map(|l| match l {
            Line::Rx {
                client,
                rx:
                    Rx::Publish {
                        dup: _,
                        qos,
                        retain,
                        topic,
                        payload,
                        properties,
                        flow,
                    },
            } if world
                .accepted_at
                .get(&payload)
                .is_some_and(|a| world.restarts.contains(a)) =>
            {
                let rx = Rx::Publish {
                    dup: false,
                    qos,
                    retain,
                    topic,
                    payload,
                    properties,
                    flow,
                };
                Line::Rx { client, rx }
            }
            l => l,
        })
        .collect()
}

fn is_qos0_publish(l: &Line) -> bool {
    matches!(
        l,
        Line::Rx {
            rx: Rx::Publish {
                qos: QoS::AtMostOnce,
                ..
            },
            ..
        }
    )
}

/// One line per transcript line, without the (default) properties.
fn show(lines: &[Line]) -> String {
    lines
        .iter()
        .map(|l| match l {
            Line::Rx { client, rx: Rx::Publish { dup, qos, retain, topic, payload, properties, flow } } => {
                let props = if *properties == Properties::default() { String::new() } else { format!(" {properties:?}") };
                format!(
                    "  c{client} <- PUBLISH dup={} {qos:?} retain={} {topic} {:?} flow={flow:?}{props}",
                    u8::from(*dup),
                    u8::from(*retain),
                    String::from_utf8_lossy(payload)
                )
            }
            Line::Rx { client, rx: Rx::Other(Packet::ConnAck(a)) } => {
                format!("  c{client} <- CONNACK present={} {:?}", a.session_present, a.reason_code)
            }
            Line::Rx { client, rx } => format!("  c{client} <- {rx:?}"),
            Line::Event(e) => format!("  event {e:?}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn counters(world: &World) -> Vec<(String, usize)> {
    let b = &world.broker;
    let mut c = vec![
        ("sessions".to_owned(), b.session_count()),
        ("retained".to_owned(), b.retained_count()),
        ("subscriptions".to_owned(), b.subscription_count()),
    ];
    for id in CLIENT_IDS {
        c.push((format!("{id} has session"), usize::from(b.has_session(id))));
        c.push((format!("{id} connected"), usize::from(b.is_connected(id))));
    }
    c
}

fn run(ops: &[Op]) {
    let mut reference = World::new(RestartMode::DropAll);
    let mut restored = World::new(RestartMode::Restore);
    for (n, op) in ops.iter().enumerate() {
        reference.apply(n, op);
        restored.apply(n, op);
        let (a, b) = (comparable(&reference, n), comparable(&restored, n));
        let (a, a0): (Vec<Line>, Vec<Line>) = a.into_iter().partition(|l| !is_qos0_publish(l));
        let (b, b0): (Vec<Line>, Vec<Line>) = b.into_iter().partition(|l| !is_qos0_publish(l));
        assert!(
            a == b,
            "step {n} ({op:?}): reference and restored differ\nreference:\n{}\nrestored:\n{}",
            show(&a),
            show(&b)
        );
        // QoS 0: what the restored broker sends, the reference sends too; what it lacks was
        // queued at a restart (accepted at or before it).
        let mut missing = a0;
        for l in &b0 {
            let Some(i) = missing.iter().position(|m| m == l) else {
                panic!(
                    "step {n} ({op:?}): only the restored broker sent\n{}",
                    show(std::slice::from_ref(l))
                )
            };
            missing.remove(i);
        }
        let last_restart = restored.restarts.iter().copied().filter(|r| *r <= n).max();
        for l in &missing {
            let Line::Rx {
                rx: Rx::Publish { payload, .. },
                ..
            } = l
            else {
                unreachable!()
            };
            let accepted = restored.accepted_at.get(payload).copied();
            assert!(
                last_restart.is_some() && accepted <= last_restart,
                "step {n} ({op:?}): only the reference sent\n{}",
                show(std::slice::from_ref(l))
            );
        }
        assert_eq!(
            counters(&reference),
            counters(&restored),
            "step {n} ({op:?}): counters differ"
        );
    }
}

/// Scenarios with up to `max_restarts` restarts at random places; without `delayed_wills`,
/// every Will Delay Interval is 0.
fn scenario(max_restarts: usize, delayed_wills: bool) -> impl Strategy<Value = Vec<Op>> {
    let ops = scenario_strategy(4, 4..48);
    let restarts = prop::collection::vec(any::<prop::sample::Index>(), 1..=max_restarts);
    (ops, restarts).prop_map(move |(mut ops, restarts)| {
        for op in &mut ops {
            if let Op::Connect { will: Some(w), .. } = op
                && !delayed_wills
            {
                w.delay = 0;
            }
        }
        for i in restarts {
            let at = i.index(ops.len() + 1);
            ops.insert(at, Op::Restart);
        }
        ops
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// One restart.
    #[test]
    fn restored_broker_behaves_like_one_that_never_stopped(
        ops in scenario(1, true)
    ) {
        run(&ops);
    }

    /// Up to three restarts; wills without delay (see
    /// `will_scheduled_by_a_restart_survives_a_second_restart`).
    #[test]
    fn broker_restored_several_times_behaves_like_one_that_never_stopped(
        ops in scenario(3, false)
    ) {
        run(&ops);
    }

    /// Up to three restarts, every kind of will.
    #[test]
    fn restored_broker_behaves_like_one_that_never_stopped_any_scenario(
        ops in scenario(3, true)
    ) {
        run(&ops);
    }
}

// ---- fixed scenarios ---------------------------------------------------------------------------

/// Queued, in-flight (PUBLISH sent, PUBREL sent) and incoming QoS 2 state survive a restart.
#[test]
fn flows_in_every_state_survive_a_restart() {
    let connect = |client, clean| Op::Connect {
        client,
        v5: true,
        clean,
        expiry: Expiry::Never,
        will: None,
    };
    let mut ops = vec![
        connect(0, true),
        Op::Subscribe {
            client: 0,
            filter: 5,
            qos: QoS::ExactlyOnce,
        },
        connect(1, true),
    ];
    for topic in 0..4 {
        let qos = if topic % 2 == 0 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        ops.push(Op::Publish {
            client: 1,
            topic,
            qos,
            retain: topic == 0,
            resend_dup: false,
            release: topic != 2,
        });
    }
    ops.extend([
        Op::Ack {
            client: 0,
            count: 1,
        },
        Op::Restart,
        connect(0, false),
        connect(1, false),
        Op::Ack {
            client: 1,
            count: usize::MAX,
        },
        Op::Ack {
            client: 0,
            count: usize::MAX,
        },
    ]);
    run(&ops);
}

/// A will published by `Broker::restore` itself (its session had Session Expiry 0, so it ends
/// with the restart) reaches every matching subscription — also those of sessions whose Client
/// Identifier sorts after the will's owner. (Found by the property above: restore used to
/// publish such wills while it was still rebuilding the subscription tree session by session.)
// v5 [MQTT-3.1.2-8] [MQTT-4.5.0-1]
#[test]
fn will_published_by_restore_reaches_every_subscriber() {
    let will = Some(WillSpec {
        topic: 2,
        qos: QoS::AtLeastOnce,
        retain: false,
        delay: 0,
    });
    let ops = [
        Op::Connect {
            client: 2,
            v5: true,
            clean: true,
            expiry: Expiry::Never,
            will: None,
        },
        Op::Subscribe {
            client: 2,
            filter: 4,
            qos: QoS::AtLeastOnce,
        },
        Op::Disconnect { client: 2 },
        Op::Connect {
            client: 0,
            v5: true,
            clean: true,
            expiry: Expiry::Zero,
            will,
        },
        Op::Restart,
        Op::Connect {
            client: 2,
            v5: true,
            clean: false,
            expiry: Expiry::Never,
            will: None,
        },
    ];
    let mut world = World::new(RestartMode::Restore);
    let mut outcomes: Vec<_> = ops
        .iter()
        .enumerate()
        .map(|(n, op)| world.apply(n, op))
        .collect();
    assert!(
        outcomes[4].events.iter().any(
            |e| matches!(e, BrokerEvent::WillPublished { client_id, .. } if client_id == "c0")
        ),
        "the restart ends c0's session and publishes its will: {:?}",
        outcomes[4].events
    );
    let delivered = std::mem::take(&mut outcomes[5].deliveries);
    assert_eq!(
        delivered.len(),
        1,
        "c2 gets c0's will on reconnection: {delivered:?}"
    );
    assert_eq!(&delivered[0].payload[..], b"w3");
    run(&ops);
}

/// A will whose connection was cut by a restart is scheduled by `Broker::restore` (due after its
/// delay); a second restart before that must keep it scheduled.
///
/// Broker bug: `Broker::restore` sets the will's due time in memory but persists no
/// `StorageRecord::WillScheduled` for it (it persists only `SessionDisconnected`). After a
/// second restart the records show a disconnected session with an unscheduled will, and restore
/// schedules only wills of sessions that were connected, so the will is never armed: it is
/// published only when the session ends (Session Expiry 60 s: 30 s late; never expiring:
/// never). v5 MQTT-3.1.2-8: the will MUST be published once the Will Delay Interval has
/// elapsed (or the session ends).
#[test]
fn will_scheduled_by_a_restart_survives_a_second_restart() {
    let will = Some(WillSpec {
        topic: 0,
        qos: QoS::AtLeastOnce,
        retain: false,
        delay: 30,
    });
    let ops = [
        Op::Connect {
            client: 1,
            v5: true,
            clean: true,
            expiry: Expiry::Never,
            will,
        },
        Op::Restart,
        Op::Advance { secs: 10 },
        Op::Restart,
        Op::Advance { secs: 20 },
    ];
    let mut world = World::new(RestartMode::Restore);
    let outcomes: Vec<_> = ops
        .iter()
        .enumerate()
        .map(|(n, op)| world.apply(n, op))
        .collect();
    assert!(
        outcomes[4].events.iter().any(
            |e| matches!(e, BrokerEvent::WillPublished { client_id, .. } if client_id == "c1")
        ),
        "c1's will is due 30 s after the first restart: {:?}",
        outcomes[4].events
    );
    run(&ops);
}
