//! The broker binary (`mqtt-broker`) run as a program, driven over TCP by a tiny blocking
//! client on the codec: CONNECT/CONNACK, a QoS 1 round trip, a persistent session's offline
//! queue, the ACL, and what survives a SIGKILL (persist, then send) and a graceful stop.
//!
//! Cargo builds the binary before the integration tests (`CARGO_BIN_EXE_mqtt-broker`). Every
//! socket read has a timeout and every broker process is killed when its handle drops, so a
//! failure never hangs the run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // a real process on a real clock: the test waits for it

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};

use bytes::{Bytes, BytesMut};
use mqtt_session::codec::{
    ConnAck, Connect, Decoder, Disconnect, Packet, PacketId, ProtocolVersion, PubAck, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions, TopicFilter, TopicName, Utf8String,
};

// The broker process, its data directory and the step timeout, shared with `interop.rs`.
#[allow(dead_code)]
#[path = "support/broker_process.rs"]
mod broker_process;
#[allow(dead_code)]
#[path = "support/tempdir.rs"]
mod tempdir;

use broker_process::{Broker, STEP, TempDir, binary};

/// A blocking MQTT 5.0 client on a `TcpStream`, every read bounded by [`STEP`].
struct Client {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    /// Packets received while waiting for another one (a PUBLISH that overtook a PUBACK).
    pending: VecDeque<Packet>,
}

