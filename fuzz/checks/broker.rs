// The checks behind the `broker` fuzz target. This file is `include!`d by the fuzz target and by
// `mqtt-session/tests/fuzz_corpus.rs`, which replays the committed corpus on stable Rust, so a
// crash found once stays a test forever. A finding is a panic, as libFuzzer expects.

// (`unreachable_pub`: `run` is public for the includers, inside a private module.)
#[allow(
    dead_code,
    unreachable_pub,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
mod broker_checks {
    use std::collections::BTreeMap;
    use std::num::{NonZeroU16, NonZeroU32};

    use bytes::BytesMut;
    use mqtt_codec::arbitrary::{Result, Unstructured};
    use mqtt_codec::{
        Connect, Decoder, Disconnect, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec,
        PubRel, Publish, QoS, ReasonCode, RetainHandling, Subscribe, SubscriptionOptions,
        TopicFilter, TopicName, Unsubscribe, Utf8String, Will,
    };
    use mqtt_session::Timestamp;
    use mqtt_session::broker::{
        AuthDecision, AuthRequest, Broker, BrokerConfig, ConnectInfo, ConnectionId, Output, Policy,
        StorageRecord,
    };

    /// The second "a" (index [`SLOW_CLIENT`]) is the same client as the first, on a slow
    /// reader: its connection's transmits are pulled only when time passes.
    const CLIENT_IDS: [&str; 5] = ["a", "b", "c", "", "a"];
    const SLOW_CLIENT: usize = 4;
    const TOPICS: [&str; 5] = ["a", "a/b", "b", "$SYS/x", "a/b/c"];
    const FILTERS: [&str; 7] = ["#", "a/#", "+", "a/+", "$share/g/a/#", "b", "+/+/c"];

    /// The answer an authentication step gets from the fuzzing policy, by a selector taken
    /// from what the client sent (its Authentication Data, its User Name) or from the time a
    /// deferred step is answered: every answer the engine handles, including the wrong ones (a
    /// Continue to a client without an Authentication Method, an `AcceptAs` of a name that is
    /// not a valid MQTT string, another user on re-authentication, `Defer` to a deferred step).
    fn decision(selector: u8, user: Option<&str>) -> AuthDecision {
        match selector % 9 {
            0 => AuthDecision::Accept,
            1 => AuthDecision::Continue(Some(bytes::Bytes::from_static(b"challenge"))),
            2 => AuthDecision::Continue(None),
            3 => AuthDecision::Defer,
            4 => AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED),
            5 => AuthDecision::AcceptAs(user.unwrap_or("anonymous").to_owned()),
            6 => AuthDecision::AcceptAs("other".to_owned()),
            7 => AuthDecision::AcceptAs("bad\0name".to_owned()),
            _ => AuthDecision::Reject(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        }
    }

    /// The last byte of `b`, or 0.
    fn last(b: Option<&[u8]>) -> u8 {
        b.and_then(|b| b.last().copied()).unwrap_or(0)
    }

    /// A policy that takes every path of the engine's authentication (enhanced authentication,
    /// re-authentication, deferred decisions) and authorization (a user may not publish to or
    /// subscribe to `b`, nor receive `a/b/c`; anonymous clients may do everything).
    #[derive(Debug, Clone, Copy, Default)]
    pub struct FuzzPolicy;

    impl Policy for FuzzPolicy {
        fn authenticate(&mut self, info: &ConnectInfo<'_>) -> AuthDecision {
            if info.authentication_method.is_some() {
                decision(last(info.authentication_data), info.username)
            } else if let Some(user) = info.username {
                decision(last(Some(user.as_bytes())), Some(user))
            } else {
                AuthDecision::Accept
            }
        }

        fn continue_authentication(
            &mut self,
            client_id: &str,
            _method: &str,
            data: Option<&[u8]>,
        ) -> AuthDecision {
            decision(last(data), Some(client_id))
        }

        fn may_publish(&mut self, _: &str, username: Option<&str>, topic: &str) -> bool {
            username.is_none() || topic != "b"
        }

        fn may_subscribe(&mut self, _: &str, username: Option<&str>, filter: &str) -> bool {
            username.is_none() || filter != "b"
        }

