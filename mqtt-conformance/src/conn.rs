//! One network connection of a test: packets out (encoded, or raw bytes), packets in (through
//! the strict decoder), and every one of them in the test's transcript.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{
    ConnAck, Decoder, Packet, PacketId, PacketType, Publish, QoS, ReasonCode, TopicName,
};
use mqtt_transport::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::options::Version;
use crate::outcome::{Failure, Stop};

/// How many bytes of a packet the transcript shows in hex before it elides the rest.
const HEX_SHOWN: usize = 96;

/// The lines of a test's transcript, shared by its connections.
pub(crate) type Transcript = Arc<Mutex<Vec<String>>>;

/// What came from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A well-formed packet (PUBLISH topics already resolved from their Topic Alias).
    Packet(Packet),
    /// The broker closed the connection (or reset it).
    Closed,
}

/// A connection to the broker, speaking one protocol version.
///
/// Every packet that arrives is decoded strictly: a malformed one fails the test with the
/// statement it breaks, the packet's bytes in hex, and the transcript. So do a packet that
/// only a Client may send, a Topic Alias above the tester's Topic Alias Maximum, a packet
/// over the tester's Maximum Packet Size, and more unacknowledged QoS 1/2 PUBLISH packets
/// than the tester's Receive Maximum (5.0).
pub struct Conn {
    label: String,
    stream: BoxStream,
    version: Version,
    decoder: Decoder,
    buf: BytesMut,
    transcript: Transcript,
    answer_within: Duration,
    quiet_for: Duration,
    closed: bool,
    /// The tester's Topic Alias Maximum (from its CONNECT; 0 by default).
    alias_max: u16,
    aliases: HashMap<u16, TopicName>,
    /// The tester's Receive Maximum (from its CONNECT; 65 535 by default).
    receive_max: u16,
    /// QoS 1 and QoS 2 PUBLISH packets from the broker not yet acknowledged to the end.
    unacked: BTreeSet<u16>,
    /// Whether the broker refuses clients without credentials.
    anonymous_refused: bool,
}

impl Conn {
    pub(crate) fn new(
        label: String,
        stream: BoxStream,
        version: Version,
        transcript: Transcript,
        answer_within: Duration,
        quiet_for: Duration,
    ) -> Self {
        Self {
            label,
            stream,
            version,
            decoder: Decoder::with_version(version.protocol()),
            buf: BytesMut::with_capacity(4096),
            transcript,
            answer_within,
            quiet_for,
            closed: false,
            alias_max: 0,
            aliases: HashMap::new(),
            receive_max: u16::MAX,
            unacked: BTreeSet::new(),
            anonymous_refused: false,
        }
    }

    /// The version this connection speaks.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// How long the broker gets to answer (from the options).
    #[must_use]
    pub fn answer_within(&self) -> Duration {
        self.answer_within
    }

    fn note(&self, line: String) {
        if let Ok(mut t) = self.transcript.lock() {
            t.push(format!("{} {line}", self.label));
        }
    }

    /// Sends a packet, encoded for this connection's version.
    ///
    /// # Errors
    /// A failure when the packet does not encode (a fault of the test) or the connection is
    /// broken.
    pub async fn send(&mut self, packet: impl Into<Packet>) -> Result<(), Stop> {
        let packet = packet.into();
        if let Packet::Connect(c) = &packet {
            self.alias_max = c.properties.topic_alias_maximum.unwrap_or(0);
            self.receive_max = c.properties.receive_maximum.map_or(u16::MAX, |r| r.get());
            if let Some(m) = c.properties.maximum_packet_size {
                self.decoder.set_max_packet_size(m.get());
            }
        }
        self.track_sent(&packet);
        let mut wire = BytesMut::new();
        packet
            .encode(self.version.protocol(), &mut wire)
            .map_err(|e| {
                Failure::plain(
                    "a packet the tester can encode",
                    format!("the test built a packet the codec refuses: {e}"),
                )
            })?;
        self.note(format!("-> {} {}", brief(&packet), hex(&wire)));
        self.write(&wire).await
    }

