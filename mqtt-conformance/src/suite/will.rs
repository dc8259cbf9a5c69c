//! Will Messages: published on an abnormal close, discarded on DISCONNECT 0x00, published on
//! DISCONNECT 0x04, Will Delay against Session Expiry and reconnection, Will Retain, Will QoS,
//! Will Properties forwarded, and the rejection of a Will the broker cannot honour.

use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{
    Connect, Disconnect, Packet, PayloadFormatIndicator, Publish, ReasonCode, RetainHandling,
    SubscriptionOptions, Will,
};

use super::TestCase;
use super::session::{end_session, session_connect};
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, publish, qos, topic, utf8};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "will.abnormal_close",
            ["MQTT-3.1.2-7", "MQTT-3.1.2-8"],
            "a close without DISCONNECT publishes the Will Message",
            [],
            false,
            abnormal_close
        ),
        case!(
            v311,
            "will.abnormal_close",
            ["MQTT-3.1.2-8"],
            "a close without DISCONNECT publishes the Will Message",
            [],
            false,
            abnormal_close
        ),
        case!(
            v5,
            "will.normal_disconnect",
            ["MQTT-3.14.4-3", "MQTT-3.1.2-8"],
            "DISCONNECT 0x00 discards the Will Message",
            [],
            false,
            normal_disconnect
        ),
        case!(
            v311,
            "will.normal_disconnect",
            ["MQTT-3.14.4-3", "MQTT-3.1.2-8", "MQTT-3.1.2-10"],
            "DISCONNECT discards the Will Message",
            [],
            false,
            normal_disconnect
        ),
        case!(
            v5,
            "will.disconnect_with_will",
            ["MQTT-3.1.2-8"],
            "DISCONNECT 0x04 (Disconnect with Will Message) publishes the Will Message",
            [],
            false,
            disconnect_with_will
        ),
        case!(
            v5,
            "will.published_once",
            ["MQTT-3.1.2-10"],
            "a Will Message is published once: not again on a later close of the same client id",
            [],
            false,
            published_once
        ),
        case!(
            v311,
            "will.published_once",
            ["MQTT-3.1.2-10"],
            "a Will Message is published once: not again on a later close of the same client id",
            [],
            false,
            published_once
        ),
        case!(
            v311,
            "will.no_will_flag",
            ["MQTT-3.1.2-12"],
            "a connection with Will Flag 0 publishes nothing when it ends abnormally (not an earlier connection's Will)",
            [Wildcards],
            false,
            no_will_flag
        ),
        case!(
            v5,
            "will.retain_0",
            ["MQTT-3.1.2-14"],
            "Will Retain 0: the Will is published with RETAIN 0 and not retained",
            [],
            false,
            retain_0
        ),
        case!(
            v311,
            "will.retain_0",
            ["MQTT-3.1.2-16"],
            "Will Retain 0: the Will is published with RETAIN 0 and not retained",
            [],
            false,
            retain_0
        ),
        case!(
            v5,
            "will.retain_1",
            ["MQTT-3.1.2-15"],
            "Will Retain 1: the Will is published as a retained message",
            [Retain],
            false,
            retain_1
        ),
        case!(
            v311,
            "will.retain_1",
            ["MQTT-3.1.2-17"],
            "Will Retain 1: the Will is published as a retained message",
            [Retain],
            false,
            retain_1
        ),
        case!(
            v5,
            "will.qos",
            ["MQTT-3.1.2-8", "MQTT-3.8.4-8"],
            "Will QoS 1 and 2: the Will is delivered at the lower of the Will QoS and the granted QoS",
            [Qos1, Wildcards],
            false,
            will_qos
        ),
        case!(
            v311,
            "will.qos",
            ["MQTT-3.1.2-8", "MQTT-3.8.4-6"],
            "Will QoS 1 and 2: the Will is delivered at the lower of the Will QoS and the granted QoS",
            [Qos1, Wildcards],
            false,
            will_qos
        ),
        case!(
            v5,
            "will.delay_elapsed",
            ["MQTT-3.1.2-8"],
            "Will Delay 2, Session Expiry 10: the Will comes after the delay, not at the close",
            [],
            false,
            delay_elapsed
        ),
        case!(
            v5,
            "will.delay_session_ends_at_close",
            ["MQTT-3.1.2-8"],
            "Will Delay 30, Session Expiry 0: the session ends at the close, and the Will comes then",
            [],
            false,
            delay_session_ends_at_close
        ),
        case!(
            v5,
            "will.delay_session_expires",
            ["MQTT-3.1.2-8"],
            "Will Delay 30, Session Expiry 2: the Will comes when the session expires, before the delay",
            [],
            false,
            delay_session_expires
        ),
        case!(
            v5,
            "will.delay_reconnect",
            ["MQTT-3.1.3-9", "MQTT-3.1.2-8"],
            "Will Delay 2: a reconnection within the delay means the Will is never published",
            [],
            false,
            delay_reconnect
        ),
        case!(
            v5,
            "will.properties",
            [
                "MQTT-3.1.3-10",
                "MQTT-3.3.2-4",
                "MQTT-3.3.2-6",
                "MQTT-3.3.2-15",
                "MQTT-3.3.2-16",
                "MQTT-3.3.2-17",
                "MQTT-3.3.2-18",
                "MQTT-3.3.2-20"
            ],
            "the Will Properties are forwarded with the Will (User Properties in order)",
            [],
            false,
            properties
        ),
        case!(
            v5,
            "will.qos_not_supported",
            ["MQTT-3.2.2-12"],
            "a Will QoS above the broker's Maximum QoS: the connection is refused and closed",
            [QosLimited],
            false,
            qos_not_supported
        ),
        case!(
            v5,
            "will.retain_not_supported",
            ["MQTT-3.2.2-13"],
            "Will Retain 1 on a broker without retained messages: the connection is refused and closed",
            [NoRetain],
            false,
            retain_not_supported
        ),
    ]
}

