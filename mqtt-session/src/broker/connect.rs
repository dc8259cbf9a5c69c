//! CONNECT, enhanced authentication, DISCONNECT and the session lifecycle: Clean Start, Session
//! Expiry, takeover, wills.

use crate::prelude::*;
use alloc::sync::Arc;

use bytes::BytesMut;
use mqtt_codec::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketType, Properties, ProtocolVersion, QoS,
    ReasonCode, Utf8String,
};

use super::message::Message;
use super::session::{NEVER_EXPIRES, PendingWill, Session};
use super::{
    AuthDecision, AuthRequest, AuthStep, Broker, BrokerEvent, ConnState, ConnectInfo, ConnectionId,
    Policy, StorageRecord, Timer,
};
use crate::time::Timestamp;

/// An authentication step the host decides later ([`AuthDecision::Defer`]), with what the
/// engine needs to go on once it has.
#[derive(Debug)]
pub(super) enum PendingAuth {
    /// A CONNECT.
    Connect {
        connect: Box<Connect>,
        client_id: String,
        assigned: bool,
    },
    /// An AUTH of the enhanced authentication exchange before the CONNACK.
    Continue {
        client_id: String,
        method: Utf8String,
    },
    /// An AUTH that re-authenticates a connected client.
    Reauthenticate { method: Utf8String },
}

