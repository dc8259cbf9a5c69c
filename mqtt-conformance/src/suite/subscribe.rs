//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK: packet identifiers, one reason code per filter
//! in order, granted QoS, replacing a subscription, overlapping subscriptions, Subscription
//! Identifiers, No Local, and the refusals of a broker without wildcard subscriptions or
//! Subscription Identifiers.
//!
//! The helpers the `retain`, `topic` and `shared` modules share are here too: raw SUBSCRIBE
//! and PUBLISH packets (for filters and topics the codec refuses to encode), publishing with
//! the acknowledgement flow, and receiving PUBLISH packets while acknowledging them.

use std::collections::BTreeSet;
use std::time::Duration;

use mqtt_codec::{
    Packet, PacketType, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, RetainHandling,
    Subscribe, SubscriptionOptions, Unsubscribe,
};

use super::TestCase;
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, filter, pid, publish, qos};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "subscribe.packet_ids",
            [
                "MQTT-2.2.1-6",
                "MQTT-3.8.4-1",
                "MQTT-3.8.4-2",
                "MQTT-3.10.4-4",
                "MQTT-3.10.4-5"
            ],
            "pipelined SUBSCRIBE and UNSUBSCRIBE (one for a filter never subscribed) each get an ack with their Packet Identifier",
            [],
            false,
            packet_ids
        ),
        case!(
            v311,
            "subscribe.packet_ids",
            [
                "MQTT-2.3.1-7",
                "MQTT-3.8.4-1",
                "MQTT-3.8.4-2",
                "MQTT-3.10.4-4",
                "MQTT-3.10.4-5"
            ],
            "pipelined SUBSCRIBE and UNSUBSCRIBE (one for a filter never subscribed) each get an ack with their Packet Identifier",
            [],
            false,
            packet_ids
        ),
        case!(
            v5,
            "subscribe.reason_codes_in_order",
            [
                "MQTT-3.8.4-5",
                "MQTT-3.8.4-6",
                "MQTT-3.8.4-7",
                "MQTT-3.9.3-1",
                "MQTT-3.9.3-2"
            ],
            "one SUBACK per SUBSCRIBE with one reason code per filter, in order, each a granted QoS at most the requested one that deliveries respect",
            [],
            false,
            reason_codes_in_order
        ),
        case!(
            v311,
            "subscribe.reason_codes_in_order",
            [
                "MQTT-3.8.4-4",
                "MQTT-3.8.4-5",
                "MQTT-3.9.3-1",
                "MQTT-3.9.3-2"
            ],
            "one SUBACK per SUBSCRIBE with one return code per filter, in order, each a granted QoS at most the requested one that deliveries respect",
            [],
            false,
            reason_codes_in_order
        ),
        case!(
            v5,
            "subscribe.replace",
            ["MQTT-3.8.4-3"],
            "subscribing again to the same filter replaces the subscription: one copy, at the new QoS",
            [Qos1],
            false,
            replace
        ),
        case!(
            v311,
            "subscribe.replace",
            ["MQTT-3.8.4-3"],
            "subscribing again to the same filter replaces the subscription: one copy, at the new QoS",
            [Qos1],
            false,
            replace
        ),
        case!(
            v5,
            "subscribe.overlap_max_qos",
            ["MQTT-3.3.4-2"],
            "with overlapping subscriptions at QoS 1 and 2, a QoS 2 message is delivered at QoS 2",
            [Qos2, Wildcards],
            false,
            overlap_max_qos
        ),
        case!(
            v311,
            "subscribe.overlap_max_qos",
            ["MQTT-3.3.5-1"],
            "with overlapping subscriptions at QoS 1 and 2, a QoS 2 message is delivered at QoS 2",
            [Qos2, Wildcards],
            false,
            overlap_max_qos
        ),
        case!(
            v5,
            "subscribe.subscription_ids_single_copy",
            ["MQTT-3.3.4-3", "MQTT-3.3.4-4"],
            "a message matching overlapping subscriptions, sent as a single copy, carries all their Subscription Identifiers",
            [SubscriptionIds, Wildcards, Qos1],
            false,
            subscription_ids_single_copy
        ),
        case!(
            v5,
            "subscribe.subscription_ids_per_copy",
            ["MQTT-3.3.4-3", "MQTT-3.3.4-5"],
            "a message matching overlapping subscriptions, sent as one copy per subscription, carries each its own Subscription Identifier",
            [SubscriptionIds, Wildcards, Qos1],
            false,
            subscription_ids_per_copy
        ),
        case!(
            v5,
            "subscribe.no_local",
            ["MQTT-3.8.3-3"],
            "with No Local, a client's own messages are not sent back to it; another client's are",
            [Qos1],
            false,
            no_local
        ),
        case!(
            v5,
            "unsubscribe.exact_filter",
            ["MQTT-3.10.4-1", "MQTT-3.10.4-2", "MQTT-3.11.3-2"],
            "UNSUBSCRIBE compares filters character by character: a/x does not remove a/+, a/+ does, and delivery stops",
            [Wildcards, Qos1],
            false,
            unsubscribe_exact
        ),
        case!(
            v311,
            "unsubscribe.exact_filter",
            ["MQTT-3.10.4-1", "MQTT-3.10.4-2"],
            "UNSUBSCRIBE compares filters character by character: a/x does not remove a/+, a/+ does, and delivery stops",
            [Wildcards, Qos1],
            false,
            unsubscribe_exact
        ),
        case!(
            v5,
            "unsubscribe.several_filters",
            ["MQTT-3.10.4-2", "MQTT-3.10.4-6", "MQTT-3.11.3-2"],
            "one UNSUBSCRIBE with two of three filters gets one UNSUBACK; those two stop, the third goes on",
            [Qos1],
            false,
            unsubscribe_several
        ),
        case!(
            v311,
            "unsubscribe.several_filters",
            ["MQTT-3.10.4-2", "MQTT-3.10.4-6"],
            "one UNSUBSCRIBE with two of three filters gets one UNSUBACK; those two stop, the third goes on",
            [Qos1],
            false,
            unsubscribe_several
        ),
        case!(
            v5,
            "unsubscribe.reason_codes_in_order",
            ["MQTT-3.10.4-5", "MQTT-3.11.3-1", "MQTT-3.11.3-2"],
            "UNSUBSCRIBE [never subscribed, subscribed] gets UNSUBACK [0x11, 0x00]",
            [],
            false,
            unsubscribe_order
        ),
        case!(
            v5,
            "unsubscribe.completes_qos2",
            ["MQTT-3.10.4-3"],
            "a QoS 2 delivery started before an UNSUBSCRIBE is completed after it (PUBREL for the PUBREC)",
            [Qos2],
            false,
            unsubscribe_completes
        ),
        case!(
            v311,
            "unsubscribe.completes_qos2",
            ["MQTT-3.10.4-3"],
            "a QoS 2 delivery started before an UNSUBSCRIBE is completed after it (PUBREL for the PUBREC)",
            [Qos2],
            false,
            unsubscribe_completes
        ),
        case!(
            v5,
            "subscribe.no_wildcards_refused",
            [],
            "a broker without wildcard subscriptions refuses a/+ and a/# (SUBACK 0xA2, or DISCONNECT 0xA2)",
            [NoWildcards],
            false,
            no_wildcards
        ),
        case!(
            v311,
            "subscribe.no_wildcards_refused",
            ["MQTT-3.8.3-2"],
            "a broker without wildcard subscriptions refuses a/+ and a/# (SUBACK 0x80, or a close)",
            [NoWildcards],
            false,
            no_wildcards
        ),
        case!(
            v5,
            "subscribe.no_subscription_ids_refused",
            [],
            "a broker without Subscription Identifiers refuses a SUBSCRIBE carrying one (DISCONNECT or SUBACK 0xA1)",
            [NoSubscriptionIds],
            false,
            no_subscription_ids
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the subscribe, retain, topic and shared modules.

/// Subscription options with every field.
pub(super) fn opts(q: u8, no_local: bool, rap: bool, rh: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: qos(q),
        no_local,
        retain_as_published: rap,
        retain_handling: rh,
    }
}

