//! Application Messages as the broker keeps them: received once, shared by every session they
//! are delivered to.

use crate::prelude::*;
use alloc::sync::Arc;
use core::ops::{Deref, DerefMut};

use bytes::Bytes;
use mqtt_codec::{Properties, QoS, TopicName};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// part of the message. Read and written as a [`Properties`] (through `Deref`), stored
    /// only when there are any (see [`MessageProperties`]).
    pub properties: MessageProperties,
    /// The Client Identifier of the publisher (for No Local), if a client published it;
    /// shared with the publisher's connection (no copy per message).
    pub publisher: Option<Arc<str>>,
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
            properties: MessageProperties::default(),
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

/// A message's properties, kept on the heap only when it has any: a message without
/// properties (most of them) costs one pointer here instead of a [`Properties`] (384 bytes),
/// which matters for every message a broker holds in a queue. It reads as a [`Properties`]
/// (`Deref`); writing through it (`DerefMut`) stores them.
#[derive(Clone, Default)]
pub struct MessageProperties(Option<Box<Properties>>);

impl MessageProperties {
    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(Properties::is_empty)
    }

    /// The properties, taken out.
    #[must_use]
    pub fn into_inner(self) -> Properties {
        self.0.map(|b| *b).unwrap_or_default()
    }
}

/// The empty properties a message without any reads as.
fn no_properties() -> &'static Properties {
    static EMPTY: once_cell::race::OnceBox<Properties> = once_cell::race::OnceBox::new();
    EMPTY.get_or_init(|| Box::new(Properties::default()))
}

impl Deref for MessageProperties {
    type Target = Properties;

    fn deref(&self) -> &Properties {
        self.0.as_deref().unwrap_or_else(|| no_properties())
    }
}

impl DerefMut for MessageProperties {
    fn deref_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl From<Properties> for MessageProperties {
    fn from(p: Properties) -> Self {
        if p.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::new(p)))
        }
    }
}

impl PartialEq for MessageProperties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for MessageProperties {}

impl core::fmt::Debug for MessageProperties {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for MessageProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MessageProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Properties::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_stored_only_when_there_are_any() {
        assert_eq!(
            core::mem::size_of::<MessageProperties>(),
            core::mem::size_of::<usize>()
        );
        let empty = MessageProperties::from(Properties::default());
        assert!(empty.0.is_none());
        assert!(empty.is_empty());
        assert_eq!(empty.content_type(), None);

        let mut some = Properties::default();
        some.set_content_type(Some("text/plain".try_into().unwrap_or_default()));
        let stored = MessageProperties::from(some.clone());
        assert!(stored.0.is_some());
        assert_eq!(*stored, some);

        // Written through: stored then; equal to the same properties however they are held.
        let mut written = MessageProperties::default();
        // Through DerefMut (what the lint suggests would not exercise it).
        #[allow(clippy::field_reassign_with_default)]
        {
            written.set_content_type(some.content_type().and_then(|c| c.try_into().ok()));
        }
        assert_eq!(written, stored);
        assert_ne!(written, empty);
        assert_eq!(MessageProperties::default(), empty);
        assert_eq!(stored.clone().into_inner(), some);
        assert_eq!(format!("{empty:?}"), format!("{:?}", Properties::default()));
    }
}
