//! Authentication and authorization are the host's decisions.

use crate::prelude::*;
use bytes::Bytes;
use mqtt_codec::{ProtocolVersion, ReasonCode};

use super::ConnectionId;

/// What the broker knows of a connecting client when it asks the policy. Its `Debug` shows
/// neither the password nor the authentication data.
#[non_exhaustive]
pub struct ConnectInfo<'a> {
    /// The connection.
    pub connection: ConnectionId,
    /// The protocol version.
    pub protocol: ProtocolVersion,
    /// The Client Identifier (the assigned one when the client sent none).
    pub client_id: &'a str,
    /// The User Name.
    pub username: Option<&'a str>,
    /// The Password.
    pub password: Option<&'a [u8]>,
    /// The Authentication Method (MQTT 5.0 enhanced authentication).
    pub authentication_method: Option<&'a str>,
    /// The Authentication Data.
    pub authentication_data: Option<&'a [u8]>,
    /// Where the connection comes from, as the host told
    /// ([`Broker::handle_connection_opened_with`](super::Broker::handle_connection_opened_with)).
    pub transport: &'a ConnectionInfo,
}

impl<'a> ConnectInfo<'a> {
    /// A CONNECT of `client_id` on `connection`, without User Name, Password or
    /// authentication (set the public fields for those): for testing a [`Policy`]. The engine
    /// fills it from the CONNECT it received.
    #[must_use]
    pub fn new(
        connection: ConnectionId,
        protocol: ProtocolVersion,
        client_id: &'a str,
        transport: &'a ConnectionInfo,
    ) -> Self {
        Self {
            connection,
            protocol,
            client_id,
            username: None,
            password: None,
            authentication_method: None,
            authentication_data: None,
            transport,
        }
    }
}

impl core::fmt::Debug for ConnectInfo<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConnectInfo")
            .field("connection", &self.connection)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .field("authentication_method", &self.authentication_method)
            .field(
                "authentication_data",
                &self.authentication_data.map(|_| "<redacted>"),
            )
            .field("transport", &self.transport)
            .finish()
    }
}

/// What the host knows of a connection when it opens it: the peer's address and, over TLS, the
/// identity its client certificate proves. Given to the policy with every CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The peer's address.
    pub peer: Option<core::net::SocketAddr>,
    /// The identity of a verified client certificate (for example its Common Name).
    pub tls_identity: Option<String>,
}

impl ConnectionInfo {
    /// A connection from `peer`.
    #[must_use]
    pub fn from_peer(peer: core::net::SocketAddr) -> Self {
        Self {
            peer: Some(peer),
            tls_identity: None,
        }
    }

    /// With the identity a verified client certificate proves.
    #[must_use]
    pub fn with_tls_identity(mut self, identity: impl Into<String>) -> Self {
        self.tls_identity = Some(identity.into());
        self
    }
}

/// A policy's answer to an authentication step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthDecision {
    /// Accept the client.
    Accept,
    /// Accept the client as this user: the session's User Name — what the policy's
    /// `may_publish`, `may_subscribe` and `may_receive` are told, and who owns the session
    /// ([`BrokerConfig::sessions_owned_by_user`](super::BrokerConfig::sessions_owned_by_user))
    /// — is this name instead of the CONNECT's (for example the name a TLS client
    /// certificate proves). A name that is not a valid MQTT UTF-8 string is refused (0x86).
    /// In a re-authentication it must be the connection's current user.
    AcceptAs(String),
    /// Reject it with this CONNACK (or DISCONNECT, when re-authenticating) reason code
    /// (MQTT 3.1.1 clients get the matching return code, or "not authorized").
    Reject(ReasonCode),
    /// Enhanced authentication: send AUTH with Continue authentication and this data, and wait
    /// for the client's next AUTH. [MQTT-4.12.0-2]
    Continue(Option<Bytes>),
    /// Decide later, off the engine's thread (a password hash, a directory lookup): the engine
    /// emits [`Output::Authenticate`](super::Output::Authenticate) with an [`AuthRequest`],
    /// stops reading the connection, and goes on when the host calls
    /// [`Broker::handle_auth_decision`](super::Broker::handle_auth_decision) with one of the
    /// other answers.
    Defer,
}

