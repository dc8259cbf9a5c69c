//! `loadtest`: an MQTT load generator, to measure a broker's end-to-end throughput and latency.
//!
//! ```text
//! cargo run --release -p benches --bin loadtest -- --connect 127.0.0.1:1883 \
//!     --connections 1000 --messages 100000 --qos 1 [--payload 64] [--protocol 5|4]
//! ```
//!
//! # What it does
//!
//! 1. **Setup.** Opens `--connections` N TCP connections (at most `--connect-concurrency` at a
//!    time), each sending CONNECT (Clean Start, Keep Alive 0, Client Identifier `load-{i}`,
//!    Session Expiry Interval `--session-expiry`) and SUBSCRIBE to its own topic `load/{i}` at
//!    `--qos`, and waiting for CONNACK and SUBACK. The time this takes, and each connection's
//!    handshake time, are reported.
//! 2. **Run.** Every connection publishes at the same time. Message `k` (0 ≤ k < M) is
//!    published by connection `p = k mod N` to the topic of connection `(p + 1 + k div N)
//!    mod S`, S being `--subscribers` (default N). With S = N, in each round of N messages
//!    every connection publishes one message and receives one: each message has exactly one
//!    subscriber and the load is even. With S < N only connections 0..S subscribe (fan-in;
//!    `--subscribers 1` sends everything to connection 0). A connection keeps at most
//!    `--window` PUBLISH packets unacknowledged (lowered to the broker's Receive Maximum in
//!    MQTT 5.0); QoS 1 is acknowledged with PUBACK, QoS 2 with PUBREC/PUBREL/PUBCOMP, and
//!    subscribers acknowledge what they receive the same way. By default each connection
//!    publishes as fast as its window allows (a closed loop: the latency measured is then
//!    mostly queueing, about N × window / throughput); `--rate` paces the publishers instead
//!    (message `k` is due `k / RATE` s after the start, and its latency counts from then, so
//!    a broker that falls behind is not excused by publishers waiting for their window).
//! 3. **End.** When every connection has had all its messages acknowledged and has received
//!    every message addressed to it, each sends DISCONNECT. `--timeout` bounds the whole run.
//!
//! Each payload carries the message number and the time it was queued for sending
//! (nanoseconds since the start of the program; the clock is this process's, so no clock
//! synchronisation is involved), padded to `--payload` bytes. The subscriber checks that the
//! message was addressed to it, counts duplicates, and records publish→deliver latency.
//!
//! # Output
//!
//! A human-readable summary, then one line starting with `RESULT ` of `key=value` pairs
//! (for scripts; see `benches/loadtest.sh`). The exit status is 0 when every message was
//! delivered and acknowledged with no error, 1 otherwise (lost or misrouted messages,
//! negative acknowledgements, connection errors, timeout).
#![forbid(unsafe_code)]
// A load generator reads the clock (the workspace forbids it to the sans-IO library code).
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::fmt::Write as _;
use std::num::NonZeroU16;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use clap::Parser;
use hdrhistogram::Histogram;
use mqtt_codec::{
    Connect, Disconnect, MqttCodec, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
    Utf8String,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder as _, Encoder as _};

type BoxError = Box<dyn Error + Send + Sync>;

/// The payload's header: message number and send time, both big-endian `u64`.
const HEADER_LEN: usize = 16;
/// Stop queueing PUBLISH packets while this many bytes wait to be written.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// How long the final DISCONNECT may take.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Latencies are recorded in microseconds, up to an hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Errors printed in full (the rest are counted).
const ERRORS_SHOWN: usize = 10;

