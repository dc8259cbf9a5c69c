//! PUBLISH (section 3.3): an Application Message, the one packet whose payload is the user's.

use bytes::{Buf, Bytes, BytesMut};

use super::Body;
use crate::error::Violation;
use crate::properties::{Overrides, Properties, PropertyContext};
use crate::types::VBI_MAX;
use crate::types::vbi::put_vbi;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS, TopicName, vbi_len};
use crate::wire::{PResult, Sink, binary, fail, packet_id, put_binary, put_utf8};
use core::num::NonZeroU16;

/// PUBLISH (section 3.3).
///
/// `topic`, `payload` and every string and binary property share the buffer the packet was
/// decoded from. A QoS 1 or 2 PUBLISH has a `packet_id`; a QoS 0 one has none.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Publish {
    /// DUP: this is a re-delivery.
    pub dup: bool,
    /// The QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// The Topic Name (empty only with a Topic Alias, MQTT 5.0).
    pub topic: TopicName,
    /// The Packet Identifier: present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// Properties (MQTT 5.0).
    pub properties: Properties,
    /// The Application Message.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message, not retained, without properties.
    #[must_use]
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: Properties::default(),
            payload: payload.into(),
        }
    }

    /// Parses everything before the payload; what is left of `i` is the payload, and the
    /// returned packet's `payload` is empty.
    #[inline]
    fn parse_head<'a>(
        src: &Bytes,
        i: &'a [u8],
        flags: u8,
        version: ProtocolVersion,
    ) -> PResult<'a, Self> {
        let (dup, qos, retain) = match publish_flags(flags) {
            Ok(f) => f,
            Err(v) => return fail(v),
        };
        // [MQTT-3.3.2-1] The Topic Name MUST be present as the first field ... It MUST be a
        // UTF-8 Encoded String. [MQTT-3.3.2-2] The Topic Name in the PUBLISH packet MUST NOT
        // contain wildcard characters.
        let (i, topic) = binary(i)?;
        let topic = match TopicName::from_wire(src.slice_ref(topic)) {
            Ok(t) => t,
            Err(v) => return fail(v),
        };
        // v5 [MQTT-2.2.1-2], v3.1.1 [MQTT-2.3.1-5]: a Packet Identifier only when QoS > 0.
        let (i, packet_id) = if qos == QoS::AtMostOnce {
            (i, None)
        } else {
            let (i, id) = packet_id(i)?;
            (i, Some(id))
        };
        let (i, properties) = if version.is_v5() {
            Properties::parse(src, i, PropertyContext::Packet(PacketType::Publish))?
        } else {
            (i, Properties::default())
        };
        // v3.1.1 [MQTT-4.7.3-1]; v5 section 3.3.2.1: "It is a Protocol Error if the Topic Name
        // is zero length and there is no Topic Alias."
        if topic.is_empty() && properties.topic_alias.is_none() {
            return fail(Violation::TopicNameEmpty);
        }
        Ok((
            i,
            Self {
                dup,
                qos,
                retain,
                topic,
                packet_id,
                properties,
                payload: Bytes::new(),
            },
        ))
    }

    /// Decodes the body of a PUBLISH that the caller owns: the payload is the rest of `body`
    /// (no new reference to the buffer for it).
    #[inline]
    pub(crate) fn decode_owned(
        mut body: Bytes,
        flags: u8,
        version: ProtocolVersion,
    ) -> Result<Self, Violation> {
        let (rest, mut publish) =
            Self::parse_head(&body, &body, flags, version).map_err(crate::wire::violation_of)?;
        let start = body.len() - rest.len();
        body.advance(start);
        publish.payload = body;
        Ok(publish)
    }
}

/// What changes when a broker sends one message to one subscriber (MQTT 5.0 section 3.3.4):
/// the flags, the Packet Identifier, the Topic Name when a Topic Alias replaces it, and the
/// three properties that belong to the delivery rather than to the message. See
/// [`Publish::encode_delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// DUP.
    pub dup: bool,
    /// The QoS of this delivery.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// The Packet Identifier: present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// Send an empty Topic Name: the receiver knows the topic by `topic_alias`.
    pub omit_topic: bool,
    /// The Topic Alias (5.0).
    pub topic_alias: Option<NonZeroU16>,
    /// The Message Expiry Interval left (5.0) [MQTT-3.3.2-6].
    pub message_expiry_interval: Option<u32>,
    /// The Subscription Identifiers of the matching subscriptions (5.0) [MQTT-3.3.4-3].
    pub subscription_identifiers: &'a [u32],
}

