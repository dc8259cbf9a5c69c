//! CONNECT and CONNACK: the first packet, Clean Start and Session Present, client
//! identifiers, a second CONNECT, reserved flags, protocol name and level, refused CONNECTs,
//! the byte stream, and the DISCONNECT packets a broker sends.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Disconnect, Packet, PacketType, QoS, ReasonCode, SubscriptionOptions, TopicName, Will,
};
use tokio::time::Instant;

use super::TestCase;
use super::raw::{connect_frame, connect_with, frame, lstr, put_str};
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, publish, subscribe, topic, utf8};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "connect.connack_success",
            ["MQTT-3.1.4-5", "MQTT-3.2.0-1", "MQTT-3.2.2-2"],
            "a valid CONNECT with Clean Start 1 gets CONNACK 0x00 with Session Present 0",
            [],
            false,
            connack_success
        ),
        case!(
            v311,
            "connect.connack_success",
            ["MQTT-3.1.4-4", "MQTT-3.2.0-1", "MQTT-3.2.2-1"],
            "a valid CONNECT with Clean Session 1 gets CONNACK 0 with Session Present 0",
            [],
            false,
            connack_success
        ),
        case!(
            v5,
            "connect.second_connect",
            ["MQTT-3.1.0-2"],
            "a second CONNECT on a connection is a Protocol Error: the connection closes",
            [],
            false,
            second_connect
        ),
        case!(
            v311,
            "connect.second_connect",
            ["MQTT-3.1.0-2"],
            "a second CONNECT on a connection is a protocol violation: the connection closes",
            [],
            false,
            second_connect
        ),
        case!(
            v5,
            "connect.reserved_flag",
            ["MQTT-3.1.2-3", "MQTT-3.14.0-1"],
            "a CONNECT with the reserved Connect Flag set is refused: at most an error CONNACK (no DISCONNECT), then the close",
            [],
            false,
            reserved_flag
        ),
        case!(
            v311,
            "connect.reserved_flag",
            ["MQTT-3.1.2-3", "MQTT-3.2.2-6"],
            "a CONNECT with the reserved Connect Flag set is refused: the close without a CONNACK",
            [],
            false,
            reserved_flag
        ),
        case!(
            v5,
            "connect.short_client_id",
            ["MQTT-3.1.3-5"],
            "client identifiers of 1 to 23 letters and digits are accepted",
            [],
            true,
            short_client_id
        ),
        case!(
            v311,
            "connect.short_client_id",
            ["MQTT-3.1.3-5"],
            "client identifiers of 1 to 23 letters and digits are accepted",
            [],
            true,
            short_client_id
        ),
        case!(
            v5,
            "connect.publish_before_connect",
            ["MQTT-3.1.0-1"],
            "a PUBLISH as the first packet closes the connection",
            [],
            false,
            publish_first
        ),
        case!(
            v311,
            "connect.publish_before_connect",
            ["MQTT-3.1.0-1"],
            "a PUBLISH as the first packet closes the connection",
            [],
            false,
            publish_first
        ),
        case!(
            v5,
            "connect.protocol_name",
            ["MQTT-3.1.2-1"],
            "a CONNECT with protocol name MQTX is refused: at most CONNACK 0x84, then the close",
            [],
            false,
            protocol_name
        ),
        case!(
            v311,
            "connect.protocol_name",
            ["MQTT-3.1.2-1"],
            "a CONNECT with protocol name MQTX gets no MQTT service: the close, or silence",
            [],
            false,
            protocol_name
        ),
        case!(
            v5,
            "connect.protocol_level",
            ["MQTT-3.1.2-2"],
            "a CONNECT with protocol level 6 is refused: at most CONNACK 0x84, then the close",
            [],
            false,
            protocol_level
        ),
        case!(
            v311,
            "connect.protocol_level",
            ["MQTT-3.1.2-2", "MQTT-3.2.2-5"],
            "a CONNECT with protocol level 7 gets CONNACK 0x01, then the close",
            [],
            false,
            protocol_level
        ),
        case!(
            v5,
            "connect.refused_connack",
            [
                "MQTT-3.2.2-1",
                "MQTT-3.2.2-6",
                "MQTT-3.2.2-7",
                "MQTT-3.2.2-8",
                "MQTT-4.13.2-1"
            ],
            "a refused CONNECT for an existing session: an error CONNACK with Session Present 0, then the close",
            [],
            false,
            refused_connack
        ),
        case!(
            v311,
            "connect.refused_connack",
            ["MQTT-3.2.2-4", "MQTT-3.2.2-5"],
            "a refused CONNECT for an existing session: CONNACK 0x01 with Session Present 0, then the close",
            [],
            false,
            refused_connack
        ),
        case!(
            v5,
            "connect.empty_client_id",
            ["MQTT-3.1.3-6", "MQTT-3.1.3-7", "MQTT-3.2.2-16"],
            "two CONNECTs with an empty client identifier get distinct Assigned Client Identifiers (or 0x85), usable to resume",
            [],
            false,
            empty_client_id
        ),
        case!(
            v311,
            "connect.empty_client_id",
            ["MQTT-3.1.3-6"],
            "two CONNECTs with an empty client identifier are both accepted and both stay connected (or 0x02)",
            [],
            false,
            empty_client_id
        ),
        case!(
            v311,
            "connect.empty_client_id_persistent",
            [
                "MQTT-3.1.3-8",
                "MQTT-3.1.3-9",
                "MQTT-3.2.2-4",
                "MQTT-3.2.2-5"
            ],
            "an empty client identifier with Clean Session 0 gets CONNACK 0x02 with Session Present 0, then the close",
            [],
            false,
            empty_client_id_persistent
        ),
        case!(
            v5,
            "connect.first_packet_not_connect",
            ["MQTT-3.1.0-1", "MQTT-3.14.0-1"],
            "a PINGREQ or SUBSCRIBE as the first packet closes the connection with no answer and no DISCONNECT",
            [],
            false,
            first_packet_not_connect
        ),
        case!(
            v311,
            "connect.first_packet_not_connect",
            ["MQTT-3.1.0-1"],
            "a PINGREQ or SUBSCRIBE as the first packet closes the connection with no answer",
            [],
            false,
            first_packet_not_connect
        ),
        case!(
            v5,
            "connect.one_connack",
            ["MQTT-3.2.0-2"],
            "a second CONNECT gets no second CONNACK",
            [],
            false,
            one_connack
        ),
        case!(
            v5,
            "connect.refused_then_publish",
            ["MQTT-3.1.4-6"],
            "a PUBLISH sent right after a refused CONNECT (unknown Authentication Method) is not processed",
            [],
            false,
            refused_then_publish
        ),
        case!(
            v311,
            "connect.refused_then_publish",
            ["MQTT-3.1.4-5"],
            "a PUBLISH sent right after a refused CONNECT (protocol level 7) is not processed",
            [],
            false,
            refused_then_publish
        ),
        case!(
            v5,
            "connect.connack_first",
            ["MQTT-3.2.0-1"],
            "resuming a session with a queued message: the CONNACK 0x00 comes before the PUBLISH",
            [Qos1],
            false,
            connack_first
        ),
        case!(
            v311,
            "connect.connack_first",
            ["MQTT-3.2.0-1"],
            "resuming a session with a queued message: the CONNACK comes before the PUBLISH",
            [Qos1],
            false,
            connack_first
        ),
        case!(
            v5,
            "connect.byte_stream",
            ["MQTT-4.2.0-1"],
            "a CONNECT written one byte at a time, and three packets in one write, are all processed",
            [],
            false,
            byte_stream
        ),
        case!(
            v311,
            "connect.byte_stream",
            ["MQTT-7.1.1-1"],
            "a CONNECT written one byte at a time, and three packets in one write, are all processed",
            [],
            false,
            byte_stream
        ),
        case!(
            v5,
            "connect.payload_order",
            ["MQTT-3.1.3-1"],
            "a CONNECT with client id, Will, User Name and Password in order is read as such: the Will is published",
            [],
            false,
            payload_order
        ),
        case!(
            v311,
            "connect.payload_order",
            ["MQTT-3.1.3-1"],
            "a CONNECT with client id, Will, User Name and Password in order is read as such: the Will is published",
            [],
            false,
            payload_order
        ),
        case!(
            v5,
            "connect.unusual_client_id",
            ["MQTT-3.1.3-8"],
            "client identifiers with '/', '+', '#' or 200 characters: if refused, at most CONNACK 0x85 and the close",
            [],
            false,
            unusual_client_id
        ),
        case!(
            v311,
            "connect.unusual_client_id",
            ["MQTT-3.1.3-9"],
            "client identifiers with '/', '+', '#' or 200 characters: accepted, or CONNACK 0x02 and the close",
            [],
            false,
            unusual_client_id
        ),
        case!(
            v5,
            "connect.disconnect_will",
            ["MQTT-3.14.4-3"],
            "DISCONNECT 0x00 discards the Will; DISCONNECT 0x04 (Disconnect with Will Message) publishes it",
            [],
            false,
            disconnect_will
        ),
        case!(
            v311,
            "connect.disconnect_will",
            ["MQTT-3.14.4-3"],
            "DISCONNECT discards the Will: it is never published",
            [],
            false,
            disconnect_will
        ),
        case!(
            v5,
            "connect.disconnect_reserved_flags",
            ["MQTT-3.14.1-1"],
            "a DISCONNECT with fixed header 0xE1 is malformed: the connection closes and the Will is published",
            [],
            false,
            disconnect_reserved_flags
        ),
        case!(
            v311,
            "connect.disconnect_reserved_flags",
            ["MQTT-3.14.1-1"],
            "a DISCONNECT with fixed header 0xE1 is invalid: the connection closes and the Will is published",
            [],
            false,
            disconnect_reserved_flags
        ),
        case!(
            v5,
            "connect.server_disconnect",
            [
                "MQTT-3.14.2-1",
                "MQTT-3.14.2-2",
                "MQTT-3.14.4-1",
                "MQTT-3.14.4-2",
                "MQTT-4.13.2-1"
            ],
            "the broker's DISCONNECTs (takeover, protocol error, malformed packet) are valid, carry no Session Expiry, are last, and the connection closes",
            [],
            false,
            server_disconnect
        ),
    ]
}

