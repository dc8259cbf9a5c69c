//! A `no_std` async MQTT 3.1.1 / 5.0 client for microcontrollers: the
//! [`mqtt_session::client`] engine driven over an [`embedded_io_async`] transport, with a clock
//! the caller passes in.
//!
//! Everything MQTT is the engine's: the CONNECT and its limits, keep alive, Packet Identifiers,
//! QoS 1 and QoS 2 flows with their retransmission on resume (PUBLISH with DUP, PUBREL), the
//! exactly-once delivery of received QoS 2 messages, topic aliases, strict validation of what
//! the server sends. This crate only moves bytes and time between it and the transport, on any
//! executor (embassy, or none but a `block_on`): it needs no allocator beyond the engine's own,
//! no timer driver of its own and no `Send`.
//!
//! # Use
//!
//! ```no_run
//! # async fn run<T, C>(mut transport: T, clock: C) -> Result<(), mqtt_embedded::Error<T::Error>>
//! # where T: embedded_io_async::Read + embedded_io_async::Write, C: mqtt_embedded::Clock {
//! use mqtt_embedded::{ClientConfig, MqttClient, ProtocolVersion, Publish, QoS, TopicName};
//!
//! let mut config = ClientConfig::new(ProtocolVersion::V5, "sensor-17");
//! config.keep_alive = 60;
//! let mut client = MqttClient::new(config, clock).map_err(mqtt_embedded::Error::Client)?;
//! client.connect(&mut transport).await?;
//! let mut message = Publish::new(TopicName::try_from("sensors/17/t").unwrap(), &b"21.5"[..]);
//! message.qos = QoS::AtLeastOnce;
//! let reason = client.publish_acked(&mut transport, message).await?; // PUBACK
//! # let _ = reason;
//! # Ok(()) }
//! ```
//!
//! # Connections and sessions
//!
//! A connection that ends (the server closes it, a read or write fails, no PINGRESP in time)
//! surfaces as an [`Error`] from whichever call was running; the engine has been told. Drop
//! that transport, open a new one and call [`MqttClient::connect`] with it: with Clean Start 0
//! (`config.clean_start = false`) and a Session Expiry Interval, the session resumes, and the
//! engine re-sends what was in flight. A message whose [`MqttClient::publish_acked`] failed
//! that way is still in the session: [`MqttClient::wait_published`] with its Packet Identifier
//! (from [`MqttClient::publish`]) waits for its acknowledgement on the new connection.
//!
//! # Keep alive
//!
//! The engine's deadlines (PINGREQ due, PINGRESP late, CONNACK late) are served while a call
//! of this client waits for the transport: between commands, keep [`MqttClient::next_event`]
//! or [`MqttClient::receive`] running, which is also how received messages arrive.
//!
//! Events that arrive while a call waits for something else (a message while waiting for a
//! PUBACK) are kept, in order, for [`MqttClient::next_event`] and [`MqttClient::receive`]. At
//! most [`DEFAULT_MAX_KEPT`] of them (see [`MqttClient::set_max_kept`]): when that many wait, a
//! call waiting for something else returns [`Error::Backlog`] instead of reading more (take
//! them, then call it again: nothing is lost), so a server that floods a client waiting for a
//! PUBACK cannot exhaust its heap.
//!
//! # Cancellation
//!
//! Every call may be dropped at an `.await` (raced against application work with `select`,
//! for example) without losing anything: bytes pulled from the engine and not yet written wait
//! in the client and go first on the next call, and what was read is handed to the engine
//! before the next `.await`. This needs a transport whose `read` and `write` are cancel-safe,
//! as `embedded-io-async` asks of them: a dropped `read` loses no bytes, a dropped `write` wrote
//! nothing. A [`Clock`]'s `sleep_until(deadline)` must not complete before `now()` reaches
//! `deadline`.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use bytes::{Buf, Bytes};

use embassy_futures::select::{Either, select};
use embedded_io_async::{Read, Write};
pub use mqtt_session::Timestamp;
pub use mqtt_session::client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientOutput, DropReason, ServerLimits,
};
pub use mqtt_session::codec::{
    PacketId, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions,
    TopicFilter, TopicName,
};

