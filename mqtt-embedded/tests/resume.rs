//! The embedded client on std, through `embedded-io-adapters` over tokio TCP, against this
//! repository's broker (in the test process) and mosquitto (a child process; with
//! `MQTT_INTEROP=1`, set by `.ci/run`, a missing mosquitto fails the test, without it that
//! case is skipped with a line saying so).
//!
//! The case that matters: transports dropped mid-flow with QoS 1 and QoS 2 messages in flight,
//! on both sides. Nothing acknowledged is lost, and no QoS 2 message arrives twice
//! (v5 [MQTT-4.3.3-10]: no duplicate onward delivery; v5 [MQTT-4.4.0-1]: re-sent on resume).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use mqtt_embedded::{
    ClientConfig, Clock, Error, MqttClient, ProtocolVersion, Publish, QoS, ReasonCode,
    SubscriptionOptions, Timestamp, TopicFilter, TopicName,
};
use tokio::net::TcpStream;

type Transport = FromTokio<TcpStream>;

/// The wall clock of the test (tokio's), as milliseconds from an arbitrary epoch.
#[derive(Clone, Copy)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let ms = u64::try_from(self.0.elapsed().as_millis()).unwrap();
        Timestamp::from_millis(1_700_000_000_000 + ms)
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let ms = deadline.as_millis().saturating_sub(self.now().as_millis());
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

async fn open(addr: SocketAddr) -> Transport {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    FromTokio::new(stream)
}

/// A persistent session (resumed on every reconnection).
fn client(version: ProtocolVersion, id: &str) -> MqttClient<TokioClock> {
    let mut config = ClientConfig::new(version, id);
    config.clean_start = false;
    config.keep_alive = 30;
    if version == ProtocolVersion::V5 {
        config.session_expiry_interval = 300;
    }
    MqttClient::new(config, TokioClock(tokio::time::Instant::now())).unwrap()
}

/// Within `STEP`, or the test fails.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// Message `i` of the test: QoS 1 for even `i`, QoS 2 for odd.
fn qos_of(i: usize) -> QoS {
    if i.is_multiple_of(2) {
        QoS::AtLeastOnce
    } else {
        QoS::ExactlyOnce
    }
}