async fn connack_success(cx: Ctx) -> TestResult {
    let (mut conn, ack) = cx.connect_raw("a", cx.connect_packet("a")).await?;
    let (succ, present) = if cx.v5() {
        ("MQTT-3.1.4-5", "MQTT-3.2.2-2")
    } else {
        ("MQTT-3.1.4-4", "MQTT-3.2.2-1")
    };
    ensure!(
        ack.reason_code == ReasonCode::SUCCESS,
        succ,
        "CONNACK 0x00 (Success)",
        "CONNACK {:#04x}",
        ack.reason_code.0
    );
    ensure!(
        !ack.session_present,
        present,
        "Session Present 0 after Clean Start 1",
        "Session Present 1"
    );
    conn.expect_quiet("MQTT-3.2.0-1", "nothing unasked after the CONNACK", None)
        .await?;
    conn.disconnect().await;
    Ok(())
}

async fn second_connect(cx: Ctx) -> TestResult {
    let mut conn = cx.connect("a").await?;
    conn.send(cx.connect_packet("a")).await?;
    let code = conn.expect_close("MQTT-3.1.0-2", None).await?;
    if cx.v5() {
        // A DISCONNECT, if any, must say Protocol Error.
        if let Some(c) = code {
            ensure!(
                c == ReasonCode::PROTOCOL_ERROR,
                "MQTT-3.1.0-2",
                "DISCONNECT 0x82 (Protocol Error), or none, then the close",
                "DISCONNECT {:#04x}",
                c.0
            );
        }
    }
    Ok(())
}

