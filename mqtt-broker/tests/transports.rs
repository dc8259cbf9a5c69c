//! The broker binary's TLS and WebSocket listeners (`--tls-listen`, `--ws-listen`,
//! `--wss-listen`), driven by blocking clients on the codec: rustls over a `TcpStream` for TLS,
//! tungstenite for WebSocket. The certificates are made for each test with rcgen: a CA, a
//! server certificate for 127.0.0.1 and localhost, client certificates the CA signed (Common
//! Names `alice`, `bob`), and an untrusted self-signed one that claims to be `alice`.
//!
//! Real clients (paho-mqtt over WebSocket and WebSocket over TLS, mosquitto_sub over TCP) run
//! only with `MQTT_INTEROP=1`, as in `interop.rs`. Every read has a timeout and every process is
//! killed when its handle drops, so a failure never hangs the run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // real processes on a real clock: the tests wait for them

#[allow(dead_code)]
#[path = "support/broker_process.rs"]
mod broker_process;
#[allow(dead_code)]
#[path = "support/proc.rs"]
mod proc;
#[allow(dead_code)]
#[path = "support/tempdir.rs"]
mod tempdir;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_process::{Broker, STEP, TempDir, binary};
use bytes::{Bytes, BytesMut};
use mqtt_session::codec::{
    ConnAck, Connect, Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
    Subscribe, SubscriptionOptions, TopicFilter, TopicName, Utf8String,
};
use proc::Proc;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

// ---------------------------------------------------------------------------------------------
// Certificates

/// The test PKI, as PEM files in a directory.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "mqtt-broker test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |name: &str, sans: Vec<String>, cn: &str, usage| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
        };
        leaf(
            "server",
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        for cn in ["alice", "bob"] {
            leaf(cn, Vec::new(), cn, ExtendedKeyUsagePurpose::ClientAuth);
        }
        // Self-signed, with a trusted user's name.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "alice");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("untrusted.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("untrusted-key.pem"), key.serialize_pem()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// `--cert … --key …` of the server.
    fn server_args(&self) -> Vec<String> {
        vec![
            "--cert".to_owned(),
            self.path("server.pem"),
            "--key".to_owned(),
            self.path("server-key.pem"),
        ]
    }

    /// A client configuration trusting the test CA, with the client certificate `name`
    /// (`alice`, `bob`, `untrusted`) if given, for these TLS versions.
    fn client_config(
        &self,
        cert: Option<&str>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.dir.join("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
        let config = match cert {
            Some(name) => {
                let chain = CertificateDer::pem_file_iter(self.dir.join(format!("{name}.pem")))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let key =
                    PrivateKeyDer::from_pem_file(self.dir.join(format!("{name}-key.pem"))).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

const BOTH_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

// ---------------------------------------------------------------------------------------------
// Streams

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TCP connection to `addr`, every read and write bounded by [`STEP`].
fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, STEP).expect("connect to the broker");
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    stream
}

/// A TLS connection to `addr` as `localhost` (the handshake completes on the first read or
/// write).
fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    rustls::StreamOwned::new(conn, tcp(addr))
}

/// A WebSocket connection to `url` offering the `mqtt` subprotocol, over `stream`.
fn websocket<S: Read + Write>(stream: S, url: &str) -> WebSocket<S> {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (socket, response) = tungstenite::client(request, stream)
        .unwrap_or_else(|e| panic!("WebSocket upgrade of {url} failed: {e}"));
    // The server selects `mqtt`.
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "mqtt"
    );
    socket
}

/// A WebSocket as a byte stream: each write is one binary frame; reads return the payloads of
/// binary frames (a close frame is the end of the stream; a text frame is an error).
struct WsBytes<S: Read + Write> {
    socket: WebSocket<S>,
    inbox: Bytes,
}

impl<S: Read + Write> WsBytes<S> {
    fn new(socket: WebSocket<S>) -> Self {
        Self {
            socket,
            inbox: Bytes::new(),
        }
    }
}

impl<S: Read + Write> Read for WsBytes<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.inbox.is_empty() {
            match self.socket.read() {
                Ok(Message::Binary(data)) => self.inbox = data,
                Ok(Message::Close(_)) => return Ok(0),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Text(t)) => panic!("text frame from the broker: {t}"),
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(0);
                }
                Err(tungstenite::Error::Io(e)) => return Err(e),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.inbox.len());
        buf[..n].copy_from_slice(&self.inbox.split_to(n));
        Ok(n)
    }
}

