//! The client engine: one MQTT 3.1.1 / 5.0 client session over successive network
//! connections, with no socket and no clock.
//!
//! # Driving it
//!
//! The host owns the transport and the clock. It tells the client when the transport comes up
//! ([`Client::handle_connected`]: the CONNECT is sent), what bytes arrived
//! ([`Client::handle_bytes`]), when the transport went down ([`Client::handle_disconnected`]) and
//! what time it is ([`Client::handle_timeout`]); the application's commands are
//! [`Client::publish`], [`Client::subscribe`], [`Client::unsubscribe`], [`Client::disconnect`],
//! [`Client::authenticate`] and [`Client::reauthenticate`]. After each of them the host drains
//! [`Client::poll_output`] until it returns `None`, doing what each [`ClientOutput`] says **in
//! order** (the design, shared with the broker engine, is in `docs/design/engine-io.md`):
//!
//! 1. [`ClientOutput::TransmitReady`]: there are bytes to send; pull them with
//!    [`Client::poll_transmit`] when the transport can take them (and again while it returns
//!    some).
//! 2. [`ClientOutput::Close`]: write its farewell bytes (a DISCONNECT, and what was not
//!    pulled) if the transport takes them at once, and close it. The client has already ended
//!    the connection ([`ClientEvent::Disconnected`] follows); `handle_disconnected` afterwards
//!    does nothing.
//! 3. [`ClientOutput::Event`]: tell the application. A received message
//!    ([`ClientEvent::Message`]) comes before the acknowledgement that takes ownership of it
//!    (v5 v3.1.1 [MQTT-4.5.0-2]), so a host that drains the outputs before it pulls the bytes
//!    never acknowledges a message it has not seen.
//!
//! Then it asks [`Client::poll_timeout`] for the next deadline (keep alive, PINGRESP, CONNACK)
//! and calls [`Client::handle_timeout`] when it passes. Time is always an argument: the same
//! inputs at the same times give the same outputs, byte for byte. Malformed or unexpected input
//! from the server is a [`ClientEvent::ProtocolViolation`] and closes the connection; it never
//! panics.
//!
//! Every [`Client::handle_connected`] is answered, sooner or later, by exactly one
//! [`ClientEvent::Disconnected`]; in between come [`ClientEvent::Connected`] or
//! [`ClientEvent::ConnectionRefused`] when the CONNACK arrives. Reconnecting is the host's
//! decision: it calls `handle_connected` again on a new transport.
//!
//! # Sessions
//!
//! The client keeps its Session State across connections (`session.rs`):
//! QoS 1/2 messages sent and not completely acknowledged are sent again on resume — PUBLISH
//! with DUP and PUBREL, with their original Packet Identifiers, in their original order — and
//! received QoS 2 messages are remembered until their PUBREL so that each is delivered exactly
//! once. Publishing, subscribing and unsubscribing while disconnected queue the request for the
//! next connection. On a new connection the client sends, after the CONNACK: the PUBRELs to
//! resend, then the SUBSCRIBE / UNSUBSCRIBE requests not yet acknowledged (again, with the same
//! Packet Identifiers), then the messages (re-deliveries first, as they are older) as the
//! server's Receive Maximum allows.
//!
//! Session Present decides what the state is worth:
//! - 0 while we hold state: the server has no session, so ours is discarded (v5 [MQTT-3.2.2-5]):
//!   each message sent and not completely acknowledged is reported as
//!   [`ClientEvent::PublishDropped`] with [`DropReason::SessionDiscarded`] (its delivery is
//!   unknown); messages never sent stay queued and are sent as new.
//! - 1 while the server cannot have our session: the connection is closed (v5 [MQTT-3.2.2-4]), and
//!   the next connection starts clean. The client considers that the server *may* have its
//!   session unless it knows otherwise: a new `Client` configured with Clean Start 0 resumes
//!   whatever session the server holds for its Client Identifier (it was made by an earlier
//!   instance of the application, whose in-flight state is gone; the server's re-deliveries are
//!   acknowledged normally). It knows the server has none after a connection whose Session
//!   Expiry Interval was 0 (MQTT 3.1.1: Clean Session 1) ended, and on a Clean Start 1.
//!
//! # Example
//!
//! ```
//! use mqtt_session::client::{Client, ClientConfig, ClientEvent, ClientOutput};
//! use mqtt_session::codec::ProtocolVersion;
//! use mqtt_session::Timestamp;
//!
//! let mut config = ClientConfig::new(ProtocolVersion::V3_1_1, "c1");
//! config.keep_alive = 60;
//! let mut client = Client::new(config)?;
//! let now = Timestamp::from_secs(1_700_000_000);
//! client.handle_connected(now); // the transport is up
//! let mut sent = Vec::new();
//! while let Some(out) = client.poll_output() {
//!     if let ClientOutput::TransmitReady = out {
//!         while let Some(data) = client.poll_transmit(64 * 1024, now) {
//!             sent.extend_from_slice(&data);
//!         }
//!     }
//! }
//! // CONNECT, MQTT 3.1.1, Clean Session, Keep Alive 60, client "c1".
//! assert_eq!(sent, [0x10, 0x0E, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'c', b'1']);
//!
//! client.handle_bytes(&[0x20, 0x02, 0x00, 0x00], now); // CONNACK, accepted
//! assert!(matches!(
//!     client.poll_output(),
//!     Some(ClientOutput::Event(ClientEvent::Connected { session_present: false, .. }))
//! ));
//! assert_eq!(client.poll_timeout(), Some(now.plus_secs(60))); // PINGREQ due
//! # Ok::<(), mqtt_session::client::ClientError>(())
//! ```

