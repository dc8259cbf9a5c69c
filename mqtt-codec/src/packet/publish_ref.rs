//! PUBLISH borrowed from the input: [`PublishRef`] and its [`PropertiesRef`].
//!
//! The owned [`Publish`] shares the input `Bytes` (reference counts, no copies) and holds every
//! property in one [`Properties`] struct. [`PublishRef`] is for the hot path of a broker or a
//! client that only looks at a message and passes it on: it borrows the topic, the payload and
//! the properties (in wire form) from a `&[u8]`, so decoding touches nothing but the packet's
//! bytes. It is validated exactly as [`Publish`] is — the same rules, the same [`Violation`]
//! for the same input (a property test and the fuzz targets check the two agree) — and
//! converts to a [`Publish`] with [`PublishRef::to_publish`].
//!
//! ```
//! use mqtt_codec::{Decoder, ProtocolVersion, PublishRef, Status, read_fixed_header};
//!
//! // A 3.1.1 PUBLISH, QoS 0, topic "a/b", payload "hi".
//! let wire = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
//! let Status::Complete(header) = read_fixed_header(&wire, Some(ProtocolVersion::V3_1_1), u32::MAX)?
//! else { unreachable!() };
//! let body = &wire[header.header_length..header.packet_length()];
//! let publish = PublishRef::decode(header.first_byte, body, ProtocolVersion::V3_1_1)?;
//! assert_eq!((publish.topic(), publish.payload), ("a/b", &b"hi"[..]));
//!
//! let mut out = bytes::BytesMut::new();
//! publish.encode(ProtocolVersion::V3_1_1, &mut out)?;
//! assert_eq!(&out[..], &wire[..]);
//! # Ok::<(), mqtt_codec::Error>(())
//! ```

use crate::prelude::*;
use crate::wire::{Sink, put_binary};
use bytes::{Bytes, BytesMut};
use nom::bytes::complete::take;

use super::Publish;
use crate::error::{Error, Violation};
use crate::properties::{Properties, PropertyContext, PropertyId, raw_value, validate_raw};
use crate::types::scan::null_and_wildcard as scan;
use crate::types::vbi::put_vbi;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS, VBI_MAX, vbi_len};
use crate::wire::{PResult, binary, fail, packet_id, vbi};

/// A PUBLISH packet borrowed from the bytes it was decoded from (or built from borrowed parts
/// to encode). See the [module documentation](self).
///
/// The topic and the properties are valid by construction ([`PublishRef::new`],
/// [`PublishRef::set_topic`], [`PropertiesRef::new`], or a decoder), so encoding checks only
/// what the public fields can break: DUP with QoS 0, and the Packet Identifier against the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRef<'a> {
    /// DUP: this is a re-delivery.
    pub dup: bool,
    /// The QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// The Topic Name, valid by construction (see [`PublishRef::topic`]).
    topic: &'a str,
    /// The Packet Identifier: present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// The properties (MQTT 5.0), in wire form.
    pub properties: PropertiesRef<'a>,
    /// The Application Message.
    pub payload: &'a [u8],
}

/// A property list borrowed from the input, as it is on the wire (without the Property
/// Length), checked for where it stands: a PUBLISH ([`PropertiesRef::new`]), the context given
/// to [`PropertiesRef::new_in`], or the packet a [`crate::PacketRef`] decoded it in. It does
/// not remember which: [`PropertiesRef::to_properties_in`] takes the context again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertiesRef<'a> {
    bytes: &'a [u8],
}

