//! Pulled transmit and the slow-consumer policy (`docs/design/engine-io.md`): the host pulls a
//! connection's bytes when its socket can take them, and the engine decides what a subscriber
//! that is behind costs: it slows the publishers that feed it for a while, then drops its QoS 0
//! messages, then disconnects it.

use crate::prelude::*;
use bytes::{Bytes, BytesMut};
use mqtt_codec::ReasonCode;

use super::delivery::{has_sendable, notify_session, pump_session};
use super::update_reading;
use super::{Broker, BrokerEvent, ConnState, Connection, ConnectionId, Policy, Timer, push_outbox};
use crate::time::Timestamp;

/// What a queued message costs besides its topic and payload, as the backlog counts it (its
/// place in the queue, its share of the message, its properties): without it, a subscriber
/// behind on many tiny messages would never count as behind.
pub(super) const QUEUED_MESSAGE_OVERHEAD: usize = 128;

/// The backlog of a session's queued messages, in bytes.
pub(super) fn queued_backlog(session: &super::session::Session) -> usize {
    session.queued_bytes + session.queued_count * QUEUED_MESSAGE_OVERHEAD
}

impl<P: Policy> Broker<P> {
    /// Up to `max_bytes` bytes to write to `connection` now, in order; `None` when it has
    /// nothing sendable (nothing queued, its send quota used up, or what is left waits for a
    /// commit). Outbound PUBLISH packets are encoded here: Packet Identifiers and Topic Aliases
    /// are assigned now, and the records of deliveries to a durable session are emitted (drain
    /// [`Broker::poll_output`] afterwards; their bytes come once they are committed).
    ///
    /// Call it when [`Output::TransmitReady`](super::Output::TransmitReady) said so and the
    /// socket can take bytes, and again while it returns some and the socket takes more.
    pub fn poll_transmit(
        &mut self,
        connection: ConnectionId,
        max_bytes: usize,
        now: Timestamp,
    ) -> Option<Bytes> {
        let max_bytes = max_bytes.max(1);
        let committed = self.committed;
        let Self {
            connections,
            sessions,
            out,
            config,
            gated,
            ..
        } = self;
        let conn = connections.get_mut(&connection)?;
        let mut data = BytesMut::new();
        // Released control packets first, in order.
        while data.len() < max_bytes {
            let Some((gate, chunk)) = conn.outbox.front_mut() else {
                break;
            };
            if *gate > committed {
                break;
            }
            let room = max_bytes - data.len();
            if chunk.len() <= room {
                if let Some((_, chunk)) = conn.outbox.pop_front() {
                    data.unsplit(chunk);
                }
            } else {
                data.unsplit(chunk.split_to(room));
            }
        }
        conn.outbox_bytes = conn.outbox_bytes.saturating_sub(data.len());
        // Then queued messages, encoded now, into what the budget leaves.
        let session = match &conn.client_id {
            Some(c) if conn.state == ConnState::Connected => {
                sessions.get_mut_cached(c, &mut conn.session_ref)
            }
            _ => None,
        };
        if let Some(session) = session {
            // (Queued messages follow the ones in flight: none past them, nothing to encode.)
            if data.len() < max_bytes
                && conn.outbox.is_empty()
                && session.outbound.len() > session.inflight
            {
                let before = out.last_record;
                let released = data.len();
                // Encoded straight after the released bytes.
                pump_session(session, conn, out, config, &mut data, max_bytes, now);
                if out.last_record > before && out.last_record > committed {
                    // Deliveries recorded just now: their bytes wait for the commit.
                    let pumped = data.split_off(released);
                    push_outbox(conn, out.last_record, pumped);
                    gated.push_back((out.last_record, connection));
                } else if data.len() > max_bytes {
                    // The last packet went past the budget: the rest waits, released.
                    let rest = data.split_off(max_bytes);
                    push_outbox(conn, committed, rest);
                }
            }
            let sendable = match conn.outbox.front() {
                Some((gate, _)) => *gate <= committed,
                None => has_sendable(session, conn, config),
            };
            if !sendable {
                conn.notified = false;
            }
        } else if conn
            .outbox
            .front()
            .is_none_or(|(gate, _)| *gate > committed)
        {
            conn.notified = false;
        }
        if conn.self_paused && conn.outbox_bytes <= config.max_connection_backlog / 2 {
            conn.self_paused = false;
            update_reading(out, connection, conn);
        }
        // A pull means the socket has room: a connection that was behind may be back under
        // half its backlog, even when nothing was left to give it (its queue purged while stuck).
        if conn.over_backlog_since.is_some() {
            self.progress(connection);
        }
        (!data.is_empty()).then(|| data.freeze())
    }

    /// Says `TransmitReady` for the connection of `client_id`'s session when it has a queued
    /// message to send.
    pub(super) fn notify_if_sendable(&mut self, client_id: &str) {
        let Self {
            sessions,
            connections,
            out,
            config,
            ..
        } = self;
        if let Some(session) = sessions.get(client_id) {
            notify_session(session, connections, out, config);
        }
    }

