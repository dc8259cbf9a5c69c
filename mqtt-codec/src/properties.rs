//! MQTT 5.0 properties (section 2.2.2): [`Properties`], the specification's per-packet
//! allow-list, its duplicate rule and its value rules.
//!
//! Decoding and encoding enforce the same rules: a property not valid for the packet is a
//! Malformed Packet; a property other than User Property (and Subscription Identifier in PUBLISH)
//! given twice, a boolean other than 0 or 1, a zero where the value must be non-zero, Maximum QoS
//! 2, or Authentication Data without an Authentication Method is a Protocol Error.

use crate::prelude::*;
use core::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use nom::bytes::complete::take;

use crate::error::Violation;
use crate::packet::PropertyValue;
use crate::types::scan::{has_null, has_wildcard};
use crate::types::vbi::{put_vbi, read_vbi};
use crate::types::{PacketType, QoS, TopicName, Utf8String, VBI_MAX, vbi_len};
use crate::wire::{
    PResult, Sink, binary, check_binary, fail, put_binary, put_utf8, u8_, u16_, u32_, vbi,
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

impl PropertyId {
    /// Where the property comes when [`Properties`] encodes: its index in the encoding order
    /// (the order of Table 2-4, but for the User Property, which follows Retain Available).
    #[must_use]
    pub(crate) const fn rank(self) -> u32 {
        use PropertyId as P;
        match self {
            P::PayloadFormatIndicator => 0,
            P::MessageExpiryInterval => 1,
            P::ContentType => 2,
            P::ResponseTopic => 3,
            P::CorrelationData => 4,
            P::SubscriptionIdentifier => 5,
            P::SessionExpiryInterval => 6,
            P::AssignedClientIdentifier => 7,
            P::ServerKeepAlive => 8,
            P::AuthenticationMethod => 9,
            P::AuthenticationData => 10,
            P::RequestProblemInformation => 11,
            P::WillDelayInterval => 12,
            P::RequestResponseInformation => 13,
            P::ResponseInformation => 14,
            P::ServerReference => 15,
            P::ReasonString => 16,
            P::ReceiveMaximum => 17,
            P::TopicAliasMaximum => 18,
            P::TopicAlias => 19,
            P::MaximumQos => 20,
            P::RetainAvailable => 21,
            P::UserProperty => 22,
            P::MaximumPacketSize => 23,
            P::WildcardSubscriptionAvailable => 24,
            P::SubscriptionIdentifierAvailable => 25,
            P::SharedSubscriptionAvailable => 26,
        }
    }

    /// The presence bit of the property (bit [`PropertyId::rank`]).
    const fn bit(self) -> u32 {
        1 << self.rank()
    }

    /// Whether the value has a variable length (a string, binary data, a string pair or a
    /// Variable Byte Integer): such properties are kept in wire form in [`Properties`].
    #[must_use]
    pub const fn is_variable_length(self) -> bool {
        self.bit() & VARIABLE != 0
    }
}

/// The presence bits of the variable-length properties.
const VARIABLE: u32 = {
    use PropertyId as P;
    P::ContentType.bit()
        | P::ResponseTopic.bit()
        | P::CorrelationData.bit()
        | P::SubscriptionIdentifier.bit()
        | P::AssignedClientIdentifier.bit()
        | P::AuthenticationMethod.bit()
        | P::AuthenticationData.bit()
        | P::ResponseInformation.bit()
        | P::ServerReference.bit()
        | P::ReasonString.bit()
        | P::UserProperty.bit()
};

/// The presence bits ([`PropertyId::bit`]) of the properties allowed in each context: index 0
/// for the Will Properties, otherwise the packet type's number (Table 2-4), made at compile
/// time from [`PropertyId::is_allowed_in`] so that the encoder checks a whole list with one mask.
#[allow(clippy::indexing_slicing)] // evaluated at compile time: a bad index fails the build
const ALLOWED: [u32; 16] = {
    let mut table = [0_u32; 16];
    let mut ty = 0;
    while ty < 16 {
        let ctx = if ty == 0 {
            Some(PropertyContext::Will)
        } else {
            match PacketType::from_nibble(ty as u8) {
                Some(t) => Some(PropertyContext::Packet(t)),
                None => None,
            }
        };
        if let Some(ctx) = ctx {
            let mut i = 0;
            while i < ENCODING_ORDER.len() {
                let id = ENCODING_ORDER[i];
                if id.is_allowed_in(ctx) {
                    table[ty] |= id.bit();
                }
                i += 1;
            }
        }
        ty += 1;
    }
    table
};

/// The presence bits of the properties allowed in `ctx`.
fn allowed_mask(ctx: PropertyContext) -> u32 {
    let index = match ctx {
        PropertyContext::Will => 0,
        PropertyContext::Packet(t) => t as usize & 15,
    };
    // (`index` is at most 15: the table has 16 entries.)
    match ALLOWED.get(index) {
        Some(&mask) => mask,
        None => 0,
    }
}

/// The presence bits of the fixed-size properties whose value is one byte (two on the wire,
/// with the identifier).
const FIXED_1: u32 = {
    use PropertyId as P;
    P::PayloadFormatIndicator.bit()
        | P::RequestProblemInformation.bit()
        | P::RequestResponseInformation.bit()
        | P::MaximumQos.bit()
        | P::RetainAvailable.bit()
        | P::WildcardSubscriptionAvailable.bit()
        | P::SubscriptionIdentifierAvailable.bit()
        | P::SharedSubscriptionAvailable.bit()
};

/// ... whose value is a Two Byte Integer.
const FIXED_2: u32 = {
    use PropertyId as P;
    P::ServerKeepAlive.bit()
        | P::ReceiveMaximum.bit()
        | P::TopicAliasMaximum.bit()
        | P::TopicAlias.bit()
};

/// ... whose value is a Four Byte Integer.
const FIXED_4: u32 = {
    use PropertyId as P;
    P::MessageExpiryInterval.bit()
        | P::SessionExpiryInterval.bit()
        | P::WillDelayInterval.bit()
        | P::MaximumPacketSize.bit()
};

// Every property is variable-length or of one of the three fixed sizes, and only one.
const _: () = assert!(VARIABLE | FIXED_1 | FIXED_2 | FIXED_4 == (1 << 27) - 1);
const _: () = assert!(VARIABLE & (FIXED_1 | FIXED_2 | FIXED_4) == 0);
const _: () = assert!(FIXED_1 & FIXED_2 == 0 && FIXED_1 & FIXED_4 == 0 && FIXED_2 & FIXED_4 == 0);

/// The properties in the order [`Properties`] encodes them (by [`PropertyId::rank`]).
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

/// The properties of a packet (or of a will).
///
/// The fixed-size properties (integers, booleans, the Payload Format Indicator, Maximum QoS)
/// are public fields; absent ones are `None`. The variable-length ones — the strings, the
/// binary data, the User Properties and the Subscription Identifiers — are kept together in
/// wire form, in one shared buffer (a slice of the decoded packet, without a copy), read with
/// [`Properties::content_type`], [`Properties::user_properties`], … and changed with
/// [`Properties::set_content_type`], [`Properties::push_user_property`], …. So a packet with
/// few properties (most of them) stays small: `Properties` is under 100 bytes, and decoding
/// one allocates nothing.
///
/// Every value held is valid: the setters refuse what the decoder would (an empty Response
/// Topic, binary data over 65 535 bytes, a Subscription Identifier of 0). What depends on the
/// packet — which properties it allows, Authentication Data without an Authentication Method,
/// several Subscription Identifiers outside PUBLISH — is checked when a packet is encoded.
///
/// User Properties keep their order, and so do Subscription Identifiers (a PUBLISH from a
/// server may carry several; everywhere else there is at most one). Two `Properties` are
/// equal when they hold the same values, whatever order the wire gave different properties in.
///
/// ```
/// use mqtt_codec::{Properties, Utf8String};
///
/// let mut p = Properties::default();
/// p.message_expiry_interval = Some(60);
/// p.set_content_type(Some(Utf8String::try_from("text/plain")?));
/// p.push_user_property(Utf8String::try_from("k")?, Utf8String::try_from("v")?);
/// assert_eq!(p.content_type(), Some("text/plain"));
/// assert_eq!(p.user_properties().collect::<Vec<_>>(), [("k", "v")]);
/// # Ok::<(), mqtt_codec::Violation>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each field is the property of the same name in section 2.2.2
pub struct Properties {
    pub payload_format_indicator: Option<PayloadFormatIndicator>,
    pub message_expiry_interval: Option<u32>,
    pub session_expiry_interval: Option<u32>,
    pub server_keep_alive: Option<u16>,
    pub request_problem_information: Option<bool>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<bool>,
    pub receive_maximum: Option<NonZeroU16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<NonZeroU16>,
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    /// The variable-length properties, read and changed through the methods of `Properties`
    /// ([`Properties::content_type`], [`Properties::push_user_property`], …). Public only so
    /// that a struct expression can end with `..Properties::default()`.
    pub variable: VariableProperties,
}

/// The variable-length properties of a [`Properties`] in wire form: each one's identifier and
/// value, valid, one after the other, in a shared buffer. Read and changed through the methods
/// of [`Properties`].
#[derive(Clone, Default)]
pub struct VariableProperties {
    /// The entries. A decoded list whose fixed-size properties sit between its variable-length
    /// ones is kept whole (`mixed`): readers skip the fixed-size entries, whose values are in
    /// the fields (and may have been changed there since).
    wire: Bytes,
    /// The presence bits of the variable-length properties in `wire`.
    mask: u32,
    /// The bytes of the variable-length entries (all of `wire` unless `mixed`).
    len: u32,
    /// `wire` holds fixed-size entries too.
    mixed: bool,
}

/// A secret in `Debug` output: its length only.
pub(crate) struct Redacted(pub(crate) usize);

impl core::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

/// The three properties that change from one delivery of a message to the next (MQTT 5.0
/// section 3.3.4: the Message Expiry Interval counts down, the Subscription Identifiers and
/// the Topic Alias are the subscriber's), for encoding a message for a subscriber without
/// copying its other properties.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Overrides<'a> {
    pub(crate) message_expiry_interval: Option<u32>,
    /// `None`: the properties' own.
    pub(crate) subscription_identifiers: Option<&'a [u32]>,
    pub(crate) topic_alias: Option<NonZeroU16>,
}

