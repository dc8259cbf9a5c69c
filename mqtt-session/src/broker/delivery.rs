//! PUBLISH in and out: QoS 0/1/2 flows, topic aliases, retained messages, routing to
//! subscriptions (shared ones included), the outbound queue and flow control; SUBSCRIBE and
//! UNSUBSCRIBE.

use crate::hash::HashMap;
use crate::prelude::*;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::cmp::Ordering;
use hashbrown::hash_map::Entry;

use bytes::BytesMut;
use mqtt_codec::Packet;
use mqtt_codec::{
    PacketId, Properties, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, TopicFilter, UnsubAck, Unsubscribe,
};

use super::message::Message;
use super::session::{OutState, Outbound, Session, Subscription};
use super::{
    Broker, BrokerConfig, BrokerEvent, Connection, ConnectionId, DropReason, Outputs, Policy,
    StorageRecord, SubKey, SubValue, Timer, arm_in, encode, notify, update_reading,
};
use crate::time::Timestamp;

/// One delivery a published message makes to a session.
struct Delivery {
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
    /// Where the session is, as the subscription remembers it (`SubValue::slot`).
    slot: Option<usize>,
}

impl<P: Policy> Broker<P> {
    /// The key and the filter (without `$share/{ShareName}/`) of a subscription in the tree.
    /// `client_id`: the session's own `Arc` when there is one, so that its subscriptions share
    /// it.
    pub(super) fn tree_key(client_id: Arc<str>, filter: &str) -> (SubKey, &str) {
        match filter
            .strip_prefix("$share/")
            .and_then(|r| r.split_once('/'))
        {
            Some((group, inner)) => (
                SubKey {
                    client_id,
                    share_group: Some(group.to_owned()),
                },
                inner,
            ),
            None => (
                SubKey {
                    client_id,
                    share_group: None,
                },
                filter,
            ),
        }
    }

    // ---- incoming PUBLISH -----------------------------------------------------------------

