//! Properties (5.0): the Property Length, Request Response Information and Request Problem
//! Information, Message Expiry, the properties a broker forwards unaltered, and Reason
//! Strings and User Properties left out of packets they would make bigger than the
//! client's Maximum Packet Size.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_codec::{
    ConnAck, Connect, Packet, PayloadFormatIndicator, Properties, PubAck, PubRec, PubRel,
    ReasonCode, Unsubscribe,
};

use super::TestCase;
use super::malformed::{Reply, closes, refuses_connect};
use super::raw::{frame, lstr, p_str, publish_frame, subscribe_frame};
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, filter, pid, publish, topic, utf8};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "props.connect_without_property_length",
            ["MQTT-2.2.2-1"],
            "a 5.0 CONNECT without its Property Length is refused",
            [],
            false,
            connect_without_property_length
        ),
        case!(
            v5,
            "props.request_response_information",
            ["MQTT-3.1.2-28"],
            "no Response Information in CONNACK when Request Response Information is 0 or absent",
            [],
            false,
            request_response_information
        ),
        case!(
            v5,
            "props.request_problem_information",
            ["MQTT-3.1.2-29"],
            "with Request Problem Information 0, no Reason String or User Property in acknowledgements",
            [],
            false,
            request_problem_information
        ),
        case!(
            v5,
            "props.message_expiry",
            ["MQTT-3.3.2-5", "MQTT-3.3.2-6"],
            "queued messages: expired ones are not delivered, others carry the interval minus the wait",
            [Qos1],
            false,
            message_expiry
        ),
        case!(
            v5,
            "props.forwarded_unaltered",
            [
                "MQTT-3.3.2-4",
                "MQTT-3.3.2-15",
                "MQTT-3.3.2-16",
                "MQTT-3.3.2-17",
                "MQTT-3.3.2-18",
                "MQTT-3.3.2-20"
            ],
            "Payload Format Indicator, Response Topic, Correlation Data, User Properties (in order), Content Type forwarded unaltered",
            [],
            false,
            forwarded_unaltered
        ),
        case!(
            v5,
            "props.response_topic_wildcard",
            ["MQTT-3.3.2-14"],
            "a PUBLISH with a wildcard in its Response Topic is not forwarded",
            [Qos1],
            false,
            response_topic_wildcard
        ),
        case!(
            v5,
            "props.small_maximum_packet_size",
            [
                "MQTT-3.2.2-19",
                "MQTT-3.2.2-20",
                "MQTT-3.9.2-1",
                "MQTT-3.9.2-2",
                "MQTT-3.11.2-1",
                "MQTT-3.11.2-2",
                "MQTT-3.7.2-2",
                "MQTT-3.7.2-3",
                "MQTT-3.14.2-3",
                "MQTT-3.14.2-4"
            ],
            "no Reason String or User Property that makes CONNACK, SUBACK, UNSUBACK, PUBCOMP or DISCONNECT exceed the client's Maximum Packet Size",
            [],
            false,
            small_maximum_packet_size
        ),
        case!(
            v5,
            "props.small_maximum_packet_size_puback",
            ["MQTT-3.4.2-2", "MQTT-3.4.2-3"],
            "no Reason String or User Property that makes a PUBACK exceed the client's Maximum Packet Size",
            [Qos1],
            false,
            small_maximum_packet_size_puback
        ),
        case!(
            v5,
            "props.small_maximum_packet_size_qos2",
            [
                "MQTT-3.5.2-2",
                "MQTT-3.5.2-3",
                "MQTT-3.6.2-2",
                "MQTT-3.6.2-3"
            ],
            "no Reason String or User Property that makes a PUBREC or PUBREL exceed the client's Maximum Packet Size",
            [Qos2],
            false,
            small_maximum_packet_size_qos2
        ),
    ]
}

async fn connect_without_property_length(cx: Ctx) -> TestResult {
    // Protocol name, level 5, Clean Start, Keep Alive 60, then the Client Identifier at once.
    let mut b = lstr(b"MQTT");
    b.extend_from_slice(&[5, 0x02, 0x00, 0x3C]);
    b.extend_from_slice(&lstr(cx.client_id("a").as_bytes()));
    refuses_connect(
        &cx,
        "a",
        &frame(0x10, &b),
        "CONNECT without a Property Length",
        "MQTT-2.2.2-1",
    )
    .await
}

