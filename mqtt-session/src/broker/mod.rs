//! The broker engine: every session and connection of an MQTT server, with no sockets and no
//! clock.
//!
//! # Driving it
//!
//! The host owns the sockets, the clock and the storage (the design is in
//! `docs/design/engine-io.md`). It calls the `handle_*` inputs and then drains
//! [`Broker::poll_output`] until it returns `None`, doing what each [`Output`] says:
//!
//! - [`Output::Persist`]: store the record durably; once it and every earlier one are durable,
//!   report it with [`Broker::handle_committed`] (records may be committed in batches: group
//!   commit). Nothing that depends on a record leaves the engine before it is committed.
//! - [`Output::TransmitReady`]: the connection has bytes to send; pull them with
//!   [`Broker::poll_transmit`] when its socket can take them (and again while it returns some).
//!   Outbound PUBLISH packets are encoded then, so a connection that reads slowly costs queued
//!   references, not encoded bytes.
//! - [`Output::Close`]: write its farewell bytes if the socket takes them at once, and close.
//! - [`Output::PauseReading`] / [`Output::ResumeReading`]: back-pressure; stop or start reading
//!   the connection's socket.
//! - [`Output::Event`]: tell the application (log it, count it).
//!
//! `poll_transmit` may emit records too (a delivery to a durable session is recorded before its
//! bytes are released): drain `poll_output` after it. Then ask [`Broker::poll_timeout`] for the
//! next deadline and call [`Broker::handle_timeout`] when it passes. Time is always an argument:
//! the same inputs at the same times give the same outputs, byte for byte.
//!
//! ```
//! use mqtt_session::broker::{Broker, BrokerConfig, Output};
//! use mqtt_session::Timestamp;
//!
//! let mut broker = Broker::new(BrokerConfig::default());
//! let now = Timestamp::from_secs(1_700_000_000);
//! let conn = broker.handle_connection_opened(now);
//! // An MQTT 3.1.1 CONNECT from client "c1", Clean Session, Keep Alive 60.
//! broker.handle_bytes(conn, &[0x10, 0x0E, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'c', b'1'], now);
//! let mut sent = Vec::new();
//! while let Some(out) = broker.poll_output() {
//!     match out {
//!         // No storage here: every record is "durable" at once.
//!         Output::Persist { seq, .. } => broker.handle_committed(seq),
//!         Output::TransmitReady { connection } => {
//!             while let Some(bytes) = broker.poll_transmit(connection, 64 * 1024, now) {
//!                 sent.extend_from_slice(&bytes);
//!             }
//!         }
//!         _ => {}
//!     }
//! }
//! assert_eq!(sent, [0x20, 0x02, 0x00, 0x00]); // CONNACK, no session present, accepted
//! assert_eq!(broker.poll_timeout(), Some(now.plus_secs(90))); // keep alive: 1.5 × 60 s
//! ```

use crate::prelude::*;
mod backlog;
mod config;
mod connect;
mod delivery;
mod message;
mod policy;
pub mod record;
mod restore;
mod session;
mod storage;

use crate::hash::HashMap;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::sync::Arc;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    ConnAck, Decoder, Disconnect, Error as CodecError, Packet, PacketType, ProtocolVersion,
    ReasonCode, SubscriptionOptions, TopicName,
};

pub use config::BrokerConfig;
pub use message::{Message, MessageProperties};
pub use policy::{
    AllowAll, AuthDecision, AuthRequest, AuthStep, ConnectInfo, ConnectionInfo, Policy,
};
pub use storage::StorageRecord;

use session::{SessionRef, Sessions};

use crate::time::Timestamp;
use crate::topic_tree::SubscriptionTree;

/// A connection, as the broker numbers them (never reused within one `Broker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// What the host must do next; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Output {
    /// Store this record durably, then report [`Broker::handle_committed`] with `seq` (or a
    /// later number, once the later records are durable too). Sequence numbers start at 1 and
    /// increase by one.
    Persist {
        /// The record's sequence number.
        seq: u64,
        /// The record.
        record: StorageRecord,
    },
    /// The connection has bytes to send: call [`Broker::poll_transmit`] when its socket can
    /// take them. Said once when the connection goes from nothing to send to something.
    TransmitReady {
        /// The connection.
        connection: ConnectionId,
    },
    /// Close the connection, after writing `farewell` if the socket takes it at once. The
    /// engine has forgotten the connection. (When the farewell depends on records not yet
    /// committed, the `Close` comes once they are.)
    Close {
        /// The connection.
        connection: ConnectionId,
        /// The last bytes for it (what was not pulled, ending with a DISCONNECT or a refusing
        /// CONNACK), possibly empty.
        farewell: Bytes,
    },
    /// Stop reading the connection's socket (it is being slowed: its client publishes to a
    /// subscriber that is behind, or does not read its own acknowledgements).
    PauseReading {
        /// The connection.
        connection: ConnectionId,
    },
    /// Read the connection's socket again.
    ResumeReading {
        /// The connection.
        connection: ConnectionId,
    },
    /// The policy deferred an authentication decision ([`AuthDecision::Defer`]): decide, off
    /// the engine's thread if it is slow, and answer with [`Broker::handle_auth_decision`].
    /// Meanwhile the connection is paused.
    Authenticate {
        /// The connection.
        connection: ConnectionId,
        /// What to decide (its `Debug` redacts the secrets).
        request: Box<AuthRequest>,
    },
    /// Something the application may want to know.
    Event(BrokerEvent),
}

