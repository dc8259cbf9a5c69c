//! Errors that name the rule that was broken and the reason code to answer with.
//!
//! Every way a packet can be malformed is one [`Violation`]. [`Violation::rule`] is *the* table
//! that maps it to the normative statement of each protocol version, the section of the
//! specification, and the reason code a receiver sends (in a CONNACK or DISCONNECT for MQTT 5.0;
//! an MQTT 3.1.1 receiver closes the network connection). Brokers and clients built on this crate
//! use this table rather than keeping their own.

use core::fmt;

use crate::reason_code::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};

/// One way in which bytes on the wire (or a packet handed to the encoder) break the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Violation {
    /// The packet type nibble is 0 (reserved), or 15 (AUTH) in MQTT 3.1.1.
    InvalidPacketType,
    /// A reserved flag bit of the fixed header does not have the value the specification lists.
    ReservedFlags,
    /// A Variable Byte Integer continues past its fourth byte.
    VariableByteIntegerTooLong,
    /// A Variable Byte Integer does not use the minimum number of bytes (MQTT 5.0).
    VariableByteIntegerNotMinimal,
    /// The packet is larger than the maximum packet size the receiver accepts.
    PacketTooLarge,
    /// A field runs past the end of the packet as given by the Remaining Length.
    Truncated,
    /// Bytes are left over after the last field of the packet.
    TrailingBytes,
    /// A UTF-8 Encoded String is not well-formed UTF-8 (or encodes a surrogate).
    InvalidUtf8,
    /// A UTF-8 Encoded String contains U+0000.
    NullCharacter,
    /// A string or binary field is longer than 65 535 bytes (encoder only).
    FieldTooLong,
    /// The Remaining Length would exceed 268 435 455 bytes (encoder only).
    RemainingLengthTooLarge,
    /// A PUBLISH has both QoS bits set.
    InvalidQos,
    /// A QoS 0 PUBLISH has the DUP flag set.
    DupWithQos0,
    /// A packet that needs a Packet Identifier carries 0.
    PacketIdZero,
    /// A PUBLISH at QoS 0 was given a Packet Identifier, or one at QoS 1/2 none (encoder only).
    PacketIdMismatch,
    /// A Topic Name contains `+` or `#`.
    TopicNameWildcard,
    /// A Topic Name is empty (and, in MQTT 5.0, no Topic Alias is given).
    TopicNameEmpty,
    /// A Topic Filter is empty.
    TopicFilterEmpty,
    /// `#` is not alone in the last level of a Topic Filter.
    MultiLevelWildcardMisplaced,
    /// `+` does not occupy a whole level of a Topic Filter.
    SingleLevelWildcardMisplaced,
    /// A `$share/` filter has an empty ShareName (MQTT 5.0).
    ShareNameEmpty,
    /// A `$share/` filter has a ShareName with `+` or `#`, or no filter after it (MQTT 5.0).
    SharedSubscriptionInvalid,
    /// The CONNECT protocol name is not `MQTT` (or `MQIsdp` for level 3).
    ProtocolNameInvalid,
    /// The CONNECT protocol level is not 3, 4 or 5.
    UnsupportedProtocolVersion,
    /// The reserved bit of the CONNECT flags is set.
    ConnectReservedFlag,
    /// Will QoS is not 0 while the Will Flag is 0.
    WillQosWithoutWill,
    /// Will Retain is set while the Will Flag is 0.
    WillRetainWithoutWill,
    /// Will QoS is 3.
    WillQosInvalid,
    /// The Password Flag is set without the User Name Flag (MQTT 3.1.1).
    PasswordWithoutUserName,
    /// The reserved bits of the CONNACK acknowledge flags are not 0.
    ConnAckReservedFlags,
    /// A CONNACK with a non-zero reason code says Session Present.
    SessionPresentOnError,
    /// A SUBSCRIBE has no Topic Filter.
    SubscribeWithoutFilters,
    /// An UNSUBSCRIBE has no Topic Filter.
    UnsubscribeWithoutFilters,
    /// A SUBACK or UNSUBACK has no reason code.
    AckWithoutReasonCodes,
    /// The reserved bits of the Subscription Options are not 0.
    SubscriptionOptionsReserved,
    /// The Maximum QoS of a subscription is 3.
    SubscriptionQosInvalid,
    /// Retain Handling is 3.
    RetainHandlingInvalid,
    /// No Local is set on a Shared Subscription.
    NoLocalOnSharedSubscription,
    /// The reason code (or 3.1.1 return code) is not one this packet may carry.
    InvalidReasonCode,
    /// A property identifier is not defined by the specification.
    UnknownProperty,
    /// A property is not allowed in this packet (or in the Will Properties).
    PropertyNotAllowed,
    /// A property that may appear once appears twice.
    DuplicateProperty,
    /// A property has a value the specification does not allow (0 where it must be non-zero,
    /// a boolean other than 0 or 1, Maximum QoS 2 …).
    InvalidPropertyValue,
    /// Authentication Data is present without an Authentication Method.
    AuthenticationDataWithoutMethod,
    /// An AUTH packet that is not the two-byte short form has no Authentication Method.
    AuthenticationMethodMissing,
    /// A Topic Alias of 0.
    TopicAliasZero,
    /// A Response Topic contains wildcard characters or is empty.
    ResponseTopicInvalid,
    /// The first packet on a connection is not a CONNECT (or the decoder was not told the
    /// protocol version to decode anything else).
    FirstPacketNotConnect,
    /// A field or packet that cannot be expressed in the protocol version being encoded
    /// (properties or a reason code in MQTT 3.1.1, AUTH in 3.1.1, a v5-only subscription option …).
    NotRepresentable,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = self.rule();
        f.write_str(rule.text)?;
        match rule.v5.or(rule.v3_1_1) {
            Some(id) => write!(f, " [{id}]"),
            None => write!(f, " [section {}]", rule.section),
        }
    }
}

