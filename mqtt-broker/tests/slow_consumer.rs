//! The broker under bursts, with real clients (mosquitto_sub / mosquitto_pub) and a raw
//! MQTT 5.0 client that stops reading: the engine's pulled transmit and slow-consumer policy
//! (`docs/design/engine-io.md`) seen from outside.
//!
//! - Two subscribers that read as fast as they can, one publisher that sends 100 000 QoS 0
//!   messages of 1 KiB as fast as it can: both subscribers receive every message (the first
//!   host dropped both within 0.2 s).
//! - A subscriber that stops reading for 10 s while 100 000 QoS 0 and 10 000 QoS 1 messages
//!   flow: a subscriber that reads receives everything, and the stuck one receives every QoS 1
//!   message, in order, once it reads again (its QoS 0 messages are dropped while it is stuck).
//!
//! Like `interop.rs`, these run only with `MQTT_INTEROP=1` (set by `.ci/run` after installing
//! the clients); every wait is bounded and every process is killed when its handle drops.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // real processes on a real clock: the tests wait for them

#[allow(dead_code)] // this test uses part of it
#[path = "support/broker_process.rs"]
mod broker_process;
#[allow(dead_code)]
#[path = "support/tempdir.rs"]
mod tempdir;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker_process::{Broker, TempDir};
use bytes::BytesMut;
use mqtt_session::codec::{
    Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, QoS, Subscribe,
    SubscriptionOptions,
};

/// The messages of the bursts.
const QOS0_MESSAGES: usize = 100_000;
const QOS1_MESSAGES: usize = 10_000;
/// The longest a burst test may take to deliver everything.
const DEADLINE: Duration = Duration::from_secs(90);

/// The two tests take turns: each loads both cores (a broker and several clients), and run
/// side by side each would be slowed by the other's load rather than by its own scenario.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn interop_enabled() -> bool {
    tempdir::interop_enabled(
        "slow-consumer tests",
        &["mosquitto_sub", "mosquitto_pub"],
        false,
    )
}

/// A child process killed when dropped.
struct Running(Child, &'static str);

impl Running {
    /// Waits for it to exit successfully within `limit`.
    fn wait_ok(&mut self, limit: Duration) {
        self.wait_ok_or(limit, String::new);
    }

    /// Waits for it to exit successfully within `limit`; `context` says more on failure.
    fn wait_ok_or(&mut self, limit: Duration, context: impl Fn() -> String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status}: {}",
                    self.1,
                    context()
                );
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{} still running after {limit:?}: {}",
                self.1,
                context()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mosquitto_sub` on `flood/#` that exits after `count` messages, printing each as a line
/// `M <payload prefix>` into a file, and debug lines (with "Subscribed") before them.
fn subscriber(dir: &Path, port: &str, id: &str, qos: u8, count: usize) -> (Running, PathBuf) {
    let out = dir.join(format!("{id}.out"));
    // (Through `stdbuf -oL`: its output is a file, which it would buffer in blocks.)
    let child = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-V",
            "mqttv5",
            "-i",
            id,
            "-d",
        ])
        .args([
            "-q",
            &qos.to_string(),
            "-t",
            "flood/#",
            "-C",
            &count.to_string(),
        ])
        .args(["-F", "M %t %p"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let running = Running(child, "mosquitto_sub");
    // Subscribed once its debug output says so.
    let start = Instant::now();
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("Subscribed (mid")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{id} not subscribed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (running, out)
}

/// The messages a subscriber printed: (topic, payload) of each `M` line.
fn received(out: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("M "))
        .filter_map(|l| l.split_once(' '))
        .map(|(t, p)| (t.to_owned(), p.to_owned()))
        .collect()
}

/// `mosquitto_pub -l`: every line of `lines` is a message on `topic` at `qos`.
fn publisher(dir: &Path, port: &str, id: &str, topic: &str, qos: u8, lines: &[String]) -> Running {
    let input = dir.join(format!("{id}.in"));
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&input, text).unwrap();
    let child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-i", id])
        .args(["-q", &qos.to_string(), "-t", topic, "-l"])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_pub");
    Running(child, "mosquitto_pub")
}

/// 1 KiB payloads, numbered.
fn kib_payloads(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{i:07}-{}", "x".repeat(1015)))
        .collect()
}

