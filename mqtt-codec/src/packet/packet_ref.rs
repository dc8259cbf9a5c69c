//! Every packet borrowed from the input: [`PacketRef`] and one view per packet type.
//!
//! [`PacketRef::decode`] reads a packet's body from a `&[u8]` without allocating and without
//! touching a reference count: strings, binary data and property lists are slices of the input
//! (the property lists as [`PropertiesRef`], in wire form). The checks are those of the owned
//! decoder, made by the same parsers in the same order, so a [`PacketRef`] exists exactly when
//! [`Packet::decode_body`] would give a [`Packet`], and an error is the same [`Error`] (a
//! property test and the fuzz targets compare the two on every input).
//!
//! A host that forwards messages reads them with [`Decoder::decode_ref`](crate::Decoder::decode_ref)
//! and re-encodes a PUBLISH with [`PublishRef::encode`]; [`PacketRef::to_packet`] makes the
//! owned packet (copying) when one is needed.
//!
//! ```
//! use mqtt_codec::{Decoder, PacketRef, ProtocolVersion, Status};
//!
//! // A 3.1.1 SUBSCRIBE: packet id 10, filters "a/+" (QoS 1) and "b/#" (QoS 0).
//! let wire = [
//!     0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'+', 0x01, 0x00, 0x03, b'b', b'/', b'#',
//!     0x00,
//! ];
//! let mut decoder = Decoder::with_version(ProtocolVersion::V3_1_1);
//! let Status::Complete((PacketRef::Subscribe(s), used)) = decoder.decode_ref(&wire)? else {
//!     unreachable!()
//! };
//! assert_eq!(used, wire.len());
//! assert_eq!(s.packet_id.get(), 10);
//! let filters: Vec<&str> = s.filters().map(|(f, _)| f).collect();
//! assert_eq!(filters, ["a/+", "b/#"]);
//! # Ok::<(), mqtt_codec::Error>(())
//! ```

use crate::prelude::*;
use bytes::Bytes;