/// Why a message was not delivered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The session's queue was full (the newest message is dropped).
    QueueFull,
    /// Its Message Expiry Interval passed before it could be sent. [MQTT-3.3.2-5]
    Expired,
    /// It was larger than the client's Maximum Packet Size. [MQTT-3.1.2-25]
    TooLarge,
    /// A QoS 0 message for a subscriber that is stuck (over its backlog for longer than
    /// `BrokerConfig::stuck_after`).
    SlowConsumer,
}

/// What a client asked to do, in a [`BrokerEvent::NotAuthorized`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorizationAction {
    /// Publish to a topic.
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
    /// Publish a will to a topic (checked when the will is published; it is then discarded).
    Will,
}

/// Events for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// A client connected.
    ClientConnected {
        /// The connection.
        connection: ConnectionId,
        /// The Client Identifier (assigned, if the client sent none).
        client_id: String,
        /// Whether an existing session was resumed.
        session_present: bool,
        /// The protocol version.
        protocol: ProtocolVersion,
    },
    /// A CONNECT was refused with this reason code.
    ConnectionRejected {
        /// The connection.
        connection: ConnectionId,
        /// Why.
        reason_code: ReasonCode,
    },
    /// A connected client's connection ended.
    ClientDisconnected {
        /// The connection.
        connection: ConnectionId,
        /// The Client Identifier.
        client_id: String,
        /// Whether the client sent DISCONNECT (with a reason other than 0x04).
        graceful: bool,
    },
    /// The peer broke the protocol; the connection is closed.
    ProtocolViolation {
        /// The connection.
        connection: ConnectionId,
        /// The reason code sent (or that would be, for MQTT 3.1.1).
        reason_code: ReasonCode,
        /// The decoding error, when the bytes were malformed.
        error: Option<CodecError>,
    },
    /// A session ended (expired, or discarded by Clean Start).
    SessionEnded {
        /// The Client Identifier.
        client_id: String,
    },
    /// A will was published.
    WillPublished {
        /// The Client Identifier.
        client_id: String,
        /// The will topic.
        topic: TopicName,
    },
    /// The policy refused a PUBLISH or a subscription.
    NotAuthorized {
        /// The Client Identifier.
        client_id: String,
        /// What was asked.
        action: AuthorizationAction,
        /// The topic (publish) or the topic filter (subscribe).
        target: String,
    },
    /// A message was not delivered to a session. (For a stuck subscriber, only the first QoS 0
    /// message dropped is reported; [`BrokerEvent::ConsumerRecovered`] gives the count.)
    MessageDropped {
        /// The Client Identifier.
        client_id: String,
        /// The topic.
        topic: TopicName,
        /// Why.
        reason: DropReason,
    },
    /// A connected subscriber has been over its backlog for `BrokerConfig::stuck_after`: its
    /// QoS 0 messages are dropped from now on, and the publishers it slowed are resumed.
    ConsumerStuck {
        /// The connection.
        connection: ConnectionId,
        /// The Client Identifier.
        client_id: String,
        /// Its backlog, in bytes.
        backlog: usize,
    },
    /// A stuck subscriber is back under half its backlog, or its connection ended.
    ConsumerRecovered {
        /// The connection.
        connection: ConnectionId,
        /// The Client Identifier.
        client_id: String,
        /// The QoS 0 messages dropped for it while it was stuck.
        dropped: u64,
    },
}

/// A timer; deadlines are kept in one ordered set and checked lazily when they fire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ConnectTimeout(ConnectionId),
    KeepAlive(ConnectionId),
    SessionExpiry(String),
    Will(String),
    /// The connection has been over its backlog since the time armed minus `stuck_after`.
    Stuck(ConnectionId),
    /// The connection has been stuck since the time armed minus `disconnect_stuck_after`.
    StuckTooLong(ConnectionId),
}

/// An output waiting in the queue.
#[derive(Debug)]
enum Pending {
    Persist(u64, StorageRecord),
    TransmitReady(ConnectionId),
    Close(ConnectionId, Bytes),
    Pause(ConnectionId),
    Resume(ConnectionId),
    Authenticate(ConnectionId, Box<AuthRequest>),
    Event(BrokerEvent),
}

