//! Reason codes (MQTT 5.0 section 2.4) and the MQTT 3.1.1 return codes mapped onto them.
//!
//! A [`ReasonCode`] is a newtype over the byte on the wire with a named constant for every code
//! the specification defines; `Debug` prints the hex value and the name. Which codes a packet may
//! carry is answered by [`ReasonCode::is_valid_for`], straight from the tables of section 3.

use core::fmt;

use crate::types::PacketType;

/// A reason code: the byte on the wire, with names for the defined values.
/// The default is 0x00 (Success, Normal disconnection, Granted QoS 0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReasonCode(pub u8);

// Bit flags for the packets a code is valid in.
const CONNACK: u16 = 1 << 0;
const PUBACK: u16 = 1 << 1;
const PUBREC: u16 = 1 << 2;
const PUBREL: u16 = 1 << 3;
const PUBCOMP: u16 = 1 << 4;
const SUBACK: u16 = 1 << 5;
const UNSUBACK: u16 = 1 << 6;
const DISCONNECT: u16 = 1 << 7;
const AUTH: u16 = 1 << 8;

/// (code, name, packets) for every defined code; the name of 0x00 depends on the packet.
const TABLE: &[(u8, &str, u16)] = &[
    (
        0x00,
        "Success",
        CONNACK | PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK | DISCONNECT | AUTH,
    ),
    (0x01, "Granted QoS 1", SUBACK),
    (0x02, "Granted QoS 2", SUBACK),
    (0x04, "Disconnect with Will Message", DISCONNECT),
    (0x10, "No matching subscribers", PUBACK | PUBREC),
    (0x11, "No subscription existed", UNSUBACK),
    (0x18, "Continue authentication", AUTH),
    (0x19, "Re-authenticate", AUTH),
    (
        0x80,
        "Unspecified error",
        CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT,
    ),
    (0x81, "Malformed Packet", CONNACK | DISCONNECT),
    (0x82, "Protocol Error", CONNACK | DISCONNECT),
    (
        0x83,
        "Implementation specific error",
        CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT,
    ),
    (0x84, "Unsupported Protocol Version", CONNACK),
    (0x85, "Client Identifier not valid", CONNACK),
    (0x86, "Bad User Name or Password", CONNACK),
    (
        0x87,
        "Not authorized",
        CONNACK | PUBACK | PUBREC | SUBACK | UNSUBACK | DISCONNECT,
    ),
    (0x88, "Server unavailable", CONNACK),
    (0x89, "Server busy", CONNACK | DISCONNECT),
    (0x8A, "Banned", CONNACK),
    (0x8B, "Server shutting down", DISCONNECT),
    (0x8C, "Bad authentication method", CONNACK | DISCONNECT),
    (0x8D, "Keep Alive timeout", DISCONNECT),
    (0x8E, "Session taken over", DISCONNECT),
    (0x8F, "Topic Filter invalid", SUBACK | UNSUBACK | DISCONNECT),
    (
        0x90,
        "Topic Name invalid",
        CONNACK | PUBACK | PUBREC | DISCONNECT,
    ),
    (
        0x91,
        "Packet Identifier in use",
        PUBACK | PUBREC | SUBACK | UNSUBACK,
    ),
    (0x92, "Packet Identifier not found", PUBREL | PUBCOMP),
    (0x93, "Receive Maximum exceeded", DISCONNECT),
    (0x94, "Topic Alias invalid", DISCONNECT),
    (0x95, "Packet too large", CONNACK | DISCONNECT),
    (0x96, "Message rate too high", DISCONNECT),
    (
        0x97,
        "Quota exceeded",
        CONNACK | PUBACK | PUBREC | SUBACK | DISCONNECT,
    ),
    (0x98, "Administrative action", DISCONNECT),
    (
        0x99,
        "Payload format invalid",
        CONNACK | PUBACK | PUBREC | DISCONNECT,
    ),
    (0x9A, "Retain not supported", CONNACK | DISCONNECT),
    (0x9B, "QoS not supported", CONNACK | DISCONNECT),
    (0x9C, "Use another server", CONNACK | DISCONNECT),
    (0x9D, "Server moved", CONNACK | DISCONNECT),
    (
        0x9E,
        "Shared Subscriptions not supported",
        SUBACK | DISCONNECT,
    ),
    (0x9F, "Connection rate exceeded", CONNACK | DISCONNECT),
    (0xA0, "Maximum connect time", DISCONNECT),
    (
        0xA1,
        "Subscription Identifiers not supported",
        SUBACK | DISCONNECT,
    ),
    (
        0xA2,
        "Wildcard Subscriptions not supported",
        SUBACK | DISCONNECT,
    ),
];

