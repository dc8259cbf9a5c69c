//! `mqtt-broker`: an MQTT 3.1.1 / 5.0 broker over TCP, TLS, WebSocket and WebSocket over TLS,
//! durable across restarts.
//!
//! ```text
//! cargo run --release -p mqtt-broker -- [OPTIONS]
//! ```
//!
//! Every setting is a flag and a key of the TOML file given with `--config FILE`; flags
//! override the file (`mqtt-broker --help` lists them with their defaults; the library's
//! `config` module documents the file). It prints how many sessions and retained messages it
//! restored and the address of each listener, then logs with `tracing` to standard error:
//! connections, sessions created, resumed and ended, wills published, protocol violations,
//! dropped messages. `RUST_LOG` sets the verbosity (default `info`; `RUST_LOG=debug` adds every
//! connection opened and closed). SIGINT or SIGTERM stops it gracefully.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};
use mqtt_broker::{Server, Settings};
use tracing_subscriber::EnvFilter;

/// An MQTT 3.1.1 / 5.0 broker on the mqtt-session engine, durable across restarts.
///
/// Every option is also a key of the configuration file (`--max-keep-alive` is
/// `max_keep_alive`); options given here override the file.
#[derive(Debug, Parser)]
#[command(name = "mqtt-broker", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A TOML configuration file: any of the settings below, by their long names with `_` for
    /// `-`. Relative paths in it are relative to its directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to serve MQTT over TCP on.
    #[arg(long, value_name = "ADDR", default_value_t = Settings::default().listen)]
    listen: String,
    /// Also serve MQTT over TLS on this address (e.g. 0.0.0.0:8883); needs --cert and --key.
    /// Default: none.
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<String>,
    /// Also serve MQTT over WebSocket on this address, path /mqtt, subprotocol `mqtt`.
    /// Default: none.
    #[arg(long, value_name = "ADDR")]
    ws_listen: Option<String>,
    /// Also serve MQTT over WebSocket over TLS (wss://) on this address, path /mqtt; needs
    /// --cert and --key. Default: none.
    #[arg(long, value_name = "ADDR")]
    wss_listen: Option<String>,
    /// The server's certificate chain (PEM, its own certificate first), for --tls-listen and
    /// --wss-listen.
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1), for --tls-listen and
    /// --wss-listen.
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// Certificate authorities (PEM) to verify TLS client certificates against: clients may
    /// then present one, and one that does not verify is refused in the handshake. Default:
    /// no client certificates asked for.
    #[arg(long, value_name = "PEM")]
    client_ca: Option<PathBuf>,
    /// With --client-ca, refuse TLS clients that present no certificate.
    #[arg(long)]
    require_certificate: bool,
    /// With --client-ca, the verified client certificate's subject Common Name is the
    /// client's User Name for the ACL (`user` blocks, `%u`): clients without one are refused,
    /// and a CONNECT's User Name, if any, must be that name. Replaces --password-file.
    #[arg(long)]
    use_identity_as_username: bool,
    /// The directory holding the broker's state (broker.redb); created if missing.
    #[arg(long, value_name = "DIR", default_value = "./mqtt-data")]
    data_dir: PathBuf,
    /// An access control list (format in the README). Default: everyone may publish and
    /// subscribe to anything. Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    acl: Option<PathBuf>,
    /// A password file (`user:hash` lines, as `mosquitto_passwd` or `mqtt-broker passwd`
    /// write them): clients with a User Name must give its password, clients without one are
    /// refused unless --allow-anonymous. Default: no check, everyone may connect. Reloaded on
    /// SIGHUP.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// With --password-file, let clients without a User Name connect too.
    #[arg(long)]
    allow_anonymous: bool,
    /// The most client connections at once; more are closed at once (and logged). 0: no limit.
    #[arg(long, value_name = "N", default_value_t = Settings::default().max_connections)]
    max_connections: usize,
    /// Seconds between updates of the `$SYS/broker/...` statistics topics; 0: none.
    #[arg(long, value_name = "SECS", default_value_t = Settings::default().sys_interval)]
    sys_interval: u64,
    /// How many threads serve the connections. 1: one thread runs the engine and every
    /// connection (the least CPU per message). Default: 1, or one per CPU when a TLS listener
    /// is configured (handshakes are CPU-heavy).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// The longest Keep Alive accepted, in seconds; a client asking for more (or for 0) is
    /// told this value (MQTT 5.0 Server Keep Alive). Default: the client's.
    #[arg(long, value_name = "SECS")]
    max_keep_alive: Option<u16>,
    /// How many QoS 1/2 PUBLISH packets a client may have unacknowledged towards the broker.
    #[arg(long, value_name = "N", default_value_t = Settings::default().receive_maximum,
          value_parser = clap::value_parser!(u16).range(1..))]
    receive_maximum: u16,
    /// The largest packet accepted from a client, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Settings::default().max_packet_size,
          value_parser = clap::value_parser!(u32).range(2..))]
    max_packet_size: u32,
    /// How many topic aliases a client may use towards the broker (MQTT 5.0).
    #[arg(long, value_name = "N", default_value_t = Settings::default().topic_alias_maximum)]
    topic_alias_maximum: u16,
    /// The most QoS 1/2 messages in flight towards one client (also capped by its Receive
    /// Maximum).
    #[arg(long, value_name = "N", default_value_t = Settings::default().max_inflight,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_inflight: u16,
    /// The most messages queued for one session; newer ones are dropped when it is full.
    #[arg(long, value_name = "N", default_value_t = Settings::default().max_queued_messages)]
    max_queued_messages: usize,
    /// The most payload bytes queued for one session; newer messages are dropped beyond it.
    #[arg(long, value_name = "N", default_value_t = Settings::default().max_queued_bytes)]
    max_queued_bytes: usize,
    /// The longest Session Expiry Interval granted, in seconds. Default: as requested.
    #[arg(long, value_name = "SECS")]
    max_session_expiry: Option<u32>,
    /// Queue QoS 0 messages for offline sessions too (they are never persisted).
    #[arg(long)]
    queue_qos0: bool,
    /// The most bytes a connection may have waiting to be sent; a subscriber over it slows its
    /// publishers, then counts as stuck (slow-consumer policy, docs/design/engine-io.md).
    #[arg(long, value_name = "BYTES", default_value_t = Settings::default().max_connection_backlog)]
    max_connection_backlog: usize,
    /// How long a subscriber may stay over its backlog before it counts as stuck (its QoS 0
    /// messages are then dropped, and the publishers it slowed are resumed), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = Settings::default().stuck_after_ms)]
    stuck_after_ms: u64,
    /// How long a subscriber may stay stuck before it is disconnected (0x97), in seconds; 0:
    /// never.
    #[arg(long, value_name = "SECS", default_value_t = Settings::default().disconnect_stuck_after)]
    disconnect_stuck_after: u32,
    /// The highest QoS accepted in PUBLISH and granted in SUBACK (0, 1 or 2); below 2, MQTT 5.0
    /// clients are told it in CONNACK and a PUBLISH or Will above it is refused (0x9B).
    #[arg(long, value_name = "QOS", default_value_t = Settings::default().maximum_qos,
          value_parser = clap::value_parser!(u8).range(0..=2))]
    maximum_qos: u8,
    /// Whether retained messages are supported; with false, MQTT 5.0 clients are told so in
    /// CONNACK and a PUBLISH or Will with RETAIN is refused (0x9A).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set,
          default_value_t = Settings::default().retain_available)]
    retain_available: bool,
    /// Whether Topic Filters with wildcards (+, #) may be subscribed to; with false, each is
    /// refused in SUBACK (0xA2).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set,
          default_value_t = Settings::default().wildcard_subscriptions)]
    wildcard_subscriptions: bool,
    /// Whether a SUBSCRIBE may carry a Subscription Identifier (MQTT 5.0); with false, one that
    /// does is a Protocol Error (DISCONNECT 0xA1).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set,
          default_value_t = Settings::default().subscription_identifiers)]
    subscription_identifiers: bool,
    /// Whether shared subscriptions ($share/GROUP/FILTER) are supported; with false, each is
    /// refused in SUBACK (0x9E).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set,
          default_value_t = Settings::default().shared_subscriptions)]
    shared_subscriptions: bool,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Adds USER to the password FILE, or replaces their password (an argon2id hash); creates
    /// FILE (readable by its owner only) when it does not exist. Reads the password from
    /// standard input (its first line) when it is not given.
    Passwd {
        /// The password file.
        file: PathBuf,
        /// The user name (without `:`).
        user: String,
        /// The password (better read from standard input: command lines are visible to other
        /// users of the machine).
        password: Option<String>,
    },
    /// Prints every record stored in the data directory DIR, one per line: its key, a tab,
    /// the record as JSON. The broker must not be running on DIR.
    Dump {
        /// The data directory (the broker's --data-dir).
        dir: PathBuf,
    },
}

