//! The broker engine: every session and connection of an MQTT server, with no sockets and no
//! clock.
//!
//! # Driving it
//!
//! The host owns the sockets, the clock and the storage. It calls the `handle_*` inputs and then
//! drains [`Broker::poll_output`] until it returns `None`, doing what each [`Output`] says **in
//! order**:
//!
//! 1. [`Output::Persist`]: store the record durably. Everything after it may depend on it (for
//!    example a PUBACK that acknowledges a message the record queued): persist, then send.
//! 2. [`Output::Transmit`]: write the bytes to the connection.
//! 3. [`Output::Close`]: close the connection after writing what was queued for it.
//! 4. [`Output::Event`]: tell the application (log it, count it).
//!
//! Then it asks [`Broker::poll_timeout`] for the next deadline and calls
//! [`Broker::handle_timeout`] when it passes. Time is always an argument: the same inputs at the
//! same times give the same outputs, byte for byte.
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
//!     if let Output::Transmit { data, .. } = out {
//!         sent.extend_from_slice(&data);
//!     }
//! }
//! assert_eq!(sent, [0x20, 0x02, 0x00, 0x00]); // CONNACK, no session present, accepted
//! assert_eq!(broker.poll_timeout(), Some(now.plus_secs(90))); // keep alive: 1.5 × 60 s
//! ```

mod config;
mod connect;
mod delivery;
mod message;
mod policy;
mod restore;
mod session;
mod storage;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use foldhash::fast::RandomState;
use mqtt_codec::{
    ConnAck, Decoder, Disconnect, Error as CodecError, Packet, PacketType, ProtocolVersion,
    ReasonCode, SubscriptionOptions, TopicName,
};

pub use config::BrokerConfig;
pub use message::Message;
pub use policy::{AllowAll, AuthDecision, ConnectInfo, Policy};
pub use storage::StorageRecord;

use session::Session;

use crate::time::Timestamp;
use crate::topic_tree::SubscriptionTree;

/// A connection, as the broker numbers them (never reused within one `Broker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// What the host must do next; see the module documentation for the order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Output {
    /// Store this record durably before acting on the outputs that follow it.
    Persist(StorageRecord),
    /// Write these bytes to the connection.
    Transmit {
        /// The connection.
        connection: ConnectionId,
        /// The bytes (one or more whole packets).
        data: Bytes,
    },
    /// Close the connection (after writing what was queued for it).
    Close {
        /// The connection.
        connection: ConnectionId,
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
    /// A message was not delivered to a session.
    MessageDropped {
        /// The Client Identifier.
        client_id: String,
        /// The topic.
        topic: TopicName,
        /// Why.
        reason: DropReason,
    },
}

/// A timer; deadlines are kept in one ordered set and checked lazily when they fire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ConnectTimeout(ConnectionId),
    KeepAlive(ConnectionId),
    SessionExpiry(String),
    Will(String),
}

/// An output under construction: transmits to the same connection are merged.
#[derive(Debug)]
enum Pending {
    Persist(StorageRecord),
    Transmit(ConnectionId, BytesMut),
    Close(ConnectionId),
    Event(BrokerEvent),
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
    client_id: Option<String>,
    username: Option<String>,
    keep_alive_ms: u64,
    last_activity: Timestamp,
    client_receive_maximum: u16,
    client_maximum_packet_size: u32,
    client_topic_alias_maximum: u16,
    inbound_aliases: BTreeMap<u16, TopicName>,
    outbound_aliases: BTreeMap<TopicName, u16>,
    request_problem_information: bool,
    authentication_method: Option<mqtt_codec::Utf8String>,
    /// The CONNECT waiting for enhanced authentication to finish.
    pending_connect: Option<Box<mqtt_codec::Connect>>,
    pending_assigned_id: bool,
    /// The Session Expiry Interval of the CONNECT (to refuse 0 → non-zero at DISCONNECT).
    connect_session_expiry: u32,
    /// The connection's deadlines in `Broker::timers` (removed when it closes).
    armed: Vec<(Timestamp, Timer)>,
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
}

/// The broker engine. See the [module documentation](self) for how a host drives it.
#[derive(Debug)]
pub struct Broker<P = AllowAll> {
    config: BrokerConfig,
    policy: P,
    /// Never iterated in hash order (see `handle_shutdown`).
    connections: HashMap<ConnectionId, Connection, RandomState>,
    /// By Client Identifier. Never iterated in hash order (see `restore::snapshot`), so the
    /// engine stays deterministic; randomly seeded, because client identifiers come from
    /// clients.
    sessions: HashMap<String, Session, RandomState>,
    tree: SubscriptionTree<SubKey, SubValue>,
    retained: BTreeMap<TopicName, Arc<Message>>,
    timers: BTreeSet<(Timestamp, Timer)>,
    out: VecDeque<Pending>,
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
            sessions: HashMap::default(),
            tree: SubscriptionTree::new(),
            retained: BTreeMap::new(),
            timers: BTreeSet::new(),
            out: VecDeque::new(),
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

