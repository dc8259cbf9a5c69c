//! Model-based property tests of the broker's session rules.
//!
//! Random scenarios of 4 clients (fixed Client Identifiers, MQTT 3.1.1 and 5.0) — connect with
//! or without Clean Start, Session Expiry 0 / 60 s / never and maybe a will (delay 0 or 30 s),
//! disconnect (0x00, 0x00 with a new Session Expiry Interval, 0x04), connection drops, takeovers, subscribe, unsubscribe, publish at QoS
//! 0-2 (sometimes retained, sometimes a QoS 2 PUBLISH sent twice, sometimes PUBREL left for
//! later), acknowledge some or all of what arrived (or nothing), let time pass — run against the
//! broker (through `harness::World`, which checks the wire-level invariants) and against a small
//! reference model of the session rules, which predicts after every step:
//!
//! - Session Present in every CONNACK, the DISCONNECT 0x8E a taken-over 5.0 client gets, and
//!   the DISCONNECT 0x82 for a Session Expiry Interval raised from 0 at DISCONNECT;
//! - the `WillPublished` and `SessionEnded` events, in order;
//! - the PUBACK/PUBREC reason code of every PUBLISH (0x10 No matching subscribers in 5.0);
//! - what each session may receive: every new delivery (a PUBLISH that is not a resend of a flow
//!   still in flight) must be one the model routed to the session — a message published while
//!   it had a matching subscription, at the highest granted QoS capped by the message's, RETAIN
//!   0; or a retained message at subscription, RETAIN 1 — each routing consumed at most once. So
//!   a QoS 2 message reaches the application once per routing, whatever the resends.
//!
//! (The model encodes two choices the specification leaves open, as the broker makes them: one
//! copy per session for overlapping subscriptions, and, for deadlines at the same instant,
//! session expiries before wills.)
//!
//! At the end every client that still has a session reconnects (Clean Start 0) if needed and
//! acknowledges everything, until nothing more arrives; then every QoS 1/2 routing to a session
//! that was not ended (expired, Clean Start, Session Expiry 0) must have been delivered, and no
//! flow may be left in flight on either side nor any message queued.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;

use std::collections::BTreeMap;

use bytes::Bytes;
use harness::{
    CLIENT_IDS, Delivery, Expiry, FILTERS, Op, Outcome, RestartMode, TOPICS, WillSpec, World,
    message_payload, scenario_strategy, will_payload,
};
use mqtt_session::Timestamp;
use mqtt_session::broker::BrokerEvent;
use mqtt_session::codec::{ProtocolVersion, QoS, ReasonCode};
use proptest::prelude::*;

/// Whether `topic` matches `filter` (section 4.7), written independently of the broker's.
fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The events the model predicts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    WillPublished { client: usize, topic: String },
    SessionEnded { client: usize },
}

#[derive(Debug, Clone)]
struct MWill {
    topic: usize,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    delay: u32,
}

#[derive(Debug)]
struct MSession {
    expiry: u32,
    subs: BTreeMap<usize, QoS>,
    will: Option<MWill>,
    will_due: Option<Timestamp>,
    connected: bool,
    expires_at: Option<Timestamp>,
    /// What the broker owes the session, by payload: the topic, and one (QoS, RETAIN) per
    /// routing not yet delivered.
    owed: BTreeMap<Bytes, (usize, Vec<(QoS, bool)>)>,
}

impl MSession {
    fn owe(&mut self, payload: &Bytes, topic: usize, qos: QoS, retain: bool) {
        self.owed
            .entry(payload.clone())
            .or_insert_with(|| (topic, Vec::new()))
            .1
            .push((qos, retain));
    }
}

#[derive(Debug)]
struct Model {
    now: Timestamp,
    sessions: BTreeMap<usize, MSession>,
    /// The protocol version of each client's connection.
    conn: [Option<ProtocolVersion>; 4],
    /// The Session Expiry Interval each client's connection asked for in its CONNECT.
    conn_expiry: [u32; 4],
    /// Retained messages by topic: payload, QoS.
    retained: BTreeMap<usize, (Bytes, QoS)>,
    events: Vec<Ev>,
}

