//! The broker engine's I/O, second version (`docs/design/engine-io.md`), driven by a host that
//! decides when each connection's socket can take bytes and when records are committed:
//! pulled transmit, commit acknowledgements, and the slow-consumer policy, deterministically.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use mqtt_session::Timestamp;
use mqtt_session::broker::{
    Broker, BrokerConfig, BrokerEvent, ConnectionId, DropReason, Output, StorageRecord,
};
use mqtt_session::codec::{
    Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions,
};

/// A host whose sockets and storage are under the test's control.
struct Host {
    broker: Broker,
    now: Timestamp,
    /// Records emitted and not yet committed, and the committed ones.
    uncommitted: Vec<(u64, StorageRecord)>,
    committed: Vec<StorageRecord>,
    /// Whether records are committed as they come.
    auto_commit: bool,
    /// Connections the broker said have bytes.
    ready: BTreeSet<ConnectionId>,
    /// Connections whose sockets take bytes (and how many per pull), the others' are full.
    writable: BTreeMap<ConnectionId, usize>,
    /// Bytes each connection's client received, decoded.
    decoders: BTreeMap<ConnectionId, (Decoder, BytesMut)>,
    received: BTreeMap<ConnectionId, Vec<Packet>>,
    paused: BTreeSet<ConnectionId>,
    events: Vec<BrokerEvent>,
    closed: BTreeSet<ConnectionId>,
}

impl Host {
    fn new(config: BrokerConfig) -> Self {
        Self {
            broker: Broker::new(config),
            now: Timestamp::from_secs(1_000_000),
            uncommitted: Vec::new(),
            committed: Vec::new(),
            auto_commit: true,
            ready: BTreeSet::new(),
            writable: BTreeMap::new(),
            decoders: BTreeMap::new(),
            received: BTreeMap::new(),
            paused: BTreeSet::new(),
            events: Vec::new(),
            closed: BTreeSet::new(),
        }
    }

    /// Drains the outputs, commits (when automatic), and pulls what writable sockets take.
    fn drain(&mut self) {
        loop {
            let mut any = false;
            while let Some(out) = self.broker.poll_output() {
                any = true;
                match out {
                    Output::Persist { seq, record } => self.uncommitted.push((seq, record)),
                    Output::TransmitReady { connection } => {
                        self.ready.insert(connection);
                    }
                    Output::Close {
                        connection,
                        farewell,
                    } => {
                        self.deliver(connection, &farewell);
                        self.closed.insert(connection);
                        self.ready.remove(&connection);
                    }
                    Output::PauseReading { connection } => {
                        assert!(self.paused.insert(connection), "paused twice");
                    }
                    Output::ResumeReading { connection } => {
                        assert!(self.paused.remove(&connection), "resumed while not paused");
                    }
                    Output::Event(e) => self.events.push(e),
                    other => panic!("unexpected {other:?}"),
                }
            }
            if self.auto_commit {
                any |= self.commit_all();
            }
            for c in self.ready.clone() {
                let Some(&budget) = self.writable.get(&c) else {
                    continue;
                };
                match self.broker.poll_transmit(c, budget, self.now) {
                    Some(data) => {
                        assert!(data.len() <= budget);
                        self.deliver(c, &data);
                        any = true;
                    }
                    None => {
                        self.ready.remove(&c);
                        // (A pull may have emitted records: look at the outputs again.)
                        any = true;
                    }
                }
            }
            if !any {
                return;
            }
        }
    }

    /// Commits the records up to `seq` only.
    fn commit_up_to(&mut self, seq: u64) {
        let n = self
            .uncommitted
            .iter()
            .take_while(|(s, _)| *s <= seq)
            .count();
        self.committed
            .extend(self.uncommitted.drain(..n).map(|(_, r)| r));
        self.broker.handle_committed(seq);
    }

    fn commit_all(&mut self) -> bool {
        let Some(&(last, _)) = self.uncommitted.last() else {
            return false;
        };
        self.committed
            .extend(self.uncommitted.drain(..).map(|(_, r)| r));
        self.broker.handle_committed(last);
        true
    }