    pub(super) fn handle_client_publish(
        &mut self,
        connection: ConnectionId,
        mut p: Publish,
        now: Timestamp,
    ) {
        self.out.stats.publish_received += 1;
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        let v5 = conn.version.is_v5();
        let Some(client_id) = conn.client_id.clone() else {
            return;
        };
        let username = conn.username.clone();

        // Topic Alias (section 3.3.2.3.4): 0 or above our maximum is a Protocol Error (0x94);
        // an alias with a topic sets the mapping, an alias alone uses it. [MQTT-3.3.2-12]
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias.get() > self.config.topic_alias_maximum {
                self.fail(connection, ReasonCode::TOPIC_ALIAS_INVALID, None, now);
                return;
            }
            if p.topic.is_empty() {
                match conn
                    .extras
                    .as_ref()
                    .and_then(|e| e.inbound_aliases.get(&alias.get()))
                {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now);
                        return;
                    }
                }
            } else {
                conn.extras()
                    .inbound_aliases
                    .insert(alias.get(), p.topic.clone());
            }
        }
        // v5 [MQTT-3.3.4-6] a PUBLISH from a client carries no Subscription Identifier.
        if p.properties.has_subscription_identifiers() {
            self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        // [MQTT-3.2.2-11] above the Maximum QoS is a Protocol Error (0x9B QoS not supported).
        if p.qos > self.config.maximum_qos {
            self.fail(connection, ReasonCode::QOS_NOT_SUPPORTED, None, now);
            return;
        }
        // [MQTT-3.2.2-14] RETAIN when retain is not available (0x9A).
        if p.retain && !self.config.retain_available {
            self.fail(connection, ReasonCode::RETAIN_NOT_SUPPORTED, None, now);
            return;
        }
        // Receive Maximum (section 3.3.4): more unacknowledged QoS 2 flows than we allow (QoS 1
        // is acknowledged at once) is 0x93.
        if p.qos == QoS::ExactlyOnce {
            let in_flight = self
                .sessions
                .get(&client_id)
                .map_or(0, |s| s.incoming_qos2.len());
            let duplicate = p.packet_id.is_some_and(|id| {
                self.sessions
                    .get(&client_id)
                    .is_some_and(|s| s.incoming_qos2.contains(&id))
            });
            // Only a 5.0 client is told our Receive Maximum (in CONNACK); a 3.1.1 client is
            // bounded by its 65 535 packet identifiers alone.
            if v5 && !duplicate && in_flight >= usize::from(self.config.receive_maximum) {
                self.fail(connection, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, None, now);
                return;
            }
            if duplicate {
                // [MQTT-4.3.3-10] until PUBREL, a PUBLISH with the same Packet Identifier is
                // acknowledged again and not delivered again.
                if let Some(id) = p.packet_id {
                    self.send(connection, &Packet::PubRec(PubRec::new(id)));
                }
                return;
            }
        }

        let authorized = self
            .policy
            .may_publish(&client_id, username.as_deref(), &p.topic);
        if !authorized {
            self.event(BrokerEvent::NotAuthorized {
                client_id: client_id.to_string(),
                action: super::AuthorizationAction::Publish,
                target: p.topic.to_string(),
            });
        }
        let reason = if authorized {
            let expires_at = p
                .properties
                .message_expiry_interval
                .take()
                .map(|s| now.plus_secs(u64::from(s)));
            let message = Message {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties: p.properties.into(),
                publisher: Some(client_id.clone()),
                expires_at,
            };
            // [MQTT-4.5.0-1] ownership taken: added to every matching session.
            if self.accept_message(Arc::new(message), Some(connection), true, now) {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            }
        } else if v5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            // v3.1.1 [MQTT-3.3.5-2]: acknowledge as usual, or close; we acknowledge.
            ReasonCode::SUCCESS
        };
        let reason = if v5 { reason } else { ReasonCode::SUCCESS };
        // [MQTT-3.3.4-1] [MQTT-4.3.2-4] [MQTT-4.3.3-8]: respond as the QoS says, after the
        // records of the routed message (persist, then send).
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let mut ack = PubAck::new(id);
                ack.reason_code = reason;
                self.send(connection, &Packet::PubAck(ack));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let mut rec = PubRec::new(id);
                rec.reason_code = reason;
                if !reason.is_error()
                    && let Some(s) = self.sessions.get_mut(&client_id)
                {
                    s.incoming_qos2.insert(id);
                    if s.is_durable() {
                        self.persist(StorageRecord::IncomingQos2 {
                            client_id: client_id.to_string(),
                            packet_id: id,
                        });
                    }
                }
                // [MQTT-4.3.3-9] after a PUBREC of 0x80 or more, the id is free again.
                self.send(connection, &Packet::PubRec(rec));
            }
            _ => {}
        }
    }

    pub(super) fn handle_pubrel(&mut self, connection: ConnectionId, id: PacketId) {
        let Some(client_id) = self
            .connections
            .get(&connection)
            .and_then(|c| c.client_id.clone())
        else {
            return;
        };
        let mut comp = PubComp::new(id);
        let removed = self
            .sessions
            .get_mut(&client_id)
            .map(|s| (s.incoming_qos2.remove(&id), s.is_durable()));
        let (found, durable) = removed.unwrap_or((false, false));
        if found && durable {
            self.persist(StorageRecord::IncomingQos2Released {
                client_id: client_id.to_string(),
                packet_id: id,
            });
        } else if !found && self.version_of(connection).is_some_and(|v| v.is_v5()) {
            // 5.0: 0x92 Packet Identifier not found. 3.1.1 has no reason codes: a PUBREL for a
            // flow already completed (its PUBCOMP lost) is simply completed again.
            comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        // [MQTT-4.3.3-11] PUBCOMP with the same Packet Identifier.
        self.send(connection, &Packet::PubComp(comp));
    }

    /// Publishes a message from the host itself (`$SYS` topics, a bridge, a test): stored as
    /// retained if its RETAIN flag is set (an empty payload clears the topic's retained
    /// message), and routed to every matching subscription like a client's PUBLISH, with the
    /// read check. Its QoS is capped at `maximum_qos`; a Message Expiry Interval in its
    /// properties starts now. No publisher: No Local never applies, and nobody is slowed.
    /// Returns whether any session matched. (The records and transmits it causes come out of
    /// [`Broker::poll_output`] as usual.)
    pub fn handle_publish(&mut self, message: Message, now: Timestamp) -> bool {
        self.host_publish(message, true, now)
    }

    /// [`handle_publish`](Self::handle_publish) for a message the host makes again after a
    /// restart (statistics such as `$SYS/broker/uptime`): a retained one is kept in memory
    /// only — never persisted, so no storage record is written for it, and not in
    /// [`snapshot`](Self::snapshot). A later durable retained message on the topic replaces it
    /// as usual; a durable one it replaces is cleared from storage.
    pub fn handle_publish_volatile(&mut self, message: Message, now: Timestamp) -> bool {
        self.host_publish(message, false, now)
    }

    fn host_publish(&mut self, message: Message, durable: bool, now: Timestamp) -> bool {
        let mut message = message;
        message.qos = message.qos.min(self.config.maximum_qos);
        message.publisher = None;
        // Taken out and put back: a message without other properties keeps none on the heap.
        let mut properties = core::mem::take(&mut message.properties).into_inner();
        if let Some(secs) = properties.message_expiry_interval.take() {
            message.expires_at = Some(now.plus_secs(u64::from(secs)));
        }
        message.properties = properties.into();
        self.accept_message(Arc::new(message), None, durable, now)
    }

    /// Stores a retained message if asked and routes the message to every matching
    /// subscription. `from`: the publisher's connection (slowed when a subscriber that is
    /// behind gets the message). Returns whether any session matched.
    pub(super) fn accept_message(
        &mut self,
        message: Arc<Message>,
        from: Option<ConnectionId>,
        durable: bool,
        now: Timestamp,
    ) -> bool {
        if message.retain {
            // Whether storage holds a retained message for the topic now.
            let stored = self.retained.contains_key(&message.topic)
                && !self.volatile_retained.contains(&message.topic);
            if message.payload.is_empty() {
                // [MQTT-3.3.1-6] [MQTT-3.3.1-7] an empty retained message removes the retained
                // message of the topic and is not stored.
                self.retained.remove(&message.topic);
                self.volatile_retained.remove(&message.topic);
                if stored {
                    self.persist(StorageRecord::RetainedCleared {
                        topic: message.topic.to_string(),
                    });
                }
            } else {
                // [MQTT-3.3.1-5] replace the retained message of the topic.
                if durable {
                    self.persist(StorageRecord::Retained {
                        message: Box::new((*message).clone()),
                    });
                    self.volatile_retained.remove(&message.topic);
                } else {
                    if stored {
                        self.persist(StorageRecord::RetainedCleared {
                            topic: message.topic.to_string(),
                        });
                    }
                    self.volatile_retained.insert(message.topic.clone());
                }
                self.retained
                    .insert(message.topic.clone(), Arc::clone(&message));
            }
        }
        self.route(message, from, now)
    }

    /// Delivers `message` to every matching session: one copy per session, at the highest QoS
    /// of its matching subscriptions [MQTT-3.3.4-2], with all their Subscription Identifiers
    /// [MQTT-3.3.4-3] [MQTT-3.3.4-4]; one member of each share group [MQTT-4.8.2-3].
    fn route(&mut self, message: Arc<Message>, from: Option<ConnectionId>, now: Timestamp) -> bool {
        // One entry per matching subscription, in the tree's (deterministic) order. A session
        // appears more than once only when several of its filters match, which needs several
        // matching filters: only then are the entries merged.
        let mut direct: Vec<(Arc<str>, Delivery)> = Vec::new();
        // Where the entries of each matching filter start in `direct`: `run_start` for the
        // current filter, `runs` for the earlier ones (so nothing is allocated for one filter).
        let mut runs: Vec<usize> = Vec::new();
        let mut run_start = 0_usize;
        let mut last_filter: Option<&str> = None;
        let mut shared: BTreeMap<(String, String), Vec<(String, SubValue)>> = BTreeMap::new();
        let publisher = message.publisher.as_deref();
        self.tree
            .for_each_match(&message.topic, |filter, key, value| {
                match &key.share_group {
                    None => {
                        // [MQTT-3.8.3-3] No Local: not to the publisher's own connection.
                        if value.options.no_local && publisher == Some(&*key.client_id) {
                            return;
                        }
                        if last_filter.is_none_or(|f| !core::ptr::eq(f, filter)) {
                            if last_filter.is_some() {
                                runs.push(run_start);
                            }
                            run_start = direct.len();
                            last_filter = Some(filter);
                        }
                        direct.push((
                            Arc::clone(&key.client_id),
                            Delivery {
                                qos: value.options.qos,
                                // [MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published.
                                retain: value.options.retain_as_published && message.retain,
                                subscription_ids: value.subscription_id.into_iter().collect(),
                                slot: value.slot,
                            },
                        ));
                    }
                    Some(group) => {
                        shared
                            .entry((group.clone(), filter.to_owned()))
                            .or_default()
                            .push((key.client_id.to_string(), *value));
                    }
                }
            });
        if !runs.is_empty() {
            runs.push(run_start);
            merge_duplicates(&mut direct, &runs);
        }
        let mut matched = !direct.is_empty() || !shared.is_empty();
        for (client_id, mut d) in direct {
            // [MQTT-3.8.4-8] the minimum of the published QoS and the granted QoS.
            d.qos = d.qos.min(message.qos);
            self.enqueue(&client_id, Some(&client_id), &message, d, from, now);
        }
        for (group_key, members) in shared {
            // Round robin over the connected members, falling back to any member; only members
            // that pass the read check are candidates [MQTT-4.8.2-3] (the message goes to one
            // session that may receive it, or to none).
            let members: Vec<(String, SubValue)> = members
                .into_iter()
                .filter(|(c, _)| self.may_receive(c, &message.topic))
                .collect();
            let connected: Vec<&(String, SubValue)> = members
                .iter()
                .filter(|(c, _)| self.is_connected(c))
                .collect();
            let pool: Vec<&(String, SubValue)> = if connected.is_empty() {
                members.iter().collect()
            } else {
                connected
            };
            let counter = self.shared_round_robin.entry(group_key).or_insert(0);
            let Some((client_id, value)) =
                pool.get((*counter as usize) % pool.len().max(1)).copied()
            else {
                continue;
            };
            *counter = counter.wrapping_add(1);
            let d = Delivery {
                qos: value.options.qos.min(message.qos),
                retain: value.options.retain_as_published && message.retain,
                subscription_ids: value.subscription_id.into_iter().collect(),
                slot: None,
            };
            let client_id = client_id.clone();
            self.enqueue(&client_id, None, &message, d, from, now);
            matched = true;
        }
        matched
    }

    /// The policy's read check for the session of `client_id` (false when it has none).
    fn may_receive(&mut self, client_id: &str, topic: &str) -> bool {
        let Self {
            sessions, policy, ..
        } = self;
        sessions
            .get(client_id)
            .is_some_and(|s| policy.may_receive(client_id, s.username.as_deref(), topic))
    }

    /// Adds a message to a session's outbound queue (subject to its limits, to the policy's
    /// read check and to the slow-consumer policy) and tells the host when its connection can
    /// send it. `from`: the publisher's connection, slowed if the session's connection is over
    /// its backlog and still draining. `owner`: the session's own `client_id` `Arc`, when the
    /// caller has it (with `d.slot`, it finds the session without hashing).
    fn enqueue(
        &mut self,
        client_id: &str,
        owner: Option<&Arc<str>>,
        message: &Arc<Message>,
        d: Delivery,
        from: Option<ConnectionId>,
        now: Timestamp,
    ) {
        // One lookup of the session, for the read check, queueing and sending.
        let Self {
            sessions,
            connections,
            out: pending,
            config,
            policy,
            timers,
            ..
        } = self;
        let Some(session) = sessions.get_mut_hinted(client_id, d.slot.zip(owner)) else {
            return;
        };
        // The read check, on every delivery: a subscription wider than what the client may
        // read is granted, and what it may not read is withheld here.
        if !policy.may_receive(client_id, session.username.as_deref(), &message.topic) {
            return;
        }
        let online = session.connection;
        if d.qos == QoS::AtMostOnce && online.is_none() && !config.queue_qos0_when_offline {
            return;
        }
        let mut conn = online.and_then(|c| connections.get_mut(&c).map(|conn| (c, conn)));
        if let Some((_, conn)) = &mut conn
            && conn.stuck_since.is_some()
            && d.qos == QoS::AtMostOnce
        {
            // A stuck subscriber: QoS 0 is dropped, counted, and reported once per run.
            conn.dropped_qos0 += 1;
            if !conn.drop_reported {
                conn.drop_reported = true;
                pending.event(BrokerEvent::MessageDropped {
                    client_id: client_id.to_owned(),
                    topic: message.topic.clone(),
                    reason: DropReason::SlowConsumer,
                });
            }
            return;
        }
        let full = |s: &Session| {
            s.queued_count >= config.max_queued_messages
                || s.queued_bytes + message.size() > config.max_queued_bytes
        };
        // A QoS 1/2 message takes the place of queued QoS 0 ones (at most once, the first to
        // go) before it is dropped itself.
        while d.qos != QoS::AtMostOnce && full(session) {
            let Some(evicted) = session.evict_oldest_qos0() else {
                break;
            };
            pending.event(BrokerEvent::MessageDropped {
                client_id: client_id.to_owned(),
                topic: evicted.message.topic.clone(),
                reason: DropReason::QueueFull,
            });
        }
        if full(session) {
            pending.event(BrokerEvent::MessageDropped {
                client_id: client_id.to_owned(),
                topic: message.topic.clone(),
                reason: DropReason::QueueFull,
            });
            return;
        }
        let seq = session.next_seq;
        if session.is_durable() && d.qos != QoS::AtMostOnce {
            pending.persist(StorageRecord::Queued {
                client_id: client_id.to_owned(),
                seq,
                message: Arc::clone(message),
                qos: d.qos,
                retain: d.retain,
                subscription_ids: d.subscription_ids.clone(),
            });
        }
        session.push_queued(Outbound {
            seq,
            message: Arc::clone(message),
            qos: d.qos,
            retain: d.retain,
            subscription_ids: d.subscription_ids,
            state: OutState::Queued,
        });
        let Some((connection, conn)) = conn else {
            return;
        };
        if has_sendable(session, conn, config) {
            notify(pending, connection, conn);
        }
        // The slow-consumer policy (docs/design/engine-io.md).
        let backlog = conn.outbox_bytes + super::backlog::queued_backlog(session);
        if backlog <= config.max_connection_backlog {
            return;
        }
        if conn.over_backlog_since.is_none() {
            conn.over_backlog_since = Some(now);
            let at = now.plus_millis(config.stuck_after_ms);
            arm_in(timers, conn, at, Timer::Stuck(connection));
        }
        let Some(publisher) = from.filter(|p| *p != connection) else {
            return;
        };
        if conn.stuck_since.is_some() || conn.pausing.contains(&publisher) {
            return;
        }
        conn.pausing.push(publisher);
        if let Some(p) = connections.get_mut(&publisher) {
            p.paused_by += 1;
            update_reading(pending, publisher, p);
        }
    }

    /// On session resume: PUBLISH again (DUP) what awaits PUBACK/PUBREC, PUBREL what awaits
    /// PUBCOMP, in the original order [MQTT-4.4.0-1] [MQTT-4.6.0-1], encoded into `bytes`.
    pub(super) fn resend_inflight(
        &mut self,
        client_id: &str,
        connection: ConnectionId,
        bytes: &mut BytesMut,
        now: Timestamp,
    ) {
        let Self {
            sessions,
            connections,
            out: pending,
            ..
        } = self;
        let (Some(session), Some(conn)) =
            (sessions.get(client_id), connections.get_mut(&connection))
        else {
            return;
        };
        // The messages too large for this connection's Maximum Packet Size.
        let mut too_large = Vec::new();
        for out in session
            .outbound
            .iter()
            .filter(|o| o.state != OutState::Queued)
        {
            match out.state {
                OutState::Sent(id) => {
                    if !publish_to(bytes, pending, conn, client_id, out, Some(id), true, now) {
                        too_large.push(out.seq);
                    }
                }
                OutState::Released(id) => {
                    encode(conn, &Packet::PubRel(PubRel::new(id)), bytes);
                }
                OutState::Queued => {}
            }
        }
        for seq in too_large {
            // [MQTT-3.1.2-25] discarded as if sent and acknowledged, freeing its send quota.
            self.complete_outbound(client_id, seq);
        }
    }

    /// Removes the outbound message `seq` as done (acknowledged, expired, discarded), with its
    /// record for a durable session.
    fn complete_outbound(&mut self, client_id: &str, seq: u64) -> Option<Outbound> {
        let session = self.sessions.get_mut(client_id)?;
        complete_in(session, client_id, seq, &mut self.out)
    }

    /// Completes the outbound message `seq` (acknowledged, or refused with an error code) and
    /// tells the host when the freed send quota lets more go, with one lookup of the session.
    fn settle(&mut self, client_id: &Arc<str>, slot: usize, seq: u64) {
        let Self {
            sessions,
            connections,
            out: pending,
            config,
            ..
        } = self;
        let Some(session) = sessions.get_mut_hinted(client_id, Some((slot, client_id))) else {
            return;
        };
        complete_in(session, client_id, seq, pending);
        notify_session(session, connections, pending, config);
    }

    // ---- acknowledgements of outgoing messages ----------------------------------------------

    /// The session of `connection` (its Client Identifier, shared rather than copied, and its
    /// slot: found again without hashing) and the sequence number of its in-flight message with
    /// Packet Identifier `id`, when that message is in a state `expected` accepts.
    fn inflight_for_ack(
        &self,
        connection: ConnectionId,
        id: PacketId,
        expected: fn(OutState, QoS) -> bool,
    ) -> Option<(Arc<str>, usize, u64)> {
        let conn = self.connections.get(&connection)?;
        let client_id = conn.client_id.as_deref()?;
        let (slot, session) = self
            .sessions
            .get_cached(client_id, conn.session_ref.as_ref())?;
        let out = session.outbound.get(session.find_inflight(id)?)?;
        expected(out.state, out.qos).then(|| (Arc::clone(&session.client_id), slot, out.seq))
    }

    pub(super) fn handle_puback(
        &mut self,
        connection: ConnectionId,
        id: PacketId,
        _reason: ReasonCode,
    ) {
        // [MQTT-4.3.2-3] unacknowledged until PUBACK; [MQTT-4.4.0-2] an error code also ends it.
        let expected = |state, qos| matches!((state, qos), (OutState::Sent(_), QoS::AtLeastOnce));
        let Some((client_id, slot, seq)) = self.inflight_for_ack(connection, id, expected) else {
            return;
        };
        self.settle(&client_id, slot, seq);
    }

    pub(super) fn handle_pubrec(
        &mut self,
        connection: ConnectionId,
        id: PacketId,
        reason: ReasonCode,
    ) {
        let expected = |state, qos| matches!((state, qos), (OutState::Sent(_), QoS::ExactlyOnce));
        let Some((client_id, slot, seq)) = self.inflight_for_ack(connection, id, expected) else {
            // A PUBREC for a flow we do not have: answer PUBREL 0x92 (5.0).
            let mut rel = PubRel::new(id);
            if self.version_of(connection).is_some_and(|v| v.is_v5()) {
                rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            }
            self.send(connection, &Packet::PubRel(rel));
            return;
        };
        if reason.is_error() {
            // [MQTT-4.4.0-2] [MQTT-4.8.2-6] treated as acknowledged; not retransmitted.
            self.settle(&client_id, slot, seq);
            return;
        }
        // [MQTT-4.3.3-4] PUBREL with the same Packet Identifier; [MQTT-4.3.3-6] the PUBLISH is
        // not sent again.
        let Some(session) = self
            .sessions
            .get_mut_hinted(&client_id, Some((slot, &client_id)))
        else {
            return;
        };
        let durable = session.is_durable();
        if let Some(o) = session
            .find_seq(seq)
            .and_then(|i| session.outbound.get_mut(i))
        {
            o.state = OutState::Released(id);
        }
        if durable {
            self.persist(StorageRecord::Released {
                client_id: client_id.to_string(),
                seq,
            });
        }
        self.send(connection, &Packet::PubRel(PubRel::new(id)));
    }

    pub(super) fn handle_pubcomp(&mut self, connection: ConnectionId, id: PacketId) {
        // [MQTT-4.3.3-5] the PUBREL is unacknowledged until PUBCOMP.
        let expected = |state, _| matches!(state, OutState::Released(_));
        let Some((client_id, slot, seq)) = self.inflight_for_ack(connection, id, expected) else {
            return;
        };
        self.settle(&client_id, slot, seq);
    }

    // ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------

    pub(super) fn handle_subscribe(
        &mut self,
        connection: ConnectionId,
        s: Subscribe,
        now: Timestamp,
    ) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let v5 = conn.version.is_v5();
        let Some(client_id) = conn.client_id.clone() else {
            return;
        };
        let username = conn.username.clone();
        let subscription_id = s.properties.subscription_identifier();
        if subscription_id.is_some() && !self.config.subscription_identifiers_available {
            self.fail(
                connection,
                ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                None,
                now,
            );
            return;
        }
        let durable = self
            .sessions
            .get(&client_id)
            .is_some_and(|s| s.is_durable());
        let mut reason_codes = Vec::with_capacity(s.filters.len());
        let mut retained_to_send: Vec<(Arc<Message>, QoS, Option<u32>)> = Vec::new();
        // [MQTT-3.8.4-5] as if each filter came in its own SUBSCRIBE; one SUBACK.
        for (filter, options) in &s.filters {
            let shared = filter.shared().is_some();
            let refuse = |code: ReasonCode| {
                if v5 {
                    code
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                }
            };
            let code = if !self
                .policy
                .may_subscribe(&client_id, username.as_deref(), filter)
            {
                self.event(BrokerEvent::NotAuthorized {
                    client_id: client_id.to_string(),
                    action: super::AuthorizationAction::Subscribe,
                    target: filter.to_string(),
                });
                refuse(ReasonCode::NOT_AUTHORIZED)
            } else if filter.has_wildcards() && !self.config.wildcard_subscription_available {
                refuse(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
            } else if shared && !self.config.shared_subscription_available {
                refuse(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            } else {
                let granted = options.qos.min(self.config.maximum_qos);
                let mut options = *options;
                options.qos = granted;
                let existed = self.subscribe(&client_id, filter, options, subscription_id, durable);
                // [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] retained messages as Retain
                // Handling says; none for a shared subscription (section 4.8.2).
                let send_retained = !shared
                    && match options.retain_handling {
                        RetainHandling::SendAtSubscribe => true,
                        RetainHandling::SendIfNew => !existed,
                        RetainHandling::DoNotSend => false,
                    };
                if send_retained {
                    for m in self.retained.values() {
                        if crate::topic_match::matches(filter, &m.topic) {
                            retained_to_send.push((Arc::clone(m), granted, subscription_id));
                        }
                    }
                }
                // [MQTT-3.8.4-7] the granted QoS.
                match granted {
                    QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                    QoS::AtLeastOnce => ReasonCode::GRANTED_QOS_1,
                    QoS::ExactlyOnce => ReasonCode::GRANTED_QOS_2,
                }
            };
            reason_codes.push(code);
        }
        // [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.9.3-1] SUBACK with the same Packet Identifier
        // and a reason code per filter, in order [MQTT-3.8.4-6].
        let ack = SubAck {
            packet_id: s.packet_id,
            properties: Properties::default(),
            reason_codes,
        };
        self.send(connection, &Packet::SubAck(ack));
        for (m, granted, sub_id) in retained_to_send {
            if m.is_expired(now) {
                continue;
            }
            // [MQTT-3.3.1-8] (3.1.1) RETAIN 1 for messages sent because of a new subscription.
            let d = Delivery {
                qos: m.qos.min(granted),
                retain: true,
                subscription_ids: sub_id.into_iter().collect(),
                slot: None,
            };
            self.enqueue(&client_id, None, &m, d, None, now);
        }
    }

    /// Adds or replaces a subscription [MQTT-3.8.4-3]; returns whether it existed.
    fn subscribe(
        &mut self,
        client_id: &str,
        filter: &TopicFilter,
        options: mqtt_codec::SubscriptionOptions,
        subscription_id: Option<u32>,
        durable: bool,
    ) -> bool {
        let (owner, slot, existed) = match self.sessions.get_mut_with_slot(client_id) {
            Some((slot, s)) => {
                let previous = s.subscriptions.insert(
                    filter.to_string(),
                    Subscription {
                        options,
                        subscription_id,
                    },
                );
                (Arc::clone(&s.client_id), Some(slot), previous.is_some())
            }
            None => (Arc::from(client_id), None, false),
        };
        let (key, inner) = Self::tree_key(owner, filter);
        self.tree.insert(
            inner,
            key,
            SubValue {
                options,
                subscription_id,
                slot,
            },
        );
        if durable {
            self.persist(StorageRecord::Subscribed {
                client_id: client_id.to_owned(),
                filter: filter.to_string(),
                options,
                subscription_id,
            });
        }
        existed
    }

    pub(super) fn handle_unsubscribe(&mut self, connection: ConnectionId, u: Unsubscribe) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let v5 = conn.version.is_v5();
        let Some(client_id) = conn.client_id.clone() else {
            return;
        };
        let durable = self
            .sessions
            .get(&client_id)
            .is_some_and(|s| s.is_durable());
        let mut reason_codes = Vec::with_capacity(u.filters.len());
        // [MQTT-3.10.4-1] compared character by character; [MQTT-3.10.4-6] one UNSUBACK.
        for filter in &u.filters {
            let removed = self.sessions.get_mut(&client_id).and_then(|s| {
                s.subscriptions
                    .remove(filter.as_utf8().as_str())
                    .map(|_| Arc::clone(&s.client_id))
            });
            if let Some(owner) = &removed {
                // [MQTT-3.10.4-2] no new messages for it; in-flight ones complete [MQTT-3.10.4-3].
                let (key, inner) = Self::tree_key(Arc::clone(owner), filter);
                self.tree.remove(inner, &key);
                if durable {
                    self.persist(StorageRecord::Unsubscribed {
                        client_id: client_id.to_string(),
                        filter: filter.to_string(),
                    });
                }
            }
            reason_codes.push(if removed.is_some() {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        if !v5 {
            reason_codes.clear();
        }
        // [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK with the same Packet Identifier, always.
        let ack = UnsubAck {
            packet_id: u.packet_id,
            properties: Properties::default(),
            reason_codes,
        };
        self.send(connection, &Packet::UnsubAck(ack));
    }
}

/// Says `TransmitReady` for `session`'s connection when it has a queued message to send now.
pub(super) fn notify_session(
    session: &Session,
    connections: &mut HashMap<ConnectionId, Box<Connection>>,
    out: &mut Outputs,
    config: &BrokerConfig,
) {
    if let Some(connection) = session.connection
        && let Some(conn) = connections.get_mut(&connection)
        && has_sendable(session, conn, config)
    {
        notify(out, connection, conn);
    }
}

/// Whether `session` (connected on `conn`) has a queued message its send quota lets go now.
#[inline]
pub(super) fn has_sendable(session: &Session, conn: &Connection, config: &BrokerConfig) -> bool {
    let window = usize::from(conn.client_receive_maximum.min(config.max_inflight)).max(1);
    // The queued messages follow the ones in flight (see `pump_session`).
    session
        .outbound
        .get(session.inflight)
        .is_some_and(|o| o.qos == QoS::AtMostOnce || session.inflight < window)
}

/// Encodes the queued messages of `session` (connected on `conn`) into `bytes` (after what it
/// holds) while the send quota allows: at most min(client's Receive Maximum, our max in
/// flight) QoS 1/2 messages unacknowledged [MQTT-3.3.4-9] [MQTT-4.9.0-2], until `bytes` holds
/// `budget` bytes or more. Expired messages are dropped [MQTT-3.3.2-5]. Records and events go
/// to the output queue.
pub(super) fn pump_session(
    session: &mut Session,
    conn: &mut Connection,
    pending: &mut Outputs,
    config: &BrokerConfig,
    bytes: &mut BytesMut,
    budget: usize,
    now: Timestamp,
) {
    let window = usize::from(conn.client_receive_maximum.min(config.max_inflight)).max(1);
    let durable = session.is_durable();
    // The messages in flight are the front of the queue: messages are sent in queue order,
    // and sending stops at the first one the quota holds back. So the scan starts after
    // them, and a session with many messages in flight does not rescan them each time.
    debug_assert!(
        session
            .outbound
            .iter()
            .enumerate()
            .all(|(i, o)| (i < session.inflight) == (o.state != OutState::Queued)),
        "in-flight messages are not the front of the queue"
    );
    let mut index = session.inflight;
    while let Some(out) = session.outbound.get(index) {
        if bytes.len() >= budget {
            break;
        }
        if out.state != OutState::Queued {
            index += 1;
            continue;
        }
        if out.message.is_expired(now) {
            if let Some(out) = session.remove_at(index) {
                if durable && out.qos != QoS::AtMostOnce {
                    pending.persist(StorageRecord::Delivered {
                        client_id: session.client_id.to_string(),
                        seq: out.seq,
                    });
                }
                pending.event(BrokerEvent::MessageDropped {
                    client_id: session.client_id.to_string(),
                    topic: out.message.topic.clone(),
                    reason: DropReason::Expired,
                });
            }
            continue;
        }
        if out.qos == QoS::AtMostOnce {
            let Some(out) = session.remove_at(index) else {
                break;
            };
            publish_to(
                bytes,
                pending,
                conn,
                &session.client_id,
                &out,
                None,
                false,
                now,
            );
            continue;
        }
        if session.inflight >= window {
            break;
        }
        let Some(id) = session.allocate_packet_id() else {
            break;
        };
        session.mark_sent(index, id);
        let Some(out) = session.outbound.get(index) else {
            break;
        };
        if durable {
            pending.persist(StorageRecord::Sent {
                client_id: session.client_id.to_string(),
                seq: out.seq,
                packet_id: id,
            });
        }
        if !publish_to(
            bytes,
            pending,
            conn,
            &session.client_id,
            out,
            Some(id),
            false,
            now,
        ) {
            // [MQTT-3.1.2-25] too large for the client: discarded as if sent and done.
            if let Some(out) = session.remove_at(index)
                && durable
            {
                pending.persist(StorageRecord::Delivered {
                    client_id: session.client_id.to_string(),
                    seq: out.seq,
                });
            }
            continue;
        }
        index += 1;
    }
}

/// Removes the outbound message `seq` of `session` (the session of `client_id`) as done, with
/// its record for a durable session.
fn complete_in(
    session: &mut Session,
    client_id: &str,
    seq: u64,
    pending: &mut Outputs,
) -> Option<Outbound> {
    let durable = session.is_durable();
    let index = session.find_seq(seq)?;
    let out = session.remove_at(index)?;
    if durable && out.qos != QoS::AtMostOnce {
        pending.persist(StorageRecord::Delivered {
            client_id: client_id.to_owned(),
            seq,
        });
    }
    Some(out)
}

/// Up to this many matching filters, `merge_duplicates` merges their sorted runs; beyond, it
/// looks the sessions up in a hash map.
const MERGE_RUNS: usize = 8;

/// Merges the deliveries to the same session into one [MQTT-3.3.4-2]: the first entry of each
/// session stays where it is, and takes the highest QoS, the Retain flag if any entry has it,
/// and every Subscription Identifier in the order of the entries [MQTT-3.3.4-3]
/// [MQTT-3.3.4-5]. The order of the other entries is kept, so the result depends only on the
/// order of `direct`.
///
/// `runs` holds the index where each filter's entries start (the first is 0, increasing). The
/// tree visits the subscribers of a filter in key order, and a session has one non-shared
/// subscription per filter, so each run is in strictly increasing Client Identifier order:
/// the runs are merged like sorted lists, comparing the heads, and equal heads are the
/// duplicates. Linear in the number of entries for a few runs.
fn merge_duplicates(direct: &mut Vec<(Arc<str>, Delivery)>, runs: &[usize]) {
    debug_assert!(
        runs.iter()
            .zip(runs.iter().skip(1).chain([&direct.len()]))
            .all(|(&start, &end)| direct
                .get(start..end)
                .is_some_and(|run| run.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)))),
        "a filter's subscribers are not in Client Identifier order"
    );
    if runs.len() > MERGE_RUNS {
        merge_duplicates_hashed(direct);
        return;
    }
    // Each run's next entry, end, and the sort prefix of the next entry's Client Identifier.
    let mut heads = [Head::default(); MERGE_RUNS];
    let ends = runs.iter().skip(1).copied().chain([direct.len()]);
    for (head, (&start, end)) in heads.iter_mut().zip(runs.iter().zip(ends)) {
        *head = Head::new(direct, start, end);
    }
    let heads = heads.get_mut(..runs.len()).unwrap_or_default();
    // The later heads equal to the smallest one.
    let mut equal = [0_usize; MERGE_RUNS];
    // The entries merged into an earlier one (sized when the first duplicate is found).
    let mut merged: Vec<bool> = Vec::new();
    loop {
        // The smallest head (the earliest run's among equal ones: the first entry of its
        // session), and the later runs' heads equal to it.
        let mut smallest: Option<(usize, Head)> = None;
        let mut equals = 0_usize;
        for (h, &head) in heads.iter().enumerate() {
            if head.next >= head.end {
                continue;
            }
            let Some((_, s)) = smallest else {
                smallest = Some((h, head));
                continue;
            };
            match head.compare(&s, direct) {
                Ordering::Less => {
                    smallest = Some((h, head));
                    equals = 0;
                }
                Ordering::Equal => {
                    if let Some(e) = equal.get_mut(equals) {
                        *e = h;
                        equals += 1;
                    }
                }
                Ordering::Greater => {}
            }
        }
        let Some((h, Head { next: kept, .. })) = smallest else {
            break;
        };
        if let Some(head) = heads.get_mut(h) {
            head.advance(direct);
        }
        for &h in equal.get(..equals).unwrap_or_default() {
            let Some(head) = heads.get_mut(h) else {
                continue;
            };
            if merged.is_empty() {
                merged.resize(direct.len(), false);
            }
            if let Some(m) = merged.get_mut(head.next) {
                *m = true;
            }
            fold_into(direct, kept, head.next);
            head.advance(direct);
        }
    }
    remove_merged(direct, &merged);
}

/// Where `merge_duplicates` stands in one run of entries.
#[derive(Debug, Clone, Copy, Default)]
struct Head {
    /// The next entry of the run.
    next: usize,
    /// The end of the run.
    end: usize,
    /// The first 8 bytes of the next entry's Client Identifier, zero-padded, as a big-endian
    /// number: when two of these differ, they order the strings as bytewise comparison does
    /// (at the first difference, a string that has ended has a 0 and the other a non-zero
    /// byte, so the first is a prefix of the second).
    prefix: u64,
}

impl Head {
    fn new(direct: &[(Arc<str>, Delivery)], next: usize, end: usize) -> Self {
        let prefix = direct
            .get(next)
            .map_or(0, |(c, _)| Self::prefix_of(c.as_bytes()));
        Self { next, end, prefix }
    }

    fn advance(&mut self, direct: &[(Arc<str>, Delivery)]) {
        *self = Self::new(direct, self.next + 1, self.end);
    }

    fn prefix_of(s: &[u8]) -> u64 {
        if let Some(first) = s.first_chunk::<8>() {
            return u64::from_be_bytes(*first);
        }
        s.iter()
            .zip((0..8).rev())
            .fold(0, |n, (&b, byte)| n | u64::from(b) << (8 * byte))
    }

    /// Compares the Client Identifiers of the two heads' next entries.
    fn compare(&self, other: &Self, direct: &[(Arc<str>, Delivery)]) -> Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| {
            match (direct.get(self.next), direct.get(other.next)) {
                (Some((a, _)), Some((b, _))) if !Arc::ptr_eq(a, b) => a.cmp(b),
                _ => Ordering::Equal,
            }
        })
    }
}