/// The output queue, and the sequence numbers of the records it has given out.
#[derive(Debug, Default)]
struct Outputs {
    queue: VecDeque<Pending>,
    /// The sequence number of the last record queued (0: none yet).
    last_record: u64,
    /// Counters for the host's statistics (kept here: every encoding path can reach it).
    stats: BrokerStats,
}

/// Counters since the broker was created (or restored), for statistics such as mosquitto's
/// `$SYS/broker/messages/...` topics: [`Broker::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// PUBLISH packets received from clients (accepted or refused, QoS 0, 1 and 2).
    pub publish_received: u64,
    /// PUBLISH packets sent to clients (re-deliveries included).
    pub publish_sent: u64,
}

impl Outputs {
    /// Queues a record with the next sequence number.
    fn persist(&mut self, record: StorageRecord) {
        self.last_record += 1;
        self.queue
            .push_back(Pending::Persist(self.last_record, record));
    }

    fn event(&mut self, event: BrokerEvent) {
        self.queue.push_back(Pending::Event(event));
    }

    fn push(&mut self, pending: Pending) {
        self.queue.push_back(pending);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    AwaitingConnect,
    /// Enhanced authentication in progress (AUTH exchange before CONNACK).
    Authenticating,
    Connected,
}

/// Per-connection state: what lives only as long as the network connection.
#[derive(Debug)]
struct Connection {
    read_buf: BytesMut,
    decoder: Decoder,
    state: ConnState,
    version: ProtocolVersion,
    /// Shared with every message it publishes (`Message::publisher`): no copy per PUBLISH.
    client_id: Option<Arc<str>>,
    username: Option<Arc<str>>,
    keep_alive_ms: u64,
    last_activity: Timestamp,
    client_receive_maximum: u16,
    client_maximum_packet_size: u32,
    client_topic_alias_maximum: u16,
    request_problem_information: bool,
    /// The Session Expiry Interval of the CONNECT (to refuse 0 → non-zero at DISCONNECT).
    connect_session_expiry: u32,
    /// The connection's deadlines in `Broker::timers` (removed when it closes).
    armed: Vec<(Timestamp, Timer)>,
    /// What the host said of it when it opened.
    transport: ConnectionInfo,
    /// Where its session was found last (see `Sessions::get_mut_cached`).
    session_ref: Option<SessionRef>,
    /// Topic aliases and enhanced authentication, which few connections use: made on first
    /// use (`Connection` is 328 bytes instead of 520).
    extras: Option<Box<ConnExtras>>,
    /// Control packets encoded and not yet pulled, in order, each chunk with its gate: the
    /// last record emitted before it, which must be committed before the chunk is released.
    outbox: VecDeque<(u64, BytesMut)>,
    /// The bytes in `outbox`.
    outbox_bytes: usize,
    /// `TransmitReady` was said and the host has not yet pulled everything sendable.
    notified: bool,
    /// Whether the host was told to stop reading it.
    reading_paused: bool,
    /// How many subscribers that are behind slow this connection's client down.
    paused_by: u32,
    /// Its own outbox (acknowledgements it does not read) is over the backlog.
    self_paused: bool,
    /// The publishers this connection (a subscriber that is behind) has paused.
    pausing: Vec<ConnectionId>,
    /// Since when its backlog is over `max_connection_backlog`.
    over_backlog_since: Option<Timestamp>,
    /// Since when it counts as stuck.
    stuck_since: Option<Timestamp>,
    /// QoS 0 messages dropped while stuck.
    dropped_qos0: u64,
    /// The first drop of the stuck run was reported.
    drop_reported: bool,
}

/// The parts of a [`Connection`] that few connections use, boxed and made on first use.
#[derive(Debug, Default)]
struct ConnExtras {
    /// Topic aliases the client set (section 3.3.2.3.4).
    inbound_aliases: BTreeMap<u16, TopicName>,
    /// Topic aliases the broker set towards the client.
    outbound_aliases: BTreeMap<TopicName, u16>,
    /// The Authentication Method of the CONNECT (enhanced authentication).
    authentication_method: Option<mqtt_codec::Utf8String>,
    /// The CONNECT waiting for enhanced authentication to finish.
    pending_connect: Option<Box<mqtt_codec::Connect>>,
    pending_assigned_id: bool,
    /// An authentication step the host is deciding, and its answer when it came before an
    /// earlier CONNECT's with the same Client Identifier.
    pending_auth: Option<(connect::PendingAuth, Option<AuthDecision>)>,
}

impl Connection {
    /// The rarely used parts, made if missing.
    fn extras(&mut self) -> &mut ConnExtras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// The authentication step the host is deciding, if any.
    fn pending_auth(&self) -> Option<&(connect::PendingAuth, Option<AuthDecision>)> {
        self.extras.as_ref()?.pending_auth.as_ref()
    }