/// One entry of a property list in wire form, found without checking its value again.
#[derive(Clone, Copy)]
struct Entry<'a> {
    id: PropertyId,
    /// The whole entry: identifier and value.
    bytes: &'a [u8],
    /// The value.
    value: &'a [u8],
}

/// The entry at the start of `i` (a valid list), or `None` at its end.
fn next_entry(i: &[u8]) -> Option<(Entry<'_>, &[u8])> {
    use PropertyId as P;
    let id = read_vbi(i).ok()??;
    let kind = PropertyId::from_u32(id.value)?;
    let value = i.get(id.len..)?;
    let u16_at = |at: usize| -> Option<usize> {
        let b = value.get(at..at + 2)?;
        Some(usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?])))
    };
    let value_len = match kind {
        P::PayloadFormatIndicator
        | P::RequestProblemInformation
        | P::RequestResponseInformation
        | P::RetainAvailable
        | P::WildcardSubscriptionAvailable
        | P::SubscriptionIdentifierAvailable
        | P::SharedSubscriptionAvailable
        | P::MaximumQos => 1,
        P::ServerKeepAlive | P::TopicAliasMaximum | P::ReceiveMaximum | P::TopicAlias => 2,
        P::MessageExpiryInterval
        | P::SessionExpiryInterval
        | P::WillDelayInterval
        | P::MaximumPacketSize => 4,
        P::SubscriptionIdentifier => read_vbi(value).ok()??.len,
        P::UserProperty => {
            let k = 2 + u16_at(0)?;
            k + 2 + u16_at(k)?
        }
        P::ContentType
        | P::ResponseTopic
        | P::CorrelationData
        | P::AssignedClientIdentifier
        | P::AuthenticationMethod
        | P::AuthenticationData
        | P::ResponseInformation
        | P::ServerReference
        | P::ReasonString => 2 + u16_at(0)?,
    };
    let len = id.len + value_len;
    Some((
        Entry {
            id: kind,
            bytes: i.get(..len)?,
            value: value.get(..value_len)?,
        },
        i.get(len..)?,
    ))
}

impl VariableProperties {
    /// The variable-length entries, in wire order.
    fn entries(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        let mut rest: &[u8] = &self.wire;
        let mixed = self.mixed;
        core::iter::from_fn(move || {
            loop {
                let (e, r) = next_entry(rest)?;
                rest = r;
                if !mixed || e.id.is_variable_length() {
                    return Some(e);
                }
            }
        })
    }

    /// The values of property `id`, in wire order.
    fn values(&self, id: PropertyId) -> impl Iterator<Item = PropertyValue<'_>> + '_ {
        let present = self.mask & id.bit() != 0;
        self.entries()
            .take_while(move |_| present)
            .filter(move |e| e.id == id)
            .filter_map(|e| raw_value(e.value, e.id).ok().map(|(_, v)| v))
    }

    fn first_str(&self, id: PropertyId) -> Option<&str> {
        match self.values(id).next()? {
            PropertyValue::Utf8(s) => Some(s),
            _ => None,
        }
    }