    fn deliver(&mut self, c: ConnectionId, data: &Bytes) {
        let (decoder, buf) = self
            .decoders
            .entry(c)
            .or_insert_with(|| (Decoder::with_version(ProtocolVersion::V5), BytesMut::new()));
        buf.extend_from_slice(data);
        while let Some(p) = decoder.decode(buf).unwrap() {
            self.received.entry(c).or_default().push(p);
        }
    }

    fn send(&mut self, c: ConnectionId, packet: impl Into<Packet>) {
        let mut b = BytesMut::new();
        packet.into().encode(ProtocolVersion::V5, &mut b).unwrap();
        self.broker.handle_bytes(c, &b, self.now);
        self.drain();
    }

    /// A connected 5.0 client (its socket writable by default).
    fn client(&mut self, id: &str, session_expiry: u32) -> ConnectionId {
        let c = self.broker.handle_connection_opened(self.now);
        self.writable.insert(c, usize::MAX);
        let mut connect = Connect::new(ProtocolVersion::V5, id.try_into().unwrap());
        connect.keep_alive = 0;
        connect.properties.session_expiry_interval = Some(session_expiry);
        self.send(c, connect);
        assert!(
            matches!(self.take(c).first(), Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::SUCCESS)
        );
        c
    }

    fn subscribe(&mut self, c: ConnectionId, filter: &str, qos: QoS) {
        self.send(
            c,
            Subscribe {
                packet_id: PacketId::new(1).unwrap(),
                properties: Default::default(),
                filters: vec![(filter.try_into().unwrap(), SubscriptionOptions::qos(qos))],
            },
        );
        assert!(matches!(self.take(c).first(), Some(Packet::SubAck(_))));
    }

    fn publish(&mut self, c: ConnectionId, topic: &str, payload: Vec<u8>, qos: QoS, id: u16) {
        let mut p = Publish::new(topic.try_into().unwrap(), payload);
        p.qos = qos;
        p.packet_id = PacketId::new(id).filter(|_| qos != QoS::AtMostOnce);
        self.send(c, p);
    }

    fn take(&mut self, c: ConnectionId) -> Vec<Packet> {
        self.received.remove(&c).unwrap_or_default()
    }

    fn advance_ms(&mut self, ms: u64) {
        let target = self.now.plus_millis(ms);
        while let Some(t) = self.broker.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.broker.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
        self.broker.handle_timeout(self.now);
        self.drain();
    }
}

fn payloads(packets: &[Packet]) -> Vec<Vec<u8>> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.payload.to_vec()),
            _ => None,
        })
        .collect()
}

fn config() -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.max_connection_backlog = 64 * 1024;
    c.stuck_after_ms = 1000;
    c.disconnect_stuck_after = Some(60);
    c
}

/// Bytes are pulled in any size; a budget smaller than a packet splits it, and the stream is
/// the same as when pulled at once.
#[test]
fn transmit_is_pulled_in_pieces_of_the_hosts_size() {
    let mut h = Host::new(config());
    let s = h.client("s", 0);
    h.subscribe(s, "t", QoS::AtMostOnce);
    let p = h.client("p", 0);
    h.writable.insert(s, 7);
    for i in 0..10u8 {
        h.publish(p, "t", vec![i; 100], QoS::AtMostOnce, 0);
    }
    let got = payloads(&h.take(s));
    assert_eq!(got, (0..10u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
}

/// Nothing that depends on an uncommitted record leaves the engine: the PUBACK of a message
/// routed to a durable session, and the delivery of a stored message, wait for the commit.
#[test]
fn nothing_depending_on_an_uncommitted_record_is_released() {
    let mut h = Host::new(config());
    let s = h.client("s", 3600);
    h.subscribe(s, "t", QoS::AtLeastOnce);
    let p = h.client("p", 0);
    h.auto_commit = false;
    h.publish(p, "t", b"m".to_vec(), QoS::AtLeastOnce, 1);
    // The Queued record is not committed: no PUBACK, no delivery.
    assert!(h.take(p).is_empty());
    assert!(h.take(s).is_empty());
    assert!(
        h.uncommitted
            .iter()
            .any(|(_, r)| matches!(r, StorageRecord::Queued { .. }))
    );
    // The delivery was encoded when the subscriber's socket could take it, after its own record
    // (Sent), which its bytes wait for.
    let queued = h
        .uncommitted
        .iter()
        .find(|(_, r)| matches!(r, StorageRecord::Queued { .. }))
        .map(|(seq, _)| *seq)
        .unwrap();
    assert!(
        h.uncommitted
            .iter()
            .any(|(seq, r)| *seq > queued && matches!(r, StorageRecord::Sent { .. }))
    );
    // Queued committed: the PUBACK goes, the delivery still waits.
    h.commit_up_to(queued);
    h.drain();
    assert!(matches!(h.take(p).as_slice(), [Packet::PubAck(_)]));
    assert!(h.take(s).is_empty());
    // Sent committed: the delivery goes.
    h.commit_all();
    h.drain();
    assert_eq!(payloads(&h.take(s)), [b"m".to_vec()]);
}

/// Commits may be reported late and in batches (group commit): everything waiting for them is
/// released in order.
#[test]
fn a_group_commit_releases_everything_it_covers_in_order() {
    let mut h = Host::new(config());
    let s = h.client("s", 3600);
    h.subscribe(s, "t", QoS::AtLeastOnce);
    let p = h.client("p", 0);
    h.auto_commit = false;
    for i in 1..=5u16 {
        h.publish(p, "t", vec![i as u8], QoS::AtLeastOnce, i);
    }
    assert!(h.take(p).is_empty());
    for _ in 0..3 {
        h.commit_all();
        h.drain();
    }
    let acks: Vec<u16> = h
        .take(p)
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.packet_id.get()),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [1, 2, 3, 4, 5]);
    assert_eq!(payloads(&h.take(s)).len(), 5);
}