/// The settings: the defaults, then the configuration file, then the flags given on the
/// command line (a flag left at its default does not override the file).
fn settings(cli: &Cli, matches: &ArgMatches) -> Result<Settings, mqtt_broker::ConfigError> {
    let mut settings = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    macro_rules! overlay {
        ($($field:ident),* $(,)?) => {
            $(if given(stringify!($field)) {
                settings.$field = cli.$field.clone();
            })*
        };
    }
    overlay!(
        listen,
        tls_listen,
        ws_listen,
        wss_listen,
        cert,
        key,
        client_ca,
        require_certificate,
        use_identity_as_username,
        data_dir,
        acl,
        password_file,
        allow_anonymous,
        max_connections,
        sys_interval,
        threads,
        max_keep_alive,
        receive_maximum,
        max_packet_size,
        topic_alias_maximum,
        max_inflight,
        max_queued_messages,
        max_queued_bytes,
        max_session_expiry,
        queue_qos0,
        max_connection_backlog,
        stuck_after_ms,
        disconnect_stuck_after,
        maximum_qos,
        retain_available,
        wildcard_subscriptions,
        subscription_identifiers,
        shared_subscriptions,
    );
    Ok(settings)
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log redirected to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(Command::Passwd {
        file,
        user,
        password,
    }) = &cli.command
    {
        return passwd(file, user, password.as_deref());
    }
    if let Some(Command::Dump { dir }) = &cli.command {
        let mut out = std::io::stdout().lock();
        return match mqtt_broker::dump(dir, &mut out) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mqtt-broker dump: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = settings(&cli, &matches)
        .map_err(mqtt_broker::Error::from)
        .and_then(serve);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("mqtt-broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mqtt-broker passwd FILE USER [PASSWORD]`.
fn passwd(file: &std::path::Path, user: &str, password: Option<&str>) -> ExitCode {
    let password = match password {
        Some(p) => p.to_owned(),
        None => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("mqtt-broker passwd: cannot read the password: {e}");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    match mqtt_broker::password::set_password(file, user, password.as_bytes()) {
        Ok(()) => {
            println!("{}: password of {user} set", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mqtt-broker passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the server: with one thread (`Settings::runtime_threads`), the engine and every
/// connection on this one; with more, the engine on this (the main) thread and the connections
/// on that many worker threads. Storage commits run on a thread of their own either way.
fn serve(settings: Settings) -> Result<(), mqtt_broker::Error> {
    let threads = settings.runtime_threads();
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|source| mqtt_broker::Error::Io {
            context: "cannot start the runtime".to_owned(),
            source,
        })?;
    runtime.block_on(async {
        let data_dir = settings.data_dir.clone();
        let server = Server::bind(settings).await?;
        println!(
            "restored {} sessions and {} retained messages from {}",
            server.session_count(),
            server.retained_count(),
            data_dir.display()
        );
        // One line per listener: plain TCP first, as `listening on ADDR`; the others with
        // their transport, as `listening on ADDR (tls)`.
        for (transport, addr) in server.listeners() {
            if transport == "tcp" {
                println!("listening on {addr}");
            } else {
                println!("listening on {addr} ({transport})");
            }
        }
        tokio::spawn(reload_on_sighup(server.reload_handle()));
        server.run(shutdown_signal()).await
    })
}

/// Reloads the ACL and the password file on each SIGHUP; a reload that fails keeps the old
/// files and logs why.
async fn reload_on_sighup(handle: mqtt_broker::ReloadHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("SIGHUP cannot be caught: no reload");
            return;
        };
        while hup.recv().await.is_some() {
            match handle.reload().await {
                Ok(()) => tracing::info!("SIGHUP: reloaded"),
                Err(e) => tracing::error!("SIGHUP: reload failed, the old files stay in use: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = handle;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, mqtt_broker::ConfigError> {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        settings(&cli, &matches)
    }

    #[test]
    fn no_flags_are_the_defaults() {
        assert_eq!(parse(&["mqtt-broker"]).unwrap(), Settings::default());
    }

    #[test]
    fn flags_override_the_file_and_defaults_do_not() {
        let dir = std::env::temp_dir().join(format!("mqtt-broker-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("b.toml");
        std::fs::write(
            &file,
            "receive_maximum = 7\nmax_inflight = 3\ndata_dir = \"d\"\n",
        )
        .unwrap();
        let s = parse(&[
            "mqtt-broker",
            "--config",
            file.to_str().unwrap(),
            "--max-inflight",
            "5",
        ])
        .unwrap();
        // From the file (a flag at its default does not override it).
        assert_eq!(s.receive_maximum, 7);
        // Relative to the file's directory.
        assert_eq!(s.data_dir, dir.join("d"));
        // The flag wins.
        assert_eq!(s.max_inflight, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn capability_flags_are_settings_and_override_the_file() {
        let s = parse(&[
            "mqtt-broker",
            "--maximum-qos",
            "1",
            "--retain-available",
            "false",
            "--wildcard-subscriptions",
            "false",
            "--subscription-identifiers",
            "false",
            "--shared-subscriptions",
            "false",
        ])
        .unwrap();
        assert_eq!(s.maximum_qos, 1);
        assert!(!s.retain_available);
        assert!(!s.wildcard_subscriptions);
        assert!(!s.subscription_identifiers);
        assert!(!s.shared_subscriptions);
        let c = s.broker_config();
        assert_eq!(c.maximum_qos, mqtt_session::codec::QoS::AtLeastOnce);
        assert!(!c.retain_available && !c.wildcard_subscription_available);
        assert!(!c.subscription_identifiers_available && !c.shared_subscription_available);

        // A flag given overrides the file, one at its default does not.
        let dir = std::env::temp_dir().join(format!("mqtt-broker-caps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("b.toml");
        std::fs::write(
            &file,
            "maximum_qos = 0\nretain_available = false\nshared_subscriptions = false\n",
        )
        .unwrap();
        let s = parse(&[
            "mqtt-broker",
            "--config",
            file.to_str().unwrap(),
            "--retain-available",
            "true",
        ])
        .unwrap();
        assert_eq!(s.maximum_qos, 0);
        assert!(s.retain_available);
        assert!(!s.shared_subscriptions);
        assert!(s.wildcard_subscriptions);
        let _ = std::fs::remove_dir_all(&dir);

        // Out of range, or not a boolean: refused, naming the flag.
        for args in [
            &["mqtt-broker", "--maximum-qos", "3"][..],
            &["mqtt-broker", "--maximum-qos", "one"],
            &["mqtt-broker", "--retain-available", "no"],
            &["mqtt-broker", "--shared-subscriptions"],
        ] {
            let e = Cli::command().try_get_matches_from(args).unwrap_err();
            assert!(e.to_string().contains(args[1]), "{args:?}: {e}");
        }
    }

    #[test]
    fn tls_and_websocket_flags_are_settings() {
        let s = parse(&[
            "mqtt-broker",
            "--tls-listen",
            "0.0.0.0:8883",
            "--ws-listen",
            "0.0.0.0:8080",
            "--wss-listen",
            "0.0.0.0:8443",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--client-ca",
            "ca.pem",
            "--require-certificate",
            "--use-identity-as-username",
        ])
        .unwrap();
        assert_eq!(s.tls_listen.as_deref(), Some("0.0.0.0:8883"));
        assert_eq!(s.ws_listen.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(s.wss_listen.as_deref(), Some("0.0.0.0:8443"));
        assert_eq!(s.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(s.key, Some(PathBuf::from("k.pem")));
        assert_eq!(s.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(s.require_certificate && s.use_identity_as_username);
        assert_eq!(s.validate(), Ok(()));
    }
}
