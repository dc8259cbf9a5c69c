//! Shared subscriptions (MQTT 5.0, `$share/{ShareName}/{filter}`): each message to one
//! member at that member's granted QoS, invalid share names refused, No Local a Protocol
//! Error, in-flight messages completed to their member and never handed to another, and the
//! refusal of a broker without them. Share names are unique to the test.

use std::collections::BTreeMap;

use mqtt_codec::{PubAck, QoS, ReasonCode};

use super::TestCase;
use super::raw::subscribe_frame;
use super::subscribe::{drain, fail, list, no_pub, put, refused, sub_ok, subscribe_one, text};
use crate::ctx::Ctx;
use crate::ensure;
use crate::outcome::TestResult;

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "shared.one_member_each",
            ["MQTT-4.8.2-3"],
            "each message to a shared subscription goes to one member, at that member's granted QoS",
            [Shared, Qos1],
            false,
            one_member_each
        ),
        case!(
            v5,
            "shared.invalid_share_names",
            ["MQTT-4.8.2-1", "MQTT-4.8.2-2"],
            "$share/ filters with an empty ShareName, a ShareName with + or #, or no /filter are refused; a valid one is granted",
            [Shared],
            false,
            invalid_names
        ),
        case!(
            v5,
            "shared.no_local_protocol_error",
            ["MQTT-3.8.3-4"],
            "No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82 (if any) and close",
            [Shared],
            false,
            no_local
        ),
        case!(
            v5,
            "shared.completed_on_reconnect",
            ["MQTT-4.8.2-4"],
            "a QoS 1 message in flight to a member whose session lives on is sent again when it reconnects",
            [Shared, Qos1],
            false,
            completed_on_reconnect
        ),
        case!(
            v5,
            "shared.not_resent_after_session_end",
            ["MQTT-4.8.2-5"],
            "a QoS 1 message in flight to a member whose session ends is not sent to another member",
            [Shared, Qos1],
            false,
            not_resent_after_session_end
        ),
        case!(
            v5,
            "shared.discarded_on_error_ack",
            ["MQTT-4.8.2-6"],
            "a message a member refuses with PUBACK 0x80 is discarded, not sent to another member",
            [Shared, Qos1],
            false,
            discarded_on_error_ack
        ),
        case!(
            v5,
            "shared.not_supported",
            [],
            "a broker without shared subscriptions refuses $share/g/t (SUBACK or DISCONNECT 0x9E)",
            [NoShared],
            false,
            not_supported
        ),
    ]
}

/// A shared subscription filter of this test (the share name unique to the run and test).
fn shared(cx: &Ctx, name: &str) -> String {
    format!("$share/{}/{}", cx.client_id("g"), cx.topic(name))
}