async fn request_response_information(cx: Ctx) -> TestResult {
    for (i, rri) in [None, Some(false)].into_iter().enumerate() {
        let name = format!("a{i}");
        let mut c = cx.connect_packet(&name);
        c.properties.request_response_information = rri;
        let (conn, ack) = cx.connect_with(&name, c).await?;
        ensure!(
            ack.properties.response_information().is_none(),
            "MQTT-3.1.2-28",
            format!("no Response Information with Request Response Information {rri:?}"),
            "CONNACK with Response Information {:?}",
            ack.properties.response_information()
        );
        conn.disconnect().await;
    }
    Ok(())
}

/// The properties of an acknowledgement, CONNACK or DISCONNECT.
fn ack_properties(p: &Packet) -> Option<&Properties> {
    match p {
        Packet::ConnAck(a) => Some(&a.properties),
        Packet::PubAck(a) => Some(&a.properties),
        Packet::PubRec(a) => Some(&a.properties),
        Packet::PubRel(a) => Some(&a.properties),
        Packet::PubComp(a) => Some(&a.properties),
        Packet::SubAck(a) => Some(&a.properties),
        Packet::UnsubAck(a) => Some(&a.properties),
        Packet::Disconnect(a) => Some(&a.properties),
        Packet::Auth(a) => Some(&a.properties),
        _ => None,
    }
}

/// Whether `p` carries a Reason String or a User Property.
fn has_problem_info(p: &Packet) -> bool {
    ack_properties(p)
        .is_some_and(|props| props.reason_string().is_some() || props.has_user_properties())
}

/// A failure of a control run, which checks no statement: the statement it names is dropped.
fn unattributed(e: Stop) -> Stop {
    match e {
        Stop::Fail(mut f) => {
            f.statement = None;
            f.expected = format!("{} (in the control run)", f.expected);
            Stop::Fail(f)
        }
        other => other,
    }
}

/// Connects `name` with Request Problem Information `rpi`, draws acknowledgements (UNSUBACK,
/// PUBCOMP, SUBACK, and PUBACK, PUBREC, PUBCOMP as the broker's Maximum QoS allows) and
/// returns them.
async fn problem_acks(cx: &Ctx, name: &str, rpi: Option<bool>) -> Result<Vec<Packet>, Stop> {
    use mqtt_codec::PacketType as T;
    let st = "MQTT-3.1.2-29";
    let mut c = cx.connect_packet(name);
    c.properties.request_problem_information = rpi;
    let (mut conn, _) = cx.connect_with(name, c).await?;
    let mut acks = Vec::new();
    // UNSUBSCRIBE of a filter never subscribed: UNSUBACK 0x11.
    conn.send(Unsubscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        filters: vec![filter(&cx.topic("none"))?],
    })
    .await?;
    acks.push(conn.expect_type(T::UnsubAck, st).await?);
    // PUBREL of an identifier not in use: PUBCOMP 0x92.
    conn.send(PubRel::new(pid(77))).await?;
    acks.push(conn.expect_type(T::PubComp, st).await?);
    // A subscription: SUBACK.
    conn.send(mqtt_codec::Subscribe {
        packet_id: pid(4),
        properties: Properties::default(),
        filters: vec![(
            filter(&cx.topic("s"))?,
            mqtt_codec::SubscriptionOptions::qos(mqtt_codec::QoS::AtMostOnce),
        )],
    })
    .await?;
    acks.push(conn.expect_type(T::SubAck, st).await?);
    let t = cx.topic("nobody");
    if cx.caps().maximum_qos >= 1 {
        // QoS 1 to a topic nobody subscribes to: PUBACK (0x10 or 0x00).
        conn.send(publish(&t, "x", 1, 2)?).await?;
        acks.push(conn.expect_type(T::PubAck, st).await?);
    }
    if cx.caps().maximum_qos >= 2 {
        conn.send(publish(&t, "x", 2, 3)?).await?;
        acks.push(conn.expect_type(T::PubRec, st).await?);
        conn.send(PubRel::new(pid(3))).await?;
        acks.push(conn.expect_type(T::PubComp, st).await?);
    }
    conn.disconnect().await;
    Ok(acks)
}

