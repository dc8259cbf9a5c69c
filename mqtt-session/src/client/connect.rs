//! The connection lifecycle: CONNECT and CONNACK (Clean Start, Session Present, Assigned Client
//! Identifier, the server's limits), enhanced authentication, DISCONNECT both ways, keep alive.

use crate::prelude::*;
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Auth, ConnAck, Connect, Decoder, Disconnect, Packet, Properties, QoS, ReasonCode, Utf8String,
};

use super::alias::{InboundAliases, OutboundAliases};
use super::session::{OutState, RequestPacket};
use super::{Client, ClientError, ClientEvent, ConnState, Connection, DropReason, ServerLimits};
use crate::time::Timestamp;

fn utf8(s: &str, what: &'static str) -> Result<Utf8String, ClientError> {
    Utf8String::try_from(s).map_err(|_| ClientError::InvalidConfig(what))
}

impl Client {
    /// The CONNECT for the next connection.
    pub(super) fn connect_packet(&self, clean_start: bool) -> Result<Connect, ClientError> {
        let c = &self.config;
        let v5 = c.protocol.is_v5();
        let mut connect = Connect::new(
            c.protocol,
            utf8(
                &self.client_id,
                "Client Identifier is not a valid UTF-8 string",
            )?,
        );
        connect.clean_start = clean_start;
        connect.keep_alive = c.keep_alive;
        connect.will = c.will.clone();
        connect.username = match &c.username {
            Some(u) => Some(utf8(u, "User Name is not a valid UTF-8 string")?),
            None => None,
        };
        connect.password = c.password.clone();
        if v5 {
            let p = &mut connect.properties;
            if c.session_expiry_interval != 0 {
                p.session_expiry_interval = Some(c.session_expiry_interval);
            }
            if c.receive_maximum != u16::MAX {
                p.receive_maximum = core::num::NonZeroU16::new(c.receive_maximum);
            }
            if c.maximum_packet_size < Decoder::MAX_PACKET_SIZE {
                p.maximum_packet_size = core::num::NonZeroU32::new(c.maximum_packet_size);
            }
            if c.topic_alias_maximum != 0 {
                p.topic_alias_maximum = Some(c.topic_alias_maximum);
            }
            if c.request_response_information {
                p.request_response_information = Some(true);
            }
            if !c.request_problem_information {
                p.request_problem_information = Some(false);
            }
            p.set_authentication_method(match &c.authentication_method {
                Some(m) => Some(utf8(
                    m,
                    "Authentication Method is not a valid UTF-8 string",
                )?),
                None => None,
            });
            p.set_authentication_data(c.authentication_data.as_deref())
                .map_err(|_| {
                    ClientError::InvalidConfig("Authentication Data is longer than 65 535 bytes")
                })?;
        }
        Ok(connect)
    }

    /// The transport to the server is up: the CONNECT is sent, first
    /// (v5 v3.1.1 [MQTT-3.1.0-1]). A connection still up (the host did not report its end) is
    /// ended first.
    pub fn handle_connected(&mut self, now: Timestamp) {
        if self.conn.is_some() {
            self.end_connection(false, None, false, None, None);
        }
        let v5 = self.version().is_v5();
        // MQTT 5.0: Clean Start as configured until the first CONNACK, then resume. MQTT 3.1.1:
        // Clean Session as configured, always (it is what makes a 3.1.1 session persistent).
        let clean_start = if !v5 {
            self.config.clean_start
        } else if self.force_clean_start || !self.ever_connected {
            self.config.clean_start || self.force_clean_start
        } else {
            false
        };
        self.force_clean_start = false;
        if clean_start {
            // v5 [MQTT-3.1.2-4] v3.1.1 [MQTT-3.1.2-6] Clean Start 1: the Client discards any
            // existing Session and starts a new one.
            self.discard_session();
        }
        let resuming = !clean_start && self.session.may_exist_on_server;
        self.session.expiry_interval = self.config.session_expiry_interval;
        // `new` checked that the configuration makes a valid CONNECT (and an assigned Client
        // Identifier is a valid string): this cannot fail, but must not panic.
        let Ok(connect) = self.connect_packet(clean_start) else {
            self.out
                .push_back(super::Pending::Close(bytes::Bytes::new()));
            self.event(ClientEvent::Disconnected {
                reason_code: None,
                from_server: false,
                reason_string: None,
                server_reference: None,
            });
            return;
        };
        let keep_alive = self.config.keep_alive;
        let expiry = self.config.session_expiry_interval;
        self.conn = Some(Connection {
            state: ConnState::AwaitingConnAck,
            read_buf: BytesMut::new(),
            decoder: Decoder::with_version(self.version())
                .max_packet_size(self.config.maximum_packet_size),
            clean_start,
            resuming,
            connect_session_expiry: if v5 { expiry } else { 0 },
            opened_at: now,
            last_sent: now,
            ping_sent: None,
            limits: ServerLimits::unknown(keep_alive, expiry),
            // v5 [MQTT-3.2.2-18] no Topic Alias before the server said how many.
            outbound_aliases: OutboundAliases::new(0),
            // v5 [MQTT-3.3.2-7] aliases do not carry over from one connection to another.
            inbound_aliases: InboundAliases::new(if v5 {
                self.config.topic_alias_maximum
            } else {
                0
            }),
            challenge_pending: false,
            reauthenticating: false,
            held_acks: alloc::collections::VecDeque::new(),
            held_qos1: 0,
        });
        let _ = self.send(&Packet::from(connect), now);
    }

