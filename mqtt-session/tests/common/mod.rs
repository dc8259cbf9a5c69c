//! A deterministic simulation of a broker and its clients under a fake clock.
//!
//! A test opens connections, sends packets, advances time and reads what the broker sent back,
//! so that it reads like the specification. The harness plays the host: it drains every output
//! after each input, keeps the storage records (so the broker can be "restarted" from them),
//! collects events, and buffers transmitted bytes per connection.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU16;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use mqtt_session::Timestamp;
use mqtt_session::broker::{
    AllowAll, AuthDecision, AuthRequest, Broker, BrokerConfig, BrokerEvent, ConnectInfo,
    ConnectionId, DropReason, Output, Policy, StorageRecord,
};
use mqtt_session::codec::{
    Auth, ConnAck, Connect, Decoder, Disconnect, Packet, PacketId, Properties, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, Unsubscribe, Utf8String, Will,
};

/// A simulated client connection.
#[derive(Debug)]
pub struct Client {
    pub conn: ConnectionId,
    pub version: ProtocolVersion,
    decoder: Decoder,
    /// Packets received but not yet returned by `recv`.
    pending: Vec<Packet>,
}

/// The simulated host: one broker (with policy `P`), its storage, its events, its clients.
pub struct Sim<P: Policy + Clone = AllowAll> {
    pub config: BrokerConfig,
    pub broker: Broker<P>,
    /// The policy a restarted broker is built with.
    pub policy: P,
    pub now: Timestamp,
    pub records: Vec<StorageRecord>,
    pub events: Vec<BrokerEvent>,
    /// Deferred authentication decisions the broker asked for, in order.
    pub auth_requests: Vec<(ConnectionId, AuthRequest)>,
    /// Connections the broker asked to stop reading.
    pub paused: BTreeSet<ConnectionId>,
    inbox: BTreeMap<ConnectionId, BytesMut>,
    closed: BTreeSet<ConnectionId>,
}

impl Sim<AllowAll> {
    pub fn new() -> Self {
        Self::with_config(BrokerConfig::default())
    }

    pub fn with_config(config: BrokerConfig) -> Self {
        Sim::with_policy(config, AllowAll)
    }
}

impl<P: Policy + Clone> Sim<P> {
    /// A broker whose decisions are `policy`'s (a clone of it serves after a restart).
    pub fn with_policy(config: BrokerConfig, policy: P) -> Self {
        Self {
            broker: Broker::with_policy(config.clone(), policy.clone()),
            policy,
            config,
            now: Timestamp::from_secs(1_000_000),
            records: Vec::new(),
            events: Vec::new(),
            auth_requests: Vec::new(),
            paused: BTreeSet::new(),
            inbox: BTreeMap::new(),
            closed: BTreeSet::new(),
        }
    }

