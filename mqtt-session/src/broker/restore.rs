//! Rebuilding a broker from its storage records after a restart.

use crate::prelude::*;
use alloc::sync::Arc;

use super::session::{NEVER_EXPIRES, OutState, Outbound, PendingWill, Session, Subscription};
use super::{Broker, BrokerConfig, Policy, StorageRecord, SubValue, Timer};
use crate::time::Timestamp;

impl<P: Policy> Broker<P> {
    /// Rebuilds a broker from the records a previous one emitted, in the order it emitted them,
    /// as of `now`.
    ///
    /// Every session is disconnected (a restart ends every connection): one that was connected
    /// is treated as disconnected at `now`, so its expiry starts now and its will (the
    /// connection did not end with DISCONNECT) is published after its delay; a session whose
    /// expiry interval is 0 ends, publishing its will. Deadlines that were persisted keep their
    /// value. Drain [`Broker::poll_output`] afterwards: ending sessions and publishing wills
    /// produce records and events like any other change.
    pub fn restore(
        config: BrokerConfig,
        policy: P,
        records: impl IntoIterator<Item = StorageRecord>,
        now: Timestamp,
    ) -> Self {
        let mut broker = Self::with_policy(config, policy);
        // Disconnection time per session, when it was recorded.
        let mut disconnected: alloc::collections::BTreeMap<String, Option<Timestamp>> =
            alloc::collections::BTreeMap::new();
        for record in records {
            broker.apply(record, &mut disconnected);
        }
        // Sorted: the sessions map is a hash map, and what follows (wills published, records)
        // must not depend on its order.
        let mut clients: Vec<String> = broker.sessions.keys().map(str::to_owned).collect();
        clients.sort_unstable();
        // First rebuild every session's derived state (in-flight count, packet identifiers,
        // subscriptions), so that wills published below reach every subscriber.
        for client_id in &clients {
            let Some((slot, session)) = broker.sessions.get_mut_with_slot(client_id) else {
                continue;
            };
            for out in &session.outbound {
                if let OutState::Sent(id) | OutState::Released(id) = out.state {
                    session.packet_ids_in_use.insert(id.get());
                }
            }
            session.inflight = session
                .outbound
                .iter()
                .filter(|o| o.state != OutState::Queued)
                .count();
            for (filter, sub) in &session.subscriptions {
                let (key, inner) = Self::tree_key(Arc::clone(&session.client_id), filter);
                let value = SubValue {
                    options: sub.options,
                    subscription_id: sub.subscription_id,
                    slot: Some(slot),
                };
                broker.tree.insert(inner, key, value);
            }
        }
        // Then every session is disconnected: expiry, wills.
        for client_id in clients {
            let at = disconnected.get(&client_id).copied().flatten();
            let Some(session) = broker.sessions.get_mut(&client_id) else {
                continue;
            };
            let expiry = session.expiry_interval;
            let was_connected = at.is_none();
            let since = at.unwrap_or(now);
            // The will: a scheduled one keeps its time; one whose connection was cut by the
            // restart is scheduled from now.
            if let Some(will) = session.will.as_mut()
                && will.due.is_none()
                && was_connected
            {
                will.due = Some(now.plus_secs(u64::from(will.delay)));
            }
            let will_due = session.will.as_ref().and_then(|w| w.due);
            if expiry == 0 {
                broker.end_session(&client_id, now);
                continue;
            }
            if expiry != NEVER_EXPIRES {
                let expires = since.plus_secs(u64::from(expiry));
                if let Some(s) = broker.sessions.get_mut(&client_id) {
                    s.expires_at = Some(expires);
                }
                broker.arm(expires, Timer::SessionExpiry(client_id.clone()));
            }
            if let Some(due) = will_due {
                broker.arm(due, Timer::Will(client_id.clone()));
            }
            if was_connected {
                broker.persist(StorageRecord::SessionDisconnected {
                    client_id: client_id.clone(),
                    at: now,
                    expiry_interval: expiry,
                });
                // The will's new due time must survive the next restart too.
                if let Some(at) = will_due {
                    broker.persist(StorageRecord::WillScheduled {
                        client_id: client_id.clone(),
                        at,
                    });
                }
            }
        }
        broker.handle_timeout(now);
        broker
    }

