//! An async MQTT 3.1.1 / 5.0 client on tokio.
//!
//! Every protocol decision is made by the sans-IO client engine of `mqtt-session`
//! ([`mqtt_session::client::Client`]); this crate hosts it: it owns the transport (TCP, TLS,
//! WebSocket, secure WebSocket, from `mqtt-transport`), the clock and a task per client, and
//! turns the engine's events into futures and a stream.
//!
//! ```no_run
//! use mqtt_client::{Client, Event, Options, QoS};
//!
//! # async fn run() -> Result<(), mqtt_client::Error> {
//! let options = Options::new("mqtt://127.0.0.1:1883", "sensor-1")?;
//! let (client, mut events) = Client::connect(options).await?;
//! client.subscribe("commands/#", QoS::AtLeastOnce).await?;
//! // `publish` hands the message to the task; the Delivery resolves on its PUBACK.
//! let delivery = client.publish("status", "online", QoS::AtLeastOnce, false).await?;
//! let reason = delivery.await?;
//! assert!(!reason.is_error());
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(message) = event {
//!         println!("{}: {:?}", message.topic, message.payload);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! - **A task per client, events as a stream.** [`Client::connect`] spawns the connection task
//!   and returns a cheap cloneable [`Client`] handle and an [`Events`] stream. The task runs
//!   whether or not the application reads events, so keep alive never depends on the
//!   application polling (an event-loop `poll` design stalls the connection while the
//!   application is busy, and a busy consumer then causes ping timeouts and reconnect loops).
//! - **Futures for acknowledgements, in two stages.** [`Client::publish`] hands the message to
//!   the connection task and returns a [`Delivery`]: [`Delivery::stored`] resolves once the
//!   engine has queued it (and, with a store, made it durable), the `Delivery` itself with the
//!   PUBACK or PUBCOMP reason code (QoS 0: at once). Not waiting for the task to answer each
//!   `publish` is what lets a burst of publications go out in one turn of its loop. [`Client::subscribe`] and [`Client::unsubscribe`]
//!   resolve with the SUBACK / UNSUBACK codes.
//! - **Back-pressure without deadlock.** Requests go through a bounded channel:
//!   [`Client::publish`] waits for room, [`Client::try_publish`] fails with [`Error::Full`].
//!   Events go through a bounded channel too, and the task never waits for the application:
//!   it keeps reading the socket (PINGRESP, acknowledgements) while the application is slow.
//!   A QoS 1/2 message is acknowledged to the server only once it is in the event queue (or,
//!   with [`Options::manual_acks`], once the application calls [`Client::ack`]), so a slow
//!   consumer holds back the server by MQTT's own flow control (Receive Maximum, 256 by
//!   default) and no QoS 1/2 message is ever dropped. QoS 0 messages have no flow control:
//!   beyond [`Options::event_capacity`] waiting events they are dropped and counted, and
//!   [`Event::Lagged`] says how many.
//! - **Reconnection** with exponential backoff and jitter ([`Reconnect`]). The session resumes
//!   when the server kept it (messages in flight are re-sent with DUP, PUBREL again, by the
//!   engine); when it did not, the filters it had granted are subscribed again
//!   ([`Options::resubscribe`]) and the messages in flight are sent again as new (QoS 1) or
//!   fail with [`Error::SessionLost`] (QoS 2), as [`Options::session`] says. Messages
//!   published while offline wait in the engine's queue, up to `max_queued_messages`, and are
//!   refused with [`Error::Engine`] (`QueueFull`) beyond.
//! - **Server redirection** (MQTT 5.0 section 4.11): a CONNACK or DISCONNECT with 0x9C Use
//!   another server or 0x9D Server moved and a Server Reference sends the next attempt, at
//!   once, to the referenced server over the same transport ([`Endpoint::follow_reference`]):
//!   0x9C for that connection, 0x9D for good ([`Event::Redirected`],
//!   [`Options::follow_server_reference`]).
//!
//! - **Persistence** ([`Options::store`]): the engine's storage records go to a redb file,
//!   committed (fsync) before any byte that depends on them is sent, and before
//!   [`Delivery::stored`] resolves: a message whose `stored` resolved survives a crash. A
//!   process restarted with the same store and Client Identifier resumes the flows where they
//!   were (PUBLISH again with DUP and the same Packet Identifier, or PUBREL), so a QoS 2
//!   message is delivered once even if the publishing process is killed at any point, and a
//!   restart never publishes a stored message as a new one. The file is locked while open.

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod options;
mod slot;
mod store;
mod task;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use mqtt_session::client::{ClientConfig, ClientError, DropReason, ServerLimits};
pub use mqtt_session::codec::{
    PacketId, Properties, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling,
    SubscriptionOptions, TopicFilter, TopicName, Violation, Will,
};
/// The transports (TCP, TLS, WebSocket): `mqtt-transport`, for TLS configuration.
pub use mqtt_transport as transport;
pub use mqtt_transport::{ConnectOptions, Endpoint};
pub use options::{Authenticator, Options, Reconnect};

use task::Command;

/// How long [`Client::disconnect`] waits for received QoS 2 exchanges to complete.
pub const DISCONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport could not be made (address, TCP, TLS, WebSocket), or the endpoint is not
    /// valid.
    #[error("transport: {0}")]
    Transport(std::sync::Arc<mqtt_transport::Error>),
    /// The server refused the connection (CONNACK with this reason code).
    #[error("the server refused the connection: {reason_code:?}{}{}", reason_string.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(), server_reference.as_deref().map(|s| format!(", Server Reference `{s}`")).unwrap_or_default())]
    Refused {
        /// The CONNACK's reason code (MQTT 3.1.1 return codes are mapped to 5.0's).
        reason_code: ReasonCode,
        /// Its Reason String, if any.
        reason_string: Option<String>,
        /// Its Server Reference (with 0x9C Use another server or 0x9D Server moved), when the
        /// client did not follow it ([`Options::follow_server_reference`]).
        server_reference: Option<String>,
    },
    /// The first connection ended before the server accepted it (connect timeout, protocol
    /// violation, closed transport).
    #[error("the connection ended before the server accepted it")]
    NotConnected,
    /// A topic name or filter is not valid (the rule it breaks).
    #[error("invalid topic: {0}")]
    InvalidTopic(Violation),
    /// The engine refused the request (invalid packet, QoS or size above the server's limits,
    /// queue full, ...): nothing was sent.
    #[error("refused: {0}")]
    Engine(ClientError),
    /// The server acknowledged with an error reason code (PUBACK, PUBREC or PUBCOMP 0x80 or
    /// above; a SUBACK failure for [`Client::subscribe`]).
    #[error("the server answered {0:?}")]
    Rejected(ReasonCode),
    /// The message was given up without an acknowledgement.
    #[error("the message was dropped: {0:?}")]
    Dropped(DropReason),
    /// The server did not have the session when the client reconnected: whether the message
    /// was delivered is unknown ([`DropReason::SessionDiscarded`]).
    #[error("the session was lost while the message was in flight; its delivery is unknown")]
    SessionLost,
    /// The request queue is full ([`Client::try_publish`]).
    #[error("the request queue is full")]
    Full,
    /// The store ([`Options::store`]) cannot be opened, read or written; the text names the
    /// file and what is wrong. A failed write stops the client.
    #[error("store: {0}")]
    Store(String),
    /// The client has stopped: [`Client::disconnect`] was called, reconnection gave up, or the
    /// server refused a reconnection for good.
    #[error("the client has stopped")]
    Closed,
}

