//! Criterion benchmarks of the `mqtt-session` engines: the broker's routing, topic matching,
//! memory and session resume, and the client's per-message cost. Run with
//! `cargo bench -p benches --bench engine` (add `-- --quick`, or a filter such as
//! `-- route/fanout`). Allocation counts and memory sizes, which criterion does not measure,
//! are written to `target/criterion/extra/engine.json` (see `benches/src/lib.rs`).
//!
//! Every broker here is driven as a host would drive it, on one thread and with a fixed clock:
//! bytes go in with `handle_bytes`, then `poll_output` is drained until `None` inside the
//! timed region. Each `Transmit` is counted and dropped (a host would write it to a socket:
//! that cost is not included, the cost of taking the output is), `Persist` records are
//! counted and dropped. Every timed loop checks afterwards (untimed) that it made exactly the
//! number of deliveries expected, so a change in the engine cannot make a benchmark silently
//! measure less work.
//!
//! # Fixtures
//!
//! A routing fixture is a broker (`BrokerConfig::default()` with `max_inflight` and
//! `receive_maximum` 65 535 and no connect timeout), one publishing connection `pub`, and N
//! MQTT 5.0 sessions `s{i}` (Clean Start, Session Expiry 0, Keep Alive 0, Receive Maximum
//! 65 535), connected and subscribed at QoS 1 with SUBSCRIBE packets of up to 100 filters.
//! The S subscriptions are grouped in *cells*; cell `u` has the topic `t/{a}/{b}/{u}` with
//! `a = (u / 10) % 100` and `b = (u / 1000) % 100`, and its subscriptions use one of three
//! filters: exact `t/{a}/{b}/{u}`, single-level `t/{a}/+/{u}`, multi-level `t/{a}/{b}/{u}/#`.
//! The topic of cell `u` is matched by the subscriptions of cell `u` and by no other, so the
//! number of matches is known:
//! - *hot* cells (the first H = max(1, S / 1000) cells) have k = 100 subscriptions each, from
//!   100 distinct sessions: 60 exact, 30 `+`, 10 `#` (10 % of S);
//! - *cold* cells (the rest) have one subscription each, exact, `+` or `#` as `u % 10` is
//!   0..=5, 6..=8 or 9 (60/30/10 %).
//!
//! Subscription number `j` (hot cells first) belongs to session `j % N`, so every session has
//! S / N of them. A walk of the trie for `t/a/b/u` follows `t`, `a`, then both `b` and `+`,
//! then `u`: the exact and `+` branches are taken at every size. The topics published are
//! pre-encoded PUBLISH packets (32-byte payload) cycled from a fixed list: up to 1024 hot
//! cells (k = 100), 1024 cold cells spread over all of them (k = 1), or 1024 topics
//! `t/{a}/{b}/n{u}` that walk the same nodes and match nothing (k = 0).
//!
//! # Measurements
//!
//! - `route/sessions/{qos0-k1,qos0-k100,qos1-k100}/N`: N = 1 000, 10 000, 100 000 sessions
//!   with 10 subscriptions each (S = 10 N). One iteration: `pub` sends one PUBLISH matching k
//!   subscriptions (k sessions), and every output is drained. QoS 1: the publisher's PUBLISH
//!   has QoS 1 (the broker answers PUBACK to it), the k deliveries are QoS 1, and the k
//!   PUBACKs of the subscribers are fed back **inside the timed region** (one 4-byte
//!   `handle_bytes` per subscriber, the packet identifier read from the transmitted bytes), so
//!   the in-flight window never fills and a QoS 1 delivery includes its acknowledgement.
//!   Throughput is in deliveries (k per iteration), so criterion prints deliveries/s; the
//!   extras add `publishes_per_s` (iterations / timed seconds over every iteration criterion
//!   ran, warm-up included).
//! - `route/subscriptions/{qos0-k100,qos1-k100}/S`: the same over N = 1 000 sessions with
//!   S = 1 000 to 1 000 000 subscriptions (1 to 1 000 per session).
//! - `match/subscriptions/{one,none}/S`: on the same fixtures, the time of one QoS 0 publish
//!   whose topic matches exactly one subscription (decode, authorize, match, one delivery
//!   encoded and output) or none (decode, authorize, match). Flat in S is the goal.
//! - `match/tree/{one,none}/S`: `topic_tree::SubscriptionTree::for_each_match` alone, on a tree
//!   of S cold cells (`u32` keys), for a topic matching one filter or none.
//! - `route/fanout/{qos0,qos1}/n`: one hot cell subscribed by n = 1 to 10 000 sessions (the
//!   60/30/10 mix of filters; exact for n = 1); n deliveries per publish, acknowledged as in
//!   `route/sessions`. The headline is deliveries/s. The extras add the allocations per
//!   publish and `allocs_per_delivery` at n = 1 000 (over 200 publishes).
//! - `resume/queued_10k/{connect,connect_ack}`: a durable session (Session Expiry 3 600,
//!   subscribed at QoS 1 to `r/t`) is disconnected and 10 000 QoS 1 messages are published
//!   to it (untimed: a fresh broker per iteration, `iter_custom`). Timed: the reconnect (new
//!   connection, CONNECT with Clean Start 0 and Receive Maximum 65 535) and draining every
//!   output: the CONNACK and the 10 000 PUBLISH packets (all in flight at once), each after
//!   its `Persist(Sent)` record. `connect_ack` also feeds the 10 000 PUBACKs back, 1 024 per
//!   `handle_bytes`, and drains the `Persist(Delivered)` records. The extras give the setup
//!   time and the number of records and transmits per resume.
//! - `client/{publish_qos0,publish_qos1,receive_qos0,receive_qos1}`: a connected MQTT 5.0
//!   `Client`. `publish_qos0`: `publish` (a `Publish` built from a cloned topic and payload)
//!   and drain (one Transmit). `publish_qos1`: the same, then the PUBACK bytes fed to
//!   `handle_bytes` and the `Published` event drained. `receive_qos0`: a pre-encoded PUBLISH
//!   fed to `handle_bytes` and the `Message` event drained; `receive_qos1` also drains the
//!   PUBACK Transmit. The extras give allocations per message (10 000 messages).
//! - `memory/…` (extras only, recorded while the `route/sessions` and `route/subscriptions`
//!   fixtures are built, so only when one of their benchmarks runs): heap bytes still held
//!   after connecting the N sessions (`bytes_per_session`, `allocs_per_session`; connection
//!   and session state, CONNACK drained), and after adding the S subscriptions
//!   (`bytes_per_subscription`, `allocs_per_subscription`; trie nodes and the session's
//!   copy), counted by the global allocator around the broker calls only (packets are encoded
//!   outside). `memory/queued-10k` `bytes_per_queued_message`: held after publishing the
//!   10 000 messages of the resume fixture to the offline session.
//! - `setup/…` `seconds`: wall time to build each fixture (also printed with its sizes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    // A benchmark measures wall-clock time (the engines themselves never read a clock).
    clippy::disallowed_methods
)]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use benches::{AllocStats, Counting, Extras, Region, count_allocs};
use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use mqtt_session::Timestamp;
use mqtt_session::broker::{Broker, BrokerConfig, ConnectionId, Output};
use mqtt_session::client::{Client, ClientConfig, ClientEvent, ClientOutput};
use mqtt_session::codec::{
    ConnAck, Connect, Decoder, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName, Utf8String,
};
use mqtt_session::topic_tree::SubscriptionTree;

