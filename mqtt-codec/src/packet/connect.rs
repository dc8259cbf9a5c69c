//! CONNECT (section 3.1): the first packet of a connection, for MQTT 3.1 (`MQIsdp`, level 3),
//! 3.1.1 (level 4) and 5.0 (level 5).

use bytes::Bytes;

use super::Body;
use super::form::{Form, Owned};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::types::{PacketType, ProtocolVersion, QoS, TopicName, Utf8String};
use crate::wire::{
    PResult, all_consumed, binary, check_binary, fail, put_binary, put_utf8, u8_, u16_,
};

/// The Will Message of a CONNECT (sections 3.1.2.5 and 3.1.3.2 to 3.1.3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Will {
    /// The Will Topic (not empty, no wildcards).
    pub topic: TopicName,
    /// The Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will Properties (MQTT 5.0): Will Delay Interval, Payload Format Indicator, Message
    /// Expiry Interval, Content Type, Response Topic, Correlation Data, User Properties.
    pub properties: Properties,
}

/// CONNECT (section 3.1). Its `Debug` shows the password's length, not its bytes (a
/// password logged by accident is a password leaked).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Connect {
    /// The protocol version (from the protocol name and level).
    pub protocol: ProtocolVersion,
    /// Clean Start (MQTT 5.0) or Clean Session (3.1.1).
    pub clean_start: bool,
    /// Keep Alive in seconds (0: off).
    pub keep_alive: u16,
    /// Properties (MQTT 5.0).
    pub properties: Properties,
    /// The Client Identifier (may be empty: the server then assigns one).
    pub client_id: Utf8String,
    /// The Will Message, if the Will Flag is set.
    pub will: Option<Will>,
    /// The User Name, if the User Name Flag is set.
    pub username: Option<Utf8String>,
    /// The Password, if the Password Flag is set.
    pub password: Option<Bytes>,
}

impl core::fmt::Debug for Connect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("properties", &self.properties)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|p| crate::properties::Redacted(p.len())),
            )
            .finish()
    }
}

impl Connect {
    /// A CONNECT for `protocol` with `client_id`, Clean Start set, keep alive 60 s.
    #[must_use]
    pub fn new(protocol: ProtocolVersion, client_id: Utf8String) -> Self {
        Self {
            protocol,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id,
            will: None,
            username: None,
            password: None,
        }
    }
}

/// The protocol version a CONNECT body claims, read without validating anything else; used to
/// name the statements of the right version in errors.
pub(crate) fn peek_version(body: &[u8]) -> Option<ProtocolVersion> {
    let (i, name) = binary(body).ok()?;
    let (_, level) = u8_(i).ok()?;
    let v = ProtocolVersion::from_level(level)?;
    (name == v.protocol_name().as_bytes()).then_some(v)
}

pub(crate) const RESERVED: u8 = 0b0000_0001;
pub(crate) const CLEAN_START: u8 = 0b0000_0010;
pub(crate) const WILL: u8 = 0b0000_0100;
pub(crate) const WILL_QOS_SHIFT: u8 = 3;
pub(crate) const WILL_RETAIN: u8 = 0b0010_0000;
pub(crate) const PASSWORD: u8 = 0b0100_0000;
pub(crate) const USERNAME: u8 = 0b1000_0000;

fn parse_protocol(i: &[u8]) -> PResult<'_, ProtocolVersion> {
    let (i, name) = binary(i)?;
    // v5 [MQTT-3.1.2-1] The protocol name MUST be the UTF-8 String "MQTT".
    if name != b"MQTT" && name != b"MQIsdp" {
        return fail(Violation::ProtocolNameInvalid);
    }
    let (i, level) = u8_(i)?;
    // v5 v3.1.1 [MQTT-3.1.2-2]: an unsupported level is answered with "unsupported protocol
    // version" (0x84; 0x01 in 3.1.1). A name that does not go with the level counts the same.
    match ProtocolVersion::from_level(level) {
        Some(v) if name == v.protocol_name().as_bytes() => Ok((i, v)),
        _ => fail(Violation::UnsupportedProtocolVersion),
    }
}

/// The fields of a Will Message, in the form `F` makes.
pub(crate) struct WillParts<'a, F: Form<'a>> {
    pub(crate) topic: F::Topic,
    pub(crate) payload: F::Bin,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) properties: F::Props,
}