use crate::prelude::*;
mod alias;
mod config;
mod connect;
mod flow;
pub mod record;
mod session;

use alloc::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Decoder, Disconnect, Error as CodecError, Packet, PacketId, PacketType, ProtocolVersion,
    Publish, QoS, ReasonCode,
};

pub use config::{ClientConfig, ServerLimits};
pub use record::{
    CLIENT_RECORD_FORMAT, ClientRecord, ClientRecordError, StoreChange, decode_stored,
};

use alias::{InboundAliases, OutboundAliases};
use session::Session;

use crate::time::Timestamp;

/// What the host must do next; see the module documentation for the order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum ClientOutput {
    /// There are bytes to send: pull them with [`Client::poll_transmit`] when the transport can
    /// take them. Said once when the client goes from nothing to send to something.
    TransmitReady,
    /// Close the transport, after writing `farewell` (the bytes not pulled, ending with a
    /// DISCONNECT when there is one; possibly empty) if it takes them at once.
    Close {
        /// The last bytes for the transport.
        farewell: Bytes,
    },
    /// Something for the application.
    Event(ClientEvent),
    /// A storage record ([`ClientConfig::persist`]): the host makes it durable before it next
    /// pulls bytes with [`Client::poll_transmit`]; see [`record`].
    Persist(ClientRecord),
}

/// Why a message was given up without an acknowledgement from the server.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// It was larger than the server's Maximum Packet Size (v5 [MQTT-3.2.2-15]; it was queued
    /// before the server said so).
    TooLarge,
    /// Its QoS is above the server's Maximum QoS (v5 [MQTT-3.2.2-11]).
    QosNotSupported,
    /// It is retained and the server does not support retained messages (v5 [MQTT-3.2.2-14]).
    RetainNotSupported,
    /// It had been sent, and the server did not have the session when the client reconnected
    /// (Session Present 0), or the client started clean: whether it was delivered is unknown.
    /// v5 [MQTT-3.2.2-5]
    SessionDiscarded,
}