async fn one_member_each(cx: Ctx) -> TestResult {
    let st = "MQTT-4.8.2-3";
    let f = shared(&cx, "t");
    let t = cx.topic("t");
    let mut a = cx.connect("a").await?;
    sub_ok(&mut a, &[&f], 1).await?;
    let mut b = cx.connect("b").await?;
    sub_ok(&mut b, &[&f], 0).await?;
    let mut p = cx.connect("p").await?;
    let n: u16 = 8;
    for i in 0..n {
        put(&mut p, &t, &format!("m{i}"), 1, false, i + 1).await?;
    }
    let got_a = drain(&mut a, cx.quiet_for()).await?;
    let got_b = drain(&mut b, cx.quiet_for()).await?;
    ensure!(
        got_a.iter().all(|m| m.qos == QoS::AtLeastOnce),
        st,
        "member a (granted QoS 1) gets QoS 1 messages at QoS 1",
        "{}",
        list(&got_a)
    );
    ensure!(
        got_b.iter().all(|m| m.qos == QoS::AtMostOnce),
        st,
        "member b (granted QoS 0) gets messages at QoS 0",
        "{}",
        list(&got_b)
    );
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for m in got_a.iter().chain(got_b.iter()) {
        *count.entry(text(m)).or_default() += 1;
    }
    if count.len() != usize::from(n) || count.values().any(|c| *c != 1) {
        return Err(fail(
            None,
            format!("each of the {n} messages to exactly one member of the shared subscription"),
            format!("a: {}; b: {}", list(&got_a), list(&got_b)),
        ));
    }
    a.disconnect().await;
    if got_b.is_empty() {
        // Every message went to a: the downgrade to b's granted QoS 0 was not seen. With a
        // gone, b is the only member: a QoS 1 message must reach it at QoS 0.
        put(&mut p, &t, "solo", 1, false, n + 1).await?;
        let solo = drain(&mut b, cx.quiet_for().max(cx.answer_within())).await?;
        if solo.is_empty() {
            return Err(fail(
                None,
                "the message to b, the shared subscription's only member".into(),
                "nothing".into(),
            ));
        }
        ensure!(
            solo.iter().all(|m| m.qos == QoS::AtMostOnce),
            st,
            "member b (granted QoS 0), the only member, gets a QoS 1 message at QoS 0",
            "{}",
            list(&solo)
        );
    }
    b.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn invalid_names(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let g = cx.client_id("g");
    for (f, st) in [
        (format!("$share//{t}"), "MQTT-4.8.2-1"),
        ("$share/".to_owned(), "MQTT-4.8.2-1"),
        (format!("$share/{g}+/{t}"), "MQTT-4.8.2-2"),
        (format!("$share/{g}#/{t}"), "MQTT-4.8.2-2"),
        (format!("$share/{g}"), "MQTT-4.8.2-2"),
        (format!("$share/{g}/"), "MQTT-4.8.2-2"),
    ] {
        let mut c = cx.connect("s").await?;
        c.send_raw(
            &subscribe_frame(true, 0x82, 1, &[], &[(f.as_bytes(), 0)]),
            &format!("SUBSCRIBE {f:?}"),
        )
        .await?;
        refused(
            &mut c,
            Some(st),
            1,
            &[],
            &format!("the shared filter {f:?}"),
        )
        .await?;
        if !c.is_closed() {
            c.disconnect().await;
        }
    }
    let mut c = cx.connect("s").await?;
    sub_ok(&mut c, &[&shared(&cx, "t")], 0).await?;
    c.disconnect().await;
    Ok(())
}

async fn no_local(cx: Ctx) -> TestResult {
    let st = "MQTT-3.8.3-4";
    let f = shared(&cx, "t");
    let mut c = cx.connect("s").await?;
    // Options: QoS 0, No Local 1.
    c.send_raw(
        &subscribe_frame(true, 0x82, 1, &[], &[(f.as_bytes(), 0x04)]),
        &format!("SUBSCRIBE {f:?} with No Local"),
    )
    .await?;
    let code = c.expect_close(st, None).await?;
    if let Some(code) = code {
        ensure!(
            code == ReasonCode::PROTOCOL_ERROR,
            st,
            "DISCONNECT 0x82 (Protocol Error), or none, then the close",
            "{:#04x}",
            code.0
        );
    }
    Ok(())
}

/// A CONNECT for `name` with this Session Expiry Interval and Clean Start.
fn connect_expiry(cx: &Ctx, name: &str, expiry: u32, clean: bool) -> mqtt_codec::Connect {
    let mut c = cx.connect_packet(name);
    c.clean_start = clean;
    c.properties.session_expiry_interval = Some(expiry);
    c
}

async fn completed_on_reconnect(cx: Ctx) -> TestResult {
    let st = "MQTT-4.8.2-4";
    let f = shared(&cx, "t");
    let t = cx.topic("t");
    let (mut a, _) = cx
        .connect_with("a", connect_expiry(&cx, "a", 30, true))
        .await?;
    sub_ok(&mut a, &[&f], 1).await?;
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "inflight", 1, false, 1).await?;
    let m = a.publish(st).await?;
    ensure!(
        text(&m) == "inflight" && m.qos == QoS::AtLeastOnce,
        st,
        "the QoS 1 message \"inflight\"",
        "{}",
        list(&[m])
    );
    // No PUBACK: the connection drops with the message in flight.
    a.drop_abruptly().await;
    let (mut a, ack) = cx
        .connect_with("a2", connect_expiry(&cx, "a", 30, false))
        .await?;
    ensure!(
        ack.session_present,
        st,
        "Session Present 1 (the session has a 30 s expiry)",
        "Session Present 0"
    );
    let m = a.publish(st).await?;
    ensure!(
        text(&m) == "inflight" && m.dup,
        st,
        "the in-flight message \"inflight\" sent again, DUP 1",
        "{}",
        list(std::slice::from_ref(&m))
    );
    if let Some(id) = m.packet_id {
        a.send(PubAck::new(id)).await?;
    }
    // End the session.
    let mut d = mqtt_codec::Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(0);
    a.send(d).await?;
    p.disconnect().await;
    Ok(())
}

