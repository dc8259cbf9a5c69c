//! The QoS 0/1/2 flows in both directions, flow control (Receive Maximum both ways), topic
//! aliases, and SUBSCRIBE / UNSUBSCRIBE with their acknowledgements.

use crate::prelude::*;
use mqtt_codec::{
    Packet, PacketId, Properties, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, TopicFilter, Unsubscribe,
};

use super::alias::AliasUse;
use super::record::ClientRecord;
use super::session::{OutState, Request, RequestPacket};
use super::{Client, ClientError, ClientEvent, DropReason, HeldAck};
use crate::time::Timestamp;

impl Client {
    // ---- commands ---------------------------------------------------------------------------

    /// Publishes an Application Message: `message`'s topic, payload, QoS, RETAIN and properties
    /// (its DUP flag, Packet Identifier and Topic Alias are the client's to set and are
    /// ignored). Returns the Packet Identifier of a QoS 1 or 2 message, which the
    /// [`ClientEvent::Published`] that completes its flow carries.
    ///
    /// The message is sent at once when connected and the server's Receive Maximum allows
    /// (v5 [MQTT-3.3.4-7]); otherwise it waits, in order, for the next connection or a free slot.
    ///
    /// # Errors
    /// [`ClientError::InvalidPacket`] for a PUBLISH the codec refuses (empty topic, wildcards,
    /// MQTT 5.0 properties in 3.1.1, ...); [`ClientError::NotAllowed`] for a Subscription
    /// Identifier (v5 [MQTT-3.3.4-6]); when connected, what the server's CONNACK forbids
    /// ([`ClientError::QosNotSupported`], [`ClientError::RetainNotSupported`],
    /// [`ClientError::PacketTooLarge`]); [`ClientError::QueueFull`],
    /// [`ClientError::PacketIdsExhausted`].
    pub fn publish(
        &mut self,
        message: Publish,
        now: Timestamp,
    ) -> Result<Option<PacketId>, ClientError> {
        let mut message = message;
        message.dup = false;
        message.properties.topic_alias = None;
        // v5 [MQTT-3.3.4-6] a PUBLISH from a client carries no Subscription Identifier.
        if message.properties.has_subscription_identifiers() {
            return Err(ClientError::NotAllowed(
                "a PUBLISH from a client carries no Subscription Identifier",
            ));
        }
        // v5 [MQTT-2.2.1-2] v3.1.1 [MQTT-2.3.1-5] a Packet Identifier exactly when QoS > 0 (a
        // placeholder to check the encoding; the real one is allocated below).
        message.packet_id = match message.qos {
            QoS::AtMostOnce => None,
            _ => PacketId::new(u16::MAX),
        };
        let packet = Packet::Publish(message);
        let size = packet
            .encoded_len(self.version())
            .map_err(ClientError::InvalidPacket)?;
        let Packet::Publish(mut message) = packet else {
            return Err(ClientError::NotAllowed("not a PUBLISH"));
        };
        if let Some(limits) = self.server_limits() {
            // v5 [MQTT-3.2.2-11] not above the server's Maximum QoS.
            if message.qos > limits.maximum_qos {
                return Err(ClientError::QosNotSupported {
                    maximum: limits.maximum_qos,
                });
            }
            // v5 [MQTT-3.2.2-14] no RETAIN when the server has no retained messages.
            if message.retain && !limits.retain_available {
                return Err(ClientError::RetainNotSupported);
            }
            // v5 [MQTT-3.2.2-15] not larger than the server's Maximum Packet Size.
            if size > limits.maximum_packet_size as usize {
                return Err(ClientError::PacketTooLarge {
                    size,
                    maximum: limits.maximum_packet_size,
                });
            }
        }
        if self.session.pending >= self.config.max_queued_messages {
            return Err(ClientError::QueueFull);
        }
        message.packet_id = match message.qos {
            QoS::AtMostOnce => None,
            // v5 [MQTT-2.2.1-3] [MQTT-4.3.2-1] [MQTT-4.3.3-1] v3.1.1 [MQTT-2.3.1-2] an unused
            // non-zero Packet Identifier.
            _ => Some(
                self.session
                    .allocate_packet_id()
                    .ok_or(ClientError::PacketIdsExhausted)?,
            ),
        };
        // A QoS 0 message with nothing queued before it, on a connection whose outbox has room,
        // is encoded at once, as `pump` would encode it first (the same checks were made above),
        // without its trip through the queue (moves and a clone of the whole `Publish`).
        if message.qos == QoS::AtMostOnce
            && self.session.pending == 0
            && self.server_limits().is_some()
            && self.outbox.len() < super::OUTBOX_HIGH_WATER
        {
            if !self.send_publish(&message, false, now) {
                // v5 [MQTT-3.2.2-15] too large for the server: never sent.
                self.event(ClientEvent::PublishDropped {
                    packet_id: None,
                    reason: DropReason::TooLarge,
                });
            }
            return Ok(None);
        }
        let id = message.packet_id;
        self.session.push(message);
        self.pump(now);
        Ok(id)
    }

