//! `arbitrary` support (feature `arbitrary`): valid packets for structured fuzzing.
//!
//! [`Packet::arbitrary_for`] builds a packet that is valid for a protocol version, so a fuzz
//! target can check "encode, then decode, gives the same packet" without wasting runs on packets
//! the encoder refuses. `impl Arbitrary for Packet` picks a version first.

use core::num::{NonZeroU16, NonZeroU32};

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, PubAck, PubComp, PubRec, PubRel, Publish, SubAck,
    Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use crate::properties::{PayloadFormatIndicator, Properties, PropertyContext};
use crate::reason_code::ReasonCode;
use crate::types::{PacketType, ProtocolVersion, QoS, TopicFilter, TopicName, Utf8String, VBI_MAX};

fn clean_string(u: &mut Unstructured<'_>, forbidden: &[char]) -> Result<String> {
    let s: String = u.arbitrary()?;
    Ok(s.chars()
        .filter(|c| *c != '\0' && !forbidden.contains(c))
        .take(64)
        .collect())
}

impl<'a> Arbitrary<'a> for Utf8String {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let s = clean_string(u, &[])?;
        Utf8String::try_from(s).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

fn topic_name(u: &mut Unstructured<'_>) -> Result<TopicName> {
    let mut s = clean_string(u, &['+', '#'])?;
    if s.is_empty() {
        s.push('t');
    }
    TopicName::try_from(s).map_err(|_| arbitrary::Error::IncorrectFormat)
}

impl<'a> Arbitrary<'a> for TopicName {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        topic_name(u)
    }
}

impl<'a> Arbitrary<'a> for TopicFilter {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let levels = u.int_in_range(1..=4)?;
        let mut parts = Vec::with_capacity(levels);
        for i in 0..levels {
            let part = match u.int_in_range(0..=5)? {
                0 => "+".to_owned(),
                1 if i + 1 == levels => "#".to_owned(),
                _ => clean_string(u, &['+', '#', '/'])?,
            };
            parts.push(part);
        }
        let mut s = parts.join("/");
        if s.is_empty() {
            s.push('f');
        }
        if u.ratio(1, 8)? {
            s = format!("$share/g{}/{s}", u.int_in_range(0..=9)?);
        }
        let f = TopicFilter::try_from(s).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        if f.check_shared().is_err() {
            // A first level of "$share" that does not make a valid 5.0 shared subscription
            // (such as `$share//a`): valid in 3.1.1 only, so keep the packet valid in both.
            return TopicFilter::try_from(format!("x{f}"))
                .map_err(|_| arbitrary::Error::IncorrectFormat);
        }
        Ok(f)
    }
}

impl<'a> Arbitrary<'a> for ProtocolVersion {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(*u.choose(&[
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ])?)
    }
}

fn opt<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> Result<Option<T>> {
    // Mostly absent, so that packets stay small and the interesting ones are varied.
    if u.ratio(1, 4)? {
        Ok(Some(u.arbitrary()?))
    } else {
        Ok(None)
    }
}

fn bytes(u: &mut Unstructured<'_>, max: usize) -> Result<Bytes> {
    let len = u.int_in_range(0..=max)?;
    Ok(Bytes::copy_from_slice(u.bytes(len.min(u.len()))?))
}

impl Properties {
    /// Arbitrary properties valid in `ctx`.
    fn arbitrary_in(u: &mut Unstructured<'_>, ctx: PropertyContext) -> Result<Self> {
        let mut p = crate::properties::Expanded {
            payload_format_indicator: opt::<bool>(u)?.map(|b| {
                if b {
                    PayloadFormatIndicator::Utf8
                } else {
                    PayloadFormatIndicator::Unspecified
                }
            }),
            message_expiry_interval: opt(u)?,
            content_type: opt(u)?,
            response_topic: if u.ratio(1, 4)? {
                Some(topic_name(u)?)
            } else {
                None
            },
            correlation_data: if u.ratio(1, 4)? {
                Some(bytes(u, 32)?)
            } else {
                None
            },
            subscription_identifiers: Vec::new(),
            session_expiry_interval: opt(u)?,
            assigned_client_identifier: opt(u)?,
            server_keep_alive: opt(u)?,
            authentication_method: opt(u)?,
            authentication_data: if u.ratio(1, 4)? {
                Some(bytes(u, 32)?)
            } else {
                None
            },
            request_problem_information: opt(u)?,
            will_delay_interval: opt(u)?,
            request_response_information: opt(u)?,
            response_information: opt(u)?,
            server_reference: opt(u)?,
            reason_string: opt(u)?,
            receive_maximum: opt::<u16>(u)?.and_then(NonZeroU16::new),
            topic_alias_maximum: opt(u)?,
            topic_alias: opt::<u16>(u)?.and_then(NonZeroU16::new),
            maximum_qos: opt::<bool>(u)?
                .map(|b| if b { QoS::AtLeastOnce } else { QoS::AtMostOnce }),
            retain_available: opt(u)?,
            user_properties: Vec::new(),
            maximum_packet_size: opt::<u32>(u)?.and_then(NonZeroU32::new),
            wildcard_subscription_available: opt(u)?,
            subscription_identifier_available: opt(u)?,
            shared_subscription_available: opt(u)?,
        };
        for _ in 0..u.int_in_range(0..=2)? {
            p.subscription_identifiers
                .push(u.int_in_range(1..=VBI_MAX)?);
        }
        for _ in 0..u.int_in_range(0..=3)? {
            p.user_properties.push((u.arbitrary()?, u.arbitrary()?));
        }
        let mut p = Properties::try_from(p).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        p.restrict_to(ctx);
        Ok(p)
    }

