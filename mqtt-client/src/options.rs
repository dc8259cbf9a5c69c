//! How a [`Client`](crate::Client) connects, reconnects and buffers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_session::client::ClientConfig;
use mqtt_session::codec::ProtocolVersion;
use mqtt_transport::{ConnectOptions, Endpoint};

use crate::Error;

/// Answers the server's enhanced-authentication challenges (MQTT 5.0 AUTH, reason code 0x18):
/// given the Authentication Method and the server's Authentication Data, it returns our next
/// Authentication Data. It runs on the connection task, so it must not block.
pub type Authenticator = Arc<dyn Fn(&str, Option<&Bytes>) -> Option<Bytes> + Send + Sync>;

/// Everything a [`Client`](crate::Client) needs: where to connect, the MQTT session's
/// configuration, and the host's own policies (reconnection, buffers, acknowledgements).
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    /// The server: `mqtt://host:1883`, `mqtts://host:8883`, `ws://host/mqtt`,
    /// `wss://host/mqtt` (see [`Endpoint`]).
    pub endpoint: Endpoint,
    /// How the transport is made: TLS configuration (system roots when none is given),
    /// WebSocket message size, connect timeout.
    pub transport: ConnectOptions,
    /// The CONNECT and the engine's limits: protocol version, Client Identifier, Clean Start,
    /// Session Expiry, Keep Alive, will, credentials, enhanced authentication, Receive Maximum,
    /// queue bound... Every field of [`ClientConfig`] is honoured. Its `manual_acks` is set by
    /// [`Options::manual_acks`] (the host always holds acknowledgements until the application
    /// has the message: see the crate documentation).
    pub session: ClientConfig,
    /// Reconnection after a connection is lost.
    pub reconnect: Reconnect,
    /// After a reconnection on which the server did not have the session (Session Present 0),
    /// subscribe again to every filter the server had granted (default `true`).
    pub resubscribe: bool,
    /// The application acknowledges each QoS 1/2 message itself with
    /// [`Client::ack`](crate::Client::ack) (default `false`: a message is acknowledged once it
    /// is in the event queue).
    pub manual_acks: bool,
    /// How many requests (publish, subscribe, ...) may wait for the connection task; beyond,
    /// [`Client::publish`](crate::Client::publish) waits and
    /// [`Client::try_publish`](crate::Client::try_publish) fails (default 256).
    pub request_capacity: usize,
    /// How many events may wait for the application to read them (default 1024). QoS 0
    /// messages beyond are dropped and counted ([`Event::Lagged`](crate::Event::Lagged)); QoS
    /// 1/2 messages are never dropped: their acknowledgements wait, so the server's flow
    /// control (our Receive Maximum) stops it.
    pub event_capacity: usize,
    /// What answers the server's enhanced-authentication challenges (MQTT 5.0).
    pub authenticator: Option<Authenticator>,
    /// Persist the session in this file (redb; created if missing, locked while open): see
    /// the crate documentation. With MQTT 3.1.1 it needs Clean Session 0
    /// (`session.clean_start = false`) to mean anything; in 5.0, a Session Expiry Interval
    /// above 0. Default `None`: the session lives in memory only.
    pub store: Option<std::path::PathBuf>,
    /// Follow the server's redirections (MQTT 5.0 section 4.11; default `true`: the
    /// specification says the client SHOULD). A CONNACK or DISCONNECT with 0x9C Use another
    /// server or 0x9D Server moved and a Server Reference sends the next attempt, at once, to
    /// the first usable reference over the same transport
    /// ([`Endpoint::follow_reference`]: TLS stays TLS, checked against the new name), and
    /// reports [`Event::Redirected`](crate::Event::Redirected). After 0x9D every later attempt
    /// goes there; after 0x9C only until that server's connection ends or cannot be made.
    /// At most four redirections in a row are followed at once (a chain ends with an attempt
    /// made after the backoff delay, or a connection that lasted 10 s); a further one, and one
    /// without a usable reference, is an ordinary refusal or disconnection that carries the
    /// reference, and the backoff applies. The WebSocket path and query (a token, say) go with
    /// the client to the new server unless the reference names its own. Off: the reference is
    /// only reported.
    pub follow_server_reference: bool,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("endpoint", &self.endpoint)
            .field("session", &self.session.client_id)
            .field("protocol", &self.session.protocol)
            .field("reconnect", &self.reconnect)
            .field("resubscribe", &self.resubscribe)
            .field("manual_acks", &self.manual_acks)
            .field("request_capacity", &self.request_capacity)
            .field("event_capacity", &self.event_capacity)
            .field("authenticator", &self.authenticator.is_some())
            .field("store", &self.store)
            .field("follow_server_reference", &self.follow_server_reference)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Options for `endpoint` (a string such as `mqtt://127.0.0.1:1883`), MQTT 5.0, Client
    /// Identifier `client_id` (empty: the server assigns one), and the defaults: Clean Start,
    /// Keep Alive 60 s, Receive Maximum 256, reconnection with backoff from 0.5 s to 30 s,
    /// resubscription, automatic acknowledgement; QoS 1 messages in flight when the server lost
    /// the session are sent again, QoS 2 ones fail (their delivery is unknown).
    ///
    /// # Errors
    /// [`Error::Transport`] when `endpoint` is not a valid endpoint.
    pub fn new(endpoint: &str, client_id: impl Into<String>) -> Result<Self, Error> {
        let endpoint: Endpoint = endpoint.parse().map_err(Error::from)?;
        Ok(Self::with_endpoint(endpoint, client_id))
    }

    /// [`Options::new`] with an endpoint already parsed.
    #[must_use]
    pub fn with_endpoint(endpoint: Endpoint, client_id: impl Into<String>) -> Self {
        let mut session = ClientConfig::new(ProtocolVersion::V5, client_id);
        session.receive_maximum = 256;
        session.resend_qos1_on_session_loss = true;
        session.resend_qos2_on_session_loss = false;
        Self {
            endpoint,
            transport: ConnectOptions::default(),
            session,
            reconnect: Reconnect::default(),
            resubscribe: true,
            manual_acks: false,
            request_capacity: 256,
            event_capacity: 1024,
            authenticator: None,
            store: None,
            follow_server_reference: true,
        }
    }

    /// The protocol version (default MQTT 5.0).
    #[must_use]
    pub fn protocol(mut self, protocol: ProtocolVersion) -> Self {
        self.session.protocol = protocol;
        self
    }
}