use super::form::{Borrowed, Discard, Form};
use super::{
    Auth, ConnAck, Connect, Disconnect, Packet, PropertiesRef, PubAck, PubComp, PubRec, PubRel,
    PublishRef, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use super::{ack, connack, connect, suback, subscribe, unsuback, unsubscribe};
use crate::error::{Error, Violation};
use crate::properties::{PropertyContext, PropertyId};
use crate::reason_code::ReasonCode;
use crate::types::{
    PacketId, PacketType, ProtocolVersion, QoS, TopicFilter, TopicName, Utf8String,
};
use crate::wire::{binary, u8_};

/// A control packet borrowed from the bytes it was decoded from. See the
/// [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the packet of the same name
#[non_exhaustive]
pub enum PacketRef<'a> {
    Connect(ConnectRef<'a>),
    ConnAck(ConnAckRef<'a>),
    Publish(PublishRef<'a>),
    PubAck(AckRef<'a>),
    PubRec(AckRef<'a>),
    PubRel(AckRef<'a>),
    PubComp(AckRef<'a>),
    Subscribe(SubscribeRef<'a>),
    SubAck(SubAckRef<'a>),
    Unsubscribe(UnsubscribeRef<'a>),
    UnsubAck(UnsubAckRef<'a>),
    PingReq,
    PingResp,
    Disconnect(ReasonRef<'a>),
    Auth(ReasonRef<'a>),
}

/// A CONNECT, borrowed. The will, user name and password are read from the checked payload
/// each time they are asked for (so that a [`PacketRef`] stays small; the reading checks the
/// will's properties and strings again). Its `Debug` shows the password's
/// length, not its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConnectRef<'a> {
    /// The protocol version (from the protocol name and level).
    pub protocol: ProtocolVersion,
    /// Clean Start (MQTT 5.0) or Clean Session (3.1.1).
    pub clean_start: bool,
    /// Keep Alive in seconds (0: off).
    pub keep_alive: u16,
    /// Properties (MQTT 5.0).
    pub properties: PropertiesRef<'a>,
    /// The Client Identifier (may be empty).
    pub client_id: &'a str,
    /// The Connect Flags.
    flags: u8,
    /// The CONNECT is MQTT 5.0 (its will has properties): kept apart from the public
    /// `protocol`, which a caller may change.
    v5: bool,
    /// The payload after the Client Identifier (checked).
    tail: &'a [u8],
}

impl<'a> ConnectRef<'a> {
    /// The will, user name and password, read from the checked payload.
    fn rest(&self) -> (Option<WillRef<'a>>, Option<&'a str>, Option<&'a [u8]>) {
        let f = Borrowed;
        let mut i = self.tail;
        let will = if self.flags & connect::WILL == 0 {
            None
        } else {
            let qos = QoS::from_bits((self.flags >> connect::WILL_QOS_SHIFT) & 0b11)
                .unwrap_or(QoS::AtMostOnce);
            let retain = self.flags & connect::WILL_RETAIN != 0;
            connect::parse_will(f, i, self.v5, qos, retain)
                .ok()
                .map(|(rest, w)| {
                    i = rest;
                    WillRef {
                        topic: w.topic,
                        payload: w.payload,
                        qos: w.qos,
                        retain: w.retain,
                        properties: w.properties,
                    }
                })
        };
        let username = if self.flags & connect::USERNAME == 0 {
            None
        } else {
            f.utf8(i).ok().map(|(rest, u)| {
                i = rest;
                u
            })
        };
        let password = if self.flags & connect::PASSWORD == 0 {
            None
        } else {
            f.binary(i).ok().map(|(_, p)| p)
        };
        (will, username, password)
    }

    /// The Will Message, if the Will Flag is set.
    #[must_use]
    pub fn will(&self) -> Option<WillRef<'a>> {
        self.rest().0
    }

    /// The User Name, if the User Name Flag is set.
    #[must_use]
    pub fn username(&self) -> Option<&'a str> {
        self.rest().1
    }

    /// The Password, if the Password Flag is set.
    #[must_use]
    pub fn password(&self) -> Option<&'a [u8]> {
        self.rest().2
    }
}

impl core::fmt::Debug for ConnectRef<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (will, username, password) = self.rest();
        f.debug_struct("ConnectRef")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("properties", &self.properties)
            .field("client_id", &self.client_id)
            .field("will", &will)
            .field("username", &username)
            .field(
                "password",
                &password.map(|p| crate::properties::Redacted(p.len())),
            )
            .finish()
    }
}

/// The Will Message of a [`ConnectRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WillRef<'a> {
    /// The Will Topic (not empty, no wildcards).
    pub topic: &'a str,
    /// The Will Payload.
    pub payload: &'a [u8],
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will Properties (MQTT 5.0).
    pub properties: PropertiesRef<'a>,
}

/// A CONNACK, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAckRef<'a> {
    /// Session Present.
    pub session_present: bool,
    /// The reason code (a 3.1.1 return code as the MQTT 5.0 code of the same meaning).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5.0).
    pub properties: PropertiesRef<'a>,
}

/// A PUBACK, PUBREC, PUBREL or PUBCOMP, borrowed (the [`PacketRef`] variant says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRef<'a> {
    /// The Packet Identifier acknowledged.
    pub packet_id: PacketId,
    /// The reason code (always Success in MQTT 3.1.1).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5.0): Reason String and User Properties.
    pub properties: PropertiesRef<'a>,
}

/// A SUBSCRIBE, borrowed: its filters are read from the checked payload when iterated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeRef<'a> {
    /// The Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): Subscription Identifier and User Properties.
    pub properties: PropertiesRef<'a>,
    payload: &'a [u8],
    v5: bool,
}

/// An UNSUBSCRIBE, borrowed: its filters are read from the checked payload when iterated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubscribeRef<'a> {
    /// The Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): User Properties.
    pub properties: PropertiesRef<'a>,
    payload: &'a [u8],
}

/// A SUBACK, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAckRef<'a> {
    /// The Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): Reason String and User Properties.
    pub properties: PropertiesRef<'a>,
    codes: &'a [u8],
}

/// An UNSUBACK, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubAckRef<'a> {
    /// The Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): Reason String and User Properties.
    pub properties: PropertiesRef<'a>,
    codes: &'a [u8],
}