/// An MQTT load generator: N connections, each subscribed to its own topic, publishing M
/// messages in total so that each message has exactly one subscriber; reports throughput and
/// publish→deliver latency.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Args {
    /// The broker's address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
    connect: String,
    /// How many connections (each subscribes to one topic and publishes).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    connections: u64,
    /// How many of the connections subscribe (connections 0..S; default: all). Fewer
    /// subscribers than connections is fan-in: `--subscribers 1` sends every message to
    /// connection 0.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    subscribers: Option<u64>,
    /// Session Expiry Interval asked for in CONNECT, in seconds (MQTT 5.0). 0: the session
    /// ends with the connection, so a broker need not persist anything about it. With MQTT
    /// 3.1.1 any non-zero value means Clean Session 0 (a session that outlives the
    /// connection).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    session_expiry: u32,
    /// How many messages are published in total, spread evenly over the connections.
    #[arg(long, value_name = "M", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    messages: u64,
    /// The QoS of every PUBLISH and subscription (0, 1 or 2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload size in bytes (at least 16: the message number and the send time).
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(16..=16_000_000))]
    payload: u32,
    /// The MQTT protocol level: 5 (MQTT 5.0) or 4 (MQTT 3.1.1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(4..=5))]
    protocol: u8,
    /// Unacknowledged QoS 1/2 PUBLISH packets allowed per connection (lowered to the broker's
    /// Receive Maximum in MQTT 5.0). QoS 0 is paced by TCP only.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..))]
    window: u16,
    /// Publish at this many messages per second in total (message `k` is due `k / RATE`
    /// seconds after the start, latency counts from then) instead of as fast as the windows
    /// allow: latency at a fixed load rather than at saturation.
    #[arg(long, value_name = "MSGS_PER_S", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Connection handshakes (CONNECT + SUBSCRIBE) in progress at a time during setup.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    connect_concurrency: u64,
    /// Give up after this many seconds in all (setup and run).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Give up when no message was delivered or acknowledged for this many seconds (a broker
    /// that dropped messages would otherwise be waited for until `--timeout`).
    #[arg(long, value_name = "SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    stall_timeout: u64,
    /// Worker threads of the load generator's runtime (default: one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Client Identifiers are this prefix followed by the connection's number.
    #[arg(long, value_name = "PREFIX", default_value = "load-")]
    client_prefix: String,
    /// Topics are this prefix, `/`, and the subscriber's number.
    #[arg(long, value_name = "PREFIX", default_value = "load")]
    topic_prefix: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let result = builder
        .enable_all()
        .build()
        .map_err(BoxError::from)
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    /// The time payload timestamps count from.
    origin: Instant,
    version: ProtocolVersion,
    qos: QoS,
    connections: u64,
    subscribers: u64,
    messages: u64,
    session_expiry: u32,
    payload: usize,
    /// `--rate`, if given.
    rate: Option<f64>,
    /// When the run started (set once setup is done).
    run_start: std::sync::OnceLock<Instant>,
    /// `delivered[k]`: message `k` reached its subscriber.
    delivered: Vec<AtomicBool>,
    /// The topic connection `i` subscribes to (for `i` < `subscribers`).
    topics: Vec<TopicName>,
    /// How many messages connection `i` receives.
    expected: Vec<u64>,
    /// Packets received from the broker during the run (to notice a stalled run).
    progress: AtomicU64,
}

impl Shared {
    /// The connection subscribed to the topic message `k` is published to: publisher
    /// `p = k mod N` of round `r = k div N` publishes to `(p + 1 + r) mod S`.
    fn subscriber_of(&self, k: u64) -> u64 {
        (k % self.connections + 1 + k / self.connections) % self.subscribers
    }

    /// How many messages each connection receives.
    fn count_receives(&self) -> Result<Vec<u64>, BoxError> {
        let mut counts = vec![0u64; usize::try_from(self.connections)?];
        for k in 0..self.messages {
            let count = usize::try_from(self.subscriber_of(k))
                .ok()
                .and_then(|s| counts.get_mut(s))
                .ok_or("subscriber out of range")?;
            *count += 1;
        }
        Ok(counts)
    }

    /// When message `k` is due with `--rate` (None without).
    fn due(&self, k: u64) -> Option<Instant> {
        let rate = self.rate?;
        let start = *self.run_start.get()?;
        Some(start + Duration::from_secs_f64(k as f64 / rate))
    }