impl Model {
    fn new(now: Timestamp) -> Self {
        Self {
            now,
            sessions: BTreeMap::new(),
            conn: [None; 4],
            conn_expiry: [0; 4],
            retained: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The broker takes ownership of a message: stores it if retained, and adds it to every
    /// session with a matching subscription. Returns whether one matched.
    fn publish(&mut self, topic: usize, payload: &Bytes, qos: QoS, retain: bool) -> bool {
        if retain {
            self.retained.insert(topic, (payload.clone(), qos));
        }
        let mut matched = false;
        for s in self.sessions.values_mut() {
            let best = s
                .subs
                .iter()
                .filter(|(f, _)| matches(FILTERS[**f], TOPICS[topic]))
                .map(|(_, q)| *q)
                .max();
            if let Some(granted) = best {
                matched = true;
                // RETAIN 0 when forwarding (Retain As Published 0): v5 MQTT-3.3.1-12.
                s.owe(payload, topic, granted.min(qos), false);
            }
        }
        matched
    }

    fn publish_will(&mut self, client: usize) {
        let Some(s) = self.sessions.get_mut(&client) else {
            return;
        };
        let Some(w) = s.will.take() else { return };
        s.will_due = None;
        self.events.push(Ev::WillPublished {
            client,
            topic: TOPICS[w.topic].to_owned(),
        });
        self.publish(w.topic, &w.payload, w.qos, w.retain);
    }

    fn end_session(&mut self, client: usize) {
        let Some(s) = self.sessions.get(&client) else {
            return;
        };
        // A pending will is published when the session ends (v5 MQTT-3.1.2-8).
        if s.will.is_some() && !s.connected {
            self.publish_will(client);
        }
        self.sessions.remove(&client);
        self.events.push(Ev::SessionEnded { client });
    }

    /// The network connection of `client` ended; `graceful`: by DISCONNECT 0x00.
    fn connection_lost(&mut self, client: usize, graceful: bool) {
        self.conn[client] = None;
        let now = self.now;
        let Some(s) = self.sessions.get_mut(&client) else {
            return;
        };
        s.connected = false;
        if graceful {
            s.will = None;
        } else {
            match s.will.as_ref().map(|w| w.delay) {
                Some(0) => self.publish_will(client),
                Some(delay) => s.will_due = Some(now.plus_secs(u64::from(delay))),
                None => {}
            }
        }
        let Some(s) = self.sessions.get_mut(&client) else {
            return;
        };
        match s.expiry {
            0 => self.end_session(client),
            u32::MAX => {}
            secs => s.expires_at = Some(now.plus_secs(u64::from(secs))),
        }
    }

    /// Returns Session Present.
    fn connect(
        &mut self,
        step: usize,
        client: usize,
        v5: bool,
        clean: bool,
        expiry: Expiry,
        will: Option<&WillSpec>,
    ) -> bool {
        if self.conn[client].is_some() {
            // Takeover: the old connection ends without DISCONNECT.
            self.connection_lost(client, false);
        }
        if clean && self.sessions.contains_key(&client) {
            // Clean Start discards the session (v5 MQTT-3.1.2-4); a will still waiting for its
            // delay is published as the session ends (MQTT-3.1.2-8).
            self.end_session(client);
        }
        if let Some(s) = self.sessions.get_mut(&client) {
            // A new connection to the session before the will delay: no will (v5 MQTT-3.1.3-9).
            s.will = None;
            s.will_due = None;
        }
        let present = self.sessions.contains_key(&client);
        let s = self.sessions.entry(client).or_insert_with(|| MSession {
            expiry: 0,
            subs: BTreeMap::new(),
            will: None,
            will_due: None,
            connected: false,
            expires_at: None,
            owed: BTreeMap::new(),
        });
        s.expiry = match (v5, clean) {
            (true, _) => expiry.secs(),
            (false, true) => 0,
            (false, false) => u32::MAX,
        };
        self.conn_expiry[client] = s.expiry;
        s.connected = true;
        s.expires_at = None;
        s.will = will.map(|w| MWill {
            topic: w.topic,
            payload: will_payload(step),
            qos: w.qos,
            retain: w.retain,
            delay: w.delay,
        });
        self.conn[client] = Some(if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        });
        present
    }

    fn subscribe(&mut self, client: usize, filter: usize, qos: QoS) {
        let s = self.sessions.get_mut(&client).unwrap();
        s.subs.insert(filter, qos);
        // Retained messages at subscription (Retain Handling 0, v5 MQTT-3.3.1-9), at the minimum
        // of their QoS and the granted one (MQTT-3.8.4-8), RETAIN 1.
        for (&topic, (payload, mqos)) in &self.retained {
            if matches(FILTERS[filter], TOPICS[topic]) {
                s.owe(payload, topic, (*mqos).min(qos), true);
            }
        }
    }

    /// Fires the deadlines up to `target`, in the broker's order for equal times (session
    /// expiry before will, each by Client Identifier).
    fn advance(&mut self, secs: u64) {
        let target = self.now.plus_secs(secs);
        loop {
            let next = self
                .sessions
                .iter()
                .filter(|(_, s)| !s.connected)
                .flat_map(|(&c, s)| {
                    [
                        s.expires_at.map(|t| (t, 0, c)),
                        s.will_due.map(|t| (t, 1, c)),
                    ]
                })
                .flatten()
                .filter(|(t, _, _)| *t <= target)
                .min();
            let Some((t, kind, client)) = next else { break };
            self.now = t;
            if kind == 0 {
                // The session state is discarded when the interval has passed (v5 MQTT-4.1.0-2).
                self.end_session(client);
            } else {
                self.publish_will(client);
            }
        }
        self.now = target;
    }

    /// Takes a new delivery off what the session is owed.
    fn deliver(&mut self, step: usize, d: &Delivery) {
        let s = self.sessions.get_mut(&d.client).unwrap_or_else(|| {
            panic!(
                "step {step}: {d:?} to client {} without a session",
                d.client
            )
        });
        let Some((topic, routings)) = s.owed.get_mut(&d.payload) else {
            panic!(
                "step {step}: {d:?} was never routed to this session (owed: {:?})",
                s.owed
            )
        };
        assert_eq!(
            TOPICS[*topic], d.topic,
            "step {step}: {d:?} on the wrong topic"
        );
        let Some(i) = routings.iter().position(|r| *r == (d.qos, d.retain)) else {
            panic!(
                "step {step}: {d:?} delivered more often than routed, or with the wrong QoS/RETAIN: {routings:?} left"
            )
        };
        routings.remove(i);
    }
}

fn granted_code(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
        QoS::AtLeastOnce => ReasonCode::GRANTED_QOS_1,
        QoS::ExactlyOnce => ReasonCode::GRANTED_QOS_2,
    }
}