        fn may_receive(&mut self, _: &str, username: Option<&str>, topic: &str) -> bool {
            username.is_none() || topic != "a/b/c"
        }
    }

    /// One network connection as the host sees it.
    struct Conn {
        /// What the client sent, decoded on the side until its CONNECT, to learn the version
        /// the broker answers in.
        inbound: BytesMut,
        mirror: Decoder,
        mirror_done: bool,
        version: Option<ProtocolVersion>,
        /// The host closed it (transport) or the broker said `Close`.
        transport_closed: bool,
        broker_closed: bool,
        /// Server-to-client packets so far, and whether a CONNACK / DISCONNECT was among them.
        sent_packets: usize,
        connack: bool,
        /// The broker sent a DISCONNECT, or a refusing CONNACK: it must close, and send nothing
        /// more.
        must_close: bool,
        /// (Known bug tolerated) an empty transmit came before any packet: a CONNACK too large
        /// for the client was dropped.
        connack_lost: bool,
        /// Bytes pulled and not yet a whole packet (pulls may split packets anywhere).
        outbound: BytesMut,
        /// A slow reader: `TransmitReady` is noted, and its bytes are pulled only when time
        /// passes, so that its backlog grows and the engine's slow-consumer policy (pause the
        /// publishers, then stuck, then DISCONNECT 0x97) runs.
        slow: bool,
        /// A `TransmitReady` not pulled yet (slow readers only).
        ready: bool,
        /// The Authentication Method of the client's CONNECT.
        method: Option<String>,
        /// The broker accepted the connection (CONNACK 0x00).
        accepted: bool,
        /// The broker sent AUTH Continue authentication: the client answers it (at most
        /// [`MAX_AUTH_ROUNDS`] times).
        challenged: bool,
        auth_rounds: u8,
    }

    const MAX_AUTH_ROUNDS: u8 = 4;

    /// Engine bugs this target has found and that are not fixed yet; `run` tolerates them so
    /// that fuzzing goes on past them, `run_with(data, false)` does not (the replay test runs
    /// both; see `mqtt-session/tests/fuzz_corpus.rs`). Set to `false` once they are fixed:
    ///
    /// - an empty `Output::Transmit` when a packet exceeds the client's Maximum Packet Size
    ///   (`Broker::send` queues the transmit before encoding into it);
    /// - a CONNACK larger than the client's Maximum Packet Size is not sent at all (the same
    ///   empty transmit), so the connection goes on without a CONNACK.
    pub const TOLERATE_KNOWN_BUGS: bool = false;

    struct Host {
        tolerate_known_bugs: bool,
        config: BrokerConfig,
        broker: Broker<FuzzPolicy>,
        now: Timestamp,
        /// Deferred authentication steps not answered yet.
        deferred: Vec<(ConnectionId, Box<AuthRequest>)>,
        records: Vec<StorageRecord>,
        conns: BTreeMap<ConnectionId, Conn>,
    }

    impl Host {
        fn new(tolerate_known_bugs: bool) -> Self {
            let mut config = BrokerConfig::default();
            // Small limits, so that flow control and queue limits are reached.
            config.max_inflight = 2;
            config.max_queued_messages = 4;
            config.receive_maximum = 2;
            config.topic_alias_maximum = 2;
            config.max_keep_alive = Some(30);
            // A small backlog, so that a slow reader goes over it, is stuck after 1.5 s over,
            // and is disconnected 3 s later.
            config.max_connection_backlog = 128;
            config.stuck_after_ms = 1_500;
            config.disconnect_stuck_after = Some(3);
            Self {
                tolerate_known_bugs,
                broker: Broker::with_policy(config.clone(), FuzzPolicy),
                config,
                deferred: Vec::new(),
                now: Timestamp::from_secs(1_700_000_000),
                records: Vec::new(),
                conns: BTreeMap::new(),
            }
        }

