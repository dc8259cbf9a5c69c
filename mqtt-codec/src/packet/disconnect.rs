//! DISCONNECT (section 3.14). Empty in MQTT 3.1.1; in 5.0 a reason code and properties, both
//! optional.

use bytes::Bytes;

use super::Body;
use super::ack::{decode_reason_props, reason_props_len, write_reason_props};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::reason_code::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};

/// DISCONNECT (section 3.14).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Disconnect {
    /// The Disconnect Reason Code (0x00 Normal disconnection; always 0 in MQTT 3.1.1).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5.0): Session Expiry Interval, Reason String, User Properties, Server
    /// Reference.
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    #[must_use]
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: Properties::default(),
        }
    }
}

impl Body for Disconnect {
    const TYPE: PacketType = PacketType::Disconnect;

    fn decode(src: &Bytes, _flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        if !version.is_v5() {
            return if src.is_empty() {
                Ok(Self::default())
            } else {
                Err(Violation::TrailingBytes)
            };
        }
        let (reason_code, properties) = decode_reason_props(src, PacketType::Disconnect, true)?;
        Ok(Self {
            reason_code,
            properties,
        })
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        if !version.is_v5() {
            return if *self == Self::default() {
                Ok(())
            } else {
                Err(Violation::NotRepresentable)
            };
        }
        if !self.reason_code.is_valid_for(PacketType::Disconnect) {
            return Err(Violation::InvalidReasonCode);
        }
        self.properties
            .validate(PropertyContext::Packet(PacketType::Disconnect))
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            reason_props_len(self.reason_code, &self.properties, true)
        } else {
            0
        }
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        if version.is_v5() {
            write_reason_props(self.reason_code, &self.properties, true, buf);
        }
    }
}
