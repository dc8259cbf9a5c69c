//! A deterministic simulation of client engines and the broker engine over a simulated
//! network, with a fake clock.
//!
//! [`Pair`] plays both hosts: it drains every output after each input, carries transmitted
//! bytes over a [`Link`] per connection (each chunk delivered after a seeded random delay, in
//! order), closes links as the engines ask, fires deadlines in time order, and reconnects
//! clients that ask for it. Faults are injected by the test: [`Pair::drop_link`] cuts a
//! connection at any point (optionally after delivering part of the bytes in transit, so a
//! packet may be cut in half). Every packet that crosses a link is decoded on the side and kept
//! per client ([`Peer::sent`], [`Peer::received`]) so that tests can check what was on the wire.
//!
//! [`Scripted`] is the other half of the kit: a client engine alone, whose server is the test
//! (packets in, packets and events out), for server behaviour the broker engine never shows.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use mqtt_session::Timestamp;
use mqtt_session::broker::{
    AllowAll, Broker, BrokerConfig, BrokerEvent, ConnectionId, Output, Policy,
};
use mqtt_session::client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientOutput, ClientRecord, StoreChange,
    decode_stored,
};
use mqtt_session::codec::{
    Decoder, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, SubscriptionOptions,
    TopicFilter, TopicName,
};

/// A small deterministic generator (xorshift64*), so that a seed names a schedule.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo + 1)
        }
    }
}

/// Bytes in transit in one direction: chunks with their delivery time, in order.
#[derive(Debug, Default)]
struct Wire {
    chunks: VecDeque<(Timestamp, Bytes)>,
    /// The sender closed its side: after the last chunk, the receiver learns of it.
    closing: bool,
}

/// One network connection between a client and the broker.
#[derive(Debug)]
pub struct Link {
    pub conn: ConnectionId,
    /// Which of the client's connections this is (0, 1, ...).
    pub number: usize,
    up: Wire,
    down: Wire,
    sniff_up: (Decoder, BytesMut),
    sniff_down: (Decoder, BytesMut),
    /// The link fails once this many more bytes (both directions) have been delivered.
    budget: Option<usize>,
}

/// A client engine, its link, and what it saw.
#[derive(Debug)]
pub struct Peer {
    pub client: Client,
    pub link: Option<Link>,
    /// Every event, in order (never cleared; `Pair::take_events` reads from a cursor).
    pub events: Vec<ClientEvent>,
    events_read: usize,
    /// Every packet the client sent, with the number of its connection.
    pub sent: Vec<(usize, Packet)>,
    /// Every packet the client received, with the number of its connection.
    pub received: Vec<(usize, Packet)>,
    /// Reconnect this long after a connection ends (`None`: stay down).
    pub reconnect_after_ms: Option<u64>,
    reconnect_at: Option<Timestamp>,
    connections: usize,
    /// What the host stored from the client's `Persist` outputs (`ClientConfig::persist`).
    pub store: Store,
}

/// A host's keyed store of client records, applied as the engine says.
#[derive(Debug, Default, Clone)]
pub struct Store(pub BTreeMap<[u8; 3], Bytes>);

impl Store {
    pub fn apply(&mut self, record: &ClientRecord) {
        match record.change().expect("the engine's records encode") {
            StoreChange::Put { key, value } => {
                self.0.insert(key, value);
            }
            StoreChange::Delete(keys) => {
                for key in keys {
                    self.0.remove(&key);
                }
            }
            StoreChange::DeleteAllButClientId => self.0.retain(|key, _| key[0] == 0),
            other => panic!("unknown change {other:?}"),
        }
    }

    /// The records the store holds, decoded.
    pub fn records(&self) -> Vec<ClientRecord> {
        self.0
            .iter()
            .map(|(k, v)| decode_stored(k, v).expect("stored values decode"))
            .collect()
    }

    /// How many outbound messages are stored.
    pub fn outbound(&self) -> usize {
        self.0.keys().filter(|k| k[0] == 1).count()
    }
}

/// The simulated hosts: one broker, its clients, the network between them, one clock.
pub struct Pair<P: Policy = AllowAll> {
    pub broker: Broker<P>,
    pub now: Timestamp,
    pub peers: Vec<Peer>,
    pub broker_events: Vec<BrokerEvent>,
    /// Each chunk is delivered `delay_ms.0..=delay_ms.1` ms after it was sent (in order).
    pub delay_ms: (u64, u64),
    pub rng: Rng,
}

