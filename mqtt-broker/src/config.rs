//! The broker's settings: defaults, a TOML configuration file (`--config FILE`), and the
//! command line, which overrides the file.
//!
//! Every command-line flag `--some-name` is the key `some_name` of the file, with the same
//! meaning and default. Relative paths in the file (`data_dir`, `acl`, `password_file`,
//! `cert`, `key`, `client_ca`) are relative to the directory of the file. An unknown key, a value of the wrong type or out of
//! range, or an unreadable file stops the start with a [`ConfigError`] naming the file, the
//! line and the key:
//!
//! ```toml
//! # mqtt-broker.toml
//! listen = "0.0.0.0:1883"
//! data_dir = "/var/lib/mqtt-broker"
//! password_file = "passwd"          # next to this file
//! allow_anonymous = false
//! acl = "acl"
//! max_connections = 10000
//! threads = 2                       # default: 1, or one per CPU with a TLS listener
//! max_keep_alive = 300
//! receive_maximum = 100
//! # MQTT over TLS, WebSocket and WebSocket over TLS (path /mqtt), besides `listen`:
//! tls_listen = "0.0.0.0:8883"
//! ws_listen = "0.0.0.0:8080"
//! wss_listen = "0.0.0.0:8443"
//! cert = "server.pem"               # the chain, the server's certificate first
//! key = "server-key.pem"
//! # The optional capabilities (all available by default), here those of a limited broker:
//! maximum_qos = 1                   # 0, 1 or 2
//! retain_available = false
//! wildcard_subscriptions = false
//! subscription_identifiers = false
//! shared_subscriptions = false
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use mqtt_session::broker::BrokerConfig;
use mqtt_session::codec::QoS;
use serde::{Deserialize, Deserializer};