        fn open(&mut self) -> ConnectionId {
            let id = self.broker.handle_connection_opened(self.now);
            assert!(!self.conns.contains_key(&id), "connection id {id:?} reused");
            let mirror = Decoder::new().max_packet_size(self.config.maximum_packet_size);
            self.conns.insert(
                id,
                Conn {
                    inbound: BytesMut::new(),
                    mirror,
                    mirror_done: false,
                    version: None,
                    transport_closed: false,
                    broker_closed: false,
                    sent_packets: 0,
                    connack: false,
                    must_close: false,
                    connack_lost: false,
                    outbound: BytesMut::new(),
                    slow: false,
                    ready: false,
                    method: None,
                    accepted: false,
                    challenged: false,
                    auth_rounds: 0,
                },
            );
            id
        }

        /// A connection still open, opening one if there is none (or sometimes anyway).
        fn pick(&mut self, u: &mut Unstructured<'_>) -> Result<ConnectionId> {
            let open: Vec<ConnectionId> = self
                .conns
                .iter()
                .filter(|(_, c)| !c.transport_closed && !c.broker_closed)
                .map(|(id, _)| *id)
                .collect();
            if open.is_empty() || (open.len() < 6 && u.ratio(1, 16)?) {
                return Ok(self.open());
            }
            Ok(*u.choose(&open)?)
        }

        fn send_bytes(&mut self, id: ConnectionId, data: &[u8]) {
            if let Some(c) = self.conns.get_mut(&id)
                && !c.mirror_done
            {
                c.inbound.extend_from_slice(data);
                match c.mirror.decode(&mut c.inbound) {
                    Ok(Some(Packet::Connect(connect))) => {
                        c.version = Some(connect.protocol);
                        c.method = connect
                            .properties
                            .authentication_method()
                            .map(str::to_owned);
                        c.mirror_done = true;
                    }
                    Ok(None) => {}
                    Ok(Some(_)) | Err(_) => c.mirror_done = true,
                }
                if c.mirror_done {
                    c.inbound = BytesMut::new();
                }
            }
            self.broker.handle_bytes(id, data, self.now);
        }

        fn send_packet(&mut self, id: ConnectionId, packet: &Packet) {
            let version = self
                .conns
                .get(&id)
                .and_then(|c| c.version)
                .or(match packet {
                    Packet::Connect(c) => Some(c.protocol),
                    _ => None,
                })
                .unwrap_or(ProtocolVersion::V5);
            let mut buf = BytesMut::new();
            if packet.encode(version, &mut buf).is_ok() {
                self.send_bytes(id, &buf);
            }
        }

        fn timeout(&mut self, at: Timestamp) {
            self.broker.handle_timeout(at);
            if let Some(next) = self.broker.poll_timeout() {
                assert!(
                    next > at,
                    "poll_timeout {next:?} not after handle_timeout({at:?})"
                );
            }
        }

        /// Pulls everything `connection` has to send, in small pieces (a packet may be split
        /// anywhere), and checks it.
        fn pull(&mut self, connection: ConnectionId) {
            while let Some(data) = self.broker.poll_transmit(connection, 97, self.now) {
                assert!(!data.is_empty() && data.len() <= 97, "transmit size");
                let Some(c) = self.conns.get_mut(&connection) else {
                    panic!("transmit to unknown connection {connection:?}")
                };
                assert!(!c.broker_closed, "transmit after Close on {connection:?}");
                assert!(
                    !c.transport_closed,
                    "transmit on {connection:?}, closed by the transport"
                );
                // v5 [MQTT-3.14.4-1] nothing after a DISCONNECT; [MQTT-3.2.2-7]
                // nothing after a refusing CONNACK.
                assert!(
                    !c.must_close,
                    "transmit on {connection:?} after DISCONNECT or a refusing CONNACK"
                );
                check_transmit(connection, c, &data, self.tolerate_known_bugs);
            }
        }