    fn apply(
        &mut self,
        record: StorageRecord,
        disconnected: &mut alloc::collections::BTreeMap<String, Option<Timestamp>>,
    ) {
        match record {
            StorageRecord::Session {
                client_id,
                expiry_interval,
                username,
            } => {
                if let Some(session) = self
                    .sessions
                    .get_or_insert_with(&client_id, || Session::new(&client_id, expiry_interval))
                {
                    session.expiry_interval = expiry_interval;
                    session.username = username.map(Arc::from);
                }
                disconnected.insert(client_id, None);
            }
            StorageRecord::SessionConnected { client_id } => {
                disconnected.insert(client_id, None);
            }
            StorageRecord::SessionDisconnected {
                client_id,
                at,
                expiry_interval,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.expiry_interval = expiry_interval;
                }
                disconnected.insert(client_id, Some(at));
            }
            StorageRecord::SessionEnded { client_id } => {
                self.sessions.remove(&client_id);
                disconnected.remove(&client_id);
            }
            StorageRecord::Subscribed {
                client_id,
                filter,
                options,
                subscription_id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.subscriptions.insert(
                        filter,
                        Subscription {
                            options,
                            subscription_id,
                        },
                    );
                }
            }
            StorageRecord::Unsubscribed { client_id, filter } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.subscriptions.remove(&filter);
                }
            }
            StorageRecord::Queued {
                client_id,
                seq,
                message,
                qos,
                retain,
                subscription_ids,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.push_queued(Outbound {
                        seq,
                        message,
                        qos,
                        retain,
                        subscription_ids,
                        state: OutState::Queued,
                    });
                }
            }
            StorageRecord::Sent {
                client_id,
                seq,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id)
                    && let Some(i) = s.find_seq(seq)
                {
                    s.mark_sent(i, packet_id);
                    // mark_sent counted it in flight; the count is rebuilt at the end.
                }
            }
            StorageRecord::Released { client_id, seq } => {
                if let Some(o) = self
                    .sessions
                    .get_mut(&client_id)
                    .and_then(|s| s.find_seq(seq).and_then(|i| s.outbound.get_mut(i)))
                    && let OutState::Sent(id) = o.state
                {
                    o.state = OutState::Released(id);
                }
            }
            StorageRecord::Delivered { client_id, seq } => {
                if let Some(s) = self.sessions.get_mut(&client_id)
                    && let Some(i) = s.find_seq(seq)
                {
                    s.remove_at(i);
                }
            }
            StorageRecord::IncomingQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.incoming_qos2.insert(packet_id);
                }
            }
            StorageRecord::IncomingQos2Released {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.incoming_qos2.remove(&packet_id);
                }
            }
            StorageRecord::Will {
                client_id,
                message,
                delay,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.will = Some(PendingWill {
                        message: Arc::from(message),
                        delay,
                        due: None,
                    });
                }
            }
            StorageRecord::WillScheduled { client_id, at } => {
                if let Some(w) = self
                    .sessions
                    .get_mut(&client_id)
                    .and_then(|s| s.will.as_mut())
                {
                    w.due = Some(at);
                }
            }
            StorageRecord::WillCleared { client_id } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.will = None;
                }
            }
            StorageRecord::Retained { message } => {
                self.retained
                    .insert(message.topic.clone(), Arc::from(message));
            }
            StorageRecord::RetainedCleared { topic } => {
                self.retained.retain(|t, _| t.as_utf8().as_str() != topic);
            }
        }
    }
}

impl<P: Policy> Broker<P> {
    /// The records that rebuild the broker's current durable state, and nothing else: a host
    /// can replace its record log with them (compaction). [`Broker::restore`] of a snapshot
    /// behaves as `restore` of the full log would.
    ///
    /// Take it only with the outputs drained: records still waiting in [`Broker::poll_output`]
    /// are already part of the snapshot, and appending them after it would apply them twice.
    #[must_use]
    pub fn snapshot(&self) -> Vec<StorageRecord> {
        debug_assert!(
            !self
                .out
                .queue
                .iter()
                .any(|p| matches!(p, super::Pending::Persist(..))),
            "snapshot taken with persist records not yet drained"
        );
        let mut out = Vec::new();
        for (topic, message) in &self.retained {
            if self.volatile_retained.contains(topic) {
                continue;
            }
            out.push(StorageRecord::Retained {
                message: Box::new((**message).clone()),
            });
        }
        // In Client Identifier order: the map is a hash map, and the snapshot must not depend
        // on its order.
        let mut sessions: Vec<(&str, &Session)> = self.sessions.iter().collect();
        sessions.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (client_id, s) in sessions {
            let id = || client_id.to_owned();
            out.push(StorageRecord::Session {
                client_id: id(),
                expiry_interval: s.expiry_interval,
                username: s.username.as_deref().map(str::to_owned),
            });
            if let Some(w) = &s.will {
                out.push(StorageRecord::Will {
                    client_id: id(),
                    message: Box::new((*w.message).clone()),
                    delay: w.delay,
                });
                if let Some(at) = w.due {
                    out.push(StorageRecord::WillScheduled {
                        client_id: id(),
                        at,
                    });
                }
            }
            if !s.is_durable() {
                continue;
            }
            for (filter, sub) in &s.subscriptions {
                out.push(StorageRecord::Subscribed {
                    client_id: id(),
                    filter: filter.clone(),
                    options: sub.options,
                    subscription_id: sub.subscription_id,
                });
            }
            for o in s
                .outbound
                .iter()
                .filter(|o| o.qos != mqtt_codec::QoS::AtMostOnce)
            {
                out.push(StorageRecord::Queued {
                    client_id: id(),
                    seq: o.seq,
                    message: Arc::clone(&o.message),
                    qos: o.qos,
                    retain: o.retain,
                    subscription_ids: o.subscription_ids.clone(),
                });
                if let OutState::Sent(packet_id) | OutState::Released(packet_id) = o.state {
                    out.push(StorageRecord::Sent {
                        client_id: id(),
                        seq: o.seq,
                        packet_id,
                    });
                }
                if let OutState::Released(_) = o.state {
                    out.push(StorageRecord::Released {
                        client_id: id(),
                        seq: o.seq,
                    });
                }
            }
            for &packet_id in &s.incoming_qos2 {
                out.push(StorageRecord::IncomingQos2 {
                    client_id: id(),
                    packet_id,
                });
            }
            if s.connection.is_none() {
                // Restore computes the expiry as `at + expiry_interval`.
                let at = s.expires_at.map_or(Timestamp::ZERO, |e| {
                    Timestamp::from_millis(
                        e.as_millis()
                            .saturating_sub(u64::from(s.expiry_interval) * 1000),
                    )
                });
                out.push(StorageRecord::SessionDisconnected {
                    client_id: id(),
                    at,
                    expiry_interval: s.expiry_interval,
                });
            }
        }
        out
    }
}
