//! SUBSCRIBE (section 3.8): topic filters with their subscription options.

use crate::prelude::*;
use bytes::Bytes;

use super::Body;
use super::form::{Collect, Entries, Form, Owned};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::types::topic::SHARE_PREFIX;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS, TopicFilter};
use crate::wire::{PResult, all_consumed, fail, packet_id, put_utf8, u8_};

/// Retain Handling (section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send retained messages only if the subscription does not already exist.
    SendIfNew = 1,
    /// 2: do not send retained messages.
    DoNotSend = 2,
}

/// The Subscription Options byte (section 3.8.3.1). In MQTT 3.1.1 only `qos` exists; the other
/// options must keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (MQTT 5.0).
    pub no_local: bool,
    /// Retain As Published (MQTT 5.0).
    pub retain_as_published: bool,
    /// Retain Handling (MQTT 5.0).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with this Maximum QoS and the defaults for the rest.
    #[must_use]
    pub fn qos(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    /// The Subscription Options byte as a SUBSCRIBE carries it (section 3.8.3.1).
    #[must_use]
    pub fn to_byte(self) -> u8 {
        self.qos.bits()
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }

    /// Reads a Subscription Options byte (`v5`: MQTT 5.0's layout; otherwise only the QoS
    /// bits may be set).
    ///
    /// # Errors
    /// Reserved bits set, a Maximum QoS of 3 or a Retain Handling of 3.
    pub fn from_byte(b: u8, v5: bool) -> Result<Self, Violation> {
        // v5 [MQTT-3.8.3-5] The Server MUST treat a SUBSCRIBE packet as malformed if any of
        // Reserved bits in the Payload are non-zero. (3.1.1: bits 7-2 are reserved.)
        let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
        if b & reserved != 0 {
            return Err(Violation::SubscriptionOptionsReserved);
        }
        // "It is a Protocol Error if the Maximum QoS field has the value 3."
        let qos = QoS::from_bits(b & 0b11).ok_or(Violation::SubscriptionQosInvalid)?;
        let retain_handling = match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            // "It is a Protocol Error to send a Retain Handling value of 3."
            _ => return Err(Violation::RetainHandlingInvalid),
        };
        Ok(Self {
            qos,
            no_local: b & 0b0100 != 0,
            retain_as_published: b & 0b1000 != 0,
            retain_handling,
        })
    }
}

/// SUBSCRIBE (section 3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Subscribe {
    /// The Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): Subscription Identifier and User Properties.
    pub properties: Properties,
    /// The Topic Filters and their options, in order (at least one).
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

/// `shared`: the filter is a well-formed shared subscription (in a decoded MQTT 5.0 packet,
/// a checked filter that starts with `$share/`).
fn check_pair(shared: bool, opts: SubscriptionOptions, v5: bool) -> Result<(), Violation> {
    // v5 [MQTT-3.8.3-4] It is a Protocol Error to set the No Local bit to 1 on a Shared
    // Subscription.
    if v5 && opts.no_local && shared {
        return Err(Violation::NoLocalOnSharedSubscription);
    }
    if !v5 && SubscriptionOptions::qos(opts.qos) != opts {
        return Err(Violation::NotRepresentable);
    }
    Ok(())
}