    /// The Authentication Method of the CONNECT, if any.
    fn authentication_method(&self) -> Option<&mqtt_codec::Utf8String> {
        self.extras.as_ref()?.authentication_method.as_ref()
    }
}

/// A subscription's key in the subscription tree: the session, and the share group for a
/// shared subscription.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SubKey {
    /// The session's own `Arc` (`Session::client_id`), shared by all its subscriptions, so
    /// that a subscription costs no allocation for it and routing copies it without allocating.
    client_id: Arc<str>,
    share_group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SubValue {
    options: SubscriptionOptions,
    subscription_id: Option<u32>,
    /// The slot of the session when it subscribed, if it had one: a hint for routing, which
    /// checks that the slot still holds the session of the key (`Sessions::get_mut_hinted`).
    slot: Option<usize>,
}

/// The broker engine. See the [module documentation](self) for how a host drives it.
#[derive(Debug)]
pub struct Broker<P = AllowAll> {
    config: BrokerConfig,
    policy: P,
    /// Never iterated in hash order (see `handle_shutdown`). Boxed: a `Connection` is 328
    /// bytes, and a hash map keeps up to twice the slots it holds (a slot of 16 bytes rather
    /// than 336).
    connections: HashMap<ConnectionId, Box<Connection>>,
    /// By Client Identifier (see [`Sessions`] for why this stays deterministic).
    sessions: Sessions,
    tree: SubscriptionTree<SubKey, SubValue>,
    retained: BTreeMap<TopicName, Arc<Message>>,
    /// Retained messages kept in memory only ([`Broker::handle_publish_volatile`]).
    volatile_retained: BTreeSet<TopicName>,
    timers: BTreeSet<(Timestamp, Timer)>,
    out: Outputs,
    /// Every record up to this sequence number is durable (`handle_committed`).
    committed: u64,
    /// Connections with outbox chunks waiting for a commit, by gate (increasing).
    gated: VecDeque<(u64, ConnectionId)>,
    /// Connections closed with a farewell that waits for a commit, by gate (increasing).
    closing: VecDeque<(u64, ConnectionId, Bytes)>,
    /// Deferred CONNECTs by Client Identifier, in arrival order.
    auth_order: BTreeMap<String, VecDeque<ConnectionId>>,
    next_connection: u64,
    next_assigned_id: u64,
    shared_round_robin: BTreeMap<(String, String), u64>,
}

impl Broker<AllowAll> {
    /// A broker that lets everyone connect, publish and subscribe.
    #[must_use]
    pub fn new(config: BrokerConfig) -> Self {
        Self::with_policy(config, AllowAll)
    }
}

impl<P: Policy> Broker<P> {
    /// A broker whose authentication and authorization decisions are `policy`'s.
    #[must_use]
    pub fn with_policy(config: BrokerConfig, policy: P) -> Self {
        Self {
            config,
            policy,
            connections: HashMap::default(),
            sessions: Sessions::default(),
            tree: SubscriptionTree::new(),
            retained: BTreeMap::new(),
            volatile_retained: BTreeSet::new(),
            timers: BTreeSet::new(),
            out: Outputs::default(),
            committed: 0,
            gated: VecDeque::new(),
            auth_order: BTreeMap::new(),
            closing: VecDeque::new(),
            next_connection: 1,
            next_assigned_id: 1,
            shared_round_robin: BTreeMap::new(),
        }
    }

    // ---- getters ------------------------------------------------------------------------

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The policy.
    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    /// Counters of the messages received and sent.
    #[must_use]
    pub fn stats(&self) -> BrokerStats {
        self.out.stats
    }

    /// The number of sessions (connected or not).
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The number of open connections.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Whether a session exists for `client_id`.
    #[must_use]
    pub fn has_session(&self, client_id: &str) -> bool {
        self.sessions.contains_key(client_id)
    }

    /// Whether `client_id`'s client is connected.
    #[must_use]
    pub fn is_connected(&self, client_id: &str) -> bool {
        self.sessions
            .get(client_id)
            .is_some_and(|s| s.connection.is_some())
    }

    /// The number of messages queued or in flight for `client_id`.
    #[must_use]
    pub fn pending_messages(&self, client_id: &str) -> usize {
        self.sessions.get(client_id).map_or(0, |s| s.outbound.len())
    }

    /// The retained message of `topic`.
    #[must_use]
    pub fn retained(&self, topic: &str) -> Option<&Message> {
        self.retained
            .iter()
            .find(|(t, _)| t.as_utf8().as_str() == topic)
            .map(|(_, m)| &**m)
    }

    /// The number of retained messages.
    #[must_use]
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Whether the engine asked the host to stop reading `connection`
    /// ([`Output::PauseReading`], not yet followed by [`Output::ResumeReading`]). A host that
    /// has read input of a paused connection before it could stop holds that input back until
    /// the connection is resumed.
    #[must_use]
    pub fn is_reading_paused(&self, connection: ConnectionId) -> bool {
        self.connections
            .get(&connection)
            .is_some_and(|c| c.reading_paused)
    }

