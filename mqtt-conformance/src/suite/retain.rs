//! Retained messages: stored, replaced, cleared by an empty payload, kept by a non-retained
//! message, sent on subscribe with RETAIN 1 (per Retain Handling), forwarded with RETAIN 0
//! unless Retain As Published, and the refusal of a broker without them. Every test uses its
//! own topics, so they run in parallel.

use mqtt_codec::{Publish, QoS, RetainHandling, SubscriptionOptions};

use super::TestCase;
use super::subscribe::{
    ack, drain, fail, list, next_pub, no_pub, opts, put, sub_ok, sub_opts_ok, suback_early, text,
};
use crate::conn::{Conn, Received};
use crate::ctx::{Ctx, filter, publish};
use crate::ensure;
use crate::outcome::{Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "retain.sent_on_subscribe",
            ["MQTT-3.3.1-5", "MQTT-3.3.1-9"],
            "retained messages on two topics are sent, RETAIN 1, to a new subscription (Retain Handling 0)",
            [Retain, Qos1],
            false,
            sent_on_subscribe
        ),
        case!(
            v311,
            "retain.sent_on_subscribe",
            [
                "MQTT-3.1.2-7",
                "MQTT-3.3.1-5",
                "MQTT-3.3.1-6",
                "MQTT-3.3.1-8"
            ],
            "retained messages on two topics outlive their publisher's session and are sent, RETAIN 1 and their QoS, to a new subscription",
            [Retain, Qos1],
            false,
            sent_on_subscribe
        ),
        case!(
            v5,
            "retain.replaced",
            ["MQTT-3.3.1-5", "MQTT-3.3.1-12"],
            "a second retained message replaces the first; live subscribers get both with RETAIN 0",
            [Retain, Qos1],
            false,
            replaced
        ),
        case!(
            v311,
            "retain.replaced",
            ["MQTT-3.3.1-7", "MQTT-3.3.1-9"],
            "a retained QoS 0 message replaces a retained QoS 1 one; live subscribers get both with RETAIN 0",
            [Retain, Qos1],
            false,
            replaced
        ),
        case!(
            v5,
            "retain.cleared_by_empty",
            ["MQTT-3.3.1-6"],
            "a retained empty message is forwarded and removes the retained message",
            [Retain, Qos1],
            false,
            cleared
        ),
        case!(
            v311,
            "retain.cleared_by_empty",
            ["MQTT-3.3.1-10"],
            "a retained empty message is forwarded and removes the retained message",
            [Retain, Qos1],
            false,
            cleared
        ),
        case!(
            v5,
            "retain.empty_not_stored",
            ["MQTT-3.3.1-7"],
            "a retained empty message on a fresh topic is not stored",
            [Retain, Qos1],
            false,
            empty_not_stored
        ),
        case!(
            v311,
            "retain.empty_not_stored",
            ["MQTT-3.3.1-11"],
            "a retained empty message on a fresh topic is not stored",
            [Retain, Qos1],
            false,
            empty_not_stored
        ),
        case!(
            v5,
            "retain.kept_by_non_retained",
            ["MQTT-3.3.1-8"],
            "a non-retained message neither stores nor replaces the retained message",
            [Retain, Qos1],
            false,
            kept
        ),
        case!(
            v311,
            "retain.kept_by_non_retained",
            ["MQTT-3.3.1-12"],
            "a non-retained message neither stores nor replaces the retained message",
            [Retain, Qos1],
            false,
            kept
        ),
        case!(
            v5,
            "retain.handling_0_resubscribe",
            ["MQTT-3.3.1-9", "MQTT-3.8.4-4"],
            "subscribing again with Retain Handling 0 re-sends the retained message and loses no message published meanwhile",
            [Retain, Qos1],
            false,
            handling_0
        ),
        case!(
            v311,
            "retain.resubscribe",
            ["MQTT-3.8.4-3"],
            "subscribing again re-sends the retained message and loses no message published meanwhile",
            [Retain, Qos1],
            false,
            handling_0
        ),
        case!(
            v5,
            "retain.handling_1",
            ["MQTT-3.3.1-10"],
            "Retain Handling 1 sends the retained message for a new subscription, not for an existing one",
            [Retain, Qos1],
            false,
            handling_1
        ),
        case!(
            v5,
            "retain.handling_2",
            ["MQTT-3.3.1-11"],
            "Retain Handling 2 sends no retained message; later messages still come",
            [Retain, Qos1],
            false,
            handling_2
        ),
        case!(
            v5,
            "retain.as_published",
            ["MQTT-3.3.1-12", "MQTT-3.3.1-13"],
            "Retain As Published 1 forwards the RETAIN flag as published; 0 forwards RETAIN 0",
            [Retain, Qos1],
            false,
            as_published
        ),
        case!(
            v5,
            "retain.not_supported",
            [],
            "a broker without retained messages closes the connection on a PUBLISH with RETAIN 1 (DISCONNECT 0x9A, if any)",
            [NoRetain],
            false,
            not_supported
        ),
    ]
}

