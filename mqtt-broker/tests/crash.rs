//! SIGKILL under load: the broker commits its records in groups on a storage thread while it
//! goes on routing, and still loses nothing it acknowledged. Publishers stream QoS 1 and QoS 2
//! messages (as many in flight as the Receive Maximum allows) to a durable subscriber that is
//! offline; the broker is killed mid-stream, restarted, and the subscriber must then receive
//! every QoS 1 message that was PUBACKed (at least once) and every QoS 2 message whose PUBREC
//! was sent (exactly once). Then the broker is killed again while the subscriber drains its
//! queue, and after the second restart the subscriber receives the rest, still with every
//! QoS 2 message exactly once.
//!
//! v5 [MQTT-4.3.2-2] [MQTT-4.3.3-2]: the PUBACK and PUBREC mean the broker owns the message;
//! [MQTT-4.1.0-1]: the session state survives (the Session Expiry Interval is 3600 s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // a real process on a real clock: the test waits for it

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt_session::codec::{
    Connect, Decoder, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};

#[allow(dead_code)]
#[path = "support/broker_process.rs"]
mod broker_process;
#[allow(dead_code)]
#[path = "support/tempdir.rs"]
mod tempdir;

use broker_process::{Broker, STEP, TempDir};

const V5: ProtocolVersion = ProtocolVersion::V5;
/// Messages in flight per publisher (below the broker's default Receive Maximum).
const WINDOW: usize = 16;

/// A raw MQTT 5.0 connection with short read timeouts, for streaming.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    fn open(addr: SocketAddr, client_id: &str, clean_start: bool) -> Option<(Self, bool)> {
        let stream = TcpStream::connect_timeout(&addr, STEP).ok()?;
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        let mut conn = Self {
            stream,
            decoder: Decoder::with_version(V5),
            buf: BytesMut::new(),
        };
        let mut connect = Connect::new(V5, client_id.try_into().unwrap());
        connect.clean_start = clean_start;
        connect.keep_alive = 0;
        connect.properties.session_expiry_interval = Some(3600);
        conn.send(Packet::Connect(Box::new(connect))).ok()?;
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            match conn.poll() {
                Ok(Some(Packet::ConnAck(ack))) => {
                    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
                    return Some((conn, ack.session_present));
                }
                Ok(Some(other)) => panic!("expected CONNACK, got {other:?}"),
                Ok(None) => {}
                Err(()) => return None,
            }
        }
        panic!("no CONNACK within {STEP:?}");
    }

    fn send(&mut self, packet: Packet) -> Result<(), ()> {
        let mut wire = BytesMut::new();
        packet.encode(V5, &mut wire).unwrap();
        self.stream.write_all(&wire).map_err(|_| ())
    }

    /// The next packet, `Ok(None)` after a short wait without one, `Err` when the connection
    /// is gone.
    fn poll(&mut self) -> Result<Option<Packet>, ()> {
        if let Some(p) = self.decoder.decode(&mut self.buf).expect("a valid packet") {
            return Ok(Some(p));
        }
        let mut chunk = [0_u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(self.decoder.decode(&mut self.buf).expect("a valid packet"))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(_) => Err(()),
        }
    }
}

fn pid(n: usize) -> PacketId {
    PacketId::new(u16::try_from(n % 65_535 + 1).unwrap()).unwrap()
}

