//! [`Server`]: the broker bound to its listener with its state restored, ready to run.

use std::net::SocketAddr;

use mqtt_session::broker::{Broker, Output};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::acl::{Acl, AclPolicy};
use crate::engine::{self, Clock, Engine, INPUT_QUEUE, Input};
use crate::store::Store;
use crate::{ConfigError, Error, Settings};

/// A broker with its storage restored and its listener bound: [`Server::run`] serves clients.
pub struct Server {
    settings: Settings,
    broker: Broker<AclPolicy>,
    store: Store,
    clock: Clock,
    listener: TcpListener,
    addr: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("data_dir", &self.settings.data_dir)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Reads the ACL, opens the storage in `settings.data_dir` (replaying its records and
    /// compacting them) and binds the listener.
    ///
    /// # Errors
    /// [`Error::Config`] for an ACL that cannot be read or parsed, [`Error::Storage`] when the
    /// state cannot be opened or restored, [`Error::Io`] when the address cannot be bound.
    pub async fn bind(settings: Settings) -> Result<Self, Error> {
        let acl = match &settings.acl {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::in_file(path, None, format!("cannot read the ACL: {e}"))
                })?;
                let acl = Acl::parse(&text).map_err(|e| {
                    ConfigError::in_file(path, Some(e.line), format!("ACL: {}", e.message))
                })?;
                tracing::info!(file = %path.display(), rules = acl.rules.len(), "ACL loaded");
                acl
            }
            None => Acl::allow_all(),
        };

        // Restore: replay the log, persist what restoring changes, then compact.
        let mut store = Store::open(&settings.data_dir).map_err(Error::Storage)?;
        let records = store.load().map_err(Error::Storage)?;
        let replayed = records.len();
        let mut clock = Clock::default();
        let now = clock.now();
        let mut broker = Broker::restore(settings.broker_config(), AclPolicy { acl }, records, now);
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
        store.append(&changes).map_err(Error::Storage)?;
        store
            .replace_all(&broker.snapshot())
            .map_err(Error::Storage)?;
        store.shrink_file().map_err(Error::Storage)?;
        tracing::info!(
            dir = %settings.data_dir.display(),
            replayed,
            kept = store.len(),
            "storage loaded and compacted"
        );

        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|source| Error::Io {
                context: format!("cannot listen on {}", settings.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            context: "the listener's address".to_owned(),
            source,
        })?;
        Ok(Self {
            settings,
            broker,
            store,
            clock,
            listener,
            addr,
        })
    }

    /// The address the MQTT listener is bound to (the port the system chose for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many sessions were restored from storage.
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.broker.session_count()
    }

    /// How many retained messages were restored from storage.
    #[must_use]
    pub fn retained_count(&self) -> usize {
        self.broker.retained_count()
    }

    /// Serves clients until `shutdown` completes, then shuts down gracefully: MQTT 5.0 clients
    /// get DISCONNECT 0x8B (Server shutting down), every connection ends as a network failure
    /// would end it (wills follow their delay), the state is saved and compacted.
    ///
    /// # Errors
    /// [`Error::Storage`] when a commit fails: the broker stops at once, and nothing that
    /// depends on what was not committed has been sent.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tracing::info!(addr = %self.addr, "listening");
        let (inputs, queue) = mpsc::channel(INPUT_QUEUE);
        let accept = tokio::spawn(accept_loop(self.listener, inputs.clone()));
        let result = Engine::new(self.broker, self.store, self.clock, inputs)
            .run(queue, shutdown)
            .await
            .map_err(Error::Storage);
        accept.abort();
        result
    }
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