/// Events for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted the connection (CONNACK 0x00).
    Connected {
        /// Session Present: the server resumed our session.
        session_present: bool,
        /// The Assigned Client Identifier, when we sent an empty one (MQTT 5.0). It is used on
        /// every later connection.
        assigned_client_id: Option<String>,
        /// What the server announced, and the Keep Alive and Session Expiry in force.
        server: Box<ServerLimits>,
    },
    /// The server refused the connection (CONNACK with an error); the connection is closed.
    ConnectionRefused {
        /// The reason code (MQTT 3.1.1 return codes are mapped: 0x01 is 0x84, ...).
        reason_code: ReasonCode,
        /// The Reason String, if any.
        reason_string: Option<String>,
        /// The Server Reference (0x9C Use another server, 0x9D Server moved), if any.
        server_reference: Option<String>,
    },
    /// An Application Message from the server: the PUBLISH as received, with its topic resolved
    /// from its Topic Alias (and the alias removed). A QoS 2 message is reported once, however
    /// often the server re-sends it before its PUBREL.
    Message(Box<Publish>),
    /// A QoS 1/2 message's flow is complete: PUBACK (QoS 1), PUBCOMP (QoS 2) or a PUBREC with an
    /// error code (QoS 2, not retransmitted, v5 [MQTT-4.4.0-2]).
    Published {
        /// The Packet Identifier [`Client::publish`] returned.
        packet_id: PacketId,
        /// The reason code of that acknowledgement (always 0x00 in MQTT 3.1.1).
        reason_code: ReasonCode,
    },
    /// A message was given up without an acknowledgement.
    PublishDropped {
        /// Its Packet Identifier (`None` for QoS 0).
        packet_id: Option<PacketId>,
        /// Why.
        reason: DropReason,
    },
    /// SUBACK for a [`Client::subscribe`].
    Subscribed {
        /// The Packet Identifier `subscribe` returned.
        packet_id: PacketId,
        /// One per topic filter, in order: the granted QoS (0x00 to 0x02) or a failure
        /// (0x80 or above).
        reason_codes: Vec<ReasonCode>,
    },
    /// UNSUBACK for a [`Client::unsubscribe`].
    Unsubscribed {
        /// The Packet Identifier `unsubscribe` returned.
        packet_id: PacketId,
        /// One per topic filter, in order (MQTT 5.0); empty in MQTT 3.1.1, which has none.
        reason_codes: Vec<ReasonCode>,
    },
    /// The server asks for the next step of enhanced authentication (AUTH 0x18); answer with
    /// [`Client::authenticate`].
    AuthChallenge {
        /// The Authentication Method (ours).
        method: String,
        /// The server's Authentication Data.
        data: Option<Bytes>,
    },
    /// A re-authentication succeeded (AUTH 0x00).
    Reauthenticated,
    /// No PINGRESP within the ping timeout: the connection is closed.
    PingTimeout,
    /// No CONNACK within the connect timeout: the connection is closed.
    ConnectTimeout,
    /// The server broke the protocol; the connection is closed (MQTT 5.0: after a DISCONNECT
    /// with `reason_code`, once connected).
    ProtocolViolation {
        /// The reason code sent (or that would be, before the CONNACK or in MQTT 3.1.1).
        reason_code: ReasonCode,
        /// The decoding error, when the bytes were malformed.
        error: Option<CodecError>,
    },
    /// The connection ended (one such event per [`Client::handle_connected`]).
    Disconnected {
        /// The reason code: of the server's DISCONNECT or refusing CONNACK (`from_server`), of
        /// our DISCONNECT otherwise; `None` when the transport closed, or the client closed it
        /// without a DISCONNECT.
        reason_code: Option<ReasonCode>,
        /// Whether the server ended it (DISCONNECT or refusing CONNACK).
        from_server: bool,
        /// The server's Reason String, if any.
        reason_string: Option<String>,
        /// The server's Server Reference, if any.
        server_reference: Option<String>,
    },
}