/// Everything the broker can be told, with the defaults of a start without flags: MQTT on
/// 127.0.0.1:1883, state in `./mqtt-data`, everyone allowed (no password file, no ACL).
///
/// The engine's limits are those of [`BrokerConfig`], under the names of the command-line
/// flags; [`Settings::broker_config`] gives the engine's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Settings {
    /// The address to serve MQTT over TCP on (`--listen`).
    pub listen: String,
    /// The address to serve MQTT over TLS on (`--tls-listen`; needs `cert` and `key`).
    pub tls_listen: Option<String>,
    /// The address to serve MQTT over WebSocket on, path `/mqtt` (`--ws-listen`).
    pub ws_listen: Option<String>,
    /// The address to serve MQTT over WebSocket over TLS on, path `/mqtt` (`--wss-listen`;
    /// needs `cert` and `key`).
    pub wss_listen: Option<String>,
    /// The server's certificate chain, PEM, its own certificate first (`--cert`).
    pub cert: Option<PathBuf>,
    /// The server's private key, PEM: PKCS#8, PKCS#1 or SEC1 (`--key`).
    pub key: Option<PathBuf>,
    /// The certificate authorities, PEM, that client certificates are verified against
    /// (`--client-ca`): a client may then present a certificate, and one that does not verify
    /// ends the handshake. `None`: no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`, refuse TLS clients without a certificate (`--require-certificate`).
    pub require_certificate: bool,
    /// The verified client certificate's subject Common Name is the client's identity: the
    /// User Name that the ACL's `user` blocks and `%u` see (`--use-identity-as-username`;
    /// needs `client_ca`). Clients without one are refused (0x87 Not authorized), and a
    /// CONNECT's User Name, if any, must be that name (else 0x86 Bad User Name or Password).
    pub use_identity_as_username: bool,
    /// The directory of the broker's state, `broker.redb`; created if missing (`--data-dir`).
    pub data_dir: PathBuf,
    /// An access control list (`--acl`); `None`: everyone may publish and subscribe to
    /// anything.
    pub acl: Option<PathBuf>,
    /// A password file in mosquitto's format (`--password-file`); `None`: User Names are not
    /// verified and everyone may connect.
    pub password_file: Option<PathBuf>,
    /// With a password file, let clients without a User Name connect too
    /// (`--allow-anonymous`). Without a password file everyone may connect anyway.
    pub allow_anonymous: bool,
    /// The most client connections at once (`--max-connections`); more are closed at once,
    /// and logged. 0: no limit.
    pub max_connections: usize,
    /// Seconds between updates of the `$SYS/broker/...` topics (`--sys-interval`); 0: none.
    pub sys_interval: u64,
    /// How many threads serve the connections (`--threads`, at least 1); see
    /// [`Settings::runtime_threads`] for the default.
    #[serde(deserialize_with = "some_at_least_one_u16")]
    pub threads: Option<u16>,
    /// The longest Keep Alive accepted, in seconds; a client asking for more (or for 0) is told
    /// this value (MQTT 5.0 Server Keep Alive). `None`: the client's.
    pub max_keep_alive: Option<u16>,
    /// How many QoS 1/2 PUBLISH packets a client may have unacknowledged towards the broker
    /// (at least 1).
    #[serde(deserialize_with = "at_least_one_u16")]
    pub receive_maximum: u16,
    /// The largest packet accepted from a client, in bytes (at least 2).
    #[serde(deserialize_with = "packet_size")]
    pub max_packet_size: u32,
    /// How many topic aliases a client may use towards the broker (MQTT 5.0).
    pub topic_alias_maximum: u16,
    /// The most QoS 1/2 messages in flight towards one client (at least 1; also capped by its
    /// Receive Maximum).
    #[serde(deserialize_with = "at_least_one_u16")]
    pub max_inflight: u16,
    /// The most messages queued for one session; newer ones are dropped when it is full.
    pub max_queued_messages: usize,
    /// The most payload bytes queued for one session; newer messages are dropped beyond it.
    pub max_queued_bytes: usize,
    /// The longest Session Expiry Interval granted, in seconds. `None`: as requested.
    pub max_session_expiry: Option<u32>,
    /// Queue QoS 0 messages for offline sessions too (they are never persisted).
    pub queue_qos0: bool,
    /// The most bytes a connection may have waiting to be sent; a subscriber over it slows its
    /// publishers, then counts as stuck (the slow-consumer policy, docs/design/engine-io.md).
    pub max_connection_backlog: usize,
    /// How long a subscriber may stay over its backlog before it counts as stuck, in
    /// milliseconds.
    pub stuck_after_ms: u64,
    /// How long a subscriber may stay stuck before it is disconnected (0x97), in seconds; 0:
    /// never.
    pub disconnect_stuck_after: u32,
    /// The highest QoS accepted in PUBLISH and granted in SUBACK: 0, 1 or 2 (anything else is
    /// refused by [`Settings::validate`], and in a file). Below 2, MQTT 5.0 clients are told it
    /// in CONNACK (Maximum QoS) and a PUBLISH or Will QoS above it is refused (0x9B; a 3.1.1
    /// client's PUBLISH above it closes the connection); subscriptions are granted at most it.
    #[serde(deserialize_with = "maximum_qos")]
    pub maximum_qos: u8,
    /// Whether retained messages are supported. When not, MQTT 5.0 clients are told so in
    /// CONNACK (Retain Available 0) and a PUBLISH or Will with RETAIN is refused (0x9A; a 3.1.1
    /// client's retained PUBLISH closes the connection, its retained Will loses RETAIN).
    pub retain_available: bool,
    /// Whether Topic Filters with wildcards (`+`, `#`) may be subscribed to. When not, MQTT 5.0
    /// clients are told so in CONNACK and each such filter is refused in SUBACK (0xA2; 3.1.1:
    /// 0x80).
    pub wildcard_subscriptions: bool,
    /// Whether a SUBSCRIBE may carry a Subscription Identifier (MQTT 5.0). When not, clients
    /// are told so in CONNACK and a SUBSCRIBE with one is a Protocol Error (DISCONNECT 0xA1).
    pub subscription_identifiers: bool,
    /// Whether shared subscriptions (`$share/{group}/{filter}`) are supported. When not, MQTT
    /// 5.0 clients are told so in CONNACK and each one is refused in SUBACK (0x9E; 3.1.1:
    /// 0x80).
    pub shared_subscriptions: bool,
}