    /// Subscribes to `filters`, each with its options; `properties` may carry a Subscription
    /// Identifier and User Properties (MQTT 5.0). Returns the Packet Identifier that the
    /// [`ClientEvent::Subscribed`] with the SUBACK's reason codes carries. Sent at once when
    /// connected, else on the next connection; sent again on the next connection if this one
    /// ends before the SUBACK.
    ///
    /// # Errors
    /// [`ClientError::InvalidPacket`] for a SUBSCRIBE the codec refuses (no filter, invalid
    /// filter or options, ...); when connected, [`ClientError::NotAllowed`] for what the
    /// server said it does not support (wildcards, shared subscriptions, Subscription
    /// Identifiers) and [`ClientError::PacketTooLarge`]; [`ClientError::PacketIdsExhausted`].
    pub fn subscribe(
        &mut self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: Properties,
        now: Timestamp,
    ) -> Result<PacketId, ClientError> {
        if let Some(limits) = self.server_limits() {
            if !limits.subscription_identifiers_available
                && properties.has_subscription_identifiers()
            {
                return Err(ClientError::NotAllowed(
                    "the server does not support Subscription Identifiers",
                ));
            }
            if !limits.wildcard_subscription_available
                && filters.iter().any(|(f, _)| f.has_wildcards())
            {
                return Err(ClientError::NotAllowed(
                    "the server does not support wildcard subscriptions",
                ));
            }
            if !limits.shared_subscription_available
                && filters.iter().any(|(f, _)| f.shared().is_some())
            {
                return Err(ClientError::NotAllowed(
                    "the server does not support shared subscriptions",
                ));
            }
        }
        let placeholder = PacketId::new(u16::MAX).ok_or(ClientError::PacketIdsExhausted)?;
        let packet = Packet::Subscribe(Subscribe {
            packet_id: placeholder,
            properties,
            filters,
        });
        self.check_request_size(&packet)?;
        let Packet::Subscribe(mut s) = packet else {
            return Err(ClientError::NotAllowed("not a SUBSCRIBE"));
        };
        // v5 [MQTT-2.2.1-3] v3.1.1 [MQTT-2.3.1-2] an unused non-zero Packet Identifier.
        let id = self
            .session
            .allocate_packet_id()
            .ok_or(ClientError::PacketIdsExhausted)?;
        s.packet_id = id;
        self.session.requests.push_back(Request {
            packet: RequestPacket::Subscribe(s),
            sent: false,
        });
        self.send_requests(now);
        Ok(id)
    }