/// A Will Message: `payload` to `will_topic` at QoS `q`, Will Retain `retain`.
fn will(will_topic: &str, payload: &str, q: u8, retain: bool) -> Result<Will, Stop> {
    Ok(Will {
        topic: topic(will_topic)?,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: qos(q),
        retain,
        properties: Default::default(),
    })
}

/// A CONNECT for client `name` with Clean Start 1 and this Will.
fn with_will(cx: &Ctx, name: &str, w: Will) -> Connect {
    let mut c = cx.connect_packet(name);
    c.will = Some(w);
    c
}

/// A subscriber of `filter` at QoS `q` (5.0: Retain As Published, so the RETAIN flag shows
/// how the broker published).
async fn subscriber(cx: &Ctx, name: &str, filter: &str, q: u8) -> Result<Conn, Stop> {
    let mut s = cx.connect(name).await?;
    let mut o = SubscriptionOptions::qos(qos(q));
    if cx.v5() {
        o.retain_as_published = true;
        o.retain_handling = RetainHandling::SendAtSubscribe;
    }
    let codes = s.subscribe_to(1, filter, o, "MQTT-3.8.4-1").await?;
    match codes.first() {
        Some(c) if !c.is_error() => Ok(s),
        other => Err(Failure::plain(
            format!("the broker to grant a subscription to {filter:?}"),
            format!("SUBACK {other:?}"),
        )
        .into()),
    }
}