/// 20 QoS 1 and QoS 2 messages from a publisher whose transport is dropped after the first
/// acknowledgement, with the rest in flight; a subscriber whose transport is dropped after a
/// few messages. Both reconnect and resume: every message is acknowledged to the publisher
/// and received by the subscriber, each QoS 2 message exactly once.
async fn transports_dropped_mid_flow(addr: SocketAddr, version: ProtocolVersion, tag: &str) {
    const COUNT: usize = 20;
    let filter = format!("emb/{tag}/#");

    let mut sub = client(version, &format!("emb-sub-{tag}"));
    let mut st = open(addr).await;
    within("subscriber CONNACK", sub.connect(&mut st))
        .await
        .unwrap();
    let granted = within(
        "SUBACK",
        sub.subscribe(
            &mut st,
            vec![(
                TopicFilter::try_from(filter.as_str()).unwrap(),
                SubscriptionOptions::qos(QoS::ExactlyOnce),
            )],
        ),
    )
    .await
    .unwrap();
    assert_eq!(granted, [ReasonCode(2)], "QoS 2 granted");

    let mut publ = client(version, &format!("emb-pub-{tag}"));
    let mut pt = open(addr).await;
    assert!(
        !within("publisher CONNACK", publ.connect(&mut pt))
            .await
            .unwrap(),
        "a new session"
    );
    let mut ids = Vec::new();
    for i in 0..COUNT {
        let mut message = Publish::new(
            TopicName::try_from(format!("emb/{tag}/{i}").as_str()).unwrap(),
            format!("m{i}").into_bytes(),
        );
        message.qos = qos_of(i);
        let id = within("publish", publ.publish(&mut pt, message))
            .await
            .unwrap()
            .expect("QoS 1 and 2 have a Packet Identifier");
        ids.push(id);
    }
    // The first acknowledgement: the flow has started; the rest is in flight.
    within("the first PUBACK", publ.wait_published(&mut pt, ids[0]))
        .await
        .unwrap();
    assert!(publ.engine().in_flight() > 0, "messages still in flight");
    drop(pt);

    // The subscriber takes a few messages (its acknowledgements go out as it reads), then
    // its transport goes too.
    let mut got: Vec<(QoS, String)> = Vec::new();
    while got.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(2), sub.receive(&mut st)).await {
            Ok(Ok(m)) => got.push((m.qos, String::from_utf8(m.payload.to_vec()).unwrap())),
            Ok(Err(e)) => panic!("subscriber: {e}"),
            Err(_) => break,
        }
    }
    assert!(
        !got.is_empty(),
        "the acknowledged message reached the subscriber"
    );
    drop(st);

    // The publisher resumes: every message is acknowledged, the first one's too.
    let mut pt = open(addr).await;
    let present = within("publisher CONNACK again", publ.connect(&mut pt))
        .await
        .unwrap();
    assert!(present, "the session was kept");
    // (The first one's acknowledgement was taken above.)
    for (i, id) in ids.iter().enumerate().skip(1) {
        let code = within("acknowledgement", publ.wait_published(&mut pt, *id))
            .await
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        // A QoS 2 message whose PUBREL the server had taken before the transport went (its
        // PUBCOMP lost with it) is completed by the PUBREL sent again on resume, which the
        // server may answer with 0x92 Packet Identifier not found: it has forgotten the
        // finished flow (v5 section 3.7.2.1). The message was delivered once all the same
        // (checked at the subscriber below).
        assert!(
            code == ReasonCode::SUCCESS
                || (qos_of(i) == QoS::ExactlyOnce && code == ReasonCode(0x92)),
            "message {i}: {code:?}"
        );
    }
    assert_eq!(publ.engine().in_flight(), 0);
    within("publisher DISCONNECT", publ.disconnect(&mut pt))
        .await
        .unwrap();

    // The subscriber resumes and receives the rest.
    let mut st = open(addr).await;
    assert!(
        within("subscriber CONNACK again", sub.connect(&mut st))
            .await
            .unwrap(),
        "the subscriber's session was kept"
    );
    let distinct = |got: &[(QoS, String)]| {
        got.iter()
            .map(|(_, p)| p.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    while distinct(&got) < COUNT {
        let m = within("the remaining messages", sub.receive(&mut st))
            .await
            .unwrap();
        got.push((m.qos, String::from_utf8(m.payload.to_vec()).unwrap()));
    }
    // Anything the broker still re-sends arrives now (QoS 1 may repeat; QoS 2 must not).
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(500), sub.receive(&mut st)).await {
        let m = m.unwrap();
        got.push((m.qos, String::from_utf8(m.payload.to_vec()).unwrap()));
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, payload) in &got {
        *counts.entry(payload.clone()).or_default() += 1;
    }
    for i in 0..COUNT {
        let n = counts.get(&format!("m{i}")).copied().unwrap_or(0);
        assert!(n >= 1, "message {i} lost");
        if qos_of(i) == QoS::ExactlyOnce {
            assert_eq!(n, 1, "QoS 2 message {i} arrived {n} times");
        }
    }
    assert_eq!(sub.engine().inbound_qos2_pending(), 0);
    within("subscriber DISCONNECT", sub.disconnect(&mut st))
        .await
        .unwrap();
}

/// This repository's broker on a free port, with a fresh data directory.
struct OurBroker {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    dir: PathBuf,
}

