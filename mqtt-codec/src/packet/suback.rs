//! SUBACK (section 3.9): one reason code per Topic Filter of the SUBSCRIBE.

use crate::prelude::*;
use bytes::Bytes;

use super::Body;
use super::form::{Form, Owned};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::reason_code::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{all_consumed, fail, packet_id};

/// SUBACK (section 3.9). MQTT 3.1.1 return codes (0x00, 0x01, 0x02, 0x80) have the values of
/// the MQTT 5.0 reason codes of the same meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubAck {
    /// The Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): Reason String and User Properties.
    pub properties: Properties,
    /// One reason code per Topic Filter, in the order of the SUBSCRIBE.
    pub reason_codes: Vec<ReasonCode>,
}

fn check_code(code: ReasonCode, v5: bool) -> Result<(), Violation> {
    // v5 [MQTT-3.9.3-2]: one of the Subscribe Reason Codes; v3.1.1 [MQTT-3.9.3-2]: return codes
    // other than 0x00, 0x01, 0x02 and 0x80 are reserved and MUST NOT be used.
    let ok = if v5 {
        code.is_valid_for(PacketType::SubAck)
    } else {
        code.is_v3_suback_return_code()
    };
    if ok {
        Ok(())
    } else {
        Err(Violation::InvalidReasonCode)
    }
}

impl Body for SubAck {
    const TYPE: PacketType = PacketType::SubAck;

    fn decode(src: &Bytes, _flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let (packet_id, properties, codes) = parse(Owned(src), src, version)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes: codes.iter().map(|&b| ReasonCode(b)).collect(),
        })
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        let v5 = version.is_v5();
        if self.reason_codes.is_empty() {
            return Err(Violation::AckWithoutReasonCodes);
        }
        for &c in &self.reason_codes {
            check_code(c, v5)?;
        }
        if v5 {
            self.properties
                .validate(PropertyContext::Packet(PacketType::SubAck))
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
        } + self.reason_codes.len()
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(buf);
        }
        for c in &self.reason_codes {
            buf.put_u8(c.0);
        }
    }
}

/// A SUBACK's Packet Identifier, properties and reason codes (checked), in the form `f` makes.
pub(crate) fn parse<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
    version: ProtocolVersion,
) -> Result<(PacketId, F::Props, &'a [u8]), Violation> {
    let v5 = version.is_v5();
    let ctx = PropertyContext::Packet(PacketType::SubAck);
    all_consumed(body, |i| {
        let (i, packet_id) = packet_id(i)?;
        let (i, properties) = f.props_if(v5, i, ctx)?;
        if i.is_empty() {
            return fail(Violation::AckWithoutReasonCodes);
        }
        for &b in i {
            if let Err(v) = check_code(ReasonCode(b), v5) {
                return fail(v);
            }
        }
        Ok((&[], (packet_id, properties, i)))
    })
}
