//! A client session inside the firmware: the client engine against the broker engine, bytes
//! carried in memory. A publisher and a subscriber with persistent sessions; QoS 1 and QoS 2
//! messages; both connections lost mid-flow (the subscriber's acknowledgements and the
//! publisher's never arrive) and resumed. Every message must be acknowledged to the publisher
//! and reach the subscriber, each QoS 2 message exactly once.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use bytes::Bytes;
use mqtt_codec::{
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions, TopicFilter,
    TopicName,
};
use mqtt_session::Timestamp;
use mqtt_session::broker::{AllowAll, Broker, BrokerConfig, ConnectionId, Output};
use mqtt_session::client::{Client, ClientConfig, ClientEvent, ClientOutput};

/// One client's transport: bytes on their way, each way.
struct Link {
    conn: ConnectionId,
    /// Client to broker, not delivered yet.
    up: Vec<u8>,
    /// Broker to client, not delivered yet.
    down: Vec<u8>,
    /// Whether what the client sends reaches the broker (false: held, lost with the link).
    deliver_up: bool,
    /// Whether what the broker sends reaches the client.
    deliver_down: bool,
}

struct Peer {
    client: Client,
    link: Option<Link>,
    events: Vec<ClientEvent>,
}

struct World {
    broker: Broker<AllowAll>,
    peers: Vec<Peer>,
    now: Timestamp,
}

impl World {
    fn add(&mut self, config: ClientConfig) -> Result<usize, String> {
        let client = Client::new(config).map_err(|e| format!("client config: {e}"))?;
        self.peers.push(Peer {
            client,
            link: None,
            events: Vec::new(),
        });
        Ok(self.peers.len() - 1)
    }

    fn peer(&mut self, i: usize) -> Result<&mut Peer, String> {
        self.peers.get_mut(i).ok_or_else(|| format!("no peer {i}"))
    }

    /// Opens a transport for peer `i` and runs until quiet; the CONNACK must accept it.
    /// Returns Session Present.
    fn connect(&mut self, i: usize) -> Result<bool, String> {
        let conn = self.broker.handle_connection_opened(self.now);
        let now = self.now;
        let peer = self.peer(i)?;
        peer.link = Some(Link {
            conn,
            up: Vec::new(),
            down: Vec::new(),
            deliver_up: true,
            deliver_down: true,
        });
        peer.client.handle_connected(now);
        self.run()?;
        let peer = self.peer(i)?;
        match peer
            .events
            .iter()
            .rev()
            .find(|e| matches!(e, ClientEvent::Connected { .. }))
        {
            Some(ClientEvent::Connected {
                session_present, ..
            }) => Ok(*session_present),
            _ => Err(format!("peer {i} not connected: {:?}", peer.events)),
        }
    }

    /// Peer `i`'s transport is lost: both engines are told; what was on its way is gone.
    fn cut(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let peer = self.peer(i)?;
        let link = peer.link.take().ok_or("no link to cut")?;
        peer.client.handle_disconnected(now);
        self.broker.handle_connection_closed(link.conn, now);
        self.run()
    }

    /// Moves outputs and bytes until nothing moves.
    fn run(&mut self) -> Result<(), String> {
        for _ in 0..10_000 {
            let mut moved = false;
            let now = self.now;
            for peer in &mut self.peers {
                while let Some(out) = peer.client.poll_output() {
                    moved = true;
                    match out {
                        ClientOutput::TransmitReady => {
                            while let Some(data) = peer.client.poll_transmit(4096, now) {
                                if let Some(link) = peer.link.as_mut() {
                                    link.up.extend_from_slice(&data);
                                }
                            }
                        }
                        ClientOutput::Close { farewell } => {
                            if let Some(link) = peer.link.as_mut() {
                                link.up.extend_from_slice(&farewell);
                            }
                        }
                        ClientOutput::Event(e) => peer.events.push(e),
                        _ => {}
                    }
                }
            }
            while let Some(out) = self.broker.poll_output() {
                moved = true;
                match out {
                    Output::Persist { seq, .. } => self.broker.handle_committed(seq),
                    Output::TransmitReady { connection } => {
                        while let Some(data) = self.broker.poll_transmit(connection, 4096, now) {
                            if let Some(link) = self
                                .peers
                                .iter_mut()
                                .filter_map(|p| p.link.as_mut())
                                .find(|l| l.conn == connection)
                            {
                                link.down.extend_from_slice(&data);
                            }
                        }
                    }
                    // (For a connection already cut, the engine's close is the host's to carry
                    // out: nothing to do here. A live one is not closed in this scenario.)
                    Output::Close { connection, .. }
                        if self
                            .peers
                            .iter()
                            .any(|p| p.link.as_ref().is_some_and(|l| l.conn == connection)) =>
                    {
                        return Err(format!("the broker closed connection {}", connection.0));
                    }
                    _ => {}
                }
            }
            for peer in &mut self.peers {
                let Some(link) = peer.link.as_mut() else {
                    continue;
                };
                if link.deliver_up && !link.up.is_empty() {
                    let data = core::mem::take(&mut link.up);
                    self.broker.handle_bytes(link.conn, &data, now);
                    moved = true;
                }
                if link.deliver_down && !link.down.is_empty() {
                    let data = core::mem::take(&mut link.down);
                    peer.client.handle_bytes(&data, now);
                    moved = true;
                }
            }
            if !moved {
                return Ok(());
            }
        }
        Err(String::from("the exchange did not settle"))
    }
}