    /// The number of subscriptions of all sessions.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.tree.len()
    }

    // ---- inputs -------------------------------------------------------------------------

    /// A client opened a network connection. Returns its identifier.
    pub fn handle_connection_opened(&mut self, now: Timestamp) -> ConnectionId {
        self.handle_connection_opened_with(ConnectionInfo::default(), now)
    }

    /// A client opened a network connection, from the peer and with the TLS identity `info`
    /// says (the policy sees them with every CONNECT). Returns its identifier.
    pub fn handle_connection_opened_with(
        &mut self,
        info: ConnectionInfo,
        now: Timestamp,
    ) -> ConnectionId {
        let id = ConnectionId(self.next_connection);
        self.next_connection += 1;
        let decoder = Decoder::new().max_packet_size(self.config.maximum_packet_size);
        self.connections.insert(
            id,
            Box::new(Connection {
                read_buf: BytesMut::new(),
                decoder,
                state: ConnState::AwaitingConnect,
                version: ProtocolVersion::V5,
                client_id: None,
                username: None,
                keep_alive_ms: 0,
                last_activity: now,
                client_receive_maximum: u16::MAX,
                client_maximum_packet_size: u32::MAX,
                client_topic_alias_maximum: 0,
                request_problem_information: true,
                connect_session_expiry: 0,
                armed: Vec::new(),
                transport: info,
                session_ref: None,
                extras: None,
                outbox: VecDeque::new(),
                outbox_bytes: 0,
                notified: false,
                reading_paused: false,
                paused_by: 0,
                self_paused: false,
                pausing: Vec::new(),
                over_backlog_since: None,
                stuck_since: None,
                dropped_qos0: 0,
                drop_reported: false,
            }),
        );
        if let Some(secs) = self.config.connect_timeout {
            self.arm_connection(
                id,
                now.plus_secs(u64::from(secs)),
                Timer::ConnectTimeout(id),
            );
        }
        id
    }

