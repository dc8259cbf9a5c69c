//! What a [`Client`](super::Client) asks for in CONNECT, and what the server announced in
//! CONNACK.

use crate::prelude::*;
use core::time::Duration;

use bytes::Bytes;
use mqtt_codec::{ConnAck, Decoder, ProtocolVersion, QoS, Will};

/// How a [`Client`](super::Client) connects: the fields of its CONNECT and the client's own
/// limits and timers.
///
/// Build one with [`ClientConfig::new`] and set the fields that differ from the defaults. MQTT
/// 5.0 only fields (properties, enhanced authentication) must keep their defaults for 3.1.1;
/// [`Client::new`](super::Client::new) says which field is wrong otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The protocol version: [`ProtocolVersion::V5`] or [`ProtocolVersion::V3_1_1`]
    /// ([`ProtocolVersion::V3_1`] behaves as 3.1.1 after its CONNECT).
    pub protocol: ProtocolVersion,
    /// The Client Identifier. Empty: the server assigns one (MQTT 5.0: the Assigned Client
    /// Identifier of the CONNACK, which the client adopts and sends on every later connection so
    /// that they resume the same session; MQTT 3.1.1 requires Clean Session 1 then
    /// v3.1.1 [MQTT-3.1.3-7]).
    pub client_id: String,
    /// Clean Start (5.0) or Clean Session (3.1.1).
    ///
    /// MQTT 5.0: used until the first successful CONNACK; later connections of the same
    /// `Client` send Clean Start 0 to resume the session (the Session Expiry Interval decides
    /// whether the server kept it). MQTT 3.1.1: sent on every connection, since Clean Session is
    /// what makes a 3.1.1 session persistent.
    pub clean_start: bool,
    /// Keep Alive in seconds (0: off). A Server Keep Alive in the CONNACK replaces it.
    pub keep_alive: u16,
    /// Session Expiry Interval in seconds (MQTT 5.0; `u32::MAX`: never). 0 ends the session with
    /// the connection.
    pub session_expiry_interval: u32,
    /// Receive Maximum (MQTT 5.0): how many QoS 1 and 2 PUBLISH packets the server may have
    /// unacknowledged towards us. QoS 1 messages are acknowledged on receipt, so it bounds the
    /// QoS 2 flows awaiting PUBREL; a server exceeding it is disconnected with 0x93. Not 0.
    pub receive_maximum: u16,
    /// The largest packet we accept, in bytes (announced in MQTT 5.0; enforced in both
    /// versions: a larger packet closes the connection, with DISCONNECT 0x95 in 5.0). Not 0.
    pub maximum_packet_size: u32,
    /// Topic Alias Maximum (MQTT 5.0): how many topic aliases the server may use towards us.
    pub topic_alias_maximum: u16,
    /// The Will Message, with its properties (Will Delay Interval, Message Expiry Interval, ...)
    /// in MQTT 5.0.
    pub will: Option<Will>,
    /// The User Name.
    pub username: Option<String>,
    /// The Password (MQTT 3.1.1: only with a User Name).
    pub password: Option<Bytes>,
    /// The Authentication Method of enhanced authentication (MQTT 5.0). The server's AUTH
    /// challenges are reported as [`ClientEvent::AuthChallenge`](super::ClientEvent) and
    /// answered with [`Client::authenticate`](super::Client::authenticate).
    pub authentication_method: Option<String>,
    /// The Authentication Data of the CONNECT (MQTT 5.0; only with a method).
    pub authentication_data: Option<Bytes>,
    /// Request Response Information (MQTT 5.0).
    pub request_response_information: bool,
    /// Request Problem Information (MQTT 5.0).
    pub request_problem_information: bool,
    /// How long to wait for the PINGRESP after a PINGREQ before giving the connection up
    /// ([`ClientEvent::PingTimeout`](super::ClientEvent)).
    pub ping_timeout: Duration,
    /// How long to wait for the CONNACK (enhanced authentication included) after the
    /// transport came up; `None`: for ever.
    pub connect_timeout: Option<Duration>,
    /// The most messages waiting to be sent (while disconnected, or while the server's Receive
    /// Maximum is reached); [`Client::publish`](super::Client::publish) refuses more with
    /// [`ClientError::QueueFull`](super::ClientError).
    pub max_queued_messages: usize,
    /// The most QoS 1/2 messages the client has in flight (sent, not completely
    /// acknowledged) at once, below the server's Receive Maximum when smaller (the in-flight
    /// window; MQTT 3.1.1 servers announce none). Not 0.
    pub max_in_flight: u16,
    /// Manual acknowledgement of received QoS 1 and 2 messages: the PUBACK (QoS 1) or PUBREC
    /// (QoS 2) of a [`ClientEvent::Message`](super::ClientEvent) is held until the application
    /// calls [`Client::ack`](super::Client::ack) with its Packet Identifier, and acknowledgements
    /// are still sent in the order the messages arrived (v5 v3.1.1 [MQTT-4.6.0-2]
    /// [MQTT-4.6.0-3]). Messages held count against our Receive Maximum (MQTT 5.0), so a server
    /// that respects it sends no more QoS 1/2 messages until the application catches up. A QoS 2
    /// message not acknowledged by the application when the connection is lost is not delivered
    /// again when the server re-sends it; its PUBREC waits for `ack`. Off (`false`): each
    /// message is acknowledged as soon as it is reported.
    pub manual_acks: bool,
    /// What happens to the QoS 1 messages sent and not acknowledged when the session is lost
    /// (Session Present 0 on a resuming connection, or a Clean Start): `true` sends them again
    /// as new messages (DUP 0; the server may deliver them twice), `false` (the default) gives
    /// them up with [`DropReason::SessionDiscarded`](super::DropReason). v5 [MQTT-3.2.2-5]
    pub resend_qos1_on_session_loss: bool,
    /// The same for QoS 2 messages (including those whose PUBREC arrived): `true` breaks
    /// exactly-once (the server may already have delivered them), so `false` is the default.
    pub resend_qos2_on_session_loss: bool,
    /// Emit storage records ([`ClientOutput::Persist`](super::ClientOutput)) so that a host can
    /// store the session and a restarted process resume it with
    /// [`Client::restore`](super::Client::restore) (see [`record`](super::record)). Meant with
    /// Clean Start 0: a Clean Start discards what was stored.
    pub persist: bool,
}