/// Applies one operation to the broker and the model and compares.
fn step(world: &mut World, model: &mut Model, n: usize, op: &Op) {
    let connected_before = op.client().and_then(|c| model.conn[c]);
    let out: Outcome = world.apply(n, op);
    let mut expected_disconnects = Vec::new();
    match op {
        Op::Connect {
            client,
            v5,
            clean,
            expiry,
            will,
        } => {
            let present = model.connect(n, *client, *v5, *clean, *expiry, will.as_ref());
            let ack = out.connack.as_ref().unwrap();
            assert_eq!(
                ack.session_present, present,
                "step {n}: Session Present of {op:?}"
            );
            if connected_before == Some(ProtocolVersion::V5) {
                // The old connection gets DISCONNECT 0x8E (v5 MQTT-3.1.4-3).
                expected_disconnects.push((*client, ReasonCode::SESSION_TAKEN_OVER));
            }
        }
        Op::Disconnect { client } => {
            if connected_before.is_some() {
                model.connection_lost(*client, true);
            }
        }
        Op::DisconnectWithWill { client } => {
            if connected_before == Some(ProtocolVersion::V5) {
                model.connection_lost(*client, false);
            }
        }
        Op::DisconnectWithExpiry { client, expiry } => {
            if connected_before == Some(ProtocolVersion::V5) {
                if model.conn_expiry[*client] == 0 && expiry.secs() != 0 {
                    // v5 section 3.14.2.2.2: a non-zero Session Expiry Interval at DISCONNECT
                    // after 0 at CONNECT is a Protocol Error: DISCONNECT 0x82, and the will is
                    // not discarded.
                    expected_disconnects.push((*client, ReasonCode::PROTOCOL_ERROR));
                    model.connection_lost(*client, false);
                } else {
                    model.sessions.get_mut(client).unwrap().expiry = expiry.secs();
                    model.connection_lost(*client, true);
                }
            }
        }
        Op::Drop { client } => {
            if connected_before.is_some() {
                model.connection_lost(*client, false);
            }
        }
        Op::Subscribe {
            client,
            filter,
            qos,
        } => {
            if connected_before.is_some() {
                model.subscribe(*client, *filter, *qos);
                assert_eq!(
                    out.suback,
                    Some(vec![granted_code(*qos)]),
                    "step {n}: SUBACK"
                );
            }
        }
        Op::Unsubscribe { client, filter } => {
            if connected_before.is_some() {
                model.sessions.get_mut(client).unwrap().subs.remove(filter);
            }
        }
        Op::Publish {
            topic,
            qos,
            retain,
            resend_dup,
            release,
            ..
        } => {
            if let Some(version) = connected_before {
                let matched = model.publish(*topic, &message_payload(n), *qos, *retain);
                let code = if version == ProtocolVersion::V5 && !matched {
                    ReasonCode::NO_MATCHING_SUBSCRIBERS
                } else {
                    ReasonCode::SUCCESS
                };
                let acks = usize::from(*qos != QoS::AtMostOnce);
                assert_eq!(
                    out.publish_acks.first(),
                    (acks == 1).then_some(&code),
                    "step {n}: acknowledgement of {op:?}"
                );
                if *qos == QoS::ExactlyOnce && *resend_dup {
                    // v5 MQTT-4.3.3-10: the PUBLISH sent again before PUBREL is acknowledged
                    // again (the broker answers 0x00 even when the first PUBREC said 0x10 No
                    // matching subscribers: both are success codes, the specification does not
                    // say which) and not delivered again (checked by the deliveries).
                    assert_eq!(
                        out.publish_acks.len(),
                        2,
                        "step {n}: PUBREC for the DUP PUBLISH"
                    );
                    assert!(
                        !out.publish_acks[1].is_error(),
                        "step {n}: {:?}",
                        out.publish_acks
                    );
                } else {
                    assert_eq!(
                        out.publish_acks.len(),
                        acks,
                        "step {n}: acknowledgements of {op:?}"
                    );
                }
                let comps = usize::from(*qos == QoS::ExactlyOnce && *release);
                assert_eq!(
                    out.pubcomps,
                    vec![ReasonCode::SUCCESS; comps],
                    "step {n}: PUBCOMP"
                );
            }
        }
        Op::Ack { .. } => {
            assert!(
                out.pubcomps.iter().all(|c| *c == ReasonCode::SUCCESS),
                "step {n}: PUBCOMP {:?}",
                out.pubcomps
            );
        }
        Op::Advance { secs } => model.advance(*secs),
        Op::Restart => unreachable!("not in this test"),
    }
    assert_eq!(
        out.disconnects, expected_disconnects,
        "step {n}: DISCONNECT packets received"
    );
    let events: Vec<Ev> = out
        .events
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::WillPublished { client_id, topic } => Some(Ev::WillPublished {
                client: CLIENT_IDS.iter().position(|c| c == client_id).unwrap(),
                topic: topic.to_string(),
            }),
            BrokerEvent::SessionEnded { client_id } => Some(Ev::SessionEnded {
                client: CLIENT_IDS.iter().position(|c| c == client_id).unwrap(),
            }),
            _ => None,
        })
        .collect();
    let predicted = std::mem::take(&mut model.events);
    assert_eq!(
        events, predicted,
        "step {n}: wills published and sessions ended by {op:?}"
    );
    for d in &out.deliveries {
        model.deliver(n, d);
    }
}

