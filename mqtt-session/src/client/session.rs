//! The client's Session State (section 4.1), which outlives a network connection: QoS 1 and 2
//! messages sent and not completely acknowledged, QoS 2 messages received and not completely
//! acknowledged, the Packet Identifiers in use; and what waits for the next connection (queued
//! messages, SUBSCRIBE and UNSUBSCRIBE requests).

use crate::prelude::*;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};

use mqtt_codec::{PacketId, Publish, Subscribe, Unsubscribe};

use super::record::ClientRecord;

/// Where an outbound message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// Waiting to be sent on this connection (never sent, or sent on an earlier connection and
    /// to be sent again with DUP).
    Pending,
    /// PUBLISH sent on this connection; PUBACK or PUBREC awaited.
    InFlight,
    /// PUBREC received and PUBREL sent; PUBCOMP awaited. PUBREL is sent again on resume.
    Released,
}

/// A message the application published.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// Its place in the order of publication (increasing along the queue).
    pub(crate) seq: u64,
    /// The PUBLISH as it is sent: full topic, no alias, DUP 0, the Packet Identifier for QoS > 0.
    pub(crate) publish: Publish,
    pub(crate) state: OutState,
    /// Whether the PUBLISH has been sent at least once (it is a re-delivery from then on).
    pub(crate) sent_once: bool,
}

impl Outbound {
    /// Whether the message is part of the Session State: sent and not completely acknowledged.
    pub(crate) fn is_session_state(&self) -> bool {
        self.sent_once || self.state != OutState::Pending
    }
}

/// A SUBSCRIBE or an UNSUBSCRIBE awaiting its acknowledgement.
#[derive(Debug, Clone)]
pub(crate) enum RequestPacket {
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
}

/// A request, sent on this connection or waiting for one.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) packet: RequestPacket,
    /// Sent on the current connection (an acknowledgement may come).
    pub(crate) sent: bool,
}

impl Request {
    pub(crate) fn packet_id(&self) -> PacketId {
        match &self.packet {
            RequestPacket::Subscribe(s) => s.packet_id,
            RequestPacket::Unsubscribe(u) => u.packet_id,
        }
    }
}

/// The Session State, and what waits for a connection.
#[derive(Debug)]
pub(crate) struct Session {
    /// Messages in the order they were published: in flight, released, pending.
    pub(crate) outbound: VecDeque<Outbound>,
    /// SUBSCRIBE / UNSUBSCRIBE requests awaiting acknowledgement, in the order made.
    pub(crate) requests: VecDeque<Request>,
    /// Packet Identifiers of inbound QoS 2 messages delivered and awaiting PUBREL.
    pub(crate) inbound_qos2: BTreeSet<PacketId>,
    /// Of those, the ones the application has not acknowledged yet (manual acknowledgement):
    /// their PUBREC waits for [`Client::ack`](super::Client::ack).
    pub(crate) inbound_unacked: BTreeSet<PacketId>,
    /// Outbound messages in state InFlight or Released: the send quota in use.
    pub(crate) in_flight: usize,
    /// Outbound messages in state Pending.
    pub(crate) pending: usize,
    ids_in_use: BTreeSet<u16>,
    next_id: u16,
    /// The `seq` of each QoS 1/2 outbound message, by Packet Identifier.
    by_id: BTreeMap<PacketId, u64>,
    next_seq: u64,
    /// No message before this index is Pending (a lower bound, advanced lazily).
    pending_from: usize,
    /// Whether the server may hold a session for us (decides what a Session Present 1 means).
    pub(crate) may_exist_on_server: bool,
    /// The Session Expiry Interval in force (the server's if its CONNACK set one).
    pub(crate) expiry_interval: u32,
    /// Storage records are kept (the configuration's `persist`).
    pub(crate) persist: bool,
    /// Storage records not yet given to the host.
    pub(crate) records: VecDeque<ClientRecord>,
}

impl Session {
    pub(crate) fn new(may_exist_on_server: bool, expiry_interval: u32) -> Self {
        Self {
            outbound: VecDeque::new(),
            requests: VecDeque::new(),
            inbound_qos2: BTreeSet::new(),
            inbound_unacked: BTreeSet::new(),
            in_flight: 0,
            pending: 0,
            ids_in_use: BTreeSet::new(),
            next_id: 1,
            by_id: BTreeMap::new(),
            next_seq: 0,
            pending_from: 0,
            may_exist_on_server,
            expiry_interval,
            persist: false,
            records: VecDeque::new(),
        }
    }