impl Default for PropertiesRef<'_> {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// One property's value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PropertyValue<'a> {
    /// A Byte (Payload Format Indicator, Maximum QoS, the boolean properties).
    Byte(u8),
    /// A Two Byte Integer.
    TwoByteInteger(u16),
    /// A Four Byte Integer.
    FourByteInteger(u32),
    /// A Variable Byte Integer (Subscription Identifier).
    VariableByteInteger(u32),
    /// A UTF-8 Encoded String.
    Utf8(&'a str),
    /// Binary Data.
    Binary(&'a [u8]),
    /// A UTF-8 String Pair (User Property).
    Pair(&'a str, &'a str),
}

impl<'a> PropertiesRef<'a> {
    /// No properties.
    pub const EMPTY: Self = Self { bytes: &[] };

    /// Checks `bytes` (properties in wire form, without the Property Length) as the decoder
    /// checks the properties of a PUBLISH.
    ///
    /// # Errors
    /// The first violation, as [`Properties`] decoding would report it.
    pub fn new(bytes: &'a [u8]) -> Result<Self, Violation> {
        Self::new_in(bytes, PropertyContext::Packet(PacketType::Publish))
    }

    /// Checks `bytes` (properties in wire form, without the Property Length) as the decoder
    /// checks the properties of `ctx`.
    ///
    /// # Errors
    /// The first violation, as [`Properties`] decoding would report it.
    pub fn new_in(bytes: &'a [u8], ctx: PropertyContext) -> Result<Self, Violation> {
        validate_raw(bytes, ctx)?;
        Ok(Self { bytes })
    }

    /// `bytes`, checked by the caller.
    pub(crate) const fn checked(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The properties in wire form (without the Property Length).
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The properties in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (PropertyId, PropertyValue<'a>)> + 'a {
        let mut rest = self.bytes;
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            // Validated on construction: a failure here cannot happen, and ends the iteration.
            let (i, raw) = vbi(rest).ok()?;
            let id = PropertyId::from_u32(raw)?;
            let (i, value) = raw_value(i, id).ok()?;
            rest = i;
            Some((id, value))
        })
    }

    /// The first value of property `id`, if present.
    #[must_use]
    pub fn get(&self, id: PropertyId) -> Option<PropertyValue<'a>> {
        self.iter().find(|&(i, _)| i == id).map(|(_, v)| v)
    }

    /// The Topic Alias, if present.
    #[must_use]
    pub fn topic_alias(&self) -> Option<u16> {
        match self.get(PropertyId::TopicAlias) {
            Some(PropertyValue::TwoByteInteger(v)) => Some(v),
            _ => None,
        }
    }

    /// The Message Expiry Interval, if present.
    #[must_use]
    pub fn message_expiry_interval(&self) -> Option<u32> {
        match self.get(PropertyId::MessageExpiryInterval) {
            Some(PropertyValue::FourByteInteger(v)) => Some(v),
            _ => None,
        }
    }

    /// The Reason String, if present.
    #[must_use]
    pub fn reason_string(&self) -> Option<&'a str> {
        match self.get(PropertyId::ReasonString) {
            Some(PropertyValue::Utf8(s)) => Some(s),
            _ => None,
        }
    }

    /// The User Properties, in order.
    pub fn user_properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.iter().filter_map(|(_, v)| match v {
            PropertyValue::Pair(k, v) => Some((k, v)),
            _ => None,
        })
    }

    /// The owned [`Properties`] of a PUBLISH's list (strings and binary data copied). For the
    /// list of another packet, use [`PropertiesRef::to_properties_in`]: this one is empty when
    /// the list is not valid in a PUBLISH.
    #[must_use]
    pub fn to_properties(&self) -> Properties {
        self.to_properties_in(PropertyContext::Packet(PacketType::Publish))
            .unwrap_or_default()
    }

    /// The owned [`Properties`] of a list that stands in `ctx` (strings and binary data
    /// copied).
    ///
    /// # Errors
    /// What decoding the list in `ctx` refuses: a list checked for another packet type may
    /// hold properties `ctx` does not allow.
    pub fn to_properties_in(&self, ctx: PropertyContext) -> Result<Properties, Violation> {
        let mut wire = Vec::with_capacity(self.bytes.len() + 4);
        put_vbi(
            &mut wire,
            u32::try_from(self.bytes.len()).unwrap_or(VBI_MAX),
        );
        wire.extend_from_slice(self.bytes);
        let wire = Bytes::from(wire);
        Properties::parse(&wire, &wire, ctx)
            .map(|(_, p)| p)
            .map_err(crate::wire::violation_of)
    }
}

