//! MQTT 5.0 properties (section 2.2.2): one struct with a field per property, the
//! specification's per-packet allow-list, its duplicate rule and its value rules.
//!
//! Decoding and encoding enforce the same rules: a property not valid for the packet is a
//! Malformed Packet; a property other than User Property (and Subscription Identifier in PUBLISH)
//! given twice, a boolean other than 0 or 1, a zero where the value must be non-zero, Maximum QoS
//! 2, or Authentication Data without an Authentication Method is a Protocol Error.

use crate::prelude::*;
use core::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes};
use nom::bytes::complete::take;

use crate::error::Violation;
use crate::types::vbi::put_vbi;
use crate::types::{PacketType, QoS, TopicName, Utf8String, VBI_MAX, vbi_len};
use crate::wire::{
    PResult, binary_bytes, check_binary, fail, put_binary, put_utf8, u8_, u16_, u32_, utf8, vbi,
};

/// Where a property list stands: in a packet, or in the Will Properties of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyContext {
    /// The properties of a packet of this type.
    Packet(PacketType),
    /// The Will Properties in the CONNECT payload.
    Will,
}

/// The Payload Format Indicator (property 0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum PayloadFormatIndicator {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

/// Property identifiers (Table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are the specification's
#[non_exhaustive]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQos = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    /// The identifier for a value read from the wire.
    #[must_use]
    pub const fn from_u32(id: u32) -> Option<Self> {
        use PropertyId as P;
        Some(match id {
            0x01 => P::PayloadFormatIndicator,
            0x02 => P::MessageExpiryInterval,
            0x03 => P::ContentType,
            0x08 => P::ResponseTopic,
            0x09 => P::CorrelationData,
            0x0B => P::SubscriptionIdentifier,
            0x11 => P::SessionExpiryInterval,
            0x12 => P::AssignedClientIdentifier,
            0x13 => P::ServerKeepAlive,
            0x15 => P::AuthenticationMethod,
            0x16 => P::AuthenticationData,
            0x17 => P::RequestProblemInformation,
            0x18 => P::WillDelayInterval,
            0x19 => P::RequestResponseInformation,
            0x1A => P::ResponseInformation,
            0x1C => P::ServerReference,
            0x1F => P::ReasonString,
            0x21 => P::ReceiveMaximum,
            0x22 => P::TopicAliasMaximum,
            0x23 => P::TopicAlias,
            0x24 => P::MaximumQos,
            0x25 => P::RetainAvailable,
            0x26 => P::UserProperty,
            0x27 => P::MaximumPacketSize,
            0x28 => P::WildcardSubscriptionAvailable,
            0x29 => P::SubscriptionIdentifierAvailable,
            0x2A => P::SharedSubscriptionAvailable,
            _ => return None,
        })
    }

    /// Whether the property may appear in `ctx` (the last column of Table 2-4).
    #[must_use]
    pub const fn is_allowed_in(self, ctx: PropertyContext) -> bool {
        use PacketType as T;
        use PropertyContext::{Packet, Will};
        use PropertyId as P;
        match self {
            P::PayloadFormatIndicator
            | P::MessageExpiryInterval
            | P::ContentType
            | P::ResponseTopic
            | P::CorrelationData => matches!(ctx, Packet(T::Publish) | Will),
            P::SubscriptionIdentifier => matches!(ctx, Packet(T::Publish | T::Subscribe)),
            P::SessionExpiryInterval => {
                matches!(ctx, Packet(T::Connect | T::ConnAck | T::Disconnect))
            }
            P::AssignedClientIdentifier
            | P::ServerKeepAlive
            | P::ResponseInformation
            | P::MaximumQos
            | P::RetainAvailable
            | P::WildcardSubscriptionAvailable
            | P::SubscriptionIdentifierAvailable
            | P::SharedSubscriptionAvailable => matches!(ctx, Packet(T::ConnAck)),
            P::AuthenticationMethod | P::AuthenticationData => {
                matches!(ctx, Packet(T::Connect | T::ConnAck | T::Auth))
            }
            P::RequestProblemInformation | P::RequestResponseInformation => {
                matches!(ctx, Packet(T::Connect))
            }
            P::WillDelayInterval => matches!(ctx, Will),
            P::ServerReference => matches!(ctx, Packet(T::ConnAck | T::Disconnect)),
            P::ReasonString => matches!(
                ctx,
                Packet(
                    T::ConnAck
                        | T::PubAck
                        | T::PubRec
                        | T::PubRel
                        | T::PubComp
                        | T::SubAck
                        | T::UnsubAck
                        | T::Disconnect
                        | T::Auth
                )
            ),
            P::ReceiveMaximum | P::TopicAliasMaximum | P::MaximumPacketSize => {
                matches!(ctx, Packet(T::Connect | T::ConnAck))
            }
            P::TopicAlias => matches!(ctx, Packet(T::Publish)),
            P::UserProperty => !matches!(ctx, Packet(T::PingReq | T::PingResp)),
        }
    }
}

