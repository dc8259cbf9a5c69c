//! What a test gets: its own client ids and topics, the broker's capabilities, and
//! connections that write into its transcript.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{
    ConnAck, Connect, PacketId, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions,
    TopicFilter, TopicName, Utf8String,
};
use mqtt_transport::{ConnectOptions, Endpoint};

use crate::conn::{Conn, Transcript};
use crate::options::{Capabilities, Options, Version};
use crate::outcome::{Failure, Stop};

/// The run's shared knowledge.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) options: Options,
    pub(crate) endpoint: Endpoint,
    pub(crate) caps: Capabilities,
    /// A short token that makes this run's client ids and topics unique.
    pub(crate) run: String,
}

/// One test's context.
#[derive(Clone)]
pub struct Ctx {
    target: Arc<Target>,
    index: usize,
    version: Version,
    transcript: Transcript,
}

impl Ctx {
    pub(crate) fn new(target: Arc<Target>, index: usize, version: Version) -> Self {
        Self {
            target,
            index,
            version,
            transcript: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// A [`Conn`] over a stream the test opened itself (TLS, WebSocket).
    #[must_use]
    pub fn wrap(&self, label: &str, stream: mqtt_transport::BoxStream) -> Conn {
        let mut conn = Conn::new(
            format!("[{label}]"),
            stream,
            self.version,
            Arc::clone(&self.transcript),
            self.answer_within(),
            self.quiet_for(),
        );
        conn.set_anonymous_refused(!self.target.caps.anonymous);
        conn
    }

    pub(crate) fn transcript(&self) -> Vec<String> {
        self.transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// The version the test speaks.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether the test speaks 5.0.
    #[must_use]
    pub fn v5(&self) -> bool {
        self.version == Version::V5
    }

    /// The broker's capabilities.
    #[must_use]
    pub fn caps(&self) -> &Capabilities {
        &self.target.caps
    }

    /// How long the broker gets to answer.
    #[must_use]
    pub fn answer_within(&self) -> Duration {
        self.target.options.answer_within
    }

    /// How long the tester waits before it concludes nothing comes.
    #[must_use]
    pub fn quiet_for(&self) -> Duration {
        self.target.options.quiet_for
    }

    /// A client identifier of this test: `name` (letters and digits) after a prefix unique to
    /// the run and test, at most 23 characters of `[0-9a-zA-Z]` as every Server must accept
    /// (statement MQTT-3.1.3-5) when `name` has at most 8.
    #[must_use]
    pub fn client_id(&self, name: &str) -> String {
        format!("mc{}{:03}{name}", self.target.run, self.index % 1000)
    }

    /// A topic of this test, under a prefix unique to the run and test.
    #[must_use]
    pub fn topic(&self, name: &str) -> String {
        format!("mqttconf/{}/{}/{name}", self.target.run, self.index)
    }

    /// The prefix of [`Ctx::topic`] (without a trailing `/`).
    #[must_use]
    pub fn topic_prefix(&self) -> String {
        format!("mqttconf/{}/{}", self.target.run, self.index)
    }

    /// A CONNECT for client `name` of this test: Clean Start 1, Keep Alive 60, the run's
    /// credentials, no properties.
    #[must_use]
    pub fn connect_packet(&self, name: &str) -> Connect {
        let mut c = Connect::new(self.version.protocol(), utf8(&self.client_id(name)));
        c.keep_alive = 60;
        c.clean_start = true;
        c.username = self.target.options.username.as_deref().map(utf8);
        c.password = self
            .target
            .options
            .password
            .as_deref()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()));
        c
    }

    /// Opens a network connection, without sending anything.
    ///
    /// # Errors
    /// A failure when the broker cannot be reached.
    pub async fn open(&self, label: &str) -> Result<Conn, Stop> {
        let options = ConnectOptions::default().with_connect_timeout(self.answer_within());
        let stream = mqtt_transport::connect(&self.target.endpoint, &options)
            .await
            .map_err(|e| {
                Failure::plain(
                    "a connection to the broker",
                    format!("cannot connect to {}: {e}", self.target.endpoint),
                )
            })?;
        Ok(self.wrap(label, stream))
    }

    /// Opens a connection, sends `connect` and returns the connection and the CONNACK,
    /// whatever its reason code.
    ///
    /// # Errors
    /// A failure when no CONNACK comes.
    pub async fn connect_raw(
        &self,
        label: &str,
        connect: Connect,
    ) -> Result<(Conn, ConnAck), Stop> {
        let mut conn = self.open(label).await?;
        conn.send(connect).await?;
        let ack = conn.connack("MQTT-3.2.0-1").await?;
        Ok((conn, ack))
    }

    /// Opens a connection with `connect`, which the broker must accept.
    ///
    /// # Errors
    /// A failure when the CONNACK is not a success.
    pub async fn connect_with(
        &self,
        label: &str,
        connect: Connect,
    ) -> Result<(Conn, ConnAck), Stop> {
        let (conn, ack) = self.connect_raw(label, connect).await?;
        if ack.reason_code != ReasonCode::SUCCESS {
            return Err(Failure::plain(
                "the broker to accept a well-formed CONNECT",
                format!("CONNACK {:#04x}", ack.reason_code.0),
            )
            .into());
        }
        Ok((conn, ack))
    }

    /// Connects client `name` with [`Ctx::connect_packet`].
    ///
    /// # Errors
    /// A failure when the broker refuses.
    pub async fn connect(&self, name: &str) -> Result<Conn, Stop> {
        Ok(self.connect_with(name, self.connect_packet(name)).await?.0)
    }

    /// Skips the test unless the broker offers at least QoS `q`.
    ///
    /// # Errors
    /// [`Stop::Skip`] when it does not.
    pub fn need_qos(&self, q: u8) -> Result<(), Stop> {
        if self.caps().maximum_qos < q {
            return Err(Stop::Skip(format!(
                "the broker's Maximum QoS is {}",
                self.caps().maximum_qos
            )));
        }
        Ok(())
    }
}

/// A UTF-8 string for the codec (the tests' strings are all valid).
#[must_use]
pub fn utf8(s: &str) -> Utf8String {
    Utf8String::try_from(s).unwrap_or_default()
}

/// A Topic Name for the codec.
///
/// # Errors
/// A failure when `s` is not a valid Topic Name (a fault of the test).
pub fn topic(s: &str) -> Result<TopicName, Stop> {
    TopicName::try_from(s)
        .map_err(|e| Failure::plain("a valid topic in the test", format!("{s:?}: {e:?}")).into())
}

/// A Topic Filter for the codec.
///
/// # Errors
/// A failure when `s` is not a valid Topic Filter (a fault of the test).
pub fn filter(s: &str) -> Result<TopicFilter, Stop> {
    TopicFilter::try_from(s)
        .map_err(|e| Failure::plain("a valid filter in the test", format!("{s:?}: {e:?}")).into())
}

/// A Packet Identifier (1 for 0).
#[must_use]
pub fn pid(id: u16) -> PacketId {
    Conn::pid(id)
}

/// A QoS from its number (2 for anything above).
#[must_use]
pub fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A PUBLISH of `payload` to `topic_name` at QoS `q` (with identifier `id` for QoS 1 and 2).
///
/// # Errors
/// A failure when the topic is invalid (a fault of the test).
pub fn publish(topic_name: &str, payload: &str, q: u8, id: u16) -> Result<Publish, Stop> {
    let mut p = Publish::new(
        topic(topic_name)?,
        Bytes::copy_from_slice(payload.as_bytes()),
    );
    p.qos = qos(q);
    if q > 0 {
        p.packet_id = Some(pid(id));
    }
    Ok(p)
}

/// A SUBSCRIBE to one filter with these options.
///
/// # Errors
/// A failure when the filter is invalid (a fault of the test).
pub fn subscribe(id: u16, f: &str, options: SubscriptionOptions) -> Result<Subscribe, Stop> {
    Ok(Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: vec![(filter(f)?, options)],
    })
}