    /// Sends bytes as they are (a malformed or out-of-order packet); `what` says what they
    /// are for the transcript.
    ///
    /// # Errors
    /// A failure when the connection is broken; [`Stop::Skip`] for a CONNECT (first byte
    /// 0x10) when the broker refuses anonymous clients, since such a CONNECT carries no
    /// credentials and its refusal would prove nothing.
    pub async fn send_raw(&mut self, bytes: &[u8], what: &str) -> Result<(), Stop> {
        self.raw_connect_allowed(bytes)?;
        self.note(format!("-> raw {what}: {}", hex(bytes)));
        self.write(bytes).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let r = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.answer_within, r).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::plain(
                "an open connection to send on",
                format!("the write failed: {e}"),
            )
            .into()),
            Err(_) => Err(Failure::plain(
                "the broker to read what the tester sends",
                format!("a write blocked for {:?}", self.answer_within),
            )
            .into()),
        }
    }

    /// Sends bytes as they are, ignoring a broken connection: for a stimulus the broker may
    /// close the connection on before it has all been written.
    ///
    /// # Errors
    /// [`Stop::Skip`] for a CONNECT written byte by byte when the broker refuses anonymous
    /// clients (see [`Conn::send_raw`]).
    pub async fn send_raw_lenient(&mut self, bytes: &[u8], what: &str) -> Result<(), Stop> {
        self.raw_connect_allowed(bytes)?;
        self.note(format!("-> raw {what}: {}", hex(bytes)));
        let _ = tokio::time::timeout(self.answer_within, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await;
        Ok(())
    }

    /// A CONNECT written byte by byte carries no credentials: on a broker that refuses
    /// anonymous clients it would be refused for that, whatever the defect it carries, so the
    /// test is skipped rather than passed for the wrong reason.
    fn raw_connect_allowed(&self, bytes: &[u8]) -> Result<(), Stop> {
        if self.anonymous_refused && bytes.first() == Some(&0x10) {
            return Err(Stop::Skip(
                "the broker refuses anonymous clients, and this test's CONNECT is written byte by \
                 byte without credentials (allow anonymous clients to run it)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Marks the broker as refusing anonymous clients (see [`Conn::send_raw`]).
    pub(crate) fn set_anonymous_refused(&mut self, refused: bool) {
        self.anonymous_refused = refused;
    }

    fn track_sent(&mut self, packet: &Packet) {
        match packet {
            Packet::PubAck(a) => {
                self.unacked.remove(&a.packet_id.get());
            }
            Packet::PubRec(a) if a.reason_code.is_error() => {
                self.unacked.remove(&a.packet_id.get());
            }
            Packet::PubComp(a) => {
                self.unacked.remove(&a.packet_id.get());
            }
            _ => {}
        }
    }

    /// The next thing from the broker, or `None` when nothing came within `within`.
    ///
    /// # Errors
    /// A failure, naming the statement, when the broker sends a malformed packet or breaks
    /// one of the guards of [`Conn`].
    pub async fn recv_within(&mut self, within: Duration) -> Result<Option<Received>, Stop> {
        let deadline = Instant::now() + within;
        loop {
            if self.closed {
                return Ok(Some(Received::Closed));
            }
            if let Some(packet) = self.decode_one()? {
                return Ok(Some(Received::Packet(packet)));
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Err(_) => return Ok(None),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    if let Ok(Err(e)) = &read {
                        self.note(format!("<- connection error: {e}"));
                    } else {
                        self.note("<- connection closed".to_owned());
                    }
                    self.closed = true;
                    if !self.buf.is_empty() {
                        let left = hex(&self.buf);
                        return Err(Failure::plain(
                            "whole packets before the broker closes the connection",
                            format!("the connection closed after part of a packet: {left}"),
                        )
                        .into());
                    }
                }
                Ok(Ok(n)) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
    }

    /// Decodes one packet from the buffer, applying the guards.
    fn decode_one(&mut self) -> Result<Option<Packet>, Stop> {
        let before = self.buf.clone();
        let packet = match self.decoder.decode(&mut self.buf) {
            Ok(None) => return Ok(None),
            Ok(Some(p)) => p,
            Err(e) => {
                self.note(format!("<- MALFORMED {e}: {}", hex(&before)));
                return Err(malformed(&e, &before).into());
            }
        };
        let used = before.len() - self.buf.len();
        let bytes = before.get(..used).unwrap_or_default();
        self.note(format!("<- {} {}", brief(&packet), hex(bytes)));
        self.guard(packet).map(Some)
    }

    /// The checks every received packet passes.
    fn guard(&mut self, packet: Packet) -> Result<Packet, Stop> {
        let t = packet.packet_type();
        if matches!(
            t,
            PacketType::Connect
                | PacketType::Subscribe
                | PacketType::Unsubscribe
                | PacketType::PingReq
        ) {
            return Err(Failure::plain(
                "only packets a Server may send (section 2.1.2)",
                format!("the broker sent a {t}, which only a Client sends"),
            )
            .into());
        }
        let Packet::Publish(mut p) = packet else {
            return Ok(packet);
        };
        if let Some(alias) = p.properties.topic_alias {
            let alias = alias.get();
            if alias > self.alias_max {
                // A guard of every test (the alias tests assert it as a stimulus and reaction).
                return Err(Failure::of(
                    "MQTT-3.1.2-26",
                    format!(
                        "no Topic Alias above the tester's Topic Alias Maximum {}",
                        self.alias_max
                    ),
                    format!("a PUBLISH with Topic Alias {alias}"),
                )
                .into());
            }
            if p.topic.is_empty() {
                match self.aliases.get(&alias) {
                    Some(topic) => p.topic = topic.clone(),
                    None => {
                        return Err(Failure::of(
                            "MQTT-3.3.2-7",
                            "a Topic Name with a Topic Alias the broker has not set",
                            format!("an empty Topic Name with unknown Topic Alias {alias}"),
                        )
                        .into());
                    }
                }
            } else {
                self.aliases.insert(alias, p.topic.clone());
            }
        }
        if p.qos != QoS::AtMostOnce
            && let Some(id) = p.packet_id
            && self.unacked.insert(id.get())
            && self.version == Version::V5
            && self.unacked.len() > usize::from(self.receive_max)
        {
            return Err(Failure::of(
                "MQTT-3.3.4-9",
                format!(
                    "at most the tester's Receive Maximum ({}) QoS 1/2 PUBLISH packets unacknowledged",
                    self.receive_max
                ),
                format!("{} unacknowledged", self.unacked.len()),
            )
            .into());
        }
        Ok(Packet::Publish(p))
    }

    /// The next packet, which must come within the answer time.
    ///
    /// # Errors
    /// A failure of `statement` when nothing comes or the connection closes.
    pub async fn recv(
        &mut self,
        statement: &'static str,
        waiting_for: &str,
    ) -> Result<Packet, Stop> {
        let within = self.answer_within;
        match self.recv_within(within).await? {
            Some(Received::Packet(p)) => Ok(p),
            Some(Received::Closed) => Err(Failure::of(
                statement,
                waiting_for.to_owned(),
                "the broker closed the connection".to_owned(),
            )
            .into()),
            None => Err(Failure::of(
                statement,
                waiting_for.to_owned(),
                format!("nothing within {within:?}"),
            )
            .into()),
        }
    }

    /// The next packet, which must be of type `t`.
    async fn next_of(
        &mut self,
        t: PacketType,
        statement: &'static str,
        waiting_for: &str,
    ) -> Result<Packet, Stop> {
        let p = self.recv(statement, waiting_for).await?;
        if p.packet_type() == t {
            Ok(p)
        } else {
            Err(Failure::of(statement, waiting_for.to_owned(), brief(&p)).into())
        }
    }

    /// The next packet must be a CONNACK.
    ///
    /// # Errors
    /// A failure of `statement` otherwise.
    pub async fn connack(&mut self, statement: &'static str) -> Result<ConnAck, Stop> {
        match self
            .next_of(PacketType::ConnAck, statement, "a CONNACK")
            .await?
        {
            Packet::ConnAck(a) => Ok(a),
            other => Err(Failure::of(statement, "a CONNACK", brief(&other)).into()),
        }
    }

    /// The next packet must be a PUBLISH.
    ///
    /// # Errors
    /// A failure of `statement` otherwise.
    pub async fn publish(&mut self, statement: &'static str) -> Result<Publish, Stop> {
        match self
            .next_of(PacketType::Publish, statement, "a PUBLISH")
            .await?
        {
            Packet::Publish(a) => Ok(a),
            other => Err(Failure::of(statement, "a PUBLISH", brief(&other)).into()),
        }
    }

    /// The next packet must be of type `t`.
    ///
    /// # Errors
    /// A failure of `statement` otherwise.
    pub async fn expect_type(
        &mut self,
        t: PacketType,
        statement: &'static str,
    ) -> Result<Packet, Stop> {
        self.next_of(t, statement, &format!("a {t}")).await
    }

    /// Nothing may arrive for the quiet time (or `for_` when given).
    ///
    /// # Errors
    /// A failure of `statement` when a packet arrives or the connection closes.
    pub async fn expect_quiet(
        &mut self,
        statement: &'static str,
        what_not: &str,
        for_: Option<Duration>,
    ) -> Result<(), Stop> {
        let within = for_.unwrap_or(self.quiet_for);
        match self.recv_within(within).await? {
            None => Ok(()),
            Some(Received::Packet(p)) => Err(Failure::of(
                statement,
                format!("{what_not} within {within:?}"),
                brief(&p),
            )
            .into()),
            Some(Received::Closed) => Err(Failure::of(
                statement,
                format!("{what_not}, and the connection to stay open"),
                "the broker closed the connection".to_owned(),
            )
            .into()),
        }
    }

    /// The broker must close the connection within `within` (the answer time when `None`),
    /// sending at most a DISCONNECT (5.0) or a CONNACK first; returns the reason code of that
    /// packet, if any.
    ///
    /// # Errors
    /// A failure of `statement` when the connection stays open or another packet comes.
    pub async fn expect_close(
        &mut self,
        statement: &'static str,
        within: Option<Duration>,
    ) -> Result<Option<ReasonCode>, Stop> {
        let within = within.unwrap_or(self.answer_within);
        let deadline = Instant::now() + within;
        let mut code = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await? {
                Some(Received::Closed) => return Ok(code),
                Some(Received::Packet(Packet::Disconnect(d))) if code.is_none() => {
                    code = Some(d.reason_code);
                }
                Some(Received::Packet(Packet::ConnAck(a))) if code.is_none() => {
                    code = Some(a.reason_code);
                }
                Some(Received::Packet(p)) => {
                    return Err(Failure::of(
                        statement,
                        "the connection closed (after at most a DISCONNECT or CONNACK)",
                        format!("{} before any close", brief(&p)),
                    )
                    .into());
                }
                None => {
                    return Err(Failure::of(
                        statement,
                        "the connection closed",
                        format!("still open after {within:?}"),
                    )
                    .into());
                }
            }
        }
    }

    /// Whether the broker has closed the connection.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the connection without a DISCONNECT (an abnormal close for the broker), and
    /// waits (at most the answer time) until the broker has closed its side too, so that what
    /// the test does next happens after the broker knows the connection is gone.
    pub async fn drop_abruptly(mut self) {
        self.note("-- closed by the tester without DISCONNECT".to_owned());
        let _ = self.stream.shutdown().await;
        self.await_close().await;
    }

    /// Sends DISCONNECT (reason 0x00), closes, and waits (at most the answer time) until the
    /// broker has closed its side too.
    pub async fn disconnect(mut self) {
        let _ = self
            .send(mqtt_codec::Disconnect::new(ReasonCode::SUCCESS))
            .await;
        let _ = self.stream.shutdown().await;
        self.await_close().await;
    }

    /// Reads until the broker closes the connection, for at most the answer time; packets in
    /// between (sent before the broker saw the close) are dropped.
    async fn await_close(&mut self) {
        let deadline = Instant::now() + self.answer_within;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                Ok(Some(Received::Packet(_))) => {}
                Ok(Some(Received::Closed)) | Ok(None) | Err(_) => break,
            }
        }
    }

    /// A Packet Identifier (1 when given 0).
    #[must_use]
    pub fn pid(id: u16) -> PacketId {
        PacketId(std::num::NonZeroU16::new(id).unwrap_or(std::num::NonZeroU16::MIN))
    }
}

/// A short description of a packet for the transcript and for evidence.
#[must_use]
pub fn brief(p: &Packet) -> String {
    match p {
        Packet::Publish(p) => {
            let mut s = format!(
                "PUBLISH topic={:?} qos={} retain={} dup={}",
                &*p.topic,
                p.qos as u8,
                u8::from(p.retain),
                u8::from(p.dup)
            );
            if let Some(id) = p.packet_id {
                let _ = write!(s, " id={}", id.get());
            }
            let _ = write!(s, " payload={:?}", String::from_utf8_lossy(&p.payload));
            if !p.properties.is_empty() {
                let _ = write!(s, " props={:?}", p.properties);
            }
            s
        }
        Packet::ConnAck(a) => format!(
            "CONNACK session_present={} reason={:#04x} props={:?}",
            u8::from(a.session_present),
            a.reason_code.0,
            a.properties
        ),
        Packet::Disconnect(d) => format!(
            "DISCONNECT reason={:#04x} props={:?}",
            d.reason_code.0, d.properties
        ),
        other => format!("{other:?}"),
    }
}

/// The failure for bytes from the broker that the strict decoder refuses with `e`: the
/// statement the decoder names (if any), the error, and the bytes in hex.
#[must_use]
pub(crate) fn malformed(e: &mqtt_codec::Error, bytes: &[u8]) -> Failure {
    Failure {
        statement: e.statement(),
        expected: "a well-formed packet from the broker".into(),
        observed: format!("{e}; bytes {}", hex(bytes)),
    }
}

/// Bytes in hex, the first [`HEX_SHOWN`] of them.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().min(HEX_SHOWN) * 3);
    for (i, b) in bytes.iter().take(HEX_SHOWN).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    if bytes.len() > HEX_SHOWN {
        let _ = write!(s, " … ({} bytes)", bytes.len());
    }
    s
}
