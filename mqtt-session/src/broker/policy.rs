//! Authentication and authorization are the host's decisions.

use bytes::Bytes;
use mqtt_codec::{ProtocolVersion, ReasonCode};

use super::ConnectionId;

/// What the broker knows of a connecting client when it asks the policy.
#[derive(Debug)]
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
}

/// A policy's answer to an authentication step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthDecision {
    /// Accept the client.
    Accept,
    /// Reject it with this CONNACK (or DISCONNECT, when re-authenticating) reason code
    /// (MQTT 3.1.1 clients get the matching return code, or "not authorized").
    Reject(ReasonCode),
    /// Enhanced authentication: send AUTH with Continue authentication and this data, and wait
    /// for the client's next AUTH. [MQTT-4.12.0-2]
    Continue(Option<Bytes>),
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