impl<S: Read + Write> Write for WsBytes<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.socket
            .send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.socket.flush().map_err(std::io::Error::other)
    }
}

// ---------------------------------------------------------------------------------------------
// A blocking MQTT 5.0 client over any stream

struct Client<S: Read + Write> {
    stream: S,
    decoder: Decoder,
    buf: BytesMut,
}

fn encode(packet: impl Into<Packet>) -> BytesMut {
    let mut wire = BytesMut::new();
    packet
        .into()
        .encode(ProtocolVersion::V5, &mut wire)
        .unwrap();
    wire
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn connect_packet(client_id: &str, username: Option<&str>) -> Connect {
    let mut c = Connect::new(
        ProtocolVersion::V5,
        Utf8String::try_from(client_id).unwrap(),
    );
    c.keep_alive = 0;
    c.username = username.map(|u| Utf8String::try_from(u).unwrap());
    c
}

fn subscribe_packet(id: u16, filter: &str) -> Subscribe {
    Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::try_from(filter).unwrap(),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
        )],
    }
}

fn publish_packet(id: u16, topic: &str, payload: &'static [u8]) -> Publish {
    let mut p = Publish::new(
        TopicName::try_from(topic).unwrap(),
        Bytes::from_static(payload),
    );
    p.qos = QoS::AtLeastOnce;
    p.packet_id = Some(pid(id));
    p
}

