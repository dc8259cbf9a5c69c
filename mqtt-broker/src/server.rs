//! [`Server`]: the broker bound to its listener with its state restored, ready to run.

use std::net::SocketAddr;

use mqtt_session::broker::{Broker, Output};
use tokio::net::TcpListener;

use std::path::{Path, PathBuf};

use crate::acl::Acl;
use crate::engine::{self, Clock, Engine, EngineOptions, Input};
use crate::inputs::{self, INPUT_BYTES, InputRx, InputTx};
use crate::password::PasswordFile;
use crate::policy::BrokerPolicy;
use crate::store::Store;
use crate::transport::{self, Handshake};
use crate::{ConfigError, Error, Settings, tls};

/// A broker with its storage restored and its listener bound: [`Server::run`] serves clients.
pub struct Server {
    settings: Settings,
    broker: Broker<BrokerPolicy>,
    store: Store,
    clock: Clock,
    listener: TcpListener,
    addr: SocketAddr,
    /// The TLS and WebSocket listeners, with their addresses.
    others: Vec<(TcpListener, Handshake, SocketAddr)>,
    inputs: InputTx,
    queue: InputRx,
}

/// Reloads the ACL and the password file of a running [`Server`] (the binary does on SIGHUP).
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    acl: Option<PathBuf>,
    password_file: Option<PathBuf>,
    inputs: InputTx,
}

impl ReloadHandle {
    /// Reads both files again and, when both are good, hands them to the running broker: no
    /// connection is dropped, and the next decisions use the new rules and users.
    ///
    /// # Errors
    /// The [`ConfigError`] of a file that cannot be read or parsed: the broker keeps the files
    /// it had.
    pub async fn reload(&self) -> Result<(), Error> {
        let acl = load_acl(self.acl.as_deref())?;
        let passwords = self
            .password_file
            .as_deref()
            .map(PasswordFile::load)
            .transpose()?;
        self.inputs
            .send(Input::Reload(acl, passwords))
            .await
            .map_err(|_| Error::Io {
                context: "reload".to_owned(),
                source: std::io::Error::other("the broker has stopped"),
            })
    }
}

/// A TCP listener on `addr`.
async fn bind_listener(addr: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|source| Error::Io {
        context: format!("cannot listen on {addr}"),
        source,
    })
}