    /// Drains the broker's outputs, like a host would.
    pub fn drain(&mut self) {
        while let Some(out) = self.broker.poll_output() {
            match out {
                // Durable at once: every record is committed as it comes.
                Output::Persist { seq, record } => {
                    self.records.push(record);
                    self.broker.handle_committed(seq);
                }
                // A fast reader: everything is pulled at once.
                Output::TransmitReady { connection } => {
                    assert!(
                        !self.closed.contains(&connection),
                        "transmit after close on {connection:?}"
                    );
                    while let Some(data) =
                        self.broker.poll_transmit(connection, usize::MAX, self.now)
                    {
                        self.inbox
                            .entry(connection)
                            .or_default()
                            .extend_from_slice(&data);
                    }
                }
                Output::Close {
                    connection,
                    farewell,
                } => {
                    self.inbox
                        .entry(connection)
                        .or_default()
                        .extend_from_slice(&farewell);
                    self.closed.insert(connection);
                }
                Output::PauseReading { connection } => {
                    self.paused.insert(connection);
                }
                Output::ResumeReading { connection } => {
                    self.paused.remove(&connection);
                }
                Output::Authenticate {
                    connection,
                    request,
                } => self.auth_requests.push((connection, *request)),
                Output::Event(e) => self.events.push(e),
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    /// Opens a connection.
    pub fn open(&mut self, version: ProtocolVersion) -> Client {
        let conn = self.broker.handle_connection_opened(self.now);
        Client {
            conn,
            version,
            decoder: Decoder::with_version(version),
            pending: Vec::new(),
        }
    }

    /// Opens a connection, sends `connect` and returns the client and the CONNACK.
    pub fn connect(&mut self, connect: Connect) -> (Client, ConnAck) {
        let mut c = self.open(connect.protocol);
        self.send(&c, connect);
        let mut packets = self.recv(&mut c);
        if packets.is_empty() {
            panic!("no CONNACK (events: {:?})", self.events);
        }
        let first = packets.remove(0);
        c.pending = packets;
        match first {
            Packet::ConnAck(ack) => (c, ack),
            other => panic!(
                "expected CONNACK, got {other:?} (events: {:?})",
                self.events
            ),
        }
    }

    /// Sends a packet from a client.
    pub fn send(&mut self, c: &Client, packet: impl Into<Packet>) {
        let packet = packet.into();
        let mut buf = BytesMut::new();
        packet
            .encode(c.version, &mut buf)
            .expect("test packet encodes");
        self.send_bytes(c, &buf);
    }

    /// Sends raw bytes from a client.
    pub fn send_bytes(&mut self, c: &Client, bytes: &[u8]) {
        self.broker.handle_bytes(c.conn, bytes, self.now);
        self.drain();
    }

    /// The packets the broker sent to `c` since the last call.
    pub fn recv(&mut self, c: &mut Client) -> Vec<Packet> {
        let mut out = std::mem::take(&mut c.pending);
        let Some(buf) = self.inbox.get_mut(&c.conn) else {
            return out;
        };
        while let Some(p) = c.decoder.decode(buf).expect("broker sent a valid packet") {
            out.push(p);
        }
        out
    }

    /// The bytes the broker sent to `c` and `recv` has not read yet, undecoded.
    pub fn recv_raw(&mut self, c: &Client) -> Vec<u8> {
        self.inbox
            .get_mut(&c.conn)
            .map(|b| b.split().to_vec())
            .unwrap_or_default()
    }

    /// The PUBLISH packets the broker sent to `c` since the last call (other packets dropped).
    pub fn recv_publishes(&mut self, c: &mut Client) -> Vec<Publish> {
        self.recv(c)
            .into_iter()
            .filter_map(|p| {
                if let Packet::Publish(p) = p {
                    Some(p)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Whether the broker closed `c`'s connection.
    pub fn is_closed(&self, c: &Client) -> bool {
        self.closed.contains(&c.conn)
    }

    /// The transport drops `c`'s connection (no DISCONNECT).
    pub fn drop_connection(&mut self, c: &Client) {
        self.broker.handle_connection_closed(c.conn, self.now);
        self.closed.insert(c.conn);
        self.drain();
    }

    /// Advances the clock by `ms` milliseconds, firing deadlines on the way in order.
    pub fn advance_ms(&mut self, ms: u64) {
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

    pub fn advance(&mut self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    /// Kills the broker and builds a new one from the stored records, as a host would after a
    /// restart. Every connection is gone.
    pub fn restart(&mut self) {
        // Connection identifiers start again in the new broker: forget the old ones.
        self.inbox.clear();
        self.closed.clear();
        self.broker = Broker::restore(
            self.config.clone(),
            self.policy.clone(),
            self.records.clone(),
            self.now,
        );
        self.drain();
    }

    /// The broker is down for `secs` seconds (no timers fire), then restarts from its records.
    pub fn restart_after(&mut self, secs: u64) {
        self.now = self.now.plus_secs(secs);
        self.restart();
    }

    /// Opens a connection and sends `connect`; returns the client and everything the broker
    /// answered (for CONNECTs that are refused, or answered with AUTH).
    pub fn connect_raw(&mut self, connect: Connect) -> (Client, Vec<Packet>) {
        let mut c = self.open(connect.protocol);
        self.send(&c, connect);
        let packets = self.recv(&mut c);
        (c, packets)
    }

    /// Connects and subscribes to `filters` (asserting the SUBACK grants what was asked).
    pub fn subscriber(&mut self, connect: Connect, filters: &[(&str, QoS)]) -> Client {
        let (mut c, ack) = self.connect(connect);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        self.send(&c, subscribe(1, filters));
        let got = self.recv(&mut c);
        match &got[..] {
            [Packet::SubAck(s)] => {
                let want: Vec<ReasonCode> = filters.iter().map(|(_, q)| granted(*q)).collect();
                assert_eq!(s.reason_codes, want);
            }
            other => panic!("expected one SUBACK, got {other:?}"),
        }
        c
    }

    /// Sends SUBSCRIBE from `c`; returns its SUBACK and the PUBLISH packets that follow it
    /// (retained messages).
    pub fn subscribe_ack(&mut self, c: &mut Client, s: Subscribe) -> (SubAck, Vec<Publish>) {
        self.send(c, s);
        let all = self.recv(c);
        let mut got = all.clone().into_iter();
        let Some(Packet::SubAck(ack)) = got.next() else {
            panic!("expected a SUBACK first: {all:?}")
        };
        let rest: Vec<Packet> = got.collect();
        let pubs = publishes(&rest);
        assert_eq!(
            pubs.len(),
            rest.len(),
            "only PUBLISH packets after the SUBACK: {rest:?}"
        );
        (ack, pubs)
    }

    /// Sends a PUBLISH from `c` and returns what the broker answered to `c`.
    pub fn publish(&mut self, c: &mut Client, p: Publish) -> Vec<Packet> {
        self.send(c, p);
        self.recv(c)
    }

    /// Sends DISCONNECT with `reason` from `c`.
    pub fn disconnect(&mut self, c: &Client, reason: ReasonCode) {
        self.send(c, Disconnect::new(reason));
    }

    /// The events since the start (or since the last `take_events`).
    pub fn take_events(&mut self) -> Vec<BrokerEvent> {
        std::mem::take(&mut self.events)
    }

    /// Messages dropped for `client_id`, as (topic, reason).
    pub fn dropped(&self, client_id: &str) -> Vec<(String, DropReason)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BrokerEvent::MessageDropped {
                    client_id: c,
                    topic,
                    reason,
                } if c == client_id => Some((topic.to_string(), *reason)),
                _ => None,
            })
            .collect()
    }

    /// Sessions that ended, in order.
    pub fn sessions_ended(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BrokerEvent::SessionEnded { client_id } => Some(client_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Reason codes of protocol violations, in order.
    pub fn violations(&self) -> Vec<ReasonCode> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BrokerEvent::ProtocolViolation { reason_code, .. } => Some(*reason_code),
                _ => None,
            })
            .collect()
    }

    pub fn wills_published(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BrokerEvent::WillPublished { client_id, .. } => Some(client_id.clone()),
                _ => None,
            })
            .collect()
    }
}

// ---- packet builders -------------------------------------------------------------------------

pub fn topic(s: &str) -> TopicName {
    TopicName::try_from(s).unwrap()
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::try_from(s).unwrap()
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// CONNECT for MQTT 5.0 with Clean Start and Session Expiry as given.
pub fn connect_v5(client_id: &str, clean_start: bool, session_expiry: Option<u32>) -> Connect {
    let mut c = Connect::new(ProtocolVersion::V5, client_id.try_into().unwrap());
    c.clean_start = clean_start;
    c.keep_alive = 0;
    c.properties.session_expiry_interval = session_expiry;
    c
}

/// CONNECT for MQTT 3.1.1 with Clean Session as given.
pub fn connect_v311(client_id: &str, clean_session: bool) -> Connect {
    let mut c = Connect::new(ProtocolVersion::V3_1_1, client_id.try_into().unwrap());
    c.clean_start = clean_session;
    c.keep_alive = 0;
    c
}

pub fn will(topic_name: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Will {
    Will {
        topic: topic(topic_name),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        properties: Properties::default(),
    }
}

pub fn publish(topic_name: &str, payload: &'static [u8], qos: QoS, id: Option<u16>) -> Publish {
    let mut p = Publish::new(topic(topic_name), Bytes::from_static(payload));
    p.qos = qos;
    p.packet_id = id.and_then(PacketId::new);
    p
}

pub fn retained(topic_name: &str, payload: &'static [u8]) -> Publish {
    let mut p = publish(topic_name, payload, QoS::AtMostOnce, None);
    p.retain = true;
    p
}

pub fn subscribe(id: u16, filters: &[(&str, QoS)]) -> Subscribe {
    Subscribe {
        packet_id: pid(id),
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|(f, q)| (filter(f), SubscriptionOptions::qos(*q)))
            .collect(),
    }
}

pub fn subscribe_with(id: u16, f: &str, options: SubscriptionOptions) -> Subscribe {
    Subscribe {
        packet_id: pid(id),
        properties: Properties::default(),
        filters: vec![(filter(f), options)],
    }
}

pub fn unsubscribe(id: u16, filters: &[&str]) -> Unsubscribe {
    Unsubscribe {
        packet_id: pid(id),
        properties: Properties::default(),
        filters: filters.iter().map(|f| filter(f)).collect(),
    }
}

pub fn puback(id: PacketId) -> PubAck {
    PubAck::new(id)
}

pub fn pubrec(id: PacketId) -> PubRec {
    PubRec::new(id)
}

pub fn pubrel(id: PacketId) -> PubRel {
    PubRel::new(id)
}

pub fn pubcomp(id: PacketId) -> PubComp {
    PubComp::new(id)
}

pub fn alias(n: u16) -> Option<NonZeroU16> {
    NonZeroU16::new(n)
}

/// The SUBACK reason code that grants `qos`.
pub fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
        QoS::AtLeastOnce => ReasonCode::GRANTED_QOS_1,
        QoS::ExactlyOnce => ReasonCode::GRANTED_QOS_2,
    }
}

pub fn utf8(s: &str) -> Utf8String {
    Utf8String::try_from(s).unwrap()
}

/// A PUBLISH whose payload is owned (for generated payloads).
pub fn publish_owned(topic_name: &str, payload: Vec<u8>, qos: QoS, id: Option<u16>) -> Publish {
    let mut p = Publish::new(topic(topic_name), Bytes::from(payload));
    p.qos = qos;
    p.packet_id = id.and_then(PacketId::new);
    p
}

/// A retained PUBLISH at `qos`.
pub fn retained_qos(
    topic_name: &str,
    payload: &'static [u8],
    qos: QoS,
    id: Option<u16>,
) -> Publish {
    let mut p = publish(topic_name, payload, qos, id);
    p.retain = true;
    p
}

/// Subscription options in full.
pub fn options(
    qos: QoS,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: RetainHandling,
) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local,
        retain_as_published,
        retain_handling,
    }
}