impl core::error::Error for Violation {}

/// Where a [`Violation`] stands in the specification and how a receiver answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rule {
    /// The MQTT 5.0 normative statement broken, where there is one.
    pub v5: Option<&'static str>,
    /// The MQTT 3.1.1 normative statement broken, where there is one.
    pub v3_1_1: Option<&'static str>,
    /// The section of the MQTT 5.0 specification that states the rule.
    pub section: &'static str,
    /// The reason code an MQTT 5.0 receiver answers with (CONNACK or DISCONNECT).
    pub reason_code: ReasonCode,
    /// A short description.
    pub text: &'static str,
}

const fn rule(
    v5: Option<&'static str>,
    v3_1_1: Option<&'static str>,
    section: &'static str,
    reason_code: ReasonCode,
    text: &'static str,
) -> Rule {
    Rule {
        v5,
        v3_1_1,
        section,
        reason_code,
        text,
    }
}

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

impl Violation {
    /// The one table: the statement of each version, the section, the reason code and a text.
    #[must_use]
    pub const fn rule(self) -> Rule {
        use Violation as V;
        match self {
            V::InvalidPacketType => rule(
                None,
                None,
                "2.1.2",
                MALFORMED,
                "reserved or unknown packet type",
            ),
            V::ReservedFlags => rule(
                Some("MQTT-2.1.3-1"),
                Some("MQTT-2.2.2-1"),
                "2.1.3",
                MALFORMED,
                "reserved fixed-header flags have the wrong value",
            ),
            V::VariableByteIntegerTooLong => rule(
                None,
                None,
                "1.5.5",
                MALFORMED,
                "variable byte integer longer than 4 bytes",
            ),
            V::VariableByteIntegerNotMinimal => rule(
                Some("MQTT-1.5.5-1"),
                None,
                "1.5.5",
                MALFORMED,
                "variable byte integer not encoded in the minimum number of bytes",
            ),
            V::PacketTooLarge => rule(
                None,
                None,
                "3.1.2.11.4",
                ReasonCode::PACKET_TOO_LARGE,
                "packet larger than the maximum packet size",
            ),
            V::Truncated => rule(
                None,
                None,
                "2.1.4",
                MALFORMED,
                "a field runs past the end given by the remaining length",
            ),
            V::TrailingBytes => rule(
                None,
                None,
                "2.1.4",
                MALFORMED,
                "bytes left over after the last field of the packet",
            ),
            V::InvalidUtf8 => rule(
                Some("MQTT-1.5.4-1"),
                Some("MQTT-1.5.3-1"),
                "1.5.4",
                MALFORMED,
                "UTF-8 string is not well-formed UTF-8",
            ),
            V::NullCharacter => rule(
                Some("MQTT-1.5.4-2"),
                Some("MQTT-1.5.3-2"),
                "1.5.4",
                MALFORMED,
                "UTF-8 string contains U+0000",
            ),
            V::FieldTooLong => rule(
                None,
                None,
                "1.5.4",
                MALFORMED,
                "string or binary data longer than 65535 bytes",
            ),
            V::RemainingLengthTooLarge => rule(
                None,
                None,
                "2.1.4",
                ReasonCode::PACKET_TOO_LARGE,
                "remaining length over 268435455",
            ),
            V::InvalidQos => rule(
                Some("MQTT-3.3.1-4"),
                Some("MQTT-3.3.1-4"),
                "3.3.1.2",
                MALFORMED,
                "PUBLISH has both QoS bits set",
            ),
            V::DupWithQos0 => rule(
                Some("MQTT-3.3.1-2"),
                Some("MQTT-3.3.1-2"),
                "3.3.1.1",
                MALFORMED,
                "QoS 0 PUBLISH has the DUP flag set",
            ),
            V::PacketIdZero => rule(
                Some("MQTT-2.2.1-3"),
                Some("MQTT-2.3.1-1"),
                "2.2.1",
                PROTOCOL,
                "packet identifier is 0",
            ),
            V::PacketIdMismatch => rule(
                Some("MQTT-2.2.1-2"),
                Some("MQTT-2.3.1-5"),
                "2.2.1",
                PROTOCOL,
                "packet identifier present at QoS 0 or absent at QoS 1/2",
            ),
            V::TopicNameWildcard => rule(
                Some("MQTT-3.3.2-2"),
                Some("MQTT-3.3.2-2"),
                "3.3.2.1",
                ReasonCode::TOPIC_NAME_INVALID,
                "topic name contains a wildcard character",
            ),
            V::TopicNameEmpty => rule(
                None,
                Some("MQTT-4.7.3-1"),
                "3.3.2.1",
                PROTOCOL,
                "topic name is empty and no topic alias is given",
            ),
            V::TopicFilterEmpty => rule(
                Some("MQTT-4.7.3-1"),
                Some("MQTT-4.7.3-1"),
                "4.7.3",
                ReasonCode::TOPIC_FILTER_INVALID,
                "topic filter is empty",
            ),
            V::MultiLevelWildcardMisplaced => rule(
                Some("MQTT-4.7.1-1"),
                Some("MQTT-4.7.1-2"),
                "4.7.1.2",
                ReasonCode::TOPIC_FILTER_INVALID,
                "'#' must be alone in the last level of a topic filter",
            ),
            V::SingleLevelWildcardMisplaced => rule(
                Some("MQTT-4.7.1-2"),
                Some("MQTT-4.7.1-3"),
                "4.7.1.3",
                ReasonCode::TOPIC_FILTER_INVALID,
                "'+' must occupy a whole level of a topic filter",
            ),
            V::ShareNameEmpty => rule(
                Some("MQTT-4.8.2-1"),
                None,
                "4.8.2",
                ReasonCode::TOPIC_FILTER_INVALID,
                "$share/ filter needs a ShareName at least one character long",
            ),
            V::SharedSubscriptionInvalid => rule(
                Some("MQTT-4.8.2-2"),
                None,
                "4.8.2",
                ReasonCode::TOPIC_FILTER_INVALID,
                "$share/ filter needs a ShareName without '/', '+', '#' and then a filter",
            ),
            V::ProtocolNameInvalid => rule(
                Some("MQTT-3.1.2-1"),
                Some("MQTT-3.1.2-1"),
                "3.1.2.1",
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                "protocol name is not MQTT (or MQIsdp at level 3)",
            ),
            V::UnsupportedProtocolVersion => rule(
                Some("MQTT-3.1.2-2"),
                Some("MQTT-3.1.2-2"),
                "3.1.2.2",
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                "protocol level is not 3, 4 or 5",
            ),
            V::ConnectReservedFlag => rule(
                Some("MQTT-3.1.2-3"),
                Some("MQTT-3.1.2-3"),
                "3.1.2.3",
                MALFORMED,
                "reserved bit of the CONNECT flags is set",
            ),
            V::WillQosWithoutWill => rule(
                Some("MQTT-3.1.2-11"),
                Some("MQTT-3.1.2-13"),
                "3.1.2.6",
                MALFORMED,
                "Will QoS is not 0 while the Will Flag is 0",
            ),
            V::WillRetainWithoutWill => rule(
                Some("MQTT-3.1.2-13"),
                Some("MQTT-3.1.2-15"),
                "3.1.2.7",
                MALFORMED,
                "Will Retain is set while the Will Flag is 0",
            ),
            V::WillQosInvalid => rule(
                Some("MQTT-3.1.2-12"),
                Some("MQTT-3.1.2-14"),
                "3.1.2.6",
                MALFORMED,
                "Will QoS is 3",
            ),
            V::PasswordWithoutUserName => rule(
                None,
                Some("MQTT-3.1.2-22"),
                "3.1.2.9",
                MALFORMED,
                "Password Flag set without the User Name Flag",
            ),
            V::ConnAckReservedFlags => rule(
                Some("MQTT-3.2.2-1"),
                None,
                "3.2.2.1",
                MALFORMED,
                "reserved bits of the CONNACK flags are set",
            ),
            V::SessionPresentOnError => rule(
                Some("MQTT-3.2.2-6"),
                Some("MQTT-3.2.2-4"),
                "3.2.2.1.1",
                PROTOCOL,
                "CONNACK with a non-zero reason code says Session Present",
            ),
            V::SubscribeWithoutFilters => rule(
                Some("MQTT-3.8.3-2"),
                Some("MQTT-3.8.3-3"),
                "3.8.3",
                PROTOCOL,
                "SUBSCRIBE without a topic filter",
            ),
            V::UnsubscribeWithoutFilters => rule(
                Some("MQTT-3.10.3-2"),
                Some("MQTT-3.10.3-2"),
                "3.10.3",
                PROTOCOL,
                "UNSUBSCRIBE without a topic filter",
            ),
            V::AckWithoutReasonCodes => rule(
                Some("MQTT-3.9.3-2"),
                Some("MQTT-3.8.4-5"),
                "3.9.3",
                PROTOCOL,
                "SUBACK or UNSUBACK without a reason code",
            ),
            V::SubscriptionOptionsReserved => rule(
                Some("MQTT-3.8.3-5"),
                None,
                "3.8.3.1",
                MALFORMED,
                "reserved bits of the subscription options are set",
            ),
            V::SubscriptionQosInvalid => rule(
                None,
                None,
                "3.8.3.1",
                PROTOCOL,
                "subscription Maximum QoS is 3",
            ),
            V::RetainHandlingInvalid => {
                rule(None, None, "3.8.3.1", PROTOCOL, "Retain Handling is 3")
            }
            V::NoLocalOnSharedSubscription => rule(
                Some("MQTT-3.8.3-4"),
                None,
                "3.8.3.1",
                PROTOCOL,
                "No Local set on a shared subscription",
            ),
            V::InvalidReasonCode => rule(
                None,
                None,
                "2.4",
                MALFORMED,
                "reason code not defined for this packet",
            ),
            V::UnknownProperty => rule(
                None,
                None,
                "2.2.2.2",
                MALFORMED,
                "unknown property identifier",
            ),
            V::PropertyNotAllowed => rule(
                None,
                None,
                "2.2.2.2",
                MALFORMED,
                "property not valid for this packet type",
            ),
            V::DuplicateProperty => rule(
                None,
                None,
                "2.2.2.2",
                PROTOCOL,
                "property included more than once",
            ),
            V::InvalidPropertyValue => rule(
                None,
                None,
                "2.2.2.2",
                PROTOCOL,
                "property value not allowed",
            ),
            V::AuthenticationDataWithoutMethod => rule(
                None,
                None,
                "3.1.2.11.10",
                PROTOCOL,
                "Authentication Data without Authentication Method",
            ),
            V::AuthenticationMethodMissing => rule(
                None,
                None,
                "3.15.2.2.2",
                PROTOCOL,
                "AUTH without Authentication Method",
            ),
            V::TopicAliasZero => rule(
                Some("MQTT-3.3.2-8"),
                None,
                "3.3.2.3.4",
                ReasonCode::TOPIC_ALIAS_INVALID,
                "Topic Alias is 0",
            ),
            V::ResponseTopicInvalid => rule(
                Some("MQTT-3.3.2-14"),
                None,
                "3.3.2.3.5",
                PROTOCOL,
                "Response Topic is empty or contains wildcard characters",
            ),
            V::FirstPacketNotConnect => rule(
                Some("MQTT-3.1.0-1"),
                Some("MQTT-3.1.0-1"),
                "3.1",
                PROTOCOL,
                "the first packet from a client must be CONNECT",
            ),
            V::NotRepresentable => rule(
                None,
                None,
                "1.1",
                PROTOCOL,
                "not representable in this protocol version",
            ),
        }
    }
}