impl Conn {
    /// Subscribes to `f` at QoS `q` and returns the SUBACK's reason codes.
    ///
    /// # Errors
    /// A failure of `statement` when no SUBACK comes.
    pub async fn subscribe_to(
        &mut self,
        id: u16,
        f: &str,
        options: SubscriptionOptions,
        statement: &'static str,
    ) -> Result<Vec<ReasonCode>, Stop> {
        self.send(subscribe(id, f, options)?).await?;
        match self
            .expect_type(mqtt_codec::PacketType::SubAck, statement)
            .await?
        {
            mqtt_codec::Packet::SubAck(a) => {
                crate::ensure!(
                    a.packet_id == pid(id),
                    "MQTT-3.8.4-2",
                    format!("SUBACK with the SUBSCRIBE's Packet Identifier {id}"),
                    "SUBACK for {}",
                    a.packet_id.get()
                );
                Ok(a.reason_codes)
            }
            _ => Err(Failure::plain("a SUBACK", "another packet").into()),
        }
    }

    /// Subscribes to `f` at QoS `q`, which the broker must grant (at any QoS).
    ///
    /// # Errors
    /// A failure when it refuses.
    pub async fn sub(&mut self, f: &str, q: u8) -> Result<(), Stop> {
        let codes = self
            .subscribe_to(1, f, SubscriptionOptions::qos(qos(q)), "MQTT-3.8.4-1")
            .await?;
        match codes.first() {
            Some(c) if !c.is_error() => Ok(()),
            other => Err(Failure::plain(
                format!("the broker to grant a subscription to {f:?}"),
                format!("SUBACK {other:?}"),
            )
            .into()),
        }
    }
}