async fn not_resent_after_session_end(cx: Ctx) -> TestResult {
    let st = "MQTT-4.8.2-5";
    let f = shared(&cx, "t");
    let t = cx.topic("t");
    let mut a = cx.connect("a").await?;
    sub_ok(&mut a, &[&f], 1).await?;
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "m1", 1, false, 1).await?;
    let m = a.publish(st).await?;
    ensure!(
        text(&m) == "m1",
        st,
        "the message \"m1\" to the only member",
        "{}",
        list(&[m])
    );
    let mut b = cx.connect("b").await?;
    sub_ok(&mut b, &[&f], 1).await?;
    // Session Expiry 0: a's session ends with its connection, "m1" unacknowledged.
    a.disconnect().await;
    no_pub(
        &cx,
        &mut b,
        st,
        "the message in flight to a, whose session ended, not sent to member b",
    )
    .await?;
    // b is a member: a later message reaches it.
    put(&mut p, &t, "m2", 1, false, 2).await?;
    let mut got = Vec::new();
    if let Ok(m) = super::subscribe::next_pub(&mut b, st, "the later message").await {
        got.push(m);
    }
    got.extend(drain(&mut b, cx.quiet_for()).await?);
    if got.iter().map(text).collect::<Vec<_>>() != ["m2"] {
        return Err(fail(
            None,
            "the later message \"m2\" to b, now the only member".to_owned(),
            list(&got),
        ));
    }
    b.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn discarded_on_error_ack(cx: Ctx) -> TestResult {
    let st = "MQTT-4.8.2-6";
    let f = shared(&cx, "t");
    let t = cx.topic("t");
    let mut a = cx.connect("a").await?;
    sub_ok(&mut a, &[&f], 1).await?;
    let mut p = cx.connect("p").await?;
    put(&mut p, &t, "m1", 1, false, 1).await?;
    let m = a.publish(st).await?;
    let Some(id) = m.packet_id else {
        return Err(fail(None, "a QoS 1 message".to_owned(), list(&[m])));
    };
    let mut b = cx.connect("b").await?;
    sub_ok(&mut b, &[&f], 1).await?;
    let mut nack = PubAck::new(id);
    nack.reason_code = ReasonCode::UNSPECIFIED_ERROR;
    a.send(nack).await?;
    no_pub(
        &cx,
        &mut b,
        st,
        "the message refused with PUBACK 0x80 by a not sent to member b",
    )
    .await?;
    let again = drain(&mut a, cx.quiet_for()).await?;
    ensure!(
        again.is_empty(),
        st,
        "the refused message discarded (not sent to a again either)",
        "{}",
        list(&again)
    );
    a.disconnect().await;
    b.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn not_supported(cx: Ctx) -> TestResult {
    // 3.2.2.3.17 and 3.9.3: SUBACK 0x9E, or DISCONNECT 0x9E for the Protocol Error.
    let f = shared(&cx, "t");
    let mut c = cx.connect("s").await?;
    c.send(subscribe_one(&f, 0)?).await?;
    let how = refused(
        &mut c,
        None,
        1,
        &[0x9E],
        &format!("the shared filter {f:?}"),
    )
    .await?;
    if how.starts_with("DISCONNECT") && how != "DISCONNECT 0x9e" {
        return Err(fail(
            None,
            "DISCONNECT 0x9E (Shared Subscriptions not supported)".to_owned(),
            how,
        ));
    }
    if !c.is_closed() {
        c.disconnect().await;
    }
    Ok(())
}
