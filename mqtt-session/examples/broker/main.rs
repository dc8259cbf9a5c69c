//! `broker`: a real MQTT 3.1.1 / 5.0 broker over TCP, hosting the sans-IO
//! [`Broker`](mqtt_session::broker::Broker) engine on tokio, durable across restarts.
//!
//! # Usage
//!
//! ```text
//! cargo run --release -p mqtt-session --example broker -- [OPTIONS]
//! ```
//!
//! - `--listen ADDR`: the address to listen on (default `127.0.0.1:1883`).
//! - `--data-dir DIR`: where the state is kept (default `./mqtt-data`; created if missing).
//! - `--max-keep-alive SECS`, `--receive-maximum N`, `--max-packet-size BYTES`,
//!   `--topic-alias-maximum N`, `--max-inflight N`, `--max-queued-messages N`,
//!   `--max-queued-bytes N`, `--max-session-expiry SECS`, `--queue-qos0`,
//!   `--max-connection-backlog BYTES`, `--stuck-after-ms MS`, `--disconnect-stuck-after SECS`:
//!   the engine's limits
//!   ([`BrokerConfig`](mqtt_session::broker::BrokerConfig)); `--help` shows each with its
//!   default.
//! - `--acl FILE`: an access control list (below); without it every client may publish and
//!   subscribe to anything.
//!
//! It prints how many sessions and retained messages it restored and the address it listens
//! on, then logs with `tracing` to standard error: connections, sessions created, resumed and
//! ended, wills published, protocol violations, dropped messages. `RUST_LOG` sets the verbosity
//! (default `info`; `RUST_LOG=debug` adds every connection opened and closed). SIGINT or SIGTERM
//! stops it gracefully: every connection is closed as a network failure would close it (wills
//! follow their delay), the state is saved and compacted.
//!
//! # Architecture
//!
//! One engine task owns the `Broker` and the database; the accept loop, one reader task and one
//! writer task per connection talk to it over bounded channels (see `engine.rs`). The clock is
//! milliseconds since the UNIX epoch, so persisted deadlines (session expiry, will delay) keep
//! their meaning across restarts. Transmit is pulled: a writer holds at most two chunks, and
//! the engine's slow-consumer policy decides what a client that reads slowly costs (see
//! `docs/design/engine-io.md`); one that sends no CONNECT within 30 s is disconnected.
//!
//! # Durability
//!
//! State lives in `DIR/broker.redb` (see `store.rs`): a table of the engine's `StorageRecord`s
//! as JSON, keyed by a `u64` sequence. Records are committed (fsync) before anything that
//! depends on them is sent — *persist, then send* — so a SIGKILL at any moment loses nothing
//! the broker acknowledged. At startup the records are replayed with `Broker::restore`, then
//! the table is replaced by `Broker::snapshot()` in one transaction (compaction, also done while
//! running as the log grows, and at shutdown).
//!
//! # ACL file
//!
//! One statement per line; blank lines and lines starting with `#` are ignored (a `#` elsewhere
//! is a wildcard, not a comment):
//!
//! - `default allow` or `default deny`: the decision when no rule applies (at most once;
//!   `deny` when absent).
//! - `user NAME`: the rules after it apply only to clients that connected with User Name
//!   `NAME`, until the next `user` line; `user *` returns to rules for every client. Rules
//!   before any `user` line apply to every client.
//! - `allow|deny publish|subscribe|both FILTER`: a rule. `FILTER` is an MQTT Topic Filter, the
//!   rest of the line (it may contain spaces inside, not `$share/`).
//!
//! Rules are tried in file order; the first whose filter matches the topic decides, else the
//! default. `publish` rules give write access: a PUBLISH (a will too) to a topic. `subscribe`
//! rules give read access: the engine checks each message against them when it delivers it to
//! a session (to the connected client, into its offline queue, a will, one member of a shared
//! subscription, each retained message sent on subscribing), so a denied topic is never
//! delivered.
//!
//! A SUBSCRIBE (a shared subscription's filter is judged without `$share/{ShareName}/`) is
//! refused only when no topic its filter can match may be read: the filter lies inside a
//! `deny` rule's filter tried before any `allow` that overlaps it, or no `allow` overlaps it
//! under `default deny`. A wider filter is granted and receives only what may be read: with
//! `default allow` and `deny subscribe test/nosubscribe`, `#` and `test/#` are granted and
//! never deliver `test/nosubscribe`. As the engine does for any `Policy`, a refused SUBSCRIBE
//! gets 0x87 Not authorized (a failure return code in 3.1.1), a refused QoS 1/2 PUBLISH of
//! MQTT 5.0 gets 0x87 in its PUBACK/PUBREC, and one of 3.1.1 is acknowledged and dropped.
//!
//! In this example `admin` may do anything (outside `$` topics); everyone else receives
//! `public/…` except `public/secret/…` (a subscription to `public/#` is granted and never
//! delivers `public/secret/…`; one to `public/secret/#` is refused), and may publish to
//! `public/{anything}/data`:
//!
//! ```text
//! default deny
//! user admin
//! allow both #
//! user *
//! deny subscribe public/secret/#
//! allow subscribe public/#
//! allow publish public/+/data
//! ```
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // the host owns the clock

