//! The shape PUBACK, PUBREC, PUBREL and PUBCOMP share: a Packet Identifier, then (MQTT 5.0) a
//! reason code and properties, both of which may be left out (sections 3.4 to 3.7).

use bytes::Bytes;

use super::form::{Form, Owned};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::reason_code::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion};
use crate::wire::{all_consumed, packet_id, u8_};

/// The decoded fields of an acknowledgement.
pub(crate) type AckFields = (PacketId, ReasonCode, Properties);

pub(crate) fn decode(
    src: &Bytes,
    version: ProtocolVersion,
    ty: PacketType,
) -> Result<AckFields, Violation> {
    parse(Owned(src), src, version, ty)
}

/// An acknowledgement's fields, in the form `f` makes.
pub(crate) fn parse<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
    version: ProtocolVersion,
    ty: PacketType,
) -> Result<(PacketId, ReasonCode, F::Props), Violation> {
    let ctx = PropertyContext::Packet(ty);
    all_consumed(body, |i| {
        let (i, id) = packet_id(i)?;
        if !version.is_v5() || i.is_empty() {
            // 3.1.1: the Remaining Length is exactly 2. 5.0: "The Reason Code and Property
            // Length can be omitted if the Reason Code is 0x00 (Success) and there are no
            // Properties."
            return Ok((i, (id, ReasonCode::SUCCESS, f.no_props(ctx))));
        }
        let (i, code) = u8_(i)?;
        let code = ReasonCode(code);
        // v5 [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1]: one of the packet's
        // reason codes.
        if !code.is_valid_for(ty) {
            return crate::wire::fail(Violation::InvalidReasonCode);
        }
        if i.is_empty() {
            // "If the Remaining Length is less than 4 there is no Property Length and the value
            // of 0 is used."
            return Ok((i, (id, code, f.no_props(ctx))));
        }
        let (i, props) = f.props(i, ctx)?;
        Ok((i, (id, code, props)))
    })
}

pub(crate) fn validate(
    code: ReasonCode,
    props: &Properties,
    version: ProtocolVersion,
    ty: PacketType,
) -> Result<(), Violation> {
    if !version.is_v5() {
        if code != ReasonCode::SUCCESS || !props.is_empty() {
            return Err(Violation::NotRepresentable);
        }
        return Ok(());
    }
    if !code.is_valid_for(ty) {
        return Err(Violation::InvalidReasonCode);
    }
    props.validate(PropertyContext::Packet(ty))
}

pub(crate) fn body_len(code: ReasonCode, props: &Properties, version: ProtocolVersion) -> usize {
    if !version.is_v5() || (code == ReasonCode::SUCCESS && props.is_empty()) {
        2
    } else if props.is_empty() {
        3
    } else {
        3 + props.wire_len()
    }
}

pub(crate) fn write(
    id: PacketId,
    code: ReasonCode,
    props: &Properties,
    version: ProtocolVersion,
    buf: &mut impl crate::wire::Sink,
) {
    buf.put_u16(id.get());
    if !version.is_v5() || (code == ReasonCode::SUCCESS && props.is_empty()) {
        return;
    }
    buf.put_u8(code.0);
    if !props.is_empty() {
        props.write(buf);
    }
}

/// Defines one of the four acknowledgement packets.
macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident, $ty:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub struct $name {
            /// The Packet Identifier of the PUBLISH (or PUBREC, PUBREL) acknowledged.
            pub packet_id: $crate::types::PacketId,
            /// The reason code (always Success in MQTT 3.1.1).
            pub reason_code: $crate::reason_code::ReasonCode,
            /// Properties (MQTT 5.0): Reason String and User Properties.
            pub properties: $crate::properties::Properties,
        }

        impl $name {
            /// A successful acknowledgement of `packet_id`, without properties.
            #[must_use]
            pub fn new(packet_id: $crate::types::PacketId) -> Self {
                Self {
                    packet_id,
                    reason_code: $crate::reason_code::ReasonCode::SUCCESS,
                    properties: $crate::properties::Properties::default(),
                }
            }
        }

        impl $crate::packet::Body for $name {
            const TYPE: $crate::types::PacketType = $ty;

            fn decode(
                src: &bytes::Bytes,
                _flags: u8,
                version: $crate::types::ProtocolVersion,
            ) -> Result<Self, $crate::error::Violation> {
                let (packet_id, reason_code, properties) =
                    $crate::packet::ack::decode(src, version, $ty)?;
                Ok(Self { packet_id, reason_code, properties })
            }

            fn validate(
                &self,
                version: $crate::types::ProtocolVersion,
            ) -> Result<(), $crate::error::Violation> {
                $crate::packet::ack::validate(self.reason_code, &self.properties, version, $ty)
            }

            fn body_len(&self, version: $crate::types::ProtocolVersion) -> usize {
                $crate::packet::ack::body_len(self.reason_code, &self.properties, version)
            }

            fn write(&self, version: $crate::types::ProtocolVersion, buf: &mut impl $crate::wire::Sink) {
                $crate::packet::ack::write(
                    self.packet_id,
                    self.reason_code,
                    &self.properties,
                    version,
                    buf,
                );
            }
        }
    };
}

pub(crate) use ack_packet;

/// DISCONNECT and AUTH (MQTT 5.0): an optional reason code and optional properties.
/// `reason_only_allowed`: whether a body of just the reason code is valid (DISCONNECT) or not
/// (AUTH, whose Property Length may only be left out together with the reason code).
pub(crate) fn decode_reason_props(
    src: &Bytes,
    ty: PacketType,
    reason_only_allowed: bool,
) -> Result<(ReasonCode, Properties), Violation> {
    parse_reason_props(Owned(src), src, ty, reason_only_allowed)
}

/// A DISCONNECT's or an AUTH's reason code and properties (MQTT 5.0), in the form `f` makes.
pub(crate) fn parse_reason_props<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
    ty: PacketType,
    reason_only_allowed: bool,
) -> Result<(ReasonCode, F::Props), Violation> {
    let ctx = PropertyContext::Packet(ty);
    all_consumed(body, |i| {
        if i.is_empty() {
            return Ok((i, (ReasonCode::SUCCESS, f.no_props(ctx))));
        }
        let (i, code) = u8_(i)?;
        let code = ReasonCode(code);
        // v5 [MQTT-3.14.2-1] [MQTT-3.15.2-1]: one of the packet's reason codes.
        if !code.is_valid_for(ty) {
            return crate::wire::fail(Violation::InvalidReasonCode);
        }
        if i.is_empty() && reason_only_allowed {
            return Ok((i, (code, f.no_props(ctx))));
        }
        let (i, props) = f.props(i, ctx)?;
        Ok((i, (code, props)))
    })
}

pub(crate) fn reason_props_len(
    code: ReasonCode,
    props: &Properties,
    reason_only_allowed: bool,
) -> usize {
    if code == ReasonCode::SUCCESS && props.is_empty() {
        0
    } else if props.is_empty() && reason_only_allowed {
        1
    } else {
        1 + props.wire_len()
    }
}

pub(crate) fn write_reason_props(
    code: ReasonCode,
    props: &Properties,
    reason_only_allowed: bool,
    buf: &mut impl crate::wire::Sink,
) {
    match reason_props_len(code, props, reason_only_allowed) {
        0 => {}
        1 => buf.put_u8(code.0),
        _ => {
            buf.put_u8(code.0);
            props.write(buf);
        }
    }
}