impl Default for Settings {
    fn default() -> Self {
        let engine = BrokerConfig::default();
        Self {
            listen: "127.0.0.1:1883".to_owned(),
            tls_listen: None,
            ws_listen: None,
            wss_listen: None,
            cert: None,
            key: None,
            client_ca: None,
            require_certificate: false,
            use_identity_as_username: false,
            data_dir: PathBuf::from("./mqtt-data"),
            acl: None,
            password_file: None,
            allow_anonymous: false,
            max_connections: 0,
            sys_interval: 10,
            threads: None,
            max_keep_alive: engine.max_keep_alive,
            receive_maximum: engine.receive_maximum,
            max_packet_size: engine.maximum_packet_size,
            topic_alias_maximum: engine.topic_alias_maximum,
            max_inflight: engine.max_inflight,
            max_queued_messages: engine.max_queued_messages,
            max_queued_bytes: engine.max_queued_bytes,
            max_session_expiry: engine.max_session_expiry,
            queue_qos0: engine.queue_qos0_when_offline,
            max_connection_backlog: engine.max_connection_backlog,
            stuck_after_ms: engine.stuck_after_ms,
            disconnect_stuck_after: engine.disconnect_stuck_after.unwrap_or(0),
            maximum_qos: engine.maximum_qos.bits(),
            retain_available: engine.retain_available,
            wildcard_subscriptions: engine.wildcard_subscription_available,
            subscription_identifiers: engine.subscription_identifiers_available,
            shared_subscriptions: engine.shared_subscription_available,
        }
    }
}

impl Settings {
    /// How many threads serve the connections: `threads` when set, else 1 without a TLS
    /// listener and one per CPU with one.
    ///
    /// With 1, a single thread runs the engine and every connection's I/O: no wakeup crosses
    /// threads, which costs the least CPU per message and gives the lowest latency (measured in
    /// benches/README.md, "One thread"). A TLS handshake is about a millisecond of CPU, which
    /// would then delay everything else on that thread, so a TLS listener makes the default one
    /// worker thread per CPU, the engine on a thread of its own.
    #[must_use]
    pub fn runtime_threads(&self) -> usize {
        self.threads.map_or_else(
            || {
                if self.tls_listen.is_some() || self.wss_listen.is_some() {
                    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
                } else {
                    1
                }
            },
            usize::from,
        )
    }