    fn first_binary(&self, id: PropertyId) -> Option<&[u8]> {
        match self.values(id).next()? {
            PropertyValue::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The bytes of the Subscription Identifier entries.
    fn subscription_identifiers_len(&self) -> usize {
        if self.mask & PropertyId::SubscriptionIdentifier.bit() == 0 {
            return 0;
        }
        self.entries()
            .filter(|e| e.id == PropertyId::SubscriptionIdentifier)
            .map(|e| e.bytes.len())
            .sum()
    }

    /// Replaces the entries of `id` (all of them when `remove`) and inserts `new` (a whole
    /// entry of property `id`) before the first entry that encodes after it.
    fn edit(&mut self, id: PropertyId, remove: bool, new: Option<&[u8]>) {
        let mut out = BytesMut::with_capacity(self.len as usize + new.map_or(0, <[u8]>::len));
        let mut mask = 0;
        let mut pending = new;
        for e in self.entries() {
            if e.id.rank() > id.rank()
                && let Some(n) = pending.take()
            {
                out.put_slice(n);
                mask |= id.bit();
            }
            if remove && e.id == id {
                continue;
            }
            out.put_slice(e.bytes);
            mask |= e.id.bit();
        }
        if let Some(n) = pending {
            out.put_slice(n);
            mask |= id.bit();
        }
        *self = VariableProperties {
            len: u32::try_from(out.len()).unwrap_or(u32::MAX),
            wire: out.freeze(),
            mask,
            mixed: false,
        };
    }
}

/// A whole entry: `id` and a string or binary value.
fn binary_entry(id: PropertyId, value: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(3 + value.len());
    e.put_u8(id as u8);
    put_binary(&mut e, value);
    e
}

impl Properties {
    /// These properties' own values of the fields [`Overrides`] can replace.
    pub(crate) fn own(&self) -> Overrides<'_> {
        Overrides {
            message_expiry_interval: self.message_expiry_interval,
            subscription_identifiers: None,
            topic_alias: self.topic_alias,
        }
    }

    /// Whether no property is present.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        // Field by field, stopping at the first present (cheaper than `presence`, which an
        // encoder of a 3.1.1 PUBLISH would otherwise pay for every packet).
        self.variable.mask == 0
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.payload_format_indicator.is_none()
            && self.session_expiry_interval.is_none()
            && self.server_keep_alive.is_none()
            && self.request_problem_information.is_none()
            && self.will_delay_interval.is_none()
            && self.request_response_information.is_none()
            && self.receive_maximum.is_none()
            && self.topic_alias_maximum.is_none()
            && self.maximum_qos.is_none()
            && self.retain_available.is_none()
            && self.maximum_packet_size.is_none()
            && self.wildcard_subscription_available.is_none()
            && self.subscription_identifier_available.is_none()
            && self.shared_subscription_available.is_none()
    }