    /// Nanoseconds from `origin` to `t`.
    fn ns_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds since `origin`.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A connection after CONNACK and SUBACK.
#[derive(Debug)]
struct Established {
    index: u64,
    stream: TcpStream,
    codec: MqttCodec,
    /// Bytes read past the SUBACK.
    input: BytesMut,
    /// Unacknowledged PUBLISH packets allowed.
    window: usize,
    /// How long CONNECT..SUBACK took.
    handshake: Duration,
}

async fn run(args: Args) -> Result<bool, BoxError> {
    let version = if args.protocol == 5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let qos = QoS::from_bits(args.qos).ok_or("QoS must be 0, 1 or 2")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let subscribers = args.subscribers.unwrap_or(args.connections);
    if subscribers > args.connections {
        return Err("--subscribers cannot exceed --connections".into());
    }
    let topics = (0..subscribers)
        .map(|i| TopicName::try_from(format!("{}/{i}", args.topic_prefix)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shared = Shared {
        origin: Instant::now(),
        version,
        qos,
        connections: args.connections,
        subscribers,
        messages: args.messages,
        session_expiry: args.session_expiry,
        payload: usize::try_from(args.payload)?,
        rate: args.rate,
        run_start: std::sync::OnceLock::new(),
        delivered: (0..args.messages).map(|_| AtomicBool::new(false)).collect(),
        topics,
        expected: Vec::new(),
        progress: AtomicU64::new(0),
    };
    shared.expected = shared.count_receives()?;
    let shared = Arc::new(shared);
    println!(
        "loadtest: {} connections to {}, MQTT {}, QoS {}, {} messages of {} bytes, window {}, {}{}",
        args.connections,
        args.connect,
        if version.is_v5() { "5.0" } else { "3.1.1" },
        args.qos,
        args.messages,
        args.payload,
        args.window,
        match (subscribers, args.session_expiry) {
            (s, 0) if s == args.connections => String::new(),
            (s, 0) => format!("{s} subscribers, "),
            (s, e) if s == args.connections => format!("session expiry {e} s, "),
            (s, e) => format!("{s} subscribers, session expiry {e} s, "),
        },
        match args.rate {
            Some(rate) => format!("paced at {rate} msgs/s"),
            None => "as fast as the windows allow".to_owned(),
        }
    );

    // Setup: connect and subscribe every connection before anything is published.
    let setup_start = Instant::now();
    let established = match tokio::time::timeout_at(deadline, setup(&args, &shared)).await {
        Ok(Ok(conns)) => conns,
        Ok(Err(errors)) => {
            println!("setup failed on {} connections:", errors.len());
            for e in errors.iter().take(ERRORS_SHOWN) {
                println!("  {e}");
            }
            println!("RESULT ok=0 setup_failures={}", errors.len());
            return Ok(false);
        }
        Err(_) => {
            println!("setup did not complete within --timeout {} s", args.timeout);
            println!("RESULT ok=0 setup_timeout=1");
            return Ok(false);
        }
    };
    let setup_time = setup_start.elapsed();
    let mut handshakes = latency_histogram()?;
    for c in &established {
        handshakes.saturating_record(micros(c.handshake));
    }
    let min_window = established.iter().map(|c| c.window).min().unwrap_or(0);
    println!(
        "setup: {} connections (CONNECT + SUBSCRIBE) in {:.3} s; handshake p50 {} p99 {} max {}{}",
        established.len(),
        setup_time.as_secs_f64(),
        fmt_us(handshakes.value_at_quantile(0.5)),
        fmt_us(handshakes.value_at_quantile(0.99)),
        fmt_us(handshakes.max()),
        if usize::from(args.window) > min_window && qos != QoS::AtMostOnce {
            format!("; window lowered to {min_window} (broker's Receive Maximum)")
        } else {
            String::new()
        }
    );

    // Run: every connection publishes and receives at once.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let run_start = Instant::now();
    // Set once, here: it cannot have been set before.
    let _ = shared.run_start.set(run_start);
    let template = ConnStats::new()?;
    let mut tasks = JoinSet::new();
    for conn in established {
        tasks.spawn(run_connection(
            conn,
            Arc::clone(&shared),
            template.clone(),
            done_tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(done_tx);
    let mut finished = 0u64;
    let mut timed_out = None;
    let stall = Duration::from_secs(args.stall_timeout);
    let mut last_progress = (0, tokio::time::Instant::now());
    while finished < args.connections {
        let now = tokio::time::Instant::now();
        let progress = shared.progress.load(Ordering::Relaxed);
        if progress != last_progress.0 {
            last_progress = (progress, now);
        }
        if now >= deadline {
            timed_out = Some(format!("--timeout {} s", args.timeout));
            break;
        }
        if now >= last_progress.1 + stall {
            timed_out = Some(format!(
                "no progress for --stall-timeout {} s",
                args.stall_timeout
            ));
            break;
        }
        let wake = deadline.min(now + Duration::from_secs(1));
        match tokio::time::timeout_at(wake, done_rx.recv()).await {
            Ok(Some(())) => finished += 1,
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let run_end = Instant::now();
    // Ignored: every task may have ended already (each on an error).
    let _ = stop_tx.send(true);
    let mut stats = ConnStats::new()?;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(s) => stats.merge(s)?,
            Err(e) => stats.errors.push(format!("connection task failed: {e}")),
        }
    }

    // Report.
    let delivered: u64 = shared
        .delivered
        .iter()
        .map(|d| u64::from(d.load(Ordering::Relaxed)))
        .sum();
    let lost = args.messages - delivered;
    let unacked = args.messages.saturating_sub(stats.acked);
    let span = stats
        .last_delivery
        .map_or(run_end, |t| t.max(run_start))
        .duration_since(run_start);
    let rate = if span.is_zero() {
        0.0
    } else {
        delivered as f64 / span.as_secs_f64()
    };
    let h = &stats.latency;
    let errors = stats.errors.len() + usize::try_from(stats.negative_acks)?;
    println!(
        "run: {} published, {} acknowledged, {} delivered ({} lost, {} duplicates, {} misrouted) in {:.3} s{}",
        stats.published,
        stats.acked,
        delivered,
        lost,
        stats.duplicates,
        stats.misrouted,
        span.as_secs_f64(),
        match &timed_out {
            Some(why) => format!(" (gave up: {why})"),
            None => String::new(),
        }
    );
    println!("throughput: {rate:.0} msgs/s (publish→deliver)");
    println!(
        "latency (publish→deliver): p50 {} p90 {} p99 {} p99.9 {} max {}",
        fmt_us(h.value_at_quantile(0.5)),
        fmt_us(h.value_at_quantile(0.9)),
        fmt_us(h.value_at_quantile(0.99)),
        fmt_us(h.value_at_quantile(0.999)),
        fmt_us(h.max())
    );
    println!(
        "errors: {errors} ({} negative acknowledgements)",
        stats.negative_acks
    );
    for e in stats.errors.iter().take(ERRORS_SHOWN) {
        println!("  {e}");
    }
    if stats.errors.len() > ERRORS_SHOWN {
        println!("  … and {} more", stats.errors.len() - ERRORS_SHOWN);
    }
    let ok =
        lost == 0 && unacked == 0 && errors == 0 && stats.misrouted == 0 && timed_out.is_none();
    let mut line = String::from("RESULT");
    let fields: [(&str, String); 20] = [
        ("ok", u8::from(ok).to_string()),
        ("connections", args.connections.to_string()),
        ("messages", args.messages.to_string()),
        ("qos", args.qos.to_string()),
        ("protocol", args.protocol.to_string()),
        ("payload", args.payload.to_string()),
        ("setup_s", format!("{:.3}", setup_time.as_secs_f64())),
        ("run_s", format!("{:.3}", span.as_secs_f64())),
        ("msgs_per_s", format!("{rate:.0}")),
        ("p50_us", h.value_at_quantile(0.5).to_string()),
        ("p90_us", h.value_at_quantile(0.9).to_string()),
        ("p99_us", h.value_at_quantile(0.99).to_string()),
        ("p999_us", h.value_at_quantile(0.999).to_string()),
        ("max_us", h.max().to_string()),
        ("delivered", delivered.to_string()),
        ("lost", lost.to_string()),
        ("unacked", unacked.to_string()),
        ("duplicates", stats.duplicates.to_string()),
        ("errors", errors.to_string()),
        ("timed_out", u8::from(timed_out.is_some()).to_string()),
    ];
    for (key, value) in fields {
        write!(line, " {key}={value}")?;
    }
    println!("{line}");
    Ok(ok)
}

/// Connects and subscribes every connection; all of them, or every error.
async fn setup(args: &Args, shared: &Arc<Shared>) -> Result<Vec<Established>, Vec<String>> {
    let permits = Arc::new(Semaphore::new(
        usize::try_from(args.connect_concurrency).unwrap_or(usize::MAX),
    ));
    let mut tasks = JoinSet::new();
    for index in 0..args.connections {
        let permits = Arc::clone(&permits);
        let shared = Arc::clone(shared);
        let addr = args.connect.clone();
        let client_id = format!("{}{index}", args.client_prefix);
        let window = usize::from(args.window);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
            establish(index, &addr, client_id, window, &shared)
                .await
                .map_err(|e| format!("connection {index}: {e}"))
        });
    }
    let mut conns = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(conn)) => conns.push(conn),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("setup task failed: {e}")),
        }
    }
    if errors.is_empty() {
        conns.sort_by_key(|c| c.index);
        Ok(conns)
    } else {
        Err(errors)
    }
}