/// A decode or encode error: which rule was broken, in which packet, under which version.
///
/// It is small and `Copy`. [`Error::statement`] names the normative statement (for example
/// `MQTT-1.5.5-1`), [`Error::reason_code`] the reason code to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Error {
    violation: Violation,
    packet_type: Option<PacketType>,
    version: Option<ProtocolVersion>,
}

impl Error {
    /// An error for `violation` in a packet of `packet_type`, decoded or encoded as `version`.
    #[must_use]
    pub const fn new(
        violation: Violation,
        packet_type: Option<PacketType>,
        version: Option<ProtocolVersion>,
    ) -> Self {
        Self {
            violation,
            packet_type,
            version,
        }
    }

    /// What was wrong.
    #[must_use]
    pub const fn violation(&self) -> Violation {
        self.violation
    }

    /// The packet in which it was found, when the fixed header had been read.
    #[must_use]
    pub const fn packet_type(&self) -> Option<PacketType> {
        self.packet_type
    }

    /// The protocol version under which the packet was decoded or encoded, when known.
    #[must_use]
    pub const fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The reason code a receiver answers with (MQTT 5.0: in CONNACK or DISCONNECT; an MQTT 3.1.1
    /// receiver closes the network connection).
    #[must_use]
    pub const fn reason_code(&self) -> ReasonCode {
        self.violation.rule().reason_code
    }

    /// The section of the MQTT 5.0 specification.
    #[must_use]
    pub const fn section(&self) -> &'static str {
        self.violation.rule().section
    }

