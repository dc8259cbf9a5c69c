//! Sessions: Clean Start / Clean Session and Session Present, Session Expiry (0, a few
//! seconds, 0xFFFFFFFF, changed at DISCONNECT), messages queued while the client is offline,
//! re-delivery of unacknowledged PUBLISH and PUBREL packets on resume, one session per client
//! identifier, and session takeover.
//!
//! Every session a test leaves stored on the broker is ended at the end of the test (a Clean
//! Start 1 connection without Session Expiry, then DISCONNECT).

use std::time::Duration;

use mqtt_codec::{
    Connect, Disconnect, Packet, PacketType, PubAck, PubComp, PubRec, PubRel, Publish, ReasonCode,
};

use super::TestCase;
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, pid, publish};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "session.new_session",
            ["MQTT-3.1.2-6", "MQTT-3.2.2-3"],
            "Clean Start 0 with an unknown client id: Session Present 0, and the new session is kept",
            [],
            false,
            new_session
        ),
        case!(
            v311,
            "session.new_session",
            ["MQTT-3.1.2-4", "MQTT-3.2.2-2", "MQTT-3.2.2-3"],
            "Clean Session 0 with an unknown client id: Session Present 0, and the new session is kept",
            [],
            false,
            new_session
        ),
        case!(
            v5,
            "session.resume",
            [
                "MQTT-3.1.2-5",
                "MQTT-3.1.2-23",
                "MQTT-3.1.4-4",
                "MQTT-3.2.2-3",
                "MQTT-4.5.0-1"
            ],
            "Clean Start 0 resumes a stored session: Session Present 1, the queued QoS 1 message, the subscription",
            [Qos1],
            false,
            resume
        ),
        case!(
            v311,
            "session.resume",
            [
                "MQTT-3.1.2-4",
                "MQTT-3.1.2-5",
                "MQTT-3.1.4-3",
                "MQTT-3.2.2-2",
                "MQTT-4.1.0-1",
                "MQTT-4.5.0-1"
            ],
            "Clean Session 0 resumes a stored session: Session Present 1, the queued QoS 1 message, the subscription",
            [Qos1],
            false,
            resume
        ),
        case!(
            v5,
            "session.resume_after_drop",
            ["MQTT-3.1.2-23", "MQTT-3.2.2-3"],
            "a session with Session Expiry 300 survives a network close without DISCONNECT",
            [],
            false,
            resume_after_drop
        ),
        case!(
            v311,
            "session.resume_after_drop",
            ["MQTT-3.1.2-4", "MQTT-3.2.2-2"],
            "a Clean Session 0 session survives a network close without DISCONNECT",
            [],
            false,
            resume_after_drop
        ),
        case!(
            v5,
            "session.clean_start_discards",
            [
                "MQTT-3.1.2-4",
                "MQTT-3.1.4-4",
                "MQTT-3.2.2-2",
                "MQTT-3.2.2-3"
            ],
            "Clean Start 1 discards the stored session: Session Present 0, no queued message, no subscription",
            [Qos1],
            false,
            clean_start_discards
        ),
        case!(
            v311,
            "session.clean_start_discards",
            [
                "MQTT-3.1.2-6",
                "MQTT-3.1.4-3",
                "MQTT-3.2.2-1",
                "MQTT-3.2.2-3"
            ],
            "Clean Session 1 discards the stored session and keeps none: Session Present 0, no queued message, no subscription",
            [Qos1],
            false,
            clean_start_discards
        ),
        case!(
            v5,
            "session.expiry_absent",
            ["MQTT-4.1.0-2", "MQTT-3.2.2-3"],
            "without Session Expiry Interval the session ends with the connection",
            [],
            false,
            expiry_absent
        ),
        case!(
            v5,
            "session.expiry_interval",
            ["MQTT-3.1.2-23", "MQTT-4.1.0-2", "MQTT-3.2.2-3"],
            "Session Expiry 2: the session is kept after the close, and discarded 2 s later",
            [Qos1],
            false,
            expiry_interval
        ),
        case!(
            v5,
            "session.expiry_never",
            ["MQTT-3.1.2-23", "MQTT-3.2.2-3"],
            "Session Expiry 0xFFFFFFFF: the session is kept after the close",
            [],
            false,
            expiry_never
        ),
        case!(
            v5,
            "session.expiry_set_on_disconnect",
            ["MQTT-3.1.2-23", "MQTT-4.1.0-2", "MQTT-3.2.2-3"],
            "the Session Expiry Interval of the DISCONNECT replaces the CONNECT's (300 -> 0, 1 -> 300)",
            [],
            false,
            expiry_set_on_disconnect
        ),
        case!(
            v5,
            "session.per_client_id",
            ["MQTT-3.1.3-2"],
            "two stored sessions: each client id resumes its own subscriptions and queued messages",
            [Qos1],
            false,
            per_client_id
        ),
        case!(
            v311,
            "session.per_client_id",
            ["MQTT-3.1.3-2"],
            "two stored sessions: each client id resumes its own subscriptions and queued messages",
            [Qos1],
            false,
            per_client_id
        ),
        case!(
            v5,
            "session.takeover",
            ["MQTT-3.1.4-3"],
            "a second connection with the same client id: the first is closed (after DISCONNECT 0x8E, if any)",
            [],
            false,
            takeover
        ),
        case!(
            v311,
            "session.takeover",
            ["MQTT-3.1.4-2"],
            "a second connection with the same client id: the first is closed",
            [],
            false,
            takeover
        ),
        case!(
            v5,
            "session.queued_in_order",
            ["MQTT-3.1.2-5", "MQTT-4.5.0-1", "MQTT-4.6.0-5"],
            "QoS 1 and 2 messages published while the client is offline are delivered on resume, in order",
            [Qos1],
            false,
            queued_in_order
        ),
        case!(
            v311,
            "session.queued_in_order",
            ["MQTT-3.1.2-5", "MQTT-4.5.0-1", "MQTT-4.6.0-6"],
            "QoS 1 and 2 messages published while the client is offline are delivered on resume, in order",
            [Qos1],
            false,
            queued_in_order
        ),
        case!(
            v5,
            "session.redeliver_publish",
            ["MQTT-4.4.0-1", "MQTT-3.3.1-1"],
            "an unacknowledged QoS 1 PUBLISH is not resent on the connection, and is resent on resume with DUP 1 and its Packet Identifier",
            [Qos1],
            false,
            redeliver_publish
        ),
        case!(
            v311,
            "session.redeliver_publish",
            ["MQTT-4.4.0-1", "MQTT-3.3.1-1"],
            "an unacknowledged QoS 1 PUBLISH is not resent on the connection, and is resent on resume with DUP 1 and its Packet Identifier",
            [Qos1],
            false,
            redeliver_publish
        ),
        case!(
            v5,
            "session.redeliver_qos2",
            ["MQTT-4.4.0-1", "MQTT-3.3.1-1"],
            "on resume an unacknowledged PUBREL and an unreceived QoS 2 PUBLISH (DUP 1) are resent with their Packet Identifiers",
            [Qos2],
            false,
            redeliver_qos2
        ),
        case!(
            v311,
            "session.redeliver_qos2",
            ["MQTT-4.4.0-1", "MQTT-3.3.1-1"],
            "on resume an unacknowledged PUBREL and an unreceived QoS 2 PUBLISH (DUP 1) are resent with their Packet Identifiers",
            [Qos2],
            false,
            redeliver_qos2
        ),
        case!(
            v5,
            "session.state_kept_while_open",
            ["MQTT-4.1.0-1"],
            "while the connection is open, a QoS 2 exchange paused for 1.5 s completes and the subscription stays",
            [Qos2],
            false,
            state_kept_while_open
        ),
        case!(
            v311,
            "session.state_kept_while_open",
            ["MQTT-4.1.0-2"],
            "while the connection is open, a QoS 2 exchange paused for 1.5 s completes and the subscription stays",
            [Qos2],
            false,
            state_kept_while_open
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers (also used by the Will tests).

/// A CONNECT for client `name` with Clean Start `clean` and, in 5.0, Session Expiry `expiry`.
pub(super) fn session_connect(cx: &Ctx, name: &str, clean: bool, expiry: Option<u32>) -> Connect {
    let mut c = cx.connect_packet(name);
    c.clean_start = clean;
    if cx.v5() {
        c.properties.session_expiry_interval = expiry;
    }
    c
}

/// Connects client `name` with Clean Start `clean` (and Session Expiry `expiry` in 5.0);
/// the broker must accept. Returns the connection and the CONNACK's Session Present.
pub(super) async fn connect_session(
    cx: &Ctx,
    name: &str,
    clean: bool,
    expiry: Option<u32>,
) -> Result<(Conn, bool), Stop> {
    let (conn, ack) = cx
        .connect_with(name, session_connect(cx, name, clean, expiry))
        .await?;
    Ok((conn, ack.session_present))
}

/// Ends the session of client `name`, if any: Clean Start 1 without Session Expiry, then
/// DISCONNECT. A clean-up step, whose failures do not matter.
pub(super) async fn end_session(cx: &Ctx, name: &str) {
    if let Ok((conn, _)) = cx
        .connect_raw(name, session_connect(cx, name, true, None))
        .await
    {
        conn.disconnect().await;
    }
}

/// DISCONNECT 0x00, in 5.0 with this Session Expiry Interval.
async fn disconnect_with_expiry(mut conn: Conn, expiry: u32) -> TestResult {
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(expiry);
    conn.send(d).await?;
    // Wait for the broker to close, so that the DISCONNECT is processed before the test goes on.
    let _ = conn.recv_within(conn.answer_within()).await;
    Ok(())
}

/// Sends DISCONNECT and waits until the broker has closed the connection, so that what the
/// test does next happens after the broker has processed the DISCONNECT.
pub(super) async fn disconnect_and_wait(mut conn: Conn) -> TestResult {
    conn.send(Disconnect::new(ReasonCode::SUCCESS)).await?;
    let _ = conn.recv_within(conn.answer_within()).await;
    Ok(())
}

/// Publishes `p` and completes its QoS flow as the publisher (PUBACK, or PUBREC / PUBREL /
/// PUBCOMP), which must succeed.
pub(super) async fn publish_acked(conn: &mut Conn, p: Publish) -> TestResult {
    let q = p.qos as u8;
    let id = p.packet_id;
    conn.send(p).await?;
    let Some(id) = id else { return Ok(()) };
    let (t, st) = if q == 1 {
        (PacketType::PubAck, "MQTT-3.3.4-1")
    } else {
        (PacketType::PubRec, "MQTT-3.3.4-1")
    };
    let ack = conn.expect_type(t, st).await?;
    let code = match &ack {
        Packet::PubAck(a) => a.reason_code,
        Packet::PubRec(a) => a.reason_code,
        _ => ReasonCode::SUCCESS,
    };
    if code.is_error() {
        return Err(Failure::plain(
            "the broker to accept the test's PUBLISH",
            format!("{} {:#04x}", t, code.0),
        )
        .into());
    }
    if q == 2 {
        conn.send(PubRel::new(id)).await?;
        conn.expect_type(PacketType::PubComp, "MQTT-4.3.3-11")
            .await?;
    }
    Ok(())
}

/// Receives PUBLISH packets until `n` have come and no QoS 2 exchange is left open,
/// acknowledging each as a subscriber (PUBACK; PUBREC, then PUBCOMP for the PUBREL).
pub(super) async fn receive_publishes(
    conn: &mut Conn,
    n: usize,
    statement: &'static str,
) -> Result<Vec<Publish>, Stop> {
    let mut got = Vec::new();
    let mut open_rel = 0usize;
    while got.len() < n || open_rel > 0 {
        let waiting = format!("{} PUBLISH packets (got {})", n, got.len());
        match conn.recv(statement, &waiting).await? {
            Packet::Publish(p) => {
                if let Some(id) = p.packet_id {
                    if p.qos as u8 == 1 {
                        conn.send(PubAck::new(id)).await?;
                    } else {
                        conn.send(PubRec::new(id)).await?;
                        open_rel += 1;
                    }
                }
                got.push(p);
            }
            Packet::PubRel(r) => {
                conn.send(PubComp::new(r.packet_id)).await?;
                open_rel = open_rel.saturating_sub(1);
            }
            other => {
                return Err(Failure::of(statement, waiting, brief(&other)).into());
            }
        }
    }
    Ok(got)
}

fn payload(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

fn payloads(ps: &[Publish]) -> Vec<String> {
    ps.iter().map(payload).collect()
}

/// Session Present must be `want`, citing `statement`.
fn check_present(
    present: bool,
    want: bool,
    statement: &'static str,
    why: &str,
) -> Result<(), Stop> {
    ensure!(
        present == want,
        statement,
        format!(
            "CONNACK 0x00 with Session Present {} ({why})",
            u8::from(want)
        ),
        "Session Present {}",
        u8::from(present)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tests.

async fn new_session(cx: Ctx) -> TestResult {
    let (created, present1) = if cx.v5() {
        ("MQTT-3.1.2-6", "MQTT-3.2.2-3")
    } else {
        ("MQTT-3.1.2-4", "MQTT-3.2.2-2")
    };
    let (mut s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(
        present,
        false,
        "MQTT-3.2.2-3",
        "Clean Start 0 with a client id that has no session",
    )?;
    s.sub(&cx.topic("t"), 0).await?;
    disconnect_and_wait(s).await?;
    let (s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(
        present,
        true,
        created,
        "the first Clean Start 0 connection created a session",
    )?;
    check_present(present, true, present1, "the session is stored")?;
    s.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn resume(cx: Ctx) -> TestResult {
    let (resumed, present_st, queued) = if cx.v5() {
        ("MQTT-3.1.2-5", "MQTT-3.2.2-3", "MQTT-4.5.0-1")
    } else {
        ("MQTT-3.1.2-4", "MQTT-3.2.2-2", "MQTT-3.1.2-5")
    };
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, Some(300)).await?;
    s.sub(&t, 1).await?;
    disconnect_and_wait(s).await?;

    let mut p = cx.connect("p").await?;
    publish_acked(&mut p, publish(&t, "m1", 1, 1)?).await?;

    let (mut s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(present, true, present_st, "a session is stored")?;
    if cx.v5() {
        check_present(
            present,
            true,
            "MQTT-3.1.2-23",
            "the session is stored after the close",
        )?;
    } else {
        check_present(present, true, "MQTT-4.1.0-1", "the session is stored")?;
    }
    let got = receive_publishes(&mut s, 1, queued).await?;
    ensure!(
        payloads(&got) == ["m1"],
        queued,
        "the QoS 1 message published while offline, delivered on resume",
        "{:?}",
        payloads(&got)
    );
    if !cx.v5() {
        ensure!(
            payloads(&got) == ["m1"],
            "MQTT-4.5.0-1",
            "the message added to the session state",
            "{:?}",
            payloads(&got)
        );
    }
    // The subscription is part of the resumed session.
    publish_acked(&mut p, publish(&t, "m2", 1, 2)?).await?;
    let got = receive_publishes(&mut s, 1, resumed).await?;
    ensure!(
        payloads(&got) == ["m2"],
        resumed,
        "the stored subscription delivers after the resume",
        "{:?}",
        payloads(&got)
    );
    let clean = if cx.v5() {
        "MQTT-3.1.4-4"
    } else {
        "MQTT-3.1.4-3"
    };
    ensure!(
        present,
        clean,
        "the Clean Start processing: Session Present 1",
        "Session Present 0"
    );
    s.disconnect().await;
    p.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn resume_after_drop(cx: Ctx) -> TestResult {
    let (kept, present_st) = if cx.v5() {
        ("MQTT-3.1.2-23", "MQTT-3.2.2-3")
    } else {
        ("MQTT-3.1.2-4", "MQTT-3.2.2-2")
    };
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, Some(300)).await?;
    s.sub(&t, 0).await?;
    s.drop_abruptly().await;
    let (mut s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(
        present,
        true,
        present_st,
        "the session is stored after the close",
    )?;
    let mut p = cx.connect("p").await?;
    p.send(publish(&t, "m", 0, 0)?).await?;
    let got = s.publish(kept).await?;
    ensure!(
        *got.topic == *t && payload(&got) == "m",
        kept,
        "the stored subscription delivers after the resume",
        "{}",
        brief(&Packet::Publish(got))
    );
    s.disconnect().await;
    p.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn clean_start_discards(cx: Ctx) -> TestResult {
    let (discard, present0) = if cx.v5() {
        ("MQTT-3.1.2-4", "MQTT-3.2.2-2")
    } else {
        ("MQTT-3.1.2-6", "MQTT-3.2.2-1")
    };
    let clean = if cx.v5() {
        "MQTT-3.1.4-4"
    } else {
        "MQTT-3.1.4-3"
    };
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, Some(300)).await?;
    s.sub(&t, 1).await?;
    disconnect_and_wait(s).await?;
    let mut p = cx.connect("p").await?;
    publish_acked(&mut p, publish(&t, "queued", 1, 1)?).await?;

    let (mut s, present) = connect_session(&cx, "s", true, None).await?;
    check_present(present, false, present0, "Clean Start 1")?;
    check_present(present, false, clean, "Clean Start 1 processing")?;
    s.expect_quiet(discard, "no message of the discarded session", None)
        .await?;
    publish_acked(&mut p, publish(&t, "after", 1, 2)?).await?;
    s.expect_quiet(
        discard,
        "no delivery: the discarded session's subscription is gone",
        None,
    )
    .await?;
    disconnect_and_wait(s).await?;

    // The Clean Start 1 session is not kept after its connection.
    let (s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    let st = if cx.v5() { "MQTT-3.2.2-3" } else { discard };
    check_present(
        present,
        false,
        st,
        "the Clean Start 1 session was not stored",
    )?;
    if !cx.v5() {
        check_present(present, false, "MQTT-3.2.2-3", "no stored session")?;
    }
    s.disconnect().await;
    p.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn expiry_absent(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, None).await?;
    s.sub(&t, 0).await?;
    disconnect_and_wait(s).await?;
    let (mut s, present) = connect_session(&cx, "s", false, None).await?;
    check_present(
        present,
        false,
        "MQTT-4.1.0-2",
        "the session ended with the connection (Session Expiry 0)",
    )?;
    check_present(present, false, "MQTT-3.2.2-3", "no stored session")?;
    let mut p = cx.connect("p").await?;
    p.send(publish(&t, "m", 0, 0)?).await?;
    s.expect_quiet(
        "MQTT-4.1.0-2",
        "no delivery: the expired session's subscription is gone",
        None,
    )
    .await?;
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn expiry_interval(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, Some(2)).await?;
    s.sub(&t, 1).await?;
    disconnect_and_wait(s).await?;
    let mut p = cx.connect("p").await?;
    publish_acked(&mut p, publish(&t, "m1", 1, 1)?).await?;

    // Within the 2 s: the session is there.
    let (mut s, present) = connect_session(&cx, "s", false, Some(2)).await?;
    check_present(
        present,
        true,
        "MQTT-3.1.2-23",
        "Session Expiry 2, reconnected at once",
    )?;
    check_present(present, true, "MQTT-3.2.2-3", "a stored session")?;
    let got = receive_publishes(&mut s, 1, "MQTT-3.1.2-23").await?;
    ensure!(
        payloads(&got) == ["m1"],
        "MQTT-3.1.2-23",
        "the message queued in the stored session",
        "{:?}",
        payloads(&got)
    );
    disconnect_and_wait(s).await?;
    publish_acked(&mut p, publish(&t, "m2", 1, 2)?).await?;

    // 2 s expiry + 2 s tolerance.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (mut s, present) = connect_session(&cx, "s", false, None).await?;
    check_present(
        present,
        false,
        "MQTT-4.1.0-2",
        "the session discarded 4 s after a close with Session Expiry 2",
    )?;
    s.expect_quiet("MQTT-4.1.0-2", "no message of the expired session", None)
        .await?;
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn expiry_never(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, Some(u32::MAX)).await?;
    s.sub(&t, 0).await?;
    disconnect_and_wait(s).await?;
    // Long enough to tell 0xFFFFFFFF from 0 or a tiny interval.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, present) = connect_session(&cx, "s", false, Some(u32::MAX)).await?;
    check_present(
        present,
        true,
        "MQTT-3.1.2-23",
        "Session Expiry 0xFFFFFFFF: the session does not expire",
    )?;
    check_present(present, true, "MQTT-3.2.2-3", "a stored session")?;
    s.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn expiry_set_on_disconnect(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    // 300 in the CONNECT, 0 in the DISCONNECT: the session ends at the close.
    let (mut s, _) = connect_session(&cx, "s", false, Some(300)).await?;
    s.sub(&t, 0).await?;
    disconnect_with_expiry(s, 0).await?;
    let (s, present) = connect_session(&cx, "s", false, Some(1)).await?;
    check_present(
        present,
        false,
        "MQTT-4.1.0-2",
        "DISCONNECT with Session Expiry 0 ended the session",
    )?;
    check_present(present, false, "MQTT-3.2.2-3", "no stored session")?;

    // 1 in the CONNECT, 300 in the DISCONNECT: the session outlives the 1 s.
    disconnect_with_expiry(s, 300).await?;
    // 1 s + 1.5 s tolerance.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(
        present,
        true,
        "MQTT-3.1.2-23",
        "DISCONNECT with Session Expiry 300 kept the session beyond the CONNECT's 1 s",
    )?;
    check_present(present, true, "MQTT-3.2.2-3", "a stored session")?;
    s.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn per_client_id(cx: Ctx) -> TestResult {
    let (ta, tb) = (cx.topic("a"), cx.topic("b"));
    let (mut a, _) = connect_session(&cx, "a", false, Some(300)).await?;
    a.sub(&ta, 1).await?;
    disconnect_and_wait(a).await?;
    let (mut b, _) = connect_session(&cx, "b", false, Some(300)).await?;
    b.sub(&tb, 1).await?;
    disconnect_and_wait(b).await?;

    let mut p = cx.connect("p").await?;
    publish_acked(&mut p, publish(&ta, "for-a", 1, 1)?).await?;
    publish_acked(&mut p, publish(&tb, "for-b", 1, 2)?).await?;

    for (name, topic, want) in [("a", &ta, "for-a"), ("b", &tb, "for-b")] {
        let (mut c, present) = connect_session(&cx, name, false, Some(300)).await?;
        check_present(
            present,
            true,
            "MQTT-3.1.3-2",
            &format!("client {name}'s own stored session"),
        )?;
        let got = receive_publishes(&mut c, 1, "MQTT-3.1.3-2").await?;
        let ok = got
            .first()
            .is_some_and(|m| &*m.topic == topic.as_str() && payload(m) == want);
        ensure!(
            ok && got.len() == 1,
            "MQTT-3.1.3-2",
            format!("only client {name}'s queued message {want:?}"),
            "{:?}",
            payloads(&got)
        );
        c.expect_quiet(
            "MQTT-3.1.3-2",
            &format!("no message of the other client's session for {name}"),
            None,
        )
        .await?;
        c.disconnect().await;
        end_session(&cx, name).await;
    }
    p.disconnect().await;
    Ok(())
}

async fn takeover(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.1.4-3"
    } else {
        "MQTT-3.1.4-2"
    };
    let mut first = cx.connect("x").await?;
    let (mut second, ack) = cx.connect_raw("x2", cx.connect_packet("x")).await?;
    ensure!(
        ack.reason_code == ReasonCode::SUCCESS,
        st,
        "CONNACK 0x00 for the new connection with the same client id",
        "CONNACK {:#04x}",
        ack.reason_code.0
    );
    let code = first.expect_close(st, None).await?;
    // 5.0: the DISCONNECT goes "as described in section 4.13", whose 4.13.2 closes the
    // connection "whether or not the CONNACK or DISCONNECT is sent": a plain close is allowed,
    // but a DISCONNECT must say 0x8E (Session taken over).
    if cx.v5()
        && let Some(c) = code
    {
        ensure!(
            c == ReasonCode::SESSION_TAKEN_OVER,
            st,
            "DISCONNECT 0x8E (Session taken over), or none, then the close",
            "DISCONNECT {:#04x}",
            c.0
        );
    }
    // The new connection works.
    second.sub(&cx.topic("t"), 0).await?;
    second.disconnect().await;
    Ok(())
}

async fn queued_in_order(cx: Ctx) -> TestResult {
    let (queued, order) = if cx.v5() {
        ("MQTT-4.5.0-1", "MQTT-4.6.0-5")
    } else {
        ("MQTT-4.5.0-1", "MQTT-4.6.0-6")
    };
    let t = cx.topic("t");
    let qos2 = cx.caps().maximum_qos >= 2;
    let (mut s, _) = connect_session(&cx, "s", false, Some(300)).await?;
    s.sub(&t, if qos2 { 2 } else { 1 }).await?;
    disconnect_and_wait(s).await?;

    let mut p = cx.connect("p").await?;
    let mut sent = Vec::new();
    for (i, name) in ["a1", "b1", "a2", "b2", "a3", "b3"].iter().enumerate() {
        let q = if name.starts_with('a') || !qos2 { 1 } else { 2 };
        let id = u16::try_from(i + 1).unwrap_or(1);
        publish_acked(&mut p, publish(&t, name, q, id)?).await?;
        sent.push(((*name).to_owned(), q));
    }

    let (mut s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(present, true, "MQTT-3.1.2-5", "a stored session")?;
    let got = receive_publishes(&mut s, sent.len(), queued).await?;
    let names = payloads(&got);
    for (name, _) in &sent {
        ensure!(
            names.contains(name),
            queued,
            format!("every QoS 1/2 message published while offline, {name:?} among them"),
            "{names:?}"
        );
        ensure!(
            names.contains(name),
            "MQTT-3.1.2-5",
            format!("the QoS 1/2 message {name:?} stored for the offline session"),
            "{names:?}"
        );
    }
    for q in [1u8, 2] {
        let want: Vec<&String> = sent.iter().filter(|m| m.1 == q).map(|m| &m.0).collect();
        let seen: Vec<&String> = names.iter().filter(|n| want.contains(n)).collect();
        ensure!(
            seen == want,
            order,
            format!("the QoS {q} messages in publishing order {want:?}"),
            "{seen:?}"
        );
    }
    s.expect_quiet(queued, "each queued message once", None)
        .await?;
    s.disconnect().await;
    p.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn redeliver_publish(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, Some(300)).await?;
    s.sub(&t, 1).await?;
    let mut p = cx.connect("p").await?;
    publish_acked(&mut p, publish(&t, "r1", 1, 1)?).await?;
    let first = s.publish("MQTT-4.5.0-1").await?;
    let Some(id) = first.packet_id else {
        return Err(Failure::plain("a QoS 1 delivery", brief(&Packet::Publish(first))).into());
    };
    // No PUBACK: the broker must not resend on this connection (5.0: resending is allowed
    // only on resume; 3.1.1 does not forbid it).
    if cx.v5() {
        s.expect_quiet(
            "MQTT-4.4.0-1",
            "no resend of the unacknowledged PUBLISH on the same connection",
            Some(Duration::from_millis(1500)),
        )
        .await?;
    }
    s.drop_abruptly().await;

    let (mut s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(present, true, "MQTT-4.4.0-1", "a stored session")?;
    let again = s.publish("MQTT-4.4.0-1").await?;
    let evidence = brief(&Packet::Publish(again.clone()));
    ensure!(
        again.packet_id == Some(id) && payload(&again) == "r1" && again.qos as u8 == 1,
        "MQTT-4.4.0-1",
        format!(
            "the unacknowledged QoS 1 PUBLISH resent with its Packet Identifier {}",
            id.get()
        ),
        "{evidence}"
    );
    ensure!(
        again.dup,
        "MQTT-3.3.1-1",
        "DUP 1 on the re-delivered PUBLISH",
        "{evidence}"
    );
    s.send(PubAck::new(id)).await?;
    if cx.v5() {
        s.expect_quiet("MQTT-4.4.0-1", "nothing more after the PUBACK", None)
            .await?;
    }
    s.disconnect().await;
    p.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn redeliver_qos2(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let (mut s, _) = connect_session(&cx, "s", false, Some(300)).await?;
    s.sub(&t, 2).await?;
    let mut p = cx.connect("p").await?;

    // q1: PUBREC sent, the PUBREL is left unanswered.
    publish_acked(&mut p, publish(&t, "q1", 2, 1)?).await?;
    let m1 = s.publish("MQTT-4.5.0-1").await?;
    let Some(id1) = m1.packet_id else {
        return Err(Failure::plain("a QoS 2 delivery", brief(&Packet::Publish(m1))).into());
    };
    s.send(PubRec::new(id1)).await?;
    match s.expect_type(PacketType::PubRel, "MQTT-4.3.3-8").await? {
        Packet::PubRel(r) if r.packet_id == id1 => {}
        other => {
            return Err(Failure::plain(format!("PUBREL {}", id1.get()), brief(&other)).into());
        }
    }
    // q2: the PUBLISH is left unanswered.
    publish_acked(&mut p, publish(&t, "q2", 2, 2)?).await?;
    let m2 = s.publish("MQTT-4.5.0-1").await?;
    let Some(id2) = m2.packet_id else {
        return Err(Failure::plain("a QoS 2 delivery", brief(&Packet::Publish(m2))).into());
    };
    s.drop_abruptly().await;

    let (mut s, present) = connect_session(&cx, "s", false, Some(300)).await?;
    check_present(present, true, "MQTT-4.4.0-1", "a stored session")?;
    let (mut rel, mut publ) = (false, false);
    while !(rel && publ) {
        let waiting = format!(
            "PUBREL {} and PUBLISH {} (DUP 1) resent",
            id1.get(),
            id2.get()
        );
        match s.recv("MQTT-4.4.0-1", &waiting).await? {
            Packet::PubRel(r) if r.packet_id == id1 && !rel => {
                rel = true;
                s.send(PubComp::new(id1)).await?;
            }
            Packet::Publish(m) if m.packet_id == Some(id2) && payload(&m) == "q2" && !publ => {
                let evidence = brief(&Packet::Publish(m.clone()));
                ensure!(
                    m.dup,
                    "MQTT-3.3.1-1",
                    "DUP 1 on the re-delivered PUBLISH",
                    "{evidence}"
                );
                ensure!(
                    m.qos as u8 == 2,
                    "MQTT-4.4.0-1",
                    "the PUBLISH resent as it was (QoS 2)",
                    "{evidence}"
                );
                publ = true;
                s.send(PubRec::new(id2)).await?;
            }
            other => {
                return Err(Failure::of("MQTT-4.4.0-1", waiting, brief(&other)).into());
            }
        }
    }
    match s.expect_type(PacketType::PubRel, "MQTT-4.3.3-8").await? {
        Packet::PubRel(r) if r.packet_id == id2 => s.send(PubComp::new(id2)).await?,
        other => {
            return Err(Failure::plain(format!("PUBREL {}", id2.get()), brief(&other)).into());
        }
    }
    if cx.v5() {
        // 5.0 forbids a resend other than on resume; 3.1.1 does not.
        s.expect_quiet(
            "MQTT-4.4.0-1",
            "nothing more: no resend other than on resume",
            None,
        )
        .await?;
    }
    s.disconnect().await;
    p.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn state_kept_while_open(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-4.1.0-1"
    } else {
        "MQTT-4.1.0-2"
    };
    let t = cx.topic("t");
    let mut s = cx.connect("s").await?;
    s.sub(&t, 2).await?;
    let mut p = cx.connect("p").await?;
    p.send(publish(&t, "k", 2, 7)?).await?;
    match p.expect_type(PacketType::PubRec, "MQTT-4.3.3-8").await? {
        Packet::PubRec(r) if r.packet_id == pid(7) && !r.reason_code.is_error() => {}
        other => {
            return Err(Failure::plain("PUBREC 7 (success)", brief(&other)).into());
        }
    }
    // The exchange pauses while the connection stays open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.send(Packet::PingReq).await?;
    p.expect_type(PacketType::PingResp, "MQTT-3.12.4-1").await?;
    p.send(PubRel::new(pid(7))).await?;
    match p.expect_type(PacketType::PubComp, st).await? {
        Packet::PubComp(c) if c.packet_id == pid(7) => {
            ensure!(
                c.reason_code == ReasonCode::SUCCESS,
                st,
                "PUBCOMP 7 0x00: the QoS 2 state kept while the connection is open",
                "PUBCOMP {:#04x}",
                c.reason_code.0
            );
        }
        other => {
            return Err(Failure::of(st, "PUBCOMP 7", brief(&other)).into());
        }
    }
    let got = receive_publishes(&mut s, 1, st).await?;
    ensure!(
        payloads(&got) == ["k"],
        st,
        "the QoS 2 message delivered once",
        "{:?}",
        payloads(&got)
    );
    p.send(publish(&t, "k2", 0, 0)?).await?;
    match s.recv_within(cx.answer_within()).await? {
        Some(Received::Packet(Packet::Publish(m))) if payload(&m) == "k2" => {}
        other => {
            return Err(Failure::of(
                st,
                "the subscription still delivers (\"k2\")",
                format!("{other:?}"),
            )
            .into());
        }
    }
    s.expect_quiet(st, "each message once", None).await?;
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}