impl<'a> PublishRef<'a> {
    /// A QoS 0 message, not retained, without properties, after checking the topic: a UTF-8
    /// Encoded String without U+0000 ([MQTT-1.5.4-2]) and without wildcards ([MQTT-3.3.2-2]).
    /// (An empty topic is allowed here, for use with a Topic Alias; encoding refuses it
    /// without one.)
    ///
    /// # Errors
    /// [`Violation::NullCharacter`], [`Violation::TopicNameWildcard`] or
    /// [`Violation::FieldTooLong`].
    pub fn new(topic: &'a str, payload: &'a [u8]) -> Result<Self, Violation> {
        check_topic_str(topic)?;
        Ok(Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: None,
            properties: PropertiesRef::EMPTY,
            payload,
        })
    }

    /// The Topic Name (empty only with a Topic Alias, MQTT 5.0).
    #[must_use]
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// Replaces the Topic Name, checked as in [`PublishRef::new`].
    ///
    /// # Errors
    /// As [`PublishRef::new`]; the topic is unchanged then.
    pub fn set_topic(&mut self, topic: &'a str) -> Result<(), Violation> {
        check_topic_str(topic)?;
        self.topic = topic;
        Ok(())
    }

    /// Decodes a PUBLISH from its first byte and its body (exactly Remaining Length bytes, as
    /// [`crate::read_fixed_header`] frames it), for a connection of `version`.
    ///
    /// # Errors
    /// The first violation found, with the same [`Violation`] as [`crate::Packet::decode_body`]
    /// gives for the same bytes; [`Violation::InvalidPacketType`] when `first_byte` is not a
    /// PUBLISH.
    #[inline]
    pub fn decode(first_byte: u8, body: &'a [u8], version: ProtocolVersion) -> Result<Self, Error> {
        let ty = PacketType::from_nibble(first_byte >> 4);
        if ty != Some(PacketType::Publish) {
            return Err(Error::new(Violation::InvalidPacketType, ty, Some(version)));
        }
        Self::parse(body, first_byte & 0x0F, version)
            .map_err(|v| Error::new(v, Some(PacketType::Publish), Some(version)))
    }

    #[inline]
    fn parse(i: &'a [u8], flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let (dup, qos, retain) = super::publish::publish_flags(flags)?;
        let parsed: PResult<'a, (&'a str, Option<PacketId>, &'a [u8])> = (|| {
            // [MQTT-3.3.2-1] a UTF-8 Encoded String; [MQTT-3.3.2-2] without wildcards.
            let (i, topic) = binary(i)?;
            let topic = match check_topic(topic) {
                Ok(t) => t,
                Err(v) => return fail(v),
            };
            let (i, packet_id) = if qos == QoS::AtMostOnce {
                (i, None)
            } else {
                let (i, id) = packet_id(i)?;
                (i, Some(id))
            };
            let (i, properties) = if version.is_v5() {
                let (i, len) = vbi(i)?;
                take(len)(i)?
            } else {
                (i, &[][..])
            };
            Ok((i, (topic, packet_id, properties)))
        })();
        let (payload, (topic, packet_id, properties)) =
            parsed.map_err(crate::wire::violation_of)?;
        let properties = PropertiesRef::new(properties)?;
        // v3.1.1 [MQTT-4.7.3-1]; v5 section 3.3.2.1: an empty Topic Name needs a Topic Alias.
        if topic.is_empty() && properties.topic_alias().is_none() {
            return Err(Violation::TopicNameEmpty);
        }
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    }

    /// The owned [`Publish`] (topic, properties and payload copied).
    #[must_use]
    pub fn to_publish(&self) -> Publish {
        let topic =
            crate::TopicName::try_from(self.topic).unwrap_or_else(|_| crate::TopicName::empty());
        Publish {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic,
            packet_id: self.packet_id,
            properties: self.properties.to_properties(),
            payload: Bytes::copy_from_slice(self.payload),
        }
    }

    /// The Remaining Length, after checking what the decoder would reject.
    fn checked_body_len(&self, version: ProtocolVersion) -> Result<usize, Violation> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(Violation::DupWithQos0);
        }
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(Violation::PacketIdMismatch);
        }
        let properties = if version.is_v5() {
            // Built by `PropertiesRef::new` or a decoder: valid already.
            let len = self.properties.bytes.len();
            vbi_len(u32::try_from(len).unwrap_or(u32::MAX)) + len
        } else if self.properties.is_empty() {
            0
        } else {
            return Err(Violation::NotRepresentable);
        };
        if self.topic.is_empty() && self.properties.topic_alias().is_none() {
            return Err(Violation::TopicNameEmpty);
        }
        let len = 2
            + self.topic.len()
            + if self.packet_id.is_some() { 2 } else { 0 }
            + properties
            + self.payload.len();
        if len > VBI_MAX as usize {
            return Err(Violation::RemainingLengthTooLarge);
        }
        Ok(len)
    }

    /// The exact number of bytes [`PublishRef::encode`] writes.
    ///
    /// # Errors
    /// Whatever the decoder would reject in this packet.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, Error> {
        let body = self
            .checked_body_len(version)
            .map_err(|v| self.error(v, version))?;
        Ok(1 + vbi_len(u32::try_from(body).unwrap_or(VBI_MAX)) + body)
    }

    /// Encodes the packet for `version` at the end of `buf`; returns the bytes written.
    /// Nothing is written when the packet is invalid.
    ///
    /// # Errors
    /// Whatever the decoder would reject in this packet.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<usize, Error> {
        let body = self
            .checked_body_len(version)
            .map_err(|v| self.error(v, version))?;
        let body32 = u32::try_from(body).unwrap_or(VBI_MAX);
        let total = 1 + vbi_len(body32) + body;
        super::write_framed(buf, total, self.payload, |w| {
            self.write_head(version, body32, w);
        })
        .map_err(|v| self.error(v, version))
    }

    /// Everything before the payload.
    #[inline]
    fn write_head(&self, version: ProtocolVersion, body: u32, buf: &mut impl Sink) {
        buf.put_u8(
            (PacketType::Publish as u8) << 4
                | u8::from(self.dup) << 3
                | self.qos.bits() << 1
                | u8::from(self.retain),
        );
        put_vbi(buf, body);
        put_binary(buf, self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        if version.is_v5() {
            put_vbi(
                buf,
                u32::try_from(self.properties.bytes.len()).unwrap_or(VBI_MAX),
            );
            buf.put_slice(self.properties.bytes);
        }
    }

    fn error(&self, v: Violation, version: ProtocolVersion) -> Error {
        Error::new(v, Some(PacketType::Publish), Some(version))
    }
}

/// A Topic Name's bytes: a UTF-8 Encoded String (no U+0000, well-formed) without wildcards,
/// checked in the order the owned decoder checks them.
fn check_topic(b: &[u8]) -> Result<&str, Violation> {
    if b.len() > usize::from(u16::MAX) {
        return Err(Violation::FieldTooLong);
    }
    let (null, wildcard) = scan(b);
    if null {
        return Err(Violation::NullCharacter);
    }
    let s = core::str::from_utf8(b).map_err(|_| Violation::InvalidUtf8)?;
    if wildcard {
        return Err(Violation::TopicNameWildcard);
    }
    Ok(s)
}

/// [`check_topic`] for a `&str`, which is well-formed UTF-8 already: the length, U+0000 and
/// wildcards are left to check.
fn check_topic_str(topic: &str) -> Result<(), Violation> {
    if topic.len() > usize::from(u16::MAX) {
        return Err(Violation::FieldTooLong);
    }
    match scan(topic.as_bytes()) {
        (true, _) => Err(Violation::NullCharacter),
        (false, true) => Err(Violation::TopicNameWildcard),
        (false, false) => Ok(()),
    }
}
