//! Quality of Service: the broker as receiver (PUBACK, PUBREC, PUBCOMP with the right
//! identifiers and reason codes, a QoS 2 duplicate delivered once, identifier reuse) and as
//! sender (unique non-zero identifiers, DUP, PUBREL after PUBREC, redelivery on session resume,
//! downgrade to the subscription's QoS, order per topic), the Maximum QoS of a limited broker,
//! and PUBLISH packets with invalid QoS flags.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mqtt_codec::{
    ConnAck, Packet, PacketType, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode,
    SubscriptionOptions,
};

use super::TestCase;
use super::raw::publish_frame;
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, pid, publish, qos, subscribe};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "qos.receiver_qos1",
            [
                "MQTT-3.3.4-1",
                "MQTT-4.3.2-4",
                "MQTT-2.2.1-5",
                "MQTT-3.4.2-1"
            ],
            "QoS 0 PUBLISH gets no answer; QoS 1 PUBLISH id 0x1234 gets PUBACK 0x1234 with a PUBACK reason code",
            [Qos1],
            false,
            receiver_qos1
        ),
        case!(
            v311,
            "qos.receiver_qos1",
            ["MQTT-3.3.4-1", "MQTT-4.3.2-2", "MQTT-2.3.1-6"],
            "QoS 0 PUBLISH gets no answer; QoS 1 PUBLISH id 0x1234 gets PUBACK 0x1234",
            [Qos1],
            false,
            receiver_qos1
        ),
        case!(
            v5,
            "qos.receiver_qos2",
            [
                "MQTT-3.3.4-1",
                "MQTT-2.2.1-5",
                "MQTT-3.5.2-1",
                "MQTT-3.7.2-1",
                "MQTT-4.3.3-8",
                "MQTT-4.3.3-10",
                "MQTT-4.3.3-11",
                "MQTT-4.3.3-12"
            ],
            "QoS 2 PUBLISH gets PUBREC, a duplicate gets PUBREC again and is delivered once, PUBREL gets PUBCOMP, the id is then new",
            [Qos2],
            false,
            receiver_qos2
        ),
        case!(
            v311,
            "qos.receiver_qos2",
            ["MQTT-3.3.4-1", "MQTT-2.3.1-6", "MQTT-4.3.3-2"],
            "QoS 2 PUBLISH gets PUBREC, a duplicate gets PUBREC again and is delivered once, PUBREL gets PUBCOMP, the id is then new",
            [Qos2],
            false,
            receiver_qos2
        ),
        case!(
            v5,
            "qos.pubrec_error_then_new",
            ["MQTT-4.3.3-9"],
            "after PUBREC 0x80 or above (provoked by an invalid UTF-8 payload with Payload Format Indicator 1), the same id is a new message",
            [Qos2],
            false,
            pubrec_error_then_new
        ),
        case!(
            v5,
            "qos.pubrel_unknown",
            ["MQTT-3.7.2-1", "MQTT-4.3.3-11"],
            "PUBREL for an unknown Packet Identifier gets PUBCOMP with that id and reason 0x00 or 0x92",
            [Qos2],
            false,
            pubrel_unknown
        ),
        case!(
            v5,
            "qos.qos1_id_reuse",
            ["MQTT-4.3.2-5"],
            "after PUBACK, a QoS 1 PUBLISH with the same id (DUP 1, same payload) is a new message: delivered again",
            [Qos1],
            false,
            qos1_id_reuse
        ),
        case!(
            v311,
            "qos.qos1_id_reuse",
            ["MQTT-4.3.2-2"],
            "after PUBACK, a QoS 1 PUBLISH with the same id (DUP 1, same payload) is a new message: delivered again",
            [Qos1],
            false,
            qos1_id_reuse
        ),
        case!(
            v5,
            "qos.qos0_delivery",
            ["MQTT-2.2.1-2", "MQTT-4.3.1-1"],
            "a QoS 0 message is delivered as PUBLISH QoS 0, DUP 0, without a Packet Identifier",
            [],
            false,
            qos0_delivery
        ),
        case!(
            v311,
            "qos.qos0_delivery",
            ["MQTT-2.3.1-5", "MQTT-4.3.1-1"],
            "a QoS 0 message is delivered as PUBLISH QoS 0, DUP 0, without a Packet Identifier",
            [],
            false,
            qos0_delivery
        ),
        case!(
            v5,
            "qos.dup_not_propagated",
            ["MQTT-3.3.1-2", "MQTT-3.3.1-3", "MQTT-4.3.2-2"],
            "a QoS 1 PUBLISH sent with DUP 1 is delivered with DUP 0 (at QoS 1 and at QoS 0)",
            [Qos1],
            false,
            dup_not_propagated
        ),
        case!(
            v311,
            "qos.dup_not_propagated",
            ["MQTT-3.3.1-2", "MQTT-3.3.1-3", "MQTT-4.3.1-1"],
            "a QoS 1 PUBLISH sent with DUP 1 is delivered with DUP 0 (at QoS 1 and at QoS 0)",
            [Qos1],
            false,
            dup_not_propagated
        ),
        case!(
            v5,
            "qos.downgrade",
            ["MQTT-3.8.4-8"],
            "messages are delivered at the minimum of the published QoS and the granted QoS",
            [Qos2],
            false,
            downgrade
        ),
        case!(
            v311,
            "qos.downgrade",
            ["MQTT-3.8.4-6"],
            "messages are delivered at the minimum of the published QoS and the granted QoS",
            [Qos2],
            false,
            downgrade
        ),
        case!(
            v5,
            "qos.sender_qos1",
            ["MQTT-2.2.1-4", "MQTT-4.3.2-1", "MQTT-4.3.2-2"],
            "QoS 1 deliveries withheld from PUBACK have distinct non-zero ids, QoS 1 and DUP 0",
            [Qos1],
            false,
            sender_qos1
        ),
        case!(
            v311,
            "qos.sender_qos1",
            ["MQTT-2.3.1-1", "MQTT-2.3.1-4", "MQTT-4.3.2-1"],
            "QoS 1 deliveries withheld from PUBACK have distinct non-zero ids, QoS 1 and DUP 0",
            [Qos1],
            false,
            sender_qos1
        ),
        case!(
            v5,
            "qos.sender_qos2",
            [
                "MQTT-2.2.1-4",
                "MQTT-2.2.1-5",
                "MQTT-3.6.2-1",
                "MQTT-4.3.3-1",
                "MQTT-4.3.3-2",
                "MQTT-4.3.3-4"
            ],
            "QoS 2 deliveries have distinct non-zero ids, QoS 2, DUP 0; PUBREC gets PUBREL with the same id",
            [Qos2],
            false,
            sender_qos2
        ),
        case!(
            v311,
            "qos.sender_qos2",
            ["MQTT-2.3.1-4", "MQTT-2.3.1-6", "MQTT-4.3.3-1"],
            "QoS 2 deliveries have distinct non-zero ids, QoS 2, DUP 0; PUBREC gets PUBREL with the same id",
            [Qos2],
            false,
            sender_qos2
        ),
        case!(
            v5,
            "qos.resume_qos1",
            ["MQTT-3.3.1-1", "MQTT-4.3.2-3"],
            "unacknowledged QoS 1 deliveries are resent on session resume with DUP 1 and the same ids; acknowledged ones are not",
            [Qos1],
            false,
            resume_qos1
        ),
        case!(
            v311,
            "qos.resume_qos1",
            ["MQTT-3.3.1-1", "MQTT-2.3.1-4", "MQTT-4.3.2-1"],
            "unacknowledged QoS 1 deliveries are resent on session resume with DUP 1 and the same ids; acknowledged ones are not",
            [Qos1],
            false,
            resume_qos1
        ),
        case!(
            v5,
            "qos.resume_qos2",
            [
                "MQTT-3.3.1-1",
                "MQTT-4.3.3-3",
                "MQTT-4.3.3-5",
                "MQTT-4.3.3-6"
            ],
            "on session resume an unreceived QoS 2 PUBLISH is resent (DUP 1, same id), an unacknowledged PUBREL is resent, and the released PUBLISH is not",
            [Qos2],
            false,
            resume_qos2
        ),
        case!(
            v311,
            "qos.resume_qos2",
            ["MQTT-3.3.1-1", "MQTT-4.3.3-1"],
            "on session resume an unreceived QoS 2 PUBLISH is resent (DUP 1, same id), an unacknowledged PUBREL is resent, and the released PUBLISH is not",
            [Qos2],
            false,
            resume_qos2
        ),
        case!(
            v5,
            "qos.no_expiry_once_sent",
            ["MQTT-4.3.3-7"],
            "a QoS 2 PUBLISH already sent is resent on session resume even after its Message Expiry Interval",
            [Qos2],
            false,
            no_expiry_once_sent
        ),
        case!(
            v5,
            "qos.receiver_expiry_continues",
            ["MQTT-4.3.3-13"],
            "after a received QoS 2 message expires, PUBREL still gets PUBCOMP 0x00",
            [Qos2],
            false,
            receiver_expiry_continues
        ),
        case!(
            v5,
            "qos.error_ack_not_resent",
            ["MQTT-4.4.0-2"],
            "a delivery answered with PUBACK/PUBREC 0x80 is not resent on session resume",
            [Qos1],
            false,
            error_ack_not_resent
        ),
        case!(
            v5,
            "qos.ordering",
            ["MQTT-4.6.0-5", "MQTT-4.6.0-6"],
            "messages from one client to one topic are delivered in order per QoS, to exact and wildcard subscriptions",
            [Qos1],
            false,
            ordering
        ),
        case!(
            v311,
            "qos.ordering",
            ["MQTT-4.6.0-5", "MQTT-4.6.0-6"],
            "messages from one client to one topic are delivered in order per QoS, to exact and wildcard subscriptions",
            [Qos1],
            false,
            ordering
        ),
        case!(
            v5,
            "qos.maximum_qos_refused",
            ["MQTT-3.2.2-9", "MQTT-4.13.1-1"],
            "a broker with Maximum QoS below 2 says so in CONNACK and refuses a PUBLISH above it (DISCONNECT 0x9B)",
            [QosLimited],
            false,
            maximum_qos_refused
        ),
        case!(
            v5,
            "qos.subscribe_above_maximum",
            ["MQTT-3.2.2-10"],
            "a broker with Maximum QoS below 2 accepts SUBSCRIBE at QoS 0, 1 and 2 and grants at most its Maximum QoS",
            [QosLimited],
            false,
            subscribe_above_maximum
        ),
        case!(
            v5,
            "qos.publish_qos3",
            ["MQTT-3.3.1-4"],
            "a PUBLISH with both QoS bits set closes the connection and is not delivered",
            [],
            false,
            publish_qos3
        ),
        case!(
            v311,
            "qos.publish_qos3",
            ["MQTT-3.3.1-4"],
            "a PUBLISH with both QoS bits set closes the connection and is not delivered",
            [],
            false,
            publish_qos3
        ),
        case!(
            v5,
            "qos.publish_dup_qos0",
            ["MQTT-3.3.1-2", "MQTT-4.13.1-1"],
            "a QoS 0 PUBLISH with DUP 1 is a protocol violation: the connection closes, the message is not delivered",
            [],
            false,
            publish_dup_qos0
        ),
        case!(
            v311,
            "qos.publish_dup_qos0",
            ["MQTT-3.3.1-2", "MQTT-4.8.0-1"],
            "a QoS 0 PUBLISH with DUP 1 is a protocol violation: the connection closes, the message is not delivered",
            [],
            false,
            publish_dup_qos0
        ),
        case!(
            v311,
            "qos.publish_id_zero",
            ["MQTT-2.3.1-1"],
            "a QoS 1 PUBLISH with Packet Identifier 0 closes the connection and is not delivered",
            [Qos1],
            false,
            publish_id_zero
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers, shared with the flow and alias modules.

/// The payload of a PUBLISH as text.
pub(super) fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// A CONNECT for `name` that keeps its session: 5.0 Session Expiry 60 s, 3.1.1 Clean Session
/// 0; `clean` is the 5.0 Clean Start (3.1.1 always resumes with Clean Session 0).
pub(super) async fn connect_session(
    cx: &Ctx,
    name: &str,
    clean: bool,
) -> Result<(Conn, ConnAck), Stop> {
    let mut c = cx.connect_packet(name);
    if cx.v5() {
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(60);
    } else {
        c.clean_start = false;
    }
    cx.connect_with(name, c).await
}

/// Ends the session of `name`: connects with Clean Start 1 and no Session Expiry, then
/// disconnects.
pub(super) async fn end_session(cx: &Ctx, name: &str) {
    if let Ok(conn) = cx.connect(name).await {
        conn.disconnect().await;
    }
}

/// Publishes `msgs` in order, with at most `window` QoS 1/2 messages unacknowledged, and
/// completes every acknowledgement flow.
pub(super) async fn pump(conn: &mut Conn, msgs: Vec<Publish>, window: usize) -> TestResult {
    let window = window.max(1);
    let mut open: BTreeSet<u16> = BTreeSet::new();
    let mut queue = msgs.into_iter();
    let mut done = false;
    loop {
        while !done && open.len() < window {
            match queue.next() {
                Some(p) => {
                    if let Some(id) = p.packet_id {
                        open.insert(id.get());
                    }
                    conn.send(p).await?;
                }
                None => done = true,
            }
        }
        if done && open.is_empty() {
            return Ok(());
        }
        match conn
            .recv("MQTT-3.3.4-1", "an acknowledgement of the tester's PUBLISH")
            .await?
        {
            Packet::PubAck(a) => {
                open.remove(&a.packet_id.get());
            }
            Packet::PubRec(r) => {
                if r.reason_code.is_error() {
                    open.remove(&r.packet_id.get());
                } else {
                    conn.send(PubRel::new(r.packet_id)).await?;
                }
            }
            Packet::PubComp(c) => {
                open.remove(&c.packet_id.get());
            }
            other => {
                return Err(Failure::of(
                    "MQTT-3.3.4-1",
                    "PUBACK, PUBREC or PUBCOMP for the tester's PUBLISH packets",
                    brief(&other),
                )
                .into());
            }
        }
    }
}

/// Receives `n` PUBLISH packets; with `ack`, acknowledges each (PUBACK, or PUBREC and then
/// PUBCOMP for the PUBREL). PUBREL packets are answered with PUBCOMP on the way.
pub(super) async fn take(
    conn: &mut Conn,
    n: usize,
    ack: bool,
    statement: &'static str,
) -> Result<Vec<Publish>, Stop> {
    let mut got = Vec::new();
    while got.len() < n {
        let p = conn
            .recv(
                statement,
                &format!("{n} PUBLISH packets (got {})", got.len()),
            )
            .await?;
        match p {
            Packet::Publish(p) => {
                if ack {
                    ack_publish(conn, &p).await?;
                }
                got.push(p);
            }
            Packet::PubRel(r) => conn.send(PubComp::new(r.packet_id)).await?,
            other => {
                return Err(Failure::of(
                    statement,
                    format!("{n} PUBLISH packets (got {})", got.len()),
                    brief(&other),
                )
                .into());
            }
        }
    }
    Ok(got)
}

/// Acknowledges a PUBLISH from the broker (PUBACK, or PUBREC).
pub(super) async fn ack_publish(conn: &mut Conn, p: &Publish) -> TestResult {
    match (p.qos, p.packet_id) {
        (QoS::AtLeastOnce, Some(id)) => conn.send(PubAck::new(id)).await,
        (QoS::ExactlyOnce, Some(id)) => conn.send(PubRec::new(id)).await,
        _ => Ok(()),
    }
}

/// Reads until nothing comes for the quiet time, answering PUBREL packets and acknowledging
/// PUBLISH packets (with `ack`); returns the PUBLISH packets.
pub(super) async fn drain(cx: &Ctx, conn: &mut Conn, ack: bool) -> Result<Vec<Publish>, Stop> {
    let quiet = cx.quiet_for();
    let mut got = Vec::new();
    loop {
        match conn.recv_within(quiet).await? {
            None | Some(Received::Closed) => return Ok(got),
            Some(Received::Packet(Packet::Publish(p))) => {
                if ack {
                    ack_publish(conn, &p).await?;
                }
                got.push(p);
            }
            Some(Received::Packet(Packet::PubRel(r))) => {
                conn.send(PubComp::new(r.packet_id)).await?;
            }
            Some(Received::Packet(_)) => {}
        }
    }
}

/// A PUBACK reason code (section 3.4.2.1).
pub(super) fn puback_code(c: ReasonCode) -> bool {
    matches!(
        c.0,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    )
}

/// Subscribes `conn` to `f` at QoS `q` and returns the granted code.
pub(super) async fn sub_code(conn: &mut Conn, f: &str, q: u8) -> Result<ReasonCode, Stop> {
    let codes = conn
        .subscribe_to(1, f, SubscriptionOptions::qos(qos(q)), "MQTT-3.8.4-1")
        .await?;
    codes
        .first()
        .copied()
        .ok_or_else(|| Failure::plain("a SUBACK with one reason code", "none").into())
}

fn msgs(t: &str, prefix: &str, n: usize, q: u8, first_id: u16) -> Result<Vec<Publish>, Stop> {
    (0..n)
        .map(|i| {
            let id = first_id.wrapping_add(u16::try_from(i).unwrap_or(0));
            publish(t, &format!("{prefix}{i}"), q, id)
        })
        .collect()
}

fn expect_id(p: &Packet, t: PacketType, id: u16, st: &'static str) -> Result<ReasonCode, Stop> {
    let (got_t, got_id, code) = match p {
        Packet::PubAck(a) => (PacketType::PubAck, a.packet_id.get(), a.reason_code),
        Packet::PubRec(a) => (PacketType::PubRec, a.packet_id.get(), a.reason_code),
        Packet::PubRel(a) => (PacketType::PubRel, a.packet_id.get(), a.reason_code),
        Packet::PubComp(a) => (PacketType::PubComp, a.packet_id.get(), a.reason_code),
        other => {
            return Err(Failure::of(st, format!("a {t} with id {id:#06x}"), brief(other)).into());
        }
    };
    ensure!(
        got_t == t && got_id == id,
        st,
        format!("a {t} with id {id:#06x}"),
        "a {got_t} with id {got_id:#06x}"
    );
    Ok(code)
}

// ---------------------------------------------------------------------------------------------
// The broker as receiver.

async fn receiver_qos1(cx: Ctx) -> TestResult {
    let t = cx.topic("r1");
    let mut conn = cx.connect("p").await?;
    conn.send(publish(&t, "zero", 0, 0)?).await?;
    conn.expect_quiet("MQTT-3.3.4-1", "no answer to a QoS 0 PUBLISH", None)
        .await?;
    conn.send(publish(&t, "one", 1, 0x1234)?).await?;
    let (ids, codes) = if cx.v5() {
        ("MQTT-2.2.1-5", "MQTT-3.4.2-1")
    } else {
        ("MQTT-2.3.1-6", "MQTT-3.3.4-1")
    };
    let p = conn
        .recv("MQTT-3.3.4-1", "a PUBACK for the QoS 1 PUBLISH")
        .await?;
    ensure!(
        p.packet_type() == PacketType::PubAck,
        "MQTT-3.3.4-1",
        "a PUBACK for a QoS 1 PUBLISH",
        "{}",
        brief(&p)
    );
    let st = if cx.v5() {
        "MQTT-4.3.2-4"
    } else {
        "MQTT-4.3.2-2"
    };
    let code = expect_id(&p, PacketType::PubAck, 0x1234, st)?;
    expect_id(&p, PacketType::PubAck, 0x1234, ids)?;
    ensure!(
        puback_code(code) && !code.is_error(),
        codes,
        "PUBACK reason 0x00 or 0x10 for an accepted QoS 1 PUBLISH",
        "PUBACK reason {:#04x}",
        code.0
    );
    conn.disconnect().await;
    Ok(())
}

async fn receiver_qos2(cx: Ctx) -> TestResult {
    let t = cx.topic("r2");
    let v5 = cx.v5();
    let (ids, rec_code, st_rec, st_dup, st_comp, st_new) = if v5 {
        (
            "MQTT-2.2.1-5",
            "MQTT-3.5.2-1",
            "MQTT-4.3.3-8",
            "MQTT-4.3.3-10",
            "MQTT-4.3.3-11",
            "MQTT-4.3.3-12",
        )
    } else {
        (
            "MQTT-2.3.1-6",
            "MQTT-4.3.3-2",
            "MQTT-4.3.3-2",
            "MQTT-4.3.3-2",
            "MQTT-4.3.3-2",
            "MQTT-4.3.3-2",
        )
    };
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 0).await?;
    let mut conn = cx.connect("p").await?;
    conn.send(publish(&t, "m1", 2, 0x0101)?).await?;
    let p = conn
        .recv("MQTT-3.3.4-1", "a PUBREC for the QoS 2 PUBLISH")
        .await?;
    ensure!(
        p.packet_type() == PacketType::PubRec,
        "MQTT-3.3.4-1",
        "a PUBREC for a QoS 2 PUBLISH",
        "{}",
        brief(&p)
    );
    let code = expect_id(&p, PacketType::PubRec, 0x0101, st_rec)?;
    expect_id(&p, PacketType::PubRec, 0x0101, ids)?;
    ensure!(
        puback_code(code) && !code.is_error(),
        rec_code,
        "PUBREC reason 0x00 or 0x10 for an accepted QoS 2 PUBLISH",
        "PUBREC reason {:#04x}",
        code.0
    );
    // The same PUBLISH again, before PUBREL.
    let mut dup = publish(&t, "m1", 2, 0x0101)?;
    dup.dup = true;
    conn.send(dup).await?;
    let p = conn
        .recv(st_dup, "a PUBREC for the duplicate QoS 2 PUBLISH")
        .await?;
    let code = expect_id(&p, PacketType::PubRec, 0x0101, st_dup)?;
    ensure!(
        puback_code(code),
        rec_code,
        "a PUBREC reason code",
        "PUBREC reason {:#04x}",
        code.0
    );
    conn.send(PubRel::new(pid(0x0101))).await?;
    let p = conn.recv(st_comp, "a PUBCOMP for the PUBREL").await?;
    let code = expect_id(&p, PacketType::PubComp, 0x0101, st_comp)?;
    if v5 {
        ensure!(
            code == ReasonCode::SUCCESS,
            "MQTT-3.7.2-1",
            "PUBCOMP 0x00 for a PUBREL of a known Packet Identifier",
            "PUBCOMP reason {:#04x}",
            code.0
        );
    }
    let got = take(&mut sub, 1, false, st_rec).await?;
    let more = drain(&cx, &mut sub, false).await?;
    ensure!(
        more.is_empty(),
        st_dup,
        "one delivery of a QoS 2 message sent twice before PUBREL",
        "{} more: {:?}",
        more.len(),
        more.iter().map(text).collect::<Vec<_>>()
    );
    ensure!(
        got.first().map(text).as_deref() == Some("m1"),
        st_rec,
        "the message \"m1\" delivered",
        "{:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
    // After PUBCOMP the id is free: a new message.
    conn.send(publish(&t, "m2", 2, 0x0101)?).await?;
    let p = conn.recv(st_new, "a PUBREC for the new message").await?;
    expect_id(&p, PacketType::PubRec, 0x0101, st_new)?;
    conn.send(PubRel::new(pid(0x0101))).await?;
    let p = conn.recv(st_comp, "a PUBCOMP").await?;
    expect_id(&p, PacketType::PubComp, 0x0101, st_comp)?;
    let got = take(&mut sub, 1, false, st_new).await?;
    ensure!(
        got.first().map(text).as_deref() == Some("m2"),
        st_new,
        "\"m2\" (same id after PUBCOMP) delivered as a new message",
        "{:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

async fn pubrec_error_then_new(cx: Ctx) -> TestResult {
    let st = "MQTT-4.3.3-9";
    let t = cx.topic("bad");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 0).await?;
    let mut conn = cx.connect("p").await?;
    // Payload Format Indicator 1 (UTF-8) with a payload that is not UTF-8.
    let wire = publish_frame(
        true,
        0x04,
        t.as_bytes(),
        Some(11),
        &[0x01, 0x01],
        &[0xff, 0xfe, 0xfd],
    );
    conn.send_raw(
        &wire,
        "QoS 2 PUBLISH, Payload Format Indicator 1, payload not UTF-8",
    )
    .await?;
    let code = match conn.recv_within(cx.answer_within()).await? {
        Some(Received::Packet(Packet::PubRec(r))) if r.packet_id.get() == 11 => r.reason_code,
        Some(Received::Packet(Packet::PubRec(r))) => {
            return Err(Failure::of(
                "MQTT-4.3.3-8",
                "PUBREC 11",
                format!("PUBREC {}", r.packet_id.get()),
            )
            .into());
        }
        Some(Received::Packet(Packet::Disconnect(_)) | Received::Closed) | None => {
            return Err(Stop::NotApplicable(
                "the broker did not answer the invalid payload with a PUBREC (it may close \
                 the connection instead): no PUBREC 0x80 or above to follow"
                    .into(),
            ));
        }
        Some(Received::Packet(other)) => {
            return Err(Failure::of("MQTT-3.3.4-1", "a PUBREC", brief(&other)).into());
        }
    };
    if !code.is_error() {
        // The broker does not check the payload (it MAY): complete the flow.
        conn.send(PubRel::new(pid(11))).await?;
        let _ = conn.recv(st, "a PUBCOMP").await?;
        conn.disconnect().await;
        sub.disconnect().await;
        return Err(Stop::NotApplicable(format!(
            "the broker accepted the invalid payload (PUBREC {:#04x}): no PUBREC 0x80 or above to follow",
            code.0
        )));
    }
    let early = drain(&cx, &mut sub, false).await?;
    ensure!(
        early.is_empty(),
        st,
        format!(
            "nothing delivered for a PUBLISH refused with PUBREC {:#04x}",
            code.0
        ),
        "{:?}",
        early.iter().map(text).collect::<Vec<_>>()
    );
    conn.send(publish(&t, "good", 2, 11)?).await?;
    let r = conn.recv(st, "a PUBREC for the new message").await?;
    let code = expect_id(&r, PacketType::PubRec, 11, st)?;
    ensure!(
        !code.is_error(),
        st,
        "a success PUBREC: the same id after PUBREC 0x80 or above is a new message",
        "PUBREC {:#04x}",
        code.0
    );
    conn.send(PubRel::new(pid(11))).await?;
    let c = conn.recv(st, "a PUBCOMP").await?;
    expect_id(&c, PacketType::PubComp, 11, st)?;
    let got = take(&mut sub, 1, false, st).await?;
    ensure!(
        got.first().map(text).as_deref() == Some("good"),
        st,
        "the new message delivered",
        "{:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

async fn pubrel_unknown(cx: Ctx) -> TestResult {
    let mut conn = cx.connect("p").await?;
    conn.send(PubRel::new(pid(0x4321))).await?;
    let p = conn
        .recv("MQTT-4.3.3-11", "a PUBCOMP for the PUBREL")
        .await?;
    let code = expect_id(&p, PacketType::PubComp, 0x4321, "MQTT-4.3.3-11")?;
    ensure!(
        matches!(code.0, 0x00 | 0x92),
        "MQTT-3.7.2-1",
        "PUBCOMP reason 0x00 or 0x92",
        "PUBCOMP reason {:#04x}",
        code.0
    );
    conn.disconnect().await;
    Ok(())
}

async fn qos1_id_reuse(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-4.3.2-5"
    } else {
        "MQTT-4.3.2-2"
    };
    let t = cx.topic("reuse");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 1).await?;
    let mut conn = cx.connect("p").await?;
    for dup in [false, true] {
        let mut p = publish(&t, "m1", 1, 5)?;
        p.dup = dup;
        conn.send(p).await?;
        let a = conn.recv(st, "a PUBACK").await?;
        expect_id(&a, PacketType::PubAck, 5, st)?;
        // Wait for the delivery before the id is used again.
        let got = take(&mut sub, 1, true, st).await?;
        ensure!(
            got.first().map(text).as_deref() == Some("m1"),
            st,
            "the message delivered",
            "{:?}",
            got.iter().map(text).collect::<Vec<_>>()
        );
    }
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The broker as sender.

async fn qos0_delivery(cx: Ctx) -> TestResult {
    let (st_id, st_flags) = if cx.v5() {
        ("MQTT-2.2.1-2", "MQTT-4.3.1-1")
    } else {
        ("MQTT-2.3.1-5", "MQTT-4.3.1-1")
    };
    let t = cx.topic("q0");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 0).await?;
    let mut conn = cx.connect("p").await?;
    conn.send(publish(&t, "hello", 0, 0)?).await?;
    let got = take(&mut sub, 1, false, st_flags).await?;
    let Some(p) = got.first() else {
        return Err(Failure::plain("a delivery", "none").into());
    };
    ensure!(
        p.qos == QoS::AtMostOnce && !p.dup,
        st_flags,
        "PUBLISH QoS 0 DUP 0",
        "PUBLISH QoS {} DUP {}",
        p.qos as u8,
        u8::from(p.dup)
    );
    // A Packet Identifier would show as two extra bytes before the payload (or in place of
    // the Property Length in 5.0).
    ensure!(
        p.packet_id.is_none() && p.payload.as_ref() == b"hello" && p.properties.is_empty(),
        st_id,
        "no Packet Identifier: exactly the payload \"hello\" (5.0: after Property Length 0)",
        "payload {:?}, properties {:?}",
        p.payload,
        p.properties
    );
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

async fn dup_not_propagated(cx: Ctx) -> TestResult {
    let (st_q0, st_dup, st_q1) = if cx.v5() {
        ("MQTT-3.3.1-2", "MQTT-3.3.1-3", "MQTT-4.3.2-2")
    } else {
        ("MQTT-3.3.1-2", "MQTT-3.3.1-3", "MQTT-4.3.1-1")
    };
    let t = cx.topic("dup");
    let mut s1 = cx.connect("s1").await?;
    s1.sub(&t, 1).await?;
    let mut s0 = cx.connect("s0").await?;
    s0.sub(&t, 0).await?;
    let mut conn = cx.connect("p").await?;
    let mut p = publish(&t, "first", 1, 9)?;
    p.dup = true;
    conn.send(p).await?;
    let a = conn.recv("MQTT-3.3.4-1", "a PUBACK").await?;
    expect_id(&a, PacketType::PubAck, 9, "MQTT-3.3.4-1")?;
    let got = take(&mut s1, 1, true, st_dup).await?;
    if let Some(p) = got.first() {
        ensure!(
            !p.dup,
            st_dup,
            "DUP 0 on the first delivery of a message published with DUP 1",
            "DUP 1"
        );
        ensure!(
            p.qos == QoS::AtLeastOnce,
            if cx.v5() { st_q1 } else { st_dup },
            "QoS 1 delivery",
            "QoS {}",
            p.qos as u8
        );
    }
    let got = take(&mut s0, 1, false, st_q0).await?;
    if let Some(p) = got.first() {
        ensure!(
            !p.dup && p.qos == QoS::AtMostOnce,
            st_q0,
            "QoS 0 DUP 0 on the QoS 0 delivery of a message published with DUP 1",
            "QoS {} DUP {}",
            p.qos as u8,
            u8::from(p.dup)
        );
        ensure!(
            !p.dup,
            if cx.v5() { st_q0 } else { st_q1 },
            "DUP 0",
            "DUP 1"
        );
    }
    conn.disconnect().await;
    s0.disconnect().await;
    s1.disconnect().await;
    Ok(())
}

async fn downgrade(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.8.4-8"
    } else {
        "MQTT-3.8.4-6"
    };
    let mut conn = cx.connect("p").await?;
    // (subscription QoS, published QoS)
    for (sq, pq) in [(1u8, 2u8), (2, 0), (0, 1), (2, 1), (1, 1)] {
        let t = cx.topic(&format!("d{sq}{pq}"));
        let mut sub = cx.connect(&format!("s{sq}{pq}")).await?;
        // The broker may grant less than the requested QoS: the rule is about the granted one.
        let granted = sub_code(&mut sub, &t, sq).await?;
        if granted.0 > 2 {
            return Err(Failure::plain(
                format!("the broker to grant a subscription to {t:?} (requested QoS {sq})"),
                format!("SUBACK {:#04x}", granted.0),
            )
            .into());
        }
        let gq = granted.0;
        pump(&mut conn, vec![publish(&t, "m", pq, 3)?], 1).await?;
        let got = take(&mut sub, 1, true, st).await?;
        let want = gq.min(pq);
        if let Some(p) = got.first() {
            ensure!(
                p.qos as u8 == want,
                st,
                format!("delivery at QoS {want} (published at {pq}, granted {gq}, requested {sq})"),
                "delivery at QoS {}",
                p.qos as u8
            );
        }
        // 3.1.1 lets a broker send duplicates of a QoS 1 message to a QoS 0 subscription.
        let more = drain(&cx, &mut sub, true).await?;
        ensure!(
            more.iter().all(|p| p.qos as u8 == want),
            st,
            format!("only deliveries at QoS {want}"),
            "{:?}",
            more.iter().map(|p| p.qos as u8).collect::<Vec<_>>()
        );
        sub.disconnect().await;
    }
    conn.disconnect().await;
    Ok(())
}

async fn sender_qos1(cx: Ctx) -> TestResult {
    let (st_ids, st_unused, st_flags) = if cx.v5() {
        ("MQTT-2.2.1-4", "MQTT-4.3.2-1", "MQTT-4.3.2-2")
    } else {
        ("MQTT-2.3.1-1", "MQTT-2.3.1-4", "MQTT-4.3.2-1")
    };
    let t = cx.topic("s1");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 1).await?;
    let mut conn = cx.connect("p").await?;
    let window = usize::from(cx.caps().receive_maximum);
    pump(&mut conn, msgs(&t, "m", 8, 1, 1)?, window).await?;
    let got = take(&mut sub, 8, false, st_unused).await?;
    check_ids(&got, 1, st_ids, st_unused, st_flags)?;
    // Acknowledge half, then four more: their ids must not collide with the unacknowledged.
    let mut still: BTreeSet<u16> = BTreeSet::new();
    for (i, p) in got.iter().enumerate() {
        if i % 2 == 0 {
            ack_publish(&mut sub, p).await?;
        } else if let Some(id) = p.packet_id {
            still.insert(id.get());
        }
    }
    pump(&mut conn, msgs(&t, "n", 4, 1, 20)?, window).await?;
    let more = take(&mut sub, 4, false, st_unused).await?;
    check_ids(&more, 1, st_ids, st_unused, st_flags)?;
    for p in &more {
        let id = p.packet_id.map_or(0, |i| i.get());
        ensure!(
            !still.contains(&id),
            st_unused,
            "a Packet Identifier not in use by an unacknowledged PUBLISH",
            "id {id} reused while still unacknowledged"
        );
    }
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

/// Every PUBLISH has QoS `q`, DUP 0, and a non-zero id unique among them.
fn check_ids(
    got: &[Publish],
    q: u8,
    st_ids: &'static str,
    st_unused: &'static str,
    st_flags: &'static str,
) -> TestResult {
    let mut seen = BTreeSet::new();
    for p in got {
        let id = p.packet_id.map_or(0, |i| i.get());
        ensure!(
            id != 0,
            st_ids,
            "a non-zero Packet Identifier",
            "{}",
            brief(&Packet::Publish(p.clone()))
        );
        ensure!(
            seen.insert(id),
            st_unused,
            "distinct Packet Identifiers for unacknowledged PUBLISH packets",
            "id {id} used twice: {:?}",
            got.iter()
                .map(|p| p.packet_id.map_or(0, |i| i.get()))
                .collect::<Vec<_>>()
        );
        ensure!(
            p.qos as u8 == q && !p.dup,
            st_flags,
            format!("QoS {q} and DUP 0 on a first delivery"),
            "QoS {} DUP {}",
            p.qos as u8,
            u8::from(p.dup)
        );
    }
    Ok(())
}

async fn sender_qos2(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let (st_ids, st_unused, st_flags, st_rel, st_rel_code) = if v5 {
        (
            "MQTT-2.2.1-4",
            "MQTT-4.3.3-1",
            "MQTT-4.3.3-2",
            "MQTT-4.3.3-4",
            "MQTT-3.6.2-1",
        )
    } else {
        (
            "MQTT-2.3.1-4",
            "MQTT-4.3.3-1",
            "MQTT-4.3.3-1",
            "MQTT-4.3.3-1",
            "MQTT-4.3.3-1",
        )
    };
    let st_same = if v5 { "MQTT-2.2.1-5" } else { "MQTT-2.3.1-6" };
    let t = cx.topic("s2");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 2).await?;
    let mut conn = cx.connect("p").await?;
    let window = usize::from(cx.caps().receive_maximum);
    pump(&mut conn, msgs(&t, "m", 5, 2, 1)?, window).await?;
    let got = take(&mut sub, 5, false, st_unused).await?;
    check_ids(&got, 2, st_ids, st_unused, st_flags)?;
    for p in &got {
        let Some(id) = p.packet_id else { continue };
        sub.send(PubRec::new(id)).await?;
        let r = sub.recv(st_rel, "a PUBREL for the PUBREC").await?;
        let code = expect_id(&r, PacketType::PubRel, id.get(), st_rel)?;
        expect_id(&r, PacketType::PubRel, id.get(), st_same)?;
        ensure!(
            matches!(code.0, 0x00 | 0x92),
            st_rel_code,
            "PUBREL reason 0x00 or 0x92",
            "PUBREL reason {:#04x}",
            code.0
        );
        if v5 {
            ensure!(
                code == ReasonCode::SUCCESS,
                st_rel_code,
                "PUBREL 0x00 for a PUBREC of a PUBLISH the broker sent",
                "PUBREL reason {:#04x}",
                code.0
            );
        }
        sub.send(PubComp::new(id)).await?;
    }
    let more = drain(&cx, &mut sub, true).await?;
    ensure!(
        more.is_empty(),
        st_rel,
        "no PUBLISH again after PUBREL and PUBCOMP",
        "{:?}",
        more.iter().map(text).collect::<Vec<_>>()
    );
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

async fn resume_qos1(cx: Ctx) -> TestResult {
    let (st_dup, st_resend, st_same) = if cx.v5() {
        ("MQTT-3.3.1-1", "MQTT-4.3.2-3", "MQTT-4.3.2-3")
    } else {
        ("MQTT-3.3.1-1", "MQTT-4.3.2-1", "MQTT-2.3.1-4")
    };
    let t = cx.topic("res1");
    let (mut sub, _) = connect_session(&cx, "s", true).await?;
    sub.sub(&t, 1).await?;
    let mut conn = cx.connect("p").await?;
    pump(
        &mut conn,
        msgs(&t, "m", 3, 1, 1)?,
        usize::from(cx.caps().receive_maximum),
    )
    .await?;
    let got = take(&mut sub, 3, false, st_resend).await?;
    if let Some(p) = got.first() {
        ack_publish(&mut sub, p).await?;
    }
    // Let the PUBACK arrive before the connection goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.drop_abruptly().await;
    let (mut sub, ack) = connect_session(&cx, "s", false).await?;
    ensure!(
        ack.session_present,
        st_resend,
        "Session Present 1 on resume",
        "Session Present 0"
    );
    let again = take(&mut sub, 2, true, st_resend).await?;
    let extra = drain(&cx, &mut sub, true).await?;
    for (old, new) in got.iter().skip(1).zip(again.iter()) {
        ensure!(
            new.payload == old.payload && new.packet_id == old.packet_id,
            st_same,
            format!(
                "{:?} resent with its Packet Identifier {}",
                text(old),
                old.packet_id.map_or(0, |i| i.get())
            ),
            "{}",
            brief(&Packet::Publish(new.clone()))
        );
        ensure!(
            new.dup,
            st_dup,
            "DUP 1 on the redelivery",
            "{}",
            brief(&Packet::Publish(new.clone()))
        );
    }
    ensure!(
        extra.is_empty() && again.iter().all(|p| text(p) != "m0"),
        st_resend,
        "the acknowledged \"m0\" not resent",
        "{:?}",
        again
            .iter()
            .chain(extra.iter())
            .map(text)
            .collect::<Vec<_>>()
    );
    sub.disconnect().await;
    conn.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn resume_qos2(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let (st_dup, st_pub, st_rel, st_norepub) = if v5 {
        (
            "MQTT-3.3.1-1",
            "MQTT-4.3.3-3",
            "MQTT-4.3.3-5",
            "MQTT-4.3.3-6",
        )
    } else {
        (
            "MQTT-3.3.1-1",
            "MQTT-4.3.3-1",
            "MQTT-4.3.3-1",
            "MQTT-4.3.3-1",
        )
    };
    let t = cx.topic("res2");
    let (mut sub, _) = connect_session(&cx, "s", true).await?;
    sub.sub(&t, 2).await?;
    let mut conn = cx.connect("p").await?;
    pump(
        &mut conn,
        msgs(&t, "m", 2, 2, 1)?,
        usize::from(cx.caps().receive_maximum),
    )
    .await?;
    let got = take(&mut sub, 2, false, st_pub).await?;
    let (Some(first), Some(second)) = (got.first(), got.get(1)) else {
        return Err(Failure::plain("two deliveries", "fewer").into());
    };
    let (Some(id1), Some(id2)) = (first.packet_id, second.packet_id) else {
        return Err(Failure::plain("QoS 2 deliveries", "no ids").into());
    };
    sub.send(PubRec::new(id1)).await?;
    let r = sub.recv(st_rel, "a PUBREL").await?;
    expect_id(&r, PacketType::PubRel, id1.get(), st_rel)?;
    sub.drop_abruptly().await;
    let (mut sub, ack) = connect_session(&cx, "s", false).await?;
    ensure!(
        ack.session_present,
        st_pub,
        "Session Present 1 on resume",
        "Session Present 0"
    );
    let mut rel = false;
    let mut republished = None;
    let deadline = tokio::time::Instant::now() + cx.answer_within();
    while !(rel && republished.is_some()) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match sub.recv_within(left).await? {
            Some(Received::Packet(Packet::PubRel(r))) => {
                ensure!(
                    r.packet_id == id1,
                    st_rel,
                    format!("PUBREL {} resent", id1.get()),
                    "PUBREL {}",
                    r.packet_id.get()
                );
                rel = true;
            }
            Some(Received::Packet(Packet::Publish(p))) => {
                ensure!(
                    text(&p) != text(first),
                    st_norepub,
                    "no PUBLISH resent after its PUBREL",
                    "{}",
                    brief(&Packet::Publish(p.clone()))
                );
                ensure!(
                    p.packet_id == Some(id2) && p.payload == second.payload,
                    st_pub,
                    format!("the unreceived PUBLISH resent with id {}", id2.get()),
                    "{}",
                    brief(&Packet::Publish(p.clone()))
                );
                ensure!(
                    p.dup,
                    st_dup,
                    "DUP 1 on the redelivery",
                    "{}",
                    brief(&Packet::Publish(p.clone()))
                );
                republished = Some(p);
            }
            Some(Received::Packet(other)) => {
                return Err(Failure::of(
                    st_pub,
                    "the PUBREL and the PUBLISH resent",
                    brief(&other),
                )
                .into());
            }
            Some(Received::Closed) | None => {
                let missing = if rel { st_pub } else { st_rel };
                return Err(Failure::of(
                    missing,
                    format!("PUBREL {} and PUBLISH {} resent", id1.get(), id2.get()),
                    format!(
                        "PUBREL resent: {rel}; PUBLISH resent: {}",
                        republished.is_some()
                    ),
                )
                .into());
            }
        }
    }
    sub.send(PubComp::new(id1)).await?;
    if let Some(p) = &republished {
        ack_publish(&mut sub, p).await?;
    }
    let extra = drain(&cx, &mut sub, true).await?;
    ensure!(
        extra.iter().all(|p| text(p) != text(first)),
        st_norepub,
        "no PUBLISH resent after its PUBREL",
        "{:?}",
        extra.iter().map(text).collect::<Vec<_>>()
    );
    sub.disconnect().await;
    conn.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn no_expiry_once_sent(cx: Ctx) -> TestResult {
    let st = "MQTT-4.3.3-7";
    let t = cx.topic("exp");
    let (mut sub, _) = connect_session(&cx, "s", true).await?;
    sub.sub(&t, 2).await?;
    let mut conn = cx.connect("p").await?;
    let mut p = publish(&t, "short", 2, 1)?;
    p.properties.message_expiry_interval = Some(1);
    pump(&mut conn, vec![p], 1).await?;
    let got = take(&mut sub, 1, false, st).await?;
    let id = got.first().and_then(|p| p.packet_id);
    sub.drop_abruptly().await;
    // The message expires 1 s after publication; wait 2.5 s (1.5 s of margin).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (mut sub, _) = connect_session(&cx, "s", false).await?;
    let again = take(&mut sub, 1, true, st).await?;
    ensure!(
        again.first().map(|p| p.packet_id) == Some(id)
            && again.first().map(text).as_deref() == Some("short"),
        st,
        "the QoS 2 PUBLISH already sent resent after its expiry time",
        "{:?}",
        again.first().map(|p| brief(&Packet::Publish(p.clone())))
    );
    drain(&cx, &mut sub, true).await?;
    sub.disconnect().await;
    conn.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn receiver_expiry_continues(cx: Ctx) -> TestResult {
    let st = "MQTT-4.3.3-13";
    let t = cx.topic("rexp");
    let mut conn = cx.connect("p").await?;
    let mut p = publish(&t, "short", 2, 77)?;
    p.properties.message_expiry_interval = Some(1);
    conn.send(p).await?;
    let r = conn.recv(st, "a PUBREC").await?;
    expect_id(&r, PacketType::PubRec, 77, st)?;
    // Expiry 1 s; PUBREL 2.5 s later.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    conn.send(PubRel::new(pid(77))).await?;
    let c = conn.recv(st, "a PUBCOMP for the PUBREL").await?;
    let code = expect_id(&c, PacketType::PubComp, 77, st)?;
    ensure!(
        code == ReasonCode::SUCCESS,
        st,
        "PUBCOMP 0x00: the QoS 2 flow continues after the message expired",
        "PUBCOMP reason {:#04x}",
        code.0
    );
    conn.expect_quiet(st, "the connection to stay up", None)
        .await?;
    conn.disconnect().await;
    Ok(())
}

async fn error_ack_not_resent(cx: Ctx) -> TestResult {
    let st = "MQTT-4.4.0-2";
    let t = cx.topic("err");
    let q2 = cx.caps().maximum_qos >= 2;
    let (mut sub, _) = connect_session(&cx, "s", true).await?;
    sub.sub(&t, if q2 { 2 } else { 1 }).await?;
    let mut conn = cx.connect("p").await?;
    let mut list = vec![publish(&t, "a1", 1, 1)?];
    if q2 {
        list.push(publish(&t, "a2", 2, 2)?);
    }
    let n = list.len();
    pump(&mut conn, list, 1).await?;
    let got = take(&mut sub, n, false, st).await?;
    for p in &got {
        let Some(id) = p.packet_id else { continue };
        if p.qos == QoS::AtLeastOnce {
            let mut a = PubAck::new(id);
            a.reason_code = ReasonCode::UNSPECIFIED_ERROR;
            sub.send(a).await?;
        } else {
            let mut a = PubRec::new(id);
            a.reason_code = ReasonCode::UNSPECIFIED_ERROR;
            sub.send(a).await?;
        }
    }
    let after = drain(&cx, &mut sub, false).await?;
    ensure!(
        after.is_empty(),
        st,
        "no retransmission after PUBACK/PUBREC 0x80",
        "{:?}",
        after.iter().map(text).collect::<Vec<_>>()
    );
    sub.drop_abruptly().await;
    let (mut sub, ack) = connect_session(&cx, "s", false).await?;
    if !ack.session_present {
        sub.disconnect().await;
        conn.disconnect().await;
        end_session(&cx, "s").await;
        return Err(Stop::NotApplicable(
            "the broker kept no session (Session Present 0 on resume): nothing it could resend"
                .into(),
        ));
    }
    let again = drain(&cx, &mut sub, true).await?;
    ensure!(
        again.is_empty(),
        st,
        "nothing resent on resume for deliveries answered with 0x80",
        "{:?}",
        again
            .iter()
            .map(|p| brief(&Packet::Publish(p.clone())))
            .collect::<Vec<_>>()
    );
    sub.disconnect().await;
    conn.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}

async fn ordering(cx: Ctx) -> TestResult {
    let (st5, st6) = ("MQTT-4.6.0-5", "MQTT-4.6.0-6");
    let t = cx.topic("ord/x");
    let maxq = cx.caps().maximum_qos.min(2);
    let mut subs = Vec::new();
    let mut exact = cx.connect("se").await?;
    exact.sub(&t, 2).await?;
    subs.push(("exact", exact));
    if cx.caps().wildcard_subscriptions {
        let mut wild = cx.connect("sw").await?;
        wild.sub(&cx.topic("ord/+"), 2).await?;
        subs.push(("wildcard", wild));
    }
    let per = 20usize;
    let mut list = Vec::new();
    let mut id = 1u16;
    for i in 0..per {
        for q in 0..=maxq {
            list.push(publish(&t, &format!("{q}:{i}"), q, id)?);
            id += 1;
        }
    }
    let total = list.len();
    let mut conn = cx.connect("p").await?;
    pump(
        &mut conn,
        list,
        usize::from(cx.caps().receive_maximum).min(10),
    )
    .await?;
    for (label, sub) in &mut subs {
        let got = take(sub, total, true, st6).await?;
        let mut next: BTreeMap<u8, usize> = BTreeMap::new();
        for p in &got {
            let s = text(p);
            let (q, i) = s.split_once(':').unwrap_or(("9", "0"));
            let q: u8 = q.parse().unwrap_or(9);
            let i: usize = i.parse().unwrap_or(usize::MAX);
            let want = next.entry(q).or_insert(0);
            ensure!(
                i == *want && p.qos as u8 == q,
                if *label == "exact" { st5 } else { st6 },
                format!("QoS {q} message {want} next on the {label} subscription"),
                "{} (order: {:?})",
                brief(&Packet::Publish(p.clone())),
                got.iter().map(text).collect::<Vec<_>>()
            );
            *want += 1;
        }
    }
    for (_, sub) in subs {
        sub.disconnect().await;
    }
    conn.disconnect().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A broker with a Maximum QoS below 2.

async fn maximum_qos_refused(cx: Ctx) -> TestResult {
    let st = "MQTT-3.2.2-9";
    let (mut conn, ack) = cx.connect_with("p", cx.connect_packet("p")).await?;
    let maxq = ack.properties.maximum_qos.map(|q| q as u8);
    ensure!(
        maxq.is_some_and(|m| m < 2),
        st,
        "a Maximum QoS (0 or 1) in the CONNACK of a broker that does not support QoS 2",
        "Maximum QoS {maxq:?}"
    );
    // A PUBLISH above the Maximum QoS is a Protocol Error (the client rule MQTT-3.2.2-11):
    // DISCONNECT 0x9B, if any, and the close.
    let st = "MQTT-4.13.1-1";
    let above = maxq.unwrap_or(1) + 1;
    let t = cx.topic("above");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 0).await?;
    conn.send_raw_lenient(
        &publish_frame(true, above << 1, t.as_bytes(), Some(1), &[], b"above"),
        &format!("PUBLISH QoS {above} above the Maximum QoS"),
    )
    .await?;
    let code = conn.expect_close(st, None).await?;
    if let Some(c) = code {
        ensure!(
            c == ReasonCode::QOS_NOT_SUPPORTED,
            st,
            "DISCONNECT 0x9B (QoS not supported), or none, then the close",
            "DISCONNECT {:#04x}",
            c.0
        );
    }
    let got = drain(&cx, &mut sub, false).await?;
    ensure!(
        got.is_empty(),
        st,
        "the refused message not delivered",
        "{:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
    sub.disconnect().await;
    Ok(())
}

async fn subscribe_above_maximum(cx: Ctx) -> TestResult {
    let st = "MQTT-3.2.2-10";
    let maxq = cx.caps().maximum_qos;
    let t = cx.topic("lim");
    let mut sub = cx.connect("s").await?;
    let mut s = subscribe(
        1,
        &cx.topic("lim0"),
        SubscriptionOptions::qos(QoS::AtMostOnce),
    )?;
    s.filters.push((
        crate::ctx::filter(&cx.topic("lim1"))?,
        SubscriptionOptions::qos(QoS::AtLeastOnce),
    ));
    s.filters.push((
        crate::ctx::filter(&t)?,
        SubscriptionOptions::qos(QoS::ExactlyOnce),
    ));
    sub.send(s).await?;
    let a = sub.expect_type(PacketType::SubAck, st).await?;
    let Packet::SubAck(a) = a else {
        return Err(Failure::of(st, "a SUBACK", brief(&a)).into());
    };
    ensure!(
        a.reason_codes.len() == 3,
        st,
        "three reason codes",
        "{:?}",
        a.reason_codes
    );
    for (req, c) in a.reason_codes.iter().enumerate() {
        ensure!(
            !c.is_error() && c.0 <= maxq && usize::from(c.0) <= req,
            st,
            format!("QoS {req} accepted and granted at most {maxq}"),
            "SUBACK reason {:#04x}",
            c.0
        );
    }
    // The subscription at QoS 2 works: a message at the Maximum QoS arrives at it.
    let mut conn = cx.connect("p").await?;
    pump(&mut conn, vec![publish(&t, "m", maxq, 1)?], 1).await?;
    let got = take(&mut sub, 1, true, st).await?;
    ensure!(
        got.first().is_some_and(|p| p.qos as u8 == maxq),
        st,
        format!("the message delivered at QoS {maxq}"),
        "{:?}",
        got.first().map(|p| brief(&Packet::Publish(p.clone())))
    );
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Invalid QoS flags.

/// Sends `wire` on a new connection, expects the close (with at most a DISCONNECT among
/// `codes`), and checks that a subscriber got nothing.
async fn refused_publish(
    cx: &Ctx,
    t: &str,
    wire: &[u8],
    what: &str,
    st: &'static str,
    codes: &[u8],
) -> TestResult {
    let mut sub = cx.connect("s").await?;
    sub.sub(t, 0).await?;
    let mut conn = cx.connect("p").await?;
    conn.send_raw_lenient(wire, what).await?;
    let code = conn.expect_close(st, None).await?;
    if let Some(c) = code {
        ensure!(
            codes.contains(&c.0),
            st,
            format!(
                "DISCONNECT {}, or none, then the close",
                codes
                    .iter()
                    .map(|c| format!("{c:#04x}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            "DISCONNECT {:#04x}",
            c.0
        );
    }
    let got = drain(cx, &mut sub, false).await?;
    ensure!(
        got.is_empty(),
        st,
        "the invalid PUBLISH not delivered",
        "{:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
    sub.disconnect().await;
    Ok(())
}

async fn publish_qos3(cx: Ctx) -> TestResult {
    let t = cx.topic("q3");
    let wire = publish_frame(cx.v5(), 0x06, t.as_bytes(), Some(1), &[], b"qos3");
    refused_publish(
        &cx,
        &t,
        &wire,
        "PUBLISH with QoS bits 11",
        "MQTT-3.3.1-4",
        &[0x81],
    )
    .await
}

async fn publish_dup_qos0(cx: Ctx) -> TestResult {
    let t = cx.topic("d0");
    // The rule the stimulus breaks; its reaction is the close (MQTT-4.13.1-1 in 5.0,
    // MQTT-4.8.0-1 in 3.1.1).
    let st = "MQTT-3.3.1-2";
    let wire = publish_frame(cx.v5(), 0x08, t.as_bytes(), None, &[], b"dup0");
    refused_publish(
        &cx,
        &t,
        &wire,
        "PUBLISH QoS 0 with DUP 1",
        st,
        &[0x81, 0x82],
    )
    .await
}

async fn publish_id_zero(cx: Ctx) -> TestResult {
    let t = cx.topic("id0");
    let wire = publish_frame(cx.v5(), 0x02, t.as_bytes(), Some(0), &[], b"id0");
    refused_publish(
        &cx,
        &t,
        &wire,
        "PUBLISH QoS 1 with Packet Identifier 0",
        "MQTT-2.3.1-1",
        &[0x81, 0x82],
    )
    .await
}