/// Sends a SUBSCRIBE with these filters (and a Subscription Identifier, if any) and returns
/// the SUBACK's reason codes, which must be one per filter.
pub(super) async fn subscribe_all(
    conn: &mut Conn,
    id: u16,
    filters: &[(&str, SubscriptionOptions)],
    sub_id: Option<u32>,
) -> Result<Vec<ReasonCode>, Stop> {
    let mut s = Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: Vec::new(),
    };
    for (f, o) in filters {
        s.filters.push((filter(f)?, *o));
    }
    if let Some(i) = sub_id {
        s.properties.push_subscription_identifier(i).map_err(|e| {
            Failure::plain(
                "a valid Subscription Identifier in the test",
                format!("{e:?}"),
            )
        })?;
    }
    conn.send(s).await?;
    let codes = suback(conn, id).await?;
    let st = if conn.version() == crate::Version::V5 {
        "MQTT-3.8.4-6"
    } else {
        "MQTT-3.8.4-5"
    };
    ensure!(
        codes.len() == filters.len(),
        st,
        format!(
            "a SUBACK with {} reason code(s), one per filter",
            filters.len()
        ),
        "{} reason code(s): {}",
        codes.len(),
        codes_hex(&codes)
    );
    Ok(codes)
}

/// The next packet must be the SUBACK for `id`; returns its reason codes. A PUBLISH before
/// it (a retained message, say) is acknowledged and put in `early`.
pub(super) async fn suback_early(
    conn: &mut Conn,
    id: u16,
    early: &mut Vec<Publish>,
) -> Result<Vec<ReasonCode>, Stop> {
    loop {
        match conn.recv("MQTT-3.8.4-1", "a SUBACK").await? {
            Packet::SubAck(a) => {
                ensure!(
                    a.packet_id == pid(id),
                    "MQTT-3.8.4-2",
                    format!("a SUBACK with the SUBSCRIBE's Packet Identifier {id}"),
                    "SUBACK for {}",
                    a.packet_id.get()
                );
                return Ok(a.reason_codes);
            }
            Packet::Publish(m) => {
                ack(conn, &m).await?;
                early.push(m);
            }
            Packet::PubRel(r) => conn.send(PubComp::new(r.packet_id)).await?,
            other => {
                return Err(Failure::of("MQTT-3.8.4-1", "a SUBACK", brief(&other)).into());
            }
        }
    }
}

/// The next packet must be the SUBACK for `id` (no message before it); returns its codes.
pub(super) async fn suback(conn: &mut Conn, id: u16) -> Result<Vec<ReasonCode>, Stop> {
    let mut early = Vec::new();
    let codes = suback_early(conn, id, &mut early).await?;
    if !early.is_empty() {
        return Err(Failure::plain(
            "a SUBACK, and no message for a subscription to a fresh topic",
            list(&early),
        )
        .into());
    }
    Ok(codes)
}