    /// The server is shutting down: every connected MQTT 5.0 client is sent DISCONNECT 0x8B
    /// (Server shutting down), and every connection is closed. For the sessions this is a
    /// close the clients did not ask for: their wills follow the usual rules. Draining
    /// [`Broker::poll_output`] afterwards gives the records to persist and the last bytes.
    pub fn handle_shutdown(&mut self, now: Timestamp) {
        let mut ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(conn) = self.connections.get(&id) else {
                continue;
            };
            if conn.state == ConnState::Connected && conn.version.is_v5() {
                self.send(
                    id,
                    &Packet::Disconnect(Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN)),
                );
            }
            self.close_connection(id, false, now);
        }
    }

    /// Bytes arrived on `connection`. Unknown or closed connections are ignored.
    pub fn handle_bytes(&mut self, connection: ConnectionId, data: &[u8], now: Timestamp) {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        conn.read_buf.extend_from_slice(data);
        self.decode_input(connection, now);
    }

    /// Handles the packets in `connection`'s read buffer, unless an authentication decision
    /// is pending (then they wait for it).
    fn decode_input(&mut self, connection: ConnectionId, now: Timestamp) {
        loop {
            let Some(conn) = self.connections.get_mut(&connection) else {
                return;
            };
            if conn.pending_auth().is_some() {
                return;
            }
            // The acknowledgements a busy subscriber sends most, without building a Packet.
            if conn.state == ConnState::Connected
                && let Some((ty, id)) = conn.decoder.decode_short_ack(&mut conn.read_buf)
            {
                conn.last_activity = now;
                match ty {
                    PacketType::PubAck => self.handle_puback(connection, id, ReasonCode::SUCCESS),
                    PacketType::PubRec => self.handle_pubrec(connection, id, ReasonCode::SUCCESS),
                    PacketType::PubRel => self.handle_pubrel(connection, id),
                    _ => self.handle_pubcomp(connection, id),
                }
                continue;
            }
            match conn.decoder.decode(&mut conn.read_buf) {
                Ok(Some(packet)) => {
                    conn.last_activity = now;
                    self.handle_packet(connection, packet, now);
                }
                Ok(None) => return,
                Err(e) => {
                    // [MQTT-4.13.1-1] A Malformed Packet or Protocol Error closes the connection,
                    // with the reason code the codec names.
                    self.fail(connection, e.reason_code(), Some(e), now);
                    return;
                }
            }
        }
    }

    /// The transport closed `connection` (without the broker asking). Unknown connections are
    /// ignored.
    pub fn handle_connection_closed(&mut self, connection: ConnectionId, now: Timestamp) {
        if self.connections.contains_key(&connection) {
            self.close_connection(connection, false, now);
        }
    }

    /// Time passed: fires every deadline up to `now` (keep alive, will delay, session expiry).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some((at, timer)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, timer.clone()));
            match timer {
                Timer::KeepAlive(c) => self.check_keep_alive(c, now),
                Timer::ConnectTimeout(c) => {
                    // Still no CONNACK: close without a word (section 3.1.4 lets a server close
                    // a connection that does not send CONNECT within a reasonable time).
                    if self
                        .connections
                        .get(&c)
                        .is_some_and(|conn| conn.state != ConnState::Connected)
                    {
                        self.close_connection(c, false, now);
                    }
                }
                Timer::Will(client) => self.fire_will(&client, at, now),
                Timer::SessionExpiry(client) => self.check_session_expiry(&client, now),
                Timer::Stuck(c) => self.check_stuck(c, now),
                Timer::StuckTooLong(c) => self.check_stuck_too_long(c, now),
            }
        }
    }

    // ---- outputs ------------------------------------------------------------------------

    /// Every record with a sequence number up to `seq` is durable: what waited for them is
    /// released (the connections concerned are told with [`Output::TransmitReady`]). Numbers
    /// that do not move forward are ignored.
    pub fn handle_committed(&mut self, seq: u64) {
        if seq <= self.committed {
            return;
        }
        self.committed = seq.min(self.out.last_record);
        while let Some(&(gate, connection)) = self.gated.front() {
            if gate > self.committed {
                break;
            }
            self.gated.pop_front();
            if let Some(conn) = self.connections.get_mut(&connection) {
                notify(&mut self.out, connection, conn);
            }
        }
        while self
            .closing
            .front()
            .is_some_and(|(gate, _, _)| *gate <= self.committed)
        {
            if let Some((_, connection, farewell)) = self.closing.pop_front() {
                self.out.push(Pending::Close(connection, farewell));
            }
        }
    }

    /// The next thing for the host to do; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        Some(match self.out.queue.pop_front()? {
            Pending::Persist(seq, record) => Output::Persist { seq, record },
            Pending::TransmitReady(connection) => Output::TransmitReady { connection },
            Pending::Close(connection, farewell) => Output::Close {
                connection,
                farewell,
            },
            Pending::Pause(connection) => Output::PauseReading { connection },
            Pending::Resume(connection) => Output::ResumeReading { connection },
            Pending::Authenticate(connection, request) => Output::Authenticate {
                connection,
                request,
            },
            Pending::Event(e) => Output::Event(e),
        })
    }

    /// The earliest deadline at which [`Broker::handle_timeout`] has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.first().map(|(t, _)| *t)
    }

    // ---- internals shared by the submodules ---------------------------------------------

    fn persist(&mut self, record: StorageRecord) {
        self.out.persist(record);
    }

    fn event(&mut self, event: BrokerEvent) {
        self.out.event(event);
    }

    /// Encodes `packet` into `connection`'s outbox, refusing it when larger than the client's
    /// Maximum Packet Size [MQTT-3.1.2-24]. Returns whether it was queued.
    fn send(&mut self, connection: ConnectionId, packet: &Packet) -> bool {
        let gate = self.out.last_record;
        let Some(conn) = self.connections.get_mut(&connection) else {
            return false;
        };
        // [MQTT-3.1.2-24] within the client's Maximum Packet Size: a Reason String or User
        // Properties that would exceed it are left out. Encoded straight onto the outbox's
        // last chunk when it has the same gate (no buffer of its own to allocate and merge).
        let (version, max) = (conn.version, conn.client_maximum_packet_size);
        let written = match conn.outbox.back_mut() {
            Some((g, chunk)) if *g == gate => packet.encode_fitting(version, max, chunk).ok(),
            _ => {
                let mut bytes = BytesMut::new();
                let written = packet.encode_fitting(version, max, &mut bytes).ok();
                if written.is_some() {
                    push_chunk(conn, gate, bytes);
                }
                written
            }
        };
        let Some(written) = written else {
            return false;
        };
        conn.outbox_bytes += written;
        self.after_queue(connection, gate);
        true
    }

    /// Appends encoded packets to `connection`'s outbox, gated by the last record emitted, and
    /// says so to the host (at once, or when the gate is committed). A client whose outbox
    /// grows past the backlog (it does not read its acknowledgements) is paused.
    fn queue_bytes(&mut self, connection: ConnectionId, bytes: BytesMut) {
        if bytes.is_empty() {
            return;
        }
        let gate = self.out.last_record;
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        push_outbox(conn, gate, bytes);
        self.after_queue(connection, gate);
    }

    /// What follows bytes added to `connection`'s outbox under `gate`: the host is told (at
    /// once, or when the gate is committed), and a client whose outbox grew past the backlog
    /// (it does not read its acknowledgements) is paused.
    fn after_queue(&mut self, connection: ConnectionId, gate: u64) {
        let backlog = self.config.max_connection_backlog;
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        if gate <= self.committed {
            notify(&mut self.out, connection, conn);
        } else if self.gated.back() != Some(&(gate, connection)) {
            self.gated.push_back((gate, connection));
        }
        if conn.outbox_bytes > backlog && !conn.self_paused {
            conn.self_paused = true;
            update_reading(&mut self.out, connection, conn);
        }
    }

    fn arm(&mut self, at: Timestamp, timer: Timer) {
        self.timers.insert((at, timer));
    }

    fn check_keep_alive(&mut self, connection: ConnectionId, now: Timestamp) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        if conn.keep_alive_ms == 0 {
            return;
        }
        // [MQTT-3.1.2-22] no packet within one and a half times the Keep Alive: close.
        let deadline = conn
            .last_activity
            .plus_millis(conn.keep_alive_ms.saturating_mul(3) / 2);
        if deadline <= now {
            self.fail(connection, ReasonCode::KEEP_ALIVE_TIMEOUT, None, now);
        } else {
            self.arm_connection(connection, deadline, Timer::KeepAlive(connection));
        }
    }

    /// Arms a deadline that belongs to a connection, so that closing it disarms it.
    fn arm_connection(&mut self, connection: ConnectionId, at: Timestamp, timer: Timer) {
        if let Some(conn) = self.connections.get_mut(&connection) {
            arm_in(&mut self.timers, conn, at, timer);
        }
    }

    /// Disarms the connection's deadlines of this kind (all of them with `None`).
    fn disarm_connection(&mut self, connection: ConnectionId, only: Option<&Timer>) {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        let timers = &mut self.timers;
        conn.armed.retain(|entry| {
            let matches = only.is_none_or(|t| *t == entry.1);
            if matches {
                timers.remove(entry);
            }
            !matches
        });
        if conn.armed.is_empty() {
            // An idle connection without Keep Alive keeps no allocation for its deadlines.
            conn.armed = Vec::new();
        }
    }

    /// Answers a protocol violation and closes the connection as an abnormal close (the will
    /// is published). MQTT 5.0: CONNACK with `reason_code` during enhanced authentication,
    /// DISCONNECT after the CONNACK [MQTT-3.14.0-1]; MQTT 3.1.1 closes without a word. A CONNECT
    /// that cannot be decoded is answered only when its protocol level is unsupported: with the
    /// 3.1.1 CONNACK return code 0x01 [MQTT-3.1.2-2], which every level can read.
    fn fail(
        &mut self,
        connection: ConnectionId,
        reason_code: ReasonCode,
        error: Option<CodecError>,
        now: Timestamp,
    ) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let (v5, state) = (conn.version.is_v5(), conn.state);
        match state {
            ConnState::AwaitingConnect => {
                // A protocol name that is not MQTT's gets no answer: the peer may not speak MQTT
                // at all, and a 5.0 client could not read a 3.1.1 CONNACK (v5 [MQTT-3.1.2-1]).
                let unsupported = error.is_some_and(|e| {
                    e.violation() == mqtt_codec::Violation::UnsupportedProtocolVersion
                });
                if unsupported {
                    self.send_raw(connection, &[0x20, 0x02, 0x00, 0x01]);
                }
            }
            ConnState::Authenticating if v5 => {
                // [MQTT-3.2.2-6] a CONNACK with an error says no session present.
                let code = if reason_code.is_valid_for(PacketType::ConnAck) {
                    reason_code
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                };
                self.send(connection, &Packet::ConnAck(ConnAck::new(false, code)));
            }
            ConnState::Connected if v5 => {
                let code = if reason_code.is_valid_for(PacketType::Disconnect) {
                    reason_code
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                };
                // The rule broken, for the client's developer: a DISCONNECT may carry a Reason
                // String whatever Request Problem Information says (v5 [MQTT-3.1.2-29] limits
                // the other packets), and it is left out when it would exceed the client's
                // Maximum Packet Size ([MQTT-3.14.2-3], by `encode`).
                let mut disconnect = Disconnect::new(code);
                disconnect.properties.set_reason_string(
                    error.and_then(|e| mqtt_codec::Utf8String::try_from(e.to_string()).ok()),
                );
                self.send(connection, &Packet::Disconnect(disconnect));
            }
            _ => {}
        }
        self.event(BrokerEvent::ProtocolViolation {
            connection,
            reason_code,
            error,
        });
        self.close_connection(connection, false, now);
    }

    fn send_raw(&mut self, connection: ConnectionId, bytes: &[u8]) {
        let mut buf = BytesMut::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        self.queue_bytes(connection, buf);
    }

    /// Ends a connection. `graceful`: the client sent DISCONNECT with a reason other than
    /// 0x04, so its will is discarded [MQTT-3.14.4-3]; otherwise the will is published after
    /// its delay [MQTT-3.1.2-8].
    fn close_connection(&mut self, connection: ConnectionId, graceful: bool, now: Timestamp) {
        self.disarm_connection(connection, None);
        let Some(mut conn) = self.connections.remove(&connection) else {
            return;
        };
        // The farewell: what was not pulled, ending with the packet that closes it (a
        // DISCONNECT, a refusing CONNACK). When part of it waits for a commit, so does the
        // `Close`.
        let gate = conn.outbox.back().map_or(0, |(g, _)| *g);
        let mut farewell = BytesMut::new();
        for (_, chunk) in conn.outbox.drain(..) {
            farewell.unsplit(chunk);
        }
        if gate <= self.committed {
            self.out.push(Pending::Close(connection, farewell.freeze()));
        } else {
            // In gate order, so that `handle_committed` releases them from the front.
            let at = self.closing.partition_point(|(g, _, _)| *g <= gate);
            self.closing
                .insert(at, (gate, connection, farewell.freeze()));
        }
        self.release_paused_publishers(core::mem::take(&mut conn.pausing));
        // A CONNECT still being decided leaves its queue; the next one may go on.
        if let Some((
            connect::PendingAuth::Connect {
                client_id,
                assigned: false,
                ..
            },
            _,
        )) = conn.pending_auth()
            && let Some((next, decision)) = self.auth_order_done(client_id, connection)
        {
            self.apply_auth_decision(next, decision, now);
        }
        if conn.stuck_since.is_some()
            && let Some(client_id) = &conn.client_id
        {
            self.event(BrokerEvent::ConsumerRecovered {
                connection,
                client_id: client_id.to_string(),
                dropped: conn.dropped_qos0,
            });
        }
        if conn.state != ConnState::Connected {
            return;
        }
        let Some(client_id) = conn.client_id else {
            return;
        };
        self.event(BrokerEvent::ClientDisconnected {
            connection,
            client_id: client_id.to_string(),
            graceful,
        });
        self.session_disconnected(&client_id, connection, graceful, now);
    }
}

