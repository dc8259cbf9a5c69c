//! The fifteen control packets, one file each, both protocol versions.
//!
//! Every packet type implements the same four steps: decode its body from a complete frame,
//! validate itself for the encoder (the same rules the decoder enforces), compute its exact body
//! length, and write its body.

use crate::prelude::*;
mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod form;
mod packet_ref;
mod ping;
mod puback;
mod pubcomp;
mod publish;
mod publish_ref;
mod pubrec;
mod pubrel;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

use bytes::{Bytes, BytesMut};

pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use packet_ref::{
    AckRef, ConnAckRef, ConnectRef, PacketRef, ReasonRef, SubAckRef, SubscribeRef, UnsubAckRef,
    UnsubscribeRef, WillRef,
};
pub use puback::PubAck;
pub use pubcomp::PubComp;
pub use publish::{Delivery, Publish};
pub use publish_ref::{PropertiesRef, PropertyValue, PublishRef};
pub use pubrec::PubRec;
pub use pubrel::PubRel;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use crate::error::{Error, Violation};
use crate::reason_code::ReasonCode;
use crate::types::vbi::put_vbi;
use crate::types::{PacketType, ProtocolVersion, VBI_MAX, vbi_len};
use crate::wire::{Sink, Window};

/// The checks of a packet's first byte that come before its body (shared by the owned and
/// the borrowed decoders): a known packet type (AUTH only in MQTT 5.0), and the reserved flags
/// of every type but PUBLISH. Returns the type and the version the body is read in (a
/// CONNECT's own).
#[inline]
pub(crate) fn check_first_byte(
    first_byte: u8,
    body: &[u8],
    version: ProtocolVersion,
) -> Result<(PacketType, ProtocolVersion), Error> {
    let Some(ty) = PacketType::from_nibble(first_byte >> 4) else {
        return Err(Error::new(
            Violation::InvalidPacketType,
            None,
            Some(version),
        ));
    };
    let version = if ty == PacketType::Connect {
        connect::peek_version(body).unwrap_or(version)
    } else {
        version
    };
    let err = |v: Violation| Error::new(v, Some(ty), Some(version));
    // AUTH does not exist before MQTT 5.0 (3.1.1 Table 2.1: 15 is Reserved).
    if ty == PacketType::Auth && !version.is_v5() {
        return Err(err(Violation::InvalidPacketType));
    }
    // v5 [MQTT-2.1.3-1], v3.1.1 [MQTT-2.2.2-1] [MQTT-2.2.2-2]: reserved flags MUST be set to
    // the value listed; other values are a Malformed Packet.
    if ty != PacketType::Publish && first_byte & 0x0F != ty.required_flags() {
        return Err(err(Violation::ReservedFlags));
    }
    Ok((ty, version))
}

/// What every packet type implements (crate-internal).
pub(crate) trait Body: Sized {
    /// The packet type.
    const TYPE: PacketType;

    /// Decodes the body (everything after the fixed header; `src` is exactly Remaining Length
    /// bytes). `flags` are the low four bits of the first byte, already checked for every type
    /// but PUBLISH.
    fn decode(src: &Bytes, flags: u8, version: ProtocolVersion) -> Result<Self, Violation>;

    /// Checks what the decoder would reject, so that the encoder never writes it.
    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation>;

    /// The Remaining Length (valid after `validate`).
    fn body_len(&self, version: ProtocolVersion) -> usize;

    /// The low four bits of the first byte.
    fn flags(&self) -> u8 {
        Self::TYPE.required_flags()
    }

    /// Writes the body but its [`Body::tail`] (valid after `validate`).
    fn write(&self, version: ProtocolVersion, buf: &mut impl Sink);

    /// The last bytes of the body, which the encoder copies after [`Body::write`] (a
    /// PUBLISH's payload): not counted in the window the rest is written to.
    #[inline]
    fn tail(&self) -> &[u8] {
        &[]
    }

    /// `validate`, then `body_len`: the encoder's single pass. Packets whose length is costly
    /// to compute twice (PUBLISH, CONNECT and SUBSCRIBE, with their property lists and
    /// strings) do both at once.
    fn checked_body_len(&self, version: ProtocolVersion) -> Result<usize, Violation> {
        self.validate(version)?;
        Ok(self.body_len(version))
    }