/// Subscribes (SUBSCRIBE identifier 1) and collects the messages that follow: at least
/// `want` (each within the answer time), then any more until a quiet time.
async fn subscribe_collect(
    cx: &Ctx,
    conn: &mut Conn,
    filters: &[(&str, SubscriptionOptions)],
    want: usize,
) -> Result<Vec<Publish>, Stop> {
    let mut s = crate::ctx::subscribe(1, "x", SubscriptionOptions::default())?;
    s.filters.clear();
    for (f, o) in filters {
        s.filters.push((filter(f)?, *o));
    }
    conn.send(s).await?;
    let mut got = Vec::new();
    let codes = suback_early(conn, 1, &mut got).await?;
    if let Some(bad) = codes.iter().find(|c| c.is_error()) {
        return Err(fail(
            None,
            "the broker to grant the test's subscriptions".to_owned(),
            format!("SUBACK refusal {:#04x}", bad.0),
        ));
    }
    collect(cx, conn, got, want).await
}

/// Adds to `got` messages until it has `want` (each within the answer time), then any more
/// until a quiet time.
async fn collect(
    cx: &Ctx,
    conn: &mut Conn,
    mut got: Vec<Publish>,
    want: usize,
) -> Result<Vec<Publish>, Stop> {
    while got.len() < want {
        match conn.recv_within(cx.answer_within()).await? {
            Some(Received::Packet(mqtt_codec::Packet::Publish(m))) => {
                ack(conn, &m).await?;
                got.push(m);
            }
            Some(Received::Packet(mqtt_codec::Packet::PubRel(r))) => {
                conn.send(mqtt_codec::PubComp::new(r.packet_id)).await?;
            }
            _ => break,
        }
    }
    got.extend(drain(conn, cx.quiet_for()).await?);
    Ok(got)
}

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions::qos(QoS::AtLeastOnce)
}

