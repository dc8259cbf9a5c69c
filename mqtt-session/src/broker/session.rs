//! A session's state (section 4.1): subscriptions, the outbound queue with its in-flight
//! messages, incoming QoS 2 flows awaiting PUBREL, the will, and expiry.

use crate::hash::HashMap;
use crate::prelude::*;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::sync::Arc;

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
    /// The Client Identifier, shared by the keys of the session's subscriptions in the
    /// subscription tree (one allocation per session, not per subscription).
    pub(crate) client_id: Arc<str>,
    pub(crate) expiry_interval: u32,
    /// The User Name its client last connected with (for the read checks of deliveries).
    pub(crate) username: Option<Arc<str>>,
    pub(crate) subscriptions: BTreeMap<String, Subscription>,
    pub(crate) outbound: VecDeque<Outbound>,
    pub(crate) next_seq: u64,
    /// Outbound messages in Sent or Released state.
    pub(crate) inflight: usize,
    pub(crate) queued_count: usize,
    pub(crate) queued_bytes: usize,
    /// How many of the queued messages are QoS 0 (the first to go when the queue is full).
    pub(crate) queued_qos0: usize,
    pub(crate) packet_ids_in_use: PacketIds,
    pub(crate) next_packet_id: u16,
    pub(crate) incoming_qos2: BTreeSet<PacketId>,
    pub(crate) connection: Option<ConnectionId>,
    pub(crate) will: Option<PendingWill>,
    /// When the session expires (set while disconnected).
    pub(crate) expires_at: Option<Timestamp>,
}

/// The sessions, by Client Identifier.
///
/// Each session lives in a numbered slot, so that a connection can find its own session again
/// without hashing its Client Identifier ([`SessionRef`]): the pulls of a fan-out look the
/// session up once per delivery. The index is a hash map, randomly seeded (client identifiers
/// come from clients) and never iterated in hash order where the order shows (see
/// `restore::snapshot`), so the engine stays deterministic. A freed slot is reused by the next
/// session created (the last freed first).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Keyed by the session's own `client_id` `Arc` (no second copy of the name).
    index: HashMap<Arc<str>, usize>,
    slots: Vec<Option<Session>>,
    free: Vec<usize>,
}

/// Where a connection's session was found last: its slot, and its `client_id` `Arc`, which
/// says whether the slot still holds that same session (a session that ended keeps its `Arc`
/// alive here, so a later session in the slot cannot have the same pointer).
#[derive(Debug, Clone)]
pub(crate) struct SessionRef {
    slot: usize,
    client_id: Arc<str>,
}

impl Sessions {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn contains_key(&self, client_id: &str) -> bool {
        self.index.contains_key(client_id)
    }

    pub(crate) fn get(&self, client_id: &str) -> Option<&Session> {
        let slot = *self.index.get(client_id)?;
        self.slots.get(slot)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, client_id: &str) -> Option<&mut Session> {
        let slot = *self.index.get(client_id)?;
        self.slots.get_mut(slot)?.as_mut()
    }

    /// The session of `client_id` and its slot.
    pub(crate) fn get_mut_with_slot(&mut self, client_id: &str) -> Option<(usize, &mut Session)> {
        let slot = *self.index.get(client_id)?;
        Some((slot, self.slots.get_mut(slot)?.as_mut()?))
    }

