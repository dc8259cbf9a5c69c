//! `mqttc`: a command-line MQTT 3.1.1 / 5.0 client in the manner of `mosquitto_pub` and
//! `mosquitto_sub`, on the `mqtt-client` crate.
//!
//! # Usage
//!
//! ```text
//! cargo run -p mqtt-client --example mqttc -- [OPTIONS] pub -t TOPIC -m MESSAGE [-q QOS] [-r] [--count N]
//! cargo run -p mqtt-client --example mqttc -- [OPTIONS] sub -t FILTER [-t FILTER ...] [-q QOS] [-v] [--count N]
//! ```
//!
//! Options: `--connect HOST:PORT` (default `127.0.0.1:1883`; a URL such as
//! `mqtts://host:8883` or `wss://host/mqtt` is taken as it is), `--cafile PEM` (TLS, trusting
//! that CA), `--ws PATH` (WebSocket on that path), `--id ID` (default empty: the server assigns
//! one in 5.0), `--protocol 5|3.1.1`, `--no-clean-start`, `--session-expiry SECS`,
//! `--keep-alive SECS`, `--username`, `--password`, and a will: `--will-topic`,
//! `--will-message`, `--will-qos`, `--will-retain`, `--will-delay` (5.0).
//!
//! `pub` publishes the message `--count` times and exits once every QoS 1/2 message is
//! acknowledged (QoS 0: once sent). `sub` prints each message's payload (`-v`: topic first) and
//! runs until interrupted, or until `--count` messages arrived. A lost connection is
//! re-established with backoff; with `--no-clean-start` (and in 5.0 a `--session-expiry`) the
//! session resumes, and unacknowledged messages are re-sent. Ctrl-C sends DISCONNECT and exits.

use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use mqtt_client::transport::tls::ClientConfigBuilder;
use mqtt_client::{
    Client, ConnectOptions, Event, Options, Properties, ProtocolVersion, QoS, SubscriptionOptions,
    TopicFilter, TopicName, Will,
};