impl OurBroker {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mqtt-embedded-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut settings = mqtt_broker::Settings::default();
        settings.listen = "127.0.0.1:0".to_owned();
        settings.data_dir = dir.clone();
        let server = mqtt_broker::Server::bind(settings).await.unwrap();
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            shutdown: Some(tx),
            task,
            dir,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn v5_transports_dropped_mid_flow_against_our_broker() {
    let broker = OurBroker::start("v5").await;
    transports_dropped_mid_flow(broker.addr, ProtocolVersion::V5, "ours5").await;
    broker.stop().await;
}

#[tokio::test]
async fn v311_transports_dropped_mid_flow_against_our_broker() {
    let broker = OurBroker::start("v311").await;
    transports_dropped_mid_flow(broker.addr, ProtocolVersion::V3_1_1, "ours311").await;
    broker.stop().await;
}

/// mosquitto on a free port; killed when dropped.
struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// mosquitto, or `None` (with a line saying the case is skipped) when it is not installed and
/// `MQTT_INTEROP` is not set.
async fn mosquitto() -> Option<Mosquitto> {
    let program = ["mosquitto", "/usr/sbin/mosquitto"]
        .into_iter()
        .find(|p| Command::new(p).arg("-h").output().is_ok());
    let Some(program) = program else {
        assert!(
            std::env::var_os("MQTT_INTEROP").is_none(),
            "MQTT_INTEROP is set and mosquitto is not installed"
        );
        eprintln!("mosquitto not installed: the mosquitto case is skipped");
        return None;
    };
    let dir = std::env::temp_dir().join(format!("mqtt-embedded-mosquitto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let mut child = Command::new(program)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..50 {
            if TcpStream::connect(addr).await.is_ok() {
                return Some(Mosquitto { child, addr, dir });
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("mosquitto did not start");
}

#[tokio::test]
async fn v5_transports_dropped_mid_flow_against_mosquitto() {
    let Some(mosquitto) = mosquitto().await else {
        return;
    };
    transports_dropped_mid_flow(mosquitto.addr, ProtocolVersion::V5, "mosq5").await;
}

#[tokio::test]
async fn v311_transports_dropped_mid_flow_against_mosquitto() {
    let Some(mosquitto) = mosquitto().await else {
        return;
    };
    transports_dropped_mid_flow(mosquitto.addr, ProtocolVersion::V3_1_1, "mosq311").await;
}

/// A server that accepts and then says nothing: the CONNACK does not come, and the engine's
/// connect timeout ends the connection (the deadline is served while the read waits).
#[tokio::test]
async fn a_silent_server_times_the_connect_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    let mut config = ClientConfig::new(ProtocolVersion::V5, "emb-silent");
    config.connect_timeout = Some(Duration::from_millis(300));
    let mut c = MqttClient::new(config, TokioClock(tokio::time::Instant::now())).unwrap();
    let mut t = open(addr).await;
    let started = tokio::time::Instant::now();
    let result = within("connect timeout", c.connect(&mut t)).await;
    assert!(
        matches!(
            result,
            Err(Error::Disconnected {
                from_server: false,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!c.is_connected());
    server.abort();
}

/// A connection ended by `disconnect()`, or refused, leaves nothing behind that the next
/// `connect()` would take for its own end.
#[tokio::test]
async fn connect_again_after_a_disconnect_and_after_a_refusal() {
    let broker = OurBroker::start("again").await;
    let mut c = client(ProtocolVersion::V5, "emb-again");
    for round in 0..3 {
        let mut t = open(broker.addr).await;
        let present = within("CONNACK", c.connect(&mut t))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(present, round > 0, "round {round}");
        within("DISCONNECT", c.disconnect(&mut t)).await.unwrap();
        assert!(!c.is_connected());
    }
    broker.stop().await;

    // A server that refuses (CONNACK 0x87 Not authorized), twice: the second attempt is
    // refused again, not failed by what the first refusal left.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..2 {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut connect = [0u8; 256];
            let _ = socket.read(&mut connect).await.unwrap();
            socket
                .write_all(&[0x20, 0x03, 0x00, 0x87, 0x00])
                .await
                .unwrap();
        }
    });
    let mut refused = client(ProtocolVersion::V5, "emb-refused");
    for _ in 0..2 {
        let mut t = open(addr).await;
        let result = within("refusing CONNACK", refused.connect(&mut t)).await;
        assert!(
            matches!(result, Err(Error::Refused(ReasonCode(0x87)))),
            "{result:?}"
        );
        assert!(!refused.is_connected());
    }
    server.await.unwrap();
}

/// A server that plays a script over TCP: a CONNACK, then whatever `then` does with the
/// socket; it returns what the client wrote.
async fn scripted_server<F, Fut>(then: F) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = TcpStream> + Send,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut connect = [0u8; 256];
        let _ = socket.read(&mut connect).await.unwrap();
        socket
            .write_all(&[0x20, 0x03, 0x00, 0x00, 0x00])
            .await
            .unwrap();
        let mut socket = then(socket).await;
        let mut written = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(200), socket.read_to_end(&mut written))
            .await;
        written
    });
    (addr, task)
}

/// A QoS 0 PUBLISH on `t` with a one-byte payload (MQTT 5.0).
const QOS0_PUBLISH: [u8; 7] = [0x30, 0x05, 0x00, 0x01, b't', 0x00, b'x'];

