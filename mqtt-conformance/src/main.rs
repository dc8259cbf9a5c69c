//! `mqtt-conformance`: checks a running MQTT broker against the normative statements of MQTT
//! 5.0 and 3.1.1. See the crate documentation, or `mqtt-conformance --help`.
#![forbid(unsafe_code)]
// A host, not an engine: it owns sockets and the clock (timeouts, the run token).
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mqtt_conformance::{Options, Protocols, RunError};

/// Checks an MQTT broker against the specification: every test cites the statements it
/// checks, and every packet the broker sends goes through a strict decoder.
///
/// Exit status: 0 when every test that ran passed, 1 when one failed or none ran, 2 when the
/// broker cannot be reached or the configuration is wrong.
#[derive(Debug, Parser)]
#[command(name = "mqtt-conformance", version)]
struct Cli {
    /// The broker's address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Which versions to test.
    #[arg(long, value_enum)]
    protocol: Option<Protocols>,
    /// Only tests whose id or a statement matches (`*` matches anything): `MQTT-3.1.2-*`,
    /// `v5.connect.*`. Repeatable.
    #[arg(long)]
    filter: Vec<String>,
    /// A TOML description of the system under test (credentials, capabilities, limits).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A User Name for every connection.
    #[arg(long)]
    username: Option<String>,
    /// A Password for every connection.
    #[arg(long)]
    password: Option<String>,
    /// The broker's Maximum QoS, when its CONNACK cannot say (3.1.1) or says wrong.
    #[arg(long)]
    maximum_qos: Option<u8>,
    /// Whether the broker has retained messages (overrides its CONNACK).
    #[arg(long)]
    retain: Option<bool>,
    /// Whether the broker has wildcard subscriptions.
    #[arg(long)]
    wildcard_subscriptions: Option<bool>,
    /// Whether the broker has Subscription Identifiers.
    #[arg(long)]
    subscription_identifiers: Option<bool>,
    /// Whether the broker has shared subscriptions.
    #[arg(long)]
    shared_subscriptions: Option<bool>,
    /// A WebSocket endpoint to check too, e.g. `ws://127.0.0.1:8080/mqtt`.
    #[arg(long)]
    websocket: Option<String>,
    /// A TLS listener to check too, HOST:PORT.
    #[arg(long)]
    tls: Option<String>,
    /// The CA certificate (PEM) that signed the TLS listener's certificate (default: the
    /// system's roots).
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// A topic the broker's access control does not let the tester publish to (for the
    /// rules on unauthorized PUBLISH packets).
    #[arg(long)]
    denied_topic: Option<String>,
    /// How many tests run at once.
    #[arg(long)]
    jobs: Option<usize>,
    /// How long the broker gets to answer, in milliseconds.
    #[arg(long)]
    answer_within_ms: Option<u64>,
    /// Print every test's line, passed ones too.
    #[arg(short, long)]
    verbose: bool,
    /// Print every test and its statements, and run nothing.
    #[arg(long)]
    list: bool,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the results as JUnit XML.
    #[arg(long)]
    junit: Option<PathBuf>,
}

fn options(cli: &Cli) -> Result<Options, String> {
    let mut o = Options::new(cli.broker.clone());
    if let Some(path) = &cli.config {
        o.apply_file(path)?;
    }
    if let Some(p) = cli.protocol {
        o.protocols = p;
    }
    o.filters.extend(cli.filter.iter().cloned());
    if cli.username.is_some() {
        o.username.clone_from(&cli.username);
    }
    if cli.password.is_some() {
        o.password.clone_from(&cli.password);
    }
    if cli.websocket.is_some() {
        o.websocket.clone_from(&cli.websocket);
    }
    if cli.tls.is_some() {
        o.tls.clone_from(&cli.tls);
    }
    if cli.denied_topic.is_some() {
        o.denied_topic.clone_from(&cli.denied_topic);
    }
    if cli.cafile.is_some() {
        o.cafile.clone_from(&cli.cafile);
    }
    let d = &mut o.declared;
    d.maximum_qos = cli.maximum_qos.or(d.maximum_qos);
    d.retain = cli.retain.or(d.retain);
    d.wildcard_subscriptions = cli.wildcard_subscriptions.or(d.wildcard_subscriptions);
    d.subscription_identifiers = cli.subscription_identifiers.or(d.subscription_identifiers);
    d.shared_subscriptions = cli.shared_subscriptions.or(d.shared_subscriptions);
    if let Some(j) = cli.jobs {
        o.jobs = j.max(1);
    }
    if let Some(ms) = cli.answer_within_ms {
        o.answer_within = Duration::from_millis(ms);
    }
    o.check()?;
    Ok(o)
}

fn list(o: &Options) {
    for t in mqtt_conformance::selected(o) {
        println!(
            "{:<7} {:<52} {}\n{:8}{}",
            t.version.name(),
            t.id,
            t.statements.join(" "),
            "",
            t.summary
        );
    }
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let o = match options(&cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mqtt-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.list {
        list(&o);
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mqtt-conformance: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(mqtt_conformance::run(&o)) {
        Ok(r) => r,
        Err(e @ (RunError::Config(_) | RunError::Unreachable(_))) => {
            eprintln!("mqtt-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.to_table(cli.verbose));
    for (path, text) in [
        (&cli.json, report.to_json()),
        (&cli.junit, report.to_junit()),
    ] {
        if let Some(path) = path
            && let Err(e) = write(path, &text)
        {
            eprintln!("mqtt-conformance: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(1))
}
