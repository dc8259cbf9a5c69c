//! `mqtt-broker`: an MQTT 3.1.1 / 5.0 broker on tokio, hosting the sans-IO
//! [`Broker`](mqtt_session::broker::Broker) engine of `mqtt-session`, durable across restarts.
//!
//! The binary `mqtt-broker` is this library with a command line (see the README and
//! `mqtt-broker --help`); other programs embed the same server:
//!
//! ```no_run
//! use mqtt_broker::{Server, Settings};
//!
//! # async fn example() -> Result<(), mqtt_broker::Error> {
//! let mut settings = Settings::default();
//! settings.listen = "127.0.0.1:0".to_owned();
//! settings.data_dir = "./my-broker-data".into();
//! let server = Server::bind(settings).await?;
//! println!("listening on {}", server.local_addr());
//! // Runs until the future completes (here: Ctrl-C), then shuts down gracefully.
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Architecture
//!
//! One engine task owns the `Broker`; the accept loop and one task per connection (it reads
//! and writes its socket: `connection.rs`) talk to it over a bounded channel and a small
//! shared link per connection (see `engine.rs`). The binary runs all of them on one thread
//! unless told otherwise (`--threads`); a library user picks the runtime. The clock is
//! milliseconds since the UNIX epoch, so persisted deadlines (session expiry, will delay) keep
//! their meaning across restarts. Transmit is pulled: a writer holds at most two chunks, and
//! the engine's slow-consumer policy decides what a client that reads slowly costs (see
//! `docs/design/engine-io.md`); one that sends no CONNECT within 30 s is disconnected.
//!
//! Storage is committed on a thread of its own (group commit: everything the engine produced
//! while one commit ran goes into the next transaction); the engine task goes on routing
//! meanwhile. [`Server::run`] blocks its task only at shutdown, while it waits for the last
//! commits: await it where that is harmless (the future given to `#[tokio::main]`'s
//! `block_on`, as the binary does, or a thread of its own).
//!
//! # Durability
//!
//! State lives in `DIR/broker.redb`, in tables keyed so that each of the engine's
//! `StorageRecord`s replaces or deletes its own key (sessions, subscriptions, queue entries,
//! wills, retained messages; each queued message stored once however many sessions it is
//! queued for), in the binary record format of `mqtt_session::broker::record` (messages in
//! their wire form); [`dump`] (`mqtt-broker dump DIR`) prints the state readably. Records are
//! committed (fsync) before anything that depends on them is sent — *persist, then send* — so
//! a SIGKILL at any moment loses nothing the broker acknowledged. A commit that fails (a full
//! disk) is retried until it succeeds; what depends on it waits. At startup the state is
//! loaded and handed to `Broker::restore`; there is no log to compact.
#![forbid(unsafe_code)]
// The host owns the clock: reading it here is the point.
#![allow(clippy::disallowed_methods)]

pub mod acl;
pub mod config;
mod connection;
mod engine;
mod inputs;
mod link;
pub mod password;
pub mod policy;
mod server;
mod store;
mod sys;
mod tls;
mod transport;
mod websocket;

pub use config::{ConfigError, Settings};
pub use server::{ReloadHandle, Server};
/// For the `websocket` fuzz target (not a stable API).
#[doc(hidden)]
pub use websocket::{Replay as WebSocketReplay, replay as websocket_replay};

/// Why the broker could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting, or a file a setting names (the ACL), is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket or a file could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The storage failed: nothing that depends on what was not committed has been sent.
    #[error("storage: {0}")]
    Storage(#[source] BoxError),
}

/// Writes the state stored in the data directory `dir` to `out` as the records a restart
/// replays, one per line: its number, a tab, the record as JSON (what `mqtt-broker dump DIR`
/// prints). A data directory of an earlier layout is migrated first, as a start would.
/// Returns how many records were written.
///
/// # Errors
/// `dir` holds no `broker.redb`, the file is in use by a running broker, a record does not
/// decode, or `out` fails.
pub fn dump(dir: &std::path::Path, out: &mut dyn std::io::Write) -> Result<u64, Error> {
    let file = dir.join(store::FILE_NAME);
    if !file.is_file() {
        return Err(Error::Storage(
            format!("{}: no such file (not a data directory?)", file.display()).into(),
        ));
    }
    let mut store = store::Store::open(dir).map_err(Error::Storage)?;
    let records = store.load().map_err(Error::Storage)?;
    let records: Vec<(usize, _)> = records.into_iter().enumerate().collect();
    let io = |source| Error::Io {
        context: "cannot write the dump".to_owned(),
        source,
    };
    for (key, record) in &records {
        let json = serde_json::to_string(record)
            .map_err(|e| Error::Storage(format!("record {key}: {e}").into()))?;
        writeln!(out, "{key}\t{json}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(records.len() as u64)
}

/// Errors of the parts that only report them (storage).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