fn persistent(version: ProtocolVersion, id: &str) -> ClientConfig {
    let mut config = ClientConfig::new(version, id);
    config.clean_start = false;
    if version == ProtocolVersion::V5 {
        config.session_expiry_interval = 3600;
    }
    config
}

/// The QoS of message `i`: 1 for even, 2 for odd.
fn qos_of(i: usize) -> QoS {
    if i.is_multiple_of(2) {
        QoS::AtLeastOnce
    } else {
        QoS::ExactlyOnce
    }
}

/// The scenario for `version`; `Ok(messages delivered)` or what went wrong.
pub(crate) fn run(version: ProtocolVersion) -> Result<usize, String> {
    const COUNT: usize = 8;
    let mut w = World {
        broker: Broker::new(BrokerConfig::default()),
        peers: Vec::new(),
        now: Timestamp::from_secs(1_700_000_000),
    };
    let publisher = w.add(persistent(version, "fw-pub"))?;
    let subscriber = w.add(persistent(version, "fw-sub"))?;
    w.connect(publisher)?;
    w.connect(subscriber)?;
    let now = w.now;
    let filter = TopicFilter::try_from("fw/#").map_err(|e| format!("{e:?}"))?;
    w.peer(subscriber)?
        .client
        .subscribe(
            vec![(filter, SubscriptionOptions::qos(QoS::ExactlyOnce))],
            Properties::default(),
            now,
        )
        .map_err(|e| format!("subscribe: {e}"))?;
    w.run()?;
    let granted = w.peer(subscriber)?.events.iter().any(|e| {
        matches!(e, ClientEvent::Subscribed { reason_codes, .. } if reason_codes.as_slice() == [ReasonCode(2)])
    });
    if !granted {
        return Err(String::from("no SUBACK granting QoS 2"));
    }

    // The subscriber's acknowledgements and the broker's to the publisher stop arriving.
    for i in [publisher, subscriber] {
        let peer = w.peer(i)?;
        if let Some(link) = peer.link.as_mut() {
            if i == publisher {
                link.deliver_down = false;
            } else {
                link.deliver_up = false;
            }
        }
    }
    for i in 0..COUNT {
        let topic = TopicName::try_from(format!("fw/{i}")).map_err(|e| format!("{e:?}"))?;
        let mut message = Publish::new(topic, Bytes::from(format!("m{i}").into_bytes()));
        message.qos = qos_of(i);
        let now = w.now;
        w.peer(publisher)?
            .client
            .publish(message, now)
            .map_err(|e| format!("publish {i}: {e}"))?;
    }
    w.run()?;
    if w.peer(publisher)?.client.in_flight() != COUNT {
        return Err(String::from("the messages are not all in flight"));
    }
    // Both transports are lost, then both sessions resume.
    w.now = w.now.plus_secs(1);
    w.cut(publisher)?;
    w.cut(subscriber)?;
    w.now = w.now.plus_secs(1);
    if !w.connect(subscriber)? || !w.connect(publisher)? {
        return Err(String::from("a session was not resumed"));
    }
    w.run()?;

    let acknowledged = w
        .peer(publisher)?
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Published { .. }))
        .count();
    if acknowledged != COUNT || w.peer(publisher)?.client.in_flight() != 0 {
        return Err(format!("{acknowledged} of {COUNT} acknowledged"));
    }
    let payloads: Vec<(QoS, Bytes)> = w
        .peer(subscriber)?
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some((m.qos, m.payload.clone())),
            _ => None,
        })
        .collect();
    for i in 0..COUNT {
        let want = format!("m{i}");
        let n = payloads
            .iter()
            .filter(|(_, p)| p.as_ref() == want.as_bytes())
            .count();
        if n == 0 {
            return Err(format!("message {i} lost"));
        }
        if qos_of(i) == QoS::ExactlyOnce && n != 1 {
            return Err(format!("QoS 2 message {i} delivered {n} times"));
        }
    }
    Ok(payloads.len())
}