/// Why a command was refused. Nothing was sent or queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientError {
    /// The configuration cannot make a valid CONNECT.
    InvalidConfig(&'static str),
    /// The packet would not be valid: the codec's reason.
    InvalidPacket(CodecError),
    /// The command is not allowed now, or not in this form (for example `authenticate` without
    /// a challenge, or a Subscription Identifier in a PUBLISH).
    NotAllowed(&'static str),
    /// The packet is larger than the server's Maximum Packet Size (v5 [MQTT-3.2.2-15]).
    PacketTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The server's Maximum Packet Size.
        maximum: u32,
    },
    /// The QoS is above the server's Maximum QoS (v5 [MQTT-3.2.2-11]).
    QosNotSupported {
        /// The server's Maximum QoS.
        maximum: QoS,
    },
    /// The server does not support retained messages (v5 [MQTT-3.2.2-14]).
    RetainNotSupported,
    /// `max_queued_messages` messages are already waiting.
    QueueFull,
    /// All 65 535 Packet Identifiers are in use.
    PacketIdsExhausted,
    /// The records given to [`Client::restore`] do not make a session; the text says why.
    InvalidStore(&'static str),
}

/// For firmware logs: the event's kind and its codes (not the message's topic or payload).
#[cfg(feature = "defmt")]
impl defmt::Format for ClientEvent {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            Self::Connected {
                session_present, ..
            } => defmt::write!(f, "Connected (session present: {})", session_present),
            Self::ConnectionRefused { reason_code, .. } => {
                defmt::write!(f, "ConnectionRefused ({})", reason_code);
            }
            Self::Message(publish) => defmt::write!(
                f,
                "Message ({}, {=usize} bytes, QoS {=u8})",
                publish.packet_id,
                publish.payload.len(),
                publish.qos.bits()
            ),
            Self::Published {
                packet_id,
                reason_code,
            } => defmt::write!(f, "Published ({}, {})", packet_id, reason_code),
            Self::PublishDropped { packet_id, reason } => {
                defmt::write!(f, "PublishDropped ({}, {})", packet_id, reason);
            }
            Self::Subscribed {
                packet_id,
                reason_codes,
            } => defmt::write!(f, "Subscribed ({}, {})", packet_id, reason_codes.as_slice()),
            Self::Unsubscribed {
                packet_id,
                reason_codes,
            } => defmt::write!(
                f,
                "Unsubscribed ({}, {})",
                packet_id,
                reason_codes.as_slice()
            ),
            Self::AuthChallenge { .. } => defmt::write!(f, "AuthChallenge"),
            Self::Reauthenticated => defmt::write!(f, "Reauthenticated"),
            Self::PingTimeout => defmt::write!(f, "PingTimeout"),
            Self::ConnectTimeout => defmt::write!(f, "ConnectTimeout"),
            Self::ProtocolViolation { reason_code, error } => {
                defmt::write!(f, "ProtocolViolation ({}, {})", reason_code, error);
            }
            Self::Disconnected {
                reason_code,
                from_server,
                ..
            } => defmt::write!(
                f,
                "Disconnected ({}, from the server: {})",
                reason_code,
                from_server
            ),
        }
    }
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::InvalidConfig(why) => write!(f, "invalid client configuration: {why}"),
            Self::InvalidPacket(e) => write!(f, "invalid packet: {e}"),
            Self::NotAllowed(why) => write!(f, "not allowed: {why}"),
            Self::PacketTooLarge { size, maximum } => write!(
                f,
                "packet of {size} bytes exceeds the server's Maximum Packet Size {maximum}"
            ),
            Self::QosNotSupported { maximum } => {
                write!(f, "QoS above the server's Maximum QoS {}", maximum.bits())
            }
            Self::RetainNotSupported => f.write_str("the server does not support retain"),
            Self::QueueFull => f.write_str("too many messages queued"),
            Self::PacketIdsExhausted => f.write_str("all Packet Identifiers are in use"),
            Self::InvalidStore(what) => write!(f, "the stored session is not consistent: {what}"),
        }
    }
}

impl core::error::Error for ClientError {}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// CONNECT sent; CONNACK (or AUTH) awaited.
    AwaitingConnAck,
    /// CONNACK 0x00 received.
    Connected,
}