impl From<mqtt_transport::Error> for Error {
    fn from(e: mqtt_transport::Error) -> Self {
        Self::Transport(std::sync::Arc::new(e))
    }
}

/// What the connection task tells the application.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The server accepted a connection.
    Connected {
        /// Session Present: the server resumed the session.
        session_present: bool,
        /// The Assigned Client Identifier, when the configured one was empty (MQTT 5.0); the
        /// client uses it on every later connection.
        assigned_client_id: Option<String>,
        /// What the server announced (limits, keep alive, session expiry in force).
        server: Box<ServerLimits>,
    },
    /// An Application Message. With [`Options::manual_acks`], acknowledge a QoS 1/2 message
    /// with [`Client::ack`] once it is processed.
    Message(Message),
    /// The outcome of a message restored from the store ([`Options::store`]), which no
    /// [`Delivery`] awaits: acknowledged (with the reason code), or given up (for example
    /// [`Error::SessionLost`] when the server no longer had the session).
    Restored {
        /// Its Packet Identifier.
        packet_id: PacketId,
        /// What became of it.
        outcome: Result<ReasonCode, Error>,
    },
    /// This many QoS 0 messages were dropped because the application did not read events fast
    /// enough.
    Lagged {
        /// How many, since the last such event.
        dropped: u64,
    },
    /// A filter was subscribed again after the server lost the session
    /// ([`Options::resubscribe`]).
    Resubscribed {
        /// The filter.
        filter: String,
        /// The SUBACK's reason code for it.
        reason_code: ReasonCode,
    },
    /// A connection ended.
    Disconnected {
        /// The reason code of the DISCONNECT (the server's when `from_server`), if any.
        reason_code: Option<ReasonCode>,
        /// Whether the server ended it.
        from_server: bool,
        /// What went wrong, in words (transport error, ping timeout, protocol violation...).
        cause: Option<String>,
        /// The Server Reference of the server's DISCONNECT (with 0x9C Use another server or
        /// 0x9D Server moved), if any. When the client follows it
        /// ([`Options::follow_server_reference`]), [`Event::Redirected`] comes next.
        server_reference: Option<String>,
        /// When the next attempt is made (`None`: the client has stopped).
        reconnect_in: Option<std::time::Duration>,
    },
    /// A connection attempt failed (transport error or refusal); another follows after
    /// `retry_in`, or none (`None`) when the client gives up.
    ConnectFailed {
        /// Why.
        cause: String,
        /// The Server Reference of a refusing CONNACK, when the client did not follow it.
        server_reference: Option<String>,
        /// When the next attempt is made.
        retry_in: Option<std::time::Duration>,
    },
    /// The server sent the client to another server (MQTT 5.0 section 4.11: CONNACK or
    /// DISCONNECT with 0x9C Use another server or 0x9D Server moved, and a Server Reference),
    /// and the client follows ([`Options::follow_server_reference`]): its next attempt, made at
    /// once, goes to `to`. After a DISCONNECT it follows [`Event::Disconnected`]; after a
    /// refusing CONNACK it takes the place of [`Event::ConnectFailed`] (and
    /// [`Client::connect`] goes on waiting for the first connection).
    Redirected {
        /// 0x9C (for now) or 0x9D (for good).
        reason_code: ReasonCode,
        /// The Server Reference as the server sent it.
        server_reference: String,
        /// Where the client connects now: the reference's first usable name and port, over
        /// the same transport ([`Endpoint::follow_reference`]).
        to: Endpoint,
        /// 0x9D: every later attempt goes there too. 0x9C: once that server's connection
        /// ends, or cannot be made, the client goes back to where it was.
        permanent: bool,
    },
}