    /// Parses a Property Length and the properties it covers, as allowed in `ctx`.
    pub(crate) fn parse<'a>(src: &Bytes, i: &'a [u8], ctx: PropertyContext) -> PResult<'a, Self> {
        let (rest, len) = vbi(i)?;
        let (rest, list) = take(len)(rest)?;
        let mut props = Self::default();
        if list.is_empty() {
            return Ok((rest, props));
        }
        // Where the variable-length entries start and end in `list`, their bytes, and whether
        // a fixed-size entry sits between two of them.
        let (mut var_start, mut var_end, mut var_len) = (None, 0, 0_usize);
        let (mut scalar_after_var, mut mixed) = (false, false);
        let mut seen: u32 = 0;
        let mut p = list;
        while !p.is_empty() {
            let at = list.len() - p.len();
            let (i, raw) = vbi(p)?;
            let Some(id) = PropertyId::from_u32(raw) else {
                return fail(Violation::UnknownProperty);
            };
            // A Control Packet which contains an Identifier which is not valid for its packet
            // type ... is a Malformed Packet. (section 2.2.2.2)
            if !id.is_allowed_in(ctx) {
                return fail(Violation::PropertyNotAllowed);
            }
            let (i, value) = raw_value(i, id)?;
            // It is a Protocol Error to include a property other than User Property (and a
            // Subscription Identifier in PUBLISH) more than once. (section 2.2.2.2)
            let repeatable = id == PropertyId::UserProperty
                || (id == PropertyId::SubscriptionIdentifier
                    && ctx == PropertyContext::Packet(PacketType::Publish));
            if !repeatable && seen & id.bit() != 0 {
                return fail(Violation::DuplicateProperty);
            }
            seen |= id.bit();
            let end = list.len() - i.len();
            if id.is_variable_length() {
                var_start.get_or_insert(at);
                var_end = end;
                var_len += end - at;
                mixed |= scalar_after_var;
            } else {
                scalar_after_var = var_start.is_some();
                props.set_scalar(id, value);
            }
            p = i;
        }
        // It is a Protocol Error to include Authentication Data if there is no Authentication
        // Method. (section 3.1.2.11.10)
        if seen & PropertyId::AuthenticationData.bit() != 0
            && seen & PropertyId::AuthenticationMethod.bit() == 0
        {
            return fail(Violation::AuthenticationDataWithoutMethod);
        }
        if let Some(start) = var_start {
            props.variable = VariableProperties {
                wire: list
                    .get(start..var_end)
                    .map_or_else(Bytes::new, |w| src.slice_ref(w)),
                mask: seen & VARIABLE,
                len: u32::try_from(var_len).unwrap_or(u32::MAX),
                mixed,
            };
        }
        Ok((rest, props))
    }

    /// Stores a fixed-size property's value (checked by [`raw_value`]).
    fn set_scalar(&mut self, id: PropertyId, value: PropertyValue<'_>) {
        use PropertyId as P;
        use PropertyValue as V;
        match (id, value) {
            (P::PayloadFormatIndicator, V::Byte(b)) => {
                self.payload_format_indicator = Some(if b == 1 {
                    PayloadFormatIndicator::Utf8
                } else {
                    PayloadFormatIndicator::Unspecified
                });
            }
            (P::MaximumQos, V::Byte(b)) => {
                self.maximum_qos = Some(if b == 1 {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                });
            }
            (P::RequestProblemInformation, V::Byte(b)) => {
                self.request_problem_information = Some(b == 1);
            }
            (P::RequestResponseInformation, V::Byte(b)) => {
                self.request_response_information = Some(b == 1);
            }
            (P::RetainAvailable, V::Byte(b)) => self.retain_available = Some(b == 1),
            (P::WildcardSubscriptionAvailable, V::Byte(b)) => {
                self.wildcard_subscription_available = Some(b == 1);
            }
            (P::SubscriptionIdentifierAvailable, V::Byte(b)) => {
                self.subscription_identifier_available = Some(b == 1);
            }
            (P::SharedSubscriptionAvailable, V::Byte(b)) => {
                self.shared_subscription_available = Some(b == 1);
            }
            (P::MessageExpiryInterval, V::FourByteInteger(v)) => {
                self.message_expiry_interval = Some(v);
            }
            (P::SessionExpiryInterval, V::FourByteInteger(v)) => {
                self.session_expiry_interval = Some(v);
            }
            (P::WillDelayInterval, V::FourByteInteger(v)) => self.will_delay_interval = Some(v),
            (P::MaximumPacketSize, V::FourByteInteger(v)) => {
                self.maximum_packet_size = NonZeroU32::new(v);
            }
            (P::ServerKeepAlive, V::TwoByteInteger(v)) => self.server_keep_alive = Some(v),
            (P::TopicAliasMaximum, V::TwoByteInteger(v)) => self.topic_alias_maximum = Some(v),
            (P::ReceiveMaximum, V::TwoByteInteger(v)) => self.receive_maximum = NonZeroU16::new(v),
            (P::TopicAlias, V::TwoByteInteger(v)) => self.topic_alias = NonZeroU16::new(v),
            _ => {}
        }
    }

    // --- The variable-length properties -------------------------------------------------

    /// The Content Type (0x03), if present.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.variable.first_str(PropertyId::ContentType)
    }

    /// The Response Topic (0x08), if present.
    #[must_use]
    pub fn response_topic(&self) -> Option<&str> {
        self.variable.first_str(PropertyId::ResponseTopic)
    }

    /// The Correlation Data (0x09), if present.
    #[must_use]
    pub fn correlation_data(&self) -> Option<&[u8]> {
        self.variable.first_binary(PropertyId::CorrelationData)
    }

    /// The Correlation Data as shared bytes (a slice of the decoded packet, not a copy).
    #[must_use]
    pub fn correlation_data_bytes(&self) -> Option<Bytes> {
        self.correlation_data()
            .map(|d| self.variable.wire.slice_ref(d))
    }

    /// The Subscription Identifiers (0x0B), in order: several only in a PUBLISH from a server.
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + '_ {
        self.variable
            .values(PropertyId::SubscriptionIdentifier)
            .filter_map(|v| match v {
                PropertyValue::VariableByteInteger(v) => Some(v),
                _ => None,
            })
    }

    /// The first Subscription Identifier (the one of a SUBSCRIBE), if present.
    #[must_use]
    pub fn subscription_identifier(&self) -> Option<u32> {
        self.subscription_identifiers().next()
    }

    /// Whether there is a Subscription Identifier.
    #[must_use]
    pub fn has_subscription_identifiers(&self) -> bool {
        self.variable.mask & PropertyId::SubscriptionIdentifier.bit() != 0
    }

    /// The Assigned Client Identifier (0x12), if present.
    #[must_use]
    pub fn assigned_client_identifier(&self) -> Option<&str> {
        self.variable
            .first_str(PropertyId::AssignedClientIdentifier)
    }

    /// The Authentication Method (0x15), if present.
    #[must_use]
    pub fn authentication_method(&self) -> Option<&str> {
        self.variable.first_str(PropertyId::AuthenticationMethod)
    }

    /// The Authentication Data (0x16), if present.
    #[must_use]
    pub fn authentication_data(&self) -> Option<&[u8]> {
        self.variable.first_binary(PropertyId::AuthenticationData)
    }

    /// The Authentication Data as shared bytes (a slice of the decoded packet, not a copy).
    #[must_use]
    pub fn authentication_data_bytes(&self) -> Option<Bytes> {
        self.authentication_data()
            .map(|d| self.variable.wire.slice_ref(d))
    }

    /// The Response Information (0x1A), if present.
    #[must_use]
    pub fn response_information(&self) -> Option<&str> {
        self.variable.first_str(PropertyId::ResponseInformation)
    }

    /// The Server Reference (0x1C), if present.
    #[must_use]
    pub fn server_reference(&self) -> Option<&str> {
        self.variable.first_str(PropertyId::ServerReference)
    }

    /// The Reason String (0x1F), if present.
    #[must_use]
    pub fn reason_string(&self) -> Option<&str> {
        self.variable.first_str(PropertyId::ReasonString)
    }

    /// The User Properties (0x26), name and value, in order.
    pub fn user_properties(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.variable
            .values(PropertyId::UserProperty)
            .filter_map(|v| match v {
                PropertyValue::Pair(k, v) => Some((k, v)),
                _ => None,
            })
    }

    /// Whether there is a User Property.
    #[must_use]
    pub fn has_user_properties(&self) -> bool {
        self.variable.mask & PropertyId::UserProperty.bit() != 0
    }

    fn set_str(&mut self, id: PropertyId, value: Option<&Utf8String>) {
        let entry = value.map(|v| binary_entry(id, v.as_bytes()));
        self.variable.edit(id, true, entry.as_deref());
    }

    /// Sets or removes the Content Type.
    pub fn set_content_type(&mut self, value: Option<Utf8String>) {
        self.set_str(PropertyId::ContentType, value.as_ref());
    }

    /// Sets or removes the Response Topic.
    ///
    /// # Errors
    /// [`Violation::ResponseTopicInvalid`] for an empty topic (v5 [MQTT-3.3.2-14]; a
    /// [`TopicName`] has no wildcards).
    pub fn set_response_topic(&mut self, value: Option<TopicName>) -> Result<(), Violation> {
        if value.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(Violation::ResponseTopicInvalid);
        }
        self.set_str(
            PropertyId::ResponseTopic,
            value.as_ref().map(TopicName::as_utf8),
        );
        Ok(())
    }

    fn set_binary(&mut self, id: PropertyId, value: Option<&[u8]>) -> Result<(), Violation> {
        if let Some(v) = value {
            check_binary(v)?;
        }
        let entry = value.map(|v| binary_entry(id, v));
        self.variable.edit(id, true, entry.as_deref());
        Ok(())
    }

    /// Sets or removes the Correlation Data.
    ///
    /// # Errors
    /// [`Violation::FieldTooLong`] above 65 535 bytes.
    pub fn set_correlation_data(&mut self, value: Option<&[u8]>) -> Result<(), Violation> {
        self.set_binary(PropertyId::CorrelationData, value)
    }

    /// Adds a Subscription Identifier after the others.
    ///
    /// # Errors
    /// [`Violation::InvalidPropertyValue`] for 0 or a value above 268 435 455.
    pub fn push_subscription_identifier(&mut self, id: u32) -> Result<(), Violation> {
        if id == 0 || id > VBI_MAX {
            return Err(Violation::InvalidPropertyValue);
        }
        let mut e = Vec::with_capacity(5);
        e.put_u8(PropertyId::SubscriptionIdentifier as u8);
        put_vbi(&mut e, id);
        self.variable
            .edit(PropertyId::SubscriptionIdentifier, false, Some(&e));
        Ok(())
    }

    /// Removes every Subscription Identifier.
    pub fn clear_subscription_identifiers(&mut self) {
        if self.has_subscription_identifiers() {
            self.variable
                .edit(PropertyId::SubscriptionIdentifier, true, None);
        }
    }

    /// Sets or removes the Assigned Client Identifier.
    pub fn set_assigned_client_identifier(&mut self, value: Option<Utf8String>) {
        self.set_str(PropertyId::AssignedClientIdentifier, value.as_ref());
    }

    /// Sets or removes the Authentication Method.
    pub fn set_authentication_method(&mut self, value: Option<Utf8String>) {
        self.set_str(PropertyId::AuthenticationMethod, value.as_ref());
    }

    /// Sets or removes the Authentication Data.
    ///
    /// # Errors
    /// [`Violation::FieldTooLong`] above 65 535 bytes.
    pub fn set_authentication_data(&mut self, value: Option<&[u8]>) -> Result<(), Violation> {
        self.set_binary(PropertyId::AuthenticationData, value)
    }

    /// Sets or removes the Response Information.
    pub fn set_response_information(&mut self, value: Option<Utf8String>) {
        self.set_str(PropertyId::ResponseInformation, value.as_ref());
    }

    /// Sets or removes the Server Reference.
    pub fn set_server_reference(&mut self, value: Option<Utf8String>) {
        self.set_str(PropertyId::ServerReference, value.as_ref());
    }

    /// Sets or removes the Reason String.
    pub fn set_reason_string(&mut self, value: Option<Utf8String>) {
        self.set_str(PropertyId::ReasonString, value.as_ref());
    }

    /// Adds a User Property after the others.
    pub fn push_user_property(&mut self, name: Utf8String, value: Utf8String) {
        let mut e = Vec::with_capacity(5 + name.len() + value.len());
        e.put_u8(PropertyId::UserProperty as u8);
        put_utf8(&mut e, &name);
        put_utf8(&mut e, &value);
        self.variable
            .edit(PropertyId::UserProperty, false, Some(&e));
    }

    /// Removes every User Property.
    pub fn clear_user_properties(&mut self) {
        if self.has_user_properties() {
            self.variable.edit(PropertyId::UserProperty, true, None);
        }
    }

    /// Removes property `id` (every occurrence).
    pub fn remove(&mut self, id: PropertyId) {
        use PropertyId as P;
        match id {
            P::PayloadFormatIndicator => self.payload_format_indicator = None,
            P::MessageExpiryInterval => self.message_expiry_interval = None,
            P::SessionExpiryInterval => self.session_expiry_interval = None,
            P::ServerKeepAlive => self.server_keep_alive = None,
            P::RequestProblemInformation => self.request_problem_information = None,
            P::WillDelayInterval => self.will_delay_interval = None,
            P::RequestResponseInformation => self.request_response_information = None,
            P::ReceiveMaximum => self.receive_maximum = None,
            P::TopicAliasMaximum => self.topic_alias_maximum = None,
            P::TopicAlias => self.topic_alias = None,
            P::MaximumQos => self.maximum_qos = None,
            P::RetainAvailable => self.retain_available = None,
            P::MaximumPacketSize => self.maximum_packet_size = None,
            P::WildcardSubscriptionAvailable => self.wildcard_subscription_available = None,
            P::SubscriptionIdentifierAvailable => self.subscription_identifier_available = None,
            P::SharedSubscriptionAvailable => self.shared_subscription_available = None,
            P::ContentType
            | P::ResponseTopic
            | P::CorrelationData
            | P::SubscriptionIdentifier
            | P::AssignedClientIdentifier
            | P::AuthenticationMethod
            | P::AuthenticationData
            | P::ResponseInformation
            | P::ServerReference
            | P::ReasonString
            | P::UserProperty => {
                if self.variable.mask & id.bit() != 0 {
                    self.variable.edit(id, true, None);
                }
            }
        }
    }

    // --- Presence, checks, lengths, writing ----------------------------------------------

    /// The identifiers of the properties present, in the order they are encoded.
    pub fn present(&self) -> impl Iterator<Item = PropertyId> + '_ {
        let presence = self.presence();
        ENCODING_ORDER
            .iter()
            .filter(move |id| presence & id.bit() != 0)
            .copied()
    }

    /// One bit per property present: bit [`PropertyId::rank`].
    fn presence(&self) -> u32 {
        self.presence_with(&self.own())
    }

    pub(crate) fn presence_with(&self, ov: &Overrides<'_>) -> u32 {
        use PropertyId as P;
        let bit = |present: bool, id: PropertyId| u32::from(present) << id.rank();
        let var = match ov.subscription_identifiers {
            None => self.variable.mask,
            Some(ids) => {
                (self.variable.mask & !P::SubscriptionIdentifier.bit())
                    | bit(!ids.is_empty(), P::SubscriptionIdentifier)
            }
        };
        var | bit(
            self.payload_format_indicator.is_some(),
            P::PayloadFormatIndicator,
        ) | bit(
            ov.message_expiry_interval.is_some(),
            P::MessageExpiryInterval,
        ) | bit(
            self.session_expiry_interval.is_some(),
            P::SessionExpiryInterval,
        ) | bit(self.server_keep_alive.is_some(), P::ServerKeepAlive)
            | bit(
                self.request_problem_information.is_some(),
                P::RequestProblemInformation,
            )
            | bit(self.will_delay_interval.is_some(), P::WillDelayInterval)
            | bit(
                self.request_response_information.is_some(),
                P::RequestResponseInformation,
            )
            | bit(self.receive_maximum.is_some(), P::ReceiveMaximum)
            | bit(self.topic_alias_maximum.is_some(), P::TopicAliasMaximum)
            | bit(ov.topic_alias.is_some(), P::TopicAlias)
            | bit(self.maximum_qos.is_some(), P::MaximumQos)
            | bit(self.retain_available.is_some(), P::RetainAvailable)
            | bit(self.maximum_packet_size.is_some(), P::MaximumPacketSize)
            | bit(
                self.wildcard_subscription_available.is_some(),
                P::WildcardSubscriptionAvailable,
            )
            | bit(
                self.subscription_identifier_available.is_some(),
                P::SubscriptionIdentifierAvailable,
            )
            | bit(
                self.shared_subscription_available.is_some(),
                P::SharedSubscriptionAvailable,
            )
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
        use PropertyId as P;
        let presence = self.presence_with(ov);
        if presence == 0 {
            return Ok(0);
        }
        if presence & !allowed_mask(ctx) != 0 {
            return Err(Violation::PropertyNotAllowed);
        }
        if let Some(ids) = ov.subscription_identifiers
            && ids.iter().any(|&v| v == 0 || v > VBI_MAX)
        {
            return Err(Violation::InvalidPropertyValue);
        }
        if ctx != PropertyContext::Packet(PacketType::Publish)
            && presence & P::SubscriptionIdentifier.bit() != 0
            && self.subscription_identifier_count(ov) > 1
        {
            return Err(Violation::DuplicateProperty);
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(Violation::InvalidPropertyValue);
        }
        if presence & P::AuthenticationData.bit() != 0
            && presence & P::AuthenticationMethod.bit() == 0
        {
            return Err(Violation::AuthenticationDataWithoutMethod);
        }
        let len = self.len_of_present(ov, presence);
        if len > VBI_MAX as usize {
            return Err(Violation::RemainingLengthTooLarge);
        }
        Ok(len)
    }

    fn subscription_identifier_count(&self, ov: &Overrides<'_>) -> usize {
        match ov.subscription_identifiers {
            Some(ids) => ids.len(),
            None => self.subscription_identifiers().count(),
        }
    }

    /// The length of the properties, without the Property Length in front of them.
    #[must_use]
    pub fn len(&self) -> usize {
        let ov = self.own();
        let presence = self.presence_with(&ov);
        if presence == 0 {
            return 0;
        }
        self.len_of_present(&ov, presence)
    }

    /// The length of the properties whose presence bits (with `ov`) are `presence`.
    fn len_of_present(&self, ov: &Overrides<'_>, presence: u32) -> usize {
        let var = match ov.subscription_identifiers {
            None => self.variable.len as usize,
            Some(ids) => {
                self.variable.len as usize - self.variable.subscription_identifiers_len()
                    + ids.iter().map(|&v| 1 + vbi_len(v)).sum::<usize>()
            }
        };
        let count = |mask: u32| (presence & mask).count_ones() as usize;
        var + 2 * count(FIXED_1) + 3 * count(FIXED_2) + 5 * count(FIXED_4)
    }

    /// The length on the wire: the Property Length and the properties.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        let len = self.len();
        vbi_len(u32::try_from(len).unwrap_or(u32::MAX)) + len
    }

    /// Writes the Property Length and the properties (validated by the caller).
    pub(crate) fn write(&self, buf: &mut impl Sink) {
        self.write_with_len(self.len(), buf);
    }

    /// [`Properties::write`] with the length already known (from
    /// [`Properties::checked_len`]).
    pub(crate) fn write_with_len(&self, len: usize, buf: &mut impl Sink) {
        self.write_with_len_with(len, &self.own(), buf);
    }

    /// [`Properties::write_with_len`] with `ov`'s three fields instead of their own.
    ///
    /// The fixed-size properties are written in the encoding order, and the variable-length
    /// entries between them in their own order, each before the first fixed-size property
    /// that encodes after it: a list built with the setters (or decoded in that order) comes
    /// out in the encoding order.
    pub(crate) fn write_with_len_with(&self, len: usize, ov: &Overrides<'_>, buf: &mut impl Sink) {
        use PropertyId as P;
        put_vbi(buf, u32::try_from(len).unwrap_or(VBI_MAX));
        if len == 0 {
            return;
        }
        let mut w = VarWriter {
            rest: &self.variable.wire,
            mask: self.variable.mask,
            mixed: self.variable.mixed,
            skip_subscription_identifiers: ov.subscription_identifiers.is_some(),
        };
        if let Some(v) = self.payload_format_indicator {
            w.flush_before(P::PayloadFormatIndicator, buf);
            buf.put_u8(P::PayloadFormatIndicator as u8);
            buf.put_u8(v as u8);
        }
        if let Some(v) = ov.message_expiry_interval {
            w.flush_before(P::MessageExpiryInterval, buf);
            buf.put_u8(P::MessageExpiryInterval as u8);
            buf.put_u32(v);
        }
        if let Some(ids) = ov.subscription_identifiers {
            w.flush_before(P::SubscriptionIdentifier, buf);
            for &v in ids {
                buf.put_u8(P::SubscriptionIdentifier as u8);
                put_vbi(buf, v);
            }
        }
        write_u32(
            &mut w,
            (P::SessionExpiryInterval, self.session_expiry_interval),
            buf,
        );
        write_u16(&mut w, (P::ServerKeepAlive, self.server_keep_alive), buf);
        write_bool(
            &mut w,
            (
                P::RequestProblemInformation,
                self.request_problem_information,
            ),
            buf,
        );
        write_u32(
            &mut w,
            (P::WillDelayInterval, self.will_delay_interval),
            buf,
        );
        write_bool(
            &mut w,
            (
                P::RequestResponseInformation,
                self.request_response_information,
            ),
            buf,
        );
        write_u16(
            &mut w,
            (P::ReceiveMaximum, self.receive_maximum.map(NonZeroU16::get)),
            buf,
        );
        write_u16(
            &mut w,
            (P::TopicAliasMaximum, self.topic_alias_maximum),
            buf,
        );
        write_u16(
            &mut w,
            (P::TopicAlias, ov.topic_alias.map(NonZeroU16::get)),
            buf,
        );
        if let Some(v) = self.maximum_qos {
            w.flush_before(P::MaximumQos, buf);
            buf.put_u8(P::MaximumQos as u8);
            buf.put_u8(v.bits());
        }
        write_bool(&mut w, (P::RetainAvailable, self.retain_available), buf);
        write_u32(
            &mut w,
            (
                P::MaximumPacketSize,
                self.maximum_packet_size.map(NonZeroU32::get),
            ),
            buf,
        );
        write_bool(
            &mut w,
            (
                P::WildcardSubscriptionAvailable,
                self.wildcard_subscription_available,
            ),
            buf,
        );
        write_bool(
            &mut w,
            (
                P::SubscriptionIdentifierAvailable,
                self.subscription_identifier_available,
            ),
            buf,
        );
        write_bool(
            &mut w,
            (
                P::SharedSubscriptionAvailable,
                self.shared_subscription_available,
            ),
            buf,
        );
        w.flush_all(buf);
    }
}