async fn request_problem_information(cx: Ctx) -> TestResult {
    for p in problem_acks(&cx, "a", Some(false)).await? {
        ensure!(
            !has_problem_info(&p),
            "MQTT-3.1.2-29",
            format!(
                "a {} without Reason String or User Property (Request Problem Information 0)",
                p.packet_type()
            ),
            "{}",
            brief(&p)
        );
    }
    // Control: with Request Problem Information absent (1), does the broker send any?
    let control = problem_acks(&cx, "c", None).await.map_err(unattributed)?;
    if !control.iter().any(has_problem_info) {
        return Err(Stop::NotApplicable(
            "with Request Problem Information 1 the broker sends no Reason String or User \
             Property on these acknowledgements either: the effect of 0 is not observable"
                .into(),
        ));
    }
    Ok(())
}

async fn message_expiry(cx: Ctx) -> TestResult {
    let t = cx.topic("e");
    // A subscriber whose session outlives its connection.
    let session = |clean: bool| {
        let mut c = cx.connect_packet("s");
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(30);
        c
    };
    let (mut s, _) = cx.connect_with("s", session(true)).await?;
    s.sub(&t, 1).await?;
    // Live delivery: Message Expiry Interval 60 arrives as 60 (or 59 after a second's rounding).
    let mut p = cx.connect("p").await?;
    let mut live = publish(&t, "live", 1, 1)?;
    live.properties.message_expiry_interval = Some(60);
    p.send(live).await?;
    p.expect_type(mqtt_codec::PacketType::PubAck, "MQTT-3.3.2-6")
        .await?;
    let got = s.publish("MQTT-3.3.2-6").await?;
    if let Some(id) = got.packet_id {
        s.send(PubAck::new(id)).await?;
    }
    let e = got.properties.message_expiry_interval;
    ensure!(
        matches!(e, Some(58..=60)),
        "MQTT-3.3.2-6",
        "Message Expiry Interval 60 (minus at most 2 s) on live delivery",
        "{e:?}"
    );
    s.drop_abruptly().await;
    // Queued while the subscriber is away: 1 s (expires), 60 s, and none.
    for (i, (payload, expiry)) in [("short", Some(1)), ("long", Some(60)), ("none", None)]
        .into_iter()
        .enumerate()
    {
        let id = u16::try_from(i).unwrap_or(0) + 2;
        let mut m = publish(&t, payload, 1, id)?;
        m.properties.message_expiry_interval = expiry;
        p.send(m).await?;
        p.expect_type(mqtt_codec::PacketType::PubAck, "MQTT-3.3.2-5")
            .await?;
    }
    // Waited 2.2 s: the 1 s message has expired, the 60 s one has at most 58 s left.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (mut s, ack) = cx.connect_with("s", session(false)).await?;
    if !ack.session_present {
        return Err(Failure::plain(
            "the session (Session Expiry Interval 30) kept across the reconnection",
            "Session Present 0",
        )
        .into());
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = s.publish("MQTT-3.3.2-5").await?;
        if let Some(id) = m.packet_id {
            s.send(PubAck::new(id)).await?;
        }
        let body = String::from_utf8_lossy(&m.payload).into_owned();
        let e = m.properties.message_expiry_interval;
        match body.as_str() {
            "short" => {
                return Err(Failure::of(
                    "MQTT-3.3.2-5",
                    "the message with Message Expiry Interval 1 not delivered after 2.2 s",
                    brief(&Packet::Publish(m)),
                )
                .into());
            }
            // Tolerance: 2.2 s waited, so 57 or 58 s left; 3 s more for a slow run.
            "long" => ensure!(
                matches!(e, Some(55..=58)),
                "MQTT-3.3.2-6",
                "Message Expiry Interval 60 minus the 2.2 s waited (55 to 58)",
                "{e:?}"
            ),
            "none" => ensure!(
                e.is_none(),
                "MQTT-3.3.2-6",
                "no Message Expiry Interval on a message sent without one",
                "{e:?}"
            ),
            _ => {}
        }
        seen.push(body);
    }
    s.expect_quiet("MQTT-3.3.2-5", "no expired message", None)
        .await?;
    // End the session.
    let mut d = mqtt_codec::Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(0);
    s.send(d).await?;
    s.drop_abruptly().await;
    p.disconnect().await;
    Ok(())
}