#[global_allocator]
static GLOBAL: &Counting = &benches::INSTRUMENTED_SYSTEM;

const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);
const PAYLOAD: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
/// Subscriptions per hot cell.
const HOT_K: usize = 100;
/// Filters per SUBSCRIBE packet in the setups.
const FILTERS_PER_SUBSCRIBE: usize = 100;
/// Topics in each probe list.
const PROBES: usize = 1024;

// ---- packets -------------------------------------------------------------------------------

fn encode(packet: impl Into<Packet>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet
        .into()
        .encode(ProtocolVersion::V5, &mut buf)
        .expect("bench packet encodes");
    buf.to_vec()
}

fn connect_packet(client_id: &str, clean_start: bool, expiry: Option<u32>) -> Vec<u8> {
    let mut c = Connect::new(
        ProtocolVersion::V5,
        Utf8String::try_from(client_id).unwrap(),
    );
    c.clean_start = clean_start;
    c.keep_alive = 0;
    c.properties.session_expiry_interval = expiry;
    c.properties.receive_maximum = NonZeroU16::new(u16::MAX);
    encode(c)
}

fn subscribe_packet(id: u16, filters: &[String]) -> Vec<u8> {
    encode(Subscribe {
        packet_id: PacketId::new(id).unwrap(),
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|f| {
                (
                    TopicFilter::try_from(f.as_str()).unwrap(),
                    SubscriptionOptions::qos(QoS::AtLeastOnce),
                )
            })
            .collect(),
    })
}

fn publish_packet(topic: &str, qos: QoS) -> Vec<u8> {
    let mut p = Publish::new(TopicName::try_from(topic).unwrap(), &PAYLOAD[..]);
    p.qos = qos;
    p.packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        PacketId::new(1)
    };
    encode(p)
}