/// A received Application Message: the PUBLISH as the engine reported it (its topic resolved
/// from a Topic Alias), read through `Deref` (`message.topic`, `message.payload`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    publish: Box<Publish>,
    /// The engine's session epoch at delivery: an acknowledgement from an earlier session is
    /// dropped (its Packet Identifier may name a new message by then).
    epoch: u64,
}

impl Message {
    pub(crate) fn new(publish: Box<Publish>, epoch: u64) -> Self {
        Self { publish, epoch }
    }

    /// The PUBLISH.
    #[must_use]
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// The PUBLISH, owned.
    #[must_use]
    pub fn into_publish(self) -> Publish {
        *self.publish
    }
}

impl std::ops::Deref for Message {
    type Target = Publish;

    fn deref(&self) -> &Publish {
        &self.publish
    }
}

/// A handle on a client: cheap to clone; every clone talks to the same connection task. When
/// the last handle is dropped, the client disconnects (DISCONNECT 0x00) and its task ends.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
}

/// The events of a client, in order: a [`futures_core::Stream`], or [`Events::recv`].
/// It ends when the client has stopped.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// A publication in progress. [`Delivery::stored`] resolves once the engine has queued the
/// message (and, with [`Options::store`], made it durable: it survives a crash from then on);
/// awaiting the `Delivery` itself resolves with the reason code of the PUBACK (QoS 1) or PUBCOMP
/// (QoS 2), or at once for QoS 0 (with 0x00). A PUBCOMP 0x92 (Packet Identifier not found) is a
/// success: it answers a PUBREL sent again after the server had completed the flow and its
/// PUBCOMP was lost; the server took the message with its PUBREC.
///
/// # Errors
/// What the engine refused ([`Error::Engine`]: QoS or size above the server's limits, queue
/// full while offline, ...), [`Error::Rejected`] (an error reason code), [`Error::Dropped`],
/// [`Error::SessionLost`], [`Error::Store`], [`Error::Closed`] (the client stopped first).
#[derive(Debug)]
#[must_use = "a Delivery resolves when the message is acknowledged"]
pub struct Delivery {
    slot: std::sync::Arc<slot::Slot>,
}