/// A server that sends all the time does not starve the keep alive: PINGREQs go out on time
/// (v5 [MQTT-3.1.2-20]: the client sends a PINGREQ when it has sent nothing for Keep Alive).
#[tokio::test]
async fn mqtt_3_1_2_20_keep_alive_under_a_steady_stream_of_messages() {
    use tokio::io::AsyncWriteExt;
    let (addr, server) = scripted_server(|mut socket: TcpStream| async move {
        // Always something to read: bursts of 50 messages, 1 ms apart, for 2.5 s.
        let burst: Vec<u8> = QOS0_PUBLISH.repeat(50);
        let until = tokio::time::Instant::now() + Duration::from_millis(2_500);
        while tokio::time::Instant::now() < until {
            if socket.write_all(&burst).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        socket
    })
    .await;
    let mut config = ClientConfig::new(ProtocolVersion::V5, "emb-keepalive");
    config.keep_alive = 1;
    let mut c = MqttClient::new(config, TokioClock(tokio::time::Instant::now())).unwrap();
    let mut t = open(addr).await;
    within("CONNACK", c.connect(&mut t)).await.unwrap();
    let mut messages = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(2_400);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(500), c.receive(&mut t)).await {
            Ok(Ok(_)) => messages += 1,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break,
        }
    }
    drop(t);
    let written = server.await.unwrap();
    let pings = written.windows(2).filter(|w| *w == [0xC0, 0x00]).count();
    assert!(messages > 100, "{messages} messages");
    // (The server never answers it, so one is all the engine sends before its ping timeout.)
    assert!(pings >= 1, "no PINGREQ in 2.5 s with a Keep Alive of 1 s");
}