    /// Discards the Session State (Clean Start 1, or Session Present 0), reporting each message
    /// sent and not completely acknowledged as dropped, or keeping it to send again as a new
    /// message when the configuration says so for its QoS.
    pub(super) fn discard_session(&mut self) {
        self.session_epoch = self.session_epoch.wrapping_add(1);
        let (qos1, qos2) = (
            self.config.resend_qos1_on_session_loss,
            self.config.resend_qos2_on_session_loss,
        );
        let resend = |qos| match qos {
            QoS::AtLeastOnce => qos1,
            QoS::ExactlyOnce => qos2,
            QoS::AtMostOnce => false,
        };
        for out in self.session.discard(resend) {
            self.event(ClientEvent::PublishDropped {
                packet_id: out.publish.packet_id,
                reason: DropReason::SessionDiscarded,
            });
        }
    }

    /// Dispatches one packet from the server.
    pub(super) fn handle_packet(&mut self, packet: Packet, now: Timestamp) {
        let Some(state) = self.conn.as_ref().map(|c| c.state) else {
            return;
        };
        match (state, packet) {
            (ConnState::AwaitingConnAck, Packet::ConnAck(ack)) => self.handle_connack(ack, now),
            (_, Packet::Auth(auth)) => self.handle_auth(auth, now),
            (ConnState::Connected, Packet::Publish(p)) => self.handle_publish(p, now),
            (ConnState::Connected, Packet::PubAck(a)) => {
                self.handle_puback(a.packet_id, a.reason_code, now)
            }
            (ConnState::Connected, Packet::PubRec(r)) => {
                self.handle_pubrec(r.packet_id, r.reason_code, now)
            }
            (ConnState::Connected, Packet::PubRel(r)) => self.handle_pubrel(r.packet_id, now),
            (ConnState::Connected, Packet::PubComp(c)) => {
                self.handle_pubcomp(c.packet_id, c.reason_code, now)
            }
            (ConnState::Connected, Packet::SubAck(s)) => {
                self.handle_suback(s.packet_id, s.reason_codes, now)
            }
            (ConnState::Connected, Packet::UnsubAck(u)) => {
                self.handle_unsuback(u.packet_id, u.reason_codes, now)
            }
            (ConnState::Connected, Packet::PingResp) => {
                if let Some(conn) = self.conn.as_mut() {
                    conn.ping_sent = None;
                }
            }
            (ConnState::Connected, Packet::Disconnect(d)) => self.handle_server_disconnect(d),
            // v5 [MQTT-3.2.0-1] v3.1.1 [MQTT-3.2.0-1] the CONNACK comes first (only AUTH may
            // precede it); v5 [MQTT-3.2.0-2] only one; v5 [MQTT-3.14.0-1] no DISCONNECT before
            // it; and packets only a client sends.
            _ => self.fail(ReasonCode::PROTOCOL_ERROR, None, now),
        }
    }

