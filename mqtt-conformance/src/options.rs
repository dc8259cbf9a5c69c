//! The system under test and how to run against it: flags, a TOML file, or code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mqtt_codec::QoS;
use serde::Deserialize;

/// An MQTT protocol version the tester speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Version {
    /// MQTT 5.0.
    #[serde(rename = "5.0")]
    V5,
    /// MQTT 3.1.1.
    #[serde(rename = "3.1.1")]
    V3_1_1,
}

impl Version {
    /// The codec's name for it.
    #[must_use]
    pub fn protocol(self) -> mqtt_codec::ProtocolVersion {
        match self {
            Self::V5 => mqtt_codec::ProtocolVersion::V5,
            Self::V3_1_1 => mqtt_codec::ProtocolVersion::V3_1_1,
        }
    }

    /// `5.0` or `3.1.1`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::V5 => "5.0",
            Self::V3_1_1 => "3.1.1",
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which versions to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum Protocols {
    /// MQTT 5.0 only.
    #[serde(rename = "5")]
    #[value(name = "5")]
    V5,
    /// MQTT 3.1.1 only.
    #[serde(rename = "3.1.1")]
    #[value(name = "3.1.1")]
    V3_1_1,
    /// Both.
    #[default]
    #[serde(rename = "both")]
    Both,
}

impl Protocols {
    /// Whether `v` is among them.
    #[must_use]
    pub fn includes(self, v: Version) -> bool {
        matches!(
            (self, v),
            (Self::Both, _) | (Self::V5, Version::V5) | (Self::V3_1_1, Version::V3_1_1)
        )
    }
}

/// What the broker offers, where its CONNACK cannot say (3.1.1) or should be overridden.
///
/// Each field left `None` is discovered from a 5.0 CONNACK (its absence meaning the
/// specification's default), or taken as the specification's default for a 3.1.1-only run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// The highest QoS the broker accepts (Maximum QoS).
    pub maximum_qos: Option<u8>,
    /// Retained messages (Retain Available).
    pub retain: Option<bool>,
    /// Wildcard subscriptions (Wildcard Subscription Available).
    pub wildcard_subscriptions: Option<bool>,
    /// Subscription Identifiers (Subscription Identifier Available).
    pub subscription_identifiers: Option<bool>,
    /// Shared subscriptions (Shared Subscription Available).
    pub shared_subscriptions: Option<bool>,
}

/// Everything the tester needs to know: where the broker is, how to log in, what to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The broker's plain TCP address, `host:port`.
    pub broker: String,
    /// A User Name for every connection.
    pub username: Option<String>,
    /// A Password for every connection.
    pub password: Option<String>,
    /// Which versions to test.
    pub protocols: Protocols,
    /// Only tests whose id or one of whose statements matches one of these patterns (`*`
    /// matches any run of characters, e.g. `MQTT-3.1.2-*` or `v5.connect.*`). Empty: all.
    pub filters: Vec<String>,
    /// Capabilities declared rather than discovered.
    pub declared: Declared,
    /// How many tests run at once (tests on shared state run alone, after the others).
    pub jobs: usize,
    /// How long the broker gets to answer a stimulus.
    pub answer_within: Duration,
    /// How long the tester waits to conclude that the broker sends nothing.
    pub quiet_for: Duration,
    /// The time limit of one test.
    pub test_limit: Duration,
    /// A TLS listener (`host:port`) to check the handshake and a CONNECT over, if any.
    pub tls: Option<String>,
    /// The CA certificate (PEM) that signed the TLS listener's certificate.
    pub cafile: Option<PathBuf>,
    /// A WebSocket endpoint (`ws://host:port/path`) to check, if any.
    pub websocket: Option<String>,
    /// A topic the broker's access control does not let the tester's user publish to (for
    /// the rules on unauthorized PUBLISH packets), if any.
    pub denied_topic: Option<String>,
}