    /// Reads a TOML configuration file: the keys it has replace the defaults, and relative
    /// paths in it are made relative to its directory.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read or a key is unknown, of the wrong type or
    /// out of range; it names the file, the line and the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_owned()),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        let mut settings = Self::from_toml(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })?;
        if let Some(dir) = path.parent() {
            settings.resolve_paths(dir);
        }
        Ok(settings)
    }

    /// Parses the text of a configuration file (paths are kept as written).
    ///
    /// # Errors
    /// [`ConfigError`] (without a file name) when a key is unknown, of the wrong type or out of
    /// range, or the text is not TOML.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))
    }

    /// Makes the relative paths relative to `dir` (the configuration file's directory).
    fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        resolve(&mut self.data_dir);
        for p in [
            &mut self.acl,
            &mut self.password_file,
            &mut self.cert,
            &mut self.key,
            &mut self.client_ca,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
    }

    /// Checks that the settings fit together: `maximum_qos` is 0, 1 or 2; a TLS listener
    /// (`tls_listen`, `wss_listen`) has `cert` and `key`, which are given together and only for
    /// one; `client_ca` is for a TLS listener; `require_certificate` and
    /// `use_identity_as_username` need `client_ca`; and the certificate, not a password file,
    /// authenticates with `use_identity_as_username`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting (its key) that does not fit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tls = self.tls_listen.is_some() || self.wss_listen.is_some();
        let error = |key: &str, message: &str| {
            Err(ConfigError {
                file: None,
                line: None,
                key: Some(key.to_owned()),
                message: message.to_owned(),
            })
        };
        // Checked when read from a file or the command line; a program may set anything.
        if QoS::from_bits(self.maximum_qos).is_none() {
            return error("maximum_qos", MAXIMUM_QOS_RANGE);
        }
        if tls {
            if self.cert.is_none() {
                return error(
                    "cert",
                    "a TLS listener (tls_listen, wss_listen) needs the server's certificate \
                     (--cert) and key (--key)",
                );
            }
            if self.key.is_none() {
                return error(
                    "key",
                    "a TLS listener (tls_listen, wss_listen) needs the server's key (--key)",
                );
            }
        } else {
            for (key, set) in [
                ("cert", self.cert.is_some()),
                ("key", self.key.is_some()),
                ("client_ca", self.client_ca.is_some()),
            ] {
                if set {
                    return error(
                        key,
                        "is for a TLS listener, and there is none (--tls-listen, --wss-listen)",
                    );
                }
            }
        }
        if self.client_ca.is_none() {
            if self.require_certificate {
                return error(
                    "require_certificate",
                    "needs the certificate authorities to verify client certificates against \
                     (--client-ca)",
                );
            }
            if self.use_identity_as_username {
                return error(
                    "use_identity_as_username",
                    "needs the certificate authorities to verify client certificates against \
                     (--client-ca)",
                );
            }
        }
        if self.use_identity_as_username && self.password_file.is_some() {
            return error(
                "use_identity_as_username",
                "the client certificate authenticates: a password file (--password-file) \
                 would not be used",
            );
        }
        Ok(())
    }

    /// The engine's configuration.
    #[must_use]
    pub fn broker_config(&self) -> BrokerConfig {
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
        // Above 2 (refused by `validate`) reads as 2.
        config.maximum_qos = QoS::from_bits(self.maximum_qos).unwrap_or(QoS::ExactlyOnce);
        config.retain_available = self.retain_available;
        config.wildcard_subscription_available = self.wildcard_subscriptions;
        config.subscription_identifiers_available = self.subscription_identifiers;
        config.shared_subscription_available = self.shared_subscriptions;
        // When User Names are verified, a session is its user's: another user's CONNECT with
        // the same Client Identifier starts a new session instead of receiving this one's.
        config.sessions_owned_by_user =
            self.password_file.is_some() || self.use_identity_as_username;
        config
    }
}

fn at_least_one_u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = u16::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(n)
}

#[allow(clippy::unnecessary_wraps)] // serde's `deserialize_with` for an `Option` field
fn some_at_least_one_u16<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let n = u16::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(Some(n))
}

/// What is wrong with a `maximum_qos` other than 0, 1 or 2.
const MAXIMUM_QOS_RANGE: &str = "must be 0, 1 or 2 (the highest QoS the broker supports)";

fn maximum_qos<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    // Read as any integer, so that -1 and 300 get the same message as 3.
    let n = i64::deserialize(d)?;
    u8::try_from(n)
        .ok()
        .filter(|&bits| QoS::from_bits(bits).is_some())
        .ok_or_else(|| serde::de::Error::custom(MAXIMUM_QOS_RANGE))
}

fn packet_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n < 2 {
        return Err(serde::de::Error::custom(
            "must be at least 2 (the smallest MQTT packet)",
        ));
    }
    Ok(n)
}

