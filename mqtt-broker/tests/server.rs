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
        "--maximum-qos",
        "--retain-available",
        "--wildcard-subscriptions",
        "--subscription-identifiers",
        "--shared-subscriptions",
        "--acl",
        "--config",
        "--password-file",
        "--allow-anonymous",
        "--tls-listen",
        "--ws-listen",
        "--wss-listen",
        "--cert",
        "--key",
        "--client-ca",
        "--require-certificate",
        "--use-identity-as-username",
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
    // alice's block holds for alice authenticated by the password file; others connect
    // anonymously.
    let file = password_file(&dir);
    let broker = Broker::start_with(
        &dir,
        &[
            "--acl",
            acl.to_str().unwrap(),
            "--password-file",
            file.to_str().unwrap(),
            "--allow-anonymous",
        ],
    );

    let (mut alice, ack) = Client::connect(
        &broker,
        login("alice-1", Some("alice"), Some("s3cret pass")),
    );
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

/// Users written by mosquitto_passwd 2.0.11: alice (`$7$`, PBKDF2-SHA512, its default) and
/// carol (`-H sha512`, `$6$`).
const MOSQUITTO_USERS: &str = "\
alice:$7$101$MpyJtC/KYDhadpcj$hp/cfLjqCsqgDEgQ9lrhIvuzV9mvYxL1Wt1FByfurj8hjzTrGHAtHEo1pUK67wz3H/hPdwnAWvmoJtz5yeyJWw==
carol:$6$ENC6B/jgshGbcaqN$kGzKXpF48vxB/lh+pLGlsZ3zC/4geWOx0bTlUWv1v205DuoH1M/IKyKlgSQanms3wKcrhJX6swzpLakaT8y5ww==
";