/// A Topic Filter of a SUBSCRIBE or UNSUBSCRIBE; in MQTT 5.0 a `$share/` filter must also be a
/// well-formed shared subscription.
pub(crate) fn parse_filter<'a, F: Form<'a>>(f: F, i: &'a [u8], v5: bool) -> PResult<'a, F::Filter> {
    // v5 [MQTT-3.8.3-1] [MQTT-3.10.3-1], v3.1.1 [MQTT-3.8.3-1] [MQTT-3.10.3-1]: Topic Filters
    // are UTF-8 Encoded Strings.
    let (i, s) = f.utf8(i)?;
    match F::filter(s, v5) {
        Ok(filter) => Ok((i, filter)),
        Err(v) => fail(v),
    }
}

/// A SUBSCRIBE's Packet Identifier, properties and payload (its filters and options, all
/// checked), in the form `f` makes; each filter goes to `entries` with its options.
pub(crate) fn parse<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
    version: ProtocolVersion,
    mut entries: impl Entries<(F::Filter, SubscriptionOptions)>,
) -> Result<(PacketId, F::Props, &'a [u8]), Violation> {
    let v5 = version.is_v5();
    let ctx = PropertyContext::Packet(PacketType::Subscribe);
    all_consumed(body, |i| {
        let (i, packet_id) = packet_id(i)?;
        let (payload, properties) = f.props_if(v5, i, ctx)?;
        entries.start(payload);
        let mut i = payload;
        // v5 [MQTT-3.8.3-2], v3.1.1 [MQTT-3.8.3-3]: at least one Topic Filter.
        if i.is_empty() {
            return fail(Violation::SubscribeWithoutFilters);
        }
        while !i.is_empty() {
            let (rest, filter) = parse_filter(f, i, v5)?;
            let (rest, b) = u8_(rest)?;
            let opts = match SubscriptionOptions::from_byte(b, v5) {
                Ok(o) => o,
                Err(v) => return fail(v),
            };
            let shared = F::filter_str(&filter).starts_with("$share/");
            if let Err(v) = check_pair(shared, opts, v5) {
                return fail(v);
            }
            entries.push((filter, opts));
            i = rest;
        }
        Ok((i, (packet_id, properties, payload)))
    })
}

/// How many entries of a two-byte length, that many bytes and `trailer` more bytes `i` holds
/// (a malformed end counts as one more entry): the capacity for a SUBSCRIBE's or UNSUBSCRIBE's
/// filters, so that decoding them allocates once. Each entry takes at least two bytes of the
/// packet, so the count never exceeds what the input holds.
pub(crate) fn count_entries(mut i: &[u8], trailer: usize) -> usize {
    let mut n = 0;
    while let [hi, lo, rest @ ..] = i {
        n += 1;
        let skip = usize::from(u16::from_be_bytes([*hi, *lo])) + trailer;
        i = rest.get(skip..).unwrap_or_default();
    }
    n + usize::from(!i.is_empty())
}

/// The version-specific filter rules (the shared-subscription syntax of MQTT 5.0).
pub(crate) fn check_version(filter: &TopicFilter, v5: bool) -> Result<(), Violation> {
    if v5 { filter.check_shared() } else { Ok(()) }
}

impl Body for Subscribe {
    const TYPE: PacketType = PacketType::Subscribe;

    fn decode(src: &Bytes, _flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let mut filters = Vec::new();
        let sink = Collect {
            into: &mut filters,
            trailer: 1,
        };
        let (packet_id, properties, _) = parse(Owned(src), src, version, sink)?;
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        self.checked_body_len(version).map(|_| ())
    }

    fn checked_body_len(&self, version: ProtocolVersion) -> Result<usize, Violation> {
        // `validate` and `body_len` in one pass over the filters and the properties.
        let v5 = version.is_v5();
        if self.filters.is_empty() {
            return Err(Violation::SubscribeWithoutFilters);
        }
        let mut len = 2;
        for (f, o) in &self.filters {
            check_version(f, v5)?;
            check_pair(v5 && f.as_utf8().as_str().starts_with(SHARE_PREFIX), *o, v5)?;
            len += f.as_utf8().encoded_len() + 1;
        }
        if v5 {
            let props = self
                .properties
                .checked_len(PropertyContext::Packet(PacketType::Subscribe))?;
            Ok(len + crate::types::vbi_len(u32::try_from(props).unwrap_or(u32::MAX)) + props)
        } else if self.properties.is_empty() {
            Ok(len)
        } else {
            Err(Violation::NotRepresentable)
        }
    }

    fn body_len(&self, version: ProtocolVersion) -> usize {
        2 + if version.is_v5() {
            self.properties.wire_len()
        } else {
            0
        } + self
            .filters
            .iter()
            .map(|(f, _)| f.as_utf8().encoded_len() + 1)
            .sum::<usize>()
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(buf);
        }
        for (f, o) in &self.filters {
            put_utf8(buf, f.as_utf8());
            buf.put_u8(o.to_byte());
        }
    }
}