    /// Whether `slot` holds the session whose `client_id` is `owner` (that very `Arc`).
    #[inline]
    fn holds(&self, slot: usize, owner: &Arc<str>) -> bool {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|s| Arc::ptr_eq(&s.client_id, owner))
    }

    /// The session of `client_id` and its slot, found through `cache` (a connection's
    /// [`SessionRef`]) without hashing when the cache still names that session's slot.
    #[inline]
    pub(crate) fn get_cached(
        &self,
        client_id: &str,
        cache: Option<&SessionRef>,
    ) -> Option<(usize, &Session)> {
        let slot = match cache {
            Some(r) if self.holds(r.slot, &r.client_id) => r.slot,
            _ => *self.index.get(client_id)?,
        };
        Some((slot, self.slots.get(slot)?.as_ref()?))
    }

    /// The session of `client_id`, found in the slot of `hint` when that slot still holds the
    /// session whose `client_id` is the hint's `Arc`: the same session as
    /// [`Sessions::get_mut`], without hashing when the hint is right.
    #[inline]
    pub(crate) fn get_mut_hinted(
        &mut self,
        client_id: &str,
        hint: Option<(usize, &Arc<str>)>,
    ) -> Option<&mut Session> {
        if let Some((slot, owner)) = hint
            && self.holds(slot, owner)
        {
            return self.slots.get_mut(slot)?.as_mut();
        }
        self.get_mut(client_id)
    }

    /// The session of `client_id`, found through `cache` when it still points at it (and
    /// `cache` updated otherwise): the same session as [`Sessions::get_mut`], without hashing
    /// in the usual case.
    #[inline]
    pub(crate) fn get_mut_cached(
        &mut self,
        client_id: &str,
        cache: &mut Option<SessionRef>,
    ) -> Option<&mut Session> {
        if let Some(r) = cache.as_ref()
            && self.holds(r.slot, &r.client_id)
        {
            return self.slots.get_mut(r.slot)?.as_mut();
        }
        let (slot, session) = self.get_mut_with_slot(client_id)?;
        *cache = Some(SessionRef {
            slot,
            client_id: Arc::clone(&session.client_id),
        });
        Some(session)
    }

    /// The session of `client_id`, created with `create` if there is none.
    pub(crate) fn get_or_insert_with(
        &mut self,
        client_id: &str,
        create: impl FnOnce() -> Session,
    ) -> Option<&mut Session> {
        let slot = match self.index.get(client_id) {
            Some(&slot) => slot,
            None => {
                let session = create();
                let key = Arc::clone(&session.client_id);
                debug_assert_eq!(&*key, client_id, "a session is made for its own name");
                let session = Some(session);
                let slot = match self.free.pop() {
                    Some(slot) => {
                        if let Some(s) = self.slots.get_mut(slot) {
                            *s = session;
                        }
                        slot
                    }
                    None => {
                        self.slots.push(session);
                        self.slots.len() - 1
                    }
                };
                self.index.insert(key, slot);
                slot
            }
        };
        self.slots.get_mut(slot)?.as_mut()
    }

    pub(crate) fn remove(&mut self, client_id: &str) -> Option<Session> {
        let slot = self.index.remove(client_id)?;
        let session = self.slots.get_mut(slot)?.take();
        self.free.push(slot);
        session
    }

    /// The Client Identifiers, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(|k| &**k)
    }

    /// The sessions with their Client Identifiers, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Session)> {
        self.index
            .iter()
            .filter_map(|(c, &slot)| Some((&**c, self.slots.get(slot)?.as_ref()?)))
    }
}

/// The Packet Identifiers of a session's messages in flight.
///
/// Sending and acknowledging a QoS 1/2 message each change it (a `BTreeSet` cost about 250
/// instructions per message in the fan-out profile). Up to [`FEW_IDS`] identifiers, a sorted
/// vector: identifiers are allocated in increasing order and usually acknowledged oldest
/// first, so the usual changes are a push at the end and a removal at the front. Beyond, a
/// bitmap of all 65 536 values (8 KiB), so that a client with tens of thousands in flight,
/// acknowledging them in any order, costs O(1) each.
#[derive(Debug)]
pub(crate) enum PacketIds {
    Few(Vec<u16>),
    Many {
        /// Bit `id % 64` of word `id / 64`.
        bits: Box<[u64]>,
        len: usize,
    },
}

/// Up to this many identifiers, [`PacketIds`] keeps a sorted vector (2 KiB at most).
pub(crate) const FEW_IDS: usize = 1024;

impl Default for PacketIds {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl PacketIds {
    /// Adds `id`; `false` if it was there already.
    pub(crate) fn insert(&mut self, id: u16) -> bool {
        match self {
            Self::Few(ids) => {
                // New identifiers usually come after the others.
                let at = match ids.last() {
                    Some(&last) if last < id => ids.len(),
                    None => 0,
                    Some(_) => match ids.binary_search(&id) {
                        Ok(_) => return false,
                        Err(at) => at,
                    },
                };
                if ids.len() < FEW_IDS {
                    ids.insert(at, id);
                    return true;
                }
                let mut bits = vec![0_u64; 1024].into_boxed_slice();
                for &old in ids.iter() {
                    set_bit(&mut bits, old, true);
                }
                let len = ids.len();
                *self = Self::Many { bits, len };
                self.insert(id)
            }
            Self::Many { bits, len } => {
                let added = !set_bit(bits, id, true);
                if added {
                    *len += 1;
                }
                added
            }
        }
    }

    /// Removes `id` if it is there.
    pub(crate) fn remove(&mut self, id: u16) {
        match self {
            Self::Few(ids) => {
                // Acknowledgements usually come in order: the oldest first.
                let at = if ids.first() == Some(&id) {
                    Some(0)
                } else {
                    ids.binary_search(&id).ok()
                };
                if let Some(at) = at {
                    ids.remove(at);
                }
            }
            Self::Many { bits, len } => {
                if set_bit(bits, id, false) {
                    *len -= 1;
                }
                if *len == 0 {
                    *self = Self::default();
                }
            }
        }
    }