/// A subscriber whose socket takes nothing for minutes of simulated time: the publisher feeding
/// it is paused (for at most `stuck_after`), then the subscriber is stuck: its QoS 0 messages are
/// dropped and counted, its QoS 1 messages wait in its queue, its accounted backlog stays near
/// the limit, and after `disconnect_stuck_after` it is disconnected with 0x97.
#[test]
fn a_subscriber_that_takes_nothing_is_bounded_then_disconnected() {
    let mut h = Host::new(config());
    let s = h.client("s", 3600);
    h.subscribe(s, "t/#", QoS::AtLeastOnce);
    // (At QoS 0: a subscriber that does not acknowledge its QoS 1 messages is behind too.)
    let fast = h.client("fast", 0);
    h.subscribe(fast, "t/#", QoS::AtMostOnce);
    let p = h.client("p", 0);
    h.writable.remove(&s);
    // QoS 0 flood until the publisher is paused.
    let mut sent = 0;
    while !h.paused.contains(&p) {
        h.publish(p, "t/0", vec![0; 1000], QoS::AtMostOnce, 0);
        sent += 1;
        assert!(sent < 1000, "the publisher was never paused");
    }
    // Paused at the backlog limit: 64 KiB of messages counted as 1 KiB + 3 bytes of topic +
    // 128 bytes each (57.6 fit).
    assert_eq!(sent, 58);
    // The fast subscriber got everything so far.
    assert_eq!(payloads(&h.take(fast)).len(), sent);
    // Within `stuck_after` the publisher is resumed: the subscriber is stuck.
    h.advance_ms(1000);
    assert!(!h.paused.contains(&p));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, BrokerEvent::ConsumerStuck { .. }))
    );
    // From now on its QoS 0 messages are dropped (reported once), QoS 1 messages queued.
    for i in 0..500u16 {
        h.publish(p, "t/0", vec![0; 1000], QoS::AtMostOnce, 0);
        h.publish(p, "t/1", vec![1; 10], QoS::AtLeastOnce, i % 1000 + 1);
    }
    assert!(
        !h.paused.contains(&p),
        "a stuck subscriber does not slow its publishers"
    );
    let drops: Vec<_> = h
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                BrokerEvent::MessageDropped {
                    reason: DropReason::SlowConsumer,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(drops.len(), 1, "one event per run of drops");
    assert_eq!(h.broker.pending_messages("s"), 500);
    assert_eq!(payloads(&h.take(fast)).len(), 1000);
    // Minutes later, still not reading: disconnected with Quota exceeded.
    h.advance_ms(59_000);
    assert!(!h.closed.contains(&s));
    h.advance_ms(1_000);
    assert!(h.closed.contains(&s));
    let last = h.take(s).pop();
    assert!(
        matches!(&last, Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::QUOTA_EXCEEDED),
        "{last:?}"
    );
    // Its QoS 1 messages are still in its session, for when it comes back.
    assert_eq!(h.broker.pending_messages("s"), 500);
}