impl<P: Policy> Broker<P> {
    /// Dispatches one decoded packet.
    pub(super) fn handle_packet(
        &mut self,
        connection: ConnectionId,
        packet: Packet,
        now: Timestamp,
    ) {
        let Some(state) = self.connections.get(&connection).map(|c| c.state) else {
            return;
        };
        match (state, packet) {
            (ConnState::AwaitingConnect, Packet::Connect(c)) => {
                self.handle_connect(connection, *c, now)
            }
            // [MQTT-3.1.0-2] a second CONNECT is a Protocol Error.
            (_, Packet::Connect(_)) => self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now),
            (ConnState::Authenticating, Packet::Auth(a)) => {
                self.handle_auth_continue(connection, a, now)
            }
            (ConnState::Connected, Packet::Auth(a)) => self.handle_reauth(connection, a, now),
            (_, Packet::Disconnect(d)) => self.handle_disconnect(connection, d, now),
            (ConnState::Connected, Packet::Publish(p)) => {
                self.handle_client_publish(connection, p, now)
            }
            (ConnState::Connected, Packet::PubAck(p)) => {
                self.handle_puback(connection, p.packet_id, p.reason_code)
            }
            (ConnState::Connected, Packet::PubRec(p)) => {
                self.handle_pubrec(connection, p.packet_id, p.reason_code)
            }
            (ConnState::Connected, Packet::PubRel(p)) => {
                self.handle_pubrel(connection, p.packet_id)
            }
            (ConnState::Connected, Packet::PubComp(p)) => {
                self.handle_pubcomp(connection, p.packet_id)
            }
            (ConnState::Connected, Packet::Subscribe(s)) => {
                self.handle_subscribe(connection, s, now)
            }
            (ConnState::Connected, Packet::Unsubscribe(u)) => {
                self.handle_unsubscribe(connection, u)
            }
            (ConnState::Connected, Packet::PingReq) => {
                // [MQTT-3.12.4-1] The Server MUST send a PINGRESP packet in response to a PINGREQ.
                self.send(connection, &Packet::PingResp);
            }
            // Packets a server never receives, or packets before the CONNECT completed
            // ([MQTT-3.1.2-30]: only AUTH and DISCONNECT during enhanced authentication).
            _ => self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now),
        }
    }

    fn handle_connect(&mut self, connection: ConnectionId, connect: Connect, now: Timestamp) {
        let version = connect.protocol;
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        conn.version = version;
        conn.decoder.set_version(version);
        let v5 = version.is_v5();
        let mut client_id = connect.client_id.as_str().to_owned();
        let mut assigned = false;
        if client_id.is_empty() {
            // v3.1.1 [MQTT-3.1.3-8]: a zero-byte ClientId with CleanSession 0 is rejected with
            // return code 0x02.
            if !self.config.allow_empty_client_id || (!v5 && !connect.clean_start) {
                self.reject(connection, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, now);
                return;
            }
            // [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16] assign a unique ClientID, not used
            // by any other session.
            client_id = self.assign_client_id();
            assigned = true;
        }
        if let Some(will) = &connect.will {
            // v5 [MQTT-3.2.2-12] a Will QoS above our Maximum QoS, [MQTT-3.2.2-13] a retained
            // will when retain is not available: refused (0x9B, 0x9A). A 3.1.1 client cannot be
            // told; its will is published at the QoS we support, without RETAIN.
            if v5 && will.qos > self.config.maximum_qos {
                self.reject(connection, ReasonCode::QOS_NOT_SUPPORTED, now);
                return;
            }
            if v5 && will.retain && !self.config.retain_available {
                self.reject(connection, ReasonCode::RETAIN_NOT_SUPPORTED, now);
                return;
            }
        }
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let info = ConnectInfo {
            connection,
            protocol: version,
            client_id: &client_id,
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
            authentication_method: connect.properties.authentication_method(),
            authentication_data: connect.properties.authentication_data(),
            transport: &conn.transport,
        };
        let decision = self.policy.authenticate(&info);
        if decision == AuthDecision::Defer {
            let request = AuthRequest::new(AuthStep::Connect, &info);
            self.defer_auth(
                connection,
                request,
                PendingAuth::Connect {
                    connect: Box::new(connect),
                    client_id,
                    assigned,
                },
            );
            return;
        }
        self.apply_connect_decision(connection, connect, client_id, assigned, decision, now);
    }

    /// Carries out the policy's decision on a CONNECT.
    fn apply_connect_decision(
        &mut self,
        connection: ConnectionId,
        connect: Connect,
        client_id: String,
        assigned: bool,
        decision: AuthDecision,
        now: Timestamp,
    ) {
        match decision {
            AuthDecision::Accept => {
                self.complete_connect(connection, connect, client_id, assigned, now);
            }
            AuthDecision::AcceptAs(name) => match Utf8String::try_from(name.as_str()) {
                Ok(name) => {
                    let mut connect = connect;
                    connect.username = Some(name);
                    self.complete_connect(connection, connect, client_id, assigned, now);
                }
                Err(_) => self.reject(connection, ReasonCode::BAD_USER_NAME_OR_PASSWORD, now),
            },
            AuthDecision::Reject(code) => self.reject(connection, code, now),
            // A host that answers "later" to `handle_auth_decision` has not decided.
            AuthDecision::Defer => self.reject(connection, ReasonCode::UNSPECIFIED_ERROR, now),
            AuthDecision::Continue(data) => {
                let Some(method) = connect
                    .properties
                    .authentication_method()
                    .and_then(|m| Utf8String::try_from(m).ok())
                else {
                    // [MQTT-4.12.0-6] no AUTH to a client that sent no Authentication Method.
                    self.reject(connection, ReasonCode::NOT_AUTHORIZED, now);
                    return;
                };
                let Some(conn) = self.connections.get_mut(&connection) else {
                    return;
                };
                conn.state = ConnState::Authenticating;
                // [MQTT-3.1.2-22] keep alive applies while the exchange goes on.
                conn.keep_alive_ms = u64::from(connect.keep_alive) * 1000;
                if connect.keep_alive > 0 {
                    let deadline = now.plus_millis(u64::from(connect.keep_alive) * 1500);
                    self.arm_connection(connection, deadline, super::Timer::KeepAlive(connection));
                }
                let Some(conn) = self.connections.get_mut(&connection) else {
                    return;
                };
                conn.extras().authentication_method = Some(method.clone());
                conn.client_id = Some(Arc::from(client_id));
                conn.extras().pending_assigned_id = assigned;
                conn.extras().pending_connect = Some(Box::new(connect));
                self.send_auth(
                    connection,
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    method,
                    data,
                );
            }
        }
    }

    /// The policy deferred an authentication step: the host is asked
    /// ([`Output::Authenticate`](super::Output::Authenticate)), the connection's input waits
    /// (its reading is paused), and [`Broker::handle_auth_decision`] carries on.
    fn defer_auth(&mut self, connection: ConnectionId, request: AuthRequest, pending: PendingAuth) {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        // (An assigned Client Identifier is the connection's own: nothing to wait for.)
        if let PendingAuth::Connect {
            client_id,
            assigned: false,
            ..
        } = &pending
        {
            self.auth_order
                .entry(client_id.clone())
                .or_default()
                .push_back(connection);
        }
        conn.extras().pending_auth = Some((pending, None));
        super::update_reading(&mut self.out, connection, conn);
        self.out
            .push(super::Pending::Authenticate(connection, Box::new(request)));
    }

    /// The host's answer to an [`Output::Authenticate`](super::Output::Authenticate) for
    /// `connection`. An answer for a connection that has closed, or that asked nothing, is
    /// ignored. CONNECTs with the same Client Identifier are completed in the order they
    /// arrived, whatever the order of the answers (an answer waits for the earlier ones).
    /// Then the input that waited is handled.
    pub fn handle_auth_decision(
        &mut self,
        connection: ConnectionId,
        decision: AuthDecision,
        now: Timestamp,
    ) {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        let Some((pending, decided)) = conn.extras.as_mut().and_then(|e| e.pending_auth.as_mut())
        else {
            return;
        };
        if decided.is_some() {
            return;
        }
        if let PendingAuth::Connect {
            client_id,
            assigned: false,
            ..
        } = pending
        {
            let first = self
                .auth_order
                .get(client_id.as_str())
                .and_then(|q| q.front().copied());
            if first != Some(connection) {
                // An earlier CONNECT with this Client Identifier is still being decided.
                *decided = Some(decision);
                return;
            }
        }
        self.apply_auth_decision(connection, decision, now);
    }

    /// Applies a decision to the pending step of `connection`, then the decisions that waited
    /// behind it (CONNECTs with the same Client Identifier), then the input that waited.
    pub(super) fn apply_auth_decision(
        &mut self,
        connection: ConnectionId,
        decision: AuthDecision,
        now: Timestamp,
    ) {
        // A loop, not recursion: many CONNECTs of one Client Identifier may be waiting.
        let mut next = Some((connection, decision));
        while let Some((connection, decision)) = next {
            next = self.apply_one_auth_decision(connection, decision, now);
        }
    }

    /// Applies one decision; returns the next waiting CONNECT of the same Client Identifier
    /// whose answer is already in.
    fn apply_one_auth_decision(
        &mut self,
        connection: ConnectionId,
        decision: AuthDecision,
        now: Timestamp,
    ) -> Option<(ConnectionId, AuthDecision)> {
        let conn = self.connections.get_mut(&connection)?;
        let (pending, _) = conn.extras.as_mut()?.pending_auth.take()?;
        super::update_reading(&mut self.out, connection, conn);
        let mut next = None;
        match pending {
            PendingAuth::Connect {
                connect,
                client_id,
                assigned,
            } => {
                if !assigned {
                    next = self.auth_order_done(&client_id, connection);
                }
                self.apply_connect_decision(
                    connection, *connect, client_id, assigned, decision, now,
                );
            }
            PendingAuth::Continue { client_id, method } => {
                self.apply_continue_decision(connection, client_id, method, decision, now);
            }
            PendingAuth::Reauthenticate { method } => {
                self.apply_reauth_decision(connection, method, decision, now);
            }
        }
        // The input that waited for the decision.
        self.decode_input(connection, now);
        next
    }

    /// `connection` leaves the queue of CONNECTs of `client_id` being decided; returns the
    /// next one if its answer is already in.
    pub(super) fn auth_order_done(
        &mut self,
        client_id: &str,
        connection: ConnectionId,
    ) -> Option<(ConnectionId, AuthDecision)> {
        let queue = self.auth_order.get_mut(client_id)?;
        queue.retain(|c| *c != connection);
        let next = queue.front().copied();
        if queue.is_empty() {
            self.auth_order.remove(client_id);
        }
        let next = next?;
        let conn = self.connections.get_mut(&next)?;
        let (_, decided) = conn.extras.as_mut()?.pending_auth.as_mut()?;
        decided.take().map(|d| (next, d))
    }

    fn send_auth(
        &mut self,
        connection: ConnectionId,
        reason_code: ReasonCode,
        method: Utf8String,
        data: Option<bytes::Bytes>,
    ) {
        // [MQTT-4.12.0-2] Continue authentication; [MQTT-4.12.0-5] with the same method.
        let mut auth = Auth {
            reason_code,
            properties: Properties::default(),
        };
        auth.properties.set_authentication_method(Some(method));
        // Data too long for the packet cannot be sent (as the encoder would refuse it).
        if auth
            .properties
            .set_authentication_data(data.as_deref())
            .is_ok()
        {
            self.send(connection, &Packet::Auth(auth));
        }
    }

    fn handle_auth_continue(&mut self, connection: ConnectionId, auth: Auth, now: Timestamp) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let (Some(method), Some(client_id)) = (
            conn.authentication_method().cloned(),
            conn.client_id.clone(),
        ) else {
            return;
        };
        // [MQTT-4.12.0-3] the client answers with Continue authentication and the same method.
        if auth.reason_code != ReasonCode::CONTINUE_AUTHENTICATION
            || auth.properties.authentication_method() != Some(method.as_str())
        {
            self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        let decision = self.policy.continue_authentication(
            &client_id,
            &method,
            auth.properties.authentication_data(),
        );
        if decision == AuthDecision::Defer {
            let request =
                self.auth_request(connection, AuthStep::Continue, &client_id, &method, &auth);
            self.defer_auth(
                connection,
                request,
                PendingAuth::Continue {
                    client_id: client_id.to_string(),
                    method,
                },
            );
            return;
        }
        self.apply_continue_decision(connection, client_id.to_string(), method, decision, now);
    }

    /// The request for a deferred AUTH step of `connection`.
    fn auth_request(
        &self,
        connection: ConnectionId,
        step: AuthStep,
        client_id: &str,
        method: &Utf8String,
        auth: &Auth,
    ) -> AuthRequest {
        let conn = self.connections.get(&connection);
        AuthRequest {
            step,
            protocol: conn.map_or(ProtocolVersion::V5, |c| c.version),
            client_id: client_id.to_owned(),
            username: conn.and_then(|c| c.username.as_deref().map(str::to_owned)),
            password: None,
            authentication_method: Some(method.as_str().to_owned()),
            authentication_data: auth
                .properties
                .authentication_data()
                .map(bytes::Bytes::copy_from_slice),
            transport: conn.map(|c| c.transport.clone()).unwrap_or_default(),
        }
    }

    /// Carries out the policy's decision on an AUTH of an enhanced authentication exchange.
    fn apply_continue_decision(
        &mut self,
        connection: ConnectionId,
        client_id: String,
        method: Utf8String,
        decision: AuthDecision,
        now: Timestamp,
    ) {
        match decision {
            AuthDecision::Accept | AuthDecision::AcceptAs(_) => {
                let name = match decision {
                    AuthDecision::AcceptAs(name) => match Utf8String::try_from(name.as_str()) {
                        Ok(name) => Some(name),
                        Err(_) => {
                            self.reject(connection, ReasonCode::BAD_USER_NAME_OR_PASSWORD, now);
                            return;
                        }
                    },
                    _ => None,
                };
                let Some(conn) = self.connections.get_mut(&connection) else {
                    return;
                };
                let assigned = conn.extras.as_ref().is_some_and(|e| e.pending_assigned_id);
                let Some(mut connect) = conn.extras.as_mut().and_then(|e| e.pending_connect.take())
                else {
                    return;
                };
                conn.state = ConnState::AwaitingConnect;
                if name.is_some() {
                    connect.username = name;
                }
                self.complete_connect(connection, *connect, client_id, assigned, now);
            }
            // [MQTT-4.12.0-4] reject at any point with a CONNACK of 0x80 or above.
            AuthDecision::Reject(code) => self.reject(connection, code, now),
            AuthDecision::Defer => self.reject(connection, ReasonCode::UNSPECIFIED_ERROR, now),
            AuthDecision::Continue(data) => {
                self.send_auth(
                    connection,
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    method,
                    data,
                );
            }
        }
    }

    fn handle_reauth(&mut self, connection: ConnectionId, auth: Auth, now: Timestamp) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let (Some(method), Some(client_id)) = (
            conn.authentication_method().cloned(),
            conn.client_id.clone(),
        ) else {
            // [MQTT-4.12.0-7] no AUTH from a client that did not use enhanced authentication.
            self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        };
        let allowed = [
            ReasonCode::RE_AUTHENTICATE,
            ReasonCode::CONTINUE_AUTHENTICATION,
        ];
        if !allowed.contains(&auth.reason_code)
            || auth.properties.authentication_method() != Some(method.as_str())
        {
            self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now);
            return;
        }
        let decision = self.policy.continue_authentication(
            &client_id,
            &method,
            auth.properties.authentication_data(),
        );
        if decision == AuthDecision::Defer {
            let request = self.auth_request(
                connection,
                AuthStep::Reauthenticate,
                &client_id,
                &method,
                &auth,
            );
            self.defer_auth(connection, request, PendingAuth::Reauthenticate { method });
            return;
        }
        self.apply_reauth_decision(connection, method, decision, now);
    }

    /// Carries out the policy's decision on a re-authentication AUTH.
    fn apply_reauth_decision(
        &mut self,
        connection: ConnectionId,
        method: Utf8String,
        decision: AuthDecision,
        now: Timestamp,
    ) {
        match decision {
            AuthDecision::Accept => self.send_auth(connection, ReasonCode::SUCCESS, method, None),
            // The user of a connection does not change: another name is refused.
            AuthDecision::AcceptAs(name) => {
                let same = self
                    .connections
                    .get(&connection)
                    .is_some_and(|c| c.username.as_deref() == Some(name.as_str()));
                if same {
                    self.send_auth(connection, ReasonCode::SUCCESS, method, None);
                } else {
                    self.fail(connection, ReasonCode::NOT_AUTHORIZED, None, now);
                }
            }
            AuthDecision::Continue(data) => {
                self.send_auth(
                    connection,
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    method,
                    data,
                );
            }
            // [MQTT-4.12.1-2] a failed re-authentication closes the connection.
            AuthDecision::Reject(code) => self.fail(connection, code, None, now),
            AuthDecision::Defer => self.fail(connection, ReasonCode::UNSPECIFIED_ERROR, None, now),
        }
    }

    /// Refuses a CONNECT with `code` and closes the connection. [MQTT-3.2.2-6] [MQTT-3.2.2-7]
    fn reject(&mut self, connection: ConnectionId, code: ReasonCode, now: Timestamp) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let code = if conn.version.is_v5() {
            if code.is_valid_for(PacketType::ConnAck) {
                code
            } else {
                ReasonCode::UNSPECIFIED_ERROR
            }
        } else if code.to_v3_connect_return_code().is_some() && code != ReasonCode::SUCCESS {
            code
        } else {
            ReasonCode::NOT_AUTHORIZED
        };
        self.send(connection, &Packet::ConnAck(ConnAck::new(false, code)));
        self.event(BrokerEvent::ConnectionRejected {
            connection,
            reason_code: code,
        });
        self.close_connection(connection, false, now);
    }

    fn assign_client_id(&mut self) -> String {
        loop {
            let id = format!(
                "{}{}",
                self.config.assigned_client_id_prefix, self.next_assigned_id
            );
            self.next_assigned_id += 1;
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    fn complete_connect(
        &mut self,
        connection: ConnectionId,
        connect: Connect,
        client_id: String,
        assigned: bool,
        now: Timestamp,
    ) {
        // [MQTT-3.1.3-6] an assigned Client Identifier is unique: one taken meanwhile (while
        // the authentication was decided) is replaced by a new one; the client learns it from
        // the CONNACK.
        let client_id = if assigned && self.sessions.contains_key(&client_id) {
            self.assign_client_id()
        } else {
            client_id
        };
        let version = connect.protocol;
        let v5 = version.is_v5();

        // v5 [MQTT-3.1.4-2]: when sessions belong to their users, another user's CONNECT with
        // this Client Identifier is not authorized: the session, and its client if connected,
        // stay as they are.
        if self.config.sessions_owned_by_user
            && self.sessions.get(&client_id).is_some_and(|s| {
                s.username.as_deref() != connect.username.as_ref().map(|u| u.as_str())
            })
        {
            self.reject(connection, ReasonCode::NOT_AUTHORIZED, now);
            return;
        }

        // [MQTT-3.1.4-3] v5, v3.1.1 [MQTT-3.1.4-2]: a client already connected with this
        // ClientID is disconnected (0x8E Session taken over in 5.0). Its close is abnormal, so
        // its will follows the usual rules (and is then cancelled by this connection).
        if let Some(old) = self.sessions.get(&client_id).and_then(|s| s.connection) {
            if self
                .connections
                .get(&old)
                .is_some_and(|c| c.version.is_v5())
            {
                self.send(
                    old,
                    &Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)),
                );
            }
            self.close_connection(old, false, now);
        }

        // v5 [MQTT-3.1.2-4] v3.1.1 [MQTT-3.1.2-6]: Clean Start 1 discards any existing session;
        // a will still pending is published as the session ends [MQTT-3.1.2-8].
        if connect.clean_start && self.sessions.contains_key(&client_id) {
            self.end_session(&client_id, now);
        }
        // [MQTT-3.1.3-9] a new connection to the session before the Will Delay Interval has
        // passed: the old will is not sent.
        if let Some(session) = self.sessions.get_mut(&client_id)
            && session.will.take().is_some()
        {
            self.persist(StorageRecord::WillCleared {
                client_id: client_id.clone(),
            });
        }

        // Session Expiry Interval: 5.0 from the property (absent: 0); 3.1.1 Clean Session 1
        // means a session as long as the connection, 0 one that never expires.
        let requested = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER_EXPIRES
        };
        let granted = self
            .config
            .max_session_expiry
            .map_or(requested, |m| requested.min(m));

        // v5 [MQTT-3.1.2-5] [MQTT-3.2.2-3], v3.1.1 [MQTT-3.1.2-4] [MQTT-3.2.2-2]: resume the
        // existing session (Session Present 1), or create one [MQTT-3.1.2-6].
        let session_present = self.sessions.contains_key(&client_id);
        let Some(session) = self
            .sessions
            .get_or_insert_with(&client_id, || Session::new(&client_id, granted))
        else {
            return;
        };
        let username = connect.username.as_ref().map(|u| u.as_str());
        let username_changed = session.username.as_deref() != username;
        let expiry_changed = !session_present || session.expiry_interval != granted;
        session.expiry_interval = granted;
        if username_changed {
            session.username = username.map(Arc::from);
        }
        // The connection shares the session's names (no copies of its own).
        let (shared_id, shared_username) =
            (Arc::clone(&session.client_id), session.username.clone());
        session.connection = Some(connection);
        session.expires_at = None;
        if expiry_changed || username_changed {
            self.persist(StorageRecord::Session {
                client_id: client_id.clone(),
                expiry_interval: granted,
                username: username.map(str::to_owned),
            });
        } else {
            self.persist(StorageRecord::SessionConnected {
                client_id: client_id.clone(),
            });
        }

        // The will, stored with the session [MQTT-3.1.2-7] and persisted so that a restart
        // does not lose it.
        if let Some(will) = &connect.will {
            let mut properties = will.properties.clone();
            let delay = properties.will_delay_interval.take().unwrap_or(0);
            // The will's Message Expiry Interval counts from its publication (section
            // 3.1.3.2.4), so it stays in the properties until then.
            let expires_at = None;
            let message = Message {
                topic: will.topic.clone(),
                payload: will.payload.clone(),
                qos: will.qos.min(self.config.maximum_qos),
                retain: will.retain && self.config.retain_available,
                properties: properties.into(),
                publisher: Some(Arc::from(client_id.as_str())),
                expires_at,
            };
            self.persist(StorageRecord::Will {
                client_id: client_id.clone(),
                message: Box::new(message.clone()),
                delay,
            });
            if let Some(s) = self.sessions.get_mut(&client_id) {
                s.will = Some(PendingWill {
                    message: Arc::new(message),
                    delay,
                    due: None,
                });
            }
        }

        // Connection parameters from the CONNECT.
        let props = &connect.properties;
        let server_keep_alive = match self.config.max_keep_alive {
            Some(max) if v5 && (connect.keep_alive == 0 || connect.keep_alive > max) => Some(max),
            _ => None,
        };
        // [MQTT-3.2.2-22] without Server Keep Alive the client's value is used.
        let keep_alive = server_keep_alive.unwrap_or(connect.keep_alive);
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        conn.state = ConnState::Connected;
        conn.client_id = Some(shared_id);
        conn.username = shared_username;
        conn.keep_alive_ms = u64::from(keep_alive) * 1000;
        conn.last_activity = now;
        conn.client_receive_maximum = props.receive_maximum.map_or(u16::MAX, |r| r.get());
        conn.client_maximum_packet_size = props.maximum_packet_size.map_or(u32::MAX, |m| m.get());
        conn.client_topic_alias_maximum = props.topic_alias_maximum.unwrap_or(0);
        conn.request_problem_information = props.request_problem_information.unwrap_or(true);
        if let Some(method) = props
            .authentication_method()
            .and_then(|m| Utf8String::try_from(m).ok())
        {
            conn.extras().authentication_method = Some(method);
        } else if let Some(extras) = conn.extras.as_mut() {
            extras.authentication_method = None;
        }
        conn.connect_session_expiry = requested;
        let request_response = props.request_response_information.unwrap_or(false);
        let auth_method = conn.authentication_method().cloned();
        self.disarm_connection(connection, Some(&super::Timer::KeepAlive(connection)));
        if keep_alive > 0 {
            let deadline = now.plus_millis(u64::from(keep_alive) * 1500);
            self.arm_connection(connection, deadline, super::Timer::KeepAlive(connection));
        }

        // [MQTT-3.2.2-2] [MQTT-3.2.2-3] [MQTT-3.1.4-5] CONNACK, Success.
        let mut ack = ConnAck::new(session_present, ReasonCode::SUCCESS);
        if v5 {
            let p = &mut ack.properties;
            if granted != requested {
                p.session_expiry_interval = Some(granted);
            }
            p.receive_maximum = core::num::NonZeroU16::new(self.config.receive_maximum);
            if self.config.maximum_qos != QoS::ExactlyOnce {
                p.maximum_qos = Some(self.config.maximum_qos);
            }
            if !self.config.retain_available {
                p.retain_available = Some(false);
            }
            p.maximum_packet_size = core::num::NonZeroU32::new(self.config.maximum_packet_size);
            if assigned {
                p.set_assigned_client_identifier(Utf8String::try_from(client_id.as_str()).ok());
            }
            p.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            if !self.config.wildcard_subscription_available {
                p.wildcard_subscription_available = Some(false);
            }
            if !self.config.subscription_identifiers_available {
                p.subscription_identifier_available = Some(false);
            }
            if !self.config.shared_subscription_available {
                p.shared_subscription_available = Some(false);
            }
            p.server_keep_alive = server_keep_alive;
            // [MQTT-3.1.2-28] Response Information only when asked for.
            if request_response {
                p.set_response_information(
                    self.config
                        .response_information
                        .as_deref()
                        .and_then(|r| Utf8String::try_from(r).ok()),
                );
            }
            // [MQTT-4.12.0-5] a successful CONNACK carries the Authentication Method.
            p.set_authentication_method(auth_method);
        }
        self.disarm_connection(connection, Some(&super::Timer::ConnectTimeout(connection)));
        if !self.send(connection, &Packet::ConnAck(ack)) {
            // The client's Maximum Packet Size leaves no room for our CONNACK [MQTT-3.1.2-24]:
            // the connection cannot be used; it ends as if dropped.
            self.event(BrokerEvent::ProtocolViolation {
                connection,
                reason_code: ReasonCode::PACKET_TOO_LARGE,
                error: None,
            });
            self.close_connection(connection, false, now);
            return;
        }
        self.event(BrokerEvent::ClientConnected {
            connection,
            client_id: client_id.clone(),
            session_present,
            protocol: version,
        });

        // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (DUP) and PUBREL with their original
        // Packet Identifiers, in the original order [MQTT-4.6.0-1]; the queue continues when
        // the host pulls (`poll_transmit`).
        let mut bytes = BytesMut::new();
        self.resend_inflight(&client_id, connection, &mut bytes, now);
        self.queue_bytes(connection, bytes);
        self.notify_if_sendable(&client_id);
    }

    fn handle_disconnect(&mut self, connection: ConnectionId, d: Disconnect, now: Timestamp) {
        let Some(conn) = self.connections.get(&connection) else {
            return;
        };
        let client_id = conn.client_id.clone();
        if let (Some(new_expiry), Some(client_id)) =
            (d.properties.session_expiry_interval, &client_id)
        {
            // It is a Protocol Error to set a non-zero Session Expiry Interval at DISCONNECT
            // when the CONNECT's was zero (section 3.14.2.2.2).
            if conn.connect_session_expiry == 0 && new_expiry != 0 {
                self.fail(connection, ReasonCode::PROTOCOL_ERROR, None, now);
                return;
            }
            let granted = self
                .config
                .max_session_expiry
                .map_or(new_expiry, |m| new_expiry.min(m));
            if let Some(s) = self.sessions.get_mut(client_id) {
                s.expiry_interval = granted;
            }
        }
        // [MQTT-3.14.4-3] [MQTT-3.1.2-10] only DISCONNECT with 0x00 (Normal disconnection)
        // discards the will; 0x04 asks for it, and an error code is no normal disconnection.
        let graceful = d.reason_code == ReasonCode::NORMAL_DISCONNECTION;
        self.close_connection(connection, graceful, now);
    }

    /// The session's connection ended: handle its will and start its expiry.
    pub(super) fn session_disconnected(
        &mut self,
        client_id: &str,
        connection: ConnectionId,
        graceful: bool,
        now: Timestamp,
    ) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        if session.connection != Some(connection) {
            return;
        }
        session.connection = None;
        let expiry = session.expiry_interval;
        if graceful {
            // [MQTT-3.1.2-10] removed on a normal DISCONNECT.
            if session.will.take().is_some() {
                self.persist(StorageRecord::WillCleared {
                    client_id: client_id.to_owned(),
                });
            }
        } else if let Some(will) = session.will.as_mut() {
            // [MQTT-3.1.2-8] published after the Will Delay Interval, or when the session ends.
            let due = now.plus_secs(u64::from(will.delay));
            will.due = Some(due);
            if will.delay == 0 {
                self.publish_will(client_id, now);
            } else {
                self.persist(StorageRecord::WillScheduled {
                    client_id: client_id.to_owned(),
                    at: due,
                });
                self.arm(due, Timer::Will(client_id.to_owned()));
            }
        }
        if expiry == 0 {
            // Session Expiry Interval 0: the session ends with the connection.
            self.end_session(client_id, now);
            return;
        }
        self.persist(StorageRecord::SessionDisconnected {
            client_id: client_id.to_owned(),
            at: now,
            expiry_interval: expiry,
        });
        if expiry != NEVER_EXPIRES {
            let at = now.plus_secs(u64::from(expiry));
            if let Some(s) = self.sessions.get_mut(client_id) {
                s.expires_at = Some(at);
            }
            self.arm(at, Timer::SessionExpiry(client_id.to_owned()));
        }
    }

    pub(super) fn check_session_expiry(&mut self, client_id: &str, now: Timestamp) {
        let Some(session) = self.sessions.get(client_id) else {
            return;
        };
        // [MQTT-4.1.0-2] discard the session state once the interval has passed.
        if session.connection.is_none() && session.expires_at.is_some_and(|t| t <= now) {
            self.end_session(client_id, now);
        }
    }

    pub(super) fn fire_will(&mut self, client_id: &str, at: Timestamp, now: Timestamp) {
        let due = self
            .sessions
            .get(client_id)
            .and_then(|s| s.will.as_ref())
            .and_then(|w| w.due);
        let connected = self
            .sessions
            .get(client_id)
            .is_some_and(|s| s.connection.is_some());
        if due == Some(at) && !connected {
            self.publish_will(client_id, now);
        }
    }

    /// Publishes the session's will now and removes it [MQTT-3.1.2-10], if the policy lets
    /// the session's client publish to its topic (write access, checked when it is published
    /// as for any PUBLISH).
    pub(super) fn publish_will(&mut self, client_id: &str, now: Timestamp) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        let Some(will) = session.will.take() else {
            return;
        };
        let username = session.username.clone();
        self.persist(StorageRecord::WillCleared {
            client_id: client_id.to_owned(),
        });
        if !self
            .policy
            .may_publish(client_id, username.as_deref(), &will.message.topic)
        {
            self.event(BrokerEvent::NotAuthorized {
                client_id: client_id.to_owned(),
                action: super::AuthorizationAction::Will,
                target: will.message.topic.to_string(),
            });
            return;
        }
        self.event(BrokerEvent::WillPublished {
            client_id: client_id.to_owned(),
            topic: will.message.topic.clone(),
        });
        // The Message Expiry Interval starts now.
        let mut message = Arc::unwrap_or_clone(will.message);
        message.expires_at = message
            .properties
            .message_expiry_interval
            .take()
            .map(|s| now.plus_secs(u64::from(s)));
        // v5 [MQTT-3.1.2-14] [MQTT-3.1.2-15]: retained or not as Will Retain says.
        self.accept_message(Arc::new(message), None, true, now);
    }

    /// Ends a session: its will is published if still pending [MQTT-3.1.2-8], its
    /// subscriptions and queue are discarded, and a record says so.
    pub(super) fn end_session(&mut self, client_id: &str, now: Timestamp) {
        if self
            .sessions
            .get(client_id)
            .is_some_and(|s| s.will.is_some() && s.connection.is_none())
        {
            self.publish_will(client_id, now);
        }
        let Some(session) = self.sessions.remove(client_id) else {
            return;
        };
        for filter in session.subscriptions.keys() {
            let (key, inner) = Self::tree_key(Arc::clone(&session.client_id), filter);
            self.tree.remove(inner, &key);
        }
        self.persist(StorageRecord::SessionEnded {
            client_id: client_id.to_owned(),
        });
        self.event(BrokerEvent::SessionEnded {
            client_id: client_id.to_owned(),
        });
    }

    /// The protocol version a session's client uses, when connected.
    pub(super) fn version_of(&self, connection: ConnectionId) -> Option<ProtocolVersion> {
        self.connections.get(&connection).map(|c| c.version)
    }
}