    fn handle_connack(&mut self, ack: ConnAck, now: Timestamp) {
        let v5 = self.version().is_v5();
        let reason_string = ack.properties.reason_string().map(str::to_string);
        let server_reference = ack.properties.server_reference().map(str::to_string);
        if ack.reason_code != ReasonCode::SUCCESS {
            // v5 [MQTT-3.2.2-7] v3.1.1 [MQTT-3.2.2-5] the server closes after a refusal; so do
            // we. v5 [MQTT-3.2.2-6] Session Present is 0 (the codec checks it).
            self.event(ClientEvent::ConnectionRefused {
                reason_code: ack.reason_code,
                reason_string: reason_string.clone(),
                server_reference: server_reference.clone(),
            });
            self.end_connection(
                true,
                Some(ack.reason_code),
                true,
                reason_string,
                server_reference,
            );
            return;
        }
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let resuming = conn.resuming;
        // v5 [MQTT-4.12.0-5] a successful CONNACK carries our Authentication Method;
        // v5 [MQTT-4.12.0-6] none when we sent none.
        let method = ack.properties.authentication_method();
        if v5 && method != self.config.authentication_method.as_deref() {
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        // v5 [MQTT-3.2.2-16] an empty Client Identifier is answered with the one assigned.
        let assigned = ack
            .properties
            .assigned_client_identifier()
            .map(str::to_string);
        if v5 && self.client_id.is_empty() && assigned.is_none() {
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        if ack.session_present && !resuming {
            // v5 [MQTT-3.2.2-4] Session Present 1 while the client has no Session
            // State: close the connection. The next CONNECT starts clean, so that client and
            // server agree again.
            self.force_clean_start = true;
            if let Some(conn) = self.conn.as_mut() {
                conn.state = ConnState::Connected;
            }
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        if !ack.session_present {
            // v5 [MQTT-3.2.2-5] Session Present 0 while the client has Session State:
            // it is discarded.
            self.discard_session();
        }
        let limits = ServerLimits::from_connack(
            &ack,
            self.config.keep_alive,
            self.config.session_expiry_interval,
        );
        if let Some(id) = assigned.as_ref().filter(|_| self.client_id.is_empty()) {
            // Used on every later connection, so that they resume this session.
            self.client_id.clone_from(id);
            let id = id.clone();
            self.session.record(|| super::ClientRecord::ClientId(id));
        }
        self.ever_connected = true;
        self.session.may_exist_on_server = true;
        if v5 {
            self.session.expiry_interval = limits.session_expiry_interval;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        conn.state = ConnState::Connected;
        conn.outbound_aliases =
            OutboundAliases::new(if v5 { limits.topic_alias_maximum } else { 0 });
        conn.limits = limits.clone();
        self.event(ClientEvent::Connected {
            session_present: ack.session_present,
            assigned_client_id: assigned.filter(|_| v5),
            server: Box::new(limits),
        });
        self.resume(now);
    }

    /// After the CONNACK: PUBREL again for what awaits PUBCOMP, the requests not acknowledged,
    /// then the queued messages (those to re-deliver first). v5 v3.1.1 [MQTT-4.4.0-1]
    /// v5 v3.1.1 [MQTT-4.6.0-1]
    fn resume(&mut self, now: Timestamp) {
        let rels: Vec<mqtt_codec::PacketId> = self
            .session
            .outbound
            .iter()
            .filter(|o| o.state == OutState::Released)
            .filter_map(|o| o.publish.packet_id)
            .collect();
        for id in rels {
            let _ = self.send(&Packet::PubRel(mqtt_codec::PubRel::new(id)), now);
        }
        self.send_requests(now);
        self.pump(now);
    }

    /// Sends the SUBSCRIBE / UNSUBSCRIBE requests not sent on this connection, in order.
    pub(super) fn send_requests(&mut self, now: Timestamp) {
        if !self.is_connected() {
            return;
        }
        let mut i = 0;
        while let Some(r) = self.session.requests.get(i) {
            if r.sent {
                i += 1;
                continue;
            }
            let (packet, count) = match &r.packet {
                RequestPacket::Subscribe(s) => (Packet::Subscribe(s.clone()), s.filters.len()),
                RequestPacket::Unsubscribe(u) => (Packet::Unsubscribe(u.clone()), u.filters.len()),
            };
            if self.send(&packet, now).is_ok() {
                if let Some(r) = self.session.requests.get_mut(i) {
                    r.sent = true;
                }
                i += 1;
            } else {
                // Too large for this server (v5 [MQTT-3.2.2-15]): answered as refused, with every
                // filter failed (0x95 Packet too large is no SUBACK code; 0x80 is).
                let codes = vec![ReasonCode::UNSPECIFIED_ERROR; count];
                if let Some(r) = self.session.remove_request(i) {
                    let packet_id = r.packet_id();
                    self.event(match r.packet {
                        RequestPacket::Subscribe(_) => ClientEvent::Subscribed {
                            packet_id,
                            reason_codes: codes,
                        },
                        RequestPacket::Unsubscribe(_) => ClientEvent::Unsubscribed {
                            packet_id,
                            reason_codes: codes,
                        },
                    });
                }
            }
        }
    }

    // ---- enhanced authentication (MQTT 5.0, section 4.12) -----------------------------------

    fn handle_auth(&mut self, auth: Auth, now: Timestamp) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let state = conn.state;
        let reauthenticating = conn.reauthenticating;
        let Some(method) = self.config.authentication_method.clone() else {
            // v5 [MQTT-4.12.0-6] no AUTH to a client that sent no Authentication Method.
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        };
        // v5 [MQTT-4.12.0-5] every AUTH carries the method of the CONNECT.
        if auth.properties.authentication_method() != Some(method.as_str()) {
            self.fail(ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        match auth.reason_code {
            // v5 [MQTT-4.12.0-2] the server asks for more with 0x18 Continue authentication.
            ReasonCode::CONTINUE_AUTHENTICATION
                if state == ConnState::AwaitingConnAck || reauthenticating =>
            {
                if let Some(conn) = self.conn.as_mut() {
                    conn.challenge_pending = true;
                }
                self.event(ClientEvent::AuthChallenge {
                    method,
                    data: auth.properties.authentication_data_bytes(),
                });
            }
            // Section 4.12.1: a re-authentication ends with AUTH 0x00.
            ReasonCode::SUCCESS if state == ConnState::Connected && reauthenticating => {
                if let Some(conn) = self.conn.as_mut() {
                    conn.reauthenticating = false;
                    conn.challenge_pending = false;
                }
                self.event(ClientEvent::Reauthenticated);
            }
            _ => self.fail(ReasonCode::PROTOCOL_ERROR, None, now),
        }
    }

    fn send_auth(
        &mut self,
        reason_code: ReasonCode,
        data: Option<Bytes>,
        now: Timestamp,
    ) -> Result<(), ClientError> {
        let method =
            self.config
                .authentication_method
                .as_deref()
                .ok_or(ClientError::NotAllowed(
                    "no Authentication Method configured",
                ))?;
        let mut properties = Properties::default();
        properties.set_authentication_method(Some(utf8(method, "invalid Authentication Method")?));
        properties
            .set_authentication_data(data.as_deref())
            .map_err(|v| {
                ClientError::InvalidPacket(mqtt_codec::Error::new(
                    v,
                    Some(mqtt_codec::PacketType::Auth),
                    Some(self.version()),
                ))
            })?;
        let packet = Packet::Auth(Auth {
            reason_code,
            properties,
        });
        let limit = self
            .conn
            .as_ref()
            .map_or(u32::MAX, |c| c.limits.maximum_packet_size);
        let size = packet
            .encoded_len(self.version())
            .map_err(ClientError::InvalidPacket)?;
        if size > limit as usize {
            return Err(ClientError::PacketTooLarge {
                size,
                maximum: limit,
            });
        }
        self.send(&packet, now).map_err(ClientError::InvalidPacket)
    }

    /// Answers the server's [`ClientEvent::AuthChallenge`] with the next Authentication Data:
    /// AUTH 0x18 (Continue authentication) with our method. v5 [MQTT-4.12.0-3]
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when no challenge awaits an answer (or the protocol is
    /// 3.1.1); [`ClientError::PacketTooLarge`] when the data does not fit the server's Maximum
    /// Packet Size.
    pub fn authenticate(&mut self, data: Option<Bytes>, now: Timestamp) -> Result<(), ClientError> {
        if !self.conn.as_ref().is_some_and(|c| c.challenge_pending) {
            return Err(ClientError::NotAllowed(
                "no authentication challenge awaits an answer",
            ));
        }
        self.send_auth(ReasonCode::CONTINUE_AUTHENTICATION, data, now)?;
        if let Some(conn) = self.conn.as_mut() {
            conn.challenge_pending = false;
        }
        Ok(())
    }

    /// Starts a re-authentication: AUTH 0x19 (Re-authenticate) with our method and `data`.
    /// v5 [MQTT-4.12.1-1]
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when not connected, without an Authentication Method in
    /// the CONNECT (v5 [MQTT-4.12.0-7]), or while an exchange is going on.
    pub fn reauthenticate(
        &mut self,
        data: Option<Bytes>,
        now: Timestamp,
    ) -> Result<(), ClientError> {
        if !self.is_connected() {
            return Err(ClientError::NotAllowed("not connected"));
        }
        if self.config.authentication_method.is_none() {
            // v5 [MQTT-4.12.0-7] no AUTH from a client that sent no Authentication Method.
            return Err(ClientError::NotAllowed(
                "re-authentication needs an Authentication Method in the CONNECT",
            ));
        }
        if self.conn.as_ref().is_some_and(|c| c.reauthenticating) {
            return Err(ClientError::NotAllowed("a re-authentication is going on"));
        }
        self.send_auth(ReasonCode::RE_AUTHENTICATE, data, now)?;
        if let Some(conn) = self.conn.as_mut() {
            conn.reauthenticating = true;
        }
        Ok(())
    }

    // ---- DISCONNECT ---------------------------------------------------------------------------

    /// Ends the connection: DISCONNECT with `reason_code` (MQTT 5.0; 0x00 discards the will,
    /// 0x04 asks for it) and, in MQTT 5.0, a new Session Expiry Interval; then the transport is
    /// closed. Queued messages and requests stay queued for the next connection.
    ///
    /// # Errors
    /// [`ClientError::NotAllowed`] when no transport is up, for a reason code or Session
    /// Expiry Interval in MQTT 3.1.1, or for a non-zero Session Expiry Interval when the
    /// CONNECT's was 0 (a Protocol Error, section 3.14.2.2.2); [`ClientError::InvalidPacket`]
    /// for a reason code that is not a DISCONNECT reason code (v5 [MQTT-3.14.2-1]).
    pub fn disconnect(
        &mut self,
        reason_code: ReasonCode,
        session_expiry_interval: Option<u32>,
        now: Timestamp,
    ) -> Result<(), ClientError> {
        let Some(conn) = self.conn.as_ref() else {
            return Err(ClientError::NotAllowed("not connected"));
        };
        let v5 = self.version().is_v5();
        if !v5
            && (reason_code != ReasonCode::NORMAL_DISCONNECTION
                || session_expiry_interval.is_some())
        {
            return Err(ClientError::NotAllowed(
                "MQTT 3.1.1 DISCONNECT has no reason code or properties",
            ));
        }
        if conn.connect_session_expiry == 0 && session_expiry_interval.is_some_and(|e| e != 0) {
            return Err(ClientError::NotAllowed(
                "a Session Expiry Interval cannot be set at DISCONNECT when the CONNECT's was 0",
            ));
        }
        let mut d = Disconnect::new(reason_code);
        d.properties.session_expiry_interval = session_expiry_interval;
        let packet = Packet::Disconnect(d);
        packet
            .encoded_len(self.version())
            .map_err(ClientError::InvalidPacket)?;
        // v5 v3.1.1 [MQTT-3.14.4-1] [MQTT-3.14.4-2] nothing
        // after the DISCONNECT, and the connection is closed.
        let _ = self.send(&packet, now);
        if let Some(expiry) = session_expiry_interval {
            self.session.expiry_interval = expiry;
        }
        self.end_connection(true, Some(reason_code), false, None, None);
        Ok(())
    }

    fn handle_server_disconnect(&mut self, d: Disconnect) {
        let p = d.properties;
        self.end_connection(
            true,
            Some(d.reason_code),
            true,
            p.reason_string().map(str::to_string),
            p.server_reference().map(str::to_string),
        );
    }

    // ---- keep alive and timers ------------------------------------------------------------------

    /// The earliest deadline: the CONNACK's, the PINGRESP's, or when the PINGREQ is due.
    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        let conn = self.conn.as_ref()?;
        match conn.state {
            ConnState::AwaitingConnAck => {
                self.config.connect_timeout.map(|d| conn.opened_at.plus(d))
            }
            ConnState::Connected => match conn.ping_sent {
                Some(at) => Some(at.plus(self.config.ping_timeout)),
                None if conn.limits.keep_alive > 0 => {
                    Some(conn.last_sent.plus_secs(u64::from(conn.limits.keep_alive)))
                }
                None => None,
            },
        }
    }

    /// Fires every deadline up to `now` (each firing moves the next one on or ends the
    /// connection, so this ends).
    pub(super) fn check_timers(&mut self, now: Timestamp) {
        while self.next_deadline().is_some_and(|d| d <= now) {
            self.fire_timer(now);
        }
    }

    fn fire_timer(&mut self, now: Timestamp) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        match (conn.state, conn.ping_sent) {
            (ConnState::AwaitingConnAck, _) => {
                self.event(ClientEvent::ConnectTimeout);
                self.end_connection(true, None, false, None, None);
            }
            (ConnState::Connected, Some(_)) => {
                // Section 3.1.2.10: no PINGRESP within a reasonable time; close the connection.
                self.event(ClientEvent::PingTimeout);
                self.end_connection(true, None, false, None, None);
            }
            (ConnState::Connected, None) => {
                // v5 [MQTT-3.1.2-20] v3.1.1 [MQTT-3.1.2-23] nothing sent for a Keep Alive:
                // PINGREQ.
                let _ = self.send(&Packet::PingReq, now);
                if let Some(conn) = self.conn.as_mut() {
                    conn.ping_sent = Some(now);
                }
            }
        }
    }
}