/// Reason codes in hex.
pub(super) fn codes_hex(codes: &[ReasonCode]) -> String {
    codes
        .iter()
        .map(|c| format!("{:#04x}", c.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Subscribes to each filter at QoS `q` (in one SUBSCRIBE), all of which must be granted.
pub(super) async fn sub_ok(conn: &mut Conn, filters: &[&str], q: u8) -> Result<(), Stop> {
    let list: Vec<(&str, SubscriptionOptions)> = filters
        .iter()
        .map(|f| (*f, SubscriptionOptions::qos(qos(q))))
        .collect();
    sub_opts_ok(conn, &list, None).await
}

/// Subscribes with these options (and Subscription Identifier), all of which must be granted.
pub(super) async fn sub_opts_ok(
    conn: &mut Conn,
    filters: &[(&str, SubscriptionOptions)],
    sub_id: Option<u32>,
) -> Result<(), Stop> {
    let codes = subscribe_all(conn, 1, filters, sub_id).await?;
    if let Some(bad) = codes.iter().find(|c| c.is_error()) {
        return Err(Failure::plain(
            "the broker to grant the test's subscriptions",
            format!("SUBACK {} (refused {:#04x})", codes_hex(&codes), bad.0),
        )
        .into());
    }
    Ok(())
}

/// Sends an UNSUBSCRIBE and returns the UNSUBACK's reason codes (empty in 3.1.1).
pub(super) async fn unsubscribe(
    conn: &mut Conn,
    id: u16,
    filters: &[&str],
) -> Result<Vec<ReasonCode>, Stop> {
    let mut u = Unsubscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: Vec::new(),
    };
    for f in filters {
        u.filters.push(filter(f)?);
    }
    conn.send(u).await?;
    match conn.recv("MQTT-3.10.4-4", "an UNSUBACK").await? {
        Packet::UnsubAck(a) => {
            ensure!(
                a.packet_id == pid(id),
                if conn.version() == crate::Version::V5 {
                    "MQTT-3.10.4-5"
                } else {
                    "MQTT-3.10.4-4"
                },
                format!("an UNSUBACK with the UNSUBSCRIBE's Packet Identifier {id}"),
                "UNSUBACK for {}",
                a.packet_id.get()
            );
            Ok(a.reason_codes)
        }
        other => Err(Failure::of("MQTT-3.10.4-4", "an UNSUBACK", brief(&other)).into()),
    }
}

/// Publishes and goes through the acknowledgement flow (PUBACK, or PUBREC PUBREL PUBCOMP),
/// which must succeed; returns the PUBLISH packets that arrived meanwhile (acknowledged).
pub(super) async fn put(
    conn: &mut Conn,
    topic: &str,
    payload: &str,
    q: u8,
    retain: bool,
    id: u16,
) -> Result<Vec<Publish>, Stop> {
    let mut p = publish(topic, payload, q, id)?;
    p.retain = retain;
    put_publish(conn, p).await
}

/// Sends `p` and completes its acknowledgement flow; returns the PUBLISH packets that arrived
/// meanwhile (acknowledged).
pub(super) async fn put_publish(conn: &mut Conn, p: Publish) -> Result<Vec<Publish>, Stop> {
    let q = p.qos;
    let id = p.packet_id;
    conn.send(p).await?;
    let mut got = Vec::new();
    if q == QoS::AtMostOnce {
        return Ok(got);
    }
    let want = if q == QoS::AtLeastOnce {
        PacketType::PubAck
    } else {
        PacketType::PubRec
    };
    loop {
        let p = conn
            .recv("MQTT-4.3.2-4", &format!("a {want} for the test's PUBLISH"))
            .await?;
        match p {
            Packet::Publish(m) => {
                ack(conn, &m).await?;
                got.push(m);
            }
            Packet::PubRel(r) => conn.send(PubComp::new(r.packet_id)).await?,
            Packet::PubAck(a) if want == PacketType::PubAck && Some(a.packet_id) == id => {
                check_ack_code(a.reason_code)?;
                return Ok(got);
            }
            // The PUBACK of an earlier PUBLISH the test did not wait for.
            Packet::PubAck(_) => {}
            Packet::PubRec(a) if want == PacketType::PubRec && Some(a.packet_id) == id => {
                check_ack_code(a.reason_code)?;
                conn.send(PubRel::new(a.packet_id)).await?;
                loop {
                    match conn.recv("MQTT-4.3.3-9", "a PUBCOMP").await? {
                        Packet::Publish(m) => {
                            ack(conn, &m).await?;
                            got.push(m);
                        }
                        Packet::PubRel(r) => conn.send(PubComp::new(r.packet_id)).await?,
                        Packet::PubComp(c) if Some(c.packet_id) == id => return Ok(got),
                        other => {
                            return Err(Failure::plain("a PUBCOMP", brief(&other)).into());
                        }
                    }
                }
            }
            other => {
                return Err(Failure::plain(format!("a {want}"), brief(&other)).into());
            }
        }
    }
}

fn check_ack_code(c: ReasonCode) -> Result<(), Stop> {
    if c.is_error() {
        return Err(Failure::plain(
            "the broker to accept the test's PUBLISH",
            format!("acknowledged with {:#04x}", c.0),
        )
        .into());
    }
    Ok(())
}

/// Acknowledges a received PUBLISH (PUBACK, or PUBREC; the PUBREL is answered when it comes).
pub(super) async fn ack(conn: &mut Conn, m: &Publish) -> Result<(), Stop> {
    match (m.qos, m.packet_id) {
        (QoS::AtLeastOnce, Some(id)) => conn.send(PubAck::new(id)).await,
        (QoS::ExactlyOnce, Some(id)) => conn.send(PubRec::new(id)).await,
        _ => Ok(()),
    }
}

/// The next PUBLISH (acknowledged), which must come within the answer time.
pub(super) async fn next_pub(
    conn: &mut Conn,
    statement: &'static str,
    what: &str,
) -> Result<Publish, Stop> {
    loop {
        match conn.recv(statement, what).await? {
            Packet::Publish(m) => {
                ack(conn, &m).await?;
                return Ok(m);
            }
            Packet::PubRel(r) => conn.send(PubComp::new(r.packet_id)).await?,
            other => return Err(Failure::of(statement, what.to_owned(), brief(&other)).into()),
        }
    }
}

/// Every PUBLISH (acknowledged) until nothing comes for `quiet`.
pub(super) async fn drain(conn: &mut Conn, quiet: Duration) -> Result<Vec<Publish>, Stop> {
    let mut got = Vec::new();
    loop {
        match conn.recv_within(quiet).await? {
            None => return Ok(got),
            Some(Received::Packet(Packet::Publish(m))) => {
                ack(conn, &m).await?;
                got.push(m);
            }
            Some(Received::Packet(Packet::PubRel(r))) => {
                conn.send(PubComp::new(r.packet_id)).await?;
            }
            Some(Received::Packet(p)) => {
                return Err(Failure::plain("only PUBLISH packets", brief(&p)).into());
            }
            Some(Received::Closed) => {
                return Err(Failure::plain(
                    "the connection to stay open",
                    "the broker closed the connection",
                )
                .into());
            }
        }
    }
}

/// No PUBLISH may come for the quiet time.
pub(super) async fn no_pub(
    cx: &Ctx,
    conn: &mut Conn,
    statement: &'static str,
    what: &str,
) -> TestResult {
    let got = drain(conn, cx.quiet_for()).await?;
    ensure!(got.is_empty(), statement, what.to_owned(), "{}", list(&got));
    Ok(())
}

/// The received messages, briefly.
pub(super) fn list(got: &[Publish]) -> String {
    if got.is_empty() {
        return "no PUBLISH".to_owned();
    }
    got.iter()
        .map(|m| brief(&Packet::Publish(m.clone())))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The payload as text.
pub(super) fn text(m: &Publish) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

/// The broker's QoS for a test that wants `q`.
pub(super) fn cap_qos(cx: &Ctx, q: u8) -> u8 {
    q.min(cx.caps().maximum_qos)
}

/// A failure of `statement`, or one naming no statement.
pub(super) fn fail(statement: Option<&'static str>, expected: String, observed: String) -> Stop {
    Stop::Fail(Failure {
        statement,
        expected,
        observed,
    })
}

/// The broker must refuse the SUBSCRIBE `id` just sent (one filter): a SUBACK with a code in
/// `codes` (empty: any failure code), or a close (after at most a DISCONNECT with a failure
/// code). Returns how it refused: `SUBACK 0x..`, `DISCONNECT 0x..` or `a close`.
pub(super) async fn refused(
    conn: &mut Conn,
    statement: Option<&'static str>,
    id: u16,
    codes: &[u8],
    what: &str,
) -> Result<String, Stop> {
    let code_ok = |c: u8| {
        if codes.is_empty() {
            c >= 0x80
        } else {
            codes.contains(&c)
        }
    };
    let wanted = if codes.is_empty() {
        "a failure code".to_owned()
    } else {
        codes
            .iter()
            .map(|c| format!("{c:#04x}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let expected = format!("{what} refused: SUBACK {wanted}, or the connection closed");
    match conn.recv_within(conn.answer_within()).await? {
        Some(Received::Packet(Packet::SubAck(a))) => {
            ensure!(
                a.packet_id == pid(id),
                "MQTT-3.8.4-2",
                format!("a SUBACK for Packet Identifier {id}"),
                "SUBACK for {}",
                a.packet_id.get()
            );
            let c = a.reason_codes.first().map_or(0, |c| c.0);
            if !(a.reason_codes.len() == 1 && code_ok(c)) {
                return Err(fail(
                    statement,
                    expected,
                    format!("SUBACK {}", codes_hex(&a.reason_codes)),
                ));
            }
            Ok(format!("SUBACK {c:#04x}"))
        }
        Some(Received::Packet(Packet::Disconnect(d))) => {
            if !d.reason_code.is_error() {
                return Err(fail(
                    statement,
                    format!("{what} refused: a DISCONNECT with a failure code, then a close"),
                    format!("DISCONNECT {:#04x}", d.reason_code.0),
                ));
            }
            conn.expect_close(statement.unwrap_or("MQTT-4.13.1-1"), None)
                .await?;
            Ok(format!("DISCONNECT {:#04x}", d.reason_code.0))
        }
        Some(Received::Closed) => Ok("a close".to_owned()),
        Some(Received::Packet(p)) => Err(fail(statement, expected, brief(&p))),
        None => Err(fail(
            statement,
            expected,
            format!("nothing within {:?}", conn.answer_within()),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

async fn packet_ids(cx: Ctx) -> TestResult {
    let mut c = cx.connect("a").await?;
    let (t1, t2) = (cx.topic("p1"), cx.topic("p2"));
    let v5 = cx.v5();
    let pkt_st = if v5 { "MQTT-2.2.1-6" } else { "MQTT-2.3.1-7" };
    let un_st = "MQTT-3.10.4-5";
    let sub = |id: u16, f: &str| -> Result<Subscribe, Stop> {
        Ok(Subscribe {
            packet_id: pid(id),
            properties: Default::default(),
            filters: vec![(filter(f)?, SubscriptionOptions::default())],
        })
    };
    let unsub = |id: u16, f: &str| -> Result<Unsubscribe, Stop> {
        Ok(Unsubscribe {
            packet_id: pid(id),
            properties: Default::default(),
            filters: vec![filter(f)?],
        })
    };
    // Sent back to back, without waiting for the acks.
    c.send(sub(0x4242, &t1)?).await?;
    c.send(sub(0x4243, &t2)?).await?;
    c.send(unsub(0x0777, &t1)?).await?;
    c.send(unsub(0x0778, &cx.topic("never"))?).await?;
    let mut subacks = Vec::new();
    let mut unsubacks = Vec::new();
    for _ in 0..4 {
        match c
            .recv("MQTT-3.8.4-1", "a SUBACK or UNSUBACK for each request")
            .await?
        {
            Packet::SubAck(a) => subacks.push(a.packet_id.get()),
            Packet::UnsubAck(a) => {
                if a.packet_id.get() == 0x0778 && v5 {
                    ensure!(
                        a.reason_codes.len() == 1
                            && a.reason_codes.first().is_some_and(|r| !r.is_error()),
                        "MQTT-3.10.4-5",
                        "an UNSUBACK for a filter never subscribed (reason 0x11), not a refusal",
                        "UNSUBACK {}",
                        codes_hex(&a.reason_codes)
                    );
                }
                unsubacks.push(a.packet_id.get());
            }
            other => {
                return Err(Failure::of(
                    "MQTT-3.8.4-1",
                    "a SUBACK or UNSUBACK for each request",
                    brief(&other),
                )
                .into());
            }
        }
    }
    subacks.sort_unstable();
    unsubacks.sort_unstable();
    ensure!(
        subacks.len() == 2,
        "MQTT-3.8.4-1",
        "a SUBACK for each of the two SUBSCRIBE packets",
        "{} SUBACK(s)",
        subacks.len()
    );
    ensure!(
        subacks == [0x4242, 0x4243],
        pkt_st,
        "SUBACK packets with identifiers 0x4242 and 0x4243",
        "SUBACK identifiers {subacks:04x?}"
    );
    ensure!(
        unsubacks.contains(&0x0778),
        un_st,
        "an UNSUBACK (identifier 0x0778) for the UNSUBSCRIBE of a filter never subscribed",
        "UNSUBACK identifiers {unsubacks:04x?}"
    );
    ensure!(
        unsubacks.contains(&0x0777),
        "MQTT-3.10.4-4",
        "an UNSUBACK (identifier 0x0777) for each UNSUBSCRIBE",
        "UNSUBACK identifiers {unsubacks:04x?}"
    );
    ensure!(
        unsubacks == [0x0777, 0x0778],
        pkt_st,
        "UNSUBACK packets with identifiers 0x0777 and 0x0778",
        "UNSUBACK identifiers {unsubacks:04x?}"
    );
    c.disconnect().await;
    Ok(())
}

async fn reason_codes_in_order(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let (count_st, granted_st) = if v5 {
        ("MQTT-3.8.4-6", "MQTT-3.8.4-7")
    } else {
        ("MQTT-3.8.4-5", "MQTT-3.8.4-5")
    };
    let mut s = cx.connect("s").await?;
    let mut p = cx.connect("p").await?;
    let (f0, f2, f1) = (cx.topic("q0"), cx.topic("q2"), cx.topic("q1"));
    let requested = [0u8, 2, 1];
    s.send(Subscribe {
        packet_id: pid(7),
        properties: Default::default(),
        filters: vec![
            (filter(&f0)?, SubscriptionOptions::qos(QoS::AtMostOnce)),
            (filter(&f2)?, SubscriptionOptions::qos(QoS::ExactlyOnce)),
            (filter(&f1)?, SubscriptionOptions::qos(QoS::AtLeastOnce)),
        ],
    })
    .await?;
    let codes = suback(&mut s, 7).await?;
    ensure!(
        codes.len() == 3,
        count_st,
        "one SUBACK with 3 reason codes for a SUBSCRIBE with 3 filters",
        "{} reason code(s): {}",
        codes.len(),
        codes_hex(&codes)
    );
    let allowed: &[u8] = if v5 {
        &[
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ]
    } else {
        &[0x00, 0x01, 0x02, 0x80]
    };
    for c in &codes {
        ensure!(
            allowed.contains(&c.0),
            "MQTT-3.9.3-2",
            "SUBACK codes among the Subscribe Reason Codes",
            "SUBACK {}",
            codes_hex(&codes)
        );
    }
    for (c, r) in codes.iter().zip(requested) {
        ensure!(
            c.is_error() || c.0 <= r,
            granted_st,
            "each code a granted QoS at most the requested one (in order 0, 2, 1), or a failure",
            "SUBACK {} for requested QoS 0, 2, 1",
            codes_hex(&codes)
        );
    }
    // A refusal here would leave nothing to check the order against.
    if codes.iter().any(|c| c.is_error()) {
        return Err(Failure::plain(
            "the broker to grant three plain subscriptions",
            format!("SUBACK {}", codes_hex(&codes)),
        )
        .into());
    }
    // Deliveries show which code belongs to which filter: each at min(published, granted).
    let pq = cap_qos(&cx, 2);
    for (i, f) in [&f0, &f2, &f1].into_iter().enumerate() {
        put(
            &mut p,
            f,
            &format!("m{i}"),
            pq,
            false,
            10 + u16::try_from(i).unwrap_or(0),
        )
        .await?;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            next_pub(
                &mut s,
                "MQTT-3.8.4-5",
                "a message on each of the three filters",
            )
            .await?,
        );
    }
    got.extend(drain(&mut s, cx.quiet_for()).await?);
    for (i, f) in [&f0, &f2, &f1].into_iter().enumerate() {
        let granted = codes.get(i).map_or(0, |c| c.0);
        let copies: Vec<&Publish> = got.iter().filter(|m| &*m.topic == f.as_str()).collect();
        ensure!(
            copies.len() == 1,
            if v5 { "MQTT-3.8.4-5" } else { "MQTT-3.8.4-4" },
            format!("one copy of the message to {f}"),
            "{}",
            list(&got)
        );
        let q = copies.first().map_or(0, |m| m.qos as u8);
        ensure!(
            q == pq.min(granted),
            "MQTT-3.9.3-1",
            format!(
                "the message to filter {} (code {granted:#04x}) delivered at QoS {}",
                i + 1,
                pq.min(granted)
            ),
            "QoS {q}; SUBACK {}",
            codes_hex(&codes)
        );
    }
    // Ten filters, ten codes.
    let ten: Vec<String> = (0..10).map(|i| cx.topic(&format!("ten{i}"))).collect();
    let list10: Vec<(&str, SubscriptionOptions)> = ten
        .iter()
        .map(|f| (f.as_str(), SubscriptionOptions::default()))
        .collect();
    subscribe_all(&mut s, 8, &list10, None).await?;
    s.disconnect().await;
    p.disconnect().await;
    // The order of the codes shows only if the deliveries' QoS differ between filters.
    let effective: Vec<u8> = codes.iter().map(|c| pq.min(c.0)).collect();
    if effective.windows(2).all(|w| w.first() == w.get(1)) {
        return Err(Stop::NotApplicable(format!(
            "every delivery is at QoS {} (published at {pq}, SUBACK {}): the order of the codes \
             is not observable",
            effective.first().copied().unwrap_or(0),
            codes_hex(&codes)
        )));
    }
    Ok(())
}

async fn replace(cx: Ctx) -> TestResult {
    let mut s = cx.connect("s").await?;
    let mut p = cx.connect("p").await?;
    let t = cx.topic("t");
    sub_ok(&mut s, &[&t], 0).await?;
    let codes = subscribe_all(
        &mut s,
        2,
        &[(&t, SubscriptionOptions::qos(QoS::AtLeastOnce))],
        None,
    )
    .await?;
    let granted = codes.first().map_or(0x80, |c| c.0);
    ensure!(
        granted == 1,
        "MQTT-3.8.4-3",
        "the new subscription at QoS 1 granted (SUBACK 0x01)",
        "SUBACK {}",
        codes_hex(&codes)
    );
    put(&mut p, &t, "once", 1, false, 3).await?;
    let got = drain(&mut s, cx.quiet_for().max(Duration::from_secs(1))).await?;
    ensure!(
        got.len() == 1,
        "MQTT-3.8.4-3",
        "exactly one copy (the subscription replaced, not added)",
        "{}",
        list(&got)
    );
    let q = got.first().map_or(0, |m| m.qos as u8);
    ensure!(
        q == 1,
        "MQTT-3.8.4-3",
        "the copy at the new subscription's QoS 1",
        "{}",
        list(&got)
    );
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn overlap_max_qos(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.3.4-2"
    } else {
        "MQTT-3.3.5-1"
    };
    let mut s = cx.connect("s").await?;
    let mut p = cx.connect("p").await?;
    let (all, b) = (cx.topic("o/#"), cx.topic("o/b"));
    sub_ok(&mut s, &[&all], 1).await?;
    let codes = subscribe_all(
        &mut s,
        2,
        &[(&b, SubscriptionOptions::qos(QoS::ExactlyOnce))],
        None,
    )
    .await?;
    ensure!(
        codes.first().is_some_and(|c| c.0 == 2),
        st,
        "the QoS 2 subscription granted at QoS 2",
        "SUBACK {}",
        codes_hex(&codes)
    );
    put(&mut p, &b, "hi", 2, false, 4).await?;
    let first = next_pub(&mut s, st, "the message to o/b").await?;
    let mut got = vec![first];
    got.extend(drain(&mut s, cx.quiet_for()).await?);
    ensure!(
        got.len() <= 2 && got.iter().all(|m| &*m.topic == b.as_str()),
        st,
        "one copy, or one per matching subscription (two)",
        "{}",
        list(&got)
    );
    ensure!(
        got.iter().any(|m| m.qos == QoS::ExactlyOnce),
        st,
        "the message delivered at QoS 2, the maximum of the matching subscriptions",
        "{}",
        list(&got)
    );
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn subscription_ids_single_copy(cx: Ctx) -> TestResult {
    subscription_ids(cx, true).await
}

async fn subscription_ids_per_copy(cx: Ctx) -> TestResult {
    subscription_ids(cx, false).await
}

/// A message matching overlapping subscriptions: the broker sends a single copy (checked when
/// `single`) or one per subscription (checked otherwise); the other way is not applicable.
async fn subscription_ids(cx: Ctx, single: bool) -> TestResult {
    let mut s = cx.connect("s").await?;
    let mut p = cx.connect("p").await?;
    let (all, plus, b) = (cx.topic("s/#"), cx.topic("s/+"), cx.topic("s/b"));
    let o = SubscriptionOptions::default();
    sub_opts_ok(&mut s, &[(&all, o)], Some(1)).await?;
    sub_opts_ok(&mut s, &[(&b, o)], Some(2)).await?;
    // A single subscription first: its identifier is in the message.
    put(&mut p, &cx.topic("s/only"), "one", 1, false, 5).await?;
    let m = next_pub(&mut s, "MQTT-3.3.4-3", "the message to s/only").await?;
    let ids: Vec<u32> = m.properties.subscription_identifiers().collect();
    ensure!(
        ids == [1],
        "MQTT-3.3.4-3",
        "the message matching s/# (identifier 1) carries Subscription Identifier 1",
        "Subscription Identifiers {ids:?}"
    );
    no_pub(&cx, &mut s, "MQTT-3.3.4-3", "no other copy").await?;
    // A third overlapping subscription, without an identifier.
    sub_opts_ok(&mut s, &[(&plus, o)], None).await?;
    put(&mut p, &b, "many", 1, false, 6).await?;
    let first = next_pub(&mut s, "MQTT-3.3.4-3", "the message to s/b").await?;
    let mut got = vec![first];
    got.extend(drain(&mut s, cx.quiet_for()).await?);
    let per_copy: Vec<Vec<u32>> = got
        .iter()
        .map(|m| m.properties.subscription_identifiers().collect())
        .collect();
    let union: BTreeSet<u32> = per_copy.iter().flatten().copied().collect();
    ensure!(
        union == BTreeSet::from([1, 2]),
        "MQTT-3.3.4-3",
        "Subscription Identifiers 1 and 2 in the message(s) for s/b",
        "identifiers per copy {per_copy:?}"
    );
    s.disconnect().await;
    p.disconnect().await;
    match (got.len() == 1, single) {
        (true, true) => {
            let mut ids = per_copy.first().cloned().unwrap_or_default();
            ids.sort_unstable();
            ensure!(
                ids == [1, 2],
                "MQTT-3.3.4-4",
                "a single copy carrying identifiers 1 and 2",
                "identifiers {ids:?}"
            );
            Ok(())
        }
        (false, false) => {
            ensure!(
                got.len() <= 3 && per_copy.iter().all(|i| i.len() <= 1),
                "MQTT-3.3.4-5",
                "copies, one per matching subscription, each with its own subscription's identifier (1, 2 or none)",
                "identifiers per copy {per_copy:?}"
            );
            Ok(())
        }
        (true, false) => Err(Stop::NotApplicable(
            "the broker sends a single copy of a message matching overlapping subscriptions: \
             the rule is for one copy per subscription"
                .into(),
        )),
        (false, true) => Err(Stop::NotApplicable(format!(
            "the broker sends {} copies of a message matching overlapping subscriptions: the \
             rule is for a single copy",
            got.len()
        ))),
    }
}

async fn no_local(cx: Ctx) -> TestResult {
    let mut a = cx.connect("a").await?;
    let mut b = cx.connect("b").await?;
    let t = cx.topic("nl");
    sub_opts_ok(
        &mut a,
        &[(&t, opts(1, true, false, RetainHandling::SendAtSubscribe))],
        None,
    )
    .await?;
    let mut got = put(&mut a, &t, "own", 1, false, 2).await?;
    got.extend(drain(&mut a, cx.quiet_for()).await?);
    ensure!(
        got.is_empty(),
        "MQTT-3.8.3-3",
        "with No Local, the client's own message not sent back to it",
        "{}",
        list(&got)
    );
    put(&mut b, &t, "other", 1, false, 3).await?;
    let m = next_pub(&mut a, "MQTT-3.8.3-3", "another client's message").await?;
    ensure!(
        text(&m) == "other",
        "MQTT-3.8.3-3",
        "only another client's message (payload \"other\")",
        "payload {:?}",
        text(&m)
    );
    a.disconnect().await;
    b.disconnect().await;
    Ok(())
}

async fn unsubscribe_exact(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let mut s = cx.connect("s").await?;
    let mut p = cx.connect("p").await?;
    let (plus, x) = (cx.topic("u/+"), cx.topic("u/x"));
    sub_ok(&mut s, &[&plus], 0).await?;
    let codes = unsubscribe(&mut s, 2, &[&x]).await?;
    if v5 {
        ensure!(
            codes.len() == 1 && codes.first().is_some_and(|c| c.0 == 0x11),
            "MQTT-3.10.4-1",
            "UNSUBACK 0x11 (No subscription existed): u/x is not the filter u/+",
            "UNSUBACK {}",
            codes_hex(&codes)
        );
    }
    put(&mut p, &x, "still", 1, false, 3).await?;
    let m = next_pub(
        &mut s,
        "MQTT-3.10.4-1",
        "the message to u/x, still subscribed by u/+",
    )
    .await?;
    ensure!(
        text(&m) == "still",
        "MQTT-3.10.4-1",
        "the message \"still\"",
        "{}",
        list(&[m])
    );
    let codes = unsubscribe(&mut s, 4, &[&plus]).await?;
    if v5 {
        ensure!(
            codes.len() == 1 && codes.first().is_some_and(|c| c.0 == 0x00),
            "MQTT-3.11.3-2",
            "UNSUBACK 0x00 for the subscribed filter u/+",
            "UNSUBACK {}",
            codes_hex(&codes)
        );
    }
    put(&mut p, &x, "gone", 1, false, 5).await?;
    no_pub(
        &cx,
        &mut s,
        "MQTT-3.10.4-2",
        "no message after the UNSUBACK of u/+",
    )
    .await?;
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn unsubscribe_several(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let mut s = cx.connect("s").await?;
    let mut p = cx.connect("p").await?;
    let (a, b, c) = (cx.topic("a"), cx.topic("b"), cx.topic("c"));
    sub_ok(&mut s, &[&a, &b, &c], 0).await?;
    let codes = unsubscribe(&mut s, 2, &[&a, &b]).await?;
    if v5 {
        ensure!(
            codes.len() == 2 && codes.iter().all(|c| c.0 == 0),
            "MQTT-3.11.3-2",
            "UNSUBACK with 0x00, 0x00",
            "UNSUBACK {}",
            codes_hex(&codes)
        );
    }
    for (i, t) in [&a, &b, &c].into_iter().enumerate() {
        put(&mut p, t, "x", 1, false, 3 + u16::try_from(i).unwrap_or(0)).await?;
    }
    let mut got = Vec::new();
    loop {
        match s.recv_within(cx.quiet_for()).await? {
            None => break,
            Some(Received::Packet(Packet::Publish(m))) => got.push(m),
            Some(Received::Packet(other)) => {
                return Err(Failure::of(
                    "MQTT-3.10.4-6",
                    "just one UNSUBACK for the UNSUBSCRIBE with two filters",
                    brief(&other),
                )
                .into());
            }
            Some(Received::Closed) => {
                return Err(Failure::plain("an open connection", "closed").into());
            }
        }
    }
    let topics: Vec<&str> = got.iter().map(|m| &*m.topic).collect();
    ensure!(
        topics == [c.as_str()],
        "MQTT-3.10.4-2",
        "only the message to c (a and b unsubscribed in one UNSUBSCRIBE)",
        "{}",
        list(&got)
    );
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn unsubscribe_order(cx: Ctx) -> TestResult {
    let mut s = cx.connect("s").await?;
    let (a, b) = (cx.topic("a"), cx.topic("b"));
    sub_ok(&mut s, &[&a], 0).await?;
    let codes = unsubscribe(&mut s, 0x0099, &[&b, &a]).await?;
    let allowed = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    ensure!(
        codes.iter().all(|c| allowed.contains(&c.0)),
        "MQTT-3.11.3-2",
        "UNSUBACK codes among the Unsubscribe Reason Codes",
        "UNSUBACK {}",
        codes_hex(&codes)
    );
    ensure!(
        codes.iter().map(|c| c.0).collect::<Vec<_>>() == [0x11, 0x00],
        "MQTT-3.11.3-1",
        "UNSUBACK 0x11 (b never subscribed), 0x00 (a deleted), in the filters' order",
        "UNSUBACK {}",
        codes_hex(&codes)
    );
    s.disconnect().await;
    Ok(())
}

async fn unsubscribe_completes(cx: Ctx) -> TestResult {
    let mut s = cx.connect("s").await?;
    let mut p = cx.connect("p").await?;
    let t = cx.topic("t");
    sub_ok(&mut s, &[&t], 2).await?;
    put(&mut p, &t, "two", 2, false, 2).await?;
    let m = s.publish("MQTT-3.10.4-3").await?;
    ensure!(
        m.qos == QoS::ExactlyOnce,
        "MQTT-3.10.4-3",
        "the message at QoS 2",
        "{}",
        list(std::slice::from_ref(&m))
    );
    let Some(id) = m.packet_id else {
        return Err(Failure::plain("a Packet Identifier", "none").into());
    };
    let codes = unsubscribe(&mut s, 9, &[&t]).await?;
    if cx.v5() {
        ensure!(
            codes.first().is_some_and(|c| c.0 == 0),
            "MQTT-3.10.4-3",
            "UNSUBACK 0x00",
            "UNSUBACK {}",
            codes_hex(&codes)
        );
    }
    s.send(PubRec::new(id)).await?;
    match s
        .recv("MQTT-3.10.4-3", "a PUBREL completing the QoS 2 delivery")
        .await?
    {
        Packet::PubRel(r) => {
            ensure!(
                r.packet_id == id,
                "MQTT-3.10.4-3",
                format!("a PUBREL for {}", id.get()),
                "PUBREL for {}",
                r.packet_id.get()
            );
            s.send(PubComp::new(id)).await?;
        }
        other => {
            return Err(Failure::of(
                "MQTT-3.10.4-3",
                "a PUBREL completing the QoS 2 delivery",
                brief(&other),
            )
            .into());
        }
    }
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn no_wildcards(cx: Ctx) -> TestResult {
    // 5.0 (3.2.2.3.14, 3.9.3): SUBACK 0xA2, or DISCONNECT 0xA2 for the Protocol Error.
    // 3.1.1: SUBACK 0x80, or a close.
    let (st, codes): (Option<&'static str>, &[u8]) = if cx.v5() {
        (None, &[0xA2])
    } else {
        (Some("MQTT-3.8.3-2"), &[0x80])
    };
    for f in [cx.topic("w/+"), cx.topic("w/#")] {
        let mut c = cx.connect("s").await?;
        c.send(subscribe_one(&f, 0)?).await?;
        let how = refused(&mut c, st, 1, codes, &format!("the wildcard filter {f}")).await?;
        if cx.v5() && how.starts_with("DISCONNECT") && how != "DISCONNECT 0xa2" {
            return Err(fail(
                st,
                "DISCONNECT 0xA2 (Wildcard Subscriptions not supported)".to_owned(),
                how,
            ));
        }
        if !c.is_closed() {
            c.disconnect().await;
        }
    }
    Ok(())
}

async fn no_subscription_ids(cx: Ctx) -> TestResult {
    // 3.2.2.3.15: a Protocol Error, DISCONNECT 0xA1 (or SUBACK 0xA1).
    let mut c = cx.connect("s").await?;
    let mut s = subscribe_one(&cx.topic("t"), 0)?;
    s.properties
        .push_subscription_identifier(5)
        .map_err(|e| Failure::plain("a valid Subscription Identifier", format!("{e:?}")))?;
    c.send(s).await?;
    let how = refused(
        &mut c,
        None,
        1,
        &[0xA1],
        "a SUBSCRIBE with a Subscription Identifier",
    )
    .await?;
    if how.starts_with("DISCONNECT") && how != "DISCONNECT 0xa1" {
        return Err(fail(
            None,
            "DISCONNECT 0xA1 (Subscription Identifiers not supported)".to_owned(),
            how,
        ));
    }
    if !c.is_closed() {
        c.disconnect().await;
    }
    Ok(())
}

/// A SUBSCRIBE (identifier 1) to one filter at QoS `q`.
pub(super) fn subscribe_one(f: &str, q: u8) -> Result<Subscribe, Stop> {
    crate::ctx::subscribe(1, f, SubscriptionOptions::qos(qos(q)))
}