fn puback(id: u16) -> [u8; 4] {
    let [hi, lo] = id.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

/// Calls `f` with the Packet Identifier of every QoS 1/2 PUBLISH in `data` (whole packets,
/// as the broker transmits them; no Topic Alias is in use here).
fn for_each_publish_id(data: &[u8], mut f: impl FnMut(u16)) {
    let mut i = 0;
    while i < data.len() {
        let first = data[i];
        let (mut len, mut shift, mut j) = (0usize, 0u32, i + 1);
        loop {
            let b = data[j];
            len |= usize::from(b & 0x7F) << shift;
            shift += 7;
            j += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if first >> 4 == 3 && (first >> 1) & 0x03 != 0 {
            let topic_len = usize::from(u16::from_be_bytes([data[j], data[j + 1]]));
            let at = j + 2 + topic_len;
            f(u16::from_be_bytes([data[at], data[at + 1]]));
        }
        i = j + len;
    }
}

// ---- the cells of subscriptions ------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Family {
    Exact,
    Plus,
    Hash,
}

fn family(x: usize) -> Family {
    match x % 10 {
        0..=5 => Family::Exact,
        6..=8 => Family::Plus,
        _ => Family::Hash,
    }
}

fn levels(u: usize) -> (usize, usize) {
    ((u / 10) % 100, (u / 1000) % 100)
}

fn cell_topic(u: usize) -> String {
    let (a, b) = levels(u);
    format!("t/{a}/{b}/{u}")
}

fn miss_topic(u: usize) -> String {
    let (a, b) = levels(u);
    format!("t/{a}/{b}/n{u}")
}

fn cell_filter(u: usize, f: Family) -> String {
    let (a, b) = levels(u);
    match f {
        Family::Exact => format!("t/{a}/{b}/{u}"),
        Family::Plus => format!("t/{a}/+/{u}"),
        Family::Hash => format!("t/{a}/{b}/{u}/#"),
    }
}

/// The shape of a routing fixture.
#[derive(Debug, Clone, Copy)]
struct Spec {
    sessions: usize,
    hot_cells: usize,
    hot_k: usize,
    cold_cells: usize,
}

impl Spec {
    /// N sessions and S subscriptions: 10 % of them in hot cells of 100.
    fn mixed(sessions: usize, subscriptions: usize) -> Self {
        let hot_cells = (subscriptions / 1000).max(1);
        Self {
            sessions,
            hot_cells,
            hot_k: HOT_K,
            cold_cells: subscriptions - hot_cells * HOT_K,
        }
    }

    /// One topic subscribed by `n` sessions.
    fn fanout(n: usize) -> Self {
        Self {
            sessions: n,
            hot_cells: 1,
            hot_k: n,
            cold_cells: 0,
        }
    }

    fn subscriptions(&self) -> usize {
        self.hot_cells * self.hot_k + self.cold_cells
    }

    /// The filter of subscription number `j`.
    fn filter(&self, j: usize) -> String {
        let hot = self.hot_cells * self.hot_k;
        if j < hot {
            cell_filter(j / self.hot_k, family(j % self.hot_k))
        } else {
            let u = self.hot_cells + (j - hot);
            cell_filter(u, family(u))
        }
    }

    /// Up to `PROBES` cells of `count` starting at `first`, spread evenly.
    fn spread(first: usize, count: usize) -> Vec<usize> {
        let n = count.min(PROBES);
        (0..n).map(|i| first + i * count / n).collect()
    }

    fn hot_probes(&self) -> Vec<usize> {
        Self::spread(0, self.hot_cells)
    }

    fn cold_probes(&self) -> Vec<usize> {
        Self::spread(self.hot_cells, self.cold_cells)
    }
}

// ---- driving a broker ------------------------------------------------------------------------

fn broker_config() -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.max_inflight = u16::MAX;
    c.receive_maximum = u16::MAX;
    c.connect_timeout = None;
    c.max_queued_messages = 100_000;
    c
}

/// Drains every output as a host that commits every record at once and pulls every byte:
/// `sent` sees each pulled chunk (and each farewell) with its connection, `persisted` each
/// record.
fn drain_with(
    broker: &mut Broker,
    mut sent: impl FnMut(ConnectionId, &Bytes),
    mut persisted: impl FnMut(),
) {
    while let Some(out) = broker.poll_output() {
        match out {
            Output::Persist { seq, .. } => {
                persisted();
                broker.handle_committed(seq);
            }
            Output::TransmitReady { connection } => {
                while let Some(data) = broker.poll_transmit(connection, usize::MAX, NOW) {
                    sent(connection, &data);
                }
            }
            Output::Close {
                connection,
                farewell,
            } if !farewell.is_empty() => sent(connection, &farewell),
            other => {
                black_box(&other);
            }
        }
    }
}

/// Drains every output, dropping the bytes.
fn drain(broker: &mut Broker) {
    drain_with(
        broker,
        |_, data| {
            black_box(data);
        },
        || {},
    );
}

/// Drains every output; returns the transmits (pulled chunks) to connections other than
/// `publisher`.
fn drain_deliveries(broker: &mut Broker, publisher: ConnectionId) -> usize {
    let mut n = 0;
    drain_with(
        broker,
        |connection, data| {
            if connection != publisher {
                n += 1;
                black_box(data);
            }
        },
        || {},
    );
    n
}

/// Drains every output, collecting the Packet Identifiers of the QoS 1/2 PUBLISH packets sent
/// to connections other than `publisher`.
fn drain_acks(broker: &mut Broker, publisher: ConnectionId, acks: &mut Vec<(ConnectionId, u16)>) {
    drain_with(
        broker,
        |connection, data| {
            if connection != publisher {
                for_each_publish_id(data, |id| acks.push((connection, id)));
            }
        },
        || {},
    );
}