/// SUBSCRIBE with a Subscription Identifier.
pub fn subscribe_id(id: u16, filters: &[(&str, QoS)], subscription_id: u32) -> Subscribe {
    let mut s = subscribe(id, filters);
    s.properties
        .push_subscription_identifier(subscription_id)
        .unwrap();
    s
}

/// AUTH with a reason code, method and data.
pub fn auth(reason_code: ReasonCode, method: &str, data: Option<&'static [u8]>) -> Auth {
    let mut a = Auth {
        reason_code,
        properties: Properties::default(),
    };
    a.properties.set_authentication_method(Some(utf8(method)));
    a.properties.set_authentication_data(data).unwrap();
    a
}

/// DISCONNECT with a reason code and a Session Expiry Interval.
pub fn disconnect_with_expiry(reason: ReasonCode, expiry: u32) -> Disconnect {
    let mut d = Disconnect::new(reason);
    d.properties.session_expiry_interval = Some(expiry);
    d
}

/// A CONNECT (5.0, Clean Start, no expiry) with a will on `topic_name`.
pub fn connect_v5_will(client_id: &str, session_expiry: Option<u32>, w: Will) -> Connect {
    let mut c = connect_v5(client_id, true, session_expiry);
    c.will = Some(w);
    c
}

/// A will with a Will Delay Interval.
pub fn will_delayed(topic_name: &str, payload: &'static [u8], delay: u32) -> Will {
    let mut w = will(topic_name, payload, QoS::AtMostOnce, false);
    w.properties.will_delay_interval = Some(delay);
    w
}

