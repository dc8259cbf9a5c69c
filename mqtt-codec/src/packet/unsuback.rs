//! UNSUBACK (section 3.11). MQTT 3.1.1 carries only the Packet Identifier.

use crate::prelude::*;
use bytes::Bytes;

use super::Body;
use super::form::{Form, Owned};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::reason_code::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{all_consumed, fail, packet_id};

/// UNSUBACK (section 3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct UnsubAck {
    /// The Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): Reason String and User Properties.
    pub properties: Properties,
    /// MQTT 5.0: one reason code per Topic Filter, in order. Empty in MQTT 3.1.1.
    pub reason_codes: Vec<ReasonCode>,
}

impl Body for UnsubAck {
    const TYPE: PacketType = PacketType::UnsubAck;

    fn decode(src: &Bytes, _flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let (packet_id, properties, codes) = parse(Owned(src), src, version)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes: codes.iter().map(|&b| ReasonCode(b)).collect(),
        })
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        if !version.is_v5() {
            return if self.reason_codes.is_empty() && self.properties.is_empty() {
                Ok(())
            } else {
                Err(Violation::NotRepresentable)
            };
        }
        if self.reason_codes.is_empty() {
            return Err(Violation::AckWithoutReasonCodes);
        }
        if self
            .reason_codes
            .iter()
            .any(|c| !c.is_valid_for(PacketType::UnsubAck))
        {
            return Err(Violation::InvalidReasonCode);
        }
        self.properties
            .validate(PropertyContext::Packet(PacketType::UnsubAck))
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.wire_len() + self.reason_codes.len()
        } else {
            2
        }
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(buf);
            for c in &self.reason_codes {
                buf.put_u8(c.0);
            }
        }
    }
}

/// An UNSUBACK's Packet Identifier, properties and reason codes (checked; none in 3.1.1), in
/// the form `f` makes.
pub(crate) fn parse<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
    version: ProtocolVersion,
) -> Result<(PacketId, F::Props, &'a [u8]), Violation> {
    let ctx = PropertyContext::Packet(PacketType::UnsubAck);
    all_consumed(body, |i| {
        let (i, packet_id) = packet_id(i)?;
        if !version.is_v5() {
            return Ok((i, (packet_id, f.no_props(ctx), &[][..])));
        }
        let (i, properties) = f.props(i, ctx)?;
        if i.is_empty() {
            return fail(Violation::AckWithoutReasonCodes);
        }
        for &b in i {
            // v5 [MQTT-3.11.3-2]: one of the UNSUBSCRIBE Reason Code values.
            if !ReasonCode(b).is_valid_for(PacketType::UnsubAck) {
                return fail(Violation::InvalidReasonCode);
            }
        }
        Ok((&[], (packet_id, properties, i)))
    })
}
