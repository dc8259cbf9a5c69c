//! PUBREL (section 3.6): the response to a PUBREC (fixed-header flags 0b0010, v5 [MQTT-3.6.1-1]).

use super::ack::ack_packet;
use crate::types::PacketType;

ack_packet!(
    /// PUBREL (section 3.6): the response to a PUBREC (fixed-header flags 0b0010, v5 [MQTT-3.6.1-1]).
    PubRel,
    PacketType::PubRel
);