    /// The bytes `connection` has waiting to be sent, as the slow-consumer policy counts them
    /// (its encoded control packets and its session's queued messages), or `None` for an
    /// unknown connection. Compare with `BrokerConfig::max_connection_backlog`.
    #[must_use]
    pub fn connection_backlog(&self, connection: ConnectionId) -> Option<usize> {
        self.connections.get(&connection).map(|c| self.backlog(c))
    }

    /// The connection's backlog in bytes: its outbox and its session's queued messages.
    fn backlog(&self, conn: &Connection) -> usize {
        let queued = conn
            .client_id
            .as_ref()
            .and_then(|c| self.sessions.get(c))
            .map_or(0, queued_backlog);
        conn.outbox_bytes + queued
    }

    /// The host pulled bytes of `connection`: back under half its backlog, it is no longer
    /// behind (the publishers it slowed are resumed, and a stuck run ends).
    fn progress(&mut self, connection: ConnectionId) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        if conn.over_backlog_since.is_none() {
            return;
        }
        if self.backlog(conn) > self.config.max_connection_backlog / 2 {
            return;
        }
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        conn.over_backlog_since = None;
        conn.drop_reported = false;
        let publishers = core::mem::take(&mut conn.pausing);
        let recovered = conn
            .stuck_since
            .take()
            .is_some()
            .then(|| BrokerEvent::ConsumerRecovered {
                connection,
                client_id: conn.client_id.as_deref().unwrap_or_default().to_owned(),
                dropped: core::mem::take(&mut conn.dropped_qos0),
            });
        self.release_paused_publishers(publishers);
        if let Some(event) = recovered {
            self.event(event);
        }
        self.disarm_connection(connection, Some(&Timer::Stuck(connection)));
        self.disarm_connection(connection, Some(&Timer::StuckTooLong(connection)));
    }

    /// Resumes `publishers`, which a subscriber that was behind had slowed (its `pausing`).
    pub(super) fn release_paused_publishers(&mut self, publishers: Vec<ConnectionId>) {
        for publisher in publishers {
            if let Some(p) = self.connections.get_mut(&publisher) {
                p.paused_by = p.paused_by.saturating_sub(1);
                update_reading(&mut self.out, publisher, p);
            }
        }
    }

    /// `stuck_after` has passed since `connection` went over its backlog: if it still is, it
    /// is stuck.
    pub(super) fn check_stuck(&mut self, connection: ConnectionId, now: Timestamp) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        if conn.over_backlog_since.is_none() || conn.stuck_since.is_some() {
            return;
        }
        let backlog = self.backlog(conn);
        if backlog <= self.config.max_connection_backlog {
            // Back under (not yet under half): no longer over, and the publishers it slowed
            // have waited long enough. If it goes over again, the count starts again.
            if let Some(conn) = self.connections.get_mut(&connection) {
                conn.over_backlog_since = None;
                let publishers = core::mem::take(&mut conn.pausing);
                self.release_paused_publishers(publishers);
            }
            return;
        }
        let Some(mut conn) = self.connections.remove(&connection) else {
            return;
        };
        conn.stuck_since = Some(now);
        self.release_paused_publishers(core::mem::take(&mut conn.pausing));
        // Its queued QoS 0 messages go now, so that they leave room in its session's queue
        // for the QoS 1/2 messages that wait for it.
        if let Some(session) = conn
            .client_id
            .as_ref()
            .and_then(|c| self.sessions.get_mut(c))
        {
            let mut index = session.inflight;
            let mut first = None;
            while let Some(out) = session.outbound.get(index) {
                if out.qos == mqtt_codec::QoS::AtMostOnce {
                    if let Some(out) = session.remove_at(index) {
                        first.get_or_insert(out.message.topic.clone());
                    }
                    conn.dropped_qos0 += 1;
                } else {
                    index += 1;
                }
            }
            if let (Some(topic), Some(client_id)) = (first, &conn.client_id) {
                conn.drop_reported = true;
                self.out.event(BrokerEvent::MessageDropped {
                    client_id: client_id.to_string(),
                    topic,
                    reason: super::DropReason::SlowConsumer,
                });
            }
        }
        let client_id = conn.client_id.clone().unwrap_or_default();
        self.connections.insert(connection, conn);
        self.event(BrokerEvent::ConsumerStuck {
            connection,
            client_id: client_id.to_string(),
            backlog,
        });
        if let Some(secs) = self.config.disconnect_stuck_after {
            let at = now.plus_secs(u64::from(secs));
            self.arm_connection(connection, at, Timer::StuckTooLong(connection));
        }
    }

    /// `disconnect_stuck_after` has passed since `connection` became stuck: if it still is, it
    /// is disconnected (DISCONNECT 0x97 Quota exceeded in 5.0; its will follows the usual
    /// rules).
    pub(super) fn check_stuck_too_long(&mut self, connection: ConnectionId, now: Timestamp) {
        let stuck = self
            .connections
            .get(&connection)
            .is_some_and(|c| c.stuck_since.is_some());
        if stuck {
            self.fail(connection, ReasonCode::QUOTA_EXCEEDED, None, now);
        }
    }
}
