//! Application Messages as the broker keeps them: received once, shared by every session they
//! are delivered to.

use bytes::Bytes;
use mqtt_codec::{Properties, QoS, TopicName};
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// An Application Message held by the broker (from a PUBLISH or a will).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// The topic.
    pub topic: TopicName,
    /// The payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Its properties as forwarded: Payload Format Indicator, Content Type, Response Topic,
    /// Correlation Data and User Properties (in order), unaltered. [MQTT-3.3.2-4]
    /// [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]
    /// Message Expiry is kept as `expires_at`; Topic Alias and Subscription Identifiers are not
    /// part of the message.
    pub properties: Properties,
    /// The Client Identifier of the publisher (for No Local), if a client published it.
    pub publisher: Option<String>,
    /// When the Message Expiry Interval runs out, if it has one.
    pub expires_at: Option<Timestamp>,
}

impl Message {
    /// A message for [`Broker::handle_publish`](super::Broker::handle_publish): no properties,
    /// no publisher, no expiry (set `properties.message_expiry_interval` for one).
    #[must_use]
    pub fn new(topic: TopicName, payload: impl Into<Bytes>, qos: QoS, retain: bool) -> Self {
        Self {
            topic,
            payload: payload.into(),
            qos,
            retain,
            properties: Properties::default(),
            publisher: None,
            expires_at: None,
        }
    }

    /// Whether the message has expired at `now`.
    #[must_use]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The Message Expiry Interval to forward at `now`: the received value minus the time the
    /// message waited, rounded up. [MQTT-3.3.2-6]
    #[must_use]
    pub fn remaining_expiry(&self, now: Timestamp) -> Option<u32> {
        self.expires_at.map(|t| {
            let ms = t.as_millis().saturating_sub(now.as_millis());
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }

    /// The payload and topic size, for queue accounting.
    #[must_use]
    pub fn size(&self) -> usize {
        self.payload.len() + self.topic.len()
    }
}
