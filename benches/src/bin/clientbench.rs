//! `clientbench`: the async client (`mqtt-client`) beside rumqttc's `AsyncClient` against the
//! same broker, one client library per process so that its CPU time is its own.
//!
//! ```text
//! clientbench --client ours|rumqttc --mode pub0|pub1|recv [--count N] [--size BYTES]
//!             [--window W] [--broker HOST:PORT] [--protocol 5|3.1.1]
//! ```
//!
//! - `pub0`: N QoS 0 messages over one connection as fast as the client takes them, then one
//!   QoS 1 message whose PUBACK says the broker has read them all.
//! - `pub1`: N QoS 1 messages, at most W unacknowledged (rumqttc's `inflight`, our
//!   `max_in_flight`), until the last PUBACK.
//! - `recv`: subscribes at QoS 1, starts a flooding process (this program with `--mode
//!   flood`, on our client) that publishes N QoS 1 messages, and receives them all.
//!
//! It prints one line: `client mode count seconds msgs/s cpu_us_per_msg`, with the CPU time
//! (user and system, every thread) of this process from the first message to the last, from
//! `/proc/self/stat`. `benches/clientbench.sh` runs the broker and both clients, alternating,
//! and reports the medians.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // a benchmark host: it reads the clock

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;

#[derive(Parser, Debug, Clone)]
struct Cli {
    /// Which client library.
    #[arg(long, value_parser = ["ours", "rumqttc"])]
    client: String,
    /// What to measure.
    #[arg(long, value_parser = ["pub0", "pub1", "recv", "flood"])]
    mode: String,
    /// How many messages.
    #[arg(long, default_value_t = 200_000)]
    count: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The in-flight window (QoS 1).
    #[arg(long, default_value_t = 100)]
    window: u16,
    /// The broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// The topic (a different one per run keeps runs apart).
    #[arg(long, default_value = "bench/t")]
    topic: String,
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn report(cli: &Cli, started: Instant, cpu0: Duration) {
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64();
    println!(
        "{} {} {} {:.3} {:.0} {:.2}",
        cli.client,
        cli.mode,
        cli.count,
        secs,
        cli.count as f64 / secs,
        cpu * 1e6 / cli.count as f64
    );
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match (cli.client.as_str(), cli.mode.as_str()) {
            ("ours", "flood") => ours_flood(&cli).await,
            ("ours", "recv") => ours_recv(&cli).await,
            ("ours", _) => ours_publish(&cli).await,
            ("rumqttc", "recv") => rumqttc_recv(&cli).await,
            ("rumqttc", _) => rumqttc_publish(&cli).await,
            _ => panic!("no such combination"),
        }
    });
}

fn ours_options(cli: &Cli, id: &str) -> mqtt_client::Options {
    let mut o = mqtt_client::Options::new(&format!("mqtt://{}", cli.broker), id)
        .unwrap()
        .protocol(mqtt_client::ProtocolVersion::V3_1_1);
    o.session.max_in_flight = cli.window;
    o.session.max_queued_messages = cli.count + 10;
    o.request_capacity = 1024;
    o
}

async fn ours_publish(cli: &Cli) {
    use mqtt_client::{Client, QoS};
    let (client, _events) = Client::connect(ours_options(cli, "bench-ours-pub"))
        .await
        .unwrap();
    let payload = Bytes::from(vec![b'x'; cli.size]);
    let qos = if cli.mode == "pub0" {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let cpu0 = cpu_time();
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..cli.count {
        let d = client
            .publish(&cli.topic, payload.clone(), qos, false)
            .await
            .unwrap();
        if qos != QoS::AtMostOnce {
            pending.push_back(d);
            // Resolved futures are dropped as we go (they hold a oneshot each).
            while pending.len() > usize::from(cli.window) * 4 {
                if let Some(d) = pending.pop_front() {
                    d.await.unwrap();
                }
            }
        }
    }
    for d in pending {
        d.await.unwrap();
    }
    // The fence: the broker has read everything before this PUBACK.
    client
        .publish(&cli.topic, "fence", QoS::AtLeastOnce, false)
        .await
        .unwrap()
        .await
        .unwrap();
    report(cli, started, cpu0);
    client.disconnect().await.unwrap();
}

async fn ours_flood(cli: &Cli) {
    let mut c = cli.clone();
    c.mode = "pub1".to_owned();
    let (client, _events) = mqtt_client::Client::connect(ours_options(&c, "bench-flood"))
        .await
        .unwrap();
    let payload = Bytes::from(vec![b'x'; cli.size]);
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..cli.count {
        pending.push_back(
            client
                .publish(
                    &cli.topic,
                    payload.clone(),
                    mqtt_client::QoS::AtLeastOnce,
                    false,
                )
                .await
                .unwrap(),
        );
        while pending.len() > 1000 {
            if let Some(d) = pending.pop_front() {
                d.await.unwrap();
            }
        }
    }
    for d in pending {
        d.await.unwrap();
    }
    client.disconnect().await.unwrap();
}

fn start_flood(cli: &Cli) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--client", "ours", "--mode", "flood"])
        .args(["--count", &cli.count.to_string()])
        .args(["--size", &cli.size.to_string()])
        .args(["--broker", &cli.broker, "--topic", &cli.topic])
        .spawn()
        .unwrap()
}