const fn packet_bit(packet: PacketType) -> u16 {
    match packet {
        PacketType::ConnAck => CONNACK,
        PacketType::PubAck => PUBACK,
        PacketType::PubRec => PUBREC,
        PacketType::PubRel => PUBREL,
        PacketType::PubComp => PUBCOMP,
        PacketType::SubAck => SUBACK,
        PacketType::UnsubAck => UNSUBACK,
        PacketType::Disconnect => DISCONNECT,
        PacketType::Auth => AUTH,
        _ => 0,
    }
}

#[allow(missing_docs)] // the names are the specification's own; see its Table 2-6
impl ReasonCode {
    pub const SUCCESS: Self = Self(0x00);
    pub const NORMAL_DISCONNECTION: Self = Self(0x00);
    pub const GRANTED_QOS_0: Self = Self(0x00);
    pub const GRANTED_QOS_1: Self = Self(0x01);
    pub const GRANTED_QOS_2: Self = Self(0x02);
    pub const DISCONNECT_WITH_WILL_MESSAGE: Self = Self(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: Self = Self(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: Self = Self(0x11);
    pub const CONTINUE_AUTHENTICATION: Self = Self(0x18);
    pub const RE_AUTHENTICATE: Self = Self(0x19);
    pub const UNSPECIFIED_ERROR: Self = Self(0x80);
    pub const MALFORMED_PACKET: Self = Self(0x81);
    pub const PROTOCOL_ERROR: Self = Self(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: Self = Self(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: Self = Self(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: Self = Self(0x86);
    pub const NOT_AUTHORIZED: Self = Self(0x87);
    pub const SERVER_UNAVAILABLE: Self = Self(0x88);
    pub const SERVER_BUSY: Self = Self(0x89);
    pub const BANNED: Self = Self(0x8A);
    pub const SERVER_SHUTTING_DOWN: Self = Self(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: Self = Self(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: Self = Self(0x8D);
    pub const SESSION_TAKEN_OVER: Self = Self(0x8E);
    pub const TOPIC_FILTER_INVALID: Self = Self(0x8F);
    pub const TOPIC_NAME_INVALID: Self = Self(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: Self = Self(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: Self = Self(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: Self = Self(0x93);
    pub const TOPIC_ALIAS_INVALID: Self = Self(0x94);
    pub const PACKET_TOO_LARGE: Self = Self(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: Self = Self(0x96);
    pub const QUOTA_EXCEEDED: Self = Self(0x97);
    pub const ADMINISTRATIVE_ACTION: Self = Self(0x98);
    pub const PAYLOAD_FORMAT_INVALID: Self = Self(0x99);
    pub const RETAIN_NOT_SUPPORTED: Self = Self(0x9A);
    pub const QOS_NOT_SUPPORTED: Self = Self(0x9B);
    pub const USE_ANOTHER_SERVER: Self = Self(0x9C);
    pub const SERVER_MOVED: Self = Self(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: Self = Self(0x9F);
    pub const MAXIMUM_CONNECT_TIME: Self = Self(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: Self = Self(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0xA2);
}

impl ReasonCode {
    /// The specification's name for this code, if it defines one (0x00 is called "Success").
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        TABLE
            .iter()
            .find(|(c, _, _)| *c == self.0)
            .map(|(_, n, _)| *n)
    }

    /// Whether an MQTT 5.0 `packet` may carry this code (section 3's per-packet tables).
    #[must_use]
    pub fn is_valid_for(self, packet: PacketType) -> bool {
        let bit = packet_bit(packet);
        TABLE.iter().any(|(c, _, p)| *c == self.0 && p & bit != 0)
    }

    /// Whether the code reports a failure (0x80 or above).
    #[must_use]
    pub const fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The MQTT 3.1.1 CONNACK return code (section 3.2.2.3 of 3.1.1) for this code, if any.
    #[must_use]
    pub const fn to_v3_connect_return_code(self) -> Option<u8> {
        match self.0 {
            0x00 => Some(0),
            0x84 => Some(1),
            0x85 => Some(2),
            0x88 => Some(3),
            0x86 => Some(4),
            0x87 => Some(5),
            _ => None,
        }
    }

    /// The reason code for an MQTT 3.1.1 CONNACK return code (0 to 5).
    #[must_use]
    pub const fn from_v3_connect_return_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::SUCCESS),
            1 => Some(Self::UNSUPPORTED_PROTOCOL_VERSION),
            2 => Some(Self::CLIENT_IDENTIFIER_NOT_VALID),
            3 => Some(Self::SERVER_UNAVAILABLE),
            4 => Some(Self::BAD_USER_NAME_OR_PASSWORD),
            5 => Some(Self::NOT_AUTHORIZED),
            _ => None,
        }
    }

    /// Whether this is one of the MQTT 3.1.1 SUBACK return codes (0x00, 0x01, 0x02, 0x80),
    /// which keep their values. 3.1.1 [MQTT-3.9.3-2]
    #[must_use]
    pub const fn is_v3_suback_return_code(self) -> bool {
        matches!(self.0, 0x00 | 0x01 | 0x02 | 0x80)
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "0x{:02X} {name}", self.0),
            None => write!(f, "0x{:02X}", self.0),
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl From<ReasonCode> for u8 {
    fn from(code: ReasonCode) -> Self {
        code.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_hex_and_name() {
        assert_eq!(
            format!("{:?}", ReasonCode::PACKET_TOO_LARGE),
            "0x95 Packet too large"
        );
        assert_eq!(format!("{:?}", ReasonCode(0x42)), "0x42");
    }

    // v5 [MQTT-3.4.2-1] [MQTT-3.6.2-1] [MQTT-3.14.2-1] [MQTT-3.15.2-1]
    #[test]
    fn per_packet_tables() {
        assert!(ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PacketType::PubAck));
        assert!(!ReasonCode::NO_MATCHING_SUBSCRIBERS.is_valid_for(PacketType::PubRel));
        assert!(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.is_valid_for(PacketType::PubRel));
        assert!(!ReasonCode::PACKET_IDENTIFIER_NOT_FOUND.is_valid_for(PacketType::PubAck));
        assert!(ReasonCode::SESSION_TAKEN_OVER.is_valid_for(PacketType::Disconnect));
        assert!(!ReasonCode::SESSION_TAKEN_OVER.is_valid_for(PacketType::ConnAck));
        assert!(ReasonCode::RE_AUTHENTICATE.is_valid_for(PacketType::Auth));
        assert!(!ReasonCode::UNSPECIFIED_ERROR.is_valid_for(PacketType::Auth));
        assert!(!ReasonCode(0x03).is_valid_for(PacketType::SubAck));
    }

    #[test]
    fn v3_return_codes_round_trip() {
        for code in 0..=5u8 {
            let rc = ReasonCode::from_v3_connect_return_code(code).unwrap();
            assert_eq!(rc.to_v3_connect_return_code(), Some(code));
        }
        assert_eq!(ReasonCode::from_v3_connect_return_code(6), None);
        assert_eq!(ReasonCode::BANNED.to_v3_connect_return_code(), None);
    }
}