/// The properties of a packet (or of a will). Absent properties are `None` or empty.
///
/// User Properties keep their order. Subscription Identifiers is a list because a PUBLISH from
/// a server may carry several; everywhere else it holds at most one.
#[derive(Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
// `Debug` is written by hand: it shows the Authentication Data's length, not its bytes.
// With serde, absent properties are left out of the serialized form (and default when
// missing): use a self-describing format (JSON, CBOR, MessagePack with field names).
#[cfg_attr(feature = "serde", serde(default))]
#[allow(missing_docs)] // each field is the property of the same name in section 2.2.2
pub struct Properties {
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub payload_format_indicator: Option<PayloadFormatIndicator>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub message_expiry_interval: Option<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub content_type: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub response_topic: Option<TopicName>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub correlation_data: Option<Bytes>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub subscription_identifiers: Vec<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub session_expiry_interval: Option<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub assigned_client_identifier: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub server_keep_alive: Option<u16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub authentication_method: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub authentication_data: Option<Bytes>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub request_problem_information: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub will_delay_interval: Option<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub request_response_information: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub response_information: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub server_reference: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub reason_string: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub receive_maximum: Option<NonZeroU16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub topic_alias_maximum: Option<u16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub topic_alias: Option<NonZeroU16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub maximum_qos: Option<QoS>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub retain_available: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub user_properties: Vec<(Utf8String, Utf8String)>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub maximum_packet_size: Option<NonZeroU32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub wildcard_subscription_available: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub subscription_identifier_available: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub shared_subscription_available: Option<bool>,
}

impl core::fmt::Debug for Properties {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Properties")
            .field("payload_format_indicator", &self.payload_format_indicator)
            .field("message_expiry_interval", &self.message_expiry_interval)
            .field("content_type", &self.content_type)
            .field("response_topic", &self.response_topic)
            .field("correlation_data", &self.correlation_data)
            .field("subscription_identifiers", &self.subscription_identifiers)
            .field("session_expiry_interval", &self.session_expiry_interval)
            .field(
                "assigned_client_identifier",
                &self.assigned_client_identifier,
            )
            .field("server_keep_alive", &self.server_keep_alive)
            .field("authentication_method", &self.authentication_method)
            .field(
                "authentication_data",
                &self.authentication_data.as_ref().map(|d| Redacted(d.len())),
            )
            .field(
                "request_problem_information",
                &self.request_problem_information,
            )
            .field("will_delay_interval", &self.will_delay_interval)
            .field(
                "request_response_information",
                &self.request_response_information,
            )
            .field("response_information", &self.response_information)
            .field("server_reference", &self.server_reference)
            .field("reason_string", &self.reason_string)
            .field("receive_maximum", &self.receive_maximum)
            .field("topic_alias_maximum", &self.topic_alias_maximum)
            .field("topic_alias", &self.topic_alias)
            .field("maximum_qos", &self.maximum_qos)
            .field("retain_available", &self.retain_available)
            .field("user_properties", &self.user_properties)
            .field("maximum_packet_size", &self.maximum_packet_size)
            .field(
                "wildcard_subscription_available",
                &self.wildcard_subscription_available,
            )
            .field(
                "subscription_identifier_available",
                &self.subscription_identifier_available,
            )
            .field(
                "shared_subscription_available",
                &self.shared_subscription_available,
            )
            .finish()
    }
}

/// A secret in `Debug` output: its length only.
pub(crate) struct Redacted(pub(crate) usize);

impl core::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