impl Options {
    /// Options for the broker at `broker` (`host:port`), with the defaults: both versions,
    /// every test, 8 at a time, 3 s to answer, 0.5 s of quiet, 30 s per test.
    #[must_use]
    pub fn new(broker: impl Into<String>) -> Self {
        Self {
            broker: broker.into(),
            username: None,
            password: None,
            protocols: Protocols::Both,
            filters: Vec::new(),
            declared: Declared::default(),
            jobs: 8,
            answer_within: Duration::from_secs(3),
            quiet_for: Duration::from_millis(500),
            test_limit: Duration::from_secs(30),
            tls: None,
            cafile: None,
            websocket: None,
            denied_topic: None,
        }
    }

    /// These options with credentials.
    #[must_use]
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.username = Some(username.to_owned());
        self.password = Some(password.to_owned());
        self
    }

    /// These options for one version or both.
    #[must_use]
    pub fn with_protocols(mut self, protocols: Protocols) -> Self {
        self.protocols = protocols;
        self
    }

    /// These options with one more filter (see [`Options::filters`]).
    #[must_use]
    pub fn with_filter(mut self, pattern: &str) -> Self {
        self.filters.push(pattern.to_owned());
        self
    }

    /// These options with `jobs` tests at a time.
    #[must_use]
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// These options with declared capabilities.
    #[must_use]
    pub fn with_declared(mut self, declared: Declared) -> Self {
        self.declared = declared;
        self
    }

    /// Reads a TOML description of the system under test over these options. Keys:
    /// `broker`, `username`, `password`, `protocol` (`"5"`, `"3.1.1"` or `"both"`), `filter`
    /// (a list), `jobs`, `answer_within_ms`, `quiet_for_ms`, `test_limit_s`, `tls`, `cafile`,
    /// `websocket`, `denied_topic`, and a `[capabilities]` table with `maximum_qos`, `retain`,
    /// `wildcard_subscriptions`, `subscription_identifiers` and `shared_subscriptions`.
    ///
    /// # Errors
    /// A message naming the file, and the key and line when the TOML parser knows them.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: FileOptions =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(b) = file.broker {
            self.broker = b;
        }
        self.username = file.username.or(self.username.take());
        self.password = file.password.or(self.password.take());
        if let Some(p) = file.protocol {
            self.protocols = p;
        }
        self.filters.extend(file.filter);
        if let Some(j) = file.jobs {
            self.jobs = j.max(1);
        }
        if let Some(ms) = file.answer_within_ms {
            self.answer_within = Duration::from_millis(ms);
        }
        if let Some(ms) = file.quiet_for_ms {
            self.quiet_for = Duration::from_millis(ms);
        }
        if let Some(s) = file.test_limit_s {
            self.test_limit = Duration::from_secs(s);
        }
        self.tls = file.tls.or(self.tls.take());
        self.cafile = file.cafile.or(self.cafile.take());
        self.websocket = file.websocket.or(self.websocket.take());
        self.denied_topic = file.denied_topic.or(self.denied_topic.take());
        if let Some(c) = file.capabilities {
            merge(&mut self.declared, c);
        }
        self.check()
    }

    /// Checks what cannot be right (a Maximum QoS above 2, no broker address).
    ///
    /// # Errors
    /// A message naming the option.
    pub fn check(&self) -> Result<(), String> {
        if self.broker.is_empty() {
            return Err(
                "no broker address: give --broker HOST:PORT or `broker` in the file".into(),
            );
        }
        if let Some(q) = self.declared.maximum_qos
            && q > 2
        {
            return Err(format!(
                "capabilities.maximum_qos = {q}: it must be 0, 1 or 2"
            ));
        }
        Ok(())
    }
}

