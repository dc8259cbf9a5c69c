// The checks behind the `client` fuzz target. This file is `include!`d by the fuzz target and by
// `mqtt-session/tests/fuzz_client_corpus.rs`, which replays the committed corpus on stable Rust,
// so a crash found once stays a test forever. A finding is a panic, as libFuzzer expects.
//
// The input drives one client engine as its host and its server would: transports up and down,
// arbitrary bytes from the server, valid packets of every kind (`Packet::arbitrary_for`),
// plausible CONNACKs and acknowledgements of what the client sent, time steps, and the
// application's commands. Whatever happens, the client must not panic, and what it sends must
// be valid: whole packets that decode, CONNECT first, nothing but AUTH or DISCONNECT before a
// successful CONNACK, nothing after DISCONNECT or Close, unused Packet Identifiers for new
// packets, the server's Receive Maximum, Maximum QoS, Retain Available, Maximum Packet Size and
// Topic Alias Maximum respected; each transport ends with exactly one `Disconnected` event;
// deadlines move forward.

// (`unreachable_pub`: `run` is public for the includers, inside a private module.)
#[allow(
    dead_code,
    unreachable_pub,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unwrap_used
)]
mod client_checks {
    use std::collections::{BTreeMap, BTreeSet};
    use std::num::{NonZeroU16, NonZeroU32};

    use bytes::{Bytes, BytesMut};
    use mqtt_codec::arbitrary::{Result, Unstructured};
    use mqtt_codec::{
        Auth, ConnAck, Decoder, Packet, PacketId, Properties, ProtocolVersion, PubAck, PubComp,
        PubRec, PubRel, Publish, QoS, ReasonCode, SubAck, SubscriptionOptions, TopicFilter,
        TopicName, UnsubAck, Will,
    };
    use mqtt_session::Timestamp;
    use mqtt_session::client::{
        Client, ClientConfig, ClientEvent, ClientOutput, ClientRecord, ServerLimits, StoreChange,
        decode_stored,
    };

    const TOPICS: [&str; 4] = ["a", "a/b", "b", "$SYS/x"];
    const FILTERS: [&str; 4] = ["#", "a/+", "b", "$share/g/a"];
    const METHOD: &str = "M";