impl Delivery {
    /// Resolves once the message is queued in the engine and, with a store, durable; returns
    /// its Packet Identifier (`None` for QoS 0).
    ///
    /// # Errors
    /// The engine's refusal ([`Error::Engine`]), [`Error::Store`], [`Error::Closed`].
    pub async fn stored(&mut self) -> Result<Option<PacketId>, Error> {
        std::future::poll_fn(|cx| self.slot.poll_stored(cx)).await
    }

    /// The message's Packet Identifier, once [`Delivery::stored`] has resolved (`None` before,
    /// and for QoS 0).
    #[must_use]
    pub fn packet_id(&self) -> Option<PacketId> {
        let waker = std::task::Waker::noop();
        match self.slot.poll_stored(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(id)) => id,
            _ => None,
        }
    }
}

impl Future for Delivery {
    type Output = Result<ReasonCode, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.slot.poll_done(cx)
    }
}

impl Client {
    /// Connects with `options`: spawns the connection task (on the current tokio runtime),
    /// waits for the first connection's CONNACK, and returns the handle and the event stream
    /// (whose first event is that [`Event::Connected`]). Later losses are reconnected as
    /// [`Options::reconnect`] says.
    ///
    /// # Errors
    /// [`Error::Engine`] for a configuration that cannot make a valid CONNECT;
    /// [`Error::Transport`] when the first transport cannot be made; [`Error::Refused`] when
    /// the server refuses; [`Error::NotConnected`] when the connection ends first.
    pub async fn connect(options: Options) -> Result<(Self, Events), Error> {
        let (commands, events, first) = task::spawn(options)?;
        first.await.unwrap_or(Err(Error::Closed))?;
        Ok((Self { commands }, Events { rx: events }))
    }

    /// Publishes `payload` on `topic`: resolves once the request is in the connection task's
    /// queue (it waits while that queue is full), with the [`Delivery`] of the message: its
    /// [`Delivery::stored`] resolves once the engine has queued it (sent at once when connected
    /// and the in-flight window allows) and, with a store, made it durable; the `Delivery`
    /// itself resolves on its acknowledgement.
    ///
    /// # Errors
    /// [`Error::InvalidTopic`]; [`Error::Closed`]. The engine's refusal comes through the
    /// [`Delivery`].
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Delivery, Error> {
        self.publish_message(message(topic, payload, qos, retain)?)
            .await
    }