/// `merge_duplicates` for many runs: the first entry of each session found with a hash map
/// (only looked up, never iterated).
fn merge_duplicates_hashed(direct: &mut Vec<(Arc<str>, Delivery)>) {
    let mut first: HashMap<&str, usize> =
        HashMap::with_capacity_and_hasher(direct.len(), crate::hash::HashState::default());
    // (kept, later) pairs, in the order of `later`.
    let mut merges: Vec<(usize, usize)> = Vec::new();
    for (i, (client_id, _)) in direct.iter().enumerate() {
        match first.entry(client_id) {
            Entry::Vacant(e) => {
                e.insert(i);
            }
            Entry::Occupied(e) => merges.push((*e.get(), i)),
        }
    }
    drop(first);
    if merges.is_empty() {
        return;
    }
    let mut merged = vec![false; direct.len()];
    for (kept, later) in merges {
        if let Some(m) = merged.get_mut(later) {
            *m = true;
        }
        fold_into(direct, kept, later);
    }
    remove_merged(direct, &merged);
}

/// Merges the delivery at `later` into the one at `kept`: highest QoS, Retain if either,
/// Subscription Identifiers appended.
fn fold_into(direct: &mut [(Arc<str>, Delivery)], kept: usize, later: usize) {
    let Some((_, d)) = direct.get_mut(later) else {
        return;
    };
    let (qos, retain) = (d.qos, d.retain);
    let mut ids = core::mem::take(&mut d.subscription_ids);
    if let Some((_, k)) = direct.get_mut(kept) {
        k.qos = k.qos.max(qos);
        k.retain |= retain;
        k.subscription_ids.append(&mut ids);
    }
}