#[derive(Parser, Debug)]
#[command(about = "An MQTT client on the mqtt-client crate")]
struct Cli {
    /// The server: HOST:PORT, or a URL (mqtt://, mqtts://, ws://, wss://).
    #[arg(long, default_value = "127.0.0.1:1883")]
    connect: String,
    /// TLS: trust the CA certificates of this PEM file.
    #[arg(long)]
    cafile: Option<std::path::PathBuf>,
    /// WebSocket on this path (for example /mqtt).
    #[arg(long)]
    ws: Option<String>,
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

fn qos(n: u8) -> QoS {
    QoS::from_bits(n).unwrap_or_default()
}

/// The endpoint URL the flags describe.
fn url(cli: &Cli) -> String {
    if cli.connect.contains("://") {
        return cli.connect.clone();
    }
    let tls = cli.cafile.is_some();
    match (&cli.ws, tls) {
        (Some(path), false) => format!("ws://{}{path}", cli.connect),
        (Some(path), true) => format!("wss://{}{path}", cli.connect),
        (None, false) => format!("mqtt://{}", cli.connect),
        (None, true) => format!("mqtts://{}", cli.connect),
    }
}

fn options(cli: &Cli) -> Result<Options, String> {
    let version = if cli.protocol == "5" {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let mut o = Options::new(&url(cli), cli.id.clone())
        .map_err(|e| e.to_string())?
        .protocol(version);
    if let Some(ca) = &cli.cafile {
        let tls = ClientConfigBuilder::new()
            .with_ca_file(ca)
            .build()
            .map_err(|e| e.to_string())?;
        o.transport = ConnectOptions::default().with_tls_config(tls);
    }
    let c = &mut o.session;
    c.clean_start = !cli.no_clean_start;
    c.keep_alive = cli.keep_alive;
    if version.is_v5() {
        c.session_expiry_interval = cli.session_expiry;
    }
    c.username.clone_from(&cli.username);
    c.password = cli.password.clone().map(Bytes::from);
    if let Some(topic) = &cli.will_topic {
        let topic = TopicName::try_from(topic.as_str()).map_err(|e| e.to_string())?;
        let properties = Properties {
            will_delay_interval: cli.will_delay.filter(|_| version.is_v5()),
            ..Properties::default()
        };
        c.will = Some(Will {
            topic,
            payload: Bytes::from(cli.will_message.clone()),
            qos: qos(cli.will_qos),
            retain: cli.will_retain,
            properties,
        });
    }
    Ok(o)
}

/// Prints what the connection does, on standard error.
fn report(event: &Event) {
    match event {
        Event::Connected {
            session_present,
            assigned_client_id,
            ..
        } => {
            eprintln!("connected (session present: {session_present})");
            if let Some(id) = assigned_client_id {
                eprintln!("assigned client identifier: {id}");
            }
        }
        Event::Disconnected {
            reason_code,
            from_server,
            cause,
            ..
        } => {
            if *from_server {
                eprintln!(
                    "disconnected by the server: {reason_code:?} {}",
                    cause.as_deref().unwrap_or_default()
                );
            } else {
                eprintln!("connection lost: {}", cause.as_deref().unwrap_or("closed"));
            }
        }
        Event::ConnectFailed { cause, .. } => eprintln!("cannot connect: {cause}"),
        Event::Redirected {
            reason_code,
            to,
            permanent,
            ..
        } => {
            let how = if *permanent { "for good" } else { "for now" };
            eprintln!("redirected to {to} ({how}, {reason_code:?})");
        }
        Event::Lagged { dropped } => eprintln!("{dropped} QoS 0 messages dropped"),
        Event::Resubscribed {
            filter,
            reason_code,
        } => eprintln!("subscribed again to {filter}: {reason_code}"),
        _ => {}
    }
}

async fn publish(client: &Client, p: &PubArgs) -> Result<(), String> {
    let mut deliveries = Vec::new();
    for _ in 0..p.count {
        let d = client
            .publish(&p.topic, p.message.clone(), qos(p.qos), p.retain)
            .await
            .map_err(|e| e.to_string())?;
        deliveries.push(d);
    }
    for mut d in deliveries {
        let id = d.stored().await.ok().flatten();
        if let Err(e) = d.await {
            eprintln!("message {id:?}: {e}");
        }
    }
    Ok(())
}

async fn subscribe(
    client: &Client,
    events: &mut mqtt_client::Events,
    s: &SubArgs,
) -> Result<(), String> {
    let filters = s
        .topic
        .iter()
        .map(|t| {
            TopicFilter::try_from(t.as_str())
                .map(|f| (f, SubscriptionOptions::qos(qos(s.qos))))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let codes = client
        .subscribe_many(filters, Properties::default())
        .await
        .map_err(|e| e.to_string())?;
    for code in codes.iter().filter(|c| c.is_error()) {
        eprintln!("subscription refused: {code}");
    }
    let mut remaining = s.count;
    while remaining != Some(0) {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(event) = event else {
            return Err("the client stopped".to_owned());
        };
        report(&event);
        if let Event::Message(m) = event {
            let payload = String::from_utf8_lossy(&m.payload);
            if s.verbose {
                println!("{} {payload}", m.topic);
            } else {
                println!("{payload}");
            }
            if let Some(n) = remaining.as_mut() {
                *n -= 1;
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match options(&cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (client, mut events) = match Client::connect(options).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.command {
        Command::Pub(p) => {
            // Report the connection's events while publishing.
            let reporter = tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    report(&e);
                }
            });
            let r = tokio::select! {
                r = publish(&client, p) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            };
            let _ = client.disconnect().await;
            let _ = reporter.await;
            r
        }
        Command::Sub(s) => {
            let r = subscribe(&client, &mut events, s).await;
            let _ = client.disconnect().await;
            while let Some(e) = events.recv().await {
                report(&e);
            }
            r
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