/// Publishes `prefix-0`, `prefix-1`, … at `qos` on `load/PREFIX`, WINDOW in flight, until
/// `limit` messages or the connection drops (the broker was killed). Returns the indexes the
/// broker acknowledged: PUBACK (QoS 1) or PUBREC (QoS 2) received. `acked` counts them as
/// they come.
fn publish_stream(
    addr: SocketAddr,
    prefix: &str,
    qos: QoS,
    limit: usize,
    acked: &AtomicUsize,
) -> BTreeSet<usize> {
    let (mut conn, _) = Conn::open(addr, &format!("pub-{prefix}"), true).expect("connect");
    let mut inflight: BTreeMap<u16, usize> = BTreeMap::new();
    let mut done = BTreeSet::new();
    let mut next = 0;
    loop {
        while inflight.len() < WINDOW && next < limit {
            let mut p = Publish::new(
                TopicName::try_from(format!("load/{prefix}").as_str()).unwrap(),
                Bytes::from(format!("{prefix}-{next}")),
            );
            p.qos = qos;
            p.packet_id = Some(pid(next));
            if conn.send(Packet::Publish(p)).is_err() {
                return done;
            }
            inflight.insert(pid(next).get(), next);
            next += 1;
        }
        if inflight.is_empty() && next >= limit {
            return done;
        }
        match conn.poll() {
            Ok(Some(Packet::PubAck(a))) => {
                assert_eq!(a.reason_code, ReasonCode::SUCCESS, "{a:?}");
                let i = inflight
                    .remove(&a.packet_id.get())
                    .expect("PUBACK of a publish");
                done.insert(i);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Packet::PubRec(r))) => {
                assert_eq!(r.reason_code, ReasonCode::SUCCESS, "{r:?}");
                let i = inflight[&r.packet_id.get()];
                // The broker owns the message now.
                done.insert(i);
                acked.fetch_add(1, Ordering::Relaxed);
                if conn.send(Packet::PubRel(PubRel::new(r.packet_id))).is_err() {
                    return done;
                }
            }
            Ok(Some(Packet::PubComp(c))) => {
                inflight.remove(&c.packet_id.get());
            }
            Ok(Some(other)) => panic!("publisher got {other:?}"),
            Ok(None) => {}
            Err(()) => return done,
        }
    }
}

/// What the subscriber received: payload → times delivered to the application.
#[derive(Default)]
struct Received {
    count: BTreeMap<String, usize>,
    /// QoS 2 packet identifiers PUBREC'd and not yet released: a PUBLISH with one of them
    /// is the same message again (method B of section 4.3.3), not a new delivery.
    pending_qos2: BTreeSet<u16>,
}

/// The durable subscriber `sub` reads (and acknowledges) until nothing comes for 1.5 s, or
/// until it has taken `stop_after` messages (then it returns with the connection open, its
/// acknowledgements sent), or the connection drops.
fn drain(addr: SocketAddr, received: &mut Received, stop_after: Option<usize>) -> Option<Conn> {
    let (mut conn, present) = Conn::open(addr, "sub", false).expect("subscriber connects");
    assert!(present, "the durable session survived");
    let mut taken = 0;
    let mut quiet_since = Instant::now();
    loop {
        match conn.poll() {
            Ok(Some(Packet::Publish(p))) => {
                quiet_since = Instant::now();
                let payload = String::from_utf8(p.payload.to_vec()).unwrap();
                let id = p.packet_id.expect("QoS 1 or 2");
                let reply = match p.qos {
                    QoS::AtLeastOnce => {
                        *received.count.entry(payload).or_default() += 1;
                        Packet::PubAck(PubAck::new(id))
                    }
                    QoS::ExactlyOnce => {
                        if received.pending_qos2.insert(id.get()) {
                            *received.count.entry(payload).or_default() += 1;
                        }
                        Packet::PubRec(PubRec::new(id))
                    }
                    QoS::AtMostOnce => panic!("QoS 0 from a QoS 2 subscription of QoS 1/2"),
                };
                if conn.send(reply).is_err() {
                    return None;
                }
                taken += 1;
                if stop_after.is_some_and(|n| taken >= n) {
                    return Some(conn);
                }
            }
            Ok(Some(Packet::PubRel(r))) => {
                received.pending_qos2.remove(&r.packet_id.get());
                if conn
                    .send(Packet::PubComp(PubComp::new(r.packet_id)))
                    .is_err()
                {
                    return None;
                }
            }
            Ok(Some(other)) => panic!("subscriber got {other:?}"),
            Ok(None) => {
                if quiet_since.elapsed() > Duration::from_millis(1500) {
                    return Some(conn);
                }
            }
            Err(()) => return None,
        }
    }
}