async fn forwarded_unaltered(cx: Ctx) -> TestResult {
    let t = cx.topic("f");
    let mut s = cx.connect("s").await?;
    s.sub(&t, 0).await?;
    let mut p = cx.connect("p").await?;
    let pairs = [("z", "1"), ("a", "2"), ("z", "3"), ("m", "4"), ("e", "")];
    let response = cx.topic("resp/x");
    let corr: &[u8] = &[0x00, 0xFF, 0x10, 0x80, 0x7F];
    let ctype = "application/json; charset=utf-8";
    let bad = |e: mqtt_codec::Violation| Failure::plain("a valid property", format!("{e:?}"));
    let mut m = publish(&t, "h\u{e9}llo", 0, 0)?;
    m.properties.payload_format_indicator = Some(PayloadFormatIndicator::Utf8);
    m.properties.set_content_type(Some(utf8(ctype)));
    m.properties
        .set_response_topic(Some(topic(&response)?))
        .map_err(bad)?;
    m.properties.set_correlation_data(Some(corr)).map_err(bad)?;
    for (k, v) in pairs {
        m.properties.push_user_property(utf8(k), utf8(v));
    }
    p.send(m).await?;
    let got = s.publish("MQTT-3.3.2-4").await?;
    let props = &got.properties;
    let shown = brief(&Packet::Publish(got.clone()));
    ensure!(
        props.payload_format_indicator == Some(PayloadFormatIndicator::Utf8),
        "MQTT-3.3.2-4",
        "Payload Format Indicator 1",
        "{shown}"
    );
    ensure!(
        props.response_topic() == Some(response.as_str()),
        "MQTT-3.3.2-15",
        format!("Response Topic {response:?}"),
        "{shown}"
    );
    ensure!(
        props.correlation_data() == Some(corr),
        "MQTT-3.3.2-16",
        format!("Correlation Data {}", crate::hex(corr)),
        "{shown}"
    );
    ensure!(
        props.content_type() == Some(ctype),
        "MQTT-3.3.2-20",
        format!("Content Type {ctype:?}"),
        "{shown}"
    );
    let users: Vec<(&str, &str)> = props.user_properties().collect();
    let mut sorted_got = users.clone();
    sorted_got.sort_unstable();
    let mut sorted_want = pairs.to_vec();
    sorted_want.sort_unstable();
    ensure!(
        sorted_got == sorted_want,
        "MQTT-3.3.2-17",
        format!("the User Properties {pairs:?}"),
        "{users:?}"
    );
    ensure!(
        users == pairs,
        "MQTT-3.3.2-18",
        format!("the User Properties in their order {pairs:?}"),
        "{users:?}"
    );
    // Payload Format Indicator 0 and none: neither becomes 1.
    for (i, pfi) in [Some(PayloadFormatIndicator::Unspecified), None]
        .into_iter()
        .enumerate()
    {
        let mut m = publish(&t, &format!("m{i}"), 0, 0)?;
        m.properties.payload_format_indicator = pfi;
        p.send(m).await?;
        let got = s.publish("MQTT-3.3.2-4").await?;
        ensure!(
            got.properties.payload_format_indicator != Some(PayloadFormatIndicator::Utf8),
            "MQTT-3.3.2-4",
            format!("Payload Format Indicator {pfi:?} (0 or absent) forwarded as sent"),
            "{}",
            brief(&Packet::Publish(got.clone()))
        );
    }
    p.disconnect().await;
    s.disconnect().await;
    Ok(())
}

async fn response_topic_wildcard(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let mut w = cx.connect("w").await?;
    w.sub(&t, 0).await?;
    let mut conn = cx.connect("a").await?;
    let mut props = Vec::new();
    props.extend_from_slice(&p_str(0x08, cx.topic("r/+").as_bytes()));
    let wire = publish_frame(true, 0x02, t.as_bytes(), Some(4), &props, b"x");
    conn.send_raw_lenient(&wire, "QoS 1 PUBLISH with Response Topic .../r/+")
        .await?;
    // The broker may refuse it (PUBACK >= 0x80, or a close) or drop it: it must not forward
    // a Response Topic with a wildcard.
    match conn.recv_within(cx.answer_within()).await? {
        Some(Received::Packet(Packet::PubAck(_))) | None => {}
        Some(Received::Packet(Packet::Disconnect(d))) => {
            ensure!(
                d.reason_code.is_error(),
                "MQTT-3.3.2-14",
                "at most an error DISCONNECT, then the close",
                "DISCONNECT {:#04x}",
                d.reason_code.0
            );
            closes(&mut conn, "MQTT-3.3.2-14", Reply::AnyError).await?;
        }
        Some(Received::Closed) => {}
        Some(Received::Packet(other)) => {
            return Err(Failure::of(
                "MQTT-3.3.2-14",
                "a PUBACK, a DISCONNECT or the close",
                brief(&other),
            )
            .into());
        }
    }
    w.expect_quiet(
        "MQTT-3.3.2-14",
        "no delivery of a PUBLISH whose Response Topic has a wildcard",
        None,
    )
    .await?;
    w.disconnect().await;
    Ok(())
}