/// The fields of a CONNECT, in the form `F` makes.
pub(crate) struct ConnectParts<'a, F: Form<'a>> {
    pub(crate) protocol: ProtocolVersion,
    pub(crate) clean_start: bool,
    pub(crate) keep_alive: u16,
    pub(crate) properties: F::Props,
    pub(crate) client_id: F::Str,
    pub(crate) will: Option<WillParts<'a, F>>,
    pub(crate) username: Option<F::Str>,
    pub(crate) password: Option<F::Bin>,
    /// The Connect Flags.
    pub(crate) flags: u8,
    /// The payload after the Client Identifier: the will, user name and password.
    pub(crate) tail: &'a [u8],
}

pub(crate) fn parse_will<'a, F: Form<'a>>(
    f: F,
    i: &'a [u8],
    v5: bool,
    qos: QoS,
    retain: bool,
) -> PResult<'a, WillParts<'a, F>> {
    let (i, properties) = f.props_if(v5, i, PropertyContext::Will)?;
    // v5 [MQTT-3.1.3-11], v3.1.1 [MQTT-3.1.3-10]: the Will Topic MUST be a UTF-8 Encoded String.
    let (i, topic) = f.utf8(i)?;
    let topic = match F::topic(topic) {
        Ok(t) if F::topic_str(&t).is_empty() => return fail(Violation::TopicNameEmpty),
        Ok(t) => t,
        Err(v) => return fail(v),
    };
    let (i, payload) = f.binary(i)?;
    Ok((
        i,
        WillParts {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    ))
}

/// A CONNECT's fields (all checked), in the form `f` makes. The protocol version is the
/// CONNECT's own.
pub(crate) fn parse<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
) -> Result<ConnectParts<'a, F>, Violation> {
    all_consumed(body, |i| {
        let (i, protocol) = parse_protocol(i)?;
        let v5 = protocol.is_v5();
        let (i, flags) = u8_(i)?;
        // [MQTT-3.1.2-3] The Server MUST validate that the reserved flag in the CONNECT
        // packet is set to 0.
        if flags & RESERVED != 0 {
            return fail(Violation::ConnectReservedFlag);
        }
        let will_flag = flags & WILL != 0;
        let will_qos_bits = (flags >> WILL_QOS_SHIFT) & 0b11;
        let will_retain = flags & WILL_RETAIN != 0;
        if !will_flag && will_qos_bits != 0 {
            // v5 [MQTT-3.1.2-11], v3.1.1 [MQTT-3.1.2-13]
            return fail(Violation::WillQosWithoutWill);
        }
        if !will_flag && will_retain {
            // v5 [MQTT-3.1.2-13], v3.1.1 [MQTT-3.1.2-15]
            return fail(Violation::WillRetainWithoutWill);
        }
        // v5 [MQTT-3.1.2-12], v3.1.1 [MQTT-3.1.2-14]: Will QoS 3 is a Malformed Packet.
        let Some(will_qos) = QoS::from_bits(will_qos_bits) else {
            return fail(Violation::WillQosInvalid);
        };
        let has_user = flags & USERNAME != 0;
        let has_password = flags & PASSWORD != 0;
        // v3.1.1 [MQTT-3.1.2-22] If the User Name Flag is set to 0, the Password Flag MUST
        // be set to 0. (MQTT 5.0 allows a password without a user name.)
        if !v5 && has_password && !has_user {
            return fail(Violation::PasswordWithoutUserName);
        }
        let (i, keep_alive) = u16_(i)?;
        let ctx = PropertyContext::Packet(PacketType::Connect);
        let (i, properties) = f.props_if(v5, i, ctx)?;
        // [MQTT-3.1.3-1] Client Identifier, Will Properties, Will Topic, Will Payload,
        // User Name, Password, in that order. [MQTT-3.1.3-3] The ClientID MUST be present.
        let (i, client_id) = f.utf8(i)?;
        let tail = i;
        // v5 [MQTT-3.1.2-9], v3.1.1 [MQTT-3.1.2-9]: with the Will Flag, the will fields
        // MUST be present.
        let (i, will) = if will_flag {
            let (i, w) = parse_will(f, i, v5, will_qos, will_retain)?;
            (i, Some(w))
        } else {
            (i, None)
        };
        // v5 [MQTT-3.1.2-16] [MQTT-3.1.2-17], v3.1.1 [MQTT-3.1.2-18] [MQTT-3.1.2-19]
        let (i, username) = if has_user {
            let (i, u) = f.utf8(i)?;
            (i, Some(u))
        } else {
            (i, None)
        };
        // v5 [MQTT-3.1.2-18] [MQTT-3.1.2-19], v3.1.1 [MQTT-3.1.2-20] [MQTT-3.1.2-21]
        let (i, password) = if has_password {
            let (i, p) = f.binary(i)?;
            (i, Some(p))
        } else {
            (i, None)
        };
        Ok((
            i,
            ConnectParts {
                protocol,
                clean_start: flags & CLEAN_START != 0,
                keep_alive,
                properties,
                client_id,
                will,
                username,
                password,
                flags,
                tail,
            },
        ))
    })
}