async fn reserved_flag(cx: Ctx) -> TestResult {
    let mut conn = cx.open("a").await?;
    let id = cx.client_id("a");
    // CONNECT: protocol name, level, flags 0x03 (Clean Start, reserved bit 0 set), keep alive 60,
    // no properties (5.0).
    let wire = connect_frame(&cx, 0x03, &[], &lstr(id.as_bytes()));
    conn.send_raw_lenient(&wire, "CONNECT with the reserved flag set")
        .await?;
    let got = until_close(&mut conn, "MQTT-3.1.2-3", cx.answer_within()).await?;
    if cx.v5() {
        ensure!(
            !got.iter().any(|p| matches!(p, Packet::Disconnect(_))),
            "MQTT-3.14.0-1",
            "no DISCONNECT before a CONNACK 0x00",
            "{}",
            briefs(&got)
        );
        // A refusing CONNACK is allowed.
        ensure!(
            got.iter()
                .all(|p| matches!(p, Packet::ConnAck(a) if a.reason_code.is_error())),
            "MQTT-3.1.2-3",
            "at most a refusing CONNACK for a CONNECT with the reserved flag set, then the close",
            "{} before the close",
            briefs(&got)
        );
    } else {
        // 3.1.1: no return code fits a malformed CONNECT.
        ensure!(
            got.is_empty(),
            "MQTT-3.2.2-6",
            "the close without a CONNACK for a CONNECT with the reserved flag set",
            "{} before the close",
            briefs(&got)
        );
    }
    Ok(())
}

async fn short_client_id(cx: Ctx) -> TestResult {
    for id in ["a", "0123456789abcdefghijABC"] {
        let mut c = cx.connect_packet("x");
        c.client_id = utf8(id);
        let (conn, ack) = cx.connect_raw(id, c).await?;
        ensure!(
            ack.reason_code == ReasonCode::SUCCESS,
            "MQTT-3.1.3-5",
            format!("the client identifier {id:?} accepted"),
            "CONNACK {:#04x}",
            ack.reason_code.0
        );
        conn.disconnect().await;
    }
    Ok(())
}

