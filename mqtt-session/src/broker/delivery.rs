//! PUBLISH in and out: QoS 0/1/2 flows, topic aliases, retained messages, routing to
//! subscriptions (shared ones included), the outbound queue and flow control; SUBSCRIBE and
//! UNSUBSCRIBE.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use mqtt_codec::Packet;
use mqtt_codec::{
    PacketId, Properties, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, TopicFilter, TopicName, UnsubAck, Unsubscribe,
};

use super::message::Message;
use super::session::{OutState, Outbound, Subscription};
use super::{
    Broker, BrokerEvent, Connection, ConnectionId, DropReason, Pending, Policy, StorageRecord,
    SubKey, SubValue, encode_to,
};
use crate::time::Timestamp;

/// One delivery a published message makes to a session.
struct Delivery {
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
}

impl<P: Policy> Broker<P> {
    pub(super) fn tree_key<'f>(client_id: &str, filter: &'f str) -> (SubKey, &'f str) {
        match filter
            .strip_prefix("$share/")
            .and_then(|r| r.split_once('/'))
        {
            Some((group, inner)) => (
                SubKey {
                    client_id: Arc::from(client_id),
                    share_group: Some(group.to_owned()),
                },
                inner,
            ),
            None => (
                SubKey {
                    client_id: Arc::from(client_id),
                    share_group: None,
                },
                filter,
            ),
        }
    }

    // ---- incoming PUBLISH -----------------------------------------------------------------

    pub(super) fn handle_publish(
        &mut self,
        connection: ConnectionId,
        mut p: Publish,
        now: Timestamp,
    ) {
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
                match conn.inbound_aliases.get(&alias.get()) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now);
                        return;
                    }
                }
            } else {
                conn.inbound_aliases.insert(alias.get(), p.topic.clone());
            }
        }
        // v5 [MQTT-3.3.4-6] a PUBLISH from a client carries no Subscription Identifier.
        if !p.properties.subscription_identifiers.is_empty() {
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
                client_id: client_id.clone(),
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
                properties: p.properties,
                publisher: Some(client_id.clone()),
                expires_at,
            };
            // [MQTT-4.5.0-1] ownership taken: added to every matching session.
            if self.accept_message(Arc::new(message), now) {
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
                            client_id: client_id.clone(),
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
                client_id,
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

    /// Stores a retained message if asked and routes the message to every matching
    /// subscription. Returns whether any session matched.
    pub(super) fn accept_message(&mut self, message: Arc<Message>, now: Timestamp) -> bool {
        if message.retain {
            if message.payload.is_empty() {
                // [MQTT-3.3.1-6] [MQTT-3.3.1-7] an empty retained message removes the retained
                // message of the topic and is not stored.
                if self.retained.remove(&message.topic).is_some() {
                    self.persist(StorageRecord::RetainedCleared {
                        topic: message.topic.to_string(),
                    });
                }
            } else {
                // [MQTT-3.3.1-5] replace the retained message of the topic.
                self.persist(StorageRecord::Retained {
                    message: Box::new((*message).clone()),
                });
                self.retained
                    .insert(message.topic.clone(), Arc::clone(&message));
            }
        }
        self.route(message, now)
    }

    /// Delivers `message` to every matching session: one copy per session, at the highest QoS
    /// of its matching subscriptions [MQTT-3.3.4-2], with all their Subscription Identifiers
    /// [MQTT-3.3.4-3] [MQTT-3.3.4-4]; one member of each share group [MQTT-4.8.2-3].
    fn route(&mut self, message: Arc<Message>, now: Timestamp) -> bool {
        // One entry per matching subscription, in the tree's (deterministic) order. A session
        // appears more than once only when several of its filters match, which needs several
        // matching filters: only then are the entries sorted and merged.
        let mut direct: Vec<(Arc<str>, Delivery)> = Vec::new();
        let mut filters_matched = 0_usize;
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
                            filters_matched += 1;
                            last_filter = Some(filter);
                        }
                        direct.push((
                            Arc::clone(&key.client_id),
                            Delivery {
                                qos: value.options.qos,
                                // [MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published.
                                retain: value.options.retain_as_published && message.retain,
                                subscription_ids: value.subscription_id.into_iter().collect(),
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
        if filters_matched > 1 {
            // Sorted by Client Identifier (stable, so each session's Subscription Identifiers
            // keep the tree's order), then merged: one copy per session.
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
        }
        let mut matched = !direct.is_empty() || !shared.is_empty();
        for (client_id, mut d) in direct {
            // [MQTT-3.8.4-8] the minimum of the published QoS and the granted QoS.
            d.qos = d.qos.min(message.qos);
            self.enqueue(&client_id, &message, d, now);
        }
        for (group_key, members) in shared {
            // Round robin over the connected members, falling back to any member.
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
            };
            let client_id = client_id.clone();
            self.enqueue(&client_id, &message, d, now);
            matched = true;
        }
        matched
    }

    /// Adds a message to a session's outbound queue (subject to its limits) and sends what the
    /// send quota allows.
    fn enqueue(&mut self, client_id: &str, message: &Arc<Message>, d: Delivery, now: Timestamp) {
        let max_count = self.config.max_queued_messages;
        let max_bytes = self.config.max_queued_bytes;
        let queue_qos0 = self.config.queue_qos0_when_offline;
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        let online = session.connection.is_some();
        if d.qos == QoS::AtMostOnce && !online && !queue_qos0 {
            return;
        }
        if session.queued_count >= max_count || session.queued_bytes + message.size() > max_bytes {
            self.event(BrokerEvent::MessageDropped {
                client_id: client_id.to_owned(),
                topic: message.topic.clone(),
                reason: DropReason::QueueFull,
            });
            return;
        }
        let seq = session.next_seq;
        session.push_queued(Outbound {
            seq,
            message: Arc::clone(message),
            qos: d.qos,
            retain: d.retain,
            subscription_ids: d.subscription_ids.clone(),
            state: OutState::Queued,
        });
        if session.is_durable() && d.qos != QoS::AtMostOnce {
            self.persist(StorageRecord::Queued {
                client_id: client_id.to_owned(),
                seq,
                message: Box::new((**message).clone()),
                qos: d.qos,
                retain: d.retain,
                subscription_ids: d.subscription_ids,
            });
        }
        if online {
            self.pump(client_id, now);
        }
    }

    /// Sends queued messages while the send quota allows: at most min(client's Receive
    /// Maximum, our max in flight) QoS 1/2 messages unacknowledged [MQTT-3.3.4-9]
    /// [MQTT-4.9.0-2]. Expired messages are dropped [MQTT-3.3.2-5].
    pub(super) fn pump(&mut self, client_id: &str, now: Timestamp) {
        // One lookup of the session and one of its connection; then the fields are borrowed
        // apart (session, connection, output queue) for the whole loop.
        let Self {
            sessions,
            connections,
            out: pending,
            config,
            ..
        } = self;
        let Some(session) = sessions.get_mut(client_id) else {
            return;
        };
        let Some(connection) = session.connection else {
            return;
        };
        let Some(conn) = connections.get_mut(&connection) else {
            return;
        };
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
        loop {
            let Some(out) = session.outbound.get(index) else {
                return;
            };
            if out.state != OutState::Queued {
                index += 1;
                continue;
            }
            if out.message.is_expired(now) {
                if let Some(out) = session.remove_at(index) {
                    if durable && out.qos != QoS::AtMostOnce {
                        pending.push_back(Pending::Persist(StorageRecord::Delivered {
                            client_id: client_id.to_owned(),
                            seq: out.seq,
                        }));
                    }
                    pending.push_back(Pending::Event(BrokerEvent::MessageDropped {
                        client_id: client_id.to_owned(),
                        topic: out.message.topic.clone(),
                        reason: DropReason::Expired,
                    }));
                }
                continue;
            }
            if out.qos == QoS::AtMostOnce {
                let Some(out) = session.remove_at(index) else {
                    return;
                };
                publish_to(pending, connection, conn, client_id, &out, None, false, now);
                continue;
            }
            if session.inflight >= window {
                return;
            }
            let Some(id) = session.allocate_packet_id() else {
                return;
            };
            session.mark_sent(index, id);
            let Some(out) = session.outbound.get(index) else {
                return;
            };
            if durable {
                pending.push_back(Pending::Persist(StorageRecord::Sent {
                    client_id: client_id.to_owned(),
                    seq: out.seq,
                    packet_id: id,
                }));
            }
            if !publish_to(
                pending,
                connection,
                conn,
                client_id,
                out,
                Some(id),
                false,
                now,
            ) {
                // [MQTT-3.1.2-25] too large for the client: discarded as if sent and done.
                if let Some(out) = session.remove_at(index)
                    && durable
                {
                    pending.push_back(Pending::Persist(StorageRecord::Delivered {
                        client_id: client_id.to_owned(),
                        seq: out.seq,
                    }));
                }
                continue;
            }
            index += 1;
        }
    }

    /// Encodes an outbound PUBLISH for the connection; `false` when it exceeds the client's
    /// Maximum Packet Size (then nothing is sent [MQTT-3.1.2-24]).
    fn send_publish(
        &mut self,
        connection: ConnectionId,
        client_id: &str,
        out: &Outbound,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Timestamp,
    ) -> bool {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return false;
        };
        publish_to(
            &mut self.out,
            connection,
            conn,
            client_id,
            out,
            packet_id,
            dup,
            now,
        )
    }

    /// On session resume: PUBLISH again (DUP) what awaits PUBACK/PUBREC, PUBREL what awaits
    /// PUBCOMP, in the original order. [MQTT-4.4.0-1] [MQTT-4.6.0-1]
    pub(super) fn resend_inflight(
        &mut self,
        client_id: &str,
        connection: ConnectionId,
        now: Timestamp,
    ) {
        let Some(session) = self.sessions.get(client_id) else {
            return;
        };
        let inflight: Vec<Outbound> = session
            .outbound
            .iter()
            .filter(|o| o.state != OutState::Queued)
            .cloned()
            .collect();
        for out in inflight {
            match out.state {
                OutState::Sent(id) => {
                    if !self.send_publish(connection, client_id, &out, Some(id), true, now) {
                        // [MQTT-3.1.2-25] too large for this connection's Maximum Packet Size:
                        // discarded as if sent and acknowledged, freeing its send quota.
                        self.complete_outbound(client_id, out.seq);
                    }
                }
                OutState::Released(id) => {
                    self.send(connection, &Packet::PubRel(PubRel::new(id)));
                }
                OutState::Queued => {}
            }
        }
    }

    /// Removes the outbound message `seq` as done (acknowledged, expired, discarded), with its
    /// record for a durable session.
    fn complete_outbound(&mut self, client_id: &str, seq: u64) -> Option<Outbound> {
        let session = self.sessions.get_mut(client_id)?;
        let durable = session.is_durable();
        let index = session.find_seq(seq)?;
        let out = session.remove_at(index)?;
        if durable && out.qos != QoS::AtMostOnce {
            self.persist(StorageRecord::Delivered {
                client_id: client_id.to_owned(),
                seq,
            });
        }
        Some(out)
    }

    // ---- acknowledgements of outgoing messages ----------------------------------------------

    /// The session of `connection` and the sequence number of its in-flight message with
    /// Packet Identifier `id`, when that message is in a state `expected` accepts.
    fn inflight_for_ack(
        &self,
        connection: ConnectionId,
        id: PacketId,
        expected: fn(OutState, QoS) -> bool,
    ) -> Option<(String, u64)> {
        let client_id = self.connections.get(&connection)?.client_id.clone()?;
        let session = self.sessions.get(&client_id)?;
        let out = session.outbound.get(session.find_inflight(id)?)?;
        expected(out.state, out.qos).then_some((client_id, out.seq))
    }

    pub(super) fn handle_puback(
        &mut self,
        connection: ConnectionId,
        id: PacketId,
        _reason: ReasonCode,
        now: Timestamp,
    ) {
        // [MQTT-4.3.2-3] unacknowledged until PUBACK; [MQTT-4.4.0-2] an error code also ends it.
        let expected = |state, qos| matches!((state, qos), (OutState::Sent(_), QoS::AtLeastOnce));
        let Some((client_id, seq)) = self.inflight_for_ack(connection, id, expected) else {
            return;
        };
        self.complete_outbound(&client_id, seq);
        self.pump(&client_id, now);
    }

    pub(super) fn handle_pubrec(
        &mut self,
        connection: ConnectionId,
        id: PacketId,
        reason: ReasonCode,
        now: Timestamp,
    ) {
        let expected = |state, qos| matches!((state, qos), (OutState::Sent(_), QoS::ExactlyOnce));
        let Some((client_id, seq)) = self.inflight_for_ack(connection, id, expected) else {
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
            self.complete_outbound(&client_id, seq);
            self.pump(&client_id, now);
            return;
        }
        // [MQTT-4.3.3-4] PUBREL with the same Packet Identifier; [MQTT-4.3.3-6] the PUBLISH is
        // not sent again.
        let Some(session) = self.sessions.get_mut(&client_id) else {
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
                client_id: client_id.clone(),
                seq,
            });
        }
        self.send(connection, &Packet::PubRel(PubRel::new(id)));
    }

    pub(super) fn handle_pubcomp(
        &mut self,
        connection: ConnectionId,
        id: PacketId,
        now: Timestamp,
    ) {
        // [MQTT-4.3.3-5] the PUBREL is unacknowledged until PUBCOMP.
        let expected = |state, _| matches!(state, OutState::Released(_));
        let Some((client_id, seq)) = self.inflight_for_ack(connection, id, expected) else {
            return;
        };
        self.complete_outbound(&client_id, seq);
        self.pump(&client_id, now);
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
        let subscription_id = s.properties.subscription_identifiers.first().copied();
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
                    client_id: client_id.clone(),
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
            };
            self.enqueue(&client_id, &m, d, now);
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
        let (key, inner) = Self::tree_key(client_id, filter);
        self.tree.insert(
            inner,
            key,
            SubValue {
                options,
                subscription_id,
            },
        );
        let existed = self
            .sessions
            .get_mut(client_id)
            .and_then(|s| {
                s.subscriptions.insert(
                    filter.to_string(),
                    Subscription {
                        options,
                        subscription_id,
                    },
                )
            })
            .is_some();
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
            let removed = self
                .sessions
                .get_mut(&client_id)
                .and_then(|s| s.subscriptions.remove(filter.as_utf8().as_str()))
                .is_some();
            if removed {
                // [MQTT-3.10.4-2] no new messages for it; in-flight ones complete [MQTT-3.10.4-3].
                let (key, inner) = Self::tree_key(&client_id, filter);
                self.tree.remove(inner, &key);
                if durable {
                    self.persist(StorageRecord::Unsubscribed {
                        client_id: client_id.clone(),
                        filter: filter.to_string(),
                    });
                }
            }
            reason_codes.push(if removed {
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

/// Encodes an outbound PUBLISH for `conn` into the output queue; `false` (and a
/// `MessageDropped` event) when it exceeds the client's Maximum Packet Size, and then nothing
/// is sent [MQTT-3.1.2-24].
#[allow(clippy::too_many_arguments)]
fn publish_to(
    pending: &mut VecDeque<Pending>,
    connection: ConnectionId,
    conn: &mut Connection,
    client_id: &str,
    out: &Outbound,
    packet_id: Option<PacketId>,
    dup: bool,
    now: Timestamp,
) -> bool {
    let v5 = conn.version.is_v5();
    let mut properties = if v5 {
        out.message.properties.clone()
    } else {
        Properties::default()
    };
    let mut topic = out.message.topic.clone();
    if v5 {
        // [MQTT-3.3.2-6] the Message Expiry Interval minus the time waited.
        properties.message_expiry_interval = out.message.remaining_expiry(now);
        // [MQTT-3.3.4-3] the Subscription Identifiers of the matching subscriptions.
        properties
            .subscription_identifiers
            .clone_from(&out.subscription_ids);
    }
    // Outbound Topic Alias, when the client accepts them [MQTT-3.1.2-26] [MQTT-3.3.2-11]:
    // the first `Topic Alias Maximum` distinct topics get aliases 1.., sent with the topic
    // the first time and alone afterwards; other topics are sent in full.
    let mut new_alias = None;
    if v5 && conn.client_topic_alias_maximum > 0 {
        if let Some(&alias) = conn.outbound_aliases.get(&topic) {
            properties.topic_alias = core::num::NonZeroU16::new(alias);
            topic = TopicName::empty();
        } else if conn.outbound_aliases.len() < usize::from(conn.client_topic_alias_maximum) {
            let alias = u16::try_from(conn.outbound_aliases.len() + 1).unwrap_or(u16::MAX);
            properties.topic_alias = core::num::NonZeroU16::new(alias);
            new_alias = Some(alias);
        }
    }
    let publish = Publish {
        // [MQTT-3.3.1-1] [MQTT-3.3.1-3] DUP only on a re-delivery; [MQTT-4.3.1-1] never at QoS 0.
        dup: dup && out.qos != QoS::AtMostOnce,
        qos: out.qos,
        retain: out.retain,
        topic,
        packet_id,
        properties,
        payload: out.message.payload.clone(),
    };
    let sent = encode_to(pending, connection, conn, &Packet::Publish(publish));
    if sent {
        if let Some(alias) = new_alias {
            conn.outbound_aliases
                .insert(out.message.topic.clone(), alias);
        }
    } else {
        pending.push_back(Pending::Event(BrokerEvent::MessageDropped {
            client_id: client_id.to_owned(),
            topic: out.message.topic.clone(),
            reason: DropReason::TooLarge,
        }));
    }
    sent
}
