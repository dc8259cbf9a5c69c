//! The engine task: owns the [`Broker`], and is the only place it is touched; the storage
//! thread owns the [`Store`]. One task per connection ([`Connection`]) reads and writes its
//! socket; it talks to the engine over a channel (inputs) and a [`Link`] (what to write,
//! whether to read):
//!
//! ```text
//!  accept loop ──Accepted──────────┐
//!  connection tasks ──Bytes/Closed──► engine ──WriteCmd (Link)──► connection tasks
//!                 (Written, when asked)┘ │ ▲
//!                                 Write  ▼ │ Committed
//!                                 storage thread (redb)
//! ```
//!
//! Each turn of the loop takes the inputs that are ready (up to [`BATCH`]), feeds them to the
//! broker with the current time, fires due deadlines, then drains every output: the `Persist`
//! records of the turn go to the storage thread, and the engine goes on with its other
//! connections while they are committed. The storage thread commits everything that reached
//! it while its previous commit ran in one redb transaction (group commit), durably, and
//! reports the last sequence number; the engine then calls `handle_committed`. The broker
//! releases nothing that depends on a record before that (persist, then send).
//!
//! Transmit is pulled (`docs/design/engine-io.md`): each writer holds at most [`WRITE_CREDIT`](crate::link::WRITE_CREDIT)
//! chunks of at most [`WRITE_CHUNK`] bytes; the engine calls `poll_transmit` for a connection
//! only while its writer has room, and when it has none asks to be told (`Written`) when a
//! chunk is written (a writer that keeps up never wakes the engine). A client that reads slowly
//! leaves its messages in the broker engine, which applies its slow-consumer policy (slowing
//! publishers, dropping QoS 0 for a stuck subscriber, disconnecting one stuck for too long);
//! this host never drops a connection because a queue is full. `PauseReading` /
//! `ResumeReading` stop and start a connection's reader.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mqtt_session::Timestamp;
use mqtt_session::broker::{
    AuthDecision, AuthRequest, Broker, BrokerEvent, ConnectionId, Output, StorageRecord,
};
use mqtt_session::codec::ReasonCode;
use tokio::sync::{Semaphore, mpsc};

use tokio::task::{AbortHandle, JoinSet};

use crate::BoxError;
use crate::acl::Acl;
use crate::connection::Connection;
use crate::inputs::{InputRx, InputTx};
use crate::link::{Link, ReadState, WriteCmd, link};
use crate::password::PasswordFile;
use crate::policy::BrokerPolicy;
use crate::store::{Committed, Store, StoreThread};
use crate::sys::{ByteCounters, SysTopics};
use crate::transport::Accepted;

/// The most inputs handled before the outputs are drained (and committed together).
const BATCH: usize = 256;
/// The most bytes pulled from the engine for one write.
const WRITE_CHUNK: usize = 64 * 1024;
/// The longest the engine sleeps without looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long a graceful shutdown waits for writers to flush.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// What connection tasks and the accept loop tell the engine.
#[derive(Debug)]
pub(crate) enum Input {
    /// A client connected (its transport's handshakes done).
    Accepted(Accepted),
    /// Bytes arrived on a connection.
    Bytes(ConnectionId, Bytes),
    /// A connection was closed by the peer or failed.
    Closed(ConnectionId),
    /// A connection's writer wrote a chunk, and the engine had asked to hear it: it has room
    /// for another.
    Written(ConnectionId),
    /// A deferred authentication was decided (off the engine's thread).
    AuthDecided(ConnectionId, AuthDecision),
    /// New ACL and password file (a reload: SIGHUP).
    Reload(Acl, Option<PasswordFile>),
}

/// The wall clock as milliseconds since the UNIX epoch, never going backwards (persisted
/// deadlines keep their meaning across restarts).
#[derive(Debug, Default)]
pub(crate) struct Clock {
    last: u64,
}

impl Clock {
    /// The current time.
    pub(crate) fn now(&mut self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
            .unwrap_or(0);
        self.last = self.last.max(ms);
        Timestamp::from_millis(self.last)
    }
}