/// The only packet of `packets`, asserting there is exactly one.
pub fn only(packets: Vec<Packet>) -> Packet {
    assert_eq!(
        packets.len(),
        1,
        "expected exactly one packet, got {packets:?}"
    );
    packets.into_iter().next().unwrap()
}

/// The PUBLISH packets of `packets`.
pub fn publishes(packets: &[Packet]) -> Vec<Publish> {
    packets
        .iter()
        .filter_map(|p| {
            if let Packet::Publish(p) = p {
                Some(p.clone())
            } else {
                None
            }
        })
        .collect()
}

/// The reason code of the DISCONNECT that ends `packets` (`None` if they do not end with one).
pub fn disconnect_reason(packets: &[Packet]) -> Option<ReasonCode> {
    match packets {
        [.., Packet::Disconnect(d)] => Some(d.reason_code),
        _ => None,
    }
}

/// Payloads of PUBLISH packets as strings.
pub fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// A policy for tests, configurable per test; the log is shared by its clones.
///
/// - `users`: when not empty, a CONNECT must carry one of these user name / password pairs,
///   or is refused with 0x86 (Bad User Name or Password).
/// - `banned`: client identifiers refused with 0x8A (Banned).
/// - `auth_method`: the enhanced authentication method supported. The exchange: CONNECT with
///   Authentication Data `hello` → AUTH 0x18 with `challenge`; AUTH with `more` → AUTH 0x18
///   with `again`; AUTH with `answer` → accepted; anything else → refused with 0x87. A
///   re-authentication accepts `answer` and refuses anything else with 0x87.
/// - `deny_publish` / `deny_subscribe`: topics / filters refused (exact match).
#[derive(Debug, Clone, Default)]
pub struct TestPolicy {
    pub users: Vec<(String, Vec<u8>)>,
    pub banned: Vec<String>,
    pub auth_method: Option<String>,
    pub deny_publish: Vec<String>,
    pub deny_subscribe: Vec<String>,
    /// Read checks refused: (User Name, or `-` for none; Topic Filter matching the topic).
    /// (Not logged: they come once per delivery.)
    pub deny_receive: Vec<(String, String)>,
    /// Every call, as a line: `connect <client> <user> <method>`, `auth <client> <data>`, ...
    pub log: Rc<RefCell<Vec<String>>>,
}