/// `mqtt-broker passwd FILE USER`, the password on standard input.
fn passwd(file: &std::path::Path, user: &str, password: &str) {
    let mut child = Command::new(binary())
        .arg("passwd")
        .arg(file)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A password file with alice and carol from mosquitto_passwd, and dave from
/// `mqtt-broker passwd` (argon2id).
fn password_file(dir: &TempDir) -> std::path::PathBuf {
    let file = dir.path().join("passwd");
    std::fs::write(&file, MOSQUITTO_USERS).unwrap();
    passwd(&file, "dave", "dave's pass");
    file
}

/// CONNECT (MQTT 5.0) with a User Name and Password.
fn login(client_id: &str, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut c = connect(client_id, true, None);
    c.username = user.map(|u| Utf8String::try_from(u).unwrap());
    c.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    c
}

/// The CONNACK of an MQTT 3.1.1 CONNECT with this User Name and Password, as sent: its four
/// bytes (the codec would map the return code to a 5.0 reason code).
fn connack_v311(broker: &Broker, user: Option<&str>, password: Option<&str>) -> [u8; 4] {
    let mut c = Connect::new(ProtocolVersion::V3_1_1, Utf8String::try_from("v3").unwrap());
    c.keep_alive = 0;
    c.username = user.map(|u| Utf8String::try_from(u).unwrap());
    c.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    let mut wire = BytesMut::new();
    Packet::Connect(Box::new(c))
        .encode(ProtocolVersion::V3_1_1, &mut wire)
        .unwrap();
    let mut stream = TcpStream::connect_timeout(&broker.addr, STEP).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(&wire).unwrap();
    let mut ack = [0u8; 4];
    stream.read_exact(&mut ack).unwrap();
    ack
}

// v5 [MQTT-3.1.4-2] [MQTT-3.2.2-6] [MQTT-3.2.2-7]: a refused CONNECT gets a CONNACK with the
// reason (Session Present 0), and the connection is closed.
#[test]
fn a_password_file_decides_who_connects() {
    let dir = TempDir::new("passwords");
    let file = password_file(&dir);
    let broker = Broker::start_with(&dir, &["--password-file", file.to_str().unwrap()]);
    let refused = |user: Option<&str>, password: Option<&str>, code: ReasonCode| {
        let (mut c, ack) = Client::connect(&broker, login("x", user, password));
        assert_eq!(ack.reason_code, code, "{user:?} / {password:?}");
        c.expect_closed();
    };
    // The users of mosquitto_passwd ($7$, $6$) and of `mqtt-broker passwd` (argon2id).
    for (user, password) in [
        ("alice", "s3cret pass"),
        ("carol", "pässwörd"),
        ("dave", "dave's pass"),
    ] {
        let (c, ack) = Client::connect(&broker, login(user, Some(user), Some(password)));
        assert_accepted(&ack, false);
        c.disconnect();
    }
    // A wrong password, an unknown user, a User Name alone: 0x86.
    refused(
        Some("alice"),
        Some("hunter2"),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
    );
    refused(
        Some("mallory"),
        Some("s3cret pass"),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
    );
    refused(Some("alice"), None, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // No User Name: anonymous, refused with 0x87.
    refused(None, None, ReasonCode::NOT_AUTHORIZED);
    // MQTT 3.1.1: return codes 0x04 (bad user name or password) and 0x05 (not authorized).
    // v311 [MQTT-3.2.2-4]: Session Present 0 with a non-zero return code.
    assert_eq!(
        connack_v311(&broker, Some("alice"), Some("nope")),
        [0x20, 0x02, 0x00, 0x04]
    );
    assert_eq!(connack_v311(&broker, None, None), [0x20, 0x02, 0x00, 0x05]);
    assert_eq!(
        connack_v311(&broker, Some("carol"), Some("pässwörd")),
        [0x20, 0x02, 0x00, 0x00]
    );
    let log = broker.log();
    assert!(log.contains("password check failed"), "{log}");
    // Passwords never reach the log.
    for secret in ["hunter2", "s3cret pass", "pässwörd", "nope"] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
    drop(broker);

    // --allow-anonymous: no User Name is let in; a User Name still needs its password.
    let broker = Broker::start_with(
        &dir,
        &[
            "--password-file",
            file.to_str().unwrap(),
            "--allow-anonymous",
        ],
    );
    let (c, ack) = Client::connect(&broker, login("anon", None, None));
    assert_accepted(&ack, false);
    c.disconnect();
    let (mut c, ack) = Client::connect(&broker, login("x", Some("alice"), Some("bad")));
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    c.expect_closed();
}

/// The README's issue: with an ACL block for `admin` and no password check, anyone could say
/// "admin". Now `user` blocks hold only for authenticated users.
#[test]
fn acl_user_blocks_hold_only_for_authenticated_users() {
    let dir = TempDir::new("acl-users");
    let file = password_file(&dir);
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "default deny\nuser alice\nallow both secret/#\nuser *\nallow both public/#\n\
         pattern allow both devices/%c/#\n",
    )
    .unwrap();
    let acl = acl.to_str().unwrap();

    // No password file: "alice" is not verified, so alice's block does not apply.
    let broker = Broker::start_with(&dir, &["--acl", acl]);
    let (mut c, ack) = Client::connect(&broker, login("x", Some("alice"), None));
    assert_accepted(&ack, false);
    assert_eq!(
        c.subscribe(1, "secret/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        c.subscribe(2, "public/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    c.disconnect();
    assert!(
        broker.log().contains("User Names are not verified"),
        "{}",
        broker.log()
    );
    drop(broker);

    // With the password file: alice, authenticated, may; carol may not; a pattern gives each
    // client its own subtree.
    let broker = Broker::start_with(
        &dir,
        &["--acl", acl, "--password-file", file.to_str().unwrap()],
    );
    let (mut a, ack) = Client::connect(&broker, login("a1", Some("alice"), Some("s3cret pass")));
    assert_accepted(&ack, false);
    assert_eq!(
        a.subscribe(1, "secret/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    let (mut c, ack) = Client::connect(&broker, login("c1", Some("carol"), Some("pässwörd")));
    assert_accepted(&ack, false);
    assert_eq!(
        c.subscribe(1, "secret/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        c.publish_qos1(2, "secret/x", b"no", false),
        ReasonCode::NOT_AUTHORIZED
    );
    assert!(
        !c.publish_qos1(3, "devices/c1/temp", b"21", false)
            .is_error()
    );
    assert_eq!(
        c.publish_qos1(4, "devices/a1/temp", b"no", false),
        ReasonCode::NOT_AUTHORIZED
    );
    assert!(!a.publish_qos1(2, "secret/plan", b"yes", false).is_error());
    assert_publish(&a.recv_publish(), "secret/plan", b"yes", QoS::AtLeastOnce);
    a.disconnect();
    c.disconnect();
}

/// SIGHUP reloads the password file and the ACL without dropping connections; a reload that
/// fails keeps the old files.
#[test]
fn sighup_reloads_passwords_and_acl() {
    let dir = TempDir::new("sighup");
    let file = password_file(&dir);
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "default deny\nallow both a/#\n").unwrap();
    let broker = Broker::start_with(
        &dir,
        &[
            "--acl",
            acl.to_str().unwrap(),
            "--password-file",
            file.to_str().unwrap(),
        ],
    );
    let hup = |broker: &Broker| {
        let status = Command::new("kill")
            .args(["-HUP", &broker.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let (mut kept, ack) =
        Client::connect(&broker, login("kept", Some("alice"), Some("s3cret pass")));
    assert_accepted(&ack, false);
    assert_eq!(
        kept.subscribe(1, "b/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    let (mut c, ack) = Client::connect(&broker, login("e", Some("erin"), Some("new")));
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    c.expect_closed();

    passwd(&file, "erin", "new");
    std::fs::write(&acl, "default deny\nallow both a/#\nallow both b/#\n").unwrap();
    hup(&broker);
    broker.wait_for_log(&["SIGHUP: reloaded"], 1);
    let (c, ack) = Client::connect(&broker, login("e", Some("erin"), Some("new")));
    assert_accepted(&ack, false);
    c.disconnect();
    // The connection from before the reload is still there, under the new rules.
    assert_eq!(
        kept.subscribe(2, "b/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );

    // A broken file: logged, and the old ones stay.
    std::fs::write(&file, "erin\n").unwrap();
    hup(&broker);
    broker.wait_for_log(&["reload failed", "passwd:1"], 1);
    let (c, ack) = Client::connect(&broker, login("e", Some("erin"), Some("new")));
    assert_accepted(&ack, false);
    c.disconnect();
    kept.disconnect();
}

/// A bad configuration stops the start with the file, the line and the key.
#[test]
fn configuration_errors_name_file_line_and_key() {
    let dir = TempDir::new("config-errors");
    let run = |extra: &[&str]| {
        let out = Command::new(binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let config = dir.path().join("broker.toml");
    let config_arg = config.to_str().unwrap();
    for (text, expected) in [
        (
            "listen = \"127.0.0.1:0\"\nreceive_maximun = 5\n",
            "broker.toml:2: `receive_maximun`: unknown field",
        ),
        (
            "# limits\nmax_inflight = 0\n",
            "broker.toml:2: `max_inflight`: must be at least 1",
        ),
        (
            "max_keep_alive = \"ten\"\n",
            "broker.toml:1: `max_keep_alive`: invalid type",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let stderr = run(&["--config", config_arg]);
        assert!(stderr.contains(expected), "{text:?}:\n{stderr}");
    }
    let stderr = run(&[
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("missing.toml: cannot read the file"),
        "{stderr}"
    );
    // The files a setting names are checked too.
    std::fs::write(&config, "password_file = \"passwd\"\n").unwrap();
    std::fs::write(dir.path().join("passwd"), "alice:plain\n").unwrap();
    let stderr = run(&["--config", config_arg]);
    assert!(
        stderr.contains("passwd:1: password file: user \"alice\": a plain-text password"),
        "{stderr}"
    );
}

/// Settings from the file are used, and a flag overrides its key.
#[test]
fn the_configuration_file_is_used_and_flags_override_it() {
    let dir = TempDir::new("config");
    let file = password_file(&dir);
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "password_file = {:?}\nallow_anonymous = false\nreceive_maximum = 1\n",
            file.to_str().unwrap()
        ),
    )
    .unwrap();
    let broker = Broker::start_with(
        &dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "--receive-maximum",
            "7",
        ],
    );
    // From the file: anonymous refused.
    let (mut c, ack) = Client::connect(&broker, login("x", None, None));
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    c.expect_closed();
    // From the flag: Receive Maximum 7, not the file's 1.
    let (c, ack) = Client::connect(&broker, login("d", Some("dave"), Some("dave's pass")));
    assert_accepted(&ack, false);
    assert_eq!(
        ack.properties.receive_maximum.map(std::num::NonZero::get),
        Some(7)
    );
    c.disconnect();
}

/// Every packet the broker sends until it closes the connection; panics if the connection is
/// reset instead of closed (the client would lose what it had not read yet).
fn read_until_closed(stream: &mut TcpStream) -> Vec<Packet> {
    let mut decoder = Decoder::with_version(ProtocolVersion::V5);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    loop {
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            packets.push(p);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return packets,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("after {packets:?}: {e}"),
        }
    }
}

// v5 [MQTT-3.3.4-9] [MQTT-4.13.2-1]: a client that exceeds the Receive Maximum gets DISCONNECT
// 0x93 and the connection closes. The broker shuts its side and drains what the client still
// sends, so the client reads the DISCONNECT instead of a reset (Paho's flow_control2).
#[test]
fn an_error_disconnect_is_read_by_a_client_that_keeps_writing() {
    let dir = TempDir::new("graceful-close");
    let broker = Broker::start_with(&dir, &["--receive-maximum", "2"]);
    let (mut c, ack) = Client::connect(&broker, connect("flood", true, None));
    assert_accepted(&ack, false);
    // QoS 2 PUBLISHes never released: each stays unacknowledged towards the broker.
    let qos2 = |id: u16| {
        let mut p = Publish::new(TopicName::try_from("t").unwrap(), Bytes::from_static(b"x"));
        p.qos = QoS::ExactlyOnce;
        p.packet_id = Some(pid(id));
        let mut wire = BytesMut::new();
        Packet::Publish(p)
            .encode(ProtocolVersion::V5, &mut wire)
            .unwrap();
        wire
    };
    let mut burst = BytesMut::new();
    for id in 1..=3 {
        burst.extend_from_slice(&qos2(id));
    }
    c.stream.write_all(&burst).unwrap();
    // The broker has sent its DISCONNECT by now; the client, which has not read yet, goes on
    // writing (as Paho's flow_control2 does). Its writes must not fail: a socket closed at once
    // answers them with a reset, and the client's next write fails (EPIPE) before it ever
    // reads the DISCONNECT.
    std::thread::sleep(std::time::Duration::from_millis(200));
    for id in 4..50 {
        c.stream
            .write_all(&qos2(id))
            .unwrap_or_else(|e| panic!("write {id} after the broker's DISCONNECT: {e}"));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let got = read_until_closed(&mut c.stream);
    let disconnect = got
        .iter()
        .find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.reason_code),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no DISCONNECT in {got:?}"));
    assert_eq!(disconnect, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
}

/// `--max-connections`: beyond it, a new connection is closed at once (and logged); the
/// others are not affected, and a place that frees up is taken again.
#[test]
fn max_connections_refuses_the_extra_connection() {
    let dir = TempDir::new("max-connections");
    let broker = Broker::start_with(&dir, &["--max-connections", "2"]);
    let (a, ack) = Client::connect(&broker, connect("a", true, None));
    assert_accepted(&ack, false);
    let (b, ack) = Client::connect(&broker, connect("b", true, None));
    assert_accepted(&ack, false);
    let mut third = TcpStream::connect_timeout(&broker.addr, STEP).unwrap();
    third.set_read_timeout(Some(STEP)).unwrap();
    let mut byte = [0u8; 1];
    // Closed without a byte (a reset is fine too: nothing was read from it).
    assert!(matches!(third.read(&mut byte), Ok(0) | Err(_)));
    broker.wait_for_log(&["too many connections"], 1);
    a.disconnect();
    let (c, ack) = Client::connect(&broker, connect("c", true, None));
    assert_accepted(&ack, false);
    b.disconnect();
    c.disconnect();
}

/// `$SYS/broker/...`: the broker's statistics, retained, updated every `--sys-interval`.
#[test]
fn sys_topics_report_the_broker() {
    let dir = TempDir::new("sys");
    let broker = Broker::start_with(&dir, &["--sys-interval", "1"]);
    let (mut publisher, ack) = Client::connect(&broker, connect("p", true, None));
    assert_accepted(&ack, false);
    assert!(!publisher.publish_qos1(1, "t/1", b"one", false).is_error());
    let (mut s, ack) = Client::connect(&broker, connect("s", true, None));
    assert_accepted(&ack, false);
    // A wildcard at the first level does not match `$SYS` (MQTT-4.7.2-1): `$SYS/#` does.
    assert_eq!(
        s.subscribe(1, "$SYS/broker/#", QoS::AtMostOnce),
        [ReasonCode::GRANTED_QOS_0]
    );
    let mut seen = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + STEP;
    // Until an update counts both clients and the PUBLISH received.
    while seen
        .get("$SYS/broker/clients/connected")
        .map(String::as_str)
        != Some("2")
        || seen
            .get("$SYS/broker/messages/received")
            .map(String::as_str)
            != Some("1")
    {
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        let p = s.recv_publish();
        seen.insert(
            p.topic.to_string(),
            String::from_utf8(p.payload.to_vec()).unwrap(),
        );
    }
    assert!(
        seen["$SYS/broker/version"].starts_with("mqtt-broker "),
        "{seen:?}"
    );
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"), "{seen:?}");
    for topic in [
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/messages/sent",
    ] {
        assert!(seen[topic].parse::<u64>().is_ok(), "{topic}: {seen:?}");
    }
    publisher.disconnect();
    s.disconnect();
}

/// With a password file, a session belongs to its user: another user's CONNECT with the same
/// Client Identifier is refused (0x87), and the session keeps what was queued for its user.
/// v5 [MQTT-3.1.4-2]
#[test]
fn another_user_cannot_take_a_session() {
    let dir = TempDir::new("session-owner");
    let file = password_file(&dir);
    let broker = Broker::start_with(&dir, &["--password-file", file.to_str().unwrap()]);
    let mut c = login("phone", Some("alice"), Some("s3cret pass"));
    c.properties.session_expiry_interval = Some(300);
    let (mut alice, ack) = Client::connect(&broker, c);
    assert_accepted(&ack, false);
    assert_eq!(
        alice.subscribe(1, "inbox/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    alice.disconnect();
    let (mut carol, ack) = Client::connect(&broker, login("p", Some("carol"), Some("pässwörd")));
    assert_accepted(&ack, false);
    assert!(
        !carol
            .publish_qos1(1, "inbox/1", b"for alice", false)
            .is_error()
    );
    carol.disconnect();

    for clean_start in [false, true] {
        let mut c = login("phone", Some("dave"), Some("dave's pass"));
        c.clean_start = clean_start;
        let (mut dave, ack) = Client::connect(&broker, c);
        assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
        dave.expect_closed();
    }
    let mut c = login("phone", Some("alice"), Some("s3cret pass"));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    let (mut alice, ack) = Client::connect(&broker, c);
    assert_accepted(&ack, true);
    assert_publish(
        &alice.recv_publish(),
        "inbox/1",
        b"for alice",
        QoS::AtLeastOnce,
    );
}