/// The smallest Maximum Packet Size the tests announce: no Reason String or User Property
/// fits in any acknowledgement of this size.
const TINY: u32 = 8;

/// The smallest Maximum Packet Size that holds the broker's CONNACK (at least [`TINY`]): the
/// broker may refuse a client it cannot send its CONNACK to.
async fn small_limit(cx: &Ctx) -> Result<u32, Stop> {
    let (conn, ack) = cx.connect_with("m", cx.connect_packet("m")).await?;
    let size = Packet::ConnAck(ack)
        .encoded_len(cx.version().protocol())
        .map_err(|e| Failure::plain("a packet of known size", format!("{e}")))?;
    conn.disconnect().await;
    Ok(u32::try_from(size).unwrap_or(u32::MAX).max(TINY))
}

/// Connects `name` with Maximum Packet Size `max` (none when `None`; sent as raw bytes, so
/// that the connection does not enforce it itself: the tests measure what comes).
async fn connect_limited(
    cx: &Ctx,
    name: &str,
    max: Option<u32>,
    edit: impl FnOnce(&mut Connect),
) -> Result<(Conn, Option<ConnAck>), Stop> {
    let mut c = cx.connect_packet(name);
    c.properties.maximum_packet_size = max.and_then(NonZeroU32::new);
    edit(&mut c);
    let mut wire = BytesMut::new();
    Packet::Connect(Box::new(c))
        .encode(cx.version().protocol(), &mut wire)
        .map_err(|e| Failure::plain("a CONNECT the tester can encode", format!("{e}")))?;
    let mut conn = cx.open(name).await?;
    let what = match max {
        Some(m) => format!("CONNECT with Maximum Packet Size {m}"),
        None => "CONNECT without Maximum Packet Size (control)".to_owned(),
    };
    conn.send_raw(&wire, &what).await?;
    let ack = match conn.recv_within(cx.answer_within()).await? {
        Some(Received::Packet(Packet::ConnAck(a))) => Some(a),
        Some(Received::Closed) => None,
        other => {
            return Err(Failure::plain("a CONNACK", format!("{other:?}")).into());
        }
    };
    Ok((conn, ack))
}

/// A packet a Maximum Packet Size test drew from the broker, the limit the test holds it to,
/// and the statements on its Reason String and User Properties.
struct Drawn {
    packet: Packet,
    limit: u32,
    rs: &'static str,
    up: &'static str,
}

impl Drawn {
    fn new(packet: Packet, limit: u32, rs: &'static str, up: &'static str) -> Self {
        Self {
            packet,
            limit,
            rs,
            up,
        }
    }
}

/// A Reason String or User Property in `p` must leave it within `max` bytes.
fn fits(cx: &Ctx, p: &Packet, max: u32, rs: &'static str, up: &'static str) -> TestResult {
    let Some(props) = ack_properties(p) else {
        return Ok(());
    };
    let size = p
        .encoded_len(cx.version().protocol())
        .map_err(|e| Failure::plain("a packet of known size", format!("{e}")))?;
    let within = u32::try_from(size).unwrap_or(u32::MAX) <= max;
    ensure!(
        props.reason_string().is_none() || within,
        rs,
        format!(
            "no Reason String that makes the {} exceed the Maximum Packet Size {max}",
            p.packet_type()
        ),
        "{size} bytes with a Reason String: {}",
        brief(p)
    );
    ensure!(
        !props.has_user_properties() || within,
        up,
        format!(
            "no User Property that makes the {} exceed the Maximum Packet Size {max}",
            p.packet_type()
        ),
        "{size} bytes with User Properties: {}",
        brief(p)
    );
    Ok(())
}