impl Publish {
    /// Encodes this message as `delivery` says: the same bytes as a copy of it with
    /// `delivery`'s fields set (the topic emptied for `omit_topic`) given to
    /// [`crate::Packet::encode_limited`], without making the copy. For MQTT 3.1.1 the
    /// properties are left out (a message from a 5.0 publisher goes to a 3.1.1 subscriber
    /// without them).
    ///
    /// # Errors
    /// What [`crate::Packet::encode_limited`] refuses, for the copy; nothing is written then.
    pub fn encode_delivery(
        &self,
        delivery: &Delivery<'_>,
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, crate::Error> {
        delivery.encode(
            &self.topic,
            &self.properties,
            &self.payload,
            version,
            max_packet_size,
            buf,
        )
    }
}

impl Publish {
    /// [`crate::Packet::encode_limited`] of this PUBLISH, without the general path's dispatch.
    #[inline]
    pub(crate) fn encode_packet(
        &self,
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, crate::Error> {
        let d = Delivery {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            packet_id: self.packet_id,
            omit_topic: false,
            topic_alias: self.properties.topic_alias,
            message_expiry_interval: self.properties.message_expiry_interval,
            subscription_identifiers: &[],
        };
        d.encode_message(
            self.topic.as_utf8().as_bytes(),
            &self.properties,
            &self.properties.own(),
            &self.payload,
            version,
            max_packet_size,
            buf,
            true,
        )
    }
}

impl Delivery<'_> {
    /// Encodes the message of `topic`, `properties` and `payload` (a stored message, in a
    /// broker) as this delivery of it; see [`Publish::encode_delivery`].
    ///
    /// # Errors
    /// As [`Publish::encode_delivery`].
    pub fn encode(
        &self,
        topic: &TopicName,
        properties: &Properties,
        payload: &[u8],
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, crate::Error> {
        let ov = Overrides {
            message_expiry_interval: self.message_expiry_interval,
            subscription_identifiers: Some(self.subscription_identifiers),
            topic_alias: self.topic_alias,
        };
        let topic: &[u8] = if self.omit_topic {
            &[]
        } else {
            topic.as_utf8().as_bytes()
        };
        self.encode_message(
            topic,
            properties,
            &ov,
            payload,
            version,
            max_packet_size,
            buf,
            false,
        )
    }

    /// Encodes a PUBLISH of this delivery's flags and Packet Identifier, `topic` and `payload`,
    /// with `properties` as `ov` changes them (in 5.0). Before 5.0 the properties are left out,
    /// or, with `refuse_v311_properties`, refused if there are any (the owned [`Publish`]'s
    /// encoder: [`Violation::NotRepresentable`]). Checks in the order of the general encoder,
    /// so that both refuse a packet with the same violation.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn encode_message(
        &self,
        topic: &[u8],
        properties: &Properties,
        ov: &Overrides<'_>,
        payload: &[u8],
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
        refuse_v311_properties: bool,
    ) -> Result<usize, crate::Error> {
        let err = |v| crate::Error::new(v, Some(PacketType::Publish), Some(version));
        let d = self;
        if d.dup && d.qos == QoS::AtMostOnce {
            return Err(err(Violation::DupWithQos0));
        }
        if (d.qos == QoS::AtMostOnce) != d.packet_id.is_none() {
            return Err(err(Violation::PacketIdMismatch));
        }
        let v5 = version.is_v5();
        let props_len = if v5 {
            properties
                .checked_len_with(PropertyContext::Packet(PacketType::Publish), ov)
                .map_err(err)?
        } else if refuse_v311_properties && !properties.is_empty() {
            return Err(err(Violation::NotRepresentable));
        } else {
            0
        };
        let alias = if v5 { ov.topic_alias } else { None };
        if topic.is_empty() && alias.is_none() {
            return Err(err(Violation::TopicNameEmpty));
        }
        let body = 2
            + topic.len()
            + if d.packet_id.is_some() { 2 } else { 0 }
            + if v5 {
                vbi_len(u32::try_from(props_len).unwrap_or(u32::MAX)) + props_len
            } else {
                0
            }
            + payload.len();
        if body > VBI_MAX as usize {
            return Err(err(Violation::RemainingLengthTooLarge));
        }
        let body32 = u32::try_from(body).unwrap_or(VBI_MAX);
        let total = 1 + vbi_len(body32) + body;
        if total > max_packet_size as usize {
            return Err(err(Violation::PacketTooLarge));
        }
        let first = (PacketType::Publish as u8) << 4
            | u8::from(d.dup) << 3
            | d.qos.bits() << 1
            | u8::from(d.retain);
        super::write_framed(buf, total, payload, |w| {
            self.write_head(first, body32, topic, properties, props_len, ov, v5, w);
        })
        .map_err(err)
    }