/// A connection as the engine knows it.
#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    /// The writer's queue and credit, and the reader's state (`PauseReading` /
    /// `ResumeReading`).
    link: Link,
    /// The connection's task (its reader and writer).
    task: AbortHandle,
    /// Input that arrived while paused (read before the reader saw the pause): handed to the
    /// engine when it resumes, so that a paused client really is not read.
    held: Vec<Bytes>,
    /// The peer closed while input was held: the close is reported once that input is in.
    closed_after_held: bool,
    /// Whether the engine may have bytes for it (`TransmitReady`, or the last pull gave some).
    ready: bool,
    /// Whether the CONNECT was accepted.
    connected: bool,
}

/// The engine: the broker, its storage and its connections.
pub(crate) struct Engine {
    broker: Broker<BrokerPolicy>,
    /// The storage thread, and what it reports.
    store: StoreThread,
    committed: mpsc::UnboundedReceiver<Committed>,
    /// The sequence number of the last record handed to the storage thread.
    last_seq: Option<u64>,
    /// The last sequence number the storage thread reported durable.
    durable: u64,
    /// Password checks that may run at once (each a slow hash on a blocking thread).
    auth_permits: std::sync::Arc<Semaphore>,
    clock: Clock,
    conns: BTreeMap<ConnectionId, Conn>,
    /// Connections that may have bytes and whose writers have room.
    writable: BTreeSet<ConnectionId>,
    /// For the tasks the engine spawns.
    inputs: InputTx,
    /// The connections' tasks.
    tasks: JoinSet<()>,
    /// The most connections at once (0: no limit).
    max_connections: usize,
    /// Connections refused since the last log line about it (logged at most once a second).
    refused: u64,
    refused_logged_at: Option<tokio::time::Instant>,
    /// `$SYS/broker/...` (`None`: off).
    sys: Option<SysTopics>,
    bytes: ByteCounters,
}

/// What the engine is told besides the broker and its storage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineOptions {
    /// The most connections at once (0: no limit).
    pub(crate) max_connections: usize,
    /// Seconds between `$SYS` updates (0: none).
    pub(crate) sys_interval: u64,
}

