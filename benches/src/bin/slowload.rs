//! `slowload`: what a broker does with a burst, and with a subscriber that stops reading.
//!
//! ```text
//! cargo run --release -p benches --bin slowload -- --connect 127.0.0.1:1883 --scenario burst \
//!     [--messages 100000] [--payload 1024] [--broker-pid PID]
//! cargo run --release -p benches --bin slowload -- --connect 127.0.0.1:1883 --scenario stuck \
//!     [--messages 100000] [--qos1-messages 10000] [--stuck-secs 10] [--broker-pid PID]
//! ```
//!
//! - `burst`: two subscribers on `flood/#` read as fast as they can; one publisher sends
//!   `--messages` QoS 0 messages of `--payload` bytes as fast as it can.
//! - `stuck`: the same two readers (at QoS 1, acknowledging), a third subscriber that reads
//!   nothing for `--stuck-secs` and then everything, one publisher of `--messages` QoS 0 and
//!   one of `--qos1-messages` QoS 1 messages (20 in flight).
//!
//! In both, a probe connection publishes a QoS 0 message on `probe/t` every 10 ms and receives
//! it back: its round-trip time through the broker is the latency the other clients see while
//! the load goes on. With `--broker-pid`, the broker's resident memory (VmRSS) is sampled every
//! 50 ms: the growth over its value before the load is reported.
//!
//! Output: a summary, and a `RESULT key=value ...` line.
#![forbid(unsafe_code)]
// A load generator reads the clock (the workspace forbids it to the sans-IO library code).
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use mqtt_codec::{
    Connect, MqttCodec, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS, Subscribe,
    SubscriptionOptions, TopicName,
};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

type BoxError = Box<dyn Error + Send + Sync>;
type Conn = Framed<TcpStream, MqttCodec>;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The broker's address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    connect: String,
    /// `burst` or `stuck`.
    #[arg(long, default_value = "burst")]
    scenario: String,
    /// QoS 0 messages published.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// QoS 1 messages published (stuck scenario).
    #[arg(long, default_value_t = 10_000)]
    qos1_messages: u64,
    /// Payload size of the QoS 0 messages.
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// How long the stuck subscriber reads nothing.
    #[arg(long, default_value_t = 10)]
    stuck_secs: u64,
    /// The broker's process id, to sample its memory.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Gives up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

async fn connect(addr: &str, id: &str) -> Result<Conn, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut conn = Framed::new(stream, MqttCodec::with_version(ProtocolVersion::V5));
    let mut c = Connect::new(ProtocolVersion::V5, id.try_into()?);
    c.keep_alive = 0;
    conn.send(Packet::from(c)).await?;
    match conn.next().await {
        Some(Ok(Packet::ConnAck(a))) if !a.reason_code.is_error() => Ok(conn),
        other => Err(format!("{id}: no CONNACK: {other:?}").into()),
    }
}

async fn subscribe(conn: &mut Conn, filter: &str, qos: QoS) -> Result<(), BoxError> {
    conn.send(Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).ok_or("id")?,
        properties: Default::default(),
        filters: vec![(filter.try_into()?, SubscriptionOptions::qos(qos))],
    }))
    .await?;
    match conn.next().await {
        Some(Ok(Packet::SubAck(_))) => Ok(()),
        other => Err(format!("no SUBACK: {other:?}").into()),
    }
}

fn publish(topic: &TopicName, payload: Bytes, qos: QoS, id: u16) -> Packet {
    let mut p = Publish::new(topic.clone(), payload);
    p.qos = qos;
    p.packet_id = PacketId::new(id).filter(|_| qos != QoS::AtMostOnce);
    Packet::Publish(p)
}

