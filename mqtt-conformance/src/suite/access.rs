//! Access control seen from outside: a PUBLISH the broker does not authorize (to the topic
//! given with `--denied-topic`).

use mqtt_codec::Packet;

use super::TestCase;
use crate::conn::{Received, brief};
use crate::ctx::{Ctx, publish};
use crate::outcome::{Failure, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v311,
            "access.unauthorized_publish",
            ["MQTT-3.3.5-2"],
            "a QoS 1 PUBLISH to a topic the tester may not publish to is acknowledged as usual (PUBACK) or the connection is closed",
            [Qos1, DeniedTopic],
            false,
            unauthorized_publish
        ),
        case!(
            v5,
            "access.unauthorized_publish",
            [],
            "a QoS 1 PUBLISH to a topic the tester may not publish to gets PUBACK 0x87 (Not authorized) or another error, or the connection is closed",
            [Qos1, DeniedTopic],
            false,
            unauthorized_publish
        ),
    ]
}

async fn unauthorized_publish(cx: Ctx) -> TestResult {
    let denied = cx.caps().denied_topic.clone().unwrap_or_default();
    let mut conn = cx.connect("a").await?;
    conn.send(publish(&denied, "denied", 1, 9)?).await?;
    let st = "MQTT-3.3.5-2";
    match conn.recv_within(cx.answer_within()).await? {
        Some(Received::Closed) => Ok(()),
        Some(Received::Packet(Packet::PubAck(a))) if a.packet_id.get() == 9 => {
            if cx.v5() && !a.reason_code.is_error() {
                return Err(Failure::plain(
                    format!("PUBACK with an error reason code (0x87 Not authorized) for a PUBLISH to {denied:?}, which the broker denies"),
                    format!("PUBACK {:#04x}", a.reason_code.0),
                )
                .into());
            }
            conn.disconnect().await;
            Ok(())
        }
        Some(Received::Packet(Packet::Disconnect(d))) if cx.v5() && d.reason_code.is_error() => {
            Ok(())
        }
        Some(Received::Packet(p)) => Err(Failure::of(
            st,
            format!("PUBACK for Packet Identifier 9 (a positive acknowledgement), or the close, after a PUBLISH to {denied:?}"),
            brief(&p),
        )
        .into()),
        None => Err(Failure::of(
            st,
            format!("PUBACK for Packet Identifier 9, or the close, after a PUBLISH to {denied:?}"),
            format!("nothing within {:?}", cx.answer_within()),
        )
        .into()),
    }
}