impl Body for Connect {
    const TYPE: PacketType = PacketType::Connect;

    fn decode(src: &Bytes, _flags: u8, _version: ProtocolVersion) -> Result<Self, Violation> {
        let c = parse(Owned(src), src)?;
        Ok(Self {
            protocol: c.protocol,
            clean_start: c.clean_start,
            keep_alive: c.keep_alive,
            properties: c.properties,
            client_id: c.client_id,
            will: c.will.map(|w| Will {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                properties: w.properties,
            }),
            username: c.username,
            password: c.password,
        })
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        self.checked_body_len(version).map(|_| ())
    }

    fn checked_body_len(&self, version: ProtocolVersion) -> Result<usize, Violation> {
        // The checks and the length in one pass: each property list is checked and measured
        // once.
        let v5 = version.is_v5();
        let props = |p: &Properties, ctx| -> Result<usize, Violation> {
            if v5 {
                let len = p.checked_len(ctx)?;
                Ok(crate::types::vbi_len(u32::try_from(len).unwrap_or(u32::MAX)) + len)
            } else if p.is_empty() {
                Ok(0)
            } else {
                Err(Violation::NotRepresentable)
            }
        };
        let mut len = 2 + self.protocol.protocol_name().len()
            + 1 // level
            + 1 // flags
            + 2 // keep alive
            + props(&self.properties, PropertyContext::Packet(PacketType::Connect))?
            + self.client_id.encoded_len();
        if let Some(w) = &self.will {
            if w.topic.is_empty() {
                return Err(Violation::TopicNameEmpty);
            }
            check_binary(&w.payload)?;
            len += props(&w.properties, PropertyContext::Will)?
                + w.topic.as_utf8().encoded_len()
                + 2
                + w.payload.len();
        }
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(Violation::PasswordWithoutUserName);
        }
        if let Some(p) = &self.password {
            check_binary(p)?;
            len += 2 + p.len();
        }
        Ok(len + self.username.as_ref().map_or(0, Utf8String::encoded_len))
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        let v5 = version.is_v5();
        let props = |p: &Properties| if v5 { p.wire_len() } else { 0 };
        2 + self.protocol.protocol_name().len()
            + 1 // level
            + 1 // flags
            + 2 // keep alive
            + props(&self.properties)
            + self.client_id.encoded_len()
            + self.will.as_ref().map_or(0, |w| {
                props(&w.properties) + w.topic.as_utf8().encoded_len() + 2 + w.payload.len()
            })
            + self.username.as_ref().map_or(0, Utf8String::encoded_len)
            + self.password.as_ref().map_or(0, |p| 2 + p.len())
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        let v5 = version.is_v5();
        put_binary(buf, self.protocol.protocol_name().as_bytes());
        buf.put_u8(self.protocol.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(w) = &self.will {
            flags |= WILL | w.qos.bits() << WILL_QOS_SHIFT;
            if w.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        buf.put_u8(flags);
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(buf);
        }
        put_utf8(buf, &self.client_id);
        if let Some(w) = &self.will {
            if v5 {
                w.properties.write(buf);
            }
            put_utf8(buf, w.topic.as_utf8());
            put_binary(buf, &w.payload);
        }
        if let Some(u) = &self.username {
            put_utf8(buf, u);
        }
        if let Some(p) = &self.password {
            put_binary(buf, p);
        }
    }
}