    /// Everything of the delivery's PUBLISH before its payload.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn write_head(
        &self,
        first: u8,
        body: u32,
        topic: &[u8],
        properties: &Properties,
        props_len: usize,
        ov: &Overrides<'_>,
        v5: bool,
        buf: &mut impl Sink,
    ) {
        buf.put_u8(first);
        put_vbi(buf, body);
        put_binary(buf, topic);
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        if v5 {
            properties.write_with_len_with(props_len, ov, buf);
        }
    }
}

/// The DUP, QoS and RETAIN of a PUBLISH's fixed header, checked.
pub(super) fn publish_flags(flags: u8) -> Result<(bool, QoS, bool), Violation> {
    let dup = flags & 0b1000 != 0;
    let retain = flags & 0b0001 != 0;
    // [MQTT-3.3.1-4] A PUBLISH Packet MUST NOT have both QoS bits set to 1.
    let Some(qos) = QoS::from_bits((flags >> 1) & 0b11) else {
        return Err(Violation::InvalidQos);
    };
    // [MQTT-3.3.1-2] The DUP flag MUST be set to 0 for all QoS 0 messages.
    if dup && qos == QoS::AtMostOnce {
        return Err(Violation::DupWithQos0);
    }
    Ok((dup, qos, retain))
}

impl Publish {
    /// The body without the properties: topic, Packet Identifier, payload.
    fn fixed_len(&self) -> usize {
        self.topic.as_utf8().encoded_len()
            + if self.packet_id.is_some() { 2 } else { 0 }
            + self.payload.len()
    }
}

/// The Property Length `n` whose encoding with its VBI takes `wire` bytes (`vbi_len(n) + n`).
fn property_len_of_wire(wire: usize) -> usize {
    (1..=4)
        .map(|k| wire.saturating_sub(k))
        .find(|&n| vbi_len(u32::try_from(n).unwrap_or(u32::MAX)) + n == wire)
        .unwrap_or(0)
}

impl Body for Publish {
    const TYPE: PacketType = PacketType::Publish;

    #[inline]
    fn decode(src: &Bytes, flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let (rest, mut publish) =
            Self::parse_head(src, src, flags, version).map_err(crate::wire::violation_of)?;
        publish.payload = src.slice_ref(rest);
        Ok(publish)
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        self.checked_body_len(version).map(|_| ())
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let properties = if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        };
        self.fixed_len() + properties
    }

    fn checked_body_len(&self, version: ProtocolVersion) -> Result<usize, Violation> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(Violation::DupWithQos0);
        }
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(Violation::PacketIdMismatch);
        }
        let properties = if version.is_v5() {
            let len = self
                .properties
                .checked_len(PropertyContext::Packet(PacketType::Publish))?;
            vbi_len(u32::try_from(len).unwrap_or(u32::MAX)) + len
        } else if self.properties.is_empty() {
            0
        } else {
            return Err(Violation::NotRepresentable);
        };
        if self.topic.is_empty() && self.properties.topic_alias.is_none() {
            return Err(Violation::TopicNameEmpty);
        }
        Ok(self.fixed_len() + properties)
    }

    fn flags(&self) -> u8 {
        u8::from(self.dup) << 3 | self.qos.bits() << 1 | u8::from(self.retain)
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl Sink) {
        self.write_sized(version, self.body_len(version), buf);
    }

    #[inline]
    fn tail(&self) -> &[u8] {
        &self.payload
    }

    fn write_sized(&self, version: ProtocolVersion, body_len: usize, buf: &mut impl Sink) {
        put_utf8(buf, self.topic.as_utf8());
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        if version.is_v5() {
            // The Property Length is what the body leaves after the other fields and the
            // Property Length's own encoding.
            let wire = body_len.saturating_sub(self.fixed_len());
            self.properties
                .write_with_len(property_len_of_wire(wire), buf);
        }
    }
}