/// The next packet on `s` must be the Will: a PUBLISH of `payload` to `will_topic`. Returns it
/// (acknowledged).
async fn expect_will(
    s: &mut Conn,
    will_topic: &str,
    payload: &str,
    statement: &'static str,
    within: Option<Duration>,
) -> Result<Publish, Stop> {
    let within = within.unwrap_or(s.answer_within());
    let what = format!("the Will Message {payload:?} on {will_topic:?}");
    let m = match s.recv_within(within).await? {
        Some(Received::Packet(Packet::Publish(m))) => m,
        Some(Received::Packet(other)) => {
            return Err(Failure::of(statement, what, brief(&other)).into());
        }
        Some(Received::Closed) => {
            return Err(Failure::of(statement, what, "the connection closed").into());
        }
        None => {
            return Err(Failure::of(statement, what, format!("nothing within {within:?}")).into());
        }
    };
    ensure!(
        &*m.topic == will_topic && m.payload.as_ref() == payload.as_bytes(),
        statement,
        what,
        "{}",
        brief(&Packet::Publish(m.clone()))
    );
    ack(s, &m).await?;
    Ok(m)
}

/// Acknowledges a received PUBLISH as a subscriber (QoS 2: PUBREC, the PUBREL, PUBCOMP).
async fn ack(s: &mut Conn, m: &Publish) -> TestResult {
    let Some(id) = m.packet_id else {
        return Ok(());
    };
    if m.qos as u8 == 1 {
        s.send(mqtt_codec::PubAck::new(id)).await?;
    } else {
        s.send(mqtt_codec::PubRec::new(id)).await?;
        s.expect_type(mqtt_codec::PacketType::PubRel, "MQTT-4.3.3-8")
            .await?;
        s.send(mqtt_codec::PubComp::new(id)).await?;
    }
    Ok(())
}

async fn abnormal_close(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let (c, _) = cx
        .connect_with("c", with_will(&cx, "c", will(&w, "gone", 0, false)?))
        .await?;
    c.drop_abruptly().await;
    let st = if cx.v5() {
        "MQTT-3.1.2-7"
    } else {
        "MQTT-3.1.2-8"
    };
    expect_will(&mut s, &w, "gone", st, None).await?;
    s.expect_quiet("MQTT-3.1.2-8", "the Will once", None)
        .await?;
    s.disconnect().await;
    Ok(())
}

async fn normal_disconnect(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let (c, _) = cx
        .connect_with("c", with_will(&cx, "c", will(&w, "gone", 0, false)?))
        .await?;
    c.disconnect().await;
    s.expect_quiet(
        "MQTT-3.14.4-3",
        "no Will Message after DISCONNECT 0x00",
        Some(Duration::from_millis(1500)),
    )
    .await?;
    s.disconnect().await;
    Ok(())
}

async fn disconnect_with_will(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let (mut c, _) = cx
        .connect_with("c", with_will(&cx, "c", will(&w, "asked", 0, false)?))
        .await?;
    c.send(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE))
        .await?;
    expect_will(&mut s, &w, "asked", "MQTT-3.1.2-8", None).await?;
    s.disconnect().await;
    drop(c);
    Ok(())
}

async fn published_once(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    // A session that outlives the connection (5.0: Session Expiry 10 s; 3.1.1: Clean
    // Session 0), so that the Will would still be in it were it not removed once published.
    let mut first = session_connect(&cx, "c", cx.v5(), Some(10));
    first.will = Some(will(&w, "gone", 0, false)?);
    let (c, _) = cx.connect_with("c", first).await?;
    c.drop_abruptly().await;
    expect_will(&mut s, &w, "gone", "MQTT-3.1.2-8", None).await?;
    // The same client id again, without a Will, resuming (Clean Start 0) that session.
    let (c, ack) = cx
        .connect_with("c", session_connect(&cx, "c", false, Some(10)))
        .await?;
    if !ack.session_present {
        c.disconnect().await;
        s.disconnect().await;
        end_session(&cx, "c").await;
        return Err(Stop::NotApplicable(
            "the broker kept no session (Session Present 0 on the reconnect): no stored Will to \
             remove"
                .into(),
        ));
    }
    c.drop_abruptly().await;
    s.expect_quiet(
        "MQTT-3.1.2-10",
        "no second publication of the Will Message",
        Some(Duration::from_millis(1500)),
    )
    .await?;
    s.disconnect().await;
    end_session(&cx, "c").await;
    Ok(())
}

