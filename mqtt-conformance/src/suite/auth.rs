//! Authentication: an Authentication Method the broker does not support, no AUTH without one,
//! the AUTH packet's reserved flags, and a wrong password when the run has credentials.
//!
//! The enhanced authentication exchange itself (AUTH 0x18, re-authentication) needs a broker
//! configured with a method the tester knows; it is not tested here.

use bytes::Bytes;
use mqtt_codec::{Packet, PacketType, ReasonCode};

use super::TestCase;
use super::connect::{UNKNOWN_METHOD, briefs, check_server_disconnects, until_close};
use crate::ctx::{Ctx, utf8};
use crate::ensure;
use crate::outcome::{Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "auth.unknown_method",
            ["MQTT-4.12.0-1"],
            "a CONNECT with an unknown Authentication Method is refused (CONNACK 0x8C or 0x87, or none) and the connection closed",
            [],
            false,
            unknown_method
        ),
        case!(
            v5,
            "auth.no_method_no_auth",
            ["MQTT-4.12.0-6"],
            "without an Authentication Method in CONNECT: no Authentication Method in the CONNACK, and no AUTH packet",
            [],
            false,
            no_method_no_auth
        ),
        case!(
            v5,
            "auth.reserved_flags",
            ["MQTT-3.15.1-1"],
            "an AUTH packet with fixed header 0xF1 closes the connection",
            [],
            false,
            reserved_flags
        ),
        case!(
            v5,
            "auth.wrong_password",
            ["MQTT-3.1.4-2"],
            "a CONNECT with the run's User Name and a wrong password, if refused, is followed by the close",
            [],
            false,
            wrong_password
        ),
        case!(
            v311,
            "auth.wrong_password",
            ["MQTT-3.2.2-5"],
            "a CONNECT with the run's User Name and a wrong password, if refused, is followed by the close",
            [],
            false,
            wrong_password
        ),
    ]
}

async fn unknown_method(cx: Ctx) -> TestResult {
    let mut c = cx.connect_packet("a");
    c.properties
        .set_authentication_method(Some(utf8(UNKNOWN_METHOD)));
    let mut conn = cx.open("a").await?;
    conn.send(c).await?;
    let got = until_close(&mut conn, "MQTT-4.12.0-1", cx.answer_within()).await?;
    let ok = match got.as_slice() {
        [] => true,
        [Packet::ConnAck(a)] => {
            a.reason_code == ReasonCode::BAD_AUTHENTICATION_METHOD
                || a.reason_code == ReasonCode::NOT_AUTHORIZED
        }
        _ => false,
    };
    ensure!(
        ok,
        "MQTT-4.12.0-1",
        format!(
            "at most CONNACK 0x8C or 0x87 for Authentication Method {UNKNOWN_METHOD:?}, then the close"
        ),
        "{} before the close",
        briefs(&got)
    );
    Ok(())
}

async fn no_method_no_auth(cx: Ctx) -> TestResult {
    let (mut conn, ack) = cx.connect_raw("a", cx.connect_packet("a")).await?;
    ensure!(
        ack.properties.authentication_method().is_none(),
        "MQTT-4.12.0-6",
        "no Authentication Method in the CONNACK",
        "Authentication Method {:?}",
        ack.properties.authentication_method()
    );
    conn.send(Packet::PingReq).await?;
    // The next packet is the PINGRESP, and nothing (no AUTH) follows.
    conn.expect_type(PacketType::PingResp, "MQTT-3.12.4-1")
        .await?;
    conn.expect_quiet("MQTT-4.12.0-6", "no AUTH packet", None)
        .await?;
    conn.disconnect().await;
    Ok(())
}

async fn reserved_flags(cx: Ctx) -> TestResult {
    let mut conn = cx.connect("a").await?;
    // AUTH, flags 0001, Reason Code 0x19 (Re-authenticate), Authentication Method "x".
    let wire = [0xF1, 0x06, 0x19, 0x04, 0x15, 0x00, 0x01, b'x'];
    conn.send_raw_lenient(&wire, "AUTH with fixed header 0xF1")
        .await?;
    let got = until_close(&mut conn, "MQTT-3.15.1-1", cx.answer_within()).await?;
    check_server_disconnects(&got)?;
    // A DISCONNECT, if any, says Malformed Packet (or Protocol Error: this connection did not
    // use enhanced authentication either).
    let ok = got.iter().all(|p| {
        matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::MALFORMED_PACKET
            || d.reason_code == ReasonCode::PROTOCOL_ERROR)
    });
    ensure!(
        ok,
        "MQTT-3.15.1-1",
        "the close, after at most DISCONNECT 0x81",
        "{} before the close",
        briefs(&got)
    );
    Ok(())
}

async fn wrong_password(cx: Ctx) -> TestResult {
    let mut c = cx.connect_packet("a");
    let Some(pw) = c.password.clone() else {
        return Err(Stop::Skip(
            "the run has no credentials: a wrong password is not observable".into(),
        ));
    };
    let mut wrong = b"wrong-".to_vec();
    wrong.extend_from_slice(&pw);
    c.password = Some(Bytes::from(wrong));
    let (mut conn, ack) = cx.connect_raw("a", c).await?;
    let st = if cx.v5() {
        "MQTT-3.1.4-2"
    } else {
        "MQTT-3.2.2-5"
    };
    if !ack.reason_code.is_error() {
        return Err(Stop::NotApplicable(
            "the broker accepted the wrong password (it does not check passwords)".into(),
        ));
    }
    let got = until_close(&mut conn, st, cx.answer_within()).await?;
    ensure!(
        got.is_empty(),
        st,
        "the close right after the refusing CONNACK",
        "{}",
        briefs(&got)
    );
    Ok(())
}
