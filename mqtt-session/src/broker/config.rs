//! The broker's limits and capabilities.

use crate::prelude::*;
use mqtt_codec::QoS;

/// What a [`Broker`](super::Broker) allows and announces. `Default` gives the values a general
/// purpose broker would use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The longest Keep Alive accepted, in seconds. A client asking for more (or for 0) gets this
    /// value as Server Keep Alive (MQTT 5.0); a 3.1.1 client is held to its own value. `None`:
    /// accept the client's.
    pub max_keep_alive: Option<u16>,
    /// Receive Maximum: how many QoS 1 and 2 PUBLISH packets a client may have unacknowledged
    /// towards us (our QoS 2 flows count until PUBCOMP).
    pub receive_maximum: u16,
    /// The largest packet accepted from a client, in bytes.
    pub maximum_packet_size: u32,
    /// How many topic aliases a client may use towards us.
    pub topic_alias_maximum: u16,
    /// The most QoS 1/2 messages in flight towards one client (further capped by its Receive
    /// Maximum).
    pub max_inflight: u16,
    /// The most messages queued for one session (in flight ones excluded). When full, a new
    /// message for that session is dropped (and reported as [`super::BrokerEvent::MessageDropped`]).
    pub max_queued_messages: usize,
    /// The most payload bytes queued for one session; same policy when exceeded.
    pub max_queued_bytes: usize,
    /// The longest Session Expiry Interval granted, in seconds (`None`: as requested).
    pub max_session_expiry: Option<u32>,
    /// Whether QoS 0 messages are queued for sessions whose client is offline.
    pub queue_qos0_when_offline: bool,
    /// The highest QoS accepted in PUBLISH and granted in SUBACK.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// Whether wildcard subscriptions are supported.
    pub wildcard_subscription_available: bool,
    /// Whether Subscription Identifiers are supported.
    pub subscription_identifiers_available: bool,
    /// Whether shared subscriptions are supported.
    pub shared_subscription_available: bool,
    /// Whether a client may connect with an empty Client Identifier (one is then assigned).
    pub allow_empty_client_id: bool,
    /// The prefix of assigned Client Identifiers.
    pub assigned_client_id_prefix: String,
    /// Response Information sent to a client that asks for it (MQTT 5.0).
    pub response_information: Option<String>,
    /// Seconds a new connection has to complete its CONNECT (and any enhanced authentication)
    /// before it is closed. `None`: no limit.
    pub connect_timeout: Option<u32>,
    /// The most bytes a connection may have waiting to be sent (encoded control packets plus
    /// the messages queued for its session while it is connected, each counted as its topic
    /// and payload plus 128 bytes). A subscriber over it slows
    /// the publishers that feed it; a client whose own acknowledgements pile up over it is
    /// paused. See `docs/design/engine-io.md`.
    pub max_connection_backlog: usize,
    /// Milliseconds a subscriber may stay over its backlog before it counts as stuck: its
    /// QoS 0 messages are then dropped (and counted), and the publishers it slowed are resumed
    /// (so no publisher is slowed longer than this).
    pub stuck_after_ms: u64,
    /// Seconds a subscriber may stay stuck before it is disconnected (DISCONNECT 0x97 Quota
    /// exceeded in MQTT 5.0). `None`: never.
    pub disconnect_stuck_after: Option<u32>,
    /// A session belongs to the user that created it: a CONNECT whose (authenticated) User
    /// Name differs from the existing session's is refused with 0x87 Not authorized (3.1.1:
    /// 5), and the session — and its client, if connected — stay as they are. So one user
    /// neither receives what was queued for another, nor takes over or discards another's
    /// session. Meaningful when the policy authenticates User Names (or names the user with
    /// [`AuthDecision::AcceptAs`](super::AuthDecision::AcceptAs)); off by default, as MQTT's
    /// Client Identifier alone decides otherwise.
    pub sessions_owned_by_user: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_keep_alive: None,
            receive_maximum: 1024,
            maximum_packet_size: 1024 * 1024,
            topic_alias_maximum: 64,
            max_inflight: 64,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_session_expiry: None,
            queue_qos0_when_offline: false,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
            allow_empty_client_id: true,
            assigned_client_id_prefix: "auto-".to_owned(),
            response_information: None,
            connect_timeout: Some(30),
            max_connection_backlog: 1024 * 1024,
            stuck_after_ms: 1000,
            disconnect_stuck_after: Some(60),
            sessions_owned_by_user: false,
        }
    }
}