/// Overrides in `b` win.
fn merge(a: &mut Declared, b: Declared) {
    a.maximum_qos = b.maximum_qos.or(a.maximum_qos);
    a.retain = b.retain.or(a.retain);
    a.wildcard_subscriptions = b.wildcard_subscriptions.or(a.wildcard_subscriptions);
    a.subscription_identifiers = b.subscription_identifiers.or(a.subscription_identifiers);
    a.shared_subscriptions = b.shared_subscriptions.or(a.shared_subscriptions);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    broker: Option<String>,
    username: Option<String>,
    password: Option<String>,
    protocol: Option<Protocols>,
    #[serde(default)]
    filter: Vec<String>,
    jobs: Option<usize>,
    answer_within_ms: Option<u64>,
    quiet_for_ms: Option<u64>,
    test_limit_s: Option<u64>,
    tls: Option<String>,
    cafile: Option<PathBuf>,
    websocket: Option<String>,
    denied_topic: Option<String>,
    capabilities: Option<Declared>,
}

/// What the broker offers, as the tests see it: declared, else discovered, else the
/// specification's defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Maximum QoS.
    pub maximum_qos: u8,
    /// Retain Available.
    pub retain: bool,
    /// Wildcard Subscription Available.
    pub wildcard_subscriptions: bool,
    /// Subscription Identifier Available.
    pub subscription_identifiers: bool,
    /// Shared Subscription Available.
    pub shared_subscriptions: bool,
    /// The broker's Topic Alias Maximum (5.0; 0 when it sent none).
    pub topic_alias_maximum: u16,
    /// The broker's Maximum Packet Size (5.0), if it sent one.
    pub maximum_packet_size: Option<u32>,
    /// The broker's Receive Maximum (5.0; 65 535 when it sent none).
    pub receive_maximum: u16,
    /// Whether the broker accepts clients without credentials (tried when credentials are
    /// given; assumed otherwise). Tests that write a CONNECT byte by byte need it.
    pub anonymous: bool,
    /// The WebSocket endpoint to check, when one was given.
    pub websocket: Option<String>,
    /// The TLS endpoint to check, when one was given.
    pub tls: Option<String>,
    /// A topic the broker's access control does not let the tester publish to, if given.
    pub denied_topic: Option<String>,
    /// Where each value came from, for the report.
    pub source: String,
}

impl Capabilities {
    /// The specification's defaults, overridden by `declared`.
    #[must_use]
    pub fn defaults(declared: &Declared) -> Self {
        Self {
            maximum_qos: declared.maximum_qos.unwrap_or(2),
            retain: declared.retain.unwrap_or(true),
            wildcard_subscriptions: declared.wildcard_subscriptions.unwrap_or(true),
            subscription_identifiers: declared.subscription_identifiers.unwrap_or(true),
            shared_subscriptions: declared.shared_subscriptions.unwrap_or(true),
            topic_alias_maximum: 0,
            maximum_packet_size: None,
            receive_maximum: u16::MAX,
            anonymous: true,
            websocket: None,
            tls: None,
            denied_topic: None,
            source: "the specification's defaults and the declared capabilities".into(),
        }
    }

    /// What a 5.0 CONNACK's properties say, overridden by `declared`.
    #[must_use]
    pub fn from_connack(props: &mqtt_codec::Properties, declared: &Declared) -> Self {
        let qos = props.maximum_qos.map_or(2, |q| match q {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
            QoS::ExactlyOnce => 2,
        });
        Self {
            maximum_qos: declared.maximum_qos.unwrap_or(qos),
            retain: declared
                .retain
                .unwrap_or(props.retain_available.unwrap_or(true)),
            wildcard_subscriptions: declared
                .wildcard_subscriptions
                .unwrap_or(props.wildcard_subscription_available.unwrap_or(true)),
            subscription_identifiers: declared
                .subscription_identifiers
                .unwrap_or(props.subscription_identifier_available.unwrap_or(true)),
            shared_subscriptions: declared
                .shared_subscriptions
                .unwrap_or(props.shared_subscription_available.unwrap_or(true)),
            topic_alias_maximum: props.topic_alias_maximum.unwrap_or(0),
            maximum_packet_size: props.maximum_packet_size.map(std::num::NonZeroU32::get),
            receive_maximum: props.receive_maximum.map_or(u16::MAX, |r| r.get()),
            anonymous: true,
            websocket: None,
            tls: None,
            denied_topic: None,
            source: "the broker's 5.0 CONNACK, then the declared capabilities".into(),
        }
    }
}