    /// The normative statement broken, for this error's protocol version (MQTT 5.0 when unknown).
    ///
    /// Reserved flags name the statement of the packet type where the specification has one
    /// (for example `MQTT-3.6.1-1` for PUBREL).
    #[must_use]
    pub fn statement(&self) -> Option<&'static str> {
        let v5 = !matches!(
            self.version,
            Some(ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1)
        );
        // Rules the specification states once per packet type.
        let specific = match (self.violation, self.packet_type) {
            (Violation::ReservedFlags, Some(t)) => match t {
                PacketType::PubRel => Some("MQTT-3.6.1-1"),
                PacketType::Subscribe => Some("MQTT-3.8.1-1"),
                PacketType::Unsubscribe => Some("MQTT-3.10.1-1"),
                PacketType::Disconnect => Some("MQTT-3.14.1-1"),
                PacketType::Auth if v5 => Some("MQTT-3.15.1-1"),
                _ => None,
            },
            (Violation::InvalidReasonCode, Some(t)) if v5 => match t {
                PacketType::ConnAck => Some("MQTT-3.2.2-8"),
                PacketType::PubAck => Some("MQTT-3.4.2-1"),
                PacketType::PubRec => Some("MQTT-3.5.2-1"),
                PacketType::PubRel => Some("MQTT-3.6.2-1"),
                PacketType::PubComp => Some("MQTT-3.7.2-1"),
                PacketType::SubAck => Some("MQTT-3.9.3-2"),
                PacketType::UnsubAck => Some("MQTT-3.11.3-2"),
                PacketType::Disconnect => Some("MQTT-3.14.2-1"),
                PacketType::Auth => Some("MQTT-3.15.2-1"),
                _ => None,
            },
            (Violation::InvalidReasonCode, Some(PacketType::SubAck)) => Some("MQTT-3.9.3-2"),
            (Violation::AckWithoutReasonCodes, Some(PacketType::UnsubAck)) if v5 => {
                Some("MQTT-3.11.3-2")
            }
            _ => None,
        };
        if specific.is_some() {
            return specific;
        }
        let rule = self.violation.rule();
        if v5 { rule.v5 } else { rule.v3_1_1 }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = self.violation.rule();
        match self.packet_type {
            Some(t) => write!(f, "{t}: {}", rule.text)?,
            None => f.write_str(rule.text)?,
        }
        match self.statement() {
            Some(id) => write!(f, " [{id}]")?,
            None => write!(f, " [section {}]", rule.section)?,
        }
        write!(f, " (reason code {:?})", rule.reason_code)
    }
}

