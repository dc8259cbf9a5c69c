//! UNSUBSCRIBE (section 3.10).

use crate::prelude::*;
use bytes::Bytes;

use super::Body;
use super::form::{Collect, Entries, Form, Owned};
use super::subscribe::{check_version, parse_filter};
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext};
use crate::types::{PacketId, PacketType, ProtocolVersion, TopicFilter};
use crate::wire::{all_consumed, fail, packet_id, put_utf8};

/// UNSUBSCRIBE (section 3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Unsubscribe {
    /// The Packet Identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5.0): User Properties.
    pub properties: Properties,
    /// The Topic Filters, in order (at least one).
    pub filters: Vec<TopicFilter>,
}

impl Body for Unsubscribe {
    const TYPE: PacketType = PacketType::Unsubscribe;

    fn decode(src: &Bytes, _flags: u8, version: ProtocolVersion) -> Result<Self, Violation> {
        let mut filters = Vec::new();
        let sink = Collect {
            into: &mut filters,
            trailer: 0,
        };
        let (packet_id, properties, _) = parse(Owned(src), src, version, sink)?;
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    fn validate(&self, version: ProtocolVersion) -> Result<(), Violation> {
        if self.filters.is_empty() {
            return Err(Violation::UnsubscribeWithoutFilters);
        }
        for f in &self.filters {
            check_version(f, version.is_v5())?;
        }
        if version.is_v5() {
            self.properties
                .validate(PropertyContext::Packet(PacketType::Unsubscribe))
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
        } + self
            .filters
            .iter()
            .map(|f| f.as_utf8().encoded_len())
            .sum::<usize>()
    }

    fn write(&self, version: ProtocolVersion, buf: &mut impl crate::wire::Sink) {
        buf.put_u16(self.packet_id.get());
        if version.is_v5() {
            self.properties.write(buf);
        }
        for f in &self.filters {
            put_utf8(buf, f.as_utf8());
        }
    }
}

/// An UNSUBSCRIBE's Packet Identifier, properties and payload (its filters, all checked), in
/// the form `f` makes; each filter goes to `entries`.
pub(crate) fn parse<'a, F: Form<'a>>(
    f: F,
    body: &'a [u8],
    version: ProtocolVersion,
    mut entries: impl Entries<F::Filter>,
) -> Result<(PacketId, F::Props, &'a [u8]), Violation> {
    let v5 = version.is_v5();
    let ctx = PropertyContext::Packet(PacketType::Unsubscribe);
    all_consumed(body, |i| {
        let (i, packet_id) = packet_id(i)?;
        let (payload, properties) = f.props_if(v5, i, ctx)?;
        // v5 v3.1.1 [MQTT-3.10.3-2] The Payload of an UNSUBSCRIBE packet MUST contain at
        // least one Topic Filter.
        if payload.is_empty() {
            return fail(Violation::UnsubscribeWithoutFilters);
        }
        entries.start(payload);
        let mut i = payload;
        while !i.is_empty() {
            let (rest, filter) = parse_filter(f, i, v5)?;
            entries.push(filter);
            i = rest;
        }
        Ok((i, (packet_id, properties, payload)))
    })
}