/// Runs `draw` with the Maximum Packet Sizes (the limited run) and checks every packet with
/// [`fits`]; then runs it again without them (the control) and returns
/// [`Stop::NotApplicable`] unless the broker, unlimited, sends at least one of those packets
/// with a Reason String or User Property that its limit would not hold.
async fn limited_and_control<F, Fut>(cx: &Ctx, draw: F) -> TestResult
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Drawn>, Stop>>,
{
    for d in draw(true).await? {
        fits(cx, &d.packet, d.limit, d.rs, d.up)?;
    }
    let control = draw(false).await.map_err(unattributed)?;
    for d in &control {
        if !has_problem_info(&d.packet) {
            continue;
        }
        let size = d
            .packet
            .encoded_len(cx.version().protocol())
            .map_err(|e| Failure::plain("a packet of known size", format!("{e}")))?;
        if u32::try_from(size).unwrap_or(u32::MAX) > d.limit {
            return Ok(());
        }
    }
    Err(Stop::NotApplicable(
        "without a Maximum Packet Size the broker sends none of these packets with a Reason \
         String or User Property too big for the limits: leaving them out is not observable"
            .into(),
    ))
}

async fn small_maximum_packet_size(cx: Ctx) -> TestResult {
    let max = small_limit(&cx).await?;
    limited_and_control(&cx, |limited| small_draw(&cx, max, limited)).await
}

/// The packets of [`small_maximum_packet_size`]: with Maximum Packet Size `max` (a refusing
/// CONNACK at [`TINY`]) when `limited`, without one otherwise.
async fn small_draw(cx: &Ctx, max: u32, limited: bool) -> Result<Vec<Drawn>, Stop> {
    use mqtt_codec::PacketType as T;
    let (x, a) = if limited { ("x", "a") } else { ("xc", "ac") };
    let lim = |m: u32| limited.then_some(m);
    let mut drawn = Vec::new();
    // A CONNACK refusing an unknown Authentication Method (or just the close).
    let (_, ack) = connect_limited(cx, x, lim(TINY), |c| {
        c.properties
            .set_authentication_method(Some(utf8("no-such-method-mqttconf")));
    })
    .await?;
    if let Some(ack) = ack {
        drawn.push(Drawn::new(
            Packet::ConnAck(ack),
            TINY,
            "MQTT-3.2.2-19",
            "MQTT-3.2.2-20",
        ));
    }
    let (mut conn, ack) = connect_limited(cx, a, lim(max), |_| {}).await?;
    let Some(ack) = ack else {
        return Err(Failure::plain(
            format!("a CONNACK for a CONNECT with Maximum Packet Size {max}"),
            "the broker closed the connection",
        )
        .into());
    };
    drawn.push(Drawn::new(
        Packet::ConnAck(ack),
        max,
        "MQTT-3.2.2-19",
        "MQTT-3.2.2-20",
    ));
    conn.send(mqtt_codec::Subscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        filters: vec![(
            filter(&cx.topic("s"))?,
            mqtt_codec::SubscriptionOptions::qos(mqtt_codec::QoS::AtMostOnce),
        )],
    })
    .await?;
    let p = conn.expect_type(T::SubAck, "MQTT-3.9.2-1").await?;
    drawn.push(Drawn::new(p, max, "MQTT-3.9.2-1", "MQTT-3.9.2-2"));
    conn.send(Unsubscribe {
        packet_id: pid(2),
        properties: Properties::default(),
        filters: vec![filter(&cx.topic("none"))?],
    })
    .await?;
    let p = conn.expect_type(T::UnsubAck, "MQTT-3.11.2-1").await?;
    drawn.push(Drawn::new(p, max, "MQTT-3.11.2-1", "MQTT-3.11.2-2"));
    conn.send(PubRel::new(pid(77))).await?;
    let p = conn.expect_type(T::PubComp, "MQTT-3.7.2-2").await?;
    drawn.push(Drawn::new(p, max, "MQTT-3.7.2-2", "MQTT-3.7.2-3"));
    // A Malformed Packet (SUBSCRIBE with flags 0000): a DISCONNECT, if any.
    let f = cx.topic("s");
    let wire = subscribe_frame(true, 0x80, 3, &[], &[(f.as_bytes(), 0)]);
    conn.send_raw_lenient(&wire, "SUBSCRIBE with first byte 0x80")
        .await?;
    loop {
        match conn.recv_within(cx.answer_within()).await? {
            Some(Received::Packet(p @ Packet::Disconnect(_))) => {
                drawn.push(Drawn::new(p, max, "MQTT-3.14.2-3", "MQTT-3.14.2-4"));
            }
            Some(Received::Closed) => break,
            Some(Received::Packet(p)) => {
                return Err(Failure::plain("a DISCONNECT or the close", brief(&p)).into());
            }
            None => {
                return Err(Failure::plain(
                    "the connection closed after a SUBSCRIBE with first byte 0x80",
                    "still open",
                )
                .into());
            }
        }
    }
    Ok(drawn)
}