async fn no_will_flag(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &cx.topic("#"), 0).await?;
    // An earlier connection of the client id had a Will, discarded by its DISCONNECT.
    let (c, _) = cx
        .connect_with("c", with_will(&cx, "c", will(&w, "old", 0, false)?))
        .await?;
    c.disconnect().await;
    let c = cx.connect("c").await?;
    c.drop_abruptly().await;
    s.expect_quiet(
        "MQTT-3.1.2-12",
        "no Will Message from a connection with Will Flag 0",
        Some(Duration::from_millis(1500)),
    )
    .await?;
    s.disconnect().await;
    Ok(())
}

async fn retain_0(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.1.2-14"
    } else {
        "MQTT-3.1.2-16"
    };
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let (c, _) = cx
        .connect_with("c", with_will(&cx, "c", will(&w, "plain", 0, false)?))
        .await?;
    c.drop_abruptly().await;
    let m = expect_will(&mut s, &w, "plain", st, None).await?;
    ensure!(
        !m.retain,
        st,
        "the Will published with RETAIN 0",
        "{}",
        brief(&Packet::Publish(m.clone()))
    );
    // A new subscriber gets no retained Will.
    let mut s2 = subscriber(&cx, "s2", &w, 0).await?;
    s2.expect_quiet(st, "no retained Will for a new subscriber", None)
        .await?;
    s.disconnect().await;
    s2.disconnect().await;
    Ok(())
}

async fn retain_1(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.1.2-15"
    } else {
        "MQTT-3.1.2-17"
    };
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let (c, _) = cx
        .connect_with("c", with_will(&cx, "c", will(&w, "kept", 0, true)?))
        .await?;
    c.drop_abruptly().await;
    let m = expect_will(&mut s, &w, "kept", st, None).await?;
    if cx.v5() {
        // Retain As Published: the RETAIN flag is the one the Will was published with.
        ensure!(
            m.retain,
            st,
            "the Will published with RETAIN 1 (subscription with Retain As Published)",
            "{}",
            brief(&Packet::Publish(m.clone()))
        );
    }
    let mut s2 = subscriber(&cx, "s2", &w, 0).await?;
    let r = expect_will(&mut s2, &w, "kept", st, None).await;
    // Clean up the retained message before judging.
    let mut p = cx.connect("p").await?;
    let mut clear = publish(&w, "", 0, 0)?;
    clear.retain = true;
    p.send(clear).await?;
    p.disconnect().await;
    let r = r?;
    ensure!(
        r.retain,
        st,
        "the retained Will sent to a new subscriber with RETAIN 1",
        "{}",
        brief(&Packet::Publish(r.clone()))
    );
    s.disconnect().await;
    s2.disconnect().await;
    Ok(())
}

async fn will_qos(cx: Ctx) -> TestResult {
    let min_st = if cx.v5() {
        "MQTT-3.8.4-8"
    } else {
        "MQTT-3.8.4-6"
    };
    let max = cx.caps().maximum_qos;
    let mut s = cx.connect("s").await?;
    let f = cx.topic("w/+");
    let codes = s
        .subscribe_to(1, &f, SubscriptionOptions::qos(qos(2)), "MQTT-3.8.4-1")
        .await?;
    let granted = match codes.first() {
        Some(c) if !c.is_error() => c.0,
        other => {
            return Err(Failure::plain("a granted subscription", format!("{other:?}")).into());
        }
    };
    for q in 1..=max.min(2) {
        let w = cx.topic(&format!("w/{q}"));
        let name = format!("c{q}");
        let (c, _) = cx
            .connect_with(&name, with_will(&cx, &name, will(&w, "q", q, false)?))
            .await?;
        c.drop_abruptly().await;
        let m = expect_will(&mut s, &w, "q", "MQTT-3.1.2-8", None).await?;
        let want = q.min(granted);
        ensure!(
            m.qos as u8 == want,
            min_st,
            format!("the Will of QoS {q} delivered at QoS {want} (granted {granted})"),
            "{}",
            brief(&Packet::Publish(m.clone()))
        );
    }
    s.disconnect().await;
    Ok(())
}