fn write_u32(w: &mut VarWriter<'_>, (id, v): (PropertyId, Option<u32>), buf: &mut impl Sink) {
    if let Some(v) = v {
        w.flush_before(id, buf);
        buf.put_u8(id as u8);
        buf.put_u32(v);
    }
}

fn write_u16(w: &mut VarWriter<'_>, (id, v): (PropertyId, Option<u16>), buf: &mut impl Sink) {
    if let Some(v) = v {
        w.flush_before(id, buf);
        buf.put_u8(id as u8);
        buf.put_u16(v);
    }
}

fn write_bool(w: &mut VarWriter<'_>, (id, v): (PropertyId, Option<bool>), buf: &mut impl Sink) {
    if let Some(v) = v {
        w.flush_before(id, buf);
        buf.put_u8(id as u8);
        buf.put_u8(u8::from(v));
    }
}

/// Writes the variable-length entries between the fixed-size ones.
struct VarWriter<'a> {
    rest: &'a [u8],
    /// The presence bits of all the variable-length entries (written or not).
    mask: u32,
    mixed: bool,
    skip_subscription_identifiers: bool,
}

impl VarWriter<'_> {
    /// Writes the entries at the front that encode before `id`, in one copy where they are
    /// contiguous.
    fn flush_before(&mut self, id: PropertyId, buf: &mut impl Sink) {
        // Without walking the entries: none of them encodes before `id` (then nothing goes
        // out), or, in a list of variable-length entries only, all of them do (then all go).
        let before = id.bit() - 1;
        if self.mask & before == 0 || self.rest.is_empty() {
            return;
        }
        if self.mask & !before == 0 && !self.mixed && !self.skip_subscription_identifiers {
            buf.put_slice(self.rest);
            self.rest = &[];
            return;
        }
        self.flush(id.rank(), buf);
    }

    fn flush_all(&mut self, buf: &mut impl Sink) {
        if self.rest.is_empty() {
            return;
        }
        if !self.mixed && !self.skip_subscription_identifiers {
            buf.put_slice(self.rest);
            self.rest = &[];
        } else {
            self.flush(u32::MAX, buf);
        }
    }

    fn flush(&mut self, rank: u32, buf: &mut impl Sink) {
        if self.rest.is_empty() {
            return;
        }
        let mut run = 0;
        let mut rest = self.rest;
        while let Some((e, r)) = next_entry(rest) {
            if e.id.rank() >= rank && e.id.is_variable_length() {
                break;
            }
            let skip = !e.id.is_variable_length()
                || (self.skip_subscription_identifiers
                    && e.id == PropertyId::SubscriptionIdentifier);
            if skip {
                buf.put_slice(self.rest.get(..run).unwrap_or_default());
                self.rest = r;
                run = 0;
            } else {
                run += e.bytes.len();
            }
            rest = r;
        }
        buf.put_slice(self.rest.get(..run).unwrap_or_default());
        self.rest = self.rest.get(run..).unwrap_or_default();
    }
}