/// Runs a scenario, then the final reconnect-and-acknowledge phase, and checks completeness.
fn run(ops: &[Op]) {
    let mut world = World::new(RestartMode::DropAll);
    let mut model = Model::new(world.now);
    for (n, op) in ops.iter().enumerate() {
        step(&mut world, &mut model, n, op);
    }
    let mut n = ops.len();
    for client in 0..CLIENT_IDS.len() {
        if model.sessions.contains_key(&client) && model.conn[client].is_none() {
            let op = Op::Connect {
                client,
                v5: true,
                clean: false,
                expiry: Expiry::Never,
                will: None,
            };
            step(&mut world, &mut model, n, &op);
            n += 1;
        }
    }
    for client in 0..CLIENT_IDS.len() {
        step(
            &mut world,
            &mut model,
            n,
            &Op::Ack {
                client,
                count: usize::MAX,
            },
        );
        n += 1;
    }
    // Every flow of a remaining session is complete on both sides: the broker resent what the
    // client had not acknowledged (PUBLISH with DUP, PUBREL; MQTT-4.4.0-1) and its queue is
    // empty. (A client whose session ended keeps its stale state until its next CONNACK.)
    for &client in model.sessions.keys() {
        assert_eq!(
            world.flows_in_flight(client),
            0,
            "client {client}: flows left in flight"
        );
        let id = CLIENT_IDS[client];
        assert_eq!(
            world.broker.pending_messages(id),
            0,
            "client {client}: messages left queued"
        );
    }
    // Every QoS 1/2 message routed to a session that still exists has reached its client
    // (MQTT-4.5.0-1, MQTT-3.1.2-5).
    for (client, s) in &model.sessions {
        for (payload, (topic, routings)) in &s.owed {
            let missing: Vec<_> = routings
                .iter()
                .filter(|(q, _)| *q != QoS::AtMostOnce)
                .collect();
            assert!(
                missing.is_empty(),
                "client {client}: {payload:?} on {} never delivered: {missing:?}",
                TOPICS[*topic]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    // v5 [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.2.2-2] [MQTT-3.2.2-3]
    // v5 [MQTT-3.1.2-8] [MQTT-3.1.2-10] [MQTT-3.1.3-9] [MQTT-3.14.4-3] [MQTT-4.1.0-2]
    // v5 [MQTT-3.1.2-23] [MQTT-3.1.4-3] [MQTT-4.5.0-1] [MQTT-4.4.0-1] [MQTT-4.3.3-10]
    // v5 [MQTT-2.2.1-4] [MQTT-3.3.1-1] [MQTT-4.3.3-6] [MQTT-3.3.1-9] [MQTT-3.3.1-12]
    // v5 [MQTT-3.8.4-7] [MQTT-3.8.4-8] [MQTT-3.3.4-2]
    // v3.1.1 [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.2.2-1] [MQTT-3.2.2-2]
    // v3.1.1 [MQTT-3.2.2-3] [MQTT-3.1.2-8] [MQTT-3.1.2-10] [MQTT-3.14.4-3] [MQTT-3.1.4-2]
    // v3.1.1 [MQTT-4.5.0-1] [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-3.3.1-6] [MQTT-3.3.1-8]
    // v3.1.1 [MQTT-3.3.1-9] [MQTT-3.8.4-6]
    #[test]
    fn broker_follows_the_session_model(ops in scenario_strategy(4, 1..48)) {
        run(&ops);
    }

    /// Two clients only, longer scenarios: more interaction per client.
    // v5 [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-3] [MQTT-3.1.2-8] [MQTT-3.1.3-9]
    // v5 [MQTT-4.1.0-2] [MQTT-4.4.0-1] [MQTT-4.3.3-10] [MQTT-2.2.1-4] [MQTT-4.3.3-6]
    // v3.1.1 [MQTT-3.1.2-4] [MQTT-3.1.2-6] [MQTT-3.2.2-2] [MQTT-4.4.0-1]
    #[test]
    fn broker_follows_the_session_model_two_clients(ops in scenario_strategy(2, 20..80)) {
        run(&ops);
    }
}

// ---- fixed scenarios ---------------------------------------------------------------------------

fn connect(client: usize, v5: bool, clean: bool, expiry: Expiry) -> Op {
    Op::Connect {
        client,
        v5,
        clean,
        expiry,
        will: None,
    }
}

/// A persistent subscriber that does not acknowledge, drops, and comes back: QoS 1 and 2
/// messages are resent (DUP), not delivered twice, and the queue behind the in-flight window
/// follows.
// v5 [MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-4.3.3-10]
#[test]
fn unacknowledged_flows_resume_after_reconnect() {
    let mut ops = vec![
        connect(0, true, true, Expiry::Never),
        Op::Subscribe {
            client: 0,
            filter: 3,
            qos: QoS::ExactlyOnce,
        },
        connect(1, false, true, Expiry::Zero),
    ];
    for (topic, qos) in [
        (0, QoS::AtLeastOnce),
        (1, QoS::ExactlyOnce),
        (2, QoS::ExactlyOnce),
        (1, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
    ] {
        ops.push(Op::Publish {
            client: 1,
            topic,
            qos,
            retain: false,
            resend_dup: true,
            release: true,
        });
    }
    ops.extend([
        Op::Ack {
            client: 0,
            count: 2,
        },
        Op::Drop { client: 0 },
        Op::Advance { secs: 30 },
        connect(0, true, false, Expiry::Never),
        Op::Ack {
            client: 0,
            count: 3,
        },
        Op::Drop { client: 0 },
        connect(0, false, false, Expiry::Never),
    ]);
    run(&ops);
}

/// Wills: delay 0 at a drop, delay 30 cancelled by a reconnect, delay 30 published at its time,
/// published at once when the session has Session Expiry 0.
// v5 [MQTT-3.1.2-8] [MQTT-3.1.3-9] [MQTT-3.1.2-10]
#[test]
fn wills_follow_delay_and_session_end() {
    let will = |delay| {
        Some(WillSpec {
            topic: 1,
            qos: QoS::AtLeastOnce,
            retain: false,
            delay,
        })
    };
    let ops = vec![
        connect(3, true, true, Expiry::Never),
        Op::Subscribe {
            client: 3,
            filter: 5,
            qos: QoS::ExactlyOnce,
        },
        Op::Connect {
            client: 0,
            v5: true,
            clean: true,
            expiry: Expiry::Minute,
            will: will(0),
        },
        Op::Drop { client: 0 },
        Op::Connect {
            client: 1,
            v5: true,
            clean: true,
            expiry: Expiry::Minute,
            will: will(30),
        },
        Op::DisconnectWithWill { client: 1 },
        Op::Advance { secs: 10 },
        Op::Connect {
            client: 1,
            v5: true,
            clean: false,
            expiry: Expiry::Minute,
            will: will(30),
        },
        Op::Drop { client: 1 },
        Op::Advance { secs: 29 },
        Op::Advance { secs: 1 },
        Op::Connect {
            client: 2,
            v5: true,
            clean: true,
            expiry: Expiry::Zero,
            will: will(30),
        },
        Op::Drop { client: 2 },
        Op::Advance { secs: 61 },
    ];
    run(&ops);
}