/// A server flooding a client that waits for something else: the call returns `Backlog`
/// once `max_kept` events wait, and every message is still there to take.
#[tokio::test]
async fn a_flood_while_waiting_is_a_backlog_error_and_loses_nothing() {
    use tokio::io::AsyncWriteExt;
    let (addr, server) = scripted_server(|mut socket: TcpStream| async move {
        for _ in 0..20 {
            socket.write_all(&QOS0_PUBLISH).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        socket
    })
    .await;
    let mut c = MqttClient::new(
        ClientConfig::new(ProtocolVersion::V5, "emb-flood"),
        TokioClock(tokio::time::Instant::now()),
    )
    .unwrap();
    c.set_max_kept(8);
    let mut t = open(addr).await;
    within("CONNACK", c.connect(&mut t)).await.unwrap();
    // Waits for a SUBACK that never comes: the messages fill the queue first.
    let filter = TopicFilter::try_from("t").unwrap();
    let result = within(
        "backlog",
        c.subscribe(
            &mut t,
            vec![(filter, SubscriptionOptions::qos(QoS::AtMostOnce))],
        ),
    )
    .await;
    assert!(matches!(result, Err(Error::Backlog)), "{result:?}");
    let mut taken = 0;
    while taken < 20 {
        within("the messages", c.receive(&mut t)).await.unwrap();
        taken += 1;
    }
    drop(t);
    let _ = server.await;
}

/// The same without tokio's help (its cooperative budget makes a ready socket pending now and
/// then, which lets the timer win a race): a transport that always has bytes, and a clock
/// that advances 10 ms per read. PINGREQs must still go out every Keep Alive.
#[tokio::test]
async fn keep_alive_with_a_transport_that_is_always_ready() {
    use std::cell::Cell;
    use std::rc::Rc;

    struct Flood {
        clock: Rc<Cell<u64>>,
        connack_sent: bool,
        written: Vec<u8>,
    }
    impl embedded_io_async::ErrorType for Flood {
        type Error = embedded_io_async::ErrorKind;
    }
    impl embedded_io_async::Read for Flood {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            self.clock.set(self.clock.get() + 10);
            let bytes: &[u8] = if self.connack_sent {
                &QOS0_PUBLISH
            } else {
                self.connack_sent = true;
                &[0x20, 0x03, 0x00, 0x00, 0x00]
            };
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Ok(n)
        }
    }
    impl embedded_io_async::Write for Flood {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    /// Reads the shared simulated time; its sleep ends only when that time has come (never
    /// while the transport keeps it busy).
    struct SimClock(Rc<Cell<u64>>);
    impl Clock for SimClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(self.0.get())
        }
        async fn sleep_until(&self, deadline: Timestamp) {
            if self.0.get() < deadline.as_millis() {
                std::future::pending::<()>().await;
            }
        }
    }

    let time = Rc::new(Cell::new(1_000_000));
    let mut t = Flood {
        clock: Rc::clone(&time),
        connack_sent: false,
        written: Vec::new(),
    };
    let mut config = ClientConfig::new(ProtocolVersion::V5, "emb-flooded");
    config.keep_alive = 5;
    let mut c = MqttClient::new(config, SimClock(Rc::clone(&time))).unwrap();
    c.connect(&mut t).await.unwrap();
    let start = time.get();
    // 100 simulated seconds of messages; the PINGRESPs never come, but a PINGREQ is due 5 s
    // after the last thing sent, so the first one goes out however busy the transport is.
    while time.get() < start + 100_000 {
        match c.receive(&mut t).await {
            Ok(_) => {}
            // (The ping timeout, with no PINGRESP: the connection ends.)
            Err(Error::Disconnected { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let pings = t.written.windows(2).filter(|w| *w == [0xC0, 0x00]).count();
    assert!(pings >= 1, "no PINGREQ in {} ms", time.get() - start);
}

/// A call dropped while its write waits (raced against other work) loses nothing: the bytes
/// it had pulled go first on the next call, and the stream stays whole.
#[tokio::test]
async fn a_call_dropped_mid_write_loses_nothing() {
    /// Writes at most 3 bytes at a time; when `stall_after` is `Some(n)`, the write after the
    /// next `n` never completes.
    struct Slow {
        stall_after: Option<usize>,
        stalled: bool,
        written: Vec<u8>,
        script: std::collections::VecDeque<u8>,
    }
    impl embedded_io_async::ErrorType for Slow {
        type Error = embedded_io_async::ErrorKind;
    }
    impl embedded_io_async::Read for Slow {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            if self.script.is_empty() {
                std::future::pending::<()>().await;
            }
            let n = self.script.len().min(buf.len());
            for b in buf.iter_mut().take(n) {
                *b = self.script.pop_front().unwrap();
            }
            Ok(n)
        }
    }
    impl embedded_io_async::Write for Slow {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            match self.stall_after {
                Some(0) => {
                    self.stall_after = None;
                    self.stalled = true;
                    std::future::pending::<()>().await;
                }
                Some(n) => self.stall_after = Some(n - 1),
                None => {}
            }
            let n = buf.len().min(3);
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    let mut t = Slow {
        stall_after: None,
        stalled: false,
        written: Vec::new(),
        script: [0x20, 0x03, 0x00, 0x00, 0x00].into_iter().collect(),
    };
    let mut c = MqttClient::with_buffers(
        ClientConfig::new(ProtocolVersion::V5, "emb-slow"),
        TokioClock(tokio::time::Instant::now()),
        64,
        8,
    )
    .unwrap();
    c.connect(&mut t).await.unwrap();
    let connect_len = t.written.len();
    let message = |i: u8| {
        let mut m = Publish::new(TopicName::try_from("a/b").unwrap(), vec![i; 20]);
        m.qos = QoS::AtLeastOnce;
        m
    };
    // The first publish stalls in its second write (after 3 bytes) and is dropped there.
    t.stall_after = Some(1);
    let first =
        tokio::time::timeout(Duration::from_millis(50), c.publish(&mut t, message(1))).await;
    assert!(first.is_err(), "the write should have stalled");
    assert!(t.stalled);
    // The next call writes what the dropped one had pulled, then its own.
    c.publish(&mut t, message(2)).await.unwrap();
    let mut decoder = mqtt_session::codec::Decoder::with_version(ProtocolVersion::V5);
    let mut stream = bytes::BytesMut::from(&t.written[connect_len..]);
    let mut payloads = Vec::new();
    while let Some(packet) = decoder.decode(&mut stream).unwrap() {
        if let mqtt_session::codec::Packet::Publish(p) = packet {
            payloads.push(p.payload[0]);
        }
    }
    assert!(stream.is_empty(), "a packet was cut: {stream:?}");
    assert_eq!(payloads, [1, 2], "both messages, whole and in order");
}