/// Opens connection `index`: CONNECT, CONNACK, SUBSCRIBE to its topic, SUBACK.
async fn establish(
    index: u64,
    addr: &str,
    client_id: String,
    window: usize,
    shared: &Shared,
) -> Result<Established, BoxError> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut codec = MqttCodec::with_version(shared.version);
    let mut out = BytesMut::new();
    let mut input = BytesMut::with_capacity(READ_CHUNK);

    let mut connect = Connect::new(shared.version, Utf8String::try_from(client_id)?);
    // Longer than any run (so no PINGREQ is needed), and not 0: rumqttd refuses 0.
    connect.keep_alive = 600;
    if shared.session_expiry > 0 {
        if shared.version.is_v5() {
            connect.properties.session_expiry_interval = Some(shared.session_expiry);
        } else {
            connect.clean_start = false;
        }
    }
    if shared.version.is_v5() {
        // Let the broker send as many unacknowledged messages as it likes.
        connect.properties.receive_maximum = NonZeroU16::new(u16::MAX);
    }
    codec.encode(Packet::from(connect), &mut out)?;
    stream.write_all(&out).await?;
    out.clear();
    let window = match read_packet(&mut stream, &mut codec, &mut input).await? {
        Packet::ConnAck(ack) if ack.reason_code == ReasonCode::SUCCESS => {
            let broker_max = ack.properties.receive_maximum.map_or(u16::MAX, |m| m.get());
            window.min(usize::from(broker_max))
        }
        Packet::ConnAck(ack) => return Err(format!("CONNACK {}", ack.reason_code).into()),
        other => return Err(format!("expected CONNACK, got {:?}", other.packet_type()).into()),
    };

    let Some(topic) = shared.topics.get(usize::try_from(index)?) else {
        // Not a subscriber.
        return Ok(Established {
            index,
            stream,
            codec,
            input,
            window,
            handshake: start.elapsed(),
        });
    };
    let filter = TopicFilter::try_from(topic.as_ref())?;
    let packet_id = PacketId::new(1).ok_or("packet identifier 1")?;
    let subscribe = Subscribe {
        packet_id,
        properties: Default::default(),
        filters: vec![(filter, SubscriptionOptions::qos(shared.qos))],
    };
    codec.encode(Packet::Subscribe(subscribe), &mut out)?;
    stream.write_all(&out).await?;
    match read_packet(&mut stream, &mut codec, &mut input).await? {
        Packet::SubAck(ack) => match ack.reason_codes.first() {
            Some(rc) if rc.is_error() => return Err(format!("SUBACK {rc}").into()),
            Some(rc) if rc.0 < shared.qos.bits() => {
                return Err(format!("SUBACK granted only QoS {}", rc.0).into());
            }
            Some(_) => {}
            None => return Err("SUBACK without a reason code".into()),
        },
        other => return Err(format!("expected SUBACK, got {:?}", other.packet_type()).into()),
    }
    Ok(Established {
        index,
        stream,
        codec,
        input,
        window,
        handshake: start.elapsed(),
    })
}