impl Engine {
    /// An engine for a restored broker whose storage was just compacted; starts the storage
    /// thread.
    pub(crate) fn new(
        broker: Broker<BrokerPolicy>,
        store: Store,
        mut clock: Clock,
        inputs: InputTx,
        options: EngineOptions,
    ) -> Result<Self, BoxError> {
        let (committed_tx, committed) = mpsc::unbounded_channel();
        let store = StoreThread::spawn(store, committed_tx)?;
        let sys = SysTopics::new(options.sys_interval, clock.now());
        let checks = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            broker,
            store,
            committed,
            last_seq: None,
            durable: 0,
            auth_permits: std::sync::Arc::new(Semaphore::new(checks)),
            clock,
            conns: BTreeMap::new(),
            writable: BTreeSet::new(),
            inputs,
            tasks: JoinSet::new(),
            max_connections: options.max_connections,
            refused: 0,
            refused_logged_at: None,
            sys,
            bytes: ByteCounters::default(),
        })
    }

    /// Runs until `shutdown` completes (then closes every connection, persists what that
    /// changes and compacts the log) or storage fails (then returns the error at once: nothing
    /// that was not committed has been sent).
    pub(crate) async fn run(
        mut self,
        mut inputs: InputRx,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), BoxError> {
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now();
            if self.broker.poll_timeout().is_some_and(|t| t <= now) {
                self.broker.handle_timeout(now);
            }
            if let Some(sys) = self.sys.as_mut() {
                sys.publish_if_due(&mut self.broker, self.bytes, now);
            }
            self.flush()?;
            // Forget the tasks that ended.
            while self.tasks.try_join_next().is_some() {}

            // The engine's own connect timeout (`BrokerConfig::connect_timeout`) closes
            // connections that never complete their CONNECT.
            let wake = match (self.broker.poll_timeout(), self.sys.as_ref()) {
                (Some(t), Some(sys)) => Some(t.min(sys.deadline())),
                (t, sys) => t.or(sys.map(SysTopics::deadline)),
            };
            // (At least 1 ms: a deadline that is already due was handled above.)
            let sleep = wake.map_or(MAX_SLEEP, |t| {
                t.since(now).clamp(Duration::from_millis(1), MAX_SLEEP)
            });
            let deadline = tokio::time::Instant::now() + sleep;
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                committed = self.committed.recv() => match committed {
                    Some(Committed::Upto(seq)) => self.on_committed(seq),
                    Some(Committed::Failed(e)) => return Err(e),
                    None => return Err("the storage thread ended".into()),
                },
                input = inputs.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input);
                    for _ in 1..BATCH {
                        let Some(input) = inputs.try_recv() else { break };
                        self.handle(input);
                    }
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        self.shut_down().await
    }

    /// The storage thread committed every record up to `seq`.
    fn on_committed(&mut self, seq: u64) {
        self.durable = self.durable.max(seq);
        self.broker.handle_committed(seq);
    }

    /// Feeds one input to the broker.
    fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Accepted(accepted) => self.open(accepted, now),
            Input::Bytes(conn, data) => match self.conns.get_mut(&conn) {
                // Read before the reader saw the pause: held until the engine resumes it.
                Some(c) if self.broker.is_reading_paused(conn) || !c.held.is_empty() => {
                    c.held.push(data);
                }
                _ => {
                    self.bytes.received = self.bytes.received.saturating_add(data.len() as u64);
                    self.broker.handle_bytes(conn, &data, now);
                }
            },
            Input::Closed(conn) => {
                // What the client sent before it left counts (its last PUBLISH, its
                // DISCONNECT): while some of it is held (paused), the close waits for it.
                if let Some(c) = self.conns.get_mut(&conn)
                    && !c.held.is_empty()
                {
                    c.closed_after_held = true;
                    return;
                }
                if let Some(c) = self.conns.remove(&conn) {
                    tracing::debug!(conn = conn.0, peer = %c.peer, "connection closed by the peer");
                    // Dropping the link ends the task, after its writer has written what was
                    // queued (for at most CLOSE_FLUSH).
                    drop(c);
                }
                self.writable.remove(&conn);
                self.broker.handle_connection_closed(conn, now);
            }
            Input::AuthDecided(conn, decision) => {
                // Ignored by the engine when the connection has closed meanwhile.
                self.broker.handle_auth_decision(conn, decision, now);
            }
            Input::Reload(acl, passwords) => {
                tracing::info!(
                    rules = acl.rules.len(),
                    users = passwords.as_ref().map(PasswordFile::len),
                    "ACL and password file reloaded"
                );
                self.broker.policy_mut().reload(acl, passwords);
            }
            Input::Written(conn) => {
                if let Some(c) = self.conns.get(&conn)
                    && c.ready
                    && c.link.credit() > 0
                {
                    self.writable.insert(conn);
                }
            }
        }
    }

    /// Registers a new connection and starts its task.
    fn open(&mut self, accepted: Accepted, now: Timestamp) {
        if self.max_connections > 0 && self.conns.len() >= self.max_connections {
            self.refuse(&accepted);
            // Dropping the stream closes it.
            return;
        }
        let Accepted {
            stream,
            info,
            transport,
        } = accepted;
        let peer = info.peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let conn = self.broker.handle_connection_opened_with(info, now);
        let (link, end) = link();
        let task = self
            .tasks
            .spawn(Connection::new(conn, stream, end, self.inputs.clone()));
        self.conns.insert(
            conn,
            Conn {
                peer,
                link,
                task,
                held: Vec::new(),
                closed_after_held: false,
                ready: false,
                connected: false,
            },
        );
        tracing::debug!(conn = conn.0, %peer, transport, "connection opened");
    }

    /// Logs a connection refused because `max_connections` are open: at once, then at most
    /// once a second with the number refused meanwhile (a flood must not flood the log).
    fn refuse(&mut self, accepted: &Accepted) {
        self.refused += 1;
        let now = tokio::time::Instant::now();
        if self
            .refused_logged_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                peer = ?accepted.info.peer,
                transport = accepted.transport,
                refused = self.refused,
                max_connections = self.max_connections,
                "connection refused: too many connections"
            );
            self.refused = 0;
            self.refused_logged_at = Some(now);
        }
    }

    /// Drops a connection whose writer failed: its task is aborted and the broker treats it
    /// as closed by the network (the will is published).
    fn drop_connection(&mut self, conn: ConnectionId, now: Timestamp) {
        if let Some(c) = self.conns.remove(&conn) {
            c.task.abort();
        }
        self.writable.remove(&conn);
        self.broker.handle_connection_closed(conn, now);
    }

    /// Drains the broker's outputs until there are none: records committed (then reported
    /// with `handle_committed`), the other outputs acted on, and the bytes of every writable
    /// connection pulled.
    fn flush(&mut self) -> Result<(), BoxError> {
        loop {
            let mut records: Vec<StorageRecord> = Vec::new();
            let mut last_seq = None;
            let mut actions = Vec::new();
            while let Some(output) = self.broker.poll_output() {
                match output {
                    Output::Persist { seq, record } => {
                        records.push(record);
                        last_seq = Some(seq);
                    }
                    other => actions.push(other),
                }
            }
            let persisted = !records.is_empty();
            if let Some(seq) = last_seq {
                // Committed by the storage thread while the engine goes on; what depends on
                // these records waits for `Committed::Upto` (a thread that has failed reports
                // it there, and the loop stops).
                self.last_seq = Some(seq);
                self.store.submit(records, seq);
            }
            let acted = !actions.is_empty();
            for action in actions {
                self.act(action);
            }
            let wrote = self.pull_writes();
            if !persisted && !acted && !wrote {
                return Ok(());
            }
        }
    }

    /// Pulls bytes for every connection that may have some and whose writer has room. Returns
    /// whether anything was pulled.
    fn pull_writes(&mut self) -> bool {
        let now = self.clock.now();
        let mut pulled = false;
        let mut failed = Vec::new();
        while let Some(id) = self.writable.pop_first() {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let mut credit = c.link.credit();
            loop {
                if credit == 0 {
                    // Told when a chunk is written; unless one was written meanwhile.
                    credit = c.link.want_written();
                    if credit == 0 {
                        break;
                    }
                }
                let Some(data) = self.broker.poll_transmit(id, WRITE_CHUNK, now) else {
                    c.ready = false;
                    break;
                };
                pulled = true;
                self.bytes.sent = self.bytes.sent.saturating_add(data.len() as u64);
                if c.link.send(WriteCmd::Data(data)).is_err() {
                    // The writer has ended (its write failed).
                    failed.push(id);
                    break;
                }
                credit -= 1;
            }
        }
        for id in failed {
            self.drop_connection(id, now);
        }
        pulled
    }

    /// Carries out one output other than `Persist`.
    fn act(&mut self, output: Output) {
        match output {
            Output::TransmitReady { connection } => {
                if let Some(c) = self.conns.get_mut(&connection) {
                    c.ready = true;
                    // Without credit, the writer says `Written` when it has room (asked when
                    // the credit ran out).
                    if c.link.credit() > 0 {
                        self.writable.insert(connection);
                    }
                }
            }
            Output::Close {
                connection,
                farewell,
            } => {
                self.writable.remove(&connection);
                if let Some(c) = self.conns.remove(&connection) {
                    // Graceful close: the reader drains what the peer still sends while the
                    // writer sends the farewell (a DISCONNECT with a reason code) and shuts
                    // its side; the socket closes when both are done, or CLOSE_FLUSH after
                    // the link is dropped (a client that does not read is not waited for).
                    c.link.set_read_state(ReadState::Draining);
                    let sent = (farewell.is_empty()
                        || c.link.send(WriteCmd::Data(farewell)).is_ok())
                        && c.link.send(WriteCmd::Close).is_ok();
                    if !sent {
                        c.task.abort();
                    }
                    tracing::debug!(conn = connection.0, peer = %c.peer, "connection closed by the broker");
                }
            }
            Output::PauseReading { connection } => {
                tracing::debug!(conn = connection.0, "reading paused");
                if let Some(c) = self.conns.get(&connection) {
                    c.link.set_read_state(ReadState::Paused);
                }
            }
            Output::ResumeReading { connection } => {
                tracing::debug!(conn = connection.0, "reading resumed");
                if let Some(c) = self.conns.get_mut(&connection) {
                    c.link.set_read_state(ReadState::Reading);
                    let held = std::mem::take(&mut c.held);
                    let now = self.clock.now();
                    for data in held {
                        // It may pause it again: what follows is held again.
                        if self.broker.is_reading_paused(connection) {
                            if let Some(c) = self.conns.get_mut(&connection) {
                                c.held.push(data);
                            }
                        } else {
                            self.broker.handle_bytes(connection, &data, now);
                        }
                    }
                    if self
                        .conns
                        .get(&connection)
                        .is_some_and(|c| c.closed_after_held && c.held.is_empty())
                    {
                        self.handle(Input::Closed(connection));
                    }
                }
            }
            Output::Authenticate {
                connection,
                request,
            } => self.authenticate(connection, *request),
            Output::Event(event) => self.log_event(&event),
            // `Persist` is handled by `flush`; later kinds of output are not known here.
            other => tracing::debug!(?other, "output ignored"),
        }
    }

    /// Checks a password off the engine's thread (at most one check per CPU at a time, so a
    /// flood of CONNECTs costs bounded memory), and hands the decision back as an input.
    fn authenticate(&mut self, connection: ConnectionId, request: AuthRequest) {
        let Some(passwords) = self.broker.policy_mut().passwords() else {
            // The policy defers only with a password file.
            let now = self.clock.now();
            self.broker.handle_auth_decision(
                connection,
                AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED),
                now,
            );
            return;
        };
        let permits = self.auth_permits.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let user = request.username.clone();
            let client_id = request.client_id.clone();
            let decision = tokio::task::spawn_blocking(move || {
                BrokerPolicy::check_password(&passwords, &request)
            })
            .await
            .unwrap_or(AuthDecision::Reject(ReasonCode::UNSPECIFIED_ERROR));
            if decision != AuthDecision::Accept {
                tracing::warn!(client_id, user, "password check failed");
            }
            let _ = inputs.send(Input::AuthDecided(connection, decision)).await;
        });
    }

    fn log_event(&mut self, event: &BrokerEvent) {
        if let BrokerEvent::ClientConnected { connection, .. } = event
            && let Some(c) = self.conns.get_mut(connection)
        {
            c.connected = true;
        }
        log_event(event, |conn| self.conns.get(conn).map(|c| c.peer));
    }

    /// Graceful shutdown: the engine sends MQTT 5.0 clients DISCONNECT 0x8B (Server shutting
    /// down) and ends every connection (wills and session expiry start now and are persisted),
    /// writers get a moment to flush, and the log is compacted.
    async fn shut_down(mut self) -> Result<(), BoxError> {
        tracing::info!(connections = self.conns.len(), "shutting down");
        let now = self.clock.now();
        self.broker.handle_shutdown(now);
        self.flush()?;
        // The DISCONNECTs wait for the records of the sessions' ends: until those are
        // committed (not forever: a storage that keeps failing does not keep the broker up).
        let deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH;
        while let Some(seq) = self.last_seq {
            if self.durable >= seq {
                break;
            }
            match tokio::time::timeout_at(deadline, self.committed.recv()).await {
                Ok(Some(Committed::Upto(seq))) => self.on_committed(seq),
                Ok(Some(Committed::Failed(e))) => return Err(e),
                Ok(None) => return Err("the storage thread ended".into()),
                Err(_) => {
                    tracing::error!("storage still failing at shutdown: closing without it");
                    break;
                }
            }
            self.flush()?;
        }
        for (_, c) in std::mem::take(&mut self.conns) {
            c.link.set_read_state(ReadState::Stopped);
            if c.link.send(WriteCmd::Close).is_err() {
                c.task.abort();
            }
        }
        let mut tasks = std::mem::take(&mut self.tasks);
        let flushed = tokio::time::timeout(SHUTDOWN_FLUSH, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if flushed.is_err() {
            tasks.abort_all();
        }
        // Waits for every commit (the storage is the state: nothing more to save).
        let finished = self.store.finish().is_some();
        let mut failed = None;
        while let Ok(report) = self.committed.try_recv() {
            if let Committed::Failed(e) = report {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !finished {
            return Err("the storage thread ended before saving the state".into());
        }
        tracing::info!(
            sessions = self.broker.session_count(),
            retained = self.broker.retained_count(),
            "state saved"
        );
        Ok(())
    }
}

/// Logs an engine event; `peer` tells a connection's address when it is known.
pub(crate) fn log_event(event: &BrokerEvent, peer: impl Fn(&ConnectionId) -> Option<SocketAddr>) {
    let peer = |conn: &ConnectionId| peer(conn).map_or_else(|| "-".to_owned(), |p| p.to_string());
    match event {
        BrokerEvent::ClientConnected {
            connection,
            client_id,
            session_present,
            protocol,
        } => {
            let peer = peer(connection);
            let what = if *session_present {
                "client connected, session resumed"
            } else {
                "client connected, session created"
            };
            tracing::info!(conn = connection.0, %peer, client_id, ?protocol, "{what}");
        }
        BrokerEvent::ConnectionRejected {
            connection,
            reason_code,
        } => {
            let peer = peer(connection);
            tracing::warn!(conn = connection.0, %peer, %reason_code, "CONNECT refused");
        }
        BrokerEvent::ClientDisconnected {
            connection,
            client_id,
            graceful,
        } => {
            tracing::info!(
                conn = connection.0,
                client_id,
                graceful,
                "client disconnected"
            );
        }
        BrokerEvent::ProtocolViolation {
            connection,
            reason_code,
            error,
        } => {
            let peer = peer(connection);
            match error {
                Some(error) => tracing::warn!(
                    conn = connection.0,
                    %peer,
                    %reason_code,
                    %error,
                    "protocol violation: connection closed"
                ),
                None => tracing::warn!(
                    conn = connection.0,
                    %peer,
                    %reason_code,
                    "protocol violation: connection closed"
                ),
            }
        }
        BrokerEvent::SessionEnded { client_id } => {
            tracing::info!(client_id, "session ended");
        }
        BrokerEvent::WillPublished { client_id, topic } => {
            tracing::info!(client_id, %topic, "will published");
        }
        BrokerEvent::MessageDropped {
            client_id,
            topic,
            reason,
        } => {
            tracing::warn!(client_id, %topic, ?reason, "message dropped");
        }
        BrokerEvent::NotAuthorized {
            client_id,
            action,
            target,
        } => {
            tracing::warn!(client_id, ?action, target, "not authorized");
        }
        BrokerEvent::ConsumerStuck {
            connection,
            client_id,
            backlog,
        } => {
            tracing::warn!(
                conn = connection.0,
                client_id,
                backlog,
                "consumer stuck: its QoS 0 messages are dropped until it reads again"
            );
        }
        BrokerEvent::ConsumerRecovered {
            connection,
            client_id,
            dropped,
        } => {
            tracing::info!(
                conn = connection.0,
                client_id,
                dropped,
                "consumer recovered (QoS 0 messages dropped meanwhile)"
            );
        }
        other => tracing::debug!(?other, "broker event"),
    }
}
