//! The connection task: hosts one client engine. It owns the transport (a reader here, a
//! writer task per connection), the clock (tokio's, so tests can pause it), the request and
//! event channels, and the futures waiting on acknowledgements.
//!
//! One loop waits for the first of: a request, bytes from the server, room in the writer's
//! channel (when the engine has bytes to send), room in the event channel (when events wait),
//! the engine's deadline, the reconnection delay, or a transport being made. Nothing in it
//! waits on the application: a full event channel only stops events from leaving.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_session::Timestamp;
use mqtt_session::client::{Client as Engine, ClientEvent, ClientOutput, ClientRecord, DropReason};
use mqtt_session::codec::{
    PacketId, Properties, Publish, QoS, ReasonCode, SubscriptionOptions, TopicFilter,
};
use mqtt_transport::{BoxStream, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::slot::{Reply, StoredReply};
use crate::store::Store;
use crate::{Error, Event, Options};

/// How long a connection must stay up for the reconnection backoff to start again from its
/// initial delay.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// How many more waiting requests one turn of the loop takes after the one that woke it.
const COMMAND_BATCH: usize = 255;
/// How many writes may wait for the writer task (each up to [`WRITE_CHUNK`] bytes).
const WRITER_QUEUE: usize = 4;
/// The most bytes pulled from the engine at once.
const WRITE_CHUNK: usize = 64 * 1024;
/// How long the writer may take to pass on the last bytes (a DISCONNECT) of a closed
/// connection.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// Redirections followed at once, one after the other ([`Options::follow_server_reference`]);
/// a further one waits for the backoff delay, so servers that send the client round in circles
/// cannot make it spin.
const MAX_REDIRECTS: u32 = 4;

/// A request from a [`Client`](crate::Client) handle.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        /// Boxed: a request is moved through the channel and the loop.
        publish: Box<Publish>,
        /// Told the Packet Identifier once the engine queued the message (and it is stored),
        /// then the acknowledgement.
        reply: Reply,
    },
    Subscribe {
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: Properties,
        done: oneshot::Sender<Result<Vec<ReasonCode>, Error>>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        properties: Properties,
        done: oneshot::Sender<Result<Vec<ReasonCode>, Error>>,
    },
    Ack {
        packet_id: PacketId,
        /// The engine's session epoch when the message was delivered.
        epoch: u64,
    },
    Flush {
        done: oneshot::Sender<()>,
    },
    Reauthenticate {
        data: Option<Bytes>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Disconnect {
        reason_code: ReasonCode,
        session_expiry_interval: Option<u32>,
        done: oneshot::Sender<Result<(), Error>>,
    },
}

type FirstConnect = oneshot::Receiver<Result<(), Error>>;
/// Where a `publish` learns that its message is queued (and stored).
type Accepted = StoredReply;

/// Checks the options, and spawns the task: the request sender, the event receiver, and what
/// resolves on the first connection's outcome.
pub(crate) fn spawn(
    options: Options,
) -> Result<(mpsc::Sender<Command>, mpsc::Receiver<Event>, FirstConnect), Error> {
    let mut config = options.session.clone();
    // The host holds every acknowledgement until the message is in the event queue (or the
    // application acknowledges it).
    config.manual_acks = true;
    let (store, engine) = match &options.store {
        Some(path) => {
            let (store, records) = Store::open(path, &config.client_id)?;
            config.persist = true;
            let engine = if records.is_empty() {
                Engine::new(config)
            } else {
                Engine::restore(config, records)
            };
            (Some(store), engine.map_err(Error::Engine)?)
        }
        None => (None, Engine::new(config).map_err(Error::Engine)?),
    };
    let (commands_tx, commands) = mpsc::channel(options.request_capacity.max(1));
    let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
    let (first_tx, first_rx) = oneshot::channel();
    let task = Task {
        engine,
        store,
        batch: Vec::new(),
        accepted: Vec::new(),
        options: Arc::new(options),
        commands,
        events: events_tx,
        waiting: VecDeque::new(),
        dropped_qos0: 0,
        publishes: HashMap::new(),
        requests: HashMap::new(),
        resubscribes: HashMap::new(),
        reauth: None,
        flushes: Vec::new(),
        subscriptions: BTreeMap::new(),
        start: Instant::now(),
        turn_now: Timestamp::ZERO,
        connected_at: None,
        closing: None,
        store_failed: false,
        conn: None,
        connecting: None,
        reconnect_at: Some(Instant::now()),
        attempt: 0,
        ever_connected: false,
        first: Some(first_tx),
        stopping: None,
        deferred: None,
        stopped: false,
        cause: None,
        refused: None,
        moved_to: None,
        temporarily_at: None,
        redirects: 0,
    };
    tokio::spawn(task.run());
    Ok((commands_tx, events_rx, first_rx))
}