/// Reads until one whole packet is decoded.
async fn read_packet(
    stream: &mut TcpStream,
    codec: &mut MqttCodec,
    input: &mut BytesMut,
) -> Result<Packet, BoxError> {
    loop {
        if let Some(packet) = codec.decode(input)? {
            return Ok(packet);
        }
        input.reserve(READ_CHUNK);
        if stream.read_buf(input).await? == 0 {
            return Err("the broker closed the connection".into());
        }
    }
}

/// What one connection saw.
#[derive(Debug, Clone)]
struct ConnStats {
    latency: Histogram<u64>,
    published: u64,
    /// PUBLISH packets completed (PUBACK, or PUBCOMP; QoS 0 counts when written).
    acked: u64,
    /// Acknowledgements with a failure reason code, or No matching subscribers.
    negative_acks: u64,
    duplicates: u64,
    misrouted: u64,
    errors: Vec<String>,
    last_delivery: Option<Instant>,
}

impl ConnStats {
    fn new() -> Result<Self, BoxError> {
        Ok(Self {
            latency: latency_histogram()?,
            published: 0,
            acked: 0,
            negative_acks: 0,
            duplicates: 0,
            misrouted: 0,
            errors: Vec::new(),
            last_delivery: None,
        })
    }

    fn merge(&mut self, other: Self) -> Result<(), BoxError> {
        self.latency.add(&other.latency)?;
        self.published += other.published;
        self.acked += other.acked;
        self.negative_acks += other.negative_acks;
        self.duplicates += other.duplicates;
        self.misrouted += other.misrouted;
        self.errors.extend(other.errors);
        self.last_delivery = self.last_delivery.max(other.last_delivery);
        Ok(())
    }
}