/// A setting that stops the start: which file, line and key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (`None` for text given directly, or a command-line flag).
    pub file: Option<PathBuf>,
    /// The line, from 1.
    pub line: Option<usize>,
    /// The key.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `file` (an ACL, a password file) at `line`.
    pub(crate) fn in_file(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: Some(file.to_owned()),
            line,
            key: None,
            message: message.into(),
        }
    }

    fn from_toml(text: &str, e: &toml::de::Error) -> Self {
        let mut line = None;
        let mut key = None;
        if let Some(span) = e.span() {
            let start = span.start.min(text.len());
            let before = text.get(..start).unwrap_or("");
            line = Some(before.matches('\n').count() + 1);
            // The key is what precedes `=` on that line (the span may point at the key or
            // at its value).
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let line_text = text
                .get(line_start..)
                .and_then(|rest| rest.lines().next())
                .unwrap_or("");
            if let Some((k, _)) = line_text.split_once('=') {
                let k = k.trim().trim_matches('"');
                if !k.is_empty() && !k.starts_with('[') {
                    key = Some(k.to_owned());
                }
            }
        }
        // Serde's message about an unknown key names it (and the known ones); the others name
        // the problem only.
        Self {
            file: None,
            line,
            key,
            message: e.message().trim().to_owned(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => write!(f, "configuration")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Settings::from_toml("").unwrap(), Settings::default());
        let s = Settings::default();
        assert_eq!(s.listen, "127.0.0.1:1883");
        assert_eq!(s.broker_config(), BrokerConfig::default());
    }

    #[test]
    fn keys_replace_defaults() {
        let s = Settings::from_toml(
            "listen = \"0.0.0.0:1884\"\nreceive_maximum = 10\nmax_keep_alive = 60\nqueue_qos0 = true\n",
        )
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:1884");
        assert_eq!(s.receive_maximum, 10);
        assert_eq!(s.max_keep_alive, Some(60));
        assert!(s.queue_qos0);
        let c = s.broker_config();
        assert_eq!(c.receive_maximum, 10);
        assert!(c.queue_qos0_when_offline);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = Settings::from_toml("listen = \"a:1\"\n\nreceive_maximun = 5\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("receive_maximun"));
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let e = Settings::from_toml("# c\nreceive_maximum = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("receive_maximum"))
        );
        assert!(e.message.contains("at least 1"), "{e}");
        let e = Settings::from_toml("max_keep_alive = \"ten\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(1), Some("max_keep_alive"))
        );
        let e = Settings::from_toml("max_keep_alive = 70000\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("max_keep_alive"));
        let e = Settings::from_toml("max_packet_size = 1\n").unwrap_err();
        assert!(e.message.contains("at least 2"), "{e}");
        let e = Settings::from_toml("listen = \n").unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn capabilities_default_to_the_engines_and_reach_it() {
        let s = Settings::default();
        assert_eq!(s.maximum_qos, 2);
        assert!(s.retain_available);
        assert!(s.wildcard_subscriptions && s.subscription_identifiers && s.shared_subscriptions);
        let s = Settings::from_toml(
            "maximum_qos = 1\nretain_available = false\nwildcard_subscriptions = false\n\
             subscription_identifiers = false\nshared_subscriptions = false\n",
        )
        .unwrap();
        assert_eq!(s.maximum_qos, 1);
        assert!(!s.retain_available);
        assert!(!s.wildcard_subscriptions);
        assert!(!s.subscription_identifiers);
        assert!(!s.shared_subscriptions);
        assert_eq!(s.validate(), Ok(()));
        let c = s.broker_config();
        assert_eq!(c.maximum_qos, QoS::AtLeastOnce);
        assert!(!c.retain_available);
        assert!(!c.wildcard_subscription_available);
        assert!(!c.subscription_identifiers_available);
        assert!(!c.shared_subscription_available);
        // The other engine settings are untouched.
        let mut expected = BrokerConfig::default();
        expected.maximum_qos = QoS::AtLeastOnce;
        expected.retain_available = false;
        expected.wildcard_subscription_available = false;
        expected.subscription_identifiers_available = false;
        expected.shared_subscription_available = false;
        assert_eq!(c, expected);
        // Each key alone, and each QoS.
        for (bits, qos) in [
            (0, QoS::AtMostOnce),
            (1, QoS::AtLeastOnce),
            (2, QoS::ExactlyOnce),
        ] {
            let s = Settings::from_toml(&format!("maximum_qos = {bits}\n")).unwrap();
            assert_eq!(s.broker_config().maximum_qos, qos);
        }
        let only = |key: &str| {
            Settings::from_toml(&format!("{key} = false\n"))
                .unwrap()
                .broker_config()
        };
        assert!(!only("retain_available").retain_available);
        assert!(only("retain_available").shared_subscription_available);
        assert!(!only("wildcard_subscriptions").wildcard_subscription_available);
        assert!(!only("subscription_identifiers").subscription_identifiers_available);
        assert!(!only("shared_subscriptions").shared_subscription_available);
        assert!(only("shared_subscriptions").retain_available);
    }

    #[test]
    fn a_maximum_qos_other_than_0_1_or_2_is_refused() {
        for value in ["3", "-1", "300"] {
            let e = Settings::from_toml(&format!("listen = \"a:1\"\nmaximum_qos = {value}\n"))
                .unwrap_err();
            assert_eq!(
                (e.line, e.key.as_deref()),
                (Some(2), Some("maximum_qos")),
                "{e}"
            );
            assert!(e.message.contains("must be 0, 1 or 2"), "{e}");
            assert!(e.to_string().contains("`maximum_qos`"), "{e}");
        }
        let e = Settings::from_toml("maximum_qos = \"1\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("maximum_qos"));
        let e = Settings::from_toml("retain_available = 0\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("retain_available"));
        // Set by a program: refused by `validate`, which `Server::bind` calls.
        let s = Settings {
            maximum_qos: 3,
            ..Settings::default()
        };
        let e = s.validate().unwrap_err();
        assert_eq!(e.key.as_deref(), Some("maximum_qos"));
        assert!(e.message.contains("must be 0, 1 or 2"), "{e}");
    }

    #[test]
    fn inconsistent_tls_settings_are_refused() {
        let key_of = |text: &str| {
            Settings::from_toml(text)
                .unwrap()
                .validate()
                .err()
                .and_then(|e| e.key)
        };
        assert_eq!(key_of(""), None);
        assert_eq!(key_of("tls_listen = \"a:1\""), Some("cert".to_owned()));
        assert_eq!(
            key_of("wss_listen = \"a:1\"\ncert = \"c\""),
            Some("key".to_owned())
        );
        let tls = "tls_listen = \"a:1\"\ncert = \"c\"\nkey = \"k\"\n";
        assert_eq!(key_of(tls), None);
        assert_eq!(key_of("cert = \"c\"\nkey = \"k\""), Some("cert".to_owned()));
        assert_eq!(
            key_of("ws_listen = \"a:1\"\nclient_ca = \"ca\""),
            Some("client_ca".to_owned())
        );
        assert_eq!(
            key_of(&format!("{tls}require_certificate = true")),
            Some("require_certificate".to_owned())
        );
        assert_eq!(
            key_of(&format!("{tls}use_identity_as_username = true")),
            Some("use_identity_as_username".to_owned())
        );
        let identity = format!("{tls}client_ca = \"ca\"\nuse_identity_as_username = true\n");
        assert_eq!(key_of(&identity), None);
        assert_eq!(
            key_of(&format!("{identity}password_file = \"p\"")),
            Some("use_identity_as_username".to_owned())
        );
    }

    #[test]
    fn threads_default_to_one_without_tls_and_are_checked() {
        assert_eq!(Settings::default().runtime_threads(), 1);
        let tls = Settings::from_toml("tls_listen = \"a:1\"\n").unwrap();
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        assert_eq!(tls.runtime_threads(), cpus);
        let wss = Settings::from_toml("wss_listen = \"a:1\"\nthreads = 3\n").unwrap();
        assert_eq!((wss.threads, wss.runtime_threads()), (Some(3), 3));
        let e = Settings::from_toml("\nthreads = 0\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("threads")));
        assert!(e.message.contains("at least 1"), "{e}");
    }

    #[test]
    fn tls_paths_are_relative_to_the_file() {
        let mut s = Settings::from_toml(
            "cert = \"c.pem\"\nkey = \"/abs/k.pem\"\nclient_ca = \"ca/ca.pem\"\n",
        )
        .unwrap();
        s.resolve_paths(Path::new("/etc/b"));
        assert_eq!(s.cert, Some(PathBuf::from("/etc/b/c.pem")));
        assert_eq!(s.key, Some(PathBuf::from("/abs/k.pem")));
        assert_eq!(s.client_ca, Some(PathBuf::from("/etc/b/ca/ca.pem")));
    }

    #[test]
    fn display_names_file_line_key() {
        let e = ConfigError {
            file: Some(PathBuf::from("/etc/b.toml")),
            line: Some(4),
            key: Some("listen".to_owned()),
            message: "bad".to_owned(),
        };
        assert_eq!(e.to_string(), "/etc/b.toml:4: `listen`: bad");
    }
}
