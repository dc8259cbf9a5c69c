//! `client`: a command-line MQTT 3.1.1 / 5.0 client in the manner of `mosquitto_pub` and
//! `mosquitto_sub`, hosting the sans-IO [`Client`] engine on tokio.
//!
//! # Usage
//!
//! ```text
//! cargo run -p mqtt-session --example client -- [OPTIONS] pub -t TOPIC -m MESSAGE [-q QOS] [-r] [--count N]
//! cargo run -p mqtt-session --example client -- [OPTIONS] sub -t FILTER [-t FILTER ...] [-q QOS] [-v] [--count N]
//! ```
//!
//! Options: `--connect HOST:PORT` (default `127.0.0.1:1883`), `--id ID` (default empty: the
//! server assigns one in 5.0), `--protocol 5|3.1.1`, `--no-clean-start`, `--session-expiry
//! SECS`, `--keep-alive SECS`, `--username`, `--password`, and a will: `--will-topic`,
//! `--will-message`, `--will-qos`, `--will-retain`, `--will-delay` (5.0).
//!
//! `pub` publishes the message `--count` times and exits once every QoS 1/2 message is
//! acknowledged (QoS 0: once sent). `sub` prints each message's payload (`-v`: topic first) and
//! runs until interrupted, or until `--count` messages arrived. A dropped connection is
//! re-established after a second; with `--no-clean-start` (and in 5.0 a `--session-expiry`) the
//! session resumes, and unacknowledged messages are re-sent. Ctrl-C sends DISCONNECT and exits.
//!
//! # Hosting the engine
//!
//! The engine owns no socket and reads no clock. This host connects the TCP stream, calls
//! `handle_connected`, then loops: drain `poll_output` (write transmits, close on `Close`, act
//! on events), then wait for the first of: bytes to read (`handle_bytes`, or
//! `handle_disconnected` at end of stream), the deadline of `poll_timeout` (`handle_timeout`),
//! Ctrl-C (`disconnect`). The clock is milliseconds since the UNIX epoch.
#![allow(clippy::disallowed_methods)] // the host owns the clock

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use mqtt_session::Timestamp;
use mqtt_session::client::{Client, ClientConfig, ClientEvent, ClientOutput};
use mqtt_session::codec::{
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions, TopicFilter,
    TopicName, Will,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "An MQTT client on the mqtt-session Client engine")]
struct Cli {
    /// The server to connect to.
    #[arg(long, default_value = "127.0.0.1:1883")]
    connect: String,
    /// The Client Identifier (empty: assigned by the server).
    #[arg(long, default_value = "")]
    id: String,
    /// The protocol version.
    #[arg(long, default_value = "5", value_parser = ["5", "3.1.1"])]
    protocol: String,
    /// Resume the session (Clean Start 0).
    #[arg(long)]
    no_clean_start: bool,
    /// Session Expiry Interval in seconds (MQTT 5.0).
    #[arg(long, default_value_t = 0)]
    session_expiry: u32,
    /// Keep Alive in seconds.
    #[arg(long, default_value_t = 60)]
    keep_alive: u16,
    /// User Name.
    #[arg(long)]
    username: Option<String>,
    /// Password.
    #[arg(long)]
    password: Option<String>,
    /// Will topic.
    #[arg(long)]
    will_topic: Option<String>,
    /// Will payload.
    #[arg(long, default_value = "")]
    will_message: String,
    /// Will QoS.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    will_qos: u8,
    /// Will Retain.
    #[arg(long)]
    will_retain: bool,
    /// Will Delay Interval in seconds (MQTT 5.0).
    #[arg(long)]
    will_delay: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish a message.
    Pub(PubArgs),
    /// Subscribe and print what arrives.
    Sub(SubArgs),
}

#[derive(Args, Debug)]
struct PubArgs {
    /// The topic.
    #[arg(short, long)]
    topic: String,
    /// The payload.
    #[arg(short, long)]
    message: String,
    /// The QoS.
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Retain the message.
    #[arg(short, long)]
    retain: bool,
    /// How many times to publish it.
    #[arg(long, default_value_t = 1)]
    count: u32,
}

#[derive(Args, Debug)]
struct SubArgs {
    /// Topic filters.
    #[arg(short, long, required = true)]
    topic: Vec<String>,
    /// The QoS asked for.
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Print the topic before each payload.
    #[arg(short, long)]
    verbose: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
}

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Timestamp::from_millis(ms)
}

fn qos(n: u8) -> QoS {
    QoS::from_bits(n).unwrap_or_default()
}

/// What the application does with the engine's events.
struct App {
    verbose: bool,
    /// Messages (sub) or acknowledgements (pub) still awaited; `None`: run until interrupted.
    remaining: Option<u64>,
    /// QoS 0 publishing: done once the queue is empty on a live connection.
    fire_and_forget: bool,
    /// The count is reached: leave once no inbound QoS 2 exchange is half done.
    leaving: bool,
    done: bool,
    failed: bool,
}