impl PartialEq for VariableProperties {
    /// The same values, whatever order the wire gave different properties in (User
    /// Properties and Subscription Identifiers in the same order).
    fn eq(&self, other: &Self) -> bool {
        self.mask == other.mask
            && ENCODING_ORDER
                .iter()
                .filter(|id| self.mask & id.bit() != 0)
                .all(|&id| self.values(id).eq(other.values(id)))
    }
}

impl Eq for VariableProperties {}

impl core::fmt::Debug for VariableProperties {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Authentication Data by its length only.
        f.debug_list()
            .entries(self.entries().filter_map(|e| {
                let (_, v) = raw_value(e.value, e.id).ok()?;
                Some(match v {
                    PropertyValue::Binary(b) if e.id == PropertyId::AuthenticationData => {
                        format!("{:?}: {:?}", e.id, Redacted(b.len()))
                    }
                    v => format!("{:?}: {v:?}", e.id),
                })
            }))
            .finish()
    }
}

impl core::fmt::Debug for Properties {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Every property, in the encoding order, as a derived `Debug` would show fields; the
        // Authentication Data by its length only.
        f.debug_struct("Properties")
            .field("payload_format_indicator", &self.payload_format_indicator)
            .field("message_expiry_interval", &self.message_expiry_interval)
            .field("content_type", &self.content_type())
            .field("response_topic", &self.response_topic())
            .field("correlation_data", &self.correlation_data())
            .field(
                "subscription_identifiers",
                &self.subscription_identifiers().collect::<Vec<_>>(),
            )
            .field("session_expiry_interval", &self.session_expiry_interval)
            .field(
                "assigned_client_identifier",
                &self.assigned_client_identifier(),
            )
            .field("server_keep_alive", &self.server_keep_alive)
            .field("authentication_method", &self.authentication_method())
            .field(
                "authentication_data",
                &self.authentication_data().map(|d| Redacted(d.len())),
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
            .field("response_information", &self.response_information())
            .field("server_reference", &self.server_reference())
            .field("reason_string", &self.reason_string())
            .field("receive_maximum", &self.receive_maximum)
            .field("topic_alias_maximum", &self.topic_alias_maximum)
            .field("topic_alias", &self.topic_alias)
            .field("maximum_qos", &self.maximum_qos)
            .field("retain_available", &self.retain_available)
            .field(
                "user_properties",
                &self.user_properties().collect::<Vec<_>>(),
            )
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

/// Properties with every value a field of its own: the serialized form (feature `serde`),
/// and what the `arbitrary` generator fills in.
#[cfg(any(feature = "serde", feature = "arbitrary"))]
#[derive(Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub(crate) struct Expanded {
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) payload_format_indicator: Option<PayloadFormatIndicator>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) message_expiry_interval: Option<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) content_type: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) response_topic: Option<TopicName>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) correlation_data: Option<Bytes>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub(crate) subscription_identifiers: Vec<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) session_expiry_interval: Option<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) assigned_client_identifier: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) server_keep_alive: Option<u16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) authentication_method: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) authentication_data: Option<Bytes>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) request_problem_information: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) will_delay_interval: Option<u32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) request_response_information: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) response_information: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) server_reference: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) reason_string: Option<Utf8String>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) receive_maximum: Option<NonZeroU16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) topic_alias_maximum: Option<u16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) topic_alias: Option<NonZeroU16>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) maximum_qos: Option<QoS>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) retain_available: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub(crate) user_properties: Vec<(Utf8String, Utf8String)>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) maximum_packet_size: Option<NonZeroU32>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) wildcard_subscription_available: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) subscription_identifier_available: Option<bool>,
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub(crate) shared_subscription_available: Option<bool>,
}