/// A DISCONNECT or an AUTH, borrowed (the [`PacketRef`] variant says which): a reason code and
/// properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonRef<'a> {
    /// The reason code (Normal disconnection / Success when left out, and always in 3.1.1).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5.0).
    pub properties: PropertiesRef<'a>,
}

/// The next `(string, rest)` of a checked payload.
fn next_string(i: &[u8]) -> Option<(&str, &[u8])> {
    let (rest, b) = binary(i).ok()?;
    Some((core::str::from_utf8(b).ok()?, rest))
}

impl<'a> SubscribeRef<'a> {
    /// The Topic Filters and their options, in order (at least one).
    pub fn filters(&self) -> impl Iterator<Item = (&'a str, SubscriptionOptions)> + 'a {
        let mut rest = self.payload;
        let v5 = self.v5;
        core::iter::from_fn(move || {
            // Checked when decoded: a failure here cannot happen, and ends the iteration.
            let (filter, r) = next_string(rest)?;
            let (r, b) = u8_(r).ok()?;
            rest = r;
            Some((filter, SubscriptionOptions::from_byte(b, v5).ok()?))
        })
    }
}

impl<'a> UnsubscribeRef<'a> {
    /// The Topic Filters, in order (at least one).
    pub fn filters(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = self.payload;
        core::iter::from_fn(move || {
            let (filter, r) = next_string(rest)?;
            rest = r;
            Some(filter)
        })
    }
}

impl SubAckRef<'_> {
    /// One reason code per Topic Filter of the SUBSCRIBE, in order.
    pub fn reason_codes(&self) -> impl Iterator<Item = ReasonCode> + '_ {
        self.codes.iter().map(|&b| ReasonCode(b))
    }
}

impl UnsubAckRef<'_> {
    /// MQTT 5.0: one reason code per Topic Filter, in order; none in MQTT 3.1.1.
    pub fn reason_codes(&self) -> impl Iterator<Item = ReasonCode> + '_ {
        self.codes.iter().map(|&b| ReasonCode(b))
    }
}

impl<'a> PacketRef<'a> {
    /// Decodes a packet from its first byte and its body (exactly Remaining Length bytes, as
    /// [`crate::read_fixed_header`] frames it), for a connection of `version` (a CONNECT is
    /// read in its own version).
    ///
    /// # Errors
    /// The first violation found: the same [`Error`] as [`Packet::decode_body`] gives for the
    /// same bytes.
    #[inline]
    pub fn decode(first_byte: u8, body: &'a [u8], version: ProtocolVersion) -> Result<Self, Error> {
        let (ty, version) = super::check_first_byte(first_byte, body, version)?;
        if ty == PacketType::Publish {
            return PublishRef::decode(first_byte, body, version).map(PacketRef::Publish);
        }
        Self::decode_typed(ty, body, version).map_err(|v| Error::new(v, Some(ty), Some(version)))
    }

