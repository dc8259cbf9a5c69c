//! PUBCOMP (section 3.7): the response to a PUBREL, the last packet of the QoS 2 exchange.

use super::ack::ack_packet;
use crate::types::PacketType;

ack_packet!(
    /// PUBCOMP (section 3.7): the response to a PUBREL, the last packet of the QoS 2 exchange.
    PubComp,
    PacketType::PubComp
);