    /// The number of identifiers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few(ids) => ids.len(),
            Self::Many { len, .. } => *len,
        }
    }
}

/// Sets bit `id` of `bits` to `value`; returns what it was.
fn set_bit(bits: &mut [u64], id: u16, value: bool) -> bool {
    let mask = 1_u64 << (id % 64);
    let Some(word) = bits.get_mut(usize::from(id / 64)) else {
        return false;
    };
    let was = *word & mask != 0;
    if value {
        *word |= mask;
    } else {
        *word &= !mask;
    }
    was
}

/// The Session Expiry Interval that means "never".
pub(crate) const NEVER_EXPIRES: u32 = u32::MAX;

impl Session {
    pub(crate) fn new(client_id: &str, expiry_interval: u32) -> Self {
        Self {
            client_id: Arc::from(client_id),
            expiry_interval,
            username: None,
            subscriptions: BTreeMap::new(),
            outbound: VecDeque::new(),
            next_seq: 1,
            inflight: 0,
            queued_count: 0,
            queued_bytes: 0,
            queued_qos0: 0,
            packet_ids_in_use: PacketIds::default(),
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
        self.packet_ids_in_use.remove(id.get());
    }

    /// Adds a message to the queue, accounting for it.
    #[inline]
    pub(crate) fn push_queued(&mut self, out: Outbound) {
        self.queued_count += 1;
        self.queued_bytes += out.message.size();
        if out.qos == QoS::AtMostOnce {
            self.queued_qos0 += 1;
        }
        self.next_seq = self.next_seq.max(out.seq + 1);
        self.outbound.push_back(out);
    }

    /// Removes the outbound message at `index`, keeping the accounting right.
    #[inline]
    pub(crate) fn remove_at(&mut self, index: usize) -> Option<Outbound> {
        // The front is the usual case (a QoS 0 message sent, the oldest acknowledged), and
        // `pop_front` costs less than `remove`.
        let out = if index == 0 {
            self.outbound.pop_front()?
        } else {
            self.outbound.remove(index)?
        };
        match out.state {
            OutState::Queued => {
                self.queued_count = self.queued_count.saturating_sub(1);
                self.queued_bytes = self.queued_bytes.saturating_sub(out.message.size());
                if out.qos == QoS::AtMostOnce {
                    self.queued_qos0 = self.queued_qos0.saturating_sub(1);
                }
            }
            OutState::Sent(id) | OutState::Released(id) => {
                self.inflight = self.inflight.saturating_sub(1);
                self.release_packet_id(id);
            }
        }
        Some(out)
    }

    /// Marks the queued message at `index` as sent with `id`.
    #[inline]
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

    /// Removes the oldest queued QoS 0 message, if there is one (to make room for a QoS 1/2
    /// message in a full queue).
    pub(crate) fn evict_oldest_qos0(&mut self) -> Option<Outbound> {
        if self.queued_qos0 == 0 {
            return None;
        }
        let index = self
            .outbound
            .iter()
            .skip(self.inflight)
            .position(|o| o.qos == QoS::AtMostOnce && o.state == OutState::Queued)?;
        self.remove_at(self.inflight + index)
    }

    pub(crate) fn find_seq(&self, seq: u64) -> Option<usize> {
        self.outbound.iter().position(|o| o.seq == seq)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// Inserts and removes, against a `BTreeSet`: around `FEW_IDS` (so both forms and the
    /// switches between them are exercised) and in any order.
    fn check(ops: &[(bool, u16)]) -> Result<(), TestCaseError> {
        let mut ids = PacketIds::default();
        let mut model = BTreeSet::new();
        for &(insert, id) in ops {
            if insert {
                prop_assert_eq!(ids.insert(id), model.insert(id));
            } else {
                ids.remove(id);
                model.remove(&id);
            }
            prop_assert_eq!(ids.len(), model.len());
        }
        for &(_, id) in ops {
            // Present exactly when the model has it: inserting again says so.
            prop_assert_eq!(ids.insert(id), model.insert(id));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn packet_ids_agree_with_a_set(
            ops in prop::collection::vec((any::<bool>(), 0..1500_u16), 0..4000)
        ) {
            check(&ops)?;
        }

        #[test]
        fn packet_ids_in_and_out_of_order(start in any::<u16>(), n in 1000..1100_usize) {
            // Sequential allocation (wrapping), then acknowledgements oldest first, newest first.
            let mut ops: Vec<(bool, u16)> =
                (0..n).map(|i| (true, start.wrapping_add(i as u16))).collect();
            ops.extend((0..n / 2).map(|i| (false, start.wrapping_add(i as u16))));
            ops.extend((n / 2..n).rev().map(|i| (false, start.wrapping_add(i as u16))));
            check(&ops)?;
        }
    }
}