impl Pair<AllowAll> {
    pub fn new() -> Self {
        Self::with_broker(Broker::new(BrokerConfig::default()))
    }

    pub fn with_config(config: BrokerConfig) -> Self {
        Self::with_broker(Broker::new(config))
    }
}

impl<P: Policy> Pair<P> {
    pub fn with_broker(broker: Broker<P>) -> Self {
        Self {
            broker,
            now: Timestamp::from_secs(1_000_000),
            peers: Vec::new(),
            broker_events: Vec::new(),
            delay_ms: (0, 0),
            rng: Rng::new(1),
        }
    }

    /// Adds a client (not connected yet); returns its index.
    pub fn add(&mut self, config: ClientConfig) -> usize {
        let client = Client::new(config).expect("valid client configuration");
        self.peers.push(Peer {
            client,
            link: None,
            events: Vec::new(),
            events_read: 0,
            sent: Vec::new(),
            received: Vec::new(),
            reconnect_after_ms: None,
            reconnect_at: None,
            connections: 0,
            store: Store::default(),
        });
        self.peers.len() - 1
    }

    /// Adds a client and connects it; asserts that the server accepted it.
    pub fn add_connected(&mut self, config: ClientConfig) -> usize {
        let i = self.add(config);
        self.connect(i);
        assert!(
            self.peers[i].client.is_connected(),
            "not connected: {:?}",
            self.peers[i].events
        );
        i
    }

    /// Opens a transport for client `i` (CONNECT sent) and runs until the network is quiet.
    pub fn connect(&mut self, i: usize) {
        self.open(i);
        self.settle();
    }

    fn open(&mut self, i: usize) {
        let conn = self.broker.handle_connection_opened(self.now);
        let version = self.peers[i].client.config().protocol;
        let peer = &mut self.peers[i];
        peer.reconnect_at = None;
        peer.link = Some(Link {
            conn,
            number: peer.connections,
            up: Wire::default(),
            down: Wire::default(),
            sniff_up: (Decoder::new(), BytesMut::new()),
            sniff_down: (Decoder::with_version(version), BytesMut::new()),
            budget: None,
        });
        peer.connections += 1;
        peer.client.handle_connected(self.now);
        self.drain();
    }