fn bool_value(i: &[u8]) -> PResult<'_, bool> {
    let (i, b) = u8_(i)?;
    match b {
        0 => Ok((i, false)),
        1 => Ok((i, true)),
        _ => fail(Violation::InvalidPropertyValue),
    }
}

/// Stores `value` into an `Option` field, refusing a second occurrence.
fn set_once<'a, T>(slot: &mut Option<T>, i: &'a [u8], value: T) -> PResult<'a, ()> {
    if slot.is_some() {
        return fail(Violation::DuplicateProperty);
    }
    *slot = Some(value);
    Ok((i, ()))
}

/// The three properties that change from one delivery of a message to the next (MQTT 5.0
/// section 3.3.4: the Message Expiry Interval counts down, the Subscription Identifiers and
/// the Topic Alias are the subscriber's), for encoding a message for a subscriber without
/// copying its other properties.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Overrides<'a> {
    pub(crate) message_expiry_interval: Option<u32>,
    pub(crate) subscription_identifiers: &'a [u32],
    pub(crate) topic_alias: Option<NonZeroU16>,
}

/// The properties in the order [`Properties`] encodes them (the order of its fields).
const ENCODING_ORDER: [PropertyId; 27] = {
    use PropertyId as P;
    [
        P::PayloadFormatIndicator,
        P::MessageExpiryInterval,
        P::ContentType,
        P::ResponseTopic,
        P::CorrelationData,
        P::SubscriptionIdentifier,
        P::SessionExpiryInterval,
        P::AssignedClientIdentifier,
        P::ServerKeepAlive,
        P::AuthenticationMethod,
        P::AuthenticationData,
        P::RequestProblemInformation,
        P::WillDelayInterval,
        P::RequestResponseInformation,
        P::ResponseInformation,
        P::ServerReference,
        P::ReasonString,
        P::ReceiveMaximum,
        P::TopicAliasMaximum,
        P::TopicAlias,
        P::MaximumQos,
        P::RetainAvailable,
        P::UserProperty,
        P::MaximumPacketSize,
        P::WildcardSubscriptionAvailable,
        P::SubscriptionIdentifierAvailable,
        P::SharedSubscriptionAvailable,
    ]
};