impl ClientConfig {
    /// A configuration for `protocol` and `client_id` with the defaults: Clean Start,
    /// Keep Alive 60 s, Session Expiry 0, no limits of our own, no will, no credentials, ping
    /// timeout 10 s, connect timeout 30 s, 10 000 queued messages, automatic acknowledgements,
    /// messages in flight given up when the session is lost.
    #[must_use]
    pub fn new(protocol: ProtocolVersion, client_id: impl Into<String>) -> Self {
        Self {
            protocol,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            session_expiry_interval: 0,
            receive_maximum: u16::MAX,
            maximum_packet_size: Decoder::MAX_PACKET_SIZE,
            topic_alias_maximum: 0,
            will: None,
            username: None,
            password: None,
            authentication_method: None,
            authentication_data: None,
            request_response_information: false,
            request_problem_information: true,
            ping_timeout: Duration::from_secs(10),
            connect_timeout: Some(Duration::from_secs(30)),
            max_queued_messages: 10_000,
            max_in_flight: u16::MAX,
            manual_acks: false,
            resend_qos1_on_session_loss: false,
            resend_qos2_on_session_loss: false,
            persist: false,
        }
    }
}

impl Default for ClientConfig {
    /// MQTT 5.0, empty Client Identifier (the server assigns one), other fields as
    /// [`ClientConfig::new`].
    fn default() -> Self {
        Self::new(ProtocolVersion::V5, "")
    }
}

/// What the server announced in its CONNACK (MQTT 5.0 properties; the protocol's defaults when
/// absent, and always in 3.1.1), and what is in force for the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// Receive Maximum: our send quota of unacknowledged QoS 1 and 2 PUBLISH packets
    /// (65 535 when absent).
    pub receive_maximum: u16,
    /// The largest packet the server accepts (`u32::MAX` when absent: no limit but the
    /// protocol's).
    pub maximum_packet_size: u32,
    /// How many topic aliases we may use towards the server (0 when absent: none).
    pub topic_alias_maximum: u16,
    /// The highest QoS the server accepts in PUBLISH.
    pub maximum_qos: QoS,
    /// Whether the server accepts retained messages.
    pub retain_available: bool,
    /// Whether the server supports wildcard subscriptions.
    pub wildcard_subscription_available: bool,
    /// Whether the server supports Subscription Identifiers.
    pub subscription_identifiers_available: bool,
    /// Whether the server supports shared subscriptions.
    pub shared_subscription_available: bool,
    /// The Keep Alive in force, in seconds: the Server Keep Alive if sent, else ours.
    pub keep_alive: u16,
    /// Whether the Keep Alive was set by the server (Server Keep Alive).
    pub server_keep_alive: bool,
    /// The Session Expiry Interval in force: the server's if it sent one, else ours.
    pub session_expiry_interval: u32,
    /// Response Information, if the server sent it.
    pub response_information: Option<String>,
    /// Server Reference, if the server sent it.
    pub server_reference: Option<String>,
}

impl ServerLimits {
    /// The limits a CONNACK announces, for a connection that asked for `keep_alive` and
    /// `session_expiry_interval`.
    pub(crate) fn from_connack(
        ack: &ConnAck,
        keep_alive: u16,
        session_expiry_interval: u32,
    ) -> Self {
        let p = &ack.properties;
        Self {
            receive_maximum: p.receive_maximum.map_or(u16::MAX, |r| r.get()),
            maximum_packet_size: p.maximum_packet_size.map_or(u32::MAX, |m| m.get()),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            maximum_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            wildcard_subscription_available: p.wildcard_subscription_available.unwrap_or(true),
            subscription_identifiers_available: p.subscription_identifier_available.unwrap_or(true),
            shared_subscription_available: p.shared_subscription_available.unwrap_or(true),
            // v5 [MQTT-3.1.2-21] [MQTT-3.2.2-21] the Server Keep Alive replaces ours.
            keep_alive: p.server_keep_alive.unwrap_or(keep_alive),
            server_keep_alive: p.server_keep_alive.is_some(),
            session_expiry_interval: p.session_expiry_interval.unwrap_or(session_expiry_interval),
            response_information: p.response_information().map(str::to_string),
            server_reference: p.server_reference().map(str::to_string),
        }
    }

    /// The limits before a CONNACK told anything (the protocol's defaults).
    pub(crate) fn unknown(keep_alive: u16, session_expiry_interval: u32) -> Self {
        Self::from_connack(
            &ConnAck::new(false, mqtt_codec::ReasonCode::SUCCESS),
            keep_alive,
            session_expiry_interval,
        )
    }
}