/// Reads and parses the ACL at `path` (everything allowed without one).
fn load_acl(path: Option<&Path>) -> Result<Acl, ConfigError> {
    let Some(path) = path else {
        return Ok(Acl::allow_all());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::in_file(path, None, format!("cannot read the ACL: {e}")))?;
    let acl = Acl::parse(&text)
        .map_err(|e| ConfigError::in_file(path, Some(e.line), format!("ACL: {}", e.message)))?;
    tracing::info!(file = %path.display(), rules = acl.rules.len(), "ACL loaded");
    Ok(acl)
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
    /// Checks the settings ([`Settings::validate`]), reads the ACL, the password file and the
    /// TLS certificates and key, opens the storage in `settings.data_dir` (restoring its state,
    /// and migrating a data directory of an earlier layout) and binds the listeners.
    ///
    /// # Errors
    /// [`Error::Config`] for settings that do not fit together, or a file (ACL, password file,
    /// certificate, key, client CA) that cannot be read or used; [`Error::Storage`] when the
    /// state cannot be opened or restored; [`Error::Io`] when an address cannot be bound.
    pub async fn bind(settings: Settings) -> Result<Self, Error> {
        settings.validate()?;
        let acl = load_acl(settings.acl.as_deref())?;
        let tls = tls::server_config(&settings)?.map(tokio_rustls::TlsAcceptor::from);
        let passwords = match &settings.password_file {
            Some(path) => {
                let file = PasswordFile::load(path)?;
                tracing::info!(file = %path.display(), users = file.len(), "password file loaded");
                Some(file)
            }
            None => {
                if !settings.use_identity_as_username
                    && acl
                        .rules
                        .iter()
                        .any(|r| r.user.is_some() || (r.pattern && r.filter.contains("%u")))
                {
                    tracing::warn!(
                        "the ACL has `user` blocks or `%u` patterns, but without a password file \
                         User Names are not verified: those rules apply to nobody"
                    );
                }
                None
            }
        };
        let mut policy = BrokerPolicy::new(acl, passwords, settings.allow_anonymous);
        if settings.use_identity_as_username {
            policy = policy.with_identity_as_username();
        }

        // Restore: load the stored state, then persist what restoring changes.
        let mut store = Store::open(&settings.data_dir).map_err(Error::Storage)?;
        let records = store.load().map_err(Error::Storage)?;
        let loaded = records.len();
        let mut clock = Clock::default();
        let now = clock.now();
        let mut broker = Broker::restore(settings.broker_config(), policy, records, now);
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
        store.commit(&changes).map_err(Error::Storage)?;
        store.shrink_file().map_err(Error::Storage)?;
        let counts = store.counts().map_err(Error::Storage)?;
        tracing::info!(
            dir = %settings.data_dir.display(),
            loaded,
            stored = ?counts,
            "storage loaded"
        );

        let listener = bind_listener(&settings.listen).await?;
        let addr = transport::local_addr(&listener)?;
        let max_size = usize::try_from(settings.max_packet_size).unwrap_or(usize::MAX);
        // Served on `/mqtt`; frames and messages of at most the maximum packet size.
        let ws = mqtt_transport::websocket::Options::default().with_max_message_size(max_size);
        let mut others = Vec::new();
        for (listen, handshake) in [
            (&settings.tls_listen, tls.clone().map(Handshake::Tls)),
            (&settings.ws_listen, Some(Handshake::Ws(ws.clone()))),
            (
                &settings.wss_listen,
                tls.clone().map(|tls| Handshake::Wss(tls, ws.clone())),
            ),
        ] {
            if let (Some(listen), Some(handshake)) = (listen, handshake) {
                let listener = bind_listener(listen).await?;
                let addr = transport::local_addr(&listener)?;
                others.push((listener, handshake, addr));
            }
        }
        let (inputs, queue) = inputs::channel(INPUT_BYTES);
        Ok(Self {
            settings,
            broker,
            store,
            clock,
            listener,
            addr,
            others,
            inputs,
            queue,
        })
    }

    /// The address the MQTT listener is bound to (the port the system chose for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every listener: its transport (`tcp`, `tls`, `ws`, `wss`) and the address it is bound
    /// to; `tcp` ([`Server::local_addr`]) first.
    #[must_use]
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        std::iter::once(("tcp", self.addr))
            .chain(self.others.iter().map(|(_, h, addr)| (h.name(), *addr)))
            .collect()
    }

    /// A handle that reloads the ACL and the password file while the server runs.
    #[must_use]
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            acl: self.settings.acl.clone(),
            password_file: self.settings.password_file.clone(),
            inputs: self.inputs.clone(),
        }
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
    /// would end it (wills follow their delay), and the last commits are waited for (at most
    /// 2 s when the storage is failing).
    ///
    /// # Errors
    /// [`Error::Storage`] when the storage thread cannot start, or when commits are still
    /// failing at shutdown: nothing that depends on what was not committed has been sent. (A
    /// commit that fails while running is retried until it succeeds; it does not stop the
    /// broker.)
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        tracing::info!(addr = %self.addr, transport = "tcp", "listening");
        let mut accept = vec![tokio::spawn(transport::accept_tcp(
            self.listener,
            self.inputs.clone(),
        ))];
        for (listener, handshake, addr) in self.others {
            tracing::info!(%addr, transport = handshake.name(), "listening");
            accept.push(tokio::spawn(transport::accept_with_handshake(
                listener,
                handshake,
                self.inputs.clone(),
            )));
        }
        let options = EngineOptions {
            max_connections: self.settings.max_connections,
            sys_interval: self.settings.sys_interval,
        };
        let result = match Engine::new(self.broker, self.store, self.clock, self.inputs, options) {
            Ok(engine) => engine
                .run(self.queue, shutdown)
                .await
                .map_err(Error::Storage),
            Err(e) => Err(Error::Storage(e)),
        };
        for task in accept {
            task.abort();
        }
        result
    }
}