/// Sends one PUBLISH from `publisher` and drains; QoS 1 (`ack`): the PUBACK of every delivery
/// is fed back and drained too. Returns the deliveries.
fn route_once(
    broker: &mut Broker,
    publisher: ConnectionId,
    publish: &[u8],
    ack: bool,
    acks: &mut Vec<(ConnectionId, u16)>,
) -> usize {
    broker.handle_bytes(publisher, publish, NOW);
    if !ack {
        return drain_deliveries(broker, publisher);
    }
    drain_acks(broker, publisher, acks);
    let n = acks.len();
    for (c, id) in acks.drain(..) {
        broker.handle_bytes(c, &puback(id), NOW);
        drain(broker);
    }
    n
}

/// Heap use summed over measured calls.
#[derive(Debug, Default, Clone, Copy)]
struct Meter {
    allocs: usize,
    net: i64,
}

impl Meter {
    /// Runs `f`, adding what it allocated and what it still holds. `f` returns nothing, so
    /// what it allocated and dropped nets to zero.
    fn run(&mut self, f: impl FnOnce()) {
        let region = Region::new(GLOBAL);
        f();
        let c = region.change();
        self.allocs += c.allocations + c.reallocations;
        // `bytes_allocated` and `bytes_deallocated` already count the growth and shrinking of
        // reallocations (stats_alloc adds them to both those and `bytes_reallocated`).
        self.net += c.bytes_allocated as i64 - c.bytes_deallocated as i64;
    }

    fn per(self, n: usize) -> (f64, f64) {
        let n = n.max(1) as f64;
        (self.allocs as f64 / n, self.net as f64 / n)
    }
}

struct Routing {
    broker: Broker,
    publisher: ConnectionId,
    spec: Spec,
    /// Heap held per session after connecting them: (allocs, bytes).
    per_session: (f64, f64),
    /// Heap held per subscription after subscribing: (allocs, bytes).
    per_subscription: (f64, f64),
    setup: Duration,
    /// Where the next publish of each probe list starts (varies across calls).
    cursor: usize,
}

impl Routing {
    fn build(spec: Spec, name: &str) -> Self {
        let start = Instant::now();
        let mut broker = Broker::new(broker_config());
        let mut conns = Vec::with_capacity(spec.sessions);
        let mut sessions = Meter::default();
        for i in 0..spec.sessions {
            let connect = connect_packet(&format!("s{i}"), true, None);
            let mut conn = ConnectionId(0);
            sessions.run(|| {
                conn = broker.handle_connection_opened(NOW);
                broker.handle_bytes(conn, &connect, NOW);
                drain(&mut broker);
            });
            conns.push(conn);
        }
        assert_eq!(broker.connection_count(), spec.sessions);
        let mut subs = Meter::default();
        let total = spec.subscriptions();
        let mut filters = Vec::with_capacity(FILTERS_PER_SUBSCRIBE);
        for (i, &conn) in conns.iter().enumerate() {
            let mut packet_id = 1;
            let mut j = i;
            loop {
                filters.clear();
                while j < total && filters.len() < FILTERS_PER_SUBSCRIBE {
                    filters.push(spec.filter(j));
                    j += spec.sessions;
                }
                if filters.is_empty() {
                    break;
                }
                let packet = subscribe_packet(packet_id, &filters);
                packet_id += 1;
                subs.run(|| {
                    broker.handle_bytes(conn, &packet, NOW);
                    drain(&mut broker);
                });
            }
        }
        assert_eq!(broker.subscription_count(), total);
        let publisher = broker.handle_connection_opened(NOW);
        broker.handle_bytes(publisher, &connect_packet("pub", true, None), NOW);
        drain(&mut broker);
        let setup = start.elapsed();
        println!(
            "setup {name}: {} sessions, {} subscriptions ({} hot cells of {}, {} cold) in {:.2} s",
            spec.sessions,
            total,
            spec.hot_cells,
            spec.hot_k,
            spec.cold_cells,
            setup.as_secs_f64()
        );
        Self {
            broker,
            publisher,
            spec,
            per_session: sessions.per(spec.sessions),
            per_subscription: subs.per(total),
            setup,
            cursor: 0,
        }
    }

    fn record_setup(&self, extras: &mut Out, name: &str) {
        extras.record("setup", name, "seconds", self.setup.as_secs_f64());
        let n = self.spec.sessions;
        let s = self.spec.subscriptions();
        let id = format!("sessions-{n}");
        extras.record("memory", &id, "allocs_per_session", self.per_session.0);
        extras.record("memory", &id, "bytes_per_session", self.per_session.1);
        let id = format!("subscriptions-{s}-sessions-{n}");
        extras.record(
            "memory",
            &id,
            "allocs_per_subscription",
            self.per_subscription.0,
        );
        extras.record(
            "memory",
            &id,
            "bytes_per_subscription",
            self.per_subscription.1,
        );
    }
}