/// Reconnection: after a connection is lost (not after [`Client::disconnect`](crate::Client::disconnect)),
/// the client waits and connects again, with exponential backoff and jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// Reconnect at all (default `true`). Off: the first lost connection ends the client.
    pub enabled: bool,
    /// The delay before the first attempt (default 0.5 s).
    pub initial_delay: Duration,
    /// The longest delay (default 30 s); each failed attempt doubles the delay up to it.
    pub max_delay: Duration,
    /// How many attempts in a row may fail before the client gives up (default `None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// The delay before attempt number `attempt` (0 for the first after a loss): the initial
    /// delay doubled `attempt` times, at most `max_delay`, then a random point of its upper
    /// half ("equal jitter"), so that many clients cut off at once do not come back at once.
    #[must_use]
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        let base = self
            .initial_delay
            .saturating_mul(factor)
            .min(self.max_delay);
        let half = base / 2;
        half + half.mul_f64(random.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        let r = Reconnect::default();
        assert_eq!(r.delay(0, 1.0), Duration::from_millis(500));
        assert_eq!(r.delay(0, 0.0), Duration::from_millis(250));
        assert_eq!(r.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(r.delay(3, 0.5), Duration::from_secs(3));
        assert_eq!(r.delay(20, 1.0), Duration::from_secs(30));
        assert_eq!(r.delay(u32::MAX, 0.0), Duration::from_secs(15));
    }
}