impl core::error::Error for Error {}

/// For firmware logs: the violation, the packet, the statement and the reason code.
#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "{} in {} ({}, {}): {=str}, reason code {}",
            self.violation,
            self.packet_type,
            self.statement(),
            self.version,
            self.violation.rule().text,
            self.reason_code()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_rule_and_reason_code() {
        let e = Error::new(
            Violation::VariableByteIntegerNotMinimal,
            Some(PacketType::Publish),
            Some(ProtocolVersion::V5),
        );
        let s = e.to_string();
        assert!(s.contains("MQTT-1.5.5-1"), "{s}");
        assert!(s.contains("0x81"), "{s}");
        assert!(s.contains("PUBLISH"), "{s}");
    }

    #[test]
    fn statement_depends_on_version() {
        let v5 = Error::new(Violation::InvalidUtf8, None, Some(ProtocolVersion::V5));
        let v4 = Error::new(Violation::InvalidUtf8, None, Some(ProtocolVersion::V3_1_1));
        assert_eq!(v5.statement(), Some("MQTT-1.5.4-1"));
        assert_eq!(v4.statement(), Some("MQTT-1.5.3-1"));
    }

    #[test]
    fn reserved_flags_name_the_packet_statement() {
        let e = Error::new(
            Violation::ReservedFlags,
            Some(PacketType::PubRel),
            Some(ProtocolVersion::V5),
        );
        assert_eq!(e.statement(), Some("MQTT-3.6.1-1"));
        let e = Error::new(
            Violation::ReservedFlags,
            Some(PacketType::PingReq),
            Some(ProtocolVersion::V3_1_1),
        );
        assert_eq!(e.statement(), Some("MQTT-2.2.2-1"));
    }
}