/// The extras, recording each (group, id, metric) once: fixtures of the same shape appear in
/// several groups.
struct Out {
    extras: Extras,
    seen: BTreeSet<(String, String, String)>,
}

impl Out {
    fn record(&mut self, group: &str, id: &str, metric: &str, value: f64) {
        let key = (group.to_owned(), id.to_owned(), metric.to_owned());
        if self.seen.insert(key) {
            self.extras.record(group, id, metric, value);
        }
    }

    fn record_allocs(&mut self, group: &str, id: &str, stats: AllocStats) {
        self.record(group, id, "allocs", stats.allocs);
        self.record(group, id, "alloc_bytes", stats.bytes);
        self.record(group, id, "retained_bytes", stats.retained);
    }
}

/// Pre-encoded PUBLISH packets, and the deliveries each one makes.
type Probes = (Vec<Vec<u8>>, usize);

/// The pre-encoded PUBLISH packets of a list of topics.
fn probe_packets(topics: impl IntoIterator<Item = String>, qos: QoS) -> Vec<Vec<u8>> {
    topics
        .into_iter()
        .map(|t| publish_packet(&t, qos))
        .collect()
}

/// Publishes/s over every iteration criterion ran.
#[derive(Debug, Default)]
struct Rate {
    iters: u64,
    time: Duration,
}

impl Rate {
    fn record(&self, extras: &mut Out, group: &str, id: &str) {
        if self.iters > 0 {
            extras.record(
                group,
                id,
                "publishes_per_s",
                self.iters as f64 / self.time.as_secs_f64(),
            );
        }
    }
}

/// One routing benchmark: `iters` publishes cycled from `probes`, each expected to make
/// `expect` deliveries.
fn bench_route(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    fixture: &mut Option<Routing>,
    build: &dyn Fn() -> Routing,
    probes: &dyn Fn(&Routing) -> Probes,
    ack: bool,
) -> Rate {
    let mut rate = Rate::default();
    let mut list: Option<Probes> = None;
    group.bench_function(id, |b| {
        let fx = fixture.get_or_insert_with(build);
        let (packets, expect) = list.get_or_insert_with(|| probes(fx));
        let mut acks = Vec::with_capacity(*expect);
        b.iter_custom(|iters| {
            let mut delivered = 0;
            let start = Instant::now();
            for _ in 0..iters {
                let p = &packets[fx.cursor % packets.len()];
                fx.cursor = fx.cursor.wrapping_add(1);
                delivered += route_once(&mut fx.broker, fx.publisher, p, ack, &mut acks);
            }
            let elapsed = start.elapsed();
            assert_eq!(delivered as u64, *expect as u64 * iters, "deliveries");
            rate.iters += iters;
            rate.time += elapsed;
            elapsed
        });
    });
    rate
}