    /// The number of subscriptions of all sessions.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.tree.len()
    }

    // ---- inputs -------------------------------------------------------------------------

    /// A client opened a network connection. Returns its identifier.
    pub fn handle_connection_opened(&mut self, now: Timestamp) -> ConnectionId {
        let id = ConnectionId(self.next_connection);
        self.next_connection += 1;
        let decoder = Decoder::new().max_packet_size(self.config.maximum_packet_size);
        self.connections.insert(
            id,
            Connection {
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
                inbound_aliases: BTreeMap::new(),
                outbound_aliases: BTreeMap::new(),
                request_problem_information: true,
                authentication_method: None,
                pending_connect: None,
                pending_assigned_id: false,
                connect_session_expiry: 0,
                armed: Vec::new(),
            },
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
        loop {
            let Some(conn) = self.connections.get_mut(&connection) else {
                return;
            };
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
            }
        }
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next thing for the host to do; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        Some(match self.out.pop_front()? {
            Pending::Persist(r) => Output::Persist(r),
            Pending::Transmit(connection, data) => Output::Transmit {
                connection,
                data: data.freeze(),
            },
            Pending::Close(connection) => Output::Close { connection },
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
        self.out.push_back(Pending::Persist(record));
    }

    fn event(&mut self, event: BrokerEvent) {
        self.out.push_back(Pending::Event(event));
    }

    /// Encodes `packet` for `connection`, refusing it when larger than the client's Maximum
    /// Packet Size [MQTT-3.1.2-24]. Returns whether it was queued.
    fn send(&mut self, connection: ConnectionId, packet: &Packet) -> bool {
        let Some(conn) = self.connections.get(&connection) else {
            return false;
        };
        encode_to(&mut self.out, connection, conn, packet)
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
        let timers = &self.timers;
        if let Some(conn) = self.connections.get_mut(&connection) {
            conn.armed.retain(|entry| timers.contains(entry));
            conn.armed.push((at, timer.clone()));
            self.timers.insert((at, timer));
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
                self.send(connection, &Packet::Disconnect(Disconnect::new(code)));
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
        self.out.push_back(Pending::Transmit(connection, buf));
    }

    /// Ends a connection. `graceful`: the client sent DISCONNECT with a reason other than
    /// 0x04, so its will is discarded [MQTT-3.14.4-3]; otherwise the will is published after
    /// its delay [MQTT-3.1.2-8].
    fn close_connection(&mut self, connection: ConnectionId, graceful: bool, now: Timestamp) {
        self.disarm_connection(connection, None);
        let Some(conn) = self.connections.remove(&connection) else {
            return;
        };
        self.out.push_back(Pending::Close(connection));
        if conn.state != ConnState::Connected {
            return;
        }
        let Some(client_id) = conn.client_id else {
            return;
        };
        self.event(BrokerEvent::ClientDisconnected {
            connection,
            client_id: client_id.clone(),
            graceful,
        });
        self.session_disconnected(&client_id, connection, graceful, now);
    }
}

/// Encodes `packet` for `conn` at the end of the output queue (appended to the last transmit
/// when it is for the same connection), refusing it when larger than the client's Maximum
/// Packet Size [MQTT-3.1.2-24]. Returns whether it was queued.
fn encode_to(
    pending: &mut VecDeque<Pending>,
    connection: ConnectionId,
    conn: &Connection,
    packet: &Packet,
) -> bool {
    if let Some(Pending::Transmit(c, buf)) = pending.back_mut()
        && *c == connection
    {
        return encode(conn, packet, buf);
    }
    let mut buf = BytesMut::new();
    // A refused packet writes nothing, and leaves no empty transmit behind.
    let sent = encode(conn, packet, &mut buf);
    if sent {
        pending.push_back(Pending::Transmit(connection, buf));
    }
    sent
}

/// Encodes `packet` for `conn` at the end of `buf`, refusing it when larger than the client's
/// Maximum Packet Size [MQTT-3.1.2-24] (and then writing nothing). Returns whether it was
/// written.
#[inline]
fn encode(conn: &Connection, packet: &Packet, buf: &mut BytesMut) -> bool {
    packet
        .encode_limited(conn.version, conn.client_maximum_packet_size, buf)
        .is_ok()
}

/// Queues `bytes` (whole packets) for `connection`: appended to the last transmit when it is
/// for the same connection, nothing when empty.
#[inline]
fn transmit(pending: &mut VecDeque<Pending>, connection: ConnectionId, bytes: BytesMut) {
    if bytes.is_empty() {
        return;
    }
    match pending.back_mut() {
        Some(Pending::Transmit(c, buf)) if *c == connection => buf.unsplit(bytes),
        _ => pending.push_back(Pending::Transmit(connection, bytes)),
    }
}