/// Encodes `packet` for `conn` at the end of `buf`, refusing it when larger than the client's
/// Maximum Packet Size [MQTT-3.1.2-24] (and then writing nothing). Returns whether it was
/// written.
#[inline]
fn encode(conn: &Connection, packet: &Packet, buf: &mut BytesMut) -> bool {
    // [MQTT-3.1.2-24] within the client's Maximum Packet Size: a Reason String or User
    // Properties that would exceed it are left out.
    packet
        .encode_fitting(conn.version, conn.client_maximum_packet_size, buf)
        .is_ok()
}

/// Arms `timer` at `at` for `conn` (forgetting its deadlines that have fired), so that closing
/// the connection disarms it: [`Broker::arm_connection`] for callers that hold the connection.
fn arm_in(
    timers: &mut BTreeSet<(Timestamp, Timer)>,
    conn: &mut Connection,
    at: Timestamp,
    timer: Timer,
) {
    conn.armed.retain(|entry| timers.contains(entry));
    // One slot at a time: a connection has one or two deadlines, and a vector's first growth
    // would make room for four (160 bytes).
    if conn.armed.len() == conn.armed.capacity() {
        conn.armed.reserve_exact(1);
    }
    conn.armed.push((at, timer.clone()));
    timers.insert((at, timer));
}