#[test]
fn two_fast_subscribers_receive_every_message_of_a_burst() {
    if !interop_enabled() {
        return;
    }
    let _turn = one_at_a_time();
    let dir = TempDir::new("burst");
    let broker = Broker::start(&dir);
    let port = broker.port();
    let (mut s1, out1) = subscriber(dir.path(), &port, "s1", 0, QOS0_MESSAGES);
    let (mut s2, out2) = subscriber(dir.path(), &port, "s2", 0, QOS0_MESSAGES);
    let started = Instant::now();
    let mut p = publisher(
        dir.path(),
        &port,
        "p",
        "flood/burst",
        0,
        &kib_payloads(QOS0_MESSAGES),
    );
    p.wait_ok(DEADLINE);
    for (s, out) in [(&mut s1, &out1), (&mut s2, &out2)] {
        s.wait_ok_or(DEADLINE, || {
            format!(
                "{} messages, broker log:\n{}",
                received(out).len(),
                broker.log()
            )
        });
    }
    let elapsed = started.elapsed();
    for out in [out1, out2] {
        let got = received(&out);
        assert_eq!(got.len(), QOS0_MESSAGES, "{}", out.display());
        // In order, none lost (QoS 0 over one connection keeps the publisher's order).
        for (i, (_, payload)) in got.iter().enumerate() {
            assert_eq!(&payload[..7], format!("{i:07}"), "message {i}");
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "burst: {QOS0_MESSAGES} messages of 1 KiB to 2 subscribers in {elapsed:?}"
    );
}

/// A raw MQTT 5.0 client over a blocking socket.
struct Raw {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Raw {
    fn connect(port: &str, client_id: &str) -> Self {
        let stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut raw = Self {
            stream,
            decoder: Decoder::with_version(ProtocolVersion::V5),
            buf: BytesMut::new(),
        };
        let mut connect = Connect::new(ProtocolVersion::V5, client_id.try_into().unwrap());
        connect.keep_alive = 0;
        connect.properties.session_expiry_interval = Some(300);
        raw.send(Packet::from(connect));
        assert!(matches!(raw.recv(), Packet::ConnAck(a) if !a.reason_code.is_error()));
        raw
    }

    fn send(&mut self, packet: Packet) {
        let mut b = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut b).unwrap();
        self.stream.write_all(&b).unwrap();
    }

    fn recv(&mut self) -> Packet {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).unwrap() {
                return p;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn a_stuck_subscriber_gets_every_qos1_message_in_order_and_does_not_slow_the_others() {
    if !interop_enabled() {
        return;
    }
    let _turn = one_at_a_time();
    let dir = TempDir::new("stuck");
    let broker = Broker::start(&dir);
    let port = broker.port();

    // The subscriber that stops reading, as soon as it is subscribed.
    let mut stuck = Raw::connect(&port, "stuck");
    stuck.send(Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            "flood/#".try_into().unwrap(),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
        )],
    }));
    assert!(matches!(stuck.recv(), Packet::SubAck(_)));
    let stopped = Instant::now();

    let (mut fast, fast_out) =
        subscriber(dir.path(), &port, "fast", 1, QOS0_MESSAGES + QOS1_MESSAGES);
    let started = Instant::now();
    let mut p0 = publisher(
        dir.path(),
        &port,
        "p0",
        "flood/q0",
        0,
        &kib_payloads(QOS0_MESSAGES),
    );
    let qos1: Vec<String> = (0..QOS1_MESSAGES).map(|i| format!("q1-{i:05}")).collect();
    let mut p1 = publisher(dir.path(), &port, "p1", "flood/q1", 1, &qos1);
    p0.wait_ok(DEADLINE);
    p1.wait_ok(DEADLINE);
    fast.wait_ok_or(DEADLINE, || {
        format!(
            "{} messages, broker log:\n{}",
            received(&fast_out).len(),
            broker.log()
        )
    });
    let fast_elapsed = started.elapsed();
    let got = received(&fast_out);
    assert_eq!(got.len(), QOS0_MESSAGES + QOS1_MESSAGES);
    let fast_q1: Vec<&str> = got
        .iter()
        .filter(|(t, _)| t == "flood/q1")
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(
        fast_q1, qos1,
        "the reading subscriber: every QoS 1 message, in order"
    );

    // Ten seconds without reading, then it reads everything that is waiting for it.
    let pause = Duration::from_secs(10).saturating_sub(stopped.elapsed());
    std::thread::sleep(pause);
    let mut stuck_q1 = Vec::new();
    let mut stuck_q0 = 0_usize;
    let deadline = Instant::now() + DEADLINE;
    while stuck_q1.len() < QOS1_MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{} QoS 1 messages after {DEADLINE:?}",
            stuck_q1.len()
        );
        match stuck.recv() {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    stuck.send(Packet::PubAck(PubAck::new(id)));
                }
                if p.qos == QoS::AtLeastOnce {
                    stuck_q1.push(String::from_utf8(p.payload.to_vec()).unwrap());
                } else {
                    stuck_q0 += 1;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        stuck_q1, qos1,
        "the stuck subscriber: every QoS 1 message, in order"
    );
    assert!(
        stuck_q0 < QOS0_MESSAGES,
        "QoS 0 messages are dropped for a stuck subscriber"
    );
    let log = broker.log();
    assert!(log.contains("consumer stuck"), "{log}");
    let _ = writeln!(
        std::io::stderr(),
        "stuck: the reading subscriber got {} messages in {fast_elapsed:?}; the stuck one \
         {stuck_q0} QoS 0 and all {QOS1_MESSAGES} QoS 1",
        got.len()
    );
}