impl TestPolicy {
    pub fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

impl Policy for TestPolicy {
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        self.log.borrow_mut().push(format!(
            "connect {} {} {}",
            info.client_id,
            info.username.unwrap_or("-"),
            info.authentication_method.unwrap_or("-")
        ));
        if self.banned.iter().any(|b| b == info.client_id) {
            return AuthDecision::Reject(ReasonCode::BANNED);
        }
        if !self.users.is_empty() {
            let ok = self.users.iter().any(|(u, p)| {
                info.username == Some(u.as_str()) && info.password == Some(p.as_slice())
            });
            if !ok {
                return AuthDecision::Reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
            }
        }
        match (info.authentication_method, &self.auth_method) {
            (None, _) => AuthDecision::Accept,
            (Some(m), Some(ours)) if m == ours => {
                if info.authentication_data == Some(&b"hello"[..]) {
                    AuthDecision::Continue(Some(Bytes::from_static(b"challenge")))
                } else {
                    AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED)
                }
            }
            (Some(_), _) => AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD),
        }
    }

    fn continue_authentication(
        &mut self,
        client_id: &str,
        method: &str,
        data: Option<&[u8]>,
    ) -> AuthDecision {
        self.log.borrow_mut().push(format!(
            "auth {client_id} {method} {}",
            data.map_or("-".to_owned(), |d| String::from_utf8_lossy(d).into_owned())
        ));
        match data {
            Some(b"answer") => AuthDecision::Accept,
            Some(b"more") => AuthDecision::Continue(Some(Bytes::from_static(b"again"))),
            _ => AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED),
        }
    }

    fn may_publish(&mut self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.log.borrow_mut().push(format!(
            "publish {client_id} {} {topic}",
            username.unwrap_or("-")
        ));
        !self.deny_publish.iter().any(|t| t == topic)
    }

    fn may_subscribe(&mut self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        self.log.borrow_mut().push(format!(
            "subscribe {client_id} {} {filter}",
            username.unwrap_or("-")
        ));
        !self.deny_subscribe.iter().any(|f| f == filter)
    }

    fn may_receive(&mut self, _client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let user = username.unwrap_or("-");
        !self
            .deny_receive
            .iter()
            .any(|(u, f)| u == user && mqtt_session::topic_match::matches(f, topic))
    }
}

/// The default configuration changed by `change` (`BrokerConfig` is non-exhaustive).
pub fn config_with(change: impl FnOnce(&mut BrokerConfig)) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    change(&mut config);
    config
}

// ---- raw packets (for what the encoder refuses to build) ---------------------------------------

/// A length-prefixed field (UTF-8 string or binary data).
pub fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// A packet from its first byte and its body (Remaining Length below 128).
pub fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first, u8::try_from(body.len()).unwrap()];
    v.extend_from_slice(body);
    v
}

/// Concatenates byte slices.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// CONNECT bytes: protocol `name`, `level`, connect `flags`, keep alive 60, (level 5: an empty
/// property list,) then `payload`.
pub fn raw_connect(name: &[u8], level: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = lp(name);
    body.extend_from_slice(&[level, flags, 0, 60]);
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    framed(0x10, &body)
}