mod acl;
mod engine;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mqtt_session::broker::{Broker, BrokerConfig, Output};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

use acl::{Acl, AclPolicy};
use engine::{Clock, Engine, INPUT_QUEUE, Input};
use store::Store;

/// Errors end the program with a message.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An MQTT 3.1.1 / 5.0 broker on the mqtt-session engine, durable across restarts.
#[derive(Debug, Parser)]
#[command(name = "broker", version)]
struct Args {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
    listen: String,
    /// The directory holding the broker's state (broker.redb); created if missing.
    #[arg(long, value_name = "DIR", default_value = "./mqtt-data")]
    data_dir: PathBuf,
    /// The longest Keep Alive accepted, in seconds; a client asking for more (or for 0) is
    /// told this value (MQTT 5.0 Server Keep Alive). Default: the client's.
    #[arg(long, value_name = "SECS")]
    max_keep_alive: Option<u16>,
    /// How many QoS 1/2 PUBLISH packets a client may have unacknowledged towards the broker.
    #[arg(long, value_name = "N", default_value_t = BrokerConfig::default().receive_maximum,
          value_parser = clap::value_parser!(u16).range(1..))]
    receive_maximum: u16,
    /// The largest packet accepted from a client, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = BrokerConfig::default().maximum_packet_size,
          value_parser = clap::value_parser!(u32).range(2..))]
    max_packet_size: u32,
    /// How many topic aliases a client may use towards the broker (MQTT 5.0).
    #[arg(long, value_name = "N", default_value_t = BrokerConfig::default().topic_alias_maximum)]
    topic_alias_maximum: u16,
    /// The most QoS 1/2 messages in flight towards one client (also capped by its Receive
    /// Maximum).
    #[arg(long, value_name = "N", default_value_t = BrokerConfig::default().max_inflight,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_inflight: u16,
    /// The most messages queued for one session; newer ones are dropped when it is full.
    #[arg(long, value_name = "N", default_value_t = BrokerConfig::default().max_queued_messages)]
    max_queued_messages: usize,
    /// The most payload bytes queued for one session; newer messages are dropped beyond it.
    #[arg(long, value_name = "N", default_value_t = BrokerConfig::default().max_queued_bytes)]
    max_queued_bytes: usize,
    /// The longest Session Expiry Interval granted, in seconds. Default: as requested.
    #[arg(long, value_name = "SECS")]
    max_session_expiry: Option<u32>,
    /// Queue QoS 0 messages for offline sessions too (they are never persisted).
    #[arg(long)]
    queue_qos0: bool,
    /// The most bytes a connection may have waiting to be sent; a subscriber over it slows its
    /// publishers, then counts as stuck (slow-consumer policy, docs/design/engine-io.md).
    #[arg(long, value_name = "BYTES", default_value_t = BrokerConfig::default().max_connection_backlog)]
    max_connection_backlog: usize,
    /// How long a subscriber may stay over its backlog before it counts as stuck (its QoS 0
    /// messages are then dropped, and the publishers it slowed are resumed), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = BrokerConfig::default().stuck_after_ms)]
    stuck_after_ms: u64,
    /// How long a subscriber may stay stuck before it is disconnected (0x97), in seconds; 0:
    /// never.
    #[arg(long, value_name = "SECS", default_value_t = BrokerConfig::default().disconnect_stuck_after.unwrap_or(0))]
    disconnect_stuck_after: u32,
    /// An access control list (format in the README and the example's documentation).
    /// Default: everyone may publish and subscribe to anything.
    #[arg(long, value_name = "FILE")]
    acl: Option<PathBuf>,
}