    /// `write`, knowing the Remaining Length `checked_body_len` returned.
    fn write_sized(&self, version: ProtocolVersion, body_len: usize, buf: &mut impl Sink) {
        let _ = body_len;
        self.write(version, buf);
    }
}

/// An MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[allow(missing_docs)] // each variant is the packet of the same name
#[non_exhaustive]
pub enum Packet {
    /// Boxed: a CONNECT is large (two property lists) and rare.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

macro_rules! packet_from {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                Packet::$ty(p)
            }
        }
    )*};
}
impl From<Connect> for Packet {
    fn from(p: Connect) -> Self {
        Packet::Connect(Box::new(p))
    }
}

packet_from!(
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);

/// Dispatches `$body` over the packets that have a body type.
macro_rules! with_body {
    ($packet:expr, $p:ident => $body:expr, ping => $ping:expr) => {
        match $packet {
            Packet::Connect(c) => {
                let $p: &Connect = c;
                $body
            }
            Packet::ConnAck($p) => $body,
            Packet::Publish($p) => $body,
            Packet::PubAck($p) => $body,
            Packet::PubRec($p) => $body,
            Packet::PubRel($p) => $body,
            Packet::PubComp($p) => $body,
            Packet::Subscribe($p) => $body,
            Packet::SubAck($p) => $body,
            Packet::Unsubscribe($p) => $body,
            Packet::UnsubAck($p) => $body,
            Packet::Disconnect($p) => $body,
            Packet::Auth($p) => $body,
            Packet::PingReq | Packet::PingResp => $ping,
        }
    };
}

fn body_of<T: Body>(p: &T) -> &T {
    p
}

impl Packet {
    /// The packet's type.
    #[must_use]
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Decodes one packet from its first byte and its body (exactly Remaining Length bytes).
    ///
    /// `version` is the connection's protocol version; a CONNECT carries its own and is decoded
    /// by it. Most callers use [`crate::Decoder`], which also handles framing.
    ///
    /// # Errors
    /// The first violation found, with the packet type and version.
    #[inline]
    pub fn decode_body(
        first_byte: u8,
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Packet, Error> {
        Self::decode_body_owned(first_byte, body.clone(), version)
    }

    /// [`Packet::decode_body`] of a body the caller gives up: a PUBLISH's payload is the end
    /// of `body` itself.
    #[inline]
    pub(crate) fn decode_body_owned(
        first_byte: u8,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Packet, Error> {
        let flags = first_byte & 0x0F;
        let (ty, version) = check_first_byte(first_byte, &body, version)?;
        let err = |v: Violation| Error::new(v, Some(ty), Some(version));
        #[inline(always)]
        fn dec<T: Body>(
            src: &Bytes,
            flags: u8,
            v: ProtocolVersion,
            wrap: fn(T) -> Packet,
        ) -> Result<Packet, Violation> {
            T::decode(src, flags, v).map(wrap)
        }
        let r = match ty {
            PacketType::Connect => dec(&body, flags, version, |c| Packet::Connect(Box::new(c))),
            PacketType::ConnAck => dec(&body, flags, version, Packet::ConnAck),
            PacketType::Publish => Publish::decode_owned(body, flags, version).map(Packet::Publish),
            PacketType::PubAck => dec(&body, flags, version, Packet::PubAck),
            PacketType::PubRec => dec(&body, flags, version, Packet::PubRec),
            PacketType::PubRel => dec(&body, flags, version, Packet::PubRel),
            PacketType::PubComp => dec(&body, flags, version, Packet::PubComp),
            PacketType::Subscribe => dec(&body, flags, version, Packet::Subscribe),
            PacketType::SubAck => dec(&body, flags, version, Packet::SubAck),
            PacketType::Unsubscribe => dec(&body, flags, version, Packet::Unsubscribe),
            PacketType::UnsubAck => dec(&body, flags, version, Packet::UnsubAck),
            PacketType::PingReq => ping::decode_empty(&body).map(|()| Packet::PingReq),
            PacketType::PingResp => ping::decode_empty(&body).map(|()| Packet::PingResp),
            PacketType::Disconnect => dec(&body, flags, version, Packet::Disconnect),
            PacketType::Auth => dec(&body, flags, version, Packet::Auth),
        };
        r.map_err(err)
    }

    /// The version this packet is encoded in: a CONNECT's own, otherwise `version`.
    fn effective_version(&self, version: ProtocolVersion) -> ProtocolVersion {
        match self {
            Packet::Connect(c) => c.protocol,
            _ => version,
        }
    }

    /// Checks the packet as the decoder would and returns its Remaining Length.
    fn checked_body_len(&self, version: ProtocolVersion) -> Result<usize, Error> {
        let ty = self.packet_type();
        let err = |v: Violation| Error::new(v, Some(ty), Some(version));
        if let Packet::Connect(c) = self {
            // A CONNECT is written in its own protocol version; the connection's must agree.
            if c.protocol != version
                && !(c.protocol == ProtocolVersion::V3_1 && version == ProtocolVersion::V3_1_1)
            {
                return Err(err(Violation::NotRepresentable));
            }
        }
        let version = self.effective_version(version);
        if ty == PacketType::Auth && !version.is_v5() {
            return Err(err(Violation::NotRepresentable));
        }
        let len = with_body!(self, p => {
            body_of(p).checked_body_len(version).map_err(err)?
        }, ping => 0);
        if len > VBI_MAX as usize {
            return Err(err(Violation::RemainingLengthTooLarge));
        }
        Ok(len)
    }

    /// The exact number of bytes [`Packet::encode`] writes, after checking that the packet is
    /// valid for `version`.
    ///
    /// # Errors
    /// Whatever the decoder would reject in this packet.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, Error> {
        let body = self.checked_body_len(version)?;
        Ok(1 + vbi_len(u32::try_from(body).unwrap_or(VBI_MAX)) + body)
    }

    /// Encodes the packet for `version` at the end of `buf`; returns the bytes written.
    ///
    /// Nothing is written when the packet is invalid: the encoder refuses whatever the decoder
    /// would reject, so that every encoded packet decodes back to itself.
    ///
    /// # Errors
    /// Whatever the decoder would reject in this packet.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<usize, Error> {
        self.encode_limited(version, u32::MAX, buf)
    }