fn kilo(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

// ---- the benchmark groups --------------------------------------------------------------------

fn hot(fx: &Routing, qos: QoS) -> Probes {
    let topics = fx.spec.hot_probes().into_iter().map(cell_topic);
    (probe_packets(topics, qos), fx.spec.hot_k)
}

fn cold(fx: &Routing) -> Probes {
    let topics = fx.spec.cold_probes().into_iter().map(cell_topic);
    (probe_packets(topics, QoS::AtMostOnce), 1)
}

fn none(fx: &Routing) -> Probes {
    let s = fx.spec;
    let topics = Spec::spread(0, s.hot_cells + s.cold_cells)
        .into_iter()
        .map(miss_topic);
    (probe_packets(topics, QoS::AtMostOnce), 0)
}

fn route_sessions(c: &mut Criterion, extras: &mut Out) {
    for n in [1_000, 10_000, 100_000] {
        let spec = Spec::mixed(n, 10 * n);
        let name = format!("route-sessions-{}", kilo(n));
        let build = || Routing::build(spec, &name);
        let mut fixture = None;
        let mut group = c.benchmark_group("route/sessions");
        group.throughput(Throughput::Elements(1));
        let id = BenchmarkId::new("qos0-k1", n);
        let r = bench_route(&mut group, id, &mut fixture, &build, &cold, false);
        r.record(extras, "route/sessions", &format!("qos0-k1/{n}"));
        group.throughput(Throughput::Elements(HOT_K as u64));
        let id = BenchmarkId::new("qos0-k100", n);
        let probes = |fx: &Routing| hot(fx, QoS::AtMostOnce);
        let r = bench_route(&mut group, id, &mut fixture, &build, &probes, false);
        r.record(extras, "route/sessions", &format!("qos0-k100/{n}"));
        let id = BenchmarkId::new("qos1-k100", n);
        let probes = |fx: &Routing| hot(fx, QoS::AtLeastOnce);
        let r = bench_route(&mut group, id, &mut fixture, &build, &probes, true);
        r.record(extras, "route/sessions", &format!("qos1-k100/{n}"));
        group.finish();
        if let Some(fx) = &fixture {
            fx.record_setup(extras, &name);
        }
    }
}

fn route_subscriptions(c: &mut Criterion, extras: &mut Out) {
    let n = 1_000;
    for s in [1_000, 10_000, 100_000, 1_000_000] {
        let spec = Spec::mixed(n, s);
        let name = format!("route-subscriptions-{}", kilo(s));
        let build = || Routing::build(spec, &name);
        let mut fixture = None;

        let mut group = c.benchmark_group("route/subscriptions");
        group.throughput(Throughput::Elements(HOT_K as u64));
        let id = BenchmarkId::new("qos0-k100", s);
        let probes = |fx: &Routing| hot(fx, QoS::AtMostOnce);
        let r = bench_route(&mut group, id, &mut fixture, &build, &probes, false);
        r.record(extras, "route/subscriptions", &format!("qos0-k100/{s}"));
        let id = BenchmarkId::new("qos1-k100", s);
        let probes = |fx: &Routing| hot(fx, QoS::AtLeastOnce);
        let r = bench_route(&mut group, id, &mut fixture, &build, &probes, true);
        r.record(extras, "route/subscriptions", &format!("qos1-k100/{s}"));
        group.finish();

        let mut group = c.benchmark_group("match/subscriptions");
        let id = BenchmarkId::new("one", s);
        bench_route(&mut group, id, &mut fixture, &build, &cold, false);
        let id = BenchmarkId::new("none", s);
        bench_route(&mut group, id, &mut fixture, &build, &none, false);
        group.finish();
        if let Some(fx) = &fixture {
            fx.record_setup(extras, &name);
        }
    }
}

fn route_fanout(c: &mut Criterion, extras: &mut Out) {
    for n in [1, 10, 100, 1_000, 10_000] {
        let spec = Spec::fanout(n);
        let name = format!("route-fanout-{}", kilo(n));
        let build = || Routing::build(spec, &name);
        let mut fixture = None;
        let mut group = c.benchmark_group("route/fanout");
        group.throughput(Throughput::Elements(n as u64));
        if n >= 10_000 {
            // 5 to 25 ms per publish: as many iterations in every sample.
            group.sampling_mode(SamplingMode::Flat);
        }
        for (label, qos) in [("qos0", QoS::AtMostOnce), ("qos1", QoS::AtLeastOnce)] {
            let id = BenchmarkId::new(label, n);
            let probes = |fx: &Routing| hot(fx, qos);
            let ack = qos != QoS::AtMostOnce;
            let r = bench_route(&mut group, id, &mut fixture, &build, &probes, ack);
            r.record(extras, "route/fanout", &format!("{label}/{n}"));
        }
        group.finish();
        if let Some(fx) = &mut fixture {
            extras.record("setup", &name, "seconds", fx.setup.as_secs_f64());
            if n == 1_000 {
                for (label, qos) in [("qos0", QoS::AtMostOnce), ("qos1", QoS::AtLeastOnce)] {
                    let (packets, expect) = hot(fx, qos);
                    let ack = qos != QoS::AtMostOnce;
                    let mut acks = Vec::with_capacity(expect);
                    let (broker, publisher) = (&mut fx.broker, fx.publisher);
                    let publishes = 200;
                    let stats = count_allocs(GLOBAL, publishes, |i| {
                        route_once(
                            broker,
                            publisher,
                            &packets[i % packets.len()],
                            ack,
                            &mut acks,
                        )
                    });
                    let id = format!("{label}/{n}");
                    extras.record_allocs("route/fanout", &id, stats);
                    let per_delivery = stats.allocs / expect as f64;
                    extras.record("route/fanout", &id, "allocs_per_delivery", per_delivery);
                }
            }
        }
    }
}

fn match_tree(c: &mut Criterion) {
    for s in [1_000, 10_000, 100_000, 1_000_000] {
        // The tree, the topics matching one filter, the topics matching none.
        type Fixture = (SubscriptionTree<u32, u8>, Vec<String>, Vec<String>);
        let mut tree: Option<Fixture> = None;
        let build = || {
            let start = Instant::now();
            let mut t = SubscriptionTree::new();
            for u in 0..s {
                t.insert(&cell_filter(u, family(u)), u as u32, 1);
            }
            let cells = Spec::spread(0, s);
            let hits = cells.iter().map(|&u| cell_topic(u)).collect();
            let misses = cells.iter().map(|&u| miss_topic(u)).collect();
            println!(
                "setup match-tree-{}: {} filters in {:.2} s",
                kilo(s),
                t.len(),
                start.elapsed().as_secs_f64()
            );
            (t, hits, misses)
        };
        let mut group = c.benchmark_group("match/tree");
        for (label, expect) in [("one", 1), ("none", 0)] {
            group.bench_function(BenchmarkId::new(label, s), |b| {
                let (tree, hits, misses) = tree.get_or_insert_with(build);
                let topics = if expect == 1 { &*hits } else { &*misses };
                let mut i = 0;
                b.iter(|| {
                    let topic = &topics[i % topics.len()];
                    i += 1;
                    let mut matched = 0;
                    tree.for_each_match(topic, |_, key, _| {
                        black_box(key);
                        matched += 1;
                    });
                    assert_eq!(matched, expect);
                });
            });
        }
        group.finish();
    }
}

// ---- resume ----------------------------------------------------------------------------------

const QUEUED: usize = 10_000;

/// A broker holding `QUEUED` QoS 1 messages for the offline durable session `r`.
struct Queued {
    broker: Broker,
    reconnect: Vec<u8>,
    setup: Duration,
    /// Heap held per queued message.
    per_message: f64,
}

fn queued_fixture() -> Queued {
    let start = Instant::now();
    let mut broker = Broker::new(broker_config());
    let sub = broker.handle_connection_opened(NOW);
    broker.handle_bytes(sub, &connect_packet("r", true, Some(3600)), NOW);
    broker.handle_bytes(sub, &subscribe_packet(1, &["r/t".to_owned()]), NOW);
    broker.handle_connection_closed(sub, NOW);
    drain(&mut broker);
    let publisher = broker.handle_connection_opened(NOW);
    broker.handle_bytes(publisher, &connect_packet("p", true, None), NOW);
    drain(&mut broker);
    let publish = publish_packet("r/t", QoS::AtLeastOnce);
    let mut meter = Meter::default();
    meter.run(|| {
        for _ in 0..QUEUED {
            broker.handle_bytes(publisher, &publish, NOW);
            drain(&mut broker);
        }
    });
    assert_eq!(broker.pending_messages("r"), QUEUED);
    assert!(!broker.is_connected("r"));
    Queued {
        broker,
        reconnect: connect_packet("r", false, Some(3600)),
        setup: start.elapsed(),
        per_message: meter.per(QUEUED).1,
    }
}

/// What a resume output: (persist records, transmits, bytes transmitted).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ResumeCounts {
    persists: usize,
    transmits: usize,
    bytes: usize,
    acked: usize,
}

