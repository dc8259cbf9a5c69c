//! Durable state as records: every change that must survive a restart leaves the engine as a
//! [`StorageRecord`] in [`Output::Persist`](super::Output::Persist), before the transmits that
//! depend on it. A host stores them in order (and syncs before sending what follows) and hands
//! them back to [`Broker::restore`](super::Broker::restore) after a restart.
//!
//! Records are plain serde data, with a binary, versioned form in [`super::record`] that every
//! host can share (messages in their MQTT wire form). Deadlines are [`Timestamp`]s, so they keep
//! their meaning across a restart when the host passes wall-clock time.
//!
//! What is not persisted, by design: QoS 0 messages (at most once), state of sessions whose
//! Session Expiry Interval is 0 (they end when their connection does, and a restart ends every
//! connection) other than their creation and will, topic aliases (per connection,
//! [MQTT-3.3.2-7]) and keep alive.

use crate::prelude::*;
use alloc::sync::Arc;

use mqtt_codec::{PacketId, QoS, SubscriptionOptions};
use serde::{Deserialize, Serialize};

use super::message::Message;
use crate::time::Timestamp;

/// One durable change of broker state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StorageRecord {
    /// A session was created (or its expiry interval or its User Name changed); replaces any
    /// earlier one.
    Session {
        /// The Client Identifier.
        client_id: String,
        /// The Session Expiry Interval in seconds (`u32::MAX`: never).
        expiry_interval: u32,
        /// The User Name its client last connected with: the read checks of
        /// [`Policy::may_receive`](super::Policy::may_receive) for the session while it is
        /// offline, and after a restart, use it. (Absent in records written before it existed.)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
    },
    /// The session's connection closed at `at`; the session expires `expiry_interval` seconds
    /// later.
    SessionDisconnected {
        /// The Client Identifier.
        client_id: String,
        /// When.
        at: Timestamp,
        /// The Session Expiry Interval in force (possibly changed by DISCONNECT).
        expiry_interval: u32,
    },
    /// The session's client reconnected.
    SessionConnected {
        /// The Client Identifier.
        client_id: String,
    },
    /// The session ended: forget everything about it.
    SessionEnded {
        /// The Client Identifier.
        client_id: String,
    },
    /// A subscription was added or replaced.
    Subscribed {
        /// The Client Identifier.
        client_id: String,
        /// The full Topic Filter (with `$share/...`).
        filter: String,
        /// Its options.
        options: SubscriptionOptions,
        /// Its Subscription Identifier.
        subscription_id: Option<u32>,
    },
    /// A subscription was removed.
    Unsubscribed {
        /// The Client Identifier.
        client_id: String,
        /// The full Topic Filter.
        filter: String,
    },
    /// A message was queued for the session, as number `seq` of its outbound queue.
    Queued {
        /// The Client Identifier.
        client_id: String,
        /// Position in the session's outbound order.
        seq: u64,
        /// The message (shared by the records of every session it is queued for, and by the
        /// engine's queues: a host can store it once).
        message: Arc<Message>,
        /// The QoS it is delivered with.
        qos: QoS,
        /// The RETAIN flag it is delivered with.
        retain: bool,
        /// The Subscription Identifiers it is delivered with.
        subscription_ids: Vec<u32>,
    },
    /// Message `seq` was sent with `packet_id` and awaits PUBACK or PUBREC.
    Sent {
        /// The Client Identifier.
        client_id: String,
        /// The message.
        seq: u64,
        /// Its Packet Identifier.
        packet_id: PacketId,
    },
    /// PUBREC received for message `seq`: PUBREL sent, PUBCOMP awaited.
    Released {
        /// The Client Identifier.
        client_id: String,
        /// The message.
        seq: u64,
    },
    /// Message `seq` is done (acknowledged, expired, dropped).
    Delivered {
        /// The Client Identifier.
        client_id: String,
        /// The message.
        seq: u64,
    },
    /// A QoS 2 PUBLISH from the client was accepted (PUBREC sent); its PUBREL is awaited.
    IncomingQos2 {
        /// The Client Identifier.
        client_id: String,
        /// Its Packet Identifier.
        packet_id: PacketId,
    },
    /// The PUBREL of an incoming QoS 2 message arrived (PUBCOMP sent).
    IncomingQos2Released {
        /// The Client Identifier.
        client_id: String,
        /// Its Packet Identifier.
        packet_id: PacketId,
    },
    /// The session's will was set (at CONNECT).
    Will {
        /// The Client Identifier.
        client_id: String,
        /// The will as an Application Message.
        message: Box<Message>,
        /// The Will Delay Interval in seconds.
        delay: u32,
    },
    /// The will is scheduled to be published at `at`.
    WillScheduled {
        /// The Client Identifier.
        client_id: String,
        /// When.
        at: Timestamp,
    },
    /// The will was published or discarded.
    WillCleared {
        /// The Client Identifier.
        client_id: String,
    },
    /// A retained message was stored for its topic.
    Retained {
        /// The message.
        message: Box<Message>,
    },
    /// The retained message of `topic` was removed.
    RetainedCleared {
        /// The topic.
        topic: String,
    },
}