/// Which authentication step an [`AuthRequest`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthStep {
    /// A CONNECT (with its User Name, Password, and Authentication Method and Data if any).
    Connect,
    /// An AUTH of the enhanced authentication exchange before the CONNACK.
    Continue,
    /// An AUTH by which a connected client re-authenticates (MQTT 5.0, section 4.12.1).
    Reauthenticate,
}

/// What the host is asked to decide, with [`Output::Authenticate`](super::Output::Authenticate).
/// Its `Debug` shows neither the password nor the authentication data.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthRequest {
    /// The step.
    pub step: AuthStep,
    /// The protocol version.
    pub protocol: ProtocolVersion,
    /// The Client Identifier (the assigned one when the client sent none).
    pub client_id: String,
    /// The User Name.
    pub username: Option<String>,
    /// The Password (CONNECT only).
    pub password: Option<Bytes>,
    /// The Authentication Method (enhanced authentication).
    pub authentication_method: Option<String>,
    /// The Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// What the host said of the connection when it opened.
    pub transport: ConnectionInfo,
}

impl AuthRequest {
    /// The request for `info` (a CONNECT).
    pub(crate) fn new(step: AuthStep, info: &ConnectInfo<'_>) -> Self {
        Self {
            step,
            protocol: info.protocol,
            client_id: info.client_id.to_owned(),
            username: info.username.map(str::to_owned),
            password: info.password.map(Bytes::copy_from_slice),
            authentication_method: info.authentication_method.map(str::to_owned),
            authentication_data: info.authentication_data.map(Bytes::copy_from_slice),
            transport: info.transport.clone(),
        }
    }
}

impl core::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("step", &self.step)
            .field("protocol", &self.protocol)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("authentication_method", &self.authentication_method)
            .field(
                "authentication_data",
                &self.authentication_data.as_ref().map(|_| "<redacted>"),
            )
            .field("transport", &self.transport)
            .finish()
    }
}

/// The host's decisions: who may connect, publish to which topics, subscribe to which filters.
///
/// Every method has a permissive default, so `AllowAll` is `impl Policy for AllowAll {}`.
pub trait Policy {
    /// Decides on a CONNECT. The default accepts anyone without an Authentication Method and
    /// rejects enhanced authentication with 0x8C (Bad authentication method). [MQTT-4.12.0-1]
    fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
        if info.authentication_method.is_some() {
            AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD)
        } else {
            AuthDecision::Accept
        }
    }

    /// Decides on an AUTH packet of an enhanced authentication exchange (or a
    /// re-authentication, MQTT-4.12.1-1) with `method` and `data`.
    fn continue_authentication(
        &mut self,
        client_id: &str,
        method: &str,
        data: Option<&[u8]>,
    ) -> AuthDecision {
        let _ = (client_id, method, data);
        AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD)
    }

    /// Whether `client_id` may publish to `topic`.
    fn may_publish(&mut self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let _ = (client_id, username, topic);
        true
    }

    /// Whether `client_id` may subscribe to `filter` (the full filter, `$share/...` included).
    ///
    /// Refuse a filter only when no topic it can match may be received (see
    /// [`may_receive`](Self::may_receive)): a wider filter that overlaps a denied topic can be
    /// granted, since each message is checked again when it is delivered.
    fn may_subscribe(&mut self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        let _ = (client_id, username, filter);
        true
    }

    /// Whether the session of `client_id` may receive a message published to `topic`: the
    /// read check, asked once per message and matching session, when the message is routed to
    /// the session (which covers deliveries to connected clients, offline queues, wills and
    /// shared subscriptions, where only members that may receive it are chosen) and for each
    /// retained message sent because of a subscription. `username` is the User Name the
    /// session's client last connected with (also while it is offline, and after a restart).
    ///
    /// A message refused here is withheld from that session alone, silently (as mosquitto
    /// does): the publisher's acknowledgement is not affected.
    fn may_receive(&mut self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let _ = (client_id, username, topic);
        true
    }
}

/// A policy that lets everyone connect, publish and subscribe.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Policy for AllowAll {}
