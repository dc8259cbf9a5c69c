//! A session's state (section 4.1): subscriptions, the outbound queue with its in-flight
//! messages, incoming QoS 2 flows awaiting PUBREL, the will, and expiry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use mqtt_codec::{PacketId, QoS, SubscriptionOptions};

use super::ConnectionId;
use super::message::Message;
use crate::time::Timestamp;

/// A subscription as the session holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) options: SubscriptionOptions,
    pub(crate) subscription_id: Option<u32>,
}

/// Where an outbound message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// Waiting to be sent (client offline, or the send quota is used up).
    Queued,
    /// PUBLISH sent with this Packet Identifier; PUBACK or PUBREC awaited.
    Sent(PacketId),
    /// PUBREC received, PUBREL sent; PUBCOMP awaited.
    Released(PacketId),
}

/// A message on its way to the session's client.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) seq: u64,
    pub(crate) message: Arc<Message>,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) subscription_ids: Vec<u32>,
    pub(crate) state: OutState,
}

/// A will waiting for its connection to end, or for its delay.
#[derive(Debug, Clone)]
pub(crate) struct PendingWill {
    pub(crate) message: Arc<Message>,
    pub(crate) delay: u32,
    /// When it is due, once the connection has ended.
    pub(crate) due: Option<Timestamp>,
}

/// Session state.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) expiry_interval: u32,
    pub(crate) subscriptions: BTreeMap<String, Subscription>,
    pub(crate) outbound: VecDeque<Outbound>,
    pub(crate) next_seq: u64,
    /// Outbound messages in Sent or Released state.
    pub(crate) inflight: usize,
    pub(crate) queued_count: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) packet_ids_in_use: BTreeSet<u16>,
    pub(crate) next_packet_id: u16,
    pub(crate) incoming_qos2: BTreeSet<PacketId>,
    pub(crate) connection: Option<ConnectionId>,
    pub(crate) will: Option<PendingWill>,
    /// When the session expires (set while disconnected).
    pub(crate) expires_at: Option<Timestamp>,
}

/// The Session Expiry Interval that means "never".
pub(crate) const NEVER_EXPIRES: u32 = u32::MAX;

impl Session {
    pub(crate) fn new(expiry_interval: u32) -> Self {
        Self {
            expiry_interval,
            subscriptions: BTreeMap::new(),
            outbound: VecDeque::new(),
            next_seq: 1,
            inflight: 0,
            queued_count: 0,
            queued_bytes: 0,
            packet_ids_in_use: BTreeSet::new(),
            next_packet_id: 1,
            incoming_qos2: BTreeSet::new(),
            connection: None,
            will: None,
            expires_at: None,
        }
    }

    /// Whether the session's state outlives its connection (and so is persisted).
    /// [MQTT-3.1.2-23]
    pub(crate) fn is_durable(&self) -> bool {
        self.expiry_interval > 0
    }

    /// A Packet Identifier not used by any message in flight. [MQTT-2.2.1-4] [MQTT-4.3.2-1]
    /// [MQTT-4.3.3-1] `None` when all 65 535 are in use (the send quota prevents that).
    pub(crate) fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..=u16::MAX {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(candidate)
                && self.packet_ids_in_use.insert(candidate)
            {
                return Some(id);
            }
        }
        None
    }

    pub(crate) fn release_packet_id(&mut self, id: PacketId) {
        self.packet_ids_in_use.remove(&id.get());
    }

    /// Adds a message to the queue, accounting for it.
    pub(crate) fn push_queued(&mut self, out: Outbound) {
        self.queued_count += 1;
        self.queued_bytes += out.message.size();
        self.next_seq = self.next_seq.max(out.seq + 1);
        self.outbound.push_back(out);
    }

    /// Removes the outbound message at `index`, keeping the accounting right.
    pub(crate) fn remove_at(&mut self, index: usize) -> Option<Outbound> {
        let out = self.outbound.remove(index)?;
        match out.state {
            OutState::Queued => {
                self.queued_count = self.queued_count.saturating_sub(1);
                self.queued_bytes = self.queued_bytes.saturating_sub(out.message.size());
            }
            OutState::Sent(id) | OutState::Released(id) => {
                self.inflight = self.inflight.saturating_sub(1);
                self.release_packet_id(id);
            }
        }
        Some(out)
    }

    /// Marks the queued message at `index` as sent with `id`.
    pub(crate) fn mark_sent(&mut self, index: usize, id: PacketId) {
        if let Some(out) = self.outbound.get_mut(index) {
            if out.state == OutState::Queued {
                self.queued_count = self.queued_count.saturating_sub(1);
                self.queued_bytes = self.queued_bytes.saturating_sub(out.message.size());
                self.inflight += 1;
            }
            out.state = OutState::Sent(id);
        }
    }

    /// The index of the in-flight message with Packet Identifier `id`.
    pub(crate) fn find_inflight(&self, id: PacketId) -> Option<usize> {
        self.outbound
            .iter()
            .position(|o| matches!(o.state, OutState::Sent(p) | OutState::Released(p) if p == id))
    }

    pub(crate) fn find_seq(&self, seq: u64) -> Option<usize> {
        self.outbound.iter().position(|o| o.seq == seq)
    }
}