async fn publish_first(cx: Ctx) -> TestResult {
    let mut conn = cx.open("a").await?;
    conn.send(Packet::Publish(publish(&cx.topic("t"), "x", 0, 0)?))
        .await?;
    let code = conn.expect_close("MQTT-3.1.0-1", None).await?;
    if let Some(c) = code {
        ensure!(
            c.is_error(),
            "MQTT-3.1.0-1",
            "no success for a connection that did not start with CONNECT",
            "{:#04x}",
            c.0
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers, shared with the auth and keepalive modules.

/// The bytes of a well-formed packet in the test's version.
pub(super) fn encode(cx: &Ctx, packet: impl Into<Packet>) -> Result<Vec<u8>, Stop> {
    let mut wire = BytesMut::new();
    packet
        .into()
        .encode(cx.version().protocol(), &mut wire)
        .map_err(|e| {
            Failure::plain(
                "a packet the tester can encode",
                format!("the codec refuses it: {e}"),
            )
        })?;
    Ok(wire.to_vec())
}

/// The packets in `got`, briefly.
pub(super) fn briefs(got: &[Packet]) -> String {
    if got.is_empty() {
        return "nothing".to_owned();
    }
    got.iter().map(brief).collect::<Vec<_>>().join(", ")
}

/// What the broker sends until it closes the connection, which it must do within `within`.
pub(super) async fn until_close(
    conn: &mut Conn,
    statement: &'static str,
    within: Duration,
) -> Result<Vec<Packet>, Stop> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_within(left).await? {
            Some(Received::Closed) => return Ok(got),
            Some(Received::Packet(p)) => got.push(p),
            None => {
                return Err(Failure::of(
                    statement,
                    "the connection closed",
                    format!("still open after {within:?}, having sent {}", briefs(&got)),
                )
                .into());
            }
        }
    }
}

/// What the broker sends after a CONNECT the test expects it to refuse, until it closes the
/// connection (which it must do within `within`, else a failure of `statement`); `None` when
/// its first answer is CONNACK 0x00: it accepted the CONNECT, and the connection stays open.
async fn refusal(
    conn: &mut Conn,
    statement: &'static str,
    within: Duration,
) -> Result<Option<Vec<Packet>>, Stop> {
    let first = match conn.recv_within(within).await? {
        Some(Received::Closed) => return Ok(Some(Vec::new())),
        Some(Received::Packet(Packet::ConnAck(a))) if a.reason_code == ReasonCode::SUCCESS => {
            return Ok(None);
        }
        Some(Received::Packet(p)) => p,
        None => {
            return Err(Failure::of(
                statement,
                "the connection closed",
                format!("still open after {within:?}, having sent nothing"),
            )
            .into());
        }
    };
    let mut got = vec![first];
    got.extend(until_close(conn, statement, within).await?);
    Ok(Some(got))
}

/// Checks the DISCONNECTs among `got`, the packets a 5.0 connection received before the
/// broker closed it: a DISCONNECT Reason Code, no Session Expiry Interval, and nothing after
/// it. Returns how many there were.
pub(super) fn check_server_disconnects(got: &[Packet]) -> Result<usize, Stop> {
    let mut n = 0;
    for (i, p) in got.iter().enumerate() {
        let Packet::Disconnect(d) = p else { continue };
        n += 1;
        check_disconnect(d)?;
        let after = got.get(i + 1..).unwrap_or_default();
        ensure!(
            after.is_empty(),
            "MQTT-3.14.4-1",
            "no packet after the broker's DISCONNECT",
            "{} after DISCONNECT {:#04x}",
            briefs(after),
            d.reason_code.0
        );
    }
    Ok(n)
}

/// A DISCONNECT from the broker: a DISCONNECT Reason Code and no Session Expiry Interval.
pub(super) fn check_disconnect(d: &Disconnect) -> TestResult {
    ensure!(
        d.reason_code.is_valid_for(PacketType::Disconnect),
        "MQTT-3.14.2-1",
        "a DISCONNECT Reason Code",
        "DISCONNECT {:#04x}",
        d.reason_code.0
    );
    ensure!(
        d.properties.session_expiry_interval.is_none(),
        "MQTT-3.14.2-2",
        "no Session Expiry Interval on the broker's DISCONNECT",
        "DISCONNECT {:#04x} with Session Expiry Interval {:?}",
        d.reason_code.0,
        d.properties.session_expiry_interval
    );
    Ok(())
}

/// A CONNECT for client `name` with Clean Start 0 and (5.0) a Session Expiry Interval of
/// `expiry` seconds.
fn persistent(cx: &Ctx, name: &str, expiry: u32) -> mqtt_codec::Connect {
    let mut c = cx.connect_packet(name);
    c.clean_start = false;
    if cx.v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// Ends the session of client `name` (connects with Clean Start 1 and no expiry).
async fn end_session(cx: &Ctx, name: &str) {
    if let Ok((conn, _)) = cx.connect_raw(name, cx.connect_packet(name)).await {
        conn.disconnect().await;
    }
}

/// The Authentication Method no broker supports.
pub(super) const UNKNOWN_METHOD: &str = "x-mqttconf-unknown-method";

// ---------------------------------------------------------------------------------------------

async fn protocol_name(cx: Ctx) -> TestResult {
    let mut conn = cx.open("a").await?;
    let level = cx.version().protocol().level();
    let props: &[u8] = &[];
    let wire = connect_with(
        b"MQTX",
        level,
        0x02,
        props,
        &lstr(cx.client_id("a").as_bytes()),
    );
    conn.send_raw_lenient(&wire, "CONNECT with protocol name MQTX")
        .await?;
    if cx.v5() {
        let got = until_close(&mut conn, "MQTT-3.1.2-1", cx.answer_within()).await?;
        let ok = match got.as_slice() {
            [] => true,
            [Packet::ConnAck(a)] => a.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            _ => false,
        };
        ensure!(
            ok,
            "MQTT-3.1.2-1",
            "at most CONNACK 0x84, then the close",
            "{} before the close",
            briefs(&got)
        );
        return Ok(());
    }
    // 3.1.1: the broker may close, or go on by another specification, but not by this one.
    match conn.recv_within(cx.answer_within()).await? {
        Some(Received::Closed) => Ok(()),
        None => {
            conn.send_raw_lenient(&[0xC0, 0x00], "PINGREQ").await?;
            match conn.recv_within(cx.quiet_for()).await? {
                None | Some(Received::Closed) => Ok(()),
                Some(Received::Packet(p)) => Err(Failure::of(
                    "MQTT-3.1.2-1",
                    "no MQTT 3.1.1 service after a CONNECT with protocol name MQTX",
                    format!("{} for a PINGREQ", brief(&p)),
                )
                .into()),
            }
        }
        Some(Received::Packet(p)) => Err(Failure::of(
            "MQTT-3.1.2-1",
            "no MQTT 3.1.1 answer to a CONNECT with protocol name MQTX",
            brief(&p),
        )
        .into()),
    }
}

async fn protocol_level(cx: Ctx) -> TestResult {
    let mut conn = cx.open("a").await?;
    let level = if cx.v5() { 6 } else { 7 };
    let wire = connect_with(
        b"MQTT",
        level,
        0x02,
        &[],
        &lstr(cx.client_id("a").as_bytes()),
    );
    conn.send_raw_lenient(&wire, &format!("CONNECT with protocol level {level}"))
        .await?;
    if !cx.v5() {
        let ack = conn.connack("MQTT-3.1.2-2").await?;
        ensure!(
            ack.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION && !ack.session_present,
            "MQTT-3.1.2-2",
            "CONNACK 0x01 (unacceptable protocol version)",
            "CONNACK return code {:?}",
            ack.reason_code.to_v3_connect_return_code()
        );
        let got = until_close(&mut conn, "MQTT-3.2.2-5", cx.answer_within()).await?;
        ensure!(
            got.is_empty(),
            "MQTT-3.2.2-5",
            "the close after CONNACK 0x01",
            "{} after it",
            briefs(&got)
        );
        return Ok(());
    }
    // 5.0: a CONNACK 0x84 is allowed, and so is the 3.1.1 form of that refusal (20 02 00 01):
    // a Server cannot know which form a client of protocol level 6 reads.
    let deadline = Instant::now() + cx.answer_within();
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv_within(left).await {
            Ok(Some(Received::Closed)) => break,
            Ok(Some(Received::Packet(p))) => got.push(p),
            Ok(None) => {
                return Err(Failure::of(
                    "MQTT-3.1.2-2",
                    "the close after a CONNECT with protocol level 6",
                    format!("still open after {}", briefs(&got)),
                )
                .into());
            }
            Err(Stop::Fail(f)) if got.is_empty() && f.observed.ends_with("bytes 20 02 00 01") => {
                got.push(Packet::PingResp); // stands for the 3.1.1 CONNACK 0x01
            }
            Err(e) => return Err(e),
        }
    }
    let ok = match got.as_slice() {
        [] | [Packet::PingResp] => true,
        [Packet::ConnAck(a)] => a.reason_code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        _ => false,
    };
    ensure!(
        ok,
        "MQTT-3.1.2-2",
        "at most CONNACK 0x84, then the close",
        "{} before the close",
        briefs(&got)
    );
    Ok(())
}

async fn refused_connack(cx: Ctx) -> TestResult {
    let name = "s";
    // A session for the client id, and a CONNACK with Session Present 1 (bits 7-1 of the
    // flags are checked on every CONNACK by the decoder, statement MQTT-3.2.2-1).
    let (conn, _) = cx.connect_with(name, persistent(&cx, name, 60)).await?;
    conn.disconnect().await;
    let (conn, ack) = cx.connect_with(name, persistent(&cx, name, 60)).await?;
    conn.disconnect().await;
    if !ack.session_present {
        return Err(Stop::NotApplicable(
            "the broker kept no session to refuse a CONNECT for (Session Present 0)".into(),
        ));
    }
    let result = refused_for_session(&cx, name).await;
    end_session(&cx, name).await;
    result
}

async fn refused_for_session(cx: &Ctx, name: &str) -> TestResult {
    let mut conn = cx.open("r").await?;
    if cx.v5() {
        let mut c = persistent(cx, name, 60);
        c.properties
            .set_authentication_method(Some(utf8(UNKNOWN_METHOD)));
        conn.send(c).await?;
    } else {
        let wire = connect_with(b"MQTT", 7, 0x00, &[], &lstr(cx.client_id(name).as_bytes()));
        conn.send_raw_lenient(&wire, "CONNECT with protocol level 7, Clean Session 0")
            .await?;
    }
    let (present, closed) = if cx.v5() {
        ("MQTT-3.2.2-6", "MQTT-3.2.2-7")
    } else {
        ("MQTT-3.2.2-4", "MQTT-3.2.2-5")
    };
    let Some(got) = refusal(&mut conn, closed, cx.answer_within()).await? else {
        conn.disconnect().await;
        return Err(Stop::NotApplicable(if cx.v5() {
            "the broker accepted the unknown Authentication Method (CONNACK 0x00): no refused CONNECT"
                .into()
        } else {
            "the broker accepted protocol level 7 (CONNACK 0x00): no refused CONNECT".into()
        }));
    };
    let Some(Packet::ConnAck(ack)) = got.first() else {
        if got.is_empty() && cx.v5() {
            return Err(Stop::NotApplicable(
                "the broker closed without a CONNACK: no refusing CONNACK to check".into(),
            ));
        }
        return Err(Failure::of(present, "a CONNACK refusing the CONNECT", briefs(&got)).into());
    };
    ensure!(
        ack.reason_code.is_error(),
        closed,
        "a refusing CONNACK",
        "CONNACK {:#04x}",
        ack.reason_code.0
    );
    if cx.v5() {
        ensure!(
            ack.reason_code.is_valid_for(PacketType::ConnAck),
            "MQTT-3.2.2-8",
            "a Connect Reason Code",
            "CONNACK {:#04x}",
            ack.reason_code.0
        );
    }
    ensure!(
        !ack.session_present,
        present,
        "Session Present 0 with a refusing CONNACK",
        "Session Present 1 with CONNACK {:#04x}",
        ack.reason_code.0
    );
    ensure!(
        got.len() == 1,
        closed,
        "the close right after the refusing CONNACK",
        "{}",
        briefs(&got)
    );
    Ok(())
}

async fn empty_client_id(cx: Ctx) -> TestResult {
    let mut c = cx.connect_packet("x");
    c.client_id = utf8("");
    if cx.v5() {
        c.properties.session_expiry_interval = Some(30);
    }
    let (mut one, ack) = cx.connect_raw("one", c.clone()).await?;
    // 0x85 in 5.0; 0x02 (identifier rejected) in 3.1.1, which the codec reads as 0x85.
    let (refused, s6) = (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "MQTT-3.1.3-6");
    if ack.reason_code == refused {
        // The broker does not allow empty client identifiers: it must close (the rule for a
        // rejected client identifier), and the rules for accepted ones do not apply.
        let closed = if cx.v5() {
            "MQTT-3.1.3-8"
        } else {
            "MQTT-3.1.3-9"
        };
        let got = until_close(&mut one, closed, cx.answer_within()).await?;
        ensure!(
            got.is_empty(),
            closed,
            "the close after the refusal",
            "{}",
            briefs(&got)
        );
        return Err(Stop::NotApplicable(
            "the broker refuses empty client identifiers".into(),
        ));
    }
    ensure!(
        ack.reason_code == ReasonCode::SUCCESS,
        s6,
        "CONNACK 0x00, or the refusal of the empty client identifier",
        "CONNACK {:#04x}",
        ack.reason_code.0
    );
    let (mut two, ack2) = cx.connect_raw("two", c).await?;
    ensure!(
        ack2.reason_code == ReasonCode::SUCCESS,
        s6,
        "CONNACK 0x00 for a second empty client identifier, as for the first",
        "CONNACK {:#04x}",
        ack2.reason_code.0
    );
    // Both stay connected: the second did not take over the first's session.
    for conn in [&mut one, &mut two] {
        conn.send(Packet::PingReq).await?;
        conn.expect_type(PacketType::PingResp, s6).await?;
    }
    if !cx.v5() {
        one.disconnect().await;
        two.disconnect().await;
        return Ok(());
    }
    let id1 = ack
        .properties
        .assigned_client_identifier()
        .map(str::to_owned);
    let id2 = ack2
        .properties
        .assigned_client_identifier()
        .map(str::to_owned);
    let (Some(id1), Some(id2)) = (id1, id2) else {
        return Err(Failure::of(
            "MQTT-3.2.2-16",
            "an Assigned Client Identifier in each CONNACK",
            format!("first {:?}, second {:?}", ack.properties, ack2.properties),
        )
        .into());
    };
    ensure!(
        !id1.is_empty() && id1 != id2,
        "MQTT-3.2.2-16",
        "two new, different Assigned Client Identifiers",
        "{id1:?} and {id2:?}",
    );
    ensure!(
        !id1.starts_with(&cx.client_id("")) && !id2.starts_with(&cx.client_id("")),
        "MQTT-3.2.2-16",
        "Assigned Client Identifiers not used by this test's sessions",
        "{id1:?} and {id2:?}"
    );
    one.disconnect().await;
    two.disconnect().await;
    // The first session (expiry 30 s) is the session of id1: resume it.
    let mut c = cx.connect_packet("x");
    c.client_id = utf8(&id1);
    c.clean_start = false;
    let (conn, ack) = cx.connect_raw("resume", c).await?;
    ensure!(
        ack.reason_code == ReasonCode::SUCCESS && ack.session_present,
        "MQTT-3.1.3-7",
        format!("CONNACK 0x00 with Session Present 1 for the assigned id {id1:?}"),
        "CONNACK {:#04x} Session Present {}",
        ack.reason_code.0,
        u8::from(ack.session_present)
    );
    conn.disconnect().await; // expiry 0 now: the session ends
    let mut c = cx.connect_packet("x");
    c.client_id = utf8(&id2);
    if let Ok((conn, _)) = cx.connect_raw("end", c).await {
        conn.disconnect().await;
    }
    Ok(())
}

async fn empty_client_id_persistent(cx: Ctx) -> TestResult {
    let mut c = cx.connect_packet("x");
    c.client_id = utf8("");
    c.clean_start = false;
    let (mut conn, ack) = cx.connect_raw("a", c).await?;
    ensure!(
        ack.reason_code == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        "MQTT-3.1.3-8",
        "CONNACK 0x02 (identifier rejected)",
        "CONNACK return code {:?}",
        ack.reason_code.to_v3_connect_return_code()
    );
    ensure!(
        !ack.session_present,
        "MQTT-3.2.2-4",
        "Session Present 0 with CONNACK 0x02",
        "Session Present 1"
    );
    let got = until_close(&mut conn, "MQTT-3.1.3-9", cx.answer_within()).await?;
    ensure!(
        got.is_empty(),
        "MQTT-3.2.2-5",
        "the close right after CONNACK 0x02",
        "{} after it",
        briefs(&got)
    );
    Ok(())
}

async fn first_packet_not_connect(cx: Ctx) -> TestResult {
    let sub = encode(
        &cx,
        subscribe(1, &cx.topic("t"), SubscriptionOptions::qos(QoS::AtMostOnce))?,
    )?;
    // (A malformed CONNECT as the first packet is connect.reserved_flag.)
    let stimuli: [(&str, &[u8]); 2] = [
        ("PINGREQ as the first packet", &[0xC0, 0x00]),
        ("SUBSCRIBE as the first packet", &sub),
    ];
    for (what, bytes) in stimuli {
        let mut conn = cx.open(what).await?;
        conn.send_raw_lenient(bytes, what).await?;
        let got = until_close(&mut conn, "MQTT-3.1.0-1", cx.answer_within()).await?;
        if cx.v5() {
            ensure!(
                !got.iter().any(|p| matches!(p, Packet::Disconnect(_))),
                "MQTT-3.14.0-1",
                format!("no DISCONNECT before a CONNACK 0x00 ({what})"),
                "{}",
                briefs(&got)
            );
        }
        ensure!(
            got.is_empty(),
            "MQTT-3.1.0-1",
            format!("the close with no answer to {what}"),
            "{}",
            briefs(&got)
        );
    }
    Ok(())
}

async fn one_connack(cx: Ctx) -> TestResult {
    let mut conn = cx.connect("a").await?;
    conn.send(cx.connect_packet("a")).await?;
    let got = until_close(&mut conn, "MQTT-3.1.0-2", cx.answer_within()).await?;
    ensure!(
        !got.iter().any(|p| matches!(p, Packet::ConnAck(_))),
        "MQTT-3.2.0-2",
        "no second CONNACK on the connection",
        "{}",
        briefs(&got)
    );
    Ok(())
}

async fn refused_then_publish(cx: Ctx) -> TestResult {
    let t = cx.topic("r");
    let mut sub = cx.connect("sub").await?;
    sub.sub(&t, 0).await?;
    let mut wire = if cx.v5() {
        let mut c = cx.connect_packet("r");
        c.properties
            .set_authentication_method(Some(utf8(UNKNOWN_METHOD)));
        encode(&cx, c)?
    } else {
        connect_with(b"MQTT", 7, 0x02, &[], &lstr(cx.client_id("r").as_bytes()))
    };
    let mut p = publish(&t, "after-refused-connect", 0, 0)?;
    p.retain = cx.caps().retain;
    wire.extend(encode(&cx, p)?);
    let mut conn = cx.open("r").await?;
    conn.send_raw_lenient(&wire, "a refused CONNECT and a PUBLISH in one write")
        .await?;
    let st = if cx.v5() {
        "MQTT-3.1.4-6"
    } else {
        "MQTT-3.1.4-5"
    };
    if refusal(&mut conn, st, cx.answer_within()).await?.is_none() {
        // Accepted (CONNACK 0x00): the PUBLISH was processed; clear what it left.
        if cx.caps().retain {
            let mut clear = publish(&t, "", 0, 0)?;
            clear.retain = true;
            conn.send(clear).await?;
        }
        conn.disconnect().await;
        sub.disconnect().await;
        return Err(Stop::NotApplicable(
            "the broker accepted the CONNECT the test expected to be refused (CONNACK 0x00)".into(),
        ));
    }
    sub.expect_quiet(st, "no message from the refused connection", None)
        .await?;
    // Nor a retained message: subscribe again (retained messages are sent on subscribe).
    sub.subscribe_to(
        2,
        &t,
        SubscriptionOptions::qos(QoS::AtMostOnce),
        "MQTT-3.8.4-1",
    )
    .await?;
    sub.expect_quiet(st, "no retained message from the refused connection", None)
        .await?;
    // Control: a message from a connected client arrives.
    let mut publ = cx.connect("pub").await?;
    publ.send(publish(&t, "control", 0, 0)?).await?;
    let got = sub.publish(st).await?;
    ensure!(
        &*got.payload == b"control",
        st,
        "the control message",
        "{}",
        brief(&Packet::Publish(got))
    );
    if cx.caps().retain {
        let mut clear = publish(&t, "", 0, 0)?;
        clear.retain = true;
        publ.send(clear).await?;
    }
    publ.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

async fn connack_first(cx: Ctx) -> TestResult {
    let name = "q";
    let t = cx.topic("q");
    let (mut conn, _) = cx.connect_with(name, persistent(&cx, name, 60)).await?;
    conn.sub(&t, 1).await?;
    conn.disconnect().await;
    let mut publ = cx.connect("pub").await?;
    publ.send(publish(&t, "queued", 1, 1)?).await?;
    publ.expect_type(PacketType::PubAck, "MQTT-3.3.4-1").await?;
    publ.disconnect().await;
    let mut conn = cx.open(name).await?;
    conn.send(persistent(&cx, name, 0)).await?;
    let first = conn.recv("MQTT-3.2.0-1", "a CONNACK").await?;
    let result = match &first {
        Packet::ConnAck(a) if a.reason_code == ReasonCode::SUCCESS => {
            if a.session_present {
                queued_follows(&cx, &mut conn).await
            } else {
                Err(Stop::NotApplicable(
                    "the broker kept no session (Session Present 0): no queued message to come \
                     before the CONNACK"
                        .into(),
                ))
            }
        }
        other => Err(Failure::of(
            "MQTT-3.2.0-1",
            "a CONNACK 0x00 before anything else",
            brief(other),
        )
        .into()),
    };
    conn.disconnect().await;
    end_session(&cx, name).await;
    result
}

/// After the CONNACK of a resumed session: the queued message must follow for the order to
/// have been tested (it is acknowledged, so that the session ends clean).
async fn queued_follows(cx: &Ctx, conn: &mut Conn) -> TestResult {
    match conn.recv_within(cx.answer_within()).await? {
        Some(Received::Packet(Packet::Publish(p))) if &*p.payload == b"queued" => {
            if let Some(id) = p.packet_id {
                conn.send(mqtt_codec::PubAck::new(id)).await?;
            }
            Ok(())
        }
        other => Err(Stop::NotApplicable(format!(
            "the queued message did not follow the CONNACK (got {}): the order was not tested",
            match other {
                Some(Received::Packet(p)) => brief(&p),
                Some(Received::Closed) => "the close".to_owned(),
                None => "nothing".to_owned(),
            }
        ))),
    }
}

async fn byte_stream(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-4.2.0-1"
    } else {
        "MQTT-7.1.1-1"
    };
    let t = cx.topic("s");
    let mut conn = cx.open("a").await?;
    let wire = encode(&cx, cx.connect_packet("a"))?;
    for b in &wire {
        conn.send_raw(std::slice::from_ref(b), "one byte of a CONNECT")
            .await?;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let ack = conn.connack(st).await?;
    ensure!(
        ack.reason_code == ReasonCode::SUCCESS,
        st,
        "CONNACK 0x00 for a CONNECT written a byte at a time",
        "CONNACK {:#04x}",
        ack.reason_code.0
    );
    let mut three = encode(
        &cx,
        subscribe(7, &t, SubscriptionOptions::qos(QoS::AtMostOnce))?,
    )?;
    three.extend(encode(&cx, publish(&t, "coalesced", 0, 0)?)?);
    three.extend(encode(&cx, Packet::PingReq)?);
    conn.send_raw(&three, "SUBSCRIBE, PUBLISH and PINGREQ in one write")
        .await?;
    let mut got = Vec::new();
    while got.len() < 3 {
        match conn.recv_within(cx.answer_within()).await? {
            Some(Received::Packet(p)) => got.push(p),
            _ => break,
        }
    }
    // The PINGRESP and the delivery of the PUBLISH may come in either order.
    let ok = matches!(got.first(), Some(Packet::SubAck(_)))
        && got.iter().any(|p| matches!(p, Packet::PingResp))
        && got
            .iter()
            .any(|p| matches!(p, Packet::Publish(p) if &*p.payload == b"coalesced"));
    ensure!(
        ok,
        st,
        "SUBACK, the PUBLISH delivered back, and PINGRESP",
        "{}",
        briefs(&got)
    );
    conn.disconnect().await;
    Ok(())
}

async fn payload_order(cx: Ctx) -> TestResult {
    let wt = cx.topic("will");
    let mut sub = cx.connect("sub").await?;
    sub.sub(&wt, 0).await?;
    let mut c = cx.connect_packet("w");
    c.will = Some(Will {
        topic: topic(&wt)?,
        payload: Bytes::from_static(b"will-payload"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let invented = c.username.is_none();
    if invented {
        c.username = Some(utf8("mqttconf"));
        c.password = Some(Bytes::from_static(b"secret"));
    }
    let (conn, ack) = cx.connect_raw("w", c).await?;
    if invented
        && (ack.reason_code == ReasonCode::BAD_USER_NAME_OR_PASSWORD
            || ack.reason_code == ReasonCode::NOT_AUTHORIZED)
    {
        return Err(Stop::NotApplicable(
            "the broker checks passwords and the run has no credentials to send".into(),
        ));
    }
    ensure!(
        ack.reason_code == ReasonCode::SUCCESS,
        "MQTT-3.1.3-1",
        "CONNACK 0x00 for a CONNECT with a Will, a User Name and a Password",
        "CONNACK {:#04x}",
        ack.reason_code.0
    );
    conn.drop_abruptly().await;
    let p = sub.publish("MQTT-3.1.3-1").await?;
    let want: TopicName = topic(&wt)?;
    ensure!(
        p.topic == want && &*p.payload == b"will-payload",
        "MQTT-3.1.3-1",
        format!("the Will Message on {wt:?} with payload \"will-payload\""),
        "{}",
        brief(&Packet::Publish(p))
    );
    sub.disconnect().await;
    Ok(())
}

async fn server_disconnect(cx: Ctx) -> TestResult {
    let t = cx.topic("d");
    let mut seen = 0;
    // Session takeover, with messages flowing to the old connection.
    let mut old = cx.connect("x").await?;
    old.sub(&t, 0).await?;
    let mut publ = cx.connect("pub").await?;
    for i in 0..5 {
        publ.send(publish(&t, &format!("m{i}"), 0, 0)?).await?;
    }
    let new = cx.connect("x").await?;
    for i in 5..10 {
        publ.send(publish(&t, &format!("m{i}"), 0, 0)?).await?;
    }
    let got = until_close(&mut old, "MQTT-3.14.4-2", cx.answer_within()).await?;
    seen += check_server_disconnects(&got)?;
    new.disconnect().await;
    publ.disconnect().await;
    // A protocol error: a second CONNECT.
    let mut conn = cx.connect("p").await?;
    conn.send(cx.connect_packet("p")).await?;
    let got = until_close(&mut conn, "MQTT-4.13.2-1", cx.answer_within()).await?;
    seen += check_server_disconnects(&got)?;
    // A malformed packet: PUBLISH with QoS 3.
    let mut conn = cx.connect("m").await?;
    let mut body = Vec::new();
    put_str(&mut body, t.as_bytes());
    body.extend_from_slice(&[0x00, 0x01, 0x00, b'x']);
    conn.send_raw_lenient(&frame(0x36, &body), "PUBLISH with QoS 3")
        .await?;
    let got = until_close(&mut conn, "MQTT-4.13.2-1", cx.answer_within()).await?;
    seen += check_server_disconnects(&got)?;
    if seen == 0 {
        return Err(Stop::NotApplicable(
            "the broker closed without DISCONNECT on takeover, protocol error and malformed packet"
                .into(),
        ));
    }
    Ok(())
}

async fn unusual_client_id(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.1.3-8"
    } else {
        "MQTT-3.1.3-9"
    };
    let long = format!("{}{}", cx.client_id("L"), "L".repeat(200));
    let mut refused = 0;
    for id in [format!("{}/+#", cx.client_id("s")), long] {
        let mut c = cx.connect_packet("x");
        c.client_id = utf8(&id);
        let mut conn = cx.open("a").await?;
        conn.send(c).await?;
        let got = match conn.recv_within(cx.answer_within()).await? {
            Some(Received::Packet(Packet::ConnAck(a))) if a.reason_code == ReasonCode::SUCCESS => {
                // Accepted: nothing to check here.
                conn.disconnect().await;
                continue;
            }
            Some(Received::Packet(p)) => p,
            Some(Received::Closed) => {
                refused += 1;
                // 5.0 allows a plain close; 3.1.1 requires CONNACK 0x02 first.
                ensure!(
                    cx.v5(),
                    st,
                    format!(
                        "CONNACK 0x02 before the close, if the client identifier {id:?} is rejected"
                    ),
                    "a close without CONNACK"
                );
                continue;
            }
            None => {
                return Err(Failure::of(
                    st,
                    format!("a CONNACK for the client identifier {id:?}"),
                    format!("nothing within {:?}", cx.answer_within()),
                )
                .into());
            }
        };
        let ok = matches!(&got, Packet::ConnAck(a) if a.reason_code.is_error()
            && (cx.v5() || a.reason_code == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID));
        ensure!(
            ok,
            st,
            format!("CONNACK 0x00, or the refusal of the client identifier {id:?}"),
            "{}",
            brief(&got)
        );
        refused += 1;
        let rest = until_close(&mut conn, st, cx.answer_within()).await?;
        ensure!(
            rest.is_empty(),
            st,
            "the close right after the refusing CONNACK",
            "{}",
            briefs(&rest)
        );
    }
    if refused == 0 {
        return Err(Stop::NotApplicable(
            "the broker accepted both unusual client identifiers: the rule is for refusing one"
                .into(),
        ));
    }
    Ok(())
}

/// Connects client `name` with a Will (QoS 0) on `wt` carrying `payload`.
async fn with_will(cx: &Ctx, name: &str, wt: &str, payload: &'static [u8]) -> Result<Conn, Stop> {
    let mut c = cx.connect_packet(name);
    c.will = Some(Will {
        topic: topic(wt)?,
        payload: Bytes::from_static(payload),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    Ok(cx.connect_with(name, c).await?.0)
}

async fn disconnect_will(cx: Ctx) -> TestResult {
    let wt = cx.topic("will");
    let mut sub = cx.connect("sub").await?;
    sub.sub(&wt, 0).await?;
    let conn = with_will(&cx, "w", &wt, b"discarded").await?;
    // DISCONNECT 0x00, then the close.
    conn.disconnect().await;
    sub.expect_quiet(
        "MQTT-3.14.4-3",
        "no Will Message after a normal DISCONNECT",
        Some(cx.quiet_for() * 2),
    )
    .await?;
    if cx.v5() {
        // Control: DISCONNECT 0x04 asks for the Will.
        let mut conn = with_will(&cx, "w2", &wt, b"published").await?;
        conn.send(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE))
            .await?;
        conn.drop_abruptly().await; // the close after the DISCONNECT
        let p = sub.publish("MQTT-3.14.4-3").await?;
        ensure!(
            &*p.payload == b"published",
            "MQTT-3.14.4-3",
            "the Will Message \"published\" after DISCONNECT 0x04",
            "{}",
            brief(&Packet::Publish(p))
        );
    }
    sub.disconnect().await;
    Ok(())
}

async fn disconnect_reserved_flags(cx: Ctx) -> TestResult {
    let wt = cx.topic("will");
    let mut sub = cx.connect("sub").await?;
    sub.sub(&wt, 0).await?;
    let mut conn = with_will(&cx, "w", &wt, b"will").await?;
    let wire: &[u8] = if cx.v5() {
        &[0xE1, 0x01, 0x00]
    } else {
        &[0xE1, 0x00]
    };
    conn.send_raw_lenient(wire, "DISCONNECT with fixed header 0xE1")
        .await?;
    let got = until_close(&mut conn, "MQTT-3.14.1-1", cx.answer_within()).await?;
    let ok = got.iter().all(
        |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::MALFORMED_PACKET),
    );
    ensure!(
        ok,
        "MQTT-3.14.1-1",
        "the close, after at most DISCONNECT 0x81",
        "{} before the close",
        briefs(&got)
    );
    let p = sub.publish("MQTT-3.14.1-1").await?;
    ensure!(
        &*p.payload == b"will",
        "MQTT-3.14.1-1",
        "the Will Message: a malformed DISCONNECT is not a normal disconnection",
        "{}",
        brief(&Packet::Publish(p))
    );
    sub.disconnect().await;
    Ok(())
}