#[cfg(any(feature = "serde", feature = "arbitrary"))]
impl TryFrom<Expanded> for Properties {
    type Error = Violation;

    fn try_from(e: Expanded) -> Result<Self, Violation> {
        let mut p = Properties {
            payload_format_indicator: e.payload_format_indicator,
            message_expiry_interval: e.message_expiry_interval,
            session_expiry_interval: e.session_expiry_interval,
            server_keep_alive: e.server_keep_alive,
            request_problem_information: e.request_problem_information,
            will_delay_interval: e.will_delay_interval,
            request_response_information: e.request_response_information,
            receive_maximum: e.receive_maximum,
            topic_alias_maximum: e.topic_alias_maximum,
            topic_alias: e.topic_alias,
            maximum_qos: e.maximum_qos,
            retain_available: e.retain_available,
            maximum_packet_size: e.maximum_packet_size,
            wildcard_subscription_available: e.wildcard_subscription_available,
            subscription_identifier_available: e.subscription_identifier_available,
            shared_subscription_available: e.shared_subscription_available,
            variable: VariableProperties::default(),
        };
        p.set_content_type(e.content_type);
        p.set_response_topic(e.response_topic)?;
        p.set_correlation_data(e.correlation_data.as_deref())?;
        for id in e.subscription_identifiers {
            p.push_subscription_identifier(id)?;
        }
        p.set_assigned_client_identifier(e.assigned_client_identifier);
        p.set_authentication_method(e.authentication_method);
        p.set_authentication_data(e.authentication_data.as_deref())?;
        p.set_response_information(e.response_information);
        p.set_server_reference(e.server_reference);
        p.set_reason_string(e.reason_string);
        for (k, v) in e.user_properties {
            p.push_user_property(k, v);
        }
        Ok(p)
    }
}

#[cfg(any(feature = "serde", feature = "arbitrary"))]
impl From<Properties> for Expanded {
    fn from(p: Properties) -> Self {
        let s = |v: Option<&str>| v.and_then(|s| Utf8String::try_from(s).ok());
        let b = |v: Option<&[u8]>| v.map(Bytes::copy_from_slice);
        Expanded {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: s(p.content_type()),
            response_topic: p.response_topic().and_then(|t| TopicName::try_from(t).ok()),
            correlation_data: b(p.correlation_data()),
            subscription_identifiers: p.subscription_identifiers().collect(),
            session_expiry_interval: p.session_expiry_interval,
            assigned_client_identifier: s(p.assigned_client_identifier()),
            server_keep_alive: p.server_keep_alive,
            authentication_method: s(p.authentication_method()),
            authentication_data: b(p.authentication_data()),
            request_problem_information: p.request_problem_information,
            will_delay_interval: p.will_delay_interval,
            request_response_information: p.request_response_information,
            response_information: s(p.response_information()),
            server_reference: s(p.server_reference()),
            reason_string: s(p.reason_string()),
            receive_maximum: p.receive_maximum,
            topic_alias_maximum: p.topic_alias_maximum,
            topic_alias: p.topic_alias,
            maximum_qos: p.maximum_qos,
            retain_available: p.retain_available,
            user_properties: p
                .user_properties()
                .filter_map(|(k, v)| {
                    Some((Utf8String::try_from(k).ok()?, Utf8String::try_from(v).ok()?))
                })
                .collect(),
            maximum_packet_size: p.maximum_packet_size,
            wildcard_subscription_available: p.wildcard_subscription_available,
            subscription_identifier_available: p.subscription_identifier_available,
            shared_subscription_available: p.shared_subscription_available,
        }
    }
}