/// An event waiting for room in the event channel, with the acknowledgement it releases.
#[derive(Debug)]
struct Waiting {
    event: Event,
    /// A QoS 1/2 message's Packet Identifier: acknowledged to the engine once the event is in
    /// the channel (automatic acknowledgement).
    ack: Option<(PacketId, u64)>,
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its acknowledgement.
#[derive(Debug)]
enum Pending {
    Subscribe {
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: Properties,
        done: oneshot::Sender<Result<Vec<ReasonCode>, Error>>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        done: oneshot::Sender<Result<Vec<ReasonCode>, Error>>,
    },
}

/// One live transport.
struct Conn {
    reader: ReadHalf<BoxStream>,
    writer: mpsc::Sender<Bytes>,
    buf: BytesMut,
    /// The engine has bytes to send.
    transmit: bool,
    /// Dropped when the connection is let go: the writer then gives itself [`CLOSE_FLUSH`]
    /// to pass on what is queued (a farewell) instead of waiting on the peer for ever.
    closed: oneshot::Sender<()>,
    /// The writer task: done once the socket is shut down (or given up).
    written: tokio::task::JoinHandle<()>,
}

/// Writes the engine's bytes in order. While the connection lives it waits on the peer as
/// long as it takes (keep alive judges a peer that stops reading); once the connection is let
/// go, it passes on what is queued within [`CLOSE_FLUSH`] (nothing after a write it had to
/// abandon half done) and shuts the socket down.
async fn write_loop(
    mut w: tokio::io::WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<Bytes>,
    mut closed: oneshot::Receiver<()>,
) {
    let mut let_go = false;
    while !let_go {
        let data = tokio::select! {
            biased;
            data = rx.recv() => data,
            _ = &mut closed => break,
        };
        let Some(data) = data else { break };
        let write = w.write_all(&data);
        tokio::pin!(write);
        let written = tokio::select! {
            r = &mut write => r,
            _ = &mut closed => {
                // Let go in the middle of a write: it gets the close time to finish.
                let_go = true;
                match tokio::time::timeout(CLOSE_FLUSH, &mut write).await {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        };
        if written.is_err() {
            return;
        }
        // Most chunks are followed by more only when the engine has them at once.
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    // Let go: what is queued (the farewell) within the close time, then shut down.
    let _ = tokio::time::timeout(CLOSE_FLUSH, async {
        while let Some(data) = rx.recv().await {
            if w.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    })
    .await;
}

type Connecting = Pin<Box<dyn Future<Output = Result<BoxStream, mqtt_transport::Error>> + Send>>;

struct Task {
    engine: Engine,
    /// Where the engine's records go ([`Options::store`]).
    store: Option<Store>,
    /// Records drained and not yet committed.
    batch: Vec<ClientRecord>,
    /// `publish` replies that wait for the commit of their records.
    accepted: Vec<(Accepted, Option<PacketId>)>,
    options: Arc<Options>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    /// Events that found the channel full, in order.
    waiting: VecDeque<Waiting>,
    /// QoS 0 messages dropped since the last [`Event::Lagged`].
    dropped_qos0: u64,
    publishes: HashMap<PacketId, Reply>,
    requests: HashMap<PacketId, Pending>,
    /// Resubscriptions after a lost session: the filter of each.
    resubscribes: HashMap<PacketId, String>,
    reauth: Option<oneshot::Sender<Result<(), Error>>>,
    /// `flush` calls waiting for every message's flow to end.
    flushes: Vec<oneshot::Sender<()>>,
    /// The filters the server granted, with their options and their SUBSCRIBE's properties
    /// (for resubscription).
    subscriptions: BTreeMap<String, (TopicFilter, SubscriptionOptions, Properties)>,
    start: Instant,
    /// The engine's time for this turn of the loop.
    turn_now: Timestamp,
    /// When the current connection was accepted (for the backoff: a connection that ends soon
    /// after does not reset it).
    connected_at: Option<Instant>,
    /// The last connection's closing (its farewell written, its socket shut down).
    closing: Option<tokio::task::JoinHandle<()>>,
    /// A store write failed: nothing more is written (the client stops).
    store_failed: bool,
    conn: Option<Conn>,
    connecting: Option<Connecting>,
    reconnect_at: Option<Instant>,
    /// Failed attempts in a row.
    attempt: u32,
    ever_connected: bool,
    first: Option<oneshot::Sender<Result<(), Error>>>,
    /// `disconnect` was asked: resolved once the connection is closed.
    stopping: Option<Option<oneshot::Sender<Result<(), Error>>>>,
    /// `disconnect` waits for received QoS 2 exchanges to complete, until this instant.
    deferred: Option<Deferred>,
    stopped: bool,
    /// What ended the current connection, in words, for [`Event::Disconnected`].
    cause: Option<String>,
    /// The refusal of the last connection attempt.
    refused: Option<Refusal>,
    /// Where a 0x9D Server moved sent the client: every attempt goes there.
    moved_to: Option<Endpoint>,
    /// Where a 0x9C Use another server sent the client, until that connection ends.
    temporarily_at: Option<Endpoint>,
    /// Redirections followed at once, one after the other: since the last attempt made after
    /// a backoff delay, or the last connection that lasted.
    redirects: u32,
}

/// A refusing CONNACK.
#[derive(Debug)]
struct Refusal {
    reason_code: ReasonCode,
    reason_string: Option<String>,
    server_reference: Option<String>,
}

/// A disconnection waiting for received QoS 2 exchanges to complete.
struct Deferred {
    reason_code: ReasonCode,
    session_expiry_interval: Option<u32>,
    done: Option<oneshot::Sender<Result<(), Error>>>,
    until: Instant,
}

/// What woke the loop.
enum Wake {
    Command(Option<Command>),
    Read(std::io::Result<usize>),
    Writable(Result<mpsc::OwnedPermit<Bytes>, mpsc::error::SendError<()>>),
    EventRoom(Result<mpsc::OwnedPermit<Event>, mpsc::error::SendError<()>>),
    Timer,
    Reconnect,
    Transport(Result<BoxStream, mqtt_transport::Error>),
}

async fn pending_forever<T>() -> T {
    std::future::pending().await
}

impl Task {
    fn now(&self) -> Timestamp {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Timestamp::from_millis(ms)
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.start + Duration::from_millis(t.as_millis())
    }

    async fn run(mut self) {
        while !self.stopped {
            self.drain();
            if self.deferred_stop() {
                self.drain();
            }
            if !self.flushes.is_empty() && self.engine.in_flight() == 0 && self.engine.queued() == 0
            {
                for done in self.flushes.drain(..) {
                    let _ = done.send(());
                }
            }
            if self.stopped {
                break;
            }
            let wake = self.wait().await;
            self.handle(wake);
        }
        self.finish();
    }

    /// Waits for the next thing to do.
    async fn wait(&mut self) -> Wake {
        let deadline = self.engine.poll_timeout().map(|t| self.instant(t));
        let deadline = match (deadline, self.deferred.as_ref().map(|d| d.until)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let accept_commands = self.stopping.is_none() && self.deferred.is_none();
        // While this many events wait for the application, the socket is not read: MQTT 3.1.1
        // has no Receive Maximum, and TCP's flow control is then the only one (in 5.0 the
        // server's quota keeps the queue below it).
        let reading = self.waiting.len() < self.waiting_limit();
        let (read, writer) = match self.conn.as_mut() {
            Some(c) => (
                reading.then_some((&mut c.reader, &mut c.buf)),
                c.transmit.then(|| c.writer.clone()),
            ),
            None => (None, None),
        };
        let events = (!self.waiting.is_empty()).then(|| self.events.clone());
        let reconnect_at = self.reconnect_at.filter(|_| self.connecting.is_none());
        let connecting = self.connecting.as_mut();
        let commands = &mut self.commands;
        // Not biased: each ready branch gets its turn, so a socket that is always readable does
        // not starve the writer, the timers, the events or the requests.
        tokio::select! {
            r = async {
                match read {
                    Some((reader, buf)) => {
                        buf.reserve(16 * 1024);
                        reader.read_buf(buf).await
                    }
                    None => pending_forever().await,
                }
            } => Wake::Read(r),
            p = async {
                match writer {
                    Some(w) => w.reserve_owned().await.map_err(|_| mpsc::error::SendError(())),
                    None => pending_forever().await,
                }
            } => Wake::Writable(p),
            p = async {
                match events {
                    Some(e) => e.reserve_owned().await.map_err(|_| mpsc::error::SendError(())),
                    None => pending_forever().await,
                }
            } => Wake::EventRoom(p),
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => pending_forever().await,
                }
            } => Wake::Timer,
            r = async {
                match connecting {
                    Some(c) => c.await,
                    None => pending_forever().await,
                }
            } => Wake::Transport(r),
            () = async {
                match reconnect_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => pending_forever().await,
                }
            } => Wake::Reconnect,
            c = async {
                if accept_commands {
                    commands.recv().await
                } else {
                    pending_forever().await
                }
            } => Wake::Command(c),
        }
    }

    fn handle(&mut self, wake: Wake) {
        let now = self.now();
        self.turn_now = now;
        match wake {
            Wake::Read(Ok(0)) | Wake::Read(Err(_)) => {
                if let Wake::Read(Err(e)) = &wake {
                    self.cause = Some(format!("read: {e}"));
                } else {
                    self.cause = Some("the server closed the connection".to_owned());
                }
                self.conn = None;
                self.engine.handle_disconnected(now);
            }
            Wake::Read(Ok(_)) => {
                if let Some(conn) = self.conn.as_mut() {
                    let data = conn.buf.split();
                    self.engine.handle_bytes(&data, now);
                }
            }
            Wake::Writable(Ok(permit)) => match self.engine.poll_transmit(WRITE_CHUNK, now) {
                Some(data) => {
                    permit.send(data);
                }
                None => {
                    if let Some(conn) = self.conn.as_mut() {
                        conn.transmit = false;
                    }
                }
            },
            Wake::Writable(Err(_)) => {
                // The writer task ended: the transport failed.
                self.cause = Some("write failed".to_owned());
                self.conn = None;
                self.engine.handle_disconnected(now);
            }
            Wake::EventRoom(Ok(permit)) => {
                if let Some(w) = self.waiting.pop_front() {
                    permit.send(w.event);
                    if let Some((id, epoch)) = w.ack {
                        self.ack(id, epoch);
                    }
                }
                self.lagged();
            }
            Wake::EventRoom(Err(_)) => {
                // Nobody reads events any more: deliver nothing, acknowledge everything.
                for w in std::mem::take(&mut self.waiting) {
                    if let Some((id, epoch)) = w.ack {
                        self.ack(id, epoch);
                    }
                }
            }
            Wake::Timer => self.engine.handle_timeout(now),
            Wake::Reconnect => {
                self.reconnect_at = None;
                let endpoint = self.target().clone();
                let options = self.options.transport.clone();
                self.connecting = Some(Box::pin(async move {
                    mqtt_transport::connect(&endpoint, &options).await
                }));
            }
            Wake::Transport(result) => {
                self.connecting = None;
                match result {
                    Ok(stream) => self.open(stream, now),
                    Err(e) => self.attempt_failed(e.to_string(), Some(Error::from(e))),
                }
            }
            Wake::Command(Some(command)) => {
                self.command(command, now);
                // Whatever else is waiting, in the same turn: one commit and one transmit for
                // a burst of requests.
                for _ in 0..COMMAND_BATCH {
                    if self.deferred.is_some() || self.stopping.is_some() {
                        break;
                    }
                    match self.commands.try_recv() {
                        Ok(command) => self.command(command, now),
                        Err(_) => break,
                    }
                }
            }
            Wake::Command(None) => {
                // Every handle is gone: disconnect normally and stop.
                self.stop(ReasonCode::NORMAL_DISCONNECTION, None, None, now);
            }
        }
    }

    /// A transport is up: the engine sends its CONNECT.
    fn open(&mut self, stream: BoxStream, now: Timestamp) {
        let (reader, write_half) = tokio::io::split(stream);
        let (writer, rx) = mpsc::channel::<Bytes>(WRITER_QUEUE);
        let (closed_tx, closed_rx) = oneshot::channel();
        let written = tokio::spawn(write_loop(write_half, rx, closed_rx));
        self.conn = Some(Conn {
            reader,
            writer,
            buf: BytesMut::with_capacity(16 * 1024),
            transmit: false,
            closed: closed_tx,
            written,
        });
        self.connected_at = None;
        self.cause = None;
        self.refused = None;
        self.engine.handle_connected(now);
    }

    /// Where the next attempt goes: where a redirection sent the client, or the configured
    /// endpoint.
    fn target(&self) -> &Endpoint {
        self.temporarily_at
            .as_ref()
            .or(self.moved_to.as_ref())
            .unwrap_or(&self.options.endpoint)
    }

    /// A connection attempt failed before or at the CONNACK.
    fn attempt_failed(&mut self, cause: String, error: Option<Error>) {
        // A server that 0x9C sent the client to cannot be reached: back to where it was.
        self.temporarily_at = None;
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(error.unwrap_or(Error::NotConnected)));
            self.stopped = true;
            return;
        }
        let retry_in = self.next_attempt();
        self.event(
            Event::ConnectFailed {
                cause,
                server_reference: None,
                retry_in,
            },
            None,
        );
    }

    /// Schedules the next attempt; `None` (and the client stops) when there is none.
    fn next_attempt(&mut self) -> Option<Duration> {
        // The attempt after a delay starts a new chain of redirections.
        self.redirects = 0;
        let reconnect = &self.options.reconnect;
        let permanent = self
            .refused
            .as_ref()
            .is_some_and(|r| is_permanent(r.reason_code));
        let exhausted = reconnect
            .max_attempts
            .is_some_and(|max| self.attempt >= max);
        if !reconnect.enabled || self.stopping.is_some() || permanent || exhausted {
            self.stopped = true;
            return None;
        }
        let delay = reconnect.delay(self.attempt, fastrand::f64());
        self.attempt = self.attempt.saturating_add(1);
        let now = Instant::now();
        self.reconnect_at = Some(now.checked_add(delay).unwrap_or(now));
        Some(delay)
    }

    fn command(&mut self, command: Command, now: Timestamp) {
        match command {
            Command::Publish { publish, reply } => {
                let qos = publish.qos;
                match self.engine.publish(*publish, now) {
                    Ok(id) => {
                        // Told once the message's record is durable.
                        self.accepted.push((reply.stored_handle(), id));
                        match id {
                            Some(id) if qos != QoS::AtMostOnce => {
                                self.publishes.insert(id, reply);
                            }
                            _ => reply.done(Ok(ReasonCode::SUCCESS)),
                        }
                    }
                    Err(e) => reply.done(Err(Error::Engine(e))),
                }
            }
            Command::Subscribe {
                filters,
                properties,
                done,
            } => match self
                .engine
                .subscribe(filters.clone(), properties.clone(), now)
            {
                Ok(id) => {
                    self.requests.insert(
                        id,
                        Pending::Subscribe {
                            filters,
                            properties,
                            done,
                        },
                    );
                }
                Err(e) => {
                    let _ = done.send(Err(Error::Engine(e)));
                }
            },
            Command::Unsubscribe {
                filters,
                properties,
                done,
            } => match self.engine.unsubscribe(filters.clone(), properties, now) {
                Ok(id) => {
                    // Not subscribed again after a lost session, whether or not the UNSUBACK
                    // has come.
                    for filter in &filters {
                        self.subscriptions.remove(&filter.to_string());
                    }
                    self.requests
                        .insert(id, Pending::Unsubscribe { filters, done });
                }
                Err(e) => {
                    let _ = done.send(Err(Error::Engine(e)));
                }
            },
            Command::Flush { done } => self.flushes.push(done),
            Command::Ack { packet_id, epoch } => {
                if self.options.manual_acks {
                    self.ack(packet_id, epoch);
                }
            }
            Command::Reauthenticate { data, done } => match self.engine.reauthenticate(data, now) {
                Ok(()) => {
                    if let Some(old) = self.reauth.replace(done) {
                        let _ = old.send(Err(Error::Closed));
                    }
                }
                Err(e) => {
                    let _ = done.send(Err(Error::Engine(e)));
                }
            },
            Command::Disconnect {
                reason_code,
                session_expiry_interval,
                done,
            } => {
                self.deferred = Some(Deferred {
                    reason_code,
                    session_expiry_interval,
                    done: Some(done),
                    until: Instant::now() + crate::DISCONNECT_GRACE,
                });
            }
        }
    }

    /// Carries out a deferred disconnection once no received QoS 2 exchange is half done on a
    /// live connection, or its grace period is over.
    fn deferred_stop(&mut self) -> bool {
        let Some(d) = self.deferred.as_ref() else {
            return false;
        };
        let waiting = self.engine.is_connected()
            && self.engine.inbound_qos2_awaiting_pubrel() > 0
            && Instant::now() < d.until;
        if waiting {
            return false;
        }
        if let Some(d) = self.deferred.take() {
            let now = self.now();
            self.stop(d.reason_code, d.session_expiry_interval, d.done, now);
        }
        true
    }

    /// Ends the client: DISCONNECT when connected, then stop once the connection is closed.
    fn stop(
        &mut self,
        reason_code: ReasonCode,
        session_expiry_interval: Option<u32>,
        done: Option<oneshot::Sender<Result<(), Error>>>,
        now: Timestamp,
    ) {
        self.reconnect_at = None;
        self.connecting = None;
        if self.engine.has_transport() {
            if self.engine.is_connected() {
                if let Err(e) = self
                    .engine
                    .disconnect(reason_code, session_expiry_interval, now)
                {
                    if let Some(done) = done {
                        let _ = done.send(Err(Error::Engine(e)));
                    }
                    return;
                }
            } else {
                self.conn = None;
                self.engine.handle_disconnected(now);
            }
            self.stopping = Some(done);
        } else {
            self.stopping = Some(done);
            self.stopped = true;
        }
    }

    /// Does what the engine asks, in order.
    fn drain(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                ClientOutput::TransmitReady => {
                    if let Some(conn) = self.conn.as_mut() {
                        conn.transmit = true;
                    }
                }
                ClientOutput::Persist(record) => self.batch.push(record),
                ClientOutput::Close { farewell } => {
                    // The farewell may hold bytes that depend on records: commit them first.
                    self.commit();
                    if let Some(conn) = self.conn.take() {
                        self.closing = Some(tokio::spawn(async move {
                            // The writer writes it (within its close time), then shuts the
                            // transport down.
                            if !farewell.is_empty() {
                                let _ =
                                    tokio::time::timeout(CLOSE_FLUSH, conn.writer.send(farewell))
                                        .await;
                            }
                            let Conn {
                                writer,
                                closed,
                                written,
                                ..
                            } = conn;
                            drop(writer);
                            drop(closed);
                            let _ = written.await;
                        }));
                    }
                }
                ClientOutput::Event(event) => self.engine_event(event),
                _ => {}
            }
        }
        self.commit();
    }

    /// Makes the drained records durable, then tells the publications that waited for them.
    /// A store that fails stops the client: nothing that depends on the records is sent.
    fn commit(&mut self) {
        if self.store_failed {
            // After a failed write the file may lack records that later ones depend on:
            // nothing more is written (the client has stopped).
            self.batch.clear();
            return;
        }
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            if let Some(store) = self.store.as_ref()
                && let Err(e) = store.commit(&batch)
            {
                tracing::error!("{e}");
                self.store_failed = true;
                self.fail_all(&e);
                return;
            }
        }
        for (reply, id) in self.accepted.drain(..) {
            reply.stored(Ok(id));
        }
    }

    /// The store failed: every request fails with its error, and the client stops without
    /// sending anything more.
    fn fail_all(&mut self, error: &Error) {
        self.conn = None;
        self.connecting = None;
        self.reconnect_at = None;
        for (reply, _) in self.accepted.drain(..) {
            reply.stored(Err(error.clone()));
        }
        for (_, reply) in self.publishes.drain() {
            reply.done(Err(error.clone()));
        }
        self.stopped = true;
    }

    fn engine_event(&mut self, event: ClientEvent) {
        // The time of this turn of the loop (a clock read per event would cost more than the
        // event).
        let now = self.turn_now;
        match event {
            ClientEvent::Connected {
                session_present,
                assigned_client_id,
                server,
            } => {
                self.connected_at = Some(Instant::now());
                if !self.ever_connected {
                    self.attempt = 0;
                }
                let resumed_elsewhere = self.ever_connected && !session_present;
                self.ever_connected = true;
                if let Some(first) = self.first.take() {
                    let _ = first.send(Ok(()));
                }
                self.event(
                    Event::Connected {
                        session_present,
                        assigned_client_id,
                        server,
                    },
                    None,
                );
                if resumed_elsewhere && self.options.resubscribe {
                    self.resubscribe(now);
                }
            }
            ClientEvent::ConnectionRefused {
                reason_code,
                reason_string,
                server_reference,
            } => {
                self.cause = Some(format!("refused: {reason_code:?}"));
                self.refused = Some(Refusal {
                    reason_code,
                    reason_string,
                    server_reference,
                });
            }
            ClientEvent::Message(publish) => {
                let epoch = self.engine.session_epoch();
                let ack = match (publish.qos, publish.packet_id) {
                    (QoS::AtMostOnce, _) | (_, None) => None,
                    (_, Some(id)) => Some((id, epoch)),
                };
                if ack.is_none() && self.waiting.len() >= self.event_capacity() {
                    // QoS 0 has no flow control: dropped for a slow consumer, and counted.
                    self.dropped_qos0 += 1;
                    return;
                }
                let ack = ack.filter(|_| !self.options.manual_acks);
                self.event(Event::Message(crate::Message::new(publish, epoch)), ack);
            }
            ClientEvent::Published {
                packet_id,
                reason_code,
            } => {
                let Some(done) = self.publishes.remove(&packet_id) else {
                    // A message restored from the store: nobody awaits it.
                    self.event(
                        Event::Restored {
                            packet_id,
                            outcome: Ok(reason_code),
                        },
                        None,
                    );
                    return;
                };
                {
                    // A PUBCOMP 0x92 answers a PUBREL sent again after the server completed
                    // the flow (its PUBCOMP was lost): the server took the message with its
                    // PUBREC, so it is delivered.
                    let completed_before = reason_code == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                    let result = if reason_code.is_error() && !completed_before {
                        Err(Error::Rejected(reason_code))
                    } else {
                        Ok(reason_code)
                    };
                    done.done(result);
                }
            }
            ClientEvent::PublishDropped { packet_id, reason } => {
                let error = match reason {
                    DropReason::SessionDiscarded => Error::SessionLost,
                    other => Error::Dropped(other),
                };
                match packet_id.map(|id| (id, self.publishes.remove(&id))) {
                    Some((_, Some(done))) => done.done(Err(error)),
                    Some((packet_id, None)) => {
                        // A message restored from the store: nobody awaits it.
                        tracing::warn!(%packet_id, "a restored message was given up: {error}");
                        self.event(
                            Event::Restored {
                                packet_id,
                                outcome: Err(error),
                            },
                            None,
                        );
                    }
                    None => {}
                }
            }
            ClientEvent::Subscribed {
                packet_id,
                reason_codes,
            } => {
                if let Some(filter) = self.resubscribes.remove(&packet_id) {
                    let reason_code = reason_codes
                        .first()
                        .copied()
                        .unwrap_or(ReasonCode::UNSPECIFIED_ERROR);
                    if reason_code.is_error() {
                        self.subscriptions.remove(&filter);
                    }
                    self.event(
                        Event::Resubscribed {
                            filter,
                            reason_code,
                        },
                        None,
                    );
                    return;
                }
                if let Some(Pending::Subscribe {
                    filters,
                    properties,
                    done,
                }) = self.requests.remove(&packet_id)
                {
                    for ((filter, options), code) in filters.into_iter().zip(&reason_codes) {
                        if !code.is_error() {
                            self.subscriptions
                                .insert(filter.to_string(), (filter, options, properties.clone()));
                        }
                    }
                    let _ = done.send(Ok(reason_codes));
                }
            }
            ClientEvent::Unsubscribed {
                packet_id,
                reason_codes,
            } => {
                if let Some(Pending::Unsubscribe { filters, done }) =
                    self.requests.remove(&packet_id)
                {
                    for filter in &filters {
                        self.subscriptions.remove(&filter.to_string());
                    }
                    let _ = done.send(Ok(reason_codes));
                }
            }
            ClientEvent::AuthChallenge { method, data } => {
                let answer = self
                    .options
                    .authenticator
                    .as_ref()
                    .map(|auth| auth(&method, data.as_ref()));
                match answer {
                    Some(data) => {
                        let _ = self.engine.authenticate(data, now);
                    }
                    None => {
                        self.cause = Some("an AUTH challenge and no authenticator".to_owned());
                        if self.engine.is_connected() {
                            let _ = self
                                .engine
                                .disconnect(ReasonCode::NOT_AUTHORIZED, None, now);
                        } else {
                            // Before the CONNACK there is no DISCONNECT to send: close.
                            self.conn = None;
                            self.engine.handle_disconnected(now);
                        }
                    }
                }
            }
            ClientEvent::Reauthenticated => {
                if let Some(done) = self.reauth.take() {
                    let _ = done.send(Ok(()));
                }
            }
            ClientEvent::PingTimeout => {
                self.cause = Some("no PINGRESP in time".to_owned());
            }
            ClientEvent::ConnectTimeout => {
                self.cause = Some("no CONNACK in time".to_owned());
            }
            ClientEvent::ProtocolViolation { reason_code, error } => {
                self.cause = Some(match error {
                    Some(e) => format!("the server broke the protocol: {e}"),
                    None => format!("the server broke the protocol ({reason_code:?})"),
                });
            }
            ClientEvent::Disconnected {
                reason_code,
                from_server,
                reason_string,
                server_reference,
            } => self.disconnected(reason_code, from_server, reason_string, server_reference),
            _ => {}
        }
    }

    /// The engine ended a connection (its one `Disconnected` per `handle_connected`).
    fn disconnected(
        &mut self,
        reason_code: Option<ReasonCode>,
        from_server: bool,
        reason_string: Option<String>,
        server_reference: Option<String>,
    ) {
        self.conn = None;
        if let Some(done) = self.reauth.take() {
            let _ = done.send(Err(Error::Closed));
        }
        if self.stopping.is_some() {
            // `disconnect` resolves in `finish`, once the farewell is written.
            self.stopped = true;
            return;
        }
        // A connection that stayed up a while resets the backoff; one that ends soon after its
        // CONNACK (a server that accepts, then drops the client) keeps it growing.
        if self
            .connected_at
            .take()
            .is_some_and(|at| at.elapsed() >= STABLE_CONNECTION)
        {
            self.attempt = 0;
            self.redirects = 0;
        }
        // A refusing CONNACK's reference, or the DISCONNECT's of a server that had accepted.
        let (code, server_reference) = match self.refused.as_mut() {
            Some(r) => (Some(r.reason_code), r.server_reference.take()),
            None if self.first.is_none() => (reason_code.filter(|_| from_server), server_reference),
            None => (None, server_reference),
        };
        let redirected = self.redirect(code, server_reference.as_deref());
        if self.refused.is_some()
            && let Some(redirected) = redirected
        {
            // The attempt goes on at the server the refusal named.
            self.refused = None;
            self.cause = None;
            self.event(redirected, None);
            return;
        }
        let mut cause = self.cause.take();
        if let Some(s) = reason_string {
            cause = Some(match cause {
                Some(c) => format!("{c}: {s}"),
                None => s,
            });
        }
        if let Some(first) = self.first.take() {
            let error = match self.refused.take() {
                Some(r) => Error::Refused {
                    reason_code: r.reason_code,
                    reason_string: r.reason_string,
                    server_reference,
                },
                None => Error::NotConnected,
            };
            let _ = first.send(Err(error));
            self.stopped = true;
            return;
        }
        if self.refused.is_some() {
            let retry_in = self.next_attempt();
            self.event(
                Event::ConnectFailed {
                    cause: cause.unwrap_or_else(|| "refused".to_owned()),
                    server_reference,
                    retry_in,
                },
                None,
            );
            return;
        }
        let reconnect_in = match redirected {
            Some(_) => Some(Duration::ZERO),
            None => self.next_attempt(),
        };
        self.event(
            Event::Disconnected {
                reason_code,
                from_server,
                cause,
                server_reference,
                reconnect_in,
            },
            None,
        );
        if let Some(redirected) = redirected {
            self.event(redirected, None);
        }
    }

    /// Follows a redirection (0x9C Use another server, 0x9D Server moved, with a Server
    /// Reference: v5 section 4.11) when the options allow and the reference names a server:
    /// the next attempt goes there at once, and the [`Event::Redirected`] to report is
    /// returned. Otherwise `None` (and the cause says why a reference was not followed); a
    /// 0x9C detour ends either way.
    fn redirect(
        &mut self,
        code: Option<ReasonCode>,
        server_reference: Option<&str>,
    ) -> Option<Event> {
        // Where the client was sent from: the 0x9C detour, which ends here, if there was one.
        let from = self.target().clone();
        self.temporarily_at = None;
        let (code, permanent) = match code {
            Some(c @ ReasonCode::SERVER_MOVED) => (c, true),
            Some(c @ ReasonCode::USE_ANOTHER_SERVER) => (c, false),
            _ => return None,
        };
        let reference = server_reference?;
        // Followed as part of connecting: the first connection, or a reconnection.
        let allowed = self.options.follow_server_reference
            && (self.first.is_some() || self.options.reconnect.enabled);
        if !allowed {
            return None;
        }
        if self.redirects >= MAX_REDIRECTS {
            self.note(format!(
                "not followed: {MAX_REDIRECTS} redirections in a row already"
            ));
            return None;
        }
        let to = match from.follow_reference(reference) {
            Ok(to) => to,
            Err(e) => {
                self.note(format!("not followed: {e}"));
                return None;
            }
        };
        tracing::info!(%to, ?code, permanent, "redirected by the server");
        self.redirects += 1;
        if permanent {
            self.moved_to = Some(to.clone());
        } else {
            self.temporarily_at = Some(to.clone());
        }
        self.reconnect_at = Some(Instant::now());
        Some(Event::Redirected {
            reason_code: code,
            server_reference: reference.to_owned(),
            to,
            permanent,
        })
    }

    /// Adds to the words of why the connection ended.
    fn note(&mut self, words: String) {
        self.cause = Some(match self.cause.take() {
            Some(c) => format!("{c} ({words})"),
            None => words,
        });
    }

    /// Subscribes again to every filter the server had granted (one SUBSCRIBE each, with the
    /// properties of the SUBSCRIBE that made it).
    fn resubscribe(&mut self, now: Timestamp) {
        let subscriptions: Vec<_> = self
            .subscriptions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, (filter, options, properties)) in subscriptions {
            match self
                .engine
                .subscribe(vec![(filter, options)], properties, now)
            {
                Ok(id) => {
                    self.resubscribes.insert(id, key);
                }
                Err(e) => {
                    tracing::warn!(filter = %key, "resubscription refused: {e}");
                    self.subscriptions.remove(&key);
                }
            }
        }
    }

    /// Queues an event; sent at once when the channel has room.
    fn event(&mut self, event: Event, ack: Option<(PacketId, u64)>) {
        if self.waiting.is_empty() {
            match self.events.try_send(event) {
                Ok(()) => {
                    if let Some((id, epoch)) = ack {
                        self.ack(id, epoch);
                    }
                }
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.waiting.push_back(Waiting { event, ack });
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    if let Some((id, epoch)) = ack {
                        self.ack(id, epoch);
                    }
                }
            }
        } else {
            self.waiting.push_back(Waiting { event, ack });
        }
    }

    /// Says how many QoS 0 messages were dropped, once there is room again.
    fn lagged(&mut self) {
        if self.dropped_qos0 > 0 && self.waiting.len() < self.event_capacity() {
            let dropped = std::mem::take(&mut self.dropped_qos0);
            self.event(Event::Lagged { dropped }, None);
        }
    }

    /// Acknowledges a received message to the engine, unless it belongs to a session the
    /// server has lost since (its Packet Identifier may name a new message now).
    fn ack(&mut self, packet_id: PacketId, epoch: u64) {
        if epoch == self.engine.session_epoch() {
            let _ = self.engine.ack(packet_id, self.turn_now);
        }
    }

    /// How many events may wait for the application before QoS 0 messages are dropped.
    fn event_capacity(&self) -> usize {
        self.options.event_capacity.max(1)
    }

    /// How many events may wait before the socket is no longer read.
    fn waiting_limit(&self) -> usize {
        self.event_capacity() + usize::from(self.options.session.receive_maximum)
    }

    /// The client has stopped: everything still waiting fails.
    fn finish(mut self) {
        self.drain();
        for (_, reply) in self.publishes.drain() {
            reply.done(Err(Error::Closed));
        }
        for (_, pending) in self.requests.drain() {
            match pending {
                Pending::Subscribe { done, .. } | Pending::Unsubscribe { done, .. } => {
                    let _ = done.send(Err(Error::Closed));
                }
            }
        }
        if let Some(done) = self.reauth.take() {
            let _ = done.send(Err(Error::Closed));
        }
        if let Some(Some(done)) = self.stopping.take() {
            // Resolved once the farewell (DISCONNECT, and what was queued before it) is
            // written and the socket shut down.
            let closing = self.closing.take();
            tokio::spawn(async move {
                if let Some(closing) = closing {
                    let _ = tokio::time::timeout(CLOSE_FLUSH * 2, closing).await;
                }
                let _ = done.send(Ok(()));
            });
        }
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(Error::NotConnected));
        }
        // Events still waiting are given a short while to be read.
        let waiting = std::mem::take(&mut self.waiting);
        let events = self.events.clone();
        drop(self);
        if !waiting.is_empty() {
            tokio::spawn(async move {
                for w in waiting {
                    if events.send(w.event).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}

/// Refusals that another attempt will not change: the client stops.
fn is_permanent(code: ReasonCode) -> bool {
    matches!(
        code,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            | ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
            | ReasonCode::BAD_USER_NAME_OR_PASSWORD
            | ReasonCode::NOT_AUTHORIZED
            | ReasonCode::BANNED
            | ReasonCode::BAD_AUTHENTICATION_METHOD
    )
}