impl Args {
    fn config(&self) -> BrokerConfig {
        let mut config = BrokerConfig::default();
        config.max_keep_alive = self.max_keep_alive;
        config.receive_maximum = self.receive_maximum;
        config.maximum_packet_size = self.max_packet_size;
        config.topic_alias_maximum = self.topic_alias_maximum;
        config.max_inflight = self.max_inflight;
        config.max_queued_messages = self.max_queued_messages;
        config.max_queued_bytes = self.max_queued_bytes;
        config.max_session_expiry = self.max_session_expiry;
        config.queue_qos0_when_offline = self.queue_qos0;
        config.max_connection_backlog = self.max_connection_backlog;
        config.stuck_after_ms = self.stuck_after_ms;
        config.disconnect_stuck_after =
            (self.disconnect_stuck_after > 0).then_some(self.disconnect_stuck_after);
        config
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("broker: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let acl = match &args.acl {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the ACL {}: {e}", path.display()))?;
            let acl = Acl::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!(file = %path.display(), rules = acl.rules.len(), "ACL loaded");
            acl
        }
        None => Acl::allow_all(),
    };

    // Restore: replay the log, persist what restoring changes, then compact.
    let mut store = Store::open(&args.data_dir)?;
    let records = store.load()?;
    let replayed = records.len();
    let mut clock = Clock::default();
    let now = clock.now();
    let mut broker = Broker::restore(args.config(), AclPolicy { acl }, records, now);
    let mut changes = Vec::new();
    while let Some(output) = broker.poll_output() {
        match output {
            Output::Persist { seq, record } => {
                changes.push(record);
                // Committed just below, before anything listens.
                broker.handle_committed(seq);
            }
            Output::Event(event) => engine::log_event(&event, |_| None),
            // There are no connections yet: nothing can be sent or closed.
            _ => {}
        }
    }
    store.append(&changes)?;
    store.replace_all(&broker.snapshot())?;
    store.shrink_file()?;
    tracing::info!(
        dir = %args.data_dir.display(),
        replayed,
        kept = store.len(),
        "storage loaded and compacted"
    );

    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "restored {} sessions and {} retained messages from {}",
        broker.session_count(),
        broker.retained_count(),
        args.data_dir.display()
    );
    println!("listening on {addr}");
    tracing::info!(%addr, "listening");

    let (inputs, queue) = mpsc::channel(INPUT_QUEUE);
    tokio::spawn(accept_loop(listener, inputs.clone()));
    // The engine runs on this (the main) thread, off the runtime's workers, so its blocking
    // redb commits never stall the connection tasks.
    Engine::new(broker, store, clock, inputs)
        .run(queue, shutdown_signal())
        .await
}

/// Accepts connections and hands them to the engine.
async fn accept_loop(listener: TcpListener, inputs: mpsc::Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if inputs.send(Input::Accepted(stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // For example too many open files: wait a little rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