// With serde, the properties are a map of the present ones by name (absent ones left out, and
// defaulted when missing): use a self-describing format (JSON, CBOR, MessagePack with names).
#[cfg(feature = "serde")]
impl serde::Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Expanded::from(self.clone()).serialize(s)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Properties {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = Expanded::deserialize(d)?;
        Properties::try_from(e).map_err(|v| serde::de::Error::custom(v.rule().text))
    }
}

/// As [`crate::Utf8String::from_bytes`], on a slice.
pub(crate) fn check_utf8(b: &[u8]) -> Result<&str, Violation> {
    if b.len() > usize::from(u16::MAX) {
        return Err(Violation::FieldTooLong);
    }
    if has_null(b) {
        return Err(Violation::NullCharacter);
    }
    core::str::from_utf8(b).map_err(|_| Violation::InvalidUtf8)
}

/// Parses one property's value, with the checks the decoder makes on the value itself.
pub(crate) fn raw_value(i: &[u8], id: PropertyId) -> PResult<'_, PropertyValue<'_>> {
    use PropertyId as P;
    use PropertyValue as V;
    let utf8 = |i| -> PResult<'_, &str> {
        let (i, b) = binary(i)?;
        match check_utf8(b) {
            Ok(s) => Ok((i, s)),
            Err(v) => fail(v),
        }
    };
    match id {
        P::PayloadFormatIndicator
        | P::RequestProblemInformation
        | P::RequestResponseInformation
        | P::RetainAvailable
        | P::WildcardSubscriptionAvailable
        | P::SubscriptionIdentifierAvailable
        | P::SharedSubscriptionAvailable
        | P::MaximumQos => {
            let (i, v) = u8_(i)?;
            // Booleans and the Payload Format Indicator are 0 or 1; so is Maximum QoS
            // (section 3.2.2.3.4).
            if v > 1 {
                return fail(Violation::InvalidPropertyValue);
            }
            Ok((i, V::Byte(v)))
        }
        P::MessageExpiryInterval | P::SessionExpiryInterval | P::WillDelayInterval => {
            let (i, v) = u32_(i)?;
            Ok((i, V::FourByteInteger(v)))
        }
        P::MaximumPacketSize => {
            let (i, v) = u32_(i)?;
            // It is a Protocol Error ... for the value to be set to zero.
            if v == 0 {
                return fail(Violation::InvalidPropertyValue);
            }
            Ok((i, V::FourByteInteger(v)))
        }
        P::ServerKeepAlive | P::TopicAliasMaximum => {
            let (i, v) = u16_(i)?;
            Ok((i, V::TwoByteInteger(v)))
        }
        P::ReceiveMaximum => {
            let (i, v) = u16_(i)?;
            // It is a Protocol Error to include the Receive Maximum value ... of 0.
            if v == 0 {
                return fail(Violation::InvalidPropertyValue);
            }
            Ok((i, V::TwoByteInteger(v)))
        }
        P::TopicAlias => {
            let (i, v) = u16_(i)?;
            // v5 [MQTT-3.3.2-8] A sender MUST NOT send a PUBLISH packet containing a Topic
            // Alias which has the value 0.
            if v == 0 {
                return fail(Violation::TopicAliasZero);
            }
            Ok((i, V::TwoByteInteger(v)))
        }
        P::SubscriptionIdentifier => {
            let (i, v) = vbi(i)?;
            // It is a Protocol Error if the Subscription Identifier has a value of 0.
            if v == 0 {
                return fail(Violation::InvalidPropertyValue);
            }
            Ok((i, V::VariableByteInteger(v)))
        }
        P::ResponseTopic => {
            let (i, b) = binary(i)?;
            let s = match check_utf8(b) {
                Ok(s) => s,
                Err(v) => return fail(v),
            };
            // v5 [MQTT-3.3.2-14] The Response Topic MUST NOT contain wildcard characters
            // (and, a Topic Name, is not empty).
            if s.is_empty() || has_wildcard(s.as_bytes()) {
                return fail(Violation::ResponseTopicInvalid);
            }
            Ok((i, V::Utf8(s)))
        }
        P::ContentType
        | P::AssignedClientIdentifier
        | P::AuthenticationMethod
        | P::ResponseInformation
        | P::ServerReference
        | P::ReasonString => {
            let (i, s) = utf8(i)?;
            Ok((i, V::Utf8(s)))
        }
        P::CorrelationData | P::AuthenticationData => {
            let (i, b) = binary(i)?;
            Ok((i, V::Binary(b)))
        }
        P::UserProperty => {
            // v5 [MQTT-1.5.7-1] Both strings MUST comply with the requirements for UTF-8
            // Encoded Strings.
            let (i, k) = utf8(i)?;
            let (i, v) = utf8(i)?;
            Ok((i, V::Pair(k, v)))
        }
    }
}

/// Checks properties in wire form (without the Property Length) as `Properties` decoding
/// does, in the same order, so that both report the same first violation.
pub(crate) fn validate_raw(mut p: &[u8], ctx: PropertyContext) -> Result<(), Violation> {
    let mut seen: u32 = 0;
    while !p.is_empty() {
        let (i, raw) = vbi(p).map_err(crate::wire::violation_of)?;
        let Some(id) = PropertyId::from_u32(raw) else {
            return Err(Violation::UnknownProperty);
        };
        // Section 2.2.2.2: an Identifier not valid for the packet type is a Malformed Packet.
        if !id.is_allowed_in(ctx) {
            return Err(Violation::PropertyNotAllowed);
        }
        let (i, _) = raw_value(i, id).map_err(crate::wire::violation_of)?;
        let repeatable = id == PropertyId::UserProperty
            || (id == PropertyId::SubscriptionIdentifier
                && ctx == PropertyContext::Packet(PacketType::Publish));
        if !repeatable && seen & id.bit() != 0 {
            return Err(Violation::DuplicateProperty);
        }
        seen |= id.bit();
        p = i;
    }
    // Section 3.1.2.11.10: Authentication Data without an Authentication Method.
    if seen & PropertyId::AuthenticationData.bit() != 0
        && seen & PropertyId::AuthenticationMethod.bit() == 0
    {
        return Err(Violation::AuthenticationDataWithoutMethod);
    }
    Ok(())
}