impl<S: Read + Write> Client<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            decoder: Decoder::with_version(ProtocolVersion::V5),
            buf: BytesMut::new(),
        }
    }

    /// CONNECT (`client_id`, `username`) and its CONNACK; panics when the broker closes.
    fn connect(stream: S, client_id: &str, username: Option<&str>) -> (Self, ConnAck) {
        let mut client = Self::new(stream);
        client.send(connect_packet(client_id, username));
        match client.recv() {
            Packet::ConnAck(ack) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// CONNECT, expecting the broker to accept it.
    fn connected(stream: S, client_id: &str) -> Self {
        let (client, ack) = Self::connect(stream, client_id, None);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
        client
    }

    fn send(&mut self, packet: impl Into<Packet>) {
        self.send_raw(&encode(packet));
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// The next packet, or why there is none (the connection ended or failed).
    fn try_recv(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).expect("a valid packet") {
                return Ok(packet);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("closed".to_owned()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn recv(&mut self) -> Packet {
        self.try_recv()
            .unwrap_or_else(|e| panic!("no packet from the broker: {e}"))
    }

    fn subscribe(&mut self, id: u16, filter: &str) -> ReasonCode {
        self.send(subscribe_packet(id, filter));
        match self.recv() {
            Packet::SubAck(SubAck { reason_codes, .. }) => reason_codes[0],
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// A QoS 1 PUBLISH and its PUBACK's reason code.
    fn publish(&mut self, id: u16, topic: &str, payload: &'static [u8]) -> ReasonCode {
        self.send(publish_packet(id, topic, payload));
        match self.recv() {
            Packet::PubAck(ack) => ack.reason_code,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH (acknowledged), as topic and payload.
    fn recv_publish(&mut self) -> (String, Vec<u8>) {
        match self.recv() {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    self.send(mqtt_session::codec::PubAck::new(id));
                }
                (p.topic.to_string(), p.payload.to_vec())
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

/// Messages flow both ways between clients `a` and `b` (of any transports).
fn exchange<A: Read + Write, B: Read + Write>(a: &mut Client<A>, b: &mut Client<B>) {
    assert_eq!(a.subscribe(1, "to-a"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(b.subscribe(1, "to-b"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(b.publish(2, "to-a", b"from b"), ReasonCode::SUCCESS);
    assert_eq!(a.recv_publish(), ("to-a".to_owned(), b"from b".to_vec()));
    assert_eq!(a.publish(2, "to-b", b"from a"), ReasonCode::SUCCESS);
    assert_eq!(b.recv_publish(), ("to-b".to_owned(), b"from a".to_vec()));
}

fn start(dir: &TempDir, args: &[String]) -> Broker {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Broker::start_with(dir, &args)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// TLS

// v5 [MQTT-4.2.0-1], v3.1.1 [MQTT-7.1.1-1]: the server supports ordered, lossless byte streams
// — TCP, TLS (here), WebSocket (below).
#[test]
fn tls_and_tcp_clients_exchange_messages_over_tls_1_3_and_1_2() {
    let dir = TempDir::new("tls-exchange");
    let pki = Pki::new(dir.path());
    let mut a = args(&["--tls-listen", "127.0.0.1:0"]);
    a.extend(pki.server_args());
    let broker = start(&dir, &a);
    let tls_addr = broker.listener("tls");
    assert_ne!(tls_addr.port(), broker.addr.port());

    let mut secure = Client::connected(tls(tls_addr, pki.client_config(None, BOTH_VERSIONS)), "s");
    assert_eq!(
        secure.stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let mut plain = Client::connected(tcp(broker.addr), "p");
    exchange(&mut secure, &mut plain);

    let old = pki.client_config(None, &[&rustls::version::TLS12]);
    let mut secure12 = Client::connected(tls(tls_addr, old), "s12");
    assert_eq!(
        secure12.stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut plain = Client::connected(tcp(broker.addr), "p2");
    exchange(&mut plain, &mut secure12);
    broker.wait_for_log(&["connection opened", "transport=\"tls\""], 2);
}

#[test]
fn plaintext_or_silence_on_the_tls_port_costs_only_that_connection() {
    let dir = TempDir::new("tls-plaintext");
    let pki = Pki::new(dir.path());
    let mut a = args(&["--tls-listen", "127.0.0.1:0"]);
    a.extend(pki.server_args());
    let broker = start(&dir, &a);
    let tls_addr = broker.listener("tls");

    // A peer that connects and says nothing: its handshake waits (10 s at most) in a task of
    // its own, and the listener goes on accepting.
    let _silent = tcp(tls_addr);
    // An MQTT CONNECT in plaintext: the handshake fails, that connection is closed.
    let mut plaintext = tcp(tls_addr);
    plaintext
        .write_all(&encode(connect_packet("plain", None)))
        .unwrap();
    let mut buf = [0u8; 64];
    let started = Instant::now();
    loop {
        match plaintext.read(&mut buf) {
            // (rustls may answer with an alert first.)
            Ok(n) if n > 0 => assert!(started.elapsed() < STEP),
            Ok(_) | Err(_) => break,
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not closed at once"
    );
    broker.wait_for_log(&["handshake failed", "transport=\"tls\""], 1);

    let mut secure = Client::connected(tls(tls_addr, pki.client_config(None, BOTH_VERSIONS)), "s");
    let mut plain = Client::connected(tcp(broker.addr), "p");
    exchange(&mut secure, &mut plain);
}

/// Whether a TLS client with `config` gets a CONNACK: `Ok(code)`, or `Err` when the handshake
/// or the connection fails first (a client certificate refused).
fn tls_connack(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<ReasonCode, String> {
    let mut client = Client::new(tls(addr, config));
    // TLS 1.3: the client's handshake is done before the server has checked its certificate,
    // so a refusal shows as the write or the read failing.
    if let Err(e) = client
        .stream
        .write_all(&encode(connect_packet("c", None)))
        .and_then(|()| client.stream.flush())
    {
        return Err(e.to_string());
    }
    match client.try_recv()? {
        Packet::ConnAck(ack) => Ok(ack.reason_code),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn client_certificates_are_verified_against_the_client_ca() {
    let dir = TempDir::new("tls-client-ca");
    let pki = Pki::new(dir.path());
    let mut base = args(&["--tls-listen", "127.0.0.1:0", "--client-ca"]);
    base.push(pki.path("ca.pem"));
    base.extend(pki.server_args());

    // Required: no certificate, or an untrusted one, is refused; the CA-signed one connects.
    let mut required = base.clone();
    required.push("--require-certificate".to_owned());
    let broker = start(&dir, &required);
    let addr = broker.listener("tls");
    let none = tls_connack(addr, pki.client_config(None, BOTH_VERSIONS));
    assert!(none.is_err(), "{none:?}");
    let untrusted = tls_connack(addr, pki.client_config(Some("untrusted"), BOTH_VERSIONS));
    assert!(untrusted.is_err(), "{untrusted:?}");
    let untrusted12 = tls_connack(
        addr,
        pki.client_config(Some("untrusted"), &[&rustls::version::TLS12]),
    );
    assert!(untrusted12.is_err(), "{untrusted12:?}");
    assert_eq!(
        tls_connack(addr, pki.client_config(Some("alice"), BOTH_VERSIONS)),
        Ok(ReasonCode::SUCCESS)
    );
    broker.wait_for_log(&["handshake failed", "transport=\"tls\""], 3);
    drop(broker);

    // Optional: no certificate is fine, an untrusted one is still refused.
    let dir = TempDir::new("tls-client-ca-optional");
    let broker = start(&dir, &base);
    let addr = broker.listener("tls");
    assert_eq!(
        tls_connack(addr, pki.client_config(None, BOTH_VERSIONS)),
        Ok(ReasonCode::SUCCESS)
    );
    let untrusted = tls_connack(addr, pki.client_config(Some("untrusted"), BOTH_VERSIONS));
    assert!(untrusted.is_err(), "{untrusted:?}");
    assert_eq!(
        tls_connack(addr, pki.client_config(Some("bob"), BOTH_VERSIONS)),
        Ok(ReasonCode::SUCCESS)
    );
}

#[test]
fn the_certificate_name_gets_the_acl_user_block() {
    let dir = TempDir::new("tls-identity");
    let pki = Pki::new(dir.path());
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "default deny\nuser alice\nallow both alice/#\nuser *\nallow both public/#\n\
         pattern allow both users/%u/#\n",
    )
    .unwrap();
    let mut a = args(&["--tls-listen", "127.0.0.1:0", "--use-identity-as-username"]);
    a.extend(["--client-ca".to_owned(), pki.path("ca.pem")]);
    a.extend(["--acl".to_owned(), acl.to_str().unwrap().to_owned()]);
    a.extend(pki.server_args());
    let broker = start(&dir, &a);
    let addr = broker.listener("tls");

    // alice's certificate, no User Name: alice's rights.
    let mut alice = Client::connected(
        tls(addr, pki.client_config(Some("alice"), BOTH_VERSIONS)),
        "a",
    );
    assert_eq!(alice.subscribe(1, "alice/#"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(
        alice.subscribe(2, "users/alice/#"),
        ReasonCode::GRANTED_QOS_1
    );
    assert_eq!(alice.publish(3, "alice/x", b"1"), ReasonCode::SUCCESS);
    assert_eq!(alice.recv_publish(), ("alice/x".to_owned(), b"1".to_vec()));

    // bob's certificate, with bob as User Name: not alice's rights.
    let (mut bob, ack) = Client::connect(
        tls(addr, pki.client_config(Some("bob"), BOTH_VERSIONS)),
        "b",
        Some("bob"),
    );
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(bob.subscribe(1, "alice/#"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        bob.subscribe(2, "users/alice/#"),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(bob.publish(3, "alice/x", b"2"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(bob.subscribe(4, "users/bob/#"), ReasonCode::GRANTED_QOS_1);
    // (Allowed; nobody is subscribed.)
    assert_eq!(
        bob.publish(5, "public/x", b"3"),
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );

    // bob's certificate cannot claim to be alice by its User Name.
    let (_, ack) = Client::connect(
        tls(addr, pki.client_config(Some("bob"), BOTH_VERSIONS)),
        "b2",
        Some("alice"),
    );
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    // Nor can bob take over alice's Client Identifier (her session is hers: the broker sets
    // `sessions_owned_by_user`), and alice stays connected.
    let (_, ack) = Client::connect(
        tls(addr, pki.client_config(Some("bob"), BOTH_VERSIONS)),
        "a",
        None,
    );
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(alice.publish(4, "alice/x", b"5"), ReasonCode::SUCCESS);
    assert_eq!(alice.recv_publish(), ("alice/x".to_owned(), b"5".to_vec()));
    // Without a certificate (plain TCP), even with alice's User Name: refused.
    let (_, ack) = Client::connect(tcp(broker.addr), "t", Some("alice"));
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
}

#[test]
fn bad_tls_settings_and_files_stop_the_start_naming_them() {
    let dir = TempDir::new("tls-bad-files");
    let pki = Pki::new(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let cert = pki.path("server.pem");
    let key = pki.path("server-key.pem");
    let other_key = pki.path("alice-key.pem");
    let ca = pki.path("ca.pem");
    let tls = ["--tls-listen", "127.0.0.1:0"];
    for (extra, needle) in [
        (vec!["--tls-listen", "127.0.0.1:0"], "`cert`"),
        (
            vec!["--wss-listen", "127.0.0.1:0", "--cert", &cert],
            "`key`",
        ),
        (vec!["--cert", &cert, "--key", &key], "`cert`"),
        (
            [
                &tls[..],
                &["--cert", &cert, "--key", &key, "--require-certificate"],
            ]
            .concat(),
            "`require_certificate`",
        ),
        (
            [
                &tls[..],
                &["--cert", &cert, "--key", &key, "--use-identity-as-username"],
            ]
            .concat(),
            "`use_identity_as_username`",
        ),
        (
            [&tls[..], &["--cert", missing, "--key", &key]].concat(),
            missing,
        ),
        (
            [&tls[..], &["--cert", garbage, "--key", &key]].concat(),
            garbage,
        ),
        (
            [&tls[..], &["--cert", &cert, "--key", garbage]].concat(),
            garbage,
        ),
        (
            [&tls[..], &["--cert", &cert, "--key", &other_key]].concat(),
            &other_key,
        ),
        (
            [
                &tls[..],
                &["--cert", &cert, "--key", &key, "--client-ca", garbage],
            ]
            .concat(),
            garbage,
        ),
        (
            [
                &tls[..],
                &["--cert", &cert, "--key", &key, "--client-ca", &ca],
            ]
            .concat(),
            "",
        ),
    ] {
        let out = run_briefly(&dir, &extra);
        if needle.is_empty() {
            assert!(out.is_none(), "{extra:?} should start: {out:?}");
            continue;
        }
        let stderr = out.unwrap_or_else(|| panic!("{extra:?} started"));
        assert!(
            stderr.contains(&format!("mqtt-broker: {needle}")) || stderr.contains(needle),
            "{extra:?}: {stderr}"
        );
    }
}

/// Runs the binary with `extra`: `Some(its standard error)` when it exits (it should, with an
/// error), `None` when it is still running after a while (it started; then it is killed).
fn run_briefly(dir: &TempDir, extra: &[&str]) -> Option<String> {
    let stderr_path = dir.path().join("run.stderr");
    let mut child = Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            return Some(std::fs::read_to_string(&stderr_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

// ---------------------------------------------------------------------------------------------
// WebSocket

fn ws_url(addr: SocketAddr, scheme: &str, path: &str) -> String {
    format!("{scheme}://127.0.0.1:{}{path}", addr.port())
}

fn ws_broker(dir: &TempDir) -> Broker {
    Broker::start_with(dir, &["--ws-listen", "127.0.0.1:0"])
}

// v5 [MQTT-6.0.0-3] [MQTT-6.0.0-4]: the client offers `mqtt`, the broker selects it.
#[test]
fn websocket_and_tcp_clients_exchange_messages() {
    let dir = TempDir::new("ws-exchange");
    let broker = ws_broker(&dir);
    let addr = broker.listener("ws");
    let socket = websocket(tcp(addr), &ws_url(addr, "ws", "/mqtt"));
    let mut ws = Client::connected(WsBytes::new(socket), "w");
    let mut plain = Client::connected(tcp(broker.addr), "p");
    exchange(&mut ws, &mut plain);
    broker.wait_for_log(&["connection opened", "transport=\"ws\""], 1);

    // Pings are answered.
    ws.stream
        .socket
        .send(Message::Ping(Bytes::from_static(b"hi")))
        .unwrap();
    match ws.stream.socket.read().unwrap() {
        Message::Pong(data) => assert_eq!(&data[..], b"hi"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // A close frame ends the connection: the broker sees the client gone.
    ws.stream.socket.close(None).unwrap();
    broker.wait_for_log(&["client disconnected", "client_id=\"w\""], 1);
}

// v5 [MQTT-6.0.0-2]: a packet split over two frames, and several packets in one frame.
#[test]
fn websocket_frames_need_not_align_with_packets() {
    let dir = TempDir::new("ws-frames");
    let broker = ws_broker(&dir);
    let addr = broker.listener("ws");
    let mut socket = websocket(tcp(addr), &ws_url(addr, "ws", "/mqtt"));
    let connect = encode(connect_packet("w", None));
    let (first, second) = connect.split_at(connect.len() / 2);
    socket
        .send(Message::Binary(Bytes::copy_from_slice(first)))
        .unwrap();
    socket
        .send(Message::Binary(Bytes::copy_from_slice(second)))
        .unwrap();
    let mut ws = Client::new(WsBytes::new(socket));
    match ws.recv() {
        Packet::ConnAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // SUBSCRIBE and a PUBLISH to it, in one frame.
    let mut both = encode(subscribe_packet(1, "t"));
    both.extend_from_slice(&encode(publish_packet(2, "t", b"joined")));
    // And a second PUBLISH whose bytes straddle two frames, the first with the end of another.
    let third = encode(publish_packet(3, "t", b"straddling"));
    let (head, tail) = third.split_at(3);
    both.extend_from_slice(head);
    ws.stream
        .socket
        .send(Message::Binary(both.freeze()))
        .unwrap();
    ws.stream
        .socket
        .send(Message::Binary(Bytes::copy_from_slice(tail)))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        match ws.recv() {
            Packet::SubAck(ack) => got.push(format!("suback {:?}", ack.reason_codes)),
            Packet::PubAck(ack) => got.push(format!("puback {}", ack.packet_id.get())),
            Packet::Publish(p) => {
                got.push(format!("publish {}", String::from_utf8_lossy(&p.payload)));
                if let Some(id) = p.packet_id {
                    ws.send(mqtt_session::codec::PubAck::new(id));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort();
    assert_eq!(
        got,
        [
            "puback 2",
            "puback 3",
            "publish joined",
            "publish straddling",
            &format!("suback {:?}", vec![ReasonCode::GRANTED_QOS_1]),
        ]
    );
}

// v5 [MQTT-6.0.0-1]: a text frame closes the connection.
#[test]
fn a_websocket_text_frame_closes_the_connection() {
    let dir = TempDir::new("ws-text");
    let broker = ws_broker(&dir);
    let addr = broker.listener("ws");
    let socket = websocket(tcp(addr), &ws_url(addr, "ws", "/mqtt"));
    let mut ws = Client::connected(WsBytes::new(socket), "w");
    ws.stream
        .socket
        .send(Message::Text("hello".into()))
        .unwrap();
    let started = Instant::now();
    let close = match ws.stream.socket.read() {
        Ok(Message::Close(frame)) => frame,
        Ok(other) => panic!("expected a close frame, got {other:?}"),
        Err(e) => panic!("expected a close frame, got {e}"),
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Unsupported));
    assert!(started.elapsed() < STEP);
    broker.wait_for_log(&["client disconnected", "client_id=\"w\""], 1);
    // Another client is not affected.
    let socket = websocket(tcp(addr), &ws_url(addr, "ws", "/mqtt"));
    let mut ws = Client::connected(WsBytes::new(socket), "w2");
    let mut plain = Client::connected(tcp(broker.addr), "p");
    exchange(&mut ws, &mut plain);
    // v3.1.1 [MQTT-6.0.0-1]: the same for a text frame before any CONNECT, whichever version
    // the client would speak (the WebSocket layer does not depend on it).
    let mut socket = websocket(tcp(addr), &ws_url(addr, "ws", "/mqtt"));
    socket.send(Message::Text("CONNECT".into())).unwrap();
    match socket.read() {
        Ok(Message::Close(frame)) => {
            assert_eq!(frame.map(|f| f.code), Some(CloseCode::Unsupported));
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// The HTTP status of an upgrade request to `path` offering `protocol` (if any) that fails.
fn refused_upgrade(addr: SocketAddr, path: &str, protocol: Option<&str>) -> u16 {
    let mut request = ws_url(addr, "ws", path).into_client_request().unwrap();
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    match tungstenite::client(request, tcp(addr)) {
        Ok(_) => panic!("the upgrade of {path} with {protocol:?} was accepted"),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            response.status().as_u16()
        }
        Err(e) => panic!("{e}"),
    }
}

// v5 [MQTT-6.0.0-3]: a client must offer `mqtt`; one that does not is refused.
#[test]
fn websocket_upgrades_other_than_mqtt_on_slash_mqtt_are_refused() {
    let dir = TempDir::new("ws-refused");
    let broker = ws_broker(&dir);
    let addr = broker.listener("ws");
    assert_eq!(refused_upgrade(addr, "/", Some("mqtt")), 404);
    assert_eq!(refused_upgrade(addr, "/mqtt/x", Some("mqtt")), 404);
    assert_eq!(refused_upgrade(addr, "/mqtt", None), 400);
    assert_eq!(refused_upgrade(addr, "/mqtt", Some("chat, superchat")), 400);
    broker.wait_for_log(&["handshake failed", "transport=\"ws\""], 4);
    // Plain HTTP that is no upgrade at all.
    let mut http = tcp(addr);
    http.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = http.read_to_string(&mut answer);
    assert!(!answer.starts_with("HTTP/1.1 101"), "{answer}");
    // The listener still serves.
    let socket = websocket(tcp(addr), &ws_url(addr, "ws", "/mqtt"));
    let _ws = Client::connected(WsBytes::new(socket), "w");
}

#[test]
fn websocket_over_tls_and_tcp_clients_exchange_messages() {
    let dir = TempDir::new("wss-exchange");
    let pki = Pki::new(dir.path());
    let mut a = args(&["--wss-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"]);
    a.extend(pki.server_args());
    let broker = start(&dir, &a);
    let addr = broker.listener("wss");
    assert_ne!(addr, broker.listener("ws"));
    let stream = tls(addr, pki.client_config(None, BOTH_VERSIONS));
    let socket = websocket(stream, &ws_url(addr, "wss", "/mqtt"));
    let mut wss = Client::connected(WsBytes::new(socket), "w");
    let mut plain = Client::connected(tcp(broker.addr), "p");
    exchange(&mut wss, &mut plain);
    broker.wait_for_log(&["connection opened", "transport=\"wss\""], 1);
}

#[test]
fn a_websocket_message_larger_than_the_maximum_packet_size_ends_the_connection() {
    let dir = TempDir::new("ws-large");
    let broker = Broker::start_with(
        &dir,
        &["--ws-listen", "127.0.0.1:0", "--max-packet-size", "1000"],
    );
    let addr = broker.listener("ws");
    let socket = websocket(tcp(addr), &ws_url(addr, "ws", "/mqtt"));
    let mut ws = Client::connected(WsBytes::new(socket), "w");
    let _ = ws
        .stream
        .socket
        .send(Message::Binary(Bytes::from(vec![0u8; 4000])));
    let ended = loop {
        match ws.stream.socket.read() {
            Ok(Message::Close(_)) | Err(_) => break true,
            Ok(_) => {}
        }
    };
    assert!(ended);
    broker.wait_for_log(&["client disconnected", "client_id=\"w\""], 1);
}

// ---------------------------------------------------------------------------------------------
// Real clients (MQTT_INTEROP=1)

/// Whether the real clients run (see `interop.rs`): `MQTT_INTEROP=1`.
fn interop_enabled() -> bool {
    tempdir::interop_enabled(
        "transport interop tests",
        &["mosquitto_sub", "stdbuf"],
        true,
    )
}

const PAHO_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/paho_client.py");

/// `mosquitto_sub` on the broker's TCP port, subscribed to `topic` (returns once subscribed);
/// it prints one line per message and exits after the first.
fn mosquitto_sub(dir: &TempDir, broker: &Broker, topic: &str) -> Proc {
    let mut command = Command::new("stdbuf");
    command
        .args([
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port(),
        ])
        .args(["-d", "-C", "1", "-W", "60", "-F", "MSG %t %p", "-t", topic]);
    let (mut sub, _) = Proc::spawn(dir.path(), "mosquitto_sub", command);
    while !sub.next_line().starts_with("Subscribed (mid") {}
    sub
}

/// The next message `mosquitto_sub` printed (past its debug lines).
fn next_message(sub: &mut Proc) -> String {
    loop {
        let line = sub.next_line();
        if line.starts_with("MSG ") {
            return line;
        }
    }
}

/// paho-mqtt over `transport` (`websockets`), TLS with `cafile`, MQTT `version` (`5` or
/// `3.1.1`), publishes `payload` to `topic` on `port` and disconnects.
fn paho_publish(
    dir: &TempDir,
    port: u16,
    cafile: Option<&str>,
    version: &str,
    topic: &str,
    payload: &str,
) {
    let mut command = Command::new("python3");
    command
        .arg(PAHO_CLIENT)
        .args(["--host", "localhost", "--port", &port.to_string()])
        .args([
            "--id",
            "paho",
            "--transport",
            "websockets",
            "--version",
            version,
        ])
        .args(["--timeout", &STEP.as_secs().to_string()])
        .env("PYTHONUNBUFFERED", "1");
    if let Some(ca) = cafile {
        command.args(["--cafile", ca]);
    }
    let (mut paho, stdin) = Proc::spawn(dir.path(), "paho", command);
    let mut stdin = stdin.unwrap();
    let connack = paho.next_line();
    assert!(connack.contains("\"reason_code\": 0"), "{connack}");
    writeln!(
        stdin,
        "{{\"cmd\": \"pub\", \"topic\": \"{topic}\", \"payload\": \"{payload}\", \"qos\": 1}}"
    )
    .unwrap();
    writeln!(stdin, "{{\"cmd\": \"disconnect\"}}").unwrap();
    paho.expect_success();
}

// v5 v3.1.1 [MQTT-6.0.0-2] [MQTT-6.0.0-3] [MQTT-6.0.0-4]: paho-mqtt's WebSocket transport
// (it offers `mqtt`, and accepts the connection only with `mqtt` selected) with both versions.
#[test]
fn paho_over_websocket_and_websocket_over_tls_publishes_to_mosquitto_sub() {
    if !interop_enabled() {
        return;
    }
    let dir = TempDir::new("ws-interop");
    let pki = Pki::new(dir.path());
    let mut a = args(&["--ws-listen", "127.0.0.1:0", "--wss-listen", "127.0.0.1:0"]);
    a.extend(pki.server_args());
    let broker = start(&dir, &a);

    for version in ["5", "3.1.1"] {
        let mut sub = mosquitto_sub(&dir, &broker, "interop/ws");
        paho_publish(
            &dir,
            broker.listener("ws").port(),
            None,
            version,
            "interop/ws",
            "over-ws",
        );
        assert_eq!(next_message(&mut sub), "MSG interop/ws over-ws");
    }
    broker.wait_for_log(&["connection opened", "transport=\"ws\""], 2);

    let mut sub = mosquitto_sub(&dir, &broker, "interop/wss");
    let ca = pki.path("ca.pem");
    paho_publish(
        &dir,
        broker.listener("wss").port(),
        Some(&ca),
        "5",
        "interop/wss",
        "over-wss",
    );
    assert_eq!(next_message(&mut sub), "MSG interop/wss over-wss");
    broker.wait_for_log(&["connection opened", "transport=\"wss\""], 1);
}

// ---------------------------------------------------------------------------------------------
// A measurement

/// TLS connections per second, each a full handshake (ECDSA P-256 server certificate,
/// resumption off) then CONNECT/CONNACK and DISCONNECT: one after another, then from 8 threads
/// at once; and plain TCP, one after another, for comparison. The clients run on the same
/// machine as the broker (which logs at debug level).
/// `cargo test --release -p mqtt-broker --test transports -- --ignored --nocapture tls_connection_rate`
#[test]
#[ignore = "a measurement, run in release mode"]
fn tls_connection_rate() {
    const N: usize = 500;
    const THREADS: usize = 8;
    let dir = TempDir::new("tls-rate");
    let pki = Pki::new(dir.path());
    let mut a = args(&["--tls-listen", "127.0.0.1:0"]);
    a.extend(pki.server_args());
    let broker = start(&dir, &a);
    let addr = broker.listener("tls");
    let config = |resume: bool| {
        let mut config = (*pki.client_config(None, BOTH_VERSIONS)).clone();
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Arc::new(config)
    };
    let one = |config: &Arc<rustls::ClientConfig>, id: &str| {
        let mut client = Client::connected(tls(addr, config.clone()), id);
        client.send(mqtt_session::codec::Disconnect::new(ReasonCode::SUCCESS));
    };
    // The baseline: the same over plain TCP.
    let started = Instant::now();
    for i in 0..N {
        let mut client = Client::connected(tcp(broker.addr), &format!("tcp-{i}"));
        client.send(mqtt_session::codec::Disconnect::new(ReasonCode::SUCCESS));
    }
    println!(
        "TCP: {:.0} connections/s one after another",
        N as f64 / started.elapsed().as_secs_f64()
    );
    for resume in [false, true] {
        let config = config(resume);
        let started = Instant::now();
        for i in 0..N {
            one(&config, &format!("seq-{resume}-{i}"));
        }
        let sequential = N as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let config = config.clone();
                let one = &one;
                s.spawn(move || {
                    for i in 0..N / THREADS {
                        one(&config, &format!("par-{resume}-{t}-{i}"));
                    }
                });
            }
        });
        let parallel = (N / THREADS * THREADS) as f64 / started.elapsed().as_secs_f64();
        println!(
            "TLS {}: {sequential:.0} connections/s one after another, {parallel:.0} connections/s \
             from {THREADS} threads",
            if resume { "resumed" } else { "full handshakes" }
        );
    }
}