/// Reads `flood/#` until `expected` messages arrived (acknowledging QoS 1); returns the count
/// and the time of the last one. Checks the QoS 1 messages arrive in order.
async fn reader(
    mut conn: Conn,
    expected: u64,
    start: Instant,
    delay: Duration,
) -> Result<(u64, u64, Duration), BoxError> {
    tokio::time::sleep(delay).await;
    let (mut n, mut q1, mut last) = (0u64, 0u64, Duration::ZERO);
    while n < expected {
        match conn.next().await {
            Some(Ok(Packet::Publish(p))) => {
                n += 1;
                last = start.elapsed();
                if let Some(id) = p.packet_id {
                    let seq = u64::from_be_bytes(p.payload.get(..8).ok_or("short")?.try_into()?);
                    if seq != q1 {
                        return Err(format!("QoS 1 message {seq} where {q1} was due").into());
                    }
                    q1 += 1;
                    conn.send(Packet::PubAck(PubAck::new(id))).await?;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    Ok((n, q1, last))
}

/// Publishes a probe every 10 ms and measures its round trip, until `done`.
async fn probe(
    addr: String,
    done: Arc<AtomicBool>,
    start: Instant,
) -> Result<Histogram<u64>, BoxError> {
    let mut conn = connect(&addr, "probe").await?;
    subscribe(&mut conn, "probe/#", QoS::AtMostOnce).await?;
    let topic = TopicName::try_from("probe/t")?;
    let mut hist = Histogram::<u64>::new(3)?;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !done.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                let t = u64::try_from(start.elapsed().as_micros())?;
                conn.send(publish(&topic, Bytes::copy_from_slice(&t.to_be_bytes()), QoS::AtMostOnce, 0)).await?;
            }
            msg = conn.next() => match msg {
                Some(Ok(Packet::Publish(p))) => {
                    let sent = u64::from_be_bytes(p.payload.get(..8).ok_or("short")?.try_into()?);
                    let now = u64::try_from(start.elapsed().as_micros())?;
                    hist.record(now.saturating_sub(sent))?;
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
    Ok(hist)
}

/// The broker's resident memory in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

async fn run(args: Args) -> Result<bool, BoxError> {
    let stuck_scenario = args.scenario == "stuck";
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let base = args.broker_pid.and_then(rss_kib).unwrap_or(0);
    if let Some(pid) = args.broker_pid {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let qos1 = if stuck_scenario {
        args.qos1_messages
    } else {
        0
    };
    let total = args.messages + qos1;
    let reader_qos = if stuck_scenario {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let mut readers = Vec::new();
    for id in ["fast-1", "fast-2"] {
        let mut c = connect(&args.connect, id).await?;
        subscribe(&mut c, "flood/#", reader_qos).await?;
        readers.push(tokio::spawn(reader(c, total, start, Duration::ZERO)));
    }
    let stuck = if stuck_scenario {
        let mut c = connect(&args.connect, "stuck").await?;
        subscribe(&mut c, "flood/#", QoS::AtLeastOnce).await?;
        // It counts only QoS 1 messages as the goal: QoS 0 may be dropped for it.
        Some(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(args.stuck_secs)).await;
            let mut c = c;
            let (mut q1, mut q0) = (0u64, 0u64);
            while q1 < qos1 {
                match tokio::time::timeout(Duration::from_secs(30), c.next()).await {
                    Ok(Some(Ok(Packet::Publish(p)))) => match p.packet_id {
                        Some(id) => {
                            let seq =
                                u64::from_be_bytes(p.payload.get(..8).ok_or("short")?.try_into()?);
                            if seq != q1 {
                                return Err::<(u64, u64), BoxError>(
                                    format!("stuck: QoS 1 message {seq} where {q1} was due").into(),
                                );
                            }
                            q1 += 1;
                            c.send(Packet::PubAck(PubAck::new(id))).await?;
                        }
                        None => q0 += 1,
                    },
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            Ok((q1, q0))
        }))
    } else {
        None
    };
    let probe = tokio::spawn(probe(args.connect.clone(), Arc::clone(&done), start));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load_start = start.elapsed();

    // Publishers.
    let mut p0 = connect(&args.connect, "pub-0").await?;
    let payload = args.payload.max(8);
    let n0 = args.messages;
    let q0_pub = tokio::spawn(async move {
        let topic = TopicName::try_from("flood/q0")?;
        for k in 0..n0 {
            let mut body = k.to_be_bytes().to_vec();
            body.resize(payload, 0);
            p0.feed(publish(&topic, Bytes::from(body), QoS::AtMostOnce, 0))
                .await?;
            if k % 64 == 63 {
                SinkExt::<Packet>::flush(&mut p0).await?;
            }
        }
        SinkExt::<Packet>::flush(&mut p0).await?;
        Ok::<_, BoxError>(p0)
    });
    let q1_pub = if qos1 > 0 {
        let mut p1 = connect(&args.connect, "pub-1").await?;
        Some(tokio::spawn(async move {
            let topic = TopicName::try_from("flood/q1")?;
            let mut in_flight = 0u32;
            let mut next = 0u64;
            let mut acked = 0u64;
            while acked < qos1 {
                while in_flight < 20 && next < qos1 {
                    let id = u16::try_from(next % 60_000 + 1)?;
                    p1.send(publish(
                        &topic,
                        Bytes::copy_from_slice(&next.to_be_bytes()),
                        QoS::AtLeastOnce,
                        id,
                    ))
                    .await?;
                    next += 1;
                    in_flight += 1;
                }
                match p1.next().await {
                    Some(Ok(Packet::PubAck(_))) => {
                        acked += 1;
                        in_flight -= 1;
                    }
                    Some(Ok(_)) => {}
                    _ => return Err::<_, BoxError>("publisher 1 lost its connection".into()),
                }
            }
            Ok(p1)
        }))
    } else {
        None
    };
    let deadline = Duration::from_secs(args.timeout);
    let _p0 = tokio::time::timeout(deadline, q0_pub).await???;
    let published_at = start.elapsed();
    if let Some(q1_pub) = q1_pub {
        let _p1 = tokio::time::timeout(deadline, q1_pub).await???;
    }
    let mut ok = true;
    let mut received = Vec::new();
    for r in readers {
        match tokio::time::timeout(deadline, r).await {
            Ok(Ok(Ok((n, _, last)))) => received.push((n, last)),
            other => {
                ok = false;
                eprintln!("a reader failed: {other:?}");
                received.push((0, Duration::ZERO));
            }
        }
    }
    let stuck_result = match stuck {
        Some(s) => match tokio::time::timeout(deadline, s).await {
            Ok(Ok(Ok(r))) => Some(r),
            other => {
                eprintln!("the stuck subscriber failed: {other:?}");
                ok = false;
                None
            }
        },
        None => None,
    };
    done.store(true, Ordering::Relaxed);
    let hist = probe.await??;
    let growth = peak.load(Ordering::Relaxed).saturating_sub(base);
    let delivered: u64 = received.iter().map(|(n, _)| n).sum();
    let last = received.iter().map(|(_, t)| *t).max().unwrap_or_default();
    let secs = last.saturating_sub(load_start).as_secs_f64().max(1e-9);
    let rate = delivered as f64 / secs;
    println!(
        "{}: {} messages published in {:.2} s; readers got {:?} (of {total} each) at {:.0} msgs/s in all",
        args.scenario,
        args.messages + qos1,
        published_at.saturating_sub(load_start).as_secs_f64(),
        received.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        rate
    );
    if let Some((q1, q0)) = stuck_result {
        println!("stuck subscriber: {q1} of {qos1} QoS 1 messages in order, {q0} QoS 0 messages");
        ok &= q1 == qos1;
    }
    println!(
        "probe round trip: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} probes); broker RSS growth {} KiB",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
        hist.len(),
        growth
    );
    println!(
        "RESULT scenario={} delivered={} expected={} rate={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} rss_growth_kib={} stuck_qos1={} stuck_qos0={}",
        args.scenario,
        delivered,
        2 * total,
        rate,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
        growth,
        stuck_result.map_or(0, |r| r.0),
        stuck_result.map_or(0, |r| r.1),
    );
    Ok(ok && delivered == 2 * total)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("slowload: {e}");
            ExitCode::FAILURE
        }
    }
}