/// One connection during the run: its publisher and its subscriber.
struct Connection {
    index: u64,
    shared: Arc<Shared>,
    stream: TcpStream,
    codec: MqttCodec,
    input: BytesMut,
    output: BytesMut,
    window: usize,
    /// The next message this connection publishes (`index`, `index + N`, …).
    next_message: u64,
    /// QoS 1/2 PUBLISH packets not yet acknowledged.
    inflight: usize,
    /// Packet Identifiers in use, indexed by identifier.
    ids_in_use: Vec<bool>,
    last_id: u16,
    /// Messages this connection publishes / must receive, and has received.
    to_publish: u64,
    to_receive: u64,
    received: u64,
    /// Whether `finished()` was reported to the main task.
    done_reported: bool,
    stats: ConnStats,
}

/// Runs one connection until it is told to stop (after every connection has finished, or at
/// the timeout) or fails; reports on `done` when its own work is complete (or has failed).
async fn run_connection(
    conn: Established,
    shared: Arc<Shared>,
    stats: ConnStats,
    done: mpsc::UnboundedSender<()>,
    stop: watch::Receiver<bool>,
) -> ConnStats {
    let to_publish = if conn.index < shared.messages {
        (shared.messages - conn.index).div_ceil(shared.connections)
    } else {
        0
    };
    let to_receive = usize::try_from(conn.index)
        .ok()
        .and_then(|i| shared.expected.get(i))
        .copied()
        .unwrap_or(0);
    let mut c = Connection {
        index: conn.index,
        shared,
        stream: conn.stream,
        codec: conn.codec,
        input: conn.input,
        output: BytesMut::with_capacity(OUT_HIGH_WATER),
        window: conn.window.max(1),
        next_message: conn.index,
        inflight: 0,
        ids_in_use: vec![false; usize::from(u16::MAX) + 1],
        last_id: 0,
        to_publish,
        to_receive,
        received: 0,
        done_reported: false,
        stats,
    };
    match c.drive(&done, stop).await {
        Ok(()) => c.disconnect().await,
        Err(e) => {
            c.stats.errors.push(format!("connection {}: {e}", c.index));
            if !c.done_reported {
                // Ignored: the run may be over already.
                let _ = done.send(());
            }
        }
    }
    c.stats
}

impl Connection {
    /// Whether everything this connection publishes was acknowledged and everything addressed
    /// to it received.
    fn finished(&self) -> bool {
        self.stats.acked >= self.to_publish && self.received >= self.to_receive
    }