    /// Drops every property not allowed in `ctx`, and fixes the combinations the specification
    /// forbids.
    fn restrict_to(&mut self, ctx: PropertyContext) {
        let disallowed: Vec<_> = self.present().filter(|id| !id.is_allowed_in(ctx)).collect();
        for id in disallowed {
            self.remove(id);
        }
        if ctx != PropertyContext::Packet(PacketType::Publish) {
            let first = self.subscription_identifier();
            self.clear_subscription_identifiers();
            if let Some(id) = first {
                let _ = self.push_subscription_identifier(id);
            }
        }
        if self.authentication_method().is_none() {
            let _ = self.set_authentication_data(None);
        }
    }
}

fn props(u: &mut Unstructured<'_>, v: ProtocolVersion, ty: PacketType) -> Result<Properties> {
    if v.is_v5() {
        Properties::arbitrary_in(u, PropertyContext::Packet(ty))
    } else {
        Ok(Properties::default())
    }
}

fn reason(u: &mut Unstructured<'_>, v: ProtocolVersion, ty: PacketType) -> Result<ReasonCode> {
    if !v.is_v5() {
        return Ok(ReasonCode::SUCCESS);
    }
    let valid: Vec<ReasonCode> = (0..=u8::MAX)
        .map(ReasonCode)
        .filter(|c| c.is_valid_for(ty))
        .collect();
    Ok(*u.choose(&valid)?)
}

fn qos(u: &mut Unstructured<'_>) -> Result<QoS> {
    u.arbitrary()
}