    /// Unsubscribes from `filters`; `properties` may carry User Properties (MQTT 5.0). Returns
    /// the Packet Identifier that the [`ClientEvent::Unsubscribed`] carries; queued and sent
    /// again like [`Client::subscribe`].
    ///
    /// # Errors
    /// [`ClientError::InvalidPacket`] for an UNSUBSCRIBE the codec refuses;
    /// [`ClientError::PacketTooLarge`] when connected; [`ClientError::PacketIdsExhausted`].
    pub fn unsubscribe(
        &mut self,
        filters: Vec<TopicFilter>,
        properties: Properties,
        now: Timestamp,
    ) -> Result<PacketId, ClientError> {
        let placeholder = PacketId::new(u16::MAX).ok_or(ClientError::PacketIdsExhausted)?;
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: placeholder,
            properties,
            filters,
        });
        self.check_request_size(&packet)?;
        let Packet::Unsubscribe(mut u) = packet else {
            return Err(ClientError::NotAllowed("not an UNSUBSCRIBE"));
        };
        let id = self
            .session
            .allocate_packet_id()
            .ok_or(ClientError::PacketIdsExhausted)?;
        u.packet_id = id;
        self.session.requests.push_back(Request {
            packet: RequestPacket::Unsubscribe(u),
            sent: false,
        });
        self.send_requests(now);
        Ok(id)
    }

    /// Checks that a request encodes, within the server's Maximum Packet Size when known.
    fn check_request_size(&self, packet: &Packet) -> Result<(), ClientError> {
        let size = packet
            .encoded_len(self.version())
            .map_err(ClientError::InvalidPacket)?;
        if let Some(limits) = self.server_limits() {
            // v5 [MQTT-3.2.2-15]
            if size > limits.maximum_packet_size as usize {
                return Err(ClientError::PacketTooLarge {
                    size,
                    maximum: limits.maximum_packet_size,
                });
            }
        }
        Ok(())
    }

    // ---- outgoing PUBLISH ---------------------------------------------------------------------

    /// Sends waiting messages, in order, while the send quota allows: at most the server's
    /// Receive Maximum QoS 1/2 PUBLISH packets unacknowledged (v5 [MQTT-3.3.4-7]
    /// v5 [MQTT-4.9.0-1] [MQTT-4.9.0-2]). A message the server cannot take (QoS, RETAIN, size)
    /// is dropped and reported.
    pub(super) fn pump(&mut self, now: Timestamp) {
        let Some(limits) = self.server_limits() else {
            return;
        };
        let quota = usize::from(limits.receive_maximum.min(self.config.max_in_flight)).max(1);
        let maximum_qos = limits.maximum_qos;
        let retain_available = limits.retain_available;
        if self.session.pending == 0 {
            return;
        }
        let mut i = self.session.first_pending();
        loop {
            let Some(out) = self.session.outbound.get(i) else {
                return;
            };
            if out.state != OutState::Pending {
                i += 1;
                continue;
            }
            let qos = out.publish.qos;
            let drop = if qos > maximum_qos {
                // v5 [MQTT-3.2.2-11]
                Some(DropReason::QosNotSupported)
            } else if out.publish.retain && !retain_available {
                // v5 [MQTT-3.2.2-14]
                Some(DropReason::RetainNotSupported)
            } else {
                None
            };
            if let Some(reason) = drop {
                if let Some(out) = self.session.remove_at(i) {
                    self.event(ClientEvent::PublishDropped {
                        packet_id: out.publish.packet_id,
                        reason,
                    });
                }
                continue;
            }
            if qos != QoS::AtMostOnce && self.session.in_flight >= quota {
                // The send quota is used up; the rest waits (in order) for acknowledgements.
                return;
            }
            if self.outbox.len() >= super::OUTBOX_HIGH_WATER {
                // The transport has not taken what was encoded: the rest waits, as messages,
                // until the host pulls (`poll_transmit`).
                return;
            }
            // v5 v3.1.1 [MQTT-3.3.1-1] DUP on a re-delivery only; DUP 0 the first time:
            // v5 v3.1.1 [MQTT-4.3.1-1] at QoS 0,
            // v5 [MQTT-4.3.2-2] [MQTT-4.3.3-2] v3.1.1 [MQTT-4.3.2-1] [MQTT-4.3.3-1] at QoS 1, 2.
            let dup = out.sent_once && qos != QoS::AtMostOnce;
            // Encoded from the queued message itself (no copy of it).
            let version = self.version();
            let sent = encode_publish(
                &out.publish,
                dup,
                self.conn.as_mut(),
                version,
                &mut self.outbox,
                now,
            );
            if sent {
                self.transmit_ready();
            } else {
                // v5 [MQTT-3.2.2-15] too large for the server: never sent.
                if let Some(out) = self.session.remove_at(i) {
                    self.event(ClientEvent::PublishDropped {
                        packet_id: out.publish.packet_id,
                        reason: DropReason::TooLarge,
                    });
                }
                continue;
            }
            if qos == QoS::AtMostOnce {
                self.session.remove_at(i);
            } else {
                // v5 [MQTT-4.3.2-3] [MQTT-4.3.3-3] unacknowledged until PUBACK / PUBREC.
                self.session.set_state(i, OutState::InFlight);
                i += 1;
            }
        }
    }

    /// Sends one PUBLISH, with a topic alias when the strategy gives one (see
    /// [`alias`](super::alias)); `false` when it exceeds the server's Maximum Packet Size.
    fn send_publish(&mut self, publish: &Publish, dup: bool, now: Timestamp) -> bool {
        let version = self.version();
        if !encode_publish(
            publish,
            dup,
            self.conn.as_mut(),
            version,
            &mut self.outbox,
            now,
        ) {
            return false;
        }
        self.transmit_ready();
        true
    }

    // ---- incoming PUBLISH -----------------------------------------------------------------------

    pub(super) fn handle_publish(&mut self, mut p: Publish, now: Timestamp) {
        let v5 = self.version().is_v5();
        let manual = self.config.manual_acks;
        let receive_maximum = if v5 {
            usize::from(self.config.receive_maximum)
        } else {
            usize::MAX
        };
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let alias = p.properties.topic_alias.take();
        if let Err(code) = conn.inbound_aliases.resolve(&mut p.topic, alias) {
            self.fail(code, None, now);
            return;
        }
        // QoS 1 messages awaiting the application's acknowledgement count against our Receive
        // Maximum too (automatic acknowledgement: none).
        let unacknowledged = conn.held_qos1 + self.session.inbound_qos2.len();
        // v5 v3.1.1 [MQTT-3.3.4-1] the response the QoS asks for, whatever the application does
        // with the message (v5 v3.1.1 [MQTT-4.5.0-2]).
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                if manual {
                    if conn.held_acks.iter().any(|h| h.id == id && !h.acked) {
                        // Sent again while the application still holds it: its one PUBACK
                        // answers both.
                        return;
                    }
                    if unacknowledged >= receive_maximum {
                        // Section 3.3.4: 0x93 Receive Maximum exceeded.
                        self.fail(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, None, now);
                        return;
                    }
                    conn.held_acks.push_back(HeldAck {
                        id,
                        qos: QoS::AtLeastOnce,
                        acked: false,
                    });
                    conn.held_qos1 += 1;
                    self.event(ClientEvent::Message(Box::new(p)));
                    return;
                }
                self.event(ClientEvent::Message(Box::new(p)));
                // v5 [MQTT-4.3.2-4] v3.1.1 [MQTT-4.3.2-2] PUBACK with the same identifier,
                // in the order of the PUBLISH packets (v5 v3.1.1 [MQTT-4.6.0-2]).
                let _ = self.send(&Packet::PubAck(PubAck::new(id)), now);
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if self.session.inbound_qos2.contains(&id) {
                    // v5 [MQTT-4.3.3-10] until its PUBREL, the same Packet Identifier is the
                    // same message: PUBREC again, not delivered again.
                    if manual {
                        // Queued behind the acknowledgements owed before it; held until the
                        // application acknowledges, if it has not yet.
                        let acked = !self.session.inbound_unacked.contains(&id);
                        // One entry per identifier: a PUBLISH sent again while its PUBREC waits
                        // behind earlier acknowledgements is answered by that one.
                        let already = conn.held_acks.iter().any(|h| h.id == id);
                        if !already {
                            conn.held_acks.push_back(HeldAck {
                                id,
                                qos: QoS::ExactlyOnce,
                                acked,
                            });
                        }
                        self.send_held_acks(now);
                        return;
                    }
                    let _ = self.send(&Packet::PubRec(PubRec::new(id)), now);
                    return;
                }
                if unacknowledged >= receive_maximum {
                    // Section 3.3.4: more unacknowledged QoS 1/2 PUBLISH packets than our
                    // Receive Maximum: DISCONNECT 0x93 (Receive Maximum exceeded).
                    self.fail(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, None, now);
                    return;
                }
                self.session.inbound_qos2.insert(id);
                if !manual {
                    // Stored before its PUBREC leaves: after a restart, the same identifier is
                    // still the same message.
                    self.session
                        .record(|| ClientRecord::InboundQos2 { packet_id: id });
                }
                if manual {
                    self.session.inbound_unacked.insert(id);
                    conn.held_acks.push_back(HeldAck {
                        id,
                        qos: QoS::ExactlyOnce,
                        acked: false,
                    });
                    self.event(ClientEvent::Message(Box::new(p)));
                    return;
                }
                self.event(ClientEvent::Message(Box::new(p)));
                // v5 [MQTT-4.3.3-8] v3.1.1 [MQTT-4.3.3-2] PUBREC with the same identifier, in
                // order (v5 v3.1.1 [MQTT-4.6.0-3]).
                let _ = self.send(&Packet::PubRec(PubRec::new(id)), now);
            }
            _ => self.event(ClientEvent::Message(Box::new(p))),
        }
    }

    /// Manual acknowledgement ([`ClientConfig::manual_acks`](super::ClientConfig)): the
    /// application has processed the received QoS 1 or 2 message with Packet Identifier
    /// `packet_id`, and its PUBACK or PUBREC may be sent. Acknowledgements go out in the order
    /// the messages arrived (v5 v3.1.1 [MQTT-4.6.0-2] [MQTT-4.6.0-3]), so this one may wait for
    /// earlier messages' acknowledgements. Returns `false` when no message with that identifier
    /// awaits one: already acknowledged, or a QoS 1 message of a connection that has ended (the
    /// server sends it again on resume, and it is reported again).
    ///
    /// The acknowledgement is matched by Packet Identifier. Within a session that is exact (the
    /// server does not reuse an identifier before its flow completes), but after the session is
    /// lost (Session Present 0, Clean Start) the server may give a new message an identifier the
    /// application still holds from the old session: a host whose application may acknowledge
    /// late compares [`Client::session_epoch`] at delivery and at acknowledgement, and drops
    /// acknowledgements of an earlier epoch (mqtt-client does).
    ///
    /// A QoS 2 message acknowledged while disconnected is remembered: when the server re-sends
    /// it, its PUBREC is sent at once.
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when manual acknowledgement is off.
    pub fn ack(&mut self, packet_id: PacketId, now: Timestamp) -> Result<bool, ClientError> {
        if !self.config.manual_acks {
            return Err(ClientError::NotAllowed(
                "acknowledgements are automatic (ClientConfig::manual_acks is off)",
            ));
        }
        let mut found = self.session.inbound_unacked.remove(&packet_id);
        if let Some(conn) = self.conn.as_mut()
            && let Some(held) = conn
                .held_acks
                .iter_mut()
                .find(|h| h.id == packet_id && !h.acked)
        {
            held.acked = true;
            if held.qos == QoS::AtLeastOnce {
                conn.held_qos1 = conn.held_qos1.saturating_sub(1);
            }
            found = true;
        }
        if found {
            self.send_held_acks(now);
        }
        Ok(found)
    }

    /// Received QoS 2 messages whose PUBREC was sent and whose PUBREL is awaited.
    #[must_use]
    pub fn inbound_qos2_awaiting_pubrel(&self) -> usize {
        self.session
            .inbound_qos2
            .len()
            .saturating_sub(self.session.inbound_unacked.len())
    }

    /// Received QoS 1/2 messages awaiting the application's acknowledgement (manual
    /// acknowledgement; always 0 otherwise).
    #[must_use]
    pub fn awaiting_ack(&self) -> usize {
        let held_qos1 = self.conn.as_ref().map_or(0, |c| c.held_qos1);
        held_qos1 + self.session.inbound_unacked.len()
    }

    /// Sends the held acknowledgements from the front of the queue that the application has
    /// acknowledged, stopping at the first it has not.
    fn send_held_acks(&mut self, now: Timestamp) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let Some(held) = conn.held_acks.front().copied() else {
                return;
            };
            if !held.acked {
                return;
            }
            conn.held_acks.pop_front();
            let packet = if held.qos == QoS::AtLeastOnce {
                // v5 [MQTT-4.3.2-4] v3.1.1 [MQTT-4.3.2-2]
                Packet::PubAck(PubAck::new(held.id))
            } else {
                self.session
                    .record(|| ClientRecord::InboundQos2 { packet_id: held.id });
                // v5 [MQTT-4.3.3-8] v3.1.1 [MQTT-4.3.3-2]
                Packet::PubRec(PubRec::new(held.id))
            };
            let _ = self.send(&packet, now);
        }
    }

    pub(super) fn handle_pubrel(&mut self, id: PacketId, now: Timestamp) {
        if self.session.inbound_unacked.contains(&id) {
            // A PUBREL before our PUBREC (held for the application): the server sends PUBREL in
            // answer to a PUBREC (section 4.3.3, v5 [MQTT-4.3.3-4] on its side).
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        let mut comp = PubComp::new(id);
        // v5 [MQTT-4.3.3-12] after the PUBCOMP the identifier is a new message again.
        let found = self.session.inbound_qos2.remove(&id);
        if found {
            self.session
                .record(|| ClientRecord::InboundDone { packet_id: id });
        }
        if !found && self.version().is_v5() {
            // 5.0: 0x92 Packet Identifier not found (its flow completed before, and our PUBCOMP
            // was lost). 3.1.1 has no reason codes: completed again.
            comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
        }
        // v5 [MQTT-4.3.3-11] PUBCOMP with the same Packet Identifier.
        let _ = self.send(&Packet::PubComp(comp), now);
    }

    // ---- acknowledgements of our messages -------------------------------------------------------

    pub(super) fn handle_puback(&mut self, id: PacketId, reason: ReasonCode, now: Timestamp) {
        // In flight on this connection, or sent on an earlier one and not yet again.
        let Some(i) = self.session.find_acknowledgeable(id) else {
            return;
        };
        let is_qos1 = self.session.outbound.get(i).is_some_and(|o| {
            matches!(o.state, OutState::InFlight | OutState::Pending)
                && o.publish.qos == QoS::AtLeastOnce
        });
        if !is_qos1 {
            return;
        }
        // v5 [MQTT-4.3.2-3] acknowledged by the PUBACK; v5 [MQTT-4.4.0-2] an error code
        // too.
        self.session.remove_at(i);
        self.event(ClientEvent::Published {
            packet_id: id,
            reason_code: reason,
        });
        self.pump(now);
    }

    /// A PUBREC for one of our QoS 2 messages: in flight on this connection, or sent on an
    /// earlier connection and waiting to be sent again (the server acknowledges the PUBLISH it
    /// received then: the flow goes on from there, and the PUBLISH is not sent again).
    pub(super) fn handle_pubrec(&mut self, id: PacketId, reason: ReasonCode, now: Timestamp) {
        let found = self.session.find_acknowledgeable(id).and_then(|i| {
            self.session
                .outbound
                .get(i)
                .map(|o| (i, o.state, o.publish.qos))
        });
        match found {
            Some((i, OutState::InFlight | OutState::Pending, QoS::ExactlyOnce)) => {
                if reason.is_error() {
                    // v5 [MQTT-4.4.0-2] acknowledged, and not retransmitted.
                    self.session.remove_at(i);
                    self.event(ClientEvent::Published {
                        packet_id: id,
                        reason_code: reason,
                    });
                    self.pump(now);
                    return;
                }
                // v5 [MQTT-4.3.3-4] PUBREL with the same identifier, in the order of the
                // PUBRECs (v5 v3.1.1 [MQTT-4.6.0-4]); v5 [MQTT-4.3.3-5] unacknowledged until
                // PUBCOMP; v5 [MQTT-4.3.3-6] the PUBLISH is not sent again.
                self.session.set_state(i, OutState::Released);
                self.session
                    .record(|| ClientRecord::Released { packet_id: id });
                let _ = self.send(&Packet::PubRel(PubRel::new(id)), now);
            }
            Some((_, OutState::Released, _)) => {
                let _ = self.send(&Packet::PubRel(PubRel::new(id)), now);
            }
            Some(_) => {}
            None => {
                // A PUBREC for a flow we do not have (never sent, or completed): PUBREL 0x92
                // (5.0), so the server can complete it.
                let mut rel = PubRel::new(id);
                if self.version().is_v5() {
                    rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                let _ = self.send(&Packet::PubRel(rel), now);
            }
        }
    }

    pub(super) fn handle_pubcomp(&mut self, id: PacketId, reason: ReasonCode, now: Timestamp) {
        let Some(i) = self.session.find_sent(id) else {
            return;
        };
        if self.session.outbound.get(i).map(|o| o.state) != Some(OutState::Released) {
            return;
        }
        self.session.remove_at(i);
        self.event(ClientEvent::Published {
            packet_id: id,
            reason_code: reason,
        });
        self.pump(now);
    }

    // ---- SUBACK / UNSUBACK -----------------------------------------------------------------

    pub(super) fn handle_suback(
        &mut self,
        id: PacketId,
        reason_codes: Vec<ReasonCode>,
        now: Timestamp,
    ) {
        // v5 [MQTT-2.2.1-6] v3.1.1 [MQTT-2.3.1-7] the SUBACK carries the identifier of its
        // SUBSCRIBE.
        let Some(i) = self.session.find_request(id) else {
            return;
        };
        let expected = match self.session.requests.get(i).map(|r| &r.packet) {
            Some(RequestPacket::Subscribe(s)) => s.filters.len(),
            _ => return,
        };
        // v5 [MQTT-3.8.4-6] [MQTT-3.9.3-2] v3.1.1 [MQTT-3.8.4-5] one reason code per filter.
        if reason_codes.len() != expected {
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        self.session.remove_request(i);
        self.event(ClientEvent::Subscribed {
            packet_id: id,
            reason_codes,
        });
    }

    pub(super) fn handle_unsuback(
        &mut self,
        id: PacketId,
        reason_codes: Vec<ReasonCode>,
        now: Timestamp,
    ) {
        let Some(i) = self.session.find_request(id) else {
            return;
        };
        let expected = match self.session.requests.get(i).map(|r| &r.packet) {
            Some(RequestPacket::Unsubscribe(u)) => u.filters.len(),
            _ => return,
        };
        // v5 [MQTT-3.11.3-2] one reason code per filter (3.1.1: none at all).
        let expected = if self.version().is_v5() { expected } else { 0 };
        if reason_codes.len() != expected {
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        self.session.remove_request(i);
        self.event(ClientEvent::Unsubscribed {
            packet_id: id,
            reason_codes,
        });
    }
}

/// Encodes one PUBLISH for the server into `outbox`, as a copy of `publish` with `dup` set and
/// the Topic Alias the strategy gives (see [`alias`](super::alias)) would be encoded, without
/// making the copy; `false` (nothing written) when there is no connection or it exceeds the
/// server's Maximum Packet Size (v5 [MQTT-3.2.2-15]).
fn encode_publish(
    publish: &Publish,
    dup: bool,
    conn: Option<&mut super::Connection>,
    version: mqtt_codec::ProtocolVersion,
    outbox: &mut bytes::BytesMut,
    now: Timestamp,
) -> bool {
    let Some(conn) = conn else {
        return false;
    };
    let alias = if version.is_v5() {
        conn.outbound_aliases.lookup(&publish.topic)
    } else {
        AliasUse::None
    };
    let (topic_alias, omit_topic) = match alias {
        AliasUse::None => (None, false),
        AliasUse::Establish(a) => (Some(a), false),
        AliasUse::Use(a) => (Some(a), true),
    };
    let delivery = mqtt_codec::Delivery {
        dup,
        qos: publish.qos,
        retain: publish.retain,
        packet_id: publish.packet_id,
        omit_topic,
        topic_alias,
        message_expiry_interval: publish.properties.message_expiry_interval,
        // A client's PUBLISH has none (`publish` refuses them).
        subscription_identifiers: &[],
    };
    if publish
        .encode_delivery(&delivery, version, conn.limits.maximum_packet_size, outbox)
        .is_err()
    {
        return false;
    }
    conn.last_sent = now;
    if let AliasUse::Establish(a) = alias {
        conn.outbound_aliases.established(publish.topic.clone(), a);
    }
    true
}