async fn sent_on_subscribe(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let (t1, t2) = (cx.topic("r1"), cx.topic("r2"));
    let mut p = cx.connect("p").await?;
    put(&mut p, &t1, "m1", 1, true, 1).await?;
    put(&mut p, &t2, "m2", 1, true, 2).await?;
    // 3.1.1: the publisher's session (Clean Session 1) ends with its connection.
    p.disconnect().await;
    let mut s = cx.connect("s").await?;
    let q = SubscriptionOptions::qos(mqtt_codec::QoS::ExactlyOnce);
    let q = if cx.caps().maximum_qos < 2 { qos1() } else { q };
    let got = subscribe_collect(&cx, &mut s, &[(&t1, q), (&t2, q)], 2).await?;
    let (st_sent, st_flag) = if v5 {
        ("MQTT-3.3.1-9", "MQTT-3.3.1-9")
    } else {
        ("MQTT-3.3.1-6", "MQTT-3.3.1-8")
    };
    for (t, payload) in [(&t1, "m1"), (&t2, "m2")] {
        let copies: Vec<&Publish> = got.iter().filter(|m| &*m.topic == t.as_str()).collect();
        ensure!(
            copies.len() == 1 && copies.first().is_some_and(|m| text(m) == payload),
            if v5 { st_sent } else { "MQTT-3.1.2-7" },
            format!("the retained message {payload:?} on {t}, once"),
            "{}",
            list(&got)
        );
        let m = copies.first().copied();
        ensure!(
            m.is_some_and(|m| m.retain),
            st_flag,
            "RETAIN 1 on a retained message sent for a new subscription",
            "{}",
            list(&got)
        );
        if !v5 {
            ensure!(
                m.is_some_and(|m| m.qos == QoS::AtLeastOnce),
                "MQTT-3.3.1-5",
                "the retained message at its stored QoS 1",
                "{}",
                list(&got)
            );
        }
    }
    ensure!(
        got.len() == 2,
        st_sent,
        "the two retained messages and nothing else",
        "{}",
        list(&got)
    );
    s.disconnect().await;
    Ok(())
}

