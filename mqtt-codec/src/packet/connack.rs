//! CONNACK (section 3.2): the server's answer to CONNECT.

use bytes::Bytes;

use super::Body;
use super::form::{Form, Owned};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::reason_code::ReasonCode;
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::{all_consumed, fail, u8_};

/// CONNACK (section 3.2).
///
/// In MQTT 3.1.1 the return code travels as the [`ReasonCode`] that means the same
/// (0x01 → 0x84 Unsupported Protocol Version, 0x02 → 0x85, 0x03 → 0x88, 0x04 → 0x86,
/// 0x05 → 0x87); see [`ReasonCode::from_v3_connect_return_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// The Connect Reason Code (or 3.1.1 return code, mapped).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5.0).
    pub properties: Properties,
}

impl ConnAck {
    /// A CONNACK with `reason_code`, without properties.
    #[must_use]
    pub fn new(session_present: bool, reason_code: ReasonCode) -> Self {
        Self {
            session_present,
            reason_code,
            properties: Properties::default(),
        }
    }
}

fn check_code(code: ReasonCode, version: ProtocolVersion) -> Result<(), Violation> {
    let ok = if version.is_v5() {
        // v5 [MQTT-3.2.2-8] The Server sending the CONNACK packet MUST use one of the Connect
        // Reason Code values.
        code.is_valid_for(PacketType::ConnAck)
    } else {
        code.to_v3_connect_return_code().is_some()
    };
    if ok {
        Ok(())
    } else {
        Err(Violation::InvalidReasonCode)
    }
}

impl Body for ConnAck {
    const TYPE: PacketType = PacketType::ConnAck;

    fn decode(src: &Bytes, _flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let (session_present, reason_code, properties) = parse(Owned(src), src, version)?;
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        check_code(self.reason_code, version)?;
        if self.session_present && self.reason_code != ReasonCode::SUCCESS {
            return Err(Violation::SessionPresentOnError);
        }
        if version.is_v5() {
            self.properties
                .validate(PropertyContext::Packet(PacketType::ConnAck))
        } else if self.properties.is_empty() {
            Ok(())
        } else {
            Err(Violation::NotRepresentable)
        }
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        2 + if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        }
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        buf.put_u8(u8::from(self.session_present));
        if version.is_v5() {
            buf.put_u8(self.reason_code.0);
            self.properties.write(buf);
        } else {
            buf.put_u8(self.reason_code.to_v3_connect_return_code().unwrap_or(0));
        }
    }
}

/// A CONNACK's Session Present, reason code and properties, in the form `f` makes.
pub(crate) fn parse<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
    version: ProtocolVersion,
) -> Result<(bool, ReasonCode, F::Props), Violation> {
    let ctx = PropertyContext::Packet(PacketType::ConnAck);
    all_consumed(body, |i| {
        let (i, ack_flags) = u8_(i)?;
        // v5 [MQTT-3.2.2-1] Bits 7-1 are reserved and MUST be set to 0.
        if ack_flags & 0xFE != 0 {
            return fail(Violation::ConnAckReservedFlags);
        }
        let session_present = ack_flags & 1 != 0;
        let (i, raw) = u8_(i)?;
        let reason_code = if version.is_v5() {
            ReasonCode(raw)
        } else {
            match ReasonCode::from_v3_connect_return_code(raw) {
                Some(c) => c,
                None => return fail(Violation::InvalidReasonCode),
            }
        };
        if let Err(v) = check_code(reason_code, version) {
            return fail(v);
        }
        // v5 [MQTT-3.2.2-6], v3.1.1 [MQTT-3.2.2-4]: a non-zero code goes with Session
        // Present 0.
        if session_present && reason_code != ReasonCode::SUCCESS {
            return fail(Violation::SessionPresentOnError);
        }
        let (i, properties) = f.props_if(version.is_v5(), i, ctx)?;
        Ok((i, (session_present, reason_code, properties)))
    })
}