/// A subscriber that reads again recovers: the drop count is reported, QoS 0 flows again, and
/// every QoS 1 message queued meanwhile arrives in order.
#[test]
fn a_stuck_subscriber_that_reads_again_gets_its_qos1_messages_in_order() {
    let mut h = Host::new(config());
    let s = h.client("s", 3600);
    h.subscribe(s, "t/#", QoS::AtLeastOnce);
    let p = h.client("p", 0);
    h.writable.remove(&s);
    for _ in 0..100 {
        h.publish(p, "t/0", vec![0; 1000], QoS::AtMostOnce, 0);
    }
    h.advance_ms(1000);
    for i in 1..=300u16 {
        h.publish(p, "t/0", vec![0; 1000], QoS::AtMostOnce, 0);
        h.publish(p, "t/1", i.to_be_bytes().to_vec(), QoS::AtLeastOnce, i);
    }
    // It reads again, and acknowledges what it gets.
    h.writable.insert(s, 16 * 1024);
    h.ready.insert(s);
    let mut qos1 = Vec::new();
    for _ in 0..1000 {
        h.drain();
        let got = h.take(s);
        if got.is_empty() {
            break;
        }
        for packet in got {
            if let Packet::Publish(p) = packet
                && let Some(id) = p.packet_id
            {
                qos1.push(u16::from_be_bytes([p.payload[0], p.payload[1]]));
                h.send(s, PubAck::new(id));
            }
        }
    }
    assert_eq!(qos1, (1..=300).collect::<Vec<u16>>());
    assert!(h.events.iter().any(|e| matches!(
        e,
        BrokerEvent::ConsumerRecovered { dropped, .. } if *dropped > 300
    )));
    // QoS 0 reaches it again.
    h.publish(p, "t/0", vec![7; 10], QoS::AtMostOnce, 0);
    assert_eq!(payloads(&h.take(s)), [vec![7; 10]]);
}

/// A publisher that never reads its PUBACKs is paused once its own unsent acknowledgements pass
/// the backlog, and resumed when it reads them.
#[test]
fn a_publisher_that_does_not_read_its_acks_is_paused() {
    let mut cfg = config();
    cfg.max_connection_backlog = 1024;
    let mut h = Host::new(cfg);
    let p = h.client("p", 0);
    h.writable.remove(&p);
    let mut n = 0u16;
    while !h.paused.contains(&p) {
        n += 1;
        h.publish(p, "t", b"x".to_vec(), QoS::AtLeastOnce, n);
        assert!(n < 2000, "never paused");
    }
    // Paused as soon as more than 1024 bytes of PUBACKs wait (0x10: no subscriber matched).
    let mut one = BytesMut::new();
    let mut ack = PubAck::new(PacketId::new(1).unwrap());
    ack.reason_code = ReasonCode::NO_MATCHING_SUBSCRIBERS;
    Packet::PubAck(ack)
        .encode(ProtocolVersion::V5, &mut one)
        .unwrap();
    assert_eq!(usize::from(n), 1024 / one.len() + 1);
    h.writable.insert(p, usize::MAX);
    h.ready.insert(p);
    h.drain();
    assert!(!h.paused.contains(&p));
    assert_eq!(h.take(p).len(), usize::from(n));
}