async fn replaced(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let t = cx.topic("r");
    let mut l = cx.connect("l").await?;
    sub_ok(&mut l, &[&t], 1).await?;
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "a", 1, true, 1).await?;
    // 5.0: both retained at QoS 1; 3.1.1: the second at QoS 0 (which the broker may keep or
    // discard, MQTT-3.3.1-7, but must replace "a" with).
    put(&mut p, &t, "b", if v5 { 1 } else { 0 }, true, 2).await?;
    let live = collect(&cx, &mut l, Vec::new(), 2).await?;
    let st_live = if v5 { "MQTT-3.3.1-12" } else { "MQTT-3.3.1-9" };
    let payloads: Vec<String> = live.iter().map(text).collect();
    ensure!(
        payloads == ["a", "b"],
        st_live,
        "the live subscriber gets \"a\" then \"b\"",
        "{}",
        list(&live)
    );
    ensure!(
        live.iter().all(|m| !m.retain),
        st_live,
        "RETAIN 0 on messages forwarded to an established subscription",
        "{}",
        list(&live)
    );
    let mut n = cx.connect("n").await?;
    let got = subscribe_collect(&cx, &mut n, &[(&t, qos1())], usize::from(v5)).await?;
    if v5 {
        ensure!(
            got.len() == 1 && got.first().is_some_and(|m| text(m) == "b" && m.retain),
            "MQTT-3.3.1-5",
            "only the replacing retained message \"b\", RETAIN 1",
            "{}",
            list(&got)
        );
    } else {
        ensure!(
            got.iter().all(|m| text(m) == "b" && m.retain) && got.len() <= 1,
            "MQTT-3.3.1-7",
            "the QoS 0 retained message \"b\" (RETAIN 1) or nothing, never the discarded \"a\"",
            "{}",
            list(&got)
        );
    }
    n.disconnect().await;
    l.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn cleared(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.3.1-6"
    } else {
        "MQTT-3.3.1-10"
    };
    let t = cx.topic("r");
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "a", 1, true, 1).await?;
    let mut l = cx.connect("l").await?;
    let got = subscribe_collect(&cx, &mut l, &[(&t, qos1())], 1).await?;
    ensure!(
        got.len() == 1 && got.first().is_some_and(|m| text(m) == "a"),
        st,
        "the retained message \"a\" (before it is cleared)",
        "{}",
        list(&got)
    );
    put(&mut p, &t, "", 1, true, 2).await?;
    let m = next_pub(
        &mut l,
        st,
        "the retained empty message, forwarded as normal",
    )
    .await?;
    ensure!(
        m.payload.is_empty() && &*m.topic == t.as_str(),
        st,
        format!("the empty message on {t}"),
        "{}",
        list(&[m])
    );
    let mut n = cx.connect("n").await?;
    let got = subscribe_collect(&cx, &mut n, &[(&t, qos1())], 0).await?;
    ensure!(
        got.is_empty(),
        st,
        "no retained message after a retained empty message removed it",
        "{}",
        list(&got)
    );
    n.disconnect().await;
    l.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn empty_not_stored(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.3.1-7"
    } else {
        "MQTT-3.3.1-11"
    };
    let t = cx.topic("r");
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "", 1, true, 1).await?;
    let mut n = cx.connect("n").await?;
    let got = subscribe_collect(&cx, &mut n, &[(&t, qos1())], 0).await?;
    ensure!(
        got.is_empty(),
        st,
        "no retained message: an empty retained message is not stored",
        "{}",
        list(&got)
    );
    n.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn kept(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.3.1-8"
    } else {
        "MQTT-3.3.1-12"
    };
    let t = cx.topic("r");
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "a", 1, true, 1).await?;
    put(&mut p, &t, "b", 1, false, 2).await?;
    let mut n = cx.connect("n").await?;
    let got = subscribe_collect(&cx, &mut n, &[(&t, qos1())], 1).await?;
    ensure!(
        got.len() == 1 && got.first().is_some_and(|m| text(m) == "a" && m.retain),
        st,
        "only the retained \"a\" (RETAIN 1): the non-retained \"b\" neither stored nor replacing it",
        "{}",
        list(&got)
    );
    n.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn handling_0(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let (st_sent, st_lost) = if v5 {
        ("MQTT-3.3.1-9", "MQTT-3.8.4-4")
    } else {
        ("MQTT-3.8.4-3", "MQTT-3.8.4-3")
    };
    let t = cx.topic("r");
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "r", 1, true, 1).await?;
    let mut s = cx.connect("s").await?;
    let o = opts(1, false, false, RetainHandling::SendAtSubscribe);
    let got = subscribe_collect(&cx, &mut s, &[(&t, o)], 1).await?;
    ensure!(
        got.len() == 1 && got.first().is_some_and(|m| text(m) == "r" && m.retain),
        st_sent,
        "the retained \"r\" (RETAIN 1) for the subscription",
        "{}",
        list(&got)
    );
    // The same subscription again, with messages published just before and after it.
    let mut x1 = publish(&t, "x1", 1, 2)?;
    x1.retain = false;
    p.send(x1).await?;
    s.send(crate::ctx::subscribe(5, &t, o)?).await?;
    put(&mut p, &t, "x2", 1, false, 3).await?;
    // The PUBACK of x1 comes before that of x2.
    let mut got = Vec::new();
    let codes = suback_early(&mut s, 5, &mut got).await?;
    ensure!(
        codes.first().is_some_and(|c| !c.is_error()),
        st_sent,
        "the repeated subscription granted",
        "SUBACK {:?}",
        codes
    );
    let got = collect(&cx, &mut s, got, 3).await?;
    let count = |payload: &str, retain: bool| {
        got.iter()
            .filter(|m| text(m) == payload && m.retain == retain)
            .count()
    };
    ensure!(
        count("r", true) == 1,
        st_sent,
        "the retained \"r\" re-sent (RETAIN 1) for the repeated subscription",
        "{}",
        list(&got)
    );
    ensure!(
        count("x1", false) >= 1 && count("x2", false) >= 1,
        st_lost,
        "\"x1\" and \"x2\", published around the repeated SUBSCRIBE, not lost (RETAIN 0)",
        "{}",
        list(&got)
    );
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn handling_1(cx: Ctx) -> TestResult {
    let t = cx.topic("r");
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "r", 1, true, 1).await?;
    let mut s = cx.connect("s").await?;
    let o = opts(1, false, false, RetainHandling::SendIfNew);
    let got = subscribe_collect(&cx, &mut s, &[(&t, o)], 1).await?;
    ensure!(
        got.len() == 1 && got.first().is_some_and(|m| text(m) == "r" && m.retain),
        "MQTT-3.3.1-10",
        "Retain Handling 1, a new subscription: the retained \"r\" (RETAIN 1)",
        "{}",
        list(&got)
    );
    let got = subscribe_collect(&cx, &mut s, &[(&t, o)], 0).await?;
    ensure!(
        got.is_empty(),
        "MQTT-3.3.1-10",
        "Retain Handling 1, the subscription already exists: no retained message",
        "{}",
        list(&got)
    );
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn handling_2(cx: Ctx) -> TestResult {
    let t = cx.topic("r");
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "r", 1, true, 1).await?;
    let mut s = cx.connect("s").await?;
    let o = opts(1, false, false, RetainHandling::DoNotSend);
    let got = subscribe_collect(&cx, &mut s, &[(&t, o)], 0).await?;
    ensure!(
        got.is_empty(),
        "MQTT-3.3.1-11",
        "Retain Handling 2: no retained message",
        "{}",
        list(&got)
    );
    put(&mut p, &t, "live", 1, false, 2).await?;
    let m = next_pub(&mut s, "MQTT-3.3.1-11", "the later message \"live\"").await?;
    ensure!(
        text(&m) == "live",
        "MQTT-3.3.1-11",
        "only the later message \"live\"",
        "{}",
        list(&[m])
    );
    no_pub(&cx, &mut s, "MQTT-3.3.1-11", "nothing more").await?;
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn as_published(cx: Ctx) -> TestResult {
    let t = cx.topic("r");
    let mut s1 = cx.connect("rap1").await?;
    let mut s0 = cx.connect("rap0").await?;
    sub_opts_ok(
        &mut s1,
        &[(&t, opts(1, false, true, RetainHandling::DoNotSend))],
        None,
    )
    .await?;
    sub_opts_ok(
        &mut s0,
        &[(&t, opts(1, false, false, RetainHandling::DoNotSend))],
        None,
    )
    .await?;
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "a", 1, true, 1).await?;
    put(&mut p, &t, "b", 1, false, 2).await?;
    let got1 = collect(&cx, &mut s1, Vec::new(), 2).await?;
    let flags1: Vec<(String, bool)> = got1.iter().map(|m| (text(m), m.retain)).collect();
    ensure!(
        flags1 == [("a".to_owned(), true), ("b".to_owned(), false)],
        "MQTT-3.3.1-13",
        "Retain As Published 1: \"a\" with RETAIN 1, then \"b\" with RETAIN 0",
        "{}",
        list(&got1)
    );
    let got0 = collect(&cx, &mut s0, Vec::new(), 2).await?;
    let flags0: Vec<(String, bool)> = got0.iter().map(|m| (text(m), m.retain)).collect();
    ensure!(
        flags0 == [("a".to_owned(), false), ("b".to_owned(), false)],
        "MQTT-3.3.1-12",
        "Retain As Published 0: \"a\" and \"b\", both with RETAIN 0",
        "{}",
        list(&got0)
    );
    s1.disconnect().await;
    s0.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn not_supported(cx: Ctx) -> TestResult {
    // 3.3.1.3: a PUBLISH with RETAIN 1 to a broker with Retain Available 0 is a Protocol
    // Error: DISCONNECT 0x9A (Retain not supported) and close (4.13).
    let mut p = cx.connect("p").await?;
    let mut m = publish(&cx.topic("r"), "x", 0, 0)?;
    m.retain = true;
    p.send(m).await?;
    let code = p
        .expect_close("MQTT-3.2.2-14", None)
        .await
        .map_err(|e| match e {
            Stop::Fail(f) => fail(None, f.expected, f.observed),
            other => other,
        })?;
    if let Some(c) = code
        && c.0 != 0x9A
    {
        return Err(fail(
            None,
            "DISCONNECT 0x9A (Retain not supported), or none, then the close".to_owned(),
            format!("DISCONNECT {:#04x}", c.0),
        ));
    }
    Ok(())
}
