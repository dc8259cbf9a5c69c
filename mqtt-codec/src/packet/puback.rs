//! PUBACK (section 3.4): the response to a QoS 1 PUBLISH.

use super::ack::ack_packet;
use crate::types::PacketType;

ack_packet!(
    /// PUBACK (section 3.4): the response to a QoS 1 PUBLISH.
    PubAck,
    PacketType::PubAck
);