/// The timed part: reconnect `r`, drain; with `ack`, PUBACK everything and drain.
fn resume(q: &mut Queued, ack: bool, ids: &mut Vec<u16>, acks: &mut Vec<u8>) -> ResumeCounts {
    let mut counts = ResumeCounts::default();
    let conn = q.broker.handle_connection_opened(NOW);
    q.broker.handle_bytes(conn, &q.reconnect, NOW);
    let mut persists = 0;
    drain_with(
        &mut q.broker,
        |_, data| {
            counts.transmits += 1;
            counts.bytes += data.len();
            if ack {
                for_each_publish_id(data, |id| ids.push(id));
            }
        },
        || persists += 1,
    );
    counts.persists += persists;
    if ack {
        counts.acked = ids.len();
        for chunk in ids.chunks(1024) {
            acks.clear();
            for &id in chunk {
                acks.extend_from_slice(&puback(id));
            }
            q.broker.handle_bytes(conn, acks, NOW);
            let mut persists = 0;
            drain_with(
                &mut q.broker,
                |_, data| {
                    black_box(data);
                },
                || persists += 1,
            );
            counts.persists += persists;
        }
        ids.clear();
    }
    counts
}

fn resume_benches(c: &mut Criterion, extras: &mut Out) {
    let mut group = c.benchmark_group("resume/queued_10k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);
    for (label, ack) in [("connect", false), ("connect_ack", true)] {
        let mut setups = Duration::ZERO;
        let mut runs = 0u32;
        let mut seen: Option<ResumeCounts> = None;
        group.bench_function(label, |b| {
            let mut ids = Vec::with_capacity(QUEUED);
            let mut acks = Vec::with_capacity(4 * 1024);
            if seen.is_none() {
                // Once, untimed: check that the resume sends every message, by decoding it.
                let mut q = queued_fixture();
                extras.record(
                    "memory",
                    "queued-10k",
                    "bytes_per_queued_message",
                    q.per_message,
                );
                let conn = q.broker.handle_connection_opened(NOW);
                q.broker.handle_bytes(conn, &q.reconnect, NOW);
                let mut wire = BytesMut::new();
                drain_with(&mut q.broker, |_, data| wire.extend_from_slice(data), || {});
                let mut decoder = Decoder::with_version(ProtocolVersion::V5);
                let mut publishes = 0;
                while let Some(p) = decoder.decode(&mut wire).unwrap() {
                    publishes += usize::from(matches!(p, Packet::Publish(_)));
                }
                assert_eq!(publishes, QUEUED, "PUBLISH packets on resume");
            }
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut q = queued_fixture();
                    setups += q.setup;
                    runs += 1;
                    let start = Instant::now();
                    let counts = resume(&mut q, ack, &mut ids, &mut acks);
                    total += start.elapsed();
                    if ack {
                        assert_eq!(counts.acked, QUEUED);
                        assert_eq!(q.broker.pending_messages("r"), 0);
                    }
                    assert!(counts.bytes > QUEUED * PAYLOAD.len());
                    assert_eq!(*seen.get_or_insert(counts), counts);
                    drop(black_box(q));
                }
                total
            });
        });
        if let Some(counts) = seen {
            let secs = setups.as_secs_f64() / f64::from(runs.max(1));
            println!("resume {label}: setup {secs:.3} s each ({runs} runs); {counts:?} per resume");
            let group_name = "resume/queued_10k";
            extras.record("setup", &format!("resume-{label}"), "seconds", secs);
            extras.record(group_name, label, "persist_records", counts.persists as f64);
            extras.record(group_name, label, "transmits", counts.transmits as f64);
            extras.record(group_name, label, "bytes", counts.bytes as f64);
        }
    }
    group.finish();
}