    /// What a Packet Identifier the client uses is for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Use {
        Publish(QoS),
        Subscribe(usize),
        Unsubscribe(usize),
    }

    /// The host and server side of the client, with what the checks need to know.
    struct Host {
        version: ProtocolVersion,
        client: Client,
        now: Timestamp,
        /// A transport is up (from the host's point of view).
        up: bool,
        /// The client asked to close it (`Close`).
        client_closed: bool,
        /// The client sent DISCONNECT on it.
        disconnect_sent: bool,
        /// The server side of the connection: decodes what the client sends.
        decoder: Decoder,
        buf: BytesMut,
        packets_on_connection: usize,
        /// The client reported `Connected` on this connection.
        connected: bool,
        limits: Option<ServerLimits>,
        /// Packet Identifiers in use by the client (released by its events), and what for.
        in_use: BTreeMap<u16, Use>,
        /// QoS 1/2 flows whose PUBLISH or PUBREL went out on this connection, not completed.
        in_flight_here: BTreeSet<u16>,
        /// Inbound flows the client acknowledged, for plausible follow-ups (PUBREL).
        pubrecs_sent: Vec<u16>,
        handle_connected_calls: usize,
        disconnected_events: usize,
        /// What the host stored of the client's `Persist` records (key -> value).
        store: BTreeMap<[u8; 3], Bytes>,
        /// Messages of a session the server did not have, which the client may send again as
        /// new ones (DUP 0, same Packet Identifier) under its resend options.
        resendable: BTreeSet<u16>,
    }

    impl Host {
        fn drain(&mut self) {
            while let Some(out) = self.client.poll_output() {
                match out {
                    ClientOutput::TransmitReady => {
                        // Pulled in small pieces: a packet may be split anywhere.
                        while let Some(data) = self.client.poll_transmit(61, self.now) {
                            assert!(data.len() <= 61, "more than asked");
                            self.check_transmit(&data);
                        }
                    }
                    ClientOutput::Close { farewell } => {
                        assert!(self.up, "Close without a transport");
                        assert!(!self.client_closed, "Close twice");
                        if !farewell.is_empty() {
                            self.check_transmit(&farewell);
                        }
                        assert!(self.buf.is_empty(), "the stream ends inside a packet");
                        self.client_closed = true;
                    }
                    ClientOutput::Event(e) => self.check_event(e),
                    ClientOutput::Persist(r) => self.store_record(&r),
                    other => panic!("unknown output {other:?}"),
                }
            }
            // Each transport ends with exactly one `Disconnected`.
            let open = self
                .handle_connected_calls
                .checked_sub(self.disconnected_events)
                .expect("more Disconnected events than transports");
            assert!(open <= 1, "more transports than Disconnected events allow");
            assert_eq!(
                open == 1,
                self.client.has_transport(),
                "Disconnected events and the client's transport disagree"
            );
        }

        fn check_event(&mut self, e: ClientEvent) {
            match e {
                ClientEvent::Connected {
                    server,
                    session_present,
                    ..
                } => {
                    assert!(!self.connected, "Connected twice on one connection");
                    self.connected = true;
                    self.limits = Some(*server);
                    if !session_present {
                        self.resendable = self
                            .in_use
                            .iter()
                            .filter(|(_, u)| matches!(u, Use::Publish(_)))
                            .map(|(id, _)| *id)
                            .collect();
                    }
                }
                ClientEvent::Disconnected { .. } => {
                    self.disconnected_events += 1;
                    self.connected = false;
                    self.limits = None;
                    self.in_flight_here.clear();
                }
                ClientEvent::Published { packet_id, .. } => {
                    let u = self.in_use.remove(&packet_id.get());
                    assert!(
                        matches!(u, Some(Use::Publish(q)) if q != QoS::AtMostOnce),
                        "Published for {packet_id} which was {u:?}"
                    );
                    self.in_flight_here.remove(&packet_id.get());
                }
                ClientEvent::PublishDropped {
                    packet_id: Some(id),
                    ..
                } => {
                    let u = self.in_use.remove(&id.get());
                    assert!(u.is_none() || matches!(u, Some(Use::Publish(_))));
                    self.in_flight_here.remove(&id.get());
                }
                ClientEvent::Subscribed {
                    packet_id,
                    reason_codes,
                } => {
                    let u = self.in_use.remove(&packet_id.get());
                    assert!(
                        u.is_none()
                            || matches!(u, Some(Use::Subscribe(n)) if n == reason_codes.len()),
                        "Subscribed for {packet_id} which was {u:?}"
                    );
                }
                ClientEvent::Unsubscribed { packet_id, .. } => {
                    self.in_use.remove(&packet_id.get());
                }
                ClientEvent::Message(p) => {
                    assert!(!p.topic.is_empty(), "a message without its topic");
                    assert!(
                        p.properties.topic_alias.is_none(),
                        "alias left in a message"
                    );
                }
                _ => {}
            }
        }

        fn check_transmit(&mut self, data: &Bytes) {
            assert!(!data.is_empty(), "empty transmit");
            assert!(self.up, "transmit without a transport");
            assert!(!self.client_closed, "transmit after Close");
            // v5 v3.1.1 [MQTT-3.14.4-1] nothing after DISCONNECT.
            assert!(!self.disconnect_sent, "transmit after DISCONNECT");
            self.buf.extend_from_slice(data);
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(p)) => self.check_packet(p),
                    Ok(None) => break,
                    Err(e) => panic!("the client sent invalid bytes: {e}"),
                }
            }
            // (Pulls split packets anywhere: the stream ends between packets only at a Close.)
        }

        fn check_packet(&mut self, p: Packet) {
            self.packets_on_connection += 1;
            let first = self.packets_on_connection == 1;
            // v5 v3.1.1 [MQTT-3.1.0-1] CONNECT first, and only then.
            assert_eq!(
                first,
                matches!(p, Packet::Connect(_)),
                "CONNECT first and only first: {p:?}"
            );
            if let Some(l) = &self.limits {
                let mut b = BytesMut::new();
                let size = p.encode(self.version, &mut b).unwrap();
                // v5 [MQTT-3.2.2-15]
                assert!(
                    size <= l.maximum_packet_size as usize,
                    "packet above the server's maximum"
                );
            }
            if !self.connected {
                // v5 [MQTT-3.1.2-30] before the CONNACK: CONNECT, AUTH, DISCONNECT only.
                assert!(
                    matches!(
                        p,
                        Packet::Connect(_) | Packet::Auth(_) | Packet::Disconnect(_)
                    ),
                    "{p:?} before a successful CONNACK"
                );
            }
            match p {
                Packet::Publish(publish) => self.check_publish(&publish),
                Packet::Subscribe(s) => {
                    self.check_id(s.packet_id, Use::Subscribe(s.filters.len()), true)
                }
                Packet::Unsubscribe(u) => {
                    self.check_id(u.packet_id, Use::Unsubscribe(u.filters.len()), true)
                }
                Packet::PubRel(r) => {
                    let known = self.in_use.get(&r.packet_id.get()).copied();
                    if r.reason_code == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND {
                        // "Not found" is for a flow the client does not have; a message it
                        // has sent and not completed is acknowledged by the server's PUBREC,
                        // on whatever connection that comes (v5 [MQTT-4.4.0-2]). A message of a
                        // discarded session waiting to go again as a new one has no flow yet.
                        let pending_as_new = self.resendable.contains(&r.packet_id.get());
                        assert!(
                            pending_as_new || !matches!(known, Some(Use::Publish(_))),
                            "PUBREL 0x92 for {}, a message of the client's session ({known:?})",
                            r.packet_id
                        );
                    } else if known.is_some() {
                        // Releasing a flow: in flight until its PUBCOMP.
                        self.in_flight_here.insert(r.packet_id.get());
                    }
                }
                Packet::Connect(c) if c.clean_start => {
                    // The client discarded its session: its messages may go again as new ones
                    // (DUP 0, same Packet Identifier) under its resend options.
                    self.resendable = self
                        .in_use
                        .iter()
                        .filter(|(_, u)| matches!(u, Use::Publish(_)))
                        .map(|(id, _)| *id)
                        .collect();
                }
                Packet::Disconnect(_) => self.disconnect_sent = true,
                Packet::Auth(_) => assert!(self.version.is_v5()),
                _ => {}
            }
        }

        fn check_publish(&mut self, p: &Publish) {
            let l = self.limits.clone().expect("PUBLISH only when connected");
            // v5 [MQTT-3.2.2-11] [MQTT-3.2.2-14]
            assert!(p.qos <= l.maximum_qos, "QoS above the server's maximum");
            assert!(
                !p.retain || l.retain_available,
                "RETAIN the server does not support"
            );
            // v5 [MQTT-3.2.2-17] [MQTT-3.3.2-9]
            if let Some(a) = p.properties.topic_alias {
                assert!(
                    a.get() <= l.topic_alias_maximum,
                    "topic alias above the maximum"
                );
            }
            // v5 [MQTT-3.3.4-6]
            assert!(p.properties.subscription_identifiers().next().is_none());
            let Some(id) = p.packet_id else {
                assert!(!p.dup, "DUP at QoS 0");
                return;
            };
            let known = self.in_use.get(&id.get()).copied();
            if p.dup {
                // A re-delivery: of a message whose flow is not complete.
                assert_eq!(
                    known,
                    Some(Use::Publish(p.qos)),
                    "DUP of an unknown flow {id}"
                );
            } else if !(self.resendable.remove(&id.get())
                && known == Some(Use::Publish(p.qos)))
            {
                self.check_id(id, Use::Publish(p.qos), false);
            }
            self.in_flight_here.insert(id.get());
            // v5 [MQTT-3.3.4-7] never more than the server's Receive Maximum in flight.
            assert!(
                self.in_flight_here.len() <= usize::from(l.receive_maximum),
                "{} in flight, Receive Maximum {}",
                self.in_flight_here.len(),
                l.receive_maximum
            );
        }

        /// v5 [MQTT-2.2.1-3] a new packet uses an identifier not in use; a request sent again
        /// (`resend_ok`) may use its own.
        fn check_id(&mut self, id: PacketId, what: Use, resend_ok: bool) {
            match self.in_use.get(&id.get()) {
                None => {
                    self.in_use.insert(id.get(), what);
                }
                Some(u) => assert!(
                    resend_ok && *u == what,
                    "Packet Identifier {id} reused while in use ({u:?}) for {what:?}"
                ),
            }
        }

        /// A `Persist` record: it encodes, a stored value reads back as the record, and the store
        /// changes as the record says.
        fn store_record(&mut self, r: &ClientRecord) {
            assert!(self.client.config().persist, "a record without persist");
            match r.change().expect("the engine's records encode") {
                StoreChange::Put { key, value } => {
                    assert_eq!(
                        decode_stored(&key, &value).as_ref(),
                        Ok(r),
                        "a stored record does not read back"
                    );
                    self.store.insert(key, value);
                }
                StoreChange::Delete(keys) => {
                    for key in keys {
                        self.store.remove(&key);
                    }
                }
                StoreChange::DeleteAllButClientId => self.store.retain(|k, _| k[0] == 0),
                other => panic!("unknown change {other:?}"),
            }
        }

        /// With records kept, the store holds exactly the client's QoS 1/2 messages and at
        /// most its inbound QoS 2 flows.
        fn check_store(&self) {
            if !self.client.config().persist {
                assert!(self.store.is_empty());
                return;
            }
            let outbound = self.store.keys().filter(|k| k[0] == 1).count();
            let messages = self.client.packet_ids_in_use() - self.client.pending_requests();
            assert_eq!(outbound, messages, "stored messages and the client's disagree");
            let inbound = self.store.keys().filter(|k| k[0] == 3).count();
            assert!(inbound <= self.client.inbound_qos2_pending());
            for key in self.store.keys().filter(|k| k[0] == 2) {
                assert!(
                    self.store.contains_key(&[1, key[1], key[2]]),
                    "a Released record without its message"
                );
            }
        }

        /// The process dies and a new one restores the client from the store: the server sees
        /// the connection drop; the restored client holds the stored messages.
        fn crash_and_restore(&mut self) {
            let config = self.client.config().clone();
            let records: Vec<ClientRecord> = self
                .store
                .iter()
                .map(|(k, v)| decode_stored(k, v).expect("stored values decode"))
                .collect();
            let stored_messages = self.store.keys().filter(|k| k[0] == 1).count();
            self.client = Client::restore(config, records).expect("the store restores");
            assert_eq!(self.client.packet_ids_in_use(), stored_messages);
            assert_eq!(
                self.client.queued() + self.client.in_flight(),
                stored_messages,
                "restored messages: queued, or released (PUBREL to send again)"
            );
            // A new process: no transport; its requests died with the old one; the stored
            // messages are its flows now (re-sent with DUP).
            self.up = false;
            self.client_closed = false;
            self.connected = false;
            self.limits = None;
            self.in_flight_here.clear();
            self.handle_connected_calls = 0;
            self.disconnected_events = 0;
            self.in_use
                .retain(|_, u| matches!(u, Use::Publish(q) if *q != QoS::AtMostOnce));
            let stored: BTreeSet<u16> = self
                .store
                .keys()
                .filter(|k| k[0] == 1)
                .map(|k| u16::from_be_bytes([k[1], k[2]]))
                .collect();
            self.in_use.retain(|id, _| stored.contains(id));
            for r in self.client_records() {
                if let ClientRecord::Outbound { publish, .. } = r
                    && let Some(id) = publish.packet_id
                {
                    self.in_use.insert(id.get(), Use::Publish(publish.qos));
                }
            }
        }

        fn client_records(&self) -> Vec<ClientRecord> {
            self.store
                .iter()
                .filter_map(|(k, v)| decode_stored(k, v).ok())
                .collect()
        }

        fn server_sends(&mut self, packet: &Packet) {
            let mut b = BytesMut::new();
            if packet.encode(self.version, &mut b).is_ok() {
                self.client.handle_bytes(&b, self.now);
            }
        }

        fn transport_up(&mut self) {
            self.handle_connected_calls += 1;
            self.up = true;
            self.client_closed = false;
            self.disconnect_sent = false;
            self.decoder = Decoder::new();
            self.buf.clear();
            self.packets_on_connection = 0;
            self.connected = false;
            self.limits = None;
            self.in_flight_here.clear();
            self.client.handle_connected(self.now);
        }

        fn transport_down(&mut self) {
            self.up = false;
            self.client.handle_disconnected(self.now);
        }

        fn step(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
            let v5 = self.version.is_v5();
            match u.int_in_range(0..=15)? {
                0 => {
                    if !self.up || self.client_closed || u.ratio(1, 8)? {
                        self.transport_up();
                    }
                }
                1 => {
                    let n = u.int_in_range(0..=48)?;
                    let bytes = u.bytes(n)?;
                    self.client.handle_bytes(bytes, self.now);
                }
                2 => {
                    let p = Packet::arbitrary_for(u, self.version)?;
                    let mut b = BytesMut::new();
                    if p.encode(self.version, &mut b).is_ok() {
                        let cut = u.int_in_range(0..=b.len())?;
                        self.client.handle_bytes(&b[..cut], self.now);
                        self.client.handle_bytes(&b[cut..], self.now);
                    }
                }
                3 => {
                    let mut ack = ConnAck::new(u.ratio(1, 3)?, ReasonCode::SUCCESS);
                    if u.ratio(1, 8)? {
                        ack.session_present = false;
                        ack.reason_code = *u.choose(&[
                            ReasonCode::NOT_AUTHORIZED,
                            ReasonCode::SERVER_UNAVAILABLE,
                            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                        ])?;
                    }
                    if v5 && ack.reason_code == ReasonCode::SUCCESS {
                        let p = &mut ack.properties;
                        p.receive_maximum = NonZeroU16::new(u.int_in_range(1..=4)?);
                        p.maximum_packet_size =
                            NonZeroU32::new(*u.choose(&[24, 40, 64, 200, 100_000])?);
                        p.topic_alias_maximum = Some(u.int_in_range(0..=3)?);
                        p.maximum_qos =
                            *u.choose(&[None, Some(QoS::AtMostOnce), Some(QoS::AtLeastOnce)])?;
                        p.retain_available = *u.choose(&[None, Some(false)])?;
                        p.server_keep_alive = *u.choose(&[None, Some(0), Some(3)])?;
                        p.session_expiry_interval = *u.choose(&[None, Some(0), Some(30)])?;
                        p.set_assigned_client_identifier(Some("assigned".try_into().unwrap()));
                        if u.ratio(7, 8)? && self.client.config().authentication_method.is_some() {
                            p.set_authentication_method(Some(METHOD.try_into().unwrap()));
                        }
                    }
                    self.server_sends(&Packet::ConnAck(ack));
                }
                4 => {
                    // Acknowledge something the client has in use.
                    let ids: Vec<(u16, Use)> = self.in_use.iter().map(|(k, v)| (*k, *v)).collect();
                    if ids.is_empty() {
                        return Ok(());
                    }
                    let (id, what) = *u.choose(&ids)?;
                    let pid = PacketId::new(id).unwrap();
                    let packet = match what {
                        Use::Publish(QoS::AtLeastOnce) => {
                            let mut a = PubAck::new(pid);
                            if v5 && u.ratio(1, 6)? {
                                a.reason_code = ReasonCode::NOT_AUTHORIZED;
                            }
                            Packet::PubAck(a)
                        }
                        Use::Publish(_) => match u.int_in_range(0..=2)? {
                            0 => {
                                let mut r = PubRec::new(pid);
                                if v5 && u.ratio(1, 6)? {
                                    r.reason_code = ReasonCode::QUOTA_EXCEEDED;
                                }
                                Packet::PubRec(r)
                            }
                            1 => Packet::PubComp(PubComp::new(pid)),
                            _ => Packet::PubAck(PubAck::new(pid)),
                        },
                        Use::Subscribe(n) => Packet::SubAck(SubAck {
                            packet_id: pid,
                            properties: Properties::default(),
                            reason_codes: vec![ReasonCode::GRANTED_QOS_1; n],
                        }),
                        Use::Unsubscribe(n) => Packet::UnsubAck(UnsubAck {
                            packet_id: pid,
                            properties: Properties::default(),
                            reason_codes: if v5 {
                                vec![ReasonCode::SUCCESS; n]
                            } else {
                                vec![]
                            },
                        }),
                    };
                    self.server_sends(&packet);
                }
                5 => {
                    // A PUBLISH from the server, maybe with a topic alias, maybe a duplicate.
                    let qos: QoS = u.arbitrary()?;
                    let topic = TopicName::try_from(*u.choose(&TOPICS)?).unwrap();
                    let len = u.int_in_range(0..=8)?;
                    let mut p = Publish::new(topic, Bytes::copy_from_slice(u.bytes(len)?));
                    p.qos = qos;
                    if qos != QoS::AtMostOnce {
                        let id = u.int_in_range(1..=4)?;
                        p.packet_id = PacketId::new(id);
                        p.dup = u.ratio(1, 4)?;
                        if qos == QoS::ExactlyOnce {
                            self.pubrecs_sent.push(id);
                        }
                    }
                    if v5 && u.ratio(1, 3)? {
                        p.properties.topic_alias = NonZeroU16::new(u.int_in_range(1..=3)?);
                        if u.ratio(1, 2)? {
                            p.topic = TopicName::empty();
                        }
                    }
                    self.server_sends(&Packet::Publish(p));
                }
                6 => {
                    if let Some(&id) = self.pubrecs_sent.first() {
                        self.pubrecs_sent.remove(0);
                        self.server_sends(&Packet::PubRel(PubRel::new(PacketId::new(id).unwrap())));
                    }
                }
                7 => {
                    // Time passes: a little, a lot, or exactly to the next deadline.
                    let at = match (u.ratio(1, 2)?, self.client.poll_timeout()) {
                        (true, Some(t)) => t.max(self.now),
                        _ => self.now.plus_millis(u.int_in_range(0..=40_000)?),
                    };
                    self.now = at;
                    self.client.handle_timeout(at);
                    if let Some(next) = self.client.poll_timeout() {
                        assert!(
                            next > at,
                            "deadline {next:?} not after handle_timeout({at:?})"
                        );
                    }
                }
                8 => {
                    let topic = TopicName::try_from(*u.choose(&TOPICS)?).unwrap();
                    let len = u.int_in_range(0..=120)?;
                    let mut p = Publish::new(topic, Bytes::copy_from_slice(u.bytes(len)?));
                    p.qos = u.arbitrary()?;
                    p.retain = u.ratio(1, 4)?;
                    if v5 && u.ratio(1, 8)? {
                        p.properties.message_expiry_interval = Some(10);
                    }
                    let _ = self.client.publish(p, self.now);
                }
                9 => {
                    let n = u.int_in_range(1..=3)?;
                    let mut filters = Vec::new();
                    for _ in 0..n {
                        let f = TopicFilter::try_from(*u.choose(&FILTERS)?).unwrap();
                        filters.push((f, SubscriptionOptions::qos(u.arbitrary()?)));
                    }
                    let _ = self
                        .client
                        .subscribe(filters, Properties::default(), self.now);
                }
                10 => {
                    let f = TopicFilter::try_from(*u.choose(&FILTERS)?).unwrap();
                    let _ = self
                        .client
                        .unsubscribe(vec![f], Properties::default(), self.now);
                }
                11 => {
                    let reason = *u.choose(&[
                        ReasonCode::NORMAL_DISCONNECTION,
                        ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
                        ReasonCode::GRANTED_QOS_1,
                    ])?;
                    let expiry = *u.choose(&[None, Some(0), Some(60)])?;
                    let _ = self.client.disconnect(reason, expiry, self.now);
                }
                12 => {
                    // The enhanced authentication exchange, from either side.
                    if v5 && u.ratio(1, 2)? {
                        let mut a = Auth {
                            reason_code: *u.choose(&[
                                ReasonCode::CONTINUE_AUTHENTICATION,
                                ReasonCode::SUCCESS,
                                ReasonCode::RE_AUTHENTICATE,
                            ])?,
                            properties: Properties::default(),
                        };
                        a.properties.set_authentication_method(Some(
                            (*u.choose(&[METHOD, "other"])?).try_into().unwrap(),
                        ));
                        self.server_sends(&Packet::Auth(a));
                    } else if u.ratio(1, 2)? {
                        let _ = self
                            .client
                            .authenticate(Some(Bytes::from_static(b"x")), self.now);
                    } else {
                        let _ = self.client.reauthenticate(None, self.now);
                    }
                }
                13 => {
                    if self.up {
                        self.transport_down();
                    }
                }
                14 => {
                    // The application acknowledges a received message (manual acknowledgement).
                    let id = PacketId::new(u.int_in_range(1..=4)?).unwrap();
                    let r = self.client.ack(id, self.now);
                    assert_eq!(r.is_ok(), self.client.config().manual_acks);
                }
                _ => {
                    if self.client.config().persist {
                        self.crash_and_restore();
                    } else if self.up {
                        self.transport_down();
                    }
                }
            }
            Ok(())
        }
    }

    fn config(u: &mut Unstructured<'_>) -> Result<ClientConfig> {
        let v5 = u.arbitrary::<bool>()?;
        let version = if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let mut c = ClientConfig::new(version, *u.choose(&["c", "", "client-1"])?);
        c.clean_start = u.arbitrary()?;
        c.keep_alive = u.int_in_range(0..=5)?;
        c.ping_timeout = core::time::Duration::from_millis(u.int_in_range(1..=5_000)?);
        c.max_queued_messages = u.int_in_range(0..=8)?;
        if v5 {
            c.session_expiry_interval = *u.choose(&[0, 30, u32::MAX])?;
            c.receive_maximum = u.int_in_range(1..=3)?;
            c.maximum_packet_size = *u.choose(&[20, 64, 1_000, 268_435_460])?;
            c.topic_alias_maximum = u.int_in_range(0..=2)?;
            if u.ratio(1, 3)? {
                c.authentication_method = Some(METHOD.into());
                c.authentication_data = Some(Bytes::from_static(b"hi"));
            }
            c.request_problem_information = u.arbitrary()?;
        }
        if u.ratio(1, 3)? {
            c.will = Some(Will {
                topic: TopicName::try_from("will").unwrap(),
                payload: Bytes::from_static(b"bye"),
                qos: u.arbitrary()?,
                retain: u.arbitrary()?,
                properties: Properties::default(),
            });
        }
        if u.ratio(1, 3)? {
            c.username = Some("user".into());
            c.password = Some(Bytes::from_static(b"pw"));
        }
        c.manual_acks = u.ratio(1, 3)?;
        c.resend_qos1_on_session_loss = u.arbitrary()?;
        c.resend_qos2_on_session_loss = u.arbitrary()?;
        c.persist = u.ratio(1, 2)?;
        Ok(c)
    }

    /// Runs the input; panics on a finding.
    pub fn run(data: &[u8]) {
        let mut u = Unstructured::new(data);
        let Ok(config) = config(&mut u) else { return };
        let version = config.protocol;
        let Ok(client) = Client::new(config) else {
            return;
        };
        let mut host = Host {
            version,
            client,
            now: Timestamp::from_secs(1_700_000_000),
            up: false,
            client_closed: false,
            disconnect_sent: false,
            decoder: Decoder::new(),
            buf: BytesMut::new(),
            packets_on_connection: 0,
            connected: false,
            limits: None,
            in_use: BTreeMap::new(),
            in_flight_here: BTreeSet::new(),
            pubrecs_sent: Vec::new(),
            handle_connected_calls: 0,
            disconnected_events: 0,
            store: BTreeMap::new(),
            resendable: BTreeSet::new(),
        };
        for _ in 0..256 {
            if u.is_empty() || host.step(&mut u).is_err() {
                break;
            }
            host.drain();
            host.check_store();
        }
        // Whatever is left: the transport goes down, and the books balance.
        host.transport_down();
        host.drain();
        assert_eq!(host.handle_connected_calls, host.disconnected_events);
        assert!(!host.client.has_transport());
        assert!(host.client.in_flight() <= host.client.packet_ids_in_use());
    }
}