impl Packet {
    /// An arbitrary packet that is valid for `version` (a CONNECT carries `version` too).
    ///
    /// # Errors
    /// When `u` runs out of data.
    pub fn arbitrary_for(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<Packet> {
        let v = version;
        let v5 = v.is_v5();
        let ty = if v5 {
            u.int_in_range(1..=15)?
        } else {
            u.int_in_range(1..=14)?
        };
        let ty = PacketType::from_nibble(ty).unwrap_or(PacketType::PingReq);
        Ok(match ty {
            PacketType::Connect => {
                let will = if u.arbitrary()? {
                    let mut w = Will {
                        topic: topic_name(u)?,
                        payload: bytes(u, 64)?,
                        qos: qos(u)?,
                        retain: u.arbitrary()?,
                        properties: Properties::default(),
                    };
                    if v5 {
                        w.properties = Properties::arbitrary_in(u, PropertyContext::Will)?;
                    }
                    Some(w)
                } else {
                    None
                };
                let username: Option<Utf8String> = opt(u)?;
                let password = if (v5 || username.is_some()) && u.arbitrary()? {
                    Some(bytes(u, 32)?)
                } else {
                    None
                };
                Packet::from(Connect {
                    protocol: v,
                    clean_start: u.arbitrary()?,
                    keep_alive: u.arbitrary()?,
                    properties: props(u, v, ty)?,
                    client_id: u.arbitrary()?,
                    will,
                    username,
                    password,
                })
            }
            PacketType::ConnAck => {
                let reason_code = if v5 {
                    reason(u, v, ty)?
                } else {
                    let code = u.int_in_range(0..=5)?;
                    ReasonCode::from_v3_connect_return_code(code).unwrap_or(ReasonCode::SUCCESS)
                };
                Packet::ConnAck(ConnAck {
                    session_present: reason_code == ReasonCode::SUCCESS && u.arbitrary()?,
                    reason_code,
                    properties: props(u, v, ty)?,
                })
            }
            PacketType::Publish => {
                let qos = qos(u)?;
                let mut properties = props(u, v, ty)?;
                let topic = if properties.topic_alias.is_some() && u.arbitrary()? {
                    TopicName::empty()
                } else {
                    topic_name(u)?
                };
                if !v5 {
                    properties = Properties::default();
                }
                Packet::Publish(Publish {
                    dup: qos != QoS::AtMostOnce && u.arbitrary()?,
                    qos,
                    retain: u.arbitrary()?,
                    topic,
                    packet_id: if qos == QoS::AtMostOnce {
                        None
                    } else {
                        Some(u.arbitrary()?)
                    },
                    properties,
                    payload: bytes(u, 256)?,
                })
            }
            PacketType::PubAck => Packet::PubAck(PubAck {
                packet_id: u.arbitrary()?,
                reason_code: reason(u, v, ty)?,
                properties: props(u, v, ty)?,
            }),
            PacketType::PubRec => Packet::PubRec(PubRec {
                packet_id: u.arbitrary()?,
                reason_code: reason(u, v, ty)?,
                properties: props(u, v, ty)?,
            }),
            PacketType::PubRel => Packet::PubRel(PubRel {
                packet_id: u.arbitrary()?,
                reason_code: reason(u, v, ty)?,
                properties: props(u, v, ty)?,
            }),
            PacketType::PubComp => Packet::PubComp(PubComp {
                packet_id: u.arbitrary()?,
                reason_code: reason(u, v, ty)?,
                properties: props(u, v, ty)?,
            }),
            PacketType::Subscribe => {
                let n = u.int_in_range(1..=4)?;
                let mut filters = Vec::with_capacity(n);
                for _ in 0..n {
                    let filter: TopicFilter = u.arbitrary()?;
                    let mut o: SubscriptionOptions = u.arbitrary()?;
                    if !v5 {
                        o = SubscriptionOptions::qos(o.qos);
                    } else if filter.shared().is_some() {
                        o.no_local = false;
                    }
                    filters.push((filter, o));
                }
                Packet::Subscribe(Subscribe {
                    packet_id: u.arbitrary()?,
                    properties: props(u, v, ty)?,
                    filters,
                })
            }
            PacketType::SubAck => {
                let n = u.int_in_range(1..=4)?;
                let mut reason_codes = Vec::with_capacity(n);
                for _ in 0..n {
                    reason_codes.push(if v5 {
                        reason(u, v, ty)?
                    } else {
                        *u.choose(&[
                            ReasonCode::GRANTED_QOS_0,
                            ReasonCode::GRANTED_QOS_1,
                            ReasonCode::GRANTED_QOS_2,
                            ReasonCode::UNSPECIFIED_ERROR,
                        ])?
                    });
                }
                Packet::SubAck(SubAck {
                    packet_id: u.arbitrary()?,
                    properties: props(u, v, ty)?,
                    reason_codes,
                })
            }
            PacketType::Unsubscribe => {
                let n = u.int_in_range(1..=4)?;
                let mut filters = Vec::with_capacity(n);
                for _ in 0..n {
                    filters.push(u.arbitrary()?);
                }
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: u.arbitrary()?,
                    properties: props(u, v, ty)?,
                    filters,
                })
            }
            PacketType::UnsubAck => {
                let mut reason_codes = Vec::new();
                if v5 {
                    for _ in 0..u.int_in_range(1..=4)? {
                        reason_codes.push(reason(u, v, ty)?);
                    }
                }
                Packet::UnsubAck(UnsubAck {
                    packet_id: u.arbitrary()?,
                    properties: props(u, v, ty)?,
                    reason_codes,
                })
            }
            PacketType::PingReq => Packet::PingReq,
            PacketType::PingResp => Packet::PingResp,
            PacketType::Disconnect => Packet::Disconnect(Disconnect {
                reason_code: reason(u, v, ty)?,
                properties: props(u, v, ty)?,
            }),
            PacketType::Auth => {
                let mut auth = Auth {
                    reason_code: reason(u, v, ty)?,
                    properties: props(u, v, ty)?,
                };
                let short_form =
                    auth.reason_code == ReasonCode::SUCCESS && auth.properties.is_empty();
                if !short_form && auth.properties.authentication_method().is_none() {
                    auth.properties
                        .set_authentication_method(Some(u.arbitrary()?));
                }
                Packet::Auth(auth)
            }
        })
    }
}

impl<'a> Arbitrary<'a> for Packet {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let version = u.arbitrary()?;
        Packet::arbitrary_for(u, version)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::decode::{Decoder, Status};

    #[test]
    fn arbitrary_packets_are_valid_and_round_trip() {
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut data = vec![0u8; 4096];
        let mut checked = 0;
        for _ in 0..2000 {
            for b in &mut data {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            let mut u = Unstructured::new(&data);
            let Ok(version) = u.arbitrary::<ProtocolVersion>() else {
                continue;
            };
            let Ok(packet) = Packet::arbitrary_for(&mut u, version) else {
                continue;
            };
            let mut buf = BytesMut::new();
            packet
                .encode(version, &mut buf)
                .unwrap_or_else(|e| panic!("{e}: {packet:?}"));
            let bytes = buf.freeze();
            let mut decoder = Decoder::with_version(version);
            match decoder.decode_bytes(&bytes).unwrap() {
                Status::Complete((p, len)) => {
                    assert_eq!(len, bytes.len());
                    assert_eq!(p, packet);
                }
                Status::Incomplete(n) => panic!("incomplete {n:?}"),
            }
            checked += 1;
        }
        assert!(checked > 1500, "{checked}");
    }
}