    /// Runs a command on client `i` at the current time, then drains and settles the network.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Client, Timestamp) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.peers[i].client, now);
        self.drain();
        self.settle();
        r
    }

    /// Runs a command on client `i` at the current time and drains its outputs onto the
    /// network, without running the network.
    pub fn act<R>(&mut self, i: usize, f: impl FnOnce(&mut Client, Timestamp) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.peers[i].client, now);
        self.drain();
        r
    }

    /// Publishes from client `i`.
    pub fn publish(
        &mut self,
        i: usize,
        topic: &str,
        payload: &[u8],
        qos: QoS,
    ) -> Result<Option<PacketId>, ClientError> {
        let p = message(topic, payload, qos);
        self.with(i, |c, now| c.publish(p, now))
    }

    /// Subscribes client `i` to `filter` at `qos`.
    pub fn subscribe(&mut self, i: usize, filter: &str, qos: QoS) -> PacketId {
        let f = TopicFilter::try_from(filter).unwrap();
        self.with(i, |c, now| {
            c.subscribe(
                vec![(f, SubscriptionOptions::qos(qos))],
                Properties::default(),
                now,
            )
        })
        .expect("subscribe accepted")
    }

    pub fn client(&mut self, i: usize) -> &mut Client {
        &mut self.peers[i].client
    }

    /// The events of client `i` since the last call.
    pub fn take_events(&mut self, i: usize) -> Vec<ClientEvent> {
        let peer = &mut self.peers[i];
        let new = peer.events[peer.events_read..].to_vec();
        peer.events_read = peer.events.len();
        new
    }

    /// The messages client `i` received since the last `take_events`.
    pub fn take_messages(&mut self, i: usize) -> Vec<Publish> {
        self.take_events(i)
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Message(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    /// Every packet client `i` sent, in order.
    pub fn sent(&self, i: usize) -> Vec<Packet> {
        self.peers[i].sent.iter().map(|(_, p)| p.clone()).collect()
    }

    /// Every packet client `i` received, in order.
    pub fn received(&self, i: usize) -> Vec<Packet> {
        self.peers[i]
            .received
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Forgets what client `i` sent and received so far (for assertions on what comes next).
    pub fn clear_wire(&mut self, i: usize) {
        self.peers[i].sent.clear();
        self.peers[i].received.clear();
    }

    /// Drains every engine's outputs onto the links.
    pub fn drain(&mut self) {
        for i in 0..self.peers.len() {
            while let Some(out) = self.peers[i].client.poll_output() {
                match out {
                    ClientOutput::TransmitReady => {
                        while let Some(data) =
                            self.peers[i].client.poll_transmit(usize::MAX, self.now)
                        {
                            assert!(!data.is_empty(), "empty transmit");
                            let at = self.delivery_time();
                            let peer = &mut self.peers[i];
                            let link = peer.link.as_mut().expect("transmit without a transport");
                            assert!(!link.up.closing, "transmit after close");
                            let last = link.up.chunks.back().map_or(at, |(t, _)| *t);
                            link.up.chunks.push_back((at.max(last), data));
                        }
                    }
                    ClientOutput::Close { farewell } => {
                        let at = self.delivery_time();
                        if let Some(link) = self.peers[i].link.as_mut() {
                            if !farewell.is_empty() {
                                let last = link.up.chunks.back().map_or(at, |(t, _)| *t);
                                link.up.chunks.push_back((at.max(last), farewell));
                            }
                            link.up.closing = true;
                        }
                    }
                    ClientOutput::Event(e) => self.peers[i].events.push(e),
                    ClientOutput::Persist(r) => self.peers[i].store.apply(&r),
                    other => panic!("unexpected client output {other:?}"),
                }
            }
        }
        while let Some(out) = self.broker.poll_output() {
            match out {
                Output::Persist { seq, .. } => self.broker.handle_committed(seq),
                Output::TransmitReady { connection } => {
                    while let Some(data) =
                        self.broker.poll_transmit(connection, usize::MAX, self.now)
                    {
                        assert!(!data.is_empty(), "empty broker transmit");
                        let at = self.delivery_time();
                        if let Some(link) = self.link_of(connection) {
                            assert!(!link.down.closing, "broker transmit after close");
                            let last = link.down.chunks.back().map_or(at, |(t, _)| *t);
                            link.down.chunks.push_back((at.max(last), data));
                        }
                    }
                }
                Output::Close {
                    connection,
                    farewell,
                } => {
                    let at = self.delivery_time();
                    if let Some(link) = self.link_of(connection) {
                        if !farewell.is_empty() {
                            let last = link.down.chunks.back().map_or(at, |(t, _)| *t);
                            link.down.chunks.push_back((at.max(last), farewell));
                        }
                        link.down.closing = true;
                    }
                }
                Output::PauseReading { .. } | Output::ResumeReading { .. } => {}
                Output::Event(e) => self.broker_events.push(e),
                other => panic!("unexpected broker output {other:?}"),
            }
        }
    }

    fn delivery_time(&mut self) -> Timestamp {
        let (lo, hi) = self.delay_ms;
        let d = self.rng.range(lo, hi);
        self.now.plus_millis(d)
    }

    fn link_of(&mut self, conn: ConnectionId) -> Option<&mut Link> {
        self.peers
            .iter_mut()
            .filter_map(|p| p.link.as_mut())
            .find(|l| l.conn == conn)
    }

    /// The earliest thing that happens next: a delivery, a close, a deadline, a reconnection.
    fn next_event_time(&self) -> Option<Timestamp> {
        let mut t: Option<Timestamp> = self.broker.poll_timeout();
        let mut consider = |x: Option<Timestamp>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for p in &self.peers {
            consider(p.client.poll_timeout());
            consider(p.reconnect_at);
            if let Some(l) = &p.link {
                for w in [&l.up, &l.down] {
                    consider(w.chunks.front().map(|(t, _)| *t));
                    if w.closing && w.chunks.is_empty() {
                        consider(Some(self.now));
                    }
                }
            }
        }
        t
    }

    /// Whether anything is in transit or about to close.
    pub fn network_busy(&self) -> bool {
        self.peers.iter().any(|p| {
            p.reconnect_at.is_some()
                || p.link.as_ref().is_some_and(|l| {
                    !l.up.chunks.is_empty()
                        || !l.down.chunks.is_empty()
                        || l.up.closing
                        || l.down.closing
                })
        })
    }

    /// Does everything due at `self.now` (deliveries, closes, deadlines, reconnections).
    fn process_due(&mut self) {
        let now = self.now;
        for i in 0..self.peers.len() {
            if self.peers[i].reconnect_at.is_some_and(|t| t <= now) && self.peers[i].link.is_none()
            {
                self.peers[i].reconnect_at = None;
                self.open(i);
            }
            loop {
                let peer = &mut self.peers[i];
                let Some(link) = peer.link.as_mut() else {
                    break;
                };
                let conn = link.conn;
                let up_due = link.up.chunks.front().is_some_and(|(t, _)| *t <= now);
                let down_due = link.down.chunks.front().is_some_and(|(t, _)| *t <= now);
                if (up_due || down_due) && link.budget == Some(0) {
                    self.drop_link_with(i, 0, true);
                    break;
                }
                if up_due {
                    let (_, data) = link.up.chunks.pop_front().unwrap();
                    let n = link.budget.map_or(data.len(), |b| b.min(data.len()));
                    link.budget = link.budget.map(|b| b - n);
                    let cut = n < data.len();
                    let data = data.slice(..n);
                    sniff(&mut link.sniff_up, &data, link.number, &mut peer.sent);
                    self.broker.handle_bytes(conn, &data, now);
                    self.drain();
                    if cut {
                        self.drop_link_with(i, 0, true);
                        break;
                    }
                    continue;
                }
                if down_due {
                    let (_, data) = link.down.chunks.pop_front().unwrap();
                    let n = link.budget.map_or(data.len(), |b| b.min(data.len()));
                    link.budget = link.budget.map(|b| b - n);
                    let cut = n < data.len();
                    let data = data.slice(..n);
                    sniff(&mut link.sniff_down, &data, link.number, &mut peer.received);
                    self.peers[i].client.handle_bytes(&data, now);
                    self.drain();
                    if cut {
                        self.drop_link_with(i, 0, true);
                        break;
                    }
                    continue;
                }
                if link.up.closing && link.up.chunks.is_empty() {
                    // The client closed its side and everything it wrote has arrived.
                    self.broker.handle_connection_closed(conn, now);
                    self.peers[i].link = None;
                    self.peers[i].client.handle_disconnected(now);
                    self.schedule_reconnect(i);
                    self.drain();
                    break;
                }
                if link.down.closing && link.down.chunks.is_empty() {
                    self.peers[i].client.handle_disconnected(now);
                    self.peers[i].link = None;
                    self.broker.handle_connection_closed(conn, now);
                    self.schedule_reconnect(i);
                    self.drain();
                    break;
                }
                break;
            }
            if self.peers[i]
                .client
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.peers[i].client.handle_timeout(now);
                self.drain();
            }
        }
        if self.broker.poll_timeout().is_some_and(|t| t <= now) {
            self.broker.handle_timeout(now);
            self.drain();
        }
    }

    fn schedule_reconnect(&mut self, i: usize) {
        if let Some(ms) = self.peers[i].reconnect_after_ms {
            self.peers[i].reconnect_at = Some(self.now.plus_millis(ms));
        }
    }

    /// Runs until `until`, firing everything due on the way in time order.
    pub fn run_until(&mut self, until: Timestamp) {
        loop {
            match self.next_event_time() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.process_due();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.process_due();
    }

    /// Runs for `ms` milliseconds.
    pub fn advance_ms(&mut self, ms: u64) {
        let until = self.now.plus_millis(ms);
        self.run_until(until);
    }

    pub fn advance(&mut self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    /// Runs until nothing is in transit (deadlines that fall due on the way fire too).
    pub fn settle(&mut self) {
        let mut guard = 0;
        while self.network_busy() {
            let Some(t) = self.next_event_time() else {
                break;
            };
            self.now = self.now.max(t);
            self.process_due();
            guard += 1;
            assert!(guard < 1_000_000, "the network never settles");
        }
    }

    /// The transport of client `i` will fail after `bytes` more bytes (counted in both
    /// directions) have been delivered; a chunk may be cut in the middle of a packet.
    pub fn cut_after(&mut self, i: usize, bytes: usize) {
        if let Some(link) = self.peers[i].link.as_mut() {
            link.budget = Some(bytes);
        }
    }

    /// The transport of client `i` fails: the first `deliver` bytes in transit each way still
    /// arrive (a packet may be cut), the rest is lost, and both ends learn of it.
    pub fn drop_link(&mut self, i: usize, deliver: usize) {
        self.drop_link_with(i, deliver, true);
    }

    /// As [`Pair::drop_link`]; with `tell_broker` false the broker does not learn of it (a
    /// half-open connection, found out by keep alive or by the client's next CONNECT).
    pub fn drop_link_with(&mut self, i: usize, deliver: usize, tell_broker: bool) {
        let Some(mut link) = self.peers[i].link.take() else {
            return;
        };
        let now = self.now;
        let up: Vec<u8> = link
            .up
            .chunks
            .iter()
            .flat_map(|(_, b)| b.to_vec())
            .collect();
        let up = &up[..deliver.min(up.len())];
        if !up.is_empty() {
            sniff(&mut link.sniff_up, up, link.number, &mut self.peers[i].sent);
            self.broker.handle_bytes(link.conn, up, now);
        }
        let down: Vec<u8> = link
            .down
            .chunks
            .iter()
            .flat_map(|(_, b)| b.to_vec())
            .collect();
        let down = &down[..deliver.min(down.len())];
        if !down.is_empty() {
            sniff(
                &mut link.sniff_down,
                down,
                link.number,
                &mut self.peers[i].received,
            );
            // The link is gone from `peers` already: outputs for it are dropped by `drain`.
            self.peers[i].client.handle_bytes(down, now);
        }
        if tell_broker {
            self.broker.handle_connection_closed(link.conn, now);
        }
        self.peers[i].client.handle_disconnected(now);
        self.drain_without_link(i);
        self.schedule_reconnect(i);
    }

    /// Drains after a link is gone: client transmits have nowhere to go.
    fn drain_without_link(&mut self, i: usize) {
        while let Some(out) = self.peers[i].client.poll_output() {
            match out {
                ClientOutput::Event(e) => self.peers[i].events.push(e),
                ClientOutput::Persist(r) => self.peers[i].store.apply(&r),
                _ => {}
            }
        }
        self.drain();
    }

    /// Client `i`'s process dies: the first `deliver` bytes it had sent still reach the broker
    /// (a packet may be cut), nothing reaches it any more, the broker sees the connection
    /// close; then a new process restores the client from what its host stored, with the same
    /// configuration (not connected yet).
    pub fn crash_and_restore(&mut self, i: usize, deliver: usize) {
        if let Some(mut link) = self.peers[i].link.take() {
            let now = self.now;
            let up: Vec<u8> = link
                .up
                .chunks
                .iter()
                .flat_map(|(_, b)| b.to_vec())
                .collect();
            let up = &up[..deliver.min(up.len())];
            if !up.is_empty() {
                sniff(&mut link.sniff_up, up, link.number, &mut self.peers[i].sent);
                self.broker.handle_bytes(link.conn, up, now);
            }
            self.broker.handle_connection_closed(link.conn, now);
        }
        let config = self.peers[i].client.config().clone();
        let records = self.peers[i].store.records();
        self.peers[i].client = Client::restore(config, records).expect("the store restores");
        self.peers[i].reconnect_at = None;
        self.drain();
    }
}

fn sniff(
    sniffer: &mut (Decoder, BytesMut),
    data: &[u8],
    number: usize,
    log: &mut Vec<(usize, Packet)>,
) {
    let (decoder, buf) = sniffer;
    buf.extend_from_slice(data);
    while let Ok(Some(p)) = decoder.decode(buf) {
        log.push((number, p));
    }
}

/// A QoS `qos` message (not retained, no properties).
pub fn message(topic: &str, payload: &[u8], qos: QoS) -> Publish {
    let mut p = Publish::new(
        TopicName::try_from(topic).unwrap(),
        Bytes::copy_from_slice(payload),
    );
    p.qos = qos;
    p
}

/// A client configuration: `version`, `id`, Keep Alive 0 (tests that want pings set it).
pub fn config(version: ProtocolVersion, id: &str) -> ClientConfig {
    let mut c = ClientConfig::new(version, id);
    c.keep_alive = 0;
    c
}

/// A configuration for a persistent session: Clean Start 0 on reconnection (5.0: Session
/// Expiry one hour; 3.1.1: Clean Session 0).
pub fn persistent(version: ProtocolVersion, id: &str) -> ClientConfig {
    let mut c = config(version, id);
    if version.is_v5() {
        c.session_expiry_interval = 3600;
    } else {
        c.clean_start = false;
    }
    c
}

/// The PUBLISH packets among `packets`.
pub fn publishes(packets: &[Packet]) -> Vec<Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// The payloads of `messages`, as strings.
pub fn payloads(messages: &[Publish]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

// ---- a client whose server is the test ------------------------------------------------------

/// One client engine, driven directly: the test plays the server.
pub struct Scripted {
    pub client: Client,
    pub version: ProtocolVersion,
    pub now: Timestamp,
    /// The client asked to close the transport.
    pub closed: bool,
    decoder: Decoder,
    buf: BytesMut,
    events: Vec<ClientEvent>,
    sent: Vec<Packet>,
    /// What the host stored (`ClientConfig::persist`).
    pub store: Store,
}

impl Scripted {
    pub fn new(config: ClientConfig) -> Self {
        let version = config.protocol;
        Self {
            client: Client::new(config).expect("valid client configuration"),
            version,
            now: Timestamp::from_secs(1_000_000),
            closed: false,
            decoder: Decoder::new(),
            buf: BytesMut::new(),
            events: Vec::new(),
            sent: Vec::new(),
            store: Store::default(),
        }
    }

    /// Opens a transport; returns the CONNECT.
    pub fn connect(&mut self) -> Packet {
        self.closed = false;
        self.decoder = Decoder::new();
        self.buf.clear();
        self.client.handle_connected(self.now);
        self.drain();
        let sent = self.take_sent();
        assert_eq!(sent.len(), 1, "one CONNECT: {sent:?}");
        sent.into_iter().next().unwrap()
    }

    /// Opens a transport and answers its CONNECT with CONNACK 0x00 and `session_present`.
    pub fn connect_accepted(&mut self, session_present: bool) {
        self.connect();
        let mut ack = mqtt_session::codec::ConnAck::new(
            session_present,
            mqtt_session::codec::ReasonCode::SUCCESS,
        );
        if self.version.is_v5() && self.client.client_id().is_empty() {
            ack.properties
                .set_assigned_client_identifier(Some("assigned-1".try_into().unwrap()));
        }
        self.server_sends(ack);
    }

    /// The server sends `packet`.
    pub fn server_sends(&mut self, packet: impl Into<Packet>) {
        let mut buf = BytesMut::new();
        packet
            .into()
            .encode(self.version, &mut buf)
            .expect("test packet encodes");
        self.server_sends_bytes(&buf);
    }

    /// The server sends raw bytes.
    pub fn server_sends_bytes(&mut self, bytes: &[u8]) {
        self.client.handle_bytes(bytes, self.now);
        self.drain();
    }

    /// The transport fails.
    pub fn transport_lost(&mut self) {
        self.client.handle_disconnected(self.now);
        self.drain();
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
        self.client.handle_timeout(self.now);
        self.drain();
    }

    /// Runs a command.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Client, Timestamp) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.client, now);
        self.drain();
        r
    }

    fn drain(&mut self) {
        while let Some(out) = self.client.poll_output() {
            match out {
                ClientOutput::TransmitReady => {
                    while let Some(data) = self.client.poll_transmit(usize::MAX, self.now) {
                        assert!(!data.is_empty(), "empty transmit");
                        assert!(!self.closed, "transmit after close");
                        self.receive_from_client(&data);
                    }
                }
                ClientOutput::Close { farewell } => {
                    self.receive_from_client(&farewell);
                    self.closed = true;
                }
                ClientOutput::Event(e) => self.events.push(e),
                ClientOutput::Persist(r) => self.store.apply(&r),
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    /// Decodes what the client wrote.
    fn receive_from_client(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        while let Some(p) = self
            .decoder
            .decode(&mut self.buf)
            .expect("the client sends valid packets")
        {
            self.sent.push(p);
        }
    }

    /// The packets the client sent since the last call.
    pub fn take_sent(&mut self) -> Vec<Packet> {
        std::mem::take(&mut self.sent)
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }
}