/// The read buffer's size unless [`MqttClient::with_buffers`] says otherwise.
pub const DEFAULT_READ_BUFFER: usize = 1024;
/// The most bytes pulled from the engine for one write unless [`MqttClient::with_buffers`]
/// says otherwise.
pub const DEFAULT_WRITE_CHUNK: usize = 1024;
/// The most events kept for the application unless [`MqttClient::set_max_kept`] says
/// otherwise.
pub const DEFAULT_MAX_KEPT: usize = 32;

/// The time, as the caller's platform keeps it. With embassy-time, for example:
///
/// ```ignore
/// struct EmbassyClock;
/// impl mqtt_embedded::Clock for EmbassyClock {
///     fn now(&self) -> Timestamp {
///         Timestamp::from_millis(embassy_time::Instant::now().as_millis())
///     }
///     async fn sleep_until(&self, deadline: Timestamp) {
///         embassy_time::Timer::at(embassy_time::Instant::from_millis(deadline.as_millis())).await
///     }
/// }
/// ```
// (No `Send` bound on the futures: a microcontroller's executor runs them on one core.)
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// The current time; it never goes backwards.
    fn now(&self) -> Timestamp;
    /// Completes at `deadline` (at once if it has passed), never before `now()` has reached it.
    /// Dropped unfinished when the transport has bytes first.
    async fn sleep_until(&self, deadline: Timestamp);
}

/// Why a call did not complete.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E> {
    /// A read or write on the transport failed: the connection is over (the engine was told);
    /// drop the transport and [`MqttClient::connect`] a new one.
    Transport(E),
    /// The connection ended: the server closed the transport or sent a DISCONNECT, or the
    /// engine closed it (no PINGRESP in time, a protocol violation by the server). Drop the
    /// transport and connect a new one.
    Disconnected {
        /// The DISCONNECT's reason code, when there was one.
        reason_code: Option<ReasonCode>,
        /// Whether the server ended it with a DISCONNECT (a transport the server just closed
        /// counts as `false`: nothing says why it closed).
        from_server: bool,
    },
    /// [`MqttClient::set_max_kept`] events wait for the application: take them
    /// ([`MqttClient::next_event`], [`MqttClient::receive`]), then call again. Nothing was lost.
    Backlog,
    /// The server refused the connection (its CONNACK's reason code; MQTT 3.1.1 return codes
    /// are mapped to 5.0 reason codes).
    Refused(ReasonCode),
    /// The transport took no bytes (it is closed): the connection is over (the engine was
    /// told).
    WriteZero,
    /// No transport is connected: call [`MqttClient::connect`].
    NotConnected,
    /// The engine refused the command (nothing was sent or queued).
    Client(ClientError),
    /// The message was given up without an acknowledgement (the server discarded the
    /// session, for example).
    Dropped(DropReason),
}