impl Properties {
    /// These properties' own values of the fields [`Overrides`] can replace.
    fn own(&self) -> Overrides<'_> {
        Overrides {
            message_expiry_interval: self.message_expiry_interval,
            subscription_identifiers: &self.subscription_identifiers,
            topic_alias: self.topic_alias,
        }
    }

    /// Whether no property is present.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.presence() == 0
    }

    /// Parses a Property Length and the properties it covers, as allowed in `ctx`.
    pub(crate) fn parse<'a>(src: &Bytes, i: &'a [u8], ctx: PropertyContext) -> PResult<'a, Self> {
        let (rest, len) = vbi(i)?;
        let (rest, mut p) = take(len)(rest)?;
        let mut props = Self::default();
        while !p.is_empty() {
            let (i, raw) = vbi(p)?;
            let Some(id) = PropertyId::from_u32(raw) else {
                return fail(Violation::UnknownProperty);
            };
            // A Control Packet which contains an Identifier which is not valid for its packet
            // type ... is a Malformed Packet. (section 2.2.2.2)
            if !id.is_allowed_in(ctx) {
                return fail(Violation::PropertyNotAllowed);
            }
            p = props.parse_value(src, i, id, ctx)?.0;
        }
        // It is a Protocol Error to include Authentication Data if there is no Authentication
        // Method. (section 3.1.2.11.10)
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return fail(Violation::AuthenticationDataWithoutMethod);
        }
        Ok((rest, props))
    }

    fn parse_value<'a>(
        &mut self,
        src: &Bytes,
        i: &'a [u8],
        id: PropertyId,
        ctx: PropertyContext,
    ) -> PResult<'a, ()> {
        use PropertyId as P;
        match id {
            P::PayloadFormatIndicator => {
                let (i, b) = bool_value(i)?;
                let v = if b {
                    PayloadFormatIndicator::Utf8
                } else {
                    PayloadFormatIndicator::Unspecified
                };
                set_once(&mut self.payload_format_indicator, i, v)
            }
            P::MessageExpiryInterval => {
                let (i, v) = u32_(i)?;
                set_once(&mut self.message_expiry_interval, i, v)
            }
            P::ContentType => {
                let (i, v) = utf8(src, i)?;
                set_once(&mut self.content_type, i, v)
            }
            P::ResponseTopic => {
                let (i, v) = utf8(src, i)?;
                // v5 [MQTT-3.3.2-14] The Response Topic MUST NOT contain wildcard characters.
                match TopicName::new(v) {
                    Ok(t) if !t.is_empty() => set_once(&mut self.response_topic, i, t),
                    _ => fail(Violation::ResponseTopicInvalid),
                }
            }
            P::CorrelationData => {
                let (i, v) = binary_bytes(src, i)?;
                set_once(&mut self.correlation_data, i, v)
            }
            P::SubscriptionIdentifier => {
                let (i, v) = vbi(i)?;
                if v == 0 {
                    // It is a Protocol Error if the Subscription Identifier has a value of 0.
                    return fail(Violation::InvalidPropertyValue);
                }
                if ctx != PropertyContext::Packet(PacketType::Publish)
                    && !self.subscription_identifiers.is_empty()
                {
                    return fail(Violation::DuplicateProperty);
                }
                self.subscription_identifiers.push(v);
                Ok((i, ()))
            }
            P::SessionExpiryInterval => {
                let (i, v) = u32_(i)?;
                set_once(&mut self.session_expiry_interval, i, v)
            }
            P::AssignedClientIdentifier => {
                let (i, v) = utf8(src, i)?;
                set_once(&mut self.assigned_client_identifier, i, v)
            }
            P::ServerKeepAlive => {
                let (i, v) = u16_(i)?;
                set_once(&mut self.server_keep_alive, i, v)
            }
            P::AuthenticationMethod => {
                let (i, v) = utf8(src, i)?;
                set_once(&mut self.authentication_method, i, v)
            }
            P::AuthenticationData => {
                let (i, v) = binary_bytes(src, i)?;
                set_once(&mut self.authentication_data, i, v)
            }
            P::RequestProblemInformation => {
                let (i, v) = bool_value(i)?;
                set_once(&mut self.request_problem_information, i, v)
            }
            P::WillDelayInterval => {
                let (i, v) = u32_(i)?;
                set_once(&mut self.will_delay_interval, i, v)
            }
            P::RequestResponseInformation => {
                let (i, v) = bool_value(i)?;
                set_once(&mut self.request_response_information, i, v)
            }
            P::ResponseInformation => {
                let (i, v) = utf8(src, i)?;
                set_once(&mut self.response_information, i, v)
            }
            P::ServerReference => {
                let (i, v) = utf8(src, i)?;
                set_once(&mut self.server_reference, i, v)
            }
            P::ReasonString => {
                let (i, v) = utf8(src, i)?;
                set_once(&mut self.reason_string, i, v)
            }
            P::ReceiveMaximum => {
                let (i, v) = u16_(i)?;
                // It is a Protocol Error to include the Receive Maximum value ... of 0.
                let Some(v) = NonZeroU16::new(v) else {
                    return fail(Violation::InvalidPropertyValue);
                };
                set_once(&mut self.receive_maximum, i, v)
            }
            P::TopicAliasMaximum => {
                let (i, v) = u16_(i)?;
                set_once(&mut self.topic_alias_maximum, i, v)
            }
            P::TopicAlias => {
                let (i, v) = u16_(i)?;
                // v5 [MQTT-3.3.2-8] A sender MUST NOT send a PUBLISH packet containing a Topic
                // Alias which has the value 0.
                let Some(v) = NonZeroU16::new(v) else {
                    return fail(Violation::TopicAliasZero);
                };
                set_once(&mut self.topic_alias, i, v)
            }
            P::MaximumQos => {
                let (i, v) = u8_(i)?;
                let q = match v {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    // It is a Protocol Error to include Maximum QoS ... with a value other than 0
                    // or 1. (section 3.2.2.3.4)
                    _ => return fail(Violation::InvalidPropertyValue),
                };
                set_once(&mut self.maximum_qos, i, q)
            }
            P::RetainAvailable => {
                let (i, v) = bool_value(i)?;
                set_once(&mut self.retain_available, i, v)
            }
            P::UserProperty => {
                // v5 [MQTT-1.5.7-1] Both strings MUST comply with the requirements for UTF-8
                // Encoded Strings.
                let (i, k) = utf8(src, i)?;
                let (i, v) = utf8(src, i)?;
                self.user_properties.push((k, v));
                Ok((i, ()))
            }
            P::MaximumPacketSize => {
                let (i, v) = u32_(i)?;
                // It is a Protocol Error ... for the value to be set to zero.
                let Some(v) = NonZeroU32::new(v) else {
                    return fail(Violation::InvalidPropertyValue);
                };
                set_once(&mut self.maximum_packet_size, i, v)
            }
            P::WildcardSubscriptionAvailable => {
                let (i, v) = bool_value(i)?;
                set_once(&mut self.wildcard_subscription_available, i, v)
            }
            P::SubscriptionIdentifierAvailable => {
                let (i, v) = bool_value(i)?;
                set_once(&mut self.subscription_identifier_available, i, v)
            }
            P::SharedSubscriptionAvailable => {
                let (i, v) = bool_value(i)?;
                set_once(&mut self.shared_subscription_available, i, v)
            }
        }
    }

    /// The identifiers of the properties present, in the order they are encoded.
    pub fn present(&self) -> impl Iterator<Item = PropertyId> + '_ {
        let presence = self.presence();
        ENCODING_ORDER
            .iter()
            .enumerate()
            .filter(move |&(bit, _)| presence & (1 << bit) != 0)
            .map(|(_, &id)| id)
    }

    /// One bit per property present: bit `i` for `ENCODING_ORDER[i]`. Computed without
    /// branches, so that the common case — few properties or none — costs little in the
    /// encoder.
    fn presence(&self) -> u32 {
        self.presence_with(&self.own())
    }

    pub(crate) fn presence_with(&self, ov: &Overrides<'_>) -> u32 {
        // One OR per property, bit `i` for `ENCODING_ORDER[i]`, written out: a fold over an
        // array of flags cost about a fifth more, on every PUBLISH a broker encodes.
        u32::from(self.payload_format_indicator.is_some())
            | u32::from(ov.message_expiry_interval.is_some()) << 1
            | u32::from(self.content_type.is_some()) << 2
            | u32::from(self.response_topic.is_some()) << 3
            | u32::from(self.correlation_data.is_some()) << 4
            | u32::from(!ov.subscription_identifiers.is_empty()) << 5
            | u32::from(self.session_expiry_interval.is_some()) << 6
            | u32::from(self.assigned_client_identifier.is_some()) << 7
            | u32::from(self.server_keep_alive.is_some()) << 8
            | u32::from(self.authentication_method.is_some()) << 9
            | u32::from(self.authentication_data.is_some()) << 10
            | u32::from(self.request_problem_information.is_some()) << 11
            | u32::from(self.will_delay_interval.is_some()) << 12
            | u32::from(self.request_response_information.is_some()) << 13
            | u32::from(self.response_information.is_some()) << 14
            | u32::from(self.server_reference.is_some()) << 15
            | u32::from(self.reason_string.is_some()) << 16
            | u32::from(self.receive_maximum.is_some()) << 17
            | u32::from(self.topic_alias_maximum.is_some()) << 18
            | u32::from(ov.topic_alias.is_some()) << 19
            | u32::from(self.maximum_qos.is_some()) << 20
            | u32::from(self.retain_available.is_some()) << 21
            | u32::from(!self.user_properties.is_empty()) << 22
            | u32::from(self.maximum_packet_size.is_some()) << 23
            | u32::from(self.wildcard_subscription_available.is_some()) << 24
            | u32::from(self.subscription_identifier_available.is_some()) << 25
            | u32::from(self.shared_subscription_available.is_some()) << 26
    }

    /// Checks what the decoder checks, for the encoder: every property allowed in `ctx`, values
    /// in range, lengths that fit.
    ///
    /// # Errors
    /// The first violation found.
    pub fn validate(&self, ctx: PropertyContext) -> Result<(), Violation> {
        self.checked_len(ctx).map(|_| ())
    }

    /// [`Properties::validate`], returning [`Properties::len`]: the encoder's one pass over
    /// the properties before [`Properties::write_with_len`].
    pub(crate) fn checked_len(&self, ctx: PropertyContext) -> Result<usize, Violation> {
        self.checked_len_with(ctx, &self.own())
    }

    /// [`Properties::checked_len`] of these properties with `ov`'s three fields instead of
    /// their own.
    pub(crate) fn checked_len_with(
        &self,
        ctx: PropertyContext,
        ov: &Overrides<'_>,
    ) -> Result<usize, Violation> {
        let presence = self.presence_with(ov);
        if presence == 0 {
            return Ok(0);
        }
        if ENCODING_ORDER
            .iter()
            .enumerate()
            .any(|(bit, id)| presence & (1 << bit) != 0 && !id.is_allowed_in(ctx))
        {
            return Err(Violation::PropertyNotAllowed);
        }
        if ov.subscription_identifiers.len() > 1
            && ctx != PropertyContext::Packet(PacketType::Publish)
        {
            return Err(Violation::DuplicateProperty);
        }
        if ov
            .subscription_identifiers
            .iter()
            .any(|&v| v == 0 || v > VBI_MAX)
        {
            return Err(Violation::InvalidPropertyValue);
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(Violation::InvalidPropertyValue);
        }
        if self.response_topic.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(Violation::ResponseTopicInvalid);
        }
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(Violation::AuthenticationDataWithoutMethod);
        }
        for b in [&self.correlation_data, &self.authentication_data]
            .into_iter()
            .flatten()
        {
            check_binary(b)?;
        }
        let len = self.len_of_present(ov);
        if len > VBI_MAX as usize {
            return Err(Violation::RemainingLengthTooLarge);
        }
        Ok(len)
    }

    /// The length of the properties, without the Property Length in front of them.
    #[must_use]
    pub fn len(&self) -> usize {
        let ov = self.own();
        if self.presence_with(&ov) == 0 {
            return 0;
        }
        self.len_of_present(&ov)
    }

    fn len_of_present(&self, ov: &Overrides<'_>) -> usize {
        let s = |o: &Option<Utf8String>| o.as_ref().map_or(0, |s| 1 + s.encoded_len());
        let b = |o: &Option<Bytes>| o.as_ref().map_or(0, |b| 3 + b.len());
        let n = |present: bool, size: usize| if present { 1 + size } else { 0 };
        n(self.payload_format_indicator.is_some(), 1)
            + n(ov.message_expiry_interval.is_some(), 4)
            + s(&self.content_type)
            + self
                .response_topic
                .as_ref()
                .map_or(0, |t| 1 + t.as_utf8().encoded_len())
            + b(&self.correlation_data)
            + ov.subscription_identifiers
                .iter()
                .map(|&v| 1 + vbi_len(v))
                .sum::<usize>()
            + n(self.session_expiry_interval.is_some(), 4)
            + s(&self.assigned_client_identifier)
            + n(self.server_keep_alive.is_some(), 2)
            + s(&self.authentication_method)
            + b(&self.authentication_data)
            + n(self.request_problem_information.is_some(), 1)
            + n(self.will_delay_interval.is_some(), 4)
            + n(self.request_response_information.is_some(), 1)
            + s(&self.response_information)
            + s(&self.server_reference)
            + s(&self.reason_string)
            + n(self.receive_maximum.is_some(), 2)
            + n(self.topic_alias_maximum.is_some(), 2)
            + n(ov.topic_alias.is_some(), 2)
            + n(self.maximum_qos.is_some(), 1)
            + n(self.retain_available.is_some(), 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 1 + k.encoded_len() + v.encoded_len())
                .sum::<usize>()
            + n(self.maximum_packet_size.is_some(), 4)
            + n(self.wildcard_subscription_available.is_some(), 1)
            + n(self.subscription_identifier_available.is_some(), 1)
            + n(self.shared_subscription_available.is_some(), 1)
    }

    /// The length on the wire: the Property Length and the properties.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        let len = self.len();
        vbi_len(u32::try_from(len).unwrap_or(u32::MAX)) + len
    }

    /// Writes the Property Length and the properties (validated by the caller).
    pub(crate) fn write(&self, buf: &mut impl BufMut) {
        self.write_with_len(self.len(), buf);
    }

    /// [`Properties::write`] with the length already known (from
    /// [`Properties::checked_len`]).
    pub(crate) fn write_with_len(&self, len: usize, buf: &mut impl BufMut) {
        self.write_with_len_with(len, &self.own(), buf);
    }

    /// [`Properties::write_with_len`] with `ov`'s three fields instead of their own.
    pub(crate) fn write_with_len_with(
        &self,
        len: usize,
        ov: &Overrides<'_>,
        buf: &mut impl BufMut,
    ) {
        use PropertyId as P;
        put_vbi(buf, u32::try_from(len).unwrap_or(VBI_MAX));
        if len == 0 {
            return;
        }
        let id = |buf: &mut dyn BufMut, id: PropertyId| buf.put_u8(id as u8);
        if let Some(v) = self.payload_format_indicator {
            id(buf, P::PayloadFormatIndicator);
            buf.put_u8(v as u8);
        }
        if let Some(v) = ov.message_expiry_interval {
            id(buf, P::MessageExpiryInterval);
            buf.put_u32(v);
        }
        if let Some(v) = &self.content_type {
            id(buf, P::ContentType);
            put_utf8(buf, v);
        }
        if let Some(v) = &self.response_topic {
            id(buf, P::ResponseTopic);
            put_utf8(buf, v.as_utf8());
        }
        if let Some(v) = &self.correlation_data {
            id(buf, P::CorrelationData);
            put_binary(buf, v);
        }
        for &v in ov.subscription_identifiers {
            id(buf, P::SubscriptionIdentifier);
            put_vbi(buf, v);
        }
        if let Some(v) = self.session_expiry_interval {
            id(buf, P::SessionExpiryInterval);
            buf.put_u32(v);
        }
        if let Some(v) = &self.assigned_client_identifier {
            id(buf, P::AssignedClientIdentifier);
            put_utf8(buf, v);
        }
        if let Some(v) = self.server_keep_alive {
            id(buf, P::ServerKeepAlive);
            buf.put_u16(v);
        }
        if let Some(v) = &self.authentication_method {
            id(buf, P::AuthenticationMethod);
            put_utf8(buf, v);
        }
        if let Some(v) = &self.authentication_data {
            id(buf, P::AuthenticationData);
            put_binary(buf, v);
        }
        if let Some(v) = self.request_problem_information {
            id(buf, P::RequestProblemInformation);
            buf.put_u8(u8::from(v));
        }
        if let Some(v) = self.will_delay_interval {
            id(buf, P::WillDelayInterval);
            buf.put_u32(v);
        }
        if let Some(v) = self.request_response_information {
            id(buf, P::RequestResponseInformation);
            buf.put_u8(u8::from(v));
        }
        if let Some(v) = &self.response_information {
            id(buf, P::ResponseInformation);
            put_utf8(buf, v);
        }
        if let Some(v) = &self.server_reference {
            id(buf, P::ServerReference);
            put_utf8(buf, v);
        }
        if let Some(v) = &self.reason_string {
            id(buf, P::ReasonString);
            put_utf8(buf, v);
        }
        if let Some(v) = self.receive_maximum {
            id(buf, P::ReceiveMaximum);
            buf.put_u16(v.get());
        }
        if let Some(v) = self.topic_alias_maximum {
            id(buf, P::TopicAliasMaximum);
            buf.put_u16(v);
        }
        if let Some(v) = ov.topic_alias {
            id(buf, P::TopicAlias);
            buf.put_u16(v.get());
        }
        if let Some(v) = self.maximum_qos {
            id(buf, P::MaximumQos);
            buf.put_u8(v.bits());
        }
        if let Some(v) = self.retain_available {
            id(buf, P::RetainAvailable);
            buf.put_u8(u8::from(v));
        }
        for (k, v) in &self.user_properties {
            id(buf, P::UserProperty);
            put_utf8(buf, k);
            put_utf8(buf, v);
        }
        if let Some(v) = self.maximum_packet_size {
            id(buf, P::MaximumPacketSize);
            buf.put_u32(v.get());
        }
        if let Some(v) = self.wildcard_subscription_available {
            id(buf, P::WildcardSubscriptionAvailable);
            buf.put_u8(u8::from(v));
        }
        if let Some(v) = self.subscription_identifier_available {
            id(buf, P::SubscriptionIdentifierAvailable);
            buf.put_u8(u8::from(v));
        }
        if let Some(v) = self.shared_subscription_available {
            id(buf, P::SharedSubscriptionAvailable);
            buf.put_u8(u8::from(v));
        }
    }
}