    /// As [`Packet::encode_limited`], but a packet whose Reason String or User Properties
    /// would take it over `max_packet_size` is sent without them (the Reason String goes
    /// first, then the User Properties), as MQTT 5.0 requires of the acknowledgements, CONNACK,
    /// DISCONNECT and AUTH: v5 [MQTT-3.2.2-19] [MQTT-3.2.2-20] [MQTT-3.4.2-2] [MQTT-3.4.2-3]
    /// [MQTT-3.5.2-2] [MQTT-3.5.2-3] [MQTT-3.6.2-2] [MQTT-3.6.2-3] [MQTT-3.7.2-2]
    /// [MQTT-3.7.2-3] [MQTT-3.9.2-1] [MQTT-3.9.2-2] [MQTT-3.11.2-1] [MQTT-3.11.2-2]
    /// [MQTT-3.14.2-3] [MQTT-3.14.2-4] [MQTT-3.15.2-2] [MQTT-3.15.2-3]. Other packets (and one
    /// still too large without them) are refused as by `encode_limited`. Returns the bytes
    /// written; nothing is written on error.
    ///
    /// # Errors
    /// Whatever the decoder would reject in this packet, or its size without the optional
    /// properties.
    pub fn encode_fitting(
        &self,
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, Error> {
        match self.encode_limited(version, max_packet_size, buf) {
            Err(e) if e.violation() == Violation::PacketTooLarge => {
                let mut trimmed = self.clone();
                let Some(props) = trimmed.optional_properties_mut() else {
                    return Err(e);
                };
                if props.reason_string().is_none() && !props.has_user_properties() {
                    return Err(e);
                }
                props.set_reason_string(None);
                match trimmed.encode_limited(version, max_packet_size, buf) {
                    Err(e) if e.violation() == Violation::PacketTooLarge => {
                        if let Some(props) = trimmed.optional_properties_mut() {
                            props.clear_user_properties();
                        }
                        trimmed.encode_limited(version, max_packet_size, buf)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// A PUBACK, PUBREC, PUBREL or PUBCOMP without properties (what a broker or client sends
    /// most) written without the general pass over the properties: `Some(total)` when written,
    /// `None` when the packet is not such an acknowledgement or is not valid as it is (the
    /// general path then says why). The bytes are the general path's.
    fn encode_plain_ack(
        &self,
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Option<usize> {
        let (ty, id, code, props) = match self {
            Self::PubAck(p) => (
                PacketType::PubAck,
                p.packet_id,
                p.reason_code,
                &p.properties,
            ),
            Self::PubRec(p) => (
                PacketType::PubRec,
                p.packet_id,
                p.reason_code,
                &p.properties,
            ),
            Self::PubRel(p) => (
                PacketType::PubRel,
                p.packet_id,
                p.reason_code,
                &p.properties,
            ),
            Self::PubComp(p) => (
                PacketType::PubComp,
                p.packet_id,
                p.reason_code,
                &p.properties,
            ),
            _ => return None,
        };
        if !props.is_empty() {
            return None;
        }
        // 3.1.1 has no reason code; 5.0 leaves out Success without properties.
        let with_code = if version.is_v5() {
            if !code.is_valid_for(ty) {
                return None;
            }
            code != ReasonCode::SUCCESS
        } else if code == ReasonCode::SUCCESS {
            false
        } else {
            return None;
        };
        let total: u8 = if with_code { 5 } else { 4 };
        if u32::from(total) > max_packet_size {
            return None;
        }
        let [hi, lo] = id.get().to_be_bytes();
        let bytes = [
            (ty as u8) << 4 | ty.required_flags(),
            total - 2,
            hi,
            lo,
            code.0,
        ];
        buf.extend_from_slice(bytes.get(..usize::from(total)).unwrap_or_default());
        Some(usize::from(total))
    }

    /// The properties of a packet whose Reason String and User Properties the sender leaves
    /// out when they would exceed the receiver's Maximum Packet Size.
    fn optional_properties_mut(&mut self) -> Option<&mut crate::Properties> {
        match self {
            Self::ConnAck(p) => Some(&mut p.properties),
            Self::PubAck(p) => Some(&mut p.properties),
            Self::PubRec(p) => Some(&mut p.properties),
            Self::PubRel(p) => Some(&mut p.properties),
            Self::PubComp(p) => Some(&mut p.properties),
            Self::SubAck(p) => Some(&mut p.properties),
            Self::UnsubAck(p) => Some(&mut p.properties),
            Self::Disconnect(p) => Some(&mut p.properties),
            Self::Auth(p) => Some(&mut p.properties),
            Self::Connect(_)
            | Self::Publish(_)
            | Self::Subscribe(_)
            | Self::Unsubscribe(_)
            | Self::PingReq
            | Self::PingResp => None,
        }
    }

    /// As [`Packet::encode`], refusing a packet larger than `max_packet_size` bytes
    /// ([`Violation::PacketTooLarge`]), for example the peer's Maximum Packet Size.
    ///
    /// # Errors
    /// Whatever the decoder would reject in this packet, or its size.
    pub fn encode_limited(
        &self,
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, Error> {
        if let Self::Publish(p) = self {
            return p.encode_packet(version, max_packet_size, buf);
        }
        match self.encode_plain_ack(version, max_packet_size, buf) {
            Some(total) => Ok(total),
            None => self.encode_general(version, max_packet_size, buf),
        }
    }

    /// [`Packet::encode_limited`] through the general pass: checks, sizes, then writes.
    fn encode_general(
        &self,
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, Error> {
        let body = self.checked_body_len(version)?;
        let body32 = u32::try_from(body).unwrap_or(VBI_MAX);
        let total = 1 + vbi_len(body32) + body;
        if total > max_packet_size as usize {
            return Err(Error::new(
                Violation::PacketTooLarge,
                Some(self.packet_type()),
                Some(version),
            ));
        }
        let v = self.effective_version(version);
        let ty = self.packet_type() as u8;
        with_body!(self, p => {
            write_packet(body_of(p), ty, v, body32, total, buf)
                .map_err(|v| Error::new(v, Some(self.packet_type()), Some(version)))
        }, ping => {
            buf.extend_from_slice(&[ty << 4, 0]);
            Ok(2)
        })
    }
}

/// Writes a checked packet of `total` bytes whose Remaining Length is `body`: its fixed header
/// and [`Body::write`] through [`write_framed`], then the body's tail.
#[inline]
fn write_packet<T: Body>(
    p: &T,
    ty: u8,
    version: ProtocolVersion,
    body: u32,
    total: usize,
    buf: &mut BytesMut,
) -> Result<usize, Violation> {
    write_framed(buf, total, p.tail(), |w| {
        w.put_u8(ty << 4 | p.flags());
        put_vbi(w, body);
        p.write_sized(version, body as usize, w);
    })
}

/// The encoders' one way of writing a packet of `total` bytes that ends with `tail` (a
/// PUBLISH's payload, or nothing): `write` fills a window of `buf` reserved and zeroed in
/// advance with everything before the tail (one capacity check for all the fields instead of
/// one per field), then the tail is copied once. If `write` does not fill the window exactly
/// (a length computed wrong: a bug), nothing is written and [`Violation::NotRepresentable`] is
/// returned; a debug build then panics, after restoring `buf`.
#[inline]
pub(crate) fn write_framed(
    buf: &mut BytesMut,
    total: usize,
    tail: &[u8],
    write: impl FnOnce(&mut Window<'_>),
) -> Result<usize, Violation> {
    let start = buf.len();
    buf.reserve(total);
    buf.resize(start + total.saturating_sub(tail.len()), 0);
    let fits = {
        let mut w = Window::new(buf.get_mut(start..).unwrap_or_default());
        write(&mut w);
        w.is_exactly_full()
    };
    if !fits {
        buf.truncate(start);
        debug_assert!(false, "the packet's length and its writer disagree");
        return Err(Violation::NotRepresentable);
    }
    buf.extend_from_slice(tail);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PubAck, PubComp, PubRec, PubRel};
    use crate::types::PacketId;

    /// The PUBLISH encoder's own path writes exactly what the general path writes, and
    /// refuses what it refuses with the same violation: every combination of flags, Packet
    /// Identifier, topic, a property list allowed or not, payloads of 0 to 3 000 bytes, and a
    /// maximum size.
    #[test]
    fn publish_path_matches_the_general_path() {
        use crate::packet::Publish;
        use crate::types::{QoS, TopicName, Utf8String};
        let mut lists = vec![crate::Properties::default()];
        let mut p = crate::Properties {
            topic_alias: core::num::NonZeroU16::new(3),
            ..crate::Properties::default()
        };
        lists.push(p.clone());
        p.message_expiry_interval = Some(60);
        p.set_content_type(Utf8String::try_from("text/plain").ok());
        lists.push(p.clone());
        let mut sub = crate::Properties::default();
        assert!(sub.push_subscription_identifier(7).is_ok());
        assert!(sub.push_subscription_identifier(300).is_ok());
        lists.push(sub);
        let not_allowed = crate::Properties {
            session_expiry_interval: Some(1),
            ..crate::Properties::default()
        };
        lists.push(not_allowed);
        let mut user = crate::Properties::default();
        if let (Ok(k), Ok(v)) = (Utf8String::try_from("k"), Utf8String::try_from("v")) {
            user.push_user_property(k, v);
        }
        user.payload_format_indicator = Some(crate::PayloadFormatIndicator::Utf8);
        lists.push(user);
        let versions = [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ];
        let mut written = 0;
        let mut refused = 0;
        for version in versions {
            for topic in ["a/b", ""] {
                for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                    for (dup, retain) in [(false, false), (true, true)] {
                        for id in [None, PacketId::new(9)] {
                            for props in &lists {
                                for payload in [0_usize, 10, 3000] {
                                    let Ok(topic) = TopicName::try_from(topic) else {
                                        continue;
                                    };
                                    let packet = Packet::Publish(Publish {
                                        dup,
                                        qos,
                                        retain,
                                        topic,
                                        packet_id: id,
                                        properties: props.clone(),
                                        payload: Bytes::from(vec![5_u8; payload]),
                                    });
                                    for max in [8, 40, u32::MAX] {
                                        let mut fast = BytesMut::from(&b"xy"[..]);
                                        let mut general = fast.clone();
                                        let a = packet.encode_limited(version, max, &mut fast);
                                        let b = packet.encode_general(version, max, &mut general);
                                        assert_eq!(a, b, "{packet:?} {version:?} {max}");
                                        assert_eq!(fast, general, "{packet:?} {version:?} {max}");
                                        if a.is_ok() {
                                            written += 1;
                                        } else {
                                            refused += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(
            written > 100 && refused > 100,
            "{written} written, {refused} refused"
        );
    }

    /// `Properties::is_empty` (field by field) agrees with the presence bits, for each property
    /// alone.
    #[test]
    fn properties_is_empty_agrees_with_presence() {
        use crate::Properties;
        use core::num::{NonZeroU16, NonZeroU32};
        let empty = Properties::default();
        assert!(empty.is_empty() && empty.present().count() == 0);
        let setters: [fn(&mut Properties); 17] = [
            |p| p.payload_format_indicator = Some(crate::PayloadFormatIndicator::Utf8),
            |p| p.message_expiry_interval = Some(1),
            |p| p.session_expiry_interval = Some(1),
            |p| p.server_keep_alive = Some(1),
            |p| p.request_problem_information = Some(false),
            |p| p.will_delay_interval = Some(1),
            |p| p.request_response_information = Some(true),
            |p| p.receive_maximum = NonZeroU16::new(1),
            |p| p.topic_alias_maximum = Some(0),
            |p| p.topic_alias = NonZeroU16::new(1),
            |p| p.maximum_qos = Some(crate::types::QoS::AtMostOnce),
            |p| p.retain_available = Some(false),
            |p| p.maximum_packet_size = NonZeroU32::new(1),
            |p| p.wildcard_subscription_available = Some(false),
            |p| p.subscription_identifier_available = Some(false),
            |p| p.shared_subscription_available = Some(false),
            |p| p.set_reason_string(crate::Utf8String::try_from("r").ok()),
        ];
        for set in setters {
            let mut p = Properties::default();
            set(&mut p);
            assert_eq!(p.present().count(), 1, "{p:?}");
            assert!(!p.is_empty(), "{p:?}");
        }
    }

    /// The acknowledgements' short path writes exactly what the general path writes, and
    /// leaves to it every packet it cannot write (invalid reason codes, 3.1.1 failures, a
    /// maximum packet size too small), so that the error is the general path's.
    #[test]
    fn plain_acks_match_the_general_path() {
        let versions = [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ];
        let mut checked = 0;
        for version in versions {
            for id in [1_u16, 0x1234, u16::MAX] {
                let Some(id) = PacketId::new(id) else {
                    continue;
                };
                for code in 0..=u8::MAX {
                    let code = ReasonCode(code);
                    let packets = [
                        Packet::PubAck(PubAck {
                            reason_code: code,
                            ..PubAck::new(id)
                        }),
                        Packet::PubRec(PubRec {
                            reason_code: code,
                            ..PubRec::new(id)
                        }),
                        Packet::PubRel(PubRel {
                            reason_code: code,
                            ..PubRel::new(id)
                        }),
                        Packet::PubComp(PubComp {
                            reason_code: code,
                            ..PubComp::new(id)
                        }),
                    ];
                    for packet in packets {
                        for max in [3, 4, 5, u32::MAX] {
                            let mut fast = BytesMut::new();
                            let mut general = BytesMut::new();
                            let expected = packet.encode_general(version, max, &mut general);
                            match packet.encode_plain_ack(version, max, &mut fast) {
                                Some(n) => {
                                    checked += 1;
                                    assert_eq!(expected.ok(), Some(n), "{packet:?} {version:?}");
                                    assert_eq!(fast, general, "{packet:?} {version:?} {max}");
                                }
                                None => assert!(
                                    expected.is_err(),
                                    "{packet:?} {version:?} {max}: general path wrote it"
                                ),
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100, "the short path wrote only {checked} packets");
    }
}