    /// Publishes, acknowledges and receives until `stop`; Err when the connection fails.
    async fn drive(
        &mut self,
        done: &mpsc::UnboundedSender<()>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), BoxError> {
        // Bytes read before the run started (none in practice).
        self.handle_input()?;
        loop {
            self.queue_publishes()?;
            if !self.done_reported && self.finished() {
                self.done_reported = true;
                // Ignored: the run may be over already.
                let _ = done.send(());
            }
            if *stop.borrow() {
                return Ok(());
            }
            let interest = if self.output.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            // With --rate: wake when the next message is due (if the window has room for it).
            let due = self.next_due().map(tokio::time::Instant::from_std);
            let ready = tokio::select! {
                ready = self.stream.ready(interest) => ready?,
                () = sleep_until_some(due) => continue,
                changed = stop.changed() => {
                    // An error means the sender is gone: stop as well.
                    let _ = changed;
                    return Ok(());
                }
            };
            if ready.is_readable() {
                self.input.reserve(READ_CHUNK);
                match self.stream.try_read_buf(&mut self.input) {
                    Ok(0) => return Err("the broker closed the connection".into()),
                    Ok(_) => self.handle_input()?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if ready.is_writable() && !self.output.is_empty() {
                match self.stream.try_write(&self.output) {
                    Ok(written) => self.output.advance(written),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Whether another PUBLISH may be queued now, ignoring `--rate`.
    fn may_publish(&self) -> bool {
        self.stats.published < self.to_publish
            && (self.shared.qos == QoS::AtMostOnce || self.inflight < self.window)
            && self.output.len() < OUT_HIGH_WATER
    }

    /// With `--rate`, when the next message is due, if it may be published but is not due
    /// yet.
    fn next_due(&self) -> Option<Instant> {
        let due = self.shared.due(self.next_message)?;
        (self.may_publish() && due > Instant::now()).then_some(due)
    }

    /// Queues this connection's next messages while the window, the output buffer and
    /// `--rate` allow.
    fn queue_publishes(&mut self) -> Result<(), BoxError> {
        let qos = self.shared.qos;
        let now = Instant::now();
        while self.may_publish() {
            let k = self.next_message;
            // Latency counts from when the message was due (it may be sent later, when the
            // window was full), not from when it was sent.
            let sent_at = match self.shared.due(k) {
                Some(due) if due > now => break,
                Some(due) => self.shared.ns_at(due),
                None => self.shared.now_ns(),
            };
            let subscriber = usize::try_from(self.shared.subscriber_of(k))?;
            let topic = self
                .shared
                .topics
                .get(subscriber)
                .ok_or("no topic for the subscriber")?
                .clone();
            let mut payload = BytesMut::with_capacity(self.shared.payload);
            payload.put_u64(k);
            payload.put_u64(sent_at);
            payload.resize(self.shared.payload, 0);
            let mut publish = Publish::new(topic, payload.freeze());
            publish.qos = qos;
            if qos == QoS::AtMostOnce {
                self.stats.acked += 1;
            } else {
                publish.packet_id = Some(self.allocate_id().ok_or("no free Packet Identifier")?);
                self.inflight += 1;
            }
            self.codec
                .encode(Packet::Publish(publish), &mut self.output)?;
            self.stats.published += 1;
            self.next_message = k.saturating_add(self.shared.connections);
        }
        Ok(())
    }

    /// A Packet Identifier not in use, marked in use.
    fn allocate_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            self.last_id = self.last_id.checked_add(1).unwrap_or(1);
            if let Some(in_use) = self.ids_in_use.get_mut(usize::from(self.last_id))
                && !*in_use
            {
                *in_use = true;
                return PacketId::new(self.last_id);
            }
        }
        None
    }

    /// Marks `id` free; false if it was not in use.
    fn release_id(&mut self, id: PacketId) -> bool {
        match self.ids_in_use.get_mut(usize::from(id.get())) {
            Some(in_use) if *in_use => {
                *in_use = false;
                self.inflight = self.inflight.saturating_sub(1);
                true
            }
            _ => false,
        }
    }

    fn id_in_use(&self, id: PacketId) -> bool {
        self.ids_in_use
            .get(usize::from(id.get()))
            .copied()
            .unwrap_or(false)
    }

    /// Handles every whole packet in the input buffer.
    fn handle_input(&mut self) -> Result<(), BoxError> {
        let mut packets = 0;
        while let Some(packet) = self.codec.decode(&mut self.input)? {
            self.handle_packet(packet)?;
            packets += 1;
        }
        if packets > 0 {
            self.shared.progress.fetch_add(packets, Ordering::Relaxed);
        }
        Ok(())
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), BoxError> {
        match packet {
            Packet::Publish(publish) => self.delivered(publish)?,
            Packet::PubAck(ack) if self.shared.qos == QoS::AtLeastOnce => {
                if !self.release_id(ack.packet_id) {
                    return Err(format!("PUBACK for unknown packet {}", ack.packet_id).into());
                }
                self.stats.acked += 1;
                self.count_reason(ack.reason_code);
            }
            Packet::PubRec(rec) if self.shared.qos == QoS::ExactlyOnce => {
                if !self.id_in_use(rec.packet_id) {
                    return Err(format!("PUBREC for unknown packet {}", rec.packet_id).into());
                }
                if rec.reason_code.is_error() {
                    // The flow ends here (MQTT 5.0 section 4.3.3).
                    self.release_id(rec.packet_id);
                    self.stats.acked += 1;
                    self.count_reason(rec.reason_code);
                } else {
                    self.count_reason(rec.reason_code);
                    let rel = PubRel::new(rec.packet_id);
                    self.codec.encode(Packet::PubRel(rel), &mut self.output)?;
                }
            }
            Packet::PubComp(comp) if self.shared.qos == QoS::ExactlyOnce => {
                if !self.release_id(comp.packet_id) {
                    return Err(format!("PUBCOMP for unknown packet {}", comp.packet_id).into());
                }
                self.stats.acked += 1;
                if comp.reason_code.is_error() {
                    self.stats.negative_acks += 1;
                }
            }
            Packet::PubRel(rel) => {
                let comp = PubComp::new(rel.packet_id);
                self.codec.encode(Packet::PubComp(comp), &mut self.output)?;
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => {
                return Err(format!("DISCONNECT from the broker: {}", d.reason_code).into());
            }
            other => {
                return Err(format!("unexpected {:?}", other.packet_type()).into());
            }
        }
        Ok(())
    }

    /// Counts a PUBACK/PUBREC reason code that says the message went nowhere.
    fn count_reason(&mut self, rc: ReasonCode) {
        if rc.is_error() || rc == ReasonCode::NO_MATCHING_SUBSCRIBERS {
            self.stats.negative_acks += 1;
        }
    }

    /// A message arrived: check it, record its latency, acknowledge it.
    fn delivered(&mut self, publish: Publish) -> Result<(), BoxError> {
        let now = self.shared.now_ns();
        let mut header = publish
            .payload
            .get(..HEADER_LEN)
            .ok_or("a PUBLISH without the load test's payload header")?;
        let k = header.get_u64();
        let sent = header.get_u64();
        let slot = usize::try_from(k)
            .ok()
            .and_then(|k| self.shared.delivered.get(k))
            .ok_or_else(|| format!("a PUBLISH with message number {k}, out of range"))?;
        if self.shared.subscriber_of(k) != self.index {
            self.stats.misrouted += 1;
        } else if slot.swap(true, Ordering::Relaxed) {
            self.stats.duplicates += 1;
        } else {
            self.received += 1;
            self.stats
                .latency
                .saturating_record(now.saturating_sub(sent) / 1000);
            self.stats.last_delivery = Some(Instant::now());
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {}
            (QoS::AtLeastOnce, Some(id)) => {
                self.codec
                    .encode(Packet::PubAck(PubAck::new(id)), &mut self.output)?;
            }
            (QoS::ExactlyOnce, Some(id)) => {
                self.codec
                    .encode(Packet::PubRec(PubRec::new(id)), &mut self.output)?;
            }
            (_, None) => return Err("a QoS 1/2 PUBLISH without a Packet Identifier".into()),
        }
        Ok(())
    }

    /// Writes what is pending and DISCONNECT, and closes the connection (best effort).
    async fn disconnect(&mut self) {
        let disconnect = Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
        if self.codec.encode(disconnect, &mut self.output).is_err() {
            return;
        }
        let stream = &mut self.stream;
        let output = &self.output;
        // Ignored: the broker may have closed the connection; the results are in.
        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, async move {
            stream.write_all(output).await?;
            stream.shutdown().await
        })
        .await;
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A positive, finite number of messages per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// A histogram of microseconds.
fn latency_histogram() -> Result<Histogram<u64>, BoxError> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds, readably.
fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{us} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(connections: u64, subscribers: u64, messages: u64) -> Shared {
        Shared {
            origin: Instant::now(),
            version: ProtocolVersion::V5,
            qos: QoS::AtLeastOnce,
            connections,
            subscribers,
            messages,
            session_expiry: 0,
            payload: HEADER_LEN,
            rate: None,
            run_start: std::sync::OnceLock::new(),
            delivered: Vec::new(),
            topics: Vec::new(),
            expected: Vec::new(),
            progress: AtomicU64::new(0),
        }
    }

    #[test]
    fn every_connection_receives_as_many_messages_as_it_publishes() {
        for (n, m) in [(1, 1), (1, 7), (3, 9), (4, 12), (7, 700), (10, 30)] {
            let counts = shared(n, n, m).count_receives().unwrap();
            assert!(
                counts.iter().all(|&c| c == m / n),
                "N={n} M={m}: {counts:?}"
            );
        }
        // A partial last round still reaches distinct subscribers.
        let counts = shared(5, 5, 23).count_receives().unwrap();
        assert_eq!(counts.iter().sum::<u64>(), 23);
        assert!(counts.iter().all(|&c| c == 4 || c == 5), "{counts:?}");
    }

    #[test]
    fn each_round_is_a_permutation() {
        let s = shared(5, 5, 25);
        for round in 0..5u64 {
            let mut seen: Vec<u64> = (0..5).map(|p| s.subscriber_of(round * 5 + p)).collect();
            seen.sort_unstable();
            assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn fan_in_reaches_only_the_subscribers() {
        let counts = shared(10, 1, 100).count_receives().unwrap();
        assert_eq!(counts.first(), Some(&100));
        assert_eq!(counts.iter().sum::<u64>(), 100);
        let counts = shared(10, 3, 90).count_receives().unwrap();
        assert_eq!(counts.iter().skip(3).sum::<u64>(), 0);
        assert_eq!(counts.iter().sum::<u64>(), 90);
    }
}