    fn decode_typed(
        ty: PacketType,
        body: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Self, Violation> {
        let f = Borrowed;
        let ack = |wrap: fn(AckRef<'a>) -> PacketRef<'a>| {
            ack::parse(f, body, version, ty).map(|(packet_id, reason_code, properties)| {
                wrap(AckRef {
                    packet_id,
                    reason_code,
                    properties,
                })
            })
        };
        Ok(match ty {
            PacketType::Connect => {
                let c = connect::parse(f, body)?;
                PacketRef::Connect(ConnectRef {
                    protocol: c.protocol,
                    clean_start: c.clean_start,
                    keep_alive: c.keep_alive,
                    properties: c.properties,
                    client_id: c.client_id,
                    flags: c.flags,
                    v5: c.protocol.is_v5(),
                    tail: c.tail,
                })
            }
            PacketType::ConnAck => {
                let (session_present, reason_code, properties) = connack::parse(f, body, version)?;
                PacketRef::ConnAck(ConnAckRef {
                    session_present,
                    reason_code,
                    properties,
                })
            }
            // (Handled by `decode`.)
            PacketType::Publish => return Err(Violation::InvalidPacketType),
            PacketType::PubAck => ack(PacketRef::PubAck)?,
            PacketType::PubRec => ack(PacketRef::PubRec)?,
            PacketType::PubRel => ack(PacketRef::PubRel)?,
            PacketType::PubComp => ack(PacketRef::PubComp)?,
            PacketType::Subscribe => {
                let (packet_id, properties, payload) = subscribe::parse(f, body, version, Discard)?;
                PacketRef::Subscribe(SubscribeRef {
                    packet_id,
                    properties,
                    payload,
                    v5: version.is_v5(),
                })
            }
            PacketType::SubAck => {
                let (packet_id, properties, codes) = suback::parse(f, body, version)?;
                PacketRef::SubAck(SubAckRef {
                    packet_id,
                    properties,
                    codes,
                })
            }
            PacketType::Unsubscribe => {
                let (packet_id, properties, payload) =
                    unsubscribe::parse(f, body, version, Discard)?;
                PacketRef::Unsubscribe(UnsubscribeRef {
                    packet_id,
                    properties,
                    payload,
                })
            }
            PacketType::UnsubAck => {
                let (packet_id, properties, codes) = unsuback::parse(f, body, version)?;
                PacketRef::UnsubAck(UnsubAckRef {
                    packet_id,
                    properties,
                    codes,
                })
            }
            PacketType::PingReq | PacketType::PingResp => {
                if !body.is_empty() {
                    return Err(Violation::TrailingBytes);
                }
                if ty == PacketType::PingReq {
                    PacketRef::PingReq
                } else {
                    PacketRef::PingResp
                }
            }
            PacketType::Disconnect => {
                if !version.is_v5() {
                    if !body.is_empty() {
                        return Err(Violation::TrailingBytes);
                    }
                    PacketRef::Disconnect(ReasonRef {
                        reason_code: ReasonCode::SUCCESS,
                        properties: PropertiesRef::EMPTY,
                    })
                } else {
                    let (reason_code, properties) =
                        ack::parse_reason_props(f, body, PacketType::Disconnect, true)?;
                    PacketRef::Disconnect(ReasonRef {
                        reason_code,
                        properties,
                    })
                }
            }
            PacketType::Auth => {
                let (reason_code, properties) =
                    ack::parse_reason_props(f, body, PacketType::Auth, false)?;
                // Section 3.15.2.2.2: an AUTH other than the short form names its method.
                let short_form = reason_code == ReasonCode::SUCCESS && properties.is_empty();
                if !short_form && properties.get(PropertyId::AuthenticationMethod).is_none() {
                    return Err(Violation::AuthenticationMethodMissing);
                }
                PacketRef::Auth(ReasonRef {
                    reason_code,
                    properties,
                })
            }
        })
    }

    /// The packet type.
    #[must_use]
    pub fn packet_type(&self) -> PacketType {
        match self {
            PacketRef::Connect(_) => PacketType::Connect,
            PacketRef::ConnAck(_) => PacketType::ConnAck,
            PacketRef::Publish(_) => PacketType::Publish,
            PacketRef::PubAck(_) => PacketType::PubAck,
            PacketRef::PubRec(_) => PacketType::PubRec,
            PacketRef::PubRel(_) => PacketType::PubRel,
            PacketRef::PubComp(_) => PacketType::PubComp,
            PacketRef::Subscribe(_) => PacketType::Subscribe,
            PacketRef::SubAck(_) => PacketType::SubAck,
            PacketRef::Unsubscribe(_) => PacketType::Unsubscribe,
            PacketRef::UnsubAck(_) => PacketType::UnsubAck,
            PacketRef::PingReq => PacketType::PingReq,
            PacketRef::PingResp => PacketType::PingResp,
            PacketRef::Disconnect(_) => PacketType::Disconnect,
            PacketRef::Auth(_) => PacketType::Auth,
        }
    }

    /// The owned [`Packet`] (strings, binary data and properties copied): what
    /// [`Packet::decode_body`] gives for the same bytes.
    #[must_use]
    pub fn to_packet(&self) -> Packet {
        let ctx = PropertyContext::Packet(self.packet_type());
        let ack = |a: &AckRef<'_>| {
            (
                a.packet_id,
                a.reason_code,
                a.properties.to_properties_in(ctx).unwrap_or_default(),
            )
        };
        match self {
            PacketRef::Connect(c) => {
                let (will, username, password) = c.rest();
                Packet::Connect(Box::new(Connect {
                    protocol: c.protocol,
                    clean_start: c.clean_start,
                    keep_alive: c.keep_alive,
                    properties: c.properties.to_properties_in(ctx).unwrap_or_default(),
                    client_id: utf8(c.client_id),
                    will: will.map(|w| Will {
                        topic: TopicName::try_from(w.topic).unwrap_or_default(),
                        payload: Bytes::copy_from_slice(w.payload),
                        qos: w.qos,
                        retain: w.retain,
                        properties: w
                            .properties
                            .to_properties_in(PropertyContext::Will)
                            .unwrap_or_default(),
                    }),
                    username: username.map(utf8),
                    password: password.map(Bytes::copy_from_slice),
                }))
            }
            PacketRef::ConnAck(c) => Packet::ConnAck(ConnAck {
                session_present: c.session_present,
                reason_code: c.reason_code,
                properties: c.properties.to_properties_in(ctx).unwrap_or_default(),
            }),
            PacketRef::Publish(p) => Packet::Publish(p.to_publish()),
            PacketRef::PubAck(a) => {
                let (packet_id, reason_code, properties) = ack(a);
                Packet::PubAck(PubAck {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
            PacketRef::PubRec(a) => {
                let (packet_id, reason_code, properties) = ack(a);
                Packet::PubRec(PubRec {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
            PacketRef::PubRel(a) => {
                let (packet_id, reason_code, properties) = ack(a);
                Packet::PubRel(PubRel {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
            PacketRef::PubComp(a) => {
                let (packet_id, reason_code, properties) = ack(a);
                Packet::PubComp(PubComp {
                    packet_id,
                    reason_code,
                    properties,
                })
            }
            PacketRef::Subscribe(s) => Packet::Subscribe(Subscribe {
                packet_id: s.packet_id,
                properties: s.properties.to_properties_in(ctx).unwrap_or_default(),
                filters: s
                    .filters()
                    .filter_map(|(f, o)| Some((filter(f)?, o)))
                    .collect(),
            }),
            PacketRef::SubAck(s) => Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: s.properties.to_properties_in(ctx).unwrap_or_default(),
                reason_codes: s.reason_codes().collect(),
            }),
            PacketRef::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
                packet_id: u.packet_id,
                properties: u.properties.to_properties_in(ctx).unwrap_or_default(),
                filters: u.filters().filter_map(filter).collect(),
            }),
            PacketRef::UnsubAck(u) => Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: u.properties.to_properties_in(ctx).unwrap_or_default(),
                reason_codes: u.reason_codes().collect(),
            }),
            PacketRef::PingReq => Packet::PingReq,
            PacketRef::PingResp => Packet::PingResp,
            PacketRef::Disconnect(d) => Packet::Disconnect(Disconnect {
                reason_code: d.reason_code,
                properties: d.properties.to_properties_in(ctx).unwrap_or_default(),
            }),
            PacketRef::Auth(a) => Packet::Auth(Auth {
                reason_code: a.reason_code,
                properties: a.properties.to_properties_in(ctx).unwrap_or_default(),
            }),
        }
    }
}

/// An owned string of a checked one (it cannot fail).
fn utf8(s: &str) -> Utf8String {
    Utf8String::try_from(s).unwrap_or_default()
}

/// An owned filter of a checked one (it cannot fail: the decoder checked the filter syntax,
/// and in MQTT 5.0 the shared-subscription syntax too).
fn filter(s: &str) -> Option<TopicFilter> {
    TopicFilter::new(utf8(s)).ok()
}