/// A CONNECT for `name` (Clean Start 1) with Session Expiry `expiry` and a Will with delay
/// `delay`.
fn delayed_will(
    cx: &Ctx,
    name: &str,
    w: &str,
    payload: &str,
    delay: u32,
    expiry: Option<u32>,
) -> Result<Connect, Stop> {
    let mut c = session_connect(cx, name, true, expiry);
    let mut wl = will(w, payload, 0, false)?;
    wl.properties.will_delay_interval = Some(delay);
    c.will = Some(wl);
    Ok(c)
}

async fn delay_elapsed(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let (c, _) = cx
        .connect_with("c", delayed_will(&cx, "c", &w, "late", 2, Some(10))?)
        .await?;
    c.drop_abruptly().await;
    // Not before the 2 s delay (1 s of tolerance for an early timer).
    s.expect_quiet(
        "MQTT-3.1.2-8",
        "no Will before the Will Delay Interval (2 s) has elapsed",
        Some(Duration::from_secs(1)),
    )
    .await?;
    // After it: the remaining ~1 s plus the answer time.
    let within = s.answer_within() + Duration::from_secs(1);
    expect_will(&mut s, &w, "late", "MQTT-3.1.2-8", Some(within)).await?;
    s.disconnect().await;
    end_session(&cx, "c").await;
    Ok(())
}

async fn delay_session_ends_at_close(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    // Session Expiry 0: the session ends at the close, long before the 30 s delay.
    let (a, _) = cx
        .connect_with("a", delayed_will(&cx, "a", &w, "a", 30, None)?)
        .await?;
    a.drop_abruptly().await;
    expect_will(&mut s, &w, "a", "MQTT-3.1.2-8", None).await?;
    s.disconnect().await;
    Ok(())
}

async fn delay_session_expires(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    // Session Expiry 2: the session ends 2 s after the close, long before the 30 s delay.
    let (b, _) = cx
        .connect_with("b", delayed_will(&cx, "b", &w, "b", 30, Some(2))?)
        .await?;
    b.drop_abruptly().await;
    // 2 s expiry, then the answer time.
    let within = s.answer_within() + Duration::from_secs(2);
    let r = expect_will(&mut s, &w, "b", "MQTT-3.1.2-8", Some(within)).await;
    s.disconnect().await;
    end_session(&cx, "b").await;
    r.map(|_| ())
}

async fn delay_reconnect(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let (c, _) = cx
        .connect_with("c", delayed_will(&cx, "c", &w, "never", 2, Some(10))?)
        .await?;
    c.drop_abruptly().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (c, _) = cx
        .connect_with("c2", session_connect(&cx, "c", false, Some(10)))
        .await?;
    // Watch past the 2 s delay (1.5 s of tolerance).
    s.expect_quiet(
        "MQTT-3.1.3-9",
        "no Will: the client reconnected within the Will Delay Interval",
        Some(Duration::from_millis(3200)),
    )
    .await?;
    c.disconnect().await;
    s.disconnect().await;
    end_session(&cx, "c").await;
    Ok(())
}