    /// Keeps a storage record for the host, when records are kept.
    pub(crate) fn record(&mut self, record: impl FnOnce() -> ClientRecord) {
        if self.persist {
            self.records.push_back(record());
        }
    }

    /// A Packet Identifier not used by any message or request in flight or queued
    /// (v5 [MQTT-2.2.1-3] v3.1.1 [MQTT-2.3.1-2]); `None` when all 65 535 are in use.
    pub(crate) fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..=u16::MAX {
            let candidate = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if let Some(id) = PacketId::new(candidate)
                && self.ids_in_use.insert(candidate)
            {
                return Some(id);
            }
        }
        None
    }

    /// Makes `id` available again (its flow is complete).
    pub(crate) fn release_packet_id(&mut self, id: PacketId) {
        self.ids_in_use.remove(&id.get());
    }

    /// The number of Packet Identifiers in use.
    pub(crate) fn packet_ids_in_use(&self) -> usize {
        self.ids_in_use.len()
    }

    /// Adds a message to the end of the queue (stored, for QoS 1/2, when records are kept).
    pub(crate) fn push(&mut self, publish: Publish) {
        let seq = self.next_seq;
        if publish.packet_id.is_some() {
            self.record(|| ClientRecord::Outbound {
                seq,
                publish: publish.clone(),
            });
        }
        self.push_restored(seq, publish, OutState::Pending, false);
    }

    /// Adds a message with its place in the order of publication `seq` (at least the last
    /// one's), in `state`.
    pub(crate) fn push_restored(
        &mut self,
        seq: u64,
        publish: Publish,
        state: OutState,
        sent_once: bool,
    ) {
        if state == OutState::Pending {
            self.pending += 1;
        } else {
            self.in_flight += 1;
        }
        if let Some(id) = publish.packet_id {
            self.ids_in_use.insert(id.get());
        }
        let seq = seq.max(self.next_seq);
        self.next_seq = seq.saturating_add(1);
        if let Some(id) = publish.packet_id {
            self.by_id.insert(id, seq);
        }
        self.outbound.push_back(Outbound {
            seq,
            publish,
            state,
            sent_once,
        });
    }

    /// Removes the message at `index`, keeping the counts and the Packet Identifiers right.
    pub(crate) fn remove_at(&mut self, index: usize) -> Option<Outbound> {
        let out = self.outbound.remove(index)?;
        if index < self.pending_from {
            self.pending_from -= 1;
        }
        match out.state {
            OutState::Pending => self.pending = self.pending.saturating_sub(1),
            OutState::InFlight | OutState::Released => {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
        if let Some(id) = out.publish.packet_id {
            self.by_id.remove(&id);
            self.release_packet_id(id);
            self.record(|| ClientRecord::OutboundDone { packet_id: id });
        }
        Some(out)
    }

    /// Sets the state of the message at `index`, keeping the counts right.
    pub(crate) fn set_state(&mut self, index: usize, state: OutState) {
        let Some(out) = self.outbound.get_mut(index) else {
            return;
        };
        let was_pending = out.state == OutState::Pending;
        let is_pending = state == OutState::Pending;
        out.state = state;
        if state == OutState::InFlight {
            out.sent_once = true;
        }
        if is_pending {
            self.pending_from = self.pending_from.min(index);
        }
        match (was_pending, is_pending) {
            (true, false) => {
                self.pending = self.pending.saturating_sub(1);
                self.in_flight += 1;
            }
            (false, true) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.pending += 1;
            }
            _ => {}
        }
    }

    /// The index of the QoS 1/2 message with Packet Identifier `id` that is in flight or
    /// released.
    pub(crate) fn find_sent(&self, id: PacketId) -> Option<usize> {
        let seq = *self.by_id.get(&id)?;
        let index = self.outbound.binary_search_by_key(&seq, |o| o.seq).ok()?;
        self.outbound
            .get(index)
            .filter(|o| o.state != OutState::Pending)
            .map(|_| index)
    }

    /// The index of the QoS 1/2 message with Packet Identifier `id` whose PUBLISH the server
    /// may be acknowledging: in flight or released, or sent on an earlier connection and
    /// waiting to be sent again on this one. (A server may acknowledge on the new connection a
    /// PUBLISH it received on the old one: the flow goes on from there, v5 [MQTT-4.4.0-2].)
    pub(crate) fn find_acknowledgeable(&self, id: PacketId) -> Option<usize> {
        let seq = *self.by_id.get(&id)?;
        let index = self.outbound.binary_search_by_key(&seq, |o| o.seq).ok()?;
        self.outbound
            .get(index)
            .filter(|o| o.state != OutState::Pending || o.sent_once)
            .map(|_| index)
    }

    /// The index of the first Pending message (the length when there is none).
    pub(crate) fn first_pending(&mut self) -> usize {
        let mut i = self.pending_from;
        while self
            .outbound
            .get(i)
            .is_some_and(|o| o.state != OutState::Pending)
        {
            i += 1;
        }
        self.pending_from = i;
        i
    }

    /// The index of the request with Packet Identifier `id`, sent on this connection.
    pub(crate) fn find_request(&self, id: PacketId) -> Option<usize> {
        self.requests
            .iter()
            .position(|r| r.sent && r.packet_id() == id)
    }

    /// Removes the request at `index` and frees its Packet Identifier.
    pub(crate) fn remove_request(&mut self, index: usize) -> Option<Request> {
        let r = self.requests.remove(index)?;
        self.release_packet_id(r.packet_id());
        Some(r)
    }

    /// The connection ended: what was in flight on it is sent again (DUP) on the next one, with
    /// its Packet Identifier (v5 v3.1.1 [MQTT-4.4.0-1]); released messages keep waiting for
    /// PUBCOMP; requests not acknowledged are sent again.
    pub(crate) fn connection_lost(&mut self) {
        for i in 0..self.outbound.len() {
            if self.outbound.get(i).map(|o| o.state) == Some(OutState::InFlight) {
                self.set_state(i, OutState::Pending);
            }
        }
        for r in &mut self.requests {
            r.sent = false;
        }
    }

    /// Discards the Session State: messages sent and not completely acknowledged are returned,
    /// in order, except those `resend` keeps (by QoS): they stay in their place in the queue,
    /// to be sent again as new messages (DUP 0). The inbound QoS 2 flows are forgotten. Messages
    /// never sent stay queued: they are not session state yet.
    /// v5 [MQTT-3.2.2-5] [MQTT-3.1.2-4] v3.1.1 [MQTT-3.1.2-6]
    pub(crate) fn discard(&mut self, resend: impl Fn(mqtt_codec::QoS) -> bool) -> Vec<Outbound> {
        let mut discarded = Vec::new();
        let persist = core::mem::replace(&mut self.persist, false);
        let mut i = 0;
        while let Some(out) = self.outbound.get(i) {
            if !out.is_session_state() {
                i += 1;
            } else if resend(out.publish.qos) {
                self.set_state(i, OutState::Pending);
                if let Some(out) = self.outbound.get_mut(i) {
                    out.sent_once = false;
                }
                i += 1;
            } else if let Some(out) = self.remove_at(i) {
                discarded.push(out);
            }
        }
        self.inbound_qos2.clear();
        self.inbound_unacked.clear();
        self.persist = persist;
        // The store is cleared, then holds again every message still queued.
        self.record(|| ClientRecord::Cleared);
        if self.persist {
            for out in &self.outbound {
                if out.publish.packet_id.is_some() {
                    self.records.push_back(ClientRecord::Outbound {
                        seq: out.seq,
                        publish: out.publish.clone(),
                    });
                }
            }
        }
        discarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // v5 [MQTT-2.2.1-3] v3.1.1 [MQTT-2.3.1-2]
    #[test]
    fn packet_ids_are_never_reused_while_in_use() {
        let mut s = Session::new(false, 0);
        let mut seen = BTreeSet::new();
        for _ in 0..u16::MAX {
            let id = s.allocate_packet_id();
            assert!(id.is_some_and(|id| seen.insert(id)));
        }
        assert_eq!(s.allocate_packet_id(), None);
        let freed = PacketId::new(4242);
        if let Some(id) = freed {
            s.release_packet_id(id);
        }
        assert_eq!(s.allocate_packet_id(), freed);
        assert_eq!(s.allocate_packet_id(), None);
    }
}