/// Appends `bytes` to `conn`'s outbox with `gate`, merged with the last chunk when it has the
/// same gate.
fn push_outbox(conn: &mut Connection, gate: u64, bytes: BytesMut) {
    conn.outbox_bytes += bytes.len();
    match conn.outbox.back_mut() {
        Some((g, chunk)) if *g == gate => chunk.unsplit(bytes),
        _ => push_chunk(conn, gate, bytes),
    }
}

/// Appends a chunk to `conn`'s outbox, growing it one slot at a time: it usually holds one or
/// two chunks, and a deque's first growth makes room for four (160 bytes an idle connection
/// would keep).
fn push_chunk(conn: &mut Connection, gate: u64, bytes: BytesMut) {
    if conn.outbox.len() == conn.outbox.capacity() {
        conn.outbox.reserve_exact(1);
    }
    conn.outbox.push_back((gate, bytes));
}

/// Says [`Output::TransmitReady`] for `conn` unless it was said and not yet answered.
#[inline]
fn notify(out: &mut Outputs, connection: ConnectionId, conn: &mut Connection) {
    if !conn.notified {
        conn.notified = true;
        out.push(Pending::TransmitReady(connection));
    }
}

/// Tells the host to pause or resume reading `conn` when what it should do changed.
fn update_reading(out: &mut Outputs, connection: ConnectionId, conn: &mut Connection) {
    let pause = conn.self_paused || conn.paused_by > 0 || conn.pending_auth().is_some();
    if pause != conn.reading_paused {
        conn.reading_paused = pause;
        out.push(if pause {
            Pending::Pause(connection)
        } else {
            Pending::Resume(connection)
        });
    }
}