/// What lives only as long as one network connection.
#[derive(Debug)]
struct Connection {
    state: ConnState,
    read_buf: BytesMut,
    decoder: Decoder,
    /// The CONNECT's Clean Start.
    clean_start: bool,
    /// The CONNECT had Clean Start 0 while the server may have had our session: a Session
    /// Present 1 is expected.
    resuming: bool,
    /// The CONNECT's Session Expiry Interval.
    connect_session_expiry: u32,
    opened_at: Timestamp,
    /// When we last sent a packet (keep alive counts from it).
    last_sent: Timestamp,
    /// When the PINGREQ awaiting its PINGRESP was sent.
    ping_sent: Option<Timestamp>,
    limits: ServerLimits,
    outbound_aliases: OutboundAliases,
    inbound_aliases: InboundAliases,
    /// The server sent AUTH 0x18 and [`Client::authenticate`] has not answered yet.
    challenge_pending: bool,
    /// We sent AUTH 0x19 and the exchange has not ended.
    reauthenticating: bool,
    /// Manual acknowledgement: the PUBACKs and PUBRECs owed on this connection, in the order
    /// of their PUBLISH packets; sent from the front as the application acknowledges.
    held_acks: VecDeque<HeldAck>,
    /// How many of them are QoS 1 messages the application has not acknowledged.
    held_qos1: usize,
}

/// An acknowledgement owed for a received message (manual acknowledgement).
#[derive(Debug, Clone, Copy)]
struct HeldAck {
    id: PacketId,
    qos: QoS,
    /// The application acknowledged it: it is sent once the ones before it are.
    acked: bool,
}

/// The most encoded bytes the client holds for the transport before it stops encoding queued
/// messages (they wait, counted against `max_queued_messages`, until the host pulls).
pub const OUTBOX_HIGH_WATER: usize = 64 * 1024;

/// An output waiting in the queue.
#[derive(Debug)]
enum Pending {
    TransmitReady,
    Close(Bytes),
    Event(ClientEvent),
}

/// The client engine. See the [module documentation](self) for how a host drives it.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    /// The Client Identifier sent in CONNECT (the assigned one once adopted).
    client_id: String,
    session: Session,
    conn: Option<Connection>,
    /// A CONNACK 0x00 has been received once.
    ever_connected: bool,
    /// The next CONNECT uses Clean Start 1 (after a Session Present we could not honour).
    force_clean_start: bool,
    out: VecDeque<Pending>,
    /// The bytes for the transport, not yet pulled.
    outbox: BytesMut,
    /// `TransmitReady` was said and the outbox has not been emptied since.
    notified: bool,
    /// How many times the session state was discarded (see [`Client::session_epoch`]).
    session_epoch: u64,
}