async fn ours_recv(cli: &Cli) {
    use mqtt_client::{Client, Event, QoS};
    let (client, mut events) = Client::connect(ours_options(cli, "bench-ours-recv"))
        .await
        .unwrap();
    client
        .subscribe(&cli.topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut flood = start_flood(cli);
    let mut received = 0;
    let mut started = None;
    let mut cpu0 = Duration::ZERO;
    while received < cli.count {
        match events.recv().await {
            Some(Event::Message(_)) => {
                if started.is_none() {
                    started = Some(Instant::now());
                    cpu0 = cpu_time();
                }
                received += 1;
            }
            Some(_) => {}
            None => panic!("the client stopped"),
        }
    }
    report(cli, started.unwrap(), cpu0);
    let _ = flood.wait();
    client.disconnect().await.unwrap();
}

fn rumqttc_options(cli: &Cli, id: &str) -> rumqttc::MqttOptions {
    let (host, port) = cli.broker.rsplit_once(':').unwrap();
    let mut o = rumqttc::MqttOptions::new(id, host, port.parse().unwrap());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_inflight(cli.window);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

async fn rumqttc_publish(cli: &Cli) {
    use rumqttc::{AsyncClient, Event, Packet, QoS};
    let (client, mut eventloop) = AsyncClient::new(rumqttc_options(cli, "bench-rumqttc-pub"), 1024);
    // Connected.
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    let qos1 = cli.mode == "pub1";
    let count = cli.count;
    let payload = Bytes::from(vec![b'x'; cli.size]);
    let topic = cli.topic.clone();
    let cpu0 = cpu_time();
    let started = Instant::now();
    let publisher = tokio::spawn(async move {
        let qos = if qos1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        for _ in 0..count {
            client
                .publish_bytes(topic.as_str(), qos, false, payload.clone())
                .await
                .unwrap();
        }
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, "fence")
            .await
            .unwrap();
        client
    });
    // Every QoS 1 message's PUBACK, then the fence's.
    let mut acks = 0;
    let wanted = if qos1 { count + 1 } else { 1 };
    while acks < wanted {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.unwrap() {
            acks += 1;
        }
    }
    report(cli, started, cpu0);
    let client = publisher.await.unwrap();
    let _ = client.disconnect().await;
}

async fn rumqttc_recv(cli: &Cli) {
    use rumqttc::{AsyncClient, Event, Packet, QoS};
    let (client, mut eventloop) =
        AsyncClient::new(rumqttc_options(cli, "bench-rumqttc-recv"), 1024);
    client
        .subscribe(cli.topic.as_str(), QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    let mut flood = start_flood(cli);
    let mut received = 0;
    let mut started = None;
    let mut cpu0 = Duration::ZERO;
    while received < cli.count {
        if let Event::Incoming(Packet::Publish(_)) = eventloop.poll().await.unwrap() {
            if started.is_none() {
                started = Some(Instant::now());
                cpu0 = cpu_time();
            }
            received += 1;
        }
    }
    report(cli, started.unwrap(), cpu0);
    let _ = flood.wait();
    let _ = client.disconnect().await;
}