async fn small_maximum_packet_size_puback(cx: Ctx) -> TestResult {
    let max = small_limit(&cx).await?;
    limited_and_control(&cx, |limited| puback_draw(&cx, max, limited)).await
}

/// The PUBACK of [`small_maximum_packet_size_puback`].
async fn puback_draw(cx: &Ctx, max: u32, limited: bool) -> Result<Vec<Drawn>, Stop> {
    let name = if limited { "a" } else { "ac" };
    let (mut conn, ack) = connect_limited(cx, name, limited.then_some(max), |_| {}).await?;
    if ack.is_none() {
        return Err(Failure::plain("a CONNACK", "the broker closed the connection").into());
    }
    // No subscriber: PUBACK 0x10 (or 0x00).
    conn.send(publish(&cx.topic("nobody"), "x", 1, 1)?).await?;
    let p = conn
        .expect_type(mqtt_codec::PacketType::PubAck, "MQTT-3.4.2-2")
        .await?;
    conn.disconnect().await;
    Ok(vec![Drawn::new(p, max, "MQTT-3.4.2-2", "MQTT-3.4.2-3")])
}

async fn small_maximum_packet_size_qos2(cx: Ctx) -> TestResult {
    let max = small_limit(&cx).await?;
    limited_and_control(&cx, |limited| qos2_draw(&cx, max, limited)).await
}

/// The PUBREC and PUBREL of [`small_maximum_packet_size_qos2`].
async fn qos2_draw(cx: &Ctx, max: u32, limited: bool) -> Result<Vec<Drawn>, Stop> {
    use mqtt_codec::PacketType as T;
    let (a, sname, pname, q) = if limited {
        ("a", "s", "p", "q")
    } else {
        ("ac", "sc", "pc", "qc")
    };
    let mut drawn = Vec::new();
    let (mut conn, ack) = connect_limited(cx, a, limited.then_some(max), |_| {}).await?;
    if ack.is_none() {
        return Err(Failure::plain("a CONNACK", "the broker closed the connection").into());
    }
    conn.send(publish(&cx.topic("nobody"), "x", 2, 1)?).await?;
    let p = conn.expect_type(T::PubRec, "MQTT-3.5.2-2").await?;
    drawn.push(Drawn::new(p, max, "MQTT-3.5.2-2", "MQTT-3.5.2-3"));
    conn.send(PubRel::new(pid(1))).await?;
    conn.expect_type(T::PubComp, "MQTT-3.5.2-2").await?;
    conn.disconnect().await;
    // A PUBREL to a subscriber whose Maximum Packet Size just holds the QoS 2 PUBLISH.
    let t = cx.topic(q);
    let m = publish(&t, "x", 2, 1)?;
    let size = Packet::Publish(m.clone())
        .encoded_len(cx.version().protocol())
        .map_err(|e| Failure::plain("a packet of known size", format!("{e}")))?;
    let max = u32::try_from(size).unwrap_or(u32::MAX).max(max);
    let (mut s, ack) = connect_limited(cx, sname, limited.then_some(max), |_| {}).await?;
    if ack.is_none() {
        return Err(Failure::plain("a CONNACK", "the broker closed the connection").into());
    }
    s.sub(&t, 2).await?;
    let mut p = cx.connect(pname).await?;
    p.send(m).await?;
    p.expect_type(T::PubRec, "MQTT-3.6.2-2").await?;
    p.send(PubRel::new(pid(1))).await?;
    let got = s.publish("MQTT-3.6.2-2").await?;
    let id = got.packet_id.unwrap_or(pid(1));
    s.send(PubRec::new(id)).await?;
    let rel = s.expect_type(T::PubRel, "MQTT-3.6.2-2").await?;
    drawn.push(Drawn::new(rel, max, "MQTT-3.6.2-2", "MQTT-3.6.2-3"));
    s.send(mqtt_codec::PubComp::new(id)).await?;
    s.disconnect().await;
    p.disconnect().await;
    Ok(drawn)
}