impl Client {
    /// Connects, sends `connect` and returns the client and its CONNACK.
    fn connect(broker: &Broker, connect: Connect) -> (Self, ConnAck) {
        let stream = TcpStream::connect_timeout(&broker.addr, STEP).expect("connect to the broker");
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        let mut client = Self {
            stream,
            decoder: Decoder::with_version(ProtocolVersion::V5),
            buf: BytesMut::new(),
            pending: VecDeque::new(),
        };
        client.send(connect);
        match client.recv() {
            Packet::ConnAck(ack) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, packet: impl Into<Packet>) {
        let mut wire = BytesMut::new();
        packet
            .into()
            .encode(ProtocolVersion::V5, &mut wire)
            .unwrap();
        self.stream.write_all(&wire).unwrap();
    }

    /// The next packet from the broker (panics after [`STEP`] without one).
    fn recv(&mut self) -> Packet {
        if let Some(packet) = self.pending.pop_front() {
            return packet;
        }
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).expect("a valid packet") {
                return packet;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("no packet from the broker within {STEP:?}: {e}"),
            }
        }
    }

    fn recv_publish(&mut self) -> Publish {
        match self.recv() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// SUBSCRIBE and its SUBACK's reason codes.
    fn subscribe(&mut self, id: u16, filter: &str, qos: QoS) -> Vec<ReasonCode> {
        self.send(Subscribe {
            packet_id: pid(id),
            properties: Default::default(),
            filters: vec![(
                TopicFilter::try_from(filter).unwrap(),
                SubscriptionOptions::qos(qos),
            )],
        });
        match self.recv() {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                ..
            }) => {
                assert_eq!(packet_id, pid(id));
                reason_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// A QoS 1 PUBLISH and its PUBACK's reason code.
    fn publish_qos1(
        &mut self,
        id: u16,
        topic: &str,
        payload: &'static [u8],
        retain: bool,
    ) -> ReasonCode {
        let mut p = Publish::new(
            TopicName::try_from(topic).unwrap(),
            Bytes::from_static(payload),
        );
        p.qos = QoS::AtLeastOnce;
        p.packet_id = Some(pid(id));
        p.retain = retain;
        self.send(p);
        // The broker may send this client a PUBLISH first (when it is subscribed itself).
        let mut overtaking = Vec::new();
        let code = loop {
            match self.recv() {
                Packet::PubAck(ack) => {
                    assert_eq!(ack.packet_id, pid(id));
                    break ack.reason_code;
                }
                Packet::Publish(p) => overtaking.push(Packet::Publish(p)),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        };
        self.pending.extend(overtaking);
        code
    }

    /// DISCONNECT (normal), then waits until the broker has closed the connection, so that
    /// everything this client sent has been handled.
    fn disconnect(mut self) {
        self.send(Disconnect::new(ReasonCode::SUCCESS));
        self.expect_closed();
    }

    fn expect_closed(&mut self) {
        let mut chunk = [0u8; 256];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => panic!("the broker did not close the connection: {e}"),
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// CONNECT (MQTT 5.0) with Clean Start and Session Expiry as given, keep alive off.
fn connect(client_id: &str, clean_start: bool, session_expiry: Option<u32>) -> Connect {
    let mut c = Connect::new(
        ProtocolVersion::V5,
        Utf8String::try_from(client_id).unwrap(),
    );
    c.clean_start = clean_start;
    c.keep_alive = 0;
    c.properties.session_expiry_interval = session_expiry;
    c
}

#[track_caller]
fn assert_accepted(ack: &ConnAck, session_present: bool) {
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack.session_present, session_present);
}

#[track_caller]
fn assert_publish(p: &Publish, topic: &str, payload: &[u8], qos: QoS) {
    assert_eq!(&*p.topic, topic);
    assert_eq!(&p.payload[..], payload);
    assert_eq!(p.qos, qos);
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(binary()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--max-keep-alive",
        "--receive-maximum",
        "--max-packet-size",
        "--topic-alias-maximum",
        "--max-inflight",
        "--max-queued-messages",
        "--max-queued-bytes",
        "--max-session-expiry",
        "--queue-qos0",
        "--max-connection-backlog",
        "--stuck-after-ms",
        "--disconnect-stuck-after",
        "--acl",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

// v5 [MQTT-3.2.0-1] [MQTT-3.3.4-1] [MQTT-4.3.2-4]
#[test]
fn connect_subscribe_and_a_qos1_round_trip() {
    let dir = TempDir::new("roundtrip");
    let broker = Broker::start(&dir);
    assert!(
        broker
            .restored
            .starts_with("restored 0 sessions and 0 retained messages"),
        "{}",
        broker.restored
    );

    let (mut sub, ack) = Client::connect(&broker, connect("sub", true, None));
    assert_accepted(&ack, false);
    assert_eq!(
        sub.subscribe(1, "t/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );

    let (mut publisher, ack) = Client::connect(&broker, connect("pub", true, None));
    assert_accepted(&ack, false);
    assert_eq!(
        publisher.publish_qos1(7, "t/a", b"hello", false),
        ReasonCode::SUCCESS
    );

    let got = sub.recv_publish();
    assert_publish(&got, "t/a", b"hello", QoS::AtLeastOnce);
    sub.send(PubAck::new(got.packet_id.unwrap()));
    sub.disconnect();
    publisher.disconnect();
    let log = broker.log();
    assert!(log.contains("client connected, session created"), "{log}");
    assert!(log.contains("client disconnected"), "{log}");
}

// v5 [MQTT-3.1.2-23] [MQTT-3.2.2-3]: a session with Session Expiry is kept, with its queue,
// while the client is away — and across a SIGKILL of the broker.
#[test]
fn a_persistent_session_and_a_retained_message_survive_sigkill() {
    let dir = TempDir::new("sigkill");
    let broker = Broker::start(&dir);

    let (mut p1, ack) = Client::connect(&broker, connect("p1", true, Some(300)));
    assert_accepted(&ack, false);
    assert_eq!(
        p1.subscribe(1, "q/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    p1.disconnect();

    let (mut publisher, ack) = Client::connect(&broker, connect("pub", true, None));
    assert_accepted(&ack, false);
    assert!(
        !publisher
            .publish_qos1(1, "q/1", b"while offline", false)
            .is_error()
    );

    // Back online: the session is there and delivers what was published meanwhile.
    let (mut p1, ack) = Client::connect(&broker, connect("p1", false, Some(300)));
    assert_accepted(&ack, true);
    let got = p1.recv_publish();
    assert_publish(&got, "q/1", b"while offline", QoS::AtLeastOnce);
    p1.send(PubAck::new(got.packet_id.unwrap()));
    p1.disconnect();

    // Acknowledged by the broker, then the broker is killed: both must survive.
    assert!(
        !publisher
            .publish_qos1(2, "q/2", b"before the kill", false)
            .is_error()
    );
    assert!(!publisher.publish_qos1(3, "r/1", b"kept", true).is_error());
    drop(publisher);
    broker.kill();

    let broker = Broker::start(&dir);
    assert!(
        broker
            .restored
            .starts_with("restored 1 sessions and 1 retained messages"),
        "{}",
        broker.restored
    );
    let (mut p1, ack) = Client::connect(&broker, connect("p1", false, Some(300)));
    assert_accepted(&ack, true);
    // The first message was acknowledged before the kill: only the second comes.
    let got = p1.recv_publish();
    assert_publish(&got, "q/2", b"before the kill", QoS::AtLeastOnce);
    p1.send(PubAck::new(got.packet_id.unwrap()));

    let (mut other, ack) = Client::connect(&broker, connect("other", true, None));
    assert_accepted(&ack, false);
    assert_eq!(
        other.subscribe(1, "r/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    let got = other.recv_publish();
    assert_publish(&got, "r/1", b"kept", QoS::AtLeastOnce);
    assert!(got.retain);
    other.send(PubAck::new(got.packet_id.unwrap()));
    other.disconnect();
    p1.disconnect();

    // A graceful stop saves the state as well, and exits 0.
    let status = broker.terminate();
    assert!(status.success(), "{status:?}");
    let broker = Broker::start(&dir);
    assert!(
        broker
            .restored
            .starts_with("restored 1 sessions and 1 retained messages"),
        "{}",
        broker.restored
    );
    let (p1, ack) = Client::connect(&broker, connect("p1", false, Some(300)));
    assert_accepted(&ack, true);
    p1.disconnect();
}

// v5 [MQTT-3.9.3-1]: the ACL's refusals are Not authorized (0x87).
#[test]
fn the_acl_decides_on_publish_subscribe_and_delivery() {
    let dir = TempDir::new("acl");
    let acl = dir.path().join("acl.txt");
    std::fs::write(
        &acl,
        "# alice owns alice/; everyone reads public/\n\
         default deny\n\
         allow subscribe public/#\n\
         user alice\n\
         allow both alice/#\n\
         allow publish public/#\n",
    )
    .unwrap();
    let broker = Broker::start_with(&dir, &["--acl", acl.to_str().unwrap()]);

    let mut c = connect("alice-1", true, None);
    c.username = Some(Utf8String::try_from("alice").unwrap());
    let (mut alice, ack) = Client::connect(&broker, c);
    assert_accepted(&ack, false);
    assert_eq!(
        alice.subscribe(1, "alice/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    // No topic of `private/#` may be read: refused.
    assert_eq!(
        alice.subscribe(2, "private/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        alice.publish_qos1(3, "private/news", b"x", false),
        ReasonCode::NOT_AUTHORIZED
    );

    let (mut anon, ack) = Client::connect(&broker, connect("anon", true, None));
    assert_accepted(&ack, false);
    assert_eq!(
        anon.subscribe(1, "alice/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    // Wider than what anon may read: granted, and each message is checked on delivery.
    assert_eq!(
        anon.subscribe(2, "#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        anon.publish_qos1(3, "alice/inbox", b"x", false),
        ReasonCode::NOT_AUTHORIZED
    );

    assert!(
        !alice
            .publish_qos1(4, "alice/inbox", b"mine", false)
            .is_error()
    );
    let got = alice.recv_publish();
    assert_publish(&got, "alice/inbox", b"mine", QoS::AtLeastOnce);
    alice.send(PubAck::new(got.packet_id.unwrap()));
    assert!(
        !alice
            .publish_qos1(5, "public/news", b"for all", false)
            .is_error()
    );
    // anon's `#` withheld alice/inbox: the first message it gets is public/news.
    let got = anon.recv_publish();
    assert_publish(&got, "public/news", b"for all", QoS::AtLeastOnce);
    anon.send(PubAck::new(got.packet_id.unwrap()));
    alice.disconnect();
    anon.disconnect();
    let log = broker.log();
    assert!(log.contains("subscribe denied by the ACL"), "{log}");
}

#[test]
fn a_bad_acl_file_stops_the_broker_with_its_line() {
    let dir = TempDir::new("bad-acl");
    let acl = dir.path().join("acl.txt");
    std::fs::write(&acl, "default deny\nallow publish a/#/b\n").unwrap();
    let out = Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--acl")
        .arg(&acl)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The file, the line, and the rule broken.
    assert!(stderr.contains("acl.txt:2: ACL: "), "{stderr}");
    assert!(stderr.contains("[MQTT-4.7.1-1]"), "{stderr}");
}