impl App {
    fn on_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected {
                session_present,
                assigned_client_id,
                ..
            } => {
                eprintln!("connected (session present: {session_present})");
                if let Some(id) = assigned_client_id {
                    eprintln!("assigned client identifier: {id}");
                }
            }
            ClientEvent::ConnectionRefused { reason_code, .. } => {
                eprintln!("connection refused: {reason_code}");
                self.failed = true;
            }
            ClientEvent::Message(p) => {
                let payload = String::from_utf8_lossy(&p.payload);
                if self.verbose {
                    println!("{} {payload}", p.topic);
                } else {
                    println!("{payload}");
                }
                self.count_down();
            }
            ClientEvent::Published {
                packet_id,
                reason_code,
            } => {
                if reason_code.is_error() {
                    eprintln!("message {packet_id} refused: {reason_code}");
                }
                self.count_down();
            }
            ClientEvent::PublishDropped { packet_id, reason } => {
                eprintln!("message {packet_id:?} dropped: {reason:?}");
                self.count_down();
            }
            ClientEvent::Subscribed { reason_codes, .. } => {
                for code in reason_codes.iter().filter(|c| c.is_error()) {
                    eprintln!("subscription refused: {code}");
                }
            }
            ClientEvent::Disconnected {
                reason_code,
                from_server,
                reason_string,
                ..
            } => {
                if from_server {
                    eprintln!(
                        "disconnected by the server: {reason_code:?} {}",
                        reason_string.unwrap_or_default()
                    );
                } else if !self.done {
                    eprintln!("connection lost");
                }
            }
            ClientEvent::PingTimeout => eprintln!("no PINGRESP: connection given up"),
            ClientEvent::ProtocolViolation { reason_code, error } => {
                eprintln!("protocol violation by the server: {reason_code} {error:?}");
            }
            _ => {}
        }
    }

    fn count_down(&mut self) {
        if let Some(n) = self.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.leaving = true;
            }
        }
    }

    fn finish(&mut self, client: &mut Client) {
        if !self.done {
            self.done = true;
            let _ = client.disconnect(ReasonCode::NORMAL_DISCONNECTION, None, now());
        }
    }
}

fn config(cli: &Cli) -> ClientConfig {
    let version = if cli.protocol == "5" {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let mut c = ClientConfig::new(version, cli.id.clone());
    c.clean_start = !cli.no_clean_start;
    c.keep_alive = cli.keep_alive;
    if version.is_v5() {
        c.session_expiry_interval = cli.session_expiry;
    }
    c.username.clone_from(&cli.username);
    c.password = cli.password.clone().map(Bytes::from);
    if let Some(topic) = &cli.will_topic {
        c.will = TopicName::try_from(topic.as_str()).ok().map(|topic| Will {
            topic,
            payload: Bytes::from(cli.will_message.clone()),
            qos: qos(cli.will_qos),
            retain: cli.will_retain,
            properties: Properties {
                will_delay_interval: cli.will_delay.filter(|_| version.is_v5()),
                ..Properties::default()
            },
        });
    }
    c
}

/// Queues the command's requests; they go out once connected.
fn queue_requests(cli: &Cli, client: &mut Client) -> Result<App, String> {
    match &cli.command {
        Command::Pub(p) => {
            let topic = TopicName::try_from(p.topic.as_str()).map_err(|e| e.to_string())?;
            let q = qos(p.qos);
            for _ in 0..p.count {
                let mut m = Publish::new(topic.clone(), Bytes::from(p.message.clone()));
                m.qos = q;
                m.retain = p.retain;
                client.publish(m, now()).map_err(|e| e.to_string())?;
            }
            let fire_and_forget = q == QoS::AtMostOnce;
            Ok(App {
                verbose: false,
                remaining: (!fire_and_forget).then_some(u64::from(p.count)),
                fire_and_forget,
                leaving: false,
                done: false,
                failed: false,
            })
        }
        Command::Sub(s) => {
            let filters = s
                .topic
                .iter()
                .map(|t| {
                    TopicFilter::try_from(t.as_str())
                        .map(|f| (f, SubscriptionOptions::qos(qos(s.qos))))
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?;
            client
                .subscribe(filters, Properties::default(), now())
                .map_err(|e| e.to_string())?;
            Ok(App {
                verbose: s.verbose,
                remaining: s.count,
                fire_and_forget: false,
                leaving: false,
                done: false,
                failed: false,
            })
        }
    }
}

/// One network connection, until it ends.
async fn connection(stream: TcpStream, client: &mut Client, app: &mut App) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    client.handle_connected(now());
    loop {
        while let Some(out) = client.poll_output() {
            match out {
                ClientOutput::TransmitReady => {
                    while let Some(data) = client.poll_transmit(64 * 1024, now()) {
                        if wr.write_all(&data).await.is_err() {
                            client.handle_disconnected(now());
                            break;
                        }
                    }
                }
                ClientOutput::Close { farewell } => {
                    let _ = wr.write_all(&farewell).await;
                    let _ = wr.shutdown().await;
                    // Read (and drop) until the server closes too, for at most a second:
                    // closing a socket with unread data in it sends a RST, and the server may
                    // then lose what it had not read yet, such as our DISCONNECT.
                    let drain =
                        async { while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {} };
                    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                }
                ClientOutput::Event(e) => app.on_event(e),
                _ => {}
            }
            if app.fire_and_forget && client.is_connected() && client.queued() == 0 {
                app.finish(client);
            }
            // (A message counts when it arrives; its QoS 2 exchange completes before leaving.)
            if app.leaving && client.inbound_qos2_pending() == 0 {
                app.finish(client);
            }
        }
        if !client.has_transport() {
            return;
        }
        let wait = client
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| t.since(now()));
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) | Err(_) => client.handle_disconnected(now()),
                Ok(n) => client.handle_bytes(buf.get(..n).unwrap_or_default(), now()),
            },
            () = tokio::time::sleep(wait) => client.handle_timeout(now()),
            _ = tokio::signal::ctrl_c() => app.finish(client),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut client = match Client::new(config(&cli)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut app = match queue_requests(&cli, &mut client) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        match TcpStream::connect(&cli.connect).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                connection(stream, &mut client, &mut app).await;
            }
            Err(e) => eprintln!("cannot connect to {}: {e}", cli.connect),
        }
        if app.done || app.failed {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if app.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