    /// [`Client::publish`] with a whole PUBLISH: its properties (MQTT 5.0) are sent; its DUP,
    /// Packet Identifier and Topic Alias are the engine's to set.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn publish_message(&self, publish: Publish) -> Result<Delivery, Error> {
        let (command, delivery) = publication(publish);
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Closed)?;
        Ok(delivery)
    }

    /// [`Client::publish`] without waiting: fails with [`Error::Full`] when the request queue
    /// is full.
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::Closed`], [`Error::InvalidTopic`].
    pub fn try_publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Delivery, Error> {
        let (command, delivery) = publication(message(topic, payload, qos, retain)?);
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Full,
            mpsc::error::TrySendError::Closed(_) => Error::Closed,
        })?;
        Ok(delivery)
    }

    /// Subscribes to one filter with a maximum QoS; resolves with the granted QoS once the
    /// SUBACK arrives (the request waits for the connection while offline).
    ///
    /// # Errors
    /// [`Error::Rejected`] with the SUBACK's failure code; [`Error::Engine`] for an invalid
    /// filter or one the server said it does not support; [`Error::Closed`].
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<QoS, Error> {
        let filter = TopicFilter::try_from(filter).map_err(Error::InvalidTopic)?;
        let codes = self
            .subscribe_many(
                vec![(filter, SubscriptionOptions::qos(qos))],
                Properties::default(),
            )
            .await?;
        let code = codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
        if code.is_error() {
            return Err(Error::Rejected(code));
        }
        Ok(match code.0 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        })
    }

    /// Subscribes to `filters` in one SUBSCRIBE, with their options and `properties`
    /// (Subscription Identifier, User Properties: MQTT 5.0); resolves with the SUBACK's reason
    /// codes, one per filter (granted QoS, or a failure).
    ///
    /// # Errors
    /// [`Error::Engine`] for a SUBSCRIBE the engine refuses; [`Error::Closed`].
    pub async fn subscribe_many(
        &self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: Properties,
    ) -> Result<Vec<ReasonCode>, Error> {
        let (done, rx) = oneshot::channel();
        self.command(Command::Subscribe {
            filters,
            properties,
            done,
        })
        .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Unsubscribes from `filters`; resolves with the UNSUBACK's reason codes (MQTT 5.0; empty
    /// in 3.1.1).
    ///
    /// # Errors
    /// [`Error::Engine`] for an invalid filter; [`Error::Closed`].
    pub async fn unsubscribe(&self, filters: &[&str]) -> Result<Vec<ReasonCode>, Error> {
        let filters = filters
            .iter()
            .map(|f| TopicFilter::try_from(*f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::InvalidTopic)?;
        let (done, rx) = oneshot::channel();
        self.command(Command::Unsubscribe {
            filters,
            properties: Properties::default(),
            done,
        })
        .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Acknowledges a received QoS 1/2 message ([`Options::manual_acks`]): its PUBACK or PUBREC
    /// is sent (in the order the messages arrived). Does nothing for QoS 0, without manual
    /// acknowledgement, or for a message of a session the server has lost since (its Packet
    /// Identifier may name another message by then; the server does not expect the old one's
    /// acknowledgement any more).
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub async fn ack(&self, message: &Message) -> Result<(), Error> {
        match message.packet_id {
            Some(packet_id) if message.qos != QoS::AtMostOnce => {
                self.command(Command::Ack {
                    packet_id,
                    epoch: message.epoch,
                })
                .await
            }
            _ => Ok(()),
        }
    }

    /// Resolves once no message is queued or in flight: every publication's flow has ended,
    /// including those of messages restored from the store ([`Options::store`]), which no
    /// [`Delivery`] awaits (their outcomes come as [`Event::Restored`]).
    ///
    /// # Errors
    /// [`Error::Closed`] when the client stops first.
    pub async fn flush(&self) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.command(Command::Flush { done }).await?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Re-authenticates (MQTT 5.0 enhanced authentication, AUTH 0x19 with `data`); resolves
    /// when the server accepts.
    ///
    /// # Errors
    /// [`Error::Engine`] when not connected or no Authentication Method was configured;
    /// [`Error::Closed`] (also when the server refuses: it disconnects).
    pub async fn reauthenticate(&self, data: Option<Bytes>) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.command(Command::Reauthenticate { data, done }).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Disconnects normally (DISCONNECT 0x00: the will is discarded) and stops the client:
    /// requests not yet acknowledged fail with [`Error::Closed`], and the event stream ends.
    /// Received QoS 2 messages whose exchange is half done (PUBREC sent, PUBREL awaited) are
    /// completed first, for at most [`DISCONNECT_GRACE`], so that the server does not hold
    /// them for a next session. Resolves when the connection is closed.
    ///
    /// # Errors
    /// [`Error::Closed`] when the client had already stopped.
    pub async fn disconnect(&self) -> Result<(), Error> {
        self.disconnect_with(ReasonCode::NORMAL_DISCONNECTION, None)
            .await
    }

    /// [`Client::disconnect`] with a reason code (0x04 sends the will) and a new Session
    /// Expiry Interval (MQTT 5.0).
    ///
    /// # Errors
    /// [`Error::Engine`] for a code or interval the engine refuses; [`Error::Closed`].
    pub async fn disconnect_with(
        &self,
        reason_code: ReasonCode,
        session_expiry_interval: Option<u32>,
    ) -> Result<(), Error> {
        let (done, rx) = oneshot::channel();
        self.command(Command::Disconnect {
            reason_code,
            session_expiry_interval,
            done,
        })
        .await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn command(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| Error::Closed)
    }
}

/// The request for the connection task, and the caller's [`Delivery`].
fn publication(publish: Publish) -> (Command, Delivery) {
    let (reply, slot) = slot::Reply::new();
    (
        Command::Publish {
            publish: Box::new(publish),
            reply,
        },
        Delivery { slot },
    )
}

/// A PUBLISH for `topic` and `payload`.
fn message(
    topic: &str,
    payload: impl Into<Bytes>,
    qos: QoS,
    retain: bool,
) -> Result<Publish, Error> {
    let topic = TopicName::try_from(topic).map_err(Error::InvalidTopic)?;
    let mut publish = Publish::new(topic, payload.into());
    publish.qos = qos;
    publish.retain = retain;
    Ok(publish)
}