/// Starts two streaming publishers (QoS 1 and QoS 2), kills the broker once each has had
/// `kill_after` acknowledgements, and returns what each had acknowledged.
fn stream_and_kill(
    broker: Broker,
    round: usize,
    kill_after: usize,
) -> [(String, BTreeSet<usize>); 2] {
    let addr = broker.addr;
    let counters = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let handles: Vec<_> = [(QoS::AtLeastOnce, "q1"), (QoS::ExactlyOnce, "q2")]
        .into_iter()
        .zip(counters.clone())
        .map(|((qos, name), acked)| {
            let prefix = format!("{name}r{round}");
            std::thread::spawn(move || {
                let done = publish_stream(addr, &prefix, qos, 1_000_000, &acked);
                (prefix, done)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters
        .iter()
        .any(|c| c.load(Ordering::Relaxed) < kill_after)
    {
        assert!(Instant::now() < deadline, "the publishers are too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.kill();
    let mut out = handles.into_iter().map(|h| h.join().unwrap());
    [out.next().unwrap(), out.next().unwrap()]
}

/// Every acknowledged message was received: QoS 1 at least once, QoS 2 exactly once.
fn check(received: &Received, acked: &[(String, BTreeSet<usize>); 2]) {
    let (q1, q1_acked) = &acked[0];
    let (q2, q2_acked) = &acked[1];
    for i in q1_acked {
        let n = received
            .count
            .get(&format!("{q1}-{i}"))
            .copied()
            .unwrap_or(0);
        assert!(
            n >= 1,
            "QoS 1 message {q1}-{i} was PUBACKed but never delivered"
        );
    }
    for i in q2_acked {
        let n = received
            .count
            .get(&format!("{q2}-{i}"))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            n, 1,
            "QoS 2 message {q2}-{i}: PUBREC sent, delivered {n} times"
        );
    }
    // Messages that were never acknowledged may or may not have arrived, but a QoS 2 one
    // never twice.
    for (payload, n) in &received.count {
        if payload.starts_with(q2.as_str()) {
            assert_eq!(*n, 1, "{payload} delivered {n} times");
        }
    }
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = TempDir::new("crash");
    let broker = Broker::start_with(&dir, &["--max-queued-messages", "1000000"]);
    // The durable subscriber, then offline.
    let (mut sub, _) = Conn::open(broker.addr, "sub", true).unwrap();
    let mut s = Subscribe {
        packet_id: pid(0),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::try_from("load/#").unwrap(),
            SubscriptionOptions::qos(QoS::ExactlyOnce),
        )],
    };
    s.packet_id = pid(0);
    sub.send(Packet::Subscribe(s)).unwrap();
    loop {
        match sub.poll() {
            Ok(Some(Packet::SubAck(a))) => {
                assert_eq!(a.reason_codes, [ReasonCode::GRANTED_QOS_2]);
                break;
            }
            Ok(_) => {}
            Err(()) => panic!("the subscriber was disconnected"),
        }
    }
    drop(sub);

    // Round 1: killed while the publishers stream.
    let acked1 = stream_and_kill(broker, 1, 1_500);
    assert!(acked1.iter().all(|(_, a)| a.len() >= 1_500));

    let broker = Broker::start_with(&dir, &["--max-queued-messages", "1000000"]);
    let mut received = Received::default();
    // Round 2: more messages while the subscriber is offline, killed again...
    let acked2 = stream_and_kill(broker, 2, 1_000);
    let broker = Broker::start_with(&dir, &["--max-queued-messages", "1000000"]);
    // ...and killed a third time while the subscriber drains its queue.
    let conn = drain(broker.addr, &mut received, Some(1_000));
    assert!(conn.is_some(), "the subscriber took 1 000 messages");
    broker.kill();
    drop(conn);

    let broker = Broker::start_with(&dir, &["--max-queued-messages", "1000000"]);
    let conn = drain(broker.addr, &mut received, None);
    assert!(conn.is_some());
    check(&received, &acked1);
    check(&received, &acked2);
    let total: usize = received.count.values().sum();
    let acknowledged: usize = acked1.iter().chain(&acked2).map(|(_, a)| a.len()).sum();
    println!("{acknowledged} messages acknowledged by the broker, {total} delivered");
}

/// Sends one QoS 1 PUBLISH and waits up to `wait` for its PUBACK.
fn publish_and_wait(conn: &mut Conn, topic: &str, i: usize, wait: Duration) -> bool {
    let mut p = Publish::new(
        TopicName::try_from(topic).unwrap(),
        Bytes::from(format!("{i:06}-{}", "x".repeat(4000))),
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = Some(pid(i));
    conn.send(Packet::Publish(p)).unwrap();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match conn.poll() {
            Ok(Some(Packet::PubAck(a))) => {
                assert_eq!(a.packet_id, pid(i));
                assert_eq!(a.reason_code, ReasonCode::SUCCESS);
                return true;
            }
            Ok(Some(other)) => panic!("publisher got {other:?}"),
            Ok(None) => {}
            Err(()) => panic!("the broker closed the publisher's connection"),
        }
    }
    false
}

/// The disk fills up (a file size limit on the broker, RLIMIT_FSIZE): the broker stops
/// acknowledging what it cannot store, logs it, keeps running, and when space returns it
/// commits what it held and sends the PUBACKs; the durable subscriber then receives every
/// message, in order. Needs `prlimit` (util-linux); skipped without it.
#[test]
fn a_full_disk_holds_acknowledgements_until_space_returns() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no prlimit");
        return;
    }
    let dir = TempDir::new("full");
    // 2 MiB of file at most (soft limit only: raised again below without privileges);
    // SIGXFSZ ignored, so that a write past it fails with EFBIG instead of killing.
    let broker = Broker::start_wrapped(
        &dir,
        &[
            "sh",
            "-c",
            "trap '' XFSZ; exec prlimit --fsize=2097152:unlimited -- \"$@\"",
            "sh",
        ],
        &["--max-queued-messages", "1000000"],
    );
    let (mut sub, _) = Conn::open(broker.addr, "dsub", true).unwrap();
    sub.send(Packet::Subscribe(Subscribe {
        packet_id: pid(0),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::try_from("full/#").unwrap(),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
        )],
    }))
    .unwrap();
    while !matches!(sub.poll(), Ok(Some(Packet::SubAck(_)))) {}
    drop(sub);

    let (mut publisher, _) = Conn::open(broker.addr, "filler", true).unwrap();
    let mut sent = 0;
    let held = loop {
        assert!(sent < 5_000, "2 MiB never filled up");
        let acked = publish_and_wait(&mut publisher, "full/t", sent, Duration::from_secs(2));
        sent += 1;
        if !acked {
            break sent - 1;
        }
    };
    // Two more behind it, also held.
    for _ in 0..2 {
        assert!(!publish_and_wait(
            &mut publisher,
            "full/t",
            sent,
            Duration::from_millis(300)
        ));
        sent += 1;
    }
    broker.wait_for_log(&["storage commit failed"], 1);

    // Space returns.
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &broker.pid().to_string(),
            "--fsize=unlimited:unlimited",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // The held PUBACKs arrive (the retry waits at most 5 s), in order.
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < sent - held && Instant::now() < deadline {
        if let Ok(Some(Packet::PubAck(a))) = publisher.poll() {
            acked.push(a.packet_id);
        }
    }
    let expected: Vec<PacketId> = (held..sent).map(pid).collect();
    assert_eq!(acked, expected, "the held acknowledgements, once stored");
    broker.wait_for_log(&["storage recovered"], 1);

    // The subscriber gets all of them, in order.
    let (mut sub, present) = Conn::open(broker.addr, "dsub", false).unwrap();
    assert!(present);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < sent && Instant::now() < deadline {
        if let Ok(Some(Packet::Publish(p))) = sub.poll() {
            got.push(String::from_utf8(p.payload[..6].to_vec()).unwrap());
            sub.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
                .unwrap();
        }
    }
    let expected: Vec<String> = (0..sent).map(|i| format!("{i:06}")).collect();
    assert_eq!(got, expected);
}