// ---- the client engine -----------------------------------------------------------------------

fn connected_client() -> Client {
    let mut config = ClientConfig::new(ProtocolVersion::V5, "bench-client");
    config.keep_alive = 0;
    config.connect_timeout = None;
    let mut client = Client::new(config).unwrap();
    client.handle_connected(NOW);
    // The CONNECT is pulled as a host would pull it (a transmit left unpulled would hold back
    // the next `TransmitReady`).
    assert_eq!(drain_client(&mut client), (1, 0, 0));
    client.handle_bytes(&encode(ConnAck::new(false, ReasonCode::SUCCESS)), NOW);
    // (Its `Connected` event.)
    while client.poll_output().is_some() {}
    assert!(client.is_connected());
    client
}

/// Drains the client; returns (transmits, messages received, publishes completed).
fn drain_client(client: &mut Client) -> (usize, usize, usize) {
    let (mut transmits, mut messages, mut published) = (0, 0, 0);
    while let Some(out) = client.poll_output() {
        match out {
            ClientOutput::TransmitReady => {
                while let Some(data) = client.poll_transmit(usize::MAX, NOW) {
                    black_box(&data);
                    transmits += 1;
                }
            }
            ClientOutput::Event(ClientEvent::Message(m)) => {
                black_box(&m);
                messages += 1;
            }
            ClientOutput::Event(ClientEvent::Published { .. }) => published += 1,
            other => panic!("unexpected client output {other:?}"),
        }
    }
    (transmits, messages, published)
}

fn client_benches(c: &mut Criterion, extras: &mut Out) {
    let topic = TopicName::try_from("sensors/room-12/temperature").unwrap();
    let payload = Bytes::from_static(PAYLOAD);
    let message = |qos: QoS| {
        let mut p = Publish::new(topic.clone(), payload.clone());
        p.qos = qos;
        p
    };
    let incoming_qos0 = publish_packet("sensors/room-12/temperature", QoS::AtMostOnce);
    let incoming_qos1 = publish_packet("sensors/room-12/temperature", QoS::AtLeastOnce);

    type Op<'a> = Box<dyn FnMut(&mut Client) + 'a>;
    let ops: Vec<(&str, Op<'_>)> = vec![
        (
            "publish_qos0",
            Box::new(|cl: &mut Client| {
                cl.publish(message(QoS::AtMostOnce), NOW).unwrap();
                assert_eq!(drain_client(cl), (1, 0, 0));
            }),
        ),
        (
            "publish_qos1",
            Box::new(|cl: &mut Client| {
                let id = cl.publish(message(QoS::AtLeastOnce), NOW).unwrap().unwrap();
                assert_eq!(drain_client(cl), (1, 0, 0));
                cl.handle_bytes(&puback(id.get()), NOW);
                assert_eq!(drain_client(cl), (0, 0, 1));
            }),
        ),
        (
            "receive_qos0",
            Box::new(|cl: &mut Client| {
                cl.handle_bytes(&incoming_qos0, NOW);
                assert_eq!(drain_client(cl), (0, 1, 0));
            }),
        ),
        (
            "receive_qos1",
            Box::new(|cl: &mut Client| {
                cl.handle_bytes(&incoming_qos1, NOW);
                assert_eq!(drain_client(cl), (1, 1, 0));
            }),
        ),
    ];
    let mut group = c.benchmark_group("client");
    group.throughput(Throughput::Elements(1));
    for (label, mut op) in ops {
        let mut ran = false;
        group.bench_function(label, |b| {
            ran = true;
            let mut client = connected_client();
            b.iter(|| op(&mut client));
        });
        if ran {
            let mut client = connected_client();
            let stats = count_allocs(GLOBAL, 10_000, |_| op(&mut client));
            extras.record_allocs("client", label, stats);
        }
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    let mut extras = Out {
        extras: Extras::new("engine"),
        seen: BTreeSet::new(),
    };
    client_benches(&mut c, &mut extras);
    match_tree(&mut c);
    route_fanout(&mut c, &mut extras);
    route_subscriptions(&mut c, &mut extras);
    route_sessions(&mut c, &mut extras);
    resume_benches(&mut c, &mut extras);
    c.final_summary();
}