impl<E: core::fmt::Debug> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport failed: {e:?}"),
            Self::Disconnected {
                reason_code,
                from_server,
            } => write!(
                f,
                "disconnected by the {} (reason code {reason_code:?})",
                if *from_server { "server" } else { "client" }
            ),
            Self::Refused(code) => write!(f, "connection refused: {code:?}"),
            Self::WriteZero => f.write_str("the transport took no bytes"),
            Self::Backlog => f.write_str("too many events wait for the application"),
            Self::NotConnected => f.write_str("not connected"),
            Self::Client(e) => write!(f, "{e}"),
            Self::Dropped(reason) => write!(f, "message dropped: {reason:?}"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for Error<E> {}

/// An MQTT client over an `embedded-io-async` transport (see the crate documentation).
#[derive(Debug)]
pub struct MqttClient<C> {
    engine: Client,
    clock: C,
    /// Events not taken yet, in order.
    events: VecDeque<ClientEvent>,
    read_buf: Vec<u8>,
    write_chunk: usize,
    /// Bytes pulled from the engine and not written yet (a call dropped mid-write): they go
    /// first.
    unsent: Bytes,
    /// The most events kept for the application.
    max_kept: usize,
}

/// What [`MqttClient::wait_for`] found.
enum Found {
    Event(ClientEvent),
    /// The connection ended (its `Disconnected` event, consumed).
    Ended {
        reason_code: Option<ReasonCode>,
        from_server: bool,
    },
}

impl<C: Clock> MqttClient<C> {
    /// A client with `config` (see [`ClientConfig`]), not connected yet.
    ///
    /// # Errors
    /// [`ClientError::InvalidConfig`] when the configuration cannot make a valid CONNECT.
    pub fn new(config: ClientConfig, clock: C) -> Result<Self, ClientError> {
        Self::with_buffers(config, clock, DEFAULT_READ_BUFFER, DEFAULT_WRITE_CHUNK)
    }

    /// A client whose reads take at most `read_buffer` bytes at a time and whose writes at most
    /// `write_chunk` (both at least 1).
    ///
    /// # Errors
    /// As [`MqttClient::new`].
    pub fn with_buffers(
        config: ClientConfig,
        clock: C,
        read_buffer: usize,
        write_chunk: usize,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            engine: Client::new(config)?,
            clock,
            events: VecDeque::new(),
            read_buf: vec![0; read_buffer.max(1)],
            write_chunk: write_chunk.max(1),
            unsent: Bytes::new(),
            max_kept: DEFAULT_MAX_KEPT,
        })
    }

    /// Keeps at most `max` events (at least 1) for the application; see [`Error::Backlog`].
    pub fn set_max_kept(&mut self, max: usize) {
        self.max_kept = max.max(1);
    }

    /// The engine, for what it reports (`server_limits`, `in_flight`, `queued`, ...).
    pub fn engine(&self) -> &Client {
        &self.engine
    }

    /// Whether a transport is connected (from [`MqttClient::connect`] until the connection
    /// ends).
    pub fn is_connected(&self) -> bool {
        self.engine.has_transport()
    }

    /// Connects over `transport` (just opened): sends the CONNECT and waits for the CONNACK.
    /// Returns Session Present. Call it again with a new transport after a connection ended:
    /// the session resumes as [`ClientConfig`] says.
    ///
    /// # Errors
    /// [`Error::Refused`] with the CONNACK's reason code; [`Error::Transport`] or
    /// [`Error::Disconnected`] when the connection ends first (a CONNACK that does not come
    /// within `connect_timeout` ends it).
    pub async fn connect<T: Read + Write>(
        &mut self,
        transport: &mut T,
    ) -> Result<bool, Error<T::Error>> {
        let now = self.clock.now();
        if self.engine.has_transport() {
            // The caller replaced a transport the engine still thought up: that connection
            // is over.
            self.engine.handle_disconnected(now);
            self.drain_outputs();
        }
        // What is left of earlier connections' ends is not news to the caller, and must not
        // be taken for this connection's.
        self.events.retain(|e| !is_lifecycle(e));
        self.unsent = Bytes::new();
        self.engine.handle_connected(now);
        let found = self
            .wait_for(transport, |e| {
                matches!(
                    e,
                    ClientEvent::Connected { .. } | ClientEvent::ConnectionRefused { .. }
                )
            })
            .await?;
        match found {
            ClientEvent::Connected {
                session_present, ..
            } => Ok(session_present),
            ClientEvent::ConnectionRefused { reason_code, .. } => {
                // The engine closed the connection; its `Disconnected` follows, and is no
                // news.
                let _ = self.flush(transport).await;
                self.drain_ended();
                Err(Error::Refused(reason_code))
            }
            _ => Err(Error::NotConnected),
        }
    }

    /// Hands `message` to the engine and writes what it can now; does not wait for the
    /// acknowledgement. Returns its Packet Identifier (QoS 1 and 2), for
    /// [`MqttClient::wait_published`]. While disconnected, the message waits in the session
    /// for the next connection.
    ///
    /// # Errors
    /// [`Error::Client`] for a message the engine refuses (see [`Client::publish`]);
    /// [`Error::Transport`] or [`Error::Disconnected`] when the connection ends while
    /// writing (the message stays in the session).
    pub async fn publish<T: Read + Write>(
        &mut self,
        transport: &mut T,
        message: Publish,
    ) -> Result<Option<PacketId>, Error<T::Error>> {
        let now = self.clock.now();
        let id = self.engine.publish(message, now).map_err(Error::Client)?;
        if self.engine.has_transport() {
            self.flush(transport).await?;
        }
        Ok(id)
    }

    /// Publishes `message` and waits for its acknowledgement: PUBACK (QoS 1), PUBCOMP, or a
    /// PUBREC with an error (QoS 2); returns its reason code (0x00 in MQTT 3.1.1). QoS 0
    /// returns 0x00 once written.
    ///
    /// # Errors
    /// As [`MqttClient::publish`], [`MqttClient::wait_published`].
    pub async fn publish_acked<T: Read + Write>(
        &mut self,
        transport: &mut T,
        message: Publish,
    ) -> Result<ReasonCode, Error<T::Error>> {
        match self.publish(transport, message).await? {
            Some(id) => self.wait_published(transport, id).await,
            None => Ok(ReasonCode::SUCCESS),
        }
    }

    /// Waits for the acknowledgement of the message published with Packet Identifier `id`
    /// (which may have come already), as [`MqttClient::publish_acked`].
    ///
    /// # Errors
    /// [`Error::Dropped`] when the engine gave the message up (the server discarded the
    /// session); [`Error::Transport`] or [`Error::Disconnected`] when the connection ends
    /// first (the message stays in the session: wait again after reconnecting);
    /// [`Error::NotConnected`].
    pub async fn wait_published<T: Read + Write>(
        &mut self,
        transport: &mut T,
        id: PacketId,
    ) -> Result<ReasonCode, Error<T::Error>> {
        let found = self
            .wait_for(transport, |e| match e {
                ClientEvent::Published { packet_id, .. } => *packet_id == id,
                ClientEvent::PublishDropped { packet_id, .. } => *packet_id == Some(id),
                _ => false,
            })
            .await?;
        match found {
            ClientEvent::Published { reason_code, .. } => Ok(reason_code),
            ClientEvent::PublishDropped { reason, .. } => Err(Error::Dropped(reason)),
            _ => Err(Error::NotConnected),
        }
    }

    /// Subscribes to `filters` and waits for the SUBACK; returns its reason codes, one per
    /// filter, in order (the granted QoS, or a failure at 0x80 and above).
    ///
    /// # Errors
    /// [`Error::Client`] for a SUBSCRIBE the engine refuses; [`Error::Transport`] or
    /// [`Error::Disconnected`] when the connection ends first (the request stays in the
    /// session and is sent again on the next connection); [`Error::NotConnected`].
    pub async fn subscribe<T: Read + Write>(
        &mut self,
        transport: &mut T,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
    ) -> Result<Vec<ReasonCode>, Error<T::Error>> {
        if !self.engine.has_transport() {
            return Err(Error::NotConnected);
        }
        let now = self.clock.now();
        let id = self
            .engine
            .subscribe(filters, Properties::default(), now)
            .map_err(Error::Client)?;
        let found = self
            .wait_for(
                transport,
                |e| matches!(e, ClientEvent::Subscribed { packet_id, .. } if *packet_id == id),
            )
            .await?;
        match found {
            ClientEvent::Subscribed { reason_codes, .. } => Ok(reason_codes),
            _ => Err(Error::NotConnected),
        }
    }

    /// The next message from the server (other events before it are kept for
    /// [`MqttClient::next_event`]). A QoS 2 message comes once, however often the server
    /// sends it.
    ///
    /// # Errors
    /// [`Error::Transport`] or [`Error::Disconnected`] when the connection ends first;
    /// [`Error::NotConnected`].
    pub async fn receive<T: Read + Write>(
        &mut self,
        transport: &mut T,
    ) -> Result<Box<Publish>, Error<T::Error>> {
        let found = self
            .wait_for(transport, |e| matches!(e, ClientEvent::Message(_)))
            .await?;
        match found {
            ClientEvent::Message(publish) => Ok(publish),
            _ => Err(Error::NotConnected),
        }
    }

    /// The next event, in order (a kept one first; otherwise reads and serves deadlines until
    /// there is one). The end of the connection comes as an error, not as
    /// [`ClientEvent::Disconnected`].
    ///
    /// # Errors
    /// [`Error::Transport`] or [`Error::Disconnected`] when the connection ends;
    /// [`Error::NotConnected`].
    pub async fn next_event<T: Read + Write>(
        &mut self,
        transport: &mut T,
    ) -> Result<ClientEvent, Error<T::Error>> {
        self.wait_for(transport, |_| true).await
    }

    /// Ends the connection with a DISCONNECT (Normal disconnection): the server discards the
    /// will; the session stays as long as its Session Expiry Interval says.
    ///
    /// # Errors
    /// [`Error::NotConnected`]; [`Error::Client`] when the engine refuses.
    pub async fn disconnect<T: Read + Write>(
        &mut self,
        transport: &mut T,
    ) -> Result<(), Error<T::Error>> {
        if !self.engine.has_transport() {
            return Err(Error::NotConnected);
        }
        let now = self.clock.now();
        self.engine
            .disconnect(ReasonCode::NORMAL_DISCONNECTION, None, now)
            .map_err(Error::Client)?;
        let written = self.flush(transport).await;
        // The engine's `Disconnected` for it is no news.
        self.drain_ended();
        written
    }

    /// Serves the connection until an event matching `wanted` is there, and takes it.
    async fn wait_for<T: Read + Write>(
        &mut self,
        transport: &mut T,
        mut wanted: impl FnMut(&ClientEvent) -> bool,
    ) -> Result<ClientEvent, Error<T::Error>> {
        loop {
            match self.take(&mut wanted) {
                Some(Found::Event(event)) => return Ok(event),
                Some(Found::Ended {
                    reason_code,
                    from_server,
                }) => {
                    return Err(Error::Disconnected {
                        reason_code,
                        from_server,
                    });
                }
                None => {}
            }
            if !self.engine.has_transport() {
                return Err(Error::NotConnected);
            }
            if self.events.len() >= self.max_kept {
                return Err(Error::Backlog);
            }
            self.step(transport).await?;
        }
    }

    /// The first kept event `wanted` matches, or the end of the connection (the first
    /// `Disconnected`, when it comes before any match).
    fn take(&mut self, wanted: &mut impl FnMut(&ClientEvent) -> bool) -> Option<Found> {
        let i = self
            .events
            .iter()
            .position(|e| wanted(e) || matches!(e, ClientEvent::Disconnected { .. }))?;
        match self.events.remove(i)? {
            ClientEvent::Disconnected {
                reason_code,
                from_server,
                ..
            } => Some(Found::Ended {
                reason_code,
                from_server,
            }),
            event => Some(Found::Event(event)),
        }
    }

    /// One round: writes what is due, waits for bytes or the next deadline, feeds the engine,
    /// writes again.
    async fn step<T: Read + Write>(&mut self, transport: &mut T) -> Result<(), Error<T::Error>> {
        let kept = self.events.len();
        self.flush(transport).await?;
        if !self.engine.has_transport() || self.events.len() > kept {
            // (New events to look at first, or the connection ended while writing.)
            return Ok(());
        }
        let deadline = self.engine.poll_timeout();
        let read = transport.read(&mut self.read_buf);
        let outcome = match deadline {
            Some(deadline) => select(read, self.clock.sleep_until(deadline)).await,
            None => Either::First(read.await),
        };
        let now = self.clock.now();
        match outcome {
            Either::First(Ok(0)) => {
                // The server closed the transport.
                self.engine.handle_disconnected(now);
            }
            Either::First(Ok(n)) => {
                let data = self.read_buf.get(..n).unwrap_or_default();
                self.engine.handle_bytes(data, now);
                // A server that keeps sending must not starve the deadlines (the read wins
                // every race it is ready for): a PINGREQ due goes out all the same.
                if self.engine.poll_timeout().is_some_and(|t| t <= now) {
                    self.engine.handle_timeout(now);
                }
            }
            Either::First(Err(e)) => return Err(self.lost(Error::Transport(e))),
            Either::Second(()) => self.engine.handle_timeout(now),
        }
        self.flush(transport).await
    }

    /// Takes the engine's outputs and writes what it has for the transport. Events are kept;
    /// a `Close` writes its farewell (if it can) and leaves the transport to be dropped.
    /// Cancel-safe: what was pulled and not written stays in `unsent`, and the engine is asked
    /// for bytes whenever a transport is up (not only after a `TransmitReady`, which a dropped
    /// call may have taken).
    async fn flush<T: Read + Write>(&mut self, transport: &mut T) -> Result<(), Error<T::Error>> {
        loop {
            let mut farewell = None;
            while let Some(output) = self.engine.poll_output() {
                match output {
                    ClientOutput::Close { farewell: bytes } => farewell = Some(bytes),
                    ClientOutput::Event(event) => self.events.push_back(event),
                    // (`TransmitReady`: pulled below in any case.)
                    _ => {}
                }
            }
            if let Some(bytes) = farewell {
                // Best effort: the connection is over whether it is written or not.
                self.unsent = bytes;
                if self.write_unsent(transport).await.is_ok() {
                    let _ = transport.flush().await;
                }
                self.unsent = Bytes::new();
                return Ok(());
            }
            if !self.engine.has_transport() {
                return Ok(());
            }
            if let Err(e) = self.write_unsent(transport).await {
                return Err(self.lost(e));
            }
            let now = self.clock.now();
            let Some(data) = self.engine.poll_transmit(self.write_chunk, now) else {
                // Everything is written: it goes out.
                if let Err(e) = transport.flush().await {
                    return Err(self.lost(Error::Transport(e)));
                }
                return Ok(());
            };
            self.unsent = data;
        }
    }

    /// Writes `unsent`, keeping what is not written yet there (a call dropped between two
    /// writes resumes where it stopped); a write that takes nothing is [`Error::WriteZero`].
    async fn write_unsent<T: Write>(&mut self, transport: &mut T) -> Result<(), Error<T::Error>> {
        while !self.unsent.is_empty() {
            let n = transport
                .write(&self.unsent)
                .await
                .map_err(Error::Transport)?;
            if n == 0 {
                return Err(Error::WriteZero);
            }
            self.unsent.advance(n.min(self.unsent.len()));
        }
        Ok(())
    }

    /// The transport failed with `error`: the engine is told, and `error` is the connection's
    /// end.
    fn lost<E>(&mut self, error: Error<E>) -> Error<E> {
        self.unsent = Bytes::new();
        let now = self.clock.now();
        self.engine.handle_disconnected(now);
        self.drain_ended();
        error
    }

    /// Keeps the engine's events after a connection ended that the caller already knows of,
    /// without its `Disconnected` (no news, and not to be taken for a later connection's end).
    fn drain_ended(&mut self) {
        self.drain_outputs();
        self.events
            .retain(|e| !matches!(e, ClientEvent::Disconnected { .. }));
    }

    /// Keeps the engine's events, after the connection is gone (nothing to write).
    fn drain_outputs(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            if let ClientOutput::Event(event) = output {
                self.events.push_back(event);
            }
        }
    }
}

/// Whether `event` tells of a connection's start or end (not of messages or requests).
fn is_lifecycle(event: &ClientEvent) -> bool {
    matches!(
        event,
        ClientEvent::Connected { .. }
            | ClientEvent::ConnectionRefused { .. }
            | ClientEvent::Disconnected { .. }
            | ClientEvent::PingTimeout
            | ClientEvent::ConnectTimeout
            | ClientEvent::ProtocolViolation { .. }
    )
}