/// A subscriber that reads steadily but more slowly than the publisher sends, with QoS 1
/// messages among the QoS 0 ones: the publisher is slowed to its pace; its accounted backlog
/// never passes the limit by more than one pull's worth of messages, and it gets everything.
#[test]
fn a_slow_reader_slows_the_publisher_and_its_backlog_stays_within_the_limit() {
    let limit = 64 * 1024;
    let mut h = Host::new(config());
    let s = h.client("s", 0);
    h.subscribe(s, "t/#", QoS::AtLeastOnce);
    let p = h.client("p", 0);
    h.writable.insert(s, 4 * 1024);
    let mut sent = 0u32;
    let mut got = 0u32;
    let mut most = 0;
    let mut step = 0u64;
    while sent < 3000 {
        if !h.paused.contains(&p) {
            let qos = if sent.is_multiple_of(10) {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            h.publish(
                p,
                "t/x",
                sent.to_be_bytes().repeat(250),
                qos,
                (sent % 60000 + 1) as u16,
            );
            sent += 1;
        }
        // The subscriber reads (its socket takes 4 KiB per pull) and acknowledges.
        h.ready.insert(s);
        h.drain();
        for packet in h.take(s) {
            if let Packet::Publish(m) = packet {
                assert_eq!(m.payload[..4], got.to_be_bytes(), "in order, none lost");
                got += 1;
                if let Some(id) = m.packet_id {
                    h.send(s, PubAck::new(id));
                }
            }
        }
        most = most.max(h.broker.connection_backlog(s).unwrap());
        step += 1;
        h.advance_ms(1);
        assert!(step < 100_000);
    }
    for _ in 0..100 {
        h.ready.insert(s);
        h.drain();
        for packet in h.take(s) {
            if let Packet::Publish(m) = packet {
                got += 1;
                if let Some(id) = m.packet_id {
                    h.send(s, PubAck::new(id));
                }
            }
        }
    }
    assert_eq!(got, 3000);
    assert!(most <= limit + 2 * 1024, "backlog {most} over {limit}");
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, BrokerEvent::ConsumerStuck { .. }))
    );
}

/// A full session queue: a QoS 1 message takes the place of the oldest queued QoS 0 message
/// (at most once, the first to go), and is dropped itself only when no QoS 0 is left.
#[test]
fn in_a_full_queue_qos1_messages_take_the_place_of_qos0_ones() {
    let mut cfg = config();
    cfg.max_queued_messages = 4;
    let mut h = Host::new(cfg);
    let s = h.client("s", 3600);
    h.subscribe(s, "t/#", QoS::AtLeastOnce);
    let p = h.client("p", 0);
    h.writable.remove(&s);
    for i in 0..3u8 {
        h.publish(p, "t/0", vec![i], QoS::AtMostOnce, 0);
    }
    for i in 1..=6u16 {
        h.publish(p, "t/1", vec![i as u8], QoS::AtLeastOnce, i);
    }
    // 4 queued: QoS 1 messages 1..=4 (the three QoS 0 ones made room); 5 and 6 dropped.
    let dropped: Vec<String> = h
        .events
        .iter()
        .filter_map(|e| match e {
            BrokerEvent::MessageDropped { topic, .. } => Some(topic.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, ["t/0", "t/0", "t/0", "t/1", "t/1"]);
    h.writable.insert(s, usize::MAX);
    h.ready.insert(s);
    h.drain();
    assert_eq!(
        payloads(&h.take(s)),
        [[1], [2], [3], [4]].map(|p| p.to_vec())
    );
}

/// A stuck subscriber whose queue was purged (nothing left to send) recovers on the next pull
/// that finds its socket writable, and QoS 0 reaches it again: a pull with nothing to give still
/// counts as progress.
#[test]
fn a_stuck_subscriber_with_nothing_left_to_send_recovers_when_it_can_take_bytes() {
    let mut h = Host::new(config());
    let s = h.client("s", 0);
    h.subscribe(s, "t/#", QoS::AtMostOnce);
    let p = h.client("p", 0);
    h.writable.remove(&s);
    for _ in 0..100 {
        h.publish(p, "t/0", vec![0; 1000], QoS::AtMostOnce, 0);
    }
    h.advance_ms(1000);
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, BrokerEvent::ConsumerStuck { .. }))
    );
    assert_eq!(
        h.broker.connection_backlog(s),
        Some(0),
        "its QoS 0 messages were dropped"
    );
    // Its socket takes bytes again; the host pulls once (it was told before).
    h.writable.insert(s, usize::MAX);
    h.ready.insert(s);
    h.drain();
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, BrokerEvent::ConsumerRecovered { .. }))
    );
    h.publish(p, "t/0", vec![9; 10], QoS::AtMostOnce, 0);
    let got = payloads(&h.take(s));
    assert_eq!(got.last(), Some(&vec![9; 10]));
}
