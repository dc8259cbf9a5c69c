//! PUBREC (section 3.5): the first response to a QoS 2 PUBLISH.

use super::ack::ack_packet;
use crate::types::PacketType;

ack_packet!(
    /// PUBREC (section 3.5): the first response to a QoS 2 PUBLISH.
    PubRec,
    PacketType::PubRec
);