impl Client {
    /// A client that will connect with `config`.
    ///
    /// # Errors
    /// [`ClientError::InvalidConfig`] or [`ClientError::InvalidPacket`] when `config` cannot
    /// make a valid CONNECT for its protocol version (for example an MQTT 3.1.1 Password
    /// without User Name, v3.1.1 [MQTT-3.1.2-22], or an empty Client Identifier without Clean
    /// Session, v3.1.1 [MQTT-3.1.3-7]).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let v5 = config.protocol.is_v5();
        if !v5 {
            // v3.1.1 [MQTT-3.1.3-7] a zero-byte ClientId requires CleanSession 1.
            if config.client_id.is_empty() && !config.clean_start {
                return Err(ClientError::InvalidConfig(
                    "MQTT 3.1.1: an empty Client Identifier requires Clean Session",
                ));
            }
            // v3.1.1 [MQTT-3.1.2-22] no Password without a User Name.
            if config.password.is_some() && config.username.is_none() {
                return Err(ClientError::InvalidConfig(
                    "MQTT 3.1.1: a Password requires a User Name",
                ));
            }
            if config.authentication_method.is_some() {
                return Err(ClientError::InvalidConfig(
                    "MQTT 3.1.1 has no enhanced authentication",
                ));
            }
        }
        if config.receive_maximum == 0 {
            return Err(ClientError::InvalidConfig("Receive Maximum 0"));
        }
        if config.max_in_flight == 0 {
            return Err(ClientError::InvalidConfig("max_in_flight 0"));
        }
        if config.maximum_packet_size == 0 {
            return Err(ClientError::InvalidConfig("Maximum Packet Size 0"));
        }
        if config.authentication_data.is_some() && config.authentication_method.is_none() {
            return Err(ClientError::InvalidConfig(
                "Authentication Data without Authentication Method",
            ));
        }
        let mut session = Session::new(!config.clean_start, config.session_expiry_interval);
        session.persist = config.persist;
        let client = Self {
            client_id: config.client_id.clone(),
            config,
            session,
            conn: None,
            ever_connected: false,
            force_clean_start: false,
            out: VecDeque::new(),
            outbox: BytesMut::new(),
            notified: false,
            session_epoch: 0,
        };
        // Whatever would make the CONNECT invalid is refused now, not at each connection.
        let connect = client.connect_packet(client.config.clean_start)?;
        Packet::from(connect)
            .encoded_len(client.config.protocol)
            .map_err(ClientError::InvalidPacket)?;
        Ok(client)
    }

    /// A client that resumes the session stored in `stored`: the values a host holds after
    /// applying every [`ClientOutput::Persist`] of an earlier process with the same
    /// configuration ([`record`]: `ClientId`, `Outbound`, `Released` and `InboundQos2`
    /// records, in any order). Its messages in flight are sent again on the first connection,
    /// in their order of publication and with their Packet Identifiers: PUBLISH with DUP 1 (the
    /// client cannot know whether the PUBLISH left before the process ended), or PUBREL for a
    /// released QoS 2 message; its inbound QoS 2 messages awaiting PUBREL are not delivered
    /// again. The restored client continues the stored session: in MQTT 5.0 its CONNECTs have
    /// Clean Start 0 whatever [`ClientConfig::clean_start`] says; in MQTT 3.1.1 Clean Session
    /// is sent as configured (1 discards the restored session: persisting a 3.1.1 session
    /// needs Clean Session 0).
    ///
    /// # Errors
    /// As [`Client::new`]; [`ClientError::InvalidStore`] for a removal record, two messages
    /// with one Packet Identifier, or a `Released` record without its message.
    pub fn restore(
        config: ClientConfig,
        stored: impl IntoIterator<Item = ClientRecord>,
    ) -> Result<Self, ClientError> {
        let mut client = Self::new(config)?;
        let mut outbound = Vec::new();
        let mut released = alloc::collections::BTreeSet::new();
        for record in stored {
            match record {
                ClientRecord::ClientId(id) => {
                    if client.config.client_id.is_empty() {
                        client.client_id = id;
                    }
                }
                ClientRecord::Outbound { seq, publish } => outbound.push((seq, publish)),
                ClientRecord::Released { packet_id } => {
                    released.insert(packet_id);
                }
                ClientRecord::InboundQos2 { packet_id } => {
                    client.session.inbound_qos2.insert(packet_id);
                }
                _ => return Err(ClientError::InvalidStore("a removal is not a stored value")),
            }
        }
        outbound.sort_by_key(|(seq, _)| *seq);
        let mut ids = alloc::collections::BTreeSet::new();
        for (seq, publish) in outbound {
            let Some(id) = publish.packet_id.filter(|_| publish.qos != QoS::AtMostOnce) else {
                return Err(ClientError::InvalidStore(
                    "a stored message without QoS 1 or 2",
                ));
            };
            if !ids.insert(id) {
                return Err(ClientError::InvalidStore(
                    "two stored messages with one Packet Identifier",
                ));
            }
            let state = if released.remove(&id) {
                if publish.qos != QoS::ExactlyOnce {
                    return Err(ClientError::InvalidStore("a released QoS 1 message"));
                }
                session::OutState::Released
            } else {
                session::OutState::Pending
            };
            client.session.push_restored(seq, publish, state, true);
        }
        if !released.is_empty() {
            return Err(ClientError::InvalidStore(
                "a Released record without its message",
            ));
        }
        // What was stored came from a session the server may hold, and this client continues
        // it: in MQTT 5.0 its CONNECT has Clean Start 0 whatever the configuration says.
        client.session.may_exist_on_server = true;
        client.ever_connected = true;
        Ok(client)
    }

    // ---- getters ------------------------------------------------------------------------

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The Client Identifier: the configured one, or the one the server assigned.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Whether a connection is up and its CONNACK accepted it.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.conn
            .as_ref()
            .is_some_and(|c| c.state == ConnState::Connected)
    }

    /// Whether a transport is up (the CONNACK may still be awaited).
    #[must_use]
    pub fn has_transport(&self) -> bool {
        self.conn.is_some()
    }

    /// What the server announced in the CONNACK of the current connection.
    #[must_use]
    pub fn server_limits(&self) -> Option<&ServerLimits> {
        self.conn
            .as_ref()
            .filter(|c| c.state == ConnState::Connected)
            .map(|c| &c.limits)
    }

    /// QoS 1/2 messages sent and awaiting PUBACK, PUBREC or PUBCOMP (the send quota in use).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.session.in_flight
    }

    /// Messages waiting to be sent (or sent again).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.session.pending
    }

    /// SUBSCRIBE and UNSUBSCRIBE requests awaiting their acknowledgement.
    #[must_use]
    pub fn pending_requests(&self) -> usize {
        self.session.requests.len()
    }

    /// How many times the Session State was discarded (a Clean Start, or Session Present 0 on
    /// a resuming connection). Packet Identifiers of received messages are unique within one
    /// epoch: a host that lets its application acknowledge late ([`Client::ack`]) drops
    /// acknowledgements from an earlier epoch.
    #[must_use]
    pub fn session_epoch(&self) -> u64 {
        self.session_epoch
    }

    /// QoS 2 messages received and awaiting their PUBREL.
    #[must_use]
    pub fn inbound_qos2_pending(&self) -> usize {
        self.session.inbound_qos2.len()
    }

    /// Packet Identifiers in use (messages and requests).
    #[must_use]
    pub fn packet_ids_in_use(&self) -> usize {
        self.session.packet_ids_in_use()
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Bytes arrived from the server. Ignored when no transport is up.
    pub fn handle_bytes(&mut self, data: &[u8], now: Timestamp) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.read_buf.extend_from_slice(data);
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            // The acknowledgements a busy publisher receives most, without building a Packet.
            if conn.state == ConnState::Connected
                && let Some((ty, id)) = conn.decoder.decode_short_ack(&mut conn.read_buf)
            {
                match ty {
                    PacketType::PubAck => self.handle_puback(id, ReasonCode::SUCCESS, now),
                    PacketType::PubRec => self.handle_pubrec(id, ReasonCode::SUCCESS, now),
                    PacketType::PubRel => self.handle_pubrel(id, now),
                    _ => self.handle_pubcomp(id, ReasonCode::SUCCESS, now),
                }
                continue;
            }
            match conn.decoder.decode(&mut conn.read_buf) {
                Ok(Some(packet)) => self.handle_packet(packet, now),
                Ok(None) => return,
                Err(e) => {
                    // v3.1.1 [MQTT-4.8.0-1] (5.0: section 4.13) a Malformed Packet or Protocol
                    // Error closes the connection, with the reason code the codec names (0x95
                    // for a packet above our Maximum Packet Size).
                    self.fail(e.reason_code(), Some(e), now);
                    return;
                }
            }
        }
    }

    /// The transport went down (without the client asking). Ignored when none is up.
    pub fn handle_disconnected(&mut self, now: Timestamp) {
        let _ = now;
        if self.conn.is_some() {
            self.end_connection(false, None, false, None, None);
        }
    }

    /// Time passed: sends the PINGREQ that is due, and gives the connection up when the
    /// PINGRESP or the CONNACK is late.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.check_timers(now);
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next thing for the host to do; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        if let Some(record) = self.session.records.pop_front() {
            return Some(ClientOutput::Persist(record));
        }
        Some(match self.out.pop_front()? {
            Pending::TransmitReady => ClientOutput::TransmitReady,
            Pending::Close(farewell) => ClientOutput::Close { farewell },
            Pending::Event(e) => ClientOutput::Event(e),
        })
    }

    /// Up to `max_bytes` bytes to write to the transport now, in order; `None` when there are
    /// none. Call it when [`ClientOutput::TransmitReady`] said so and the transport can take
    /// bytes, after draining [`Client::poll_output`]. Queued messages are encoded as the bytes
    /// before them are pulled: the client holds at most [`OUTBOX_HIGH_WATER`] encoded bytes,
    /// and the rest of its queue (bounded by `max_queued_messages`) as messages.
    pub fn poll_transmit(&mut self, max_bytes: usize, now: Timestamp) -> Option<Bytes> {
        if self.outbox.len() < OUTBOX_HIGH_WATER {
            self.pump(now);
        }
        let n = self.outbox.len().min(max_bytes.max(1));
        // All of it (the usual case): the buffer itself becomes the `Bytes`, without the shared
        // header a split would allocate; the next packet starts a new buffer.
        let data = if n == self.outbox.len() {
            core::mem::take(&mut self.outbox)
        } else {
            self.outbox.split_to(n)
        };
        if self.outbox.is_empty() {
            self.notified = false;
        }
        (!data.is_empty()).then(|| data.freeze())
    }

    /// The earliest deadline at which [`Client::handle_timeout`] has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_deadline()
    }

    // ---- internals shared by the submodules ---------------------------------------------

    fn event(&mut self, event: ClientEvent) {
        self.out.push_back(Pending::Event(event));
    }

    /// The protocol version of the connection.
    fn version(&self) -> ProtocolVersion {
        self.config.protocol
    }

    /// Encodes `packet` for the server, refusing it when larger than the server's Maximum
    /// Packet Size (v5 [MQTT-3.2.2-15]) even without its Reason String and User Properties
    /// (left out when they alone make it too large); nothing is queued then. Consecutive
    /// packets share one transmit.
    fn send(&mut self, packet: &Packet, now: Timestamp) -> Result<(), CodecError> {
        let version = self.version();
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let max = conn.limits.maximum_packet_size;
        packet.encode_fitting(version, max, &mut self.outbox)?;
        conn.last_sent = now;
        self.transmit_ready();
        Ok(())
    }

    /// Says `TransmitReady` once, until the host has pulled everything.
    fn transmit_ready(&mut self) {
        if !self.notified {
            self.notified = true;
            self.out.push_back(Pending::TransmitReady);
        }
    }

    /// The server broke the protocol: DISCONNECT with `reason_code` (MQTT 5.0, once connected),
    /// then close. v3.1.1 [MQTT-4.8.0-1] (5.0: section 4.13)
    fn fail(&mut self, reason_code: ReasonCode, error: Option<CodecError>, now: Timestamp) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let mut sent = None;
        if self.version().is_v5() && conn.state == ConnState::Connected {
            let code = if reason_code.is_valid_for(PacketType::Disconnect) {
                reason_code
            } else {
                ReasonCode::UNSPECIFIED_ERROR
            };
            // A DISCONNECT too large for the server cannot be (it has no properties).
            if self
                .send(&Packet::Disconnect(Disconnect::new(code)), now)
                .is_ok()
            {
                sent = Some(code);
            }
        }
        self.event(ClientEvent::ProtocolViolation { reason_code, error });
        self.end_connection(true, sent, false, None, None);
    }

    /// Ends the connection: `close` asks the host to close the transport. The session keeps
    /// what survives the connection; [`ClientEvent::Disconnected`] is reported.
    fn end_connection(
        &mut self,
        close: bool,
        reason_code: Option<ReasonCode>,
        from_server: bool,
        reason_string: Option<String>,
        server_reference: Option<String>,
    ) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // What was not pulled belongs to this connection: the farewell when the client closes
        // it, nothing when the transport is already gone.
        let farewell = self.outbox.split().freeze();
        self.notified = false;
        if close {
            self.out.push_back(Pending::Close(farewell));
        }
        let v5 = self.version().is_v5();
        if conn.state == ConnState::Connected {
            // Section 4.1: with a Session Expiry Interval of 0 (3.1.1: Clean Session 1) the
            // session ended with the connection, on both sides.
            self.session.may_exist_on_server = if v5 {
                self.session.expiry_interval != 0
            } else {
                !conn.clean_start
            };
        } else {
            // The CONNECT may or may not have reached the server: it may have made a session.
            let made = if v5 {
                conn.connect_session_expiry != 0
            } else {
                !conn.clean_start
            };
            self.session.may_exist_on_server |= made;
        }
        self.session.connection_lost();
        self.event(ClientEvent::Disconnected {
            reason_code,
            from_server,
            reason_string,
            server_reference,
        });
    }
}