/// Removes the entries marked in `merged` (empty: none), keeping the order of the others.
fn remove_merged(direct: &mut Vec<(Arc<str>, Delivery)>, merged: &[bool]) {
    if merged.is_empty() {
        return;
    }
    let mut index = 0_usize;
    direct.retain(|_| {
        let remove = merged.get(index).copied().unwrap_or(false);
        index += 1;
        !remove
    });
}

/// Encodes an outbound PUBLISH for `conn` into `bytes`; `false` (and a `MessageDropped` event
/// in `pending`) when it exceeds the client's Maximum Packet Size, and then nothing is written
/// [MQTT-3.1.2-24].
#[inline]
#[allow(clippy::too_many_arguments)]
fn publish_to(
    bytes: &mut BytesMut,
    pending: &mut Outputs,
    conn: &mut Connection,
    client_id: &str,
    out: &Outbound,
    packet_id: Option<PacketId>,
    dup: bool,
    now: Timestamp,
) -> bool {
    let v5 = conn.version.is_v5();
    // Outbound Topic Alias, when the client accepts them [MQTT-3.1.2-26] [MQTT-3.3.2-11]:
    // the first `Topic Alias Maximum` distinct topics get aliases 1.., sent with the topic
    // the first time and alone afterwards; other topics are sent in full.
    let mut new_alias = None;
    let mut topic_alias = None;
    let mut omit_topic = false;
    if v5 && conn.client_topic_alias_maximum > 0 {
        let aliases = conn.extras.as_ref().map(|e| &e.outbound_aliases);
        let known = aliases.map_or(0, BTreeMap::len);
        if let Some(&alias) = aliases.and_then(|a| a.get(&out.message.topic)) {
            topic_alias = core::num::NonZeroU16::new(alias);
            omit_topic = true;
        } else if known < usize::from(conn.client_topic_alias_maximum) {
            let alias = u16::try_from(known + 1).unwrap_or(u16::MAX);
            topic_alias = core::num::NonZeroU16::new(alias);
            new_alias = Some(alias);
        }
    }
    // The message as stored, with what belongs to this delivery (section 3.3.4), encoded
    // without copying the message's properties.
    let delivery = mqtt_codec::Delivery {
        // [MQTT-3.3.1-1] [MQTT-3.3.1-3] DUP only on a re-delivery; [MQTT-4.3.1-1] never at QoS 0.
        dup: dup && out.qos != QoS::AtMostOnce,
        qos: out.qos,
        retain: out.retain,
        packet_id,
        omit_topic,
        topic_alias,
        // [MQTT-3.3.2-6] the Message Expiry Interval minus the time waited.
        message_expiry_interval: out.message.remaining_expiry(now),
        // [MQTT-3.3.4-3] the Subscription Identifiers of the matching subscriptions.
        subscription_identifiers: &out.subscription_ids,
    };
    let message = &out.message;
    let sent = delivery
        .encode(
            &message.topic,
            &message.properties,
            &message.payload,
            conn.version,
            conn.client_maximum_packet_size,
            bytes,
        )
        .is_ok();
    if sent {
        pending.stats.publish_sent += 1;
        if let Some(alias) = new_alias {
            conn.extras()
                .outbound_aliases
                .insert(out.message.topic.clone(), alias);
        }
    } else {
        pending.event(BrokerEvent::MessageDropped {
            client_id: client_id.to_owned(),
            topic: out.message.topic.clone(),
            reason: DropReason::TooLarge,
        });
    }
    sent
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use proptest::prelude::*;

    /// Client Identifiers that share 8-byte prefixes, are prefixes of one another, or differ
    /// only after a U+0000 (never valid in MQTT, but the comparison must not care).
    const IDS: [&str; 12] = [
        "a",
        "ab",
        "b",
        "abcdefgh",
        "abcdefgh\0",
        "abcdefghi",
        "abcdefgi",
        "sub-1",
        "sub-10",
        "sub-2",
        "client-0001",
        "client-0002",
    ];

    /// The merge as it was first written: sorted by Client Identifier (stable), then merged.
    fn reference(mut direct: Vec<(Arc<str>, Delivery)>) -> Vec<(Arc<str>, Delivery)> {
        direct.sort_by(|a, b| a.0.cmp(&b.0));
        direct.dedup_by(|later, kept| {
            if later.0 != kept.0 {
                return false;
            }
            kept.1.qos = kept.1.qos.max(later.1.qos);
            kept.1.retain |= later.1.retain;
            kept.1
                .subscription_ids
                .append(&mut later.1.subscription_ids);
            true
        });
        direct
    }

    fn flat(direct: &[(Arc<str>, Delivery)]) -> Vec<(String, QoS, bool, Vec<u32>)> {
        direct
            .iter()
            .map(|(c, d)| (c.to_string(), d.qos, d.retain, d.subscription_ids.clone()))
            .collect()
    }

    /// An entry: index in `IDS`, QoS, Retain As Published, Subscription Identifier.
    type Entry = (usize, u8, bool, Option<u32>);

    /// Runs of entries (sorted and deduplicated by the test, as the tree gives one filter's
    /// subscribers), with random options; 2 to 11 runs, so both merges are exercised.
    fn runs() -> impl Strategy<Value = Vec<Vec<Entry>>> {
        let entry = (
            0..IDS.len(),
            0..3_u8,
            any::<bool>(),
            prop::option::of(1..100_u32),
        );
        prop::collection::vec(prop::collection::vec(entry, 1..8), 2..12)
    }

    proptest! {
        /// Against the sort-and-merge it replaced: the same deliveries, each session's at the
        /// position of its first entry. `shared`: a session's entries share one `Arc`, as the
        /// broker's do.
        #[test]
        fn merging_agrees_with_sorting(runs in runs(), shared in any::<bool>()) {
            let arcs: Vec<Arc<str>> = IDS.iter().map(|&s| Arc::from(s)).collect();
            let mut direct = Vec::new();
            let mut starts = Vec::new();
            for run in runs {
                let mut run = run;
                run.sort_by(|a, b| IDS[a.0].cmp(IDS[b.0]));
                run.dedup_by(|a, b| a.0 == b.0);
                starts.push(direct.len());
                for (id, qos, retain, sub_id) in run {
                    let client_id = if shared { Arc::clone(&arcs[id]) } else { Arc::from(IDS[id]) };
                    let qos = match qos {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => QoS::ExactlyOnce,
                    };
                    let subscription_ids = sub_id.into_iter().collect();
                    let d = Delivery { qos, retain, subscription_ids, slot: None };
                    direct.push((client_id, d));
                }
            }
            let copy = |d: &[(Arc<str>, Delivery)]| -> Vec<(Arc<str>, Delivery)> {
                d.iter()
                    .map(|(c, d)| {
                        let d = Delivery {
                            qos: d.qos,
                            retain: d.retain,
                            subscription_ids: d.subscription_ids.clone(),
                            slot: d.slot,
                        };
                        (Arc::clone(c), d)
                    })
                    .collect()
            };
            // The order of first occurrences.
            let mut first_order: Vec<String> = Vec::new();
            for (c, _) in &direct {
                if !first_order.iter().any(|f| **f == **c) {
                    first_order.push(c.to_string());
                }
            }
            let expected = reference(copy(&direct));
            let mut merged = copy(&direct);
            merge_duplicates(&mut merged, &starts);
            let mut hashed = copy(&direct);
            merge_duplicates_hashed(&mut hashed);
            for result in [&merged, &hashed] {
                let order: Vec<String> = result.iter().map(|(c, _)| c.to_string()).collect();
                prop_assert_eq!(&order, &first_order);
                let mut sorted = copy(result);
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                prop_assert_eq!(flat(&sorted), flat(&expected));
            }
        }
    }
}