        /// The slow readers read what is waiting for them.
        fn pull_slow(&mut self) {
            let ready: Vec<ConnectionId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.slow && c.ready && !c.broker_closed && !c.transport_closed)
                .map(|(id, _)| *id)
                .collect();
            for id in ready {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.ready = false;
                }
                self.pull(id);
            }
        }

        /// Drains the outputs, checking each, and answers the broker's AUTH challenges as a
        /// client does: v5 [MQTT-4.12.0-3] with AUTH Continue authentication, and the same
        /// Authentication Method; its data (the policy's selector) counts the rounds.
        fn drain(&mut self) {
            loop {
                self.drain_once();
                let challenged: Vec<(ConnectionId, String, u8)> = self
                    .conns
                    .iter_mut()
                    .filter(|(_, c)| c.challenged && !c.broker_closed && !c.transport_closed)
                    .filter_map(|(id, c)| {
                        c.challenged = false;
                        c.auth_rounds += 1;
                        let method = c.method.clone()?;
                        (c.auth_rounds <= MAX_AUTH_ROUNDS).then(|| {
                            (
                                *id,
                                method,
                                c.auth_rounds.wrapping_mul(5) ^ c.sent_packets as u8,
                            )
                        })
                    })
                    .collect();
                if challenged.is_empty() {
                    break;
                }
                for (id, method, selector) in challenged {
                    self.send_auth(id, ReasonCode::CONTINUE_AUTHENTICATION, &method, selector);
                }
            }
        }

        /// Sends an AUTH with `method` and one byte of data.
        fn send_auth(&mut self, id: ConnectionId, code: ReasonCode, method: &str, data: u8) {
            let mut auth = mqtt_codec::Auth {
                reason_code: code,
                properties: mqtt_codec::Properties::default(),
            };
            auth.properties
                .set_authentication_method(Utf8String::try_from(method).ok());
            let _ = auth.properties.set_authentication_data(Some(&[data]));
            self.send_packet(id, &Packet::Auth(auth));
        }

        /// The host answers the deferred authentication steps (an answer for a connection
        /// that closed meanwhile included), with a selector from the time.
        fn answer_deferred(&mut self) {
            let selector = (self.now.as_millis() / 7) as u8;
            for (connection, request) in std::mem::take(&mut self.deferred) {
                let d = decision(selector, request.username.as_deref());
                self.broker.handle_auth_decision(connection, d, self.now);
                self.drain();
            }
        }

        /// Connected clients that authenticated with a method re-authenticate (v5
        /// [MQTT-4.12.1-1]), with a selector from the time.
        fn reauthenticate(&mut self) {
            let selector = (self.now.as_millis() / 11) as u8;
            let clients: Vec<(ConnectionId, String)> = self
                .conns
                .iter_mut()
                .filter(|(_, c)| c.accepted && !c.broker_closed && !c.transport_closed)
                .filter_map(|(id, c)| {
                    c.auth_rounds = 0;
                    Some((*id, c.method.clone()?))
                })
                .collect();
            for (id, method) in clients {
                self.send_auth(id, ReasonCode::RE_AUTHENTICATE, &method, selector);
                self.drain();
            }
        }

        /// Drains the outputs, checking each.
        fn drain_once(&mut self) {
            while let Some(out) = self.broker.poll_output() {
                match out {
                    Output::Persist { seq, record } => {
                        self.records.push(record);
                        self.broker.handle_committed(seq);
                    }
                    Output::TransmitReady { connection } => {
                        let Some(c) = self.conns.get(&connection) else {
                            panic!("TransmitReady for unknown connection {connection:?}")
                        };
                        assert!(
                            !c.broker_closed,
                            "TransmitReady after Close on {connection:?}"
                        );
                        if c.slow {
                            if let Some(c) = self.conns.get_mut(&connection) {
                                c.ready = true;
                            }
                            continue;
                        }
                        self.pull(connection);
                    }
                    Output::Close {
                        connection,
                        farewell,
                    } => {
                        let Some(c) = self.conns.get_mut(&connection) else {
                            panic!("Close of unknown connection {connection:?}")
                        };
                        assert!(!c.broker_closed, "second Close of {connection:?}");
                        if !farewell.is_empty() {
                            check_transmit(connection, c, &farewell, self.tolerate_known_bugs);
                        }
                        // The stream ends between two packets.
                        assert!(
                            c.outbound.is_empty(),
                            "{connection:?}: the stream ends inside a packet"
                        );
                        c.broker_closed = true;
                    }
                    Output::Authenticate {
                        connection,
                        request,
                    } => {
                        assert!(
                            self.conns.contains_key(&connection),
                            "Authenticate for unknown connection {connection:?}"
                        );
                        self.deferred.push((connection, request));
                    }
                    Output::PauseReading { .. } | Output::ResumeReading { .. } => {}
                    Output::Event(_) => {}
                    other => panic!("unknown output {other:?}"),
                }
            }
            for (id, c) in &self.conns {
                // v5 [MQTT-3.14.4-2] [MQTT-3.2.2-7]: the connection is closed at once.
                assert!(
                    !c.must_close || c.broker_closed,
                    "{id:?}: DISCONNECT or refusing CONNACK without Close"
                );
            }
            if let Some(next) = self.broker.poll_timeout() {
                assert!(
                    next >= self.now,
                    "poll_timeout {next:?} earlier than now ({:?})",
                    self.now
                );
            }
        }

        fn restart(&mut self) {
            let records = std::mem::take(&mut self.records);
            self.broker =
                Broker::restore(self.config.clone(), FuzzPolicy, records.clone(), self.now);
            self.deferred.clear();
            self.records = records;
            // Connection identifiers start again in the new broker.
            self.conns.clear();
            if let Some(next) = self.broker.poll_timeout() {
                assert!(
                    next > self.now,
                    "poll_timeout {next:?} not after restore at {:?}",
                    self.now
                );
            }
        }
    }

    /// The stream of a connection holds packets valid for its version, of the kinds a server
    /// sends, starting with one CONNACK (`data` continues what was pulled before).
    fn check_transmit(id: ConnectionId, c: &mut Conn, data: &[u8], tolerate_known_bugs: bool) {
        if data.is_empty() && tolerate_known_bugs {
            c.connack_lost |= c.sent_packets == 0;
            return;
        }
        // Before a CONNECT is understood the only answer is the 3.1.1 CONNACK 0x01.
        let version = c.version.unwrap_or(ProtocolVersion::V3_1_1);
        let mut decoder = Decoder::with_version(version);
        assert!(!data.is_empty(), "{id:?}: empty transmit");
        c.outbound.extend_from_slice(data);
        let mut buf = core::mem::take(&mut c.outbound);
        while !buf.is_empty() {
            let packet = match decoder.decode(&mut buf) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => panic!(
                    "{id:?}: the broker sent an invalid {version:?} packet: {e}\n{data:02x?}"
                ),
            };
            assert!(
                !c.must_close,
                "{id:?}: {packet:?} after DISCONNECT or a refusing CONNACK"
            );
            match &packet {
                Packet::ConnAck(ack) => {
                    // v5 [MQTT-3.2.0-2] one CONNACK per connection.
                    assert!(!c.connack, "{id:?}: second CONNACK");
                    c.connack = true;
                    if ack.reason_code != ReasonCode::SUCCESS {
                        c.must_close = true;
                    } else {
                        c.accepted = true;
                        // v5 [MQTT-4.12.0-5] a successful CONNACK carries the CONNECT's
                        // Authentication Method; [MQTT-4.12.0-6] none if it had none.
                        assert_eq!(
                            ack.properties.authentication_method(),
                            c.method.as_deref().filter(|_| version.is_v5()),
                            "{id:?}: CONNACK's Authentication Method"
                        );
                    }
                }
                Packet::Auth(auth) => {
                    assert!(version.is_v5(), "{id:?}: AUTH to a {version:?} client");
                    // v5 [MQTT-4.12.0-6] no AUTH to a client without an Authentication
                    // Method; [MQTT-4.12.0-5] the CONNECT's method in every AUTH.
                    assert!(
                        c.method.is_some(),
                        "{id:?}: AUTH without enhanced authentication"
                    );
                    assert_eq!(
                        auth.properties.authentication_method(),
                        c.method.as_deref(),
                        "{id:?}: AUTH's Authentication Method"
                    );
                    // v5 [MQTT-4.12.0-2] Continue authentication, or Success at the end
                    // of a re-authentication.
                    assert!(
                        auth.reason_code == ReasonCode::CONTINUE_AUTHENTICATION
                            || (auth.reason_code == ReasonCode::SUCCESS && c.accepted),
                        "{id:?}: AUTH with {:?}",
                        auth.reason_code
                    );
                    if auth.reason_code == ReasonCode::CONTINUE_AUTHENTICATION {
                        c.challenged = true;
                    }
                }
                Packet::Disconnect(_) => {
                    assert!(
                        version.is_v5(),
                        "{id:?}: DISCONNECT to a {version:?} client"
                    );
                    c.must_close = true;
                }
                Packet::Publish(_)
                | Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)
                | Packet::SubAck(_)
                | Packet::UnsubAck(_)
                | Packet::PingResp => {}
                other => panic!("{id:?}: a server does not send {other:?}"),
            }
            // v5 [MQTT-3.2.0-1] v3.1.1 [MQTT-3.2.0-1] CONNACK (or AUTH) comes first.
            if c.sent_packets == 0 && !c.connack_lost {
                assert!(
                    matches!(packet, Packet::ConnAck(_) | Packet::Auth(_)),
                    "{id:?}: first packet is {packet:?}"
                );
            }
            c.sent_packets += 1;
        }
        c.outbound = buf;
    }

    fn qos(u: &mut Unstructured<'_>) -> Result<QoS> {
        Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])?)
    }

    fn small_pid(u: &mut Unstructured<'_>) -> Result<PacketId> {
        Ok(PacketId::new(u.int_in_range(1..=6)?).unwrap_or(PacketId::new(1).unwrap()))
    }

    fn payload(u: &mut Unstructured<'_>, max: usize) -> Result<bytes::Bytes> {
        let len = u.int_in_range(0..=max)?;
        Ok(bytes::Bytes::copy_from_slice(u.bytes(len.min(u.len()))?))
    }

    fn topic(u: &mut Unstructured<'_>) -> Result<TopicName> {
        TopicName::try_from(*u.choose(&TOPICS)?)
            .map_err(|_| mqtt_codec::arbitrary::Error::IncorrectFormat)
    }

    /// A CONNECT from a small set of clients, with the options that drive the session rules.
    fn connect(u: &mut Unstructured<'_>) -> Result<(Packet, bool)> {
        let version = *u.choose(&[
            ProtocolVersion::V5,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
            ProtocolVersion::V3_1,
        ])?;
        // (`choose_index` reads the same bytes as `choose`: the corpus keeps its meaning.)
        let index = u.choose_index(CLIENT_IDS.len())?;
        let slow = index == SLOW_CLIENT;
        let client_id = Utf8String::try_from(CLIENT_IDS.get(index).copied().unwrap_or("a"))
            .map_err(|_| mqtt_codec::arbitrary::Error::IncorrectFormat)?;
        let mut c = Connect::new(version, client_id);
        c.clean_start = u.arbitrary()?;
        c.keep_alive = *u.choose(&[0, 0, 1, 2, 10, 60])?;
        let v5 = version.is_v5();
        if v5 {
            let p = &mut c.properties;
            p.session_expiry_interval =
                *u.choose(&[None, Some(0), Some(1), Some(30), Some(u32::MAX)])?;
            if u.ratio(1, 3)? {
                p.receive_maximum = NonZeroU16::new(u.int_in_range(1..=3)?);
            }
            if u.ratio(1, 4)? {
                p.maximum_packet_size = NonZeroU32::new(u.int_in_range(8..=40)?);
            }
            if u.ratio(1, 3)? {
                p.topic_alias_maximum = Some(u.int_in_range(0..=2)?);
            }
        }
        if u.ratio(1, 3)? {
            let mut will = Will {
                topic: topic(u)?,
                payload: payload(u, 4)?,
                qos: qos(u)?,
                retain: u.arbitrary()?,
                properties: Default::default(),
            };
            if v5 {
                will.properties.will_delay_interval =
                    *u.choose(&[None, Some(0), Some(1), Some(5)])?;
                if u.ratio(1, 4)? {
                    will.properties.message_expiry_interval = Some(u.int_in_range(0..=3)?);
                }
            }
            c.will = Some(will);
        }
        // Without reading more input (the corpus keeps its meaning): client "b" gives a User
        // Name and client "c" authenticates with a method (5.0), each with a policy selector
        // made of the options already chosen.
        let selector = (c.keep_alive as u8).wrapping_add(if c.clean_start { 3 } else { 0 });
        match index {
            1 => {
                c.username = Utf8String::try_from(format!("user{}", selector % 9).as_str()).ok();
            }
            2 if v5 => {
                c.properties
                    .set_authentication_method(Utf8String::try_from("m").ok());
                let _ = c.properties.set_authentication_data(Some(&[selector]));
            }
            _ => {}
        }
        Ok((Packet::from(c), slow))
    }

    /// What a connected client sends: SUBSCRIBE, UNSUBSCRIBE, PUBLISH, acknowledgements with
    /// small packet identifiers (so that they meet the broker's), PINGREQ, DISCONNECT.
    fn session_packet(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<Packet> {
        let v5 = version.is_v5();
        Ok(match u.int_in_range(0..=11)? {
            0 | 1 => {
                let mut filters = Vec::new();
                for _ in 0..u.int_in_range(1..=2)? {
                    let f = TopicFilter::try_from(*u.choose(&FILTERS)?)
                        .map_err(|_| mqtt_codec::arbitrary::Error::IncorrectFormat)?;
                    let mut o = SubscriptionOptions::qos(qos(u)?);
                    if v5 {
                        o.no_local = u.ratio(1, 4)? && f.shared().is_none();
                        o.retain_as_published = u.arbitrary()?;
                        o.retain_handling = *u.choose(&[
                            RetainHandling::SendAtSubscribe,
                            RetainHandling::SendIfNew,
                            RetainHandling::DoNotSend,
                        ])?;
                    }
                    filters.push((f, o));
                }
                let mut s = Subscribe {
                    packet_id: small_pid(u)?,
                    properties: Default::default(),
                    filters,
                };
                if v5 && u.ratio(1, 4)? {
                    let id = u.int_in_range(1..=3)?;
                    s.properties
                        .push_subscription_identifier(id)
                        .map_err(|_| mqtt_codec::arbitrary::Error::IncorrectFormat)?;
                }
                Packet::Subscribe(s)
            }
            2 => {
                let f = TopicFilter::try_from(*u.choose(&FILTERS)?)
                    .map_err(|_| mqtt_codec::arbitrary::Error::IncorrectFormat)?;
                Packet::Unsubscribe(Unsubscribe {
                    packet_id: small_pid(u)?,
                    properties: Default::default(),
                    filters: vec![f],
                })
            }
            3..=5 => {
                let mut p = Publish::new(topic(u)?, payload(u, 6)?);
                p.qos = qos(u)?;
                p.retain = u.ratio(1, 4)?;
                if p.qos != QoS::AtMostOnce {
                    p.packet_id = Some(small_pid(u)?);
                    p.dup = u.ratio(1, 4)?;
                }
                if v5 {
                    if u.ratio(1, 4)? {
                        p.properties.topic_alias = NonZeroU16::new(u.int_in_range(1..=3)?);
                        if u.ratio(1, 2)? {
                            p.topic = TopicName::empty();
                        }
                    }
                    if u.ratio(1, 6)? {
                        p.properties.message_expiry_interval = Some(u.int_in_range(0..=3)?);
                    }
                }
                Packet::Publish(p)
            }
            6 => Packet::PubAck(PubAck::new(small_pid(u)?)),
            7 => {
                let mut r = PubRec::new(small_pid(u)?);
                if v5 && u.ratio(1, 4)? {
                    r.reason_code = ReasonCode::UNSPECIFIED_ERROR;
                }
                Packet::PubRec(r)
            }
            8 => Packet::PubRel(PubRel::new(small_pid(u)?)),
            9 => Packet::PubComp(PubComp::new(small_pid(u)?)),
            10 => Packet::PingReq,
            _ => {
                let code = *u.choose(&[
                    ReasonCode::NORMAL_DISCONNECTION,
                    ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
                    ReasonCode::UNSPECIFIED_ERROR,
                ])?;
                let mut d = Disconnect::new(if v5 {
                    code
                } else {
                    ReasonCode::NORMAL_DISCONNECTION
                });
                if v5 && u.ratio(1, 4)? {
                    d.properties.session_expiry_interval = Some(*u.choose(&[0, 1, 30])?);
                }
                Packet::Disconnect(d)
            }
        })
    }

    /// Interprets `data` as operations on one broker — open, bytes (raw, arbitrary valid
    /// packets, CONNECTs, session packets), transport close, time passing, restart — and checks
    /// every output: no panic; no transmit after `Close` (or after the transport closed the
    /// connection, a DISCONNECT or a refusing CONNACK), at most one `Close` per connection;
    /// every transmit is whole packets, valid for the connection's version, of the kinds a
    /// server sends, CONNACK first and once; `poll_timeout` later than the time just handled.
    pub fn run(data: &[u8]) {
        run_with(data, TOLERATE_KNOWN_BUGS);
    }

    /// `run`, tolerating the known bugs or not.
    pub fn run_with(data: &[u8], tolerate_known_bugs: bool) {
        let mut u = Unstructured::new(data);
        let mut host = Host::new(tolerate_known_bugs);
        for _ in 0..512 {
            if u.is_empty() || step(&mut host, &mut u).is_err() {
                break;
            }
            host.drain();
        }
        host.drain();
        host.pull_slow();
        host.drain();
    }

    fn step(host: &mut Host, u: &mut Unstructured<'_>) -> Result<()> {
        match u.int_in_range(0..=31)? {
            0 | 1 => {
                host.open();
            }
            2..=4 => {
                let id = host.pick(u)?;
                let len = u.int_in_range(0..=32)?;
                let bytes = u.bytes(len.min(u.len()))?.to_vec();
                host.send_bytes(id, &bytes);
            }
            5..=7 => {
                let id = host.pick(u)?;
                let version = match host.conns.get(&id).and_then(|c| c.version) {
                    Some(v) => v,
                    None => u.arbitrary()?,
                };
                let packet = Packet::arbitrary_for(u, version)?;
                host.send_packet(id, &packet);
            }
            8..=11 => {
                let id = host.pick(u)?;
                let (packet, slow) = connect(u)?;
                if let Some(c) = host.conns.get_mut(&id) {
                    c.slow |= slow;
                }
                host.send_packet(id, &packet);
            }
            12..=24 => {
                let id = host.pick(u)?;
                let version = host
                    .conns
                    .get(&id)
                    .and_then(|c| c.version)
                    .unwrap_or(ProtocolVersion::V5);
                let packet = session_packet(u, version)?;
                host.send_packet(id, &packet);
            }
            25 | 26 => {
                let id = host.pick(u)?;
                if let Some(c) = host.conns.get_mut(&id) {
                    c.transport_closed = true;
                }
                host.broker.handle_connection_closed(id, host.now);
            }
            27..=29 => {
                let ms = match u.int_in_range(0..=3)? {
                    0 => u.int_in_range(0..=2_000)?,
                    1 => u.int_in_range(0..=40_000)?,
                    2 => u.int_in_range(0..=200_000)?,
                    _ => u64::from(u.arbitrary::<u32>()?),
                };
                let target = host.now.plus_millis(ms);
                if u.arbitrary()? {
                    // Through every deadline in order, as a careful host does.
                    while let Some(t) = host.broker.poll_timeout() {
                        if t > target {
                            break;
                        }
                        host.now = t;
                        host.timeout(t);
                        host.drain();
                    }
                }
                host.now = target;
                host.timeout(target);
                host.drain();
                host.answer_deferred();
                if (ms / 1_000) % 3 == 1 {
                    host.reauthenticate();
                }
                host.pull_slow();
            }
            30 => host.restart(),
            _ => {
                // Several session packets at once, in one read.
                let id = host.pick(u)?;
                let version = host
                    .conns
                    .get(&id)
                    .and_then(|c| c.version)
                    .unwrap_or(ProtocolVersion::V5);
                let mut buf = BytesMut::new();
                for _ in 0..u.int_in_range(1..=4)? {
                    let _ = session_packet(u, version)?.encode(version, &mut buf);
                }
                if !buf.is_empty() {
                    host.send_bytes(id, &buf);
                }
            }
        }
        Ok(())
    }
}