async fn properties(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    let resp = cx.topic("resp");
    let mut s = subscriber(&cx, "s", &w, 0).await?;
    let mut wl = will(&w, "props", 0, false)?;
    let props = &mut wl.properties;
    props.payload_format_indicator = Some(PayloadFormatIndicator::Utf8);
    props.message_expiry_interval = Some(60);
    props.set_content_type(Some(utf8("text/plain; charset=utf-8")));
    props
        .set_response_topic(Some(topic(&resp)?))
        .map_err(|e| Failure::plain("a valid Response Topic", format!("{e:?}")))?;
    props
        .set_correlation_data(Some(&[0x00, 0xff, 0x10, 0x7f]))
        .map_err(|e| Failure::plain("valid Correlation Data", format!("{e:?}")))?;
    for (k, v) in [("k", "1"), ("a", "2"), ("k", "3")] {
        props.push_user_property(utf8(k), utf8(v));
    }
    let (c, _) = cx.connect_with("c", with_will(&cx, "c", wl)).await?;
    c.drop_abruptly().await;
    let m = expect_will(&mut s, &w, "props", "MQTT-3.1.2-8", None).await?;
    let p = &m.properties;
    let ev = brief(&Packet::Publish(m.clone()));
    ensure!(
        p.payload_format_indicator == Some(PayloadFormatIndicator::Utf8),
        "MQTT-3.3.2-4",
        "Payload Format Indicator 1 forwarded",
        "{ev}"
    );
    ensure!(
        p.message_expiry_interval
            .is_some_and(|e| (1..=60).contains(&e)),
        "MQTT-3.3.2-6",
        "Message Expiry Interval at most 60 (60 minus the time waited)",
        "{ev}"
    );
    ensure!(
        p.content_type() == Some("text/plain; charset=utf-8"),
        "MQTT-3.3.2-20",
        "Content Type \"text/plain; charset=utf-8\" forwarded",
        "{ev}"
    );
    ensure!(
        p.response_topic() == Some(resp.as_str()),
        "MQTT-3.3.2-15",
        format!("Response Topic {resp:?} forwarded"),
        "{ev}"
    );
    ensure!(
        p.correlation_data() == Some(&[0x00, 0xff, 0x10, 0x7f][..]),
        "MQTT-3.3.2-16",
        "Correlation Data 00 ff 10 7f forwarded",
        "{ev}"
    );
    let users: Vec<(&str, &str)> = p.user_properties().collect();
    let want = [("k", "1"), ("a", "2"), ("k", "3")];
    let mut sorted = users.clone();
    sorted.sort_unstable();
    let mut want_sorted = want.to_vec();
    want_sorted.sort_unstable();
    ensure!(
        sorted == want_sorted,
        "MQTT-3.3.2-17",
        "all User Properties (k,1) (a,2) (k,3) forwarded",
        "{users:?}"
    );
    ensure!(
        users == want,
        "MQTT-3.1.3-10",
        "the User Properties in their order (k,1) (a,2) (k,3)",
        "{users:?}"
    );
    ensure!(
        users == want,
        "MQTT-3.3.2-18",
        "the User Properties in their order (k,1) (a,2) (k,3)",
        "{users:?}"
    );
    s.disconnect().await;
    Ok(())
}

/// Sends `connect`, which the broker must refuse: a CONNACK with an error code (or none), then
/// the close.
async fn refused(cx: &Ctx, connect: Connect, statement: &'static str, should: u8) -> TestResult {
    let mut c = cx.open("c").await?;
    c.send(connect).await?;
    let code = c.expect_close(statement, None).await?;
    if let Some(code) = code {
        ensure!(
            code.is_error(),
            statement,
            format!("the connection refused (CONNACK {should:#04x} advised) and closed"),
            "CONNACK {:#04x}",
            code.0
        );
    }
    Ok(())
}

async fn qos_not_supported(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    refused(
        &cx,
        with_will(&cx, "c", will(&w, "x", 2, false)?),
        "MQTT-3.2.2-12",
        0x9B,
    )
    .await
}

async fn retain_not_supported(cx: Ctx) -> TestResult {
    let w = cx.topic("w");
    refused(
        &cx,
        with_will(&cx, "c", will(&w, "x", 0, true)?),
        "MQTT-3.2.2-13",
        0x9A,
    )
    .await
}
