//! CONNECT and CONNACK: the first packet, Clean Start and Session Present, client
//! identifiers, a second CONNECT, reserved flags.

use mqtt_codec::{Packet, ReasonCode};

use super::TestCase;
use crate::ctx::{Ctx, publish, utf8};
use crate::ensure;
use crate::outcome::TestResult;

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
            ["MQTT-3.2.0-1", "MQTT-3.2.2-1", "MQTT-3.2.2-4"],
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
            ["MQTT-3.1.2-3"],
            "a CONNECT with the reserved Connect Flag set is refused",
            [],
            false,
            reserved_flag
        ),
        case!(
            v311,
            "connect.reserved_flag",
            ["MQTT-3.1.2-3"],
            "a CONNECT with the reserved Connect Flag set is refused",
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
    ]
}

async fn connack_success(cx: Ctx) -> TestResult {
    let (mut conn, ack) = cx.connect_raw("a", cx.connect_packet("a")).await?;
    let (succ, present) = if cx.v5() {
        ("MQTT-3.1.4-5", "MQTT-3.2.2-2")
    } else {
        ("MQTT-3.2.0-1", "MQTT-3.2.2-4")
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
    let level = cx.version().protocol().level();
    // CONNECT: protocol name, level, flags 0x03 (Clean Start, reserved bit 0 set), keep alive 60.
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', level, 0x03, 0x00, 0x3c];
    if cx.v5() {
        body.push(0x00); // no properties
    }
    let n = u8::try_from(id.len()).unwrap_or(0);
    body.extend_from_slice(&[0x00, n]);
    body.extend_from_slice(id.as_bytes());
    let mut wire = vec![0x10, u8::try_from(body.len()).unwrap_or(0)];
    wire.extend_from_slice(&body);
    conn.send_raw_lenient(&wire, "CONNECT with the reserved flag set")
        .await;
    let code = conn.expect_close("MQTT-3.1.2-3", None).await?;
    if let Some(c) = code {
        ensure!(
            c.is_error(),
            "MQTT-3.1.2-3",
            "no successful CONNACK for a CONNECT with the reserved flag set",
            "a reason code {:#04x} before the close",
            c.0
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
